"""Admin of the default catalogue and of the recorded interactions.

Interactions are an append-only record: the admin shows them read-only, so staff can
inspect what was collected without editing training data by hand.
"""

from django.contrib import admin
from django.db import models
from django.utils.translation import gettext_lazy as _

from shop_recs.models import Interaction, Product


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
    list_display = ("timestamp", "kind", "product", "order_id", "quantity", "unit_price",
                    "source", "widget")
    list_filter = ("kind", "source", "widget")
    search_fields = ("order_id",)
    list_select_related = ("product",)
    date_hierarchy = "timestamp"
    show_full_result_count = False  # counting a million rows on every page is slow
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("kind", "product", "quantity", "unit_price", "timestamp")}),
        (_("Who"), {"fields": ("user", "visitor_id", "order_id")}),
        (_("Attribution"), {"fields": ("source", "widget", "bundle_ref", "run_ref")}),
    )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
