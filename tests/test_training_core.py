"""The backend-neutral training skeleton (`tedepr.training`) with a fake NumPy backend: schedules,
history, exact resume, the resume config check, non-finite steps as errors (data vs diverged) or
skipped, and checkpoints that survive corruption and failed writes (`tedepr.checkpoint`)."""

from __future__ import annotations

import errno
import hashlib
import inspect
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tedepr.checkpoint as ckpt_mod
from tedepr.checkpoint import CheckpointError, CorruptCheckpointWarning, read_checkpoint_bytes
from tedepr.training import (
    FitResult,
    NonFiniteError,
    Step,
    check_fit_args,
    lr_factor,
    run_fit,
)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

DEFAULTS = dict(
    epochs=4,
    lr=0.1,
    optimizer="sgd",
    momentum=0.0,
    weight_decay=0.0,
    schedule="cosine",
    batch_size=8,
    loss="cross_entropy",
    checkpoint_dir=None,
    resume=False,
    seed=0,
    progress=False,
    log_every=1,
    on_nonfinite="raise",
)


class Interrupted(Exception):
    pass


class FakeSession:
    """Least squares ``mean((x @ w - y)²)`` by plain SGD: a backend in 60 lines of NumPy."""

    import logging

    logger = logging.getLogger("tests.fake_backend")
    checkpoint_name = "last.json"
    checkpoint_format = "tests.fake/1"
    rank, world = 0, 1

    def __init__(self, batches, *, crash_in_epoch=None, eval_batches=None):
        self.batches = batches  # list per epoch is the same list of (x, y)
        self.crash_in_epoch = crash_in_epoch
        self.eval_batches = eval_batches
        self.w = None

    def num_batches(self):
        return len(self.batches)

    def train_batches(self, epoch):
        if epoch == self.crash_in_epoch:
            raise Interrupted(epoch)
        order = np.random.default_rng(epoch).permutation(len(self.batches))
        for k in order:
            x, y = self.batches[k]
            yield x, y, k

    def train_step(self, batch, lr):
        x, y, _ = batch
        with np.errstate(all="ignore"):
            r = x @ self.w - y
            loss = float(np.mean(r**2))
            grad = 2 * x.T @ r / len(y)
        finite = math.isfinite(loss) and bool(np.all(np.isfinite(grad)))
        if finite:
            with np.errstate(over="ignore"):  # the overflow test wants inf weights
                self.w = self.w - lr * grad
        return Step(loss, int(np.sum(np.abs(r) < 0.5)), len(y), finite)

    def nonfinite_sample(self, batch):
        x, _, k = batch
        bad = ~np.isfinite(x).all(axis=1)
        if not bad.any():
            return None
        i = int(np.flatnonzero(bad)[0])
        return i, k * 100 + i  # a recognisable "data set index"

    def reduce(self, values):
        return list(values)

    def any_rank(self, flag):
        return flag

    def share(self, obj):
        return obj

    def evaluate(self):
        sums = [0.0, 0.0, 0.0]
        for x, y in self.eval_batches:
            r = x @ self.w - y
            sums[0] += float(np.sum(r**2))
            sums[1] += float(np.sum(np.abs(r) < 0.5))
            sums[2] += len(y)
        return sums

    def weights_finite(self):
        return bool(np.all(np.isfinite(self.w)))

    def snapshot(self, meta):
        return json.dumps({"meta": meta, "w": self.w.tolist()}).encode()

    def parse_checkpoint(self, data, path):
        obj = json.loads(data)
        if obj["meta"]["format"] != self.checkpoint_format:
            raise ValueError("not a fake checkpoint")
        return obj["meta"], obj["w"]

    def restore(self, state, path):
        self.w = np.array(state)

    def start_fresh(self):
        self.w = np.zeros(3)


def make_batches(n_batches=5, seed=0, nan_at=None):
    rng = np.random.default_rng(seed)
    w_true = np.array([1.0, -2.0, 0.5])
    out = []
    for _ in range(n_batches):
        x = rng.standard_normal((8, 3))
        out.append((x, x @ w_true + 0.01 * rng.standard_normal(8)))
    if nan_at is not None:
        k, i = nan_at
        out[k][0][i, 1] = np.nan
    return out


def fit(session, **kw):
    cfg = check_fit_args(**{**DEFAULTS, **kw})
    history, start, skipped = run_fit(session, cfg, has_eval=session.eval_batches is not None)
    return FitResult(history=history, params=session.w, start_epoch=start, skipped_batches=skipped)


