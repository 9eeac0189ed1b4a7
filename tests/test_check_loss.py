"""labelsmooth.testing.check_loss: correct losses pass, wrong ones fail saying which case and by how much;
and the frames of labelsmooth.testing stay out of the tracebacks pytest shows."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from labelsmooth.testing import check_loss

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
TORCH_OPTIONS = {"weight", "ignore_index", "reduction"}


def numpy_loss(z, y, label_smoothing):
    """PyTorch's convention in NumPy: (1 - eps) nll + eps mean_k(-log p_k), mean over samples."""
    log_p = z - z.max(-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_p, y[:, None], axis=-1)[:, 0]
    return np.mean((1 - label_smoothing) * nll - label_smoothing * log_p.mean(-1))


def _failure(fn, **keywords) -> str:
    with pytest.raises(AssertionError) as info:
        check_loss(fn, **keywords)
    return str(info.value)


# --- PyTorch -------------------------------------------------------------------------------------


def test_pytorch_cross_entropy_passes_with_every_option_and_its_gradient():
    torch = pytest.importorskip("torch")
    check_loss(torch.nn.functional.cross_entropy, options=TORCH_OPTIONS, grad=True, max_examples=15)


def test_smoothing_over_the_other_classes_fails_with_the_case_and_the_errors():
    torch = pytest.importorskip("torch")

    def over_k_minus_one(input, target, label_smoothing):
        # A common slip: eps / (K - 1) to each other class, with PyTorch's keyword.
        log_p = torch.log_softmax(input, dim=-1)
        nll = -log_p.gather(-1, target[:, None])[:, 0]
        others = -(log_p.sum(-1) + nll * -1) / max(input.shape[-1] - 1, 1)
        return ((1 - label_smoothing) * nll + label_smoothing * others).mean()

    text = _failure(over_k_minus_one, dtypes="float64")
    assert text.startswith("check_loss: the loss of ")
    assert "over_k_minus_one differs from labelsmooth under convention='torch'" in text
    assert "(grid case " in text and "torch float64" in text
    assert re.search(r"call: +test_.*over_k_minus_one\(logits, labels, label_smoothing=0\.1\)", text)
    assert "reference: labelsmooth.cross_entropy(logits, labels, epsilon=0.1, reduction='mean')" in text
    # The case's values, every digit, to paste; then assert_close's report.
    logits = re.search(r"logits = (\[\[.*?\]\])\n", text, re.DOTALL).group(1)
    assert np.asarray(eval(logits)).ndim == 2
    assert "labels = [" in text
    assert re.search(r"Max absolute error: \S+ at index \(\) \(actual \S+, desired \S+\)", text)
    assert "Arrays are not close (rtol=1e-12" in text


def test_a_wrong_reduction_fails():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    def summed(input, target, label_smoothing, reduction="mean"):
        return F.cross_entropy(input, target, label_smoothing=label_smoothing, reduction="sum")

    text = _failure(summed, dtypes="float32", max_examples=0)
    assert "reduction='mean'" in text and "torch float32" in text
    text = _failure(summed, options={"reduction"}, dtypes="float32", max_examples=0)
    assert "reduction='none'" in text and "Shapes differ: actual (), desired (4,)" in text


def test_a_wrong_gradient_fails_only_when_gradients_are_checked():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    class HalfGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            return z.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad / 2

    def loss(input, target, label_smoothing):
        return F.cross_entropy(HalfGradient.apply(input), target, label_smoothing=label_smoothing)

    check_loss(loss, max_examples=5)
    text = _failure(loss, grad=True, max_examples=5)
    assert "the gradient of loss.sum() w.r.t. logits of " in text and "Mismatched elements" in text


def test_a_bug_beyond_the_grid_is_found_by_hypothesis_and_shrunk():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    def wrong_for_five_classes(input, target, label_smoothing):
        loss = F.cross_entropy(input, target, label_smoothing=label_smoothing)
        return loss * 1.001 if input.shape[-1] == 5 else loss  # the grid has K = 1, 3, 7

    text = _failure(wrong_for_five_classes, dtypes="float32", max_examples=50)
    assert "(hypothesis case, torch float32)" in text
    assert "logits = [[0., 0., 0., 0., 0.]]" in text  # shrunk to the simplest case
    assert "labels = [0]" in text and "label_smoothing=0.0" in text


