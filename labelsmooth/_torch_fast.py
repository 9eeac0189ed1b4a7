"""PyTorch CPU tensors through the NumPy fast path, without copies.

A CPU tensor and the NumPy array returned by ``Tensor.numpy()`` share their memory, so a
problem made only of CPU tensors that autograd does not track is evaluated by
``_numpy_fast`` (row-blocked, cache-resident, float64 row sums) on views of the tensors,
and the results are wrapped back with ``torch.from_numpy``. Tensors that require a
gradient (with grad mode on), tensors on other devices and unusual tensors (negative or
conjugate views) take the generic path, which autograd differentiates.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

import array_api_compat.numpy as np_namespace
import numpy as np
from array_api_compat import is_torch_namespace

from . import _numpy_fast
from ._backend import fast_paths_enabled

__all__ = ["eligible", "evaluate"]

_ARRAY_FIELDS = ("logits", "labels", "probabilities", "epsilon", "prior", "weight", "ignored")
_WORK_DTYPES = {"torch.float32": np.float32, "torch.float64": np.float64}


def _tensors(problem: Any) -> list:
    torch = sys.modules["torch"]
    return [value for value in (getattr(problem, name) for name in _ARRAY_FIELDS) if isinstance(value, torch.Tensor)]


def eligible(problem: Any) -> bool:
    """Whether ``problem`` (a validated ``_problem.Problem``) takes the NumPy path on views."""
    if not fast_paths_enabled() or not is_torch_namespace(problem.xp):
        return False
    if problem.allowed is not None or problem.poison is not None:
        return False
    if str(problem.logits.dtype) not in _WORK_DTYPES or problem.logits.numel() == 0:
        return False
    torch = sys.modules["torch"]
    tracking = torch.is_grad_enabled()
    for tensor in _tensors(problem):
        if tensor.device.type != "cpu" or tensor.is_neg() or tensor.is_conj():
            return False
        if tracking and tensor.requires_grad:
            return False
        if type(tensor) is not torch.Tensor:
            return False
    return _numpy_fast.eligible(_numpy_problem(problem))


def _numpy_problem(problem: Any) -> Any:
    """The same problem on NumPy views of the tensors (computed in the working dtype)."""
    torch = sys.modules["torch"]
    views = {}
    for name in _ARRAY_FIELDS:
        value = getattr(problem, name)
        views[name] = value.detach().numpy() if isinstance(value, torch.Tensor) else value
    work = _WORK_DTYPES[str(problem.logits.dtype)]
    return replace(problem, xp=np_namespace, result_dtype=work, acc=np.float64, **views)


def evaluate(problem: Any, *, with_grad: bool) -> tuple[Any, Any]:
    """``(loss, grad)`` of an eligible problem (``grad`` is None unless ``with_grad``)."""
    torch = sys.modules["torch"]
    loss, grad = _numpy_fast.evaluate(_numpy_problem(problem), with_grad=with_grad)
    loss = torch.from_numpy(np.asarray(loss)).to(problem.result_dtype)
    if grad is not None:
        grad = torch.from_numpy(grad).to(problem.result_dtype)
    return loss, grad
