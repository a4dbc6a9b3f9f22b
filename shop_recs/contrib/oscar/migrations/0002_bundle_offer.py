"""Create the site offer that gives approved bundles their discount (see models.py)."""

from django.db import migrations

OFFER_SLUG = "shop-recs-bundles"
CONDITION = "shop_recs.contrib.oscar.models.BundleCondition"
BENEFIT = "shop_recs.contrib.oscar.models.BundleBenefit"


def create_offer(apps, schema_editor):
    ConditionalOffer = apps.get_model("offer", "ConditionalOffer")
    if ConditionalOffer.objects.filter(slug=OFFER_SLUG).exists():
        return
    condition = apps.get_model("offer", "Condition").objects.create(proxy_class=CONDITION)
    benefit = apps.get_model("offer", "Benefit").objects.create(proxy_class=BENEFIT)
    ConditionalOffer.objects.create(
        name="Bundles bought together (shop_recs)", slug=OFFER_SLUG,
        description="The discount staff set on an approved shop_recs bundle, when the "
                    "basket holds all of its products.",
        offer_type="Site", exclusive=True, status="Open",
        condition=condition, benefit=benefit,
    )


def remove_offer(apps, schema_editor):
    ConditionalOffer = apps.get_model("offer", "ConditionalOffer")
    for offer in ConditionalOffer.objects.filter(slug=OFFER_SLUG):
        condition, benefit = offer.condition, offer.benefit
        offer.delete()
        condition.delete()
        benefit.delete()


class Migration(migrations.Migration):

    dependencies = [
        ("shop_recs_oscar", "0001_initial"),
        ("offer", "0013_range_excluded_categories"),
    ]

    operations = [migrations.RunPython(create_offer, remove_offer)]
