"""Run setup shared by the suites: thread count, device check, and a line describing the machine."""

from __future__ import annotations

import os
import platform


def setup(args) -> None:
    """Apply ``--threads`` and check ``--device`` (a clear error when it is not available)."""
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available on this machine")


def describe(args) -> str:
    import torch

    dev = torch.device(args.device)
    if dev.type == "cuda":
        where = torch.cuda.get_device_name(dev)
    else:
        where = f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"
    return (
        f"# {where}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
        f"device {args.device}; {'quick' if args.quick else 'full'} run"
        + (f"; statistic: {args.stat} of the repeats" if getattr(args, "stat", None) else "")
    )
