"""Lists for new products (issue 17 item 3): published by every run, and by a per-product task
for products created after it, scored from the product's content; queued once per commit."""

from contextlib import contextmanager

import pytest
from django.db import transaction
from django.test import TestCase

from shop_recs import newproducts, pipeline, ranking, tasks
from shop_recs.models import Interaction, Product, Recommendation, TrainingRun
from shop_recs.runs import request_training
from tests.factories import FAST, T0, artifacts, planted_shop  # noqa: F401 (artifacts: a fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifacts")]


@pytest.fixture
def sent(monkeypatch):
    """The tasks queued by name (nothing reaches a broker)."""
    from celery import current_app

    calls = []
    monkeypatch.setattr(current_app, "send_task",
                        lambda name, args=None, **options: calls.append((name, options)))
    newproducts.task_started()  # no flag left by another test
    return calls


@contextmanager
def commit():
    """Run the on-commit callbacks registered inside, as a real commit would, and forget
    them as Django does after a commit (the test's transaction never commits)."""
    connection = transaction.get_connection()
    start = len(connection.run_on_commit)
    with TestCase.captureOnCommitCallbacks(execute=True) as callbacks:
        yield callbacks
    del connection.run_on_commit[start:]


@pytest.fixture
def ships(monkeypatch):
    """ships(choice): the gate ships ``choice`` whatever validation says."""
    from shop_recs.ml import protocol

    def force(choice):
        real = protocol.decide

        def decide(*args, **kwargs):
            return {**real(*args, **kwargs), "choice": choice}

        monkeypatch.setattr(protocol, "decide", decide)
    return force


def train():
    run = request_training(trigger="test", config=FAST, broker_check=False, enqueue=False)
    assert pipeline.run_training(run.pk) == TrainingRun.Status.SUCCEEDED, run.error
    run.refresh_from_db()
    return run


def first_of(run, product):
    return Recommendation.objects.filter(run=run, product=product).order_by("rank").first()


def test_runs_and_the_task_publish_content_lists_for_products_without_orders(sent, ships):
    ships("bundle_model")  # the model's content path (the planted shop's gate ships EASE)
    products = planted_shop()  # P00 "Teapot 0" is always bought with P01 "Cosy 1"
    with commit():
        unsold = Product.objects.create(sku="N1", name="Green teapot", price="3.00",
                                        category="even")
    assert len(sent) == 1
    assert tasks.publish_new_products.apply().get()["run"] is None  # no run serves yet
    # sold once, then withdrawn: in the model's catalogue, but no list (not active)
    [withdrawn] = Product.objects.bulk_create([Product(  # bulk: no post_save, no task
        sku="N9", name="Teapot stand", price="3.00", category="even", is_active=False)])
    Interaction.objects.create(product=withdrawn, kind=Interaction.Kind.PURCHASE,
                               order_id="o3", visitor_id="c3", timestamp=T0,
                               source=Interaction.Source.IMPORT)
    with commit():
        run = train()
    # the run: the unsold teapot gets a content list led by the teapot's planted complement
    first = first_of(run, unsold)
    assert first is not None and first.source == newproducts.SOURCE
    assert first.recommended == products[1]
    assert first.evidence["similar_to"] == str(products[0].pk) and first.evidence["orders"] == 0
    assert first.evidence["basis"] == "model"
    assert newproducts.explanation(first.evidence) == (
        "Chosen from the product's name and category; it has no orders yet")
    # warm products keep their lists from orders; content rows never point at unsold products
    assert first_of(run, products[0]).source == run.gate["chosen"]
    assert not Recommendation.objects.filter(run=run, recommended=unsold).exists()
    assert not Recommendation.objects.filter(run=run, product=withdrawn).exists()
    assert run.counts["content_products"] == 1 and "content" in run.timings
    # the run, once serving, queued a sweep for products created while it trained: none
    assert len(sent) == 2
    assert tasks.publish_new_products.apply().get()["products"] == 0

    # a product created after the run: one task queued on commit, on the training queue
    before = ranking.frequently_bought_together(products[0])  # fills the serving cache
    with commit():
        late = Product.objects.create(sku="N2", name="Teapot, white ceramic", price="5.00",
                                      category="even")
    assert [name for name, _ in sent] == [newproducts.TASK_NAME] * 3
    assert sent[2][1]["queue"] == "shop_recs.gpu"
    assert not ranking.frequently_bought_together(late).items or all(
        i.method != newproducts.SOURCE for i in ranking.frequently_bought_together(late).items)
    # the task, through Celery's own apply (as the worker runs it)
    with commit():
        summary = tasks.publish_new_products.apply().get()
    assert summary["run"] == run.pk and summary["products"] == 1 and summary["rows"] > 0
    assert summary["basis"] == "model"
    first = first_of(run, late)
    assert first.source == newproducts.SOURCE and first.recommended == products[1]
    # served at once (the task announced the anchor: the cached candidates were dropped)
    served = ranking.frequently_bought_together(late)
    assert served.items[0].product == products[1] and served.items[0].method == "content"
    assert ranking.frequently_bought_together(products[0]).items == before.items
    # running it again for that product replaces its rows (no duplicates, same list)
    again = tasks.publish_new_products.apply(args=([late.pk],)).get()
    assert again["products"] == 1
    assert Recommendation.objects.filter(run=run, product=late, rank=1).count() == 1
    # and a product with a list learned from orders is never overwritten by content
    assert tasks.publish_new_products.apply(args=([products[0].pk],)).get()["products"] == 0
    assert first_of(run, products[0]).source == run.gate["chosen"]


