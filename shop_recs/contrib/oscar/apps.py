"""App config of shop_recs' django-oscar integration (label ``shop_recs_oscar``)."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ShopRecsOscarConfig(AppConfig):
    name = "shop_recs.contrib.oscar"
    label = "shop_recs_oscar"
    verbose_name = _("Recommendations for django-oscar")
    default_auto_field = "django.db.models.AutoField"

    def ready(self):
        from shop_recs.contrib.oscar import receivers  # noqa: PLC0415

        receivers.connect()
