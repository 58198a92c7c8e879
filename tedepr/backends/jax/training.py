"""Training loop for JAX models: jitted steps with optax, fixed masks, atomic checkpoints, exact
resume, data parallelism with `jax.sharding`.

Same recipe as ``tedepr.backends.torch.training.fit``: SGD with momentum / Adam / AdamW (``betas =
(momentum, 0.999)``), L2 weight decay for SGD/Adam and decoupled decay for AdamW, a learning rate
that changes once per epoch (cosine ``½(1+cos(π e/epochs))``, step ×0.1 at 50% and 75%, or
constant), and the batches of epoch ``e`` from `tedepr.datasets.batch_indices` with ``(seed, e)`` —
so both backends see identical batches.

Masks
    Pruned entries stay exactly zero: the params are masked once at the start, and every gradient
    and every optimizer update is projected onto the mask (``where(m, ·, 0)``), so the optimizer's
    moments at pruned entries stay exactly 0 too (a zero gradient into a zero-initialised moment;
    the decay of a zero weight is zero).

Resume
    Every epoch ends with an atomic checkpoint ``checkpoint_dir/last.npz`` (params, optimizer state,
    masks, epoch, history, configuration, RNG seed) and ``history.json``. Training is deterministic
    — the batch order depends only on ``(seed, epoch)`` and nothing else draws random numbers — so a
    run resumed from the checkpoint of epoch ``k`` ends with exactly the params of an uninterrupted
    run.

Data parallelism
    ``devices`` (default: all of `jax.devices()`) form a one-axis `jax.sharding.Mesh`; each batch is
    sharded along its first axis over the devices and the params and optimizer state are replicated.
    The jitted step is the single-device program (XLA inserts the gradient all-reduce), so the
    update is the same as on one device up to floating-point summation order. A batch whose size the
    device count does not divide is replicated instead of sharded (computed whole on every device).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from ...checkpoint import atomic_save, atomic_write_json
from ...datasets import batch_indices
from ...validation import check_batch
from .layers import BatchNorm
from .masking import apply_masks, flatten_masks, leaf_paths, normalize_masks
from .models import Model

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "LOSSES",
    "CHECKPOINT_NAME",
    "FitResult",
    "fit",
    "evaluate",
    "make_optimizer",
    "make_train_step",
    "lr_factor",
    "trainable_mask",
    "load_checkpoint",
]

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")
LOSSES = ("cross_entropy",)
CHECKPOINT_NAME = "last.npz"
_CHECKPOINT_FORMAT = "tedepr.jax.fit/1"


@dataclass
class FitResult:
    """What `fit` returns.

    ``params``: the trained params (pruned entries exactly 0); ``history``: one dict per completed
    epoch (keys ``epoch``, ``train_loss``, ``train_acc``, ``eval_loss``, ``eval_acc``, ``lr``,
    ``seconds``, as the torch backend); ``start_epoch``: epochs done before this call (non-zero when
    resumed); ``opt_state``: the final optimizer state; ``masks``: the masks in force (full nested
    form or None).
    """

    params: Any
    history: list[dict[str, Any]]
    start_epoch: int = 0
    opt_state: Any = None
    masks: Any = None


# ------------------------------------------------------------------------------------------ pieces
def lr_factor(schedule: str, epochs: int) -> Callable[[int], float]:
    """The learning-rate multiplier of epoch ``e`` (0-based), in closed form (as torch's fit)."""
    if schedule == "cosine":
        return lambda e: 0.5 * (1.0 + math.cos(math.pi * e / epochs))
    if schedule == "step":
        milestones = sorted({m for m in (epochs // 2, (3 * epochs) // 4) if m > 0})
        return lambda e: 0.1 ** sum(e >= m for m in milestones)
    if schedule == "constant":
        return lambda e: 1.0
    raise ValueError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}; got {schedule!r}")


def trainable_mask(model: Model, params):
    """A pytree of Python bools like ``params``: False for BatchNorm running statistics (which
    are not trained)."""
    frozen = {
        f"{name}/{stat}"
        for name, layer in model.layers.items()
        if isinstance(layer, BatchNorm)
        for stat in BatchNorm.STATS
    }
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return jax.tree_util.tree_unflatten(treedef, [p not in frozen for p in leaf_paths(params)])


def make_optimizer(
    optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 5e-4, decay_mask=None
) -> optax.GradientTransformation:
    """The optimizer *without* its learning rate: updates are to be scaled by ``−lr`` by the caller.

    ``sgd``: torch's SGD (``buf = μ·buf + g + wd·θ``); ``adam``: L2 ``wd·θ`` added to the gradient,
    then Adam with ``b1 = momentum``; ``adamw``: Adam plus the decoupled ``wd·θ``. ``decay_mask``
    (pytree of bools like the params) limits the weight decay to the True leaves.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}; got {optimizer!r}"
        )
    decay = optax.add_decayed_weights(weight_decay)
    if decay_mask is not None:
        decay = optax.masked(decay, decay_mask)
    adam = optax.scale_by_adam(b1=momentum, b2=0.999, eps=1e-8)
    if optimizer == "sgd":
        return optax.chain(decay, optax.trace(decay=momentum, nesterov=False))
    if optimizer == "adam":
        return optax.chain(decay, adam)
    return optax.chain(adam, decay)


def _cross_entropy(logits, labels):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def _loss_fn(loss) -> Callable:
    if callable(loss):
        return loss
    if loss == "cross_entropy":
        return _cross_entropy
    raise ValueError(
        f"loss must be one of {', '.join(map(repr, LOSSES))} or a callable (logits, labels) -> "
        f"mean loss; got {loss!r}"
    )


def _project(tree, masks, trainable):
    """Zero the frozen leaves and the pruned entries of a params-shaped tree."""
    tree = jax.tree.map(lambda t, keep: t if keep else jnp.zeros_like(t), tree, trainable)
    if masks is None:
        return tree
    return jax.tree.map(
        lambda m, t: t if m is None else jnp.where(m, t, jnp.zeros((), t.dtype)),
        masks,
        tree,
        is_leaf=lambda x: x is None,
    )


def _merge_stats(params, stats):
    if not stats:
        return params
    out = dict(params)
    for name, new in stats.items():
        out[name] = {**params[name], **{k: v.astype(params[name][k].dtype) for k, v in new.items()}}
    return out


def make_train_step(
    model: Model, tx: optax.GradientTransformation, trainable, *, loss="cross_entropy"
):
    """A pure training step ``(params, opt_state, masks, x, y, lr) -> (params, opt_state, loss,
    correct)``.

    ``masks``: full nested form (`normalize_masks`) or None; ``trainable``: `trainable_mask`.
    Gradients and updates are projected onto the masks; BatchNorm running statistics come from the
    forward pass. Not jitted (the caller jits it, with shardings if wanted).
    """
    loss_fn = _loss_fn(loss)

    def step(params, opt_state, masks, x, y, lr):
        def objective(p):
            logits, stats = model.apply_train(p, x, masks)
            return loss_fn(logits, y), (logits, stats)

        (value, (logits, stats)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        grads = _project(grads, masks, trainable)
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = _project(updates, masks, trainable)
        params = jax.tree.map(lambda p, u: p - jnp.asarray(lr, p.dtype) * u, params, updates)
        params = _merge_stats(params, stats)
        correct = jnp.sum(jnp.argmax(logits, axis=-1) == y)
        return params, opt_state, value, correct

    return step


# ------------------------------------------------------------------------------------------ data
def _float_dtype(params):
    for leaf in jax.tree.leaves(params):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.dtype
    return jnp.float32


def _is_arrays(data) -> bool:
    return (
        isinstance(data, tuple)
        and len(data) == 2
        and hasattr(data[0], "shape")
        and hasattr(data[1], "shape")
    )


def _check_data(data, name: str):
    if _is_arrays(data):
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(
                f"{name}: x must be floating point (normalise images first, e.g. "
                f"tedepr.datasets.normalize); got {x.dtype}"
            )
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"{name}: y must be a 1-D integer array of class indices; got {y.dtype} "
                f"of shape {y.shape}"
            )
        if x.shape[:1] != y.shape:
            raise ValueError(
                f"{name}: x and y must have the same length N; got {x.shape} and {y.shape}"
            )
        check_batch(x, y, name=name)
        return x, y
    if not isinstance(data, Iterable) or iter(data) is data:
        raise TypeError(
            f"{name} must be an (x, y) tuple of arrays or a re-iterable of (x, y) batches "
            f"(e.g. a list); got {type(data).__name__}"
        )
    return data


def _batches(data, batch_size: int, shuffle: bool, seed: int, epoch: int, name: str):
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        x, y = data
        for idx in batch_indices(len(y), batch_size, shuffle=shuffle, seed=seed, epoch=epoch):
            yield x[idx], y[idx]
        return
    for item in data:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"{name} must yield (x, y) pairs; got {type(item).__name__}")
        x, y = np.asarray(item[0]), np.asarray(item[1])
        if not np.issubdtype(x.dtype, np.floating) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"{name}: batches need floating x and integer labels y; got {x.dtype}, {y.dtype}"
            )
        yield x, y


def _num_batches(data, batch_size):
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        return -(-len(data[1]) // batch_size)
    return len(data) if hasattr(data, "__len__") else None


class _Placement:
    """Where arrays live: params replicated over the mesh, batches sharded on their first axis."""

    def __init__(self, devices):
        devices = list(jax.devices() if devices is None else devices)
        if not devices:
            raise ValueError("devices must name at least one device")
        self.mesh = Mesh(np.array(devices), ("data",))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.sharded = NamedSharding(self.mesh, PartitionSpec("data"))
        self.count = len(devices)

    def params(self, tree):
        return jax.device_put(tree, self.replicated)

    def batch(self, x, y, dtype):
        sharding = self.sharded if len(y) % self.count == 0 else self.replicated
        x = np.asarray(x, dtype=dtype)
        y = np.asarray(y, dtype=np.int32)
        return jax.device_put(x, sharding), jax.device_put(y, sharding)


# ------------------------------------------------------------------------------------------
# evaluate
def _eval_step(model, loss_fn):
    def step(params, masks, x, y):
        logits = model.apply(params, x, masks)
        n = y.shape[0]
        return loss_fn(logits, y) * n, jnp.sum(jnp.argmax(logits, axis=-1) == y)

    return step


def _evaluate(model, params, masks, data, batch_size, loss_fn, placement, jitted):
    dtype = _float_dtype(params)
    loss_sum, correct, count = 0.0, 0, 0
    width = model.output_width(params, dtype=dtype)
    for x, y in _batches(data, batch_size, False, 0, 0, "eval_data"):
        if len(y) == 0:
            continue
        check_batch(x, y, name="eval_data", num_classes=width)
        xb, yb = placement.batch(x, y, dtype)
        l_sum, c = jitted(params, masks, xb, yb)
        loss_sum += float(l_sum)
        correct += int(c)
        count += len(y)
    if count == 0:
        raise ValueError("eval_data yielded no samples")
    return loss_sum / count, correct / count


def evaluate(
    model: Model,
    params,
    data,
    *,
    masks=None,
    batch_size: int = 512,
    loss="cross_entropy",
    devices=None,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` (eval mode) over ``data`` — an ``(x, y)`` tuple of arrays
    or a re-iterable of ``(x, y)`` batches. Returns ``(loss, accuracy)`` as Python floats."""
    data = _check_data(data, "data")
    loss_fn = _loss_fn(loss)
    placement = _Placement(devices)
    masks = normalize_masks(params, masks)
    jitted = jax.jit(_eval_step(model, loss_fn))
    return _evaluate(
        model,
        placement.params(params),
        placement.params(masks),
        data,
        batch_size,
        loss_fn,
        placement,
        jitted,
    )


# ------------------------------------------------------------------------------------------
# checkpoints
def _save_checkpoint(path: Path, params, opt_state, masks, meta: dict) -> None:
    arrays = {}
    for p, leaf in zip(leaf_paths(params), jax.tree.leaves(params), strict=True):
        arrays[f"params/{p}"] = np.asarray(leaf)
    for k, leaf in enumerate(jax.tree.leaves(opt_state)):
        arrays[f"opt/{k}"] = np.asarray(leaf)
    for p, m in flatten_masks(masks).items():
        arrays[f"masks/{p}"] = np.asarray(m)
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_save(lambda f: np.savez(f, **arrays), path)


def load_checkpoint(path) -> dict[str, Any]:
    """Read a `fit` checkpoint: ``{"params": {path: array}, "opt": [arrays], "masks": {path: array},
    "meta": dict}`` (NumPy arrays; no pickle is ever loaded)."""
    out: dict[str, Any] = {"params": {}, "opt": {}, "masks": {}}
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            if key == "meta":
                out["meta"] = json.loads(str(npz[key]))
                continue
            kind, _, rest = key.partition("/")
            out[kind][rest] = npz[key]
    if out.get("meta", {}).get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a tedepr JAX fit checkpoint (format {_CHECKPOINT_FORMAT!r})"
        )
    out["opt"] = [out["opt"][str(k)] for k in range(len(out["opt"]))]
    return out


def _restore(template, arrays: dict[str, np.ndarray], what: str, path):
    leaves, treedef = jax.tree_util.tree_flatten(template)
    paths = leaf_paths(template)
    if set(paths) != set(arrays):
        raise ValueError(
            f"resume: {path} holds {what} for other parameters than this model's "
            f"(missing {sorted(set(paths) - set(arrays))[:5]}, "
            f"extra {sorted(set(arrays) - set(paths))[:5]})"
        )
    out = []
    for p, leaf in zip(paths, leaves, strict=True):
        a = arrays[p]
        if a.shape != tuple(leaf.shape) or a.dtype != np.dtype(leaf.dtype):
            raise ValueError(
                f"resume: {path} has {what} {p!r} of {a.dtype}{a.shape}, "
                f"the model {leaf.dtype}{tuple(leaf.shape)}"
            )
        out.append(jnp.asarray(a))
    return jax.tree_util.tree_unflatten(treedef, out)


def _restore_opt(template, arrays: list, path):
    leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(leaves) != len(arrays) or any(
        np.shape(a) != tuple(np.shape(b)) for a, b in zip(arrays, leaves, strict=True)
    ):
        raise ValueError(
            f"resume: the optimizer state in {path} does not fit this optimizer and model"
        )
    return jax.tree_util.tree_unflatten(
        treedef,
        [jnp.asarray(a, dtype=jnp.asarray(b).dtype) for a, b in zip(arrays, leaves, strict=True)],
    )


def _masks_equal(a, b) -> bool:
    fa, fb = flatten_masks(a), flatten_masks(b)
    return set(fa) == set(fb) and all(
        np.array_equal(np.asarray(fa[k]), np.asarray(fb[k])) for k in fa
    )


# ------------------------------------------------------------------------------------------ fit
def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def _check_number(value, name: str, low: float, high: float = math.inf, *, low_open=False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or value > high or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low}, {high}{']' if math.isfinite(high) else ')'}"
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}")
    return float(value)


def fit(
    model: Model,
    params,
    train_data,
    *,
    masks=None,
    epochs: int,
    lr: float = 0.1,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    eval_data=None,
    batch_size: int = 128,
    loss="cross_entropy",
    checkpoint_dir=None,
    resume: bool = False,
    seed: int = 0,
    progress: bool = True,
    devices=None,
    log_every: int = 50,
) -> FitResult:
    """Train ``model`` from ``params`` for ``epochs`` epochs; checkpoint every epoch; resume
    exactly.

    Parameters
    ----------
    model : Model
    params : the model's params (not modified; `FitResult.params` holds the trained ones).
    train_data : ``(x, y)`` arrays (``x`` floating ``(N, ...)``, ``y`` integer ``(N,)``), batched by
        `tedepr.datasets.batch_indices` with ``batch_size``, shuffled by ``(seed, epoch)``; or a
        re-iterable of ``(x, y)`` batches used in its own order.
    masks : flat ``{path: bool array}`` or nested masks (`tedepr.backends.jax.masking`), optional.
    epochs, lr, optimizer, momentum, weight_decay, schedule :
        As ``tedepr.backends.torch.fit`` (module docstring).
    eval_data : optional, same kinds as ``train_data``; evaluated after every epoch.
    loss : ``"cross_entropy"`` or a callable ``(logits, labels) -> mean loss``.
    checkpoint_dir : path, optional
        Where ``last.npz`` and ``history.json`` are atomically rewritten after every epoch.
    resume : bool
        Continue from ``checkpoint_dir/last.npz`` if it exists (its params, optimizer state and
        masks replace the arguments'; the training arguments must match).
    seed : int >= 0
        Seeds the batch order.
    progress : bool
        A tqdm bar per epoch.
    devices : sequence of jax devices, optional
        Data-parallel devices (default: all of `jax.devices()`).
    log_every : int
        Steps between progress-bar loss refreshes.

    Returns
    -------
    FitResult
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a tedepr.backends.jax Model; got {type(model).__name__}")
    epochs = _check_int(epochs, "epochs", 1)
    lr = _check_number(lr, "lr", 0.0, low_open=True)
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}; got {optimizer!r}"
        )
    factor = lr_factor(schedule, epochs)
    momentum = _check_number(momentum, "momentum", 0.0, 1.0)
    weight_decay = _check_number(weight_decay, "weight_decay", 0.0)
    batch_size = _check_int(batch_size, "batch_size", 1)
    seed = _check_int(seed, "seed", 0)
    log_every = _check_int(log_every, "log_every", 1)
    if not isinstance(resume, bool):
        raise ValueError(f"resume must be True or False; got {resume!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir (the folder holding last.npz)")
    loss_fn = _loss_fn(loss)
    train_data = _check_data(train_data, "train_data")
    if eval_data is not None:
        eval_data = _check_data(eval_data, "eval_data")

    masks = normalize_masks(params, masks)
    trainable = trainable_mask(model, params)
    tx = make_optimizer(optimizer, momentum, weight_decay, decay_mask=trainable)
    params = apply_masks(params, masks)
    opt_state = tx.init(params)
    config = {
        "epochs": epochs,
        "lr": lr,
        "optimizer": optimizer,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "schedule": schedule,
        "seed": seed,
        "batch_size": batch_size,
        "loss": loss if isinstance(loss, str) else "callable",
    }

    ckpt_path = None
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if checkpoint_dir is not None:
        ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        if resume and ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path)
            meta = ckpt["meta"]
            diffs = [
                f"{k}={meta['config'].get(k)!r} (checkpoint) vs {v!r} (this call)"
                for k, v in config.items()
                if meta["config"].get(k) != v
            ]
            if diffs:
                raise ValueError(
                    f"resume=True: {ckpt_path} was written by a run with other arguments: "
                    + "; ".join(diffs)
                    + ". Use the same arguments, or another checkpoint_dir"
                )
            saved_masks = normalize_masks(params, ckpt["masks"]) if ckpt["masks"] else None
            if masks is not None and not _masks_equal(masks, saved_masks):
                raise ValueError(f"resume=True: the masks given differ from those in {ckpt_path}")
            masks = saved_masks
            params = _restore(params, ckpt["params"], "params", ckpt_path)
            opt_state = _restore_opt(opt_state, ckpt["opt"], ckpt_path)
            history = [dict(h) for h in meta["history"]]
            start_epoch = int(meta["epoch"])
            logger.info("resumed from %s after epoch %d of %d", ckpt_path, start_epoch, epochs)
        elif resume:
            logger.info("resume=True but %s does not exist yet: starting afresh", ckpt_path)
        elif ckpt_path.exists():
            logger.warning("%s exists; resume=False starts afresh and overwrites it", ckpt_path)

    placement = _Placement(devices)
    params, opt_state = placement.params(params), placement.params(opt_state)
    dev_masks = placement.params(masks)
    repl = placement.replicated
    step = jax.jit(
        make_train_step(model, tx, trainable, loss=loss_fn), out_shardings=(repl, repl, repl, repl)
    )
    eval_step = jax.jit(_eval_step(model, loss_fn), out_shardings=repl)
    dtype = _float_dtype(params)
    total = _num_batches(train_data, batch_size)
    width = model.output_width(params, dtype=dtype)

    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        epoch_lr = lr * factor(epoch)
        lr_arr = jax.device_put(np.asarray(epoch_lr, dtype=np.dtype(dtype)), repl)
        loss_sum = jnp.zeros((), dtype)  # the params' precision (float64 when they are)
        correct = jnp.zeros((), jnp.int32)
        count = 0
        bar = tqdm(
            total=total,
            desc=f"epoch {epoch + 1}/{epochs}",
            leave=False,
            dynamic_ncols=True,
            disable=True if not progress else None,
        )
        try:
            for k, (x, y) in enumerate(
                _batches(train_data, batch_size, True, seed, epoch, "train_data")
            ):
                if len(y) == 0:
                    continue
                check_batch(x, y, name="train_data", index=k, num_classes=width)
                xb, yb = placement.batch(x, y, dtype)
                params, opt_state, value, c = step(params, opt_state, dev_masks, xb, yb, lr_arr)
                loss_sum = loss_sum + value.astype(dtype) * len(y)
                correct = correct + c.astype(jnp.int32)
                count += len(y)
                bar.update()
                if (k + 1) % log_every == 0:
                    bar.set_postfix(loss=f"{float(loss_sum) / count:.4f}", refresh=False)
        finally:
            bar.close()
        if count == 0:
            raise ValueError("train_data yielded no samples")
        train_loss, train_acc = float(loss_sum) / count, int(correct) / count
        eval_loss = eval_acc = None
        if eval_data is not None:
            eval_loss, eval_acc = _evaluate(
                model,
                params,
                dev_masks,
                eval_data,
                max(batch_size, 512),
                loss_fn,
                placement,
                eval_step,
            )
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
            meta = {
                "format": _CHECKPOINT_FORMAT,
                "epoch": epoch + 1,
                "history": history,
                "config": config,
                "rng": {"seed": seed, "batch_order": "tedepr.datasets.batch_indices(seed, epoch)"},
            }
            _save_checkpoint(ckpt_path, params, opt_state, masks, meta)
            atomic_write_json(ckpt_path.parent / "history.json", history)
    return FitResult(
        params=params,
        history=[dict(h) for h in history],
        start_epoch=start_epoch,
        opt_state=opt_state,
        masks=masks,
    )
