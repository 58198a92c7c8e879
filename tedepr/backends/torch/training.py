"""Training for PyTorch models: the core loop (`tedepr.training`) with torch.optim, DDP and exact
resume.

`fit` trains any ``nn.Module`` classifier — dense, tensorized or masked
(``torch.nn.utils.parametrize`` modules train through ``model.parameters()`` like any other) — and
returns its per-epoch history. Epochs, schedules, logging, history, checkpoint files, resume and
the handling of non-finite steps are `tedepr.training`'s, shared with the JAX backend; this module
supplies the step, the optimizer, the RNG states, device placement and DDP.

Determinism and resume
    `make_loader` orders each epoch's batches by ``(seed, epoch)`` alone
    (`tedepr.datasets.batch_indices`), and every epoch ends with an atomic, checksummed checkpoint
    holding the model (parameters and persistent buffers, mask buffers included), optimizer,
    history and the torch/NumPy/Python RNG states. A run interrupted at any point and restarted
    with ``resume=True`` therefore ends with exactly the weights and history of an uninterrupted
    run.

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
import io
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from tedepr import training as core
from tedepr.checkpoint import read_checkpoint_bytes
from tedepr.datasets import batch_indices
from tedepr.training import LOSSES, OPTIMIZERS, SCHEDULES, FitResult, Step  # noqa: F401 (core.BACKEND_NAMES)
from tedepr.validation import check_batch

__all__ = [*core.BACKEND_NAMES, "ArrayLoader", "make_loader"]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
_CHECKPOINT_FORMAT = "tedepr.torch.fit/1"


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
    x,
    y,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    *,
    check_finite: bool = True,
) -> ArrayLoader:
    """A deterministic, resumable loader over arrays ``x`` (floating, ``(N, ...)``), ``y`` ``(N,)``.

    The arrays are shared, not copied (a NumPy array becomes a tensor view of the same memory) and
    never modified. The shuffle of epoch ``e`` is derived from ``(seed, e)`` only. NaN/inf inputs
    are an error unless ``check_finite=False`` (for ``fit(..., on_nonfinite="skip")``, which skips
    and counts such batches).
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
    check_batch(xt, yt, name="make_loader(x, y)", finite=check_finite)
    return ArrayLoader(xt, yt.long(), batch_size, bool(shuffle), seed, bool(drop_last))


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


def _as_loader(
    data, batch_size: int, *, shuffle: bool, seed: int, name: str, check_finite: bool = True
):
    """``(x, y)`` arrays become `make_loader(x, y, batch_size, ...)`; anything else must be a
    re-iterable of batches."""
    if core.is_array_pair(data):
        try:
            return make_loader(
                data[0], data[1], batch_size, shuffle=shuffle, seed=seed, check_finite=check_finite
            )
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name}: {exc}") from exc
    core.check_reiterable(data, name)
    return data


