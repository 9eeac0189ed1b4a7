"""Static types of labelsmooth's arguments and results, for type checkers.

The public functions are annotated with these names; a typed user script may use them
too (``from labelsmooth.typing import Reduction``). They describe what a type checker
(mypy, pyright) can verify and change nothing at run time: labelsmooth still checks every
argument itself, refusing an unknown string with ``ValueError`` and a value of the wrong
kind with ``TypeError``, whatever the annotations say.

``Reduction``
    ``"mean"``, ``"sum"`` or ``"none"``, the ``reduction`` of every loss.
``Prior``
    The ``prior`` of the smoothed losses and targets: ``None`` (uniform), ``"others"``
    (fairseq's) or an array of class probabilities.
``CalibrationNorm``, ``CalibrationStrategy``, ``CalibrationConvention``
    The ``norm``, ``strategy`` and ``convention`` of :mod:`labelsmooth.metrics`.
``Array``
    What labelsmooth takes as an array: a structural :class:`typing.Protocol` (an object
    with ``shape``, ``dtype`` and ``ndim``), which NumPy arrays, ``torch.Tensor``,
    ``jax.Array``, CuPy, Dask and array-api-strict arrays all satisfy, and a Python list
    does not.
``ArrayT``
    A type variable bound to :class:`Array`: a function annotated
    ``(logits: ArrayT, ...) -> ArrayT`` returns the type of its ``logits``, so a call on a
    ``numpy.typing.NDArray[numpy.float32]`` is typed as returning one, a call on a
    ``torch.Tensor`` a ``torch.Tensor``. The result has the logits' library and dtype;
    its shape (a reduced loss is 0-d) is not tracked by the type.

This module imports nothing beyond the standard library.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypeAlias, TypeVar

__all__ = [
    "Array",
    "ArrayT",
    "CalibrationConvention",
    "CalibrationNorm",
    "CalibrationStrategy",
    "Prior",
    "Reduction",
]


class Array(Protocol):
    """An array of any array-API library, as a type checker sees it: ``shape``, ``dtype``, ``ndim``."""

    @property
    def shape(self) -> tuple[Any, ...]: ...

    @property
    def dtype(self) -> Any: ...

    @property
    def ndim(self) -> int: ...


ArrayT = TypeVar("ArrayT", bound=Array)

Reduction: TypeAlias = Literal["mean", "sum", "none"]
Prior: TypeAlias = Literal["others"] | Array | None
CalibrationNorm: TypeAlias = Literal["l1", "l2", "max"]
CalibrationStrategy: TypeAlias = Literal["uniform", "quantile"]
CalibrationConvention: TypeAlias = Literal["guo", "torchmetrics"]
