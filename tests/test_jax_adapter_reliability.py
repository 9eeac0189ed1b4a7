"""``labelsmooth.jax.cross_entropy``: arguments it must refuse, and derivatives of every order.

The derivatives are compared with autodiff of the loss written out from its definition,
``-sum_k w_k q'_k log_softmax(z)_k`` with ``jax.nn.log_softmax`` and a dense ``q'`` built
here, reduced as PyTorch reduces (``"mean"`` over labels divides by ``sum_i w_{y_i}`` of the
counted samples). float64 runs inside ``jax.enable_x64(True)``, which is undone after each
test, so no other test sees 64-bit mode.
"""

from __future__ import annotations

import numpy as np
import pytest

import labelsmooth as ls

# Every test compiles JAX second- and third-order derivatives.
pytestmark = pytest.mark.slow

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
ljax = pytest.importorskip("labelsmooth.jax")

K = 4
EPS = 0.2
# Three rows each: generic logits, all-zero rows, and rows with two or three tied maxima.
TIES = {
    "random": np.array([[0.3, -1.2, 2.0, 0.5], [1.5, 0.2, -0.7, 0.9], [-0.4, 0.8, 0.1, -2.0]]),
    "all_zero": np.zeros((3, K)),
    "three_tied": np.array([[1.0, 1.0, 1.0, 0.0], [2.0, 0.0, 2.0, 2.0], [-1.0, 3.0, 3.0, 3.0]]),
}
LOGITS = np.concatenate(list(TIES.values()))
LABELS = np.array([0, 2, 1] * 3)
N = len(LABELS)
PRIOR = np.array([0.1, 0.2, 0.3, 0.4])
WEIGHT = np.array([0.5, 2.0, 1.0, 1.5])
ALLOWED = np.array([True, True, True, False])
CASES = {
    "smoothed": {"epsilon": EPS},
    "plain": {"epsilon": 0.0},
    "others": {"epsilon": EPS, "prior": "others"},
    "prior": {"epsilon": EPS, "prior": "array"},
    "weighted_ignored": {"epsilon": EPS, "weight": True, "ignore_index": -1},
    "masked": {"epsilon": EPS, "where": True},
}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def close(actual, desired, rtol=1e-12, atol=1e-14):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(desired), rtol=rtol, atol=atol)


# ----------------------------------------------------------------------- the written-out loss


def labels_for(case: str) -> np.ndarray:
    labels = LABELS.copy()
    if case == "weighted_ignored":
        labels[[1, 5]] = -1
    return labels


def definition(case: str, reduction: str):
    """``z -> loss`` from the definition, for one option case (its labels fixed)."""
    labels, eps = labels_for(case), CASES[case]["epsilon"]
    allowed = ALLOWED if case == "masked" else np.ones(K, bool)
    q = np.eye(K)[np.clip(labels, 0, K - 1)]
    if case == "others":
        u = (1.0 - q) / (K - 1)
    elif case == "prior":
        u = np.broadcast_to(PRIOR, q.shape)
    else:
        u = np.broadcast_to(allowed / allowed.sum(), q.shape)
    weight = WEIGHT if case == "weighted_ignored" else np.ones(K)
    ignored = labels == -1
    coef = jnp.asarray(np.where(ignored[:, None], 0.0, weight * ((1 - eps) * q + eps * u)))
    counted = np.where(ignored, 0.0, weight[np.clip(labels, 0, K - 1)]).sum()

    def loss(z):
        log_p = jax.nn.log_softmax(jnp.where(allowed, z, -jnp.inf), axis=-1)
        per_sample = -jnp.sum(jnp.where(allowed, coef * log_p, 0.0), axis=-1)
        if reduction == "none":
            return per_sample
        return jnp.sum(per_sample) / (counted if reduction == "mean" else 1.0)

    return loss


def adapter(case: str, reduction: str):
    """``z -> loss`` of ``labelsmooth.jax.cross_entropy`` with the options of ``case``."""
    options = dict(CASES[case])
    if options.get("prior") == "array":
        options["prior"] = jnp.asarray(PRIOR)
    if options.pop("weight", False):
        options["weight"] = jnp.asarray(WEIGHT)
    if options.pop("where", False):
        options["where"] = jnp.asarray(ALLOWED)
    y = jnp.asarray(labels_for(case))
    return lambda z: ljax.cross_entropy(z, y, reduction=reduction, **options)


def second_derivatives(make, reductions):
    """Derivatives of ``make(reduction)`` for each reduction, all in one jit.

    ``jax.hessian`` is forward over reverse (``jacfwd(jacrev)``), ``jacrev(jacrev)`` reverse
    over reverse; ``jacrev`` alone is the gradient (per sample for ``"none"``).
    """

    def run(z):
        out = {}
        for reduction, transforms in reductions.items():
            f = make(reduction)
            everything = {"grad": jax.jacrev(f), "hessian": jax.hessian(f), "jacrev(grad)": jax.jacrev(jax.jacrev(f))}
            out[reduction] = {name: everything[name](z) for name in transforms}
        return out

    return jax.jit(run)


