"""Privacy: erasing a shopper (function, command, staff API), flagging and retiring runs
trained on erased data, the next extract excluding them, and no raw IP stored anywhere."""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import models
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from shop_recs import privacy, ranking
from shop_recs.data import extract_baskets
from shop_recs.ingest import pseudonymise, record_order
from shop_recs.models import Interaction, TrainingRun
from tests.serving_data import make_products

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
ERASE_URL = "shop_recs:api-privacy-erase"


@pytest.fixture
def shop(django_user_model):
    """Alice (an account, a session and a customer number) and Bob, with orders a day apart."""
    products = make_products(6)
    alice = django_user_model.objects.create_user("alice", password="pw")
    bob = django_user_model.objects.create_user("bob", password="pw")
    day = timezone.now() - timedelta(days=10)
    record_order("A1", [{"product": products[0]}, {"product": products[1]}], user=alice,
                 visitor_id=pseudonymise("session", "alice-session"), timestamp=day)
    # Before logging in: same session, no user on the rows.
    Interaction.objects.create(product=products[2], kind=Interaction.Kind.VIEW,
                               visitor_id=pseudonymise("session", "alice-session"),
                               timestamp=day)
    record_order("A2", [{"product": products[2]}, {"product": products[3]}],
                 customer_id="CUST-7", timestamp=day + timedelta(days=1))
    record_order("B1", [{"product": products[0]}, {"product": products[4]}], user=bob,
                 visitor_id=pseudonymise("session", "bob-session"), timestamp=day)
    record_order("B2", [{"product": products[1]}, {"product": products[5]}],
                 customer_id="CUST-9", timestamp=day)
    return products, alice, bob, day


def run(cutoff, active=False, **fields):
    return TrainingRun.objects.create(status=TrainingRun.Status.SUCCEEDED, pending=None,
                                      is_active=active, data_cutoff=cutoff, **fields)


def test_erase_removes_rows_by_account_session_pseudonym_and_customer(shop):
    products, alice, bob, _ = shop
    report = privacy.erase_user(user=alice, customer_id="CUST-7")
    # A1's two lines (account + session), the pre-login view (session), A2's two lines.
    assert (report.interactions, report.purchases) == (5, 4)
    assert not Interaction.objects.filter(user=alice).exists()
    for pseudonym in (pseudonymise("session", "alice-session"), pseudonymise("customer", "CUST-7")):
        assert not Interaction.objects.filter(visitor_id=pseudonym).exists()
    assert sorted(Interaction.objects.values_list("order_id", flat=True)) == ["B1", "B1", "B2", "B2"]


def test_each_selector_alone_and_no_selector(shop):
    with pytest.raises(ValueError):
        privacy.erase_user()
    assert privacy.erase_user(customer_id="CUST-9").interactions == 2
    assert privacy.erase_user(session_key="bob-session").interactions == 2
    assert privacy.erase_user(visitor_id=pseudonymise("customer", "CUST-7")).interactions == 2
    assert privacy.erase_user(customer_id="nobody").interactions == 0


def test_next_training_extract_excludes_the_erased_purchases(shop):
    _, alice, _, _ = shop
    before = extract_baskets(cutoff=timezone.now())
    assert before.counts["orders"] == 4
    privacy.erase_user(user=alice, customer_id="CUST-7")
    after = extract_baskets(cutoff=timezone.now())
    assert after.counts["orders"] == 2 and after.counts["lines"] == 4


def test_runs_that_read_the_data_are_flagged_and_later_runs_are_not(shop):
    _, alice, _, day = shop
    old = run(day - timedelta(days=1))                       # trained before Alice's orders
    seen = run(day + timedelta(days=5), active=True)        # read them
    running = TrainingRun.objects.create(status=TrainingRun.Status.RUNNING)  # may have
    queued = TrainingRun.objects.create(status=TrainingRun.Status.QUEUED, pending=None)
    report = privacy.erase_user(user=alice)
    assert report.runs_flagged == [seen.pk, running.pk]
    seen.refresh_from_db()
    mark = seen.config[privacy.FLAG]
    assert mark["erasures"] == 1 and mark["interactions"] == 2
    assert privacy.FLAG not in TrainingRun.objects.get(pk=old.pk).config
    assert privacy.FLAG not in TrainingRun.objects.get(pk=queued.pk).config
    # A run that trains after the erasure never saw the data.
    fresh = run(timezone.now())
    assert fresh.pk not in privacy.flagged_runs()
    # ... unless it warm-started from a flagged model.
    warm = run(timezone.now(), config={"warm_start_from": seen.pk})
    assert warm.pk in privacy.flagged_runs()


