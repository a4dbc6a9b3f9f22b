"""The demo project's Celery app (Celery's Django example layout).

Run a worker with ``celery -A shop_demo worker``; configuration comes from the
``CELERY_*`` Django settings.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")

app = Celery("shop_demo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
