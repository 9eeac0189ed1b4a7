"""Smoothed cross-entropy, its analytic gradient, and both together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import is_array_api_obj

from . import _core, _jax_fast, _numpy_fast, _torch_fast
from ._backend import (
    accumulation_dtype,
    compute_dtype,
    device_of,
    namespace_of,
    values_checkable,
)
from ._softmax import _prior_rows, validate_prior_values
from ._validation import (
    check_broadcastable,
    check_epsilon,
    check_ignore_index,
    check_prior_kind,
    check_reduction,
    dtype_name,
    first_value,
    label_masks,
    normalize_axis,
    require_array,
    require_real_floating,
    safe_indices,
)

__all__ = ["cross_entropy", "cross_entropy_grad", "cross_entropy_with_grad"]

_NAN = float("nan")


@dataclass
class _Problem:
    """Validated inputs in the class-last layout, plus what the reduction needs."""

    xp: Any
    logits: Any  # working dtype, class axis last
    labels: Any  # safe integer labels (batch shape) or None
    probabilities: Any  # working dtype, class axis last, or None
    epsilon: Any  # float, or acc array batch + (1,)
    prior: Any  # None, "others" or working-dtype array (class last, masked, normalised)
    weight: Any  # working dtype (K,) or None
    allowed: Any  # bool, class last, full shape, or None
    num_allowed: Any  # int K or acc array batch + (1,)
    ignored: Any  # bool batch + (1,) or None
    poison: Any  # bool batch + (1,) or None: rows whose result must be NaN
    reduction: str
    axis: int
    ndim: int
    result_dtype: Any
    acc: Any


def _or(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def _prepare(
    logits: Any,
    targets: Any,
    *,
    epsilon: Any,
    prior: Any,
    axis: Any,
    weight: Any,
    ignore_index: Any,
    where: Any,
    reduction: Any,
    xp: Any,
) -> _Problem:
    array_options = [a for a in (epsilon, prior, weight, where) if is_array_api_obj(a)]
    require_array("logits", logits)
    require_array("targets", targets)
    xp = namespace_of(logits, targets, *array_options, xp=xp)
    require_real_floating("logits", logits, xp)
    if logits.ndim == 0:
        msg = "logits must have at least one dimension (the class axis), got a 0-d array"
        raise ValueError(msg)
    axis = normalize_axis(axis, logits.ndim)
    num_classes = logits.shape[axis]
    if num_classes is not None and num_classes < 1:
        msg = f"logits must have at least one class along axis {axis}, got shape {tuple(logits.shape)}"
        raise ValueError(msg)
    reduction = check_reduction(reduction)
    check_prior_kind(prior)
    ignore_index = check_ignore_index(ignore_index)
    logits_shape = tuple(logits.shape)
    batch_shape = logits_shape[:axis] + logits_shape[axis + 1:]

    is_labels = xp.isdtype(targets.dtype, "integral")
    if is_labels:
        if tuple(targets.shape) != batch_shape:
            raise ValueError(_target_shape_message(tuple(targets.shape), logits_shape, axis, True))
    elif xp.isdtype(targets.dtype, "real floating"):
        if tuple(targets.shape) != logits_shape:
            raise ValueError(_target_shape_message(tuple(targets.shape), logits_shape, axis, False))
        if targets.dtype != logits.dtype:
            msg = (f"probability targets must have the logits' dtype {dtype_name(logits.dtype)}, got dtype "
                   f"{dtype_name(targets.dtype)} (cast one of them explicitly)")
            raise TypeError(msg)
        if ignore_index is not None:
            msg = f"ignore_index needs integer targets, got probability targets and ignore_index={ignore_index}"
            raise ValueError(msg)
    else:
        msg = f"targets must be integer labels or real floating probabilities, got dtype {dtype_name(targets.dtype)}"
        raise TypeError(msg)

    epsilon = check_epsilon(epsilon, xp, batch_shape)
    others = isinstance(prior, str)
    if others and num_classes < 2:
        msg = f"prior='others' needs at least 2 classes, got {num_classes}"
        raise ValueError(msg)

    work = compute_dtype(xp, logits.dtype)
    acc = accumulation_dtype(xp, work, logits)
    last = logits.ndim - 1

    def class_last(x: Any) -> Any:
        return x if axis == last else xp.moveaxis(x, axis, -1)

    z = class_last(xp.astype(logits, work, copy=False))
    moved_shape = tuple(z.shape)
    eager = values_checkable(logits, targets, *array_options)
    poison = None

    allowed = None
    num_allowed: Any = num_classes
    if where is not None:
        require_array("where", where)
        if not xp.isdtype(where.dtype, "bool"):
            msg = f"where must be a boolean array, got dtype {dtype_name(where.dtype)}"
            raise TypeError(msg)
        check_broadcastable("where", tuple(where.shape), logits_shape, "the logits' shape")
        allowed = class_last(xp.broadcast_to(where, logits_shape))
        num_allowed = xp.sum(xp.astype(allowed, acc), axis=-1, keepdims=True)
        needed = 2.0 if others else 1.0
        short = num_allowed < needed
        if eager:
            if bool(xp.any(short)):
                msg = (f"where must allow at least {int(needed)} class(es) in every row"
                       f"{' for prior=' + repr(prior) if others else ''}, "
                       f"got a row allowing {int(first_value(num_allowed, short, xp))}")
                raise ValueError(msg)
        else:
            poison = _or(poison, short)
            # Rows with too few allowed classes are NaN anyway; letting them see every
            # class keeps their intermediate values finite (no 0/0 or inf - inf on the way).
            allowed = allowed | short
            num_allowed = xp.where(short, float(num_classes), num_allowed)

    if weight is not None:
        require_array("weight", weight)
        if not (xp.isdtype(weight.dtype, "real floating") or xp.isdtype(weight.dtype, "integral")):
            msg = f"weight must have a real dtype, got dtype {dtype_name(weight.dtype)}"
            raise TypeError(msg)
        if tuple(weight.shape) != (num_classes,):
            msg = f"weight must have shape ({num_classes},) (one weight per class), got shape {tuple(weight.shape)}"
            raise ValueError(msg)
        weight = xp.astype(weight, work)

    if is_array_api_obj(prior):
        require_real_floating("prior", prior, xp)
        u = _prior_rows(prior, axis, logits.ndim, moved_shape, xp, work)
        bad_prior = validate_prior_values(u, xp, -1)
        if bad_prior is not None:
            poison = _or(poison, xp.broadcast_to(bad_prior[..., None], moved_shape[:-1] + (1,)))
        if allowed is not None:
            # Masked classes get no smoothing mass: renormalise the prior over the rest.
            u = xp.where(allowed, u, 0.0)
            u_total = xp.sum(u, axis=-1, keepdims=True)
            no_mass = xp.logical_not(u_total > 0)
            if eager and bool(xp.any(no_mass)):
                msg = ("prior must give positive mass to at least one class allowed by where in "
                       "every row, got a row whose allowed classes have prior mass 0")
                raise ValueError(msg)
            if not eager:
                poison = _or(poison, no_mass)
                u_total = xp.where(no_mass, 1.0, u_total)
            u = u / u_total
        prior = u

    if not isinstance(epsilon, float):
        epsilon = xp.astype(xp.broadcast_to(xp.astype(epsilon, acc), batch_shape), acc)[..., None]
        if not eager:
            poison = _or(poison, xp.logical_not((epsilon >= 0) & (epsilon <= 1)))

    labels = probabilities = ignored = None
    if is_labels:
        comparable, in_range, ignored = label_masks(targets, num_classes, ignore_index, xp)
        bad = xp.logical_not(in_range)
        if ignored is not None:
            bad = bad & xp.logical_not(ignored)
        labels = safe_indices(comparable, in_range, xp)
        if allowed is not None:
            label_allowed = _core._take_along_last(allowed, labels[..., None], xp)[..., 0]
            on_masked = xp.logical_not(label_allowed) & xp.logical_not(bad)
            if ignored is not None:
                on_masked = on_masked & xp.logical_not(ignored)
            if eager and bool(xp.any(on_masked)):
                value = first_value(comparable, on_masked, xp)
                msg = f"targets must not point at a class masked out by where, got label {value} on a masked class"
                raise ValueError(msg)
            bad = bad | on_masked
            unused = bad if ignored is None else bad | ignored
            # Rows without a valid label (ignored, or NaN when traced) still go through the
            # arithmetic: pointing them at an allowed class keeps it finite, since a masked
            # class may hold a -inf logit (0 * inf or inf - inf would warn on NumPy).
            first_allowed = xp.astype(xp.argmax(xp.astype(allowed, xp.int8), axis=-1), labels.dtype)
            labels = xp.where(unused, first_allowed, labels)
        if eager:
            if bool(xp.any(bad)):
                raise ValueError(_bad_label_message(first_value(comparable, bad, xp), num_classes, ignore_index))
        else:
            poison = _or(poison, bad[..., None])
        if ignored is not None:
            ignored = ignored[..., None]
    else:
        probabilities = class_last(xp.astype(targets, work, copy=False))
        negative = xp.logical_not(probabilities >= 0)
        row_bad = xp.any(negative, axis=-1, keepdims=True)
        if allowed is not None:
            row_bad = row_bad | xp.any((probabilities != 0) & xp.logical_not(allowed), axis=-1, keepdims=True)
        if eager:
            if bool(xp.any(negative)):
                msg = f"probability targets must be non-negative, got a value of {first_value(targets, negative, xp)}"
                raise ValueError(msg)
            if bool(xp.any(row_bad)):
                msg = "probability targets must put no mass on classes masked out by where, got a row that does"
                raise ValueError(msg)
        else:
            poison = _or(poison, row_bad)

    return _Problem(
        xp=xp, logits=z, labels=labels, probabilities=probabilities, epsilon=epsilon,
        prior=prior, weight=weight, allowed=allowed, num_allowed=num_allowed, ignored=ignored,
        poison=poison, reduction=reduction, axis=axis, ndim=logits.ndim,
        result_dtype=logits.dtype, acc=acc,
    )


def _bad_label_message(value: int, num_classes: int, ignore_index: int | None) -> str:
    allowed_text = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
    msg = f"targets must be class indices in [0, {num_classes}){allowed_text}, got a label of {value}"
    if ignore_index is None and value == -100:
        msg += " (PyTorch's padding label: pass ignore_index=-100 to skip those samples)"
    return msg


def _target_shape_message(targets_shape: tuple, logits_shape: tuple, axis: int, integer: bool) -> str:
    """Why ``targets`` does not fit ``logits``, with the fix when one is evident."""
    batch_shape = logits_shape[:axis] + logits_shape[axis + 1:]
    if integer:
        msg = (f"integer targets must have the logits' shape without the class axis, "
               f"{batch_shape}, got shape {targets_shape}")
    else:
        msg = f"probability targets must have the logits' shape {logits_shape}, got shape {targets_shape}"
        if targets_shape == batch_shape:
            msg += " (class indices need an integer dtype: cast the labels to int64)"
    if integer and len(logits_shape) > 2 and axis == len(logits_shape) - 1:
        channels_first = logits_shape[:1] + logits_shape[2:]
        if targets_shape == channels_first:
            msg += (f" (for PyTorch's (N, C, d1, ...) layout pass axis=1: logits of shape "
                    f"{logits_shape} with axis=1 take targets of shape {targets_shape})")
    return msg


def _dense_coefficients(problem: _Problem) -> Any:
    """Target weights ``c = w * q'`` of probability targets (class last, working dtype)."""
    xp, q, eps = problem.xp, problem.probabilities, problem.epsilon
    work = q.dtype
    eps_w = eps if isinstance(eps, float) else xp.astype(eps, work)
    if isinstance(eps, float) and eps == 0.0:
        smoothed = q
    elif problem.prior is None or isinstance(problem.prior, str):
        allowed = 1.0 if problem.allowed is None else xp.astype(problem.allowed, work)
        count = problem.num_allowed
        count = count if isinstance(count, int) else xp.astype(count, work)
        if problem.prior is None:
            smoothed = (1.0 - eps_w) * q + eps_w * allowed / count
        else:
            smoothed = (1.0 - eps_w) * q + eps_w * (allowed - q) / (count - 1.0)
    else:
        smoothed = (1.0 - eps_w) * q + eps_w * problem.prior
    return smoothed if problem.weight is None else smoothed * problem.weight


