"""Template helpers of the demo storefront: ``{% load shop_demo %}``.

- ``{{ product|product_price }}``: the product's price with its currency (``£2.55``);
- ``{{ amount|money:currency }}``: any amount with a currency;
- ``{% product_image product %}``: the product's image, or a placeholder tile
  with the product's initials when it has none (the Online Retail data has no images);
  the tile is shop_recs's (``initials``, ``placeholder_tone``), the same as in the widgets.

Product fields are read through ``shop_recs.products.get_adapter()``. Nothing here
marks text safe: product names are escaped by the template engine like any value.
"""

from django import template

from shop_recs.formats import money
from shop_recs.products import get_adapter
from shop_recs.templatetags.shop_recs import initials, placeholder_tone

register = template.Library()


# The one money formatter of shop_recs, so the shop and the admin write prices alike.
register.filter("money", money)


@register.filter
def product_price(product):
    adapter = get_adapter()
    return money(adapter.price(product), adapter.get(product, "currency"))


@register.inclusion_tag("shop_demo/_product_image.html")
def product_image(product, size="card"):
    adapter = get_adapter()
    name = adapter.name(product)
    return {
        "name": name,
        "image_url": adapter.get(product, "image_url"),
        "initials": initials(name),
        "tone": placeholder_tone(adapter.sku(product)),
        "size": size,
    }
