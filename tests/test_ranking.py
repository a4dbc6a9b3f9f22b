"""Serving order, filters, fallbacks, personalisation, cache and query counts of ranking."""

import pytest
from django.test import override_settings

from shop_recs import fallbacks, ranking, review, serving_cache
from shop_recs.models import Bundle, BundleItem, Interaction, Product, TrainingRun
from shop_recs.signals import bundles_changed, run_activated
from tests.serving_data import make_products, purchases, serving_shop

pytestmark = pytest.mark.django_db


def pks(result):
    return [item.product.pk for item in result.items]


def test_bundle_items_come_first_then_the_runs_fbt_list():
    p, run, bundle = serving_shop()
    result = ranking.frequently_bought_together(p[0], limit=5)
    assert pks(result) == [p[9].pk, p[10].pk, p[1].pk, p[2].pk, p[3].pk]
    assert [i.source for i in result.items] == ["bundle"] * 2 + ["model"] * 3
    assert result.items[0].bundle == bundle.pk and result.items[2].run == run.pk
    assert result.bundle == bundle.pk and result.run == run.pk
    assert result.bundles[bundle.pk]["discount_percent"] == "10.0"


def test_a_bundle_cut_by_the_limit_is_not_offered_whole():
    p, _run, bundle = serving_shop()
    result = ranking.frequently_bought_together(p[0], limit=1)
    assert pks(result) == [p[9].pk] and result.bundle is None


@pytest.mark.parametrize("status", [Bundle.Status.PROPOSED, Bundle.Status.REJECTED,
                                    Bundle.Status.RETIRED])
def test_unapproved_bundles_are_not_served(status):
    p, _run, bundle = serving_shop()
    Bundle.objects.filter(pk=bundle.pk).update(status=status)
    ranking.invalidate()
    assert ranking.frequently_bought_together(p[0], limit=3).items[0].source == "model"


def test_proposed_bundles_serve_when_approval_is_not_required():
    p, _run, bundle = serving_shop()
    Bundle.objects.filter(pk=bundle.pk).update(status=Bundle.Status.PROPOSED)
    with override_settings(SHOP_RECS={"REQUIRE_APPROVAL": False}):
        ranking.invalidate()
        assert ranking.frequently_bought_together(p[0], limit=3).items[0].bundle == bundle.pk


def test_inactive_out_of_stock_priceless_deleted_and_excluded_products_are_removed():
    p, _run, _bundle = serving_shop(bundle=False)
    Product.objects.filter(pk=p[1].pk).update(is_active=False)
    Product.objects.filter(pk=p[2].pk).update(in_stock=False)
    Product.objects.filter(pk=p[3].pk).update(price=None)
    p[4].delete()
    result = ranking.frequently_bought_together(p[0], limit=3, exclude=[p[5].pk])
    assert pks(result) == [p[6].pk, p[7].pk, p[8].pk]


def test_only_the_active_runs_rows_serve():
    p, run, _bundle = serving_shop(bundle=False)
    TrainingRun.objects.filter(pk=run.pk).update(is_active=False)
    with override_settings(SHOP_RECS={"FALLBACK": False}):
        ranking.invalidate()
        assert not ranking.frequently_bought_together(p[0])


def test_fallback_cooccurrence_then_popular_in_the_category():
    p = make_products(6)
    other = make_products(2, prefix="Q", category="garden")
    purchases({"o1": [p[0], p[1]], "o2": [p[0], p[1], p[2]], "o3": [p[3], p[3 + 1]],
               "o4": [p[4]], "o5": [other[0], other[1]], "o6": [other[0]]})
    fallbacks.refresh()
    result = ranking.frequently_bought_together(p[0], limit=5)
    assert pks(result)[:2] == [p[1].pk, p[2].pk]
    assert [i.method for i in result.items[:2]] == ["cooccurrence"] * 2
    assert set(pks(result)[2:]) == {p[3].pk, p[4].pk}
    assert all(i.method == "popular" for i in result.items[2:])
    assert other[0].pk not in pks(result)