@dataclass
class _Evaluation:
    per_sample: Any  # acc dtype, batch + (1,): NaN on poisoned rows, 0 on ignored ones
    rows: Any
    label_terms: Any
    dense_coef: Any
    dense_total: Any


def _evaluate(problem: _Problem) -> _Evaluation:
    xp, acc = problem.xp, problem.acc
    rows = _core.row_softmax(problem.logits, problem.allowed, xp, acc)
    label_terms = dense_coef = dense_total = None
    if problem.labels is not None:
        label_terms = _core.label_target_terms(
            rows, problem.labels, epsilon=problem.epsilon, prior=problem.prior,
            weight=problem.weight, allowed=problem.allowed, num_allowed=problem.num_allowed,
            xp=xp, acc_dtype=acc,
        )
        total, distance = label_terms.total, label_terms.weighted_distance
    else:
        dense_coef = _dense_coefficients(problem)
        total, distance = _core.dense_target_terms(rows, dense_coef, xp, acc)
        dense_total = total
    per_sample = total * rows.log_sum + distance
    if problem.ignored is not None:
        per_sample = xp.where(problem.ignored, 0.0, per_sample)
    if problem.poison is not None:
        # Multiply rather than select, so that autodiff of the loss is NaN there as well.
        per_sample = per_sample * xp.where(problem.poison, _NAN, 1.0)
    return _Evaluation(per_sample, rows, label_terms, dense_coef, dense_total)


