"""QuerySets of shop_recs models: ``Interaction.objects.purchases()`` and friends."""

from django.db import models


class InteractionQuerySet(models.QuerySet):
    def purchases(self):
        return self.filter(kind="purchase")

    def before(self, cutoff):
        return self.filter(timestamp__lt=cutoff) if cutoff else self

    def for_visitor(self, visitor_id):
        return self.filter(visitor_id=visitor_id)

    def order_count(self):
        """Number of distinct orders among these interactions."""
        return self.exclude(order_id="").values("order_id").distinct().count()
