"""Calibration metrics: expected calibration error, Brier score, reliability diagrams.

Label smoothing is often chosen for what it does to calibration (Müller, Kornblith and
Hinton 2019, "When Does Label Smoothing Help?"); these functions measure it on any array
library. Every result has a shape fixed by the arguments (no data-dependent shapes), so
they run under ``jax.jit`` and build lazy Dask graphs.

``probs`` are predicted class probabilities (e.g. ``softmax(logits)``) with the class
axis ``axis``; ``labels`` are integer classes with ``probs``' shape without that axis.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._backend import (
    accumulation_dtype,
    compute_dtype,
    device_of,
    namespace_of,
    values_checkable,
)
from ._validation import (
    check_positive_int,
    first_value,
    normalize_axis,
    require_integer,
    require_real_floating,
)

__all__ = ["ReliabilityDiagram", "brier_score", "expected_calibration_error", "reliability_diagram"]

_NAN = float("nan")


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
        Bin edges ``k / n_bins``; bin ``b`` holds confidences in ``(edges[b], edges[b+1]]``.
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


class _TopLabel(NamedTuple):
    xp: Any
    confidence: Any  # acc dtype, (N,)
    correct: Any  # acc dtype 0/1, (N,)
    poison: Any  # 0-d bool or None
    result_dtype: Any
    acc: Any


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
    poison = None
    if values_checkable(probs, labels):
        if bool(xp.any(bad_probs)):
            msg = (
                f"probs must be probabilities in [0, 1] (apply softmax to logits first), "
                f"got a value of {first_value(probs, bad_probs, xp)}"
            )
            raise ValueError(msg)
        if bool(xp.any(bad_labels)):
            value = first_value(labels, bad_labels, xp)
            msg = f"labels must be class indices in [0, {num_classes}), got a label of {value}"
            raise ValueError(msg)
    else:
        poison = xp.any(bad_probs) | xp.any(bad_labels)
        flat_labels = xp.where((flat_labels >= 0) & (flat_labels < num_classes), flat_labels, 0)
    return xp, p, flat_labels, poison, probs.dtype, acc, num_classes


def _top_label(probs: Any, labels: Any, axis: Any, xp: Any) -> _TopLabel:
    xp, p, flat_labels, poison, result_dtype, acc, _ = _prepare(probs, labels, axis, xp)
    confidence = xp.max(p, axis=-1)
    # argmax returns the first of tied maxima, the usual top-label convention.
    predicted = xp.argmax(p, axis=-1)
    correct = xp.astype(predicted == xp.astype(flat_labels, predicted.dtype), acc)
    return _TopLabel(xp, confidence, correct, poison, result_dtype, acc)


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


def _binned(top: _TopLabel, n_bins: int) -> tuple[Any, Any, Any, Any]:
    """(edges, per-bin count, sum of confidences, sum of correct), all in acc dtype."""
    xp, acc = top.xp, top.acc
    device = device_of(top.confidence)
    edges = xp.arange(n_bins + 1, dtype=acc, device=device) / n_bins
    confidence = top.confidence[:, None]
    # Membership of each sample in each bin (lo, hi]: the one-hot of its bin index, which
    # keeps every shape static (no bincount, no boolean indexing).
    member = xp.astype((confidence > edges[:-1]) & (confidence <= edges[1:]), acc)
    counts = xp.sum(member, axis=0)
    confidence_sums = xp.sum(member * confidence, axis=0)
    correct_sums = xp.sum(member * top.correct[:, None], axis=0)
    return edges, counts, confidence_sums, correct_sums


def expected_calibration_error(probs: Any, labels: Any, /, *, n_bins: int = 15, axis: int = -1, xp: Any = None) -> Any:
    n_bins = check_positive_int("n_bins", n_bins)
    top = _top_label(probs, labels, axis, xp)
    xp = top.xp
    _, _, confidence_sums, correct_sums = _binned(top, n_bins)
    total = xp.sum(xp.abs(correct_sums - confidence_sums))
    return _sample_mean(total, top.confidence, top.poison, top.result_dtype, top.acc, xp)


expected_calibration_error.__doc__ = (
    r"""Expected calibration error of the top-label confidence (Guo et al. 2017).

    .. math::

        \mathrm{ECE} = \sum_{b=1}^{B} \frac{|S_b|}{N}\,
            \bigl|\operatorname{acc}(S_b) - \operatorname{conf}(S_b)\bigr|
          = \frac{1}{N} \sum_{b=1}^{B} \Bigl|\sum_{i \in S_b}
            \bigl([\hat y_i = y_i] - \hat p_i\bigr)\Bigr|

    with ``\hat p_i = max_k p_ik`` the top-label confidence, ``\hat y_i = argmax_k p_ik``
    (the first of tied maxima), and ``S_b`` the samples whose confidence lies in the
    equal-width bin ``((b-1)/B, b/B]``. Guo, Pleiss, Sun and Weinberger (2017), "On
    Calibration of Modern Neural Networks", ICML, section 2. 0 is perfect calibration; a
    model that is right 70% of the time when 90% sure contributes 0.2 times the weight of
    that bin.

    Parameters
    ----------
    probs : array of real floating dtype
        Predicted class probabilities in ``[0, 1]`` along ``axis`` (rows need not be
        renormalised; only the largest entry and its position are used).
    labels : array of integers
        True classes, the shape of ``probs`` without ``axis``.
    n_bins : int, default 15
        Number of equal-width confidence bins ``B`` (15 as in Guo et al.).
"""
    + _AXIS_XP_RETURNS_DOC
    + r"""
    Raises
    ------
    TypeError
        Non-floating ``probs``, non-integer ``labels``, a non-integer ``n_bins``.
    ValueError
        Shape mismatch, ``n_bins < 1``, probabilities outside ``[0, 1]`` or labels
        outside ``[0, K)`` (eager backends; under ``jax.jit`` and on lazy Dask arrays the
        result is NaN instead).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from labelsmooth.metrics import expected_calibration_error
    >>> p = xp.asarray([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> y = xp.asarray([0, 1, 0, 1])
    >>> round(float(expected_calibration_error(p, y, n_bins=5)), 12)  # (|1.8-1| + |0.6-1| + |0.7-1|) / 4
    0.375
    """
)


def reliability_diagram(
    probs: Any, labels: Any, /, *, n_bins: int = 15, axis: int = -1, xp: Any = None
) -> ReliabilityDiagram:
    r"""The data of a reliability diagram: per-bin confidence, accuracy and count.

    Samples are binned by top-label confidence into ``n_bins`` equal-width bins
    ``((b-1)/B, b/B]`` exactly as in :func:`expected_calibration_error`, which equals
    ``sum(counts * |accuracy - confidence|) / sum(counts)`` over the non-empty bins
    (DeGroot and Fienberg 1983; Niculescu-Mizil and Caruana 2005; Guo et al. 2017, fig. 1).
    A calibrated model has ``accuracy == confidence`` in every bin.

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
    top = _top_label(probs, labels, axis, xp)
    xp = top.xp
    edges, counts, confidence_sums, correct_sums = _binned(top, n_bins)
    confidence = _poisoned(_safe_divide(confidence_sums, counts, xp), top.poison, xp)
    accuracy = _poisoned(_safe_divide(correct_sums, counts, xp), top.poison, xp)
    return ReliabilityDiagram(
        edges=xp.astype(edges, top.result_dtype),
        confidence=xp.astype(confidence, top.result_dtype),
        accuracy=xp.astype(accuracy, top.result_dtype),
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
