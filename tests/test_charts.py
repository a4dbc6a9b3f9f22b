"""Server-side SVG line charts."""

import math
import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from shop_recs.charts import line_chart

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg):
    return ET.fromstring(str(svg))


def test_one_point_per_epoch_and_a_line_through_them():
    root = parse(line_chart([("loss", [0.9, 0.6, 0.5])], title="Training loss", y_label="loss"))
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    assert "loss from 0.9 to 0.5" in root.get("aria-label")
    points = root.findall(f"{SVG}circle")
    assert len(points) == 3
    assert points[0].find(f"{SVG}title").text == "loss, epoch 1: 0.9"
    xs = [float(p.get("cx")) for p in points]
    ys = [float(p.get("cy")) for p in points]
    assert xs == sorted(xs) and ys == sorted(ys)  # falling loss: lower on screen = larger y
    assert len(root.findall(f"{SVG}polyline")) == 1


def test_gaps_for_missing_values_and_nothing_to_draw():
    root = parse(line_chart([("m", [0.1, None, float("nan"), 0.3, 0.4])], title="t"))
    assert len(root.findall(f"{SVG}circle")) == 3
    assert len(root.findall(f"{SVG}polyline")) == 1  # 0.3 → 0.4; 0.1 stands alone
    assert line_chart([("m", [])], title="t") == ""
    assert line_chart([("m", [None, "x", float("inf")])], title="t") == ""


def test_flat_and_single_values_are_drawn():
    for values in ([0.5], [2.0, 2.0, 2.0], [0.0, 0.0]):
        root = parse(line_chart([("m", values)], title="t"))
        assert all(math.isfinite(float(c.get("cy"))) for c in root.findall(f"{SVG}circle"))


def test_labels_are_escaped_and_several_series_get_a_legend():
    svg = line_chart([("<run 1>", [1, 2]), ("run & 2", [2, 1])], title='<script>"x"</script>')
    assert "<script>" not in svg
    root = parse(svg)
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert texts >= {"<run 1>", "run & 2", '<script>"x"</script>'}
    assert len({p.get("stroke") for p in root.findall(f"{SVG}polyline")}) == 2


@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True,
                                                 width=32)), max_size=40))
def test_any_series_gives_well_formed_svg_inside_the_box(values):
    svg = line_chart([("s", values)], title="t", width=300, height=200)
    if not svg:
        return
    for circle in parse(svg).findall(f"{SVG}circle"):
        assert 0 <= float(circle.get("cx")) <= 300 and 0 <= float(circle.get("cy")) <= 200
