"""KL divergence from the smoothed targets to the softmax of the logits."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from . import _core
from ._assembly import dense_coefficients, finish_rows, reduce, solve, z_loss_rows
from ._backend import device_of, wants_torch_autograd
from ._docs import LOSS_RETURNS_DOC, loss_doc
from ._problem import LossOptions, Problem, complete_options, prepare, with_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .typing import Array, ArrayT

__all__ = ["kl_divergence"]

_NAN = float("nan")
_INF = float("inf")


def _label_targets(problem: Problem, log_p: Any) -> Any:
    """Dense ``q'`` of integer labels (accumulation dtype, class last, 0 on masked classes)."""
    xp = problem.xp
    classes = xp.arange(log_p.shape[-1], dtype=problem.labels.dtype, device=device_of(log_p))
    one_hot = xp.astype(classes == problem.labels[..., None], log_p.dtype)
    prior = problem.prior
    if prior is not None and not isinstance(prior, str):
        prior = xp.astype(xp.broadcast_to(prior, log_p.shape), log_p.dtype)
    return _core.smoothed_rows(one_hot, problem.epsilon, prior, problem.allowed, problem.num_allowed, xp)


def _mass_defect(problem: Problem) -> Any:
    """``sum_k q'_k - 1`` per row, from the inputs' own sums (0 when they sum to 1).

    Only the given rows and prior can miss 1 (the prior within its validation tolerance):
    ``q'`` is otherwise normalised by construction, so the defect is formed from
    ``sum_k q_k - 1`` and ``sum_k u_k - 1`` rather than from a sum of ``q'``, whose
    rounding alone would be as large as a divergence near its optimum.
    """
    xp, acc, eps = problem.xp, problem.acc, problem.epsilon
    defect: Any = 0.0
    if problem.probabilities is not None:
        target_defect = xp.sum(xp.astype(problem.probabilities, acc), axis=-1, keepdims=True) - 1.0
        if isinstance(problem.prior, str):
            # u = (allowed - q)/(K - 1) sums to (K - S)/(K - 1): it moves the defect too.
            defect = target_defect * ((1.0 - eps) - eps / (problem.num_allowed - 1.0))
        else:
            defect = target_defect * (1.0 - eps)
    if problem.prior is not None and not isinstance(problem.prior, str):
        prior = xp.astype(xp.broadcast_to(problem.prior, problem.logits.shape), acc)
        defect = defect + eps * (xp.sum(prior, axis=-1, keepdims=True) - 1.0)
    return defect


def _softmax_rows(problem: Problem) -> _core.RowSoftmax:
    """The rows' softmax statistics in the accumulation dtype; ``log p_k = shifted_k - log_sum``."""
    xp, acc = problem.xp, problem.acc
    # The whole softmax in the wider dtype (float64 for float32 logits where the backend has
    # it): near the optimum every bit of r_k = log q'_k - log p_k counts.
    return _core.row_softmax(xp.astype(problem.logits, acc), problem.allowed, xp, acc)


def _divergence_terms(targets: Any, log_p: Any, xp: Any) -> Any:
    r"""Non-negative terms ``t_k`` with ``sum_k t_k = KL(q' || p) + sum_k (p_k - q'_k)``.

    ``t_k = q'_k (r_k + expm1(-r_k))`` with ``r_k = log q'_k - log p_k`` where ``q'_k > 0``
    (``q'_k r_k + p_k - q'_k``), and ``t_k = p_k`` where ``q'_k = 0``. Every term is
    ``>= 0`` (``r + e^{-r} - 1 >= 0``), so nothing cancels near the optimum, where
    ``r + expm1(-r) = r^2/2 + O(r^3)`` keeps its full relative precision.
    """
    positive = targets > 0.0
    p = xp.exp(log_p)
    # Every select is doubled (the branch not taken sees a harmless value), so that neither
    # the value nor autodiff meets log(0), 0 * inf or an overflowing exp.
    safe_targets = xp.where(positive, targets, 1.0)
    ratio = xp.where(positive, xp.log(safe_targets) - log_p, 0.0)
    # expm1(-r) overflows for r < -709 (a tiny q'_k against a large p_k): there, where no
    # cancellation is possible, the term is written as q'_k r_k + p_k - q'_k.
    near = ratio > -1.0
    near_ratio = xp.where(near, ratio, 0.0)
    far_ratio = xp.where(near, 0.0, ratio)
    near_term = targets * (near_ratio + xp.expm1(-near_ratio))
    far_term = targets * far_ratio + (p - targets)
    return xp.where(positive, xp.where(near, near_term, far_term), p)


def _weighted_terms(targets: Any, log_p: Any, weight: Any, xp: Any) -> Any:
    """``w_k q'_k (log q'_k - log p_k)``, and 0 where ``q'_k = 0``.

    A weighted divergence has no sign; its terms are first order in ``r_k`` near the
    optimum, so they are summed as they are.
    """
    positive = targets > 0.0
    safe_targets = xp.where(positive, targets, 1.0)
    ratio = xp.where(positive, xp.log(safe_targets) - xp.where(positive, log_p, 0.0), 0.0)
    return xp.astype(weight, targets.dtype) * targets * ratio


