"""Calibration errors: norms, equal-mass bins, classwise and binary, and the two binning conventions.

The truth is independent of labelsmooth: torchmetrics (its multiclass and binary
calibration errors and its own bucketing), ``torch.linspace``, NumPy's inverted-CDF
quantiles, plain Python loops written from the definitions, and numbers worked by hand.
"""

from __future__ import annotations

import importlib.util
import math
from fractions import Fraction

import numpy as np
import pytest

from labelsmooth.metrics import (
    binary_calibration_error,
    classwise_calibration_error,
    expected_calibration_error,
)

NORMS = ["l1", "l2", "max"]
FLOATS = [np.float32, np.float64]


# ---------------------------------------------------------------- plain-loop references


def binned_error(conf, outcome, members_of, norm):
    """The calibration error of one column from explicit bin memberships (lists of sample indices)."""
    n = len(conf)
    terms = []
    for members in members_of:
        if not members:
            continue
        accuracy = sum(outcome[i] for i in members) / len(members)
        confidence = sum(conf[i] for i in members) / len(members)
        terms.append((len(members) / n, abs(accuracy - confidence)))
    if norm == "l1":
        return sum(w * g for w, g in terms)
    if norm == "l2":
        return math.sqrt(sum(w * g * g for w, g in terms))
    return max(g for _, g in terms)


def guo_members(conf, n_bins):
    """Bins ((b-1)/B, b/B] compared in float64, the first closed at 0 (data off the edges only)."""
    return [
        [i for i, c in enumerate(conf) if (b == 0 and c == 0) or b / n_bins < c <= (b + 1) / n_bins]
        for b in range(n_bins)
    ]


def quantile_members(conf, n_bins):
    """Equal-mass bins from NumPy's inverted-CDF quantiles: [0, e_1], (e_1, e_2], ..., (e_{B-1}, 1]."""
    inner = [float(np.quantile(conf, b / n_bins, method="inverted_cdf")) for b in range(1, n_bins)]
    lows, highs = [-math.inf, *inner], [*inner, math.inf]
    return [[i for i, c in enumerate(conf) if lo < c <= hi] for lo, hi in zip(lows, highs)]


def top_label(probs, labels):
    return probs.max(1), (probs.argmax(1) == labels).astype(float)


def random_predictions(rng, n=300, k=5):
    logits = rng.normal(scale=2.0, size=(n, k))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = np.where(rng.random(n) < 0.7, probs.argmax(1), rng.integers(0, k, size=n))
    return probs, labels


# ---------------------------------------------------------------- worked by hand, "guo"

# The 4-sample example of tests/test_metrics.py with 4 bins: bin (0, .25] empty,
# (.25, .5]: one sample, accuracy 1, confidence .5; (.5, .75]: two, accuracy 0,
# confidence .675; (.75, 1]: one, accuracy 1, confidence 1.
HAND_PROBS = np.array([[0.5, 0.25, 0.25], [0.25, 0.75, 0.0], [0.0, 0.0, 1.0], [0.6, 0.4, 0.0]])
HAND_LABELS = np.array([0, 0, 2, 1])


@pytest.mark.parametrize(
    ("norm", "expected"),
    [
        ("l1", (0.5 + 2 * 0.675) / 4),
        ("l2", math.sqrt((0.5**2 + 2 * 0.675**2) / 4)),
        ("max", 0.675),
    ],
)
def test_norms_by_hand(norm, expected):
    assert float(expected_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=4, norm=norm)) == pytest.approx(
        expected, rel=1e-14
    )


