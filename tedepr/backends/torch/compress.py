"""`compress` and `score` for PyTorch models: the torch side of `tedepr.pipeline`.

The method itself (budget, tensorize within it, score, prune, rescale, masks, report) is written once
in `tedepr.pipeline.run_compress`; this module holds only `TorchAdapter`, what needs torch: walking
an ``nn.Module``'s prunable parameters, seeding torch's RNG for the fresh cores, the autograd
`TorchScoringProblem`, and masking by parametrization. `compress` and `score` are
`tedepr.compress` / `tedepr.score` bound to it (one signature, `tedepr.pipeline.bind`).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import array_api_compat.torch as xp_torch
import torch

from ... import compression
from ...pipeline import CompressionResult, LayerWeights, bind
from ...pipeline import build_report as _build_report
from ...report import DEFAULT_OVERSAMPLE, Report
from ...validation import check_float_dtype
from .masking import apply_masks, prunable_parameters, row_name
from .scoring import TorchScoringProblem, structure_of

__all__ = [
    "ADAPTER",
    "CompressionResult",
    "TorchAdapter",
    "compress",
    "score",
    "dense_weight_count",
    "build_report",
    "DEFAULT_OVERSAMPLE",
]


def _factorized(module):
    return module.factorized() if callable(getattr(module, "factorized", None)) else None


def _is_composite(module) -> bool:
    from .attention import TensorizedMultiheadAttention, TensorizedTransformerEncoderLayer
    from .recurrent import TensorizedGRU, TensorizedLSTM

    kinds = (TensorizedLSTM, TensorizedGRU, TensorizedMultiheadAttention)
    return isinstance(module, (*kinds, TensorizedTransformerEncoderLayer))


def _module(model, name):
    return model.get_submodule(name) if name else model


def dense_weight_count(model: torch.nn.Module) -> int:
    """Weights of the model counted as SPEC §5 says (tensorized layers count their dense equivalent)."""
    total = 0
    for name, p in prunable_parameters(model).items():
        if _factorized(_module(model, name.rpartition(".")[0])) is None:
            total += p.numel()
    return total + sum(f.dense_params for f in map(_factorized, model.modules()) if f is not None)


def _class_name(module) -> str:
    """A report row's kind: the module's class name; a torch class outside ``torch.nn``'s public
    names goes by its public base (``out_proj``'s ``NonDynamicallyQuantizableLinear`` is
    ``Linear``, `tedepr.pipeline.LINEAR_KIND`, as the JAX backend names the same layer)."""
    # torch.nn.utils.parametrize swaps in a subclass named "Parametrized<Name>"
    cls = type(module)
    if torch.nn.utils.parametrize.is_parametrized(module):
        cls = cls.__mro__[1]
    for base in cls.__mro__:
        internal = (
            base.__module__.startswith("torch.")
            and getattr(torch.nn, base.__name__, None) is not base
        )
        if not internal:
            return base.__name__
    return cls.__name__


class TorchAdapter:
    """`tedepr.pipeline.CompressAdapter` for ``nn.Module`` models (``params`` is always None: the
    module holds its weights; masks are parametrizations, `tedepr.backends.torch.masking`)."""

    name = "torch"

    def prepare(self, model, params, dtype):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if params is not None:
            raise ValueError(
                "params= is for JAX models: a torch module holds its own weights (load a "
                f"state_dict into it first); got {type(params).__name__}"
            )
        dtype = check_float_dtype(dtype, xp_torch)
        return (model if dtype is None else copy.deepcopy(model).to(dtype)), None

    def dense_weight_count(self, model):
        return dense_weight_count(model)

    def copy(self, model):
        return copy.deepcopy(model)  # masks are attached in place

    def tensorize(self, model, *, format, rank, **options):
        from .tensorize import tensorize

        return tensorize(model, format=format, rank=rank, **options)

    def factorized_layers(self, model):
        # the layers rank allocation may address by name: a factorised module inside a tensorized
        # composite (LSTM, GRU, attention) is not a module of the caller's model, so `overrides`
        # cannot name it; composites keep tensorize's rank, as in the JAX backend
        composites = [n for n, m in model.named_modules() if n and _is_composite(m)]
        found = (
            (n, _factorized(m))
            for n, m in model.named_modules()
            if not any(n.startswith(c + ".") for c in composites)
        )
        return {n: f for n, f in found if f is not None}

    @contextmanager
    def seeded(self, seed):
        # the fresh cores are drawn from torch's RNG: seed it without disturbing the caller's stream
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield lambda: torch.manual_seed(seed)

    def init_params(self, source, params, model, seed, dtype):
        return None

    def scoring_problem(self, model, params, data, *, num_batches, loss_fn, input_shape):
        return TorchScoringProblem(
            model,
            data,
            num_batches=num_batches,
            loss_fn=None if loss_fn == "cross_entropy" else loss_fn,
            input_shape=input_shape,
        )

    def weights(self, model, params):
        return {n: p.detach() for n, p in prunable_parameters(model).items()}

    def layers(self, model, params):
        groups: dict[str, list[str]] = {}
        owners: dict[str, str] = {}
        for name in prunable_parameters(model):
            module_name, _, attr = name.rpartition(".")
            row = row_name(_module(model, module_name), module_name, attr)
            groups.setdefault(row, []).append(name)
            owners[row] = module_name
        out = []
        for row, names in groups.items():
            module_name = owners[row]
            module = _module(model, module_name)
            f = _factorized(module) if row == module_name else None
            prefix = f"{module_name}." if module_name else ""
            cores = tuple(f"{prefix}core_{k}" for k in range(len(f.cores))) if f else ()
            strategy = getattr(module, "strategy", "auto")
            out.append(LayerWeights(row, _class_name(module), tuple(names), f, cores, strategy))
        return out

    def structure(self, model, params):
        return structure_of(model, prunable_parameters(model))

    def other_params(self, model, params):
        ids = {id(p) for p in prunable_parameters(model).values()}
        return sum(p.numel() for p in model.parameters() if id(p) not in ids)

    def scale_weights(self, model, params, factors):
        weights = prunable_parameters(model)
        with torch.no_grad():
            for name, factor in factors.items():
                weights[name].mul_(factor)
        return None

    def replace_weights(self, model, params, values):
        weights = prunable_parameters(model)
        with torch.no_grad():
            for name, value in values.items():
                w = weights[name]
                w.copy_(torch.as_tensor(value, dtype=w.dtype, device=w.device))
        return None

    def apply_masks(self, model, params, masks):
        weights = prunable_parameters(model)
        masks = {n: m.to(weights[n].device) for n, m in masks.items()}
        apply_masks(model, masks)
        return None, masks

    def compact(self, result):
        from .compact import compact

        return compact(result)


ADAPTER = TorchAdapter()
compress = bind(compression.compress, ADAPTER, __name__)
score = bind(compression.score, ADAPTER, __name__)


def build_report(
    model: torch.nn.Module, masks: dict[str, torch.Tensor] | None, **options
) -> Report:
    """`tedepr.pipeline.build_report` of a (masked) module: per-layer accounting, modes, ranks,
    FLOPs; ``options``: ``dense_weights`` (required), ``target_sparsity``, ``method``, ``structure``."""
    return _build_report(ADAPTER, model, None, masks, **options)
