"""The ``tedepr`` command line, through the real console script: a shortened sweep, its outputs,
resume, report, and the one-line errors of bad flags."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

pytest.importorskip("torch")

EXE = shutil.which("tedepr")
SWEEP = [
    "run",
    "--methods", "dense,snip,lowrank,tedepr",
    "--sparsities", "0.99",
    "--seeds", "0",
    "--epochs", "1",
    "--subset", "1000",
    "--no-progress",
]  # fmt: skip


def _cli(*args, cwd=None, timeout=600):
    cmd = [EXE] if EXE else [sys.executable, "-m", "tedepr"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        cmd + list(args), capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR, after checking the signature and the chunk CRC."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16 : 16 + 13]
    (crc,) = struct.unpack(">I", data[29:33])
    assert crc == zlib.crc32(b"IHDR" + body), "corrupt IHDR"
    return struct.unpack(">II", body[:8])


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    first = _cli(*SWEEP, "--out", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    return out, first


def test_console_script_is_installed():
    assert EXE is not None, "the tedepr console script is not on PATH (pip install -e .)"
    help_ = _cli("--help")
    assert help_.returncode == 0 and "run" in help_.stdout


def test_sweep_writes_table_json_and_plot(sweep):
    out, first = sweep
    # the table: every method present, kept weights and budget columns, dense reference
    for method in ("dense", "snip", "lowrank", "tedepr"):
        assert f" {method} " in first.stdout
    assert "kept" in first.stdout and "budget" in first.stdout
    assert "adam lr 0.003" in first.stdout  # the stated recipe
    results = json.loads((out / "results.json").read_text())
    assert {"config", "environment", "summary", "runs"} <= set(results)
    assert results["environment"]["torch"]
    assert len(results["runs"]) == 4
    budget = round(0.01 * 266_200)
    for run in results["runs"]:
        assert run["status"] == "ok", run.get("error")
        spec = run["spec"]
        assert spec["recipe"]["epochs"] == 1 and spec["subset"] == 1000
        assert len(run["history"]) == 1 and 0.0 <= run["accuracy"] <= 1.0
        assert run["latency_seconds"] > 0 and run["file_bytes"] > 0
        assert run["report"]["layers"], "per-layer report missing"
        if spec["method"] == "dense":
            assert run["kept"] == 266_200
        else:
            # budget-honest: never over, never more than 1% under
            assert budget * 0.99 <= run["kept"] <= budget, (spec["method"], run["kept"])
    for row in results["summary"]:
        assert row["flags"] == [], row
    width, height = _png_size(out / "accuracy.png")
    assert width >= 400 and height >= 300
    assert (out / "table.txt").read_text().startswith("lenet300_100")
    assert len(list((out / "runs").glob("*.json"))) == 4


def test_resume_does_no_training(sweep):
    out, _ = sweep
    before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    again = _cli(*SWEEP, "--out", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    after = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert before == after, "a finished run was redone"
    assert "4 runs" in again.stderr


def test_changed_recipe_is_not_reused(sweep, tmp_path):
    out, _ = sweep
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    res = _cli(*[a if a != "0.99" else "0.99" for a in SWEEP], "--lr", "0.01",
               "--methods", "dense", "--out", str(copy))  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    runs = list((copy / "runs").glob("dense_*.json"))
    assert len(runs) == 2, "a run with another recipe must get its own record"


def test_report_rerenders(sweep):
    out, first = sweep
    (out / "accuracy.png").unlink()
    rep = _cli("report", str(out))
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout.strip() == first.stdout.strip()
    _png_size(out / "accuracy.png")


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--methods", "snipp"], "--methods"),
        (["--model", "lenet9"], "--model"),
        (["--dataset", "svhn"], "--dataset"),
        (["--sparsities", "1.0"], "--sparsities"),
        (["--sparsities", "abc"], "--sparsities"),
        (["--dataset", "cifar10"], "--data"),
        (["--dataset", "cifar10", "--data", "/nonexistent/path"], "--data"),
        (["--epochs", "0"], "--epochs"),
        (["--lr", "-1"], "--lr"),
        (["--format", "ttt"], "--format"),
    ],
)
def test_bad_flag_is_one_line_naming_it(args, flag, tmp_path):
    res = _cli("run", *args, "--out", str(tmp_path / "o"), timeout=120)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert flag in lines[0] and "Traceback" not in res.stderr


def test_did_you_mean_for_methods(tmp_path):
    res = _cli("run", "--methods", "snipp", "--out", str(tmp_path / "o"), timeout=120)
    assert "did you mean 'snip'" in res.stderr


def test_python_m_alias():
    res = subprocess.run(
        [sys.executable, "-m", "tedepr", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and "--sparsities" in res.stdout


def test_methods_expand_groups():
    from tedepr.cli.methods import compress_options, expand_methods

    default = expand_methods("default", "tt")
    assert default[0] == "dense" and default[-2:] == ["lowrank", "tedepr"]
    assert "snip" in default and "trainability" not in default
    ablation = expand_methods("ablation", "tr")
    assert all(m.startswith("tr+") for m in ablation) and "tr+trainability-entries" in ablation
    assert "tr+trainability" not in ablation  # that is the tedepr row
    assert expand_methods("all", "tt") == default + [m for m in expand_methods("ablation", "tt")]
    assert compress_options("lowrank", "cp") == {"format": "cp", "score": None}
    assert compress_options("snip", "tt") == {"format": None, "score": "snip"}
    assert compress_options("tt+grasp", "tr") == {"format": "tt", "score": "grasp"}
    with pytest.raises(ValueError, match="unknown method"):
        expand_methods("dense,bogus", "tt")


def test_table_flags_rows_off_budget():
    from tedepr.cli.table import aggregate, render_table

    def rec(method, kept, acc, status="ok"):
        return {
            "spec": {"method": method, "sparsity": 0.99, "seed": 0},
            "status": status,
            "accuracy": acc,
            "kept": kept,
            "dense_weights": 10_000,
        }

    rows = aggregate(
        [
            rec("a", 100, 0.9),
            rec("b", 120, 0.95),
            rec("c", 90, 0.5),
            rec("d", 100, None, "diverged"),
        ],
        ["a", "b", "c", "d"],
    )
    by = {r["method"]: r for r in rows}
    assert by["a"]["flags"] == [] and by["a"]["comparable"]
    assert by["b"]["flags"] == ["OVER BUDGET"] and not by["b"]["comparable"]
    assert by["c"]["flags"] == ["-10% vs budget"]
    assert by["d"]["flags"] == ["1 diverged"]
    text = render_table(rows)
    # the over-budget row has the best accuracy but is not marked best: a is
    a_line = next(line for line in text.splitlines() if " a " in line)
    b_line = next(line for line in text.splitlines() if " b " in line)
    assert "*" in a_line and "*" not in b_line


@pytest.mark.slow  # starts a local Ray cluster (~35 s)
def test_ray_executor_runs_two_runs_like_local(tmp_path):
    pytest.importorskip("ray")  # the [ray] extra (in [all], so CI has it)
    args = ["run", "--methods", "dense", "--seeds", "0,1", "--epochs", "1", "--subset", "300",
            "--no-progress"]  # fmt: skip
    ray_run = _cli(*args, "--executor", "ray", "--workers", "2", "--out", str(tmp_path / "ray"))
    assert ray_run.returncode == 0, ray_run.stderr[-3000:]
    local = _cli(*args, "--workers", "1", "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr[-3000:]
    by = {}
    for name in ("ray", "local"):
        results = json.loads((tmp_path / name / "results.json").read_text())
        by[name] = {r["key"]: r for r in results["runs"]}
    assert set(by["ray"]) == set(by["local"]) and len(by["ray"]) == 2
    for key, rec in by["ray"].items():
        assert rec["status"] == "ok"
        # same run, same seed: the same training (up to float reassociation across thread counts)
        assert rec["accuracy"] == pytest.approx(by["local"][key]["accuracy"], abs=0.02)


def test_bench_is_reachable_from_the_command_line():
    res = _cli("bench", "--help", timeout=120)
    assert res.returncode == 0, res.stderr
    assert "layers" in res.stdout and "training" in res.stdout


def test_jax_backend_runs_the_same_study(tmp_path):
    pytest.importorskip("jax")
    res = _cli("run", "--backend", "jax", "--methods", "dense,tedepr", "--sparsities", "0.99",
               "--seeds", "0", "--epochs", "1", "--subset", "300", "--no-progress",
               "--out", str(tmp_path / "j"))  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((tmp_path / "j" / "results.json").read_text())
    assert results["environment"]["jax"]
    runs = {r["spec"]["method"]: r for r in results["runs"]}
    assert runs["dense"]["status"] == runs["tedepr"]["status"] == "ok"
    assert runs["tedepr"]["kept"] == 2662 and runs["dense"]["kept"] == 266_200
    assert all(layer["live"] for layer in runs["tedepr"]["report"]["layers"])


def test_torchrun_trains_every_run_with_ddp_like_one_process(tmp_path):
    args = ["run", "--methods", "dense,tedepr", "--sparsities", "0.99", "--seeds", "0",
            "--epochs", "1", "--subset", "400", "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
              "-m", "tedepr", *args, "--out", str(tmp_path / "ddp")]  # fmt: skip
    ddp = subprocess.run(launch, capture_output=True, text=True, timeout=600, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "DDP over 2 processes" in ddp.stderr
    single = _cli(*args, "--workers", "1", "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr[-3000:]
    got = {r["key"]: r for r in json.loads((tmp_path / "ddp" / "results.json").read_text())["runs"]}
    want = {
        r["key"]: r for r in json.loads((tmp_path / "one" / "results.json").read_text())["runs"]
    }
    assert set(got) == set(want) and len(got) == 2
    for key, rec in got.items():
        # the same global batches split over two ranks: the same training up to float reassociation
        assert rec["status"] == "ok" and rec["kept"] == want[key]["kept"]
        assert rec["accuracy"] == pytest.approx(want[key]["accuracy"], abs=0.02)
