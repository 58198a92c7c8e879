"""Which layers a backend's ``tensorize`` replaces, and with which options — decided once here;
and `tensorize` itself: the one signature and documentation of every backend's ``tensorize``
(`bind` makes a backend's entry point from it, as `tedepr.pipeline.bind` does for ``compress``).

Both backends' ``tensorize`` walk their own model (``nn.Module`` tree, JAX `Model` layers) and build
their own layers; everything between is `LayerChooser`: the checks of ``format``, ``min_params``,
``include``/``exclude`` globs and ``overrides``; per candidate, the reasons a layer stays dense and
its options (every matching ``overrides`` glob applies, later ones winning); the one fallback rule;
the warnings; the error when nothing is replaced.

The fallback rule (the same in every backend): a layer stays dense, with a warning, when its
factorisation would not hold fewer weights than the dense layer, or when a float rank budget
cannot be met even at rank 1 (`tedepr.shapes.RankBudgetError`, a per-layer decision; never a retry
of the whole model, never a match on an error's text). Any other error building a layer is raised,
naming the layer.
"""

from __future__ import annotations

import fnmatch
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .api import backend_entry
from .shapes import RankBudgetError, auto_modes, axis_modes, balanced_modes, check_format
from .validation import check_globs_match

__all__ = [
    "CONV2D_FIELDS",
    "CONV_STRATEGIES",
    "LAYER_OPTIONS",
    "bind",
    "check_conv_strategy",
    "check_tensorize_args",
    "layer_options",
    "tensorize",
    "DEFAULT_LAYERS",
    "DEFAULT_MIN_PARAMS",
    "LAYER_KINDS",
    "LayerChooser",
    "check_layer_kinds",
    "globs",
]

logger = logging.getLogger("tedepr.tensorize")

#: the convolution arguments a tensorized Conv2d takes over from the dense one, in every backend
#: (``nn.Conv2d``'s names, which the JAX `Conv2d` shares)
CONV2D_FIELDS = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
)


#: the kinds of layer every backend's ``tensorize`` can replace (its ``layers=``)
LAYER_KINDS = ("linear", "conv2d", "lstm", "gru", "attention")
#: the kinds replaced by default: all but ``"gru"``
DEFAULT_LAYERS = ("linear", "conv2d", "lstm", "attention")
#: dense layers with fewer weights stay dense by default (a small classifier gains nothing)
DEFAULT_MIN_PARAMS = 1024
#: how a tensorized convolution may be computed, in every backend (its ``strategy``)
CONV_STRATEGIES = ("auto", "reconstruct", "factorized", "unfold")
#: ``tensorize``'s options for the new layers and their defaults (the layers' own defaults)
LAYER_OPTIONS: dict[str, Any] = {
    "d": None,
    "strategy": "auto",
    "conv_strategy": "auto",
    "tensorize_hidden": False,
}


def check_conv_strategy(value: Any, name: str = "conv_strategy") -> str:
    """``conv_strategy``: one of `CONV_STRATEGIES` (``name``: the argument the error names, e.g.
    ``"overrides['features.*']['conv_strategy']"``)."""
    if not isinstance(value, str) or value not in CONV_STRATEGIES:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, CONV_STRATEGIES))}; got {value!r}"
        )
    return value


