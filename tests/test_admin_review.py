"""Bundle review in the admin: list, permissions, audit log, editing, review screen."""

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.test import override_settings
from django.urls import reverse

from shop_recs import review
from shop_recs.models import Bundle, BundleItem, Product, TrainingRun
from shop_recs.signals import bundles_changed

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:shop_recs_bundle_changelist"


def make_bundle(anchor, items, *, status=Bundle.Status.PROPOSED, orders=10, lift=4.0, run=None,
                score=0.5, **kwargs):
    bundle = Bundle.objects.create(
        anchor=anchor, status=status, run=run, score=score,
        signature=review.signature(anchor.pk, [p.pk for p in items]),
        evidence={"orders_with_all": orders, "lift": lift, "model_score": score}, **kwargs)
    BundleItem.objects.bulk_create(BundleItem(bundle=bundle, product=p, position=i)
                                   for i, p in enumerate(items, start=1))
    return bundle


@pytest.fixture
def products():
    return [Product.objects.create(sku=f"P{i}", name=f"Product {i}", price=Decimal("10.00") + i,
                                   category="kitchen" if i % 2 else "garden",
                                   image_url=f"https://img.example/{i}.jpg")
            for i in range(12)]


@pytest.fixture
def run():
    return TrainingRun.objects.create(status=TrainingRun.Status.SUCCEEDED, pending=None)


def staff(username, *perms):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    codenames = ["view_bundle", "change_bundle", "add_bundle", "view_product", *perms]
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def reviewer(client):
    client.force_login(staff("reviewer", "review_bundle"))
    return client


@pytest.fixture
def clerk(client):
    """Staff who may view and edit bundles but not decide about them."""
    client.force_login(staff("clerk"))
    return client


def test_changelist_shows_products_totals_and_evidence(reviewer, products, run):
    make_bundle(products[0], products[1:3], run=run, orders=312, lift=8.0, discount_percent=10)
    response = reviewer.get(reverse(CHANGELIST))
    html = response.content.decode()
    assert response.status_code == 200
    for product in products[:3]:
        assert product.name in html and f"https://img.example/{product.pk - products[0].pk}.jpg"
    assert "$33.00" in html  # 10 + 11 + 12, written as the shop writes prices
    assert "$29.70" in html  # 10% off
    assert "bought together in 312 orders, 8× more often than chance" in html
    assert "Approve selected bundles" in html


def test_changelist_filters_search_and_sort(reviewer, products, run):
    a = make_bundle(products[0], products[1:2], orders=5)
    b = make_bundle(products[3], products[4:5], orders=50, status=Bundle.Status.APPROVED, run=run)
    url = reverse(CHANGELIST)
    assert reviewer.get(url, {"status__exact": "approved"}).context["cl"].result_list[0] == b
    assert list(reviewer.get(url, {"run__id__exact": run.pk}).context["cl"].result_list) == [b]
    garden = reviewer.get(url, {"category": "garden"}).context["cl"].result_list
    assert list(garden) == [a]  # products[0] is in the garden
    assert list(reviewer.get(url, {"q": "Product 4"}).context["cl"].result_list) == [b]
    assert list(reviewer.get(url, {"source__exact": "manual"}).context["cl"].result_list) == []
    ordering = reviewer.get(url, {"o": "-3"}).context["cl"].result_list  # orders with all, desc
    assert list(ordering) == [b, a]


@pytest.mark.parametrize("count", [2, 20])
def test_changelist_query_count_is_constant(reviewer, products, run, count,
                                            django_assert_num_queries):
    for i in range(count):
        make_bundle(products[i % 6], products[6:9], run=run)
    reviewer.get(reverse(CHANGELIST))  # warm the content-type and permission caches
    with django_assert_num_queries(11):  # anchors are prefetched (bundle_queryset)
        response = reviewer.get(reverse(CHANGELIST))
    assert len(response.context["cl"].result_list) == count


