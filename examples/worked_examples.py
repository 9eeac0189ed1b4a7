"""The worked examples of the labelsmooth API contract, reproduced and checked.

1. ``smooth_labels([0, 0, 1], 0.1)`` is ``[1/30, 1/30, 28/30]``: every class receives
   ``eps/K``, the true class keeps ``1 - eps`` on top.
2. Logits ``log([0.1, 0.1, 0.1, 0.36, 0.34])`` with true class 3: the plain cross-entropy
   is ``-log 0.36 = 1.0216512475319814`` nats (1.474 bits); with ``epsilon=0.1`` the
   targets are ``(0.02, 0.02, 0.02, 0.92, 0.02)`` and the loss is
   ``1.0996504465365042`` nats (1.586 bits). A widely shared write-up of this example
   prints 1.47 and 2.63: the first is the plain loss in bits, the second an arithmetic slip.
3. The gradient of the smoothed loss is ``p - q' = (0.08, 0.08, 0.08, -0.56, 0.32)``.
4. With fairseq's convention (``prior="others"``) the targets are
   ``(0.025, 0.025, 0.025, 0.9, 0.025)``.

Each value is computed by labelsmooth and compared with the formula evaluated here by
hand with the ``math`` module, to float64 rounding; the script fails (AssertionError)
otherwise. It runs in a second (``LABELSMOOTH_EXAMPLE_FAST=1`` changes nothing).

Usage::

    python examples/worked_examples.py
"""

from __future__ import annotations

import math

import numpy as np

import labelsmooth as ls

# Four float64 ulps around 1: the results are sums of a handful of rounded terms.
TOLERANCE = 4 * np.finfo(np.float64).eps


def close(value: float, expected: float) -> bool:
    return abs(value - expected) <= TOLERANCE * max(1.0, abs(expected))


def main() -> int:
    smoothed = ls.smooth_labels(np.array([0.0, 0.0, 1.0]), 0.1)
    print("1. smooth_labels([0, 0, 1], 0.1) =", np.array2string(smoothed, precision=10))
    for value, expected in zip(smoothed, (0.1 / 3, 0.1 / 3, 0.9 + 0.1 / 3)):
        assert close(float(value), expected), (value, expected)

    p = [0.1, 0.1, 0.1, 0.36, 0.34]
    logits = np.log(np.array([p]))
    label = np.array([3])
    plain = float(ls.cross_entropy(logits, label))
    smooth = float(ls.cross_entropy(logits, label, epsilon=0.1))
    q_smooth = [0.1 / 5] * 5
    q_smooth[3] += 0.9
    by_hand_plain = -math.log(0.36)
    by_hand_smooth = -sum(q * math.log(pk) for q, pk in zip(q_smooth, p))
    print()
    print("2. logits = log([0.1, 0.1, 0.1, 0.36, 0.34]), true class 3")
    print(
        f"   plain:         {plain!r} nats = {plain / math.log(2):.3f} bits   (by hand: -log 0.36 = {by_hand_plain!r})"
    )
    print(f"   epsilon = 0.1: {smooth!r} nats = {smooth / math.log(2):.3f} bits   (by hand: {by_hand_smooth!r})")
    assert close(plain, 1.0216512475319814) and close(plain, by_hand_plain)
    assert close(smooth, 1.0996504465365042) and close(smooth, by_hand_smooth)
    assert f"{plain / math.log(2):.3f}" == "1.474" and f"{smooth / math.log(2):.3f}" == "1.586"
    # The loss is linear in epsilon, from H(q, p) at 0 to H(u, p) at 1: 2.63 bits is out of reach.
    largest = float(ls.cross_entropy(logits, label, epsilon=1.0))
    assert close(largest, -sum(math.log(pk) for pk in p) / 5)
    print("   (1.47 in the shared write-up is the plain loss in bits; its 2.63 is an arithmetic slip:")
    print(f"    the loss grows linearly in epsilon up to H(u, p) = {largest / math.log(2):.3f} bits at epsilon = 1)")
    assert largest / math.log(2) < 2.63

    grad = ls.cross_entropy_grad(logits, label, epsilon=0.1)[0]
    print()
    print("3. gradient p - q' =", np.array2string(grad, precision=10, suppress_small=True))
    for value, expected in zip(grad, (pk - q for pk, q in zip(p, q_smooth))):
        assert close(float(value), expected), (value, expected)
    assert abs(float(grad.sum())) <= TOLERANCE

    others = ls.soft_targets(label, 5, epsilon=0.1, prior="others")[0]
    print()
    print("4. prior='others' (fairseq): q' =", np.array2string(others, precision=10))
    for value, expected in zip(others, (0.025, 0.025, 0.025, 0.9, 0.025)):
        assert close(float(value), expected), (value, expected)
    loss_others = float(ls.cross_entropy(logits, label, epsilon=0.1, prior="others"))
    by_hand_others = -(0.9 * math.log(0.36) + 0.025 * (3 * math.log(0.1) + math.log(0.34)))
    print(f"   loss = {loss_others!r} nats (by hand: {by_hand_others!r})")
    assert close(loss_others, by_hand_others)

    print()
    print("All worked examples hold to float64 rounding.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
