r"""Schedules for the smoothing strength: ``epsilon`` as a function of the training step.

Each factory returns a plain Python callable ``schedule(step) -> float`` (``step`` a
non-negative int or float, e.g. an optimiser step or a fractional epoch), whose values
always lie in ``[0, 1]`` so they can be passed straight to ``epsilon=``::

    schedule = linear(0.2, 0.0, steps=1000)
    for step in range(2000):
        loss, grad = cross_entropy_with_grad(logits, labels, epsilon=schedule(step))

Annealing the smoothing away towards the end of training keeps its regularising effect
early on while letting the final model fit the hard labels, so that it does not end up
capped at ``1 - eps + eps/K`` confidence (Müller, Kornblith and Hinton 2019, "When Does
Label Smoothing Help?", discuss what a constant epsilon does to calibration and to the
information left in the logits). ``examples/digits_calibration.py`` compares constant and
annealed settings. The schedules are deterministic and stateless, so they can be
evaluated at any step, pickled, or wrapped for an optimiser library.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

from ._validation import check_positive_int

__all__ = ["Schedule", "constant", "cosine", "exponential", "linear"]


def _described(value: object) -> str:
    return f"{value!r} of type {type(value).__name__}"


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = f"{name} must be a real number, got {_described(value)}"
        raise TypeError(msg)
    result = float(value)
    if not math.isfinite(result):
        msg = f"{name} must be finite, got {value!r}"
        raise ValueError(msg)
    return result


def _epsilon(name: str, value: object) -> float:
    result = _real(name, value)
    if not 0.0 <= result <= 1.0:
        msg = f"{name} must be a smoothing strength in [0, 1], got {value!r}"
        raise ValueError(msg)
    return result


def _step(step: object) -> float:
    value = _real("step", step)
    if value < 0:
        msg = f"step must be non-negative, got {step!r}"
        raise ValueError(msg)
    return value


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


@dataclass(frozen=True, repr=False)
class Schedule:
    """Base of the schedules: call it with the step to get ``epsilon`` (a Python float).

    Its ``repr`` is the factory call that rebuilds it, e.g. ``linear(start=0.2, end=0.0, steps=100)``.
    """

    _factory = "schedule"

    def __call__(self, step: float) -> float:
        return _clamp(self._value(_step(step)))

    def __repr__(self) -> str:
        arguments = ", ".join(f"{field.name}={getattr(self, field.name)!r}" for field in fields(self))
        return f"{self._factory}({arguments})"

    def _value(self, step: float) -> float:
        raise NotImplementedError


@dataclass(frozen=True, repr=False)
class _Constant(Schedule):
    _factory = "constant"

    epsilon: float

    def _value(self, step: float) -> float:
        return self.epsilon


@dataclass(frozen=True, repr=False)
class _Ramp(Schedule):
    """From ``start`` to ``end`` over ``steps`` steps, then ``end``; a subclass shapes the way."""

    start: float
    end: float
    steps: int

    @classmethod
    def checked(cls, start: object, end: object, steps: object) -> _Ramp:
        return cls(_epsilon("start", start), _epsilon("end", end), check_positive_int("steps", steps, _described))

    def _value(self, step: float) -> float:
        progress = min(step, self.steps) / self.steps
        if progress == 1.0:
            return self.end
        return self._between(progress)

    def _between(self, progress: float) -> float:
        raise NotImplementedError


@dataclass(frozen=True, repr=False)
class _Linear(_Ramp):
    _factory = "linear"

    def _between(self, progress: float) -> float:
        return self.start + (self.end - self.start) * progress


@dataclass(frozen=True, repr=False)
class _Cosine(_Ramp):
    _factory = "cosine"

    def _between(self, progress: float) -> float:
        # Written as a weighted average so that both ends are exact (no end + (start - end)).
        weight = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.start * weight + self.end * (1.0 - weight)


@dataclass(frozen=True, repr=False)
class _Exponential(Schedule):
    _factory = "exponential"

    start: float
    decay_rate: float
    decay_steps: float
    end: float

    def _value(self, step: float) -> float:
        if self.decay_rate == 1.0 or self.start == 0.0:
            return self.start
        try:
            value = self.start * self.decay_rate ** (step / self.decay_steps)
        except OverflowError:
            # A long growth exceeds the float range; the result is capped at end <= 1 anyway.
            value = math.inf
        if self.decay_rate < 1.0:
            return max(value, self.end)
        return min(value, self.end)


def constant(epsilon: float) -> Schedule:
    r"""The same smoothing at every step: :math:`\varepsilon(t) = \varepsilon`.

    Parameters
    ----------
    epsilon : float in [0, 1]

    Returns
    -------
    Schedule
        A callable ``schedule(step) -> float``.

    Examples
    --------
    >>> from labelsmooth.schedules import constant
    >>> constant(0.1)(12345)
    0.1
    """
    return _Constant(_epsilon("epsilon", epsilon))


_RAMP_DOC = """
    Parameters
    ----------
    start, end : float in [0, 1]
        Values at step 0 and from step ``steps`` on.
    steps : int > 0
        Length ``T`` of the ramp.

    Returns
    -------
    Schedule

    Raises
    ------
    TypeError, ValueError
        A value outside ``[0, 1]``, a non-positive or non-integer ``steps``.
