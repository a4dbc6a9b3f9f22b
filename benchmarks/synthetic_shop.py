"""A synthetic shop of any size, written in the generic order-file format, with known answers.

    python -m benchmarks.synthetic_shop --products 100000 --lines 5000000 --seed 0 \\
        --out /tmp/shop100k.csv.gz

Writes ``order_id, product_id, timestamp, customer_id, quantity, unit_price, product_name,
category`` lines (what ``shop_recs_import_orders --format generic`` and
``shop_recs.ml.orders.read_orders`` read) and a sidecar ``<out>.truth.json`` with the parameters
and the planted complementary groups, so the quality of shipped lists can be measured at any
size (:func:`planted_recall`). Output is streamed one chunk of orders at a time: memory grows
with the catalogue and the customer base, never with the number of lines.

What each parameter imitates (defaults in brackets):

* ``--zipf`` [0.9]: product popularity ~ 1 / rank^a. Real shops sell a few products very often
  and most rarely (with the defaults the best seller is in 14-17 % of orders at 10k-100k
  products; at 100k products and 300k lines the median product has 2 orders).
* ``--basket-mean`` [4.0]: basket sizes are 1 + geometric, mean this many distinct products;
  most orders are small, a few large (wholesale orders are far larger: set 20 for Online Retail).
* ``--categories`` [products / 400, at least 5]: each product belongs to one category of
  Zipf-like size; a category has a typical price (log-uniform 1-500) and products scatter
  around it (log-normal), so price bands mean something. A product's name holds its
  category's noun, as real names do.
* ``--same-category`` [0.3]: chance that the next product of a basket comes from the category
  of the basket's first product (shoppers browse within a department).
* ``--groups`` [products / 20] of 2-4 products, ``--planted`` [0.5]: planted complements. When a
  basket holds a member of a group, with this chance the group's other members join it (each
  with 80 %). Members are drawn from the whole catalogue, so popular and rare complements both
  exist; ``truth.json`` lists them. A model that ships a group-mate in a member's top 10 found it.
* ``--customers`` [lines / 25], ``--anonymous`` [0.3], ``--repeat`` [0.25]: orders come from
  customers of Zipf-like activity (a few buy very often); this share of orders is a guest
  checkout; each line of a known customer's order is, with the ``--repeat`` chance, one of the
  last 16 products the customer bought (re-ordering, which only history-aware models see).
* ``--initial-share`` [0.6], ``--days`` [365]: this share of the catalogue exists on day one, the
  rest arrives at uniform times over the period; a product is never bought before it arrives
  (so the newest products have few orders at the cut-off, as in a real shop).

Every random draw comes from one seeded generator: the same arguments write the same file.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["ShopParams", "SyntheticShop", "write_shop", "synthetic_baskets", "planted_recall",
           "main"]

NOUNS = ("mug", "lamp", "candle", "frame", "cushion", "bag", "card", "tin", "clock", "bowl",
         "plate", "vase", "basket", "box", "sign", "garland", "light", "towel", "apron", "jar")
ADJECTIVES = ("red", "blue", "vintage", "green", "pink", "white", "gold", "silver", "retro",
              "floral", "large", "small", "wooden", "glass", "paper", "metal", "spotty")
HISTORY = 16  # last products remembered per customer (the repeat pool)
START = np.datetime64("2024-01-01T00:00:00", "s")


@dataclass
class ShopParams:
    products: int
    lines: int
    seed: int = 0
    zipf: float = 0.9
    basket_mean: float = 4.0
    categories: int = 0  # 0 = products // 400, at least 5
    same_category: float = 0.3
    groups: int = -1  # -1 = products // 20
    planted: float = 0.5
    customers: int = 0  # 0 = lines // 25, at least 10
    anonymous: float = 0.3
    repeat: float = 0.25
    initial_share: float = 0.6
    days: int = 365
    chunk_orders: int = 20_000

    def __post_init__(self) -> None:
        if self.products < 10:
            raise ValueError("--products must be at least 10")
        if self.lines < 1:
            raise ValueError("--lines must be positive")
        if self.basket_mean < 1:
            raise ValueError("--basket-mean must be at least 1")
        for name in ("same_category", "planted", "anonymous", "repeat", "initial_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be between 0 and 1")
        self.categories = self.categories or max(5, self.products // 400)
        self.groups = self.products // 20 if self.groups < 0 else self.groups
        self.customers = self.customers or max(10, self.lines // 25)


class SyntheticShop:
    """The catalogue, customers and planted groups; :meth:`orders` yields chunks of lines."""

    def __init__(self, params: ShopParams) -> None:
        self.p = p = params
        self.rng = rng = np.random.default_rng(p.seed)
        n = p.products
        # popularity: Zipf over a random order of the products (ids say nothing about rank)
        rank = rng.permutation(n) + 1
        weight = 1.0 / rank.astype(np.float64) ** p.zipf
        cat_weight = 1.0 / np.arange(1, p.categories + 1) ** 0.8
        self.category = rng.choice(p.categories, size=n, p=cat_weight / cat_weight.sum())
        cat_price = np.exp(rng.uniform(np.log(1.0), np.log(500.0), p.categories))
        self.price = np.round(cat_price[self.category] * rng.lognormal(0.0, 0.4, n), 2)
        self.price = np.maximum(self.price, 0.01)
        self.arrival = np.where(rng.random(n) < p.initial_share, 0.0, rng.random(n))  # 0..1
        # products sorted by category, one cumulative weight: drawing within a category is a
        # searchsorted in its slice, O(log n) per draw and no per-category arrays
        self.by_cat = np.argsort(self.category, kind="stable")
        self.cdf = np.cumsum(weight[self.by_cat])
        self.cdf /= self.cdf[-1]
        bounds = np.searchsorted(self.category[self.by_cat], np.arange(p.categories + 1))
        self.cat_lo = np.concatenate([[0.0], self.cdf])[bounds[:-1]]
        self.cat_hi = np.concatenate([[0.0], self.cdf])[bounds[1:]]
        self.group_of, self.groups = self._plant_groups()
        cw = 1.0 / np.arange(1, p.customers + 1) ** 0.7
        self.cust_cdf = np.cumsum(cw[rng.permutation(p.customers)])
        self.cust_cdf /= self.cust_cdf[-1]
        self.history = np.full((p.customers, HISTORY), -1, dtype=np.int32)
        self.hist_pos = np.zeros(p.customers, dtype=np.int64)
        self.adjective = rng.integers(len(ADJECTIVES), size=n)

    def _plant_groups(self) -> tuple[np.ndarray, list[np.ndarray]]:
        n, rng = self.p.products, self.rng
        sizes = rng.integers(2, 5, size=self.p.groups)
        sizes = sizes[np.cumsum(sizes) <= n]  # a product is in one group at most
        members = rng.permutation(n)[:sizes.sum()]
        groups = np.split(members, np.cumsum(sizes)[:-1]) if len(sizes) else []
        group_of = np.full(n, -1, dtype=np.int64)
        for g, m in enumerate(groups):
            group_of[m] = g
        return group_of, groups

    def _draw(self, u: np.ndarray, cats: np.ndarray | None) -> np.ndarray:
        """Products for uniforms ``u``: by popularity, within ``cats`` where given (>= 0)."""
        if cats is not None:
            inside = cats >= 0
            lo, hi = self.cat_lo[np.maximum(cats, 0)], self.cat_hi[np.maximum(cats, 0)]
            u = np.where(inside, lo + u * (hi - lo), u)
        pos = np.minimum(np.searchsorted(self.cdf, u, side="right"), self.p.products - 1)
        return self.by_cat[pos]

    def orders(self):
        """Yield DataFrame-free chunks: dict of column arrays, ``lines`` lines in all."""
        p, rng = self.p, self.rng
        written, order_no, t_now = 0, 0, 0.0
        per_order = p.basket_mean  # lines per order, re-estimated from what was written
        span = p.days * 86400
        while written < p.lines:
            b = p.chunk_orders
            # orders spread evenly over the time left for the orders still to come
            step = (1.0 - t_now) / max((p.lines - written) / per_order, 1.0)
            t_frac = np.minimum(t_now + step * np.arange(b), 0.999999)
            t_now = float(min(t_now + step * b, 0.999999))
            sizes = np.minimum(rng.geometric(1.0 / p.basket_mean, size=b), 200)
            basket = np.repeat(np.arange(b), sizes)
            first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            is_first = np.zeros(len(basket), dtype=bool)
            is_first[first] = True
            items = self._draw(rng.random(len(basket)), None)
            same = ~is_first & (rng.random(len(basket)) < p.same_category)
            cats = np.where(same, self.category[items[first[basket]]], -1)
            items = np.where(same, self._draw(rng.random(len(basket)), cats), items)
            # products not yet in the catalogue at the order's time: redraw a few times,
            # then give up on the line (the basket keeps its other products)
            t_line = t_frac[basket]
            for _ in range(6):
                late = self.arrival[items] > t_line
                if not late.any():
                    break
                items[late] = self._draw(rng.random(int(late.sum())), None)
            ok = self.arrival[items] <= t_line
            customer = np.searchsorted(self.cust_cdf, rng.random(b), side="right")
            customer = np.minimum(customer, p.customers - 1)
            customer = np.where(rng.random(b) < p.anonymous, -1, customer)
            cust_line = customer[basket]
            rep = (cust_line >= 0) & (rng.random(len(basket)) < p.repeat)
            if rep.any():
                slot = rng.integers(HISTORY, size=int(rep.sum()))
                past = self.history[cust_line[rep], slot]
                got = past >= 0
                idx = np.flatnonzero(rep)[got]
                items[idx], ok[idx] = past[got], True
            basket, items = basket[ok], items[ok]
            basket, items = self._add_planted(basket, items, t_frac)
            basket, items = _dedupe(basket, items)
            self._remember(customer, basket, items)
            take = min(len(items), p.lines - written)
            basket, items = basket[:take], items[:take]
            ts = START + (t_frac[basket] * span).astype("timedelta64[s]")
            yield {
                "order_id": basket + order_no, "product_id": items,
                "timestamp": ts, "customer_id": customer[basket],
                "quantity": rng.geometric(0.4, size=take),
            }
            written += take
            order_no += b
            per_order = max(written / order_no, 0.1)

    def _add_planted(self, basket: np.ndarray, items: np.ndarray, t_frac: np.ndarray):
        g = self.group_of[items]
        fire = (g >= 0) & (self.rng.random(len(items)) < self.p.planted)
        if not fire.any():
            return basket, items
        add_b, add_i = [basket], [items]
        for b, grp in zip(basket[fire], g[fire]):
            mates = self.groups[grp]
            keep = (self.rng.random(len(mates)) < 0.8) & (self.arrival[mates] <= t_frac[b])
            add_b.append(np.full(int(keep.sum()), b))
            add_i.append(mates[keep])
        return np.concatenate(add_b), np.concatenate(add_i)

    def _remember(self, customer: np.ndarray, basket: np.ndarray, items: np.ndarray) -> None:
        cust = customer[basket]
        known = np.flatnonzero(cust >= 0)
        if not len(known):
            return
        known = known[np.argsort(cust[known], kind="stable")]  # by customer, then line order
        c = cust[known]
        starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        counts = np.diff(np.r_[starts, len(c)])
        rank = np.arange(len(c)) - np.repeat(starts, counts)  # position within the customer
        last = rank >= np.repeat(counts, counts) - HISTORY  # only the latest HISTORY matter
        slot = (self.hist_pos[c[last]] + rank[last]) % HISTORY
        self.history[c[last], slot] = items[known[last]]
        self.hist_pos[c[starts]] += counts

    def truth(self) -> dict:
        return {"params": asdict(self.p),
                "groups": [[product_id(int(i)) for i in g] for g in self.groups]}


def synthetic_baskets(params: ShopParams):
    """The shop's orders straight into ``Baskets`` (no file): ``(baskets, groups)``.

    Item ``i`` is product ``P{i:07d}``; the catalogue is every product, bought or not.
    """
    from shop_recs.ml.types import Baskets  # noqa: PLC0415 # the generator needs no shop_recs

    shop = SyntheticShop(params)
    items, orders, times, custs = [], [], [], []
    for chunk in shop.orders():
        items.append(chunk["product_id"].astype(np.int32))
        orders.append(chunk["order_id"])
        first = np.r_[True, chunk["order_id"][1:] != chunk["order_id"][:-1]]
        times.append(chunk["timestamp"][first].astype(np.int64))
        custs.append(chunk["customer_id"][first])
    order_ids = np.concatenate(orders)
    _, sizes = np.unique(order_ids, return_counts=True)  # ids ascend: orders stay in sequence
    baskets = Baskets(np.concatenate([[0], np.cumsum(sizes)]), np.concatenate(items),
                      np.concatenate(times), np.concatenate(custs), params.products)
    return baskets, shop.groups


def _dedupe(basket: np.ndarray, items: np.ndarray):
    """One line per (order, product), orders in sequence, first occurrence kept."""
    key = basket.astype(np.int64) * (1 << 32) + items
    _, first = np.unique(key, return_index=True)
    first.sort()
    order = np.argsort(basket[first], kind="stable")
    keep = first[order]
    return basket[keep], items[keep]


def product_id(i: int) -> str:
    return f"P{i:07d}"


def write_shop(params: ShopParams, out: Path) -> dict:
    """Write the order file and ``<out>.truth.json``; returns the summary printed by main()."""
    shop = SyntheticShop(params)
    nouns = np.asarray(NOUNS, dtype=object)[shop.category % len(NOUNS)]
    names = np.asarray([f"{ADJECTIVES[a]} {noun} {i}" for i, (a, noun)
                        in enumerate(zip(shop.adjective, nouns))], dtype=object)
    cat_names = np.asarray([f"{NOUNS[c % len(NOUNS)]}s {c}" for c in range(params.categories)],
                           dtype=object)
    ids = np.asarray([product_id(i) for i in range(params.products)], dtype=object)
    prices = np.char.mod("%.2f", shop.price)
    lines = orders = 0
    opener = gzip.open if out.suffix == ".gz" else open
    with opener(out, "wt", newline="", encoding="utf-8", **_gz_level(out)) as fh:
        writer = csv.writer(fh)
        writer.writerow(["order_id", "product_id", "timestamp", "customer_id", "quantity",
                         "unit_price", "product_name", "category"])
        for chunk in shop.orders():
            it = chunk["product_id"]
            ts = np.datetime_as_string(chunk["timestamp"], unit="s")
            cust = chunk["customer_id"]
            cust_s = np.where(cust >= 0, np.char.add("C", cust.astype(str)), "")
            writer.writerows(zip(
                np.char.add("O", chunk["order_id"].astype(str)), ids[it], np.char.add(ts, "Z"),
                cust_s, chunk["quantity"], prices[it], names[it], cat_names[shop.category[it]]))
            lines += len(it)
            orders += len(np.unique(chunk["order_id"]))
    truth = shop.truth()
    truth["lines"], truth["orders"] = lines, orders
    Path(f"{out}.truth.json").write_text(json.dumps(truth))
    return {"lines": lines, "orders": orders, "groups": len(shop.groups)}


def _gz_level(out: Path) -> dict:
    # level 3: ~3x faster than the default 9 for a file a little larger
    return {"compresslevel": 3} if out.suffix == ".gz" else {}


def planted_recall(topk: dict[str, list[str]], groups: list[list[str]], k: int = 10) -> float:
    """Mean over group members with a shipped list of |mates in top k| / min(k, |mates|).

    ``topk`` maps a product id to its shipped list (product ids, best first); members without
    a list (not in the trained catalogue) are left out, so the figure is about what shipped.
    """
    vals = []
    for group in groups:
        for a in group:
            shipped = topk.get(a)
            if shipped is None:
                continue
            mates = set(group) - {a}
            vals.append(len(mates & set(shipped[:k])) / min(k, len(mates)))
    return float(np.mean(vals)) if vals else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, required=True)
    parser.add_argument("--lines", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    for name, kind in (("zipf", float), ("basket-mean", float), ("categories", int),
                       ("same-category", float), ("groups", int), ("planted", float),
                       ("customers", int), ("anonymous", float), ("repeat", float),
                       ("initial-share", float), ("days", int)):
        parser.add_argument(f"--{name}", type=kind)
    args = parser.parse_args(argv)
    extra = {k: v for k, v in vars(args).items()
             if v is not None and k not in ("products", "lines", "seed", "out")}
    try:
        params = ShopParams(args.products, args.lines, args.seed, **extra)
    except ValueError as exc:
        parser.error(str(exc))
    summary = write_shop(params, args.out)
    print(f"{summary['lines']:,} lines, {summary['orders']:,} orders, "
          f"{summary['groups']:,} planted groups -> {args.out} (+ .truth.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
