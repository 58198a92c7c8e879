"""Tensorized Linear (and one Conv2d) layers: forward and forward+backward time per batch size,
against ``nn.Linear`` / ``nn.Conv2d``, every forced contraction strategy, ``auto``, ``autotune``
and (when installed) tltorch's ``FactorizedLinear`` at about equal parameters.

Every row is timed in one interleaved run (medians over repeats); the ratios compare cells of the
same row. ``auto/best`` is auto's time over the best of dense and every forced strategy (the
issue-9 target is <= 1.1); ``dense/auto`` > 1 means auto is faster than dense.

    python -m tedepr.benchmarks.layers                  # full tables (minutes)
    python -m tedepr.benchmarks.layers --quick          # a short run
    python -m tedepr.benchmarks.layers --sizes 4096 --formats tt:8 --batches 1 8 64 256
"""

from __future__ import annotations

import argparse
import warnings

from ._timing import Timer

FORCED = ("chain", "optimal", "reconstruct")
DEFAULT_FORMATS = ("tt:4", "tt:8", "tt:16", "tr:4", "tr:8", "tr:16", "tucker:32", "cp:64")
QUICK_FORMATS = ("tt:8", "tucker:32")
TLTORCH_NAME = {"tt": "blocktt", "tucker": "tucker", "cp": "cp"}


