"""Independent dense references written straight from the definitions (float64 NumPy/SciPy).

Nothing here calls labelsmooth: these are the formulas of API.md evaluated the obvious way
(dense q', ``scipy.special.log_softmax``), for inputs small and tame enough that the
obvious way is accurate.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax


def dense_smoothed(labels_or_probs, num_classes, epsilon, prior, allowed=None):
    """q' rows (class axis last) from labels or probability rows."""
    if np.issubdtype(np.asarray(labels_or_probs).dtype, np.integer):
        q = np.eye(num_classes)[np.clip(labels_or_probs, 0, num_classes - 1)]
    else:
        q = np.asarray(labels_or_probs, dtype=np.float64)
    allowed = np.ones(q.shape, bool) if allowed is None else np.broadcast_to(allowed, q.shape)
    count = allowed.sum(-1, keepdims=True)
    if prior is None:
        u = allowed / count
    elif isinstance(prior, str):
        u = (allowed - q) / (count - 1)
    else:
        u = np.where(allowed, np.broadcast_to(prior, q.shape), 0.0)
        u = u / u.sum(-1, keepdims=True)
    eps = np.asarray(epsilon, dtype=np.float64)
    if eps.ndim:
        eps = eps[..., None]
    return (1 - eps) * q + eps * u


def cross_entropy_rows(
    logits, targets, *, epsilon=0.0, prior=None, weight=None, ignore_index=None, where=None, reduction="mean"
):
    """Loss and gradient of the dense definition, class axis last, float64."""
    z = np.asarray(logits, dtype=np.float64)
    num_classes = z.shape[-1]
    allowed = None if where is None else np.broadcast_to(where, z.shape)
    zz = z if allowed is None else np.where(allowed, z, -np.inf)
    logp = log_softmax(zz, axis=-1)
    p = np.exp(logp)
    is_labels = np.issubdtype(np.asarray(targets).dtype, np.integer)
    qs = dense_smoothed(targets, num_classes, epsilon, prior, allowed)
    w = np.ones(num_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    if is_labels:
        eps = np.asarray(epsilon, dtype=np.float64)
        eps = eps[..., None] if eps.ndim else eps
        onehot = np.eye(num_classes)[np.clip(targets, 0, num_classes - 1)]
        # PyTorch: t = (1-eps) w_y e_y + eps u*w, i.e. w * q' for one-hot q.
        t = w * qs
        wy = (w * onehot).sum(-1)
        counted = np.ones(np.shape(targets), bool)
        if ignore_index is not None:
            counted = np.asarray(targets) != ignore_index
        del eps
    else:
        t = w * qs
        wy = np.ones(z.shape[:-1])
        counted = np.ones(z.shape[:-1], bool)
    safe_logp = np.where(t == 0, 0.0, logp)
    per_sample = -(t * safe_logp).sum(-1)
    grad = t.sum(-1, keepdims=True) * p - t
    if allowed is not None:
        grad = np.where(allowed, grad, 0.0)
    per_sample = np.where(counted, per_sample, 0.0)
    grad = np.where(counted[..., None], grad, 0.0)
    if reduction == "none":
        return per_sample, grad
    if reduction == "sum":
        return per_sample.sum(), grad
    denominator = (wy * counted).sum() if is_labels else float(per_sample.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return per_sample.sum() / denominator, grad / denominator


def entropy(q):
    q = np.asarray(q, dtype=np.float64)
    return -(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)).sum(-1)
