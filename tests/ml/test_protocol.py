"""The protocol: configuration tree, what ships, shipped_refit, the catalogue, new products."""

import dataclasses

import numpy as np
import pytest

from shop_recs.ml.protocol import (MODEL, ConfigError, OnCatalogue, configure, fit_shop,
                                   get_default_config)
from shop_recs.ml.served import PublishedLists
from shop_recs.ml.types import Baskets, ItemAttributes, ItemIndex

TINY = {"train.epochs": 15, "train.time_budget_s": None, "train.threads": 1,
        "train.device": "cpu", "train.batch_size": 64, "train.lr": 5e-3, "model.d_model": 32,
        "model.n_heads": 2, "model.n_layers": 1, "ease_lambdas": [10, 100], "knn_ks": [20]}
NEW = ["PINK MUG STYLE 99", "QWERTY ZORB 77"]  # a new mug, and a product like nothing sold


@pytest.fixture(scope="module")
def shop(data):
    """The planted orders plus two products nobody has bought yet."""
    baskets, index, attrs = data
    n = len(index)
    return (Baskets(baskets.indptr, baskets.items, baskets.timestamps, baskets.customers, n + 2),
            ItemIndex(list(index.ids) + ["NEWMUG", "NEWODD"]),
            ItemAttributes(np.append(attrs.names, NEW), np.append(attrs.categories, ["", ""]),
                           np.append(attrs.prices, [2.0, 2.0])))


@pytest.fixture(scope="module")
def fitted(shop):
    return fit_shop(*shop, configure(get_default_config(), TINY))


def test_configure_applies_dotted_overrides_to_a_copy():
    default = get_default_config()
    cfg = configure(default, {"train.epochs": 3, "gate.confidence": 0.9,
                              "blend_weights": [0, 1, "inf"], "model.d_model": 16})
    assert cfg.train.epochs == 3 and cfg.gate.confidence == 0.9 and cfg.model.d_model == 16
    assert cfg.blend_weights == (0, 1, float("inf"))
    assert default.train.epochs == 40 and default.model.d_model == 64  # untouched
    assert not default.model.use_history  # the protocol trains what it ships


@pytest.mark.parametrize("overrides, message", [
    ({"train.epoch": 3}, "unknown setting 'train.epoch'"),
    ({"nope.x": 1}, "unknown setting 'nope.x'"),
    ({"ease_lambdas": []}, "ease_lambdas must be a non-empty list"),
    ({"ease_lambdas": [10, -1]}, "ease_lambdas must be"),
    ({"blend_weights": [0, "lots"]}, "'lots' is not a number"),
    ({"gate.confidence": 1.0}, "gate.confidence"),
    ({"min_orders": 0}, "min_orders"),
    ({"prior_lambda": 0}, "prior_lambda"),
])
def test_configure_refuses_bad_settings_clearly(overrides, message):
    with pytest.raises(ConfigError, match=message):
        configure(get_default_config(), overrides)


def test_what_ships_is_gated_and_scored_as_trained_and_as_refit(fitted, shop):
    test, gate = fitted.metrics["test"], fitted.gate
    choice = fitted.choice
    assert gate["choice"] == choice and choice in test
    shipped = {k: v for k, v in test["shipped"].items() if k != "choice"}
    assert set(shipped) == {"complete_hr10", "complete_ndcg10", "complete_mrr",
                            "anchor_recall10", "anchor_ndcg10"}
    if choice.startswith(MODEL):
        assert shipped == {k: v for k, v in test[choice].items() if k in shipped}
    else:  # one published setting serves both tasks
        assert shipped == {k: v for k, v in test[choice].items() if k in shipped}
    assert test["shipped_refit"]["choice"] == choice and 0 < test["shipped_refit"][
        "anchor_ndcg10"] <= 1
    # both rungs of the ladder were tested against a baseline, with an interval
    names = [c["candidate"] for c in gate["comparisons"]]
    assert names == [MODEL, f"{MODEL}+{fitted.metrics['params']['blend_partner']}"]
    for c in gate["comparisons"]:
        low, high = c["interval"]
        assert low <= c["gain"] <= high and c["ships"] == (low > 0)
    assert f"{MODEL}+" in next(k for k in fitted.metrics["validation"] if "+" in k)


