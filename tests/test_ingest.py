"""record_order / record_event, the Python API host shops call."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory, override_settings

from shop_recs.ingest import pseudonymise, record_event, record_order, visitor_id_for_request
from shop_recs.models import Interaction, Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def products():
    return [Product.objects.create(sku=f"S{i}", name=f"Item {i}", price=Decimal("2.00"))
            for i in range(3)]


def test_record_order_stores_lines_once(products, django_user_model):
    user = django_user_model.objects.create(username="ann")
    lines = [{"product": products[0], "quantity": 2, "unit_price": "2.00"},
             {"product": products[1], "widget": "fbt", "bundle_ref": 7, "run_ref": 3},
             {"product": products[0], "quantity": 1}]
    new = record_order("A-1", lines, user=user, customer_id="cust-9")
    assert len(new) == 2
    again = record_order("A-1", lines, user=user)
    assert again == []
    rows = Interaction.objects.filter(order_id="A-1").order_by("product__sku")
    assert [(r.product.sku, r.quantity) for r in rows] == [("S0", 3), ("S1", 1)]
    assert rows[1].widget == "fbt" and rows[1].bundle_ref == 7 and rows[1].run_ref == 3
    assert all(r.user == user and r.visitor_id == pseudonymise("customer", "cust-9")
               for r in rows)


def test_record_order_rejects_bad_input_and_stores_nothing(products):
    with pytest.raises(ValueError, match="order id"):
        record_order("  ", [{"product": products[0]}])
    with pytest.raises(ValueError, match="quantity"):
        record_order("B-1", [{"product": products[0]}, {"product": products[1], "quantity": -1}])
    assert not Interaction.objects.exists()


def test_record_event_takes_a_pseudonymous_visitor_from_the_request(products):
    request = RequestFactory().get("/")
    request.session = SessionStore()
    request.user = AnonymousUser()
    event = record_event(Interaction.Kind.VIEW, products[0], request=request)
    assert request.session.session_key
    assert event.visitor_id == visitor_id_for_request(request)
    assert request.session.session_key not in event.visitor_id
    assert len(event.visitor_id) == 32 and event.user is None
    with pytest.raises(ValueError, match="unknown interaction kind"):
        record_event("like", products[0])


def test_visitor_ids_are_keyed_by_the_secret():
    first = pseudonymise("customer", "17850")
    with override_settings(SECRET_KEY="another-secret-key-for-this-test-only-0123456789"):
        assert pseudonymise("customer", "17850") != first
    assert pseudonymise("customer", "17850") == first
    assert pseudonymise("customer", "") == ""
