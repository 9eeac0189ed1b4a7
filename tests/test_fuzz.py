"""Hypothesis fuzzing of the smoothed cross-entropy over shapes, layouts, scales and options.

Valid inputs must give finite results, gradient rows ``p - q'`` summing to zero, losses never
below the entropy of ``q'`` (Gibbs' inequality; ``q'`` from the dense oracle,
``tests/_formulas.py``) and gradients matching finite differences of the oracle's loss;
invalid inputs must raise ``TypeError`` or ``ValueError`` and nothing else, never return a
number. Mostly NumPy, a smaller sample on PyTorch and JAX.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pytest
from _formulas import cross_entropy_rows, dense_smoothed, entropy
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import labelsmooth as ls

FUZZ = settings(
    derandomize=True,
    deadline=None,
    max_examples=80,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL = settings(FUZZ, max_examples=15)


@dataclass
class Problem:
    """A valid problem, class axis last (``logits``, ``allowed``, ``probabilities``) plus its layout."""

    logits: np.ndarray
    labels: np.ndarray | None
    probabilities: np.ndarray | None
    epsilon: Any
    prior: Any
    weight: np.ndarray | None
    allowed: np.ndarray | None
    ignore_index: int | None
    reduction: str
    class_axis_second: bool
    options: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.logits.shape[-1]

    @property
    def axis(self) -> int:
        return 1 if self.class_axis_second else -1

    def layout(self, a: np.ndarray) -> np.ndarray:
        """A class-last array in the layout the function is called with."""
        return np.moveaxis(a, -1, 1) if self.class_axis_second else a

    def arguments(self, asarray) -> tuple[tuple, dict]:
        targets = self.labels if self.labels is not None else self.layout(self.probabilities)
        kwargs = {
            "epsilon": self.epsilon if isinstance(self.epsilon, float) else asarray(self.epsilon),
            "prior": asarray(self.prior) if isinstance(self.prior, np.ndarray) else self.prior,
            "weight": None if self.weight is None else asarray(self.weight),
            "where": None if self.allowed is None else asarray(self.layout(self.allowed)),
            "ignore_index": self.ignore_index,
            "reduction": self.reduction,
            "axis": self.axis,
        }
        kwargs.update(self.options)
        return (asarray(self.layout(self.logits)), asarray(targets)), kwargs


@st.composite
def problems(draw, *, dtypes=(np.float64, np.float64, np.float32), max_classes=12):
    num_classes = draw(st.integers(1, max_classes))
    batch = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=2)))
    second = len(batch) >= 1 and draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.0, 1e-3, 1.0, 30.0, 1e4]) | st.floats(0.0, 1e4))
    dtype = draw(st.sampled_from(dtypes))
    kind = draw(st.sampled_from(["labels", "probabilities"]))
    prior_kind = draw(st.sampled_from([None, "others", "array"]))
    if prior_kind == "others" and num_classes < 2:
        prior_kind = None
    need = 2 if prior_kind == "others" else 1
    shape = (*batch, num_classes)

    allowed = None
    if draw(st.booleans()) and num_classes > need:
        allowed = rng.uniform(size=shape) < 0.7
        rows = allowed.reshape(-1, num_classes)
        for row in rows:
            row[rng.choice(num_classes, size=need, replace=False)] = True
        allowed = rows.reshape(shape)
    mask = np.ones(shape, bool) if allowed is None else allowed

    z = (rng.normal(size=shape) + rng.normal()) * scale
    z = np.where(mask, z, -np.inf).astype(dtype)

    labels = probabilities = ignore_index = None
    if kind == "labels":
        flat_mask = mask.reshape(-1, num_classes)
        labels = np.array([rng.choice(np.flatnonzero(row)) for row in flat_mask]).reshape(batch)
        if draw(st.booleans()):
            ignore_index = -100
            dropped = rng.uniform(size=labels.size) < 0.3
            dropped[0] = False  # at least one sample counts: "mean" stays finite
            labels = np.where(dropped.reshape(batch), ignore_index, labels)
    else:
        q = rng.dirichlet(np.ones(num_classes), size=batch or None).reshape(shape)
        q = np.where(mask & (rng.uniform(size=shape) < 0.7), q, 0.0)
        flat = q.reshape(-1, num_classes)
        for row, row_mask in zip(flat, mask.reshape(-1, num_classes)):
            if row.sum() == 0:
                row[rng.choice(np.flatnonzero(row_mask))] = 1.0
        probabilities = (q / q.sum(-1, keepdims=True)).astype(dtype)

    if draw(st.booleans()):
        epsilon = draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0))
    else:
        epsilon = rng.uniform(size=int(np.prod(batch)))
        epsilon[:2] = rng.choice([0.0, 1.0], size=epsilon[:2].size)  # the ends of [0, 1] exactly
        epsilon = epsilon.reshape(batch).astype(dtype)
    prior = prior_kind
    if prior_kind == "array":
        prior = rng.dirichlet(np.ones(num_classes))
        if allowed is None and num_classes > 1 and draw(st.booleans()):
            prior[rng.integers(num_classes)] = 0.0  # a class without prior mass
        prior = (prior / prior.sum()).astype(dtype)
    weight = rng.uniform(0.1, 3.0, size=num_classes).astype(dtype) if draw(st.booleans()) else None
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    return Problem(z, labels, probabilities, epsilon, prior, weight, allowed, ignore_index, reduction, second)


# --- the independent reference: q' from the definition, its entropy -----------------------


def smoothed(problem: Problem) -> np.ndarray:
    """q' rows, class last, float64, from the one dense oracle (``tests/_formulas.py``)."""
    targets = problem.labels if problem.labels is not None else problem.probabilities
    return dense_smoothed(targets, problem.num_classes, problem.epsilon, problem.prior, problem.allowed)


