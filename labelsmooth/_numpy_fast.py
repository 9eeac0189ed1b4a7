"""The kernel for NumPy arrays: row-blocked, cache-resident, threaded passes.

It returns the row statistics of ``_kernel`` (one row, ``S = z - m <= 0``) and, when asked,
the gradient ``a * exp(S) / s - b * profile - c * e_y``, one block of rows at a time so that
every intermediate stays in the processor's cache: the exponentials are written straight
into the gradient's own buffer (or into one block-sized scratch buffer when only the loss
is wanted), so no temporary as large as the logits is ever allocated. Each block is read
once from memory and its gradient written once.

The row sums (log-sum, target logit, profile-weighted sum) are accumulated in float64, as
in the array-API kernel, and agree with it to rounding (its sums are added in another
order). Rows whose maximum is not finite (NaN, ``+inf``, all ``-inf``) and dense targets
(whose profile is a full array) are run by the array-API kernel block by block, so every
edge case gives its result.

Blocks are shared between threads when the problem is large (NumPy releases the GIL inside
its loops); ``LABELSMOOTH_NUM_THREADS`` caps their number (default: the usable cores, at
most 8), and so do the caller's own limits (``torch.get_num_threads()`` for tensors, the
limits set with threadpoolctl).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from array_api_compat import is_numpy_namespace

from . import _core, _kernel

__all__ = ["run", "supports"]

# A block of rows of about this many bytes stays in a core's L2 cache through its passes,
# and is long enough that the Python work between NumPy calls (which holds the GIL) is
# small beside the calls themselves.
_BLOCK_BYTES = 1 << 20
# Below this many logits the work is too short for threads to pay off.
_PARALLEL_MIN_ELEMENTS = 1 << 20
# float32 rows are summed as `_PARTS` float32 partial sums of strided elements, which are
# then added in float64: each partial adds at most 8 terms (relative error <= 7 u, in
# practice a small fraction of a float32 ulp), and the long sum is float64. Casting every
# element to float64 instead costs more than the exponentials on long rows; on rows of
# fewer than about a thousand classes the strided partial sums cost more (at 1024 x 100 they
# took 2.2x the time of the cast and a float64 matrix-vector product, measured).
_PARTS = 8
_PARTIAL_MIN_CLASSES = 1024
# float64 rows at least this long are summed pairwise (a dot's error grows with K).
_PAIRWISE_MIN_CLASSES = 1024
# Rows shorter than this are broadcast against their row values as one flat array: NumPy's
# row-by-row broadcasting costs more than the repeated values on such rows.
_SHORT_ROW = 32


def _usable_threads(caller_limit: int | None) -> int:
    """Threads for one problem: ``LABELSMOOTH_NUM_THREADS``, else the usable cores (at most 8).

    Never more than the caller's own limit: ``caller_limit`` (``torch.get_num_threads()``
    for tensors) and the limits set with threadpoolctl, so that a job that pinned its
    threads is not oversubscribed.
    """
    setting = os.environ.get("LABELSMOOTH_NUM_THREADS")
    if setting:
        try:
            threads = max(1, int(setting))
        except ValueError:
            threads = 1
    else:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        threads = max(1, min(cores, 8))
    limits = [] if caller_limit is None else [caller_limit]
    threadpoolctl = sys.modules.get("threadpoolctl")
    if threadpoolctl is not None:
        # Only a caller that imported threadpoolctl can have set limits with it.
        limits += [pool["num_threads"] for pool in threadpoolctl.threadpool_info()]
    return max(1, min([threads, *limits]))


def _single_row(prior: Any, shape: tuple[int, ...]) -> Any:
    """The prior as one ``(K,)`` row when it is the same for every sample, else None."""
    if prior.ndim == 1:
        return prior
    full = np.broadcast_to(prior, shape)
    if all(stride == 0 or size == 1 for size, stride in zip(full.shape[:-1], full.strides[:-1])):
        return full[(0,) * (full.ndim - 1)]
    return None


def _leading_dims(x: np.ndarray) -> int:
    """Number of leading batch axes to loop over so that the rest merge into one row axis."""
    batch = x.ndim - 1
    lead = batch
    expected = None
    for axis in range(batch - 1, -1, -1):
        size, stride = x.shape[axis], x.strides[axis]
        if size == 1:
            lead = axis
            continue
        if expected is not None and stride != expected:
            break
        expected = size * stride
        lead = axis
    return lead


def _segments(x: np.ndarray, lead: int) -> list[np.ndarray]:
    """2-D ``(rows, K)`` views of ``x`` (class axis last), in row-major sample order."""
    if x.ndim == 2 and lead == 0:
        return [x]
    num_classes = x.shape[-1]
    views = []
    for index in np.ndindex(*x.shape[:lead]):
        sub = x[index]
        rows = 1
        row_stride = 0
        for size, stride in zip(sub.shape[:-1], sub.strides[:-1]):
            rows *= size
            if size != 1:
                row_stride = stride
        views.append(
            np.lib.stride_tricks.as_strided(sub, (rows, num_classes), (row_stride, sub.strides[-1]), writeable=False)
        )
    return views


def supports(task: Any) -> bool:
    """Whether this kernel runs ``task`` (a ``_kernel.Task``): NumPy arrays, no class mask."""
    if not is_numpy_namespace(task.xp) or task.allowed is not None or task.nan_rows is not None:
        return False
    if task.lse_coef is not None and task.labels is None:
        return False
    z = task.logits
    if type(z) is not np.ndarray or z.dtype not in (np.float32, np.float64) or z.size == 0:
        return False
    profile = task.profile
    if profile is not None and type(profile) is not np.ndarray:
        return False
    if task.labels is not None and profile is not None and _single_row(profile, z.shape) is None:
        return False
    lead = _leading_dims(z)
    if task.labels is None:
        lead = max(lead, _leading_dims(np.broadcast_to(task.profile, z.shape)))
    rows_per_segment = 1
    for size in z.shape[lead:-1]:
        rows_per_segment *= size
    # Segments of a few rows each would cost more in Python than the array-API kernel.
    return lead == 0 or rows_per_segment >= 16


@dataclass
class _Plan:
    task: Any
    work: Any
    num_rows: int
    num_classes: int
    block_rows: int
    labels: Any  # (M,) or None
    # the gradient's coefficients: floats or (M,) float64, and the last two in the work dtype
    prob_coef: Any
    spread_coef: Any
    true_coef: Any
    spread_work: Any = None
    true_work: Any = None
    profile: Any = None  # integer labels: (K,) work dtype, or None for all ones
    profile_zero: Any = None  # (K,) bool where the profile is 0, or None
    # per-row results, float64
    log_sum: Any = None
    true_half: Any = None  # d_y / 2 = m / 2 - z_y / 2
    profile_shifted: Any = None  # sum_k profile_k (z_k - m), times profile_scale
    profile_scale: Any = None  # (M,) the power of two each profile sum was scaled by
    lse_coef: Any = None  # the z-loss's e: float or (M,) float64, or None
    shift: Any = None  # (M,) float64 row maxima, when the task has an lse_coef
    over_logits: bool = False  # the gradient is written over the logits


@functools.lru_cache(maxsize=32)
def _constants(rows: int, width: int, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read-only ``arange(rows)``, ``ones(width)`` and ``arange(rows) * num_classes``."""
    arrays = (np.arange(rows), np.ones(width), np.arange(rows) * num_classes)
    for array in arrays:
        array.flags.writeable = False
    return arrays


