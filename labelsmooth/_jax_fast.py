"""The smoothed cross-entropy of integer labels written for XLA's fusions (JAX, jit or not).

Same formulas as ``_core`` (one row, ``S = z - m <= 0``, ``d = -S``):

    loss = T * log1p(rest) + sum_k c_k d_k,        gradient = T * p - c,

arranged so that XLA writes out no N x K array besides the gradient. Each pass over the
logits (the two row sums ``sum(exp(z - m))`` and ``sum(m - z)``, and the gradient) takes the
row maximum ``m`` in a form of its own, so that XLA's CPU fusions keep the maximum inside the
pass rather than sharing it and writing out either ``S`` or ``m`` broadcast to N x K; every
form is the exact maximum, so the values are those of ``_core``. The gradient is one
elementwise pass, ``a * exp(S) - b`` with per-row ``a`` and ``b`` (which also carry the
ignored and NaN rows), and the true class's ``-c_y`` is then added in place, one element a
row, instead of by a comparison over the whole array. Rows longer than ``_ROW_TILE``
classes store ``S`` instead (one pass writing it), which is faster there.

``rest = s - 1`` is the log-sum's argument without the maximum's exact 1. Taken as
``sum(exp(S)) - 1`` it has an absolute error of a few float32 ulps of 1, harmless unless the
row is dominated by one class (``rest`` small, and the loss with it). Only when some row has
``rest < 1/16`` (then its maximum is unique) is its sum taken again without the maximum,
which keeps the full relative precision of the generic path. Rows whose maximum is not
finite (NaN, ``+inf``, all ``-inf``) are detected from the same sums, and the whole problem
is then evaluated by the generic path. Under ``jit`` both decisions are ``lax.cond``.

Only used when the per-row sums are accumulated in the working dtype (JAX without x64, or
float64 logits), i.e. when the generic path would also sum in that dtype.
"""

from __future__ import annotations

import sys
from typing import Any

from array_api_compat import is_jax_namespace

from . import _assembly, _core
from ._backend import fast_paths_enabled

__all__ = ["eligible", "evaluate"]

_NAN = float("nan")
_INF = float("inf")


def eligible(problem: Any) -> bool:
    """Whether ``problem`` (a validated ``_problem.Problem``) takes the JAX fast path."""
    if not fast_paths_enabled() or not is_jax_namespace(problem.xp):
        return False
    if problem.labels is None or problem.allowed is not None:
        return False
    if isinstance(problem.prior, str):
        # "others" leaves the true class out of the smoothing sum, a per-row mask that
        # the generic path writes; a difference of the full sum and d_y would cancel.
        return False
    return problem.acc == problem.logits.dtype


def _label_terms(problem: Any, stored: Any, dsum: Any, rest: Any) -> tuple[Any, Any, Any]:
    """``(coefficients, profile, per-sample loss)`` (``_core.label_coefficients``, ``label_loss``)."""
    xp = problem.xp
    z = problem.logits
    weight, epsilon, prior = problem.weight, problem.epsilon, problem.prior
    labels = problem.labels[..., None]
    if stored is None:
        true_distance = _row_max(z, _GATHER) - xp.take_along_axis(z, labels, axis=-1)
    else:
        true_distance = -xp.take_along_axis(stored, labels, axis=-1)
    true_weight = 1.0 if weight is None else xp.take(weight, problem.labels)[..., None]
    prior_kind = None if prior is None else "array"  # "others" takes the generic path
    profile = profile_sum = true_profile = None
    distance = None
    if not (isinstance(epsilon, float) and epsilon == 0.0):
        profile = weight if prior is None else (prior if weight is None else prior * weight)
        if profile is None:
            profile_sum, true_profile, distance = z.shape[-1] * 1.0, 1.0, dsum
        else:
            profile_full = xp.broadcast_to(profile, z.shape)
            profile_sum = xp.sum(profile_full, axis=-1, keepdims=True)
            true_profile = xp.take_along_axis(profile_full, labels, axis=-1)
            shifted = _shifted(z, stored, _PROFILE)
            # A class without target mass counts 0 even at a -inf logit (not 0 * inf); only the
            # infinite distances are cleaned, so a zero profile entry keeps its derivative.
            cleaned = xp.where((profile_full == 0.0) & xp.isinf(shifted), 0.0, shifted)
            distance = -xp.sum(profile_full * cleaned, axis=-1, keepdims=True)
    coefs = _core.label_coefficients(
        epsilon,
        true_weight,
        prior_kind=prior_kind,
        num_allowed=z.shape[-1],
        profile_sum=profile_sum,
        true_profile=true_profile,
    )
    per_sample = _core.label_loss(coefs, xp.log1p(rest), true_distance * 0.5, distance, 1.0, xp)
    return coefs, profile, per_sample


