"""Analytics of the widgets, A/B experiments and their statistics (issue 18).

* ``models``: the daily roll-ups the admin's analytics pages read (aggregates only: no
  visitor ids, no order ids), imported by ``shop_recs.models`` so they live in the app.
* ``rollups``: computes one day's roll-ups in SQL from the ``Interaction`` rows; run by the
  periodic task ``shop_recs.rollup_analytics`` and ``manage.py shop_recs_rollup``.
* ``report``: reads the roll-ups for the admin page and the CSV export.
* ``experiment_models``: ``Experiment``, ``Arm`` and ``Exposure`` (in the ``shop_recs`` app).
* ``experiments``: assignment of visitors to arms, serving plans, exposure logging,
  start / pause / stop / ship.
* ``results``: the per-visitor outcomes of an experiment, from the stored interactions.
* ``stats``: the statistics (no Django): differences with intervals, SRM, sample sizes.

Nothing here imports torch.
"""
