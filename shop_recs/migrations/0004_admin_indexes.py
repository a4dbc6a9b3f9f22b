"""Indexes the admin changelists use on large tables (issues 13 and 16).

Interactions: newest first, the widget and source filters, and revenue per product
read from an index alone (the review queue). Bundles: best score first (also within a
status and per run), and the anchors that still have proposals (the review queue).
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("shop_recs", "0003_fallback_lists"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="bundle",
            index=models.Index(fields=["score", "id"], name="shop_recs_bundle_score"),
        ),
        migrations.AddIndex(
            model_name="bundle",
            index=models.Index(fields=["status", "score", "id"], name="shop_recs_bundle_st_score"),
        ),
        migrations.AddIndex(
            model_name="bundle",
            index=models.Index(fields=["run", "score", "id"], name="shop_recs_bundle_run_score"),
        ),
        migrations.AddIndex(
            model_name="bundle",
            index=models.Index(fields=["status", "anchor", "score"],
                               name="shop_recs_bundle_st_anchor"),
        ),
        migrations.AddIndex(
            model_name="interaction",
            index=models.Index(fields=["timestamp", "id"], name="shop_recs_ts_id"),
        ),
        migrations.AddIndex(
            model_name="interaction",
            index=models.Index(fields=["widget", "timestamp"], name="shop_recs_widget_ts"),
        ),
        migrations.AddIndex(
            model_name="interaction",
            index=models.Index(fields=["source", "timestamp"], name="shop_recs_source_ts"),
        ),
        migrations.AddIndex(
            model_name="interaction",
            index=models.Index(fields=["kind", "product", "quantity", "unit_price"],
                               name="shop_recs_purchase_value"),
        ),
    ]
