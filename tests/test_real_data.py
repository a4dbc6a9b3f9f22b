"""Integration: import the real UCI Online Retail file from ../shared/data.

The data folder is present on developer machines and in CI; a missing folder fails
there rather than skipping, so the test cannot silently stop running.
"""

import os
from pathlib import Path

import pytest

from shop_recs.importer import import_orders
from shop_recs.models import Interaction, Product

DATA = Path(os.environ.get("SHOP_RECS_DATA_DIR", Path(__file__).resolve().parents[2] / "shared"
                           / "data")) / "online_retail"
FILE = DATA / "online_retail_2010-12_2011-12.csv.gz"


@pytest.fixture
def online_retail():
    if not FILE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{FILE} is missing: CI must have ../shared/data")
        pytest.skip(f"{FILE} not present on this machine")
    return FILE


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_import_of_the_real_online_retail_year(online_retail):
    result = import_orders([online_retail], fmt="online_retail")
    report = result.report
    # Figures from ../shared/data/online_retail/PROVENANCE.md: every line read, every
    # cancellation line and the 3 bad-debt adjustments dropped.
    assert report.read == 541_909
    assert report.skipped["cancellation"] == 9_288
    assert report.skipped["bad_debt_adjustment"] == 3
    assert report.bad_lines == []
    assert Interaction.objects.purchases().count() == result.imported == report.kept
    orders = Interaction.objects.order_count()
    assert orders == result.orders
    # About 20.5k clean baskets per PROVENANCE.md, fewer after price <= 0 lines go.
    assert 19_000 < orders < 20_600
    assert Product.objects.count() == result.products_created
    # Codes written in two cases (85123A / 85123a) are one product (issue #16).
    assert 3_700 < result.products_created < 4_070
    assert result.case_folded > 0
    assert not Product.objects.filter(sku__regex=r"[a-z]").exists()
    assert not Product.objects.filter(sku__in=["POST", "DOT", "M", "BANK CHARGES"]).exists()
    anonymous = Interaction.objects.filter(visitor_id="").count()
    assert 0.2 < anonymous / result.imported < 0.3  # ~25 % of lines have no customer
    assert import_orders([online_retail], fmt="online_retail").imported == 0


def real_slice(source, path, orders=500):
    """The first ``orders`` invoices of the real file, as a gzip CSV of the same layout."""
    import gzip

    with gzip.open(source, "rt", newline="") as src, gzip.open(path, "wt", newline="") as out:
        out.write(src.readline())
        seen = set()
        for line in src:
            invoice = line.split(",", 1)[0]
            if invoice not in seen and len(seen) == orders:
                break
            seen.add(invoice)
            out.write(line)
    return path


@pytest.mark.slow
@pytest.mark.django_db
def test_training_run_records_what_the_benchmark_reports_as_shipped(online_retail, tmp_path,
                                                                      settings):
    """The same orders and settings give the same shipped and shipped_refit figures through
    `shop_recs_train --sync` (database) and the benchmark CLI (file): one protocol."""
    import json

    from django.core.management import call_command

    from shop_recs.ml.benchmark import main as benchmark
    from shop_recs.models import TrainingRun

    path = real_slice(online_retail, tmp_path / "slice.csv.gz")
    learning = {"EPOCHS": 1, "TIME_BUDGET_S": 3600, "EASE_LAMBDAS": [10, 300, 3000],
                "KNN_KS": [50], "DEVICE": "cpu"}
    settings.SHOP_RECS = {**settings.SHOP_RECS, **learning, "BUNDLES_PER_PRODUCT": 0,
                          "ARTIFACT_DIR": str(tmp_path / "artifacts")}
    import_orders([path], fmt="online_retail")
    call_command("shop_recs_train", "--sync")
    run = TrainingRun.objects.get()
    out = tmp_path / "bench.json"
    assert benchmark(["--orders", str(path), "--format", "online_retail", "--seeds", "1",
                      *[f"--setting={k}={json.dumps(v)}" for k, v in learning.items()],
                      "--device", "cpu", "--json", str(out)]) == 0
    bench = json.loads(out.read_text())
    (seed,) = bench["per_seed"]
    assert bench["split"] == run.metrics["split"]
    assert seed["choice"] == run.gate["chosen"] == run.shipped_model
    assert bench["gate"][0]["reason"] == run.gate["reason"]  # the same interval, too
    for name in ("shipped", "shipped_refit"):
        for key in ("complete_ndcg10", "anchor_ndcg10", "anchor_recall10"):
            assert seed["rows"][name][key] == pytest.approx(run.metrics["test"][name][key],
                                                            abs=1e-9), (name, key)
