"""Annealed label smoothing in an optax (JAX) and a PyTorch training loop.

The same ``labelsmooth.schedules`` objects drive both loops:

1. optax: a schedule is an optax schedule. ``optax.join_schedules`` holds
   ``epsilon = 0.2`` for the first steps, then hands over to ``cosine(0.2, 0.0, ...)``;
   the whole training run is one ``jax.jit``-compiled ``jax.lax.scan`` in which the
   schedule is evaluated at the optimizer's traced ``int32`` step count, and the traced
   epsilon goes straight to ``labelsmooth.jax.cross_entropy(..., epsilon=...)``. The
   values seen inside the scan are printed next to the eager ``schedule(step)``.
2. PyTorch: ``labelsmooth.schedules.EpsilonScheduler`` sets the ``label_smoothing`` of a
   ``labelsmooth.torch.CrossEntropyLoss`` once per epoch, the way
   ``torch.optim.lr_scheduler`` sets a learning rate. Half-way through, the model, the
   optimizer and the epsilon scheduler are saved to a checkpoint (``torch.save``; read
   back with ``torch.load(weights_only=True)``) and training resumes from it in fresh
   objects; the resumed run ends exactly where the uninterrupted run does.

The data are three Gaussian blobs in the plane (600 points) and the model a linear
classifier, so that it runs in seconds. Each part is skipped if its framework is not
installed. Usage::

    python examples/annealed_smoothing.py

``LABELSMOOTH_EXAMPLE_FAST=1`` shortens both runs.
"""

from __future__ import annotations

import importlib.util
import io
import os

import numpy as np

from labelsmooth.schedules import EpsilonScheduler, constant, cosine

FAST = os.environ.get("LABELSMOOTH_EXAMPLE_FAST", "") not in ("", "0")
NUM_CLASSES = 3


def blobs(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of three overlapping Gaussian blobs, and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, size=n)
    centres = np.array([[0.0, 2.0], [-1.7, -1.0], [1.7, -1.0]])
    return (centres[labels] + rng.standard_normal((n, 2))).astype(np.float32), labels


