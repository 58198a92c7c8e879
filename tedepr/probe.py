"""The coarse/fine split chosen by a short training probe (docs/method.md §10).

`tedepr.compress(..., oversample=(1.0, 2.0), probe_data=...)` builds one compressed model per
candidate split — ``1.0`` is the low-rank network alone (ranks allocated to the whole budget,
nothing pruned), a larger value tensorizes that many times the budget and lets the score prune
back to it — trains a *copy* of each for ``probe_epochs`` epochs of the given recipe, and returns
the candidate (untrained, at its initialisation) whose mean training loss over the last probe epoch
is lowest. Every candidate holds at most the same whole-model budget, so the choice never trades
weights for accuracy.

Why a probe: at the extreme sparsities of the study the low-rank network alone and the fine grain
are within seed noise of each other on average, but for a *given* seed one of them is often clearly
better, and the early training loss says which (measured on the study's runs: docs/method.md §10).
The probe costs ``len(candidates) · probe_epochs`` extra epochs.

The module is backend-neutral: each candidate is one run of the compress pipeline
(`tedepr.pipeline.run_compress`) on the backend's adapter, and the probe calls the backend's
``fit``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["PROBE_FIT", "check_candidates", "compress_probed"]

#: the recipe of a probe when ``probe_fit`` is not given: the study's default (`tedepr run`)
PROBE_FIT: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 3e-3,
    "weight_decay": 0.0,
    "schedule": "constant",
    "batch_size": 128,
}


def check_candidates(oversample) -> tuple[float, ...]:
    """Validate a sequence of candidate splits: real numbers >= 1, at least two, no repeats."""
    if isinstance(oversample, (str, bytes)) or not isinstance(oversample, Sequence):
        raise TypeError(
            f"oversample must be a float >= 1 or a sequence of them (candidate splits); got "
            f"{type(oversample).__name__}"
        )
    values = []
    for v in oversample:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 1:
            raise ValueError(
                f"every candidate in oversample must be a finite float >= 1; got {v!r}"
            )
        values.append(float(v))
    if len(values) < 2:
        raise ValueError(f"oversample as candidates needs at least two values; got {values}")
    if len(set(values)) != len(values):
        raise ValueError(f"oversample candidates must be distinct; got {values}")
    return tuple(values)


def _fit(backend: str, result, data, epochs: int, seed: int, recipe: dict):
    from .compression import backend_module

    mod = backend_module(backend, None, "training")
    if backend == "torch":
        model = copy.deepcopy(result.model)
        return mod.fit(model, data, epochs=epochs, seed=seed, progress=False, **recipe)
    return mod.fit(
        result.model,
        result.params,
        data,
        masks=result.masks or None,
        epochs=epochs,
        seed=seed,
        progress=False,
        **recipe,
    )


def compress_probed(
    adapter,
    *,
    format,
    score,
    oversample: Sequence[float],
    probe_data,
    probe_epochs,
    probe_fit,
    seed,
    **arguments: Any,
):
    """Run the compress pipeline (`tedepr.pipeline.run_compress`) once per candidate split in
    ``oversample``, probe each result by a short training run on ``probe_data`` and return the one
    with the lowest final probe training loss (``arguments``: the other arguments of `compress`).

    The returned result's report carries the ``probe`` record (each candidate's split, kept
    weights and probe loss) and a note naming the choice. Ties go to the smaller split.
    """
    from .pipeline import run_compress
    from .validation import check_int

    candidates = check_candidates(oversample)
    if format is None:
        raise ValueError("oversample candidates need a tensor format (format=None has no split)")
    if score is None:
        raise ValueError(
            "oversample candidates need a score (score=None is the low-rank network alone)"
        )
    if probe_data is None:
        raise ValueError(
            "oversample given as candidates needs probe_data: training batches for the probe"
        )
    probe_epochs = check_int(probe_epochs, "probe_epochs")
    if probe_fit is not None and not isinstance(probe_fit, dict):
        raise TypeError(f"probe_fit must be a dict of fit options; got {type(probe_fit).__name__}")
    recipe = {**PROBE_FIT, **(probe_fit or {})}
    for banned in ("epochs", "seed", "progress", "masks"):
        if banned in recipe:
            raise ValueError(f"probe_fit must not set {banned!r} (the probe sets it)")
    trials = []
    for split in candidates:
        # 1.0: the low-rank network alone, the whole budget in the cores (nothing pruned)
        result = run_compress(
            adapter,
            format=format,
            score=None if split == 1.0 else score,
            oversample=split,
            seed=seed,
            **arguments,
        )
        fitted = _fit(adapter.name, result, probe_data, probe_epochs, seed, recipe)
        loss = float(fitted.history[-1]["train_loss"])
        trials.append((loss if math.isfinite(loss) else math.inf, split, result))
    best = min(trials, key=lambda t: (t[0], t[1]))
    chosen = best[2]
    summary = ", ".join(
        f"{split:g} ({r.report.kept_weights:,} kept): {loss:.4f}" for loss, split, r in trials
    )
    chosen.report.notes.append(
        f"probe ({probe_epochs} epoch(s)) chose oversample {best[1]:g}"
        f"{' (low-rank alone)' if best[1] == 1.0 else ''}; final probe train loss per split: {summary}"
    )
    chosen.report.probe = [
        {"oversample": split, "kept": r.report.kept_weights, "probe_loss": loss}
        for loss, split, r in trials
    ]
    return chosen
