"""The cold-start protocol (issue 17): products nobody has bought yet, and their baselines.

Two kinds of new product, on the protocol's time split (``shop_recs.ml.evaluate``):

* **masked**: of the products with at least ``ColdConfig.min_orders`` training orders, a seeded
  ``mask_frac`` lose every training and validation interaction (name, category and price kept):
  they are new for every scorer fitted on the training orders. A second, disjoint seeded set
  loses its training interactions only: its validation orders tune the baselines' settings,
  so test is never looked at.
* **truly new**: products first sold in the test period (no training or validation order).

Queries, over the whole catalogue (known, masked and new products): *cold anchor* (the new
product is on the page, its basket-mates are the targets; Recall@10 and NDCG@10) and *cold
target* (the new product is hidden from its basket; the rest is the context; NDCG@10).

Baselines (each tuned on the validation cold queries): popularity; bestsellers of the same
category (``features`` derives one from the name's last word when the shop has none); and
*borrowed lists*: a new product borrows the item-item rows and columns of its most similar
known products by TF-IDF cosine on the name (EASE underneath). Beside them, not a baseline:
a *ceiling* row, EASE fitted with the masked products' training orders kept, i.e. what a
scorer that knew each new product's own co-purchases would score; no content path can be
expected to beat it (on truly new products it knows nothing more than the others)::

    cold = cold_split(baskets, index, attrs, ProtocolConfig(), ColdConfig(seed=0))
    rows = evaluate_cold(cold, {"bundle_model": scorer_on_cold_catalogue})
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from shop_recs.ml.baselines import EASE, Popularity, cooccurrence_counts
from shop_recs.ml.evaluate import Queries, evaluate, subset, time_rows
from shop_recs.ml.features import _category, name_words
from shop_recs.ml.types import Baskets, DataError, ItemAttributes, ItemIndex

__all__ = ["ColdConfig", "ColdSplit", "cold_split", "cold_queries", "CategoryBestsellers",
           "BorrowedLists", "name_similarity", "vector_similarity", "tune_and_score", "KINDS"]

KINDS = ("masked", "new")
TASKS = {"anchor": "multi_ndcg", "target": "ndcg"}


@dataclass
class ColdConfig:
    seed: int = 0
    mask_frac: float = 0.1  # share of the products with enough orders that are masked
    min_orders: int = 5  # training orders a product needs to be masked
    neighbours: tuple = (1, 5)  # borrowed lists: how many similar known products
    category_boosts: tuple = (1.0, 4.0)  # same-category bonus over log popularity
    ease_lambdas: tuple = (300.0, 3000.0)  # EASE under the borrowed lists
    max_queries: int = 2000  # per task and part: a seeded sample keeps the protocol cheap
    # the benchmark also trains a content-trained model: input and output id dropout this
    # high, so that name, category and price must carry a product (0 = skip that row)
    content_dropout: float = 0.3
    # distillation of content onto the learned id rows (shop_recs.ml.distil): ridge penalties
    # tried on validation for each content-trained model (empty = skip those rows)
    distil_penalties: tuple = (1.0,)
    bias_quantiles: tuple = (0.25, 0.5, 0.75)  # output bias of a new product (content rows)
    # the pretrained text encoder (shop_recs.ml.text): a model name or folder ("" = none), and
    # where its vectors are cached ("" = not cached)
    text_encoder: str = ""
    text_cache: str = ""
    # a ceiling row: EASE fitted on the training orders with the masked products' orders kept
    # (what a scorer that knew each new product's own co-purchases would score)
    ceiling: bool = True
    # rows of shop_recs.ml.coldvariants (offset, blend, encoder-borrowed lists) beside them
    variants: bool = True


@dataclass
class ColdSplit:
    train: Baskets  # training orders without any masked product (catalogue space)
    val: Baskets  # validation orders without the test-masked products
    test: Baskets
    index: ItemIndex  # the cold catalogue: warm, masked and truly new products
    attrs: ItemAttributes
    items: np.ndarray  # catalogue item -> item of the input index
    cold: dict  # "val" / "masked" / "new" -> catalogue items
    known: np.ndarray  # bool [catalogue]: bought in the (masked) training orders
    train_full: Baskets  # the training orders without masked products, on the input index
    val_full: Baskets  # the validation orders without the test-masked ones, input index
    train_oracle: Baskets | None = None  # training orders, masked products kept (catalogue)
    info: dict = field(default_factory=dict)


def cold_split(baskets: Baskets, index: ItemIndex, attrs: ItemAttributes, val_frac: float = 0.1,
               test_frac: float = 0.1, min_count: int = 2,
               cfg: ColdConfig | None = None) -> ColdSplit:
    """The time split with masked and truly new products (see the module docstring)."""
    cfg = cfg or ColdConfig()
    order, rows = time_rows(baskets, val_frac, test_frac)
    counts = {p: baskets.select(r).item_counts() for p, r in rows.items()}
    warm = counts["train"] >= min_count
    new = (counts["train"] == 0) & (counts["val"] == 0) & (counts["test"] > 0)
    eligible = np.flatnonzero(counts["train"] >= cfg.min_orders)
    k = int(round(len(eligible) * cfg.mask_frac))
    if k < 1:
        raise DataError(f"no product has {cfg.min_orders} training orders to mask")
    perm = np.random.default_rng(cfg.seed).permutation(eligible)
    masked, val_masked = np.sort(perm[:k]), np.sort(perm[k:2 * k])
    keep = np.flatnonzero(warm | new)
    mapping = np.full(baskets.n_items, -1, dtype=np.int64)
    mapping[keep] = np.arange(len(keep))
    drop_train = mapping.copy()
    drop_train[masked] = drop_train[val_masked] = -1
    drop_val = mapping.copy()
    drop_val[masked] = -1
    parts = {"train": baskets.select(rows["train"]).remap_items(drop_train, len(keep)),
             "val": baskets.select(rows["val"]).remap_items(drop_val, len(keep)),
             "test": baskets.select(rows["test"]).remap_items(mapping, len(keep))}
    for p in ("val", "test"):
        parts[p] = parts[p].select(parts[p].sizes >= 2)
    known = parts["train"].item_counts() > 0
    cold = {"val": mapping[val_masked], "masked": mapping[masked], "new": mapping[new]}
    info = {"catalogue": len(keep), "masked": len(masked), "val_masked": len(val_masked),
            "truly_new": int(new.sum()), "mask_min_orders": cfg.min_orders,
            "mask_frac": cfg.mask_frac, "seed": cfg.seed}
    # the same orders on the input index, for models that know every product
    ident = np.arange(baskets.n_items)
    ident_train, ident_val = ident.copy(), ident.copy()
    ident_train[masked] = ident_train[val_masked] = ident_val[masked] = -1
    train_full = baskets.select(rows["train"]).remap_items(ident_train, baskets.n_items)
    val_full = baskets.select(rows["val"]).remap_items(ident_val, baskets.n_items)
    oracle = baskets.select(rows["train"]).remap_items(mapping, len(keep))
    return ColdSplit(parts["train"], parts["val"], parts["test"], ItemIndex(index.ids[keep]),
                     attrs.take(keep), keep, cold, known, train_full, val_full, oracle, info)


def cold_queries(baskets: Baskets, cold: np.ndarray, max_queries: int | None = None,
                 seed: int = 0) -> dict[str, Queries]:
    """One anchor and one target query per (order, cold product in it); a seeded sample of
    ``max_queries`` (the same pairs for both tasks) when there are more."""
    is_cold = np.zeros(baskets.n_items, dtype=bool)
    is_cold[cold] = True
    out = {t: Queries([], []) for t in TASKS}
    for items in baskets.as_list():
        for pos in np.flatnonzero(is_cold[items]):
            rest = np.delete(items, pos)
            out["anchor"].contexts.append(items[pos:pos + 1])
            out["anchor"].targets.append(rest)
            out["target"].contexts.append(rest)
            out["target"].targets.append(items[pos:pos + 1])
    n = len(out["anchor"].contexts)
    if max_queries is not None and n > max_queries:
        pick = np.sort(np.random.default_rng(seed).choice(n, max_queries, replace=False))
        out = {t: subset(q, pick) for t, q in out.items()}
    return out


def _tfidf(attrs: ItemAttributes) -> np.ndarray:
    """L2-normalised TF-IDF rows of the name's words and the category (float32 [n, words])."""
    docs = [list(dict.fromkeys(name_words(nm))) + [f"~cat~{_category(nm, c)}"]
            for nm, c in zip(attrs.names, attrs.categories)]
    df = Counter(w for d in docs for w in d)
    vocab = {w: i for i, w in enumerate(sorted(df))}
    idf = np.asarray([math.log((1 + len(docs)) / (1 + df[w])) + 1 for w in sorted(df)])
    out = np.zeros((len(docs), len(vocab)), dtype=np.float32)
    for i, d in enumerate(docs):
        for w in d:
            out[i, vocab[w]] = idf[vocab[w]]
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norm, 1e-12)


