"""The smoothed cross-entropy assembled around one kernel, the same for every backend.

Before the kernel, from the labels and options alone: the target weights' coefficients
(``_core.label_coefficients``, or the dense ``c = w * q'``), the reduction's normaliser and
row scale, and the gradient's per-row coefficients, packed into a ``_kernel.Task``. A
kernel then runs the passes over the logits (the backend's own where one applies, else
``_kernel.run``; CPU tensors that autograd does not track are evaluated on NumPy views,
``_torch_fast``). After it, from its row statistics: the per-sample loss
``T log s + sum_k c_k d_k`` with ignored rows 0 and poisoned rows NaN, the reduction with
PyTorch's normaliser, and the gradient in the caller's dtype and layout.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import _core, _jax_fast, _kernel, _numpy_fast, _torch_fast
from ._backend import device_of, fast_paths_enabled

__all__ = [
    "dense_coefficients",
    "finish_gradient",
    "finish_rows",
    "mean_denominators",
    "reduce",
    "row_scales",
    "solve",
    "z_loss_rows",
]

_NAN = float("nan")
_BACKEND_KERNELS = (_numpy_fast, _jax_fast)


def solve(
    problem: Any,
    *,
    with_grad: bool,
    denominators: tuple[Any, Any] | None = None,
    overwrite_logits: bool = False,
) -> tuple[Any, Any]:
    """``(loss, grad)`` of a prepared problem (``grad`` is None unless ``with_grad``).

    ``denominators`` replaces the problem's own normalisers of ``"mean"`` (see
    :func:`mean_denominators`), for a problem that is one block of a larger batch: the
    blocks' losses and gradients then add up to those of the whole batch.
    ``overwrite_logits`` lets a kernel write the gradient over the logits' own memory (for
    a caller that owns them and reads them no more: no second block of that size).
    """
    if fast_paths_enabled():
        views = _torch_fast.numpy_views(problem)
        if views is not None:
            # The whole evaluation on NumPy views of CPU tensors: the NumPy kernel, and the
            # algebra around it in NumPy, whose per-call cost is a fraction of torch's.
            if denominators is not None:
                denominators = (_torch_fast.numpy_value(denominators[0]), _torch_fast.numpy_value(denominators[1]))
            results = solve(views, with_grad=with_grad, denominators=denominators, overwrite_logits=overwrite_logits)
            return _torch_fast.as_tensors(results, problem)
    if denominators is None:
        denominators = mean_denominators(problem)
    scale, z_scale = row_scales(problem, denominators)
    lse_coef = None if problem.z_loss == 0.0 else 2.0 * problem.z_loss * z_scale
    if problem.labels is not None:
        coefficients, task = _label_task(problem, scale, with_grad, lse_coef)
    else:
        total, task = _dense_task(problem, scale, with_grad, lse_coef)
    if overwrite_logits:
        task = dataclasses.replace(task, overwrite_logits=True)
    stats = _kernel_for(task)(task)
    if problem.labels is not None:
        per_sample = _core.label_loss(
            coefficients,
            stats.log_sum,
            stats.true_half,
            stats.profile_distance,
            stats.h,
            problem.xp,
            eager=problem.eager,
        )
    else:
        per_sample = total * stats.log_sum + stats.profile_distance / stats.h
    z_rows = None if lse_coef is None else z_loss_rows(problem, stats.shift, stats.log_sum)
    loss = reduce(problem, finish_rows(problem, per_sample), denominators, z_rows)
    return loss, None if stats.grad is None else finish_gradient(problem, stats.grad)


def z_loss_rows(problem: Any, shift: Any, log_sum: Any) -> Any:
    """``z_loss * lse^2`` of every row, finished as the loss rows are (sample weights, masks)."""
    squared = _core.squared_log_sum_exp(shift, log_sum, problem.xp, problem.acc)
    return finish_rows(problem, problem.z_loss * squared)


def row_scales(problem: Any, denominators: tuple[Any, Any]) -> tuple[Any, Any]:
    """The gradient's row factors of the cross-entropy and of the z-loss terms."""
    loss_denominator, z_denominator = denominators
    scale = _row_scale(problem, loss_denominator)
    return scale, scale if z_denominator is loss_denominator else _row_scale(problem, z_denominator)


def _row_scale(problem: Any, denominator: Any) -> Any:
    """Each row's gradient factor: ``1 / denominator`` (``"mean"``) times its sample weight."""
    scale = 1.0 if denominator is None else _reciprocal(problem, denominator)
    if problem.sample_weight is not None:
        # Per-sample weights scale each row's gradient as they scale its loss.
        scale = scale * problem.sample_weight
    return scale


