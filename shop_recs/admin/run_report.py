"""The report of a training run: progress, metrics against baselines, gate, charts.

Everything is read from the run's JSON fields, whose expected shapes are::

    progress = {"epoch", "epochs", "percent", "examples_per_s", "loss": [...], "val_metric": [...]}
    metrics = {"validation": {"<model>": {"complete_ndcg10": ..., ...}}, "test": {...}}
    gate = {"chosen": "<model>", "reason": "..."}
    timings = {"<stage>": seconds}

Missing or malformed parts are shown as absent, never as a server error. Metric keys
are shown with human labels (``anchor_ndcg10`` -> "Anchor NDCG@10", the raw key in a
tooltip); text values (a baseline's tuned ``params``, a blend's ``weights``) go into one
"tuned setting" column, left out when no model has one.
"""

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from shop_recs.charts import line_chart

SPLITS = (("validation", gettext_lazy("Validation")), ("test", gettext_lazy("Test")))
# Metric keys written by shop_recs.ml.fit (test rows) and its validation rows.
METRIC_LABELS = {
    "complete_hr10": gettext_lazy("Basket completion hit rate@10"),
    "complete_ndcg10": gettext_lazy("Basket completion NDCG@10"),
    "complete_mrr": gettext_lazy("Basket completion MRR"),
    "anchor_recall10": gettext_lazy("Anchor recall@10"),
    "anchor_ndcg10": gettext_lazy("Anchor NDCG@10"),
    "complete": gettext_lazy("Basket completion NDCG@10"),
    "anchor": gettext_lazy("Anchor NDCG@10"),
}
SETTING_KEYS = ("params", "weights")
ABBREVIATIONS = {"ndcg": "NDCG", "hr": "hit rate", "mrr": "MRR", "auc": "AUC"}
# What RunProgress records as "val_metric" (shop_recs.ml.scorer's validate()).
VAL_METRIC_LABEL = gettext_lazy("validation NDCG@10")


def _dict(value):
    return value if isinstance(value, dict) else {}


def _number(value):
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def metric_label(key):
    """A human label for a metric key: known keys by name, others by their words
    (``recall_at_20`` -> "Recall at 20", ``foo_ndcg5`` -> "Foo NDCG@5")."""
    key = str(key)
    if key in METRIC_LABELS:
        return str(METRIC_LABELS[key])
    words = []
    for word in key.replace("-", "_").split("_"):
        stem, digits = word.rstrip("0123456789"), word[len(word.rstrip("0123456789")):]
        if stem.lower() in ABBREVIATIONS:
            words.append(ABBREVIATIONS[stem.lower()] + (f"@{digits}" if digits else ""))
        elif word:
            words.append(word)
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _setting(model, values):
    """A model's tuned setting as text: ``k=50``, or a blend's weights, or ""."""
    params = values.get("params")
    if isinstance(params, str | int | float) and str(params):
        return str(params)
    weights = values.get("weights")
    if isinstance(weights, list) and len(weights) == 2 and all(
            _number(w) is not None for w in weights) and "+" in model:
        # BlendScorer.pair_weights: [first, second] of "<second>+<first>" names.
        second, first = model.split("+", 1)
        return _("%(first)s × %(a)s + %(second)s × %(b)s") % {
            "first": first, "a": f"{weights[0]:g}", "second": second, "b": f"{weights[1]:g}"}
    if isinstance(weights, list | dict) and weights:
        return _("weights %(w)s") % {"w": weights}
    return ""


def metrics_tables(run):
    """One table per split: rows are models, columns metrics; the best value is marked."""
    metrics, chosen = _dict(run.metrics), _dict(run.gate).get("chosen")
    tables = []
    for key, label in SPLITS:
        split = {name: _dict(values) for name, values in _dict(metrics.get(key)).items()}
        if not split:
            continue
        # Only columns with a number somewhere; text settings get a column of their own.
        columns = sorted({m for values in split.values() for m, v in values.items()
                          if m not in SETTING_KEYS and _number(v) is not None})
        best = {}
        for column in columns:
            numbers = [n for v in split.values() if (n := _number(v.get(column))) is not None]
            # Losses and errors are better when lower; every ranking metric when higher.
            lower = any(word in column for word in ("loss", "error", "rank_mean"))
            best[column] = (min if lower else max)(numbers) if numbers else None
        rows = []
        for name in sorted(split, key=lambda n: (n != chosen, n)):
            cells = []
            for column in columns:
                value = _number(split[name].get(column))
                cells.append({"value": value, "best": value is not None and value == best[column]
                              and len(split) > 1})
            rows.append({"model": name, "chosen": name == chosen, "cells": cells,
                         "setting": _setting(name, split[name])})
        tables.append({"key": key, "label": label, "rows": rows,
                       "columns": [{"key": c, "label": metric_label(c)} for c in columns],
                       "has_settings": any(row["setting"] for row in rows)})
    return tables


