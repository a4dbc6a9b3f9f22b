"""Daily roll-ups of widget activity and attributed orders; the analytics pages read only these.

Both tables hold aggregates only (counts and sums per day), never a visitor id, user or
order id: erasing a shopper (``shop_recs.privacy``) has nothing to remove here, and the next
recompute of a day reflects the deletion.

``WidgetDayStat`` has one row per day and *grain*:

* ``widget``: per widget (``widget`` set) and, with ``widget == ""``, all widgets together;
* ``run``: per training run (``run_ref``; NULL = items served without a run) within a
  widget, or within all widgets when ``widget == ""``;
* ``bundle``: per bundle (``bundle_ref``) within a widget, or within all widgets.

Distinct counts (orders, the value of those orders) are computed per grain in SQL, so a sum
over days is exact; summing rows of different keys may count an order twice.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _


class WidgetDayStat(models.Model):
    """Impressions, clicks, adds and attributed orders of one widget key on one day."""

    class Grain(models.TextChoices):
        WIDGET = "widget", _("widget")
        RUN = "run", _("training run")
        BUNDLE = "bundle", _("bundle")

    day = models.DateField(_("day"))
    grain = models.CharField(_("grain"), max_length=6, choices=Grain.choices)
    widget = models.CharField(_("widget"), max_length=40, blank=True,
                              help_text=_("empty: all widgets together"))
    run_ref = models.PositiveBigIntegerField(_("training run"), null=True, blank=True)
    bundle_ref = models.PositiveBigIntegerField(_("bundle"), null=True, blank=True)
    # Widget events: one impression or click per product shown or clicked.
    impressions = models.PositiveBigIntegerField(_("impressions"), default=0)
    clicks = models.PositiveBigIntegerField(_("clicks"), default=0)
    cart_adds = models.PositiveBigIntegerField(_("adds to cart"), default=0)
    # Purchase lines attributed to the key (within the attribution window) and their orders.
    orders = models.PositiveBigIntegerField(_("attributed orders"), default=0)
    lines = models.PositiveBigIntegerField(_("attributed lines"), default=0)
    units = models.PositiveBigIntegerField(_("attributed units"), default=0)
    revenue = models.DecimalField(_("attributed revenue"), max_digits=18, decimal_places=2,
                                  default=0)
    # Whole value of the orders that contain an attributed line (for AOV with the widget).
    order_value = models.DecimalField(_("value of those orders"), max_digits=18,
                                      decimal_places=2, default=0)

    class Meta:
        ordering = ["day", "grain", "widget"]
        verbose_name = _("widget analytics")
        verbose_name_plural = _("widget analytics")
        indexes = [
            # The page: a grain and widget over a date range; recompute: a day's rows.
            models.Index(fields=["grain", "widget", "day"], name="shop_recs_wds_grain"),
            models.Index(fields=["day"], name="shop_recs_wds_day"),
        ]

    def __str__(self):
        return f"{self.day} {self.grain} {self.widget or 'all'}"


class ShopDayStat(models.Model):
    """The whole shop's orders and revenue on one day, and how the day was rolled up."""

    day = models.DateField(_("day"), unique=True)
    orders = models.PositiveBigIntegerField(_("orders"), default=0)
    lines = models.PositiveBigIntegerField(_("order lines"), default=0)
    revenue = models.DecimalField(_("revenue"), max_digits=18, decimal_places=2, default=0)
    attribution_window_days = models.PositiveSmallIntegerField(_("attribution window (days)"))
    computed_at = models.DateTimeField(_("computed"))

    class Meta:
        ordering = ["day"]
        verbose_name = _("shop day")
        verbose_name_plural = _("shop days")

    def __str__(self):
        return str(self.day)
