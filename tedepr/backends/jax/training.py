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

Epochs, schedules, logging, history, checkpoint files, resume and the handling of non-finite steps
are `tedepr.training`'s, shared with the torch backend; this module supplies the jitted step, the
optax optimizer, placement on devices and the (de)serialisation of params and optimizer state.

Resume
    Every epoch ends with an atomic, checksummed checkpoint ``checkpoint_dir/last.npz`` (params,
    optimizer state, masks, epoch, history, configuration, RNG seed; the previous one kept as
    ``last.prev.npz``) and ``history.json``. The file is a NumPy ``.npz`` (no pickle), not an
    orbax checkpoint: orbax restores a damaged file without an error, the SHA-256 digest file
    does not (docs/architecture.md, "Why these libraries"). Training is deterministic
    — the batch order depends only on ``(seed, epoch)``, and the dropout key of a model's stacked
    recurrent layers (the only other random draw) only on ``(seed, epoch, batch)`` — so a
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

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ... import training as core
from ...checkpoint import read_checkpoint_bytes
from ...datasets import batch_indices
from ...training import LOSSES, OPTIMIZERS, SCHEDULES, FitResult, Step, lr_factor  # noqa: F401 (core.BACKEND_NAMES)
from ...validation import check_batch
from .layers import BatchNorm
from .masking import apply_masks, flatten_masks, leaf_paths, normalize_masks
from .models import Model
from .nnx_detect import is_nnx_module, nnx_entry

__all__ = [*core.BACKEND_NAMES, "make_optimizer", "make_train_step", "lr_factor", "trainable_mask"]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.npz"
_CHECKPOINT_FORMAT = "tedepr.jax.fit/1"


# ------------------------------------------------------------------------------------------ pieces
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
    checked = _checked_train_step(model, tx, trainable, _loss_fn(loss))

    def step(params, opt_state, masks, x, y, lr):
        return checked(params, opt_state, masks, x, y, lr)[:4]

    return step


