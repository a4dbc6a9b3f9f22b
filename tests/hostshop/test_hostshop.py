"""shop_recs on a host shop's own product model (UUID key, other field names).

Run in its own process by tests/test_host_product_model.py, with
``--ds=tests.hostshop.settings``.
"""

import io
import re
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from shop_recs.ingest import record_event, record_order
from shop_recs.models import Interaction
from shop_recs.products import get_adapter
from tests.hostshop.models import Family, Item

pytestmark = pytest.mark.django_db


def test_default_product_table_is_not_created():
    assert apps.get_model("shop_recs", "Product")._meta.swapped == "hostshop.Item"
    assert "shop_recs_product" not in connection.introspection.table_names()
    fk = Interaction._meta.get_field("product")
    assert fk.related_model is Item and isinstance(fk.target_field, type(Item._meta.pk))


@override_settings(DEBUG=True)  # a per-process cache is W020 only with DEBUG off
def test_checks_pass_and_catch_a_wrong_field_map():
    assert [m for m in checks.run_checks() if m.id.startswith("shop_recs")] == []
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, "PRODUCT_FIELDS": {"name": "name"}}):
        messages = [m for m in checks.run_checks() if m.id.startswith("shop_recs")]
    assert [m.id for m in messages] == ["shop_recs.E004"]
    # A cart URL that needs the product in its path cannot take the widget's form.
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, "CART_URL_NAME": "shop_recs:api-fbt"}):
        messages = [m for m in checks.run_checks() if m.id.startswith("shop_recs")]
    assert [m.id for m in messages] == ["shop_recs.W010"]


def test_adapter_reads_the_host_fields():
    family = Family.objects.create(label="Kitchen")
    item = Item.objects.create(code="K-1", title="Kettle", unit_cost="20.00", family=family,
                               available=False)
    adapter = get_adapter()
    assert adapter.sku(item) == "K-1" and adapter.name(item) == "Kettle"
    assert adapter.price(item) == Decimal("20.00")
    assert adapter.get(item, "category") == "Kitchen"
    assert adapter.get(item, "is_active") is True and adapter.get(item, "in_stock") is False
    assert adapter.url(item) == "/items/K-1/"
    assert list(Item.objects.filter(adapter.available_q())) == []


def test_import_and_record_with_uuid_keys(tmp_path):
    csv = tmp_path / "orders.csv"
    csv.write_text(
        "order_id,product_id,timestamp,quantity,unit_price,product_name\n"
        "o1,K-1,2024-01-01T10:00:00,1,20.00,Kettle\n"
        "o1,K-2,2024-01-01T10:00:00,2,4.00,Mug\n"
        "o2,K-2,2024-01-02T10:00:00,1,4.50,Mug\n"
    )
    args = (str(csv), "--create-products", "--update-products")
    call_command("shop_recs_import_orders", *args, stdout=open("/dev/null", "w"))
    call_command("shop_recs_import_orders", *args, stdout=open("/dev/null", "w"))
    mug = Item.objects.get(code="K-2")
    assert isinstance(mug.pk, uuid.UUID)
    assert mug.title == "Mug" and mug.unit_cost == Decimal("4.50")
    assert Interaction.objects.filter(product=mug).count() == 2
    kettle = Item.objects.get(code="K-1")
    record_order("web-1", [{"product": kettle}, {"product": mug, "quantity": 3}])
    record_event(Interaction.Kind.VIEW, kettle, visitor_id="v")
    assert Interaction.objects.filter(product=kettle).count() == 3
    assert Interaction.objects.get(order_id="web-1", product=mug).quantity == 3


def test_import_leaves_the_host_catalogue_alone_by_default(tmp_path):
    csv = tmp_path / "orders.csv"
    csv.write_text(
        "order_id,product_id,timestamp,quantity,unit_price,product_name\n"
        "o1,k-1,2024-01-01T10:00:00,1,20.00,KETTLE FROM THE FILE\n"
        "o1,NOT-SOLD,2024-01-01T10:00:00,2,4.00,Something else\n"
    )
    Item.objects.create(code="K-1", title="Kettle", unit_cost="25.00")
    out = io.StringIO()
    call_command("shop_recs_import_orders", str(csv), stdout=out)
    kettle = Item.objects.get(code="K-1")  # found whatever the case of the file's code
    assert kettle.title == "Kettle" and kettle.unit_cost == Decimal("25.00")
    assert list(Item.objects.values_list("code", flat=True)) == ["K-1"]
    assert Interaction.objects.filter(product=kettle).count() == 1
    assert "1 product codes are not in the catalogue; their 1 lines were skipped" \
        in out.getvalue()
    # Asked to, the import creates the missing product hidden (not available to shoppers).
    call_command("shop_recs_import_orders", str(csv), "--create-products", stdout=out)
    other = Item.objects.get(code="NOT-SOLD")
    assert other.available is False and other.title == "Something else"
    assert Item.objects.get(code="K-1").title == "Kettle"


@override_settings(DEBUG=True)
def test_a_path_ending_on_a_relation_is_e006():
    fields = {**settings.SHOP_RECS["PRODUCT_FIELDS"], "category": "family"}
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, "PRODUCT_FIELDS": fields}):
        messages = [m for m in checks.run_checks() if m.id.startswith("shop_recs")]
    assert [m.id for m in messages] == ["shop_recs.E006"]
    assert "ends on a relation" in messages[0].msg