@pytest.mark.parametrize(
    ("dtype", "k", "n_bins"),
    [
        # Each dtype(k / B) is its dtype's nearest number to the edge k/B and lies above k/B exactly.
        (np.float32, 3, 10),  # 0.30000001192...
        (np.float32, 1, 3),  # 0.33333334326...
        (np.float32, 4, 5),  # 0.80000001192...
        (np.float64, 1, 10),  # 0.10000000000000000555...
        (np.float64, 1, 5),  # 0.20000000000000001110...
        (np.float16, 7, 10),  # 0.7001953125
    ],
)
def test_guo_puts_a_confidence_on_an_edge_in_the_lower_bin_in_every_dtype(dtype, k, n_bins):
    # c (positive) on the edge and a sample in the middle of the bin below it (negative).
    # Same bin: |1 - (c + m)| / 2; the bin above for c would give (|1 - c| + m) / 2.
    c = float(dtype(k / n_bins))
    m = float(dtype((k - 0.5) / n_bins))
    assert Fraction(c) > Fraction(k, n_bins)
    expected, other = abs(1 - c - m) / 2, (abs(1 - c) + m) / 2
    assert abs(expected - other) > min(m, 1 - c) / 2  # they differ by min(m, 1 - c)
    tol = 2e-3 if dtype == np.float16 else 1e-6
    result = binary_calibration_error(np.array([c, m], dtype=dtype), np.array([1, 0]), n_bins=n_bins)
    assert result.dtype == dtype
    assert float(result) == pytest.approx(expected, abs=tol)
    # Top-label: rows (c, 0) right and (m, 0) wrong. Classwise: class 0 as above; class 1's
    # probabilities 0, 0 (outcomes 0, 1) are in the first bin: |1 - 0| / 2.
    rows, labels = np.array([[c, 0.0], [m, 0.0]], dtype=dtype), np.array([0, 1])
    assert float(expected_calibration_error(rows, labels, n_bins=n_bins)) == pytest.approx(expected, abs=tol)
    result = classwise_calibration_error(rows, labels, n_bins=n_bins)
    assert float(result) == pytest.approx((expected + 0.5) / 2, abs=tol)


def test_float32_and_float64_point_three_share_a_bin_under_guo_not_under_torchmetrics_binary():
    # B = 10: 0.3 (positive) and 0.35 (negative). One bin: |1 - 0.65| / 2 = 0.175; two: (0.7 + 0.35) / 2.
    labels = np.array([1, 0])
    for dtype in FLOATS:
        probs = np.array([0.3, 0.35], dtype=dtype)
        assert float(binary_calibration_error(probs, labels, n_bins=10)) == pytest.approx(0.525, abs=1e-6)
    # torchmetrics' edge t_3 = fl(3 fl(0.1)) is 0.3f in float32 but 0.30000000000000004 in float64.
    tm = binary_calibration_error(np.array([0.3, 0.35], np.float32), labels, n_bins=10, convention="torchmetrics")
    assert float(tm) == pytest.approx(0.175, abs=1e-6)
    tm = binary_calibration_error(np.array([0.3, 0.35]), labels, n_bins=10, convention="torchmetrics")
    assert float(tm) == pytest.approx(0.525, abs=1e-12)


def test_confidence_zero_is_in_the_first_bin_and_one_in_the_last():
    # Binary, B = 2: [0, .5] holds 0, 0 (labels 0, 1); (.5, 1] holds .8 (label 1).
    probs, labels = np.array([0.0, 0.0, 0.8]), np.array([0, 1, 1])
    assert float(binary_calibration_error(probs, labels, n_bins=2)) == pytest.approx((1 + 0.2) / 3, rel=1e-14)
    assert float(binary_calibration_error(probs, labels, n_bins=2, norm="l2")) == pytest.approx(
        math.sqrt((2 * 0.5**2 + 0.2**2) / 3), rel=1e-14
    )
    assert float(binary_calibration_error(probs, labels, n_bins=2, norm="max")) == pytest.approx(0.5, rel=1e-14)
    # Top-label: an all-zero row has confidence 0 (predicted class 0, right here).
    probs, labels = np.array([[0.0, 0.0], [0.9, 0.1]]), np.array([0, 0])
    assert float(expected_calibration_error(probs, labels, n_bins=2)) == pytest.approx((1 + 0.1) / 2, rel=1e-14)
    # 1.0 shares the last bin with 0.95 under "guo" (|1 - 1.95| / 2), has its own under
    # "torchmetrics" ((|1 - 0.95| + |0 - 1|) / 2).
    probs, labels = np.array([0.95, 1.0]), np.array([1, 0])
    assert float(binary_calibration_error(probs, labels, n_bins=10)) == pytest.approx(0.475, rel=1e-14)
    tm = binary_calibration_error(probs, labels, n_bins=10, convention="torchmetrics")
    assert float(tm) == pytest.approx(0.525, rel=1e-14)


def test_one_bin_is_the_gap_of_the_means():
    probs, labels = random_predictions(np.random.default_rng(3), n=50)
    conf, correct = top_label(probs, labels)
    for norm in NORMS:
        assert float(expected_calibration_error(probs, labels, n_bins=1, norm=norm)) == pytest.approx(
            abs(correct.mean() - conf.mean()), rel=1e-13
        )