def optax_loop(x: np.ndarray, y: np.ndarray) -> None:
    import jax
    import jax.numpy as jnp
    import optax

    import labelsmooth.jax as lsj

    steps, hold = (60, 20) if FAST else (400, 100)
    # An optax combinator over labelsmooth schedules: 0.2 for `hold` steps, then a cosine to 0.
    epsilon_schedule = optax.join_schedules([constant(0.2), cosine(0.2, 0.0, steps=steps - hold)], [hold])
    optimizer = optax.adam(0.05)
    params = {"w": jnp.zeros((2, NUM_CLASSES)), "b": jnp.zeros(NUM_CLASSES)}
    inputs, labels = jnp.asarray(x), jnp.asarray(y, dtype=jnp.int32)

    def loss_fn(params: dict, epsilon: jax.Array) -> jax.Array:
        logits = inputs @ params["w"] + params["b"]
        return lsj.cross_entropy(logits, labels, epsilon=epsilon)

    def train_step(carry: tuple, step: jax.Array) -> tuple:
        params, opt_state = carry
        epsilon = epsilon_schedule(step)  # a traced int32 step gives a traced float32 epsilon
        loss, grads = jax.value_and_grad(loss_fn)(params, epsilon)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, epsilon)

    @jax.jit
    def train(params: dict) -> tuple:
        carry = (params, optimizer.init(params))
        return jax.lax.scan(train_step, carry, jnp.arange(steps, dtype=jnp.int32))

    (params, _), (losses, epsilons) = train(params)
    print(f"optax: {steps} Adam steps in one jitted lax.scan, epsilon held for {hold} then annealed")
    print("  step  epsilon in scan  schedule(step)  smoothed loss")
    for step in sorted({0, hold - 1, hold, (hold + steps) // 2, steps - 1}):
        eager = float(epsilon_schedule(step))
        print(f"  {step:4d}  {float(epsilons[step]):15.6f}  {eager:14.6f}  {float(losses[step]):13.4f}")
    assert np.allclose(np.asarray(epsilons), [float(epsilon_schedule(t)) for t in range(steps)], atol=1e-6)
    accuracy = float(jnp.mean(jnp.argmax(inputs @ params["w"] + params["b"], axis=-1) == labels))
    print(f"  training accuracy {accuracy:.3f}")


def torch_loop(x: np.ndarray, y: np.ndarray) -> None:
    import torch

    from labelsmooth.torch import CrossEntropyLoss

    epochs = 6 if FAST else 40
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    batches = list(zip(inputs.split(100), labels.split(100)))

    def fresh() -> tuple:
        torch.manual_seed(0)
        model = torch.nn.Linear(2, NUM_CLASSES)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
        loss_fn = CrossEntropyLoss()
        # Applies schedule(0) = 0.2 to loss_fn.label_smoothing now, then one value per epoch.
        scheduler = EpsilonScheduler(loss_fn, cosine(0.2, 0.0, steps=epochs - 1))
        return model, optimizer, loss_fn, scheduler

    def train(model, optimizer, loss_fn, scheduler, first: int, last: int, log: bool) -> None:
        for epoch in range(first, last):
            total = 0.0
            for batch, target in batches:
                optimizer.zero_grad()
                loss = loss_fn(model(batch), target)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(target)
            if log and (epoch % max(1, epochs // 5) == 0 or epoch == epochs - 1):
                print(f"  {epoch:5d}  {loss_fn.label_smoothing:7.4f}  {total / len(labels):13.4f}")
            scheduler.step()  # after the epoch's optimizer steps, as for lr_scheduler

    print(f"PyTorch: {epochs} epochs of SGD, EpsilonScheduler(loss, cosine(0.2, 0.0, steps={epochs - 1}))")
    print("  epoch  epsilon  smoothed loss")
    model, optimizer, loss_fn, scheduler = fresh()
    train(model, optimizer, loss_fn, scheduler, 0, epochs, log=True)

    # The same run, interrupted half-way and resumed from a checkpoint in fresh objects.
    half = epochs // 2
    first_model, first_optimizer, first_loss, first_scheduler = fresh()
    train(first_model, first_optimizer, first_loss, first_scheduler, 0, half, log=False)
    buffer = io.BytesIO()
    torch.save(
        {
            "model": first_model.state_dict(),
            "optimizer": first_optimizer.state_dict(),
            "epsilon_scheduler": first_scheduler.state_dict(),
        },
        buffer,
    )
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)  # the scheduler's state is plain data
    resumed_model, resumed_optimizer, resumed_loss, resumed_scheduler = fresh()
    resumed_model.load_state_dict(checkpoint["model"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    resumed_scheduler.load_state_dict(checkpoint["epsilon_scheduler"])  # also sets the loss's epsilon
    print(f"  checkpoint at epoch {half}: {checkpoint['epsilon_scheduler']}")
    train(resumed_model, resumed_optimizer, resumed_loss, resumed_scheduler, half, epochs, log=False)
    same = all(torch.equal(a, b) for a, b in zip(model.parameters(), resumed_model.parameters()))
    assert same and resumed_scheduler.last_epoch == scheduler.last_epoch == epochs
    print(f"  resumed from the checkpoint: the same weights as the uninterrupted run: {same}")
    accuracy = (model(inputs).argmax(dim=-1) == labels).float().mean().item()
    print(f"  training accuracy {accuracy:.3f}")


def main() -> None:
    x, y = blobs(seed=0)
    for name, modules, loop in (("optax", ("jax", "optax"), optax_loop), ("PyTorch", ("torch",), torch_loop)):
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            print(f"{name}: skipped ({', '.join(missing)} not installed)")
        else:
            loop(x, y)
        print()
    print("Both loops annealed epsilon from 0.2 to 0.0 with labelsmooth.schedules.")


if __name__ == "__main__":
    main()
