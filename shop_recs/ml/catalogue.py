"""The evaluation space of a fit (issue 15): the network seen through the split's catalogue,
and the evaluated orders and queries capped to a seeded sample on large shops.

``shop_recs.ml.protocol`` uses these; they hold no protocol logic of their own.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from shop_recs.ml.candidates import flat_rows, split_counts
from shop_recs.ml.evaluate import Queries

__all__ = ["OnCatalogue", "cap_evaluated", "sample_queries"]


class OnCatalogue:
    """A scorer over the whole index, seen through the split's catalogue (evaluation space).

    The model is trained over every product (so it knows the ones the evaluation leaves out);
    evaluation, blends and bundle search read it through ``items`` (catalogue -> index).
    """

    def __init__(self, scorer, items: np.ndarray) -> None:
        self.scorer, self.items, self.name = scorer, np.asarray(items, np.int64), scorer.name

    def fit(self, train, attrs=None) -> "OnCatalogue":
        return self

    def score(self, contexts, histories=None) -> np.ndarray:
        full = self.scorer.score([self.items[np.asarray(c, dtype=np.int64)] for c in contexts],
                                 None if histories is None else
                                 [self.items[np.asarray(h, dtype=np.int64)] for h in histories])
        return full[:, self.items]

    def score_candidates(self, contexts, candidates) -> np.ndarray:
        """:meth:`score` at each row's ``candidates`` (catalogue ids, int [len, m])."""
        inner = getattr(self.scorer, "score_candidates", None)
        cand = np.asarray(candidates, dtype=np.int64)
        if inner is None:
            return np.take_along_axis(self.score(contexts), cand, 1)
        return inner([self.items[np.asarray(c, dtype=np.int64)] for c in contexts],
                     self.items[cand])

    # above the full-softmax size the model ranks by candidates (issue 15): the same, mapped
    @property
    def lists_from_topk(self) -> bool:
        return bool(getattr(self.scorer, "lists_from_topk", False))

    def _inner(self, contexts) -> list[np.ndarray]:
        return [self.items[np.asarray(c, dtype=np.int64)] for c in contexts]

    def _to_catalogue(self, idx: np.ndarray) -> np.ndarray:
        back = np.full(int(self.items.max(initial=-1)) + 2, -1, dtype=np.int64)
        back[self.items] = np.arange(len(self.items))
        return np.where(idx >= 0, back[np.minimum(idx, len(back) - 1)], -1)

    def candidates(self, contexts) -> list[np.ndarray]:
        """The inner model's candidates that are in the catalogue, as catalogue ids."""
        inner = self.scorer.candidates(self._inner(contexts))
        owner, items = flat_rows(inner)
        mapped = self._to_catalogue(items)  # one lookup table for every row
        keep = mapped >= 0
        return split_counts(mapped[keep], np.bincount(owner[keep], minlength=len(inner)))

    def standardised_at(self, contexts, cols: np.ndarray) -> np.ndarray:
        """The inner model's z-scores at catalogue columns ``cols`` (-1 pads; moments over
        the model's whole index, of which the catalogue is all but the rarest products)."""
        cols = np.asarray(cols, dtype=np.int64)
        return self.scorer.standardised_at(self._inner(contexts),
                                           np.where(cols >= 0, self.items[np.maximum(cols, 0)],
                                                    -1))

    def topk(self, contexts, k: int, allowed: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """The inner model's top ``k`` among catalogue items (and ``allowed`` ones)."""
        ok = np.zeros(self.scorer.model_config.n_items, dtype=bool)
        ok[self.items[allowed] if allowed is not None else self.items] = True
        idx, val = self.scorer.topk(self._inner(contexts), k, allowed=ok)
        idx = self._to_catalogue(idx)
        return idx, np.where(idx >= 0, val, -np.inf).astype(np.float32)


def cap_evaluated(split, limit: int | None, seed: int = 0):
    """``split`` with at most ``limit`` validation and test orders each: a seeded sample in
    time order (issue 15: a 20M-line shop has ~450,000 of each, and every candidate is judged
    on them; 50,000 pair up for the gate's bootstrap with room to spare). Smaller splits
    are returned as they are."""
    if not limit:
        return split
    parts = {}
    for name in ("val", "test"):
        part = getattr(split, name)
        if len(part) > limit:
            rng = np.random.default_rng(seed + (0 if name == "val" else 1))
            part = part.select(np.sort(rng.choice(len(part), limit, replace=False)))
        parts[name] = part
    if all(parts[p] is getattr(split, p) for p in parts):
        return split
    info = {**split.info, "eval_orders_cap": limit}
    return dataclasses.replace(split, val=parts["val"], test=parts["test"], info=info)


def sample_queries(queries: Queries, limit: int, seed: int) -> Queries:
    """At most ``limit`` of ``queries``: a seeded sample in their order (all when fewer)."""
    if len(queries.contexts) <= limit:
        return queries
    keep = np.sort(np.random.default_rng(seed).choice(len(queries.contexts), limit,
                                                      replace=False))
    return Queries([queries.contexts[i] for i in keep], [queries.targets[i] for i in keep],
                   None if queries.histories is None else [queries.histories[i] for i in keep])