def test_bulk_approve_records_who_when_what(reviewer, products):
    bundles = [make_bundle(products[i], products[6:8]) for i in range(3)]
    response = reviewer.post(reverse(CHANGELIST), {
        "action": "approve", "_selected_action": [b.pk for b in bundles[:2]]})
    assert response.status_code == 302
    statuses = dict(Bundle.objects.values_list("pk", "status"))
    assert [statuses[b.pk] for b in bundles] == ["approved", "approved", "proposed"]
    approved = Bundle.objects.get(pk=bundles[0].pk)
    assert approved.reviewed_by.username == "reviewer" and approved.reviewed_at is not None
    entries = LogEntry.objects.filter(object_id__in=[str(b.pk) for b in bundles[:2]])
    assert entries.count() == 2
    assert {e.user.username for e in entries} == {"reviewer"}
    assert all("Approved (was proposed)" in e.get_change_message() for e in entries)


def test_decisions_announce_changed_anchors_on_commit(products, django_capture_on_commit_callbacks):
    user = staff("u", "review_bundle")
    bundle = make_bundle(products[0], products[1:3])
    sent = []

    def receiver(sender, anchor_ids, **kwargs):
        sent.append(anchor_ids)

    bundles_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            review.decide(Bundle.objects.filter(pk=bundle.pk), review.APPROVE, user)
        assert sent == [[products[0].pk]]
    finally:
        bundles_changed.disconnect(receiver)


def test_statuses_that_do_not_allow_a_decision_are_skipped(reviewer, products):
    proposed = make_bundle(products[0], products[1:2])
    approved = make_bundle(products[2], products[3:4], status=Bundle.Status.APPROVED)
    reviewer.post(reverse(CHANGELIST), {"action": "retire",
                                        "_selected_action": [proposed.pk, approved.pk]})
    assert Bundle.objects.get(pk=proposed.pk).status == "proposed"
    assert Bundle.objects.get(pk=approved.pk).status == "retired"
    reviewer.post(reverse(CHANGELIST), {"action": "reject", "_selected_action": [proposed.pk]})
    assert Bundle.objects.get(pk=proposed.pk).status == "rejected"


def test_staff_without_permission_see_no_actions_and_cannot_forge_them(clerk, products):
    bundle = make_bundle(products[0], products[1:3])
    html = clerk.get(reverse(CHANGELIST)).content.decode()
    assert "Approve selected bundles" not in html and 'name="action"' not in html
    for action in ("approve", "reject", "retire"):
        clerk.post(reverse(CHANGELIST), {"action": action, "_selected_action": [bundle.pk]})
    review_url = reverse("admin:shop_recs_bundle_review", args=[products[0].pk])
    assert clerk.post(review_url, {"bundle": bundle.pk, "decision": "approve"}).status_code == 403
    assert Bundle.objects.get(pk=bundle.pk).status == "proposed"
    assert not LogEntry.objects.exists()
    page = clerk.get(review_url)
    assert page.status_code == 200 and 'value="approve"' not in page.content.decode()


def test_approved_bundles_are_edited_only_by_reviewers(clerk, products):
    bundle = make_bundle(products[0], products[1:3], status=Bundle.Status.APPROVED)
    url = reverse("admin:shop_recs_bundle_change", args=[bundle.pk])
    response = clerk.post(url, edit_data(bundle, products[0], products[1:3], discount="5"))
    assert response.status_code in (302, 403)
    assert Bundle.objects.get(pk=bundle.pk).discount_percent == 0


def edit_data(bundle, anchor, items, discount="0", existing=()):
    data = {"anchor": anchor.pk, "discount_percent": discount,
            "items-TOTAL_FORMS": len(items), "items-INITIAL_FORMS": len(existing),
            "items-MIN_NUM_FORMS": 0, "items-MAX_NUM_FORMS": 5}
    for i, product in enumerate(items):
        data[f"items-{i}-product"] = product.pk
        data[f"items-{i}-position"] = i + 1
        data[f"items-{i}-bundle"] = bundle.pk if bundle else ""
        if i < len(existing):
            data[f"items-{i}-id"] = existing[i].pk
    return data


