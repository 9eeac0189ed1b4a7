"""JAX training adapter: the smoothed cross-entropy with its analytic gradient as the JVP.

``labelsmooth.jax.cross_entropy`` returns the same values as
:func:`labelsmooth.cross_entropy`, but it is a :func:`jax.custom_jvp` function whose
tangent is ``<p - q', dz>``, with the gradient ``p - q'`` computed together with the loss
(:func:`labelsmooth.cross_entropy_with_grad`, one softmax). Under ``jax.grad`` the
transposed tangent makes the backward pass one multiplication by the cotangent; plain
autodiff of the loss instead keeps several ``N x K`` intermediates and replays the
softmax backwards. The gradient is itself a ``custom_jvp`` value whose derivative is
autodiff of :func:`labelsmooth.cross_entropy`, so forward mode and every higher order
(``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) give the derivatives of the loss.

This module imports JAX; ``import labelsmooth`` does not import it.
"""

from __future__ import annotations

import numbers
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from array_api_compat import is_array_api_obj
from jax.custom_derivatives import SymbolicZero

from . import _losses
from ._problem import AdapterOptions, complete_options, with_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["cross_entropy"]

_ARRAY_OPTIONS = ("epsilon", "prior", "weight", "where")
# What each option may be, for the messages of refused arguments.
_EXPECTED = {
    "logits": "a jax.Array (or NumPy array) of real floating dtype",
    "targets": "a jax.Array (or NumPy array) of integer labels or probabilities",
    "epsilon": "a float in [0, 1] or a jax.Array (or NumPy array)",
    "prior": "None, 'others' or a jax.Array (or NumPy array) of class probabilities",
    "weight": "None or a jax.Array (or NumPy array) of shape (K,)",
    "where": "None or a boolean jax.Array (or NumPy array)",
    "axis": "an int",
    "ignore_index": "an int or None",
    "reduction": "one of 'mean', 'sum', 'none'",
}


@with_options(namespace=False)
def cross_entropy(logits: Any, targets: Any, /, **options: Unpack[AdapterOptions]) -> Any:
    r"""Smoothed cross-entropy whose ``jax.grad`` is the analytic ``p - q'``.

    .. math::

        H(q', p) = -\sum_k q'_k \log p_k, \qquad
        \frac{\partial H}{\partial z} = p - q', \qquad
        q' = (1 - \varepsilon)\, q + \varepsilon\, u

    (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision",
    section 7). Values, options and validation are those of
    :func:`labelsmooth.cross_entropy`; only the derivative rule differs.

    The tangent with respect to ``logits`` is ``sum_k g_k dz_k`` with ``g`` the gradient of
    :func:`labelsmooth.cross_entropy_with_grad` (per sample for ``reduction="none"``), so
    ``jax.grad`` multiplies that gradient by the cotangent. Second and higher derivatives
    (``jax.hessian``, ``jax.jacfwd`` or ``jax.jacrev`` of ``jax.grad``) are autodiff of
    :func:`labelsmooth.cross_entropy`: ``T (diag(p) - p p^T)`` per sample, exact at tied
    maxima too. Integer targets and the boolean ``where`` mask have no tangent. Floating
    ``targets``, an array ``epsilon``, ``prior`` or ``weight`` are differentiated by
    autodiff of :func:`labelsmooth.cross_entropy`, and only when a transformation asks for
    their derivative. Works under ``jax.jit``, ``jax.vmap``, ``jax.grad`` /
    ``jax.value_and_grad``, forward mode and on sharded arrays.

    Parameters
    ----------
    logits : jax.Array of real floating dtype
        A NumPy array is accepted too; Python lists and other libraries' arrays are not.
    targets : jax.Array
        Integer labels (``logits``' shape without ``axis``) or probability rows.
    epsilon, prior, axis, weight, ignore_index, where, reduction
        As in :func:`labelsmooth.cross_entropy`; array options are JAX (or NumPy) arrays.

    Returns
    -------
    jax.Array
        Scalar for ``"mean"``/``"sum"``, batch-shaped for ``"none"``.

    Raises
    ------
    TypeError
        ``logits``, ``targets`` or an array option given as a list, a tuple or another
        library's array (a ``torch.Tensor``), and every type error of
        :func:`labelsmooth.cross_entropy`.
    ValueError
        As :func:`labelsmooth.cross_entropy`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from labelsmooth.jax import cross_entropy
    >>> z, y = jnp.zeros((1, 2)), jnp.asarray([0])
    >>> jax.grad(cross_entropy)(z, y, epsilon=0.2)
    Array([[-0.4,  0.4]], dtype=float32)
    >>> jax.hessian(cross_entropy)(z, y, epsilon=0.2)[0, :, 0, :]  # p (1 - p) = 1/4
    Array([[ 0.25, -0.25],
           [-0.25,  0.25]], dtype=float32)
    """
    _require_jax_array("logits", logits)
    _require_jax_array("targets", targets)
    values = complete_options(options, namespace=False)
    arrays = {}
    for name in ("epsilon", "prior", "weight", "where"):
        value = values[name]
        if is_array_api_obj(value) and not _is_numpy_scalar(value):
            _require_jax_array(name, value)
            arrays[name] = jnp.asarray(value)
        else:
            _require_static_option(name, value)
    static = tuple(sorted((name, value) for name, value in values.items() if name not in arrays))
    for name, value in static:
        _require_hashable(name, value)
    return _loss_with_analytic_jvp(static)(jnp.asarray(logits), jnp.asarray(targets), arrays)


