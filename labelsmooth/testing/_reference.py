"""A slow, high-precision reference of the smoothed cross-entropy, written from its definition.

Nothing here uses labelsmooth's own numerical code: every sample's dense smoothed target
``q'`` is built explicitly and the loss ``-sum_k w_k q'_k log p_k`` and its gradient are
evaluated in mpmath at 40 significant digits, then rounded once to float64.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .._problem import AdapterOptions, complete_options, with_options
from ._assertions import to_numpy

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["reference_cross_entropy", "reference_cross_entropy_grad", "reference_cross_entropy_with_grad"]

_FLOAT_NAMES = {"float16", "bfloat16", "float32", "float64"}
_REDUCTIONS = ("mean", "sum", "none")
# Machine epsilon by dtype name; a prior must sum to 1 within its square root.
_EPSILON = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}


def _mpmath() -> Any:
    try:
        import mpmath
    except ImportError as exc:
        msg = (
            "the labelsmooth.testing reference needs mpmath: install it with "
            "`pip install mpmath` (or `pip install labelsmooth[reference]`)"
        )
        raise ImportError(msg) from exc
    return mpmath


def _as_float64(name: str, x: Any) -> np.ndarray:
    array, dtype_name = to_numpy(x)
    if dtype_name not in _FLOAT_NAMES:
        msg = f"{name} must have a real floating dtype, got dtype {dtype_name}"
        raise TypeError(msg)
    # Widening to float64 is exact for every floating input dtype.
    return np.asarray(array, dtype=np.float64)


def _real_float64(name: str, x: Any) -> np.ndarray:
    array, dtype_name = to_numpy(x)
    if dtype_name not in _FLOAT_NAMES and array.dtype.kind not in "iu":
        msg = f"{name} must have a real dtype, got dtype {dtype_name}"
        raise TypeError(msg)
    return np.asarray(array, dtype=np.float64)


def _broadcast(name: str, x: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        return np.broadcast_to(x, shape)
    except ValueError:
        msg = f"{name} must be broadcastable to {what} {shape}, got shape {x.shape}"
        raise ValueError(msg) from None


def _check_options(axis: Any, reduction: Any, ignore_index: Any, ndim: int) -> tuple[int, str, int | None]:
    if isinstance(axis, bool):
        msg = f"axis must be an int, got {axis!r}"
        raise TypeError(msg)
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        msg = f"axis must be in [{-ndim}, {ndim - 1}], got {axis}"
        raise ValueError(msg)
    if reduction not in _REDUCTIONS:
        msg = f"reduction must be one of {_REDUCTIONS}, got {reduction!r}"
        raise ValueError(msg)
    if ignore_index is not None:
        if isinstance(ignore_index, bool):
            msg = f"ignore_index must be an int or None, got {ignore_index!r}"
            raise TypeError(msg)
        ignore_index = operator.index(ignore_index)
    return axis % ndim, reduction, ignore_index


class _Options(NamedTuple):
    """The keyword arguments of the public functions, in the order of their signature."""

    epsilon: Any
    prior: Any
    axis: Any
    weight: Any
    ignore_index: Any
    where: Any
    reduction: Any
    sample_weight: Any
    z_loss: Any
    softcap: Any
    dps: int


class _Rows(NamedTuple):
    """The checked inputs as float64 rows, one a sample, with the classes last."""

    logits: np.ndarray  # (N, K)
    labels: np.ndarray | None  # (N,) int64 for integer targets, else None
    probabilities: np.ndarray | None  # (N, K) for probability targets, else None
    allowed: np.ndarray  # (N, K) bool
    epsilon: np.ndarray  # (N,)
    prior: Any  # None, "others" or (N, K) float64 rows
    weights: np.ndarray | None  # (K,)
    sample_weights: np.ndarray | None  # (N,)
    ignore_index: int | None
    masked: bool  # whether a where mask was given
    batch_shape: tuple[int, ...]
    axis: int
    z_loss: float
    softcap: float | None


class _Target(NamedTuple):
    """One counted sample's target: a label or a probability row (as mpf), and its "mean" share."""

    label: int | None
    q: list[Any] | None
    share: Any


