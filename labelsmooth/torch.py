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

from . import _torch_autograd
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
    return _torch_autograd.cross_entropy(logits, targets, complete_options(options, namespace=False))


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
