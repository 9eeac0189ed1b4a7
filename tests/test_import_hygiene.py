"""Importing labelsmooth imports no array framework the user did not import."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("jax", "torch", "cupy", "dask", "tensorflow", "optax", "keras", "hypothesis", "mpmath", "matplotlib")


@pytest.mark.slow
def test_import_is_light():
    code = (
        "import sys, importlib\n"
        "import labelsmooth\n"
        "for name in ('labelsmooth.testing', 'labelsmooth.metrics', 'labelsmooth.schedules'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as exc:\n"
        "        if exc.name != name:\n"
        "            raise\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names():
    import labelsmooth

    for name in (
        "one_hot",
        "logsumexp",
        "log_softmax",
        "softmax",
        "smooth_labels",
        "soft_targets",
        "cross_entropy",
        "cross_entropy_grad",
        "cross_entropy_with_grad",
        "binary_cross_entropy",
        "binary_cross_entropy_grad",
        "binary_cross_entropy_with_grad",
        "kl_divergence",
    ):
        assert callable(getattr(labelsmooth, name)), name
        assert name in labelsmooth.__all__
        assert getattr(labelsmooth, name).__doc__
