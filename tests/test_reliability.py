"""Defects found by independent audits, each pinned against an independent reference.

Every expected value here comes from PyTorch, JAX's own autodiff of the written-out
definition, an mpmath evaluation at 50 digits or a hand-worked number, never from
labelsmooth itself.
"""

from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np
import pytest
from _formulas import cross_entropy_rows

import labelsmooth as ls

mpmath.mp.dps = 50


def call(b, name, *arrays, **options):
    """Call ``ls.<name>`` on the backend's arrays (NumPy arrays in, NumPy arrays out)."""
    converted = [b.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays]
    options = {k: b.asarray(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    return b.to_numpy(b.call(getattr(ls, name), *converted, **options))


def has_float64(b):
    return b.name not in ("jax", "jax_jit") or _jax_x64()


def _jax_x64():
    import jax

    return bool(jax.config.read("jax_enable_x64"))


def mp_loss(z, label, epsilon, prior=None):
    """Smoothed cross-entropy of one row at 50 digits (``prior``: None, "others" or a row)."""
    z = [mpmath.mpf(float(v)) for v in z]
    k = len(z)
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z))
    if prior is None:
        u = [mpmath.mpf(1) / k] * k
    elif isinstance(prior, str):
        u = [mpmath.mpf(0) if i == label else mpmath.mpf(1) / (k - 1) for i in range(k)]
    else:
        u = [mpmath.mpf(float(v)) for v in prior]
    eps = mpmath.mpf(epsilon)
    q = [(1 - eps) * (i == label) + eps * u[i] for i in range(k)]
    return float(mpmath.fsum(q[i] * (lse - z[i]) for i in range(k) if q[i] != 0))


# --- 1. derivatives at tied maxima, every order, through JAX's transforms -----------------

