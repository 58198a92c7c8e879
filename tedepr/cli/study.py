"""A study: the grid of runs (method × sparsity × seed), executed with resume, written atomically.

Layout of an output folder::

    OUT/study.json          the study's configuration (what `tedepr report` needs to re-render)
    OUT/runs/<key>.json     one file per finished run, written atomically when it completes
    OUT/results.json        every run, library versions, git commit (rewritten after each run)
    OUT/table.txt           the results table as printed
    OUT/accuracy.png        accuracy vs density (log axis), one line per method, error bars over seeds

A run's key hashes everything that determines its result (method, sparsity, seed, model, data,
recipe, format, backend), so re-running the same command with the same ``--out`` skips every
finished run, and changing the recipe never reuses a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .methods import is_compressed

__all__ = ["plan_runs", "run_key", "execute", "write_json", "load_records", "environment"]


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, default=_jsonable)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _jsonable(o):
    if isinstance(o, (set, tuple)):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def run_key(spec: dict) -> str:
    blob = json.dumps(spec, sort_keys=True, default=_jsonable).encode()
    digest = hashlib.sha256(blob).hexdigest()[:10]
    sp = "dense" if spec["sparsity"] is None else f"{spec['sparsity']:g}"
    return f"{spec['method']}_{sp}_seed{spec['seed']}_{digest}"


def plan_runs(config: dict) -> list[dict]:
    """Run specs of a study: ``dense`` once per seed, every other method per sparsity and seed."""
    common = {
        "model": config["model"],
        "dataset": config["dataset"],
        "data": config.get("data"),
        "subset": config.get("subset"),
        "model_options": config.get("model_options") or {},
        "dataset_options": config.get("dataset_options") or {},
        "format": config["format"],
        "backend": config["backend"],
        "device": config["device"],
        "recipe": config["recipe"],
    }
    specs = []
    for method in config["methods"]:
        grid = config["sparsities"] if is_compressed(method) else [None]
        for sparsity in grid:
            for seed in config["seeds"]:
                specs.append({"method": method, "sparsity": sparsity, "seed": seed, **common})
    return specs


def load_records(out: Path) -> dict[str, dict]:
    """Finished runs in ``out/runs`` by key (unreadable files are reported, not trusted)."""
    records = {}
    runs = Path(out) / "runs"
    if not runs.is_dir():
        return records
    for path in sorted(runs.glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"tedepr: ignoring unreadable run file {path}: {exc}", file=sys.stderr)
            continue
        records[path.stem] = rec
    return records


def environment() -> dict:
    """Library versions and the git commit of the working copy (if any)."""
    import numpy

    import tedepr

    env = {
        "tedepr": tedepr.__version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    for mod in ("torch", "jax", "optax", "opt_einsum"):
        m = sys.modules.get(mod)
        if m is not None:
            env[mod] = getattr(m, "__version__", "?")
    try:
        root = Path(tedepr.__file__).resolve().parent.parent
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if commit.returncode == 0:
            env["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return env


def _worker_init(threads: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if sys.platform.startswith("linux"):  # a worker dies with the study, never runs on orphaned
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _worker_run(spec: dict, data_config: dict, threads: int) -> dict:
    from .data import prepare_data
    from .runners import run_one

    return run_one(spec, prepare_data(**data_config), threads=threads)


def execute(
    specs: list[dict],
    out: Path,
    data_config: dict,
    *,
    workers: int = 1,
    executor: str = "local",
    progress: bool = True,
    on_record=None,
    write: bool = True,
) -> dict[str, dict]:
    """Run every spec not yet finished in ``out``; each record is written as soon as it completes.

    ``on_record(key, record)`` is called after each write (the CLI refreshes results.json there).
    Returns all records (old and new) by key, in spec order.
    """
    from .data import prepare_data
    from .runners import run_one

    done = load_records(out)
    keys = [run_key(s) for s in specs]
    todo = [(k, s) for k, s in zip(keys, specs) if k not in done]
    bar = _bar(len(specs), len(specs) - len(todo), progress)

    def finish(key, record):
        record["key"] = key
        record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if write:  # under torchrun only rank 0 writes
            write_json(Path(out) / "runs" / f"{key}.json", record)
        done[key] = record
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(_short(record), refresh=True)
        if on_record is not None:
            on_record(key, record)

    try:
        if not todo:
            pass
        elif executor == "ray":
            _execute_ray(todo, data_config, workers, finish)
        elif workers <= 1:
            data = prepare_data(**data_config)
            for key, spec in todo:
                if bar is not None:
                    bar.set_description_str(_label(spec))
                # per-epoch bars of fit under the run bar (tqdm hides them off a terminal)
                finish(key, run_one(spec, data, progress=bar is not None))
        else:
            _execute_pool(todo, data_config, workers, finish)
    finally:
        if bar is not None:
            bar.close()
    return {k: done[k] for k in keys if k in done}


def _threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _execute_pool(todo, data_config, workers, finish):
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = _threads(workers)
    ctx = mp.get_context("spawn")  # torch and jax are not fork-safe
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_init, initargs=(threads,)
    ) as pool:
        pending = {pool.submit(_worker_run, spec, data_config, threads): key for key, spec in todo}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    finish(pending.pop(fut), fut.result())
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def _execute_ray(todo, data_config, workers, finish):
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise ValueError(
            "--executor ray needs Ray: pip install 'tedepr[ray]' (or use --executor local)"
        ) from exc
    if not ray.is_initialized():
        ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(_worker_run)
    threads = 1
    refs = {remote.remote(spec, data_config, threads): key for key, spec in todo}
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            finish(refs.pop(ref), ray.get(ref))


def _label(spec: dict) -> str:
    sp = "" if spec["sparsity"] is None else f" {100 * spec['sparsity']:g}%"
    return f"{spec['method']}{sp} seed {spec['seed']}"


def _short(record: dict) -> str:
    acc = record.get("accuracy")
    acc = "—" if acc is None else f"{100 * acc:.2f}%"
    return f"last: {_label(record['spec'])} → {acc} ({record.get('status')})"


def _bar(total: int, initial: int, progress: bool):
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ModuleNotFoundError:
        return None
    return tqdm(total=total, initial=initial, unit="run", dynamic_ncols=True, file=sys.stderr)
