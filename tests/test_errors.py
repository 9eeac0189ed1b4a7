"""Every bad input is refused with a clear ``TypeError`` / ``ValueError`` (docs/errors.md).

Each case runs on every eager backend (NumPy, read-only NumPy, array-api-strict, JAX, PyTorch)
for every public function it applies to (one test per case and backend, the functions in a
loop), and checks the exception type and that the message names the argument and the
received value. Static cases (dtypes, shapes, options) are also run under ``jax.jit`` and on
lazy Dask arrays, where they must raise just the same; value checks that cannot be made
there must poison the affected results with NaN instead (against the dense oracle,
``tests/_formulas.py``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from _formulas import cross_entropy_rows
from conftest import LAZY, Backend, available_backend

import labelsmooth as ls

LOSSES = ("cross_entropy", "cross_entropy_grad", "cross_entropy_with_grad", "kl_divergence")
ROWS = ("logsumexp", "log_softmax", "softmax")

LOGITS = np.array([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0], [-3.0, 0.0, 3.0, 1.5]])
LABELS = np.array([0, 3, 1])
PROBS = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.0, 0.5, 0.5, 0.0]])
PRIOR = np.array([0.1, 0.2, 0.3, 0.4])


@dataclass(frozen=True)
class Case:
    """``fn(*args, **kwargs)`` built from a backend must raise ``error`` matching ``pattern``."""

    name: str
    functions: tuple[str, ...]
    build: Callable[[Backend], tuple[tuple[Any, ...], dict[str, Any]]]
    error: type[Exception]
    pattern: str
    static: bool = True  # also raised under jax.jit and on lazy Dask arrays


def foreign(b: Backend, a: Any) -> Any:
    """``a`` as an array of a library other than ``b``'s."""
    if b.name in ("numpy", "numpy_readonly", "dask"):
        import array_api_strict

        return array_api_strict.asarray(np.asarray(a))
    return np.asarray(a)


def other_float(b: Backend, x: Any) -> Any:
    """``x`` cast to a floating dtype of the same library that differs from its own."""
    target = b.xp.float32 if b.name in ("array_api_strict", "dask") else b.xp.float16
    return b.xp.astype(x, target)


def loss_case(name, error, pattern, *, targets="labels", logits=None, static=True, **options):
    """A case for the three cross-entropy functions; option values may be builders."""

    def build(b: Backend):
        z = b.asarray(LOGITS) if logits is None else logits(b)
        if callable(targets):
            t = targets(b)
        else:
            t = b.asarray(LABELS if targets == "labels" else PROBS)
        kwargs = {k: (v(b) if callable(v) else v) for k, v in options.items()}
        return (z, t), kwargs

    return Case(name, LOSSES, build, error, pattern, static)


def simple_case(name, functions, error, pattern, args, static=True, **options):
    def build(b: Backend):
        built = tuple(a(b) if callable(a) else a for a in args)
        kwargs = {k: (v(b) if callable(v) else v) for k, v in options.items()}
        return built, kwargs

    return Case(name, functions, build, error, pattern, static)


def arr(values, dtype=None):
    return lambda b: b.asarray(np.asarray(values, dtype=dtype))


def fgn(values):
    return lambda b: foreign(b, values)


INT_LOGITS = arr(LOGITS.astype(np.int64))
BOOL_LOGITS = arr(LOGITS > 0)
COMPLEX_LOGITS = arr(LOGITS.astype(np.complex128))
# A type name of the foreign library, whichever it is.
FOREIGN = r"(numpy\.ndarray|array_api_strict\S*Array)"

