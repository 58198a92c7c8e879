"""File size and inference latency of compressed LeNet-300-100 (TT + SNIP), measured in one run.

For each sparsity (99%, 99.5%, 99.9%) the model is compressed on embedded MNIST digits
(``tedepr.compress(model, data, sparsity=s, format="tt", score="snip", backend="torch")``) and
saved with `tedepr.save` in float32 and float16; the file's bytes are compared with the dense
model's ``state_dict`` (its tensors' bytes, and the ``torch.save`` file of it).

Then, at one sparsity (default 99.5%), the inference latency (forward, ``torch.inference_mode``,
eval mode) per batch size is timed for

* ``dense``    the dense LeNet-300-100,
* ``pai``      the dense model with PaI (SNIP) masks at the same sparsity (parametrized, ``w * m``),
* ``masked``   the compressed model as `compress` returns it (masks as parametrizations),
* ``unfolded`` `finalize(model)`: masks folded into the cores, layers still tensorized,
* ``folded``   `finalize(model, batch_size=b, fold="auto")`: layers pre-contracted where the cost
               model says a dense product is cheaper at batch b,
* ``measure``  `finalize(model, batch_size=b, fold="measure")`: the same decision by timing each
               layer both ways on this machine,
* ``control``  a second copy of the dense model: its ratio to dense shows the timing noise.

Every time is the median over rounds in which the variants are interleaved (so a load change on a
shared machine hits them alike); ratios are ``dense time / variant time`` (> 1: faster than dense).

    python benchmarks/storage.py                    # all tables
    python benchmarks/storage.py --rounds 60 --threads 1 --latency-sparsity 0.999
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import tedepr  # noqa: E402
from tedepr.backends.torch import finalize  # noqa: E402
from tedepr.backends.torch.layers import _TensorizedLinear  # noqa: E402
from tedepr.datasets import load_mnist10k, normalize  # noqa: E402

SPARSITIES = (0.99, 0.995, 0.999)
BATCHES = (1, 8, 64, 256)


def _data(n: int):
    x, y = load_mnist10k()
    x = torch.as_tensor(normalize(x[:n])[:, None], dtype=torch.float32)
    return x, torch.as_tensor(y[:n], dtype=torch.long)


def _state_dict_bytes(model) -> tuple[int, int]:
    """(bytes of the state dict's tensors, bytes of its torch.save file)."""
    sd = model.state_dict()
    raw = sum(t.numel() * t.element_size() for t in sd.values())
    buf = io.BytesIO()
    torch.save(sd, buf)
    return raw, buf.getbuffer().nbytes


def storage_table(dense, data, tmp: Path) -> tuple[list[str], dict]:
    raw, pickled = _state_dict_bytes(dense)
    lines = [
        f"dense LeNet-300-100 state_dict: {raw:,} B of tensors ({pickled:,} B as a torch.save file)",
        "",
        "| sparsity | kept weights | tedepr.save float32 | ratio | tedepr.save float16 | ratio "
        "| masked state_dict (torch.save) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    results = {}
    for s in SPARSITIES:
        r = tedepr.compress(dense, data, sparsity=s, format="tt", score="snip", backend="torch")
        n32 = tedepr.save(r, tmp / f"m{s}.tedepr")
        n16 = tedepr.save(r, tmp / f"m{s}.f16.tedepr", dtype="float16")
        _, masked_pickled = _state_dict_bytes(r.model)
        results[s] = r
        lines.append(
            f"| {s:.1%} | {r.report.kept_weights:,} | {n32:,} B | {raw / n32:.1f}x | {n16:,} B "
            f"| {raw / n16:.1f}x | {masked_pickled:,} B |"
        )
    return lines, results


def _time(fns: dict, x, rounds: int, min_round_s: float = 2e-3) -> dict[str, list[float]]:
    """Seconds per call of each fn(x) in each of ``rounds`` interleaved rounds."""
    inner = {}
    with torch.inference_mode():
        for name, fn in fns.items():
            for _ in range(3):  # warm-up (plans, allocator)
                fn(x)
            t0 = time.perf_counter()
            fn(x)
            dt = max(time.perf_counter() - t0, 1e-7)
            inner[name] = max(1, int(min_round_s / dt))
        samples = {name: [] for name in fns}
        order = list(fns)
        rng = random.Random(0)
        for _ in range(rounds):
            rng.shuffle(order)  # no variant always runs first (cold caches, preemption)
            for name in order:
                fn = fns[name]
                n = inner[name]
                t0 = time.perf_counter()
                for _ in range(n):
                    fn(x)
                samples[name].append((time.perf_counter() - t0) / n)
    return samples


def _ratio(samples: dict, a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b), paired within each round (robust to load drift)."""
    return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))


def latency_table(dense, result, data, sparsity: float, rounds: int) -> list[str]:
    pai = tedepr.compress(
        dense, data, sparsity=sparsity, format=None, score="snip", backend="torch"
    )
    dense = dense.eval()
    pai_model = pai.model.eval()
    masked = result.model.eval()
    unfolded = finalize(masked)
    control = copy.deepcopy(dense)  # the same dense model again: its ratio is the noise floor
    lines = [
        f"latency at {sparsity:.1%}: medians of {rounds} interleaved rounds; ratio = dense / "
        "variant, the median of per-round ratios (> 1: faster than dense)",
        "",
        "| batch | dense | PaI masked | tedepr masked | unfolded | folded (auto) "
        "| folded (measure) | folded layers: auto / measure "
        "| PaI/dense | masked/dense | unfolded/dense | auto/dense | measure/dense "
        "| auto vs unfolded | control (dense again) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    g = torch.Generator().manual_seed(0)
    for b in BATCHES:
        folded = finalize(masked, batch_size=b, fold="auto")
        measured = finalize(masked, batch_size=b, fold="measure")
        names = [n for n, m in masked.named_modules() if isinstance(m, _TensorizedLinear)]
        folded_names = [n for n in names if isinstance(folded.get_submodule(n), torch.nn.Linear)]
        measured_names = [
            n for n in names if isinstance(measured.get_submodule(n), torch.nn.Linear)
        ]
        x = torch.randn((b,) + tuple(data[0].shape[1:]), generator=g)
        samples = _time(
            {
                "dense": dense,
                "control": control,
                "pai": pai_model,
                "masked": masked,
                "unfolded": unfolded,
                "folded": folded,
                "measured": measured,
            },
            x,
            rounds,
        )
        us = {k: statistics.median(v) * 1e6 for k, v in samples.items()}

        def r(variant, base="dense", samples=samples):
            return f"{_ratio(samples, base, variant):.2f}x"

        lines.append(
            f"| {b} | {us['dense']:.1f} µs | {us['pai']:.1f} µs | {us['masked']:.1f} µs "
            f"| {us['unfolded']:.1f} µs | {us['folded']:.1f} µs | {us['measured']:.1f} µs "
            f"| {', '.join(folded_names) or 'none'} / {', '.join(measured_names) or 'none'} "
            f"| {r('pai')} | {r('masked')} | {r('unfolded')} | {r('folded')} | {r('measured')} "
            f"| {r('folded', 'unfolded')} | {r('control')} |"
        )
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=40, help="interleaved timing rounds")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--digits", type=int, default=256, help="embedded MNIST digits for scoring")
    p.add_argument("--latency-sparsity", type=float, default=0.995)
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
    )
    data = _data(args.digits)
    dense = tedepr.models.get("lenet300_100", backend="torch", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        lines, results = storage_table(dense, data, Path(tmp))
    print("\n".join(lines))
    print()
    s = args.latency_sparsity
    result = results.get(s) or tedepr.compress(
        dense, data, sparsity=s, format="tt", score="snip", backend="torch"
    )
    print("\n".join(latency_table(dense, result, data, s, args.rounds)))


if __name__ == "__main__":
    main()
