"""The linear layer's smoothed cross-entropy, block by block, against the materialized logits.

Values and the three gradients are compared with PyTorch's float64 autograd of
``F.cross_entropy(hidden @ W.T + b, ...)`` where PyTorch has the option, and otherwise with
``labelsmooth.cross_entropy`` of the materialized logits (an independent path: the whole
logits, then the plain loss and its gradient, chained by hand), over chunk sizes that
divide the rows and that do not.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from _formulas import cross_entropy_rows

import labelsmooth as ls
from labelsmooth._linear import default_chunk_size, mean_denominators

torch = pytest.importorskip("torch")
F = torch.nn.functional
ltorch = pytest.importorskip("labelsmooth.torch")

N, D, K = 23, 6, 11
CHUNKS = [1, 5, 23, None]


@pytest.fixture
def data() -> dict:
    rng = np.random.default_rng(20240611)
    labels = rng.integers(0, K, size=N)
    labels[[2, 7, 8]] = -100
    return {
        "hidden": rng.normal(size=(N, D)),
        "classifier": rng.normal(size=(K, D)),
        "bias": rng.normal(size=K),
        "labels": labels,
        "weight": rng.uniform(0.5, 2.0, size=K),
    }


def _torch_reference(data: dict, *, bias: bool = True, reduction: str = "mean", **options) -> tuple:
    """PyTorch float64 autograd of the materialized logits: ``(loss, (grad_h, grad_W, grad_b))``."""
    h, w = (torch.tensor(data[name], requires_grad=True) for name in ("hidden", "classifier"))
    b = torch.tensor(data["bias"], requires_grad=True) if bias else None
    if "weight" in options:
        options["weight"] = torch.tensor(options["weight"])
    logits = F.linear(h, w, b)
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), torch.tensor(data["labels"]).reshape(-1), reduction=reduction, **options
    )
    if reduction == "none":
        loss = loss.reshape(data["labels"].shape)
    loss.sum().backward()
    grads = (h.grad.numpy(), w.grad.numpy(), None if b is None else b.grad.numpy())
    return loss.detach().numpy(), grads


def _assert_all_close(ours: tuple, expected: tuple, rtol: float = 1e-12, atol: float = 1e-13) -> None:
    loss, grads = ours
    np.testing.assert_allclose(loss, expected[0], rtol=rtol, atol=atol)
    for mine, theirs, name in zip(grads, expected[1], ("hidden", "classifier", "bias")):
        if theirs is None:
            assert mine is None, name
        else:
            np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"label_smoothing": 0.1},
        {"label_smoothing": 0.2, "weight": "weight"},
        {"label_smoothing": 0.3, "ignore_index": -100},
        {"label_smoothing": 0.1, "weight": "weight", "ignore_index": -100},
    ],
    ids=str,
)
def test_matches_torch_autograd(data: dict, options: dict, reduction: str, chunk_size) -> None:
    theirs = {name: data[value] if value == "weight" else value for name, value in options.items()}
    if "ignore_index" not in theirs:
        data["labels"][data["labels"] < 0] = 1
    expected = _torch_reference(data, reduction=reduction, **theirs)
    ours = dict(theirs)
    ours["epsilon"] = ours.pop("label_smoothing", 0.0)
    result = ls.linear_cross_entropy_with_grad(
        data["hidden"], data["classifier"], data["labels"], bias=data["bias"], reduction=reduction,
        chunk_size=chunk_size, **ours,
    )  # fmt: skip
    _assert_all_close(result, expected)
    loss = ls.linear_cross_entropy(
        data["hidden"], data["classifier"], data["labels"], bias=data["bias"], reduction=reduction,
        chunk_size=chunk_size, **ours,
    )  # fmt: skip
    np.testing.assert_allclose(loss, expected[0], rtol=1e-12, atol=1e-13)


def test_without_bias_and_with_batch_dimensions(data: dict) -> None:
    """``hidden`` of shape (..., d): the rows of every batch dimension, blocks across them."""
    shaped = {**data, "hidden": data["hidden"][:21].reshape(3, 7, D), "labels": data["labels"][:21].reshape(3, 7)}
    for reduction in ("mean", "none"):
        expected = _torch_reference(shaped, bias=False, reduction=reduction, label_smoothing=0.1, ignore_index=-100)
        result = ls.linear_cross_entropy_with_grad(
            shaped["hidden"], data["classifier"], shaped["labels"], epsilon=0.1, ignore_index=-100,
            reduction=reduction, chunk_size=4,
        )  # fmt: skip
        _assert_all_close(result, expected)
        assert result[1][0].shape == (3, 7, D) and result[1][2] is None


def test_per_sample_epsilon_against_the_written_out_definition(data: dict) -> None:
    """``loss_i = (1 - eps_i) (-log p_{y_i}) + eps_i mean_k (-log p_k)``, differentiated by autograd."""
    data["labels"][data["labels"] < 0] = 0
    epsilon = np.linspace(0.0, 0.5, N)
    h, w, b = (torch.tensor(data[name], requires_grad=True) for name in ("hidden", "classifier", "bias"))
    log_p = torch.log_softmax(F.linear(h, w, b), dim=-1)
    eps = torch.tensor(epsilon)
    rows = -(1 - eps) * log_p[torch.arange(N), torch.tensor(data["labels"])] - eps * log_p.mean(-1)
    rows.mean().backward()
    expected = (rows.mean().detach().numpy(), (h.grad.numpy(), w.grad.numpy(), b.grad.numpy()))
    for chunk_size in (1, 4, None):
        result = ls.linear_cross_entropy_with_grad(
            data["hidden"], data["classifier"], data["labels"], bias=data["bias"], epsilon=epsilon,
            chunk_size=chunk_size,
        )  # fmt: skip
        _assert_all_close(result, expected)


def _materialized(data: dict, **options) -> tuple:
    """``labelsmooth.cross_entropy`` of the whole logits, its gradient chained to the three inputs."""
    h, w, b = data["hidden"], data["classifier"], data["bias"]
    loss, grad = ls.cross_entropy_with_grad(h @ w.T + b, data["labels"], **options)
    return loss, (grad @ w, grad.T @ h, grad.sum(axis=0))


@pytest.mark.parametrize("chunk_size", [1, 6, None])
@pytest.mark.parametrize(
    "options",
    [
        {"prior": "others", "epsilon": 0.2},
        {"prior": "array", "epsilon": 0.3, "weight": "weight", "ignore_index": -100},
        {"prior": "rows", "epsilon": 0.1, "ignore_index": -100},
        {"prior": "others", "epsilon": "rows", "ignore_index": -100, "reduction": "sum"},
    ],
    ids=str,
)
def test_priors_against_the_materialized_logits(data: dict, options: dict, chunk_size) -> None:
    rng = np.random.default_rng(3)
    options = dict(options)
    if options["prior"] == "array":
        options["prior"] = rng.dirichlet(np.ones(K))
    elif options["prior"] == "rows":
        options["prior"] = rng.dirichlet(np.ones(K), size=N)
    if options["epsilon"] == "rows":
        options["epsilon"] = rng.uniform(0.0, 0.4, size=N)
    options["weight"] = data["weight"] if "weight" in options else None
    if "ignore_index" not in options:
        data["labels"][data["labels"] < 0] = 1
    expected = _materialized(data, **options)
    result = ls.linear_cross_entropy_with_grad(
        data["hidden"], data["classifier"], data["labels"], bias=data["bias"], chunk_size=chunk_size, **options
    )
    _assert_all_close(result, expected)


@pytest.mark.parametrize("chunk_size", [1, 4, None])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "options",
    [
        {"z_loss": 1e-2, "epsilon": 0.1, "weight": "weight", "ignore_index": -100},
        {"softcap": 3.0, "epsilon": 0.2, "ignore_index": -100},
        {"z_loss": 1e-3, "softcap": 2.0, "prior": "others", "epsilon": 0.1, "ignore_index": -100},
    ],
    ids=str,
)
def test_z_loss_and_softcap_against_the_materialized_logits(data: dict, options: dict, reduction: str, chunk_size):
    """The z-loss's own normaliser (counted rows) and the capped logits' chain rule, block by block."""
    options = {**options, "reduction": reduction}
    if "weight" in options:
        options["weight"] = data["weight"]
    expected = _materialized(data, **options)
    result = ls.linear_cross_entropy_with_grad(
        data["hidden"], data["classifier"], data["labels"], bias=data["bias"], chunk_size=chunk_size, **options
    )
    _assert_all_close(result, expected)


def test_torch_module_z_loss_and_softcap(data: dict) -> None:
    options = {"z_loss": 1e-2, "softcap": 3.0, "ignore_index": -100}
    h, w, b = (torch.tensor(data[name], requires_grad=True) for name in ("hidden", "classifier", "bias"))
    loss = ltorch.LinearCrossEntropyLoss(label_smoothing=0.1, chunk_size=6, **options)(
        h, w, torch.tensor(data["labels"]), b
    )
    loss.backward()
    expected = _materialized(data, epsilon=0.1, **options)
    _assert_all_close((loss.detach().numpy(), (h.grad.numpy(), w.grad.numpy(), b.grad.numpy())), expected)


def test_uniform_prior_array_is_torch_label_smoothing(data: dict) -> None:
    expected = _torch_reference(data, label_smoothing=0.25, ignore_index=-100)
    result = ls.linear_cross_entropy_with_grad(
        data["hidden"], data["classifier"], data["labels"], bias=data["bias"], epsilon=0.25,
        prior=np.full(K, 1.0 / K), ignore_index=-100, chunk_size=3,
    )  # fmt: skip
    _assert_all_close(result, expected)


def test_mean_denominators_are_pytorchs_normalisers(data: dict) -> None:
    labels, weight = data["labels"], data["weight"]
    counted = labels != -100
    loss_d, z_d = mean_denominators(labels, weight, -100, K, ls._backend.namespace_of(labels), np.float64)
    assert float(loss_d) == pytest.approx(weight[labels[counted]].sum(), rel=1e-15)
    assert float(z_d) == counted.sum()
    assert mean_denominators(labels, None, None, K, ls._backend.namespace_of(labels), np.float64) == (N, N)


def test_all_rows_ignored_is_nan_for_mean(data: dict) -> None:
    labels = np.full(N, -100)
    loss = ls.linear_cross_entropy(data["hidden"], data["classifier"], labels, ignore_index=-100, chunk_size=4)
    assert np.isnan(loss)
    total = ls.linear_cross_entropy(
        data["hidden"], data["classifier"], labels, ignore_index=-100, reduction="sum", chunk_size=4
    )
    assert total == 0.0


def test_default_chunk_size() -> None:
    assert default_chunk_size(16, 10, 4) == 16  # small logits: one block
    for rows, classes in [(4096, 32000), (1024, 128000), (100_000, 50_000), (64, 1_000_000)]:
        chunk = default_chunk_size(rows, classes, 4)
        assert 1 <= chunk <= max(1, rows // 16) and chunk * classes * 4 <= 32 << 20
        # Two arrays of a block's size alive at once (no in-place work): half the share.
        chunk = default_chunk_size(rows, classes, 4, copies=2)
        assert 1 <= chunk <= max(1, rows // 32) and chunk * classes * 4 <= 32 << 20


def _backend_case(data: dict) -> tuple:
    labels = data["labels"].copy()
    args = (data["hidden"], data["classifier"], labels)
    options = {"bias": data["bias"], "epsilon": 0.1, "weight": data["weight"], "ignore_index": -100, "chunk_size": 5}
    return args, options, ls.linear_cross_entropy_with_grad(*args, **options)


def _to_numpy(x):
    return None if x is None else np.asarray(x)


@pytest.mark.parametrize("library", ["array_api_strict", "torch", "dask"])
def test_other_libraries_give_numpys_results(data: dict, library: str) -> None:
    module = pytest.importorskip({"dask": "dask.array"}.get(library, library))
    (h, w, y), options, (loss, grads) = _backend_case(data)

    def convert(a):
        if library == "torch":
            return torch.from_numpy(a.copy())
        if library == "dask":
            return module.from_array(a, chunks=(7,) * (a.ndim == 1) or (7, 3))
        return module.asarray(a)

    converted = {name: convert(v) if isinstance(v, np.ndarray) else v for name, v in options.items()}
    result = ls.linear_cross_entropy_with_grad(convert(h), convert(w), convert(y), **converted)
    if library == "dask":
        result = module.compute(result)[0]
    got_loss, got_grads = result
    np.testing.assert_allclose(_to_numpy(got_loss), loss, rtol=1e-13)
    for mine, theirs in zip(got_grads, grads):
        np.testing.assert_allclose(_to_numpy(mine), theirs, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("jit", [False, True])
def test_jax_gives_numpys_results(data: dict, jit: bool) -> None:
    """JAX eager and under jax.jit (the block loop unrolled over static shapes); float32 here (x64 off)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    (h, w, y), options, (loss, grads) = _backend_case(data)
    converted = {name: jnp.asarray(v, jnp.float32) for name, v in options.items() if isinstance(v, np.ndarray)}
    static = {name: v for name, v in options.items() if name not in converted}

    def evaluate(h, w, y, converted):
        return ls.linear_cross_entropy_with_grad(h, w, y, **converted, **static)

    function = jax.jit(evaluate) if jit else evaluate
    got_loss, got_grads = function(jnp.asarray(h, jnp.float32), jnp.asarray(w, jnp.float32), jnp.asarray(y), converted)
    np.testing.assert_allclose(np.asarray(got_loss), loss, rtol=1e-5)
    for mine, theirs in zip(got_grads, grads):
        np.testing.assert_allclose(np.asarray(mine), theirs, rtol=1e-4, atol=1e-5)


