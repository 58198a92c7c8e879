"""PyTorch backend: the model zoo, `fit` (learning, exact resume, checkpoints, DDP), `evaluate`."""

from __future__ import annotations

import json
import logging
import os
import random
import textwrap
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import run_script  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import parametrize  # noqa: E402

import tedepr.datasets as D  # noqa: E402
import tedepr.models as front  # noqa: E402
from tedepr.backends.torch import models as zoo  # noqa: E402
from tedepr.backends.torch.training import (  # noqa: E402
    CHECKPOINT_NAME,
    ArrayLoader,
    evaluate,
    fit,
    load_checkpoint,
    make_loader,
)

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def one_thread():
    # Two shared cores: intra-op threads only add contention for these small models.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mnist():
    ds = D.load_dataset("mnist10k")  # stratified 8000/2000 split, seed 0
    return (
        D.normalize(ds.train_images),
        ds.train_labels,
        D.normalize(ds.test_images),
        ds.test_labels,
    )


# ---------- model zoo

# Parameter counts derived by hand (see each comment), not read off the implementation.
EXPECTED_PARAMS = {
    # 784·300+300 + 300·100+100 + 100·10+10
    ("lenet300_100", 1, 28): 266_610,
    # conv 6·1·25+6, conv 16·6·25+16, 400·120+120, 120·84+84, 84·10+10
    ("lenet5", 1, 28): 61_706,
    # conv1 6·3·25+6 on 32×32 without padding: 456 + 2416 + 48120 + 10164 + 850
    ("lenet5", 3, 32): 62_006,
    # kuangliu/pytorch-cifar VGG16 has 14,728,266 with conv biases; ours drops the 4,224 biases that
    # BatchNorm makes redundant (64·2 + 128·2 + 256·3 + 512·6)
    ("vgg16", 3, 32): 14_728_266 - 4_224,
    # akamaster/pytorch_resnet_cifar10 (option A): ResNet-20 269,722; -32 464,154; -56 853,018
    ("resnet20", 3, 32): 269_722,
    ("resnet32", 3, 32): 464_154,
    ("resnet56", 3, 32): 853_018,
    # kuangliu/pytorch-cifar ResNet18: 11,173,962
    ("resnet18", 3, 32): 11_173_962,
    # LSTM 4·(128·(28+128) + 2·128) + Linear 128·10+10
    ("lstm", 1, 28): 82_186,
    # patch 49·64+64, cls 64, pos 17·64, 2 × (in_proj 3·64·64+192, out 64·64+64, 2 LN 256,
    # MLP 64·128+128+128·64+64), final LN 128, head 650
    ("vit", 1, 28): 72_074,
}


@pytest.mark.parametrize("key", sorted(EXPECTED_PARAMS), ids=lambda k: f"{k[0]}-{k[1]}x{k[2]}")
def test_zoo_parameter_counts(key):
    name, channels, size = key
    model = zoo.get(name, in_channels=channels, image_size=size, seed=0)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[key]


@pytest.mark.parametrize("name", zoo.available())
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_zoo_forward_backward_shapes(name, channels, size):
    model = zoo.get(name, num_classes=7, in_channels=channels, image_size=size, seed=0)
    x = torch.randn(2, channels, size, size)
    out = model(x)
    assert out.shape == (2, 7) and out.dtype == torch.float32
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    if channels == 1:
        model.eval()
        torch.testing.assert_close(model(x[:, 0]), model(x), rtol=0, atol=0)


def test_zoo_architecture_details():
    vit = zoo.get("vit")
    assert sum(isinstance(m, nn.MultiheadAttention) for m in vit.modules()) == 2
    assert all(layer.self_attn.batch_first for layer in vit.layers)
    assert vit.patch_size == 7 and zoo.get("vit", image_size=32).patch_size == 8
    lstm = zoo.get("lstm")
    assert lstm.lstm.input_size == 28 and lstm.lstm.hidden_size == 128

    def one_by_one(model):
        return sum(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())

    assert one_by_one(zoo.get("resnet20")) == 0  # option A: parameter-free shortcuts
    assert one_by_one(zoo.get("resnet20", shortcut="B")) == 2  # one projection per stage change
    assert one_by_one(zoo.get("resnet18")) == 3


