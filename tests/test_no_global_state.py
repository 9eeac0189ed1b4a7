"""No global state: framework settings untouched, concurrent calls safe, inputs never modified,
read-only NumPy inputs accepted.
"""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import labelsmooth as ls

LOSSES = ("cross_entropy", "cross_entropy_grad", "cross_entropy_with_grad")


def settings_snapshot() -> dict:
    """Every process-wide setting a numerical library could be tempted to change."""
    snap = {
        "numpy errstate": np.geterr(),
        "numpy printoptions": np.get_printoptions(),
    }
    try:
        import torch
    except ImportError:
        pass
    else:
        snap.update(
            {
                "torch threads": torch.get_num_threads(),
                "torch interop threads": torch.get_num_interop_threads(),
                "torch default dtype": torch.get_default_dtype(),
                "torch grad mode": torch.is_grad_enabled(),
                "torch inference mode": torch.is_inference_mode_enabled(),
                "torch deterministic": torch.are_deterministic_algorithms_enabled(),
                "torch anomaly mode": torch.is_anomaly_enabled(),
                "torch float32 matmul precision": torch.get_float32_matmul_precision(),
            }
        )
    try:
        import jax
    except ImportError:
        pass
    else:
        for name in (
            "jax_enable_x64",
            "jax_default_matmul_precision",
            "jax_numpy_rank_promotion",
            "jax_numpy_dtype_promotion",
            "jax_debug_nans",
            "jax_disable_jit",
        ):
            snap[name] = getattr(jax.config, name)
    # Read after the imports above, which install filters of their own the first time.
    snap["warnings filters"] = list(warnings.filters)
    return snap


def every_call(b, rng):
    """All public functions with all options, on valid and on edge inputs, through backend ``b``."""
    z = rng.normal(size=(6, 5))
    z[1, 2] = np.nan
    z[2, 4] = -np.inf
    y = np.array([0, 1, 3, 4, 2, 1])
    q = rng.dirichlet(np.ones(5), size=6)
    where = np.ones((6, 5), bool)
    where[2, 4] = False
    options = [
        {},
        {"epsilon": 0.1, "reduction": "none"},
        {"epsilon": b.asarray(rng.uniform(size=6)), "prior": "others", "reduction": "sum"},
        {"epsilon": 0.2, "prior": b.asarray(rng.dirichlet(np.ones(5))), "weight": b.asarray(rng.uniform(0.5, 2, 5))},
        {"epsilon": 0.3, "where": b.asarray(where), "ignore_index": 1},
    ]
    zb, yb, qb = b.asarray(z), b.asarray(y), b.asarray(q)
    results = []
    for opts in options:
        results.extend(b.call(ls.cross_entropy_with_grad, zb, yb, **opts))
        if "ignore_index" not in opts:
            results.extend(b.call(ls.cross_entropy_with_grad, zb, qb, **opts))
    results.append(b.call(ls.cross_entropy, zb, yb, **options[1]))
    results.append(b.call(ls.cross_entropy_grad, zb, qb, **options[3]))
    bad_labels = b.asarray(np.full(6, 7))
    if b.eager:
        # The error path leaves nothing behind either.
        with pytest.raises(ValueError, match="targets must be class indices"):
            ls.cross_entropy(zb, bad_labels, epsilon=0.1)
    else:
        results.append(b.call(ls.cross_entropy, zb, bad_labels, epsilon=0.1))
    for name in ("logsumexp", "log_softmax", "softmax"):
        results.append(b.call(getattr(ls, name), zb))
        results.append(b.call(getattr(ls, name), zb, axis=0))
    results.append(b.call(ls.one_hot, yb, 5))
    results.append(b.call(ls.soft_targets, yb, 5, epsilon=0.1, prior="others", axis=0))
    results.append(b.call(ls.smooth_labels, qb, b.asarray(rng.uniform(size=6)), prior=b.asarray(np.full(5, 0.2))))
    return results


