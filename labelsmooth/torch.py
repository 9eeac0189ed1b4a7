"""PyTorch training adapter: smoothed cross-entropy whose backward is the analytic gradient.

:func:`cross_entropy` and :class:`CrossEntropyLoss` are drop-in replacements for
:func:`torch.nn.functional.cross_entropy` and :class:`torch.nn.CrossEntropyLoss` (same
arguments in the same order, same defaults, same values) with the extra options of
:func:`labelsmooth.cross_entropy` (``prior``, per-sample ``epsilon``, ``where``). The
forward pass computes the loss and the gradient ``p - q'`` together (one kernel) and saves
that gradient; the backward pass multiplies it by the incoming gradient. A backward pass
that builds a graph (``create_graph=True``: gradient penalties, Hessian-vector products)
recomputes the gradient as a differentiable expression of the inputs instead, so second
derivatives are exact. Under ``torch.compile`` (``fullgraph=True`` included) and on meta
tensors the loss is the custom operator ``labelsmooth::cross_entropy``; under
``torch.autocast`` it is computed and returned in float32, as PyTorch's. The plain
:func:`labelsmooth.cross_entropy` on tensors that require grad uses the same autograd
function, with labelsmooth's defaults (``axis=-1``).

This module imports PyTorch; ``import labelsmooth`` does not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from . import _torch_autograd
from ._validation import (
    as_python_scalar,
    check_epsilon,
    check_ignore_index,
    check_prior_kind,
    check_reduction,
)

if TYPE_CHECKING:
    from .typing import Prior, Reduction

__all__ = ["CrossEntropyLoss", "cross_entropy"]


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: Any = None,
    ignore_index: int = -100,
    reduce: Any = None,
    reduction: Reduction = "mean",
    label_smoothing: Any = 0.0,
    *,
    epsilon: Any = None,
    prior: Prior = None,
    where: torch.Tensor | None = None,
    axis: int | None = None,
) -> torch.Tensor:
    r"""Drop-in :func:`torch.nn.functional.cross_entropy` whose backward pass is the analytic ``p - q'``.

    .. math::

        H(q', p) = -\sum_k q'_k \log p_k, \qquad
        \frac{\partial H}{\partial z} = p - q', \qquad
        q' = (1 - \varepsilon)\, q + \varepsilon\, u

    (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision",
    section 7). Same positional arguments, defaults and values as PyTorch's function:
    the class axis is 1 (0 for a 1-D input), ``ignore_index=-100``, ``reduction="mean"``
    dividing by the summed weights of the counted samples; the legacy ``size_average`` and
    ``reduce`` are read as PyTorch reads them. With probability targets a negative
    ``ignore_index`` (the default) has no effect and a non-negative one is a
    ``ValueError`` (PyTorch raises ``RuntimeError``). ``label_smoothing`` and ``epsilon``
    name the same option (give one). Extra options: ``prior`` (None: uniform;
    ``"others"``; or a class prior), a per-sample ``epsilon`` tensor, a ``where`` mask of
    allowed classes and ``axis``; validation is that of :func:`labelsmooth.cross_entropy`.

    The backward pass is the gradient saved with the loss (exact second derivatives under
    ``create_graph=True``), as described in this module's introduction; under
    ``torch.compile`` the loss is a custom operator, under ``torch.autocast`` float32.

    Parameters
    ----------
    input : torch.Tensor of real floating dtype (logits, classes along ``axis``)
    target : torch.Tensor
        Integer labels (``input``'s shape without ``axis``) or probability rows.
    weight : torch.Tensor of shape (C,), optional
    size_average, reduce : bool, optional
        Deprecated in PyTorch; when given they set ``reduction`` as there.
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing, epsilon : float or torch.Tensor, default 0.0
        NumPy scalars are read as Python floats; a tensor ``epsilon`` broadcastable to the
        batch shape gives per-sample smoothing.
    prior : None, "others" or torch.Tensor, default None
    where : torch.Tensor of bool, optional
    axis : int, optional
        The class axis; default 1 (0 for a 1-D input).

    Returns
    -------
    torch.Tensor
        Scalar for ``"mean"``/``"sum"``, batch-shaped for ``"none"``.

    Examples
    --------
    >>> import torch
    >>> from labelsmooth.torch import cross_entropy
    >>> z = torch.zeros(1, 2, requires_grad=True)
    >>> cross_entropy(z, torch.tensor([0]), label_smoothing=0.2).backward()
    >>> z.grad
    tensor([[-0.4000,  0.4000]])
    """
    options = {
        "epsilon": _one_smoothing(label_smoothing, epsilon),
        "prior": prior,
        "weight": weight,
        "where": where,
        "axis": (0 if input.ndim == 1 else 1) if axis is None else axis,
        "ignore_index": _ignore_index_for(target, ignore_index),
        "reduction": _legacy_reduction(size_average, reduce, reduction),
    }
    return _torch_autograd.cross_entropy(input, target, options)


def _one_smoothing(label_smoothing: Any, epsilon: Any) -> Any:
    """The smoothing of ``label_smoothing`` or ``epsilon``, which name the same option."""
    label_smoothing, epsilon = as_python_scalar(label_smoothing), as_python_scalar(epsilon)
    if epsilon is None:
        return label_smoothing
    if not (isinstance(label_smoothing, (int, float)) and label_smoothing == 0.0):
        msg = (
            f"give label_smoothing or epsilon, not both (they name the same option), "
            f"got label_smoothing={label_smoothing!r} and epsilon={epsilon!r}"
        )
        raise ValueError(msg)
    return epsilon


def _legacy_reduction(size_average: Any, reduce: Any, reduction: Reduction) -> Reduction:
    """PyTorch's reading of the deprecated ``size_average`` and ``reduce`` (with its warning)."""
    if size_average is None and reduce is None:
        return reduction
    return cast("Reduction", torch.nn._reduction.legacy_get_string(size_average, reduce))


class CrossEntropyLoss(nn.Module):
    r"""Drop-in :class:`torch.nn.CrossEntropyLoss` with labelsmooth's options and analytic backward.

    .. math:: \ell = -\sum_k w_k\, q'_k \log p_k, \qquad
              q' = (1 - \varepsilon)\, q + \varepsilon\, u

    Same positional arguments (``weight, size_average, ignore_index, reduce, reduction,
    label_smoothing``), defaults and values as ``torch.nn.CrossEntropyLoss``: class axis 1
    (``(N, C, d1, ...)``; a 1-D input is one sample), ``ignore_index=-100``,
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
    size_average, reduce : bool, optional
        Deprecated in PyTorch; when given they set ``reduction`` as there.
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float, default 0.0
        NumPy scalars are read as Python floats. An attribute too: assigning
        ``loss.label_smoothing = 0.05`` changes it (to anneal it between steps).
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

    # The options' types (weight, prior and where are buffers when they are tensors).
    weight: torch.Tensor | None
    prior: Prior
    where: torch.Tensor | None
    reduction: Reduction

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average: Any = None,
        ignore_index: int = -100,
        reduce: Any = None,
        reduction: Reduction = "mean",
        label_smoothing: Any = 0.0,
        *,
        epsilon: Any = None,
        prior: Prior = None,
        where: torch.Tensor | None = None,
        axis: int = 1,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        self.axis = axis
        for name, value in {"weight": weight, "prior": prior, "where": where}.items():
            if isinstance(value, torch.Tensor):
                self.register_buffer(name, value)
            else:
                setattr(self, name, value)
        self.label_smoothing = _one_smoothing(label_smoothing, epsilon)
        # Static options are checked now rather than at the first batch.
        check_reduction(self.reduction)
        check_prior_kind(prior)
        check_ignore_index(ignore_index)

    @property
    def label_smoothing(self) -> Any:
        """The smoothing ``epsilon``; assign it to change it (to anneal it, for instance)."""
        return self.epsilon

    @label_smoothing.setter
    def label_smoothing(self, value: Any) -> None:
        value = as_python_scalar(value)
        if isinstance(value, torch.Tensor):
            # A per-sample tensor is a buffer, so that it follows .to(device).
            self.__dict__.pop("epsilon", None)
            self.register_buffer("epsilon", value)
            return
        check_epsilon(value, None, ())
        self._buffers.pop("epsilon", None)
        self.epsilon = value

    def extra_repr(self) -> str:
        prior = self.prior if isinstance(self.prior, (str, type(None))) else "tensor"
        return (
            f"label_smoothing={self.epsilon!r}, prior={prior!r}, ignore_index={self.ignore_index}, "
            f"reduction={self.reduction!r}, axis={self.axis}"
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor, *, where: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of ``input`` (logits) against ``target`` (class indices or probabilities)."""
        return cross_entropy(
            input,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            epsilon=self.epsilon,
            prior=self.prior,
            where=self.where if where is None else where,
            axis=0 if input.ndim == 1 else self.axis,
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
