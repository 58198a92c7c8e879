"""Thin wrapper: `python benchmarks/layers.py [options]` is `tedepr bench layers [options]`
(the suite lives in the package, tedepr/benchmarks/layers.py, so the installed CLI can run it)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tedepr.benchmarks.layers import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
