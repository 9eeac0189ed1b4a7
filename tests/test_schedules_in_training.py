"""Schedules on arrays (traced JAX steps in jit and lax.scan, optax's schedule protocol, PyTorch,
NumPy, Dask) and the PyTorch-loop ``EpsilonScheduler``."""

from __future__ import annotations

import functools
import io
import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelsmooth.schedules import EpsilonScheduler, Schedule, constant, cosine, exponential, linear
from labelsmooth.testing import assert_close

SCHEDULES = [
    constant(0.1),
    linear(0.2, 0.0, 100),
    linear(0.0, 0.3, 7),
    cosine(0.2, 0.05, 100),
    exponential(0.2, 0.5, 10, end=0.01),
    exponential(0.01, 2.0, 10, end=0.3),
    exponential(0.0, 3.0, 5, end=0.5),
]
# Around the ends of every ramp, far beyond them, and before the start.
STEPS = [-5, 0, 1, 2, 3, 6, 7, 8, 25, 43, 44, 50, 99, 100, 101, 1000, 10**6, 2**31 - 1]


# --- NumPy and PyTorch arrays: the same values as Python numbers, in the step's library ------------


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_numpy_steps_give_the_python_values_elementwise(schedule):
    steps = np.asarray(STEPS, dtype=np.int64).reshape(2, -1)
    values = schedule(steps)
    assert isinstance(values, np.ndarray) and values.dtype == np.float64 and values.shape == steps.shape
    expected = np.asarray([schedule(int(t)) for t in steps.ravel()]).reshape(steps.shape)
    assert_close(values, expected)  # float64: the same formula, within 1e-12
    halves = steps.astype(np.float32) / 2
    assert_close(schedule(halves), np.asarray([[schedule(t) for t in row] for row in halves], dtype=np.float32))
    assert schedule(np.asarray(12.5)).shape == ()


def test_torch_steps_give_tensors():
    torch = pytest.importorskip("torch")
    schedule = cosine(0.2, 0.0, 100)
    value = schedule(torch.tensor([0, 25, 100, 400]))
    assert isinstance(value, torch.Tensor) and value.dtype == torch.float32  # torch's default float
    assert_close(value, np.asarray([schedule(t) for t in (0, 25, 100, 400)], dtype=np.float32))
    assert schedule(torch.tensor(25.0, dtype=torch.float64)).dtype == torch.float64


def test_array_steps_are_checked_where_their_values_can_be_read():
    schedule = linear(0.2, 0.0, 10)
    with pytest.raises(ValueError, match="step must be finite, got an array holding inf"):
        schedule(np.asarray([1.0, np.inf]))
    with pytest.raises(ValueError, match="step must be finite, got an array holding nan"):
        schedule(np.asarray(np.nan))
    for bad in (np.asarray([True]), np.asarray([1 + 2j])):
        with pytest.raises(
            TypeError, match=f"step must be a real number or an array of real dtype, got an array of dtype {bad.dtype}"
        ):
            schedule(bad)


@pytest.mark.slow
def test_dask_steps_stay_lazy_and_poison_invalid_steps_with_nan():
    da = pytest.importorskip("dask.array")
    schedule = linear(0.2, 0.0, 10)
    steps = da.from_array(np.asarray([0.0, 5.0, np.inf, -1.0]), chunks=2)
    value = schedule(steps)
    assert isinstance(value, da.Array)
    assert_close(value.compute(), np.asarray([0.2, 0.1, np.nan, 0.2]))


# --- JAX: traced steps under jit, vmap, lax.scan; optax's schedule protocol ------------------------

jax_only = pytest.mark.slow  # JAX compiles a program for each schedule


@functools.cache
def _jitted(schedule: Schedule):
    jax = pytest.importorskip("jax")
    return jax.jit(schedule)


@jax_only
@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_jit_of_a_traced_step_equals_the_eager_values(schedule):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    steps = jnp.asarray(STEPS, dtype=jnp.int32)
    traced = jax.jit(jax.vmap(schedule))(steps)
    assert traced.dtype == jnp.float32 and traced.shape == steps.shape
    python = np.asarray([schedule(t) for t in STEPS])
    assert_close(traced, python)  # float32 arithmetic: within the float32 tolerances
    assert_close(traced, schedule(steps))  # eager JAX arrays, the same operations
    assert isinstance(schedule(7), float)  # Python numbers still give Python floats
    float_steps = jnp.asarray([0.5, 12.25, 99.5], dtype=jnp.float32)
    assert_close(jax.jit(schedule)(float_steps), np.asarray([schedule(float(t)) for t in float_steps]))


