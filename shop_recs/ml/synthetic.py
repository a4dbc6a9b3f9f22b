"""Synthetic order arrays of any size, in memory and in seconds (numpy only, no Django).

``benchmarks.synthetic_shop`` writes a realistic order *file* (customers, repeat orders,
arrival dates) one order at a time: right for the import and the whole pipeline, too slow to
build 20M lines inside a 150 s device benchmark. This builds the same kind of baskets with
array operations only: Zipf popularity over a shuffled catalogue, basket sizes 1 + geometric
(mean ``basket_mean``), planted complementary pairs (a basket holding one member gets the other
with chance ``planted``), and items distinct within a basket::

    shop = synthetic_orders(1_000_000, 20_000_000, seed=0)   # ~10 s, ~1 GB
    shop.baskets                # Baskets (timestamps = order index, customers all anonymous)
    shop.pairs                  # int64 [g, 2] planted pairs (quality checks)

Used by ``python -m shop_recs.ml.benchmark_speed --synthetic`` and the scale tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shop_recs.ml.types import Baskets

__all__ = ["SyntheticOrders", "synthetic_orders", "synthetic_histories", "draw"]


def draw(p: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` indices drawn with probabilities ``p`` (inverse CDF: faster than
    ``rng.choice`` for millions of draws)."""
    return np.minimum(np.searchsorted(np.cumsum(p), rng.random(size) * p.sum()), len(p) - 1)


@dataclass
class SyntheticOrders:
    baskets: Baskets
    popularity: np.ndarray  # float64 [n] each item's draw probability (Zipf, shuffled)
    pairs: np.ndarray  # int64 [g, 2] planted complementary pairs
    category: np.ndarray  # int64 [n] category id 1.. (0 = unknown), Zipf-sized
    price_band: np.ndarray  # int64 [n] price band 1..9
    words: np.ndarray  # int64 [n, 4] name-word ids 1.. (category noun + three others)


def synthetic_orders(n_items: int, n_lines: int, seed: int = 0, zipf: float = 0.9,
                     basket_mean: float = 4.0, planted: float = 0.5,
                     n_words: int = 5000) -> SyntheticOrders:
    """About ``n_lines`` order lines over ``n_items`` products (see the module docstring)."""
    if n_items < 2 or n_lines < 2:
        raise ValueError(f"need at least 2 products and 2 lines, got {n_items}, {n_lines}")
    if basket_mean < 1:
        raise ValueError(f"basket_mean must be at least 1, not {basket_mean!r}")
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1, dtype=np.float64) ** zipf
    pop = pop[rng.permutation(n_items)]
    pop /= pop.sum()
    sizes = rng.geometric(1.0 / basket_mean, size=int(n_lines / basket_mean * 1.2) + 2)
    cut = int(np.searchsorted(np.cumsum(sizes), n_lines)) + 1
    sizes = sizes[:cut]
    items = draw(pop, int(sizes.sum()), rng)
    basket = np.repeat(np.arange(len(sizes)), sizes)
    # planted pairs: half the catalogue in random pairs; a member pulls its mate into the basket
    members = rng.permutation(n_items)[:(n_items // 2) * 2].reshape(-1, 2)
    mate = np.full(n_items, -1, dtype=np.int64)
    mate[members[:, 0]], mate[members[:, 1]] = members[:, 1], members[:, 0]
    nxt = np.arange(1, len(items))
    pull = ((basket[nxt] == basket[nxt - 1]) & (mate[items[nxt - 1]] >= 0)
            & (rng.random(len(nxt)) < planted))
    items[nxt[pull]] = mate[items[nxt - 1][pull]]
    # distinct items per basket (sorted): one sort of basket * n + item
    key = np.sort(basket.astype(np.int64) * n_items + items)  # a sort: np.unique hashes (slower)
    key = key[np.concatenate([[True], key[1:] != key[:-1]])]
    basket, items = key // n_items, key % n_items
    counts = np.bincount(basket, minlength=len(sizes))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n_baskets = len(counts)
    baskets = Baskets(indptr=indptr, items=items.astype(np.int32),
                      timestamps=np.arange(n_baskets, dtype=np.int64),
                      customers=np.full(n_baskets, -1, dtype=np.int64), n_items=n_items)
    n_cat = max(n_items // 400, 5)
    cat_pop = 1.0 / np.arange(1, n_cat + 1) ** 1.1
    category = 1 + rng.choice(n_cat, size=n_items, p=cat_pop / cat_pop.sum())
    words = np.concatenate([(category % n_words + 1)[:, None],
                            rng.integers(1, n_words + 1, size=(n_items, 3))], 1)
    return SyntheticOrders(baskets, pop, members, category.astype(np.int64),
                           rng.integers(1, 10, size=n_items), words.astype(np.int64))


def synthetic_histories(popularity: np.ndarray, n: int, seed: int = 0, mean: float = 20.0,
                        anonymous: float = 0.3, max_len: int = 256) -> list[np.ndarray]:
    """``n`` customer histories (throughput only): geometric lengths of the given ``mean``
    (at most ``max_len``), items drawn from ``popularity``, ``anonymous`` share empty."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(1.0 / mean, size=n), max_len)
    lengths[rng.random(n) < anonymous] = 0
    flat = draw(popularity, int(lengths.sum()), rng)
    return np.split(flat.astype(np.int64), np.cumsum(lengths)[:-1])