def check_against_definition(case, reductions):
    z = jnp.asarray(LOGITS)
    ours = second_derivatives(lambda reduction: adapter(case, reduction), reductions)(z)
    theirs = second_derivatives(lambda reduction: definition(case, reduction), reductions)(z)
    for reduction, results in theirs.items():
        for name, expected in results.items():
            assert np.all(np.isfinite(expected)), (reduction, name)
            close(ours[reduction][name], expected)


# ----------------------------------------------------------------------- derivatives


@pytest.mark.parametrize("case", CASES)
def test_hessian_equals_autodiff_of_the_definition(x64, case):
    check_against_definition(case, {"mean": ("grad", "hessian")})


def test_every_second_order_transform_and_reduction(x64):
    every = ("grad", "hessian", "jacrev(grad)")
    check_against_definition("weighted_ignored", {"mean": every, "none": every})


def test_hessian_at_tied_maxima_by_hand(x64):
    """``diag(p) - p p^T`` on each sample's own block, p written out (unweighted labels: T = 1)."""
    e = np.exp(LOGITS - LOGITS.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    hessian = np.asarray(jax.jit(jax.hessian(adapter("smoothed", "sum")))(jnp.asarray(LOGITS)))
    for i in range(N):
        close(hessian[i, :, i, :], np.diag(p[i]) - np.outer(p[i], p[i]))
        others = np.delete(hessian[i], i, axis=1)
        assert np.all(others == 0.0)


def test_third_derivatives_at_tied_maxima(x64):
    z = jnp.asarray(TIES["three_tied"])
    labels = jnp.asarray(LABELS[:3])

    def ours(a):
        return ljax.cross_entropy(a, labels, epsilon=EPS)

    def theirs(a):
        q = (1 - EPS) * jax.nn.one_hot(labels, K, dtype=a.dtype) + EPS / K
        return -jnp.mean(jnp.sum(q * jax.nn.log_softmax(a, axis=-1), axis=-1))

    def third(f):
        return jax.jit(jax.jacfwd(jax.hessian(f)))

    close(third(ours)(z), third(theirs)(z))


def test_forward_mode_of_the_loss(x64):
    z = jnp.asarray(LOGITS)
    direction = jnp.asarray(np.random.default_rng(0).normal(size=z.shape))
    for reduction in ("mean", "none"):

        def run(f):
            return jax.jit(lambda a, v: (jax.jvp(f, (a,), (v,)), jax.jacfwd(f)(a)))

        got = run(adapter("others", reduction))(z, direction)
        want = run(definition("others", reduction))(z, direction)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            close(g, w)


def test_per_example_hessians_under_vmap(x64):
    z = jnp.asarray(LOGITS)

    def one_row(row, label):
        return ljax.cross_entropy(row, label, epsilon=EPS, axis=0)

    per_example = jax.jit(jax.vmap(jax.hessian(one_row)))(z, jnp.asarray(LABELS))
    full = jax.jit(jax.hessian(definition("smoothed", "sum")))(z)
    for i in range(N):
        close(per_example[i], full[i, :, i, :])
    # vmap of the batch loss's Hessian over a leading axis of problems.
    batched = jax.jit(jax.vmap(jax.hessian(adapter("prior", "mean"))))(jnp.stack([z, -z]))
    reference = jax.jit(jax.hessian(definition("prior", "mean")))
    close(batched[0], reference(z))
    close(batched[1], reference(-z))


def test_mixed_second_derivatives_with_floating_inputs(x64):
    """d^2 L / dz dq (probability targets), d^2 L / dz d eps and d^2 L / dz dw."""
    z = jnp.asarray(LOGITS)
    q = jnp.asarray(np.random.default_rng(1).dirichlet(np.ones(K), size=N))
    eps = jnp.asarray(np.linspace(0.0, 0.9, N))
    w = jnp.asarray(WEIGHT)

    def ours(a, t, e, v):
        return ljax.cross_entropy(a, t, epsilon=e, weight=v)

    def theirs(a, t, e, v):
        smoothed = (1 - e[:, None]) * t + e[:, None] / K
        return -jnp.mean(jnp.sum(v * smoothed * jax.nn.log_softmax(a, axis=-1), axis=-1))

    def mixed(f):
        return jax.jit(
            lambda *args: (
                [outer(jax.grad(f), argnums=n)(*args) for n in (1, 2, 3) for outer in (jax.jacfwd, jax.jacrev)]
                + [jax.hessian(f, argnums=(0, 1))(*args)]
            )
        )

    for got, want in zip(jax.tree.leaves(mixed(ours)(z, q, eps, w)), jax.tree.leaves(mixed(theirs)(z, q, eps, w))):
        close(got, want)


def test_float32_hessian_at_ties():
    """Default 32-bit mode: equal to the definition to float32 rounding."""
    z = jnp.asarray(LOGITS, dtype=jnp.float32)
    result = jax.jit(jax.hessian(adapter("smoothed", "mean")))(z)
    assert result.dtype == jnp.float32
    close(result, jax.jit(jax.hessian(definition("smoothed", "mean")))(z), rtol=1e-5, atol=1e-7)


def test_traced_invalid_labels_poison_second_derivatives():
    f = jax.jit(jax.hessian(lambda a, b: ljax.cross_entropy(a, b, epsilon=EPS, reduction="sum")))
    hessian = np.asarray(f(jnp.zeros((2, K)), jnp.asarray([0, K])))
    assert np.all(np.isnan(hessian[1, :, 1, :]))
    assert np.all(np.isfinite(hessian[0, :, 0, :]))


def test_grad_evaluates_no_exp_beyond_the_forward_pass():
    """The Hessian rule is not built for a first-order jax.grad."""
    z, y = jnp.asarray(LOGITS, dtype=jnp.float32), jnp.asarray(LABELS)
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda a: ljax.cross_entropy(a, y, epsilon=EPS)))(z).jaxpr)
    forward = str(jax.make_jaxpr(lambda a: ls.cross_entropy_with_grad(a, y, epsilon=EPS))(z).jaxpr)
    assert jaxpr.count(" exp ") == forward.count(" exp ")


