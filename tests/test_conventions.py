"""Every row of docs/conventions.md: how a framework smooths labels, and the labelsmooth call
that reproduces it, including where their edge behaviour differs.

Against the real package where it is installed (PyTorch, optax, Keras 3); otherwise against
that framework's formula written out here from its source (TF v1, timm, fairseq, Hugging
Face ``LabelSmoother``, Liger-Kernel).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported anywhere

import numpy as np
import pytest
from _formulas import log_softmax

import labelsmooth as ls
from labelsmooth.testing import assert_close

EPS = 0.1


def _logits_and_labels(rng: np.random.Generator, n: int = 6, k: int = 5, scale: float = 2.0):
    return rng.standard_normal((n, k)) * scale, rng.integers(0, k, size=n)


# --- PyTorch F.cross_entropy (the real package) ---------------------------------------------------

torch_backends = pytest.mark.parametrize("backend", ["numpy", "torch"], indirect=True)


@torch_backends
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_pytorch_weight_ignore_index_and_smoothing(backend, rng, reduction) -> None:
    torch = pytest.importorskip("torch")
    z, y = _logits_and_labels(rng, n=8)
    y[[2, 5]] = -100
    w = rng.uniform(0.2, 3.0, size=5)
    zt = torch.tensor(z, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(
        zt, torch.tensor(y), weight=torch.tensor(w), ignore_index=-100, reduction=reduction, label_smoothing=EPS
    )
    (expected_grad,) = torch.autograd.grad(expected.sum(), zt)
    loss, grad = backend.to_numpy(
        backend.call(
            ls.cross_entropy_with_grad,
            backend.asarray(z),
            backend.asarray(y),
            epsilon=EPS,
            weight=backend.asarray(w),
            ignore_index=-100,
            reduction=reduction,
        )
    )
    assert_close(loss, expected)
    assert_close(grad, expected_grad)


@torch_backends
def test_pytorch_class_axis_one_layout(backend, rng) -> None:
    torch = pytest.importorskip("torch")
    z = rng.standard_normal((2, 5, 3, 4))  # (N, C, d1, d2)
    y = rng.integers(0, 5, size=(2, 3, 4))
    y[0, 1, 2] = 7  # an ignore_index that is a valid-looking integer
    w = rng.uniform(0.5, 2.0, size=5)
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(z), torch.tensor(y), weight=torch.tensor(w), ignore_index=7, label_smoothing=0.2
    )
    loss = backend.call(
        ls.cross_entropy,
        backend.asarray(z),
        backend.asarray(y),
        epsilon=0.2,
        weight=backend.asarray(w),
        ignore_index=7,
        axis=1,
    )
    assert_close(backend.to_numpy(loss), expected)


@torch_backends
def test_pytorch_probability_targets_mean_over_samples(backend, rng) -> None:
    torch = pytest.importorskip("torch")
    z = rng.standard_normal((4, 5, 3))
    q = rng.dirichlet(np.ones(5), size=(4, 3)).transpose(0, 2, 1)
    w = rng.uniform(0.5, 2.0, size=5)
    for reduction in ("mean", "none"):
        expected = torch.nn.functional.cross_entropy(
            torch.tensor(z), torch.tensor(q), weight=torch.tensor(w), label_smoothing=0.3, reduction=reduction
        )
        loss = backend.call(
            ls.cross_entropy,
            backend.asarray(z),
            backend.asarray(q),
            epsilon=0.3,
            weight=backend.asarray(w),
            axis=1,
            reduction=reduction,
        )
        assert_close(backend.to_numpy(loss), expected)


@torch_backends
def test_pytorch_all_ignored_mean_is_nan(backend, rng) -> None:
    torch = pytest.importorskip("torch")
    z, _ = _logits_and_labels(rng)
    y = np.full(6, -100)
    expected = torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(y), label_smoothing=EPS)
    loss = backend.call(ls.cross_entropy, backend.asarray(z), backend.asarray(y), epsilon=EPS, ignore_index=-100)
    assert torch.isnan(expected)
    assert np.isnan(backend.to_numpy(loss))


def test_pytorch_epsilon_range_differs() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    z, y = _logits_and_labels(rng)
    zt, yt = torch.tensor(z), torch.tensor(y)
    # PyTorch: a negative smoothing is silently no smoothing; above 1 is an error.
    assert_close(
        torch.nn.functional.cross_entropy(zt, yt, label_smoothing=-0.5),
        torch.nn.functional.cross_entropy(zt, yt),
        rtol=0,
        atol=0,
    )
    with pytest.raises(RuntimeError, match="label_smoothing"):
        torch.nn.functional.cross_entropy(zt, yt, label_smoothing=1.5)
    # labelsmooth: both are a ValueError naming epsilon.
    for bad in (-0.5, 1.5):
        with pytest.raises(ValueError, match="epsilon"):
            ls.cross_entropy(z, y, epsilon=bad)


# --- optax (the real package) ---------------------------------------------------------------------

# optax runs on JAX only; each case compiles JAX programs.
jax_backends = pytest.mark.parametrize(
    "backend", [pytest.param(name, marks=pytest.mark.slow) for name in ("jax", "jax_jit")], indirect=True
)


@jax_backends
def test_optax_smooth_labels_then_softmax_cross_entropy(backend, rng) -> None:
    optax = pytest.importorskip("optax")
    import jax

    z, y = _logits_and_labels(rng, n=7)
    zj, yj = backend.asarray(z), backend.asarray(y)
    targets = optax.smooth_labels(jax.nn.one_hot(yj, 5, dtype=zj.dtype), EPS)
    expected = optax.softmax_cross_entropy(zj, targets)
    loss = backend.call(ls.cross_entropy, zj, yj, epsilon=EPS, reduction="none")
    assert_close(loss, expected)
    assert_close(backend.call(ls.cross_entropy, zj, targets, reduction="none"), expected)


@jax_backends
def test_optax_integer_labels_is_epsilon_zero(backend, rng) -> None:
    optax = pytest.importorskip("optax")
    z, y = _logits_and_labels(rng, n=7)
    zj, yj = backend.asarray(z), backend.asarray(y)
    expected = optax.softmax_cross_entropy_with_integer_labels(zj, yj)
    assert_close(backend.call(ls.cross_entropy, zj, yj, reduction="none"), expected)


@jax_backends
def test_optax_where_masks_classes_but_smoothing_does_not(backend, rng) -> None:
    optax = pytest.importorskip("optax")
    import jax
    import jax.numpy as jnp

    z, y = _logits_and_labels(rng, n=4, k=6)
    allowed = np.asarray([True, True, False, True, True, False])
    y = np.asarray([0, 1, 3, 4])
    z = np.where(allowed, z, -np.inf)
    zj, yj, mask = backend.asarray(z), backend.asarray(y), backend.asarray(allowed)
    # optax: with one-hot targets a -inf logit gives 0 * inf = NaN; smoothing spreads mass over
    # all K classes, so a -inf masked logit then costs +inf.
    one_hot = jax.nn.one_hot(yj, 6, dtype=zj.dtype)
    assert np.all(np.isnan(np.asarray(optax.softmax_cross_entropy(zj, one_hot))))
    spread_everywhere = optax.smooth_labels(one_hot, EPS)
    assert np.all(np.asarray(optax.softmax_cross_entropy(zj, spread_everywhere)) == np.inf)
    # labelsmooth: a class without target mass costs nothing, even at -inf.
    assert np.all(np.isfinite(np.asarray(backend.call(ls.cross_entropy, zj, yj, reduction="none"))))
    # labelsmooth spreads it over the allowed classes only; optax agrees when given those targets.
    spread_allowed = (1 - EPS) * jax.nn.one_hot(yj, 6, dtype=zj.dtype) + EPS * jnp.asarray(allowed, zj.dtype) / 4
    expected = optax.softmax_cross_entropy(zj, spread_allowed, where=jnp.broadcast_to(mask, zj.shape))
    loss = backend.call(ls.cross_entropy, zj, yj, epsilon=EPS, where=mask, reduction="none")
    assert np.all(np.isfinite(np.asarray(loss)))
    assert_close(loss, expected)


@jax_backends
def test_optax_per_sample_where_is_not_a_class_mask(backend, rng) -> None:
    optax = pytest.importorskip("optax")
    import jax
    import jax.numpy as jnp

    z, y = _logits_and_labels(rng, n=5, k=5)  # N == K: the ambiguous shape
    keep = np.asarray([True, False, True, True, False])
    zj, yj = backend.asarray(z), backend.asarray(y)
    targets = optax.smooth_labels(jax.nn.one_hot(yj, 5, dtype=zj.dtype), EPS)
    expected = optax.softmax_cross_entropy(zj, targets, where=jnp.asarray(keep))  # drops samples 1 and 4
    np.testing.assert_array_equal(np.asarray(expected)[~keep], 0.0)
    # labelsmooth's equivalents: ignore_index on the dropped samples, or masking the losses.
    padded = backend.asarray(np.where(keep, y, -100))
    by_ignore = backend.call(ls.cross_entropy, zj, padded, epsilon=EPS, ignore_index=-100, reduction="none")
    assert_close(by_ignore, expected)
    by_masking = backend.call(ls.cross_entropy, zj, yj, epsilon=EPS, reduction="none") * jnp.asarray(keep, zj.dtype)
    assert_close(by_masking, expected)


def test_scipy_softmax_family_defaults_to_the_whole_array(rng) -> None:
    special = pytest.importorskip("scipy.special")
    x = rng.normal(size=(3, 4))
    np.testing.assert_allclose(ls.logsumexp(x), special.logsumexp(x, axis=-1), rtol=1e-15)
    np.testing.assert_allclose(ls.logsumexp(np.reshape(x, (-1,))), special.logsumexp(x), rtol=1e-15)
    np.testing.assert_allclose(np.reshape(ls.softmax(np.reshape(x, (-1,))), x.shape), special.softmax(x), rtol=1e-14)
    assert not np.allclose(ls.softmax(x), special.softmax(x))


def _timm_binary_cross_entropy(x, target, *, smoothing, weight=None):
    """timm.loss.BinaryCrossEntropy's forward for integer targets, written out from its source."""
    import torch

    num_classes = x.shape[-1]
    off_value = smoothing / num_classes
    on_value = 1.0 - smoothing + off_value
    dense = torch.full((target.size(0), num_classes), off_value, dtype=x.dtype).scatter_(1, target[:, None], on_value)
    return torch.nn.functional.binary_cross_entropy_with_logits(x, dense, weight, reduction="mean")


