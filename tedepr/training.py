"""The training loop, written once for every backend: validation, epochs, schedules, logging,
history, checkpoints, resume, and non-finite steps as errors (imports neither torch nor jax).

``tedepr.backends.torch.fit`` and ``tedepr.backends.jax.fit`` validate their arguments with
`check_fit_args` (one set of rules) and hand `run_fit` a *session*: a small object
(`TrainingBackend`) that knows its framework — the optimizer step, RNG handling, device placement,
data parallelism and the (de)serialisation of its state. Everything else happens here, identically
for both:

Epochs and schedules
    The learning rate of epoch ``e`` (0-based) is ``lr · lr_factor(schedule, epochs)(e)``, in
    closed form, so a resumed run cannot drift: cosine ``½(1+cos(π e/epochs))``, step ×0.1 at 50%
    and again at 75% of the epochs, or constant.

History, logging, progress
    One dict per epoch (``epoch``, ``train_loss``, ``train_acc``, ``eval_loss``, ``eval_acc``,
    ``lr``, ``seconds``, and ``skipped`` with ``on_nonfinite="skip"``); an INFO log line per
    epoch, a DEBUG line every ``log_every`` steps, a tqdm bar per epoch (rank 0 only).

Checkpoints and resume
    After every epoch the session serialises its state with the metadata (format, epoch, history,
    configuration) and `tedepr.checkpoint.save_checkpoint_bytes` writes it atomically with a
    SHA-256 digest, keeping the previous checkpoint. ``resume=True`` loads the newest checkpoint
    that verifies (a damaged one is reported and skipped), refuses one written with other training
    arguments, and continues exactly where it stopped.

Non-finite training
    Every step reports whether its loss and gradients were finite; the update of a non-finite step
    is never applied. With ``on_nonfinite="raise"`` (default) `fit` stops with `NonFiniteError`,
    naming the epoch, the step and the likely cause — found by checking the offending batch: data
    with NaN/inf (and where), or, when the data are finite, a diverging loss (lower the learning
    rate). The last checkpoint on disk is the last good epoch's. With ``on_nonfinite="skip"`` the
    bad batches are skipped, counted per epoch (``history[i]["skipped"]``) and in
    `FitResult.skipped_batches`. Weights that become non-finite at the end of an epoch always raise.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from .checkpoint import (
    atomic_write_json,
    load_latest_checkpoint,
    save_checkpoint_bytes,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "LOSSES",
    "ON_NONFINITE",
    "ArgumentTypeError",
    "BACKEND_NAMES",
    "FitConfig",
    "FitResult",
    "NonFiniteError",
    "Step",
    "TrainingBackend",
    "check_fit_args",
    "check_reiterable",
    "fit_arguments",
    "fit_signature",
    "is_array_pair",
    "lr_factor",
    "run_fit",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")
LOSSES = ("cross_entropy",)
ON_NONFINITE = ("raise", "skip")


class NonFiniteError(FloatingPointError, ValueError):
    """Training produced a non-finite loss, gradient or weight (also a ``ValueError``: NaN/inf data
    is bad input, reported here with the epoch, step and sample).

    Attributes
    ----------
    epoch, step : int
        1-based epoch and step (within the epoch) where it happened; ``step`` is None when the
        weights were found non-finite at the end of the epoch.
    cause : ``"data"`` or ``"diverged"``
        ``"data"`` when the offending batch itself holds NaN/inf, else ``"diverged"``.
    index : int or None
        With ``cause="data"``: the position in the batch of the first sample holding NaN/inf.
    sample : int or None
        That sample's index in the data set, when the batches come from arrays.
    """

    def __init__(
        self,
        message: str,
        *,
        epoch: int,
        step: int | None,
        cause: str,
        index: int | None = None,
        sample: int | None = None,
    ):
        super().__init__(message)
        self.epoch, self.step, self.cause = epoch, step, cause
        self.index, self.sample = index, sample


@dataclass
class FitResult:
    """What both backends' `fit` return.

    Attributes
    ----------
    history : list of dict
        One dict per completed epoch (those restored from a checkpoint included), with keys
        ``epoch`` (1-based), ``train_loss``, ``train_acc`` (running over the epoch, train mode),
        ``eval_loss``, ``eval_acc`` (``None`` without ``eval_data``), ``lr`` (the learning rate of
        that epoch), ``seconds`` (its wall time) and, with ``on_nonfinite="skip"``, ``skipped``
        (batches skipped as non-finite).
    model
        The trained model. torch: the very ``nn.Module`` passed to `fit` (trained in place, never
        the DDP wrapper); JAX: the `Model` passed in.
    params
        JAX: the trained params (pruned entries exactly 0); torch: None (the model holds them).
    start_epoch : int
        Epochs already completed when this call began (non-zero only when resumed).
    opt_state
        JAX: the final optax state; torch: None (see the checkpoint for the optimizer state).
    masks
        JAX: the masks in force (full nested form, or None); torch: None (they live in the model).
    skipped_batches : int
        Batches skipped as non-finite over all epochs (``on_nonfinite="skip"``; else 0).
    """

    history: list[dict[str, Any]]
    model: Any = None
    params: Any = None
    start_epoch: int = 0
    opt_state: Any = None
    masks: Any = None
    skipped_batches: int = 0


class Step(NamedTuple):
    """One training step's outcome on this rank: mean ``loss`` over ``count`` samples, ``correct``
    predictions, and whether the loss and every gradient were finite (agreed over ranks)."""

    loss: float
    correct: int
    count: int
    finite: bool


class TrainingBackend(Protocol):
    """What a backend's training session provides to `run_fit` (one object per `fit` call).

    A step whose ``finite`` is False must leave the weights and optimizer state as they were.
    ``snapshot`` and ``reduce``/``any_rank``/``share`` are collective under data parallelism (every
    rank calls them in the same order); only rank 0 writes files.
    """

    logger: logging.Logger
    checkpoint_name: str  # file name in checkpoint_dir, e.g. "last.pt"
    checkpoint_format: str  # the format tag stored in the metadata
    rank: int
    world: int

    def num_batches(self) -> int | None: ...

    def train_batches(self, epoch: int) -> Iterable[Any]: ...

    def train_step(self, batch: Any, lr: float) -> Step: ...

    def nonfinite_sample(self, batch: Any) -> tuple[int, int | None] | None:
        """``(position in batch, index in the data set or None)`` of the first sample holding
        NaN/inf in this rank's share of ``batch``; None when it is all finite."""
        ...

    def reduce(self, values: list[float]) -> list[float]: ...

    def any_rank(self, flag: bool) -> bool: ...

    def share(self, obj: Any) -> Any: ...

    def evaluate(self) -> list[float]:
        """``[Σ loss·n, Σ correct, Σ n]`` over this rank's share of the evaluation data."""
        ...

    def weights_finite(self) -> bool: ...

    def snapshot(self, meta: dict[str, Any]) -> bytes | None: ...

    def parse_checkpoint(self, data: bytes, path: Path) -> tuple[dict[str, Any], Any]:
        """``(meta, state)`` from a checkpoint's bytes; meta has epoch, history and config."""
        ...

    def restore(self, state: Any, path: Path) -> None: ...

    def start_fresh(self) -> None: ...


