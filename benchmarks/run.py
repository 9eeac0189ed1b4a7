"""Speed and memory of labelsmooth's smoothed cross-entropy beside PyTorch, optax and NumPy.

Run ``python benchmarks/run.py`` (``--quick`` for a short run, ``--shapes 4096x32000`` for
chosen shapes, ``--repeat 7`` for more rounds). For every shape (float32 logits, int64 labels,
``epsilon=0.1``, ``reduction="mean"``) it times, loss only and loss + gradient:

- ``labelsmooth numpy``: ``cross_entropy`` / ``cross_entropy_with_grad`` on NumPy arrays;
- ``labelsmooth jax``: the same calls under ``jax.jit``;
- ``labelsmooth torch``: the same calls on torch tensors;
- ``ls torch autograd`` / ``labelsmooth.torch adapter``: forward + backward of
  ``ls.cross_entropy`` and ``labelsmooth.torch.cross_entropy`` on a tensor that requires grad;
- ``ls jax value_and_grad``: ``jax.jit(jax.value_and_grad(ls.cross_entropy))``, as JAX users train;
- ``torch F.cross_entropy``: ``F.cross_entropy(z, y, label_smoothing=0.1)``, forward and
  forward + backward (``torch.set_num_threads(2)``);
- ``optax``: ``softmax_cross_entropy(z, smooth_labels(one_hot(y), 0.1)).mean()`` and its
  ``jax.value_and_grad``, under ``jax.jit``;
- ``naive numpy``: dense one-hot, smoothed, ``log_softmax``, multiply, sum (and
  ``softmax - q'`` for the gradient);
- ``np.exp pass``: one ``np.exp(z)`` into a new array, the floor of any method that returns
  a new N x K array (``np.exp in place``: the same without allocating).

Methods are timed in interleaved rounds (every method once per round, after one warm-up call
that also compiles the jitted ones), so that a busy machine slows them alike; the table gives
the median of the rounds (methods slower than 1.5 s per call: of three calls). Then the
ratios that matter, the peak memory that the NumPy path allocates (``tracemalloc``) and the
bytes torch saves for backward, relative to the logits' size.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import labelsmooth as ls

EPSILON = 0.1
SHAPES = ((256, 10), (1024, 100), (65536, 1000), (4096, 32000), (1024, 128000))
QUICK_SHAPES = ((256, 10), (1024, 100), (16384, 1000), (1024, 32000))
TORCH_THREADS = 2
SLOW = 1.5


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def parse_shape(text: str) -> tuple[int, int]:
    rows, classes = text.lower().split("x")
    return int(rows), int(classes)


# --- the methods ---------------------------------------------------------------------------
# Each factory takes (float32 logits, int64 labels) as NumPy arrays and returns a dict of
# name -> zero-argument callable that runs the method to completion.


def naive_target(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Dense smoothed one-hot rows (1 - eps) q + eps / K."""
    target = np.full(z.shape, EPSILON / z.shape[-1], dtype=z.dtype)
    target[np.arange(z.shape[0]), y] += 1.0 - EPSILON
    return target


def naive_loss(z: np.ndarray, y: np.ndarray) -> Any:
    target = naive_target(z, y)
    shifted = z - z.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -(target * log_p).sum(axis=-1).mean()


def naive_loss_and_grad(z: np.ndarray, y: np.ndarray) -> Any:
    target = naive_target(z, y)
    shifted = z - z.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=-1, keepdims=True)
    log_p = shifted - np.log(sums)
    loss = -(target * log_p).sum(axis=-1).mean()
    return loss, (exp / sums - target) / z.shape[0]


def numpy_methods(z: np.ndarray, y: np.ndarray) -> dict[str, tuple[Callable, Callable]]:
    inplace = np.empty_like(z)
    return {
        "labelsmooth numpy": (
            lambda: ls.cross_entropy(z, y, epsilon=EPSILON),
            lambda: ls.cross_entropy_with_grad(z, y, epsilon=EPSILON),
        ),
        "naive numpy": (lambda: naive_loss(z, y), lambda: naive_loss_and_grad(z, y)),
        "np.exp pass": (None, lambda: np.exp(z)),
        "np.exp in place": (None, lambda: np.exp(z, out=inplace)),
    }


