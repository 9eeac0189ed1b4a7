"""The smoothed cross-entropy of a linear layer's logits, one block of rows at a time.

``logits = hidden @ classifier.T + bias`` is never formed whole: each block of
``chunk_size`` rows has its logits computed, is prepared and solved as a problem of its own
(``_problem.prepare``, ``_assembly.solve``: the very loss of :func:`labelsmooth.cross_entropy`)
with the normalisers of ``"mean"`` of the whole batch, and its logits' gradient is turned
into the gradients of the three inputs before the next block is computed:

- ``grad_hidden[block] = grad_logits @ classifier``,
- ``grad_classifier += grad_logits.T @ hidden[block]``,
- ``grad_bias += sum(grad_logits, axis=0)``.

On NumPy arrays and on tensors that autograd does not record, the work is done in place:
every block's logits are computed into one buffer, the kernel writes their gradient over
them, and the classifier's gradient is accumulated in place (a ``(K, d)`` temporary per
block would be as large as the gradient itself). Elsewhere (JAX, Dask, array-api-strict,
recorded tensors) each block's logits, gradient and sums are new arrays, and the default
block is half as large.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import is_dask_array, is_numpy_array, is_torch_array

from ._assembly import solve
from ._backend import (
    accumulation_dtype,
    compute_dtype,
    device_of,
    is_jax_tracer,
    namespace_of,
    wants_torch_autograd,
)
from ._problem import complete_options, prepare, with_options
from ._validation import (
    check_broadcastable,
    check_epsilon,
    check_positive_int,
    check_reduction,
    dtype_name,
    label_masks,
    require_array,
    require_real_floating,
    safe_indices,
)

__all__ = [
    "default_chunk_size",
    "evaluate",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "mean_denominators",
]

# The default block holds at most 1/(_FRACTION * copies) of the logits, where a block's
# work keeps `copies` arrays of its size alive (in place: its logits, 1; elsewhere their
# gradient too, 2; under jax.jit its logits and the kernel's temporaries for an eighth of
# it, about 1.6 blocks in XLA's memory analysis, 2), and at most _MAX_BLOCK_BYTES; logits
# of at most _SINGLE_BLOCK_BYTES are one block (no memory to save there). Larger blocks
# make the products faster (at 1024 x 256 x 128000, 32 -> 64 rows a block: 559 -> 471 ms
# for the logits' product on torch).
_FRACTION = 16
_MAX_BLOCK_BYTES = 32 << 20
_SINGLE_BLOCK_BYTES = 1 << 20
# Classes of the classifier's gradient accumulated at a time on NumPy (a temporary of
# _CLASS_SLICE x d instead of K x d).
_CLASS_SLICE = 2048
# Under jax.jit, a block's kernel runs on at most this many parts of it in turn.
_PARTS = 8


def default_chunk_size(num_rows: int, num_classes: int, itemsize: int, copies: int = 1) -> int:
    """Rows per block: at most ``1/(16 copies)`` of the logits and 32 MiB of them.

    ``copies``: the arrays of a block's size its work keeps alive. Logits of at most
    1 MiB in all are one block.
    """
    row_bytes = max(1, num_classes) * itemsize
    if num_rows * row_bytes <= _SINGLE_BLOCK_BYTES:
        return max(1, num_rows)
    return max(1, min(num_rows // (_FRACTION * copies), _MAX_BLOCK_BYTES // row_bytes))


@dataclass
class _Plan:
    """The flattened inputs (rows first), their options and the blocks' shared normalisers."""

    xp: Any
    hidden: Any  # (N, d)
    classifier: Any  # (K, d)
    bias: Any  # (K,) or None
    targets: Any  # (N,) integer
    batch_shape: tuple
    epsilon: Any  # float or (N,) array
    prior: Any  # None, "others", (K,) array or (N, K) array
    options: dict  # weight, ignore_index, reduction, z_loss, softcap
    chunk: int
    acc: Any
    denominators: Any  # (loss, z) normalisers of "mean", or None
    in_place: str | None  # "numpy", "torch" (tensors autograd does not record) or None