def test_timm_binary_cross_entropy_is_bce_of_soft_targets(rng) -> None:
    torch = pytest.importorskip("torch")
    z, y = _logits_and_labels(rng, n=8, k=7)
    w = rng.uniform(0.5, 2.0, size=7)
    expected = _timm_binary_cross_entropy(torch.tensor(z), torch.tensor(y), smoothing=EPS, weight=torch.tensor(w))
    targets = ls.soft_targets(y, 7, epsilon=EPS, dtype=np.float64)
    loss = ls.binary_cross_entropy(z, targets, weight=w)
    np.testing.assert_allclose(loss, expected.item(), rtol=1e-14)
    # Not Keras-style binary smoothing of the one-hot rows, which smooths towards 1/2.
    keras_style = ls.binary_cross_entropy(z, ls.one_hot(y, 7), epsilon=EPS, weight=w)
    assert abs(float(keras_style) - expected.item()) > 1e-3


# --- Keras 3 (the real package, JAX backend) ------------------------------------------------------


def _keras():
    return pytest.importorskip("keras")


def test_keras_categorical_crossentropy_label_smoothing() -> None:
    keras = _keras()
    rng = np.random.default_rng(4)
    z, y = _logits_and_labels(rng, n=8)
    z = z.astype(np.float32)
    one_hot = np.eye(5, dtype=np.float32)[y]
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=EPS)
    expected = np.asarray(loss_fn(one_hot, z))
    assert_close(ls.cross_entropy(z, y, epsilon=EPS), expected)
    assert_close(ls.cross_entropy(z, one_hot, epsilon=EPS), expected)
    per_sample = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=EPS, reduction=None)
    assert_close(ls.cross_entropy(z, y, epsilon=EPS, reduction="none"), np.asarray(per_sample(one_hot, z)))


