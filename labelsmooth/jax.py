"""JAX training adapter: the smoothed cross-entropy with its analytic gradient as the JVP.

``labelsmooth.jax.cross_entropy`` returns the same values as
:func:`labelsmooth.cross_entropy`, but it is a :func:`jax.custom_jvp` function whose
tangent is ``<p - q', dz>``, with the gradient ``p - q'`` computed together with the loss
(one kernel). Under ``jax.grad`` the transposed tangent makes the backward pass one
multiplication by the cotangent. The gradient is itself a ``custom_jvp`` value whose
derivative is autodiff of the loss, so forward mode and every higher order (``jax.jvp``,
``jax.jacfwd``, ``jax.hessian``) give the derivatives of the loss. The plain
:func:`labelsmooth.cross_entropy` does the same on traced JAX arrays; this adapter also
takes that route for eager arrays and refuses arrays of other libraries.

This module imports JAX; ``import labelsmooth`` does not import it.
"""

from __future__ import annotations

import numbers
from functools import partial
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from array_api_compat import is_array_api_obj

from . import _jax_autodiff, _linear
from ._jax_vocab_parallel import vocab_parallel_cross_entropy
from ._problem import AdapterOptions, complete_options, with_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .typing import Array

__all__ = ["cross_entropy", "linear_cross_entropy", "vocab_parallel_cross_entropy"]

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
    "z_loss": "a non-negative float",
    "softcap": "None or a positive float",
}


@with_options(namespace=False)
def cross_entropy(logits: Array, targets: Array, /, **options: Unpack[AdapterOptions]) -> jax.Array:
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
    static = {name: value for name, value in values.items() if name not in arrays}
    for name, value in static.items():
        _require_hashable(name, value)
    return _jax_autodiff.cross_entropy(jnp.asarray(logits), jnp.asarray(targets), arrays, static)


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


@with_options(namespace=False, source=_linear.linear_cross_entropy)
def linear_cross_entropy(hidden: Any, classifier: Any, targets: Any, /, **options: Any) -> Any:
    r""":func:`labelsmooth.linear_cross_entropy` whose ``jax.grad`` is the analytic gradients.

    .. math::

        z_i = W h_i + b, \qquad \frac{\partial \ell}{\partial h_i} = W^T g_i, \qquad
        \frac{\partial \ell}{\partial W} = \sum_i g_i h_i^T, \qquad
        \frac{\partial \ell}{\partial b} = \sum_i g_i, \qquad g_i = p_i - q'_i

    (scaled by the reduction). A :func:`jax.custom_vjp` function: the forward pass computes
    the loss and the three gradients block by block (the logits never exist whole); the
    backward pass scales them by the cotangent, or, for ``reduction="none"``, recomputes
    them block by block with each row weighted by its cotangent. First derivatives only;
    array options (``epsilon``, ``prior``, ``weight``) are not differentiated. Works under
    ``jax.jit`` (the blocks are a Python loop over static shapes).

    Parameters
    ----------
    hidden, classifier, targets, bias, epsilon, prior, weight, ignore_index, reduction, z_loss, softcap, chunk_size
        As in :func:`labelsmooth.linear_cross_entropy`, with JAX arrays.

    Returns
    -------
    jax.Array
        Scalar for ``"mean"``/``"sum"``, ``hidden.shape[:-1]`` for ``"none"``.
    """
    options = complete_options(options, namespace=False, source=_linear.linear_cross_entropy)
    bias = options.pop("bias")
    arrays = {name: value for name, value in options.items() if is_array_api_obj(value)}
    static = tuple((name, value) for name, value in options.items() if name not in arrays)
    _require_hashable("prior", dict(static).get("prior"))
    return _linear_loss(static, hidden, classifier, bias, targets, arrays)


def _linear_options(static: tuple, bias: Any, arrays: dict) -> dict:
    return {**dict(static), **arrays, "bias": bias, "xp": None}


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _linear_loss(static: tuple, hidden: Any, classifier: Any, bias: Any, targets: Any, arrays: dict) -> Any:
    options = _linear_options(static, bias, arrays)
    return _linear.evaluate(hidden, classifier, targets, options, with_grad=False)[0]


def _linear_forward(static: tuple, hidden: Any, classifier: Any, bias: Any, targets: Any, arrays: dict) -> tuple:
    options = _linear_options(static, bias, arrays)
    if dict(static)["reduction"] == "none":
        loss = _linear.evaluate(hidden, classifier, targets, options, with_grad=False)[0]
        return loss, (hidden, classifier, bias, targets, arrays, None)
    loss, grads = _linear.evaluate(hidden, classifier, targets, options, with_grad=True)
    return loss, (hidden, classifier, bias, targets, arrays, grads)


def _linear_backward(static: tuple, saved: tuple, cotangent: Any) -> tuple:
    hidden, classifier, bias, targets, arrays, grads = saved
    if grads is None:
        options = _linear_options(static, bias, arrays)
        _, grads = _linear.evaluate(hidden, classifier, targets, options, with_grad=True, row_cotangent=cotangent)
    else:
        grads = tuple(None if g is None else g * cotangent for g in grads)
    grad_hidden, grad_classifier, grad_bias = grads
    return grad_hidden, grad_classifier, grad_bias, None, jax.tree.map(jnp.zeros_like, arrays)


_linear_loss.defvjp(_linear_forward, _linear_backward)