def test_zoo_resnet_option_a_shortcut_pads_channels():
    block = zoo.BasicBlock(16, 32, stride=2, shortcut="A")
    x = torch.randn(1, 16, 8, 8)
    s = block._shortcut(x)
    assert s.shape == (1, 32, 4, 4)
    torch.testing.assert_close(s[:, 8:24], x[:, :, ::2, ::2], rtol=0, atol=0)
    assert s[:, :8].abs().sum() == 0 and s[:, 24:].abs().sum() == 0


def test_zoo_seed_is_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b = zoo.get("lenet5", seed=3), zoo.get("lenet5", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = zoo.get("lenet5", seed=4)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_zoo_errors():
    with pytest.raises(ValueError, match="name must be one of .*'lenet300_100'.*'vit'"):
        zoo.get("alexnet")
    with pytest.raises(ValueError, match="num_classes"):
        zoo.get("lenet5", num_classes=0)
    with pytest.raises(ValueError, match="patch_size must divide image_size"):
        zoo.get("vit", image_size=30, patch_size=7)
    with pytest.raises(ValueError, match="shortcut"):
        zoo.get("resnet20", shortcut="C")
    with pytest.raises(ValueError, match=r"input must be \(N, 3, H, W\)"):
        zoo.get("lenet5", in_channels=3)(torch.randn(2, 28, 28))


def test_front_dispatches_to_torch():
    assert (
        front.available("torch") == zoo.available()
    )  # the names: tests/contract/test_contract_zoo.py
    model = front.get("lenet300_100", backend="torch", num_classes=3, seed=0)
    assert isinstance(model, zoo.LeNet300_100) and model.classifier.out_features == 3


# ---------- fit learns


def test_fit_learns_lenet300_100_on_embedded_digits(mnist):
    x_train, y_train, x_test, y_test = mnist
    model = zoo.get("lenet300_100", seed=0)
    test_loader = make_loader(x_test, y_test, 500, shuffle=False)
    t0 = time.perf_counter()
    result = fit(
        model,
        make_loader(x_train[:2000], y_train[:2000], 32, seed=0),
        epochs=2,
        lr=0.05,
        eval_data=test_loader,
        progress=False,
    )
    seconds = time.perf_counter() - t0
    history = result.history
    assert result.model is model and result.start_epoch == 0
    assert [h["epoch"] for h in history] == [1, 2]
    assert set(history[0]) == {
        "epoch",
        "train_loss",
        "train_acc",
        "eval_loss",
        "eval_acc",
        "lr",
        "seconds",
    }
    # cosine over 2 epochs: lr·½(1+cos 0), lr·½(1+cos π/2)
    assert history[0]["lr"] == pytest.approx(0.05) and history[1]["lr"] == pytest.approx(0.025)
    assert history[1]["train_loss"] < history[0]["train_loss"]
    # Measured (10 seeds, this recipe): test accuracy 0.8885–0.913 on the 2000 held-out digits.
    assert history[-1]["eval_acc"] > 0.85, history
    loss, acc = evaluate(model, test_loader)
    assert acc == pytest.approx(history[-1]["eval_acc"], abs=1e-12)
    assert loss == pytest.approx(history[-1]["eval_loss"], rel=1e-6)
    print(f"LeNet-300-100, 2000 digits, 2 epochs: test acc {acc:.4f} in {seconds:.2f}s")


def test_fit_accepts_a_list_of_numpy_batches(mnist):
    x, y = mnist[0][:256], mnist[1][:256]
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]
    a, b = zoo.get("lenet300_100", seed=1), zoo.get("lenet300_100", seed=1)
    ha = fit(a, batches, epochs=2, progress=False).history
    hb = fit(b, make_loader(x, y, 64, shuffle=False), epochs=2, progress=False).history
    for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]