LOSS_CASES = [
    # --- TypeError: dtypes and array types -------------------------------------------
    loss_case(
        "integer logits", TypeError, r"logits must have a real floating dtype, got dtype u?int\d+", logits=INT_LOGITS
    ),
    loss_case("bool logits", TypeError, r"logits must have a real floating dtype, got dtype bool", logits=BOOL_LOGITS),
    loss_case(
        "complex logits",
        TypeError,
        r"logits must have a real floating dtype, got dtype complex\d+",
        logits=COMPLEX_LOGITS,
    ),
    loss_case(
        "list logits",
        TypeError,
        r"logits must be an array, got \[\[0\.5, .* of type list",
        logits=lambda b: LOGITS.tolist(),
    ),
    loss_case(
        "list targets",
        TypeError,
        r"targets must be an array, got \[0, 3, 1\] of type list",
        targets=lambda b: LABELS.tolist(),
    ),
    loss_case(
        "bool targets",
        TypeError,
        r"targets must be integer labels or real floating probabilities, got dtype bool",
        targets=arr(LABELS > 0),
    ),
    loss_case(
        "complex targets",
        TypeError,
        r"targets must be integer labels or real floating probabilities, got dtype complex",
        targets=arr(PROBS.astype(np.complex128)),
    ),
    loss_case(
        "probability targets of another dtype",
        TypeError,
        r"probability targets must have the logits' dtype float\d+, got dtype (float16|float32)",
        targets=lambda b: other_float(b, b.asarray(PROBS)),
    ),
    loss_case("targets of another library", TypeError, rf"one array library, got .*{FOREIGN}", targets=fgn(LABELS)),
    loss_case("weight of another library", TypeError, rf"one array library, got .*{FOREIGN}", weight=fgn(np.ones(4))),
    loss_case(
        "epsilon of another library", TypeError, rf"one array library, got .*{FOREIGN}", epsilon=fgn(np.full(3, 0.1))
    ),
    loss_case(
        "prior of another library", TypeError, rf"one array library, got .*{FOREIGN}", epsilon=0.1, prior=fgn(PRIOR)
    ),
    loss_case(
        "where of another library", TypeError, rf"one array library, got .*{FOREIGN}", where=fgn(np.ones(4, bool))
    ),
    loss_case(
        "integer where",
        TypeError,
        r"where must be a boolean array, got dtype u?int\d+",
        where=arr(np.ones(4, np.int64)),
    ),
    loss_case("list where", TypeError, r"where must be an array, got \[True, .* of type list", where=[True] * 4),
    # --- TypeError: option types ------------------------------------------------------
    loss_case(
        "string epsilon",
        TypeError,
        r"epsilon must be a float in \[0, 1\] or an array, got '0\.1' of type str",
        epsilon="0.1",
    ),
    loss_case("None epsilon", TypeError, r"epsilon must be a float in \[0, 1\] or an array, got None", epsilon=None),
    loss_case("bool epsilon", TypeError, r"epsilon must be a float in \[0, 1\] or an array, got True", epsilon=True),
    loss_case(
        "complex epsilon", TypeError, r"epsilon must be a float .*got \(0\.1\+0j\) of type complex", epsilon=0.1 + 0j
    ),
    loss_case(
        "bool epsilon array",
        TypeError,
        r"epsilon must have a real .*dtype, got dtype bool",
        epsilon=arr(np.array([True, False, True])),
    ),
    loss_case("non-str reduction", TypeError, r"reduction must be a str.*got None", reduction=None),
    loss_case(
        "list prior",
        TypeError,
        r"prior must be None, 'others' or an array.*got \[0\.25, .* of type list",
        epsilon=0.1,
        prior=[0.25] * 4,
    ),
    loss_case(
        "integer prior",
        TypeError,
        r"prior must have a real floating dtype, got dtype u?int\d+",
        epsilon=0.1,
        prior=arr(np.array([1, 0, 0, 0])),
    ),
    loss_case(
        "float ignore_index",
        TypeError,
        r"ignore_index must be an int or None, got -1\.0 of type float",
        ignore_index=-1.0,
    ),
    loss_case("bool ignore_index", TypeError, r"ignore_index must be an int or None, got True", ignore_index=True),
    loss_case("list weight", TypeError, r"weight must be an array, got \[1\.0, .* of type list", weight=[1.0] * 4),
    loss_case("bool weight", TypeError, r"weight must have a real dtype, got dtype bool", weight=arr(np.ones(4, bool))),
    loss_case("float axis", TypeError, r"axis must be an int, got 1\.0 of type float", axis=1.0),
    loss_case("bool axis", TypeError, r"axis must be an int, got True", axis=True),
    loss_case("string xp", TypeError, r"xp must be an array namespace .*got 'numpy'", xp="numpy"),
    # --- ValueError: values ----------------------------------------------------------
    loss_case(
        "label too large",
        ValueError,
        r"targets must be class indices in \[0, 4\), got a label of 4",
        targets=arr([0, 4, 1]),
        static=False,
    ),
    loss_case(
        "negative label",
        ValueError,
        r"targets must be class indices in \[0, 4\), got a label of -1",
        targets=arr([0, 3, -1]),
        static=False,
    ),
    loss_case(
        "negative label beside ignore_index",
        ValueError,
        r"targets must be class indices in \[0, 4\) or ignore_index=-100, got a label of -5",
        targets=arr([-100, -5, 1]),
        ignore_index=-100,
        static=False,
    ),
    loss_case("epsilon above 1", ValueError, r"epsilon must be in \[0, 1\], got 1\.5", epsilon=1.5),
    loss_case("negative epsilon", ValueError, r"epsilon must be in \[0, 1\], got -0\.1", epsilon=-0.1),
    loss_case("NaN epsilon", ValueError, r"epsilon must be in \[0, 1\], got nan", epsilon=float("nan")),
    loss_case(
        "per-sample epsilon above 1",
        ValueError,
        r"epsilon must lie in \[0, 1\] for every sample, got a value of 1\.5",
        epsilon=arr([0.1, 1.5, 0.0]),
        static=False,
    ),
    loss_case(
        "negative per-sample epsilon",
        ValueError,
        r"epsilon must lie in \[0, 1\] for every sample, got a value of -0\.5",
        epsilon=arr([0.1, 0.0, -0.5]),
        static=False,
    ),
    loss_case(
        "NaN per-sample epsilon",
        ValueError,
        r"epsilon must lie in \[0, 1\] for every sample, got a value of nan",
        epsilon=arr([np.nan, 0.1, 0.1]),
        static=False,
    ),
    loss_case(
        "unknown reduction", ValueError, r"reduction must be one of 'mean', 'sum', 'none', got 'avg'", reduction="avg"
    ),
    loss_case(
        "unknown prior",
        ValueError,
        r"prior must be None, 'others' or an array .*got 'uniform'",
        epsilon=0.1,
        prior="uniform",
    ),
    loss_case(
        "negative prior",
        ValueError,
        r"prior must have non-negative entries, got an entry of -0\.5",
        epsilon=0.1,
        prior=arr([0.5, 0.5, 0.5, -0.5]),
        static=False,
    ),
    loss_case(
        "NaN prior",
        ValueError,
        r"prior must have non-negative entries, got an entry of nan",
        epsilon=0.1,
        prior=arr([0.5, np.nan, 0.5, 0.0]),
        static=False,
    ),
    loss_case(
        "prior not summing to 1",
        ValueError,
        r"prior must sum to 1 .*got a sum of 1\.2",
        epsilon=0.1,
        prior=arr([0.3, 0.3, 0.3, 0.3]),
        static=False,
    ),
    loss_case(
        "prior with no mass on the allowed classes",
        ValueError,
        r"prior must give positive mass to at least one class allowed by where.*mass 0",
        epsilon=0.1,
        prior=arr([0.0, 0.5, 0.5, 0.0]),
        where=arr([True, False, False, True]),
        targets=arr([0, 3, 0]),
        static=False,
    ),
    loss_case(
        "label on a masked class",
        ValueError,
        r"targets must not point at a class masked out by where, got label 3",
        where=arr([True, True, True, False]),
        static=False,
    ),
    loss_case(
        "row with no allowed class",
        ValueError,
        r"where must allow at least 1 class.*got a row allowing 0",
        where=arr(np.array([[True] * 4, [False] * 4, [True] * 4])),
        targets=arr([0, 0, 0]),
        static=False,
    ),
    loss_case(
        "prior='others' with one allowed class",
        ValueError,
        r"where must allow at least 2 class.*prior='others'.*got a row allowing 1",
        epsilon=0.1,
        prior="others",
        where=arr([True, False, False, False]),
        targets=arr([0, 0, 0]),
        static=False,
    ),
    loss_case(
        "negative probability targets",
        ValueError,
        r"probability targets must be non-negative, got a value of -0\.25",
        targets=arr(-PROBS[[1, 1, 1]]),
        static=False,
    ),
    loss_case(
        "probability mass on a masked class",
        ValueError,
        r"probability targets must put no mass on classes masked out",
        targets="probs",
        where=arr([True, True, True, False]),
        static=False,
    ),
    # --- ValueError: shapes and static options ------------------------------------------
    loss_case(
        "integer targets of the wrong shape",
        ValueError,
        r"integer targets must have the logits' shape without the class axis, \(3,\), got shape \(2,\)",
        targets=arr([0, 1]),
    ),
    loss_case(
        "probability targets of the wrong shape",
        ValueError,
        r"probability targets must have the logits' shape \(3, 4\), got shape \(3, 3\)",
        targets=arr(PROBS[:, :3]),
    ),
    loss_case(
        "epsilon of the wrong shape",
        ValueError,
        r"epsilon must be broadcastable to the batch shape \(3,\), got shape \(2,\)",
        epsilon=arr([0.1, 0.2]),
    ),
    loss_case(
        "prior of the wrong shape",
        ValueError,
        r"prior must be broadcastable to the logits' shape \(3, 4\), got shape \(3,\)",
        epsilon=0.1,
        prior=arr(PRIOR[:3]),
    ),
    loss_case(
        "where of the wrong shape",
        ValueError,
        r"where must be broadcastable to the logits' shape \(3, 4\), got shape \(2, 4\)",
        where=arr(np.ones((2, 4), bool)),
    ),
    loss_case(
        "weight of the wrong length",
        ValueError,
        r"weight must have shape \(4,\) .*got shape \(3,\)",
        weight=arr(np.ones(3)),
    ),
    loss_case(
        "2-d weight", ValueError, r"weight must have shape \(4,\) .*got shape \(1, 4\)", weight=arr(np.ones((1, 4)))
    ),
    loss_case(
        "ignore_index with probability targets",
        ValueError,
        r"ignore_index needs integer targets, got probability targets and ignore_index=-100",
        targets="probs",
        ignore_index=-100,
    ),
    loss_case("axis out of range", ValueError, r"axis must be in \[-2, 1\] .*got 2", axis=2),
    loss_case(
        "0-d logits",
        ValueError,
        r"logits must have at least one dimension .*got a 0-d array",
        logits=arr(1.0),
        targets=arr(0),
    ),
    loss_case(
        "no classes",
        ValueError,
        r"logits must have at least one class along axis 1, got shape \(3, 0\)",
        logits=arr(np.zeros((3, 0))),
    ),
    loss_case(
        "prior='others' with K=1",
        ValueError,
        r"prior='others' needs at least 2 classes, got 1",
        logits=arr(np.zeros((3, 1))),
        targets=arr([0, 0, 0]),
        epsilon=0.1,
        prior="others",
    ),
]

