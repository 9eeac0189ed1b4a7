# mypy: warn-unused-ignores, disallow-untyped-defs, disallow-incomplete-defs
# pyright: reportUnnecessaryTypeIgnoreComment=true
"""labelsmooth as a type-checked PyTorch user sees it: ``torch.Tensor`` in, ``torch.Tensor`` out.

The PyTorch companion of ``examples/typed_usage.py``: every public function returns the
array type of its logits (:data:`labelsmooth.typing.ArrayT`), so a call on tensors is
typed as returning a ``torch.Tensor``, and ``labelsmooth.torch``'s drop-in function
and module take ``reduction`` and ``prior`` as ``Literal`` types. It is checked by
``python -m mypy`` (which lists this file) and by ``python -m pyright
examples/typed_torch_usage.py``; the ``assert_type`` lines are the types a checker must
infer, and the lines marked ``# type: ignore[...]`` mistakes it must flag (an ignore
that silences nothing is itself an error), which labelsmooth refuses at run time too.

It needs PyTorch and runs in about a second with no arguments
(``LABELSMOOTH_EXAMPLE_FAST=1`` changes nothing).

Usage::

    python examples/typed_torch_usage.py
    python -m mypy examples/typed_torch_usage.py
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

import labelsmooth as ls
import labelsmooth.torch as lst
from labelsmooth.typing import Reduction

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:

    def assert_type(value, _type):  # typing_extensions need not be installed to run this
        return value


def refused(call: Callable[[], object], error: type[Exception]) -> str:
    """The message of the ``error`` that ``call`` raises (and fail if it raises none)."""
    try:
        call()
    except error as raised:
        return str(raised)
    msg = "labelsmooth accepted a call that mypy flags"
    raise AssertionError(msg)


def main() -> int:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 2])

    loss = assert_type(ls.cross_entropy(logits, labels, epsilon=0.1), torch.Tensor)
    loss.backward()
    assert abs(loss.item() - 0.36391199) < 1e-7, loss
    assert logits.grad is not None
    grad = assert_type(ls.cross_entropy_grad(logits.detach(), labels, epsilon=0.1), torch.Tensor)
    assert torch.allclose(logits.grad, grad)

    z = logits.detach()
    both = assert_type(ls.cross_entropy_with_grad(z, labels, prior="others"), tuple[torch.Tensor, torch.Tensor])
    kl = assert_type(ls.kl_divergence(z, labels, epsilon=0.1, reduction="sum"), torch.Tensor)
    binary = assert_type(ls.binary_cross_entropy(z, torch.ones_like(z), epsilon=0.1), torch.Tensor)
    pair = assert_type(ls.binary_cross_entropy_with_grad(z, torch.ones_like(z)), tuple[torch.Tensor, torch.Tensor])
    probs = assert_type(ls.softmax(z), torch.Tensor)
    assert_type(ls.log_softmax(z), torch.Tensor)
    assert_type(ls.logsumexp(z, keepdims=True), torch.Tensor)
    rows = assert_type(ls.one_hot(labels, 3), torch.Tensor)
    targets = assert_type(ls.soft_targets(labels, 3, epsilon=0.1, dtype=torch.float64), torch.Tensor)
    assert_type(ls.smooth_labels(rows, 0.1), torch.Tensor)
    assert both[1].shape == z.shape and kl.item() >= 0.0 and binary.item() > 0.0 and pair[1].shape == z.shape
    assert torch.allclose(probs.sum(dim=-1), torch.ones(2, dtype=torch.float64)) and targets.dtype == torch.float64

    # The drop-in adapter: PyTorch's arguments, labelsmooth's Literal options.
    reduction: Reduction = "none"
    per_sample = assert_type(lst.cross_entropy(z, labels, reduction=reduction, label_smoothing=0.1), torch.Tensor)
    module = lst.CrossEntropyLoss(label_smoothing=0.1, prior="others")
    assert_type(module.forward(z, labels), torch.Tensor)
    assert per_sample.shape == (2,) and module.reduction == "mean"

    # Mistakes the checker flags and labelsmooth refuses.
    bad_reduction = refused(lambda: ls.cross_entropy(z, labels, reduction="avg"), ValueError)  # type: ignore[arg-type]
    bad_adapter = refused(lambda: lst.cross_entropy(z, labels, reduction="batchmean"), ValueError)  # type: ignore[arg-type]
    bad_prior = refused(lambda: lst.CrossEntropyLoss(prior="uniform"), ValueError)  # type: ignore[arg-type]
    not_an_array = refused(lambda: ls.softmax([0.0, 1.0]), TypeError)  # type: ignore[type-var]
    assert "'avg'" in bad_reduction and "'batchmean'" in bad_adapter and "'uniform'" in bad_prior, bad_prior

    print(f"loss {loss.item():.8f}; torch.Tensor in, torch.Tensor out")
    print(f"refused an unknown reduction: {bad_reduction}")
    print(f"refused an unknown prior: {bad_prior}")
    print(f"refused a list: {not_an_array}")
    print("typed torch usage checks hold")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
