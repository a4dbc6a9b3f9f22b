"""Returning visitors: the serving run's policy (boost / demote / off) applied by ranking,
within the query budget, with the formula the run evaluated, and erasure at once."""

import numpy as np
import pytest
from django.test import override_settings

from shop_recs import privacy, ranking, returning
from shop_recs.ml.policy import served_topk
from shop_recs.models import Interaction, TrainingRun
from tests.serving_data import serving_shop

pytestmark = pytest.mark.django_db

BOOST = {"mode": "boost", "weight": 2.0, "half_life": 16.0, "top_k": 10}


def pks(result):
    return [item.product.pk for item in result.items]


def bought(visitor_id, *orders):
    """Purchases of ``visitor_id``: ``orders`` oldest first, each a list of products."""
    Interaction.objects.bulk_create([
        Interaction(product=p, kind="purchase", visitor_id=visitor_id, order_id=f"o{n}",
                    timestamp=f"2024-01-{n + 1:02d}T00:00Z")
        for n, products in enumerate(orders) for p in products])


def shop_with_policy(policy):
    p, run, _bundle = serving_shop(bundle=False)
    TrainingRun.objects.filter(pk=run.pk).update(serving_policy=policy)
    ranking.invalidate()
    return p


def test_boost_puts_what_the_visitor_reorders_first():
    p = shop_with_policy(BOOST)
    # p[11] is in no list of p[0]; the visitor bought it in both orders, p[5] once.
    bought("me", [p[11], p[5]], [p[11]])
    result = ranking.frequently_bought_together(p[0], limit=4,
                                                visitor=ranking.Visitor(visitor_id="me"))
    assert pks(result)[:2] == [p[11].pk, p[5].pk] and result.personalised
    assert result.items[0].source == "history" and result.items[1].source == "model"
    anonymous = ranking.frequently_bought_together(p[0], limit=4)
    assert pks(anonymous) == [p[1].pk, p[2].pk, p[3].pk, p[4].pk]
    assert not anonymous.personalised


def test_boost_never_shows_the_anchor_or_unavailable_products():
    p = shop_with_policy(BOOST)
    p[11].in_stock = False
    p[11].save()
    bought("me", [p[0], p[11], p[6]])
    shown = pks(ranking.frequently_bought_together(p[0], limit=4,
                                                   visitor=ranking.Visitor(visitor_id="me")))
    assert p[0].pk not in shown and p[11].pk not in shown and shown[0] == p[6].pk


def test_off_serves_the_anonymous_list_and_the_setting_forces_it():
    p = shop_with_policy({"mode": "off"})
    bought("me", [p[1], p[11]])
    visitor = ranking.Visitor(visitor_id="me")
    anonymous = pks(ranking.frequently_bought_together(p[0], limit=4))
    assert pks(ranking.frequently_bought_together(p[0], limit=4, visitor=visitor)) == anonymous
    TrainingRun.objects.update(serving_policy=BOOST)  # the boost, but personalisation off
    ranking.invalidate()
    with override_settings(SHOP_RECS={"PERSONALISE": False}):
        result = ranking.frequently_bought_together(p[0], limit=4, visitor=visitor)
        assert not result.personalised and pks(result) == anonymous


def test_a_run_without_a_policy_keeps_demoting_owned_products():
    p = shop_with_policy({})
    bought("me", [p[1]])
    shown = pks(ranking.frequently_bought_together(p[0], limit=8,
                                                   visitor=ranking.Visitor(visitor_id="me")))
    assert shown[-1] == p[1].pk


def test_boost_stays_within_three_queries_cold_and_warm(django_assert_max_num_queries):
    p = shop_with_policy(BOOST)
    bought("me", [p[11]])
    visitor = ranking.Visitor(visitor_id="me")
    for _ in range(2):  # cold candidate lists, then cached ones
        with django_assert_max_num_queries(3):
            assert pks(ranking.frequently_bought_together(p[0], limit=3,
                                                          visitor=visitor))[0] == p[11].pk


def test_erasure_removes_the_history_from_the_next_answer(django_capture_on_commit_callbacks):
    p = shop_with_policy(BOOST)
    bought("me", [p[11]])
    visitor = ranking.Visitor(visitor_id="me")
    assert pks(ranking.frequently_bought_together(p[0], limit=3, visitor=visitor))[0] == p[11].pk
    with django_capture_on_commit_callbacks(execute=True):
        privacy.erase_user(visitor_id="me")
    assert p[11].pk not in pks(ranking.frequently_bought_together(p[0], limit=3,
                                                                  visitor=visitor))


def test_serving_orders_as_the_evaluated_formula():
    rng = np.random.default_rng(3)
    for _ in range(50):
        cands = rng.choice(40, 10, replace=False)
        history = rng.choice(40, rng.integers(1, 30))
        anchor = np.array([int(rng.integers(40, 45))])
        policy = {"weight": float(rng.choice([0.1, 0.5, 2.0])),
                  "half_life": float(rng.choice([2.0, 16.0])), "top_k": 10}
        candidates = [(int(i), "model", "ease", 0.0, 1, None, {}) for i in cands]
        served = returning.boosted(candidates, [int(i) for i in history], policy,
                                  {str(anchor[0])})
        expected = served_topk(cands[None, :], [history], [anchor], "boost",
                               policy["weight"], policy["half_life"], k=10)[0]
        assert [c[0] for c in served][:10] == [int(i) for i in expected if i >= 0]