FLOAT_X = arr(LOGITS)
ROW_CASES = [
    simple_case("integer x", ROWS, TypeError, r"x must have a real floating dtype, got dtype u?int\d+", [INT_LOGITS]),
    simple_case("bool x", ROWS, TypeError, r"x must have a real floating dtype, got dtype bool", [BOOL_LOGITS]),
    simple_case(
        "complex x", ROWS, TypeError, r"x must have a real floating dtype, got dtype complex\d+", [COMPLEX_LOGITS]
    ),
    simple_case("list x", ROWS, TypeError, r"x must be an array, got \[\[0\.5, .* of type list", [LOGITS.tolist()]),
    simple_case("float axis", ROWS, TypeError, r"axis must be an int, got 0\.0 of type float", [FLOAT_X], axis=0.0),
    simple_case("string xp", ROWS, TypeError, r"xp must be an array namespace .*got 'numpy'", [FLOAT_X], xp="numpy"),
    simple_case(
        "non-bool keepdims",
        ("logsumexp",),
        TypeError,
        r"keepdims must be a bool, got 'yes' of type str",
        [FLOAT_X],
        keepdims="yes",
    ),
    simple_case("axis out of range", ROWS, ValueError, r"axis must be in \[-2, 1\] .*got -3", [FLOAT_X], axis=-3),
    simple_case("0-d x", ROWS, ValueError, r"x must have at least one dimension .*got a 0-d array", [arr(1.0)]),
]