def _max_relative_errors(result: tuple, exact: tuple) -> list[float]:
    loss, grads = result
    errors = [abs(float(loss) - float(exact[0])) / abs(float(exact[0]))]
    for mine, truth in zip(grads, exact[1]):
        mine = np.asarray(mine, dtype=np.float64)
        errors.append(float(np.max(np.abs(mine - truth)) / np.max(np.abs(truth))))
    return errors


def test_float32_is_as_accurate_as_torch_float32() -> None:
    """Each of the loss and the three gradients: float32 error vs float64 no worse than PyTorch's own."""
    rng = np.random.default_rng(7)
    n, d, k = 512, 64, 2000
    h = rng.normal(size=(n, d)).astype(np.float32)
    w = (rng.normal(size=(k, d)) / 4).astype(np.float32)
    b = rng.normal(size=k).astype(np.float32)
    y = rng.integers(0, k, size=n)
    data = {"hidden": h.astype(np.float64), "classifier": w.astype(np.float64), "bias": b.astype(np.float64)}
    exact = _torch_reference({**data, "labels": y}, label_smoothing=0.1)
    t = [torch.from_numpy(a).requires_grad_() for a in (h, w, b)]
    torch_loss = F.cross_entropy(F.linear(*t), torch.from_numpy(y), label_smoothing=0.1)
    torch_loss.backward()
    theirs = _max_relative_errors((torch_loss.item(), [x.grad.numpy() for x in t]), exact)
    ours = _max_relative_errors(ls.linear_cross_entropy_with_grad(h, w, y, bias=b, epsilon=0.1, chunk_size=37), exact)
    for mine, torchs, name in zip(ours, theirs, ("loss", "hidden", "classifier", "bias")):
        assert mine <= max(1.25 * torchs, 1e-7), (name, mine, torchs)


