"""Binary (sigmoid) cross-entropy with label smoothing against PyTorch, Keras, mpmath."""

from __future__ import annotations

import numpy as np
import pytest

import labelsmooth as ls

torch = pytest.importorskip("torch")
F = torch.nn.functional

REDUCTIONS = ("mean", "sum", "none")


def smoothed(y, eps):
    """Keras / TF convention, written out: y (1 - eps) + eps / 2."""
    return np.asarray(y, dtype=np.float64) * (1.0 - np.asarray(eps)) + np.asarray(eps) / 2.0


def torch_loss_and_grad(z, y_smooth, weight, reduction):
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    wt = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    loss = F.binary_cross_entropy_with_logits(zt, torch.tensor(y_smooth), weight=wt, reduction=reduction)
    loss.sum().backward()
    return loss.detach().numpy(), zt.grad.numpy()


def numpy_reference(z, y_smooth, weight, reduction):
    """The textbook formula -y' log s - (1-y') log(1-s), for tame logits only."""
    s = 1.0 / (1.0 + np.exp(-z))
    loss = -(y_smooth * np.log(s) + (1.0 - y_smooth) * np.log1p(-s))
    grad = s - y_smooth
    if weight is not None:
        loss, grad = loss * weight, grad * weight
    if reduction == "none":
        return loss, grad
    if reduction == "sum":
        return loss.sum(), grad
    return loss.mean(), grad / z.size


def tolerance(dtype):
    return {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-6, np.dtype(np.float16): 2e-3}[np.dtype(dtype)]


@pytest.fixture
def data(rng):
    z = rng.normal(scale=4.0, size=(6, 5))
    z[0, :3] = [40.0, -40.0, 700.0]
    y = (rng.random((6, 5)) < 0.5).astype(np.float64)
    return z, y


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.35, 1.0])
@pytest.mark.parametrize("weight_shape", [None, (6, 5), (6, 1), (5,)])
def test_matches_torch_with_smoothed_targets(data, rng, reduction, eps, weight_shape):
    z, y = data
    weight = None if weight_shape is None else rng.uniform(0.0, 3.0, size=weight_shape)
    expected_loss, expected_grad = torch_loss_and_grad(z, smoothed(y, eps), weight, reduction)
    loss, grad = ls.binary_cross_entropy_with_grad(z, y, epsilon=eps, weight=weight, reduction=reduction)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-17)
    np.testing.assert_allclose(
        ls.binary_cross_entropy(z, y, epsilon=eps, weight=weight, reduction=reduction),
        expected_loss,
        rtol=1e-13,
        atol=1e-15,
    )
    np.testing.assert_allclose(
        ls.binary_cross_entropy_grad(z, y, epsilon=eps, weight=weight, reduction=reduction),
        expected_grad,
        rtol=1e-12,
        atol=1e-17,
    )


@pytest.mark.parametrize("targets_kind", ["float", "int", "bool", "soft"])
def test_target_kinds_match_torch(data, rng, targets_kind):
    z, y = data
    if targets_kind == "soft":
        y = rng.random(z.shape)
    targets = {"float": y, "soft": y, "int": y.astype(np.int32), "bool": y.astype(bool)}[targets_kind]
    expected_loss, expected_grad = torch_loss_and_grad(z, smoothed(y, 0.2), None, "mean")
    loss, grad = ls.binary_cross_entropy_with_grad(z, targets, epsilon=0.2)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-17)
    assert loss.dtype == grad.dtype == np.float64


def test_per_element_epsilon_matches_torch(data, rng):
    z, y = data
    eps = rng.uniform(0.0, 1.0, size=(6, 1))
    expected_loss, expected_grad = torch_loss_and_grad(z, smoothed(y, eps), None, "sum")
    loss, grad = ls.binary_cross_entropy_with_grad(z, y, epsilon=eps, reduction="sum")
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-17)


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.4])
def test_matches_keras_default_reduction(keras, rng, eps):
    """Keras averages over the last axis, then over the batch: our "mean" for 2-D inputs."""
    import jax
    import jax.numpy as jnp

    z = rng.normal(scale=3.0, size=(8, 7)).astype(np.float32)
    y = (rng.random((8, 7)) < 0.4).astype(np.float32)
    keras_loss = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=eps)
    expected = np.asarray(keras_loss(y, z))
    loss = ls.binary_cross_entropy(z, y, epsilon=eps)
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss, expected, rtol=3e-6)

    expected_grad = np.asarray(jax.grad(lambda logits: keras_loss(jnp.asarray(y), logits))(jnp.asarray(z)))
    np.testing.assert_allclose(ls.binary_cross_entropy_grad(z, y, epsilon=eps), expected_grad, rtol=2e-5, atol=1e-9)

    # reduction=None in Keras is the per-sample mean over the last axis.
    per_sample = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=eps, reduction=None)(y, z)
    ours = ls.binary_cross_entropy(z, y, epsilon=eps, reduction="none")
    assert ours.shape == z.shape
    np.testing.assert_allclose(ours.mean(axis=-1), np.asarray(per_sample), rtol=3e-6)


