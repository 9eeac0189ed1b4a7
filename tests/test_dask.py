"""Dask: every public function builds a lazy graph and gives the reference values.

References are independent of labelsmooth: ``np.eye`` for one-hot rows, ``scipy.special``
for the softmax family, the smoothing formula written out, and PyTorch's
``cross_entropy`` (float64) with autograd for the loss and its gradient. Inputs are
chunked along the batch axis, along the class axis (the smoothing sums then run across
chunks of the vocabulary), and along both. Everything runs on the default (threaded)
scheduler and on a two-process ``LocalCluster`` on the loopback interface.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
special = pytest.importorskip("scipy.special")
torch = pytest.importorskip("torch")

from _formulas import cross_entropy_rows  # noqa: E402
from conftest import _NoCompute  # noqa: E402

import labelsmooth as ls  # noqa: E402

N, K = 12, 10
EPSILON = 0.2
CHUNKINGS = {
    "batch": (5, K),  # rows split, each chunk holds the whole vocabulary
    "classes": (N, 3),  # the vocabulary split into 4 chunks
    "both": (5, 4),
}
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dask_larger_than_memory.py"


# ---------------------------------------------------------------- independent references


def torch_loss_and_grad(
    logits: np.ndarray, targets: np.ndarray, *, axis: int = -1, **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's loss (class axis 1) and its autograd gradient, in float64."""
    z = torch.tensor(np.moveaxis(logits, axis, 1), dtype=torch.float64, requires_grad=True)
    t = torch.from_numpy(targets if targets.dtype.kind in "iu" else np.moveaxis(targets, axis, 1).copy())
    if "weight" in options:
        options["weight"] = torch.from_numpy(options["weight"])
    loss = torch.nn.functional.cross_entropy(z, t, **options)
    loss.backward(torch.ones_like(loss))
    return loss.detach().numpy(), np.moveaxis(z.grad.numpy(), 1, axis)


def formula_loss(logits: np.ndarray, smoothed: np.ndarray, reduction: str) -> np.ndarray:
    """``-sum_k q'_k log p_k`` for the rows ``q'`` (the dense oracle, ``tests/_formulas.py``)."""
    return cross_entropy_rows(logits, smoothed, reduction=reduction)[0]


def formula_grad(logits: np.ndarray, smoothed: np.ndarray, reduction: str) -> np.ndarray:
    """Its gradient ``p - q'`` (divided by N for "mean")."""
    return cross_entropy_rows(logits, smoothed, reduction=reduction)[1]


@pytest.fixture
def data(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "logits": rng.normal(scale=3.0, size=(N, K)),
        "labels": rng.integers(0, K, size=N),
        "probs": rng.dirichlet(np.ones(K), size=N),
        "weight": rng.uniform(0.2, 2.0, size=K),
        "prior": rng.dirichlet(np.ones(K)),
        "eps": rng.uniform(0.0, 0.5, size=N),
    }


def chunked(a: np.ndarray, chunks: tuple[int, int]) -> Any:
    return da.from_array(a, chunks=chunks[: a.ndim] if a.ndim == 2 else (chunks[0],))


