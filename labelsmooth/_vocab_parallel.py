"""The smoothed cross-entropy of logits whose class axis is split over processes or devices.

Each shard holds the logits of one contiguous block of classes (``offset`` to ``offset +
K_local``) for every row. The kernel's row statistics merge across blocks without ever
forming a log-probability: the row maximum by a maximum, then (after shifting by the
*global* maximum) the sums of the exponentials, the target logit (held by one shard, 0 on
the others) and the profile-weighted distances ``sum_k u_k w_k (m - z_k)`` by sums. The
loss algebra on the merged statistics is the one of every other loss
(``_core.label_coefficients``, ``_core.label_loss``, ``_assembly.reduce``), so the smoothing
sum spans the global vocabulary (``K`` is the global class count, "others" leaves out the
true class wherever it lives): every shard gets the unsharded loss, and its block of the
unsharded gradient. The collectives are the caller's (``torch.distributed``,
``jax.lax.pmax`` / ``psum`` inside ``shard_map``); this module is array-API code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _core
from ._assembly import finish_rows, reduce, row_scales
from ._backend import accumulation_dtype, compute_dtype, device_of, namespace_of, values_checkable
from ._problem import Problem
from ._validation import (
    check_epsilon,
    check_static_options,
    comparable_labels,
    dtype_name,
    first_value,
    require_array,
    require_integer,
    require_real_floating,
)

__all__ = ["OPTIONS", "Shard", "evaluate"]

_NAN = float("nan")


# The options of the vocabulary-parallel losses: those of the other losses that a
# sharded class axis allows (their defaults are :func:`prepare`'s).
OPTIONS = ("epsilon", "prior", "weight", "ignore_index", "reduction", "z_loss")


@dataclass(frozen=True)
class Shard:
    """Where a block of classes sits in the vocabulary, and how shards combine values."""

    offset: Any  # the global index of this block's first class (int, or 0-d integer array)
    num_classes: int  # K, the global number of classes
    all_max: Callable[[Any], Any]  # elementwise maximum over the shards
    all_sum: Callable[[Any], Any]  # elementwise sum over the shards


@dataclass
class _Rows:
    """The merged statistics of every row (batch + (1,)), and this block's exponentials."""

    shift: Any  # m, the global row maximum (working dtype)
    shifted: Any  # z - m on this block
    exp_shifted: Any
    log_sum: Any  # log s over the whole vocabulary (acc dtype)
    sum_exp: Any


def evaluate(logits: Any, targets: Any, shard: Shard, options: dict[str, Any], with_grad: bool) -> tuple[Any, Any]:
    """``(loss, this block's gradient or None)`` of class-last ``logits`` and global ``targets``."""
    xp = namespace_of(logits, targets)
    problem, local, owner = _problem(logits, targets, shard, options, xp)
    # Every check before the first collective, so that a refused call leaves no rank waiting.
    weight = _class_block("weight", options["weight"], shard, problem)
    profile, summed = _profiles(problem, weight, options["prior"], shard, local, owner)
    rows = _merged_rows(problem.logits, shard, xp, problem.acc)
    gather = _gatherer(problem, shard, local, owner)
    true_weight = 1.0 if weight is None else gather(weight)
    coefficients = _coefficients(problem, shard, profile, true_weight, gather)
    true_logit = gather(problem.logits)
    true_half = xp.astype(rows.shift, problem.acc) * 0.5 - true_logit * 0.5
    distance = shard.all_sum(_weighted_sum(summed, -rows.shifted, xp, problem.acc))
    per_sample = _core.label_loss(coefficients, rows.log_sum, true_half, distance, 1.0, xp)
    denominators = _denominators(problem, true_weight)
    z_rows = None
    if problem.z_loss != 0.0:
        z_rows = finish_rows(
            problem, problem.z_loss * _core.squared_log_sum_exp(rows.shift, rows.log_sum, xp, problem.acc)
        )
    loss = reduce(problem, finish_rows(problem, per_sample), denominators, z_rows)
    if not with_grad:
        return loss, None
    grad = _gradient(problem, rows, coefficients, profile, denominators, local, owner)
    return loss, xp.astype(grad, problem.result_dtype)


