"""The protocol's configuration: one tree, minGPT's ``get_default_config`` pattern.

:class:`ProtocolConfig` holds the protocol's own knobs and the defaults each component
contributes (``train``: ``TrainConfig``, ``model``: ``BundleModelConfig``, ``gate``:
``GateConfig``). :func:`configure` returns a copy with dotted overrides applied and checked::

    cfg = configure(get_default_config(), {"train.epochs": 20, "ease_lambdas": [10, 100]})

:data:`SETTINGS` maps the SHOP_RECS learning keys to their place in the tree: the pipeline
reads them from Django settings, the benchmark CLI takes them as ``--setting KEY=VALUE``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from shop_recs.ml.blend import WEIGHT_GRID
from shop_recs.ml.gate import GateConfig
from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.scorer import MAX_PRIOR_ITEMS
from shop_recs.ml.train import TrainConfig

__all__ = ["ProtocolConfig", "ConfigError", "SETTINGS", "FAMILIES", "get_default_config",
           "configure"]  # re-exported by shop_recs.ml.protocol

FAMILIES = ("popularity", "cooc_count", "cooc_confidence", "cooc_lift", "item_knn", "ease")


# The quality knobs a shop sets in SHOP_RECS (shop_recs.conf) -> their place in the tree.
SETTINGS = {"EPOCHS": "train.epochs", "TIME_BUDGET_S": "train.time_budget_s",
            "DEVICE": "train.device", "EASE_LAMBDAS": "ease_lambdas", "KNN_KS": "knn_ks",
            "BLEND_WEIGHTS": "blend_weights", "PRIOR_LAMBDA": "prior_lambda",
            "MIN_PRODUCT_ORDERS": "min_orders", "MAX_PRIOR_ITEMS": "max_prior_items",
            "GATE_CONFIDENCE": "gate.confidence", "GATE_MIN_GAIN": "gate.min_gain",
            "EVALUATE_REFIT": "evaluate_refit", "FBT_TOP_K": "top_k"}


class ConfigError(ValueError):
    """A protocol setting is unknown or out of range."""


@dataclass
class ProtocolConfig:
    seed: int = 0  # the model's seed (the benchmark adds one per repetition)
    query_seed: int = 0  # which item of an order is hidden / the anchor
    val_frac: float = 0.1
    test_frac: float = 0.1
    top_k: int = 10  # published list length (SHOP_RECS FBT_TOP_K): what both tasks are served
    min_orders: int = 2  # catalogue limit: orders a product needs to be evaluated and published
    max_prior_items: int = MAX_PRIOR_ITEMS  # catalogue limit of the dense item-item prior
    families: tuple = FAMILIES  # baselines, simplest first (ties go to the earlier one)
    ease_lambdas: tuple = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
    knn_ks: tuple = (20, 50, 200)
    prior_lambda: float | None = None  # EASE lambda of the model's prior; None = EASE's tuned one
    blend_weights: tuple = WEIGHT_GRID  # model weight relative to the partner baseline
    blend_folds: int = 2  # cross-fitting folds of the blend weight (gate figures)
    refit: bool = True  # ship the winner refit on every order (False: as trained on the split)
    # also refit on train + validation and score it on test (one more network fit when a
    # network ships); "auto": unless a network ships above sparse.DENSE_MAX_ITEMS products
    evaluate_refit: bool | str = "auto"
    # validation and test orders judged at most (a seeded sample above it; issue 15)
    max_eval_orders: int | None = 50_000
    gate: GateConfig = field(default_factory=GateConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(time_budget_s=150.0))
    # Published lists and bundles are per product and never see a visitor's history, so the
    # protocol trains (and stops early on) what it ships; history models are research rows.
    model: BundleModelConfig = field(
        default_factory=lambda: BundleModelConfig(n_items=0, use_history=False))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def get_default_config() -> ProtocolConfig:
    return ProtocolConfig()


def configure(cfg: ProtocolConfig, overrides: dict | None = None) -> ProtocolConfig:
    """A copy of ``cfg`` with ``{"dotted.key": value}`` applied and checked."""
    cfg = dataclasses.replace(cfg, gate=dataclasses.replace(cfg.gate),
                              train=dataclasses.replace(cfg.train),
                              model=dataclasses.replace(cfg.model))
    for key, value in (overrides or {}).items():
        *path, name = key.split(".")
        node = cfg
        for part in path:
            node = getattr(node, part, None)
            if not dataclasses.is_dataclass(node):
                raise ConfigError(f"unknown setting {key!r}")
        if name not in {f.name for f in dataclasses.fields(node)}:
            raise ConfigError(f"unknown setting {key!r}")
        if isinstance(getattr(node, name), tuple) or isinstance(value, list):
            value = tuple(_number(key, v) if isinstance(v, str) and name != "families" else v
                          for v in value)
        setattr(node, name, value)
    _check(cfg)
    return cfg


def _number(key: str, text: str) -> float:
    """Grid entries may be written as text ("inf" where JSON has no infinity)."""
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{key}: {text!r} is not a number") from None


def _check(cfg: ProtocolConfig) -> None:
    def grid(name, values, low=0.0, inf_ok=False):
        ok = len(values) > 0 and all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= low
            and (inf_ok or np.isfinite(v)) for v in values)
        if not ok:
            raise ConfigError(f"{name} must be a non-empty list of numbers >= {low}, "
                              f"not {values!r}")
    grid("ease_lambdas", cfg.ease_lambdas, 1e-9)
    grid("knn_ks", cfg.knn_ks, 1)
    if cfg.families != FAMILIES and "ease" not in cfg.families and cfg.prior_lambda is None:
        raise ConfigError("without the ease family, set prior_lambda")
    grid("blend_weights", cfg.blend_weights, 0.0, inf_ok=True)
    if cfg.prior_lambda is not None and not cfg.prior_lambda > 0:
        raise ConfigError(f"prior_lambda must be positive or None, not {cfg.prior_lambda!r}")
    if cfg.evaluate_refit not in (True, False, "auto"):
        raise ConfigError(f"evaluate_refit must be True, False or 'auto', not "
                          f"{cfg.evaluate_refit!r}")
    if not (isinstance(cfg.top_k, int) and not isinstance(cfg.top_k, bool) and cfg.top_k >= 1):
        raise ConfigError(f"top_k must be a whole number >= 1, not {cfg.top_k!r}")
    if not (isinstance(cfg.min_orders, int) and cfg.min_orders >= 1):
        raise ConfigError(f"min_orders must be a whole number >= 1, not {cfg.min_orders!r}")
    if not 0.5 <= cfg.gate.confidence < 1:
        raise ConfigError(f"gate.confidence must be in [0.5, 1), not {cfg.gate.confidence!r}")
    if cfg.gate.n_boot < 100:
        raise ConfigError(f"gate.n_boot must be at least 100, not {cfg.gate.n_boot!r}")
    if cfg.train.epochs < 1:
        raise ConfigError(f"train.epochs must be at least 1, not {cfg.train.epochs!r}")
    unknown = set(cfg.families) - set(FAMILIES)
    if unknown or not cfg.families:
        raise ConfigError(f"families must be some of {', '.join(FAMILIES)}")