def test_an_exception_of_the_loss_fails_the_check_and_is_chained():
    pytest.importorskip("torch")

    def no_keywords(input, target):
        return input.sum()

    with pytest.raises(AssertionError, match=r"no_keywords raised TypeError: .*label_smoothing") as info:
        check_loss(no_keywords, max_examples=0)
    assert isinstance(info.value.__cause__, TypeError)
    assert "call:      " in str(info.value) and "logits = " in str(info.value)


def test_fairseq_convention():
    torch = pytest.importorskip("torch")

    def label_smoothed_nll_loss(lprobs, target, epsilon, ignore_index=None, reduce=True, eps_over_k=False):
        """fairseq/criterions/label_smoothed_cross_entropy.py, written out (eps_over_k: before 2021)."""
        target = target.unsqueeze(-1)
        nll_loss = -lprobs.gather(dim=-1, index=target)
        smooth_loss = -lprobs.sum(dim=-1, keepdim=True)
        if ignore_index is not None:
            pad_mask = target.eq(ignore_index)
            nll_loss.masked_fill_(pad_mask, 0.0)
            smooth_loss.masked_fill_(pad_mask, 0.0)
        nll_loss, smooth_loss = nll_loss.sum(), smooth_loss.sum()
        if eps_over_k:
            return (1.0 - epsilon) * nll_loss + epsilon / lprobs.size(-1) * smooth_loss
        eps_i = epsilon / (lprobs.size(-1) - 1)
        return (1.0 - epsilon - eps_i) * nll_loss + eps_i * smooth_loss

    def fairseq(z, y, epsilon, ignore_index=None):
        return label_smoothed_nll_loss(torch.log_softmax(z, dim=-1), y, epsilon, ignore_index)

    def fairseq_before_2021(z, y, epsilon):
        return label_smoothed_nll_loss(torch.log_softmax(z, dim=-1), y, epsilon, eps_over_k=True)

    check_loss(fairseq, convention="fairseq", options={"ignore_index"}, grad=True, max_examples=20)
    text = _failure(fairseq_before_2021, convention="fairseq", max_examples=0)
    assert "convention='fairseq'" in text and "eps/(K-1) to the others" in text
    assert "prior='others'" in text and "reduction='sum'" in text


# --- JAX and optax -------------------------------------------------------------------------------


def _optax_loss():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")

    def loss(logits, labels, alpha):
        targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), alpha)
        return optax.softmax_cross_entropy(logits, targets)

    return jax, optax, loss


@pytest.mark.slow
def test_optax_loss_passes_with_its_gradient():
    jax, _, loss = _optax_loss()
    check_loss(jax.jit(loss), convention="optax", grad=True, max_examples=25)


@pytest.mark.slow
def test_optax_losses_with_a_wrong_reduction_or_smoothing_fail():
    jax, optax, loss = _optax_loss()
    jnp = jax.numpy
    text = _failure(jax.jit(lambda z, y, alpha: jnp.mean(loss(z, y, alpha))), convention="optax", max_examples=0)
    assert "convention='optax'" in text and "jax float32" in text and "Shapes differ: actual (), desired (4,)" in text

    def others(logits, labels, alpha):
        # The clamp form, eps / (K - 1) off the true class: fairseq's convention, not optax's.
        k = logits.shape[-1]
        targets = jnp.clip(jax.nn.one_hot(labels, k), alpha / max(k - 1, 1), 1 - alpha)
        return optax.softmax_cross_entropy(logits, targets)

    text = _failure(jax.jit(others), convention="optax", max_examples=0)
    assert "alpha=0.1" in text and "epsilon=0.1, reduction='none'" in text and "Mismatched elements" in text


@pytest.mark.slow
def test_torch_convention_on_jax_arrays():
    jax, optax, _ = _optax_loss()

    def torch_style(input, target, label_smoothing, reduction="mean"):
        k = input.shape[-1]
        per_sample = optax.softmax_cross_entropy(input, optax.smooth_labels(jax.nn.one_hot(target, k), label_smoothing))
        return per_sample if reduction == "none" else per_sample.sum() / (1 if reduction == "sum" else len(target))

    check_loss(torch_style, framework="jax", options={"reduction"}, grad=True, max_examples=0)


