"""Checks of arguments: static ones everywhere, value checks where values can be read.

Every message names the argument, what was expected and what was received.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np
from array_api_compat import is_array_api_obj, is_torch_namespace

from ._backend import device_of, index_dtype, is_numpy_scalar, is_traced, isdtype
from .typing import Reduction

REDUCTIONS = ("mean", "sum", "none")


def dtype_name(dtype: Any) -> str:
    """``float32`` rather than ``torch.float32`` or ``array_api_strict.float32``."""
    return str(dtype).rsplit(".", 1)[-1]


def describe(value: Any) -> str:
    if is_array_api_obj(value):
        return f"an array of shape {tuple(value.shape)} and dtype {dtype_name(value.dtype)}"
    return f"{value!r} of type {type(value).__name__}"


def as_python_scalar(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds; anything else unchanged."""
    return value.item() if is_numpy_scalar(value) else value


def require_array(name: str, value: Any) -> None:
    if isinstance(value, np.ma.MaskedArray):
        # NumPy's array API ignores the mask: the numbers would be neither the plain
        # nor the masked result.
        msg = (
            f"{name} must be an array without a mask, got a numpy.ma.MaskedArray "
            f"(pass {name}.filled(...) or express the mask with where= / ignore_index=)"
        )
        raise TypeError(msg)
    if not is_array_api_obj(value):
        msg = f"{name} must be an array, got {describe(value)}"
        raise TypeError(msg)


def require_real_floating(name: str, x: Any, xp: Any) -> None:
    require_array(name, x)
    if not isdtype(xp, x.dtype, "real floating"):
        msg = f"{name} must have a real floating dtype, got dtype {dtype_name(x.dtype)}"
        raise TypeError(msg)


def require_integer(name: str, x: Any, xp: Any) -> None:
    require_array(name, x)
    if not xp.isdtype(x.dtype, "integral"):
        msg = f"{name} must have an integer dtype, got dtype {dtype_name(x.dtype)}"
        raise TypeError(msg)


def check_int(name: str, value: Any, expected: str, describe_value: Callable[[Any], str] = describe) -> int:
    """``value`` as an int; a bool or a non-integer is a TypeError: ``{name} must be {expected}, got ...``."""
    if isinstance(value, bool):
        msg = f"{name} must be {expected}, got {value!r}"
        raise TypeError(msg)
    try:
        return operator.index(value)
    except TypeError:
        msg = f"{name} must be {expected}, got {describe_value(value)}"
        raise TypeError(msg) from None


def check_positive_int(name: str, value: Any, describe_value: Callable[[Any], str] = describe) -> int:
    result = check_int(name, value, "a positive int", describe_value)
    if result < 1:
        msg = f"{name} must be a positive int, got {result}"
        raise ValueError(msg)
    return result


def normalize_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    axis = check_int(name, axis, "an int")
    if not -ndim <= axis < ndim:
        msg = f"{name} must be in [{-ndim}, {ndim - 1}] for an array of {ndim} dimensions, got {axis}"
        raise ValueError(msg)
    return axis % ndim


def check_num_classes(num_classes: Any) -> int:
    return check_positive_int("num_classes", num_classes)


def check_choice(name: str, value: Any, choices: Any) -> str:
    """``value`` if it is one of the strings ``choices``; else a TypeError or ValueError naming ``name``."""
    expected = ", ".join(map(repr, choices))
    if not isinstance(value, str):
        msg = f"{name} must be a str, one of {expected}, got {describe(value)}"
        raise TypeError(msg)
    if value not in choices:
        msg = f"{name} must be one of {expected}, got {value!r}"
        raise ValueError(msg)
    return value


def check_reduction(reduction: Any) -> Reduction:
    return cast("Reduction", check_choice("reduction", reduction, REDUCTIONS))


def check_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")):
        return bool(value)
    msg = f"{name} must be a bool, got {describe(value)}"
    raise TypeError(msg)


def check_epsilon(epsilon: Any, xp: Any, batch_shape: tuple[int, ...]) -> Any:
    """A Python float in [0, 1] or a real array broadcastable to ``batch_shape``."""
    epsilon = as_python_scalar(epsilon)
    if isinstance(epsilon, bool):
        msg = f"epsilon must be a float in [0, 1] or an array, got {epsilon!r}"
        raise TypeError(msg)
    if is_array_api_obj(epsilon):
        require_array("epsilon", epsilon)
        if not (xp.isdtype(epsilon.dtype, "real floating") or xp.isdtype(epsilon.dtype, "integral")):
            msg = f"epsilon must have a real (floating or integer) dtype, got dtype {dtype_name(epsilon.dtype)}"
            raise TypeError(msg)
        check_broadcastable("epsilon", tuple(epsilon.shape), batch_shape, "the batch shape")
        if not is_traced(epsilon):
            bad = epsilon_out_of_range(epsilon, xp)
            if bool(xp.any(bad)):
                first = first_value(epsilon, bad, xp)
                msg = f"epsilon must lie in [0, 1] for every sample, got a value of {first}"
                raise ValueError(msg)
        return epsilon
    if not isinstance(epsilon, numbers.Real):
        # Strings such as "0.1" would pass float(); they are a type error, not a number.
        msg = f"epsilon must be a float in [0, 1] or an array, got {describe(epsilon)}"
        raise TypeError(msg)
    value = float(epsilon)
    if not (0.0 <= value <= 1.0):
        msg = f"epsilon must be in [0, 1], got {epsilon!r}"
        raise ValueError(msg)
    return value


