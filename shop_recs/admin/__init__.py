"""The Django admin of shop_recs: catalogue, bundle review, training runs.

* ``catalogue``: the default ``Product`` (searchable, so bundle editing can autocomplete
  it) and the read-only ``Interaction`` record.
* ``bundles``: the bundle list with evidence, bulk approve / reject / retire, editing
  and manual bundles; ``anchor_review`` is its one-product-at-a-time review screen.
* ``runs``: read-only training run reports, "Train now", progress and comparison.
* ``analytics``: what the widgets, runs and bundles earned per day (daily roll-ups), CSV.
* ``experiments``: A/B experiments: arms, start / pause / stop, results, "ship this arm".

Decisions need the ``shop_recs.review_bundle`` permission and go through
``shop_recs.review``, which records them in the admin log. Nothing here imports torch.
"""

from shop_recs.admin import (analytics, bundles, catalogue,  # noqa: F401 (registers them)
                             experiments, runs)
