"""Benchmark: what lists for new products cost, next to the warm lists of a run (issue 17).

    python -m benchmarks.new_products [--orders FILE] [--epochs 1] [--new 1 100 1000]
        [--text-encoder NAME_OR_FOLDER [--text-cache DIR]]

Trains the bundle model briefly on an Online Retail file (the last 10 % of its products by
first sale are held out as "created after the run"), then prints, from the checkpoint the
run would write:

* the run-time step: content lists for every product without enough orders, against the
  warm lists' scoring of every published product (seconds and the ratio);
* the per-product task: checkpoint load, :func:`shop_recs.ml.newproducts.extend` and
  :func:`~shop_recs.ml.newproducts.model_lists` for 1, 100, 1000 new products (seconds,
  peak RSS growth), against the run's training time. With ``--text-encoder`` the model reads
  the encoder's vectors (the catalogue's from ``--text-cache`` when it holds them) and the task
  embeds the new products' names as the task does (the encoder loaded, an empty cache: the
  cost of products nobody has embedded yet).

No Django, no database: the task's queries (the serving run's lists, the names of the
products with lists, their availability) are not included. Figures only, never asserted.
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from shop_recs.ml.checkpoint import load_checkpoint, save_checkpoint
from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.newproducts import extend, model_lists
from shop_recs.ml.orders import read_orders
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.text import LazyEncoder, embed_products
from shop_recs.ml.topk import topk_rows
from shop_recs.ml.train import TrainConfig
from shop_recs.ml.types import ItemAttributes, ItemIndex, baskets_from_frame

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "online_retail"


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=Path,
                        default=DATA / "online_retail_2010-12_2011-12.csv.gz")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--new", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--text-encoder", default="", help="model name or folder")
    parser.add_argument("--text-cache", type=Path, default=None)
    args = parser.parse_args(argv)
    baskets, index, attrs = baskets_from_frame(read_orders([args.orders], "online_retail"))
    if args.text_encoder:
        t0 = time.perf_counter()
        vecs = embed_products(list(attrs.names), None, LazyEncoder(args.text_encoder),
                              args.text_cache)
        attrs = ItemAttributes(attrs.names, attrs.categories, attrs.prices, vecs)
        print(f"catalogue text vectors {vecs.shape} in {time.perf_counter() - t0:.1f} s")
    # the products first sold last are "new": the run knows them by name only
    first_sold = np.full(baskets.n_items, np.iinfo(np.int64).max)
    for b in range(len(baskets)):
        items = baskets.basket(b)
        first_sold[items] = np.minimum(first_sold[items], baskets.timestamps[b])
    late = np.argsort(first_sold, kind="stable")[-max(args.new):]
    known_items = np.setdiff1d(np.arange(baskets.n_items), late)
    keep = np.full(baskets.n_items, -1, np.int64)
    keep[known_items] = np.arange(len(known_items))
    train = baskets.remap_items(keep, len(known_items))
    train = train.select(train.sizes >= 1)
    known_attrs = attrs.take(known_items)
    published = train.item_counts() >= 2
    print(f"orders {len(train):,}, catalogue {len(known_items):,} "
          f"({int(published.sum()):,} with 2+ orders), held out as new {len(late):,}")
    t0 = time.perf_counter()
    net = BundleScorer(BundleModelConfig(n_items=0, use_history=False),
                       TrainConfig(epochs=args.epochs, time_budget_s=None, device="cpu",
                                   seed=0)).fit(train, known_attrs)
    train_s = time.perf_counter() - t0
    print(f"training         {train_s:8.1f} s ({args.epochs} epoch(s))")
    anchors = np.flatnonzero(published)
    t0 = time.perf_counter()
    topk_rows(net.score, [np.array([a]) for a in anchors], args.top_k)
    warm_s = time.perf_counter() - t0
    cold = np.flatnonzero(~published)
    t0 = time.perf_counter()
    model_lists(net, known_attrs, cold, published, published, args.top_k)
    cold_s = time.perf_counter() - t0
    print(f"run: warm lists  {warm_s:8.2f} s for {len(anchors):,} products; content lists "
          f"{cold_s:.2f} s for {len(cold):,} products "
          f"({cold_s / max(warm_s, 1e-9):.2f}x the warm step)")
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(tmp, net, ItemIndex(index.ids[known_items]))
        for m in sorted(args.new):
            before = rss_mb()
            t0 = time.perf_counter()
            scorer, _, _ = load_checkpoint(tmp)
            t_load = time.perf_counter() - t0
            new_attrs = attrs.take(late[:m])
            t_embed = 0.0
            if args.text_encoder:  # as the task: the run's encoder, texts not cached yet
                t1 = time.perf_counter()
                new_attrs.text_vectors = embed_products(
                    list(new_attrs.names), None, LazyEncoder(args.text_encoder),
                    Path(tmp) / f"cache-{m}")
                t_embed = time.perf_counter() - t1
            t1 = time.perf_counter()
            bigger, items = extend(scorer, new_attrs)
            t_extend = time.perf_counter() - t1
            full = ItemAttributes(*(np.concatenate([getattr(known_attrs, f), getattr(
                new_attrs, f)]) for f in ("names", "categories", "prices")))
            known = np.concatenate([published, np.zeros(m, bool)])
            model_lists(bigger, full, items, known, known, args.top_k)
            total = time.perf_counter() - t0
            print(f"task: {m:5d} new  {total:8.2f} s (load {t_load:.2f}, embed {t_embed:.2f}, "
                  f"extend {t_extend:.2f}, score {total - t_load - t_embed - t_extend:.2f}); "
                  f"{total / train_s:.3f}x training; peak RSS +{rss_mb() - before:.0f} MB")


if __name__ == "__main__":
    main()
