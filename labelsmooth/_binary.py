"""Sigmoid (binary) cross-entropy from logits with label smoothing, and its gradient."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from array_api_compat import is_array_api_obj

from ._backend import (
    accumulation_dtype,
    compute_dtype,
    device_of,
    namespace_of,
    values_checkable,
    wants_torch_autograd,
)
from ._docs import XP_DOC, loss_doc
from ._problem import complete_options, with_options
from ._validation import (
    check_broadcastable,
    check_epsilon,
    check_reduction,
    either_mask,
    first_value,
    require_array,
    require_real_floating,
)
from .typing import Reduction

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .typing import Array, ArrayT

__all__ = ["BinaryOptions", "binary_cross_entropy", "binary_cross_entropy_grad", "binary_cross_entropy_with_grad"]

_NAN = float("nan")


@dataclass
class _BinaryProblem:
    xp: Any
    logits: Any  # working dtype
    positive: Any  # smoothed target y' (times pos_weight), working dtype
    negative: Any  # 1 - y', formed without cancellation, working dtype
    total: Any  # positive + negative when a pos_weight is given, else None (it is 1)
    weight: Any  # working dtype, broadcastable to logits, or None
    poison: Any  # bool, broadcastable to logits, or None
    reduction: str
    result_dtype: Any
    acc: Any


def _check_target_dtype(targets: Any, logits: Any, xp: Any) -> None:
    if xp.isdtype(targets.dtype, "real floating"):
        if targets.dtype != logits.dtype:
            msg = (
                f"floating targets must have the logits' dtype {logits.dtype}, got dtype "
                f"{targets.dtype} (cast one of them explicitly)"
            )
            raise TypeError(msg)
    elif not (xp.isdtype(targets.dtype, "integral") or xp.isdtype(targets.dtype, "bool")):
        msg = f"targets must be real floating probabilities or integer/boolean 0/1 labels, got dtype {targets.dtype}"
        raise TypeError(msg)


def _target_poison(targets: Any, eager: bool, xp: Any) -> Any:
    """Raise on targets outside their range where values can be read; else their mask (None: none)."""
    if xp.isdtype(targets.dtype, "bool"):
        return None
    if xp.isdtype(targets.dtype, "real floating"):
        bad = xp.logical_not((targets >= 0) & (targets <= 1))
        expected = "probabilities in [0, 1]"
    else:
        bad = xp.logical_not((targets == 0) | (targets == 1))
        expected = "0/1 labels"
    if not eager:
        return bad
    if bool(xp.any(bad)):
        msg = f"targets must be {expected}, got a value of {first_value(targets, bad, xp)}"
        raise ValueError(msg)
    return None


def _smoothed_targets(y: Any, eps: Any) -> tuple[Any, Any]:
    """``(y', 1 - y')`` with ``y' = y (1 - eps) + eps/2``."""
    if isinstance(eps, float) and eps == 0.0:
        return y, 1.0 - y
    # y' = y (1 - eps) + eps/2 and 1 - y' = (1 - y)(1 - eps) + eps/2: both written as
    # sums of non-negative terms, so neither loses precision when the other is near 1.
    return y * (1.0 - eps) + eps * 0.5, (1.0 - y) * (1.0 - eps) + eps * 0.5


def _working_weight(weight: Any, shape: tuple[int, ...], work: Any, xp: Any, name: str = "weight") -> Any:
    if weight is None:
        return None
    require_array(name, weight)
    if not (xp.isdtype(weight.dtype, "real floating") or xp.isdtype(weight.dtype, "integral")):
        msg = f"{name} must have a real dtype, got dtype {weight.dtype}"
        raise TypeError(msg)
    check_broadcastable(name, tuple(weight.shape), shape, "the logits' shape")
    return xp.astype(weight, work)


class BinaryOptions(TypedDict, total=False):
    """The keyword options of the binary losses (their defaults are :func:`_prepare`'s)."""

    epsilon: Any
    weight: Any
    pos_weight: Any
    reduction: Reduction
    xp: Any


def _positive_weight(pos_weight: Any, shape: tuple, work: Any, eager: bool, xp: Any) -> tuple[Any, Any]:
    """PyTorch's ``pos_weight`` (non-negative, broadcastable to the logits) and its poison mask."""
    weight = _working_weight(pos_weight, shape, work, xp, name="pos_weight")
    bad = xp.logical_not((weight >= 0.0) & (weight < float("inf")))
    if not eager:
        return weight, bad
    if bool(xp.any(bad)):
        msg = f"pos_weight must be finite and non-negative, got a value of {first_value(weight, bad, xp)}"
        raise ValueError(msg)
    return weight, None


