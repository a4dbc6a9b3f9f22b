"""The one money formatter of shop and admin (``shop_recs.formats.money``)."""

from decimal import Decimal

import pytest
from django.template import Context, Template
from django.test import override_settings

from shop_recs.formats import money


@pytest.mark.parametrize("amount, currency, expected", [
    (Decimal("1.63"), "GBP", "£1.63"),
    (Decimal("1.625"), "GBP", "£1.63"),  # half up, as prices are rounded
    (Decimal("1234.5"), "gbp", "£1,234.50"),
    ("2.5", "USD", "$2.50"),
    (7, "EUR", "€7.00"),
    (Decimal("-2"), "GBP", "-£2.00"),
    (Decimal("1500.4"), "JPY", "¥1,500"),
    (Decimal("3"), "SEK", "3.00 SEK"),
    (None, "GBP", "—"),
    ("", "GBP", "—"),
    ("junk", "GBP", "—"),
    ("NaN", "GBP", "—"),
])
def test_money(amount, currency, expected):
    assert money(amount, currency) == expected


@override_settings(SHOP_RECS={"DEFAULT_CURRENCY": "GBP"})
def test_money_defaults_to_the_shops_currency():
    assert money(Decimal("1.6")) == "£1.60"
    assert money(None, missing="") == ""


def test_shop_widget_demo_and_admin_write_a_price_alike():
    from shop_demo.templatetags import shop_demo
    from shop_recs.admin.display import ProductView
    from shop_recs.templatetags import shop_recs

    assert shop_recs.money is money and shop_demo.money is money
    rendered = Template("{% load shop_demo shop_recs %}{{ p|money:'GBP' }} "
                        "{{ p|shop_recs_money:'GBP' }}").render(Context({"p": Decimal("1.63")}))
    assert rendered == "£1.63 £1.63"

    class Product:
        pk, name, price, currency = 1, "T-light", Decimal("1.63"), "GBP"
        image_url, category, in_stock, is_active, sku = "", "", True, True, "T1"

        def get_absolute_url(self):
            return "/p/1/"

    assert ProductView(Product()).price_display == "£1.63"