def test_numpy_peak_memory_is_a_small_fraction_of_the_logits() -> None:
    rng = np.random.default_rng(0)
    # Large enough that the NumPy kernel's own block (1 MB) is small beside the buffer.
    n, d, k = 1024, 32, 32000
    h, w = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(k, d)).astype(np.float32)
    b, y = rng.normal(size=k).astype(np.float32), rng.integers(0, k, size=n)
    ls.linear_cross_entropy_with_grad(h, w, y, bias=b, epsilon=0.1)  # warm-up
    tracemalloc.start()
    try:
        _, grads = ls.linear_cross_entropy_with_grad(h, w, y, bias=b, epsilon=0.1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    returned = sum(g.nbytes for g in grads)
    assert peak - returned <= 0.1 * n * k * 4


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_jax_jit_blocks_in_parts_against_the_dense_oracle(reduction: str) -> None:
    # Under jit the blocks are a scan and each block's kernel runs a part at a time: per-row
    # options (epsilon, a prior per row) are sliced with the parts; 24 rows in blocks of 8
    # (parts of one row) and a last block of 5 rows (one part).
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(11)
    n, d, k = 29, 5, 13
    h, w, b = rng.normal(size=(n, d)), rng.normal(size=(k, d)), rng.normal(size=k)
    y = rng.integers(0, k, n)
    epsilon = rng.uniform(0.0, 0.4, n)
    prior = rng.dirichlet(np.ones(k), size=n)
    settings = {"reduction": reduction, "z_loss": 0.01, "softcap": 3.0, "chunk_size": 8}
    with jax.enable_x64(True):
        jnp = jax.numpy

        def step(h, w, b, epsilon, prior):
            return ls.linear_cross_entropy_with_grad(
                h, w, jnp.asarray(y), bias=b, epsilon=epsilon, prior=prior, **settings
            )

        loss, grads = jax.jit(step)(*(jnp.asarray(a) for a in (h, w, b, epsilon, prior)))
        loss, grads = float(loss), [np.asarray(g) for g in grads]
    options = {name: settings[name] for name in ("reduction", "z_loss", "softcap")}
    expected, g = cross_entropy_rows(h @ w.T + b, y, epsilon=epsilon, prior=prior, **options)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    for ours, truth in zip(grads, (g @ w, g.T @ h, g.sum(axis=0))):
        np.testing.assert_allclose(ours, truth, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("z_loss", [0.0, 1e-4])  # with the z-loss the array-API kernel runs
def test_jax_jit_temporaries_are_a_small_fraction_of_the_logits(z_loss: float) -> None:
    # XLA's own accounting of the compiled step's temporaries (beyond inputs and outputs).
    jax = pytest.importorskip("jax")
    from labelsmooth.jax import linear_cross_entropy as jax_linear

    n, d, k = 1024, 32, 32000
    h, w = jax.ShapeDtypeStruct((n, d), np.float32), jax.ShapeDtypeStruct((k, d), np.float32)
    b, y = jax.ShapeDtypeStruct((k,), np.float32), jax.ShapeDtypeStruct((n,), np.int32)

    def loss(h, w, b, y):
        return jax_linear(h, w, y, bias=b, epsilon=0.1, z_loss=z_loss)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    temporaries = step.lower(h, w, b, y).compile().memory_analysis().temp_size_in_bytes
    assert temporaries <= 0.1 * n * k * 4


# --- labelsmooth.torch --------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_torch_module_backward_is_autograds(data: dict, reduction: str, bias: bool) -> None:
    h, w = (torch.tensor(data[name], requires_grad=True) for name in ("hidden", "classifier"))
    b = torch.tensor(data["bias"], requires_grad=True) if bias else None
    y, weight = torch.tensor(data["labels"]), torch.tensor(data["weight"])
    inputs = [h, w] + ([b] if bias else [])
    rng = np.random.default_rng(1)
    cotangent = torch.tensor(rng.normal(size=N) if reduction == "none" else 2.5)
    module = ltorch.LinearCrossEntropyLoss(label_smoothing=0.1, weight=weight, reduction=reduction, chunk_size=4)
    loss = module(h, w, y, b)
    assert type(loss.grad_fn).__name__ == "_LinearCrossEntropyBackward"
    ours = torch.autograd.grad(loss, inputs, cotangent)
    expected = F.cross_entropy(F.linear(h, w, b), y, weight=weight, label_smoothing=0.1, reduction=reduction)
    theirs = torch.autograd.grad(expected, inputs, cotangent)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-13)
    for mine, truth in zip(ours, theirs):
        torch.testing.assert_close(mine, truth, rtol=1e-12, atol=1e-13)


def test_torch_module_only_needed_gradients_and_first_order(data: dict) -> None:
    h = torch.tensor(data["hidden"], requires_grad=True)
    w = torch.tensor(data["classifier"])  # frozen classifier
    y = torch.tensor(data["labels"])
    loss = ltorch.linear_cross_entropy(h, w, y, label_smoothing=0.1)
    (grad,) = torch.autograd.grad(loss, [h], create_graph=True)
    expected = torch.autograd.grad(F.cross_entropy(F.linear(h, w), y, label_smoothing=0.1), [h])[0]
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-13)
    with pytest.raises(RuntimeError):
        grad.sum().backward()  # once differentiable


