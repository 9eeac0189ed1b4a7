"""KL divergence to the smoothed targets, against PyTorch's kl_div and a dense reference."""

from __future__ import annotations

import numpy as np
import pytest

import labelsmooth as ls

torch = pytest.importorskip("torch")
F = torch.nn.functional

K = 5
PRIOR = np.array([0.1, 0.3, 0.2, 0.25, 0.15])


def dense_targets(targets, eps, prior, allowed=None):
    """q' written out from the definitions (class axis last, float64)."""
    targets = np.asarray(targets)
    if np.issubdtype(targets.dtype, np.integer):
        q = np.eye(K)[np.clip(targets, 0, K - 1)]
    else:
        q = targets.astype(np.float64)
    allowed = np.ones(q.shape, bool) if allowed is None else np.broadcast_to(allowed, q.shape)
    count = allowed.sum(-1, keepdims=True)
    if prior is None:
        u = allowed / count
    elif isinstance(prior, str):
        u = np.where(allowed, 1.0 - q, 0.0) / (count - 1)
    else:
        u = np.where(allowed, prior, 0.0)
        u = u / u.sum(-1, keepdims=True)
    eps = np.asarray(eps, dtype=np.float64)
    eps = eps[..., None] if eps.ndim else eps
    return (1 - eps) * q + eps * u


def log_softmax(z, allowed=None):
    z = np.asarray(z, dtype=np.float64)
    if allowed is not None:
        z = np.where(allowed, z, -np.inf)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def dense_kl(z, targets, *, eps=0.0, prior=None, weight=None, ignore_index=None, where=None, reduction="mean"):
    """sum_k w_k q'_k (log q'_k - log p_k) per sample; "mean" divides as cross_entropy does."""
    q = dense_targets(targets, eps, prior, where)
    logp = log_softmax(z, where)
    w = np.ones(K) if weight is None else np.asarray(weight, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, w * q * (np.log(np.where(q > 0, q, 1.0)) - logp), 0.0)
    per_sample = terms.sum(-1)
    is_labels = np.issubdtype(np.asarray(targets).dtype, np.integer)
    counted = np.ones(per_sample.shape)
    if is_labels:
        labels = np.asarray(targets)
        counted = w[np.clip(labels, 0, K - 1)]
        if ignore_index is not None:
            counted = np.where(labels == ignore_index, 0.0, counted)
            per_sample = np.where(labels == ignore_index, 0.0, per_sample)
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    return per_sample.sum() / counted.sum()


@pytest.fixture
def logits(rng):
    return rng.normal(scale=2.0, size=(7, K))


@pytest.fixture
def labels(rng):
    return rng.integers(0, K, size=7)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("prior", [None, "others", PRIOR], ids=["uniform", "others", "array"])