def name_similarity(attrs: ItemAttributes, items: np.ndarray, candidates: np.ndarray,
                    k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar ``candidates`` of each of ``items`` by TF-IDF cosine of the name.

    Returns (neighbours int [len(items), k], cosine [len(items), k]), most similar first.
    """
    vec = _tfidf(attrs)
    sim = vec[items] @ vec[candidates].T
    k = min(k, len(candidates))
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return candidates[top], np.take_along_axis(sim, top, axis=1)


class CategoryBestsellers:
    """Bestsellers, those of the context's categories first by ``boost`` (log-count units)."""

    def __init__(self, boost: float = 2.0) -> None:
        self.boost, self.name = boost, "category_bestsellers"

    def fit(self, train: Baskets, attrs: ItemAttributes) -> "CategoryBestsellers":
        self.log_pop = np.log1p(train.item_counts()).astype(np.float32)
        cats = [_category(nm, c) for nm, c in zip(attrs.names, attrs.categories)]
        ids = {c: i for i, c in enumerate(dict.fromkeys(cats))}
        self.category = np.asarray([ids[c] for c in cats], dtype=np.int64)
        return self

    def score(self, contexts, histories=None) -> np.ndarray:
        out = np.repeat(self.log_pop[None, :], len(contexts), axis=0)
        for row, ctx in enumerate(contexts):
            share = np.isin(self.category, self.category[np.asarray(ctx)])
            out[row] += self.boost * share
        return out


def vector_similarity(vectors: np.ndarray, items: np.ndarray, candidates: np.ndarray,
                      k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`name_similarity` by cosine of other vectors (a text encoder's, ``ml.text``)."""
    v = np.asarray(vectors, dtype=np.float32)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    sim = v[items] @ v[candidates].T
    k = min(k, len(candidates))
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return candidates[top], np.take_along_axis(sim, top, axis=1)


class BorrowedLists:
    """A warm scorer for new products: each borrows the rows and columns of its ``k`` most
    similar known products (by name), weighted by similarity. ``vectors``: similar by the
    cosine of these instead (a text encoder's: not the baseline, a variant of it)."""

    def __init__(self, base, known: np.ndarray, attrs: ItemAttributes, k: int = 1,
                 vectors: np.ndarray | None = None) -> None:
        self.base, self.k, self.name = base, k, "borrowed_lists"
        n = len(known)
        self.cold = np.flatnonzero(~known)
        nbrs, sims = (name_similarity(attrs, self.cold, np.flatnonzero(known), k)
                      if vectors is None else
                      vector_similarity(vectors, self.cold, np.flatnonzero(known), k))
        weights = np.maximum(sims, 1e-6)
        self.nbrs, self.weights = nbrs, weights / weights.sum(axis=1, keepdims=True)
        self.slot = np.full(n, -1, dtype=np.int64)
        self.slot[self.cold] = np.arange(len(self.cold))

    def fit(self, train=None, attrs=None) -> "BorrowedLists":
        return self

    def score(self, contexts, histories=None) -> np.ndarray:
        mapped = []
        for ctx in contexts:
            ctx = np.asarray(ctx, dtype=np.int64)
            slots = self.slot[ctx]
            mapped.append(np.concatenate([ctx[slots < 0],
                                          self.nbrs[slots[slots >= 0]].ravel()]))
        s = self.base.score(mapped)
        # a new product's column: the similarity-weighted columns of its neighbours
        s[:, self.cold] = np.einsum("bck,ck->bc", s[:, self.nbrs], self.weights)
        return s


def _judge(scorer, queries: dict[str, Queries], pop: np.ndarray) -> dict:
    res = {t: evaluate(scorer, q, pop) for t, q in queries.items() if q.contexts}
    out = {}
    if "anchor" in res:
        out["cold_anchor_ndcg10"] = res["anchor"]["multi_ndcg"]
        out["cold_anchor_recall10"] = res["anchor"]["recall"]
    if "target" in res:
        out["cold_target_ndcg10"] = res["target"]["ndcg"]
        out["cold_target_hr10"] = res["target"]["hr"]
    out["queries"] = len(queries["anchor"].contexts)
    return out


def _objective(figures: dict) -> float:
    return (figures.get("cold_anchor_ndcg10", 0.0) + figures.get("cold_target_ndcg10", 0.0)) / 2


def tune_and_score(split: ColdSplit, cfg: ColdConfig, extra: dict | None = None,
                   baselines: bool = True, chosen: dict | None = None) -> dict[str, dict]:
    """Each baseline tuned on the validation cold queries, then scored on the test ones of
    each kind. ``extra``: {name: [(label, make() -> scorer)]} of other candidates (fitted on
    ``split.train``'s orders, scoring the cold catalogue), tuned the same way;
    ``baselines=False`` scores ``extra`` only. ``chosen``, a dict, receives each row's scorer
    as validation chose it (for variants built on top of it).
    Returns {name: {"params", "val", "masked": {...}, "new": {...}}}."""
    pop = split.train.item_counts()
    val_q = cold_queries(split.val, split.cold["val"], cfg.max_queries, cfg.seed)
    test_q = {kind: cold_queries(split.test, split.cold[kind], cfg.max_queries, cfg.seed)
              for kind in KINDS}
    options = {} if not baselines else {
        "popularity": [("", lambda: Popularity().fit(split.train))],
        "category_bestsellers": [(f"boost={b:g}", lambda b=b: CategoryBestsellers(b).fit(
            split.train, split.attrs)) for b in cfg.category_boosts],
    }
    if baselines:
        counts = cooccurrence_counts(split.train)
        eases = {lam: EASE(float(lam), counts).fit(split.train) for lam in cfg.ease_lambdas}
        options["borrowed_lists"] = [
            (f"k={k}, ease lambda={lam:g}", lambda k=k, lam=lam: BorrowedLists(
                eases[lam], split.known, split.attrs, int(k))) for k in cfg.neighbours
            for lam in cfg.ease_lambdas]
    if baselines and cfg.ceiling and split.train_oracle is not None:
        # not a baseline: it has seen the orders the protocol hides (the content path's ceiling)
        ocounts = cooccurrence_counts(split.train_oracle)
        options["ceiling: EASE knowing the new products' orders"] = [
            (f"ease lambda={lam:g}", lambda lam=lam: EASE(float(lam), ocounts).fit(
                split.train_oracle)) for lam in cfg.ease_lambdas]
    options.update(extra or {})
    rows = {}
    for name, opts in options.items():
        best = None
        for label, make in opts:
            scorer = make()
            figures = _judge(scorer, val_q, pop)
            if best is None or _objective(figures) > _objective(best[2]):
                best = (label, scorer, figures)
        label, scorer, figures = best
        if chosen is not None:
            chosen[name] = scorer
        rows[name] = {"params": label, "val": figures,
                      **{kind: _judge(scorer, test_q[kind], pop) for kind in KINDS}}
    return rows
