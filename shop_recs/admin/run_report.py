"""The report of a training run: progress, metrics against baselines, gate, charts.

Everything is read from the run's JSON fields, whose expected shapes are::

    progress = {"epoch", "epochs", "percent", "examples_per_s", "loss": [...], "val_metric": [...]}
    metrics = {"validation": {"<model>": {"complete_ndcg10": ..., ...}}, "test": {...}}
    gate = {"chosen": "<model>", "reason": "..."}
    timings = {"<stage>": seconds}

Missing or malformed parts are shown as absent, never as a server error.
"""

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from shop_recs.charts import line_chart

SPLITS = (("validation", gettext_lazy("Validation")), ("test", gettext_lazy("Test")))


def _dict(value):
    return value if isinstance(value, dict) else {}


def _number(value):
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def metrics_tables(run):
    """One table per split: rows are models, columns metrics; the best value is marked."""
    metrics, chosen = _dict(run.metrics), _dict(run.gate).get("chosen")
    tables = []
    for key, label in SPLITS:
        split = {name: _dict(values) for name, values in _dict(metrics.get(key)).items()}
        if not split:
            continue
        columns = sorted({m for values in split.values() for m in values})
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
            rows.append({"model": name, "chosen": name == chosen, "cells": cells})
        tables.append({"key": key, "label": label, "columns": columns, "rows": rows})
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
        line_chart([(_("loss"), loss)], title=_("Training loss per epoch"), y_label=_("loss"))
        if isinstance(loss, list) else "",
        line_chart([(_("validation"), val)], title=_("Validation metric per epoch"),
                   y_label=str(data.get("val_metric_name") or _("metric")))
        if isinstance(val, list) else "",
    ) if chart]


def timings(run):
    rows = [(str(stage), n) for stage, s in _dict(run.timings).items()
            if (n := _number(s)) is not None]
    return {"rows": rows, "total": sum(s for _, s in rows)} if rows else None


def report(run):
    return {
        "progress": progress(run),
        "tables": metrics_tables(run),
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
                            for n in _dict(_dict(_dict(r.metrics).get(key)).get(model))})
            for name in names:
                values = [_number(_dict(_dict(_dict(r.metrics).get(key)).get(model)).get(name))
                          for r in runs]
                metric_rows.append((f"{label} · {model} · {name}", values))
    curve = [(f"run {r.pk}", _dict(r.progress).get("val_metric")) for r in runs
             if isinstance(_dict(r.progress).get("val_metric"), list)]
    chart = line_chart(curve, title=_("Validation metric per epoch"), width=560) if curve else ""
    return {"facts": facts, "metric_rows": metric_rows, "chart": chart}
