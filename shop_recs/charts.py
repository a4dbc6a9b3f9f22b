"""Small line charts rendered on the server as inline SVG (no JavaScript, no build).

Usage::

    from shop_recs.charts import line_chart
    svg = line_chart([("loss", [0.9, 0.6, 0.5])], title="Training loss", y_label="loss")
    # a SafeString: put it in a template as {{ svg }}

Each series is ``(label, values)`` with one value per epoch; ``None``, NaN and
infinite values leave a gap. Points carry a ``<title>`` so hovering shows the value,
and the chart has an ``aria-label`` for screen readers.
"""

import math

from django.utils.html import escape
from django.utils.safestring import mark_safe

# Colour-blind-safe palette (Okabe & Ito), one colour per series.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
MARGIN = {"left": 52, "right": 12, "top": 26, "bottom": 34}


def _clean(values):
    out = []
    for value in values or ():
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = None
        out.append(value if value is not None and math.isfinite(value) else None)
    return out


def _fmt(value):
    return f"{value:.4g}"


def line_chart(series, *, title, y_label="", x_label="epoch", width=420, height=220,
               x_ticks=None):
    """An SVG line chart of ``series``; an empty string when there is nothing to draw.

    ``x_ticks`` names the points (e.g. days); by default they are numbered from 1."""
    series = [(str(label), _clean(values)) for label, values in series]
    points = [v for _, values in series for v in values if v is not None]
    if not points:
        return ""
    n = max(len(values) for _, values in series)
    low, high = min(points), max(points)
    if high == low:  # a flat line is drawn in the middle
        low, high = low - (abs(low) or 1) * 0.05, high + (abs(high) or 1) * 0.05
    plot_w = width - MARGIN["left"] - MARGIN["right"]
    plot_h = height - MARGIN["top"] - MARGIN["bottom"]

    def x(i):  # epoch index -> pixel
        return MARGIN["left"] + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v):
        return MARGIN["top"] + plot_h * (high - v) / (high - low)

    label = f"{title}: " + "; ".join(
        f"{name} from {_fmt(next(v for v in vals if v is not None))} to "
        f"{_fmt(next(v for v in reversed(vals) if v is not None))}"
        for name, vals in series if any(v is not None for v in vals))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="shop-recs-chart" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(label)}">',
        f'<text x="{MARGIN["left"]}" y="16" font-size="13" font-weight="bold">'
        f"{escape(title)}</text>",
    ]
    bottom, right = MARGIN["top"] + plot_h, MARGIN["left"] + plot_w
    parts.append(f'<path d="M{MARGIN["left"]},{MARGIN["top"]} V{bottom} H{right}" '
                 f'fill="none" stroke="#888" stroke-width="1"/>')
    for value in (low, (low + high) / 2, high):
        parts.append(f'<text x="{MARGIN["left"] - 4}" y="{y(value) + 4:.1f}" font-size="10" '
                     f'text-anchor="end">{_fmt(value)}</text>')
        parts.append(f'<line x1="{MARGIN["left"]}" x2="{right}" y1="{y(value):.1f}" '
                     f'y2="{y(value):.1f}" stroke="#ddd" stroke-width="1"/>')
    def tick(i):
        return escape(x_ticks[i]) if x_ticks is not None and i < len(x_ticks) else i + 1

    for i in sorted({0, n - 1, (n - 1) // 2}):
        # Named ticks are wider than numbers: the first and last stay inside the chart.
        anchor = ("middle" if x_ticks is None or 0 < i < n - 1 or n == 1
                  else "start" if i == 0 else "end")
        parts.append(f'<text x="{x(i):.1f}" y="{bottom + 14}" font-size="10" '
                     f'text-anchor="{anchor}">{tick(i)}</text>')
    parts.append(f'<text x="{MARGIN["left"] + plot_w / 2:.1f}" y="{height - 4}" font-size="10" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    if y_label:
        parts.append(f'<text x="12" y="{MARGIN["top"] + plot_h / 2:.1f}" font-size="10" '
                     f'text-anchor="middle" transform="rotate(-90 12 '
                     f'{MARGIN["top"] + plot_h / 2:.1f})">{escape(y_label)}</text>')
    for index, (name, values) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        runs, current = [], []
        for i, value in enumerate(values):
            if value is None:
                runs, current = runs + [current] if current else runs, []
            else:
                current.append((i, value))
        runs += [current] if current else []
        for run in runs:
            if len(run) > 1:
                coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run)
                parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                             f'stroke-width="2"/>')
            for i, value in run:
                parts.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="3" fill="{colour}">'
                             f"<title>{escape(name)}, {escape(x_label)} {tick(i)}: {_fmt(value)}"
                             f"</title></circle>")
        if len(series) > 1:
            lx = MARGIN["left"] + 8 + 110 * index
            parts.append(f'<rect x="{lx}" y="{MARGIN["top"] + 2}" width="10" height="10" '
                         f'fill="{colour}"/><text x="{lx + 14}" y="{MARGIN["top"] + 11}" '
                         f'font-size="10">{escape(name)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # nosec B308 B703 # text escaped
