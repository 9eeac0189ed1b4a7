"""Time and peak memory of the linear layer's smoothed cross-entropy, with all three gradients.

One training-style step at float32: the mean loss (epsilon = 0.1, integer labels) of
``logits = hidden @ classifier.T + bias`` and its gradients with respect to ``hidden``,
``classifier`` and ``bias``, for

``numpy``
    ``labelsmooth.linear_cross_entropy_with_grad`` on NumPy arrays;
``torch``
    ``labelsmooth.torch.LinearCrossEntropyLoss`` forward + ``backward()`` on CPU tensors;
``jax``
    ``jax.jit(jax.value_and_grad(labelsmooth.jax.linear_cross_entropy, argnums=(0, 1, 2)))``
    on the CPU device (its blocks a ``lax.scan``);
``torch-materialized``
    PyTorch's own way: ``F.linear`` (the whole ``N x K`` logits), ``F.cross_entropy(
    label_smoothing=0.1)`` and ``backward()``.

Cut Cross-Entropy (``cut-cross-entropy`` 25.1.1) and Liger-Kernel's fused linear
cross-entropy (``liger-kernel`` 0.8.5) have no rows: both packages import ``triton`` when
imported, and their kernels are GPU kernels (Cut Cross-Entropy's ``torch_compile``
variant too sits behind that import), so neither runs on a CPU-only machine.

Time: the median of ``--repeat`` steps after one warm-up step (for ``jax``, after its
compilation). Peak memory, beyond the inputs and the returned gradients: for ``numpy`` the
peak of ``tracemalloc`` (NumPy reports its allocations to it) during one step, less the
gradients' bytes; for ``jax`` the temporaries of the compiled step in XLA's own memory
analysis (``temp_size_in_bytes``: what it allocates beyond arguments and outputs); for the
torch rows the peak resident-memory increase of the first step in a fresh process per row
(``ru_maxrss`` after it minus the resident memory before it, with the inputs already
allocated and touched, after one step on 64 of the rows so that PyTorch's one-time
initialisation is not counted), less the gradients' bytes. Every row but ``jax`` runs
with ``MALLOC_MMAP_THRESHOLD_=1048576``, so that glibc returns freed blocks of 1 MB and
more to the system instead of keeping them resident (without it the peak counts freed
blocks that malloc kept; it also makes every new block of logits cost its page faults,
which slows the blocked rows, not the materialized one, whose arrays are mapped anyway).
The ``jax`` row's memory is XLA's accounting, not the resident set, and runs without it
(XLA's allocations under it took 1.8x the time). Each row is run in a fresh process, so
that one row's freed memory does not hide another's peak. ``x logits`` is that peak over
the bytes of the float32 ``N x K`` logits.

Usage::

    python benchmarks/linear.py                          # both default shapes, Markdown table
    python benchmarks/linear.py --shapes 512x64x4000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from typing import Any

import numpy as np

EPSILON = 0.1
VARIANTS = ("numpy", "torch", "jax", "torch-materialized")
SHAPES = ((4096, 256, 32000), (1024, 256, 128000))
MB = 1e6


def inputs(rows: int, features: int, classes: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((rows, features), dtype=np.float32)
    classifier = rng.standard_normal((classes, features), dtype=np.float32)
    classifier *= 1.0 / np.sqrt(features)
    bias = rng.standard_normal(classes, dtype=np.float32)
    labels = rng.integers(0, classes, size=rows)
    return hidden, classifier, bias, labels


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def numpy_step(arrays: tuple[np.ndarray, ...], chunk_size: int | None) -> Any:
    import labelsmooth as ls

    hidden, classifier, bias, labels = arrays

    def step() -> Any:
        return ls.linear_cross_entropy_with_grad(
            hidden, classifier, labels, bias=bias, epsilon=EPSILON, chunk_size=chunk_size
        )[1]

    return step


def torch_step(arrays: tuple[np.ndarray, ...], variant: str, chunk_size: int | None) -> Any:
    import torch
    import torch.nn.functional as F

    from labelsmooth.torch import LinearCrossEntropyLoss

    hidden, classifier, bias = (torch.from_numpy(a).requires_grad_() for a in arrays[:3])
    labels = torch.from_numpy(arrays[3])
    module = LinearCrossEntropyLoss(label_smoothing=EPSILON, chunk_size=chunk_size)

    def step() -> Any:
        for tensor in (hidden, classifier, bias):
            tensor.grad = None
        if variant == "torch":
            loss = module(hidden, classifier, labels, bias)
        else:
            loss = F.cross_entropy(F.linear(hidden, classifier, bias), labels, label_smoothing=EPSILON)
        loss.backward()
        return hidden.grad, classifier.grad, bias.grad

    return step


def jax_step(arrays: tuple[np.ndarray, ...], chunk_size: int | None) -> tuple[Any, int]:
    """The compiled step and its temporaries' bytes (XLA's memory analysis)."""
    import jax

    from labelsmooth.jax import linear_cross_entropy

    hidden, classifier, bias, labels = (jax.device_put(a) for a in arrays)

    def loss(hidden: Any, classifier: Any, bias: Any) -> Any:
        return linear_cross_entropy(hidden, classifier, labels, bias=bias, epsilon=EPSILON, chunk_size=chunk_size)

    compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))).lower(hidden, classifier, bias).compile()

    def step() -> Any:
        return jax.block_until_ready(compiled(hidden, classifier, bias))[1]

    return step, compiled.memory_analysis().temp_size_in_bytes


def run_variant(variant: str, shape: tuple[int, int, int], repeat: int, chunk_size: int | None) -> dict:
    """One row, in this process: the peak of the first step, then the median time."""
    arrays = inputs(*shape)
    if variant == "jax":
        step, temporaries = jax_step(arrays, chunk_size)
        step()
        return {"seconds": _median_time(step, repeat), "extra_bytes": temporaries}
    step = numpy_step(arrays, chunk_size) if variant == "numpy" else torch_step(arrays, variant, chunk_size)
    if variant == "numpy":
        tracemalloc.start()
        grads = step()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        # One step on 64 of the rows first: PyTorch's one-time initialisation (autograd
        # engine, thread pools) is not counted as the step's memory.
        small = (arrays[0][:64], arrays[1], arrays[2], arrays[3][:64])
        torch_step(small, variant, chunk_size)()
        before = resident_bytes()
        grads = step()
        peak = max_rss_bytes() - before
    returned = sum(int(np.prod(g.shape)) * 4 for g in grads if g is not None)
    del grads
    return {"seconds": _median_time(step, repeat), "extra_bytes": max(0, peak - returned)}


def _median_time(step: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", help="comma-separated ROWSxFEATURESxCLASSES, e.g. 4096x256x32000")
    parser.add_argument("--repeat", type=int, default=3, help="timed steps per row (median)")
    parser.add_argument("--chunk-size", type=int, help="rows per block (default: labelsmooth's)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one row in this process
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    shapes = SHAPES if args.shapes is None else [tuple(map(int, s.split("x"))) for s in args.shapes.split(",")]
    if args.variant:
        print(json.dumps(run_variant(args.variant, shapes[0], args.repeat, args.chunk_size)))
        return
    results = []
    print("| N x d x K | variant | time (ms) | vs materialized | peak beyond gradients (MB) | x logits |")
    print("|---|---|---:|---:|---:|---:|")
    for shape in shapes:
        rows = {}
        for variant in (VARIANTS[-1], *VARIANTS[:-1]):
            command = [sys.executable, __file__, "--variant", variant, "--shapes", "x".join(map(str, shape))]
            command += ["--repeat", str(args.repeat)]
            if args.chunk_size is not None:
                command += ["--chunk-size", str(args.chunk_size)]
            # Blocks of 1 MB and more are mapped and unmapped by malloc, not kept in its heap:
            # resident memory then follows what is alive (for every row it measures).
            env = dict(os.environ)
            if variant != "jax":
                env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
            completed = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            rows[variant] = json.loads(completed.stdout.strip().splitlines()[-1])
        logits_bytes = shape[0] * shape[2] * 4
        base = rows["torch-materialized"]["seconds"]
        for variant in VARIANTS:
            row = rows[variant]
            results.append({"shape": shape, "variant": variant, **row})
            cells = [
                "x".join(map(str, shape)),
                variant,
                f"{row['seconds'] * 1e3:.0f}",
                f"{row['seconds'] / base:.2f}",
                f"{row['extra_bytes'] / MB:.1f}",
                f"{row['extra_bytes'] / logits_bytes:.3f}",
            ]
            print(f"| {' | '.join(cells)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
