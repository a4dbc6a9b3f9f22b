"""Lists for products with no or few orders, scored from their content (numpy/torch, no Django).

A product nobody has bought (or bought once) is not in the published lists of a run: no
co-occurrence model can score it. Its name, category and price can. Two ways, best first:

* :func:`model_lists` - the learned model's content path
  (``BundleScorer.for_new_products``): the product is scored from its name words, category
  and price band, with the item-item prior rows of its most similar known products by name
  (TF-IDF cosine) borrowed in, as the cold-start benchmark measured it (``ml.runner.run_cold``);
* :func:`borrowed_lists` - the content baseline, for runs whose gate shipped a baseline: the
  list the shipped scorer gives the most similar known product, then the bestsellers of the
  product's category.

Products the checkpoint has never seen (created after its run) are appended to a copy of the
model first (:func:`extend`), with content-only rows::

    bigger, new = extend(scorer, new_attrs)          # new: their catalogue items
    lists = model_lists(bigger, attrs_all, new, known, allowed, k=10)
    lists.items[i], lists.scores[i]                  # -1 / -inf past the end of a list

``known`` marks the products with enough orders (published lists of their own), ``allowed``
the products that may be recommended (available and known).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from shop_recs.ml.candidates import gather_rows
from shop_recs.ml.features import _category
from shop_recs.ml.model import BundleModel
from shop_recs.ml.namesim import similar_known
from shop_recs.ml.topk import topk_of_scores
from shop_recs.ml.types import ItemAttributes

__all__ = ["NewLists", "similar_known", "model_lists", "borrowed_lists", "extend",
           "MODEL", "BORROWED", "CATEGORY"]

MODEL, BORROWED, CATEGORY = "model", "borrowed", "category"
CHUNK = 256  # anchors scored at once ([CHUNK, n_items] floats)
LARGE_CHUNK = 8192  # anchors ranked at once from candidates above the full-softmax size


@dataclass
class NewLists:
    """Top-k lists of ``anchors`` (catalogue items): ``items`` int64 [m, k] (-1: no entry),
    ``scores`` float [m, k]; ``neighbour`` the most similar known product (-1: none shares
    a word), ``similarity`` its cosine; ``how`` per entry: MODEL, BORROWED or CATEGORY."""

    anchors: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    neighbour: np.ndarray
    similarity: np.ndarray
    how: np.ndarray  # object [m, k]


def _top(scores: np.ndarray, anchors: np.ndarray, allowed: np.ndarray, k: int):
    s = np.where(allowed[None, :], scores.astype(np.float64), -np.inf)
    s[np.isnan(s)] = -np.inf
    s[np.arange(len(anchors)), anchors] = -np.inf
    top = topk_of_scores(s, k)
    val = np.take_along_axis(s, top, axis=1)
    return np.where(np.isfinite(val), top, -1), val


def model_lists(scorer, attrs: ItemAttributes, new: np.ndarray, known: np.ndarray,
                allowed: np.ndarray, k: int, neighbours: int = 5) -> NewLists:
    """Lists of the ``new`` products from the model's content path; ``scorer`` is a
    ``BundleScorer`` over the catalogue ``attrs`` describes (``new`` included). Up to the
    full-softmax size each product ranks the whole catalogue; above it, the candidates of
    its ``neighbours`` most similar known products (:func:`_neighbour_rows`) and the best
    sellers, as the model's own lists are ranked there."""
    new = np.asarray(new, dtype=np.int64)
    nbrs, sims = similar_known(attrs, new, known, neighbours)
    borrow = None
    if nbrs.shape[1]:
        w = np.maximum(sims, 1e-6)  # nothing in common: an even share of each neighbour
        borrow = (nbrs, w / w.sum(axis=1, keepdims=True))
    content = scorer.for_new_products(new, borrow=borrow)
    items, scores = [], []
    if content.sampled:  # a large catalogue: never [CHUNK, n_items] scores (issue 15)
        for start in range(0, len(new), LARGE_CHUNK):
            part = new[start:start + LARGE_CHUNK]
            rows = _neighbour_rows(content, part, nbrs[start:start + len(part)])
            top, val = content.topk([np.asarray([a]) for a in part], k, allowed=allowed,
                                    candidates=rows)
            items.append(np.where(np.isfinite(val), top, -1))
            scores.append(val.astype(np.float64))
    else:
        for start in range(0, len(new), CHUNK):
            part = new[start:start + CHUNK]
            top, val = _top(content.score([np.asarray([a]) for a in part]), part, allowed, k)
            items.append(top)
            scores.append(val)
    items = np.concatenate(items) if items else np.zeros((0, k), np.int64)
    return NewLists(new, items, np.concatenate(scores) if scores else np.zeros((0, k)),
                    *_first(nbrs, sims), np.full(items.shape, MODEL, dtype=object))