# ------------------------------------------------------------------------------- validation
class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type. A TypeError, and also a ValueError because `fit` raised
    ValueError for these before (callers catching that keep working)."""


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{name} must be an int >= {minimum}; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def _check_number(
    value, name: str, low: float, high: float = math.inf, *, low_open=False, high_open=True
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a real number; got {type(value).__name__}")
    ok = math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}; got {value!r}")
    return float(value)


def _check_choice(value, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return value


@dataclass(frozen=True)
class FitConfig:
    """`fit`'s training arguments, validated (`check_fit_args`)."""

    epochs: int
    lr: float
    optimizer: str
    momentum: float
    weight_decay: float
    schedule: str
    batch_size: int
    loss: str | Callable
    checkpoint_dir: Path | None
    resume: bool
    seed: int
    progress: bool
    log_every: int
    on_nonfinite: str
    distributed: bool | None

    def checkpoint_config(self, **extra: Any) -> dict[str, Any]:
        """The arguments a resumed run must share with the run that wrote the checkpoint."""
        return {
            "epochs": self.epochs,
            "lr": self.lr,
            "optimizer": self.optimizer,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "schedule": self.schedule,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "loss": self.loss if isinstance(self.loss, str) else "callable",
            **extra,
        }


def check_fit_args(
    *,
    epochs,
    lr,
    optimizer,
    momentum,
    weight_decay,
    schedule,
    batch_size,
    loss,
    checkpoint_dir,
    resume,
    seed,
    progress,
    log_every,
    on_nonfinite,
    device=None,
    devices=None,
    distributed=None,
) -> FitConfig:
    """Validate `fit`'s backend-neutral arguments (the same rules for every backend).

    Both backends' `fit` take these keyword-only arguments, with the same defaults:

    epochs : int >= 1
    lr : float > 0
        Peak learning rate.
    optimizer : ``"sgd"`` (default), ``"adam"`` or ``"adamw"``
        SGD uses ``momentum``; Adam and AdamW use ``betas=(momentum, 0.999)``.
    momentum : float in [0, 1), default 0.9
    weight_decay : float >= 0, default 5e-4
        L2 penalty for ``"sgd"``/``"adam"``, decoupled decay for ``"adamw"``.
    schedule : ``"cosine"`` (default), ``"step"`` or ``"constant"`` (`lr_factor`)
        Changes once per epoch.
    eval_data : optional, the same kinds as the training data; evaluated after every epoch
        (arrays in batches of ``max(batch_size, 512)``).
    batch_size : int >= 1, default 128
        Batches ``(x, y)`` arrays (in the order of `tedepr.datasets.batch_indices` with
        ``(seed, epoch)``); loaders and collections of batches keep their own.
    loss : ``"cross_entropy"`` or a callable ``(logits, labels) -> mean loss``.
    device, devices, distributed
        Placement (backend-specific; give ``device`` or ``devices``, not both).
    checkpoint_dir : path, optional
        Where the checkpoint (with its ``.sha256`` digest file and the previous checkpoint
        ``*.prev.*``) and a readable ``history.json`` are atomically rewritten after every epoch.
    resume : bool
        Continue from the newest good checkpoint in ``checkpoint_dir`` if there is one (a fresh
        start if not; a damaged one is reported and the previous one used). Its training
        arguments must match this call's; its weights replace the given ones.
    seed : int >= 0
        Seeds the order of array batches (and, in torch, the global RNGs for the run).
    progress : bool
        A tqdm bar per epoch (tqdm hides it when stderr is not a terminal).
    log_every : int >= 1
        Steps between progress-bar refreshes and DEBUG log lines of the running loss.
    on_nonfinite : ``"raise"`` (default) or ``"skip"``
        What a step with a non-finite loss or gradient does (its update is never applied):
        raise `NonFiniteError`, naming the epoch, step and likely cause, or skip the batch
        (counted in ``history[i]["skipped"]`` and `FitResult.skipped_batches`).

    Raises TypeError for a wrong type and ValueError for a wrong value, naming the argument.
    """
    epochs = _check_int(epochs, "epochs", 1)
    lr = _check_number(lr, "lr", 0.0, low_open=True)
    optimizer = _check_choice(optimizer, "optimizer", OPTIMIZERS)
    schedule = _check_choice(schedule, "schedule", SCHEDULES)
    # momentum is SGD's momentum and Adam's beta1: both must be < 1 to forget old gradients
    momentum = _check_number(momentum, "momentum", 0.0, 1.0)
    weight_decay = _check_number(weight_decay, "weight_decay", 0.0)
    batch_size = _check_int(batch_size, "batch_size", 1)
    seed = _check_int(seed, "seed", 0)
    log_every = _check_int(log_every, "log_every", 1)
    progress = _check_bool(progress, "progress")
    resume = _check_bool(resume, "resume")
    if not callable(loss) and loss not in LOSSES:
        raise ValueError(
            f"loss must be one of {', '.join(map(repr, LOSSES))} or a callable (logits, labels) "
            f"-> mean loss; got {loss!r}"
        )
    on_nonfinite = _check_choice(on_nonfinite, "on_nonfinite", ON_NONFINITE)
    if checkpoint_dir is not None:
        if not isinstance(checkpoint_dir, (str, Path)) and not hasattr(
            checkpoint_dir, "__fspath__"
        ):
            raise TypeError(
                f"checkpoint_dir must be a path (str or os.PathLike) or None; got "
                f"{type(checkpoint_dir).__name__}"
            )
        checkpoint_dir = Path(checkpoint_dir)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir (the folder holding the checkpoint)")
    if device is not None and devices is not None:
        raise ValueError(
            "give device (one device) or devices (the data-parallel devices), not both"
        )
    if distributed is not None and not isinstance(distributed, bool):
        raise ValueError(
            f"distributed must be None (auto-detect), True or False; got {distributed!r}"
        )
    return FitConfig(
        epochs=epochs,
        lr=lr,
        optimizer=optimizer,
        momentum=momentum,
        weight_decay=weight_decay,
        schedule=schedule,
        batch_size=batch_size,
        loss=loss,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        seed=seed,
        progress=progress,
        log_every=log_every,
        on_nonfinite=on_nonfinite,
        distributed=distributed,
    )


