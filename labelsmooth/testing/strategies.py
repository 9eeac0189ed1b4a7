"""Hypothesis strategies for fuzzing a smoothed cross-entropy against labelsmooth.

Import this submodule explicitly (``from labelsmooth.testing import strategies``); it needs
``hypothesis``. Every strategy draws NumPy arrays with the class axis *last* (the cases of
:func:`cross_entropy_cases` may move it and then say so with ``axis``):

- :func:`logits`: adversarial but valid logits: scales from 1e-3 to 1e4, rows offset by up
  to 1e6, near one-hot rows (one class ahead by 20 to 1000), and ``-inf`` on classes that
  a ``where`` mask excludes.
- :func:`labels`: integer class labels that avoid masked classes, optionally with some
  samples set to an ``ignore_index``.
- :func:`cross_entropy_cases`: whole valid problems ``(logits, targets, options)`` with
  ``options`` the keyword arguments of :func:`labelsmooth.cross_entropy`.

Example
-------
::

    from hypothesis import given, settings
    import labelsmooth
    from labelsmooth.testing import assert_close
    from labelsmooth.testing.strategies import cross_entropy_cases

    @settings(max_examples=50, deadline=None)
    @given(cross_entropy_cases(options={"epsilon", "weight"}, target_kinds=("labels",)))
    def test_my_loss(case):
        assert_close(my_loss(case.logits, case.targets, **case.options),
                     labelsmooth.cross_entropy(case.logits, case.targets, **case.options))
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any, Literal, NamedTuple, cast

import numpy as np

try:
    from hypothesis import strategies as st
    from hypothesis.errors import InvalidArgument
    from hypothesis.extra import numpy as hnp
except ImportError as exc:  # pragma: no cover - exercised only without hypothesis
    msg = "labelsmooth.testing.strategies needs hypothesis: install it with `pip install hypothesis`"
    raise ImportError(msg) from exc

__all__ = ["ALL_OPTIONS", "CrossEntropyCase", "cross_entropy_cases", "labels", "logits"]

#: Every option :func:`cross_entropy_cases` can exercise.
ALL_OPTIONS = frozenset({"epsilon", "per_sample_epsilon", "prior", "weight", "where", "ignore_index", "axis"})

_SCALES = (1.0, 1.0, 1e-3, 3.0, 30.0, 1e3, 1e4)
_OFFSETS = (0.0, 0.0, 0.0, 1e6, -1e6, 1e3, -87.0)
_PEAKS = (0.0, 0.0, 20.0, 60.0, 1e3)
_EPSILONS = (0.0, 0.1, 0.2, 1e-9, 0.5, 1.0)


class CrossEntropyCase(NamedTuple):
    """One valid smoothed cross-entropy problem.

    ``labelsmooth.cross_entropy(case.logits, case.targets, **case.options)`` is defined and
    finite. ``options`` holds only keyword arguments of :func:`labelsmooth.cross_entropy`.
    """

    logits: np.ndarray
    targets: np.ndarray
    options: dict[str, Any]


def _float_dtype(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        msg = f"dtype must be a NumPy floating dtype, got {dtype}"
        raise InvalidArgument(msg)
    return dtype


def _batch_shapes(max_dims: int, max_side: int) -> st.SearchStrategy[tuple[int, ...]]:
    return hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=1, max_side=max_side)


@st.composite
def logits(
    draw: Any,
    *,
    shape: Sequence[int] | None = None,
    dtype: Any = np.float64,
    where: np.ndarray | None = None,
    max_scale: float = 1e4,
    max_offset: float = 1e6,
    max_classes: int = 8,
) -> np.ndarray:
    """Adversarial but valid logits, class axis last.

    Each row is ``offset + scale * x + peak * e_j`` with ``x`` uniform in ``[-1, 1]``: the
    scale is drawn per row from 1e-3 to ``max_scale`` (wide rows whose softmax is nearly
    one-hot, and nearly uniform rows), the offset from 0, +-1e3 and +-``max_offset``
    (shift invariance), and ``peak`` from 0, 20, 60 and 1000 at a random class ``j``
    (confident rows, where ``1 - p_y`` underflows a naive computation). Values that the
    dtype cannot hold are left out of the draws.

    Parameters
    ----------
    shape : sequence of int, optional
        Full shape, classes last. Default: 0 to 2 batch dimensions of size 1 to 4 and 1 to
        ``max_classes`` classes.
    dtype : NumPy floating dtype, default float64
    where : boolean NumPy array broadcastable to ``shape``, optional
        Classes where it is False may be set to ``-inf`` (as a masked vocabulary does).
        Allowed classes are always finite.
    max_scale, max_offset : float
        Upper bounds of the drawn scale and offset.
    max_classes : int
        Largest class count when ``shape`` is drawn.
    """
    dtype = _float_dtype(dtype)
    if shape is None:
        batch = draw(_batch_shapes(2, 4))
        shape = (*batch, draw(st.integers(1, max_classes)))
    shape = tuple(int(s) for s in shape)
    if not shape:
        msg = "logits need at least one dimension (the classes)"
        raise InvalidArgument(msg)
    # Keep |offset| + scale + peak well inside the dtype's range.
    limit = float(np.finfo(dtype).max) / 16.0
    scales = [s for s in _SCALES if s <= min(max_scale, limit)] or [min(max_scale, limit)]
    offsets = [o for o in _OFFSETS if abs(o) <= min(max_offset, limit)] or [0.0]
    peaks = [p for p in _PEAKS if p <= limit] or [0.0]
    row_shape = (*shape[:-1], 1)
    scale = draw(hnp.arrays(np.float64, row_shape, elements=st.sampled_from(scales)))
    offset = draw(hnp.arrays(np.float64, row_shape, elements=st.sampled_from(offsets)))
    peak = draw(hnp.arrays(np.float64, row_shape, elements=st.sampled_from(peaks)))
    peak_class = draw(hnp.arrays(np.int64, row_shape, elements=st.integers(0, shape[-1] - 1)))
    unit = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1.0, 1.0, allow_subnormal=False)))
    values = offset + scale * unit + peak * (np.arange(shape[-1]) == peak_class)
    if where is not None:
        allowed = np.broadcast_to(np.asarray(where, dtype=bool), shape)
        to_inf = draw(hnp.arrays(np.bool_, shape)) & ~allowed
        values = np.where(to_inf, -np.inf, values)
    return values.astype(dtype)


@st.composite
def labels(
    draw: Any,
    num_classes: int,
    *,
    shape: Sequence[int] = (),
    where: np.ndarray | None = None,
    ignore_index: int | None = None,
    dtype: Any = np.int64,
) -> np.ndarray:
    """Integer class labels in ``[0, num_classes)`` that avoid masked classes.

    Parameters
    ----------
    num_classes : int
    shape : sequence of int, default ()
        The batch shape.
    where : boolean NumPy array broadcastable to ``(*shape, num_classes)``, optional
        Labels are drawn among the classes where it is True (each row must allow one).
    ignore_index : int, optional
        When given, some samples (never all of them, so that a ``"mean"`` is defined) are
        set to this value.
    dtype : NumPy integer dtype, default int64
    """
    shape = tuple(int(s) for s in shape)
    full = (*shape, num_classes)
    allowed = np.ones(full, dtype=bool) if where is None else np.broadcast_to(np.asarray(where, dtype=bool), full)
    counts = allowed.sum(axis=-1)
    if np.any(counts == 0):
        msg = "where must allow at least one class in every row to draw labels"
        raise InvalidArgument(msg)
    pick = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 10**6)))
    rank = pick % counts
    # The rank-th allowed class of each row.
    chosen = np.argmax(np.cumsum(allowed, axis=-1) > rank[..., None], axis=-1)
    if ignore_index is not None and chosen.size > 0:
        ignored = np.array(draw(hnp.arrays(np.bool_, shape)))
        keep = draw(st.integers(0, chosen.size - 1))
        ignored.reshape(-1)[keep] = False
        chosen = np.where(ignored, ignore_index, chosen)
    return np.asarray(chosen, dtype=np.dtype(dtype))


def _probability_rows(draw: Any, shape: tuple[int, ...], allowed: np.ndarray, dtype: np.dtype) -> np.ndarray:
    raw = draw(hnp.arrays(np.float64, shape, elements=st.floats(0.0, 1.0, allow_subnormal=False)))
    one_hot_rows = draw(hnp.arrays(np.bool_, (*shape[:-1], 1)))
    first_allowed = np.argmax(allowed, axis=-1)[..., None]
    one_hot = (np.arange(shape[-1]) == first_allowed).astype(np.float64)
    raw = np.where(one_hot_rows, one_hot, raw * allowed)
    raw = np.where(raw.sum(axis=-1, keepdims=True) > 0, raw, one_hot)
    return (raw / raw.sum(axis=-1, keepdims=True)).astype(dtype)


def _draw_mask(draw: Any, full: tuple[int, ...]) -> np.ndarray:
    """A class mask of shape ``(K,)`` or ``full``."""
    num_classes = full[-1]
    shared_mask = draw(st.booleans())
    mask_shape = (num_classes,) if shared_mask else full
    mask = np.array(draw(hnp.arrays(np.bool_, mask_shape)))
    # Every row keeps two allowed classes (one if K == 1), so any prior is valid.
    keep = draw(hnp.arrays(np.int64, (*mask_shape[:-1], 1), elements=st.integers(0, num_classes - 1)))
    classes = np.arange(num_classes)
    mask |= (classes == keep) | (classes == (keep + 1) % num_classes)
    return mask


def _draw_targets(
    draw: Any,
    kind: str,
    options: Collection[str],
    full: tuple[int, ...],
    allowed: np.ndarray,
    dtype: np.dtype,
    chosen: dict[str, Any],
) -> np.ndarray:
    """Labels or probability rows; an ``ignore_index`` drawn for labels goes into ``chosen``."""
    if kind == "labels":
        ignore_index = None
        if "ignore_index" in options and draw(st.booleans()):
            ignore_index = draw(st.sampled_from([-100, -1]))
            chosen["ignore_index"] = ignore_index
        return draw(labels(full[-1], shape=full[:-1], where=allowed, ignore_index=ignore_index))
    if kind == "probabilities":
        return _probability_rows(draw, full, allowed, dtype)
    msg = f"target_kinds must hold 'labels' and/or 'probabilities', got {kind!r}"
    raise InvalidArgument(msg)


def _draw_epsilon_array(draw: Any, batch: tuple[int, ...], dtype: np.dtype, width: Literal[16, 32, 64]) -> np.ndarray:
    """Per-sample epsilons of a trailing part of the batch shape."""
    eps_shape = batch[draw(st.integers(0, len(batch))) :]
    representable = sorted({float(dtype.type(e)) for e in _EPSILONS})
    elements = st.one_of(st.sampled_from(representable), st.floats(0.0, 1.0, width=width, allow_subnormal=False))
    return draw(hnp.arrays(dtype, eps_shape, elements=elements))


def _draw_prior(draw: Any, num_classes: int, dtype: np.dtype) -> str | np.ndarray | None:
    """None (uniform), ``"others"`` or a positive ``(K,)`` array summing to 1."""
    prior_kind = draw(st.sampled_from(["uniform", "others", "array"]))
    if prior_kind == "others" and num_classes >= 2:
        return "others"
    if prior_kind != "array":
        return None
    if dtype.itemsize >= 4:
        raw = draw(hnp.arrays(np.float64, (num_classes,), elements=st.floats(0.05, 1.0)))
        return (raw / raw.sum()).astype(dtype)
    # Multiples of 2**-bits (fewer than 11 significant bits each) that sum to 1
    # exactly: a half-precision prior rounded from float64 can miss 1 by more
    # than the tolerance of a float32 check.
    bits = 10 + max(0, math.ceil(math.log2(num_classes / 16)))
    counts = draw(hnp.arrays(np.int64, (num_classes,), elements=st.integers(16, 64)))
    units = counts * 2**bits // counts.sum()
    units[-1] = 2**bits - units[:-1].sum()
    return (units / 2.0**bits).astype(dtype)


def _draw_loss_options(
    draw: Any,
    options: Collection[str],
    batch: tuple[int, ...],
    num_classes: int,
    dtype: np.dtype,
    chosen: dict[str, Any],
) -> None:
    """``epsilon`` (a float or per sample), ``prior`` and ``weight``, each drawn into ``chosen`` or left out."""
    width = cast("Literal[16, 32, 64]", 8 * dtype.itemsize)
    if "per_sample_epsilon" in options and draw(st.booleans()):
        chosen["epsilon"] = _draw_epsilon_array(draw, batch, dtype, width)
    elif "epsilon" in options and draw(st.booleans()):
        chosen["epsilon"] = draw(st.one_of(st.sampled_from(_EPSILONS), st.floats(0.0, 1.0)))
    if "prior" in options:
        prior = _draw_prior(draw, num_classes, dtype)
        if prior is not None:
            chosen["prior"] = prior
    if "weight" in options and draw(st.booleans()):
        chosen["weight"] = draw(hnp.arrays(dtype, (num_classes,), elements=st.floats(0.125, 4.0, width=width)))


def _move_class_axis(
    draw: Any, z: np.ndarray, targets: np.ndarray, kind: str, mask: np.ndarray | None, chosen: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Move the class axis of the case to a drawn earlier position; ``chosen`` gets ``axis``."""
    axis = draw(st.integers(0, z.ndim - 2))
    if kind == "probabilities":
        targets = np.moveaxis(targets, -1, axis)
    if mask is not None:
        # A (K,) mask broadcasts along the last axis only: give it the full layout.
        chosen["where"] = np.moveaxis(np.broadcast_to(mask, z.shape), -1, axis).copy()
    chosen["axis"] = axis
    return np.moveaxis(z, -1, axis), targets


