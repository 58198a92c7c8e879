"""The ``tedepr`` command line: ``tedepr run`` (the main job), ``tedepr report DIR``, ``tedepr bench``.

``tedepr run`` reproduces the study of the paper on the embedded MNIST digits by default: TEDEPR
against the pruning-at-initialization baselines on the dense model and the low-rank network alone,
over a grid of extreme sparsities, every method under one training recipe and at most the same
whole-model weight budget. See docs/reproduction.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

__all__ = ["main", "DEFAULTS", "RECIPE_KEYS"]

#: the default study (also the packaged config ``paper/mnist_lenet300``)
DEFAULTS = {
    "model": "lenet300_100",
    "dataset": "mnist10k",
    "data": None,
    "methods": "default",
    "sparsities": [0.99, 0.995, 0.998, 0.999],
    "seeds": [0, 1],
    "format": "tt",
    "backend": "torch",
    "device": "cpu",
    "workers": "auto",
    "executor": "local",
    "subset": None,
    "model_options": {},
    "dataset_options": {},
    # the one training recipe of every method (docs/reproduction.md: how it was chosen)
    "epochs": 60,
    "batch_size": 128,
    "optimizer": "adam",
    "lr": 3e-3,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "schedule": "cosine",
}

RECIPE_KEYS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule")


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, no usage dump, exit status 2."""

    def error(self, message):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(ValueError):
    """A bad flag value: printed as one line (no traceback), exit status 2."""


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 0.99,0.995; got {text!r}"
        ) from None


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2; got {text!r}") from None


def _workers(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 1 or auto; got {text!r}"
        ) from None


def _resolve_workers(value) -> int:
    import os

    return max(1, min(8, os.cpu_count() or 1)) if value == "auto" else value


