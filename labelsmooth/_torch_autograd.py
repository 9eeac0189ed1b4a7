"""PyTorch autograd of the smoothed cross-entropy: one evaluation forward, the analytic gradient back.

:class:`AnalyticLoss` is a :class:`torch.autograd.Function`: its forward pass runs a loss
(the cross-entropy, the KL divergence, the binary cross-entropy) and its gradient together
(one kernel, the fast one where it applies: inside ``forward`` autograd records nothing)
and saves that gradient; the backward pass multiplies it by the incoming gradient. A
backward pass that builds a graph (``create_graph=True``: gradient penalties,
Hessian-vector products) recomputes the gradient as a differentiable expression of the
inputs instead, so second derivatives are exact; the inputs are saved for it
(references, no copies).

Under ``torch.compile`` and on meta tensors the evaluation is the custom operator
``labelsmooth::cross_entropy`` (a fake implementation gives the output shapes), with the
saved gradient as its backward. Under ``torch.autocast`` the loss is computed and returned
in float32, as PyTorch's ``cross_entropy`` is.

This module imports PyTorch; it is imported only for tensors, by the public functions and
by ``labelsmooth.torch``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ._assembly import solve
from ._backend import torch_autocast_enabled
from ._problem import complete_options, prepare
from ._validation import as_python_scalar

__all__ = [
    "INPUTS",
    "AnalyticLoss",
    "LossSpec",
    "apply",
    "autocast_inputs",
    "cross_entropy",
    "cross_entropy_evaluation",
    "loss",
]

INPUTS = ("epsilon", "prior", "weight", "where", "sample_weight")


@dataclass(frozen=True)
class LossSpec:
    """What :class:`AnalyticLoss` needs of one loss function."""

    # evaluate(logits, targets, options, with_grad) -> (loss, gradient or None); the
    # options are the arguments named by ``names`` (which autodiff may differentiate) and
    # the static ones.
    evaluate: Callable[[Any, Any, dict[str, Any], bool], tuple[Any, Any]]
    names: tuple[str, ...]
    static: dict[str, Any]
    per_row: bool = True  # "none" gives one loss a row of the class axis (else one an element)


def cross_entropy_evaluation(logits: Any, targets: Any, options: dict[str, Any], with_grad: bool) -> tuple[Any, Any]:
    return solve(prepare(logits, targets, **options), with_grad=with_grad)


def apply(logits: Any, targets: Any, options: dict[str, Any], spec: LossSpec) -> Any:
    """``spec``'s loss of tensors, differentiated by its analytic gradient."""
    values = [options[name] for name in spec.names]
    return AnalyticLoss.apply(logits, targets, *values, spec)


def loss(
    logits: Any, targets: Any, options: dict[str, Any], evaluate: Callable, names: tuple[str, ...], *, per_row: bool
) -> Any:
    """A loss of tensors given every option: under autocast in float32, differentiated analytically."""
    logits, targets = autocast_inputs(logits, targets)
    static = {name: value for name, value in options.items() if name not in names}
    return apply(logits, targets, options, LossSpec(evaluate, names, static, per_row))


def _options(spec: LossSpec, values: list[Any]) -> dict[str, Any]:
    return {**dict(zip(spec.names, values)), **spec.static}


