"""Accuracy goals against the 40-digit mpmath reference (inputs of benchmarks/accuracy.py).

- float64: loss relative error <= 1e-13, gradient absolute error <= 4 machine epsilon
  (per sample; the "mean" gradient is compared after scaling back by N);
- float32 (error against the exact value of the same float32 inputs): no larger than the
  best of PyTorch ``F.cross_entropy(label_smoothing=)`` and optax under ``jit``, and within
  1 float32 ulp.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import pytest

# The accuracy benchmark: large K, float64 references, PyTorch and optax.
pytestmark = pytest.mark.slow

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.py"
_spec = importlib.util.spec_from_file_location("labelsmooth_accuracy_benchmark", _PATH)
accuracy = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = accuracy  # dataclasses look their module up while it executes
_spec.loader.exec_module(accuracy)

CASES = {case.name: case for case in accuracy.CASES}
LOSS_RTOL_64 = 1e-13
GRAD_ATOL_64 = 4.0  # in units of float64 machine epsilon


@functools.cache
def _exact(name: str, dtype: str):
    case = CASES[name]
    z, y = case.inputs()
    z = z.astype(dtype)
    return z, y, accuracy.reference(case, z, y)


def _skip_unless(module: str) -> None:
    if not accuracy.has(module):
        pytest.skip(f"{module} is not installed")


@pytest.mark.parametrize("path", ["labelsmooth[numpy]", "labelsmooth[torch]", "labelsmooth[jax]"])
@pytest.mark.parametrize("name", list(CASES))
def test_float64_loss_and_gradient(name: str, path: str) -> None:
    impl, module = accuracy.LABELSMOOTH_PATHS[path]
    _skip_unless(module)
    z, y, exact = _exact(name, "float64")
    result = accuracy.measure_float64(impl, CASES[name], z, y, exact)
    assert result.loss_none <= LOSS_RTOL_64, result
    assert result.loss_mean <= LOSS_RTOL_64, result
    assert result.grad_none <= GRAD_ATOL_64, result
    assert result.grad_mean <= GRAD_ATOL_64, result


@functools.cache
def _float32(name: str, path: str):
    table = {**accuracy.LABELSMOOTH_PATHS_32, **accuracy.FRAMEWORKS}
    impl, module = table[path]
    _skip_unless(module)
    z, y, exact = _exact(name, "float32")
    return accuracy.measure_float32(impl, CASES[name], z, y, exact)


@pytest.mark.parametrize("path", ["labelsmooth[numpy]", "labelsmooth[torch]", "labelsmooth[jax, x64]"])
@pytest.mark.parametrize("name", list(CASES))
def test_float32_no_worse_than_pytorch_and_optax(name: str, path: str) -> None:
    ours = _float32(name, path)
    theirs = [_float32(name, framework) for framework in accuracy.FRAMEWORKS]
    for field in ("ulps_none", "ulps_mean"):
        best = min(getattr(result, field) for result in theirs)
        # Within 1/2 ulp the result is the correctly rounded float32: nothing beats it.
        assert getattr(ours, field) <= max(best, 0.5), (field, ours, theirs)


_TOO_COARSE_SHIFT = pytest.mark.xfail(
    strict=True,
    reason="z - max(z) is rounded to float32 before exp: in rows whose loss is log1p of a tiny "
    "sum (confident, eps=0), exp turns that rounding (|z - m| * 2^-24) into a relative error "
    "of several ulps",
)


@pytest.mark.parametrize("path", ["labelsmooth[numpy]", "labelsmooth[torch]"])
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=_TOO_COARSE_SHIFT) if n.endswith("eps=0") else n for n in CASES]
)
def test_float32_within_one_ulp(name: str, path: str) -> None:
    result = _float32(name, path)
    assert result.ulps_none <= 1.0, result
    assert result.ulps_mean <= 1.0, result


def test_benchmark_prints_its_tables(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accuracy, "CASES", accuracy.CASES[:1])
    monkeypatch.setattr(
        accuracy, "LABELSMOOTH_PATHS", {"labelsmooth[numpy]": accuracy.LABELSMOOTH_PATHS["labelsmooth[numpy]"]}
    )
    monkeypatch.setattr(accuracy, "LABELSMOOTH_PATHS_32", accuracy.LABELSMOOTH_PATHS)
    monkeypatch.setattr(accuracy, "FRAMEWORKS", {"stand-in framework": (accuracy.labelsmooth_numpy, "numpy")})
    assert accuracy.main() == 0
    out = capsys.readouterr().out
    assert "float64 inputs" in out and "float32 inputs" in out
    assert out.count(accuracy.CASES[0].name) == 3  # one float64 row, two float32 rows
    assert out.count("labelsmooth[numpy]") == 2 and "stand-in framework" in out