def test_editing_reorders_adds_removes_and_bounds_the_discount(reviewer, products):
    bundle = make_bundle(products[0], products[1:3])
    old = list(bundle.items.order_by("position"))
    url = reverse("admin:shop_recs_bundle_change", args=[bundle.pk])
    too_much = reviewer.post(url, edit_data(bundle, products[0], products[1:3], "95", old))
    assert too_much.status_code == 200 and "from 0 to 30 percent" in too_much.content.decode()
    # Remove products[1], add products[5] and put it before products[2].
    data = edit_data(bundle, products[0], [products[1], products[2], products[5]], "15", old)
    data["items-0-DELETE"] = "on"
    data["items-1-position"], data["items-2-position"] = 7, 3
    response = reviewer.post(url, data)
    assert response.status_code == 302, response.context["errors"]
    bundle.refresh_from_db()
    assert bundle.discount_percent == Decimal("15")
    assert [i.product for i in bundle.items.order_by("position")] == [products[5], products[2]]
    assert [i.position for i in bundle.items.order_by("position")] == [1, 2]
    assert bundle.signature == review.signature(products[0].pk, [products[5].pk, products[2].pk])
    assert LogEntry.objects.filter(object_id=str(bundle.pk)).exists()


@override_settings(SHOP_RECS={"MAX_BUNDLE_DISCOUNT": 50})
def test_discount_bound_follows_the_setting(reviewer, products):
    bundle = make_bundle(products[0], products[1:2])
    url = reverse("admin:shop_recs_bundle_change", args=[bundle.pk])
    old = list(bundle.items.all())
    assert reviewer.post(url, edit_data(bundle, products[0], products[1:2], "45", old)
                         ).status_code == 302


def test_items_must_differ_from_the_anchor_and_each_other(reviewer, products):
    url = reverse("admin:shop_recs_bundle_add")
    response = reviewer.post(url, edit_data(None, products[0], [products[0]]))
    assert "cannot also be an item" in response.content.decode()
    response = reviewer.post(url, edit_data(None, products[0], [products[1], products[1]]))
    assert response.status_code == 200 and not Bundle.objects.exists()


def test_manual_bundle_is_created_as_a_staff_proposal(reviewer, products):
    response = reviewer.post(reverse("admin:shop_recs_bundle_add"),
                             edit_data(None, products[0], [products[3], products[4]], "10"))
    assert response.status_code == 302
    bundle = Bundle.objects.get()
    assert bundle.source == "manual" and bundle.status == "proposed" and bundle.run is None
    assert [i.product for i in bundle.items.all()] == [products[3], products[4]]
    assert LogEntry.objects.get(object_id=str(bundle.pk)).is_addition()


def test_autocomplete_searches_products(reviewer, products):
    response = reviewer.get(reverse("admin:autocomplete"), {
        "app_label": "shop_recs", "model_name": "bundleitem", "field_name": "product",
        "term": "Product 1"})
    assert response.status_code == 200
    assert {r["text"] for r in response.json()["results"]} >= {"Product 1 (P1)",
                                                                 "Product 10 (P10)"}


def test_review_screen_walks_through_products_with_proposals(reviewer, products):
    first = [make_bundle(products[0], products[1:3], score=0.9),
             make_bundle(products[0], products[3:5], score=0.4)]
    second = make_bundle(products[5], products[6:8])
    make_bundle(products[9], products[10:11], status=Bundle.Status.APPROVED)
    start = reviewer.get(reverse("admin:shop_recs_bundle_review_next"))
    assert start.url == reverse("admin:shop_recs_bundle_review", args=[products[0].pk])
    page = reviewer.get(start.url)
    cards = page.context["proposed"]
    assert [c.bundle for c in cards] == first and page.context["remaining"] == 2
    assert page.context["next_url"].endswith(f"/review/{products[5].pk}/")
    html = page.content.decode()
    assert 'data-shortcut="approve"' in html and "review.js" in html
    step = reviewer.post(start.url, {"bundle": first[0].pk, "decision": "approve"})
    assert step.url == start.url  # the second proposal is still open
    step = reviewer.post(start.url, {"bundle": first[1].pk, "decision": "reject"})
    assert step.url.endswith(f"/review/{products[5].pk}/")
    assert [Bundle.objects.get(pk=b.pk).status for b in first] == ["approved", "rejected"]
    step = reviewer.post(step.url, {"bundle": second.pk, "decision": "approve"})
    assert step.url == reverse(CHANGELIST)


