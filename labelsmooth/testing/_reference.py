"""A slow, high-precision reference of the smoothed cross-entropy, written from its definition.

Nothing here uses labelsmooth's own numerical code: every sample's dense smoothed target
``q'`` is built explicitly and the loss ``-sum_k w_k q'_k log p_k`` and its gradient are
evaluated in mpmath at 40 significant digits, then rounded once to float64.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from ._assertions import to_numpy

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


def _solve(
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
    dps: int,
    need_grad: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    mpmath = _mpmath()
    z = _as_float64("logits", logits)
    if z.ndim == 0:
        msg = "logits must have at least one dimension (the class axis), got a 0-d array"
        raise ValueError(msg)
    axis, reduction, ignore_index = _check_options(axis, reduction, ignore_index, z.ndim)
    full_shape = z.shape
    num_classes = full_shape[axis]
    z = np.moveaxis(z, axis, -1)
    batch_shape = z.shape[:-1]

    raw_targets, target_dtype = to_numpy(targets)
    is_labels = raw_targets.dtype.kind in "iu"
    if is_labels:
        if raw_targets.shape != batch_shape:
            msg = f"integer targets must have shape {batch_shape}, got shape {raw_targets.shape}"
            raise ValueError(msg)
        labels = raw_targets.astype(np.int64).reshape(-1)
        probabilities: Any = None
    elif target_dtype in _FLOAT_NAMES:
        if raw_targets.shape != full_shape:
            msg = f"probability targets must have the logits' shape {full_shape}, got shape {raw_targets.shape}"
            raise ValueError(msg)
        if ignore_index is not None:
            msg = "ignore_index needs integer targets, got probability targets"
            raise ValueError(msg)
        probabilities = np.moveaxis(raw_targets.astype(np.float64), axis, -1).reshape(-1, num_classes)
        if np.any(~(probabilities >= 0)):
            msg = "probability targets must be non-negative"
            raise ValueError(msg)
        labels = None
    else:
        msg = f"targets must be integer labels or floating probabilities, got dtype {target_dtype}"
        raise TypeError(msg)

    rows = z.reshape(-1, num_classes)
    num_rows = rows.shape[0]

    if where is None:
        allowed = np.ones(rows.shape, dtype=bool)
    else:
        mask, mask_dtype = to_numpy(where)
        if mask_dtype != "bool":
            msg = f"where must be a boolean array, got dtype {mask_dtype}"
            raise TypeError(msg)
        allowed = np.moveaxis(_broadcast("where", mask, full_shape, "the logits' shape"), axis, -1)
        allowed = allowed.reshape(-1, num_classes)

    if isinstance(epsilon, (float, int)) and not isinstance(epsilon, bool):
        eps_rows = np.full(num_rows, float(epsilon))
    else:
        eps_array = _real_float64("epsilon", epsilon)
        eps_rows = _broadcast("epsilon", eps_array, batch_shape, "the batch shape").reshape(-1)
    if np.any(~((eps_rows >= 0) & (eps_rows <= 1))):
        msg = f"epsilon must lie in [0, 1], got {eps_rows[~((eps_rows >= 0) & (eps_rows <= 1))][0]}"
        raise ValueError(msg)

    prior_rows: Any = None
    if isinstance(prior, str):
        if prior != "others":
            msg = f"prior must be None, 'others' or an array, got {prior!r}"
            raise ValueError(msg)
    elif prior is not None:
        prior_array, prior_dtype = to_numpy(prior)
        if prior_dtype not in _FLOAT_NAMES:
            msg = f"prior must have a real floating dtype, got dtype {prior_dtype}"
            raise TypeError(msg)
        tolerance = math.sqrt(_EPSILON[prior_dtype])
        prior_array = prior_array.astype(np.float64)
        if prior_array.ndim == 1 and prior_array.shape[0] == num_classes:
            # A (K,) prior names classes, whatever the class axis.
            prior_rows = np.broadcast_to(prior_array, rows.shape)
        else:
            full = _broadcast("prior", prior_array, full_shape, "the logits' shape")
            prior_rows = np.moveaxis(full, axis, -1).reshape(-1, num_classes)
        if np.any(~(prior_rows >= 0)):
            msg = "prior must have non-negative entries"
            raise ValueError(msg)
        if np.any(np.abs(prior_rows.sum(axis=-1) - 1.0) > tolerance):
            msg = f"prior must sum to 1 along the class axis (tolerance {tolerance:.1e})"
            raise ValueError(msg)

    weights = None
    if weight is not None:
        weights = _real_float64("weight", weight)
        if weights.shape != (num_classes,):
            msg = f"weight must have shape ({num_classes},), got shape {weights.shape}"
            raise ValueError(msg)

    ctx = mpmath.mp
    losses: list[Any] = []
    grads: list[list[Any] | None] = []
    counted: list[Any] = []  # the "mean" normaliser's share of each counted sample
    with ctx.workdps(dps):
        mpf, make_mpf = ctx.mpf, ctx.make_mpf
        from_float = mpmath.libmp.from_float
        zero, one = mpf(0), mpf(1)
        w_row = [one] * num_classes if weights is None else [mpf(float(v)) for v in weights]
        for i in range(num_rows):
            allowed_i = allowed[i]
            num_allowed = int(allowed_i.sum())
            needed = 2 if isinstance(prior, str) else 1
            if num_allowed < needed:
                msg = f"where must allow at least {needed} class(es) in every row, got a row allowing {num_allowed}"
                raise ValueError(msg)
            if labels is not None:
                label = int(labels[i])
                if ignore_index is not None and label == ignore_index:
                    losses.append(None)
                    grads.append(None)
                    continue
                if not 0 <= label < num_classes:
                    msg = f"targets must be class indices in [0, {num_classes}), got a label of {label}"
                    raise ValueError(msg)
                if not allowed_i[label]:
                    msg = f"targets must not point at a class masked out by where, got label {label}"
                    raise ValueError(msg)
                q: Any = None
                counted.append(w_row[label])
            else:
                q_row = probabilities[i]
                if np.any((q_row != 0) & ~allowed_i):
                    msg = "probability targets must put no mass on classes masked out by where"
                    raise ValueError(msg)
                q = [mpf(float(v)) for v in q_row]
                counted.append(one)
            classes = [k for k in range(num_classes) if allowed_i[k]]

            eps = mpf(float(eps_rows[i]))
            keep = one - eps
            # Smoothing distribution u over the allowed classes.
            if prior is None:
                share = one / num_allowed
                u = [share] * len(classes)
            elif isinstance(prior, str):
                share = one / (num_allowed - 1)
                if q is None:
                    u = [zero if k == label else share for k in classes]
                else:
                    u = [(one - q[k]) * share for k in classes]
            else:
                u = [mpf(float(prior_rows[i, k])) for k in classes]
                if where is not None:
                    # Masked classes get no smoothing mass: renormalise over the allowed ones.
                    total = ctx.fsum(u)
                    if total == 0:
                        msg = "prior must give positive mass to at least one allowed class in every row"
                        raise ValueError(msg)
                    u = [v / total for v in u]
            # Target weights c_k = w_k q'_k, q' = (1 - eps) q + eps u, zero on masked classes.
            if prior is None:
                spread = [eps * share] * len(classes)
            else:
                spread = [eps * u_k for u_k in u]
            if weights is not None:
                spread = [w_row[k] * b for k, b in zip(classes, spread)]
            if labels is not None:
                position = classes.index(label)
                spread[position] += keep * w_row[label]
                coef = spread
            else:
                coef = [b + w_row[k] * keep * q[k] if q[k] else b for k, b in zip(classes, spread)]

            z_i = [make_mpf(from_float(float(v))) for v in rows[i, classes]]
            if any(ctx.isnan(v) or v == ctx.inf for v in z_i):
                losses.append(ctx.nan)
                grads.append([ctx.nan] * num_classes if need_grad else None)
                continue
            top = max(range(len(z_i)), key=z_i.__getitem__)
            shift = z_i[top] if ctx.isfinite(z_i[top]) else zero
            gaps = [shift - v for v in z_i]  # m - z_k >= 0
            exps = [ctx.exp(-g) for g in gaps]
            # s = 1 + rest with the top class's exact unit term kept apart, and log(s) as
            # log1p(rest): a 40-digit log(1 + 1e-218) would round to 0.
            rest = ctx.fsum(e for j, e in enumerate(exps) if j != top) + (exps[top] - one)
            sum_exp = one + rest
            total_coef = ctx.fsum(coef)
            # -log p_k = log(s) + (m - z_k), so loss = T log(s) + sum_k c_k (m - z_k); a class
            # with no target mass contributes 0 even when its logit is -inf (the limit, not
            # IEEE 0 * inf).
            nonzero = [(c, g) for c, g in zip(coef, gaps) if c != 0]
            losses.append(total_coef * ctx.log1p(rest) + ctx.fdot(nonzero))
            if need_grad:
                grad_row: Any = [zero] * num_classes
                prob_coef = total_coef / sum_exp
                for k, e, c in zip(classes, exps, coef):
                    grad_row[k] = prob_coef * e - c
                # For the top class T p - c cancels: use (T - c) - T (1 - p) with both
                # brackets summed from non-negative terms, so tiny gradients keep their digits.
                others_coef = ctx.fsum(c for j, c in enumerate(coef) if j != top)
                grad_row[classes[top]] = others_coef - total_coef * rest / sum_exp
                grads.append(grad_row)
            else:
                grads.append(None)

        if reduction == "none":
            loss = np.array([0.0 if v is None else float(v) for v in losses], dtype=np.float64)
            loss = loss.reshape(batch_shape)
            scale = one
        else:
            total_loss = ctx.fsum(v for v in losses if v is not None)
            if reduction == "sum":
                scale = one
                loss = np.asarray(float(total_loss), dtype=np.float64)
            else:
                denominator = ctx.fsum(counted)
                scale = ctx.nan if denominator == 0 else one / denominator
                loss = np.asarray(float(ctx.nan if denominator == 0 else total_loss / denominator), dtype=np.float64)
        if not need_grad:
            return loss, None
        grad_rows = np.zeros(rows.shape, dtype=np.float64)
        for i, grad_row in enumerate(grads):
            if grad_row is not None:
                grad_rows[i] = [float(scale * g) for g in grad_row]
        return loss, np.ascontiguousarray(np.moveaxis(grad_rows.reshape(z.shape), -1, axis))


_PARAMETERS_DOC = r"""
    Parameters
    ----------
    logits : array of real floating dtype, any library or device
        Converted to NumPy and widened exactly to float64.
    targets : array
        Integer labels (the logits' shape without ``axis``) or floating probability rows
        (the logits' shape), as in :func:`labelsmooth.cross_entropy`.
    epsilon, prior, axis, weight, ignore_index, where, reduction
        Exactly as in :func:`labelsmooth.cross_entropy`: ``q' = (1 - eps) q + eps u`` with
        ``u`` uniform over the allowed classes (``prior=None``), ``(allowed - q)/(K - 1)``
        (``"others"``) or the given prior (renormalised over the allowed classes when
        ``where`` is given); PyTorch's weighted semantics (labels: ``"mean"`` divides by
        ``sum_i w_{y_i}`` over non-ignored samples; probabilities: by the sample count).
    dps : int, default 40
        Decimal digits of the mpmath working precision.
"""


def reference_cross_entropy_with_grad(
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
    dps: int = 40,
) -> tuple[np.ndarray, np.ndarray]:
    return _solve(
        logits,
        targets,
        epsilon=epsilon,
        prior=prior,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        where=where,
        reduction=reduction,
        dps=dps,
        need_grad=True,
    )  # type: ignore[return-value]


def reference_cross_entropy(
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
    dps: int = 40,
) -> np.ndarray:
    return _solve(
        logits,
        targets,
        epsilon=epsilon,
        prior=prior,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        where=where,
        reduction=reduction,
        dps=dps,
        need_grad=False,
    )[0]


def reference_cross_entropy_grad(
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
    dps: int = 40,
) -> np.ndarray:
    return reference_cross_entropy_with_grad(
        logits,
        targets,
        epsilon=epsilon,
        prior=prior,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        where=where,
        reduction=reduction,
        dps=dps,
    )[1]


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
