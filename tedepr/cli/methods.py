"""The methods a study compares, by name, and the `compress` options each one means.

- ``dense``: the uncompressed model (reference accuracy, kept = every weight);
- a registered score name (``snip``, ``synflow``, …): pruning at initialization of the *dense* model;
- ``lowrank``: the model tensorized in ``--format`` with nothing pruned, ranks solved so the whole
  model holds at most the budget (the coarse grain alone);
- ``tedepr``: the full method (``--format`` cores, then the library's default score);
- ``tedepr-probe``: the full method with the split chosen per run by a training probe between the
  low-rank network alone and the default split (`tedepr.probe`; ``oversample=PROBE_SPLITS``);
- ``tedepr-draws`` / ``lowrank-draws``: the full method / the low-rank network alone, each the best
  of ``PROBE_DRAWS`` initialisations by the same probe (``probe_draws=PROBE_DRAWS``);
- ``lowrank-orth``: the control of the ``trainability-orth`` candidate (docs/method.md §10, Round 4):
  the low-rank network alone (``oversample=1``, nothing pruned) with its cores re-drawn
  orthogonal at the init's variance, as ``trainability-orth`` re-draws what it keeps;
- ``orth-draws`` / ``lowrank-orth-draws``: ``tt+trainability-orth`` / ``lowrank-orth``, each the
  best of ``PROBE_DRAWS`` initialisations by the probe (docs/method.md §10, Round 5);
- ``<format>+<score>`` (``tt+snip`` …): the fine-grain ablation — tensorize, then prune the cores
  with that score.

Groups: ``default`` (dense, every PaI baseline, lowrank, tedepr), ``ablation`` (``<format>+<score>``
for every registered score) and ``all`` (both).
"""

from __future__ import annotations

import difflib

from ..pruning import scores as registry
from ..report import DEFAULT_OVERSAMPLE
from ..shapes import FORMATS

__all__ = ["BASELINES", "GROUPS", "expand_methods", "compress_options", "is_compressed"]

#: the PaI baselines of the default study, in table order (every data-driven or data-free score
#: except the TEDEPR scores themselves, which are defined on cores)
BASELINES = tuple(n for n in registry.available() if not n.startswith("trainability"))

GROUPS = ("default", "ablation", "all")

#: the candidate splits of ``tedepr-probe``: the low-rank network alone and the default split
PROBE_SPLITS = (1.0, DEFAULT_OVERSAMPLE)
#: the initialisations ``tedepr-draws`` / ``lowrank-draws`` probe
PROBE_DRAWS = 3
_NAMED = (
    "dense",
    "lowrank",
    "tedepr",
    "tedepr-probe",
    "tedepr-draws",
    "lowrank-draws",
    "lowrank-orth",
    "orth-draws",
    "lowrank-orth-draws",
)


def _ablation(fmt: str) -> list[str]:
    # <fmt>+trainability is the `tedepr` row itself
    return [f"{fmt}+{n}" for n in registry.available() if n != "trainability"]


def _known(fmt: str) -> list[str]:
    return ["dense", *BASELINES, "lowrank", "tedepr", *_ablation(fmt)]


def expand_methods(spec, fmt: str) -> list[str]:
    """``spec`` (a comma-separated string or a list of names and group names) → method names, in
    order, without repeats. Raises ``ValueError`` naming the unknown method."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in items:
        name = str(raw).strip()
        if not name:
            continue
        if name == "default":
            names = ["dense", *BASELINES, "lowrank", "tedepr"]
        elif name == "ablation":
            names = _ablation(fmt)
        elif name == "all":
            names = ["dense", *BASELINES, "lowrank", "tedepr", *_ablation(fmt)]
        else:
            names = [name]
        for n in names:
            _check(n, fmt)
            if n not in out:
                out.append(n)
    if not out:
        raise ValueError("--methods: no method given")
    return out


def _check(name: str, fmt: str) -> None:
    head, plus, tail = name.partition("+")
    if plus and head in FORMATS and tail in registry.available():
        return
    if name in _NAMED or name in BASELINES:
        return
    known = _known(fmt) + list(GROUPS)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"--methods: unknown method {name!r}{hint}; choose from {', '.join(known[:9])}, "
        f"<format>+<score> (e.g. {fmt}+snip) or a group ({', '.join(GROUPS)})"
    )


def is_compressed(method: str) -> bool:
    return method != "dense"


def compress_options(method: str, fmt: str) -> dict:
    """The `tedepr.compress` keyword arguments of ``method`` (``{}`` options for ``dense``: no call)."""
    if method == "dense":
        return {}
    if method == "lowrank":
        return {"format": fmt, "score": None}
    if method == "tedepr":
        return {"format": fmt, "score": "trainability"}
    if method == "tedepr-probe":
        return {"format": fmt, "score": "trainability", "oversample": PROBE_SPLITS}
    if method == "tedepr-draws":
        return {"format": fmt, "score": "trainability", "probe_draws": PROBE_DRAWS}
    if method == "lowrank-draws":
        return {"format": fmt, "score": None, "probe_draws": PROBE_DRAWS}
    if method == "lowrank-orth":
        return {"format": fmt, "score": "trainability-orth", "oversample": 1.0}
    if method == "orth-draws":
        return {"format": fmt, "score": "trainability-orth", "probe_draws": PROBE_DRAWS}
    if method == "lowrank-orth-draws":
        return {
            "format": fmt,
            "score": "trainability-orth",
            "oversample": 1.0,
            "probe_draws": PROBE_DRAWS,
        }
    head, plus, tail = method.partition("+")
    if plus:
        return {"format": head, "score": tail}
    return {"format": None, "score": method}