class AnalyticLoss(torch.autograd.Function):
    """Loss in ``forward``; ``backward`` is the saved analytic gradient times the cotangent.

    Under ``create_graph=True`` ``backward`` recomputes the gradients from the saved inputs
    as a graph instead, so that they can be differentiated again.
    """

    @staticmethod
    def forward(ctx: Any, logits: Any, targets: Any, *arguments: Any) -> Any:
        *values, spec = arguments
        loss, grad = spec.evaluate(logits, targets, _options(spec, values), ctx.needs_input_grad[0])
        inputs = [logits, targets, *values]
        ctx.tensor_slots = [isinstance(value, torch.Tensor) for value in inputs]
        ctx.constants = [None if is_tensor else value for value, is_tensor in zip(inputs, ctx.tensor_slots)]
        ctx.save_for_backward(*[value for value in inputs if isinstance(value, torch.Tensor)])
        # Kept on ctx rather than saved, so that the backward pass can hand this very tensor
        # on as the gradient (scaled in place) instead of allocating another one.
        ctx.gradient = grad
        ctx.spec = spec
        return loss

    @staticmethod
    def backward(ctx: Any, grad_output: Any) -> tuple[Any, ...]:
        grad, ctx.gradient = ctx.gradient, None
        tensors = iter(ctx.saved_tensors)
        inputs = [
            next(tensors) if is_tensor else constant for is_tensor, constant in zip(ctx.tensor_slots, ctx.constants)
        ]
        spec = ctx.spec
        wanted = ctx.needs_input_grad[: len(inputs)]
        if torch.is_grad_enabled():
            grads = _differentiable_gradients(inputs, spec, wanted, grad_output)
        else:
            if grad is None and wanted[0]:
                # A second backward pass (retain_graph=True): the first one used the gradient.
                _, grad = _loss(inputs, spec, with_grad=True)
            logits_grad = None if grad is None else _scaled(grad, _broadcast_cotangent(grad_output, inputs[0], spec))
            others = _autodiff_gradients(inputs, spec, (False, *wanted[1:]), grad_output, create_graph=False)
            grads = [logits_grad, *others[1:]]
        return (*grads, None)


def _scaled(grad: Any, cotangent: Any) -> Any:
    """``grad * cotangent``, written into ``grad`` (which nothing else holds by now)."""
    if cotangent.device.type == "cpu" and cotangent.numel() == 1 and cotangent.item() == 1.0:
        return grad  # the usual loss.backward(): nothing to scale
    return grad.mul_(cotangent)


def _broadcast_cotangent(grad_output: Any, logits: Any, spec: LossSpec) -> Any:
    """The incoming gradient, broadcastable to the logits (per row for ``"none"``)."""
    if spec.static["reduction"] != "none" or not spec.per_row:
        return grad_output
    return grad_output.unsqueeze(spec.static["axis"] % logits.ndim)


def _loss(inputs: list[Any], spec: LossSpec, with_grad: bool) -> tuple[Any, Any]:
    logits, targets, *values = inputs
    return spec.evaluate(logits, targets, _options(spec, values), with_grad)


def _autodiff_gradients(
    inputs: list[Any], spec: LossSpec, wanted: Any, grad_output: Any, *, create_graph: bool
) -> list[Any]:
    """Autodiff of the loss (the array-API kernel) with respect to the ``wanted`` inputs.

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
        loss, _ = _loss(inputs, spec, with_grad=False)
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


def _differentiable_gradients(inputs: list[Any], spec: LossSpec, wanted: Any, grad_output: Any) -> list[Any]:
    """Every wanted gradient as a graph over the inputs and ``grad_output`` (``create_graph=True``).

    The logits' gradient is the analytic one (for the cross-entropy ``row_scale * (T p - c)``)
    recomputed on the saved inputs: its derivative is the exact Hessian (``row_scale * T *
    (diag(p) - p p^T)``). The other inputs' gradients come from autodiff of the loss, as a
    graph too.
    """
    grads = _autodiff_gradients(inputs, spec, (False, *wanted[1:]), grad_output, create_graph=True)
    if wanted[0]:
        with torch.enable_grad():
            # Differentiating the analytic gradient needs only first derivatives of the
            # max-shifted softmax (autodiff of the loss would need its second ones).
            _, grad = _loss(inputs, spec, with_grad=True)
            grads[0] = grad * _broadcast_cotangent(grad_output, inputs[0], spec)
    return grads


def cross_entropy(logits: Any, targets: Any, options: dict[str, Any]) -> Any:
    """The smoothed cross-entropy of tensors, differentiated by the analytic gradient."""
    values = complete_options(options)
    values["epsilon"] = as_python_scalar(values["epsilon"])
    logits, targets = autocast_inputs(logits, targets)
    static = {name: value for name, value in values.items() if name not in INPUTS}
    if torch.compiler.is_compiling() or logits.device.type == "meta":
        return _operator_loss(logits, targets, [values[name] for name in INPUTS], static)
    return apply(logits, targets, values, LossSpec(cross_entropy_evaluation, INPUTS, static))


def autocast_inputs(logits: Any, targets: Any) -> tuple[Any, Any]:
    """Under autocast, half-precision logits (and probability targets) in float32, as PyTorch's loss."""
    if logits.dtype not in (torch.float16, torch.bfloat16) or not torch_autocast_enabled(logits):
        return logits, targets
    if torch.is_floating_point(targets):
        targets = targets.float()
    return logits.float(), targets