class _Workspace:
    """Block-sized buffers owned by one thread."""

    def __init__(self, plan: _Plan) -> None:
        b, k = plan.block_rows, plan.num_classes
        # Without a gradient, or with one written over the logits, the passes run in a scratch
        # block (each block of logits is read whole before its gradient replaces it).
        own = plan.task.with_grad and not plan.over_logits
        self.scratch: Any = None if own else np.empty((b, k), plan.work)
        self.weighted: Any = None if plan.profile is None else np.empty((b, k), plan.work)
        self.parts: Any = None
        width = k
        if plan.work == np.float32 and k >= _PARTIAL_MIN_CLASSES:
            width = k // _PARTS
            self.parts = np.empty((b, width), np.float32)
        # row_starts: flat index of each row's first element in a C-contiguous block.
        self.rows, self.ones, self.row_starts = _constants(b, width, k)


def _row_sums(x: np.ndarray, ws: _Workspace) -> np.ndarray:
    """float64 sums of the rows of a C-contiguous block.

    Short float64 rows are a matrix-vector product (NumPy's row reductions are slow on
    them); from ``_PAIRWISE_MIN_CLASSES`` classes on, NumPy's pairwise summation, whose
    error grows as ``log K`` where a BLAS dot's grows as ``K``.
    """
    if ws.parts is None:
        if x.dtype == np.float64 and x.shape[1] >= _PAIRWISE_MIN_CLASSES:
            return np.add.reduce(x, axis=1)
        if x.dtype == np.float64:
            return x @ ws.ones
        # Cast in einsum's buffers: as fast as a float64 copy and a product, without the copy.
        return np.einsum("ij->i", x, dtype=np.float64)
    b, k = x.shape
    width = k // _PARTS
    whole = width * _PARTS
    parts = ws.parts[:b]
    np.add.reduce(x[:, :whole].reshape(b, _PARTS, width), axis=1, out=parts)
    sums = parts.astype(np.float64) @ ws.ones
    if whole < k:
        sums += np.add.reduce(x[:, whole:], axis=1, dtype=np.float64)
    return sums


