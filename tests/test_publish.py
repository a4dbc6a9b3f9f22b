"""publish: rows from a fitted scorer, the provenance of proposals, one set of bundle numbers."""

from decimal import Decimal
from types import SimpleNamespace

import numpy as np
import pytest
from django.utils import timezone

from shop_recs import bulk, publish
from shop_recs.ml.baselines import CoOccurrence
from shop_recs.ml.types import Baskets, ItemAttributes, ItemIndex
from shop_recs.models import (Bundle, BundleItem, Product, Recommendation, TrainingRun,
                              bundle_signature)
from shop_recs.signals import bundles_changed

pytestmark = pytest.mark.django_db

# Five products; {0, 1, 2} bought together four times, {0, 3, 4} three times.
ORDERS = [[0, 1, 2]] * 4 + [[0, 3, 4]] * 3 + [[1, 3]]


@pytest.fixture
def products():
    return Product.objects.bulk_create(
        [Product(sku=f"S{i}", name=name, price="2.00")
         for i, name in enumerate(["Red teapot", "Tea cosy", "Saucer", "Oak tray",
                                   "Linen napkin"])])


def fitted(products, shipped_model):
    baskets = Baskets(np.cumsum([0] + [len(o) for o in ORDERS]),
                      np.concatenate(ORDERS).astype(np.int32), np.arange(len(ORDERS)),
                      np.full(len(ORDERS), -1), 5)
    attrs = ItemAttributes(np.asarray([p.name for p in products], dtype=object),
                           np.asarray([""] * 5, dtype=object), np.full(5, 2.0))
    scorer = CoOccurrence("count").fit(baskets)
    return SimpleNamespace(
        scorer=scorer, index=ItemIndex([str(p.pk) for p in products]), attrs=attrs,
        baskets=baskets, choice="bundle_model+ease" if shipped_model else "ease",
        model=object() if shipped_model else None, published=np.ones(5, dtype=bool))


def publish_run(products, shipped_model):
    run = TrainingRun.objects.create(trigger="test")
    rows = publish.build(fitted(products, shipped_model), [p.pk for p in products])
    return publish.activate(run, rows), rows


@pytest.mark.parametrize("shipped_model, source", [(True, Bundle.Source.MODEL),
                                                   (False, Bundle.Source.BASELINE)])
def test_proposals_say_which_kind_of_scorer_found_them(products, shipped_model, source):
    run, rows = publish_run(products, shipped_model)
    bundles = Bundle.objects.filter(run=run)
    assert bundles.exists() and {b.source for b in bundles} == {source}
    assert set(Recommendation.objects.filter(run=run).values_list("source", flat=True)) == {
        rows.source}


def test_bundle_numbers_add_up_and_match_what_is_stored(products, caplog):
    caplog.set_level("INFO", logger="shop_recs.publish")
    first, _ = publish_run(products, True)
    c = first.counts
    assert c["bundles_found"] > 0 and c["bundles_new"] == c["bundles_proposed"] == c[
        "bundles_found"]
    assert Bundle.objects.filter(run=first, status=Bundle.Status.PROPOSED).count() == c[
        "bundles_proposed"]
    rejected = Bundle.objects.filter(run=first).first()
    rejected.status = Bundle.Status.REJECTED
    rejected.save()
    second, _ = publish_run(products, False)
    c = second.counts
    assert c["bundles_skipped"] == 1 and c["bundles_refreshed"] == c["bundles_found"] - 1
    assert c["bundles_found"] == c["bundles_proposed"] + c["bundles_skipped"]
    assert Bundle.objects.filter(status=Bundle.Status.PROPOSED).count() == c["bundles_proposed"]
    # a refreshed proposal takes the new run's provenance
    assert {b.source for b in Bundle.objects.filter(run=second)} == {Bundle.Source.BASELINE}
    assert f"proposed {c['bundles_proposed']}," in caplog.records[-1].getMessage()


def test_stale_proposals_of_baseline_runs_are_dropped(products,
                                                      django_capture_on_commit_callbacks):
    first, _ = publish_run(products, False)
    stale = Bundle.objects.filter(run=first).first()
    stale.signature = "gone"  # a proposal the next run will not make again
    stale.save()
    assert BundleItem.objects.filter(bundle=stale).exists()
    sent = []
    bundles_changed.connect(lambda **kw: sent.append(kw["anchor_ids"]), weak=False,
                            dispatch_uid="test_stale_proposals")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            second, _ = publish_run(products, True)
    finally:
        bundles_changed.disconnect(dispatch_uid="test_stale_proposals")
    assert not Bundle.objects.filter(pk=stale.pk).exists()
    assert not BundleItem.objects.filter(bundle_id=stale.pk).exists()  # its items went too
    assert second.counts["bundles_dropped"] == 1
    assert sent == [[stale.anchor_id]]  # one signal: the serving cache forgets the proposal


