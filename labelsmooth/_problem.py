"""Problem preparation: every argument of the smoothed losses checked and laid out once.

``prepare`` turns the public arguments into a :class:`Problem`: the logits in the working
dtype with the class axis last, safe integer labels or probability rows, the options in
that layout, and the masks of ignored and poisoned rows (poisoned: invalid values that
could not be refused because they cannot be read, under ``jax.jit`` or on lazy Dask).
Each option is prepared by a function of its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar

from array_api_compat import is_array_api_obj

from . import _core
from ._backend import accumulation_dtype, compute_dtype, index_dtype, isdtype, namespace_of, values_checkable
from ._validation import (
    check_broadcastable,
    check_epsilon,
    check_static_options,
    comparable_labels,
    dtype_name,
    either_mask,
    first_value,
    label_masks,
    normalize_axis,
    prior_tolerance,
    require_array,
    require_real_floating,
    safe_indices,
)
from .typing import Prior, Reduction

__all__ = [
    "AdapterOptions",
    "LossOptions",
    "Problem",
    "complete_options",
    "prepare",
    "prior_rows",
    "validate_prior_values",
    "with_options",
]


@dataclass
class Problem:
    """Validated inputs in the class-last layout, plus what the reduction needs."""

    xp: Any
    logits: Any  # working dtype, class axis last
    labels: Any  # safe integer labels (batch shape) or None
    probabilities: Any  # working dtype, class axis last, or None
    epsilon: Any  # float, or acc array batch + (1,)
    prior: Any  # None, "others" or working-dtype array (class last, masked, normalised)
    weight: Any  # working dtype (K,) or None
    allowed: Any  # bool, class last, full shape, or None
    num_allowed: Any  # int K or acc array batch + (1,)
    sample_weight: Any  # acc array batch + (1,) or None
    ignored: Any  # bool batch + (1,) or None
    poison: Any  # bool batch + (1,) or None: rows whose result must be NaN
    reduction: str
    axis: int
    ndim: int
    result_dtype: Any
    acc: Any
    threads: int | None = None  # the caller's thread limit for kernels that use threads
    eager: bool = False  # whether values can be read now (not under jax.jit, not lazy Dask)
    z_loss: float = 0.0  # coefficient of lse^2 in each sample's loss
    softcap: float | None = None  # c of the capped logits c * tanh(z / c)
    raw_logits: Any = None  # the logits before capping (working dtype, class last), or None


@dataclass
class _Layout:
    """The static facts every option is checked against."""

    xp: Any
    axis: int
    num_classes: int
    logits_shape: tuple
    batch_shape: tuple
    work: Any  # working dtype of the N x K arrays
    acc: Any  # dtype of the per-row sums
    eager: bool  # whether values can be read (and refused) now

    def class_last(self, x: Any) -> Any:
        return x if self.axis == len(self.logits_shape) - 1 else self.xp.moveaxis(x, self.axis, -1)


class AdapterOptions(TypedDict, total=False):
    """The keyword options of the smoothed losses (their defaults are :func:`prepare`'s)."""

    epsilon: Any
    prior: Prior
    axis: int
    weight: Any
    ignore_index: int | None
    where: Any
    reduction: Reduction
    sample_weight: Any
    z_loss: float
    softcap: float | None


class LossOptions(AdapterOptions, total=False):
    """The options of the array-API functions, which also take the namespace."""

    xp: Any


def prepare(
    logits: Any,
    targets: Any,
    *,
    epsilon: Any = 0.0,
    prior: Prior = None,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int | None = None,
    where: Any = None,
    reduction: Reduction = "mean",
    sample_weight: Any = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    xp: Any = None,
    **unknown: Any,
) -> Problem:
    """Check every argument of a smoothed loss and lay the problem out class-last.

    The options' defaults here are those of every smoothed loss (see :func:`with_options`).
    """
    if unknown:
        raise TypeError(_unknown_options_message(unknown, prepare))
    layout = _layout(logits, targets, (epsilon, prior, weight, where, sample_weight), axis, xp)
    xp = layout.xp
    reduction, ignore_index, z_loss, softcap = check_static_options(reduction, prior, ignore_index, z_loss, softcap)
    is_labels = _check_target_kind(targets, logits, layout, ignore_index)
    epsilon = check_epsilon(epsilon, xp, layout.batch_shape)
    others = isinstance(prior, str)
    if others and layout.num_classes < 2:
        msg = f"prior='others' needs at least 2 classes, got {layout.num_classes}"
        raise ValueError(msg)

    allowed, num_allowed, poison = _where_mask(where, layout, prior)
    weight = _class_weight(weight, layout)
    prior, prior_poison = _array_prior(prior, layout, allowed)
    epsilon, epsilon_poison = _per_sample_epsilon(epsilon, layout)
    sample_weight, weight_poison = _sample_weight(sample_weight, layout)
    poison = either_mask(either_mask(either_mask(poison, prior_poison), epsilon_poison), weight_poison)
    labels = probabilities = ignored = None
    if is_labels:
        labels, ignored, target_poison = _label_targets(targets, layout, ignore_index, allowed)
    else:
        probabilities, target_poison = _probability_targets(targets, layout, allowed)
    raw_logits = layout.class_last(xp.astype(logits, layout.work, copy=False))
    return Problem(
        xp=xp,
        logits=raw_logits if softcap is None else _core.soft_cap(raw_logits, softcap, xp),
        labels=labels,
        probabilities=probabilities,
        epsilon=epsilon,
        prior=prior,
        weight=weight,
        allowed=allowed,
        num_allowed=num_allowed,
        ignored=ignored,
        sample_weight=sample_weight,
        poison=either_mask(poison, target_poison),
        reduction=reduction,
        axis=layout.axis,
        ndim=logits.ndim,
        result_dtype=logits.dtype,
        acc=layout.acc,
        eager=layout.eager,
        z_loss=z_loss,
        softcap=softcap,
        raw_logits=None if softcap is None else raw_logits,
    )


# Other libraries' names for the options, suggested when one of them is passed.
_OTHER_NAMES = {"label_smoothing": "epsilon", "dim": "axis", "mask": "where"}


def _unknown_options_message(unknown: dict, source: Callable[..., Any], only: Collection[str] | None = None) -> str:
    options = list(_option_defaults(True, source, only))
    names = ", ".join(repr(name) for name in unknown)
    hints = "".join(f"; {name!r} is {_OTHER_NAMES[name]!r} here" for name in unknown if name in _OTHER_NAMES)
    return f"unexpected keyword argument {names}: the options are {', '.join(options)}{hints}"


def complete_options(
    options: Any,
    *,
    namespace: bool = True,
    source: Callable[..., Any] | None = None,
    only: Collection[str] | None = None,
) -> dict:
    """Every option by name, with the defaults of ``source`` (:func:`prepare`) for those not given.

    ``only`` names the options of a loss that takes some of ``source``'s options.
    """
    source = prepare if source is None else source
    known = _option_defaults(namespace, source, only)
    unknown = {name: value for name, value in options.items() if name not in known}
    if unknown:
        raise TypeError(_unknown_options_message(unknown, source, only))
    return {**known, **options}


def _option_defaults(namespace: bool, source: Callable[..., Any], only: Collection[str] | None = None) -> dict:
    parameters = inspect.signature(source).parameters.values()
    return {
        parameter.name: parameter.default
        for parameter in parameters
        if parameter.kind is parameter.KEYWORD_ONLY
        and (namespace or parameter.name != "xp")
        and (only is None or parameter.name in only)
    }


_Function = TypeVar("_Function", bound=Callable[..., Any])


def with_options(
    *, namespace: bool = True, source: Callable[..., Any] | None = None, only: Collection[str] | None = None
) -> Callable[[_Function], _Function]:
    """Give a ``(logits, targets, /, **options)`` function the signature its options have.

    ``inspect.signature`` (``help()``, IDEs, documentation) then shows every option with
    its default, from ``source`` (:func:`prepare` unless given), or those named in
    ``only``; ``namespace=False`` leaves ``xp`` out (adapters).
    """
    source = prepare if source is None else source
    defaults = _option_defaults(namespace, source, only)
    options = [parameter for name, parameter in inspect.signature(source).parameters.items() if name in defaults]

    def decorate(function: _Function) -> _Function:
        own = inspect.signature(function).parameters.values()
        leading = [parameter for parameter in own if parameter.kind is parameter.POSITIONAL_ONLY]
        trailing = [parameter for parameter in own if parameter.kind is parameter.KEYWORD_ONLY]
        signature = inspect.signature(function).replace(parameters=[*leading, *options, *trailing])
        function.__signature__ = signature  # type: ignore[attr-defined]
        return function

    return decorate


def _layout(logits: Any, targets: Any, options: tuple, axis: Any, xp: Any) -> _Layout:
    array_options = [a for a in options if not isinstance(a, (float, str, type(None))) and is_array_api_obj(a)]
    require_array("logits", logits)
    require_array("targets", targets)
    xp = namespace_of(logits, targets, *array_options, xp=xp)
    require_real_floating("logits", logits, xp)
    if logits.ndim == 0:
        msg = "logits must have at least one dimension (the class axis), got a 0-d array"
        raise ValueError(msg)
    axis = normalize_axis(axis, logits.ndim)
    num_classes = logits.shape[axis]
    if num_classes is not None and num_classes < 1:
        msg = f"logits must have at least one class along axis {axis}, got shape {tuple(logits.shape)}"
        raise ValueError(msg)
    logits_shape = tuple(logits.shape)
    work = compute_dtype(xp, logits.dtype)
    return _Layout(
        xp=xp,
        axis=axis,
        num_classes=num_classes,
        logits_shape=logits_shape,
        batch_shape=logits_shape[:axis] + logits_shape[axis + 1 :],
        work=work,
        acc=accumulation_dtype(xp, work, logits),
        eager=values_checkable(logits, targets, *array_options),
    )


def _check_target_kind(targets: Any, logits: Any, layout: _Layout, ignore_index: int | None) -> bool:
    """Whether ``targets`` are integer labels (else probabilities), with their shape checked."""
    xp, shape = layout.xp, tuple(targets.shape)
    if isdtype(xp, targets.dtype, "integral"):
        if shape != layout.batch_shape:
            raise ValueError(_target_shape_message(shape, layout.logits_shape, layout.axis, integer=True))
        return True
    if not xp.isdtype(targets.dtype, "real floating"):
        msg = f"targets must be integer labels or real floating probabilities, got dtype {dtype_name(targets.dtype)}"
        raise TypeError(msg)
    if shape != layout.logits_shape:
        raise ValueError(_target_shape_message(shape, layout.logits_shape, layout.axis, integer=False))
    if targets.dtype != logits.dtype:
        msg = (
            f"probability targets must have the logits' dtype {dtype_name(logits.dtype)}, got dtype "
            f"{dtype_name(targets.dtype)} (cast one of them explicitly)"
        )
        raise TypeError(msg)
    if ignore_index is not None:
        msg = f"ignore_index needs integer targets, got probability targets and ignore_index={ignore_index}"
        raise ValueError(msg)
    return False


def _target_shape_message(targets_shape: tuple, logits_shape: tuple, axis: int, *, integer: bool) -> str:
    """Why ``targets`` does not fit ``logits``, with the fix when one is evident."""
    batch_shape = logits_shape[:axis] + logits_shape[axis + 1 :]
    if integer:
        msg = (
            f"integer targets must have the logits' shape without the class axis, "
            f"{batch_shape}, got shape {targets_shape}"
        )
    else:
        msg = f"probability targets must have the logits' shape {logits_shape}, got shape {targets_shape}"
        if targets_shape == batch_shape:
            msg += " (class indices need an integer dtype: cast the labels to int64)"
    if integer and len(logits_shape) > 2 and axis == len(logits_shape) - 1:
        channels_first = logits_shape[:1] + logits_shape[2:]
        if targets_shape == channels_first:
            msg += (
                f" (for PyTorch's (N, C, d1, ...) layout pass axis=1: logits of shape "
                f"{logits_shape} with axis=1 take targets of shape {targets_shape})"
            )
    return msg


def _where_mask(where: Any, layout: _Layout, prior: Any) -> tuple[Any, Any, Any]:
    """``(allowed, num_allowed, poison)`` of the class mask ``where``."""
    xp = layout.xp
    if where is None:
        return None, layout.num_classes, None
    require_array("where", where)
    if not xp.isdtype(where.dtype, "bool"):
        msg = f"where must be a boolean array, got dtype {dtype_name(where.dtype)}"
        raise TypeError(msg)
    check_broadcastable("where", tuple(where.shape), layout.logits_shape, "the logits' shape")
    allowed = layout.class_last(xp.broadcast_to(where, layout.logits_shape))
    num_allowed = xp.sum(xp.astype(allowed, layout.acc), axis=-1, keepdims=True)
    others = isinstance(prior, str)
    needed = 2.0 if others else 1.0
    short = num_allowed < needed
    if layout.eager:
        if bool(xp.any(short)):
            msg = (
                f"where must allow at least {int(needed)} class(es) in every row"
                f"{' for prior=' + repr(prior) if others else ''}, "
                f"got a row allowing {int(first_value(num_allowed, short, xp))}"
            )
            raise ValueError(msg)
        return allowed, num_allowed, None
    # Rows with too few allowed classes are NaN anyway; letting them see every class keeps
    # their intermediate values finite (no 0/0 or inf - inf on the way).
    return allowed | short, xp.where(short, float(layout.num_classes), num_allowed), short


def _class_weight(weight: Any, layout: _Layout) -> Any:
    if weight is None:
        return None
    xp = layout.xp
    require_array("weight", weight)
    if not (xp.isdtype(weight.dtype, "real floating") or xp.isdtype(weight.dtype, "integral")):
        msg = f"weight must have a real dtype, got dtype {dtype_name(weight.dtype)}"
        raise TypeError(msg)
    if tuple(weight.shape) != (layout.num_classes,):
        msg = f"weight must have shape ({layout.num_classes},) (one weight per class), got shape {tuple(weight.shape)}"
        raise ValueError(msg)
    return xp.astype(weight, layout.work)


def _array_prior(prior: Any, layout: _Layout, allowed: Any) -> tuple[Any, Any]:
    """``(prior, poison)``: an array prior class-last, renormalised over the allowed classes."""
    if not is_array_api_obj(prior):
        return prior, None
    xp = layout.xp
    require_real_floating("prior", prior, xp)
    moved_shape = (*layout.batch_shape, layout.num_classes)
    u = prior_rows(prior, layout.axis, len(layout.logits_shape), moved_shape, xp, layout.work)
    bad_prior = validate_prior_values(u, xp, -1)
    poison = None
    if bad_prior is not None:
        poison = xp.broadcast_to(bad_prior[..., None], (*layout.batch_shape, 1))
    if allowed is None:
        return u, poison
    # Masked classes get no smoothing mass: renormalise the prior over the rest.
    u = xp.where(allowed, u, 0.0)
    u_total = xp.sum(u, axis=-1, keepdims=True)
    no_mass = xp.logical_not(u_total > 0)
    if layout.eager and bool(xp.any(no_mass)):
        msg = (
            "prior must give positive mass to at least one class allowed by where in "
            "every row, got a row whose allowed classes have prior mass 0"
        )
        raise ValueError(msg)
    if not layout.eager:
        poison = either_mask(poison, no_mass)
        u_total = xp.where(no_mass, 1.0, u_total)
    return u / u_total, poison


def _per_sample_epsilon(epsilon: Any, layout: _Layout) -> tuple[Any, Any]:
    """A checked epsilon as a float, or as an acc-dtype column (batch + (1,)) with its poison."""
    if isinstance(epsilon, float):
        return epsilon, None
    xp = layout.xp
    column = xp.astype(xp.broadcast_to(xp.astype(epsilon, layout.acc), layout.batch_shape), layout.acc)[..., None]
    if layout.eager:
        return column, None
    return column, xp.logical_not((column >= 0) & (column <= 1))


def _sample_weight(sample_weight: Any, layout: _Layout) -> tuple[Any, Any]:
    """Keras' per-sample weights as an acc-dtype column (batch + (1,)), checked, with their poison."""
    if sample_weight is None:
        return None, None
    xp = layout.xp
    require_array("sample_weight", sample_weight)
    if not (xp.isdtype(sample_weight.dtype, "real floating") or xp.isdtype(sample_weight.dtype, "integral")):
        msg = f"sample_weight must have a real dtype, got dtype {dtype_name(sample_weight.dtype)}"
        raise TypeError(msg)
    check_broadcastable("sample_weight", tuple(sample_weight.shape), layout.batch_shape, "the batch shape")
    column = xp.broadcast_to(xp.astype(sample_weight, layout.acc), layout.batch_shape)[..., None]
    bad = xp.logical_not((column >= 0.0) & (column < float("inf")))
    if not layout.eager:
        return column, bad
    if bool(xp.any(bad)):
        msg = f"sample_weight must be finite and non-negative, got a value of {first_value(column, bad, xp)}"
        raise ValueError(msg)
    return column, None


def _label_targets(targets: Any, layout: _Layout, ignore_index: int | None, allowed: Any) -> tuple[Any, Any, Any]:
    """``(labels, ignored, poison)``: safe labels in the index dtype, and the rows they leave out."""
    xp = layout.xp
    if layout.eager and allowed is None:
        labels = _labels_in_range(targets, layout.num_classes, ignore_index, xp)
        if labels is not None:
            return labels, None, None
    comparable, in_range, ignored = label_masks(targets, layout.num_classes, ignore_index, xp)
    bad = xp.logical_not(in_range)
    if ignored is not None:
        bad = bad & xp.logical_not(ignored)
    labels = safe_indices(comparable, in_range, xp)
    if allowed is not None:
        labels, bad = _labels_under_mask(labels, comparable, bad, ignored, allowed, layout)
    poison = None
    if layout.eager:
        if bool(xp.any(bad)):
            raise ValueError(_bad_label_message(first_value(comparable, bad, xp), layout.num_classes, ignore_index))
    else:
        poison = bad[..., None]
    return labels, None if ignored is None else ignored[..., None], poison


def _labels_in_range(targets: Any, num_classes: int, ignore_index: int | None, xp: Any) -> Any:
    """Labels that are all valid classes, in the index dtype; None when some are not (or ignored).

    Two reductions decide it for the common batch, instead of the masks of every label that
    the general case builds (for its messages and its ignored rows).
    """
    labels = comparable_labels(targets, xp)
    if 0 in tuple(labels.shape):
        return None
    if ignore_index is not None:
        info = xp.iinfo(labels.dtype)
        # An ignore_index the dtype cannot hold is no label's (not compared: it would wrap).
        if info.min <= ignore_index <= info.max and bool(xp.any(labels == ignore_index)):
            return None
    if int(xp.min(labels)) < 0 or int(xp.max(labels)) >= num_classes:
        return None
    return xp.astype(labels, index_dtype(xp, labels), copy=False)


def _labels_under_mask(
    labels: Any, comparable: Any, bad: Any, ignored: Any, allowed: Any, layout: _Layout
) -> tuple[Any, Any]:
    """Labels on masked classes refused (or marked bad); unused rows pointed at an allowed class."""
    xp = layout.xp
    label_allowed = _core.take_along_last(allowed, labels[..., None], xp)[..., 0]
    on_masked = xp.logical_not(label_allowed) & xp.logical_not(bad)
    if ignored is not None:
        on_masked = on_masked & xp.logical_not(ignored)
    if layout.eager and bool(xp.any(on_masked)):
        value = first_value(comparable, on_masked, xp)
        msg = f"targets must not point at a class masked out by where, got label {value} on a masked class"
        raise ValueError(msg)
    bad = bad | on_masked
    unused = bad if ignored is None else bad | ignored
    # Rows without a valid label (ignored, or NaN when traced) still go through the
    # arithmetic: pointing them at an allowed class keeps it finite, since a masked class
    # may hold a -inf logit (0 * inf or inf - inf would warn on NumPy).
    first_allowed = xp.astype(xp.argmax(xp.astype(allowed, xp.int8), axis=-1), labels.dtype)
    return xp.where(unused, first_allowed, labels), bad


def _bad_label_message(value: int, num_classes: int, ignore_index: int | None) -> str:
    allowed_text = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
    msg = f"targets must be class indices in [0, {num_classes}){allowed_text}, got a label of {value}"
    if ignore_index is None and value == -100:
        msg += " (PyTorch's padding label: pass ignore_index=-100 to skip those samples)"
    return msg


def _probability_targets(targets: Any, layout: _Layout, allowed: Any) -> tuple[Any, Any]:
    """``(probabilities, poison)``: class-last rows in the working dtype, checked non-negative."""
    xp = layout.xp
    probabilities = layout.class_last(xp.astype(targets, layout.work, copy=False))
    negative = xp.logical_not(probabilities >= 0)
    row_bad = xp.any(negative, axis=-1, keepdims=True)
    if allowed is not None:
        row_bad = row_bad | xp.any((probabilities != 0) & xp.logical_not(allowed), axis=-1, keepdims=True)
    if not layout.eager:
        return probabilities, row_bad
    if bool(xp.any(negative)):
        msg = f"probability targets must be non-negative, got a value of {first_value(targets, negative, xp)}"
        raise ValueError(msg)
    if bool(xp.any(row_bad)):
        msg = "probability targets must put no mass on classes masked out by where, got a row that does"
        raise ValueError(msg)
    return probabilities, None


def prior_rows(prior: Any, axis: int, ndim: int, moved_shape: tuple[int, ...], xp: Any, work: Any) -> Any:
    """Broadcast a prior given in the caller's layout to the class-last layout."""
    full_shape = list(moved_shape)
    full_shape.insert(axis, full_shape.pop())
    full_shape_t = tuple(full_shape)
    prior = xp.astype(prior, work)
    if prior.ndim == 1 and axis == ndim - 1:
        check_broadcastable("prior", tuple(prior.shape), full_shape_t, "the logits' shape")
        return prior
    if prior.ndim == 1 and prior.shape[0] == full_shape_t[axis] and axis != ndim - 1:
        # A (K,) prior names classes, whatever the class axis.
        return prior
    check_broadcastable("prior", tuple(prior.shape), full_shape_t, "the logits' shape")
    full = xp.broadcast_to(prior, full_shape_t)
    return xp.moveaxis(full, axis, -1) if axis != ndim - 1 else full


def validate_prior_values(prior: Any, xp: Any, class_axis: int) -> Any:
    """Eagerly check an array prior; return a row mask of invalid priors when traced."""
    tolerance = prior_tolerance(xp, prior.dtype)
    negative = xp.logical_not(prior >= 0)
    totals = xp.sum(prior, axis=class_axis)
    off = xp.logical_not(xp.abs(totals - 1.0) <= tolerance)
    if values_checkable(prior):
        if bool(xp.any(negative)):
            bad = first_value(prior, negative, xp)
            msg = f"prior must have non-negative entries, got an entry of {bad}"
            raise ValueError(msg)
        if bool(xp.any(off)):
            total = first_value(totals, off, xp)
            msg = f"prior must sum to 1 along the class axis (tolerance {tolerance:.1e}), got a sum of {total}"
            raise ValueError(msg)
        return None
    return xp.any(negative, axis=class_axis) | off