ONE_HOT_LIKE = ("one_hot", "soft_targets")
LABEL_ARRAY = arr(LABELS)
ONE_HOT_CASES = [
    simple_case(
        "float labels",
        ONE_HOT_LIKE,
        TypeError,
        r"labels must have an integer dtype, got dtype float\d+",
        [arr(LABELS.astype(float)), 4],
    ),
    simple_case(
        "bool labels",
        ONE_HOT_LIKE,
        TypeError,
        r"labels must have an integer dtype, got dtype bool",
        [arr(LABELS > 0), 4],
    ),
    simple_case(
        "list labels",
        ONE_HOT_LIKE,
        TypeError,
        r"labels must be an array, got \[0, 3, 1\] of type list",
        [LABELS.tolist(), 4],
    ),
    simple_case(
        "float num_classes",
        ONE_HOT_LIKE,
        TypeError,
        r"num_classes must be a positive int, got 4\.0 of type float",
        [LABEL_ARRAY, 4.0],
    ),
    simple_case(
        "bool num_classes",
        ONE_HOT_LIKE,
        TypeError,
        r"num_classes must be a positive int, got True",
        [LABEL_ARRAY, True],
    ),
    simple_case(
        "None num_classes",
        ONE_HOT_LIKE,
        TypeError,
        r"num_classes must be a positive int, got None",
        [LABEL_ARRAY, None],
    ),
    simple_case(
        "integer dtype",
        ONE_HOT_LIKE,
        TypeError,
        r"dtype must be a real floating dtype .*got .*int32",
        [LABEL_ARRAY, 4],
        dtype=lambda b: b.xp.int32,
    ),
    simple_case(
        "string dtype",
        ONE_HOT_LIKE,
        TypeError,
        r"dtype must be a real floating dtype .*got 'float32'",
        [LABEL_ARRAY, 4],
        dtype="float32",
    ),
    simple_case(
        "float axis",
        ONE_HOT_LIKE,
        TypeError,
        r"axis must be an int, got 0\.0 of type float",
        [LABEL_ARRAY, 4],
        axis=0.0,
    ),
    simple_case(
        "string xp",
        ONE_HOT_LIKE,
        TypeError,
        r"xp must be an array namespace .*got 'numpy'",
        [LABEL_ARRAY, 4],
        xp="numpy",
    ),
    simple_case(
        "label too large",
        ONE_HOT_LIKE,
        ValueError,
        r"labels must be in \[0, 3\) for num_classes=3, got a label of 3",
        [LABEL_ARRAY, 3],
        static=False,
    ),
    simple_case(
        "negative label",
        ONE_HOT_LIKE,
        ValueError,
        r"labels must be in \[0, 4\) for num_classes=4, got a label of -2",
        [arr([0, -2, 1]), 4],
        static=False,
    ),
    simple_case(
        "zero num_classes", ONE_HOT_LIKE, ValueError, r"num_classes must be a positive int, got 0", [LABEL_ARRAY, 0]
    ),
    simple_case(
        "negative num_classes",
        ONE_HOT_LIKE,
        ValueError,
        r"num_classes must be a positive int, got -4",
        [LABEL_ARRAY, -4],
    ),
    simple_case(
        "axis out of range", ONE_HOT_LIKE, ValueError, r"axis must be in \[-2, 1\] .*got 2", [LABEL_ARRAY, 4], axis=2
    ),
]


