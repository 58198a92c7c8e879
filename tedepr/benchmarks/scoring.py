"""Time and peak memory of each pruning score: one `tedepr.compress` per score (tensorize, score
with its rounds, prune to 99%), each in a fresh subprocess so that peak memory is its own.

Peak memory: on CPU the growth of the process's peak resident set (``VmHWM``) over its size just
before compress; on CUDA ``torch.cuda.max_memory_allocated``.

    python -m tedepr.benchmarks.scoring                  # LeNet-300-100, every score
    python -m tedepr.benchmarks.scoring --models lenet300_100 vgg16 --scores snip grasp
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

MODELS = {"lenet300_100": (1, 28, 28), "vgg16": (3, 32, 32)}

_CHILD = r"""
import json, resource, sys, time, warnings
import torch
import tedepr
from tedepr.models import get
name, shape, score, fmt, sparsity, batch, device, threads = json.loads(sys.argv[1])
torch.set_num_threads(threads)
torch.manual_seed(0)
kw = {"in_channels": 3, "image_size": 32} if name.startswith("vgg") else {}
model = get(name, backend="torch", **kw).to(device)
g = torch.Generator().manual_seed(0)
data = (torch.randn([batch] + shape, generator=g).to(device),
        torch.randint(0, 10, (batch,), generator=g).to(device))
def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (resource.getpagesize() // 1024)
base = rss_kib()
if device.startswith("cuda"):
    torch.cuda.reset_peak_memory_stats()
    base_cuda = torch.cuda.memory_allocated()
t = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    r = tedepr.compress(model, data, sparsity=sparsity, format=fmt, score=score, backend="torch")
if device.startswith("cuda"):
    torch.cuda.synchronize()
seconds = time.perf_counter() - t
if device.startswith("cuda"):
    peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
else:
    # VmHWM (peak RSS of this process image); ru_maxrss would carry the parent's peak over exec
    try:
        with open("/proc/self/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = (hwm - base) / 1024
kept = tedepr.backends.torch.count_weights(r.model)["kept"]
print(json.dumps({"seconds": seconds, "peak_mib": peak, "kept": kept}))
"""


def parse_args(argv):
    from tedepr.pruning import scores as registry

    ap = argparse.ArgumentParser(
        prog="tedepr bench scoring",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="data-free and one-shot scores only")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["lenet300_100"])
    ap.add_argument("--scores", nargs="+", choices=registry.available())
    ap.add_argument("--format", default="tt", help="tt/tr/tucker/cp, or none for plain pruning")
    ap.add_argument("--sparsity", type=float, default=0.99)
    ap.add_argument("--batch", type=int, default=128, help="scoring batch")
    args = ap.parse_args(argv)
    if args.scores is None:
        args.scores = ["random", "snip"] if args.quick else list(registry.available())
    args.format = None if args.format == "none" else args.format
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available on this machine")
    print(
        f"# {os.cpu_count()} CPU cores; torch {torch.__version__}, {args.threads} thread(s); "
        f"device {args.device}; {'quick' if args.quick else 'full'} run"
    )
    print(
        f"tedepr.compress(format={args.format!r}, sparsity={args.sparsity}), scoring batch "
        f"{args.batch}; one subprocess per score"
    )
    header = f"{'model':<14} {'score':<13} {'seconds':>9} {'peak MiB':>9} {'kept':>8}"
    print(header)
    print("-" * len(header))
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    failed = 0
    for name in args.models:
        for score in args.scores:
            spec = [
                name,
                list(MODELS[name]),
                score,
                args.format,
                args.sparsity,
                args.batch,
                args.device,
                args.threads,
            ]
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, json.dumps(spec)],
                capture_output=True,
                text=True,
                env=env,
            )
            if out.returncode != 0:
                failed += 1
                last = (out.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{name:<14} {score:<13} failed: {last}", flush=True)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{name:<14} {score:<13} {r['seconds']:>9.2f} {r['peak_mib']:>9.1f} {r['kept']:>8,}",
                flush=True,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
