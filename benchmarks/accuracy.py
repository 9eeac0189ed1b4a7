"""Accuracy of labelsmooth's smoothed cross-entropy against a 40-digit mpmath reference.

Run ``python benchmarks/accuracy.py``. For every input family below it prints, against
``labelsmooth.testing.reference_cross_entropy`` (mpmath, 40 digits, on the exact values of
the inputs):

- float64: the largest relative error of the per-sample losses (``reduction="none"``) and
  of the ``"mean"``, and the largest absolute error of the gradient in units of float64
  machine epsilon (per sample; the ``"mean"`` gradient is scaled back by ``N``), for
  labelsmooth on NumPy, PyTorch and JAX (x64);
- float32 (float32 inputs, measured against the exact value of those float32 inputs): the
  largest error in float32 ulps and the relative error, of labelsmooth on NumPy, PyTorch
  and JAX (default 32-bit mode, and 64-bit mode), next to PyTorch ``F.cross_entropy(label_smoothing=)`` and optax
  ``softmax_cross_entropy(z, smooth_labels(one_hot(y), eps))`` under ``jax.jit``.

Goals: float64 loss relative error <= 1e-13, float64 gradient error <= 4 eps, float32 loss
error no larger than the best of PyTorch and optax.

The "K = 10**6, equal logits" family has rows of a million logits taking only a few
distinct values; its reference groups the equal values (``count * exp(v)`` in mpmath), so it
is exact without a million mpmath exponentials.

A third table measures ``kl_divergence`` near its optimum (logits ``log q' + delta N(0, 1)``)
against a 50-digit mpmath KL, next to the difference ``H(q', p) - H(q')`` it used to be
computed as. Goal: relative error within ``4 u kappa``, ``kappa`` the conditioning of the
divergence at those inputs (one rounding of each ``log q'_k``, ``z_k - max z`` and
``log s`` moves it by ``u kappa`` relative); no float64 evaluation does better there.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import labelsmooth as ls
from labelsmooth.testing import reference_cross_entropy_with_grad

EPS64 = float(np.finfo(np.float64).eps)
U64 = EPS64 / 2


@dataclass(frozen=True)
class AccuracyCase:
    name: str
    num_classes: int
    epsilon: float
    rows: int
    make: Callable[[np.random.Generator, int, int], np.ndarray]  # (rng, rows, K) -> logits
    # (case, z, y) -> {"none": (loss, grad), "mean": (loss, grad)}; None: the mpmath reference
    exact: Callable[..., dict[str, tuple[np.ndarray, np.ndarray]]] | None = None

    def inputs(self, seed: int = 20161205) -> tuple[np.ndarray, np.ndarray]:
        """float64 logits of shape (rows, K) and int64 labels."""
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, self.num_classes, size=self.rows)
        logits = self.make(rng, self.rows, self.num_classes)
        if self.name.startswith("confident"):
            logits = logits + 60.0 * (np.arange(self.num_classes) == labels[:, None])
        return logits, labels


def _normal(std: float, offset: float = 0.0) -> Callable[[np.random.Generator, int, int], np.ndarray]:
    return lambda rng, rows, k: offset + std * rng.standard_normal((rows, k))


def _equal_logits(rng: np.random.Generator, rows: int, k: int) -> np.ndarray:
    """Rows of ``k`` logits with a handful of distinct values each (ties everywhere)."""
    z = np.zeros((rows, k))
    for i in range(rows):
        kind = i % 4
        if kind == 1:
            z[i] = 0.1
            z[i, rng.choice(k, size=1000, replace=False)] = 2.5
        elif kind == 2:
            z[i] = rng.choice([-1.0, 0.0, 0.5], size=k)
        elif kind == 3:
            z[i] = 1e6 + rng.choice([0.0, 0.25], size=k, p=[0.99, 0.01])
    return z


def grouped_reference(
    case: AccuracyCase, z: np.ndarray, y: np.ndarray, dps: int = 40
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Exact loss and gradient of rows with few distinct values, from the definitions.

    ``lse = log sum_v n_v exp(v)`` and ``sum_k z_k = sum_v n_v v`` over the distinct values
    ``v`` (``n_v`` of each) in mpmath; the loss is ``(1 - eps)(lse - z_y) + eps(lse - sum_k z_k / K)``
    and the gradient ``exp(z_k - lse) - q'_k``, one mpmath value per distinct ``(v, k == y)``.
    """
    import mpmath

    n, k = z.shape
    loss = np.empty(n)
    grad = np.empty(z.shape)
    grad_mean = np.empty(z.shape)
    losses = []
    with mpmath.workdps(dps):
        eps = mpmath.mpf(case.epsilon)
        for i in range(n):
            values, inverse, counts = np.unique(z[i].astype(np.float64), return_inverse=True, return_counts=True)
            vs = [mpmath.mpf(float(v)) for v in values]
            lse = mpmath.log(mpmath.fsum(int(c) * mpmath.exp(v) for v, c in zip(vs, counts)))
            mean_z = mpmath.fsum(int(c) * v for v, c in zip(vs, counts)) / k
            z_y = mpmath.mpf(float(z[i, y[i]]))
            losses.append((1 - eps) * (lse - z_y) + eps * (lse - mean_z))
            loss[i] = float(losses[-1])
            p = [mpmath.exp(v - lse) for v in vs]
            grad[i] = np.array([float(pv - eps / k) for pv in p])[inverse]
            grad_mean[i] = np.array([float((pv - eps / k) / n) for pv in p])[inverse]
            p_y = p[inverse[y[i]]]
            grad[i, y[i]] = float(p_y - (1 - eps) - eps / k)
            grad_mean[i, y[i]] = float((p_y - (1 - eps) - eps / k) / n)
        mean = np.asarray(float(mpmath.fsum(losses) / n))
    return {"none": (loss, grad), "mean": (mean, grad_mean)}