def _rows_of(value: Any, start: int, stop: int, column: bool = False) -> Any:
    if isinstance(value, np.ndarray) and value.ndim:
        part = value[start:stop]
        return part[:, None] if column else part
    return value


def _array_api_block(plan: _Plan, z_block: Any, profile_block: Any, grad_block: Any, start: int, stop: int) -> None:
    """Rows ``start:stop`` by the array-API kernel (same formulas, every edge case)."""
    task = plan.task
    sub = replace(
        task,
        logits=z_block,
        labels=None if plan.labels is None else plan.labels[start:stop],
        profile=plan.profile if profile_block is None else profile_block,
        prob_coef=_rows_of(plan.prob_coef, start, stop, column=True),
        spread_coef=_rows_of(plan.spread_coef, start, stop, column=True),
        true_coef=_rows_of(plan.true_coef, start, stop, column=True),
        lse_coef=_rows_of(plan.lse_coef, start, stop, column=True),
        zero_rows=None,
    )
    stats = _kernel.run(sub)
    plan.log_sum[start:stop] = stats.log_sum[:, 0]
    if plan.shift is not None:
        plan.shift[start:stop] = stats.shift[:, 0]
    if stats.true_half is not None:
        plan.true_half[start:stop] = stats.true_half[:, 0]
    if stats.profile_distance is not None:
        plan.profile_shifted[start:stop] = -stats.profile_distance[:, 0]
        plan.profile_scale[start:stop] = stats.h
    if grad_block is not None:
        grad_block[...] = stats.grad