def mean_denominators(targets: Any, weight: Any, ignore_index: int | None, num_classes: int, xp: Any, acc: Any) -> Any:
    """The normalisers of ``"mean"`` from the labels alone: ``(sum of w_y, count)`` over counted rows.

    The first divides the cross-entropy (PyTorch's: the summed class weights of the
    non-ignored rows, their number without class weights), the second the z-loss (the
    number of non-ignored rows). Python floats where the shape decides them.
    """
    num_rows = 1
    for size in targets.shape:
        num_rows *= size
    labels, in_range, ignored = label_masks(targets, num_classes, ignore_index, xp)
    count: Any = float(num_rows)
    if ignored is not None:
        count = xp.sum(xp.astype(xp.logical_not(ignored), acc))
    if weight is None:
        return count, count
    label_weight = xp.astype(xp.take(weight, xp.reshape(safe_indices(labels, in_range, xp), (-1,))), acc)
    if ignored is not None:
        label_weight = xp.where(xp.reshape(ignored, (-1,)), 0.0, label_weight)
    return xp.sum(label_weight), count


def _check_arrays(hidden: Any, classifier: Any, targets: Any, bias: Any, xp: Any) -> None:
    require_real_floating("hidden", hidden, xp)
    require_real_floating("classifier", classifier, xp)
    require_array("targets", targets)
    if hidden.ndim < 1:
        msg = "hidden must have at least one dimension (the features, last), got a 0-d array"
        raise ValueError(msg)
    if classifier.ndim != 2:
        msg = f"classifier must have shape (K, d) (an nn.Linear weight), got shape {tuple(classifier.shape)}"
        raise ValueError(msg)
    if classifier.dtype != hidden.dtype:
        expected, got = dtype_name(hidden.dtype), dtype_name(classifier.dtype)
        msg = f"classifier must have hidden's dtype {expected}, got dtype {got}"
        raise TypeError(msg)
    if hidden.shape[-1] != classifier.shape[1]:
        msg = (
            f"hidden's last dimension must be the classifier's d = {classifier.shape[1]} "
            f"(classifier of shape {tuple(classifier.shape)}), got hidden of shape {tuple(hidden.shape)}"
        )
        raise ValueError(msg)
    if not xp.isdtype(targets.dtype, "integral"):
        msg = f"targets must be integer class labels, got dtype {dtype_name(targets.dtype)}"
        raise TypeError(msg)
    if tuple(targets.shape) != tuple(hidden.shape[:-1]):
        msg = (
            f"targets must have hidden's shape without its last dimension, {tuple(hidden.shape[:-1])}, "
            f"got shape {tuple(targets.shape)}"
        )
        raise ValueError(msg)
    if bias is not None:
        require_real_floating("bias", bias, xp)
        if tuple(bias.shape) != (classifier.shape[0],):
            msg = f"bias must have shape ({classifier.shape[0]},) (one value per class), got shape {tuple(bias.shape)}"
            raise ValueError(msg)
        if bias.dtype != hidden.dtype:
            msg = f"bias must have hidden's dtype {dtype_name(hidden.dtype)}, got dtype {dtype_name(bias.dtype)}"
            raise TypeError(msg)


def _rows(value: Any, batch_shape: tuple, num_rows: int, xp: Any) -> Any:
    """An option broadcastable to the batch shape as one value per row, ``(N,)``."""
    return xp.reshape(xp.broadcast_to(value, batch_shape), (num_rows,))


def _row_prior(prior: Any, batch_shape: tuple, num_rows: int, num_classes: int, xp: Any) -> Any:
    """A class prior as ``(K,)`` or as one row per sample ``(N, K)``."""
    if prior is None or isinstance(prior, str) or prior.ndim <= 1:
        return prior
    full = (*batch_shape, num_classes)
    check_broadcastable("prior", tuple(prior.shape), full, "the logits' shape")
    return xp.reshape(xp.broadcast_to(prior, full), (num_rows, num_classes))