# --- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keywords", "error", "message"),
    [
        ({"convention": "keras"}, ValueError, "convention must be one of 'fairseq', 'optax', 'torch', got 'keras'"),
        ({"convention": None}, TypeError, "convention must be a str, one of .*, got None of type NoneType"),
        ({"framework": "tensorflow"}, ValueError, "framework must be one of 'torch', 'jax', 'numpy', got 'tensorflow'"),
        (
            {"framework": "numpy", "options": {"weight", "prior"}},
            ValueError,
            r"options must be a subset of \['ignore_index', 'reduction', 'weight'\] with convention='torch' .*"
            r"got \['prior'\] too",
        ),
        ({"framework": "numpy", "options": "weight"}, TypeError, "options must be a collection of keyword names"),
        ({"framework": "numpy", "convention": "optax", "options": {"weight"}}, ValueError, r"subset of \[\]"),
        ({"framework": "numpy", "grad": 1}, TypeError, "grad must be a bool, got 1 of type int"),
        ({"framework": "numpy", "grad": True}, ValueError, "grad must be False with framework='numpy'"),
        (
            {"framework": "numpy", "dtypes": "float128"},
            ValueError,
            "dtypes must be one of 'float64', .*, got 'float128'",
        ),
        ({"framework": "numpy", "dtypes": ()}, TypeError, "dtypes must be a dtype name or a non-empty sequence"),
        ({"framework": "numpy", "dtypes": "bfloat16"}, ValueError, "NumPy has no bfloat16"),
        ({"framework": "numpy", "max_examples": -1}, ValueError, "max_examples must be a non-negative int, got -1"),
        ({"framework": "numpy", "max_examples": 2.5}, TypeError, "max_examples must be a non-negative int, got 2.5"),
    ],
)
def test_arguments_are_checked(keywords, error, message):
    with pytest.raises(error, match=message):
        check_loss(numpy_loss, **keywords)


def test_fn_must_be_callable():
    with pytest.raises(TypeError, match=r"fn must be a callable loss fn\(logits, labels, \*\*keywords\), got 3"):
        check_loss(3)


@pytest.mark.slow
def test_jax_float64_needs_x64():
    pytest.importorskip("jax")
    with pytest.raises(ValueError, match="jax_enable_x64"):
        check_loss(numpy_loss, convention="optax", dtypes=("float64",))


def test_numpy_losses_and_lower_precision_dtypes():
    check_loss(numpy_loss, framework="numpy", dtypes=("float64", "float32", "float16"), max_examples=10)
    text = _failure(lambda z, y, label_smoothing: numpy_loss(z, y, label_smoothing / 2), framework="numpy")
    assert "<lambda>" in text and "numpy float64" in text


@pytest.mark.slow
def test_without_hypothesis_the_grid_still_runs():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["hypothesis"] = None
        import numpy as np
        sys.path.insert(0, "tests")
        from test_check_loss import numpy_loss
        from labelsmooth.testing import check_loss
        check_loss(numpy_loss, framework="numpy")
        try:
            check_loss(lambda z, y, label_smoothing: numpy_loss(z, y, 0.0), framework="numpy")
        except AssertionError as exc:
            print("caught:", str(exc).splitlines()[0])
        print("hypothesis" in sys.modules and sys.modules["hypothesis"] is None)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "caught: check_loss: the loss of <lambda> differs" in out
    assert out.strip().endswith("True")


# --- tracebacks ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_failures_show_the_users_line_not_labelsmooths_frames(pytester):
    pytester.makepyfile(
        test_user=textwrap.dedent(
            """
            import numpy as np
            from labelsmooth.testing import assert_close, check_loss

            def test_values():
                assert_close(np.asarray([1.0, 2.0]), np.asarray([1.0, 2.5]))  # the user's line

            def test_nan():
                assert_close(np.asarray([np.nan]), np.asarray([1.0]))  # a failure raised by a helper

            def test_loss():
                check_loss(lambda z, y, label_smoothing: z.sum(), framework="numpy")  # the user's check
            """
        )
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-n", "0")
    result.assert_outcomes(failed=3)
    output = result.stdout.str()
    for marker in ("# the user's line", "# a failure raised by a helper", "# the user's check"):
        assert re.search(rf"^>\s+.*{re.escape(marker)}$", output, re.MULTILINE), marker
    assert "labelsmooth/testing" not in output and "_assertions.py" not in output and "_check.py" not in output
    assert "E       AssertionError: Arrays are not close" in output
    assert "E       AssertionError: check_loss: the loss of test_loss.<locals>.<lambda> differs" in output


def test_check_loss_is_public():
    import labelsmooth.testing

    assert "check_loss" in labelsmooth.testing.__all__
    assert labelsmooth.testing.check_loss is check_loss and "Szegedy" in check_loss.__doc__
