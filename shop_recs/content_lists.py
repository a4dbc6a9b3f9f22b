"""Publishing lists scored from product content: a run's products without enough orders, and
products created after the serving run (training side: loads the model code).

* :func:`content_rows` (called by ``publish.build``): every product of the run's catalogue
  below ``MIN_PRODUCT_ORDERS`` gets a list from the shipped model's content path, or from the
  borrowed-list baseline when the gate shipped a baseline (``shop_recs.ml.newproducts``).
* :func:`publish_new_products` (the ``shop_recs.publish_new_products`` task): products the
  serving run's checkpoint has never seen are appended to a copy of its model and scored the
  same way; when the run shipped a baseline, a product borrows the stored list of its most
  similar product with orders, then that product's "popular in its category" fallback rows.
  A checkpoint that reads a text encoder's vectors (``TEXT_ENCODER``) gets the new products'
  name and description embedded by the run's encoder through the run's cache
  (:func:`new_text_vectors`); an encoder that cannot load leaves their text rows zero (name
  words, category and price still score them) and the task logs why.
  The rows go into the serving run in one transaction (earlier content rows of the product
  are replaced) and ``bundles_changed`` on commit makes the widgets and API show them.

Rows are ``(product pk, recommended pk, rank, score, evidence)``, written with source
``shop_recs.newproducts.SOURCE``; the evidence is ``shop_recs.newproducts.evidence``.
"""

import logging
from functools import partial
from pathlib import Path

import numpy as np
from django.db import transaction

from shop_recs import newproducts
from shop_recs.conf import recs_settings
from shop_recs.data import _active_pks, product_attributes, product_descriptions
from shop_recs.fallbacks import POPULAR
from shop_recs.ml import newproducts as content
from shop_recs.ml.checkpoint import CheckpointError, load_checkpoint
from shop_recs.ml.text import LazyEncoder, TextEncoderError, embed_products
from shop_recs.ml.types import ItemAttributes
from shop_recs.models import FallbackRecommendation, Recommendation, TrainingRun
from shop_recs.products import get_adapter
from shop_recs.signals import bundles_changed

logger = logging.getLogger(__name__)

CHUNK = 900  # pks per IN (...) (SQLite allows 999 parameters)
WARM = "warm"


def _chunks(values):
    return [values[s:s + CHUNK] for s in range(0, len(values), CHUNK)]


def available(pks):
    """bool per pk: the product may be recommended (the adapter's ``available_q``)."""
    adapter = get_adapter()
    ok = set()
    for chunk in _chunks(list(pks)):
        ok.update(adapter.model._default_manager.filter(adapter.available_q(), pk__in=chunk)
                  .values_list("pk", flat=True))
    return np.asarray([pk in ok for pk in pks], dtype=bool)


def active(pks):
    """bool per pk: the product is active (the adapter's ``is_active`` field, when mapped)."""
    adapter = get_adapter()
    field = adapter.fields["is_active"]
    if not field:
        return np.ones(len(pks), dtype=bool)
    ok = set()
    for chunk in _chunks(list(pks)):
        ok.update(adapter.model._default_manager.filter(**{field: True}, pk__in=chunk)
                  .values_list("pk", flat=True))
    return np.asarray([pk in ok for pk in pks], dtype=bool)


def content_rows(fitted, pks, allowed):
    """Rows for the active products of ``fitted``'s catalogue without enough orders to
    publish (a product sold once and since withdrawn gets none)."""
    published = np.asarray(fitted.published, dtype=bool)
    anchors = np.flatnonzero(~published)
    anchors = anchors[active([pks[a] for a in anchors])]
    if not len(anchors) or not allowed.any():
        return []
    net, k = fitted.model, recs_settings.FBT_TOP_K
    if net is not None and net.model_config.n_items == len(fitted.index):
        lists = content.model_lists(net, fitted.attrs, anchors, published, allowed, k)
        return rows_of(lists, pks, content.MODEL)
    lists = content.borrowed_lists(fitted.scorer, fitted.attrs, anchors, published, allowed,
                                   fitted.baskets.item_counts(), k)
    return rows_of(lists, pks, content.BORROWED)