def _plan(hidden: Any, classifier: Any, targets: Any, options: dict) -> _Plan:
    """Check the arguments and lay them out rows first (``options``: the keyword arguments)."""
    bias, epsilon, prior = options.pop("bias"), options.pop("epsilon"), options.pop("prior")
    chunk_size = options.pop("chunk_size")
    arrays = [a for a in (bias, epsilon, prior, options["weight"]) if not isinstance(a, (float, int, str, type(None)))]
    xp = namespace_of(hidden, classifier, targets, *arrays, xp=options.pop("xp"))
    _check_arrays(hidden, classifier, targets, bias, xp)
    check_reduction(options["reduction"])
    batch_shape = tuple(hidden.shape[:-1])
    num_rows = 1
    for size in batch_shape:
        num_rows *= size
    num_classes, features = classifier.shape
    epsilon = check_epsilon(epsilon, xp, batch_shape)
    if not isinstance(epsilon, float):
        epsilon = _rows(epsilon, batch_shape, num_rows, xp)
    in_place = _in_place(hidden, classifier, bias)
    if chunk_size is None:
        itemsize = xp.finfo(compute_dtype(xp, hidden.dtype)).bits // 8
        chunk = default_chunk_size(num_rows, num_classes, itemsize, 1 if in_place is not None else 2)
    else:
        chunk = check_positive_int("chunk_size", chunk_size)
    hidden, targets = xp.reshape(hidden, (num_rows, features)), xp.reshape(targets, (num_rows,))
    if is_dask_array(hidden):
        # One Dask chunk per block: the block slices are then whole chunks.
        hidden, targets = hidden.rechunk((chunk, -1)), targets.rechunk((chunk,))
    acc = accumulation_dtype(xp, compute_dtype(xp, hidden.dtype), hidden)
    denominators = None
    if options["reduction"] == "mean":
        denominators = mean_denominators(targets, options["weight"], options["ignore_index"], num_classes, xp, acc)
    return _Plan(
        xp=xp,
        hidden=hidden,
        classifier=classifier,
        bias=bias,
        targets=targets,
        batch_shape=batch_shape,
        epsilon=epsilon,
        prior=_row_prior(prior, batch_shape, num_rows, num_classes, xp),
        options=options,
        chunk=chunk,
        acc=acc,
        denominators=denominators,
        in_place=in_place,
    )


def _in_place(hidden: Any, classifier: Any, bias: Any) -> str | None:
    """``"numpy"`` or ``"torch"`` where the blocks can be worked on in place, else None."""
    if is_numpy_array(hidden):
        return "numpy"
    if is_torch_array(hidden) and not wants_torch_autograd(hidden, (classifier, bias)):
        return "torch"
    return None


def _block_logits(plan: _Plan, hidden: Any, buffer: Any) -> Any:
    """``hidden @ classifier.T + bias``, into ``buffer``'s first rows where there is one."""
    xp = plan.xp
    if buffer is None:
        logits = xp.matmul(hidden, plan.classifier.T)
    else:
        logits = buffer[: hidden.shape[0], ...]
        if plan.in_place == "numpy":
            np.matmul(hidden, plan.classifier.T, out=logits)
        else:
            sys.modules["torch"].matmul(hidden, plan.classifier.T, out=logits)
    if plan.bias is not None:
        # In place where the library has it (NumPy, torch): no second block of logits.
        logits += plan.bias
    return logits


def _row_options(plan: _Plan, row_cotangent: Any) -> dict:
    """The per-row arrays of the problem, ``(N, ...)`` (None where an option is not per row)."""
    prior = plan.prior
    per_row_prior = prior is not None and not isinstance(prior, str) and prior.ndim == 2
    return {
        "hidden": plan.hidden,
        "targets": plan.targets,
        "epsilon": None if isinstance(plan.epsilon, float) else plan.epsilon,
        "prior": prior if per_row_prior else None,
        "cotangent": row_cotangent,
    }


