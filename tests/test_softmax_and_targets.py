"""one_hot, logsumexp, log_softmax, softmax, smooth_labels, soft_targets on every backend.

References: scipy.special for the softmax family, ``np.eye`` and the written-out smoothing
formulas for the targets.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import labelsmooth as ls


def tol(result):
    return {"rtol": 2e-6, "atol": 1e-7} if result.dtype == np.float32 else {"rtol": 1e-13, "atol": 1e-15}


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("name", ["logsumexp", "log_softmax", "softmax"])
def test_softmax_family_matches_scipy(backend, rng, name, axis):
    x = rng.normal(scale=5.0, size=(4, 6, 3))
    fn = getattr(ls, name)
    got = backend.call(fn, backend.asarray(x), axis=axis)
    assert backend.is_native(got)
    got_np = backend.to_numpy(got)
    expected = getattr(special, name)(x, axis=axis)
    assert got_np.shape == expected.shape
    np.testing.assert_allclose(got_np, expected, **tol(got_np))


def test_logsumexp_keepdims(backend, rng):
    x = rng.normal(size=(3, 5))
    got = backend.to_numpy(backend.call(ls.logsumexp, backend.asarray(x), axis=0, keepdims=True))
    np.testing.assert_allclose(got, special.logsumexp(x, axis=0, keepdims=True), **tol(got))


def test_softmax_family_ieee_limits(backend):
    inf = np.inf
    x = np.array([[0.0, -inf, 1.0], [-inf, -inf, -inf], [np.nan, 0.0, 1.0], [1e38, 1e38, -1e38]])
    lse = backend.to_numpy(backend.call(ls.logsumexp, backend.asarray(x)))
    p = backend.to_numpy(backend.call(ls.softmax, backend.asarray(x)))
    logp = backend.to_numpy(backend.call(ls.log_softmax, backend.asarray(x)))
    # A -inf logit beside finite ones: probability exactly 0, log-probability -inf.
    assert p[0, 1] == 0.0 and logp[0, 1] == -inf
    np.testing.assert_allclose(lse[0], np.log(1 + np.e), **tol(lse))
    # A row of all -inf: logsumexp is -inf.
    assert lse[1] == -inf
    # NaN stays in its row.
    assert np.isnan(lse[2]) and np.all(np.isnan(p[2]))
    assert np.all(np.isfinite(p[[0, 3]]))
    np.testing.assert_allclose(lse[3], 1e38, rtol=1e-7)
    np.testing.assert_allclose(p[3], [0.5, 0.5, 0.0])


def test_logsumexp_keeps_relative_precision_of_dominated_rows(eager_backend):
    # log(1 + e^-50) = e^-50 to full precision; a plain log(sum) gives exactly 0.
    x = np.array([0.0, -50.0])
    got = eager_backend.to_numpy(ls.logsumexp(eager_backend.asarray(x)))
    if got.dtype == np.float64:
        np.testing.assert_allclose(got, np.log1p(np.exp(-50.0)), rtol=1e-15)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot_matches_eye(backend, rng, axis):
    y = rng.integers(0, 4, size=(3, 2))
    got = backend.call(ls.one_hot, backend.asarray(y), 4, axis=axis)
    assert backend.is_native(got)
    got_np = backend.to_numpy(got)
    expected = np.moveaxis(np.eye(4)[y], -1, axis)
    np.testing.assert_array_equal(got_np, expected)


def test_one_hot_dtype(backend):
    y = backend.asarray(np.array([0, 2]))
    default = backend.call(ls.one_hot, y, 3)
    info = backend.xp.__array_namespace_info__().default_dtypes()
    assert default.dtype == info["real floating"]
    f32 = backend.call(ls.one_hot, y, 3, dtype=backend.xp.float32)
    assert f32.dtype == backend.xp.float32


@pytest.mark.parametrize("prior_kind", [None, "others", "array"])
def test_smooth_labels_formula(backend, rng, prior_kind):
    k = 5
    q = rng.dirichlet(np.ones(k), size=4)
    prior = {"array": rng.dirichlet(np.ones(k)), "others": "others", None: None}[prior_kind]
    eps = 0.3
    if prior_kind is None:
        expected = (1 - eps) * q + eps / k
    elif prior_kind == "others":
        expected = (1 - eps) * q + eps * (1 - q) / (k - 1)
    else:
        expected = (1 - eps) * q + eps * prior
    arg = backend.asarray(prior) if prior_kind == "array" else prior
    got = backend.call(ls.smooth_labels, backend.asarray(q), eps, prior=arg)
    assert backend.is_native(got)
    got_np = backend.to_numpy(got)
    np.testing.assert_allclose(got_np, expected, **tol(got_np))


def test_smooth_labels_per_sample_epsilon_and_axis(backend, rng):
    q = rng.dirichlet(np.ones(3), size=(4, 2))  # (4, 2, 3)
    q_axis1 = np.moveaxis(q, -1, 1)  # (4, 3, 2)
    eps = rng.uniform(size=(4, 2))
    expected = (1 - eps[..., None]) * q + eps[..., None] / 3
    got = backend.to_numpy(backend.call(ls.smooth_labels, backend.asarray(q_axis1), backend.asarray(eps), axis=1))
    np.testing.assert_allclose(got, np.moveaxis(expected, -1, 1), **tol(got))


@pytest.mark.parametrize("prior_kind", [None, "others"])
def test_soft_targets_formula(backend, rng, prior_kind):
    y = rng.integers(0, 6, size=(2, 3))
    eps = 0.2
    onehot = np.eye(6)[y]
    if prior_kind is None:
        expected = onehot * (1 - eps) + eps / 6
    else:
        expected = np.where(onehot == 1, 1 - eps, eps / 5)
    got = backend.call(ls.soft_targets, backend.asarray(y), 6, epsilon=eps, prior=prior_kind, axis=1)
    assert backend.is_native(got)
    got_np = backend.to_numpy(got)
    np.testing.assert_allclose(got_np, np.moveaxis(expected, -1, 1), **tol(got_np))
    # Every row is a distribution.
    np.testing.assert_allclose(got_np.sum(axis=1), 1.0, **tol(got_np))