def test_keras_empty_and_fully_masked_batches_differ() -> None:
    keras = _keras()
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=EPS)
    empty = np.zeros((0, 5), dtype=np.float32)
    # Keras returns the (empty) per-sample losses unreduced; labelsmooth's mean of nothing is NaN.
    assert np.asarray(loss_fn(empty, empty)).shape == (0,)
    assert np.isnan(ls.cross_entropy(empty, np.zeros(0, dtype=np.int64), epsilon=EPS))
    # All sample weights 0: Keras gives 0; the labelsmooth analogue (all ignored) gives NaN.
    rng = np.random.default_rng(5)
    z, y = _logits_and_labels(rng, n=3)
    z = z.astype(np.float32)
    masked = loss_fn(np.eye(5, dtype=np.float32)[y], z, sample_weight=np.zeros(3, dtype=np.float32))
    assert float(masked) == 0.0
    assert np.isnan(ls.cross_entropy(z, np.full(3, -1), epsilon=EPS, ignore_index=-1))


def test_keras_probabilities_are_clipped() -> None:
    keras = _keras()
    # from_logits=False clips probabilities to [1e-7, 1 - 1e-7]: a zero on the true class costs
    # -log(1e-7), not +inf (labelsmooth takes logits only).
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=False)
    probabilities = np.asarray([[0.0, 0.5, 0.5]], dtype=np.float32)
    assert_close(
        np.asarray(loss_fn(np.asarray([[1.0, 0.0, 0.0]], dtype=np.float32), probabilities)), np.float32(-np.log(1e-7))
    )


