"""Defined edges (docs/errors.md), each on every backend: NaN, empty batches, all samples
ignored, one class, -inf logits with and without ``where``, logits of +-1e308, and
half-precision inputs.

References are the dense float64 oracle (``tests/_formulas.py``: softmax by its definition on
the allowed classes) or mpmath, never computed with labelsmooth.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from _formulas import cross_entropy_rows, dense_smoothed, log_softmax

import labelsmooth as ls
from labelsmooth import _numpy_fast
from labelsmooth._assembly import solve
from labelsmooth._problem import prepare

INF = math.inf
LOSSES = ("cross_entropy", "cross_entropy_grad", "cross_entropy_with_grad")


# --- the oracle: tests/_formulas.py; mpmath below --------------------------------------


def tol(result):
    if result.dtype == np.float32:
        return {"rtol": 2e-5, "atol": 2e-6}
    return {"rtol": 1e-12, "atol": 1e-14}


def has_float64(b):
    return b.to_numpy(b.asarray(np.zeros(1))).dtype == np.float64


def call(b, name, *arrays, **options):
    """``ls.<name>`` called the backend's way on NumPy inputs; NumPy results back."""
    converted = [b.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays]
    options = {k: (b.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()}
    return b.to_numpy(b.call(getattr(ls, name), *converted, **options))


# --- NaN ----------------------------------------------------------------------------------


@pytest.mark.parametrize("targets_kind", ["labels", "probabilities"])
@pytest.mark.parametrize("epsilon", [0.0, 0.2])
def test_nan_logit_stays_in_its_row(backend, rng, targets_kind, epsilon):
    z = rng.normal(size=(4, 5))
    z[1, 2] = np.nan
    labels = np.array([0, 4, 2, 3])
    targets = labels if targets_kind == "labels" else rng.dirichlet(np.ones(5), size=4)
    loss, grad = call(backend, "cross_entropy_with_grad", z, targets, epsilon=epsilon, reduction="none")
    assert np.isnan(loss[1]) and np.all(np.isnan(grad[1]))
    ref_loss, ref_grad = cross_entropy_rows(z, targets, epsilon=epsilon, reduction="none")
    rows = [0, 2, 3]
    np.testing.assert_allclose(loss[rows], ref_loss[rows], **tol(loss))
    np.testing.assert_allclose(grad[rows], ref_grad[rows], **tol(grad))
    # A reduction over a NaN row is NaN.
    assert np.isnan(call(backend, "cross_entropy", z, targets, epsilon=epsilon))
    assert np.isnan(call(backend, "cross_entropy", z, targets, epsilon=epsilon, reduction="sum"))


def test_nan_logit_stays_in_its_row_in_the_softmax_family(backend, rng):
    z = rng.normal(size=(3, 4))
    z[2, 0] = np.nan
    for name in ("logsumexp", "log_softmax", "softmax"):
        out = call(backend, name, z)
        assert np.all(np.isnan(out[2]))
        assert np.all(np.isfinite(out[:2]))


def test_nan_logit_on_a_masked_class_is_excluded(backend, rng):
    z = rng.normal(size=(3, 4))
    z[1, 3] = np.nan
    allowed = np.array([True, True, True, False])
    labels = np.array([0, 1, 2])
    loss, grad = call(backend, "cross_entropy_with_grad", z, labels, epsilon=0.1, where=allowed, reduction="none")
    ref_loss, ref_grad = cross_entropy_rows(z, labels, epsilon=0.1, where=allowed, reduction="none")
    np.testing.assert_allclose(loss, ref_loss, **tol(loss))
    np.testing.assert_allclose(grad, ref_grad, **tol(grad))


# --- empty batch and fully ignored batch -------------------------------------------------


@pytest.mark.parametrize(("shape", "axis"), [((0, 5), -1), ((2, 0, 5), -1), ((3, 5, 0), 1)])
@pytest.mark.parametrize("targets_kind", ["labels", "probabilities"])
def test_empty_batch(backend, shape, axis, targets_kind):
    z = np.zeros(shape)
    batch_shape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    targets = np.zeros(batch_shape, dtype=np.int64) if targets_kind == "labels" else np.zeros(shape)
    options = {"axis": axis, "epsilon": 0.1, "weight": np.ones(5)}
    none, grad = call(backend, "cross_entropy_with_grad", z, targets, reduction="none", **options)
    assert none.shape == batch_shape and grad.shape == shape
    total, grad_sum = call(backend, "cross_entropy_with_grad", z, targets, reduction="sum", **options)
    assert total.shape == () and total == 0.0 and grad_sum.shape == shape
    mean = call(backend, "cross_entropy", z, targets, **options)
    # 0 / 0, as PyTorch gives for an empty batch.
    assert mean.shape == () and np.isnan(mean)
    assert call(backend, "logsumexp", z, axis=axis).shape == batch_shape
    assert call(backend, "softmax", z, axis=axis).shape == shape
    assert call(backend, "one_hot", np.zeros(batch_shape, dtype=np.int64), 5, axis=axis).shape == shape


@pytest.mark.parametrize("weighted", [False, True])
def test_every_sample_ignored(backend, weighted):
    z = np.array([[0.0, 1.0, -2.0], [3.0, 0.5, 0.5]])
    labels = np.array([-100, -100])
    options = {"ignore_index": -100, "epsilon": 0.1, "weight": np.array([1.0, 2.0, 0.5]) if weighted else None}
    mean, grad_mean = call(backend, "cross_entropy_with_grad", z, labels, **options)
    total, grad_sum = call(backend, "cross_entropy_with_grad", z, labels, reduction="sum", **options)
    none, grad_none = call(backend, "cross_entropy_with_grad", z, labels, reduction="none", **options)
    assert np.isnan(mean)  # 0 / 0 as in PyTorch
    assert total == 0.0
    assert np.array_equal(none, [0.0, 0.0])
    # No sample contributes: zero gradient (PyTorch also gives zeros for "mean").
    for grad in (grad_sum, grad_none, grad_mean):
        assert np.array_equal(grad, np.zeros_like(z))


def test_every_sample_ignored_matches_pytorch_gradient():
    torch = pytest.importorskip("torch")
    z = torch.tensor([[0.0, 1.0, -2.0], [3.0, 0.5, 0.5]], dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(z, torch.tensor([-100, -100]), label_smoothing=0.1)
    loss.backward()
    ours = ls.cross_entropy_with_grad(z.detach(), torch.tensor([-100, -100]), epsilon=0.1, ignore_index=-100)
    assert torch.isnan(loss) and torch.isnan(ours[0])
    assert torch.equal(ours[1], z.grad)


# --- one class ----------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.3, 1.0])
def test_single_class_gives_zero_loss_and_gradient(backend, epsilon):
    z = np.array([[3.0], [-2.0], [1e4]])
    for targets, prior in (
        (np.zeros(3, dtype=np.int64), None),
        (np.ones((3, 1)), None),
        (np.zeros(3, dtype=np.int64), np.array([1.0])),
    ):
        for reduction in ("none", "mean"):
            loss, grad = call(
                backend, "cross_entropy_with_grad", z, targets, epsilon=epsilon, prior=prior, reduction=reduction
            )
            # p = 1 and q' = 1 exactly; T = (1 - eps) + eps may round one ulp off 1.
            assert np.all(loss == 0.0)
            np.testing.assert_allclose(grad, 0.0, atol=4 * np.finfo(grad.dtype).eps)
    # One allowed class out of three behaves as K = 1.
    allowed = np.array([[False, True, False]])
    loss, grad = call(
        backend,
        "cross_entropy_with_grad",
        np.array([[5.0, -1.0, 2.0]]),
        np.array([1]),
        epsilon=epsilon,
        where=allowed,
        reduction="none",
    )
    assert loss[0] == 0.0 and np.all(grad == 0.0)


def test_single_class_with_prior_others_is_refused(backend):
    z, y = backend.asarray(np.zeros((2, 1))), backend.asarray(np.zeros(2, dtype=np.int64))
    for name in LOSSES:
        with pytest.raises(ValueError, match=r"prior='others' needs at least 2 classes, got 1"):
            backend.call(getattr(ls, name), z, y, epsilon=0.1, prior="others")
    with pytest.raises(ValueError, match=r"prior='others' needs at least 2 classes, got 1"):
        backend.call(ls.soft_targets, y, 1, epsilon=0.1, prior="others")
    with pytest.raises(ValueError, match=r"prior='others' needs at least 2 classes, got 1"):
        backend.call(ls.smooth_labels, backend.asarray(np.ones((2, 1))), 0.1, prior="others")


# --- -inf logits ------------------------------------------------------------------------

NEG_INF_LOGITS = np.array([[-INF, 0.0, 1.0], [0.5, -INF, -1.0]])


@pytest.mark.parametrize(
    ("labels", "epsilon", "prior"),
    [
        ([0, 1], 0.0, None),  # the true class itself is -inf
        ([1, 0], 0.1, None),  # uniform smoothing puts eps/K on the -inf class
        ([0, 1], 1.0, None),  # all mass is smoothing, some of it on the -inf class
        ([0, 1], 0.9, "others"),  # the true class keeps 1 - eps > 0 under "others" too
        ([1, 0], 0.3, "others"),  # "others" spreads onto the -inf class
        ([1, 0], 0.5, "prior"),  # a prior with mass on the -inf class
    ],
    ids=["label", "uniform", "eps1", "others-true", "others-spread", "prior"],
)
def test_neg_inf_logit_with_target_mass_gives_inf_loss(backend, labels, epsilon, prior):
    labels = np.array(labels)
    prior_value = np.array([0.2, 0.3, 0.5]) if prior == "prior" else prior
    loss, grad = call(
        backend, "cross_entropy_with_grad", NEG_INF_LOGITS, labels, epsilon=epsilon, prior=prior_value, reduction="none"
    )
    assert np.all(loss == INF)
    # The gradient p - q' stays finite: the -inf class has p = 0.
    _, ref_grad = cross_entropy_rows(NEG_INF_LOGITS, labels, epsilon=epsilon, prior=prior_value, reduction="none")
    np.testing.assert_allclose(grad, ref_grad, **tol(grad))
    assert call(backend, "cross_entropy", NEG_INF_LOGITS, labels, epsilon=epsilon, prior=prior_value) == INF


def test_neg_inf_logit_with_probability_mass_gives_inf_loss(backend):
    q = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    loss, grad = call(backend, "cross_entropy_with_grad", NEG_INF_LOGITS, q, reduction="none")
    # Row 0 puts mass on its -inf class; row 1 does not.
    assert loss[0] == INF and np.isfinite(loss[1])
    ref_loss, ref_grad = cross_entropy_rows(NEG_INF_LOGITS, q, reduction="none")
    np.testing.assert_allclose(loss[1], ref_loss[1], **tol(loss))
    np.testing.assert_allclose(grad, ref_grad, **tol(grad))


@pytest.mark.parametrize(
    ("labels", "epsilon", "prior", "weight"),
    [
        ([1, 0], 0.0, None, None),  # no smoothing: the -inf class has no mass
        ([1, 0], 1.0, "prior", None),  # a prior without mass on it
        ([0, 1], 0.4, None, [0.0, 0.0, 1.0]),  # a zero class weight removes its mass
        ([2, 0], 0.0, None, None),
    ],
    ids=["unsmoothed", "prior", "weight", "unsmoothed-2"],
)
def test_neg_inf_logit_without_target_mass_is_finite(backend, labels, epsilon, prior, weight):
    labels = np.array(labels)
    prior_value = np.array([0.0, 0.0, 1.0]) if prior == "prior" else prior
    weight_value = None if weight is None else np.array(weight)
    loss, grad = call(
        backend,
        "cross_entropy_with_grad",
        NEG_INF_LOGITS,
        labels,
        epsilon=epsilon,
        prior=prior_value,
        weight=weight_value,
        reduction="none",
    )
    # PyTorch's weighted form: c = w * q', loss = -sum c log p, gradient (sum c) p - c.
    ref_loss, ref_grad = cross_entropy_rows(
        NEG_INF_LOGITS, labels, epsilon=epsilon, prior=prior_value, weight=weight_value, reduction="none"
    )
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, ref_loss, **tol(loss))
    np.testing.assert_allclose(grad, ref_grad, **tol(grad))


@pytest.mark.parametrize("prior", [None, "others", "array"])
@pytest.mark.parametrize("targets_kind", ["labels", "probabilities"])
def test_masked_neg_inf_classes_give_finite_loss_and_zero_gradient(backend, rng, prior, targets_kind):
    z = rng.normal(size=(4, 6))
    allowed = np.ones((4, 6), bool)
    allowed[0, [1, 4]] = allowed[1, 0] = allowed[2, [2, 3, 5]] = allowed[3, 5] = False
    z = np.where(allowed, z, -INF)
    labels = np.array([0, 3, 1, 2])
    if targets_kind == "labels":
        targets = labels
    else:
        targets = np.where(allowed, rng.dirichlet(np.ones(6), size=4), 0.0)
        targets /= targets.sum(-1, keepdims=True)
    prior_value = rng.dirichlet(np.ones(6)) if prior == "array" else prior
    loss, grad = call(
        backend, "cross_entropy_with_grad", z, targets, epsilon=0.2, prior=prior_value, where=allowed, reduction="none"
    )
    ref_loss, ref_grad = cross_entropy_rows(z, targets, epsilon=0.2, prior=prior_value, where=allowed, reduction="none")
    assert np.all(np.isfinite(loss)) and np.all(grad[~allowed] == 0.0)
    np.testing.assert_allclose(loss, ref_loss, **tol(loss))
    np.testing.assert_allclose(grad, ref_grad, **tol(grad))


def test_neg_inf_on_the_true_class_under_others_with_full_smoothing_is_finite(backend):
    # u = (1 - q)/(K - 1) and eps = 1 give the true class no mass: the exact loss is the
    # finite smoothing term over the other classes alone.
    loss, grad = call(
        backend,
        "cross_entropy_with_grad",
        NEG_INF_LOGITS,
        np.array([0, 1]),
        epsilon=1.0,
        prior="others",
        reduction="none",
    )
    ref_loss, ref_grad = cross_entropy_rows(
        NEG_INF_LOGITS, np.array([0, 1]), epsilon=1.0, prior="others", reduction="none"
    )
    assert np.all(np.isfinite(ref_loss))
    np.testing.assert_allclose(loss, ref_loss, **tol(loss))
    np.testing.assert_allclose(grad, ref_grad, **tol(grad))


def test_rows_of_neg_inf(backend):
    z = np.array([[-INF, -INF, -INF], [0.0, 1.0, -INF], [-INF, -INF, 2.0]])
    lse = call(backend, "logsumexp", z)
    assert lse[0] == -INF
    np.testing.assert_allclose(lse[1:], [np.log(1 + np.e), 2.0], **tol(lse))
    # An all -inf row has no softmax (0/0): NaN in that row only.
    for name in ("softmax", "log_softmax"):
        out = call(backend, name, z)
        assert np.all(np.isnan(out[0])) and not np.any(np.isnan(out[1:]))
    labels = np.array([0, 1, 2])
    for epsilon in (0.0, 0.1):
        loss, grad = call(backend, "cross_entropy_with_grad", z, labels, epsilon=epsilon, reduction="none")
        assert np.isnan(loss[0]) and np.all(np.isnan(grad[0]))
        assert not np.any(np.isnan(loss[1:])) and not np.any(np.isnan(grad[1:]))


def test_rows_of_neg_inf_with_where(backend):
    z = np.array([[-INF, -INF, 0.5, 1.0], [-INF, -INF, -INF, 1.0], [3.0, 2.0, -INF, -INF]])
    allowed = np.array([[False, False, True, True], [True, True, True, False], [True, True, True, True]])
    labels = np.array([3, 0, 0])
    loss, grad = call(backend, "cross_entropy_with_grad", z, labels, where=allowed, reduction="none")
    # Row 0: the -inf classes are masked, the rest is an ordinary 2-class row.
    ref_loss, ref_grad = cross_entropy_rows(z, labels, where=allowed, reduction="none")
    np.testing.assert_allclose(loss[0], ref_loss[0], **tol(loss))
    np.testing.assert_allclose(grad[0], ref_grad[0], **tol(grad))
    assert np.all(grad[0, :2] == 0.0)
    # Row 1: every allowed class is -inf, the softmax over them is undefined: NaN (the masked
    # class keeps its gradient of 0).
    assert np.isnan(loss[1]) and np.all(np.isnan(grad[1, :3])) and grad[1, 3] == 0.0
    # Row 2: unmasked -inf classes without target mass: finite.
    np.testing.assert_allclose(loss[2], ref_loss[2], **tol(loss))
    np.testing.assert_allclose(grad[2], ref_grad[2], **tol(grad))


def test_pos_inf_logit_has_no_defined_softmax(backend):
    z = np.array([[INF, 0.0, 1.0], [0.0, 1.0, 2.0]])
    assert call(backend, "logsumexp", z)[0] == INF
    for name in ("softmax", "log_softmax"):
        out = call(backend, name, z)
        assert np.all(np.isnan(out[0])) and np.all(np.isfinite(out[1]))
    loss, grad = call(backend, "cross_entropy_with_grad", z, np.array([0, 2]), epsilon=0.1, reduction="none")
    assert np.isnan(loss[0]) and np.all(np.isnan(grad[0])) and np.isfinite(loss[1])


# --- logits of +-1e308 ------------------------------------------------------------------

HUGE = np.array(
    [
        [1e308, -1e308, 0.0],
        [-1e308, 1e308, 1e308],
        [1e308, 1e308, 1e308],
        [-1e308, -1e308, -1e308],
        [-1e308, 5.0, 1e308],
    ]
)
HUGE_LABELS = np.array([0, 1, 2, 0, 1])


def mp_reference(z_row, target_row):
    """Loss and gradient of one row in 400-digit arithmetic, rounded to float64."""
    # 1e308 + log(2) needs more than 308 significant digits.
    with mpmath.workdps(400):
        z = [mpmath.mpf(float(v)) for v in z_row]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z))
        q = [mpmath.mpf(float(v)) for v in target_row]
        loss = mpmath.fsum(qk * (lse - zk) for qk, zk in zip(q, z))
        grad = [mpmath.exp(zk - lse) - qk for qk, zk in zip(q, z)]
        # Values beyond the float64 range round to inf.
        as_float = float(loss) if abs(loss) < mpmath.mpf(np.finfo(np.float64).max) else math.copysign(INF, loss)
        return as_float, [float(g) for g in grad]


