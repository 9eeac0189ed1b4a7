"""Namespace resolution, dtype policy and the eager/traced distinction.

Everything that depends on *which* array library is in use lives here, so that the
numerical core (``_core.py``) can stay pure array API.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import numbers
import sys
from collections.abc import Iterator
from typing import Any

import array_api_compat
from array_api_compat import (
    array_namespace,
    is_array_api_obj,
    is_array_api_strict_namespace,
    is_dask_array,
    is_dask_namespace,
    is_jax_array,
    is_jax_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

__all__ = [
    "accumulation_dtype",
    "compute_dtype",
    "device_of",
    "fast_paths",
    "fast_paths_enabled",
    "index_dtype",
    "is_numpy_scalar",
    "is_traced",
    "isdtype",
    "namespace_of",
    "subtract_quietly",
    "values_checkable",
]


_FAST_PATHS = contextvars.ContextVar("labelsmooth_fast_paths", default=True)


@contextlib.contextmanager
def fast_paths(enabled: bool) -> Iterator[None]:
    """Within this context (of this thread or task only), allow the backend kernels or not.

    With ``enabled=False`` every problem is run by the array-API kernel (to compare a
    backend kernel with it, or to rule one out).
    """
    token = _FAST_PATHS.set(bool(enabled))
    try:
        yield
    finally:
        _FAST_PATHS.reset(token)


def fast_paths_enabled() -> bool:
    return _FAST_PATHS.get()


def wants_torch_autograd(logits: Any, others: Any) -> bool:
    """Whether a call on a tensor needs labelsmooth's autograd function or operator.

    That is when autograd would record the evaluation (a tensor among ``logits`` and the
    values of ``others`` requires grad), under ``torch.compile``, on meta tensors and under
    ``torch.autocast``.
    """
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(logits, torch.Tensor):
        return False
    if logits.device.type == "meta" or torch.compiler.is_compiling() or torch_autocast_enabled(logits):
        return True
    if not torch.is_grad_enabled():
        return False
    return logits.requires_grad or any(isinstance(v, torch.Tensor) and v.requires_grad for v in others)


def is_jax_tracer(x: Any) -> bool:
    """Whether ``x`` is a JAX tracer (under ``jax.jit``, ``jax.grad``, ``jax.vmap``...)."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.core.Tracer)


def torch_autocast_enabled(tensor: Any) -> bool:
    """Whether ``torch.autocast`` is on for the tensor's device (False for devices it has not)."""
    try:
        return bool(sys.modules["torch"].is_autocast_enabled(tensor.device.type))
    except RuntimeError:  # a device type without autocast, such as "meta"
        return False


def is_numpy_scalar(value: Any) -> bool:
    """NumPy scalars (``np.float64(0.1)``) are Python numbers here, not 0-d arrays."""
    return isinstance(value, numbers.Number) and type(value).__module__ == "numpy"


def _subtract_overflowing_quietly(a: Any, b: Any) -> Any:
    with sys.modules["numpy"].errstate(over="ignore"):
        return a - b


def subtract_quietly(a: Any, b: Any, xp: Any) -> Any:
    """``a - b``, where a result beyond the largest float is ``-inf``/``+inf`` without a warning.

    ``z - m`` is below ``-max_float`` for ``z = -1e308, m = 1e308``: the infinity is its
    correctly rounded value (``exp`` of it is 0), not an error of the caller's, but NumPy
    (and array-api-strict and Dask, which compute with it) would warn of it.
    """
    if is_dask_namespace(xp):
        # Dask computes later, outside any error state set now: each block sets its own.
        return sys.modules["dask.array"].core.elemwise(_subtract_overflowing_quietly, a, b, dtype=a.dtype)
    if is_numpy_namespace(xp) or is_array_api_strict_namespace(xp):
        return _subtract_overflowing_quietly(a, b)
    return a - b


# The namespace of each combination of argument types met so far: it depends on the types
# alone, and resolving it costs more than a small problem's arithmetic.
_NAMESPACES: dict[tuple[type, ...], Any] = {}
_NAMESPACES_KEPT = 64


def namespace_of(*objects: Any, xp: Any = None) -> Any:
    """Resolve the array namespace from every array argument.

    Python scalars, strings and ``None`` are ignored. Arrays of different libraries are a
    ``TypeError`` (raised by ``array_api_compat.array_namespace``).
    """
    if xp is None:
        key = tuple(type(obj) for obj in objects if obj is not None)
        found = _NAMESPACES.get(key)
        if found is None:
            found = _resolve_namespace(objects)
            if len(_NAMESPACES) < _NAMESPACES_KEPT:
                _NAMESPACES[key] = found
        return found
    return _resolve_namespace(objects, xp)


