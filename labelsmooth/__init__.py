"""labelsmooth: label smoothing and smoothed cross-entropy for any array library.

A framework-agnostic reference implementation of label smoothing (Szegedy et al. 2016):
one-hot encoding, softmax / log_softmax / logsumexp, smoothed targets, the smoothed
cross-entropy and its analytic gradient ``p - q'``, written once against the array API
standard and dispatched through ``array-api-compat`` to NumPy, CuPy, JAX, PyTorch, Dask
and array-api-strict.
"""

from ._binary import (
    binary_cross_entropy,
    binary_cross_entropy_grad,
    binary_cross_entropy_with_grad,
)
from ._kl import kl_divergence
from ._linear import linear_cross_entropy, linear_cross_entropy_with_grad
from ._losses import cross_entropy, cross_entropy_grad, cross_entropy_with_grad
from ._softmax import (
    log_softmax,
    logsumexp,
    one_hot,
    smooth_labels,
    soft_targets,
    softmax,
)
from ._version import __version__

__all__ = [
    "__version__",
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_with_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "cross_entropy_with_grad",
    "kl_divergence",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "log_softmax",
    "logsumexp",
    "one_hot",
    "smooth_labels",
    "soft_targets",
    "softmax",
]