def test_torch_training_step_follows_the_materialized_one(data: dict) -> None:
    """Three SGD steps of a linear head: the same parameters as through F.linear + F.cross_entropy."""
    results = []
    for fused in (True, False):
        torch.manual_seed(0)
        layer = torch.nn.Linear(D, K, dtype=torch.float64)
        features = torch.nn.Linear(D, D, dtype=torch.float64)
        optimizer = torch.optim.SGD([*layer.parameters(), *features.parameters()], lr=0.5)
        criterion = ltorch.LinearCrossEntropyLoss(label_smoothing=0.1, chunk_size=5)
        x, y = torch.tensor(data["hidden"]), torch.tensor(data["labels"])
        for _ in range(3):
            optimizer.zero_grad()
            hidden = torch.tanh(features(x))
            if fused:
                loss = criterion(hidden, layer.weight, y, layer.bias)
            else:
                loss = F.cross_entropy(layer(hidden), y, label_smoothing=0.1)
            loss.backward()
            optimizer.step()
        results.append([p.detach().clone() for p in (*layer.parameters(), *features.parameters())])
    for fused, materialized in zip(*results):
        torch.testing.assert_close(fused, materialized, rtol=1e-12, atol=1e-13)


def test_torch_module_float32_without_grad(data: dict) -> None:
    h, w, b = (torch.tensor(data[name], dtype=torch.float32) for name in ("hidden", "classifier", "bias"))
    y = torch.tensor(data["labels"])
    with torch.no_grad():
        loss = ltorch.LinearCrossEntropyLoss(label_smoothing=0.1)(h, w, y, b)
    expected = F.cross_entropy(F.linear(h, w, b), y, label_smoothing=0.1)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"hidden": np.zeros((N, D + 1))}, ValueError, r"hidden's last dimension must be the classifier's d = 6"),
        ({"classifier": np.zeros(K)}, ValueError, r"classifier must have shape \(K, d\)"),
        (
            {"labels": np.zeros(N - 1, dtype=int)},
            ValueError,
            r"targets must have hidden's shape .*\(23,\), got shape \(22,\)",
        ),
        ({"labels": np.zeros(N)}, TypeError, r"targets must be integer class labels, got dtype float64"),
        ({"bias": np.zeros(K + 1)}, ValueError, r"bias must have shape \(11,\) .*got shape \(12,\)"),
        (
            {"bias": np.zeros(K, dtype=np.float32)},
            TypeError,
            r"bias must have hidden's dtype float64, got dtype float32",
        ),
        ({"classifier": np.zeros((K, D), np.float32)}, TypeError, r"classifier must have hidden's dtype float64"),
        ({"hidden": np.zeros((N, D), dtype=int)}, TypeError, r"hidden must have a real floating dtype"),
        ({"chunk_size": 0}, ValueError, r"chunk_size must be a positive int, got 0"),
        ({"chunk_size": 2.5}, TypeError, r"chunk_size must be a positive int, got 2.5"),
        ({"chunk_size": True}, TypeError, r"chunk_size must be a positive int, got True"),
        ({"reduction": "avg"}, ValueError, r"reduction must be one of"),
        ({"epsilon": 1.5}, ValueError, r"epsilon must be in \[0, 1\]"),
    ],
    ids=lambda value: str(value)[:40] if isinstance(value, dict) else None,
)
def test_errors_name_the_argument(data: dict, change: dict, error: type, match: str) -> None:
    data["labels"][data["labels"] < 0] = 0
    arguments = {"hidden": data["hidden"], "classifier": data["classifier"], "labels": data["labels"]}
    options = {"bias": data["bias"]}
    for name, value in change.items():
        (arguments if name in arguments else options)[name] = value
    with pytest.raises(error, match=match):
        ls.linear_cross_entropy(arguments["hidden"], arguments["classifier"], arguments["labels"], **options)