def _epoch_batches(
    data, epoch: int | None, rank: int, world: int, name: str
) -> Iterator[tuple[torch.Tensor, torch.Tensor, float, np.ndarray | None]]:
    """Yield this rank's ``(x, y, weight, indices)``; ``weight · mean local loss`` summed over
    ranks / world is the global batch's mean loss, which is what DDP's gradient averaging then
    differentiates. ``indices``: the samples' positions in the arrays of an `ArrayLoader` (else
    None).

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
            yield data.x[index], data.y[index], weight, local
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
            yield x, y, y.shape[0] * world / max(n, 1), None
        else:
            yield x, y, 1.0, None


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
    # validated by check_fit_args (fit) or here (evaluate)
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


def _parse_checkpoint(data: bytes, path, map_location="cpu") -> dict[str, Any]:
    ckpt = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a tedepr fit checkpoint (format {_CHECKPOINT_FORMAT!r})"
        )
    return ckpt


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `fit` (safe loading: tensors and plain Python values only).

    The file is verified against its SHA-256 digest file (``last.pt.sha256``) when there is one;
    a truncated or corrupted file raises `tedepr.checkpoint.CheckpointError`.

    Keys: ``format``, ``epoch`` (completed epochs), ``model`` (state dict), ``optimizer``,
    ``history``, ``rng`` (one entry per rank), ``config`` (the training arguments).
    """
    return _parse_checkpoint(read_checkpoint_bytes(path), path, map_location)


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
    for x, y, _, _ in _epoch_batches(data, None, rank, world, name):
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
    model: nn.Module,
    data,
    device: str | torch.device | None = None,
    *,
    masks=None,
    batch_size: int = 512,
    loss="cross_entropy",
    devices=None,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` over ``data``, in eval mode and without gradients.

    ``data`` is a DataLoader, `make_loader(...)`, a re-iterable of ``(x, y)`` batches, or an
    ``(x, y)`` pair of arrays (batched by ``batch_size``, in order). ``masks`` (``{name: bool
    tensor}``, as `apply_masks` takes) are applied to a copy of ``model`` for the evaluation;
    ``model`` itself is never changed: the train/eval flags of its modules are restored afterwards.
    ``device`` (default CPU) or a one-element ``devices`` says where it runs, as in `fit`.

    Returns
    ``(loss, accuracy)`` as Python floats; accuracy in [0, 1].
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    data = _as_loader(data, batch_size, shuffle=False, seed=0, name="data")
    core.check_reiterable(data, "data")
    device = _device(device, devices)
    loss_fn = _loss_fn(loss)
    if masks is not None:
        import copy

        from .masking import apply_masks

        model = copy.deepcopy(model)
        apply_masks(model, masks)
    modes = _module_modes(model)
    model.eval()
    try:
        sums = _evaluate_sums(model, data, device, loss_fn, 0, 1, "data")
    finally:
        for m, mode in modes:
            m.training = mode
    return _finish(sums, "data")


# ---------- fit


def _device(device, devices) -> torch.device:
    if devices is not None:
        if isinstance(devices, (str, torch.device)) or not hasattr(devices, "__len__"):
            raise TypeError(
                f"devices must be a sequence of devices; got {type(devices).__name__} "
                "(pass one device as device=)"
            )
        if len(devices) != 1:
            raise ValueError(
                "devices: the torch backend trains on one device per process; for several "
                "devices run one process per device (torchrun) and let fit use "
                f"DistributedDataParallel; got {len(devices)} devices"
            )
        device = devices[0]
    if device is None:
        device = "cpu"
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be a torch device or a string like 'cpu' or 'cuda:0'; got {device!r}"
        ) from exc


def _distributed(distributed) -> bool:
    initialised = dist.is_available() and dist.is_initialized()
    if distributed is None:
        return initialised
    if distributed and not initialised:
        raise ValueError(
            "distributed=True needs an initialised process group: call "
            "torch.distributed.init_process_group() first (e.g. under torchrun)"
        )
    return distributed


class _TorchSession:
    """The torch half of one `fit` call (`tedepr.training.TrainingBackend`)."""

    logger = logger
    checkpoint_name = CHECKPOINT_NAME
    checkpoint_format = _CHECKPOINT_FORMAT

    def __init__(self, model, net, opt, loss_fn, device, train, eval_data, seed, rank, world):
        self.model, self.net, self.opt, self.loss_fn = model, net, opt, loss_fn
        self.device, self.dtype = device, _float_dtype(model)
        self.train, self.eval_data, self.seed = train, eval_data, seed
        self.rank, self.world = rank, world
        self.params = [p for p in model.parameters() if p.requires_grad]

    def num_batches(self):
        return len(self.train) if hasattr(self.train, "__len__") else None

    _batch = None  # the position of the batch being trained in its epoch (for error messages)

    def train_batches(self, epoch):
        self.net.train()
        for k, (x, y, weight, index) in enumerate(
            _epoch_batches(self.train, epoch, self.rank, self.world, "train_data")
        ):
            x, y = _prepare(x, y, self.device, self.dtype, "train_data")
            self._batch = k
            yield x, y, weight, index

    def train_step(self, batch, lr):
        x, y, weight, _ = batch
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        out = self.net(x)
        # labels in range of the model's output (finiteness is the non-finite event's job)
        check_batch(
            x, y, name="train_data", index=self._batch, num_classes=out.shape[-1], finite=False
        )
        batch_loss = self.loss_fn(out, y)
        (batch_loss * weight if weight != 1.0 else batch_loss).backward()
        loss = batch_loss.detach()
        grads = [p.grad for p in self.params if p.grad is not None]
        # One float64 sum per gradient is NaN/inf iff an entry is (a float32 sum cannot overflow
        # in float64) and costs a fraction of an elementwise isfinite; confirmed exactly below.
        total = torch.stack([loss.double(), *(g.sum(dtype=torch.float64) for g in grads)]).sum()
        loss_value, correct, finite = torch.stack(
            [loss.double(), (out.argmax(1) == y).sum().double(), total.isfinite().double()]
        ).tolist()
        if not finite:  # float64 gradients whose sum overflowed are finite after all
            finite = all(bool(torch.isfinite(t).all()) for t in (loss, *grads))
        if self.world > 1:
            # DDP averaged the gradients, but the loss is local: agree on the flag
            finite = not self.any_rank(not finite)
        if finite:
            self.opt.step()
        return Step(loss_value, int(correct), int(y.shape[0]), finite)

    def nonfinite_sample(self, batch):
        x, _, _, index = batch
        if x.shape[0] == 0:
            return None
        bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(1)
        if not bool(bad.any()):
            return None
        i = int(bad.nonzero()[0, 0])
        return i, None if index is None else int(index[i])

    def reduce(self, values):
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def any_rank(self, flag):
        t = torch.tensor([float(flag)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def share(self, obj):
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def evaluate(self):
        modes = _module_modes(self.model)
        self.model.eval()
        try:
            sums = _evaluate_sums(
                self.model,
                self.eval_data,
                self.device,
                self.loss_fn,
                self.rank,
                self.world,
                "eval_data",
            )
        finally:
            for m, mode in modes:
                m.training = mode
        return sums.tolist()

    def weights_finite(self):
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def snapshot(self, meta):
        rng = _rng_state(self.device)
        if self.world > 1:
            states: list[Any] = [None] * self.world
            dist.all_gather_object(states, rng)
        else:
            states = [rng]
        if self.rank != 0:
            return None
        payload = {
            **meta,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "rng": states,
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return buffer.getvalue()

    def parse_checkpoint(self, data, path):
        ckpt = _parse_checkpoint(data, path)
        return ckpt, ckpt

    def restore(self, ckpt, path):
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        _set_rng_state(ckpt["rng"][self.rank], self.device)

    def start_fresh(self):
        _seed_all(self.seed, self.device)


@core.fit_signature
def fit(model: nn.Module, train_data, **options) -> FitResult:
    """Train a classifier for ``epochs`` epochs; checkpoint every epoch; resume exactly.

    Takes the keyword-only arguments of every backend's `fit` (`tedepr.training.fit_signature`,
    rules in `tedepr.training.check_fit_args`); the torch-specific meanings are these.

    Parameters
    ----------
    model : nn.Module
        Maps inputs ``(B, ...)`` to logits ``(B, num_classes)``. Trained **in place** (as torch
        optimizers always do) and moved to ``device``; every parameter with ``requires_grad`` is
        trained.
    train_data
        ``(x, y)`` arrays or tensors (batched by `make_loader` with ``batch_size`` and ``seed``),
        `make_loader(...)` (deterministic and resumable), a ``torch.utils.data.DataLoader``
        (resumable when its shuffling uses the global torch RNG and ``num_workers`` is 0 or workers
        are seeded), or any re-iterable of ``(x, y)`` batches (NumPy arrays or tensors; ``x``
        floating, ``y`` integer labels).
    masks : dict of parameter name -> bool tensor, optional
        Attached to ``model`` in place before training (`tedepr.backends.torch.apply_masks`).
    device : torch device or string, optional
        Where to train (default ``"cpu"``).
    devices : a sequence of one torch device, optional
        The same as ``device`` (the JAX backend's name for its data-parallel devices); several
        devices are DDP's job: run one process per device.
    distributed : bool, optional
        ``None`` (default) detects an initialised ``torch.distributed`` process group.
    seed : int >= 0
        Also seeds the global torch/NumPy/Python RNGs for the run (dropout, DataLoader
        shuffling); the caller's RNG states are restored when `fit` returns.
    checkpoint_dir : path, optional
        Holds ``last.pt``, ``last.pt.sha256``, ``last.prev.pt`` and ``history.json``.

    Returns
    -------
    FitResult
        ``history`` (one dict per epoch), the trained ``model``, ``start_epoch`` and
        ``skipped_batches``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    cfg = core.check_fit_args(**core.fit_arguments(options))
    masks, eval_data = options["masks"], options["eval_data"]
    loss_fn = _loss_fn(cfg.loss)
    # NaN/inf data is fit's non-finite event (NonFiniteError naming epoch, step and sample, or a
    # skipped batch with on_nonfinite="skip"), not a door check
    check_finite = False
    train = _as_loader(
        train_data,
        cfg.batch_size,
        shuffle=True,
        seed=cfg.seed,
        name="train_data",
        check_finite=check_finite,
    )
    if eval_data is not None:
        eval_data = _as_loader(
            eval_data, max(cfg.batch_size, 512), shuffle=False, seed=0, name="eval_data"
        )
    device = _device(options["device"], options["devices"])
    use_ddp = _distributed(cfg.distributed)
    rank, world = (dist.get_rank(), dist.get_world_size()) if use_ddp else (0, 1)
    if masks is not None:
        from .masking import apply_masks

        apply_masks(model, masks)

    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (requires_grad=True)")
    opt = _make_optimizer(params, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    net: nn.Module = model
    with _isolated_rng(device):
        if use_ddp:
            ids = [device.index] if device.type == "cuda" and device.index is not None else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        session = _TorchSession(
            model, net, opt, loss_fn, device, train, eval_data, cfg.seed, rank, world
        )
        history, start_epoch, skipped = core.run_fit(
            session, cfg, config_extra={"world_size": world}, has_eval=eval_data is not None
        )
    return FitResult(history=history, model=model, start_epoch=start_epoch, skipped_batches=skipped)