# ---------------------------------------------------------------- equal-mass bins


def test_quantile_bins_by_hand():
    # N = 7, B = 3: edges c_(ceil(7/3)) = c_(3) = .3 and c_(ceil(14/3)) = c_(5) = .6;
    # bins [0, .3] = {.1, .2, .3}, (.3, .6] = {.4, .6}, (.6, 1] = {.9, .95} (sizes 3, 2, 2).
    probs = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.9, 0.95])
    labels = np.array([0, 1, 0, 1, 1, 0, 1])
    # gaps: |1 - .6| = .4, |2 - 1.0| = 1.0, |1 - 1.85| = .85
    expected = {"l1": 2.25 / 7, "l2": math.sqrt((0.4**2 / 3 + 1.0**2 / 2 + 0.85**2 / 2) / 7), "max": 0.5}
    order = np.random.default_rng(0).permutation(7)  # the order of the samples does not matter
    for norm, value in expected.items():
        for p, y in ((probs, labels), (probs[order], labels[order])):
            result = binary_calibration_error(p, y, n_bins=3, strategy="quantile", norm=norm)
            assert float(result) == pytest.approx(value, rel=1e-14)


def test_quantile_ties_go_whole_to_the_lower_bin():
    # N = 6, B = 3: both inner edges are c_(2) = c_(4) = .2, so [0, .2] holds the four
    # samples .1, .2, .2, .2, the middle bin (.2, .2] is empty and (.2, 1] holds .6, .9.
    probs = np.array([0.2, 0.9, 0.1, 0.2, 0.6, 0.2])
    labels = np.array([1, 1, 0, 0, 1, 1])
    # gaps: |2 - .7| = 1.3 over 4 samples, |2 - 1.5| = .5 over 2
    assert float(binary_calibration_error(probs, labels, n_bins=3, strategy="quantile")) == pytest.approx(
        1.8 / 6, rel=1e-14
    )
    result = binary_calibration_error(probs, labels, n_bins=3, strategy="quantile", norm="max")
    assert float(result) == pytest.approx(1.3 / 4, rel=1e-14)


def test_quantile_with_more_bins_than_samples():
    # N = 2, B = 5: edges c_(1), c_(1), c_(2), c_(2) = .3, .3, .8, .8: bins {.3}, {}, {.8}, {}, {}.
    probs, labels = np.array([0.8, 0.3]), np.array([0, 1])
    assert float(binary_calibration_error(probs, labels, n_bins=5, strategy="quantile")) == pytest.approx(
        (0.7 + 0.8) / 2, rel=1e-14
    )


@pytest.mark.parametrize("n_bins", [1, 2, 7, 10, 15])
@pytest.mark.parametrize("norm", NORMS)
def test_quantile_matches_numpy_inverted_cdf_quantiles(rng, n_bins, norm):
    probs, labels = random_predictions(rng, n=203)
    # Rounded to 2 digits: many ties, some of them across the edges.
    probs = np.round(probs, 2)
    conf, correct = top_label(probs, labels)
    expected = binned_error(conf, correct, quantile_members(conf, n_bins), norm)
    result = expected_calibration_error(probs, labels, n_bins=n_bins, strategy="quantile", norm=norm)
    assert float(result) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    sizes = [len(m) for m in quantile_members(np.unique(conf), n_bins)]
    assert max(sizes) - min(sizes) <= 1  # without ties: equal mass, to one sample


@pytest.mark.parametrize("n_bins", [1, 4, 15])
@pytest.mark.parametrize("norm", NORMS)
def test_uniform_norms_match_the_loop(rng, n_bins, norm):
    probs, labels = random_predictions(rng)
    conf, correct = top_label(probs, labels)
    expected = binned_error(conf, correct, guo_members(conf, n_bins), norm)
    assert float(expected_calibration_error(probs, labels, n_bins=n_bins, norm=norm)) == pytest.approx(
        expected, rel=1e-12, abs=1e-15
    )


# ---------------------------------------------------------------- classwise


