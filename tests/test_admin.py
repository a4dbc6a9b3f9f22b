"""Admin pages of the catalogue and interactions."""

import pytest
from django.urls import reverse

from shop_recs.ingest import record_order
from shop_recs.models import Interaction, Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def order():
    products = [Product.objects.create(sku=f"S{i}", name=f"<b>Item {i}</b>") for i in range(3)]
    record_order("o-1", [{"product": p} for p in products])
    return products


def test_changelists_render_and_escape_names(admin_client, order, django_assert_max_num_queries):
    response = admin_client.get(reverse("admin:shop_recs_product_changelist"))
    assert response.status_code == 200
    assert b"&lt;b&gt;Item 0&lt;/b&gt;" in response.content
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse("admin:shop_recs_interaction_changelist"))
    assert response.status_code == 200 and b"o-1" in response.content


def test_interactions_are_read_only(admin_client, order):
    row = Interaction.objects.first()
    assert admin_client.get(reverse("admin:shop_recs_interaction_add")).status_code == 403
    url = reverse("admin:shop_recs_interaction_change", args=[row.pk])
    assert admin_client.get(url).status_code == 200
    admin_client.post(url, {"kind": "view", "quantity": 9})
    row.refresh_from_db()
    assert row.kind == "purchase" and row.quantity == 1


# Training runs: read-only reports, "Train now", progress, comparison.

from django.contrib.admin.models import LogEntry  # noqa: E402
from django.contrib.auth.models import Permission, User  # noqa: E402

from shop_recs import runs as runs_module  # noqa: E402
from shop_recs.models import TrainingRun  # noqa: E402

METRICS = {
    "validation": {"bundle_model": {"complete_ndcg10": 0.31, "anchor_ndcg10": 0.22},
                   "cooccurrence": {"complete_ndcg10": 0.27, "anchor_ndcg10": 0.24},
                   "popularity": {"complete_ndcg10": 0.08, "anchor_ndcg10": 0.05}},
    "test": {"bundle_model": {"complete_ndcg10": 0.30, "anchor_ndcg10": 0.21},
             "popularity": {"complete_ndcg10": 0.07, "anchor_ndcg10": 0.04}},
}


def finished_run(**fields):
    values = {
        "status": TrainingRun.Status.SUCCEEDED, "pending": None, "metrics": METRICS,
        "gate": {"chosen": "bundle_model", "reason": "beats co-occurrence by 15% on validation"},
        "shipped_model": "bundle_model", "device": "cuda",
        "progress": {"epoch": 3, "epochs": 3, "percent": 100, "examples_per_s": 51234.0,
                     "loss": [0.91, 0.62, 0.55], "val_metric": [0.21, 0.28, 0.31]},
        "timings": {"extract": 12.5, "train": 140.25, "evaluate": 20.0, "publish": 3.0},
        "artifact_path": "/srv/artifacts/run-1/model.safetensors",
        "artifact_sha256": "ab" * 32, "counts": {"orders": 18000, "products": 3900},
    }
    return TrainingRun.objects.create(**{**values, **fields})


def staff_client(client, *codenames):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(
        codename__in=["view_trainingrun", "view_bundle", *codenames]))
    client.force_login(user)
    return user


def test_run_page_reports_metrics_gate_chart_artifact_and_timings(admin_client):
    run = finished_run()
    html = admin_client.get(reverse("admin:shop_recs_trainingrun_change", args=[run.pk])
                            ).content.decode()
    assert "Validation metrics: the model against each baseline" in html
    assert "Test metrics" in html and "cooccurrence" in html and "popularity" in html
    assert '<td class="best">0.3100</td>' in html  # the model wins complete_ndcg10
    assert '<td class="best">0.2400</td>' in html  # co-occurrence wins anchor_ndcg10
    assert "beats co-occurrence by 15% on validation" in html
    assert html.count('class="shop-recs-chart"') == 2 and "Training loss per epoch" in html
    assert "ab" * 32 in html and "/srv/artifacts/run-1/model.safetensors" in html
    assert "175.8" in html  # total seconds
    assert "progress.js" not in html  # finished: no polling
    assert 'name="_save"' not in html  # read-only


