"""Moving a model's weights and masks between backends, losslessly.

The interchange format is a pair of dicts of NumPy arrays keyed by canonical parameter names in
canonical layouts (`tedepr.pruning.problem`; a dense weight is ``(out, in)``, as
``nn.Linear.weight``; a tensorized layer's cores are ``<layer>.core_k``; BatchNorm statistics are
``running_mean``/``running_var``): ``{"params": {...}, "masks": {...}}``, where a masked
parameter's value is already zero at its pruned entries. `tedepr.backends.jax.interchange`
reads and writes the same format.
"""

from __future__ import annotations

import torch

from .masking import apply_masks, get_masks, remove_masks

__all__ = ["export_arrays", "import_arrays"]

_PARAM_SUFFIX = ".original"


def _canonical(name: str) -> str | None:
    """State-dict key -> interchange name (None for mask buffers and torch-only bookkeeping)."""
    if ".parametrizations." in name or name.startswith("parametrizations."):
        head, _, tail = name.partition("parametrizations.")
        param, _, rest = tail.partition(".")
        return head + param if rest == "original" else None
    if name.endswith("num_batches_tracked"):
        return None
    return name


def export_arrays(model: torch.nn.Module) -> dict[str, dict]:
    """``{"params": name -> ndarray, "masks": name -> bool ndarray}`` of a (masked) torch model."""
    params = {}
    for name, t in model.state_dict().items():
        key = _canonical(name)
        if key is not None:
            params[key] = t.detach().cpu().numpy().copy()
    masks = {n: m.detach().cpu().numpy().astype(bool) for n, m in get_masks(model).items()}
    for n, m in masks.items():  # the stored original may hold values at pruned entries: zero them
        params[n] = params[n] * m
    return {"params": params, "masks": masks}


def import_arrays(model: torch.nn.Module, arrays: dict[str, dict]) -> torch.nn.Module:
    """Load ``arrays`` (see `export_arrays`) into ``model`` — in place, like ``load_state_dict`` — and
    attach its masks. ``model`` must have the same architecture (e.g. built by the same
    ``tensorize``). Every parameter and buffer must be given; unknown names are an error."""
    if not isinstance(arrays, dict) or "params" not in arrays:
        raise ValueError(
            "arrays must be a dict with 'params' (and optionally 'masks'), as export_arrays returns"
        )
    remove_masks(model)
    state = model.state_dict()
    expected = {k for k in state if _canonical(k) is not None}
    given = set(arrays["params"])
    if given != expected:
        raise ValueError(
            f"arrays do not match the model: missing {sorted(expected - given)[:5]}, "
            f"unknown {sorted(given - expected)[:5]}"
        )
    new_state = {}
    for k, ref in state.items():
        if k in given:
            value = torch.as_tensor(arrays["params"][k], dtype=ref.dtype, device=ref.device)
            if tuple(value.shape) != tuple(ref.shape):
                raise ValueError(
                    f"arrays['params'][{k!r}] has shape {tuple(value.shape)}; the model needs {tuple(ref.shape)}"
                )
            new_state[k] = value
        else:
            new_state[k] = ref
    model.load_state_dict(new_state)
    masks = arrays.get("masks") or {}
    if masks:
        params = dict(model.named_parameters())
        apply_masks(
            model,
            {
                n: torch.as_tensor(m, dtype=torch.bool, device=params[n].device)
                for n, m in masks.items()
            },
        )
    return model
