"""Examples worked by hand, on every backend, to float64 rounding."""

from __future__ import annotations

import math

import numpy as np

import labelsmooth as ls


def _rtol(result):
    return 1e-6 if result.dtype == np.float32 else 1e-15


def test_smooth_labels_three_classes(backend):
    got = backend.to_numpy(backend.call(ls.smooth_labels, backend.asarray(np.array([0.0, 0.0, 1.0])), 0.1))
    # 0.1 / 3 and 0.9 + 0.1 / 3, worked by hand.
    np.testing.assert_allclose(got, [1 / 30, 1 / 30, 28 / 30], rtol=_rtol(got))


def test_five_class_example_in_nats_and_bits(backend):
    z = backend.asarray(np.log(np.array([[0.1, 0.1, 0.1, 0.36, 0.34]])))
    y = backend.asarray(np.array([3]))
    plain = backend.to_numpy(backend.call(ls.cross_entropy, z, y))
    smoothed = backend.to_numpy(backend.call(ls.cross_entropy, z, y, epsilon=0.1))
    # By hand: the probabilities sum to 1, so H = -log 0.36 and
    # H' = 0.92 * (-log 0.36) + 0.02 * (-3 log 0.1 - log 0.34).
    by_hand_plain = -math.log(0.36)
    by_hand_smoothed = 0.92 * -math.log(0.36) + 0.02 * (-3 * math.log(0.1) - math.log(0.34))
    np.testing.assert_allclose(plain, 1.0216512475319814, rtol=_rtol(plain))
    np.testing.assert_allclose(smoothed, 1.0996504465365042, rtol=_rtol(smoothed))
    np.testing.assert_allclose(plain, by_hand_plain, rtol=_rtol(plain))
    np.testing.assert_allclose(smoothed, by_hand_smoothed, rtol=_rtol(smoothed))
    assert round(float(plain) / math.log(2), 3) == 1.474
    assert round(float(smoothed) / math.log(2), 3) == 1.586