def test_nothing_rather_than_filler():
    p = make_products(3)
    purchases({"o1": [p[0], p[1]]})
    with override_settings(SHOP_RECS={"FALLBACK": False}):
        assert not ranking.frequently_bought_together(p[0])


def test_personalisation_demotes_owned_and_promotes_related_products():
    p, run, _bundle = serving_shop(bundle=False)
    visitor = ranking.Visitor(visitor_id="me")
    Interaction.objects.create(product=p[1], kind="purchase", visitor_id="me", order_id="x",
                               timestamp="2024-01-01T00:00Z")
    # p[11] was bought by the visitor; its FBT list holds p[3].
    Interaction.objects.create(product=p[11], kind="purchase", visitor_id="me", order_id="y",
                               timestamp="2024-01-02T00:00Z")
    run.recommendations.create(product=p[11], recommended=p[3], rank=1, score=1, source="bpr")
    result = ranking.frequently_bought_together(p[0], limit=8, visitor=visitor)
    assert result.personalised
    assert pks(result)[0] == p[3].pk and pks(result)[-1] == p[1].pk
    assert pks(ranking.frequently_bought_together(p[0], limit=3))[0] == p[1].pk


def test_cart_completion_skips_cart_items_and_fuses_lists():
    p, _run, _bundle = serving_shop(bundle=False)
    result = ranking.complete_the_cart([p[0], p[1]], limit=4)
    assert p[0].pk not in pks(result) and p[1].pk not in pks(result)
    assert pks(result)[:3] == [p[2].pk, p[3].pk, p[4].pk]


@pytest.mark.parametrize("limit", [1, 5, 20])
def test_at_most_three_queries_cold_and_one_warm(django_assert_max_num_queries,
                                                 django_assert_num_queries, limit):
    p, _run, _bundle = serving_shop()
    purchases({"o1": [p[0], p[11]]})
    with django_assert_max_num_queries(3):
        ranking.frequently_bought_together(p[0], limit=limit,
                                           visitor=ranking.Visitor(visitor_id="v"))
    with django_assert_num_queries(1):
        ranking.frequently_bought_together(p[0], limit=limit,
                                           visitor=ranking.Visitor(visitor_id="v"))
    with django_assert_max_num_queries(3):
        ranking.recommend([p[0].pk, p[1].pk, p[2].pk], limit=limit, strict=False)


def test_unknown_anchor_raises_lookup_error():
    make_products(1)
    with pytest.raises(LookupError):
        ranking.recommend([987654])


def test_cache_invalidates_on_signals_and_bundle_edits(django_capture_on_commit_callbacks):
    p, run, bundle = serving_shop()
    assert ranking.frequently_bought_together(p[0], limit=1).items[0].bundle == bundle.pk
    Bundle.objects.filter(pk=bundle.pk).update(status=Bundle.Status.PROPOSED)  # no signal
    assert ranking.frequently_bought_together(p[0], limit=1).items[0].bundle == bundle.pk
    bundles_changed.send(sender=Bundle, anchor_ids=[p[0].pk])
    assert ranking.frequently_bought_together(p[0], limit=1).items[0].source == "model"
    BundleItem.objects.create(bundle=Bundle.objects.create(
        anchor=p[0], status="approved", signature="s2", score=1), product=p[11], position=1)
    assert pks(ranking.frequently_bought_together(p[0], limit=1)) == [p[11].pk]
    run.recommendations.filter(product=p[0], rank=1).delete()
    run_activated.send(sender=TrainingRun, run=run)
    assert pks(ranking.frequently_bought_together(p[0], limit=2))[1] == p[2].pk


def test_review_decisions_reach_customers(django_capture_on_commit_callbacks, django_user_model):
    p, _run, bundle = serving_shop()
    user = django_user_model.objects.create(username="rev", is_staff=True)
    ranking.frequently_bought_together(p[0])
    with django_capture_on_commit_callbacks(execute=True):
        review.decide([bundle], review.RETIRE, user)
    assert ranking.frequently_bought_together(p[0]).items[0].source == "model"