def test_every_product_is_in_the_catalogue_and_only_bought_ones_are_published(fitted, shop):
    baskets, index, _ = shop
    assert fitted.index is index and len(fitted.trained_index) == len(index)
    counts = baskets.item_counts()
    np.testing.assert_array_equal(fitted.published, counts >= 2)
    assert not fitted.published[-2:].any()
    assert fitted.scorer.score([np.array([0])]).shape == (1, len(index))


def test_a_product_with_no_orders_gets_a_finite_attribute_driven_score(fitted, shop):
    _, index, attrs = shop
    net = fitted.trained
    new_mug, new_odd = len(index) - 2, len(index) - 1
    mugs = index.lookup([f"P{i:02d}" for i in range(6)])
    scores = net.score([np.array([a]) for a in mugs])
    assert np.isfinite(scores[:, [new_mug, new_odd]]).all()
    # its name's words (learned from the mugs that sell) lift it above an unknown product
    assert (scores[:, new_mug] > scores[:, new_odd]).all()
    # and the score comes from the attributes: the same row with other attributes scores
    # differently
    swapped = dataclasses.replace(attrs, names=np.append(attrs.names[:-2], NEW[::-1]))
    feats = net.vocab.encode(swapped)
    import torch
    net.model.set_features(torch.from_numpy(feats.words), torch.from_numpy(feats.category),
                           torch.from_numpy(feats.price_band))
    try:
        again = net.score([np.array([a]) for a in mugs])
    finally:
        feats = net.vocab.encode(attrs)
        net.model.set_features(torch.from_numpy(feats.words), torch.from_numpy(feats.category),
                               torch.from_numpy(feats.price_band))
    assert (again[:, new_odd] > again[:, new_mug]).all()


def test_without_refit_the_split_trained_winner_ships_on_the_catalogue(shop):
    cfg = configure(get_default_config(), {**TINY, "refit": False, "evaluate_refit": False,
                                           "train.epochs": 2})
    f = fit_shop(*shop, cfg)
    assert "shipped_refit" not in f.metrics["test"] and f.published.all()
    assert len(f.index) == f.split["catalogue"] < len(shop[1])
    assert f.scorer.score([np.array([0])]).shape == (1, len(f.index))
    assert len(f.trained_index) == len(shop[1])  # the network still covers every product


def test_on_catalogue_maps_contexts_and_columns():
    class Echo:
        name = "echo"

        def score(self, contexts, histories=None):
            out = np.zeros((len(contexts), 5), np.float32)
            for r, c in enumerate(contexts):
                out[r, c] = 1.0
            out[:, 4] = 7.0
            return out

    seen = OnCatalogue(Echo(), np.array([4, 1]))
    np.testing.assert_array_equal(seen.score([np.array([1])]), [[7.0, 1.0]])


def test_a_shipped_baseline_is_scored_with_its_one_setting_on_both_tasks(data):
    from shop_recs.ml.baselines import EASE
    from shop_recs.ml.evaluate import anchor_queries, complete_queries, evaluate, temporal_split

    # two lambdas that the two tasks prefer differently; only baselines can ship
    cfg = configure(get_default_config(), {**TINY, "families": ["popularity", "ease"],
                                           "ease_lambdas": [1, 10000], "evaluate_refit": False,
                                           "train.epochs": 1, "gate.min_gain": 10.0})
    f = fit_shop(*data, cfg)
    assert f.choice == "ease"
    lam = float(f.metrics["test"]["ease"]["params"].split("=")[1])
    split = temporal_split(*data)
    ease = EASE(lam).fit(split.train)
    pop = split.train.item_counts()
    served = PublishedLists(ease, len(split.index), 10)
    shipped = f.metrics["test"]["shipped"]
    # both tasks are scored through the one setting's published lists
    assert shipped["complete_ndcg10"] == pytest.approx(
        evaluate(served, complete_queries(split.test, 0), pop)["ndcg"])
    assert shipped["anchor_ndcg10"] == pytest.approx(
        evaluate(served, anchor_queries(split.test, 0), pop)["multi_ndcg"])
    # the published setting is the one with the best mean of both tasks on validation
    q = {t: make(split.val, 0) for t, make in (("complete", complete_queries),
                                               ("anchor", anchor_queries))}
    objective = {}
    for other in (1.0, 10000.0):
        lists = PublishedLists(EASE(other).fit(split.train), len(split.index), 10)
        objective[other] = (evaluate(lists, q["complete"], pop)["ndcg"]
                            + evaluate(lists, q["anchor"], pop)["multi_ndcg"]) / 2
    assert lam == max(objective, key=objective.get)
    assert f.metrics["validation"]["ease"]["combined"] == pytest.approx(objective[lam])