def _kernel_for(task: _kernel.Task) -> Any:
    if fast_paths_enabled():
        for kernel in _BACKEND_KERNELS:
            if kernel.supports(task):
                return kernel.run
    return _kernel.run


def _task(problem: Any, with_grad: bool, lse_coef: Any, **fields: Any) -> _kernel.Task:
    return _kernel.Task(
        xp=problem.xp,
        logits=problem.logits,
        labels=problem.labels,
        allowed=problem.allowed,
        acc=problem.acc,
        with_grad=with_grad,
        zero_rows=problem.ignored,
        nan_rows=problem.poison,
        threads=problem.threads,
        lse_coef=lse_coef,
        **fields,
    )


def _label_task(
    problem: Any, scale: Any, with_grad: bool, lse_coef: Any
) -> tuple[_core.LabelCoefficients, _kernel.Task]:
    """The coefficients of integer labels (PyTorch's weighted convention) and their task."""
    xp, acc, epsilon = problem.xp, problem.acc, problem.epsilon
    shape = problem.logits.shape
    labels = problem.labels[..., None]
    true_weight = 1.0
    if problem.weight is not None:
        true_weight = xp.astype(_core.take_along_last(xp.broadcast_to(problem.weight, shape), labels, xp), acc)
    prior_kind = problem.prior if problem.prior is None or isinstance(problem.prior, str) else "array"
    profile = profile_sum = true_profile = None
    if not (isinstance(epsilon, float) and epsilon == 0.0):
        profile = _label_profile(problem, prior_kind)
        if profile is None:
            profile_sum, true_profile = problem.num_allowed * 1.0, 1.0
        else:
            profile_sum = _class_sum(profile, shape, xp, acc)
            true_profile = xp.astype(_core.take_along_last(xp.broadcast_to(profile, shape), labels, xp), acc)
    coefficients = _core.label_coefficients(
        epsilon,
        true_weight,
        prior_kind=prior_kind,
        num_allowed=problem.num_allowed,
        profile_sum=profile_sum,
        true_profile=true_profile,
    )
    total, spread, true_part = _core.scaled_gradient_coefficients(coefficients, scale)
    task = _task(
        problem,
        with_grad,
        lse_coef,
        profile=profile,
        sum_profile=coefficients.spread_coef is not None,
        exclude_label=prior_kind == "others",
        prob_coef=total,
        spread_coef=spread,
        true_coef=true_part,
    )
    return coefficients, task


def _label_profile(problem: Any, prior_kind: Any) -> Any:
    """The class profile of the smoothing part ``eps * u * w`` (None: ones over every class)."""
    weight = problem.weight
    if prior_kind == "array":
        return problem.prior if weight is None else problem.prior * weight
    if problem.allowed is None:
        return weight
    mask = problem.xp.astype(problem.allowed, problem.logits.dtype)
    return mask if weight is None else mask * weight


def _class_sum(profile: Any, shape: tuple, xp: Any, acc: Any) -> Any:
    """``sum_k profile_k`` of every row; a class vector is summed once, not once a row."""
    if profile.ndim == 1:
        return xp.sum(profile, dtype=acc)
    return xp.sum(xp.broadcast_to(profile, shape), axis=-1, keepdims=True, dtype=acc)


def _dense_task(problem: Any, scale: Any, with_grad: bool, lse_coef: Any) -> tuple[Any, _kernel.Task]:
    """``T = sum_k c_k`` of probability targets and their task (``c`` as the profile)."""
    coefficients = dense_coefficients(problem)
    total = problem.xp.sum(coefficients, axis=-1, keepdims=True, dtype=problem.acc)
    task = _task(
        problem,
        with_grad,
        lse_coef,
        profile=coefficients,
        sum_profile=True,
        exclude_label=False,
        prob_coef=total * scale,
        spread_coef=scale,
        true_coef=None,
    )
    return total, task


def dense_coefficients(problem: Any) -> Any:
    """Target weights ``c = w * q'`` of probability targets (class last, working dtype)."""
    xp, q, eps = problem.xp, problem.probabilities, problem.epsilon
    work = q.dtype
    eps = eps if isinstance(eps, float) else xp.astype(eps, work)
    count = problem.num_allowed
    count = count if isinstance(count, int) else xp.astype(count, work)
    smoothed = _core.smoothed_rows(q, eps, problem.prior, problem.allowed, count, xp)
    return smoothed if problem.weight is None else smoothed * problem.weight


def finish_rows(problem: Any, per_sample: Any) -> Any:
    """Per-sample losses times their sample weights, with ignored rows 0 and poisoned rows NaN."""
    xp = problem.xp
    if problem.sample_weight is not None:
        per_sample = per_sample * problem.sample_weight
    if problem.ignored is not None:
        per_sample = xp.where(problem.ignored, 0.0, per_sample)
    if problem.poison is not None:
        # Multiply rather than select, so that autodiff of the loss is NaN there as well.
        per_sample = per_sample * xp.where(problem.poison, _NAN, 1.0)
    return per_sample


