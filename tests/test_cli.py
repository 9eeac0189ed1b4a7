"""The command line: ``python -m labelsmooth demo | check | --version``."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

import labelsmooth
from labelsmooth import __main__ as cli


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"labelsmooth {labelsmooth.__version__}"


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "usage: labelsmooth" in out and "demo" in out and "check" in out


def test_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["bogus"]) == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


def test_demo_prints_the_worked_examples(capsys):
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "[0.0333333 0.0333333 0.9333333]" in out
    assert "1.0216512475319814 nats = 1.474 bits" in out
    assert "1.0996504465365042 nats = 1.586 bits" in out
    assert "[0.02 0.02 0.02 0.92 0.02]" in out
    assert "[ 0.08  0.08  0.08 -0.56  0.32]" in out
    # KL = H(q', p) - H(q') with q' = (0.02, 0.02, 0.02, 0.92, 0.02), worked out here.
    entropy = -(4 * 0.02 * math.log(0.02) + 0.92 * math.log(0.92))
    assert f"= {1.0996504465365042 - entropy:.6f} nats" in out
    # Binary: -(0.95 log s + 0.05 log(1 - s)) with s = sigmoid(2).
    s = 1 / (1 + math.exp(-2.0))
    assert f"= {-(0.95 * math.log(s) + 0.05 * math.log(1 - s)):.6f} nats" in out


@pytest.mark.slow
def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "labelsmooth", "demo"], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "1.586 bits" in result.stdout
    version = subprocess.run(
        [sys.executable, "-m", "labelsmooth", "--version"], capture_output=True, text=True, check=False, timeout=120
    )
    assert version.returncode == 0 and version.stdout.strip() == f"labelsmooth {labelsmooth.__version__}"


@pytest.mark.slow
def test_importing_the_cli_and_running_demo_imports_no_framework():
    heavy = ("jax", "torch", "cupy", "dask", "tensorflow", "optax", "keras")
    code = (
        "import sys, io, contextlib\n"
        "from labelsmooth.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['demo'])\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == ""


def _rows(out):
    return [line for line in out.splitlines() if line.startswith(("PyTorch", "optax", "Keras"))]


@pytest.mark.slow
def test_check_lists_libraries_and_agrees_with_installed_frameworks(capsys):
    pytest.importorskip("torch")
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    for shown in ("NumPy", "array-api-compat", "JAX", "PyTorch", "Dask", "CuPy", "optax", "Keras", "TensorFlow"):
        assert any(line.startswith(shown + " ") for line in out.splitlines()), shown
    import numpy

    assert f"numpy             {numpy.__version__}" in out
    rows = _rows(out.split("Agreement")[1])
    assert any("F.cross_entropy(label_smoothing=eps)" in row for row in rows)
    assert any("F.binary_cross_entropy_with_logits" in row for row in rows)
    for row in rows:
        if "skipped" not in row:
            assert row.rstrip().endswith("agrees"), row
            error = float(row.split()[-2])
            assert error <= (1e-12 if "float64" in row else 1e-5)


def test_check_reports_missing_frameworks(capsys, monkeypatch):
    real = cli._library_version
    monkeypatch.setattr(cli, "_library_version", lambda module: None if module in ("torch", "keras") else real(module))
    monkeypatch.setattr(cli, "_optax_cases", lambda rng: [])
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    assert "PyTorch           torch             not installed" in out
    assert "skipped (torch not installed)" in out
    assert "skipped (keras not installed)" in out


def test_check_fails_when_a_framework_disagrees(capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(cli, "_torch_cases", lambda rng: [("PyTorch", "a loss", "a convention", lambda: 0.5)])
    monkeypatch.setattr(cli, "_optax_cases", lambda rng: [("optax", "broken", "-", lambda: 1 / 0)])
    monkeypatch.setattr(cli, "_keras_cases", lambda rng: [])
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    assert "5.0e-01" in out and "DIFFERS (> 1e-12)" in out
    assert "error: ZeroDivisionError" in out