def _mean_denominator(problem: _Problem, evaluation: _Evaluation) -> Any:
    """PyTorch's normaliser: sum of w_y over counted samples (labels) or N (probabilities)."""
    xp, acc = problem.xp, problem.acc
    shape = evaluation.per_sample.shape
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


def _reduce(problem: _Problem, evaluation: _Evaluation) -> tuple[Any, Any]:
    """(loss in the result dtype, per-row gradient scale in acc dtype)."""
    xp = problem.xp
    per_sample = evaluation.per_sample
    if problem.reduction == "none":
        return xp.astype(per_sample[..., 0], problem.result_dtype), 1.0
    # NumPy reductions give scalars: reshape to keep the result a 0-d array.
    total = xp.reshape(xp.sum(per_sample), (1,))
    if problem.reduction == "sum":
        return xp.reshape(xp.astype(total, problem.result_dtype), ()), 1.0
    denominator = _mean_denominator(problem, evaluation)
    loss = _safe_divide(total, denominator, xp)
    scale = _safe_divide(xp.asarray(1.0, dtype=problem.acc, device=device_of(problem.logits)), denominator, xp)
    return xp.reshape(xp.astype(loss, problem.result_dtype), ()), scale


def _gradient(problem: _Problem, evaluation: _Evaluation, scale: Any) -> Any:
    xp = problem.xp
    if problem.labels is not None:
        grad = _core.label_gradient(evaluation.rows, evaluation.label_terms, scale, xp)
    else:
        grad = _core.dense_gradient(evaluation.rows, evaluation.dense_coef, evaluation.dense_total, scale, xp)
    if problem.allowed is not None:
        grad = xp.where(problem.allowed, grad, 0.0)
    if problem.ignored is not None:
        grad = xp.where(problem.ignored, 0.0, grad)
    if problem.poison is not None:
        grad = xp.where(problem.poison, _NAN, grad)
    grad = xp.astype(grad, problem.result_dtype)
    if problem.axis != problem.ndim - 1:
        grad = xp.moveaxis(grad, -1, problem.axis)
    return grad


