"""Every script in examples/ runs to completion in its fast mode.

Convention for examples: an example that reads the environment variable
``LABELSMOOTH_EXAMPLE_FAST`` (set to ``1`` here) must then finish in seconds, with no
command-line arguments, and write nothing outside a temporary directory or its working
directory (here a fresh temporary directory). Examples whose source does not mention the
variable have not declared a fast mode and are skipped, so that a long default run (a
larger-than-memory Dask job, say) never starts inside the test suite.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Each test runs an example in a subprocess.
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FAST_VARIABLE = "LABELSMOOTH_EXAMPLE_FAST"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Run (and checked more closely) by the dedicated tests below.
CHECKED_BELOW = {
    "annealed_smoothing.py",
    "digits_calibration.py",
    "mlp_calibration.py",
    "tiny_language_model.py",
    "tour.py",
    "worked_examples.py",
}
# Examples that import an optional library at the top: skipped where it is not installed.
NEEDS = {"typed_torch_usage.py": ("torch",)}


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **{FAST_VARIABLE: "1", "MPLBACKEND": "Agg"})
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_example_runs_in_fast_mode(path, tmp_path):
    if path.name in CHECKED_BELOW:
        pytest.skip(f"{path.name} has its own test below")
    if FAST_VARIABLE not in path.read_text(encoding="utf-8"):
        pytest.skip(f"{path.name} declares no fast mode ({FAST_VARIABLE})")
    for module in NEEDS.get(path.name, ()):
        pytest.importorskip(module)
    run_example(path.name, cwd=tmp_path)


def parse_table(stdout):
    rows = {}
    for line in stdout.splitlines():
        match = re.match(
            r"^(eps = [\d.]+|linear 0.2 -> 0|cosine 0.2 -> 0)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)"
            r"\s+([\d.]+)$",
            line,
        )
        if match:
            rows[match.group(1)] = [float(v) for v in match.groups()[1:]]
    return rows


def test_digits_calibration_fast_mode_prints_the_table_and_writes_a_figure(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    result = run_example("digits_calibration.py", cwd=tmp_path)
    rows = parse_table(result.stdout)
    assert list(rows) == ["eps = 0", "eps = 0.05", "eps = 0.1", "eps = 0.2", "linear 0.2 -> 0", "cosine 0.2 -> 0"]
    for accuracy, nll, ece, brier, confidence in rows.values():
        assert 0.8 < accuracy <= 1.0  # a few Adam steps already fit the digits well
        assert 0.0 < nll < 1.0 and 0.0 <= ece <= 1.0 and 0.0 <= brier <= 2.0 and 0.1 <= confidence <= 1.0
    # Smoothing caps the confidence: the strongest constant epsilon is the least confident.
    assert rows["eps = 0.2"][4] < rows["eps = 0"][4]
    # Without --out, fast mode writes to a fresh temporary directory, not into the repository.
    written = Path(re.search(r"reliability diagram written to (.+)$", result.stdout, re.MULTILINE).group(1))
    try:
        assert written.parent != EXAMPLES.parent / "docs" / "figures"
        assert written.read_bytes()[:8] == PNG_SIGNATURE
        assert written.stat().st_size > 20_000
    finally:
        written.unlink(missing_ok=True)
        written.parent.rmdir()
    assert list(tmp_path.iterdir()) == []


def test_mlp_calibration_fast_mode_prints_three_settings_and_a_figure(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    pytest.importorskip("torch")
    result = run_example("mlp_calibration.py", cwd=tmp_path)
    rows = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^(eps = 0\.1|eps = 0|cosine 0\.1 -> 0)\s+(.*)$", line)
        if match:
            rows[match.group(1)] = [float(v) for v in match.group(2).split()]
    assert list(rows) == ["eps = 0", "eps = 0.1", "cosine 0.1 -> 0"]
    for accuracy, nll, ece_guo, ece_torchmetrics, confidence, at_one in rows.values():
        assert 0.5 < accuracy <= 1.0 and 0.0 < nll < 2.5
        assert 0.0 <= ece_guo <= 1.0 and 0.0 <= ece_torchmetrics <= 1.0
        assert 0.1 <= confidence <= 1.0 and 0.0 <= at_one <= 1.0
    figure = tmp_path / "mlp_reliability.png"
    assert figure.read_bytes()[:8] == PNG_SIGNATURE


def test_digits_calibration_writes_where_told(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = tmp_path / "figure" / "diagram.png"
    result = run_example("digits_calibration.py", "--out", str(out), "--steps", "3", cwd=tmp_path)
    assert "6 models x 3 steps" in result.stdout
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_tour_shows_every_installed_library_agreeing(tmp_path):
    result = run_example("tour.py", cwd=tmp_path)
    assert "All libraries agree" in result.stdout
    for name, module in (
        ("NumPy", "numpy"),
        ("JAX, jax.jit", "jax"),
        ("PyTorch", "torch"),
        ("array-api-strict", "array_api_strict"),
        ("Dask (lazy)", "dask"),
    ):
        if module == "numpy" or __import__("importlib").util.find_spec(module):
            assert any(line.startswith(name + " ") for line in result.stdout.splitlines()), name


def test_worked_examples_hold(tmp_path):
    result = run_example("worked_examples.py", cwd=tmp_path)
    assert "1.0216512475319814 nats = 1.474 bits" in result.stdout
    assert "1.0996504465365042 nats = 1.586 bits" in result.stdout
    assert "All worked examples hold" in result.stdout


def test_annealed_smoothing_runs_the_optax_and_pytorch_loops(tmp_path):
    result = run_example("annealed_smoothing.py", cwd=tmp_path)
    out = result.stdout
    assert "Both loops annealed epsilon from 0.2 to 0.0" in out
    if importlib.util.find_spec("jax") and importlib.util.find_spec("optax"):
        assert "optax: 60 Adam steps in one jitted lax.scan" in out
        # Each row: step, epsilon seen inside the scan, the eager schedule(step), the loss.
        rows = re.findall(r"^ +(\d+) +([\d.]+) +([\d.]+) +([\d.]+)$", out.split("PyTorch:")[0], re.MULTILINE)
        assert [int(r[0]) for r in rows] == [0, 19, 20, 40, 59]
        assert all(r[1] == r[2] for r in rows) and rows[0][1] == "0.200000"
    else:
        assert "optax: skipped" in out
    if importlib.util.find_spec("torch"):
        assert "EpsilonScheduler(loss, cosine(0.2, 0.0, steps=5))" in out
        assert "the same weights as the uninterrupted run: True" in out
        assert re.search(r"^ +5 +0\.0000 +[\d.]+$", out, re.MULTILINE)  # the last epoch trains without smoothing
    else:
        assert "PyTorch: skipped" in out
    assert list(tmp_path.iterdir()) == []


def test_tiny_language_model_fast_mode_prints_one_row_per_epsilon(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tqdm")
    result = run_example("tiny_language_model.py", cwd=tmp_path)
    number = r"([-+\w.]+)"
    rows = re.findall(r"^\| ([\d.]+) \| " + r" \| ".join([number] * 7) + r" \|$", result.stdout, re.MULTILINE)
    assert [row[0] for row in rows] == ["0", "0.1"]
    vocabulary = int(re.search(r"vocabulary of (\d+)", result.stdout).group(1))
    for row in rows:
        seconds, nll, perplexity, accuracy, ece_guo, ece_torchmetrics, confidence = map(float, row[1:])
        assert all(math.isfinite(v) for v in (seconds, nll, perplexity, accuracy, ece_guo, ece_torchmetrics))
        assert seconds >= 0.0 and 0.0 < nll < math.log(vocabulary) + 1.0
        assert perplexity == pytest.approx(math.exp(nll), rel=1e-3)
        assert 0.0 <= accuracy <= 1.0 and 0.0 <= ece_guo <= 1.0 and 0.0 <= ece_torchmetrics <= 1.0
        assert 1.0 / vocabulary <= confidence <= 1.0
    assert "total wall time" in result.stdout
    assert list(tmp_path.iterdir()) == []