# Rows below this are dominated by their (then unique) maximum and get the exact sum.
_DOMINATED = 1.0 / 16.0

# The row maximum enters every N x K pass; each pass takes it in a form of its own (all of them
# exact, so bitwise equal), so that XLA keeps the maximum inside that pass's fusion instead of
# sharing one and writing out its N x K broadcast.
# This holds on XLA's CPU backend for rows of up to _ROW_TILE elements; longer rows store S.
_EXP_SUM, _DISTANCE_SUM, _GRADIENT, _GATHER, _PROFILE = range(5)
_ROW_TILE = 32768


def _row_max(z: Any, form: int) -> Any:
    """The maximum over the last axis (keepdims), written in the given form."""
    lax = sys.modules["jax"].lax
    axis = (z.ndim - 1,)
    if form == _EXP_SUM:
        peak = lax.reduce(z, -_INF, lax.max, axis)
    elif form == _DISTANCE_SUM:
        peak = -lax.reduce(-z, _INF, lax.min, axis)
    elif form == _GRADIENT:
        peak = lax.reduce(z, -_INF, lambda a, b: lax.max(b, a), axis)
    elif form == _GATHER:
        peak = -lax.reduce(-z, _INF, lambda a, b: lax.min(b, a), axis)
    else:
        peak = lax.reduce(z, -_INF, lambda a, b: lax.max(lax.max(a, b), a), axis)
    # The loss does not depend on the shift (its derivative in m is T - T = 0), so the
    # shift is a constant to autodiff: each form's derivative would split tied maxima in
    # its own way, and those parts would not cancel.
    return lax.stop_gradient(peak[..., None])


def _shifted(z: Any, stored: Any, form: int) -> Any:
    """``S = z - m``: the stored array, or computed in the pass that uses it."""
    return stored if stored is not None else z - _row_max(z, form)


def _finish(problem: Any, stored: Any, dsum: Any, rest: Any, with_grad: bool) -> Any:
    """Loss (and gradient) from the per-row sums (and ``S``, when it is ``stored``)."""
    xp = problem.xp
    z = problem.logits
    coefs, profile, per_sample = _label_terms(problem, stored, dsum, rest)
    if problem.ignored is not None:
        per_sample = xp.where(problem.ignored, 0.0, per_sample)
    if problem.poison is not None:
        # Multiply rather than select, so that autodiff of the loss is NaN there as well.
        per_sample = per_sample * xp.where(problem.poison, _NAN, 1.0)
    loss, scale = _assembly.reduce(problem, per_sample)
    if not with_grad:
        return loss
    work = z.dtype
    rows = (*z.shape[:-1], 1)
    total, spread_part, true_part = _core.scaled_gradient_coefficients(coefs, scale)
    exp_coef = xp.astype(total / (rest + 1.0), work)
    true_shift = xp.broadcast_to(xp.astype(true_part, work), rows)
    spread = None
    if spread_part is not None:
        spread = xp.broadcast_to(xp.astype(spread_part, work), rows)
    # Ignored and poisoned rows through their per-row coefficients (exp(S) is finite in
    # [0, 1] here): 0 * exp(S) - 0 - 0 = 0, NaN * exp(S) = NaN.
    masks_folded = profile is None
    if masks_folded:
        if problem.ignored is not None:
            exp_coef = xp.where(problem.ignored, 0.0, exp_coef)
            true_shift = xp.where(problem.ignored, 0.0, true_shift)
            spread = None if spread is None else xp.where(problem.ignored, 0.0, spread)
        if problem.poison is not None:
            exp_coef = xp.where(problem.poison, _NAN, exp_coef)
    grad = exp_coef * xp.exp(_shifted(z, stored, _GRADIENT))
    if spread is not None:
        grad = grad - (spread if profile is None else spread * profile)
    # The true class's -c_y added in place (one element a row) rather than by a comparison
    # over the whole array.
    flat = xp.reshape(grad, (-1, z.shape[-1]))
    flat = flat.at[xp.arange(flat.shape[0]), xp.reshape(problem.labels, (-1,))].add(-xp.reshape(true_shift, (-1,)))
    return loss, _assembly.finish_gradient(problem, xp.reshape(flat, z.shape), apply_masks=not masks_folded)