def test_run_page_labels_metrics_fills_settings_and_names_chart_axes(admin_client):
    test = {"bundle_model+ease": {"anchor_ndcg10": 0.25, "complete_hr10": 0.4,
                                  "weights": [1.0, 0.5]},
            "ease": {"anchor_ndcg10": 0.22, "complete_hr10": 0.35, "params": "lambda=500"},
            "popularity": {"anchor_ndcg10": 0.05, "complete_hr10": 0.1, "params": ""}}
    run = finished_run(metrics={**METRICS, "test": test})
    html = admin_client.get(reverse("admin:shop_recs_trainingrun_change", args=[run.pk])
                            ).content.decode()
    assert '<th scope="col" title="anchor_ndcg10">Anchor NDCG@10</th>' in html
    assert ">Basket completion hit rate@10</th>" in html
    assert ">ANCHOR_NDCG10<" not in html and ">anchor_ndcg10<" not in html
    # No column of dashes: text settings fill one column; numbers only in metric columns.
    assert ">params<" not in html and ">weights<" not in html
    assert "<td>lambda=500</td>" in html and "<td>ease × 1 + bundle_model × 0.5</td>" in html
    assert html.count(">tuned setting</th>") == 1  # validation rows have no settings
    assert ">validation NDCG@10</text>" in html and ">training loss</text>" in html
    assert ">metric</text>" not in html


def test_run_page_reads_the_bundle_count_the_run_stored(admin_client,
                                                        django_assert_max_num_queries):
    run = finished_run(counts={"orders": 10, "bundles_proposed": 11776})
    url = reverse("admin:shop_recs_trainingrun_change", args=[run.pk])
    admin_client.get(url)
    with django_assert_max_num_queries(8):
        html = admin_client.get(url).content.decode()
    assert "11,776 bundles proposed by this run" in html
    never = finished_run(counts={}, gate={"chosen": "x", "reason": "failed gate"})
    html = admin_client.get(reverse("admin:shop_recs_trainingrun_change", args=[never.pk])
                            ).content.decode()
    assert "This run has not published bundles." in html


def test_running_run_polls_its_progress(admin_client):
    run = TrainingRun.objects.create(status=TrainingRun.Status.RUNNING,
                                     progress={"epoch": 2, "epochs": 8, "percent": 25.0,
                                               "examples_per_s": 1000.0, "loss": [0.9, 0.8]})
    html = admin_client.get(reverse("admin:shop_recs_trainingrun_change", args=[run.pk])
                            ).content.decode()
    assert "progress.js" in html and 'http-equiv="refresh"' in html
    assert '<progress max="100" value="25.0"' in html and "epoch 2/8" in html
    data = admin_client.get(reverse("admin:shop_recs_trainingrun_progress", args=[run.pk])).json()
    assert data == {"status": "running", "status_label": "running", "finished": False,
                    "percent": 25.0, "epoch": 2, "epochs": 8, "examples_per_s": 1000.0}


def test_malformed_run_json_renders(admin_client):
    run = finished_run(metrics={"validation": ["oops"], "test": {"m": "x"}}, gate="?",
                       progress={"loss": "nan", "val_metric": [None, "x"]}, timings=[1])
    url = reverse("admin:shop_recs_trainingrun_change", args=[run.pk])
    assert admin_client.get(url).status_code == 200