"""


def linear(start: float, end: float, steps: int) -> Schedule:
    return _Linear.checked(start, end, steps)


linear.__doc__ = (
    r"""Linear interpolation from ``start`` to ``end`` over ``steps`` steps, then ``end``.

    .. math:: \varepsilon(t) = s + (e - s)\, \frac{\min(t, T)}{T}
"""
    + _RAMP_DOC
    + r"""
    Examples
    --------
    >>> from labelsmooth.schedules import linear
    >>> schedule = linear(0.2, 0.0, steps=100)
    >>> schedule(0), schedule(25), schedule(100), schedule(500)
    (0.2, 0.15000000000000002, 0.0, 0.0)
    """
)


def cosine(start: float, end: float, steps: int) -> Schedule:
    return _Cosine.checked(start, end, steps)


cosine.__doc__ = (
    r"""Half-cosine from ``start`` to ``end`` over ``steps`` steps, then ``end``.

    .. math:: \varepsilon(t) = e + (s - e)\,\frac{1 + \cos(\pi \min(t, T) / T)}{2}

    The cosine annealing of Loshchilov and Hutter (2017), "SGDR: Stochastic Gradient
    Descent with Warm Restarts", without restarts: flat at both ends, steepest halfway.
"""
    + _RAMP_DOC
    + r"""
    Examples
    --------
    >>> from labelsmooth.schedules import cosine
    >>> schedule = cosine(0.2, 0.0, steps=100)
    >>> round(schedule(50), 12), schedule(100)
    (0.1, 0.0)
    """
)


def exponential(start: float, decay_rate: float, decay_steps: float, end: float = 0.0) -> Schedule:
    r"""Exponential decay (or growth) by ``decay_rate`` every ``decay_steps``, bounded by ``end``.

    .. math::

        \varepsilon(t) = \max\!\left(s \, r^{t / \tau},\ e\right) \quad (r < 1), \qquad
        \varepsilon(t) = \min\!\left(s \, r^{t / \tau},\ e\right) \quad (r > 1)

    The decay is continuous (``t / tau`` is not rounded down), so it can be evaluated at
    fractional epochs; ``end`` is the floor of a decay and the ceiling of a growth, as
    in optax's ``exponential_decay``. The value is finally clamped to ``[0, 1]``.

    Parameters
    ----------
    start : float in [0, 1]
        Value at step 0.
    decay_rate : float > 0
        Factor ``r`` applied every ``decay_steps`` steps (``< 1`` decays, ``> 1`` grows,
        ``1`` is constant).
    decay_steps : float > 0
        Number of steps ``tau`` over which the factor ``r`` is applied once.
    end : float in [0, 1], default 0.0
        Bound the schedule approaches: at most ``start`` for a decay, at least ``start``
        for a growth.

    Returns
    -------
    Schedule

    Raises
    ------
    TypeError, ValueError
        Values outside their ranges, or an ``end`` on the wrong side of ``start``.

    Examples
    --------
    >>> from labelsmooth.schedules import exponential
    >>> schedule = exponential(0.2, 0.5, decay_steps=10, end=0.01)
    >>> schedule(0), schedule(10), schedule(20), schedule(1000)
    (0.2, 0.1, 0.05, 0.01)
    """
    start_value = _epsilon("start", start)
    end_value = _epsilon("end", end)
    rate = _real("decay_rate", decay_rate)
    if rate <= 0:
        msg = f"decay_rate must be positive, got {decay_rate!r}"
        raise ValueError(msg)
    tau = _real("decay_steps", decay_steps)
    if tau <= 0:
        msg = f"decay_steps must be positive, got {decay_steps!r}"
        raise ValueError(msg)
    if rate < 1.0 and end_value > start_value:
        msg = f"end must be at most start={start_value} for a decay (decay_rate < 1), got {end!r}"
        raise ValueError(msg)
    if rate > 1.0 and end_value < start_value:
        msg = f"end must be at least start={start_value} for a growth (decay_rate > 1), got {end!r}"
        raise ValueError(msg)
    return _Exponential(start_value, rate, tau, end_value)