def _parser() -> argparse.ArgumentParser:
    from ..shapes import FORMATS

    p = _Parser(prog="tedepr", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser(
        "run",
        help="the main job: TEDEPR vs every baseline over a sparsity grid",
        description="Run a study (method × sparsity × seed), print the table, write JSON and a plot. "
        "Re-running with the same --out skips finished runs.",
    )
    S = argparse.SUPPRESS  # unset flags fall back to --config, then DEFAULTS
    r.add_argument(
        "--config", help="TOML file or packaged name (e.g. paper/mnist_lenet300); flags override it"
    )
    r.add_argument("--out", help="output folder (default runs/<timestamp>)")
    r.add_argument("--model", default=S, help=f"zoo model (default {DEFAULTS['model']})")
    r.add_argument(
        "--dataset",
        default=S,
        help="mnist10k (embedded, default), mnist, cifar10, cifar100, "
        "tiny-imagenet, imagenet, ucf11",
    )
    r.add_argument("--data", default=S, help="PATH of the data set in its standard on-disk layout")
    r.add_argument(
        "--methods",
        default=S,
        help="comma-separated methods or groups: default, ablation, all "
        "(e.g. dense,snip,lowrank,tedepr or tt+snip)",
    )
    r.add_argument("--sparsities", type=_floats, default=S, help="e.g. 0.99,0.995,0.998,0.999")
    r.add_argument("--seeds", type=_ints, default=S, help="e.g. 0,1")
    r.add_argument("--epochs", type=int, default=S, help=f"default {DEFAULTS['epochs']}")
    r.add_argument(
        "--batch-size",
        dest="batch_size",
        type=int,
        default=S,
        help=f"default {DEFAULTS['batch_size']}",
    )
    r.add_argument(
        "--optimizer",
        default=S,
        choices=("sgd", "adam", "adamw"),
        help=f"default {DEFAULTS['optimizer']}",
    )
    r.add_argument(
        "--lr", type=float, default=S, help=f"peak learning rate (default {DEFAULTS['lr']:g})"
    )
    r.add_argument(
        "--momentum", type=float, default=S, help="SGD momentum / Adam beta1 (default 0.9)"
    )
    r.add_argument("--weight-decay", dest="weight_decay", type=float, default=S, help="default 0")
    r.add_argument(
        "--schedule", default=S, choices=("cosine", "step", "constant"), help="default cosine"
    )
    r.add_argument(
        "--format", default=S, choices=FORMATS, help="tensor format of lowrank/tedepr (default tt)"
    )
    r.add_argument("--backend", default=S, choices=("torch", "jax"))
    r.add_argument("--device", default=S, help="cpu (default), cuda, cuda:1, … (jax: cpu, gpu)")
    r.add_argument(
        "--workers",
        type=_workers,
        default=S,
        help="runs in parallel processes: N or auto (default: one per core, at most 8)",
    )
    r.add_argument(
        "--executor", default=S, choices=("local", "ray"), help="local processes or a Ray cluster"
    )
    r.add_argument(
        "--subset", type=int, default=S, help="use only the first N training samples (N/4 test)"
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    rep = sub.add_parser("report", help="re-render the table and the plot of a finished study")
    rep.add_argument("dir", help="a study's output folder")
    b = sub.add_parser("bench", help="run the benchmark suite", add_help=False)
    b.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _load_config(ref: str) -> dict:
    try:
        from .. import configs
    except ImportError as exc:  # pragma: no cover - configs ship with the package
        raise UsageError(f"--config: configuration files are unavailable ({exc})") from exc
    try:
        return configs.load(ref)
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"--config: {exc}") from exc


def resolve(args: argparse.Namespace) -> dict:
    """DEFAULTS, overridden by ``--config``, overridden by the flags given; validated."""
    from .methods import expand_methods

    config = dict(DEFAULTS)
    if getattr(args, "config", None):
        loaded = _load_config(args.config)
        loaded.pop("description", None)
        config.update(loaded)
    for key in list(DEFAULTS):
        if hasattr(args, key):
            config[key] = getattr(args, key)
    _validate(config)
    config["methods"] = _flag("--methods", expand_methods, config["methods"], config["format"])
    config["recipe"] = {k: config.pop(k) for k in RECIPE_KEYS}
    return config


def _flag(flag, fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except ValueError as exc:
        msg = str(exc)
        raise UsageError(msg if msg.startswith(flag) else f"{flag}: {msg}") from exc


def _validate(c: dict) -> None:
    from ..models import available as zoo
    from .data import DATASETS

    def need(ok, flag, expected, value):
        if not ok:
            raise UsageError(f"{flag}: expected {expected}; got {value!r}")

    models = zoo(c["backend"]) if c["backend"] in ("torch", "jax") else ()
    need(c["backend"] in ("torch", "jax"), "--backend", "torch or jax", c["backend"])
    need(c["model"] in models, "--model", "one of " + ", ".join(models), c["model"])
    need(c["dataset"] in DATASETS, "--dataset", "one of " + ", ".join(DATASETS), c["dataset"])
    sp = c["sparsities"]
    need(
        isinstance(sp, list)
        and sp
        and all(isinstance(s, (int, float)) and math.isfinite(s) and 0 <= s < 1 for s in sp),
        "--sparsities",
        "numbers in [0, 1) (fraction of dense weights removed)",
        sp,
    )
    need(
        isinstance(c["seeds"], list)
        and c["seeds"]
        and all(isinstance(s, int) and s >= 0 for s in c["seeds"]),
        "--seeds",
        "non-negative integers",
        c["seeds"],
    )
    if c["workers"] != "auto":
        need(
            isinstance(c["workers"], int) and c["workers"] >= 1,
            "--workers",
            "an integer >= 1 or auto",
            c["workers"],
        )
    for key, flag in (("epochs", "--epochs"), ("batch_size", "--batch-size")):
        need(isinstance(c[key], int) and c[key] >= 1, flag, "an integer >= 1", c[key])
    need(
        c["subset"] is None or (isinstance(c["subset"], int) and c["subset"] >= 1),
        "--subset",
        "an integer >= 1",
        c["subset"],
    )
    need(
        isinstance(c["lr"], (int, float)) and math.isfinite(c["lr"]) and c["lr"] > 0,
        "--lr",
        "a number > 0",
        c["lr"],
    )
    need(
        isinstance(c["momentum"], (int, float)) and 0 <= c["momentum"] < 1,
        "--momentum",
        "a number in [0, 1)",
        c["momentum"],
    )
    need(
        isinstance(c["weight_decay"], (int, float))
        and math.isfinite(c["weight_decay"])
        and c["weight_decay"] >= 0,
        "--weight-decay",
        "a number >= 0",
        c["weight_decay"],
    )
    need(c["executor"] in ("local", "ray"), "--executor", "local or ray", c["executor"])
    if c["data"] is not None and not Path(c["data"]).exists():
        raise UsageError(f"--data: path {c['data']!r} does not exist")
    if c["backend"] == "torch":
        dev = str(c["device"])
        need(
            dev == "cpu" or dev.startswith(("cuda", "mps")),
            "--device",
            "cpu, cuda, cuda:N or mps",
            dev,
        )


def _title(config: dict) -> str:
    r = config["recipe"]
    return (
        f"{config['model']} on {config['dataset']} ({config['backend']}, format {config['format']}); "
        f"recipe: {r['optimizer']} lr {r['lr']:g}, wd {r['weight_decay']:g}, {r['schedule']}, "
        f"{r['epochs']} epochs, batch {r['batch_size']}"
    )


def _write_outputs(out: Path, config: dict, records: list[dict]) -> tuple[str, Path | None]:
    from .methods import expand_methods
    from .study import environment, write_json
    from .table import aggregate, plot, render_markdown, render_table

    # the study's methods first, then any other finished method in the canonical order
    order = list(config["methods"])
    order += [m for m in expand_methods("all", config["format"]) if m not in order]
    rows = aggregate(records, order)
    title = _title(config)
    text = render_table(rows, title)
    write_json(
        out / "results.json",
        {"config": config, "environment": environment(), "summary": rows, "runs": records},
    )
    tmp = out / ".table.txt.tmp"
    tmp.write_text(text + "\n\n" + render_markdown(rows) + "\n")
    tmp.replace(out / "table.txt")
    png = plot(rows, out / "accuracy.png", title=f"{config['model']} on {config['dataset']}")
    return text, png


def cmd_run(args) -> int:
    from .data import prepare_data
    from .study import execute, plan_runs, write_json

    config = resolve(args)
    rank, world = _init_distributed(config)
    if world > 1 and not args.out:
        raise UsageError("--out: a distributed run (torchrun) needs --out, the same on every rank")
    out = Path(args.out) if args.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    data_config = {
        "dataset": config["dataset"],
        "data": config["data"],
        "subset": config["subset"],
        "dataset_options": config["dataset_options"],
    }
    _flag("--data", prepare_data, **data_config)  # fail fast, one line, before any run
    lead = rank == 0  # under torchrun only rank 0 writes and prints
    if lead:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "study.json", config)
    specs = plan_runs(config)
    if lead:
        print(f"tedepr run: {len(specs)} runs → {out}", file=sys.stderr)
        ddp = f"; every run trains with DDP over {world} processes" if world > 1 else ""
        print(_title(config) + ddp, file=sys.stderr)
    t0 = time.perf_counter()
    try:
        records = execute(
            specs,
            out,
            data_config,
            workers=1 if world > 1 else _resolve_workers(config["workers"]),
            executor="local" if world > 1 else config["executor"],
            progress=lead and not args.no_progress,
            write=lead,
        )
    except KeyboardInterrupt:
        print(
            f"\ntedepr run: interrupted; finished runs are saved in {out} — "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    if not lead:
        return 0
    text, png = _write_outputs(out, config, list(records.values()))
    print(text)
    print(
        f"\nwall time {time.perf_counter() - t0:.0f} s; results: {out / 'results.json'}"
        + (f", plot: {png}" if png else " (install matplotlib for the plot)"),
        file=sys.stderr,
    )
    return 0


def _init_distributed(config: dict) -> tuple[int, int]:
    """Under torchrun (``WORLD_SIZE`` > 1): join the process group, so that every run of the sweep
    trains with DDP (`fit` picks the group up); every rank runs the same sweep in the same order,
    and only rank 0 writes."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if config["backend"] != "torch":
        raise UsageError(
            "--backend: a torchrun launch trains with DDP, which needs --backend torch"
        )
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if str(config["device"]).startswith("cuda") else "gloo")
    if str(config["device"]).startswith("cuda"):
        config["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return dist.get_rank(), dist.get_world_size()


def cmd_report(args) -> int:
    import json

    from .study import load_records

    out = Path(args.dir)
    study = out / "study.json"
    if not study.is_file():
        raise UsageError(f"report: {str(out)!r} is not a study folder (no study.json)")
    config = json.loads(study.read_text())
    records = list(load_records(out).values())
    if not records:
        raise UsageError(f"report: {str(out)!r} holds no finished run")
    text, png = _write_outputs(out, config, records)
    print(text)
    return 0


def cmd_bench(args) -> int:
    try:
        from ..bench import main as bench_main
    except ImportError as exc:
        raise UsageError(f"bench: the benchmark suite is unavailable ({exc})") from exc
    return int(bench_main(args.args) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the suite parses its own flags (tedepr bench --help)
        return cmd_bench(argparse.Namespace(args=argv[1:]))
    args = _parser().parse_args(argv)
    try:
        return {"run": cmd_run, "report": cmd_report, "bench": cmd_bench}[args.command](args)
    except UsageError as exc:
        print(f"tedepr {args.command}: error: {exc}", file=sys.stderr)
        return 2