TIED_ROWS = [
    np.zeros((1, 10)),  # a zero-initialised head: ten tied maxima
    np.array([[0.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]),  # three, none on the label
]
TIE_OPTIONS = [(0.1, None), (0.3, "others")]


def _jax_definition(z, y, epsilon, prior):
    """``-sum_k q'_k log_softmax(z)_k`` written out with jax.nn (batch mean)."""
    import jax
    import jax.numpy as jnp

    k = z.shape[-1]
    q = jax.nn.one_hot(y, k, dtype=z.dtype)
    u = (1.0 - q) / (k - 1) if prior == "others" else jnp.full_like(q, 1.0 / k)
    target = (1.0 - epsilon) * q + epsilon * u
    return -jnp.mean(jnp.sum(target * jax.nn.log_softmax(z), axis=-1))


def _jax_tolerance(x64):
    return {"rtol": 1e-12, "atol": 1e-14} if x64 else {"rtol": 2e-6, "atol": 2e-7}


@pytest.mark.slow
@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize(("epsilon", "prior"), TIE_OPTIONS)
def test_jax_gradients_at_tied_maxima_equal_autodiff_of_the_definition(x64, epsilon, prior):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    with jax.enable_x64(x64):
        # Every tied row in one batch: one compilation per transform for all of them.
        z = jnp.asarray(np.concatenate(TIED_ROWS), dtype=jnp.float64 if x64 else jnp.float32)
        y = jnp.asarray([3] * len(TIED_ROWS))

        def ours(a):
            return ls.cross_entropy(a, y, epsilon=epsilon, prior=prior)

        expected = np.asarray(jax.grad(lambda a: _jax_definition(a, y, epsilon, prior))(z))
        for gradient in (jax.grad(ours), jax.jit(jax.grad(ours)), jax.jacfwd(ours)):
            np.testing.assert_allclose(np.asarray(gradient(z)), expected, **_jax_tolerance(x64))
        analytic = ls.cross_entropy_grad(z, y, epsilon=epsilon, prior=prior)
        np.testing.assert_allclose(np.asarray(analytic), expected, **_jax_tolerance(x64))


@pytest.mark.slow
@pytest.mark.parametrize("row", range(len(TIED_ROWS)))
@pytest.mark.parametrize(("epsilon", "prior"), TIE_OPTIONS)
def test_jax_hessian_at_tied_maxima_equals_autodiff_of_the_definition(row, epsilon, prior):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    with jax.enable_x64(True):
        z = jnp.asarray(TIED_ROWS[row])
        y = jnp.asarray([3])
        ours = jax.hessian(lambda a: ls.cross_entropy(a, y, epsilon=epsilon, prior=prior))(z)
        expected = jax.hessian(lambda a: _jax_definition(a, y, epsilon, prior))(z)
        np.testing.assert_allclose(np.asarray(ours), np.asarray(expected), **_jax_tolerance(True))


@pytest.mark.slow
def test_jax_vmap_of_per_sample_gradients_at_tied_maxima():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    batch = jnp.asarray(np.concatenate([TIED_ROWS[0], TIED_ROWS[1], TIED_ROWS[1]]), dtype=jnp.float32)
    labels = jnp.asarray([3, 1, 9])

    def per_sample(f):
        return jax.vmap(jax.grad(lambda a, b: f(a[None], b[None])))(batch, labels)

    ours = per_sample(lambda a, b: ls.cross_entropy(a, b, epsilon=0.1))
    expected = per_sample(lambda a, b: _jax_definition(a, b, 0.1, None))
    np.testing.assert_allclose(np.asarray(ours), np.asarray(expected), **_jax_tolerance(False))


@pytest.mark.slow
@pytest.mark.parametrize(("epsilon", "prior"), TIE_OPTIONS)
def test_jax_derivatives_of_kl_divergence_at_ties(epsilon, prior):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    def definition(a, y):
        k = a.shape[-1]
        q = jax.nn.one_hot(y, k, dtype=a.dtype)
        u = (1.0 - q) / (k - 1) if prior == "others" else jnp.full_like(q, 1.0 / k)
        target = (1.0 - epsilon) * q + epsilon * u
        return jnp.mean(jnp.sum(target * (jnp.log(target) - jax.nn.log_softmax(a)), axis=-1))

    with jax.enable_x64(True):
        z = jnp.asarray(TIED_ROWS[1])
        y = jnp.asarray([3])

        def ours(a):
            return ls.kl_divergence(a, y, epsilon=epsilon, prior=prior)

        for transform in (jax.grad, jax.jacfwd, jax.hessian):
            np.testing.assert_allclose(
                np.asarray(transform(ours)(z)),
                np.asarray(transform(lambda a: definition(a, y))(z)),
                rtol=1e-12,
                atol=1e-14,
            )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_jax_derivatives_of_the_softmax_family_at_ties(name):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    reference = {"logsumexp": jax.nn.logsumexp, "softmax": jax.nn.softmax, "log_softmax": jax.nn.log_softmax}[name]
    ours = getattr(ls, name)
    with jax.enable_x64(True):
        x = jnp.asarray(TIED_ROWS[1][0])
        np.testing.assert_allclose(
            np.asarray(jax.jacfwd(ours)(x)), np.asarray(jax.jacfwd(reference)(x)), rtol=1e-12, atol=1e-14
        )
        weights = jnp.linspace(0.5, 1.5, x.shape[0])  # a scalar function of every output

        def scalar(f):
            return lambda a: jnp.sum(weights * f(a))

        np.testing.assert_allclose(
            np.asarray(jax.hessian(scalar(ours))(x)),
            np.asarray(jax.hessian(scalar(reference))(x)),
            rtol=1e-12,
            atol=1e-14,
        )


# --- 3. prior="others" near epsilon = 1 with a very low true-class logit ------------------


@pytest.mark.parametrize("true_logit", [-1e12, -1e300])
@pytest.mark.parametrize("epsilon", [0.9, 0.999, 1.0])
def test_others_with_a_very_low_true_logit_does_not_cancel(backend, true_logit, epsilon):
    if not has_float64(backend):
        pytest.skip("this backend computes in float32 here")
    z = np.array([[0.0, 0.3, 0.7, true_logit]])
    expected = mp_loss(z[0], 3, epsilon, "others")
    for weight in (None, np.ones(4)):
        options = {} if weight is None else {"weight": weight}
        loss = call(backend, "cross_entropy", z, np.array([3]), epsilon=epsilon, prior="others", **options)
        assert loss >= 0.0
        np.testing.assert_allclose(loss, expected, rtol=1e-14)
    # The audit's case, worked by hand: eps = 1 leaves only the other three classes, with u = 1/3.
    if epsilon == 1.0:
        lse = math.log(1.0 + math.exp(0.3) + math.exp(0.7))
        np.testing.assert_allclose(expected, lse - (0.0 + 0.3 + 0.7) / 3, rtol=1e-15)


# --- 4. every integer label dtype -------------------------------------------------------


def _integer_dtypes(b):
    names = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
    if b.name in ("jax", "jax_jit") and not _jax_x64():
        names = [n for n in names if not n.endswith("64")]
    return names


@pytest.mark.parametrize("targets_kind", ["losses", "one_hot"])
def test_every_integer_label_dtype_gives_the_int64_result(backend, rng, targets_kind):
    num_classes = 300  # more classes than int8 can count
    z = rng.normal(size=(3, num_classes))
    labels = np.array([5, 120, 299])
    torch = pytest.importorskip("torch")
    expected_loss = torch.nn.functional.cross_entropy(
        torch.from_numpy(z), torch.from_numpy(labels), label_smoothing=0.1
    ).item()
    for name in _integer_dtypes(backend):
        small = labels.astype(name) if np.iinfo(name).max >= 299 else np.array([5, 120, 100], name)
        wide = small.astype(np.int64)
        if targets_kind == "one_hot":
            encoded = call(backend, "one_hot", small, num_classes)
            np.testing.assert_array_equal(encoded, np.eye(num_classes)[wide], err_msg=name)
            continue
        loss, grad = call(backend, "cross_entropy_with_grad", z, small, epsilon=0.1)
        if np.array_equal(wide, labels):
            np.testing.assert_allclose(loss, expected_loss, rtol=1e-5, err_msg=name)
        _, expected_grad = cross_entropy_rows(z, wide, epsilon=0.1)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-7, err_msg=name)


