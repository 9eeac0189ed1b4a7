"""Calibration metrics against hand-worked numbers, plain-Python loops and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labelsmooth.metrics import ReliabilityDiagram, brier_score, expected_calibration_error, reliability_diagram

# Worked by hand with 4 bins (0, .25], (.25, .5], (.5, .75], (.75, 1]:
#   sample  probs               label  top conf  predicted  correct  bin
#   0       (.5, .25, .25)      0      .5        0          yes      1
#   1       (.25, .75, 0)       0      .75       1          no       2   (.75 is the upper edge)
#   2       (0, 0, 1)           2      1.0       2          yes      3
#   3       (.6, .4, 0)         1      .6        0          no       2
# bin 1: 1 sample, accuracy 1, confidence .5   -> |1 - .5|  = .5
# bin 2: 2 samples, accuracy 0, confidence .675 -> |0 - .675| = .675
# bin 3: 1 sample, accuracy 1, confidence 1    -> 0
# ECE = (1 * .5 + 2 * .675 + 1 * 0) / 4 = .4625
# Brier: (.25 + .0625 + .0625) + (.5625 + .5625 + 0) + 0 + (.36 + .36 + 0) = 2.22; / 4 = .555
HAND_PROBS = np.array([[0.5, 0.25, 0.25], [0.25, 0.75, 0.0], [0.0, 0.0, 1.0], [0.6, 0.4, 0.0]])
HAND_LABELS = np.array([0, 0, 2, 1])


def ece_loop(probs, labels, n_bins):
    """Guo et al.'s definition as a plain Python loop over bins and samples."""
    n = len(probs)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i in range(n) if lo < max(probs[i]) <= hi]
        if not members:
            continue
        accuracy = sum(int(np.argmax(probs[i]) == labels[i]) for i in members) / len(members)
        confidence = sum(max(probs[i]) for i in members) / len(members)
        total += len(members) / n * abs(accuracy - confidence)
    return total


def diagram_loop(probs, labels, n_bins):
    counts, confidence, accuracy = [], [], []
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i in range(len(probs)) if lo < max(probs[i]) <= hi]
        counts.append(len(members))
        if members:
            confidence.append(sum(max(probs[i]) for i in members) / len(members))
            accuracy.append(sum(int(np.argmax(probs[i]) == labels[i]) for i in members) / len(members))
        else:
            confidence.append(math.nan)
            accuracy.append(math.nan)
    return np.array(counts), np.array(confidence), np.array(accuracy)


def brier_loop(probs, labels):
    return sum(sum((p - (k == y)) ** 2 for k, p in enumerate(row)) for row, y in zip(probs, labels)) / len(probs)


def random_predictions(rng, n=200, k=6):
    logits = rng.normal(scale=2.5, size=(n, k))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    # Labels agree with the top class 70% of the time.
    labels = np.where(rng.random(n) < 0.7, probs.argmax(1), rng.integers(0, k, size=n))
    return probs, labels


def test_ece_by_hand():
    assert float(expected_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=4)) == pytest.approx(0.4625, abs=1e-15)


