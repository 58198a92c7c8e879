"""One run of a study — build, compress, train, measure — for each backend.

A runner turns a run spec (a plain dict: method, sparsity, seed, model, recipe …) and the data
arrays into a record (a plain dict: kept weights, per-epoch history, accuracy, timings, file bytes).
Only this module imports torch or jax, and only inside the runner that needs it.
"""

from __future__ import annotations

import io
import math
import os
import statistics
import tempfile
import time
import warnings
from typing import Any

import numpy as np

from .methods import compress_options

__all__ = ["run_one", "RUNNERS"]

LATENCY_BATCH = 256


def _median_seconds(fn, repeats: int = 15) -> float:
    fn()  # warm-up (plans, caches, compilation)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _saved_bytes(result, fallback) -> int:
    """Bytes of the saved model: `tedepr.save` when the library has it, else ``fallback()``."""
    import tedepr

    save = getattr(tedepr, "save", None)
    if save is None or result is None:
        return fallback()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.tedepr")
        save(result, path)
        return os.path.getsize(path)


#: samples in the scoring batch of every data-driven score (the same batch for both backends)
SCORE_BATCH = 256


def _score_batch(data: dict, seed: int):
    """The scoring batch of seed ``seed``: ``SCORE_BATCH`` training samples drawn by the seed."""
    x, y = data["train"]
    idx = np.random.default_rng(seed).permutation(len(y))[:SCORE_BATCH]
    return x[idx], y[idx]


def _model_kwargs(spec: dict, data: dict) -> dict:
    """The zoo keywords the data imply, overridden by the study's ``model_options``."""
    return {**data["model_kwargs"], **(spec.get("model_options") or {})}


class TorchRunner:
    name = "torch"

    def __init__(self, device: str = "cpu", threads: int | None = None):
        import torch

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)

    def run(self, spec: dict, data: dict, progress: bool) -> dict[str, Any]:
        torch = self.torch
        import tedepr
        from tedepr.backends.torch import fit, make_loader
        from tedepr.backends.torch.compress import build_report, dense_weight_count

        seed, recipe = spec["seed"], spec["recipe"]
        (xtr, ytr), (xte, yte) = data["train"], data["test"]
        torch.manual_seed(seed)
        model = tedepr.models.get(spec["model"], backend="torch", **_model_kwargs(spec, data))
        dense = dense_weight_count(model)
        t0 = time.perf_counter()
        options = compress_options(spec["method"], spec["format"])
        result = None
        if options:
            result = tedepr.compress(
                model,
                _score_batch(data, seed),
                sparsity=spec["sparsity"],
                backend="torch",
                seed=seed,
                **options,
            )
            model, report = result.model, result.report
        else:
            report = build_report(model, None, dense_weights=dense)
        compress_s = time.perf_counter() - t0
        model.to(self.device)
        fitted = fit(
            model,
            make_loader(xtr, ytr, recipe["batch_size"], seed=seed),
            epochs=recipe["epochs"],
            lr=recipe["lr"],
            optimizer=recipe["optimizer"],
            momentum=recipe["momentum"],
            weight_decay=recipe["weight_decay"],
            schedule=recipe["schedule"],
            eval_data=make_loader(xte, yte, 1000, shuffle=False),
            device=self.device,
            seed=seed,
            progress=progress,
        )
        train_s = sum(h["seconds"] for h in fitted.history)
        model.eval()
        xb = torch.as_tensor(xte[:LATENCY_BATCH]).to(self.device)

        def forward():
            with torch.no_grad():
                model(xb)
            if self.device.type == "cuda":
                torch.cuda.synchronize()

        def state_dict_bytes():
            buf = io.BytesIO()
            torch.save(model.state_dict(), buf)
            return buf.getbuffer().nbytes

        return {
            "report": report.to_dict(),
            "history": fitted.history,
            "compress_seconds": compress_s,
            "train_seconds": train_s,
            "latency_seconds": _median_seconds(forward),
            "file_bytes": _saved_bytes(result, state_dict_bytes),
        }