def test_huge_logits_give_finite_gradients_and_exact_unsmoothed_losses(backend):
    if not has_float64(backend):
        pytest.skip("this backend computes in float32 here")
    loss, grad = call(backend, "cross_entropy_with_grad", HUGE, HUGE_LABELS, reduction="none")
    assert np.all(np.isfinite(grad))
    for i in range(len(HUGE)):
        ref_loss, ref_grad = mp_reference(HUGE[i], np.eye(3)[HUGE_LABELS[i]])
        np.testing.assert_allclose(grad[i], ref_grad, rtol=1e-15, atol=1e-300)
        if math.isinf(ref_loss):
            assert loss[i] == ref_loss
        else:
            np.testing.assert_allclose(loss[i], ref_loss, rtol=1e-15, atol=1e-300)
    lse = call(backend, "logsumexp", HUGE)
    np.testing.assert_allclose(
        lse, [1e308, 1e308 + math.log(2), 1e308 + math.log(3), -1e308 + math.log(3), 1e308], rtol=1e-15
    )
    p = call(backend, "softmax", HUGE)
    np.testing.assert_allclose(
        p, [[1, 0, 0], [0, 0.5, 0.5], [1 / 3] * 3, [1 / 3] * 3, [0, 0, 1]], rtol=1e-15, atol=1e-300
    )


