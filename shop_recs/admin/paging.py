"""Changelist pieces that stay fast on tables of millions of rows.

``BoundedCountPaginator`` counts at most ``cap + 1`` matching rows, so a page of a
million interactions costs a bounded scan instead of a full ``COUNT(*)``; the page
says "more than 100,000" past the cap (see ``admin/shop_recs/pagination.html``).
Use it with ``show_full_result_count = False``, which drops Django's second count of
the unfiltered table.

``DistinctValuesFilter`` lists a free-text column's values by walking an index
(``MIN(col) WHERE col > previous``), one indexed lookup per value, instead of a
``SELECT DISTINCT`` over every row; it needs an index that starts with the column.
"""

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Min
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _


class BoundedCountPaginator(Paginator):
    cap = 100_000

    @cached_property
    def count(self):
        # ORDER BY dropped and only the key selected: any cap + 1 matching rows will do.
        counted = self.object_list.order_by().values("pk")[: self.cap + 1].count()
        self.capped = counted > self.cap
        return counted

    capped = False

    @property
    def cap_display(self):
        return f"{self.cap:,}"


class DistinctValuesFilter(admin.SimpleListFilter):
    """Filter on the values of ``field_name`` (subclass and set it), listing at most
    ``max_values`` of them; the empty value is offered as "(none)"."""

    field_name = ""
    max_values = 20
    empty_label = _("(none)")
    empty_param = "__empty__"

    def lookups(self, request, model_admin):
        manager = model_admin.model._default_manager
        values, previous = [], None
        while len(values) < self.max_values:
            rows = manager.all() if previous is None else manager.filter(
                **{f"{self.field_name}__gt": previous})
            value = rows.aggregate(v=Min(self.field_name))["v"]
            if value is None:
                break
            values.append(value)
            previous = value
        return [(self.empty_param if v == "" else v, self.empty_label if v == "" else v)
                for v in values]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(**{self.field_name: "" if value == self.empty_param else value})
