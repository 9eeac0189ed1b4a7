"""The Examples sections of the public docstrings run and print what they show.

One runner over every module of labelsmooth with examples; the adapters only where their
framework imports. A module listed here must have examples, and a module with examples
must be listed here.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import labelsmooth

pytest.importorskip("array_api_strict")

MODULES = [
    "labelsmooth._binary",
    "labelsmooth._kl",
    "labelsmooth._linear",
    "labelsmooth._losses",
    "labelsmooth._softmax",
    "labelsmooth.metrics",
    "labelsmooth.schedules",
    "labelsmooth.testing._assertions",
    "labelsmooth.testing._check",
    "labelsmooth.testing._reference",
    "labelsmooth.jax",
    "labelsmooth.torch",
]
NEEDS = {"labelsmooth.jax": "jax", "labelsmooth.torch": "torch"}


def _import(module_name: str):
    framework = NEEDS.get(module_name)
    if framework is not None and importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed")
    return importlib.import_module(module_name)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name: str) -> None:
    module = _import(module_name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module_name} is listed but has no examples"
    assert result.failed == 0


def test_every_module_with_examples_is_listed() -> None:
    finder = doctest.DocTestFinder()
    with_examples = set()
    for info in pkgutil.walk_packages(labelsmooth.__path__, "labelsmooth."):
        framework = NEEDS.get(info.name)
        if framework is not None and importlib.util.find_spec(framework) is None:
            continue
        module = importlib.import_module(info.name)
        if any(test.examples for test in finder.find(module)):
            with_examples.add(info.name)
    assert with_examples <= set(MODULES), sorted(with_examples - set(MODULES))