def test_new_proposals_are_stored_whole_without_model_instances(products, monkeypatch):
    """Issue 15: proposals and their items are written through shop_recs.bulk (millions
    at 10^6 products), with every field a proposal made one at a time would have."""
    for model in (Bundle, BundleItem):
        monkeypatch.setattr(model.objects, "bulk_create",
                            lambda *a, **k: pytest.fail("bulk_create builds every object"))
    before = timezone.now()
    run, rows = publish_run(products, True)
    stored = {b.signature: b for b in Bundle.objects.filter(run=run).prefetch_related("items")}
    assert len(stored) == run.counts["bundles_new"] > 0
    first = {}  # the same set around another anchor is the same bundle: the first is kept
    for anchor, items, score, evidence in rows.bundles:
        first.setdefault(bundle_signature(anchor, items), (anchor, items, score, evidence))
    assert set(first) == set(stored)
    for sig, (anchor, items, score, evidence) in first.items():
        b = stored[sig]
        assert (b.anchor_id, b.score, b.evidence) == (anchor, score, evidence)
        assert [(i.product_id, i.position) for i in b.items.all()] == [
            (pk, pos) for pos, pk in enumerate(items, 1)]
        assert (b.status, b.source, b.discount_percent) == (
            Bundle.Status.PROPOSED, Bundle.Source.MODEL, Decimal("0.0"))
        assert before <= b.created_at <= timezone.now() and b.reviewed_at is None


class _Matrix:
    """A scorer with fixed, distinct scores (so that no tie leaves the order to the DB)."""

    name = "matrix"

    def __init__(self, n, seed=0):
        self.m = np.random.default_rng(seed).permutation(n * n).reshape(n, n).astype(np.float32)

    def score(self, contexts, histories=None):
        return np.stack([self.m[np.asarray(c)].sum(axis=0) for c in contexts])


@pytest.mark.parametrize("cart", [[0], [0, 1], [2, 5, 7], [1, 3, 4, 6]])
def test_the_benchmark_cart_is_what_the_cart_widget_serves(cart, settings):
    """ml.served merges published lists the way ranking.complete_the_cart does."""
    from shop_recs import ranking
    from shop_recs.ml.served import PublishedLists

    settings.SHOP_RECS = {**settings.SHOP_RECS, "FBT_TOP_K": 3, "BUNDLES_PER_PRODUCT": 0,
                          "FALLBACK": False, "PERSONALISE": False, "MAX_LIMIT": 20}
    n = 9
    products = Product.objects.bulk_create(
        [Product(sku=f"M{i}", name=f"Item {i}", price="2.00") for i in range(n)])
    scorer = _Matrix(n)
    baskets = Baskets(np.array([0, 2]), np.array([0, 1], np.int32), np.zeros(1), np.full(1, -1), n)
    attrs = ItemAttributes(np.asarray([p.name for p in products], dtype=object),
                           np.asarray([""] * n, dtype=object), np.full(n, 2.0))
    fit = SimpleNamespace(scorer=scorer, index=ItemIndex([str(p.pk) for p in products]),
                          attrs=attrs, baskets=baskets, choice="matrix", model=None,
                          published=np.ones(n, dtype=bool))
    publish.activate(TrainingRun.objects.create(trigger="test"),
                     publish.build(fit, [p.pk for p in products]))
    served = ranking.complete_the_cart([products[i] for i in cart], limit=20)
    expected = [i for i in PublishedLists(scorer, n, top_k=3).merge(np.array(cart))
                if i not in cart]
    assert [item.product.pk for item in served.items] == [products[i].pk for i in expected]
    assert len(expected) >= (3 if len(cart) == 1 else 4)  # lists were actually merged


def test_fbt_rows_are_written_in_bulk_without_model_instances(products, monkeypatch):
    """Issue 15: 10 M rows go through COPY (PostgreSQL) or batched executemany, never a list of
    Recommendation objects; what is stored is what build() computed, evidence included."""
    monkeypatch.setattr(Recommendation.objects, "bulk_create",
                        lambda *a, **k: pytest.fail("bulk_create builds every row as an object"))
    monkeypatch.setattr(bulk, "BATCH", 3)  # several batches on SQLite
    run, rows = publish_run(products, False)
    stored = list(Recommendation.objects.filter(run=run).order_by("product_id", "rank").values_list(
        "product_id", "recommended_id", "rank", "score", "source", "evidence"))
    want = sorted(((p, r, rank, score, rows.source, ev) for p, r, rank, score, ev in rows.fbt),
                  key=lambda w: (w[0], w[2]))
    assert len(stored) == len(rows.fbt) > 3 and run.counts["fbt_rows"] == len(rows.fbt)
    assert [s[:3] + s[4:] for s in stored] == [w[:3] + w[4:] for w in want]
    assert [s[3] for s in stored] == pytest.approx([w[3] for w in want])


