"""PyTorch training adapter: smoothed cross-entropy whose backward is the analytic gradient.

:func:`cross_entropy` is a :class:`torch.autograd.Function`: the forward pass computes the
loss and the gradient ``p - q'`` together (:func:`labelsmooth.cross_entropy_with_grad`,
one softmax) and saves that gradient; the backward pass multiplies it by the incoming
gradient. A backward pass that builds a graph (``create_graph=True``: gradient penalties,
Hessian-vector products) recomputes the gradient as a differentiable expression of the
inputs instead, so second derivatives are exact; the inputs are saved for it.
:class:`CrossEntropyLoss` is a drop-in replacement for :class:`torch.nn.CrossEntropyLoss`
(same arguments, same defaults, same values) with the extra options of
:func:`labelsmooth.cross_entropy` (``prior``, per-sample ``epsilon``, ``where``).

This module imports PyTorch; ``import labelsmooth`` does not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from . import _losses
from ._problem import AdapterOptions, complete_options, with_options
from ._validation import (
    as_python_scalar,
    check_epsilon,
    check_ignore_index,
    check_prior_kind,
    check_reduction,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["CrossEntropyLoss", "cross_entropy"]


class _AnalyticCrossEntropy(torch.autograd.Function):
    """Loss in ``forward``; ``backward`` is the saved analytic gradient times the cotangent.

    Under ``create_graph=True`` ``backward`` recomputes the gradients from the saved inputs
    as a graph instead, so that they can be differentiated again.
    """

    @staticmethod
    def forward(
        ctx: Any,
        logits: Any,
        targets: Any,
        epsilon: Any,
        prior: Any,
        weight: Any,
        where: Any,
        axis: int,
        ignore_index: Any,
        reduction: str,
    ) -> Any:
        options = {
            "epsilon": epsilon,
            "prior": prior,
            "weight": weight,
            "where": where,
            "axis": axis,
            "ignore_index": ignore_index,
            "reduction": reduction,
        }
        grad = None
        if ctx.needs_input_grad[0]:
            loss, grad = _losses.cross_entropy_with_grad(logits, targets, **options)
        else:
            loss = _losses.cross_entropy(logits, targets, **options)
        inputs = (logits, targets, epsilon, prior, weight, where)
        ctx.tensor_slots = [isinstance(value, torch.Tensor) for value in inputs]
        ctx.constants = [None if is_tensor else value for value, is_tensor in zip(inputs, ctx.tensor_slots)]
        ctx.save_for_backward(grad, *[value for value in inputs if isinstance(value, torch.Tensor)])
        ctx.options = {"axis": axis, "ignore_index": ignore_index, "reduction": reduction}
        return loss

    @staticmethod
    def backward(ctx: Any, grad_output: Any) -> tuple[Any, ...]:
        grad, *saved = ctx.saved_tensors
        tensors = iter(saved)
        inputs = [
            next(tensors) if is_tensor else constant for is_tensor, constant in zip(ctx.tensor_slots, ctx.constants)
        ]
        wanted = ctx.needs_input_grad[:6]
        if torch.is_grad_enabled():
            grads = _differentiable_gradients(inputs, ctx.options, wanted, grad_output)
        else:
            logits_grad = None if grad is None else grad * _on_class_axis(grad_output, inputs[0], ctx.options)
            others = _autodiff_gradients(inputs, ctx.options, (False, *wanted[1:]), grad_output, create_graph=False)
            grads = [logits_grad, *others[1:]]
        return (*grads, None, None, None)


def _on_class_axis(grad_output: Any, logits: Any, options: dict[str, Any]) -> Any:
    """The incoming gradient, broadcastable to the logits (per sample for ``"none"``)."""
    if options["reduction"] != "none":
        return grad_output
    return grad_output.unsqueeze(options["axis"] % logits.ndim)


def _plain_loss(inputs: list[Any], options: dict[str, Any]) -> Any:
    logits, targets, epsilon, prior, weight, where = inputs
    return _losses.cross_entropy(logits, targets, epsilon=epsilon, prior=prior, weight=weight, where=where, **options)


def _autodiff_gradients(
    inputs: list[Any], options: dict[str, Any], wanted: Any, grad_output: Any, *, create_graph: bool
) -> list[Any]:
    """Autodiff of :func:`labelsmooth.cross_entropy` with respect to the ``wanted`` inputs.

    Without ``create_graph`` the inputs are detached, so that no graph reaches back into
    the caller's; with it they are used as they are, so that the gradients can be
    differentiated again (with respect to every input and to ``grad_output``).
    """
    if not any(wanted):
        return [None] * len(wanted)
    if not create_graph:
        inputs = [_detached(value, need) for value, need in zip(inputs, wanted)]
    chosen = [value for value, need in zip(inputs, wanted) if need]
    with torch.enable_grad():
        loss = _plain_loss(inputs, options)
        if loss.requires_grad:
            grads = iter(
                torch.autograd.grad(loss, chosen, grad_output, create_graph=create_graph, materialize_grads=True)
            )
        else:
            # No wanted input reaches the loss (a prior with epsilon = 0): zero gradients.
            grads = iter([torch.zeros_like(value) for value in chosen])
    return [next(grads) if need else None for need in wanted]


def _detached(value: Any, need: bool) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    return value.detach().requires_grad_() if need else value.detach()


def _differentiable_gradients(inputs: list[Any], options: dict[str, Any], wanted: Any, grad_output: Any) -> list[Any]:
    """Every wanted gradient as a graph over the inputs and ``grad_output`` (``create_graph=True``).

    The logits' gradient is the analytic ``row_scale * (T p - c)`` recomputed by
    :func:`labelsmooth.cross_entropy_grad` on the saved inputs: its derivative is the
    exact Hessian ``row_scale * T * (diag(p) - p p^T)``. The other inputs' gradients come
    from autodiff of the loss, as a graph too.
    """
    grads = _autodiff_gradients(inputs, options, (False, *wanted[1:]), grad_output, create_graph=True)
    if wanted[0]:
        logits, targets, epsilon, prior, weight, where = inputs
        with torch.enable_grad():
            # Differentiating the analytic gradient needs only first derivatives of the
            # max-shifted softmax (autodiff of the loss would need its second ones).
            grad = _losses.cross_entropy_grad(
                logits, targets, epsilon=epsilon, prior=prior, weight=weight, where=where, **options
            )
            grads[0] = grad * _on_class_axis(grad_output, logits, options)
    return grads


@with_options(namespace=False)
def cross_entropy(logits: Any, targets: Any, /, **options: Unpack[AdapterOptions]) -> Any:
    r"""Smoothed cross-entropy whose backward pass is the analytic ``p - q'``.

    .. math::

        H(q', p) = -\sum_k q'_k \log p_k, \qquad
        \frac{\partial H}{\partial z} = p - q', \qquad
        q' = (1 - \varepsilon)\, q + \varepsilon\, u

    (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision",
    section 7). Values, options (``axis=-1`` by default, as everywhere in labelsmooth)
    and validation are those of :func:`labelsmooth.cross_entropy`; ``ignore_index`` needs
    integer targets (``ValueError`` otherwise). The gradient with respect to ``logits``
    is computed with the loss and saved (one tensor of the logits' shape, besides the
    inputs); the backward pass multiplies it by the incoming gradient, per sample for
    ``reduction="none"``. Probability targets and tensor ``epsilon`` / ``prior`` /
    ``weight`` that require grad are differentiated by autodiff of
    :func:`labelsmooth.cross_entropy`.

    Under ``create_graph=True`` (gradient penalties, Hessian-vector products) the
    backward pass recomputes the gradients as differentiable expressions of the inputs
    and of the incoming gradient, so second derivatives are exact: with respect to the
    logits, ``row_scale * T * (diag(p) - p p^T)`` per sample.

    Parameters
    ----------
    logits : torch.Tensor of real floating dtype
    targets : torch.Tensor
        Integer labels (``logits``' shape without ``axis``) or probability rows.
    epsilon : float or torch.Tensor, default 0.0
        As in :func:`labelsmooth.cross_entropy`; NumPy scalars are read as Python floats.
    prior, axis, weight, ignore_index, where, reduction
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
    values = complete_options(options, namespace=False)
    return _AnalyticCrossEntropy.apply(
        logits,
        targets,
        as_python_scalar(values["epsilon"]),
        *(values[name] for name in ("prior", "weight", "where", "axis", "ignore_index", "reduction")),
    )


class CrossEntropyLoss(nn.Module):
    r"""Drop-in :class:`torch.nn.CrossEntropyLoss` with labelsmooth's options and analytic backward.

    .. math:: \ell = -\sum_k w_k\, q'_k \log p_k, \qquad
              q' = (1 - \varepsilon)\, q + \varepsilon\, u

    Same positional arguments, defaults and values as ``torch.nn.CrossEntropyLoss``:
    class axis 1 (``(N, C, d1, ...)``; a 1-D input is one sample), ``ignore_index=-100``,
    ``reduction="mean"`` dividing by the summed weights of the counted samples. With
    probability targets, as in PyTorch, a negative ``ignore_index`` (the default) has no
    effect and a non-negative one is an error (``ValueError``; PyTorch raises
    ``RuntimeError``). ``label_smoothing`` and ``epsilon`` name the same option (give
    one). Extra options: ``prior`` (None: uniform; ``"others"``; or a class prior), a
    per-sample ``epsilon`` tensor, a ``where`` mask of allowed classes (also accepted per
    call by :meth:`forward`) and ``axis``. Second derivatives are exact, as for
    :func:`cross_entropy`. Szegedy et al. (2016), section 7.

    Parameters
    ----------
    weight : torch.Tensor of shape (C,), optional
        Per-class weights (a buffer: it follows ``.to(device)``).
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float, default 0.0
        NumPy scalars are read as Python floats.
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
        label_smoothing, epsilon = as_python_scalar(label_smoothing), as_python_scalar(epsilon)
        if epsilon is not None and not (isinstance(label_smoothing, (int, float)) and label_smoothing == 0.0):
            msg = (
                f"give label_smoothing or epsilon, not both (they name the same option), "
                f"got label_smoothing={label_smoothing!r} and epsilon={epsilon!r}"
            )
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
        return (
            f"label_smoothing={self.epsilon!r}, prior={prior!r}, ignore_index={self.ignore_index}, "
            f"reduction={self.reduction!r}, axis={self.axis}"
        )

    def forward(self, input: Any, target: Any, *, where: Any = None) -> Any:
        """Loss of ``input`` (logits) against ``target`` (class indices or probabilities)."""
        axis = 0 if input.ndim == 1 else self.axis
        return cross_entropy(
            input,
            target,
            epsilon=self.epsilon,
            prior=self.prior,
            axis=axis,
            weight=self.weight,
            ignore_index=_ignore_index_for(target, self.ignore_index),
            where=self.where if where is None else where,
            reduction=self.reduction,
        )


def _ignore_index_for(target: Any, ignore_index: Any) -> Any:
    """``ignore_index`` as PyTorch applies it: negative ones have no effect on probability targets."""
    if not torch.is_floating_point(target):
        return ignore_index
    index = check_ignore_index(ignore_index)
    if index is not None and index >= 0:
        msg = (
            f"ignore_index needs integer targets, got probability targets and ignore_index={ignore_index} "
            f"(PyTorch accepts only a negative ignore_index with them, which has no effect)"
        )
        raise ValueError(msg)
    return None
