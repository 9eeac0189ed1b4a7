"""``labelsmooth.torch``: exact second derivatives, NumPy scalar options, ``ignore_index``.

Every expectation comes from outside labelsmooth: PyTorch's own ``F.cross_entropy`` (and
autograd through it) in float64; the written-out definition ``-sum_k c_k log_softmax(z)_k``
differentiated by ``torch.autograd`` where PyTorch has no such option (``prior``,
per-sample ``epsilon``, ``where``); and finite differences (``torch.autograd.gradcheck``,
``gradgradcheck``). Logits include tied maxima (all-zero rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ltorch = pytest.importorskip("labelsmooth.torch")
F = torch.nn.functional

N, K, D = 3, 4, 2
EPS = 0.3
REDUCTIONS = ["none", "sum", "mean"]


def close(actual: Any, desired: Any, rtol: float = 1e-10) -> None:
    """Equal to ``rtol`` of the largest entry of ``desired`` (float64 throughout)."""
    desired = torch.as_tensor(desired).detach().double()
    scale = float(desired.abs().max()) if desired.numel() else 0.0
    torch.testing.assert_close(
        torch.as_tensor(actual).detach().double(), desired, rtol=rtol, atol=rtol * max(scale, 1e-3)
    )


# ---------------------------------------------------------------- the definition


def definition(
    z: Any,
    targets: Any,
    *,
    epsilon: Any = 0.0,
    prior: Any = None,
    weight: Any = None,
    ignore_index: Any = None,
    where: Any = None,
    reduction: str = "mean",
    axis: int = -1,
) -> Any:
    """``-sum_k c_k log_softmax(z)_k`` written out in torch, with PyTorch's weighted convention.

    Labels: ``c = (1-eps) w_y e_y + eps u w``, ``"mean"`` divides by ``sum w_y`` over the
    counted samples. Probabilities: ``c = w ((1-eps) q + eps u)``, ``"mean"`` divides by N.
    """
    z = torch.movedim(z, axis, -1)
    allowed = torch.ones_like(z, dtype=torch.bool) if where is None else where.expand(z.shape)
    logp = torch.log_softmax(z.masked_fill(~allowed, -torch.inf), dim=-1).masked_fill(~allowed, 0.0)
    mask = allowed.to(z.dtype)
    count = mask.sum(-1, keepdim=True)
    w = torch.ones(z.shape[-1], dtype=z.dtype) if weight is None else weight
    eps = epsilon[..., None] if isinstance(epsilon, torch.Tensor) else epsilon
    is_labels = not torch.is_floating_point(targets)
    if is_labels:
        ignored = torch.zeros_like(targets, dtype=torch.bool) if ignore_index is None else targets == ignore_index
        labels = targets.masked_fill(ignored, 0)
        q = F.one_hot(labels, z.shape[-1]).to(z.dtype)
    else:
        q = torch.movedim(targets, axis, -1)
    if prior is None:
        u = mask / count
    elif isinstance(prior, str):
        u = (mask - q) / (count - 1.0)
    else:
        u = prior * mask / (prior * mask).sum(-1, keepdim=True)
    if is_labels:
        true_weight = w[labels]
        c = (1.0 - eps) * true_weight[..., None] * q + eps * u * w
        per_sample = torch.where(ignored, 0.0, -(c * logp).sum(-1))
        denominator = torch.where(ignored, 0.0, true_weight).sum()
    else:
        per_sample = -(w * ((1.0 - eps) * q + eps * u) * logp).sum(-1)
        denominator = per_sample.numel()
    if reduction == "none":
        return per_sample
    return per_sample.sum() if reduction == "sum" else per_sample.sum() / denominator


# ---------------------------------------------------------------- the cases


def _rng() -> np.random.Generator:
    return np.random.default_rng(20240607)


def _t(a: Any) -> Any:
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


CASES = [
    "plain",
    "eps",
    "others",
    "prior",
    "per_sample_eps",
    "weight_ignore",
    "where",
    "probs",
    "probs_others",
    "axis1",
]


def make_case(name: str, logits: str = "random") -> dict[str, Any]:
    """Inputs of one case: logits, targets, fixed options, and free float inputs.

    ``free`` maps an option to ``(tensor, transform)``: the tensor is differentiated
    (gradcheck perturbs it), ``transform`` turns it into the option (a prior must sum to
    1, so it is the softmax of free parameters).
    """
    rng = _rng()
    shape = (N, K, D) if name == "axis1" else (N, K)
    z = _t(rng.normal(scale=1.5, size=shape))
    if logits == "zeros":
        z = torch.zeros(shape, dtype=torch.float64)
    elif logits == "ties":
        # Classes 2 and 3 share the maximum of every row (the class axis is 1 here).
        z[:, 2:] = float(z.max()) + 0.5
    axis = 1 if name == "axis1" else -1
    labels = torch.from_numpy(rng.integers(0, K, size=(N, D) if name == "axis1" else (N,)))
    case: dict[str, Any] = {"z": z, "targets": labels, "options": {"axis": axis}, "free": {}}
    options, free = case["options"], case["free"]
    if name != "plain" and name != "per_sample_eps":
        options["epsilon"] = EPS
    if name == "others" or name == "probs_others":
        options["prior"] = "others"
    if name == "prior":
        free["prior"] = (_t(rng.normal(size=K)), lambda theta: torch.softmax(theta, 0))
    if name == "per_sample_eps":
        free["epsilon"] = (_t(rng.uniform(0.1, 0.6, size=N)), lambda e: e)
    if name in ("weight_ignore", "probs", "axis1"):
        free["weight"] = (_t(rng.uniform(0.5, 2.0, size=K)), lambda w: w)
    if name == "weight_ignore":
        options["ignore_index"] = 1
        labels[0] = 1
    if name == "where":
        allowed = torch.tensor([True, False, True, True])
        options["where"] = allowed
        case["targets"] = torch.where(labels == 1, 0, labels)
    if name.startswith("probs"):
        case["targets"] = _t(rng.dirichlet(np.ones(K), size=N) * 0.9 + 0.025)
        free["targets"] = (case["targets"], lambda q: q)
    return case


def loss_functions(case: dict[str, Any], reduction: str) -> tuple[Callable, Callable, list]:
    """``(adapter, reference, free tensors)``: both map ``(z, *free)`` to the loss."""
    names = list(case["free"])
    transforms = [case["free"][name][1] for name in names]

    def bind(ce: Callable) -> Callable:
        def loss(z: Any, *values: Any) -> Any:
            options = dict(case["options"], reduction=reduction)
            options.update({name: f(v) for name, f, v in zip(names, transforms, values)})
            targets = options.pop("targets", case["targets"])
            return ce(z, targets, **options)

        return loss

    return bind(ltorch.cross_entropy), bind(definition), [case["free"][name][0] for name in names]


def batch_shape(case: dict[str, Any]) -> tuple[int, ...]:
    shape = list(case["z"].shape)
    del shape[case["options"]["axis"]]
    return tuple(shape)


def requiring_grad(*tensors: Any) -> list[Any]:
    return [t.detach().clone().requires_grad_() for t in tensors]


# ---------------------------------------------------------------- the definition is PyTorch's


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_definition_equals_torch_cross_entropy(reduction: str) -> None:
    """The reference itself: equal to ``F.cross_entropy`` wherever PyTorch has the option."""
    for name in ("plain", "eps", "weight_ignore", "probs", "axis1"):
        case = make_case(name)
        options = case["options"]
        weight = case["free"].get("weight", (None,))[0]
        native = F.cross_entropy(
            torch.movedim(case["z"], options["axis"], 1),
            case["targets"],
            weight=weight,
            ignore_index=options.get("ignore_index", -100),
            reduction=reduction,
            label_smoothing=options.get("epsilon", 0.0),
        )
        ours = definition(case["z"], case["targets"], weight=weight, reduction=reduction, **options)
        close(ours, native, rtol=1e-13)
    # Its other priors: "others" with eps is uniform smoothing with eps K / (K - 1); a
    # uniform prior array is uniform smoothing.
    case = make_case("plain")
    native = F.cross_entropy(case["z"], case["targets"], label_smoothing=EPS * K / (K - 1), reduction=reduction)
    close(definition(case["z"], case["targets"], epsilon=EPS, prior="others", reduction=reduction), native, rtol=1e-13)
    uniform = torch.full((K,), 1.0 / K, dtype=torch.float64)
    close(
        definition(case["z"], case["targets"], epsilon=EPS, prior=uniform, reduction=reduction),
        F.cross_entropy(case["z"], case["targets"], label_smoothing=EPS, reduction=reduction),
        rtol=1e-13,
    )


# ---------------------------------------------------------------- finite differences


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", CASES)
def test_gradcheck_and_gradgradcheck(name: str, reduction: str) -> None:
    case = make_case(name)
    adapter, _, free = loss_functions(case, reduction)
    inputs = requiring_grad(case["z"], *free)
    assert torch.autograd.gradcheck(adapter, inputs)
    assert torch.autograd.gradgradcheck(adapter, inputs)


@pytest.mark.parametrize("name", ["eps", "others", "weight_ignore", "probs", "axis1"])
@pytest.mark.parametrize("logits", ["zeros", "ties"])
def test_gradgradcheck_at_tied_maxima(name: str, logits: str) -> None:
    case = make_case(name, logits)
    adapter, _, free = loss_functions(case, "mean")
    assert torch.autograd.gradgradcheck(adapter, requiring_grad(case["z"], *free))


# ---------------------------------------------------------------- against autograd of the definition


def _scalar(loss_fn: Callable, cotangent: Any) -> Callable:
    """A scalar objective: ``"none"`` losses are weighted by a fixed cotangent."""

    def objective(*args: Any) -> Any:
        loss = loss_fn(*args)
        return (loss * cotangent).sum() if loss.ndim else loss * cotangent

    return objective


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("logits", ["random", "zeros", "ties"])
@pytest.mark.parametrize("name", CASES)
def test_hessian_vector_products_equal_the_definition(name: str, logits: str, reduction: str) -> None:
    """``hvp`` in every free input at once, and the mixed second derivatives with them."""
    case = make_case(name, logits)
    adapter, reference, free = loss_functions(case, reduction)
    rng = _rng()
    cotangent = _t(rng.normal(size=batch_shape(case))) if reduction == "none" else 1.7
    inputs = (case["z"], *free)
    directions = tuple(_t(rng.normal(size=tuple(t.shape))) for t in inputs)
    ours = torch.autograd.functional.hvp(_scalar(adapter, cotangent), inputs, directions)
    want = torch.autograd.functional.hvp(_scalar(reference, cotangent), inputs, directions)
    close(ours[0], want[0])
    for a, b in zip(ours[1], want[1]):
        close(a, b)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("logits", ["random", "zeros", "ties"])
@pytest.mark.parametrize("name", CASES)
def test_gradient_penalty_equals_the_definition(name: str, logits: str, reduction: str) -> None:
    """``|dL/dz|^2`` and its gradient with respect to the logits and the free inputs."""
    case = make_case(name, logits)
    adapter, reference, free = loss_functions(case, reduction)
    cotangent = _t(_rng().normal(size=batch_shape(case))) if reduction == "none" else 0.8
    results = []
    for loss_fn in (adapter, reference):
        z, *values = requiring_grad(case["z"], *free)
        (g,) = torch.autograd.grad(_scalar(loss_fn, cotangent)(z, *values), z, create_graph=True)
        penalty = (g**2).sum()
        results.append((penalty, *torch.autograd.grad(penalty, [z, *values])))
    for a, b in zip(*results):
        close(a, b)


# ---------------------------------------------------------------- against PyTorch's own loss


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("logits", ["random", "zeros"])
def test_module_gradient_penalty_through_a_model_equals_torch(logits: str, reduction: str) -> None:
    """Penalty on the input gradient of ``x -> x @ W``, (N, C, d) logits: W's gradient as torch's."""
    rng = _rng()
    x0 = _t(rng.normal(size=(N, D, 5)))
    w0 = torch.zeros(5, K, dtype=torch.float64) if logits == "zeros" else _t(rng.normal(size=(5, K)))
    labels = torch.from_numpy(rng.integers(0, K, size=(N, D)))
    labels[0, 0] = -100
    weight = _t(rng.uniform(0.5, 2.0, size=K))
    kwargs = {"weight": weight, "label_smoothing": 0.2, "reduction": reduction}
    results = []
    for criterion in (ltorch.CrossEntropyLoss(**kwargs), torch.nn.CrossEntropyLoss(**kwargs)):
        x, w = requiring_grad(x0, w0)
        loss = criterion(torch.movedim(x @ w, -1, 1), labels)
        loss = loss.sum() if reduction == "none" else loss
        (gx,) = torch.autograd.grad(loss, x, create_graph=True)
        penalty = loss + (gx**2).sum()
        penalty.backward()
        results.append((penalty.detach(), x.grad, w.grad))
    for a, b in zip(*results):
        close(a, b)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_hvp_of_the_function_equals_torch_cross_entropy(reduction: str) -> None:
    rng = _rng()
    labels = torch.tensor([0, 2, 3])
    weight = _t(rng.uniform(0.5, 2.0, size=K))
    v = _t(rng.normal(size=(N, K)))
    for z0 in (_t(rng.normal(size=(N, K))), torch.zeros(N, K, dtype=torch.float64)):
        ours = torch.autograd.functional.hvp(
            lambda z: ltorch.cross_entropy(
                z, labels, epsilon=0.1, weight=weight, ignore_index=2, reduction=reduction
            ).sum(),
            z0,
            v,
        )
        want = torch.autograd.functional.hvp(
            lambda z: F.cross_entropy(
                z, labels, label_smoothing=0.1, weight=weight, ignore_index=2, reduction=reduction
            ).sum(),
            z0,
            v,
        )
        close(ours[0], want[0])
        close(ours[1], want[1])


def test_first_order_backward_builds_no_graph() -> None:
    """Without ``create_graph`` the gradient is the saved one times the cotangent (no graph)."""
    case = make_case("weight_ignore")
    weight = case["free"]["weight"][0]
    (z,) = requiring_grad(case["z"])
    loss = ltorch.cross_entropy(z, case["targets"], epsilon=EPS, weight=weight, ignore_index=1)
    (g,) = torch.autograd.grad(loss, z)
    assert not g.requires_grad
    (z2,) = requiring_grad(case["z"])
    native = F.cross_entropy(z2, case["targets"], label_smoothing=EPS, weight=weight, ignore_index=1)
    close(g, torch.autograd.grad(native, z2)[0], rtol=1e-13)


# ---------------------------------------------------------------- NumPy scalar options


@pytest.mark.parametrize("scalar", [np.float64, np.float32])
def test_module_accepts_numpy_label_smoothing(scalar: type) -> None:
    rng = _rng()
    labels = torch.from_numpy(rng.integers(0, K, size=(N, D)))
    z0 = _t(rng.normal(size=(N, K, D)))
    value = scalar(0.1)
    results = []
    for module in (
        ltorch.CrossEntropyLoss(label_smoothing=value),
        ltorch.CrossEntropyLoss(epsilon=value),
        torch.nn.CrossEntropyLoss(label_smoothing=value),
    ):
        (z,) = requiring_grad(z0)
        loss = module(z, labels)
        results.append((loss, torch.autograd.grad(loss, z)[0]))
    for loss, grad in results[:2]:
        close(loss, results[2][0], rtol=1e-13)
        close(grad, results[2][1], rtol=1e-13)
    # The same values as the Python float 0.1 (to float32 rounding of 0.1 for np.float32).
    plain = ltorch.CrossEntropyLoss(label_smoothing=0.1)(z0, labels)
    close(results[0][0], plain, rtol=1e-7 if scalar is np.float32 else 1e-15)
    assert type(ltorch.CrossEntropyLoss(label_smoothing=value).label_smoothing) is float
    # A zero label_smoothing of NumPy type still leaves epsilon free to be given.
    assert ltorch.CrossEntropyLoss(label_smoothing=scalar(0.0), epsilon=0.2).label_smoothing == 0.2
    with pytest.raises(ValueError, match="epsilon"):
        ltorch.CrossEntropyLoss(label_smoothing=scalar(1.5))


@pytest.mark.parametrize("scalar", [np.float64, np.float32])
def test_function_accepts_numpy_epsilon(scalar: type) -> None:
    rng = _rng()
    z0, labels = _t(rng.normal(size=(N, K))), torch.from_numpy(rng.integers(0, K, size=N))
    z1, z2 = requiring_grad(z0, z0)
    ours = ltorch.cross_entropy(z1, labels, epsilon=scalar(0.1))
    theirs = F.cross_entropy(z2, labels, label_smoothing=scalar(0.1))
    close(ours, theirs, rtol=1e-13)
    close(torch.autograd.grad(ours, z1)[0], torch.autograd.grad(theirs, z2)[0], rtol=1e-13)


# ---------------------------------------------------------------- ignore_index with probabilities


@pytest.mark.parametrize("ignore_index", [-100, -1, 0, 2, 7])
def test_module_ignore_index_with_probability_targets_mirrors_torch(ignore_index: int) -> None:
    """PyTorch refuses a non-negative ``ignore_index`` with probability targets, accepts a negative one."""
    case = make_case("probs")
    kwargs = {"ignore_index": ignore_index, "label_smoothing": 0.1}
    ours, theirs = ltorch.CrossEntropyLoss(**kwargs), torch.nn.CrossEntropyLoss(**kwargs)
    if ignore_index >= 0:
        with pytest.raises(RuntimeError, match="ignore_index"):
            theirs(case["z"], case["targets"])
        with pytest.raises(ValueError, match="ignore_index"):
            ours(case["z"], case["targets"])
    else:
        z1, z2 = requiring_grad(case["z"], case["z"])
        a, b = ours(z1, case["targets"]), theirs(z2, case["targets"])
        close(a, b, rtol=1e-13)
        close(torch.autograd.grad(a, z1)[0], torch.autograd.grad(b, z2)[0], rtol=1e-13)
    # The same module still applies ignore_index to integer labels.
    labels = make_case("plain")["targets"]
    labels[0] = ignore_index if 0 <= ignore_index < K else labels[0]
    close(ours(case["z"], labels), theirs(case["z"], labels), rtol=1e-13)


def test_function_ignore_index_with_probabilities_as_pytorch() -> None:
    """As F.cross_entropy: a negative ignore_index has no effect on probabilities, another one is refused."""
    case = make_case("probs")
    expected = torch.nn.functional.cross_entropy(case["z"], case["targets"], ignore_index=-100, label_smoothing=0.1)
    got = ltorch.cross_entropy(case["z"], case["targets"], ignore_index=-100, label_smoothing=0.1)
    close(got, expected, rtol=1e-13)
    with pytest.raises(ValueError, match="ignore_index"):
        ltorch.cross_entropy(case["z"], case["targets"], ignore_index=0)


def test_float32_gradient_penalty_equals_torch() -> None:
    rng = _rng()
    z0 = torch.from_numpy(rng.normal(size=(N, K)).astype(np.float32))
    labels = torch.tensor([0, 2, 3])
    results = []
    for ce in (
        lambda z: ltorch.cross_entropy(z, labels, epsilon=0.1),
        lambda z: F.cross_entropy(z, labels, label_smoothing=0.1),
    ):
        (z,) = requiring_grad(z0)
        (g,) = torch.autograd.grad(ce(z), z, create_graph=True)
        penalty = (g**2).sum()
        results.append((g, penalty, torch.autograd.grad(penalty, z)[0]))
    for a, b in zip(*results):
        assert a.dtype == b.dtype == torch.float32
        close(a, b, rtol=1e-5)


def test_unused_prior_gets_a_zero_gradient() -> None:
    """With epsilon = 0 the prior does not enter the loss: its gradient is 0, in both passes."""
    case = make_case("plain")
    z0, prior0 = case["z"], torch.full((K,), 1.0 / K, dtype=torch.float64)
    for create_graph in (False, True):
        z, prior = requiring_grad(z0, prior0)
        (z2,) = requiring_grad(z0)
        loss = ltorch.cross_entropy(z, case["targets"], prior=prior)
        gz, gprior = torch.autograd.grad(loss, [z, prior], create_graph=create_graph)
        assert torch.equal(gprior, torch.zeros(K, dtype=torch.float64))
        close(gz, torch.autograd.grad(F.cross_entropy(z2, case["targets"]), z2)[0], rtol=1e-13)


def test_minus_inf_on_masked_classes_keeps_second_derivatives_finite() -> None:
    case = make_case("where")
    z0 = case["z"].clone()
    z0[:, 1] = -torch.inf
    v = _t(_rng().normal(size=tuple(z0.shape)))
    results = []
    for ce in (ltorch.cross_entropy, definition):

        def loss(z: Any, ce: Callable = ce) -> Any:
            return ce(z, case["targets"], epsilon=EPS, where=case["options"]["where"])

        results.append(torch.autograd.functional.hvp(loss, z0, v))
    assert torch.isfinite(results[0][1]).all()
    close(results[0][0], results[1][0])
    close(results[0][1], results[1][1])
