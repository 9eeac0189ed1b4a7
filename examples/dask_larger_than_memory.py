"""Smoothed cross-entropy of a logits array larger than this machine's memory, with Dask.

The logits (``rows x classes`` float32, standard normal) and the integer labels are
generated lazily, chunk by chunk, from a seed; nothing larger than a few chunks ever
exists at once. The mean smoothed loss and its analytic gradient ``(p - q') / N`` are
reduced on the fly to summary statistics (norm, mean absolute value, extremes, and the
largest row sum, which must be ~0 since every row of ``p - q'`` sums to zero), on a
``dask.distributed.LocalCluster`` bound to the loopback interface.

Two strategies:

``blocks`` (default)
    one task per chunk (``da.map_blocks``) runs ``labelsmooth.cross_entropy_with_grad``
    on that NumPy chunk and keeps six numbers: one pass, memory bounded by the workers.
``graph``
    ``labelsmooth.cross_entropy`` and ``labelsmooth.cross_entropy_grad`` applied to the
    Dask arrays themselves (lazy graphs), computed in two passes: asking one ``compute``
    for both the loss and the gradient's statistics makes Dask keep the shared softmax
    intermediates of most chunks alive, and memory then grows with the array.

The default size, 16384 x 1000 float32 (65 MB), runs in seconds. ``--large`` is 262144 x
32000 float32, 33.6 GB of logits (and as much again of gradient), which never exists in
memory: run it on a machine with less memory than that, and ``--report-memory`` shows
the peak resident memory of the whole process tree (this script and its worker
processes); on a 2-core, 24 GB machine it took 333 s with a 3.71 GB peak.

Usage::

    python examples/dask_larger_than_memory.py                 # 65 MB, seconds
    python examples/dask_larger_than_memory.py --large --report-memory   # 33.6 GB, minutes
    python examples/dask_larger_than_memory.py --rows 65536 --classes 32000 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from typing import Any

import dask.array as da
import numpy as np

import labelsmooth as ls

SMALL = {"rows": 3000, "classes": 257, "chunk_rows": 256, "workers": 2, "memory_limit": "1GB"}
LARGE = {"rows": 262_144, "classes": 32_000, "chunk_rows": 2048, "memory_limit": "5GB"}


def make_inputs(rows: int, classes: int, chunk_rows: int, seed: int) -> tuple[Any, Any]:
    """Lazily generated float32 logits (``rows x classes``) and int64 labels.

    Each chunk is drawn from its own generator spawned from ``seed``, so the arrays are
    the same whoever computes them, and only the chunks in flight are ever in memory.
    """
    logits_seed, labels_seed = np.random.SeedSequence(seed).spawn(2)
    logits_rng = da.random.default_rng(np.random.default_rng(logits_seed))
    labels_rng = da.random.default_rng(np.random.default_rng(labels_seed))
    logits = logits_rng.standard_normal((rows, classes), dtype=np.float32, chunks=(chunk_rows, classes))
    labels = labels_rng.integers(0, classes, size=rows, chunks=chunk_rows)
    return logits, labels


STATISTICS = ("loss", "grad_norm", "grad_abs_mean", "grad_max", "grad_min", "max_abs_row_sum")


def _block_statistics(logits: np.ndarray, labels: np.ndarray, epsilon: float) -> np.ndarray:
    """Partial statistics of one chunk: loss sum, sum g^2, sum |g|, max g, min g, max |row sum|.

    ``g = p - q'`` is the gradient of the summed loss; all sums are float64.
    """
    loss, grad = ls.cross_entropy_with_grad(logits, labels[:, 0], epsilon=epsilon, reduction="sum")
    grad64 = grad.astype(np.float64)
    return np.array(
        [
            [
                float(loss),
                float(np.sum(grad64 * grad64)),
                float(np.sum(np.abs(grad64))),
                float(np.max(grad)),
                float(np.min(grad)),
                float(np.max(np.abs(np.sum(grad64, axis=1)))),
            ]
        ]
    )


def statistics_by_blocks(logits: Any, labels: Any, epsilon: float) -> dict[str, Any]:
    """Lazy scalars from one task per chunk (``map_blocks``): bounded memory, one pass.

    Each task runs ``labelsmooth.cross_entropy_with_grad`` on one NumPy chunk and keeps
    six numbers; the statistics of the mean loss's gradient are those of ``g / N``.
    """
    rows, classes = logits.shape
    partial = da.map_blocks(
        _block_statistics,
        logits,
        labels[:, None],
        epsilon,
        chunks=((1,) * logits.numblocks[0], (len(STATISTICS),)),
        dtype=np.float64,
    )
    sums = da.sum(partial[:, :3], axis=0)
    return {
        "loss": sums[0] / rows,
        "grad_norm": da.sqrt(sums[1]) / rows,
        "grad_abs_mean": sums[2] / (rows * classes) / rows,
        "grad_max": da.max(partial[:, 3]) / rows,
        "grad_min": da.min(partial[:, 4]) / rows,
        "max_abs_row_sum": da.max(partial[:, 5]) / rows,
    }


def statistics_by_graph(logits: Any, labels: Any, epsilon: float) -> list[dict[str, Any]]:
    """The same statistics from labelsmooth's functions applied to the Dask arrays.

    Two graphs, computed one after the other (the chunks are generated twice): the mean
    loss, then the gradient statistics. A single graph holding both outputs of
    ``cross_entropy_with_grad`` makes the scheduler keep the shared per-chunk softmax
    intermediates of most chunks alive until the end (memory grows with the array).
    """
    loss = ls.cross_entropy(logits, labels, epsilon=epsilon)
    grad = ls.cross_entropy_grad(logits, labels, epsilon=epsilon)
    # Squares and row sums of O(1/N) entries are accumulated in float64.
    grad64 = grad.astype(np.float64)
    return [
        {"loss": loss},
        {
            "grad_norm": da.sqrt(da.sum(grad64 * grad64)),
            "grad_abs_mean": da.mean(da.abs(grad64)),
            "grad_max": da.max(grad),
            "grad_min": da.min(grad),
            "max_abs_row_sum": da.max(da.abs(da.sum(grad64, axis=1))),
        },
    ]


class PeakMemory:
    """Samples the resident memory of this process and all its children (the workers)."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self._process = psutil.Process(os.getpid())
        self._psutil = psutil
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree_rss(self) -> int:
        total = 0
        for process in [self._process, *self._process.children(recursive=True)]:
            with contextlib.suppress(self._psutil.Error):
                total += process.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_rss())
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._tree_rss())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=16_384, help="number of samples N")
    parser.add_argument("--classes", type=int, default=1000, help="number of classes K")
    parser.add_argument("--chunk-rows", type=int, default=2048, help="rows per chunk")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one thread each)")
    parser.add_argument("--memory-limit", default="2GB", help="memory limit per worker, e.g. 5GB")
    parser.add_argument("--epsilon", type=float, default=0.1, help="label smoothing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--strategy",
        choices=("blocks", "graph"),
        default="blocks",
        help="blocks: one task per chunk (default); graph: labelsmooth on the "
        "Dask arrays, loss and gradient in two passes",
    )
    parser.add_argument(
        "--small", action="store_true", help=f"a quick run ({SMALL['rows']} x {SMALL['classes']}, for tests)"
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help="the 262144 x 32000 run (33.6 GB of logits)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--report-memory", action="store_true", help="sample and print the peak RSS of this process and its workers"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    for chosen, sizes in ((args.small, SMALL), (args.large, LARGE)):
        if chosen:
            for name, value in sizes.items():
                setattr(args, name, value)
    return args


def compute_on(client: Any, statistics: dict[str, Any], show_progress: bool) -> dict[str, float]:
    """Compute lazy scalars on the cluster; their futures are released on return."""
    from distributed import progress

    futures = client.compute(statistics)
    if show_progress:
        progress(futures)
        print()
    return {name: float(value) for name, value in client.gather(futures).items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    args = parse_args(argv)
    logits, labels = make_inputs(args.rows, args.classes, args.chunk_rows, args.seed)
    if args.strategy == "blocks":
        passes = [statistics_by_blocks(logits, labels, args.epsilon)]
    else:
        passes = statistics_by_graph(logits, labels, args.epsilon)
    size_gb = logits.nbytes / 1e9
    print(
        f"logits: {args.rows} x {args.classes} {logits.dtype} = {size_gb:.3g} GB "
        f"in {logits.numblocks[0]} chunks of {args.chunk_rows} rows; epsilon = {args.epsilon}; "
        f"strategy: {args.strategy}"
    )

    memory = PeakMemory() if args.report_memory else None
    if memory is not None:
        memory.__enter__()
    start = time.perf_counter()
    values: dict[str, float] = {}
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=args.memory_limit,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        for statistics in passes:
            values.update(compute_on(client, statistics, show_progress=not args.no_progress))
    elapsed = time.perf_counter() - start
    if memory is not None:
        memory.__exit__(None, None, None)

    for name in STATISTICS:
        print(f"{name:>16}: {values[name]:.9g}")
    result: dict[str, Any] = {
        **values,
        "rows": args.rows,
        "classes": args.classes,
        "chunk_rows": args.chunk_rows,
        "epsilon": args.epsilon,
        "seed": args.seed,
        "workers": args.workers,
        "memory_limit": args.memory_limit,
        "strategy": args.strategy,
        "logits_gb": size_gb,
        "seconds": elapsed,
    }
    print(f"{'time':>16}: {elapsed:.1f} s ({size_gb / elapsed:.3f} GB of logits per second)")
    if memory is not None:
        result["peak_rss_gb"] = memory.peak / 1e9
        print(f"{'peak RSS':>16}: {memory.peak / 1e9:.2f} GB (this process and its workers)")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
