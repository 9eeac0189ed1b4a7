"""``check_loss``: a user's PyTorch, JAX or NumPy loss checked against labelsmooth under a named convention."""

from __future__ import annotations

import importlib
import operator
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from .._losses import cross_entropy_with_grad
from .._validation import check_choice
from ..typing import Reduction
from ._assertions import assert_close, to_numpy

__all__ = ["check_loss"]


@dataclass(frozen=True)
class _Convention:
    """How a framework names and reduces its smoothed loss, and the labelsmooth options that reproduce it.

    The rows of ``docs/conventions.md`` that ``check_loss`` can drive: the keyword under
    which the user's function takes the smoothing, its default framework and reduction,
    the ``prior`` that reproduces its smoothing distribution, and the keyword options the
    user's function may take (with the framework's names, which are labelsmooth's too).
    """

    smoothing: str
    summary: str
    framework: str = "torch"
    reduction: Reduction = "mean"
    prior: Literal["others"] | None = None
    keywords: frozenset[str] = frozenset()
    ignore_index: int | None = None  # the ignored label a case uses when the function takes ignore_index
    min_classes: int = 1


_CONVENTIONS = {
    "torch": _Convention(
        smoothing="label_smoothing",
        summary="F.cross_entropy: eps/K to every class, PyTorch's class weights, mean over sum w_y",
        keywords=frozenset({"weight", "ignore_index", "reduction"}),
        ignore_index=-100,
    ),
    "optax": _Convention(
        smoothing="alpha",
        summary="softmax_cross_entropy(z, smooth_labels(one_hot(y), alpha)): eps/K, per-sample losses",
        framework="jax",
        reduction="none",
    ),
    "fairseq": _Convention(
        smoothing="epsilon",
        summary="label_smoothed_nll_loss: 1 - eps to the true class, eps/(K-1) to the others, summed",
        reduction="sum",
        prior="others",
        keywords=frozenset({"ignore_index"}),
        # ignore_index stays None: the pad symbol is a class id, the last one in the cases.
        min_classes=2,
    ),
}
_FRAMEWORKS = ("torch", "jax", "numpy")
_DTYPES = ("float64", "float32", "float16", "bfloat16")
_REDUCTIONS: tuple[Reduction, ...] = ("mean", "sum", "none")


class _Case(NamedTuple):
    """One problem: float64 logits ``(N, K)``, int64 labels ``(N,)`` and the options it uses."""

    logits: np.ndarray
    labels: np.ndarray
    epsilon: float
    weight: np.ndarray | None
    ignore_index: int | None
    reduction: Reduction | None  # None: not passed, the convention's default applies


# --- arguments -----------------------------------------------------------------------------------


def _described(value: object) -> str:
    return f"{value!r} of type {type(value).__name__}"


def _x64_enabled() -> bool:
    return bool(sys.modules["jax"].config.read("jax_enable_x64"))


def _checked_dtypes(dtypes: object, framework: str) -> tuple[str, ...]:
    if dtypes is None:
        if framework == "jax" and not _x64_enabled():
            return ("float32",)
        return ("float64", "float32")
    names = (dtypes,) if isinstance(dtypes, str) else dtypes
    if not isinstance(names, Collection) or not names or not all(isinstance(n, str) for n in names):
        msg = f"dtypes must be a dtype name or a non-empty sequence of them ({', '.join(_DTYPES)}), got {dtypes!r}"
        raise TypeError(msg)
    for name in names:
        check_choice("dtypes", name, _DTYPES)
        if framework == "numpy" and name == "bfloat16":
            msg = "dtypes must not hold 'bfloat16' with framework='numpy' (NumPy has no bfloat16), got 'bfloat16'"
            raise ValueError(msg)
        if framework == "jax" and name == "float64" and not _x64_enabled():
            msg = (
                "dtypes holds 'float64' but JAX computes in float32 unless x64 is enabled: call "
                "jax.config.update('jax_enable_x64', True) first, or pass dtypes=('float32',)"
            )
            raise ValueError(msg)
    return tuple(dict.fromkeys(names))


def _checked_options(options: object, convention_name: str, convention: _Convention) -> frozenset[str]:
    if isinstance(options, str) or not isinstance(options, Collection):
        msg = f"options must be a collection of keyword names (e.g. {{'weight', 'reduction'}}), got {options!r}"
        raise TypeError(msg)
    unknown = set(options) - convention.keywords
    if unknown:
        msg = (
            f"options must be a subset of {sorted(convention.keywords)} with convention={convention_name!r} "
            f"(the keywords of that framework's loss), got {sorted(map(str, unknown))} too"
        )
        raise ValueError(msg)
    return frozenset(options)


