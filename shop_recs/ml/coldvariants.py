"""Cold-start variants tried against the borrowed lists (issue 17), beside the baselines.

None of these is a baseline and none changes one: each is its own row of the cold-start
table (``shop_recs.ml.runner.run_cold``), tuned on the validation cold queries like every
row, built on the scorers validation chose for the baselines and models:

* ``NewOffset``: a scorer's row-standardised scores plus ``delta`` on the products without
  training orders, in the lists of known products (a context that holds a known product):
  a new product's own list is left as it was. The borrowed lists give a new product the
  score of its most similar known product, so it ranks at best beside it; a new product
  the shop adds is in fact bought (the masked ones had at least ``ColdConfig.min_orders``
  orders), which an offset tuned on validation learns. It is a merchandising rule ("show new
  products in the lists of known ones") as much as a model, and the masked products are
  products that sold, so read it as an upper end. Reported for the borrowed lists, so that
  the model's bias quantile (the same idea inside the model) is compared with it;
* a blend of the borrowed lists and a content model (``BlendScorer``: standardised scores,
  the model's weight tuned);
* borrowed lists whose neighbours are found by the text encoder's cosine instead of TF-IDF
  of the name (``BorrowedLists(vectors=...)``): a row of its own, as the issue asks.
"""

from __future__ import annotations

import numpy as np

from shop_recs.ml.baselines import EASE, cooccurrence_counts
from shop_recs.ml.blend import BlendScorer
from shop_recs.ml.coldstart import BorrowedLists, ColdConfig, ColdSplit

__all__ = ["NewOffset", "variant_options", "OFFSETS", "BLEND_WEIGHTS"]

OFFSETS = (2.0, 4.0, 6.0, 10.0, 20.0)  # sd of the row's scores; 20: every new product first
BLEND_WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0)  # the content model's, against the borrowed lists
BORROWED = "borrowed_lists"


class NewOffset:
    """Row z-scores of ``base`` + ``delta`` on the ``cold`` columns (bool [catalogue]) in
    the rows whose context holds a known product; the other rows are ``base``'s scores."""

    def __init__(self, base, cold: np.ndarray, delta: float) -> None:
        self.base, self.delta, self.name = base, float(delta), f"{base.name}+offset"
        self.cold = np.asarray(cold, dtype=bool)

    def fit(self, train=None, attrs=None) -> "NewOffset":
        return self

    def score(self, contexts, histories=None) -> np.ndarray:
        # float64 throughout, and the other rows as the base scored them: a float32 z-score
        # would merge near-ties of small scores (EASE with a large lambda) and move them
        s = np.array(self.base.score(contexts, histories), dtype=np.float64)
        known = np.flatnonzero([(~self.cold[np.asarray(c, dtype=np.int64)]).any()
                                for c in contexts])
        if len(known):
            z = s[known]
            z[~np.isfinite(z)] = np.nan  # masked entries stay out of the mean and sd
            z = (z - np.nanmean(z, 1, keepdims=True)) / (np.nanstd(z, 1, keepdims=True) + 1e-12)
            z[:, self.cold] += self.delta
            s[known] = np.where(np.isnan(z), -np.inf, z)
        return s


def variant_options(split: ColdSplit, cfg: ColdConfig, chosen: dict, models: dict,
                    vectors: np.ndarray | None = None) -> dict:
    """{row name: [(label, make)]} for ``tune_and_score(..., baselines=False)``.

    ``chosen``: the scorers validation chose per row (``tune_and_score(chosen=...)``);
    ``models``: {row suffix: row name} of the content-model rows to blend with the borrowed
    lists; ``vectors``: the text encoder's vectors of the cold catalogue (None: no such row).
    """
    cold = ~split.known
    borrowed = chosen[BORROWED]

    def offsets(base) -> list:
        return [(f"offset {d:g} sd", lambda d=d: NewOffset(base, cold, d)) for d in OFFSETS]

    out = {f"{BORROWED} + offset for new products (variant)": offsets(borrowed)}
    for suffix, row in models.items():
        if row in chosen:
            out[f"blend: {BORROWED} + {suffix} (variant)"] = [
                (f"model weight {w:g}", lambda w=w, m=chosen[row]: BlendScorer(
                    [borrowed, m], [1.0, w], "blend")) for w in BLEND_WEIGHTS]
            # the same offset on the model's own row: does content add to it?
            out[f"{suffix} + offset for new products (variant)"] = offsets(chosen[row])
    if vectors is not None:
        counts = cooccurrence_counts(split.train)
        eases = {lam: EASE(float(lam), counts).fit(split.train) for lam in cfg.ease_lambdas}
        out[f"{BORROWED} by text-encoder similarity (variant)"] = [
            (f"k={k}, ease lambda={lam:g}", lambda k=k, lam=lam: BorrowedLists(
                eases[lam], split.known, split.attrs, int(k), vectors=vectors))
            for k in cfg.neighbours for lam in cfg.ease_lambdas]
    return out
