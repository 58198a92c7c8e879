"""Benchmark suites, runnable from the installed package (``tedepr.bench``, ``benchmarks/*.py``).

Each suite is a module with ``main(argv) -> int`` that prints tables of times measured in one run
and ratios against baselines measured in the same run (a loaded machine shifts all of them alike;
see `_timing.interleaved`). Every suite accepts ``--device`` (``cpu``, ``cuda``, ...) and
``--quick`` (a short run). Importing this package imports neither torch nor jax.
"""

from __future__ import annotations

import importlib

__all__ = ["SUITES", "suite"]

#: suite name -> (module, one-line description)
SUITES = {
    "layers": (
        "tedepr.benchmarks.layers",
        "tensorized layer fwd and fwd+bwd vs dense and strategies",
    ),
    "training": ("tedepr.benchmarks.training", "training step: TEDEPR vs dense vs dense+PaI masks"),
    "inference": ("tedepr.benchmarks.inference", "inference latency per batch size"),
    "scoring": ("tedepr.benchmarks.scoring", "time and peak memory of each pruning score"),
    "calibrate": ("tedepr.benchmarks.calibrate", "measure the planner's cost-model constants"),
}


def suite(name: str):
    """The module of benchmark suite ``name`` (imported on demand)."""
    if not isinstance(name, str):
        raise TypeError(f"suite name must be a str; got {type(name).__name__}")
    if name not in SUITES:
        raise ValueError(
            f"unknown benchmark suite {name!r}; available: {', '.join(map(repr, SUITES))}"
        )
    return importlib.import_module(SUITES[name][0])
