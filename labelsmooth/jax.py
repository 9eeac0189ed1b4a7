"""JAX training adapter: the smoothed cross-entropy with its analytic gradient as the VJP.

``labelsmooth.jax.cross_entropy`` returns the same values as
:func:`labelsmooth.cross_entropy`, but it is a :func:`jax.custom_vjp` function: the
forward pass computes the loss and the gradient ``p - q'`` together
(:func:`labelsmooth.cross_entropy_with_grad`, one softmax), keeps only that gradient
for the backward pass, and the backward pass is one multiplication by the cotangent.
Plain autodiff of the loss instead keeps several ``N x K`` intermediates and replays
the softmax backwards.

This module imports JAX; ``import labelsmooth`` does not import it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
from array_api_compat import is_array_api_obj

from . import _losses

__all__ = ["cross_entropy"]

_ARRAY_OPTIONS = ("epsilon", "prior", "weight", "where")


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
) -> Any:
    r"""Smoothed cross-entropy whose ``jax.grad`` is the analytic ``p - q'``.

    .. math::

        H(q', p) = -\sum_k q'_k \log p_k, \qquad
        \frac{\partial H}{\partial z} = p - q', \qquad
        q' = (1 - \varepsilon)\, q + \varepsilon\, u

    (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision",
    section 7). Values, options and validation are those of
    :func:`labelsmooth.cross_entropy`; only the derivative rule differs.

    The gradient with respect to ``logits`` is the one of
    :func:`labelsmooth.cross_entropy_with_grad` times the cotangent (per sample for
    ``reduction="none"``). Integer targets and the boolean ``where`` mask have no
    cotangent. Floating ``targets``, an array ``epsilon``, ``prior`` or ``weight`` are
    differentiated by autodiff of :func:`labelsmooth.cross_entropy`, and only when a
    transformation actually asks for their derivative. Works under ``jax.jit``,
    ``jax.vmap``, ``jax.grad`` / ``jax.value_and_grad`` and on sharded arrays.

    Parameters
    ----------
    logits : jax.Array of real floating dtype
    targets : jax.Array
        Integer labels (``logits``' shape without ``axis``) or probability rows.
    epsilon, prior, axis, weight, ignore_index, where, reduction
        As in :func:`labelsmooth.cross_entropy`.

    Returns
    -------
    jax.Array
        Scalar for ``"mean"``/``"sum"``, batch-shaped for ``"none"``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from labelsmooth.jax import cross_entropy
    >>> z, y = jnp.zeros((1, 2)), jnp.asarray([0])
    >>> jax.grad(cross_entropy)(z, y, epsilon=0.2)
    Array([[-0.4,  0.4]], dtype=float32)
    """
    options = {"epsilon": epsilon, "prior": prior, "weight": weight, "where": where}
    arrays = {name: jnp.asarray(value) for name, value in options.items() if is_array_api_obj(value)}
    static = tuple(sorted(
        [(name, value) for name, value in options.items() if name not in arrays]
        + [("axis", axis), ("ignore_index", ignore_index), ("reduction", reduction)]
    ))
    return _loss_with_analytic_vjp(static)(jnp.asarray(logits), jnp.asarray(targets), arrays)


@lru_cache(maxsize=256)
def _loss_with_analytic_vjp(static: tuple[tuple[str, Any], ...]) -> Any:
    """The loss for one set of static options, as a ``jax.custom_vjp`` function."""
    options = dict(static)
    array_names = tuple(name for name in _ARRAY_OPTIONS if name not in options)

    @jax.custom_vjp
    def loss(logits: Any, targets: Any, arrays: dict[str, Any]) -> Any:
        return _losses.cross_entropy(logits, targets, **options, **arrays)

    def forward(logits: Any, targets: Any, arrays: dict[str, Any]) -> tuple[Any, Any]:
        z, t = logits.value, targets.value
        values = {name: primal.value for name, primal in arrays.items()}
        others = {name: primal.value for name, primal in arrays.items()
                  if primal.perturbed and _differentiable(primal.value)}
        target_perturbed = targets.perturbed and _differentiable(t)

        if logits.perturbed:
            value, logits_grad = _losses.cross_entropy_with_grad(z, t, **options, **values)
        else:
            value, logits_grad = _losses.cross_entropy(z, t, **options, **values), None

        # Derivatives for anything but the logits: autodiff, built only when asked for.
        other_vjp = None
        if target_perturbed:
            def loss_of_targets(t_: Any, others_: dict[str, Any]) -> Any:
                return _losses.cross_entropy(z, t_, **options, **{**values, **others_})

            _, other_vjp = jax.vjp(loss_of_targets, t, others)
        elif others:
            def loss_of_options(others_: dict[str, Any]) -> Any:
                return _losses.cross_entropy(z, t, **options, **{**values, **others_})

            _, other_vjp = jax.vjp(loss_of_options, others)
        return value, (logits_grad, other_vjp)

    def backward(residuals: Any, cotangent: Any) -> tuple[Any, Any, Any]:
        logits_grad, other_vjp = residuals
        logits_cotangent = None
        if logits_grad is not None:
            scale = cotangent
            if options["reduction"] == "none":
                # One cotangent per sample: put it back on the class axis of the gradient.
                scale = jnp.expand_dims(cotangent, options["axis"] % logits_grad.ndim)
            logits_cotangent = (logits_grad * scale).astype(logits_grad.dtype)
        targets_cotangent = None
        array_cotangents: dict[str, Any] = dict.fromkeys(array_names)
        if other_vjp is not None:
            computed = other_vjp(cotangent)
            if len(computed) == 2:
                targets_cotangent = computed[0]
            array_cotangents.update(computed[-1])
        return logits_cotangent, targets_cotangent, array_cotangents

    loss.defvjp(forward, backward, symbolic_zeros=True)
    return loss


def _differentiable(x: Any) -> bool:
    return jnp.issubdtype(x.dtype, jnp.inexact)