def _label_block(plan: _Plan, z_block: Any, grad_block: Any, start: int, stop: int, ws: _Workspace) -> None:
    b = stop - start
    rows = ws.rows[:b]
    top = np.argmax(z_block, axis=1)
    shift = z_block[rows, top]
    if not np.isfinite(shift).all():
        _array_api_block(plan, z_block, None, grad_block, start, stop)
        return
    work = ws.scratch[:b] if grad_block is None or plan.over_logits else grad_block
    flat = work.reshape(-1)
    # work = z - m <= 0 (rounded as in the array-API kernel), the exact 0 at the row maximum.
    if b * _SHORT_ROW > work.size and z_block.flags.c_contiguous:
        np.subtract(z_block.reshape(-1), np.repeat(shift, z_block.shape[1]), out=flat)
    else:
        np.subtract(z_block, shift[:, None], out=work)
    at_label = ws.row_starts[:b] + plan.labels[start:stop]
    at_top = ws.row_starts[:b] + top
    # Halved, and from z in float64: exact, and no overflow for logits far apart.
    true_logit = z_block[rows, plan.labels[start:stop]].astype(np.float64)
    plan.true_half[start:stop] = shift.astype(np.float64) * 0.5 - true_logit * 0.5
    if plan.profile_shifted is not None:
        _profile_sums(plan, z_block, work, at_label, start, stop, ws)
    np.exp(work, out=work)
    # The maximum's exact 1 is kept out of the sum: log(s) = log1p(rest) keeps full
    # relative precision in rows dominated by one class.
    flat[at_top] = 0.0
    rest = _row_sums(work, ws)
    plan.log_sum[start:stop] = np.log1p(rest)
    if plan.shift is not None:
        plan.shift[start:stop] = shift
    if grad_block is None:
        return
    flat[at_top] = 1.0
    numerator = _rows_of(plan.prob_coef, start, stop)
    if plan.shift is not None:
        # The z-loss gradient 2 z lse p joins the T p term: a = prob_coef + e * lse.
        numerator = numerator + _rows_of(plan.lse_coef, start, stop) * (
            plan.shift[start:stop] + plan.log_sum[start:stop]
        )
    prob_coef = (numerator / (rest + 1.0)).astype(plan.work)
    if b * _SHORT_ROW > work.size:
        np.multiply(flat, np.repeat(prob_coef, work.shape[1]), out=flat)
    else:
        np.multiply(work, prob_coef[:, None], out=work)
    if plan.spread_work is not None:
        spread = _rows_of(plan.spread_work, start, stop, column=True)
        if plan.profile is None:
            np.subtract(work, spread, out=work)
        else:
            spread_row = ws.weighted[:b]
            np.multiply(plan.profile, spread, out=spread_row)
            np.subtract(work, spread_row, out=work)
    flat[at_label] -= _rows_of(plan.true_work, start, stop)
    if work is not grad_block:
        np.copyto(grad_block, work)


def _profile_sums(plan: _Plan, z_block: Any, work: Any, at_label: Any, start: int, stop: int, ws: _Workspace) -> None:
    """``sum_k profile_k (z_k - m)`` of each row of the block (``work = z - m``)."""
    flat = work.reshape(-1)
    if plan.task.exclude_label:
        # The true class is left out of the sum rather than subtracted from it afterwards,
        # which would cancel when d_y is large.
        true_shifted = flat[at_label]
        flat[at_label] = 0.0
    source = work
    if plan.profile is not None:
        source = ws.weighted[: stop - start]
        np.multiply(work, plan.profile, out=source)
        if plan.profile_zero is not None:
            # A class without target mass counts 0 even at a -inf logit (not 0 * inf).
            np.copyto(source, 0.0, where=plan.profile_zero)
    sums = _row_sums(source, ws)
    overflowed = np.flatnonzero(~np.isfinite(sums))
    if overflowed.size:
        _rescale_profile_sums(plan, z_block, overflowed, sums, start)
    plan.profile_shifted[start:stop] = sums
    if plan.task.exclude_label:
        flat[at_label] = true_shifted


def _rescale_profile_sums(plan: _Plan, z_block: Any, overflowed: Any, sums: Any, start: int) -> None:
    """Sum the rows whose profile sum overflowed again, from ``z h - m h`` (``_core.overflow_scale``).

    The partial sums, or ``z - m`` itself, went beyond the largest float; scaled by a power
    of two (exact) they cannot. The scale is kept for the loss. A row with a -inf logit
    stays infinite, as its exact sum is.
    """
    h = _core.overflow_scale(plan.num_classes)
    z = z_block[overflowed].astype(np.float64)
    shifted_h = z * h - z.max(axis=1, keepdims=True) * h
    if plan.task.exclude_label:
        shifted_h[np.arange(overflowed.size), plan.labels[start + overflowed]] = 0.0
    if plan.profile is not None:
        shifted_h = np.where(plan.profile == 0.0, 0.0, shifted_h * plan.profile)
    sums[overflowed] = np.add.reduce(shifted_h, axis=1)
    plan.profile_scale[start + overflowed] = h