def parse_args(argv, description=__doc__):
    ap = argparse.ArgumentParser(
        prog="tedepr bench layers",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    ap.add_argument("--quick", action="store_true", help="a short run: fewer shapes and repeats")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--sizes", type=int, nargs="+", help="square layer sizes (default 1024 4096)")
    ap.add_argument("--batches", type=int, nargs="+", help="default 1 8 64 256")
    ap.add_argument(
        "--formats", nargs="+", help="format:rank items, e.g. tt:8 tr:4 tucker:32 cp:64"
    )
    ap.add_argument("--passes", nargs="+", choices=["fwd", "fwdbwd"], default=["fwd", "fwdbwd"])
    ap.add_argument("--no-conv", action="store_true", help="skip the Conv2d rows")
    ap.add_argument("--no-tltorch", action="store_true", help="skip tltorch even if installed")
    ap.add_argument("--no-autotune", action="store_true", help="skip the autotune column")
    ap.add_argument(
        "--stat",
        choices=["median", "min", "p25"],
        default="median",
        help="statistic of the repeats (default median; min/p25 resist preemption)",
    )
    ap.add_argument("--budget", type=float, help="seconds of timing per row (adapts repeats)")
    args = ap.parse_args(argv)
    if args.sizes is None:
        args.sizes = [1024] if args.quick else [1024, 4096]
    if args.batches is None:
        args.batches = [1, 64] if args.quick else [1, 8, 64, 256]
    if args.formats is None:
        args.formats = list(QUICK_FORMATS if args.quick else DEFAULT_FORMATS)
    if args.budget is None:
        args.budget = 1.5 if args.quick else 8.0
    for item in args.formats:
        fmt, _, rank = item.partition(":")
        if fmt not in ("tt", "tr", "tucker", "cp") or not rank.isdigit():
            ap.error(
                f"--formats items look like tt:8 (format tt/tr/tucker/cp, int rank); got {item!r}"
            )
    return args


def _tltorch():
    try:
        import tltorch  # noqa: F401
    except ImportError:
        return None
    return tltorch


def _step(module, x, backward):
    import torch

    if backward:

        def run():  # a training step's gradient work: fresh gradients, as after zero_grad()
            module.zero_grad(set_to_none=True)
            module(x).sum().backward()

    else:

        def run():
            with torch.no_grad():
                module(x)

    return run


def linear_rows(args, timer, passes):
    import torch

    from tedepr.backends.torch import linear_class

    tlt = None if args.no_tltorch else _tltorch()
    device = torch.device(args.device)
    results = []
    for size in args.sizes:
        for item in args.formats:
            fmt, _, rank = item.partition(":")
            rank = int(rank)
            cls = linear_class(fmt)
            layers = {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # rank capping on small modes
                for s in FORCED + ("auto",) + (() if args.no_autotune else ("autotune",)):
                    torch.manual_seed(0)
                    layers[s] = cls(size, size, rank=rank, strategy=s, device=device)
            params = layers["auto"].num_params
            dense = torch.nn.Linear(size, size, device=device)
            extra = {}
            if tlt is not None and fmt in TLTORCH_NAME:
                ref = layers["auto"]
                tl = tlt.FactorizedLinear(
                    in_tensorized_features=ref.in_modes,
                    out_tensorized_features=ref.out_modes,
                    factorization=TLTORCH_NAME[fmt],
                    rank=params / (size * size),
                ).to(device)
                extra[f"tltorch {TLTORCH_NAME[fmt]}"] = tl
                tl_params = sum(p.numel() for n, p in tl.named_parameters() if "bias" not in n)
            for batch in args.batches:
                x = torch.randn(batch, size, device=device)
                for p in passes:
                    back = p == "fwdbwd"
                    fns = {"dense": _step(dense, x, back)}
                    fns.update({s: _step(m, x, back) for s, m in layers.items()})
                    fns.update({k: _step(m, x, back) for k, m in extra.items()})
                    times = timer.run(fns)
                    label = f"{fmt.upper()} r{rank} {size}x{size}"
                    picked = layers["auto"]._plan(batch).strategy
                    tuned = (
                        ""
                        if args.no_autotune
                        else layers["autotune"]
                        ._plans[next(k for k in layers["autotune"]._plans if k[0] == batch)]
                        .strategy
                    )
                    results.append(
                        dict(
                            label=label,
                            params=params,
                            tl_params=tl_params if extra else None,
                            batch=batch,
                            pass_=p,
                            times=times,
                            picked=picked,
                            tuned=tuned,
                        )
                    )
                    _print_row(results[-1], args)
    return results


_HEADER_PRINTED: set = set()


def _print_row(r, args):
    t = r["times"]
    best = min(t[k] for k in ("dense",) + FORCED)
    cols = ["dense"] + list(FORCED) + ["auto"] + ([] if args.no_autotune else ["autotune"])
    cols += [k for k in t if k.startswith("tltorch")]
    key = tuple(cols)
    if key not in _HEADER_PRINTED:
        _HEADER_PRINTED.add(key)
        print()
        print(
            "ms per call; auto/best = auto over the best of dense and every forced strategy; "
            "dense/auto > 1: faster than dense"
        )
        print(
            "  ".join(
                [f"{'layer':<20}", f"{'params':>8}", f"{'pass':>6}", f"{'batch':>5}"]
                + [f"{c[:15]:>15}" for c in cols]
                + [f"{'auto/best':>9}", f"{'dense/auto':>10}", "picks (auto, autotune)"]
            ),
            flush=True,
        )
    cells = [f"{t[c]:15.3f}" for c in cols]
    extra = ""
    if r["tl_params"] is not None:
        tl_key = next(k for k in t if k.startswith("tltorch"))
        extra = f"; tltorch/auto {t[tl_key] / t['auto']:.2f}x ({r['tl_params']} params)"
    print(
        "  ".join(
            [f"{r['label']:<20}", f"{r['params']:>8}", f"{r['pass_']:>6}", f"{r['batch']:>5}"]
            + cells
            + [f"{t['auto'] / best:9.2f}", f"{t['dense'] / t['auto']:10.2f}"]
        )
        + f"  {r['picked']}, {r['tuned'] or '-'}{extra}",
        flush=True,
    )


def conv_rows(args, timer, passes):
    import torch

    from tedepr.backends.torch import TTConv2d, TuckerConv2d

    device = torch.device(args.device)
    c, hw = 64, 32
    rows = []
    configs = [
        (TTConv2d, 8, ("auto", "reconstruct", "unfold")),
        (TuckerConv2d, 16, ("auto", "reconstruct", "unfold", "factorized")),
    ]
    batches = [1, 32] if args.quick else [1, 8, 64]
    print()
    print(
        f"Conv2d {c}->{c}, 3x3, padding 1, input {hw}x{hw}: ms per call (dense/<strategy> > 1: faster)"
    )
    print(
        f"{'layer':<18}{'pass':>8}{'batch':>6}{'dense':>10}"
        + "".join(f"{s:>12}" for s in ("auto", "reconstruct", "unfold", "factorized"))
        + f"{'dense/auto':>12}"
    )
    for cls, rank, strategies in configs:
        torch.manual_seed(0)
        dense = torch.nn.Conv2d(c, c, 3, padding=1, device=device)
        layers = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for s in strategies:
                torch.manual_seed(0)
                layers[s] = cls(c, c, 3, padding=1, rank=rank, strategy=s, device=device)
        for batch in batches:
            x = torch.randn(batch, c, hw, hw, device=device)
            for p in passes:
                back = p == "fwdbwd"
                fns = {"dense": _step(dense, x, back)}
                fns.update({s: _step(m, x, back) for s, m in layers.items()})
                t = timer.run(fns)
                cells = "".join(
                    f"{t[s]:12.3f}" if s in t else f"{'-':>12}"
                    for s in ("auto", "reconstruct", "unfold", "factorized")
                )
                print(
                    f"{cls.__name__ + f' r{rank}':<18}{p:>8}{batch:>6}{t['dense']:10.3f}{cells}"
                    f"{t['dense'] / t['auto']:12.2f}",
                    flush=True,
                )
                rows.append((cls.__name__, p, batch, t))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ._env import describe, setup

    setup(args)
    print(describe(args))
    timer = Timer(quick=args.quick, device=args.device, budget=args.budget, stat=args.stat)
    tlt = None if args.no_tltorch else _tltorch()
    if not args.no_tltorch and tlt is None:
        print("tltorch not installed (pip install tensorly-torch): its columns are skipped")
    linear_rows(args, timer, args.passes)
    if not args.no_conv:
        conv_rows(args, timer, args.passes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