# --- the custom operator (torch.compile, meta tensors) ------------------------------------


def _operator_loss(logits: Any, targets: Any, arguments: list[Any], static: dict[str, Any]) -> Any:
    epsilon, prior, weight, where, sample_weight = arguments
    for name, value in zip(INPUTS, arguments):
        if isinstance(value, torch.Tensor) and value.requires_grad and name != "where":
            msg = (
                f"under torch.compile the smoothed cross-entropy is differentiated with respect to the logits "
                f"only, got {name} that requires grad (call it outside torch.compile for that gradient)"
            )
            raise ValueError(msg)
    loss, _ = _smoothed_cross_entropy(
        logits,
        targets,
        epsilon if isinstance(epsilon, float) else 0.0,
        epsilon if isinstance(epsilon, torch.Tensor) else None,
        prior if isinstance(prior, str) else "",
        prior if isinstance(prior, torch.Tensor) else None,
        weight,
        where,
        sample_weight,
        static["axis"],
        static["ignore_index"],
        static["reduction"],
        static["z_loss"],
        static["softcap"],
        logits.requires_grad and torch.is_grad_enabled(),
    )
    return loss


@torch.library.custom_op("labelsmooth::cross_entropy", mutates_args=())
def _smoothed_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    epsilon: float,
    epsilon_rows: torch.Tensor | None,
    prior_kind: str,
    prior: torch.Tensor | None,
    weight: torch.Tensor | None,
    where: torch.Tensor | None,
    sample_weight: torch.Tensor | None,
    axis: int,
    ignore_index: int | None,
    reduction: str,
    z_loss: float,
    softcap: float | None,
    with_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, gradient)``; the gradient is an empty tensor unless ``with_grad``."""
    options = {
        "epsilon": epsilon if epsilon_rows is None else epsilon_rows,
        "prior": prior_kind or prior,
        "weight": weight,
        "where": where,
        "sample_weight": sample_weight,
        "axis": axis,
        "ignore_index": ignore_index,
        "reduction": reduction,
        "z_loss": z_loss,
        "softcap": softcap,
    }
    loss, grad = cross_entropy_evaluation(logits, targets, options, with_grad)
    return loss, grad if with_grad else logits.new_empty(0)


@_smoothed_cross_entropy.register_fake
def _(
    logits: Any,
    targets: Any,
    epsilon: Any,
    epsilon_rows: Any,
    prior_kind: Any,
    prior: Any,
    weight: Any,
    where: Any,
    sample_weight: Any,
    axis: int,
    ignore_index: Any,
    reduction: str,
    z_loss: float,
    softcap: Any,
    with_grad: bool,
) -> tuple[Any, Any]:
    batch = [size for dim, size in enumerate(logits.shape) if dim != axis % logits.ndim]
    loss = logits.new_empty(batch if reduction == "none" else ())
    return loss, torch.empty_like(logits) if with_grad else logits.new_empty(0)


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    ctx.save_for_backward(output[1])
    ctx.spec = LossSpec(cross_entropy_evaluation, (), {"axis": inputs[9], "reduction": inputs[11]})


def _operator_backward(ctx: Any, grad_loss: Any, _grad_of_gradient: Any) -> tuple[Any, ...]:
    (grad,) = ctx.saved_tensors
    return (grad * _broadcast_cotangent(grad_loss, grad, ctx.spec), *[None] * 14)


_smoothed_cross_entropy.register_autograd(_operator_backward, setup_context=_setup_context)