def _prepare(
    logits: Any,
    targets: Any,
    *,
    epsilon: Any = 0.0,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: Reduction = "mean",
    xp: Any = None,
    **unknown: Any,
) -> _BinaryProblem:
    if unknown:
        complete_options(unknown, source=_prepare)  # raises, naming the options
    require_array("logits", logits)
    require_array("targets", targets)
    array_options = [a for a in (epsilon, weight, pos_weight) if is_array_api_obj(a)]
    xp = namespace_of(logits, targets, *array_options, xp=xp)
    require_real_floating("logits", logits, xp)
    reduction = check_reduction(reduction)
    shape = tuple(logits.shape)
    if tuple(targets.shape) != shape:
        msg = f"targets must have the logits' shape {shape}, got shape {tuple(targets.shape)}"
        raise ValueError(msg)
    _check_target_dtype(targets, logits, xp)
    epsilon = check_epsilon(epsilon, xp, shape)

    work = compute_dtype(xp, logits.dtype)
    acc = accumulation_dtype(xp, work, logits)
    eager = values_checkable(logits, targets, *array_options)
    poison = _target_poison(targets, eager, xp)
    z = xp.astype(logits, work, copy=False)
    y = xp.astype(targets, work)
    if isinstance(epsilon, float):
        eps: Any = epsilon
    else:
        eps = xp.astype(epsilon, work)
        if not eager:
            poison = either_mask(poison, xp.logical_not((eps >= 0) & (eps <= 1)))
    positive, negative = _smoothed_targets(y, eps)
    total = None
    if pos_weight is not None:
        pos_weight, pos_poison = _positive_weight(pos_weight, shape, work, eager, xp)
        poison = either_mask(poison, pos_poison)
        positive = positive * pos_weight
        total = positive + negative
    return _BinaryProblem(
        xp=xp,
        logits=z,
        positive=positive,
        negative=negative,
        total=total,
        weight=_working_weight(weight, shape, work, xp),
        poison=poison,
        reduction=reduction,
        result_dtype=logits.dtype,
        acc=acc,
    )


def _elementwise_loss(problem: _BinaryProblem, decay: Any) -> Any:
    """``max(z, 0) - z y' + log1p(exp(-|z|))`` per element, in the working dtype.

    ``decay`` is ``exp(-|z|)``. ``max(z, 0) - z y'`` is evaluated as
    ``relu(z) (1 - y') + relu(-z) y'``: the same number, as a sum of non-negative products
    instead of a difference of large ones.
    """
    xp, z = problem.xp, problem.logits
    above = xp.where(z > 0, z, 0.0)
    below = xp.where(z < 0, -z, 0.0)
    # A zero target coefficient contributes 0 even when the logit is infinite (the limit
    # of the loss), not IEEE's 0 * inf = NaN.
    above = xp.where(problem.negative == 0.0, 0.0, above)
    below = xp.where(problem.positive == 0.0, 0.0, below)
    softplus_tail = xp.log1p(decay)
    if problem.total is not None:
        softplus_tail = softplus_tail * problem.total
    loss = above * problem.negative + below * problem.positive + softplus_tail
    if problem.weight is not None:
        loss = loss * problem.weight
    if problem.poison is not None:
        loss = xp.where(problem.poison, _NAN, loss)
    return loss


def _elementwise_gradient(problem: _BinaryProblem, decay: Any, scale: Any) -> Any:
    """``scale * w * (sigmoid(z) - y')`` per element, in the result dtype, without cancellation.

    With ``t = exp(-|z|) / (1 + exp(-|z|))`` (never overflows), ``sigmoid(z) = 1 - t`` for
    ``z >= 0`` and ``t`` for ``z < 0``, so the gradient is ``(1 - y') - t`` or
    ``t - y'``: a saturated sigmoid next to a matching target keeps its tiny residual.
    """
    xp, z = problem.xp, problem.logits
    tail = decay / (1.0 + decay)
    if problem.total is not None:
        # (1 - y') sigmoid(z) - p y' (1 - sigmoid(z)), with the same split at z = 0.
        tail = tail * problem.total
    grad = xp.where(z >= 0, problem.negative - tail, tail - problem.positive)
    if problem.weight is not None:
        grad = grad * problem.weight
    if scale != 1.0:
        grad = grad * scale
    if problem.poison is not None:
        grad = xp.where(problem.poison, _NAN, grad)
    return xp.astype(grad, problem.result_dtype)


