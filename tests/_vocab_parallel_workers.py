"""Worker processes of tests/test_vocab_parallel.py (run as scripts, not collected).

``torch RANK WORLD PORT CASE OUT``: one rank of a gloo process group on the loopback
interface; it evaluates ``labelsmooth.torch.vocab_parallel_cross_entropy`` on its block of
the case's logits, runs ``backward`` and saves its loss and gradient block to ``OUT``.

``jax OUT CASE [CASE ...]``: four host devices; ``labelsmooth.jax.vocab_parallel_cross_entropy``
inside ``shard_map`` under ``jax.jit`` and ``jax.grad``, each case saved to ``OUT/CASE.npz``.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def case(seed: int, num_classes: int = 12) -> dict:
    """Logits, labels (some ignored), class weights and a prior, the same in every process."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(6, num_classes)) * 3.0
    z[0, 2] = z[0, 9] = z[0].max() + 1.0  # a tie across two blocks
    y = rng.integers(0, num_classes, 6)
    weight = rng.uniform(0.5, 2.0, num_classes)
    prior = rng.dirichlet(np.ones(num_classes))
    eps_rows = rng.uniform(0.0, 0.5, 6)
    return {"z": z, "y": y, "weight": weight, "prior": prior, "eps_rows": eps_rows}


OPTIONS = {
    "uniform": {"epsilon": 0.1},
    "others+z": {"epsilon": 0.2, "prior": "others", "z_loss": 0.05},
    "weight+ignore": {"epsilon": 0.1, "weight": "weight", "ignore_index": -100},
    "prior+weight+sum": {"epsilon": 0.3, "prior": "prior", "weight": "weight", "reduction": "sum"},
    "none": {"epsilon": 0.1, "reduction": "none", "ignore_index": -100},
    "per-sample+weight": {"epsilon": "eps_rows", "weight": "weight", "z_loss": 0.1},
}


def labels(name: str, data: dict) -> np.ndarray:
    """The case's labels, with one sample marked -100 where the options ignore it."""
    y = data["y"].copy()
    if OPTIONS[name].get("ignore_index") is not None:
        y[4] = -100
    return y


def resolved(name: str, data: dict, convert) -> dict:
    options = dict(OPTIONS[name])
    for key in ("weight", "prior", "epsilon"):
        if isinstance(options.get(key), str) and options[key] in data:
            options[key] = convert(data[options[key]])
    return options


def torch_worker(rank: int, world: int, port: int, name: str, out: str, bounds: list[int]) -> None:
    import torch
    import torch.distributed as dist

    from labelsmooth.torch import vocab_parallel_cross_entropy

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        data = case(0)
        start, stop = bounds[rank], bounds[rank + 1]
        z = torch.tensor(data["z"][:, start:stop], requires_grad=True)
        loss = vocab_parallel_cross_entropy(z, torch.tensor(labels(name, data)), **resolved(name, data, torch.tensor))
        loss.sum().backward()
        np.savez(out, loss=loss.detach().numpy(), grad=z.grad.numpy())
    finally:
        dist.destroy_process_group()


def jax_worker(names: list[str], out: str) -> None:
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax

    jax.config.update("jax_enable_x64", True)

    from labelsmooth.jax import vocab_parallel_cross_entropy

    mesh = jax.make_mesh((4,), ("vocab",))
    for name in names:
        _jax_case(jax, mesh, vocab_parallel_cross_entropy, name, os.path.join(out, f"{name}.npz"))


def _jax_case(jax, mesh, vocab_parallel_cross_entropy, name: str, out: str) -> None:
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    data = case(0)
    options = resolved(name, data, jax.numpy.asarray)
    arrays = {k: v for k, v in options.items() if isinstance(v, jax.Array)}
    static = {k: v for k, v in options.items() if k not in arrays}

    def body(z, y, arrays):
        return vocab_parallel_cross_entropy(z, y, axis_name="vocab", **static, **arrays)

    sharded = jax.shard_map(body, mesh=mesh, in_specs=(P(None, "vocab"), P(), P()), out_specs=P())
    z = jax.device_put(data["z"], NamedSharding(mesh, P(None, "vocab")))
    y = jax.device_put(labels(name, data), NamedSharding(mesh, P()))
    arrays = jax.device_put(arrays, NamedSharding(mesh, P()))
    loss = jax.jit(sharded)(z, y, arrays)
    grad = jax.jit(jax.grad(lambda t: sharded(t, y, arrays).sum()))(z)
    np.savez(out, loss=np.asarray(loss), grad=np.asarray(grad))


if __name__ == "__main__":
    if sys.argv[1] == "torch":
        rank, world, port = (int(v) for v in sys.argv[2:5])
        torch_worker(rank, world, port, sys.argv[5], sys.argv[6], [int(v) for v in sys.argv[7].split(",")])
    else:
        jax_worker(sys.argv[3:], sys.argv[2])
