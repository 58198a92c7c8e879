"""Fixed pruning masks on any parameter: tensorized cores and dense weights alike.

A mask is a ``torch.nn.utils.parametrize`` parametrization ``w -> w * mask`` whose boolean mask is a
persistent buffer (so it is saved in ``state_dict``). `apply_masks` also zeroes the pruned entries
of the trainable parameter itself. With both in place the pruned entries stay exactly zero through
training:

* forward: the module reads ``w * mask``;
* gradients: ``∂L/∂w_original = ∂L/∂w ⊙ mask`` is zero on pruned entries;
* optimizers: SGD (momentum, weight decay), Adam and AdamW only ever see zero gradients and zero
  values there, so their state and updates stay zero (decoupled decay multiplies zero).

Parameters are named as in ``model.named_parameters()`` of the unmasked model (``"fc1.core_0"``,
``"conv.weight"``), before and after masking.

Saving and loading: ``torch.save(model.state_dict(), path)`` holds the masks. A fresh, unmasked
model has no slots for them, so load with `load_masked_state_dict` (it attaches masks of the saved
shapes, then loads), or by hand: ``apply_masks(model, {name: torch.zeros_like(p, dtype=torch.bool)
...})`` for the masked names, then ``model.load_state_dict(state)``. (torch refuses to pickle a
parametrized module as a whole, so ``torch.save(model)`` works only before masking or after
`remove_masks`.)
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...pipeline import counted_layers
from ...report import count_summary

__all__ = [
    "prunable_parameters",
    "apply_masks",
    "get_masks",
    "remove_masks",
    "count_weights",
    "load_masked_state_dict",
]

_ORDER = "_tedepr_parameter_order"
_NORM_TYPES: tuple[type, ...] = tuple(
    t
    for t in (
        nn.modules.batchnorm._NormBase,
        nn.LayerNorm,
        nn.GroupNorm,
        getattr(nn, "RMSNorm", None),
        nn.LocalResponseNorm,
    )
    if t is not None
)


class _Mask(nn.Module):
    """Parametrization ``w -> w * mask`` with the boolean mask as a persistent buffer."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self._factor: torch.Tensor | None = None
        self._factor_src: torch.Tensor | None = None  # the mask it was made from (kept alive)
        self._factor_key: tuple | None = None

    def _float_mask(self, w: torch.Tensor) -> torch.Tensor:
        """The mask in ``w``'s dtype, converted once and reused while the mask is unchanged.

        ``w * bool_mask`` converts the mask on every call (measured: a 300x784 mask, forward +
        backward, 762 us with the bool mask vs 195 us with a float one, same run). It is rebuilt
        when the buffer is another tensor (``.to()``, reassignment) or was written in place
        (``copy_``, ``load_state_dict``: the version counter moves).
        """
        mask = self.mask
        key = (mask._version, w.dtype, w.device)
        if mask is not self._factor_src or key != self._factor_key:
            self._factor = mask.to(dtype=w.dtype, device=w.device)
            self._factor_src, self._factor_key = mask, key
        return self._factor

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or not isinstance(w, torch.Tensor) or w.is_meta:
            return w * self.mask  # a compiled graph fuses the conversion into the product
        try:
            factor = self._float_mask(w)
        except (RuntimeError, NotImplementedError):  # tensor subclasses without storage
            return w * self.mask
        return w * factor

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        # Assigning to the masked attribute stores the masked value, so pruned entries stay zero.
        return w * self.mask

    def extra_repr(self) -> str:
        return f"kept={int(self.mask.sum())}/{self.mask.numel()}"


# ---------------------------------------------------------------------------- discovery
def _tensor_names(module: nn.Module) -> tuple[str, ...]:
    """Names of the prunable weights owned directly by ``module``, in registration order."""
    own = getattr(module, "_prunable_tensor_names", None)
    if own is not None:
        return tuple(own())
    if isinstance(
        module, (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding, nn.EmbeddingBag, nn.Bilinear)
    ):
        return ("weight",)
    if isinstance(module, nn.RNNBase):
        return tuple(n for n in module._flat_weights_names if n.startswith("weight"))
    if isinstance(module, nn.MultiheadAttention):
        return ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
    return ()


