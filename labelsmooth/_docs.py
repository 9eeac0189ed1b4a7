"""Shared docstring sections of the smoothed losses."""

from __future__ import annotations

__all__ = ["LOSS_RETURNS_DOC", "OPTIONS_DOC", "RAISES_DOC", "XP_DOC", "loss_doc"]

# The sections' bodies: :func:`loss_doc` writes their headers.
XP_DOC = r"""    xp : array namespace, optional
        Inferred from the array arguments when None.
"""

OPTIONS_DOC = (
    r"""    logits : array of real floating dtype
        Unnormalised log-probabilities ``z``; the class axis is ``axis``.
    targets : array
        Integer class labels with the shape of ``logits`` without ``axis``, or probability
        rows (real floating, same shape and dtype as ``logits``), which are then smoothed
        as PyTorch does.
    epsilon : float in [0, 1] or array broadcastable to the batch shape, default 0.0
        Smoothing strength; an array gives per-sample smoothing.
    prior : None, "others" or array, default None
        Smoothing distribution ``u``: uniform ``1/K`` (PyTorch, optax, Keras, TF, timm,
        Hugging Face); ``"others"``: ``(1 - q)/(K - 1)``, the true class keeps exactly
        ``1 - eps`` (fairseq); or a class prior of shape ``(K,)`` (or broadcastable to
        ``logits``), non-negative and summing to 1.
    axis : int, default -1
        Class axis (``axis=1`` for PyTorch's ``(N, C, d1, ...)`` layout).
    weight : array of shape (K,), optional
        Per-class weights with PyTorch's exact semantics: for labels, the per-sample loss
        is ``(1-eps) w_y (-log p_y) + eps sum_k u_k w_k (-log p_k)`` and ``"mean"`` divides
        by ``sum_i w_{y_i}`` over counted samples; for probability targets the loss is
        ``-sum_k w_k q'_k log p_k`` and ``"mean"`` divides by the number of samples.
    ignore_index : int, optional
        Label value whose samples contribute nothing and are not counted by ``"mean"``
        (integer targets only). All samples ignored with ``"mean"`` gives NaN, as PyTorch.
    where : boolean array broadcastable to ``logits``, optional
        Classes where False are excluded from the softmax, receive no smoothing mass (``K``
        counts the allowed classes of each row) and get zero gradient; they may hold
        ``-inf`` logits.
    reduction : {"mean", "sum", "none"}, default "mean"
    sample_weight : array broadcastable to the batch shape, optional
        Keras' per-sample weights, finite and non-negative: each sample's loss (and
        gradient) is multiplied by its weight; ``"mean"`` still divides by PyTorch's
        normaliser (the number of samples, or the summed class weights of the counted
        ones), which is Keras' ``"sum_over_batch_size"`` when there are no class weights.
    z_loss : float, default 0.0
        Adds ``z_loss * lse_i^2`` to each counted sample's loss, ``lse_i`` the log-sum-exp
        of its (capped) logits (PaLM's and T5X's ``z_loss``, Liger's ``lse_square_scale``);
        the gradient gains ``2 z_loss lse_i p_i``. ``"mean"`` divides the z-loss terms by
        the number of counted samples, without class weights (as Liger), so with class
        weights they are not scaled by ``w_y``; sample weights scale them as the loss.
    softcap : float, optional
        A positive ``c`` replaces the logits by ``c * tanh(z / c)`` before everything else
        (Gemma 2, Liger's ``softcap``); the gradient includes the chain rule
        ``sech^2(z / c)``. A ``-inf`` logit becomes ``-c``.
"""
    + XP_DOC
)

RAISES_DOC = r"""    TypeError
        Integer/boolean/complex ``logits``, targets of another dtype, arrays of different
        libraries, options of the wrong type.
    ValueError
        Shape mismatches, labels out of range or on masked classes, ``epsilon`` outside
        [0, 1], an invalid prior, ``weight`` of the wrong length, an unknown ``reduction``,
        ``ignore_index`` with probability targets, a negative or non-finite
        ``sample_weight``, ``z_loss`` or ``softcap`` negative or not finite. Under ``jax.jit`` and on lazy Dask
        arrays, invalid values cannot be seen: the affected results are NaN instead.
"""


LOSS_RETURNS_DOC = r"""    array
        Scalar for ``"mean"``/``"sum"``, batch-shaped for ``"none"``; dtype of ``logits``.
"""


def loss_doc(
    summary: str, returns: str, examples: str = "", *, parameters: str = OPTIONS_DOC, raises: str = RAISES_DOC
) -> str:
    """A loss's numpydoc docstring: its summary, the shared sections, its returns and examples.

    Every part is written as it stands in a function body (four spaces of indentation).
    """
    doc = summary + "\n    Parameters\n    ----------\n" + parameters
    doc += "\n    Returns\n    -------\n" + returns + "\n    Raises\n    ------\n" + raises
    return doc + ("\n    Examples\n    --------\n" + examples if examples else "")