@pytest.mark.parametrize("epsilon", [0.1, 1.0])
def test_huge_logits_with_smoothing_give_finite_gradients(backend, epsilon):
    if not has_float64(backend):
        pytest.skip("this backend computes in float32 here")
    loss, grad = call(backend, "cross_entropy_with_grad", HUGE, HUGE_LABELS, epsilon=epsilon, reduction="none")
    assert np.all(np.isfinite(grad))
    targets = dense_smoothed(HUGE_LABELS, 3, epsilon)
    for i in range(len(HUGE)):
        ref_loss, ref_grad = mp_reference(HUGE[i], targets[i])
        # q' holds 1/3 rounded to float64 in the reference: a few 1e-17 of slack.
        np.testing.assert_allclose(grad[i], ref_grad, rtol=1e-15, atol=1e-16)
        # Rows more than the largest float apart too: the distances are summed scaled.
        if math.isinf(ref_loss):
            assert loss[i] == ref_loss
        else:
            np.testing.assert_allclose(loss[i], ref_loss, rtol=1e-15)


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_gradient_written_over_huge_logits_is_exact(monkeypatch, epsilon):
    # The linear loss lets the NumPy kernel write each block's gradient over its logits;
    # the rows whose distances overflow are summed again from the logits, which must still
    # be there (the row-blocked passes, not the transposed ones of few classes).
    monkeypatch.setattr(_numpy_fast, "_TRANSPOSED_MAX_CLASSES", 0)
    owned = HUGE.copy()
    problem = prepare(owned, HUGE_LABELS, epsilon=epsilon, reduction="none")
    loss, grad = solve(problem, with_grad=True, overwrite_logits=True)
    assert np.shares_memory(grad, owned)
    targets = dense_smoothed(HUGE_LABELS, 3, epsilon)
    for i in range(len(HUGE)):
        ref_loss, ref_grad = mp_reference(HUGE[i], targets[i])
        np.testing.assert_allclose(grad[i], ref_grad, rtol=1e-15, atol=1e-16)
        if math.isinf(ref_loss):
            assert loss[i] == ref_loss
        else:
            np.testing.assert_allclose(loss[i], ref_loss, rtol=1e-15)


