"""The ``backend`` fixture: every test runs on every array library installed here.

``backend.asarray(numpy_array)`` makes an input of that library, ``backend.call(fn, ...)``
calls a public function the way a user of that library would (under ``jax.jit`` for
``jax_jit``, building a graph that must not compute for ``dask``), and
``backend.to_numpy(result)`` brings the result back for comparison with references
computed independently in NumPy / PyTorch / mpmath.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

BACKENDS = ["numpy", "numpy_readonly", "array_api_strict", "jax", "jax_jit", "torch", "dask", "cupy"]
EAGER = {"numpy", "numpy_readonly", "array_api_strict", "jax", "torch", "cupy"}


def _available(name: str) -> bool:
    module = {"numpy_readonly": "numpy", "jax_jit": "jax"}.get(name, name)
    if importlib.util.find_spec(module) is None:
        return False
    if name == "cupy":
        try:
            import cupy

            return cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:
            return False
    return True


class _NoCompute:
    """A Dask scheduler that fails the test if anything is computed."""

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        msg = "the Dask graph was computed inside a labelsmooth function (it must stay lazy)"
        raise AssertionError(msg)


class Backend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.eager = name in EAGER
        if name in ("numpy", "numpy_readonly"):
            self.module = np
        elif name == "array_api_strict":
            import array_api_strict

            self.module = array_api_strict
        elif name in ("jax", "jax_jit"):
            import jax.numpy as jnp

            self.module = jnp
        elif name == "torch":
            import torch

            self.module = torch
        elif name == "dask":
            import dask.array

            self.module = dask.array
        elif name == "cupy":
            import cupy

            self.module = cupy
        self.xp = array_api_compat.array_namespace(self.asarray(np.zeros(1)))

    def __repr__(self) -> str:
        return f"Backend({self.name})"

    def dtype(self, np_dtype: Any) -> Any:
        return getattr(self.xp, np.dtype(np_dtype).name)

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        a = np.asarray(a, dtype=dtype)
        if self.name == "numpy":
            return a.copy()
        if self.name == "numpy_readonly":
            a = a.copy()
            a.flags.writeable = False
            return a
        if self.name == "torch":
            import torch

            return torch.from_numpy(a.copy())
        if self.name == "dask":
            import dask.array

            chunks = tuple(max(1, (s + 1) // 2) for s in a.shape) if a.ndim else ()
            return dask.array.from_array(a.copy(), chunks=chunks or a.shape)
        return self.module.asarray(a.copy())

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` as a user of this library would."""
        if self.name == "jax_jit":
            import jax

            is_array = array_api_compat.is_array_api_obj
            arrays = {k: v for k, v in kwargs.items() if is_array(v)}
            static = {k: v for k, v in kwargs.items() if k not in arrays}
            positions = [i for i, a in enumerate(args) if is_array(a)]

            def traced(positional_arrays: Any, array_kwargs: Any) -> Any:
                merged = list(args)
                for i, a in zip(positions, positional_arrays):
                    merged[i] = a
                return fn(*merged, **array_kwargs, **static)

            return jax.jit(traced)([args[i] for i in positions], arrays)
        if self.name == "dask":
            import dask

            with dask.config.set(scheduler=_NoCompute()):
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    def to_numpy(self, x: Any) -> Any:
        if isinstance(x, tuple):
            return tuple(self.to_numpy(v) for v in x)
        if self.name == "dask":
            x = x.compute(scheduler="sync")
        if self.name == "torch":
            return x.detach().cpu().numpy()
        if self.name == "cupy":
            return x.get()
        return np.asarray(x)

    def is_native(self, x: Any) -> bool:
        """Whether ``x`` belongs to this backend's namespace."""
        return array_api_compat.array_namespace(x) is self.xp or (
            array_api_compat.array_namespace(x).__name__ == self.xp.__name__
        )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    name = request.param
    if not _available(name):
        pytest.skip(f"{name} is not available here")
    return Backend(name)


@pytest.fixture(params=sorted(EAGER), ids=lambda n: n)
def eager_backend(request: pytest.FixtureRequest) -> Backend:
    name = request.param
    if not _available(name):
        pytest.skip(f"{name} is not available here")
    return Backend(name)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20161205)
