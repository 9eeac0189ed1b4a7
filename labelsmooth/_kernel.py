"""The interface between the loss algebra and the passes over the N x K logits.

A kernel receives a :class:`Task` (the logits, the labels, the smoothing profile and the
gradient's per-row coefficients, all computed beforehand from the labels and options alone)
and returns :class:`RowStatistics`: for each row (class axis last, ``S = z - m``,
``d = -S``, ``s = sum_k exp(S_k)``)

- ``log_sum = log s``,
- ``true_half = d_y / 2`` (integer labels),
- ``profile_distance = h * sum_k profile_k d_k`` (the label left out when
  ``exclude_label``), with ``h`` a power of two (``_core.overflow_scale``) or 1,
- ``shift = m`` when the task has an ``lse_coef`` (the z-loss needs ``lse = m + log s``),
- and, when asked, the gradient ``a * exp(S) / s - b * profile - c * e_y`` with the rows of
  ``zero_rows`` 0 and those of ``nan_rows`` NaN; with an ``lse_coef`` ``e``, ``a`` is
  ``prob_coef + e * lse`` (the z-loss gradient ``2 z lse p`` joins the ``T p`` term).

A kernel holds no loss algebra: what the statistics mean for the loss, the reduction and
the gradient's coefficients is written once, in ``_assembly``. :func:`run` is the kernel
in array-API code that every backend can run; the backend kernels (``_numpy_fast``,
``_jax_fast``) run the same passes faster where they apply (CPU tensors on NumPy views).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import _core
from ._backend import device_of

__all__ = ["RowStatistics", "Task", "apply_row_masks", "run"]

_NAN = float("nan")


@dataclass(frozen=True)
class Task:
    """One evaluation's passes over the logits (class axis last; per-row values batch + (1,))."""

    xp: Any
    logits: Any  # working dtype
    labels: Any  # safe integer labels (batch shape), or None for dense targets
    profile: Any  # working dtype broadcastable to the logits, or None (ones)
    sum_profile: bool  # whether the loss needs profile_distance
    exclude_label: bool  # the profile sum leaves the label's class out (prior "others")
    allowed: Any  # bool class mask (full shape) or None: masked logits count as -inf
    acc: Any  # dtype of the per-row sums
    with_grad: bool
    prob_coef: Any  # a (float or acc column)
    spread_coef: Any  # b (float or acc column), or None: no profile term in the gradient
    true_coef: Any  # c (float or acc column), or None (dense targets)
    zero_rows: Any  # bool batch + (1,) or None
    nan_rows: Any  # bool batch + (1,) or None
    threads: int | None = None  # the caller's thread limit, for kernels that use threads
    lse_coef: Any = None  # e (float or acc column): adds e * lse to a; None: no z-loss
    overwrite_logits: bool = False  # the gradient may be written over the logits (read no more)


@dataclass
class RowStatistics:
    """What a kernel returns (acc dtype, batch + (1,); ``grad`` class last, working dtype)."""

    log_sum: Any
    true_half: Any  # None for dense targets
    profile_distance: Any  # None unless the task's sum_profile
    h: Any  # the power of two profile_distance is scaled by (float or per-row values)
    grad: Any  # None unless the task's with_grad
    shift: Any = None  # the row maximum m (acc dtype); None unless the task has an lse_coef

    def as_tuple(self) -> tuple:
        """The fields in order (``RowStatistics(*stats.as_tuple())`` rebuilds it)."""
        return (self.log_sum, self.true_half, self.profile_distance, self.h, self.grad, self.shift)


def run(task: Task) -> RowStatistics:
    """The statistics of every row, in array-API code (any backend, any option)."""
    xp, acc = task.xp, task.acc
    rows = _core.row_softmax(task.logits, task.allowed, xp, acc)
    labels = None if task.labels is None else task.labels[..., None]
    true_half = None if labels is None else _core.half_true_distance(rows, labels, xp, acc)
    distance, h = None, 1.0
    if task.sum_profile:
        distance, h = _core.scaled_distance_sum(rows, _summed_profile(task, labels), xp, acc)
    grad = _gradient(task, rows, labels) if task.with_grad else None
    shift = None if task.lse_coef is None else xp.astype(rows.shift, acc)
    return RowStatistics(rows.log_sum, true_half, distance, h, grad, shift)


def _summed_profile(task: Task, labels: Any) -> Any:
    """The weights of the profile sum as an array over the logits, or None for ones."""
    xp, shape = task.xp, task.logits.shape
    profile = None if task.profile is None else xp.broadcast_to(task.profile, shape)
    if not task.exclude_label:
        return profile
    # The true class is left out of the sum rather than subtracted from it afterwards,
    # which would cancel when d_y is large.
    others = xp.astype(_classes(task.logits, labels, xp) != labels, task.logits.dtype)
    return others if profile is None else others * profile


def _classes(like: Any, labels: Any, xp: Any) -> Any:
    return xp.arange(like.shape[-1], dtype=labels.dtype, device=device_of(like))


def _in_dtype(value: Any, dtype: Any, xp: Any) -> Any:
    """Cast an array coefficient to ``dtype``; Python scalars stay weakly typed."""
    return value if isinstance(value, (int, float)) else xp.astype(value, dtype)


def _gradient(task: Task, rows: _core.RowSoftmax, labels: Any) -> Any:
    xp = task.xp
    work = rows.exp_shifted.dtype
    prob_coef = task.prob_coef
    if task.lse_coef is not None:
        prob_coef = prob_coef + task.lse_coef * (xp.astype(rows.shift, task.acc) + rows.log_sum)
    grad = xp.astype(prob_coef / rows.sum_exp, work) * rows.exp_shifted
    if task.spread_coef is not None:
        profile = 1.0 if task.profile is None else task.profile
        grad = grad - _in_dtype(task.spread_coef, work, xp) * profile
    if labels is not None:
        on_label = _classes(grad, labels, xp) == labels
        grad = xp.where(on_label, grad - _in_dtype(task.true_coef, work, xp), grad)
    if task.allowed is not None:
        grad = xp.where(task.allowed, grad, 0.0)
    return apply_row_masks(task, grad)


def apply_row_masks(task: Task, grad: Any) -> Any:
    """The gradient with the rows of ``zero_rows`` set to 0 and those of ``nan_rows`` to NaN."""
    xp = task.xp
    if task.zero_rows is not None:
        grad = xp.where(task.zero_rows, 0.0, grad)
    if task.nan_rows is not None:
        grad = xp.where(task.nan_rows, _NAN, grad)
    return grad