def test_make_loader_order_depends_only_on_seed_and_epoch(mnist):
    x, y = mnist[0][:100], mnist[1][:100]
    loader = make_loader(x, y, 16, seed=5)
    assert isinstance(loader, ArrayLoader) and len(loader) == 7
    loader.set_epoch(3)
    ys = torch.cat([yb for _, yb in loader])
    expected = np.concatenate(D.batch_indices(100, 16, shuffle=True, seed=5, epoch=3))
    assert torch.equal(ys, torch.as_tensor(y[expected]))
    assert np.shares_memory(loader.x.numpy(), x)  # the arrays are shared, not copied


# ---------- resume


class Crash(RuntimeError):
    pass


class CrashingLoader:
    """Yields ``inner``'s batches, but raises in epoch ``epoch`` (0-based) after ``after`` ones."""

    def __init__(self, inner, epoch, after):
        self.inner, self.crash_epoch, self.after, self.epoch = inner, epoch, after, 0

    def set_epoch(self, epoch):
        self.epoch = epoch
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def __len__(self):
        return len(self.inner)

    def __iter__(self):
        for i, batch in enumerate(self.inner):
            if self.epoch == self.crash_epoch and i == self.after:
                raise Crash("simulated crash")
            yield batch


def small_net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 32),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(32, 10),
    )


def loader_for(kind, x, y):
    if kind == "make_loader":
        return make_loader(x, y, 64, seed=0)
    dataset = torch.utils.data.TensorDataset(torch.as_tensor(x), torch.as_tensor(y).long())
    return torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True)  # global-RNG shuffle


@pytest.mark.parametrize(
    "kind,optimizer,schedule",
    [("make_loader", "sgd", "cosine"), ("dataloader", "adam", "step")],
)
def test_resume_after_crash_equals_uninterrupted_run(mnist, tmp_path, kind, optimizer, schedule):
    x, y = mnist[0][:512], mnist[1][:512]
    x_test, y_test = mnist[2][:256], mnist[3][:256]
    kw = dict(
        epochs=3,
        lr=0.01 if optimizer == "adam" else 0.05,
        optimizer=optimizer,
        schedule=schedule,
        eval_data=make_loader(x_test, y_test, 128),
        progress=False,
        seed=7,
    )
    reference = small_net(0)
    np_key = np.random.get_state()[1].copy()  # noqa: NPY002
    outer_rng = (torch.get_rng_state(), np_key, random.getstate())
    full = fit(
        reference,
        CrashingLoader(loader_for(kind, x, y), -1, 0),
        **kw,
        checkpoint_dir=tmp_path / "full",
    )
    # fit gives the caller's RNG states back
    assert torch.equal(torch.get_rng_state(), outer_rng[0])
    assert np.array_equal(np.random.get_state()[1], outer_rng[1])  # noqa: NPY002
    assert random.getstate() == outer_rng[2]

    crashed = small_net(0)
    with pytest.raises(Crash):
        fit(
            crashed,
            CrashingLoader(loader_for(kind, x, y), 1, 3),
            **kw,
            checkpoint_dir=tmp_path / "run",
        )
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)["epoch"] == 1

    resumed_model = small_net(123)  # a fresh process: other weights until the checkpoint loads
    resumed = fit(
        resumed_model,
        CrashingLoader(loader_for(kind, x, y), -1, 0),
        **kw,
        checkpoint_dir=tmp_path / "run",
        resume=True,
    )
    assert resumed.start_epoch == 1 and len(resumed.history) == 3
    ref_state, res_state = reference.state_dict(), resumed_model.state_dict()
    assert ref_state.keys() == res_state.keys()
    for key in ref_state:
        assert torch.equal(ref_state[key], res_state[key]), key
    for name in ("train_loss", "train_acc", "eval_loss", "eval_acc", "lr"):
        assert [h[name] for h in resumed.history] == [h[name] for h in full.history], name

    # resuming a finished run trains nothing and restores its weights
    again = small_net(5)
    done = fit(
        again,
        CrashingLoader(loader_for(kind, x, y), -1, 0),
        **kw,
        checkpoint_dir=tmp_path / "run",
        resume=True,
    )
    assert done.start_epoch == 3 and done.history == resumed.history
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in res_state.items())


