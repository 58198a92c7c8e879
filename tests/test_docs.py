"""The docs run: every ```python block of a tutorial, and of the README, is executed in order in one
namespace, so no example can go stale or assert nothing."""

from __future__ import annotations

import contextlib
import io
import re
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def _run_blocks(path: Path) -> str:
    """Execute the page's python blocks in one namespace; return what they printed."""
    blocks = _blocks(path)
    assert blocks, f"{path.name} has no python blocks"
    namespace: dict = {"__name__": "__docs__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for k, block in enumerate(blocks):
            code = compile(block, f"{path.name}[block {k}]", "exec")
            exec(code, namespace)  # noqa: S102 - the docs are our own
    return out.getvalue()


@pytest.mark.parametrize(
    ("page", "framework"),
    [
        pytest.param("torch.md", "torch", marks=pytest.mark.torch),
        pytest.param("jax.md", "jax", marks=[pytest.mark.jax, pytest.mark.slow]),  # ~50 s
        pytest.param("io.md", "torch", marks=pytest.mark.torch),
    ],
)
def test_tutorial_runs(page, framework):
    pytest.importorskip(framework)
    _run_blocks(DOCS / page)


def test_readme_blocks_are_found():
    """Every fenced python block of the README is picked up (none hides behind another fence)."""
    text = (ROOT / "README.md").read_text()
    assert len(_blocks(ROOT / "README.md")) == text.count("```python") >= 2


@pytest.mark.torch
def test_readme_runs_and_reports_its_accuracy():
    pytest.importorskip("torch")
    start = time.perf_counter()
    printed = _run_blocks(ROOT / "README.md")
    seconds = time.perf_counter() - start
    # the decompose example: structure recovered to the noise level
    match = re.search(r"error (\d\.\d+)", printed)
    assert match and float(match.group(1)) < 0.02, printed
    # the compress example prints the accuracy its seeded run reaches
    match = re.search(r"test accuracy after \d+ epochs: (\d\.\d+)", printed)
    assert match, printed
    assert float(match.group(1)) > 0.5, printed
    print(f"README ran in {seconds:.1f} s")
