"""Template helpers of the demo storefront: ``{% load shop_demo %}``.

- ``{{ product|product_price }}``: the product's price with its currency (``£2.55``);
- ``{{ amount|money:currency }}``: any amount with a currency;
- ``{% product_image product %}``: the product's image, or a placeholder tile
  with the product's initials when it has none (the Online Retail data has no images).

Product fields are read through ``shop_recs.products.get_adapter()``. Nothing here
marks text safe: product names are escaped by the template engine like any value.
"""

import zlib

from django import template

from shop_recs.formats import money
from shop_recs.products import get_adapter

register = template.Library()

PLACEHOLDER_TONES = 6


# The one money formatter of shop_recs, so the shop and the admin write prices alike.
register.filter("money", money)


@register.filter
def product_price(product):
    adapter = get_adapter()
    return money(adapter.price(product), adapter.get(product, "currency"))


def initials(name):
    """Two initials of a product name, skipping numbers and short words.

    "WHITE HANGING HEART T-LIGHT HOLDER" -> "WH", "PACK OF 72 RETROSPOT CAKE CASES" -> "PR".
    """
    words = [word for word in name.split() if word[:1].isalnum()]
    telling = [word for word in words if len(word) > 2 and not word.isdigit()] or words
    return "".join(word[0] for word in telling[:2]).upper() or "?"


@register.inclusion_tag("shop_demo/_product_image.html")
def product_image(product, size="card"):
    adapter = get_adapter()
    name = adapter.name(product)
    return {
        "name": name,
        "image_url": adapter.get(product, "image_url"),
        "initials": initials(name),
        # A stable colour per product, so that neighbouring tiles differ.
        "tone": zlib.crc32(adapter.sku(product).encode()) % PLACEHOLDER_TONES,
        "size": size,
    }