def test_approve_one_and_reject_the_others(reviewer, products):
    bundles = [make_bundle(products[0], products[i:i + 2]) for i in (1, 3, 5)]
    url = reverse("admin:shop_recs_bundle_review", args=[products[0].pk])
    reviewer.post(url, {"bundle": bundles[1].pk, "decision": "approve_only"})
    assert [Bundle.objects.get(pk=b.pk).status for b in bundles] == [
        "rejected", "approved", "rejected"]
    assert LogEntry.objects.count() == 3


def test_review_screen_refuses_foreign_bundles_and_bad_keys(reviewer, products):
    other = make_bundle(products[5], products[6:7])
    url = reverse("admin:shop_recs_bundle_review", args=[products[0].pk])
    reviewer.post(url, {"bundle": other.pk, "decision": "approve"})
    reviewer.post(url, {"bundle": "x'; --", "decision": "approve"})
    assert Bundle.objects.get(pk=other.pk).status == "proposed"
    bad = reverse("admin:shop_recs_bundle_review", args=["not-a-key"])
    assert reviewer.get(bad).status_code == 404


@pytest.mark.parametrize("count", [1, 6])
def test_review_screen_query_count_is_constant(reviewer, products, count,
                                               django_assert_num_queries):
    for i in range(count):
        make_bundle(products[0], [products[1 + i], products[7 + i % 5]])
    make_bundle(products[11], products[1:2], status=Bundle.Status.REJECTED)
    url = reverse("admin:shop_recs_bundle_review", args=[products[0].pk])
    reviewer.get(url)
    with django_assert_num_queries(11):  # 10 + the product's published list (issue 17)
        response = reviewer.get(url)
    assert len(response.context["proposed"]) == count


def test_changelist_links_to_the_review_screen(reviewer, products):
    make_bundle(products[0], products[1:2])
    make_bundle(products[2], products[3:4])
    html = reviewer.get(reverse(CHANGELIST)).content.decode()
    assert reverse("admin:shop_recs_bundle_review_next") in html
    assert "Review proposals (2 products)" in html


def test_host_product_admin_without_search_falls_back_to_raw_ids(rf):
    from django.contrib.admin import AdminSite  # noqa: PLC0415
    from django.contrib.admin.widgets import ForeignKeyRawIdWidget  # noqa: PLC0415

    from shop_recs.admin.bundles import BundleAdmin  # noqa: PLC0415

    site = AdminSite()
    bundle_admin = BundleAdmin(Bundle, site)
    assert bundle_admin.get_autocomplete_fields(rf.get("/")) == ()
    field = bundle_admin.formfield_for_foreignkey(Bundle._meta.get_field("anchor"), rf.get("/"))
    assert isinstance(field.widget, ForeignKeyRawIdWidget)


def test_product_names_and_evidence_are_escaped(reviewer, products):
    products[1].name = "<script>alert(1)</script>"
    products[1].save()
    make_bundle(products[0], products[1:3])
    Bundle.objects.update(evidence={"orders_with_all": 3, "explanation": "<img src=x>"})
    for url in (reverse(CHANGELIST),
                reverse("admin:shop_recs_bundle_review", args=[products[0].pk])):
        html = reviewer.get(url).content.decode()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
        assert "&lt;img src=x&gt;" in html


def test_changelist_is_ordered_as_its_marked_header_says(reviewer, products, run):
    low = make_bundle(products[0], products[1:2], score=0.25)
    high = make_bundle(products[1], products[2:3], score=66.20539093017578)
    mid = make_bundle(products[2], products[3:4], score=3.5)
    response = reviewer.get(reverse(CHANGELIST))
    assert list(response.context["cl"].result_list) == [high, mid, low]
    html = response.content.decode()
    # The score header is the one marked sorted (descending), and the scores are rounded.
    assert 'class="sortable column-score_display sorted descending"' in html
    assert "66.21" in html and "66.205" not in html
    ascending = reviewer.get(reverse(CHANGELIST), {"o": "5"}).context["cl"].result_list
    assert list(ascending) == [low, mid, high]


def test_products_without_images_get_initials_tiles(reviewer, products):
    Product.objects.filter(pk=products[1].pk).update(image_url="",
                                                     name="WHITE HANGING HEART T-LIGHT HOLDER")
    make_bundle(products[0], products[1:2])
    html = reviewer.get(reverse(CHANGELIST)).content.decode()
    assert "shop-recs-thumb--none" in html and 'aria-hidden="true">WH</span>' in html