def test_validation_and_test_orders_are_capped_by_a_seeded_sample(data):
    """Issue 15: past max_eval_orders, every candidate is judged on a seeded sample of the
    validation orders (and reported on one of the test orders), kept in time order; below
    it the split is untouched."""
    from shop_recs.ml.evaluate import temporal_split
    from shop_recs.ml.protocol import cap_evaluated

    split = temporal_split(*data)
    assert cap_evaluated(split, None) is split and cap_evaluated(split, 10**6) is split
    capped = cap_evaluated(split, 40, seed=3)
    assert len(capped.val) == len(capped.test) == 40 < len(split.val)
    assert capped.info["eval_orders_cap"] == 40 and capped.train is split.train
    for name in ("val", "test"):
        part, whole = getattr(capped, name), getattr(split, name)
        assert np.all(np.diff(part.timestamps) >= 0)  # time order kept
        rows = {tuple(whole.basket(i)) + (int(whole.timestamps[i]),) for i in range(len(whole))}
        assert all(tuple(part.basket(i)) + (int(part.timestamps[i]),) in rows
                   for i in range(len(part)))
    again = cap_evaluated(split, 40, seed=3)
    assert np.array_equal(again.val.items, capped.val.items)  # seeded


def test_settings_that_publish_the_same_lists_are_judged_once(shop, monkeypatch):
    """item-kNN keeps k >= top_k neighbours per row, so k=20 and k=50 publish the same
    top-10 lists: the second is not scored again, and ties keep the first (simpler)."""
    from shop_recs.ml import protocol

    judged = []
    real = protocol._judge

    def counting(served, queries, pop):
        judged.append(served.name)
        return real(served, queries, pop)

    monkeypatch.setattr(protocol, "_judge", counting)
    cfg = configure(get_default_config(), {**TINY, "knn_ks": [20, 50], "train.epochs": 1,
                                           "families": ["popularity", "item_knn"],
                                           "prior_lambda": 10.0, "evaluate_refit": False})
    f = fit_shop(*shop, cfg)
    assert judged.count("item_knn") == 1 and judged.count("popularity") == 1
    assert f.metrics["test"]["item_knn"]["params"] == "k=20"


def test_the_prior_is_chosen_on_a_seeded_sample_of_queries_in_their_order():
    from shop_recs.ml.evaluate import Queries
    from shop_recs.ml.protocol import _sample

    q = Queries([np.array([i]) for i in range(50)], [np.array([i + 1]) for i in range(50)])
    assert _sample(q, 50, 0) is q
    part = _sample(q, 20, 7)
    firsts = [int(c[0]) for c in part.contexts]
    assert len(firsts) == 20 and firsts == sorted(firsts) and len(set(firsts)) == 20
    assert [int(t[0]) for t in part.targets] == [c + 1 for c in firsts]  # pairs kept
    assert firsts == [int(c[0]) for c in _sample(q, 20, 7).contexts]


@pytest.mark.parametrize("setting, shipped, measured", [
    ("auto", "network", False), ("auto", "baseline", True), (True, "network", True)])