def oracle_loss(problem: Problem, logits: np.ndarray) -> float:
    """The oracle's loss of ``problem`` at class-last ``logits`` (no mask)."""
    targets = problem.labels if problem.labels is not None else problem.probabilities
    loss, _ = cross_entropy_rows(
        logits,
        targets,
        epsilon=problem.epsilon,
        prior=problem.prior,
        weight=problem.weight,
        ignore_index=problem.ignore_index,
        reduction=problem.reduction,
    )
    return loss


def counted(problem: Problem) -> np.ndarray:
    if problem.labels is None or problem.ignore_index is None:
        return np.ones(problem.logits.shape[:-1], bool)
    return problem.labels != problem.ignore_index


def class_last(problem: Problem, a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, 1, -1) if problem.class_axis_second else a


def rounding(dtype, magnitude) -> float:
    eps = np.finfo(dtype).eps
    return 64 * eps * (1.0 + magnitude)


def run(problem: Problem, fn=ls.cross_entropy_with_grad, *, asarray=np.asarray, to_numpy=np.asarray, **changes):
    problem = replace(problem, **changes) if changes else problem
    args, kwargs = problem.arguments(asarray)
    out = fn(*args, **kwargs)
    return tuple(to_numpy(o) for o in out) if isinstance(out, tuple) else to_numpy(out)


# --- valid inputs ------------------------------------------------------------------------------


def check_valid(problem: Problem, asarray=np.asarray, to_numpy=np.asarray) -> None:
    loss, grad = run(problem, asarray=asarray, to_numpy=to_numpy)
    assert grad.shape == problem.layout(problem.logits).shape
    assert np.all(np.isfinite(loss)), loss
    assert np.all(np.isfinite(grad)), grad
    if problem.allowed is not None:
        assert np.all(class_last(problem, grad)[~problem.allowed] == 0.0)

    # Per-sample, unweighted: zero-sum gradient rows and Gibbs' inequality.
    plain = replace(problem, weight=None, reduction="none")
    loss, grad = run(plain, asarray=asarray, to_numpy=to_numpy)
    assert loss.shape == problem.logits.shape[:-1]
    grad = class_last(problem, grad)
    np.testing.assert_allclose(grad.sum(-1), 0.0, atol=rounding(grad.dtype, 1.0) * problem.num_classes)
    q_smooth = smoothed(plain)
    assert np.all(q_smooth >= -1e-12)
    floor = entropy(q_smooth)
    live = counted(plain)
    slack = rounding(loss.dtype, np.abs(loss.astype(np.float64))) * problem.num_classes
    assert np.all(loss[live] >= floor[live] - slack[live]), (loss, floor)
    assert np.all(loss[~live] == 0.0)


