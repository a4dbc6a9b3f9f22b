"""The periodic retraining schedule, shipped disabled, for django-celery-beat.

When ``django_celery_beat`` is installed, ``migrate`` creates the periodic task
"shop_recs: retrain" (Sundays 03:00, task ``shop_recs.retrain``) **disabled**. Staff
enable it or change its crontab in the admin (Periodic tasks); a worker started with
``celery -A yourproject beat -S django`` then queues a run on schedule.
"""

from django.apps import apps

TASK_NAME = "shop_recs: retrain"
FALLBACKS_TASK_NAME = "shop_recs: refresh fallbacks"


def ensure_retrain_schedule(**kwargs):
    """post_migrate receiver: create the disabled schedule once; never touch an edited one."""
    if not apps.is_installed("django_celery_beat"):
        return
    from django_celery_beat.models import CrontabSchedule, PeriodicTask  # noqa: PLC0415

    if PeriodicTask.objects.filter(name=TASK_NAME).exists():
        return
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="0", hour="3", day_of_week="0", day_of_month="*", month_of_year="*")
    PeriodicTask.objects.create(
        name=TASK_NAME, task="shop_recs.retrain", crontab=crontab, enabled=False,
        description="Retrain the bundle model and publish new FBT lists and proposals. "
                    "Shipped disabled: enable it here.")


def ensure_fallbacks_schedule(**kwargs):
    """post_migrate receiver: the daily refresh of the stored fallback lists (enabled: it is
    cheap, and keeps lists of products sold since the last run or import current)."""
    if not apps.is_installed("django_celery_beat"):
        return
    from django_celery_beat.models import CrontabSchedule, PeriodicTask  # noqa: PLC0415

    if PeriodicTask.objects.filter(name=FALLBACKS_TASK_NAME).exists():
        return
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="2", day_of_week="*", day_of_month="*", month_of_year="*")
    PeriodicTask.objects.create(
        name=FALLBACKS_TASK_NAME, task="shop_recs.refresh_fallbacks", crontab=crontab,
        enabled=True, description="Recompute the fallback lists (products bought together "
                                  "in recent orders, category bestsellers) from the orders.")