@jax_only
@settings(max_examples=60, deadline=None, derandomize=True)
@given(schedule=st.sampled_from(SCHEDULES), step=st.integers(-100, 2**31 - 1))
def test_jit_equals_eager_at_drawn_steps(schedule, step):
    jnp = pytest.importorskip("jax.numpy")
    value = _jitted(schedule)(jnp.int32(step))
    assert value.shape == () and value.dtype == jnp.float32
    assert_close(value, schedule(step))


@jax_only
def test_schedule_inside_a_jitted_training_step_and_lax_scan():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    import labelsmooth.jax as lsj

    schedule = cosine(0.3, 0.0, steps=8)
    logits0 = jnp.asarray(np.random.default_rng(0).standard_normal((6, 4)), dtype=jnp.float32)
    labels = jnp.asarray([0, 1, 2, 3, 0, 1], dtype=jnp.int32)

    def step_fn(logits, step):
        epsilon = schedule(step)  # traced
        loss, grad = jax.value_and_grad(lambda z: lsj.cross_entropy(z, labels, epsilon=epsilon))(logits)
        return logits - 0.5 * grad, (loss, epsilon)

    steps = jnp.arange(12, dtype=jnp.int32)
    final, (losses, epsilons) = jax.jit(lambda z: jax.lax.scan(step_fn, z, steps))(logits0)
    assert_close(epsilons, np.asarray([schedule(t) for t in range(12)], dtype=np.float32))
    # The same run step by step with eager Python epsilons.
    logits = logits0
    for t in range(12):
        epsilon = schedule(t)
        loss, grad = jax.value_and_grad(lambda z: lsj.cross_entropy(z, labels, epsilon=epsilon))(logits)  # noqa: B023
        assert_close(losses[t], loss, rtol=1e-5, atol=1e-6)
        logits = logits - 0.5 * grad
    assert_close(final, logits, rtol=1e-5, atol=1e-6)


@jax_only
def test_optax_inject_hyperparams_and_scale_by_schedule_call_the_schedule_with_their_count():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jnp = jax.numpy
    schedule = linear(0.2, 0.0, steps=4)
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.ones(3)}
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
    state = optimizer.init(params)
    update = jax.jit(optimizer.update)
    for t in range(6):
        updates, state = update(grads, state)
        # The update of count t is SGD at rate schedule(t); the state records the rate used.
        assert_close(updates["w"], np.full(3, -schedule(t), dtype=np.float32))
        assert_close(state.hyperparams["learning_rate"], np.float32(schedule(t)))

    scaler = optax.scale_by_schedule(schedule)
    scaled_state = scaler.init(params)
    for t in range(3):
        scaled, scaled_state = jax.jit(scaler.update)(grads, scaled_state)
        assert_close(scaled["w"], np.full(3, schedule(t), dtype=np.float32))


@jax_only
def test_optax_join_schedules_of_labelsmooth_schedules():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    joined = optax.join_schedules([constant(0.2), cosine(0.2, 0.0, steps=10)], boundaries=[5])
    expected = [0.2] * 5 + [cosine(0.2, 0.0, 10)(t - 5) for t in range(5, 20)]
    # join_schedules evaluates every piece at every step (negative offsets included), eagerly and traced.
    assert_close(np.asarray([float(joined(t)) for t in range(20)]), np.asarray(expected), rtol=1e-6)
    traced = jax.jit(jax.vmap(joined))(jax.numpy.arange(20, dtype=jax.numpy.int32))
    assert_close(traced, np.asarray(expected, dtype=np.float32))


@jax_only
def test_invalid_traced_steps_give_nan():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    values = jax.jit(linear(0.2, 0.0, 10))(jnp.asarray([jnp.nan, jnp.inf, -jnp.inf, 5.0]))
    assert_close(values, np.asarray([np.nan, np.nan, np.nan, 0.1], dtype=np.float32))
    with pytest.raises(ValueError, match="step must be finite"):
        linear(0.2, 0.0, 10)(jnp.asarray(jnp.inf))  # an eager JAX array is checked


# --- EpsilonScheduler ----------------------------------------------------------------------------


