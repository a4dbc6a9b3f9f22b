"""The demo shop's session cart.

A :class:`Cart` wraps ``request.session``; nothing is stored in the database until
checkout. The session holds one dict, keyed by the product's primary key as a string
(so any key type works), with the quantity and the optional attribution that tells
which recommendation widget, bundle and training run led to the add::

    {"42": {"quantity": 2}, "7": {"quantity": 1, "widget": "fbt", "bundle": 3, "run": 9}}

Usage::

    cart = Cart(request)
    cart.add(product, 2, widget="fbt", bundle_ref=3, run_ref=9)
    for line in cart.lines():          # one query, whatever the number of lines
        line.product, line.quantity, line.line_total
    cart.subtotal(), cart.savings(), cart.total()   # total = subtotal - bundle savings
    record_order(order_id, [line.as_order_line() for line in cart.lines()])

Products that were deleted or deactivated since they were added are dropped from the
cart the next time its lines are read. A bundle the widget offers (approved, with a discount)
is honoured here: when all its products are in the cart, :meth:`Cart.savings` takes its
discount off each whole set, the same amount the widget's offer showed (for a visitor in a
bundle-discount experiment, their arm's discount: ``experiments.bundle_discount``), and
``total()`` is
what the shopper pays (``subtotal()`` before savings). ``cart_context`` is the template context
processor that gives every page ``cart_count``.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError

from shop_recs.analytics import experiments
from shop_recs.conf import recs_settings
from shop_recs.models import Bundle
from shop_recs.products import get_adapter, get_product_model

SESSION_KEY = "shop_demo_cart"
MAX_QUANTITY = 99
CENT = Decimal("0.01")


@dataclass
class CartLine:
    """One product in the cart, with its current price read from the catalogue."""

    product: object
    quantity: int
    unit_price: Decimal | None
    currency: str
    widget: str = ""
    bundle_ref: int | None = None
    run_ref: int | None = None

    @property
    def line_total(self):
        return None if self.unit_price is None else self.unit_price * self.quantity

    def as_order_line(self):
        """This line as ``shop_recs.ingest.record_order`` expects it."""
        return {
            "product": self.product,
            "quantity": self.quantity,
            "unit_price": self.unit_price,
            "widget": self.widget,
            "bundle_ref": self.bundle_ref,
            "run_ref": self.run_ref,
        }


@dataclass
class BundleSaving:
    """An offered bundle whose products are all in the cart, and what it takes off."""

    bundle: int
    percent: Decimal
    sets: int
    amount: Decimal
    products: tuple = ()  # the cart keys (product pks as strings) of the bundle


def bundle_saving(prices, percent):
    """What ``percent`` off one set at ``prices`` saves, rounded as the widget's offer is
    (the discounted price is rounded to the cent, the saving is the difference)."""
    total = sum(prices, Decimal("0"))
    percent = experiments.clamp_percent(percent)  # never a price below zero
    return total - max(total * (100 - percent) / 100, Decimal(0)).quantize(CENT)


class Cart:
    """The products a visitor intends to buy, kept in their session."""

    def __init__(self, request):
        self.request = request
        self.session = getattr(request, "session", None)
        data = self.session.get(SESSION_KEY) if self.session is not None else None
        self._data = data if isinstance(data, dict) else {}
        self._lines = None
        self._savings = None

    def __len__(self):
        """Number of items (the sum of the quantities), read without a query."""
        return sum(self._quantity(entry) for entry in self._data.values())

    def __bool__(self):
        return bool(self._data)

    def __contains__(self, product_pk):
        return str(product_pk) in self._data

    def quantity_of(self, product_pk):
        return self._quantity(self._data.get(str(product_pk), {}))

    def add(self, product, quantity=1, *, widget="", bundle_ref=None, run_ref=None):
        """Add ``quantity`` of ``product``; return the quantity now in the cart.

        The quantity is capped at ``MAX_QUANTITY``. Attribution given here replaces
        the line's earlier attribution; an add without attribution keeps it.
        """
        key = str(product.pk)
        entry = dict(self._data.get(key, {}))
        entry["quantity"] = min(self._quantity(entry) + int(quantity), MAX_QUANTITY)
        if widget or bundle_ref is not None or run_ref is not None:
            entry.update(widget=widget or "", bundle=bundle_ref, run=run_ref)
        self._data[key] = entry
        self._save()
        return entry["quantity"]

    def set_quantity(self, product_pk, quantity):
        """Set a line's quantity (0 removes it); False when the product is not in the cart."""
        key = str(product_pk)
        if key not in self._data:
            return False
        if quantity <= 0:
            return self.remove(product_pk)
        self._data[key] = {**self._data[key], "quantity": min(int(quantity), MAX_QUANTITY)}
        self._save()
        return True

    def remove(self, product_pk):
        """Remove a line; False when the product was not in the cart."""
        if self._data.pop(str(product_pk), None) is None:
            return False
        self._save()
        return True

    def clear(self):
        self._data = {}
        if self.session is not None and SESSION_KEY in self.session:
            del self.session[SESSION_KEY]
        self._lines = self._savings = None

    def lines(self):
        """The cart's lines in the order they were added, fetched in one query."""
        if self._lines is None:
            self._lines = self._fetch_lines()
        return self._lines

    def products(self):
        return [line.product for line in self.lines()]

    def subtotal(self):
        """Sum of the line totals (lines without a price count as nothing)."""
        return sum((line.line_total for line in self.lines() if line.line_total is not None),
                   Decimal("0.00"))

    def total(self):
        """What the shopper pays: the subtotal less the bundle savings."""
        return self.subtotal() - sum((s.amount for s in self.savings()), Decimal("0.00"))

    def savings(self):
        """The discounts of offered bundles whose products are all in the cart.

        A bundle counts when it is served to shoppers (approved; proposed too when
        ``REQUIRE_APPROVAL`` is off), has a discount, and every one of its products (anchor
        and items) is in the cart with a price; it applies to as many whole sets as the
        quantities allow, and a product counts towards one bundle at most. Two queries,
        none for a cart without a bundle's anchor.
        """
        if self._savings is None:
            self._savings = self._find_savings()
        return self._savings

    def _find_savings(self):
        lines = {str(line.product.pk): line for line in self.lines()
                 if line.unit_price is not None}
        if len(lines) < 2:
            return []
        statuses = [Bundle.Status.APPROVED]
        if not recs_settings.REQUIRE_APPROVAL:
            statuses.append(Bundle.Status.PROPOSED)
        # A visitor in a bundle-discount experiment pays their arm's discount on every
        # bundle (decided from their assignment, never from what the browser posts).
        override = experiments.discount_override(self.request)
        if override is not None and override <= 0:
            return []
        bundles = Bundle.objects.filter(anchor__in=[line.product.pk for line in lines.values()],
                                        status__in=statuses)
        if override is None:
            bundles = bundles.filter(discount_percent__gt=0)
        bundles = bundles.prefetch_related("items").order_by("-discount_percent", "pk")
        found, used = [], set()
        for bundle in bundles:
            percent = experiments.bundle_discount(self.request, bundle)
            keys = {str(bundle.anchor_id), *(str(item.product_id) for item in bundle.items.all())}
            if len(keys) < 2 or keys & used or not keys <= lines.keys():
                continue
            used |= keys
            sets = min(lines[key].quantity for key in keys)
            saving = bundle_saving([lines[key].unit_price for key in keys], percent)
            found.append(BundleSaving(bundle.pk, percent, sets, saving * sets,
                                      tuple(sorted(keys))))
        return found

    def order_lines(self):
        """The lines as ``record_order`` expects them, at what the shopper pays: a bundle's
        saving is shared among its lines in proportion to their prices (the unit price
        recorded is the line's net total over its quantity, to the cent), so that revenue
        figures, experiments on bundle discounts included, count the money received."""
        lines = {str(line.product.pk): line for line in self.lines()}
        saved = {}
        for saving in self.savings():
            full = sum(lines[key].unit_price for key in saving.products)
            left = saving.amount
            for number, key in enumerate(saving.products, 1):
                # Shares to the cent; the last line takes what rounding left over.
                share = (left if number == len(saving.products) or not full else
                         (saving.amount * lines[key].unit_price / full).quantize(CENT))
                left -= share
                saved[key] = saved.get(key, Decimal(0)) + share
        rows = []
        for key, line in lines.items():
            row = line.as_order_line()
            if key in saved and line.line_total is not None:
                net = max(line.line_total - saved[key], Decimal(0))
                row["unit_price"] = (net / line.quantity).quantize(CENT)
            rows.append(row)
        return rows

    def currency(self):
        """Currency of the cart: its first product's, else the shop's default."""
        lines = self.lines()
        return lines[0].currency if lines else recs_settings.DEFAULT_CURRENCY

    def _fetch_lines(self):
        if not self._data:
            return []
        model = get_product_model()
        adapter = get_adapter()
        pks = []
        for key in self._data:
            try:
                pks.append(model._meta.pk.to_python(key))
            except ValidationError:
                pass  # Not a key of this model: dropped below with the missing products.
        products = {str(p.pk): p for p in model._default_manager.filter(pk__in=pks)
                    if adapter.get(p, "is_active")}
        stale = [key for key in self._data if key not in products]
        if stale:
            for key in stale:
                del self._data[key]
            self._save()
        return [
            CartLine(
                product=products[key],
                quantity=self._quantity(entry),
                unit_price=adapter.price(products[key]),
                currency=(adapter.get(products[key], "currency")
                          or recs_settings.DEFAULT_CURRENCY),
                widget=entry.get("widget") or "",
                bundle_ref=entry.get("bundle"),
                run_ref=entry.get("run"),
            )
            for key, entry in self._data.items()
        ]

    @staticmethod
    def _quantity(entry):
        try:
            return max(int(entry.get("quantity", 0)), 0)
        except (TypeError, ValueError, AttributeError):
            return 0

    def _save(self):
        self._lines = self._savings = None
        if self.session is not None:
            # Reassign: the session notices new keys, not changes inside a stored dict.
            self.session[SESSION_KEY] = self._data
            self.session.modified = True


def cart_context(request):
    """Template context processor: ``cart_count``, the number of items in the cart."""
    return {"cart_count": len(Cart(request))}