def test_erasure_invalidates_the_serving_cache(shop, django_capture_on_commit_callbacks):
    _, alice, _, _ = shop
    cache.set(ranking.GENERATION_KEY, 5, None)
    with django_capture_on_commit_callbacks(execute=True):
        privacy.erase_user(user=alice)
    assert cache.get(ranking.GENERATION_KEY) == 6


def test_retire_serves_latest_unaffected_run_or_none(shop, django_capture_on_commit_callbacks):
    _, alice, _, day = shop
    older = run(day - timedelta(days=3), finished_at=day - timedelta(days=3))
    clean = run(day - timedelta(days=1), finished_at=day - timedelta(days=1))
    active = run(day + timedelta(days=5), active=True, finished_at=day + timedelta(days=5))
    assert "not trained on erased data" in privacy.retire_runs_with_erased_data().message
    privacy.erase_user(user=alice)
    with django_capture_on_commit_callbacks(execute=True):
        result = privacy.retire_runs_with_erased_data()
    assert (result.retired, result.activated) == (active.pk, clean.pk)
    assert list(TrainingRun.objects.filter(is_active=True).values_list("pk", flat=True)) == [clean.pk]
    assert older.pk != clean.pk
    # No unaffected run left: nothing serves (fallbacks answer), and it says so.
    TrainingRun.objects.filter(pk__in=[older.pk, clean.pk]).delete()
    TrainingRun.objects.filter(pk=active.pk).update(is_active=True)
    result = privacy.retire_runs_with_erased_data()
    assert result.activated is None and "no run serves" in result.message
    assert not TrainingRun.objects.filter(is_active=True).exists()


def test_erasure_is_logged_without_personal_data(shop, django_user_model, caplog):
    from django.contrib.admin.models import LogEntry

    _, alice, _, _ = shop
    staff = django_user_model.objects.create_superuser("root", password="pw")
    with caplog.at_level("INFO", logger="shop_recs.privacy"):
        privacy.erase_user(user=alice, customer_id="CUST-7", actor=staff)
    entry = LogEntry.objects.get(object_repr="erasure")
    assert entry.user_id == staff.pk and "Erased 5 interactions" in entry.change_message
    text = caplog.text + entry.change_message + entry.object_repr + str(entry.object_id)
    for secret in ("alice", "CUST-7", "alice-session", pseudonymise("customer", "CUST-7"),
                   f"user {alice.pk}"):
        assert secret not in text


# Management command ---------------------------------------------------------------------

def test_command_prints_counts_and_retires(shop, capsys):
    _, alice, _, day = shop
    active = run(day + timedelta(days=5), active=True)
    call_command("shop_recs_erase_user", "--username", "alice", "--retire-runs")
    out = capsys.readouterr().out
    assert "Erased 3 interactions (2 purchases)" in out
    assert f"flagged as trained on erased data: {active.pk}." in out
    assert f"Run {active.pk} was trained on erased data" in out
    call_command("shop_recs_erase_user", "--customer-id", "CUST-7")
    assert "Erased 2 interactions" in capsys.readouterr().out
    call_command("shop_recs_erase_user", "--user-id", str(alice.pk))
    assert "Erased 0 interactions" in capsys.readouterr().out


@pytest.mark.parametrize("args", [[], ["--username", "nobody"], ["--user-id", "999999"],
                                  ["--user-id", "not-a-number"],
                                  ["--user-id", "1", "--username", "alice"]])
def test_command_errors(shop, args):
    with pytest.raises(CommandError):
        call_command("shop_recs_erase_user", *args)
    assert Interaction.objects.count() == 9  # nothing lost


# Staff API ------------------------------------------------------------------------------

def post(api, body):
    return api.post(reverse(ERASE_URL), body, format="json")