@pytest.mark.parametrize(
    ("logits", "label", "epsilon"),
    [
        ([1e308, -1e308, 0.0], 0, 0.1),  # m - z_k itself beyond the largest float
        ([1e308, -1e308, 0.0], 1, 0.5),  # ... on the true class, with a finite loss
        ([1e308, 0.0, 0.0, 0.0], 0, 0.1),  # only the sum of the distances overflows
        ([1e308, 0.0, 0.0, 0.0], 0, 1.0),
    ],
)
def test_huge_logit_spread_with_smoothing_gives_the_exact_loss(backend, logits, label, epsilon):
    if not has_float64(backend):
        pytest.skip("this backend computes in float32 here")
    z = np.array([logits])
    num_classes = z.shape[1]
    targets = dense_smoothed(np.array([label]), num_classes, epsilon)
    ref_loss, _ = mp_reference(z[0], targets[0])
    assert math.isfinite(ref_loss)
    for target in (np.array([label]), np.eye(num_classes)[[label]]):
        loss = call(backend, "cross_entropy", z, target, epsilon=epsilon, reduction="none")
        np.testing.assert_allclose(loss[0], ref_loss, rtol=1e-14)


# --- half precision ------------------------------------------------------------------------


def half_dtypes(b):
    return {
        "torch": ["float16", "bfloat16"],
        "jax": ["float16", "bfloat16"],
        "jax_jit": ["float16", "bfloat16"],
        "numpy": ["float16"],
        "numpy_readonly": ["float16"],
        "dask": ["float16"],
    }.get(b.name, [])


