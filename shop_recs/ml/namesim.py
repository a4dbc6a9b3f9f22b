"""The most similar known products by name: TF-IDF cosine, exact, without multiplying through
the most common words (numpy/scipy, no Django).

A product with too few orders for a list of its own borrows one from its most similar known
product (``ml.newproducts``). The cosine of two products is the sum, over the words they share,
of their TF-IDF weights multiplied; a word on a tenth of the catalogue ("SET", "RED", a large
category) makes every product that holds it share it with ~10^5 others at 10^6 products, so the
full similarity rows of a chunk of products hold millions of entries, almost all of them low.

:func:`similar_known` finds the same neighbours from far fewer entries (the MaxScore bound of
text retrieval): a product's rare words (``RARE_POSTINGS`` known products between them, at
least its rarest word) name its candidates, which are scored exactly; a known product without
any of those words shares at most the common words, and its cosine is at most
``sum(q_w * max_w)`` over them (``max_w`` the largest weight of word ``w`` in any known
product). When the candidates' k-th best beats that bound, nothing outside them can enter the
top k. A product whose bound is not beaten is scored against every known product, as before.
The candidates' cosines are the full product's own floats (scipy sums a product's words in the
same order whichever columns it computes), so the neighbours, their order and their cosines are
bit for bit those of the full product.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import scipy.sparse as sp

from shop_recs.ml.features import _category, name_words
from shop_recs.ml.topk import distinct
from shop_recs.ml.types import ItemAttributes

__all__ = ["tfidf", "similar_known"]

CHUNK = 256  # products scored at once
RARE_POSTINGS = 4096  # known products a product's rare words may reach before the rest is bounded
GROUP_POSTINGS = 16384  # known products a chunk's rare words may reach together
SLACK = 1e-4  # relative margin of the bound over float32 rounding of the cosines
_LOW = np.int64(0xFFFFFFFF)


def tfidf(attrs: ItemAttributes) -> sp.csr_matrix:
    """L2-normalised sparse TF-IDF rows of name words and category (as ``ml.coldstart``'s,
    but sparse: a dense [products x words] matrix would not fit a catalogue of 10^5)."""
    docs = [list(dict.fromkeys(name_words(nm))) + [f"~cat~{_category(nm, c)}"]
            for nm, c in zip(attrs.names, attrs.categories)]
    df = Counter(w for d in docs for w in d)
    vocab = {w: i for i, w in enumerate(sorted(df))}
    idf = np.asarray([math.log((1 + len(docs)) / (1 + df[w])) + 1 for w in sorted(df)])
    rows = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
    cols = np.asarray([vocab[w] for d in docs for w in d], dtype=np.int64)
    m = sp.csr_matrix((idf[cols].astype(np.float32), (rows, cols)),
                      shape=(len(docs), max(len(vocab), 1)))
    norm = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.maximum(norm, 1e-12)).astype(np.float32) @ m


def similar_known(attrs: ItemAttributes, items: np.ndarray, known: np.ndarray,
                  k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar ``known`` products (bool mask) of each of ``items`` by TF-IDF
    cosine of name words and category. Returns (neighbours int64 [m, k], cosine [m, k]),
    most similar first, ties by item; an item is never its own neighbour. Fewer than ``k``
    products with a word in common: then the lowest known items (cosine 0), the item last."""
    items = np.asarray(items, dtype=np.int64)
    candidates = np.flatnonzero(known)
    k = min(k, len(candidates))
    if k == 0 or not len(items):
        return np.zeros((len(items), k), np.int64), np.zeros((len(items), k), np.float32)
    vec = tfidf(attrs)
    known_vec = vec[candidates].T.tocsc()  # word x known product
    top = np.full((len(items), k), -1, dtype=np.int64)  # positions in candidates
    val = np.zeros((len(items), k), dtype=np.float32)
    postings = known_vec.tocsr()  # each word's known products
    rare, bound = _split(vec[items], postings)
    settled = np.zeros(len(items), dtype=bool)
    for rows, union in _groups(rare, postings):
        sim = vec[items[rows]] @ known_vec[:, union]
        t, v = _best(sim, items[rows], candidates, k, union)
        found = (t >= 0).sum(axis=1)
        ok = (bound[rows] == 0) | ((found == k) & (v[:, -1] > bound[rows] * (1 + SLACK)))
        top[rows[ok]], val[rows[ok]], settled[rows[ok]] = t[ok], v[ok], True
    rest = np.flatnonzero(~settled)  # the bound was not beaten: every known product
    for start in range(0, len(rest), CHUNK):
        rows = rest[start:start + CHUNK]
        top[rows], val[rows] = _best(vec[items[rows]] @ known_vec, items[rows], candidates, k)
    for r in np.flatnonzero((top < 0).any(axis=1)):  # fewer than k similar: fill
        found = int((top[r] >= 0).sum())
        own = np.flatnonzero(candidates == items[r]).tolist()  # the item itself: last
        taken = set(top[r, :found].tolist()) | set(own)
        fill = [c for c in range(min(len(candidates), len(taken) + k)) if c not in taken]
        top[r, found:] = (fill + own)[:k - found]
    return candidates[top], val


