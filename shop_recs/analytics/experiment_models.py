"""Models of A/B experiments: ``Experiment``, its ``Arm`` s and the ``Exposure`` log.

Imported at the bottom of ``shop_recs.models`` so that they belong to the ``shop_recs``
app. An exposure row holds a pseudonymous unit id only (a keyed hash of a user id or of a
session's visitor id, see ``shop_recs.analytics.experiments.unit_for``): never a user
foreign key, session key or IP address. ``shop_recs.privacy.erase_user`` deletes them.
"""

import secrets
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _


def new_salt():
    return secrets.token_hex(8)


class Experiment(models.Model):
    """An A/B test on one placement: visitors are split between its arms by weight."""

    class Placement(models.TextChoices):
        FBT = "fbt", _("product page widget")
        CART = "cart", _("cart widget")
        API = "api", _("API: frequently bought together")

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        RUNNING = "running", _("running")
        PAUSED = "paused", _("paused")
        STOPPED = "stopped", _("stopped")

    name = models.CharField(_("name"), max_length=120)
    placement = models.CharField(_("placement"), max_length=10, choices=Placement.choices,
                                 default=Placement.FBT)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices,
                              default=Status.DRAFT, db_index=True, editable=False)
    # Keys the assignment hash, so that two experiments split visitors independently.
    salt = models.CharField(_("assignment salt"), max_length=32, default=new_salt,
                            editable=False)
    baseline_conversion = models.FloatField(
        _("expected conversion"), default=0.05,
        validators=[MinValueValidator(0.0001), MaxValueValidator(0.9999)],
        help_text=_("Share of visitors who place an order today, e.g. 0.05 for 5 %. "
                    "Used by the sample-size calculator."))
    minimum_effect = models.FloatField(
        _("smallest effect worth detecting"), default=0.10,
        validators=[MinValueValidator(0.001), MaxValueValidator(10.0)],
        help_text=_("Relative change of revenue per visitor, e.g. 0.10 for +10 %."))
    planned_visitors = models.PositiveIntegerField(
        _("planned visitors per arm"), null=True, blank=True,
        help_text=_("The fixed horizon: no verdict before every arm has this many exposed "
                    "visitors. Left empty, the sample-size calculator fills it in."))
    sequential = models.BooleanField(
        _("sequential (peeking is safe)"), default=False,
        help_text=_("Always-valid intervals (a mixture sequential test): the results may be "
                    "read, and the experiment stopped, whenever they are conclusive. Off: a "
                    "fixed horizon, no verdict before the planned visitors (narrower "
                    "intervals at that horizon)."))
    # The per-arm sums of the per-visitor roll-ups (``experiment_rollups.summarise``), so
    # that the results page reads a few numbers, not a row per visitor.
    summary = models.JSONField(_("rolled-up sums"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True, editable=False)
    stopped_at = models.DateTimeField(_("stopped"), null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("experiment")
        verbose_name_plural = _("experiments")
        indexes = [models.Index(fields=["placement", "status"], name="shop_recs_exp_place")]

    def __str__(self):
        return f"{self.name} ({self.get_placement_display()}, {self.get_status_display()})"

    @property
    def holds_placement(self):
        """Running or paused: no other experiment may start on the placement."""
        return self.status in (self.Status.RUNNING, self.Status.PAUSED)


class Arm(models.Model):
    """One variant of an experiment: what its visitors are shown."""

    class Kind(models.TextChoices):
        ACTIVE_RUN = "active_run", _("the serving run (as today)")
        RUN = "run", _("a given training run")
        FALLBACK = "fallback", _("fallback lists only")
        NO_WIDGET = "no_widget", _("no widget")
        BUNDLE_DISCOUNT = "discount", _("the serving run, bundles at this discount")

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms",
                                   verbose_name=_("experiment"))
    name = models.CharField(_("name"), max_length=60)
    kind = models.CharField(_("shows"), max_length=12, choices=Kind.choices,
                            default=Kind.ACTIVE_RUN)
    run = models.ForeignKey("shop_recs.TrainingRun", on_delete=models.SET_NULL, null=True,
                            blank=True, related_name="+", verbose_name=_("training run"),
                            help_text=_("Only for \"a given training run\"."))
    discount_percent = models.DecimalField(
        _("bundle discount (%)"), max_digits=4, decimal_places=1, null=True, blank=True,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
        help_text=_("Only for \"bundles at this discount\": the discount every bundle "
                    "shown to (and bought by) this arm's visitors gets, e.g. 5 or 10."))
    weight = models.PositiveSmallIntegerField(
        _("traffic weight"), default=1, validators=[MinValueValidator(1)],
        help_text=_("Relative share of visitors: weights 1 and 1 split 50/50."))
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    # Set by "ship this arm": from then on every visitor of the placement gets this arm.
    shipped_at = models.DateTimeField(_("shipped"), null=True, blank=True, editable=False)

    class Meta:
        ordering = ["experiment", "position", "pk"]
        verbose_name = _("arm")
        verbose_name_plural = _("arms")
        indexes = [models.Index(fields=["shipped_at"], name="shop_recs_arm_shipped")]

    def __str__(self):
        return f"{self.name} ({self.get_kind_display()})"


class Exposure(models.Model):
    """A unit (pseudonymous visitor) saw its arm's widget: the first time counts."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE,
                                   related_name="exposures", verbose_name=_("experiment"))
    arm = models.ForeignKey(Arm, on_delete=models.CASCADE, related_name="exposures",
                            verbose_name=_("arm"))
    unit = models.CharField(_("pseudonymous visitor"), max_length=64)
    first_exposed_at = models.DateTimeField(_("first exposed"))

    class Meta:
        ordering = ["experiment", "first_exposed_at"]
        verbose_name = _("exposure")
        verbose_name_plural = _("exposures")
        constraints = [models.UniqueConstraint(fields=["experiment", "unit"],
                                               name="shop_recs_exposure_unit")]
        indexes = [models.Index(fields=["unit"], name="shop_recs_exposure_by_unit")]

    def __str__(self):
        return f"{self.unit[:8]}… in {self.arm_id}"


class ExperimentUnitDay(models.Model):
    """One exposed unit's activity on one day of an experiment, after its first exposure.

    Written by the hourly roll-up (``shop_recs.analytics.experiment_rollups``): a day is
    recomputed whole, so re-running it changes nothing. The results page sums these rows
    per arm instead of reading the raw interactions. Pseudonymous units only (as
    ``Exposure``); ``shop_recs.privacy.erase_user`` deletes them.
    """

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE,
                                   related_name="unit_days", verbose_name=_("experiment"))
    arm = models.ForeignKey(Arm, on_delete=models.CASCADE, related_name="+",
                            verbose_name=_("arm"))
    unit = models.CharField(_("pseudonymous visitor"), max_length=64)
    day = models.DateField(_("day"))
    orders = models.PositiveIntegerField(_("orders"), default=0)
    revenue = models.DecimalField(_("revenue"), max_digits=18, decimal_places=2, default=0)
    widget_revenue = models.DecimalField(_("widget-attributed revenue"), max_digits=18,
                                         decimal_places=2, default=0)
    clicks = models.PositiveIntegerField(_("widget clicks"), default=0)
    impressions = models.PositiveIntegerField(_("widget impressions"), default=0)

    class Meta:
        ordering = ["experiment", "day"]
        verbose_name = _("experiment visitor day")
        verbose_name_plural = _("experiment visitor days")
        constraints = [models.UniqueConstraint(fields=["experiment", "day", "unit"],
                                               name="shop_recs_unitday_unique")]
        indexes = [models.Index(fields=["unit"], name="shop_recs_unitday_unit")]

    def __str__(self):
        return f"{self.unit[:8]}… on {self.day}"
