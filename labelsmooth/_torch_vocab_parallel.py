"""The vocabulary-parallel smoothed cross-entropy over ``torch.distributed``.

Each rank of the process group holds the logits of one contiguous block of classes (rank
order is block order); the collectives of ``_vocab_parallel`` are ``all_reduce`` calls, so
any backend works (gloo on CPU tensors, NCCL on CUDA tensors). This module imports
PyTorch; ``labelsmooth.torch`` exports its function.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from ._problem import complete_options, with_options
from ._vocab_parallel import OPTIONS, Shard, evaluate

__all__ = ["vocab_parallel_cross_entropy"]


@with_options(namespace=False, only=OPTIONS)
def vocab_parallel_cross_entropy(logits_shard: Any, targets: Any, /, *, group: Any = None, **options: Any) -> Any:
    r"""The smoothed cross-entropy of logits whose class axis is split over the ranks of ``group``.

    .. math::

        \ell_i = -\sum_{k=1}^{K} w_k\, q'_{ik} \log p_{ik} + z\_loss \cdot \mathrm{lse}_i^2,
        \qquad q' = (1 - \varepsilon)\, q + \varepsilon\, u, \qquad
        p_i = \operatorname{softmax}(z_i) \text{ over all } K \text{ classes}

    Rank ``r`` holds ``logits_shard`` of shape ``(..., K_r)``: the logits of classes
    ``K_0 + ... + K_{r-1}`` to ``K_0 + ... + K_r - 1`` for every sample (the ranks of
    ``group`` in order; ``K = sum_r K_r``), and the same ``targets`` (global class ids,
    the batch shape). Every rank returns the loss :func:`labelsmooth.cross_entropy`
    gives for the concatenated logits, with the same options and meanings: the smoothing
    is over the *global* vocabulary (``eps / K`` per class, or ``eps / (K - 1)`` over the
    other classes for ``prior="others"``, wherever the true class lives). ``weight`` and
    an array ``prior`` are global ``(K,)`` tensors, the same on every rank. The statistics
    merged across ranks are the row maxima (``MAX``), then the sums of the exponentials,
    the target logit and the weighted distances (``SUM``): no rank forms a
    log-probability, so nothing underflows to ``log 0``. Megatron-LM's
    ``vocab_parallel_cross_entropy`` takes the smoothing term over the local shard (its
    size and mean) instead, which differs from the unsharded loss whenever the shards
    differ.

    ``loss.backward()`` gives each rank its block of the unsharded gradient (the analytic
    one, saved by the forward pass). The backward pass is not differentiable again.

    Parameters
    ----------
    logits_shard : torch.Tensor of real floating dtype, shape (..., K_r)
        The class axis is the last.
    targets : torch.Tensor of integer dtype, shape (...)
    group : torch.distributed process group, optional
        The default group when None.
    epsilon, prior, weight, ignore_index, reduction, z_loss
        As in :func:`labelsmooth.cross_entropy`.

    Returns
    -------
    torch.Tensor
        The same on every rank: scalar for ``"mean"``/``"sum"``, batch-shaped for ``"none"``.

    Raises
    ------
    ValueError
        No initialised process group, shapes that do not fit, labels outside ``[0, K)``,
        and every value error of :func:`labelsmooth.cross_entropy` for these options.
    TypeError
        As :func:`labelsmooth.cross_entropy`.
    """
    if not (dist.is_available() and dist.is_initialized()):
        msg = "vocab_parallel_cross_entropy needs an initialised torch.distributed process group, got none"
        raise ValueError(msg)
    if not isinstance(logits_shard, torch.Tensor) or logits_shard.ndim == 0:
        msg = f"logits_shard must be a torch.Tensor with a class axis, got {type(logits_shard).__name__}"
        raise TypeError(msg)
    values = complete_options(options, namespace=False, only=OPTIONS)
    return _VocabParallelLoss.apply(logits_shard, targets, _shard(logits_shard, group), values)


def _shard(logits_shard: Any, group: Any) -> Shard:
    """This rank's block of the vocabulary, from every rank's block width."""
    width = torch.tensor([logits_shard.shape[-1]], dtype=torch.int64, device=logits_shard.device)
    widths = [torch.empty_like(width) for _ in range(dist.get_world_size(group))]
    dist.all_gather(widths, width, group=group)
    sizes = [int(w.item()) for w in widths]
    rank = dist.get_rank(group)
    return Shard(
        offset=sum(sizes[:rank]),
        num_classes=sum(sizes),
        all_max=lambda x: _all_reduce(x, dist.ReduceOp.MAX, group),
        all_sum=lambda x: _all_reduce(x, dist.ReduceOp.SUM, group),
    )


def _all_reduce(x: Any, op: Any, group: Any) -> Any:
    result = x.detach().clone().contiguous()
    dist.all_reduce(result, op=op, group=group)
    return result


class _VocabParallelLoss(torch.autograd.Function):
    """The merged loss forward; this rank's block of the analytic gradient backward."""

    @staticmethod
    def forward(ctx: Any, logits_shard: Any, targets: Any, shard: Shard, options: dict[str, Any]) -> Any:
        loss, grad = evaluate(logits_shard.detach(), targets, shard, options, ctx.needs_input_grad[0])
        ctx.gradient = grad
        ctx.per_row = options["reduction"] == "none"
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Any) -> tuple[Any, ...]:
        grad, ctx.gradient = ctx.gradient, None
        cotangent = grad_output.unsqueeze(-1) if ctx.per_row else grad_output
        return grad * cotangent, None, None, None
