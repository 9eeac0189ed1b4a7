"""Tools to test a label-smoothing loss (labelsmooth's or your own) against an exact oracle.

- :func:`reference_cross_entropy`, :func:`reference_cross_entropy_grad`,
  :func:`reference_cross_entropy_with_grad`: the smoothed cross-entropy and its gradient
  computed from the definition in 40-digit mpmath arithmetic (needs ``mpmath``), for arrays
  of any library, returned as float64 NumPy arrays.
- :func:`assert_close`: compare arrays of any library and device with dtype-aware
  tolerances and a message that says where and by how much they differ.
- :func:`check_loss`: check your own PyTorch, JAX or NumPy loss (and its autodiff
  gradient) against labelsmooth under a named convention (``"torch"``, ``"optax"``,
  ``"fairseq"``) on a fixed grid of hard cases and hypothesis draws.
- :mod:`labelsmooth.testing.strategies` (import it explicitly; needs ``hypothesis``):
  generators of adversarial logits, labels and whole valid ``cross_entropy`` cases.

Importing this module imports neither mpmath nor hypothesis nor any array framework.
"""

from ._assertions import DEFAULT_TOLERANCES, assert_close, to_numpy
from ._check import check_loss
from ._reference import (
    reference_cross_entropy,
    reference_cross_entropy_grad,
    reference_cross_entropy_with_grad,
)

__all__ = [
    "DEFAULT_TOLERANCES",
    "assert_close",
    "check_loss",
    "reference_cross_entropy",
    "reference_cross_entropy_grad",
    "reference_cross_entropy_with_grad",
    "to_numpy",
]
