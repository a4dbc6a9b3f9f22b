"""A small shop with a serving run, FBT rows and an approved bundle (serving tests)."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from shop_recs.models import Bundle, BundleItem, Interaction, Product, Recommendation, TrainingRun


def make_products(n, prefix="P", category="kitchen", **fields):
    return Product.objects.bulk_create([
        Product(sku=f"{prefix}{i:03d}", name=f"{prefix} product {i}", price=Decimal("2.50") + i,
                currency="GBP", category=category, **fields) for i in range(n)])


def serving_shop(n=12, fbt=True, bundle=True):
    """Products p[0..n); a serving run lists p1..p8 for p0; bundle p0 + p9, p10 (10% off)."""
    products = make_products(n)
    run = TrainingRun.objects.create(status=TrainingRun.Status.SUCCEEDED, pending=None,
                                     is_active=True, shipped_model="bpr")
    if fbt:
        Recommendation.objects.bulk_create([
            Recommendation(run=run, product=products[0], recommended=products[i], rank=i,
                           score=1.0 / i, source="bpr",
                           evidence={"orders_together": 10 - i, "lift": 2.0, "confidence": 0.1})
            for i in range(1, 9)])
    found = None
    if bundle:
        found = Bundle.objects.create(anchor=products[0], status=Bundle.Status.APPROVED,
                                      signature="sig", score=5.0, discount_percent=Decimal("10"),
                                      run=run, evidence={"orders_with_all": 7, "lift": 3.0})
        BundleItem.objects.bulk_create([BundleItem(bundle=found, product=products[9], position=1),
                                        BundleItem(bundle=found, product=products[10],
                                                   position=2)])
    return products, run, found


def purchases(orders, when=None):
    """Purchases: ``orders`` maps an order id to its products."""
    when = when or timezone.now() - timedelta(days=1)
    Interaction.objects.bulk_create([
        Interaction(product=p, kind=Interaction.Kind.PURCHASE, order_id=order, timestamp=when,
                    visitor_id=f"v-{order}") for order, items in orders.items() for p in items])
