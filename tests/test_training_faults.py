"""Faults in real training, both backends: non-finite steps stop `fit` with `NonFiniteError`
(NaN data vs a diverging loss) or are skipped and counted; a fit killed with SIGKILL at a random
point resumes from its last complete checkpoint to bitwise the same result; a corrupted
checkpoint is reported and the previous one used."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tedepr.checkpoint import CorruptCheckpointWarning
from tedepr.datasets import batch_indices
from tedepr.training import NonFiniteError

REPO = Path(__file__).resolve().parents[1]


def _data(n=64, features=10, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, n)


def _where(sample, n=64, batch_size=16, seed=0, epoch=0):
    """``(step, position)`` (1-based step) of ``sample`` in the shuffled batches of ``epoch``."""
    for step, idx in enumerate(batch_indices(n, batch_size, shuffle=True, seed=seed, epoch=epoch)):
        if sample in idx:
            return step + 1, int(np.flatnonzero(idx == sample)[0])
    raise AssertionError(sample)


class PoisonFromPass:
    """A re-iterable of ``(x, y)`` batches whose batch ``k`` holds NaN from pass ``p`` on."""

    def __init__(self, batches, k, p, row=2):
        self.batches, self.k, self.p, self.row, self.passes = batches, k, p, row, 0

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        self.passes += 1
        for j, (x, y) in enumerate(self.batches):
            if j == self.k and self.passes >= self.p:
                x = x.copy()
                x[self.row, 0] = np.nan
            yield x, y


# ------------------------------------------------------------------------------------------ torch
@pytest.fixture
def torch_mlp():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def make(seed=0):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

    yield make
    torch.set_num_threads(threads)


@pytest.mark.torch
def test_torch_nan_in_data_names_the_sample_and_keeps_the_weights_finite(torch_mlp):
    import torch

    from tedepr.backends.torch import fit

    x, y = _data()
    x[37, 4] = np.nan
    model = torch_mlp()
    with pytest.raises(NonFiniteError) as info:
        fit(model, (x, y), batch_size=16, epochs=2, lr=0.05, progress=False)
    step, position = _where(37)
    err = info.value
    assert (err.cause, err.epoch, err.step, err.index, err.sample) == (
        "data",
        1,
        step,
        position,
        37,
    )
    assert f"epoch 1/2, step {step}: the batch contains NaN/inf at index {position}" in str(err)
    assert "(sample 37 of train_data)" in str(err)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


@pytest.mark.torch
def test_torch_nan_in_a_later_epoch_keeps_the_last_good_checkpoint(torch_mlp, tmp_path):
    from tedepr.backends.torch import fit, load_checkpoint

    x, y = _data()
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    with pytest.raises(
        NonFiniteError,
        match=r"epoch 2/3, step 3: the batch contains NaN/inf at "
        r"index 2.*checkpoint of epoch 1 in .* is intact",
    ):
        fit(
            torch_mlp(),
            PoisonFromPass(batches, 2, 2),
            epochs=3,
            lr=0.05,
            progress=False,
            checkpoint_dir=tmp_path,
        )
    saved = load_checkpoint(tmp_path / "last.pt")  # verified against its digest
    assert saved["epoch"] == 1
    assert all(bool(v.isfinite().all()) for v in saved["model"].values())


@pytest.mark.torch
def test_torch_divergence_blames_the_learning_rate(torch_mlp):
    import torch

    from tedepr.backends.torch import fit

    model = torch_mlp()
    with pytest.raises(NonFiniteError, match=r"the loss diverged: lower lr \(was 1e\+08") as info:
        fit(model, _data(), batch_size=16, epochs=3, lr=1e8, schedule="constant", progress=False)
    assert info.value.cause == "diverged"
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


@pytest.mark.torch
def test_torch_skip_counts_bad_batches(torch_mlp):
    import torch

    from tedepr.backends.torch import fit

    x, y = _data()
    x[5, 0] = np.inf
    model = torch_mlp()
    result = fit(
        model, (x, y), batch_size=16, epochs=2, lr=0.05, progress=False, on_nonfinite="skip"
    )
    assert result.skipped_batches == 2 and [h["skipped"] for h in result.history] == [1, 1]
    assert all(np.isfinite(h["train_loss"]) for h in result.history)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


# ------------------------------------------------------------------------------------------ JAX
def _jax_mlp():
    jax = pytest.importorskip("jax")
    pytest.importorskip("optax")
    from tedepr.backends.jax import Dense, Model

    model = Model(
        {"fc1": Dense(10, 16), "fc2": Dense(16, 3)},
        lambda call, z: call("fc2", jax.nn.relu(call("fc1", z))),
        (10,),
        "mlp",
    )
    return model, model.init(jax.random.key(0))


@pytest.mark.jax
def test_jax_nan_in_data_names_the_sample_and_returns_no_nan_weights():
    from tedepr.backends.jax import fit

    model, params = _jax_mlp()
    x, y = _data()
    x[37, 4] = np.nan
    with pytest.raises(NonFiniteError) as info:
        fit(model, params, (x, y), batch_size=16, epochs=2, lr=0.05, progress=False)
    step, position = _where(37)
    err = info.value
    assert (err.cause, err.epoch, err.step, err.index, err.sample) == (
        "data",
        1,
        step,
        position,
        37,
    )
    assert "(sample 37 of train_data)" in str(err)


@pytest.mark.jax
def test_jax_divergence_and_skip():
    import jax

    from tedepr.backends.jax import fit

    model, params = _jax_mlp()
    with pytest.raises(NonFiniteError, match=r"the loss diverged: lower lr \(was 1e\+08"):
        fit(
            model,
            params,
            _data(),
            batch_size=16,
            epochs=3,
            lr=1e8,
            schedule="constant",
            progress=False,
        )
    x, y = _data()
    x[5, 0] = np.inf
    result = fit(
        model, params, (x, y), batch_size=16, epochs=2, lr=0.05, progress=False, on_nonfinite="skip"
    )
    assert result.skipped_batches == 2 and [h["skipped"] for h in result.history] == [1, 1]
    assert all(bool(np.all(np.isfinite(leaf))) for leaf in jax.tree.leaves(result.params))


@pytest.mark.jax
def test_jax_corrupted_checkpoint_falls_back_to_the_previous_one(tmp_path):
    import jax

    from tedepr.backends.jax import fit

    model, params = _jax_mlp()
    x, y = _data()
    kw = dict(batch_size=16, epochs=3, lr=0.05, optimizer="adam", progress=False)
    full = fit(model, params, (x, y), checkpoint_dir=tmp_path / "full", **kw)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteError):  # dies in epoch 3: last = epoch 2, prev = epoch 1
        batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
        fit(model, params, PoisonFromPass(batches, 0, 3), checkpoint_dir=run, **kw)
    last = run / "last.npz"
    last.write_bytes(last.read_bytes()[:-100])  # truncated
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    reference = fit(model, params, batches, checkpoint_dir=tmp_path / "ref", **kw)
    with pytest.warns(CorruptCheckpointWarning, match="last.npz"):
        resumed = fit(model, params, batches, checkpoint_dir=run, resume=True, **kw)
    assert resumed.start_epoch == 1
    for a, b in zip(
        jax.tree.leaves(reference.params), jax.tree.leaves(resumed.params), strict=True
    ):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert full.history[0]["epoch"] == 1


# ------------------------------------------------------------------------------------------ kill
TORCH_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import numpy as np
    import torch


    def main(out, epochs):
        from tedepr.backends.torch import fit

        rng = np.random.default_rng(0)
        x = rng.standard_normal((1024, 20)).astype(np.float32)
        y = rng.integers(0, 4, 1024)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(),
                                    torch.nn.Dropout(0.2), torch.nn.Linear(64, 4))
        result = fit(model, (x, y), batch_size=16, epochs=epochs, lr=0.01, optimizer="adam",
                     checkpoint_dir=out, resume=True, progress=False, seed=3)
        torch.save(model.state_dict(), out / "final.pt")
        return result.start_epoch


    if __name__ == "__main__":
        torch.set_num_threads(1)
        print("start_epoch", main(Path(sys.argv[1]), int(sys.argv[2])), flush=True)
    """
)