def _rows_of(rows: dict, start: int, stop: int) -> dict:
    return {name: None if value is None else value[start:stop, ...] for name, value in rows.items()}


def _solve_block(plan: _Plan, rows: dict, with_grad: bool, buffer: Any) -> tuple[Any, Any]:
    """``(loss, grad_logits)`` of one block of rows (``_row_options`` sliced; the gradient over ``buffer``)."""
    return _solve_logits(plan, _block_logits(plan, rows["hidden"], buffer), rows, with_grad, buffer is not None)


def _solve_logits(plan: _Plan, logits: Any, rows: dict, with_grad: bool, overwrite: bool) -> tuple[Any, Any]:
    """``(loss, grad_logits)`` of a block's logits (the gradient over them when ``overwrite``)."""
    epsilon = plan.epsilon if rows["epsilon"] is None else rows["epsilon"]
    prior = plan.prior if rows["prior"] is None else rows["prior"]
    problem = prepare(logits, rows["targets"], epsilon=epsilon, prior=prior, **plan.options, xp=plan.xp)
    loss, grad = solve(problem, with_grad=with_grad, denominators=plan.denominators, overwrite_logits=overwrite)
    if rows["cotangent"] is not None and overwrite:
        grad *= rows["cotangent"]
    elif rows["cotangent"] is not None:
        grad = grad * rows["cotangent"]
    return loss, grad


def _solve_in_parts(plan: _Plan, rows: dict, with_grad: bool) -> tuple[Any, Any]:
    """``_solve_block`` of traced JAX arrays, the kernel run on a few parts of the block in turn.

    Each part's gradient is written over its logits (XLA updates the loop's carry in place),
    so a block costs its logits and the kernel's temporaries of one part (XLA keeps about
    five arrays of the part's size): blocks can be long enough for fast products.
    """
    lax = sys.modules["jax"].lax
    logits = _block_logits(plan, rows["hidden"], None)
    num_rows = logits.shape[0]
    parts = max(p for p in range(1, min(_PARTS, num_rows) + 1) if num_rows % p == 0)
    if parts == 1:
        return _solve_logits(plan, logits, rows, with_grad, False)
    size = num_rows // parts
    row_values = {name: value for name, value in rows.items() if name != "hidden"}
    none = plan.options["reduction"] == "none"

    def part(index: Any, state: tuple) -> tuple:
        logits, total = state
        first = index * size
        sub = {k: None if v is None else lax.dynamic_slice_in_dim(v, first, size, 0) for k, v in row_values.items()}
        loss, grad = _solve_logits(plan, lax.dynamic_slice_in_dim(logits, first, size, 0), sub, with_grad, False)
        if with_grad:
            logits = lax.dynamic_update_slice_in_dim(logits, grad, first, 0)
        if none:
            return logits, lax.dynamic_update_slice_in_dim(total, loss, first, 0)
        return logits, total + plan.xp.astype(loss, plan.acc)

    xp = plan.xp
    total = xp.zeros((num_rows,), dtype=plan.hidden.dtype) if none else xp.zeros((), dtype=plan.acc)
    grad, loss = lax.fori_loop(0, parts, part, (logits, total))
    return loss, grad if with_grad else None


