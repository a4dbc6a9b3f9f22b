"""The retraining schedule ships disabled and survives staff edits."""

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from shop_recs.schedule import TASK_NAME

pytestmark = pytest.mark.django_db


def test_migrate_creates_the_schedule_disabled():
    task = PeriodicTask.objects.get(name=TASK_NAME)
    assert task.task == "shop_recs.retrain" and task.enabled is False
    assert str(task.crontab.hour) == "3"


def test_an_enabled_schedule_is_left_alone_by_later_migrations():
    PeriodicTask.objects.filter(name=TASK_NAME).update(enabled=True)
    call_command("migrate", verbosity=0)
    assert PeriodicTask.objects.get(name=TASK_NAME).enabled is True