CASES = (
    AccuracyCase("wide (std 30)", 50, 0.1, 4, _normal(30.0)),
    AccuracyCase("confident (+60)", 40, 0.1, 4, _normal(1.0)),
    AccuracyCase("confident (+60), eps=0", 40, 0.0, 4, _normal(1.0)),
    AccuracyCase("offset (1e6 + N(0,1))", 64, 0.1, 4, _normal(1.0, 1e6)),
    AccuracyCase("huge scale (std 1e4)", 50, 0.1, 4, _normal(1e4)),
    AccuracyCase("tiny eps (1e-9)", 50, 1e-9, 4, _normal(3.0)),
    AccuracyCase("many classes (K=20000)", 20000, 0.1, 2, _normal(3.0)),
    AccuracyCase("K = 10**6, equal logits", 10**6, 0.1, 4, _equal_logits, grouped_reference),
)


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# --- the implementations measured ------------------------------------------------------------
# Each takes (float logits as NumPy, int64 labels as NumPy, eps, reduction) and returns
# (loss, grad) as float64 NumPy arrays; with grad=False only the loss is computed (grad None).


def labelsmooth_numpy(z: np.ndarray, y: np.ndarray, eps: float, reduction: str, grad: bool = True) -> tuple[Any, Any]:
    loss = np.asarray(ls.cross_entropy(z, y, epsilon=eps, reduction=reduction), dtype=np.float64)
    if not grad:
        return loss, None
    return loss, np.asarray(ls.cross_entropy_grad(z, y, epsilon=eps, reduction=reduction), dtype=np.float64)


