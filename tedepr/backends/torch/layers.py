"""Tensorized ``nn.Linear`` replacements: TTLinear, TRLinear, TuckerLinear, CPLinear.

Every tensorized layer stores the cores of one factorised matrix (docs/method.md §2) as direct
parameters ``core_0``, ``core_1``, ... in `tedepr.Factorized.cores` order, so masks can be attached
to any of them by name (`tedepr.backends.torch.masking`). The forward pass runs tedepr's planned
chain contraction; plans are made once per batch size and kept on the module, so a forward call
never plans.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import array_api_compat.torch as compat_torch
import numpy as np
import torch
from torch import nn

from ...contraction import STRATEGIES, ContractionPlan, plan_contraction, plan_reconstruction
from ...decompositions import decompose
from ...formats import Factorized, from_cores
from ...init import INITS, random_factorized
from ...shapes import check_format


def _check_tensor(value, module: nn.Module, argument: str = "input") -> None:
    """A `TypeError` like ``nn.Linear``'s for a non-tensor input (a NumPy array, a list)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{type(module).__name__}.forward(): argument '{argument}' must be Tensor, not "
            f"{type(value).__name__} (convert with torch.as_tensor)"
        )


__all__ = [
    "TensorizedLayer",
    "TTLinear",
    "TRLinear",
    "TuckerLinear",
    "CPLinear",
    "LINEAR_CLASSES",
    "linear_class",
    "TORCH_OPS",
]

# Plans kept per layer (one per distinct batch size seen); the oldest is dropped beyond this.
_MAX_PLANS = 32


class _TorchOps:
    """The array-API calls a `ContractionPlan` makes, bound to raw torch functions.

    ``array_api_compat.torch`` wraps each call in Python-level argument handling. Measured on the
    CPU dev box (one thread, fastest of 5x50 calls): a TT 784->300 forward (rank 8, 4 cores) took
    399 us wrapped vs 285 us raw at batch 1, a Tucker-2 one 193 us vs 87 us. Anything a plan may
    call beyond these four falls back to the compat namespace, so a new call in the core never
    breaks here.
    """

    matmul = staticmethod(torch.matmul)
    reshape = staticmethod(torch.reshape)
    permute_dims = staticmethod(torch.permute)

    @staticmethod
    def sum(x, axis=None):
        return torch.sum(x, dim=axis)

    def __getattr__(self, name):
        return getattr(compat_torch, name)


TORCH_OPS = _TorchOps()


def _torch_seed(seed):
    """A seed for tedepr's NumPy-based init; drawn from torch's generator when None.

    Drawing from torch's default generator makes ``torch.manual_seed`` reproduce the layer, as it
    does for every built-in torch layer.
    """
    if seed is None:
        return int(torch.randint(0, 2**62, (1,), dtype=torch.int64).item())
    return seed


def _spawn(seed, n: int) -> list:
    """``n`` independent NumPy generators from an int, a Generator, or None (torch's generator)."""
    if isinstance(seed, np.random.Generator):
        return seed.spawn(n)
    return [np.random.default_rng(s) for s in np.random.SeedSequence(_torch_seed(seed)).spawn(n)]


# what a tensorized Linear accepts: the planner's strategies plus the measured choice
LAYER_STRATEGIES = STRATEGIES + ("autotune",)


def _check_strategy(strategy: str, allowed: Sequence[str] = LAYER_STRATEGIES) -> str:
    if strategy not in allowed:
        raise ValueError(
            f"strategy must be one of {', '.join(map(repr, allowed))}; got {strategy!r}"
        )
    return strategy


def _resolve_d(d, in_modes, out_modes, default):
    """Number of modes: the explicit ``d``, else the length of the modes given, else ``default``."""
    if d is not None:
        return d
    for modes in (in_modes, out_modes):
        if modes is not None:
            try:
                return len(modes)
            except TypeError:
                return None  # let tedepr's check_modes report the bad argument
    return default


def resolve_weight_init(weight_init: str, init: str | None) -> str:
    """The init scheme from ``weight_init=`` (the shared name) or ``init=`` (its older spelling)."""
    name, value = ("weight_init", weight_init) if init is None else ("init", init)
    if init is not None and weight_init not in ("torch", init):
        raise ValueError(
            f"pass the init scheme once, as weight_init= (init= is its older spelling); got "
            f"weight_init={weight_init!r} and init={init!r}"
        )
    if value not in INITS:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, INITS))}; got {value!r}")
    return value


