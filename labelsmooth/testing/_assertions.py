"""Conversion of any array to NumPy, and a dtype-aware closeness assertion."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import (
    is_array_api_obj,
    is_cupy_array,
    is_dask_array,
    is_jax_array,
    is_torch_array,
)

__all__ = ["DEFAULT_TOLERANCES", "assert_close", "to_numpy"]

#: Default ``(rtol, atol)`` by dtype name, used by :func:`assert_close` for the less precise
#: dtype of the two arguments. A float64 result that went through a few roundings of
#: ``log``/``exp``/sums is good to about 1e-15 relative; the float64 tolerance leaves
#: room for sums over thousands of classes. float32 ``rtol=1e-5`` is about 80 ulps;
#: float16 and bfloat16 (3 and 2 significant digits) are given about 10 and 3 ulps.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-12, 1e-14),
    "complex128": (1e-12, 1e-14),
    "float32": (1e-5, 1e-6),
    "complex64": (1e-5, 1e-6),
    "float16": (1e-2, 1e-3),
    "bfloat16": (3e-2, 1e-2),
}

_FLOAT_RANK = {"bfloat16": 0, "float16": 1, "float32": 2, "complex64": 2, "float64": 3, "complex128": 3}


def to_numpy(x: Any) -> tuple[np.ndarray, str]:
    """Copy ``x`` (an array of any library and device, or a Python scalar) to NumPy.

    Returns the NumPy array and the name of the original dtype (``"bfloat16"`` for a
    PyTorch bfloat16 tensor, which NumPy cannot hold and is widened exactly to float32).
    Nothing is imported: the library of ``x`` is recognised from the modules already loaded.
    """
    if isinstance(x, np.ndarray):
        return x, x.dtype.name
    if isinstance(x, bool):
        return np.asarray(x), "bool"
    if isinstance(x, int):
        return np.asarray(x, dtype=np.int64), "int64"
    if isinstance(x, float):
        return np.asarray(x, dtype=np.float64), "float64"
    if isinstance(x, complex):
        return np.asarray(x, dtype=np.complex128), "complex128"
    if isinstance(x, np.generic):
        return np.asarray(x), x.dtype.name
    if is_torch_array(x):
        name = str(x.dtype).removeprefix("torch.")
        x = x.detach().resolve_conj().resolve_neg().cpu()
        if name == "bfloat16":
            x = x.float()  # exact: every bfloat16 is a float32
        return x.numpy(), name
    if is_cupy_array(x):
        out = x.get()
        return out, out.dtype.name
    if is_dask_array(x):
        out = np.asarray(x.compute())
        return out, out.dtype.name
    if is_jax_array(x):
        out = np.asarray(x)
        return out, out.dtype.name
    if is_array_api_obj(x):
        try:
            out = np.from_dlpack(x)
        except (TypeError, BufferError, RuntimeError, AttributeError):
            out = np.asarray(x)
        return out, out.dtype.name
    out = np.asarray(x)
    if out.dtype == object:
        msg = f"expected an array or a Python number, got {type(x).__name__}"
        raise TypeError(msg)
    return out, out.dtype.name


def _tolerances(name_a: str, name_b: str) -> tuple[float, float]:
    floats = [n for n in (name_a, name_b) if n in _FLOAT_RANK]
    if not floats:
        return 0.0, 0.0  # integers and booleans: exact equality
    coarsest = min(floats, key=_FLOAT_RANK.__getitem__)
    return DEFAULT_TOLERANCES[coarsest]


def _index_text(flat_index: int, shape: tuple[int, ...]) -> str:
    if not shape:
        return "()"
    return str(tuple(int(i) for i in np.unravel_index(flat_index, shape)))


def _widened(a: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays in one dtype at least as wide as float64 (complex stays complex)."""
    if a.dtype.kind in "biu" and d.dtype.kind in "biu":
        return a.astype(np.float64), d.astype(np.float64)
    common = np.result_type(a.dtype, d.dtype, np.float64)
    return a.astype(common), d.astype(common)


def _check_nan_positions(header: str, a64: np.ndarray, d64: np.ndarray) -> None:
    __tracebackhide__ = True
    a_nan, d_nan = np.isnan(a64), np.isnan(d64)
    if not np.any(a_nan != d_nan):
        return
    first = int(np.flatnonzero((a_nan != d_nan).ravel())[0])
    where_text = _index_text(first, a64.shape)
    msg = (
        f"{header}\nNaN positions differ: {int(np.sum(a_nan & ~d_nan))} NaN only in actual, "
        f"{int(np.sum(d_nan & ~a_nan))} NaN only in desired; first at index {where_text} "
        f"(actual {a64.ravel()[first].item()!r}, desired {d64.ravel()[first].item()!r})"
    )
    raise AssertionError(msg)


