"""A host shop's own catalogue: UUID keys and field names unlike shop_recs' Product."""

import uuid

from django.db import models


class Family(models.Model):
    label = models.CharField(max_length=50)


class Item(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    code = models.CharField(max_length=30, unique=True)
    title = models.CharField(max_length=200)
    unit_cost = models.DecimalField(max_digits=10, decimal_places=2, null=True)
    family = models.ForeignKey(Family, null=True, on_delete=models.SET_NULL)
    available = models.BooleanField(default=True)

    def get_absolute_url(self):
        return f"/items/{self.code}/"