def jax_methods(z: np.ndarray, y: np.ndarray) -> dict[str, tuple[Callable, Callable]]:
    import jax
    import jax.numpy as jnp

    zj, yj = jnp.asarray(z), jnp.asarray(y)
    ls_loss = jax.jit(lambda a, b: ls.cross_entropy(a, b, epsilon=EPSILON))
    ls_both = jax.jit(lambda a, b: ls.cross_entropy_with_grad(a, b, epsilon=EPSILON))
    # How a JAX user trains: jit of value_and_grad of the plain function.
    ls_value_and_grad = jax.jit(jax.value_and_grad(lambda a, b: ls.cross_entropy(a, b, epsilon=EPSILON)))
    methods = {
        "labelsmooth jax (jit)": (
            lambda: ls_loss(zj, yj).block_until_ready(),
            lambda: jax.block_until_ready(ls_both(zj, yj)),
        ),
        "ls jax value_and_grad": (None, lambda: jax.block_until_ready(ls_value_and_grad(zj, yj))),
    }
    if has("optax"):
        import optax

        def optax_loss(a: Any, b: Any) -> Any:
            targets = optax.smooth_labels(jax.nn.one_hot(b, a.shape[-1], dtype=a.dtype), EPSILON)
            return optax.softmax_cross_entropy(a, targets).mean()

        o_loss = jax.jit(optax_loss)
        o_both = jax.jit(jax.value_and_grad(optax_loss))
        methods["optax (jit)"] = (
            lambda: o_loss(zj, yj).block_until_ready(),
            lambda: jax.block_until_ready(o_both(zj, yj)),
        )
    return methods


def torch_methods(z: np.ndarray, y: np.ndarray) -> dict[str, tuple[Callable, Callable]]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(TORCH_THREADS)
    zt, yt = torch.from_numpy(z), torch.from_numpy(y)

    def native_forward() -> Any:
        with torch.no_grad():
            return F.cross_entropy(zt, yt, label_smoothing=EPSILON)

    def backward(loss_fn: Callable) -> Callable:
        def run() -> Any:
            leaf = zt.detach().requires_grad_(True)
            loss = loss_fn(leaf, yt)
            loss.backward()
            return loss, leaf.grad

        return run

    import labelsmooth.torch as ltorch

    return {
        "labelsmooth torch": (
            lambda: ls.cross_entropy(zt, yt, epsilon=EPSILON),
            lambda: ls.cross_entropy_with_grad(zt, yt, epsilon=EPSILON),
        ),
        "ls torch autograd": (None, backward(lambda a, b: ls.cross_entropy(a, b, epsilon=EPSILON))),
        "labelsmooth.torch adapter": (None, backward(lambda a, b: ltorch.cross_entropy(a, b, label_smoothing=EPSILON))),
        "torch F.cross_entropy": (
            native_forward,
            backward(lambda a, b: F.cross_entropy(a, b, label_smoothing=EPSILON)),
        ),
    }


def saved_for_backward(z: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Bytes autograd saves for the backward pass, relative to the logits' size."""
    import torch
    import torch.nn.functional as F

    import labelsmooth.torch as ltorch

    zt, yt = torch.from_numpy(z), torch.from_numpy(y)
    losses = {
        "torch F.cross_entropy": lambda a: F.cross_entropy(a, yt, label_smoothing=EPSILON),
        "ls torch autograd": lambda a: ls.cross_entropy(a, yt, epsilon=EPSILON),
        "labelsmooth.torch adapter": lambda a: ltorch.cross_entropy(a, yt, label_smoothing=EPSILON),
    }
    result = {}
    for name, loss_fn in losses.items():
        sizes: list[int] = []

        def pack(tensor: Any, sizes: list[int] = sizes) -> Any:
            sizes.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss_fn(zt.detach().requires_grad_(True))
        # labelsmooth keeps its N x K gradient on the autograd context, outside the hooks.
        kept = 0 if name == "torch F.cross_entropy" else z.nbytes
        result[name] = (sum(sizes) + kept) / z.nbytes
    return result


def time_methods(methods: dict[str, Callable], repeat: int) -> dict[str, float]:
    """Median seconds per call, timed in interleaved rounds.

    A method slower than ``SLOW`` seconds counts its warm-up call as a sample and runs in
    two more rounds only, so that the slow baselines do not dominate the run time.
    """
    calls: dict[str, int] = {}
    samples: dict[str, list[float]] = {name: [] for name in methods}
    rounds: dict[str, int] = {}
    for name, fn in methods.items():
        start = time.perf_counter()
        fn()  # warm-up: compiles jitted functions, touches pages
        first = time.perf_counter() - start
        calls[name], rounds[name] = 1, repeat
        if first > SLOW:
            samples[name].append(first)
            rounds[name] = 2
        elif first < 0.02:
            # Small problems: repeat the call so that one measurement lasts >= 20 ms.
            start = time.perf_counter()
            fn()
            calls[name] = max(1, int(0.02 / max(time.perf_counter() - start, 1e-7)))
    for round_index in range(repeat):
        for name, fn in methods.items():
            if round_index >= rounds[name]:
                continue
            number = calls[name]
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - start) / number)
    return {name: float(np.median(values)) for name, values in samples.items()}


