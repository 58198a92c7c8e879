"""Timing helpers shared by the benchmark suites: medians of many repeats, device synchronisation."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence

__all__ = ["Timer", "STATS", "median_ms", "interleaved", "summarize", "sync_for", "table"]


def sync_for(device) -> Callable[[], None]:
    """A function that waits for ``device``'s queued work (a no-op on CPU)."""
    dev = str(device)
    if dev.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def median_ms(
    fn: Callable[[], object],
    *,
    repeats: int = 15,
    number: int | None = None,
    min_time: float = 2e-3,
    warmup: int = 3,
    sync: Callable[[], None] = lambda: None,
) -> float:
    """Median over ``repeats`` of the mean time of ``number`` calls of ``fn``, in milliseconds.

    ``number`` defaults to enough calls for one repeat to last ``min_time`` seconds (timer noise).
    """
    for _ in range(warmup):
        fn()
    sync()
    if number is None:
        t = time.perf_counter()
        fn()
        sync()
        one = max(time.perf_counter() - t, 1e-7)
        number = max(1, min(1000, int(min_time / one)))
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        times.append((time.perf_counter() - t) / number)
    return 1e3 * statistics.median(times)


def interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int = 15,
    min_time: float = 2e-3,
    warmup: int = 3,
    sync: Callable[[], None] = lambda: None,
    budget: float | None = None,
    stat: str = "median",
) -> dict[str, float]:
    """Median (or ``stat``: ``"min"``, ``"p25"``) ms per call of each function, timed round-robin
    so load drifts hit them all alike.

    A loaded machine slows everything for seconds at a time; timing candidates one after another
    would turn that drift into fake ratios, so every repeat times each candidate once, in turn.
    ``budget`` (seconds) lowers the number of repeats (never below 3) when one round is long.
    """
    numbers, singles, rounds = {}, {}, 0.0
    for name, fn in fns.items():
        start = time.perf_counter()
        for _ in range(warmup):  # a slow candidate needs fewer: stop after half a second
            fn()
            if time.perf_counter() - start > 0.5:
                break
        sync()
        t = time.perf_counter()
        fn()
        sync()
        one = max(time.perf_counter() - t, 1e-7)
        numbers[name] = max(1, min(1000, int(min_time / one)))
        singles[name] = one
        rounds += numbers[name] * one
    if budget is not None:
        repeats = max(3, min(repeats, int(budget / max(rounds, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    shuffle = random.Random(0).shuffle
    for _ in range(repeats):
        shuffle(order)  # no candidate always follows the same (cache-flushing) neighbour
        for name in order:
            fn, n = fns[name], numbers[name]
            if singles[name] < 0.05:  # untimed call first: the previous one may have flushed caches
                fn()
            sync()
            t = time.perf_counter()
            for _ in range(n):
                fn()
            sync()
            times[name].append((time.perf_counter() - t) / n)
    return {name: 1e3 * summarize(ts, stat) for name, ts in times.items()}


STATS = ("median", "min", "p25")


def summarize(samples: Sequence[float], stat: str = "median") -> float:
    """``median``, ``min`` or ``p25`` (lower quartile) of ``samples``.

    On a shared machine a process is preempted for whole scheduler slices (milliseconds), so the
    times of a 1 ms call are bimodal; ``min``/``p25`` measure the call itself, ``median`` what a
    user sees under that load.
    """
    if stat == "median":
        return statistics.median(samples)
    if stat == "min":
        return min(samples)
    if stat == "p25":
        return statistics.quantiles(samples, n=4, method="inclusive")[0]
    raise ValueError(f"stat must be one of {', '.join(map(repr, STATS))}; got {stat!r}")


class Timer:
    """Repeats and minimum repeat length for a run (``--quick`` shrinks both)."""

    def __init__(
        self, quick: bool = False, device="cpu", budget: float | None = None, stat="median"
    ) -> None:
        self.budget = budget
        self.stat = stat
        self.repeats = 5 if quick else 21
        self.min_time = 1e-3 if quick else 5e-3
        self.warmup = 2 if quick else 5
        self.sync = sync_for(device)

    def run(self, fns: dict[str, Callable[[], object]]) -> dict[str, float]:
        return interleaved(
            fns,
            repeats=self.repeats,
            min_time=self.min_time,
            warmup=self.warmup,
            sync=self.sync,
            budget=self.budget,
            stat=self.stat,
        )


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(header))]
    lines = []
    for n, r in enumerate(cells):
        parts = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


#: the models the training and inference suites time, and one sample's shape
MODELS = {"lenet300_100": (1, 28, 28), "vgg16": (3, 32, 32)}
# the CIFAR shape for VGG-16 (the zoo's default input is MNIST-like)
MODEL_KW = {"lenet300_100": {}, "vgg16": {"in_channels": 3, "image_size": 32}}
