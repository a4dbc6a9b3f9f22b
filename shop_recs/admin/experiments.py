"""A/B experiment admin: arms and weights, start / pause / stop, results and "ship".

Staff create an experiment with two or more arms (the first is the control) while it is a
draft; the sample-size calculator on the form says how many visitors each arm needs before
the start. Start refuses a second experiment on a placement that another one holds
(running or paused), and arms without their training run. The results page shows the
statistics of ``shop_recs.analytics.stats`` with a chart and a plain-language verdict;
"Ship this arm" makes an arm what every visitor of the placement gets. Every state change
is written to the admin log (``LogEntry``). All of it needs ``shop_recs.change_experiment``.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from shop_recs import review
from shop_recs.analytics import experiments
from shop_recs.conf import recs_settings
from shop_recs.models import Arm, Bundle, Experiment, TrainingRun

ACTIONS = {  # url name part: (function, log message)
    "start": (experiments.start, gettext_lazy("Started")),
    "pause": (experiments.pause, gettext_lazy("Paused")),
    "stop": (experiments.stop, gettext_lazy("Stopped")),
}


class ArmFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        kept = [f for f in self.forms
                if f.cleaned_data and not f.cleaned_data.get("DELETE", False)]
        if len(kept) < 2:
            raise forms.ValidationError(_("An experiment needs at least two arms: the first "
                                          "is the control."))
        for form in kept:
            kind, run = form.cleaned_data.get("kind"), form.cleaned_data.get("run")
            if kind == Arm.Kind.RUN and (run is None or run.status != TrainingRun.Status.SUCCEEDED):
                form.add_error("run", _("Choose a succeeded training run for this arm."))
            discount = form.cleaned_data.get("discount_percent")
            maximum = recs_settings.MAX_BUNDLE_DISCOUNT
            if kind == Arm.Kind.BUNDLE_DISCOUNT and (discount is None or discount > maximum):
                form.add_error("discount_percent", _(
                    "Enter the bundle discount of this arm, from 0 to %(max)s percent "
                    "(SHOP_RECS['MAX_BUNDLE_DISCOUNT']).") % {"max": maximum})


class ArmInline(admin.TabularInline):
    model = Arm
    formset = ArmFormSet
    fields = ("position", "name", "kind", "run", "discount_percent", "weight")
    extra = 2
    min_num = 0

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "run":
            kwargs["queryset"] = TrainingRun.objects.filter(status=TrainingRun.Status.SUCCEEDED)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _draft(self, obj):
        return obj is None or obj.status == Experiment.Status.DRAFT

    # Arms change only in a draft: changing them later would move visitors between arms.
    def has_add_permission(self, request, obj=None):
        return self._draft(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._draft(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._draft(obj) and super().has_delete_permission(request, obj)


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ("name", "placement", "status", "started_at", "stopped_at", "visitors")
    list_filter = ("status", "placement")
    search_fields = ("name",)
    inlines = [ArmInline]
    fields = ("name", "placement", "sequential", "baseline_conversion", "minimum_effect",
              "planned_visitors", "sample_size_display", "status", "started_at", "stopped_at")
    readonly_fields = ("sample_size_display", "status", "started_at", "stopped_at")
    change_form_template = "admin/shop_recs/experiment/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(visitor_count=Count("exposures"))

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status != Experiment.Status.DRAFT:
            return (*self.fields,)
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.holds_placement:
            return False  # stop it first
        return super().has_delete_permission(request, obj)

    @admin.display(description=gettext_lazy("exposed visitors"), ordering="visitor_count")
    def visitors(self, obj):
        return getattr(obj, "visitor_count", None)

    @admin.display(description=gettext_lazy("sample size"))
    def sample_size_display(self, obj):
        if obj is None or obj.pk is None:
            return _("Save the experiment to see how many visitors it needs.")
        from shop_recs.analytics import stats  # noqa: PLC0415 (SciPy: only where used)

        arms = max(2, obj.arms.count())
        try:
            needed = stats.sample_size(obj.baseline_conversion, obj.minimum_effect, arms=arms)
        except ValueError as exc:
            return str(exc)
        return _("With %(conversion).1f %% of visitors ordering, detecting a change of "
                 "%(effect)+.0f %% in revenue per visitor (95 %% confidence, 80 %% power) needs "
                 "%(needed)s visitors per arm, %(total)s in all. %(when)s") % {
            "conversion": obj.baseline_conversion * 100, "effect": obj.minimum_effect * 100,
            "needed": f"{needed:,}", "total": f"{needed * arms:,}",
            "when": (_("Sequential: a verdict shows as soon as one is conclusive, before "
                       "then if the effect is large.") if obj.sequential
                     else _("No verdict before then."))}

    def get_urls(self):
        wrap = self.admin_site.admin_view
        urls = [path(f"<int:pk>/{name}/", wrap(require_POST(self._action_view(name))),
                     name=f"shop_recs_experiment_{name}") for name in ACTIONS]
        return [
            *urls,
            path("<int:pk>/results/", wrap(self.results_view),
                 name="shop_recs_experiment_results"),
            path("<int:pk>/ship/<int:arm>/", wrap(require_POST(self.ship_view)),
                 name="shop_recs_experiment_ship"),
            path("<int:pk>/rollup/", wrap(require_POST(self.rollup_view)),
                 name="shop_recs_experiment_rollup"),
            *super().get_urls(),
        ]

    def _action_view(self, name):
        function, message = ACTIONS[name]

        def view(request, pk):
            experiment = get_object_or_404(Experiment, pk=pk)
            if not self.has_change_permission(request, experiment):
                raise PermissionDenied
            try:
                experiment = function(experiment)
            except experiments.ExperimentError as exc:
                messages.error(request, str(exc))
            else:
                self.log_change(request, experiment, str(message))
                messages.success(request, _("%(name)s: %(status)s.") % {
                    "name": experiment.name, "status": experiment.get_status_display()})
            return HttpResponseRedirect(
                reverse("admin:shop_recs_experiment_change", args=[pk]))
        return view

    def change_view(self, request, object_id, form_url="", extra_context=None):
        experiment = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if experiment is not None:
            status = experiment.status
            context.update({
                "can_start": status in (Experiment.Status.DRAFT, Experiment.Status.PAUSED),
                "can_pause": status == Experiment.Status.RUNNING,
                "can_stop": experiment.holds_placement,
                "has_results": status != Experiment.Status.DRAFT,
            })
        return super().change_view(request, object_id, form_url, context)

    def results_view(self, request, pk):
        experiment = get_object_or_404(Experiment, pk=pk)
        if not self.has_view_permission(request, experiment):
            raise PermissionDenied
        from shop_recs.analytics import results, stats  # noqa: PLC0415 (SciPy)

        if experiment.arms.count() < 2:
            messages.error(request, _("An experiment needs at least two arms."))
            return HttpResponseRedirect(
                reverse("admin:shop_recs_experiment_change", args=[pk]))
        report = results.report(experiment)
        arms = list(experiment.arms.all())
        rows = [{**row, "arm": arm} for row, arm in zip(report.arms, arms)]
        comparisons = [{"arm": c.arm, "metrics": [(stats.METRICS[key][0], c.metrics[key])
                                                  for key in stats.METRICS]}
                       for c in report.comparisons]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta, "original": experiment,
            "title": _("Results of %(name)s") % {"name": experiment.name},
            "report": report, "rows": rows, "comparisons": comparisons,
            "chart": results.exposure_chart(experiment),
            "rolled_up": results.last_rollup(experiment),
            "can_ship": (self.has_change_permission(request, experiment)
                         and experiment.status != Experiment.Status.DRAFT),
        }
        return TemplateResponse(request, "admin/shop_recs/experiment/results.html", context)

    def rollup_view(self, request, pk):
        """Recompute the figures of yesterday and today now (the hourly task does it too)."""
        experiment = get_object_or_404(Experiment, pk=pk)
        if not self.has_change_permission(request, experiment):
            raise PermissionDenied
        from shop_recs.analytics import results  # noqa: PLC0415 (SciPy)

        rows = results.rollup_recent(experiment)
        messages.success(request, _("Figures updated: %(rows)d visitor-days.") % {"rows": rows})
        return HttpResponseRedirect(reverse("admin:shop_recs_experiment_results", args=[pk]))

    def ship_view(self, request, pk, arm):
        experiment = get_object_or_404(Experiment, pk=pk)
        arm = get_object_or_404(Arm, pk=arm, experiment=experiment)
        if not self.has_change_permission(request, experiment):
            raise PermissionDenied
        try:
            experiments.ship(arm)
        except experiments.ExperimentError as exc:
            messages.error(request, str(exc))
        else:
            self.log_change(request, experiment, _("Shipped arm %(arm)s: every visitor of the "
                                                   "placement gets it.") % {"arm": arm})
            if arm.repriced:
                percent = experiments.clamp_percent(arm.discount_percent)
                review.log_change(request.user, Bundle.objects.filter(pk__in=arm.repriced),
                                  _("Discount set to %(percent)s %% by experiment %(name)s "
                                    "(shipped arm %(arm)s).") % {
                                      "percent": percent, "name": experiment.name,
                                      "arm": arm.name})
                self.log_change(request, experiment, _(
                    "Bundle discount %(percent)s %% set on %(count)d served bundles.") % {
                        "percent": percent, "count": len(arm.repriced)})
            messages.success(request, _("%(arm)s now serves every visitor of the %(placement)s.")
                             % {"arm": arm.name, "placement": experiment.get_placement_display()})
        return HttpResponseRedirect(reverse("admin:shop_recs_experiment_results", args=[pk]))
