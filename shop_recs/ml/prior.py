"""The bundle model's item-item prior: storing it (dense or CSR) and summing its rows.

:class:`ItemPrior` is a mixin of ``shop_recs.ml.model.BundleModel`` (it reads the model's
``config`` and the buffers the model registers): a dense ``[N+1, N+1]`` matrix up to
``MAX_PRIOR_ITEMS`` products, a CSR matrix pruned per row above, plus the out-of-fold priors
used while training. Row/column 0 is the padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ItemPrior"]


class ItemPrior:
    def set_prior(self, full: torch.Tensor, folds: torch.Tensor | None = None) -> None:
        """Item-item prior ``[n_items, n_items]`` (and out-of-fold ones ``[F, n, n]``)."""
        n = self.config.n_items
        self.prior = torch.zeros(n + 1, n + 1)
        self.prior[1:, 1:] = full
        if folds is not None:
            self.prior_folds = torch.zeros(len(folds), n + 1, n + 1)
            self.prior_folds[:, 1:, 1:] = folds

    def set_sparse_prior(self, full: tuple, folds: list[tuple] | None = None) -> None:
        """Sparse prior: CSR ``(crow [n+1], col [nnz], val [nnz])`` of the ``[n, n]`` matrix
        (and out-of-fold ones, training only). Shifted by one row/column for the padding."""
        crow, col, val = full
        self.config.prior_nnz = int(len(col))
        self.prior_crow = torch.cat([torch.zeros(1, dtype=torch.long), crow.long()])
        self.prior_col = col.to(torch.int32) + 1  # int32: n < 2^31, half of int64's memory
        self.prior_val = val.float()
        for f, (fc, fi, fv) in enumerate(folds or []):
            self.register_buffer(f"prior_fold{f}_crow", torch.cat(
                [torch.zeros(1, dtype=torch.long), fc.long()]), persistent=False)
            self.register_buffer(f"prior_fold{f}_col", fi.to(torch.int32) + 1, persistent=False)
            self.register_buffer(f"prior_fold{f}_val", fv.float(), persistent=False)
        self.n_sparse_folds = len(folds or [])

    def clear_prior_folds(self) -> None:
        """Drop the out-of-fold priors once training is over (they are never saved)."""
        self.prior_folds = torch.zeros(0, device=self.prior.device)
        for f in range(self.n_sparse_folds):
            for part in ("crow", "col", "val"):
                delattr(self, f"prior_fold{f}_{part}")
        self.n_sparse_folds = 0

    def _sparse_prior_logits(self, items: torch.Tensor, fold: int | None,
                             weights: torch.Tensor | None) -> torch.Tensor:
        """Sum of CSR prior rows of ``items`` [B, L] -> dense [B, N+1]; memory B·L·row length."""
        owner, col, v = self._sparse_prior_entries(items, fold, weights)
        out = torch.zeros(items.shape[0], self.config.n_items + 1, device=items.device,
                          dtype=v.dtype)
        return out.index_put((owner, col), v, accumulate=True)

    def _sparse_prior_entries(self, items: torch.Tensor, fold: int | None,
                              weights: torch.Tensor | None) -> tuple:
        """The stored entries of the CSR prior rows of ``items`` [B, L]: (example [E],
        column row [E], weighted value [E]); E = B·L·row length, nothing n-wide."""
        name = f"prior_fold{fold}_" if fold is not None and fold < self.n_sparse_folds else "prior_"
        crow, col, val = (getattr(self, name + p) for p in ("crow", "col", "val"))
        flat = items.reshape(-1)
        start = crow[flat]
        lens = crow[flat + 1] - start  # padding (row 0) has no entries
        owner = torch.repeat_interleave(torch.arange(len(flat), device=items.device), lens)
        offset = torch.arange(len(owner), device=items.device) - torch.repeat_interleave(
            torch.cumsum(lens, 0) - lens, lens)
        pos = start[owner] + offset
        v = val[pos]
        if weights is not None:
            v = v * weights.reshape(-1)[owner].to(v.dtype)
        return owner // items.shape[1], col[pos].long(), v

    def _prior_logits(self, items: torch.Tensor, fold: int | None,
                      weights: torch.Tensor | None = None) -> torch.Tensor:
        """(Weighted) sum of the prior rows of ``items`` [B, L] -> [B, N+1].

        ``fold`` picks an out-of-fold prior (training); ``embedding_bag`` never builds the
        [B, L, N] intermediate.
        """
        if self.config.sparse_prior:
            return self._sparse_prior_logits(items, fold, weights)
        training = fold is not None and self.prior_folds.numel() > 0
        prior = self.prior_folds[fold] if training else self.prior
        return F.embedding_bag(items, prior, mode="sum", padding_idx=0, per_sample_weights=weights)