def test_the_refit_figure_is_skipped_only_for_a_network_above_the_dense_size(
        shop, monkeypatch, setting, shipped, measured):
    """EVALUATE_REFIT "auto": above sparse.DENSE_MAX_ITEMS products the refit on train +
    validation is skipped when it would train a network (one more TIME_BUDGET_S for a figure
    the gate never reads); a baseline's is cheap and kept; True always keeps it."""
    from shop_recs.ml import protocol, sparse

    monkeypatch.setattr(sparse, "DENSE_MAX_ITEMS", 20)  # the planted shop is "large" here
    real = protocol.decide

    def deciding(rows, baselines, candidates, *args):  # the gate's choice, made to order
        decision = real(rows, baselines, candidates, *args)
        return {**decision, "choice": candidates[0] if shipped == "network" else baselines[0]}

    monkeypatch.setattr(protocol, "decide", deciding)
    cfg = configure(get_default_config(), {**TINY, "train.epochs": 1,
                                           "evaluate_refit": setting})
    f = fit_shop(*shop, cfg)
    assert ("shipped_refit" in f.metrics["test"]) is measured
    assert f.metrics["params"]["refit_evaluated"] is measured


def test_evaluate_refit_takes_a_boolean_or_auto():
    with pytest.raises(ConfigError, match="evaluate_refit must be True, False or 'auto'"):
        configure(get_default_config(), {"evaluate_refit": "sometimes"})


@pytest.mark.parametrize("stopped, epochs", [("time_budget", 1), ("time_budget", 2),
                                             ("epochs", 1)])
def test_a_refit_continues_a_network_that_ran_out_of_time(shop, monkeypatch, stopped, epochs):
    """A network fit that ran out of TIME_BUDGET_S in its first epoch chose no epoch count:
    each refit continues it over every order for the seconds per order it had (the budget
    times the orders it never saw over those it trained on), leaving the evaluated network as
    it was. A fit that completed an epoch is repeated from the start, with the whole budget."""
    import torch

    from shop_recs.ml import protocol
    from shop_recs.ml.scorer import BundleScorer

    real_decide, real_fit = protocol.decide, BundleScorer.fit
    fits = []  # (scorer, its budget, the scorer it started from)

    def deciding(rows, baselines, candidates, *args):  # the blend ships
        return {**real_decide(rows, baselines, candidates, *args), "choice": candidates[1]}

    def fit(self, *args, init_from=None, old_to_new=None, **kwargs):
        real_fit(self, *args, init_from=init_from, old_to_new=old_to_new, **kwargs)
        if not fits:  # the evaluated fit
            self.result.stopped = stopped
            fits.append((self, self.train_config.time_budget_s, init_from,
                         {k: v.clone() for k, v in self.model.state_dict().items()}))
        else:
            fits.append((self, self.train_config.time_budget_s, init_from, None))
        return self

    monkeypatch.setattr(protocol, "decide", deciding)
    monkeypatch.setattr(BundleScorer, "fit", fit)
    cfg = configure(get_default_config(), {**TINY, "train.epochs": epochs,
                                           "train.time_budget_s": 60.0,  # never reached
                                           "evaluate_refit": True})
    f = fit_shop(*shop, cfg)
    (net, _, _, before), (_, eval_budget, eval_from, _), (shipped, budget, start, _) = fits
    assert shipped is f.model and len(net.result.history) == epochs
    info = f.split
    assert f.metrics["params"]["refit_continues"] is (stopped == "time_budget" and epochs == 1)
    if stopped == "time_budget" and epochs == 1:
        assert eval_from is net and start is net
        assert eval_budget == pytest.approx(
            60.0 * (info["train_val_orders"] - info["train_orders"]) / info["train_orders"])
        assert budget == pytest.approx(
            60.0 * (info["orders"] - info["train_orders"]) / info["train_orders"])
        assert 1.0 < eval_budget < budget < 60.0
    else:
        assert eval_from is None and start is None and eval_budget == budget == 60.0
    after = net.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the judged network