def test_a_failed_write_keeps_the_old_run_serving(products, monkeypatch):
    first, _ = publish_run(products, False)
    served = list(Recommendation.objects.filter(run=first).values_list("pk", flat=True))

    real = publish.write_fbt

    def broken(run, fbt, source):  # some rows are written, then the write fails
        real(run, fbt[:2], source)
        raise RuntimeError("disk full")

    monkeypatch.setattr(publish, "write_fbt", broken)
    with pytest.raises(RuntimeError):
        publish_run(products, False)
    first.refresh_from_db()
    assert first.is_active and TrainingRun.objects.filter(is_active=True).count() == 1
    assert list(Recommendation.objects.values_list("pk", flat=True).order_by("pk")) == sorted(
        served)


def test_candidate_lists_publish_the_rows_of_the_whole_catalogue(monkeypatch):
    """Issue 15: above the dense threshold bundles grow from candidate lists learned from the
    same rows as the FBT lists (each anchor is scored alone once). On a planted shop the FBT
    rows and the proposed bundles are those of the search over the whole catalogue."""
    from shop_recs.ml import bundle_search, sparse
    from shop_recs.ml.baselines import EASE, cooccurrence_counts
    from tests.ml.test_bundles import _planted

    baskets, index, attrs = _planted(300)
    counts = cooccurrence_counts(baskets, dense_max_items=0)  # a sparse EASE, as at scale
    products = Product.objects.bulk_create(
        [Product(sku=f"P{i}", name=attrs.names[i], price="2.00") for i in range(300)])
    fit = SimpleNamespace(scorer=EASE(30.0, counts).fit(baskets), index=index, attrs=attrs,
                          baskets=baskets, choice="ease", model=None,
                          published=baskets.item_counts() >= 2)
    pks = [p.pk for p in products]
    whole = publish.build(fit, pks)
    monkeypatch.setattr(sparse, "DENSE_MAX_ITEMS", 100)
    monkeypatch.setattr(bundle_search, "CANDIDATES", 50)
    contexts = []
    real = type(fit.scorer).score
    monkeypatch.setattr(type(fit.scorer), "score",
                        lambda self, c, h=None: contexts.extend(map(len, c)) or real(self, c, h))
    lists = publish.build(fit, pks)
    assert len(whole.fbt) > 1000 and len(whole.bundles) > 100
    assert lists.fbt == whole.fbt and lists.bundles == whole.bundles
    # beams are scored at their candidates only, and every list comes from the sparse rows'
    # top k (issue 15): no full row is scored at all
    assert contexts == []


def test_fbt_rows_are_held_as_columns_and_read_as_tuples(products):
    """Issue 15: 10 M FBT rows as tuples with a dict each would take about 5 GB; build() keeps
    numpy columns and makes each tuple as it is read (what write_fbt and the counts read)."""
    rows = publish.build(fitted(products, False), [p.pk for p in products])
    assert isinstance(rows.fbt, publish.FbtRows) and len(rows.fbt) > 3
    assert all(isinstance(col, np.ndarray) for part in rows.fbt.parts for col in part)
    as_list = list(rows.fbt)
    assert len(as_list) == len(rows.fbt) and rows.fbt[:2] == as_list[:2]
    pk, rec, rank, score, evidence = as_list[0]
    assert pk == products[0].pk and rank == 1 and isinstance(score, float)
    assert set(evidence) == {"orders_together", "lift", "confidence"}


def test_refreshed_proposals_are_updated_by_primary_key_in_batches(products, monkeypatch):
    """A run that proposes the same bundles again updates them (run, score, evidence, source)
    with one primary-key UPDATE per row in batches, not bulk_update's CASE per row and field."""
    first, _ = publish_run(products, True)
    ids = set(Bundle.objects.filter(run=first).values_list("pk", flat=True))
    monkeypatch.setattr(Bundle.objects, "bulk_update",
                        lambda *a, **k: pytest.fail("bulk_update builds a CASE per row"))
    monkeypatch.setattr(bulk, "BATCH", 2)  # several batches
    second, _ = publish_run(products, False)
    again = Bundle.objects.filter(run=second)
    assert set(again.values_list("pk", flat=True)) == ids  # the same rows, updated
    assert {b.source for b in again} == {Bundle.Source.BASELINE}
    assert all(b.evidence["orders_with_all"] >= 1 and "explanation" in b.evidence
               for b in again)