def _run_blocks(plan: _Plan, tasks: list, grad_rows: Any) -> None:
    ws = _Workspace(plan)
    for start, stop, z_block, profile_block in tasks:
        grad_block = None if grad_rows is None else grad_rows[start:stop]
        if plan.labels is not None:
            _label_block(plan, z_block, grad_block, start, stop, ws)
        else:
            _array_api_block(plan, z_block, profile_block, grad_block, start, stop)


def _blocks(plan: _Plan, z_views: list, profile_views: Any) -> list:
    tasks = []
    offset = 0
    step = plan.block_rows
    for i, z_view in enumerate(z_views):
        rows = z_view.shape[0]
        profile_view = None if profile_views is None else profile_views[i]
        for first in range(0, rows, step):
            last = min(first + step, rows)
            tasks.append(
                (
                    offset + first,
                    offset + last,
                    z_view[first:last],
                    None if profile_view is None else profile_view[first:last],
                )
            )
        offset += rows
    return tasks


def _run(plan: _Plan, tasks: list, grad_rows: Any) -> None:
    if len(tasks) < 2 or plan.num_rows * plan.num_classes < _PARALLEL_MIN_ELEMENTS:
        _run_blocks(plan, tasks, grad_rows)
        return
    threads = min(_usable_threads(plan.task.threads), len(tasks))
    if threads <= 1:
        _run_blocks(plan, tasks, grad_rows)
        return
    # Contiguous runs of blocks, one per thread (the calling thread takes the last).
    bounds = [len(tasks) * i // threads for i in range(threads + 1)]
    errors: list = []

    def work(share: list) -> None:
        try:
            # NumPy's error state is per thread: the helpers start from the default.
            with np.errstate(all="ignore"):
                _run_blocks(plan, share, grad_rows)
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)

    helpers = [
        threading.Thread(target=work, args=(tasks[bounds[i] : bounds[i + 1]],), daemon=True) for i in range(threads - 1)
    ]
    for helper in helpers:
        helper.start()
    work(tasks[bounds[-2] : bounds[-1]])
    for helper in helpers:
        helper.join()
    if errors:
        raise errors[0]


def _flat_rows(value: Any, batch_shape: tuple) -> Any:
    """A per-row coefficient as a float or ``(M,)`` float64 values (None stays None)."""
    if value is None or isinstance(value, float):
        return value
    return np.broadcast_to(np.asarray(value, np.float64), (*batch_shape, 1)).reshape(-1)


def _work_values(value: Any, work: Any) -> Any:
    return None if value is None else np.asarray(value).astype(work)