def fit_arguments(call_locals: dict[str, Any]) -> dict[str, Any]:
    """The `check_fit_args` arguments out of a backend `fit`'s ``locals()`` (taken first thing)."""
    return {k: call_locals[k] for k in _FIT_ARGUMENTS}


def is_array_pair(data) -> bool:
    """True for ``(x, y)``: a tuple of two arrays (anything with ``.shape``), to be batched by
    `fit` with ``batch_size``; False for a loader or a collection of batches."""
    return (
        isinstance(data, tuple)
        and len(data) == 2
        and hasattr(data[0], "shape")
        and hasattr(data[1], "shape")
    )


def check_reiterable(data, name: str) -> None:
    """``data`` must be iterable again for every epoch (a loader, a list of batches, ...)."""
    if not isinstance(data, Iterable):
        raise TypeError(
            f"{name} must be (x, y) arrays, a loader or a re-iterable of (x, y) batches; "
            f"got {type(data).__name__}"
        )
    # Checked by type, not by calling iter(): that would start a DataLoader's workers and draw
    # its base seed from the global RNG.
    if isinstance(data, Iterator):
        raise ValueError(
            f"{name} must be re-iterable (one pass per epoch), not a one-shot iterator or "
            "generator; pass (x, y) arrays, a loader or a list of batches"
        )