def _errors(a64: np.ndarray, d64: np.ndarray, rtol: float, atol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(absolute error, relative error, mismatch mask)`` of arrays whose NaNs coincide."""
    a_nan = np.isnan(a64)
    both_finite = np.isfinite(a64) & np.isfinite(d64)
    # Infinities (and the NaN already matched above) must be equal exactly.
    exact_mismatch = ~both_finite & ~a_nan & (a64 != d64)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.where(both_finite, np.abs(a64 - d64), 0.0)
        error = np.where(exact_mismatch, np.inf, error)
        bound = atol + rtol * np.abs(np.where(both_finite, d64, 0.0))
        relative = np.where(d64 != 0, error / np.where(d64 != 0, np.abs(d64), 1.0), np.where(error > 0, np.inf, 0.0))
        relative = np.where(both_finite | exact_mismatch, relative, 0.0)
    bad = (error > bound) | exact_mismatch
    return error, relative, bad


def _mismatch_message(
    header: str, a64: np.ndarray, d64: np.ndarray, error: np.ndarray, relative: np.ndarray, bad: np.ndarray
) -> str:
    n_bad = int(np.sum(bad))
    flat_error, flat_relative = np.abs(error).ravel(), np.abs(relative).ravel()
    worst_abs = int(np.argmax(flat_error))
    worst_rel = int(np.argmax(flat_relative))
    a_flat, d_flat = a64.ravel(), d64.ravel()

    def describe(i: int) -> str:
        return f"at index {_index_text(i, a64.shape)} (actual {a_flat[i].item()!r}, desired {d_flat[i].item()!r})"

    return (
        f"{header}\n"
        f"Mismatched elements: {n_bad} / {a64.size} ({100.0 * n_bad / a64.size:.3g}%)\n"
        f"Max absolute error: {flat_error[worst_abs]:.8g} {describe(worst_abs)}\n"
        f"Max relative error: {flat_relative[worst_rel]:.8g} {describe(worst_rel)}"
    )


def assert_close(actual: Any, desired: Any, *, rtol: float | None = None, atol: float | None = None) -> None:
    r"""Assert that two arrays (any library, any device, or Python numbers) are close.

    Elementwise, ``|actual - desired| <= atol + rtol * |desired|``. NaN must sit at the same
    positions in both, infinities must match exactly, and the shapes must be equal (no
    broadcasting; a Python scalar is a 0-d array).

    Parameters
    ----------
    actual, desired : array or Python number
        Arrays of NumPy, PyTorch (any device, ``requires_grad`` allowed), JAX, CuPy, Dask,
        array-api-strict or anything NumPy can read.
    rtol, atol : float, optional
        Default to :data:`DEFAULT_TOLERANCES` of the less precise floating dtype of the two
        (a Python float counts as float64):

        ========  ==========  ==========
        dtype     rtol        atol
        ========  ==========  ==========
        float64   1e-12       1e-14
        float32   1e-5        1e-6
        float16   1e-2        1e-3
        bfloat16  3e-2        1e-2
        ========  ==========  ==========

        Integer and boolean arrays are compared exactly.

    Raises
    ------
    AssertionError
        With the shapes, or the count of mismatched elements, the largest absolute and
        relative errors and the index where each occurs.

    Examples
    --------
    >>> import numpy as np
    >>> from labelsmooth.testing import assert_close
    >>> assert_close(np.float32(1.0) + np.float32(1e-7), 1.0)
    >>> assert_close(np.asarray([1.0, 2.0]), np.asarray([1.0, 2.001]))
    Traceback (most recent call last):
    ...
    AssertionError: Arrays are not close (rtol=1e-12, atol=1e-14; dtypes float64 and float64)
    Mismatched elements: 1 / 2 (50%)
    Max absolute error: 0.001 at index (1,) (actual 2.0, desired 2.001)
    Max relative error: 0.00049975012 at index (1,) (actual 2.0, desired 2.001)
    """
    # pytest leaves the frames of this function and of its helpers that raise out of the
    # traceback of a failing test, which then ends at the user's own call.
    __tracebackhide__ = True
    a, name_a = to_numpy(actual)
    d, name_d = to_numpy(desired)
    default_rtol, default_atol = _tolerances(name_a, name_d)
    rtol = default_rtol if rtol is None else float(rtol)
    atol = default_atol if atol is None else float(atol)
    header = f"Arrays are not close (rtol={rtol:g}, atol={atol:g}; dtypes {name_a} and {name_d})"
    if a.shape != d.shape:
        msg = f"{header}\nShapes differ: actual {a.shape}, desired {d.shape}"
        raise AssertionError(msg)
    if a.size == 0:
        return
    a64, d64 = _widened(a, d)
    _check_nan_positions(header, a64, d64)
    error, relative, bad = _errors(a64, d64, rtol, atol)
    if np.any(bad):
        raise AssertionError(_mismatch_message(header, a64, d64, error, relative, bad))
