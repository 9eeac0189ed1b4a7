"""Vocabulary-parallel cross-entropy: every shard gets the unsharded loss and its gradient block.

The truth is PyTorch float64 autograd of the written-out loss on the whole logits (the
smoothing over the global vocabulary, PyTorch's class-weight convention, the z-loss terms
averaged over counted samples). The shards run in real process groups (2 and 3 gloo
processes on the loopback interface, unequal blocks) and on 4 JAX host devices under
``shard_map``; in-process, threads with a barrier stand in for the collectives, so that
every option is covered cheaply. Megatron-LM's local-vocabulary formula is written out to
show where it departs from the unsharded loss.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from _vocab_parallel_workers import OPTIONS, case, labels, resolved

from labelsmooth._vocab_parallel import Shard, evaluate

torch = pytest.importorskip("torch")
F = torch.nn.functional

WORKERS = Path(__file__).with_name("_vocab_parallel_workers.py")
ROOT = Path(__file__).resolve().parent.parent


def definition(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Loss and gradient of the whole logits, by autograd of the loss written out."""
    data = case(0)
    options = resolved(name, data, torch.tensor)
    z = torch.tensor(data["z"], requires_grad=True)
    y = torch.tensor(labels(name, data))
    eps, prior, weight = options["epsilon"], options.get("prior"), options.get("weight")
    if isinstance(eps, torch.Tensor):
        eps = eps[:, None]
    ignore = options.get("ignore_index")
    counted = torch.ones(len(y), dtype=z.dtype) if ignore is None else (y != ignore).to(z.dtype)
    safe_y = torch.where(counted > 0, y, 0)
    num_classes = z.shape[1]
    one_hot = F.one_hot(safe_y, num_classes).to(z.dtype)
    if prior is None:
        u = torch.full_like(z, 1.0 / num_classes)
    elif isinstance(prior, str):
        u = (1 - one_hot) / (num_classes - 1)
    else:
        u = prior.expand_as(z)
    w = torch.ones(num_classes, dtype=z.dtype) if weight is None else weight
    # PyTorch's weighted smoothing: (1 - eps) w_y (-log p_y) + eps sum_k u_k w_k (-log p_k).
    target = (1 - eps) * one_hot * w + eps * u * w
    rows = -(target * torch.log_softmax(z, 1)).sum(1) * counted
    z_rows = options.get("z_loss", 0.0) * torch.logsumexp(z, 1) ** 2 * counted
    reduction = options.get("reduction", "mean")
    if reduction == "none":
        loss = rows + z_rows
    elif reduction == "sum":
        loss = rows.sum() + z_rows.sum()
    else:
        loss = rows.sum() / (w[safe_y] * counted).sum() + z_rows.sum() / counted.sum()
    loss.sum().backward()
    return loss.detach().numpy(), z.grad.numpy()