JAX_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import numpy as np


    def main(out, epochs):
        import jax
        from tedepr.backends.jax import Dense, Model, fit

        rng = np.random.default_rng(0)
        x = rng.standard_normal((1024, 20)).astype(np.float32)
        y = rng.integers(0, 4, 1024)
        model = Model({"fc1": Dense(20, 64), "fc2": Dense(64, 4)},
                      lambda call, z: call("fc2", jax.nn.relu(call("fc1", z))), (20,), "mlp")
        params = model.init(jax.random.key(0))
        result = fit(model, params, (x, y), batch_size=16, epochs=epochs, lr=0.01,
                     optimizer="adam", checkpoint_dir=out, resume=True, progress=False, seed=3)
        np.savez(out / "final.npz", *[np.asarray(a) for a in jax.tree.leaves(result.params)])
        return result.start_epoch


    if __name__ == "__main__":
        print("start_epoch", main(Path(sys.argv[1]), int(sys.argv[2])), flush=True)
    """
)


def _history(folder: Path) -> list:
    try:
        return json.loads((folder / "history.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def _kill_at_random_point(script: Path, folder: Path, epochs: int, after: int, rng) -> None:
    """Start the child, wait for epoch ``after`` to be checkpointed, SIGKILL it somewhere in the
    next epoch (maybe inside a checkpoint write)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder), str(epochs)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while len(_history(folder)) < after and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    seconds = _history(folder)[-1]["seconds"] if _history(folder) else 0.1
    time.sleep(rng.uniform(0.0, 0.9 * seconds))
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the child ended before the kill: " + err[-2000:]


