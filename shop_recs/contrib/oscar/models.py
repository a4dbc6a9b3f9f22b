"""The bundle offer in Oscar's terms: a custom condition and benefit (proxy models).

Oscar applies discounts through *offers*: a condition the basket must meet and a benefit
it then gets. This app's migration creates one site offer, "Bundles bought together
(shop_recs)", with these two:

* :class:`BundleCondition`: the basket holds every product of an approved bundle
  (``shop_recs.Bundle``, status approved, with a discount: its anchor and its items),
  each not yet discounted by this offer;
* :class:`BundleBenefit`: that bundle's ``discount_percent`` off one unit of each of its
  products (Oscar's ``apply_discount``, so the saving shows on the basket lines, in the
  basket and order totals, and as an ``OrderDiscount``).

Oscar applies the offer again while the basket holds another complete bundle (a second
set of the same, or another bundle); a product is discounted once per unit. Staff can
rename, suspend or end the offer in Oscar's dashboard like any other.
"""

from decimal import Decimal

from django.utils.translation import gettext_lazy as _
from oscar.core.loading import get_class, get_classes, get_model

from shop_recs.analytics import experiments
from shop_recs.contrib.oscar.adapter import current_request
from shop_recs.models import Bundle
from shop_recs.ranking import Visitor

Condition = get_model("offer", "Condition")
Benefit = get_model("offer", "Benefit")
BasketDiscount, ZERO_DISCOUNT = get_classes("offer.results", ["BasketDiscount", "ZERO_DISCOUNT"])
apply_discount = get_class("offer.benefits", "apply_discount")
unit_price = get_class("offer.utils", "unit_price")
HUNDRED = Decimal("100")


def _free_lines(offer, basket):
    """product pk -> [(line, units this offer may still discount)] of discountable lines."""
    free = {}
    for line in basket.all_lines():
        if not line.stockrecord_id or not line.product.is_discountable:
            continue
        units = line.quantity_without_offer_discount(offer)
        if units > 0 and unit_price(offer, line):
            free.setdefault(line.product_id, []).append(line)
    return free


def visitor_of(basket):
    """Who the basket belongs to, for experiments on bundle discounts: the request's
    visitor (``StrategyMiddleware``), else the basket's owner, else None."""
    request = current_request.get()
    if request is not None:
        return request
    owner = getattr(basket, "owner_id", None)
    return Visitor(owner, "") if owner is not None else None


def complete_bundle(offer, basket):
    """``(bundle, [line per product], percent)`` of the best approved bundle (anchor and
    items) that the basket completes, or ``(None, [], 0)``; ``percent``: its discount for
    this basket's visitor (``experiments.bundle_discount``: a discount arm's, else its own)."""
    free = _free_lines(offer, basket)
    if len(free) < 2:
        return None, [], 0
    visitor = visitor_of(basket)
    override = experiments.discount_override(visitor)
    if override is not None and override <= 0:
        return None, [], 0
    bundles = Bundle.objects.filter(anchor_id__in=list(free), status=Bundle.Status.APPROVED)
    if override is None:
        bundles = bundles.filter(discount_percent__gt=0)
    bundles = (bundles.order_by("-discount_percent", "-score", "pk")
               .prefetch_related("items"))
    for bundle in bundles:
        products = [bundle.anchor_id, *(item.product_id for item in bundle.items.all())]
        if len(products) > 1 and all(pk in free for pk in products):
            percent = override if override is not None else experiments.clamp_percent(
                bundle.discount_percent)
            return bundle, [free[pk][0] for pk in products], percent
    return None, [], 0


class BundleCondition(Condition):
    name = "The basket holds every product of an approved shop_recs bundle"
    description = name

    class Meta:
        proxy = True
        app_label = "shop_recs_oscar"
        verbose_name = _("shop_recs bundle condition")

    def is_satisfied(self, offer, basket):
        return complete_bundle(offer, basket)[0] is not None

    def is_partially_satisfied(self, offer, basket):
        return False

    def consume_items(self, offer, basket, affected_lines):
        pass  # apply_discount already consumed the discounted units


class BundleBenefit(Benefit):
    name = "The approved bundle's discount on each of its products"
    description = name

    class Meta:
        proxy = True
        app_label = "shop_recs_oscar"
        verbose_name = _("shop_recs bundle discount")

    def apply(self, basket, condition, offer, **kwargs):
        bundle, lines, percent = complete_bundle(offer, basket)
        if bundle is None:
            return ZERO_DISCOUNT
        percent = min(Decimal(percent), HUNDRED)
        total = Decimal("0.00")
        for line in lines:
            discount = self.round(percent / HUNDRED * unit_price(offer, line),
                                  basket.currency)
            if discount > 0:
                apply_discount(line, discount, 1, offer)
                total += discount
        return BasketDiscount(total) if total else ZERO_DISCOUNT
