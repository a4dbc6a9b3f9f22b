"""The periodic tasks of shop_recs, for django-celery-beat.

When ``django_celery_beat`` is installed, ``migrate`` creates three periodic tasks once (an
edited or deleted one is never touched again):

* "shop_recs: retrain" (Sundays 03:00, task ``shop_recs.retrain``), **disabled**: staff
  enable it or change its crontab in the admin (Periodic tasks);
* "shop_recs: refresh fallbacks" (daily 02:30, task ``shop_recs.refresh_fallbacks``),
  enabled: it is cheap, and keeps the stored fallback lists of products sold since the last
  run or import current;
* "shop_recs: analytics roll-up" (hourly at :10, task ``shop_recs.rollup_analytics``),
  enabled: it recomputes yesterday and today from the interactions (cheap: a few GROUP BY
  queries per day), so the admin's analytics pages are at most an hour behind.

A worker started with ``celery -A yourproject beat -S django`` then runs them on schedule.
"""

from django.apps import apps

TASK_NAME = "shop_recs: retrain"
FALLBACKS_TASK_NAME = "shop_recs: refresh fallbacks"
ROLLUP_TASK_NAME = "shop_recs: analytics roll-up"


def _ensure(name, task, crontab, enabled, description):
    if not apps.is_installed("django_celery_beat"):
        return
    from django_celery_beat.models import CrontabSchedule, PeriodicTask  # noqa: PLC0415

    if PeriodicTask.objects.filter(name=name).exists():
        return
    minute, hour, day_of_week = crontab
    schedule, _ = CrontabSchedule.objects.get_or_create(
        minute=minute, hour=hour, day_of_week=day_of_week, day_of_month="*", month_of_year="*")
    PeriodicTask.objects.create(name=name, task=task, crontab=schedule, enabled=enabled,
                                description=description)


def ensure_retrain_schedule(**kwargs):
    """post_migrate receiver: the weekly retraining, created disabled."""
    _ensure(TASK_NAME, "shop_recs.retrain", ("0", "3", "0"), False,
            "Retrain the bundle model and publish new FBT lists and proposals. "
            "Shipped disabled: enable it here.")


def ensure_fallbacks_schedule(**kwargs):
    """post_migrate receiver: the daily refresh of the stored fallback lists, enabled."""
    _ensure(FALLBACKS_TASK_NAME, "shop_recs.refresh_fallbacks", ("30", "2", "*"), True,
            "Recompute the fallback lists (products bought together in recent orders, "
            "category bestsellers) from the orders.")


def ensure_rollup_schedule(**kwargs):
    """post_migrate receiver: the hourly analytics roll-up, enabled."""
    _ensure(ROLLUP_TASK_NAME, "shop_recs.rollup_analytics", ("10", "*", "*"), True,
            "Recompute the widget analytics roll-ups of yesterday and today (older days: "
            "manage.py shop_recs_rollup --since YYYY-MM-DD).")