def _resolve_namespace(objects: tuple, xp: Any = None) -> Any:
    arrays = [obj for obj in objects if obj is not None and is_array_api_obj(obj)]
    # NumPy scalars (the result of NumPy arithmetic on 0-d arrays) are numbers beside the
    # arrays of another library: they decide the namespace only when nothing else does.
    non_scalars = [obj for obj in arrays if not is_numpy_scalar(obj)]
    arrays = non_scalars or arrays
    if xp is not None:
        if not (hasattr(xp, "isdtype") and hasattr(xp, "asarray")):
            msg = f"xp must be an array namespace (such as array_api_compat.numpy) or None, got {xp!r}"
            raise TypeError(msg)
        return xp
    if not arrays:
        msg = "expected at least one array argument, got none (pass arrays or xp=...)"
        raise TypeError(msg)
    try:
        return array_namespace(*arrays)
    except TypeError as exc:
        kinds = sorted({f"{type(a).__module__}.{type(a).__name__}" for a in arrays})
        msg = f"all array arguments must come from one array library, got {', '.join(kinds)}"
        raise TypeError(msg) from exc


@functools.lru_cache(maxsize=256)
def _cached_isdtype(xp: Any, dtype: Any, kind: str) -> bool:
    return bool(xp.isdtype(dtype, kind))


def isdtype(xp: Any, dtype: Any, kind: str) -> bool:
    """``xp.isdtype(dtype, kind)``, remembered (a small problem's checks ask it every call)."""
    try:
        return _cached_isdtype(xp, dtype, kind)
    except TypeError:  # a namespace or dtype that cannot be hashed
        return bool(xp.isdtype(dtype, kind))


def device_of(x: Any) -> Any:
    return array_api_compat.device(x)


# Types whose values can always be read (neither JAX nor Dask arrays, or not arrays at all).
_EAGER_TYPES: set[type] = set()


def is_traced(x: Any) -> bool:
    """True when the values of ``x`` cannot be read now (JAX tracer, lazy Dask array)."""
    if x is None or type(x) in _EAGER_TYPES:
        return False
    if not is_array_api_obj(x) or not (is_dask_array(x) or is_jax_array(x)):
        _EAGER_TYPES.add(type(x))
        return False
    if is_dask_array(x):
        return True
    if is_jax_array(x):
        jax = sys.modules["jax"]
        if isinstance(x, jax.core.Tracer):
            return True
        # A concrete array captured by a function under jax.jit: every operation on it is
        # staged into the trace, so values derived from it cannot be read either.
        return isinstance(jax.numpy.zeros((), dtype=x.dtype), jax.core.Tracer)
    return False


def values_checkable(*arrays: Any) -> bool:
    """Whether value checks (label range, prior sums, ...) can raise eagerly."""
    return not any(is_traced(a) for a in arrays)


def compute_dtype(xp: Any, dtype: Any) -> Any:
    """Working dtype for the N x K arrays: at least float32.

    float16 and bfloat16 inputs are computed in float32 (their 8- or 11-bit mantissas
    cannot hold a log-sum-exp over thousands of classes) and cast back at the end.
    """
    if xp.finfo(dtype).bits < 32:
        return xp.float32
    return dtype


def _float64_usable(xp: Any, like: Any) -> bool:
    if is_jax_namespace(xp):
        # Without x64, JAX silently gives float32 for float64 requests (with a warning).
        return bool(sys.modules["jax"].config.read("jax_enable_x64"))
    if is_torch_namespace(xp):
        return getattr(device_of(like), "type", "cpu") != "mps"
    return hasattr(xp, "float64")


def index_dtype(xp: Any, like: Any) -> Any:
    """The integer dtype labels are indexed with: int64, or int32 for JAX without x64."""
    if is_jax_namespace(xp) and not _float64_usable(xp, like):
        return xp.int32
    return xp.int64


def accumulation_dtype(xp: Any, dtype: Any, like: Any) -> Any:
    """dtype of the per-row scalars (max, log-sum, target logit, smoothing sum).

    Rows are reduced into float64 whenever the backend can hold it: the reductions are
    O(N) values, so the extra precision is nearly free, and it is what lets a float32
    loss land within about one float32 ulp of the exact value.
    """
    if xp.finfo(dtype).bits < 64 and _float64_usable(xp, like):
        return xp.float64
    return dtype
