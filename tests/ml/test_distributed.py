"""Data-parallel training (shop_recs.ml.distributed): 2 gloo processes on CPU.

Each test that trains starts two real ranks (spawned python processes): seconds each.
"""

import itertools
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

from shop_recs.ml.distributed import (DistributedTrainingError, ParallelTrainResult, fit,
                                      resolve_processes, shard_rows)
from shop_recs.ml.evaluate import anchor_queries, complete_queries, evaluate
from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.train import Examples, TrainConfig

TINY = BundleModelConfig(n_items=0, d_model=32, n_heads=2, n_layers=1, dropout=0.0)
# same figures within this much (absolute) between 1 and 2 processes: the two runs see the
# baskets in different orders and draw different contexts, as two seeds of one process do
TOLERANCE = 0.05


def tiny_train(**kw) -> TrainConfig:
    base = dict(epochs=6, batch_size=64, lr=5e-3, threads=1, time_budget_s=None, patience=50,
                device="cpu", log_every=2)
    base.update(kw)
    return TrainConfig(**base)


def spawned_children(parent: int | None = None) -> set[int]:
    """Processes of ``parent`` (us) started by multiprocessing's spawn (zombies included)."""
    parent = os.getpid() if parent is None else parent
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == parent and (state == "Z" or b"spawn_main" in cmdline):
            out.add(int(stat.parent.name))
    return out


@pytest.fixture
def no_leftovers():
    before = spawned_children()
    yield
    assert spawned_children() - before == set(), "training processes left running or unreaped"


def test_shards_are_disjoint_equal_and_cover_every_basket():
    folds = np.random.default_rng(0).integers(0, 2, 101)
    shards = [shard_rows(101, folds, r, 2, seed=3) for r in range(2)]
    assert len(shards[0]) == len(shards[1])
    for f in (0, 1):  # the same number of rows per fold: the same batches per fold
        assert (folds[shards[0]] == f).sum() == (folds[shards[1]] == f).sum()
    assert set(shards[0]) | set(shards[1]) == set(range(101))
    assert len(set(shards[0]) & set(shards[1])) <= 2  # the padding, at most one per fold
    assert np.array_equal(shard_rows(101, folds, 1, 2, seed=3), shards[1])  # fixed by the seed
    assert not np.array_equal(shard_rows(101, folds, 1, 2, seed=4), shards[1])
    assert sorted(shard_rows(7, None, 0, 1, seed=0)) == list(range(7))


def test_two_gloo_processes_match_one(data, no_leftovers):
    baskets, index, attrs = data
    rows = np.arange(len(baskets))
    fit_on, test = baskets.select(rows % 5 != 0), baskets.select(rows % 5 == 0)
    val = fit_on.select(np.arange(len(fit_on)) % 6 == 0)
    pop = fit_on.item_counts()
    queries = (complete_queries(test, 0), anchor_queries(test, 0))
    runs, reports = {}, {}
    for processes in (1, 2):
        reports[processes] = []
        runs[processes] = BundleScorer(TINY, tiny_train(processes=processes)).fit(
            fit_on, attrs, val=val, callback=reports[processes].append)
    one, two = runs[1], runs[2]
    assert isinstance(two.result, ParallelTrainResult)
    assert (two.result.processes, two.result.backend) == (2, "gloo")
    # every epoch was validated and reported by the supervisor, as in one process
    assert [h.epoch for h in two.result.history] == [h.epoch for h in one.result.history]
    assert all(h.val_metric is not None for h in two.result.history)
    assert [r.epoch for r in reports[2] if r.kind == "epoch"] == list(range(1, 7))
    # each rank trained on its own half of the training baskets (the examples: size >= 2)
    n_examples = int((fit_on.sizes >= 2).sum())
    a, b = (set(s.tolist()) for s in two.result.shards)
    assert a | b == set(range(n_examples)) and len(a & b) <= 2
    assert abs(len(a) - len(b)) <= 2 and len(a) < n_examples
    # the same quality within the tolerance, and the planted pair still ranks first
    assert abs(one.result.best_metric - two.result.best_metric) <= TOLERANCE
    for q in queries:
        m1, m2 = evaluate(one, q, pop), evaluate(two, q, pop)
        for key in ("hr", "ndcg", "recall"):
            assert abs(m1[key] - m2[key]) <= TOLERANCE, (key, m1[key], m2[key])
    p0, p1 = index.index_of("P00"), index.index_of("P01")
    assert int(np.argmax(two.score([np.array([p0])])[0])) == p1
    assert not np.allclose(one.score([np.array([p0])]), two.score([np.array([p0])]))