def test_framework_settings_are_unchanged(backend, rng):
    # A first run imports what the libraries import lazily (Dask's compute, SciPy), which may
    # add warning filters of their own; the settings are compared around a second run.
    for result in every_call(backend, rng):
        backend.to_numpy(result)
    before = settings_snapshot()
    results = every_call(backend, rng)
    for result in results:
        backend.to_numpy(result)
    assert settings_snapshot() == before


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_concurrent_calls_give_the_sequential_results(library):
    if library == "torch":
        torch = pytest.importorskip("torch")
        asarray, to_numpy = torch.from_numpy, lambda x: x.numpy()
    else:
        asarray, to_numpy = np.asarray, np.asarray
    rng = np.random.default_rng(7)
    problems = []
    for i in range(20):
        rows, classes = [(64, 10), (300, 1000), (8, 3), (1024, 1024)][i % 4]
        dtype = np.float32 if i % 3 else np.float64
        z = rng.normal(scale=3.0, size=(rows, classes)).astype(dtype)
        y = rng.integers(0, classes, size=rows)
        options = [
            {"epsilon": 0.1},
            {"epsilon": 0.2, "prior": "others", "reduction": "sum"},
            {"reduction": "none", "ignore_index": 0},
            {"epsilon": 0.05, "weight": asarray(rng.uniform(0.5, 2.0, classes).astype(dtype))},
        ][i % 4]
        problems.append((asarray(z), asarray(y), options))

    def solve(index):
        z, y, options = problems[index]
        loss, grad = ls.cross_entropy_with_grad(z, y, **options)
        return to_numpy(loss), to_numpy(grad)

    threads_before = threading.active_count()
    sequential = [solve(i) for i in range(len(problems))]
    # No helper thread outlives a call (threads of other libraries may only have ended).
    assert threading.active_count() <= threads_before

    def worker(seed):
        order = np.random.default_rng(seed).permutation(len(problems))
        return [(int(i), solve(int(i))) for i in order]

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(worker, range(8)))
    for outcome in outcomes:
        assert len(outcome) == 20
        for i, (loss, grad) in outcome:
            # Bit for bit: no state is shared between calls.
            assert np.array_equal(loss, sequential[i][0], equal_nan=True)
            assert np.array_equal(grad, sequential[i][1], equal_nan=True)


def snapshot_inputs(b, arrays):
    return [np.array(b.to_numpy(a), copy=True) for a in arrays]


def test_inputs_are_never_modified(backend, rng):
    if backend.value.startswith("jax"):
        pytest.skip("JAX arrays are immutable: no function can modify its inputs")
    z = rng.normal(size=(4, 5, 3))
    z[0, 1, 0] = -np.inf
    y = rng.integers(0, 5, size=(4, 3))
    y[1, 1] = -100
    y[:, 0] = np.where(y[:, 0] == 1, 0, y[:, 0])  # class 1 is masked at position 0
    q = rng.dirichlet(np.ones(5), size=(4, 3)).transpose(0, 2, 1)
    eps = rng.uniform(size=(4, 3))
    prior = rng.dirichlet(np.ones(5))
    weight = rng.uniform(0.5, 2.0, size=5)
    where = np.ones((1, 5, 1), bool)
    where[0, 1, 0] = False
    arrays = [backend.asarray(a) for a in (z, y, q, eps, prior, weight, where)]
    zb, yb, qb, eb, pb, wb, mb = arrays
    before = snapshot_inputs(backend, arrays)
    for prior_option in (None, "others", pb):
        for reduction in ("mean", "none"):
            backend.to_numpy(
                backend.call(
                    ls.cross_entropy_with_grad,
                    zb,
                    yb,
                    epsilon=eb,
                    prior=prior_option,
                    axis=1,
                    weight=wb,
                    ignore_index=-100,
                    where=mb,
                    reduction=reduction,
                )
            )
            backend.to_numpy(
                backend.call(
                    ls.cross_entropy_with_grad,
                    zb,
                    qb,
                    epsilon=eb,
                    prior=prior_option,
                    axis=1,
                    weight=wb,
                    reduction=reduction,
                )
            )
    backend.to_numpy(
        backend.call(
            ls.cross_entropy, zb, yb, epsilon=eb, axis=1, weight=wb, ignore_index=-100, where=mb, reduction="sum"
        )
    )
    backend.to_numpy(backend.call(ls.cross_entropy_grad, zb, qb, epsilon=0.1, prior=pb, axis=1))
    for name in ("logsumexp", "log_softmax", "softmax"):
        backend.to_numpy(backend.call(getattr(ls, name), zb, axis=1))
    backend.to_numpy(backend.call(ls.logsumexp, zb, axis=1, keepdims=True))
    backend.to_numpy(backend.call(ls.one_hot, backend.asarray(np.abs(y) % 5), 5, axis=1))
    backend.to_numpy(backend.call(ls.soft_targets, backend.asarray(np.abs(y) % 5), 5, epsilon=eb, prior=pb, axis=1))
    backend.to_numpy(backend.call(ls.smooth_labels, qb, eb, prior="others", axis=1))
    after = snapshot_inputs(backend, arrays)
    for old, new in zip(before, after):
        assert np.array_equal(old, new, equal_nan=True)