def _plan(task: Any) -> _Plan:
    z = task.logits
    num_classes = z.shape[-1]
    num_rows = z.size // num_classes
    batch_shape = z.shape[:-1]
    plan = _Plan(
        task=task,
        work=z.dtype,
        num_rows=num_rows,
        num_classes=num_classes,
        block_rows=max(1, min(num_rows, _BLOCK_BYTES // (num_classes * z.itemsize))),
        labels=None if task.labels is None else np.reshape(task.labels, -1),
        prob_coef=_flat_rows(task.prob_coef, batch_shape),
        spread_coef=_flat_rows(task.spread_coef, batch_shape),
        true_coef=_flat_rows(task.true_coef, batch_shape),
        over_logits=task.with_grad and task.overwrite_logits and z.flags.c_contiguous and z.flags.writeable,
    )
    plan.log_sum = np.empty(num_rows)
    if task.lse_coef is not None:
        plan.lse_coef = _flat_rows(task.lse_coef, batch_shape)
        plan.shift = np.empty(num_rows)
    if plan.labels is not None:
        plan.true_half = np.empty(num_rows)
        plan.spread_work = _work_values(plan.spread_coef, plan.work)
        plan.true_work = _work_values(plan.true_coef, plan.work)
        if task.profile is not None:
            plan.profile = _single_row(task.profile, z.shape)
            if not plan.profile.all():
                plan.profile_zero = plan.profile == 0
    if task.sum_profile:
        plan.profile_shifted = np.empty(num_rows)
        plan.profile_scale = np.ones(num_rows)
    return plan


def run(task: Any) -> _kernel.RowStatistics:
    """The row statistics (and gradient) of a task this kernel supports."""
    if _transposable(task):
        with np.errstate(all="ignore"):
            stats = _run_transposed(task)
        if stats is not None:
            return stats
    return _run_blocked(task)


def _run_blocked(task: Any) -> _kernel.RowStatistics:
    z = task.logits
    column = (*z.shape[:-1], 1)
    with np.errstate(all="ignore"):
        plan = _plan(task)
        lead = _leading_dims(z)
        profile_views = None
        if plan.labels is None:
            profile = np.broadcast_to(task.profile, z.shape)
            lead = max(lead, _leading_dims(profile))
            profile_views = _segments(profile, lead)
        tasks = _blocks(plan, _segments(z, lead), profile_views)
        grad_rows = None
        if plan.over_logits:
            grad_rows = z.reshape(plan.num_rows, plan.num_classes)
        elif task.with_grad:
            grad_rows = np.empty((plan.num_rows, plan.num_classes), z.dtype)
        _run(plan, tasks, grad_rows)
        if grad_rows is not None and task.zero_rows is not None:
            grad_rows[np.reshape(task.zero_rows, -1)] = 0.0
    return _kernel.RowStatistics(
        log_sum=plan.log_sum.reshape(column),
        true_half=None if plan.true_half is None else plan.true_half.reshape(column),
        profile_distance=None if plan.profile_shifted is None else -plan.profile_shifted.reshape(column),
        h=1.0 if plan.profile_scale is None else plan.profile_scale.reshape(column),
        grad=None if grad_rows is None else grad_rows.reshape(z.shape),
        shift=None if plan.shift is None else plan.shift.reshape(column),
    )


# --- few classes: the passes over a transposed copy ----------------------------------------
# NumPy reduces a row of a few elements slowly (each row is its own inner loop); over the
# transposed (K, M) copy the same reductions run along M, vectorised, and the copy (one
# pass, cache-resident at these sizes) costs less than what it saves.
_TRANSPOSED_MAX_CLASSES = 32


def _transposable(task: Any) -> bool:
    z = task.logits
    if task.labels is None or z.shape[-1] > _TRANSPOSED_MAX_CLASSES or z.nbytes > _BLOCK_BYTES:
        return False
    if task.lse_coef is not None:
        return False
    return task.profile is None or _single_row(task.profile, z.shape) is not None


@functools.lru_cache(maxsize=32)
def _columns(count: int) -> np.ndarray:
    columns = np.arange(count)
    columns.flags.writeable = False
    return columns


def _run_transposed(task: Any) -> _kernel.RowStatistics | None:
    """The statistics on a ``(K, M)`` copy, or None for rows the blocked kernel must take.

    Those are rows whose maximum is not finite and rows whose profile sum overflows, both
    handled there (they make the sums below non-finite, which is checked once). The sums
    are float64 and the maximum's exact 1 is kept out of ``s``, as in the blocked kernel.
    """
    z = task.logits
    k = z.shape[-1]
    # A copy always (ascontiguousarray would return a view of one row's logits).
    zt = np.array(z.reshape(-1, k).T, order="C")
    m = zt.shape[1]
    flat = zt.reshape(-1)
    columns = _columns(m)
    at_label = task.labels.reshape(-1) * m
    at_label += columns
    shift = zt.max(axis=0)
    true_half = _half_difference(shift, flat[at_label])
    np.subtract(zt, shift, out=zt)
    profile = None if task.profile is None else _single_row(task.profile, z.shape)[:, None]
    sums = _transposed_profile_sums(task, zt, flat, at_label, profile) if task.sum_profile else 0.0
    np.exp(zt, out=zt)
    rest = _rest_of_sums(zt, flat, columns)
    if rest is None or not np.isfinite(rest + sums).all():
        return None
    log_sum = np.log1p(rest)
    grad = None if not task.with_grad else _transposed_gradient(task, zt, flat, at_label, profile, rest)
    column = (*z.shape[:-1], 1)
    return _kernel.RowStatistics(
        log_sum=log_sum.reshape(column),
        true_half=true_half.reshape(column),
        profile_distance=None if not task.sum_profile else np.negative(sums).reshape(column),
        h=1.0,
        grad=grad,
    )


# Below this, ``s - 1`` summed with the maximum's 1 would lose float32 precision in ``rest``.
_REST_FLOOR = 2.0**-20


def _rest_of_sums(exp_shifted: Any, flat: Any, columns: Any, float32_result: bool | None = None) -> Any:
    """``s - 1`` of each column of ``exp(z - m)`` in float64, with full relative precision.

    Columns of a float32 result (by default: float32 columns) are summed whole (the
    maximum's exact 1 included): ``s - 1`` then errs by about 1e-16, negligible beside
    float32's unit unless the rest is tiny; columns where some rest is below
    ``_REST_FLOOR`` and those of a float64 result are summed with the maximum's 1 left
    out, so that ``log1p(rest)`` keeps full relative precision. None when a maximum is not
    finite.
    """
    if float32_result is None:
        float32_result = exp_shifted.dtype == np.float32
    if float32_result:
        rest = exp_shifted.sum(axis=0, dtype=np.float64)
        rest -= 1.0
        if rest.min(initial=1.0) >= _REST_FLOOR:
            return rest
    at_top = np.argmax(exp_shifted, axis=0)
    at_top *= exp_shifted.shape[1]
    at_top += columns
    if not (flat[at_top] == 1.0).all():
        return None  # a maximum that is not finite (exp(S) is NaN there)
    flat[at_top] = 0.0
    rest = np.add.reduce(exp_shifted, axis=0, dtype=np.float64)
    flat[at_top] = 1.0
    return rest


def _half_difference(top: Any, true: Any) -> Any:
    """``(m - z_y) / 2`` in float64, exactly (halved first for float64: no overflow)."""
    if top.dtype == np.float64:
        half = top * 0.5
        half -= true * 0.5
        return half
    half = np.subtract(top, true, dtype=np.float64)
    half *= 0.5
    return half


def _transposed_profile_sums(task: Any, zt: Any, flat: Any, at_label: Any, profile: Any) -> Any:
    """``sum_k profile_k (z_k - m)`` of each column of ``zt = z - m`` (float64)."""
    if task.exclude_label:
        # The true class left out of the sum, not subtracted afterwards (which would cancel).
        true_shifted = flat[at_label]
        flat[at_label] = 0.0
    source = zt
    if profile is not None:
        # A class without target mass counts 0 even at a -inf logit (not 0 * inf).
        source = np.where(profile == 0.0, 0.0, zt * profile)
    sums = np.add.reduce(source, axis=0, dtype=np.float64)
    if task.exclude_label:
        flat[at_label] = true_shifted
    return sums


def _transposed_gradient(task: Any, zt: Any, flat: Any, at_label: Any, profile: Any, rest: Any) -> Any:
    """``a exp(S) / s - b profile - c e_y`` from ``zt = exp(S)``, in the logits' layout."""
    work = zt.dtype
    batch = task.logits.shape[:-1]
    rest += 1.0
    scale = np.divide(_flat_rows(task.prob_coef, batch), rest, out=rest)
    zt *= scale.astype(work)
    if task.spread_coef is not None:
        spread = _flat_rows(task.spread_coef, batch)
        spread = work.type(spread) if isinstance(spread, float) else spread.astype(work)
        zt -= spread if profile is None else profile * spread
    true_coef = _flat_rows(task.true_coef, batch)
    flat[at_label] -= work.type(true_coef) if isinstance(true_coef, float) else true_coef.astype(work)
    grad = np.ascontiguousarray(zt.T).reshape(task.logits.shape)
    if task.zero_rows is not None:
        grad[np.broadcast_to(task.zero_rows[..., 0], batch)] = 0.0
    return grad
