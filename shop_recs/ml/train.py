"""Model-agnostic training loop for set-completion models, plus the scorer that wraps it.

``train()`` knows nothing about the bundle model beyond "``model(context, history)`` returns
logits over all rows, padding at 0": it draws examples from baskets (a random subset of each
basket is the context, the rest are targets), runs a full-softmax loss (or, with
``negatives``, a sampled softmax: ``shop_recs.ml.sampled``), reports progress through
a callback, evaluates on validation after each epoch, stops early or at a time budget, and keeps
the best epoch's weights::

    result = train(model, examples, TrainConfig(time_budget_s=240), validate=fn, callback=cb)
    result.history  # [EpochReport(epoch, loss, val_metric, examples_per_s, ...), ...]

:class:`BundleScorer` (in ``shop_recs.ml.scorer``) is the Scorer-protocol front end that builds
the model, its features and the examples from :class:`~shop_recs.ml.types.Baskets`.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from shop_recs.ml.sampled import NegativeSampler, sampled_set_loss

logger = logging.getLogger("shop_recs.ml.train")

__all__ = ["TrainConfig", "EpochReport", "TrainResult", "Examples", "set_seed",
           "resolve_device", "train", "pad_batch", "batch_loss", "make_sampler", "train_step",
           "make_optimizer",
           "batches"]


@dataclass
class TrainConfig:
    epochs: int = 40  # upper bound; early stopping and the time budget usually end sooner
    batch_size: int = 256  # baskets per step
    lr: float = 2e-3  # AdamW peak learning rate (cosine decay to 10%, see train())
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    max_context: int = 48  # context items fed to the encoder (a random subset of larger ones)
    max_targets: int = 32  # targets per basket in the loss
    max_history: int = 256  # most recent history entries (summary token + repeat head)
    p_single: float = 0.35  # share of examples with a single context item (the product page)
    p_leave_one: float = 0.25  # share with all but one item as context (the cart)
    p_no_history: float = 0.25  # share of examples shown without history (anonymous visitors)
    patience: int = 3  # epochs without validation gain before stopping
    time_budget_s: float | None = 200.0  # wall-clock limit of the whole loop (None = no limit)
    seed: int = 0  # seeds python, numpy and torch (set_seed)
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch CPU threads (None = leave as is)
    log_every: int = 20  # steps between batch progress callbacks
    processes: int = 1  # > 1: data-parallel in that many processes (shop_recs.ml.distributed)
    # > 0: sampled softmax with this many shared negatives per batch (shop_recs.ml.sampled;
    # BundleScorer sets it above sampled.FULL_SOFTMAX_MAX_ITEMS); 0 = full softmax
    negatives: int = 0
    negative_alpha: float = 0.75  # proposal ~ (popularity + 1) ** alpha

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EpochReport:
    epoch: int  # 1-based
    loss: float  # mean training loss of the epoch
    val_metric: float | None  # validation metric after the epoch (higher is better)
    examples_per_s: float
    elapsed_s: float
    fraction: float  # progress 0..1 (max of epochs done and time budget used)
    kind: str = "epoch"  # "epoch" or "batch" (mid-epoch progress; val_metric is None)


@dataclass
class TrainResult:
    best_epoch: int
    best_metric: float | None
    history: list[EpochReport] = field(default_factory=list)
    stopped: str = "epochs"  # epochs | early_stopping | time_budget
    train_s: float = 0.0
    device: str = "cpu"


@dataclass
class Examples:
    """Baskets to learn from: item lists (catalogue indices) and each basket's history."""

    baskets: list[np.ndarray]  # int [n_i] distinct items per basket (size >= 2)
    histories: list[np.ndarray] | None = None  # int [h_i] earlier items, most recent first
    folds: np.ndarray | None = None  # int [n] fold of each basket; a batch's fold is passed
    # to model(..., fold=f)


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) - the one seeding helper."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    return torch.device(device)


def pad_batch(rows: Sequence[np.ndarray], width: int | None = None) -> torch.Tensor:
    """Item lists -> LongTensor [B, L] of rows ``item + 1`` (0 = padding)."""
    L = max([len(r) for r in rows] + [1]) if width is None else width
    out = np.zeros((len(rows), L), dtype=np.int64)
    for i, r in enumerate(rows):
        r = np.asarray(r)[:L]
        out[i, :len(r)] = r + 1
    return torch.from_numpy(out)


