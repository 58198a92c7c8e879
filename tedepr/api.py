"""The public surface every backend shares: one list of names, and the rule for their signatures.

Both backends (`tedepr.backends.torch`, `tedepr.backends.jax`) set ``__all__ = backend_all(name)``:
the shared names of `BACKEND_API` followed by the short list of names that only make sense in that
framework (`FRAMEWORK_ONLY`). ``tests/test_api.py`` checks that every name exists and that every
shared callable takes the same parameters in both backends, under the rule below. Older names of a
few objects stay importable as aliases (`ALIASES`) but are not part of the surface.

Signature rule (`signature_differences`):

* **State first.** A torch module carries its parameters and masks inside itself; a JAX model is
  static structure and takes them as arrays. So the leading positional parameters named ``model``,
  ``params`` or ``masks`` (the state) are set aside; torch's ``apply_masks(model, masks)`` and JAX's
  ``apply_masks(params, masks)`` are the same call on different state.
* **Everything else matches**: the remaining positional parameters in order, by name and kind
  (positional-or-keyword vs positional-only), and the keyword-only parameters as a set.
* **Framework-only parameters** (`FRAMEWORK_PARAMETERS`) are set aside where the other backend
  has no parameter of that name and they are keyword-only or trailing positional ones;
  **legacy keywords** (`LEGACY_PARAMETERS`) are accepted aliases of a shared keyword and set
  aside too.
* `SIGNATURE_GAPS` lists the shared callables whose signatures still differ, each with why; the
  test asserts that each of them really differs, so the list cannot outlive the difference.

This module imports only the standard library.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = [
    "BACKENDS",
    "BACKEND_API",
    "FRAMEWORK_ONLY",
    "ALIASES",
    "FRAMEWORK_PARAMETERS",
    "LEGACY_PARAMETERS",
    "STATE_PARAMETERS",
    "SIGNATURE_EXEMPT",
    "SIGNATURE_GAPS",
    "backend_all",
    "backend_entry",
    "signature_differences",
]

BACKENDS = ("torch", "jax")

#: the names both backends export, grouped by concept (each backend's ``__all__`` starts with these)
BACKEND_API: tuple[str, ...] = (
    # tensorized layers: the format classes, their common base, and lookup by format name
    "TTLinear",
    "TRLinear",
    "TuckerLinear",
    "CPLinear",
    "TensorizedLinear",
    "LINEAR_CLASSES",
    "linear_class",
    "TTConv2d",
    "TRConv2d",
    "TuckerConv2d",
    "CPConv2d",
    "TensorizedConv2d",
    "CONV_CLASSES",
    "conv_class",
    "CONV_STRATEGIES",
    "TensorizedLSTM",
    "TensorizedGRU",
    "TensorizedMultiheadAttention",
    "TensorizedTransformerEncoderLayer",
    # the coarse grain: replace a model's dense layers
    "tensorize",
    "LAYER_KINDS",
    "DEFAULT_MIN_PARAMS",
    # masks and counting
    "prunable_weights",
    "apply_masks",
    "count_weights",
    # the model zoo
    "MODELS",
    "available",
    "get",
    # scoring and compression
    "ScoringProblem",
    "compress",
    "score",
    "CompressionResult",
    "build_report",
    # training
    "fit",
    "evaluate",
    "FitResult",
    "load_checkpoint",
    # inference
    "finalize",
    "compact",
)

#: names that exist in one framework only, and why no counterpart makes sense in the other
FRAMEWORK_ONLY: dict[str, tuple[str, ...]] = {
    # torch: masks live inside the nn.Module as parametrizations (read, remove, load them there);
    # torch.utils.data loading; weight folding of torch modules at inference
    "torch": (
        "get_masks",
        "remove_masks",
        "load_masked_state_dict",
        "make_loader",
        "fold_layer",
        "fold_costs",
    ),
    # JAX: its own small module system (torch users have torch.nn), masks as separate pytrees,
    # optax pieces of the training loop, and functional parameter transfer after `tensorize`
    "jax": (
        "Model",
        "Parameter",
        "Dense",
        "Conv2d",
        "LSTM",
        "GRU",
        "MultiheadAttention",
        "TransformerEncoderLayer",
        "LayerNorm",
        "BatchNorm",
        "conv2d",
        "max_pool2d",
        "scaled_dot_product_attention",
        "prunable_paths",
        "normalize_masks",
        "flatten_masks",
        "ones_masks",
        "make_optimizer",
        "make_train_step",
        # Flax NNX layers and the bridge for a user's nnx.Module (imported on first use)
        "nnx",
        "tensorize_layer",
        "transfer_params",
    ),
}

#: older names kept importable (not in ``__all__``): ``{backend: {old name: shared name}}``
ALIASES: dict[str, dict[str, str]] = {
    "torch": {
        "prunable_parameters": "prunable_weights",
        "TorchScoringProblem": "ScoringProblem",
    },
    "jax": {
        "prunable_leaves": "prunable_weights",
        "JaxScoringProblem": "ScoringProblem",
    },
}

#: leading positional parameters that hold a model's state (see the module docstring)
STATE_PARAMETERS = ("model", "params", "masks")

#: parameters that exist in one framework only: ``{backend: {parameter: why}}``
FRAMEWORK_PARAMETERS: dict[str, dict[str, str]] = {
    "torch": {
        "seed": "torch modules draw their parameters at construction (JAX: the Flax zoo's rngs=, "
        "the Model's init key)",
        "device": "torch modules are allocated on a device at construction",
        "dtype": "torch modules are allocated with a dtype at construction (JAX: init's dtype)",
        "map_location": "torch.load's device mapping",
    },
    "jax": {
        "namespace": "the array namespace JAX scores are handed back in (torch: its tensors)",
        "flax": "get(...) gives the Flax NNX zoo model by default (flax_zoo), flax=False the "
        "pure init/apply Model; torch has one module system",
        "rngs": "the Flax zoo model draws its parameters from nnx.Rngs at construction (torch: "
        "seed=)",
        "dtype": "the Flax zoo model's parameter dtype at construction (the Model: init's dtype)",
    },
}

#: ``{legacy keyword: shared keyword}``: older spellings a backend still accepts
LEGACY_PARAMETERS: dict[str, str] = {"init": "weight_init", "loss_fn": "loss"}

#: shared callables whose signatures are being unified elsewhere (not compared here)
SIGNATURE_EXEMPT: dict[str, str] = {
    "compress": "the front door and the core pipeline define it (issue 11, item 1)",
    "score": "the front door and the core pipeline define it (issue 11, item 1)",
    "CompressionResult": "one result type is built with the core pipeline (issue 11, item 1)",
}

#: shared callables whose signatures still differ: ``{name: why}`` (the test checks they do);
#: empty since issue 11 closed the last ones (the attention layers' options, torch's concrete
#: ``TensorizedLinear(format=)`` / ``TensorizedConv2d(format=)``, JAX's ``tensorize(decompose=)``)
SIGNATURE_GAPS: dict[str, str] = {}


def backend_all(backend: str) -> list[str]:
    """The ``__all__`` of ``backend`` (``"torch"`` or ``"jax"``): shared names, then its own."""
    if backend not in FRAMEWORK_ONLY:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}"
        )
    return list(BACKEND_API) + list(FRAMEWORK_ONLY[backend])


def _parameters(obj: Callable) -> list[inspect.Parameter]:
    params = list(inspect.signature(obj).parameters.values())
    return [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _framework_only(name: str, backend: str, other: set[str]) -> bool:
    return name in FRAMEWORK_PARAMETERS[backend] and name not in other


def signature_differences(torch_obj: Callable, jax_obj: Callable) -> list[str]:
    """How the signatures of one shared callable differ between the backends, under the rule of
    the module docstring; an empty list when they agree."""
    sides = {"torch": _parameters(torch_obj), "jax": _parameters(jax_obj)}
    names = {b: {p.name for p in ps} for b, ps in sides.items()}
    kept = {}
    for backend, params in sides.items():
        other = names["jax" if backend == "torch" else "torch"]
        k = 0
        while (
            k < len(params)
            and params[k].name in STATE_PARAMETERS
            and params[k].kind
            in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            )
        ):
            k += 1
        rest = [p for p in params[k:] if p.name not in LEGACY_PARAMETERS]
        positional = [p for p in rest if p.kind is not p.KEYWORD_ONLY]
        # a framework-only parameter is set aside when the other side lacks it and it is
        # keyword-only or trailing (a positional one in the middle would shift the others)
        while positional and _framework_only(positional[-1].name, backend, other):
            positional.pop()
        kept[backend] = positional + [
            p
            for p in rest
            if p.kind is p.KEYWORD_ONLY and not _framework_only(p.name, backend, other)
        ]
    out = []
    positional = {
        b: [(p.name, p.kind.name) for p in ps if p.kind is not p.KEYWORD_ONLY]
        for b, ps in kept.items()
    }
    if positional["torch"] != positional["jax"]:
        out.append(f"positional parameters: torch {positional['torch']} vs jax {positional['jax']}")
    keyword = {b: {p.name for p in ps if p.kind is p.KEYWORD_ONLY} for b, ps in kept.items()}
    if keyword["torch"] != keyword["jax"]:
        out.append(
            "keyword-only parameters: only torch "
            f"{sorted(keyword['torch'] - keyword['jax'])}, only jax "
            f"{sorted(keyword['jax'] - keyword['torch'])}"
        )
    return out


def backend_entry(front: Callable, run: Callable[[dict[str, Any]], Any], module: str) -> Callable:
    """A backend's entry point made from a front door ``front`` (`tedepr.compress`,
    `tedepr.score`, `tedepr.tensorizing.tensorize`): ``front``'s signature without ``backend``
    and its documentation; a call binds its arguments (a ``TypeError`` naming a wrong one, as a
    plain function), fills in the defaults and returns ``run(arguments)``. Written once, so no
    backend's entry point can drift from its front door."""
    sig = inspect.signature(front)
    sig = sig.replace(parameters=[p for p in sig.parameters.values() if p.name != "backend"])
    sig = sig.replace(return_annotation=inspect.Signature.empty)

    @functools.wraps(front)
    def entry(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return run(dict(bound.arguments))

    entry.__signature__ = sig
    entry.__module__ = module
    entry.__qualname__ = front.__name__
    del entry.__wrapped__  # the signature above is this function's own
    return entry
