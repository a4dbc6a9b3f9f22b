"""Product attribute features for the neural model (numpy only).

Rarely bought and new products have few or no purchases, so the model also embeds what the
catalogue says about them: a category, a price band and the words of the name. Shops whose
products have no category (like Online Retail) get the last word of the name instead, which is
the product type in gift-ware names ("... T-LIGHT HOLDER", "... LANTERN").

Usage::

    vocab = FeatureVocab.build(attrs)
    feats = vocab.encode(attrs)  # ItemFeatures, arrays aligned with the item index
    vocab.to_json() / FeatureVocab.from_json(...)  # stored in the checkpoint manifest

Index 0 of every vocabulary means "unknown / padding".
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from shop_recs.ml.types import ItemAttributes

__all__ = ["FeatureVocab", "ItemFeatures", "name_words"]

_WORD = re.compile(r"[A-Z][A-Z'&]+")


def name_words(name: str) -> list[str]:
    """Upper-cased alphabetic words of at least two letters, in order."""
    return _WORD.findall(str(name).upper())


def _category(name: str, category: str) -> str:
    if category:
        return str(category).strip().lower()
    words = name_words(name)
    return f"~{words[-1].lower()}" if words else ""


@dataclass
class ItemFeatures:
    words: np.ndarray  # int64 [n_items, max_words] word ids, 0 = padding
    category: np.ndarray  # int64 [n_items] category id, 0 = unknown
    price_band: np.ndarray  # int64 [n_items] band id, 0 = unknown price


@dataclass
class FeatureVocab:
    words: list[str]  # id = position + 1
    categories: list[str]  # id = position + 1
    price_edges: list[float]  # log-price quantile edges; band = 1 + searchsorted
    max_words: int = 8

    @classmethod
    def build(cls, attrs: ItemAttributes, min_count: int = 2, n_bands: int = 8,
              max_words: int = 8) -> FeatureVocab:
        word_counts = Counter(w for n in attrs.names for w in set(name_words(n)))
        cat_counts = Counter(_category(n, c) for n, c in zip(attrs.names, attrs.categories))
        words = sorted(w for w, c in word_counts.items() if c >= min_count)
        cats = sorted(c for c, k in cat_counts.items() if c and k >= min_count)
        prices = np.asarray(attrs.prices, dtype=np.float64)
        prices = prices[np.isfinite(prices) & (prices > 0)]
        edges = (np.quantile(np.log(prices), np.linspace(0, 1, n_bands + 1)[1:-1]).tolist()
                 if len(prices) else [])
        return cls(words, cats, [float(e) for e in edges], max_words)

    def encode(self, attrs: ItemAttributes) -> ItemFeatures:
        word_id = {w: i + 1 for i, w in enumerate(self.words)}
        cat_id = {c: i + 1 for i, c in enumerate(self.categories)}
        n = len(attrs)
        words = np.zeros((n, self.max_words), dtype=np.int64)
        for i, name in enumerate(attrs.names):
            ids = [word_id[w] for w in dict.fromkeys(name_words(name)) if w in word_id]
            words[i, :len(ids[:self.max_words])] = ids[:self.max_words]
        category = np.asarray([cat_id.get(_category(nm, c), 0)
                               for nm, c in zip(attrs.names, attrs.categories)], dtype=np.int64)
        prices = np.asarray(attrs.prices, dtype=np.float64)
        ok = np.isfinite(prices) & (prices > 0)
        band = np.zeros(n, dtype=np.int64)
        band[ok] = 1 + np.searchsorted(np.asarray(self.price_edges), np.log(prices[ok]))
        return ItemFeatures(words, category, band)

    @property
    def n_bands(self) -> int:
        return len(self.price_edges) + 2  # unknown + len(edges)+1 bands

    def to_json(self) -> dict:
        return {"words": self.words, "categories": self.categories,
                "price_edges": self.price_edges, "max_words": self.max_words}

    @classmethod
    def from_json(cls, data: dict) -> FeatureVocab:
        return cls(list(data["words"]), list(data["categories"]),
                   [float(x) for x in data["price_edges"]], int(data["max_words"]))