def progress(run):
    data = _dict(run.progress)
    percent = _number(data.get("percent"))
    if percent is None and _number(data.get("epoch")) and _number(data.get("epochs")):
        percent = 100 * data["epoch"] / data["epochs"]
    if run.status == run.Status.SUCCEEDED:
        percent = 100
    return {
        "status": run.status,
        "status_label": run.get_status_display(),
        "finished": run.is_finished,
        "percent": round(max(0, min(100, percent or 0)), 1),
        "epoch": _number(data.get("epoch")),
        "epochs": _number(data.get("epochs")),
        "examples_per_s": _number(data.get("examples_per_s")),
    }


def charts(run):
    data = _dict(run.progress)
    loss, val = data.get("loss"), data.get("val_metric")
    return [chart for chart in (
        line_chart([(_("loss"), loss)], title=_("Training loss per epoch"),
                   y_label=_("training loss"))
        if isinstance(loss, list) else "",
        line_chart([(_("validation"), val)], title=_("Validation NDCG@10 per epoch"),
                   y_label=val_metric_name(data))
        if isinstance(val, list) else "",
    ) if chart]


def val_metric_name(progress):
    """The y-axis name of the validation curve: what the run recorded, else what
    ``RunProgress`` stores there."""
    name = progress.get("val_metric_name")
    return metric_label(name) if isinstance(name, str) and name else str(VAL_METRIC_LABEL)


def timings(run):
    rows = [(str(stage), n) for stage, s in _dict(run.timings).items()
            if (n := _number(s)) is not None]
    return {"rows": rows, "total": sum(s for _, s in rows)} if rows else None


POLICY_LABELS = {"off": _("off: the anonymous list"),
                 "boost": _("boost: what the visitor bought before comes first"),
                 "demote": _("demote: what the visitor bought before goes last")}


def policy(run):
    """The returning-visitor policy the run recorded, with its figures, or None."""
    data = _dict(run.serving_policy)
    if not isinstance(data.get("mode"), str) or data["mode"] not in POLICY_LABELS:
        return None
    validation, test = _dict(data.get("validation")), _dict(data.get("test"))
    intervals = _dict(validation.get("interval_pct"))
    rows = []
    for mode in ("off", "boost", "demote"):
        interval = intervals.get(mode)
        rows.append({
            "mode": mode, "chosen": mode == data["mode"],
            "validation": _number(validation.get(f"{mode}_ndcg10")),
            "test": _number(test.get(f"{mode}_ndcg10")),
            "interval": ([_number(v) for v in interval]
                         if isinstance(interval, list) and len(interval) == 2 else None),
        })
    return {"mode": data["mode"], "label": POLICY_LABELS[data["mode"]],
            "weight": _number(data.get("weight")), "half_life": _number(data.get("half_life")),
            "reason": str(data.get("reason", "")), "queries": _number(validation.get("queries")),
            "test_queries": _number(test.get("queries")), "rows": rows}


def report(run):
    return {
        "progress": progress(run),
        "tables": metrics_tables(run),
        "policy": policy(run),
        "gate": _dict(run.gate),
        "charts": charts(run),
        "timings": timings(run),
    }


def comparison(runs):
    """Side-by-side rows for several runs: facts, then every split/model/metric."""
    facts = [
        (_("status"), [r.get_status_display() for r in runs]),
        (_("serving"), [_("yes") if r.is_active else "" for r in runs]),
        (_("created"), [r.created_at for r in runs]),
        (_("data cutoff"), [r.data_cutoff for r in runs]),
        (_("device"), [r.device for r in runs]),
        (_("shipped model"), [r.shipped_model or _dict(r.gate).get("chosen", "") for r in runs]),
        (_("gate reason"), [_dict(r.gate).get("reason", "") for r in runs]),
        (_("total time (s)"), [(timings(r) or {}).get("total") for r in runs]),
        (_("artifact sha256"), [r.artifact_sha256[:12] for r in runs]),
    ]
    counts = sorted({k for r in runs for k in _dict(r.counts)})
    facts += [(key, [_dict(r.counts).get(key) for r in runs]) for key in counts]
    metric_rows = []
    for key, label in SPLITS:
        models = sorted({m for r in runs for m in _dict(_dict(r.metrics).get(key))})
        for model in models:
            names = sorted({n for r in runs
                            for n in _dict(_dict(_dict(r.metrics).get(key)).get(model))
                            if n not in SETTING_KEYS})
            for name in names:
                values = [_number(_dict(_dict(_dict(r.metrics).get(key)).get(model)).get(name))
                          for r in runs]
                metric_rows.append((f"{label} · {model} · {metric_label(name)}", values))
    curve = [(f"run {r.pk}", _dict(r.progress).get("val_metric")) for r in runs
             if isinstance(_dict(r.progress).get("val_metric"), list)]
    chart = line_chart(curve, title=_("Validation NDCG@10 per epoch"), width=560,
                       y_label=val_metric_name(_dict(runs[0].progress))) if curve else ""
    return {"facts": facts, "metric_rows": metric_rows, "chart": chart}