def row_name(module: nn.Module, module_name: str, attr: str) -> str:
    """The report row (and `count_weights` layer) of the weight ``module.<attr>``: the module's
    name, or the weight's own name where the module makes each weight a row of its own (the dense
    hidden maps of `TensorizedLSTM` / `TensorizedGRU`: ``lstm.weight_hh_l0``)."""
    if getattr(parametrize.type_before_parametrizations(module), "_weight_rows", False):
        return f"{module_name}.{attr}" if module_name else attr
    return module_name


def _trainable(module: nn.Module, name: str) -> torch.Tensor | None:
    """The tensor the optimizer updates for ``module.<name>`` (the original when parametrized)."""
    if parametrize.is_parametrized(module, name):
        return module.parametrizations[name].original
    return module._parameters.get(name)


def _walk(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, torch.Tensor]]:
    """``(full name, owning module, attribute, parameter)`` for every prunable weight,
    deduplicated."""
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        if isinstance(module, parametrize.ParametrizationList) or isinstance(module, _Mask):
            continue
        for pname in _tensor_names(module):
            p = _trainable(module, pname)
            if p is None or not isinstance(p, nn.Parameter) or id(p) in seen:
                continue
            seen.add(id(p))
            yield (f"{mod_name}.{pname}" if mod_name else pname), module, pname, p