# --- TF v1 tf.compat.v1.losses.softmax_cross_entropy (formula from its source) ---------------------


def _tf_v1_softmax_cross_entropy(onehot_labels, logits, weights, label_smoothing):
    num_classes = onehot_labels.shape[-1]
    smooth_positives = 1.0 - label_smoothing
    smooth_negatives = label_smoothing / num_classes
    targets = onehot_labels * smooth_positives + smooth_negatives
    losses = -(targets * log_softmax(logits)).sum(axis=-1)  # softmax_cross_entropy_with_logits_v2
    weights = np.broadcast_to(weights, losses.shape)
    num_present = np.count_nonzero(weights)  # Reduction.SUM_BY_NONZERO_WEIGHTS
    return (losses * weights).sum() / num_present if num_present else 0.0


def test_tf_v1_softmax_cross_entropy() -> None:
    rng = np.random.default_rng(6)
    z, y = _logits_and_labels(rng)
    one_hot = np.eye(5)[y]
    # Unit weights: the mean.
    assert_close(ls.cross_entropy(z, y, epsilon=EPS, axis=1), _tf_v1_softmax_cross_entropy(one_hot, z, 1.0, EPS))
    # Per-sample weights: weight the per-sample losses, divide by the count of non-zero weights.
    weights = np.asarray([1.0, 0.0, 2.0, 0.5, 0.0, 1.0])
    per_sample = ls.cross_entropy(z, y, epsilon=EPS, reduction="none")
    assert_close(
        (weights * per_sample).sum() / np.count_nonzero(weights), _tf_v1_softmax_cross_entropy(one_hot, z, weights, EPS)
    )
    # No non-zero weight: TF gives 0; labelsmooth's all-ignored mean is NaN.
    assert _tf_v1_softmax_cross_entropy(one_hot, z, 0.0, EPS) == 0.0
    assert np.isnan(ls.cross_entropy(z, np.full(6, -1), epsilon=EPS, ignore_index=-1))


# --- timm LabelSmoothingCrossEntropy / SoftTargetCrossEntropy (formula from its source) ------------