class TensorizedLayer(nn.Module):
    """Base class of the layers whose weight is one factorised matrix.

    The trainable cores are the parameters ``core_0 .. core_{n-1}`` (`Factorized.cores` order); a
    parametrization (e.g. a pruning mask) on any of them is honoured everywhere, because the layer
    only ever reads them through ``getattr``.

    Attributes
    ----------
    format : str
        ``"tt"``, ``"tr"``, ``"tucker"`` or ``"cp"``.
    decomposition_error : float or None
        Relative Frobenius error of ``from_dense``; None for a freshly initialised layer.
    """

    format: str = ""
    #: the registry ``{format: class}`` when this class is a shared base that ``format=`` picks
    #: from (`TensorizedLinear`, `TensorizedConv2d`); None on the format classes
    _FORMAT_CLASSES: dict[str, type] | None = None

    def __new__(cls, *args, format: str | None = None, **kwargs):
        # TensorizedLinear(..., format="tr") is a TRLinear (as JAX's TensorizedLinear(format=));
        # __init__ then runs on it with the same arguments and checks format against the class
        registry = cls.__dict__.get("_FORMAT_CLASSES")
        if registry is not None:
            cls = registry[check_format("tt" if format is None else format)]
        return super().__new__(cls)

    def _check_format_argument(self, format: str | None) -> None:
        """``format=`` given to a format class must be its own."""
        if format is not None and check_format(format) != self.format:
            raise ValueError(
                f"format={format!r} does not match {type(self).__name__} (format "
                f"{self.format!r}); pick the class by format with the shared base, e.g. "
                f"TensorizedLinear(..., format={format!r})"
            )

    # ------------------------------------------------------------------ construction
    def _set_factorization(self, f: Factorized, *, strategy: str, device=None, dtype=None) -> None:
        dtype = torch.get_default_dtype() if dtype is None else dtype
        self._in_modes = tuple(f.in_modes)
        self._out_modes = tuple(f.out_modes)
        self._factored = tuple(r is not None for r in f.ranks) if f.format == "tucker" else None
        self._kernel_size = f.kernel_size
        self._core_shapes = tuple(tuple(int(n) for n in c.shape) for c in f.cores)
        self._strategy = strategy
        self._plans: dict[int, ContractionPlan] = {}
        self._reconstruction: ContractionPlan | None = None
        self.decomposition_error = f.error
        for k, c in enumerate(f.cores):
            t = torch.as_tensor(c).detach().to(device=device, dtype=dtype, copy=True)
            setattr(self, f"core_{k}", nn.Parameter(t))

    def _load_cores(self, cores: Sequence[Any]) -> None:
        """Copy ``cores`` (any arrays of the right shapes) into the core parameters, in place."""
        with torch.no_grad():
            for k, c in enumerate(cores):
                p = self._original(k)
                p.copy_(torch.as_tensor(c).detach().to(device=p.device, dtype=p.dtype))

    def _original(self, k: int) -> nn.Parameter:
        """The trainable parameter behind ``core_k`` (the unmasked original when parametrized)."""
        name = f"core_{k}"
        if torch.nn.utils.parametrize.is_parametrized(self, name):
            return self.parametrizations[name].original
        return self._parameters[name]

    # ------------------------------------------------------------------ structure
    @property
    def cores(self) -> tuple[torch.Tensor, ...]:
        """The current cores, masked where a mask is attached (`Factorized.cores` order)."""
        return tuple(getattr(self, f"core_{k}") for k in range(len(self._core_shapes)))

    @property
    def in_modes(self) -> tuple[int, ...]:
        return self._in_modes

    @property
    def out_modes(self) -> tuple[int, ...]:
        return self._out_modes

    @property
    def ranks(self) -> tuple:
        return self._shape_template().ranks

    @property
    def strategy(self) -> str:
        return self._strategy

    @strategy.setter
    def strategy(self, value: str) -> None:
        """Switch the contraction strategy (e.g. to ``"autotune"`` for training); the layer
        re-plans on its next call."""
        self._strategy = _check_strategy(value)
        self._plans = {}

    def factorized(self) -> Factorized:
        """The `tedepr.Factorized` of the current (masked) cores; they stay attached to autograd."""
        return from_cores(
            self.format,
            self.cores,
            self._in_modes,
            self._out_modes,
            factored=self._factored,
            kernel_size=self._kernel_size,
        )

    def _shape_template(self) -> Factorized:
        # Meta tensors: plans depend on shapes only, so nothing is read from (or copied off) the
        # device.
        cores = [torch.empty(s, device="meta") for s in self._core_shapes]
        return from_cores(
            self.format,
            cores,
            self._in_modes,
            self._out_modes,
            factored=self._factored,
            kernel_size=self._kernel_size,
        )

    @property
    def num_params(self) -> int:
        """Number of core entries (pruned ones included)."""
        return sum(math.prod(s) for s in self._core_shapes)

    @property
    def kept_params(self) -> int:
        """Core entries left by the masks (``num_params`` when unmasked)."""
        kept = 0
        for k, shape in enumerate(self._core_shapes):
            mask = _mask_of(self, f"core_{k}")
            kept += math.prod(shape) if mask is None else int(mask.sum())
        return kept

    @property
    def dense_params(self) -> int:
        """Entries of the dense matrix this layer replaces, ``N_in * N_out``."""
        return math.prod(self._in_modes) * math.prod(self._out_modes)

    @property
    def compression(self) -> float:
        """``dense_params / kept_params``."""
        return self.dense_params / max(self.kept_params, 1)

    def _prunable_tensor_names(self) -> tuple[str, ...]:
        return tuple(f"core_{k}" for k in range(len(self._core_shapes)))

    def _describe(self) -> str:
        f = self._shape_template()
        kept, total = self.kept_params, self.num_params
        return (
            f"format={self.format!r}, in_modes={self._in_modes}, out_modes={self._out_modes}, "
            f"ranks={f.ranks}, kept={kept}/{total}, "
            f"compression={self.dense_params / max(kept, 1):.1f}x"
        )

    # ------------------------------------------------------------------ evaluation
    def _plan_key(self) -> tuple:
        return (
            self.format,
            self._in_modes,
            self._out_modes,
            self._core_shapes,
            self._factored,
            self._kernel_size,
        )

    def _plan(self, batch: int, x2: torch.Tensor | None = None) -> ContractionPlan:
        """The plan for ``batch`` rows: a dictionary lookup after the first call at that batch.

        Under ``torch.compile`` a missing plan is made at trace time (`_plan_index` is a
        constant for dynamo), so compiling a fresh layer has no graph break.
        """
        key = self._cache_key(batch, x2)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        if torch.compiler.is_compiling():
            strategy = self._strategy
            if strategy == "autotune":  # no timing while tracing: a measured winner, else auto
                strategy = _tuned_strategy(self._plan_key(), batch, x2) or "auto"
            return _PLANS[_plan_index(self._plan_key(), batch, strategy)]
        return self._make_plan(key, batch, x2)

    def _cache_key(self, batch: int, x2) -> Any:
        if self._strategy != "autotune" or x2 is None:
            return batch
        return (batch, torch.is_grad_enabled(), x2.dtype, x2.device.type)

    def _make_plan(self, key, batch: int, x2: torch.Tensor | None = None) -> ContractionPlan:
        strategy = self._strategy
        if strategy == "autotune":
            if x2 is None:
                strategy = "auto"
            else:
                strategy = _tuned_strategy(self._plan_key(), batch, x2) or self._autotune(batch, x2)
        plan = _PLANS[_plan_index(self._plan_key(), batch, strategy)]
        if len(self._plans) >= _MAX_PLANS:
            self._plans.pop(next(iter(self._plans)))
        self._plans[key] = plan
        return plan

    def _autotune(self, batch: int, x2: torch.Tensor) -> str:
        """Time every strategy on this layer's cores and a tensor like ``x2``; remember the winner.

        Forward+backward when autograd would record the call (training), forward only otherwise.
        The winner is kept per (layer shape, batch bucket, dtype, device, training) for the
        whole process, so every layer of the same shape shares one measurement.
        """
        cores = self.cores
        x = torch.randn(
            (batch,) + self._in_modes, dtype=x2.dtype, device=x2.device
        )  # never the caller's data: timing must not depend on it or keep it alive
        grad = torch.is_grad_enabled() and any(c.requires_grad for c in cores)
        sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
        times = {}
        for strategy in AUTOTUNE_CANDIDATES:
            plan = _PLANS[_plan_index(self._plan_key(), batch, strategy)]

            def run(plan=plan):
                if grad:
                    leaves = [c.detach().requires_grad_() for c in cores]
                    y = plan.execute((x,) + tuple(leaves), xp=TORCH_OPS)
                    torch.autograd.grad(y.sum(), leaves)
                else:
                    with torch.no_grad():
                        plan.execute((x,) + tuple(cores), xp=TORCH_OPS)

            run()  # warm-up (allocator, kernels)
            sync()
            best = float("inf")
            for _ in range(AUTOTUNE_REPEATS):
                t = time.perf_counter()
                run()
                sync()
                best = min(best, time.perf_counter() - t)
            times[strategy] = best
        winner = min(times, key=times.get)
        _TUNED[_tune_key(self._plan_key(), batch, x2)] = winner
        self.autotune_times = {s: 1e3 * t for s, t in times.items()}
        return winner

    def _matmul(self, x2: torch.Tensor) -> torch.Tensor:
        """``x2 @ W`` for ``x2`` of shape ``(B, N_in)``; returns ``(B, N_out)``."""
        b = x2.shape[0]
        n_out = math.prod(self._out_modes)
        if b == 0:
            return x2.new_zeros((0, n_out))
        plan = self._plan(b, x2)
        y = plan.execute((x2.reshape((b,) + self._in_modes),) + self.cores, xp=TORCH_OPS)
        return y.reshape(b, n_out)

    def dense_weight(self) -> torch.Tensor:
        """The reconstructed matrix ``W`` of shape ``(N_in, N_out)`` (differentiable)."""
        if self._reconstruction is None:
            self._reconstruction = plan_reconstruction(self._shape_template())
        w = self._reconstruction.execute(self.cores, xp=TORCH_OPS)
        return w.reshape(math.prod(self._in_modes), math.prod(self._out_modes))