def smoothing_cases():
    """Cases shared by smooth_labels(targets, epsilon) and soft_targets(labels, K, epsilon=)."""
    cases = []
    spec = [
        (
            "string epsilon",
            TypeError,
            r"epsilon must be a float in \[0, 1\] or an array, got '0\.1' of type str",
            {"epsilon": "0.1"},
            True,
        ),
        (
            "None epsilon",
            TypeError,
            r"epsilon must be a float in \[0, 1\] or an array, got None",
            {"epsilon": None},
            True,
        ),
        (
            "bool epsilon array",
            TypeError,
            r"epsilon must have a real .*dtype, got dtype bool",
            {"epsilon": arr([True, False, True])},
            True,
        ),
        (
            "epsilon of another library",
            TypeError,
            rf"one array library, got .*{FOREIGN}",
            {"epsilon": fgn(np.full(3, 0.1))},
            True,
        ),
        (
            "prior of another library",
            TypeError,
            rf"one array library, got .*{FOREIGN}",
            {"epsilon": 0.1, "prior": fgn(PRIOR)},
            True,
        ),
        (
            "list prior",
            TypeError,
            r"prior must be None, 'others' or an array.*got \[0\.25, .* of type list",
            {"epsilon": 0.1, "prior": [0.25] * 4},
            True,
        ),
        (
            "integer prior",
            TypeError,
            r"prior must have a real floating dtype, got dtype u?int\d+",
            {"epsilon": 0.1, "prior": arr([1, 0, 0, 0])},
            True,
        ),
        ("epsilon above 1", ValueError, r"epsilon must be in \[0, 1\], got 1\.5", {"epsilon": 1.5}, True),
        ("negative epsilon", ValueError, r"epsilon must be in \[0, 1\], got -0\.1", {"epsilon": -0.1}, True),
        (
            "per-sample epsilon above 1",
            ValueError,
            r"epsilon must lie in \[0, 1\] for every sample, got a value of 1\.5",
            {"epsilon": arr([0.1, 1.5, 0.0])},
            False,
        ),
        (
            "epsilon of the wrong shape",
            ValueError,
            r"epsilon must be broadcastable to the batch shape \(3,\), got shape \(2,\)",
            {"epsilon": arr([0.1, 0.2])},
            True,
        ),
        (
            "unknown prior",
            ValueError,
            r"prior must be None, 'others' or an array .*got 'uniform'",
            {"epsilon": 0.1, "prior": "uniform"},
            True,
        ),
        (
            "negative prior",
            ValueError,
            r"prior must have non-negative entries, got an entry of -0\.5",
            {"epsilon": 0.1, "prior": arr([0.5, 0.5, 0.5, -0.5])},
            False,
        ),
        (
            "prior not summing to 1",
            ValueError,
            r"prior must sum to 1 .*got a sum of 1\.2",
            {"epsilon": 0.1, "prior": arr([0.3, 0.3, 0.3, 0.3])},
            False,
        ),
        (
            "prior of the wrong shape",
            ValueError,
            r"prior must be broadcastable to the logits' shape \(3, 4\), got shape \(3,\)",
            {"epsilon": 0.1, "prior": arr(PRIOR[:3])},
            True,
        ),
    ]
    for name, error, pattern, options, static in spec:
        epsilon = options.pop("epsilon")
        cases.append(
            simple_case(
                name, ("smooth_labels",), error, pattern, [arr(np.eye(4)[LABELS]), epsilon], static=static, **options
            )
        )
        cases.append(
            simple_case(
                name, ("soft_targets",), error, pattern, [LABEL_ARRAY, 4], static=static, epsilon=epsilon, **options
            )
        )
    cases += [
        simple_case(
            "integer targets",
            ("smooth_labels",),
            TypeError,
            r"targets must have a real floating dtype, got dtype u?int\d+",
            [arr(np.eye(4, dtype=np.int64)), 0.1],
        ),
        simple_case(
            "list targets",
            ("smooth_labels",),
            TypeError,
            r"targets must be an array, got \[\[1\.0, .* of type list",
            [np.eye(4).tolist(), 0.1],
        ),
        simple_case(
            "0-d targets",
            ("smooth_labels",),
            ValueError,
            r"targets must have at least one dimension .*got a 0-d array",
            [arr(1.0), 0.1],
        ),
        simple_case(
            "axis out of range",
            ("smooth_labels",),
            ValueError,
            r"axis must be in \[-2, 1\] .*got 5",
            [arr(np.eye(4)), 0.1],
            axis=5,
        ),
        simple_case(
            "prior='others' with K=1",
            ("smooth_labels",),
            ValueError,
            r"prior='others' needs at least 2 classes, got 1",
            [arr(np.ones((3, 1))), 0.1],
            prior="others",
        ),
        simple_case(
            "prior='others' with K=1",
            ("soft_targets",),
            ValueError,
            r"prior='others' needs at least 2 classes, got 1",
            [arr([0, 0, 0]), 1],
            epsilon=0.1,
            prior="others",
        ),
    ]
    return cases