def threaded(name: str, bounds: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every block evaluated in its own thread, the collectives meeting at a barrier."""
    data = case(0)
    num_blocks = len(bounds) - 1
    barrier = threading.Barrier(num_blocks)
    slots: list = [None] * num_blocks

    def collective(index: int, combine):
        def run(x):
            slots[index] = x
            barrier.wait()
            values = list(slots)
            barrier.wait()
            result = values[0]
            for value in values[1:]:
                result = combine(result, value)
            return result

        return run

    def block(index: int):
        shard = Shard(bounds[index], bounds[-1], collective(index, np.maximum), collective(index, np.add))
        options = {"prior": None, "weight": None, "ignore_index": None, "reduction": "mean", "z_loss": 0.0}
        options.update(resolved(name, data, np.asarray))
        logits = data["z"][:, bounds[index] : bounds[index + 1]]
        return evaluate(logits, labels(name, data), shard, options, True)

    with ThreadPoolExecutor(num_blocks) as pool:
        return list(pool.map(block, range(num_blocks)))


def check_shards(name: str, results: list[tuple[np.ndarray, np.ndarray]]) -> None:
    expected_loss, expected_grad = definition(name)
    for loss, _ in results:
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-13, atol=1e-15)
    grad = np.concatenate([g for _, g in results], axis=1)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("bounds", [[0, 12], [0, 5, 12], [0, 1, 6, 9, 12]])
def test_threaded_shards_match_the_unsharded_definition(name, bounds):
    check_shards(name, threaded(name, bounds))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment() -> dict:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bounds", "name"), [([0, 7, 12], "others+z"), ([0, 3, 4, 12], "weight+ignore"), ([0, 5, 12], "none")]
)
def test_torch_distributed_gloo_processes(tmp_path, bounds, name):
    world, port = len(bounds) - 1, _free_port()
    outputs = [tmp_path / f"rank{rank}.npz" for rank in range(world)]
    commands = [
        [
            sys.executable,
            str(WORKERS),
            "torch",
            str(rank),
            str(world),
            str(port),
            name,
            str(out),
            ",".join(map(str, bounds)),
        ]
        for rank, out in enumerate(outputs)
    ]
    processes = [subprocess.Popen(c, env=_environment(), stderr=subprocess.PIPE, text=True) for c in commands]
    errors = []
    for process in processes:
        try:
            _, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        errors.append((process.returncode, stderr))
    assert all(code == 0 for code, _ in errors), errors
    results = [(np.load(out)["loss"], np.load(out)["grad"]) for out in outputs]
    check_shards(name, results)


JAX_CASES = ["uniform", "others+z", "prior+weight+sum", "none", "per-sample+weight"]


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
    """Every JAX case, computed in one process with four host devices."""
    pytest.importorskip("jax")
    out = tmp_path_factory.mktemp("jax_vocab_parallel")
    result = subprocess.run(
        [sys.executable, str(WORKERS), "jax", str(out), *JAX_CASES],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", JAX_CASES)
def test_jax_shard_map_on_four_host_devices(jax_results, name):
    saved = np.load(jax_results / f"{name}.npz")
    expected_loss, expected_grad = definition(name)
    np.testing.assert_allclose(saved["loss"], expected_loss, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(saved["grad"], expected_grad, rtol=1e-12, atol=1e-15)


def megatron_local_smoothing(logits: np.ndarray, y: np.ndarray, eps: float, bounds: list[int]) -> list[float]:
    """Megatron-LM's vocab-parallel smoothing as its source writes it, per rank.

    ``(1 - s) nll + s * mean_k(-log p_k)`` with ``s = eps V / (V - 1)``, where ``V`` and the
    mean over classes are those of the local shard (the log-probabilities are global).
    """
    log_p = torch.log_softmax(torch.tensor(logits), 1).numpy()
    nll = -log_p[np.arange(len(y)), y]
    losses = []
    for start, stop in itertools.pairwise(bounds):
        vocab = stop - start
        s = eps * vocab / (vocab - 1)
        losses.append(float(np.mean((1 - s) * nll + s * np.mean(-log_p[:, start:stop], axis=1))))
    return losses


def test_megatron_local_vocabulary_formula_departs_from_the_unsharded_loss():
    data = case(0)
    bounds = [0, 4, 12]
    expected, _ = definition("others+z")
    ours = threaded("others+z", bounds)
    # Megatron's formula has no z-loss: compare against the "others" loss alone.
    plain = float(expected) - 0.05 * float(np.mean(np.log(np.exp(data["z"]).sum(1)) ** 2))
    megatron = megatron_local_smoothing(data["z"], data["y"], 0.2, bounds)
    assert megatron[0] != pytest.approx(megatron[1], rel=1e-3)  # the ranks do not even agree
    assert all(abs(value - plain) > 1e-3 for value in megatron)
    # With the global vocabulary size and mean it is the unsharded "others" loss.
    assert megatron_local_smoothing(data["z"], data["y"], 0.2, [0, 12])[0] == pytest.approx(plain, rel=1e-13)
    assert all(float(loss) == pytest.approx(float(expected), rel=1e-13) for loss, _ in ours)


def test_refusals():
    data = case(0)
    shard = Shard(0, 12, lambda x: x, lambda x: x)
    base = {"epsilon": 0.1, "prior": None, "weight": None, "ignore_index": None, "reduction": "mean", "z_loss": 0.0}
    with pytest.raises(ValueError, match=r"targets must be class indices in \[0, 12\), got a label of 12"):
        evaluate(data["z"], np.full(6, 12), shard, base, False)
    with pytest.raises(ValueError, match=r"weight must have shape \(12,\)"):
        evaluate(data["z"], data["y"], shard, {**base, "weight": np.ones(5)}, False)
    with pytest.raises(ValueError, match="targets must have the shape of logits_shard"):
        evaluate(data["z"], data["y"][:3], shard, base, False)
    from labelsmooth.torch import vocab_parallel_cross_entropy

    with pytest.raises(ValueError, match=r"needs an initialised torch\.distributed process group"):
        vocab_parallel_cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64))


def test_unknown_options_are_named_with_the_options_there_are():
    jnp = pytest.importorskip("jax.numpy")
    from labelsmooth.jax import vocab_parallel_cross_entropy

    z, y = jnp.zeros((2, 3)), jnp.zeros(2, dtype=jnp.int32)
    expected = (
        r"unexpected keyword argument 'label_smoothing': the options are epsilon, prior, weight, "
        r"ignore_index, reduction, z_loss; 'label_smoothing' is 'epsilon' here"
    )
    with pytest.raises(TypeError, match=expected):
        vocab_parallel_cross_entropy(z, y, axis_name="x", label_smoothing=0.1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'softcap'"):
        vocab_parallel_cross_entropy(z, y, axis_name="x", softcap=30.0)
