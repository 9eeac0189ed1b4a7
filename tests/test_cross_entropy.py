"""cross_entropy / _grad / _with_grad on every backend against independent references.

References: PyTorch ``F.cross_entropy`` and its autograd in float64 (the ground truth for
PyTorch's convention), fairseq's ``label_smoothed_nll_loss`` formula, and the dense
definition (the dense oracle, ``tests/_formulas.py``).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _formulas import cross_entropy_rows, log_softmax
from conftest import pairwise

import labelsmooth as ls

torch = pytest.importorskip("torch")
F = torch.nn.functional


def tolerance(backend, result_np):
    if result_np.dtype == np.float32:
        return {"rtol": 2e-5, "atol": 2e-6}
    return {"rtol": 1e-12, "atol": 1e-14}


def torch_reference(z, targets, *, epsilon, weight=None, ignore_index=None, reduction="mean"):
    """PyTorch loss and autograd gradient, class axis 1 (PyTorch layout), float64."""
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(targets)
    kwargs = {"label_smoothing": epsilon, "reduction": reduction}
    if weight is not None:
        kwargs["weight"] = torch.tensor(weight, dtype=torch.float64)
    if ignore_index is not None:
        kwargs["ignore_index"] = ignore_index
    loss = F.cross_entropy(zt, tt, **kwargs)
    (grad,) = torch.autograd.grad(loss.sum(), zt)
    return loss.detach().numpy(), grad.numpy()


CASES = list(
    itertools.product(
        [0.0, 0.1, 1.0],  # epsilon
        [False, True],  # weighted
        [None, 2],  # ignore_index
        ["mean", "sum", "none"],  # reduction
    )
)


# On JAX and Dask (a compilation or a graph per case): nine cases holding every pair.
COSTLY_CASES = pairwise(
    CASES,
    [
        (0.0, False, None, "mean"),
        (0.0, False, None, "sum"),
        (0.0, True, 2, "none"),
        (0.1, True, 2, "mean"),
        (0.1, False, 2, "sum"),
        (0.1, False, None, "none"),
        (1.0, False, None, "mean"),
        (1.0, True, None, "sum"),
        (1.0, True, 2, "none"),
    ],
)


@pytest.mark.parametrize(("epsilon", "weighted", "ignore_index", "reduction"), CASES)
def test_integer_labels_match_pytorch(backend, rng, epsilon, weighted, ignore_index, reduction):
    if backend.costly and (epsilon, weighted, ignore_index, reduction) not in COSTLY_CASES:
        pytest.skip(f"{backend.value}: the pairwise cases only")
    z = rng.normal(scale=3.0, size=(7, 5))
    y = rng.integers(0, 5, size=7)
    y[1] = 2
    w = rng.uniform(0.2, 2.0, size=5) if weighted else None
    ref_loss, ref_grad = torch_reference(
        z, y, epsilon=epsilon, weight=w, ignore_index=ignore_index, reduction=reduction
    )
    options = {"epsilon": epsilon, "ignore_index": ignore_index, "reduction": reduction}
    if weighted:
        options["weight"] = backend.asarray(w)
    zb, yb = backend.asarray(z), backend.asarray(y)
    loss, grad = backend.call(ls.cross_entropy_with_grad, zb, yb, **options)
    assert backend.is_native(loss) and backend.is_native(grad)
    loss_np, grad_np = backend.to_numpy((loss, grad))
    assert grad_np.shape == z.shape and grad_np.dtype == loss_np.dtype
    tol = tolerance(backend, grad_np)
    np.testing.assert_allclose(loss_np, ref_loss, **tol)
    np.testing.assert_allclose(grad_np, ref_grad, **tol)
    # The loss-only and gradient-only entry points agree with the combined one.
    np.testing.assert_allclose(backend.to_numpy(backend.call(ls.cross_entropy, zb, yb, **options)), ref_loss, **tol)
    np.testing.assert_allclose(
        backend.to_numpy(backend.call(ls.cross_entropy_grad, zb, yb, **options)), ref_grad, **tol
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("epsilon", [0.0, 0.25])
def test_probability_targets_match_pytorch(backend, rng, reduction, weighted, epsilon):
    z = rng.normal(size=(6, 4))
    q = rng.dirichlet(np.ones(4), size=6)
    w = rng.uniform(0.5, 1.5, size=4) if weighted else None
    ref_loss, ref_grad = torch_reference(z, q, epsilon=epsilon, weight=w, reduction=reduction)
    options = {"epsilon": epsilon, "reduction": reduction}
    if weighted:
        options["weight"] = backend.asarray(w)
    loss, grad = backend.to_numpy(
        backend.call(ls.cross_entropy_with_grad, backend.asarray(z), backend.asarray(q), **options)
    )
    tol = tolerance(backend, grad)
    np.testing.assert_allclose(loss, ref_loss, **tol)
    np.testing.assert_allclose(grad, ref_grad, **tol)


@pytest.mark.parametrize("targets_kind", ["labels", "probabilities"])
def test_axis_one_layout_matches_pytorch(backend, rng, targets_kind):
    # PyTorch's (N, C, d1, d2) layout.
    z = rng.normal(size=(3, 5, 2, 4))
    if targets_kind == "labels":
        t = rng.integers(0, 5, size=(3, 2, 4))
        kwargs = {"weight": rng.uniform(0.5, 2.0, size=5), "ignore_index": 1}
    else:
        t = np.moveaxis(rng.dirichlet(np.ones(5), size=(3, 2, 4)), -1, 1)
        kwargs = {}
    ref_loss, ref_grad = torch_reference(z, t, epsilon=0.15, **kwargs)
    if "weight" in kwargs:
        kwargs["weight"] = backend.asarray(kwargs["weight"])
    loss, grad = backend.to_numpy(
        backend.call(ls.cross_entropy_with_grad, backend.asarray(z), backend.asarray(t), epsilon=0.15, axis=1, **kwargs)
    )
    tol = tolerance(backend, grad)
    np.testing.assert_allclose(loss, ref_loss, **tol)
    np.testing.assert_allclose(grad, ref_grad, **tol)


def fairseq_label_smoothed_nll_loss(lprobs, target, epsilon, ignore_index):
    """fairseq/criterions/label_smoothed_cross_entropy.py (after its 2021 change), in NumPy."""
    nll_loss = -np.take_along_axis(lprobs, target[:, None], axis=-1)[:, 0]
    smooth_loss = -lprobs.sum(-1)
    pad_mask = target == ignore_index
    nll_loss = np.where(pad_mask, 0.0, nll_loss)
    smooth_loss = np.where(pad_mask, 0.0, smooth_loss)
    eps_i = epsilon / (lprobs.shape[-1] - 1)
    return ((1.0 - epsilon - eps_i) * nll_loss + eps_i * smooth_loss).sum()


def test_prior_others_matches_fairseq(backend, rng):
    z = rng.normal(scale=2.0, size=(9, 6))
    y = rng.integers(0, 6, size=9)
    y[[0, 4]] = 1  # the pad symbol
    expected = fairseq_label_smoothed_nll_loss(log_softmax(z), y, 0.1, ignore_index=1)
    loss = backend.call(
        ls.cross_entropy,
        backend.asarray(z),
        backend.asarray(y),
        epsilon=0.1,
        prior="others",
        ignore_index=1,
        reduction="sum",
    )
    loss_np = backend.to_numpy(loss)
    np.testing.assert_allclose(loss_np, expected, **tolerance(backend, loss_np))


def test_prior_others_clamp_form(backend, rng):
    # The clamp(one_hot, eps/(K-1), 1-eps) form of the same targets.
    y = rng.integers(0, 4, size=5)
    expected = np.clip(np.eye(4)[y], 0.2 / 3, 1 - 0.2)
    got = backend.to_numpy(backend.call(ls.soft_targets, backend.asarray(y), 4, epsilon=0.2, prior="others"))
    np.testing.assert_allclose(got, expected, **tolerance(backend, got))


@pytest.mark.parametrize("prior_kind", [None, "others", "array"])
@pytest.mark.parametrize("with_where", [False, True])
@pytest.mark.parametrize("targets_kind", ["labels", "probabilities"])
def test_options_match_dense_definition(backend, rng, prior_kind, with_where, targets_kind):
    n, k = 8, 6
    z = rng.normal(scale=2.0, size=(n, k))
    where = None
    if with_where:
        where = rng.random((n, k)) < 0.75
        where[:, 0] = True
        where[:, 1] = True
        z = np.where(where, z, -np.inf)  # masked classes may hold -inf
    labels = rng.integers(0, 2, size=n) if with_where else rng.integers(0, k, size=n)
    if targets_kind == "labels":
        targets = labels
    else:
        targets = rng.dirichlet(np.ones(2), size=n)
        targets = np.concatenate([targets, np.zeros((n, k - 2))], axis=1)
    prior = None if prior_kind is None else prior_kind
    if prior_kind == "array":
        prior = rng.dirichlet(np.ones(k))
    epsilon = rng.uniform(0, 1, size=n)
    weight = rng.uniform(0.5, 2.0, size=k)
    ref_loss, ref_grad = cross_entropy_rows(
        z, targets, epsilon=epsilon, prior=prior, weight=weight, where=where, reduction="none"
    )
    options = {"epsilon": backend.asarray(epsilon), "weight": backend.asarray(weight), "reduction": "none"}
    if where is not None:
        options["where"] = backend.asarray(where)
    options["prior"] = backend.asarray(prior) if prior_kind == "array" else prior
    loss, grad = backend.to_numpy(
        backend.call(ls.cross_entropy_with_grad, backend.asarray(z), backend.asarray(targets), **options)
    )
    tol = tolerance(backend, grad)
    np.testing.assert_allclose(loss, ref_loss, **tol)
    np.testing.assert_allclose(grad, ref_grad, **tol)


def test_per_sample_epsilon_matches_pytorch_per_row(backend, rng):
    z = rng.normal(size=(5, 7))
    y = rng.integers(0, 7, size=5)
    eps = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    rows = [torch_reference(z[i : i + 1], y[i : i + 1], epsilon=float(eps[i]), reduction="none") for i in range(5)]
    ref_loss = np.concatenate([r[0] for r in rows])
    ref_grad = np.concatenate([r[1] for r in rows])
    loss, grad = backend.to_numpy(
        backend.call(
            ls.cross_entropy_with_grad,
            backend.asarray(z),
            backend.asarray(y),
            epsilon=backend.asarray(eps),
            reduction="none",
        )
    )
    tol = tolerance(backend, grad)
    np.testing.assert_allclose(loss, ref_loss, **tol)
    np.testing.assert_allclose(grad, ref_grad, **tol)


def test_shift_invariance_to_float64_rounding(backend, rng):
    z = rng.normal(size=(16, 10))
    y = rng.integers(0, 10, size=16)
    loss = backend.to_numpy(
        backend.call(ls.cross_entropy, backend.asarray(z), backend.asarray(y), epsilon=0.1, reduction="none")
    )
    if loss.dtype != np.float64:
        pytest.skip("this backend computes in float32 here")
    # 1e6 + z is not exactly representable: compare with the shifted inputs as rounded.
    shifted = z + 1e6
    ref_loss, _ = cross_entropy_rows(shifted - 1e6, y, epsilon=0.1, reduction="none")
    loss_shifted = backend.to_numpy(
        backend.call(ls.cross_entropy, backend.asarray(shifted), backend.asarray(y), epsilon=0.1, reduction="none")
    )
    np.testing.assert_allclose(loss_shifted, ref_loss, rtol=1e-14, atol=0)


def test_float32_in_float32_out(backend, rng):
    z = rng.normal(size=(4, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=4)
    loss, grad = backend.call(ls.cross_entropy_with_grad, backend.asarray(z), backend.asarray(y), epsilon=0.1)
    assert loss.dtype == backend.dtype(np.float32)
    assert grad.dtype == backend.dtype(np.float32)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", ["cross_entropy", "kl_divergence", "binary_cross_entropy"])
def test_reduced_results_are_zero_dimensional_arrays(rng, name, reduction):
    # The array API returns 0-d arrays from reductions; NumPy alone would give scalars.
    z = rng.normal(size=(3, 4)).astype(np.float32)
    targets = rng.integers(0, 4, size=3) if name != "binary_cross_entropy" else (z > 0).astype(np.float32)
    for where in (None, np.ones((3, 4), bool)):
        options = {"where": where} if where is not None and name != "binary_cross_entropy" else {}
        loss = getattr(ls, name)(z, targets, epsilon=0.1, reduction=reduction, **options)
        assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == np.float32