def test_epsilon_scheduler_by_hand():
    loss = SimpleNamespace(label_smoothing=0.7)
    scheduler = EpsilonScheduler(loss, linear(0.2, 0.0, steps=4))
    # Construction applies step 0, as torch.optim.lr_scheduler does.
    assert (scheduler.last_epoch, loss.label_smoothing, scheduler.get_last_epsilon()) == (0, 0.2, 0.2)
    seen = []
    for _ in range(6):
        scheduler.step()
        seen.append((scheduler.last_epoch, loss.label_smoothing))
    # 0.2 - 0.05 t, then 0 from t = 4 on.
    assert seen == [(1, pytest.approx(0.15)), (2, 0.1), (3, pytest.approx(0.05)), (4, 0.0), (5, 0.0), (6, 0.0)]
    assert seen[1][1] == 0.1 and scheduler.get_last_epsilon() == 0.0
    assert repr(scheduler) == (
        "EpsilonScheduler(schedule=linear(start=0.2, end=0.0, steps=4), last_epoch=6, epsilon=0.0, "
        "attribute='label_smoothing')"
    )


def test_epsilon_scheduler_resumes_with_last_epoch_and_other_attributes():
    loss = SimpleNamespace(smoothing=0.0)
    schedule = exponential(0.2, 0.5, decay_steps=1)
    scheduler = EpsilonScheduler(loss, schedule, last_epoch=2, attribute="smoothing")
    assert scheduler.last_epoch == 3 and loss.smoothing == 0.2 * 0.5**3
    # Any callable of the int step: a lambda, or an optax-style function returning a 0-d array.
    other = EpsilonScheduler(SimpleNamespace(label_smoothing=0.0), lambda t: np.float32(0.1) * np.ones(()) / (t + 1))
    other.step()
    assert other.get_last_epsilon() == pytest.approx(0.05) and isinstance(other.get_last_epsilon(), float)


def test_epsilon_scheduler_drives_labelsmooth_and_pytorch_losses():
    torch = pytest.importorskip("torch")
    from labelsmooth.torch import CrossEntropyLoss

    z = torch.log(torch.tensor([[0.1, 0.1, 0.1, 0.36, 0.34]], dtype=torch.float64))
    y = torch.tensor([3])
    for loss in (CrossEntropyLoss(), torch.nn.CrossEntropyLoss()):
        scheduler = EpsilonScheduler(loss, linear(0.1, 0.0, steps=2))
        # The worked example of API.md at eps = 0.1, then half of it, then none.
        assert loss(z, y).item() == pytest.approx(1.0996504465365042, abs=1e-15)
        scheduler.step()
        assert loss(z, y).item() == pytest.approx(
            torch.nn.functional.cross_entropy(z, y, label_smoothing=0.05).item(), abs=1e-15
        )
        scheduler.step()
        assert loss(z, y).item() == pytest.approx(1.0216512475319814, abs=1e-15)


def test_epsilon_scheduler_state_dict_round_trip_through_torch_save():
    torch = pytest.importorskip("torch")
    from labelsmooth.torch import CrossEntropyLoss

    loss = CrossEntropyLoss()
    scheduler = EpsilonScheduler(loss, cosine(0.2, 0.0, steps=10))
    for _ in range(3):
        scheduler.step()
    state = scheduler.state_dict()
    assert state == {
        "last_epoch": 3,
        "last_epsilon": cosine(0.2, 0.0, 10)(3),
        "schedule": {"factory": "cosine", "start": 0.2, "end": 0.0, "steps": 10},
    }
    buffer = io.BytesIO()
    torch.save({"epsilon_scheduler": state}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["epsilon_scheduler"]  # plain data only

    # Resumed in fresh objects built with another schedule: the saved state wins, as in PyTorch.
    resumed_loss = CrossEntropyLoss()
    resumed = EpsilonScheduler(resumed_loss, constant(0.5))
    resumed.load_state_dict(loaded)
    assert resumed_loss.label_smoothing == loss.label_smoothing == scheduler.get_last_epsilon()
    assert resumed.schedule == scheduler.schedule and resumed.last_epoch == 3
    for _ in range(9):
        scheduler.step()
        resumed.step()
        assert resumed_loss.label_smoothing == loss.label_smoothing
    assert resumed.state_dict() == scheduler.state_dict()


def test_epsilon_scheduler_keeps_its_callable_when_the_saved_one_was_not_a_labelsmooth_schedule():
    scheduler = EpsilonScheduler(SimpleNamespace(label_smoothing=0.0), lambda t: 0.1)
    state = scheduler.state_dict()
    assert state == {"last_epoch": 0, "last_epsilon": 0.1, "schedule": None}
    loss = SimpleNamespace(label_smoothing=0.0)
    other = EpsilonScheduler(loss, lambda t: 0.3)
    other.load_state_dict({**state, "last_epoch": 7})
    assert (other.last_epoch, loss.label_smoothing) == (7, 0.1)
    other.step()
    assert (other.last_epoch, loss.label_smoothing) == (8, 0.3)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (
            (object(), constant(0.1)),
            TypeError,
            "loss must have an assignable 'label_smoothing' attribute .* got an object of type object without one",
        ),
        (
            (SimpleNamespace(label_smoothing=0.0), 0.1),
            TypeError,
            "schedule must be a callable step -> epsilon .* got 0.1 of type float",
        ),
        (
            (SimpleNamespace(label_smoothing=0.0), lambda t: 1.5),
            ValueError,
            r"schedule\(0\) must be a smoothing strength in \[0, 1\], got 1.5",
        ),
        (
            (SimpleNamespace(label_smoothing=0.0), lambda t: "0.1"),
            TypeError,
            r"schedule\(0\) must be a real number, got '0.1' of type str",
        ),
        (
            (SimpleNamespace(label_smoothing=0.0), lambda t: np.zeros(2)),
            TypeError,
            r"schedule\(0\) must return a number, got an array of shape \(2,\)",
        ),
    ],
)
def test_epsilon_scheduler_arguments_are_checked(arguments, error, message):
    with pytest.raises(error, match=message):
        EpsilonScheduler(*arguments)


