"""Proxy models of the bundle condition and benefit (no tables)."""

from django.db import migrations


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('offer', '0013_range_excluded_categories'),
    ]

    operations = [
        migrations.CreateModel(
            name='BundleBenefit',
            fields=[
            ],
            options={
                'verbose_name': 'shop_recs bundle discount',
                'proxy': True,
                'indexes': [],
                'constraints': [],
            },
            bases=('offer.benefit',),
        ),
        migrations.CreateModel(
            name='BundleCondition',
            fields=[
            ],
            options={
                'verbose_name': 'shop_recs bundle condition',
                'proxy': True,
                'indexes': [],
                'constraints': [],
            },
            bases=('offer.condition',),
        ),
    ]
