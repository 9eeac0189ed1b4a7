"""The analytic gradient equals autodiff of the loss, and both the dense oracle's gradient.

torch.autograd over the whole option grid; jax.grad eager over the grid's "mean" half and the
fully optioned cases, under ``jax.jit`` (one compilation each) over every option one at a
time and all of them together.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _formulas import cross_entropy_rows

import labelsmooth as ls

OPTION_GRID = list(
    itertools.product(
        [0.0, 0.2],  # epsilon
        [None, "others", "array"],  # prior
        [False, True],  # weight
        [None, 1],  # ignore_index
        [False, True],  # where
        ["mean", "sum", "none"],  # reduction
    )
)


def make_case(rng, prior, weighted, ignore_index, with_where):
    n, k = 6, 5
    z = rng.normal(scale=2.0, size=(n, k))
    y = rng.integers(0, k, size=n)
    options = {}
    if with_where:
        where = np.ones((n, k), bool)
        where[:, 4] = False
        where[0, 3] = False
        y = np.where(y >= 3, 0, y)
        z = np.where(where, z, -np.inf)
        options["where"] = where
    if prior == "array":
        options["prior"] = rng.dirichlet(np.ones(k))
    elif prior is not None:
        options["prior"] = prior
    if weighted:
        options["weight"] = rng.uniform(0.5, 2.0, size=k)
    if ignore_index is not None:
        y[2] = ignore_index
        options["ignore_index"] = ignore_index
    return z, y, options


def oracle_grad(z, y, epsilon, reduction, options):
    """The oracle's gradient (of the sum of the losses for reduction="none")."""
    _, grad = cross_entropy_rows(z, y, epsilon=epsilon, reduction=reduction, **options)
    return grad


# Under jax.jit: the plain case, every option on its own, and all of them together.
JIT_GRID = [
    (0.0, None, False, None, False, "mean"),
    (0.2, None, False, None, False, "mean"),
    (0.2, "others", False, None, False, "mean"),
    (0.2, "array", False, None, False, "mean"),
    (0.2, None, True, None, False, "mean"),
    (0.2, None, False, 1, False, "mean"),
    (0.2, None, False, None, True, "mean"),
    (0.2, None, False, None, False, "sum"),
    (0.2, None, False, None, False, "none"),
    (0.2, "array", True, 1, True, "mean"),
    (0.2, "others", True, 1, True, "sum"),
    (0.2, "array", True, 1, True, "none"),
]


@pytest.mark.parametrize(("epsilon", "prior", "weighted", "ignore_index", "with_where", "reduction"), OPTION_GRID)
def test_torch_autograd_equals_analytic_gradient(rng, epsilon, prior, weighted, ignore_index, with_where, reduction):
    torch = pytest.importorskip("torch")
    z, y, numpy_options = make_case(rng, prior, weighted, ignore_index, with_where)
    options = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in numpy_options.items()}
    zt = torch.tensor(z, requires_grad=True)
    loss = ls.cross_entropy(zt, torch.tensor(y), epsilon=epsilon, reduction=reduction, **options)
    (auto,) = torch.autograd.grad(loss.sum(), zt)
    analytic = ls.cross_entropy_grad(zt.detach(), torch.tensor(y), epsilon=epsilon, reduction=reduction, **options)
    np.testing.assert_allclose(analytic.numpy(), auto.numpy(), rtol=1e-12, atol=1e-15)
    expected = oracle_grad(z, y, epsilon, reduction, numpy_options)
    np.testing.assert_allclose(analytic.numpy(), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.slow  # a JAX compilation per case
@pytest.mark.parametrize(
    ("jit", "epsilon", "prior", "weighted", "ignore_index", "with_where", "reduction"),
    [
        *[pytest.param(False, *c, id=f"eager-{'-'.join(map(str, c))}") for c in OPTION_GRID if c[5] == "mean"],
        *[
            pytest.param(False, *c, id=f"eager-{'-'.join(map(str, c))}")
            for c in OPTION_GRID
            if c[5] != "mean" and c[0] and c[2] and c[3]
        ],
        *[pytest.param(True, *c, id=f"jit-{'-'.join(map(str, c))}") for c in JIT_GRID],
    ],
)
def test_jax_grad_equals_analytic_gradient(rng, jit, epsilon, prior, weighted, ignore_index, with_where, reduction):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    z, y, numpy_options = make_case(rng, prior, weighted, ignore_index, with_where)
    options = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in numpy_options.items()}
    arrays = {k: v for k, v in options.items() if isinstance(v, jax.Array)}
    static = {k: v for k, v in options.items() if k not in arrays}

    def loss(logits, labels, arrays):
        # For reduction="none" the analytic gradient is that of the sum of the losses.
        return jnp.sum(ls.cross_entropy(logits, labels, epsilon=epsilon, reduction=reduction, **arrays, **static))

    def grad(logits, labels, arrays):
        return ls.cross_entropy_grad(logits, labels, epsilon=epsilon, reduction=reduction, **arrays, **static)

    auto_fn, analytic_fn = jax.grad(loss), grad
    if jit:
        auto_fn, analytic_fn = jax.jit(auto_fn), jax.jit(analytic_fn)
    zj, yj = jnp.asarray(z, dtype=jnp.float32), jnp.asarray(y)
    auto = np.asarray(auto_fn(zj, yj, arrays))
    analytic = np.asarray(analytic_fn(zj, yj, arrays))
    np.testing.assert_allclose(analytic, auto, rtol=2e-5, atol=2e-6)
    expected = oracle_grad(np.asarray(zj, dtype=np.float64), y, epsilon, reduction, numpy_options)
    np.testing.assert_allclose(analytic, expected, rtol=2e-5, atol=2e-6)


def test_torch_autograd_probability_targets(rng):
    torch = pytest.importorskip("torch")
    z = torch.tensor(rng.normal(size=(4, 3, 5)), requires_grad=True)
    q = torch.tensor(np.moveaxis(rng.dirichlet(np.ones(3), size=(4, 5)), -1, 1))
    w = torch.tensor(rng.uniform(0.5, 2.0, size=3))
    loss = ls.cross_entropy(z, q, epsilon=0.3, axis=1, weight=w)
    (auto,) = torch.autograd.grad(loss, z)
    analytic = ls.cross_entropy_grad(z.detach(), q, epsilon=0.3, axis=1, weight=w)
    np.testing.assert_allclose(analytic.numpy(), auto.numpy(), rtol=1e-12, atol=1e-15)
    class_last = (np.moveaxis(a.detach().numpy(), 1, -1) for a in (z, q))
    _, expected = cross_entropy_rows(*class_last, epsilon=0.3, weight=w.numpy())
    np.testing.assert_allclose(np.moveaxis(analytic.numpy(), 1, -1), expected, rtol=1e-12, atol=1e-14)
