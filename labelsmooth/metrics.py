"""Calibration metrics: expected calibration error, Brier score, reliability diagrams.

Label smoothing is often chosen for what it does to calibration (Müller, Kornblith and
Hinton 2019, "When Does Label Smoothing Help?"); these functions measure it on any array
library. Every result has a shape fixed by the arguments (no data-dependent shapes), so
they run under ``jax.jit`` and build lazy Dask graphs.

``probs`` are predicted class probabilities (e.g. ``softmax(logits)``) with the class
axis ``axis``; ``labels`` are integer classes with ``probs``' shape without that axis.
:func:`binary_calibration_error` takes the positive-class probability instead.

Bin edges are static numbers worked out exactly (in rational arithmetic) on the host for
the dtype they are compared in, so a confidence that lies on an edge falls into the same
bin on every backend; see the Notes of :func:`expected_calibration_error`.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Any, NamedTuple

from ._backend import (
    accumulation_dtype,
    compute_dtype,
    device_of,
    namespace_of,
    values_checkable,
)
from ._validation import (
    check_choice,
    check_positive_int,
    first_value,
    normalize_axis,
    require_integer,
    require_real_floating,
)
from .typing import CalibrationConvention, CalibrationNorm, CalibrationStrategy

__all__ = [
    "ReliabilityDiagram",
    "binary_calibration_error",
    "brier_score",
    "classwise_calibration_error",
    "expected_calibration_error",
    "reliability_diagram",
]

_NAN = float("nan")

_NORMS = ("l1", "l2", "max")
_STRATEGIES = ("uniform", "quantile")
_CONVENTIONS = ("guo", "torchmetrics")

# (significant bits, smallest normal exponent) of IEEE float32.
_FLOAT32_FORMAT = (24, -126)


# The end of the parameters and the returns of the two scalar metrics.
_AXIS_XP_RETURNS_DOC = """\
    axis : int, default -1
        Class axis of ``probs``.
    xp : array namespace, optional
        Inferred from the arrays when None.

    Returns
    -------
    array
        0-d, dtype of ``probs``. NaN for an empty batch.
