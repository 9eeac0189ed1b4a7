"""The kernel for JAX integer labels, written for XLA's fusions (jit or not).

It returns the row statistics of ``_kernel`` (one row, ``S = z - m <= 0``, ``s = sum exp(S)``)
and writes no N x K array besides the gradient. Each pass over the logits (the two row sums
``sum(exp(z - m))`` and ``sum(m - z)``, and the gradient) takes the row maximum ``m`` in a
form of its own, so that XLA's CPU fusions keep the maximum inside the pass rather than
sharing it and writing out either ``S`` or ``m`` broadcast to N x K; every form is the exact
maximum, so the values are those of the array-API kernel. The gradient is one elementwise
pass, ``a * exp(S) / s - b`` with per-row ``a`` and ``b`` (which also carry the ignored and
NaN rows), and the true class's ``-c`` is then added in place, one element a row, instead of
by a comparison over the whole array. Rows longer than ``_ROW_TILE`` classes are summed as
blocks of at most ``_ROW_TILE`` classes, each with its own maximum, and the blocks' sums
merged (each rescaled by ``exp(m_b - m)``, as in an online softmax); rows with no such block
width store ``S`` instead (one pass writing it).

``rest = s - 1`` is the log-sum's argument without the maximum's exact 1. Taken as
``sum(exp(S)) - 1`` it has an absolute error of a few float32 ulps of 1, harmless unless the
row is dominated by one class (``rest`` small, and the loss with it). Only when some row has
``rest < 1/16`` (then its maximum is unique) is its sum taken again without the maximum,
which keeps the full relative precision of the array-API kernel. Rows whose maximum is not
finite (NaN, ``+inf``, all ``-inf``) are detected from the same sums, and the whole task is
then run by the array-API kernel. Under ``jit`` both decisions are ``lax.cond``.

Only used when the per-row sums are accumulated in the working dtype (JAX without x64, or
float64 logits), i.e. when the array-API kernel would also sum in that dtype.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any

from array_api_compat import is_jax_namespace

from . import _kernel

__all__ = ["run", "supports"]

_NAN = float("nan")
_INF = float("inf")


def supports(task: Any) -> bool:
    """Whether this kernel runs ``task`` (a ``_kernel.Task``): JAX integer labels, no mask."""
    if not is_jax_namespace(task.xp) or task.labels is None or task.allowed is not None:
        return False
    if task.lse_coef is not None:
        return False
    # "others" leaves the true class out of the smoothing sum, a per-row mask that the
    # array-API kernel writes; a difference of the full sum and d_y would cancel.
    return not task.exclude_label and task.acc == task.logits.dtype


def _profile_distance(task: Any, stored: Any, dsum: Any) -> Any:
    """``sum_k profile_k d_k`` of every row (None when the loss has no smoothing term)."""
    xp, z = task.xp, task.logits
    if not task.sum_profile:
        return None
    if task.profile is None:
        return dsum
    profile = xp.broadcast_to(task.profile, z.shape)
    shifted = _shifted(z, stored, _PROFILE)
    # A class without target mass counts 0 even at a -inf logit (not 0 * inf); only the
    # infinite distances are cleaned, so a zero profile entry keeps its derivative.
    cleaned = xp.where((profile == 0.0) & xp.isinf(shifted), 0.0, shifted)
    return -xp.sum(profile * cleaned, axis=-1, keepdims=True)


def _true_half(task: Any, stored: Any, peak: Any) -> Any:
    """``(m - z_y) / 2``, from ``S`` when it is stored, else from the exponential sum's maximum."""
    xp, z = task.xp, task.logits
    labels = task.labels[..., None]
    if stored is None:
        return _settled(peak) * 0.5 - xp.take_along_axis(z, labels, axis=-1) * 0.5
    return xp.take_along_axis(stored, labels, axis=-1) * -0.5


# Rows below this are dominated by their (then unique) maximum and get the exact sum.
_DOMINATED = 1.0 / 16.0

# The row maximum enters every N x K pass; each pass takes it in a form of its own (all of them
# exact, so bitwise equal), so that XLA keeps the maximum inside that pass's fusion instead of
# sharing one and writing out its N x K broadcast.
# This holds on XLA's CPU backend for rows of up to _ROW_TILE elements; longer rows are blocked.
_EXP_SUM, _DISTANCE_SUM, _GRADIENT, _PROFILE = range(4)
_ROW_TILE = 32768
_MIN_BLOCK = 1024


def _row_max(z: Any, form: int) -> Any:
    """The maximum over the last axis (keepdims), written in the given form."""
    lax = sys.modules["jax"].lax
    axis = (z.ndim - 1,)
    if form == _EXP_SUM:
        peak = lax.reduce(z, -_INF, lax.max, axis)
    elif form == _DISTANCE_SUM:
        peak = -lax.reduce(-z, _INF, lax.min, axis)
    elif form == _GRADIENT:
        peak = lax.reduce(z, -_INF, lambda a, b: lax.max(b, a), axis)
    else:
        peak = lax.reduce(z, -_INF, lambda a, b: lax.max(lax.max(a, b), a), axis)
    # The loss does not depend on the shift (its derivative in m is T - T = 0), so the
    # shift is a constant to autodiff: each form's derivative would split tied maxima in
    # its own way, and those parts would not cancel.
    return lax.stop_gradient(peak[..., None])


