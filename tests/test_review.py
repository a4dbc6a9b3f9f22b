"""The review queue: products with proposals, best sellers first (``review.review_queue``)."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from shop_recs import review
from shop_recs.ingest import record_order
from shop_recs.models import Bundle, BundleItem, Product, TrainingRun

pytestmark = pytest.mark.django_db


def propose(anchor, items, *, orders=5, score=0.5, status=Bundle.Status.PROPOSED):
    bundle = Bundle.objects.create(
        anchor=anchor, status=status, score=score,
        signature=review.signature(anchor.pk, [p.pk for p in items]),
        evidence={"orders_with_all": orders, "lift": 2.0})
    BundleItem.objects.bulk_create(BundleItem(bundle=bundle, product=p, position=i)
                                   for i, p in enumerate(items, start=1))
    return bundle


def sell(product, n_orders, price, quantity=1):
    for i in range(n_orders):
        record_order(f"{product.sku}-{i}", [{"product": product, "quantity": quantity,
                                              "unit_price": Decimal(price)}])


@pytest.fixture
def shop():
    """A bar stool that rarely sells, a T-light holder that sells a lot, a mug in between,
    and a cheap card with many orders but little revenue."""
    names = ["RED RETRO BAR STOOL", "WHITE HANGING HEART T-LIGHT HOLDER", "SPOTTY MUG",
             "GREETING CARD", "FILLER A", "FILLER B"]
    products = {n: Product.objects.create(sku=f"Q{i}", name=n, price=Decimal("2.00"),
                                          currency="GBP") for i, n in enumerate(names)}
    sell(products["RED RETRO BAR STOOL"], 1, "95.00")
    sell(products["WHITE HANGING HEART T-LIGHT HOLDER"], 30, "2.95", quantity=6)
    sell(products["SPOTTY MUG"], 12, "2.50", quantity=2)
    sell(products["GREETING CARD"], 40, "0.42")
    return products


def test_queue_puts_the_best_sellers_first(shop):
    filler = [shop["FILLER A"], shop["FILLER B"]]
    stool = propose(shop["RED RETRO BAR STOOL"], filler, orders=90, score=0.99)
    heart = propose(shop["WHITE HANGING HEART T-LIGHT HOLDER"], filler, orders=3)
    mug = propose(shop["SPOTTY MUG"], filler)
    card = propose(shop["GREETING CARD"], filler)
    propose(shop["FILLER A"], [shop["FILLER B"]], status=Bundle.Status.APPROVED)
    queue = review.review_queue()
    # Revenue: heart 531.00 > stool 95.00 > mug 60.00 > card 16.80; the approved one is done.
    assert queue.anchors == [heart.anchor_id, stool.anchor_id, mug.anchor_id, card.anchor_id]
    assert queue.of(heart.anchor_id).revenue == Decimal("531.00")
    assert queue.of(heart.anchor_id).orders == 30
    assert queue.after(heart.anchor_id) == stool.anchor_id
    assert queue.after(card.anchor_id) == heart.anchor_id  # wraps round
    assert queue.after(shop["FILLER A"].pk) == heart.anchor_id  # not queued: start over


def test_high_impact_products_are_the_best_sellers_making_80_percent_of_revenue(shop):
    filler = [shop["FILLER A"], shop["FILLER B"]]
    for name in ("WHITE HANGING HEART T-LIGHT HOLDER", "SPOTTY MUG", "GREETING CARD"):
        propose(shop[name], filler)
    queue = review.review_queue()
    # Total 702.80; the heart alone makes 75.6 %, heart + stool 89.1 %: those two.
    high = {pk for pk in queue.impact if queue.of(pk).high}
    assert high == {shop["WHITE HANGING HEART T-LIGHT HOLDER"].pk, shop["RED RETRO BAR STOOL"].pk}
    assert queue.high_impact_left == 1  # the stool has no proposal
    assert len(queue) == 3


def test_without_sales_the_evidence_decides(shop):
    a, b = shop["FILLER A"], shop["FILLER B"]
    weak = propose(a, [shop["SPOTTY MUG"]], orders=3, score=0.9)
    strong = propose(b, [shop["SPOTTY MUG"]], orders=40, score=0.1)
    assert review.review_queue().anchors == [strong.anchor_id, weak.anchor_id]


def test_impact_is_cached_until_a_new_run(shop, django_assert_num_queries):
    propose(shop["SPOTTY MUG"], [shop["FILLER A"]])
    review.review_queue()
    with django_assert_num_queries(2):  # latest run, proposals; no aggregate over purchases
        review.review_queue()
    TrainingRun.objects.create(status=TrainingRun.Status.SUCCEEDED, pending=None)
    sell(shop["FILLER B"], 500, "9.99")
    propose(shop["FILLER B"], [shop["FILLER A"]])
    assert review.review_queue().anchors[0] == shop["FILLER B"].pk


def test_review_screen_opens_on_the_best_seller_and_counts_high_impact_left(client, shop):
    user = User.objects.create_user("rev", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(
        codename__in=["view_bundle", "change_bundle", "review_bundle"]))
    client.force_login(user)
    filler = [shop["FILLER A"], shop["FILLER B"]]
    propose(shop["RED RETRO BAR STOOL"], filler, orders=90)
    heart = propose(shop["WHITE HANGING HEART T-LIGHT HOLDER"], filler)
    start = client.get(reverse("admin:shop_recs_bundle_review_next"))
    assert start.url == reverse("admin:shop_recs_bundle_review", args=[heart.anchor_id])
    html = client.get(start.url).content.decode()
    assert "2 high-impact products left" in html and "2 products with proposals" in html
    assert "Sold £531.00 in 30 orders" in html and "high impact</span>" in html
    step = client.post(start.url, {"bundle": heart.pk, "decision": "approve"})
    assert step.url == reverse("admin:shop_recs_bundle_review",
                               args=[shop["RED RETRO BAR STOOL"].pk])
    assert "1 high-impact product left" in client.get(step.url).content.decode()