def _checked_count(name: str, value: object) -> int:
    if isinstance(value, bool):
        msg = f"{name} must be a non-negative int, got {value!r}"
        raise TypeError(msg)
    try:
        count = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        msg = f"{name} must be a non-negative int, got {_described(value)}"
        raise TypeError(msg) from None
    if count < 0:
        msg = f"{name} must be a non-negative int, got {count}"
        raise ValueError(msg)
    return int(count)


# --- cases ---------------------------------------------------------------------------------------


def _pad(num_classes: int) -> int:
    """The ignored label of the fairseq convention: a class id (its pad symbol), the last class."""
    return num_classes - 1


def _grid(convention: _Convention, options: frozenset[str], precise: bool) -> Iterator[_Case]:
    """A fixed grid: K in {1 or 2, 3, 7}, eps in {0, 0.1, 1}, plain, confident and wide rows (offset in float64)."""
    rng = np.random.default_rng(14)
    regimes: list[tuple[float, float, float]] = [(2.0, 0.0, 0.0), (2.0, 0.0, 30.0 if precise else 20.0)]
    # (scale, offset, peak on the true class): rows offset by 1e6 and 1e4-wide rows are
    # exact float64 inputs but beyond what a correct float32 loss can resolve to 1e-5.
    regimes += [(2.0, 1e6, 0.0), (1e4, 0.0, 0.0)] if precise else [(30.0, 0.0, 0.0)]
    index = 0
    for num_classes in (max(1, convention.min_classes), 3, 7):
        for scale, offset, peak in regimes:
            for epsilon in (0.0, 0.1, 1.0):
                labels = rng.integers(0, num_classes, size=4)
                logits = offset + scale * rng.uniform(-1.0, 1.0, size=(4, num_classes))
                logits = logits + peak * (np.arange(num_classes) == labels[:, None])
                weight = rng.uniform(0.25, 4.0, size=num_classes) if "weight" in options and index % 2 else None
                ignore_index = None
                if "ignore_index" in options and index % 3 == 2:
                    ignore_index = _pad(num_classes) if convention.ignore_index is None else convention.ignore_index
                    labels[0] = ignore_index
                reduction = _REDUCTIONS[index % 3] if "reduction" in options else None
                yield _Case(logits, labels, epsilon, weight, ignore_index, reduction)
                index += 1


def _hypothesis_cases(convention: _Convention, options: frozenset[str], precise: bool) -> Any:
    """Hypothesis draws of ``labelsmooth.testing.strategies.cross_entropy_cases`` as ``_Case`` rows."""
    from .strategies import cross_entropy_cases

    reductions = _REDUCTIONS if "reduction" in options else (convention.reduction,)
    drawn = cross_entropy_cases(
        options={"epsilon"} | (options & {"weight", "ignore_index"}),
        target_kinds=("labels",),
        reductions=reductions,
        max_batch_dims=1,
        max_batch_size=4,
        max_classes=7,
        # Float32 and below: no offset rows nor 1e4-wide rows (see check_loss).
        max_scale=1e4 if precise else 30.0,
        max_offset=1e6 if precise else 0.0,
    )

    def as_case(case: Any) -> _Case:
        logits, labels = np.atleast_2d(case.logits), np.atleast_1d(case.targets).astype(np.int64)
        ignore_index = case.options.get("ignore_index")
        if ignore_index is not None and convention.ignore_index is None:
            # fairseq's pad is a class id: the drawn ignored samples take the last class.
            pad = _pad(logits.shape[-1])
            labels, ignore_index = np.where(labels == ignore_index, pad, labels), pad
        return _Case(
            logits,
            labels,
            float(case.options.get("epsilon", 0.0)),
            case.options.get("weight"),
            ignore_index,
            case.options["reduction"] if "reduction" in options else None,
        )

    return drawn.filter(lambda case: case.logits.shape[-1] >= convention.min_classes).map(as_case)


# --- frameworks ----------------------------------------------------------------------------------


