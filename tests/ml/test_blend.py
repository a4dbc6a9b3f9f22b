"""Blending and the validation gate."""

import numpy as np

from shop_recs.ml.blend import BlendScorer, standardise


def test_standardise_handles_masked_entries():
    z = standardise(np.array([[1.0, -np.inf, 3.0], [2.0, 2.0, 2.0]]))
    assert np.isfinite(z).all()
    assert z[0, 2] > z[0, 0] >= z[0, 1]


def test_blend_weights():
    class Const:
        def __init__(self, row):
            self.row = np.asarray(row, dtype=np.float32)

        def score(self, contexts, histories=None):
            return np.repeat(self.row[None], len(contexts), 0)

    a, b = Const([3, 2, 1]), Const([1, 2, 3])
    assert BlendScorer.pair_weights(float("inf")) == [0.0, 1.0]
    only_b = BlendScorer([a, b], [0.0, 1.0], "x").score([np.array([0])])
    assert int(np.argmax(only_b)) == 2
    mix = BlendScorer([a, b], [1.0, 0.5], "x").score([np.array([0])])
    assert int(np.argmax(mix)) == 0