def test_classwise_by_hand():
    # B = 2, bins [0, .5], (.5, 1]. Class 0: p = .6, .2, .5, in class 1, 1, 0: |1 - .7| + |1 - .6|;
    # class 1: .3, .7, .1, never the class: |0 - .4| + |0 - .7|; class 2: .1, .1, .4, once: |1 - .6|.
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])
    labels = np.array([0, 0, 2])
    assert float(classwise_calibration_error(probs, labels, n_bins=2)) == pytest.approx(
        (0.7 + 1.1 + 0.4) / 9, rel=1e-14
    )
    # max: class 0 max(.3 / 2, .4), class 1 max(.4 / 2, .7), class 2 .4 / 3
    assert float(classwise_calibration_error(probs, labels, n_bins=2, norm="max")) == pytest.approx(
        (0.4 + 0.7 + 0.4 / 3) / 3, rel=1e-14
    )


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("norm", NORMS)
def test_classwise_matches_the_loop(rng, strategy, norm):
    probs, labels = random_predictions(rng, n=120, k=4)
    members = guo_members if strategy == "uniform" else quantile_members
    expected = np.mean(
        [binned_error(probs[:, k], (labels == k).astype(float), members(probs[:, k], 10), norm) for k in range(4)]
    )
    result = classwise_calibration_error(probs, labels, n_bins=10, norm=norm, strategy=strategy)
    assert float(result) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_classwise_class_axis(rng):
    probs, labels = random_predictions(rng, n=24, k=3)
    grid = np.moveaxis(probs.reshape(4, 6, 3), -1, 1)
    expected = np.mean([binned_error(probs[:, k], labels == k, guo_members(probs[:, k], 5), "l1") for k in range(3)])
    result = classwise_calibration_error(grid, labels.reshape(4, 6), n_bins=5, axis=1)
    assert float(result) == pytest.approx(expected, rel=1e-12)


@pytest.mark.skipif(importlib.util.find_spec("netcal") is None, reason="netcal is not installed")
def test_ece_matches_netcal(rng):
    from netcal.metrics import ECE

    probs, labels = random_predictions(rng)
    expected = ECE(bins=10).measure(probs, labels)
    assert float(expected_calibration_error(probs, labels, n_bins=10)) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- torchmetrics

if importlib.util.find_spec("torch") is not None and importlib.util.find_spec("torchmetrics") is not None:
    import torch
    import torchmetrics.functional.classification as tm_classification

    TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}
else:
    torch = tm_classification = None
N_BINS = [1, 10, 15]

needs_torchmetrics = pytest.mark.skipif(torch is None, reason="torch and torchmetrics are not installed")


def linspace_has_fma() -> bool:
    """Whether this PyTorch build's CPU linspace rounds each edge once (AVX2 / AVX-512 kernels)."""
    return torch is not None and torch.linspace(0, 1, 10, dtype=torch.float32)[6].item() == 0.6666666865348816


needs_fma_linspace = pytest.mark.skipif(
    not linspace_has_fma(),
    reason="torchmetrics is not installed, or this PyTorch build's linspace rounds j*step before subtracting (no FMA)",
)


def edge_values(n_bins, dtype):
    """torchmetrics' edges in ``dtype`` and their neighbours, the correctly rounded k/B, 0 and 1."""
    edges = torch.linspace(0, 1, n_bins + 1, dtype=TORCH_DTYPES[dtype]).numpy()
    values = [
        edges,
        np.nextafter(edges, dtype(-1)),
        np.nextafter(edges, dtype(2)),
        (np.arange(n_bins + 1) / n_bins).astype(dtype),
    ]
    values = np.concatenate(values)
    return np.unique(np.concatenate([values[(values >= 0) & (values <= 1)], np.array([0.0, 1.0], dtype)]))


def probe_batches(candidates, n_bins, dtype):
    """One batch per candidate c: c beside a sample at every bin's middle, with opposite outcomes.

    Moving c to an adjacent bin changes the l1 error by about 2 / (B (B + 1)), far beyond
    float32 rounding: a wrong bin cannot pass.
    """
    middles = ((np.arange(n_bins) + 0.5) / n_bins).astype(dtype)
    for c in candidates:
        outcome = 1 if c < 0.5 else 0
        yield np.concatenate([[c], middles]).astype(dtype), np.array([outcome] + [1 - outcome] * n_bins)


def multiclass_rows(confidences, rng):
    """Rows of 3 classes whose largest entry is exactly ``confidences`` (rows need not sum to 1)."""
    c = confidences[:, None]
    rows = np.concatenate([c, c * rng.uniform(0, 0.99, size=c.shape), c * rng.uniform(0, 0.99, size=c.shape)], 1)
    return np.take_along_axis(rows, rng.permuted(np.tile([0, 1, 2], (len(c), 1)), axis=1), 1).astype(confidences.dtype)