_OPTIONS_DOC = r"""
    Parameters
    ----------
    logits : array of real floating dtype
        Unnormalised log-probabilities ``z``; the class axis is ``axis``.
    targets : array
        Integer class labels with the shape of ``logits`` without ``axis``, or probability
        rows (real floating, same shape and dtype as ``logits``), which are then smoothed
        as PyTorch does.
    epsilon : float in [0, 1] or array broadcastable to the batch shape, default 0.0
        Smoothing strength; an array gives per-sample smoothing.
    prior : None, "others" or array, default None
        Smoothing distribution ``u``: uniform ``1/K`` (PyTorch, optax, Keras, TF, timm,
        Hugging Face); ``"others"``: ``(1 - q)/(K - 1)``, the true class keeps exactly
        ``1 - eps`` (fairseq); or a class prior of shape ``(K,)`` (or broadcastable to
        ``logits``), non-negative and summing to 1.
    axis : int, default -1
        Class axis (``axis=1`` for PyTorch's ``(N, C, d1, ...)`` layout).
    weight : array of shape (K,), optional
        Per-class weights with PyTorch's exact semantics: for labels, the per-sample loss
        is ``(1-eps) w_y (-log p_y) + eps sum_k u_k w_k (-log p_k)`` and ``"mean"`` divides
        by ``sum_i w_{y_i}`` over counted samples; for probability targets the loss is
        ``-sum_k w_k q'_k log p_k`` and ``"mean"`` divides by the number of samples.
    ignore_index : int, optional
        Label value whose samples contribute nothing and are not counted by ``"mean"``
        (integer targets only). All samples ignored with ``"mean"`` gives NaN, as PyTorch.
    where : boolean array broadcastable to ``logits``, optional
        Classes where False are excluded from the softmax, receive no smoothing mass (``K``
        counts the allowed classes of each row) and get zero gradient; they may hold
        ``-inf`` logits.
    reduction : {"mean", "sum", "none"}, default "mean"
    xp : array namespace, optional
        Inferred from the array arguments when None.
"""

