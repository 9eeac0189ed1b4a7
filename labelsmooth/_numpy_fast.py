"""Row-blocked NumPy evaluation of the smoothed cross-entropy and its gradient.

The formulas are those of ``_core`` (one row, ``d = m - z >= 0``):

    loss = T * log1p(rest) + sum_k c_k d_k,        gradient = T * p - c,

evaluated one block of rows at a time so that every intermediate stays in the processor's
cache: the exponentials are written straight into the gradient's own buffer (or into one
block-sized scratch buffer when only the loss is wanted), so no temporary as large as the
logits is ever allocated. Each block is read once from memory and its gradient written once.

The per-row scalars (log-sum, target logit, prior-weighted logit sum) are accumulated in
float64, as in the generic path, and the results agree with it to rounding (its row sums
are added in another order). Rows whose maximum is not finite (NaN, ``+inf``, all ``-inf``)
and probability targets are evaluated by the generic path block by block, so every edge case
gives the generic path's result.

Blocks are shared between threads when the problem is large (NumPy releases the GIL inside
its loops); ``LABELSMOOTH_NUM_THREADS`` caps their number (default: the usable cores, at
most 8).
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from array_api_compat import is_numpy_namespace

from . import _assembly, _core
from ._backend import fast_paths_enabled

__all__ = ["eligible", "evaluate"]

# A block of rows of about this many bytes stays in a core's L2 cache through its passes,
# and is long enough that the Python work between NumPy calls (which holds the GIL) is
# small beside the calls themselves.
_BLOCK_BYTES = 1 << 20
# Below this many logits the work is too short for threads to pay off.
_PARALLEL_MIN_ELEMENTS = 1 << 20
# float32 rows are summed as `_PARTS` float32 partial sums of strided elements, which are
# then added in float64: each partial adds at most 8 terms (relative error <= 7 u, in
# practice a small fraction of a float32 ulp), and the long sum is float64. Casting every
# element to float64 instead costs more than the exponentials.
_PARTS = 8
_PARTIAL_MIN_CLASSES = 64
# float64 rows at least this long are summed pairwise (a dot's error grows with K).
_PAIRWISE_MIN_CLASSES = 1024
# Rows shorter than this are broadcast against their row values as one flat array: NumPy's
# row-by-row broadcasting costs more than the repeated values on such rows.
_SHORT_ROW = 32


def _usable_threads() -> int:
    setting = os.environ.get("LABELSMOOTH_NUM_THREADS")
    if setting:
        try:
            return max(1, int(setting))
        except ValueError:
            return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


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


def eligible(problem: Any) -> bool:
    """Whether ``problem`` (a validated ``_problem.Problem``) takes the NumPy fast path."""
    if not fast_paths_enabled() or not is_numpy_namespace(problem.xp):
        return False
    z = problem.logits
    if type(z) is not np.ndarray or z.dtype not in (np.float32, np.float64) or z.size == 0:
        return False
    if problem.allowed is not None or problem.poison is not None:
        return False
    if problem.probabilities is not None and type(problem.probabilities) is not np.ndarray:
        return False
    prior = problem.prior
    if (
        prior is not None
        and not isinstance(prior, str)
        and (type(prior) is not np.ndarray or _single_row(prior, z.shape) is None)
    ):
        return False
    lead = _leading_dims(z)
    if problem.probabilities is not None:
        lead = max(lead, _leading_dims(problem.probabilities))
    rows_per_segment = 1
    for size in z.shape[lead:-1]:
        rows_per_segment *= size
    # Segments of a few rows each would cost more in Python than the generic path.
    return lead == 0 or rows_per_segment >= 16


@dataclass
class _Plan:
    problem: Any
    with_grad: bool
    work: Any
    num_rows: int
    num_classes: int
    block_rows: int
    labels: Any  # (M,) or None
    epsilon: Any  # float or (M,) float64
    prior_row: Any  # None, "others" or (K,)
    row_scale: Any  # 1.0 or 0-d float64
    # label targets
    others: bool = False  # prior "others": the true class is left out of the profile sums
    profile: Any = None  # (K,) work dtype, or None for all ones
    profile_zero: Any = None  # (K,) bool where the profile is 0, or None
    coefficients: Any = None  # _core.LabelCoefficients of the rows
    total_scaled: Any = None
    true_part: Any = None  # work dtype
    spread_part: Any = None  # work dtype, or None
    # per-row results, float64
    log_sum: Any = None
    true_half: Any = None  # d_y / 2 = m / 2 - z_y / 2
    profile_shifted: Any = None
    profile_scale: Any = None  # (M,) the power of two each profile sum was scaled by
    generic_loss: Any = None
    generic_ranges: list = field(default_factory=list)


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
        self.scratch: Any = None if plan.with_grad else np.empty((b, k), plan.work)
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
        return x.astype(np.float64) @ ws.ones
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


def _generic_block(plan: _Plan, z_block: Any, q_block: Any, grad_block: Any, start: int, stop: int) -> None:
    """Evaluate rows ``start:stop`` with the generic path (same formulas, same edge cases)."""
    problem = plan.problem
    epsilon = plan.epsilon
    if isinstance(epsilon, np.ndarray):
        epsilon = epsilon[start:stop, None]
    sub = replace(
        problem,
        logits=z_block,
        probabilities=q_block,
        epsilon=epsilon,
        prior=plan.prior_row,
        labels=None if plan.labels is None else plan.labels[start:stop],
        ignored=None,
        poison=None,
    )
    evaluation = _assembly.evaluate(sub)
    plan.generic_loss[start:stop] = evaluation.per_sample[:, 0]
    plan.generic_ranges.append((start, stop))
    if grad_block is None:
        return
    if plan.labels is not None:
        grad = _core.label_gradient(evaluation.rows, evaluation.label_terms, plan.row_scale, problem.xp)
    else:
        grad = _core.dense_gradient(
            evaluation.rows, evaluation.dense_coef, evaluation.dense_total, plan.row_scale, problem.xp
        )
    grad_block[...] = grad


def _label_block(plan: _Plan, z_block: Any, grad_block: Any, start: int, stop: int, ws: _Workspace) -> None:
    b = stop - start
    rows = ws.rows[:b]
    top = np.argmax(z_block, axis=1)
    shift = z_block[rows, top]
    if not np.isfinite(shift).all():
        _generic_block(plan, z_block, None, grad_block, start, stop)
        return
    work = ws.scratch[:b] if grad_block is None else grad_block
    flat = work.reshape(-1)
    # work = z - m <= 0 (rounded as in the generic path), the exact 0 at the row maximum.
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
    if grad_block is None:
        return
    flat[at_top] = 1.0
    prob_coef = (_rows_of(plan.total_scaled, start, stop) / (rest + 1.0)).astype(plan.work)
    if b * _SHORT_ROW > work.size:
        np.multiply(flat, np.repeat(prob_coef, work.shape[1]), out=flat)
    else:
        np.multiply(work, prob_coef[:, None], out=work)
    if plan.spread_part is not None:
        spread = _rows_of(plan.spread_part, start, stop, column=True)
        if plan.profile is None:
            np.subtract(work, spread, out=work)
        else:
            spread_row = ws.weighted[:b]
            np.multiply(plan.profile, spread, out=spread_row)
            np.subtract(work, spread_row, out=work)
    flat[at_label] -= _rows_of(plan.true_part, start, stop)


def _profile_sums(plan: _Plan, z_block: Any, work: Any, at_label: Any, start: int, stop: int, ws: _Workspace) -> None:
    """``sum_k profile_k (z_k - m)`` of each row of the block (``work = z - m``)."""
    flat = work.reshape(-1)
    if plan.others:
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
    if plan.others:
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
    if plan.others:
        shifted_h[np.arange(overflowed.size), plan.labels[start + overflowed]] = 0.0
    if plan.profile is not None:
        shifted_h = np.where(plan.profile == 0.0, 0.0, shifted_h * plan.profile)
    sums[overflowed] = np.add.reduce(shifted_h, axis=1)
    plan.profile_scale[start + overflowed] = h


def _run_blocks(plan: _Plan, tasks: list, grad_rows: Any) -> None:
    ws = _Workspace(plan)
    for start, stop, z_block, q_block in tasks:
        grad_block = None if grad_rows is None else grad_rows[start:stop]
        if q_block is None:
            _label_block(plan, z_block, grad_block, start, stop, ws)
        else:
            _generic_block(plan, z_block, q_block, grad_block, start, stop)


def _blocks(plan: _Plan, z_views: list, q_views: Any) -> list:
    tasks = []
    offset = 0
    step = plan.block_rows
    for i, z_view in enumerate(z_views):
        rows = z_view.shape[0]
        q_view = None if q_views is None else q_views[i]
        for first in range(0, rows, step):
            last = min(first + step, rows)
            tasks.append(
                (offset + first, offset + last, z_view[first:last], None if q_view is None else q_view[first:last])
            )
        offset += rows
    return tasks


def _run(plan: _Plan, tasks: list, grad_rows: Any) -> None:
    if len(tasks) < 2 or plan.num_rows * plan.num_classes < _PARALLEL_MIN_ELEMENTS:
        _run_blocks(plan, tasks, grad_rows)
        return
    threads = min(_usable_threads(), len(tasks))
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


def _label_coefficients(plan: _Plan) -> None:
    """The profile and the per-row coefficients (``_core.label_coefficients``) of the plan."""
    problem = plan.problem
    weight, epsilon, prior = problem.weight, plan.epsilon, plan.prior_row
    true_weight = 1.0 if weight is None else weight[plan.labels].astype(np.float64)
    prior_kind = prior if prior is None or isinstance(prior, str) else "array"
    profile = profile_sum = true_profile = None
    if not (isinstance(epsilon, float) and epsilon == 0.0):
        plan.others = prior_kind == "others"
        if prior_kind == "array":
            profile = prior if weight is None else prior * weight
        else:
            profile = weight
        if profile is None:
            profile_sum, true_profile = plan.num_classes * 1.0, 1.0
        else:
            profile_sum = np.add.reduce(profile, dtype=np.float64)
            if not profile.all():
                plan.profile_zero = profile == 0
            true_profile = profile[plan.labels].astype(np.float64)
    plan.profile = profile
    plan.coefficients = _core.label_coefficients(
        epsilon,
        true_weight,
        prior_kind=prior_kind,
        num_allowed=plan.num_classes,
        profile_sum=profile_sum,
        true_profile=true_profile,
    )
    total, spread, true_part = _core.scaled_gradient_coefficients(plan.coefficients, plan.row_scale)
    plan.total_scaled = total
    plan.true_part = np.asarray(true_part).astype(plan.work)
    if spread is not None:
        plan.spread_part = np.asarray(spread).astype(plan.work)


def _label_losses(plan: _Plan) -> Any:
    """Per-sample losses from the per-row sums (``_core.label_loss``)."""
    distance_h = None if plan.profile_shifted is None else -plan.profile_shifted
    return _core.label_loss(
        plan.coefficients, plan.log_sum, plan.true_half, distance_h, plan.profile_scale, plan.problem.xp
    )


def evaluate(problem: Any, *, with_grad: bool) -> tuple[Any, Any]:
    """``(loss, grad)`` of an eligible problem (``grad`` is None unless ``with_grad``)."""
    z = problem.logits
    num_classes = z.shape[-1]
    batch_shape = z.shape[:-1]
    num_rows = z.size // num_classes
    labels = None if problem.labels is None else np.reshape(problem.labels, -1)
    ignored = None if problem.ignored is None else np.reshape(problem.ignored, -1)
    epsilon = problem.epsilon
    if not isinstance(epsilon, float):
        epsilon = np.reshape(epsilon, -1)
    prior = problem.prior
    if prior is not None and not isinstance(prior, str):
        prior = _single_row(prior, z.shape)

    with np.errstate(all="ignore"):
        row_scale = _assembly.row_scale(problem)
        block_rows = max(1, min(num_rows, _BLOCK_BYTES // (num_classes * z.itemsize)))
        plan = _Plan(
            problem=problem,
            with_grad=with_grad,
            work=z.dtype,
            num_rows=num_rows,
            num_classes=num_classes,
            block_rows=block_rows,
            labels=labels,
            epsilon=epsilon,
            prior_row=prior,
            row_scale=row_scale,
        )
        # Every row is written by the block that holds it.
        plan.generic_loss = np.empty(num_rows)
        if labels is not None:
            _label_coefficients(plan)
            plan.log_sum = np.empty(num_rows)
            plan.true_half = np.empty(num_rows)
            if plan.coefficients.spread_coef is not None:
                plan.profile_shifted = np.empty(num_rows)
                plan.profile_scale = np.ones(num_rows)

        lead = _leading_dims(z)
        q = problem.probabilities
        if q is not None:
            lead = max(lead, _leading_dims(q))
        tasks = _blocks(plan, _segments(z, lead), None if q is None else _segments(q, lead))
        grad_rows = np.empty((num_rows, num_classes), z.dtype) if with_grad else None
        _run(plan, tasks, grad_rows)

        if labels is not None:
            per_sample = _label_losses(plan)
            for start, stop in plan.generic_ranges:
                per_sample[start:stop] = plan.generic_loss[start:stop]
        else:
            per_sample = plan.generic_loss
        if ignored is not None:
            per_sample[ignored] = 0.0
            if grad_rows is not None:
                grad_rows[ignored] = 0.0

        loss, _ = _assembly.reduce(problem, per_sample.reshape((*batch_shape, 1)))

    if grad_rows is None:
        return loss, None
    return loss, _assembly.finish_gradient(problem, grad_rows.reshape(z.shape), apply_masks=False)