def mean_denominators(problem: Any) -> tuple[Any, Any]:
    """The normalisers of ``"mean"``: of the cross-entropy, and of the z-loss term.

    The cross-entropy's is PyTorch's: the sum of ``w_y`` over counted samples (labels) or
    the number of samples (probabilities). The z-loss term is divided by the number of
    counted samples, unweighted (Liger's choice); without class weights the two are the
    same object. ``(None, None)`` for the other reductions.
    """
    if problem.reduction != "mean":
        return None, None
    count = _counted(problem, weighted=False)
    if problem.labels is None or problem.weight is None:
        return count, count
    return _counted(problem, weighted=True), count


def _counted(problem: Any, *, weighted: bool) -> Any:
    """The number of counted samples, or the sum of their ``w_y`` when ``weighted``."""
    xp, acc = problem.xp, problem.acc
    shape = (*tuple(problem.logits.shape[:-1]), 1)
    if problem.labels is None or (not weighted and problem.ignored is None):
        # The number of samples, known from the shape: a Python number, no array work.
        count = 1
        for size in shape[:-1]:
            count *= size
        return float(count)
    if not weighted:
        counted = xp.ones(shape, dtype=acc, device=device_of(problem.logits))
    else:
        labels = problem.labels[..., None]
        full = xp.broadcast_to(problem.weight, problem.logits.shape)
        counted = xp.astype(_core.take_along_last(full, labels, xp), acc)
    if problem.ignored is not None:
        counted = xp.where(problem.ignored, 0.0, counted)
    return xp.sum(counted)


def _safe_divide(numerator: Any, denominator: Any, xp: Any) -> Any:
    # 0/0 is NaN (as in PyTorch) without a floating-point warning on NumPy.
    safe = xp.where(denominator == 0, 1.0, denominator)
    return xp.where(denominator == 0, _NAN, numerator / safe)


def _reciprocal(problem: Any, denominator: Any) -> Any:
    """The row scale of ``"mean"``: every row's gradient is divided by the normaliser."""
    if isinstance(denominator, float):
        return _NAN if denominator == 0.0 else 1.0 / denominator
    one = problem.xp.asarray(1.0, dtype=problem.acc, device=device_of(problem.logits))
    return _safe_divide(one, denominator, problem.xp)


def reduce(problem: Any, per_sample: Any, denominators: tuple[Any, Any] | None = None, z_rows: Any = None) -> Any:
    """The loss in the result dtype from per-sample losses (batch + (1,), acc dtype).

    ``denominators`` are :func:`mean_denominators` when the caller has them already;
    ``z_rows`` the z-loss terms of the rows (:func:`z_loss_rows`), or None.
    """
    xp = problem.xp
    if problem.reduction == "mean" and denominators is None:
        denominators = mean_denominators(problem)
    loss_denominator, z_denominator = (None, None) if denominators is None else denominators
    if z_rows is not None and (problem.reduction == "none" or z_denominator is loss_denominator):
        per_sample, z_rows = per_sample + z_rows, None
    if problem.reduction == "none":
        return xp.astype(per_sample[..., 0], problem.result_dtype)
    total = _reduced(problem, per_sample, loss_denominator)
    if z_rows is not None:
        total = total + _reduced(problem, z_rows, z_denominator)
    return xp.reshape(xp.astype(total, problem.result_dtype), ())


def _reduced(problem: Any, rows: Any, denominator: Any) -> Any:
    """``sum(rows)``, divided by ``denominator`` unless it is None (shape (1,), acc dtype)."""
    xp = problem.xp
    # NumPy reductions give scalars: reshape to keep the result an array.
    total = xp.reshape(xp.sum(rows), (1,))
    if denominator is None:
        return total
    if isinstance(denominator, float):
        return total * _NAN if denominator == 0.0 else total / denominator
    return _safe_divide(total, denominator, xp)


def finish_gradient(problem: Any, grad: Any) -> Any:
    """Gradient rows (class last, masks applied by the kernel) in the caller's dtype and layout."""
    xp = problem.xp
    if problem.softcap is not None:
        # The chain rule through the capped logits c * tanh(z / c).
        grad = grad * _core.soft_cap_slope(problem.raw_logits, problem.softcap, xp)
    grad = xp.astype(grad, problem.result_dtype, copy=False)
    if problem.axis != problem.ndim - 1:
        grad = xp.moveaxis(grad, -1, problem.axis)
    return grad
