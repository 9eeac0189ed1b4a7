"""Smoothed cross-entropy, its analytic gradient, and both together."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from array_api_compat import is_array_api_obj

from . import _small
from ._assembly import solve
from ._backend import is_jax_tracer, is_numpy_scalar, wants_torch_autograd
from ._docs import LOSS_RETURNS_DOC, loss_doc
from ._problem import LossOptions, complete_options, prepare, with_options
from ._validation import as_python_scalar

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .typing import Array, ArrayT

__all__ = ["cross_entropy", "cross_entropy_grad", "cross_entropy_with_grad"]


@with_options()
def cross_entropy(logits: ArrayT, targets: Array, /, **options: Unpack[LossOptions]) -> ArrayT:
    small = _small.evaluate(logits, targets, options, with_grad=False)
    if small is not None:
        return small[0]
    if wants_torch_autograd(logits, (targets, *options.values())):
        # One evaluation forward and the analytic gradient backward, instead of autograd
        # recording the array-API kernel operation by operation.
        from . import _torch_autograd

        return _torch_autograd.cross_entropy(logits, targets, dict(options))
    if is_jax_tracer(logits) and is_array_api_obj(targets):
        split = _array_and_static_options(options)
        if split is not None:
            # The analytic gradient as the JVP, instead of autodiff through the kernel.
            from . import _jax_autodiff

            return _jax_autodiff.cross_entropy(logits, targets, *split)
    return solve(prepare(logits, targets, **options), with_grad=False)[0]


def _array_and_static_options(options: Any) -> tuple[dict, dict] | None:
    """The array options and the others (hashable), or None when some other is not hashable."""
    values = complete_options(options)
    arrays = {name: value for name, value in values.items() if is_array_api_obj(value) and not is_numpy_scalar(value)}
    static = {name: value for name, value in values.items() if name not in arrays}
    if "epsilon" in static:
        static["epsilon"] = as_python_scalar(static["epsilon"])
    try:
        hash(tuple(static.values()))
    except TypeError:
        return None  # refused with its own message by the plain evaluation
    return arrays, static


@with_options()
def cross_entropy_grad(logits: ArrayT, targets: Array, /, **options: Unpack[LossOptions]) -> ArrayT:
    small = _small.evaluate(logits, targets, options, with_grad=True)
    if small is not None:
        return small[1]
    return solve(prepare(logits, targets, **options), with_grad=True)[1]


@with_options()
def cross_entropy_with_grad(logits: ArrayT, targets: Array, /, **options: Unpack[LossOptions]) -> tuple[ArrayT, ArrayT]:
    small = _small.evaluate(logits, targets, options, with_grad=True)
    if small is not None:
        return small
    return solve(prepare(logits, targets, **options), with_grad=True)


cross_entropy.__doc__ = loss_doc(
    r"""Cross-entropy of the logits against label-smoothed targets.

    .. math::

        q' = (1 - \varepsilon)\, q + \varepsilon\, u, \qquad
        H(q', p) = -\sum_k q'_k \log p_k
                 = (1 - \varepsilon) H(q, p) + \varepsilon H(u, p),
        \qquad p = \operatorname{softmax}(z)

    (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision",
    section 7). With integer labels the dense ``q'`` is never formed: one sample's loss is
    ``(1 - eps) (lse - z_y) + eps (lse - sum_k u_k z_k)``, evaluated as sums of
    non-negative terms ``log s + (m - z_k)`` so that it is exactly invariant to shifting
    the logits.
""",
    LOSS_RETURNS_DOC,
    r"""    >>> import math
    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> z = xp.log(xp.asarray([[0.1, 0.1, 0.1, 0.36, 0.34]]))
    >>> y = xp.asarray([3])
    >>> round(float(ls.cross_entropy(z, y)), 12), round(float(ls.cross_entropy(z, y, epsilon=0.1)), 12)
    (1.021651247532, 1.099650446537)
""",
)

cross_entropy_grad.__doc__ = loss_doc(
    r"""Analytic gradient of :func:`cross_entropy` with respect to the logits.

    .. math:: \frac{\partial H(q', p)}{\partial z} = p - q'

    per sample, scaled by the reduction (``"mean"`` divides by its normaliser; for
    ``"none"`` each row is that sample's own gradient). With class weights it is PyTorch's
    ``(sum_k t_k) p - t`` where ``t = (1-eps) w_y e_y + eps u * w`` (labels) or
    ``t = w * q'`` (probabilities). Ignored samples and masked classes get 0. Equal to
    ``jax.grad`` / ``torch.autograd`` of :func:`cross_entropy`.
""",
    r"""    array
        Same shape and dtype as ``logits``.
""",
    r"""    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> ls.cross_entropy_grad(xp.asarray([[0.0, 0.0]]), xp.asarray([0]), epsilon=0.2)
    Array([[-0.4,  0.4]], dtype=array_api_strict.float64)
""",
)

cross_entropy_with_grad.__doc__ = loss_doc(
    r"""Loss and gradient together: ``(cross_entropy(...), cross_entropy_grad(...))``.

    The softmax of the logits is computed once and shared.
""",
    r"""    loss, grad : tuple of arrays
""",
)