def _per_sample(problem: Problem) -> tuple[Any, Any]:
    """Per-sample divergence and z-loss terms (or None) (accumulation dtype, batch + (1,))."""
    xp, acc = problem.xp, problem.acc
    rows = _softmax_rows(problem)
    log_p = rows.shifted - rows.log_sum
    if problem.labels is not None:
        targets = _label_targets(problem, log_p)
    else:
        widened = dataclasses.replace(problem, probabilities=xp.astype(problem.probabilities, acc), weight=None)
        targets = dense_coefficients(widened)
    if problem.weight is None:
        terms = _divergence_terms(targets, log_p, xp)
        divergence = xp.sum(terms, axis=-1, keepdims=True) + _mass_defect(problem)
    else:
        divergence = xp.sum(_weighted_terms(targets, log_p, problem.weight, xp), axis=-1, keepdims=True)
    z_rows = None if problem.z_loss == 0.0 else z_loss_rows(problem, rows.shift, rows.log_sum)
    return finish_rows(problem, divergence), z_rows


@with_options()
def kl_divergence(logits: ArrayT, targets: Array, /, **options: Unpack[LossOptions]) -> ArrayT:
    if wants_torch_autograd(logits, (targets, *options.values())):
        from . import _torch_autograd

        values = complete_options(options)
        return _torch_autograd.loss(logits, targets, values, _evaluation, _torch_autograd.INPUTS, per_row=True)
    problem = prepare(logits, targets, **options)
    divergence, z_rows = _per_sample(problem)
    return reduce(problem, divergence, z_rows=z_rows)


def _evaluation(logits: Any, targets: Any, options: dict[str, Any], with_grad: bool) -> tuple[Any, Any]:
    """The divergence and, with ``with_grad``, its gradient: the cross-entropy's (``H(q')`` has none)."""
    problem = prepare(logits, targets, **options)
    divergence, z_rows = _per_sample(problem)
    divergence = reduce(problem, divergence, z_rows=z_rows)
    return divergence, solve(problem, with_grad=True)[1] if with_grad else None


kl_divergence.__doc__ = loss_doc(
    r"""Kullback-Leibler divergence from the smoothed targets to ``softmax(logits)``.

    .. math::

        \mathrm{KL}(q' \,\|\, p) = \sum_k q'_k \log \frac{q'_k}{p_k}
            = H(q', p) - H(q'), \qquad q' = (1 - \varepsilon)\, q + \varepsilon\, u

    (Kullback and Leibler 1951; Szegedy et al. 2016, section 7, for ``q'``). It differs
    from :func:`cross_entropy` by the entropy ``H(q')`` of the targets, a constant of the
    logits: the two have the same gradient, :func:`cross_entropy_grad`, but the
    divergence is 0 at the optimum ``p = q'``, which makes it the readable number to
    log. Same options and reductions as :func:`cross_entropy`.

    It is not evaluated as the difference ``H(q', p) - H(q')``, which loses every digit
    near the optimum, but as a sum of non-negative terms: with ``r_k = log q'_k - log p_k``,

    .. math::

        \mathrm{KL}(q' \,\|\, p) = \sum_{k:\, q'_k > 0} q'_k \left(r_k + \operatorname{expm1}(-r_k)\right)
            + \sum_{k:\, q'_k = 0} p_k \; + \; \Big(\sum_k q'_k - 1\Big),

    exact because ``sum_k q'_k expm1(-r_k) = sum_{q'_k > 0} (p_k - q'_k)``. The last bracket
    is 0 unless probability targets or an array prior do not sum to exactly 1 (it is
    formed from their own sums). ``r + expm1(-r) = r^2/2 + O(r^3)`` keeps its relative
    precision, so the divergence is never negative for normalised targets, and its error
    is set by the rounding of ``r_k`` alone (one rounding each of ``log q'_k``,
    ``z_k - max z`` and ``log s``): relative ``2 u (|log q'_k| + |z_k - max z|) / |r_k|`` or
    so, ``u`` the unit roundoff, which is the conditioning of the divergence itself near
    ``p = q'``. In float64 that is ``5e-10`` where the logits sit ``1e-6`` from ``log q'``
    and ``1e-11`` at a divergence of ``1e-10`` (the difference ``H(q', p) - H(q')``: ``3e-3``
    and ``2e-6``). Masked classes (``where``) have ``q'_k = p_k = 0`` and contribute nothing.

    With ``weight``, the divergence is the weighted cross-entropy minus the *same-weighted*
    entropy, ``sum_k w_k q'_k log(q'_k / p_k)`` per sample (summed as written: weighted, it
    has no sign), reduced exactly as :func:`cross_entropy` reduces (``"mean"`` over integer
    labels divides by the sum of ``w_{y_i}``), so that its gradient is still
    :func:`cross_entropy_grad` with the same options. Ignored samples contribute 0 and are
    not counted. ``"mean"`` divides by the number of samples (the batch shape's size), so
    for 2-D logits it is PyTorch's ``F.kl_div(F.log_softmax(z, 1), q', reduction="batchmean")``;
    for ``(N, C, d1, ...)`` inputs PyTorch's ``"batchmean"`` divides by ``N`` only, i.e. our
    ``"sum"`` over ``N``.
""",
    LOSS_RETURNS_DOC,
    r"""    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> z = xp.log(xp.asarray([[0.1, 0.1, 0.1, 0.36, 0.34]]))
    >>> round(float(ls.kl_divergence(z, xp.asarray([3]))), 12)  # = -log 0.36: H(q) = 0
    1.021651247532
    >>> q = ls.soft_targets(xp.asarray([3]), 5, epsilon=0.1)
    >>> float(ls.kl_divergence(xp.log(q), xp.asarray([3]), epsilon=0.1)) < 1e-15  # p = q'
    True
""",
)
