"""The periodic retraining schedule, shipped disabled, for django-celery-beat.

When ``django_celery_beat`` is installed, ``migrate`` creates the periodic task
"shop_recs: retrain" (Sundays 03:00, task ``shop_recs.retrain``) **disabled**. Staff
enable it or change its crontab in the admin (Periodic tasks); a worker started with
``celery -A yourproject beat -S django`` then queues a run on schedule.
"""

from django.apps import apps

TASK_NAME = "shop_recs: retrain"


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