class JaxRunner:
    name = "jax"

    def __init__(self, device: str = "cpu", threads: int | None = None):
        import jax

        self.jax = jax
        if device not in ("cpu", "gpu", "cuda", "tpu"):
            raise ValueError(
                f"--device for the jax backend must be cpu, gpu or tpu; got {device!r}"
            )

    def run(self, spec: dict, data: dict, progress: bool) -> dict[str, Any]:
        jax = self.jax
        import tedepr
        from tedepr.backends.jax import build_report, fit

        seed, recipe = spec["seed"], spec["recipe"]
        (xtr, ytr), (xte, yte) = data["train"], data["test"]
        model = tedepr.models.get(spec["model"], backend="jax", **_model_kwargs(spec, data))
        params = model.init(jax.random.key(seed))
        t0 = time.perf_counter()
        options = compress_options(spec["method"], spec["format"])
        masks, result = None, None
        if options:
            result = tedepr.compress(
                model,
                _score_batch(data, seed),
                sparsity=spec["sparsity"],
                backend="jax",
                seed=seed,
                params=params,
                **options,
            )
            model, params, masks, report = result.model, result.params, result.masks, result.report
        else:
            report = build_report(model, params, None, dense_weights=model.dense_weight_count())
        compress_s = time.perf_counter() - t0
        fitted = fit(
            model,
            params,
            (xtr, ytr),
            masks=masks or None,
            epochs=recipe["epochs"],
            lr=recipe["lr"],
            optimizer=recipe["optimizer"],
            momentum=recipe["momentum"],
            weight_decay=recipe["weight_decay"],
            schedule=recipe["schedule"],
            eval_data=(xte, yte),
            batch_size=recipe["batch_size"],
            seed=seed,
            progress=progress,
        )
        train_s = sum(h["seconds"] for h in fitted.history)
        trained = fitted.params
        xb = jax.numpy.asarray(xte[:LATENCY_BATCH])
        apply = jax.jit(lambda p, x: model.apply(p, x, masks or None, train=False))

        def forward():
            apply(trained, xb).block_until_ready()

        def arrays_bytes():
            leaves = jax.tree_util.tree_leaves(trained)
            return int(sum(np.asarray(v).nbytes for v in leaves))

        return {
            "report": report.to_dict(),
            "history": fitted.history,
            "compress_seconds": compress_s,
            "train_seconds": train_s,
            "latency_seconds": _median_seconds(forward),
            "file_bytes": _saved_bytes(result, arrays_bytes),
        }


RUNNERS = {"torch": TorchRunner, "jax": JaxRunner}

_RUNNER_CACHE: dict[tuple, Any] = {}


def run_one(spec: dict, data: dict, *, progress: bool = False, threads: int | None = None) -> dict:
    """Run ``spec`` and return its record; a diverged run (non-finite loss) or a budget the method
    cannot meet is recorded with its status instead of raising."""
    key = (spec["backend"], spec["device"], threads)
    if key not in _RUNNER_CACHE:
        _RUNNER_CACHE[key] = RUNNERS[spec["backend"]](spec["device"], threads)
    runner = _RUNNER_CACHE[key]
    record: dict[str, Any] = {"spec": spec}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = runner.run(spec, data, progress)
        record.update(out)
        record["warnings"] = sorted({str(w.message) for w in caught})
        final = out["history"][-1] if out["history"] else {}
        loss = final.get("train_loss")
        if loss is None or not math.isfinite(loss):
            record["status"] = "diverged"
            record["error"] = f"non-finite training loss ({loss}) at the last epoch"
        else:
            record["status"] = "ok"
        record["accuracy"] = final.get("eval_acc")
        rep = out["report"]
        record["kept"] = rep["kept_weights"]
        record["dense_weights"] = rep["dense_weights"]
    except FloatingPointError as exc:  # fit's non-finite event, or a score that blew up
        record["status"] = "diverged"
        record["error"] = str(exc).splitlines()[0]
    except BudgetError as exc:
        record["status"] = "over_budget"
        record["error"] = str(exc).splitlines()[0]
    record["seconds"] = time.perf_counter() - t0
    return record


try:  # the budget error of compress (a ValueError subclass); plain ValueError on older cores
    from ..compression import BudgetError
except ImportError:  # pragma: no cover
    BudgetError = type("BudgetError", (ValueError,), {})
