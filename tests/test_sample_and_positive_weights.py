"""``sample_weight`` (Keras' per-sample weights) on the smoothed losses, ``pos_weight`` (PyTorch's) on the binary one.

Each against the framework that defines it: Keras' ``CategoricalCrossentropy`` with
``sample_weight``, PyTorch's per-sample losses times the weights, PyTorch's
``BCEWithLogitsLoss(pos_weight=)``, and the dense oracle of ``tests/_formulas.py`` on every
backend.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from _formulas import cross_entropy_rows

import labelsmooth as ls

N, K = 9, 5
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_KERAS = importlib.util.find_spec("keras") is not None and importlib.util.find_spec("jax") is not None


@pytest.fixture
def data() -> dict:
    rng = np.random.default_rng(20161205)
    return {
        "z": rng.normal(size=(N, K)) * 2.0,
        "labels": rng.integers(0, K, size=N),
        "sample_weight": rng.uniform(0.0, 2.0, size=N),
        "weight": rng.uniform(0.5, 2.0, size=K),
        "binary": (rng.random((N, K)) < 0.4).astype(np.float64),
        "pos_weight": rng.uniform(0.2, 3.0, size=K),
    }


def _weighted_oracle(data: dict, reduction: str, **options) -> tuple:
    """The oracle's per-sample losses and gradient rows times the sample weights, then reduced."""
    loss, grad = cross_entropy_rows(data["z"], data["labels"], reduction="none", **options)
    s = data["sample_weight"]
    loss, grad = loss * s, grad * s[:, None]
    if reduction == "none":
        return loss, grad
    if reduction == "sum":
        return loss.sum(), grad
    weight = options.get("weight")
    counted = np.ones(N) if options.get("ignore_index") is None else data["labels"] != options["ignore_index"]
    denominator = (counted * (1.0 if weight is None else weight[data["labels"]])).sum()
    return loss.sum() / denominator, grad / denominator


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "options",
    [{"epsilon": 0.1}, {"epsilon": 0.2, "prior": "others"}, {"epsilon": 0.1, "weight": True, "ignore_index": 2}],
    ids=str,
)
def test_sample_weight_on_every_backend(backend, data: dict, options: dict, reduction: str) -> None:
    options = {k: data["weight"] if k == "weight" else v for k, v in options.items()}
    expected_loss, expected_grad = _weighted_oracle(data, reduction, **options)
    arrays = {k: backend.asarray(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    loss, grad = backend.to_numpy(
        backend.call(
            ls.cross_entropy_with_grad,
            backend.asarray(data["z"]),
            backend.asarray(data["labels"]),
            sample_weight=backend.asarray(data["sample_weight"]),
            reduction=reduction,
            **arrays,
        )
    )
    # JAX without x64 computes in float32.
    tolerance = 1e-12 if np.asarray(grad).dtype == np.float64 else 2e-6
    np.testing.assert_allclose(loss, expected_loss, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(grad, expected_grad, rtol=tolerance, atol=tolerance)


@pytest.mark.skipif(not HAS_KERAS, reason="needs keras on jax")
def test_sample_weight_as_keras(data: dict) -> None:
    import keras

    onehot = np.eye(K)[data["labels"]]
    s = data["sample_weight"]
    for reduction, ours in (("sum_over_batch_size", "mean"), ("sum", "sum"), (None, "none")):
        loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, reduction=reduction)
        expected = np.asarray(loss_fn(onehot, data["z"], sample_weight=s))
        got = ls.cross_entropy(
            data["z"].astype(np.float32), data["labels"], epsilon=0.1, sample_weight=s, reduction=ours
        )
        np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-7)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_sample_weight_through_torch_autograd(data: dict) -> None:
    import torch
    import torch.nn.functional as F

    z = torch.tensor(data["z"], requires_grad=True)
    labels, s, w = torch.tensor(data["labels"]), torch.tensor(data["sample_weight"]), torch.tensor(data["weight"])
    per_sample = F.cross_entropy(z, labels, weight=w, label_smoothing=0.1, reduction="none")
    expected = (per_sample * s).sum() / w[labels].sum()
    loss = ls.cross_entropy(z, labels, epsilon=0.1, weight=w, sample_weight=s)
    torch.testing.assert_close(loss, expected, rtol=1e-13, atol=1e-15)
    _same_first_and_second_derivatives(loss, expected, z)


def _same_first_and_second_derivatives(loss, expected, z) -> None:
    """Gradients and a Hessian-vector product of ``loss`` equal PyTorch autograd's of ``expected``."""
    import torch

    (grad,) = torch.autograd.grad(loss, z, create_graph=True)
    (expected_grad,) = torch.autograd.grad(expected, z, create_graph=True)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-13, atol=1e-15)
    direction = torch.randn_like(z)
    (hvp,) = torch.autograd.grad((grad * direction).sum(), z)
    (expected_hvp,) = torch.autograd.grad((expected_grad * direction).sum(), z)
    torch.testing.assert_close(hvp, expected_hvp, rtol=1e-12, atol=1e-14)


