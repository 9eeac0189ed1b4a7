"""``z_loss`` and ``softcap``: against their definitions written out and differentiated by autodiff.

The truth is PyTorch's ``F.cross_entropy`` of the capped logits ``c * tanh(z / c)`` (Gemma 2,
Liger) plus ``z_loss * logsumexp(capped)^2`` (PaLM, T5X, Liger's ``lse_square_scale``), in
float64, reduced as Liger reduces: ``"mean"`` divides the cross-entropy by PyTorch's
normaliser (the summed ``w_y`` of the counted samples) and the z-loss terms by the number
of counted samples; gradients and Hessian-vector products come from ``torch.autograd`` of
that expression, and JAX's from ``jax.grad`` / ``jax.hessian`` of the same expression in
``jax.numpy``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import labelsmooth as ls

torch = pytest.importorskip("torch")
F = torch.nn.functional

NUM_CLASSES = 6
OPTION_SETS = {
    "plain": {},
    "weight": {"weight": True},
    "ignore": {"ignore_index": -100},
    "weight+ignore": {"weight": True, "ignore_index": -100},
    "sample_weight": {"sample_weight": True},
    "others": {"prior": "others"},
}
SETTINGS = [(0.0, None), (1e-2, None), (0.0, 2.5), (0.3, 1.5)]


def _case(rng: np.random.Generator, rows: int = 9, scale: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    z = rng.normal(size=(rows, NUM_CLASSES)) * scale
    z[0, 1] = z[0, 3] = z[0].max() + 1.0  # a tied maximum
    y = rng.integers(0, NUM_CLASSES, rows)
    return z, y


def _definition(
    z, y, *, epsilon, z_loss, softcap, reduction, weight=None, ignore_index=None, sample_weight=None, prior=None
):
    """The written-out loss of torch tensors (differentiable in ``z``)."""
    capped = z if softcap is None else softcap * torch.tanh(z / softcap)
    counted = torch.ones_like(y, dtype=z.dtype) if ignore_index is None else (y != ignore_index).to(z.dtype)
    safe_y = y if ignore_index is None else torch.where(y == ignore_index, 0, y)
    if prior == "others":
        one_hot = F.one_hot(safe_y, NUM_CLASSES).to(z.dtype)
        q = (1 - epsilon) * one_hot + epsilon * (1 - one_hot) / (NUM_CLASSES - 1)
        ce = -(q * torch.log_softmax(capped, -1)).sum(-1)
    else:
        ce = F.cross_entropy(capped, safe_y, weight=weight, label_smoothing=epsilon, reduction="none")
    ce = ce * counted
    z_rows = z_loss * torch.logsumexp(capped, -1) ** 2 * counted
    if sample_weight is not None:
        ce, z_rows = ce * sample_weight, z_rows * sample_weight
    if reduction == "none":
        return ce + z_rows
    if reduction == "sum":
        return ce.sum() + z_rows.sum()
    weights = counted if weight is None else weight[safe_y] * counted
    return ce.sum() / weights.sum() + z_rows.sum() / counted.sum()


def _arguments(rng: np.random.Generator, name: str, y: np.ndarray) -> tuple[dict, dict, np.ndarray]:
    """``(labelsmooth options, definition options, labels)`` of an option set."""
    options = dict(OPTION_SETS[name])
    truth: dict = {}
    if options.pop("weight", False):
        weight = rng.uniform(0.3, 2.0, NUM_CLASSES)
        options["weight"], truth["weight"] = weight, torch.tensor(weight)
    if options.pop("sample_weight", False):
        sample_weight = rng.uniform(0.0, 2.0, y.shape)
        options["sample_weight"], truth["sample_weight"] = sample_weight, torch.tensor(sample_weight)
    if "ignore_index" in options:
        y = y.copy()
        y[[1, 4]] = -100
        truth["ignore_index"] = -100
    if "prior" in options:
        truth["prior"] = options["prior"]
    return options, truth, y


def _truth(z: np.ndarray, y: np.ndarray, truth: dict, **settings) -> tuple[np.ndarray, np.ndarray]:
    zt = torch.tensor(z, requires_grad=True)
    loss = _definition(zt, torch.tensor(y), **truth, **settings)
    (grad,) = torch.autograd.grad(loss.sum(), zt)
    return loss.detach().numpy(), grad.numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(OPTION_SETS))
@pytest.mark.parametrize(("z_loss", "softcap"), SETTINGS)
def test_loss_and_gradient_match_the_written_out_definition(rng, name, reduction, z_loss, softcap):
    z, y = _case(rng)
    options, truth, y = _arguments(rng, name, y)
    settings = {"epsilon": 0.1, "z_loss": z_loss, "softcap": softcap, "reduction": reduction}
    loss, grad = ls.cross_entropy_with_grad(z, y, **options, **settings)
    expected_loss, expected_grad = _truth(z, y, truth, **settings)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13, atol=1e-15)
    # For "none" each row is that sample's own gradient: that of the sum of the rows.
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)


def test_liger_reduction_with_class_weights_differs_from_weighting_the_z_term(rng):
    """The choice, shown: the z terms are averaged over counted samples, not over summed w_y."""
    z, y = _case(rng)
    weight = rng.uniform(0.3, 2.0, NUM_CLASSES)
    loss = float(ls.cross_entropy(z, y, weight=weight, z_loss=0.5))
    plain = float(ls.cross_entropy(z, y, weight=weight))
    lse = np.log(np.exp(z).sum(-1))
    assert loss - plain == pytest.approx(0.5 * np.mean(lse**2), rel=1e-12)
    weighted_alternative = 0.5 * np.sum(weight[y] * lse**2) / np.sum(weight[y])
    assert abs((loss - plain) - weighted_alternative) > 1e-3


@pytest.mark.parametrize(("z_loss", "softcap"), SETTINGS[1:])
def test_probability_targets(rng, z_loss, softcap):
    z, _ = _case(rng)
    q = rng.dirichlet(np.ones(NUM_CLASSES), size=z.shape[0])
    loss, grad = ls.cross_entropy_with_grad(z, q, epsilon=0.2, z_loss=z_loss, softcap=softcap)
    zt = torch.tensor(z, requires_grad=True)
    capped = zt if softcap is None else softcap * torch.tanh(zt / softcap)
    expected = F.cross_entropy(capped, torch.tensor(q), label_smoothing=0.2)
    expected = expected + z_loss * (torch.logsumexp(capped, -1) ** 2).mean()
    expected.backward()
    np.testing.assert_allclose(loss, expected.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-12, atol=1e-16)


def test_capping_makes_infinite_and_huge_logits_finite():
    z = np.array([[-np.inf, 0.0, 1e30, 2.0], [1e300, -1e300, 0.0, 5.0]])
    y = np.array([0, 1])
    loss, grad = ls.cross_entropy_with_grad(z, y, epsilon=0.1, softcap=3.0, z_loss=1e-3)
    capped = 3.0 * np.tanh(z / 3.0)
    expected = _truth(capped, y, {}, epsilon=0.1, z_loss=1e-3, softcap=None, reduction="mean")[0]
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, expected, rtol=1e-14)
    # Where tanh is saturated the slope underflows to 0; elsewhere it is sech^2(z / c).
    assert np.all(np.isfinite(grad))
    assert grad[0, 0] == 0.0 and grad[0, 2] == 0.0 and grad[1, 0] == 0.0 and grad[1, 1] == 0.0


def test_soft_cap_slope_keeps_its_precision_in_the_tails():
    """sech^2 where tanh rounds to 1: 1 - tanh^2 would give 0, cosh would overflow."""
    mpmath = pytest.importorskip("mpmath")
    z = np.array([[0.0, 30.0, 60.0, 300.0, -700.0, 1.0]])
    _, grad = ls.cross_entropy_with_grad(z, np.array([0]), softcap=1.0, reduction="sum")
    _, capped_grad = ls.cross_entropy_with_grad(np.tanh(z), np.array([0]), reduction="sum")
    with mpmath.workdps(50):
        slope = np.array([float(mpmath.sech(mpmath.mpf(v)) ** 2) for v in z[0]])
    np.testing.assert_allclose(grad[0], capped_grad[0] * slope, rtol=4e-15)
    assert grad[0, 2] != 0.0  # sech^2(60) ~ 3.5e-52 keeps its digits


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_is_no_worse_than_torch(rng, dtype):
    z, y = _case(rng, rows=64, scale=8.0)
    settings = {"epsilon": 0.1, "z_loss": 1e-2, "softcap": 5.0, "reduction": "mean"}
    exact_loss, exact_grad = _truth(z, y, {}, **settings)
    loss, grad = ls.cross_entropy_with_grad(z.astype(dtype), y, **settings)
    zt = torch.tensor(z.astype(dtype), requires_grad=True)
    torch_loss = _definition(zt, torch.tensor(y), **settings)
    torch_loss.backward()
    ours = abs(float(loss) - exact_loss) / exact_loss
    theirs = abs(torch_loss.item() - exact_loss) / exact_loss
    ulp = float(np.finfo(dtype).eps)
    assert ours <= max(theirs, 2 * ulp)
    grad_error = np.max(np.abs(grad - exact_grad)) / np.max(np.abs(exact_grad))
    torch_grad_error = np.max(np.abs(zt.grad.numpy() - exact_grad)) / np.max(np.abs(exact_grad))
    assert grad_error <= max(torch_grad_error, 8 * ulp)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_autograd_first_and_second_order(rng, reduction):
    z, y = _case(rng)
    weight = torch.tensor(rng.uniform(0.3, 2.0, NUM_CLASSES))
    settings = {"epsilon": 0.1, "z_loss": 0.2, "softcap": 2.0, "reduction": reduction}
    labels = torch.tensor(y)
    direction = torch.tensor(rng.normal(size=z.shape))
    results = []
    for fn in (
        lambda t: ls.cross_entropy(t, labels, weight=weight, **settings),
        lambda t: _definition(t, labels, weight=weight, **settings),
    ):
        zt = torch.tensor(z, requires_grad=True)
        (grad,) = torch.autograd.grad(fn(zt).sum(), zt, create_graph=True)
        (hvp,) = torch.autograd.grad((grad * direction).sum(), zt)
        results.append((grad.detach().numpy(), hvp.numpy()))
    (grad, hvp), (expected_grad, expected_hvp) = results
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hvp, expected_hvp, rtol=1e-10, atol=1e-13)


def test_torch_module(rng):
    from labelsmooth.torch import CrossEntropyLoss

    z, y = _case(rng)
    y[2] = -100
    module = CrossEntropyLoss(label_smoothing=0.1, z_loss=0.05, softcap=3.0)
    assert "z_loss=0.05" in repr(module) and "softcap=3.0" in repr(module)
    zt = torch.tensor(z, requires_grad=True)
    module(zt, torch.tensor(y)).backward()
    expected_loss, expected_grad = _truth(
        z, y, {"ignore_index": -100}, epsilon=0.1, z_loss=0.05, softcap=3.0, reduction="mean"
    )
    np.testing.assert_allclose(module(zt, torch.tensor(y)).item(), expected_loss, rtol=1e-13)
    np.testing.assert_allclose(zt.grad.numpy(), expected_grad, rtol=1e-12, atol=1e-15)


def test_torch_meta_tensors_take_the_options():
    z = torch.empty(4, 7, device="meta")
    loss = ls.cross_entropy(z, torch.empty(4, dtype=torch.int64, device="meta"), z_loss=0.1, softcap=2.0)
    assert loss.shape == () and loss.device.type == "meta"


def _jax_definition(jnp, jax, z, y, *, z_loss, softcap, epsilon):
    capped = softcap * jnp.tanh(z / softcap)
    log_p = jax.nn.log_softmax(capped, axis=-1)
    q = (1 - epsilon) * jax.nn.one_hot(y, z.shape[-1]) + epsilon / z.shape[-1]
    lse = jax.nn.logsumexp(capped, axis=-1)
    return jnp.mean(-(q * log_p).sum(-1) + z_loss * lse**2)


def test_jax_grad_hessian_jit_vmap(rng):
    jax = pytest.importorskip("jax")
    with jax.enable_x64(True):
        _check_jax_transforms(jax, rng)


def _check_jax_transforms(jax, rng):
    jnp = jax.numpy
    z, y = _case(rng, rows=4)
    z, y = jnp.asarray(z), jnp.asarray(y)
    settings = {"z_loss": 0.1, "softcap": 2.0, "epsilon": 0.1}

    def ours(t):
        return ls.cross_entropy(t, y, **settings)

    @jax.jit
    def definition(t):
        return _jax_definition(jnp, jax, t, y, **settings)

    np.testing.assert_allclose(jax.jit(ours)(z), definition(z), rtol=1e-13)
    np.testing.assert_allclose(jax.jit(jax.grad(ours))(z), jax.grad(definition)(z), rtol=1e-12, atol=1e-15)
    # Compiled: eager second-order autodiff of the loss costs seconds (the eager forms are
    # tested at tied maxima in test_reliability.py).
    np.testing.assert_allclose(
        jax.jit(jax.hessian(ours))(z), jax.jit(jax.hessian(definition))(z), rtol=1e-10, atol=1e-13
    )
    tangent = jnp.asarray(rng.normal(size=z.shape))
    ours_tangent = jax.jit(lambda t, dt: jax.jvp(ours, (t,), (dt,))[1])(z, tangent)
    np.testing.assert_allclose(ours_tangent, jax.jvp(definition, (z,), (tangent,))[1], rtol=1e-12)
    batched = jax.jit(jax.vmap(jax.grad(ours)))(jnp.stack([z, 2 * z]))
    np.testing.assert_allclose(batched[1], jax.grad(definition)(2 * z), rtol=1e-12, atol=1e-15)

    from labelsmooth.jax import cross_entropy

    np.testing.assert_allclose(
        jax.grad(lambda t: cross_entropy(t, y, **settings))(z), jax.grad(definition)(z), rtol=1e-12, atol=1e-15
    )


def test_kl_divergence_takes_the_same_terms(rng):
    z, y = _case(rng)
    settings = {"epsilon": 0.1, "z_loss": 0.3, "softcap": 2.0}
    kl = float(ls.kl_divergence(z, y, **settings))
    ce = float(ls.cross_entropy(z, y, **settings))
    q = ls.soft_targets(y, NUM_CLASSES, epsilon=0.1)
    entropy = -np.mean(np.sum(q * np.log(q), -1))
    assert kl == pytest.approx(ce - entropy, rel=1e-13)
    np.testing.assert_allclose(
        ls.cross_entropy_grad(z, y, **settings), _truth(z, y, {}, reduction="mean", **settings)[1], rtol=1e-12
    )


def test_every_namespace_agrees(rng):
    xp = pytest.importorskip("array_api_strict")
    da = pytest.importorskip("dask.array")
    z, y = _case(rng)
    settings = {"epsilon": 0.1, "z_loss": 0.3, "softcap": 2.0, "weight": rng.uniform(0.5, 1.5, NUM_CLASSES)}
    loss, grad = ls.cross_entropy_with_grad(z, y, **settings)
    strict = ls.cross_entropy_with_grad(
        xp.asarray(z), xp.asarray(y), **{**settings, "weight": xp.asarray(settings["weight"])}
    )
    lazy = ls.cross_entropy_with_grad(
        da.from_array(z, chunks=(4, 3)),
        da.from_array(y, chunks=4),
        **{**settings, "weight": da.from_array(settings["weight"], chunks=3)},
    )
    tensors = ls.cross_entropy_with_grad(
        torch.tensor(z), torch.tensor(y), **{**settings, "weight": torch.tensor(settings["weight"])}
    )
    for other_loss, other_grad in (strict, lazy, tensors):
        np.testing.assert_allclose(np.asarray(other_loss), loss, rtol=1e-14)
        np.testing.assert_allclose(np.asarray(other_grad), grad, rtol=1e-13, atol=1e-16)
    assert type(lazy[0]).__module__.startswith("dask")


@pytest.mark.parametrize(
    ("options", "error", "phrase"),
    [
        ({"z_loss": -0.1}, ValueError, "z_loss must be finite and non-negative, got -0.1"),
        ({"z_loss": math.inf}, ValueError, "z_loss must be finite"),
        ({"z_loss": math.nan}, ValueError, "z_loss must be finite"),
        ({"z_loss": True}, TypeError, "z_loss must be a non-negative float"),
        ({"z_loss": "0.1"}, TypeError, "z_loss must be a non-negative float"),
        ({"z_loss": np.ones(2)}, TypeError, "z_loss must be a non-negative float"),
        ({"softcap": 0.0}, ValueError, "softcap must be None or finite and positive, got 0.0"),
        ({"softcap": -2.0}, ValueError, "softcap must be None or finite and positive"),
        ({"softcap": math.inf}, ValueError, "softcap must be None or finite and positive"),
        ({"softcap": math.nan}, ValueError, "softcap must be None or finite and positive"),
        ({"softcap": False}, TypeError, "softcap must be None or a positive float"),
        ({"softcap": "30"}, TypeError, "softcap must be None or a positive float"),
    ],
)
def test_bad_values_are_refused(options, error, phrase):
    with pytest.raises(error, match=phrase.replace("(", r"\(").replace(".", r"\.")):
        ls.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), **options)


def test_numpy_scalars_are_accepted(rng):
    z, y = _case(rng)
    assert float(ls.cross_entropy(z, y, z_loss=np.float32(0.25), softcap=np.float64(2.0))) == pytest.approx(
        float(ls.cross_entropy(z, y, z_loss=0.25, softcap=2.0)), rel=1e-15
    )


@pytest.mark.parametrize("name", ["plain", "weight+ignore", "sample_weight", "others"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_the_mpmath_reference_agrees_with_the_definition(rng, name, reduction):
    """The 40-digit reference (an independent oracle for users' tests) takes both options too."""
    from labelsmooth.testing import reference_cross_entropy_with_grad

    z, y = _case(rng)
    options, truth, y = _arguments(rng, name, y)
    settings = {"epsilon": 0.1, "z_loss": 0.2, "softcap": 2.0, "reduction": reduction}
    loss, grad = reference_cross_entropy_with_grad(z, y, **options, **settings)
    expected_loss, expected_grad = _truth(z, y, truth, **settings)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)
    ours_loss, ours_grad = ls.cross_entropy_with_grad(z, y, **options, **settings)
    np.testing.assert_allclose(ours_loss, loss, rtol=4e-16, atol=1e-300)
    np.testing.assert_allclose(ours_grad, grad, rtol=1e-14, atol=1e-17)


@pytest.mark.slow
def test_torch_compile_fullgraph_takes_the_options(rng):
    from labelsmooth.torch import CrossEntropyLoss

    z, y = _case(rng)
    module = CrossEntropyLoss(label_smoothing=0.1, z_loss=0.05, softcap=3.0)
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    results = []
    for fn in (module, compiled):
        zt = torch.tensor(z, requires_grad=True)
        loss = fn(zt, torch.tensor(y))
        loss.backward()
        results.append((loss.item(), zt.grad.numpy()))
    expected_loss, expected_grad = _truth(z, y, {}, epsilon=0.1, z_loss=0.05, softcap=3.0, reduction="mean")
    for loss, grad in results:
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)
