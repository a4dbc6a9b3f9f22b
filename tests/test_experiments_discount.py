"""Bundle-discount arms: the widget shows the arm's price, the demo cart charges it (decided
by the server from the assignment), and shipping the arm makes it the bundles' discount."""

import re
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from shop_demo import views
from shop_demo.cart import bundle_saving
from shop_recs.analytics import experiments
from shop_recs.models import Arm, Bundle, Experiment, Interaction
from shop_recs.ranking import Visitor
from tests.serving_data import serving_shop

pytestmark = pytest.mark.django_db

ADD_URL = reverse("shop_demo:cart_add")
CHECKOUT_URL = reverse("shop_demo:checkout")


def discount_experiment(arms, placement=Experiment.Placement.FBT, start=True):
    """``arms``: (name, kind, discount) in order; the first is the control."""
    exp = Experiment.objects.create(name="bundle price", placement=placement)
    for position, (name, kind, discount) in enumerate(arms):
        Arm.objects.create(experiment=exp, name=name, kind=kind, position=position,
                           discount_percent=discount)
    return experiments.start(exp) if start else exp


def shopper_in(exp, discount):
    """A new client (session) whose arm gives ``discount`` (a string such as "5.0")."""
    for _ in range(80):
        client = Client()
        client.get("/")  # a session
        session = client.session
        session.save()
        client.cookies["sessionid"] = session.session_key
        visitor = Visitor(None, experiments.pseudonymise("session", session.session_key))
        if experiments.discount_override(visitor) == Decimal(discount):
            return client
    raise AssertionError(f"no visitor landed in the {discount} % arm")


def buy_the_bundle(client, products, bundle, extra=None):
    """Show the product page, add the offered bundle, check out: ``(html, order total,
    revenue recorded for the order)``."""
    html = client.get(reverse("shop_demo:product", args=[products[0].pk])).content.decode()
    client.post(ADD_URL, {"product": [p.pk for p in (products[0], products[9], products[10])],
                          "widget": "fbt", "bundle": bundle.pk, **(extra or {})})
    client.post(CHECKOUT_URL, {"name": "", "email": ""})
    order = client.session[views.LAST_ORDER_KEY]
    lines = Interaction.objects.filter(order_id=order["order_id"])
    revenue = sum(line.quantity * line.unit_price for line in lines)
    return html, Decimal(order["total"]), revenue


def test_two_visitors_in_different_arms_see_and_pay_different_prices():
    p, _, bundle = serving_shop()  # p0 + p9 + p10 = 2.50 + 11.50 + 12.50 = 26.50, 10 % stored
    exp = discount_experiment([("5 %", Arm.Kind.BUNDLE_DISCOUNT, Decimal(5)),
                               ("20 %", Arm.Kind.BUNDLE_DISCOUNT, Decimal(20))])
    five, twenty = shopper_in(exp, "5.0"), shopper_in(exp, "20.0")
    html, total, revenue = buy_the_bundle(five, p, bundle)
    assert "save 5%" in html and "£25.18" in html  # 26.50 x 0.95 = 25.175
    assert total == Decimal("25.18") and revenue == Decimal("25.18")
    # Posting a discount of one's own, or another arm's exposure token, changes nothing.
    other = next(a for a in experiments.load_plans()["fbt"].arms if a.discount == "5.0")
    html, total, revenue = buy_the_bundle(twenty, p, bundle, {
        "discount_percent": "90", "discount": "90", "percent": "90",
        "exposure": experiments.exposure_token(other)})
    assert "save 20%" in html and "£21.20" in html
    assert total == Decimal("21.20") and revenue == Decimal("21.20")
    # Outside the experiment (no session yet at the cart's first read), the stored 10 %.
    assert experiments.bundle_discount(Visitor(), bundle) == Decimal(10)
    experiments.stop(exp)
    assert experiments.bundle_discount(Visitor(None, "anyone"), bundle) == Decimal(10)


def test_the_api_shows_the_arm_discount():
    p, _, bundle = serving_shop()
    exp = discount_experiment([("none", Arm.Kind.BUNDLE_DISCOUNT, Decimal(0)),
                               ("15 %", Arm.Kind.BUNDLE_DISCOUNT, Decimal(15))],
                              placement=Experiment.Placement.API)
    seen, listed = set(), set()
    for client in (shopper_in(exp, "0.0"), shopper_in(exp, "15.0")):
        body = client.get(f"/api/shop-recs/v1/products/{p[0].pk}/frequently-bought-together/")
        seen.add(body.json()["discount_percent"])
        bundles = client.get(f"/api/shop-recs/v1/products/{p[0].pk}/bundles/").json()
        listed.add(bundles["bundles"][0]["discount_percent"])
    assert seen == listed == {"0.0", "15.0"}


