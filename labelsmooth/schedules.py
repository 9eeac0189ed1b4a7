r"""Schedules for the smoothing strength: ``epsilon`` as a function of the training step.

Each factory returns a :class:`Schedule`, a callable ``schedule(step) -> epsilon`` whose
values always lie in ``[0, 1]`` so they can be passed straight to ``epsilon=``::

    schedule = linear(0.2, 0.0, steps=1000)
    for step in range(2000):
        loss, grad = cross_entropy_with_grad(logits, labels, epsilon=schedule(step))

``step`` is a Python number (an optimiser step or a fractional epoch), and then the
value is a Python float; or an array of any array-API library (a JAX array, traced under
``jax.jit`` or not, a PyTorch tensor, a NumPy or Dask array), and then the value is an
array of that library and shape, computed with its own operations: a schedule is an
optax schedule (``optax.inject_hyperparams``, ``optax.join_schedules`` and every other
caller of ``schedule(count)`` with an ``int32`` count), usable inside a jitted training
step or ``jax.lax.scan``. As in optax, a negative step gives the value at step 0. For a
PyTorch training loop, :class:`EpsilonScheduler` sets the smoothing of a loss module at
every ``.step()``, as ``torch.optim.lr_scheduler`` sets a learning rate.

Annealing the smoothing away towards the end of training keeps its regularising effect
early on while letting the final model fit the hard labels, so that it does not end up
capped at ``1 - eps + eps/K`` confidence (Müller, Kornblith and Hinton 2019, "When Does
Label Smoothing Help?", discuss what a constant epsilon does to calibration and to the
information left in the logits). ``examples/digits_calibration.py`` compares constant and
annealed settings, ``examples/annealed_smoothing.py`` shows the optax and PyTorch loops.
The schedules are deterministic and stateless, so they can be evaluated at any step,
pickled, or wrapped for an optimiser library.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from array_api_compat import array_namespace, is_array_api_obj

from ._backend import device_of, is_traced
from ._softmax import _default_float
from ._validation import check_int, check_positive_int, dtype_name

__all__ = ["EpsilonScheduler", "Schedule", "constant", "cosine", "exponential", "linear"]


def _described(value: object) -> str:
    return f"{value!r} of type {type(value).__name__}"


def _real(name: str, value: object, expected: str = "a real number") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = f"{name} must be {expected}, got {_described(value)}"
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


_STEP_EXPECTED = "a real number or an array of real dtype"


def _step(step: object) -> float:
    value = _real("step", step, _STEP_EXPECTED)
    # Before the start, the schedule holds its first value (as optax's schedules do, so
    # that optax.join_schedules can evaluate a later piece at a negative offset).
    return max(value, 0.0)


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _float_steps(step: Any, xp: Any) -> Any:
    """The steps of an array as floats: integer steps in the default floating dtype."""
    if xp.isdtype(step.dtype, "integral"):
        return xp.astype(step, _default_float(xp, step))
    if xp.isdtype(step.dtype, "real floating"):
        return step
    msg = f"step must be {_STEP_EXPECTED}, got an array of dtype {dtype_name(step.dtype)}"
    raise TypeError(msg)


def _full_like(value: float, like: Any, xp: Any) -> Any:
    return xp.full(like.shape, value, dtype=like.dtype, device=device_of(like))


@dataclass(frozen=True, repr=False)
class Schedule:
    """Base of the schedules: call it with the step to get ``epsilon``.

    ``schedule(step)`` with a Python number (or NumPy scalar) returns a Python float;
    with an array of integer or real floating dtype (JAX, traced or not, PyTorch,
    NumPy, Dask, array-API arrays) it returns an array of the same library, shape and
    device, of the step's floating dtype (integer steps: the library's default floating
    dtype, float32 for JAX without x64 and for PyTorch), computed elementwise with the
    library's operations, so ``jax.jit``, ``jax.vmap`` and ``jax.lax.scan`` trace through
    it. A negative step gives the value at step 0. A non-finite step is a
    ``ValueError`` where its value can be read, and gives NaN where it cannot (traced JAX,
    lazy Dask), so that it poisons the loss instead of passing as a plausible value.

    Its ``repr`` is the factory call that rebuilds it, e.g. ``linear(start=0.2, end=0.0, steps=100)``.
    """

    _factory = "schedule"

    def __call__(self, step: Any) -> Any:
        if is_array_api_obj(step) and not isinstance(step, numbers.Real):
            return self._on_array(step)
        return _clamp(self._value(_step(step)))

    def __repr__(self) -> str:
        arguments = ", ".join(f"{field.name}={getattr(self, field.name)!r}" for field in fields(self))
        return f"{self._factory}({arguments})"

    def _on_array(self, step: Any) -> Any:
        xp = array_namespace(step)
        t = _float_steps(step, xp)
        invalid = ~xp.isfinite(t)
        if not is_traced(t) and bool(xp.any(invalid)):
            first = xp.reshape(t, (-1,))[xp.argmax(xp.astype(xp.reshape(invalid, (-1,)), xp.int8))]
            msg = f"step must be finite, got an array holding {float(first)!r}"
            raise ValueError(msg)
        zero = xp.zeros_like(t)
        # Invalid steps are computed as 0 (no inf or NaN arithmetic), then replaced by NaN.
        t = xp.where(invalid, zero, xp.maximum(t, zero))
        value = xp.clip(self._array_value(t, xp), 0.0, 1.0)
        return xp.where(invalid, _full_like(math.nan, t, xp), value)

    def _value(self, step: float) -> float:
        raise NotImplementedError

    def _array_value(self, t: Any, xp: Any) -> Any:
        """The value at the non-negative floating steps ``t`` (the math of ``_value`` in ``xp``)."""
        raise NotImplementedError


@dataclass(frozen=True, repr=False)
class _Constant(Schedule):
    _factory = "constant"

    epsilon: float

    def _value(self, step: float) -> float:
        return self.epsilon

    def _array_value(self, t: Any, xp: Any) -> Any:
        return _full_like(self.epsilon, t, xp)


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

    def _array_value(self, t: Any, xp: Any) -> Any:
        progress = xp.clip(t, 0.0, float(self.steps)) / self.steps
        return xp.where(progress == 1.0, _full_like(self.end, t, xp), self._between(progress))

    def _between(self, progress: Any) -> Any:
        """The ramp at ``progress`` in [0, 1): a Python float or an array of them."""
        raise NotImplementedError


@dataclass(frozen=True, repr=False)
class _Linear(_Ramp):
    _factory = "linear"

    def _between(self, progress: Any) -> Any:
        return self.start + (self.end - self.start) * progress


@dataclass(frozen=True, repr=False)
class _Cosine(_Ramp):
    _factory = "cosine"

    def _between(self, progress: Any) -> Any:
        # Written as a weighted average so that both ends are exact (no end + (start - end)).
        if isinstance(progress, float):
            weight = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            weight = 0.5 * (1.0 + array_namespace(progress).cos(math.pi * progress))
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

    def _array_value(self, t: Any, xp: Any) -> Any:
        end = _full_like(self.end, t, xp)
        if self.decay_rate == 1.0 or self.start == 0.0:
            return _full_like(self.start, t, xp)
        exponent = math.log(self.decay_rate) * (t / self.decay_steps)
        # A long growth would overflow exp (a warning in NumPy): beyond start * e^(log(1/start) + 1)
        # = e > 1 >= end the value is capped at end anyway. A long decay underflows quietly to 0.
        exponent = xp.minimum(exponent, _full_like(math.log(1.0 / self.start) + 1.0, t, xp))
        value = self.start * xp.exp(exponent)
        if self.decay_rate < 1.0:
            return xp.maximum(value, end)
        return xp.minimum(value, end)


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


# What every factory returns and raises: the Raises section's text follows it.
_RETURNS_RAISES_DOC = """
    Returns
    -------
    Schedule

    Raises
    ------
    TypeError, ValueError
