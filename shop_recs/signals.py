"""Signals of shop_recs, for caches and host code that react to new recommendations.

* ``run_activated(sender=TrainingRun, run=...)``: a training run's rows now serve.
* ``bundles_changed(sender=Bundle, anchor_ids=[...])``: bundles were approved,
  rejected, retired, edited or created for these anchor products.
"""

from django.dispatch import Signal

run_activated = Signal()
bundles_changed = Signal()