def _decay(problem: _BinaryProblem) -> Any:
    xp = problem.xp
    return xp.exp(-xp.abs(problem.logits))


def _element_count(problem: _BinaryProblem) -> int:
    return math.prod(int(size) for size in problem.logits.shape)


def _gradient_scale(problem: _BinaryProblem) -> float:
    if problem.reduction != "mean":
        return 1.0
    count = _element_count(problem)
    # The mean of no elements is 0/0 = NaN, as in PyTorch.
    return _NAN if count == 0 else 1.0 / count


def _reduce(problem: _BinaryProblem, loss: Any) -> Any:
    """The reduced loss in the result dtype; sums accumulate in the accumulation dtype."""
    xp = problem.xp
    if problem.reduction == "none":
        return xp.astype(loss, problem.result_dtype)
    # Kept 1-d until the end: NumPy turns 0-d arithmetic results into scalars.
    total = xp.reshape(xp.sum(loss, dtype=problem.acc), (1,))
    if problem.reduction == "mean":
        count = _element_count(problem)
        if count == 0:
            return xp.asarray(_NAN, dtype=problem.result_dtype, device=device_of(problem.logits))
        total = total / count
    return xp.reshape(xp.astype(total, problem.result_dtype), ())


_DOC_PARAMETERS = (
    r"""    logits : array of real floating dtype, any shape
        Unnormalised log-odds ``z``, one independent binary problem per element.
    targets : array with the shape of ``logits``
        Probabilities in ``[0, 1]`` (real floating, the dtype of ``logits``), or 0/1 labels
        of an integer or boolean dtype (cast to the logits' dtype).
    epsilon : float in [0, 1] or array broadcastable to ``logits``, default 0.0
        Smoothing strength; targets become ``y (1 - eps) + eps / 2`` (an array gives a
        per-element strength).
    weight : array broadcastable to ``logits``, optional
        Per-element weights multiplying the element losses (and gradients), as PyTorch's
        ``weight`` of ``binary_cross_entropy_with_logits``: ``"mean"`` still divides by
        the number of elements, not by the sum of weights. A weight of shape ``(N, 1)`` on
        ``(N, M)`` logits is Keras' per-sample ``sample_weight`` of shape ``(N,)``.
    pos_weight : array broadcastable to ``logits``, optional
        PyTorch's ``pos_weight`` (``BCEWithLogitsLoss``): the weight ``p`` of the positive
        term, ``-p y' log sigmoid(z) - (1 - y') log(1 - sigmoid(z))``, finite and
        non-negative (a shape ``(M,)`` gives one per class of ``(N, M)`` logits).
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages over *all* elements, ``"sum"`` adds them, ``"none"`` returns
        the element losses with the shape of ``logits``. Keras averages over the last axis
        and then over the batch; with equal-length rows that is the same number, so
        ``"mean"`` equals Keras' default, and Keras' ``reduction=None`` is our ``"none"``
        averaged over the last axis.
"""
    + XP_DOC
)

_DOC_RAISES = r"""    TypeError
        Non-floating ``logits``, floating ``targets`` of another dtype, targets of a
        non-real dtype, arrays of different libraries, options of the wrong type.
    ValueError
        Shape mismatches, targets outside ``[0, 1]`` (or integer labels other than 0 and
        1), ``epsilon`` outside ``[0, 1]``, an unknown ``reduction``. Under ``jax.jit`` and
        on lazy Dask arrays the values cannot be read: the affected elements are NaN.
"""


@with_options(source=_prepare)
def binary_cross_entropy(logits: ArrayT, targets: Array, /, **options: Unpack[BinaryOptions]) -> ArrayT:
    if wants_torch_autograd(logits, (targets, *options.values())):
        from . import _torch_autograd

        values = complete_options(options, source=_prepare)
        names = ("epsilon", "weight", "pos_weight")
        return _torch_autograd.loss(logits, targets, values, _evaluation, names, per_row=False)
    problem = _prepare(logits, targets, **options)
    return _reduce(problem, _elementwise_loss(problem, _decay(problem)))


def _evaluation(logits: Any, targets: Any, options: dict[str, Any], with_grad: bool) -> tuple[Any, Any]:
    problem = _prepare(logits, targets, **options)
    decay = _decay(problem)
    loss = _reduce(problem, _elementwise_loss(problem, decay))
    return loss, _elementwise_gradient(problem, decay, _gradient_scale(problem)) if with_grad else None