def peak_memory(fn: Callable) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def run_shape(rows: int, classes: int, repeat: int, frameworks: set[str]) -> dict[str, Any]:
    rng = np.random.default_rng(20161205)
    z = (3.0 * rng.standard_normal((rows, classes), dtype=np.float32)).astype(np.float32)
    y = rng.integers(0, classes, size=rows)
    methods = numpy_methods(z, y)
    if "jax" in frameworks:
        methods.update(jax_methods(z, y))
    if "torch" in frameworks:
        methods.update(torch_methods(z, y))
    loss_fns = {f"{name}|loss": pair[0] for name, pair in methods.items() if pair[0] is not None}
    both_fns = {f"{name}|both": pair[1] for name, pair in methods.items()}
    times = time_methods({**loss_fns, **both_fns}, repeat)
    table = {name: (times.get(f"{name}|loss"), times[f"{name}|both"]) for name in methods}
    memory = {
        "loss": peak_memory(lambda: ls.cross_entropy(z, y, epsilon=EPSILON)) / z.nbytes,
        "both": peak_memory(lambda: ls.cross_entropy_with_grad(z, y, epsilon=EPSILON)) / z.nbytes,
    }
    saved = saved_for_backward(z, y) if "torch" in frameworks else {}
    return {"table": table, "memory": memory, "saved": saved, "nbytes": z.nbytes}


def print_shape(rows: int, classes: int, result: dict[str, Any]) -> None:
    table = result["table"]
    print(f"\n## {rows} x {classes} float32 ({result['nbytes'] / 2**20:.0f} MiB of logits)\n")
    print(f"| {'method':<24} | {'loss':>10} | {'loss + grad':>11} |")
    print(f"|{'-' * 26}|{'-' * 12}:|{'-' * 13}:|")
    for name, (loss, both) in table.items():
        print(f"| {name:<24} | {fmt_time(loss):>10} | {fmt_time(both):>11} |")

    def both(name: str) -> float | None:
        return table[name][1] if name in table else None

    def loss(name: str) -> float | None:
        return table[name][0] if name in table else None

    print()
    lines = [
        ("numpy loss+grad / torch fwd+bwd", ratio(both("labelsmooth numpy"), both("torch F.cross_entropy"))),
        ("numpy loss+grad / optax value_and_grad", ratio(both("labelsmooth numpy"), both("optax (jit)"))),
        ("numpy loss+grad / one np.exp pass", ratio(both("labelsmooth numpy"), both("np.exp pass"))),
        ("numpy loss / torch forward", ratio(loss("labelsmooth numpy"), loss("torch F.cross_entropy"))),
        ("numpy loss / naive numpy loss", ratio(loss("labelsmooth numpy"), loss("naive numpy"))),
        ("numpy loss+grad / naive numpy loss+grad", ratio(both("labelsmooth numpy"), both("naive numpy"))),
        ("jax (jit) loss+grad / optax value_and_grad", ratio(both("labelsmooth jax (jit)"), both("optax (jit)"))),
        ("jax (jit) loss / optax loss", ratio(loss("labelsmooth jax (jit)"), loss("optax (jit)"))),
        ("torch loss+grad / torch fwd+bwd", ratio(both("labelsmooth torch"), both("torch F.cross_entropy"))),
        ("torch plain autograd fwd+bwd / native", ratio(both("ls torch autograd"), both("torch F.cross_entropy"))),
        ("torch adapter fwd+bwd / native", ratio(both("labelsmooth.torch adapter"), both("torch F.cross_entropy"))),
        ("jax jit(value_and_grad) / optax", ratio(both("ls jax value_and_grad"), both("optax (jit)"))),
        ("torch loss / torch forward", ratio(loss("labelsmooth torch"), loss("torch F.cross_entropy"))),
    ]
    for text, value in lines:
        print(f"- {text}: {value}")
    memory = result["memory"]
    print(f"- numpy peak allocation / logits nbytes: loss {memory['loss']:.3f}, loss+grad {memory['both']:.3f}")
    if result["saved"]:
        saved = ", ".join(f"{name} {value:.3f}" for name, value in result["saved"].items())
        print(f"- torch saved for backward / logits nbytes: {saved}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller shapes, 3 rounds")
    parser.add_argument("--shapes", help="comma-separated ROWSxCLASSES, e.g. 256x10,4096x32000")
    parser.add_argument("--repeat", type=int, help="timed rounds per method (default 5, 3 with --quick)")
    parser.add_argument("--no-jax", action="store_true", help="leave out JAX and optax")
    parser.add_argument("--no-torch", action="store_true", help="leave out PyTorch")
    args = parser.parse_args(argv)

    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        shapes = tuple(parse_shape(s) for s in args.shapes.split(","))
    repeat = args.repeat or (3 if args.quick else 5)
    frameworks = set()
    if has("jax") and not args.no_jax:
        frameworks.add("jax")
    if has("torch") and not args.no_torch:
        frameworks.add("torch")

    shown = [m for m in ("torch", "jax") if m in frameworks]
    if "jax" in frameworks and has("optax"):
        shown.append("optax")
    versions = [f"numpy {np.__version__}"] + [f"{m} {__import__(m).__version__}" for m in shown]
    print(f"# labelsmooth {ls.__version__} speed (median of {repeat} interleaved rounds)")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {', '.join(versions)}; "
        f"float32 logits, int64 labels, epsilon={EPSILON}, reduction='mean'"
    )
    started = time.perf_counter()
    for rows, classes in shapes:
        result = run_shape(rows, classes, repeat, frameworks)
        print_shape(rows, classes, result)
        sys.stdout.flush()
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