def tm_tol(dtype):
    # torchmetrics sums in the confidences' dtype (float32 for multiclass); labelsmooth in float64.
    return {"rel": 1e-5, "abs": 1e-6} if dtype == np.float32 else {"rel": 1e-12, "abs": 1e-14}


@needs_fma_linspace
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n_bins", N_BINS)
def test_edges_are_torch_linspace(dtype, n_bins):
    from labelsmooth.metrics import _float_format, _uniform_edges

    for torch_dtype in (TORCH_DTYPES[dtype], torch.float16, torch.bfloat16):
        for n in (n_bins, n_bins + 2, 3 * n_bins + 7):
            expected = torch.linspace(0, 1, n + 1, dtype=torch_dtype).double().tolist()
            assert list(_uniform_edges(n, _float_format(torch, torch_dtype), "torchmetrics")) == expected


@needs_fma_linspace
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n_bins", N_BINS)
@pytest.mark.parametrize("norm", NORMS)
def test_binary_matches_torchmetrics_on_every_edge(dtype, n_bins, norm):
    for probs, labels in probe_batches(edge_values(n_bins, dtype), n_bins, dtype):
        expected = tm_classification.binary_calibration_error(
            torch.from_numpy(probs), torch.from_numpy(labels), n_bins=n_bins, norm=norm
        )
        for p, y in ((probs, labels), (torch.from_numpy(probs), torch.from_numpy(labels))):
            result = binary_calibration_error(p, y, n_bins=n_bins, norm=norm, convention="torchmetrics")
            assert float(result) == pytest.approx(float(expected), **tm_tol(dtype)), (probs[0], float(expected))


@needs_fma_linspace
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n_bins", N_BINS)
@pytest.mark.parametrize("norm", NORMS)
def test_multiclass_matches_torchmetrics_on_every_edge(dtype, n_bins, norm):
    rng = np.random.default_rng(n_bins)
    # torchmetrics bins float32 confidences: the float32 edges and their float64 neighbours.
    candidates = edge_values(n_bins, np.float32).astype(dtype)
    if dtype == np.float64:
        candidates = np.unique(
            np.concatenate([candidates, np.nextafter(candidates, 2.0), np.nextafter(candidates, -1.0)])
        )
        candidates = candidates[(candidates >= 0) & (candidates <= 1)]
    for confidences, correct in probe_batches(candidates, n_bins, dtype):
        probs = multiclass_rows(confidences, rng)
        predicted = probs.argmax(1)
        labels = np.where(correct == 1, predicted, (predicted + 1) % 3)
        expected = tm_classification.multiclass_calibration_error(
            torch.from_numpy(probs), torch.from_numpy(labels), num_classes=3, n_bins=n_bins, norm=norm
        )
        result = expected_calibration_error(probs, labels, n_bins=n_bins, norm=norm, convention="torchmetrics")
        assert float(result) == pytest.approx(float(expected), **tm_tol(np.float32)), (confidences[0], float(expected))


@needs_fma_linspace
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n_bins", N_BINS)
def test_bin_counts_match_torchmetrics_bucketize(dtype, n_bins):
    from torchmetrics.functional.classification.calibration_error import _binning_bucketize

    from labelsmooth.metrics import _bin_statistics, _positive_class

    conf = edge_values(n_bins, dtype)
    outcome = (np.arange(len(conf)) % 2).astype(np.int64)
    bounds = torch.linspace(0, 1, n_bins + 1, dtype=TORCH_DTYPES[dtype])
    _, _, prop = _binning_bucketize(torch.from_numpy(conf), torch.from_numpy(outcome), bounds)
    counts, _, _ = _bin_statistics(_positive_class(conf, outcome, None), n_bins, "uniform", "torchmetrics")
    np.testing.assert_array_equal(counts[:, 0], np.round(prop.double().numpy() * len(conf)))
    assert counts[-1, 0] == np.sum(conf == 1.0) > 0  # the extra bin holds exactly the 1.0s