def _checked_train_step(model: Model, tx: optax.GradientTransformation, trainable, loss_fn):
    """`make_train_step`'s step that also returns whether the loss and all gradients are finite."""

    def step(params, opt_state, masks, x, y, lr, key=None):
        # key: the batch's PRNG key for layers with dropout (None: a deterministic forward)
        def objective(p):
            logits, stats = model.apply_train(p, x, masks, key=key)
            return loss_fn(logits, y), (logits, stats)

        (value, (logits, stats)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        grads = _project(grads, masks, trainable)
        finite = jnp.stack(
            [jnp.all(jnp.isfinite(value))]
            + [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]
        ).all()
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = _project(updates, masks, trainable)
        params = jax.tree.map(lambda p, u: p - jnp.asarray(lr, p.dtype) * u, params, updates)
        params = _merge_stats(params, stats)
        correct = jnp.sum(jnp.argmax(logits, axis=-1) == y)
        return params, opt_state, value, correct, finite

    return step


# ------------------------------------------------------------------------------------------ data
def _float_dtype(params):
    for leaf in jax.tree.leaves(params):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.dtype
    return jnp.float32


def _check_data(data, name: str, finite: bool = True):
    """``(x, y)`` arrays as NumPy arrays (checked), or a re-iterable of batches as it is."""
    if core.is_array_pair(data):
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
        # finite=False: fit(on_nonfinite="skip") skips and counts such batches instead
        check_batch(x, y, name=name, finite=finite)
        return x, y
    core.check_reiterable(data, name)
    return data


def _batches(data, batch_size: int, shuffle: bool, seed: int, epoch: int, name: str):
    """``(x, y, indices)`` per non-empty batch; ``indices``: the samples' positions in ``(x, y)``
    arrays (None for a collection of batches)."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        x, y = data
        for idx in batch_indices(len(y), batch_size, shuffle=shuffle, seed=seed, epoch=epoch):
            if len(idx):
                yield x[idx], y[idx], idx
        return
    for item in data:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"{name} must yield (x, y) pairs; got {type(item).__name__}")
        x, y = np.asarray(item[0]), np.asarray(item[1])
        if not np.issubdtype(x.dtype, np.floating) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"{name}: batches need floating x and integer labels y; got {x.dtype}, {y.dtype}"
            )
        if len(y):
            yield x, y, None


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


def _evaluate_sums(params, masks, data, batch_size, placement, jitted, name) -> list[float]:
    """``[Σ loss·n, Σ correct, Σ n]`` over ``data``."""
    dtype = _float_dtype(params)
    loss_sum, correct, count = 0.0, 0, 0
    for x, y, _ in _batches(data, batch_size, False, 0, 0, name):
        xb, yb = placement.batch(x, y, dtype)
        l_sum, c = jitted(params, masks, xb, yb)
        loss_sum += float(l_sum)
        correct += int(c)
        count += len(y)
    return [loss_sum, float(correct), float(count)]


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
    loss_sum, correct, count = _evaluate_sums(
        placement.params(params),
        placement.params(masks),
        data,
        batch_size,
        placement,
        jitted,
        "data",
    )
    if count == 0:
        raise ValueError("data yielded no samples")
    return loss_sum / count, correct / count


# ------------------------------------------------------------------------------------------
# checkpoints
def _checkpoint_bytes(params, opt_state, masks, meta: dict) -> bytes:
    arrays = {}
    for p, leaf in zip(leaf_paths(params), jax.tree.leaves(params), strict=True):
        arrays[f"params/{p}"] = np.asarray(leaf)
    for k, leaf in enumerate(jax.tree.leaves(opt_state)):
        arrays[f"opt/{k}"] = np.asarray(leaf)
    for p, m in flatten_masks(masks).items():
        arrays[f"masks/{p}"] = np.asarray(m)
    arrays["meta"] = np.array(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _parse_checkpoint(data: bytes, path) -> dict[str, Any]:
    out: dict[str, Any] = {"params": {}, "opt": {}, "masks": {}}
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        for key in npz.files:
            if key == "meta":
                out["meta"] = json.loads(str(npz[key]))
                continue
            kind, _, rest = key.partition("/")
            if kind not in out:
                raise ValueError(f"{path} holds an unknown entry {key!r}")
            out[kind][rest] = npz[key]
    if out.get("meta", {}).get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a tedepr JAX fit checkpoint (format {_CHECKPOINT_FORMAT!r})"
        )
    out["opt"] = [out["opt"][str(k)] for k in range(len(out["opt"]))]
    return out


def load_checkpoint(path) -> dict[str, Any]:
    """Read a `fit` checkpoint: ``{"params": {path: array}, "opt": [arrays], "masks": {path: array},
    "meta": dict}`` (NumPy arrays; no pickle is ever loaded).

    The file is verified against its SHA-256 digest file (``last.npz.sha256``) when there is one;
    a truncated or corrupted file raises `tedepr.checkpoint.CheckpointError`."""
    return _parse_checkpoint(read_checkpoint_bytes(path), path)


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
def _devices(device, devices, distributed):
    if distributed:
        raise ValueError(
            "distributed=True: the JAX backend runs in one process (no jax.distributed "
            "multi-controller training); it trains data-parallel over devices=..."
        )
    if device is not None:
        if not isinstance(device, jax.Device):
            raise TypeError(f"device must be a jax.Device or None; got {type(device).__name__}")
        return [device]
    if devices is not None:
        if isinstance(devices, (str, jax.Device)) or not hasattr(devices, "__iter__"):
            raise TypeError(
                f"devices must be a sequence of jax devices; got {type(devices).__name__} "
                "(pass one device as device=)"
            )
        devices = list(devices)
        bad = [d for d in devices if not isinstance(d, jax.Device)]
        if bad:
            raise TypeError(f"devices must hold jax devices; got {type(bad[0]).__name__}")
    return devices


class _JaxSession:
    """The JAX half of one `fit` call (`tedepr.training.TrainingBackend`); single process."""

    logger = logger
    checkpoint_name = CHECKPOINT_NAME
    checkpoint_format = _CHECKPOINT_FORMAT
    rank, world = 0, 1

    def __init__(
        self,
        model,
        params,
        opt_state,
        masks,
        tx,
        trainable,
        loss_fn,
        train,
        eval_data,
        cfg,
        placement,
    ):
        self.model = model
        self.params, self.opt_state, self.masks = params, opt_state, masks
        self.train, self.eval_data, self.cfg, self.placement = train, eval_data, cfg, placement
        self.template = (params, opt_state)
        repl = placement.replicated
        self.step = jax.jit(
            _checked_train_step(model, tx, trainable, loss_fn),
            out_shardings=(repl, repl, repl, repl, repl),
        )
        self.eval_step = jax.jit(_eval_step(model, loss_fn), out_shardings=repl)
        self.dtype = _float_dtype(params)
        self._lr = (None, None)
        # layers with dropout get a key per batch, from (seed, epoch, batch): resumable
        self.stochastic = any(getattr(lay, "stochastic", False) for lay in model.layers.values())

    def _place(self):
        self.params = self.placement.params(self.params)
        self.opt_state = self.placement.params(self.opt_state)
        self.dev_masks = self.placement.params(self.masks)

    def num_batches(self):
        if isinstance(self.train, tuple):
            return -(-len(self.train[1]) // self.cfg.batch_size)
        return len(self.train) if hasattr(self.train, "__len__") else None

    _width = None

    def train_batches(self, epoch):
        if self._width is None:
            self._width = self.model.output_width(self.params, dtype=self.dtype) or 0
        arrays = isinstance(self.train, tuple)  # checked whole at the door
        for k, (x, y, idx) in enumerate(
            _batches(self.train, self.cfg.batch_size, True, self.cfg.seed, epoch, "train_data")
        ):
            check_batch(
                x,
                y,
                name="train_data",
                index=None if arrays else k,
                num_classes=self._width or None,
                finite=False,  # the non-finite event's job
            )
            xb, yb = self.placement.batch(x, y, self.dtype)
            yield x, idx, xb, yb, (epoch, k)

    def _dropout_key(self, epoch: int, k: int):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.cfg.seed), epoch), k)
        return jax.device_put(key, self.placement.replicated)

    def train_step(self, batch, lr):
        _, _, xb, yb, (epoch, k) = batch
        if self._lr[0] != lr:
            value = np.asarray(lr, dtype=np.dtype(self.dtype))
            self._lr = (lr, jax.device_put(value, self.placement.replicated))
        key = self._dropout_key(epoch, k) if self.stochastic else None
        params, opt_state, value, correct, finite = self.step(
            self.params, self.opt_state, self.dev_masks, xb, yb, self._lr[1], key
        )
        finite = bool(finite)
        if finite:  # a non-finite step is dropped: the last good params stay
            self.params, self.opt_state = params, opt_state
        return Step(float(value), int(correct), int(yb.shape[0]), finite)

    def nonfinite_sample(self, batch):
        x, idx = batch[0], batch[1]
        x = np.asarray(x)
        bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
        if not bad.any():
            return None
        i = int(np.flatnonzero(bad)[0])
        return i, None if idx is None else int(idx[i])

    def reduce(self, values):
        return list(values)

    def any_rank(self, flag):
        return bool(flag)

    def share(self, obj):
        return obj

    def evaluate(self):
        return _evaluate_sums(
            self.params,
            self.dev_masks,
            self.eval_data,
            max(self.cfg.batch_size, 512),
            self.placement,
            self.eval_step,
            "eval_data",
        )

    def weights_finite(self):
        return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(self.params))

    def snapshot(self, meta):
        meta = {
            **meta,
            "rng": {
                "seed": self.cfg.seed,
                "batch_order": "tedepr.datasets.batch_indices(seed, epoch)",
            },
        }
        return _checkpoint_bytes(self.params, self.opt_state, self.masks, meta)

    def parse_checkpoint(self, data, path):
        ckpt = _parse_checkpoint(data, path)
        return ckpt["meta"], ckpt

    def restore(self, ckpt, path):
        params, opt_state = self.template
        saved_masks = normalize_masks(params, ckpt["masks"]) if ckpt["masks"] else None
        if self.masks is not None and not _masks_equal(self.masks, saved_masks):
            raise ValueError(f"resume=True: the masks given differ from those in {path}")
        self.masks = saved_masks
        self.params = _restore(params, ckpt["params"], "params", path)
        self.opt_state = _restore_opt(opt_state, ckpt["opt"], path)
        self._place()

    def start_fresh(self):
        self._place()


@core.fit_signature
def fit(model: Model, params, train_data, **options) -> FitResult:
    """Train ``model`` from ``params`` for ``epochs`` epochs; checkpoint every epoch; resume
    exactly.

    The keyword-only arguments are every backend's (`tedepr.training.fit_signature`; their rules:
    `tedepr.training.check_fit_args`); here is what the JAX-specific ones mean.

    Parameters
    ----------
    model : Model
    params : the model's params (not modified; `FitResult.params` holds the trained ones).
    train_data : ``(x, y)`` arrays (``x`` floating ``(N, ...)``, ``y`` integer ``(N,)``), batched by
        `tedepr.datasets.batch_indices` with ``batch_size``, shuffled by ``(seed, epoch)``; or a
        re-iterable of ``(x, y)`` batches used in its own order.
    masks : flat ``{path: bool array}`` or nested masks (`tedepr.backends.jax.masking`), optional.
    device : jax.Device, optional
        Train on this one device.
    devices : sequence of jax devices, optional
        Data-parallel devices (default: all of `jax.devices()`).
    distributed : None or False
        Multi-process training is the torch backend's (DDP); ``True`` raises here.
    checkpoint_dir : path, optional
        Holds ``last.npz``, ``last.npz.sha256``, ``last.prev.npz`` and ``history.json``; on resume
        the checkpoint's params, optimizer state and masks replace the arguments'.

    Returns
    -------
    FitResult
        ``params``, ``history``, ``start_epoch``, ``opt_state``, ``masks``, ``skipped_batches``.
    """
    if is_nnx_module(model):  # a Flax NNX model: bridged (tedepr.backends.jax.nnx)
        return nnx_entry("fit")(model, params, train_data, **options)
    if not isinstance(model, Model):
        raise TypeError(f"model must be a tedepr.backends.jax Model; got {type(model).__name__}")
    cfg = core.check_fit_args(**core.fit_arguments(options))
    masks, eval_data = options["masks"], options["eval_data"]
    loss_fn = _loss_fn(cfg.loss)
    # NaN/inf data is fit's non-finite event (NonFiniteError naming epoch, step and sample, or a
    # skipped batch with on_nonfinite="skip"), not a door check
    train_data = _check_data(train_data, "train_data", finite=False)
    if eval_data is not None:
        eval_data = _check_data(eval_data, "eval_data")
    placement = _Placement(_devices(options["device"], options["devices"], cfg.distributed))

    masks = normalize_masks(params, masks)
    trainable = trainable_mask(model, params)
    tx = make_optimizer(cfg.optimizer, cfg.momentum, cfg.weight_decay, decay_mask=trainable)
    params = apply_masks(params, masks)
    session = _JaxSession(
        model,
        params,
        tx.init(params),
        masks,
        tx,
        trainable,
        loss_fn,
        train_data,
        eval_data,
        cfg,
        placement,
    )
    history, start_epoch, skipped = core.run_fit(session, cfg, has_eval=eval_data is not None)
    return FitResult(
        history=history,
        model=model,
        params=session.params,
        start_epoch=start_epoch,
        opt_state=session.opt_state,
        masks=session.masks,
        skipped_batches=skipped,
    )