# Plans shared by all layers, indexed so that torch.compile can treat a plan lookup as a constant.
_PLANS: list[ContractionPlan] = []
_PLAN_INDEX: dict[tuple, int] = {}
_MAX_SHARED_PLANS = 4096
# strategy="autotune": the measured winner per (shape, batch bucket, dtype, device, training)
_TUNED: dict[tuple, str] = {}
AUTOTUNE_CANDIDATES = ("chain", "optimal", "reconstruct")
AUTOTUNE_REPEATS = 5


@torch._dynamo.assume_constant_result
def _plan_index(key: tuple, batch: int, strategy: str) -> int:
    """Index into ``_PLANS`` of the plan for a layer shape ``key``, ``batch`` and ``strategy``."""
    k = (key, batch, strategy)
    idx = _PLAN_INDEX.get(k)
    if idx is None:
        fmt, in_modes, out_modes, shapes, factored, kernel_size = key
        cores = [torch.empty(shape, device="meta") for shape in shapes]
        f = from_cores(fmt, cores, in_modes, out_modes, factored=factored, kernel_size=kernel_size)
        if len(_PLANS) >= _MAX_SHARED_PLANS:
            # an index is only used right after it is returned (layers keep the plan objects), so
            # starting the table afresh is safe; it bounds memory under ever-new batch sizes
            _PLANS.clear()
            _PLAN_INDEX.clear()
        _PLANS.append(plan_contraction(f, batch, strategy))
        idx = _PLAN_INDEX[k] = len(_PLANS) - 1
    return idx