def _neighbour_rows(scorer, anchors: np.ndarray, nbrs: np.ndarray) -> sp.csr_matrix:
    """Candidates of each anchor above the full-softmax size: its similar known products and
    their rows of the sparse item-item prior (what the model's own lists are ranked from),
    as the anchors' rows of an item x item CSR matrix (``BundleScorer.topk``'s
    ``candidates``); the best sellers are added by ``topk`` itself."""
    cfg, n = scorer.model_config, scorer.model_config.n_items
    owner, items = np.repeat(anchors, nbrs.shape[1]), nbrs.ravel().astype(np.int64)
    owners, found = [owner], [items]
    if cfg.use_prior and cfg.sparse_prior:  # row c of the prior is row c + 1, column j j + 1
        m = scorer.model
        o, j = gather_rows(m.prior_crow.cpu().numpy()[1:], m.prior_col.cpu().numpy(), items,
                           owner)
        owners.append(o)
        found.append(j - 1)
    owner, items = np.concatenate(owners), np.concatenate(found)
    ok = (items >= 0) & (items < n)
    return sp.csr_matrix((np.ones(int(ok.sum()), np.int8), (owner[ok], items[ok])),
                         shape=(n, n))


def _first(nbrs: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not nbrs.shape[1]:
        return np.full(len(nbrs), -1, np.int64), np.zeros(len(nbrs), np.float32)
    return np.where(sims[:, 0] > 0, nbrs[:, 0], -1), sims[:, 0]


def borrowed_lists(scorer, attrs: ItemAttributes, new: np.ndarray, known: np.ndarray,
                   allowed: np.ndarray, popularity: np.ndarray, k: int) -> NewLists:
    """The content baseline: the list ``scorer`` (any Scorer over the catalogue) gives the most
    similar known product by name, then the bestsellers (``popularity``: orders per item) of
    the new product's category. A product that shares no word with a known one gets its
    category's bestsellers only."""
    new = np.asarray(new, dtype=np.int64)
    nbrs, sims = similar_known(attrs, new, known, 1)
    neighbour, similarity = _first(nbrs, sims)
    cats = np.asarray([_category(nm, c) for nm, c in zip(attrs.names, attrs.categories)],
                      dtype=object)
    pop = np.log1p(np.asarray(popularity, dtype=np.float64))
    items = np.full((len(new), k), -1, np.int64)
    scores = np.full((len(new), k), -np.inf)
    how = np.full((len(new), k), "", dtype=object)
    # each category's allowed bestsellers, the first 2k + 1 (enough whatever is listed
    # already and the product itself), found once: not one catalogue pass per product
    sellers = np.flatnonzero(allowed & (pop > 0))
    sellers = sellers[np.argsort(-pop[sellers], kind="stable")]
    by_cat: dict = {}
    for j in sellers:
        best = by_cat.setdefault(cats[j], [])
        if len(best) <= 2 * k:
            best.append(int(j))
    by_lists = bool(getattr(scorer, "lists_from_topk", False))
    for start in range(0, len(new), CHUNK):
        part = np.arange(start, min(start + CHUNK, len(new)))
        with_nbr = part[neighbour[part] >= 0]
        borrowed = {}
        if len(with_nbr) and by_lists:  # a large catalogue: the neighbour's own top list
            top, val = scorer.topk([np.asarray([n]) for n in neighbour[with_nbr]], k + 1,
                                   allowed=allowed)
            val = np.where((top == new[with_nbr][:, None]) | (top < 0), -np.inf, val)
            order = np.argsort(~np.isfinite(val), axis=1, kind="stable")[:, :k]
            top, val = np.take_along_axis(top, order, 1), np.take_along_axis(val, order, 1)
            top = np.where(np.isfinite(val), top, -1)
            borrowed = {int(r): (t, v) for r, t, v in zip(with_nbr, top, val)}
        elif len(with_nbr):
            s = scorer.score([np.asarray([n]) for n in neighbour[with_nbr]])
            s[np.arange(len(with_nbr)), neighbour[with_nbr]] = -np.inf  # it is a substitute
            top, val = _top(s, new[with_nbr], allowed, k)
            borrowed = {int(r): (t, v) for r, t, v in zip(with_nbr, top, val)}
        for r in part:
            top, val = borrowed.get(int(r), (np.zeros(0, np.int64), np.zeros(0)))
            keep = top >= 0
            entries = list(zip(top[keep], val[keep], [BORROWED] * int(keep.sum())))
            if len(entries) < k:  # then the category's bestsellers not listed yet
                taken = set(top[keep].tolist()) | {int(new[r])}
                best = [j for j in by_cat.get(cats[new[r]], []) if j not in taken]
                entries += [(j, pop[j], CATEGORY) for j in best[:k - len(entries)]]
            for pos, (j, v, h) in enumerate(entries):
                items[r, pos], scores[r, pos], how[r, pos] = j, v, h
    return NewLists(new, items, scores, neighbour, similarity, how)


def extend(scorer, new_attrs: ItemAttributes):
    """A copy of ``scorer`` (a ``BundleScorer``) whose catalogue has ``new_attrs``' products
    appended; returns (the copy, their catalogue items). Their rows are content only: no id
    embedding, no prior (``for_new_products`` gives them a bias and borrows a prior), and
    their attributes encoded with the model's own vocabulary (unknown words are dropped).
    A model that reads a text encoder's vectors gets ``new_attrs.text_vectors`` (the same
    encoder's, ``shop_recs.ml.text``) in their text rows; without them those rows stay zero
    and the products are scored from name words, category and price alone.
    Costs a copy of the model (the dense prior included); the original is untouched."""
    assert scorer.model is not None and scorer.vocab is not None  # nosec B101 # bug guard
    n_old, m = scorer.model_config.n_items, len(new_attrs)
    config = dataclasses.replace(scorer.model_config, n_items=n_old + m)
    model = BundleModel(config)
    old_state, state = scorer.model.state_dict(), model.state_dict()
    for key, value in old_state.items():
        target = state[key]
        if target.shape == value.shape:
            state[key] = value.clone()
            continue
        # every per-item table grows by m rows (and the dense prior by m columns); a CSR
        # row pointer repeats its end: the new rows are empty
        grown = (torch.full_like(target, int(value[-1])) if key.endswith("crow")
                 else torch.zeros_like(target))
        grown[tuple(slice(0, s) for s in value.shape)] = value
        state[key] = grown
    model.load_state_dict(state, strict=True)
    feats = scorer.vocab.encode(new_attrs)
    with torch.no_grad():
        rows = slice(n_old + 1, n_old + 1 + m)
        model.item_words[rows] = torch.from_numpy(feats.words)
        model.item_cat[rows] = torch.from_numpy(feats.category)
        model.item_price[rows] = torch.from_numpy(feats.price_band)
        if config.text_dim > 0 and new_attrs.text_vectors is not None:
            vecs = np.asarray(new_attrs.text_vectors, dtype=np.float32)
            if vecs.shape != (m, config.text_dim):
                raise ValueError(f"text vectors of the new products must be [{m}, "
                                 f"{config.text_dim}] (the run's encoder), got {vecs.shape}")
            model.item_text[rows] = torch.from_numpy(vecs).to(model.item_text.dtype)
    model.eval()
    out = type(scorer)(config, scorer.train_config, scorer.max_context_eval,
                       scorer.prior_lambda, scorer.max_prior_items)
    out.model, out.vocab, out.result, out.device = model, scorer.vocab, scorer.result, scorer.device
    return out, np.arange(n_old, n_old + m, dtype=np.int64)
