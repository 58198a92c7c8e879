"""Training loop for PyTorch models: deterministic batches, atomic checkpoints, exact resume, DDP.

`fit` trains any ``nn.Module`` classifier — dense, tensorized or masked
(``torch.nn.utils.parametrize`` modules train through ``model.parameters()`` like any other) — and
returns its per-epoch history.

Determinism and resume
    `make_loader` orders each epoch's batches by ``(seed, epoch)`` alone
    (`tedepr.datasets.batch_indices`), and every epoch ends with an atomic checkpoint holding the
    model (parameters and persistent buffers, mask buffers included), optimizer, scheduler, history
    and the torch/NumPy/Python RNG states. A run interrupted at any point and restarted with
    ``resume=True`` therefore ends with exactly the weights and history of an uninterrupted run.

Distributed data parallel
    Inside an initialised ``torch.distributed`` process group (or with ``distributed=True``) the
    model is wrapped in `DistributedDataParallel` and every global batch is split by rank
    (``batch[rank::world]``, batches smaller than the world size are skipped on every rank). Each
    rank's loss is weighted by its share of the global batch, so the averaged gradient is exactly
    the gradient of the global batch's mean loss — the same update a single process makes on the
    whole batch. Only rank 0 writes checkpoints and shows the progress bar; histories are reduced
    over ranks and identical everywhere.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from tedepr.checkpoint import atomic_save, atomic_write_json
from tedepr.datasets import batch_indices
from tedepr.validation import check_batch

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "LOSSES",
    "CHECKPOINT_NAME",
    "FitResult",
    "ArrayLoader",
    "make_loader",
    "fit",
    "evaluate",
    "load_checkpoint",
]

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")
LOSSES = ("cross_entropy",)
CHECKPOINT_NAME = "last.pt"
_CHECKPOINT_FORMAT = "tedepr.torch.fit/1"


@dataclass
class FitResult:
    """What `fit` returns.

    Attributes
    ----------
    history : list of dict
        One dict per completed epoch (those restored from a checkpoint included), with keys
        ``epoch`` (1-based), ``train_loss``, ``train_acc`` (running over the epoch, in train mode),
        ``eval_loss``, ``eval_acc`` (``None`` without ``eval_data``), ``lr`` (the learning rate used
        in that epoch) and ``seconds`` (wall time of the epoch).
    model : nn.Module
        The trained model — the very object passed to `fit` (trained in place), never the DDP
        wrapper.
    start_epoch : int
        Epochs already completed when this call began (non-zero only when resumed).
    """

    history: list[dict[str, Any]]
    model: nn.Module
    start_epoch: int = 0


# ---------- data


def _as_tensor(a, name: str) -> torch.Tensor:
    if isinstance(a, np.ndarray) and not a.flags.writeable:
        a = a.copy()  # torch.from_numpy warns on read-only arrays (e.g. memory-mapped .npy files)
    try:
        return torch.as_tensor(a)
    except (TypeError, RuntimeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be a NumPy array or torch tensor; got {type(a).__name__}"
        ) from exc


@dataclass
class ArrayLoader:
    """A re-iterable, deterministic batch loader over in-memory arrays (made by `make_loader`).

    Iterating yields ``(x[idx], y[idx])`` with ``x`` of shape ``(B, ...)`` and ``y`` ``int64`` of
    shape ``(B,)``; the batches of epoch ``e`` are `tedepr.datasets.batch_indices(N, batch_size,
    shuffle=shuffle, seed=seed, epoch=e, drop_last=drop_last)`, so they do not depend on what
    happened before epoch ``e``. Plain iteration uses the epoch set by `set_epoch` (0 initially);
    `fit` asks for each epoch explicitly.
    """

    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    shuffle: bool = True
    seed: int = 0
    drop_last: bool = False
    epoch: int = field(default=0)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch that plain iteration yields (like `DistributedSampler.set_epoch`)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int; got {epoch!r}")
        self.epoch = epoch

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """The index arrays of the global batches of ``epoch``."""
        return batch_indices(
            len(self.y),
            self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=epoch,
            drop_last=self.drop_last,
        )

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in self.batch_indices(self.epoch):
            index = torch.from_numpy(idx)
            yield self.x[index], self.y[index]


def make_loader(
    x, y, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False
) -> ArrayLoader:
    """A deterministic, resumable loader over arrays ``x`` (floating, ``(N, ...)``), ``y`` ``(N,)``.

    The arrays are shared, not copied (a NumPy array becomes a tensor view of the same memory) and
    never modified. The shuffle of epoch ``e`` is derived from ``(seed, e)`` only.
    """
    xt, yt = _as_tensor(x, "x"), _as_tensor(y, "y")
    if not xt.is_floating_point():
        raise ValueError(
            "x must be floating point (normalise images first, e.g. tedepr.datasets.normalize); "
            f"got {xt.dtype}"
        )
    if yt.dim() != 1 or yt.is_floating_point() or yt.is_complex() or yt.dtype == torch.bool:
        raise ValueError(
            "y must be a 1-D integer array of class indices; "
            f"got {yt.dtype} of shape {tuple(yt.shape)}"
        )
    if xt.dim() < 1 or xt.shape[0] != yt.shape[0]:
        raise ValueError(
            f"x and y must have the same length N; got x {tuple(xt.shape)} and y {tuple(yt.shape)}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    check_batch(xt, yt, name="make_loader(x, y)")
    return ArrayLoader(xt, yt.long(), batch_size, bool(shuffle), seed, bool(drop_last))


def _check_reiterable(data, name: str) -> None:
    if not isinstance(data, Iterable):
        raise TypeError(
            f"{name} must be a DataLoader, make_loader(...) or a re-iterable of (x, y) batches; "
            f"got {type(data).__name__}"
        )
    # Checked by type, not by calling iter(): that would start a DataLoader's workers and draw
    # its base seed from the global RNG.
    if isinstance(data, Iterator):
        raise ValueError(
            f"{name} must be re-iterable (one pass per epoch), not a one-shot iterator or "
            "generator; pass a DataLoader, make_loader(...) or a list of batches"
        )


def _unpack(batch, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"{name} must yield (x, y) pairs; got {type(batch).__name__}")
    x, y = _as_tensor(batch[0], f"{name} x"), _as_tensor(batch[1], f"{name} y")
    if x.shape[:1] != y.shape[:1]:
        raise ValueError(
            f"{name}: a batch's x and y differ in length: {tuple(x.shape)} vs {tuple(y.shape)}"
        )
    return x, y


def _is_presharded(data) -> bool:
    sampler = getattr(data, "sampler", None)
    return isinstance(sampler, torch.utils.data.distributed.DistributedSampler)


def _epoch_batches(
    data, epoch: int | None, rank: int, world: int, name: str
) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
    """Yield this rank's ``(x, y, weight)``; ``weight · mean local loss`` summed over ranks / world
    is the global batch's mean loss, which is what DDP's gradient averaging then differentiates.

    ``epoch=None`` is evaluation: the order does not matter, no sampler is touched, and global
    batches smaller than the world size are kept (some ranks then see an empty share) — with an
    epoch they are skipped, as an empty share cannot take part in a gradient step.
    """
    training = epoch is not None
    if isinstance(data, ArrayLoader):
        for idx in data.batch_indices(epoch if training else 0):
            if world > 1:
                if len(idx) < world and training:
                    continue
                local = idx[rank::world]
                weight = len(local) * world / len(idx)
            else:
                local, weight = idx, 1.0
            index = torch.from_numpy(local)
            yield data.x[index], data.y[index], weight
        return
    if training:
        sampler = getattr(data, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        elif hasattr(data, "set_epoch"):
            data.set_epoch(epoch)
    presharded = _is_presharded(data)
    for batch in data:
        x, y = _unpack(batch, name)
        if world > 1 and not presharded:
            n = y.shape[0]
            if n < world and training:
                continue
            x, y = x[rank::world], y[rank::world]
            yield x, y, y.shape[0] * world / max(n, 1)
        else:
            yield x, y, 1.0


def _prepare(
    x: torch.Tensor, y: torch.Tensor, device: torch.device, dtype: torch.dtype | None, name: str
):
    if not x.is_floating_point():
        raise ValueError(
            f"{name}: inputs must be floating point (normalise images first); got {x.dtype}"
        )
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name}: labels must be integer class indices; got {y.dtype}")
    x = x.to(device=device, dtype=dtype or x.dtype, non_blocking=True)
    return x, y.to(device=device, dtype=torch.long, non_blocking=True)


def _float_dtype(model: nn.Module) -> torch.dtype | None:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


# ---------- losses, optimizers


def _loss_fn(loss) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if callable(loss):
        return loss
    if loss == "cross_entropy":
        return F.cross_entropy
    raise ValueError(
        f"loss must be one of {', '.join(map(repr, LOSSES))} or a callable (logits, labels) -> "
        f"mean loss; got {loss!r}"
    )


def _make_optimizer(params, optimizer: str, lr: float, momentum: float, weight_decay: float):
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)


def _lr_factor(schedule: str, epochs: int) -> Callable[[int], float]:
    """The learning-rate factor of epoch ``e`` (0-based), in closed form: a resume cannot drift."""
    if schedule == "cosine":
        return lambda e: 0.5 * (1.0 + math.cos(math.pi * e / epochs))
    if schedule == "step":
        milestones = sorted({m for m in (epochs // 2, (3 * epochs) // 4) if m > 0})
        return lambda e: 0.1 ** sum(e >= m for m in milestones)
    return lambda e: 1.0


# ---------- RNG


def _rng_state(device: torch.device) -> dict[str, Any]:
    """All RNG states as tensors and plain Python values (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()  # noqa: NPY002 (the global state is what we save)
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": py_state[0],
            "internal": torch.tensor(py_state[1], dtype=torch.int64),
            "gauss_next": py_state[2],
        },
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    s = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            s["name"],
            s["key"].numpy().astype(np.uint32),
            s["pos"],
            s["has_gauss"],
            s["cached_gaussian"],
        )
    )
    s = state["python"]
    random.setstate((s["version"], tuple(int(v) for v in s["internal"].tolist()), s["gauss_next"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


@contextlib.contextmanager
def _isolated_rng(device: torch.device):
    """Run with the global torch/NumPy/Python RNGs, then give the caller back the states it had."""
    saved = _rng_state(device)
    try:
        yield
    finally:
        _set_rng_state(saved, device)


def _seed_all(seed: int, device: torch.device) -> None:
    torch.manual_seed(seed)  # also seeds every CUDA device
    np.random.seed(seed)  # noqa: NPY002
    random.seed(seed)


# ---------- checkpoints


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `fit` (safe loading: tensors and plain Python values only).

    Keys: ``format``, ``epoch`` (completed epochs), ``model`` (state dict), ``optimizer``,
    ``scheduler``, ``history``, ``rng`` (one entry per rank), ``config`` (the training arguments).
    """
    ckpt = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a tedepr fit checkpoint (format {_CHECKPOINT_FORMAT!r})"
        )
    return ckpt


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_save(lambda f: torch.save(payload, f), path)
    atomic_write_json(path.with_name("history.json"), payload["history"])


# ---------- evaluation


def _module_modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(m, m.training) for m in model.modules()]


@torch.no_grad()
def _evaluate_sums(
    model: nn.Module, data, device: torch.device, loss_fn, rank: int, world: int, name: str
) -> torch.Tensor:
    """``[Σ loss·n, Σ correct, Σ n]`` over this rank's share of ``data`` (float64, ``device``)."""
    dtype = _float_dtype(model)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for x, y, _ in _epoch_batches(data, None, rank, world, name):
        if y.shape[0] == 0:
            continue
        x, y = _prepare(x, y, device, dtype, name)
        out = model(x)
        check_batch(x, y, name=name, num_classes=out.shape[-1])
        n = y.shape[0]
        sums += torch.stack(
            [
                loss_fn(out, y).double() * n,
                (out.argmax(1) == y).sum().double(),
                torch.tensor(float(n), dtype=torch.float64, device=device),
            ]
        )
    return sums


def _finish(sums: torch.Tensor, name: str) -> tuple[float, float]:
    loss_sum, correct, count = sums.tolist()
    if count == 0:
        raise ValueError(f"{name} yielded no samples")
    return loss_sum / count, correct / count


def evaluate(
    model: nn.Module, data, device: str | torch.device = "cpu", *, loss="cross_entropy"
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` over ``data``, in eval mode and without gradients.

    ``data`` is a DataLoader, `make_loader(...)` or a re-iterable of ``(x, y)`` batches. The
    train/eval flags of the model's modules are restored afterwards.

    Returns
    ``(loss, accuracy)`` as Python floats; accuracy in [0, 1].
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    _check_reiterable(data, "data")
    device = _device(device)
    loss_fn = _loss_fn(loss)
    modes = _module_modes(model)
    model.eval()
    try:
        sums = _evaluate_sums(model, data, device, loss_fn, 0, 1, "data")
    finally:
        for m, mode in modes:
            m.training = mode
    return _finish(sums, "data")


# ---------- fit


def _device(device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be a torch device or a string like 'cpu' or 'cuda:0'; got {device!r}"
        ) from exc


def _check_number(
    value,
    name: str,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = True,
) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must be a finite number in {lo}{low}, {high}{hi}; got {value!r}")
    return float(value)


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def _distributed(distributed) -> bool:
    initialised = dist.is_available() and dist.is_initialized()
    if distributed is None:
        return initialised
    if not isinstance(distributed, bool):
        raise ValueError(
            f"distributed must be None (auto-detect), True or False; got {distributed!r}"
        )
    if distributed and not initialised:
        raise ValueError(
            "distributed=True needs an initialised process group: call "
            "torch.distributed.init_process_group() first (e.g. under torchrun)"
        )
    return distributed


def fit(
    model: nn.Module,
    train_data,
    *,
    epochs: int,
    lr: float = 0.1,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    eval_data=None,
    loss="cross_entropy",
    device: str | torch.device = "cpu",
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
    progress: bool = True,
    log_every: int = 50,
    distributed: bool | None = None,
) -> FitResult:
    """Train a classifier for ``epochs`` epochs; checkpoint every epoch; resume exactly.

    Parameters
    ----------
    model : nn.Module
        Maps inputs ``(B, ...)`` to logits ``(B, num_classes)``. Trained **in place** (as torch
        optimizers always do) and moved to ``device``; every parameter with ``requires_grad`` is
        trained.
    train_data
        `make_loader(...)` (deterministic and resumable), a ``torch.utils.data.DataLoader``
        (resumable when its shuffling uses the global torch RNG and ``num_workers`` is 0 or workers
        are seeded), or any re-iterable of ``(x, y)`` batches (NumPy arrays or tensors; ``x``
        floating, ``y`` integer labels).
    epochs : int >= 1
    lr : float > 0
        Peak learning rate.
    optimizer : ``"sgd"``, ``"adam"`` or ``"adamw"``
        SGD uses ``momentum``; Adam and AdamW use ``betas=(momentum, 0.999)``.
    momentum : float in [0, 1)
    weight_decay : float >= 0
        L2 penalty for ``"sgd"``/``"adam"``, decoupled decay for ``"adamw"``.
    schedule : ``"cosine"``, ``"step"`` or ``"constant"``
        The learning rate of epoch ``e`` (0-based) is ``lr·½(1+cos(π e/epochs))`` for cosine; for
        step it is multiplied by 0.1 at 50% and again at 75% of the epochs. It changes once per
        epoch.
    eval_data : optional, same kinds as ``train_data``
        Evaluated after every epoch (`evaluate`).
    loss : ``"cross_entropy"`` or a callable ``(logits, labels) -> mean loss``.
    device : torch device or string.
    checkpoint_dir : path, optional
        Where ``last.pt`` (and a readable ``history.json``) are atomically rewritten after every
        epoch.
    resume : bool
        Continue from ``checkpoint_dir/last.pt`` if it exists (a fresh start if not). The
        checkpoint's training arguments must match this call's; its weights replace ``model``'s.
    seed : int >= 0
        Seeds the global torch/NumPy/Python RNGs for the run (dropout, DataLoader shuffling); the
        caller's RNG states are restored when `fit` returns.
    progress : bool
        Show a tqdm bar per epoch (tqdm hides it when stderr is not a terminal).
    log_every : int >= 1
        Steps between progress-bar refreshes and DEBUG log lines of the running loss.
    distributed : bool, optional
        ``None`` (default) detects an initialised ``torch.distributed`` process group.

    Returns
    -------
    FitResult
        ``history`` (one dict per epoch) and the trained ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    epochs = _check_int(epochs, "epochs", 1)
    lr = _check_number(lr, "lr", 0.0, low_open=True)
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}; got {optimizer!r}"
        )
    if schedule not in SCHEDULES:
        raise ValueError(
            f"schedule must be one of {', '.join(map(repr, SCHEDULES))}; got {schedule!r}"
        )
    momentum = _check_number(momentum, "momentum", 0.0, 1.0)
    weight_decay = _check_number(weight_decay, "weight_decay", 0.0)
    seed = _check_int(seed, "seed", 0)
    log_every = _check_int(log_every, "log_every", 1)
    if not isinstance(resume, bool):
        raise ValueError(f"resume must be True or False; got {resume!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir (the folder holding last.pt)")
    loss_fn = _loss_fn(loss)
    _check_reiterable(train_data, "train_data")
    if eval_data is not None:
        _check_reiterable(eval_data, "eval_data")
    device = _device(device)
    use_ddp = _distributed(distributed)
    rank, world = (dist.get_rank(), dist.get_world_size()) if use_ddp else (0, 1)

    ckpt_path = None
    if checkpoint_dir is not None:
        ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME
        if rank == 0:
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            if not resume and ckpt_path.exists():
                logger.warning("%s exists; resume=False starts afresh and overwrites it", ckpt_path)

    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (requires_grad=True)")
    opt = _make_optimizer(params, optimizer, lr, momentum, weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(schedule, epochs))
    config = {
        "epochs": epochs,
        "lr": lr,
        "optimizer": optimizer,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "schedule": schedule,
        "seed": seed,
        "world_size": world,
        "loss": loss if isinstance(loss, str) else "callable",
    }

    with _isolated_rng(device):
        ckpt = _read_for_resume(ckpt_path, resume, rank, use_ddp)
        history: list[dict[str, Any]] = []
        start_epoch = 0
        if ckpt is not None:
            _check_config(ckpt["config"], config, ckpt_path)
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            history = [dict(h) for h in ckpt["history"]]
            start_epoch = int(ckpt["epoch"])
            _set_rng_state(ckpt["rng"][rank], device)
            logger.info("resumed from %s after epoch %d of %d", ckpt_path, start_epoch, epochs)
        else:
            _seed_all(seed, device)
        del ckpt

        net: nn.Module = model
        if use_ddp:
            ids = [device.index] if device.type == "cuda" and device.index is not None else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=ids)

        dtype = _float_dtype(model)
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            epoch_lr = opt.param_groups[0]["lr"]
            sums = _train_epoch(
                net,
                train_data,
                opt,
                loss_fn,
                device,
                dtype,
                epoch,
                epochs,
                rank,
                world,
                progress,
                log_every,
            )
            if use_ddp:
                dist.all_reduce(sums)
            train_loss, train_acc = _finish(sums, "train_data")
            sched.step()
            eval_loss = eval_acc = None
            if eval_data is not None:
                modes = _module_modes(model)
                model.eval()
                try:
                    sums = _evaluate_sums(
                        model, eval_data, device, loss_fn, rank, world, "eval_data"
                    )
                finally:
                    for m, mode in modes:
                        m.training = mode
                if use_ddp:
                    dist.all_reduce(sums)
                eval_loss, eval_acc = _finish(sums, "eval_data")
            record = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "eval_loss": eval_loss,
                "eval_acc": eval_acc,
                "lr": epoch_lr,
                "seconds": time.perf_counter() - t0,
            }
            history.append(record)
            if not math.isfinite(train_loss):
                logger.warning("epoch %d: train loss is %s (lower lr?)", epoch + 1, train_loss)
            logger.info(
                "epoch %d/%d: train loss %.4f acc %.4f%s, lr %.3g, %.1fs",
                epoch + 1,
                epochs,
                train_loss,
                train_acc,
                "" if eval_loss is None else f", eval loss {eval_loss:.4f} acc {eval_acc:.4f}",
                epoch_lr,
                record["seconds"],
            )
            if ckpt_path is not None:
                rng = _rng_state(device)
                if use_ddp:
                    states: list[Any] = [None] * world
                    dist.all_gather_object(states, rng)
                else:
                    states = [rng]
                if rank == 0:
                    _save_checkpoint(
                        ckpt_path,
                        {
                            "format": _CHECKPOINT_FORMAT,
                            "epoch": epoch + 1,
                            "model": model.state_dict(),
                            "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(),
                            "history": history,
                            "rng": states,
                            "config": config,
                        },
                    )
    return FitResult(history=[dict(h) for h in history], model=model, start_epoch=start_epoch)


def _read_for_resume(ckpt_path: Path | None, resume: bool, rank: int, use_ddp: bool) -> dict | None:
    ckpt = None
    if resume and rank == 0:
        if ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path)
        else:
            logger.info("resume=True but %s does not exist yet: starting afresh", ckpt_path)
    if use_ddp and resume:
        # Rank 0 reads; the others receive its copy, so every rank resumes from the same file even
        # without a shared file system.
        box = [ckpt]
        dist.broadcast_object_list(box, src=0)
        ckpt = box[0]
    return ckpt


def _check_config(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    diffs = [
        f"{k}={saved.get(k)!r} (checkpoint) vs {current[k]!r} (this call)"
        for k in current
        if saved.get(k) != current[k]
    ]
    if diffs:
        raise ValueError(
            f"resume=True: {path} was written by a run with other arguments: "
            + "; ".join(diffs)
            + ". Use the same arguments, or another checkpoint_dir (or resume=False) to start "
            "afresh"
        )


def _train_epoch(
    net: nn.Module,
    data,
    opt,
    loss_fn,
    device,
    dtype,
    epoch: int,
    epochs: int,
    rank: int,
    world: int,
    progress: bool,
    log_every: int,
) -> torch.Tensor:
    net.train()
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    total = len(data) if hasattr(data, "__len__") else None
    bar = tqdm(
        total=total,
        desc=f"epoch {epoch + 1}/{epochs}",
        leave=False,
        dynamic_ncols=True,
        disable=True if (not progress or rank != 0) else None,
    )
    try:
        for step, (x, y, weight) in enumerate(
            _epoch_batches(data, epoch, rank, world, "train_data")
        ):
            x, y = _prepare(x, y, device, dtype, "train_data")
            opt.zero_grad(set_to_none=True)
            out = net(x)
            check_batch(x, y, name="train_data", index=step, num_classes=out.shape[-1])
            batch_loss = loss_fn(out, y)
            (batch_loss * weight if weight != 1.0 else batch_loss).backward()
            opt.step()
            n = y.shape[0]
            sums += torch.stack(
                [
                    batch_loss.detach().double() * n,
                    (out.argmax(1) == y).sum().double(),
                    torch.tensor(float(n), dtype=torch.float64, device=device),
                ]
            )
            bar.update()
            if (step + 1) % log_every == 0:
                running = (sums[0] / sums[2]).item()
                bar.set_postfix(loss=f"{running:.4f}", refresh=False)
                logger.debug(
                    "epoch %d step %d: running train loss %.4f", epoch + 1, step + 1, running
                )
    finally:
        bar.close()
    return sums
