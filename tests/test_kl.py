"""KL divergence to the smoothed targets, against PyTorch's kl_div, the dense oracle and mpmath."""

from __future__ import annotations

import numpy as np
import pytest
from _formulas import dense_smoothed, kl_divergence_rows

import labelsmooth as ls

torch = pytest.importorskip("torch")
F = torch.nn.functional

K = 5
PRIOR = np.array([0.1, 0.3, 0.2, 0.25, 0.15])


def dense_targets(targets, eps, prior, allowed=None):
    """q' of the one dense oracle (``tests/_formulas.py``), K classes."""
    return dense_smoothed(targets, K, eps, prior, allowed)


def dense_kl(z, targets, *, eps=0.0, prior=None, **options):
    """sum_k w_k q'_k (log q'_k - log p_k) per sample; "mean" divides as cross_entropy does."""
    return kl_divergence_rows(z, targets, epsilon=eps, prior=prior, **options)


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
    assert float(ls.kl_divergence(logits, labels, epsilon=eps, prior=prior)) == pytest.approx(
        expected, rel=1e-12, abs=1e-15
    )
    expected_sum = F.kl_div(log_p, torch.tensor(q), reduction="sum").item()
    assert float(ls.kl_divergence(logits, labels, epsilon=eps, prior=prior, reduction="sum")) == pytest.approx(
        expected_sum, rel=1e-12, abs=1e-15
    )
    expected_rows = F.kl_div(log_p, torch.tensor(q), reduction="none").sum(1).numpy()
    np.testing.assert_allclose(
        ls.kl_divergence(logits, labels, epsilon=eps, prior=prior, reduction="none"),
        expected_rows,
        rtol=1e-12,
        atol=1e-15,
    )


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
    options = {
        "epsilon": eps,
        "prior": prior,
        "weight": w,
        "ignore_index": -100,
        "where": where,
        "reduction": reduction,
    }
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
    np.testing.assert_allclose(
        np.asarray(grad), np.asarray(ls.cross_entropy_grad(z, y, **options)), rtol=1e-5, atol=1e-7
    )


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
        numeric = {
            k: (w if k == "weight" else PRIOR if k == "prior" and not isinstance(v, str) else v)
            for k, v in options.items()
        }
        expected = dense_kl(
            z,
            targets,
            eps=numeric.get("epsilon", 0.0),
            prior=numeric.get("prior"),
            weight=numeric.get("weight"),
            reduction=numeric.get("reduction", "mean"),
        )
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


def test_public():
    assert "kl_divergence" in ls.__all__


# --- near the optimum, against mpmath at 50 digits ---------------------------------------------
# H(q', p) - H(q') loses every digit there (relative error 1e-2 where the logits sit 1e-6 from
# log q'); the divergence is summed from non-negative terms instead. Its error is then set by
# the conditioning of KL itself: perturbing z_k or log q'_k by one rounding moves the value by
# about q'_k |r_k| u (r_k = log q'_k - log p_k), i.e. relative 2 u |log q'| / |r| near p = q'.

mpmath = pytest.importorskip("mpmath")
U64 = 2.0**-53
DYADIC_PRIOR = np.array([0.125, 0.25, 0.0625, 0.5, 0.0625])  # sums to exactly 1 in float64
DYADIC_ROWS = np.array([[0.5, 0.25, 0.125, 0.0625, 0.0625], [0.0, 0.75, 0.0, 0.125, 0.125], [0.0, 0.0, 1.0, 0.0, 0.0]])


def exact_targets(targets, eps, prior, allowed):
    """q' rows in mpmath (50 digits) from the exact values of the inputs (class axis last)."""
    with mpmath.workdps(50):
        return _exact_targets(np.asarray(targets), eps, prior, allowed)