def lazily(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with a scheduler that fails on any computation."""
    with dask.config.set(scheduler=_NoCompute()):
        result = fn(*args, **kwargs)
    for part in result if isinstance(result, tuple) else (result,):
        assert isinstance(part, da.Array), type(part)
    return result


def computed(result: Any) -> Any:
    return dask.compute(result)[0]


# ---------------------------------------------------------------- softmax family, targets


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_softmax_family_lazy_and_equal_to_scipy(data: dict[str, np.ndarray], chunking: str) -> None:
    z = data["logits"]
    dz = chunked(z, CHUNKINGS[chunking])
    np.testing.assert_allclose(computed(lazily(ls.logsumexp, dz)), special.logsumexp(z, axis=-1), rtol=1e-13)
    np.testing.assert_allclose(
        computed(lazily(ls.logsumexp, dz, keepdims=True)), special.logsumexp(z, axis=-1, keepdims=True), rtol=1e-13
    )
    np.testing.assert_allclose(
        computed(lazily(ls.log_softmax, dz)), special.log_softmax(z, axis=-1), rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(computed(lazily(ls.softmax, dz)), special.softmax(z, axis=-1), rtol=1e-12, atol=1e-16)
    # axis=0: the reduction runs across the row chunks instead.
    np.testing.assert_allclose(computed(lazily(ls.logsumexp, dz, axis=0)), special.logsumexp(z, axis=0), rtol=1e-13)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_targets_lazy_and_equal_to_formula(data: dict[str, np.ndarray], chunking: str) -> None:
    y, q = data["labels"], data["probs"]
    dy, dq = chunked(y, CHUNKINGS[chunking]), chunked(q, CHUNKINGS[chunking])
    eye = np.eye(K)[y]
    np.testing.assert_array_equal(computed(lazily(ls.one_hot, dy, K)), eye)
    np.testing.assert_array_equal(computed(lazily(ls.one_hot, dy, K, axis=0)), eye.T)
    np.testing.assert_allclose(
        computed(lazily(ls.smooth_labels, dq, EPSILON)), (1 - EPSILON) * q + EPSILON / K, rtol=1e-14
    )
    np.testing.assert_allclose(
        computed(lazily(ls.smooth_labels, dq, EPSILON, prior="others")),
        (1 - EPSILON) * q + EPSILON * (1 - q) / (K - 1),
        rtol=1e-14,
    )
    prior = data["prior"]
    np.testing.assert_allclose(
        computed(lazily(ls.smooth_labels, dq, EPSILON, prior=da.from_array(prior, chunks=CHUNKINGS[chunking][1]))),
        (1 - EPSILON) * q + EPSILON * prior,
        rtol=1e-14,
    )
    np.testing.assert_allclose(
        computed(lazily(ls.soft_targets, dy, K, epsilon=EPSILON)), (1 - EPSILON) * eye + EPSILON / K, rtol=1e-14
    )
    eps = data["eps"]
    np.testing.assert_allclose(
        computed(lazily(ls.soft_targets, dy, K, epsilon=chunked(eps, CHUNKINGS[chunking]), prior="others")),
        (1 - eps[:, None]) * eye + eps[:, None] * (1 - eye) / (K - 1),
        rtol=1e-14,
    )


# ---------------------------------------------------------------- losses and gradients

LOSS_CASES = {
    "plain": {},
    "smoothed": {"epsilon": EPSILON},
    "weighted": {"epsilon": EPSILON, "weight": True},
    "ignored": {"epsilon": EPSILON, "ignore_index": 3},
    "weighted_ignored": {"epsilon": EPSILON, "weight": True, "ignore_index": 3},
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", LOSS_CASES)
@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_label_losses_equal_torch(data: dict[str, np.ndarray], chunking: str, case: str, reduction: str) -> None:
    chunks = CHUNKINGS[chunking]
    z, y = data["logits"], data["labels"]
    options = dict(LOSS_CASES[case], reduction=reduction)
    torch_options = {"reduction": reduction, "label_smoothing": options.get("epsilon", 0.0)}
    if options.pop("weight", False):
        options["weight"] = da.from_array(data["weight"], chunks=chunks[1])
        torch_options["weight"] = data["weight"]
    if "ignore_index" in options:
        torch_options["ignore_index"] = options["ignore_index"]
    ref_loss, ref_grad = torch_loss_and_grad(z, y, **torch_options)
    dz, dy = chunked(z, chunks), chunked(y, chunks)

    loss = lazily(ls.cross_entropy, dz, dy, **options)
    grad = lazily(ls.cross_entropy_grad, dz, dy, **options)
    both = lazily(ls.cross_entropy_with_grad, dz, dy, **options)
    assert grad.chunks == dz.chunks
    loss_v, grad_v, (loss_w, grad_w) = dask.compute(loss, grad, both)
    for value in (loss_v, loss_w):
        np.testing.assert_allclose(value, ref_loss, rtol=1e-12)
    for value in (grad_v, grad_w):
        np.testing.assert_allclose(value, ref_grad, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_probability_targets_equal_torch(data: dict[str, np.ndarray], chunking: str, reduction: str) -> None:
    chunks = CHUNKINGS[chunking]
    z, q = data["logits"], data["probs"]
    ref_loss, ref_grad = torch_loss_and_grad(z, q, reduction=reduction, label_smoothing=EPSILON, weight=data["weight"])
    dz, dq = chunked(z, chunks), chunked(q, chunks)
    weight = da.from_array(data["weight"], chunks=chunks[1])
    loss, grad = dask.compute(
        *lazily(ls.cross_entropy_with_grad, dz, dq, epsilon=EPSILON, weight=weight, reduction=reduction)
    )
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_priors_and_per_sample_epsilon_equal_formula(data: dict[str, np.ndarray], chunking: str) -> None:
    """prior="others", an array prior and per-sample epsilon, all as chunked Dask arrays."""
    chunks = CHUNKINGS[chunking]
    z, y, eps, prior = data["logits"], data["labels"], data["eps"], data["prior"]
    eye = np.eye(K)[y]
    dz, dy = chunked(z, chunks), chunked(y, chunks)
    cases = [
        ({"prior": "others"}, (1 - EPSILON) * eye + EPSILON * (1 - eye) / (K - 1), EPSILON),
        ({"prior": da.from_array(prior, chunks=chunks[1])}, (1 - EPSILON) * eye + EPSILON * prior, EPSILON),
        ({}, (1 - eps[:, None]) * eye + eps[:, None] / K, chunked(eps, chunks)),
    ]
    for options, smoothed, epsilon in cases:
        for reduction in ("mean", "none"):
            loss, grad = lazily(ls.cross_entropy_with_grad, dz, dy, epsilon=epsilon, reduction=reduction, **options)
            loss, grad = dask.compute(loss, grad)
            np.testing.assert_allclose(loss, formula_loss(z, smoothed, reduction), rtol=1e-12)
            np.testing.assert_allclose(grad, formula_grad(z, smoothed, reduction), rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_where_mask_equals_slicing_the_class_out(data: dict[str, np.ndarray], chunking: str) -> None:
    chunks = CHUNKINGS[chunking]
    z, y = data["logits"].copy(), data["labels"]
    keep = np.ones(K, dtype=bool)
    keep[[2, 7]] = False
    y = np.where(keep[y], y, 0)
    z[:, 7] = -np.inf  # a masked class may hold -inf
    kept = np.flatnonzero(keep)
    y_kept = np.searchsorted(kept, y)
    ref_loss, ref_grad = torch_loss_and_grad(z[:, kept], y_kept, label_smoothing=EPSILON)
    where = da.from_array(np.broadcast_to(keep, (N, K)).copy(), chunks=chunks)
    loss, grad = dask.compute(
        *lazily(ls.cross_entropy_with_grad, chunked(z, chunks), chunked(y, chunks), epsilon=EPSILON, where=where)
    )
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad[:, kept], ref_grad, rtol=1e-11, atol=1e-15)
    np.testing.assert_array_equal(grad[:, ~keep], 0.0)


def test_class_axis_one_in_three_dimensions_chunked_along_classes(rng: np.random.Generator) -> None:
    """PyTorch's (N, C, d) layout with the class axis itself split into chunks."""
    z = rng.normal(size=(4, 9, 5))
    y = rng.integers(0, 9, size=(4, 5))
    ref_loss, ref_grad = torch_loss_and_grad(z, y, axis=1, label_smoothing=EPSILON)
    dz = da.from_array(z, chunks=(2, 4, 3))
    dy = da.from_array(y, chunks=(2, 3))
    loss, grad = dask.compute(*lazily(ls.cross_entropy_with_grad, dz, dy, epsilon=EPSILON, axis=1))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-15)