"""

_RAMP_DOC = (
    """
    Parameters
    ----------
    start, end : float in [0, 1]
        Values at step 0 and from step ``steps`` on.
    steps : int > 0
        Length ``T`` of the ramp.
"""
    + _RETURNS_RAISES_DOC
    + """        A value outside ``[0, 1]``, a non-positive or non-integer ``steps``.

    Examples
    --------"""
)


def linear(start: float, end: float, steps: int) -> Schedule:
    return _Linear.checked(start, end, steps)


linear.__doc__ = (
    r"""Linear interpolation from ``start`` to ``end`` over ``steps`` steps, then ``end``.

    .. math:: \varepsilon(t) = s + (e - s)\, \frac{\min(t, T)}{T}
"""
    + _RAMP_DOC
    + r"""
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
    >>> from labelsmooth.schedules import cosine
    >>> schedule = cosine(0.2, 0.0, steps=100)
    >>> round(schedule(50), 12), schedule(100)
    (0.1, 0.0)
    """
)


def exponential(start: float, decay_rate: float, decay_steps: float, end: float = 0.0) -> Schedule:
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


exponential.__doc__ = (
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
"""
    + _RETURNS_RAISES_DOC
    + r"""        Values outside their ranges, or an ``end`` on the wrong side of ``start``.

    Examples
    --------
    >>> from labelsmooth.schedules import exponential
    >>> schedule = exponential(0.2, 0.5, decay_steps=10, end=0.01)
    >>> schedule(0), schedule(10), schedule(20), schedule(1000)
    (0.2, 0.1, 0.05, 0.01)
    """
)