def test_label_out_of_range_is_refused(data: dict) -> None:
    data["labels"][0] = K
    with pytest.raises(ValueError, match=r"targets must be class indices in \[0, 11\)"):
        ls.linear_cross_entropy(data["hidden"], data["classifier"], data["labels"], chunk_size=4)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_jax_adapter_grad_is_torch_autograd_of_the_materialized_loss(reduction):
    """labelsmooth.jax.linear_cross_entropy under jit(grad), every reduction, with a cotangent."""
    jax = pytest.importorskip("jax")
    torch = pytest.importorskip("torch")
    from labelsmooth.jax import linear_cross_entropy as jax_linear

    rng = np.random.default_rng(7)
    h, w, b = rng.normal(size=(13, 8)), rng.normal(size=(11, 8)), rng.normal(size=11)
    y = rng.integers(0, 11, 13)
    y[3] = -100
    cotangent = rng.normal(size=13) if reduction == "none" else np.float64(1.7)
    settings = {"epsilon": 0.1, "ignore_index": -100, "reduction": reduction, "z_loss": 0.01, "chunk_size": 4}
    with jax.enable_x64(True):
        jnp = jax.numpy

        def weighted(h, w, b):
            return jnp.sum(jnp.asarray(cotangent) * jax_linear(h, w, jnp.asarray(y), bias=b, **settings))

        grads = jax.jit(jax.grad(weighted, argnums=(0, 1, 2)))(jnp.asarray(h), jnp.asarray(w), jnp.asarray(b))
        grads = [np.asarray(g) for g in grads]
    ht, wt, bt = (torch.tensor(a, requires_grad=True) for a in (h, w, b))
    logits = ht @ wt.T + bt
    labels = torch.tensor(y)
    ce = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1, reduction="none")
    kept = (labels != -100).double()
    z_rows = 0.01 * torch.logsumexp(logits, 1) ** 2 * kept
    if reduction == "none":
        loss = ce + z_rows
    elif reduction == "sum":
        loss = ce.sum() + z_rows.sum()
    else:
        loss = (ce.sum() + z_rows.sum()) / kept.sum()
    (torch.tensor(cotangent) * loss).sum().backward()
    for ours, tensor in zip(grads, (ht, wt, bt)):
        np.testing.assert_allclose(ours, tensor.grad.numpy(), rtol=1e-12, atol=1e-14)
