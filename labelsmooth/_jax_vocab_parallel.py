"""The vocabulary-parallel smoothed cross-entropy inside ``shard_map`` / ``pmap`` over an axis name.

Each device along ``axis_name`` holds the logits of one equal, contiguous block of classes
(device ``i`` of the axis the ``i``-th block); the collectives of ``_vocab_parallel`` are
``jax.lax.pmax`` and ``jax.lax.psum``. The loss is a :func:`jax.custom_vjp` function whose
backward pass is this device's block of the analytic gradient. This module imports JAX;
``labelsmooth.jax`` exports its function.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from ._problem import complete_options, with_options
from ._vocab_parallel import OPTIONS, Shard, evaluate

__all__ = ["vocab_parallel_cross_entropy"]


@with_options(namespace=False, only=OPTIONS)
def vocab_parallel_cross_entropy(logits_shard: Any, targets: Any, /, *, axis_name: Any, **options: Any) -> Any:
    r"""The smoothed cross-entropy of logits whose class axis is split along ``axis_name``.

    .. math::

        \ell_i = -\sum_{k=1}^{K} w_k\, q'_{ik} \log p_{ik} + z\_loss \cdot \mathrm{lse}_i^2,
        \qquad q' = (1 - \varepsilon)\, q + \varepsilon\, u

    Called inside :func:`jax.shard_map` (or ``pmap``) where each device holds
    ``logits_shard`` of shape ``(..., K / n)``, the ``i``-th block of classes on the
    ``i``-th device of ``axis_name`` (``n`` devices), and the same ``targets`` (global
    class ids). Every device gets the loss :func:`labelsmooth.cross_entropy` gives for
    the whole logits, with the smoothing over the global vocabulary, and under
    :func:`jax.grad` its own block of the unsharded gradient (the analytic one, a
    ``custom_vjp``). ``weight`` and an array ``prior`` are global ``(K,)`` arrays; array
    options are not differentiated. Works under ``jax.jit``; labels out of range under
    ``jit`` give NaN.

    Parameters
    ----------
    logits_shard : jax.Array of real floating dtype, shape (..., K / n)
    targets : jax.Array of integer dtype, shape (...)
    axis_name : hashable
        The mapped axis the classes are split over.
    epsilon, prior, weight, ignore_index, reduction, z_loss
        As in :func:`labelsmooth.cross_entropy`.

    Returns
    -------
    jax.Array
        Scalar for ``"mean"``/``"sum"``, batch-shaped for ``"none"``; the same on every device.

    Raises
    ------
    TypeError, ValueError
        As :func:`labelsmooth.cross_entropy` for these options.
    """
    values = complete_options(options, namespace=False, only=OPTIONS)
    arrays = {name: value for name, value in values.items() if isinstance(value, jax.Array)}
    static = tuple((name, value) for name, value in values.items() if name not in arrays)
    return _loss(axis_name, static, logits_shard, targets, arrays)


def _shard(axis_name: Any, width: int) -> Shard:
    return Shard(
        offset=jax.lax.axis_index(axis_name) * width,
        num_classes=width * jax.lax.axis_size(axis_name),
        all_max=partial(jax.lax.pmax, axis_name=axis_name),
        all_sum=partial(jax.lax.psum, axis_name=axis_name),
    )


def _evaluate(axis_name: Any, static: tuple, logits: Any, targets: Any, arrays: dict, with_grad: bool) -> tuple:
    options = {**dict(static), **arrays}
    return evaluate(jnp.asarray(logits), jnp.asarray(targets), _shard(axis_name, logits.shape[-1]), options, with_grad)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _loss(axis_name: Any, static: tuple, logits: Any, targets: Any, arrays: dict) -> Any:
    return _evaluate(axis_name, static, logits, targets, arrays, False)[0]


def _loss_forward(axis_name: Any, static: tuple, logits: Any, targets: Any, arrays: dict) -> tuple:
    loss, grad = _evaluate(axis_name, static, logits, targets, arrays, True)
    return loss, (grad, targets, arrays)


def _loss_backward(axis_name: Any, static: tuple, saved: tuple, cotangent: Any) -> tuple:
    grad, _, arrays = saved
    per_row = dict(static).get("reduction") == "none"
    scaled = grad * (cotangent[..., None] if per_row else cotangent)
    return scaled, None, jax.tree.map(jnp.zeros_like, arrays)


_loss.defvjp(_loss_forward, _loss_backward)
