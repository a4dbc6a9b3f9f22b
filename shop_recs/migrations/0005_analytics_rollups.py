"""Daily analytics roll-ups (issue 18): per widget / run / bundle, and the shop's day.

Aggregates only, no visitor or order ids (see shop_recs.analytics.models).
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('shop_recs', '0004_admin_indexes'),
    ]

    operations = [
        migrations.CreateModel(
            name='ShopDayStat',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField(unique=True, verbose_name='day')),
                ('orders', models.PositiveBigIntegerField(default=0, verbose_name='orders')),
                ('lines', models.PositiveBigIntegerField(default=0, verbose_name='order lines')),
                ('revenue', models.DecimalField(decimal_places=2, default=0, max_digits=18, verbose_name='revenue')),
                ('attribution_window_days', models.PositiveSmallIntegerField(verbose_name='attribution window (days)')),
                ('computed_at', models.DateTimeField(verbose_name='computed')),
            ],
            options={
                'verbose_name': 'shop day',
                'verbose_name_plural': 'shop days',
                'ordering': ['day'],
            },
        ),
        migrations.CreateModel(
            name='WidgetDayStat',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField(verbose_name='day')),
                ('grain', models.CharField(choices=[('widget', 'widget'), ('run', 'training run'), ('bundle', 'bundle')], max_length=6, verbose_name='grain')),
                ('widget', models.CharField(blank=True, help_text='empty: all widgets together', max_length=40, verbose_name='widget')),
                ('run_ref', models.PositiveBigIntegerField(blank=True, null=True, verbose_name='training run')),
                ('bundle_ref', models.PositiveBigIntegerField(blank=True, null=True, verbose_name='bundle')),
                ('impressions', models.PositiveBigIntegerField(default=0, verbose_name='impressions')),
                ('clicks', models.PositiveBigIntegerField(default=0, verbose_name='clicks')),
                ('cart_adds', models.PositiveBigIntegerField(default=0, verbose_name='adds to cart')),
                ('orders', models.PositiveBigIntegerField(default=0, verbose_name='attributed orders')),
                ('lines', models.PositiveBigIntegerField(default=0, verbose_name='attributed lines')),
                ('units', models.PositiveBigIntegerField(default=0, verbose_name='attributed units')),
                ('revenue', models.DecimalField(decimal_places=2, default=0, max_digits=18, verbose_name='attributed revenue')),
                ('order_value', models.DecimalField(decimal_places=2, default=0, max_digits=18, verbose_name='value of those orders')),
            ],
            options={
                'verbose_name': 'widget analytics',
                'verbose_name_plural': 'widget analytics',
                'ordering': ['day', 'grain', 'widget'],
                'indexes': [models.Index(fields=['grain', 'widget', 'day'], name='shop_recs_wds_grain'), models.Index(fields=['day'], name='shop_recs_wds_day')],
            },
        ),
    ]
