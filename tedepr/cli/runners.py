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


class _Runner:
    """One run, written once; a backend supplies how to build, fit and time its model."""

    name = ""

    def run(self, spec: dict, data: dict, progress: bool, built=None) -> dict[str, Any]:
        """The record of ``spec``; ``built``: ``(model, params)`` built already (else `build`)."""
        import tedepr

        seed, recipe = spec["seed"], spec["recipe"]
        (xtr, ytr), (xte, yte) = data["train"], data["test"]
        model, params = built or self.build(spec, data, seed)
        t0 = time.perf_counter()
        options = compress_options(spec["method"], spec["format"])
        if isinstance(options.get("oversample"), tuple) or "probe_draws" in options:
            # candidates (splits or initialisations) chosen by a training probe
            options["probe_data"] = (xtr, ytr)
            options["probe_fit"] = {
                k: recipe[k] for k in ("optimizer", "lr", "momentum", "weight_decay", "batch_size")
            }
            options["probe_fit"]["schedule"] = "constant"
        result, masks = None, None
        if options:
            result = tedepr.compress(
                model,
                _score_batch(data, seed),
                sparsity=spec["sparsity"],
                backend=self.name,
                seed=seed,
                **self.compress_extra(params),
                **options,
            )
            model, params, masks, report = self.unpack(result)
        else:
            report = self.dense_report(model, params)
        compress_s = time.perf_counter() - t0
        fitted = self.fit(
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
        forward, fallback_bytes = self.timing(model, fitted, masks, xte[:LATENCY_BATCH])
        return {
            "report": report.to_dict(),
            "history": fitted.history,
            "compress_seconds": compress_s,
            "train_seconds": sum(h["seconds"] for h in fitted.history),
            "latency_seconds": _median_seconds(forward),
            "file_bytes": _saved_bytes(result, fallback_bytes),
        }


class TorchRunner(_Runner):
    name = "torch"

    def __init__(self, device: str = "cpu", threads: int | None = None):
        import torch

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)

    def build(self, spec, data, seed):
        import tedepr

        self.torch.manual_seed(seed)
        return tedepr.models.get(spec["model"], backend="torch", **_model_kwargs(spec, data)), None

    def compress_extra(self, params):
        return {}

    def unpack(self, result):
        return result.model, None, None, result.report  # the masks live in the model

    def dense_report(self, model, params):
        from tedepr.backends.torch.compress import build_report, dense_weight_count

        return build_report(model, None, dense_weights=dense_weight_count(model))

    def fit(self, model, params, train, **kw):
        from tedepr.backends.torch import fit

        model.to(self.device)
        kw.pop("masks")
        return fit(model, train, device=self.device, **kw)

    def timing(self, model, fitted, masks, x):
        torch = self.torch
        model.eval()
        xb = torch.as_tensor(x).to(self.device)

        def forward():
            with torch.no_grad():
                model(xb)
            if self.device.type == "cuda":
                torch.cuda.synchronize()

        def state_dict_bytes():
            buf = io.BytesIO()
            torch.save(model.state_dict(), buf)
            return buf.getbuffer().nbytes

        return forward, state_dict_bytes


class JaxModelRunner(_Runner):
    """The JAX zoo's pure `Model` (``flax=False``): params passed to compress, fit and the jitted
    apply. `JaxRunner` runs it for a zoo model the Flax zoo refuses."""

    name = "jax"

    def __init__(self, device: str = "cpu", threads: int | None = None):
        import jax

        self.jax = jax
        if device not in ("cpu", "gpu", "cuda", "tpu"):
            raise ValueError(
                f"--device for the jax backend must be cpu, gpu or tpu; got {device!r}"
            )

    def build(self, spec, data, seed):
        import tedepr

        kw = _model_kwargs(spec, data)
        model = tedepr.models.get(spec["model"], backend="jax", flax=False, **kw)
        return model, model.init(self.jax.random.key(seed))

    def compress_extra(self, params):
        return {"params": params}

    def unpack(self, result):
        return result.model, result.params, result.masks, result.report

    def dense_report(self, model, params):
        from tedepr.backends.jax import build_report

        return build_report(model, params, None, dense_weights=model.dense_weight_count())

    def fit(self, model, params, train, **kw):
        from tedepr.backends.jax import fit

        return fit(model, params, train, **kw)

    def timing(self, model, fitted, masks, x):
        jax = self.jax
        trained = fitted.params
        xb = jax.numpy.asarray(x)
        apply = jax.jit(lambda p, x: model.apply(p, x, masks or None, train=False))

        def forward():
            apply(trained, xb).block_until_ready()

        return forward, lambda: _arrays_bytes(trained)


