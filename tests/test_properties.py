"""Properties over many inputs (hypothesis, bounded and derandomized).

Each property is checked against independent truth: the dense float64 oracle
(``tests/_formulas.py``) for plain versus smoothed with eps=0, labels versus one-hot rows,
the class axis moved, masked versus sliced classes; zero-sum gradient rows; Gibbs'
inequality against the oracle's entropy of q'.
"""

from __future__ import annotations

import numpy as np
import pytest
from _formulas import cross_entropy_rows, dense_smoothed, entropy, log_softmax
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import labelsmooth as ls

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


@st.composite
def cases(draw):
    n = draw(st.integers(1, 6))
    k = draw(st.integers(2, 7))
    scale = draw(st.sampled_from([0.0, 1e-3, 1.0, 30.0, 1e3]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=scale, size=(n, k)) + draw(st.sampled_from([0.0, 1e4]))
    y = rng.integers(0, k, size=n)
    eps = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    return z, y, eps, rng


@PROPERTY_SETTINGS
@given(cases())
def test_epsilon_zero_is_plain_cross_entropy(case):
    z, y, _, _ = case
    # Plain cross-entropy -log p_y from the oracle's log-softmax.
    plain = -np.take_along_axis(log_softmax(z), y[:, None], axis=-1)[:, 0]
    got = ls.cross_entropy(z, y, epsilon=0.0, reduction="none")
    np.testing.assert_allclose(got, plain, rtol=1e-12, atol=1e-12)


@PROPERTY_SETTINGS
@given(cases(), st.sampled_from([None, "others", "array"]), st.booleans())
def test_labels_equal_their_smoothed_rows(case, prior_kind, weighted):
    z, y, eps, rng = case
    k = z.shape[-1]
    prior = rng.dirichlet(np.ones(k)) if prior_kind == "array" else prior_kind
    # Unweighted: labels, and the rows q' = soft_targets(labels) given as probabilities with
    # eps=0, both give the oracle's loss and gradient.
    rows = ls.soft_targets(y, k, epsilon=eps, prior=prior)
    np.testing.assert_allclose(rows, dense_smoothed(y, k, eps, prior), rtol=1e-12, atol=1e-15)
    expected = cross_entropy_rows(z, y, epsilon=eps, prior=prior, reduction="none")
    for got in (
        ls.cross_entropy_with_grad(z, y, epsilon=eps, prior=prior, reduction="none"),
        ls.cross_entropy_with_grad(z, rows, reduction="none"),
    ):
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-10, atol=1e-12)
    # Labels and one-hot probability targets smoothed inside the call (PyTorch's convention),
    # with class weights: both the oracle's w * q' sum.
    weight = rng.uniform(0.5, 2.0, size=k) if weighted else None
    loss_sum, grad_sum = cross_entropy_rows(z, y, epsilon=eps, prior=prior, weight=weight, reduction="sum")
    for targets in (ls.one_hot(y, k), y):
        loss, grad = ls.cross_entropy_with_grad(z, targets, epsilon=eps, prior=prior, weight=weight, reduction="sum")
        np.testing.assert_allclose(loss, loss_sum, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(grad, grad_sum, rtol=1e-10, atol=1e-12)


@PROPERTY_SETTINGS
@given(cases(), st.sampled_from(["mean", "sum", "none"]))
def test_axis_one_equals_moveaxis(case, reduction):
    z, y, eps, _ = case
    n, k = z.shape
    z3 = z.reshape(n, 1, k)  # (N, d1, C)
    z_axis1 = np.moveaxis(z3, -1, 1)  # (N, C, d1)
    loss_last, grad_last = ls.cross_entropy_with_grad(z3, y[:, None], epsilon=eps, reduction=reduction)
    loss_1, grad_1 = ls.cross_entropy_with_grad(z_axis1, y[:, None], epsilon=eps, axis=1, reduction=reduction)
    expected_loss, expected_grad = cross_entropy_rows(z3, y[:, None], epsilon=eps, reduction=reduction)
    np.testing.assert_allclose(loss_last, expected_loss, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_last, expected_grad, rtol=1e-12, atol=1e-14)
    # The class axis in the middle gives the very same numbers.
    np.testing.assert_array_equal(loss_1, loss_last)
    np.testing.assert_array_equal(grad_1, np.moveaxis(grad_last, -1, 1))


@PROPERTY_SETTINGS
@given(cases(), st.sampled_from([None, "others"]), st.data())
def test_where_equals_slicing_classes_out(case, prior, data):
    z, y, eps, rng = case
    k = z.shape[-1]
    assume(prior != "others" or k >= 3)
    keep = np.ones(k, bool)
    drop = data.draw(st.lists(st.integers(0, k - 1), max_size=k - 2, unique=True))
    keep[drop] = False
    y = rng.choice(np.flatnonzero(keep), size=y.shape)
    z_masked = np.where(keep, z, -np.inf)  # masked classes may hold -inf
    loss_masked, grad_masked = ls.cross_entropy_with_grad(
        z_masked, y, epsilon=eps, prior=prior, where=keep, reduction="none"
    )
    # The oracle on the problem with the masked classes sliced out.
    new_index = np.cumsum(keep) - 1
    loss_sliced, grad_sliced = cross_entropy_rows(z[:, keep], new_index[y], epsilon=eps, prior=prior, reduction="none")
    np.testing.assert_allclose(loss_masked, loss_sliced, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_masked[:, keep], grad_sliced, rtol=1e-12, atol=1e-14)
    assert np.all(grad_masked[:, ~keep] == 0)


@PROPERTY_SETTINGS
@given(cases(), st.sampled_from([None, "others", "array"]))
def test_unweighted_gradient_rows_sum_to_zero(case, prior_kind):
    z, y, eps, rng = case
    k = z.shape[-1]
    prior = rng.dirichlet(np.ones(k)) if prior_kind == "array" else prior_kind
    grad = ls.cross_entropy_grad(z, y, epsilon=eps, prior=prior, reduction="none")
    np.testing.assert_allclose(grad.sum(-1), 0.0, atol=1e-14 * k)


@PROPERTY_SETTINGS
@given(cases(), st.sampled_from([None, "others", "array"]))
def test_loss_is_never_below_the_entropy_of_the_targets(case, prior_kind):
    z, y, eps, rng = case
    k = z.shape[-1]
    prior = rng.dirichlet(np.ones(k)) if prior_kind == "array" else prior_kind
    loss = ls.cross_entropy(z, y, epsilon=eps, prior=prior, reduction="none")
    h = entropy(dense_smoothed(y, k, eps, prior))
    # Gibbs' inequality H(q', p) >= H(q'), up to rounding of both sides.
    assert np.all(loss >= h - 1e-12 * np.maximum(1.0, np.abs(h)))


@pytest.mark.parametrize(
    "name",
    [
        "one_hot",
        "logsumexp",
        "log_softmax",
        "softmax",
        "smooth_labels",
        "soft_targets",
        "cross_entropy",
        "cross_entropy_grad",
        "cross_entropy_with_grad",
    ],
)
def test_no_write_back(backend, rng, name):
    z = rng.normal(size=(4, 5))
    y = rng.integers(0, 5, size=4)
    q = rng.dirichlet(np.ones(5), size=4)
    w = rng.uniform(size=5)
    where = np.ones((4, 5), bool)
    inputs = {
        "z": backend.asarray(z),
        "y": backend.asarray(y),
        "q": backend.asarray(q),
        "w": backend.asarray(w),
        "where": backend.asarray(where),
    }
    calls = {
        "one_hot": lambda: backend.call(ls.one_hot, inputs["y"], 5),
        "logsumexp": lambda: backend.call(ls.logsumexp, inputs["z"]),
        "log_softmax": lambda: backend.call(ls.log_softmax, inputs["z"]),
        "softmax": lambda: backend.call(ls.softmax, inputs["z"]),
        "smooth_labels": lambda: backend.call(ls.smooth_labels, inputs["q"], 0.1),
        "soft_targets": lambda: backend.call(ls.soft_targets, inputs["y"], 5, epsilon=0.1),
    }
    for loss_name in ("cross_entropy", "cross_entropy_grad", "cross_entropy_with_grad"):
        fn = getattr(ls, loss_name)
        calls[loss_name] = lambda fn=fn: (
            backend.call(fn, inputs["z"], inputs["y"], epsilon=0.1, weight=inputs["w"], where=inputs["where"]),
            backend.call(fn, inputs["z"], inputs["q"], epsilon=0.1, weight=inputs["w"]),
        )
    before = {key: backend.to_numpy(value).copy() for key, value in inputs.items()}
    backend.to_numpy(calls[name]())
    for key, value in inputs.items():
        np.testing.assert_array_equal(backend.to_numpy(value), before[key], err_msg=key)