"""


class ReliabilityDiagram(NamedTuple):
    """Per-bin data of a reliability diagram (arrays of the input's library).

    Attributes
    ----------
    edges : array of shape (n_bins + 1,)
        Bin edges ``k / n_bins`` rounded to the nearest number of ``probs``' dtype; bin
        ``b`` holds confidences in ``(edges[b], edges[b+1]]``, bin 0 also a confidence of 0.
    confidence : array of shape (n_bins,)
        Mean top-label confidence of the samples in each bin (NaN for an empty bin).
    accuracy : array of shape (n_bins,)
        Fraction of those samples whose top-label prediction is right (NaN when empty).
    counts : array of shape (n_bins,), integer
        Number of samples in each bin.
    """

    edges: Any
    confidence: Any
    accuracy: Any
    counts: Any


class _Columns(NamedTuple):
    """C one-dimensional calibration problems over the same N samples."""

    xp: Any
    confidence: Any  # (N, C), acc dtype: the probability that is binned
    outcome: Any  # (N, C), acc dtype, 0/1: whether the event it predicts happened
    poison: Any  # 0-d bool or None
    result_dtype: Any
    acc: Any
    edge_format: tuple[int, int]  # the floating format the confidences meet the edges in


def _prepare(probs: Any, labels: Any, axis: Any, xp: Any) -> tuple[Any, Any, Any, Any, Any, Any, Any]:
    """Validate; return (xp, class-last probs in acc dtype, flat labels, poison, result dtype, acc, K)."""
    xp = namespace_of(probs, labels, xp=xp)
    require_real_floating("probs", probs, xp)
    require_integer("labels", labels, xp)
    if probs.ndim == 0:
        msg = "probs must have at least one dimension (the class axis), got a 0-d array"
        raise ValueError(msg)
    axis = normalize_axis(axis, probs.ndim)
    shape = tuple(probs.shape)
    batch_shape = shape[:axis] + shape[axis + 1 :]
    if tuple(labels.shape) != batch_shape:
        msg = (
            f"labels must have the shape of probs without the class axis, {batch_shape}, "
            f"got shape {tuple(labels.shape)}"
        )
        raise ValueError(msg)
    num_classes = shape[axis]
    if num_classes < 1:
        msg = f"probs must have at least one class along axis {axis}, got shape {shape}"
        raise ValueError(msg)
    work = compute_dtype(xp, probs.dtype)
    acc = accumulation_dtype(xp, work, probs)
    p = xp.astype(probs, acc)
    if axis != probs.ndim - 1:
        p = xp.moveaxis(p, axis, -1)
    p = xp.reshape(p, (-1, num_classes))
    flat_labels = xp.reshape(labels, (-1,))

    bad_probs = xp.logical_not((probs >= 0) & (probs <= 1))
    bad_labels = (labels < 0) | (labels >= num_classes)
    labels_rule = f"class indices in [0, {num_classes})"
    poison = _checked(probs, labels, bad_probs, bad_labels, ("softmax", labels_rule), xp)
    if poison is not None:
        flat_labels = xp.where((flat_labels >= 0) & (flat_labels < num_classes), flat_labels, 0)
    return xp, p, flat_labels, poison, probs.dtype, acc, num_classes


def _float_format(xp: Any, dtype: Any) -> tuple[int, int]:
    """(significant bits, exponent of the smallest normal number) of a real floating dtype."""
    info = xp.finfo(dtype)
    return 1 - round(math.log2(float(info.eps))), round(math.log2(float(info.smallest_normal)))


def _round_to_format(x: Fraction, fmt: tuple[int, int]) -> Fraction:
    """The non-negative rational ``x`` rounded to the nearest number of the format (ties to even)."""
    if x == 0:
        return x
    bits, min_exponent = fmt
    exponent = x.numerator.bit_length() - x.denominator.bit_length()
    if Fraction(2) ** exponent > x:
        exponent -= 1
    ulp = Fraction(2) ** (max(exponent, min_exponent) - bits + 1)
    quotient, remainder = divmod(x, ulp)
    if remainder > ulp / 2 or (remainder == ulp / 2 and quotient % 2 == 1):
        quotient += 1
    return quotient * ulp


@functools.lru_cache(maxsize=128)
def _uniform_edges(n_bins: int, fmt: tuple[int, int], convention: str) -> tuple[float, ...]:
    """The ``n_bins + 1`` equal-width edges of a convention as numbers of the format ``fmt``.

    Every value is exactly representable in ``fmt`` (and so in any wider dtype).
    """

    def rounded(x: Fraction) -> Fraction:
        return _round_to_format(x, fmt)

    steps = n_bins + 1
    if convention == "guo":
        # b / B correctly rounded: a confidence that is the dtype's nearest value to an edge is on it.
        edges = [rounded(Fraction(b, n_bins)) for b in range(steps)]
    elif fmt[0] >= _FLOAT32_FORMAT[0]:
        # torch.linspace(0, 1, B + 1) in float32 / float64 (aten's linspace kernel): step = fl(1 / B),
        # the first half from the start, the second half from the end, each a fused multiply-add
        # rounded once (PyTorch's AVX2 and AVX-512 builds).
        step = rounded(Fraction(1, n_bins))
        halfway = steps // 2
        edges = [rounded(step * j) if j < halfway else rounded(1 - step * (steps - 1 - j)) for j in range(steps)]
    else:
        # float16 / bfloat16 (c10::Half, c10::BFloat16): every operation is done in float32 and
        # rounded to the dtype, integers converted to the dtype first.
        def through_float32(x: Fraction) -> Fraction:
            return rounded(_round_to_format(x, _FLOAT32_FORMAT))

        step = through_float32(Fraction(1) / rounded(Fraction(n_bins)))
        halfway = steps // 2
        edges = [
            through_float32(step * rounded(Fraction(j)))
            if j < halfway
            else through_float32(1 - through_float32(step * rounded(Fraction(steps - 1 - j))))
            for j in range(steps)
        ]
    return tuple(float(e) for e in edges)


def _quantile_edges(confidence: Any, n_bins: int, xp: Any) -> list[Any]:
    """Inner equal-mass edges ``c_(ceil(b N / B))``, b = 1..B-1, each of shape (C,) (none for N = 0)."""
    n = confidence.shape[0]
    if n == 0:
        return []
    ordered = xp.sort(confidence, axis=0)
    return [ordered[-(-b * n // n_bins) - 1, ...] for b in range(1, n_bins)]


def _bin_statistics(columns: _Columns, n_bins: int, strategy: str, convention: str) -> tuple[Any, Any, Any]:
    """Per-bin (count, sum of confidences, sum of outcomes), each (bins, C) in acc dtype.

    ``bins`` is ``n_bins`` for "guo" and ``n_bins + 1`` for "torchmetrics" (its bin of the
    confidences equal to 1). Each sample's bin index is a count of edges, and the sums loop
    over the bins: every shape is static and the memory is that of the inputs.
    """
    xp, acc, confidence = columns.xp, columns.acc, columns.confidence
    index = xp.zeros(confidence.shape, dtype=acc, device=device_of(confidence))
    if convention == "torchmetrics":
        # torch.bucketize(c, edges, right=True) - 1 is the number of edges e_1..e_B with e_j <= c.
        for edge in _uniform_edges(n_bins, columns.edge_format, convention)[1:]:
            index = index + xp.astype(confidence >= edge, acc)
        n_slots = n_bins + 1
    else:
        inner: list[Any]
        if strategy == "uniform":
            inner = list(_uniform_edges(n_bins, columns.edge_format, convention)[1:-1])
        else:
            inner = _quantile_edges(confidence, n_bins, xp)
        # Bins (e_{b-1}, e_b], the first one closed at 0: the number of inner edges below c.
        for edge in inner:
            index = index + xp.astype(confidence > edge, acc)
        n_slots = n_bins
    counts, confidence_sums, outcome_sums = [], [], []
    for b in range(n_slots):
        member = xp.astype(index == b, acc)
        counts.append(xp.sum(member, axis=0))
        confidence_sums.append(xp.sum(member * confidence, axis=0))
        outcome_sums.append(xp.sum(member * columns.outcome, axis=0))
    return xp.stack(counts), xp.stack(confidence_sums), xp.stack(outcome_sums)


def _calibration_error(columns: _Columns, n_bins: int, norm: str, strategy: str, convention: str) -> Any:
    """The mean over the columns of each column's calibration error, 0-d in the result dtype."""
    xp, acc = columns.xp, columns.acc
    counts, confidence_sums, outcome_sums = _bin_statistics(columns, n_bins, strategy, convention)
    n = columns.confidence.shape[0]
    if n == 0:
        return xp.astype(xp.full((), _NAN, dtype=acc, device=device_of(counts)), columns.result_dtype)
    # n_b (acc_b - conf_b) per bin; 0 for an empty bin.
    gap = outcome_sums - confidence_sums
    safe_counts = xp.where(counts > 0, counts, 1.0)
    if norm == "l1":
        per_column = xp.sum(xp.abs(gap), axis=0) / n
    elif norm == "l2":
        per_column = xp.sqrt(xp.sum(gap * gap / safe_counts, axis=0) / n)
    else:
        per_column = xp.max(xp.abs(gap) / safe_counts, axis=0)
    value = xp.mean(per_column)
    return xp.astype(_poisoned(value, columns.poison, xp), columns.result_dtype)


def _top_label(probs: Any, labels: Any, axis: Any, xp: Any, convention: str = "guo") -> _Columns:
    xp, p, flat_labels, poison, result_dtype, acc, _ = _prepare(probs, labels, axis, xp)
    confidence = xp.max(p, axis=-1)
    # argmax returns the first of tied maxima, the usual top-label convention (torch.max's too).
    predicted = xp.argmax(p, axis=-1)
    correct = xp.astype(predicted == xp.astype(flat_labels, predicted.dtype), acc)
    if convention == "torchmetrics":
        # multiclass_calibration_error bins ``confidences.float()``: float32 whatever the dtype.
        confidence = xp.astype(xp.astype(confidence, xp.float32), acc)
        edge_format = _FLOAT32_FORMAT
    else:
        edge_format = _float_format(xp, result_dtype)
    return _Columns(xp, confidence[:, None], correct[:, None], poison, result_dtype, acc, edge_format)


def _one_vs_rest(probs: Any, labels: Any, axis: Any, xp: Any) -> _Columns:
    xp, p, flat_labels, poison, result_dtype, acc, num_classes = _prepare(probs, labels, axis, xp)
    classes = xp.arange(num_classes, dtype=flat_labels.dtype, device=device_of(flat_labels))
    outcome = xp.astype(flat_labels[:, None] == classes, acc)
    return _Columns(xp, p, outcome, poison, result_dtype, acc, _float_format(xp, result_dtype))


def _positive_class(probs: Any, labels: Any, xp: Any) -> _Columns:
    xp = namespace_of(probs, labels, xp=xp)
    require_real_floating("probs", probs, xp)
    require_integer("labels", labels, xp)
    if tuple(labels.shape) != tuple(probs.shape):
        msg = f"labels must have the shape of probs, {tuple(probs.shape)}, got shape {tuple(labels.shape)}"
        raise ValueError(msg)
    work = compute_dtype(xp, probs.dtype)
    acc = accumulation_dtype(xp, work, probs)
    p = xp.reshape(xp.astype(probs, acc), (-1, 1))
    flat_labels = xp.reshape(labels, (-1, 1))
    bad_probs = xp.logical_not((probs >= 0) & (probs <= 1))
    bad_labels = (labels != 0) & (labels != 1)
    rules = ("a sigmoid", "0 or 1 (1 is the positive class)")
    poison = _checked(probs, labels, bad_probs, bad_labels, rules, xp)
    outcome = xp.astype(flat_labels == 1, acc)
    return _Columns(xp, p, outcome, poison, probs.dtype, acc, _float_format(xp, probs.dtype))


def _checked(probs: Any, labels: Any, bad_probs: Any, bad_labels: Any, rules: tuple[str, str], xp: Any) -> Any:
    """Raise on bad values where they can be read; else the poison flag (None when read)."""
    activation, labels_rule = rules
    if not values_checkable(probs, labels):
        return xp.any(bad_probs) | xp.any(bad_labels)
    if bool(xp.any(bad_probs)):
        msg = (
            f"probs must be probabilities in [0, 1] (apply {activation} to logits first), "
            f"got a value of {first_value(probs, bad_probs, xp)}"
        )
        raise ValueError(msg)
    if bool(xp.any(bad_labels)):
        msg = f"labels must be {labels_rule}, got a label of {first_value(labels, bad_labels, xp)}"
        raise ValueError(msg)
    return None


def _poisoned(value: Any, poison: Any, xp: Any) -> Any:
    return value if poison is None else xp.where(poison, _NAN, value)


def _safe_divide(numerator: Any, denominator: Any, xp: Any) -> Any:
    # An empty bin (or batch) gives 0/0 = NaN without a floating-point warning on NumPy.
    empty = denominator == 0
    return xp.where(empty, _NAN, numerator / xp.where(empty, 1.0, denominator))


def _sample_mean(total: Any, samples: Any, poison: Any, result_dtype: Any, acc: Any, xp: Any) -> Any:
    """``total`` over the number of rows of ``samples`` (NaN for none), poisoned, in the result dtype."""
    count = xp.asarray(float(samples.shape[0]), dtype=acc, device=device_of(samples))
    return xp.astype(_poisoned(_safe_divide(total, count, xp), poison, xp), result_dtype)


def _check_options(
    n_bins: Any, norm: Any, strategy: Any, convention: Any
) -> tuple[int, CalibrationNorm, CalibrationStrategy, CalibrationConvention]:
    n_bins = check_positive_int("n_bins", n_bins)
    norm = check_choice("norm", norm, _NORMS)
    strategy = check_choice("strategy", strategy, _STRATEGIES)
    convention = check_choice("convention", convention, _CONVENTIONS)
    if convention == "torchmetrics" and strategy != "uniform":
        msg = f"strategy must be 'uniform' with convention='torchmetrics' (its bins are equal-width), got {strategy!r}"
        raise ValueError(msg)
    return n_bins, norm, strategy, convention


def expected_calibration_error(
    probs: Any,
    labels: Any,
    /,
    *,
    n_bins: int = 15,
    norm: CalibrationNorm = "l1",
    strategy: CalibrationStrategy = "uniform",
    convention: CalibrationConvention = "guo",
    axis: int = -1,
    xp: Any = None,
) -> Any:
    n_bins, norm, strategy, convention = _check_options(n_bins, norm, strategy, convention)
    columns = _top_label(probs, labels, axis, xp, convention)
    return _calibration_error(columns, n_bins, norm, strategy, convention)


# The shared part of the three calibration errors' docstrings.
_OPTIONS_DOC = r"""    n_bins : int, default 15
        Number of bins ``B`` (15 as in Guo et al. and torchmetrics).
    norm : {"l1", "l2", "max"}, default "l1"
        ``"l1"``: the expected calibration error; ``"l2"``: the root of the bin-weighted
        mean squared gap (torchmetrics' ``norm="l2"``, without its disabled debiasing);
        ``"max"``: the maximum calibration error over the non-empty bins (Naeini, Cooper
        and Hauskrecht 2015).
    strategy : {"uniform", "quantile"}, default "uniform"
        Equal-width bins, or equal-mass bins with edges at quantiles of the confidences
        (Nixon et al. 2019's adaptive binning); see Notes.
    convention : {"guo", "torchmetrics"}, default "guo"
        Which bin a confidence on an edge (and exactly 0 or 1) belongs to, and in which
        dtype the edges are; see Notes. ``"torchmetrics"`` needs ``strategy="uniform"``.
"""

_RAISES_DOC = r"""
    Raises
    ------
    TypeError
        Non-floating ``probs``, non-integer ``labels``, a non-integer ``n_bins``, a
        ``norm``, ``strategy`` or ``convention`` that is not a str.
    ValueError
        Shape mismatch, ``n_bins < 1``, an unknown ``norm``, ``strategy`` or
        ``convention`` (or ``"quantile"`` with ``"torchmetrics"``), probabilities outside
        ``[0, 1]`` or labels out of range (eager backends; under ``jax.jit`` and on lazy
        Dask arrays the result is NaN instead).
"""

_NORMS_DOC = r"""
    With ``n_b = |S_b|`` samples in bin ``b``, ``acc_b`` the mean outcome and ``conf_b``
    the mean confidence over them (``N`` samples in all):

    .. math::

        \mathrm{ECE}_{\ell_1} = \sum_{b} \frac{n_b}{N} \lvert \mathrm{acc}_b - \mathrm{conf}_b \rvert,
        \qquad
        \mathrm{ECE}_{\ell_2} = \Bigl(\sum_{b} \frac{n_b}{N} (\mathrm{acc}_b - \mathrm{conf}_b)^2\Bigr)^{1/2},
        \qquad
        \mathrm{MCE} = \max_{b:\, n_b > 0} \lvert \mathrm{acc}_b - \mathrm{conf}_b \rvert .

    The ``"l2"`` form is torchmetrics' (``sqrt(sum(prop_bin * (acc_bin - conf_bin)**2))``)
    in both conventions. Empty bins contribute nothing.
"""

_BINNING_DOC = r"""
    **convention="guo"** (the default). With ``e_b = b/B`` rounded to the nearest number
    of the dtype of ``probs`` (exactly, ties to even; float16 and bfloat16 included), bin
    ``b = 1..B`` holds the confidences ``c`` with ``e_{b-1} < c <= e_b``, the bins
    ``((b-1)/B, b/B]`` of Guo et al. 2017; the first bin is closed, ``[0, e_1]``, so a
    confidence of exactly 0 is in it, and 1.0 is in the last. A confidence that is its
    dtype's nearest value to an edge lies on that edge: float32 ``0.3`` and float64
    ``0.3`` (0.30000001192... and 0.29999999999999998...) are both in ``(0.2, 0.3]``
    for ``B = 10``, and the bins do not depend on the backend or on the wider dtype the
    sums are accumulated in.

    **strategy="quantile"** (with "guo"). The confidences are sorted,
    ``c_(1) <= ... <= c_(N)``, and the inner edges are ``e_b = c_(ceil(b N / B))`` for
    ``b = 1..B-1`` (the inverted-CDF ``b/B``-quantile, NumPy's
    ``method="inverted_cdf"``); bin 1 is ``[0, e_1]``, bin ``b`` is ``(e_{b-1}, e_b]``
    and bin ``B`` is ``(e_{B-1}, 1]``. Without ties bin ``b`` holds the samples of ranks
    ``ceil((b-1) N / B) + 1 .. ceil(b N / B)``: ``floor(N/B)`` or ``ceil(N/B)`` of them.
    Equal confidences always share a bin: a run of ties across an edge goes whole to the
    lower bin, so bins can hold more or fewer samples, and a bin whose two edges coincide
    is empty (it contributes nothing). The result does not depend on the order of the
    samples.

    **convention="torchmetrics"** reproduces torchmetrics' ``_ce_compute``
    (``torchmetrics.functional.classification.calibration_error``, checked against
    torchmetrics 1.9). The edges are ``t = torch.linspace(0, 1, B + 1)`` in the dtype
    of the binned confidences, reproduced bit for bit: for float32 and float64,
    ``s = fl(1/B)``, ``t_j = fl(j s)`` for ``j < (B+1)//2`` and ``t_j = fl(1 - (B-j) s)``
    (one rounding, a fused multiply-add) above; for float16 and bfloat16 every operation
    rounded through float32 to the dtype. These are the values of PyTorch's CPU kernels
    built for AVX2 and AVX-512 (PyTorch 2.13); a build without FMA
    (``ATEN_CPU_CAPABILITY=default``) rounds ``(B-j) s`` first and differs in the last
    bit at some edges (float32, ``B = 15``: ``t_12`` is 0.80000001 here, 0.79999995
    there). The bin of ``c`` is ``torch.bucketize(c, t, right=True) - 1``: bin ``j``
    holds ``t_j <= c < t_{j+1}`` (closed on the left, so 0 is in the first bin), and a
    confidence of exactly 1.0 (``= t_B``) falls in an extra bin ``B + 1`` of its own,
    which counts in all three norms. Edges in the input's dtype mean that a binary
    float32 ``0.3`` is in ``[0.3, 0.4)`` while a float64 ``0.3`` is in ``[0.2, 0.3)``
    for ``B = 10`` (``t_3 = fl(3 fl(0.1))`` is 0.3f in float32 and
    0.30000000000000004 in float64). Differences from torchmetrics: an empty batch is
    NaN (torchmetrics: NaN for "l1", 0 for "l2" and "max"); the result has ``probs``'
    dtype and its sums are accumulated in float64 where the backend has it, so it agrees
    with torchmetrics' float32 arithmetic to float32 rounding (torchmetrics returns
    float32 for multiclass inputs, and an integer ``tensor(0)`` for an "l2" error of
    exactly 0); values outside ``[0, 1]`` are an error here, where torchmetrics would
    take them for logits.
"""

_REFERENCES_DOC = r"""
    References
    ----------
    Guo, Pleiss, Sun and Weinberger (2017), "On Calibration of Modern Neural Networks",
    ICML, section 2 (ECE, MCE, reliability diagrams). Naeini, Cooper and Hauskrecht
    (2015), "Obtaining Well Calibrated Probabilities Using Bayesian Binning", AAAI (ECE
    and MCE). Kull et al. (2019), "Beyond temperature scaling: Obtaining well-calibrated
    multiclass probabilities with Dirichlet calibration", NeurIPS (classwise ECE). Nixon,
    Dusenberry, Zhang, Jerfel and Tran (2019), "Measuring Calibration in Deep Learning",
    CVPR Workshops (static and adaptive calibration error, equal-mass bins).
"""

expected_calibration_error.__doc__ = (
    r"""Expected (or maximum) calibration error of the top-label confidence (Guo et al. 2017).

    .. math::

        \mathrm{ECE} = \sum_{b=1}^{B} \frac{|S_b|}{N}\,
            \bigl|\operatorname{acc}(S_b) - \operatorname{conf}(S_b)\bigr|
          = \frac{1}{N} \sum_{b=1}^{B} \Bigl|\sum_{i \in S_b}
            \bigl([\hat y_i = y_i] - \hat p_i\bigr)\Bigr|

    with ``\hat p_i = max_k p_ik`` the top-label confidence, ``\hat y_i = argmax_k p_ik``
    (the first of tied maxima), and ``S_b`` the samples whose confidence lies in bin ``b``
    (by default the equal-width bin ``((b-1)/B, b/B]``). 0 is perfect calibration; a
    model that is right 70% of the time when 90% sure contributes 0.2 times the weight of
    that bin.

    Parameters
    ----------
    probs : array of real floating dtype
        Predicted class probabilities in ``[0, 1]`` along ``axis`` (rows need not be
        renormalised; only the largest entry and its position are used).
    labels : array of integers
        True classes, the shape of ``probs`` without ``axis``.
"""
    + _OPTIONS_DOC
    + _AXIS_XP_RETURNS_DOC
    + _RAISES_DOC
    + r"""
    See Also
    --------
    classwise_calibration_error : every class's one-vs-rest probability, not only the top one.
    binary_calibration_error : the probability of the positive class of a binary problem.
    reliability_diagram : the per-bin numbers behind the "guo", "uniform" ECE.

    Notes
    -----"""
    + _NORMS_DOC
    + _BINNING_DOC
    + r"""
    With ``convention="torchmetrics"`` the top-label confidence is rounded to float32
    before it is binned and averaged, as torchmetrics' ``confidences.float()`` does, so
    the edges are float32 ones whatever the dtype of ``probs``: the result is that of
    ``multiclass_calibration_error(probs, labels, num_classes=K, n_bins=B, norm=norm)``.
"""
    + _REFERENCES_DOC
    + r"""
    Examples
    --------
    >>> import array_api_strict as xp
    >>> from labelsmooth.metrics import expected_calibration_error
    >>> p = xp.asarray([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> y = xp.asarray([0, 1, 0, 1])
    >>> round(float(expected_calibration_error(p, y, n_bins=5)), 12)  # (|1.8-1| + |0.6-1| + |0.7-1|) / 4
    0.375
    >>> round(float(expected_calibration_error(p, y, n_bins=5, norm="max")), 12)  # |0.5 - 0.9| = |1 - 0.6|
    0.4
    >>> # A confidence of 0.6 on an edge: in (0.4, 0.6] ("guo"), in [0.6, 0.8) ("torchmetrics").
    >>> p = xp.asarray([[0.6, 0.4], [0.7, 0.3]])
    >>> y = xp.asarray([0, 1])
    >>> round(float(expected_calibration_error(p, y, n_bins=5)), 12)  # (|1 - 0.6| + |0 - 0.7|) / 2
    0.55
    >>> round(float(expected_calibration_error(p, y, n_bins=5, convention="torchmetrics")), 6)  # |1 - 1.3| / 2
    0.15
    """
)


def classwise_calibration_error(
    probs: Any,
    labels: Any,
    /,
    *,
    n_bins: int = 15,
    norm: CalibrationNorm = "l1",
    strategy: CalibrationStrategy = "uniform",
    convention: CalibrationConvention = "guo",
    axis: int = -1,
    xp: Any = None,
) -> Any:
    n_bins, norm, strategy, convention = _check_options(n_bins, norm, strategy, convention)
    columns = _one_vs_rest(probs, labels, axis, xp)
    return _calibration_error(columns, n_bins, norm, strategy, convention)


classwise_calibration_error.__doc__ = (
    r"""Classwise calibration error: the mean over classes of each class's one-vs-rest error.

    .. math::

        \mathrm{cwECE} = \frac{1}{K} \sum_{k=1}^{K} \sum_{b=1}^{B} \frac{|S_{bk}|}{N}\,
            \Bigl|\frac{1}{|S_{bk}|} \sum_{i \in S_{bk}} [y_i = k]
                - \frac{1}{|S_{bk}|} \sum_{i \in S_{bk}} p_{ik}\Bigr|

    where ``S_bk`` are the samples whose probability ``p_ik`` of class ``k`` lies in bin
    ``b``: every class's probability is binned (not only the top one), against the
    indicator that the sample belongs to that class. This is the classwise-ECE of Kull et
    al. 2019 and, with ``strategy="uniform"``, the static calibration error (SCE) of Nixon
    et al. 2019 (with ``strategy="quantile"``, equal-mass bins per class, their adaptive
    calibration error without its top-``R`` selection of predictions). With ``norm="l2"``
    or ``"max"`` each class's error takes that norm before the mean over classes. Class
    ``k``'s term is ``binary_calibration_error(p[:, k], labels == k)`` with the same
    options.

    Parameters
    ----------
    probs : array of real floating dtype
        Predicted class probabilities in ``[0, 1]`` along ``axis``.
    labels : array of integers
        True classes, the shape of ``probs`` without ``axis``.
"""
    + _OPTIONS_DOC
    + _AXIS_XP_RETURNS_DOC
    + r"""
    Raises
    ------
    TypeError, ValueError
        As for :func:`expected_calibration_error`.

    Notes
    -----
    Bins are those of :func:`binary_calibration_error`, with quantile edges computed for
    each class separately; with ``convention="torchmetrics"`` the result is the mean over
    ``k`` of torchmetrics' ``binary_calibration_error(p[:, k], labels == k)``, the edges in
    the dtype of ``probs``. Most one-vs-rest probabilities are near 0, so the first bin
    (which holds 0 in both conventions) usually holds most of the samples.
"""
    + _REFERENCES_DOC
    + r"""
    Examples
    --------
    >>> import array_api_strict as xp
    >>> from labelsmooth.metrics import classwise_calibration_error
    >>> p = xp.asarray([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])
    >>> y = xp.asarray([0, 0, 2])
    >>> # bins [0, 0.5], (0.5, 1]; class 0: |1 - 0.7| + |1 - 0.6|, class 1: |0 - 0.4| + |0 - 0.7|,
    >>> # class 2: |1 - 0.6|; (0.7 + 1.1 + 0.4) / (3 classes * 3 samples)
    >>> round(float(classwise_calibration_error(p, y, n_bins=2)), 12)
    0.244444444444
    """
)


def binary_calibration_error(
    probs: Any,
    labels: Any,
    /,
    *,
    n_bins: int = 15,
    norm: CalibrationNorm = "l1",
    strategy: CalibrationStrategy = "uniform",
    convention: CalibrationConvention = "guo",
    xp: Any = None,
) -> Any:
    n_bins, norm, strategy, convention = _check_options(n_bins, norm, strategy, convention)
    columns = _positive_class(probs, labels, xp)
    return _calibration_error(columns, n_bins, norm, strategy, convention)


binary_calibration_error.__doc__ = (
    r"""Calibration error of the positive-class probability of a binary problem.

    .. math::

        \mathrm{ECE} = \sum_{b=1}^{B} \frac{|S_b|}{N}\,
            \Bigl|\frac{1}{|S_b|} \sum_{i \in S_b} y_i - \frac{1}{|S_b|} \sum_{i \in S_b} p_i\Bigr|

    with ``p_i`` the predicted probability that ``y_i = 1`` and ``S_b`` the samples whose
    ``p_i`` lies in bin ``b``: the fraction of positives in each bin against the mean
    predicted probability. This bins ``p`` itself, not the top-label confidence
    ``max(p, 1 - p)`` (for that, pass the two-column ``[1 - p, p]`` to
    :func:`expected_calibration_error`). With ``convention="torchmetrics"`` it is
    torchmetrics' ``binary_calibration_error(probs, labels, n_bins=B, norm=norm)``.

    Parameters
    ----------
    probs : array of real floating dtype, any shape
        Probabilities of the positive class, in ``[0, 1]`` (apply a sigmoid to logits).
        Every element is a sample: there is no class axis.
    labels : array of integers
        0 or 1 (1 is the positive class), the shape of ``probs``.
"""
    + _OPTIONS_DOC
    + r"""    xp : array namespace, optional
        Inferred from the arrays when None.

    Returns
    -------
    array
        0-d, dtype of ``probs``. NaN for an empty batch.
"""
    + _RAISES_DOC
    + r"""
    Notes
    -----"""
    + _NORMS_DOC
    + _BINNING_DOC
    + r"""
    Here the binned confidence is ``p`` in the dtype of ``probs`` for both conventions
    (torchmetrics does not round it to float32 in the binary case).
"""
    + _REFERENCES_DOC
    + r"""
    Examples
    --------
    >>> import array_api_strict as xp
    >>> from labelsmooth.metrics import binary_calibration_error
    >>> p = xp.asarray([0.25, 0.25, 0.55, 0.75, 0.75])
    >>> y = xp.asarray([0, 0, 1, 1, 1])
    >>> # bins (0, 0.5], (0.5, 1]: (|0 - 0.5| + |3 - 2.05|) / 5
    >>> round(float(binary_calibration_error(p, y, n_bins=2)), 12)
    0.29
    >>> round(float(binary_calibration_error(p, y, n_bins=2, norm="max")), 12)  # 0.95 / 3
    0.316666666667
    >>> # Edges in the input's dtype (torchmetrics): float32 0.3 is on the edge 0.3 of [0.3, 0.4),
    >>> # float64 0.3 below it, in [0.2, 0.3); "guo" puts both in (0.2, 0.3].
    >>> p64, y = xp.asarray([0.3, 0.35]), xp.asarray([1, 0])
    >>> p32 = xp.astype(p64, xp.float32)
    >>> [round(float(binary_calibration_error(q, y, n_bins=10, convention="torchmetrics")), 6) for q in (p32, p64)]
    [0.175, 0.525]
    >>> [round(float(binary_calibration_error(q, y, n_bins=10)), 6) for q in (p32, p64)]
    [0.525, 0.525]
    """
)


def reliability_diagram(
    probs: Any, labels: Any, /, *, n_bins: int = 15, axis: int = -1, xp: Any = None
) -> ReliabilityDiagram:
    r"""The data of a reliability diagram: per-bin confidence, accuracy and count.

    Samples are binned by top-label confidence into ``n_bins`` equal-width bins
    ``((b-1)/B, b/B]`` (the first one closed at 0) exactly as in
    :func:`expected_calibration_error` with its defaults (``convention="guo"``,
    ``strategy="uniform"``), which equals ``sum(counts * |accuracy - confidence|) /
    sum(counts)`` over the non-empty bins (DeGroot and Fienberg 1983; Niculescu-Mizil and
    Caruana 2005; Guo et al. 2017, fig. 1). A calibrated model has ``accuracy ==
    confidence`` in every bin.

    Parameters
    ----------
    probs, labels, n_bins, axis, xp
        As for :func:`expected_calibration_error`.

    Returns
    -------
    ReliabilityDiagram
        Named tuple ``(edges, confidence, accuracy, counts)`` of arrays of the input's
        library: ``edges`` of shape ``(n_bins + 1,)``, the others ``(n_bins,)``;
        ``confidence`` and ``accuracy`` are NaN for empty bins and have ``probs``' dtype,
        ``counts`` the library's default integer dtype. Under ``jax.jit`` or on lazy Dask
        arrays, invalid values make ``confidence`` and ``accuracy`` all NaN.

    Raises
    ------
    TypeError, ValueError
        As for :func:`expected_calibration_error`.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from labelsmooth.metrics import reliability_diagram
    >>> p = xp.asarray([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> diagram = reliability_diagram(p, xp.asarray([0, 1, 0, 1]), n_bins=5)
    >>> diagram.counts
    Array([0, 0, 1, 1, 2], dtype=array_api_strict.int64)
    >>> diagram.accuracy
    Array([nan, nan, 1. , 1. , 0.5], dtype=array_api_strict.float64)
    """
    n_bins = check_positive_int("n_bins", n_bins)
    columns = _top_label(probs, labels, axis, xp)
    xp = columns.xp
    counts, confidence_sums, correct_sums = (s[:, 0] for s in _bin_statistics(columns, n_bins, "uniform", "guo"))
    edges = xp.asarray(
        _uniform_edges(n_bins, columns.edge_format, "guo"), dtype=columns.result_dtype, device=device_of(counts)
    )
    confidence = _poisoned(_safe_divide(confidence_sums, counts, xp), columns.poison, xp)
    accuracy = _poisoned(_safe_divide(correct_sums, counts, xp), columns.poison, xp)
    return ReliabilityDiagram(
        edges=edges,
        confidence=xp.astype(confidence, columns.result_dtype),
        accuracy=xp.astype(accuracy, columns.result_dtype),
        counts=xp.astype(counts, _default_integer(xp, counts)),
    )


def _default_integer(xp: Any, like: Any) -> Any:
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        return info().default_dtypes(device=device_of(like))["integral"]
    return xp.int64


def brier_score(probs: Any, labels: Any, /, *, axis: int = -1, xp: Any = None) -> Any:
    xp, p, flat_labels, poison, result_dtype, acc, num_classes = _prepare(probs, labels, axis, xp)
    classes = xp.arange(num_classes, dtype=flat_labels.dtype, device=device_of(flat_labels))
    # (p - 1) on the true class rather than sum p^2 - 2 p_y + 1, which cancels for
    # confident, correct predictions.
    distance = xp.where(classes == flat_labels[:, None], p - 1.0, p)
    per_sample = xp.sum(distance * distance, axis=-1)
    return _sample_mean(xp.sum(per_sample), p, poison, result_dtype, acc, xp)


brier_score.__doc__ = (
    r"""Multi-class Brier score: mean squared distance to the one-hot label.

    .. math:: \mathrm{BS} = \frac{1}{N} \sum_{i=1}^{N} \sum_{k=1}^{K} (p_{ik} - [k = y_i])^2

    Brier (1950), "Verification of Forecasts Expressed in Terms of Probability", Monthly
    Weather Review 78(1). The sum runs over classes and the mean over samples, as in
    Brier's original definition, so the score lies in ``[0, 2]``; some libraries divide
    by ``K`` as well (scikit-learn's binary ``brier_score_loss`` is this score halved for
    ``K = 2``). A proper scoring rule: it rewards calibrated and sharp predictions alike.

    Parameters
    ----------
    probs : array of real floating dtype
        Predicted class probabilities in ``[0, 1]`` along ``axis``.
    labels : array of integers
        True classes, the shape of ``probs`` without ``axis``.
"""
    + _AXIS_XP_RETURNS_DOC
    + r"""
    Raises
    ------
    TypeError, ValueError
        As for :func:`expected_calibration_error`.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from labelsmooth.metrics import brier_score
    >>> p = xp.asarray([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]])
    >>> round(float(brier_score(p, xp.asarray([0, 1]))), 12)  # ((0.09+0.04+0.01) + (0.25+0.25)) / 2
    0.32
    """
)