@FUZZ
@given(problems())
def test_valid_inputs_numpy(problem):
    check_valid(problem)


@SMALL
@given(problems())
def test_valid_inputs_torch(problem):
    torch = pytest.importorskip("torch")
    check_valid(problem, asarray=torch.from_numpy, to_numpy=lambda t: t.numpy())


@pytest.mark.slow
@settings(FUZZ, max_examples=5)  # every new shape compiles JAX's eager kernels anew
@given(problems(dtypes=(np.float32,)))
def test_valid_inputs_jax(problem):
    jnp = pytest.importorskip("jax.numpy")
    check_valid(problem, asarray=jnp.asarray)


@settings(FUZZ, max_examples=40)
@given(problems(), st.floats(0.0, 1.0))
def test_smoothed_targets_are_distributions(problem, epsilon):
    k = problem.num_classes
    assume(not (isinstance(problem.prior, str) and k < 2))
    prior = problem.prior
    labels = (
        np.clip(problem.labels, 0, k - 1)
        if problem.labels is not None
        else np.zeros(problem.logits.shape[:-1], dtype=np.int64)
    )
    for rows in (
        ls.soft_targets(labels, k, epsilon=epsilon, prior=prior, dtype=problem.logits.dtype),
        ls.smooth_labels(np.eye(k, dtype=problem.logits.dtype)[labels], epsilon, prior=prior),
    ):
        assert np.all(rows >= 0) and np.all(np.isfinite(rows))
        np.testing.assert_allclose(rows.sum(-1), 1.0, atol=rounding(rows.dtype, 1.0) * k)


@settings(FUZZ, max_examples=25)
@given(problems(dtypes=(np.float64,), max_classes=6))
def test_gradient_matches_finite_differences(problem):
    # Moderate logits, no masks (a -inf logit has no neighbourhood): a clean central difference
    # of the oracle's loss.
    rng = np.random.default_rng(problem.logits.size)
    z = rng.normal(size=problem.logits.shape) * 2.0
    problem = replace(
        problem, logits=z, allowed=None, reduction="sum", probabilities=problem.probabilities, labels=problem.labels
    )
    if problem.labels is not None:
        problem = replace(problem, labels=np.where(problem.labels < 0, problem.labels, problem.labels % z.shape[-1]))
    _, grad = run(problem)
    grad = class_last(problem, grad)
    step = 1e-5
    flat_positions = rng.choice(z.size, size=min(6, z.size), replace=False)
    for position in flat_positions:
        index = np.unravel_index(position, z.shape)
        up, down = z.copy(), z.copy()
        up[index] += step
        down[index] -= step
        numeric = (oracle_loss(problem, up) - oracle_loss(problem, down)) / (2 * step)
        np.testing.assert_allclose(grad[index], numeric, rtol=1e-6, atol=1e-7)


# --- invalid inputs ------------------------------------------------------------------------------


def first_counted(problem: Problem) -> tuple:
    flat = np.flatnonzero(counted(problem).reshape(-1))
    return np.unravel_index(flat[0], problem.logits.shape[:-1])


def with_label(problem: Problem, value: int) -> Problem:
    labels = problem.labels.copy()
    labels[first_counted(problem)] = value
    return replace(problem, labels=labels)


