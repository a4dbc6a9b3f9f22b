"""Bundle admin: the evidence list, bulk decisions, editing and manual bundles.

Approve, reject and retire need ``shop_recs.review_bundle``: staff without it see
neither the actions nor the buttons, and a forged POST changes nothing. Editing an
approved bundle (what customers see) needs the permission too. Decisions and edits are
recorded in the admin log and announced with ``bundles_changed``.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import widgets
from django.core.exceptions import ValidationError
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from shop_recs import review
from shop_recs.admin.anchor_review import AnchorReviewView, ListsReviewView
from shop_recs.admin.display import BundleCard, bundle_queryset
from shop_recs.admin.paging import BoundedCountPaginator
from shop_recs.conf import recs_settings
from shop_recs.models import Bundle, BundleItem
from shop_recs.products import get_adapter, get_product_model

MAX_ITEMS = 5


class CategoryFilter(admin.SimpleListFilter):
    """The anchor product's category, through the adapter's field map."""

    title = _("category")
    parameter_name = "category"

    def lookups(self, request, model_admin):
        path = get_adapter().fields.get("category")
        if not path:
            return []
        values = (get_product_model()._default_manager.exclude(**{f"{path}__isnull": True})
                  .exclude(**{path: ""}).order_by(path).values_list(path, flat=True).distinct())
        return [(value, value) for value in values]

    def queryset(self, request, queryset):
        path = get_adapter().fields.get("category")
        if self.value() and path:
            # A subquery, not a join, so the bundle table still leads (see bundle_queryset).
            anchors = get_product_model()._default_manager.filter(**{path: self.value()})
            return queryset.filter(anchor__in=anchors.values("pk"))
        return queryset


class RunFilter(admin.RelatedFieldListFilter):
    """The run that proposed the bundle (titled "training run", not "proposed by run")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.title = _("training run")


class BundleItemFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        if any(self.errors):
            return
        anchor = getattr(self.instance, "anchor", None) if self.instance.anchor_id else None
        seen = set()
        for form in self.forms:
            if not form.cleaned_data or form.cleaned_data.get("DELETE"):
                continue
            product = form.cleaned_data.get("product")
            if anchor is not None and product is not None and product.pk == anchor.pk:
                raise ValidationError(_("The anchor product cannot also be an item."))
            if product is not None and product.pk in seen:
                raise ValidationError(_("Each product can be in the bundle only once."))
            seen.add(product.pk if product is not None else None)
        if not seen:
            raise ValidationError(_("A bundle needs at least one product besides the anchor."))


def product_autocomplete(admin_site):
    """Whether the product model's admin can serve autocomplete (it needs search_fields).

    A host shop's product admin may lack them; raw-id inputs are used then, so the
    admin checks pass and large catalogues never render as one huge <select>.
    """
    product_admin = admin_site._registry.get(get_product_model())
    return bool(product_admin and product_admin.get_search_fields(None))


