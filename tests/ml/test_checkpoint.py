"""Checkpoints: identical scores after a round trip; tampering and mismatches are refused."""

import json
import shutil

import numpy as np
import pytest

from shop_recs.ml.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.train import TrainConfig
from shop_recs.ml.types import ItemIndex


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    baskets, index, attrs = data
    scorer = BundleScorer(BundleModelConfig(0, d_model=16, n_heads=2, n_layers=1),
                          TrainConfig(epochs=1, threads=1, time_budget_s=None, device="cpu"))
    scorer.fit(baskets, attrs)
    path = tmp_path_factory.mktemp("ckpt") / "run1"
    manifest = save_checkpoint(path, scorer, index, data_cutoff=123, metrics={"ndcg": 0.5})
    return scorer, index, path, manifest


def test_round_trip_gives_identical_scores(saved):
    scorer, index, path, manifest = saved
    loaded, loaded_index, m = load_checkpoint(path)
    ctx, hist = [np.array([0, 3]), np.array([5])], [np.array([1]), np.array([], dtype=int)]
    np.testing.assert_array_equal(scorer.score(ctx, hist), loaded.score(ctx, hist))
    assert list(loaded_index.ids) == list(index.ids)
    assert m["data_cutoff"] == 123 and m["metrics"] == {"ndcg": 0.5}
    assert m["item_ids_sha256"] == index.sha256()
    assert {"torch", "numpy", "safetensors"} <= set(m["versions"])
    assert m["model_config"]["n_items"] == len(index)


def test_tampered_weights_are_refused(saved, tmp_path):
    _, _, path, _ = saved
    copy = shutil.copytree(path, tmp_path / "copy")
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(copy)


def test_catalogue_mismatch_and_missing_files_are_refused(saved, tmp_path):
    scorer, _, path, _ = saved
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "nothing-here")
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "bad", scorer, ItemIndex(["only-one"]))
    copy = shutil.copytree(path, tmp_path / "edited")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["item_ids"][0] = "SWAPPED"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="catalogue"):
        load_checkpoint(copy)


def test_no_temporary_files_left(saved):
    _, _, path, _ = saved
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "model.safetensors"]


class _Boom:
    """Unpickling this would create ``path``: proof that a loader ran pickle."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_weights_are_refused_without_unpickling(saved, tmp_path):
    import hashlib
    import pickle

    _, _, path, _ = saved
    copy = shutil.copytree(path, tmp_path / "pickled")
    sentinel = tmp_path / "unpickled"
    payload = pickle.dumps({"weights": _Boom(sentinel)})
    (copy / "model.safetensors").write_bytes(payload)
    # Even with the manifest "fixed" to the pickle's hash, only safetensors parses the file.
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["weights_sha256"] = hashlib.sha256(payload).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError):
        load_checkpoint(copy)
    assert not sentinel.exists()


def test_a_failed_save_leaves_the_previous_checkpoint_intact(saved, tmp_path, monkeypatch):
    import shop_recs.ml.checkpoint as checkpoint

    scorer, index, path, _ = saved
    target = tmp_path / "target"
    save_checkpoint(target, scorer, index, data_cutoff=1)
    before = {f.name: f.read_bytes() for f in target.iterdir()}

    def crash(state, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", crash)
    with pytest.raises(OSError):
        save_checkpoint(target, scorer, index, data_cutoff=2)
    assert {f.name: f.read_bytes() for f in target.iterdir()
            if not f.name.startswith(".")} == before
    assert load_checkpoint(target)[2]["data_cutoff"] == 1