def test_matches_torch_kl_div_batchmean(logits, labels, eps, prior):
    q = dense_targets(labels, eps, prior)
    log_p = F.log_softmax(torch.tensor(logits), dim=1)
    expected = F.kl_div(log_p, torch.tensor(q), reduction="batchmean").item()
    assert float(ls.kl_divergence(logits, labels, epsilon=eps, prior=prior)) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    expected_sum = F.kl_div(log_p, torch.tensor(q), reduction="sum").item()
    assert float(ls.kl_divergence(logits, labels, epsilon=eps, prior=prior, reduction="sum")) == pytest.approx(
        expected_sum, rel=1e-12, abs=1e-15)
    expected_rows = F.kl_div(log_p, torch.tensor(q), reduction="none").sum(1).numpy()
    np.testing.assert_allclose(ls.kl_divergence(logits, labels, epsilon=eps, prior=prior, reduction="none"),
                               expected_rows, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_probability_targets_match_torch(logits, rng, eps):
    probs = rng.dirichlet(np.ones(K), size=7)
    probs[0] = [0.0, 0.0, 1.0, 0.0, 0.0]  # zeros exercise 0 log 0 = 0
    log_p = F.log_softmax(torch.tensor(logits), dim=1)
    expected = F.kl_div(log_p, torch.tensor(dense_targets(probs, eps, None)), reduction="batchmean").item()
    assert float(ls.kl_divergence(logits, probs, epsilon=eps)) == pytest.approx(expected, rel=1e-12)


def test_class_axis_one_and_batchmean_over_n(rng):
    z = rng.normal(size=(3, K, 4))
    y = rng.integers(0, K, size=(3, 4))
    q = np.moveaxis(dense_targets(y, 0.1, None), -1, 1)
    log_p = F.log_softmax(torch.tensor(z), dim=1)
    total = F.kl_div(log_p, torch.tensor(q), reduction="sum").item()
    ours_sum = float(ls.kl_divergence(z, y, epsilon=0.1, axis=1, reduction="sum"))
    assert ours_sum == pytest.approx(total, rel=1e-12)
    # PyTorch's batchmean divides by N = 3 only; our mean divides by the 12 samples.
    batchmean = F.kl_div(log_p, torch.tensor(q), reduction="batchmean").item()
    assert ours_sum / 3 == pytest.approx(batchmean, rel=1e-12)
    assert float(ls.kl_divergence(z, y, epsilon=0.1, axis=1)) == pytest.approx(total / 12, rel=1e-12)


@pytest.mark.parametrize("prior", [None, "others", PRIOR], ids=["uniform", "others", "array"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_weights_ignore_index_and_where_follow_the_stated_definition(rng, prior, reduction):
    z = rng.normal(scale=2.0, size=(8, K))
    where = np.ones((8, K), bool)
    where[:, 4] = False
    where[2, 1] = False
    z[:, 4] = -np.inf
    y = rng.integers(0, 4, size=8)
    y[2] = 0
    y[5] = -100
    w = rng.uniform(0.5, 2.0, size=K)
    eps = rng.uniform(0.0, 0.6, size=8)
    options = {"epsilon": eps, "prior": prior, "weight": w, "ignore_index": -100, "where": where,
               "reduction": reduction}
    expected = dense_kl(z, y, eps=eps, prior=prior, weight=w, ignore_index=-100, where=where, reduction=reduction)
    result = ls.kl_divergence(z, y, **options)
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-14)
    assert np.all(np.isfinite(result))


def test_gradient_is_cross_entropy_grad_under_torch_autograd(rng):
    z = torch.tensor(rng.normal(size=(6, K)), requires_grad=True)
    y = torch.tensor(rng.integers(0, K, size=6))
    y[1] = -1
    w = torch.tensor(rng.uniform(0.5, 2.0, size=K))
    options = {"epsilon": 0.2, "prior": "others", "weight": w, "ignore_index": -1}
    ls.kl_divergence(z, y, **options).backward()
    torch.testing.assert_close(z.grad, ls.cross_entropy_grad(z.detach(), y, **options), rtol=1e-12, atol=1e-15)


def test_gradient_is_cross_entropy_grad_under_jax_grad(rng):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    z = jnp.asarray(rng.normal(size=(6, K)), dtype=jnp.float32)
    y = jnp.asarray(rng.integers(0, K, size=6))
    prior = jnp.asarray(PRIOR, dtype=jnp.float32)
    w = jnp.asarray(rng.uniform(0.5, 2.0, size=K), dtype=jnp.float32)
    options = {"epsilon": 0.3, "prior": prior, "weight": w}
    grad = jax.grad(lambda logits: ls.kl_divergence(logits, y, **options))(z)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(ls.cross_entropy_grad(z, y, **options)),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("prior", [None, "others", PRIOR], ids=["uniform", "others", "array"])
def test_zero_at_the_optimum(labels, prior):
    q = dense_targets(labels, 0.1, prior)
    assert abs(float(ls.kl_divergence(np.log(q), labels, epsilon=0.1, prior=prior))) < 1e-15
    assert abs(float(ls.kl_divergence(np.log(q), q))) < 1e-15


def test_worked_example_in_bits():
    z = np.log([[0.1, 0.1, 0.1, 0.36, 0.34]])
    y = np.array([3])
    # Plain: H(q) = 0 so KL = CE = -log 0.36. Smoothed: CE - H(q') with q' = (0.02,0.02,0.02,0.92,0.02).
    q = np.array([0.02, 0.02, 0.02, 0.92, 0.02])
    entropy = -(q * np.log(q)).sum()
    assert float(ls.kl_divergence(z, y)) == pytest.approx(-np.log(0.36), rel=1e-15)
    assert float(ls.kl_divergence(z, y, epsilon=0.1)) == pytest.approx(1.0996504465365042 - entropy, rel=1e-13)


def test_every_backend_returns_native_arrays_equal_to_numpy(backend, rng):
    z = rng.normal(size=(4, K))
    y = rng.integers(0, K, size=4)
    w = rng.uniform(0.5, 2.0, size=K)
    probs = rng.dirichlet(np.ones(K), size=4)
    zb = backend.asarray(z)
    for targets, options in [
        (y, {"epsilon": 0.1}),
        (y, {"epsilon": 0.2, "prior": "others", "weight": backend.asarray(w), "reduction": "none"}),
        (y, {"epsilon": 0.2, "prior": backend.asarray(PRIOR), "reduction": "sum"}),
        (probs, {"epsilon": 0.1}),
    ]:
        result = backend.call(ls.kl_divergence, zb, backend.asarray(targets), **options)
        assert backend.is_native(result)
        numeric = {k: (w if k == "weight" else PRIOR if k == "prior" and not isinstance(v, str) else v)
                   for k, v in options.items()}
        expected = dense_kl(z, targets, eps=numeric.get("epsilon", 0.0), prior=numeric.get("prior"),
                            weight=numeric.get("weight"), reduction=numeric.get("reduction", "mean"))
        value = backend.to_numpy(result)
        tol = 1e-12 if value.dtype == np.float64 else 2e-6
        np.testing.assert_allclose(value, expected, rtol=tol, atol=tol)


def test_invalid_labels_poison_traced_results(backend):
    if backend.eager:
        pytest.skip("eager backends raise (tested below)")
    z = backend.asarray(np.zeros((2, K)))
    y = backend.asarray(np.array([1, K]))
    result = backend.to_numpy(backend.call(ls.kl_divergence, z, y, epsilon=0.1, reduction="none"))
    assert np.isfinite(result[0]) and np.isnan(result[1])


def test_dtype_is_preserved(rng):
    z = rng.normal(size=(4, K))
    y = rng.integers(0, K, size=4)
    expected = dense_kl(z.astype(np.float32).astype(np.float64), y, eps=0.1)
    result32 = ls.kl_divergence(z.astype(np.float32), y, epsilon=0.1)
    assert result32.dtype == np.float32
    assert result32 == pytest.approx(expected, rel=2e-7)
    z16 = torch.tensor(z, dtype=torch.bfloat16)
    result16 = ls.kl_divergence(z16, torch.tensor(y), epsilon=0.1)
    assert result16.dtype == torch.bfloat16
    assert float(result16) == float(torch.tensor(dense_kl(z16.double().numpy(), y, eps=0.1)).to(torch.bfloat16))


def test_errors_are_those_of_cross_entropy(logits, labels):
    with pytest.raises(ValueError, match=r"epsilon must be in \[0, 1\], got 2"):
        ls.kl_divergence(logits, labels, epsilon=2)
    with pytest.raises(ValueError, match="targets must be class indices"):
        ls.kl_divergence(logits, labels + K)
    with pytest.raises(TypeError, match="logits must have a real floating dtype"):
        ls.kl_divergence(labels[:, None], labels)
    with pytest.raises(ValueError, match="reduction must be one of"):
        ls.kl_divergence(logits, labels, reduction="batchmean")


def test_public_and_documented():
    assert "kl_divergence" in ls.__all__
    doc = ls.kl_divergence.__doc__
    assert "H(q', p) - H(q')" in doc and "batchmean" in doc and "Parameters" in doc


def test_docstring_examples_run():
    import doctest
    import importlib

    pytest.importorskip("array_api_strict")
    result = doctest.testmod(importlib.import_module("labelsmooth._kl"), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