def _owners(model: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    """Every ``(module, attribute)`` holding each prunable parameter (tied weights have several)."""
    owners: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in model.modules():
        if isinstance(module, (parametrize.ParametrizationList, _Mask)):
            continue
        for pname in _tensor_names(module):
            p = _trainable(module, pname)
            if isinstance(p, nn.Parameter):
                owners.setdefault(id(p), []).append((module, pname))
    return owners


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every prunable weight of ``model`` by name, in ``named_parameters()`` order.

    Prunable: all cores of tensorized layers, and the weights of ``nn.Linear``, ``nn.Conv*``,
    ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (``weight_ih``/``weight_hh``), ``nn.MultiheadAttention``
    (input projection; the output projection is an ``nn.Linear``), ``nn.Embedding``, and the dense
    hidden-to-hidden weights of `TensorizedLSTM`/`TensorizedGRU`. Never biases or normalisation
    parameters. For a masked parameter the value is the trainable (unmasked) original; the name
    stays the unmasked model's.
    """
    return {name: p for name, _, _, p in _walk(model)}


# ---------------------------------------------------------------------------- masks
def _mask_module(module: nn.Module, name: str) -> _Mask | None:
    if not parametrize.is_parametrized(module, name):
        return None
    for p in module.parametrizations[name]:
        if isinstance(p, _Mask):
            return p
    return None


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Attach fixed boolean masks (True = kept) to prunable parameters of ``model``, in place.

    Every mask is validated before anything changes (name in `prunable_parameters`, bool dtype, the
    parameter's shape). The pruned entries of each parameter are zeroed and a parametrization ``w *
    mask`` is registered; a parameter that already has a mask gets the new one instead. Masks are
    copied to the parameter's device; the caller's tensors are not kept or changed.
    """
    if not isinstance(masks, Mapping):
        raise TypeError(
            f"masks must be a dict of parameter name -> bool tensor; got {type(masks).__name__}"
        )
    entries = {name: (module, pname, p) for name, module, pname, p in _walk(model)}
    owners = _owners(model)
    for name, mask in masks.items():
        if name not in entries:
            known = list(entries)
            shown = ", ".join(map(repr, known[:8])) + (
                f", ... ({len(known)} in all)" if len(known) > 8 else ""
            )
            raise ValueError(
                f"masks has unknown parameter name {name!r}; prunable parameters are: "
                f"{shown or 'none'}"
            )
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"masks[{name!r}] must be a torch tensor; got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise TypeError(f"masks[{name!r}] must have dtype torch.bool; got {mask.dtype}")
        p = entries[name][2]
        if tuple(mask.shape) != tuple(p.shape):
            raise ValueError(
                f"masks[{name!r}] has shape {tuple(mask.shape)} but the parameter has "
                f"shape {tuple(p.shape)}"
            )
        for module, pname in owners[id(p)]:
            if parametrize.is_parametrized(module, pname) and _mask_module(module, pname) is None:
                raise ValueError(
                    f"{name!r} already has a parametrization that is not a tedepr mask; "
                    "masks apply to plain parameters only"
                )
    for name, mask in masks.items():
        p = entries[name][2]
        mask = mask.detach().to(device=p.device, copy=True)
        with torch.no_grad():
            p.masked_fill_(~mask, 0)
        # A tied parameter is masked in every module that holds it, or the unmasked use would
        # feed gradients into its pruned entries.
        for module, pname in owners[id(p)]:
            existing = _mask_module(module, pname)
            if existing is not None:
                existing.mask.copy_(mask)
                continue
            if not parametrize.is_parametrized(module):
                # parametrize moves the parameter out of _parameters; remove_masks restores the
                # order
                module.__dict__.setdefault(_ORDER, tuple(module._parameters))
            parametrize.register_parametrization(module, pname, _Mask(mask))
            _own_class_hooks(module)


def _reduce_masked(module: nn.Module, protocol):
    """Pickle a masked module as its unparametrized class, its parameters and its masks.

    The state is the module's ``__dict__`` with every masked parameter put back under its own name
    (the same ``nn.Parameter`` object, so pickling keeps tied weights tied) and without the
    ``parametrizations`` container; `_restore_masked` re-registers the masks on unpickling.
    """
    masks = {}
    for pname, plist in module.parametrizations.items():
        if len(plist) != 1 or not isinstance(plist[0], _Mask):
            raise RuntimeError(
                f"{type(module).__name__}.{pname} has a parametrization that is not a tedepr "
                "mask; torch can serialize such modules only through state_dict()"
            )
        masks[pname] = (plist.original, plist[0].mask)
    state = dict(module.__dict__)
    modules = dict(state["_modules"])
    modules.pop("parametrizations", None)
    state["_modules"] = modules
    params = dict(state["_parameters"])
    params.update({pname: original for pname, (original, _) in masks.items()})
    order = state.pop(_ORDER, None)
    if order is not None:
        rank = {name: k for k, name in enumerate(order)}
        params = dict(sorted(params.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    state["_parameters"] = params
    base = parametrize.type_before_parametrizations(module)
    return _restore_masked, (base, state, {p: m for p, (_, m) in masks.items()})


def _restore_masked(base: type, state: dict, masks: dict) -> nn.Module:
    """Unpickling half of `_reduce_masked`: the plain module, then its masks re-attached."""
    module = base.__new__(base)
    module.__dict__.update(state)
    if masks:
        module.__dict__[_ORDER] = tuple(module._parameters)
    for pname, mask in masks.items():
        parametrize.register_parametrization(module, pname, _Mask(mask))
        _own_class_hooks(module)
    return module


def _own_class_hooks(module: nn.Module) -> None:
    """Pickling and deep-copying for the class torch injects into a parametrized module.

    torch's injected class refuses pickling; ours pickles as the plain class plus the masks. And
    torch's deep copy gives the copy the *same* injected class, so removing the copy's masks
    (which deletes the class's properties) would break the original: our copy gets a class of its
    own.
    """
    cls = type(module)
    cls.__reduce_ex__ = _reduce_masked
    base = parametrize.type_before_parametrizations(module)
    if not hasattr(base, "__deepcopy__"):  # a class's own deep copy is left to it (as torch does)
        cls.__deepcopy__ = _deepcopy_masked


def _deepcopy_masked(module: nn.Module, memo: dict) -> nn.Module:
    replica = memo.get(id(module))
    if replica is not None:
        return replica
    cls = type(module)
    own = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
    replica = own.__new__(own)
    memo[id(module)] = replica
    replica.__dict__ = copy.deepcopy(module.__dict__, memo)
    return replica


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the masks attached to ``model``, keyed by the unmasked parameter names."""
    out = {}
    for name, module, pname, _ in _walk(model):
        m = _mask_module(module, pname)
        if m is not None:
            out[name] = m.mask.detach().clone()
    return out


def remove_masks(model: nn.Module) -> None:
    """Detach every mask, in place, leaving plain parameters that hold the masked values.

    The parameter objects stay the same (optimizers keep working); the pruned entries stay zero but
    are no longer held there.
    """
    touched = {}
    for holders in _owners(model).values():
        for module, pname in holders:
            if _mask_module(module, pname) is not None:
                parametrize.remove_parametrizations(module, pname, leave_parametrized=True)
                touched[id(module)] = module
    for module in touched.values():
        order = module.__dict__.get(_ORDER)
        if order is None or parametrize.is_parametrized(module):
            continue
        # back to the unmasked module's parameter order (named_parameters, optimizer param lists)
        items = list(module._parameters.items())
        rank = {name: k for k, name in enumerate(order)}
        items.sort(key=lambda kv: rank.get(kv[0], len(rank)))
        module._parameters.clear()
        module._parameters.update(items)
        del module.__dict__[_ORDER]


def load_masked_state_dict(model: nn.Module, state_dict: Mapping[str, Any], strict: bool = True):
    """Load a state dict saved from a masked model into ``model`` (masked or not), in place.

    The masks found in ``state_dict`` (keys ``<module>.parametrizations.<name>.<i>.mask``) are
    attached first, so their slots exist; then ``model.load_state_dict(state_dict, strict)`` runs
    and its result is returned. A mask key whose parameter ``model`` does not have (or holds under
    another name, as a tied weight) is left to ``load_state_dict`` to report or place.
    """
    known = set(prunable_parameters(model))
    masks = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if (
            len(parts) >= 4
            and parts[-1] == "mask"
            and parts[-2].isdigit()
            and parts[-4] == "parametrizations"
        ):
            name = ".".join(parts[:-4] + [parts[-3]])
            if name in known:
                masks[name] = torch.as_tensor(value).to(torch.bool)
    if masks:
        apply_masks(model, masks)
    return model.load_state_dict(state_dict, strict=strict)


# ---------------------------------------------------------------------------- counting
def _all_parameters(model: nn.Module):
    """``(module name, module, attribute, parameter)`` for every trainable tensor, deduplicated."""
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        if isinstance(module, (parametrize.ParametrizationList, _Mask)) or (
            mod_name.endswith("parametrizations") and isinstance(module, nn.ModuleDict)
        ):
            continue
        names = list(module._parameters)
        if parametrize.is_parametrized(module):
            names += list(module.parametrizations.keys())
        for pname in names:
            p = _trainable(module, pname)
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            yield mod_name, module, pname, p


def count_weights(model: nn.Module) -> dict[str, Any]:
    """Dense-equivalent weight counts (SPEC §5 Counting), per layer and in total.

    Returns
    -------
    dict with
        ``"layers"``: ``{layer name: {"type", "dense", "params", "kept"}}``, one per row of the
        compression report, with its name and kind (`tedepr.pipeline.counted_layers`, the same code
        in both backends) — for a tensorized layer ``dense`` is the entry count of the matrix it
        replaces, ``params`` its core entries and ``kept`` the entries its masks keep; for a dense
        layer all three count its weights (``kept`` after masks). A dense layer's name is its
        module's, its type the module's class name, but ``Linear`` (`tedepr.pipeline.LINEAR_KIND`)
        for every dense affine map (``nn.Linear`` and internal subclasses such as ``out_proj``'s
        ``NonDynamicallyQuantizableLinear``), as the JAX backend's ``Dense``; a dense
        ``nn.MultiheadAttention``'s packed ``in_proj_weight`` is the three layers
        ``<attention>.q_proj`` / ``.k_proj`` / ``.v_proj`` (``Linear``, each counting its third of
        the mask), as the JAX attention holds them; tensorized sub-maps (e.g. of `TensorizedLSTM`)
        are layers of their own. ``"dense"``, ``"params"``, ``"kept"``: the sums over layers
        (``dense`` is the denominator of ``sparsity``). ``"biases"``, ``"norm"``, ``"other"``:
        parameter entries excluded from the weight count — biases, normalisation parameters, and
        anything else (e.g. positional embeddings).
    """
    from .compress import ADAPTER  # compress imports this module

    weights = prunable_parameters(model)
    shapes = {name: tuple(p.shape) for name, p in weights.items()}
    layers = counted_layers(ADAPTER.layers(model, None), shapes, get_masks(model))
    weight_ids = {id(p) for p in weights.values()}
    biases = norm = other = 0
    for _, module, pname, p in _all_parameters(model):
        if id(p) in weight_ids:
            continue
        if isinstance(module, _NORM_TYPES):
            norm += p.numel()
        elif "bias" in pname:
            biases += p.numel()
        else:
            other += p.numel()
    return count_summary(layers, biases=biases, norm=norm, other=other)
