"""The kernel for PyTorch CPU tensors: the NumPy kernel on views, without copies.

A CPU tensor and the NumPy array returned by ``Tensor.numpy()`` share their memory, so a
task made only of CPU tensors that autograd does not track is run by ``_numpy_fast``
(row-blocked, cache-resident, float64 row sums) on views of the tensors, and its row
statistics and gradient are wrapped back with ``torch.from_numpy``. Tensors that require a
gradient (with grad mode on), tensors on other devices and unusual tensors (negative or
conjugate views) are left to the array-API kernel, which autograd differentiates.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

import array_api_compat.numpy as np_namespace
import numpy as np
from array_api_compat import is_torch_namespace

from . import _kernel, _numpy_fast

__all__ = ["run", "supports"]

_ARRAY_FIELDS = ("logits", "labels", "profile", "prob_coef", "spread_coef", "true_coef", "zero_rows")
_WORK_DTYPES = {"torch.float32": np.float32, "torch.float64": np.float64}


def _tensors(task: Any) -> list:
    torch = sys.modules["torch"]
    return [value for value in (getattr(task, name) for name in _ARRAY_FIELDS) if isinstance(value, torch.Tensor)]


def supports(task: Any) -> bool:
    """Whether this kernel runs ``task`` (a ``_kernel.Task``): untracked CPU tensors."""
    if not is_torch_namespace(task.xp) or task.allowed is not None or task.nan_rows is not None:
        return False
    if str(task.logits.dtype) not in _WORK_DTYPES or task.logits.numel() == 0:
        return False
    torch = sys.modules["torch"]
    tracking = torch.is_grad_enabled()
    for tensor in _tensors(task):
        if tensor.device.type != "cpu" or tensor.is_neg() or tensor.is_conj():
            return False
        if tracking and tensor.requires_grad:
            return False
        if type(tensor) is not torch.Tensor:
            return False
    return _numpy_fast.supports(_numpy_task(task, ("logits", "labels", "profile")))


def _numpy_task(task: Any, fields: tuple[str, ...] = _ARRAY_FIELDS) -> Any:
    """The same task on NumPy views of the tensors (of ``fields``: those a check reads)."""
    torch = sys.modules["torch"]
    views = {}
    for name in fields:
        value = getattr(task, name)
        views[name] = value.detach().numpy() if isinstance(value, torch.Tensor) else value
    threads = sys.modules["torch"].get_num_threads()
    return replace(task, xp=np_namespace, acc=np.float64, threads=threads, **views)


def run(task: Any) -> _kernel.RowStatistics:
    """The row statistics (and gradient) of a task this kernel supports."""
    torch = sys.modules["torch"]
    stats = _numpy_fast.run(_numpy_task(task))

    def tensor(value: Any) -> Any:
        return value if value is None or isinstance(value, float) else torch.from_numpy(value)

    return _kernel.RowStatistics(*(tensor(value) for value in stats.as_tuple()))