def layer_options(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a new layer of ``kind`` (one of `LAYER_KINDS`) from one
    candidate's options (the call's, a model's hints, ``overrides``; `LayerChooser.options`).

    ``conv_strategy`` (checked) is a convolution's ``strategy``, and ``strategy`` that of every
    other kind (the Linear, recurrent and attention maps); ``tensorize_hidden`` applies to the
    recurrent kinds only. The `LAYER_OPTIONS` left at their defaults are left out, so a layer
    class (or its ``from_dense``) sees its own defaults; every other option (``format``,
    ``rank``, ``in_modes``, a layer class's argument) is passed on as it is."""
    out = {k: v for k, v in options.items() if k not in LAYER_OPTIONS}
    conv_strategy = check_conv_strategy(options.get("conv_strategy", "auto"))
    strategy = conv_strategy if kind == "conv2d" else options.get("strategy", "auto")
    if strategy != "auto":
        out["strategy"] = strategy
    if options.get("d") is not None:
        out["d"] = options["d"]
    if kind in ("lstm", "gru") and options.get("tensorize_hidden", False):
        out["tensorize_hidden"] = True
    return out


def check_layer_kinds(layers: Any) -> tuple[str, ...]:
    """``tensorize``'s ``layers=`` as a tuple of `LAYER_KINDS` (one kind may be given as a str)."""
    kinds = (layers,) if isinstance(layers, str) else tuple(layers)
    if not kinds or any(k not in LAYER_KINDS for k in kinds):
        raise ValueError(
            f"layers must be a non-empty sequence of {', '.join(map(repr, LAYER_KINDS))}; "
            f"got {layers!r}"
        )
    return kinds


def globs(value: Any, name: str) -> tuple[str, ...] | None:
    """``include`` / ``exclude`` as a tuple of glob strings (None: no filter)."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(g, str) for g in value):
        return tuple(value)
    raise TypeError(f"{name} must be a glob string or a sequence of them; got {value!r}")


class LayerChooser:
    """One ``tensorize`` call's decisions over the candidate layers of a model.

    Parameters
    ----------
    names : every name of the model a glob may match (module or layer names)
    defaults : the call's options for every layer (``format`` and ``rank`` included)
    min_params, include, exclude, overrides : as ``tensorize`` takes them
    overridable : the option names ``overrides`` may set (None: any; the layer class checks them)
    what : what ``names`` are, for messages ("module", "layer")
    hints : the model's own per-layer defaults (a zoo model's ``tensorize_hints``, e.g.
        ``{"hidden.0": {"in_shape": (1, 28, 28)}}``): below ``overrides``, above ``defaults``;
        a hint that does not apply to a layer (an ``in_shape`` on a layer that is not Linear) is
        ignored, where the same option in ``overrides`` is an error.

    ``in_shape`` (a hint or an override of a Linear layer): the input is a flattened array of that
    shape (row-major, e.g. an image ``(C, H, W)``); the layer's modes are then
    `tedepr.shapes.axis_modes`, which never mix two axes, unless ``in_modes`` is given too.
    """

    def __init__(
        self,
        names: Sequence[str],
        defaults: Mapping[str, Any],
        *,
        min_params: Any,
        include: Any,
        exclude: Any,
        overrides: Any,
        overridable: Sequence[str] | None = None,
        what: str = "layer",
        hints: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        self.defaults = {**defaults, "format": check_format(defaults["format"])}
        if isinstance(min_params, bool) or not isinstance(min_params, int) or min_params < 0:
            raise ValueError(f"min_params must be a non-negative int; got {min_params!r}")
        self.min_params = min_params
        self.include, self.exclude = globs(include, "include"), globs(exclude, "exclude")
        self.overrides = {} if overrides is None else overrides
        if not isinstance(self.overrides, Mapping) or not all(
            isinstance(g, str) and isinstance(kw, Mapping) for g, kw in self.overrides.items()
        ):
            raise TypeError(
                f"overrides must map glob strings to dicts of keyword arguments; got {overrides!r}"
            )
        for glob, kw in self.overrides.items():  # checked here, so each error names the pattern
            unknown = set() if overridable is None else set(kw) - set(overridable)
            if unknown:
                raise ValueError(
                    f"overrides[{glob!r}] may set {', '.join(map(repr, overridable))}; "
                    f"got {sorted(unknown)}"
                )
            if "conv_strategy" in kw:
                check_conv_strategy(kw["conv_strategy"], f"overrides[{glob!r}]['conv_strategy']")
        check_globs_match(self.include, names, "include", what)
        check_globs_match(self.exclude, names, "exclude", what)
        check_globs_match(self.overrides, names, "overrides", what)
        if hints is not None and not (
            isinstance(hints, Mapping) and all(isinstance(v, Mapping) for v in hints.values())
        ):
            raise TypeError(f"tensorize_hints must map layer names to dicts; got {hints!r}")
        self.hints = dict(hints or {})
        self.reasons: list[str] = []
        self.replaced: list[str] = []
        self._used: set[str] = set()

    @classmethod
    def for_call(
        cls, names: Sequence[str], format: Any, rank: Any, options: Mapping[str, Any], **kw: Any
    ) -> LayerChooser:
        """The chooser of one ``tensorize`` call: ``options`` holds the call's ``min_params``,
        ``include``, ``exclude``, ``overrides`` and `LAYER_OPTIONS` (``kw``: ``overridable``,
        ``what``, ``hints``)."""
        defaults = {"format": format, "rank": rank, **{k: options[k] for k in LAYER_OPTIONS}}
        globs_ = {k: options[k] for k in ("min_params", "include", "exclude", "overrides")}
        return cls(names, defaults, **globs_, **kw)

    def selected(self, name: str, label: str) -> bool:
        """Whether ``include`` / ``exclude`` let the candidate ``name`` (``label`` in messages)
        be tensorized."""
        if self.include is not None and not any(fnmatch.fnmatchcase(name, g) for g in self.include):
            self.skip(label, "not matched by include")
            return False
        if self.exclude is not None and any(fnmatch.fnmatchcase(name, g) for g in self.exclude):
            self.skip(label, "excluded")
            return False
        return True

    def options(
        self,
        name: str,
        label: str,
        kind: str,
        dense: int,
        features: tuple[int, int] | None = None,
    ) -> dict[str, Any] | None:
        """The options of the selected candidate ``name`` of ``kind`` (`LAYER_KINDS`) holding
        ``dense`` weights — ``format`` checked, an ``in_shape`` resolved to modes, the
        `LAYER_OPTIONS` made the layer's keywords (`layer_options`) — or None when
        ``min_params`` leaves it dense. ``features``: ``(in_features, out_features)`` of a Linear
        layer (None for other kinds)."""
        if dense < self.min_params:
            return self.skip(label, f"{dense} weights < min_params={self.min_params}")
        opts = dict(self.defaults)
        hint = dict(self.hints.get(name, {}))
        if features is None:
            hint.pop("in_shape", None)  # a model's hint for another kind of layer: not ours
        opts.update(hint)
        for glob, extra in self.overrides.items():
            if fnmatch.fnmatchcase(name, glob):
                opts.update(extra)
        opts["format"] = check_format(opts["format"])
        shape = opts.pop("in_shape", None)
        if shape is not None:
            if features is None:
                raise ValueError(f"in_shape applies to Linear layers only; {label} is not one")
            _axis_layout(opts, shape, features, label)
        return layer_options(kind, opts)

    def skip(self, label: str, why: str, *, warn: bool = False) -> None:
        """Record why ``label`` stays dense (and warn, for a reason the user did not choose)."""
        if warn:
            warnings.warn(f"tensorize leaves {label} dense: {why}", stacklevel=4)
        self.reasons.append(f"{label}: {why}")
        return None

    def build(
        self,
        name: str,
        label: str,
        kind: str,
        dense: int,
        make: Callable[[], Any],
        count: Callable[[Any], int],
        fmt: str,
    ) -> Any:
        """``make()``'s new layer for ``name``, or None under the fallback rule (module docstring);
        ``count(new)`` its weights. Any other error of ``make`` is raised naming the layer."""
        try:
            new = make()
        except RankBudgetError as exc:
            return self.skip(label, str(exc), warn=True)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"tensorize could not replace {label} ({kind}): {exc}") from exc
        weights = count(new)
        if weights >= dense:
            return self.skip(
                label,
                f"its {fmt!r} factorisation would hold {weights} weights, not fewer than the "
                f"dense {dense}",
                warn=True,
            )
        self._used.update(g for g in self.overrides if fnmatch.fnmatchcase(name, g))
        self.replaced.append(name)
        logger.info(
            "tensorize: %s %s -> %s (%d -> %d weights)",
            label,
            kind,
            type(new).__name__,
            dense,
            weights,
        )
        return new

    def finish(self, model: str, eligible: str) -> None:
        """Warn about ``overrides`` that matched no replaced layer; raise when nothing was replaced
        (``model`` names the model, ``eligible`` lists the layer kinds that could be)."""
        for glob in self.overrides:
            if glob not in self._used:
                warnings.warn(f"overrides pattern {glob!r} matched no replaced layer", stacklevel=3)
        if not self.replaced:
            detail = "; ".join(self.reasons[:12]) + ("; ..." if len(self.reasons) > 12 else "")
            raise ValueError(
                f"tensorize found no eligible layer to replace in {model} ("
                + (detail or f"it holds no {eligible}")
                + ")"
            )


def _axis_layout(opts: dict, shape: Any, features: tuple[int, int], label: str) -> None:
    """Set ``in_modes``/``out_modes`` of a Linear layer whose input is a flattened ``shape``."""
    import math

    n_in, n_out = features
    try:
        size = math.prod(int(a) for a in shape)
    except TypeError:
        raise TypeError(f"in_shape of {label} must be a sequence of ints; got {shape!r}") from None
    if size != n_in:
        raise ValueError(
            f"in_shape {tuple(shape)} of {label} holds {size} values, but the layer has "
            f"{n_in} input features"
        )
    if opts.get("in_modes") is not None:
        return  # explicit modes win
    auto_in, _ = auto_modes(n_in, n_out, opts.get("d"))
    in_modes = axis_modes(shape, len(auto_in))
    opts["in_modes"] = in_modes
    if opts.get("out_modes") is None:
        opts["out_modes"] = balanced_modes(n_out, len(in_modes))


# ---------------------------------------------------------------------------- the one tensorize
def tensorize(
    model: Any,
    format: str = "tt",
    rank: Any = 8,
    *,
    min_params: int = DEFAULT_MIN_PARAMS,
    include: Any = None,
    exclude: Any = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    layers: Sequence[str] = DEFAULT_LAYERS,
    decompose: bool = False,
    d: int | None = None,
    strategy: str = "auto",
    conv_strategy: str = "auto",
    tensorize_hidden: bool = False,
    params: Any = None,
    backend: str | None = None,
) -> Any:
    """A copy of ``model`` whose eligible dense layers are tensorized; ``model`` is not changed.

    The same signature (without ``backend``) and these rules are every backend's ``tensorize``
    (`bind`); ``backend`` (``"torch"``, ``"jax"``, or None: inferred from the model's type, as
    `tedepr.compress` does) picks the one that runs.

    Eligible: torch ``nn.Linear`` / JAX `Dense` (-> `TTLinear` & co.), ``nn.Conv2d`` / `Conv2d`
    (-> `TTConv2d` & co.), ``nn.LSTM`` / `LSTM` (-> `TensorizedLSTM`), ``nn.GRU`` / `GRU` (->
    `TensorizedGRU`, only when ``"gru"`` is in ``layers``) and ``nn.MultiheadAttention`` /
    `MultiheadAttention` (-> `TensorizedMultiheadAttention`). A transformer encoder layer is a
    container: its ``self_attn`` (kind ``"attention"``) and its ``linear1``/``linear2`` (kind
    ``"linear"``) are candidates of their own (torch ``layers.0.self_attn``, JAX
    ``layers/0/self_attn``), so globs, ``min_params`` and rank allocation treat them alike. The
    output projection inside an attention is only replaced together with its attention. A Flax
    NNX model goes to `tedepr.backends.jax.nnx.tensorize`.

    Parameters
    ----------
    model : torch ``nn.Module``, a JAX `tedepr.backends.jax.Model`, or a Flax NNX module
    format : {"tt", "tr", "tucker", "cp"}
    rank : int, tuple or float
        Every new layer's ranks (see `TTLinear`); a float is a per-layer parameter budget, the
        fraction of the layer's dense weights its cores may hold.
    min_params : int >= 0
        Layers with fewer dense weights than this stay dense.
    include, exclude : glob or sequence of globs, optional
        Layer names (torch: ``model.named_modules()``; JAX: the ``/``-joined layer names), matched
        with `fnmatch.fnmatchcase`: only layers matching ``include`` (default: all) and not
        ``exclude`` are tensorized; a glob that matches no layer is an error ("did you mean").
    overrides : ``{glob: {option: value}}``, optional
        Per-layer options: ``"format"``, ``"rank"``, ``"d"``, ``"strategy"``,
        ``"conv_strategy"``, ``"tensorize_hidden"``, ``"in_shape"``, ``"in_modes"``,
        ``"out_modes"`` (torch: also any argument of the new layer's class or of its
        ``from_dense``, e.g. ``{"classifier.*": {"rank": 4, "d": 2}, "*": {"weight_init":
        "he"}}``); every matching glob applies, later ones winning.
    layers : sequence of {"linear", "conv2d", "lstm", "gru", "attention"}
        Kinds of layers to replace (`LAYER_KINDS`); by default all but ``"gru"``.
    decompose : bool
        False (default): fresh exact variance-preserving cores. True: the trained dense weights
        are decomposed into the new cores (float64 TT-SVD / TR-SVD / HOSVD / CP-ALS of
        `tedepr.decompose` and `tedepr.decompose_conv`, at the ranks the layers were given).
        Torch: each new layer's ``decomposition_error`` is its relative Frobenius error. JAX:
        needs ``params`` and returns ``(model, params)`` — unchanged layers keep their params,
        biases are copied — with ``model.decomposition_error`` by weight path.
    d, strategy, conv_strategy, tensorize_hidden :
        Defaults for the new layers: the number of modes; the contraction strategy of the
        Linear, recurrent and attention maps; the convolutions' strategy (`CONV_STRATEGIES`);
        whether the recurrent layers' hidden maps are tensorized too (`layer_options`).
        ``overrides`` (and a zoo model's ``tensorize_hints``) take precedence.
    params : pytree, optional
        JAX only, with ``decompose=True``: the trained params of ``model`` (a JAX model does not
        hold its arrays). A torch module holds its weights: ``params`` must be None there.

    Returns
    -------
    The new model (torch: parameters on the replaced layers' devices and dtypes, same training
    mode; JAX: a `Model`, whose params come from its ``init`` or `transfer_params`), or
    ``(model, params)`` for a JAX ``decompose=True``.

    Raises
    ------
    ValueError
        When no layer would be replaced (the message gives each candidate's reason), and for a
        bad argument (naming it).

    Notes
    -----
    A layer whose factorisation would not hold fewer weights than the dense layer, or whose float
    rank budget cannot be met even at rank 1, stays dense with a warning (the rule of every
    backend, `LayerChooser`). Layers that are already tensorized are left as they are.
    """
    from .compression import backend_module

    module = backend_module(backend, model, "tensorize")
    return module.tensorize(
        model,
        format,
        rank,
        min_params=min_params,
        include=include,
        exclude=exclude,
        overrides=overrides,
        layers=layers,
        decompose=decompose,
        d=d,
        strategy=strategy,
        conv_strategy=conv_strategy,
        tensorize_hidden=tensorize_hidden,
        params=params,
    )


def check_tensorize_args(arguments: dict[str, Any], *, holds_weights: bool) -> dict[str, Any]:
    """``tensorize``'s arguments checked once (the rest — ``format``, ``min_params``, globs,
    ``overrides`` — by `LayerChooser`): ``layers`` as a tuple of kinds, ``decompose`` a bool,
    ``conv_strategy`` one of `CONV_STRATEGIES`, ``tensorize_hidden`` a bool, and ``params`` given
    exactly with ``decompose=True`` where a model does not hold its weights (``holds_weights``
    False: JAX) and never where it does (torch)."""
    out = dict(arguments)
    out["layers"] = check_layer_kinds(out["layers"])
    for flag in ("decompose", "tensorize_hidden"):
        if not isinstance(out[flag], bool):
            raise TypeError(f"{flag} must be a bool; got {type(out[flag]).__name__}")
    check_conv_strategy(out["conv_strategy"])
    decompose, params = out["decompose"], out["params"]
    if holds_weights and params is not None:
        raise ValueError(
            "params must be None for a torch module (it holds its weights; "
            "tensorize(decompose=True) decomposes them); params= is for a JAX Model"
        )
    if not holds_weights and decompose and params is None:
        raise ValueError(
            "decompose=True needs params= (the trained params of model: a JAX model does not hold "
            "its arrays)"
        )
    if not holds_weights and params is not None and not decompose:
        raise ValueError(
            "params= is for decompose=True; without it the new layers' params come from "
            "model.init or transfer_params"
        )
    return out


def bind(implementation: Callable[..., Any], module: str, *, holds_weights: bool) -> Callable:
    """A backend's ``tensorize`` made from the front `tensorize` (`tedepr.api.backend_entry`): the
    same signature without ``backend``, the same documentation; the arguments checked once
    (`check_tensorize_args`), then ``implementation(model, format, rank, **options)`` does the
    backend's work. ``holds_weights``: whether the backend's models hold their arrays (torch) or
    take ``params`` (JAX)."""

    def run(arguments: dict[str, Any]):
        return implementation(**check_tensorize_args(arguments, holds_weights=holds_weights))

    return backend_entry(tensorize, run, module)