class _Framework:
    """Conversion of NumPy inputs to one framework's arrays, and its autodiff."""

    def __init__(self, name: str, device: Any) -> None:
        self.name, self.device = name, device
        self.module = importlib.import_module({"torch": "torch", "jax": "jax.numpy", "numpy": "numpy"}[name])

    def floats(self, a: np.ndarray, dtype: str) -> Any:
        if self.name == "torch":
            return self.module.from_numpy(a).to(device=self.device or "cpu", dtype=getattr(self.module, dtype))
        if self.name == "jax":
            x = self.module.asarray(a, dtype=getattr(self.module, dtype))
            return x if self.device is None else sys.modules["jax"].device_put(x, self.device)
        return a.astype(dtype)

    def labels(self, a: np.ndarray) -> Any:
        if self.name == "torch":
            return self.module.from_numpy(a).to(device=self.device or "cpu")
        if self.name == "jax":
            x = self.module.asarray(a, dtype=self.module.int64 if _x64_enabled() else self.module.int32)
            return x if self.device is None else sys.modules["jax"].device_put(x, self.device)
        return a

    def loss_and_grad(self, fn: Callable[..., Any], logits: Any, labels: Any, kwargs: dict[str, Any]) -> Any:
        """``(loss, gradient of loss.sum() w.r.t. logits)``."""
        __tracebackhide__ = True
        if self.name == "torch":
            torch = self.module
            logits = logits.detach().requires_grad_(True)
            loss = fn(logits, labels, **kwargs)
            (grad,) = torch.autograd.grad(loss.sum(), logits)
            return loss.detach(), grad
        jax = sys.modules["jax"]
        loss, pullback = jax.vjp(lambda z: fn(z, labels, **kwargs), logits)
        (grad,) = pullback(self.module.ones_like(loss))
        return loss, grad


# --- comparison ----------------------------------------------------------------------------------


def _assignment(name: str, a: np.ndarray) -> str:
    """``  name = [...]`` with every digit of ``a`` (paste it to rebuild the case), rows aligned."""
    prefix = f"  {name} = "
    text = np.array2string(
        np.asarray(a), separator=", ", floatmode="unique", threshold=400, max_line_width=110, prefix=prefix
    )
    return prefix + text


def _keyword_text(case: _Case, convention: _Convention) -> tuple[dict[str, str], dict[str, str]]:
    """The keywords given to the user's function and to labelsmooth, as text."""
    theirs = {convention.smoothing: repr(case.epsilon)}
    ours = {"epsilon": repr(case.epsilon)}
    if convention.prior is not None:
        ours["prior"] = repr(convention.prior)
    if case.weight is not None:
        theirs["weight"] = ours["weight"] = "weight"
    if case.ignore_index is not None:
        theirs["ignore_index"] = ours["ignore_index"] = repr(case.ignore_index)
    if case.reduction is not None:
        theirs["reduction"] = repr(case.reduction)
    ours["reduction"] = repr(case.reduction or convention.reduction)
    return theirs, ours


def _case_text(
    fn_name: str, case: _Case, logits: np.ndarray, weight: np.ndarray | None, convention: _Convention
) -> str:
    theirs, ours = _keyword_text(case, convention)
    lines = [
        f"  call:      {fn_name}(logits, labels, {', '.join(f'{k}={v}' for k, v in theirs.items())})",
        f"  reference: labelsmooth.cross_entropy(logits, labels, {', '.join(f'{k}={v}' for k, v in ours.items())})",
        _assignment("logits", logits),
        _assignment("labels", case.labels),
    ]
    if weight is not None:
        lines.append(_assignment("weight", weight))
    return "\n".join(lines)


def _function_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


@dataclass(frozen=True)
class _Check:
    fn: Callable[..., Any]
    convention_name: str
    convention: _Convention
    framework: _Framework
    grad: bool
    rtol: float | None
    atol: float | None

    def run(self, case: _Case, dtype: str, origin: str) -> None:
        __tracebackhide__ = True
        logits = self.framework.floats(case.logits, dtype)
        labels = self.framework.labels(case.labels)
        weight = None if case.weight is None else self.framework.floats(case.weight, dtype)
        # The reference is the exact loss *of the values the function received* (rounded to dtype).
        logits64 = to_numpy(logits)[0].astype(np.float64)
        weight64 = None if weight is None else to_numpy(weight)[0].astype(np.float64)
        optional = {"weight": weight, "ignore_index": case.ignore_index, "reduction": case.reduction}
        kwargs = {self.convention.smoothing: case.epsilon, **{k: v for k, v in optional.items() if v is not None}}
        expected_loss, expected_grad = cross_entropy_with_grad(
            logits64,
            case.labels,
            epsilon=case.epsilon,
            prior=self.convention.prior,
            weight=weight64,
            ignore_index=case.ignore_index,
            reduction=case.reduction or self.convention.reduction,
        )
        where = f"{origin}, {self.framework.name} {dtype}"
        fn_name = _function_name(self.fn)
        details = _case_text(fn_name, case, logits64, weight64, self.convention)
        try:
            if self.grad:
                loss, grad = self.framework.loss_and_grad(self.fn, logits, labels, kwargs)
            else:
                loss, grad = self.fn(logits, labels, **kwargs), None
        except Exception as exc:
            msg = f"check_loss: {fn_name} raised {type(exc).__name__}: {exc}\n({where})\n{details}"
            raise AssertionError(msg) from exc
        self._compare("loss", loss, expected_loss, where, details)
        if grad is not None:
            self._compare("gradient of loss.sum() w.r.t. logits", grad, expected_grad, where, details)

    def _compare(self, what: str, actual: Any, desired: np.ndarray, where: str, details: str) -> None:
        __tracebackhide__ = True
        try:
            assert_close(actual, desired, rtol=self.rtol, atol=self.atol)
        except AssertionError as exc:
            msg = (
                f"check_loss: the {what} of {_function_name(self.fn)} differs from labelsmooth under "
                f"convention={self.convention_name!r} ({self.convention.summary}) on this case ({where}):\n"
                f"{details}\n{exc}"
            )
            raise AssertionError(msg) from None