ALL_CASES = LOSS_CASES + ROW_CASES + ONE_HOT_CASES + smoothing_cases()
CASES = [pytest.param(case, id=f"{case.functions[0]}-{case.name}") for case in ALL_CASES]
# Under jax.jit every array argument becomes a tracer, so arrays of another library cannot be
# told apart there; an explicit xp is not a traced argument either.
STATIC = [
    pytest.param(case, id=f"{case.functions[0]}-{case.name}")
    for case in ALL_CASES
    if case.static and "xp" not in case.name
]
NOT_UNDER_JIT = ("another library",)


CHECKED_FUNCTIONS = {"one_hot", "logsumexp", "log_softmax", "softmax", "smooth_labels", "soft_targets", *LOSSES}


def test_every_function_has_cases():
    covered = {fn for case in ALL_CASES for fn in case.functions}
    assert covered == CHECKED_FUNCTIONS


def test_messages_are_unique_per_case_and_function():
    expanded = [(fn, case.name) for case in ALL_CASES for fn in case.functions]
    assert len(set(expanded)) == len(expanded)
    assert len({param.id for param in CASES}) == len(CASES)


def check_raises(b: Backend, case: Case, *, exact: bool) -> None:
    """Every function of ``case``, called ``b``'s way, raises ``case.error`` matching ``case.pattern``."""
    for fn in case.functions:
        args, kwargs = case.build(b)
        with pytest.raises(case.error) as info:
            b.call(getattr(ls, fn), *args, **kwargs)
        if exact:
            # The exact class, not a subclass such as an AssertionError-derived framework error.
            assert type(info.value) is case.error, fn
        assert re.search(case.pattern, str(info.value)), f"{fn}: {info.value!s} does not match {case.pattern!r}"


@pytest.mark.parametrize("case", CASES)
def test_bad_input_raises(eager_backend, case):
    check_raises(eager_backend, case, exact=True)


@pytest.fixture(params=[Backend(name).param for name in LAZY])
def lazy_backend(request: pytest.FixtureRequest) -> Backend:
    return available_backend(request.param)


