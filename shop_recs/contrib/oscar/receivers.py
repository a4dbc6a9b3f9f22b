"""Oscar's signals wired to shop_recs (connected by the app's ``ready()``).

* ``order_placed`` -> :func:`shop_recs.ingest.record_order`, with each line's unit price
  as the customer paid it (incl. tax when known, after line discounts) and the customer
  (the user, or a keyed hash of a guest's email).
* ``post_checkout`` -> the widget, bundle and run that added each line (remembered in the
  session by ``BasketAddAllView``) are stored on the order's purchases.
* ``StockRecord`` saved or deleted, and the stock an order allocated ->
  :func:`shop_recs.serving_cache.products_changed`: a product sold out leaves the widgets
  on the next request. Product saves are seen by shop_recs itself (post_save of
  ``SHOP_RECS_PRODUCT_MODEL``), new products included (``shop_recs.newproducts``).
* A ``StockRecord`` created -> :func:`shop_recs.newproducts.queue_new_products`: Oscar's
  dashboard and importers often create a product's stock after the product (a variant's
  parent is not sellable itself), so its first stock record asks again for the list of a
  product that the serving run has none for (at most one task per commit either way).
"""

import logging
from decimal import Decimal

from django.db.models.signals import post_delete, post_save
from oscar.core.loading import get_class, get_model

from shop_recs.ingest import record_order
from shop_recs.models import Interaction
from shop_recs.newproducts import queue_new_products
from shop_recs.serving_cache import products_changed

logger = logging.getLogger(__name__)
ATTRIBUTION_SESSION_KEY = "shop_recs_oscar_attribution"
CENT = Decimal("0.01")


def _line_price(line):
    """What the customer paid for one unit, after line discounts (incl. tax when known)."""
    total = line.line_price_incl_tax if line.line_price_incl_tax is not None \
        else line.line_price_excl_tax
    if total is None:
        return None
    return (total / (line.quantity or 1)).quantize(CENT)


def order_lines(order):
    """``record_order`` lines of an Oscar order (lines without a product are left out)."""
    return [{"product": line.product, "quantity": line.quantity,
             "unit_price": _line_price(line)}
            for line in order.lines.select_related("product")
            if line.product_id is not None]  # None: the product was deleted since


def order_was_placed(sender, order, user=None, **kwargs):
    lines = order_lines(order)
    try:
        record_order(order.number, lines, user=user or order.user,
                     customer_id=None if (user or order.user) else order.guest_email,
                     timestamp=order.date_placed)
    except Exception:  # noqa: BLE001 (never fail a customer's checkout over statistics)
        logger.exception("shop_recs: could not record Oscar order %s", order.number)
    # The order allocated stock (an update(), which sends no signal).
    products_changed({pk for line in order.lines.all()
                      for pk in (line.product_id, getattr(line.product, "parent_id", None))
                      if pk is not None})


def checkout_done(sender, order, request=None, **kwargs):
    """``post_checkout`` (it has the request): credit the order's lines to the widget,
    bundle and run that added them (remembered by BasketAddAllView in the session)."""
    session = getattr(request, "session", None)
    attribution = session.pop(ATTRIBUTION_SESSION_KEY, None) if session is not None else None
    for product_pk, fields in (attribution or {}).items():
        Interaction.objects.filter(order_id=order.number, product_id=product_pk,
                                   kind=Interaction.Kind.PURCHASE).update(
            widget=fields.get("widget", ""), bundle_ref=fields.get("bundle_ref"),
            run_ref=fields.get("run_ref"))


def stock_changed(sender, instance, created=False, raw=False, **kwargs):
    product = instance.product
    products_changed([pk for pk in (product.pk, product.parent_id) if pk is not None])
    if created and not raw:
        queue_new_products(kwargs.get("using"))


def connect():
    order_placed = get_class("order.signals", "order_placed")
    order_placed.connect(order_was_placed, dispatch_uid="shop_recs_oscar.order_placed")
    post_checkout = get_class("checkout.signals", "post_checkout")
    post_checkout.connect(checkout_done, dispatch_uid="shop_recs_oscar.post_checkout")
    StockRecord = get_model("partner", "StockRecord")
    for signal in (post_save, post_delete):
        signal.connect(stock_changed, sender=StockRecord,
                       dispatch_uid=f"shop_recs_oscar.stock.{signal is post_save}")
