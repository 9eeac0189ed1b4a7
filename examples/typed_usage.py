# mypy: warn-unused-ignores, disallow-untyped-defs, disallow-incomplete-defs
# pyright: reportUnnecessaryTypeIgnoreComment=true
"""labelsmooth as a type-checked user sees it: NumPy arrays in, options checked by mypy.

The smoothed losses take their options as ``**options: Unpack[LossOptions]`` (a
``TypedDict``), so a type checker knows every option's name and type; ``reduction`` and
``prior`` are ``Literal`` types (:mod:`labelsmooth.typing`), and every public function
returns the array type of its input: NumPy arrays in, ``numpy.typing.NDArray`` of the
same dtype out (``examples/typed_torch_usage.py``: ``torch.Tensor`` in and out). This
script calls the public functions the way a user would and is checked by ``mypy`` in
``.ci/run``, twice: against the source tree (``python -m mypy``, which lists this file)
and against the installed wheel (which must carry ``py.typed`` for mypy to read it at
all). ``python -m pyright examples/typed_usage.py`` checks it the same way.

The ``assert_type`` lines state the types a checker must infer (each is an error when it
infers another). The lines marked ``# type: ignore[...]`` are mistakes that mypy must
flag: with ``warn-unused-ignores`` (the first line of this file; pyright's
``reportUnnecessaryTypeIgnoreComment``, the second) an ignore that silences nothing is
itself an error, so if labelsmooth's signatures stopped telling the checker about its
options, the check would fail. At run time labelsmooth refuses the same mistakes with
``TypeError`` or ``ValueError``, which the script checks too.

It runs in well under a second with no arguments (``LABELSMOOTH_EXAMPLE_FAST=1``
changes nothing).

Usage::

    python examples/typed_usage.py
    python -m mypy examples/typed_usage.py
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

import labelsmooth as ls
from labelsmooth.metrics import expected_calibration_error
from labelsmooth.schedules import Schedule, linear
from labelsmooth.typing import Array, ArrayT, Prior, Reduction

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:

    def assert_type(value, _type):  # typing_extensions need not be installed to run this
        return value


def mean_loss(logits: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], epsilon: float) -> float:
    """A user's own typed helper around the library call."""
    return float(ls.cross_entropy(logits, labels, epsilon=epsilon, reduction="mean"))


def smoothed(logits: ArrayT, targets: Array, reduction: Reduction = "mean", prior: Prior = None) -> ArrayT:
    """A user's helper generic in the array library: it returns what ``logits`` is."""
    return ls.cross_entropy(logits, targets, epsilon=0.1, reduction=reduction, prior=prior)


def refused(call: Callable[[], object], error: type[Exception] = TypeError) -> str:
    """The message of the ``error`` that ``call`` raises (and fail if it raises none)."""
    try:
        call()
    except error as raised:
        return str(raised)
    msg = "labelsmooth accepted a call that mypy flags"
    raise AssertionError(msg)


def check_result_types(logits: npt.NDArray[np.float64], labels: npt.NDArray[np.int64]) -> None:
    """The types a checker infers: NumPy in, NumPy out, in the logits' dtype."""
    F64 = npt.NDArray[np.float64]
    assert_type(ls.cross_entropy(logits, labels, epsilon=0.1), F64)
    assert_type(ls.cross_entropy_grad(logits, labels, prior="others"), F64)
    assert_type(ls.cross_entropy_with_grad(logits, labels, reduction="sum"), tuple[F64, F64])
    assert_type(ls.kl_divergence(logits, labels, prior=np.full(3, 1 / 3)), F64)
    assert_type(ls.binary_cross_entropy(logits, logits * 0.0, reduction="none"), F64)
    assert_type(ls.binary_cross_entropy_grad(logits, logits * 0.0), F64)
    assert_type(ls.binary_cross_entropy_with_grad(logits, logits * 0.0), tuple[F64, F64])
    assert_type(ls.softmax(logits), F64)
    assert_type(ls.log_softmax(logits, axis=0), F64)
    assert_type(ls.logsumexp(logits), F64)
    assert_type(ls.smooth_labels(logits, 0.1, prior="others"), F64)
    # one_hot and soft_targets turn integer labels into floating rows: float64 by default.
    assert_type(ls.one_hot(labels, 3), F64)
    assert_type(ls.soft_targets(labels, 3, epsilon=0.1), F64)
    assert_type(ls.soft_targets(labels, 3, dtype=np.float32), npt.NDArray[np.floating[Any]])

    single = logits.astype(np.float32)
    assert_type(ls.cross_entropy(single, labels), npt.NDArray[np.float32])
    assert ls.cross_entropy(single, labels).dtype == np.float32
    reduction: Reduction = "none"
    assert_type(smoothed(single, labels, reduction, "others"), npt.NDArray[np.float32])
    assert smoothed(single, labels, reduction).shape == (2,)