@needs_torchmetrics
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n_bins", N_BINS)
@pytest.mark.parametrize("norm", NORMS)
def test_random_batches_match_torchmetrics(dtype, n_bins, norm):
    rng = np.random.default_rng(17 + n_bins)
    probs, labels = random_predictions(rng, n=500, k=4)
    probs = probs.astype(dtype)
    probs[:3] = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.0, 0.0]], dtype)
    tp, tl = torch.from_numpy(probs), torch.from_numpy(labels)
    expected = tm_classification.multiclass_calibration_error(tp, tl, num_classes=4, n_bins=n_bins, norm=norm)
    result = expected_calibration_error(tp, tl, n_bins=n_bins, norm=norm, convention="torchmetrics")
    assert result.dtype == TORCH_DTYPES[dtype]
    assert float(result) == pytest.approx(float(expected), **tm_tol(np.float32))
    # binary on the probability of class 0, and classwise as torchmetrics' binary error per class
    positive = (labels == 0).astype(np.int64)
    expected = tm_classification.binary_calibration_error(
        tp[:, 0].contiguous(), torch.from_numpy(positive), n_bins=n_bins, norm=norm
    )
    result = binary_calibration_error(probs[:, 0], positive, n_bins=n_bins, norm=norm, convention="torchmetrics")
    assert float(result) == pytest.approx(float(expected), **tm_tol(dtype))
    expected = np.mean(
        [
            float(
                tm_classification.binary_calibration_error(
                    tp[:, k].contiguous(), (tl == k).long(), n_bins=n_bins, norm=norm
                )
            )
            for k in range(4)
        ]
    )
    result = classwise_calibration_error(probs, labels, n_bins=n_bins, norm=norm, convention="torchmetrics")
    assert float(result) == pytest.approx(expected, **tm_tol(dtype))


@needs_torchmetrics
def test_torchmetrics_convention_differs_from_guo_on_edges():
    # B = 5, confidence 0.6 (right) and 0.7 (wrong): "guo" (0.4, 0.6] and (0.6, 0.8] give
    # (0.4 + 0.7) / 2; torchmetrics' [0.6, 0.8) holds both: |1 - 1.3| / 2.
    probs, labels = np.array([[0.6, 0.4], [0.7, 0.3]]), np.array([0, 1])
    assert float(expected_calibration_error(probs, labels, n_bins=5)) == pytest.approx(0.55, rel=1e-14)
    expected = tm_classification.multiclass_calibration_error(
        torch.from_numpy(probs), torch.from_numpy(labels), num_classes=2, n_bins=5
    )
    assert float(expected) == pytest.approx(0.15, abs=1e-6)
    assert float(expected_calibration_error(probs, labels, n_bins=5, convention="torchmetrics")) == pytest.approx(
        float(expected), abs=1e-6
    )


# ---------------------------------------------------------------- backends, dtypes, errors


@pytest.mark.parametrize(
    ("strategy", "convention"), [("uniform", "guo"), ("quantile", "guo"), ("uniform", "torchmetrics")]
)
def test_every_backend_matches_the_loop(backend, strategy, convention):
    rng = np.random.default_rng(5)
    probs, labels = random_predictions(rng, n=40, k=3)
    pb, lb = backend.asarray(probs), backend.asarray(labels)
    seen = backend.to_numpy(pb).astype(np.float64)
    tol = 1e-12 if backend.to_numpy(pb).dtype == np.float64 else 2e-6
    members = quantile_members if strategy == "quantile" else guo_members  # random data: no edge is hit
    conf, correct = top_label(seen, labels)
    for norm in NORMS:
        options = {"n_bins": 6, "norm": norm, "strategy": strategy, "convention": convention}
        ece = backend.call(expected_calibration_error, pb, lb, **options)
        cw = backend.call(classwise_calibration_error, pb, lb, **options)
        positive = backend.asarray((labels == 1).astype(np.int64))
        binary = backend.call(binary_calibration_error, pb[:, 1], positive, **options)
        for value in (ece, cw, binary):
            assert backend.is_native(value)
        if convention == "torchmetrics":
            conf_seen = conf.astype(np.float32).astype(np.float64)
        else:
            conf_seen = conf
        expected = binned_error(conf_seen, correct, members(conf_seen, 6), norm)
        assert float(backend.to_numpy(ece)) == pytest.approx(expected, rel=tol, abs=tol)
        expected = np.mean([binned_error(seen[:, k], labels == k, members(seen[:, k], 6), norm) for k in range(3)])
        assert float(backend.to_numpy(cw)) == pytest.approx(expected, rel=tol, abs=tol)
        expected = binned_error(seen[:, 1], labels == 1, members(seen[:, 1], 6), norm)
        assert float(backend.to_numpy(binary)) == pytest.approx(expected, rel=tol, abs=tol)