def test_resume_without_checkpoint_starts_afresh(mnist, tmp_path):
    x, y = mnist[0][:128], mnist[1][:128]
    a, b = small_net(0), small_net(0)
    ha = fit(
        a,
        make_loader(x, y, 64),
        epochs=1,
        progress=False,
        checkpoint_dir=tmp_path / "a",
        resume=True,
    ).history
    hb = fit(b, make_loader(x, y, 64), epochs=1, progress=False).history
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    assert (tmp_path / "a" / CHECKPOINT_NAME).exists()


def test_resume_refuses_other_arguments(mnist, tmp_path):
    x, y = mnist[0][:128], mnist[1][:128]
    fit(
        small_net(0),
        make_loader(x, y, 64),
        epochs=1,
        lr=0.05,
        progress=False,
        checkpoint_dir=tmp_path,
    )
    with pytest.raises(ValueError, match=r"lr=0\.05 \(checkpoint\) vs 0\.1 \(this call\)"):
        fit(
            small_net(0),
            make_loader(x, y, 64),
            epochs=1,
            lr=0.1,
            progress=False,
            checkpoint_dir=tmp_path,
            resume=True,
        )


class KeepMask(nn.Module):
    """A parametrization with a persistent mask buffer, like tedepr's masking (not used here)."""

    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w):
        return w * self.mask


def test_fit_trains_parametrized_masked_modules_and_checkpoints_masks(mnist, tmp_path):
    x, y = mnist[0][:256], mnist[1][:256]
    g = torch.Generator().manual_seed(0)

    def masked_model(seed, density):
        torch.manual_seed(seed)
        lin = nn.Linear(784, 10)
        mask = (torch.rand(10, 784, generator=g) < density).float()
        parametrize.register_parametrization(lin, "weight", KeepMask(mask))
        return nn.Sequential(nn.Flatten(), lin), lin, mask

    model, lin, mask = masked_model(0, 0.1)
    before = lin.weight.detach().clone()
    fit(model, make_loader(x, y, 64), epochs=2, progress=False, checkpoint_dir=tmp_path)
    after = lin.weight.detach()
    assert torch.all(after[mask == 0] == 0)
    assert torch.all(after[mask == 1] != before[mask == 1])
    saved = load_checkpoint(tmp_path / CHECKPOINT_NAME)["model"]
    assert torch.equal(saved["1.parametrizations.weight.0.mask"], mask)

    other, other_lin, other_mask = masked_model(1, 0.5)
    assert not torch.equal(other_mask, mask)
    fit(
        other, make_loader(x, y, 64), epochs=2, progress=False, checkpoint_dir=tmp_path, resume=True
    )
    assert torch.equal(other_lin.parametrizations.weight[0].mask, mask)
    assert torch.equal(other_lin.weight, after)


def test_checkpoint_is_safe_to_load_and_history_json_matches(mnist, tmp_path):
    x, y = mnist[0][:128], mnist[1][:128]
    result = fit(
        small_net(0), make_loader(x, y, 64), epochs=2, progress=False, checkpoint_dir=tmp_path
    )
    ckpt = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["config"]["optimizer"] == "sgd"
    # the learning rate is a closed form of the epoch: no scheduler state to save
    assert set(ckpt) >= {"model", "optimizer", "history", "rng"}
    assert "2.running_mean" in ckpt["model"]  # persistent buffers travel with the weights
    assert json.loads((tmp_path / "history.json").read_text()) == result.history
    # the previous checkpoint and the digest file beside it; no temporaries
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["history.json", CHECKPOINT_NAME, CHECKPOINT_NAME + ".sha256", "last.prev.pt"]
    )


