"""The 40-digit reference: checked against exact results, then used to judge labelsmooth.

First the oracle itself is checked against truths that do not come from it (closed forms,
hand-worked numbers, PyTorch in float64, finite differences, the definitions' invariances);
then ``labelsmooth.cross_entropy`` and ``cross_entropy_grad`` (whatever path they dispatch
to) must match it across every combination of options.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import given, settings

import labelsmooth as ls
from labelsmooth.testing import (
    assert_close,
    reference_cross_entropy,
    reference_cross_entropy_grad,
    reference_cross_entropy_with_grad,
)
from labelsmooth.testing.strategies import cross_entropy_cases

EPS64 = float(np.finfo(np.float64).eps)


# --- the oracle against independent truth ------------------------------------------------------


def test_worked_example_of_the_api() -> None:
    z = np.log([[0.1, 0.1, 0.1, 0.36, 0.34]])
    y = np.asarray([3])
    # These values are for the exact probabilities; np.log rounds the inputs by 1/2 ulp.
    assert_close(reference_cross_entropy(z, y), 1.0216512475319814, rtol=4 * EPS64, atol=0)
    assert_close(reference_cross_entropy(z, y, epsilon=0.1), 1.0996504465365042, rtol=4 * EPS64, atol=0)
    # Hand-worked: the smoothed loss is 0.9 * nll + 0.1 * mean_k(-log p_k).
    nll = -math.log(0.36)
    smooth = -sum(math.log(p) for p in (0.1, 0.1, 0.1, 0.36, 0.34)) / 5
    assert_close(reference_cross_entropy(z, y, epsilon=0.1), 0.9 * nll + 0.1 * smooth, rtol=1e-15, atol=0)


@pytest.mark.parametrize("epsilon", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("prior", [None, "others"])
def test_equal_logits_closed_form(epsilon: float, prior: str | None) -> None:
    # p = 1/K for every class: loss = log K whatever q', gradient = 1/K - q'.
    k = 7
    z = np.full((2, k), 3.25)
    y = np.asarray([0, 5])
    loss, grad = reference_cross_entropy_with_grad(z, y, epsilon=epsilon, prior=prior, reduction="none")
    assert_close(loss, np.full(2, math.log(k)), rtol=EPS64, atol=0)
    q = np.eye(k)[y]
    u = np.full((2, k), 1 / k) if prior is None else (1 - q) / (k - 1)
    assert_close(grad, 1 / k - ((1 - epsilon) * q + epsilon * u), rtol=0, atol=EPS64)


def test_two_classes_closed_form() -> None:
    # z = (d, 0), label 0: loss = log(1 + e^-d) = log1p(exp(-d)); gradient (-s(-d), s(-d)).
    d = np.asarray([0.5, 30.0, 500.0])
    z = np.stack([d, np.zeros(3)], axis=1)
    loss, grad = reference_cross_entropy_with_grad(z, np.zeros(3, dtype=np.int64), reduction="none")
    expected = np.asarray([math.log1p(math.exp(-v)) for v in d])
    assert_close(loss, expected, rtol=2 * EPS64, atol=0)
    # The loss at d=500 is e^-500 ~ 7e-218: a 40-digit log(1 + e^-500) alone would be 0.
    assert loss[2] == pytest.approx(math.exp(-500.0), rel=1e-15)
    sigma = np.asarray([1 / (1 + math.exp(v)) for v in d])
    assert_close(grad, np.stack([-sigma, sigma], axis=1), rtol=4 * EPS64, atol=0)


def test_pytorch_float64_weighted_ignore_index() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    z = rng.standard_normal((6, 5)) * 2
    y = rng.integers(0, 5, size=6)
    y[[1, 4]] = -100
    w = rng.uniform(0.2, 3.0, size=5)
    for reduction in ("none", "sum", "mean"):
        zt = torch.tensor(z, requires_grad=True)
        expected = torch.nn.functional.cross_entropy(
            zt, torch.tensor(y), weight=torch.tensor(w), label_smoothing=0.2, reduction=reduction
        )
        (expected_grad,) = torch.autograd.grad(expected.sum(), zt)
        loss, grad = reference_cross_entropy_with_grad(
            z, y, epsilon=0.2, weight=w, ignore_index=-100, reduction=reduction
        )
        assert_close(loss, expected)
        assert_close(grad, expected_grad)


def test_pytorch_float64_probability_targets_axis_one() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    z = rng.standard_normal((3, 4, 5))
    q = rng.dirichlet(np.ones(4), size=(3, 5)).transpose(0, 2, 1)
    w = rng.uniform(0.5, 2.0, size=4)
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(z), torch.tensor(q), weight=torch.tensor(w), label_smoothing=0.3
    )
    assert_close(reference_cross_entropy(z, q, epsilon=0.3, weight=w, axis=1), expected)


def test_gradient_is_the_derivative_of_the_loss() -> None:
    # Central differences of the reference loss itself (error ~ h^2 ~ 1e-12).
    rng = np.random.default_rng(9)
    z = rng.standard_normal((2, 4))
    y = np.asarray([1, 3])
    options = {
        "epsilon": np.asarray([0.1, 0.6]),
        "prior": np.asarray([0.1, 0.2, 0.3, 0.4]),
        "weight": np.asarray([1.0, 2.0, 0.5, 1.5]),
        "reduction": "mean",
    }
    grad = reference_cross_entropy_grad(z, y, **options)
    h = 1e-6
    numeric = np.zeros_like(z)
    for index in np.ndindex(*z.shape):
        up, down = z.copy(), z.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (reference_cross_entropy(up, y, **options) - reference_cross_entropy(down, y, **options)) / (
            2 * h
        )
    assert_close(grad, numeric, rtol=0, atol=1e-9)


def test_invariances_of_the_definition() -> None:
    rng = np.random.default_rng(10)
    z = rng.standard_normal((3, 6))
    y = np.asarray([0, 2, 5])
    # Masking a class is the same as deleting it (labels re-indexed).
    allowed = np.asarray([True, True, True, False, True, True])
    masked = reference_cross_entropy_with_grad(
        np.where(allowed, z, -np.inf), y, epsilon=0.2, where=allowed, reduction="none"
    )
    kept = reference_cross_entropy_with_grad(z[:, allowed], np.asarray([0, 2, 4]), epsilon=0.2, reduction="none")
    assert_close(masked[0], kept[0], rtol=EPS64, atol=0)
    assert_close(masked[1][:, allowed], kept[1], rtol=0, atol=EPS64)
    assert np.all(masked[1][:, ~allowed] == 0)
    # prior="others" is the clamp(one_hot, eps/(K-1), 1-eps) target, and integer labels equal
    # their one-hot probability rows.
    clamp = np.clip(np.eye(6)[y], 0.2 / 5, 1 - 0.2)
    assert_close(
        reference_cross_entropy(z, y, epsilon=0.2, prior="others", reduction="none"),
        reference_cross_entropy(z, clamp, reduction="none"),
        rtol=2 * EPS64,
        atol=0,
    )
    assert_close(
        reference_cross_entropy(z, y, epsilon=0.2, reduction="none"),
        reference_cross_entropy(z, np.eye(6)[y], epsilon=0.2, reduction="none"),
        rtol=2 * EPS64,
        atol=0,
    )
    # Shift invariance holds exactly for the exact loss.
    assert_close(
        reference_cross_entropy(z + 1e6, y, epsilon=0.2), reference_cross_entropy(z, y, epsilon=0.2), rtol=1e-10, atol=0
    )


def test_reductions_and_edges() -> None:
    z = np.zeros((3, 4))
    y = np.asarray([-100, 1, -100])
    none = reference_cross_entropy(z, y, ignore_index=-100, reduction="none")
    assert_close(none, [0.0, math.log(4), 0.0], rtol=EPS64, atol=0)
    assert_close(reference_cross_entropy(z, y, ignore_index=-100), math.log(4), rtol=EPS64, atol=0)
    all_ignored = np.full(3, -100)
    assert np.isnan(reference_cross_entropy(z, all_ignored, ignore_index=-100))
    assert reference_cross_entropy(z, all_ignored, ignore_index=-100, reduction="sum") == 0.0
    assert np.all(reference_cross_entropy_grad(z, all_ignored, ignore_index=-100) == 0.0)
    assert np.isnan(reference_cross_entropy(z[:0], y[:0]))
    assert reference_cross_entropy(z[:0], y[:0], reduction="none").shape == (0,)
    # A -inf logit with no target mass costs nothing; with smoothing mass it costs +inf.
    z_inf = np.asarray([[0.0, -np.inf, 1.0]])
    assert np.isfinite(reference_cross_entropy(z_inf, np.asarray([2])))
    assert reference_cross_entropy(z_inf, np.asarray([2]), epsilon=0.1) == np.inf


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"epsilon": 1.5}, ValueError, "epsilon"),
        ({"reduction": "avg"}, ValueError, "reduction"),
        ({"prior": np.asarray([0.5, 0.6, 0.1])}, ValueError, "sum to 1"),
        ({"prior": "uniform"}, ValueError, "prior"),
        ({"weight": np.ones(4)}, ValueError, "weight"),
        ({"where": np.asarray([True, False, True])}, ValueError, "masked"),
    ],
)
def test_rejects_invalid_inputs(kwargs: dict, error: type, text: str) -> None:
    z = np.zeros((2, 3))
    with pytest.raises(error, match=text):
        reference_cross_entropy(z, np.asarray([1, 0]), **kwargs)


def test_rejects_invalid_targets() -> None:
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="class indices"):
        reference_cross_entropy(z, np.asarray([0, 3]))
    with pytest.raises(ValueError, match="ignore_index"):
        reference_cross_entropy(z, np.full((2, 3), 1 / 3), ignore_index=-100)
    with pytest.raises(TypeError, match="logits"):
        reference_cross_entropy(np.zeros((2, 3), dtype=np.int64), np.asarray([0, 1]))


def test_accepts_any_library_and_leaves_inputs_alone(eager_backend) -> None:
    rng = np.random.default_rng(11)
    z = rng.standard_normal((3, 4)).astype(np.float32)
    y = rng.integers(0, 4, size=3)
    w = np.asarray([1.0, 2.0, 0.5, 1.0], dtype=np.float32)
    zb, yb, wb = eager_backend.asarray(z), eager_backend.asarray(y), eager_backend.asarray(w)
    loss, grad = reference_cross_entropy_with_grad(zb, yb, epsilon=0.1, weight=wb)
    expected_loss, expected_grad = reference_cross_entropy_with_grad(z, y, epsilon=0.1, weight=w)
    assert isinstance(loss, np.ndarray) and loss.dtype == np.float64 and loss.shape == ()
    assert isinstance(grad, np.ndarray) and grad.dtype == np.float64 and grad.shape == (3, 4)
    assert_close(loss, expected_loss, rtol=0, atol=0)
    assert_close(grad, expected_grad, rtol=0, atol=0)
    np.testing.assert_array_equal(eager_backend.to_numpy(zb), z)


def test_torch_bfloat16_and_requires_grad() -> None:
    torch = pytest.importorskip("torch")
    z = torch.tensor([[0.5, -1.25, 2.0]], dtype=torch.bfloat16, requires_grad=True)
    loss = reference_cross_entropy(z, torch.tensor([2]), epsilon=0.1)
    exact = reference_cross_entropy(np.asarray([[0.5, -1.25, 2.0]]), np.asarray([2]), epsilon=0.1)
    assert_close(loss, exact, rtol=0, atol=0)


def test_missing_mpmath_gives_an_install_hint() -> None:
    code = (
        "import sys; sys.modules['mpmath'] = None\n"
        "import numpy as np\n"
        "from labelsmooth.testing import reference_cross_entropy\n"
        "try:\n"
        "    reference_cross_entropy(np.zeros((1, 2)), np.asarray([0]))\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install mpmath" in out


# --- labelsmooth against the oracle ------------------------------------------------------------


def _problem(kind: str, axis: int, with_where: bool, rng: np.random.Generator):
    """Logits, targets and mask; axis=-1 uses 2-D (N, K) logits, axis=1 3-D (N, K, d)."""
    shape = (6, 5) if axis == -1 else (3, 5, 4)
    z = rng.standard_normal(shape) * 3
    z_last = np.moveaxis(z, axis, -1)
    batch = z_last.shape[:-1]
    labels = rng.integers(0, 5, size=batch)
    allowed = None
    if with_where:
        allowed_last = rng.uniform(size=z_last.shape) > 0.35
        allowed_last |= np.arange(5) == labels[..., None]
        allowed_last |= np.arange(5) == (labels[..., None] + 1) % 5
        z_last = np.where(allowed_last, z_last, -np.inf)
        z = np.moveaxis(z_last, -1, axis)
        allowed = np.moveaxis(allowed_last, -1, axis)
    if kind == "labels":
        return z, labels, allowed
    probs = rng.dirichlet(np.ones(5), size=batch)
    if with_where:
        probs = probs * np.moveaxis(allowed, axis, -1)
        probs /= probs.sum(-1, keepdims=True)
    return z, np.moveaxis(probs, -1, axis), allowed


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("with_where", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("prior_kind", [None, "others", "array"])
@pytest.mark.parametrize("kind", ["labels", "probabilities"])
def test_labelsmooth_matches_reference_float64(kind, prior_kind, weighted, with_where, axis) -> None:
    rng = np.random.default_rng(zlib.crc32(repr((kind, prior_kind, weighted, with_where, axis)).encode()))
    z, targets, allowed = _problem(kind, axis, with_where, rng)
    batch = np.moveaxis(z, axis, -1).shape[:-1]
    prior = {"array": rng.dirichlet(np.ones(5)), "others": "others", None: None}[prior_kind]
    weight = rng.uniform(0.25, 3.0, size=5) if weighted else None
    epsilons = [0.0, 0.15, 1.0, rng.uniform(size=batch)]
    ignore_indices = [None, -100] if kind == "labels" else [None]
    for epsilon, ignore_index, reduction in itertools.product(epsilons, ignore_indices, ("none", "sum", "mean")):
        y = targets
        if ignore_index is not None:
            y = targets.copy()
            y.reshape(-1)[::3] = ignore_index
        options = {
            "epsilon": epsilon,
            "prior": prior,
            "axis": axis,
            "weight": weight,
            "ignore_index": ignore_index,
            "where": allowed,
            "reduction": reduction,
        }
        exact_loss, exact_grad = reference_cross_entropy_with_grad(z, y, **options)
        loss = ls.cross_entropy(z, y, **options)
        grad = ls.cross_entropy_grad(z, y, **options)
        both = ls.cross_entropy_with_grad(z, y, **options)
        scale = max(1.0, float(np.max(np.abs(exact_grad))))
        assert_close(loss, exact_loss, rtol=1e-13, atol=0)
        assert_close(grad, exact_grad, rtol=0, atol=4 * EPS64 * scale)
        assert_close(both[0], loss, rtol=0, atol=0)
        assert_close(both[1], grad, rtol=0, atol=0)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(cross_entropy_cases())
def test_labelsmooth_matches_reference_on_fuzzed_cases(case) -> None:
    exact_loss, exact_grad = reference_cross_entropy_with_grad(case.logits, case.targets, **case.options)
    loss, grad = ls.cross_entropy_with_grad(case.logits, case.targets, **case.options)
    assert_close(loss, exact_loss, rtol=1e-13, atol=0)
    assert_close(grad, exact_grad, rtol=0, atol=4 * EPS64 * max(1.0, float(np.max(np.abs(exact_grad), initial=0))))


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_labelsmooth_on_every_backend_matches_reference(backend, reduction) -> None:
    rng = np.random.default_rng(12)
    z = rng.standard_normal((8, 6)) * 5
    z[:, 2] = -np.inf
    allowed = np.asarray([True, True, False, True, True, True])
    y = rng.integers(0, 5, size=8)
    y[y == 2] = 3
    y[0] = -1
    w = rng.uniform(0.5, 2.0, size=6)
    options = {
        "epsilon": 0.1,
        "weight": backend.asarray(w),
        "ignore_index": -1,
        "where": backend.asarray(allowed),
        "reduction": reduction,
    }
    loss, grad = backend.to_numpy(
        backend.call(ls.cross_entropy_with_grad, backend.asarray(z), backend.asarray(y), **options)
    )
    exact = reference_cross_entropy_with_grad(
        z, y, epsilon=0.1, weight=w, ignore_index=-1, where=allowed, reduction=reduction
    )
    if loss.dtype == np.float64:
        assert_close(loss, exact[0], rtol=1e-13, atol=0)
        assert_close(grad, exact[1], rtol=0, atol=8 * EPS64)
    else:  # JAX without 64-bit mode computes in float32
        assert_close(loss, exact[0])
        assert_close(grad, exact[1])