def _scan_blocks(plan: _Plan, sums: _Sums, rows: dict, count: int) -> None:
    """The first ``count`` blocks as one ``jax.lax.scan`` into ``sums`` (traced JAX arrays).

    Unrolled, XLA keeps every block's temporaries alive at once (4.6 GB beside 0.5 GB of
    logits at 1024 x 256 x 128000); a scan compiles one block and reuses its buffers, and
    each block runs the kernel a part at a time (``_solve_in_parts``).
    """
    xp, chunk = plan.xp, plan.chunk
    stacked = {
        name: None if value is None else xp.reshape(value[: count * chunk, ...], (count, chunk, *value.shape[1:]))
        for name, value in rows.items()
    }

    def block(carry: tuple, block_rows: dict) -> tuple:
        part = _Sums(plan, sums.with_grad, traced=True)
        part.total, part.grad_classifier, part.grad_bias = carry
        loss, grad = _solve_in_parts(plan, block_rows, sums.with_grad)
        part.add(0, chunk, block_rows["hidden"], loss, grad)
        outputs = (part.losses[0] if part.losses else None, part.grad_hidden[0] if part.with_grad else None)
        return (part.total, part.grad_classifier, part.grad_bias), outputs

    start = (xp.zeros((), dtype=plan.acc), None, None)
    if sums.with_grad:
        grad_bias = None if plan.bias is None else xp.zeros(plan.classifier.shape[:1], dtype=plan.acc)
        start = (start[0], xp.zeros(plan.classifier.shape, dtype=plan.hidden.dtype), grad_bias)
    (total, grad_classifier, grad_bias), (losses, grad_hidden) = sys.modules["jax"].lax.scan(block, start, stacked)
    sums.total, sums.grad_classifier, sums.grad_bias = total, grad_classifier, grad_bias
    if losses is not None:
        sums.losses.append(xp.reshape(losses, (count * chunk,)))
    if grad_hidden is not None:
        sums.grad_hidden.append(xp.reshape(grad_hidden, (count * chunk, plan.hidden.shape[-1])))


def _add_in_class_slices(total: Any, grad: Any, hidden: Any) -> Any:
    """``total + grad.T @ hidden`` on JAX, ``_CLASS_SLICE`` classes at a time.

    XLA updates the slices of the loop's carry in place: no ``(K, d)`` temporary.
    """
    lax = sys.modules["jax"].lax
    num_classes = total.shape[0]
    whole = num_classes // _CLASS_SLICE

    def add_slice(index: Any, total: Any) -> Any:
        first = index * _CLASS_SLICE
        columns = lax.dynamic_slice_in_dim(grad, first, _CLASS_SLICE, axis=1)
        rows = lax.dynamic_slice_in_dim(total, first, _CLASS_SLICE, axis=0)
        return lax.dynamic_update_slice_in_dim(total, rows + columns.T @ hidden, first, axis=0)

    if whole:
        total = lax.fori_loop(0, whole, add_slice, total)
    if whole * _CLASS_SLICE < num_classes:
        first = whole * _CLASS_SLICE
        total = total.at[first:].add(grad[:, first:].T @ hidden)
    return total


