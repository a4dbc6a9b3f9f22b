"""App config: gives ``SHOP_RECS_PRODUCT_MODEL`` its default, registers checks and the schedule."""

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class ShopRecsConfig(AppConfig):
    name = "shop_recs"
    verbose_name = _("Recommendations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from shop_recs import checks  # noqa: F401  (registers the checks)
        from shop_recs import serving_cache
        from shop_recs.conf import DEFAULT_PRODUCT_MODEL
        from shop_recs.schedule import (ensure_fallbacks_schedule, ensure_retrain_schedule,
                                        ensure_rollup_schedule)

        # Django resolves swappable dependencies through the setting itself, so a shop
        # that keeps the default product model need not write it down.
        if not hasattr(settings, "SHOP_RECS_PRODUCT_MODEL"):
            settings.SHOP_RECS_PRODUCT_MODEL = DEFAULT_PRODUCT_MODEL
        post_migrate.connect(ensure_retrain_schedule, sender=self)
        post_migrate.connect(ensure_fallbacks_schedule, sender=self)
        post_migrate.connect(ensure_rollup_schedule, sender=self)
        # Every process, the training worker included, clears the serving cache when a
        # run activates or a bundle changes.
        serving_cache.connect_receivers()
        from shop_recs import newproducts

        newproducts.connect_receivers()  # a new product gets a list before the next run
        from shop_recs.analytics import experiments

        experiments.connect_receivers()  # experiment changes start a new serving generation