def test_runs_are_read_only(admin_client):
    run = finished_run(is_active=True)
    assert admin_client.get(reverse("admin:shop_recs_trainingrun_add")).status_code == 403
    admin_client.post(reverse("admin:shop_recs_trainingrun_change", args=[run.pk]),
                      {"status": "failed"})
    run.refresh_from_db()
    assert run.status == "succeeded"
    delete = reverse("admin:shop_recs_trainingrun_delete", args=[run.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403


def test_train_now_queues_a_run_on_commit(client, monkeypatch,
                                          django_capture_on_commit_callbacks):
    user = staff_client(client, "start_training")
    monkeypatch.setattr(runs_module, "check_broker", lambda timeout=3: None)
    changelist = client.get(reverse("admin:shop_recs_trainingrun_changelist")).content.decode()
    assert "data-shop-recs-train" in changelist
    queued = []
    monkeypatch.setattr(runs_module, "_enqueue", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:shop_recs_trainingrun_train"), follow=True)
    run = TrainingRun.objects.get()
    assert queued == [run.pk]
    assert run.trigger == "admin" and run.requested_by == user and run.status == "queued"
    assert f"Run {run.pk} is queued" in response.content.decode()


def test_train_now_reports_an_unreachable_broker(client, monkeypatch):
    staff_client(client, "start_training")

    def down(timeout=3):
        raise runs_module.BrokerUnavailable("the task broker is unreachable (ConnectionRefused)")

    monkeypatch.setattr(runs_module, "check_broker", down)
    response = client.post(reverse("admin:shop_recs_trainingrun_train"), follow=True)
    html = response.content.decode()
    assert response.status_code == 200 and "Training could not be started" in html
    assert "the task broker is unreachable" in html and not TrainingRun.objects.exists()


def test_train_now_points_at_the_run_in_progress(client):
    staff_client(client, "start_training")
    pending = TrainingRun.objects.create(status=TrainingRun.Status.RUNNING)
    response = client.post(reverse("admin:shop_recs_trainingrun_train"), follow=True)
    assert response.redirect_chain[-1][0].endswith(f"/trainingrun/{pending.pk}/change/")
    assert f"Run {pending.pk} is already running" in response.content.decode()
    assert TrainingRun.objects.count() == 1


def test_train_now_needs_the_permission_and_a_post(client):
    staff_client(client)
    html = client.get(reverse("admin:shop_recs_trainingrun_changelist")).content.decode()
    assert "data-shop-recs-train" not in html
    assert client.post(reverse("admin:shop_recs_trainingrun_train")).status_code == 403
    assert not TrainingRun.objects.exists()
    staff_client_user = User.objects.get(username="staff")
    staff_client_user.user_permissions.add(Permission.objects.get(codename="start_training"))
    assert client.get(reverse("admin:shop_recs_trainingrun_train")).status_code == 405


def test_compare_runs_side_by_side(admin_client):
    a = finished_run()
    b = finished_run(metrics={"validation": {"bundle_model": {"complete_ndcg10": 0.35}}},
                     progress={"val_metric": [0.3, 0.35]})
    response = admin_client.post(reverse("admin:shop_recs_trainingrun_changelist"),
                                 {"action": "compare", "_selected_action": [a.pk, b.pk]})
    assert response.status_code == 302
    html = admin_client.get(response.url).content.decode()
    assert f"Run {a.pk}" in html and f"Run {b.pk}" in html
    assert "Validation · bundle_model · Basket completion NDCG@10" in html
    assert "0.3100" in html and "0.3500" in html and "shop-recs-chart" in html


def test_serving_a_run_by_hand_needs_review_permission(client, settings):
    old = finished_run(is_active=True)
    new = finished_run()
    url = reverse("admin:shop_recs_trainingrun_activate", args=[new.pk])
    staff_client(client)
    assert client.post(url).status_code == 403
    User.objects.get(username="staff").user_permissions.add(
        Permission.objects.get(codename="review_bundle"))
    client.post(url)
    old.refresh_from_db()
    new.refresh_from_db()
    assert new.is_active and not old.is_active
    assert LogEntry.objects.get(object_id=str(new.pk)).change_message.startswith("Now serving")


# Interactions on large tables: bounded counts, index-walking filter, exact search.

from shop_recs.admin.paging import BoundedCountPaginator  # noqa: E402


@pytest.fixture
def small_cap(monkeypatch):
    monkeypatch.setattr(BoundedCountPaginator, "cap", 5)


def test_interaction_changelist_never_counts_the_whole_table(admin_client, small_cap,
                                                             django_assert_max_num_queries):
    products = [Product.objects.create(sku=f"C{i}", name=f"Item {i}") for i in range(4)]
    for n in range(3):
        record_order(f"order-{n}", [{"product": p} for p in products])  # 12 purchases
    url = reverse("admin:shop_recs_interaction_changelist")
    admin_client.get(url)
    with django_assert_max_num_queries(9) as queries:
        response = admin_client.get(url)
    html = response.content.decode()
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 6" in sql for sql in counts)  # cap + 1, never the table
    assert "more than 5 interactions" in html
    assert "date_hierarchy" not in html and 'class="xfull"' not in html
    # Exact order-id search (an index lookup): "order-1" matches, a fragment does not.
    found = admin_client.get(url, {"q": "order-1"}).context["cl"].result_list
    assert {i.order_id for i in found} == {"order-1"}
    assert not admin_client.get(url, {"q": "order"}).context["cl"].result_list


def test_interaction_widget_filter_lists_recorded_widgets(admin_client):
    product = Product.objects.create(sku="W1", name="Widget thing")
    record_order("o-w", [{"product": product, "widget": "fbt"}])
    record_order("o-x", [{"product": Product.objects.create(sku="W2", name="Other")}])
    url = reverse("admin:shop_recs_interaction_changelist")
    response = admin_client.get(url)
    [spec] = [s for s in response.context["cl"].filter_specs
              if getattr(s, "parameter_name", "") == "widget"]
    assert [value for value, _ in spec.lookup_choices] == ["__empty__", "fbt"]
    fbt = admin_client.get(url, {"widget": "fbt"}).context["cl"].result_list
    assert [i.order_id for i in fbt] == ["o-w"]
    none = admin_client.get(url, {"widget": "__empty__"}).context["cl"].result_list
    assert [i.order_id for i in none] == ["o-x"]


def test_interaction_changelist_says_more_than_the_cap_and_offers_no_facet_counts(
        admin_client, small_cap):
    products = [Product.objects.create(sku=f"F{i}", name=f"Item {i}") for i in range(7)]
    record_order("order-f", [{"product": p} for p in products])
    url = reverse("admin:shop_recs_interaction_changelist")
    html = admin_client.get(url, {"kind__exact": "purchase"}).content.decode()
    assert "more than 5 results" in html and "6 results" not in html  # search bar
    assert "more than 5 interactions" in html  # paginator
    assert "Show counts" not in html  # facets would count rows per filter value
    assert 'id="nav-sidebar"' not in html  # the list gets the width at 1280 px
    # Only the timestamp sorts (by index); any other column would sort the whole table.
    assert html.count('class="sortable column-') == 1
    assert 'class="sortable column-timestamp sorted descending"' in html


def test_run_page_shows_the_returning_visitor_policy_and_its_figures(admin_client):
    run = finished_run()
    run.serving_policy = {
        "mode": "boost", "weight": 0.4, "half_life": 16.0, "top_k": 10,
        "reason": "boost: gain over off +30.1% to +41.2% (95% interval)",
        "validation": {"queries": 812, "off_ndcg10": 0.2101, "boost_ndcg10": 0.2905,
                       "demote_ndcg10": 0.2050,
                       "interval_pct": {"boost": [30.1, 41.2], "demote": [-4.0, 1.0]}},
        "test": {"queries": 790, "off_ndcg10": 0.2, "boost_ndcg10": 0.28, "demote_ndcg10": 0.19}}
    run.save()
    html = admin_client.get(reverse("admin:shop_recs_trainingrun_change", args=[run.pk])
                            ).content.decode()
    assert "Returning visitors" in html and "weight 0.40, half-life 16 items" in html
    assert "812 validation orders" in html and "790 test orders" in html
    assert "boost (serving)" in html and "0.2905" in html and "30.1% … 41.2%" in html
    run.serving_policy = {"mode": ["not", "a", "mode"], "validation": "?"}
    run.save()
    url = reverse("admin:shop_recs_trainingrun_change", args=[run.pk])
    assert admin_client.get(url).status_code == 200
