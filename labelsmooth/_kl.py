"""KL divergence from the smoothed targets to the softmax of the logits."""

from __future__ import annotations

import dataclasses
from typing import Any

from . import _core
from ._backend import device_of
from ._losses import _OPTIONS_DOC, _RAISES_DOC, _dense_coefficients, _evaluate, _prepare, _Problem, _reduce

__all__ = ["kl_divergence"]


def _neg_xlogx(x: Any, xp: Any) -> Any:
    """``-x log x`` with the limit ``0 log 0 = 0``."""
    positive = x > 0
    return xp.where(positive, -x * xp.log(xp.where(positive, x, 1.0)), 0.0)


def _label_entropy(problem: _Problem) -> Any:
    """``sum_k w_k q'_k (-log q'_k)`` per row for integer labels, without a dense ``q'``.

    Uniform prior: the true class has ``1 - eps + eps/K`` and the ``K - 1`` others
    ``eps/K``; ``prior="others"``: ``1 - eps`` and ``eps/(K - 1)`` (``K`` counts the
    allowed classes of the row). An array prior needs the sum over classes of
    ``w_k f(eps u_k)``, with the true class then corrected to ``f(1 - eps + eps u_y)``.
    """
    xp, acc = problem.xp, problem.acc
    labels = problem.labels[..., None]
    eps = problem.epsilon
    shape = problem.logits.shape
    if problem.weight is None:
        true_weight: Any = 1.0
        allowed_weight: Any = problem.num_allowed
    else:
        full_weight = xp.astype(xp.broadcast_to(problem.weight, shape), acc)
        true_weight = _core._take_along_last(full_weight, labels, xp)
        if problem.allowed is not None:
            full_weight = xp.where(problem.allowed, full_weight, 0.0)
        allowed_weight = xp.sum(full_weight, axis=-1, keepdims=True)

    if problem.prior is None or isinstance(problem.prior, str):
        count = problem.num_allowed
        if problem.prior is None:
            other = eps / count
            true = (1.0 - eps) + other
        else:
            other = eps / (count - 1.0)
            true = 1.0 - eps
        if isinstance(true, float):
            device = device_of(problem.logits)
            true = xp.asarray(true, dtype=acc, device=device)
            other = xp.asarray(other, dtype=acc, device=device)
        return true_weight * _neg_xlogx(true, xp) + (allowed_weight - true_weight) * _neg_xlogx(other, xp)

    prior = xp.astype(xp.broadcast_to(problem.prior, shape), acc)
    spread = eps * prior
    spread_terms = _neg_xlogx(spread, xp)
    if problem.weight is not None:
        spread_terms = spread_terms * full_weight
    spread_entropy = xp.sum(spread_terms, axis=-1, keepdims=True)
    spread_true = _core._take_along_last(spread, labels, xp)
    correction = _neg_xlogx((1.0 - eps) + spread_true, xp) - _neg_xlogx(spread_true, xp)
    return spread_entropy + true_weight * correction


def _dense_entropy(problem: _Problem) -> Any:
    """``sum_k w_k q'_k (-log q'_k)`` per row for probability targets."""
    xp, acc = problem.xp, problem.acc
    smoothed = xp.astype(_dense_coefficients(dataclasses.replace(problem, weight=None)), acc)
    terms = _neg_xlogx(smoothed, xp)
    if problem.weight is not None:
        terms = terms * xp.astype(problem.weight, acc)
    return xp.sum(terms, axis=-1, keepdims=True)


def kl_divergence(
    logits: Any,
    targets: Any,
    /,
    *,
    epsilon: Any = 0.0,
    prior: Any = None,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int | None = None,
    where: Any = None,
    reduction: str = "mean",
    xp: Any = None,
) -> Any:
    problem = _prepare(logits, targets, epsilon=epsilon, prior=prior, axis=axis, weight=weight,
                       ignore_index=ignore_index, where=where, reduction=reduction, xp=xp)
    evaluation = _evaluate(problem)
    xp = problem.xp
    entropy = _label_entropy(problem) if problem.labels is not None else _dense_entropy(problem)
    if problem.ignored is not None:
        entropy = xp.where(problem.ignored, 0.0, entropy)
    divergence = evaluation.per_sample - entropy
    loss, _ = _reduce(problem, dataclasses.replace(evaluation, per_sample=divergence))
    return loss


kl_divergence.__doc__ = r"""Kullback-Leibler divergence from the smoothed targets to ``softmax(logits)``.

    .. math::

        \mathrm{KL}(q' \,\|\, p) = \sum_k q'_k \log \frac{q'_k}{p_k}
            = H(q', p) - H(q'), \qquad q' = (1 - \varepsilon)\, q + \varepsilon\, u

    (Kullback and Leibler 1951; Szegedy et al. 2016, section 7, for ``q'``). It differs
    from :func:`cross_entropy` by the entropy ``H(q')`` of the targets, a constant of the
    logits: the two have the same gradient, :func:`cross_entropy_grad`, but the
    divergence is 0 at the optimum ``p = q'``, which makes it the readable number to
    log. Same options and reductions as :func:`cross_entropy`.

    ``H(q', p)`` is :func:`cross_entropy`'s per-sample loss; ``H(q')`` is formed in closed
    form for integer labels (uniform prior: the true class has ``1 - eps + eps/K`` and the
    others ``eps/K``; ``prior="others"``: ``1 - eps`` and ``eps/(K-1)``; ``0 log 0 = 0``)
    and from the dense smoothed rows for probability targets.

    With ``weight``, the divergence is the weighted cross-entropy minus the *same-weighted*
    entropy, ``sum_k w_k q'_k log(q'_k / p_k)`` per sample, reduced exactly as
    :func:`cross_entropy` reduces (``"mean"`` over integer labels divides by the sum of
    ``w_{y_i}``), so that its gradient is still :func:`cross_entropy_grad` with the same
    options. Ignored samples contribute 0 and are not counted. ``"mean"`` divides by the
    number of samples (the batch shape's size), so for 2-D logits it is PyTorch's
    ``F.kl_div(F.log_softmax(z, 1), q', reduction="batchmean")``; for ``(N, C, d1, ...)``
    inputs PyTorch's ``"batchmean"`` divides by ``N`` only, i.e. our ``"sum"`` over ``N``.
""" + _OPTIONS_DOC + r"""
    Returns
    -------
    array
        Scalar for ``"mean"``/``"sum"``, batch-shaped for ``"none"``; dtype of ``logits``.
""" + _RAISES_DOC + r"""
    Examples
    --------
    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> z = xp.log(xp.asarray([[0.1, 0.1, 0.1, 0.36, 0.34]]))
    >>> round(float(ls.kl_divergence(z, xp.asarray([3]))), 12)  # = -log 0.36: H(q) = 0
    1.021651247532
    >>> q = ls.soft_targets(xp.asarray([3]), 5, epsilon=0.1)
    >>> float(ls.kl_divergence(xp.log(q), xp.asarray([3]), epsilon=0.1)) < 1e-15  # p = q'
    True
"""