def _problem(logits: Any, targets: Any, shard: Shard, options: dict[str, Any], xp: Any) -> tuple[Problem, Any, Any]:
    """The checked inputs, this block's labels (0 where another block owns them) and the owners."""
    require_array("logits_shard", logits)
    require_array("targets", targets)
    require_real_floating("logits_shard", logits, xp)
    require_integer("targets", targets, xp)
    if logits.ndim == 0 or tuple(targets.shape) != tuple(logits.shape[:-1]):
        msg = (
            f"targets must have the shape of logits_shard without its class axis (the last), "
            f"{tuple(logits.shape[:-1])}, got shape {tuple(targets.shape)}"
        )
        raise ValueError(msg)
    batch_shape = tuple(logits.shape[:-1])
    reduction, ignore_index, z_loss, _ = check_static_options(
        options["reduction"], options["prior"], options["ignore_index"], options["z_loss"]
    )
    epsilon = check_epsilon(options["epsilon"], xp, batch_shape)
    work = compute_dtype(xp, logits.dtype)
    acc = accumulation_dtype(xp, work, logits)
    if not isinstance(epsilon, float):
        epsilon = xp.astype(xp.broadcast_to(xp.astype(epsilon, acc), batch_shape), acc)[..., None]
    labels = comparable_labels(targets, xp)
    ignored = None if ignore_index is None else (labels == ignore_index)[..., None]
    poison = _bad_labels(labels, ignored, shard.num_classes, ignore_index, xp)
    block = logits.shape[-1]
    owner = (labels >= shard.offset) & (labels < shard.offset + block)
    local = xp.where(owner, labels - shard.offset, xp.zeros_like(labels))[..., None]
    problem = Problem(
        xp=xp,
        logits=xp.astype(logits, work),
        labels=local[..., 0],
        probabilities=None,
        epsilon=epsilon,
        prior=options["prior"],
        weight=None,
        allowed=None,
        num_allowed=shard.num_classes,
        sample_weight=None,
        ignored=ignored,
        poison=poison,
        reduction=reduction,
        axis=logits.ndim - 1,
        ndim=logits.ndim,
        result_dtype=logits.dtype,
        acc=acc,
        z_loss=z_loss,
    )
    return problem, local, owner[..., None]


def _bad_labels(labels: Any, ignored: Any, num_classes: int, ignore_index: Any, xp: Any) -> Any:
    """Refuse labels outside ``[0, K)`` (not ignored); traced, their rows' mask (to poison)."""
    bad = (labels < 0) | (labels >= num_classes)
    if ignored is not None:
        bad = bad & xp.logical_not(ignored[..., 0])
    if not values_checkable(labels):
        return bad[..., None]
    if bool(xp.any(bad)):
        allowed = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
        value = first_value(labels, bad, xp)
        msg = f"targets must be class indices in [0, {num_classes}){allowed}, got a label of {value}"
        raise ValueError(msg)
    return None


def _merged_rows(z: Any, shard: Shard, xp: Any, acc: Any) -> _Rows:
    """Softmax statistics over the whole vocabulary: a maximum, then sums, over the shards."""
    shift = shard.all_max(xp.max(z, axis=-1, keepdims=True))
    shifted = z - xp.where(xp.isfinite(shift), shift, _NAN)
    exp_shifted = xp.exp(shifted)
    at_max = shifted == 0.0
    # As in _core.row_softmax: the maxima's exact unit terms are kept out of the sum, so
    # log(s) = log1p(rest) keeps full relative precision in rows dominated by one class.
    rest = xp.sum(xp.where(at_max, exp_shifted - 1.0, exp_shifted), axis=-1, keepdims=True, dtype=acc)
    n_max = xp.sum(xp.astype(at_max, acc), axis=-1, keepdims=True)
    excess = shard.all_sum(rest + n_max) - 1.0
    return _Rows(shift, shifted, exp_shifted, xp.log1p(excess), excess + 1.0)


def _gatherer(problem: Problem, shard: Shard, local: Any, owner: Any) -> Callable[[Any], Any]:
    """``x -> x[y]`` per row (acc dtype) of a block-shaped ``x``, from the shard that holds ``y``."""
    xp, acc = problem.xp, problem.acc

    def gather(x: Any) -> Any:
        full = xp.broadcast_to(x, problem.logits.shape)
        held = xp.where(owner, xp.astype(_core.take_along_last(full, local, xp), acc), 0.0)
        return shard.all_sum(held)

    return gather


def _class_block(name: str, vector: Any, shard: Shard, problem: Problem) -> Any:
    """This block's entries of a global class vector ``(K,)`` (working dtype), or None."""
    if vector is None:
        return None
    xp = problem.xp
    require_array(name, vector)
    if not xp.isdtype(vector.dtype, "real floating") and not xp.isdtype(vector.dtype, "integral"):
        msg = f"{name} must have a real dtype, got dtype {dtype_name(vector.dtype)}"
        raise TypeError(msg)
    if tuple(vector.shape) != (shard.num_classes,):
        msg = (
            f"{name} must have shape ({shard.num_classes},) (one entry per class of the whole vocabulary), "
            f"got shape {tuple(vector.shape)}"
        )
        raise ValueError(msg)
    index = xp.arange(problem.logits.shape[-1], device=device_of(problem.logits)) + shard.offset
    return xp.astype(xp.take(vector, index, axis=0), problem.logits.dtype)


