"""The benchmark CLI on a small generated CSV writes the JSON schema of issue 3."""

import json

import pytest
import torch

from shop_recs.ml.benchmark import main
from shop_recs.ml.benchmark_speed import main as speed_main

from .conftest import planted_frame

ROW_KEYS = {"model", "role", "complete_hr10", "complete_ndcg10", "complete_mrr",
            "anchor_recall10", "anchor_ndcg10", "coverage10", "bundle_precision", "train_s",
            "peak_mem_mb"}


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    df = planted_frame(400, seed=1)
    path = tmp_path_factory.mktemp("orders") / "orders.csv"
    df["timestamp"] = df["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    df[["order_id", "product_id", "timestamp", "customer_id", "quantity", "unit_price",
        "product_name"]].to_csv(path, index=False)
    return path


def test_cli_writes_json_schema(csv_path, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["--orders", str(csv_path), "--format", "generic", "--device", "cpu",
               "--seeds", "2", "--time-budget", "3", "--epochs", "2", "--threads", "1",
               "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert {"dataset", "split", "device", "results"} <= set(data)
    roles = {r["role"] for r in data["results"]}
    assert roles == {"baseline", "model", "shipped"}
    for row in data["results"]:
        assert ROW_KEYS <= set(row), row["model"]
    shipped = [r for r in data["results"] if r["role"] == "shipped"][0]
    assert shipped["choice"]["complete"] and shipped["choice"]["anchor"]
    assert "gate[complete]" in capsys.readouterr().out


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