def labelsmooth_torch(z: np.ndarray, y: np.ndarray, eps: float, reduction: str, grad: bool = True) -> tuple[Any, Any]:
    import torch

    zt, yt = torch.from_numpy(z.copy()), torch.from_numpy(y.copy())
    loss = ls.cross_entropy(zt, yt, epsilon=eps, reduction=reduction).double().numpy()
    if not grad:
        return loss, None
    return loss, ls.cross_entropy_grad(zt, yt, epsilon=eps, reduction=reduction).double().numpy()


def labelsmooth_jax(
    z: np.ndarray, y: np.ndarray, eps: float, reduction: str, grad: bool = True, x64: bool = False
) -> tuple[Any, Any]:
    """labelsmooth on JAX arrays under ``jax.jit``.

    JAX's default (no ``jax_enable_x64``) has no float64, so float32 inputs are then also
    accumulated in float32; float64 inputs always run with 64-bit mode on.
    """
    import jax
    import jax.numpy as jnp

    def run() -> tuple[Any, Any]:
        zj, yj = jnp.asarray(z), jnp.asarray(y)
        if not grad:
            loss = jax.jit(lambda a, b: ls.cross_entropy(a, b, epsilon=eps, reduction=reduction))(zj, yj)
            return np.asarray(loss, dtype=np.float64), None
        fn = jax.jit(lambda a, b: ls.cross_entropy_with_grad(a, b, epsilon=eps, reduction=reduction))
        loss, gradient = fn(zj, yj)
        return np.asarray(loss, dtype=np.float64), np.asarray(gradient, dtype=np.float64)

    if x64 or z.dtype == np.float64:
        with jax.enable_x64(True):
            return run()
    return run()


def labelsmooth_jax_x64(z: np.ndarray, y: np.ndarray, eps: float, reduction: str, grad: bool = True) -> tuple[Any, Any]:
    return labelsmooth_jax(z, y, eps, reduction, grad=grad, x64=True)


def pytorch_cross_entropy(
    z: np.ndarray, y: np.ndarray, eps: float, reduction: str, grad: bool = True
) -> tuple[Any, Any]:
    import torch
    import torch.nn.functional as F

    zt = torch.from_numpy(z.copy()).requires_grad_(grad)
    loss = F.cross_entropy(zt, torch.from_numpy(y.copy()), label_smoothing=eps, reduction=reduction)
    if not grad:
        return loss.detach().double().numpy(), None
    (gradient,) = torch.autograd.grad(loss.sum(), zt)
    return loss.detach().double().numpy(), gradient.double().numpy()


def optax_cross_entropy(z: np.ndarray, y: np.ndarray, eps: float, reduction: str, grad: bool = True) -> tuple[Any, Any]:
    import jax
    import jax.numpy as jnp
    import optax

    def loss_fn(a: Any, b: Any) -> Any:
        targets = optax.smooth_labels(jax.nn.one_hot(b, a.shape[-1], dtype=a.dtype), eps)
        per_sample = optax.softmax_cross_entropy(a, targets)
        return per_sample if reduction == "none" else jnp.mean(per_sample)

    def run() -> tuple[Any, Any]:
        zj, yj = jnp.asarray(z), jnp.asarray(y)
        loss = np.asarray(jax.jit(loss_fn)(zj, yj), dtype=np.float64)
        if not grad:
            return loss, None
        gradient = jax.jit(jax.grad(lambda a, b: jnp.sum(loss_fn(a, b))))(zj, yj)
        return loss, np.asarray(gradient, dtype=np.float64)

    if z.dtype == np.float64:
        with jax.enable_x64(True):
            return run()
    return run()


LABELSMOOTH_PATHS = {
    "labelsmooth[numpy]": (labelsmooth_numpy, "numpy"),
    "labelsmooth[torch]": (labelsmooth_torch, "torch"),
    "labelsmooth[jax]": (labelsmooth_jax, "jax"),
}
# float32 only: JAX in its default 32-bit mode, and with 64-bit mode on.
LABELSMOOTH_PATHS_32 = {
    **LABELSMOOTH_PATHS,
    "labelsmooth[jax, x64]": (labelsmooth_jax_x64, "jax"),
}
FRAMEWORKS = {
    "PyTorch F.cross_entropy": (pytorch_cross_entropy, "torch"),
    "optax (jit)": (optax_cross_entropy, "optax"),
}