@pytest.mark.parametrize("case", STATIC)
def test_static_errors_raise_when_traced_or_lazy(lazy_backend, case):
    if lazy_backend.name == "jax_jit" and case.name.endswith(NOT_UNDER_JIT):
        pytest.skip("jax.jit turns every array argument into a JAX tracer")
    check_raises(lazy_backend, case, exact=False)


# --- Values that cannot be checked: NaN in the affected results ------------------------------


def reference_rows(z, labels, epsilon):
    """Per-sample smoothed cross-entropy and gradient with uniform u (the dense oracle)."""
    return cross_entropy_rows(z, labels, epsilon=epsilon, reduction="none")


def lazy_tol(result):
    return {"rtol": 2e-5, "atol": 2e-6} if result.dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}


def run_lazy(b: Backend, fn, *args, **kwargs):
    with warnings.catch_warnings():
        # No floating-point warning may escape on the way to the NaN.
        warnings.simplefilter("error")
        return b.to_numpy(b.call(fn, *args, **kwargs))


@pytest.mark.parametrize("bad_label", [4, -1])
def test_invalid_label_poisons_its_row(lazy_backend, bad_label):
    b = lazy_backend
    labels = np.array([0, bad_label, 1])
    z, y = b.asarray(LOGITS), b.asarray(labels)
    loss, grad = run_lazy(b, ls.cross_entropy_with_grad, z, y, epsilon=0.1, reduction="none")
    ref_loss, ref_grad = reference_rows(LOGITS, np.array([0, 0, 1]), 0.1)
    assert np.isnan(loss[1]) and np.all(np.isnan(grad[1]))
    np.testing.assert_allclose(loss[[0, 2]], ref_loss[[0, 2]], **lazy_tol(loss))
    np.testing.assert_allclose(grad[[0, 2]], ref_grad[[0, 2]], **lazy_tol(grad))
    for reduction in ("mean", "sum"):
        total, grad = run_lazy(b, ls.cross_entropy_with_grad, z, y, epsilon=0.1, reduction=reduction)
        assert np.isnan(total)
        assert np.all(np.isnan(grad[1]))
    assert np.isnan(run_lazy(b, ls.cross_entropy, z, y))
    encoded = run_lazy(b, ls.one_hot, y, 4)
    assert np.all(np.isnan(encoded[1])) and np.array_equal(encoded[[0, 2]], np.eye(4)[[0, 1]])
    smoothed = run_lazy(b, ls.soft_targets, y, 4, epsilon=0.2)
    assert np.all(np.isnan(smoothed[1]))
    np.testing.assert_allclose(smoothed[[0, 2]], 0.8 * np.eye(4)[[0, 1]] + 0.05, **lazy_tol(smoothed))


def test_invalid_label_beside_ignore_index_poisons_its_row(lazy_backend):
    b = lazy_backend
    z, y = b.asarray(LOGITS), b.asarray(np.array([-100, -5, 1]))
    loss = run_lazy(b, ls.cross_entropy, z, y, ignore_index=-100, reduction="none")
    assert loss[0] == 0.0 and np.isnan(loss[1]) and np.isfinite(loss[2])
    assert np.isnan(run_lazy(b, ls.cross_entropy, z, y, ignore_index=-100))


@pytest.mark.parametrize("bad_epsilon", [1.5, -0.5, np.nan])
def test_invalid_per_sample_epsilon_poisons_its_row(lazy_backend, bad_epsilon):
    b = lazy_backend
    eps = np.array([0.1, 0.2, bad_epsilon])
    z, y, e = b.asarray(LOGITS), b.asarray(LABELS), b.asarray(eps)
    loss, grad = run_lazy(b, ls.cross_entropy_with_grad, z, y, epsilon=e, reduction="none")
    ref_loss, ref_grad = reference_rows(LOGITS, LABELS, np.array([0.1, 0.2, 0.0]))
    assert np.isnan(loss[2]) and np.all(np.isnan(grad[2]))
    np.testing.assert_allclose(loss[:2], ref_loss[:2], **lazy_tol(loss))
    np.testing.assert_allclose(grad[:2], ref_grad[:2], **lazy_tol(grad))
    assert np.isnan(run_lazy(b, ls.cross_entropy, z, y, epsilon=e, reduction="sum"))
    assert np.isnan(run_lazy(b, ls.cross_entropy, z, b.asarray(PROBS), epsilon=e, reduction="none")[2])
    for smoothed in (
        run_lazy(b, ls.soft_targets, y, 4, epsilon=e),
        run_lazy(b, ls.smooth_labels, b.asarray(np.eye(4)[LABELS]), e),
    ):
        assert np.all(np.isnan(smoothed[2]))
        np.testing.assert_allclose(
            smoothed[:2], (1 - eps[:2, None]) * np.eye(4)[LABELS[:2]] + eps[:2, None] / 4, **lazy_tol(smoothed)
        )


