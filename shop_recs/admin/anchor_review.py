"""The review screen: one anchor product's proposed bundles side by side.

``/admin/shop_recs/bundle/review/`` opens the most important product with pending
proposals (``review.review_queue``: revenue, orders, then evidence);
``…/review/<anchor pk>/`` shows that product. Each card has Approve and Reject buttons
(plain forms, so it works without JavaScript); ``shop_recs/admin/review.js`` adds
keyboard shortcuts. After a decision the page stays on the product while proposals
remain, then moves on to the next product that has some. The page also shows the product's
published FBT list and where it comes from.

``/admin/shop_recs/bundle/lists/?source=content`` (:class:`ListsReviewView`) pages through the
serving run's FBT lists, filtered by source: ``content`` (chosen from a new product's name
and category), ``orders`` (learned from orders) or all; each links to its product's review.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views import View

from shop_recs import review
from shop_recs.admin.display import BundleCard, ProductView, bundle_queryset, product_relations
from shop_recs.formats import money
from shop_recs.models import Bundle, TrainingRun
from shop_recs.newproducts import explanation as content_explanation
from shop_recs.products import get_product_model

LISTS_PER_PAGE = 25

# "approve_only" approves one bundle and rejects the product's other proposals.
POST_DECISIONS = {"approve": review.APPROVE, "approve_only": review.APPROVE,
                  "reject": review.REJECT}


class AnchorReviewView(View):
    model_admin = None
    template_name = "admin/shop_recs/bundle/review.html"

    def url(self, anchor_pk=None):
        if anchor_pk is None:
            return reverse("admin:shop_recs_bundle_changelist")
        return reverse("admin:shop_recs_bundle_review", args=[anchor_pk])

    def get_anchor(self, anchor):
        model = get_product_model()
        try:
            return model._default_manager.get(pk=model._meta.pk.to_python(anchor))
        except (model.DoesNotExist, ValidationError, ValueError):
            raise Http404(_("No product with this key.")) from None

    def get(self, request, anchor=None):
        if not self.model_admin.has_view_or_change_permission(request):
            raise PermissionDenied
        if anchor is None:
            first = review.review_queue().after(None)
            if first is None:
                messages.info(request, _("No proposed bundles are waiting for review."))
            return HttpResponseRedirect(self.url(first))
        product = self.get_anchor(anchor)
        bundles = bundle_queryset(Bundle.objects.filter(anchor=product)).order_by(
            "-score", "pk")
        cards = [BundleCard(b) for b in bundles]
        proposed = [c for c in cards if c.bundle.status == Bundle.Status.PROPOSED]
        queue = review.review_queue()
        following, impact = queue.after(product.pk), queue.of(product.pk)
        view, high = ProductView(product), queue.high_impact_left
        context = {
            **self.model_admin.admin_site.each_context(request),
            "opts": Bundle._meta,
            "title": _("Review bundles of %(name)s") % {"name": view.name},
            "anchor": view,
            "proposed": proposed,
            "decided": [c for c in cards if c.bundle.status != Bundle.Status.PROPOSED],
            "next_url": self.url(following) if following is not None else None,
            "remaining": len(queue),
            "remaining_display": f"{len(queue):,}",
            "high_impact_left": high,
            "high_impact_left_display": f"{high:,}",
            "impact": impact,
            "impact_revenue": money(impact.revenue, view.currency),
            "impact_orders": f"{impact.orders:,}",
            "can_review": review.can_review(request.user),
            "fbt_list": published_lists([product.pk], known={product.pk: product})[0],
        }
        return render(request, self.template_name, context)

    def post(self, request, anchor=None):
        if not review.can_review(request.user) or anchor is None:
            raise PermissionDenied
        product = self.get_anchor(anchor)
        decision = POST_DECISIONS.get(request.POST.get("decision"))
        bundle_pk = request.POST.get("bundle", "")
        chosen = Bundle.objects.filter(anchor=product, pk=bundle_pk if bundle_pk.isdigit() else 0)
        if decision is None or not chosen.exists():
            messages.error(request, _("Choose a bundle of this product and a decision."))
            return HttpResponseRedirect(self.url(product.pk))
        result = review.decide(chosen, decision, request.user)
        if request.POST["decision"] == "approve_only":
            others = Bundle.objects.filter(anchor=product, status=Bundle.Status.PROPOSED)
            result.changed += review.decide(others, review.REJECT, request.user).changed
        if result.changed:
            messages.success(request, _("Bundle %(pk)s %(decision)s.") % {
                "pk": chosen.first().pk,
                "decision": Bundle.Status(result.changed[0].status).label})
        else:
            messages.warning(request, _("Nothing changed: that bundle was already decided."))
        if Bundle.objects.filter(anchor=product, status=Bundle.Status.PROPOSED).exists():
            return HttpResponseRedirect(self.url(product.pk))
        following = review.review_queue().after(product.pk)
        if following is None:
            messages.info(request, _("All proposed bundles are reviewed."))
        return HttpResponseRedirect(self.url(following))


class PublishedList:
    """One anchor's published list: its products, where it comes from and why."""

    def __init__(self, anchor, rows, products):
        self.anchor = ProductView(products[anchor]) if anchor in products else None
        self.items = [ProductView(products[r.recommended_id]) for r in rows
                      if r.recommended_id in products]
        first = rows[0] if rows else None
        self.source = first.source if first else ""
        self.label = review.list_source(self.source) if first else ""
        self.explanation = (content_explanation(first.evidence) or "") if first else ""
        self.run = first.run_id if first else None
        self.review_url = reverse("admin:shop_recs_bundle_review", args=[anchor])


def published_lists(anchors, rows=None, known=None):
    """``PublishedList`` of each of ``anchors`` in the serving run (an empty one if none): one
    query with the recommended products, one more for the anchors not in ``known``
    ({pk: product})."""
    rows = review.served_lists() if rows is None else rows
    rows = list(rows.filter(product_id__in=anchors).select_related(
        "recommended", *product_relations("recommended__")).order_by("product", "rank"))
    by_anchor, products = {}, dict(known or {})
    for row in rows:
        by_anchor.setdefault(row.product_id, []).append(row)
        products[row.recommended_id] = row.recommended
    missing = [a for a in anchors if a not in products]
    if missing:
        products.update(get_product_model()._default_manager.select_related(
            *product_relations("")).in_bulk(missing))
    return [PublishedList(a, by_anchor.get(a, []), products) for a in anchors]


class ListsReviewView(View):
    """The serving run's FBT lists, a page of anchors at a time, filtered by source."""

    model_admin = None
    template_name = "admin/shop_recs/bundle/lists.html"

    def get(self, request):
        if not self.model_admin.has_view_or_change_permission(request):
            raise PermissionDenied
        source = request.GET.get("source") or None
        try:
            rows = review.served_lists(source)
        except ValueError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(reverse("admin:shop_recs_bundle_lists"))
        anchors = rows.filter(rank=1).order_by("product").values_list("product", flat=True)
        page = Paginator(anchors, LISTS_PER_PAGE).get_page(request.GET.get("p"))
        context = {
            **self.model_admin.admin_site.each_context(request),
            "opts": Bundle._meta,
            "title": _("Published lists"),
            "run": TrainingRun.objects.filter(is_active=True).first(),
            "source": source or "",
            "sources": [("", _("all"))] + [(k, v) for k, v in review.LIST_SOURCES.items()],
            "page": page,
            "lists": published_lists(list(page.object_list), rows),
        }
        return render(request, self.template_name, context)