def _class_rows(x: np.ndarray, axis: int, num_classes: int) -> np.ndarray:
    return np.moveaxis(x, axis, -1).reshape(-1, num_classes)


def _target_rows(
    targets: Any, full_shape: tuple[int, ...], axis: int, ignore_index: int | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(labels, None)`` for integer targets, ``(None, probability rows)`` for floating ones."""
    raw_targets, target_dtype = to_numpy(targets)
    num_classes = full_shape[axis]
    batch_shape = full_shape[:axis] + full_shape[axis + 1 :]
    if raw_targets.dtype.kind in "iu":
        if raw_targets.shape != batch_shape:
            msg = f"integer targets must have shape {batch_shape}, got shape {raw_targets.shape}"
            raise ValueError(msg)
        return raw_targets.astype(np.int64).reshape(-1), None
    if target_dtype not in _FLOAT_NAMES:
        msg = f"targets must be integer labels or floating probabilities, got dtype {target_dtype}"
        raise TypeError(msg)
    if raw_targets.shape != full_shape:
        msg = f"probability targets must have the logits' shape {full_shape}, got shape {raw_targets.shape}"
        raise ValueError(msg)
    if ignore_index is not None:
        msg = "ignore_index needs integer targets, got probability targets"
        raise ValueError(msg)
    probabilities = _class_rows(raw_targets.astype(np.float64), axis, num_classes)
    if np.any(~(probabilities >= 0)):
        msg = "probability targets must be non-negative"
        raise ValueError(msg)
    return None, probabilities


def _allowed_rows(where: Any, full_shape: tuple[int, ...], axis: int, num_rows: int) -> np.ndarray:
    num_classes = full_shape[axis]
    if where is None:
        return np.ones((num_rows, num_classes), dtype=bool)
    mask, mask_dtype = to_numpy(where)
    if mask_dtype != "bool":
        msg = f"where must be a boolean array, got dtype {mask_dtype}"
        raise TypeError(msg)
    return _class_rows(_broadcast("where", mask, full_shape, "the logits' shape"), axis, num_classes)


def _epsilon_rows(epsilon: Any, batch_shape: tuple[int, ...], num_rows: int) -> np.ndarray:
    if isinstance(epsilon, (float, int)) and not isinstance(epsilon, bool):
        eps_rows = np.full(num_rows, float(epsilon))
    else:
        eps_array = _real_float64("epsilon", epsilon)
        eps_rows = _broadcast("epsilon", eps_array, batch_shape, "the batch shape").reshape(-1)
    if np.any(~((eps_rows >= 0) & (eps_rows <= 1))):
        msg = f"epsilon must lie in [0, 1], got {eps_rows[~((eps_rows >= 0) & (eps_rows <= 1))][0]}"
        raise ValueError(msg)
    return eps_rows


def _sample_weight_rows(sample_weight: Any, batch_shape: tuple[int, ...]) -> np.ndarray | None:
    """Per-sample weights as checked ``(N,)`` float64, or None."""
    if sample_weight is None:
        return None
    rows = _broadcast("sample_weight", _real_float64("sample_weight", sample_weight), batch_shape, "the batch shape")
    rows = rows.reshape(-1)
    bad = ~((rows >= 0) & np.isfinite(rows))
    if np.any(bad):
        msg = f"sample_weight must be finite and non-negative, got a value of {rows[bad][0]}"
        raise ValueError(msg)
    return rows


def _prior_rows(prior: Any, full_shape: tuple[int, ...], axis: int, num_rows: int) -> Any:
    """None, ``"others"``, or the prior as checked ``(N, K)`` float64 rows."""
    if isinstance(prior, str):
        if prior != "others":
            msg = f"prior must be None, 'others' or an array, got {prior!r}"
            raise ValueError(msg)
        return prior
    if prior is None:
        return None
    num_classes = full_shape[axis]
    prior_array, prior_dtype = to_numpy(prior)
    if prior_dtype not in _FLOAT_NAMES:
        msg = f"prior must have a real floating dtype, got dtype {prior_dtype}"
        raise TypeError(msg)
    tolerance = math.sqrt(_EPSILON[prior_dtype])
    prior_array = prior_array.astype(np.float64)
    if prior_array.ndim == 1 and prior_array.shape[0] == num_classes:
        # A (K,) prior names classes, whatever the class axis.
        prior_rows = np.broadcast_to(prior_array, (num_rows, num_classes))
    else:
        prior_rows = _class_rows(_broadcast("prior", prior_array, full_shape, "the logits' shape"), axis, num_classes)
    if np.any(~(prior_rows >= 0)):
        msg = "prior must have non-negative entries"
        raise ValueError(msg)
    if np.any(np.abs(prior_rows.sum(axis=-1) - 1.0) > tolerance):
        msg = f"prior must sum to 1 along the class axis (tolerance {tolerance:.1e})"
        raise ValueError(msg)
    return prior_rows


def _class_weights(weight: Any, num_classes: int) -> np.ndarray | None:
    if weight is None:
        return None
    weights = _real_float64("weight", weight)
    if weights.shape != (num_classes,):
        msg = f"weight must have shape ({num_classes},), got shape {weights.shape}"
        raise ValueError(msg)
    return weights


def _prepare(logits: Any, targets: Any, options: _Options) -> tuple[_Rows, str]:
    """Check every input as :func:`labelsmooth.cross_entropy` does; the rows and the reduction."""
    z = _as_float64("logits", logits)
    if z.ndim == 0:
        msg = "logits must have at least one dimension (the class axis), got a 0-d array"
        raise ValueError(msg)
    axis, reduction, ignore_index = _check_options(options.axis, options.reduction, options.ignore_index, z.ndim)
    full_shape = z.shape
    num_classes = full_shape[axis]
    batch_shape = full_shape[:axis] + full_shape[axis + 1 :]
    labels, probabilities = _target_rows(targets, full_shape, axis, ignore_index)
    logit_rows = _class_rows(z, axis, num_classes)
    num_rows = logit_rows.shape[0]
    rows = _Rows(
        logits=logit_rows,
        labels=labels,
        probabilities=probabilities,
        allowed=_allowed_rows(options.where, full_shape, axis, num_rows),
        epsilon=_epsilon_rows(options.epsilon, batch_shape, num_rows),
        prior=_prior_rows(options.prior, full_shape, axis, num_rows),
        weights=_class_weights(options.weight, num_classes),
        sample_weights=_sample_weight_rows(options.sample_weight, batch_shape),
        ignore_index=ignore_index,
        masked=options.where is not None,
        batch_shape=batch_shape,
        axis=axis,
        z_loss=_non_negative("z_loss", options.z_loss),
        softcap=None if options.softcap is None else _positive("softcap", options.softcap),
    )
    return rows, reduction


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        msg = f"{name} must be a non-negative float, got {value!r}"
        raise TypeError(msg)
    if not 0.0 <= float(value) < float("inf"):
        msg = f"{name} must be finite and non-negative, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _positive(name: str, value: Any) -> float:
    checked = _non_negative(name, value)
    if checked == 0.0:
        msg = f"{name} must be None or finite and positive, got {value!r}"
        raise ValueError(msg)
    return checked


def _sample_target(ctx: Any, rows: _Rows, w_row: list[Any], i: int) -> _Target | None:
    """Sample ``i``'s target, checked against its mask; None for an ignored sample."""
    allowed_i = rows.allowed[i]
    num_allowed = int(allowed_i.sum())
    needed = 2 if isinstance(rows.prior, str) else 1
    if num_allowed < needed:
        msg = f"where must allow at least {needed} class(es) in every row, got a row allowing {num_allowed}"
        raise ValueError(msg)
    if rows.labels is None:
        q_row = rows.probabilities[i]  # type: ignore[index]
        if np.any((q_row != 0) & ~allowed_i):
            msg = "probability targets must put no mass on classes masked out by where"
            raise ValueError(msg)
        return _Target(None, [ctx.mpf(float(v)) for v in q_row], ctx.mpf(1))
    label = int(rows.labels[i])
    if rows.ignore_index is not None and label == rows.ignore_index:
        return None
    num_classes = rows.logits.shape[1]
    if not 0 <= label < num_classes:
        msg = f"targets must be class indices in [0, {num_classes}), got a label of {label}"
        raise ValueError(msg)
    if not allowed_i[label]:
        msg = f"targets must not point at a class masked out by where, got label {label}"
        raise ValueError(msg)
    return _Target(label, None, w_row[label])


def _smoothing(ctx: Any, rows: _Rows, i: int, classes: list[int], target: _Target) -> list[Any]:
    """The smoothing distribution ``u`` of sample ``i`` over its allowed classes."""
    one = ctx.mpf(1)
    if rows.prior is None:
        return [one / len(classes)] * len(classes)
    if isinstance(rows.prior, str):
        share = one / (len(classes) - 1)
        if target.q is None:
            return [ctx.mpf(0) if k == target.label else share for k in classes]
        return [(one - target.q[k]) * share for k in classes]
    u = [ctx.mpf(float(rows.prior[i, k])) for k in classes]
    if rows.masked:
        # Masked classes get no smoothing mass: renormalise over the allowed ones.
        total = ctx.fsum(u)
        if total == 0:
            msg = "prior must give positive mass to at least one allowed class in every row"
            raise ValueError(msg)
        u = [v / total for v in u]
    return u


def _coefficients(ctx: Any, rows: _Rows, i: int, classes: list[int], target: _Target, w_row: list[Any]) -> list[Any]:
    """Target weights ``c_k = w_k q'_k`` over the allowed classes, ``q' = (1 - eps) q + eps u``."""
    u = _smoothing(ctx, rows, i, classes, target)
    eps = ctx.mpf(float(rows.epsilon[i]))
    keep = ctx.mpf(1) - eps
    if rows.prior is None:
        spread = [eps * u[0]] * len(classes)  # a uniform u: one product serves every class
    else:
        spread = [eps * u_k for u_k in u]
    if rows.weights is not None:
        spread = [w_row[k] * b for k, b in zip(classes, spread)]
    if target.q is None:
        spread[classes.index(target.label)] += keep * w_row[target.label]  # type: ignore[arg-type,index]
        return spread
    q = target.q
    return [b + w_row[k] * keep * q[k] if q[k] else b for k, b in zip(classes, spread)]


def _exact_logits(mpmath: Any, values: np.ndarray) -> list[Any]:
    return [mpmath.mp.make_mpf(mpmath.libmp.from_float(float(v))) for v in values]


def _sample_loss(
    ctx: Any, z_i: list[Any], coef: list[Any], classes: list[int], num_classes: int, need_grad: bool
) -> tuple[Any, list[Any] | None]:
    """The loss ``-sum_k c_k log p_k`` of one sample and, if asked, its gradient row."""
    if any(ctx.isnan(v) or v == ctx.inf for v in z_i):
        return ctx.nan, ([ctx.nan] * num_classes if need_grad else None)
    one = ctx.mpf(1)
    top = max(range(len(z_i)), key=z_i.__getitem__)
    shift = z_i[top] if ctx.isfinite(z_i[top]) else ctx.mpf(0)
    gaps = [shift - v for v in z_i]  # m - z_k >= 0
    exps = [ctx.exp(-g) for g in gaps]
    # s = 1 + rest with the top class's exact unit term kept apart, and log(s) as
    # log1p(rest): a 40-digit log(1 + 1e-218) would round to 0.
    rest = ctx.fsum(e for j, e in enumerate(exps) if j != top) + (exps[top] - one)
    total_coef = ctx.fsum(coef)
    # -log p_k = log(s) + (m - z_k), so loss = T log(s) + sum_k c_k (m - z_k); a class
    # with no target mass contributes 0 even when its logit is -inf (the limit, not
    # IEEE 0 * inf).
    nonzero = [(c, g) for c, g in zip(coef, gaps) if c != 0]
    loss = total_coef * ctx.log1p(rest) + ctx.fdot(nonzero)
    if not need_grad:
        return loss, None
    return loss, _sample_gradient(ctx, exps, coef, top, rest, total_coef, classes, num_classes)


def _z_term(
    ctx: Any, z_i: list[Any], z_loss: Any, classes: list[int], num_classes: int, need_grad: bool
) -> tuple[Any, list[Any] | None]:
    """``z_loss * lse^2`` of one sample and its gradient row ``2 z_loss lse p``."""
    if any(ctx.isnan(v) or v == ctx.inf for v in z_i):
        return ctx.nan, ([ctx.nan] * num_classes if need_grad else None)
    top = max(z_i)
    exps = [ctx.exp(v - top) for v in z_i]
    total = ctx.fsum(exps)
    lse = top + ctx.log(total)
    if not need_grad:
        return z_loss * lse * lse, None
    grad_row: list[Any] = [ctx.mpf(0)] * num_classes
    for k, e in zip(classes, exps):
        grad_row[k] = 2 * z_loss * lse * e / total
    return z_loss * lse * lse, grad_row


def _sample_gradient(
    ctx: Any,
    exps: list[Any],
    coef: list[Any],
    top: int,
    rest: Any,
    total_coef: Any,
    classes: list[int],
    num_classes: int,
) -> list[Any]:
    """``T p_k - c_k`` on the allowed classes, 0 on the masked ones."""
    sum_exp = ctx.mpf(1) + rest
    grad_row: list[Any] = [ctx.mpf(0)] * num_classes
    prob_coef = total_coef / sum_exp
    for k, e, c in zip(classes, exps, coef):
        grad_row[k] = prob_coef * e - c
    # For the top class T p - c cancels: use (T - c) - T (1 - p) with both
    # brackets summed from non-negative terms, so tiny gradients keep their digits.
    others_coef = ctx.fsum(c for j, c in enumerate(coef) if j != top)
    grad_row[classes[top]] = others_coef - total_coef * rest / sum_exp
    return grad_row


class _Part(NamedTuple):
    """One summand of the loss over the samples: per-sample values, gradient rows, "mean" shares."""

    losses: list[Any]  # None for ignored samples
    grads: list[Any]  # None for ignored samples (or when no gradient is asked for)
    shares: list[Any]  # the "mean" normaliser's share of each counted sample


def _per_sample(mpmath: Any, rows: _Rows, need_grad: bool) -> tuple[_Part, _Part]:
    """The cross-entropy and the z-loss terms of every sample.

    The cross-entropy's "mean" shares are PyTorch's (``w_y``); the z-loss terms' are 1 each.
    """
    ctx = mpmath.mp
    num_classes = rows.logits.shape[1]
    w_row = [ctx.mpf(1)] * num_classes if rows.weights is None else [ctx.mpf(float(v)) for v in rows.weights]
    loss_part, z_part = _Part([], [], []), _Part([], [], [])
    for i in range(rows.logits.shape[0]):
        target = _sample_target(ctx, rows, w_row, i)
        values = (None, None, None, None) if target is None else _sample(mpmath, rows, i, target, w_row, need_grad)
        for part, loss, grad in ((loss_part, values[0], values[1]), (z_part, values[2], values[3])):
            part.losses.append(loss)
            part.grads.append(grad)
        if target is not None:
            loss_part.shares.append(target.share)
            z_part.shares.append(ctx.mpf(1))
    return loss_part, z_part


def _sample(mpmath: Any, rows: _Rows, i: int, target: _Target, w_row: list[Any], need_grad: bool) -> tuple:
    """``(loss, grad_row, z_term, z_grad_row)`` of counted sample ``i`` (grad rows None unless asked)."""
    ctx = mpmath.mp
    num_classes = rows.logits.shape[1]
    classes = [k for k in range(num_classes) if rows.allowed[i, k]]
    coef = _coefficients(ctx, rows, i, classes, target, w_row)
    z_i = _exact_logits(mpmath, rows.logits[i, classes])
    cap = None if rows.softcap is None else ctx.mpf(rows.softcap)
    capped = z_i if cap is None else [cap * ctx.tanh(v / cap) for v in z_i]
    loss, grad_row = _sample_loss(ctx, capped, coef, classes, num_classes, need_grad)
    z_term, z_grad = _z_term(ctx, capped, ctx.mpf(rows.z_loss), classes, num_classes, need_grad)
    factors = [ctx.mpf(1)] * num_classes
    if cap is not None:
        # The chain rule through c tanh(z / c): times sech^2(z / c).
        for k, v in zip(classes, z_i):
            factors[k] = ctx.sech(v / cap) ** 2
    # Keras' sample weights multiply the sample's loss and gradient, not the normaliser.
    weight = ctx.mpf(1) if rows.sample_weights is None else ctx.mpf(float(rows.sample_weights[i]))
    if grad_row is not None and z_grad is not None:
        grad_row = [weight * f * g for f, g in zip(factors, grad_row)]
        z_grad = [weight * f * g for f, g in zip(factors, z_grad)]
    return weight * loss, grad_row, weight * z_term, z_grad


def _reduce(ctx: Any, part: _Part, reduction: str) -> tuple[Any, Any]:
    """The reduced part (a list of mpf for "none"), and the factor it applies to each gradient."""
    one = ctx.mpf(1)
    if reduction == "none":
        return [ctx.mpf(0) if v is None else v for v in part.losses], one
    total = ctx.fsum(v for v in part.losses if v is not None)
    if reduction == "sum":
        return total, one
    denominator = ctx.fsum(part.shares)
    if denominator == 0:
        return ctx.nan, ctx.nan
    return total / denominator, one / denominator


def _gradient(ctx: Any, parts: list[tuple[_Part, Any]], rows: _Rows) -> np.ndarray:
    """The parts' gradient rows, each times its scale, as float64 in the logits' layout."""
    grad_rows = np.zeros(rows.logits.shape, dtype=np.float64)
    for i in range(rows.logits.shape[0]):
        terms = [(scale, part.grads[i]) for part, scale in parts if part.grads[i] is not None]
        if terms:
            num_classes = rows.logits.shape[1]
            grad_rows[i] = [float(ctx.fsum(scale * row[k] for scale, row in terms)) for k in range(num_classes)]
    moved_shape = (*rows.batch_shape, rows.logits.shape[1])
    return np.ascontiguousarray(np.moveaxis(grad_rows.reshape(moved_shape), -1, rows.axis))


def _solve(logits: Any, targets: Any, options: _Options, *, need_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
    mpmath = _mpmath()
    rows, reduction = _prepare(logits, targets, options)
    with mpmath.mp.workdps(options.dps):
        ctx = mpmath.mp
        parts = _per_sample(mpmath, rows, need_grad)
        (loss, scale), (z_total, z_scale) = (_reduce(ctx, part, reduction) for part in parts)
        if reduction == "none":
            values = np.array([float(a + b) for a, b in zip(loss, z_total)], dtype=np.float64)
            result = values.reshape(rows.batch_shape)
        else:
            result = np.asarray(float(loss + z_total), dtype=np.float64)
        if not need_grad:
            return result, None
        return result, _gradient(ctx, [(parts[0], scale), (parts[1], z_scale)], rows)


_PARAMETERS_DOC = r"""
    Parameters
    ----------
    logits : array of real floating dtype, any library or device
        Converted to NumPy and widened exactly to float64.
    targets : array
        Integer labels (the logits' shape without ``axis``) or floating probability rows
        (the logits' shape), as in :func:`labelsmooth.cross_entropy`.
    epsilon, prior, axis, weight, ignore_index, where, reduction, sample_weight, z_loss, softcap
        Exactly as in :func:`labelsmooth.cross_entropy`: ``q' = (1 - eps) q + eps u`` with
        ``u`` uniform over the allowed classes (``prior=None``), ``(allowed - q)/(K - 1)``
        (``"others"``) or the given prior (renormalised over the allowed classes when
        ``where`` is given); PyTorch's weighted semantics (labels: ``"mean"`` divides by
        ``sum_i w_{y_i}`` over non-ignored samples; probabilities: by the sample count).
    dps : int, default 40
        Decimal digits of the mpmath working precision.
"""


@with_options(namespace=False)
def reference_cross_entropy_with_grad(
    logits: Any, targets: Any, /, *, dps: int = 40, **options: Unpack[AdapterOptions]
) -> tuple[np.ndarray, np.ndarray]:
    settings = _Options(**complete_options(options, namespace=False), dps=dps)
    return _solve(logits, targets, settings, need_grad=True)  # type: ignore[return-value]


@with_options(namespace=False)
def reference_cross_entropy(
    logits: Any, targets: Any, /, *, dps: int = 40, **options: Unpack[AdapterOptions]
) -> np.ndarray:
    settings = _Options(**complete_options(options, namespace=False), dps=dps)
    return _solve(logits, targets, settings, need_grad=False)[0]


@with_options(namespace=False)
def reference_cross_entropy_grad(
    logits: Any, targets: Any, /, *, dps: int = 40, **options: Unpack[AdapterOptions]
) -> np.ndarray:
    settings = _Options(**complete_options(options, namespace=False), dps=dps)
    return _solve(logits, targets, settings, need_grad=True)[1]  # type: ignore[return-value]


reference_cross_entropy.__doc__ = (
    r"""Smoothed cross-entropy computed in 40-digit arithmetic from its definition.

    For every sample the dense smoothed target and the class weights give
    ``c_k = w_k q'_k`` and

    .. math::

        \ell = -\sum_k c_k \log p_k
             = \sum_k c_k \bigl(\log \textstyle\sum_j e^{z_j - m} + m - z_k\bigr),
        \qquad q' = (1 - \varepsilon) q + \varepsilon u

    (Szegedy et al. 2016, section 7; PyTorch's weighted convention), evaluated with mpmath
    (``mp.exp``, ``mp.log``, ``mp.fsum``) at ``dps`` digits and rounded once to float64.
    It shares no code with :func:`labelsmooth.cross_entropy`, so it can judge it (and any
    other implementation). It is slow (pure Python, about 10 microseconds per element):
    use it on up to a few hundred thousand elements.
"""
    + _PARAMETERS_DOC
    + r"""
    Returns
    -------
    numpy.ndarray of float64
        0-d for ``"mean"``/``"sum"``, batch-shaped for ``"none"``. ``"mean"`` over no
        counted sample is NaN (0/0).

    Raises
    ------
    ImportError
        mpmath is not installed.
    TypeError, ValueError
        Invalid inputs, as :func:`labelsmooth.cross_entropy` would reject them.

    Examples
    --------
    >>> import numpy as np
    >>> from labelsmooth.testing import reference_cross_entropy
    >>> z = np.log([[0.1, 0.1, 0.1, 0.36, 0.34]])
    >>> float(reference_cross_entropy(z, np.asarray([3]), epsilon=0.1))  # exact for the rounded logits
    1.0996504465365045
"""
)

reference_cross_entropy_grad.__doc__ = (
    r"""Gradient of :func:`reference_cross_entropy` w.r.t. the logits, in 40-digit arithmetic.

    .. math:: \frac{\partial \ell}{\partial z_k} = T p_k - c_k, \qquad T = \sum_k c_k

    per sample (``p - q'`` without weights), times ``1 / sum_i w_{y_i}`` (or ``1/N``) for
    ``"mean"``. Masked classes and ignored samples get 0.
"""
    + _PARAMETERS_DOC
    + r"""
    Returns
    -------
    numpy.ndarray of float64
        The logits' shape.
"""
)

reference_cross_entropy_with_grad.__doc__ = (
    r"""``(reference_cross_entropy(...), reference_cross_entropy_grad(...))`` in one pass.
"""
    + _PARAMETERS_DOC
    + r"""
    Returns
    -------
    loss, grad : numpy.ndarray of float64
"""
)
