"""Epsilon schedules: values at known steps from their formulas, and argument checks."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from labelsmooth import schedules
from labelsmooth.schedules import Schedule, constant, cosine, exponential, linear


def test_constant():
    schedule = constant(0.1)
    assert [schedule(t) for t in (0, 1, 10**9, 2.5)] == [0.1, 0.1, 0.1, 0.1]
    assert isinstance(schedule(3), float)


@pytest.mark.parametrize(("start", "end", "steps"), [(0.2, 0.0, 100), (0.0, 0.3, 7), (0.1, 0.1, 1)])
def test_linear_by_formula(start, end, steps):
    schedule = linear(start, end, steps)
    for t in (0, 1, steps // 2, steps - 1, steps, steps + 1, 10 * steps):
        expected = start + (end - start) * min(t, steps) / steps
        assert schedule(t) == pytest.approx(expected, abs=1e-15)
    assert schedule(0) == start
    assert schedule(steps) == end
    assert schedule(steps * 3) == end


def test_linear_known_values():
    schedule = linear(0.2, 0.0, 100)
    assert schedule(25) == pytest.approx(0.15, abs=1e-15)
    assert schedule(50) == pytest.approx(0.1, abs=1e-15)
    assert schedule(12.5) == pytest.approx(0.175, abs=1e-15)


@pytest.mark.parametrize(("start", "end", "steps"), [(0.2, 0.0, 100), (0.05, 0.25, 9)])
def test_cosine_by_formula(start, end, steps):
    schedule = cosine(start, end, steps)
    for t in (0, 1, steps / 4, steps / 2, steps - 1, steps, 5 * steps):
        progress = min(t, steps) / steps
        expected = end + (start - end) * (1 + math.cos(math.pi * progress)) / 2
        assert schedule(t) == pytest.approx(expected, abs=1e-15)
    assert schedule(0) == start
    assert schedule(steps) == end


def test_cosine_known_values():
    schedule = cosine(0.2, 0.0, 100)
    assert schedule(50) == pytest.approx(0.1, abs=1e-15)
    # (1 + cos(pi/4)) / 2 = (2 + sqrt 2) / 4 at a quarter of the way.
    assert schedule(25) == pytest.approx(0.2 * (2 + math.sqrt(2)) / 4, abs=1e-15)
    assert schedule(75) == pytest.approx(0.2 * (2 - math.sqrt(2)) / 4, abs=1e-15)


def test_exponential_decay_by_formula():
    schedule = exponential(0.2, 0.5, 10, end=0.01)
    assert schedule(0) == 0.2
    assert schedule(10) == pytest.approx(0.1, abs=1e-16)
    assert schedule(20) == pytest.approx(0.05, abs=1e-16)
    assert schedule(5) == pytest.approx(0.2 / math.sqrt(2), abs=1e-16)
    # 0.2 * 0.5 ** (t / 10) reaches 0.01 at t = 10 log2(20) ~ 43.2; the floor holds after.
    assert schedule(43) == pytest.approx(0.2 * 0.5**4.3, abs=1e-16)
    assert schedule(44) == 0.01
    assert schedule(10**6) == 0.01


def test_exponential_default_end_decays_to_zero():
    schedule = exponential(0.1, 0.9, 1)
    assert schedule(3) == pytest.approx(0.1 * 0.9**3, abs=1e-16)
    assert schedule(10**5) == 0.0


def test_exponential_growth_is_capped_by_end():
    schedule = exponential(0.01, 2.0, 10, end=0.3)
    assert schedule(10) == pytest.approx(0.02, abs=1e-16)
    assert schedule(30) == pytest.approx(0.08, abs=1e-16)
    assert schedule(10**9) == 0.3  # 2 ** 1e8 overflows a float; the cap still holds
    assert exponential(0.2, 1.0, 5)(1000) == 0.2
    assert exponential(0.0, 3.0, 5, end=0.5)(10**9) == 0.0


def test_values_are_python_floats_in_the_unit_interval():
    for schedule in (constant(1.0), linear(0.0, 1.0, 3), cosine(1.0, 0.0, 3), exponential(1.0, 0.3, 2)):
        for t in range(8):
            value = schedule(t)
            assert type(value) is float
            assert 0.0 <= value <= 1.0


def test_steps_of_other_numeric_types():
    schedule = linear(0.2, 0.0, 10)
    assert schedule(np.int64(5)) == schedule(5) == schedule(5.0) == schedule(np.float32(5.0))


def test_schedules_are_picklable_and_show_their_arguments():
    schedule = cosine(0.2, 0.0, 100)
    assert isinstance(schedule, Schedule)
    assert repr(schedule) == "cosine(start=0.2, end=0.0, steps=100)"
    assert repr(exponential(0.2, 0.5, 10)) == "exponential(start=0.2, decay_rate=0.5, decay_steps=10.0, end=0.0)"
    restored = pickle.loads(pickle.dumps(schedule))
    assert restored(30) == schedule(30)
    assert restored == schedule


@pytest.mark.parametrize(
    ("factory", "args", "error", "message"),
    [
        (constant, (1.5,), ValueError, r"epsilon must be a smoothing strength in \[0, 1\], got 1.5"),
        (constant, (-0.1,), ValueError, r"epsilon must be a smoothing strength in \[0, 1\], got -0.1"),
        (constant, ("0.1",), TypeError, "epsilon must be a real number, got '0.1' of type str"),
        (constant, (True,), TypeError, "epsilon must be a real number, got True"),
        (constant, (math.nan,), ValueError, "epsilon must be finite, got nan"),
        (linear, (0.2, 1.2, 10), ValueError, r"end must be a smoothing strength in \[0, 1\], got 1.2"),
        (linear, (0.2, 0.0, 0), ValueError, "steps must be a positive int, got 0"),
        (linear, (0.2, 0.0, 10.5), TypeError, "steps must be a positive int, got 10.5 of type float"),
        (cosine, (-1, 0.0, 10), ValueError, r"start must be a smoothing strength in \[0, 1\], got -1"),
        (cosine, (0.1, 0.0, True), TypeError, "steps must be a positive int, got True"),
        (exponential, (0.2, 0.0, 10), ValueError, "decay_rate must be positive, got 0.0"),
        (exponential, (0.2, 0.5, -1), ValueError, "decay_steps must be positive, got -1"),
        (exponential, (0.2, 0.5, 10, 0.3), ValueError, "end must be at most start=0.2 for a decay"),
        (exponential, (0.2, 1.5, 10), ValueError, "end must be at least start=0.2 for a growth"),
    ],
)
def test_invalid_arguments(factory, args, error, message):
    with pytest.raises(error, match=message):
        factory(*args)


@pytest.mark.parametrize(
    ("step", "error", "message"),
    [
        (math.inf, ValueError, "step must be finite, got inf"),
        (math.nan, ValueError, "step must be finite, got nan"),
        (None, TypeError, "step must be a real number or an array of real dtype, got None of type NoneType"),
        (False, TypeError, "step must be a real number or an array of real dtype, got False"),
        ("3", TypeError, "step must be a real number or an array of real dtype, got '3' of type str"),
        ([1, 2], TypeError, r"got \[1, 2\] of type list"),
    ],
)
def test_invalid_steps(step, error, message):
    with pytest.raises(error, match=message):
        linear(0.2, 0.0, 10)(step)


@pytest.mark.parametrize(
    "schedule",
    [
        constant(0.1),
        linear(0.2, 0.0, 10),
        cosine(0.0, 0.3, 10),
        exponential(0.2, 0.5, 3),
        exponential(0.01, 2.0, 3, 0.5),
    ],
    ids=repr,
)
def test_negative_steps_hold_the_first_value(schedule):
    # As optax's schedules do: optax.join_schedules evaluates later pieces at negative offsets.
    for step in (-1, -0.5, -(10**9)):
        assert schedule(step) == schedule(0)
    assert schedule(np.asarray([-3, 0]))[0] == schedule(0)


def test_module_exports_every_schedule():
    assert set(schedules.__all__) == {"EpsilonScheduler", "Schedule", "constant", "cosine", "exponential", "linear"}