def rows_of(lists, pks, basis):
    """The rows of ``lists`` (``ml.newproducts.NewLists``); items are positions in ``pks``."""
    out = []
    for r, anchor in enumerate(lists.anchors):
        nbr = int(lists.neighbour[r])
        similar = pks[nbr] if nbr >= 0 else None
        rank = 0
        for j, score, how in zip(lists.items[r], lists.scores[r], lists.how[r]):
            if j < 0:
                break
            rank += 1
            out.append((pks[anchor], pks[j], rank, float(score), newproducts.evidence(
                basis, similar, lists.similarity[r], how)))
    return out


def _listed(run, pks=None):
    """{product pk: WARM or SOURCE} of the products with a list in ``run`` (among ``pks``)."""
    rows = Recommendation.objects.filter(run=run, rank=1)
    found = {}
    for chunk in ([None] if pks is None else _chunks(list(pks))):
        part = rows if chunk is None else rows.filter(product_id__in=chunk)
        for pk, source in part.values_list("product_id", "source"):
            found[pk] = newproducts.SOURCE if source == newproducts.SOURCE else WARM
    return found


def _to_publish(run, index, pks):
    """``pks`` less the products with a list learned from orders; None: every active product
    the checkpoint has never seen and the run has no list for."""
    if pks is not None:
        listed = _listed(run, pks)
        return [pk for pk in pks if listed.get(pk) != WARM]
    seen = set(index.ids)
    unseen = [pk for pk in _active_pks() if str(pk) not in seen]
    listed = _listed(run, unseen)
    return [pk for pk in unseen if pk not in listed]


def publish_new_products(pks=None):
    """Publish content lists into the serving run (see the module docstring); ``pks`` None:
    every product that needs one. Returns {"run", "products", "rows", "basis"}."""
    done = {"run": None, "products": 0, "rows": 0, "basis": None}
    run = TrainingRun.objects.filter(is_active=True).first()
    if run is None or not run.artifact_path:
        return done
    done["run"] = run.pk
    to_python = get_adapter().model._meta.pk.to_python
    try:
        scorer, index, manifest = load_checkpoint(run.artifact_path)
    except CheckpointError as exc:
        logger.warning("new-product lists: run %s's checkpoint is unreadable (%s)", run.pk, exc)
        return done
    new = _to_publish(run, index, None if pks is None else [to_python(p) for p in pks])
    if not new:
        return done
    # the checkpoint's catalogue, then the new products; only the products with a list of
    # their own (known) can be neighbours or be recommended, so only their names are read
    old_pks = [to_python(i) for i in index.ids]
    n, m = len(old_pks), len(new)
    warm = [pk for pk, kind in _listed(run).items() if kind == WARM]
    position = {pk: i for i, pk in enumerate(old_pks)}
    warm = [pk for pk in warm if pk in position]
    attrs = product_attributes(warm + new)
    rows_warm = np.asarray([position[pk] for pk in warm], dtype=np.int64)
    names = np.full(n + m, "", dtype=object)
    cats = np.full(n + m, "", dtype=object)
    names[rows_warm], cats[rows_warm] = attrs.names[:len(warm)], attrs.categories[:len(warm)]
    names[n:], cats[n:] = attrs.names[len(warm):], attrs.categories[len(warm):]
    full = ItemAttributes(names, cats, np.full(n + m, np.nan))
    known = np.zeros(n + m, dtype=bool)
    known[rows_warm] = True
    allowed = known.copy()
    allowed[rows_warm] = available(warm)
    all_pks = old_pks + new
    k = recs_settings.FBT_TOP_K
    if (manifest.get("extra") or {}).get("model_is_shipped", True):
        new_attrs = attrs.take(np.arange(len(warm), len(attrs)))
        if scorer.model_config.text_dim > 0:
            vecs, done["text_encoder"] = new_text_vectors(run, new, new_attrs.names,
                                                          scorer.model_config.text_dim)
            new_attrs.text_vectors = vecs
        bigger, items = content.extend(scorer, new_attrs)
        lists = content.model_lists(bigger, full, items, known, allowed, k)
        rows, done["basis"] = rows_of(lists, all_pks, content.MODEL), content.MODEL
    else:
        rows = _borrowed_from_run(run, full, np.arange(n, n + m), known, all_pks, k)
        done["basis"] = content.BORROWED
    return done | _write(run, new, rows)