def untimed(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_history_schedule_and_learning():
    batches = make_batches()
    result = fit(FakeSession(batches, eval_batches=batches[:2]), epochs=4, schedule="cosine")
    h = result.history
    assert [r["epoch"] for r in h] == [1, 2, 3, 4]
    # cosine: lr·½(1+cos(πe/4)) for e = 0..3
    assert [r["lr"] for r in h] == pytest.approx(
        [0.1 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)], rel=1e-15
    )
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert h[-1]["eval_loss"] is not None and 0 <= h[-1]["eval_acc"] <= 1
    assert "skipped" not in h[0] and result.skipped_batches == 0
    assert lr_factor("step", 8)(3) == 1.0 and lr_factor("step", 8)(4) == pytest.approx(0.1)
    assert lr_factor("step", 8)(6) == pytest.approx(0.01)


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    batches = make_batches()
    full = fit(FakeSession(batches), checkpoint_dir=tmp_path / "full")
    with pytest.raises(Interrupted):
        fit(FakeSession(batches, crash_in_epoch=2), checkpoint_dir=tmp_path / "run")
    resumed = fit(FakeSession(batches), checkpoint_dir=tmp_path / "run", resume=True)
    assert resumed.start_epoch == 2
    assert np.array_equal(resumed.params, full.params)
    assert untimed(resumed.history) == untimed(full.history)
    # checkpoint files: current, previous and a digest file that lists both
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["history.json", "last.json", "last.json.sha256", "last.prev.json"]
    digests = (tmp_path / "run" / "last.json.sha256").read_text().split()
    for name in ("last.json", "last.prev.json"):
        digest = hashlib.sha256((tmp_path / "run" / name).read_bytes()).hexdigest()
        assert digests[digests.index(name) - 1] == digest
    assert json.loads((tmp_path / "run" / "last.prev.json").read_text())["meta"]["epoch"] == 3


def test_resume_refuses_other_arguments(tmp_path):
    fit(FakeSession(make_batches()), epochs=2, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"lr=0\.1 \(checkpoint\) vs 0\.2 \(this call\)"):
        fit(FakeSession(make_batches()), epochs=2, lr=0.2, checkpoint_dir=tmp_path, resume=True)


def test_nan_in_data_raises_naming_epoch_step_index_and_keeps_good_state(tmp_path):
    class PoisonSecondEpoch(FakeSession):
        def train_batches(self, epoch):
            for x, y, k in super().train_batches(epoch):
                if epoch == 1 and k == 3:
                    x = x.copy()
                    x[5, 0] = np.inf
                yield x, y, k

    session = PoisonSecondEpoch(make_batches())
    with pytest.raises(NonFiniteError) as info:
        fit(session, checkpoint_dir=tmp_path)
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert err.cause == "data" and err.epoch == 2 and err.index == 5 and err.sample == 305
    position = list(np.random.default_rng(1).permutation(5)).index(3) + 1
    assert err.step == position
    msg = str(err)
    assert f"epoch 2/4, step {position}" in msg
    assert "the batch contains NaN/inf at index 5 (sample 305 of train_data)" in msg
    assert "checkpoint of epoch 1" in msg and "intact" in msg
    assert np.all(np.isfinite(session.w))  # the bad update was not applied
    saved = json.loads(read_checkpoint_bytes(tmp_path / "last.json"))
    assert saved["meta"]["epoch"] == 1 and np.all(np.isfinite(saved["w"]))


def test_divergence_with_finite_data_blames_the_learning_rate():
    session = FakeSession(make_batches())
    with pytest.raises(NonFiniteError, match=r"the loss diverged: lower lr \(was 1e\+09") as info:
        fit(session, lr=1e9, schedule="constant")
    assert info.value.cause == "diverged" and info.value.index is None
    assert np.all(np.isfinite(session.w))


def test_skip_counts_and_reports_bad_batches():
    batches = make_batches(nan_at=(2, 4))
    session = FakeSession(batches)
    result = fit(session, epochs=3, on_nonfinite="skip")
    assert result.skipped_batches == 3
    assert [h["skipped"] for h in result.history] == [1, 1, 1]
    assert np.all(np.isfinite(result.params))
    clean = fit(FakeSession([b for k, b in enumerate(make_batches()) if k != 2]), epochs=3)
    # the skipped batch is not counted in the epoch's loss
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert result.history[0]["train_acc"] * 32 == pytest.approx(
        round(result.history[0]["train_acc"] * 32)
    )
    assert clean.skipped_batches == 0


def test_all_batches_bad_is_an_error_even_when_skipping():
    batches = [(np.full((4, 3), np.nan), np.zeros(4))]
    with pytest.raises(NonFiniteError, match="every batch of epoch 1/2"):
        fit(FakeSession(batches), epochs=2, on_nonfinite="skip")


def _interrupted_run(tmp_path, batches, crash_in_epoch):
    with pytest.raises(Interrupted):
        fit(FakeSession(batches, crash_in_epoch=crash_in_epoch), checkpoint_dir=tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "empty"])
