"""labelsmooth.testing: assert_close, the hypothesis strategies, the user example, imports."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import labelsmooth as ls
from labelsmooth.testing import DEFAULT_TOLERANCES, assert_close, reference_cross_entropy_with_grad, to_numpy
from labelsmooth.testing import strategies as lst

ROOT = Path(__file__).resolve().parents[1]


# --- assert_close --------------------------------------------------------------------------------


def test_passes_within_and_fails_beyond_the_float64_default() -> None:
    assert_close(np.asarray([1.0, -2.0]), np.asarray([1.0 + 5e-13, -2.0]))
    with pytest.raises(AssertionError):
        assert_close(np.asarray([1.0, -2.0]), np.asarray([1.0 + 5e-12, -2.0]))


def test_message_gives_errors_and_their_indices() -> None:
    actual = np.zeros((2, 3))
    desired = np.zeros((2, 3))
    desired[0, 2] = 1e-3  # largest relative error (1) ...
    desired[1, 1] = 5.0  # ... and largest absolute error (0.5)
    actual[1, 1] = 4.5
    with pytest.raises(AssertionError) as info:
        assert_close(actual, desired)
    text = str(info.value)
    assert "Mismatched elements: 2 / 6" in text
    assert re.search(r"Max absolute error: 0\.5 at index \(1, 1\) \(actual 4\.5, desired 5\.0\)", text)
    assert re.search(r"Max relative error: 1 at index \(0, 2\) \(actual 0\.0, desired 0\.001\)", text)
    assert "rtol=1e-12" in text and "float64" in text


def test_shapes_must_match_exactly() -> None:
    with pytest.raises(AssertionError, match=r"Shapes differ: actual \(3,\), desired \(1, 3\)"):
        assert_close(np.ones(3), np.ones((1, 3)))
    with pytest.raises(AssertionError, match="Shapes differ"):
        assert_close(np.ones(1), 1.0)


def test_nan_positions_must_match() -> None:
    assert_close(np.asarray([np.nan, 1.0]), np.asarray([np.nan, 1.0]))
    with pytest.raises(
        AssertionError,
        match=r"NaN positions differ: 1 NaN only in actual, 0 NaN only in desired; "
        r"first at index \(1,\)",
    ):
        assert_close(np.asarray([1.0, np.nan]), np.asarray([1.0, 2.0]))


def test_infinities_must_match_exactly() -> None:
    assert_close(np.asarray([np.inf, -np.inf]), np.asarray([np.inf, -np.inf]))
    with pytest.raises(AssertionError, match="Max absolute error: inf at index"):
        assert_close(np.asarray([np.inf]), np.asarray([-np.inf]))
    with pytest.raises(AssertionError):
        assert_close(np.asarray([np.inf]), np.asarray([1e308]))


@pytest.mark.parametrize(
    ("dtype", "passes", "fails"),
    [
        (np.float64, 1e-13, 1e-11),
        (np.float32, 3e-6, 3e-5),
        (np.float16, 5e-3, 5e-2),
    ],
)
def test_default_tolerance_follows_the_less_precise_dtype(dtype, passes: float, fails: float) -> None:
    desired = np.asarray([1.0, 3.0])
    assert_close(np.asarray([1.0 + passes, 3.0]).astype(dtype), desired)
    assert_close(desired, np.asarray([1.0 + passes, 3.0]).astype(dtype))
    with pytest.raises(AssertionError):
        assert_close(np.asarray([1.0 + fails, 3.0]).astype(dtype), desired)


def test_documented_tolerances() -> None:
    assert DEFAULT_TOLERANCES["float64"] == (1e-12, 1e-14)
    assert DEFAULT_TOLERANCES["float32"] == (1e-5, 1e-6)
    assert DEFAULT_TOLERANCES["float16"][0] == 1e-2
    assert DEFAULT_TOLERANCES["bfloat16"][0] >= 1e-2


def test_explicit_tolerances_override_the_defaults() -> None:
    assert_close(np.float32(1.0), np.float32(1.01), rtol=0.02)
    assert_close(0.0, 1e-9, atol=1e-8)
    with pytest.raises(AssertionError, match="rtol=0, atol=0"):
        assert_close(1.0, 1.0 + 2**-52, rtol=0, atol=0)


def test_python_scalars_and_integers() -> None:
    assert_close(2.0, np.float64(2.0))
    assert_close(np.asarray([1, 2]), np.asarray([1, 2]))
    with pytest.raises(AssertionError, match="Mismatched elements: 1 / 2"):
        assert_close(np.asarray([1, 2]), np.asarray([1, 3]))
    assert_close(np.empty((0, 3)), np.empty((0, 3)))


def test_arrays_of_every_backend(backend) -> None:
    x = np.asarray([[0.5, -1.0], [2.0, 3.0]])
    native = backend.asarray(x)
    converted, name = to_numpy(native)
    np.testing.assert_array_equal(converted, x.astype(converted.dtype))
    assert name == converted.dtype.name
    assert_close(native, x.astype(converted.dtype))
    with pytest.raises(AssertionError, match=r"index \(1, 0\)"):
        assert_close(native, x.astype(converted.dtype) + np.asarray([[0.0, 0.0], [1.0, 0.0]]))


def test_torch_tensors_with_grad_and_bfloat16() -> None:
    torch = pytest.importorskip("torch")
    t = torch.tensor([1.0, 2.0], requires_grad=True) * 3
    assert_close(t, np.asarray([3.0, 6.0], dtype=np.float32))
    bf = torch.tensor([1.0, 3.0], dtype=torch.bfloat16)
    assert to_numpy(bf)[1] == "bfloat16"
    assert_close(bf, np.asarray([1.01, 3.02]))  # bfloat16 tolerance: within 3 ulps
    with pytest.raises(AssertionError, match="bfloat16"):
        assert_close(bf, np.asarray([1.1, 3.0]))


def test_unreadable_objects_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="expected an array"):
        assert_close(object(), 1.0)


# --- strategies ----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, derandomize=True)
@given(lst.cross_entropy_cases(dtypes=(np.float64, np.float32, np.float16)))
def test_cases_are_valid_and_finite(case) -> None:
    loss, grad = ls.cross_entropy_with_grad(case.logits, case.targets, **case.options)
    assert loss.dtype == case.logits.dtype
    assert np.all(np.isfinite(loss))
    assert np.all(np.isfinite(grad))
    assert set(case.options) <= {"epsilon", "prior", "weight", "where", "ignore_index", "reduction", "axis"}


@settings(max_examples=30, deadline=None, derandomize=True)
@given(lst.cross_entropy_cases(options={"where", "ignore_index", "axis"}, max_classes=8))
def test_cases_agree_with_the_reference(case) -> None:
    loss, grad = ls.cross_entropy_with_grad(case.logits, case.targets, **case.options)
    exact_loss, exact_grad = reference_cross_entropy_with_grad(case.logits, case.targets, **case.options)
    assert_close(loss, exact_loss)
    assert_close(grad, exact_grad)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(lst.cross_entropy_cases(options={"epsilon", "weight"}, target_kinds=("labels",), reductions=("sum",)))
def test_cases_use_only_the_options_asked_for(case) -> None:
    assert set(case.options) <= {"epsilon", "weight", "reduction"}
    assert case.options["reduction"] == "sum"
    assert np.issubdtype(case.targets.dtype, np.integer)
    assert not np.isinf(case.logits).any()
    epsilon = case.options.get("epsilon", 0.0)
    assert isinstance(epsilon, float) and 0.0 <= epsilon <= 1.0


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.data())
def test_logits_put_minus_inf_only_on_masked_classes(data) -> None:
    mask = data.draw(lst.hnp.arrays(np.bool_, (3, 5)))
    mask[:, 0] = True
    z = data.draw(lst.logits(shape=(3, 5), where=mask, dtype=np.float32))
    assert z.dtype == np.float32 and z.shape == (3, 5)
    assert np.all(np.isfinite(z[mask]))
    assert not np.any(np.isnan(z)) and not np.any(z == np.inf)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(lst.logits())
def test_logits_reach_the_adversarial_regimes(z) -> None:
    assert z.ndim >= 1 and np.all(np.isfinite(z))
    assert np.max(np.abs(z)) <= 1e6 + 1e4 + 1e3


def test_logits_cover_wide_offset_and_confident_rows() -> None:
    seen = {"offset": False, "wide": False, "confident": False}

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(lst.logits(shape=(1, 8)))
    def look(z):
        row = z[0]
        if np.min(np.abs(row)) > 1e5:
            seen["offset"] = True
        if np.ptp(row) > 1e3:
            seen["wide"] = True
        ordered = np.sort(row)
        if ordered[-1] - ordered[-2] > 15 and np.ptp(ordered[:-1]) < 10:
            seen["confident"] = True

    look()
    assert all(seen.values()), seen


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.data())
def test_labels_avoid_masked_classes_and_keep_a_counted_sample(data) -> None:
    mask = data.draw(lst.hnp.arrays(np.bool_, (4, 6)))
    mask[np.arange(4), data.draw(lst.hnp.arrays(np.int64, 4, elements=st.integers(0, 5)))] = True
    y = data.draw(lst.labels(6, shape=(4,), where=mask, ignore_index=-100))
    counted = y != -100
    assert counted.any()
    assert np.all(mask[np.arange(4)[counted], y[counted]])


def test_strategy_arguments_are_checked() -> None:
    from hypothesis.errors import InvalidArgument

    @given(lst.cross_entropy_cases(options={"epsilon", "label_noise"}))
    def draw_one(case):
        raise AssertionError("unreachable")

    with pytest.raises(InvalidArgument, match="label_noise"):
        draw_one()


# --- imports and the example ---------------------------------------------------------------------


def _run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout


def test_testing_imports_no_framework_nor_optional_dependency() -> None:
    out = _run_python(
        "import sys\n"
        "import labelsmooth.testing\n"
        "print(sorted(m for m in ('mpmath', 'hypothesis', 'torch', 'jax', 'dask', 'cupy', 'tensorflow', 'optax',"
        " 'keras') if m in sys.modules))\n"
    )
    assert out.strip() == "[]"


def test_testing_works_without_hypothesis() -> None:
    out = _run_python(
        "import sys; sys.modules['hypothesis'] = None\n"
        "import numpy as np\n"
        "from labelsmooth.testing import assert_close, reference_cross_entropy\n"
        "assert_close(reference_cross_entropy(np.zeros((1, 4)), np.asarray([1])), float(np.log(4)))\n"
        "try:\n"
        "    import labelsmooth.testing.strategies\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert "pip install hypothesis" in out


def _load_example():
    path = ROOT / "examples" / "check_my_torch_loss.py"
    spec = importlib.util.spec_from_file_location("check_my_torch_loss", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_checks_pass_under_pytest() -> None:
    pytest.importorskip("torch")
    example = _load_example()
    tests = [getattr(example, name) for name in dir(example) if name.startswith("test_")]
    assert len(tests) == 3
    for test in tests:
        test()


@pytest.mark.slow
def test_example_catches_a_wrong_loss() -> None:
    torch = pytest.importorskip("torch")
    example = _load_example()

    class EpsilonOverKMinusOne(example.SmoothedCrossEntropy):
        """A common slip: spreading eps over the K - 1 other classes instead of all K."""

        def forward(self, logits, target):
            # Everything else as in the example's loss (weights, ignore_index, "mean").
            k = logits.shape[-1]
            log_probs = torch.log_softmax(logits, dim=-1)
            weight = torch.ones(k, dtype=logits.dtype) if self.weight is None else self.weight
            keep = target != self.ignore_index
            safe_target = torch.where(keep, target, torch.zeros_like(target))
            true_weight = weight[safe_target] * keep
            nll = -log_probs.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)
            smooth = -((log_probs * weight).sum(-1) - weight[safe_target] * (-nll)) / (k - 1)
            per_sample = (1 - self.epsilon) * true_weight * nll + self.epsilon * smooth * keep
            if self.reduction == "none":
                return per_sample
            if self.reduction == "sum":
                return per_sample.sum()
            return per_sample.sum() / true_weight.sum()

    example.SmoothedCrossEntropy = EpsilonOverKMinusOne
    # hypothesis may report several distinct failures at once (an exception group).
    with pytest.raises(Exception) as info:  # noqa: PT011
        example.test_matches_labelsmooth_float64()
    failures = list(getattr(info.value, "exceptions", [info.value]))
    assert failures and all(isinstance(f, AssertionError) for f in failures)
    assert all("Arrays are not close" in str(f) for f in failures)


@pytest.mark.slow
def test_example_runs_as_a_script() -> None:
    pytest.importorskip("torch")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "check_my_torch_loss.py")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("passed") == 3
