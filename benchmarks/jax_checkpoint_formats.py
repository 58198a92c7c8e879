"""Measure what the JAX fit checkpoint would gain or lose with orbax instead of the shared format
(one ``.npz`` through `tedepr.checkpoint`: atomic write, SHA-256 digest file, previous copy).

Prints, for the LeNet-300-100 params + Adam state (the size of the paper's MNIST runs):
import time of each library in a fresh interpreter, save and restore time, what lands on disk,
and what a restore does with a checkpoint whose bytes were damaged after it was written.

    PYTHONPATH=. python benchmarks/jax_checkpoint_formats.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _import_seconds(stmt: str) -> float:
    code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
        for _ in range(3)
    ]
    return min(runs)


def _tree():
    import jax
    import optax

    from tedepr.backends.jax import models

    model = models.get("lenet300_100", flax=False)
    params = model.init(jax.random.key(0))
    opt_state = optax.adam(1e-3).init(params)
    return {"params": params, "opt": opt_state}


def _files(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte in the middle of the file
    path.write_bytes(bytes(data))


def _largest(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _report(ckptr, folder, abstract, leaves, what: str) -> None:
    import jax

    try:
        back = ckptr.restore(folder, abstract)
    except Exception as exc:  # noqa: BLE001 (reporting what orbax raises)
        print(f"orbax, {what}: {type(exc).__name__}: {str(exc)[:150]}")
        return
    differ = sum(
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(back), leaves, strict=True)
    )
    print(f"orbax, {what}: restored WITHOUT error; {differ} of {len(leaves)} arrays differ")


def main() -> None:
    import jax
    import orbax.checkpoint as ocp

    from tedepr.backends.jax import training as jt
    from tedepr.checkpoint import CheckpointError, read_checkpoint_bytes, save_checkpoint_bytes

    print(
        f"import numpy+tedepr.checkpoint: {_import_seconds('import numpy, tedepr.checkpoint'):.3f} s"
    )
    print(f"import orbax.checkpoint:        {_import_seconds('import orbax.checkpoint'):.3f} s")

    tree = _tree()
    leaves = jax.tree.leaves(tree)
    print(f"tree: {len(leaves)} arrays, {sum(np.asarray(a).nbytes for a in leaves)} bytes")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # --- the shared format
        path = tmp / "npz" / "last.npz"
        path.parent.mkdir()
        t = time.perf_counter()
        for _ in range(5):
            data = jt._checkpoint_bytes(tree["params"], tree["opt"], None, {"format": "x"})
            save_checkpoint_bytes(path, data)
        save_npz = (time.perf_counter() - t) / 5
        t = time.perf_counter()
        for _ in range(5):
            read_checkpoint_bytes(path)
        load_npz = (time.perf_counter() - t) / 5
        n, size = _files(path.parent)
        print(
            f"npz+sha256: save {save_npz * 1e3:.1f} ms, restore {load_npz * 1e3:.1f} ms, "
            f"{n} files, {size} bytes"
        )
        _flip(path)
        try:
            read_checkpoint_bytes(path)
            print("npz+sha256, one byte flipped: restored WITHOUT error")
        except CheckpointError as exc:
            print(f"npz+sha256, one byte flipped: {type(exc).__name__} (detected)")

        # --- orbax: the standard PyTree checkpointer (atomic tmp-dir rename on finalize)
        ckptr = ocp.StandardCheckpointer()
        t = time.perf_counter()
        for k in range(5):
            ckptr.save(tmp / f"orbax_{k}", tree)
            ckptr.wait_until_finished()
        save_ox = (time.perf_counter() - t) / 5
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
        t = time.perf_counter()
        for k in range(5):
            ckptr.restore(tmp / f"orbax_{k}", abstract)
        load_ox = (time.perf_counter() - t) / 5
        n, size = _files(tmp / "orbax_0")
        print(
            f"orbax StandardCheckpointer: save {save_ox * 1e3:.1f} ms, restore "
            f"{load_ox * 1e3:.1f} ms, {n} files, {size} bytes"
        )
        victim = _largest(tmp / "orbax_1")
        _flip(victim)
        _report(ckptr, tmp / "orbax_1", abstract, leaves, f"one byte flipped in {victim.name}")
        victim = _largest(tmp / "orbax_2")
        victim.write_bytes(victim.read_bytes()[:-100])
        _report(ckptr, tmp / "orbax_2", abstract, leaves, "largest file truncated by 100 bytes")
        ckptr.close()


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    main()