def _draw(items: np.ndarray, rng: np.random.Generator, cfg: TrainConfig
          ) -> tuple[np.ndarray, np.ndarray]:
    """Split one basket into (context, targets) the way the two serving cases look."""
    items = rng.permutation(items)
    n, u = len(items), rng.random()
    k = 1 if u < cfg.p_single else n - 1 if u < cfg.p_single + cfg.p_leave_one else int(rng.integers(1, n))
    return items[:min(k, cfg.max_context)], items[k:k + cfg.max_targets]


def batches(ex: Examples, cfg: TrainConfig, rng: np.random.Generator):
    """Shuffled batches of (context, targets, history, fold).

    With folds, every batch is drawn from one fold (``fold`` is that fold's number), so the
    model reads one out-of-fold prior per batch instead of scattering rows between them.
    """
    if ex.folds is None:
        groups = [(None, rng.permutation(len(ex.baskets)))]
    else:
        groups = [(int(f), rng.permutation(np.flatnonzero(ex.folds == f)))
                  for f in np.unique(ex.folds)]
    chunks = [(f, rows[s:s + cfg.batch_size]) for f, rows in groups
              for s in range(0, len(rows), cfg.batch_size)]
    for k in rng.permutation(len(chunks)):
        fold, rows = chunks[k]
        drawn = [_draw(ex.baskets[r], rng, cfg) for r in rows]
        ctx = pad_batch([c for c, _ in drawn])
        tgt = pad_batch([t for _, t in drawn])
        hist = None
        if ex.histories is not None:
            hide = rng.random(len(rows)) < cfg.p_no_history
            hist = pad_batch([ex.histories[r][:cfg.max_history] if not h else ex.histories[r][:0]
                              for r, h in zip(rows, hide)])
        yield ctx, tgt, hist, fold


def set_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over baskets of the mean -log p(target); logits [B, N+1], targets [B, T] (0 = pad)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    mask = targets > 0
    # padding targets point at row 0 (logit -inf): zero them with where(), not a product (nan)
    picked = torch.where(mask, logp.gather(1, targets), torch.zeros((), device=logp.device))
    return -(picked.sum(1) / mask.sum(1).clamp(min=1)).mean()


def make_sampler(model: nn.Module, examples: Examples, config: TrainConfig
                 ) -> NegativeSampler | None:
    """The shared-negative sampler of a sampled run (None: full softmax). The proposal counts
    the examples' items over the model's catalogue (``model.config.n_items``)."""
    if config.negatives <= 0:
        return None
    n_items = getattr(model, "module", model).config.n_items  # DDP wraps the model
    items = (np.concatenate(examples.baskets) if examples.baskets else np.zeros(0, np.int64))
    return NegativeSampler(np.bincount(items.astype(np.int64), minlength=n_items)[:n_items],
                           config.negatives, config.negative_alpha)


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device,
                   sampled: bool) -> torch.optim.Optimizer:
    """AdamW; fused on CUDA, and on CPU too for a sampled (large) catalogue, where the update
    of the n x d item table costs 6x less fused (1M products: 0.18 s against 1.1 s a step).
    A full-softmax run on CPU keeps the unfused update, so small catalogues train as before."""
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                             fused=device.type == "cuda" or sampled)


def batch_loss(model: nn.Module, ctx: torch.Tensor, tgt: torch.Tensor,
               hist: torch.Tensor | None, fold: int | None,
               sampler: NegativeSampler | None = None) -> torch.Tensor:
    """The loss of one batch: the full-softmax set loss, or the sampled one with ``sampler``
    (then the model is asked for its logits at the targets and the shared negatives only)."""
    extra = {"fold": fold} if fold is not None else {}
    if sampler is None:
        return set_loss(model(ctx, hist, **extra), tgt)
    shared, log_q_shared = sampler.draw(ctx.device)
    logits = model(ctx, hist, columns=tgt, shared=shared, **extra)  # [B, T + K]
    return sampled_set_loss(logits, tgt, shared, sampler.log_expected(tgt), log_q_shared)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, batch: tuple, device: torch.device,
               sampler: NegativeSampler | None = None) -> torch.Tensor:
    """One optimiser step on ``batch`` = (context, targets, history, fold) from
    :func:`batches`; returns the detached loss (still on the device: no sync)."""
    ctx, tgt, hist, fold = batch
    ctx, tgt = ctx.to(device, non_blocking=True), tgt.to(device, non_blocking=True)
    hist = hist.to(device, non_blocking=True) if hist is not None else None
    amp = device.type == "cuda"  # mixed precision only where it pays (and is exact enough)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        loss = batch_loss(model, ctx, tgt, hist, fold, sampler)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.detach()