def test_a_run_that_shipped_a_baseline_borrows_the_similar_products_stored_list(
        sent, ships):
    ships("ease")
    products = planted_shop()
    unsold = Product.objects.create(sku="N0", name="Teapot green", price="3.00",
                                    category="even")
    run = train()
    assert run.gate["chosen"] == "ease"
    # the run: the borrowed-list baseline (the teapot's list, then category bestsellers)
    first = first_of(run, unsold)
    assert first.evidence["basis"] == "borrowed" and first.recommended == products[1]
    late = Product.objects.create(sku="N3", name="Teapot blue", price="4.00", category="even")
    summary = tasks.publish_new_products.apply(args=([late.pk],)).get()
    assert summary["basis"] == "borrowed" and summary["products"] == 1
    rows = list(Recommendation.objects.filter(run=run, product=late).order_by("rank"))
    stored = list(Recommendation.objects.filter(run=run, product=products[0])
                  .exclude(recommended=late).order_by("rank")
                  .values_list("recommended", flat=True))
    # the teapot's own list, in its order, then its category's bestsellers
    assert [r.recommended_id for r in rows][:len(stored)] == stored[:len(rows)]
    assert rows and "from" not in rows[0].evidence  # borrowed, not a category bestseller
    assert all(r.evidence["from"] == "category" for r in rows[len(stored):])
    assert rows[0].evidence["similar_to"] == str(products[0].pk)


def test_creating_products_in_bulk_queues_one_task(sent):
    with commit() as callbacks:
        with transaction.atomic():
            for i in range(40):
                Product.objects.create(sku=f"B{i}", name=f"Import {i}", price="1.00")
    assert len(sent) == 1 and sum(cb is newproducts._send for cb in callbacks) == 1
    # separate commits while that task waits queue nothing more (a cache flag)
    for i in range(5):
        with commit():
            Product.objects.create(sku=f"C{i}", name=f"Later {i}", price="1.00")
    assert len(sent) == 1
    newproducts.task_started()  # the task began: the next creation queues another
    with commit():
        Product.objects.create(sku="D0", name="After", price="1.00")
    assert len(sent) == 2
    # saving an existing product queues nothing
    with commit():
        Product.objects.filter(sku="D0").first().save()
    assert len(sent) == 2


def test_the_setting_turns_the_per_product_lists_off(sent, settings):
    settings.SHOP_RECS = {**settings.SHOP_RECS, "NEW_PRODUCT_LISTS": False}
    with commit():
        Product.objects.create(sku="X0", name="Off", price="1.00")
    assert sent == []
    assert tasks.publish_new_products.apply().get() is None


def test_the_task_without_a_serving_run_does_nothing(sent):
    Product.objects.create(sku="Y0", name="Alone", price="1.00")
    assert tasks.publish_new_products.apply().get() == {"run": None, "products": 0, "rows": 0,
                                                        "basis": None}


def test_the_lists_review_screen_filters_lists_by_source(client, django_user_model):
    from django.contrib.auth.models import Permission
    from django.urls import reverse

    run = TrainingRun.objects.create(status=TrainingRun.Status.SUCCEEDED, pending=None,
                                     is_active=True)
    shop = [Product.objects.create(sku=f"R{i}", name=f"Lamp <b>{i}</b>", price="2.00")
            for i in range(5)]
    content = newproducts.evidence("model", shop[0].pk, 0.8)
    Recommendation.objects.bulk_create([
        Recommendation(run=run, product=shop[0], recommended=shop[1], rank=1, score=1.0,
                       source="ease", evidence={"orders_together": 4}),
        Recommendation(run=run, product=shop[4], recommended=shop[1], rank=1, score=1.0,
                       source=newproducts.SOURCE, evidence=content),
        Recommendation(run=run, product=shop[4], recommended=shop[2], rank=2, score=0.5,
                       source=newproducts.SOURCE, evidence=content)])
    user = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_bundle"]))
    client.force_login(user)
    url = reverse("admin:shop_recs_bundle_lists")

    def anchors(source):
        page = client.get(url, {"source": source} if source is not None else {})
        assert page.status_code == 200
        html = page.content.decode()
        assert "<b>" not in html  # product names are escaped
        return [p.pk for p in shop if f'data-anchor-id="{p.pk}"' in html], html

    assert anchors(None)[0] == [shop[0].pk, shop[4].pk]
    found, html = anchors("content")
    assert found == [shop[4].pk] and "from product content" in html
    assert "Chosen from the product&#x27;s name and category; it has no orders yet" in html
    assert anchors("orders")[0] == [shop[0].pk]
    assert client.get(url, {"source": "bogus"}).status_code == 302  # with a message
    # the product's review page shows its list and where it comes from
    page = client.get(reverse("admin:shop_recs_bundle_review", args=[shop[4].pk]))
    assert page.status_code == 200 and 'data-source="content"' in page.content.decode()
    # staff without the view permission see nothing
    user.user_permissions.clear()
    client.force_login(django_user_model.objects.get(pk=user.pk))
    assert client.get(url).status_code == 403


