"""Backend-neutral numerical core shared by every public function.

All functions here take a required namespace ``xp``, assume validated inputs and work with
the class axis *last*. Problem preparation (``_problem``) moves the class axis, casts to the
working dtype and validates; the formulas of the loss and of its gradient live only here,
and ``_kernel`` / ``_assembly`` evaluate them.

Notation (one row): ``z`` logits, ``m = max_k z_k`` over the allowed classes,
``shifted = z - m <= 0``, ``d = -shifted >= 0``, ``s = sum_k exp(shifted_k)``.
Every smoothed cross-entropy in this package is written as

    loss = sum_k c_k (-log p_k) = T * log(s) + sum_k c_k d_k,      T = sum_k c_k,

with non-negative "target weights" ``c`` (``c = q'`` unweighted, ``c = w * q'`` or
PyTorch's ``(1-eps) w_y e_y + eps u * w`` weighted). Both terms are sums of non-negative
numbers, so no large quantities are subtracted: the loss is shift-invariant to rounding.
Its gradient with respect to the logits is ``T * p - c``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._backend import device_of, subtract_quietly, values_checkable

__all__ = [
    "LabelCoefficients",
    "RowSoftmax",
    "half_true_distance",
    "label_coefficients",
    "label_loss",
    "overflow_scale",
    "row_softmax",
    "scaled_distance_sum",
    "scaled_gradient_coefficients",
    "smoothed_rows",
    "soft_cap",
    "soft_cap_slope",
    "squared_log_sum_exp",
    "take_along_last",
    "true_term_distance",
]

_INF = float("inf")
_NAN = float("nan")


@dataclass
class RowSoftmax:
    """Per-row softmax statistics (class axis last, kept with size 1)."""

    logits: Any  # z, working dtype; -inf on masked classes
    shifted: Any  # z - m, working dtype; -inf on masked classes
    shift: Any  # m, the row maximum (may be -inf, +inf or NaN), working dtype
    exp_shifted: Any  # exp(shifted), working dtype
    log_sum: Any  # log(s), accumulation dtype
    sum_exp: Any  # s, accumulation dtype


def row_softmax(z: Any, allowed: Any, xp: Any, acc_dtype: Any) -> RowSoftmax:
    """Max-shifted exponentials and ``log(sum(exp))`` of each row.

    ``log(s)`` is formed as ``log1p(s - 1)`` with the (exact) unit term of the maximum kept
    out of the sum, so rows dominated by one class keep full relative precision
    (``log(1 + 1e-20)`` is ``1e-20``, not 0), as in ``scipy.special.logsumexp``.
    """
    if allowed is not None:
        z = xp.where(allowed, z, -_INF)
    if any(size == 0 for size in z.shape[:-1]):
        # An empty batch has no row to shift; Dask cannot even take its maximum (max has
        # no identity), so an empty shift of the right shape stands in.
        shift = xp.zeros((*tuple(z.shape[:-1]), 1), dtype=z.dtype, device=device_of(z))
    else:
        shift = xp.max(z, axis=-1, keepdims=True)
    # A row without a finite maximum (all -inf, or holding +inf or NaN) has no defined
    # softmax: shifting it by NaN makes every quantity of that row NaN quietly, where
    # inf - inf and 0 * inf would raise floating-point warnings on the way. logsumexp
    # takes its IEEE limits (-inf, +inf) from the maximum itself.
    shifted = subtract_quietly(z, xp.where(xp.isfinite(shift), shift, _NAN), xp)
    exp_shifted = xp.exp(shifted)
    at_max = shifted == 0.0
    # Sum of the terms below the maximum; the maxima contribute exactly 1 each, counted
    # apart. A maximum's term is kept as ``exp(shifted) - 1`` (exactly 0) rather than
    # dropped, so that ``s`` is ``sum_k exp(z_k - m)`` as a function: autodiff of every
    # order then sees every class, however a backend's derivative of ``max`` splits ties.
    rest = xp.sum(xp.where(at_max, exp_shifted - 1.0, exp_shifted), axis=-1, keepdims=True, dtype=acc_dtype)
    n_max = xp.sum(xp.astype(at_max, acc_dtype), axis=-1, keepdims=True)
    # A finite maximum gives n_max >= 1 (rows without one are NaN throughout), so excess >= 0.
    excess = rest + (n_max - 1.0)
    # Kept as a guard: log1p(-1) = -inf, written out to avoid a divide-by-zero warning on NumPy.
    empty = excess <= -1.0
    log_sum = xp.where(empty, -_INF, xp.log1p(xp.where(empty, 0.0, excess)))
    return RowSoftmax(
        logits=z,
        shifted=shifted,
        shift=shift,
        exp_shifted=exp_shifted,
        log_sum=log_sum,
        sum_exp=excess + 1.0,
    )


def overflow_scale(num_terms: int) -> float:
    """A power of two ``h <= 1 / (2 * num_terms)``.

    A sum of ``num_terms`` distances ``d_k <= max_float``, each multiplied by ``h``, cannot
    overflow; multiplying by a power of two is exact (short of the subnormal range), so
    ``(sum_k c_k d_k h) / h`` rounds as the plain sum does and is finite whenever the
    exact value is, where the plain partial sums would overflow (``z = [1e308, 0, 0]``).
    """
    return math.ldexp(1.0, -(max(1, int(num_terms)).bit_length() + 1))


def _finite_shift(rows: RowSoftmax, xp: Any) -> Any:
    """The row maximum, NaN where it is not finite (those rows are NaN throughout)."""
    return xp.where(xp.isfinite(rows.shift), rows.shift, _NAN)


def scaled_distance_sum(rows: RowSoftmax, coef: Any, xp: Any, acc_dtype: Any) -> tuple[Any, float]:
    """``(h * sum_k coef_k d_k, h)``, ``d = m - z``, ``h = overflow_scale(K)``; ``coef=None``: ones.

    A zero coefficient counts 0: a class with no target mass contributes nothing even if
    its logit is ``-inf`` (``0 * inf`` is NaN in IEEE arithmetic, 0 in the limit that
    defines the loss). The caller divides by ``h`` after its own row factor. ``d`` is read
    from ``shifted``; rows where that overflowed (logits more than ``max_float`` apart) are
    summed again from ``m * h - z * h``, which cannot overflow.
    """
    h = overflow_scale(rows.shifted.shape[-1])
    scaled = _weighted_row_sum(-(rows.shifted * h), coef, xp, acc_dtype)
    if values_checkable(scaled) and not bool(xp.any(xp.isinf(scaled))):
        return scaled, h
    # An infinite sum: a -inf logit (then the exact sum is infinite too) or an overflow.
    exact = _weighted_row_sum(_finite_shift(rows, xp) * h - rows.logits * h, coef, xp, acc_dtype)
    return xp.where(xp.isinf(scaled), exact, scaled), h


def _weighted_row_sum(d: Any, coef: Any, xp: Any, acc_dtype: Any) -> Any:
    if coef is None:
        return xp.sum(d, axis=-1, keepdims=True, dtype=acc_dtype)
    # Only an infinite distance is cleaned, so that the derivative in a zero coefficient
    # (probability targets under autodiff) is still its finite distance.
    cleaned = xp.where((coef == 0.0) & xp.isinf(d), 0.0, d)
    return xp.sum(coef * cleaned, axis=-1, keepdims=True, dtype=acc_dtype)


def take_along_last(x: Any, index: Any, xp: Any) -> Any:
    """``x`` at ``index`` (batch + (1,)) along the last axis."""
    if hasattr(xp, "take_along_axis"):
        return xp.take_along_axis(x, index, axis=-1)
    # Dask has no take_along_axis: select with a comparison (same result, one more pass).
    classes = xp.arange(x.shape[-1], dtype=index.dtype, device=device_of(x))
    return xp.sum(xp.where(classes == index, x, 0.0), axis=-1, keepdims=True)


def half_true_distance(rows: RowSoftmax, labels: Any, xp: Any, acc_dtype: Any) -> Any:
    """``d_y / 2 = m / 2 - z_y / 2`` in the accumulation dtype: exact halves, no overflow."""
    z_y = xp.astype(take_along_last(rows.logits, labels, xp), acc_dtype)
    return xp.astype(_finite_shift(rows, xp), acc_dtype) * 0.5 - z_y * 0.5


def smoothed_rows(q: Any, epsilon: Any, prior: Any, allowed: Any, count: Any, xp: Any) -> Any:
    """Label smoothing of target rows (class axis last): ``q' = (1 - eps) q + eps u``.

    ``u`` is ``allowed / K`` for ``prior=None`` (uniform over the allowed classes),
    ``(allowed - q) / (K - 1)`` for ``"others"`` (the true class keeps ``1 - eps``, as
    fairseq), or the given prior rows (already zero on masked classes and normalised);
    ``allowed`` is a class mask or None (every class), ``count`` the number ``K`` of
    allowed classes (an int, or a column of per-row counts), ``epsilon`` a float or a
    column of per-sample values, both in ``q``'s dtype (Szegedy et al. 2016, section 7).
    """
    if isinstance(epsilon, float) and epsilon == 0.0:
        return q
    mask = 1.0 if allowed is None else xp.astype(allowed, q.dtype)
    if prior is None:
        spread = epsilon * mask / count
    elif isinstance(prior, str):
        spread = epsilon * (mask - q) / (count - 1.0)
    else:
        spread = epsilon * prior
    return (1.0 - epsilon) * q + spread


def soft_cap(z: Any, cap: float, xp: Any) -> Any:
    """Soft-capped logits ``cap * tanh(z / cap)`` (Gemma 2; Liger's ``softcap``), in ``z``'s dtype."""
    return cap * xp.tanh(z / cap)


def soft_cap_slope(z: Any, cap: float, xp: Any) -> Any:
    """``d/dz cap * tanh(z / cap) = sech^2(z / cap)``, as ``4 t / (1 + t)^2`` with ``t = exp(-2|z| / cap)``.

    Written with ``t <= 1`` it neither overflows (``cosh``) nor cancels (``1 - tanh^2``
    loses every digit where ``tanh`` rounds to 1): each factor has its full relative
    precision, also far in the tails where the slope underflows to 0.
    """
    t = xp.exp(xp.abs(z) * (-2.0 / cap))
    return 4.0 * t / ((1.0 + t) * (1.0 + t))


def squared_log_sum_exp(shift: Any, log_sum: Any, xp: Any, acc_dtype: Any) -> Any:
    """``lse^2``, ``lse = m + log s`` (accumulation dtype): the z-loss term (PaLM, T5X) of each row."""
    lse = xp.astype(shift, acc_dtype) + log_sum
    return lse * lse


@dataclass
class LabelCoefficients:
    """Per-row coefficients of the target weights ``c = true_coef * e_y + spread_coef * profile``.

    Every backend computes them with :func:`label_coefficients` and finishes its loss with
    :func:`label_loss` and its gradient with :func:`scaled_gradient_coefficients`, so the
    algebra of the options lives only here. Entries are floats or arrays of per-row values.
    """

    grad_true_coef: Any  # of e_y in c, with the profile over every (allowed) class
    loss_true_coef: Any  # (1 - eps) w_y: of d_y in the loss (whose smoothing sum leaves y out for "others")
    spread_coef: Any  # of the profile; None when epsilon is the float 0
    total: Any  # T = sum_k c_k
    class_weight: Any  # c_y, the true class's whole target weight


def label_coefficients(
    epsilon: Any, true_weight: Any, *, prior_kind: Any, num_allowed: Any, profile_sum: Any, true_profile: Any
) -> LabelCoefficients:
    """The coefficients of PyTorch's weighted smoothing, for each row.

    ``prior_kind`` is None (uniform ``u = allowed / K``), ``"others"`` (``u = (allowed -
    e_y) / (K - 1)``) or ``"array"`` (``u`` a given prior). ``true_weight`` is ``w_y``
    (1.0 unweighted); the profile is ``allowed * w`` (uniform, "others") or ``u * w``
    (array), with ``profile_sum = sum_k profile_k`` over every class and ``true_profile``
    its entry at the label (``num_allowed`` and 1.0 for a profile of ones).
    """
    loss_true = (1.0 - epsilon) * true_weight
    if isinstance(epsilon, float) and epsilon == 0.0:
        return LabelCoefficients(loss_true, loss_true, None, loss_true, loss_true)
    if prior_kind == "array":
        spread = epsilon * 1.0
    else:
        spread = epsilon / (num_allowed if prior_kind is None else num_allowed - 1.0)
    if prior_kind == "others":
        # The profile spans the true class too: its share of the spread comes off e_y's
        # coefficient in the gradient, while the loss sums the other classes only.
        return LabelCoefficients(
            grad_true_coef=loss_true - spread * true_weight,
            loss_true_coef=loss_true,
            spread_coef=spread,
            total=loss_true + spread * (profile_sum - true_profile),
            class_weight=loss_true,
        )
    return LabelCoefficients(
        grad_true_coef=loss_true,
        loss_true_coef=loss_true,
        spread_coef=spread,
        total=loss_true + spread * profile_sum,
        class_weight=loss_true + spread * true_profile,
    )


def label_loss(
    coefs: LabelCoefficients,
    log_sum: Any,
    true_half: Any,
    spread_distance_h: Any,
    h: Any,
    xp: Any,
    *,
    eager: bool = False,
) -> Any:
    """Per-sample loss ``T log s + c'_y d_y + spread * sum_k profile_k d_k``.

    ``true_half = d_y / 2``; ``spread_distance_h = h * sum_k profile_k d_k`` (the true class
    left out for ``"others"``), ``h`` a power of two (see :func:`overflow_scale`) or 1.
    """
    spread_half: Any = 0.0
    if coefs.spread_coef is not None:
        if not isinstance(coefs.spread_coef, float):
            # Per-sample eps = 0 must not turn an infinite smoothing sum into NaN (0 * inf).
            spread_distance_h = xp.where(coefs.spread_coef == 0.0, 0.0, spread_distance_h)
        # Halved, as d_y is: the two halves add up without overflow where the loss is finite.
        spread_half = coefs.spread_coef * spread_distance_h / (2.0 * h)
    distance = true_term_distance(coefs.loss_true_coef, coefs.class_weight, true_half, spread_half, xp, eager=eager)
    return coefs.total * log_sum + distance


def scaled_gradient_coefficients(coefs: LabelCoefficients, row_scale: Any) -> tuple[Any, Any, Any]:
    """``(T, spread, c_y)`` times ``row_scale``: the gradient is ``T p - spread profile - c_y e_y``.

    ``p = exp(z - m) / s``: a kernel divides the first by its row sums ``s``.
    """
    spread = None if coefs.spread_coef is None else coefs.spread_coef * row_scale
    return coefs.total * row_scale, spread, coefs.grad_true_coef * row_scale


def true_term_distance(
    true_coef: Any, class_weight: Any, true_half: Any, spread_half: Any, xp: Any, *, eager: bool = False
) -> Any:
    """``2 * (true_coef * d_y / 2 + spread_half)``, with the limit taken when ``d_y = +inf``.

    Both terms come halved (``true_half = d_y / 2``, ``spread_half`` half the smoothing
    term), so that they add up without overflow whenever their finite sum is representable.

    A -inf logit on the true class gives ``d_y = +inf``; the class's whole target weight is
    ``class_weight = c_y``. Written as ``true_coef * d_y + spread`` the limit can read
    ``0 * inf`` (epsilon = 1, or a zero class weight): NaN with a floating-point warning.
    The loss is ``+inf`` when ``c_y > 0``; when ``c_y = 0`` the class has no target mass
    and the spread term alone is the loss, unless that term holds the true class itself
    (``true_coef != 0`` with ``c_y = 0``), which leaves NaN. ``eager``: the values can be
    read, and the limit is taken only when some ``d_y`` is infinite.
    """
    infinite = true_half == _INF
    if eager and not bool(xp.any(infinite)):
        return (true_coef * true_half + spread_half) * 2.0
    finite_half = xp.where(infinite, 0.0, true_half)
    distance = (true_coef * finite_half + spread_half) * 2.0
    if isinstance(true_coef, float):
        no_mass = distance if true_coef == 0.0 else distance + _NAN
    else:
        no_mass = xp.where(true_coef == 0.0, distance, _NAN)
    if isinstance(class_weight, float):
        limit = _INF if class_weight > 0.0 else no_mass
    else:
        limit = xp.where(class_weight > 0.0, _INF, no_mass)
    return xp.where(infinite, limit, distance)
