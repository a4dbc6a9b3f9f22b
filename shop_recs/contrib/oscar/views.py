"""``BasketAddAllView``: the widgets' "Add all to basket" form, into Oscar's basket.

Oscar's ``basket:add`` takes one product per request, by pk in the URL; the widget posts
every ticked product at once (``SHOP_RECS["CART_FIELDS"]["product"]``, repeated), so
``SHOP_RECS["CART_URL_NAME"]`` is ``"shop_recs_oscar:basket-add-all"``. Each product goes
through Oscar's own ``AddToBasketForm`` (availability, the strategy's purchase rules, the
basket's line and quantity limits); those it refuses are named in an error message and
the others are added. Like Oscar's view, it sends ``basket_addition`` per product, shows
Oscar's messages (including offers newly applied, such as a bundle discount) and
redirects to ``next`` (same host only), else the referrer, else the basket.

The widget's signed attribution token (``shop_recs.attribution``) is checked; when valid,
the add is recorded as an ``add_to_cart`` event for the widget, bundle and run, and
remembered in the session so that the order's purchases are credited to them.
"""

from django.contrib import messages
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views import View
from oscar.core.loading import get_class, get_model
from oscar.core.utils import redirect_to_referrer, safe_referrer

from shop_recs.attribution import read_token
from shop_recs.conf import recs_settings
from shop_recs.contrib.oscar.receivers import ATTRIBUTION_SESSION_KEY
from shop_recs.ingest import record_event
from shop_recs.models import Interaction

# More products than a widget ever shows is not a widget's form.
MAX_PRODUCTS = 20


class BasketAddAllView(View):
    http_method_names = ["post"]

    def post(self, request):
        AddToBasketForm = get_class("basket.forms", "AddToBasketForm")
        basket_addition = get_class("basket.signals", "basket_addition")
        BasketMessageGenerator = get_class("basket.utils", "BasketMessageGenerator")
        fields = recs_settings.CART_FIELDS
        ids = request.POST.getlist(fields["product"])
        if not ids or len(ids) > MAX_PRODUCTS or not all(i.isdigit() for i in ids):
            messages.error(request, _("Choose at least one product to add to your basket."))
            return redirect_to_referrer(request, "basket:summary")
        Product = get_model("catalogue", "Product")
        products = Product.objects.in_bulk([int(i) for i in dict.fromkeys(ids)])
        attribution = read_token(request.POST.get(fields["token"]))
        basket = request.basket
        offers_before = basket.applied_offers()
        added, refused = [], []
        for pk in dict.fromkeys(int(i) for i in ids):
            product = products.get(pk)
            if product is None or product.is_parent:
                continue  # gone since the page was shown, or needs a variant chosen
            form = AddToBasketForm(basket, product, data={"quantity": 1})
            if not form.is_valid():
                reasons = "; ".join(e for errors in form.errors.values() for e in errors)
                refused.append(f"{product.get_title()}: {reasons}")
                continue
            basket.add_product(product, form.cleaned_data["quantity"], form.cleaned_options())
            added.append(product)
            basket_addition.send(sender=self, product=product, user=request.user,
                                 request=request)
            if attribution is not None:
                self.remember(request, product, attribution)
        if added:
            messages.success(request, render_to_string(
                "shop_recs/oscar/added.html", {"products": added, "count": len(added)}),
                extra_tags="safe noicon")
            BasketMessageGenerator().apply_messages(request, offers_before)
        if refused:
            messages.error(request, ngettext(
                "This product could not be added: %(reasons)s",
                "These products could not be added: %(reasons)s",
                len(refused)) % {"reasons": " / ".join(refused)})
        post_url = request.POST.get("next")
        if post_url and url_has_allowed_host_and_scheme(
                post_url, request.get_host(), require_https=request.is_secure()):
            return redirect(post_url)
        return redirect(safe_referrer(request, "basket:summary"))

    @staticmethod
    def remember(request, product, attribution):
        record_event(Interaction.Kind.CART_ADD, product, request=request,
                     **attribution.as_event_fields())
        remembered = request.session.get(ATTRIBUTION_SESSION_KEY, {})
        remembered[str(product.pk)] = attribution.as_event_fields()
        request.session[ATTRIBUTION_SESSION_KEY] = remembered
