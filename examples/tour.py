"""One call, every array library: labelsmooth on NumPy, JAX, PyTorch, array-api-strict, Dask, CuPy.

The same logits and labels (float32, as most frameworks train) are handed to the same
functions as arrays of each library installed here; labelsmooth works in that library
(results are its own arrays, on its device, in float32) and the results are printed side
by side with their difference from a float64 NumPy reference:

* ``cross_entropy_with_grad(logits, labels, epsilon=0.1)``: the smoothed loss and its
  analytic gradient ``(p - q') / N``;
* ``binary_cross_entropy(logits, multi_hot, epsilon=0.1)``: the sigmoid version;
* ``metrics.expected_calibration_error(softmax(logits), labels)``.

JAX runs both eagerly and under ``jax.jit``; Dask builds a lazy graph that is computed
only when printed. Libraries that are not installed are skipped. The script exits with
status 1 if any library disagrees with the reference by more than float32 rounding.

Usage::

    python examples/tour.py

It runs in a few seconds (``LABELSMOOTH_EXAMPLE_FAST=1`` changes nothing).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

import labelsmooth as ls
from labelsmooth.metrics import expected_calibration_error

EPSILON = 0.1
# float32 inputs, float64 reference: a few float32 ulps of the loss.
RTOL = 1e-5


def compute(logits: Any, labels: Any, multi_hot: Any) -> tuple[Any, Any, Any, Any]:
    loss, grad = ls.cross_entropy_with_grad(logits, labels, epsilon=EPSILON)
    binary = ls.binary_cross_entropy(logits, multi_hot, epsilon=EPSILON)
    ece = expected_calibration_error(ls.softmax(logits), labels)
    return loss, grad, binary, ece


def libraries() -> list[tuple[str, Callable[[np.ndarray], Any], Callable[[Any], np.ndarray], Callable[..., Any]]]:
    """(name, to the library, back to NumPy, how to call) for every library installed here."""
    found: list[tuple[str, Callable[[np.ndarray], Any], Callable[[Any], np.ndarray], Callable[..., Any]]] = [
        ("NumPy", np.asarray, np.asarray, compute)
    ]
    if importlib.util.find_spec("jax"):
        import jax
        import jax.numpy as jnp

        found.append(("JAX", jnp.asarray, np.asarray, compute))
        found.append(("JAX, jax.jit", jnp.asarray, np.asarray, jax.jit(compute)))
    if importlib.util.find_spec("torch"):
        import torch

        found.append(("PyTorch", torch.from_numpy, lambda t: t.detach().cpu().numpy(), compute))
        if torch.cuda.is_available():
            found.append(
                ("PyTorch, CUDA", lambda a: torch.from_numpy(a).cuda(), lambda t: t.detach().cpu().numpy(), compute)
            )
    if importlib.util.find_spec("array_api_strict"):
        import array_api_strict

        found.append(("array-api-strict", array_api_strict.asarray, np.asarray, compute))
    if importlib.util.find_spec("dask"):
        import dask.array as da

        found.append(
            (
                "Dask (lazy)",
                lambda a: da.from_array(a, chunks=(4, *a.shape[1:])),
                lambda x: np.asarray(x.compute()),
                compute,
            )
        )
    if importlib.util.find_spec("cupy"):
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                found.append(("CuPy", cupy.asarray, cupy.asnumpy, compute))
        except Exception:  # CuPy without a usable GPU
            pass
    return found


def main() -> int:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(12, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=12)
    multi_hot = (rng.random((12, 5)) < 0.3).astype(np.float32)

    reference = [
        np.asarray(v, dtype=np.float64)
        for v in compute(logits.astype(np.float64), labels, multi_hot.astype(np.float64))
    ]
    print(f"logits {logits.shape} float32, labels {labels.shape}, epsilon = {EPSILON}")
    print(f"float64 NumPy reference: loss {reference[0]:.9f}, binary {reference[2]:.9f}, ECE {reference[3]:.9f}")
    print()
    header = (
        f"{'library':<17} {'result type':<28} {'dtype':<8} {'loss':>12} {'binary':>12} {'ECE':>12} "
        f"{'max rel. diff':>13}"
    )
    print(header)
    print("-" * len(header))
    worst_overall = 0.0
    for name, to_library, to_numpy, call in libraries():
        results = call(to_library(logits), to_library(labels), to_library(multi_hot))
        kind = type(results[0])
        type_name = f"{kind.__module__.split('.')[0]}.{kind.__name__}"
        values = [to_numpy(v) for v in results]
        worst = max(
            float(np.max(np.abs(v - r)) / max(float(np.max(np.abs(r))), 1e-30)) for v, r in zip(values, reference)
        )
        worst_overall = max(worst_overall, worst)
        print(
            f"{name:<17} {type_name:<28} {values[0].dtype!s:<8} {float(values[0]):>12.7f} "
            f"{float(values[2]):>12.7f} {float(values[3]):>12.7f} {worst:>13.1e}"
        )
    print()
    print("max rel. diff: largest difference of loss, gradient, binary loss and ECE from the")
    print("float64 reference, relative to the reference's largest entry.")
    if worst_overall > RTOL:
        print(f"DISAGREEMENT: {worst_overall:.1e} > {RTOL:.0e}")
        return 1
    print(f"All libraries agree to within float32 rounding ({worst_overall:.1e} <= {RTOL:.0e}).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