_FIT_ARGUMENTS = tuple(inspect.signature(check_fit_args).parameters)


#: The names every backend's training module provides (the one public surface of training).
BACKEND_NAMES = (
    "OPTIMIZERS",
    "SCHEDULES",
    "LOSSES",
    "CHECKPOINT_NAME",
    "FitResult",
    "fit",
    "evaluate",
    "load_checkpoint",
)


def _fit_keywords(
    *,
    masks: Any = None,
    epochs: int,
    lr: float = 0.1,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    eval_data: Any = None,
    batch_size: int = 128,
    loss: str | Callable = "cross_entropy",
    device: Any = None,
    devices: Any = None,
    distributed: bool | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
    progress: bool = True,
    log_every: int = 50,
    on_nonfinite: str = "raise",
) -> None:
    """The keyword-only arguments of every backend's `fit`, with their defaults (written once)."""


_FIT_KEYWORDS = tuple(inspect.signature(_fit_keywords).parameters.values())


def fit_signature(fit: Callable[..., FitResult]) -> Callable[..., FitResult]:
    """Give a backend's ``fit(model, ..., train_data, **options)`` the shared keyword-only
    arguments (those of `check_fit_args` plus ``masks``, ``eval_data`` and the placement).

    `inspect.signature` of the result shows them with their defaults; a call is bound against
    them (an unknown, repeated or missing argument is a TypeError naming ``fit``), and the
    wrapped function receives every keyword, defaults filled in, in ``options``."""
    own = [p for p in inspect.signature(fit).parameters.values() if p.kind is not p.VAR_KEYWORD]
    signature = inspect.signature(fit).replace(parameters=[*own, *_FIT_KEYWORDS])

    @functools.wraps(fit)
    def bound_fit(*args: Any, **kwargs: Any) -> FitResult:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"fit(): {exc}") from None
        bound.apply_defaults()
        return fit(*bound.args, **bound.kwargs)

    bound_fit.__signature__ = signature  # type: ignore[attr-defined]
    return bound_fit


