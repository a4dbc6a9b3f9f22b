"""Helpers of benchmarks.scale: size parsing, growth exponents, the printed table."""

import json
from xml.etree import ElementTree

import pytest

from benchmarks.scale import growth_exponent, main, parse_size, table


def test_sizes_read_like_the_command_line():
    assert [parse_size(s) for s in ("10k", "100K", "1m", "2.5k", "500")] == [
        10_000, 100_000, 1_000_000, 2_500, 500]


def test_growth_exponent_is_the_log_log_slope():
    assert growth_exponent([10, 100, 1000], [3, 300, 30_000]) == pytest.approx(2.0)
    assert growth_exponent([10_000, 100_000], [20.0, 200.0]) == pytest.approx(1.0)
    assert growth_exponent([10], [1.0]) is None  # one point has no slope
    assert growth_exponent([10, 100], [0.0, 5.0]) is None  # a zero cannot be logged


def test_table_lists_every_stage_and_size():
    results = [{"products": n, "lines": 50 * n, "run_seconds": n / 100, "peak_rss_mb": 100,
                "planted_recall10": 0.9, "catalogue": n,
                "stages": {"import": {"seconds": 1.0, "peak_rss_mb": 90},
                           "baselines": {"seconds": 2.0, "peak_rss_mb": 95}}}
               for n in (10_000, 100_000)]
    del results[0]["stages"]["baselines"]
    text = table(results)
    assert "import" in text and "baselines" in text and "100,000" in text
    assert text.splitlines()[3].split()[0] == "baselines" and "-" in text.splitlines()[3]


def test_merge_reports_runs_of_different_days_as_one_curve(tmp_path, capsys):
    def run(n, seconds):
        return {"products": n, "lines": 20 * n, "run_seconds": seconds, "peak_rss_mb": n / 100,
                "stages": {"fit": {"seconds": seconds, "peak_rss_mb": n / 100}}}

    (tmp_path / "small.json").write_text(json.dumps({"sizes": [run(10_000, 10.0),
                                                               run(100_000, 100.0)]}))
    (tmp_path / "large.json").write_text(json.dumps({"sizes": [run(1_000_000, 1000.0)]}))
    out, svg = tmp_path / "all.json", tmp_path / "curve.svg"
    assert main(["--merge", str(tmp_path / "large.json"), str(tmp_path / "small.json"),
                 "--json", str(out), "--svg", str(svg)]) == 0
    got = json.loads(out.read_text())
    assert [r["products"] for r in got["sizes"]] == [10_000, 100_000, 1_000_000]
    assert got["growth"]["fit"] == {"time": 1.0, "memory": 1.0}
    assert got["growth"]["run_total"]["time"] == 1.0
    assert "1,000,000 prod" in capsys.readouterr().out
    # the curve: a time and a memory chart; both grow in proportion to the products here, so
    # each figure's line lies on the reference line of slope one
    ns = {"s": "http://www.w3.org/2000/svg"}
    charts = ElementTree.parse(svg).getroot().findall("s:svg", ns)
    assert len(charts) == 2
    for chart in charts:
        lines = [p.get("points") for p in chart.findall("s:polyline", ns)]
        assert lines[0] == lines[-1] and len(lines[0].split()) == 3
        assert "1,000,000" in "".join(chart.itertext())


def test_the_core_benchmark_can_list_and_search_with_the_blend_whatever_shipped(tmp_path):
    from benchmarks import scale_core

    out = tmp_path / "core.json"
    scale_core.main(["--products", "400", "--lines", "8000", "--time-budget", "2",
                     "--epochs", "1", "--serve", "blend", "--json", str(out)])
    got = json.loads(out.read_text())
    assert got["served"] == (got["choice"] if "+" in got["choice"]
                             else f"bundle_model+{got['choice']}")
    assert got["bundles_found"] > 0 and 0 <= got["planted_recall10"] <= 1
    assert set(got["stages"]) >= {"fit_total", "lists", "search"}