def test_corrupted_checkpoint_is_reported_and_the_previous_one_used(tmp_path, damage):
    batches = make_batches()
    full = fit(FakeSession(batches), checkpoint_dir=tmp_path / "full")
    run = tmp_path / "run"
    _interrupted_run(run, batches, crash_in_epoch=3)  # last = epoch 3, prev = epoch 2
    last = run / "last.json"
    data = bytearray(last.read_bytes())
    if damage == "truncate":
        last.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flip_byte":
        i = data.index(b'"w"') + 8
        data[i] = ord("7") if data[i] != ord("7") else ord("8")  # still valid JSON
        last.write_bytes(bytes(data))
    else:
        last.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        read_checkpoint_bytes(last)
    with pytest.warns(CorruptCheckpointWarning, match="last.json"):
        resumed = fit(FakeSession(batches), checkpoint_dir=run, resume=True)
    assert resumed.start_epoch == 2
    assert np.array_equal(resumed.params, full.params)
    assert untimed(resumed.history) == untimed(full.history)


def test_no_usable_checkpoint_is_an_error_not_a_silent_restart(tmp_path):
    _interrupted_run(tmp_path, make_batches(), crash_in_epoch=3)
    for name in ("last.json", "last.prev.json"):
        (tmp_path / name).write_bytes(b"garbage")
    with pytest.warns(CorruptCheckpointWarning), pytest.raises(CheckpointError, match="no usable"):
        fit(FakeSession(make_batches()), checkpoint_dir=tmp_path, resume=True)


@pytest.mark.parametrize("failing", ["digests", "data", "rename"])
def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, failing):
    batches = make_batches()
    full = fit(FakeSession(batches), checkpoint_dir=tmp_path / "full")
    run = tmp_path / "run"
    _interrupted_run(run, batches, crash_in_epoch=2)  # last = epoch 2
    before = (run / "last.json").read_bytes()

    real_write, real_replace = ckpt_mod.atomic_write_bytes, ckpt_mod.os.replace

    def full_disk(path, data):
        name = Path(path).name
        if (failing == "digests" and name.endswith(".sha256")) or (
            failing == "data" and name.endswith(".new")
        ):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, data)

    def failing_replace(src, dst):
        if Path(dst).name == "last.json":
            raise OSError(errno.EIO, "I/O error", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt_mod, "atomic_write_bytes", full_disk)
    if failing == "rename":
        monkeypatch.setattr(ckpt_mod.os, "replace", failing_replace)
    with pytest.raises(OSError):
        fit(FakeSession(batches), checkpoint_dir=run, resume=True)
    monkeypatch.undo()
    if failing != "rename":
        assert (run / "last.json").read_bytes() == before
        assert json.loads(read_checkpoint_bytes(run / "last.json"))["meta"]["epoch"] == 2
    else:
        # the last step failed: epoch 2 is the previous checkpoint, epoch 3 complete in staging
        assert (run / "last.prev.json").read_bytes() == before
        assert not (run / "last.json").exists()
    resumed = fit(FakeSession(batches), checkpoint_dir=run, resume=True)
    assert resumed.start_epoch == (3 if failing == "rename" else 2)
    assert np.array_equal(resumed.params, full.params)


@pytest.mark.parametrize(
    "kw,exc,match",
    [
        ({"momentum": 1.0}, ValueError, r"momentum must be a finite number in \[0\.0, 1\.0\)"),
        ({"epochs": 2.0}, TypeError, "epochs must be an int >= 1"),
        ({"epochs": 0}, ValueError, "epochs must be an int >= 1"),
        ({"lr": "0.1"}, TypeError, "lr must be a real number"),
        ({"on_nonfinite": "ignore"}, ValueError, "on_nonfinite must be one of 'raise', 'skip'"),
        ({"progress": 1}, ValueError, "progress must be True or False"),
        ({"checkpoint_dir": 3}, TypeError, "checkpoint_dir must be a path"),
        ({"resume": True}, ValueError, "resume=True needs checkpoint_dir"),
        ({"device": "cpu", "devices": ["cpu"]}, ValueError, "not both"),
        ({"distributed": "yes"}, ValueError, "distributed must be None"),
    ],
)
def test_one_set_of_argument_rules(kw, exc, match):
    with pytest.raises(exc, match=match):
        check_fit_args(**{**DEFAULTS, **kw})


def test_both_backends_share_the_keyword_signature_and_result_type():
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    from tedepr.backends.jax import training as jax_training
    from tedepr.backends.torch import training as torch_training

    def keywords(f):
        return [
            (p.name, p.default)
            for p in inspect.signature(f).parameters.values()
            if p.kind is p.KEYWORD_ONLY
        ]

    assert keywords(torch_training.fit) == keywords(jax_training.fit)
    names = [name for name, _ in keywords(torch_training.fit)]
    assert {"loss", "on_nonfinite", "masks", "batch_size", "device", "devices"} <= set(names)
    assert torch_training.FitResult is jax_training.FitResult is FitResult
    # every backend-neutral argument is validated by the one core function
    assert set(inspect.signature(check_fit_args).parameters) <= set(names)


