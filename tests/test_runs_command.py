"""``manage.py shop_recs_runs``: reads what each run stored when it published."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from shop_recs.models import Bundle, BundleItem, Product, Recommendation, TrainingRun
from shop_recs.review import signature

pytestmark = pytest.mark.django_db


def published_run(products, n_rows):
    """A succeeded run with ``n_rows`` FBT rows and ``n_rows`` proposed bundles."""
    run = TrainingRun.objects.create(
        status=TrainingRun.Status.SUCCEEDED, pending=None,
        counts={"orders": 100, "fbt_rows": n_rows, "bundles_proposed": n_rows},
        gate={"chosen": "bundle_model"}, metrics={"test": {"bundle_model": {"anchor_ndcg10": 0.2}}})
    n = len(products)
    Recommendation.objects.bulk_create(
        Recommendation(run=run, product=products[i % n], recommended=products[(i + 1) % n],
                       rank=i // n + 1, score=1.0, source="m") for i in range(n_rows))
    bundles = Bundle.objects.bulk_create(
        Bundle(anchor=products[i % n], run=run, score=0.5, evidence={"orders_with_all": 3},
               signature=signature(products[i % n].pk, [run.pk, i])) for i in range(n_rows))
    BundleItem.objects.bulk_create(
        BundleItem(bundle=b, product=products[(i + 2) % n], position=1)
        for i, b in enumerate(bundles))
    return run


def run_command(*args):
    out = StringIO()
    with CaptureQueriesContext(connection) as queries:
        call_command("shop_recs_runs", *args, stdout=out, stderr=StringIO())
    return out.getvalue(), [q["sql"] for q in queries.captured_queries]


@pytest.fixture
def products():
    return [Product.objects.create(sku=f"R{i}", name=f"Runs product {i}") for i in range(8)]


def test_json_reports_the_counts_the_run_stored(products):
    run = published_run(products, 5)
    # What the listing shows comes from the run itself, not from counting rows now:
    # an engineer deleting rows by hand does not change what the run published.
    Recommendation.objects.filter(run=run).delete()
    out, _ = run_command("--json")
    [summary] = json.loads(out)
    assert summary["id"] == run.pk
    assert summary["fbt_rows"] == 5 and summary["proposed_bundles"] == 5
    assert summary["counts"]["orders"] == 100


def test_query_count_does_not_grow_with_runs_or_published_rows(products):
    published_run(products, 2)
    _, few = run_command("--json", "--limit", "5")
    for _ in range(4):
        published_run(products, 40)
    out, many = run_command("--json", "--limit", "5")
    assert len(json.loads(out)) == 5
    assert len(many) == len(few) <= 3  # stale-run check and the listing, nothing per run
    # Published rows are never scanned (a COUNT over them took minutes on the demo data).
    assert not [sql for sql in many if "shop_recs_recommendation" in sql
                or "shop_recs_bundle" in sql]


def test_text_output_and_runs_that_published_nothing(products):
    published_run(products, 3)
    TrainingRun.objects.create(status=TrainingRun.Status.FAILED, pending=None, error="boom")
    out, _ = run_command()
    assert "FBT rows=3 proposed bundles=3" in out
    assert "FBT rows=- proposed bundles=-" in out and "error: boom" in out