def _exact_targets(targets, eps, prior, allowed):
    rows = []
    for i in range(targets.shape[0]):
        mask = [bool(a) for a in np.broadcast_to(allowed, (targets.shape[0], K))[i]]
        if np.issubdtype(targets.dtype, np.integer):
            q = [mpmath.mpf(int(k == targets[i])) for k in range(K)]
        else:
            q = [mpmath.mpf(float(v)) for v in targets[i]]
        count = sum(mask)
        if prior is None:
            u = [mpmath.mpf(m) / count for m in mask]
        elif isinstance(prior, str):
            u = [(1 - qk) / (count - 1) if m else mpmath.mpf(0) for qk, m in zip(q, mask)]
        else:
            raw = [mpmath.mpf(float(v)) if m else mpmath.mpf(0) for v, m in zip(prior, mask)]
            u = [v / mpmath.fsum(raw) for v in raw] if not all(mask) else raw
        e = mpmath.mpf(float(np.broadcast_to(eps, targets.shape[:1])[i]))
        rows.append([(1 - e) * qk + e * uk for qk, uk in zip(q, u)])
    return rows


def exact_kl_rows(z, rows, allowed, weight=None):
    """Per-sample sum_k w_k q'_k log(q'_k / p_k), p = softmax over the allowed classes (mpmath,
    50 digits), and the change one rounding of each input quantity makes (the error scale)."""
    with mpmath.workdps(50):
        return _exact_kl_rows(z, rows, allowed, np.ones(K) if weight is None else weight)


def _exact_kl_rows(z, rows, allowed, w):
    out, scale = [], []
    for i, q in enumerate(rows):
        mask = np.broadcast_to(allowed, z.shape)[i]
        zs = [mpmath.mpf(float(v)) for v in z[i]]
        top = max(v for v, m in zip(zs, mask) if m)
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v, m in zip(zs, mask) if m))
        ws = [mpmath.mpf(float(v)) for v in w]
        out.append(mpmath.fsum(ws[k] * qk * (mpmath.log(qk) - (zs[k] - lse)) for k, qk in enumerate(q) if qk != 0))
        # One rounding in each of log q'_k, z_k - max z and log s shifts r_k = log q'_k - log p_k
        # by u times the bracket; the divergence moves by that times dKL/dr_k, which is
        # q'_k - p_k for sum_k q'_k (r_k + expm1(-r_k)) and w_k q'_k for the weighted sum.
        unweighted = all(v == 1 for v in ws)
        terms = []
        for k, qk in enumerate(q):
            if not mask[k]:
                continue
            p_k = mpmath.exp(zs[k] - lse)
            slope = abs(qk - p_k) if unweighted else ws[k] * qk
            log_q = abs(mpmath.log(qk)) if qk != 0 else 0
            terms.append(slope * (log_q + abs(zs[k] - top) + abs(lse - top) + 1))
        scale.append(mpmath.fsum(terms))
    return out, scale


def relative_errors(result, exact):
    with mpmath.workdps(50):
        return np.array([float(abs(mpmath.mpf(float(r)) - e) / abs(e)) for r, e in zip(result, exact)])


NEAR_CASES = {
    "uniform": ({"epsilon": 0.1}, "labels"),
    "others": ({"epsilon": 0.1, "prior": "others"}, "labels"),
    "dyadic_prior": ({"epsilon": 0.25, "prior": DYADIC_PRIOR}, "labels"),
    "per_sample_eps": ({"epsilon": np.array([0.05, 0.1, 0.3, 0.5, 0.9, 1.0])}, "labels"),
    "masked": ({"epsilon": 0.2, "where": np.array([True, True, False, True, True])}, "labels"),
    "probabilities": ({"epsilon": 0.0}, "probabilities"),
    "smoothed_probabilities": ({"epsilon": 0.5}, "probabilities"),
}