def test_schema_endpoint_without_the_hosts_schema_class(client):
    """DRF's default DEFAULT_SCHEMA_CLASS (the host did not set drf-spectacular's)."""
    from rest_framework.settings import api_settings

    assert "drf_spectacular" not in api_settings.DEFAULT_SCHEMA_CLASS.__module__
    response = client.get("/api/shop-recs/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content[:500]
    paths = response.json()["paths"]
    assert "/api/shop-recs/v1/products/{product_id}/frequently-bought-together/" in paths
    assert not any("schema" in p for p in paths)  # excluded views stay excluded
    assert "drf_spectacular" not in api_settings.DEFAULT_SCHEMA_CLASS.__module__


# --- README.md "Installing into an existing Django shop": every snippet runs ----------------

def test_readme_model_and_settings_are_this_shop(settings):
    from tests.readme_snippets import snippet

    assert snippet("host-model") in Path(__file__).with_name("models.py").read_text()
    assert settings.SHOP_RECS["CART_URL_NAME"] == "cart:add-many"
    assert settings.SHOP_RECS_PRODUCT_MODEL == "hostshop.Item"
    assert get_adapter().field_problems() == []


def shop_with_orders():
    family = Family.objects.create(label="Kitchen")
    kettle, mug, tea = (Item.objects.create(code=c, title=t, unit_cost=p, family=family)
                        for c, t, p in (("K-1", "Kettle", "20.00"), ("K-2", "Mug <b>", "4.00"),
                                        ("K-3", "Tea", "3.00")))
    for number in range(3):
        record_order(f"o{number}", [{"product": kettle}, {"product": mug}, {"product": tea}])
    from shop_recs import fallbacks

    fallbacks.refresh()  # what an import, a run or the daily task does
    return kettle, mug, tea


def test_readme_template_tags_render_and_post_to_the_cart(client):
    from django.template import Context, Template
    from django.test import RequestFactory

    from tests.readme_snippets import snippet

    kettle, mug, tea = shop_with_orders()
    request = RequestFactory().get("/items/K-1/")
    request.session = client.session
    html = Template(snippet("host-template")).render(Context(
        {"product": kettle, "cart_products": [kettle], "request": request}))
    assert html.count('data-shop-recs-widget="fbt"') == 1  # the default template
    assert 'class="myshop-fbt"' in html  # template="myshop/fbt.html"
    assert "Mug &lt;b&gt;" in html and "Mug <b>" not in html
    assert 'action="/cart/add-many/"' in html
    assert html.rstrip().endswith("€20.00")  # unit_cost|shop_recs_money:"EUR"
    # The form's fields reach the shop's cart view.
    token = re.search(r'name="attribution" value="([^"]+)"', html).group(1)
    response = client.post("/cart/add-many/", {"product": [kettle.pk, mug.pk],
                                               "attribution": token})
    assert response.status_code == 302
    assert client.session["cart"]["products"] == [str(kettle.pk), str(mug.pk)]


def test_readme_signal_snippet_records_views_orders_and_stock(client):
    from types import SimpleNamespace

    from django.test import RequestFactory

    from tests.readme_snippets import snippet

    namespace = {}
    exec(snippet("host-record"), namespace)  # noqa: S102
    kettle, mug, _ = shop_with_orders()
    request = RequestFactory().get("/")
    request.session, request.user = client.session, SimpleNamespace(is_authenticated=False)
    namespace["product_viewed"](request, kettle)
    assert Interaction.objects.filter(kind=Interaction.Kind.VIEW, product=kettle).count() == 1
    line = SimpleNamespace(product=mug, quantity=2, unit_price=Decimal("4.00"))
    order = SimpleNamespace(number="web-7", lines=[line], user=None, customer_number="C7")
    namespace["order_placed"](order)
    namespace["order_placed"](order)  # idempotent
    bought = Interaction.objects.get(order_id="web-7")
    assert bought.quantity == 2 and bought.visitor_id and "C7" not in bought.visitor_id
    # stock_updated: an update() sends no signal; the snippet's call reaches the widget.
    from shop_recs import ranking

    assert [i.product for i in ranking.frequently_bought_together(kettle).items]
    Item.objects.filter(pk=mug.pk).update(available=False)
    namespace["stock_updated"]([mug])
    assert mug not in [i.product for i in ranking.frequently_bought_together(kettle).items]


def test_readme_cache_and_celery_snippets(settings):
    from django.utils.module_loading import import_string

    from tests.readme_snippets import snippet

    namespace = {}
    exec(snippet("host-cache"), namespace)  # noqa: S102
    backend = namespace["CACHES"]["default"]["BACKEND"]
    assert import_string(backend).__name__ == "RedisCache"
    namespace = {}
    exec(snippet("host-celery"), namespace)  # noqa: S102
    assert namespace["app"].main == "myshop"


def test_compiled_product_query_reads_uuid_keys_like_the_queryset():
    from shop_recs import ranking
    from shop_recs.products import get_adapter

    kettle, mug, tea = shop_with_orders()
    Item.objects.filter(pk=tea.pk).update(available=False)
    fields = {**settings.SHOP_RECS["PRODUCT_FIELDS"], "category": None}  # no join: compiled
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, "PRODUCT_FIELDS": fields}):
        adapter = get_adapter()
        for _ in range(2):  # compiled, then from the cache of compiled queries
            found = ranking._compiled_products(adapter, [mug.pk, tea.pk], [kettle.pk])
            assert isinstance(found, list)  # not the queryset it falls back to
            assert {p.pk for p in found} == {kettle.pk, mug.pk}
            assert all(isinstance(p.pk, uuid.UUID) for p in found)
        products, anchors = ranking._fetch([(tea.pk,), (mug.pk,)], [kettle.pk], ranking.Visitor())
        assert list(products) == [str(mug.pk)] and list(anchors) == [str(kettle.pk)]