_RAISES_DOC = r"""
    Raises
    ------
    TypeError
        Integer/boolean/complex ``logits``, targets of another dtype, arrays of different
        libraries, options of the wrong type.
    ValueError
        Shape mismatches, labels out of range or on masked classes, ``epsilon`` outside
        [0, 1], an invalid prior, ``weight`` of the wrong length, an unknown ``reduction``,
        ``ignore_index`` with probability targets. Under ``jax.jit`` and on lazy Dask
        arrays, invalid values cannot be seen: the affected results are NaN instead.
"""


def cross_entropy(
    logits: Any,
    targets: Any,
    /,
    *,
    epsilon: Any = 0.0,
    prior: Any = None,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int | None = None,
    where: Any = None,
    reduction: str = "mean",
    xp: Any = None,
) -> Any:
    problem = _prepare(logits, targets, epsilon=epsilon, prior=prior, axis=axis, weight=weight,
                       ignore_index=ignore_index, where=where, reduction=reduction, xp=xp)
    if _numpy_fast.eligible(problem):
        return _numpy_fast.evaluate(problem, with_grad=False)[0]
    if _jax_fast.eligible(problem):
        return _jax_fast.evaluate(problem, with_grad=False)[0]
    if _torch_fast.eligible(problem):
        return _torch_fast.evaluate(problem, with_grad=False)[0]
    loss, _ = _reduce(problem, _evaluate(problem))
    return loss