def test_unsigned_labels_are_not_taken_for_a_negative_ignore_index(backend, rng):
    # uint8(156) is -100 wrapped around: it is a label, not the ignored padding value.
    z = rng.normal(size=(2, 200))
    labels = np.array([156, 3], np.uint8)
    loss = call(backend, "cross_entropy", z, labels, ignore_index=-100, reduction="none")
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(z), torch.tensor([156, 3]), reduction="none")
    np.testing.assert_allclose(loss, expected.numpy(), rtol=1e-5)


def test_torch_small_and_unsigned_label_tensors():
    torch = pytest.importorskip("torch")
    z = torch.randn(3, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([5, 120, 100])
    expected = torch.nn.functional.cross_entropy(z, labels, label_smoothing=0.2, ignore_index=-100)
    for dtype in (torch.int8, torch.int16, torch.int32, torch.uint8, torch.uint16, torch.uint32, torch.uint64):
        got = ls.cross_entropy(z, labels.to(dtype), epsilon=0.2, ignore_index=-100)
        torch.testing.assert_close(got, expected, rtol=1e-13, atol=0, msg=str(dtype))


def test_uint64_labels_beyond_int64_are_refused():
    z = np.zeros((1, 4))
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\), got a label of 9223372036854775811"):
        ls.cross_entropy(z, np.array([2**63 + 3], np.uint64))


# --- 5. float64 accuracy at a million classes ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("epsilon", [0.1, 1.0])
def test_float64_loss_at_a_million_classes_with_many_equal_logits(epsilon):
    num_classes = 10**6
    # Three distinct values, so the 50-digit reference is a sum over three groups; 0.1 and
    # -1.3 are not dyadic, so a long sequential sum of their distances accumulates rounding
    # (a BLAS dot measured 8e-14 here, pairwise summation 1e-16).
    values, counts = np.array([0.1, -1.3, 3.0]), np.array([num_classes - 1001, 1000, 1])
    z = np.repeat(values, counts)[None, :]
    eps = mpmath.mpf(epsilon)
    lse = mpmath.log(mpmath.fsum(int(n) * mpmath.exp(mpmath.mpf(v)) for v, n in zip(values, counts)))
    mean_z = mpmath.fsum(int(n) * mpmath.mpf(v) for v, n in zip(values, counts)) / num_classes
    expected = float(lse - (1 - eps) * mpmath.mpf(3.0) - eps * mean_z)
    torch = pytest.importorskip("torch")
    for logits, labels in ((z, np.array([num_classes - 1])), (torch.from_numpy(z), torch.tensor([num_classes - 1]))):
        loss = ls.cross_entropy(logits, labels, epsilon=epsilon)
        assert abs(float(loss) / expected - 1.0) < 1e-14


# --- 8. NumPy scalars are Python numbers -------------------------------------------------


@pytest.mark.parametrize("scalar_type", [np.float64, np.float32])
def test_numpy_scalar_epsilon_with_any_array_library(backend, rng, scalar_type):
    z = rng.normal(size=(4, 5))
    labels = np.array([0, 1, 4, 2])
    expected = call(backend, "cross_entropy", z, labels, epsilon=float(scalar_type(0.1)))
    got = call(backend, "cross_entropy", z, labels, epsilon=scalar_type(0.1))
    np.testing.assert_array_equal(got, expected)
    torch = pytest.importorskip("torch")
    reference = torch.nn.functional.cross_entropy(
        torch.from_numpy(z), torch.from_numpy(labels), label_smoothing=float(scalar_type(0.1))
    )
    np.testing.assert_allclose(got, reference.item(), rtol=1e-6)
    smoothed = call(backend, "soft_targets", labels, 5, epsilon=scalar_type(0.1))
    np.testing.assert_allclose(smoothed, 0.9 * np.eye(5)[labels] + 0.02, rtol=1e-6)


# --- 9. masked arrays --------------------------------------------------------------------