def test_a_broken_cache_is_bypassed(monkeypatch):
    p, _run, _bundle = serving_shop()

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(ranking, "_cache", broken)
    assert ranking.frequently_bought_together(p[0], limit=2)
    ranking.invalidate()  # logs, does not raise


def test_a_visitor_without_purchases_is_remembered_and_served_the_plain_query(
        django_assert_num_queries):
    p, _run, _bundle = serving_shop(bundle=False)
    nobody = ranking.Visitor(visitor_id="nobody")
    assert not ranking.frequently_bought_together(p[0], limit=3, visitor=nobody).personalised
    ranking.invalidate()  # candidates recomputed: the union query, then the plain fetch
    with django_assert_num_queries(2) as queries:
        ranking.frequently_bought_together(p[0], limit=3, visitor=nobody)
    assert "EXISTS" not in queries.captured_queries[-1]["sql"].upper()
    # A purchase of theirs is recorded: personalised from the next request on.
    Interaction.objects.create(product=p[1], kind="purchase", visitor_id="nobody",
                               order_id="n1", timestamp="2024-01-01T00:00Z")
    result = ranking.frequently_bought_together(p[0], limit=8, visitor=nobody)
    assert result.personalised and pks(result)[-1] == p[1].pk


def test_the_compiled_product_fetch_returns_what_the_orm_returns():
    p, _run, _bundle = serving_shop()
    Product.objects.filter(pk=p[3].pk).update(in_stock=False)
    adapter = ranking.get_adapter()
    wanted, anchors = [p[i].pk for i in range(1, 9)], [p[0].pk]
    compiled = ranking._compiled_products(adapter, wanted, anchors)
    expected = list(ranking._products_queryset(adapter, wanted, anchors))
    fields = [f.attname for f in Product._meta.concrete_fields]

    def values(products):
        return sorted(tuple(getattr(product, name) for name in fields) for product in products)

    assert values(compiled) == values(expected) and len(compiled) == 8  # p3 filtered out
    assert all(isinstance(product, Product) and product._state.db == "default"
               and not product._state.adding for product in compiled)
    # The same shape with other keys reuses the compiled SQL and fills in the new keys.
    again = ranking._compiled_products(adapter, [p[i].pk for i in range(2, 10)], [p[1].pk])
    assert sorted(product.pk for product in again) == sorted(
        [p[1].pk, *(p[i].pk for i in range(2, 10) if i != 3)])


def test_a_limited_fetch_reads_only_the_first_available_products_in_candidate_order():
    p, _run, _bundle = serving_shop()
    Product.objects.filter(pk__in=[p[2].pk, p[5].pk]).update(in_stock=False)
    adapter = ranking.get_adapter()
    wanted, anchors = [p[i].pk for i in (6, 2, 1, 5, 8, 3, 9)], [p[0].pk]
    for _ in range(2):  # compiled, then from the compiled SQL
        found = ranking._compiled_products(adapter, wanted, anchors, 3)
        # The anchor, then the first three in stock in the order given (2 and 5 are not).
        assert sorted(product.pk for product in found) == sorted(
            [p[0].pk, p[6].pk, p[1].pk, p[8].pk])
    # Through ranking: the bundle, then the FBT list without p2; the answer depends on
    # the generation and the anchor's shard only.
    result = ranking.recommend([p[0].pk], limit=4, track=True)
    assert [item.product.pk for item in result.items] == [p[9].pk, p[10].pk, p[1].pk, p[3].pk]
    assert set(result.versions) == {serving_cache.GENERATION_KEY,
                                    serving_cache._version_key(p[0].pk)}


def test_evidence_is_decoded_for_the_items_shown():
    p, _run, _bundle = serving_shop()
    result = ranking.frequently_bought_together(p[0], limit=4)
    assert result.items[0].evidence == {"orders_with_all": 7, "lift": 3.0}
    assert result.items[2].evidence == {"orders_together": 9, "lift": 2.0, "confidence": 0.1}
