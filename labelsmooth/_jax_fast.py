"""The smoothed cross-entropy of integer labels written for XLA's fusions (JAX, jit or not).

Same formulas as ``_core`` (one row, ``S = z - m <= 0``, ``d = -S``):

    loss = T * log1p(rest) + sum_k c_k d_k,        gradient = T * p - c,

arranged so that XLA writes out only one N x K array besides the gradient: the shifted
logits ``S`` (the maximum and the subtraction in one fusion). Every row sum is a plain
reduction of ``S`` or of ``exp(S)`` (whose exponential the reduction absorbs), never of a
comparison or a select, which XLA on CPU writes out first; the gradient takes ``exp(S)``
again from ``S`` rather than reading back a stored copy.

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

from . import _core

__all__ = ["ENABLED", "eligible", "evaluate"]

# Set to False to send every problem to the generic path (used by the tests).
ENABLED = True

_NAN = float("nan")


def eligible(problem: Any) -> bool:
    """Whether ``problem`` (a validated ``_losses._Problem``) takes the JAX fast path."""
    if not ENABLED or not is_jax_namespace(problem.xp):
        return False
    if problem.labels is None or problem.allowed is not None:
        return False
    return problem.acc == problem.logits.dtype


def _label_terms(problem: Any, shifted: Any, dsum: Any) -> tuple[Any, ...]:
    """``(T, c_y, spread coefficient, profile, sum_k c_k d_k)``: ``_core.label_target_terms``."""
    xp = problem.xp
    weight, epsilon, prior = problem.weight, problem.epsilon, problem.prior
    num_classes = shifted.shape[-1]
    labels = problem.labels[..., None]
    true_distance = -xp.take_along_axis(shifted, labels, axis=-1)
    true_weight = 1.0 if weight is None else xp.take(weight, problem.labels)[..., None]
    true_coef = (1.0 - epsilon) * true_weight
    if isinstance(epsilon, float) and epsilon == 0.0:
        distance = _core.true_term_distance(true_coef, true_coef, true_distance, 0.0, xp)
        return true_coef, true_coef, None, None, distance
    if prior is None or isinstance(prior, str):
        profile = weight
        spread_coef = epsilon / (num_classes if prior is None else num_classes - 1.0)
        if prior == "others":
            true_coef = true_coef - spread_coef * true_weight
    else:
        profile = prior if weight is None else prior * weight
        spread_coef = epsilon * 1.0
    if profile is None:
        profile_sum = num_classes * 1.0
        profile_distance = dsum
        true_profile = 1.0
    else:
        profile_full = xp.broadcast_to(profile, shifted.shape)
        profile_sum = xp.sum(profile_full, axis=-1, keepdims=True)
        # A class without target mass counts 0 even at a -inf logit (not 0 * inf).
        profile_distance = -xp.sum(xp.where(profile_full == 0.0, 0.0, profile_full * shifted),
                                   axis=-1, keepdims=True)
        true_profile = xp.take_along_axis(profile_full, labels, axis=-1)
    total = true_coef + spread_coef * profile_sum
    spread_distance = spread_coef * profile_distance
    if not isinstance(epsilon, float):
        # Per-sample eps = 0 must not turn an infinite smoothing sum into NaN.
        spread_distance = xp.where(spread_coef == 0.0, 0.0, spread_distance)
    class_weight = true_coef + spread_coef * true_profile
    distance = _core.true_term_distance(true_coef, class_weight, true_distance, spread_distance, xp)
    return total, true_coef, spread_coef, profile, distance


# Rows below this are dominated by their (then unique) maximum and get the exact sum.
_DOMINATED = 1.0 / 16.0


def _finish(problem: Any, shifted: Any, dsum: Any, rest: Any, with_grad: bool) -> Any:
    """Loss (and gradient) from the shifted logits and the per-row sums."""
    from . import _losses

    xp = problem.xp
    total, true_coef, spread_coef, profile, distance = _label_terms(problem, shifted, dsum)
    per_sample = total * xp.log1p(rest) + distance
    if problem.ignored is not None:
        per_sample = xp.where(problem.ignored, 0.0, per_sample)
    if problem.poison is not None:
        # Multiply rather than select, so that autodiff of the loss is NaN there as well.
        per_sample = per_sample * xp.where(problem.poison, _NAN, 1.0)
    evaluation = _losses._Evaluation(per_sample, None, None, None, None)
    loss, scale = _losses._reduce(problem, evaluation)
    if not with_grad:
        return loss
    work = shifted.dtype
    # exp(S) is taken again rather than kept from the row sums: XLA then never writes it out.
    grad = xp.astype(total * scale / (rest + 1.0), work) * xp.exp(shifted)
    if spread_coef is not None:
        spread = xp.astype(spread_coef * scale, work)
        grad = grad - (spread if profile is None else spread * profile)
    classes = xp.arange(shifted.shape[-1], dtype=problem.labels.dtype)
    hit = classes == problem.labels[..., None]
    grad = xp.where(hit, grad - xp.astype(true_coef * scale, work), grad)
    if problem.ignored is not None:
        grad = xp.where(problem.ignored, 0.0, grad)
    if problem.poison is not None:
        grad = xp.where(problem.poison, _NAN, grad)
    grad = xp.astype(grad, problem.result_dtype)
    if problem.axis != problem.ndim - 1:
        grad = xp.moveaxis(grad, -1, problem.axis)
    return loss, grad


def _generic(problem: Any, with_grad: bool) -> Any:
    from . import _losses

    evaluation = _losses._evaluate(problem)
    loss, scale = _losses._reduce(problem, evaluation)
    return (loss, _losses._gradient(problem, evaluation, scale)) if with_grad else loss


def evaluate(problem: Any, *, with_grad: bool) -> tuple[Any, Any]:
    """``(loss, grad)`` of an eligible problem (``grad`` is None unless ``with_grad``)."""
    jax = sys.modules["jax"]
    xp = problem.xp
    z = problem.logits
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    dsum = -xp.sum(shifted, axis=-1, keepdims=True)
    rest = xp.sum(xp.exp(shifted), axis=-1, keepdims=True) - 1.0
    dominated = rest < _DOMINATED

    def refined() -> Any:
        # The maximum's exact 1 left out of the sum (the maximum is unique in these rows).
        below = xp.sum(xp.where(shifted == 0.0, 0.0, xp.exp(shifted)), axis=-1, keepdims=True)
        return xp.where(dominated, below, rest)

    # rest is NaN exactly when a row maximum is not finite (a finite m gives 0 <= E <= 1).
    unusual = xp.any(xp.isnan(rest))
    any_dominated = xp.any(dominated)
    if not isinstance(unusual, jax.core.Tracer):
        if bool(unusual):
            result = _generic(problem, with_grad)
        else:
            result = _finish(problem, shifted, dsum, refined() if bool(any_dominated) else rest, with_grad)
        return result if with_grad else (result, None)
    # Two conditionals, each on what it needs: the dominated rows' sums (N values), and the
    # generic path for rows without a finite maximum, whose branch writes the gradient once.
    rest = jax.lax.cond(any_dominated, refined, lambda: rest)
    result = jax.lax.cond(unusual, lambda: _generic(problem, with_grad),
                          lambda: _finish(problem, shifted, dsum, rest, with_grad))
    return result if with_grad else (result, None)
