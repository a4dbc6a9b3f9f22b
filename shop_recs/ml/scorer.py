"""The learned bundle model behind the common Scorer protocol (fit on Baskets, score contexts).

Usage (what ``shop_recs.pipeline`` and the benchmark call)::

    scorer = BundleScorer(BundleModelConfig(n_items=0), TrainConfig(time_budget_s=240))
    scorer.fit(train, attrs, val=val_baskets, history_pool=all_baskets, callback=on_progress)
    scorer.result.history        # loss curve and validation metric per epoch
    scores = scorer.score([np.array([12])], histories=[np.array([3, 5])])  # [1, n_items]
    idx, val = scorer.topk([np.array([12])], k=10)   # lists; above the sampled-softmax size
                                                     # only each anchor's candidates are scored

``model_config.n_items`` and the attribute vocabulary sizes are filled in by :meth:`fit`.
Warm start: :meth:`fit` with ``init_from=<previous scorer>, old_to_new=<index map>`` copies the
rows of products both catalogues share; new products start fresh.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Callable, Sequence

import numpy as np
import torch

from shop_recs.ml.baselines import EASE, cooccurrence_counts
from shop_recs.ml.candidate_scoring import CandidateScoring
from shop_recs.ml.candidates import flat_rows, gather_rows, row_keys, split_keys, topk_keys
from shop_recs.ml.evaluate import anchor_queries, complete_queries, customer_histories, evaluate
from shop_recs.ml.distil import distil_new_rows
from shop_recs.ml.distributed import fit
from shop_recs.ml.features import FeatureVocab
from shop_recs.ml.model import BundleModel, BundleModelConfig
from shop_recs.ml.sampled import FULL_SOFTMAX_MAX_ITEMS, NEGATIVES, use_sampled_softmax
from shop_recs.ml.sparse import use_dense
from shop_recs.ml.topk import masked, topk_of_scores
from shop_recs.ml.train import (EpochReport, Examples, TrainConfig, TrainResult, pad_batch,
                                resolve_device, set_seed)
from shop_recs.ml.types import Baskets, ItemAttributes

logger = logging.getLogger("shop_recs.ml.scorer")

__all__ = ["BundleScorer", "warm_start", "MAX_PRIOR_ITEMS"]

MAX_PRIOR_ITEMS = 8000  # dense prior up to here (8000^2 float32 = 256 MB each), CSR above
# dense scoring: logits of at most this many (query, item) pairs per model call (128 MB of
# float32 per [B, N+1] intermediate; 1M products: 33 queries a call, Online Retail: all 256)
SCORE_ELEMENTS = 2 ** 25
CANDIDATE_HEAD = 200  # best sellers (by learned output bias) added to every candidate set
CANDIDATE_CHUNK = 4096  # queries whose candidates are gathered in one pass of array operations
# above the full-softmax size, early stopping validates on a seeded sample of this many
# validation orders: each query is still ranked against the whole catalogue, in chunks
MAX_VAL_BASKETS = 2000
VAL_ELEMENTS = 200_000_000  # scores one early-stopping validation may rank per task


class BundleScorer(CandidateScoring):
    name = "bundle_model"

    def __init__(self, model_config: BundleModelConfig | None = None,
                 train_config: TrainConfig | None = None, max_context_eval: int = 128,
                 prior_lambda: float = 10.0, max_prior_items: int = MAX_PRIOR_ITEMS,
                 max_full_items: int = FULL_SOFTMAX_MAX_ITEMS) -> None:
        self.model_config = model_config or BundleModelConfig(n_items=0)
        self.train_config = train_config or TrainConfig()
        self.max_context_eval = max_context_eval
        self.prior_lambda = prior_lambda  # EASE lambda of the item-item prior (use_prior)
        self.max_prior_items = max_prior_items  # larger catalogues get a sparse (CSR) prior
        # larger catalogues train with a sampled softmax and list from candidates (sampled.py)
        self.max_full_items = max_full_items
        self.model: BundleModel | None = None
        self.vocab: FeatureVocab | None = None
        self.result: TrainResult | None = None
        self.device = torch.device("cpu")

    # -- building -----------------------------------------------------------------------------
    def build(self, attrs: ItemAttributes, vocab: FeatureVocab | None = None) -> BundleModel:
        """Create the network for the catalogue described by ``attrs``."""
        self.vocab = vocab or FeatureVocab.build(attrs)
        feats = self.vocab.encode(attrs)
        cfg = dataclasses.replace(
            self.model_config, n_items=len(attrs), n_words=len(self.vocab.words),
            max_words=self.vocab.max_words, n_categories=len(self.vocab.categories),
            n_price_bands=self.vocab.n_bands,
            text_dim=0 if attrs.text_vectors is None else int(attrs.text_vectors.shape[1]))
        # above the limit a dense n x n prior (three while training) would not fit: the prior
        # is a CSR matrix pruned per row instead (shop_recs.ml.sparse); nothing is dropped
        cfg = dataclasses.replace(cfg, prior_nnz=0, sparse_prior=cfg.use_prior and not use_dense(
            cfg.n_items, self.max_prior_items))
        if cfg.sparse_prior:
            logger.info("catalogue of %d items: sparse item-item prior (dense limit %d)",
                        cfg.n_items, self.max_prior_items)
        self.model_config = cfg
        negatives = 0  # full softmax: exactly the loop of a small catalogue
        if self.sampled:
            negatives = self.train_config.negatives or NEGATIVES
            logger.info("catalogue of %d items: sampled softmax, %d negatives per batch "
                        "(full softmax limit %d)", cfg.n_items, negatives, self.max_full_items)
        self.train_config = dataclasses.replace(self.train_config, negatives=negatives)
        self.model = BundleModel(cfg)
        text = (torch.as_tensor(np.asarray(attrs.text_vectors, dtype=np.float32))
                if attrs.text_vectors is not None else None)
        self.model.set_features(torch.from_numpy(feats.words), torch.from_numpy(feats.category),
                                torch.from_numpy(feats.price_band), text)
        return self.model

    def fit(self, train_baskets: Baskets, attrs: ItemAttributes | None = None,
            val: Baskets | None = None, history_pool: Baskets | None = None,
            callback: Callable[[EpochReport], None] | None = None,
            init_from: "BundleScorer | None" = None,
            old_to_new: np.ndarray | None = None) -> "BundleScorer":
        attrs = attrs if attrs is not None else ItemAttributes.empty(train_baskets.n_items)
        set_seed(self.train_config.seed)  # the initial weights are part of a seeded run
        self.build(attrs, init_from.vocab if init_from is not None else None)
        if init_from is not None:
            warm_start(self.model, init_from.model, old_to_new)
        use_hist = self.model_config.use_history
        rows = np.flatnonzero(train_baskets.sizes >= 2)
        hist = customer_histories(train_baskets, train_baskets) if use_hist else None
        folds = None
        if self.model_config.use_prior:
            folds = np.random.default_rng(self.train_config.seed).integers(0, 2, len(train_baskets))
            self._fit_prior(train_baskets, folds)
        examples = Examples([train_baskets.basket(r) for r in rows],
                            [hist[r] for r in rows] if hist is not None else None,
                            folds[rows] if folds is not None else None)
        validate = None
        # early stopping ranks the whole catalogue for a sample of validation orders: at most
        # VAL_ELEMENTS scores per task, so a 1M-product catalogue validates 200 orders
        limit = min(MAX_VAL_BASKETS, max(200, VAL_ELEMENTS // max(self.model_config.n_items, 1)))
        if val is not None and self.sampled and len(val) > limit:
            keep = np.random.default_rng(self.train_config.seed).choice(
                len(val), limit, replace=False)
            val = val.select(np.sort(keep))
        if val is not None and len(val):
            pool = history_pool if history_pool is not None else train_baskets
            vh = customer_histories(val, pool) if use_hist else None
            qs = (complete_queries(val, 0, vh), anchor_queries(val, 0, vh))
            pop = train_baskets.item_counts()

            # queries per chunk: the score rows of a chunk are [chunk, n_items] (and ranking
            # copies them), so a chunk holds at most SCORE_ELEMENTS scores
            chunk = max(1, min(256, SCORE_ELEMENTS // max(self.model_config.n_items, 1)))

            def validate(_model) -> float:
                return float(np.mean([evaluate(self, q, pop, batch_size=chunk)[
                    "ndcg" if i == 0 else "multi_ndcg"] for i, q in enumerate(qs)]))
        self.device = torch.device("cpu")
        self.result = fit(self.model, examples, self.train_config, validate, callback)
        self.model.clear_prior_folds()  # training only
        self.device = resolve_device(self.train_config.device)
        return self

    def _fit_prior(self, baskets: Baskets, folds: np.ndarray) -> None:
        """EASE on all training orders (used to score) and on each half without the other
        (used while training, so a basket never meets a prior fitted on itself)."""
        lam, limit = self.prior_lambda, self.max_prior_items
        parts = [baskets] + [baskets.select(folds != f) for f in (0, 1)]
        # the same rule as the baselines: dense up to the limit, CSR above (sparse.use_dense)
        mats = [EASE(lam, cooccurrence_counts(b, dense_max_items=limit)).fit(b).matrix
                for b in parts]
        if self.model_config.sparse_prior:
            csr = [(torch.from_numpy(m.indptr.astype(np.int64)),
                    torch.from_numpy(m.indices.astype(np.int32)), torch.from_numpy(m.data))
                   for m in mats]
            self.model.set_sparse_prior(csr[0], csr[1:])
            self.model_config = self.model.config
            return
        self.model.set_prior(torch.from_numpy(mats[0]), torch.from_numpy(np.stack(mats[1:])))

    def for_new_products(self, new: np.ndarray, bias_quantile: float = 0.5,
                         borrow: tuple[np.ndarray, np.ndarray] | None = None,
                         distil: float | None = None) -> "BundleScorer":
        """A copy that scores the ``new`` products (no orders yet) from their content alone.

        Their id rows and output biases were trained only as negatives of the full softmax,
        which pushes a product nobody bought to the bottom whatever its name says: the copy
        clears the id rows and gives them the ``bias_quantile`` of the bought products' biases.
        ``borrow`` = (neighbours [len(new), k], weights [len(new), k]) also gives each new
        product the weighted item-item prior rows and columns of similar bought products (the
        prior knows nothing of it, and adds to every bought product's logit).
        ``distil`` (a ridge penalty) instead predicts each new product's id row and bias from its
        raw content (``shop_recs.ml.distil``), fitted on the bought products.
        """
        assert self.model is not None, "fit() or load a checkpoint first"  # nosec B101 # bug guard
        out = copy.copy(self)
        out.model = copy.deepcopy(self.model)
        new = np.asarray(new, dtype=np.int64)
        dev = out.model.out_bias.device  # every index built where the model lives (GPU runs)
        rows = torch.as_tensor(new + 1, device=dev)
        with torch.no_grad():
            bought = torch.ones(len(out.model.out_bias), dtype=torch.bool, device=dev)
            bought[0] = False
            bought[rows] = False
            bias = torch.quantile(out.model.out_bias[bought].float(), float(bias_quantile))
            out.model.item_emb.weight[rows] = 0.0
            out.model.out_bias[rows] = bias.to(out.model.out_bias.dtype)
            if distil is not None:
                distil_new_rows(out.model, rows, float(distil))
            prior = out.model.prior
            if borrow is not None and prior.numel():
                nbrs = torch.as_tensor(np.asarray(borrow[0], dtype=np.int64) + 1, device=dev)
                w = torch.as_tensor(np.asarray(borrow[1]), dtype=prior.dtype, device=dev)
                prior[rows] = torch.einsum("ck,ckn->cn", w, prior[nbrs])
                prior[:, rows] = torch.einsum("ck,nck->nc", w, prior[:, nbrs])
        return out

    @property
    def sampled(self) -> bool:
        """Above the full-softmax size: sampled training, candidate lists (sampled.py)."""
        return use_sampled_softmax(self.model_config.n_items, self.max_full_items)

    # -- scoring ------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, contexts: Sequence[np.ndarray],
              histories: Sequence[np.ndarray] | None = None, batch_size: int = 256) -> np.ndarray:
        """Log-probabilities float32 [len(contexts), n_items].

        Full ranking over the catalogue (what evaluation needs at any size): the model runs on
        at most ``SCORE_ELEMENTS // (n + 1)`` queries at a time, so its n-wide intermediates
        stay bounded; the caller's chunk of queries decides the size of the result.
        """
        assert self.model is not None, "fit() or load a checkpoint first"  # nosec B101 # bug guard
        self.model.eval()
        device = next(self.model.parameters()).device
        use_hist = histories is not None and self.model_config.use_history
        batch_size = max(1, min(batch_size, SCORE_ELEMENTS // (self.model_config.n_items + 1)))
        out = []
        # every product's representation once for all batches (issue 15: at 10^6 products
        # it took most of a batch's time and memory)
        table = self.model.item_table() if len(contexts) > batch_size else None
        for s in range(0, len(contexts), batch_size):
            ctx = pad_batch([np.asarray(c)[:self.max_context_eval] for c in contexts[s:s + batch_size]])
            hist = (pad_batch([np.asarray(h)[:self.train_config.max_history]
                               for h in histories[s:s + batch_size]]) if use_hist else None)
            scores = self.model.full_sort_predict(
                ctx.to(device), hist.to(device) if hist is not None else None, table=table)
            out.append(scores.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model_config.n_items), np.float32)

    def topk(self, contexts: Sequence[np.ndarray], k: int,
             histories: Sequence[np.ndarray] | None = None, chunk: int = 256,
             candidates=None, allowed: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` items per context (context excluded): int64 [q, k], float32 [q, k].

        Up to the full-softmax size: the dense ranking of :meth:`score` (log-probabilities).
        Above it, each query is scored only against its candidates: the prior's rows of its
        context items, the rows of ``candidates`` (an optional CSR item x item matrix, e.g. a
        sparse baseline's pruned neighbours), its history and the :data:`CANDIDATE_HEAD` best
        sellers; values are then logits (the log-probabilities up to a per-query constant,
        whose exact value would cost a pass over the catalogue) and a query with fewer than
        ``k`` candidates gets -1 / -inf in its last places. Never ``chunk x n`` above the size.
        ``allowed`` (bool [n_items]): only these items may be listed (publishing's filter).
        """
        assert self.model is not None, "fit() or load a checkpoint first"  # nosec B101 # bug guard
        use_hist = histories is not None and self.model_config.use_history
        if not self.sampled:
            idx, val = [], []
            for s in range(0, len(contexts), chunk):
                ctx = contexts[s:s + chunk]
                sc = masked(self.score(ctx, histories[s:s + chunk] if use_hist else None), ctx,
                            np.float32)
                if allowed is not None:
                    sc[:, ~np.asarray(allowed, dtype=bool)] = -np.inf
                top = topk_of_scores(sc, k)
                idx.append(top)
                val.append(np.take_along_axis(sc, top, 1))
            if not idx:
                return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
            return np.concatenate(idx), np.concatenate(val)
        keys, n = self._candidate_keys(contexts, histories if use_hist else None, candidates,
                                       allowed)
        return topk_keys(
            lambda a, b, cols: self._score_columns(contexts[a:b],
                                                   histories[a:b] if use_hist else None, cols),
            keys, n, len(contexts), k, chunk)

    def candidates(self, contexts: Sequence[np.ndarray],
                   histories: Sequence[np.ndarray] | None = None, extra=None
                   ) -> list[np.ndarray]:
        """Each query's candidate items (see :meth:`topk`), context items removed: distinct,
        ascending."""
        return split_keys(*self._candidate_keys(contexts, histories, extra), len(contexts))

    def _candidate_keys(self, contexts: Sequence[np.ndarray],
                        histories: Sequence[np.ndarray] | None = None, extra=None,
                        allowed: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """:meth:`candidates` (only ``allowed`` items when given) as sorted ``query * n +
        item`` keys and n, every query at once (CANDIDATE_CHUNK of them per array pass)."""
        m = self.model
        n = self.model_config.n_items
        bias = m.out_bias.detach()[1:].float().cpu().numpy()
        h = min(CANDIDATE_HEAD, n)
        head = np.argpartition(-bias, h - 1)[:h] if 0 < h < n else np.arange(n)
        head = head.astype(np.int64)
        sparse_prior = self.model_config.use_prior and self.model_config.sparse_prior
        dense_prior = (self.model_config.use_prior and not sparse_prior and m.prior.numel())
        if sparse_prior:  # the CSR prior, shifted by one row and column for the padding
            crow, col = m.prior_crow.cpu().numpy(), m.prior_col.cpu().numpy()
        out = [np.zeros(0, dtype=np.int64)]
        for s in range(0, len(contexts), CANDIDATE_CHUNK):
            ctx = [np.asarray(c, dtype=np.int64)[:self.max_context_eval]
                   for c in contexts[s:s + CANDIDATE_CHUNK]]
            b = len(ctx)
            c_own, c_item = flat_rows(ctx)
            owners, items = [np.repeat(np.arange(b), len(head))], [np.tile(head, b)]
            if sparse_prior:  # row c of the prior is row c + 1, column j is j + 1
                o, i = gather_rows(crow[1:], col, c_item, c_own)
                owners.append(o)
                items.append(i - 1)
            elif dense_prior:  # below the dense size: rows of the n x n prior, a block a time
                step = max(1, 2 ** 22 // max(n, 1))
                for lo in range(0, len(c_item), step):
                    rows = m.prior[torch.from_numpy(c_item[lo:lo + step] + 1), 1:].cpu().numpy()
                    r, j = np.nonzero(rows)
                    owners.append(c_own[lo:lo + step][r])
                    items.append(j.astype(np.int64))
            if extra is not None:
                o, i = gather_rows(extra.indptr, extra.indices, c_item, c_own)
                owners.append(o)
                items.append(i)
            if histories is not None:
                o, i = flat_rows([np.asarray(x, dtype=np.int64)[:self.train_config.max_history]
                                  for x in histories[s:s + CANDIDATE_CHUNK]])
                owners.append(o)
                items.append(i)
            keys, _ = row_keys(np.concatenate(owners), np.concatenate(items), (c_own, c_item),
                               allowed, n)
            out.append(keys + s * n)
        return np.concatenate(out), max(n, 1)

    @torch.no_grad()
    def _score_columns(self, contexts, histories, cols: np.ndarray) -> np.ndarray:
        """Logits of queries at item columns ``cols`` [b, C] (-1 = padding) -> float [b, C]."""
        self.model.eval()
        device = next(self.model.parameters()).device
        ctx = pad_batch([np.asarray(c)[:self.max_context_eval] for c in contexts])
        hist = (pad_batch([np.asarray(x)[:self.train_config.max_history] for x in histories])
                if histories is not None else None)
        logits = self.model(ctx.to(device), hist.to(device) if hist is not None else None,
                            columns=torch.from_numpy(cols + 1).to(device))  # padding -> row 0
        return logits.float().cpu().numpy()


def warm_start(new: BundleModel, old: BundleModel, old_to_new: np.ndarray | None) -> None:
    """Copy every weight of ``old`` into ``new``; item rows move by ``old_to_new`` (old -> new).

    Products only in the new catalogue keep their fresh initialisation; attribute vocabularies
    are shared (the new model is built with the old vocabulary).
    """
    old_state, new_state = old.state_dict(), new.state_dict()
    item_rows = {"item_emb.weight", "out_bias"}
    buffers = {"item_words", "item_cat", "item_price", "item_text"}
    for key, value in old_state.items():
        if key in buffers or key not in new_state:  # e.g. a text encoder switched off
            continue
        if key in item_rows:
            n_old = value.shape[0] - 1
            mapping = old_to_new if old_to_new is not None else np.arange(n_old)
            src = np.flatnonzero(mapping >= 0)
            dst = torch.from_numpy(mapping[src] + 1)
            new_state[key][dst] = value[torch.from_numpy(src + 1)]
        elif new_state[key].shape == value.shape:
            new_state[key] = value.clone()
    new.load_state_dict(new_state)