def test_float32_stays_float32_and_chunks_are_kept(data: dict[str, np.ndarray]) -> None:
    z = data["logits"].astype(np.float32)
    dz = da.from_array(z, chunks=(5, 3))
    loss, grad = lazily(ls.cross_entropy_with_grad, dz, chunked(data["labels"], (5, 3)), epsilon=EPSILON)
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    assert grad.chunks == dz.chunks
    ref_loss, ref_grad = torch_loss_and_grad(z.astype(np.float64), data["labels"], label_smoothing=EPSILON)
    loss, grad = dask.compute(loss, grad)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-8)


def test_invalid_values_poison_the_result_instead_of_computing(data: dict[str, np.ndarray]) -> None:
    """Lazy arrays cannot be validated: bad labels / epsilon give NaN, not a number."""
    z, y = data["logits"], data["labels"].copy()
    y[4] = K + 3
    dz, dy = chunked(z, (5, 3)), chunked(y, (5, 3))
    per_sample, grad = dask.compute(*lazily(ls.cross_entropy_with_grad, dz, dy, epsilon=EPSILON, reduction="none"))
    assert np.isnan(per_sample[4]) and np.isnan(grad[4]).all()
    assert np.isfinite(np.delete(per_sample, 4)).all()
    assert np.isnan(computed(lazily(ls.cross_entropy, dz, dy)))
    assert np.isnan(computed(lazily(ls.one_hot, dy, K))[4]).all()
    eps = data["eps"].copy()
    eps[2] = 1.5
    loss = computed(
        lazily(ls.cross_entropy, dz, chunked(data["labels"], (5, 3)), epsilon=chunked(eps, (5, 3)), reduction="none")
    )
    assert np.isnan(loss[2]) and np.isfinite(np.delete(loss, 2)).all()


