"""The one dense float64 oracle of the tests, written straight from the definitions.

Nothing here calls labelsmooth. Class axis last, everything in float64 NumPy:

* ``q' = (1 - eps) q + eps u`` (``dense_smoothed``) with ``q`` one-hot (labels) or given
  rows, and ``u`` uniform (``prior=None``), ``(1 - q) / (K - 1)`` (``prior="others"``) or
  a prior array renormalised on the allowed classes; ``where=`` restricts everything to
  the allowed classes;
* ``log p`` by its definition on the allowed classes (``log_softmax``), with ``log1p`` of
  the terms below the maximum so that rows dominated by one class keep their relative
  precision in the oracle too;
* class weights with PyTorch's convention: the target row becomes ``t = w * q'``, the loss
  ``-sum_k t_k log p_k``, its gradient ``(sum_k t_k) p - t``;
* ``ignore_index`` zeroes a sample and drops it from the normaliser; ``"mean"`` divides by
  PyTorch's weighted-mean normaliser ``sum_i w_{y_i}`` over the counted samples for labels,
  by the number of samples for probability targets.
"""

from __future__ import annotations

import numpy as np


def dense_smoothed(labels_or_probs, num_classes, epsilon, prior=None, allowed=None):
    """q' rows (class axis last) from integer labels or probability rows."""
    if np.issubdtype(np.asarray(labels_or_probs).dtype, np.integer):
        q = np.eye(num_classes)[np.clip(labels_or_probs, 0, num_classes - 1)]
    else:
        q = np.asarray(labels_or_probs, dtype=np.float64)
    allowed = np.ones(q.shape, bool) if allowed is None else np.broadcast_to(allowed, q.shape)
    count = allowed.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        if prior is None:
            u = allowed / count
        elif isinstance(prior, str):
            u = np.where(allowed, 1.0 - q, 0.0) / (count - 1)
        else:
            u = np.where(allowed, np.broadcast_to(np.asarray(prior, dtype=np.float64), q.shape), 0.0)
            u = u / u.sum(-1, keepdims=True)
    eps = np.asarray(epsilon, dtype=np.float64)
    if eps.ndim:
        eps = eps[..., None]
    return (1 - eps) * q + eps * u


def log_softmax(logits, allowed=None):
    """``log p`` over the class axis (last), ``-inf`` on the classes ``allowed`` masks out.

    ``log p_k = (z_k - m) - log1p(sum of exp(z_j - m) below the maximum)``; a row without a
    finite maximum (all ``-inf``, a ``+inf`` or a NaN logit) has no softmax: NaN there.
    """
    z = np.asarray(logits, dtype=np.float64)
    if allowed is not None:
        z = np.where(allowed, z, -np.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(z, axis=-1, keepdims=True)
        shifted = z - m
        terms = np.exp(shifted)
        np.put_along_axis(terms, np.argmax(z, axis=-1)[..., None], 0.0, axis=-1)
        return shifted - np.log1p(terms.sum(-1, keepdims=True))


def _reduce(per_sample, grad, normaliser, reduction):
    if reduction == "none":
        return per_sample, grad
    if reduction == "sum":
        return per_sample.sum(), grad
    with np.errstate(invalid="ignore", divide="ignore"):
        return per_sample.sum() / normaliser, None if grad is None else grad / normaliser


def _targets(logits, targets, epsilon, prior, weight, ignore_index, where):
    """(log p, t = w q', counted samples, the "mean" normaliser, allowed)."""
    z = np.asarray(logits, dtype=np.float64)
    num_classes = z.shape[-1]
    allowed = None if where is None else np.broadcast_to(where, z.shape)
    logp = log_softmax(z, allowed)
    qs = dense_smoothed(targets, num_classes, epsilon, prior, allowed)
    w = np.ones(num_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    t = w * qs
    if np.issubdtype(np.asarray(targets).dtype, np.integer):
        labels = np.asarray(targets)
        counted = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
        normaliser = (w[np.clip(labels, 0, num_classes - 1)] * counted).sum()
    else:
        counted = np.ones(z.shape[:-1], bool)
        normaliser = float(counted.size)
    return logp, qs, t, counted, normaliser, allowed


def cross_entropy_rows(
    logits,
    targets,
    *,
    epsilon=0.0,
    prior=None,
    weight=None,
    ignore_index=None,
    where=None,
    reduction="mean",
    z_loss=0.0,
    softcap=None,
):
    """The smoothed cross-entropy and its gradient (``reduction`` applied to both).

    ``softcap`` caps the logits to ``c tanh(z / c)`` first (the gradient gains
    ``1 - tanh^2``); ``z_loss`` adds ``z_loss lse^2`` per counted sample, averaged by
    ``"mean"`` over the counted samples, unweighted.
    """
    z = np.asarray(logits, dtype=np.float64)
    capped = z if softcap is None else softcap * np.tanh(z / softcap)
    logp, _, t, counted, normaliser, allowed = _targets(capped, targets, epsilon, prior, weight, ignore_index, where)
    with np.errstate(invalid="ignore"):
        per_sample = -(t * np.where(t == 0, 0.0, logp)).sum(-1)
        grad = t.sum(-1, keepdims=True) * np.exp(logp) - t
    if allowed is not None:
        grad = np.where(allowed, grad, 0.0)
    per_sample = np.where(counted, per_sample, 0.0)
    grad = np.where(counted[..., None], grad, 0.0)
    loss, grad = _reduce(per_sample, grad, normaliser, reduction)
    if z_loss:
        masked = capped if allowed is None else np.where(allowed, capped, -np.inf)
        lse = np.logaddexp.reduce(masked, axis=-1)
        z_rows = np.where(counted, z_loss * lse**2, 0.0)
        z_grad = np.where(counted[..., None], 2 * z_loss * lse[..., None] * np.exp(logp), 0.0)
        z_total, z_grad = _reduce(z_rows, z_grad, float(counted.sum()), reduction)
        loss, grad = loss + z_total, grad + z_grad
    if softcap is not None:
        grad = grad * (1.0 - np.tanh(z / softcap) ** 2)
    return loss, grad


def kl_divergence_rows(
    logits, targets, *, epsilon=0.0, prior=None, weight=None, ignore_index=None, where=None, reduction="mean"
):
    """``sum_k w_k q'_k (log q'_k - log p_k)``, reduced as ``cross_entropy_rows`` reduces."""
    logp, qs, t, counted, normaliser, _ = _targets(logits, targets, epsilon, prior, weight, ignore_index, where)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(qs > 0, t * (np.log(np.where(qs > 0, qs, 1.0)) - logp), 0.0)
    per_sample = np.where(counted, terms.sum(-1), 0.0)
    return _reduce(per_sample, None, normaliser, reduction)[0]


def entropy(q):
    """``-sum_k q_k log q_k`` with ``0 log 0 = 0``."""
    q = np.asarray(q, dtype=np.float64)
    return -(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)).sum(-1)
