"""Widget analytics in the admin: what the widgets, runs and bundles earned, per day.

The "Widget analytics" entry of the Recommendations app opens one read-only page (the
changelist of ``WidgetDayStat``, replaced): a date range and widget filter, a summary per
widget, charts over time, tables per training run and per bundle, the days, and
``?format=csv`` for the same days as a CSV file. It reads the daily roll-ups only
(``shop_recs.analytics.report``): a fixed number of queries whatever the number of events.
The page says which attribution window the numbers used and when they were computed.
"""

import csv
from datetime import timedelta

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Max
from django.http import HttpResponse, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from shop_recs.analytics import report
from shop_recs.analytics.models import ShopDayStat, WidgetDayStat
from shop_recs.analytics.rollups import local_day
from shop_recs.charts import line_chart
from shop_recs.conf import recs_settings

DEFAULT_DAYS = 30
MAX_DAYS = 3 * 366  # longest range one page sums over


class AnalyticsFilterForm(forms.Form):
    start = forms.DateField(label=gettext_lazy("From"), required=False,
                            widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=gettext_lazy("To"), required=False,
                          widget=forms.DateInput(attrs={"type": "date"}))
    widget = forms.ChoiceField(label=gettext_lazy("Widget"), required=False)

    def __init__(self, data, *, widgets, default_end):
        super().__init__(data)
        self.default_end = default_end
        self.fields["widget"].choices = [("", _("All widgets"))] + [(w, w) for w in widgets]

    def clean(self):
        data = super().clean()
        end = data.get("end") or self.default_end
        start = data.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError(_("“From” must not be after “To”."))
        if (end - start).days >= MAX_DAYS:
            raise forms.ValidationError(
                _("Choose at most %(days)d days.") % {"days": MAX_DAYS})
        data["start"], data["end"] = start, end
        return data


def _chart(title, series, ticks, y_label=""):
    return line_chart(series, title=title, y_label=y_label, x_label=_("day"), x_ticks=ticks,
                      width=420)


@admin.register(WidgetDayStat)
class WidgetAnalyticsAdmin(admin.ModelAdmin):
    """The analytics page; the roll-up rows themselves are never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        widgets = list(WidgetDayStat.objects.filter(grain=WidgetDayStat.Grain.WIDGET)
                       .exclude(widget="").order_by("widget")
                       .values_list("widget", flat=True).distinct())
        last_day = ShopDayStat.objects.aggregate(last=Max("day"))["last"]
        end = last_day or local_day(timezone.now())
        defaults = {"start": end - timedelta(days=DEFAULT_DAYS - 1), "end": end, "widget": ""}
        form = AnalyticsFilterForm({**defaults, **request.GET.dict()}, widgets=widgets,
                                   default_end=end)
        data = None
        if form.is_valid():
            cleaned = form.cleaned_data
            data = report.build(cleaned["start"], cleaned["end"], cleaned["widget"] or "")
        if request.GET.get("format") == "csv":
            if data is None:
                return HttpResponseBadRequest(" ".join(
                    str(e) for errors in form.errors.values() for e in errors),
                    content_type="text/plain; charset=utf-8")
            return self._csv(data)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta, "title": _("Widget analytics"), "form": form,
            "data": data, "setting_window": recs_settings.ATTRIBUTION_WINDOW_DAYS,
            "csv_query": urlencode({**request.GET.dict(), "format": "csv"}),
            "charts": self._charts(data) if data else [],
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/shop_recs/analytics/report.html", context)

    def _charts(self, data):
        days = data["daily"]
        if not days:
            return []
        ticks = [d["day"].strftime("%d %b") for d in days]
        return [chart for chart in (
            _chart(_("Impressions and clicks"),
                   [(_("impressions"), [d.get("impressions") or 0 for d in days]),
                    (_("clicks"), [d.get("clicks") or 0 for d in days])], ticks),
            _chart(_("Click-through rate"), [(_("CTR"), [d["ctr"] for d in days])], ticks),
            _chart(_("Attributed revenue and the shop's"),
                   [(_("attributed"), [d.get("revenue") or 0 for d in days]),
                    (_("shop"), [d["shop_revenue"] for d in days])], ticks),
            _chart(_("Average order value"),
                   [(_("with a widget item"), [d["aov_with"] for d in days]),
                    (_("without"), [d["aov_without"] for d in days])], ticks),
        ) if chart]

    def _csv(self, data):
        name = slugify(f"shop_recs_analytics_{data['first']}_{data['last']}_"
                       f"{data['widget'] or 'all'}")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        writer = csv.writer(response)
        writer.writerows(report.csv_rows(data))
        return response
