"""PyTorch training adapter: smoothed cross-entropy whose backward is the analytic gradient.

:func:`cross_entropy` is a :class:`torch.autograd.Function`: the forward pass computes the
loss and the gradient ``p - q'`` together (:func:`labelsmooth.cross_entropy_with_grad`,
one softmax) and saves only that gradient; the backward pass multiplies it by the
incoming gradient. :class:`CrossEntropyLoss` is a drop-in replacement for
:class:`torch.nn.CrossEntropyLoss` (same arguments, same defaults, same values) with the
extra options of :func:`labelsmooth.cross_entropy` (``prior``, per-sample ``epsilon``,
``where``).

This module imports PyTorch; ``import labelsmooth`` does not import it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import _losses
from ._validation import check_epsilon, check_ignore_index, check_prior_kind, check_reduction

__all__ = ["CrossEntropyLoss", "cross_entropy"]

_ARRAY_OPTIONS = ("epsilon", "prior", "weight", "where")


class _AnalyticCrossEntropy(torch.autograd.Function):
    """Loss in ``forward``; ``backward`` is the saved analytic gradient times the cotangent."""

    @staticmethod
    def forward(ctx: Any, logits: Any, targets: Any, epsilon: Any, prior: Any, weight: Any,
                where: Any, axis: int, ignore_index: Any, reduction: str) -> Any:
        options = {"epsilon": epsilon, "prior": prior, "weight": weight, "where": where,
                   "axis": axis, "ignore_index": ignore_index, "reduction": reduction}
        grad = None
        if ctx.needs_input_grad[0]:
            loss, grad = _losses.cross_entropy_with_grad(logits, targets, **options)
        else:
            loss = _losses.cross_entropy(logits, targets, **options)
        # Derivatives for anything but the logits (probability targets, an array epsilon,
        # prior or weight that requires grad) come from autodiff, replayed only if asked.
        replay = any(ctx.needs_input_grad[1:6])
        inputs = (logits, targets, epsilon, prior, weight, where) if replay else ()
        ctx.tensor_slots = [isinstance(value, torch.Tensor) for value in inputs]
        ctx.constants = [None if is_tensor else value for value, is_tensor in zip(inputs, ctx.tensor_slots)]
        ctx.save_for_backward(grad, *[value for value in inputs if isinstance(value, torch.Tensor)])
        ctx.options = {"axis": axis, "ignore_index": ignore_index, "reduction": reduction}
        ctx.class_axis = axis % logits.ndim
        return loss

    @staticmethod
    def backward(ctx: Any, grad_output: Any) -> tuple[Any, ...]:
        grad, *saved = ctx.saved_tensors
        logits_grad = None
        if grad is not None:
            scale = grad_output
            if ctx.options["reduction"] == "none":
                # One incoming gradient per sample: put it back on the class axis.
                scale = grad_output.unsqueeze(ctx.class_axis)
            logits_grad = grad * scale
        other_grads: list[Any] = [None] * 5
        if ctx.tensor_slots:
            tensors = iter(saved)
            inputs = [next(tensors) if is_tensor else constant
                      for is_tensor, constant in zip(ctx.tensor_slots, ctx.constants)]
            other_grads = _replay_other_gradients(inputs, ctx.options, ctx.needs_input_grad[1:6], grad_output)
        return (logits_grad, *other_grads, None, None, None)


def _replay_other_gradients(inputs: list[Any], options: dict[str, Any], wanted: Any, grad_output: Any) -> list[Any]:
    """Autodiff gradients for targets, epsilon, prior and weight (``where`` has none)."""
    logits, *others = inputs
    with torch.enable_grad():
        leaves = [value.detach().requires_grad_() if need else value for value, need in zip(others, wanted)]
        epsilon, prior, weight, where = leaves[1:]
        loss = _losses.cross_entropy(logits.detach(), leaves[0], epsilon=epsilon, prior=prior,
                                     weight=weight, where=where, **options)
        grads = iter(torch.autograd.grad(loss, [leaf for leaf, need in zip(leaves, wanted) if need], grad_output))
    return [next(grads) if need else None for need in wanted]


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
    r"""Smoothed cross-entropy whose backward pass is the analytic ``p - q'``.

    .. math::

        H(q', p) = -\sum_k q'_k \log p_k, \qquad
        \frac{\partial H}{\partial z} = p - q', \qquad
        q' = (1 - \varepsilon)\, q + \varepsilon\, u

    (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision",
    section 7). Values, options (``axis=-1`` by default, as everywhere in labelsmooth)
    and validation are those of :func:`labelsmooth.cross_entropy`. Only the gradient
    with respect to ``logits`` is saved for the backward pass (one tensor of the logits'
    shape); for ``reduction="none"`` it is multiplied by each sample's incoming gradient.
    Probability targets and array ``epsilon`` / ``prior`` / ``weight`` that require grad
    are differentiated by autodiff of :func:`labelsmooth.cross_entropy`.

    Parameters
    ----------
    logits : torch.Tensor of real floating dtype
    targets : torch.Tensor
        Integer labels (``logits``' shape without ``axis``) or probability rows.
    epsilon, prior, axis, weight, ignore_index, where, reduction
        As in :func:`labelsmooth.cross_entropy`.

    Returns
    -------
    torch.Tensor
        Scalar for ``"mean"``/``"sum"``, batch-shaped for ``"none"``.

    Examples
    --------
    >>> import torch
    >>> from labelsmooth.torch import cross_entropy
    >>> z = torch.zeros(1, 2, requires_grad=True)
    >>> cross_entropy(z, torch.tensor([0]), epsilon=0.2).backward()
    >>> z.grad
    tensor([[-0.4000,  0.4000]])
    """
    return _AnalyticCrossEntropy.apply(logits, targets, epsilon, prior, weight, where,
                                       axis, ignore_index, reduction)


class CrossEntropyLoss(nn.Module):
    r"""Drop-in :class:`torch.nn.CrossEntropyLoss` with labelsmooth's options and analytic backward.

    .. math:: \ell = -\sum_k w_k\, q'_k \log p_k, \qquad
              q' = (1 - \varepsilon)\, q + \varepsilon\, u

    Same positional arguments, defaults and values as ``torch.nn.CrossEntropyLoss``:
    class axis 1 (``(N, C, d1, ...)``; a 1-D input is one sample), ``ignore_index=-100``
    (ignored for probability targets, as in PyTorch), ``reduction="mean"`` dividing by
    the summed weights of the counted samples. ``label_smoothing`` and ``epsilon`` name
    the same option (give one). Extra options: ``prior`` (None: uniform; ``"others"``;
    or a class prior), a per-sample ``epsilon`` tensor, a ``where`` mask of allowed
    classes (also accepted per call by :meth:`forward`) and ``axis``.
    Szegedy et al. (2016), section 7.

    Parameters
    ----------
    weight : torch.Tensor of shape (C,), optional
        Per-class weights (a buffer: it follows ``.to(device)``).
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float, default 0.0
    epsilon : float or torch.Tensor, optional
        Alias of ``label_smoothing``; a tensor broadcastable to the batch shape gives
        per-sample smoothing.
    prior : None, "others" or torch.Tensor, default None
    where : torch.Tensor of bool, optional
    axis : int, default 1

    Examples
    --------
    >>> import torch
    >>> from labelsmooth.torch import CrossEntropyLoss
    >>> loss = CrossEntropyLoss(label_smoothing=0.1)
    >>> z = torch.log(torch.tensor([[0.1, 0.1, 0.1, 0.36, 0.34]]))
    >>> round(loss(z, torch.tensor([3])).item(), 5)
    1.09965
    """

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        epsilon: Any = None,
        prior: Any = None,
        where: Any = None,
        axis: int = 1,
    ) -> None:
        super().__init__()
        if epsilon is not None and not (isinstance(label_smoothing, (int, float)) and label_smoothing == 0.0):
            msg = (f"give label_smoothing or epsilon, not both (they name the same option), "
                   f"got label_smoothing={label_smoothing!r} and epsilon={epsilon!r}")
            raise ValueError(msg)
        epsilon = label_smoothing if epsilon is None else epsilon
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.axis = axis
        tensors = {"weight": weight, "epsilon": epsilon, "prior": prior, "where": where}
        for name, value in tensors.items():
            if isinstance(value, torch.Tensor):
                self.register_buffer(name, value)
            else:
                setattr(self, name, value)
        # Static options are checked now rather than at the first batch.
        check_reduction(reduction)
        check_prior_kind(prior)
        check_ignore_index(ignore_index)
        if not isinstance(epsilon, torch.Tensor):
            check_epsilon(epsilon, None, ())

    @property
    def label_smoothing(self) -> Any:
        return self.epsilon

    def extra_repr(self) -> str:
        prior = self.prior if isinstance(self.prior, (str, type(None))) else "tensor"
        return (f"label_smoothing={self.epsilon!r}, prior={prior!r}, ignore_index={self.ignore_index}, "
                f"reduction={self.reduction!r}, axis={self.axis}")

    def forward(self, input: Any, target: Any, *, where: Any = None) -> Any:  # noqa: A002 (torch's names)
        """Loss of ``input`` (logits) against ``target`` (class indices or probabilities)."""
        axis = 0 if input.ndim == 1 else self.axis
        is_labels = not torch.is_floating_point(target)
        return cross_entropy(
            input, target, epsilon=self.epsilon, prior=self.prior, axis=axis,
            weight=self.weight, ignore_index=self.ignore_index if is_labels else None,
            where=self.where if where is None else where, reduction=self.reduction,
        )
