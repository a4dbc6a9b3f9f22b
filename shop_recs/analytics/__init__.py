"""Analytics of the widgets: daily roll-ups, A/B experiments and their statistics.

* ``experiment_models``: ``Experiment``, ``Arm`` and ``Exposure`` (in the ``shop_recs`` app).
* ``experiments``: assignment of visitors to arms, serving plans, exposure logging,
  start / pause / stop / ship.
* ``results``: the per-visitor outcomes of an experiment, from the stored interactions.
* ``stats``: the statistics (no Django): differences with intervals, SRM, sample sizes.
"""
