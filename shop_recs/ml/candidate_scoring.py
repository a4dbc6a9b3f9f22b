"""The network scored without an n-wide row, above the full-softmax size (issue 15).

``BundleScorer`` mixes this in. A blend standardises each component's row over the whole
catalogue; publishing and the bundle search compare log-probabilities across contexts. Both
need the row's moments or its log-partition, which this estimates from a fixed uniform
sample of the catalogue (:data:`MOMENT_SAMPLE` items, exact below that size) scored in the
same forward pass as the candidates (``BundleModel.forward(columns=, shared=)``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from shop_recs.ml.train import pad_batch

__all__ = ["CandidateScoring", "MOMENT_SAMPLE"]

MOMENT_SAMPLE = 2048  # catalogue items standing for a whole row (z-scores, log-partition)


class CandidateScoring:
    """Scoring at given columns only; needs ``model``, ``model_config``, ``sampled``,
    ``max_context_eval`` and ``score`` of ``BundleScorer``."""

    @property
    def lists_from_topk(self) -> bool:
        """Published lists come from :meth:`topk` (candidates), not a dense row (issue 15)."""
        return self.sampled

    def moment_sample(self) -> np.ndarray:
        """A fixed uniform sample of the catalogue (sorted, seeded by its size): the items
        whose scores stand for the whole row in :meth:`standardised_at` and
        :meth:`score_candidates` above the full-softmax size."""
        n = self.model_config.n_items
        if n <= MOMENT_SAMPLE:
            return np.arange(n, dtype=np.int64)
        rng = np.random.default_rng(n)
        return np.sort(rng.choice(n, MOMENT_SAMPLE, replace=False)).astype(np.int64)

    def score_candidates(self, contexts: Sequence[np.ndarray], candidates: np.ndarray
                         ) -> np.ndarray:
        """Log-probabilities at each row's ``candidates`` (int [len, m]) without an n-wide
        row: the logits minus an estimate of the log-partition, summed exactly over the
        row's distinct candidates (where the mass is) and over the rest of the catalogue
        from :meth:`moment_sample` scaled up. float32 [len, m]."""
        cand = np.asarray(candidates, dtype=np.int64)
        if not self.sampled:  # a full row is cheap: the exact log-probabilities
            return np.take_along_axis(self.score(contexts), np.maximum(cand, 0), 1)
        n = self.model_config.n_items
        sample = self.moment_sample()
        b = len(contexts)
        logits, s_logits = self._with_sample(contexts, cand)
        top = np.maximum(logits.max(axis=1, initial=-np.inf), s_logits.max(axis=1))
        order = np.argsort(cand, axis=1, kind="stable")
        sc = np.take_along_axis(cand, order, 1)
        first = np.ones(sc.shape, dtype=bool)
        first[:, 1:] = sc[:, 1:] != sc[:, :-1]
        first &= sc >= 0
        z_cand = (np.exp(np.take_along_axis(logits, order, 1) - top[:, None]) * first).sum(1)
        keys = np.where(first, np.arange(b)[:, None] * n + sc, -1)
        keys = np.sort(keys[keys >= 0])
        s_keys = (np.arange(b)[:, None] * n + sample[None, :]).ravel()
        spot = np.minimum(np.searchsorted(keys, s_keys), max(len(keys) - 1, 0))
        out_c = ~((keys[spot] == s_keys) if len(keys) else np.zeros(len(s_keys), bool))
        out_c = out_c.reshape(b, len(sample))
        n_rest = np.maximum(n - first.sum(1), 0)
        seen = np.maximum(out_c.sum(1), 1)
        z_rest = (np.exp(s_logits - top[:, None]) * out_c).sum(1) * n_rest / seen
        log_z = top + np.log(z_cand + z_rest)
        return (logits - log_z[:, None]).astype(np.float32)

    def standardised_at(self, contexts: Sequence[np.ndarray], cols: np.ndarray) -> np.ndarray:
        """``blend.standardise`` of each context's row at ``cols`` (int [b, C]): the logits
        at ``cols`` against their mean and deviation at :meth:`moment_sample` (a per-row
        constant apart from the log-probabilities, which z-scores do not see). float32."""
        at, ref = self._with_sample(contexts, np.asarray(cols, dtype=np.int64))
        ok = np.isfinite(ref)  # the context's own items are masked (-inf)
        count = np.maximum(ok.sum(axis=1), 1)
        mean = np.where(ok, ref, 0.0).sum(axis=1) / count
        std = np.sqrt(np.where(ok, (ref - mean[:, None]) ** 2, 0.0).sum(axis=1) / count)
        z = (at - mean[:, None]) / (std[:, None] + 1e-8)
        return np.where(np.isfinite(z), z, -np.inf).astype(np.float32)

    @torch.no_grad()
    def _with_sample(self, contexts, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits at ``cols`` (int [b, C], -1 pads) and at :meth:`moment_sample`, in one
        forward pass (the sample's rows are embedded once for the batch): float64 [b, C],
        [b, K]."""
        self.model.eval()
        device = next(self.model.parameters()).device
        sample = self.moment_sample()
        ctx = pad_batch([np.asarray(c)[:self.max_context_eval] for c in contexts])
        out = self.model(ctx.to(device), None, columns=torch.from_numpy(cols + 1).to(device),
                         shared=torch.from_numpy(sample + 1).to(device)).double().cpu().numpy()
        return out[:, :cols.shape[1]], out[:, cols.shape[1]:]
