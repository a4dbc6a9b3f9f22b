"""Training throughput at catalogue scale on a synthetic shop (torch, numpy, scipy; no Django).

What ``python -m shop_recs.ml.benchmark_speed --synthetic 1000000x20000000`` runs: it builds
the order arrays in process (``shop_recs.ml.synthetic``), the real bundle model for that
catalogue (attributes, a sparse item-item prior shaped like the pruned EASE one) and runs a
fixed number of real training steps (``train.train_step``: the model, the loss the scorer
would pick, AdamW, clipping) per entry, e.g. ``cpu:2/sampled cuda/sampled cuda/full``.

Per entry it reports examples/s and seconds per step (the step alone), the seconds to draw a
batch (python, timed apart), an epoch's seconds *extrapolated* from them (steps per epoch =
baskets of 2+ items / batch size; each step plus its batch) and peak memory: the process's
peak RSS during the entry (Linux resets it per entry; it includes the shop held in memory,
given as ``rss_before_mb``) and CUDA's peak allocated. Every entry starts from the same initial weights.

Shortcuts, said in the output: the prior's *structure* is realistic (row ``i`` holds about
``3 x orders(i)`` entries, at most ``sparse.KEEP``, columns drawn by popularity) but its values
are random, since fitting EASE on 20M lines is the pipeline's stage, not the model's; customer
histories are drawn from popularity (lengths geometric, mean 20, 30 % anonymous); the measured
steps use baskets drawn at random from the whole shop.
"""

from __future__ import annotations

import copy
import math
import resource
import time

import numpy as np
import scipy.sparse as sp
import torch

from shop_recs.ml.model import BundleModel, BundleModelConfig
from shop_recs.ml.sampled import NEGATIVES, NegativeSampler, use_sampled_softmax
from shop_recs.ml.sparse import KEEP, use_dense
from shop_recs.ml.synthetic import draw, synthetic_histories, synthetic_orders
from shop_recs.ml.train import (Examples, TrainConfig, batches, make_optimizer, resolve_device,
                                train_step)

__all__ = ["parse_size", "build", "measure_steps"]


def parse_size(text: str) -> tuple[int, int]:
    """``PRODUCTSxLINES`` with optional k/m suffixes -> (products, lines)."""
    def num(part: str) -> int:
        part = part.strip().lower()
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
        value = float(part[:-1] if part[-1:] in "km" else part) * scale
        if value < 2 or value != int(value):
            raise ValueError(f"not a size: {part!r}")
        return int(value)
    products, sep, lines = text.partition("x")
    if not sep:
        raise ValueError(f"expected PRODUCTSxLINES (e.g. 1mx20m), not {text!r}")
    return num(products), num(lines)