class ProductPickerMixin:
    product_fields = ()

    def get_autocomplete_fields(self, request):
        return self.product_fields if product_autocomplete(self.admin_site) else ()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in self.product_fields and not product_autocomplete(self.admin_site):
            kwargs["widget"] = widgets.ForeignKeyRawIdWidget(db_field.remote_field,
                                                             self.admin_site)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class BundleItemInline(ProductPickerMixin, admin.TabularInline):
    model = BundleItem
    formset = BundleItemFormSet
    fields = ("position", "product")
    product_fields = ("product",)
    ordering = ("position", "pk")
    extra = 1
    max_num = MAX_ITEMS
    verbose_name = _("item (after the anchor, in display order)")

    # Items are part of the bundle: whoever may edit the bundle may edit its items.
    def _bundle_admin(self):
        return self.admin_site._registry[Bundle]

    def _can_edit(self, request, obj):
        if obj is None:
            return self._bundle_admin().has_add_permission(request)
        return self._bundle_admin().has_change_permission(request, obj)

    def has_view_permission(self, request, obj=None):
        return self._bundle_admin().has_view_or_change_permission(request, obj)

    def has_add_permission(self, request, obj=None):
        return self._can_edit(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._can_edit(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._can_edit(request, obj)


class BundleForm(forms.ModelForm):
    class Meta:
        model = Bundle
        fields = ("anchor", "discount_percent")

    def clean_discount_percent(self):
        value = self.cleaned_data["discount_percent"]
        maximum = recs_settings.MAX_BUNDLE_DISCOUNT
        if value is not None and not 0 <= value <= maximum:
            raise ValidationError(
                _("Enter a discount from 0 to %(max)s percent (SHOP_RECS['MAX_BUNDLE_DISCOUNT']).")
                % {"max": maximum})
        return value


@admin.register(Bundle)
class BundleAdmin(ProductPickerMixin, admin.ModelAdmin):
    form = BundleForm
    inlines = [BundleItemInline]
    list_display = ("bundle_products", "totals", "evidence_orders_display", "evidence_lift_display",
                    "score_display", "provenance", "status_display")
    list_filter = ("status", "source", ("run", RunFilter), CategoryFilter)
    # Best first, as the marked "score" header says; the (score, id) index serves it.
    ordering = ("-score", "-pk")
    paginator = BoundedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # "Show counts" would count per filter value
    product_fields = ("anchor",)
    actions = ["approve", "reject", "retire"]
    list_per_page = 25
    readonly_fields = ("status", "source", "run_link", "score_display", "evidence_display",
                       "signature", "created_at", "reviewed_at", "reviewed_by")
    fieldsets = (
        (None, {"fields": ("anchor", "discount_percent")}),
        (_("Review"), {"fields": ("status", "source", "reviewed_at", "reviewed_by")}),
        (_("Provenance"), {"fields": ("run_link", "score_display", "evidence_display", "signature",
                                      "created_at")}),
    )

    def get_search_fields(self, request):
        fields = get_adapter().fields
        return [f"{prefix}{fields[key]}" for key in ("name", "sku") if fields.get(key)
                for prefix in ("anchor__", "items__product__")]

    def get_queryset(self, request):
        return bundle_queryset(super().get_queryset(request))

    def get_urls(self):
        view = self.admin_site.admin_view(AnchorReviewView.as_view(model_admin=self))
        lists = self.admin_site.admin_view(ListsReviewView.as_view(model_admin=self))
        return [
            path("lists/", lists, name="shop_recs_bundle_lists"),
            path("review/", view, name="shop_recs_bundle_review_next"),
            path("review/<str:anchor>/", view, name="shop_recs_bundle_review"),
            *super().get_urls(),
        ]

    # Permissions: deciding needs review_bundle; so does editing what customers see.
    def has_review_permission(self, request):
        return review.can_review(request.user)

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.status == Bundle.Status.APPROVED:
            return super().has_change_permission(request, obj) and self.has_review_permission(
                request)
        return super().has_change_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # rejected rows keep later runs from re-proposing
        return actions

    def changelist_view(self, request, extra_context=None):
        pending = Bundle.objects.filter(status=Bundle.Status.PROPOSED).values(
            "anchor_id").distinct().count()
        return super().changelist_view(request, {
            "pending_anchors": pending, "can_review": self.has_review_permission(request),
            # The list needs the width at 1280 px more than the app menu (« toggles it
            # elsewhere); the breadcrumbs still lead back.
            "is_nav_sidebar_enabled": False,
            **(extra_context or {})})

    # Columns.
    def _card(self, obj):
        if not hasattr(obj, "_card"):
            obj._card = BundleCard(obj)
        return obj._card

    @admin.display(description=_("bundle"))
    def bundle_products(self, obj):
        card = self._card(obj)
        return format_html('{}<p class="shop-recs-why">{}</p>', card.products_html(),
                           card.explanation)

    @admin.display(description=_("total"))
    def totals(self, obj):
        card = self._card(obj)
        if not card.discount:
            return card.total_display
        return format_html("{}<br><strong>{}</strong> (−{}%)", card.total_display,
                           card.discounted_display, card.discount.normalize())

    @admin.display(description=_("orders with all"), ordering="evidence_orders")
    def evidence_orders_display(self, obj):
        return "—" if obj.evidence_orders is None else f"{obj.evidence_orders:,}"

    @admin.display(description=_("lift"), ordering="evidence_lift")
    def evidence_lift_display(self, obj):
        return "—" if obj.evidence_lift is None else f"{obj.evidence_lift:.1f}×"

    @admin.display(description=_("score"), ordering="score")
    def score_display(self, obj):
        return "—" if obj.score is None else f"{obj.score:.2f}"

    @admin.display(description=_("run"), ordering="run")
    def run_link(self, obj):
        if obj.run_id is None:
            return "—"
        url = reverse("admin:shop_recs_trainingrun_change", args=[obj.run_id])
        return format_html('<a href="{}">{}</a>', url, obj.run_id)

    @admin.display(description=_("source"), ordering="run")
    def provenance(self, obj):
        if obj.run_id is None:
            return obj.get_source_display()
        url = reverse("admin:shop_recs_trainingrun_change", args=[obj.run_id])
        return format_html('<a href="{}">{}</a><br><span class="shop-recs-quiet">{}</span>', url,
                           _("run %(pk)s") % {"pk": obj.run_id}, obj.get_source_display())

    @admin.display(description=_("status"), ordering="status")
    def status_display(self, obj):
        return format_html('<span class="shop-recs-status shop-recs-status--{}">{}</span>',
                           obj.status, obj.get_status_display())

    @admin.display(description=_("evidence"))
    def evidence_display(self, obj):
        card = BundleCard(obj)
        return format_html("{}<br>{}", card.explanation, obj.evidence)

    # Actions.
    def _decide(self, request, queryset, decision, done_message):
        result = review.decide(queryset, decision, request.user)
        if result.changed:
            self.message_user(request, done_message(len(result.changed)), messages.SUCCESS)
        if result.skipped:
            self.message_user(request, ngettext(
                "%(n)d bundle skipped: its status does not allow this.",
                "%(n)d bundles skipped: their status does not allow this.",
                len(result.skipped)) % {"n": len(result.skipped)}, messages.WARNING)

    @admin.action(description=_("Approve selected bundles"), permissions=["review"])
    def approve(self, request, queryset):
        self._decide(request, queryset, review.APPROVE, lambda n: ngettext(
            "%(n)d bundle approved.", "%(n)d bundles approved.", n) % {"n": n})

    @admin.action(description=_("Reject selected bundles"), permissions=["review"])
    def reject(self, request, queryset):
        self._decide(request, queryset, review.REJECT, lambda n: ngettext(
            "%(n)d bundle rejected.", "%(n)d bundles rejected.", n) % {"n": n})

    @admin.action(description=_("Retire selected bundles"), permissions=["review"])
    def retire(self, request, queryset):
        self._decide(request, queryset, review.RETIRE, lambda n: ngettext(
            "%(n)d bundle retired.", "%(n)d bundles retired.", n) % {"n": n})

    # Editing.
    def save_model(self, request, obj, form, change):
        if not change:
            obj.source = Bundle.Source.MANUAL
            obj.status = Bundle.Status.PROPOSED
        obj._old_anchor_id = form.initial.get("anchor") if change else None
        obj.signature = obj.signature or "-"
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        bundle = form.instance
        items = list(bundle.items.order_by("position", "pk"))
        for position, item in enumerate(items, start=1):
            item.position = position
        BundleItem.objects.bulk_update(items, ["position"])
        bundle.signature = review.signature(bundle.anchor_id, [i.product_id for i in items])
        Bundle.objects.filter(pk=bundle.pk).update(signature=bundle.signature)
        review.announce_bundles([a for a in (getattr(bundle, "_old_anchor_id", None),
                                             bundle.anchor_id) if a is not None])

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        review.announce_bundles([obj.anchor_id])

    def delete_queryset(self, request, queryset):
        anchors = list(queryset.values_list("anchor_id", flat=True))
        super().delete_queryset(request, queryset)
        review.announce_bundles(anchors)
