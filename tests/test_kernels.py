"""Every kernel against the written-out float64 definition and PyTorch, on every option.

The kernels (the array-API kernel, NumPy's (also on views of CPU tensors), JAX's, eager and under
``jit``) are selected by the options and the arrays; each case here checks that the
intended kernel ran and that its loss (``"none"`` and ``"mean"``) and gradient equal the
dense oracle of ``tests/_formulas.py`` (dense ``q'``, SciPy's ``log_softmax``), and, where
PyTorch has the option, ``torch.nn.functional.cross_entropy`` in float64.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from _formulas import cross_entropy_rows

import labelsmooth as ls
from labelsmooth import _jax_fast, _kernel, _numpy_fast, _small
from labelsmooth._assembly import solve
from labelsmooth._backend import fast_paths
from labelsmooth._problem import prepare

N, K = 7, 6
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_JAX = importlib.util.find_spec("jax") is not None


def _case_arrays(rng: np.random.Generator) -> dict:
    z = rng.normal(size=(N, K)) * 3.0
    z[1, 2] = z[1, 4] = z[1].max() + 1.0  # a tied maximum
    labels = rng.integers(0, K, size=N)
    labels[3] = 2
    probabilities = rng.dirichlet(np.ones(K), size=N)
    prior = rng.dirichlet(np.ones(K))
    weight = rng.uniform(0.5, 2.0, size=K)
    where = np.ones((N, K), bool)
    where[:, 5] = False
    labels_allowed = np.where(labels == 5, 0, labels)
    return {
        "z": z,
        "labels": labels,
        "labels_allowed": labels_allowed,
        "probabilities": probabilities,
        "prior": prior,
        "weight": weight,
        "where": where,
        "epsilon_rows": rng.uniform(0.0, 0.5, size=N),
    }


# (name, targets key, options as keys of the case arrays or values, PyTorch has it)
CASES = [
    ("eps 0", "labels", {"epsilon": 0.0}, True),
    ("eps 0.1", "labels", {"epsilon": 0.1}, True),
    ("per-sample eps", "labels", {"epsilon": "epsilon_rows"}, False),
    ("others", "labels", {"epsilon": 0.2, "prior": "others"}, False),
    ("prior", "labels", {"epsilon": 0.2, "prior": "prior"}, False),
    ("weight", "labels", {"epsilon": 0.1, "weight": "weight"}, True),
    ("weight prior", "labels", {"epsilon": 0.3, "weight": "weight", "prior": "prior"}, False),
    ("ignore", "labels", {"epsilon": 0.1, "ignore_index": 2}, True),
    (
        "weight ignore others",
        "labels",
        {"epsilon": 0.1, "weight": "weight", "ignore_index": 2, "prior": "others"},
        False,
    ),
    ("where", "labels_allowed", {"epsilon": 0.1, "where": "where"}, False),
    ("z-loss", "labels", {"epsilon": 0.1, "z_loss": 0.05}, False),
    (
        "z-loss weight ignore per-sample softcap",
        "labels",
        {"epsilon": "epsilon_rows", "weight": "weight", "ignore_index": 2, "z_loss": 0.2, "softcap": 2.0},
        False,
    ),
    ("probabilities", "probabilities", {"epsilon": 0.1}, True),
    ("probabilities weight others", "probabilities", {"epsilon": 0.2, "weight": "weight", "prior": "others"}, False),
]


def _options(arrays: dict, options: dict, convert: Callable[[np.ndarray], Any]) -> dict:
    return {
        name: convert(arrays[value]) if isinstance(value, str) and value in arrays else value
        for name, value in options.items()
    }


def _expected_kernel(backend: str, targets: str, options: dict) -> Any:
    if "where" in options:
        return _kernel
    if backend == "numpy":
        return _numpy_fast
    if backend == "torch":
        return _numpy_fast  # on NumPy views of the tensors
    if targets == "probabilities" or options.get("prior") == "others" or "z_loss" in options:
        return _kernel
    return _jax_fast


@contextmanager
def _kernels_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """The kernel modules whose ``run`` each call reached first."""
    ran: list = []
    originals = {module: module.run for module in (_kernel, _numpy_fast, _jax_fast)}
    for module, original in originals.items():

        def spy(task: Any, module: Any = module, original: Any = original) -> Any:
            ran.append(module)
            return original(task)

        monkeypatch.setattr(module, "run", spy)
    yield ran
    for module, original in originals.items():
        monkeypatch.setattr(module, "run", original)


def _oracle(arrays: dict, targets: str, options: dict, reduction: str) -> tuple:
    return cross_entropy_rows(
        arrays["z"], arrays[targets], **_options(arrays, options, np.asarray), reduction=reduction
    )


def _check(kernel: Any, call: Callable, to_numpy: Callable, convert: Callable, case: tuple, mp: Any) -> None:
    """``kernel`` ran first and both reductions' loss and gradient equal the oracle's."""
    name, targets, options, _ = case
    arrays = _case_arrays(np.random.default_rng(20161205))
    for reduction in ("none", "mean"):
        kwargs = {**_options(arrays, options, convert), "reduction": reduction}
        with _kernels_run(mp) as ran:
            loss, grad = call(convert(arrays["z"]), convert(arrays[targets]), kwargs)
        assert ran[:1] == [kernel], name
        expected_loss, expected_grad = _oracle(arrays, targets, options, reduction)
        np.testing.assert_allclose(to_numpy(loss), expected_loss, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(to_numpy(grad), expected_grad, rtol=1e-12, atol=1e-12, err_msg=name)


def _numpy_call(z: Any, targets: Any, kwargs: dict) -> tuple:
    return ls.cross_entropy(z, targets, **kwargs), ls.cross_entropy_grad(z, targets, **kwargs)


def _numpy_layout(layout: str, targets: str, monkeypatch: pytest.MonkeyPatch, options: dict) -> None:
    """Make the NumPy kernel take its row-blocked passes, or fail if labels leave its transposed ones."""
    monkeypatch.setattr(_small, "_MAX_CLASSES", 0)  # the kernel, not the lean path of small problems
    if layout == "blocked":
        monkeypatch.setattr(_numpy_fast, "_TRANSPOSED_MAX_CLASSES", 0)
        return
    if targets == "probabilities" or "z_loss" in options:
        return  # dense targets and the z-loss always take the row blocks

    def refuse(task: Any) -> Any:
        raise AssertionError("the transposed passes should have run")

    monkeypatch.setattr(_numpy_fast, "_run_blocked", refuse)


@pytest.mark.parametrize("layout", ["transposed", "blocked"])
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_numpy_kernels(case: tuple, layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _numpy_layout(layout, case[1], monkeypatch, case[2])
    _check(_expected_kernel("numpy", case[1], case[2]), _numpy_call, np.asarray, np.asarray, case, monkeypatch)


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_numpy_kernel_writing_the_gradient_over_the_logits(case: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    # As the linear loss asks it to, for the logits of each block (the row-blocked passes).
    monkeypatch.setattr(_numpy_fast, "_TRANSPOSED_MAX_CLASSES", 0)
    kernel = _expected_kernel("numpy", case[1], case[2])

    def call(z: Any, targets: Any, kwargs: dict) -> tuple:
        owned = z.copy()
        loss, grad = solve(prepare(owned, targets, **kwargs), with_grad=True, overwrite_logits=True)
        # Soft-capped logits are a new array, and the array-API kernel writes a new gradient.
        assert np.shares_memory(grad, owned) == (kernel is _numpy_fast and "softcap" not in kwargs)
        return loss, grad

    _check(kernel, call, np.asarray, np.asarray, case, monkeypatch)


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_array_api_kernel(case: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    def call(z: Any, targets: Any, kwargs: dict) -> tuple:
        with fast_paths(False):
            return _numpy_call(z, targets, kwargs)

    _check(_kernel, call, np.asarray, np.asarray, case, monkeypatch)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
@pytest.mark.parametrize("layout", ["transposed", "blocked"])
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_torch_kernels(case: tuple, layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    _numpy_layout(layout, case[1], monkeypatch, case[2])

    kernel = _expected_kernel("torch", case[1], case[2])
    _check(kernel, _numpy_call, lambda t: t.numpy(), torch.from_numpy, case, monkeypatch)


def jax_row_layout(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the JAX kernel sum whole rows, blocks of 3 classes (as rows over 32768 classes), or
    store ``S`` (as rows over 32768 classes with no divisor of at least 1024)."""
    if layout == "class blocks":
        monkeypatch.setattr(_jax_fast, "_ROW_TILE", 3)
        monkeypatch.setattr(_jax_fast, "_MIN_BLOCK", 2)
    elif layout == "stored S":
        monkeypatch.setattr(_jax_fast, "_ROW_TILE", 3)
        monkeypatch.setattr(_jax_fast, "_MIN_BLOCK", 4)
    assert _jax_fast._block_width(K) == {"rows": K, "class blocks": 3, "stored S": None}[layout]


