"""The fast paths of ``cross_entropy`` / ``cross_entropy_with_grad``.

NumPy (row blocks, optionally threaded), JAX (a fusion-friendly arrangement) and PyTorch CPU
tensors (the NumPy path on views) must give the generic path's results for every option,
dtype, layout and edge case, and agree with references written out here (float64 formulas,
PyTorch's ``F.cross_entropy``). The generic path is reached by switching the fast paths off.
"""

from __future__ import annotations

import importlib.util
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _formulas import cross_entropy_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import labelsmooth as ls
from labelsmooth import _jax_fast, _numpy_fast, _small
from labelsmooth._backend import fast_paths

HAS_JAX = importlib.util.find_spec("jax") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None


def generic_only() -> Any:
    return fast_paths(False)


def fast_and_generic(fn: Callable, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    fast = fn(*args, **kwargs)
    with generic_only():
        generic = fn(*args, **kwargs)
    return fast, generic


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of a few rows, so that block boundaries fall inside every test batch."""
    monkeypatch.setattr(_numpy_fast, "_BLOCK_BYTES", 512)


@pytest.fixture
def threaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several threads even for small problems."""
    monkeypatch.setattr(_numpy_fast, "_BLOCK_BYTES", 512)
    monkeypatch.setattr(_numpy_fast, "_PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setenv("LABELSMOOTH_NUM_THREADS", "3")


@pytest.fixture
def numpy_calls(monkeypatch: pytest.MonkeyPatch) -> list:
    """Records each use of the NumPy fast path."""
    calls: list = []
    original = _numpy_fast.run

    def spy(task: Any) -> Any:
        calls.append(task.with_grad)
        return original(task)

    monkeypatch.setattr(_numpy_fast, "run", spy)
    return calls


def tolerance(dtype: Any) -> float:
    return 8 * float(np.finfo(dtype).eps)


def assert_same(fast: Any, generic: Any, dtype: Any, unit: float = 0.0) -> None:
    """Equal up to a few ulps of the values, or of ``unit`` (a gradient's ``p - q'`` scale)."""
    fast, generic = np.asarray(fast), np.asarray(generic)
    assert fast.shape == generic.shape
    assert fast.dtype == generic.dtype
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(generic))
    finite = np.isfinite(generic)
    np.testing.assert_array_equal(fast[~finite & ~np.isnan(generic)], generic[~finite & ~np.isnan(generic)])
    if finite.any():
        scale = max(float(np.max(np.abs(generic[finite]))), unit)
        np.testing.assert_allclose(
            fast[finite].astype(np.float64),
            generic[finite].astype(np.float64),
            rtol=tolerance(dtype),
            atol=tolerance(dtype) * scale,
        )


def check_against_generic(logits: Any, targets: Any, dtype: Any = np.float32, **options: Any) -> None:
    (loss, grad), (loss_g, grad_g) = fast_and_generic(ls.cross_entropy_with_grad, logits, targets, **options)
    assert_same(loss, loss_g, dtype)
    samples = max(1, np.size(logits) // max(1, np.shape(logits)[options.get("axis", -1)]))
    assert_same(grad, grad_g, dtype, unit=2.0 / samples if options.get("reduction", "mean") == "mean" else 2.0)
    loss_only, loss_only_g = fast_and_generic(ls.cross_entropy, logits, targets, **options)
    assert_same(loss_only, loss_only_g, dtype)
    assert_same(loss_only, loss, dtype)


def reference(z: np.ndarray, y: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample losses and gradients from the one dense float64 oracle (``tests/_formulas.py``)."""
    return cross_entropy_rows(z, y, epsilon=epsilon, reduction="none")


def make(rng: np.random.Generator, rows: int, classes: int, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    return (3.0 * rng.standard_normal((rows, classes))).astype(dtype), rng.integers(0, classes, rows)


# --- NumPy --------------------------------------------------------------------------------


OPTION_SETS = [
    {},
    {"epsilon": 0.1},
    {"epsilon": 1.0},
    {"epsilon": 0.1, "prior": "others"},
    {"epsilon": 0.3, "prior": "array"},
    {"epsilon": 0.3, "prior": "row"},
    {"epsilon": 0.3, "prior": "per-sample"},
    {"epsilon": 0.1, "weight": True},
    {"epsilon": 0.2, "prior": "others", "weight": True},
    {"epsilon": "array"},
    {"epsilon": 0.1, "ignore_index": True},
]
# A where= mask makes every fast path ineligible; so does a per-sample prior for NumPy (and
# PyTorch, which runs the NumPy path on views) and prior="others" for JAX. Those options go
# to the generic path, where a comparison with the generic path could not fail.
NUMPY_OPTION_SETS = [o for o in OPTION_SETS if o.get("prior") != "per-sample"]
JAX_OPTION_SETS = [o for o in OPTION_SETS if o.get("prior") != "others"]


def materialise(options: dict, rng: np.random.Generator, y: np.ndarray, classes: int, dtype: Any) -> dict:
    out = dict(options)
    rows = y.shape[0]
    if options.get("prior") == "array":
        out["prior"] = rng.dirichlet(np.ones(classes)).astype(dtype)
    elif options.get("prior") == "row":
        out["prior"] = rng.dirichlet(np.ones(classes)).astype(dtype)[None, :]
    elif options.get("prior") == "per-sample":
        out["prior"] = rng.dirichlet(np.ones(classes), size=rows).astype(dtype)
    if options.get("weight"):
        out["weight"] = rng.uniform(0.1, 2.0, classes).astype(dtype)
    if options.get("epsilon") == "array":
        out["epsilon"] = rng.uniform(0.0, 1.0, rows)
        out["epsilon"][::4] = 0.0
    if options.get("ignore_index"):
        out["ignore_index"] = int(y[1])
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "options", NUMPY_OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain"
)
def test_numpy_matches_generic(
    small_blocks: None, rng: np.random.Generator, dtype: Any, reduction: str, options: dict
) -> None:
    z, y = make(rng, 37, 23, dtype)
    kwargs = materialise(options, rng, y, 23, dtype)
    check_against_generic(z, y, dtype, reduction=reduction, **kwargs)


@pytest.mark.parametrize(
    "options", NUMPY_OPTION_SETS[:8], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain"
)
def test_numpy_threads_match_generic(threaded: None, rng: np.random.Generator, options: dict) -> None:
    z, y = make(rng, 101, 70)
    kwargs = materialise(options, rng, y, 70, np.float32)
    check_against_generic(z, y, reduction="none", **kwargs)
    check_against_generic(z, y, **kwargs)


def test_fast_path_is_taken_for_the_common_options(
    numpy_calls: list, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_calls: list = []
    original = _small._evaluate
    monkeypatch.setattr(_small, "_evaluate", lambda *args: small_calls.append(args[-1]) or original(*args))
    z, y = make(rng, 8, 5)
    ls.cross_entropy(z, y, epsilon=0.1)  # the lean path of small problems
    ls.cross_entropy_with_grad(z, y, epsilon=0.1, prior="others", weight=np.ones(5, np.float32))
    ls.cross_entropy_grad(z, y, epsilon=np.full(8, 0.1), ignore_index=0, reduction="sum")
    ls.cross_entropy(np.moveaxis(z[:, :, None], 1, 1), y[:, None], axis=1)
    assert small_calls == [False]
    assert numpy_calls == [True, True, False]


def test_threads_give_the_single_thread_result(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    z, y = make(rng, 203, 50)
    monkeypatch.setattr(_numpy_fast, "_BLOCK_BYTES", 1024)
    monkeypatch.setenv("LABELSMOOTH_NUM_THREADS", "1")
    single = ls.cross_entropy_with_grad(z, y, epsilon=0.1, reduction="none")
    monkeypatch.setattr(_numpy_fast, "_PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setenv("LABELSMOOTH_NUM_THREADS", "4")
    several = ls.cross_entropy_with_grad(z, y, epsilon=0.1, reduction="none")
    np.testing.assert_array_equal(single[0], several[0])
    np.testing.assert_array_equal(single[1], several[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_edge_rows(small_blocks: None, dtype: Any) -> None:
    z = np.array(
        [
            [0.0, 1.0, 2.0, 3.0],
            [np.nan, 1.0, 2.0, 3.0],  # NaN row
            [-np.inf, -np.inf, -np.inf, -np.inf],  # no finite logit
            [0.0, np.inf, 1.0, 2.0],  # +inf logit
            [-np.inf, 1.0, 2.0, -np.inf],  # -inf logits next to finite ones
            [5.0, 5.0, 5.0, 5.0],  # ties at the maximum
            [1e30, -1e30, 0.0, 1.0],  # huge spread
            [60.0, 0.0, 0.0, 0.0],  # dominated by one class
        ],
        dtype=dtype,
    )
    y = np.array([3, 0, 1, 2, 1, 0, 1, 0])
    for epsilon in (0.0, 0.1):
        for reduction in ("none", "mean"):
            check_against_generic(z, y, dtype, epsilon=epsilon, reduction=reduction)
    # -inf on a class without smoothing mass (weight 0) must not give 0 * inf.
    weight = np.array([0.0, 1.0, 1.0, 1.0], dtype=dtype)
    check_against_generic(z[4:5], np.array([1]), dtype, epsilon=0.1, weight=weight, reduction="none")


@pytest.mark.parametrize("shape", [(0, 5), (7, 1), (1, 9), (9,)])
def test_numpy_degenerate_shapes(shape: tuple, rng: np.random.Generator) -> None:
    z = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, shape[-1], shape[:-1])
    for reduction in ("mean", "sum", "none"):
        check_against_generic(z, y, epsilon=0.1, reduction=reduction)


def test_numpy_layouts(small_blocks: None, rng: np.random.Generator) -> None:
    # (N, C, d1, d2) with the class axis 1, as in PyTorch
    z = rng.standard_normal((3, 6, 5, 7)).astype(np.float32)
    y = rng.integers(0, 6, (3, 5, 7))
    check_against_generic(z, y, epsilon=0.1, axis=1, reduction="none")
    check_against_generic(z, y, epsilon=0.1, axis=1, weight=rng.uniform(0.5, 1.5, 6).astype(np.float32))
    # class axis first, a transposed and a strided view, Fortran order
    base = rng.standard_normal((40, 60)).astype(np.float32)
    check_against_generic(base, rng.integers(0, 40, 60), epsilon=0.1, axis=0)
    check_against_generic(base.T, rng.integers(0, 40, 60), epsilon=0.1)
    check_against_generic(base[::2, ::3], rng.integers(0, 20, 20), epsilon=0.1)
    check_against_generic(np.asfortranarray(base), rng.integers(0, 60, 40), epsilon=0.1)
    # batch axes that do not merge into one row axis
    z = rng.standard_normal((4, 8, 30, 5)).astype(np.float32).transpose(1, 0, 2, 3)
    check_against_generic(z, rng.integers(0, 5, (8, 4, 30)), epsilon=0.1, reduction="none")


def test_numpy_probability_targets(small_blocks: None, rng: np.random.Generator) -> None:
    z, _ = make(rng, 29, 17)
    q = rng.dirichlet(np.ones(17), size=29).astype(np.float32)
    for options in (
        {},
        {"epsilon": 0.1},
        {"epsilon": 0.2, "prior": "others"},
        {"epsilon": 0.1, "weight": rng.uniform(0.5, 1.5, 17).astype(np.float32)},
    ):
        check_against_generic(z, q, reduction="none", **options)
        check_against_generic(z, q, **options)


def test_numpy_half_precision_inputs(rng: np.random.Generator) -> None:
    z, y = make(rng, 20, 30, np.float16)
    (loss, grad), (loss_g, grad_g) = fast_and_generic(ls.cross_entropy_with_grad, z, y, epsilon=0.1)
    assert loss.dtype == grad.dtype == np.float16
    assert_same(loss, loss_g, np.float16)
    assert_same(grad, grad_g, np.float16)


@pytest.mark.parametrize("rows", [30, 1])  # one row: its transpose is a view of the logits
def test_inputs_untouched_and_read_only_accepted(small_blocks: None, rng: np.random.Generator, rows: int) -> None:
    z, y = make(rng, rows, 12)
    z[rows // 2, 3] = -np.inf
    weight = rng.uniform(0.5, 1.5, 12).astype(np.float32)
    epsilon = rng.uniform(0, 1, rows)
    arrays = [z, y, weight, epsilon]
    copies = [a.copy() for a in arrays]
    for a in arrays:
        a.flags.writeable = False
    _loss, grad = ls.cross_entropy_with_grad(z, y, epsilon=epsilon, weight=weight, ignore_index=int(y[0]))
    ls.cross_entropy(z, y, epsilon=epsilon, weight=weight)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)
    assert grad.flags.writeable and not np.shares_memory(grad, z)


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
@pytest.mark.parametrize("classes", [pytest.param(3000, marks=pytest.mark.slow), 10])  # blocked, transposed
def test_numpy_float32_within_an_ulp_of_the_exact_loss(rng: np.random.Generator, epsilon: float, classes: int) -> None:
    rows = 64
    z, y = make(rng, rows, classes)
    z[: rows // 2] *= 0.2
    z[: rows // 4, :] -= 40.0  # rows dominated by their label (tiny losses)
    z[np.arange(rows // 4), y[: rows // 4]] += 40.0
    z[rows // 2 : 3 * rows // 4] += 1e4  # large offset
    loss = ls.cross_entropy(z, y, epsilon=epsilon, reduction="none")
    exact, _ = reference(z, y, epsilon)
    ulps = np.abs(loss.astype(np.float64) - exact) / np.spacing(np.abs(exact).astype(np.float32))
    assert ulps.max() <= 1.0, ulps.max()


@pytest.mark.slow
def test_numpy_memory_stays_at_the_floor(rng: np.random.Generator) -> None:
    z, y = make(rng, 1024, 8192)
    ls.cross_entropy_with_grad(z, y, epsilon=0.1)  # warm-up
    for fn, limit in ((ls.cross_entropy, 0.05), (ls.cross_entropy_with_grad, 1.05)):
        tracemalloc.start()
        try:
            result = fn(z, y, epsilon=0.1)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        del result
        # Beyond the result: a few block-sized buffers per thread, never an N x K temporary.
        assert peak <= limit * z.nbytes + 8 * 2**20, (fn.__name__, peak / z.nbytes)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(0, 30),
    classes=st.integers(1, 40),
    dtype=st.sampled_from([np.float32, np.float64]),
    epsilon=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
    prior=st.sampled_from([None, "others", "array"]),
    weighted=st.booleans(),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    scale=st.sampled_from([0.1, 3.0, 100.0]),
    seed=st.integers(0, 2**16),
)
def test_numpy_matches_generic_property(
    rows: int,
    classes: int,
    dtype: Any,
    epsilon: float,
    prior: Any,
    weighted: bool,
    reduction: str,
    scale: float,
    seed: int,
) -> None:
    if prior == "others" and classes < 2:
        prior = None
    rng = np.random.default_rng(seed)
    z = (scale * rng.standard_normal((rows, classes))).astype(dtype)
    y = rng.integers(0, classes, rows)
    options: dict = {"epsilon": epsilon, "reduction": reduction}
    if prior == "array":
        options["prior"] = rng.dirichlet(np.ones(classes)).astype(dtype)
    elif prior is not None:
        options["prior"] = prior
    if weighted:
        options["weight"] = rng.uniform(0.1, 2.0, classes).astype(dtype)
    block_bytes = _numpy_fast._BLOCK_BYTES
    _numpy_fast._BLOCK_BYTES = 256
    try:
        check_against_generic(z, y, dtype, **options)
    finally:
        _numpy_fast._BLOCK_BYTES = block_bytes


# --- PyTorch ------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_numpy_matches_pytorch(threaded: None, rng: np.random.Generator) -> None:
    import torch
    import torch.nn.functional as F

    z, y = make(rng, 57, 300)
    weight = rng.uniform(0.5, 1.5, 300).astype(np.float32)
    y[3] = -100
    leaf = torch.tensor(z.astype(np.float64), requires_grad=True)
    expected = F.cross_entropy(
        leaf,
        torch.from_numpy(y),
        weight=torch.from_numpy(weight.astype(np.float64)),
        label_smoothing=0.1,
        ignore_index=-100,
    )
    expected.backward()
    loss, grad = ls.cross_entropy_with_grad(z, y, epsilon=0.1, weight=weight, ignore_index=-100)
    np.testing.assert_allclose(loss, expected.item(), rtol=2e-7)
    np.testing.assert_allclose(grad, leaf.grad.numpy(), rtol=1e-5, atol=1e-9)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
@pytest.mark.parametrize(
    "options", NUMPY_OPTION_SETS[:8], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain"
)
def test_torch_matches_generic(small_blocks: None, rng: np.random.Generator, options: dict) -> None:
    import torch

    z, y = make(rng, 37, 23)
    kwargs = materialise(options, rng, y, 23, np.float32)
    kwargs = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    zt, yt = torch.from_numpy(z), torch.from_numpy(y)
    for reduction in ("mean", "none"):
        (loss, grad), (loss_g, grad_g) = fast_and_generic(
            ls.cross_entropy_with_grad, zt, yt, reduction=reduction, **kwargs
        )
        assert isinstance(loss, torch.Tensor) and isinstance(grad, torch.Tensor)
        assert_same(loss.numpy(), loss_g.numpy(), np.float32)
        assert_same(grad.numpy(), grad_g.numpy(), np.float32)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_torch_dtypes_autograd_and_views(rng: np.random.Generator) -> None:
    import torch

    z, y = make(rng, 12, 9)
    yt = torch.from_numpy(y)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        zt = torch.from_numpy(z).to(dtype)
        (loss, grad), (loss_g, grad_g) = fast_and_generic(ls.cross_entropy_with_grad, zt, yt, epsilon=0.1)
        assert loss.dtype == grad.dtype == dtype
        torch.testing.assert_close(loss, loss_g)
        torch.testing.assert_close(grad, grad_g)
    # A tensor that requires a gradient goes through autograd (the generic path).
    leaf = torch.from_numpy(z).requires_grad_(True)
    ls.cross_entropy(leaf, yt, epsilon=0.1).backward()
    torch.testing.assert_close(leaf.grad, ls.cross_entropy_grad(torch.from_numpy(z), yt, epsilon=0.1))
    # (N, C, d) layout; the inputs stay untouched.
    z3 = torch.from_numpy(rng.standard_normal((4, 9, 6)).astype(np.float32))
    y3 = torch.from_numpy(rng.integers(0, 9, (4, 6)))
    before = z3.clone()
    (loss, grad), (loss_g, grad_g) = fast_and_generic(ls.cross_entropy_with_grad, z3, y3, epsilon=0.1, axis=1)
    torch.testing.assert_close(grad, grad_g)
    assert torch.equal(z3, before)


# --- JAX ----------------------------------------------------------------------------------


def jax_call(jit: bool, fn: Callable, z: Any, y: Any, arrays: dict, static: dict) -> Any:
    import jax

    def call(z: Any, y: Any, arrays: dict) -> Any:
        return fn(z, y, **arrays, **static)

    return (jax.jit(call) if jit else call)(z, y, arrays)


@pytest.mark.skipif(not HAS_JAX, reason="needs jax")
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    "options", JAX_OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain"
)
@pytest.mark.slow
def test_jax_float32_kernel_matches_the_float64_oracle(rng: np.random.Generator, jit: bool, options: dict) -> None:
    """The JAX kernel as JAX users run it (float32, x64 off): within float32 rounding of the oracle."""
    import jax.numpy as jnp

    z, y = make(rng, 19, 13)
    kwargs = materialise(options, rng, y, 13, np.float32)
    arrays = {k: jnp.asarray(v) for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    static = {k: v for k, v in kwargs.items() if k not in arrays}
    reductions = ("mean", "none")

    def every_reduction(z: Any, y: Any, **options: Any) -> tuple:
        # One program (one compilation under jit) for both reductions, with and without the gradient.
        return tuple(
            (ls.cross_entropy_with_grad(z, y, reduction=r, **options), ls.cross_entropy(z, y, reduction=r, **options))
            for r in reductions
        )

    results = jax_call(jit, every_reduction, jnp.asarray(z), jnp.asarray(y), arrays, static)
    oracle_options = {k: v.astype(np.float64) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    for reduction, ((loss, grad), loss_only) in zip(reductions, results):
        expected_loss, expected_grad = cross_entropy_rows(z, y, reduction=reduction, **oracle_options)
        unit = 1.0 if reduction == "none" else 1.0 / 19
        assert_same(loss, np.asarray(expected_loss, np.float32), np.float32)
        assert_same(loss_only, np.asarray(expected_loss, np.float32), np.float32)
        assert_same(grad, np.asarray(expected_grad, np.float32), np.float32, unit=unit)


@pytest.mark.skipif(not HAS_JAX, reason="needs jax")
@pytest.mark.parametrize(
    ("jit", "blocks"), [(False, False), (True, False), (True, True)], ids=["eager", "jit", "jit-blocks"]
)
@pytest.mark.slow
def test_jax_edge_rows_and_dominated_rows(jit: bool, blocks: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows without a finite maximum, and rows dominated by one class; with ``blocks`` the
    sums are taken over blocks of 2 classes, as over rows longer than 32768 classes."""
    import jax.numpy as jnp

    if blocks:
        monkeypatch.setattr(_jax_fast, "_ROW_TILE", 2)
        monkeypatch.setattr(_jax_fast, "_MIN_BLOCK", 2)

    z = np.array(
        [
            [0.0, 1.0, 2.0, 3.0],
            [np.nan, 1.0, 2.0, 3.0],
            [-np.inf, -np.inf, -np.inf, -np.inf],
            [0.0, np.inf, 1.0, 2.0],
            [-np.inf, 1.0, 2.0, -np.inf],
            [-np.inf, -np.inf, 1.0, 2.0],
            [5.0, 5.0, 5.0, 5.0],
        ],
        dtype=np.float32,
    )
    y = np.array([3, 0, 1, 2, 1, 2, 0])
    for epsilon in (0.0, 0.1):
        static = {"epsilon": epsilon, "reduction": "none"}
        loss, grad = jax_call(jit, ls.cross_entropy_with_grad, jnp.asarray(z), jnp.asarray(y), {}, static)
        # The dense float64 oracle; the row with a +inf logit is NaN throughout, as
        # docs/errors.md states (the oracle's log_softmax gives inf - inf there only in part).
        expected_loss, expected_grad = reference(z.astype(np.float64), y, epsilon)
        expected_loss[3], expected_grad[3] = np.nan, np.nan
        assert_same(loss, expected_loss.astype(np.float32), np.float32)
        assert_same(grad, expected_grad.astype(np.float32), np.float32, unit=1.0)
    # Rows dominated by their label: the loss keeps its relative precision.
    rng = np.random.default_rng(7)
    dominated = rng.standard_normal((6, 50)).astype(np.float32)
    labels = rng.integers(0, 50, 6)
    dominated[np.arange(6), labels] += np.float32(25.0)
    dominated[0, (labels[0] + 1) % 50] = dominated[0, labels[0]]  # a tie: not dominated
    for epsilon in (0.0, 1e-6):
        loss = jax_call(
            jit,
            ls.cross_entropy,
            jnp.asarray(dominated),
            jnp.asarray(labels),
            {},
            {"epsilon": epsilon, "reduction": "none"},
        )
        exact, _ = reference(dominated, labels, epsilon)
        np.testing.assert_allclose(np.asarray(loss, np.float64), exact, rtol=2e-6)


@pytest.mark.skipif(not HAS_JAX, reason="needs jax")
@pytest.mark.slow
def test_jax_transforms_through_the_fast_path(rng: np.random.Generator) -> None:
    import jax
    import jax.numpy as jnp

    z, y = make(rng, 10, 7)
    zj, yj = jnp.asarray(z), jnp.asarray(y)
    autodiff = jax.jit(jax.grad(lambda a: ls.cross_entropy(a, yj, epsilon=0.1)))(zj)
    analytic = ls.cross_entropy_grad(zj, yj, epsilon=0.1)
    np.testing.assert_allclose(np.asarray(autodiff), np.asarray(analytic), rtol=1e-5, atol=1e-8)
    _, exact_grad = reference(z, y, 0.1)
    np.testing.assert_allclose(np.asarray(analytic), exact_grad / 10, rtol=1e-5, atol=1e-8)
    per_row = jax.vmap(lambda a, b: ls.cross_entropy(a, b, epsilon=0.1))(zj, yj)
    exact, _ = reference(z, y, 0.1)
    np.testing.assert_allclose(np.asarray(per_row), exact, rtol=4e-7)