# --- error measures ---------------------------------------------------------------------------


def relative_error(actual: Any, exact: Any) -> float:
    actual, exact = np.asarray(actual, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    return float(np.max(np.abs(actual - exact) / np.abs(exact)))


def float32_ulps(actual: Any, exact: Any) -> float:
    """Largest ``|actual - exact|`` in units of the float32 spacing at ``exact``."""
    actual, exact = np.asarray(actual, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return float(np.max(np.abs(actual - exact) / spacing))


@dataclass
class Float64Result:
    loss_none: float  # relative error, max over samples
    loss_mean: float
    grad_none: float  # absolute error / eps64
    grad_mean: float  # absolute error * N / eps64


@dataclass
class Float32Result:
    ulps_none: float
    ulps_mean: float
    rel_none: float
    rel_mean: float


def reference(case: AccuracyCase, z: np.ndarray, y: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if case.exact is not None:
        return case.exact(case, z, y)
    return {r: reference_cross_entropy_with_grad(z, y, epsilon=case.epsilon, reduction=r) for r in ("none", "mean")}


def measure_float64(
    impl: Callable[..., tuple[Any, Any]], case: AccuracyCase, z: np.ndarray, y: np.ndarray, exact: dict[str, Any]
) -> Float64Result:
    loss_none, grad_none = impl(z, y, case.epsilon, "none")
    loss_mean, grad_mean = impl(z, y, case.epsilon, "mean")
    n = z.shape[0]
    return Float64Result(
        loss_none=relative_error(loss_none, exact["none"][0]),
        loss_mean=relative_error(loss_mean, exact["mean"][0]),
        grad_none=float(np.max(np.abs(grad_none - exact["none"][1]))) / EPS64,
        grad_mean=float(np.max(np.abs(grad_mean - exact["mean"][1]))) * n / EPS64,
    )


def measure_float32(
    impl: Callable[..., tuple[Any, Any]], case: AccuracyCase, z32: np.ndarray, y: np.ndarray, exact: dict[str, Any]
) -> Float32Result:
    loss_none, _ = impl(z32, y, case.epsilon, "none", grad=False)
    loss_mean, _ = impl(z32, y, case.epsilon, "mean", grad=False)
    return Float32Result(
        ulps_none=float32_ulps(loss_none, exact["none"][0]),
        ulps_mean=float32_ulps(loss_mean, exact["mean"][0]),
        rel_none=relative_error(loss_none, exact["none"][0]),
        rel_mean=relative_error(loss_mean, exact["mean"][0]),
    )


# --- kl_divergence near its optimum -------------------------------------------------------------


@dataclass(frozen=True)
class KLCase:
    name: str
    delta: float  # logits = log q' + delta * N(0, 1)
    num_classes: int = 5
    epsilon: float = 0.1
    rows: int = 6

    def targets(self, labels: np.ndarray) -> np.ndarray:
        """q' written out: 1 - eps + eps/K on the label, eps/K elsewhere (float64)."""
        k = self.num_classes
        return (1.0 - self.epsilon) * (np.arange(k) == labels[:, None]) + self.epsilon / k

    def inputs(self, seed: int = 20161205) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, self.num_classes, size=self.rows)
        logits = np.log(self.targets(labels)) + self.delta * rng.standard_normal((self.rows, self.num_classes))
        return logits, labels


KL_CASES = (
    KLCase("KL near optimum (1e-6)", 1e-6),
    KLCase("KL near optimum (4e-5)", 4e-5),
    KLCase("KL near optimum (1e-3)", 1e-3),
)


def exact_kl(case: KLCase, z: np.ndarray, y: np.ndarray, dps: int = 50) -> tuple[list[Any], np.ndarray]:
    """Per-sample ``sum_k q'_k log(q'_k / p_k)`` in mpmath and the conditioning ``kappa``.

    ``q'`` is formed in mpmath from the exact value of ``epsilon``. ``kappa`` is
    ``sum_k |q'_k - p_k| (|log q'_k| + |z_k - max z| + |log s| + 1) / KL``: rounding each of
    those quantities once (what any float64 evaluation does) moves the divergence by up to
    ``u kappa`` relative, since ``dKL/dr_k = q'_k - p_k`` for ``r_k = log q'_k - log p_k``.
    """
    import mpmath

    exact, kappa = [], []
    with mpmath.workdps(dps):
        eps, k = mpmath.mpf(case.epsilon), case.num_classes
        for row, label in zip(z, y):
            zs = [mpmath.mpf(float(v)) for v in row]
            q = [(1 - eps) * (j == label) + eps / k for j in range(k)]
            top = max(zs)
            lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in zs))
            value = mpmath.fsum(qj * (mpmath.log(qj) - (zj - lse)) for qj, zj in zip(q, zs))
            spread = mpmath.fsum(
                abs(qj - mpmath.exp(zj - lse)) * (abs(mpmath.log(qj)) + abs(zj - top) + abs(lse - top) + 1)
                for qj, zj in zip(q, zs)
            )
            exact.append(value)
            kappa.append(float(spread / value))
    return exact, np.array(kappa)