def batch_bucket(batch: int) -> int:
    """The autotune bucket of a batch size: the next power of two (1, 2, 4, 8, ...)."""
    return 1 << max(int(batch) - 1, 0).bit_length()


def _tune_key(key: tuple, batch: int, x2) -> tuple:
    training = torch.is_grad_enabled()
    return (key, batch_bucket(batch), x2.dtype, x2.device.type, training)


def _tuned_strategy(key: tuple, batch: int, x2) -> str | None:
    if x2 is None:
        return None
    return _TUNED.get(_tune_key(key, batch, x2))


def clear_autotune() -> None:
    """Forget every strategy measured by ``strategy="autotune"`` (layers re-measure on next use)."""
    _TUNED.clear()


def _mask_of(module: nn.Module, name: str):
    """The boolean mask attached to ``module.<name>`` by `masking.apply_masks`, or None."""
    if not torch.nn.utils.parametrize.is_parametrized(module, name):
        return None
    for p in module.parametrizations[name]:
        mask = getattr(p, "mask", None)
        if isinstance(mask, torch.Tensor):
            return mask
    return None


class _TensorizedLinear(TensorizedLayer):
    """Shared implementation of the four tensorized Linear layers (see `TTLinear`), exported as
    ``TensorizedLinear``: called itself, ``TensorizedLinear(in_features, out_features, rank, ...,
    format="tr")`` builds the class of ``format`` (default ``"tt"``), as the JAX backend's."""

    _default_d: int | None = None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank=8,
        in_modes=None,
        out_modes=None,
        bias: bool = True,
        *,
        d: int | None = None,
        weight_init: str = "torch",
        std: float | None = None,
        strategy: str = "auto",
        format: str | None = None,
        seed=None,
        device=None,
        dtype=None,
        init: str | None = None,
    ) -> None:
        super().__init__()
        self._check_format_argument(format)
        init = resolve_weight_init(weight_init, init)
        _check_strategy(strategy)
        d = _resolve_d(d, in_modes, out_modes, self._default_d)
        f = random_factorized(
            self.format,
            in_features,
            out_features,
            rank,
            std=std,
            init=init,
            seed=_torch_seed(seed),
            in_modes=in_modes,
            out_modes=out_modes,
            d=d,
        )
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self._set_factorization(f, strategy=strategy, device=device, dtype=dtype)
        if bias:
            bound = 1.0 / math.sqrt(in_features)
            self.bias = nn.Parameter(
                torch.empty(out_features, device=device, dtype=dtype or torch.get_default_dtype())
            )
            nn.init.uniform_(self.bias, -bound, bound)
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W + bias``: ``(..., in_features) -> (..., out_features)``."""
        _check_tensor(x, self)
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"input must have shape (..., {self.in_features}); got {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        y = self._matmul(x.reshape(-1, self.in_features)).reshape(lead + (self.out_features,))
        if self.bias is not None:
            y = y + self.bias
        return y

    @property
    def weight(self) -> torch.Tensor:
        """The reconstructed weight in ``nn.Linear`` layout ``(out_features, in_features)``.

        A computed tensor, not a parameter: writing into it changes nothing. It exists so code that
        reads ``layer.weight`` (e.g. torch's Transformer inference fast path) keeps working.
        """
        return self.dense_weight().T

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"{self._describe()}, bias={self.bias is not None}"
        )

    @classmethod
    def from_dense(
        cls,
        linear: nn.Linear,
        rank=8,
        rtol: float | None = None,
        *,
        in_modes=None,
        out_modes=None,
        d: int | None = None,
        strategy: str = "auto",
        **options: Any,
    ):
        """Decompose a trained ``nn.Linear`` into this format.

        The matrix ``linear.weight.T`` ``(in_features, out_features)`` is decomposed with
        `tedepr.decompose` in float64 (``rank``, ``rtol``, modes and ``**options`` as there;
        ``rank=None`` is exact for TT and Tucker). The layer keeps ``linear``'s dtype, device and
        bias, and reports the achieved relative Frobenius error in ``decomposition_error``.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear; got {type(linear).__name__}")
        return cls._from_matrix(
            linear.weight.detach().T,
            linear.bias,
            rank,
            rtol,
            in_modes=in_modes,
            out_modes=out_modes,
            d=d,
            strategy=strategy,
            **options,
        )

    @classmethod
    def _from_matrix(
        cls,
        w: torch.Tensor,
        bias,
        rank,
        rtol,
        *,
        in_modes=None,
        out_modes=None,
        d=None,
        strategy="auto",
        **options,
    ):
        """A layer holding the decomposition of ``w`` ``(N_in, N_out)``; ``bias`` copied if
        given."""
        _check_strategy(strategy)
        d = _resolve_d(d, in_modes, out_modes, cls._default_d)
        f = decompose(
            w.detach().to(torch.float64),
            cls.format,
            rank,
            rtol=rtol,
            in_modes=in_modes,
            out_modes=out_modes,
            d=d,
            **options,
        )
        n_in, n_out = (int(n) for n in w.shape)
        layer = cls(
            n_in,
            n_out,
            rank=tuple(f.ranks),
            in_modes=f.in_modes,
            out_modes=f.out_modes,
            bias=bias is not None,
            strategy=strategy,
            seed=0,
            device=w.device,
            dtype=w.dtype,
        )
        layer._load_cores(f.cores)
        if bias is not None:
            with torch.no_grad():
                layer.bias.copy_(bias.detach())
        layer.decomposition_error = f.error
        return layer


class TTLinear(_TensorizedLinear):
    """``nn.Linear`` with a TT-matrix weight (Novikov et al. 2015): ``y = x @ W + b``.

    Parameters
    ----------
    in_features, out_features : int
    rank : int, tuple or float
        Uniform rank (capped where the modes allow less, with a warning), exact ranks
        ``(1, r_1, ..., r_{d-1}, 1)``, or a float parameter budget (`tedepr.shapes.solve_ranks`).
    in_modes, out_modes : tuple of int, optional
        Factorisations of ``in_features``/``out_features`` (default: balanced, `tedepr.auto_modes`).
    bias : bool
        Initialised like ``nn.Linear``: ``U(-1/sqrt(in_features), 1/sqrt(in_features))``.
    d : int, optional
        Number of modes per side for the automatic factorisation.
    weight_init, std :
        Target std of every reconstructed weight element (exact, docs/method.md §3); the default
        ``weight_init="torch"`` matches ``nn.Linear``'s default init (std
        ``1/sqrt(3·in_features)``); ``init=`` is accepted as the older spelling of ``weight_init=``.
    strategy : {"auto", "chain", "optimal", "reconstruct"}
        Contraction strategy (`tedepr.plan_contraction`); planned once per batch size.
    seed : int or numpy Generator, optional
        Seed of the core draw; None draws it from torch's generator (so ``torch.manual_seed``
        applies).
    device, dtype : where and how the parameters are stored.

    Shapes: input ``(..., in_features)``, output ``(..., out_features)``. Cores are the parameters
    ``core_0 .. core_{d-1}`` of shape ``(r_{k-1}, n_k, m_k, r_k)``.
    """

    format = "tt"


class TRLinear(_TensorizedLinear):
    """``nn.Linear`` with a tensor-ring weight (TR-Nets, Wang et al. 2018); arguments as `TTLinear`.

    An int ``rank`` is used on every bond including the closing one (``r_0 = r_d = rank``).
    """

    format = "tr"


class TuckerLinear(_TensorizedLinear):
    """``nn.Linear`` with a Tucker weight; arguments as `TTLinear`.

    The core has one axis per mode, so its size grows as ``rank ** (2d)``: unless modes or ``d`` are
    given, the matrix is not reshaped (``d=1``), i.e. Tucker-2 on the matrix: ``W = U_in C U_out^T``
    with ``core_0`` = ``C`` ``(R_in, R_out)``, ``core_1`` = ``U_in`` ``(in_features, R_in)``,
    ``core_2`` = ``U_out`` ``(out_features, R_out)``.
    """

    format = "tucker"
    _default_d = 1


class CPLinear(_TensorizedLinear):
    """``nn.Linear`` with a CP weight, one factor ``(dim_k, R)`` per mode; arguments as
    `TTLinear`."""

    format = "cp"


LINEAR_CLASSES: dict[str, type[_TensorizedLinear]] = {
    "tt": TTLinear,
    "tr": TRLinear,
    "tucker": TuckerLinear,
    "cp": CPLinear,
}
_TensorizedLinear._FORMAT_CLASSES = LINEAR_CLASSES


def linear_class(format: str) -> type[_TensorizedLinear]:
    """The tensorized Linear class of ``format`` (``"tt"``, ``"tr"``, ``"tucker"``, ``"cp"``)."""
    return LINEAR_CLASSES[check_format(format)]