# ----------------------------------------------------------------------- refused arguments


def test_list_weight_is_a_type_error_naming_weight():
    z, y = jnp.zeros((2, 3)), jnp.asarray([0, 1])
    with pytest.raises(TypeError, match=r"^weight must be None or a jax\.Array .*shape \(K,\), got a list$"):
        ljax.cross_entropy(z, y, weight=[1.0, 2.0, 3.0])
    # The core refuses it too (it needs an array), with its own message.
    with pytest.raises(TypeError, match="weight must be an array"):
        ls.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), weight=[1.0, 2.0, 3.0])


def _torch_tensor(shape, integer=False):
    torch = pytest.importorskip("torch")
    return torch.zeros(shape, dtype=torch.int64 if integer else torch.float32)


@pytest.mark.parametrize("kind", ["list", "tuple", "torch"])
def test_lists_and_torch_tensors_are_refused_as_logits(kind):
    y = jnp.asarray([0, 1])
    logits = {"list": [[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]], "tuple": ((0.0, 1.0, 2.0), (0.0, 0.0, 0.0))}.get(kind)
    if kind == "torch":
        logits = _torch_tensor((2, 3))
    received = {"list": "a list", "tuple": "a tuple", "torch": r"a torch\.Tensor of shape \(2, 3\)"}[kind]
    with pytest.raises(TypeError, match=rf"^logits must be a jax\.Array .*, got {received}$"):
        ljax.cross_entropy(logits, y)
    with pytest.raises(TypeError):  # as the core does
        ls.cross_entropy(logits, np.array([0, 1]))


@pytest.mark.parametrize("kind", ["list", "torch"])
def test_lists_and_torch_tensors_are_refused_as_targets(kind):
    targets = [0, 1] if kind == "list" else _torch_tensor((2,), integer=True)
    with pytest.raises(TypeError, match=r"^targets must be a jax\.Array .*, got a (list|torch\.Tensor)"):
        ljax.cross_entropy(jnp.zeros((2, 3)), targets)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("prior", [0.2, 0.3, 0.5], r"prior must be None, 'others' or a jax\.Array"),
        ("where", [True, True, False], r"where must be None or a boolean jax\.Array"),
        ("epsilon", [0.1, 0.2], r"epsilon must be a float in \[0, 1\] or a jax\.Array"),
        ("axis", [0], r"axis must be an int"),
    ],
)
def test_other_unhashable_options_are_type_errors_naming_them(name, value, expected):
    with pytest.raises(TypeError, match=rf"^{expected}.*, got a list$"):
        ljax.cross_entropy(jnp.zeros((2, 3)), jnp.asarray([0, 1]), **{name: value})


def test_torch_tensor_options_are_refused():
    with pytest.raises(TypeError, match=r"^weight must be .*, got a torch\.Tensor of shape \(3,\)$"):
        ljax.cross_entropy(jnp.zeros((2, 3)), jnp.asarray([0, 1]), weight=_torch_tensor((3,)))


def test_numpy_arrays_are_still_accepted():
    z = np.array([[0.3, -1.2, 2.0], [1.5, 0.2, -0.7]], dtype=np.float32)
    y, w = np.array([0, 2]), np.array([0.5, 2.0, 1.0], dtype=np.float32)
    # Under jit the NumPy arrays stay NumPy arrays up to the adapter (constants of the trace);
    # a NumPy scalar epsilon is a number there, as in the core.
    result = jax.jit(lambda: ljax.cross_entropy(z, y, epsilon=np.float64(0.1), weight=w, reduction="none"))()
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    q = 0.9 * np.eye(3)[y] + 0.1 / 3
    close(result, -(w * q * log_p).sum(axis=1), rtol=1e-6, atol=1e-7)