def _profiles(problem: Problem, weight: Any, prior: Any, shard: Shard, local: Any, owner: Any) -> tuple[Any, Any]:
    """The gradient's profile on this block (None: ones) and the loss's (the label left out for "others")."""
    xp, work = problem.xp, problem.logits.dtype
    profile = weight
    if prior is not None and not isinstance(prior, str):
        block = _class_block("prior", prior, shard, problem)
        _check_prior(block, shard, xp)
        profile = block if profile is None else block * profile
    if not isinstance(prior, str):
        return profile, profile
    classes = xp.arange(problem.logits.shape[-1], dtype=local.dtype, device=device_of(problem.logits))
    others = xp.astype(xp.logical_not(owner & (classes == local)), work)
    return profile, others if profile is None else others * profile


def _check_prior(block: Any, shard: Shard, xp: Any) -> None:
    """A class prior must be non-negative and sum to 1 over the whole vocabulary."""
    total = shard.all_sum(xp.sum(block, keepdims=True))
    negative = shard.all_sum(xp.sum(xp.astype(block < 0, block.dtype), keepdims=True))
    if values_checkable(total) and (bool(xp.any(negative > 0)) or not bool(xp.all(xp.abs(total - 1.0) <= 1e-6))):
        msg = f"prior must be non-negative and sum to 1, got a sum of {float(total[0])}"
        raise ValueError(msg)


def _weighted_sum(profile: Any, values: Any, xp: Any, acc: Any) -> Any:
    weighted = values if profile is None else profile * values
    return xp.sum(weighted, axis=-1, keepdims=True, dtype=acc)


def _coefficients(
    problem: Problem, shard: Shard, profile: Any, true_weight: Any, gather: Callable[[Any], Any]
) -> _core.LabelCoefficients:
    """PyTorch's weighted-smoothing coefficients, with the profile summed over every shard."""
    xp, acc = problem.xp, problem.acc
    prior = problem.prior
    profile_sum: Any = float(shard.num_classes)
    true_profile: Any = 1.0
    if profile is not None:
        ones = xp.ones(problem.logits.shape, dtype=problem.logits.dtype, device=device_of(problem.logits))
        profile_sum = shard.all_sum(_weighted_sum(profile, ones, xp, acc))
        true_profile = gather(profile)
    return _core.label_coefficients(
        problem.epsilon,
        true_weight,
        prior_kind=prior if prior is None or isinstance(prior, str) else "array",
        num_allowed=shard.num_classes,
        profile_sum=profile_sum,
        true_profile=true_profile,
    )


def _denominators(problem: Problem, true_weight: Any) -> tuple[Any, Any]:
    """``"mean"``'s normalisers over the (replicated) batch: summed ``w_y``, and the count."""
    if problem.reduction != "mean":
        return None, None
    xp, acc = problem.xp, problem.acc
    counted = xp.ones((*tuple(problem.logits.shape[:-1]), 1), dtype=acc, device=device_of(problem.logits))
    if problem.ignored is not None:
        counted = xp.where(problem.ignored, 0.0, counted)
    count = xp.sum(counted)
    if isinstance(true_weight, float):
        return count, count
    return xp.sum(counted * true_weight), count


def _gradient(
    problem: Problem,
    rows: _Rows,
    coefficients: _core.LabelCoefficients,
    profile: Any,
    denominators: tuple[Any, Any],
    local: Any,
    owner: Any,
) -> Any:
    """This block of ``scale * (T p - spread * profile - c_y e_y) + z_scale * 2 z_loss lse p``."""
    xp, work = problem.xp, problem.logits.dtype
    scale, z_scale = row_scales(problem, denominators)
    total, spread, true_part = _core.scaled_gradient_coefficients(coefficients, scale)
    if problem.z_loss != 0.0:
        lse = xp.astype(rows.shift, problem.acc) + rows.log_sum
        total = total + 2.0 * problem.z_loss * z_scale * lse
    grad = xp.astype(total / rows.sum_exp, work) * rows.exp_shifted
    if spread is not None:
        grad = grad - _in(spread, work, xp) * (1.0 if profile is None else profile)
    classes = xp.arange(grad.shape[-1], dtype=local.dtype, device=device_of(grad))
    grad = xp.where(owner & (classes == local), grad - _in(true_part, work, xp), grad)
    if problem.ignored is not None:
        grad = xp.where(problem.ignored, 0.0, grad)
    if problem.poison is not None:
        grad = xp.where(problem.poison, _NAN, grad)
    return grad


def _in(value: Any, dtype: Any, xp: Any) -> Any:
    return value if isinstance(value, (int, float)) else xp.astype(value, dtype)