def near_optimum(case, delta, rng):
    options, kind = NEAR_CASES[case]
    options = dict(options)
    allowed = options.get("where", np.ones(K, bool))
    if kind == "labels":
        targets = rng.integers(0, K, size=6)
        targets = np.where(allowed[targets], targets, 0)
    else:
        targets = np.concatenate([DYADIC_ROWS, DYADIC_ROWS[::-1]])
        options["prior"] = None
    q = dense_targets(targets, options.get("epsilon", 0.0), options.get("prior"), allowed)
    with np.errstate(divide="ignore"):
        z = np.where(q > 0, np.log(np.where(q > 0, q, 1.0)), -30.0) + delta * rng.standard_normal(q.shape)
    z = np.where(allowed, z, -np.inf)
    exact, bound = exact_kl_rows(
        z, exact_targets(targets, options.get("epsilon", 0.0), options.get("prior"), allowed), allowed
    )
    return z, targets, options, exact, bound


@pytest.mark.parametrize("delta", [1e-6, 4e-5], ids=["1e-6", "KL~1e-10"])
@pytest.mark.parametrize("case", NEAR_CASES)
def test_near_optimum_matches_mpmath_to_its_conditioning(rng, case, delta):
    z, targets, options, exact, bound = near_optimum(case, delta, rng)
    result = ls.kl_divergence(z, targets, reduction="none", **options)
    errors = relative_errors(result, exact)
    # Four roundings of each quantity the divergence depends on: what a backward-stable
    # evaluation guarantees (H(q', p) - H(q') misses it by five to seven orders).
    allowed_error = np.array([4 * U64 * float(b / e) for b, e in zip(bound, exact)])
    assert np.all(errors <= allowed_error), (errors, allowed_error)
    assert np.all(np.asarray(result) >= 0)
    ceiling = 2e-9 if delta == 1e-6 else 5e-11
    assert errors.max() < ceiling
    mean = ls.kl_divergence(z, targets, **options)
    assert float(relative_errors([mean], [mpmath.fsum(exact) / len(exact)])[0]) < ceiling


def test_kl_of_1e_minus_10_to_11_digits():
    """Logits log q' + 4e-5 (e_3 - e_0) give KL = 1.04e-10: relative error 6.5e-12 measured
    (H(q', p) - H(q') gives 1e-6); 4 u kappa is 1e-10 here, so float64 cannot promise more."""
    q = dense_targets(np.array([3]), 0.1, None)
    step = np.array([[-4e-5, 0.0, 0.0, 4e-5, 0.0]])
    z = np.log(q) + step
    exact, _ = exact_kl_rows(z, exact_targets(np.array([3]), 0.1, None, np.ones(K, bool)), np.ones(K, bool))
    assert 1e-11 < float(exact[0]) < 1e-9
    result = ls.kl_divergence(z, np.array([3]), epsilon=0.1)
    assert relative_errors([result], exact)[0] < 1e-11


@pytest.mark.parametrize("prior", [None, "others", DYADIC_PRIOR], ids=["uniform", "others", "dyadic"])
def test_never_negative_near_and_at_the_optimum(rng, prior):
    """Integer labels, and one-hot probability rows (which sum to exactly 1)."""
    y = rng.integers(0, K, size=200)
    eps = rng.choice([0.0, 1e-12, 1e-3, 0.1, 0.5, 1.0], size=200)
    q = dense_targets(y, eps, prior)
    scale = 10.0 ** rng.uniform(-12, -2, size=(200, 1))
    with np.errstate(divide="ignore"):
        log_q = np.log(q)
    for z in (log_q, log_q + scale * rng.standard_normal(q.shape), log_q + 1e6):
        z = np.where(np.isfinite(z), z, -40.0)
        for targets in (y, np.eye(K)[y]):
            result = np.asarray(ls.kl_divergence(z, targets, epsilon=eps, prior=prior, reduction="none"))
            assert np.all(result >= 0.0), result.min()