class _Sums:
    """The block results added up: the loss (acc dtype, or the rows of ``"none"``) and the gradients."""

    def __init__(self, plan: _Plan, with_grad: bool, traced: bool = False) -> None:
        self.plan = plan
        self.with_grad = with_grad
        self.traced = traced  # traced JAX arrays: the classifier's gradient added in slices
        self.losses: list[Any] = []
        self.total: Any = 0.0
        self.grad_hidden: list[Any] = []
        self.grad_classifier: Any = None
        self.grad_bias: Any = None
        self.in_place = plan.in_place
        if with_grad and self.in_place is not None:
            shape, dtype = plan.hidden.shape, plan.hidden.dtype
            self.grad_hidden_array = plan.xp.empty(shape, dtype=dtype, device=device_of(plan.hidden))

    def add(self, start: int, stop: int, hidden: Any, loss: Any, grad: Any) -> None:
        xp = self.plan.xp
        if self.plan.options["reduction"] == "none":
            self.losses.append(loss)
        else:
            self.total = self.total + xp.astype(loss, self.plan.acc)
        if not self.with_grad:
            return
        if self.in_place is None:
            self.grad_hidden.append(xp.matmul(grad, self.plan.classifier))
        elif self.in_place == "numpy":
            np.matmul(grad, self.plan.classifier, out=self.grad_hidden_array[start:stop, ...])
        else:
            sys.modules["torch"].matmul(grad, self.plan.classifier, out=self.grad_hidden_array[start:stop, ...])
        self._add_classifier(grad, hidden)
        if self.plan.bias is not None:
            # Summed in the gradient's dtype, added in acc: a dtype= sum would cast the block first.
            column_sums = xp.astype(xp.sum(grad, axis=0), self.plan.acc)
            self.grad_bias = column_sums if self.grad_bias is None else self.grad_bias + column_sums

    def _add_classifier(self, grad: Any, hidden: Any) -> None:
        """``grad_classifier += grad.T @ hidden`` (in place: without a K x d temporary)."""
        if self.grad_classifier is None:
            self.grad_classifier = self.plan.xp.matmul(grad.T, hidden)
        elif self.traced:
            self.grad_classifier = _add_in_class_slices(self.grad_classifier, grad, hidden)
        elif self.in_place == "torch":
            self.grad_classifier.addmm_(grad.T, hidden)
        elif self.in_place == "numpy":
            out = self.grad_classifier
            scratch = np.empty((min(_CLASS_SLICE, out.shape[0]), out.shape[1]), out.dtype)
            for first in range(0, out.shape[0], _CLASS_SLICE):
                last = min(first + _CLASS_SLICE, out.shape[0])
                part = np.matmul(grad[:, first:last].T, hidden, out=scratch[: last - first])
                out[first:last] += part
        else:
            self.grad_classifier = self.grad_classifier + self.plan.xp.matmul(grad.T, hidden)

    def result(self) -> tuple[Any, Any]:
        plan, xp = self.plan, self.plan.xp
        if plan.options["reduction"] == "none":
            loss = xp.reshape(xp.concat(self.losses), plan.batch_shape)
        else:
            loss = xp.astype(xp.asarray(self.total), plan.hidden.dtype)
        if not self.with_grad:
            return loss, None
        grad_hidden = self.grad_hidden_array if self.in_place is not None else xp.concat(self.grad_hidden)
        grad_hidden = xp.reshape(grad_hidden, (*plan.batch_shape, plan.hidden.shape[-1]))
        grad_bias = None if self.grad_bias is None else xp.astype(self.grad_bias, plan.bias.dtype)
        return loss, (grad_hidden, self.grad_classifier, grad_bias)


