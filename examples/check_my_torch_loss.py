"""Check a hand-written PyTorch label-smoothing loss against labelsmooth.

Replace ``SmoothedCrossEntropy`` by your own loss (or point ``my_loss`` at it) and run

    pytest check_my_torch_loss.py        # or: python check_my_torch_loss.py

Three checks, each a plain pytest test:

1. float64: ``labelsmooth.testing.check_loss`` calls the loss the way PyTorch's
   ``F.cross_entropy`` is called (``label_smoothing=``, ``weight=``, ``ignore_index=``,
   ``reduction=``) on a fixed grid of hard cases and on hypothesis draws of whole valid
   problems (adversarial logits, labels, epsilon, class weights, ignored samples,
   reductions); its loss and its autograd gradient must match ``labelsmooth`` with the
   options of PyTorch's convention;
2. float32: the same on float32 inputs, with ``assert_close``'s float32 tolerances;
3. exactness: on rows where a naive log-softmax is at its worst (a confident class,
   logits offset by 1e6, scale 1e4), the loss must match the 40-digit mpmath reference
   ``labelsmooth.testing.reference_cross_entropy``.

A failure names the case (logits, labels, weights, the call and its labelsmooth
equivalent) and the largest errors. Needs torch, mpmath and (for the drawn cases)
hypothesis.
"""

from __future__ import annotations

import numpy as np
import torch

from labelsmooth.testing import assert_close, check_loss, reference_cross_entropy


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


def my_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """The loss under test with ``F.cross_entropy``'s keywords, as ``check_loss`` calls it."""
    return SmoothedCrossEntropy(label_smoothing, weight, ignore_index, reduction)(input, target)


# The keywords of PyTorch's convention that SmoothedCrossEntropy takes (no prior, no class
# mask: check_loss gives it neither).
OPTIONS = {"weight", "ignore_index", "reduction"}


def test_matches_labelsmooth_float64() -> None:
    check_loss(my_loss, convention="torch", options=OPTIONS, grad=True, dtypes="float64", max_examples=60)


def test_matches_labelsmooth_float32() -> None:
    check_loss(my_loss, convention="torch", options=OPTIONS, grad=True, dtypes="float32", max_examples=30)


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