def test_kl_divergence_with_sample_weight(data: dict) -> None:
    from _formulas import kl_divergence_rows

    expected = kl_divergence_rows(data["z"], data["labels"], epsilon=0.1, reduction="none") * data["sample_weight"]
    got = ls.kl_divergence(
        data["z"], data["labels"], epsilon=0.1, sample_weight=data["sample_weight"], reduction="none"
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_sample_weight_refused_loudly(data: dict) -> None:
    z, y = data["z"], data["labels"]
    with pytest.raises(ValueError, match=r"sample_weight must be finite and non-negative, got a value of -1\.0"):
        ls.cross_entropy(z, y, sample_weight=np.full(N, -1.0))
    with pytest.raises(ValueError, match=r"sample_weight must be broadcastable to the batch shape \(9,\)"):
        ls.cross_entropy(z, y, sample_weight=np.ones(N + 1))
    with pytest.raises(TypeError, match="sample_weight"):
        ls.cross_entropy(z, y, sample_weight=[1.0] * N)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_pos_weight_as_pytorch(data: dict, epsilon: float, reduction: str) -> None:
    import torch
    import torch.nn.functional as F

    z = torch.tensor(data["z"], requires_grad=True)
    targets, pos_weight = torch.tensor(data["binary"]), torch.tensor(data["pos_weight"])
    smoothed = targets * (1 - epsilon) + epsilon / 2
    expected = F.binary_cross_entropy_with_logits(z, smoothed, pos_weight=pos_weight, reduction=reduction)
    (expected_grad,) = torch.autograd.grad(expected.sum(), z, create_graph=True)
    options = {"epsilon": epsilon, "pos_weight": data["pos_weight"], "reduction": reduction}
    loss, grad = ls.binary_cross_entropy_with_grad(data["z"], data["binary"], **options)
    np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grad, expected_grad.detach().numpy(), rtol=1e-13, atol=1e-15)
    # On tensors that require grad: the analytic backward, second order included.
    ours = ls.binary_cross_entropy(z, targets, epsilon=epsilon, pos_weight=pos_weight, reduction=reduction)
    _same_first_and_second_derivatives(ours.sum(), expected.sum(), z)


def test_pos_weight_refused_loudly(data: dict) -> None:
    with pytest.raises(ValueError, match="pos_weight must be finite and non-negative"):
        ls.binary_cross_entropy(data["z"], data["binary"], pos_weight=-np.ones(K))
    with pytest.raises(ValueError, match="pos_weight must be broadcastable"):
        ls.binary_cross_entropy(data["z"], data["binary"], pos_weight=np.ones(K + 1))
    with pytest.raises(TypeError, match="unexpected keyword argument 'label_smoothing'"):
        ls.binary_cross_entropy(data["z"], data["binary"], label_smoothing=0.1)