def mutations(problem: Problem) -> dict:
    """Ways to make ``problem`` invalid that apply to it, each a function of a seed."""
    k = problem.num_classes
    out = {
        "epsilon above 1": lambda r: replace(problem, epsilon=1.0 + r.uniform(1e-6, 5)),
        "negative epsilon": lambda r: replace(problem, epsilon=-r.uniform(1e-6, 5)),
        "NaN epsilon": lambda r: replace(problem, epsilon=float("nan")),
        "string epsilon": lambda r: replace(problem, epsilon="0.1"),
        "per-sample epsilon out of range": lambda r: replace(
            problem,
            epsilon=np.where(
                np.arange(np.size(problem.logits[..., 0])).reshape(problem.logits.shape[:-1]) == 0,
                r.choice([-0.5, 1.5, np.nan]),
                0.5,
            ),
        ),
        "epsilon of the wrong shape": lambda r: replace(problem, epsilon=np.full((*problem.logits.shape[:-1], 2), 0.1)),
        "unknown reduction": lambda r: replace(problem, reduction="avg"),
        "reduction of the wrong type": lambda r: replace(problem, reduction=None),
        "unknown prior": lambda r: replace(problem, prior="uniform"),
        "prior not summing to 1": lambda r: replace(problem, prior=np.full(k, 1.5 / k)),
        "prior of the wrong shape": lambda r: replace(problem, prior=np.full(k + 1, 1.0 / (k + 1))),
        "weight of the wrong length": lambda r: replace(problem, weight=np.ones(k + 1)),
        "integer logits": lambda r: replace(problem, logits=np.zeros(problem.logits.shape, dtype=np.int64)),
        "integer where": lambda r: replace(problem, allowed=np.ones(problem.logits.shape, dtype=np.int64)),
        "axis out of range": lambda r: replace(problem, options={"axis": problem.logits.ndim}),
        "another library": lambda r: replace(problem, options={"weight": array_api_strict_ones(k)}),
    }
    if k >= 2:
        out["negative prior"] = lambda r: replace(problem, prior=np.array([1.5, -0.5] + [0.0] * (k - 2)))
    else:
        out["prior='others' with K=1"] = lambda r: replace(problem, prior="others")
    if problem.labels is not None:
        out["label too large"] = lambda r: with_label(problem, k + int(r.integers(0, 5)))
        out["negative label"] = lambda r: with_label(problem, -int(r.integers(1, 50)))
        out["targets of the wrong shape"] = lambda r: replace(problem, labels=np.zeros(problem.logits.shape, np.int64))
        if problem.allowed is not None and not problem.allowed[first_counted(problem)].all():
            masked = int(np.flatnonzero(~problem.allowed[first_counted(problem)])[0])
            out["label on a masked class"] = lambda r: with_label(problem, masked)
    else:
        out["ignore_index with probabilities"] = lambda r: replace(problem, ignore_index=-100)
        out["negative probabilities"] = lambda r: replace(problem, probabilities=-problem.probabilities)
    if problem.allowed is not None:

        def no_allowed_row(r):
            allowed = problem.allowed.copy()
            allowed.reshape(-1, k)[0] = False
            labels = problem.labels
            if labels is not None:
                labels = labels.copy()
                labels.reshape(-1)[0] = 0  # keep the row counted, on a now masked class
            return replace(problem, allowed=allowed, labels=labels)

        out["row with no allowed class"] = no_allowed_row
    return out


def array_api_strict_ones(k):
    import array_api_strict

    return array_api_strict.ones(k)


@FUZZ
@given(problems(), st.data())
def test_invalid_inputs_raise_type_or_value_error(problem, data):
    candidates = mutations(problem)
    name = data.draw(st.sampled_from(sorted(candidates)), label="mutation")
    bad = candidates[name](np.random.default_rng(len(name)))
    for fn in (ls.cross_entropy, ls.cross_entropy_grad, ls.cross_entropy_with_grad):
        with pytest.raises((TypeError, ValueError)):
            run(bad, fn)
    # The unmutated problem is accepted (the error came from the mutation).
    run(problem)


@SMALL
@given(problems(dtypes=(np.float32,)), st.data())
def test_invalid_inputs_raise_type_or_value_error_torch(problem, data):
    torch = pytest.importorskip("torch")
    candidates = {k: v for k, v in mutations(problem).items() if k != "another library"}
    name = data.draw(st.sampled_from(sorted(candidates)), label="mutation")
    bad = candidates[name](np.random.default_rng(len(name)))
    with pytest.raises((TypeError, ValueError)):
        run(bad, asarray=torch.from_numpy)
    run(problem, asarray=torch.from_numpy)