def evaluate(
    hidden: Any, classifier: Any, targets: Any, options: dict, *, with_grad: bool, row_cotangent: Any = None
) -> tuple[Any, Any]:
    """``(loss, (grad_hidden, grad_classifier, grad_bias) or None)``, ``options`` every keyword argument.

    ``row_cotangent`` (batch-shaped, ``"none"`` only) weighs each row's logits' gradient
    before it reaches the three gradients: they are then those of ``sum(row_cotangent * loss)``.
    """
    plan = _plan(hidden, classifier, targets, dict(options))
    traced = is_jax_tracer(plan.hidden)
    sums = _Sums(plan, with_grad, traced=traced)
    num_rows = plan.hidden.shape[0]
    xp = plan.xp
    if row_cotangent is not None:
        row_cotangent = xp.reshape(xp.astype(row_cotangent, plan.hidden.dtype), (num_rows, 1))
    rows = _row_options(plan, row_cotangent)
    first = 0
    if num_rows // plan.chunk >= 2 and traced:
        first = num_rows // plan.chunk * plan.chunk
        _scan_blocks(plan, sums, rows, num_rows // plan.chunk)
    buffer = None
    if plan.in_place is not None:
        shape = (min(plan.chunk, num_rows), plan.classifier.shape[0])
        buffer = xp.empty(shape, dtype=plan.hidden.dtype, device=device_of(plan.hidden))
    for start in range(first, max(num_rows, 1), plan.chunk):
        stop = min(start + plan.chunk, num_rows)
        block_rows = _rows_of(rows, start, stop)
        if traced:
            loss, grad = _solve_in_parts(plan, block_rows, with_grad)
        else:
            loss, grad = _solve_block(plan, block_rows, with_grad, buffer)
        sums.add(start, stop, block_rows["hidden"], loss, grad)
        # Freed now, not when the next block's gradient replaces it (one block less at the peak).
        del grad
    return sums.result()


_RAISES_DOC = r"""    Raises
    ------
    TypeError
        Non-floating ``hidden``, ``classifier`` or ``bias`` of another dtype than
        ``hidden``, non-integer ``targets``, a ``chunk_size`` that is not an int.
    ValueError
        ``hidden``'s last dimension other than the classifier's ``d``, ``targets`` not of
        the batch shape, ``bias`` not of shape (K,), ``chunk_size < 1``, and every error
        of :func:`labelsmooth.cross_entropy` (labels out of range, ``epsilon`` outside
        [0, 1], ...).
"""

_PARAMETERS_DOC = r"""    Parameters
    ----------
    hidden : array of real floating dtype, shape (..., d)
        The features of every sample, last axis ``d``.
    classifier : array of shape (K, d), the dtype of ``hidden``
        The output layer's weight (``nn.Linear(d, K).weight``).
    targets : array of integer dtype, shape ``hidden.shape[:-1]``
        Class labels.
    bias : array of shape (K,), optional
    epsilon : float in [0, 1] or array broadcastable to the batch shape, default 0.0
        Smoothing strength; an array gives per-sample smoothing.
    prior : None, "others" or array, default None
        Smoothing distribution ``u``: uniform, ``"others"`` (fairseq's ``(1 - q)/(K - 1)``)
        or a class prior of shape (K,) or broadcastable to ``(..., K)``.
    weight : array of shape (K,), optional
        Per-class weights with PyTorch's semantics (``"mean"`` divides by the summed
        ``w_y`` of the counted samples).
    ignore_index : int, optional
        Label whose samples contribute nothing and are not counted by ``"mean"``.
    reduction : {"mean", "sum", "none"}, default "mean"
    z_loss : float, default 0.0
        Coefficient of ``lse(z)^2`` added to each sample's loss (``"mean"`` divides it by
        the number of counted samples).
    softcap : float, optional
        Logits capped as ``softcap * tanh(z / softcap)`` before the loss.
    chunk_size : int, optional
        Rows per block. Default: at most 1/16 of the rows on NumPy and on tensors that
        autograd does not record (1/32 elsewhere) and at most 32 MiB of logits per block
        (logits of at most 1 MiB in all are one block).
    xp : array namespace, optional
        Inferred from the array arguments when None.

"""


def linear_cross_entropy(
    hidden: Any,
    classifier: Any,
    targets: Any,
    /,
    *,
    bias: Any = None,
    epsilon: Any = 0.0,
    prior: Any = None,
    weight: Any = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    xp: Any = None,
) -> Any:
    options = {name: value for name, value in locals().items() if name not in ("hidden", "classifier", "targets")}
    return evaluate(hidden, classifier, targets, options, with_grad=False)[0]


linear_cross_entropy.__doc__ = (
    r"""Smoothed cross-entropy of the logits ``hidden @ classifier.T + bias``, never formed whole.

    .. math::

        z_i = W h_i + b, \qquad
        \ell_i = -\sum_k q'_{ik} \log \operatorname{softmax}(z_i)_k, \qquad
        q'_i = (1 - \varepsilon)\, e_{y_i} + \varepsilon\, u

    (with class weights, PyTorch's ``-sum_k w_k q'_{ik} log p_{ik}``; Szegedy et al. 2016,
    section 7). Equal to :func:`labelsmooth.cross_entropy` of the materialized logits, but
    computed ``chunk_size`` rows at a time: each block's ``(chunk_size, K)`` logits are
    formed, reduced and dropped before the next, so memory beyond the inputs is about two
    blocks of logits instead of the ``(..., K)`` array (and, for the gradients, its
    gradient). float32 inputs keep the row statistics in float64, as the plain loss does.
    The gradients come from :func:`linear_cross_entropy_with_grad`; on torch tensors that
    require grad, autograd of this function records every block (and keeps its logits for
    the backward pass): train with :class:`labelsmooth.torch.LinearCrossEntropyLoss`,
    whose backward is the analytic gradients with no ``N x K`` tensor saved.

"""
    + _PARAMETERS_DOC
    + r"""    Returns
    -------
    array
        Scalar for ``"mean"``/``"sum"``, ``hidden.shape[:-1]`` for ``"none"``; dtype of
        ``hidden``.

"""
    + _RAISES_DOC
    + r"""
    Examples
    --------
    >>> import array_api_strict as xp
    >>> import labelsmooth as ls
    >>> hidden = xp.asarray([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> classifier = xp.asarray([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> y = xp.asarray([0, 1, 2])
    >>> loss = ls.linear_cross_entropy(hidden, classifier, y, epsilon=0.1, chunk_size=2)
    >>> bool(xp.abs(loss - ls.cross_entropy(hidden @ classifier.T, y, epsilon=0.1)) < 1e-15)
    True
    """
)


@with_options(source=linear_cross_entropy)
def linear_cross_entropy_with_grad(
    hidden: Any, classifier: Any, targets: Any, /, **options: Any
) -> tuple[Any, tuple[Any, Any, Any]]:
    loss, grads = evaluate(
        hidden, classifier, targets, complete_options(options, source=linear_cross_entropy), with_grad=True
    )
    return loss, grads


linear_cross_entropy_with_grad.__doc__ = (
    r"""Loss and the gradients of :func:`linear_cross_entropy` with respect to its three inputs.

    .. math::

        \frac{\partial L}{\partial h_i} = W^\top g_i, \qquad
        \frac{\partial L}{\partial W} = \sum_i g_i h_i^\top, \qquad
        \frac{\partial L}{\partial b} = \sum_i g_i, \qquad
        g_i = \frac{\partial L}{\partial z_i} = r_i\,(p_i - q'_i)

    with ``r_i`` the reduction's factor of row ``i`` (``1/normaliser`` for ``"mean"``) and
    PyTorch's weighted ``(sum_k t_k) p - t`` with class weights. Each block's logits'
    gradient ``g`` is turned into its share of the three gradients before the next block
    is computed, so neither the logits nor their gradient is ever held whole.

"""
    + _PARAMETERS_DOC
    + r"""    Returns
    -------
    loss : array
        As :func:`linear_cross_entropy`'s.
    (grad_hidden, grad_classifier, grad_bias) : tuple of arrays
        The gradients of the loss with respect to ``hidden`` (its shape), ``classifier``
        (its shape) and ``bias`` (None without one); for ``"none"`` those of the sum of the
        per-sample losses (each row of ``grad_hidden`` is then its own sample's gradient).
        Of float32 inputs, the classifier's gradient is accumulated in float32 as the
        matrix products give it (as PyTorch's is), the bias's block sums are added in
        float64.

"""
    + _RAISES_DOC
    + r"""
    Examples
    --------
    >>> import numpy as np
    >>> import labelsmooth as ls
    >>> rng = np.random.default_rng(0)
    >>> hidden, classifier = rng.normal(size=(6, 3)), rng.normal(size=(5, 3))
    >>> y = np.array([0, 4, 2, 2, 1, 3])
    >>> loss, (dh, dw, db) = ls.linear_cross_entropy_with_grad(hidden, classifier, y, epsilon=0.1, chunk_size=4)
    >>> dz = ls.cross_entropy_grad(hidden @ classifier.T, y, epsilon=0.1)
    >>> bool(np.allclose(dh, dz @ classifier) and np.allclose(dw, dz.T @ hidden)), db is None
    (True, True)
    """
)
