"""Memory and time of a training step through labelsmooth, at 4096 x 32000 float32.

One training-style step is measured: the mean smoothed loss (epsilon = 0.1, integer
labels) and its gradient with respect to the logits.

JAX
    ``jax.jit(jax.value_and_grad(loss))`` of ``labelsmooth.cross_entropy`` (the plain
    function: on traced arrays its derivative is the analytic one too), of
    ``labelsmooth.jax.cross_entropy`` (the adapter), and the jitted
    ``labelsmooth.cross_entropy_with_grad`` (the lower bound). Memory: XLA's compiled
    memory analysis (temporary buffers besides the arguments and outputs).
PyTorch
    forward + ``backward()`` through ``labelsmooth.cross_entropy`` (the plain function: on
    tensors that require grad, its autograd function), through
    ``labelsmooth.torch.cross_entropy`` (the adapter), and PyTorch's own
    ``F.cross_entropy(label_smoothing=...)``. Memory: the bytes saved for backward
    (``saved_tensors_hooks``) and the peak resident-memory increase of the first step in
    a fresh process per variant (``ru_maxrss`` after it minus before it, less the
    gradient that the step returns).

Usage::

    python benchmarks/adapters.py                    # 4096 x 32000, prints a Markdown table
    python benchmarks/adapters.py --rows 512 --classes 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

EPSILON = 0.1
JAX_VARIANTS = ("jax-plain", "jax-adapter", "jax-with_grad")
TORCH_VARIANTS = ("torch-plain", "torch-adapter", "torch-native")
MB = 1e6


def inputs(rows: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((rows, classes), dtype=np.float32)
    logits *= 2.0  # in place: no transient copy to inflate the peak memory
    labels = rng.integers(0, classes, size=rows)
    return logits, labels


def max_rss_bytes() -> int:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(step: Any, repeats: int) -> float:
    step()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_jax(variant: str, rows: int, classes: int, repeats: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    import labelsmooth as ls
    import labelsmooth.jax as ljax

    logits_np, labels_np = inputs(rows, classes)
    logits, labels = jnp.asarray(logits_np), jnp.asarray(labels_np.astype(np.int32))
    if variant == "jax-plain":
        fn = jax.value_and_grad(lambda z, y: ls.cross_entropy(z, y, epsilon=EPSILON))
    elif variant == "jax-adapter":
        fn = jax.value_and_grad(lambda z, y: ljax.cross_entropy(z, y, epsilon=EPSILON))
    else:
        fn = lambda z, y: ls.cross_entropy_with_grad(z, y, epsilon=EPSILON)  # noqa: E731
    compiled = jax.jit(fn).lower(logits, labels).compile()
    memory = compiled.memory_analysis()
    seconds = timed(lambda: jax.block_until_ready(compiled(logits, labels)), repeats)
    return {
        "variant": variant,
        "seconds": seconds,
        "temp_mb": memory.temp_size_in_bytes / MB,
        "argument_mb": memory.argument_size_in_bytes / MB,
        "output_mb": memory.output_size_in_bytes / MB,
    }


def run_torch(variant: str, rows: int, classes: int, repeats: int) -> dict[str, Any]:
    import torch

    import labelsmooth as ls
    import labelsmooth.torch as ltorch

    logits_np, labels_np = inputs(rows, classes)
    logits = torch.from_numpy(logits_np).requires_grad_()
    labels = torch.from_numpy(labels_np)
    loss_fn = {
        "torch-plain": lambda z, y: ls.cross_entropy(z, y, epsilon=EPSILON),
        "torch-adapter": lambda z, y: ltorch.cross_entropy(z, y, epsilon=EPSILON),
        "torch-native": lambda z, y: torch.nn.functional.cross_entropy(z, y, label_smoothing=EPSILON),
    }[variant]

    def step() -> None:
        logits.grad = None
        loss = loss_fn(logits, labels)
        loss.backward()

    # The first step runs first in this process, so that ru_maxrss measures it alone.
    before = max_rss_bytes()
    step()
    peak_increase = max_rss_bytes() - before - logits.grad.numel() * logits.grad.element_size()

    saved: list[int] = []

    def pack(tensor: Any) -> Any:
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss_fn(logits, labels)
    seconds = timed(step, repeats)
    return {
        "variant": variant,
        "seconds": seconds,
        "saved_mb": sum(saved) / MB,
        "peak_rss_increase_mb": peak_increase / MB,
    }


def table(results: list[dict[str, Any]], rows: int, classes: int) -> str:
    lines = [f"{rows} x {classes} float32 logits ({rows * classes * 4 / MB:.0f} MB), epsilon = {EPSILON}", ""]
    jax_rows = [r for r in results if r["variant"].startswith("jax")]
    torch_rows = [r for r in results if r["variant"].startswith("torch")]
    if jax_rows:
        lines += ["| JAX (jit, value and grad) | time (ms) | XLA temp memory (MB) |", "|---|---:|---:|"]
        lines += [f"| {r['variant']} | {r['seconds'] * 1e3:.0f} | {r['temp_mb']:.0f} |" for r in jax_rows]
        lines.append("")
    if torch_rows:
        lines += [
            "| PyTorch (forward + backward) | time (ms) | saved for backward (MB) | peak RSS increase (MB) |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {r['variant']} | {r['seconds'] * 1e3:.0f} | {r['saved_mb']:.0f} | {r['peak_rss_increase_mb']:.0f} |"
            for r in torch_rows
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=("jax", "torch"), help="run one framework")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant in this process
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    if args.variant:
        run = run_jax if args.variant.startswith("jax") else run_torch
        print(json.dumps(run(args.variant, args.rows, args.classes, args.repeats)))
        return

    variants = {"jax": JAX_VARIANTS, "torch": TORCH_VARIANTS}
    chosen = variants[args.only] if args.only else JAX_VARIANTS + TORCH_VARIANTS
    results = []
    for variant in chosen:
        # A fresh process per variant: peak memory and compilation caches start clean.
        completed = subprocess.run(
            [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--rows",
                str(args.rows),
                "--classes",
                str(args.classes),
                "--repeats",
                str(args.repeats),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
        print(f"  {variant}: {results[-1]}", file=sys.stderr)
    print(table(results, args.rows, args.classes))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