def new_text_vectors(run, pks, names, dim):
    """The run's text encoder's vectors of ``pks``' name and description, float32 [m, dim]:
    the encoder the run read (its config's ``text_encoder``, else ``TEXT_ENCODER``) and the
    cache the run filled (``text-cache`` beside its checkpoint folder), so a product whose
    text the run has embedded costs nothing and the others are embedded once, here on the
    training worker. Returns (vectors or None, a note for the task's summary): None when the
    encoder cannot load or gives vectors of another width, logged with the reason."""
    name = ((run.config or {}).get("text_encoder") or {}).get("model") \
        or recs_settings.TEXT_ENCODER
    if not name:
        reason = "the checkpoint reads text vectors but no TEXT_ENCODER is set"
        logger.warning("new-product lists without text vectors: %s", reason)
        return None, {"model": None, "error": reason}
    cache = Path(run.artifact_path).parent / "text-cache"
    try:
        vecs = embed_products(list(names), product_descriptions(list(pks)),
                              LazyEncoder(str(name)), cache)
    except (TextEncoderError, OSError, ValueError) as exc:
        # the lists still go out: name words, category and price score the products
        logger.warning("new-product lists without text vectors (encoder %s): %s", name, exc)
        return None, {"model": str(name), "error": str(exc)}
    if vecs.shape != (len(pks), dim):  # another model under the same name since the run
        reason = f"the encoder gives {vecs.shape[-1]}-wide vectors, the checkpoint reads {dim}"
        logger.warning("new-product lists without text vectors (encoder %s): %s", name, reason)
        return None, {"model": str(name), "error": reason}
    return vecs, {"model": str(name), "products": len(pks)}


def _borrowed_from_run(run, attrs, items, known, pks, k):
    """The baseline for a run that shipped one: the stored list of the most similar product
    with a list, then its category's bestsellers (its "popular" fallback rows)."""
    nbrs, sims = content.similar_known(attrs, items, known, 1)
    neighbour = {pks[i]: (pks[int(nb[0])], float(sm[0])) for i, nb, sm in zip(items, nbrs, sims)
                 if len(nb) and sm[0] > 0}
    sources = list({nbr for nbr, _ in neighbour.values()})
    lists = {}
    for chunk in _chunks(sources):
        stored = (Recommendation.objects.filter(run=run, product_id__in=chunk)
                  .exclude(source=newproducts.SOURCE).order_by("product", "rank"))
        popular = FallbackRecommendation.objects.filter(product_id__in=chunk, method=POPULAR)
        for part, how in ((stored, content.BORROWED), (popular.order_by("product", "rank"),
                                                       content.CATEGORY)):
            for anchor, item, score in part.values_list("product_id", "recommended_id", "score"):
                lists.setdefault(anchor, []).append((item, score, how))
    rows = []
    for pk, (nbr, sim) in neighbour.items():
        seen, rank = {pk, nbr}, 0
        for item, score, how in lists.get(nbr, []):
            if item in seen or rank == k:
                continue
            seen.add(item)
            rank += 1
            rows.append((pk, item, rank, float(score),
                         newproducts.evidence(content.BORROWED, nbr, sim, how)))
    return rows


def _write(run, new, rows):
    """Replace the content rows of ``new`` in ``run`` with ``rows``, if ``run`` still serves."""
    with transaction.atomic():
        if not TrainingRun.objects.select_for_update().filter(pk=run.pk, is_active=True).exists():
            logger.info("new-product lists: run %s stopped serving; nothing written", run.pk)
            return {"products": 0, "rows": 0}
        for chunk in _chunks(new):
            Recommendation.objects.filter(run=run, product_id__in=chunk,
                                          source=newproducts.SOURCE).delete()
        Recommendation.objects.bulk_create(
            [Recommendation(run=run, product_id=p, recommended_id=r, rank=rank, score=score,
                            source=newproducts.SOURCE, evidence=ev)
             for p, r, rank, score, ev in rows], batch_size=2000)
        anchors = list(dict.fromkeys(row[0] for row in rows))
        if anchors:  # the serving cache forgets its candidate lists (a new generation)
            transaction.on_commit(partial(bundles_changed.send, sender=Recommendation,
                                          anchor_ids=anchors))
    logger.info("new-product lists: %d rows for %d of %d products in run %s", len(rows),
                len(anchors), len(new), run.pk)
    return {"products": len(anchors), "rows": len(rows)}