def _generic(problem: Any, with_grad: bool) -> Any:
    evaluation = _assembly.evaluate(problem)
    loss, scale = _assembly.reduce(problem, evaluation.per_sample)
    return (loss, _assembly.gradient(problem, evaluation, scale)) if with_grad else loss


def evaluate(problem: Any, *, with_grad: bool) -> tuple[Any, Any]:
    """``(loss, grad)`` of an eligible problem (``grad`` is None unless ``with_grad``)."""
    jax = sys.modules["jax"]
    xp = problem.xp
    z = problem.logits
    if z.shape[-1] <= _ROW_TILE:
        stored = None
        dsum = xp.sum(_row_max(z, _DISTANCE_SUM) - z, axis=-1, keepdims=True)
        rest = xp.sum(xp.exp(z - _row_max(z, _EXP_SUM)), axis=-1, keepdims=True) - 1.0
    else:
        # Longer rows: a pass with its own maximum is slower there than one stored S.
        stored = z - jax.lax.stop_gradient(xp.max(z, axis=-1, keepdims=True))
        dsum = -xp.sum(stored, axis=-1, keepdims=True)
        rest = xp.sum(xp.exp(stored), axis=-1, keepdims=True) - 1.0
    dominated = rest < _DOMINATED

    def refined() -> Any:
        # The maximum's exact 1 left out of the sum (the maximum is unique in these rows),
        # its term kept as exp(S) - 1 (exactly 0) so that autodiff still sees it.
        shifted = z - jax.lax.stop_gradient(xp.max(z, axis=-1, keepdims=True))
        exp_shifted = xp.exp(shifted)
        below = xp.sum(xp.where(shifted == 0.0, exp_shifted - 1.0, exp_shifted), axis=-1, keepdims=True)
        return xp.where(dominated, below, rest)

    # rest is NaN exactly when a row maximum is not finite (a finite m gives 0 <= E <= 1);
    # dsum is infinite with a -inf logit or when the sum of distances overflows, which
    # the generic path sums scaled.
    unusual = xp.any(xp.isnan(rest)) | xp.any(xp.isinf(dsum))
    any_dominated = xp.any(dominated)
    if not isinstance(unusual, jax.core.Tracer):
        if bool(unusual):
            result = _generic(problem, with_grad)
        else:
            result = _finish(problem, stored, dsum, refined() if bool(any_dominated) else rest, with_grad)
        return result if with_grad else (result, None)
    # Two conditionals, each on what it needs: the dominated rows' sums (N values), and the
    # generic path for rows without a finite maximum, whose branch writes the gradient once.
    rest = jax.lax.cond(any_dominated, refined, lambda: rest)
    result = jax.lax.cond(
        unusual, lambda: _generic(problem, with_grad), lambda: _finish(problem, stored, dsum, rest, with_grad)
    )
    return result if with_grad else (result, None)
