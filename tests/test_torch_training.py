"""Training with PyTorch through labelsmooth: autograd, torch.compile, autocast, meta tensors, drop-ins.

Every value and gradient is compared with PyTorch's own ``F.cross_entropy`` (float64
autograd, first and second order) or with the same step run eagerly.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
ltorch = pytest.importorskip("labelsmooth.torch")

import labelsmooth as ls  # noqa: E402

N, K = 12, 7


@pytest.fixture
def data() -> dict:
    rng = np.random.default_rng(20161205)
    z = rng.normal(size=(N, K)) * 2.0
    z[0, 1] = z[0, 3] = z[0].max() + 1.0  # tied maxima
    labels = rng.integers(0, K, size=N)
    labels[2] = 4
    return {
        "z": torch.tensor(z),
        "labels": torch.tensor(labels),
        "weight": torch.tensor(rng.uniform(0.5, 2.0, size=K)),
        "probabilities": torch.tensor(rng.dirichlet(np.ones(K), size=N)),
    }


def _torch_loss(z, targets, **options):
    return F.cross_entropy(z, targets, **options)


@pytest.mark.parametrize(
    "options",
    [
        {"label_smoothing": 0.1},
        {"label_smoothing": 0.2, "weight": "weight", "ignore_index": 4},
        {"label_smoothing": 0.1, "reduction": "none"},
        {"label_smoothing": 0.3, "reduction": "sum", "weight": "weight"},
    ],
    ids=str,
)
def test_plain_function_backward_is_the_analytic_one(data: dict, options: dict) -> None:
    """ls.cross_entropy on tensors that require grad: one autograd node, PyTorch's gradients and Hessians."""
    theirs = {k: data[v] if v == "weight" else v for k, v in options.items()}
    ours = dict(theirs)
    ours["epsilon"] = ours.pop("label_smoothing")
    z = data["z"].clone().requires_grad_(True)
    loss = ls.cross_entropy(z, data["labels"], **ours)
    assert type(loss.grad_fn).__name__ == "AnalyticLossBackward"
    expected = _torch_loss(z, data["labels"], **theirs)
    torch.testing.assert_close(loss, expected, rtol=1e-13, atol=1e-15)
    cotangent = torch.rand_like(loss) + 0.5
    (grad,) = torch.autograd.grad(loss, z, cotangent, create_graph=True)
    (expected_grad,) = torch.autograd.grad(expected, z, cotangent, create_graph=True)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-13, atol=1e-15)
    direction = torch.randn_like(z)
    (hvp,) = torch.autograd.grad((grad * direction).sum(), z)
    (expected_hvp,) = torch.autograd.grad((expected_grad * direction).sum(), z)
    torch.testing.assert_close(hvp, expected_hvp, rtol=1e-12, atol=1e-14)


def test_plain_functions_pass_gradcheck(data: dict) -> None:
    labels, probabilities = data["labels"], data["probabilities"]
    z = data["z"].clone().requires_grad_(True)
    for loss in (
        lambda a: ls.cross_entropy(a, labels, epsilon=0.1, reduction="none"),
        lambda a: ls.cross_entropy(a, probabilities, epsilon=0.2, prior="others"),
        lambda a: ls.kl_divergence(a, labels, epsilon=0.1, weight=data["weight"]),
        lambda a: ls.binary_cross_entropy(a, (probabilities > 0.1).double(), epsilon=0.1, reduction="none"),
    ):
        assert torch.autograd.gradcheck(loss, (z,))
        assert torch.autograd.gradgradcheck(loss, (z,))


def test_saved_tensors_no_larger_than_native(data: dict) -> None:
    def saved(loss_fn) -> int:
        sizes: list = []

        def pack(tensor):
            sizes.append(tensor.numel())
            return tensor

        z = data["z"].clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss_fn(z, data["labels"])
        return sum(sizes)

    native = saved(lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1))
    # labelsmooth keeps the N x K gradient on the autograd context, outside the hooks.
    assert saved(lambda z, y: ls.cross_entropy(z, y, epsilon=0.1)) + N * K <= native
    assert saved(lambda z, y: ltorch.cross_entropy(z, y, label_smoothing=0.1)) + N * K <= native