_SCHEDULE_FACTORIES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "linear": linear,
    "cosine": cosine,
    "exponential": exponential,
}


def _schedule_state(schedule: Callable[[int], Any]) -> dict[str, Any] | None:
    """A labelsmooth schedule as plain data (its factory and arguments); None for other callables."""
    if type(schedule) not in (_Constant, _Linear, _Cosine, _Exponential):
        return None
    assert isinstance(schedule, Schedule)
    return {"factory": schedule._factory, **{field.name: getattr(schedule, field.name) for field in fields(schedule)}}


def _schedule_from_state(state: object) -> Schedule:
    name = "state_dict['schedule']"
    if not isinstance(state, Mapping) or state.get("factory") not in _SCHEDULE_FACTORIES:
        msg = (
            f"{name} must be None or a dict with 'factory' one of {sorted(_SCHEDULE_FACTORIES)} and its "
            f"arguments, as EpsilonScheduler.state_dict() writes it, got {_described(state)}"
        )
        raise ValueError(msg)
    arguments = {key: value for key, value in state.items() if key != "factory"}
    try:
        return _SCHEDULE_FACTORIES[state["factory"]](**arguments)
    except (TypeError, ValueError) as exc:
        msg = f"{name} does not rebuild a {state['factory']} schedule: {exc}"
        raise ValueError(msg) from exc


