"""The ``backend`` fixture: every test runs on every array library installed here.

``Backend`` is the table of those libraries, one entry each: the module whose arrays it
makes, whether its values are eager (computed when a function returns) and how a NumPy
array becomes one of its inputs. ``backend.asarray(numpy_array)`` makes an input of that
library, ``backend.call(fn, ...)`` calls a public function the way a user of that library
would (under ``jax.jit`` for ``jax_jit``, building a graph that must not compute for
``dask``), and ``backend.to_numpy(result)`` brings the result back for comparison with
references computed independently in NumPy / PyTorch / mpmath (``tests/_formulas.py``).
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

# JAX compiles every operation anew for every shape, in each worker process: a compilation
# cache shared by the workers of one run (made by the controller, inherited by the workers)
# lets one compile what the other has. It holds the executables JAX would compile anyway.
_JAX_CACHE = "JAX_COMPILATION_CACHE_DIR"


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or _JAX_CACHE in os.environ:
        return
    config._labelsmooth_jax_cache = tempfile.mkdtemp(prefix="labelsmooth-jax-cache-")  # type: ignore[attr-defined]
    os.environ[_JAX_CACHE] = config._labelsmooth_jax_cache  # type: ignore[attr-defined]
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_unconfigure(config: pytest.Config) -> None:
    cache = getattr(config, "_labelsmooth_jax_cache", None)
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)
        del os.environ[_JAX_CACHE]


class _NoCompute:
    """A Dask scheduler that fails the test if anything is computed."""

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        msg = "the Dask graph was computed inside a labelsmooth function (it must stay lazy)"
        raise AssertionError(msg)


def _copy(module: Any, a: np.ndarray) -> Any:
    return a.copy()


def _read_only(module: Any, a: np.ndarray) -> Any:
    a = a.copy()
    a.flags.writeable = False
    return a


def _module_asarray(module: Any, a: np.ndarray) -> Any:
    return module.asarray(a.copy())


def _torch_tensor(module: Any, a: np.ndarray) -> Any:
    return module.from_numpy(a.copy())


def _dask_chunks(module: Any, a: np.ndarray) -> Any:
    """Two chunks along every axis, so that every reduction crosses a chunk boundary."""
    chunks = tuple(max(1, (s + 1) // 2) for s in a.shape) if a.ndim else ()
    return module.from_array(a.copy(), chunks=chunks or a.shape)


class Backend(enum.Enum):
    """One entry per array library: ``(name, module, eager, make, slow)``; ``Backend("jax")`` works.

    ``slow``: the entry's cases are marked ``slow`` (JAX compiles a program for every new
    shape, and anew for every call under ``jax.jit``), so that ``pytest -m "not slow"``
    leaves them out.
    """

    numpy = ("numpy", "numpy", True, _copy, False)
    numpy_readonly = ("numpy_readonly", "numpy", True, _read_only, False)
    array_api_strict = ("array_api_strict", "array_api_strict", True, _module_asarray, False)
    jax = ("jax", "jax.numpy", True, _module_asarray, True)
    jax_jit = ("jax_jit", "jax.numpy", False, _module_asarray, True)  # every call under jax.jit
    torch = ("torch", "torch", True, _torch_tensor, False)
    dask = ("dask", "dask.array", False, _dask_chunks, False)  # every call builds a graph, never computes
    cupy = ("cupy", "cupy", True, _module_asarray, False)

    def __new__(
        cls, name: str, module: str, eager: bool, make: Callable[[Any, np.ndarray], Any], slow: bool
    ) -> Backend:
        entry = object.__new__(cls)
        entry._value_ = name
        entry.module_name = module
        entry.eager = eager
        entry.make = make
        entry.slow = slow
        return entry

    @property
    def param(self) -> Any:
        """``pytest.param`` of this entry's name, marked ``slow`` where the entry is."""
        return pytest.param(self.value, id=self.value, marks=[pytest.mark.slow] if self.slow else [])

    def __repr__(self) -> str:
        return f"Backend({self.name})"

    @property
    def costly(self) -> bool:
        """Whether every new case costs a compilation or a task graph (JAX, Dask).

        Tests of a grid of options run all of it on the other libraries and, on these, a
        subset in which every pair of option values still occurs (see ``pairwise``).
        """
        return self in (Backend.jax, Backend.jax_jit, Backend.dask)

    @property
    def available(self) -> bool:
        top = self.module_name.split(".")[0]
        if importlib.util.find_spec(top) is None:
            return False
        if self is Backend.cupy:
            try:
                import cupy

                return cupy.cuda.runtime.getDeviceCount() > 0
            except Exception:
                return False
        return True

    @property
    def module(self) -> Any:
        return importlib.import_module(self.module_name)

    @property
    def xp(self) -> Any:
        """The array-api-compat namespace of this library's arrays."""
        return array_api_compat.array_namespace(self.asarray(np.zeros(1)))

    def dtype(self, np_dtype: Any) -> Any:
        return getattr(self.xp, np.dtype(np_dtype).name)

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        return self.make(self.module, np.asarray(a, dtype=dtype))

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` as a user of this library would."""
        if self is Backend.jax_jit:
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
        if self is Backend.dask:
            import dask

            with dask.config.set(scheduler=_NoCompute()):
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    def to_numpy(self, x: Any) -> Any:
        if isinstance(x, tuple):
            return tuple(self.to_numpy(v) for v in x)
        if self is Backend.dask:
            x = x.compute(scheduler="sync")
        if self is Backend.torch:
            return x.detach().cpu().numpy()
        if self is Backend.cupy:
            return x.get()
        return np.asarray(x)

    def is_native(self, x: Any) -> bool:
        """Whether ``x`` belongs to this backend's namespace."""
        return array_api_compat.array_namespace(x).__name__ == self.xp.__name__


def pairwise(grid: list[tuple], subset: list[tuple]) -> list[tuple]:
    """``subset`` of ``grid``, checked to hold every pair of values that ``grid`` holds."""
    assert set(subset) <= set(grid)
    width = len(grid[0])
    for i, j in itertools.combinations(range(width), 2):
        missing = {(row[i], row[j]) for row in grid} - {(row[i], row[j]) for row in subset}
        assert not missing, f"the subset misses the pairs {missing} of options {i} and {j}"
    return subset


BACKENDS = [b.value for b in Backend]
EAGER = sorted(b.value for b in Backend if b.eager)
LAZY = [b.value for b in Backend if not b.eager]


def available_backend(name: str) -> Backend:
    """The table's entry for ``name``; the test is skipped where its library is missing."""
    entry = Backend(name)
    if not entry.available:
        pytest.skip(f"{name} is not available here")
    return entry


@pytest.fixture(params=[b.param for b in Backend])
def backend(request: pytest.FixtureRequest) -> Backend:
    return available_backend(request.param)


@pytest.fixture(params=[Backend(name).param for name in EAGER])
def eager_backend(request: pytest.FixtureRequest) -> Backend:
    return available_backend(request.param)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of JAX (by its name or parameters) is ``slow``: its compilations dominate."""
    for item in items:
        if "jax" in item.nodeid.lower():
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20161205)