def test_second_backward_with_retain_graph(data: dict) -> None:
    """The first backward pass hands its saved gradient on; a second one recomputes it."""
    z = data["z"].clone().requires_grad_(True)
    loss = ls.cross_entropy(z, data["labels"], epsilon=0.1, reduction="none")
    cotangent = torch.rand(N, dtype=torch.float64)
    loss.backward(cotangent, retain_graph=True)
    first = z.grad.clone()
    loss.backward(cotangent)
    expected = F.cross_entropy(z, data["labels"], label_smoothing=0.1, reduction="none")
    (expected_grad,) = torch.autograd.grad(expected, z, cotangent)
    torch.testing.assert_close(first, expected_grad, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(z.grad, 2 * expected_grad, rtol=1e-13, atol=1e-15)


def test_kl_and_binary_gradients_equal_pytorch(data: dict) -> None:
    z = data["z"].clone().requires_grad_(True)
    smoothed = F.one_hot(data["labels"], K).double() * 0.9 + 0.1 / K
    ours = ls.kl_divergence(z, data["labels"], epsilon=0.1)
    theirs = F.kl_div(F.log_softmax(z, dim=1), smoothed, reduction="batchmean")
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(torch.autograd.grad(ours, z)[0], torch.autograd.grad(theirs, z)[0])
    targets = (data["probabilities"] > 0.15).double()
    ours = ls.binary_cross_entropy(z, targets, epsilon=0.1)
    theirs = F.binary_cross_entropy_with_logits(z, targets * 0.9 + 0.05)
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(torch.autograd.grad(ours, z)[0], torch.autograd.grad(theirs, z)[0])


# --- the drop-in adapter -----------------------------------------------------------------


def test_module_positional_order_is_pytorchs(data: dict) -> None:
    arguments = (data["weight"], None, 4, None, "sum", 0.2)
    ours, theirs = ltorch.CrossEntropyLoss(*arguments), torch.nn.CrossEntropyLoss(*arguments)
    torch.testing.assert_close(ours(data["z"], data["labels"]), theirs(data["z"], data["labels"]), rtol=1e-13, atol=0)


def test_function_takes_pytorchs_arguments(data: dict) -> None:
    arguments = (data["weight"], None, 4, None, "none", 0.2)
    got = ltorch.cross_entropy(data["z"], data["labels"], *arguments)
    torch.testing.assert_close(got, F.cross_entropy(data["z"], data["labels"], *arguments), rtol=1e-13, atol=0)
    # (N, C, T) with C == T: the classes are dim 1, as in PyTorch, not the last axis.
    z3 = torch.randn(4, K, K, dtype=torch.float64)
    y3 = torch.randint(0, K, (4, K))
    torch.testing.assert_close(
        ltorch.cross_entropy(z3, y3, label_smoothing=0.1), F.cross_entropy(z3, y3, label_smoothing=0.1)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's deprecation warning for size_average
        legacy = ltorch.cross_entropy(data["z"], data["labels"], size_average=False)
        expected = F.cross_entropy(data["z"], data["labels"], size_average=False)
    torch.testing.assert_close(legacy, expected, rtol=1e-13, atol=0)


def test_label_smoothing_is_assignable(data: dict) -> None:
    loss = ltorch.CrossEntropyLoss(label_smoothing=0.1)
    loss.label_smoothing = 0.3
    expected = torch.nn.CrossEntropyLoss(label_smoothing=0.3)(data["z"], data["labels"])
    torch.testing.assert_close(loss(data["z"], data["labels"]), expected, rtol=1e-13, atol=0)
    loss.label_smoothing = torch.full((N,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(loss(data["z"], data["labels"]), expected, rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="epsilon"):
        loss.label_smoothing = 1.5


# --- torch.compile, meta tensors, autocast --------------------------------------------


# Inductor's own code generation warns of deprecated PyTorch APIs (not labelsmooth's).
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_training_step_equals_eager(backend: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(K, K)
    x, y = torch.randn(N, K), torch.randint(0, K, (N,))
    criterion = ltorch.CrossEntropyLoss(label_smoothing=0.1)

    def step(x, y):
        logits = model(x)
        return criterion(logits, y) + ls.cross_entropy(logits, y, epsilon=0.2, reduction="sum") / N

    eager = step(x, y)
    eager_grads = torch.autograd.grad(eager, list(model.parameters()))
    compiled = torch.compile(step, backend=backend, fullgraph=True)(x, y)
    compiled_grads = torch.autograd.grad(compiled, list(model.parameters()))
    torch.testing.assert_close(compiled, eager)
    for got, expected in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(got, expected)


def test_meta_tensors_give_shapes() -> None:
    z = torch.empty(N, K, device="meta")
    y = torch.empty(N, dtype=torch.int64, device="meta")
    assert ls.cross_entropy(z, y, epsilon=0.1).shape == ()
    assert ls.cross_entropy(z, y, epsilon=0.1, reduction="none").shape == (N,)
    assert ltorch.cross_entropy(z.reshape(N, K, 1), y.reshape(N, 1), reduction="none").shape == (N, 1)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_autocast_returns_float32_as_pytorch(data: dict, dtype: str) -> None:
    z = data["z"].to(getattr(torch, dtype)).requires_grad_(True)
    with torch.autocast("cpu", dtype=getattr(torch, dtype)):
        ours = ls.cross_entropy(z, data["labels"], epsilon=0.1)
        theirs = F.cross_entropy(z, data["labels"], label_smoothing=0.1)
        adapter = ltorch.CrossEntropyLoss(label_smoothing=0.1)(z, data["labels"])
    assert ours.dtype == theirs.dtype == adapter.dtype == torch.float32
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(adapter, theirs)
    (grad,) = torch.autograd.grad(ours, z)
    (expected,) = torch.autograd.grad(theirs, z)
    assert grad.dtype == z.dtype
    torch.testing.assert_close(grad, expected)


def test_numpy_kernel_threads_follow_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    from labelsmooth import _numpy_fast

    monkeypatch.setattr(_numpy_fast, "_PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(_numpy_fast, "_BLOCK_BYTES", 1024)
    monkeypatch.setenv("LABELSMOOTH_NUM_THREADS", "4")
    seen: list = []
    original = _numpy_fast._usable_threads
    monkeypatch.setattr(_numpy_fast, "_usable_threads", lambda limit: seen.append(original(limit)) or seen[-1])
    z, y = torch.randn(64, 32), torch.randint(0, 32, (64,))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = ls.cross_entropy(z, y, epsilon=0.1)
    finally:
        torch.set_num_threads(threads)
    assert seen == [1]
    torch.testing.assert_close(single, F.cross_entropy(z, y, label_smoothing=0.1))
