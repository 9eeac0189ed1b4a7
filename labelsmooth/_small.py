"""The lean path of small NumPy problems: the common call in O(1) Python work.

A call on a small float32/float64 NumPy array of logits with class indices, a float
``epsilon``, the uniform prior and no other option (the call an oracle in a test suite
makes thousands of times) is evaluated here without :func:`_problem.prepare` and the
general assembly, whose checks and plumbing cost more than the arithmetic at such sizes
(at 256 x 10: 59 us a call, against 35-37 us for the naive NumPy loss and gradient;
24-33 us here). The algebra is the one of :mod:`_core`: the coefficients of
:func:`_core.label_coefficients`, the loss of :func:`_core.label_loss` (applied to the
sums over the rows, which it is linear in when its coefficients are scalars) and the
gradient's :func:`_core.scaled_gradient_coefficients`. The passes run on a float64
transposed ``(K, N)`` copy, as the NumPy kernel's few-class passes do (the reductions then
run along the rows, vectorised, and every sum is float64), with that kernel's row sums
(``_numpy_fast._rest_of_sums``: the maximum's exact 1 left out where the result's
precision needs it). Anything else returns None and takes the
general path, which also gives every error and edge case its result: labels out of range,
non-finite logits or losses, other options, other array types and layouts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _core, _numpy_fast
from ._backend import fast_paths_enabled

__all__ = ["evaluate"]

# The problems taken here: few classes (as the NumPy kernel's transposed passes) and
# logits of at most this many bytes.
_MAX_CLASSES = 32
_MAX_BYTES = 1 << 20
_OPTIONS = frozenset({"epsilon", "reduction", "axis"})
_REDUCTIONS = ("mean", "sum", "none")


def _accepts(logits: Any, targets: Any, options: Mapping[str, Any]) -> bool:
    if type(logits) is not np.ndarray or type(targets) is not np.ndarray or not fast_paths_enabled():
        return False
    if logits.ndim != 2 or logits.dtype not in (np.float32, np.float64) or targets.dtype.kind not in "iu":
        return False
    rows, classes = logits.shape
    if targets.shape != (rows,) or rows == 0 or classes > _MAX_CLASSES or logits.nbytes > _MAX_BYTES:
        return False
    if not _OPTIONS.issuperset(options) or type(options.get("axis", -1)) is not int:
        return False
    epsilon = _python_number(options.get("epsilon", 0.0))
    if options.get("axis", -1) not in (-1, 1) or type(epsilon) not in (float, int) or not 0.0 <= epsilon <= 1.0:
        return False
    # Negative labels read as unsigned are beyond every class: one reduction checks both ends.
    unsigned = targets.view(np.dtype(f"u{targets.dtype.itemsize}"))
    return options.get("reduction", "mean") in _REDUCTIONS and int(unsigned.max()) < classes


def _python_number(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds (NumPy's bool as a bool); else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def evaluate(logits: Any, targets: Any, options: Mapping[str, Any], *, with_grad: bool) -> tuple[Any, Any] | None:
    """``(loss, grad or None)`` of a problem this path takes, else None (see the module)."""
    if not _accepts(logits, targets, options):
        return None
    epsilon, reduction = float(_python_number(options.get("epsilon", 0.0))), options.get("reduction", "mean")
    with np.errstate(all="ignore"):
        return _evaluate(logits, targets, epsilon, reduction, with_grad)


def _evaluate(logits: Any, targets: Any, epsilon: float, reduction: str, with_grad: bool) -> tuple[Any, Any] | None:
    rows, classes = logits.shape
    coefs = _core.label_coefficients(
        epsilon, 1.0, prior_kind=None, num_allowed=classes, profile_sum=float(classes), true_profile=1.0
    )
    shifted = np.array(logits.T, dtype=np.float64, order="C")  # S = z - m, class axis first
    flat = shifted.reshape(-1)
    # Flat indices of the labels in the (K, N) copy, in the index dtype (never the labels' own).
    at_label = targets.astype(np.intp) * rows
    columns = _numpy_fast._columns(rows)
    at_label += columns
    peak = shifted.max(axis=0)
    if not math.isfinite(peak.sum()):
        return None
    shifted -= peak
    per_row = reduction == "none"
    true_shifted = flat[at_label]
    distance = 0.0 if coefs.spread_coef is None else -(shifted.sum(axis=0) if per_row else shifted.sum())
    exp_shifted = np.exp(shifted, out=shifted)
    rest = _numpy_fast._rest_of_sums(exp_shifted, flat, columns, float32_result=logits.dtype == np.float32)
    if rest is None:
        return None
    log_sum = np.log1p(rest)
    if per_row:
        loss = _core.label_loss(coefs, log_sum, -0.5 * true_shifted, distance, 1.0, np, eager=True)
        finite = bool(np.isfinite(loss).all())
    else:
        loss = _core.label_loss(coefs, log_sum.sum(), -0.5 * true_shifted.sum(), distance, 1.0, np, eager=True)
        finite = math.isfinite(loss)
    if not finite:
        return None
    scale = 1.0 / rows if reduction == "mean" else 1.0
    result = np.asarray(loss * scale, dtype=logits.dtype)
    if not with_grad:
        return result, None
    total, spread, true = _core.scaled_gradient_coefficients(coefs, scale)
    # p T - spread - c_y e_y, written over the exponentials.
    exp_shifted *= total / (rest + 1.0)
    if spread is not None:
        exp_shifted -= spread
    flat[at_label] -= true
    return result, np.array(exp_shifted.T, dtype=logits.dtype, order="C")
