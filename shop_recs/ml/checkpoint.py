"""Checkpoints: safetensors weights plus a JSON manifest; verified on load, never pickled.

A checkpoint is a folder with two files::

    model.safetensors   # every tensor of the model (weights and attribute tables)
    manifest.json       # model config, train config, feature vocabulary, catalogue ids and their
                        # hash, data cutoff, metrics, library versions, sha256 of the weights

Usage::

    save_checkpoint(path, scorer, index, data_cutoff=ts, metrics={...})
    scorer, index, manifest = load_checkpoint(path)   # raises CheckpointError on any mismatch

Both files are written to temporary names and renamed into place (the manifest last), so a
reader never sees a half-written checkpoint. Loading recomputes the sha256 of the weights and
refuses a mismatch; the weights are read with ``safetensors`` only (no pickle, ever).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
import safetensors
import torch
from safetensors.torch import load_file, save_file

from shop_recs.ml.features import FeatureVocab
from shop_recs.ml.model import BundleModel, BundleModelConfig
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.train import TrainConfig
from shop_recs.ml.types import ItemIndex

logger = logging.getLogger("shop_recs.ml.checkpoint")

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "file_sha256"]

FORMAT = "shop_recs.bundle_model/1"
WEIGHTS, MANIFEST = "model.safetensors", "manifest.json"


class CheckpointError(ValueError):
    """The checkpoint is missing, incomplete, tampered with or for another catalogue."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(path: str | Path, scorer: BundleScorer, index: ItemIndex,
                    data_cutoff: int | None = None, metrics: dict | None = None,
                    extra: dict | None = None) -> dict:
    """Write ``scorer``'s model for catalogue ``index`` to folder ``path``; returns the manifest."""
    if scorer.model is None or scorer.vocab is None:
        raise CheckpointError("nothing to save: the scorer has no model")
    if len(index) != scorer.model_config.n_items:
        raise CheckpointError("the item index does not match the model's catalogue size")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in scorer.model.state_dict().items()}
    _atomic_write(folder / WEIGHTS, lambda p: save_file(state, str(p), metadata={"format": FORMAT}))
    manifest = {
        "format": FORMAT,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model_config": scorer.model_config.to_dict(),
        "train_config": scorer.train_config.to_dict(),
        "vocab": scorer.vocab.to_json(),
        "item_ids": [str(i) for i in index.ids],
        "item_ids_sha256": index.sha256(),
        "data_cutoff": data_cutoff,
        "metrics": metrics or {},
        "extra": extra or {},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "safetensors": safetensors.__version__},
        "weights_file": WEIGHTS,
        "weights_sha256": file_sha256(folder / WEIGHTS),
    }
    _atomic_write(folder / MANIFEST,
                  lambda p: p.write_text(json.dumps(manifest, indent=1, sort_keys=True)))
    logger.info("saved checkpoint %s (sha256 %s)", folder, manifest["weights_sha256"][:12])
    return manifest


def load_checkpoint(path: str | Path, device: str = "cpu"
                    ) -> tuple[BundleScorer, ItemIndex, dict]:
    """Rebuild the scorer from ``path`` after checking the weights' sha256 and the catalogue."""
    folder = Path(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: no readable {MANIFEST} ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{folder}: unknown checkpoint format {manifest.get('format')!r}")
    weights = folder / manifest.get("weights_file", WEIGHTS)
    if not weights.is_file():
        raise CheckpointError(f"{folder}: weights file {weights.name} is missing")
    actual = file_sha256(weights)
    if actual != manifest["weights_sha256"]:
        raise CheckpointError(f"{weights}: sha256 {actual} does not match the manifest "
                              f"({manifest['weights_sha256']}); refusing to load")
    index = ItemIndex(manifest["item_ids"])
    if index.sha256() != manifest["item_ids_sha256"]:
        raise CheckpointError(f"{folder}: catalogue ids do not match their recorded hash")
    config = BundleModelConfig(**manifest["model_config"])
    if config.n_items != len(index):
        raise CheckpointError(f"{folder}: model has {config.n_items} items, catalogue {len(index)}")
    scorer = BundleScorer(config, TrainConfig(**manifest["train_config"]))
    scorer.vocab = FeatureVocab.from_json(manifest["vocab"])
    scorer.model = BundleModel(config)
    try:
        scorer.model.load_state_dict(load_file(str(weights), device=device), strict=True)
    except (RuntimeError, safetensors.SafetensorError) as exc:
        raise CheckpointError(f"{weights}: weights do not fit the recorded config ({exc})") from exc
    scorer.model.to(device).eval()
    return scorer, index, manifest
