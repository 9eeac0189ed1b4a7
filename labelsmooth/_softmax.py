"""One-hot encoding, log-sum-exp, softmax and smoothed targets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

from . import _core
from ._backend import (
    accumulation_dtype,
    compute_dtype,
    device_of,
    namespace_of,
    values_checkable,
)
from ._problem import prior_rows, validate_prior_values
from ._validation import (
    check_bool,
    check_epsilon,
    check_num_classes,
    check_prior_kind,
    epsilon_out_of_range,
    first_value,
    label_masks,
    normalize_axis,
    require_array,
    require_integer,
    require_real_floating,
    safe_indices,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .typing import ArrayT, Prior

__all__ = ["log_softmax", "logsumexp", "one_hot", "smooth_labels", "soft_targets", "softmax"]


def _default_float(xp: Any, like: Any) -> Any:
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        return info().default_dtypes(device=device_of(like))["real floating"]
    return xp.float64


def _resolve_float_dtype(xp: Any, dtype: Any, like: Any) -> Any:
    if dtype is None:
        return _default_float(xp, like)
    try:
        # Strings are refused everywhere, though some libraries would take "float32".
        floating = not isinstance(dtype, str) and xp.isdtype(dtype, "real floating")
    except (TypeError, ValueError, AttributeError):
        floating = False
    if not floating:
        msg = (
            f"dtype must be a real floating dtype of the array's namespace (such as xp.float32) or None, got {dtype!r}"
        )
        raise TypeError(msg)
    return dtype


# NumPy arrays are generic in their dtype, which one_hot and soft_targets change (integer
# labels in, floating rows out): NumPy labels get NumPy floating rows, float64 by default;
# other arrays (torch.Tensor, jax.Array) keep their type.
@overload
def one_hot(
    labels: np.ndarray[Any, Any], /, num_classes: int, *, dtype: None = None, axis: int = -1, xp: Any = None
) -> npt.NDArray[np.float64]: ...
@overload
def one_hot(
    labels: np.ndarray[Any, Any], /, num_classes: int, *, dtype: Any, axis: int = -1, xp: Any = None
) -> npt.NDArray[np.floating[Any]]: ...
@overload
def one_hot(labels: ArrayT, /, num_classes: int, *, dtype: Any = None, axis: int = -1, xp: Any = None) -> ArrayT: ...
def one_hot(labels: Any, /, num_classes: int, *, dtype: Any = None, axis: int = -1, xp: Any = None) -> Any:
    r"""One-hot encode integer labels.

    .. math:: q_{\ldots k \ldots} = [\,k = y_{\ldots}\,], \qquad k = 0, \ldots, K-1

    Parameters
    ----------
    labels : array of integers, any shape
        Class indices in ``[0, num_classes)``.
    num_classes : int
        ``K``, the size of the new class axis.
    dtype : floating dtype, optional
        Result dtype; the namespace's default floating dtype when None.
    axis : int, default -1
        Position of the new class axis in the result.
    xp : array namespace, optional
        Inferred from ``labels`` when None.

    Returns
    -------
    array
        Shape of ``labels`` with a class axis of size ``K`` inserted at ``axis``.

    Raises
    ------
    TypeError
        If ``labels`` is not an integer array or ``dtype`` is not floating.
    ValueError
        If a label lies outside ``[0, num_classes)`` (eager backends). Under ``jax.jit``
        and on lazy Dask arrays the rows of such labels are NaN instead.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> ls.one_hot(xp.asarray([2, 0]), 3)
    Array([[0., 0., 1.],
           [1., 0., 0.]], dtype=array_api_strict.float64)
    """
    require_array("labels", labels)
    xp = namespace_of(labels, xp=xp)
    require_integer("labels", labels, xp)
    num_classes = check_num_classes(num_classes)
    dtype = _resolve_float_dtype(xp, dtype, labels)
    axis = normalize_axis(axis, labels.ndim + 1)
    comparable, in_range, _ = label_masks(labels, num_classes, None, xp)
    if values_checkable(labels) and not bool(xp.all(in_range)):
        bad = first_value(comparable, xp.logical_not(in_range), xp)
        msg = f"labels must be in [0, {num_classes}) for num_classes={num_classes}, got a label of {bad}"
        raise ValueError(msg)
    indices = safe_indices(comparable, in_range, xp)
    classes = xp.arange(num_classes, dtype=indices.dtype, device=device_of(labels))
    encoded = xp.astype(indices[..., None] == classes, dtype)
    if not values_checkable(labels):
        encoded = xp.where(in_range[..., None], encoded, float("nan"))
    if axis != labels.ndim:
        encoded = xp.moveaxis(encoded, -1, axis)
    return encoded


def _require_classes(name: str, x: Any, axis: Any) -> int:
    """The normalised class axis of ``x``, which must exist and hold at least one class."""
    if x.ndim == 0:
        msg = f"{name} must have at least one dimension (the class axis), got a 0-d array"
        raise ValueError(msg)
    axis = normalize_axis(axis, x.ndim)
    if x.shape[axis] == 0:
        msg = f"{name} must have at least one class along axis {axis}, got shape {tuple(x.shape)}"
        raise ValueError(msg)
    return axis


def _prepare_rows(x: Any, axis: Any, xp: Any, name: str = "x") -> tuple[Any, int, Any, Any]:
    require_real_floating(name, x, xp)
    axis = _require_classes(name, x, axis)
    work = compute_dtype(xp, x.dtype)
    z = xp.astype(x, work, copy=False)
    if axis != x.ndim - 1:
        z = xp.moveaxis(z, axis, -1)
    return z, axis, work, accumulation_dtype(xp, work, x)


def _restore_axis(y: Any, axis: int, ndim: int, xp: Any) -> Any:
    return y if axis == ndim - 1 else xp.moveaxis(y, -1, axis)


def logsumexp(x: ArrayT, /, *, axis: int = -1, keepdims: bool = False, xp: Any = None) -> ArrayT:
    r"""Log of the sum of exponentials along ``axis``, without overflow.

    .. math:: \operatorname{lse}(x) = m + \log \sum_k e^{x_k - m}, \qquad m = \max_k x_k

    The sum is evaluated as ``log1p`` of the terms below the maximum, so a row dominated by
    one entry keeps full relative precision. A row of all ``-inf`` gives ``-inf``;
    ``+inf`` gives ``+inf``; NaN propagates.

    Parameters
    ----------
    x : array of real floating dtype
    axis : int, default -1
    keepdims : bool, default False
    xp : array namespace, optional

    Returns
    -------
    array
        Same dtype as ``x`` (float16/bfloat16 are computed in float32 and cast back).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> float(ls.logsumexp(xp.asarray([1000.0, 1000.0])))  # 1000 + log 2
    1000.6931471805599
    """
    require_array("x", x)
    xp = namespace_of(x, xp=xp)
    keepdims = check_bool("keepdims", keepdims)
    z, axis, _, acc = _prepare_rows(x, axis, xp)
    rows = _core.row_softmax(z, None, xp, acc)
    shift = xp.astype(rows.shift, acc)
    # Rows without a finite maximum: -inf for all -inf, +inf beside +inf, NaN with NaN.
    lse = xp.where(xp.isfinite(shift), shift + rows.log_sum, shift)
    lse = xp.astype(lse, x.dtype)
    if keepdims:
        return _restore_axis(lse, axis, x.ndim, xp)
    return lse[..., 0]


def log_softmax(x: ArrayT, /, *, axis: int = -1, xp: Any = None) -> ArrayT:
    r"""Logarithm of the softmax along ``axis``: :math:`x_k - \operatorname{lse}(x)`.

    Computed as ``(x_k - m) - log(sum exp(x - m))`` so that no large numbers are
    subtracted. A ``-inf`` entry next to finite ones gives ``-inf``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> ls.log_softmax(xp.asarray([0.0, 0.0]))
    Array([-0.69314718, -0.69314718], dtype=array_api_strict.float64)
    """
    require_array("x", x)
    xp = namespace_of(x, xp=xp)
    z, axis, work, acc = _prepare_rows(x, axis, xp)
    rows = _core.row_softmax(z, None, xp, acc)
    # An all -inf row would give -inf - (-inf): make it NaN without an invalid warning.
    log_sum = xp.where(rows.log_sum == -float("inf"), float("nan"), rows.log_sum)
    out = rows.shifted - xp.astype(log_sum, work)
    return _restore_axis(xp.astype(out, x.dtype), axis, x.ndim, xp)


def softmax(x: ArrayT, /, *, axis: int = -1, xp: Any = None) -> ArrayT:
    r"""Softmax along ``axis``: :math:`p_k = e^{x_k - m} / \sum_j e^{x_j - m}`.

    A ``-inf`` entry next to finite ones gets probability exactly 0; a row of all
    ``-inf`` is NaN (0/0); NaN propagates to its row.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> ls.softmax(xp.asarray([0.0, float("-inf")]))
    Array([1., 0.], dtype=array_api_strict.float64)
    """
    require_array("x", x)
    xp = namespace_of(x, xp=xp)
    z, axis, work, acc = _prepare_rows(x, axis, xp)
    rows = _core.row_softmax(z, None, xp, acc)
    # An all -inf row has s = 0: its softmax is 0/0 = NaN, without a divide warning.
    empty = rows.sum_exp == 0.0
    inverse = xp.astype(xp.where(empty, float("nan"), 1.0 / xp.where(empty, 1.0, rows.sum_exp)), work)
    out = rows.exp_shifted * inverse
    return _restore_axis(xp.astype(out, x.dtype), axis, x.ndim, xp)


def smooth_labels(targets: ArrayT, /, epsilon: Any, *, prior: Prior = None, axis: int = -1, xp: Any = None) -> ArrayT:
    r"""Smooth one-hot or probability rows: :math:`q' = (1 - \varepsilon)\, q + \varepsilon\, u`.

    ``u`` is the uniform distribution ``1/K`` when ``prior`` is None (PyTorch, optax,
    Keras, TF, timm, Hugging Face); ``(1 - q) / (K - 1)`` for ``prior="others"``
    (fairseq: the true class of a one-hot row keeps exactly ``1 - eps``); or the given
    class prior (non-negative, summing to 1, broadcastable to ``targets``).
    Szegedy et al. (2016), *Rethinking the Inception Architecture*, section 7.

    Parameters
    ----------
    targets : array of real floating dtype
        One-hot or probability rows along ``axis``.
    epsilon : float in [0, 1] or array broadcastable to the batch shape
        Smoothing strength (per sample when an array).
    prior : None, "others" or array
    axis : int, default -1
    xp : array namespace, optional

    Returns
    -------
    array
        Same shape and dtype as ``targets``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> ls.smooth_labels(xp.asarray([0.0, 0.0, 1.0]), 0.1)
    Array([0.03333333, 0.03333333, 0.93333333], dtype=array_api_strict.float64)
    """
    require_array("targets", targets)
    xp = namespace_of(targets, epsilon, prior, xp=xp)
    require_real_floating("targets", targets, xp)
    axis = _require_classes("targets", targets, axis)
    check_prior_kind(prior)
    num_classes = targets.shape[axis]
    batch_shape = tuple(targets.shape[:axis]) + tuple(targets.shape[axis + 1 :])
    epsilon = check_epsilon(epsilon, xp, batch_shape)
    work = compute_dtype(xp, targets.dtype)
    q = xp.moveaxis(xp.astype(targets, work, copy=False), axis, -1)
    smoothed = _smooth_rows(q, epsilon, prior, num_classes, axis, targets.ndim, xp, work)
    return _restore_axis(xp.astype(smoothed, targets.dtype), axis, targets.ndim, xp)


def _epsilon_column(epsilon: Any, xp: Any, work: Any) -> Any:
    if isinstance(epsilon, float):
        return epsilon
    return xp.astype(epsilon, work)[..., None]


def _smooth_rows(q: Any, epsilon: Any, prior: Any, num_classes: int, axis: int, ndim: int, xp: Any, work: Any) -> Any:
    """(1 - eps) q + eps u with the class axis last."""
    eps = _epsilon_column(epsilon, xp, work)
    poison = None
    if not isinstance(eps, float) and not values_checkable(eps):
        poison = epsilon_out_of_range(eps[..., 0], xp)
    if isinstance(prior, str) and num_classes < 2:
        msg = f"prior='others' needs at least 2 classes, got {num_classes}"
        raise ValueError(msg)
    if prior is not None and not isinstance(prior, str):
        require_real_floating("prior", prior, xp)
        prior = prior_rows(prior, axis, ndim, q.shape, xp, work)
        bad_prior = validate_prior_values(prior, xp, -1)
        if bad_prior is not None:
            poison = bad_prior if poison is None else poison | bad_prior
    smoothed = _core.smoothed_rows(q, eps, prior, None, num_classes, xp)
    if poison is not None:
        smoothed = xp.where(poison[..., None], float("nan"), smoothed)
    return smoothed


@overload
def soft_targets(
    labels: np.ndarray[Any, Any],
    /,
    num_classes: int,
    *,
    epsilon: Any = 0.0,
    prior: Prior = None,
    dtype: None = None,
    axis: int = -1,
    xp: Any = None,
) -> npt.NDArray[np.float64]: ...
@overload
def soft_targets(
    labels: np.ndarray[Any, Any],
    /,
    num_classes: int,
    *,
    epsilon: Any = 0.0,
    prior: Prior = None,
    dtype: Any,
    axis: int = -1,
    xp: Any = None,
) -> npt.NDArray[np.floating[Any]]: ...
@overload
def soft_targets(
    labels: ArrayT,
    /,
    num_classes: int,
    *,
    epsilon: Any = 0.0,
    prior: Prior = None,
    dtype: Any = None,
    axis: int = -1,
    xp: Any = None,
) -> ArrayT: ...
def soft_targets(
    labels: Any,
    /,
    num_classes: int,
    *,
    epsilon: Any = 0.0,
    prior: Prior = None,
    dtype: Any = None,
    axis: int = -1,
    xp: Any = None,
) -> Any:
    r"""Smoothed target rows :math:`q' = (1-\varepsilon)\,\mathrm{onehot}(y) + \varepsilon u` from integer labels.

    Equivalent to ``smooth_labels(one_hot(labels, num_classes), epsilon, prior=prior)``;
    see :func:`smooth_labels` for ``prior`` and :func:`one_hot` for ``dtype`` and ``axis``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> ls.soft_targets(xp.asarray([1]), 3, epsilon=0.3, prior="others")
    Array([[0.15, 0.7 , 0.15]], dtype=array_api_strict.float64)
    """
    require_array("labels", labels)
    xp = namespace_of(labels, epsilon, prior, xp=xp)
    require_integer("labels", labels, xp)
    num_classes = check_num_classes(num_classes)
    check_prior_kind(prior)
    epsilon = check_epsilon(epsilon, xp, tuple(labels.shape))
    dtype = _resolve_float_dtype(xp, dtype, labels)
    axis = normalize_axis(axis, labels.ndim + 1)
    q = one_hot(labels, num_classes, dtype=compute_dtype(xp, dtype), xp=xp)
    smoothed = _smooth_rows(q, epsilon, prior, num_classes, axis, labels.ndim + 1, xp, q.dtype)
    return _restore_axis(xp.astype(smoothed, dtype), axis, labels.ndim + 1, xp)
