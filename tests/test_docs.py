"""The tutorials run: every ```python block of a tutorial is executed in order in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize(
    ("page", "framework"),
    [
        pytest.param("torch.md", "torch", marks=pytest.mark.torch),
        pytest.param("jax.md", "jax", marks=pytest.mark.jax),
        pytest.param("io.md", "torch", marks=pytest.mark.torch),
    ],
)
def test_tutorial_runs(page, framework):
    pytest.importorskip(framework)
    path = DOCS / page
    blocks = _blocks(path)
    assert blocks, f"{page} has no python blocks"
    namespace: dict = {"__name__": "__tutorial__"}
    for k, block in enumerate(blocks):
        code = compile(block, f"{page}[block {k}]", "exec")
        exec(code, namespace)  # noqa: S102 - the docs are our own
