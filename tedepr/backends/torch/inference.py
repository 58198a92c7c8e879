"""Finished models for inference: masks folded into the weights, cores pre-contracted where cheaper.

`finalize` returns a plain copy (no ``torch.nn.utils.parametrize`` parametrizations, so it pickles,
scripts and exports like any module), compacted first (`tedepr.backends.torch.compact`: bond
indices on no complete path of kept entries are removed from the cores). Each tensorized Linear
is *folded* — replaced by an ``nn.Linear`` holding its reconstructed weight — when one dense
GEMM is cheaper than the layer's contraction chain at the given batch size, by the planner's own
cost model (`tedepr.plan_contraction`): the folded layer is costed as the one-core network ``x @ W``; or, with
``fold="measure"``, by timing both on the device (the cost model is not calibrated for eager
per-step overheads: docs/performance.md shows where the two decisions differ).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn

from ...folding import fold_costs as core_fold_costs
from .attention import TensorizedMultiheadAttention, TensorizedTransformerEncoderLayer
from .compact import compact_model, compaction_plan
from .conv import _TensorizedConv2d
from .layers import _TensorizedLinear
from .masking import get_masks, remove_masks
from .recurrent import _TensorizedRNNBase

__all__ = ["finalize", "fold_costs", "fold_layer", "fold_timings"]

_COMPOSITE = (_TensorizedRNNBase, TensorizedMultiheadAttention, TensorizedTransformerEncoderLayer)
_FOLD = (True, False, "auto", "measure")


def fold_costs(layer: _TensorizedLinear, batch_size: int) -> tuple[float, float]:
    """``(unfolded, folded)`` cost of ``layer`` for ``batch_size`` rows, in the planner's
    FLOP-equivalents: its own plan (`plan_contraction` with the layer's strategy) vs one dense
    ``(batch, N_in) @ (N_in, N_out)`` product (`tedepr.folding.fold_costs`)."""
    return core_fold_costs(layer._shape_template(), batch_size, layer.strategy)


def fold_timings(
    layer: _TensorizedLinear, batch_size: int, *, repeats: int = 25
) -> tuple[float, float]:
    """``(unfolded, folded)`` median seconds of one forward of ``layer`` and of its folded
    ``nn.Linear`` on a random ``(batch_size, in_features)`` input, timed interleaved
    (``repeats`` rounds, each call repeated to last at least ~0.5 ms)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int; got {repeats!r}")
    p = next(layer.parameters())
    x = torch.randn(batch_size, layer.in_features, device=p.device, dtype=p.dtype)
    folded = fold_layer(layer)
    fns = (layer, folded)
    sync = torch.cuda.synchronize if p.device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        inner = []
        for fn in fns:
            fn(x)  # warm-up: plans, allocator
            sync()
            t0 = time.perf_counter()
            fn(x)
            sync()
            inner.append(max(1, int(5e-4 / max(time.perf_counter() - t0, 1e-7))))
        samples: tuple[list[float], list[float]] = ([], [])
        for k in range(repeats):
            for i in (0, 1) if k % 2 == 0 else (1, 0):
                t0 = time.perf_counter()
                for _ in range(inner[i]):
                    fns[i](x)
                sync()
                samples[i].append((time.perf_counter() - t0) / inner[i])
    return statistics.median(samples[0]), statistics.median(samples[1])


def fold_layer(layer: nn.Module) -> nn.Module:
    """The dense ``nn.Linear`` / ``nn.Conv2d`` computing what the tensorized ``layer`` computes
    (weight reconstructed from the current, masked cores; no autograd history)."""
    p = next(layer.parameters())
    kw = {"device": p.device, "dtype": p.dtype}
    with torch.no_grad():
        if isinstance(layer, _TensorizedLinear):
            new = nn.Linear(layer.in_features, layer.out_features, layer.bias is not None, **kw)
            new.weight.copy_(layer.dense_weight().T)
        elif isinstance(layer, _TensorizedConv2d):
            new = nn.Conv2d(
                layer.in_channels,
                layer.out_channels,
                layer.kernel_size,
                layer.stride,
                layer.padding,
                layer.dilation,
                layer.groups,
                layer.bias is not None,
                **kw,
            )
            new.weight.copy_(layer.kernel())
        else:
            raise TypeError(
                f"layer must be a tensorized Linear or Conv2d; got {type(layer).__name__}"
            )
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    new.train(layer.training)
    return new


def finalize(model: nn.Module, *, batch_size: int | None = None, fold=False) -> nn.Module:
    """A plain inference copy of a (masked) compressed model; ``model`` is not changed.

    Parameters
    ----------
    model : nn.Module
    batch_size : int, optional
        The inference batch size the folding decision is made for (needed by ``fold="auto"``).
    fold : False, True, "auto" or "measure"
        False: only fold the masks into the weights (pruned entries stay stored zeros; the layers
        stay tensorized). True: also replace every tensorized Linear and Conv2d (outside
        composite layers such as attention/LSTM) by the dense layer of its reconstructed weight.
        "auto": replace a tensorized Linear when `fold_costs` says the dense product is no dearer
        at ``batch_size``; convolutions are folded too (their cost depends on the image size,
        which is not known here; pass ``fold=False`` to keep them).
        "measure": as "auto", but each tensorized Linear is timed both ways at ``batch_size`` on
        this device (`fold_timings`) and the faster one is kept.

    Returns
    -------
    nn.Module
        A deep copy in eval mode with ``requires_grad=False`` parameters and no
        parametrizations, its tensorized layers compacted: it computes the masked model's
        function.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not (fold is True or fold is False or (isinstance(fold, str) and fold in _FOLD)):
        raise ValueError(f"fold must be True, False, 'auto' or 'measure'; got {fold!r}")
    if fold in ("auto", "measure") and batch_size is None:
        raise ValueError(f"fold={fold!r} needs batch_size (the inference batch it decides for)")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int or None; got {batch_size!r}")
    out = copy.deepcopy(model)
    masks = get_masks(out)
    if masks:  # dead bond indices go first: the chain (or the fold) then runs on the sub-cores
        compact_model(out, masks, compaction_plan(out, masks))
    remove_masks(out)
    if fold is not False:
        skip: list[str] = []
        for name, m in list(out.named_modules()):
            if any(name.startswith(s + ".") for s in skip):
                continue
            if isinstance(m, _COMPOSITE):
                skip.append(name)
                continue
            if isinstance(m, _TensorizedLinear):
                if fold in ("auto", "measure"):
                    decide = fold_costs if fold == "auto" else fold_timings
                    unfolded, folded = decide(m, batch_size)
                    if folded > unfolded:
                        continue
            elif not isinstance(m, _TensorizedConv2d):
                continue
            new = fold_layer(m)
            if name == "":
                out = new
                break
            parent, _, child = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, child, new)
    out.eval()
    out.requires_grad_(False)
    return out
