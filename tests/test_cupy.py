"""CuPy: every public function returns CuPy arrays on the input's device, equal to the references.

References are independent of labelsmooth (``np.eye``, ``scipy.special``, the dense
definition in ``tests/_formulas.py``), evaluated in float64 on the host. Skipped when
CuPy is not importable or no CUDA device is present. With several GPUs the inputs are
placed on the last one, so that a result created on the default device would be caught.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
try:
    DEVICE_COUNT = cupy.cuda.runtime.getDeviceCount()
except Exception:  # no driver, no device: CuPy imports but cannot run anything
    DEVICE_COUNT = 0
if DEVICE_COUNT == 0:
    pytest.skip("no CUDA device for CuPy", allow_module_level=True)

special = pytest.importorskip("scipy.special")

from _formulas import cross_entropy_rows  # noqa: E402

import labelsmooth as ls  # noqa: E402

N, K = 9, 7
EPSILON = 0.2
DEVICE_ID = DEVICE_COUNT - 1
TOLERANCE = {np.float32: (2e-5, 2e-6), np.float64: (1e-12, 1e-14)}


@pytest.fixture
def device() -> Any:
    with cupy.cuda.Device(DEVICE_ID) as dev:
        yield dev


def on_device(a: np.ndarray) -> Any:
    with cupy.cuda.Device(DEVICE_ID):
        return cupy.asarray(a)


def check(result: Any, expected: np.ndarray, dtype: Any) -> None:
    """A CuPy array of ``dtype`` on the input's device, equal to ``expected`` to rounding."""
    assert isinstance(result, cupy.ndarray), type(result)
    assert result.device.id == DEVICE_ID
    assert result.dtype == dtype
    rtol, atol = TOLERANCE.get(np.dtype(dtype).type, (0, 0))
    np.testing.assert_allclose(cupy.asnumpy(result).astype(np.float64), expected, rtol=rtol, atol=atol)


@pytest.fixture
def data(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "logits": rng.normal(scale=2.0, size=(N, K)),
        "labels": rng.integers(0, K, size=N),
        "probs": rng.dirichlet(np.ones(K), size=N),
        "weight": rng.uniform(0.3, 2.0, size=K),
        "prior": rng.dirichlet(np.ones(K)),
        "eps": rng.uniform(0.0, 0.4, size=N),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_and_targets(device: Any, data: dict[str, np.ndarray], dtype: Any) -> None:
    z = data["logits"].astype(dtype)
    z64 = z.astype(np.float64)
    zc, yc, qc = on_device(z), on_device(data["labels"]), on_device(data["probs"].astype(dtype))
    q64 = data["probs"].astype(dtype).astype(np.float64)
    eye = np.eye(K)[data["labels"]]
    check(ls.logsumexp(zc), special.logsumexp(z64, axis=-1), dtype)
    check(ls.log_softmax(zc), special.log_softmax(z64, axis=-1), dtype)
    check(ls.softmax(zc), special.softmax(z64, axis=-1), dtype)
    check(ls.one_hot(yc, K, dtype=dtype), eye, dtype)
    check(ls.one_hot(yc, K), eye, cupy.float64)
    check(ls.smooth_labels(qc, EPSILON), (1 - EPSILON) * q64 + EPSILON / K, dtype)
    check(
        ls.smooth_labels(qc, EPSILON, prior=on_device(data["prior"].astype(dtype))),
        (1 - EPSILON) * q64 + EPSILON * data["prior"].astype(dtype),
        dtype,
    )
    check(
        ls.soft_targets(yc, K, epsilon=on_device(data["eps"]), prior="others", dtype=dtype),
        (1 - data["eps"][:, None]) * eye + data["eps"][:, None] * (1 - eye) / (K - 1),
        dtype,
    )


OPTIONS = {
    "plain": {},
    "smoothed": {"epsilon": EPSILON},
    "others": {"epsilon": EPSILON, "prior": "others"},
    "prior": {"epsilon": EPSILON, "prior": "prior"},
    "per_sample_eps": {"epsilon": "eps"},
    "weighted_ignored": {"epsilon": EPSILON, "weight": "weight", "ignore_index": 1},
    "masked": {"epsilon": EPSILON, "where": "where"},
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", OPTIONS)
def test_losses_and_gradients(device: Any, data: dict[str, np.ndarray], case: str, reduction: str, dtype: Any) -> None:
    z = data["logits"].astype(dtype)
    y = data["labels"].copy()
    allowed = np.ones(K, dtype=bool)
    allowed[[2, 5]] = False
    arrays = dict(data, where=allowed)
    ours, ref = {}, {}
    for name, value in OPTIONS[case].items():
        if isinstance(value, str):
            host = arrays[value].astype(dtype) if arrays[value].dtype.kind == "f" else arrays[value]
            ours[name], ref[name] = on_device(host), host
        else:
            ours[name] = ref[name] = value
    if "where" in ours:
        y = np.where(allowed[y], y, 0)
    if "ignore_index" in ours:
        y[0] = ours["ignore_index"]
    zc, yc = on_device(z), on_device(y)
    original = z.copy()
    ref_loss, ref_grad = cross_entropy_rows(z, y, reduction=reduction, **ref)
    check(ls.cross_entropy(zc, yc, reduction=reduction, **ours), ref_loss, dtype)
    check(ls.cross_entropy_grad(zc, yc, reduction=reduction, **ours), ref_grad, dtype)
    loss, grad = ls.cross_entropy_with_grad(zc, yc, reduction=reduction, **ours)
    check(loss, ref_loss, dtype)
    check(grad, ref_grad, dtype)
    np.testing.assert_array_equal(cupy.asnumpy(zc), original)  # no write-back


def test_probability_targets_and_class_axis(device: Any, data: dict[str, np.ndarray]) -> None:
    z, q = data["logits"], data["probs"]
    ref_loss, ref_grad = cross_entropy_rows(z, q, epsilon=EPSILON, weight=data["weight"])
    loss, grad = ls.cross_entropy_with_grad(
        on_device(z.T.copy()), on_device(q.T.copy()), epsilon=EPSILON, weight=on_device(data["weight"]), axis=0
    )
    check(loss, ref_loss, cupy.float64)
    check(grad, ref_grad.T, cupy.float64)


def test_invalid_labels_raise_on_device(device: Any, data: dict[str, np.ndarray]) -> None:
    y = data["labels"].copy()
    y[2] = K
    with pytest.raises(ValueError, match="targets"):
        ls.cross_entropy(on_device(data["logits"]), on_device(y))
    with pytest.raises(ValueError, match="labels"):
        ls.one_hot(on_device(y), K)
