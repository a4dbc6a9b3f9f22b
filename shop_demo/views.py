"""Views of the demo storefront: catalogue, product page, session cart, checkout.

The catalogue lists the most bought products first (``?sort=name``: by name); the counts
come from the stored orders once per ``POPULARITY_TIMEOUT`` (:func:`popularity`).

The shop records what shoppers do through ``shop_recs.ingest``: a ``view`` on each
product page, a ``cart_add`` for each product put in the cart, and the order's
lines as ``purchase`` interactions at checkout. Attribution (which widget, bundle
and run led to an action) travels from the product page's query string and the
"Add all to cart" form into the cart lines, and from there into the order.
"""

import logging
import uuid

from django.contrib import messages
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from shop_demo.cart import Cart
from shop_demo.forms import AddToCartForm, AttributionForm, CartLineForm, CheckoutForm
from shop_recs.ingest import record_event, record_order
from shop_recs.models import Interaction
from shop_recs.products import get_adapter, get_product_model

logger = logging.getLogger(__name__)

PAGE_SIZE = 24
MAX_QUERY_LENGTH = 100
LAST_ORDER_KEY = "shop_demo_last_order"
POPULARITY_KEY = "shop_demo:popularity"
POPULARITY_TIMEOUT = 600  # seconds; new orders reorder the catalogue within this
SORTS = {"popular": gettext_lazy("Most popular"), "name": gettext_lazy("Name")}


def active_products():
    """Products on sale. The demo uses the default product model's field names."""
    return get_product_model()._default_manager.filter(is_active=True)


def _record(kind, product, request, **kwargs):
    """Record an interaction; a failure is logged and never breaks the page."""
    try:
        # A savepoint, so that a database error cannot poison the request's transaction.
        with transaction.atomic():
            record_event(kind, product, request=request, **kwargs)
    except Exception:
        logger.exception("could not record %s of product %s", kind, product.pk)


def _back(request, default):
    """The page the form was posted from when it is on this site, else ``default``."""
    referer = request.headers.get("referer", "")
    if url_has_allowed_host_and_scheme(referer, {request.get_host()},
                                       require_https=request.is_secure()):
        return referer
    return default


def popularity():
    """``{product pk: purchase lines}`` over every stored order: the catalogue's default order.

    One GROUP BY over the purchases (about a second on the demo's 1M lines), so it is counted
    once and cached, never per request.
    """
    counts = cache.get(POPULARITY_KEY)
    if counts is None:
        counts = dict(Interaction.objects.filter(kind=Interaction.Kind.PURCHASE)
                      .values("product_id").annotate(n=Count("pk"))
                      .values_list("product_id", "n"))
        cache.set(POPULARITY_KEY, counts, POPULARITY_TIMEOUT)
    return counts


def _page(request, products, sort):
    """The requested page of ``products``, most bought first (ties by name) or by name."""
    if sort == "name":
        return Paginator(products.order_by("name", "pk"), PAGE_SIZE).get_page(
            request.GET.get("page"))
    counts = popularity()
    # Only keys and names per request (a few thousand short rows); the page's products
    # are then fetched by key.
    ranked = sorted(products.values_list("pk", "name"),
                    key=lambda row: (-counts.get(row[0], 0), row[1], str(row[0])))
    page = Paginator([pk for pk, _name in ranked], PAGE_SIZE).get_page(request.GET.get("page"))
    found = products.in_bulk(list(page.object_list))
    page.object_list = [found[pk] for pk in page.object_list if pk in found]
    return page


@require_safe
def product_list(request):
    query = request.GET.get("q", "").strip()[:MAX_QUERY_LENGTH]
    category = request.GET.get("category", "").strip()
    products = active_products()
    if query:
        products = products.filter(Q(name__icontains=query) | Q(sku__icontains=query))
    categories = list(
        active_products().exclude(category="").order_by("category")
        .values_list("category", flat=True).distinct()
    )
    if category in categories:
        products = products.filter(category=category)
    else:
        category = ""
    sort = request.GET.get("sort", "")
    sort = sort if sort in SORTS else "popular"
    page = _page(request, products, sort)
    return render(request, "shop_demo/product_list.html", {
        "page_obj": page,
        "products": page.object_list,
        "query": query,
        "categories": categories,
        "category": category,
        "sorts": SORTS,
        "sort": sort,
    })