def test_keras_sample_weight_is_a_per_row_weight(keras, rng):
    z = rng.normal(scale=3.0, size=(8, 7)).astype(np.float32)
    y = (rng.random((8, 7)) < 0.4).astype(np.float32)
    sample_weight = rng.uniform(0.0, 2.0, size=8).astype(np.float32)
    expected = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1)(y, z, sample_weight=sample_weight)
    loss = ls.binary_cross_entropy(z, y, epsilon=0.1, weight=sample_weight[:, None])
    np.testing.assert_allclose(loss, np.asarray(expected), rtol=3e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradient_equals_jax_grad(rng, reduction):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    z = jnp.asarray(rng.normal(scale=3.0, size=(4, 3)), dtype=jnp.float32)
    y = jnp.asarray(rng.random((4, 3)), dtype=jnp.float32)
    w = jnp.asarray(rng.uniform(0.5, 2.0, size=(3,)), dtype=jnp.float32)

    def total(logits):
        return jnp.sum(ls.binary_cross_entropy(logits, y, epsilon=0.15, weight=w, reduction=reduction))

    expected = jax.grad(total)(z)
    grad = ls.binary_cross_entropy_grad(z, y, epsilon=0.15, weight=w, reduction=reduction)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), rtol=1e-5, atol=1e-8)
    jitted = jax.jit(
        lambda logits: ls.binary_cross_entropy_grad(logits, y, epsilon=0.15, weight=w, reduction=reduction)
    )(z)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(expected), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradient_equals_torch_autograd_through_our_loss(rng, reduction):
    z = torch.tensor(rng.normal(scale=3.0, size=(4, 3)), requires_grad=True)
    y = torch.tensor(rng.random((4, 3)))
    w = torch.tensor(rng.uniform(0.5, 2.0, size=(4, 1)))
    ls.binary_cross_entropy(z, y, epsilon=0.3, weight=w, reduction=reduction).sum().backward()
    grad = ls.binary_cross_entropy_grad(z.detach(), y, epsilon=0.3, weight=w, reduction=reduction)
    torch.testing.assert_close(grad, z.grad, rtol=1e-12, atol=1e-15)


def test_extreme_logits_against_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    z = np.array([-1e4, -745.0, -50.0, -40.0, -1e-8, 0.0, 1e-8, 40.0, 50.0, 745.0, 1e4])
    for y in (0.0, 1.0):
        for eps in (0.0, 0.1):
            target = y * (1 - eps) + eps / 2
            loss, grad = ls.binary_cross_entropy_with_grad(z, np.full_like(z, y), epsilon=eps, reduction="none")
            for zi, li, gi in zip(z, loss, grad):
                zm = mpmath.mpf(zi)
                s = 1 / (1 + mpmath.exp(-zm))
                # -y' log s - (1-y') log(1-s), with log(1-s) = log s - z.
                expected = -target * mpmath.log(s) - (1 - target) * (mpmath.log(s) - zm)
                assert li == pytest.approx(float(expected), rel=1e-14, abs=1e-300), (zi, y, eps)
                assert gi == pytest.approx(float(s - mpmath.mpf(target)), rel=1e-13, abs=1e-300), (zi, y, eps)


def test_saturated_gradient_keeps_its_residual():
    # sigmoid(40) - 1 is -exp(-40)/(1 + exp(-40)) ~ -4.25e-18, not the 0 of a naive difference.
    grad = ls.binary_cross_entropy_grad(np.array([40.0, -40.0]), np.array([1.0, 0.0]), reduction="none")
    expected = np.exp(-40.0) / (1.0 + np.exp(-40.0))
    np.testing.assert_allclose(grad, [-expected, expected], rtol=1e-15)