def test_inputs_are_not_computed_nor_modified(data: dict[str, np.ndarray]) -> None:
    z = data["logits"]
    original = z.copy()
    dz = da.from_array(z, chunks=(5, 3))
    grad = lazily(ls.cross_entropy_grad, dz, chunked(data["labels"], (5, 3)), epsilon=EPSILON)
    computed(grad)
    np.testing.assert_array_equal(z, original)
    np.testing.assert_array_equal(computed(dz), original)


# ---------------------------------------------------------------- distributed LocalCluster

CLUSTER_TIMEOUT = 30  # seconds, for each result and for the cluster's start


@pytest.fixture(scope="module")
def client() -> Any:
    """Two single-threaded worker processes on the loopback interface, for this module."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit="1GB",
            timeout=CLUSTER_TIMEOUT,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False, timeout=CLUSTER_TIMEOUT) as client,
    ):
        yield client


def on_cluster(client: Any, *collections: Any) -> list[Any]:
    futures = client.compute(list(collections))
    return [future.result(timeout=CLUSTER_TIMEOUT) for future in futures]


@pytest.mark.slow
@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_losses_on_local_cluster_equal_torch(client: Any, data: dict[str, np.ndarray], chunking: str) -> None:
    chunks = CHUNKINGS[chunking]
    z, y = data["logits"], data["labels"]
    weight = da.from_array(data["weight"], chunks=chunks[1])
    options = {"epsilon": EPSILON, "weight": weight, "ignore_index": 3}
    dz, dy = chunked(z, chunks), chunked(y, chunks)
    loss, (loss2, grad) = (
        lazily(ls.cross_entropy, dz, dy, **options),
        lazily(ls.cross_entropy_with_grad, dz, dy, **options),
    )
    loss, loss2, grad = on_cluster(client, loss, loss2, grad)
    ref_loss, ref_grad = torch_loss_and_grad(z, y, label_smoothing=EPSILON, weight=data["weight"], ignore_index=3)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(loss2, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-15)


@pytest.mark.slow
def test_softmax_family_and_targets_on_local_cluster(client: Any, data: dict[str, np.ndarray]) -> None:
    z, y = data["logits"], data["labels"]
    dz, dy = chunked(z, (5, 3)), chunked(y, (5, 3))
    results = on_cluster(
        client,
        lazily(ls.logsumexp, dz),
        lazily(ls.log_softmax, dz),
        lazily(ls.softmax, dz),
        lazily(ls.one_hot, dy, K),
        lazily(ls.soft_targets, dy, K, epsilon=EPSILON),
        lazily(ls.smooth_labels, lazily(ls.one_hot, dy, K), EPSILON, prior="others"),
    )
    eye = np.eye(K)[y]
    expected = [
        special.logsumexp(z, axis=-1),
        special.log_softmax(z, axis=-1),
        special.softmax(z, axis=-1),
        eye,
        (1 - EPSILON) * eye + EPSILON / K,
        (1 - EPSILON) * eye + EPSILON * (1 - eye) / (K - 1),
    ]
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["blocks", "graph"])
def test_larger_than_memory_example_small_mode(tmp_path: Path, strategy: str) -> None:
    """The example's --small run on its own LocalCluster equals PyTorch on the same arrays."""
    pytest.importorskip("distributed")
    out = tmp_path / "result.json"
    completed = subprocess.run(
        [sys.executable, str(EXAMPLE), "--small", "--no-progress", "--strategy", strategy, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(out.read_text())

    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        from dask_larger_than_memory import make_inputs
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    logits, labels = dask.compute(
        *make_inputs(result["rows"], result["classes"], result["chunk_rows"], result["seed"]), scheduler="sync"
    )
    assert logits.shape == (result["rows"], result["classes"]) and logits.dtype == np.float32
    loss, grad = torch_loss_and_grad(logits.astype(np.float64), labels, label_smoothing=result["epsilon"])
    assert result["loss"] == pytest.approx(float(loss), rel=1e-6)
    assert result["grad_norm"] == pytest.approx(float(np.linalg.norm(grad)), rel=1e-5)
    assert result["grad_abs_mean"] == pytest.approx(float(np.mean(np.abs(grad))), rel=1e-5)
    assert result["grad_max"] == pytest.approx(float(grad.max()), rel=1e-5)
    assert result["grad_min"] == pytest.approx(float(grad.min()), rel=1e-5)
    # Each row of p - q' sums to zero: only float32 rounding remains.
    assert abs(result["max_abs_row_sum"]) < 1e-6 / result["rows"]