@require_safe
def product_detail(request, pk):
    product = get_object_or_404(active_products(), pk=pk)
    # A recommendation widget links here with ?widget=&bundle=&run=; carry them on.
    attribution = AttributionForm(request.GET).attribution()
    if request.method == "GET":
        _record(Interaction.Kind.VIEW, product, request, **attribution)
    adapter = get_adapter()
    return render(request, "shop_demo/product_detail.html", {
        "product": product,
        "attribution": attribution,
        "purchasable": adapter.get(product, "in_stock") and adapter.price(product) is not None,
    })


@require_POST
def cart_add(request):
    form = AddToCartForm(request.POST)
    cart_url = reverse("shop_demo:cart")
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect(_back(request, cart_url))
    cart = Cart(request)
    adapter = get_adapter()
    quantity = form.cleaned_data["quantity"]
    attribution = form.attribution()
    products = list(form.cleaned_data["product"])
    for product in products:
        cart.add(product, quantity, **attribution)
        _record(Interaction.Kind.CART_ADD, product, request, quantity=quantity,
                unit_price=adapter.price(product), **attribution)
    if len(products) == 1:
        message = _("Added %(name)s to your cart.") % {"name": adapter.name(products[0])}
    else:
        message = ngettext("Added %(count)d product to your cart.",
                           "Added %(count)d products to your cart.",
                           len(products)) % {"count": len(products)}
    messages.success(request, message)
    return redirect(cart_url)


@require_safe
def cart_detail(request):
    cart = Cart(request)
    lines = cart.lines()
    return render(request, "shop_demo/cart.html", {
        "cart": cart,
        "lines": lines,
        "cart_products": [line.product for line in lines],
    })


@require_POST
def cart_update(request):
    form = CartLineForm(request.POST)
    cart = Cart(request)
    if not form.is_valid() or form.cleaned_data["quantity"] is None:
        messages.error(request, _("Enter a quantity between 0 and 99."))
    elif not cart.set_quantity(form.cleaned_data["product"], form.cleaned_data["quantity"]):
        messages.error(request, _("That product is not in your cart."))
    else:
        messages.success(request, _("Your cart was updated."))
    return redirect("shop_demo:cart")


@require_POST
def cart_remove(request):
    form = CartLineForm(request.POST)
    if form.is_valid() and Cart(request).remove(form.cleaned_data["product"]):
        messages.success(request, _("The product was removed from your cart."))
    else:
        messages.error(request, _("That product is not in your cart."))
    return redirect("shop_demo:cart")


@require_http_methods(["GET", "HEAD", "POST"])
def checkout(request):
    cart = Cart(request)
    lines = cart.lines()
    if not lines:
        messages.info(request, _("Your cart is empty."))
        return redirect("shop_demo:cart")
    form = CheckoutForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        order_id = f"demo-{uuid.uuid4().hex[:12]}"
        try:
            record_order(order_id, cart.order_lines(), request=request)
        except Exception:
            logger.exception("could not record order %s", order_id)
            messages.error(request, _("Your order could not be placed. Please try again."))
            return redirect("shop_demo:cart")
        request.session[LAST_ORDER_KEY] = {
            "order_id": order_id,
            "name": form.cleaned_data["name"],
            "items": len(cart),
            "total": str(cart.total()),
            "currency": cart.currency(),
        }
        cart.clear()
        return redirect("shop_demo:checkout_done")
    return render(request, "shop_demo/checkout.html", {
        "cart": cart, "lines": lines, "form": form,
    })


@require_safe
def checkout_done(request):
    order = request.session.get(LAST_ORDER_KEY)
    if not order:
        return redirect("shop_demo:product_list")
    return render(request, "shop_demo/checkout_done.html", {"order": order})
