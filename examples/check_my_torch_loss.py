"""Check a hand-written PyTorch label-smoothing loss against labelsmooth.

Copy this file next to your own loss, replace ``SmoothedCrossEntropy`` by it, and run

    pytest check_my_torch_loss.py        # or: python check_my_torch_loss.py

Three checks, each a plain pytest test:

1. fuzzing: hypothesis draws whole valid problems (adversarial logits, labels, epsilon,
   class weights, ignored samples, reductions) with
   ``labelsmooth.testing.strategies.cross_entropy_cases``, restricted to the options this
   loss supports; its loss and its autograd gradient must match ``labelsmooth`` in float64;
2. float32: the same loss on float32 inputs, with ``assert_close``'s float32 tolerances;
3. exactness: on rows where a naive log-softmax is at its worst (a confident class,
   logits offset by 1e6, scale 1e4), the loss must match the 40-digit mpmath reference
   ``labelsmooth.testing.reference_cross_entropy``.

Needs torch, hypothesis and mpmath.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings

import labelsmooth
from labelsmooth.testing import assert_close, reference_cross_entropy
from labelsmooth.testing.strategies import cross_entropy_cases


class SmoothedCrossEntropy(torch.nn.Module):
    """The loss under test: PyTorch-style smoothed cross-entropy, written by hand.

    ``loss_i = (1 - eps) w_y (-log p_y) + (eps / K) sum_k w_k (-log p_k)``; samples whose
    label is ``ignore_index`` count 0 and ``"mean"`` divides by ``sum_i w_{y_i}`` over the
    other samples (PyTorch's convention).
    """

    def __init__(
        self,
        epsilon: float = 0.0,
        weight: torch.Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.epsilon, self.weight = epsilon, weight
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[-1]
        log_probs = torch.log_softmax(logits, dim=-1)
        weight = torch.ones(num_classes, dtype=logits.dtype) if self.weight is None else self.weight
        keep = target != self.ignore_index
        safe_target = torch.where(keep, target, torch.zeros_like(target))
        true_weight = weight[safe_target] * keep
        nll = -log_probs.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)
        smooth = -(log_probs * weight).sum(dim=-1) / num_classes
        per_sample = (1 - self.epsilon) * true_weight * nll + self.epsilon * smooth * keep
        if self.reduction == "none":
            return per_sample
        if self.reduction == "sum":
            return per_sample.sum()
        return per_sample.sum() / true_weight.sum()


# Only the options SmoothedCrossEntropy has (no prior, no class mask, class axis last).
SUPPORTED = {"epsilon", "weight", "ignore_index"}


def my_loss_and_grad(case: object, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    options = case.options  # type: ignore[attr-defined]
    logits = torch.tensor(case.logits, dtype=dtype, requires_grad=True)  # type: ignore[attr-defined]
    weight = options.get("weight")
    loss_fn = SmoothedCrossEntropy(
        epsilon=options.get("epsilon", 0.0),
        weight=None if weight is None else torch.tensor(weight, dtype=dtype),
        ignore_index=options.get("ignore_index", -100),
        reduction=options["reduction"],
    )
    loss = loss_fn(logits, torch.tensor(case.targets))  # type: ignore[attr-defined]
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    return loss.detach(), grad


@settings(max_examples=60, deadline=None, derandomize=True)
@given(cross_entropy_cases(options=SUPPORTED, target_kinds=("labels",)))
def test_matches_labelsmooth_float64(case: object) -> None:
    loss, grad = my_loss_and_grad(case, torch.float64)
    expected_loss, expected_grad = labelsmooth.cross_entropy_with_grad(case.logits, case.targets, **case.options)  # type: ignore[attr-defined]
    assert_close(loss, expected_loss)
    assert_close(grad, expected_grad)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    cross_entropy_cases(
        options=SUPPORTED, target_kinds=("labels",), max_scale=30.0, max_offset=0.0, dtypes=(np.float32,)
    )
)
def test_matches_labelsmooth_float32(case: object) -> None:
    loss, grad = my_loss_and_grad(case, torch.float32)
    expected_loss, expected_grad = labelsmooth.cross_entropy_with_grad(case.logits, case.targets, **case.options)  # type: ignore[attr-defined]
    assert_close(loss, expected_loss)
    assert_close(grad, expected_grad)


def test_hard_rows_against_exact_reference() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=4)
    base = rng.standard_normal((4, 10))
    hard_rows = {
        "confident": base + 30.0 * (np.arange(10) == labels[:, None]),
        "offset": base + 1e6,
        "wide": base * 1e4,
    }
    for logits in hard_rows.values():
        for epsilon in (0.0, 0.1):
            loss = SmoothedCrossEntropy(epsilon=epsilon, reduction="none")(torch.tensor(logits), torch.tensor(labels))
            exact = reference_cross_entropy(logits, labels, epsilon=epsilon, reduction="none")
            assert_close(loss, exact)


if __name__ == "__main__":
    for test in (
        test_matches_labelsmooth_float64,
        test_matches_labelsmooth_float32,
        test_hard_rows_against_exact_reference,
    ):
        test()
        print(f"{test.__name__}: passed")