def test_infinite_logits_follow_the_limit():
    z = np.array([np.inf, -np.inf, np.inf, -np.inf, np.nan])
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    loss, grad = ls.binary_cross_entropy_with_grad(z, y, reduction="none")
    np.testing.assert_array_equal(loss, [0.0, 0.0, np.inf, np.inf, np.nan])
    np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0, -1.0, np.nan])
    smooth = ls.binary_cross_entropy(z[:2], y[:2], epsilon=0.1, reduction="none")
    np.testing.assert_array_equal(smooth, [np.inf, np.inf])


def test_empty_mean_is_nan_like_torch():
    z = np.zeros((0, 3))
    expected = F.binary_cross_entropy_with_logits(
        torch.zeros(0, 3, dtype=torch.float64), torch.zeros(0, 3, dtype=torch.float64)
    )
    assert np.isnan(float(expected))
    assert np.isnan(ls.binary_cross_entropy(z, z))
    assert ls.binary_cross_entropy(z, z, reduction="sum") == 0.0
    assert ls.binary_cross_entropy_grad(z, z).shape == (0, 3)


def test_zero_dimensional_logits():
    loss, grad = ls.binary_cross_entropy_with_grad(np.float64(2.0) * np.ones(()), np.ones(()), epsilon=0.2)
    s = 1 / (1 + np.exp(-2.0))
    assert loss == pytest.approx(-(0.9 * np.log(s) + 0.1 * np.log1p(-s)), rel=1e-14)
    assert grad == pytest.approx(s - 0.9, rel=1e-14)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_every_backend_returns_native_arrays_equal_to_numpy(backend, rng, reduction):
    z = rng.normal(scale=3.0, size=(4, 6))
    y = (rng.random((4, 6)) < 0.5).astype(np.float64)
    w = rng.uniform(0.5, 2.0, size=(6,))
    zb, yb, wb = backend.asarray(z), backend.asarray(y), backend.asarray(w)
    options = {"epsilon": 0.1, "weight": wb, "reduction": reduction}
    loss = backend.call(ls.binary_cross_entropy, zb, yb, **options)
    grad = backend.call(ls.binary_cross_entropy_grad, zb, yb, **options)
    both = backend.call(ls.binary_cross_entropy_with_grad, zb, yb, **options)
    for result in (loss, grad, *both):
        assert backend.is_native(result)
    expected_loss, expected_grad = numpy_reference(z, smoothed(y, 0.1), w, reduction)
    dtype = backend.to_numpy(loss).dtype
    tol = tolerance(dtype)
    assert backend.to_numpy(grad).dtype == dtype
    np.testing.assert_allclose(backend.to_numpy(loss), expected_loss, rtol=tol, atol=tol)
    np.testing.assert_allclose(backend.to_numpy(grad), expected_grad, rtol=tol, atol=tol)
    np.testing.assert_allclose(backend.to_numpy(both[0]), expected_loss, rtol=tol, atol=tol)
    np.testing.assert_allclose(backend.to_numpy(both[1]), expected_grad, rtol=tol, atol=tol)


def test_integer_targets_and_array_epsilon_on_every_backend(backend, rng):
    z = rng.normal(size=(3, 4))
    y = rng.integers(0, 2, size=(3, 4))
    eps = rng.uniform(0.0, 0.5, size=(3, 1))
    loss = backend.call(
        ls.binary_cross_entropy, backend.asarray(z), backend.asarray(y), epsilon=backend.asarray(eps), reduction="none"
    )
    expected, _ = numpy_reference(z, smoothed(y, eps), None, "none")
    result = backend.to_numpy(loss)
    np.testing.assert_allclose(result, expected, rtol=tolerance(result.dtype), atol=tolerance(result.dtype))


