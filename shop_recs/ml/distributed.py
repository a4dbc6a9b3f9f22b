"""Data-parallel training: the loop of ``shop_recs.ml.train`` in N processes (torch.distributed).

:func:`fit` is ``train()`` for any ``TrainConfig.processes``; nothing else changes for its caller::

    result = fit(model, examples, TrainConfig(processes=2))  # 2 gloo processes on CPU
    result.processes, result.backend, result.shards            # provenance (ParallelTrainResult)

How it works. The calling process (a Celery worker, the benchmark) is the supervisor: it spawns
N ranks (``torch.multiprocessing``, spawn start method, rendezvous on a free loopback port),
NCCL with one GPU per rank on CUDA, gloo on CPU. Each rank trains a DistributedDataParallel copy
of the model on its shard of the baskets (a fixed-seed permutation cut in N, padded by repeating
like ``DistributedSampler``; per fold, so every rank takes the same number of steps) with a
per-rank batch of ``batch_size // N``: one step averages the gradients of the same global
batch size as one process would, so the learning-rate schedule and the step count match.
The supervisor does what needs the caller's world: it validates each epoch's weights with the
caller's ``validate`` (the metric goes back to every rank, so all stop early together), passes
progress to ``callback`` (which may write to a database), and keeps rank 0's best weights.

Supervision: a rank that raises or dies fails the training with its error
(:class:`DistributedTrainingError`) and the others are stopped; an exception in the supervisor
(a Celery soft time limit, a failing validation) stops them all too; ranks whose supervisor was
killed outright (a hard time limit) exit by themselves. Nothing is left running or unreaped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import math
import multiprocessing
import os
import queue
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp
from torch.nn.parallel import DistributedDataParallel

from shop_recs.ml.train import (EpochReport, Examples, TrainConfig, TrainResult, resolve_device,
                                train)

logger = logging.getLogger("shop_recs.ml.distributed")

__all__ = ["ParallelTrainResult", "DistributedTrainingError", "fit", "train_data_parallel",
           "resolve_processes", "shard_rows", "free_port"]

POLL_S = 0.1  # how often the supervisor looks at its ranks while waiting for a message
STOP_GRACE_S = 5.0  # SIGTERM, then this long, then SIGKILL
EXIT_WAIT_S = 60.0  # after the result, how long the ranks may take to leave the group
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)  # a rank waits this long for its peers
# (a peer that died is noticed by the supervisor, which stops the rest long before)


class DistributedTrainingError(RuntimeError):
    """A training process failed (raised, was killed, or exited without a result)."""


@dataclass
class ParallelTrainResult(TrainResult):
    processes: int = 1
    backend: str = ""
    shards: list = field(default_factory=list)  # per rank: the basket rows it trained on


def resolve_processes(setting: int | str, device: str = "auto") -> int:
    """How many training processes ``SHOP_RECS["TRAINING_PROCESSES"]`` asks for on this worker.

    ``"auto"``: one per CUDA device when there are several, else 1. A number: that many (on
    CUDA one per device, so never more than the worker has). ``device`` as in TrainConfig.
    """
    on_cuda = resolve_device(device).type == "cuda"
    gpus = torch.cuda.device_count() if on_cuda else 0
    if setting == "auto":
        return max(gpus, 1)
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"TRAINING_PROCESSES must be a whole number >= 1 or 'auto', "
                         f"not {setting!r}")
    if on_cuda and setting > gpus:
        logger.warning("TRAINING_PROCESSES=%d but this worker has %d CUDA devices: using %d",
                       setting, gpus, gpus)
        return gpus
    return setting


def free_port() -> int:
    """A free TCP port on loopback for the rendezvous (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shard_rows(n: int, folds: np.ndarray | None, rank: int, world: int, seed: int) -> np.ndarray:
    """Rows (of ``n`` baskets) that rank ``rank`` of ``world`` trains on.

    Each fold's rows are permuted with ``seed`` (the same on every rank), padded by repeating
    to a multiple of ``world`` and dealt out: the shards are disjoint but for that padding
    (< ``world`` rows per fold), cover every row, and have equal sizes per fold - so every
    rank has the same number of batches per fold and no collective waits for a missing step.
    """
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if folds is None else [np.flatnonzero(folds == f)
                                                   for f in np.unique(folds)]
    out = []
    for rows in groups:
        rows = rng.permutation(rows)
        rows = np.resize(rows, len(rows) + (-len(rows)) % world)  # pads by repeating
        out.append(rows[rank::world])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


# -- moving the baskets to the ranks --------------------------------------------------------------
def _pack(lists: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged item lists -> (indptr [n+1], items [nnz]); tensors travel in shared memory."""
    sizes = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    items = (np.concatenate(lists).astype(np.int64) if lists else np.zeros(0, np.int64))
    return torch.from_numpy(indptr), torch.from_numpy(items)


def _pack_examples(ex: Examples) -> dict:
    return {"baskets": _pack(ex.baskets),
            "histories": _pack(ex.histories) if ex.histories is not None else None,
            "folds": torch.from_numpy(np.asarray(ex.folds)) if ex.folds is not None else None}


def _unpack_examples(packed: dict, rows: np.ndarray) -> Examples:
    def take(pair):
        indptr, items = pair[0].numpy(), pair[1].numpy()
        return [items[indptr[r]:indptr[r + 1]] for r in rows]
    folds = packed["folds"]
    return Examples(take(packed["baskets"]),
                    take(packed["histories"]) if packed["histories"] is not None else None,
                    folds.numpy()[rows] if folds is not None else None)


def _params(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """The trained weights (buffers never change while training) as arrays: these travel by
    value, since a rank may exit before the supervisor reads them (a tensor in shared memory
    would need its sender alive)."""
    return {name: p.detach().cpu().numpy().copy() for name, p in module.named_parameters()}


def _load_params(module: torch.nn.Module, params: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(params[name]))


# -- a rank ----------------------------------------------------------------------------------------
class _AgreedClock:
    """Seconds since the start, agreed by every rank once per training step (the max of theirs).

    The time budget and the learning-rate schedule read it, so all ranks stop on the same step
    and step with the same rate; one 8-byte all-reduce per step, in the model's forward.
    """

    def __init__(self, module: torch.nn.Module, device: torch.device, enabled: bool) -> None:
        self.t0, self.value = time.perf_counter(), 0.0
        self._buf = torch.zeros(1, dtype=torch.float64, device=device)
        if enabled:
            module.register_forward_pre_hook(self._sync)

    def _sync(self, module, args) -> None:
        if module.training:
            self._buf.fill_(time.perf_counter() - self.t0)
            dist.all_reduce(self._buf, op=dist.ReduceOp.MAX)
            self.value = float(self._buf.item())

    def __call__(self) -> float:
        return self.value


def _exit_with_parent(parent: int) -> None:
    """Exit when the supervisor is gone (SIGKILLed by a hard time limit): no orphans.

    torch's spawn also asks the kernel for a SIGINT on the parent's death, but that only acts
    once the main thread is back in Python: a rank waiting in a collective (NCCL does not
    notice a dead peer) would linger. This thread ends it regardless.
    """
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="shop_recs-parent-watch").start()


def _rank_main(rank: int, world: int, port: int, backend: str, parent: int,
               model: torch.nn.Module, packed: dict, config: TrainConfig, to_parent, to_rank0,
               has_validate: bool, has_callback: bool) -> None:
    """One rank: join the group, train its shard with DDP, rank 0 reports to the supervisor."""
    _exit_with_parent(parent)
    # the [CLS] parameter's gradient comes from an expand(): a harmless layout notice per rank
    warnings.filterwarnings("ignore", message="Grad strides do not match")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one machine: the ranks talk on loopback
    os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=COLLECTIVE_TIMEOUT)
    try:
        n = len(packed["baskets"][0]) - 1
        folds = packed["folds"].numpy() if packed["folds"] is not None else None
        rows = shard_rows(n, folds, rank, world, config.seed)
        to_parent.put(("shard", rank, rows))
        logger.debug("rank %d of %d: %d baskets", rank, world, len(rows))
        examples = _unpack_examples(packed, rows)
        # the weights arrived in memory shared with the supervisor: train private copies
        # (the buffers - features, item-item prior - are only read, and stay shared)
        for p in model.parameters():
            p.data = p.data.clone()
        device = resolve_device(config.device)
        model.to(device)
        # the buffers are equal on every rank: no broadcast of them at start nor at each step
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, [name for name, _ in model.named_buffers()])
        # find_unused_parameters: some parameters (history, prior) are unused in some models
        ddp = DistributedDataParallel(model, device_ids=[rank] if backend == "nccl" else None,
                                      find_unused_parameters=True)
        clock = _AgreedClock(ddp, device, config.time_budget_s is not None)

        def validate(_model) -> float | None:
            metric = torch.full((1,), math.nan, dtype=torch.float64, device=device)
            if rank == 0:
                to_parent.put(("validate", _params(model)))
                value = to_rank0.get()
                metric.fill_(math.nan if value is None else float(value))
            dist.broadcast(metric, 0)  # every rank takes the same early-stopping decision
            value = float(metric.item())
            return None if math.isnan(value) else value

        def callback(report: EpochReport) -> None:
            to_parent.put(("report", report))

        # the seed also draws each basket's context/targets: one stream per rank
        result = train(ddp, examples, dataclasses.replace(config, seed=config.seed + rank),
                       validate if has_validate else None,
                       callback if has_callback and rank == 0 else None, clock=clock)
        if rank == 0:
            to_parent.put(("done", result, _params(model)))
        dist.barrier()  # no rank leaves the group while a peer still uses it
    finally:
        dist.destroy_process_group()
    # leave without the interpreter's teardown: rank 0 hosts the rendezvous store, whose C++
    # thread could be destroyed still running at exit (std::terminate, SIGABRT) after a
    # complete run; what this rank sent is flushed to the pipe first
    to_parent.close()
    to_parent.join_thread()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


# -- the supervisor --------------------------------------------------------------------------------
def _stop(processes) -> None:
    """Terminate what still runs, then reap every process (no zombies)."""
    for p in processes:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for p in processes:
        p.join(max(deadline - time.monotonic(), 0.0))
        if p.is_alive():
            p.kill()
            p.join()


@contextlib.contextmanager
def _may_start_children():
    """Let a Celery prefork pool process start the ranks.

    multiprocessing calls a pool process "daemonic" and refuses it children, because a daemonic
    process is ended without waiting for them and they could outlive it. Ours cannot: the
    supervisor stops and reaps them in a ``finally``, and they exit by themselves when it dies.
    """
    me = multiprocessing.current_process()
    daemonic = me.daemon
    if daemonic:
        me.daemon = False
    try:
        yield
    finally:
        if daemonic:
            me.daemon = True


def _failure(exc: Exception, world: int) -> DistributedTrainingError:
    if isinstance(exc, tmp.ProcessRaisedException):
        logger.error("training process %d of %d failed:%s", exc.error_index, world, exc)
        last = [line for line in str(exc).strip().splitlines() if line.strip()][-1]
        return DistributedTrainingError(
            f"training process {exc.error_index} of {world} failed: {last.strip()}")
    if isinstance(exc, tmp.ProcessExitedException):
        how = (f"was killed ({exc.signal_name}; out of memory?)" if exc.signal_name
               else f"exited with status {exc.exit_code}")
        return DistributedTrainingError(f"training process {exc.error_index} of {world} {how}")
    return DistributedTrainingError(str(exc))


def fit(model: torch.nn.Module, examples: Examples, config: TrainConfig, validate=None,
        callback=None) -> TrainResult:
    """``train()`` in one process, or in ``config.processes`` ranks when that is more."""
    if config.processes > 1:
        return train_data_parallel(model, examples, config, validate, callback)
    return train(model, examples, config, validate, callback)


def train_data_parallel(model: torch.nn.Module, examples: Examples, config: TrainConfig,
                        validate=None, callback=None) -> ParallelTrainResult:
    """``train()`` in ``config.processes`` ranks; same arguments, result and side effects."""
    world = config.processes
    device = resolve_device(config.device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and world > torch.cuda.device_count():
        raise DistributedTrainingError(f"{world} training processes need as many CUDA devices; "
                                       f"this worker has {torch.cuda.device_count()}")
    threads = config.threads or max(1, (os.cpu_count() or 1) // world)
    rank_config = dataclasses.replace(config, processes=1, threads=threads,
                                      batch_size=max(1, config.batch_size // world))
    ctx = tmp.get_context("spawn")
    to_parent, to_rank0 = ctx.Queue(), ctx.Queue()
    model.cpu()  # the ranks receive it in shared memory (and move it to their device)
    args = (world, free_port(), backend, os.getpid(), model, _pack_examples(examples),
            rank_config, to_parent, to_rank0, validate is not None, callback is not None)
    logger.info("data-parallel training: %d %s processes", world, backend)
    t0 = time.perf_counter()
    with _may_start_children():
        procs = tmp.start_processes(_rank_main, args, nprocs=world, join=False,
                                    start_method="spawn")
    model.to(device)  # the supervisor validates each epoch where one process would
    shards: dict[int, np.ndarray] = {}
    done = None
    try:
        while done is None:
            try:
                kind, *payload = to_parent.get(timeout=POLL_S)
            except queue.Empty:
                if procs.join(timeout=0):  # all exited cleanly; a result may still be in transit
                    try:
                        kind, *payload = to_parent.get(timeout=1.0)
                    except queue.Empty:
                        raise DistributedTrainingError(
                            "the training processes exited without a result") from None
                else:
                    continue
            if kind == "shard":
                shards[payload[0]] = payload[1]
            elif kind == "report":
                callback(payload[0])
            elif kind == "validate":
                _load_params(model, payload[0])
                to_rank0.put(validate(model))
            elif kind == "done":
                done = payload
        # they only leave the group now (join() returns when any one exits: wait for all);
        # one that fails now still fails the training, _stop ends a straggler
        deadline = time.monotonic() + EXIT_WAIT_S
        while not procs.join(timeout=POLL_S) and time.monotonic() < deadline:
            pass
    except (tmp.ProcessRaisedException, tmp.ProcessExitedException) as exc:
        raise _failure(exc, world) from None
    finally:
        _stop(procs.processes)
        to_rank0.cancel_join_thread()  # nobody may read what is left for a rank that died
        to_parent.close()
        to_rank0.close()
    result, params = done
    _load_params(model, params)
    model.eval()
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(TrainResult)}
    fields.update(train_s=time.perf_counter() - t0, device=str(device))
    return ParallelTrainResult(**fields, processes=world, backend=backend,
                               shards=[shards.get(r) for r in range(world)])