def cross_entropy_grad(
    logits: Any,
    targets: Any,
    /,
    *,
    epsilon: Any = 0.0,
    prior: Any = None,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int | None = None,
    where: Any = None,
    reduction: str = "mean",
    xp: Any = None,
) -> Any:
    return cross_entropy_with_grad(
        logits, targets, epsilon=epsilon, prior=prior, axis=axis, weight=weight,
        ignore_index=ignore_index, where=where, reduction=reduction, xp=xp)[1]


def cross_entropy_with_grad(
    logits: Any,
    targets: Any,
    /,
    *,
    epsilon: Any = 0.0,
    prior: Any = None,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int | None = None,
    where: Any = None,
    reduction: str = "mean",
    xp: Any = None,
) -> tuple[Any, Any]:
    problem = _prepare(logits, targets, epsilon=epsilon, prior=prior, axis=axis, weight=weight,
                       ignore_index=ignore_index, where=where, reduction=reduction, xp=xp)
    if _numpy_fast.eligible(problem):
        return _numpy_fast.evaluate(problem, with_grad=True)
    if _jax_fast.eligible(problem):
        return _jax_fast.evaluate(problem, with_grad=True)
    if _torch_fast.eligible(problem):
        return _torch_fast.evaluate(problem, with_grad=True)
    evaluation = _evaluate(problem)
    loss, scale = _reduce(problem, evaluation)
    return loss, _gradient(problem, evaluation, scale)


cross_entropy.__doc__ = r"""Cross-entropy of the logits against label-smoothed targets.

    .. math::

        q' = (1 - \varepsilon)\, q + \varepsilon\, u, \qquad
        H(q', p) = -\sum_k q'_k \log p_k
                 = (1 - \varepsilon) H(q, p) + \varepsilon H(u, p),
        \qquad p = \operatorname{softmax}(z)

    (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision",
    section 7). With integer labels the dense ``q'`` is never formed: one sample's loss is
    ``(1 - eps) (lse - z_y) + eps (lse - sum_k u_k z_k)``, evaluated as sums of
    non-negative terms ``log s + (m - z_k)`` so that it is exactly invariant to shifting
    the logits.
""" + _OPTIONS_DOC + r"""
    Returns
    -------
    array
        Scalar for ``"mean"``/``"sum"``, batch-shaped for ``"none"``; dtype of ``logits``.
""" + _RAISES_DOC + r"""
    Examples
    --------
    >>> import math
    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> z = xp.log(xp.asarray([[0.1, 0.1, 0.1, 0.36, 0.34]]))
    >>> y = xp.asarray([3])
    >>> round(float(ls.cross_entropy(z, y)), 12), round(float(ls.cross_entropy(z, y, epsilon=0.1)), 12)
    (1.021651247532, 1.099650446537)
"""

cross_entropy_grad.__doc__ = r"""Analytic gradient of :func:`cross_entropy` with respect to the logits.

    .. math:: \frac{\partial H(q', p)}{\partial z} = p - q'

    per sample, scaled by the reduction (``"mean"`` divides by its normaliser; for
    ``"none"`` each row is that sample's own gradient). With class weights it is PyTorch's
    ``(sum_k t_k) p - t`` where ``t = (1-eps) w_y e_y + eps u * w`` (labels) or
    ``t = w * q'`` (probabilities). Ignored samples and masked classes get 0. Equal to
    ``jax.grad`` / ``torch.autograd`` of :func:`cross_entropy`.
""" + _OPTIONS_DOC + r"""
    Returns
    -------
    array
        Same shape and dtype as ``logits``.
""" + _RAISES_DOC + r"""
    Examples
    --------
    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> ls.cross_entropy_grad(xp.asarray([[0.0, 0.0]]), xp.asarray([0]), epsilon=0.2)
    Array([[-0.4,  0.4]], dtype=array_api_strict.float64)
"""

cross_entropy_with_grad.__doc__ = r"""Loss and gradient together: ``(cross_entropy(...), cross_entropy_grad(...))``.

    The softmax of the logits is computed once and shared.
""" + _OPTIONS_DOC + r"""
    Returns
    -------
    loss, grad : tuple of arrays
""" + _RAISES_DOC

