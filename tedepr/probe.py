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
``probe_draws=K`` adds K initialisations per split to the candidates (seeds ``seed + k ·
DRAW_STRIDE``): at 99.9% a network's accuracy varies by several points with its initialisation
alone, and the probe loss ranks the draws well there (docs/method.md §10). The probe costs
``len(candidates) · probe_draws · probe_epochs`` extra epochs.

The module is backend-neutral: each candidate is one run of the compress pipeline
(`tedepr.pipeline.run_compress`) on the backend's adapter, and the probe calls the backend's
``fit``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["PROBE_FIT", "DRAW_STRIDE", "check_candidates", "compress_probed"]

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


#: the seed step between two draws of the same split
DRAW_STRIDE = 10007


def compress_probed(
    adapter,
    *,
    format,
    score,
    oversample,
    probe_data,
    probe_epochs,
    probe_fit,
    probe_draws,
    seed,
    **arguments: Any,
):
    """Run the compress pipeline (`tedepr.pipeline.run_compress`) once per candidate — each split
    in ``oversample`` (a float is one split) times ``probe_draws`` initialisations (seeds ``seed +
    k · DRAW_STRIDE``) — probe each result by a short training run on ``probe_data`` (always with
    the caller's ``seed``, so every candidate sees the same batches) and return the one with the
    lowest final probe training loss (``arguments``: the other arguments of `compress`).

    The returned result's report carries the ``probe`` record (each candidate's split, seed, kept
    weights and probe loss) and a note naming the choice. Ties go to the smaller split, then the
    earlier draw.
    """
    from .pipeline import run_compress
    from .validation import check_int

    probe_draws = check_int(probe_draws, "probe_draws")
    if isinstance(oversample, bool) or not isinstance(oversample, (int, float)):
        candidates = check_candidates(oversample)
        if format is None:
            raise ValueError(
                "oversample candidates need a tensor format (format=None has no split)"
            )
        if score is None:
            raise ValueError(
                "oversample candidates need a score (score=None is the low-rank network alone)"
            )
    else:
        candidates = (oversample,)
    if probe_data is None:
        raise ValueError(
            "probing candidates (oversample a sequence, or probe_draws > 1) needs probe_data: "
            "training batches for the probe"
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
        for k in range(probe_draws):
            draw = seed + k * DRAW_STRIDE
            # split 1.0: the low-rank network alone, the whole budget in the cores (a score that
            # re-draws what it keeps stays: it re-draws the unpruned cores, `lowrank-orth`)
            alone = split == 1.0 and _reinit(score) == "none"
            result = run_compress(
                adapter,
                format=format,
                score=None if alone else score,
                oversample=split,
                seed=draw,
                **arguments,
            )
            fitted = _fit(adapter.name, result, probe_data, probe_epochs, seed, recipe)
            loss = float(fitted.history[-1]["train_loss"])
            trials.append((loss if math.isfinite(loss) else math.inf, split, k, draw, result))
    best = min(trials, key=lambda t: (t[0], t[1], t[2]))
    chosen = best[4]
    summary = ", ".join(
        f"{split:g}/seed {draw} ({r.report.kept_weights:,} kept): {loss:.4f}"
        for loss, split, _, draw, r in trials
    )
    what = "the low-rank network alone" if score is None or best[1] == 1.0 else None
    what = what or f"oversample {best[1]:g}"
    chosen.report.notes.append(
        f"probe ({probe_epochs} epoch(s)) chose {what}, seed {best[3]}; "
        f"final probe train loss per candidate: {summary}"
    )
    chosen.report.probe = [
        {"oversample": split, "seed": draw, "kept": r.report.kept_weights, "probe_loss": loss}
        for loss, split, _, draw, r in trials
    ]
    return chosen


def _reinit(score) -> str:
    """The re-initialisation a score applies to what it keeps ("none" for most)."""
    from .pruning import scores as registry

    return "none" if score is None else getattr(registry.get(score), "reinit", "none")