@torch_backends
def test_timm_label_smoothing_cross_entropy(backend, rng) -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z, y = _logits_and_labels(rng, n=8)
    x, target = torch.tensor(z), torch.tensor(y)
    logprobs = F.log_softmax(x, dim=-1)
    nll_loss = -logprobs.gather(dim=-1, index=target.unsqueeze(1)).squeeze(1)
    smooth_loss = -logprobs.mean(dim=-1)
    expected = ((1.0 - EPS) * nll_loss + EPS * smooth_loss).mean()
    loss = backend.call(ls.cross_entropy, backend.asarray(z), backend.asarray(y), epsilon=EPS)
    assert_close(backend.to_numpy(loss), expected)
    # SoftTargetCrossEntropy: probability targets, no smoothing, mean over samples.
    q = rng.dirichlet(np.ones(5), size=8)
    expected_soft = torch.sum(-torch.tensor(q) * F.log_softmax(x, dim=-1), dim=-1).mean()
    loss_soft = backend.call(ls.cross_entropy, backend.asarray(z), backend.asarray(q))
    assert_close(backend.to_numpy(loss_soft), expected_soft)


# --- fairseq label_smoothed_nll_loss (formula from its source) -----------------------------------


def _fairseq_label_smoothed_nll_loss(lprobs, target, epsilon, ignore_index=None, reduce=True):
    if target.dim() == lprobs.dim() - 1:
        target = target.unsqueeze(-1)
    nll_loss = -lprobs.gather(dim=-1, index=target)
    smooth_loss = -lprobs.sum(dim=-1, keepdim=True)
    if ignore_index is not None:
        pad_mask = target.eq(ignore_index)
        nll_loss.masked_fill_(pad_mask, 0.0)
        smooth_loss.masked_fill_(pad_mask, 0.0)
    else:
        nll_loss = nll_loss.squeeze(-1)
        smooth_loss = smooth_loss.squeeze(-1)
    if reduce:
        nll_loss = nll_loss.sum()
        smooth_loss = smooth_loss.sum()
    eps_i = epsilon / (lprobs.size(-1) - 1)
    loss = (1.0 - epsilon - eps_i) * nll_loss + eps_i * smooth_loss
    return loss, nll_loss


@torch_backends
def test_fairseq_label_smoothed_nll_loss(backend, rng) -> None:
    torch = pytest.importorskip("torch")
    pad = 1  # a real vocabulary entry: K counts it
    z = rng.standard_normal((3, 4, 7)) * 2  # (batch, time, vocabulary)
    y = rng.integers(2, 7, size=(3, 4))
    y[0, 3] = y[2, 2] = y[2, 3] = pad
    lprobs = torch.log_softmax(torch.tensor(z), dim=-1)
    expected, _ = _fairseq_label_smoothed_nll_loss(lprobs, torch.tensor(y), EPS, ignore_index=pad)
    loss = backend.call(
        ls.cross_entropy,
        backend.asarray(z),
        backend.asarray(y),
        epsilon=EPS,
        prior="others",
        ignore_index=pad,
        reduction="sum",
    )
    assert_close(backend.to_numpy(loss), expected)
    # The true class keeps exactly 1 - eps; each other class (pad included) gets eps / (K - 1).
    q = ls.soft_targets(np.asarray([3]), 7, epsilon=EPS, prior="others")
    assert_close(q, np.where(np.arange(7) == 3, 1 - EPS, EPS / 6)[None])


def test_clamp_form_is_prior_others() -> None:
    # The `clamp(one_hot, eps/(K-1), 1-eps)` target of a widely shared write-up.
    rng = np.random.default_rng(13)
    z, y = _logits_and_labels(rng, k=6)
    clamped = np.clip(np.eye(6)[y], EPS / 5, 1 - EPS)
    expected = -(clamped * log_softmax(z)).sum(axis=-1).mean()
    assert_close(ls.cross_entropy(z, y, epsilon=EPS, prior="others"), expected)


# --- Hugging Face transformers LabelSmoother (formula from its source) ---------------------------


def _hf_label_smoother(logits, labels, epsilon=0.1, ignore_index=-100):
    import torch

    log_probs = -torch.nn.functional.log_softmax(logits, dim=-1)
    if labels.dim() == log_probs.dim() - 1:
        labels = labels.unsqueeze(-1)
    padding_mask = labels.eq(ignore_index)
    labels = torch.clamp(labels, min=0)
    nll_loss = log_probs.gather(dim=-1, index=labels)
    # The smoothing sum is accumulated in float32 whatever the logits' dtype.
    smoothed_loss = log_probs.sum(dim=-1, keepdim=True, dtype=torch.float32)
    nll_loss.masked_fill_(padding_mask, 0.0)
    smoothed_loss.masked_fill_(padding_mask, 0.0)
    num_active_elements = padding_mask.numel() - padding_mask.long().sum()
    nll_loss = nll_loss.sum() / num_active_elements
    smoothed_loss = smoothed_loss.sum() / (num_active_elements * log_probs.shape[-1])
    return (1 - epsilon) * nll_loss + epsilon * smoothed_loss


