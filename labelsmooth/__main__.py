"""Command line: ``python -m labelsmooth demo | check | --version`` (also ``labelsmooth ...``).

``demo`` works the documented examples through the library and explains them; ``check``
lists the array libraries installed here and measures how closely each installed
framework's own label-smoothing loss agrees with labelsmooth under that framework's
convention. Frameworks are imported by ``check`` only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["main"]

LIBRARIES = (
    ("numpy", "NumPy"),
    ("array_api_compat", "array-api-compat"),
    ("array_api_strict", "array-api-strict"),
    ("jax", "JAX"),
    ("torch", "PyTorch"),
    ("dask", "Dask"),
    ("cupy", "CuPy"),
    ("optax", "optax"),
    ("keras", "Keras"),
    ("tensorflow", "TensorFlow"),
    ("mpmath", "mpmath"),
)

# Largest relative error accepted for a comparison run in this dtype.
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


def _library_version(module: str) -> str | None:
    """Version of an installed module without importing it (None when not installed)."""
    if importlib.util.find_spec(module) is None:
        return None
    distributions = importlib.metadata.packages_distributions().get(module, [module])
    for distribution in distributions:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(distribution)
    return "installed (version unknown)"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(header), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _demo(_: argparse.Namespace) -> int:
    import numpy as np

    import labelsmooth as ls

    smoothed = ls.smooth_labels(np.array([0.0, 0.0, 1.0]), 0.1)
    logits = np.log(np.array([[0.1, 0.1, 0.1, 0.36, 0.34]]))
    label = np.array([3])
    plain = float(ls.cross_entropy(logits, label))
    smooth = float(ls.cross_entropy(logits, label, epsilon=0.1))
    targets = ls.soft_targets(label, 5, epsilon=0.1)
    grad = ls.cross_entropy_grad(logits, label, epsilon=0.1)
    divergence = float(ls.kl_divergence(logits, label, epsilon=0.1))
    bce = float(ls.binary_cross_entropy(np.array([2.0]), np.array([1.0]), epsilon=0.1))
    fmt = np.array2string

    print(f"labelsmooth {ls.__version__}: label smoothing, worked through")
    print()
    print("Label smoothing trains against q' = (1 - eps) q + eps u instead of the one-hot q,")
    print("with u uniform (1/K) by default (Szegedy et al. 2016, section 7). The loss is the")
    print("cross-entropy H(q', p) = (1 - eps) H(q, p) + eps H(u, p) and its gradient with")
    print("respect to the logits is p - q', so a confident model is pulled back from 0 and 1.")
    print()
    print("1. smooth_labels([0, 0, 1], 0.1)")
    print(f"   = {fmt(smoothed, precision=7)}")
    print("   every class gets eps/K = 0.0333333; the true class keeps 1 - eps + eps/K.")
    print()
    print("2. logits = log([0.1, 0.1, 0.1, 0.36, 0.34]), true class 3")
    print(f"   plain cross-entropy -log p_3   = {plain!r} nats = {plain / math.log(2):.3f} bits")
    print(f"   q' with eps = 0.1              = {fmt(targets[0], precision=4)}")
    print(f"   smoothed cross-entropy H(q',p) = {smooth!r} nats = {smooth / math.log(2):.3f} bits")
    print("   (A widely shared write-up of this example prints 1.47 and 2.63: the first is")
    print("   the plain loss in bits, the second an arithmetic slip.)")
    print()
    print("3. gradient p - q' of the smoothed loss")
    print(f"   = {fmt(grad[0], precision=4, suppress_small=True)}")
    print("   (it sums to 0; p_3 - q'_3 = 0.36 - 0.92 = -0.56, so a descent step raises the true logit)")
    print()
    print("4. KL(q' || p) = H(q', p) - H(q'): the same gradient, 0 at p = q'")
    print(f"   = {divergence:.6f} nats")
    print()
    print("5. binary (sigmoid) smoothing moves 0/1 targets to eps/2 and 1 - eps/2 (Keras, TF)")
    print(f"   binary_cross_entropy(z=2, y=1, epsilon=0.1) = {bce:.6f} nats")
    print()
    print("Run `python -m labelsmooth check` to compare with the frameworks installed here.")
    return 0


def _relative_error(ours: Any, theirs: Any) -> float:
    import numpy as np

    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    scale = max(float(np.max(np.abs(theirs), initial=0.0)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(ours - theirs), initial=0.0)) / scale


def _worst_error(comparisons: Iterable[tuple[Any, Any]]) -> float:
    """The largest relative error over ``(theirs, ours)`` pairs of NumPy-readable results (NaN if any is)."""
    errors = [_relative_error(ours, theirs) for theirs, ours in comparisons]
    # max() would pass over a NaN error (NaN compares false), and "check" would then agree.
    return float("nan") if any(error != error for error in errors) else max(errors, default=0.0)


def _torch_cases(rng: Any) -> list[tuple[str, str, str, Callable[[], float]]]:
    import numpy as np
    import torch
    import torch.nn.functional as F

    import labelsmooth as ls

    z = torch.tensor(rng.normal(scale=3.0, size=(64, 10)))
    y = torch.tensor(rng.integers(0, 10, size=64))
    y_ignored = y.clone()
    y_ignored[::7] = -100
    w = torch.tensor(rng.uniform(0.5, 2.0, size=10))
    zb = torch.tensor(rng.normal(scale=3.0, size=(64, 10)))
    yb = torch.tensor((rng.random((64, 10)) < 0.5).astype(np.float64))

    def cross_entropy() -> float:
        return _worst_error(
            (
                F.cross_entropy(z, y, label_smoothing=eps, reduction=reduction).numpy(),
                ls.cross_entropy(z, y, epsilon=eps, reduction=reduction).numpy(),
            )
            for eps in (0.0, 0.1, 0.3)
            for reduction in ("mean", "sum", "none")
        )

    def weighted() -> float:
        return _worst_error(
            (
                F.cross_entropy(z, y_ignored, weight=w, ignore_index=-100, label_smoothing=eps).numpy(),
                ls.cross_entropy(z, y_ignored, epsilon=eps, weight=w, ignore_index=-100).numpy(),
            )
            for eps in (0.1, 0.3)
        )

    def binary() -> float:
        return _worst_error(
            (
                F.binary_cross_entropy_with_logits(zb, yb * (1 - eps) + eps / 2).numpy(),
                ls.binary_cross_entropy(zb, yb, epsilon=eps).numpy(),
            )
            for eps in (0.0, 0.1, 0.3)
        )

    return [
        ("PyTorch", "F.cross_entropy(label_smoothing=eps)", "eps/K, all reductions", cross_entropy),
        ("PyTorch", "F.cross_entropy(weight, ignore_index, label_smoothing)", "PyTorch weighting", weighted),
        ("PyTorch", "F.binary_cross_entropy_with_logits", "targets y(1-eps)+eps/2", binary),
    ]


def _optax_cases(rng: Any) -> list[tuple[str, str, str, Callable[[], float]]]:
    import jax.numpy as jnp
    import optax

    import labelsmooth as ls

    z = jnp.asarray(rng.normal(scale=3.0, size=(64, 10)), dtype=jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, size=64))

    def smoothed() -> float:
        return _worst_error(
            (
                optax.softmax_cross_entropy(z, optax.smooth_labels(jnp.eye(10, dtype=jnp.float32)[y], eps)),
                ls.cross_entropy(z, y, epsilon=eps, reduction="none"),
            )
            for eps in (0.0, 0.1, 0.3)
        )

    return [("optax", "softmax_cross_entropy(z, smooth_labels(onehot, eps))", "eps/K, per sample", smoothed)]


def _keras_cases(rng: Any) -> list[tuple[str, str, str, Callable[[], float]]]:
    import keras
    import numpy as np

    import labelsmooth as ls

    z_np = rng.normal(scale=3.0, size=(64, 10)).astype(np.float32)
    y_np = rng.integers(0, 10, size=64)
    onehot = np.eye(10, dtype=np.float32)[y_np]
    yb_np = (rng.random((64, 10)) < 0.5).astype(np.float32)
    # labelsmooth runs on the arrays of Keras' own backend (JAX, PyTorch or TensorFlow).
    z, y, yb = (keras.ops.convert_to_tensor(a) for a in (z_np, y_np, yb_np))

    numpy = keras.ops.convert_to_numpy

    def categorical() -> float:
        return _worst_error(
            (
                numpy(keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=eps)(onehot, z)),
                numpy(ls.cross_entropy(z, y, epsilon=eps)),
            )
            for eps in (0.0, 0.1, 0.3)
        )

    def binary() -> float:
        return _worst_error(
            (
                numpy(keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=eps)(yb, z)),
                numpy(ls.binary_cross_entropy(z, yb, epsilon=eps)),
            )
            for eps in (0.0, 0.1, 0.3)
        )

    backend = keras.backend.backend()
    return [
        (
            "Keras",
            f"CategoricalCrossentropy(from_logits, label_smoothing) [{backend}]",
            "eps/K, batch mean",
            categorical,
        ),
        ("Keras", f"BinaryCrossentropy(from_logits, label_smoothing) [{backend}]", "y(1-eps)+eps/2, mean", binary),
    ]


def _choose_keras_backend() -> None:
    """Pick an installed Keras backend when none is set and TensorFlow (Keras' default) is absent.

    Keras 3 reads ``KERAS_BACKEND`` once, when it is first imported.
    """
    if "KERAS_BACKEND" in os.environ or importlib.util.find_spec("tensorflow") is not None:
        return
    for candidate in ("jax", "torch"):
        if importlib.util.find_spec(candidate) is not None:
            os.environ["KERAS_BACKEND"] = candidate
            return


def _error_text(exc: Exception) -> str:
    return f"error: {type(exc).__name__}: {exc}"


def _measured_row(case: tuple[str, str, str, Callable[[], float]], dtype: str) -> tuple[tuple[str, ...], bool]:
    """One row of the agreement table, and whether the comparison agrees."""
    framework, loss, convention, measure = case
    try:
        error = measure()
    except Exception as exc:
        return (framework, loss, convention, dtype, "-", _error_text(exc)), False
    agrees = error <= TOLERANCE[dtype]
    status = "agrees" if agrees else f"DIFFERS (> {TOLERANCE[dtype]:.0e})"
    return (framework, loss, convention, dtype, f"{error:.1e}", status), agrees


def _agreement_rows(versions: dict[str, str | None], seed: int) -> tuple[list[tuple[str, ...]], int]:
    """The rows of the agreement table and the number of comparisons that differ or fail."""
    import numpy as np

    groups: list[tuple[str, tuple[str, ...], Callable[[Any], list[Any]], str]] = [
        ("PyTorch", ("torch",), _torch_cases, "float64"),
        ("optax", ("optax", "jax"), _optax_cases, "float32"),
        ("Keras", ("keras",), _keras_cases, "float32"),
    ]
    rows: list[tuple[str, ...]] = []
    failures = 0
    for name, modules, build, dtype in groups:
        missing = [m for m in modules if versions.get(m) is None]
        if missing:
            rows.append((name, "-", "-", "-", "-", f"skipped ({', '.join(missing)} not installed)"))
            continue
        rng = np.random.default_rng(seed)
        try:
            if name == "Keras":
                _choose_keras_backend()
            cases = build(rng)
        except Exception as exc:
            rows.append((name, "-", "-", dtype, "-", _error_text(exc)))
            failures += 1
            continue
        for case in cases:
            row, agrees = _measured_row(case, dtype)
            rows.append(row)
            failures += not agrees
    return rows, failures


def _check(args: argparse.Namespace) -> int:
    """Print the library table and the agreement table; 1 if a comparison differs or fails."""
    import labelsmooth as ls

    print(f"labelsmooth {ls.__version__}, Python {sys.version.split()[0]}")
    print()
    versions = {module: _library_version(module) for module, _ in LIBRARIES}
    print("Array libraries and frameworks")
    print(
        _table(
            ("library", "module", "version"),
            ((shown, module, versions[module] or "not installed") for module, shown in LIBRARIES),
        )
    )
    print()
    rows, failures = _agreement_rows(versions, args.seed)
    print("Agreement with each framework's own label-smoothing loss (eps in 0, 0.1, 0.3;")
    print("labelsmooth called on that framework's arrays; max relative error)")
    print(_table(("framework", "loss", "convention", "dtype", "max rel. error", "status"), rows))
    return 1 if failures else 0


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="labelsmooth",
        description="Label smoothing and smoothed cross-entropy for every array-API library.",
    )
    parser.add_argument("--version", action="version", version=f"labelsmooth {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{demo,check}")
    demo = commands.add_parser("demo", help="work the documented examples and explain them")
    demo.set_defaults(handler=_demo)
    check = commands.add_parser(
        "check", help="list installed array libraries and compare with their own label-smoothing losses"
    )
    check.add_argument("--seed", type=int, default=0, help="seed of the random test inputs (default 0)")
    check.set_defaults(handler=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