def main() -> int:
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    labels = np.array([0, 2])

    loss = mean_loss(logits, labels, 0.1)
    assert abs(loss - 0.36391199) < 1e-7, loss

    grad = ls.cross_entropy_grad(logits, labels, epsilon=0.1, prior="others", axis=-1)
    both = ls.cross_entropy_with_grad(logits, labels, epsilon=0.1, prior="others", axis=-1)
    assert np.allclose(both[1], grad) and grad.shape == logits.shape

    per_sample = ls.cross_entropy(logits, labels, epsilon=np.array([0.0, 0.2]), ignore_index=None, reduction="none")
    check_result_types(logits, labels)
    kl = ls.kl_divergence(logits, ls.soft_targets(labels, 3, epsilon=0.1), reduction="sum")
    binary = ls.binary_cross_entropy(np.array([1.5, -0.5]), np.array([1.0, 0.0]), epsilon=0.1)
    probs = ls.softmax(logits)
    assert per_sample.shape == (2,) and float(kl) >= 0.0 and float(binary) > 0.0
    assert np.allclose(probs.sum(axis=-1), 1.0) and np.allclose(ls.log_softmax(logits), np.log(probs))
    assert np.allclose(ls.smooth_labels(ls.one_hot(labels, 3), 0.1), ls.soft_targets(labels, 3, epsilon=0.1))

    schedule: Schedule = linear(0.2, 0.0, steps=10)
    assert schedule(10) == 0.0
    annealed = mean_loss(logits, labels, schedule(5))

    # Mistakes mypy catches (each ignore is needed, or warn-unused-ignores fails the check)
    # and labelsmooth refuses at run time.
    misspelled = refused(lambda: ls.cross_entropy(logits, labels, epsilom=0.1))  # type: ignore[call-arg]
    wrong_type = refused(lambda: ls.cross_entropy(logits, labels, ignore_index="pad"))  # type: ignore[arg-type]
    wrong_axis = refused(lambda: ls.cross_entropy_grad(logits, labels, axis="classes"))  # type: ignore[arg-type]
    not_an_array = refused(lambda: ls.cross_entropy([[2.0, 0.5, -1.0]], labels))  # type: ignore[type-var]
    bad_reduction = refused(lambda: ls.cross_entropy(logits, labels, reduction="avg"), ValueError)  # type: ignore[arg-type]
    bad_prior = refused(lambda: ls.soft_targets(labels, 3, epsilon=0.1, prior="other"), ValueError)  # type: ignore[call-overload]
    bad_binary = refused(lambda: ls.binary_cross_entropy(logits, logits, reduction="mean "), ValueError)  # type: ignore[arg-type]
    probs_list = ls.softmax(logits)
    bad_norm = refused(lambda: expected_calibration_error(probs_list, labels, norm="l3"), ValueError)  # type: ignore[arg-type]
    assert "epsilom" in misspelled, misspelled
    assert "'avg'" in bad_reduction and "'other'" in bad_prior and "'l3'" in bad_norm, (bad_reduction, bad_prior)
    assert "logits must be an array" in not_an_array and "'mean '" in bad_binary, (not_an_array, bad_binary)

    print(f"mean smoothed loss {loss:.8f}, annealed (eps {schedule(5)}) {annealed:.8f}")
    print(f"refused a misspelled option: {misspelled}")
    print(f"refused a string ignore_index: {wrong_type}")
    print(f"refused a string axis: {wrong_axis}")
    print(f"refused an unknown reduction: {bad_reduction}")
    print(f"refused an unknown prior: {bad_prior}")
    print("typed usage checks hold")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
