"""`import tedepr` pulls in neither torch nor jax, and the core works with neither installed.

Both run in a fresh interpreter (this test session itself has imported torch and jax).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE_MODULES = (
    "tedepr",
    "tedepr.shapes",
    "tedepr.formats",
    "tedepr.contraction",
    "tedepr.init",
    "tedepr.decompositions",
    "tedepr.namespace",
    "tedepr.checkpoint",
    "tedepr.training",
)
FRAMEWORKS = ("torch", "jax", "jaxlib", "tensorflow")


def run_python(code: str, *, extra_path=(), timeout=120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), str(REPO)])
    env.pop("PYTHONSTARTUP", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=str(REPO),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_importing_the_core_imports_no_framework():
    proc = run_python(f"""
        import importlib, sys
        for name in {CORE_MODULES!r}:
            importlib.import_module(name)
        import tedepr
        assert tedepr.__file__.startswith({str(REPO)!r}), tedepr.__file__
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {FRAMEWORKS!r})
        print("LOADED", loaded)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout


# A meta-path finder installed by sitecustomize, before anything else is imported: the process then
# behaves as if torch and jax were not installed at all.
BLOCKER = """
import sys

BLOCKED = ("torch", "jax", "jaxlib")


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
"""


def test_the_core_works_without_torch_and_jax(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    proc = run_python(
        """
        import sys
        # the blocker is active: this process cannot import either framework
        for name in ("torch", "jax"):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                raise SystemExit(f"{name} could be imported: the blocker is not active")

        import numpy as np
        import tedepr

        # first, before any array has been inspected: the default namespace (NumPy) must work
        g = tedepr.random_factorized("tr", 784, 300, 4, std=0.05, seed=0)
        assert g.to_dense().shape == (784, 300)
        rng = np.random.default_rng(0)
        w = rng.standard_normal((12, 8))
        x = rng.standard_normal((5, 12))
        for fmt, rank in (("tt", None), ("tr", (1, 6, 1)), ("tucker", None), ("cp", 2)):
            f = tedepr.decompose(w, fmt, rank=rank, in_modes=(3, 4), out_modes=(2, 4))
            for strategy in tedepr.STRATEGIES:
                y = tedepr.contract(x, f, strategy=strategy)
                assert np.allclose(y, x @ np.asarray(f.to_dense()), rtol=1e-12, atol=1e-12)
            if rank is None or fmt == "tr":
                assert np.abs(np.asarray(f.to_dense()) - w).max() < 1e-12, fmt
        assert tedepr.contract(x[:, :1] * np.ones((5, 784)), g).shape == (5, 300)
        k = tedepr.random_factorized_conv("tucker", 4, 8, 3, 2, seed=0)
        assert k.to_kernel().shape == (8, 4, 3, 3)
        assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "jax", "jaxlib")]
        print("CORE OK")
    """,
        extra_path=[tmp_path],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CORE OK" in proc.stdout
