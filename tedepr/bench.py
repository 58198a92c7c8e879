"""``tedepr bench``: run the benchmark suites (`tedepr.benchmarks`) from the installed package.

    tedepr bench                       # every suite, full tables
    tedepr bench --quick               # every suite, short runs
    tedepr bench layers --sizes 4096   # one suite with its own options (--help lists them)
    tedepr bench --list

Importing this module imports neither torch nor jax; a suite imports what it needs when run.
"""

from __future__ import annotations

import sys

from .benchmarks import SUITES, suite

__all__ = ["main"]

_COMMON = {"--quick": 0, "--device": 1, "--threads": 1}


def _usage() -> str:
    lines = ["usage: tedepr bench [SUITE] [options]   (SUITE --help for a suite's options)", ""]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in SUITES.items()]
    lines += ["", "Without SUITE every suite runs, with --quick / --device / --threads only."]
    return "\n".join(lines)


def _common_options(argv: list[str]) -> list[str]:
    out, k = [], 0
    while k < len(argv):
        arg = argv[k]
        name = arg.split("=", 1)[0]
        if name not in _COMMON:
            raise ValueError(
                f"option {arg!r} needs a suite name (tedepr bench SUITE {arg} ...); without one, "
                f"only {', '.join(_COMMON)} are accepted"
            )
        n = 0 if "=" in arg else _COMMON[name]
        if k + n >= len(argv):
            raise ValueError(f"option {name} needs a value")
        out += argv[k : k + 1 + n]
        k += 1 + n
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one suite (``argv[0]`` names it) or all of them; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "--list"):
        print(_usage())
        return 0
    if argv and not argv[0].startswith("-"):
        name, rest = argv[0], argv[1:]
        if name not in SUITES:
            print(f"tedepr bench: unknown suite {name!r}\n\n{_usage()}", file=sys.stderr)
            return 2
        return int(suite(name).main(rest) or 0)
    try:
        common = _common_options(argv)
    except ValueError as exc:
        print(f"tedepr bench: {exc}", file=sys.stderr)
        return 2
    status = 0
    for name in SUITES:
        print(f"\n===== tedepr bench {name} {' '.join(common)}".rstrip(), flush=True)
        status = max(status, int(suite(name).main(list(common)) or 0))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
