"""JAX autodiff of the smoothed cross-entropy: the analytic gradient as the JVP.

:func:`cross_entropy` is a :func:`jax.custom_jvp` function whose tangent is
``<p - q', dz>``, with the gradient ``p - q'`` computed together with the loss (one
kernel). Under ``jax.grad`` the transposed tangent makes the backward pass one
multiplication by the cotangent; autodiff of the kernel instead keeps several ``N x K``
intermediates and replays the softmax backwards. The gradient is itself a ``custom_jvp``
value whose derivative is autodiff of the loss, so forward mode and every higher order
(``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) give the derivatives of the loss. The
other array options (``epsilon``, ``prior``, ``weight``, probability targets) are
differentiated by autodiff of the loss.

The public functions use it for traced JAX arrays (under ``jax.jit``, ``jax.grad``,
``jax.vmap``), ``labelsmooth.jax`` for every call. This module imports JAX; it is imported
only for JAX arrays.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from ._assembly import solve
from ._problem import prepare

__all__ = ["cross_entropy"]


def cross_entropy(logits: Any, targets: Any, arrays: dict[str, Any], static: dict[str, Any]) -> Any:
    """The loss of JAX ``logits``; ``arrays`` are the array options, ``static`` the others (hashable)."""
    # Keyed by type as well: 1, 1.0 and True are equal keys, but not the same option.
    key = tuple(sorted((name, type(value), value) for name, value in static.items()))
    return _loss_with_analytic_jvp(key)(logits, targets, arrays)


@lru_cache(maxsize=256)
def _loss_with_analytic_jvp(static: tuple[tuple[str, type, Any], ...]) -> Any:
    """The loss for one set of static options, as a ``jax.custom_jvp`` function."""
    options = {name: value for name, _, value in static}

    def plain(logits: Any, targets: Any, arrays: dict[str, Any]) -> Any:
        return solve(prepare(logits, targets, **options, **arrays), with_grad=False)[0]

    def autodiff_gradient(logits: Any, targets: Any, arrays: dict[str, Any]) -> Any:
        # Each per-sample loss depends on its own row only: the gradient of their sum is
        # the per-sample gradient for reduction="none", and the gradient otherwise.
        return jax.grad(lambda z: jnp.sum(plain(z, targets, arrays)))(logits)

    @jax.custom_jvp
    def loss_and_gradient(logits: Any, targets: Any, arrays: dict[str, Any]) -> tuple[Any, Any]:
        return solve(prepare(logits, targets, **options, **arrays), with_grad=True)

    @jax.custom_jvp
    def loss(logits: Any, targets: Any, arrays: dict[str, Any]) -> Any:
        return plain(logits, targets, arrays)

    def loss_jvp(primals: tuple, tangents: tuple) -> tuple[Any, Any]:
        inputs, moving = _inputs(primals, tangents)
        others = moving - {"logits"}
        if not moving:
            value = plain(*primals)
            return value, jnp.zeros_like(value)
        if "logits" not in moving:
            return _jvp(plain, inputs, others)
        value, gradient = loss_and_gradient(*primals)
        tangent = _contract(gradient, inputs.tangents["logits"], options)
        if others:
            tangent = tangent + _jvp(plain, inputs, others)[1]
        return value, tangent

    def loss_and_gradient_jvp(primals: tuple, tangents: tuple) -> tuple[Any, Any]:
        inputs, moving = _inputs(primals, tangents)
        value, gradient = loss_and_gradient(*primals)
        others = moving - {"logits"}
        value_tangent = jnp.zeros_like(value)
        if "logits" in moving:
            value_tangent = _contract(gradient, inputs.tangents["logits"], options)
        if others:
            value_tangent = value_tangent + _jvp(plain, inputs, others)[1]
        gradient_tangent = _jvp(autodiff_gradient, inputs, moving)[1] if moving else jnp.zeros_like(gradient)
        return (value, gradient), (value_tangent, gradient_tangent)

    loss.defjvp(loss_jvp, symbolic_zeros=True)
    loss_and_gradient.defjvp(loss_and_gradient_jvp, symbolic_zeros=True)
    return loss


class _Inputs:
    """Primals and tangents of ``(logits, targets, arrays)``, keyed by argument name."""

    def __init__(self, primals: tuple, tangents: tuple) -> None:
        (logits, targets, arrays), (logits_dot, targets_dot, arrays_dot) = primals, tangents
        self.primals = {"logits": logits, "targets": targets, **arrays}
        self.tangents = {"logits": logits_dot, "targets": targets_dot, **arrays_dot}

    def call(self, fn: Any, replaced: dict[str, Any]) -> Any:
        """``fn(logits, targets, arrays)`` with the ``replaced`` inputs swapped in."""
        merged = {**self.primals, **replaced}
        logits, targets = merged.pop("logits"), merged.pop("targets")
        return fn(logits, targets, merged)


def _inputs(primals: tuple, tangents: tuple) -> tuple[_Inputs, set[str]]:
    """The inputs, and the names of those with a (floating, non-zero) tangent."""
    inputs = _Inputs(primals, tangents)
    moving = {
        name
        for name, tangent in inputs.tangents.items()
        if not isinstance(tangent, SymbolicZero) and jnp.issubdtype(inputs.primals[name].dtype, jnp.inexact)
    }
    return inputs, moving


def _jvp(fn: Any, inputs: _Inputs, names: set[str]) -> tuple[Any, Any]:
    """``jax.jvp`` of ``fn`` in the inputs ``names`` (autodiff, built only when asked for)."""
    chosen = sorted(names)
    primals = {name: inputs.primals[name] for name in chosen}
    tangents = {name: inputs.tangents[name] for name in chosen}
    return jax.jvp(lambda moved: inputs.call(fn, moved), (primals,), (tangents,))


def _contract(gradient: Any, logits_dot: Any, options: dict[str, Any]) -> Any:
    """``sum_k g_k dz_k``: over the class axis for ``"none"``, over everything otherwise."""
    product = gradient * logits_dot
    axis = options["axis"] if options["reduction"] == "none" else None
    # Low-precision logits: the products are summed in float32 at least.
    total = jnp.sum(product, axis=axis, dtype=jnp.promote_types(product.dtype, jnp.float32))
    return total.astype(product.dtype)