def test_reliability_diagram_by_hand():
    diagram = reliability_diagram(HAND_PROBS, HAND_LABELS, n_bins=4)
    assert isinstance(diagram, ReliabilityDiagram)
    np.testing.assert_array_equal(diagram.edges, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(diagram.counts, [0, 1, 2, 1])
    assert np.issubdtype(diagram.counts.dtype, np.integer)
    np.testing.assert_allclose(diagram.confidence, [np.nan, 0.5, 0.675, 1.0], rtol=1e-15)
    np.testing.assert_array_equal(diagram.accuracy, [np.nan, 1.0, 0.0, 1.0])


def test_brier_by_hand():
    assert float(brier_score(HAND_PROBS, HAND_LABELS)) == pytest.approx(0.555, abs=1e-15)


@pytest.mark.parametrize("n_bins", [1, 4, 10, 15, 37])
def test_ece_and_diagram_match_the_loop(rng, n_bins):
    probs, labels = random_predictions(rng)
    ece = float(expected_calibration_error(probs, labels, n_bins=n_bins))
    assert ece == pytest.approx(ece_loop(probs, labels, n_bins), rel=1e-12, abs=1e-15)
    counts, confidence, accuracy = diagram_loop(probs, labels, n_bins)
    diagram = reliability_diagram(probs, labels, n_bins=n_bins)
    np.testing.assert_array_equal(diagram.counts, counts)
    np.testing.assert_allclose(diagram.confidence, confidence, rtol=1e-13)
    np.testing.assert_allclose(diagram.accuracy, accuracy, rtol=1e-13)
    filled = counts > 0
    weighted_gap = np.sum(counts[filled] * np.abs(accuracy[filled] - confidence[filled])) / counts.sum()
    assert ece == pytest.approx(weighted_gap, rel=1e-12, abs=1e-15)


def test_brier_matches_loop_and_scikit_learn(rng):
    probs, labels = random_predictions(rng, n=50, k=4)
    assert float(brier_score(probs, labels)) == pytest.approx(brier_loop(probs, labels), rel=1e-13)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    # scikit-learn's multi-class Brier score is the same sum over classes, mean over samples.
    expected = sklearn_metrics.brier_score_loss(labels, probs, labels=list(range(4)), scale_by_half=False)
    assert float(brier_score(probs, labels)) == pytest.approx(expected, rel=1e-13)


def test_perfect_and_worst_cases():
    onehot = np.eye(3)[[0, 2, 1]]
    assert float(expected_calibration_error(onehot, np.array([0, 2, 1]))) == 0.0
    assert float(brier_score(onehot, np.array([0, 2, 1]))) == 0.0
    assert float(expected_calibration_error(onehot, np.array([1, 0, 0]))) == 1.0
    assert float(brier_score(onehot, np.array([1, 0, 0]))) == 2.0


def test_confident_correct_brier_keeps_precision():
    probs = np.array([[1.0 - 1e-12, 1e-12]])
    assert float(brier_score(probs, np.array([0]))) == pytest.approx(2e-24, rel=1e-3)


def test_class_axis_and_batch_dimensions(rng):
    probs, labels = random_predictions(rng, n=24, k=3)
    grid = np.moveaxis(probs.reshape(4, 6, 3), -1, 1)  # (4, 3, 6), class axis 1
    grid_labels = labels.reshape(4, 6)
    assert float(expected_calibration_error(grid, grid_labels, axis=1)) == pytest.approx(
        ece_loop(probs, labels, 15), rel=1e-12, abs=1e-15
    )
    assert float(brier_score(grid, grid_labels, axis=1)) == pytest.approx(brier_loop(probs, labels), rel=1e-13)


def test_empty_batch_is_nan():
    probs, labels = np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    assert math.isnan(float(expected_calibration_error(probs, labels)))
    assert math.isnan(float(brier_score(probs, labels)))
    assert reliability_diagram(probs, labels, n_bins=3).counts.tolist() == [0, 0, 0]


def test_every_backend_returns_native_arrays_equal_to_the_loop(backend, rng):
    probs, labels = random_predictions(rng, n=40, k=5)
    pb, lb = backend.asarray(probs), backend.asarray(labels)
    ece = backend.call(expected_calibration_error, pb, lb, n_bins=8)
    brier = backend.call(brier_score, pb, lb)
    diagram = backend.call(reliability_diagram, pb, lb, n_bins=8)
    for value in (ece, brier, *diagram):
        assert backend.is_native(value)
    ece_np = backend.to_numpy(ece)
    tol = 1e-12 if ece_np.dtype == np.float64 else 2e-6
    # float32 rounding of the inputs may move a confidence across an edge: compare with the
    # loop run on the very values the backend saw.
    seen = backend.to_numpy(pb).astype(np.float64)
    assert float(ece_np) == pytest.approx(ece_loop(seen, labels, 8), rel=tol, abs=tol)
    assert float(backend.to_numpy(brier)) == pytest.approx(brier_loop(seen, labels), rel=tol)
    counts, confidence, accuracy = diagram_loop(seen, labels, 8)
    edges_np, confidence_np, accuracy_np, counts_np = (backend.to_numpy(v) for v in diagram)
    np.testing.assert_allclose(edges_np, np.arange(9) / 8, rtol=tol)
    np.testing.assert_array_equal(counts_np, counts)
    np.testing.assert_allclose(confidence_np, confidence, rtol=tol)
    np.testing.assert_allclose(accuracy_np, accuracy, rtol=tol)


def test_invalid_values_poison_traced_results(backend):
    if backend.eager:
        pytest.skip("eager backends raise (tested below)")
    probs = backend.asarray(HAND_PROBS)
    for labels in (np.array([0, 0, 3, 1]), np.array([0, 0, -1, 1])):
        lb = backend.asarray(labels)
        assert np.isnan(backend.to_numpy(backend.call(expected_calibration_error, probs, lb)))
        assert np.isnan(backend.to_numpy(backend.call(brier_score, probs, lb)))
        diagram = backend.call(reliability_diagram, probs, lb, n_bins=4)
        assert np.isnan(backend.to_numpy(diagram.accuracy)).all()
    bad = backend.asarray(HAND_PROBS * 2.0)
    assert np.isnan(backend.to_numpy(backend.call(expected_calibration_error, bad, backend.asarray(HAND_LABELS))))


def test_dtype_is_preserved():
    torch = pytest.importorskip("torch")
    probs = torch.tensor(HAND_PROBS, dtype=torch.float16)
    labels = torch.tensor(HAND_LABELS)
    assert expected_calibration_error(probs, labels, n_bins=4).dtype == torch.float16
    assert float(expected_calibration_error(probs, labels, n_bins=4)) == float(torch.tensor(0.4625).half())
    assert brier_score(probs.float(), labels).dtype == torch.float32
    diagram = reliability_diagram(probs, labels, n_bins=4)
    assert diagram.edges.dtype == diagram.accuracy.dtype == torch.float16
    assert diagram.counts.dtype == torch.int64


def test_errors_name_the_argument():
    with pytest.raises(
        ValueError,
        match=r"probs must be probabilities in \[0, 1\] \(apply softmax to logits first\), got a value of 2.0",
    ):
        expected_calibration_error(HAND_PROBS * 4, HAND_LABELS)
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 3\), got a label of 3"):
        brier_score(HAND_PROBS, np.array([0, 3, 0, 0]))
    with pytest.raises(
        ValueError, match=r"labels must have the shape of probs without the class axis, \(4,\), got shape \(3,\)"
    ):
        reliability_diagram(HAND_PROBS, HAND_LABELS[:3])
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        expected_calibration_error(HAND_PROBS, HAND_LABELS.astype(float))
    with pytest.raises(TypeError, match="probs must have a real floating dtype"):
        brier_score(HAND_LABELS[:, None], HAND_LABELS)
    with pytest.raises(ValueError, match="n_bins must be a positive int, got 0"):
        expected_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=0)
    with pytest.raises(TypeError, match=r"n_bins must be a positive int, got 2\.5"):
        reliability_diagram(HAND_PROBS, HAND_LABELS, n_bins=2.5)
    with pytest.raises(ValueError, match="probs must have at least one dimension"):
        brier_score(np.float64(0.5) * np.ones(()), np.zeros((), dtype=np.int64))


def test_inputs_are_not_modified():
    probs, labels = HAND_PROBS.copy(), HAND_LABELS.copy()
    probs.flags.writeable = False
    labels.flags.writeable = False
    expected_calibration_error(probs, labels)
    reliability_diagram(probs, labels)
    brier_score(probs, labels)
    np.testing.assert_array_equal(probs, HAND_PROBS)