def check_z_loss(z_loss: Any) -> float:
    """The z-loss coefficient: a finite, non-negative real number (a Python float)."""
    z_loss = as_python_scalar(z_loss)
    if isinstance(z_loss, bool) or not isinstance(z_loss, numbers.Real):
        msg = f"z_loss must be a non-negative float, got {describe(z_loss)}"
        raise TypeError(msg)
    value = float(z_loss)
    if not (0.0 <= value < float("inf")):
        msg = f"z_loss must be finite and non-negative, got {z_loss!r}"
        raise ValueError(msg)
    return value


def check_softcap(softcap: Any) -> float | None:
    """The soft-capping constant: None, or a finite positive real number (a Python float)."""
    if softcap is None:
        return None
    softcap = as_python_scalar(softcap)
    if isinstance(softcap, bool) or not isinstance(softcap, numbers.Real):
        msg = f"softcap must be None or a positive float, got {describe(softcap)}"
        raise TypeError(msg)
    value = float(softcap)
    if not (0.0 < value < float("inf")):
        msg = f"softcap must be None or finite and positive, got {softcap!r}"
        raise ValueError(msg)
    return value


def epsilon_out_of_range(epsilon: Any, xp: Any) -> Any:
    """Mask of per-sample epsilons outside [0, 1] (NaN included), for traced inputs."""
    return xp.logical_not((epsilon >= 0) & (epsilon <= 1))


def check_broadcastable(name: str, shape: tuple[int, ...], target: tuple[int, ...], what: str) -> None:
    ok = len(shape) <= len(target) and all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))
    if not ok:
        msg = f"{name} must be broadcastable to {what} {target}, got shape {shape}"
        raise ValueError(msg)


def check_ignore_index(ignore_index: Any) -> int | None:
    if ignore_index is None:
        return None
    return check_int("ignore_index", ignore_index, "an int or None")


def check_prior_kind(prior: Any) -> None:
    if prior is None or is_array_api_obj(prior):
        return
    if isinstance(prior, str):
        if prior != "others":
            msg = f"prior must be None, 'others' or an array of class probabilities, got {prior!r}"
            raise ValueError(msg)
        return
    msg = f"prior must be None, 'others' or an array of class probabilities, got {describe(prior)}"
    raise TypeError(msg)


class StaticOptions(NamedTuple):
    """The options of a smoothed loss that hold no array, checked."""

    reduction: Reduction
    ignore_index: int | None
    z_loss: float
    softcap: float | None


def check_static_options(
    reduction: Any = "mean", prior: Any = None, ignore_index: Any = None, z_loss: Any = 0.0, softcap: Any = None
) -> StaticOptions:
    """Check the options that can be checked before any array is seen (of ``prior``, its kind)."""
    check_prior_kind(prior)
    return StaticOptions(
        check_reduction(reduction), check_ignore_index(ignore_index), check_z_loss(z_loss), check_softcap(softcap)
    )


def prior_tolerance(xp: Any, dtype: Any) -> float:
    return math.sqrt(float(xp.finfo(dtype).eps))


def either_mask(a: Any, b: Any) -> Any:
    """``a | b`` of two optional boolean masks (None: no row)."""
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def first_value(x: Any, bad: Any, xp: Any) -> Any:
    """One offending value of ``x`` (for messages), read only on eager backends."""
    flat_bad = xp.reshape(xp.broadcast_to(bad, x.shape), (-1,))
    flat = xp.reshape(x, (-1,))
    index = int(xp.argmax(xp.astype(flat_bad, xp.int32)))
    value = flat[index]
    return int(value) if xp.isdtype(x.dtype, "integral") else float(value)


def comparable_labels(labels: Any, xp: Any) -> Any:
    """``labels`` in a dtype whose comparisons every backend implements."""
    if is_torch_namespace(xp) and labels.dtype in (xp.uint16, xp.uint32, xp.uint64):
        # PyTorch has no comparisons for these; int64 holds every valid label (a uint64
        # beyond 2**63 turns negative, and is refused as out of range either way).
        return xp.astype(labels, xp.int64)
    return labels


def label_masks(labels: Any, num_classes: int, ignore_index: int | None, xp: Any) -> tuple[Any, Any, Any]:
    """``(labels, in_range, ignored)`` for integer labels of any integer dtype.

    The bounds are compared only where the labels' dtype can hold them, so an ``int8``
    label is never compared with a wrapped ``300``, nor a ``uint8`` one with a wrapped
    ``-100``; ``ignored`` is None when no label can equal ``ignore_index``.
    ``labels`` is returned in a dtype the comparisons work in (see
    :func:`safe_indices` for the indexing dtype).
    """
    labels = comparable_labels(labels, xp)
    info = xp.iinfo(labels.dtype)
    in_range = None
    if info.min < 0:
        in_range = labels >= 0
    if num_classes <= info.max:
        below = labels < num_classes
        in_range = below if in_range is None else in_range & below
    if in_range is None:
        in_range = xp.ones(labels.shape, dtype=xp.bool, device=device_of(labels))
    ignored = None
    if ignore_index is not None and info.min <= ignore_index <= info.max:
        ignored = labels == ignore_index
    return labels, in_range, ignored


def safe_indices(labels: Any, in_range: Any, xp: Any) -> Any:
    """Labels in the namespace's index dtype, out-of-range ones replaced by 0."""
    labels = xp.where(in_range, labels, xp.zeros_like(labels))
    return xp.astype(labels, index_dtype(xp, labels), copy=False)
