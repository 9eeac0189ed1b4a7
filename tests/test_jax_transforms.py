"""JAX transformations of every public function: jit, grad, vmap, and sharded arrays.

References are independent of labelsmooth: SciPy's softmax family, the dense definition
of the smoothed loss and its gradient ``T p - t`` (``tests/_formulas.py``), and the
derivative identities d lse / dz = softmax, d sum(log_softmax * c) / dz = c - sum(c) p.
Sharding runs in a subprocess that starts JAX with four host devices.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
special = pytest.importorskip("scipy.special")

from _formulas import cross_entropy_rows  # noqa: E402

import labelsmooth as ls  # noqa: E402

# Every test compiles JAX programs (jit, grad, vmap, sharding in a subprocess).
pytestmark = pytest.mark.slow

N, K = 6, 7
EPSILON = 0.2
# JAX computes in float32 here (x64 is off): compare with float64 references to rounding.
RTOL, ATOL = 2e-5, 2e-6


@pytest.fixture
def data(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "logits": rng.normal(scale=2.0, size=(N, K)).astype(np.float32),
        "labels": rng.integers(0, K, size=N).astype(np.int32),
        "probs": rng.dirichlet(np.ones(K), size=N).astype(np.float32),
        "weight": rng.uniform(0.3, 2.0, size=K).astype(np.float32),
        "prior": rng.dirichlet(np.ones(K)).astype(np.float32),
        "cotangent": rng.normal(size=N).astype(np.float32),
    }


def close(actual: object, desired: object) -> None:
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), np.asarray(desired, dtype=np.float64), rtol=RTOL, atol=ATOL
    )


# ---------------------------------------------------------------- grad


@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "jit"])
def test_grad_of_softmax_family(data: dict[str, np.ndarray], compile_: bool) -> None:
    z = data["logits"]
    c = np.abs(data["probs"]) * 3.0  # arbitrary non-negative weights of the rows
    p = special.softmax(z.astype(np.float64), axis=-1)
    wrap = jax.jit if compile_ else (lambda f: f)

    g = wrap(jax.grad(lambda x: jnp.sum(ls.logsumexp(x))))(jnp.asarray(z))
    close(g, p)  # d lse / dz = softmax
    g = wrap(jax.grad(lambda x: jnp.sum(c * ls.log_softmax(x))))(jnp.asarray(z))
    close(g, c - c.sum(-1, keepdims=True) * p)
    v = data["probs"]
    g = wrap(jax.grad(lambda x: jnp.sum(v * ls.softmax(x))))(jnp.asarray(z))
    close(g, p * (v - np.sum(v * p, axis=-1, keepdims=True)))  # softmax Jacobian-vector product
    # Targets: d/dq of sum(c * smooth_labels(q)) = (1 - eps) c for the uniform prior.
    g = wrap(jax.grad(lambda q: jnp.sum(c * ls.smooth_labels(q, EPSILON))))(jnp.asarray(data["probs"]))
    close(g, (1 - EPSILON) * c)


OPTION_CASES = {
    "plain": {},
    "smoothed": {"epsilon": EPSILON},
    "others": {"epsilon": EPSILON, "prior": "others"},
    "prior": {"epsilon": EPSILON, "prior": "array"},
    "weighted_ignored": {"epsilon": EPSILON, "weight": True, "ignore_index": 2},
    "masked": {"epsilon": EPSILON, "where": True},
}


def materialize(options: dict, data: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """(labelsmooth options with JAX arrays, reference options with NumPy arrays)."""
    ours, ref = dict(options), dict(options)
    if options.get("prior") == "array":
        ours["prior"], ref["prior"] = jnp.asarray(data["prior"]), data["prior"]
    if options.get("weight"):
        ours["weight"], ref["weight"] = jnp.asarray(data["weight"]), data["weight"]
    if options.get("where"):
        allowed = np.ones(K, dtype=bool)
        allowed[[1, 4]] = False
        ours["where"], ref["where"] = jnp.asarray(allowed), allowed
    return ours, ref


def labels_for(options: dict, data: dict[str, np.ndarray]) -> np.ndarray:
    y = data["labels"].copy()
    if options.get("where"):
        y = np.where(np.isin(y, [1, 4]), 0, y)
    if "ignore_index" in options:
        y[0] = options["ignore_index"]
    return y


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", OPTION_CASES)
def test_grad_of_cross_entropy_equals_definition(data: dict[str, np.ndarray], case: str, reduction: str) -> None:
    options = OPTION_CASES[case]
    ours, ref = materialize(options, data)
    y = labels_for(options, data)
    z = data["logits"]
    ct = data["cotangent"] if reduction == "none" else np.float32(1.7)
    ref_loss, ref_grad = cross_entropy_rows(z, y, reduction=reduction, **ref)
    ref_grad = ref_grad * (ct[:, None] if reduction == "none" else ct)

    arrays = {k: v for k, v in ours.items() if hasattr(v, "shape")}
    static = {k: v for k, v in ours.items() if k not in arrays}

    # Array options are arguments of the transformed function (traced with the logits).
    def loss(x, labels, options):
        return ls.cross_entropy(x, labels, reduction=reduction, **static, **options)

    args = (jnp.asarray(y), arrays)
    for f in (loss, jax.jit(loss)):
        value, vjp = jax.vjp(lambda x, f=f: f(x, *args), jnp.asarray(z))
        close(value, ref_loss)
        close(vjp(jnp.asarray(ct))[0], ref_grad)
    if reduction == "mean":
        close(jax.jit(jax.grad(loss))(jnp.asarray(z), *args), ref_grad / ct)
        close(jax.grad(jax.jit(loss))(jnp.asarray(z), *args), ref_grad / ct)


def test_grad_through_probability_targets_epsilon_and_weight(data: dict[str, np.ndarray]) -> None:
    """Derivatives with respect to the other floating inputs, from the definition."""
    z, q, w = data["logits"], data["probs"], data["weight"]
    logp = special.log_softmax(z.astype(np.float64), axis=-1)

    # loss = -(1/N) sum_i sum_k w_k q'_ik logp_ik with q' = (1-eps) q + eps / K.
    g_q = jax.grad(lambda t: ls.cross_entropy(jnp.asarray(z), t, epsilon=EPSILON, weight=jnp.asarray(w)))(
        jnp.asarray(q)
    )
    close(g_q, -(1 - EPSILON) * w * logp / N)
    g_eps = jax.grad(lambda e: ls.cross_entropy(jnp.asarray(z), jnp.asarray(q), epsilon=e))(jnp.float32(EPSILON))
    close(g_eps, -np.sum((1.0 / K - q) * logp) / N)
    y = data["labels"]
    eps = np.full(N, EPSILON, dtype=np.float32)
    g_w = jax.grad(
        lambda w_: ls.cross_entropy(
            jnp.asarray(z), jnp.asarray(y), epsilon=jnp.asarray(eps), weight=w_, reduction="sum"
        )
    )(jnp.asarray(w))
    qs = (1 - EPSILON) * np.eye(K)[y] + EPSILON / K
    close(g_w, -np.sum(qs * logp, axis=0))


# ---------------------------------------------------------------- vmap


def test_vmap_of_every_public_function(data: dict[str, np.ndarray]) -> None:
    """vmap over a leading axis equals the function applied to each slice (and the reference)."""
    z, y, q = data["logits"], data["labels"], data["probs"]
    z3 = jnp.asarray(np.stack([z, z[::-1] * 0.5]))  # (2, N, K)
    y3 = jnp.asarray(np.stack([y, y[::-1]]))
    q3 = jnp.asarray(np.stack([q, q[::-1]]))
    z3n, y3n, q3n = np.asarray(z3, np.float64), np.asarray(y3), np.asarray(q3, np.float64)
    eye = np.eye(K)[y3n]

    close(jax.vmap(ls.logsumexp)(z3), special.logsumexp(z3n, axis=-1))
    close(jax.vmap(ls.log_softmax)(z3), special.log_softmax(z3n, axis=-1))
    close(jax.vmap(ls.softmax)(z3), special.softmax(z3n, axis=-1))
    close(jax.vmap(lambda a: ls.one_hot(a, K))(y3), eye)
    close(jax.vmap(lambda a: ls.smooth_labels(a, EPSILON))(q3), (1 - EPSILON) * q3n + EPSILON / K)
    close(
        jax.vmap(lambda a: ls.soft_targets(a, K, epsilon=EPSILON, prior="others"))(y3),
        (1 - EPSILON) * eye + EPSILON * (1 - eye) / (K - 1),
    )
    for reduction in ("mean", "none"):
        refs = [cross_entropy_rows(z3n[i], y3n[i], epsilon=EPSILON, reduction=reduction) for i in range(2)]
        options = {"epsilon": EPSILON, "reduction": reduction}
        loss = jax.vmap(functools.partial(ls.cross_entropy, **options))(z3, y3)
        grad = jax.vmap(functools.partial(ls.cross_entropy_grad, **options))(z3, y3)
        both = jax.jit(jax.vmap(functools.partial(ls.cross_entropy_with_grad, **options)))(z3, y3)
        close(loss, np.stack([r[0] for r in refs]))
        close(grad, np.stack([r[1] for r in refs]))
        close(both[0], loss)
        close(both[1], grad)
    # Probability targets, and a per-batch epsilon mapped along with the data.
    eps = jnp.asarray([0.1, 0.3], dtype=jnp.float32)
    loss = jax.vmap(lambda a, b, e: ls.cross_entropy(a, b, epsilon=e))(z3, q3, eps)
    close(loss, [cross_entropy_rows(z3n[i], q3n[i], epsilon=float(eps[i]))[0] for i in range(2)])


def test_per_example_gradients_with_vmap_of_grad(data: dict[str, np.ndarray]) -> None:
    z, y = data["logits"], data["labels"]
    per_example = jax.jit(jax.vmap(jax.grad(lambda a, b: ls.cross_entropy(a[None], b[None], epsilon=EPSILON))))(
        jnp.asarray(z), jnp.asarray(y)
    )
    _, ref = cross_entropy_rows(z, y, epsilon=EPSILON, reduction="none")
    close(per_example, ref)


def test_traced_invalid_labels_give_nan(data: dict[str, np.ndarray]) -> None:
    y = data["labels"].copy()
    y[3] = K + 1
    per_sample = jax.jit(lambda a, b: ls.cross_entropy(a, b, epsilon=EPSILON, reduction="none"))(
        jnp.asarray(data["logits"]), jnp.asarray(y)
    )
    assert np.isnan(per_sample[3]) and np.isfinite(np.delete(np.asarray(per_sample), 3)).all()
    grad = jax.jit(lambda a, b: ls.cross_entropy_grad(a, b, epsilon=EPSILON, reduction="none"))(
        jnp.asarray(data["logits"]), jnp.asarray(y)
    )
    assert np.isnan(np.asarray(grad)[3]).all() and np.isfinite(np.delete(np.asarray(grad), 3, axis=0)).all()


def test_jit_of_functions_closing_over_concrete_arrays(data: dict[str, np.ndarray]) -> None:
    """Arrays captured by a jitted function are staged into the trace: no eager checks."""
    z, y, prior, eps = (jnp.asarray(data[k]) for k in ("logits", "labels", "prior", "cotangent"))
    eps = jnp.abs(eps) / 10
    run = jax.jit(
        lambda a: (
            ls.cross_entropy(a, y, epsilon=eps, prior=prior, reduction="none"),
            ls.one_hot(y, K),
            ls.smooth_labels(ls.softmax(a), 0.1, prior=prior),
            ls.soft_targets(y, K, epsilon=eps),
        )
    )
    loss, onehot, smoothed, targets = run(z)
    e64 = np.asarray(eps, np.float64)[:, None]
    eye = np.eye(K)[data["labels"]]
    close(
        loss,
        cross_entropy_rows(data["logits"], data["labels"], epsilon=e64[:, 0], prior=data["prior"], reduction="none")[0],
    )
    close(onehot, eye)
    close(smoothed, 0.9 * special.softmax(data["logits"].astype(np.float64), axis=-1) + 0.1 * data["prior"])
    close(targets, (1 - e64) * eye + e64 * np.ones(K) / K)
    bad = jnp.asarray(np.where(np.arange(N) == 2, K, data["labels"]))
    loss = jax.jit(lambda a: ls.cross_entropy(a, bad, reduction="none"))(z)
    assert np.isnan(loss[2]) and np.isfinite(np.delete(np.asarray(loss), 2)).all()


# ---------------------------------------------------------------- sharding (4 host devices)

SHARDING_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import jax, jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from scipy import special
    import labelsmooth as ls
    sys.path.insert(0, sys.argv[1])
    from _formulas import cross_entropy_rows

    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(3)
    N, K, eps = 16, 12, 0.2
    z = rng.normal(scale=2.0, size=(N, K)).astype(np.float32)
    y = rng.integers(0, K, size=N).astype(np.int32)
    q = rng.dirichlet(np.ones(K), size=N).astype(np.float32)
    w = rng.uniform(0.3, 2.0, size=K).astype(np.float32)
    z64, q64 = z.astype(np.float64), q.astype(np.float64)
    errors = {}

    def check(name, got, want):
        got = np.asarray(got, dtype=np.float64)
        errors[name] = float(np.max(np.abs(got - want) / (2e-6 + 2e-5 * np.abs(want))))

    layouts = {
        "batch": (Mesh(np.array(jax.devices()), ("data",)), P("data", None), P("data")),
        "classes": (Mesh(np.array(jax.devices()), ("model",)), P(None, "model"), P()),
        "both": (Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model")), P("data", "model"), P("data")),
    }
    def everything(z, y, q, w):
        # Every public function, in one program per layout (one compilation).
        out = {
            "logsumexp": ls.logsumexp(z), "log_softmax": ls.log_softmax(z), "softmax": ls.softmax(z),
            "one_hot": ls.one_hot(y, K), "smooth_labels": ls.smooth_labels(q, eps),
            "soft_targets": ls.soft_targets(y, K, epsilon=eps),
            "jax.grad": jax.grad(lambda a: ls.cross_entropy(a, y, epsilon=eps, prior="others"))(z),
        }
        for reduction in ("mean", "sum", "none"):
            options = dict(epsilon=eps, weight=w, reduction=reduction)
            out[f"cross_entropy/{reduction}"] = ls.cross_entropy(z, y, **options)
            out[f"cross_entropy_grad/{reduction}"] = ls.cross_entropy_grad(z, y, **options)
            loss, grad = ls.cross_entropy_with_grad(z, y, **options)
            out[f"cross_entropy_with_grad/{reduction}/loss"] = loss
            out[f"cross_entropy_with_grad/{reduction}/grad"] = grad
        out["probabilities/loss"], out["probabilities/grad"] = ls.cross_entropy_with_grad(z, q, epsilon=eps)
        return out

    expected = {
        "logsumexp": special.logsumexp(z64, axis=-1), "log_softmax": special.log_softmax(z64, axis=-1),
        "softmax": special.softmax(z64, axis=-1), "one_hot": np.eye(K)[y],
        "smooth_labels": (1 - eps) * q64 + eps / K, "soft_targets": (1 - eps) * np.eye(K)[y] + eps / K,
        "jax.grad": cross_entropy_rows(z, y, epsilon=eps, prior="others")[1],
    }
    for reduction in ("mean", "sum", "none"):
        ref_loss, ref_grad = cross_entropy_rows(z, y, epsilon=eps, weight=w, reduction=reduction)
        expected[f"cross_entropy/{reduction}"] = ref_loss
        expected[f"cross_entropy_grad/{reduction}"] = ref_grad
        expected[f"cross_entropy_with_grad/{reduction}/loss"] = ref_loss
        expected[f"cross_entropy_with_grad/{reduction}/grad"] = ref_grad
    expected["probabilities/loss"], expected["probabilities/grad"] = cross_entropy_rows(z, q, epsilon=eps)

    for layout, (mesh, spec, batch_spec) in layouts.items():
        zs = jax.device_put(z, NamedSharding(mesh, spec))
        qs = jax.device_put(q, NamedSharding(mesh, spec))
        ys = jax.device_put(y, NamedSharding(mesh, batch_spec))
        ws = jax.device_put(w, NamedSharding(mesh, P(spec[1])))
        assert len(zs.sharding.device_set) == 4 and not zs.sharding.is_fully_replicated
        results = jax.jit(everything)(zs, ys, qs, ws)
        for name, want in expected.items():
            check(f"{layout}/{name}", results[name], want)
        assert len(results["cross_entropy_grad/mean"].sharding.device_set) == 4
    print(json.dumps(errors))
    """
)


@pytest.mark.slow
def test_sharded_arrays_give_the_same_results(tmp_path: Path) -> None:
    """Batch-, class- and 2-D-sharded inputs over 4 devices equal the dense references."""
    script = tmp_path / "sharded.py"
    script.write_text(SHARDING_SCRIPT)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    completed = subprocess.run(
        [sys.executable, "-W", "error", str(script), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    import json

    errors = json.loads(completed.stdout.strip().splitlines()[-1])
    assert len(errors) == 3 * (7 + 3 * 4 + 2)
    worst = {name: err for name, err in errors.items() if not err <= 1.0}
    assert not worst, worst
