"""Analytics of the widgets and experiments (issue 18).

* ``models``: the daily roll-ups the admin's analytics pages read (aggregates only: no
  visitor ids, no order ids), imported by ``shop_recs.models`` so they live in the app.
* ``rollups``: computes one day's roll-ups in SQL from the ``Interaction`` rows; run by the
  periodic task ``shop_recs.rollup_analytics`` and ``manage.py shop_recs_rollup``.
* ``report``: reads the roll-ups for the admin page and the CSV export.

Nothing here imports torch.
"""