def test_invalid_targets_poison_traced_results(backend):
    if backend.eager:
        pytest.skip("eager backends raise instead (tested below)")
    z = backend.asarray(np.zeros((2, 2)))
    y = backend.asarray(np.array([[0.0, 1.0], [1.5, 0.0]]))
    loss, grad = backend.to_numpy(backend.call(ls.binary_cross_entropy_with_grad, z, y, reduction="none"))
    assert np.isnan(loss[1, 0]) and np.isnan(grad[1, 0])
    assert np.isfinite(loss[0]).all() and np.isfinite(grad[0]).all()
    labels = backend.asarray(np.array([[0, 1], [2, 0]]))
    assert np.isnan(backend.to_numpy(backend.call(ls.binary_cross_entropy, z, labels)))
    eps = backend.asarray(np.array([[0.1], [1.5]]))
    loss = backend.to_numpy(backend.call(ls.binary_cross_entropy, z, y, epsilon=eps, reduction="none"))
    assert np.isnan(loss[1]).all()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_dtype_is_preserved_and_low_precision_is_computed_in_float32(rng, dtype):
    z64 = rng.normal(scale=3.0, size=(5, 4))
    y64 = rng.random((5, 4))
    torch_dtype = getattr(torch, dtype)
    z, y = torch.tensor(z64, dtype=torch_dtype), torch.tensor(y64, dtype=torch_dtype)
    loss, grad = ls.binary_cross_entropy_with_grad(z, y, epsilon=0.1)
    assert loss.dtype == grad.dtype == torch_dtype
    # Reference: the same (rounded) inputs in float64, rounded once to the dtype.
    z_rounded, y_rounded = z.double().numpy(), y.double().numpy()
    expected_loss, expected_grad = numpy_reference(z_rounded, smoothed(y_rounded, 0.1), None, "mean")
    expected_loss_t = torch.tensor(expected_loss).to(torch_dtype).double()
    assert float(loss) == float(expected_loss_t)
    unit = float(torch.finfo(torch_dtype).eps)
    np.testing.assert_allclose(grad.double().numpy(), expected_grad, rtol=unit, atol=unit * 1e-2)


def test_float16_numpy(rng):
    z = rng.normal(size=(3, 3)).astype(np.float16)
    y = rng.random((3, 3)).astype(np.float16)
    loss = ls.binary_cross_entropy(z, y, epsilon=0.1)
    assert loss.dtype == np.float16
    expected, _ = numpy_reference(z.astype(np.float64), smoothed(y.astype(np.float64), 0.1), None, "mean")
    assert loss == np.float16(expected)


def test_inputs_are_not_modified(rng):
    z = torch.tensor(rng.normal(size=(3, 4)))
    y = torch.tensor(rng.random((3, 4)))
    w = torch.tensor(rng.random((3, 4)))
    copies = [t.clone() for t in (z, y, w)]
    ls.binary_cross_entropy_with_grad(z, y, epsilon=0.3, weight=w)
    for original, copy in zip((z, y, w), copies):
        assert torch.equal(original, copy)


def test_errors_name_the_argument():
    z = np.zeros((2, 3))
    y = np.zeros((2, 3))
    with pytest.raises(TypeError, match="logits must have a real floating dtype"):
        ls.binary_cross_entropy(np.zeros((2, 3), dtype=np.int64), y)
    with pytest.raises(TypeError, match="logits must be an array"):
        ls.binary_cross_entropy([0.0, 1.0], np.zeros(2))
    with pytest.raises(ValueError, match=r"targets must have the logits' shape \(2, 3\), got shape \(2,\)"):
        ls.binary_cross_entropy(z, np.zeros(2))
    with pytest.raises(TypeError, match="floating targets must have the logits' dtype float64, got dtype float32"):
        ls.binary_cross_entropy(z, y.astype(np.float32))
    with pytest.raises(TypeError, match="targets must be real floating probabilities or integer/boolean"):
        ls.binary_cross_entropy(z, y.astype(np.complex128))
    with pytest.raises(ValueError, match=r"targets must be probabilities in \[0, 1\], got a value of 1.5"):
        ls.binary_cross_entropy(z, np.array([[0.0, 1.5, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="targets must be probabilities in \\[0, 1\\], got a value of nan"):
        ls.binary_cross_entropy(z, np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="targets must be 0/1 labels, got a value of 2"):
        ls.binary_cross_entropy(z, np.array([[0, 1, 2], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"epsilon must be in \[0, 1\], got 1.5"):
        ls.binary_cross_entropy(z, y, epsilon=1.5)
    with pytest.raises(ValueError, match="epsilon must lie in"):
        ls.binary_cross_entropy(z, y, epsilon=np.array([[-0.1], [0.1]]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        ls.binary_cross_entropy(z, y, reduction="batchmean")
    with pytest.raises(
        ValueError, match=r"weight must be broadcastable to the logits' shape \(2, 3\), got shape \(2,\)"
    ):
        ls.binary_cross_entropy(z, y, weight=np.ones(2))
    with pytest.raises(TypeError, match="weight must have a real dtype"):
        ls.binary_cross_entropy(z, y, weight=np.ones(3, dtype=bool))
    with pytest.raises(TypeError, match="one array library"):
        ls.binary_cross_entropy(z, torch.zeros(2, 3, dtype=torch.float64))


def test_public():
    for name in ("binary_cross_entropy", "binary_cross_entropy_grad", "binary_cross_entropy_with_grad"):
        assert name in ls.__all__
