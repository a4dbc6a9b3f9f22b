"""The benchmark CLIs on a small generated CSV: what ships, settings, bad input."""

import json

import pytest
import torch

from shop_recs.ml.benchmark import main
from shop_recs.ml.benchmark_speed import main as speed_main
from shop_recs.ml.orders import read_orders
from shop_recs.ml.protocol import configure, fit_shop, get_default_config
from shop_recs.ml.types import baskets_from_frame

from .conftest import planted_frame
from .tiny_encoder import build_tiny_encoder

ROW_KEYS = {"model", "role", "complete_hr10", "complete_ndcg10", "complete_mrr",
            "anchor_recall10", "anchor_ndcg10", "bundle_precision"}
FAST = ["--device", "cpu", "--time-budget", "3", "--epochs", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    df = planted_frame(400, seed=1)
    path = tmp_path_factory.mktemp("orders") / "orders.csv"
    df["timestamp"] = df["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    df[["order_id", "product_id", "timestamp", "customer_id", "quantity", "unit_price",
        "product_name"]].to_csv(path, index=False)
    return path


def test_cli_reports_what_the_protocol_ships(csv_path, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["--orders", str(csv_path), "--format", "generic", "--seeds", "2", *FAST,
               "--setting", "EASE_LAMBDAS=[5, 50]", "--setting", "GATE_CONFIDENCE=0.9",
               "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    rows = {r["model"]: r for r in data["results"]}
    for row in data["results"]:
        assert ROW_KEYS <= set(row), row["model"]
    assert {r["role"] for r in data["results"]} == {"baseline", "model", "shipped"}
    # the settings reached the protocol
    assert rows["ease"]["params"] in ("lambda=5", "lambda=50")
    assert [g["config"]["confidence"] for g in data["gate"]] == [0.9, 0.9]
    # the shipped rows are exactly what fit_shop gives for this file and these settings
    frame = read_orders([csv_path], "generic")
    cfg = configure(get_default_config(), {"ease_lambdas": [5, 50], "gate.confidence": 0.9,
                                           "train.time_budget_s": 3, "train.epochs": 2,
                                           "train.threads": 1, "train.device": "cpu"})
    fitted = fit_shop(*baskets_from_frame(frame), cfg)
    assert rows["shipped"]["choice"][0] == fitted.choice
    for name in ("shipped", "shipped_refit"):
        assert data["per_seed"][0]["rows"][name]["anchor_ndcg10"] == pytest.approx(
            fitted.metrics["test"][name]["anchor_ndcg10"], abs=1e-12)
        assert data["per_seed"][0]["rows"][name]["complete_ndcg10"] == pytest.approx(
            fitted.metrics["test"][name]["complete_ndcg10"], abs=1e-12)
    assert "gate[seed 0]" in capsys.readouterr().out


def test_cli_cold_start_table(csv_path, tmp_path, capsys):
    out = tmp_path / "cold.json"
    encoder = build_tiny_encoder(tmp_path / "encoder")
    assert main(["--orders", str(csv_path), "--format", "generic", "--seeds", "1", *FAST,
                 "--cold", "only", "--text-encoder", str(encoder),
                 "--text-cache", str(tmp_path / "cache"), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    names = {r["model"] for r in data["cold_results"]}
    assert names == {"popularity", "category_bestsellers", "borrowed_lists", "bundle_model",
                     "bundle_model (content for new products)",
                     "bundle_model (content-trained, id dropout 0.3)",
                     "bundle_model (content-trained + text encoder)",
                     "ceiling: EASE knowing the new products' orders",
                     # variants tried against the borrowed lists, rows of their own
                     "borrowed_lists + offset for new products (variant)",
                     "blend: borrowed_lists + content-trained model (variant)",
                     "blend: borrowed_lists + content-trained model + text encoder (variant)",
                     "content-trained model + offset for new products (variant)",
                     "content-trained model + text encoder + offset for new products (variant)",
                     "borrowed_lists by text-encoder similarity (variant)"}
    # every row against the best baseline; the ceiling's ratio says what content can reach
    goal = data["cold_goal"]["masked cold_anchor_ndcg10"]
    assert goal["best_baseline"] in {"popularity", "category_bestsellers", "borrowed_lists"}
    assert goal["line"] == 1.5 * goal["best_baseline_value"] and goal["ceiling_ratio"] > 0
    masked = next(r for r in data["cold_results"]
                  if r["model"] == "borrowed_lists" and r["kind"] == "masked")
    assert masked["queries"][0] > 0 and 0 < masked["cold_anchor_ndcg10"] <= 1
    assert data["results"] == [] and list(data["cold_epochs"][0].values()) == [2, 2, 2]
    # the content tower's cost: the text net has the projection's weights on top
    cost = data["cold_cost"][0]
    extra = (cost["bundle_model (content-trained + text encoder)"]["parameters"]
             - cost["bundle_model (content-trained, id dropout 0.3)"]["parameters"])
    assert extra == 32 * get_default_config().model.d_model  # text_proj: 32 -> d, no bias
    assert list((tmp_path / "cache").glob("text-*.npz"))  # the vectors were cached
    printed = capsys.readouterr().out
    assert "cold start" in printed and "text encoder:" in printed


def test_cli_cold_start_refuses_a_missing_encoder_folder(csv_path, tmp_path, capsys):
    assert main(["--orders", str(csv_path), "--format", "generic", "--seeds", "1", *FAST,
                 "--cold", "only", "--text-encoder", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_refuses_unknown_settings(csv_path, capsys):
    assert main(["--orders", str(csv_path), "--setting", "EPOCH=3"]) == 2
    assert "use KEY=VALUE with KEY one of" in capsys.readouterr().err
    assert main(["--orders", str(csv_path), "--setting", "EASE_LAMBDAS=[]"]) == 2
    assert "ease_lambdas must be a non-empty list" in capsys.readouterr().err


def test_cli_bad_input_fails_clearly(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    assert main(["--orders", str(bad), "--format", "generic"]) == 2
    assert "missing required column" in capsys.readouterr().err
    assert main(["--orders", str(tmp_path / "missing.csv")]) == 2


def test_speed_cli_times_epochs_per_device(csv_path, tmp_path, capsys):
    out = tmp_path / "speed.json"
    rc = speed_main(["--orders", str(csv_path), "--devices", "cpu:1", "cpu:2",
                     "--epochs", "2", "--batch-size", "64", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert [(r["device"], r["threads"]) for r in data["results"]] == [("cpu", 1), ("cpu", 2)]
    for row in data["results"]:
        assert row["epochs"] == 2 and row["epoch_s"] > 0 and len(row["val_curve"]) == 2
    # the same seed and data on the same device kind learn the same thing
    assert data["results"][0]["loss_curve"] == pytest.approx(data["results"][1]["loss_curve"],
                                                              rel=1e-3)
    assert data["ratios_vs_first"][0] == 1.0
    assert "ratio" in capsys.readouterr().out


def test_speed_cli_refuses_bad_devices(csv_path, capsys):
    with pytest.raises(SystemExit):
        speed_main(["--orders", str(csv_path), "--devices", "tpu"])
    assert "cpu, cpu:N or cuda" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert speed_main(["--orders", str(csv_path), "--devices", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


class _FakeEncoder:
    """Fills a cache as the run's encoder did: vectors keyed by its name and the text."""

    name = "/tmp/enc/somewhere/model"

    def encode(self, texts):
        import numpy as np

        rng = np.random.default_rng(len(texts))
        return rng.normal(size=(len(texts), 8)).astype(np.float32)


def test_device_command_runs_seeds_under_a_budget_from_cached_vectors_only(csv_path, tmp_path,
                                                                           capsys):
    """benchmarks.cold_device (what the lead runs on the GPU box), at a tiny size on CPU:
    the encoder rows come from the cache alone (no weights), the JSON is written."""
    from benchmarks import cold_device
    from shop_recs.ml.text import embed_products

    names = baskets_from_frame(read_orders([csv_path], "generic"))[2].names
    cache = tmp_path / "cache"
    embed_products(list(names), None, _FakeEncoder(), cache)
    out = tmp_path / "cold.json"
    args = ["--orders", str(csv_path), "--format", "generic", "--device", "cpu", "--seeds", "1",
            "--budget-s", "30", "--eval-guess-s", "5", "--epochs", "2", "--threads", "1",
            "--bias-quantiles", "0.5", "--text-cache", str(cache), "--text-key",
            _FakeEncoder.name, "--json", str(out)]
    assert cold_device.main(args) == 0
    data = json.loads(out.read_text())
    assert data["seeds_done"] == 1 and data["errors"] == [] and data["text"]["dim"] == 8
    names = {r["model"] for r in data["cold_results"]}
    assert "bundle_model (content-trained + text encoder)" in names
    assert "ceiling: EASE knowing the new products' orders" in names
    seed = data["cold_per_seed"][0]
    assert 3.0 <= seed["train_budget_s"] and seed["evaluate_s"] > 0
    assert "masked cold_target_ndcg10" in data["cold_goal"]
    assert json.loads((tmp_path / "seed-0.json").read_text())["seed"] == 0
    # a text the cache lacks: no encoder rows (said why), the rest still runs; two seeds in
    # two processes at once (--parallel)
    args[args.index("--seeds") + 1] = "2"
    assert cold_device.main([*args[:-6], "--text-cache", str(tmp_path / "empty"),
                             "--text-key", _FakeEncoder.name, "--parallel", "2",
                             "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["seeds_done"] == 2 and data["errors"] == []
    assert [s["seed"] for s in data["cold_per_seed"]] == [0, 1]
    assert "not in the cache" in data["text"]["error"]
    assert "bundle_model (content-trained + text encoder)" not in {
        r["model"] for r in data["cold_results"]}