# A real SIGKILL at each dangerous point of a checkpoint write (epoch 3's), in a subprocess: the
# fake backend needs no framework, so the child starts in about a second.
KILL_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path

    sys.path.insert(0, sys.argv[3])
    import tedepr.checkpoint as c
    from test_training_core import FakeSession, fit, make_batches

    folder, point = Path(sys.argv[1]), sys.argv[2]
    saves = {"n": 0}
    real_save, real_replace, real_digests = c.atomic_save, os.replace, c._write_digests

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def atomic_save(writer, path):
        if Path(path).name.endswith(".new"):
            saves["n"] += 1
            if saves["n"] == 3 and point == "mid_data_write":
                def torn(f):
                    f.write(b'{"meta": {"format": "tests.fake/1", "epo')
                    f.flush()
                    die()
                return real_save(torn, path)
        return real_save(writer, path)

    def replace(src, dst):
        if saves["n"] == 3 and point == "before_prev_rename" and Path(dst).name.endswith(".prev.json"):
            die()
        if saves["n"] == 3 and point == "before_final_rename" and Path(dst).name == "last.json":
            die()
        return real_replace(src, dst)

    def write_digests(path, entries):
        if saves["n"] == 3 and point == "before_digest_trim":
            die()
        return real_digests(path, entries)

    c.atomic_save, c._write_digests = atomic_save, write_digests
    c.os.replace = replace
    fit(FakeSession(make_batches()), checkpoint_dir=folder)
    """
)


@pytest.mark.parametrize(
    "point", ["mid_data_write", "before_prev_rename", "before_final_rename", "before_digest_trim"]
)
def test_sigkill_inside_a_checkpoint_write_resumes_to_the_same_result(tmp_path, point):
    batches = make_batches()
    full = fit(FakeSession(batches), checkpoint_dir=tmp_path / "full")
    script = tmp_path / "child.py"
    script.write_text(KILL_CHILD)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    proc = subprocess.run(
        [sys.executable, str(script), str(run), point, str(TESTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (
        not (run / "history.json").exists()
        or len(json.loads((run / "history.json").read_text())) == 2
    )  # killed while saving epoch 3
    resumed = fit(FakeSession(batches), checkpoint_dir=run, resume=True)
    assert not list(run.glob(".*.tmp"))  # a killed writer's temporaries are cleaned up
    # epoch 3 is used when its file was complete and listed, else epoch 2 — never a torn file
    expected = {"mid_data_write": 2, "before_prev_rename": 2, "before_final_rename": 3}
    assert resumed.start_epoch == expected.get(point, 3)
    assert np.array_equal(resumed.params, full.params)
    assert untimed(resumed.history) == untimed(full.history)


def test_weights_that_overflow_on_the_last_step_are_never_returned():
    session = FakeSession(make_batches(n_batches=1))
    with pytest.raises(NonFiniteError, match="the weights became non-finite in epoch 1/1") as info:
        fit(session, epochs=1, lr=1e308, schedule="constant")
    assert info.value.cause == "diverged" and info.value.step is None


def test_fit_signature_binds_the_shared_keywords():
    from tedepr.training import BACKEND_NAMES, fit_signature

    seen = {}

    @fit_signature
    def fit(model, train_data, **options):
        seen.update(options, model=model, train_data=train_data)
        return "result"

    params = inspect.signature(fit).parameters
    assert list(params)[:2] == ["model", "train_data"]
    assert params["epochs"].default is inspect.Parameter.empty
    assert params["lr"].default == 0.1 and params["lr"].kind is inspect.Parameter.KEYWORD_ONLY
    assert fit("m", "d", epochs=3, lr=0.5) == "result"
    assert seen["model"] == "m" and seen["epochs"] == 3 and seen["lr"] == 0.5
    assert seen["on_nonfinite"] == "raise" and seen["masks"] is None  # defaults filled in
    with pytest.raises(TypeError, match=r"fit\(\).*epochs"):
        fit("m", "d")
    with pytest.raises(TypeError, match=r"fit\(\).*'lrate'"):
        fit("m", "d", epochs=1, lrate=0.1)
    with pytest.raises(TypeError, match=r"fit\(\)"):
        fit("m", "d", 3)  # keyword-only
    assert {"fit", "evaluate", "load_checkpoint", "FitResult"} <= set(BACKEND_NAMES)


def test_both_backends_export_the_shared_training_names():
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    from tedepr.backends.jax import training as jax_training
    from tedepr.backends.torch import training as torch_training
    from tedepr.training import BACKEND_NAMES

    for module in (torch_training, jax_training):
        assert set(BACKEND_NAMES) <= set(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
