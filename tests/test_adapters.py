"""Training adapters: ``labelsmooth.jax`` (custom VJP) and ``labelsmooth.torch`` (autograd.Function).

Their values and gradients are compared with autodiff of the plain functions
(``jax.grad`` / ``torch.autograd`` through ``labelsmooth.cross_entropy``), with PyTorch's
native ``nn.CrossEntropyLoss`` and with the dense definition (``tests/_formulas.py``); a
short training run with each must reduce the loss exactly as the reference does.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _formulas import cross_entropy_rows

import labelsmooth as ls

N, K = 8, 6
EPSILON = 0.15


@pytest.fixture
def data(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "logits": rng.normal(scale=2.0, size=(N, K)).astype(np.float32),
        "labels": rng.integers(0, K, size=N),
        "probs": rng.dirichlet(np.ones(K), size=N).astype(np.float32),
        "weight": rng.uniform(0.3, 2.0, size=K).astype(np.float32),
        "prior": rng.dirichlet(np.ones(K)).astype(np.float32),
        "eps": rng.uniform(0.0, 0.4, size=N).astype(np.float32),
        "cotangent": rng.normal(size=N).astype(np.float32),
    }


def close(actual: object, desired: object, rtol: float = 2e-5, atol: float = 2e-6) -> None:
    """Equal to ``rtol``, where entries much smaller than the largest one (float32 gradients
    with cancellation, ``p_y - q'_y``) are compared to ``rtol`` of the largest entry."""
    desired = np.asarray(desired, dtype=np.float64)
    largest = float(np.max(np.abs(desired[np.isfinite(desired)]), initial=0.0))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), desired, rtol=rtol, atol=max(atol, rtol * largest))


CASES = {
    "plain": {},
    "smoothed": {"epsilon": EPSILON},
    "others": {"epsilon": EPSILON, "prior": "others"},
    "prior": {"epsilon": EPSILON, "prior": "array"},
    "per_sample_eps": {"epsilon": "array"},
    "weighted_ignored": {"epsilon": EPSILON, "weight": True, "ignore_index": 1},
    "masked": {"epsilon": EPSILON, "where": True},
}
MASKED = [2, 5]


