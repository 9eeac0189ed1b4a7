# mypy: warn-unused-ignores, disallow-untyped-defs, disallow-incomplete-defs
"""labelsmooth as a type-checked user sees it: NumPy arrays in, options checked by mypy.

The smoothed losses take their options as ``**options: Unpack[LossOptions]`` (a
``TypedDict``), so a type checker knows every option's name and type. This script calls
the public functions the way a user would and is checked by ``mypy`` in ``.ci/run``,
twice: against the source tree (``python -m mypy``, which lists this file) and against
the installed wheel (which must carry ``py.typed`` for mypy to read it at all).

The lines marked ``# type: ignore[...]`` are mistakes that mypy must flag: with
``warn-unused-ignores`` (the first line of this file) an ignore that silences nothing is
itself an error, so if labelsmooth's signatures stopped telling mypy about its options,
the check would fail. At run time labelsmooth refuses the same mistakes with
``TypeError``, which the script checks too.

It runs in well under a second with no arguments (``LABELSMOOTH_EXAMPLE_FAST=1``
changes nothing).

Usage::

    python examples/typed_usage.py
    python -m mypy examples/typed_usage.py
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

import labelsmooth as ls
from labelsmooth.schedules import Schedule, linear


def mean_loss(logits: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], epsilon: float) -> float:
    """A user's own typed helper around the library call."""
    return float(ls.cross_entropy(logits, labels, epsilon=epsilon, reduction="mean"))


def refused(call: Callable[[], object]) -> str:
    """The message of the ``TypeError`` that ``call`` raises (and fail if it raises none)."""
    try:
        call()
    except TypeError as error:
        return str(error)
    msg = "labelsmooth accepted a call that mypy flags"
    raise AssertionError(msg)


def main() -> int:
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    labels = np.array([0, 2])

    loss = mean_loss(logits, labels, 0.1)
    assert abs(loss - 0.36391199) < 1e-7, loss

    grad = ls.cross_entropy_grad(logits, labels, epsilon=0.1, prior="others", axis=-1)
    both = ls.cross_entropy_with_grad(logits, labels, epsilon=0.1, prior="others", axis=-1)
    assert np.allclose(both[1], grad) and grad.shape == logits.shape

    per_sample = ls.cross_entropy(logits, labels, epsilon=np.array([0.0, 0.2]), ignore_index=None, reduction="none")
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
    assert "epsilom" in misspelled, misspelled

    print(f"mean smoothed loss {loss:.8f}, annealed (eps {schedule(5)}) {annealed:.8f}")
    print(f"refused a misspelled option: {misspelled}")
    print(f"refused a string ignore_index: {wrong_type}")
    print(f"refused a string axis: {wrong_axis}")
    print("typed usage checks hold")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