def test_invalid_values_poison_traced_results(backend):
    if backend.eager:
        pytest.skip("eager backends raise (tested below)")
    probs = backend.asarray(np.array([0.2, 0.9, 0.4]))
    for labels in (np.array([0, 2, 1]), np.array([0, -1, 1])):
        value = backend.call(binary_calibration_error, probs, backend.asarray(labels), strategy="quantile")
        assert np.isnan(backend.to_numpy(value))
    value = backend.call(classwise_calibration_error, backend.asarray(HAND_PROBS * 2.0), backend.asarray(HAND_LABELS))
    assert np.isnan(backend.to_numpy(value))


def test_empty_batches_are_nan():
    for strategy in ("uniform", "quantile"):
        for norm in NORMS:
            options = {"n_bins": 4, "norm": norm, "strategy": strategy}
            assert math.isnan(float(binary_calibration_error(np.zeros(0), np.zeros(0, dtype=np.int64), **options)))
            empty, no_labels = np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
            assert math.isnan(float(classwise_calibration_error(empty, no_labels, **options)))
            assert math.isnan(float(expected_calibration_error(empty, no_labels, **options)))


@needs_torchmetrics
def test_dtypes_are_preserved():
    probs = torch.tensor(HAND_PROBS, dtype=torch.float16)
    labels = torch.tensor(HAND_LABELS)
    for convention in ("guo", "torchmetrics"):
        assert expected_calibration_error(probs, labels, norm="l2", convention=convention).dtype == torch.float16
        assert classwise_calibration_error(probs.float(), labels, convention=convention).dtype == torch.float32
    assert binary_calibration_error(probs[:, 0], (labels == 0).long(), strategy="quantile").dtype == torch.float16
    # Any shape: every element is a sample.
    grid = np.array([[0.1, 0.7], [0.9, 0.4]])
    assert float(binary_calibration_error(grid, np.array([[0, 1], [1, 0]]), n_bins=2)) == pytest.approx(
        (0.5 + 0.4) / 4, rel=1e-14
    )


def test_errors_name_the_argument():
    probs, labels = np.array([0.2, 0.7]), np.array([0, 1])
    with pytest.raises(ValueError, match=r"norm must be one of 'l1', 'l2', 'max', got 'l3'"):
        binary_calibration_error(probs, labels, norm="l3")
    with pytest.raises(TypeError, match=r"norm must be a str, one of 'l1', 'l2', 'max', got 1 of type int"):
        expected_calibration_error(HAND_PROBS, HAND_LABELS, norm=1)
    with pytest.raises(ValueError, match=r"strategy must be one of 'uniform', 'quantile', got 'adaptive'"):
        classwise_calibration_error(HAND_PROBS, HAND_LABELS, strategy="adaptive")
    with pytest.raises(ValueError, match=r"convention must be one of 'guo', 'torchmetrics', got 'sklearn'"):
        expected_calibration_error(HAND_PROBS, HAND_LABELS, convention="sklearn")
    with pytest.raises(TypeError, match=r"convention must be a str, one of 'guo', 'torchmetrics', got None"):
        expected_calibration_error(HAND_PROBS, HAND_LABELS, convention=None)
    with pytest.raises(
        ValueError, match=r"strategy must be 'uniform' with convention='torchmetrics' \(.*\), got 'quantile'"
    ):
        binary_calibration_error(probs, labels, strategy="quantile", convention="torchmetrics")
    with pytest.raises(ValueError, match=r"labels must be 0 or 1 \(1 is the positive class\), got a label of 2"):
        binary_calibration_error(probs, np.array([0, 2]))
    with pytest.raises(ValueError, match=r"labels must have the shape of probs, \(2,\), got shape \(3,\)"):
        binary_calibration_error(probs, np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"probs must be probabilities in \[0, 1\] .*, got a value of 1.5"):
        binary_calibration_error(np.array([0.2, 1.5]), labels)
    with pytest.raises(TypeError, match="labels must have an integer dtype, got dtype float64"):
        binary_calibration_error(probs, labels.astype(float))
    with pytest.raises(TypeError, match="probs must have a real floating dtype, got dtype int64"):
        binary_calibration_error(labels, labels)
    with pytest.raises(ValueError, match="n_bins must be a positive int, got 0"):
        classwise_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=0)
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 3\), got a label of 3"):
        classwise_calibration_error(HAND_PROBS, np.array([0, 3, 0, 0]))