def test_fit_leaves_caller_rng_alone_with_a_shuffling_dataloader(mnist):
    dataset = torch.utils.data.TensorDataset(
        torch.as_tensor(mnist[0][:64]), torch.as_tensor(mnist[1][:64])
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, shuffle=True)
    model = small_net(0)
    state = torch.get_rng_state()
    first = fit(model, loader, epochs=1, progress=False, seed=3).history
    assert torch.equal(torch.get_rng_state(), state)
    # the shuffle comes from fit's seed, not from the caller's RNG position
    other = small_net(0)
    torch.manual_seed(12345)
    again = fit(other, loader, epochs=1, progress=False, seed=3).history
    assert again[0]["train_loss"] == first[0]["train_loss"]


def test_fit_logs_epochs_and_running_loss(mnist, caplog):
    x, y = mnist[0][:128], mnist[1][:128]
    with caplog.at_level(logging.DEBUG, logger="tedepr.backends.torch.training"):
        fit(small_net(0), make_loader(x, y, 64), epochs=1, progress=True, log_every=1)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("epoch 1/1: train loss") for m in messages)
    assert any(m.startswith("epoch 1 step 2: running train loss") for m in messages)


def test_evaluate_restores_module_modes(mnist):
    net = small_net(0)
    net.train()
    net[2].eval()  # e.g. a frozen BatchNorm
    evaluate(net, make_loader(mnist[2][:64], mnist[3][:64], 32))
    assert net.training and not net[2].training and net[4].training


# ---------- bad input


@pytest.mark.parametrize(
    "kw,match",
    [
        # the arguments both backends share: tests/contract/test_contract_training.py
        ({"device": "gpu7"}, "device must be"),
        ({"distributed": True}, "distributed=True needs an initialised process group"),
    ],
)
def test_fit_rejects_bad_arguments(mnist, kw, match):
    args = {"epochs": 1, "progress": False, **kw}
    model = zoo.get("lenet300_100", seed=0)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=match):
        fit(model, make_loader(mnist[0][:64], mnist[1][:64], 32), **args)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))


def test_fit_rejects_bad_data(mnist):
    x, y = mnist[0][:64], mnist[1][:64]
    model = zoo.get("lenet300_100", seed=0)
    with pytest.raises(ValueError, match="train_data must be re-iterable"):
        fit(model, ((x[i : i + 8], y[i : i + 8]) for i in range(0, 64, 8)), epochs=1)
    with pytest.raises(TypeError, match="train_data must be"):
        fit(model, 3, epochs=1)
    with pytest.raises(ValueError, match="x must be floating point"):
        make_loader(np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.int64), 2)
    with pytest.raises(ValueError, match="y must be a 1-D integer array"):
        make_loader(x, y.astype(np.float32), 2)
    with pytest.raises(ValueError, match="same length"):
        make_loader(x, y[:10], 2)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(x, y, 0)
    with pytest.raises(ValueError, match="inputs must be floating point"):
        fit(
            model, [(np.zeros((4, 784), np.uint8), np.zeros(4, np.int64))], epochs=1, progress=False
        )
    with pytest.raises(ValueError, match=r"must yield \(x, y\) pairs"):
        fit(model, [x[:4]], epochs=1, progress=False)


# ---------- DDP