def _run_to_end(script: Path, folder: Path, epochs: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(folder), str(epochs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.split()[-1])


def _kill_and_resume(tmp_path, source: str, epochs: int, *, kills: int, in_process: bool):
    """Kill a fit ``kills`` times at random points, then resume it; returns the resumed folder and the
    reference (uninterrupted) folder. ``in_process``: resume and reference run in this process
    (saves two interpreter starts; not for JAX, whose test session enables float64)."""
    script = tmp_path / "child.py"
    script.write_text(source)
    if in_process:
        spec = importlib.util.spec_from_file_location("kill_child", script)
        child = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(child)
        main = child.main
    else:

        def main(folder, n):
            return _run_to_end(script, folder, n)

    rng = random.Random(int(os.environ.get("TEDEPR_KILL_SEED", "0")))
    run = tmp_path / "run"
    points = sorted(rng.sample(range(1, epochs - 1), kills))
    for k in points:
        _kill_at_random_point(script, run, epochs, k, rng)
        assert len(_history(run)) >= k
    start = main(run, epochs)
    assert points[-1] <= start < epochs  # resumed from a checkpoint at least as new as seen
    assert main(tmp_path / "ref", epochs) == 0
    untimed = [
        [{k: v for k, v in h.items() if k != "seconds"} for h in _history(p)]
        for p in (tmp_path / "ref", run)
    ]
    assert untimed[0] == untimed[1] and len(untimed[0]) == epochs
    print(f"killed after epochs {points} (+ random delay); resumed from epoch {start}; identical")
    return run, tmp_path / "ref"


@pytest.mark.slow
@pytest.mark.torch
def test_torch_fit_killed_at_random_points_resumes_to_the_same_result(tmp_path, torch_mlp):
    import torch

    run, ref = _kill_and_resume(tmp_path, TORCH_CHILD, epochs=6, kills=2, in_process=True)
    a = torch.load(ref / "final.pt", weights_only=True)
    b = torch.load(run / "final.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.jax
def test_jax_fit_killed_at_random_points_resumes_to_the_same_result(tmp_path):
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    run, ref = _kill_and_resume(tmp_path, JAX_CHILD, epochs=6, kills=1, in_process=False)
    with np.load(ref / "final.npz") as a, np.load(run / "final.npz") as b:
        assert a.files == b.files
        assert all(np.array_equal(a[k], b[k]) for k in a.files)


@pytest.mark.torch
@pytest.mark.jax
def test_both_backends_apply_one_rule_set(torch_mlp):
    """The drift of issue 11: JAX accepted momentum=1.0, torch rejected it."""
    from tedepr.backends.jax import fit as jax_fit
    from tedepr.backends.torch import fit as torch_fit

    model, params = _jax_mlp()
    data = _data()
    for kw in ({"momentum": 1.0}, {"lr": -1.0}, {"on_nonfinite": "warn"}, {"batch_size": 0}):
        messages = []
        for call in (
            lambda kw=kw: torch_fit(torch_mlp(), data, epochs=1, progress=False, **kw),
            lambda kw=kw: jax_fit(model, params, data, epochs=1, progress=False, **kw),
        ):
            with pytest.raises(ValueError) as info:
                call()
            messages.append(str(info.value))
        assert messages[0] == messages[1], kw