def _kind(value: Any) -> str:
    """``a list``, ``a torch.Tensor of shape (2, 3)``: what was received, for messages."""
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__.split('.')[0]}.{kind.__qualname__}"
    shape = getattr(value, "shape", None)
    return f"a {name}" + (f" of shape {tuple(shape)}" if shape is not None else "")


def _is_numpy_scalar(value: Any) -> bool:
    return isinstance(value, np.generic)


def _require_jax_array(name: str, value: Any) -> None:
    # jnp.asarray would quietly accept lists (and, through __array__, torch tensors), which
    # labelsmooth.cross_entropy refuses: the adapter takes the arrays the core would.
    if not isinstance(value, (jax.Array, np.ndarray)):
        msg = f"{name} must be {_EXPECTED[name]}, got {_kind(value)}"
        raise TypeError(msg)


def _require_static_option(name: str, value: Any) -> None:
    """A non-array option: what the core accepts there, or a ``TypeError`` naming it."""
    if name == "epsilon":
        accepted = isinstance(value, (numbers.Real, np.generic))
    elif name == "prior":
        accepted = value is None or isinstance(value, str)
    else:
        accepted = value is None
    if not accepted:
        msg = f"{name} must be {_EXPECTED[name]}, got {_kind(value)}"
        raise TypeError(msg)


def _require_hashable(name: str, value: Any) -> None:
    try:
        hash(value)
    except TypeError:
        msg = f"{name} must be {_EXPECTED[name]}, got {_kind(value)}"
        raise TypeError(msg) from None


@lru_cache(maxsize=256)
def _loss_with_analytic_jvp(static: tuple[tuple[str, Any], ...]) -> Any:
    """The loss for one set of static options, as a ``jax.custom_jvp`` function."""
    options = dict(static)

    def plain(logits: Any, targets: Any, arrays: dict[str, Any]) -> Any:
        return _losses.cross_entropy(logits, targets, **options, **arrays)

    def autodiff_gradient(logits: Any, targets: Any, arrays: dict[str, Any]) -> Any:
        # Each per-sample loss depends on its own row only: the gradient of their sum is
        # the per-sample gradient for reduction="none", and the gradient otherwise.
        return jax.grad(lambda z: jnp.sum(plain(z, targets, arrays)))(logits)

    @jax.custom_jvp
    def loss_and_gradient(logits: Any, targets: Any, arrays: dict[str, Any]) -> tuple[Any, Any]:
        return _losses.cross_entropy_with_grad(logits, targets, **options, **arrays)

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
