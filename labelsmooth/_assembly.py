"""The loss algebra after the passes over the logits, written once for every backend.

From the per-row statistics of the softmax (``_core``), the per-sample loss
``T log s + sum_k c_k d_k`` with ignored rows zeroed and poisoned rows NaN, the
reductions with PyTorch's normaliser, and the gradient ``row_scale * (T p - c)`` with its
masks, dtype and layout. The fast paths of ``_numpy_fast`` and ``_jax_fast`` reduce with
the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import _core
from ._backend import device_of

__all__ = ["Evaluation", "dense_coefficients", "evaluate", "finish_gradient", "gradient", "reduce", "row_scale"]

_NAN = float("nan")


def dense_coefficients(problem: Any) -> Any:
    """Target weights ``c = w * q'`` of probability targets (class last, working dtype)."""
    xp, q, eps = problem.xp, problem.probabilities, problem.epsilon
    work = q.dtype
    eps = eps if isinstance(eps, float) else xp.astype(eps, work)
    count = problem.num_allowed
    count = count if isinstance(count, int) else xp.astype(count, work)
    smoothed = _core.smoothed_rows(q, eps, problem.prior, problem.allowed, count, xp)
    return smoothed if problem.weight is None else smoothed * problem.weight


@dataclass
class Evaluation:
    per_sample: Any  # acc dtype, batch + (1,): NaN on poisoned rows, 0 on ignored ones
    rows: Any
    label_terms: Any
    dense_coef: Any
    dense_total: Any


def evaluate(problem: Any) -> Evaluation:
    xp, acc = problem.xp, problem.acc
    rows = _core.row_softmax(problem.logits, problem.allowed, xp, acc)
    label_terms = dense_coef = dense_total = None
    if problem.labels is not None:
        label_terms = _core.label_target_terms(
            rows,
            problem.labels,
            epsilon=problem.epsilon,
            prior=problem.prior,
            weight=problem.weight,
            allowed=problem.allowed,
            num_allowed=problem.num_allowed,
            xp=xp,
            acc_dtype=acc,
        )
        per_sample = label_terms.per_sample
    else:
        dense_coef = dense_coefficients(problem)
        dense_total, distance = _core.dense_target_terms(rows, dense_coef, xp, acc)
        per_sample = dense_total * rows.log_sum + distance
    if problem.ignored is not None:
        per_sample = xp.where(problem.ignored, 0.0, per_sample)
    if problem.poison is not None:
        # Multiply rather than select, so that autodiff of the loss is NaN there as well.
        per_sample = per_sample * xp.where(problem.poison, _NAN, 1.0)
    return Evaluation(per_sample, rows, label_terms, dense_coef, dense_total)


def _mean_denominator(problem: Any) -> Any:
    """PyTorch's normaliser: sum of w_y over counted samples (labels) or N (probabilities)."""
    xp, acc = problem.xp, problem.acc
    shape = (*tuple(problem.logits.shape[:-1]), 1)
    if problem.labels is None or (problem.weight is None and problem.ignored is None):
        count = 1
        for size in shape[:-1]:
            count *= size
        return xp.asarray(float(count), dtype=acc, device=device_of(problem.logits))
    if problem.weight is None:
        counted = xp.ones(shape, dtype=acc, device=device_of(problem.logits))
    else:
        labels = problem.labels[..., None]
        full = xp.broadcast_to(problem.weight, problem.logits.shape)
        counted = xp.astype(_core._take_along_last(full, labels, xp), acc)
    if problem.ignored is not None:
        counted = xp.where(problem.ignored, 0.0, counted)
    return xp.sum(counted)


def _safe_divide(numerator: Any, denominator: Any, xp: Any) -> Any:
    # 0/0 is NaN (as in PyTorch) without a floating-point warning on NumPy.
    safe = xp.where(denominator == 0, 1.0, denominator)
    return xp.where(denominator == 0, _NAN, numerator / safe)


def reduce(problem: Any, per_sample: Any) -> tuple[Any, Any]:
    """(loss in the result dtype, per-row gradient scale in acc dtype) of per-sample losses."""
    xp = problem.xp
    if problem.reduction == "none":
        return xp.astype(per_sample[..., 0], problem.result_dtype), 1.0
    # NumPy reductions give scalars: reshape to keep the result a 0-d array.
    total = xp.reshape(xp.sum(per_sample), (1,))
    if problem.reduction == "sum":
        return xp.reshape(xp.astype(total, problem.result_dtype), ()), 1.0
    denominator = _mean_denominator(problem)
    loss = _safe_divide(total, denominator, xp)
    return xp.reshape(xp.astype(loss, problem.result_dtype), ()), _scale_of(problem, denominator)


def row_scale(problem: Any) -> Any:
    """The factor the reduction applies to every row's gradient: ``1 / denominator`` for "mean".

    It depends on the labels, weights and ignored rows only, so a kernel that writes the
    gradient in its pass over the logits can take it before that pass.
    """
    if problem.reduction != "mean":
        return 1.0
    return _scale_of(problem, _mean_denominator(problem))


def _scale_of(problem: Any, denominator: Any) -> Any:
    one = problem.xp.asarray(1.0, dtype=problem.acc, device=device_of(problem.logits))
    return _safe_divide(one, denominator, problem.xp)


def gradient(problem: Any, evaluation: Evaluation, scale: Any) -> Any:
    xp = problem.xp
    if problem.labels is not None:
        grad = _core.label_gradient(evaluation.rows, evaluation.label_terms, scale, xp)
    else:
        grad = _core.dense_gradient(evaluation.rows, evaluation.dense_coef, evaluation.dense_total, scale, xp)
    return finish_gradient(problem, grad)


def finish_gradient(problem: Any, grad: Any, *, apply_masks: bool = True) -> Any:
    """Gradient rows (class last) in the caller's layout and dtype.

    With ``apply_masks``, masked classes and ignored rows get 0 and poisoned rows NaN (a
    kernel that folded them into its per-row coefficients passes False).
    """
    xp = problem.xp
    if apply_masks:
        if problem.allowed is not None:
            grad = xp.where(problem.allowed, grad, 0.0)
        if problem.ignored is not None:
            grad = xp.where(problem.ignored, 0.0, grad)
        if problem.poison is not None:
            grad = xp.where(problem.poison, _NAN, grad)
    grad = xp.astype(grad, problem.result_dtype, copy=False)
    if problem.axis != problem.ndim - 1:
        grad = xp.moveaxis(grad, -1, problem.axis)
    return grad