def as_half(b, x, name):
    """``x`` (NumPy float32) as a ``name`` array of the backend."""
    if name == "bfloat16":
        return b.xp.astype(b.asarray(x.astype(np.float32)), b.module.bfloat16)
    return b.asarray(x.astype(np.float16))


def to_float32(b, y):
    if b.name == "torch":
        return y.float().numpy() if hasattr(y, "float") else np.asarray(y, np.float32)
    return np.asarray(b.to_numpy(y), dtype=np.float32)


def dtype_name(y):
    return str(y.dtype).rsplit(".", 1)[-1]


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32_and_returned_in_kind(backend, rng, half):
    if half not in half_dtypes(backend):
        pytest.skip(f"{backend.name} has no {half} here")
    torch = pytest.importorskip("torch")
    num_classes = 1000
    z32 = (rng.normal(scale=4.0, size=(6, num_classes))).astype(np.float32)
    labels = rng.integers(0, num_classes, size=6)
    z_half = as_half(backend, z32, half)
    # The input's values exactly, widened: the reference sees what the function sees.
    z_exact = to_float32(backend, z_half).astype(np.float64)
    half_np = np.float16 if half == "float16" else None
    torch_half = getattr(torch, half)

    def cast_down(values):
        """A float64 reference rounded once to the half dtype, back in float64."""
        return torch.tensor(values, dtype=torch.float64).to(torch_half).to(torch.float64).numpy()

    def ulps(values):
        step = np.finfo(half_np).eps if half_np else 2.0**-7
        return step * np.maximum(np.abs(values), 2.0**-14)

    yb = backend.asarray(labels)
    loss, grad = backend.call(ls.cross_entropy_with_grad, z_half, yb, epsilon=0.1, reduction="none")
    assert dtype_name(loss) == half and dtype_name(grad) == half
    ref = torch.nn.functional.cross_entropy(
        torch.tensor(z_exact), torch.tensor(labels), label_smoothing=0.1, reduction="none"
    ).numpy()
    # At most one rounding away from the exact value: the work was done in float32 or wider.
    np.testing.assert_array_less(np.abs(to_float32(backend, loss) - cast_down(ref)), ulps(ref) * 1.01)
    _, ref_grad = cross_entropy_rows(z_exact, labels, epsilon=0.1, reduction="none")
    np.testing.assert_array_less(np.abs(to_float32(backend, grad) - cast_down(ref_grad)), ulps(ref_grad) * 1.01 + 1e-30)
    # The same as the float32 computation cast down (one rounding of each may differ by one step).
    loss32 = backend.call(
        ls.cross_entropy, backend.asarray(z_exact.astype(np.float32)), yb, epsilon=0.1, reduction="none"
    )
    np.testing.assert_array_less(
        np.abs(to_float32(backend, loss) - cast_down(to_float32(backend, loss32))), ulps(ref) * 1.01
    )
    for name in ("logsumexp", "log_softmax", "softmax"):
        out = backend.call(getattr(ls, name), z_half)
        assert dtype_name(out) == half
        if name == "logsumexp":
            exact = np.log(np.exp(z_exact - z_exact.max(-1, keepdims=True)).sum(-1)) + z_exact.max(-1)
        elif name == "log_softmax":
            exact = log_softmax(z_exact)
        else:
            exact = np.exp(log_softmax(z_exact))
        np.testing.assert_array_less(np.abs(to_float32(backend, out) - cast_down(exact)), ulps(exact) * 1.01 + 1e-30)
    half_dtype = np.float16 if backend.name in ("numpy", "numpy_readonly", "dask") else getattr(backend.module, half)
    targets = backend.call(ls.soft_targets, yb, num_classes, epsilon=0.1, dtype=half_dtype)
    assert dtype_name(targets) == half
    np.testing.assert_array_equal(to_float32(backend, targets), cast_down(dense_smoothed(labels, num_classes, 0.1)))
