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

from . import _linear, _torch_autograd
from ._torch_vocab_parallel import vocab_parallel_cross_entropy
from ._validation import as_python_scalar, check_epsilon, check_ignore_index, check_static_options

if TYPE_CHECKING:
    from .typing import Prior, Reduction

__all__ = [
    "CrossEntropyLoss",
    "LinearCrossEntropyLoss",
    "cross_entropy",
    "linear_cross_entropy",
    "vocab_parallel_cross_entropy",
]


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
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> torch.Tensor:
    options = {
        "epsilon": _one_smoothing(label_smoothing, epsilon),
        "prior": prior,
        "weight": weight,
        "where": where,
        "axis": (0 if input.ndim == 1 else 1) if axis is None else axis,
        "ignore_index": _ignore_index_for(target, ignore_index),
        "reduction": _legacy_reduction(size_average, reduce, reduction),
        "z_loss": z_loss,
        "softcap": softcap,
    }
    return _torch_autograd.cross_entropy(input, target, options)


cross_entropy.__doc__ = r"""Drop-in :func:`torch.nn.functional.cross_entropy`, backward the analytic ``p - q'``.

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
    allowed classes, ``axis``, ``z_loss`` and ``softcap``; validation is that of
    :func:`labelsmooth.cross_entropy`.

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
    z_loss, softcap : float, optional
        As in :func:`labelsmooth.cross_entropy` (Liger's ``lse_square_scale`` and
        ``softcap``).

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
    call by :meth:`forward`), ``axis``, ``z_loss`` and ``softcap`` (as in
    :func:`labelsmooth.cross_entropy`). Second derivatives are exact, as for
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
    z_loss : float, default 0.0
        Coefficient of the z-loss ``z_loss * lse^2`` (Liger's ``lse_square_scale``).
    softcap : float, optional
        Logits soft-capped to ``softcap * tanh(z / softcap)`` first.

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
        z_loss: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        # Static options are checked now rather than at the first batch.
        static = check_static_options(self.reduction, prior, ignore_index, z_loss, softcap)
        self.z_loss, self.softcap = static.z_loss, static.softcap
        self.axis = axis
        for name, value in {"weight": weight, "prior": prior, "where": where}.items():
            if isinstance(value, torch.Tensor):
                self.register_buffer(name, value)
            else:
                setattr(self, name, value)
        self.label_smoothing = _one_smoothing(label_smoothing, epsilon)

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
            f"reduction={self.reduction!r}, axis={self.axis}, z_loss={self.z_loss!r}, softcap={self.softcap!r}"
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
            z_loss=self.z_loss,
            softcap=self.softcap,
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


# --- the linear layer and its loss together ---------------------------------------------


class _LinearCrossEntropy(torch.autograd.Function):
    """The loss of ``input @ weight.T + bias`` in ``forward``; ``backward`` from saved or recomputed gradients.

    ``"mean"`` and ``"sum"``: ``forward`` computes the three gradients with the loss (block
    by block, no ``N x K`` tensor kept) and saves them; ``backward`` scales them by the
    incoming gradient. ``"none"``: ``backward`` recomputes them block by block, each row's
    logits' gradient scaled by its own incoming gradient.
    """

    @staticmethod
    def forward(ctx: Any, input: Any, weight: Any, bias: Any, target: Any, options: dict) -> Any:
        arrays = (input.detach(), weight.detach(), target)
        detached = {**options, "bias": None if bias is None else bias.detach()}
        ctx.options, ctx.has_bias = detached, bias is not None
        if options["reduction"] == "none":
            ctx.save_for_backward(*arrays[:2], target, detached["bias"])
            return _linear.evaluate(*arrays, detached, with_grad=False)[0]
        loss, ctx.gradients = _linear.evaluate(*arrays, detached, with_grad=True)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: Any) -> tuple[Any, ...]:
        if ctx.options["reduction"] == "none":
            input, weight, target, bias = ctx.saved_tensors
            options = {**ctx.options, "bias": bias}
            _, grads = _linear.evaluate(input, weight, target, options, with_grad=True, row_cotangent=grad_output)
        else:
            grads, ctx.gradients = ctx.gradients, None
            if grads is None:
                msg = "the gradients of LinearCrossEntropyLoss were used by an earlier backward pass"
                raise RuntimeError(msg)
            if not (grad_output.numel() == 1 and grad_output.item() == 1.0):
                grads = tuple(None if g is None else g * grad_output for g in grads)
        grad_input, grad_weight, grad_bias = grads
        wanted = ctx.needs_input_grad
        return (
            grad_input if wanted[0] else None,
            grad_weight if wanted[1] else None,
            grad_bias if ctx.has_bias and wanted[2] else None,
            None,
            None,
        )


def linear_cross_entropy(
    input: Any,
    weight: Any,
    target: Any,
    bias: Any = None,
    *,
    class_weight: Any = None,
    ignore_index: int | None = -100,
    reduction: str = "mean",
    label_smoothing: Any = 0.0,
    prior: Any = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
) -> Any:
    r"""Smoothed cross-entropy of ``F.linear(input, weight, bias)``, never holding the whole logits.

    .. math::

        z = x W^\top + b, \qquad \ell = -\sum_k w_k\, q'_k \log \operatorname{softmax}(z)_k,
        \qquad q' = (1 - \varepsilon)\, e_y + \varepsilon\, u

    Equal to ``F.cross_entropy(F.linear(input, weight, bias), target, weight=class_weight,
    ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)`` with
    features last (``input`` of shape ``(..., d)``, ``target`` of shape ``input.shape[:-1]``),
    computed ``chunk_size`` rows at a time by :func:`labelsmooth.linear_cross_entropy`.
    The backward pass gives the gradients of ``input``, ``weight`` and ``bias`` without any
    ``N x K`` tensor: for ``"mean"`` and ``"sum"`` they are computed with the loss and saved
    (``N d + K d + K`` numbers), for ``"none"`` recomputed block by block in the backward
    pass. First derivatives only (a second backward through it is an error).

    Parameters
    ----------
    input : torch.Tensor of shape (..., d)
    weight : torch.Tensor of shape (K, d)
        The classifier, as ``nn.Linear(d, K).weight``.
    target : torch.Tensor of integer dtype, shape ``input.shape[:-1]``
    bias : torch.Tensor of shape (K,), optional
    class_weight : torch.Tensor of shape (K,), optional
        PyTorch's ``weight`` of ``F.cross_entropy``.
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float or torch.Tensor of the batch shape, default 0.0
    prior, z_loss, softcap, chunk_size
        As in :func:`labelsmooth.linear_cross_entropy`.

    Returns
    -------
    torch.Tensor
        Scalar for ``"mean"``/``"sum"``, ``input.shape[:-1]`` for ``"none"``.

    Examples
    --------
    >>> import torch
    >>> from labelsmooth.torch import linear_cross_entropy
    >>> x = torch.tensor([[1.0, 0.5]], requires_grad=True)
    >>> W = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    >>> loss = linear_cross_entropy(x, W, torch.tensor([0]), label_smoothing=0.2)
    >>> round(loss.item(), 6)
    0.524077
    >>> loss.backward()
    >>> W.grad
    tensor([[-0.2775, -0.1388],
            [ 0.2775,  0.1388]])
    """
    options = {
        "epsilon": as_python_scalar(label_smoothing),
        "prior": prior,
        "weight": class_weight,
        "ignore_index": ignore_index,
        "reduction": reduction,
        "z_loss": z_loss,
        "softcap": softcap,
        "chunk_size": chunk_size,
        "xp": None,
    }
    return _LinearCrossEntropy.apply(input, weight, bias, target, options)


class LinearCrossEntropyLoss(nn.Module):
    r"""The last linear layer and the smoothed cross-entropy in one module, without the ``N x K`` logits.

    .. math::

        z = x W^\top + b, \qquad \ell = -\sum_k w_k\, q'_k \log \operatorname{softmax}(z)_k,
        \qquad q' = (1 - \varepsilon)\, e_y + \varepsilon\, u

    ``loss(input, weight, target, bias)`` is :func:`linear_cross_entropy`: the value of
    ``nn.CrossEntropyLoss(weight, ignore_index=..., reduction=..., label_smoothing=...)``
    of ``F.linear(input, weight, bias)`` with features last, computed block by block and
    differentiated analytically. The arguments of :meth:`forward` follow
    :func:`torch.nn.functional.linear`'s ``(input, weight, bias)`` with the target third
    (Liger's ``LigerFusedLinearCrossEntropyLoss`` takes ``(weight, input, target, bias)``).

    Parameters
    ----------
    label_smoothing : float, default 0.0
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}, default "mean"
    weight : torch.Tensor of shape (K,), optional
        Per-class weights (a buffer) -- not the classifier, which :meth:`forward` takes.
    z_loss : float, default 0.0
    softcap : float, optional
    chunk_size : int, optional
        Rows per block (default: :func:`labelsmooth.linear_cross_entropy`'s).

    Examples
    --------
    >>> import torch
    >>> from labelsmooth.torch import LinearCrossEntropyLoss
    >>> layer = torch.nn.Linear(4, 10)
    >>> x, y = torch.randn(6, 4), torch.randint(0, 10, (6,))
    >>> loss = LinearCrossEntropyLoss(label_smoothing=0.1)(x, layer.weight, y, layer.bias)
    >>> expected = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(layer(x), y)
    >>> bool(torch.allclose(loss, expected))
    True
    """

    def __init__(
        self,
        label_smoothing: Any = 0.0,
        ignore_index: int = -100,
        reduction: str = "mean",
        weight: Any = None,
        z_loss: float = 0.0,
        softcap: float | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.label_smoothing = as_python_scalar(label_smoothing)
        static = check_static_options(reduction, None, ignore_index, z_loss, softcap)
        self.ignore_index, self.reduction = static.ignore_index, static.reduction
        if isinstance(weight, torch.Tensor):
            self.register_buffer("weight", weight)
        else:
            self.weight = weight
        self.z_loss, self.softcap, self.chunk_size = z_loss, softcap, chunk_size
        if not isinstance(self.label_smoothing, torch.Tensor):
            check_epsilon(self.label_smoothing, None, ())

    def extra_repr(self) -> str:
        return (
            f"label_smoothing={self.label_smoothing!r}, ignore_index={self.ignore_index}, "
            f"reduction={self.reduction!r}, z_loss={self.z_loss!r}, softcap={self.softcap!r}, "
            f"chunk_size={self.chunk_size!r}"
        )

    def forward(self, input: Any, weight: Any, target: Any, bias: Any = None) -> Any:
        """Loss of ``F.linear(input, weight, bias)`` (features last) against the labels ``target``."""
        return linear_cross_entropy(
            input,
            weight,
            target,
            bias,
            class_weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
            chunk_size=self.chunk_size,
        )