@st.composite
def cross_entropy_cases(
    draw: Any,
    *,
    dtypes: Sequence[Any] = (np.float64,),
    options: Collection[str] = ALL_OPTIONS,
    target_kinds: Sequence[str] = ("labels", "probabilities"),
    reductions: Sequence[str] = ("mean", "sum", "none"),
    max_classes: int = 6,
    max_batch_dims: int = 2,
    max_batch_size: int = 3,
    max_scale: float = 1e4,
    max_offset: float = 1e6,
) -> CrossEntropyCase:
    """Whole valid problems for :func:`labelsmooth.cross_entropy`: logits, targets and options.

    Parameters
    ----------
    dtypes : sequence of NumPy floating dtypes, default (float64,)
        dtype of the logits (and of probability targets, ``epsilon`` arrays, priors and
        weights).
    options : collection of str, default :data:`ALL_OPTIONS`
        The options a case may use (each is used in some cases, not all):
        ``"epsilon"`` (a float in [0, 1], including 0, 1e-9 and 1), ``"per_sample_epsilon"``
        (an array of the batch shape), ``"prior"`` (None, ``"others"`` or a positive
        ``(K,)`` array summing to 1), ``"weight"`` (positive ``(K,)`` class weights),
        ``"where"`` (a class mask of shape ``(K,)`` or the logits' shape, with ``-inf``
        logits on some masked classes; every row allows at least 2 classes when ``K >= 2``),
        ``"ignore_index"`` (-100 or -1 on some, never all, samples) and ``"axis"``
        (the class axis moved away from last). Leave out what your loss does not support.
    target_kinds : sequence of {"labels", "probabilities"}
        Integer labels, or probability rows (non-negative, summing to 1, zero on masked
        classes; some of them one-hot).
    reductions : sequence of {"mean", "sum", "none"}
    max_classes, max_batch_dims, max_batch_size : int
        Size bounds: ``K`` in ``[1, max_classes]``, batch of 0 to ``max_batch_dims``
        dimensions of 1 to ``max_batch_size``.
    max_scale, max_offset : float
        Passed to :func:`logits`.

    Returns
    -------
    CrossEntropyCase
        ``(logits, targets, options)``; ``labelsmooth.cross_entropy(logits, targets,
        **options)`` is finite.
    """
    unknown = set(options) - ALL_OPTIONS
    if unknown:
        msg = f"options must be a subset of {sorted(ALL_OPTIONS)}, got unknown {sorted(unknown)}"
        raise InvalidArgument(msg)
    dtype = _float_dtype(draw(st.sampled_from(list(dtypes))))
    kind = draw(st.sampled_from(list(target_kinds)))
    num_classes = draw(st.integers(1, max_classes))
    batch = draw(_batch_shapes(max_batch_dims, max_batch_size))
    full = (*batch, num_classes)
    num_rows = int(np.prod(batch, dtype=np.int64))
    chosen: dict[str, Any] = {}

    mask = _draw_mask(draw, full) if "where" in options and draw(st.booleans()) else None
    # Keep the summed loss inside the dtype's range (matters for float16 only).
    reach = float(np.finfo(dtype).max) / (64.0 * max(num_rows, 1))
    z = draw(
        logits(shape=full, dtype=dtype, where=mask, max_scale=min(max_scale, reach), max_offset=min(max_offset, reach))
    )
    allowed = np.broadcast_to(np.ones(1, dtype=bool) if mask is None else mask, full)
    targets = _draw_targets(draw, kind, options, full, allowed, dtype, chosen)

    _draw_loss_options(draw, options, batch, num_classes, dtype, chosen)
    if mask is not None:
        chosen["where"] = mask
    chosen["reduction"] = draw(st.sampled_from(list(reductions)))

    if "axis" in options and len(full) >= 2 and draw(st.booleans()):
        z, targets = _move_class_axis(draw, z, targets, kind, mask, chosen)
    return CrossEntropyCase(np.array(z, order="C"), np.array(targets, order="C"), chosen)