def lr_factor(schedule: str, epochs: int) -> Callable[[int], float]:
    """The learning-rate multiplier of epoch ``e`` (0-based), in closed form: a resume cannot
    drift."""
    _check_choice(schedule, "schedule", SCHEDULES)
    epochs = _check_int(epochs, "epochs", 1)
    if schedule == "cosine":
        return lambda e: 0.5 * (1.0 + math.cos(math.pi * e / epochs))
    if schedule == "step":
        milestones = sorted({m for m in (epochs // 2, (3 * epochs) // 4) if m > 0})
        return lambda e: 0.1 ** sum(e >= m for m in milestones)
    return lambda e: 1.0


# ------------------------------------------------------------------------------- the loop
def _check_resume_config(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
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


def _read_for_resume(session: TrainingBackend, path: Path) -> tuple[Path, dict, Any] | None:
    """Rank 0 finds the newest good checkpoint; every rank receives it (no shared disk needed)."""
    found = error = None
    if session.rank == 0:
        try:
            found = load_latest_checkpoint(path, session.parse_checkpoint)
        except Exception as exc:  # noqa: BLE001 (re-raised on every rank below)
            error = exc
        if found is None and error is None:
            session.logger.info("resume=True but %s does not exist yet: starting afresh", path)
    if session.world > 1:
        found, error = session.share((found, error))
    if error is not None:
        raise error
    if found is None:
        return None
    file, (meta, state) = found
    return file, meta, state


def _nonfinite_error(
    session: TrainingBackend,
    batch,
    *,
    epoch: int,
    epochs: int,
    step: int,
    cfg: FitConfig,
    epoch_lr: float,
    last_good: str,
) -> NonFiniteError:
    bad = session.nonfinite_sample(batch)
    elsewhere = session.any_rank(bad is not None) if session.world > 1 else bad is not None
    where = f"non-finite loss or gradient in epoch {epoch + 1}/{epochs}, step {step + 1}"
    if bad is not None:
        index, sample = bad
        cause = f"the batch contains NaN/inf at index {index}"
        if sample is not None:
            cause += f" (sample {sample} of train_data)"
        cause += "; clean the data, or pass on_nonfinite='skip' to skip such batches"
    elif elsewhere:
        cause = "the batch contains NaN/inf (in another rank's share); clean the data"
    else:
        cause = (
            f"the batch is finite, so the loss diverged: lower lr (was {cfg.lr:g}; "
            f"{epoch_lr:g} in this epoch)"
        )
    return NonFiniteError(
        f"{where}: {cause}. The update was not applied; {last_good}",
        epoch=epoch + 1,
        step=step + 1,
        cause="data" if bad is not None or elsewhere else "diverged",
        index=None if bad is None else bad[0],
        sample=None if bad is None else bad[1],
    )


def _train_epoch(session, cfg: FitConfig, epoch: int, epoch_lr: float, last_good: str):
    from tqdm import tqdm  # in both backends' extras; not a core dependency

    log = session.logger
    loss_sum, correct, count, skipped = 0.0, 0, 0, 0
    bar = tqdm(
        total=session.num_batches(),
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        leave=False,
        dynamic_ncols=True,
        disable=True if (not cfg.progress or session.rank != 0) else None,
    )
    try:
        for step, batch in enumerate(session.train_batches(epoch)):
            out = session.train_step(batch, epoch_lr)
            bar.update()
            if not out.finite:
                error = _nonfinite_error(
                    session,
                    batch,
                    epoch=epoch,
                    epochs=cfg.epochs,
                    step=step,
                    cfg=cfg,
                    epoch_lr=epoch_lr,
                    last_good=last_good,
                )
                if cfg.on_nonfinite == "raise":
                    raise error
                skipped += 1
                log.warning("%s (skipped: on_nonfinite='skip')", error)
                continue
            loss_sum += out.loss * out.count
            correct += out.correct
            count += out.count
            if (step + 1) % cfg.log_every == 0 and count:
                running = loss_sum / count
                bar.set_postfix(loss=f"{running:.4f}", refresh=False)
                log.debug("epoch %d step %d: running train loss %.4f", epoch + 1, step + 1, running)
    finally:
        bar.close()
    return [loss_sum, float(correct), float(count)], skipped


def _mean(sums: list[float], name: str) -> tuple[float, float]:
    loss_sum, correct, count = sums
    if count == 0:
        raise ValueError(f"{name} yielded no samples")
    return loss_sum / count, correct / count


def run_fit(
    session: TrainingBackend,
    cfg: FitConfig,
    *,
    config_extra: dict[str, Any] | None = None,
    has_eval: bool = False,
) -> tuple[list[dict[str, Any]], int, int]:
    """Run the epochs of one `fit` call; returns ``(history, start_epoch, skipped_batches)``.

    ``config_extra``: backend-specific entries of the configuration a resume must match (e.g. the
    world size). ``has_eval``: evaluate after every epoch with ``session.evaluate()``.
    """
    log = session.logger
    config = cfg.checkpoint_config(**(config_extra or {}))
    path = None if cfg.checkpoint_dir is None else cfg.checkpoint_dir / session.checkpoint_name
    if path is not None and session.rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cfg.resume and path.exists():
            log.warning("%s exists; resume=False starts afresh and overwrites it", path)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    found = _read_for_resume(session, path) if cfg.resume else None
    if found is not None:
        file, meta, state = found
        _check_resume_config(meta["config"], config, file)
        session.restore(state, file)
        history = [dict(h) for h in meta["history"]]
        start_epoch = int(meta["epoch"])
        log.info("resumed from %s after epoch %d of %d", file, start_epoch, cfg.epochs)
    else:
        session.start_fresh()
    del found

    factor = lr_factor(cfg.schedule, cfg.epochs)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        epoch_lr = cfg.lr * factor(epoch)
        if path is None:
            last_good = "no checkpoint_dir was given"
        elif epoch == 0:
            last_good = "no checkpoint was written yet"
        else:
            last_good = f"the checkpoint of epoch {epoch} in {path} is intact"
        sums, skipped = _train_epoch(session, cfg, epoch, epoch_lr, last_good)
        sums = session.reduce(sums)
        if sums[2] == 0 and skipped:
            raise NonFiniteError(
                f"every batch of epoch {epoch + 1}/{cfg.epochs} was non-finite ({skipped} "
                f"skipped); {last_good}",
                epoch=epoch + 1,
                step=None,
                cause="diverged",
            )
        train_loss, train_acc = _mean(sums, "train_data")
        if not session.weights_finite():
            raise NonFiniteError(
                f"the weights became non-finite in epoch {epoch + 1}/{cfg.epochs} although every "
                f"loss and gradient was finite: the loss diverged: lower lr (was {cfg.lr:g}; "
                f"{epoch_lr:g} in this epoch); {last_good}",
                epoch=epoch + 1,
                step=None,
                cause="diverged",
            )
        eval_loss = eval_acc = None
        if has_eval:
            eval_loss, eval_acc = _mean(session.reduce(session.evaluate()), "eval_data")
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "eval_loss": eval_loss,
            "eval_acc": eval_acc,
            "lr": epoch_lr,
            "seconds": time.perf_counter() - t0,
        }
        if cfg.on_nonfinite == "skip":
            record["skipped"] = skipped
        history.append(record)
        log.info(
            "epoch %d/%d: train loss %.4f acc %.4f%s, lr %.3g, %.1fs%s",
            epoch + 1,
            cfg.epochs,
            train_loss,
            train_acc,
            "" if eval_loss is None else f", eval loss {eval_loss:.4f} acc {eval_acc:.4f}",
            epoch_lr,
            record["seconds"],
            f", {skipped} non-finite batches skipped" if skipped else "",
        )
        if path is not None:
            meta = {
                "format": session.checkpoint_format,
                "epoch": epoch + 1,
                "history": history,
                "config": config,
            }
            data = session.snapshot(meta)
            if session.rank == 0:
                save_checkpoint_bytes(path, data)
                atomic_write_json(path.with_name("history.json"), history)
    total_skipped = sum(int(h.get("skipped", 0)) for h in history)
    return [dict(h) for h in history], start_epoch, total_skipped