class EpsilonScheduler:
    r"""Set the label smoothing of a loss module from a schedule, as ``torch.optim.lr_scheduler`` sets learning rates.

    The PyTorch-loop counterpart of passing a :class:`Schedule` to optax: each call of
    :meth:`step` advances the count ``last_epoch`` by one and assigns
    ``loss.label_smoothing = schedule(last_epoch)``, so that the next forward passes use

    .. math:: q' = (1 - \varepsilon_t)\, q + \varepsilon_t\, u, \qquad
              \varepsilon_t = \mathrm{schedule}(t)

    (label smoothing: Szegedy et al. 2016, "Rethinking the Inception Architecture for
    Computer Vision", section 7; annealing it: Müller, Kornblith and Hinton 2019, "When
    Does Label Smoothing Help?"). The protocol is that of PyTorch's learning-rate
    schedulers: construction applies the value of step 0 (``last_epoch`` becomes 0, or
    ``last_epoch + 1`` when resuming with ``last_epoch=n``); call :meth:`step` once per
    epoch or once per batch, after ``optimizer.step()``, whichever unit the schedule's
    ``steps`` counts; :meth:`get_last_epsilon` is the value in force; :meth:`state_dict`
    and :meth:`load_state_dict` save and resume it with the rest of a checkpoint.

    Parameters
    ----------
    loss : object with an assignable ``label_smoothing`` attribute
        :class:`labelsmooth.torch.CrossEntropyLoss` (whose setter checks the value), or
        ``torch.nn.CrossEntropyLoss``, which reads ``self.label_smoothing`` at every call
        too. Nothing here imports PyTorch.
    schedule : callable ``step -> float in [0, 1]``
        A :class:`Schedule` (:func:`linear`, :func:`cosine`, ...), or any callable of the
        int step returning a real number or a 0-d array (an optax schedule, a lambda).
    last_epoch : int >= -1, default -1
        The count of the last step taken; -1 starts afresh (as in PyTorch).
    attribute : str, default "label_smoothing"
        The attribute of ``loss`` that holds the smoothing.

    Attributes
    ----------
    last_epoch : int
        The step count ``t`` of the value in force.

    Raises
    ------
    TypeError
        ``loss`` without the attribute, a ``schedule`` that is not callable or returns a
        non-number, a ``last_epoch`` that is not an int.
    ValueError
        ``last_epoch < -1``, or a scheduled value outside ``[0, 1]``.

    Notes
    -----
    ``state_dict()`` holds only Python numbers, strings and dicts (``torch.load`` with
    ``weights_only=True`` reads it): ``last_epoch``, ``last_epsilon`` and ``schedule``, a
    labelsmooth schedule as its factory and arguments (None for another callable). As for
    PyTorch's schedulers, the loaded state wins: :meth:`load_state_dict` restores the
    saved schedule (a different callable given to the constructor is kept only when the
    saved one was not a labelsmooth schedule), the count, and assigns the saved
    ``last_epsilon`` to the loss, whose own ``state_dict`` does not hold the smoothing.

    Examples
    --------
    Any object with a ``label_smoothing`` attribute stands in for the loss module here:

    >>> from types import SimpleNamespace
    >>> from labelsmooth.schedules import EpsilonScheduler, linear
    >>> loss = SimpleNamespace(label_smoothing=0.0)  # e.g. labelsmooth.torch.CrossEntropyLoss()
    >>> scheduler = EpsilonScheduler(loss, linear(0.2, 0.0, steps=4))
    >>> loss.label_smoothing
    0.2
    >>> for epoch in range(2):
    ...     scheduler.step()  # after each epoch's optimizer steps
    >>> scheduler.last_epoch, loss.label_smoothing
    (2, 0.1)
    >>> state = scheduler.state_dict()
    >>> state["schedule"]
    {'factory': 'linear', 'start': 0.2, 'end': 0.0, 'steps': 4}
    >>> resumed = EpsilonScheduler(SimpleNamespace(label_smoothing=0.0), linear(0.2, 0.0, steps=4))
    >>> resumed.load_state_dict(state)
    >>> resumed.step()
    >>> resumed.last_epoch, round(resumed.get_last_epsilon(), 12)
    (3, 0.05)
    """

    def __init__(
        self,
        loss: Any,
        schedule: Callable[[int], Any],
        *,
        last_epoch: int = -1,
        attribute: str = "label_smoothing",
    ) -> None:
        if not isinstance(attribute, str):
            msg = f"attribute must be a str, got {_described(attribute)}"
            raise TypeError(msg)
        if not hasattr(loss, attribute):
            msg = (
                f"loss must have an assignable {attribute!r} attribute (labelsmooth.torch.CrossEntropyLoss, "
                f"torch.nn.CrossEntropyLoss), got an object of type {type(loss).__name__} without one"
            )
            raise TypeError(msg)
        if not callable(schedule):
            msg = (
                f"schedule must be a callable step -> epsilon (e.g. labelsmooth.schedules.linear(...)), "
                f"got {_described(schedule)}"
            )
            raise TypeError(msg)
        self.last_epoch = self._checked_epoch("last_epoch", last_epoch)
        self.loss = loss
        self.schedule = schedule
        self.attribute = attribute
        self._last_epsilon = math.nan
        self.step()

    @staticmethod
    def _checked_epoch(name: str, value: object) -> int:
        epoch = check_int(name, value, "an int >= -1", _described)
        if epoch < -1:
            msg = f"{name} must be an int >= -1, got {epoch}"
            raise ValueError(msg)
        return epoch

    def _scheduled(self, step: int) -> float:
        value = self.schedule(step)
        if is_array_api_obj(value) and not isinstance(value, numbers.Real):
            if tuple(value.shape) != ():
                msg = f"schedule({step}) must return a number, got an array of shape {tuple(value.shape)}"
                raise TypeError(msg)
            value = float(value)
        return _epsilon(f"schedule({step})", value)

    def step(self) -> None:
        """Advance ``last_epoch`` by one and assign ``schedule(last_epoch)`` to the loss."""
        epsilon = self._scheduled(self.last_epoch + 1)
        setattr(self.loss, self.attribute, epsilon)
        self.last_epoch += 1
        self._last_epsilon = epsilon

    def get_last_epsilon(self) -> float:
        """The smoothing assigned by the last :meth:`step` (or the constructor, or :meth:`load_state_dict`)."""
        return self._last_epsilon

    def state_dict(self) -> dict[str, Any]:
        """``{"last_epoch": int, "last_epsilon": float, "schedule": dict or None}`` (plain data only)."""
        return {
            "last_epoch": self.last_epoch,
            "last_epsilon": self._last_epsilon,
            "schedule": _schedule_state(self.schedule),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the schedule (if saved), the count, and the loss's smoothing."""
        expected = ("last_epoch", "last_epsilon", "schedule")
        if not isinstance(state_dict, Mapping) or set(state_dict) != set(expected):
            got = sorted(state_dict) if isinstance(state_dict, Mapping) else _described(state_dict)
            msg = f"state_dict must be a dict with the keys {list(expected)}, got {got}"
            raise ValueError(msg)
        last_epoch = self._checked_epoch("state_dict['last_epoch']", state_dict["last_epoch"])
        epsilon = _epsilon("state_dict['last_epsilon']", state_dict["last_epsilon"])
        saved = state_dict["schedule"]
        schedule = self.schedule if saved is None else _schedule_from_state(saved)
        setattr(self.loss, self.attribute, epsilon)
        self.schedule, self.last_epoch, self._last_epsilon = schedule, last_epoch, epsilon

    def __repr__(self) -> str:
        return (
            f"EpsilonScheduler(schedule={self.schedule!r}, last_epoch={self.last_epoch}, "
            f"epsilon={self._last_epsilon!r}, attribute={self.attribute!r})"
        )
