"""Admin of the default catalogue and of the recorded interactions.

Interactions are an append-only record: the admin shows them read-only, so staff can
inspect what was collected without editing training data by hand. The table grows to
millions of rows, so its changelist never counts it whole (``BoundedCountPaginator``),
lists widget names by walking an index, searches order ids by exact match (an index
lookup, not a ``LIKE '%…%'`` scan), and filters dates by range instead of a
``date_hierarchy`` (which truncates every row's timestamp to list the years).
"""

from django.contrib import admin
from django.db import models
from django.utils.translation import gettext_lazy as _

from shop_recs.admin.paging import BoundedCountPaginator, DistinctValuesFilter
from shop_recs.models import Interaction, Product


class WidgetFilter(DistinctValuesFilter):
    title = _("widget")
    parameter_name = "widget"
    field_name = "widget"


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "price", "currency", "category", "in_stock", "is_active")
    list_filter = ("is_active", "in_stock", "category")
    search_fields = ("sku", "name")
    list_editable = ("in_stock", "is_active")
    readonly_fields = ("created_at", "updated_at")
    list_per_page = 50
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = ("timestamp", "kind", "product", "order_id", "line", "origin")
    list_filter = ("kind", "source", WidgetFilter, ("timestamp", admin.DateFieldListFilter))
    search_fields = ("order_id__exact",)
    search_help_text = _("An order id, exactly as recorded.")
    list_select_related = ("product",)
    ordering = ("-timestamp", "-pk")  # the (timestamp, id) index, read backwards
    sortable_by = ("timestamp",)  # any other order would sort the whole table per page
    paginator = BoundedCountPaginator
    show_full_result_count = False  # counting a million rows on every page is slow
    show_facets = admin.ShowFacets.NEVER  # "Show counts" would count per filter value
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("kind", "product", "quantity", "unit_price", "timestamp")}),
        (_("Who"), {"fields": ("user", "visitor_id", "order_id")}),
        (_("Attribution"), {"fields": ("source", "widget", "bundle_ref", "run_ref")}),
    )

    @admin.display(description=_("qty × price"))
    def line(self, obj):
        if obj.unit_price is None:
            return f"{obj.quantity}"
        return f"{obj.quantity} × {obj.unit_price.normalize():f}"

    @admin.display(description=_("source"))
    def origin(self, obj):
        """Where it was recorded, and the widget that led to it (one column fits 1280 px)."""
        widget = f" · {obj.widget}" if obj.widget else ""
        return f"{obj.get_source_display()}{widget}"

    def changelist_view(self, request, extra_context=None):
        # The rows need the width at 1280 px more than the app menu (as for bundles).
        return super().changelist_view(request, {"is_nav_sidebar_enabled": False,
                                                 **(extra_context or {})})

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