def train(model: nn.Module, examples: Examples, config: TrainConfig,
          validate: Callable[[nn.Module], float] | None = None,
          callback: Callable[[EpochReport], None] | None = None,
          clock: Callable[[], float] | None = None) -> TrainResult:
    """Fit ``model`` on ``examples``; returns the report, leaves the best weights loaded.

    One process: ``config.processes > 1`` goes through ``shop_recs.ml.distributed.fit``, whose
    ranks run this loop and pass ``clock`` (seconds since the start, equal on every rank): the
    time budget and the learning-rate schedule then end and decay on the same step everywhere.
    """
    if config.processes > 1:
        raise ValueError("train() runs in one process; call shop_recs.ml.distributed.fit "
                         f"for {config.processes} processes")
    set_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    model.to(device)
    sampler = make_sampler(model, examples, config)
    opt = make_optimizer(model, config, device, sampler is not None)
    steps_per_epoch = math.ceil(len(examples.baskets) / config.batch_size)
    total = max(config.epochs * steps_per_epoch, 1)
    rng = np.random.default_rng(config.seed)
    result = TrainResult(best_epoch=0, best_metric=None, device=str(device))
    best_state, bad_epochs, t0 = None, 0, time.perf_counter()
    elapsed = clock or (lambda: time.perf_counter() - t0)

    def lr_factor(step: int) -> float:
        # cosine decay to 10% over whichever ends first, the epochs or the time budget, so a
        # time-budgeted run still anneals (without a budget it is deterministic per step)
        done = step / total
        if config.time_budget_s:
            done = max(done, elapsed() / config.time_budget_s)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)

    def fraction(epoch_done: float) -> float:
        by_time = (elapsed() / config.time_budget_s
                   if config.time_budget_s else 0.0)
        return min(1.0, max(epoch_done / config.epochs, by_time))

    for epoch in range(1, config.epochs + 1):
        model.train()
        t_epoch, seen, n_steps = time.perf_counter(), 0, 0
        loss_sum = torch.zeros((), device=device)  # summed on the device: no sync per step
        out_of_time = False
        for step, batch in enumerate(batches(examples, config, rng), 1):
            loss = train_step(model, opt, batch, device, sampler)
            sched.step()
            seen += batch[0].shape[0]
            loss_sum += loss
            n_steps += 1
            if callback and step % config.log_every == 0:
                rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
                callback(EpochReport(epoch, loss_sum.item() / n_steps, None, rate,
                                     time.perf_counter() - t0,
                                     fraction(epoch - 1 + step / steps_per_epoch), "batch"))
            if config.time_budget_s and elapsed() > config.time_budget_s:
                out_of_time = True
                break
        mean_loss = loss_sum.item() / max(n_steps, 1)  # waits for the device's last step
        rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
        metric = validate(model) if validate else None
        report = EpochReport(epoch, mean_loss, metric, rate,
                             time.perf_counter() - t0, fraction(epoch))
        result.history.append(report)
        logger.info("epoch %d loss %.4f val %s %.0f ex/s", epoch, report.loss, metric, rate)
        if callback:
            callback(report)
        if metric is None or result.best_metric is None or metric > result.best_metric:
            result.best_epoch, result.best_metric = epoch, metric
            best_state, bad_epochs = copy.deepcopy(model.state_dict()), 0
        else:
            bad_epochs += 1
        if out_of_time:
            result.stopped = "time_budget"
            break
        if bad_epochs >= config.patience:
            result.stopped = "early_stopping"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.train_s = time.perf_counter() - t0
    return result