def test_api_needs_staff_with_delete_permission_or_superuser(shop, django_user_model):
    api = APIClient()
    assert post(api, {"username": "alice"}).status_code in (401, 403)
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    api.force_authenticate(clerk)
    assert post(api, {"username": "alice"}).status_code == 403
    clerk.user_permissions.set(Permission.objects.filter(codename="delete_interaction"))
    api.force_authenticate(django_user_model.objects.get(pk=clerk.pk))
    assert post(api, {"customer_id": "CUST-9"}).status_code == 200
    outsider = django_user_model.objects.create_user("outsider", password="pw")  # not staff
    outsider.user_permissions.set(Permission.objects.filter(codename="delete_interaction"))
    api.force_authenticate(django_user_model.objects.get(pk=outsider.pk))
    assert post(api, {"username": "alice"}).status_code == 403
    assert Interaction.objects.filter(user__username="alice").exists()


def test_api_erases_and_answers_counts_only(shop, django_user_model):
    _, alice, _, day = shop
    active = run(day + timedelta(days=5), active=True)
    api = APIClient()
    api.force_authenticate(django_user_model.objects.create_superuser("root", password="pw"))
    response = post(api, {"user_id": str(alice.pk), "customer_id": "CUST-7", "retire_runs": True})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["interactions"], body["purchases"], body["runs_flagged"]) == (5, 4, [active.pk])
    assert body["retire"]["retired"] == active.pk and body["retire"]["activated"] is None
    assert "CUST-7" not in response.content.decode() and "alice" not in response.content.decode()


@pytest.mark.parametrize("body", [{}, {"username": "nobody"}, {"user_id": "abc"},
                                  {"user_id": "99999999999999999999999"},
                                  {"user_id": "1", "username": "alice"},
                                  {"visitor_id": "NOT HEX"}, {"retire_runs": "maybe"},
                                  {"customer_id": "x" * 300}, ["not", "an", "object"]])
def test_api_bad_input_is_400(shop, django_user_model, body):
    api = APIClient()
    api.force_authenticate(django_user_model.objects.create_superuser("root", password="pw"))
    response = post(api, body)
    assert response.status_code == 400, (body, response.content)
    assert Interaction.objects.count() == 9


def test_api_endpoint_is_documented(shop):
    from drf_spectacular.drainage import GENERATOR_STATS

    GENERATOR_STATS.reset()
    response = APIClient().get(reverse("shop_recs:api-schema"), HTTP_ACCEPT="application/json")
    assert not GENERATOR_STATS, (GENERATOR_STATS._warn_cache, GENERATOR_STATS._error_cache)
    operation = json.loads(response.content)["paths"]["/api/shop-recs/v1/privacy/erase/"]["post"]
    assert {"200", "400", "403", "429"} <= set(operation["responses"])


# Raw IP addresses are never stored ------------------------------------------------------

def test_no_model_has_an_ip_address_field():
    for model in apps.get_app_config("shop_recs").get_models():
        for field in model._meta.get_fields():
            assert not isinstance(field, models.GenericIPAddressField), (model, field.name)
            assert not re.search(r"(^|_)ip(_|$)|address", field.name), (model, field.name)
    sources = "".join(p.read_text() for p in (ROOT / "shop_recs").rglob("*.py"))
    assert "GenericIPAddressField" not in sources and "IPAddressField" not in sources


def test_events_api_stores_no_ip_anywhere(shop):
    products = shop[0]
    ip = "203.0.113.77"
    api = APIClient(REMOTE_ADDR=ip, HTTP_USER_AGENT="agent/1.0")
    response = api.post(reverse("shop_recs:api-events"),
                        {"events": [{"kind": "view", "product": str(products[0].pk)}]},
                        format="json")
    assert response.status_code == 201, response.content
    row = Interaction.objects.filter(kind="view", product=products[0]).get()
    assert row.visitor_id == pseudonymise("client", f"{ip}\x1fagent/1.0")
    stored = json.dumps(list(Interaction.objects.values()), default=str)
    assert ip not in stored
    # The throttle and de-duplication keys in the cache hold keyed hashes only.
    keys = " ".join(str(k) for k in cache._cache)
    assert "shop_recs:throttle" in keys and ip not in keys
