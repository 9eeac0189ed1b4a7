"""The lean path of small NumPy problems against the dense float64 oracle, and its way out.

Every call it takes is checked against ``tests/_formulas.py`` (dense ``q'``, SciPy's
``log_softmax``); every call it must leave (labels out of range, non-finite logits, rows
dominated by their maximum, other options) is checked to reach the general path and give
its result or its error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _formulas import cross_entropy_rows

import labelsmooth as ls
from labelsmooth import _small
from labelsmooth._backend import fast_paths


@pytest.fixture
def lean_calls(monkeypatch: pytest.MonkeyPatch) -> list:
    """What the lean path returned for each call it took (None: it left for the general path)."""
    calls: list = []
    original = _small._evaluate

    def spy(*args: Any) -> Any:
        result = original(*args)
        calls.append(result)
        return result

    monkeypatch.setattr(_small, "_evaluate", spy)
    return calls


def _problem(dtype: Any, rows: int = 37, classes: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, classes)).astype(dtype), rng.integers(0, classes, rows)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("epsilon", [0.0, 0.1, 1.0, 1])
def test_lean_path_against_the_dense_oracle(lean_calls: list, dtype: Any, reduction: str, epsilon: float) -> None:
    z, y = _problem(dtype)
    options = {"epsilon": epsilon, "reduction": reduction}
    loss, grad = ls.cross_entropy_with_grad(z, y, **options)
    only_loss, only_grad = ls.cross_entropy(z, y, **options), ls.cross_entropy_grad(z, y, **options)
    assert len(lean_calls) == 3 and all(call is not None for call in lean_calls)
    expected_loss, expected_grad = cross_entropy_rows(z, y, **options)
    rtol = 1e-14 if dtype == np.float64 else 2e-7
    for value in (loss, only_loss):
        assert isinstance(value, np.ndarray) and value.dtype == dtype and value.shape == np.shape(expected_loss)
        np.testing.assert_allclose(value, expected_loss, rtol=rtol)
    for value in (grad, only_grad):
        assert value.dtype == dtype and value.flags.c_contiguous and value.flags.writeable
        np.testing.assert_allclose(value, expected_grad, rtol=rtol, atol=rtol * np.abs(expected_grad).max())


def test_lean_path_options_spelled_otherwise(lean_calls: list) -> None:
    z, y = _problem(np.float64)
    expected_loss, expected_grad = cross_entropy_rows(z, y, epsilon=0.25)
    for labels in (y.astype(np.int32), y.astype(np.uint8)):
        for epsilon in (0.25, np.float64(0.25), np.float32(0.25)):
            loss, grad = ls.cross_entropy_with_grad(z, labels, epsilon=epsilon, axis=1)
            np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
            np.testing.assert_allclose(grad, expected_grad, rtol=1e-13, atol=1e-16)
    assert len(lean_calls) == 6 and all(call is not None for call in lean_calls)


def test_lean_path_leaves_its_inputs_unchanged() -> None:
    z, y = _problem(np.float32)
    z_copy, y_copy = z.copy(), y.copy()
    ls.cross_entropy_with_grad(z, y, epsilon=0.1)
    np.testing.assert_array_equal(z, z_copy)
    np.testing.assert_array_equal(y, y_copy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("epsilon", [0.0, 1e-9])
def test_dominated_rows_keep_their_relative_precision(lean_calls: list, dtype: Any, epsilon: float) -> None:
    # Rows whose maximum dominates: log(s) would keep only the loss's absolute precision.
    z, y = _problem(dtype)
    z[4, y[4]] += 40.0
    z[9, y[9]] += 5.0
    z[11, (y[11] + 1) % 7] += 40.0  # dominated by another class than the label
    loss, grad = ls.cross_entropy_with_grad(z, y, epsilon=epsilon, reduction="none")
    assert len(lean_calls) == 1 and lean_calls[0] is not None
    expected, expected_grad = cross_entropy_rows(z, y, epsilon=epsilon, reduction="none")
    rtol = 1e-14 if dtype == np.float64 else 2e-7
    np.testing.assert_allclose(loss, expected, rtol=rtol)
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=rtol)
    assert 0.0 < loss[4] < 1e-7  # about 1e-17 unsmoothed


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_logits_leave_for_the_general_path(lean_calls: list, bad: float) -> None:
    z, y = _problem(np.float64)
    y[3] = 1
    z[3, 0] = bad
    loss, grad = ls.cross_entropy_with_grad(z, y, epsilon=0.1, reduction="none")
    assert lean_calls == [None]
    with np.errstate(all="ignore"):
        expected_loss, expected_grad = cross_entropy_rows(z, y, epsilon=0.1, reduction="none")
    if bad == np.inf:
        # A +inf logit's row is NaN throughout (docs/errors.md); the oracle's log_softmax
        # gives inf - inf there only in part.
        expected_loss[3], expected_grad[3] = np.nan, np.nan
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-14)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-14, atol=1e-16)
    # With smoothing a -inf logit costs +inf, its class's gradient stays finite (p = 0).
    assert np.isnan(loss[3]) if bad != -np.inf else loss[3] == np.inf and np.isfinite(grad[3]).all()


@pytest.mark.parametrize(("label", "message"), [(7, r"\[0, 7\)"), (-1, r"\[0, 7\)")])
def test_labels_out_of_range_are_refused_by_the_general_path(label: int, message: str) -> None:
    z, y = _problem(np.float32)
    y[5] = label
    with pytest.raises(ValueError, match=message):
        ls.cross_entropy_with_grad(z, y, epsilon=0.1)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"axis": True}, TypeError),
        ({"axis": 1.0}, TypeError),
        ({"epsilon": True}, TypeError),
        ({"epsilon": 1.5}, ValueError),
        ({"epsilon": float("nan")}, ValueError),
        ({"reduction": "average"}, ValueError),
    ],
)
def test_bad_options_are_refused_by_the_general_path(options: dict, error: type) -> None:
    z, y = _problem(np.float32)
    with pytest.raises(error):
        ls.cross_entropy(z, y, **options)


def test_other_problems_take_the_general_path(lean_calls: list) -> None:
    z, y = _problem(np.float32)
    ls.cross_entropy(z, y, epsilon=0.1, weight=np.ones(7, np.float32))
    ls.cross_entropy(z, y, ignore_index=0)
    ls.cross_entropy(z.T, y, axis=0)
    ls.cross_entropy(z[:, :, None], y[:, None], axis=1)
    wide, labels = _problem(np.float32, rows=4, classes=_small._MAX_CLASSES + 1)
    ls.cross_entropy(wide, labels)
    with fast_paths(False):
        ls.cross_entropy(z, y)
    assert lean_calls == []
