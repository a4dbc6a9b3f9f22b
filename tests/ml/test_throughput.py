"""``benchmark_speed --synthetic``: fixed-step throughput on a synthetic shop (issue 15's device
script), run here at a tiny size on CPU."""

import json

import numpy as np
import pytest
import torch

from shop_recs.ml.benchmark_speed import cuda_ratios, main as speed_main
from shop_recs.ml.synthetic import synthetic_orders
from shop_recs.ml.throughput import parse_size


def test_the_synthetic_shop_has_the_asked_size_and_distinct_baskets():
    shop = synthetic_orders(2000, 20_000, seed=3)
    b = shop.baskets
    assert b.n_items == 2000 and abs(len(b.items) - 20_000) < 1_000  # minus in-basket repeats
    for i in range(0, len(b), 97):
        basket = b.basket(i)
        assert len(np.unique(basket)) == len(basket) >= 1
    same = synthetic_orders(2000, 20_000, seed=3).baskets
    assert np.array_equal(same.items, b.items)  # seeded
    # planted pairs: a pair's members share orders far more often than their popularity says
    x, y = shop.pairs[0]
    together = sum(1 for i in range(len(b)) if {x, y} <= set(b.basket(i).tolist()))
    assert together > 0


def test_sizes_parse_with_suffixes():
    assert parse_size("1mx20m") == (1_000_000, 20_000_000)
    assert parse_size("100kx5m") == (100_000, 5_000_000)
    assert parse_size("3000x12000") == (3000, 12_000)
    for bad in ("1m", "x20m", "1.5x10", "0x10"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_synthetic_throughput_runs_each_entry_and_writes_json(tmp_path, capsys):
    out = tmp_path / "speed.json"
    rc = speed_main(["--synthetic", "3000x12000", "--devices", "cpu:1", "cpu:1/sampled",
                     "--steps", "2", "--warmup", "1", "--batch-size", "32",
                     "--negatives", "64", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["synthetic"]["products"] == 3000 and data["synthetic"]["prior_nnz"] > 0
    rows = data["results"]
    # below the size the loss the scorer would pick is the full softmax
    assert [(r["device"], r["threads"], r["loss"]) for r in rows] == [
        ("cpu", 1, "full"), ("cpu", 1, "sampled")]
    assert rows[0]["negatives"] == 0 and rows[1]["negatives"] == 64
    for r in rows:
        assert r["steps"] == 2 and r["examples_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert r["epoch_s_extrapolated"] == pytest.approx(
            (r["s_per_step"] + r["draw_s_per_batch"]) * r["steps_per_epoch"])
        assert np.isfinite(r["first_loss"]) and np.isfinite(r["last_loss"])
    assert data["ratios_vs_first"][0] == 1.0
    assert "extrapolated" in capsys.readouterr().out


def test_synthetic_throughput_refuses_bad_input(capsys):
    with pytest.raises(SystemExit):
        speed_main(["--synthetic", "lots"])
    with pytest.raises(SystemExit):
        speed_main(["--synthetic", "3000x12000", "--devices", "cpu/partial"])
    with pytest.raises(SystemExit):  # one source of orders, not two
        speed_main(["--synthetic", "3000x12000", "--orders", "x.csv"])
    if not torch.cuda.is_available():
        assert speed_main(["--synthetic", "3000x12000", "--devices", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_the_cuda_ratio_is_per_loss_against_the_first_cpu_entry():
    rows = [{"device": "cuda", "loss": "sampled", "examples_per_s": 900.0},
            {"device": "cuda", "loss": "full", "examples_per_s": 300.0},
            {"device": "cpu", "loss": "sampled", "examples_per_s": 100.0},
            {"device": "cpu", "loss": "sampled", "examples_per_s": 50.0}]
    assert cuda_ratios(rows) == {"sampled": 9.0}  # no cpu entry for the full loss