def test_the_widget_and_api_show_a_content_lists_label(client):
    run = TrainingRun.objects.create(status=TrainingRun.Status.SUCCEEDED, pending=None,
                                     is_active=True)
    shop = [Product.objects.create(sku=f"W{i}", name=f"Vase {i}", price="2.00")
            for i in range(3)]
    Recommendation.objects.bulk_create([
        Recommendation(run=run, product=shop[0], recommended=shop[i], rank=i, score=1.0 / i,
                       source=newproducts.SOURCE,
                       evidence=newproducts.evidence("borrowed", shop[2].pk, 0.5))
        for i in (1, 2)])
    ranking.invalidate()
    body = client.get(f"/api/shop-recs/v1/products/{shop[0].pk}/frequently-bought-together/").json()
    assert [i["method"] for i in body["items"][:2]] == ["content", "content"]
    assert body["items"][0]["evidence"]["basis"] == "borrowed"
    from django.template import Context, Template

    html = Template("{% load shop_recs %}{% frequently_bought_together p %}").render(
        Context({"p": shop[0]}))
    assert 'data-method="content"' in html and "it has no orders yet" in html


def test_the_task_embeds_new_products_text_with_the_runs_encoder(sent, ships, settings,
                                                                 tmp_path, monkeypatch, caplog):
    """TEXT_ENCODER: a product created after the run is embedded by the run's encoder through
    the run's cache, and its vector reaches the model; an encoder that cannot load leaves the
    lists published from name words, category and price, and the task logs why."""
    import numpy as np

    from shop_recs.ml import newproducts as content
    from shop_recs.ml.text import product_text, text_keys
    from tests.ml.tiny_encoder import build_tiny_encoder

    folder = build_tiny_encoder(tmp_path / "encoder")
    settings.SHOP_RECS = {**settings.SHOP_RECS, "TEXT_ENCODER": str(folder)}
    ships("bundle_model")
    products = planted_shop()
    run = train()
    assert run.config["text_encoder"]["dim"] == 32
    seen = []
    real_extend = content.extend
    monkeypatch.setattr(content, "extend", lambda scorer, attrs: (
        seen.append(attrs.text_vectors), real_extend(scorer, attrs))[1])
    late = Product.objects.create(sku="N5", name="Teapot, green", price="5.00",
                                  category="even", description="green ceramic teapot")
    summary = tasks.publish_new_products.apply(args=([late.pk],)).get()
    assert summary["products"] == 1 and summary["basis"] == "model"
    assert summary["text_encoder"] == {"model": str(folder), "products": 1}
    # the run's cache (beside its checkpoint) now holds the product's name and description
    (cache,) = (tmp_path / "artifacts" / "text-cache").glob("text-*.npz")
    with np.load(cache) as stored:
        vectors = dict(zip(stored["keys"].tolist(), stored["vectors"]))
    key = text_keys([product_text("Teapot, green", "green ceramic teapot")], str(folder))[0]
    assert seen[-1].shape == (1, 32) and np.allclose(seen[-1][0], vectors[key])
    assert first_of(run, late).recommended == products[1]

    # the encoder's folder is gone: the list still goes out, without a text vector, logged
    import shutil
    shutil.rmtree(folder)
    other = Product.objects.create(sku="N6", name="Teapot, blue", price="5.00",
                                   category="even", description="blue teapot")
    with caplog.at_level("WARNING", logger="shop_recs.content_lists"):
        summary = tasks.publish_new_products.apply(args=([other.pk],)).get()
    assert summary["products"] == 1 and "does not exist" in summary["text_encoder"]["error"]
    assert seen[-1] is None
    assert any("without text vectors" in r.getMessage() and "does not exist" in r.getMessage()
               for r in caplog.records)
    assert first_of(run, other) is not None
