"""PyTorch CPU tensors evaluated on NumPy views, without copies.

A CPU tensor and the NumPy array returned by ``Tensor.numpy()`` share their memory, so a
problem made only of CPU tensors that autograd does not track is evaluated as the same
problem on NumPy views: the NumPy kernel (row-blocked, cache-resident, float64 row sums)
and the loss algebra around it in NumPy, whose per-call cost is a fraction of torch's on
small arrays. The results are wrapped back with ``torch.from_numpy``. The kernel's threads
stay within ``torch.get_num_threads()``. Tensors that require a gradient (with grad mode
on), tensors on other devices and unusual tensors (negative or conjugate views, subclasses)
are left to the array-API path, which autograd differentiates.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import array_api_compat.numpy as np_namespace
import numpy as np
from array_api_compat import is_torch_namespace

__all__ = ["as_tensors", "numpy_value", "numpy_views"]

_WORK_DTYPES = {"torch.float32": np.float32, "torch.float64": np.float64}


def _viewable(value: Any, torch: Any, tracking: bool) -> bool:
    if not isinstance(value, torch.Tensor):
        return True
    plain = type(value) is torch.Tensor and value.device.type == "cpu"
    return plain and not (value.is_neg() or value.is_conj() or (tracking and value.requires_grad))


def numpy_views(problem: Any) -> Any:
    """The same problem on NumPy views of its tensors, or None when it is not made of such."""
    if not is_torch_namespace(problem.xp) or problem.allowed is not None or problem.poison is not None:
        return None
    if str(problem.logits.dtype) not in _WORK_DTYPES or problem.logits.numel() == 0:
        return None
    torch = sys.modules["torch"]
    tracking = torch.is_grad_enabled()
    views: dict[str, Any] = {}
    for field in dataclasses.fields(problem):
        value = getattr(problem, field.name)
        if isinstance(value, torch.Tensor):
            if not _viewable(value, torch, tracking):
                return None
            views[field.name] = value.detach().numpy()
    work = _WORK_DTYPES[str(problem.logits.dtype)]
    return dataclasses.replace(
        problem, xp=np_namespace, result_dtype=work, acc=np.float64, threads=torch.get_num_threads(), **views
    )


def as_tensors(results: tuple[Any, Any], problem: Any) -> tuple[Any, Any]:
    """``(loss, grad)`` of the views as tensors of the problem's dtype (``grad`` may be None)."""
    torch = sys.modules["torch"]
    loss, grad = results
    loss = torch.from_numpy(np.asarray(loss)).to(problem.result_dtype)
    return loss, None if grad is None else torch.from_numpy(grad).to(problem.result_dtype)


def numpy_value(value: Any) -> Any:
    """A tensor as a NumPy array (for the NumPy evaluation of its problem); anything else unchanged."""
    torch = sys.modules["torch"]
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