def check_loss(
    fn: Callable[..., Any],
    /,
    *,
    convention: str = "torch",
    framework: str | None = None,
    options: Collection[str] = (),
    grad: bool = False,
    dtypes: str | Sequence[str] | None = None,
    max_examples: int = 50,
    device: Any = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    __tracebackhide__ = True
    if not callable(fn):
        msg = f"fn must be a callable loss fn(logits, labels, **keywords), got {_described(fn)}"
        raise TypeError(msg)
    convention = check_choice("convention", convention, sorted(_CONVENTIONS))
    spec = _CONVENTIONS[convention]
    framework = spec.framework if framework is None else check_choice("framework", framework, _FRAMEWORKS)
    chosen = _checked_options(options, convention, spec)
    if not isinstance(grad, bool):
        msg = f"grad must be a bool, got {_described(grad)}"
        raise TypeError(msg)
    if grad and framework == "numpy":
        msg = "grad must be False with framework='numpy' (NumPy has no autodiff), got grad=True"
        raise ValueError(msg)
    examples = _checked_count("max_examples", max_examples)
    frame = _Framework(framework, device)
    names = _checked_dtypes(dtypes, framework)
    check = _Check(fn, convention, spec, frame, grad, rtol, atol)
    for dtype in names:
        for number, case in enumerate(_grid(spec, chosen, dtype == "float64")):
            check.run(case, dtype, f"grid case {number}")
    if examples and _hypothesis_installed():
        _run_hypothesis(check, spec, chosen, names, examples)


check_loss.__doc__ = r"""Check a smoothed loss of PyTorch, JAX or NumPy against labelsmooth under a convention.

    ``fn(logits, labels, **keywords)`` is called on the framework's arrays, logits of shape
    ``(N, K)`` and integer labels of shape ``(N,)``, with the smoothing under the
    convention's own keyword and the options listed in ``options``; its result (and, with
    ``grad=True``, the gradient of its sum with respect to ``logits`` by the framework's
    autodiff) must match :func:`labelsmooth.cross_entropy` with the options that
    reproduce that convention, on the values ``fn`` received (the reference is computed
    in float64 from the logits rounded to the dtype under test):

    .. math::

        \ell_i = -\sum_k w_k\, q'_{ik} \log p_{ik}, \qquad
        q'_i = (1 - \varepsilon)\, e_{y_i} + \varepsilon\, u

    (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision",
    section 7), where the convention fixes ``u``, the keyword names and the reduction
    (the rows of ``docs/conventions.md``):

    ==============  ====================  =================================================
    ``convention``  ``fn``'s keywords     labelsmooth call that it must equal
    ==============  ====================  =================================================
    ``"torch"``     ``label_smoothing``;  ``cross_entropy(z, y, epsilon=eps, weight=w,
                    ``weight``,           ignore_index=i, reduction=r)``: ``u = 1/K``,
                    ``ignore_index``,     PyTorch's class weights, ``"mean"`` over
                    ``reduction``         ``sum w_y`` (also Liger, timm, Hugging Face)
    ``"optax"``     ``alpha``             ``cross_entropy(z, y, epsilon=alpha,
                                          reduction="none")``: ``u = 1/K``, per sample
    ``"fairseq"``   ``epsilon``;          ``cross_entropy(z, y, epsilon=eps,
                    ``ignore_index``      prior="others", ignore_index=pad,
                                          reduction="sum")``: ``eps/(K-1)`` to each other
                                          class; the pad is a class id
    ==============  ====================  =================================================

    The smoothing is always passed (0.0 included); an optional keyword is passed only
    when listed in ``options`` and used by the case (``reduction`` then always: one of
    ``"mean"``, ``"sum"``, ``"none"``). Wrap a function with other names:
    ``check_loss(lambda z, y, label_smoothing: my_loss(z, y, smoothing=label_smoothing))``.

    The cases: a fixed grid first (``K`` of 1 or 2, 3 and 7; ``eps`` in 0, 0.1, 1;
    plain rows, confident rows, and in float64 rows offset by 1e6 and 1e4-wide rows),
    then ``max_examples`` draws of :func:`labelsmooth.testing.strategies.cross_entropy_cases`
    when hypothesis is installed (derandomized, so every run checks the same cases; the
    first failure is shrunk to a minimal case). Float32 and lower-precision cases keep the
    logits within ``[-30, 30]`` plus a peak, where a correct implementation in that
    dtype meets its tolerance. Each case is checked with :func:`assert_close`.

    Parameters
    ----------
    fn : callable
        The loss under test, e.g. ``torch.nn.functional.cross_entropy`` or a
        ``torch.nn.Module`` instance taking the smoothing per call (wrap a module that
        takes it at construction in a function that builds it).
    convention : {"torch", "optax", "fairseq"}, default "torch"
    framework : {"torch", "jax", "numpy"}, optional
        The arrays ``fn`` receives; default the convention's (``"torch"``, ``"jax"``,
        ``"torch"``). ``"numpy"`` allows no ``grad``.
    options : collection of str, default ()
        The convention's optional keywords that ``fn`` takes (``"weight"``,
        ``"ignore_index"``, ``"reduction"`` for ``"torch"``; ``"ignore_index"`` for
        ``"fairseq"``). Cases draw class weights, ignored samples and reductions only
        for those listed.
    grad : bool, default False
        Also compare the gradient of ``fn(...).sum()`` with respect to the logits
        (``torch.autograd.grad``, ``jax.vjp``) with :func:`labelsmooth.cross_entropy_grad`.
    dtypes : str or sequence of {"float64", "float32", "float16", "bfloat16"}, optional
        The logits' dtypes under test (class weights too). Default float64 and float32;
        float32 only for JAX without x64.
    max_examples : int, default 50
        Hypothesis draws after the grid (0: the grid only).
    device : optional
        Where the arrays are put: a ``torch.device`` or its name (``"cuda"``), or a JAX
        device. Default the CPU (torch) or the default device (JAX).
    rtol, atol : float, optional
        Tolerances for :func:`assert_close`; default those of the less precise dtype of
        ``fn``'s result and float64 (:data:`DEFAULT_TOLERANCES`).

    Raises
    ------
    AssertionError
        On the first differing case: which convention, framework and dtype, the call
        made and its labelsmooth equivalent, the case's logits, labels and weights
        (paste them to reproduce it), and :func:`assert_close`'s report of the largest
        absolute and relative errors and where they occur. Also when ``fn`` raises (the
        exception is chained).
    TypeError, ValueError
        Arguments of the wrong type or value (named in the message); ``dtypes`` with
        float64 under JAX without x64.
    ImportError
        The framework is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from labelsmooth.testing import check_loss
    >>> def my_loss(z, y, label_smoothing):  # NumPy, PyTorch's convention, mean over samples
    ...     log_p = z - z.max(-1, keepdims=True)
    ...     log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
    ...     nll = -log_p[np.arange(len(y)), y]
    ...     return np.mean((1 - label_smoothing) * nll - label_smoothing * log_p.mean(-1))
    >>> check_loss(my_loss, framework="numpy", max_examples=0)
    >>> half = lambda z, y, label_smoothing: my_loss(z, y, label_smoothing / 2)
    >>> check_loss(half, framework="numpy")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: check_loss: the loss of <lambda> differs from labelsmooth under convention='torch' ...
    """


def _hypothesis_installed() -> bool:
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        return False
    return True


def _run_hypothesis(
    check: _Check, spec: _Convention, options: frozenset[str], dtypes: tuple[str, ...], examples: int
) -> None:
    __tracebackhide__ = True
    for dtype in dtypes:
        _hypothesis_test(check, spec, options, dtype, examples)()


def _hypothesis_test(
    check: _Check, spec: _Convention, options: frozenset[str], dtype: str, examples: int
) -> Callable[[], None]:
    """A hypothesis test of ``check`` on drawn cases in ``dtype``: reproducible, one failure shrunk and raised."""
    from hypothesis import HealthCheck, Phase, given, settings

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
    )
    @given(_hypothesis_cases(spec, options, dtype == "float64"))
    def drawn(case: _Case) -> None:
        __tracebackhide__ = True
        check.run(case, dtype, "hypothesis case")

    return drawn  # type: ignore[no-any-return]