@pytest.mark.parametrize("argument", ["logits", "targets", "weight", "prior", "epsilon", "where"])
def test_masked_arrays_are_refused(argument):
    z = np.zeros((2, 3))
    arguments = {"logits": z, "targets": np.array([0, 1]), "weight": None, "prior": None, "epsilon": 0.1, "where": None}
    value = {
        "logits": z,
        "targets": np.array([0, 1]),
        "weight": np.ones(3),
        "prior": np.full(3, 1 / 3),
        "epsilon": np.array([0.1, 0.2]),
        "where": np.ones((2, 3), bool),
    }[argument]
    arguments[argument] = np.ma.masked_array(value, mask=np.zeros(value.shape, bool))
    logits, targets = arguments.pop("logits"), arguments.pop("targets")
    with pytest.raises(TypeError, match=f"^{argument} must be an array without a mask"):
        ls.cross_entropy(logits, targets, **arguments)


def test_masked_arrays_are_refused_by_the_softmax_family():
    x = np.ma.masked_array([[0.0, 1.0]], mask=[[False, True]])
    for name in ("softmax", "log_softmax", "logsumexp"):
        with pytest.raises(TypeError, match=r"^x must be an array without a mask"):
            getattr(ls, name)(x)
    with pytest.raises(TypeError, match=r"^labels must be an array without a mask"):
        ls.one_hot(np.ma.masked_array([0, 1]), 2)


# --- 10. ignore_index beyond every integer dtype; no classes at all ------------------------


def test_ignore_index_beyond_int64_is_a_label_no_sample_has(backend, rng):
    z = rng.normal(size=(3, 4))
    labels = np.array([0, 3, 2])
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(z), torch.from_numpy(labels), label_smoothing=0.1)
    loss = call(backend, "cross_entropy", z, labels, epsilon=0.1, ignore_index=2**70)
    np.testing.assert_allclose(loss, expected.item(), rtol=1e-6)


@pytest.mark.parametrize(
    "name",
    ["cross_entropy", "cross_entropy_grad", "kl_divergence", "softmax", "log_softmax", "logsumexp", "smooth_labels"],
)
def test_no_classes_is_a_value_error(eager_backend, name):
    empty = np.zeros((2, 0))
    args = {
        "cross_entropy": (empty, np.array([0, 0])),
        "cross_entropy_grad": (empty, np.array([0, 0])),
        "kl_divergence": (empty, np.array([0, 0])),
        "smooth_labels": (empty, 0.1),
    }.get(name, (empty,))
    arrays = [eager_backend.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    with pytest.raises(ValueError, match="at least one class"):
        getattr(ls, name)(*arrays)


# --- 11. no floating-point warnings for valid inputs ----------------------------------------


def test_huge_logits_in_the_softmax_family_warn_of_nothing(backend):
    if not has_float64(backend):
        pytest.skip("this backend computes in float32 here")
    x = np.array([[1e308, -1e308, 0.0], [-1e308, 1e308, 1e308]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = call(backend, "softmax", x)
        log_p = call(backend, "log_softmax", x)
        lse = call(backend, "logsumexp", x)
        loss = call(backend, "cross_entropy", x, np.array([0, 1]), reduction="none")
    np.testing.assert_array_equal(p, [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    # -2e308 is beyond the float range: -inf is its correctly rounded value.
    np.testing.assert_array_equal(log_p[0], [0.0, -np.inf, -1e308])
    np.testing.assert_allclose(lse, [1e308, 1e308], rtol=1e-15)
    np.testing.assert_allclose(loss, [0.0, math.log(2.0)], rtol=1e-15)


def test_per_sample_zero_epsilon_with_a_masked_neg_inf_logit_warns_of_nothing(backend):
    z = np.array([[0.0, -np.inf, 1.0], [0.0, -np.inf, 1.0]])
    where = np.array([[True, True, True], [True, False, True]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = call(
            backend, "cross_entropy", z, np.array([0, 2]), epsilon=np.array([0.0, 0.1]), where=where, reduction="none"
        )
    p = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    expected = [-math.log(p[0]), -(0.95 * math.log(p[1]) + 0.05 * math.log(p[0]))]
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


# --- 12. messages that say what to do ------------------------------------------------------


def test_float_class_indices_are_told_to_use_an_integer_dtype():
    with pytest.raises(ValueError, match="class indices need an integer dtype"):
        ls.cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))


def test_pytorch_padding_label_suggests_ignore_index():
    with pytest.raises(ValueError, match=r"got a label of -100 .*pass ignore_index=-100"):
        ls.cross_entropy(np.zeros((2, 3)), np.array([0, -100]))


def test_channels_first_logits_suggest_axis_1():
    with pytest.raises(ValueError, match=r"pass axis=1"):
        ls.cross_entropy(np.zeros((2, 3, 4)), np.zeros((2, 4), np.int64))
