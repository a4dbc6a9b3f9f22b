"""Training run admin: read-only reports, "Train now", live progress, comparison.

Runs are written by the pipeline only, so every page here is read-only. "Train now"
(permission ``shop_recs.start_training``) calls ``shop_recs.runs.request_training``,
which queues the task once the transaction commits; an unreachable broker or a run
already in progress is reported as a message, never as a server error. "Serve this
run" (permission ``shop_recs.review_bundle``) publishes a succeeded run's FBT lists by
hand, for ``SHOP_RECS["FBT_PUBLISHING"] = "approval"`` or to roll back.
"""

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from shop_recs import review
from shop_recs.admin import run_report
from shop_recs.conf import recs_settings
from shop_recs.models import TrainingRun
from shop_recs.runs import BrokerUnavailable, TrainingAlreadyPending, request_training

MAX_COMPARED = 6


def _pretty_json(value):
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("__str__", "status", "is_active", "created_at", "trigger", "requested_by",
                    "device", "shipped_model", "progress_display", "finished_at")
    list_filter = ("status", "is_active", "trigger", "device")
    list_select_related = ("requested_by",)
    date_hierarchy = "created_at"
    actions = ["compare"]
    fieldsets = (
        (None, {"fields": ("status", "is_active", "trigger", "requested_by", "error")}),
        (gettext_lazy("Data and model"), {"fields": ("device", "data_cutoff", "counts_display",
                                                     "shipped_model", "config_display")}),
        (gettext_lazy("Artifact"), {"fields": ("artifact_path", "artifact_sha256")}),
        (gettext_lazy("Times"), {"fields": ("created_at", "started_at", "heartbeat_at",
                                            "finished_at", "attempts", "task_id")}),
    )
    readonly_fields = ("counts_display", "config_display")
    change_form_template = "admin/shop_recs/trainingrun/change_form.html"
    change_list_template = "admin/shop_recs/trainingrun/change_list.html"

    def has_add_permission(self, request):
        return False  # runs are started with "Train now", never typed in

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        if obj is not None and (obj.is_active or obj.pending):
            return False  # it serves or is being trained
        return super().has_delete_permission(request, obj)

    def has_start_training_permission(self, request):
        return request.user.has_perm("shop_recs.start_training")

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("train/", wrap(self.train_now_view), name="shop_recs_trainingrun_train"),
            path("compare/", wrap(self.compare_view), name="shop_recs_trainingrun_compare"),
            path("<int:pk>/progress/", wrap(self.progress_view),
                 name="shop_recs_trainingrun_progress"),
            path("<int:pk>/activate/", wrap(self.activate_view),
                 name="shop_recs_trainingrun_activate"),
            *super().get_urls(),
        ]

    @admin.display(description=gettext_lazy("progress"))
    def progress_display(self, obj):
        info = run_report.progress(obj)
        return format_html('<progress max="100" value="{}">{}%</progress> {}%',
                           info["percent"], info["percent"], info["percent"])

    @admin.display(description=gettext_lazy("data counts"))
    def counts_display(self, obj):
        return _pretty_json(obj.counts)

    @admin.display(description=gettext_lazy("configuration"))
    def config_display(self, obj):
        return _pretty_json(obj.config)

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {
            "can_train": self.has_start_training_permission(request),
            "pending_run": TrainingRun.objects.filter(pending=True).first(),
            **(extra_context or {})})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if run is not None:
            counts = run.counts if isinstance(run.counts, dict) else {}
            # Stored by publish.activate when the run published; never counted here.
            bundle_count = counts.get("bundles_proposed")
            bundle_count = bundle_count if isinstance(bundle_count, int) else None
            context.update({
                "report": run_report.report(run),
                "can_activate": (review.can_review(request.user) and not run.is_active
                                 and run.status == TrainingRun.Status.SUCCEEDED),
                "fbt_publishing": recs_settings.FBT_PUBLISHING,
                "bundle_count": bundle_count,
                "bundle_count_display": f"{bundle_count:,}" if bundle_count is not None else "",
                # "Compare" opens this run beside the one serving now.
                "compare_with": TrainingRun.objects.filter(is_active=True).exclude(pk=run.pk),
            })
        return super().change_view(request, object_id, form_url, context)

    @admin.action(description=gettext_lazy("Compare selected runs side by side"),
                  permissions=["view"])
    def compare(self, request, queryset):
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:MAX_COMPARED])
        url = reverse("admin:shop_recs_trainingrun_compare")
        return HttpResponseRedirect(f"{url}?{urlencode({'ids': ','.join(map(str, ids))})}")

    def compare_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        ids = [p for p in request.GET.get("ids", "").split(",") if p.strip().isdigit()]
        runs = list(TrainingRun.objects.filter(pk__in=ids[:MAX_COMPARED]).order_by("pk"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Compare training runs"),
            "runs": runs,
            "comparison": run_report.comparison(runs) if runs else None,
        }
        return TemplateResponse(request, "admin/shop_recs/trainingrun/compare.html", context)

    def progress_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return JsonResponse(run_report.progress(get_object_or_404(TrainingRun, pk=pk)))

    def train_now_view(self, request):
        return require_POST(self._train_now)(request)

    def _train_now(self, request):
        if not self.has_start_training_permission(request):
            raise PermissionDenied
        changelist = reverse("admin:shop_recs_trainingrun_changelist")
        try:
            run = request_training(trigger="admin", user=request.user)
        except TrainingAlreadyPending as exc:
            messages.warning(request, _("Run %(pk)s is already %(status)s; a new run can start "
                                        "when it finishes.") % {
                "pk": exc.run.pk, "status": exc.run.get_status_display()})
            return HttpResponseRedirect(
                reverse("admin:shop_recs_trainingrun_change", args=[exc.run.pk]))
        except BrokerUnavailable as exc:
            messages.error(request, _("Training could not be started: %(reason)s. Start the "
                                      "broker (Redis) and try again.") % {"reason": exc})
            return HttpResponseRedirect(changelist)
        messages.success(request, _("Run %(pk)s is queued; it starts when a training worker "
                                    "picks it up.") % {"pk": run.pk})
        return HttpResponseRedirect(reverse("admin:shop_recs_trainingrun_change", args=[run.pk]))

    def activate_view(self, request, pk):
        return require_POST(self._activate)(request, pk)

    def _activate(self, request, pk):
        if not review.can_review(request.user):
            raise PermissionDenied
        run = get_object_or_404(TrainingRun, pk=pk)
        try:
            review.activate_run(run, request.user)
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Run %(pk)s now serves the FBT lists.") % {"pk": run.pk})
        return HttpResponseRedirect(reverse("admin:shop_recs_trainingrun_change", args=[pk]))