def _shifted(z: Any, stored: Any, form: int) -> Any:
    """``S = z - m``: the stored array, or computed in the pass that uses it."""
    return stored if stored is not None else z - _row_max(z, form)


def _settled(row_values: Any) -> Any:
    """The values unchanged, by an operation that XLA does not merge into the reduction before it.

    Rounding to the dtype's own precision changes no value. XLA's CPU backend (jax 0.10)
    runs a row reduction whose result feeds further operations (a logarithm, a product)
    several times slower than the reduction alone: 137 ms against 27 ms for the sums of
    ``exp(z - m)`` over 65536 x 1000 float32 logits on two cores.
    """
    jax = sys.modules["jax"]
    info = jax.numpy.finfo(row_values.dtype)
    return jax.lax.reduce_precision(row_values, exponent_bits=info.nexp, mantissa_bits=info.nmant)


def _block_width(num_classes: int) -> int | None:
    """The width of the blocks a row's sums are taken over: the row itself up to ``_ROW_TILE``
    classes, else the widest divisor of it that is at most ``_ROW_TILE`` (None if under ``_MIN_BLOCK``)."""
    if num_classes <= _ROW_TILE:
        return num_classes
    blocks = -(-num_classes // _ROW_TILE)
    while num_classes // blocks >= _MIN_BLOCK:
        if num_classes % blocks == 0:
            return num_classes // blocks
        blocks += 1
    return None


def _row_sums(z: Any, width: int) -> tuple[Any, Any, Any]:
    """``(dsum, rest, peak)`` of every row: ``sum(m - z)``, ``sum(exp(z - m)) - 1`` and ``m``.

    Rows longer than ``width`` are summed as blocks of ``width`` classes, each shifted by its
    own maximum ``m_b``, and merged: ``s = sum_b s_b exp(m_b - m)`` and
    ``sum(m - z) = sum_b (d_b + width (m - m_b))``, sums of non-negative terms. XLA's CPU
    backend sums ``exp(z - m)`` over rows of 128000 classes about 8 times slower than over
    the same values as rows of 32000 (262 ms against 35 ms for 1024 x 128000 float32).
    """
    xp = sys.modules["jax"].numpy
    blocks = z.shape[-1] // width
    view = xp.reshape(z, (-1, width)) if blocks > 1 else z
    # The exponential sum's maximum is also the true-class distance's (one fusion).
    peak = _row_max(view, _EXP_SUM)
    dsum = _settled(xp.sum(_row_max(view, _DISTANCE_SUM) - view, axis=-1, keepdims=True))
    total = _settled(xp.sum(xp.exp(view - peak), axis=-1, keepdims=True))
    if blocks == 1:
        return dsum, total - 1.0, peak
    lead = (*z.shape[:-1], blocks)
    block_peak, block_dsum, block_total = (xp.reshape(value, lead) for value in (peak, dsum, total))
    peak = xp.max(block_peak, axis=-1, keepdims=True)
    total = xp.sum(block_total * xp.exp(block_peak - peak), axis=-1, keepdims=True)
    dsum = xp.sum(block_dsum + width * (peak - block_peak), axis=-1, keepdims=True)
    return dsum, total - 1.0, peak


def _fused(task: Any, stored: Any, sums: tuple[Any, Any, Any]) -> _kernel.RowStatistics:
    """The statistics (and gradient) from the row sums ``(dsum, rest, peak)`` (and ``S``, when stored)."""
    dsum, rest, peak = sums
    grad = _gradient(task, stored, rest) if task.with_grad else None
    distance = _profile_distance(task, stored, dsum)
    return _kernel.RowStatistics(task.xp.log1p(rest), _true_half(task, stored, peak), distance, 1.0, grad)


def _gradient(task: Any, stored: Any, rest: Any) -> Any:
    """``a * exp(S) / s - b * profile - c * e_y`` in one elementwise pass and one scatter."""
    xp, z = task.xp, task.logits
    work = z.dtype
    rows = (*z.shape[:-1], 1)
    exp_coef = xp.astype(task.prob_coef / (rest + 1.0), work)
    true_shift = xp.broadcast_to(xp.astype(task.true_coef, work), rows)
    spread = None if task.spread_coef is None else xp.broadcast_to(xp.astype(task.spread_coef, work), rows)
    # Ignored and poisoned rows through their per-row coefficients (exp(S) is finite in
    # [0, 1] here): 0 * exp(S) - 0 - 0 = 0, NaN * exp(S) = NaN.
    masks_folded = task.profile is None
    if masks_folded:
        if task.zero_rows is not None:
            exp_coef = xp.where(task.zero_rows, 0.0, exp_coef)
            true_shift = xp.where(task.zero_rows, 0.0, true_shift)
            spread = None if spread is None else xp.where(task.zero_rows, 0.0, spread)
        if task.nan_rows is not None:
            exp_coef = xp.where(task.nan_rows, _NAN, exp_coef)
    grad = exp_coef * xp.exp(_shifted(z, stored, _GRADIENT))
    if spread is not None:
        grad = grad - (spread if task.profile is None else spread * task.profile)
    # The true class's -c_y added in place (one element a row) rather than by a comparison
    # over the whole array.
    flat = xp.reshape(grad, (-1, z.shape[-1]))
    flat = flat.at[xp.arange(flat.shape[0]), xp.reshape(task.labels, (-1,))].add(-xp.reshape(true_shift, (-1,)))
    grad = xp.reshape(flat, z.shape)
    return grad if masks_folded else _kernel.apply_row_masks(task, grad)


def run(task: Any) -> _kernel.RowStatistics:
    """The row statistics (and gradient) of a task this kernel supports.

    Concrete (not traced) arrays run as one compiled program, cached per shape and static
    option: eager JAX would otherwise compile each of the kernel's few dozen operations
    for every new shape (about a second) and dispatch them one by one.
    """
    jax = sys.modules["jax"]
    fields = {field.name: getattr(task, field.name) for field in dataclasses.fields(task)}
    if any(isinstance(value, jax.core.Tracer) for value in fields.values()):
        return _passes(task)
    # Python numbers (the coefficients) become arguments, so that a new epsilon or batch
    # size reuses the program; in the working dtype, as they would combine with it.
    numbers = {name: value for name, value in fields.items() if isinstance(value, float)}
    arrays = {name: value for name, value in fields.items() if isinstance(value, jax.Array)}
    arguments = {**arrays, **{name: jax.numpy.asarray(value, dtype=task.acc) for name, value in numbers.items()}}
    static = tuple((name, value) for name, value in fields.items() if name not in arguments)
    layout = _block_width(task.logits.shape[-1])
    return _kernel.RowStatistics(*_compiled_passes(static, layout)(arguments))


@functools.lru_cache(maxsize=64)
def _compiled_passes(static: tuple[tuple[str, Any], ...], layout: int | None) -> Any:
    """``jit`` of :func:`_passes` for the tasks with these static fields (and row layout)."""
    jax = sys.modules["jax"]

    def passes(arguments: dict[str, Any]) -> tuple:
        return _passes(_kernel.Task(**dict(static), **arguments)).as_tuple()

    return jax.jit(passes)


def _passes(task: Any) -> _kernel.RowStatistics:
    """The kernel's passes; under tracing, their decisions are conditionals."""
    jax = sys.modules["jax"]
    xp, z = task.xp, task.logits
    width = _block_width(z.shape[-1])
    if width is not None:
        stored = None
        dsum, rest, peak = _row_sums(z, width)
    else:
        # Longer rows: a pass with its own maximum is slower there than one stored S.
        peak = None
        stored = z - jax.lax.stop_gradient(xp.max(z, axis=-1, keepdims=True))
        dsum = -xp.sum(stored, axis=-1, keepdims=True)
        rest = xp.sum(xp.exp(stored), axis=-1, keepdims=True) - 1.0
    dominated = rest < _DOMINATED

    def refined() -> Any:
        # The maximum's exact 1 left out of the sum (the maximum is unique in these rows),
        # its term kept as exp(S) - 1 (exactly 0) so that autodiff still sees it.
        shifted = z - jax.lax.stop_gradient(xp.max(z, axis=-1, keepdims=True))
        exp_shifted = xp.exp(shifted)
        below = xp.sum(xp.where(shifted == 0.0, exp_shifted - 1.0, exp_shifted), axis=-1, keepdims=True)
        return xp.where(dominated, below, rest)

    # rest is NaN exactly when a row maximum is not finite (a finite m gives 0 <= E <= 1);
    # dsum is infinite with a -inf logit or when the sum of distances overflows, which
    # the array-API kernel sums scaled.
    unusual = xp.any(xp.isnan(rest)) | xp.any(xp.isinf(dsum))
    any_dominated = xp.any(dominated)
    if not isinstance(unusual, jax.core.Tracer):
        if bool(unusual):
            return _kernel.run(task)
        return _fused(task, stored, (dsum, refined() if bool(any_dominated) else rest, peak))
    # Two conditionals, each on what it needs: the dominated rows' sums (N values), and the
    # array-API kernel for rows without a finite maximum, whose branch writes the gradient once.
    rest = jax.lax.cond(any_dominated, refined, lambda: rest)
    outputs = jax.lax.cond(
        unusual,
        lambda: _kernel.run(task).as_tuple(),
        lambda: _fused(task, stored, (dsum, rest, peak)).as_tuple(),
    )
    return _kernel.RowStatistics(*outputs)
