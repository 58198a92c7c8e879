"""Shared fixtures for the core property tests.

* ``xp``: an array namespace, parametrised over NumPy (through array_api_compat),
  array_api_strict, PyTorch (array_api_compat.torch) and JAX (jax.numpy). A library that is not
  installed shows up as a SKIP with its reason, never as a silent pass.
* JAX float64 is enabled for this test session only (the library itself never touches it).
* Hypothesis profiles ``dev`` (fast) and ``ci`` (derandomised), chosen by ``HYPOTHESIS_PROFILE``,
  else ``ci`` when ``CI`` is set, else ``dev``.
* Conversion helpers, `assert_close` (namespace, dtype, shape, then relative error), and the
  `factorized_specs` strategy: one drawn NumPy spec feeds both tedepr and the NumPy reference.
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

# reference/ (the NumPy oracle) lives beside the package and is never installed: import it from here
_sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))

import importlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the tests run from a checkout, installed or not
    sys.path.insert(0, str(REPO))


def run_script(path, *args, timeout: float, **env: str):
    """Run the Python script ``path`` (arguments ``args``) in a fresh interpreter, the way the
    subprocess tests of both backends need it: the checkout on ``PYTHONPATH``, JAX on the CPU and
    ``JAX_ENABLE_X64`` unset (the library never sets it), ``env`` on top. Returns the
    ``CompletedProcess`` with text output captured."""
    import subprocess

    full = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", **env}
    full.pop("JAX_ENABLE_X64", None)
    return subprocess.run(
        [sys.executable, str(path), *map(str, args)],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Float64's tolerance is far above rounding (~1e-15) and far below any convention bug (O(1));
# float32's is ~100x its unit roundoff, enough for the small shapes drawn here.
RTOL = {"float64": 1e-10, "float32": 1e-5}
DTYPES = ("float32", "float64")
FORMATS = ("tt", "tr", "tucker", "cp")

# ----------------------------------------------------------------------------- hypothesis profiles
_COMMON = dict(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# deadline=None in both: the first call of a JAX function compiles, which is not a slow test.
settings.register_profile("dev", max_examples=25, deadline=None, **_COMMON)
settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True, print_blob=True, **_COMMON
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_configure(config):
    # SciPy's convention: x64 inside the test session only, before any JAX array exists.
    try:
        import jax
    except ImportError:  # the jax-marked tests skip themselves with the reason
        return
    jax.config.update("jax_enable_x64", True)


# ----------------------------------------------------------------------------- namespaces
_LIBRARIES = {
    # id: (module to import, namespace module, marker)
    "numpy": ("numpy", "array_api_compat.numpy", None),
    "array_api_strict": ("array_api_strict", "array_api_strict", None),
    "torch": ("torch", "array_api_compat.torch", "torch"),
    "jax": ("jax", "jax.numpy", "jax"),
}


def namespace(name: str):
    """The array namespace for a library id of ``_LIBRARIES``; skips the test when it is missing."""
    module, ns, _ = _LIBRARIES[name]
    pytest.importorskip(module, reason=f"{module} is not installed: the {name} backend is untested")
    return importlib.import_module(ns)


XP_PARAMS = [
    pytest.param(name, id=name, marks=[getattr(pytest.mark, marker)] if marker else [])
    for name, (_, _, marker) in _LIBRARIES.items()
]


@pytest.fixture(scope="session", params=XP_PARAMS)
def xp(request):
    """An array-API namespace (session scope so that hypothesis tests may use it)."""
    return namespace(request.param)


def examples(xp, n: int | None = None, jax: int | None = None) -> int:
    """Hypothesis examples for a test on ``xp``: ``n`` (default: the profile's); for JAX ``jax``
    (default: an eighth of ``n``, at least 2).

    JAX compiles every primitive for every new shape (~20 ms each), so one drawn example costs it
    about a second (several for a decomposition); its shapes come from the same strategies, only
    fewer of them.
    """
    n = settings.default.max_examples if n is None else n
    if lib_name(xp) != "jax":
        return n
    return max(2, n // 8) if jax is None else jax


def check_examples(
    xp, check, *, n: int | None = None, jax: int | None = None, **strategies
) -> None:
    """Run ``check(**drawn)`` as a hypothesis test on ``examples(xp, n, jax)`` drawn examples."""
    settings(max_examples=examples(xp, n, jax))(given(**strategies)(check))()


def lib_name(xp) -> str:
    """``numpy`` / ``array_api_strict`` / ``torch`` / ``jax`` for a namespace from `namespace`."""
    name = xp.__name__
    if name.startswith("array_api_compat."):
        name = name.split(".")[1]
    return name.split(".")[0]


# ----------------------------------------------------------------------------- conversions
def to_xp(xp, a: np.ndarray, dtype: str, *, device=None):
    """A NumPy array as an array of ``xp`` with dtype ``"float32"`` or ``"float64"``."""
    a = np.asarray(a, dtype=np.dtype(dtype))
    if device is None:
        return xp.asarray(a, dtype=getattr(xp, dtype))
    return xp.asarray(a, dtype=getattr(xp, dtype), device=device)


def to_numpy(a) -> np.ndarray:
    """Any array as a NumPy array (torch: detached, on the CPU; array_api_strict: to its CPU)."""
    mod = type(a).__module__.split(".")[0]
    if mod == "torch":
        return a.detach().cpu().numpy()
    if mod == "array_api_strict":
        import array_api_strict

        a = a.to_device(array_api_strict.Device("CPU_DEVICE"))
        return np.asarray(a)
    return np.asarray(a)


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` rounded to ``dtype``, in float64: the exact input the library sees (for the oracle)."""
    return np.asarray(a, dtype=np.dtype(dtype)).astype(np.float64)


def rel_error(actual, expected, scale=None) -> float:
    """``max|actual − expected| / max|scale|``, ``scale`` defaulting to ``expected`` (absolute error
    when the scale is all zero)."""
    actual = np.asarray(to_numpy(actual), dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.size == 0:
        return 0.0
    norm = float(np.max(np.abs(expected if scale is None else scale)))
    err = float(np.max(np.abs(actual - expected)))
    return err / norm if norm > 0 else err


def assert_close(actual, expected, dtype: str, *, xp, device=None, scale=None):
    """Check that ``actual`` is an ``xp`` array of ``dtype`` and ``expected``'s shape, then values.

    ``expected`` is a float64 NumPy array; the relative error `rel_error` must be at most
    ``RTOL[dtype]`` (1e-10 for float64, 1e-5 for float32). ``device``: also check the device.
    ``scale``: measure the error relative to this instead of ``expected`` (see its one use).
    """
    import array_api_compat

    got = array_api_compat.array_namespace(actual)
    assert lib_name(got) == lib_name(xp), f"namespace {got.__name__}, expected {xp.__name__}"
    assert actual.dtype == getattr(xp, dtype), f"dtype {actual.dtype}, expected {dtype}"
    assert tuple(actual.shape) == tuple(np.shape(expected)), (
        f"shape {tuple(actual.shape)}, expected {tuple(np.shape(expected))}"
    )
    if device is not None:
        assert array_api_compat.device(actual) == device, (
            f"device {array_api_compat.device(actual)}, expected {device}"
        )
    err = rel_error(actual, expected, scale)
    assert err <= RTOL[dtype], f"relative error {err:.3g} > {RTOL[dtype]:g} ({dtype})"


# ----------------------------------------------------------------------------- drawn specs
@dataclass(frozen=True)
class Spec:
    """A factorised matrix drawn as NumPy float64 cores, in ``Factorized.cores`` order.

    ``ranks`` follow tedepr.shapes (TT/TR ``(r_0..r_d)``, Tucker one per mode with ``None`` for a
    mode without factor, CP ``(R,)``); ``factored`` is Tucker's per-mode flag (None otherwise).
    """

    format: str
    in_modes: tuple[int, ...]
    out_modes: tuple[int, ...]
    ranks: tuple
    cores: tuple[np.ndarray, ...]
    factored: tuple[bool, ...] | None = None

    @property
    def n_in(self) -> int:
        return math.prod(self.in_modes)

    @property
    def n_out(self) -> int:
        return math.prod(self.out_modes)

    def rounded_cores(self, dtype: str) -> tuple[np.ndarray, ...]:
        return tuple(rounded(c, dtype) for c in self.cores)

    def reference_cores(self, cores=None):
        """``cores`` (default: ours) in the argument form of ``reference.to_dense``."""
        cores = self.cores if cores is None else tuple(cores)
        if self.format != "tucker":
            return list(cores)
        it = iter(cores[1:])
        return cores[0], [next(it) if f else None for f in self.factored]

    def build(self, xp, dtype: str, cores=None, *, device=None):
        """The tedepr object with ``cores`` (NumPy or ``xp`` arrays; default ours) in ``xp``."""
        import tedepr

        cores = self.cores if cores is None else cores
        cores = [
            c if not isinstance(c, np.ndarray) else to_xp(xp, c, dtype, device=device)
            for c in cores
        ]
        return tedepr.from_cores(
            self.format, cores, self.in_modes, self.out_modes, factored=self.factored
        )


def core_shapes(format, in_modes, out_modes, ranks):
    """Core shapes written from docs/method.md §2 (independent of tedepr's own)."""
    if format in ("tt", "tr"):
        return [(ranks[k], n, m, ranks[k + 1]) for k, (n, m) in enumerate(zip(in_modes, out_modes))]
    dims = tuple(in_modes) + tuple(out_modes)
    if format == "tucker":
        core = tuple(d if r is None else r for d, r in zip(dims, ranks))
        return [core] + [(d, r) for d, r in zip(dims, ranks) if r is not None]
    return [(d, ranks[0]) for d in dims]


def spec_from_seed(format, in_modes, out_modes, ranks, seed) -> Spec:
    rng = np.random.default_rng(seed)
    cores = tuple(rng.standard_normal(s) for s in core_shapes(format, in_modes, out_modes, ranks))
    factored = tuple(r is not None for r in ranks) if format == "tucker" else None
    return Spec(format, tuple(in_modes), tuple(out_modes), tuple(ranks), cores, factored)


@st.composite
def factorized_specs(
    draw, formats=FORMATS, max_modes: int = 3, max_mode: int = 4, max_rank: int = 3
):
    """A random factorised matrix: format, 1..``max_modes`` modes per side (equal for TT/TR), mode
    sizes 1..``max_mode``, ranks 1..``max_rank`` valid for tedepr.shapes, Tucker with some factors
    None; the cores are standard normal NumPy float64 arrays from a drawn seed."""
    fmt = draw(st.sampled_from(formats))
    p = draw(st.integers(1, max_modes))
    q = p if fmt in ("tt", "tr") else draw(st.integers(1, max_modes))
    mode = st.integers(1, max_mode)
    in_modes = tuple(draw(st.lists(mode, min_size=p, max_size=p)))
    out_modes = tuple(draw(st.lists(mode, min_size=q, max_size=q)))
    rank = st.integers(1, max_rank)
    if fmt == "tt":
        sizes = [n * m for n, m in zip(in_modes, out_modes)]
        # bond k splits the network into cores < k and >= k: its rank cannot usefully exceed either
        caps = [min(math.prod(sizes[:k]), math.prod(sizes[k:]), max_rank) for k in range(1, p)]
        ranks = (1,) + tuple(draw(st.integers(1, c)) for c in caps) + (1,)
    elif fmt == "tr":
        interior = tuple(draw(rank) for _ in range(p - 1))
        r0 = draw(rank)
        ranks = (r0,) + interior + (r0,)
    elif fmt == "tucker":
        dims = in_modes + out_modes
        factored = draw(st.lists(st.booleans(), min_size=p + q, max_size=p + q).filter(any))
        ranks = tuple(
            draw(st.integers(1, min(d, max_rank))) if f else None for d, f in zip(dims, factored)
        )
    else:
        ranks = (draw(rank),)
    seed = draw(st.integers(0, 2**32 - 1))
    return spec_from_seed(fmt, in_modes, out_modes, ranks, seed)


def draw_array(draw, shape, *, scale: float = 1.0) -> np.ndarray:
    """A standard-normal float64 array of ``shape`` from a drawn seed (input for both sides)."""
    seed = draw(st.integers(0, 2**32 - 1))
    return scale * np.random.default_rng(seed).standard_normal(shape)
