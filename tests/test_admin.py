"""Admin pages of the catalogue and interactions."""

import pytest
from django.urls import reverse

from shop_recs.ingest import record_order
from shop_recs.models import Interaction, Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def order():
    products = [Product.objects.create(sku=f"S{i}", name=f"<b>Item {i}</b>") for i in range(3)]
    record_order("o-1", [{"product": p} for p in products])
    return products


def test_changelists_render_and_escape_names(admin_client, order, django_assert_max_num_queries):
    response = admin_client.get(reverse("admin:shop_recs_product_changelist"))
    assert response.status_code == 200
    assert b"&lt;b&gt;Item 0&lt;/b&gt;" in response.content
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse("admin:shop_recs_interaction_changelist"))
    assert response.status_code == 200 and b"o-1" in response.content


def test_interactions_are_read_only(admin_client, order):
    row = Interaction.objects.first()
    assert admin_client.get(reverse("admin:shop_recs_interaction_add")).status_code == 403
    url = reverse("admin:shop_recs_interaction_change", args=[row.pk])
    assert admin_client.get(url).status_code == 200
    admin_client.post(url, {"kind": "view", "quantity": 9})
    row.refresh_from_db()
    assert row.kind == "purchase" and row.quantity == 1