@pytest.mark.parametrize(
    ("bad_prior", "epsilon"),
    [
        ([0.3, 0.3, 0.3, 0.3], 0.1),
        ([0.5, 0.5, 0.5, -0.5], 0.1),
        # Even where epsilon = 0 leaves the prior unused, an invalid one is not let through.
        ([0.5, np.nan, 0.5, 0.0], 0.0),
    ],
    ids=["sum", "negative", "nan"],
)
def test_invalid_prior_poisons_every_row(lazy_backend, bad_prior, epsilon):
    b = lazy_backend
    z, y, prior = b.asarray(LOGITS), b.asarray(LABELS), b.asarray(np.array(bad_prior))
    loss, grad = run_lazy(b, ls.cross_entropy_with_grad, z, y, epsilon=epsilon, prior=prior, reduction="none")
    assert np.all(np.isnan(loss)) and np.all(np.isnan(grad))
    assert np.isnan(run_lazy(b, ls.cross_entropy, z, y, epsilon=epsilon, prior=prior))
    assert np.all(np.isnan(run_lazy(b, ls.soft_targets, y, 4, epsilon=epsilon, prior=prior)))
    assert np.all(np.isnan(run_lazy(b, ls.smooth_labels, b.asarray(PROBS), epsilon, prior=prior)))


def test_invalid_per_row_prior_poisons_its_row(lazy_backend):
    b = lazy_backend
    priors = np.array([[0.25] * 4, [0.5, 0.5, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4]])
    loss = run_lazy(
        b,
        ls.cross_entropy,
        b.asarray(LOGITS),
        b.asarray(LABELS),
        epsilon=0.1,
        prior=b.asarray(priors),
        reduction="none",
    )
    assert np.isnan(loss[1]) and np.all(np.isfinite(loss[[0, 2]]))


def test_masked_label_and_empty_rows_poison_their_row(lazy_backend):
    b = lazy_backend
    z = LOGITS.copy()
    z[0, 3] = -np.inf  # a masked class may hold -inf
    allowed = np.array([[True, True, True, False], [False] * 4, [True, True, False, True]])
    zb, yb, wb = b.asarray(z), b.asarray(np.array([3, 0, 1])), b.asarray(allowed)
    for epsilon, prior in ((0.0, None), (0.1, "others"), (1.0, None)):
        loss, grad = run_lazy(
            b, ls.cross_entropy_with_grad, zb, yb, epsilon=epsilon, prior=prior, where=wb, reduction="none"
        )
        # Row 0 labels a masked class, row 1 allows nothing: NaN; row 2 is fine.
        assert np.all(np.isnan(loss[:2])) and np.all(np.isnan(grad[:2]))
        assert np.isfinite(loss[2]) and np.all(np.isfinite(grad[2]))
    prior = b.asarray(np.array([0.0, 0.0, 0.5, 0.5]))
    row_mask = b.asarray(np.array([[True, True, False, False], [True] * 4, [True] * 4]))
    loss = run_lazy(
        b,
        ls.cross_entropy,
        b.asarray(LOGITS),
        b.asarray(LABELS * 0),
        epsilon=0.1,
        prior=prior,
        where=row_mask,
        reduction="none",
    )
    # Row 0's allowed classes have no prior mass: NaN, without a 0/0 warning.
    assert np.isnan(loss[0]) and np.all(np.isfinite(loss[1:]))


def test_invalid_probability_targets_poison_their_row(lazy_backend):
    b = lazy_backend
    q = PROBS.copy()
    q[1] = [-0.25, 0.75, 0.25, 0.25]
    loss = run_lazy(b, ls.cross_entropy, b.asarray(LOGITS), b.asarray(q), reduction="none")
    assert np.isnan(loss[1]) and np.all(np.isfinite(loss[[0, 2]]))
    q_masked = PROBS.copy()
    loss = run_lazy(
        b,
        ls.cross_entropy,
        b.asarray(LOGITS),
        b.asarray(q_masked),
        where=b.asarray(np.array([True, True, True, False])),
        reduction="none",
    )
    # Rows 0 and 1 put mass on the masked class 3; row 2 does not.
    assert np.all(np.isnan(loss[:2])) and np.isfinite(loss[2])