DDP_WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import numpy as np
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp


    def worker(rank, world, out):
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{out / 'rendezvous'}", rank=rank,
                                world_size=world)
        try:
            from tedepr.backends.torch.models import get
            from tedepr.backends.torch.training import fit, make_loader

            data = np.load(out / "data.npz")
            model = get("lenet300_100", seed=0)
            result = fit(model, make_loader(data["x"], data["y"], 51, seed=0), epochs=2, lr=0.05,
                         eval_data=make_loader(data["x"][:99], data["y"][:99], 40, shuffle=False),
                         progress=False, checkpoint_dir=out / "ckpt")
            torch.save({"state": model.state_dict(), "history": result.history},
                       out / f"rank{rank}.pt")

            # A plain DataLoader: every rank reads each global batch and keeps its share.
            dataset = torch.utils.data.TensorDataset(torch.as_tensor(data["x"]),
                                                     torch.as_tensor(data["y"]))
            model = get("lenet300_100", seed=0)
            fit(model, torch.utils.data.DataLoader(dataset, batch_size=51), epochs=1, lr=0.05,
                progress=False)
            torch.save(model.state_dict(), out / f"loader{rank}.pt")

            # A DistributedSampler: already sharded (rank r reads samples r, r+2, ...), 25 per rank.
            sampler = torch.utils.data.distributed.DistributedSampler(dataset, shuffle=False)
            model = get("lenet300_100", seed=0)
            fit(model, torch.utils.data.DataLoader(dataset, batch_size=25, sampler=sampler),
                epochs=1, lr=0.05, progress=False)
            torch.save(model.state_dict(), out / f"sampler{rank}.pt")
        finally:
            dist.destroy_process_group()


    if __name__ == "__main__":
        # fork: the ranks inherit the imported torch instead of importing it again (CPU only here)
        import tedepr.backends.torch.training  # noqa: F401

        mp.start_processes(worker, args=(2, Path(sys.argv[1])), nprocs=2, join=True,
                           start_method="fork")
    """
)


@pytest.mark.slow  # a long training run (see the slow marker in pyproject.toml)
def test_ddp_two_ranks_match_single_process(mnist, tmp_path):
    # 250 samples in global batches of 51: shares of 26/25 and, for the last batch of 46, 23/23 —
    # the uneven shares check the per-rank loss weighting.
    x, y = mnist[0][:250], mnist[1][:250]
    np.savez(tmp_path / "data.npz", x=x, y=y)
    (tmp_path / "worker.py").write_text(DDP_WORKER)
    proc = run_script(
        tmp_path / "worker.py", tmp_path, timeout=180, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key  # all-reduced: bitwise identical
    untimed = [
        [{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]] for r in ranks
    ]
    assert untimed[0] == untimed[1]  # metrics are reduced over ranks

    single = zoo.get("lenet300_100", seed=0)
    result = fit(
        single,
        make_loader(x, y, 51, seed=0),
        epochs=2,
        lr=0.05,
        eval_data=make_loader(x[:99], y[:99], 40, shuffle=False),
        progress=False,
    )
    for key, value in single.state_dict().items():
        torch.testing.assert_close(ranks[0]["state"][key], value, rtol=0, atol=1e-6)
    for h_ddp, h_one in zip(ranks[0]["history"], result.history, strict=True):
        for name in ("train_loss", "train_acc", "eval_loss", "eval_acc", "lr"):
            assert h_ddp[name] == pytest.approx(h_one[name], rel=1e-5), name
    ckpt = load_checkpoint(tmp_path / "ckpt" / CHECKPOINT_NAME)
    # the same global batches in one process: 51 consecutive samples; 2 × 25 interleaved = 50
    for prefix, batch_size in (("loader", 51), ("sampler", 50)):
        single = zoo.get("lenet300_100", seed=0)
        fit(single, make_loader(x, y, batch_size, shuffle=False), epochs=1, lr=0.05, progress=False)
        states = [torch.load(tmp_path / f"{prefix}{r}.pt", weights_only=True) for r in range(2)]
        for key, value in single.state_dict().items():
            assert torch.equal(states[0][key], states[1][key]), (prefix, key)
            torch.testing.assert_close(states[0][key], value, rtol=0, atol=1e-6)
    assert ckpt["epoch"] == 2 and ckpt["config"]["world_size"] == 2 and len(ckpt["rng"]) == 2