def test_a_zero_discount_arm_pays_full_price_and_the_control_the_stored_discount():
    p, _, bundle = serving_shop()
    exp = discount_experiment([("stored", Arm.Kind.ACTIVE_RUN, None),
                               ("no discount", Arm.Kind.BUNDLE_DISCOUNT, Decimal(0))])
    _, total, _ = buy_the_bundle(shopper_in(exp, "0.0"), p, bundle)
    assert total == Decimal("26.50")
    for _ in range(80):
        client = Client()
        html, total, _ = buy_the_bundle(client, p, bundle)
        visitor = Visitor(None, experiments.pseudonymise("session", client.session.session_key))
        if experiments.discount_override(visitor) is None:
            assert "save 10%" in html and total == Decimal("23.85")  # the stored 10 %
            break
    else:
        raise AssertionError("no visitor landed in the control")


def test_prices_never_go_below_zero():
    assert experiments.clamp_percent(Decimal("150")) == 100
    assert experiments.clamp_percent("-5") == 0
    assert experiments.clamp_percent("NaN") == 0 and experiments.clamp_percent(None) == 0
    assert bundle_saving([Decimal("3.00"), Decimal("4.00")], Decimal("250")) == Decimal("7.00")
    assert bundle_saving([Decimal("3.00")], Decimal("-20")) == 0


def test_discount_arms_need_a_discount_and_one_discount_experiment_at_a_time():
    serving_shop()
    broken = discount_experiment([("a", Arm.Kind.ACTIVE_RUN, None),
                                  ("b", Arm.Kind.BUNDLE_DISCOUNT, None)], start=False)
    with pytest.raises(experiments.ExperimentError, match="needs a bundle discount"):
        experiments.start(broken)
    Arm.objects.filter(experiment=broken, kind=Arm.Kind.BUNDLE_DISCOUNT).update(
        discount_percent=Decimal(95))  # over MAX_BUNDLE_DISCOUNT (30)
    with pytest.raises(experiments.ExperimentError, match="from 0 to 30"):
        experiments.start(broken)
    discount_experiment([("a", Arm.Kind.BUNDLE_DISCOUNT, Decimal(5)),
                         ("b", Arm.Kind.BUNDLE_DISCOUNT, Decimal(10))])
    second = discount_experiment([("a", Arm.Kind.ACTIVE_RUN, None),
                                  ("b", Arm.Kind.BUNDLE_DISCOUNT, Decimal(10))],
                                 placement=Experiment.Placement.API, start=False)
    with pytest.raises(experiments.ExperimentError, match="one price per visitor"):
        experiments.start(second)


def test_shipping_a_discount_arm_makes_it_the_bundles_discount_and_logs_it(client):
    p, _, bundle = serving_shop()
    proposed = Bundle.objects.create(anchor=p[1], status=Bundle.Status.PROPOSED, signature="p",
                                     discount_percent=Decimal(3))
    exp = discount_experiment([("5 %", Arm.Kind.BUNDLE_DISCOUNT, Decimal(5)),
                               ("20 %", Arm.Kind.BUNDLE_DISCOUNT, Decimal(20))])
    twenty = exp.arms.get(name="20 %")
    client.force_login(get_user_model().objects.create_superuser("boss", "b@example.com", "pw"))
    client.post(reverse("admin:shop_recs_experiment_ship", args=[exp.pk, twenty.pk]))
    bundle.refresh_from_db()
    proposed.refresh_from_db()
    assert bundle.discount_percent == Decimal(20)
    assert proposed.discount_percent == Decimal(3)  # not served (REQUIRE_APPROVAL)
    assert LogEntry.objects.filter(object_id=str(bundle.pk),
                                   change_message__contains="Discount set to 20").exists()
    assert LogEntry.objects.filter(object_id=str(exp.pk),
                                   change_message__contains="set on 1 served bundles").exists()
    # Everyone now sees and pays the shipped discount, from the bundle itself.
    shopper = Client()
    html, total, _ = buy_the_bundle(shopper, p, bundle)
    assert "save 20%" in html and total == Decimal("21.20")
    assert re.search(r"data-exposure", html) is None