def synthetic_prior(counts: np.ndarray, popularity: np.ndarray, rng: np.random.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSR (crow, col, val) shaped like the pruned EASE prior (see the module docstring)."""
    lengths = np.minimum(3 * counts.astype(np.int64), KEEP)
    crow = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    cols = draw(popularity, int(crow[-1]), rng)
    vals = rng.normal(0.0, 0.05, size=len(cols)).astype(np.float32)
    return torch.from_numpy(crow), torch.from_numpy(cols.astype(np.int64)), torch.from_numpy(vals)


def build(products: int, lines: int, n_examples: int, seed: int = 0, d_model: int = 64) -> dict:
    """The shop, the model (CPU, initial weights), ``n_examples`` training examples and the
    proposal counts; plus what was built, for the report."""
    t0 = time.perf_counter()
    shop = synthetic_orders(products, lines, seed=seed)
    gen_s = time.perf_counter() - t0
    b = shop.baskets
    counts = np.bincount(b.items, minlength=products)
    rng = np.random.default_rng(seed)
    sparse = not use_dense(products)
    cfg = BundleModelConfig(n_items=products, n_words=int(shop.words.max()), max_words=4,
                            n_categories=int(shop.category.max()), n_price_bands=10,
                            d_model=d_model, sparse_prior=sparse)
    torch.manual_seed(seed)
    model = BundleModel(cfg)
    model.set_features(torch.from_numpy(shop.words), torch.from_numpy(shop.category),
                       torch.from_numpy(shop.price_band))
    prior = synthetic_prior(counts, shop.popularity, rng)
    if sparse:  # the two out-of-fold priors share the full one's arrays (same structure)
        model.set_sparse_prior(prior, [prior, prior])
    else:
        crow, col, val = (t.numpy() for t in prior)
        dense = torch.from_numpy(sp.csr_matrix((val, col, crow), shape=(products, products))
                                 .toarray())
        model.set_prior(dense, torch.stack([dense, dense]))
    rows = np.flatnonzero(b.sizes >= 2)
    pick = rng.choice(rows, size=n_examples, replace=len(rows) < n_examples)
    examples = Examples([b.basket(r) for r in pick],
                        synthetic_histories(shop.popularity, n_examples, seed=seed),
                        rng.integers(0, 2, size=n_examples))
    info = {"products": products, "lines": int(len(b.items)), "baskets": len(b),
            "training_examples": int(len(rows)), "prior_nnz": int(len(prior[1])),
            "sparse_prior": sparse, "sampled_by_rule": use_sampled_softmax(products),
            "generate_s": round(gen_s, 2), "build_s": round(time.perf_counter() - t0, 2),
            "d_model": d_model,
            "note": "prior structure realistic, values random; histories drawn from "
                    "popularity; epoch seconds extrapolated from the measured steps"}
    return {"model": model, "examples": examples, "counts": counts, "info": info}


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak() -> float | None:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM); returns
    the RSS now (MB), None where the platform has neither."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    """Peak RSS since :func:`_reset_peak` (else of the whole process), MB."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KB on Linux


def measure_steps(built: dict, device: str, threads: int | None, loss: str, steps: int,
                  warmup: int, batch_size: int, negatives: int = NEGATIVES,
                  seed: int = 0) -> dict:
    """``warmup`` untimed then ``steps`` timed training steps of a copy of the built model."""
    if loss not in ("sampled", "full"):
        raise ValueError(f"loss must be sampled or full, not {loss!r}")
    dev = resolve_device(device)
    rss_before = _reset_peak()
    if threads:
        torch.set_num_threads(threads)
    model = copy.deepcopy(built["model"]).to(dev).train()
    cfg = TrainConfig(batch_size=batch_size, seed=seed, negatives=negatives if loss == "sampled"
                      else 0)
    sampler = (NegativeSampler(built["counts"], negatives, cfg.negative_alpha)
               if loss == "sampled" else None)
    opt = make_optimizer(model, cfg, dev, sampler is not None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(seed)
    it = batches(built["examples"], cfg, np.random.default_rng(seed))
    t0 = time.perf_counter()  # drawing batches (python, one process) is timed on its own
    todo = [next(it) for _ in range(warmup + steps)]
    draw_s = (time.perf_counter() - t0) / len(todo)
    losses = []
    for batch in todo[:warmup]:
        losses.append(train_step(model, opt, batch, dev, sampler))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for batch in todo[warmup:]:
        losses.append(train_step(model, opt, batch, dev, sampler))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    per_step = seconds / max(steps, 1)
    per_epoch = math.ceil(built["info"]["training_examples"] / batch_size)
    row = {"device": dev.type, "threads": torch.get_num_threads() if dev.type == "cpu" else None,
           "loss": loss, "negatives": cfg.negatives, "batch_size": batch_size,
           "warmup_steps": warmup, "steps": steps, "s_per_step": per_step,
           "examples_per_s": steps * batch_size / max(seconds, 1e-9),
           "draw_s_per_batch": draw_s, "steps_per_epoch": per_epoch,
           # an epoch = its steps, each with its batch drawn in the training process
           "epoch_s_extrapolated": (per_step + draw_s) * per_epoch,
           "first_loss": float(losses[0]), "last_loss": float(losses[-1]),
           "rss_before_mb": None if rss_before is None else round(rss_before, 1),
           "peak_rss_mb": round(_peak_mb(), 1)}  # this entry's peak (the shop included)
    if dev.type == "cuda":
        row["gpu"] = torch.cuda.get_device_name(0)
        row["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    del model, opt
    return row