class FailsOnRankOne(nn.Module):
    """Logits from an embedding; rank 1 raises in its first training step."""

    def __init__(self, n: int = 10):
        super().__init__()
        self.emb = nn.Embedding(n + 1, n + 1)

    def forward(self, context, history=None, fold=None):
        if self.training and dist.is_initialized() and dist.get_rank() == 1:
            raise ValueError("bad basket on rank 1")
        return self.emb(context).sum(1)


def toy_examples(n: int = 40) -> Examples:
    rng = np.random.default_rng(0)
    return Examples([rng.choice(10, 3, replace=False) for _ in range(n)])


def test_a_failed_rank_fails_training_with_its_error_and_leaves_no_process(no_leftovers):
    with pytest.raises(DistributedTrainingError, match=r"process 1 of 2 failed: "
                                                       r"ValueError: bad basket on rank 1"):
        fit(FailsOnRankOne(), toy_examples(), tiny_train(processes=2, batch_size=8))


class Plain(FailsOnRankOne):
    def forward(self, context, history=None, fold=None):
        return self.emb(context).sum(1)


class LateOnRankOne(Plain):
    """Rank 1 starts its clock later: moving the model in train() takes it 0.5 s longer."""

    def _apply(self, fn, *args, **kwargs):
        if dist.is_initialized() and dist.get_rank() == 1:
            time.sleep(0.5)
        return super()._apply(fn, *args, **kwargs)


def test_time_budget_ends_every_rank_on_the_same_step(no_leftovers):
    # by its own clock rank 0 would stop 0.5 s of steps before rank 1, which would then wait
    # for it in the next gradient all-reduce: the ranks agree on the time instead
    # (validation at the end of each epoch: rank 0 broadcasts the metric to the others)
    metrics = itertools.count()
    result = fit(LateOnRankOne(), toy_examples(),
                 tiny_train(processes=2, batch_size=8, epochs=100_000, time_budget_s=1.5),
                   validate=lambda model: float(next(metrics)))
    assert result.stopped == "time_budget" and 1 <= len(result.history) < 100_000


class Interrupted(Exception):
    """Stands for Celery's SoftTimeLimitExceeded, raised in the supervising worker."""


@pytest.fixture
def in_a_celery_pool_process():
    """multiprocessing sees a Celery prefork pool process as daemonic (no children allowed)."""
    me = multiprocessing.current_process()
    me.daemon = True
    yield
    me.daemon = False


def test_an_exception_in_the_supervisor_stops_the_ranks(in_a_celery_pool_process, no_leftovers):
    def callback(report):
        raise Interrupted()

    with pytest.raises(Interrupted):
        fit(Plain(), toy_examples(), tiny_train(processes=2, batch_size=8, log_every=1),
              callback=callback)
    assert multiprocessing.current_process().daemon  # as it was


def test_resolve_processes():
    assert resolve_processes(1, "cpu") == 1
    assert resolve_processes(3, "cpu") == 3
    assert resolve_processes("auto", "cpu") == 1  # one per CUDA device; none here
    for bad in (0, -2, "two", 1.5, True, None):
        with pytest.raises(ValueError, match="TRAINING_PROCESSES"):
            resolve_processes(bad, "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            resolve_processes(2, "cuda")


SUPERVISOR = """
import sys
from tests.ml.test_distributed import Plain, toy_examples, tiny_train
from shop_recs.ml.distributed import fit

def started(report, said=[]):
    if not said:
        said.append(print("training", flush=True))

if __name__ == "__main__":
    fit(Plain(), toy_examples(), tiny_train(processes=2, batch_size=8, epochs=10**6,
                                              log_every=1), callback=started)
"""


def test_ranks_exit_when_their_supervisor_is_killed():
    # a Celery hard time limit SIGKILLs the worker's pool process: no finally runs there
    # (torch's spawn asks for a SIGINT on the parent's death; ml.distributed adds a watchdog
    # thread for ranks stuck outside Python: either ends these)
    repo = Path(__file__).resolve().parents[2]
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISOR], cwd=repo, stdout=subprocess.PIPE,
                           env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        assert sup.stdout.readline() == b"training\n"
        ranks = spawned_children(sup.pid)
        assert len(ranks) == 2
    finally:
        sup.kill()
        sup.wait()

    def running(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    deadline = time.monotonic() + 20
    while any(running(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(running(pid) for pid in ranks), "ranks outlived their supervisor"