def test_weighted_near_optimum_matches_mpmath(rng):
    """Weighted, the divergence is first order in r_k and has no sign: summed as written."""
    w = rng.uniform(0.5, 2.0, size=K)
    y = rng.integers(0, K, size=6)
    q = dense_targets(y, 0.1, None)
    z = np.log(q) + 1e-6 * rng.standard_normal(q.shape)
    allowed = np.ones(K, bool)
    exact, bound = exact_kl_rows(z, exact_targets(y, 0.1, None, allowed), allowed, weight=w)
    result = ls.kl_divergence(z, y, epsilon=0.1, weight=w, reduction="none")
    errors = relative_errors(result, exact)
    assert np.all(errors <= [4 * U64 * float(b / abs(e)) for b, e in zip(bound, exact)])
    assert errors.max() < 1e-8


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_float32_near_optimum_is_float32_rounding(rng, name):
    """float32 logits, reduced in float64: only the final rounding to float32 remains."""
    y = rng.integers(0, K, size=6)
    q = dense_targets(y, 0.1, None)
    z = (np.log(q) + 1e-5 * rng.standard_normal(q.shape)).astype(np.float32)
    allowed = np.ones(K, bool)
    exact, _ = exact_kl_rows(z.astype(np.float64), exact_targets(y, 0.1, None, allowed), allowed)
    zb, yb = (torch.tensor(z), torch.tensor(y)) if name == "torch" else (z, y)
    result = ls.kl_divergence(zb, yb, epsilon=0.1, reduction="none")
    assert result.dtype == zb.dtype
    assert relative_errors(np.asarray(result, dtype=np.float64), exact).max() <= 2.0**-24 * 1.01


def test_unnormalised_probability_rows_match_torch_kl_div(rng):
    """sum_k q'_k log(q'_k/p_k) as written, also for rows not summing to 1 (the mass defect)."""
    z = rng.normal(size=(4, K))
    rows = rng.uniform(0.0, 1.0, size=(4, K))
    rows[0] *= 0.7 / rows[0].sum()
    rows[1, 2] = 0.0
    for eps, prior in [(0.0, None), (0.3, None), (0.3, "others")]:
        q = dense_targets(rows, eps, prior)
        log_p = F.log_softmax(torch.tensor(z), dim=1)
        expected = F.kl_div(log_p, torch.tensor(q), reduction="none").sum(1).numpy()
        np.testing.assert_allclose(
            ls.kl_divergence(z, rows, epsilon=eps, prior=prior, reduction="none"), expected, rtol=1e-13
        )


def test_prior_that_sums_to_one_only_within_tolerance_is_taken_as_given(rng):
    z = rng.normal(size=(4, K)).astype(np.float32)
    y = rng.integers(0, K, size=4)
    prior = (DYADIC_PRIOR * (1 + 2e-4)).astype(np.float32)  # accepted: within sqrt(eps32)
    q = 0.6 * np.eye(K)[y] + 0.4 * prior.astype(np.float64)
    log_p = F.log_softmax(torch.tensor(z, dtype=torch.float64), dim=1)
    expected = F.kl_div(log_p, torch.tensor(q), reduction="none").sum(1).numpy()
    result = ls.kl_divergence(z, y, epsilon=0.4, prior=prior, reduction="none")
    np.testing.assert_allclose(result, expected, rtol=3e-7)


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize(
    "logits", [np.zeros((2, 4)), np.array([[1.0, 1.0, 1.0, 0.0], [2.0, 0.0, 2.0, 2.0]])], ids=["all_zero", "three_tied"]
)
def test_gradient_at_tied_maxima_is_p_minus_q(framework, logits):
    """Hand values: p = softmax(z) written out, q' = 0.9 e_y + 0.025, mean over 2 samples."""
    y = np.array([0, 2])
    e = np.exp(logits)
    expected = (e / e.sum(1, keepdims=True) - (0.9 * np.eye(4)[y] + 0.025)) / 2
    if framework == "torch":
        zt = torch.tensor(logits, requires_grad=True)
        ls.kl_divergence(zt, torch.tensor(y), epsilon=0.1).backward()
        grad = zt.grad.numpy()
    else:
        jax = pytest.importorskip("jax")
        with jax.enable_x64(True):
            import jax.numpy as jnp

            grad = np.asarray(jax.grad(lambda a: ls.kl_divergence(a, jnp.asarray(y), epsilon=0.1))(jnp.asarray(logits)))
    np.testing.assert_allclose(grad, expected, rtol=1e-14, atol=1e-16)