JAX_LAYOUTS = [(False, "rows"), (True, "rows"), (True, "class blocks"), (False, "stored S")]


@pytest.mark.skipif(not HAS_JAX, reason="needs jax")
@pytest.mark.parametrize(
    ("jit", "layout"), JAX_LAYOUTS, ids=[f"{'jit' if j else 'eager'}-{lay}" for j, lay in JAX_LAYOUTS]
)
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_jax_kernels(case: tuple, jit: bool, layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import jax
    import jax.numpy as jnp

    jax_row_layout(layout, monkeypatch)

    def call(z: Any, targets: Any, kwargs: dict) -> tuple:
        arrays = {k: v for k, v in kwargs.items() if isinstance(v, jax.Array)}
        static = {k: v for k, v in kwargs.items() if k not in arrays}

        def both(z: Any, targets: Any, arrays: dict) -> tuple:
            return ls.cross_entropy_with_grad(z, targets, **arrays, **static)

        return (jax.jit(both) if jit else both)(z, targets, arrays)

    with jax.enable_x64(True):
        _check(_expected_kernel("jax", case[1], case[2]), call, np.asarray, jnp.asarray, case, monkeypatch)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
@pytest.mark.parametrize("case", [case for case in CASES if case[3]], ids=[case[0] for case in CASES if case[3]])
def test_numpy_kernel_against_pytorch(case: tuple) -> None:
    """The options PyTorch has, against ``F.cross_entropy`` and its autograd in float64."""
    import torch

    name, targets, options, _ = case
    arrays = _case_arrays(np.random.default_rng(20161205))
    torch_options = {"label_smoothing": options["epsilon"], "ignore_index": options.get("ignore_index", -100)}
    if "weight" in options:
        torch_options["weight"] = torch.from_numpy(arrays["weight"])
    for reduction in ("none", "mean", "sum"):
        z = torch.from_numpy(arrays["z"]).requires_grad_(True)
        expected = torch.nn.functional.cross_entropy(
            z, torch.from_numpy(arrays[targets]), reduction=reduction, **torch_options
        )
        (expected_grad,) = torch.autograd.grad(expected.sum(), z)
        kwargs = {**_options(arrays, options, np.asarray), "reduction": reduction}
        loss, grad = ls.cross_entropy_with_grad(arrays["z"], arrays[targets], **kwargs)
        np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=1e-13, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(grad, expected_grad.numpy(), rtol=1e-13, atol=1e-15, err_msg=name)


def test_numpy_kernel_threads_stay_within_threadpoolctl_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that limited its threads with threadpoolctl gets one thread from the kernel too."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(_small, "_MAX_CLASSES", 0)  # the kernel, not the lean path of small problems
    monkeypatch.setattr(_numpy_fast, "_PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(_numpy_fast, "_BLOCK_BYTES", 1024)
    monkeypatch.setenv("LABELSMOOTH_NUM_THREADS", "4")
    seen: list = []
    original = _numpy_fast._usable_threads
    monkeypatch.setattr(_numpy_fast, "_usable_threads", lambda limit: seen.append(original(limit)) or seen[-1])
    arrays = _case_arrays(np.random.default_rng(3))
    z = np.tile(arrays["z"], (10, 1))
    labels = np.tile(arrays["labels"], 10)
    with threadpoolctl.threadpool_limits(1):
        loss, grad = ls.cross_entropy_with_grad(z, labels, epsilon=0.1)
    assert seen == [1]
    expected_loss, expected_grad = cross_entropy_rows(z, labels, epsilon=0.1)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)
