"""Sampled softmax for large catalogues (torch + numpy, no Django).

Below :data:`FULL_SOFTMAX_MAX_ITEMS` products the bundle model trains with a full softmax over
the catalogue and scores every product densely. Above it, a step that builds ``batch x n``
logits costs what the catalogue costs (1M products: 1 GB of logits per 256 baskets, and the
same again for the prior, the repeat bonus and the gradients), so the model instead

* trains on a *shared* set of sampled negatives per batch (:class:`NegativeSampler`, drawn
  with replacement from ``(popularity + 1) ** alpha``), with the logQ correction: every logit
  gets ``- log(expected count of its item in the sample)`` and a sampled item that is one of
  the example's own targets is removed (an "accidental hit"), as in Bengio & Senécal 2008,
  Jean et al. 2015 and Yi et al. 2019 (:func:`sampled_set_loss`);
* scores each anchor against a candidate set only (``BundleScorer.topk``).

:func:`use_sampled_softmax` is the one rule that decides both. Usage::

    sampler = NegativeSampler(item_counts, n_samples=2048)
    shared, log_q_shared = sampler.draw(device)                 # rows [K], float [K]
    logits = model(ctx, hist, columns=targets, shared=shared)   # [B, T + K]
    loss = sampled_set_loss(logits, targets, shared, sampler.log_expected(targets), log_q_shared)
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["FULL_SOFTMAX_MAX_ITEMS", "NEGATIVES", "ALPHA", "use_sampled_softmax",
           "NegativeSampler", "sampled_set_loss"]

# Same size as the dense item-item limit (sparse.DENSE_MAX_ITEMS): above it the prior is a CSR
# matrix and the catalogue-wide logits are what a step pays for. Online Retail (4,893 products)
# stays on the full softmax, so its figures do not move.
FULL_SOFTMAX_MAX_ITEMS = 8000
NEGATIVES = 2048  # shared negatives per batch (Yi et al. 2019 use a few thousand)
ALPHA = 0.75  # proposal ~ (popularity + 1) ** alpha: between uniform and popularity


def use_sampled_softmax(n_items: int, limit: int | None = None) -> bool:
    """The one rule: full softmax and dense scoring up to ``limit`` products, sampled above."""
    return n_items > (FULL_SOFTMAX_MAX_ITEMS if limit is None else limit)


class NegativeSampler:
    """Shared negatives drawn with replacement from ``q ~ (counts + 1) ** alpha``.

    Rows are model rows (catalogue item ``j`` is row ``j + 1``; row 0, the padding, is never
    drawn). ``log_expected(rows)`` is ``log(n_samples * q)``, the logQ correction of a row.
    """

    def __init__(self, counts: np.ndarray, n_samples: int = NEGATIVES, alpha: float = ALPHA
                 ) -> None:
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, not {n_samples!r}")
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 1 or len(counts) == 0 or (counts < 0).any():
            raise ValueError("counts must be a non-empty 1-d array of non-negative numbers")
        q = (counts + 1.0) ** float(alpha)
        self.n_samples = int(n_samples)
        # [N+1] with the padding row at probability 0 (its log is never read: targets that are
        # padding are masked by the loss)
        self.q = torch.from_numpy(np.concatenate([[0.0], q / q.sum()])).float()
        self.log_q = torch.log(self.q.clamp(min=1e-30)) + float(np.log(self.n_samples))
        self._device = torch.device("cpu")

    def to(self, device: torch.device) -> "NegativeSampler":
        if torch.device(device) != self._device:
            self.q, self.log_q = self.q.to(device), self.log_q.to(device)
            self._device = torch.device(device)
        return self

    def draw(self, device: torch.device | str = "cpu",
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n_samples`` rows (long [K]) and their logQ corrections (float [K])."""
        self.to(device)
        rows = torch.multinomial(self.q, self.n_samples, replacement=True, generator=generator)
        return rows, self.log_q[rows]

    def log_expected(self, rows: torch.Tensor) -> torch.Tensor:
        """logQ correction of any rows (same shape as ``rows``)."""
        self.to(rows.device)
        return self.log_q[rows]


def sampled_set_loss(logits: torch.Tensor, targets: torch.Tensor, shared: torch.Tensor,
                     log_q_targets: torch.Tensor, log_q_shared: torch.Tensor) -> torch.Tensor:
    """The set loss of ``train.set_loss`` over each example's targets plus the shared samples.

    ``logits`` [B, T + K]: the model's logits at the example's targets [B, T] (0 = padding,
    logit -inf) then at the ``shared`` rows [K]. Each target's log-probability is normalised
    over the example's targets and the shared samples that are not among them, every logit
    corrected by ``- log Q``. With every row sampled once and ``log Q = 0`` this is exactly the
    full softmax's set loss (tested).
    """
    T = targets.shape[1]
    log_q = torch.cat([log_q_targets, log_q_shared.unsqueeze(0).expand(len(targets), -1)], 1)
    z = logits.float() - log_q.float()
    # accidental hits: a sampled row that is one of the example's targets is already a column
    hits = torch.zeros(len(targets), len(shared), dtype=torch.bool, device=targets.device)
    for t in range(T):  # [B, K] at a time, not a [B, K, T] comparison
        hits |= shared[None, :] == targets[:, t:t + 1]
    z = torch.cat([z[:, :T], z[:, T:].masked_fill(hits, float("-inf"))], 1)
    logp = torch.log_softmax(z, dim=-1)[:, :T]
    mask = targets > 0
    picked = torch.where(mask, logp, torch.zeros((), device=logp.device))
    return -(picked.sum(1) / mask.sum(1).clamp(min=1)).mean()