def _split(queries: sp.csr_matrix, postings: sp.csr_matrix):
    """Per query: its rare words (fewest known products first, up to ``RARE_POSTINGS`` of them
    in all, at least one) as a list of word ids, and the bound of its other words' cosine
    (float64; 0 when it has no other word a known product holds)."""
    df = np.diff(postings.indptr)
    top_weight = np.zeros(len(df))
    held = np.flatnonzero(df)
    top_weight[held] = np.maximum.reduceat(postings.data.astype(np.float64),
                                           postings.indptr[held])
    owner = np.repeat(np.arange(queries.shape[0]), np.diff(queries.indptr))
    word, weight = queries.indices.astype(np.int64), queries.data.astype(np.float64)
    keep = df[word] > 0  # a word no known product holds adds nothing to any cosine
    owner, word, weight = owner[keep], word[keep], weight[keep]
    order = np.lexsort((word, df[word], owner))
    owner, word, weight = owner[order], word[order], weight[order]
    reach = np.cumsum(df[word])
    first = np.searchsorted(owner, owner)  # each query's first (rarest) word
    reach -= np.concatenate([[0], reach])[first]
    is_rare = (reach <= RARE_POSTINGS) | (np.arange(len(owner)) == first)
    bound = np.bincount(owner[~is_rare], weight[~is_rare] * top_weight[word[~is_rare]],
                        minlength=queries.shape[0])
    cuts = np.searchsorted(owner[is_rare], np.arange(queries.shape[0] + 1))
    words = word[is_rare]
    rare = [words[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    return rare, bound


def _groups(rare: list[np.ndarray], postings: sp.csr_matrix):
    """Chunks of queries (rows, the known products their rare words reach, ascending):
    queries sorted by their rarest word, cut at ``CHUNK`` queries or ``GROUP_POSTINGS`` known
    products (a chunk whose queries share one common rarest word may pass it)."""
    df = np.diff(postings.indptr)
    first = np.asarray([w[0] if len(w) else -1 for w in rare], dtype=np.int64)
    order = np.argsort(first, kind="stable")
    rows, words, reach = [], set(), 0
    for r in order.tolist():
        new = [w for w in rare[r].tolist() if w not in words]
        more = int(df[new].sum())
        if rows and (len(rows) == CHUNK or (more and reach + more > GROUP_POSTINGS)):
            yield _chunk(rows, words, postings)
            rows, words, reach = [], set(), 0
            new, more = rare[r].tolist(), int(df[rare[r]].sum())
        rows.append(r)
        words.update(new)
        reach += more
    if rows:
        yield _chunk(rows, words, postings)


def _chunk(rows: list[int], words: set[int], postings: sp.csr_matrix):
    ptr, known = postings.indptr, postings.indices
    reached = [known[ptr[w]:ptr[w + 1]] for w in words] or [np.zeros(0, np.int64)]
    return np.asarray(rows, dtype=np.int64), distinct(np.concatenate(reached).astype(np.int64))


def _best(sim: sp.spmatrix, part: np.ndarray, candidates: np.ndarray, k: int,
          columns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best positive entries of ``sim`` (column j is candidate ``columns[j]``,
    or j), the item itself excluded: positions in candidates int64 [rows, k] (-1 past the
    last), cosines float32 [rows, k]; ties by position, as a stable full sort orders them."""
    sim = sim.tocsr()
    rows = np.repeat(np.arange(len(part)), np.diff(sim.indptr))
    cols = sim.indices.astype(np.int64)
    if columns is not None:
        cols = columns[cols]
    vals = sim.data.astype(np.float32)
    mine = (candidates[cols] != part[rows]) & (vals > 0)
    rows, cols, vals = rows[mine], cols[mine], vals[mine]
    # one int64 per entry, larger when better: the cosine's bits (a positive float32 orders
    # as its int32 bits), then the position reversed
    key = (vals.view(np.int32).astype(np.int64) << 32) | (_LOW - cols)
    top = np.full((len(part), k), -1, dtype=np.int64)
    val = np.zeros((len(part), k), dtype=np.float32)
    for j in range(k):
        if not len(key):
            break
        starts = np.flatnonzero(np.concatenate([[True], rows[1:] != rows[:-1]]))
        best = np.maximum.reduceat(key, starts)
        r = rows[starts]
        top[r, j] = _LOW - (best & _LOW)
        val[r, j] = (best >> 32).astype(np.int32).view(np.float32)
        keep = key != np.repeat(best, np.diff(np.append(starts, len(key))))
        rows, key = rows[keep], key[keep]
    return top, val