@pytest.mark.parametrize(
    ("keywords", "error", "message"),
    [
        ({"last_epoch": -2}, ValueError, "last_epoch must be an int >= -1, got -2"),
        ({"last_epoch": 1.5}, TypeError, "last_epoch must be an int >= -1, got 1.5 of type float"),
        ({"last_epoch": True}, TypeError, "last_epoch must be an int >= -1, got True"),
        ({"attribute": 3}, TypeError, "attribute must be a str, got 3 of type int"),
    ],
)
def test_epsilon_scheduler_keywords_are_checked(keywords, error, message):
    with pytest.raises(error, match=message):
        EpsilonScheduler(SimpleNamespace(label_smoothing=0.0), constant(0.1), **keywords)


def test_a_refused_value_leaves_the_scheduler_where_it_was():
    pytest.importorskip("torch")
    from labelsmooth.torch import CrossEntropyLoss

    loss = CrossEntropyLoss()
    scheduler = EpsilonScheduler(loss, lambda t: 0.1 if t < 2 else math.nan)
    scheduler.step()
    with pytest.raises(ValueError, match=r"schedule\(2\) must be finite, got nan"):
        scheduler.step()
    assert (scheduler.last_epoch, loss.label_smoothing) == (1, 0.1)


@pytest.mark.parametrize(
    ("state", "error", "message"),
    [
        (
            [1, 2],
            ValueError,
            r"state_dict must be a dict with the keys \['last_epoch', 'last_epsilon', 'schedule'\], "
            r"got \[1, 2\] of type list",
        ),
        ({"last_epoch": 1}, ValueError, r"state_dict must be a dict with the keys .*, got \['last_epoch'\]"),
        (
            {"last_epoch": "1", "last_epsilon": 0.1, "schedule": None},
            TypeError,
            r"state_dict\['last_epoch'\] must be an int >= -1, got '1' of type str",
        ),
        (
            {"last_epoch": 1, "last_epsilon": 2.0, "schedule": None},
            ValueError,
            r"state_dict\['last_epsilon'\] must be a smoothing strength in \[0, 1\], got 2.0",
        ),
        (
            {"last_epoch": 1, "last_epsilon": 0.1, "schedule": {"factory": "step"}},
            ValueError,
            r"state_dict\['schedule'\] must be None or a dict with 'factory' one of",
        ),
        (
            {"last_epoch": 1, "last_epsilon": 0.1, "schedule": {"factory": "linear", "start": 0.1}},
            ValueError,
            r"state_dict\['schedule'\] does not rebuild a linear schedule: linear\(\) missing",
        ),
        (
            {"last_epoch": 1, "last_epsilon": 0.1, "schedule": {"factory": "constant", "epsilon": 3.0}},
            ValueError,
            r"state_dict\['schedule'\] does not rebuild a constant schedule: epsilon must be .* got 3.0",
        ),
    ],
)
def test_load_state_dict_checks_the_state(state, error, message):
    loss = SimpleNamespace(label_smoothing=0.0)
    scheduler = EpsilonScheduler(loss, constant(0.2))
    with pytest.raises(error, match=message):
        scheduler.load_state_dict(state)
    assert (scheduler.last_epoch, loss.label_smoothing, scheduler.schedule) == (0, 0.2, constant(0.2))
