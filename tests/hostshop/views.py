"""The host shop's cart view that the widget's form posts to (CART_URL_NAME)."""

from django.http import HttpResponseRedirect
from django.views.decorators.http import require_POST

from shop_recs.attribution import read_token


@require_POST
def add_many(request):
    products = request.POST.getlist("product")
    attribution = read_token(request.POST.get("attribution"))
    request.session["cart"] = {"products": products,
                               "bundle": attribution.bundle if attribution else None}
    return HttpResponseRedirect("/cart/")