@torch_backends
def test_hugging_face_label_smoother(backend, rng) -> None:
    torch = pytest.importorskip("torch")
    z = rng.standard_normal((2, 5, 6))
    y = rng.integers(0, 6, size=(2, 5))
    y[1, 3:] = -100
    expected = _hf_label_smoother(torch.tensor(z), torch.tensor(y), EPS)
    loss = backend.call(ls.cross_entropy, backend.asarray(z), backend.asarray(y), epsilon=EPS, ignore_index=-100)
    # float32 agreement only: the smoothing term above is summed in float32.
    assert_close(backend.to_numpy(loss), expected, rtol=1e-6)


def test_hugging_face_clamps_other_negative_labels_silently() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(14)
    z, y = _logits_and_labels(rng)
    y[2] = -5
    as_class_zero = y.copy()
    as_class_zero[2] = 0
    hf = _hf_label_smoother(torch.tensor(z), torch.tensor(y), EPS)
    # Hugging Face scores label -5 as class 0; labelsmooth refuses it.
    assert_close(hf, ls.cross_entropy(z, as_class_zero, epsilon=EPS, ignore_index=-100), rtol=1e-6)
    with pytest.raises(ValueError, match="-5"):
        ls.cross_entropy(z, y, epsilon=EPS, ignore_index=-100)
    # All labels padded: both give NaN (0/0).
    all_padded = np.full(6, -100)
    assert torch.isnan(_hf_label_smoother(torch.tensor(z), torch.tensor(all_padded), EPS))
    assert np.isnan(ls.cross_entropy(z, all_padded, epsilon=EPS, ignore_index=-100))


# --- Liger-Kernel cross entropy (formula of its kernel, written out) ------------------------------


def _liger_cross_entropy(x, target, *, label_smoothing, ignore_index=-100, weight=None):
    """Per row: lse = m + log d; loss = (1-eps) w_y (lse - x_y) + sum_k(-eps/K w_k x_k) + eps/K lse sum_k w_k;
    "mean" divides by the non-ignored count (or their summed weight); ignored rows store 0."""
    x = x.astype(np.float64)
    _n, k = x.shape
    keep = target != ignore_index
    w = np.ones(k) if weight is None else weight
    eps = label_smoothing / k
    total = 0.0
    for row, y in zip(x[keep], target[keep]):
        m = row.max()
        lse = m + np.log(np.exp(row - m).sum())
        loss = w[y] * (lse - row[y])
        scaled_x_sum = np.sum(-eps * row * w)
        smooth_loss = scaled_x_sum + eps * lse * w.sum()
        total += loss * (1 - label_smoothing) + smooth_loss
    normaliser = keep.sum() if weight is None else w[target[keep]].sum()
    return total / normaliser if keep.any() else total


def test_liger_kernel_cross_entropy() -> None:
    rng = np.random.default_rng(15)
    z, y = _logits_and_labels(rng, n=8)
    y[[0, 4]] = -100
    w = rng.uniform(0.5, 2.0, size=5)
    assert_close(
        ls.cross_entropy(z, y, epsilon=EPS, ignore_index=-100), _liger_cross_entropy(z, y, label_smoothing=EPS)
    )
    assert_close(
        ls.cross_entropy(z, y, epsilon=EPS, ignore_index=-100, weight=w),
        _liger_cross_entropy(z, y, label_smoothing=EPS, weight=w),
    )
    # All ignored: Liger sums zero rows to 0; labelsmooth (as PyTorch) gives NaN.
    all_ignored = np.full(8, -100)
    assert _liger_cross_entropy(z, all_ignored, label_smoothing=EPS) == 0.0
    assert np.isnan(ls.cross_entropy(z, all_ignored, epsilon=EPS, ignore_index=-100))