def kl_numpy(z: np.ndarray, y: np.ndarray, eps: float, reduction: str) -> np.ndarray:
    return np.asarray(ls.kl_divergence(z, y, epsilon=eps, reduction=reduction), dtype=np.float64)


def kl_torch(z: np.ndarray, y: np.ndarray, eps: float, reduction: str) -> np.ndarray:
    import torch

    result = ls.kl_divergence(torch.from_numpy(z.copy()), torch.from_numpy(y.copy()), epsilon=eps, reduction=reduction)
    return result.double().numpy()


def kl_jax(z: np.ndarray, y: np.ndarray, eps: float, reduction: str) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        fn = jax.jit(lambda a, b: ls.kl_divergence(a, b, epsilon=eps, reduction=reduction))
        return np.asarray(fn(jnp.asarray(z), jnp.asarray(y)), dtype=np.float64)


def kl_as_difference(z: np.ndarray, y: np.ndarray, eps: float, reduction: str) -> np.ndarray:
    """The v1 evaluation, ``H(q', p) - H(q')``: labelsmooth's cross-entropy minus the entropy."""
    k = z.shape[-1]
    q = (1.0 - eps) * (np.arange(k) == y[:, None]) + eps / k
    entropy = -np.sum(q * np.log(q), axis=-1)
    per_sample = np.asarray(ls.cross_entropy(z, y, epsilon=eps, reduction="none")) - entropy
    return per_sample if reduction == "none" else np.asarray(per_sample.mean())


KL_PATHS = {
    "kl_divergence[numpy]": (kl_numpy, "numpy"),
    "kl_divergence[torch]": (kl_torch, "torch"),
    "kl_divergence[jax]": (kl_jax, "jax"),
    "H(q', p) - H(q') (v1)": (kl_as_difference, "numpy"),
}


@dataclass
class KLResult:
    divergence: float  # median exact KL of the rows
    bound: float  # 4 u kappa, max over rows
    rel_none: float
    rel_mean: float


def measure_kl(
    impl: Callable[..., np.ndarray], case: KLCase, z: np.ndarray, y: np.ndarray, exact: list[Any], kappa: np.ndarray
) -> KLResult:
    import mpmath

    with mpmath.workdps(50):
        none = impl(z, y, case.epsilon, "none")
        rel_none = max(float(abs(mpmath.mpf(float(a)) - e) / e) for a, e in zip(none, exact))
        exact_mean = mpmath.fsum(exact) / len(exact)
        mean = float(impl(z, y, case.epsilon, "mean"))
        rel_mean = float(abs(mpmath.mpf(mean) - exact_mean) / exact_mean)
    return KLResult(float(np.median([float(e) for e in exact])), float(4 * U64 * kappa.max()), rel_none, rel_mean)