@with_options(source=_prepare)
def binary_cross_entropy_grad(logits: ArrayT, targets: Array, /, **options: Unpack[BinaryOptions]) -> ArrayT:
    problem = _prepare(logits, targets, **options)
    return _elementwise_gradient(problem, _decay(problem), _gradient_scale(problem))


@with_options(source=_prepare)
def binary_cross_entropy_with_grad(
    logits: ArrayT, targets: Array, /, **options: Unpack[BinaryOptions]
) -> tuple[ArrayT, ArrayT]:
    return _evaluation(logits, targets, dict(options), True)


binary_cross_entropy.__doc__ = loss_doc(
    r"""Sigmoid cross-entropy of logits against label-smoothed binary targets.

    .. math::

        y' = y\,(1 - \varepsilon) + \tfrac{\varepsilon}{2}, \qquad
        \ell(z, y') = -y' \log \sigma(z) - (1 - y') \log(1 - \sigma(z))
                    = \max(z, 0) - z\,y' + \log\!\left(1 + e^{-|z|}\right)

    Each element is its own two-class problem, smoothed towards ``1/2`` as Keras /
    TensorFlow's ``BinaryCrossentropy(label_smoothing=eps)`` and TF v1's
    ``sigmoid_cross_entropy`` do (Szegedy et al. 2016, "Rethinking the Inception
    Architecture for Computer Vision", section 7, with ``K = 2``). The right-hand form never
    evaluates ``exp`` of a positive number, so any finite logit is safe; ``max(z, 0) - z y'``
    is computed as ``relu(z) (1 - y') + relu(-z) y'``. An infinite logit gives 0 when its
    target agrees exactly (``y' = 1`` for ``+inf``) and ``+inf`` otherwise.

    Equals PyTorch's ``F.binary_cross_entropy_with_logits(z, y', weight=w, reduction=r)``
    and, for ``"mean"``, Keras' ``BinaryCrossentropy(from_logits=True, label_smoothing=eps)``.
""",
    r"""    array
        Scalar for ``"mean"``/``"sum"``, the shape of ``logits`` for ``"none"``; dtype of
        ``logits`` (float16/bfloat16 are computed in float32 and cast back).
""",
    r"""    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> z = xp.asarray([[2.0, -1.0]])
    >>> y = xp.asarray([[1.0, 0.0]])
    >>> round(float(ls.binary_cross_entropy(z, y)), 12)
    0.220094849281
    >>> round(float(ls.binary_cross_entropy(z, y, epsilon=0.1)), 12)
    0.295094849281
""",
    parameters=_DOC_PARAMETERS,
    raises=_DOC_RAISES,
)

binary_cross_entropy_grad.__doc__ = loss_doc(
    r"""Analytic gradient of :func:`binary_cross_entropy` with respect to the logits.

    .. math:: \frac{\partial \ell}{\partial z} = \sigma(z) - y'

    per element, times its weight, divided by the number of elements for ``"mean"``.
    ``sigmoid(z)`` is formed from ``exp(-|z|)`` (no overflow), and the difference is
    taken as ``(1 - y') - t`` or ``t - y'`` with ``t = exp(-|z|)/(1 + exp(-|z|))``, so a
    saturated logit next to a matching target keeps its small residual. Equal to
    ``jax.grad`` / ``torch.autograd`` of :func:`binary_cross_entropy`.
""",
    r"""    array
        Same shape and dtype as ``logits``.
""",
    r"""    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> ls.binary_cross_entropy_grad(xp.asarray([0.0, 0.0]), xp.asarray([1, 0]), epsilon=0.2, reduction="sum")
    Array([-0.4,  0.4], dtype=array_api_strict.float64)
""",
    parameters=_DOC_PARAMETERS,
    raises=_DOC_RAISES,
)

binary_cross_entropy_with_grad.__doc__ = loss_doc(
    r"""Loss and gradient of :func:`binary_cross_entropy` together.

    Returns ``(binary_cross_entropy(...), binary_cross_entropy_grad(...))``; the smoothed
    targets and ``exp(-|z|)`` are formed once and shared.
""",
    r"""    loss, grad : tuple of arrays
""",
    r"""    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> loss, grad = ls.binary_cross_entropy_with_grad(xp.asarray([0.0]), xp.asarray([1.0]), epsilon=0.2)
    >>> round(float(loss), 12), grad  # log 2 at z = 0; sigmoid(0) - 0.9
    (0.69314718056, Array([-0.4], dtype=array_api_strict.float64))
""",
    parameters=_DOC_PARAMETERS,
    raises=_DOC_RAISES,
)