def case_inputs(case: str, data: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """Labels and NumPy-valued options of a case."""
    options = dict(CASES[case])
    y = data["labels"].copy()
    if options.get("prior") == "array":
        options["prior"] = data["prior"]
    if options.get("epsilon") == "array":
        options["epsilon"] = data["eps"]
    if options.get("weight"):
        options["weight"] = data["weight"]
    if options.get("where"):
        allowed = np.ones(K, dtype=bool)
        allowed[MASKED] = False
        options["where"] = allowed
        y = np.where(np.isin(y, MASKED), 0, y)
    if "ignore_index" in options:
        y[0] = options["ignore_index"]
    return y, options


@pytest.mark.slow
def test_importing_labelsmooth_imports_no_adapter() -> None:
    code = (
        "import sys, labelsmooth\n"
        "assert 'labelsmooth.jax' not in sys.modules and 'labelsmooth.torch' not in sys.modules\n"
        "assert 'jax' not in sys.modules and 'torch' not in sys.modules\n"
        "import labelsmooth.jax\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ================================================================= JAX


@pytest.mark.slow  # every test compiles JAX transforms
class TestJax:
    @pytest.fixture(autouse=True)
    def _modules(self) -> None:
        self.jax = pytest.importorskip("jax")
        self.jnp = pytest.importorskip("jax.numpy")
        self.ljax = pytest.importorskip("labelsmooth.jax")

    def as_jax(self, options: dict) -> dict:
        return {k: self.jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    @pytest.mark.parametrize("case", CASES)
    def test_value_and_gradient_equal_autodiff_of_plain_function(
        self, data: dict[str, np.ndarray], case: str, reduction: str
    ) -> None:
        jax, jnp = self.jax, self.jnp
        y, options = case_inputs(case, data)
        options = self.as_jax(options)
        z, yj = jnp.asarray(data["logits"]), jnp.asarray(y)
        ct = jnp.asarray(data["cotangent"]) if reduction == "none" else jnp.float32(1.3)

        def adapter(x):
            return self.ljax.cross_entropy(x, yj, reduction=reduction, **options)

        def plain(x):
            return ls.cross_entropy(x, yj, reduction=reduction, **options)

        ref_value, ref_vjp = jax.vjp(plain, z)
        (ref_grad,) = ref_vjp(ct)
        for transform in (lambda f: f, jax.jit):
            value, vjp = jax.vjp(transform(adapter), z)
            close(value, ref_value, rtol=1e-6, atol=1e-7)
            close(vjp(ct)[0], ref_grad, rtol=1e-6, atol=1e-8)
        # ... and both equal the definition (float64).
        ref_np = {k: np.asarray(v) if hasattr(v, "shape") else v for k, v in options.items()}
        def_loss, def_grad = cross_entropy_rows(data["logits"], y, reduction=reduction, **ref_np)
        close(ref_value, def_loss)
        scale = np.asarray(ct)[:, None] if reduction == "none" else float(ct)
        close(ref_grad, def_grad * scale)

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_vmap_and_per_example_gradients(self, data: dict[str, np.ndarray], reduction: str) -> None:
        jax, jnp = self.jax, self.jnp
        z3 = jnp.asarray(np.stack([data["logits"], -data["logits"]]))
        y3 = jnp.asarray(np.stack([data["labels"], data["labels"][::-1]]))
        w = jnp.asarray(data["weight"])

        def total(ce):
            return lambda a, b: jnp.sum(ce(a, b, epsilon=EPSILON, weight=w, reduction=reduction) ** 2)

        values, grads = jax.jit(jax.vmap(jax.value_and_grad(total(self.ljax.cross_entropy))))(z3, y3)
        for k in range(2):
            # The derivative of sum(loss^2) is 2 loss times the loss's gradient (per row for "none").
            loss, grad = cross_entropy_rows(
                np.asarray(z3[k]), np.asarray(y3[k]), epsilon=EPSILON, weight=data["weight"], reduction=reduction
            )
            close(values[k], np.sum(loss**2), rtol=1e-6)
            close(
                grads[k],
                2 * np.asarray(loss)[..., None] * grad if reduction == "none" else 2 * loss * grad,
                rtol=1e-5,
                atol=1e-8,
            )
        # vmap of grad over single samples: the per-example gradients p - q'.
        per_example = jax.vmap(jax.grad(lambda a, b: self.ljax.cross_entropy(a, b, epsilon=EPSILON, axis=0)))(
            jnp.asarray(data["logits"]), jnp.asarray(data["labels"])
        )
        close(per_example, cross_entropy_rows(data["logits"], data["labels"], epsilon=EPSILON, reduction="none")[1])

    def test_gradients_of_other_floating_inputs(self, data: dict[str, np.ndarray]) -> None:
        """Probability targets, epsilon, prior and weight: differentiated like the plain function."""
        jax, jnp = self.jax, self.jnp
        z = jnp.asarray(data["logits"])
        args = (
            z,
            jnp.asarray(data["probs"]),
            jnp.asarray(data["eps"]),
            jnp.asarray(data["prior"]),
            jnp.asarray(data["weight"]),
        )

        def make(ce):
            return lambda a, q, e, u, w: ce(a, q, epsilon=e, prior=u, weight=w)

        for argnums in [(0, 1, 2, 3, 4), (1,), (2, 4), (0, 3)]:
            got = jax.jit(jax.grad(make(self.ljax.cross_entropy), argnums=argnums))(*args)
            want = jax.grad(make(ls.cross_entropy), argnums=argnums)(*args)
            for g, r in zip(got, want):
                close(g, r, rtol=1e-5, atol=1e-7)

    def test_backward_reuses_the_forward_gradient(self, data: dict[str, np.ndarray]) -> None:
        """The backward pass is one multiplication: no exp is evaluated after the loss."""
        jax, jnp = self.jax, self.jnp
        z, y = jnp.asarray(data["logits"]), jnp.asarray(data["labels"])
        jaxpr = jax.make_jaxpr(jax.grad(lambda a: self.ljax.cross_entropy(a, y, epsilon=EPSILON)))(z)
        plain = jax.make_jaxpr(jax.grad(lambda a: ls.cross_entropy(a, y, epsilon=EPSILON)))(z)
        forward = jax.make_jaxpr(lambda a: ls.cross_entropy_with_grad(a, y, epsilon=EPSILON))(z)

        def count(closed, name):
            return str(closed.jaxpr).count(f" {name} ")

        assert count(jaxpr, "exp") == count(forward, "exp")
        assert count(jaxpr, "mul") <= count(forward, "mul") + 2
        assert count(plain, "mul") > count(jaxpr, "mul") - 2

    def test_training_loop_with_optax(self, rng: np.random.Generator) -> None:
        """50 SGD steps of a linear classifier: same trajectory as plain autodiff, loss falls."""
        jax, jnp = self.jax, self.jnp
        optax = pytest.importorskip("optax")
        x = rng.normal(size=(64, 5)).astype(np.float32)
        true_w = rng.normal(size=(5, 4)).astype(np.float32)
        y = jnp.asarray(np.argmax(x @ true_w + 0.3 * rng.normal(size=(64, 4)), axis=1))
        x = jnp.asarray(x)
        params0 = {"w": jnp.zeros((5, 4)), "b": jnp.zeros(4)}

        def run(ce):
            optimizer = optax.sgd(0.5)

            def loss_fn(params):
                return ce(x @ params["w"] + params["b"], y, epsilon=0.1)

            @jax.jit
            def step(params, state):
                loss, grads = jax.value_and_grad(loss_fn)(params)
                updates, state = optimizer.update(grads, state)
                return optax.apply_updates(params, updates), state, loss

            params, state, losses = params0, optimizer.init(params0), []
            for _ in range(50):
                params, state, loss = step(params, state)
                losses.append(float(loss))
            return params, losses

        params, losses = run(self.ljax.cross_entropy)
        ref_params, ref_losses = run(ls.cross_entropy)
        # optax's own smoothed loss on the initial logits (all zero): log K.
        assert losses[0] == pytest.approx(np.log(4), rel=1e-6)
        assert losses[-1] < 0.6 * losses[0]
        close(losses, ref_losses, rtol=1e-5)
        close(params["w"], ref_params["w"], rtol=1e-4, atol=1e-5)
        labels_1h = optax.smooth_labels(jax.nn.one_hot(y, 4), 0.1)
        optax_loss = optax.softmax_cross_entropy(x @ params["w"] + params["b"], labels_1h).mean()
        assert float(optax_loss) == pytest.approx(
            float(self.ljax.cross_entropy(x @ params["w"] + params["b"], y, epsilon=0.1)), rel=1e-5
        )


# ================================================================= PyTorch


class TestTorch:
    @pytest.fixture(autouse=True)
    def _modules(self) -> None:
        self.torch = pytest.importorskip("torch")
        self.ltorch = pytest.importorskip("labelsmooth.torch")

    def tensor(self, a: np.ndarray, grad: bool = False):
        t = self.torch.from_numpy(np.array(a))
        return t.requires_grad_() if grad else t

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    @pytest.mark.parametrize("case", CASES)
    def test_gradient_equals_autograd_of_plain_function(
        self, data: dict[str, np.ndarray], case: str, reduction: str
    ) -> None:
        torch = self.torch
        y, options = case_inputs(case, data)
        options = {k: self.tensor(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
        ct = self.tensor(data["cotangent"]) if reduction == "none" else torch.tensor(1.3)
        z1, z2 = self.tensor(data["logits"], True), self.tensor(data["logits"], True)
        adapter = self.ltorch.cross_entropy(z1, self.tensor(y), reduction=reduction, **options)
        plain = ls.cross_entropy(z2, self.tensor(y), reduction=reduction, **options)
        (g1,) = torch.autograd.grad(adapter, z1, ct)
        (g2,) = torch.autograd.grad(plain, z2, ct)
        close(adapter.detach(), plain.detach(), rtol=1e-6, atol=1e-7)
        close(g1, g2, rtol=1e-6, atol=1e-8)
        ref_np = {k: v.numpy() if hasattr(v, "numpy") else v for k, v in options.items()}
        def_loss, def_grad = cross_entropy_rows(data["logits"], y, reduction=reduction, **ref_np)
        close(g1, def_grad * (ct.numpy()[:, None] if reduction == "none" else 1.3))
        close(adapter.detach(), def_loss)

    def test_gradients_of_other_floating_inputs(self, data: dict[str, np.ndarray]) -> None:
        torch = self.torch
        names = ("logits", "probs", "eps", "prior", "weight")
        for wanted in [set(names), {"probs"}, {"eps", "weight"}, {"logits", "prior"}]:
            results = []
            for ce in (self.ltorch.cross_entropy, ls.cross_entropy):
                t = {n: self.tensor(data[n], n in wanted) for n in names}
                loss = ce(t["logits"], t["probs"], epsilon=t["eps"], prior=t["prior"], weight=t["weight"])
                results.append(torch.autograd.grad(loss, [t[n] for n in names if n in wanted]))
            for g, r in zip(*results):
                close(g, r, rtol=1e-5, atol=1e-7)

    def test_saved_tensors_are_no_larger_than_native(self, data: dict[str, np.ndarray]) -> None:
        """The adapter keeps the analytic gradient, and the logits and labels that an exact
        double backward needs: no more than PyTorch's own loss, less than autodiff."""
        torch = self.torch

        def saved_elements(ce) -> int:
            sizes = []

            def pack(t):
                sizes.append(t.numel())
                return t

            z = self.tensor(data["logits"], True)
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                ce(z, self.tensor(data["labels"]))
            return sum(sizes)

        def native(z, y):
            return torch.nn.functional.cross_entropy(z, y, label_smoothing=EPSILON)

        # Saved: references to the logits and labels; the gradient (N x K) is kept on the
        # autograd context, outside the saved-tensor hooks, and counted here by hand.
        adapter = saved_elements(lambda z, y: self.ltorch.cross_entropy(z, y, epsilon=EPSILON)) + N * K
        assert adapter == 2 * N * K + N
        assert adapter <= saved_elements(native)
        # The plain function on tensors that require grad is the same autograd function.
        assert saved_elements(lambda z, y: ls.cross_entropy(z, y, epsilon=EPSILON)) + N * K == adapter

    # ---- the nn.Module

    MODULE_CASES = (
        {},
        {"label_smoothing": 0.1},
        {"label_smoothing": 0.2, "reduction": "sum"},
        {"label_smoothing": 0.2, "reduction": "none"},
        {"weight": True, "label_smoothing": 0.3},
        {"weight": True, "label_smoothing": 0.3, "ignore_index": 2},
        {"label_smoothing": 0.1, "ignore_index": 0, "reduction": "none"},
    )

    @pytest.mark.parametrize("kwargs", MODULE_CASES, ids=str)
    @pytest.mark.parametrize("shape", [(N, K), (3, K, 4), (K,)], ids=["NC", "NCd", "C"])
    def test_module_equals_torch_cross_entropy_loss(
        self, rng: np.random.Generator, kwargs: dict, shape: tuple[int, ...]
    ) -> None:
        torch = self.torch
        kwargs = dict(kwargs)
        if kwargs.get("weight"):
            kwargs["weight"] = torch.from_numpy(rng.uniform(0.3, 2.0, size=K))
        z_np = rng.normal(scale=2.0, size=shape)
        target_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        y_np = rng.integers(0, K, size=target_shape)
        if y_np.ndim:
            y_np.reshape(-1)[0] = kwargs.get("ignore_index", -100)  # -100: torch's default
        ours, theirs = self.ltorch.CrossEntropyLoss(**kwargs), torch.nn.CrossEntropyLoss(**kwargs)
        z1, z2 = self.tensor(z_np, True), self.tensor(z_np, True)
        a, b = ours(z1, torch.from_numpy(y_np)), theirs(z2, torch.from_numpy(y_np))
        assert a.shape == b.shape and a.dtype == b.dtype
        close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)
        ct = torch.from_numpy(rng.normal(size=tuple(a.shape)))
        close(torch.autograd.grad(a, z1, ct)[0], torch.autograd.grad(b, z2, ct)[0], rtol=1e-11, atol=1e-14)

    def test_module_probability_targets_ignore_ignore_index(self, data: dict[str, np.ndarray]) -> None:
        torch = self.torch
        w = self.tensor(data["weight"])
        z1, z2 = self.tensor(data["logits"], True), self.tensor(data["logits"], True)
        q = self.tensor(data["probs"])
        a = self.ltorch.CrossEntropyLoss(w, label_smoothing=0.2)(z1, q)
        b = torch.nn.CrossEntropyLoss(w, label_smoothing=0.2)(z2, q)
        close(a.detach(), b.detach(), rtol=1e-6)
        close(torch.autograd.grad(a, z1)[0], torch.autograd.grad(b, z2)[0], rtol=1e-5, atol=1e-8)

    def test_module_extra_options(self, data: dict[str, np.ndarray]) -> None:
        torch = self.torch
        z, y = self.tensor(data["logits"]), self.tensor(data["labels"])
        loss = self.ltorch.CrossEntropyLoss(epsilon=0.2, prior="others", reduction="none")(z, y)
        close(
            loss, cross_entropy_rows(data["logits"], data["labels"], epsilon=0.2, prior="others", reduction="none")[0]
        )
        prior = self.tensor(data["prior"])
        module = self.ltorch.CrossEntropyLoss(epsilon=self.tensor(data["eps"]), prior=prior)
        assert {name for name, _ in module.named_buffers()} == {"epsilon", "prior"}
        close(
            module(z, y),
            cross_entropy_rows(data["logits"], data["labels"], epsilon=data["eps"], prior=data["prior"])[0],
        )
        allowed = np.ones(K, dtype=bool)
        allowed[MASKED] = False
        y_ok = np.where(np.isin(data["labels"], MASKED), 0, data["labels"])
        z_masked = data["logits"].copy()
        z_masked[:, MASKED[0]] = -np.inf
        got = self.ltorch.CrossEntropyLoss(label_smoothing=0.1)(
            self.tensor(z_masked), self.tensor(y_ok), where=torch.from_numpy(allowed)
        )
        close(got, cross_entropy_rows(z_masked, y_ok, epsilon=0.1, where=allowed)[0])
        assert repr(module).startswith("CrossEntropyLoss(")
        assert self.ltorch.CrossEntropyLoss(label_smoothing=0.3).label_smoothing == 0.3

    def test_module_rejects_bad_options(self) -> None:
        with pytest.raises(ValueError, match="label_smoothing or epsilon"):
            self.ltorch.CrossEntropyLoss(label_smoothing=0.1, epsilon=0.2)
        with pytest.raises(ValueError, match="epsilon"):
            self.ltorch.CrossEntropyLoss(label_smoothing=1.5)
        with pytest.raises(ValueError, match="reduction"):
            self.ltorch.CrossEntropyLoss(reduction="avg")
        with pytest.raises(ValueError, match="prior"):
            self.ltorch.CrossEntropyLoss(prior="uniform")

    def test_training_loop(self, rng: np.random.Generator) -> None:
        """50 SGD steps: the adapter module follows torch's native loss and the loss falls."""
        torch = self.torch
        x = torch.from_numpy(rng.normal(size=(64, 5)).astype(np.float32))
        true_w = torch.from_numpy(rng.normal(size=(5, 4)).astype(np.float32))
        y = torch.argmax(x @ true_w + 0.3 * torch.from_numpy(rng.normal(size=(64, 4)).astype(np.float32)), dim=1)

        def run(criterion):
            torch.manual_seed(0)
            model = torch.nn.Linear(5, 4)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
            losses = []
            for _ in range(50):
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            return model, losses

        model, losses = run(self.ltorch.CrossEntropyLoss(label_smoothing=0.1))
        ref_model, ref_losses = run(torch.nn.CrossEntropyLoss(label_smoothing=0.1))
        assert losses[-1] < 0.6 * losses[0]
        close(losses, ref_losses, rtol=1e-5)
        close(model.weight.detach(), ref_model.weight.detach(), rtol=1e-4, atol=1e-5)