class JaxRunner(_Runner):
    """The JAX zoo's default, a Flax NNX model: `tedepr.compress` gives a `FlaxCompressionResult`
    whose ``.model`` (the NNX model with masked / tensorized layers) `tedepr.backends.jax.fit`
    trains; the forward timed is ``jax.jit`` over the ``nnx.split`` state of the trained model.

    The weights are the `JaxModelRunner`'s (``rngs=seed``, an int, draws those of the `Model`'s
    ``init(jax.random.key(seed))``). A zoo model the Flax zoo refuses (``ValueError`` for a name of
    its ``NOT_IN_FLAX``, ``NotImplementedError`` for options it lacks; none today) runs as the
    `Model` (`JaxModelRunner`) instead, with a warning the record keeps: a sweep that ran before
    the Flax default still runs, on the same weights."""

    name = "jax"

    def __init__(self, device: str = "cpu", threads: int | None = None):
        self.fallback = JaxModelRunner(device, threads)  # checks the device
        self.jax = self.fallback.jax

    def run(self, spec: dict, data: dict, progress: bool) -> dict[str, Any]:
        from tedepr.backends.jax import flax_zoo

        try:
            built = self.build(spec, data, spec["seed"])
        except (NotImplementedError, ValueError) as exc:
            if isinstance(exc, ValueError) and spec["model"] not in flax_zoo.NOT_IN_FLAX:
                raise  # a bad option: the Model zoo would refuse it too
            warnings.warn(
                f"the Flax zoo cannot build {spec['model']!r} ({str(exc).splitlines()[0]}); "
                "ran the JAX Model (flax=False)",
                stacklevel=2,
            )
            return self.fallback.run(spec, data, progress)
        return super().run(spec, data, progress, built=built)

    def build(self, spec, data, seed):
        import tedepr

        kw = _model_kwargs(spec, data)
        return tedepr.models.get(spec["model"], backend="jax", rngs=seed, **kw), None

    def compress_extra(self, params):
        return {}  # the NNX model holds its params

    def unpack(self, result):
        return result.model, None, None, result.report  # the masks live in the model

    def dense_report(self, model, params):
        from tedepr.backends.jax import build_report
        from tedepr.backends.jax.nnx import to_model

        view = to_model(model, model.input_shape)  # the pipeline's Model + params of the module
        dense = view.model.dense_weight_count()
        return build_report(view.model, view.params, None, dense_weights=dense)

    def fit(self, model, params, train, **kw):
        from tedepr.backends.jax import fit

        kw.pop("masks")  # the model's own (its Mask variables)
        return fit(model, None, train, **kw)

    def timing(self, model, fitted, masks, x):
        from flax import nnx

        jax = self.jax
        trained = fitted.model  # a new NNX model: the trained weights and the masks
        trained.eval()  # BatchNorm running statistics, no dropout
        graphdef, state = nnx.split(trained)
        xb = jax.numpy.asarray(x)
        # jax.jit over the split state: nnx.jit walks the module graph on every call (about
        # twice the time of the forward itself on lenet300_100, batch 256, CPU)
        apply = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))

        def forward():
            apply(state, xb).block_until_ready()

        return forward, lambda: _arrays_bytes(state)


def _arrays_bytes(tree) -> int:
    """Bytes of the arrays of a pytree (params, or an NNX state)."""
    import jax

    return int(sum(np.asarray(v).nbytes for v in jax.tree_util.tree_leaves(tree)))


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
