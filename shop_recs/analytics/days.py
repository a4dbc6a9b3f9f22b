"""Calendar days of the roll-ups: a day is a day in the current time zone (``TIME_ZONE``)."""

from datetime import datetime, timedelta
from datetime import time as dtime

from django.conf import settings
from django.utils import timezone


def day_bounds(day):
    """``[start, end)`` of a calendar day in the current time zone."""
    start, end = (datetime.combine(d, dtime.min) for d in (day, day + timedelta(days=1)))
    if settings.USE_TZ:
        start, end = timezone.make_aware(start), timezone.make_aware(end)
    return start, end


def local_day(moment):
    return timezone.localtime(moment).date() if settings.USE_TZ else moment.date()