@pytest.mark.parametrize(
    "name",
    [
        "softmax",
        "log_softmax",
        "logsumexp",
        "smooth_labels",
        "cross_entropy_grad",
        "cross_entropy_with_grad",
        "cross_entropy",
    ],
)
def test_numpy_results_do_not_alias_inputs(rng, name):
    # Writing into a result must never reach an input (no view of it is handed back).
    z = rng.normal(size=(5, 4))
    q = rng.dirichlet(np.ones(4), size=5)
    z_copy, q_copy = z.copy(), q.copy()
    if name == "smooth_labels":
        results = [ls.smooth_labels(q, 0.0)]
    elif name.startswith("cross"):
        out = getattr(ls, name)(z, q, reduction="none")
        results = list(out) if isinstance(out, tuple) else [out]
    else:
        results = [getattr(ls, name)(z)]
    for result in results:
        assert not np.shares_memory(result, z) and not np.shares_memory(result, q)
        result[...] = 7.0
    assert np.array_equal(z, z_copy) and np.array_equal(q, q_copy)


def test_read_only_numpy_inputs_are_accepted(rng):
    z = rng.normal(size=(6, 5))
    y = rng.integers(0, 5, size=6)
    q = rng.dirichlet(np.ones(5), size=6)
    extra = {
        "epsilon": rng.uniform(size=6),
        "prior": rng.dirichlet(np.ones(5)),
        "weight": rng.uniform(0.5, 2.0, size=5),
        "where": np.array([True, True, False, True, True]),
    }
    y = np.where(y == 2, 0, y)
    frozen = {}
    for key, value in {"z": z, "y": y, "q": q, **extra}.items():
        copy = value.copy()
        copy.flags.writeable = False
        frozen[key] = copy
    q_allowed = np.where(extra["where"], q, 0.0)
    q_allowed /= q_allowed.sum(-1, keepdims=True)
    q_frozen = q_allowed.copy()
    q_frozen.flags.writeable = False
    options = {k: frozen[k] for k in extra}
    for name in LOSSES:
        for targets, writable in ((frozen["y"], y), (q_frozen, q_allowed)):
            got = getattr(ls, name)(frozen["z"], targets, **options, reduction="none")
            expected = getattr(ls, name)(z, writable, **extra, reduction="none")
            for g, e in zip(
                np.atleast_1d(got) if not isinstance(got, tuple) else got,
                np.atleast_1d(expected) if not isinstance(expected, tuple) else expected,
            ):
                assert np.array_equal(g, e, equal_nan=True)
    for name in ("logsumexp", "log_softmax", "softmax"):
        assert np.array_equal(getattr(ls, name)(frozen["z"]), getattr(ls, name)(z))
    assert np.array_equal(ls.one_hot(frozen["y"], 5), ls.one_hot(y, 5))
    assert np.array_equal(
        ls.soft_targets(frozen["y"], 5, epsilon=frozen["epsilon"], prior=frozen["prior"]),
        ls.soft_targets(y, 5, epsilon=extra["epsilon"], prior=extra["prior"]),
    )
    assert np.array_equal(
        ls.smooth_labels(frozen["q"], frozen["epsilon"], prior="others"),
        ls.smooth_labels(q, extra["epsilon"], prior="others"),
    )