def _available(table: dict[str, tuple[Callable[..., Any], str]]) -> dict[str, Callable[..., Any]]:
    return {name: fn for name, (fn, module) in table.items() if has(module)}


def main() -> int:
    paths64 = _available(LABELSMOOTH_PATHS)
    paths32 = {**_available(LABELSMOOTH_PATHS_32), **_available(FRAMEWORKS)}
    rows64: list[tuple[str, str, Float64Result]] = []
    rows32: list[tuple[str, str, Float32Result]] = []
    for case in CASES:
        z, y = case.inputs()
        exact64 = reference(case, z, y)
        for name, impl in paths64.items():
            rows64.append((case.name, name, measure_float64(impl, case, z, y, exact64)))
        z32 = z.astype(np.float32)
        exact32 = reference(case, z32, y)
        for name, impl in paths32.items():
            rows32.append((case.name, name, measure_float32(impl, case, z32, y, exact32)))

    print("float64 inputs, against 40-digit mpmath (goals: loss rel <= 1e-13, grad <= 4 eps)\n")
    columns = "loss rel (none) | loss rel (mean) | grad [eps] (none) | grad [eps/N] (mean)"
    print(f"| {'case':<24} | {'implementation':<20} | {columns} |")
    print(f"|{'-' * 26}|{'-' * 22}|-----------------|-----------------|-------------------|---------------------|")
    for case_name, name, r in rows64:
        print(
            f"| {case_name:<24} | {name:<20} | {r.loss_none:15.2e} | {r.loss_mean:15.2e} | "
            f"{r.grad_none:17.2f} | {r.grad_mean:19.2f} |"
        )
    print(
        "\nfloat32 inputs, against 40-digit mpmath of the same float32 values "
        "(goal: labelsmooth <= best of PyTorch and optax)\n"
    )
    print(f"| {'case':<24} | {'implementation':<24} | ulps (none) | ulps (mean) | rel (none) | rel (mean) |")
    print(f"|{'-' * 26}|{'-' * 26}|-------------|-------------|------------|------------|")
    for case_name, name, r in rows32:
        print(
            f"| {case_name:<24} | {name:<24} | {r.ulps_none:11.3g} | {r.ulps_mean:11.3g} | "
            f"{r.rel_none:10.2e} | {r.rel_mean:10.2e} |"
        )
    print_kl_table()
    return 0


def print_kl_table() -> None:
    print(
        "\nkl_divergence near its optimum, float64, logits log q' + delta N(0, 1), K = 5, eps = 0.1, "
        "against 50-digit mpmath (goal: rel <= 4 u kappa, the conditioning bound)\n"
    )
    print(f"| {'case':<24} | {'implementation':<22} | KL (median) | 4 u kappa | rel (none) | rel (mean) | goal met |")
    print(f"|{'-' * 26}|{'-' * 24}|-------------|-----------|------------|------------|----------|")
    for case in KL_CASES:
        z, y = case.inputs()
        exact, kappa = exact_kl(case, z, y)
        for name, impl in _available(KL_PATHS).items():
            r = measure_kl(impl, case, z, y, exact, kappa)
            met = "yes" if max(r.rel_none, r.rel_mean) <= r.bound else "no"
            print(
                f"| {case.name:<24} | {name:<22} | {r.divergence:11.2e} | {r.bound:9.1e} | "
                f"{r.rel_none:10.2e} | {r.rel_mean:10.2e} | {met:<8} |"
            )


if __name__ == "__main__":
    sys.exit(main())
