"""Flax NNX for JAX users: tensorized layers as ``nnx.Module`` s, and `tensorize`, `compress`,
`score` and `fit` on a model the user wrote in Flax NNX.

The NNX layers keep this backend's pure layer dataclasses underneath: a module holds the layer's
static configuration (``module.layer``, e.g. a `tedepr.backends.jax.TTLinear`), its cores and bias
as ``nnx.Param`` and its pruning masks as `Mask` (an ``nnx.Variable`` that is not trained, so
``nnx.grad``/``nnx.Optimizer`` leave it alone), and its ``__call__`` is the pure ``layer.apply``::

    from flax import nnx
    from tedepr.backends.jax import nnx as tnnx

    layer = tnnx.TTLinear(784, 300, rank=8, rngs=nnx.Rngs(0))
    y = nnx.jit(lambda m, x: m(x))(layer, x)        # x (..., 784) -> (..., 300)

A user's model (any nesting of attributes, ``nnx.List``/``nnx.Dict``, ``nnx.Sequential``) is
bridged to the backend's internal representation — a `Model` of named layers, a params pytree and
a forward that runs the user's ``__call__`` with each ``nnx.Linear`` and 2-D ``nnx.Conv`` routed to
the pipeline's layer — so the one JAX pipeline (budget, tensorize, scores, guards, rescale, masks,
report) and the one training loop run on it unchanged; the results come back as NNX models. Other
parameterised modules (``nnx.LayerNorm``, a free ``nnx.Param``, ...) ride along as one opaque,
trainable, never-pruned part.

Layouts: ``nnx.Linear.kernel`` is ``(in, out)``, as this backend's `Dense` weight; the pruning core
sees it in the canonical ``(out, in)`` order (``CoreInfo.layout``), so the masks equal the torch
backend's for the same weights and seed. ``nnx.Conv`` is NHWC with a ``(kh, kw, C_in/g, C_out)``
kernel: the bridge holds it as the pure NCHW `Conv2d` (kernel ``(C_out, C_in/g, kh, kw)``, torch's)
and transposes the images on the way in and out; the NNX convolutions here take NHWC images too.
An ``nnx.Conv`` maps when it is 2-D, has no input dilation or kernel mask, and its padding is
symmetric (``"VALID"``, ints, equal pairs, or ``"SAME"`` at stride 1).

``nnx.BatchNorm`` (one int feature axis, scale and bias on) is routed to the pure `BatchNorm`
with its features moved to axis 1: the pipeline picks the mode (batch statistics when scoring and
fitting, running ones when evaluating — the module's ``use_running_average`` is not consulted),
the running statistics come back into the returned model; flax's ``momentum`` ``m`` is the pure
layer's ``1 − m``, and the running variance follows torch's rule (unbiased batch variance).

``nnx.MultiHeadAttention`` (equal feature sizes, no decode cache, flax's attention function) is
routed to the pure `MultiheadAttention` (batch first): flax's per-head kernels ``(E, H, D)`` /
``(H, D, E)`` are the pure layer's ``(E, E)`` projections (head ``h`` in columns ``h·D…``), and
back. A `TransformerEncoderLayer` of this module (flax submodules) is routed whole to the pure
`TransformerEncoderLayer`; its submodules go with it. An ``nnx.LayerNorm`` or a free
``nnx.Param`` that the model's ``layer_order`` hint names becomes a layer of its own (`LayerNorm`,
`Parameter`), as in the `Model` zoo; otherwise they ride along opaque. An ``nnx.Dropout`` that
never draws (rate 0 or ``deterministic=True``) is carried without its random stream and given
back.

An ``nnx.RNN`` over an ``nnx.LSTMCell`` or ``nnx.OptimizedLSTMCell`` (flax's default
``sigmoid``/``tanh``, no ``carry_init``) is routed whole — its cell and random stream with it — to
the pure one-layer `LSTM` (``batch_first = not time_major``): flax's per-gate kernels (``ii, if_,
ig, io`` input→hidden without bias, ``hi, hf, hg, ho`` hidden→hidden with bias;
``OptimizedLSTMCell``'s ``dense_i``/``dense_h`` hold them side by side already) become
``weight_ih_l0 (in, 4H)`` / ``weight_hh_l0 (H, 4H)`` in the gate order i, f, g, o (the transposes
of torch's packed ``(4H, in)``/``(4H, H)``). flax has one bias ``b`` where the pure layer (torch's
``nn.LSTM``) has two, which the gates see only as their sum: ``bias_ih_l0 = 0``, ``bias_hh_l0 =
b`` in, ``b = bias_ih_l0 + bias_hh_l0`` back out — the same function both ways (fit then trains
both biases, as torch does). The route keeps ``nnx.RNN``'s call: ``time_major``,
``return_carry`` (flax's carry ``(c, h)``), ``reverse``/``keep_order``, ``seq_lengths`` with
``reverse``, ``initial_carry``, extra batch axes (``_rnn_call``, which the `RNN` module here shares);
``seq_lengths`` with ``return_carry=True`` is refused (flax takes each sequence's carry at its
last valid step). A dense, unpruned result goes back into the user's ``nnx.RNN``; a tensorized or
pruned one is an `RNN` of this module, called as ``nnx.RNN``.

Stacked LSTM layers: a `StackedLSTM` of this module (``nn.LSTM(num_layers=, dropout=)`` in NNX:
an ``nnx.List`` ``layers`` of ``nnx.RNN(nnx.OptimizedLSTMCell)`` and an ``nnx.Dropout`` between
them, torch's call) is routed whole to ONE stacked pure `LSTM`, its maps named as torch's and the
`Model` zoo's (``lstm/weight_ih_l0``, ``lstm/weight_hh_l0``, ``lstm/weight_ih_l1``, ...); its
dropout is the pure layer's (drawn by the pipeline in training). A dense, unpruned result is a
`StackedLSTM` again, a pruned or tensorized one an `LSTM` of this module (called the same way).
The Flax zoo's ``lstm`` with ``num_layers > 1`` is one. A stack of ``nnx.RNN`` s the user wrote
without it is routed as separate one-layer LSTMs, named by their paths.

Limits (clear errors, never a silent result): besides those layers, `compress`/`score`/`fit`
carry ``nnx.Param`` only — a model holding other state (the random stream of an ``nnx.Dropout``
that draws, a ``BatchNorm`` that does not map) is refused, and so are weight layers the pipeline
cannot count yet (``nnx.Embed``, ``nnx.ConvTranspose``, an ``nnx.Conv`` or attention that does
not map) and the recurrent modules that do not map exactly: an ``nnx.RNN`` over an
``nnx.GRUCell`` (flax 0.12's has no hidden bias, ``n = tanh(x W_in + b_in + r ⊙ h W_hn)``, where
torch's GRU — the pipeline's — trains ``b_hn`` in ``r ⊙ (h W_hn + b_hn)``), an ``nnx.SimpleCell``
or another cell, other gate/activation functions, a ``carry_init``, ``nnx.Bidirectional``, a cell
stepped outside an ``nnx.RNN``. The model is called as ``model(x)``.

A model may carry hints as plain attributes (``layer_order``, ``weight_inits``,
``tensorize_hints``, ``zoo``; see ``_hints``): the Flax zoo's models do
(`tedepr.backends.jax.flax_zoo`), so the bridge sees them exactly as the `Model` zoo's.
`flax_export` / `flax_import` carry an NNX model through `tedepr.save` / `tedepr.load`.

Importing this module imports flax; ``import tedepr.backends.jax`` alone does not.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn.recurrent import flip_sequences

from . import attention as _attn
from . import conv as _conv
from . import layers as _layers
from . import recurrent as _recurrent
from .compress import CompressionResult
from .compress import compress as _compress
from .compress import score as _score
from .masking import is_prunable, normalize_masks
from .models import Model, Parameter
from .tensorize import DEFAULT_MIN_PARAMS, transfer_params
from .tensorize import tensorize as _tensorize
from .training import fit as _fit

__all__ = [
    "Mask",
    "LayerModule",
    "Dense",
    "TensorizedLinear",
    "TTLinear",
    "TRLinear",
    "TuckerLinear",
    "CPLinear",
    "Conv",
    "TensorizedConv2d",
    "TTConv2d",
    "TRConv2d",
    "TuckerConv2d",
    "CPConv2d",
    "TransformerEncoderLayer",
    "RNN",
    "RNNOptions",
    "StackedLSTM",
    "LSTM",
    "wrap",
    "tensorize",
    "compress",
    "score",
    "fit",
    "to_model",
    "FlaxBridge",
    "FlaxCompressionResult",
    "LINEAR_CLASSES",
    "CONV_CLASSES",
]


class Mask(nnx.Variable):
    """A fixed pruning mask (bool array, True keeps an entry). Not an ``nnx.Param``: gradients and
    optimizers skip it; ``nnx.state(model, Mask)`` lists a model's masks."""


# ------------------------------------------------------------------------------------------ layers
def _key(rngs):
    if isinstance(rngs, nnx.Rngs):
        return rngs.params()
    if isinstance(rngs, int) and not isinstance(rngs, bool):
        return jax.random.key(rngs)
    raise TypeError(f"rngs must be an nnx.Rngs or an int seed; got {type(rngs).__name__}")


def _store(value, kind):
    """A params/masks entry as NNX state: a tuple of arrays becomes an ``nnx.List`` of variables,
    a dict (a composite layer's sublayer, e.g. ``self_attn``) an ``nnx.Dict`` of entries."""
    if isinstance(value, Mapping):
        return nnx.Dict({k: _store(v, kind) for k, v in value.items()})
    if isinstance(value, (tuple, list)):
        return nnx.List([kind(jnp.asarray(v)) for v in value])
    return kind(jnp.asarray(value))


def _read(value):
    if isinstance(value, nnx.Dict):
        return {k: _read(value[k]) for k in value}
    if isinstance(value, nnx.List):
        return tuple(v[...] for v in value)
    return value[...]


class LayerModule(nnx.Module):
    """An NNX module around one pure layer of this backend (``layer.init``/``layer.apply``).

    Parameters
    ----------
    layer : a layer of `tedepr.backends.jax` (`Dense`, `TTLinear`, ...): its static configuration
    params : the layer's params (the dict its ``init`` returns); each array becomes an ``nnx.Param``
        attribute of the same key (a tuple, e.g. ``cores``, an ``nnx.List`` of them)
    masks : optional nested masks like ``params`` (bool arrays; ``None`` entries are dense)

    ``module(x)`` is ``layer.apply(params, x, masks)``: jit-, grad- and vmap-clean.
    """

    def __init__(self, layer, params: Mapping[str, Any], masks: Mapping[str, Any] | None = None):
        if not (hasattr(layer, "init") and hasattr(layer, "apply")):
            raise TypeError(
                f"layer must be a tedepr.backends.jax layer (with init/apply); got "
                f"{type(layer).__name__}"
            )
        if not isinstance(params, Mapping):
            raise TypeError(
                f"params must be the dict layer.init returns; got {type(params).__name__}"
            )
        expected = jax.eval_shape(layer.init, jax.random.key(0))
        params = _tuples(params)
        got = jax.tree.map(lambda a: tuple(jnp.shape(a)), params)
        want = jax.tree.map(lambda a: tuple(a.shape), expected)
        if got != want:
            raise ValueError(
                f"params must have the shapes {type(layer).__name__}.init gives ({want}); got {got}"
            )
        self.layer = layer
        self.param_keys = tuple(params)
        for k in self.param_keys:
            setattr(self, k, _store(params[k], nnx.Param))
        masks = _layer_masks(layer, params, masks) if masks else None
        self.masks = nnx.Dict({k: _store(v, Mask) for k, v in masks.items()}) if masks else None

    def pure_params(self) -> dict:
        """The layer's params (the arrays, as ``layer.init`` lays them out)."""
        return {k: _read(getattr(self, k)) for k in self.param_keys}

    def pure_masks(self) -> dict | None:
        """The layer's masks like `pure_params` (only the masked entries), or None."""
        if self.masks is None:
            return None
        return {k: _read(self.masks[k]) for k in self.masks}

    #: convolutions take NHWC images like ``nnx.Conv`` (the pure layer underneath is NCHW)
    CHANNELS_LAST = False

    def __call__(self, x):
        if self.CHANNELS_LAST:
            return _channels_last(self.layer, self.pure_params(), x, self.pure_masks())
        return self.layer.apply(self.pure_params(), x, masks=self.pure_masks())

    # the static facts of the layer underneath
    def factorized(self, masked: bool = True):
        """The `tedepr.Factorized` of the current cores (masked unless ``masked=False``)."""
        return self.layer.factorized(self.pure_params(), self.pure_masks() if masked else None)

    @property
    def in_features(self) -> int:
        """Input features (a convolution's input channels)."""
        return getattr(self.layer, "in_features", None) or self.layer.in_channels

    @property
    def out_features(self) -> int:
        """Output features (a convolution's output channels)."""
        return getattr(self.layer, "out_features", None) or self.layer.out_channels

    @property
    def num_weights(self) -> int:
        """Prunable entries (core entries of a tensorized layer, weights of a dense one)."""
        return self.layer.num_weights

    @classmethod
    def wrap(cls, layer, params, masks=None):
        """This class around an existing pure layer and its params (and masks)."""
        return (
            cls(layer, params, masks) if cls is LayerModule else cls(_wrap=(layer, params, masks))
        )


def _tuples(params):
    """Lists of a (nested) params dict as tuples, as the pure layers' ``init`` gives them."""
    return {
        k: _tuples(v) if isinstance(v, Mapping) else tuple(v) if isinstance(v, list) else v
        for k, v in params.items()
    }


def _layer_masks(layer, params, masks, prefix: str = "") -> dict:
    """Only the masked entries of a layer's nested masks, tuples filled with all-True arrays (a
    composite layer's masks nest by sublayer name, as its params)."""
    out = {}
    for k, m in dict(masks).items():
        if k not in params:
            raise ValueError(f"masks has an entry {prefix}{k!r} that is not a param of the layer")
        if isinstance(params[k], Mapping):  # a sublayer of a composite layer
            if m is not None:
                if not isinstance(m, Mapping):
                    raise ValueError(f"masks[{prefix}{k!r}] must be a dict like the sublayer's")
                sub = _layer_masks(layer, params[k], m, f"{prefix}{k}/")
                if sub:
                    out[k] = sub
            continue
        if m is None or (isinstance(m, (tuple, list)) and all(e is None for e in m)):
            continue  # dense
        if not is_prunable(f"{k}/0" if isinstance(params[k], tuple) else k):
            raise ValueError(
                f"masks[{prefix}{k!r}]: only cores and weights can be masked, not biases or "
                "normalisation parameters"
            )
        if isinstance(m, (tuple, list)):
            m = tuple(
                jnp.ones(jnp.shape(p), bool) if e is None else jnp.asarray(e, bool)
                for e, p in zip(m, params[k], strict=True)
            )
        out[k] = m if isinstance(m, tuple) else jnp.asarray(m, bool)
    return out


class Dense(LayerModule):
    """``y = x @ kernel + bias`` with a pruning mask: what `compress` makes of an ``nnx.Linear``
    whose weights it prunes (format=None, or a layer left dense). Params ``weight`` ``(in, out)``
    (``nnx.Linear.kernel``'s layout) and ``bias``.

    ``Dense(in_features, out_features, bias=True, *, rngs, weight_init="lecun")`` draws a fresh
    layer; ``wrap(layer, params, masks)`` wraps an existing one.
    """

    def __init__(
        self,
        in_features: int | None = None,
        out_features: int | None = None,
        bias: bool = True,
        *,
        rngs=None,
        weight_init: str = "lecun",
        dtype=jnp.float32,
        _wrap=None,
    ):
        if _wrap is not None:  # LayerModule.wrap: an existing layer
            super().__init__(*_wrap)
            return
        layer = _layers.Dense(in_features, out_features, bias, weight_init)
        super().__init__(layer, layer.init(_key(rngs), dtype))


class TensorizedLinear(LayerModule):
    """An NNX tensorized Linear: the arguments of `tedepr.backends.jax.TensorizedLinear` (``rank``,
    ``in_modes``, ``out_modes``, ``bias``, ``d``, ``weight_init``, ``std``, ``strategy``) plus
    ``rngs`` (an ``nnx.Rngs`` or an int seed) and ``dtype``. Cores are drawn with the exact
    variance-preserving init (docs/method.md §3)."""

    PURE: type = _layers.TensorizedLinear

    def __init__(
        self,
        in_features: int | None = None,
        out_features: int | None = None,
        rank=8,
        in_modes=None,
        out_modes=None,
        bias: bool = True,
        *,
        rngs=None,
        dtype=jnp.float32,
        _wrap=None,
        **options,
    ):
        if _wrap is not None:  # LayerModule.wrap: an existing layer
            super().__init__(*_wrap)
            return
        layer = self.PURE(in_features, out_features, rank, in_modes, out_modes, bias, **options)
        super().__init__(layer, layer.init(_key(rngs), dtype))


class TTLinear(TensorizedLinear):
    """A Linear layer whose weight is a TT-matrix (pure layer: `tedepr.backends.jax.TTLinear`)."""

    PURE = _layers.TTLinear


class TRLinear(TensorizedLinear):
    """A Linear layer whose weight is a tensor ring (`tedepr.backends.jax.TRLinear`)."""

    PURE = _layers.TRLinear


class TuckerLinear(TensorizedLinear):
    """A Linear layer whose weight is a Tucker tensor (`tedepr.backends.jax.TuckerLinear`)."""

    PURE = _layers.TuckerLinear


class CPLinear(TensorizedLinear):
    """A Linear layer whose weight is a CP tensor (`tedepr.backends.jax.CPLinear`)."""

    PURE = _layers.CPLinear


def _channels_last(layer, params, x, masks=None):
    """A pure NCHW convolution applied to NHWC images (``nnx.Conv``'s layout)."""
    if x.ndim != 4:
        raise ValueError(f"x must be NHWC images (N, H, W, C); got shape {tuple(x.shape)}")
    y = layer.apply(params, jnp.transpose(x, (0, 3, 1, 2)), masks=masks)
    return jnp.transpose(y, (0, 2, 3, 1))


class Conv(LayerModule):
    """A dense 2-D convolution with a pruning mask, on NHWC images like ``nnx.Conv``: what
    `compress` makes of an ``nnx.Conv`` whose kernel it prunes. The pure layer underneath is
    `tedepr.backends.jax.Conv2d` (its ``weight`` ``(C_out, C_in/groups, kh, kw)``: torch's
    layout, the pruning core's canonical order)."""

    CHANNELS_LAST = True

    def __init__(
        self,
        in_channels: int | None = None,
        out_channels: int | None = None,
        kernel_size=3,
        *,
        rngs=None,
        dtype=jnp.float32,
        _wrap=None,
        **options,
    ):
        if _wrap is not None:  # LayerModule.wrap: an existing layer
            super().__init__(*_wrap)
            return
        options.setdefault("weight_init", "lecun")
        layer = _conv.Conv2d(in_channels, out_channels, kernel_size, **options)
        super().__init__(layer, layer.init(_key(rngs), dtype))


class TensorizedConv2d(LayerModule):
    """An NNX tensorized 2-D convolution on NHWC images (``nnx.Conv``'s layout): the arguments of
    `tedepr.backends.jax.TensorizedConv2d` (``in_channels, out_channels, kernel_size``, keyword
    ``rank``, ``stride``, ``padding``, ``dilation``, ``groups``, ``bias``, ``strategy``, ...) plus
    ``rngs`` and ``dtype``."""

    PURE: type = _conv.TensorizedConv2d
    CHANNELS_LAST = True

    def __init__(
        self,
        in_channels: int | None = None,
        out_channels: int | None = None,
        kernel_size=3,
        *,
        rngs=None,
        dtype=jnp.float32,
        _wrap=None,
        **options,
    ):
        if _wrap is not None:  # LayerModule.wrap: an existing layer
            super().__init__(*_wrap)
            return
        options.setdefault("weight_init", "lecun")
        layer = self.PURE(in_channels, out_channels, kernel_size, **options)
        super().__init__(layer, layer.init(_key(rngs), dtype))


class TTConv2d(TensorizedConv2d):
    """TT convolution (pure layer: `tedepr.backends.jax.TTConv2d`), NHWC."""

    PURE = _conv.TTConv2d


class TRConv2d(TensorizedConv2d):
    """TR convolution (`tedepr.backends.jax.TRConv2d`), NHWC."""

    PURE = _conv.TRConv2d


class TuckerConv2d(TensorizedConv2d):
    """Tucker-2 convolution (`tedepr.backends.jax.TuckerConv2d`), NHWC."""

    PURE = _conv.TuckerConv2d


class CPConv2d(TensorizedConv2d):
    """CP convolution (`tedepr.backends.jax.CPConv2d`), NHWC."""

    PURE = _conv.CPConv2d


class TransformerEncoderLayer(nnx.Module):
    """``nn.TransformerEncoderLayer`` in Flax NNX, batch first (``x (B, T, d_model)``): an
    ``nnx.MultiHeadAttention`` ``self_attn``, ``nnx.Linear`` ``linear1``/``linear2``,
    ``nnx.LayerNorm`` ``norm1``/``norm2`` and an ``nnx.Dropout`` ``dropout`` where torch has it.

    The Flax bridge routes the whole module to the pipeline's
    `tedepr.backends.jax.TransformerEncoderLayer` (one layer, as in the `Model` zoo and torch),
    so `compress` tensorizes its attention and feed-forward maps and prunes them; called directly
    it is plain Flax (``model.eval()`` switches a nonzero dropout off).

    Parameters: torch's (``d_model, nhead, dim_feedforward, dropout, activation`` ``"relu"`` or
    ``"gelu"``, ``layer_norm_eps, norm_first, bias``), keyword ``rngs`` (an ``nnx.Rngs``), and
    ``dtype``. Flax's default inits (the Flax zoo overwrites them with the `Model` zoo's).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.0,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
        norm_first: bool = False,
        bias: bool = True,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"rngs must be an nnx.Rngs; got {type(rngs).__name__}")
        # the pure layer checks the options (names, ranges) as torch does
        _attn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, True, norm_first
        )
        drop = rngs if dropout > 0 else None
        self.self_attn = nnx.MultiHeadAttention(
            nhead,
            d_model,
            use_bias=bias,
            dropout_rate=dropout,
            decode=False,
            param_dtype=dtype,
            rngs=rngs,
            keep_rngs=dropout > 0,
        )
        self.linear1 = nnx.Linear(
            d_model, dim_feedforward, use_bias=bias, param_dtype=dtype, rngs=rngs
        )
        self.linear2 = nnx.Linear(
            dim_feedforward, d_model, use_bias=bias, param_dtype=dtype, rngs=rngs
        )
        norm = functools.partial(
            nnx.LayerNorm, epsilon=layer_norm_eps, use_fast_variance=False, param_dtype=dtype
        )
        self.norm1, self.norm2 = norm(d_model, rngs=rngs), norm(d_model, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=drop)
        self.activation, self.norm_first = activation, norm_first

    def _act(self, x):
        return jax.nn.gelu(x, approximate=False) if self.activation == "gelu" else jax.nn.relu(x)

    def __call__(self, x):
        def sa(z):
            return self.dropout(self.self_attn(z))

        def ff(z):
            return self.dropout(self.linear2(self.dropout(self._act(self.linear1(z)))))

        if self.norm_first:
            x = x + sa(self.norm1(x))
            return x + ff(self.norm2(x))
        x = self.norm1(x + sa(x))
        return self.norm2(x + ff(x))


# ------------------------------------------------------------------------------------------ recurrent
@dataclass(frozen=True)
class RNNOptions:
    """The ``nnx.RNN`` options a recurrent layer keeps through the bridge: ``time_major`` (inputs
    ``(T, *batch, F)``; else ``(*batch, T, F)``), ``return_carry`` (return ``(carry, outputs)``),
    ``reverse`` (run from the last step; with ``keep_order`` the outputs are flipped back)."""

    time_major: bool = False
    return_carry: bool = False
    reverse: bool = False
    keep_order: bool = False


def _rnn_call(
    run,
    options: RNNOptions,
    name: str,
    inputs,
    *,
    initial_carry=None,
    seq_lengths=None,
    return_carry=None,
    time_major=None,
    reverse=None,
    keep_order=None,
    rngs=None,
):
    """``nnx.RNN.__call__`` (same arguments and results) over a pure recurrent layer of this
    backend: ``run(x, state) -> (outputs, final)`` applies it to ``x`` ``(T, B, F)`` when
    ``options.time_major``, else ``(B, T, F)`` (the pure layer's ``batch_first``).

    Call-time ``return_carry``/``time_major``/``reverse``/``keep_order`` override ``options`` as
    in flax; ``seq_lengths`` flips each padded sequence within its length when ``reverse`` (flax's
    ``flip_sequences``), and is refused with ``return_carry=True`` (flax then picks each sequence's
    carry at its last valid step: the pure layer gives the last step's only). The carry is flax's:
    ``(c, h)`` for an LSTM (the pure layer's state is ``(h, c)``), ``h`` for a GRU, shaped
    ``(*batch, H)``; no ``initial_carry`` is zeros (flax's default ``initialize_carry``). ``rngs``
    is not used (it only feeds a cell's carry initializer, which the bridge requires to be zeros).
    """
    del rngs
    o = options
    return_carry = o.return_carry if return_carry is None else return_carry
    time_major = o.time_major if time_major is None else time_major
    reverse = o.reverse if reverse is None else reverse
    keep_order = o.keep_order if keep_order is None else keep_order
    x = jnp.asarray(inputs)
    if x.ndim < 2:
        raise ValueError(
            f"recurrent layer {name!r}: inputs must be (*batch, time, features) (time first when "
            f"time_major); got shape {tuple(x.shape)}"
        )
    if seq_lengths is not None and return_carry:
        raise ValueError(
            f"recurrent layer {name!r}: seq_lengths with return_carry=True is not supported "
            "under tedepr's Flax bridge (flax takes each sequence's carry at its last valid step; "
            "the pipeline's recurrent layer gives the last step's); drop one of them"
        )
    time_axis = 0 if time_major else x.ndim - 2
    batch_shape = x.shape[1:-1] if time_major else x.shape[:-2]
    if reverse:
        x = flip_sequences(x, seq_lengths, len(batch_shape), time_major)
    steps = x.shape[time_axis]
    seq = jnp.reshape(jnp.moveaxis(x, time_axis, 0), (steps, -1, x.shape[-1]))  # (T, B, F)
    state = None
    if initial_carry is not None:
        if isinstance(initial_carry, (tuple, list)):  # flax's LSTM carry (c, h): the layer's (h, c)
            c, h = (jnp.reshape(a, (seq.shape[1], -1)) for a in initial_carry)
            state = (h, c)
        else:
            state = jnp.reshape(initial_carry, (seq.shape[1], -1))
    if not o.time_major:
        seq = jnp.swapaxes(seq, 0, 1)
    out, final = run(seq, state)
    if not o.time_major:
        out = jnp.swapaxes(out, 0, 1)
    out = jnp.moveaxis(jnp.reshape(out, (steps, *batch_shape, out.shape[-1])), 0, time_axis)
    if reverse and keep_order:
        out = flip_sequences(out, seq_lengths, len(batch_shape), time_major)
    if not return_carry:
        return out

    def unbatch(a):
        return jnp.reshape(a, (*batch_shape, a.shape[-1]))

    carry = (unbatch(final[1]), unbatch(final[0])) if isinstance(final, tuple) else unbatch(final)
    return carry, out


_RECURRENT = (_recurrent.LSTM, _recurrent.GRU, _recurrent.TensorizedLSTM, _recurrent.TensorizedGRU)


class RNN(LayerModule):
    """An ``nnx.RNN`` over a pure recurrent layer of this backend (`LSTM`, `TensorizedLSTM`,
    `GRU`, `TensorizedGRU`, one layer), with its pruning masks: what `compress` and `tensorize`
    make of a user's ``nnx.RNN(nnx.LSTMCell)`` whose maps they tensorize or prune (a dense,
    unpruned one goes back to being the user's ``nnx.RNN``).

    Called as ``nnx.RNN``: ``module(inputs, *, initial_carry=None, seq_lengths=None,
    return_carry=None, time_major=None, reverse=None, keep_order=None, rngs=None)`` -> outputs
    ``(*batch, T, H)`` (or ``(carry, outputs)``; see ``_rnn_call``). ``time_major`` defaults to
    ``not layer.batch_first``; ``return_carry``, ``reverse``, ``keep_order`` are the module's
    defaults, as ``nnx.RNN``'s constructor options.

    ``RNN.wrap(layer, params, masks=None, options=None)`` (``options``: an `RNNOptions`, whose
    ``time_major`` must be ``not layer.batch_first``).
    """

    def __init__(self, layer, params, masks=None, options: RNNOptions | None = None):
        if not isinstance(layer, _RECURRENT):
            raise TypeError(
                "layer must be a recurrent layer of tedepr.backends.jax (LSTM, GRU, "
                f"TensorizedLSTM, TensorizedGRU); got {type(layer).__name__}"
            )
        if layer.num_layers != 1:
            raise ValueError(
                "layer.num_layers must be 1 (an nnx.RNN runs one layer; tnnx.LSTM runs a "
                f"stacked LSTM, called as a StackedLSTM); got {layer.num_layers}"
            )
        options = RNNOptions(time_major=not layer.batch_first) if options is None else options
        if not isinstance(options, RNNOptions) or options.time_major == layer.batch_first:
            raise ValueError(
                f"options must be an RNNOptions with time_major={not layer.batch_first} (the "
                f"layer's batch_first={layer.batch_first}); got {options!r}"
            )
        super().__init__(layer, params, masks)
        self.options = options

    @classmethod
    def wrap(cls, layer, params, masks=None, options: RNNOptions | None = None):
        return cls(layer, params, masks, options)

    def __call__(self, inputs, **kwargs):
        params, masks = self.pure_params(), self.pure_masks()

        def run(x, state):
            return self.layer.apply(params, x, masks, state)

        return _rnn_call(run, self.options, type(self.layer).__name__, inputs, **kwargs)


def _stack_call(run, num_layers: int, x, state=None):
    """torch's ``nn.LSTM`` call over a pure `LSTM`/`TensorizedLSTM`: ``run(x, state) -> (outputs,
    final)`` applies it; ``state`` and the returned ``(h_n, c_n)`` are ``(num_layers, B, H)``
    each (the pure layer's one-layer state is ``(B, H)``: added/dropped here)."""
    if state is not None:
        h, c = (jnp.asarray(a) for a in state)
        state = (h[0], c[0]) if num_layers == 1 else (h, c)
    out, (h_n, c_n) = run(x, state)
    return out, ((h_n[None], c_n[None]) if num_layers == 1 else (h_n, c_n))


class StackedLSTM(nnx.Module):
    """``nn.LSTM(input_size, hidden_size, num_layers, dropout=...)`` in Flax NNX: ``layers`` an
    ``nnx.List`` of ``num_layers`` ``nnx.RNN(nnx.OptimizedLSTMCell)`` (layer ``k`` reads layer
    ``k − 1``'s outputs) and ``dropout`` an ``nnx.Dropout`` on the outputs of every layer but the
    top one — in training only, as torch's: ``model.eval()`` makes it deterministic.

    The Flax bridge routes the whole module (cells, dropout and its random stream) to the
    pipeline's one stacked `tedepr.backends.jax.LSTM`, so its maps carry torch's and the `Model`
    zoo's names — ``lstm/weight_ih_l0``, ``lstm/weight_hh_l0``, ``lstm/weight_ih_l1``, ... under an
    attribute ``lstm`` — one report row each, and under `compress`/`fit` the pipeline draws the
    dropout (the `Model` zoo's rule: a key per layer position). A dense, unpruned result is a
    `StackedLSTM` again; a pruned or tensorized one a `LSTM` of this module (called the same
    way). A stack of ``nnx.RNN`` s written in your own model (not this module) is still routed as
    separate one-layer LSTMs named by their paths (``rnns/0/weight_ih_l0``,
    ``rnns/1/weight_ih_l0``, ...), and an ``nnx.Dropout`` that draws between them is refused.

    Called as torch's ``nn.LSTM``: ``module(x, state=None) -> (outputs, (h_n, c_n))``; ``x`` is
    ``(B, T, input_size)`` (``(T, B, input_size)`` when ``batch_first=False``), outputs are the top
    layer's ``(B, T, H)`` (or ``(T, B, H)``), ``h_n``/``c_n`` every layer's last state
    ``(num_layers, B, H)``; ``state`` is the initial ``(h_0, c_0)`` in the same shapes (zeros when
    None). Note the order: torch's ``(h, c)``, where ``nnx.RNN``'s carry is ``(c, h)``.

    Parameters: torch's ``input_size, hidden_size, num_layers`` (default 1), ``dropout`` (default
    0, a float in [0, 1]), ``batch_first`` (default True, ``nnx.RNN``'s ``time_major=False``;
    torch's default is False), keyword ``rngs`` (an ``nnx.Rngs``: flax's default cell init and
    the dropout stream) and ``dtype``. Each cell is flax's ``OptimizedLSTMCell`` with its one
    bias (the bridge reads it as ``bias_ih = 0``, ``bias_hh =`` the bias; see `_rnn`).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        batch_first: bool = True,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"rngs must be an nnx.Rngs; got {type(rngs).__name__}")
        if not isinstance(batch_first, bool):
            raise TypeError(f"batch_first must be a bool; got {type(batch_first).__name__}")
        # the pure layer checks sizes, num_layers and dropout as torch does
        pure = _recurrent.LSTM(input_size, hidden_size, num_layers, dropout=dropout)
        self.input_size, self.hidden_size = pure.input_size, pure.hidden_size
        self.batch_first = batch_first
        self.layers = nnx.List(
            [
                nnx.RNN(
                    nnx.OptimizedLSTMCell(pure._n_in(k), hidden_size, param_dtype=dtype, rngs=rngs),
                    time_major=not batch_first,
                )
                for k in range(num_layers)
            ]
        )
        self.dropout = nnx.Dropout(pure.dropout, rngs=rngs if pure.stochastic else None)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def __call__(self, x, state=None):
        x = jnp.asarray(x)
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ValueError(
                f"x must have shape {layout} with input_size={self.input_size}; got "
                f"{tuple(x.shape)}"
            )
        h_n, c_n = [], []
        for k, rnn in enumerate(self.layers):
            carry = None if state is None else (state[1][k], state[0][k])  # flax's (c, h)
            (c, h), x = rnn(x, initial_carry=carry, return_carry=True)
            h_n.append(h)
            c_n.append(c)
            if k < self.num_layers - 1:
                x = self.dropout(x)
        return x, (jnp.stack(h_n), jnp.stack(c_n))


class LSTM(LayerModule):
    """An NNX module over the pipeline's stacked `tedepr.backends.jax.LSTM` or `TensorizedLSTM`
    (any ``num_layers``) with its pruning masks, called as a `StackedLSTM` (torch's
    ``nn.LSTM`` call: ``module(x, state=None) -> (outputs, (h_n, c_n))``): what `compress` and
    `tensorize` make of a `StackedLSTM` whose maps they prune or tensorize.

    Called directly it is deterministic (no dropout, as a compressed
    `TransformerEncoderLayer`'s `LayerModule`); under `fit` the pipeline draws the layer's
    dropout. ``LSTM.wrap(layer, params, masks=None)``.
    """

    def __init__(self, layer, params, masks=None):
        if not isinstance(layer, (_recurrent.LSTM, _recurrent.TensorizedLSTM)):
            raise TypeError(
                "layer must be an LSTM or TensorizedLSTM of tedepr.backends.jax; got "
                f"{type(layer).__name__}"
            )
        super().__init__(layer, params, masks)

    @classmethod
    def wrap(cls, layer, params, masks=None):
        return cls(layer, params, masks)

    def __call__(self, x, state=None):
        params, masks = self.pure_params(), self.pure_masks()

        def run(x, state):
            return self.layer.apply(params, x, masks, state)

        return _stack_call(run, self.layer.num_layers, x, state)


LINEAR_CLASSES = {"tt": TTLinear, "tr": TRLinear, "tucker": TuckerLinear, "cp": CPLinear}
CONV_CLASSES = {"tt": TTConv2d, "tr": TRConv2d, "tucker": TuckerConv2d, "cp": CPConv2d}
_WRAPPERS = {
    _conv.Conv2d: Conv,
    _conv.TTConv2d: TTConv2d,
    _conv.TRConv2d: TRConv2d,
    _conv.TuckerConv2d: TuckerConv2d,
    _conv.CPConv2d: CPConv2d,
    _layers.TTLinear: TTLinear,
    _layers.TRLinear: TRLinear,
    _layers.TuckerLinear: TuckerLinear,
    _layers.CPLinear: CPLinear,
    _layers.Dense: Dense,
}


def wrap(layer, params, masks=None) -> LayerModule:
    """The NNX module of a pure layer with these params (and masks): `TTLinear` for a pure
    ``TTLinear`` and so on (`LayerModule` for any other layer of this backend)."""
    return _WRAPPERS.get(type(layer), LayerModule).wrap(layer, params, masks)


# ------------------------------------------------------------------------------------------ bridge
_CALL: contextvars.ContextVar = contextvars.ContextVar("tedepr_nnx_call", default=None)
#: the layer name of the opaque parameters (``/`` cannot occur in an NNX attribute path part)
OPAQUE = "<flax>"
#: NNX weight layers the pipeline cannot count or prune yet: refused by compress/score/fit
_UNSUPPORTED = (
    "Conv",  # 2-D ones that map are routed; the others are refused
    "ConvTranspose",
    "Embed",
    "LinearGeneral",
    "Einsum",
    "MultiHeadAttention",
    "RNN",  # one over an LSTM cell is routed; the others are refused
)


class _Route(nnx.Module):
    """Stands in for a converted layer inside the bridge's copy of the user's model: calling it
    applies the pipeline's layer of that name."""

    def __init__(self, name: str, kind: str = "plain", option: Any = -1):
        self.name = name
        # "plain", "conv" (NHWC images), "attention", "norm" (features on the axis `option`),
        # "rnn" (an nnx.RNN's call; `option` its RNNOptions) or "stack" (a StackedLSTM's call;
        # `option` its num_layers)
        self.kind = kind
        self.option = option

    def __call__(self, *args, **kwargs):
        call = _CALL.get()
        if call is None:
            raise RuntimeError(
                f"layer {self.name!r} is a placeholder of tedepr's Flax bridge; call the model "
                "through FlaxBridge.model"
            )
        if self.kind == "plain":
            return call(self.name, *args, **kwargs)
        if self.kind == "rnn":

            def run(x, state):
                return call(self.name, x, state=state)

            return _rnn_call(run, self.option, self.name, *args, **kwargs)
        if self.kind == "stack":

            def run_stack(x, state):
                return call(self.name, x, state=state)

            return _stack_call(run_stack, self.option, *args, **kwargs)
        if self.kind == "attention":  # nnx.MultiHeadAttention(inputs_q, inputs_k, inputs_v)
            kwargs.pop("deterministic", None)  # the pipeline's mode decides on dropout
            if kwargs or not 1 <= len(args) <= 3:
                raise TypeError(
                    f"attention {self.name!r} takes inputs_q (and inputs_k, inputs_v) under "
                    f"tedepr's Flax bridge; got {len(args)} inputs and keywords {sorted(kwargs)} "
                    "(no mask, decode or sow_weights)"
                )
            return call(self.name, *args)
        if kwargs or len(args) != 1:
            raise TypeError(
                f"layer {self.name!r} takes one input under tedepr's Flax bridge; got "
                f"{len(args)} and keywords {sorted(kwargs)} (train/eval mode is the pipeline's: "
                "batch statistics when fitting and scoring, running ones when evaluating)"
            )
        (x,) = args
        if self.kind == "conv" and x.ndim != 4:
            raise ValueError(
                f"layer {self.name!r}: x must be NHWC images (N, H, W, C); got shape "
                f"{tuple(x.shape)}"
            )
        # the pipeline's layers hold features on axis 1 (NCHW, (N, C)): move them there and back
        axis = self.option % x.ndim
        y = call(self.name, jnp.moveaxis(x, axis, 1))
        return jnp.moveaxis(y, 1, axis)


@dataclass(frozen=True)
class _FlaxParams(Parameter):
    """The opaque part: the trainable ``nnx.Param`` s of the user's other modules (never pruned),
    params ``{"value": {key: array}}``."""

    values: Any = field(default=None, compare=False, hash=False, repr=False)

    def init(self, key, dtype=None) -> dict:
        return {"value": dict(self.values)}


def _get(node, key):
    if isinstance(key, str) and not isinstance(node, (dict, nnx.Dict)):
        return getattr(node, key)
    return node[key]


def _set(node, key, value):
    if isinstance(node, tuple):
        raise ValueError("tensorize cannot replace a layer held in a tuple; use nnx.List")
    if isinstance(key, str) and not isinstance(node, (dict, nnx.Dict)):
        setattr(node, key, value)
    else:
        node[key] = value


def _set_path(root, path, value):
    node = root
    for key in path[:-1]:
        node = _get(node, key)
    _set(node, path[-1], value)


def _path_name(path) -> str:
    return "/".join(str(k) for k in path)


def _check_model(model, argument: str = "model"):
    if not isinstance(model, nnx.Module):
        raise TypeError(f"{argument} must be a flax.nnx.Module; got {type(model).__name__}")


def _convertible(node, named: bool = False):
    """``(layer, params, masks, route kind, feature axis)`` of a module the bridge routes; None
    for a module it does not; a str saying why for an ``nnx.Conv``/``nnx.BatchNorm`` that does not
    map. ``named``: the model's ``layer_order`` hint names this module (an ``nnx.LayerNorm`` is
    then its own layer, as in the `Model` zoo; otherwise it rides along opaque)."""
    if isinstance(node, RNN):
        return node.layer, node.pure_params(), node.pure_masks(), "rnn", node.options
    if isinstance(node, LSTM):
        return node.layer, node.pure_params(), node.pure_masks(), "stack", node.layer.num_layers
    if isinstance(node, LayerModule):
        kind = "conv" if node.CHANNELS_LAST else "plain"
        return node.layer, node.pure_params(), node.pure_masks(), kind, -1
    if type(node) is nnx.RNN:
        return _rnn(node)
    if type(node) is StackedLSTM:
        return _stacked_lstm(node)
    if type(node) is nnx.Bidirectional:
        return (
            "nnx.Bidirectional is not routed yet (it holds a random stream of its own); write "
            "its two directions in your __call__: nnx.RNN(cell) and nnx.RNN(cell, reverse=True, "
            "keep_order=True), then concatenate"
        )
    if type(node) is nnx.Linear:
        layer = _layers.Dense(
            node.in_features, node.out_features, bias=node.use_bias, weight_init="lecun"
        )
        params = {"weight": node.kernel[...]}
        if node.use_bias:
            params["bias"] = node.bias[...]
        return layer, params, None, "plain", -1
    if type(node) is nnx.Conv:
        layer = _conv_layer(node)
        if isinstance(layer, str):
            return layer
        # nnx.Conv's kernel is (kh, kw, C_in/groups, C_out); the pure layer's torch's (C_out, ...)
        params = {"weight": jnp.transpose(node.kernel[...], (3, 2, 0, 1))}
        if node.use_bias:
            params["bias"] = node.bias[...]
        return layer, params, None, "conv", -1
    if type(node) is nnx.BatchNorm:
        return _batch_norm(node)
    if type(node) is nnx.MultiHeadAttention:
        layer = _attention(node)
        if isinstance(layer, str):
            return layer
        return layer, _attention_params(node), None, "attention", -1
    if type(node) is TransformerEncoderLayer:
        return _encoder(node)
    if type(node) is nnx.LayerNorm and named:
        layer = _layer_norm(node)
        if isinstance(layer, str):
            return layer
        return layer, {"scale": node.scale[...], "bias": node.bias[...]}, None, "plain", -1
    return None


def _attention(node, dropout=None):
    """The pure `MultiheadAttention` (batch first) of an ``nnx.MultiHeadAttention``, or why it
    does not map: self- or cross-attention of equal feature sizes, one key/value head per query
    head, flax's default attention function, no decode cache, no query/key normalisation."""
    e = node.in_features
    sizes = (node.qkv_features, node.out_features, node.in_kv_features)
    if any(n != e for n in sizes):
        return (
            f"in_features={e}, qkv_features={node.qkv_features}, out_features="
            f"{node.out_features}, in_kv_features={node.in_kv_features} (all equal only)"
        )
    if node.num_kv_heads != node.num_heads:
        return f"num_kv_heads={node.num_kv_heads} != num_heads={node.num_heads}"
    if node.decode:
        return "decode=True (a decode cache)"
    if node.normalize_qk:
        return "normalize_qk=True"
    if node.attention_fn is not nnx.dot_product_attention:
        return "a custom attention_fn (flax's dot_product_attention only)"
    if any(
        getattr(node, k, None) is not None
        for k in (
            "qkv_dot_general",
            "out_dot_general",
            "qkv_dot_general_cls",
            "out_dot_general_cls",
        )
    ):
        return "a custom dot_general"
    rate = float(node.dropout_rate)
    if dropout is not None and rate != dropout:
        return f"dropout_rate={rate} differs from the encoder layer's dropout={dropout}"
    return _attn.MultiheadAttention(
        e, node.num_heads, bias=node.use_bias, batch_first=True, dropout=rate
    )


def _attention_params(node) -> dict:
    """flax's per-head kernels as the pure layer's ``(E, E)`` projections (``(in, out)``, the
    head ``h`` in columns ``h·D … (h+1)·D``, as `MultiheadAttention` splits them): query/key/
    value ``(E, H, D)`` → ``(E, H·D)``, out ``(H, D, E)`` → ``(H·D, E)``."""
    e = node.in_features
    out = {}
    for name, part in (
        ("q_proj", "query"),
        ("k_proj", "key"),
        ("v_proj", "value"),
        ("out_proj", "out"),
    ):
        m = getattr(node, part)
        out[name] = {"weight": jnp.reshape(m.kernel[...], (e, e))}
        if node.use_bias:
            out[name]["bias"] = jnp.reshape(m.bias[...], (e,))
    return out


def _fill_attention(node, params):
    """An ``nnx.MultiHeadAttention``'s kernels set from the pure layer's params (in place)."""
    h, e = node.num_heads, node.in_features
    shapes = {"query": (e, h, e // h), "key": (e, h, e // h), "value": (e, h, e // h)}
    shapes["out"] = (h, e // h, e)
    for name, part in (
        ("q_proj", "query"),
        ("k_proj", "key"),
        ("v_proj", "value"),
        ("out_proj", "out"),
    ):
        m = getattr(node, part)
        m.kernel[...] = jnp.reshape(jnp.asarray(params[name]["weight"]), shapes[part]).astype(
            m.kernel[...].dtype
        )
        if node.use_bias:
            m.bias[...] = jnp.reshape(jnp.asarray(params[name]["bias"]), m.bias[...].shape).astype(
                m.bias[...].dtype
            )


def _layer_norm(node):
    """The pure `LayerNorm` of an ``nnx.LayerNorm`` over the last axis with scale and bias."""
    last = (-1,)
    if not (node.use_scale and node.use_bias):
        return "use_scale=False / use_bias=False"
    axes = tuple(np.atleast_1d(node.reduction_axes)), tuple(np.atleast_1d(node.feature_axes))
    if axes != (last, last) or node.axis_name is not None:
        return (
            f"reduction_axes={node.reduction_axes!r} / feature_axes={node.feature_axes!r} "
            "(the last axis only, one device)"
        )
    return _layers.LayerNorm(node.num_features, eps=float(node.epsilon))


def _encoder(node):
    """The pure `TransformerEncoderLayer` of this module's `TransformerEncoderLayer`."""
    parts = {
        "self_attn": nnx.MultiHeadAttention,
        "linear1": nnx.Linear,
        "linear2": nnx.Linear,
        "norm1": nnx.LayerNorm,
        "norm2": nnx.LayerNorm,
    }
    for name, kind in parts.items():
        if type(getattr(node, name)) is not kind:
            return (
                f"its {name} is a {type(getattr(node, name)).__name__}, not an nnx.{kind.__name__}"
            )
    rate = float(node.dropout.rate)
    attention = _attention(node.self_attn, rate)
    if isinstance(attention, str):
        return f"its self_attn does not map: {attention}"
    for name in ("norm1", "norm2"):
        norm = _layer_norm(getattr(node, name))
        if isinstance(norm, str):
            return f"its {name} does not map: {norm}"
    layer = _attn.TransformerEncoderLayer(
        node.self_attn.in_features,
        node.self_attn.num_heads,
        node.linear1.out_features,
        rate,
        node.activation,
        float(node.norm1.epsilon),
        batch_first=True,
        norm_first=node.norm_first,
        bias=node.self_attn.use_bias,
    )
    params = {"self_attn": _attention_params(node.self_attn)}
    for name in ("linear1", "linear2"):
        m = getattr(node, name)
        params[name] = {"weight": m.kernel[...]}
        if m.use_bias:
            params[name]["bias"] = m.bias[...]
    for name in ("norm1", "norm2"):
        m = getattr(node, name)
        params[name] = {"scale": m.scale[...], "bias": m.bias[...]}
    return layer, params, None, "plain", -1


def _fill_encoder(node, params):
    """A `TransformerEncoderLayer` module's weights set from the pure layer's params (in place)."""
    _fill_attention(node.self_attn, params["self_attn"])
    for name in ("linear1", "linear2", "norm1", "norm2"):
        m = getattr(node, name)
        for k, v in params[name].items():
            target = getattr(m, "kernel" if k == "weight" else k)
            target[...] = jnp.asarray(v, target[...].dtype)


#: flax's LSTMCell gates, one nnx.Linear each (input ``i<g>``, hidden ``h<g>``), in the pure
#: layer's (and torch's) order i, f, g, o along the 4H axis
_LSTM_GATES = (("ii", "hi"), ("if_", "hf"), ("ig", "hg"), ("io", "ho"))


def _rnn(node):
    """The pure one-layer `LSTM` of an ``nnx.RNN`` over an ``nnx.LSTMCell`` /
    ``nnx.OptimizedLSTMCell`` (kind "rnn", its `RNNOptions`), or why it does not map.

    flax's cell computes ``x W_i + (h W_h + b)``: one bias, on the hidden map. The pure layer
    (torch's ``nn.LSTM``) adds two, ``b_ih + b_hh``, which enter the gates only as their sum:
    the bridge sets ``bias_ih = 0`` and ``bias_hh = b``, and `_fill_lstm_cell` writes
    ``bias_ih + bias_hh`` back into ``b`` — the same function both ways (to float rounding of the
    sum). The kernels: ``weight_ih (in, 4H)`` is the four input kernels side by side (gates i, f,
    g, o), ``weight_hh (H, 4H)`` the hidden ones (``OptimizedLSTMCell``'s ``dense_i`` /
    ``dense_h`` already are).

    ``nnx.GRUCell`` is refused: flax 0.12's has no hidden bias (``n = tanh(x W_in + b_in + r ⊙ h
    W_hn)``), torch's GRU (the pipeline's) trains ``b_hn`` inside ``r ⊙ (h W_hn + b_hn)``, a
    parameter the flax cell cannot hold."""
    cell = node.cell
    if type(cell) is nnx.GRUCell:
        return (
            "its nnx.GRUCell has no hidden bias (flax: n = tanh(x W_in + b_in + r * h W_hn)) "
            "where the pipeline's GRU (torch's) trains b_hn in r * (h W_hn + b_hn): a trained "
            "GRU could not go back into the flax cell; use tedepr.backends.jax.GRU"
        )
    if type(cell) not in (nnx.LSTMCell, nnx.OptimizedLSTMCell):
        return f"its cell is a {type(cell).__name__} (nnx.LSTMCell and nnx.OptimizedLSTMCell only)"
    if cell.gate_fn is not nnx.sigmoid or cell.activation_fn is not nnx.tanh:
        return "a gate_fn / activation_fn other than flax's defaults (nnx.sigmoid / nnx.tanh)"
    if cell.carry_init is not None:
        return "a carry_init (zeros only: flax's default initialize_carry)"
    if type(cell) is nnx.OptimizedLSTMCell:
        w_ih, w_hh = cell.dense_i.kernel[...], cell.dense_h.kernel[...]
        b = cell.dense_h.bias[...]
    else:
        w_ih = jnp.concatenate([getattr(cell, i).kernel[...] for i, _ in _LSTM_GATES], axis=1)
        w_hh = jnp.concatenate([getattr(cell, h).kernel[...] for _, h in _LSTM_GATES], axis=1)
        b = jnp.concatenate([getattr(cell, h).bias[...] for _, h in _LSTM_GATES])
    layer = _recurrent.LSTM(cell.in_features, cell.hidden_features, batch_first=not node.time_major)
    params = {
        "weight_ih_l0": w_ih,
        "weight_hh_l0": w_hh,
        "bias_ih_l0": jnp.zeros_like(b),
        "bias_hh_l0": b,
    }
    return layer, params, None, "rnn", _rnn_options(node)


def _stacked_lstm(node):
    """The pure stacked `LSTM` of a `StackedLSTM` (kind "stack", its num_layers), or why it does
    not map: each layer's ``nnx.RNN`` as in `_rnn`, its maps renamed ``weight_ih_l{k}``, ...;
    the module's dropout rate the pipeline layer's."""
    params = {}
    for k, rnn in enumerate(node.layers):
        if type(rnn) is not nnx.RNN:
            return f"its layers/{k} is a {type(rnn).__name__}, not an nnx.RNN"
        got = _rnn(rnn)
        if isinstance(got, str):
            return f"its layers/{k} does not map: {got}"
        n_in = node.input_size if k == 0 else node.hidden_size
        cell = rnn.cell
        if (cell.in_features, cell.hidden_features) != (n_in, node.hidden_size):
            return (
                f"its layers/{k} maps {cell.in_features} -> {cell.hidden_features} features; a "
                f"stack of {node.input_size} -> {node.hidden_size} needs {n_in} -> "
                f"{node.hidden_size}"
            )
        if rnn.time_major == node.batch_first or rnn.reverse:
            return f"its layers/{k} has time_major={rnn.time_major} / reverse={rnn.reverse}"
        params.update({f"{name.removesuffix('_l0')}_l{k}": v for name, v in got[1].items()})
    drop = node.dropout
    if type(drop) is not nnx.Dropout or tuple(drop.broadcast_dims):
        return "its dropout is not a plain nnx.Dropout (one without broadcast_dims)"
    rate = drop.rate
    layer = _recurrent.LSTM(
        node.input_size,
        node.hidden_size,
        node.num_layers,
        batch_first=node.batch_first,
        dropout=float(rate),
    )
    return layer, params, None, "stack", node.num_layers


def _layer_k(params, k: int) -> dict:
    """Layer ``k``'s params of a stacked `LSTM` under layer 0's keys (``weight_ih_l0``, ...)."""
    suffix = f"_l{k}"
    return {f"{n.removesuffix(suffix)}_l0": v for n, v in params.items() if n.endswith(suffix)}


def _rnn_options(node) -> RNNOptions:
    return RNNOptions(node.time_major, node.return_carry, node.reverse, node.keep_order)


def _fill_lstm_cell(cell, params):
    """An ``nnx.LSTMCell`` / ``nnx.OptimizedLSTMCell``'s kernels and bias set from the pure
    one-layer `LSTM`'s params (in place): the bias is ``bias_ih + bias_hh`` (see `_rnn`)."""
    w_ih, w_hh = (jnp.asarray(params[k]) for k in ("weight_ih_l0", "weight_hh_l0"))
    b = jnp.asarray(params["bias_ih_l0"]) + jnp.asarray(params["bias_hh_l0"])
    if type(cell) is nnx.OptimizedLSTMCell:
        targets = [(cell.dense_i.kernel, w_ih), (cell.dense_h.kernel, w_hh), (cell.dense_h.bias, b)]
    else:
        targets = []
        for (i, h), wi, wh, bg in zip(
            _LSTM_GATES,
            jnp.split(w_ih, 4, axis=1),
            jnp.split(w_hh, 4, axis=1),
            jnp.split(b, 4),
            strict=True,
        ):
            targets += [(getattr(cell, i).kernel, wi), (getattr(cell, h).kernel, wh)]
            targets.append((getattr(cell, h).bias, bg))
    for var, value in targets:
        var[...] = value.astype(var[...].dtype)


def _batch_norm(node):
    """An ``nnx.BatchNorm`` as the pure `BatchNorm` (features moved to axis 1 by the route)."""
    if not (node.use_scale and node.use_bias):
        return "use_scale=False / use_bias=False"
    if not isinstance(node.axis, int) or node.axis_name is not None:
        return f"axis={node.axis!r} / axis_name={node.axis_name!r} (one int axis, one device)"
    # flax weighs the old running value by `momentum`, torch (the pure layer) the batch value
    layer = _layers.BatchNorm(node.num_features, eps=node.epsilon, momentum=1.0 - node.momentum)
    params = {k: getattr(node, k)[...] for k in ("scale", "bias", "mean", "var")}
    return layer, params, None, "norm", node.axis


def _ints(value, n: int):
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    return value if len(value) == n and all(isinstance(v, int) for v in value) else None


def _conv_layer(node):
    """The pure `Conv2d` of an ``nnx.Conv``, or why it does not map."""
    if len(node.kernel_size) != 2:
        return f"a {len(node.kernel_size)}-D convolution (2-D ones only)"
    stride, dilation = _ints(node.strides, 2), _ints(node.kernel_dilation, 2)
    if stride is None or dilation is None:
        return f"strides={node.strides!r} / kernel_dilation={node.kernel_dilation!r}"
    if _ints(node.input_dilation, 2) != (1, 1) or node.mask is not None:
        return "input_dilation or a kernel mask"
    padding = node.padding
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            padding = "valid"
        elif padding.upper() == "SAME" and stride == (1, 1):
            padding = "same"
        else:
            return f"padding={node.padding!r} with strides={node.strides!r}"
    elif _ints(padding, 2) is not None:
        padding = _ints(padding, 2)
    else:
        pairs = tuple(padding)
        if len(pairs) != 2 or any(len(tuple(p)) != 2 or p[0] != p[1] for p in pairs):
            return f"padding={node.padding!r} (symmetric padding only)"
        padding = (int(pairs[0][0]), int(pairs[1][0]))
    return _conv.Conv2d(
        node.in_features,
        node.out_features,
        tuple(node.kernel_size),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=node.feature_group_count,
        bias=node.use_bias,
        weight_init="lecun",
    )


_CELLS = (nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell, nnx.SimpleCell)


def _unsupported_types() -> tuple:
    return tuple(getattr(nnx, n) for n in _UNSUPPORTED if hasattr(nnx, n)) + (nnx.Linear,)


def _hints(model) -> tuple[tuple, dict, dict, dict | None]:
    """``(layer_order, weight_inits, tensorize_hints, zoo)``: the optional hints an NNX model may
    carry as plain attributes (the Flax zoo's models do, `tedepr.backends.jax.flax_zoo`):

    ``layer_order``
        the routed layers' names in the model's own order (NNX walks attributes sorted by name;
        this order is the report's rows and the per-layer keys of fresh tensorized layers);
        layers it does not name follow in graph order.
    ``weight_inits``
        ``{name: init scheme}`` the weights were drawn from (``"torch"``, ``"he_fan_out"``, ...;
        default ``"lecun"``, flax's): the target std of a layer `tensorize` replaces.
    ``tensorize_hints``
        as `Model.tensorize_hints` (e.g. ``{"hidden/0": {"in_shape": (1, 28, 28)}}``).
    ``zoo``
        ``{"name", "kwargs", "flax": True}`` for a Flax zoo model: how `tedepr.load` rebuilds it.
    """
    order = getattr(model, "layer_order", None) or ()
    if isinstance(order, str) or not all(isinstance(n, str) for n in order):
        raise TypeError(f"model.layer_order must be a sequence of layer names; got {order!r}")
    inits = getattr(model, "weight_inits", None) or {}
    if not isinstance(inits, Mapping) or not all(isinstance(v, str) for v in inits.values()):
        raise TypeError(f"model.weight_inits must map layer names to init names; got {inits!r}")
    hints = getattr(model, "tensorize_hints", None) or {}
    if not isinstance(hints, Mapping) or not all(isinstance(v, Mapping) for v in hints.values()):
        raise TypeError(f"model.tensorize_hints must map layer names to dicts; got {hints!r}")
    zoo = getattr(model, "zoo", None)
    if zoo is not None and not (isinstance(zoo, Mapping) and {"name", "kwargs"} <= set(zoo)):
        raise TypeError(
            f"model.zoo must be None or the zoo recipe {{'name', 'kwargs', ...}}; got {zoo!r}"
        )
    return tuple(order), dict(inits), {k: dict(v) for k, v in hints.items()}, zoo


def _layer_paths(model, strict: bool):
    """``[(path, node, (layer, params, masks))]`` of the routable modules of ``model``, in the
    model's `layer_order <_hints>` (then graph order); ``strict``: a weight layer that cannot be
    routed is an error. A layer named in the model's ``weight_inits`` gets that init scheme."""
    found = _found_paths(model, strict)
    order, inits, _, _ = _hints(model)
    for i, (path, node, conv) in enumerate(found):
        init = inits.get(_path_name(path))
        if init is not None and type(node) in (nnx.Linear, nnx.Conv):
            found[i] = (path, node, (dataclasses.replace(conv[0], weight_init=init), *conv[1:]))
    rank = {name: k for k, name in enumerate(order)}
    return sorted(found, key=lambda t: rank.get(_path_name(t[0]), len(rank)))


def _found_paths(model, strict: bool):
    named = set(_hints(model)[0])
    nodes = [
        (path, node)
        for path, node in nnx.iter_graph(model)
        if path and isinstance(node, nnx.Module)
    ]
    results = {path: _convertible(node, _path_name(path) in named) for path, node in nodes}
    # a routed composite (attention, encoder layer, RNN, StackedLSTM) takes its submodules; a
    # recurrent module that does not map keeps its cell's Linears (tensorize leaves it whole)
    recurrent = (nnx.RNN, nnx.Bidirectional, StackedLSTM)
    kinds = {path: type(node) for path, node in nodes}
    routed = [
        p
        for p, r in results.items()
        if isinstance(r, tuple) or (isinstance(r, str) and kinds[p] in recurrent)
    ]

    def inside(path):
        return any(len(r) < len(path) and tuple(path[: len(r)]) == tuple(r) for r in routed)

    if strict:  # a module that does not map is named before its submodules
        for path, node in sorted(nodes, key=lambda t: len(t[0])):
            conv = results[path]
            if isinstance(conv, str) and type(node) is not nnx.LayerNorm and not inside(path):
                why = f"{type(node).__name__} at {_path_name(path)!r} does not map: {conv}"
                raise ValueError(f"model holds an {why}; tedepr's Flax bridge cannot carry it")
    found = []
    for path, node in nodes:
        if inside(path):
            continue
        conv = results[path]
        if isinstance(conv, tuple):
            found.append((path, node, conv))
        elif isinstance(conv, str):
            why = f"{type(node).__name__} at {_path_name(path)!r} does not map: {conv}"
            if strict and type(node) is not nnx.LayerNorm:
                raise ValueError(f"model holds an {why}; tedepr's Flax bridge cannot carry it")
            if type(node) in (nnx.Conv, *recurrent):
                warnings.warn(f"tensorize leaves {why}", stacklevel=3)
        elif strict and isinstance(node, _CELLS):
            raise ValueError(
                f"model holds {type(node).__name__} at {_path_name(path)!r} outside an nnx.RNN; "
                "tedepr's Flax bridge routes recurrent cells inside nnx.RNN only (an "
                "nnx.RNN(nnx.LSTMCell) or nnx.RNN(nnx.OptimizedLSTMCell)), not a cell stepped "
                "by the model's own loop"
            )
        elif strict and isinstance(node, _unsupported_types()):
            raise ValueError(
                f"model holds {type(node).__name__} at {_path_name(path)!r}, which tedepr's "
                "Flax bridge cannot count or prune yet (supported weight layers: nnx.Linear, "
                "2-D nnx.Conv, nnx.MultiHeadAttention, TransformerEncoderLayer, "
                "nnx.RNN(nnx.LSTMCell) and the tedepr.backends.jax.nnx layers); use the "
                "tedepr.backends.jax zoo for it"
            )
    return found


class FlaxBridge:
    """A user's NNX model as this backend's `Model` + params + masks, and back.

    Attributes
    ----------
    model : `Model` — one layer per routed module (named by its ``/``-joined NNX path, e.g.
        ``layers/0``), plus the opaque layer ``"<flax>"`` holding every other ``nnx.Param``;
        its forward runs the user's ``__call__``
    params : ``{layer name: layer params}``
    masks : flat ``{path: bool array}`` of the model's `Mask` variables ({} when none)
    """

    def __init__(self, module, input_shape):
        _check_model(module)
        work = nnx.clone(module)
        found = _layer_paths(work, strict=True)
        if not found:
            raise ValueError(
                "model holds no nnx.Linear, 2-D nnx.Conv or tedepr.backends.jax.nnx layer to compress"
            )
        layers, params, masks, originals = {}, {}, {}, {}
        for path, node, (layer, p, m, kind, axis) in found:
            name = _path_name(path)
            layers[name], params[name], originals[name] = layer, p, (path, node)
            if m:
                masks.update(_flat_masks(m, name))
            _set_path(work, path, _Route(name, kind, axis))
        self._dropouts = _stateless_dropouts(work)
        left = {id(node) for _, node in nnx.iter_graph(work)}
        for name, (_, node) in originals.items():
            if id(node) in left:
                raise ValueError(
                    f"layer {name!r} is shared (the same module at two places in the model); "
                    "tedepr's Flax bridge needs one place per layer"
                )
        graphdef, state, rest = nnx.split(work, nnx.Param, ...)
        rest_flat = list(nnx.to_flat_state(rest))
        if rest_flat:
            path, var = rest_flat[0]
            raise ValueError(
                f"model holds {type(var).__name__} state at {_path_name(path)!r} (e.g. "
                "nnx.Dropout random streams); tedepr's Flax bridge carries nnx.Param and the "
                "statistics of the BatchNorms it routes only: use a model without such state "
                "(a deterministic nnx.Dropout holds none), or the tedepr.backends.jax zoo"
            )
        flat = list(nnx.to_flat_state(state))
        order = _hints(module)[0]
        # a free nnx.Param the layer_order hint names is its own layer (ViT's cls_token)
        self._named = {
            _path_name(p): i
            for i, (p, v) in enumerate(flat)
            if _path_name(p) in order and type(v) is nnx.Param
        }
        for name, i in self._named.items():
            value = flat[i][1][...]
            layers[name] = Parameter(tuple(jnp.shape(value)))
            params[name] = {"value": value}
        self._paths = [p for p, _ in flat]
        self._keys = [f"p{i}:" + ".".join(str(k) for k in p) for i, p in enumerate(self._paths)]
        self._graphdef, self._state = graphdef, state
        self._originals = originals
        rest = {i for i in range(len(flat)) if i not in self._named.values()}
        values = {self._keys[i]: flat[i][1][...] for i in sorted(rest)}
        rank = {name: k for k, name in enumerate(order)}
        layers = {n: layers[n] for n in sorted(layers, key=lambda n: rank.get(n, len(rank)))}
        self._has_opaque = bool(values)
        if values:
            layers[OPAQUE] = _FlaxParams((), 0.0, values)
            params[OPAQUE] = {"value": values}
        self.params, self.masks = params, masks
        has_state = bool(flat)

        def forward(call, x):
            state = self._state_from(self._values(call)) if has_state else self._state
            net = nnx.merge(self._graphdef, state)
            token = _CALL.set(call)
            try:
                return net(x)
            finally:
                _CALL.reset(token)

        self.model = Model(layers, forward, input_shape, type(module).__name__)
        _, _, self.model.tensorize_hints, self.model.zoo = _hints(module)

    def _values(self, get):
        """``{key: array}`` of every free ``nnx.Param``: the opaque ones and the named ones from
        ``get(layer name)`` (a forward's ``call``, or params lookup)."""
        values = dict(get(OPAQUE)) if self._has_opaque else {}
        for name, i in self._named.items():
            values[self._keys[i]] = get(name)
        return values

    def _state_from(self, values):
        flat = [(p, nnx.Param(values[k])) for p, k in zip(self._paths, self._keys, strict=True)]
        return nnx.from_flat_state(flat)

    def rebuild(self, model: Model, params, masks=None):
        """A new NNX model: the user's architecture with the routed layers taken from ``model``
        (e.g. tensorized by `compress`) and ``params``/``masks`` (flat or nested)."""
        full = normalize_masks(params, masks) if masks else None
        if self._keys:
            state = self._state_from(self._values(lambda n: params[n]["value"]))
        else:
            state = self._state
        out = nnx.merge(self._graphdef, state)  # new objects: nothing shared with the caller's
        for path, original in self._dropouts:
            _set_path(out, path, nnx.clone(original))  # the user's nnx.Dropout back
        for name, (path, original) in self._originals.items():
            layer, p = model.layers[name], params[name]
            m = None if full is None else full[name]
            m = _layer_masks(layer, p, m) if m else None
            _set_path(out, path, _module_for(layer, p, m, original))
        return out


def _flat_masks(masks, prefix) -> dict:
    """``{path: array}`` of a layer's nested masks (tuples by index, sublayers by name)."""
    out = {}
    for k, v in masks.items():
        if isinstance(v, Mapping):
            out.update(_flat_masks(v, f"{prefix}/{k}"))
        elif isinstance(v, tuple):
            out.update({f"{prefix}/{k}/{i}": e for i, e in enumerate(v)})
        else:
            out[f"{prefix}/{k}"] = v
    return out


def _stateless_dropouts(work) -> list:
    """Each ``nnx.Dropout`` that never draws (``rate == 0`` or ``deterministic=True``) replaced in
    ``work`` by a copy without its random stream, so the bridge carries no RNG state for it;
    returns ``[(path, original)]`` (`FlaxBridge.rebuild` puts the originals back). A Dropout that
    draws keeps its stream, and the bridge refuses the model."""
    out = []
    for path, node in list(nnx.iter_graph(work)):
        if path and type(node) is nnx.Dropout and (node.rate == 0 or node.deterministic is True):
            if nnx.to_flat_state(nnx.state(node, ...)):
                out.append((path, node))
    for path, node in out:
        _set_path(
            work,
            path,
            nnx.Dropout(node.rate, broadcast_dims=node.broadcast_dims, deterministic=True),
        )
    return out


def _module_for(layer, params, masks, original):
    if isinstance(original, (StackedLSTM, LSTM)):
        if not masks and type(layer) is _recurrent.LSTM and type(original) is StackedLSTM:
            node = nnx.clone(original)  # a dense, unpruned stack goes back into the user's cells
            for k, rnn in enumerate(node.layers):
                _fill_lstm_cell(rnn.cell, _layer_k(params, k))
            return node
        return LSTM.wrap(layer, params, masks)
    if isinstance(original, (nnx.RNN, RNN)):
        if not masks and type(layer) is _recurrent.LSTM and type(original) is nnx.RNN:
            node = nnx.clone(original)  # a dense, unpruned LSTM goes back into the user's cell
            _fill_lstm_cell(node.cell, params)
            return node
        options = original.options if isinstance(original, RNN) else _rnn_options(original)
        return RNN.wrap(layer, params, masks, options)
    if isinstance(layer, _layers.LayerNorm) and type(original) is nnx.LayerNorm:
        norm = nnx.clone(original)
        for k in ("scale", "bias"):
            getattr(norm, k)[...] = jnp.asarray(params[k], getattr(norm, k)[...].dtype)
        return norm
    if not masks and type(layer) is _attn.MultiheadAttention:
        if type(original) is nnx.MultiHeadAttention:
            node = nnx.clone(original)
            _fill_attention(node, params)
            return node
    if not masks and type(layer) is _attn.TransformerEncoderLayer:
        dense = all(
            type(sub) in (_layers.Dense, _attn.MultiheadAttention, _layers.LayerNorm)
            for sub in layer.sublayers().values()
        )
        if dense and type(original) is TransformerEncoderLayer:
            node = nnx.clone(original)
            _fill_encoder(node, params)
            return node
    if isinstance(layer, _layers.BatchNorm) and type(original) is nnx.BatchNorm:
        norm = nnx.clone(original)  # the user's BatchNorm with the trained / updated statistics
        for k in ("scale", "bias", "mean", "var"):
            getattr(norm, k)[...] = jnp.asarray(params[k], getattr(norm, k)[...].dtype)
        return norm
    if not masks and isinstance(layer, _conv.Conv2d) and type(original) is nnx.Conv:
        conv = nnx.clone(original)  # back to the user's nnx.Conv, kernel (kh, kw, C_in/g, C_out)
        kernel = jnp.transpose(jnp.asarray(params["weight"]), (2, 3, 1, 0))
        conv.kernel[...] = kernel.astype(conv.kernel[...].dtype)
        if layer.bias:
            conv.bias[...] = jnp.asarray(params["bias"], conv.bias[...].dtype)
        return conv
    if not masks and isinstance(layer, _layers.Dense) and type(original) is nnx.Linear:
        linear = nnx.clone(original)  # a plain dense layer goes back to being the user's Linear
        linear.kernel[...] = jnp.asarray(params["weight"], linear.kernel[...].dtype)
        if layer.bias:
            linear.bias[...] = jnp.asarray(params["bias"], linear.bias[...].dtype)
        return linear
    return wrap(layer, params, masks)


def _input_shape(data, input_shape, model=None):
    """One sample's shape: ``input_shape``, else read off an ``(x, y)`` pair or the first batch of
    a list of them (an iterator is never consumed here), else the model's own ``input_shape``
    attribute (the Flax zoo's models have one)."""
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    own = getattr(model, "input_shape", None)
    if own is not None and not (isinstance(data, (tuple, list)) and data):
        return tuple(int(s) for s in own)
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], (tuple, list)):
        data = data[0]  # a list of (x, y) batches
    if isinstance(data, (tuple, list)) and len(data) == 2 and hasattr(data[0], "shape"):
        return tuple(int(s) for s in data[0].shape[1:])
    raise ValueError(
        "input_shape must be given (one sample's shape) for a Flax model when data is neither an "
        "(x, y) pair of arrays nor a list of them"
    )


def to_model(module, input_shape) -> FlaxBridge:
    """The `FlaxBridge` of an NNX model: ``.model``, ``.params``, ``.masks``, ``.rebuild``."""
    return FlaxBridge(module, tuple(input_shape))


# ------------------------------------------------------------------------------------------ API
def tensorize(
    model,
    format: str = "tt",
    rank=8,
    *,
    rngs=0,
    min_params: int = DEFAULT_MIN_PARAMS,
    **options,
):
    """A copy of the NNX ``model`` whose eligible ``nnx.Linear`` s and 2-D ``nnx.Conv`` s are
    tensorized NNX layers; an ``nnx.MultiHeadAttention`` that maps becomes a `LayerModule` around
    a `TensorizedMultiheadAttention`, a `TransformerEncoderLayer` one around the pure encoder
    layer with its attention and feed-forward maps tensorized, an ``nnx.RNN(nnx.LSTMCell)`` an
    `RNN` around a `TensorizedLSTM`, a `StackedLSTM` an `LSTM` around a stacked `TensorizedLSTM`
    (a recurrent module that does not map stays, with a warning).

    The options and their rules are those of `tedepr.backends.jax.tensorize` (``min_params``,
    ``include``/``exclude`` globs and ``overrides`` over the ``/``-joined NNX paths such as
    ``layers/0``, a float ``rank`` as a per-layer parameter budget, ``d``, ``strategy``); the
    caller's model is not modified. New layers are drawn with the exact variance-preserving init
    for the Linear's default (LeCun) init, bias included, from ``rngs`` (an int seed or an
    ``nnx.Rngs``; one key for all, split by layer position).
    """
    _check_model(model)
    work = nnx.clone(model)
    found = _layer_paths(work, strict=False)
    kinds = (
        nnx.Linear,
        nnx.Conv,
        nnx.MultiHeadAttention,
        TransformerEncoderLayer,
        nnx.RNN,
        StackedLSTM,
    )
    candidates = [(p, n, c) for p, n, c in found if type(n) in kinds]
    if not candidates:
        raise ValueError(
            "tensorize found no nnx.Linear, 2-D nnx.Conv, nnx.MultiHeadAttention or "
            "nnx.RNN(nnx.LSTMCell) to replace in model"
        )
    layers = {_path_name(p): c[0] for p, _, c in candidates}
    params = {_path_name(p): c[1] for p, _, c in candidates}

    def no_forward(call, x):
        raise RuntimeError("a tensorize-only view has no forward")

    dense = Model(layers, no_forward, (1,), type(model).__name__)
    dense.tensorize_hints = _hints(model)[2]
    new = _tensorize(dense, format, rank, min_params=min_params, **options)
    new_params = transfer_params(dense, params, new, _key(rngs))
    for path, node, _ in candidates:
        name = _path_name(path)
        if new.layers[name] != dense.layers[name]:
            _set_path(work, path, _module_for(new.layers[name], new_params[name], None, node))
    return work


@dataclass
class FlaxCompressionResult(CompressionResult):
    """`CompressionResult` of a Flax model: ``model`` is an NNX model (the user's architecture with
    tensorized / masked NNX layers, calling ``model(x)`` runs it); ``params``/``masks`` are the
    pipeline's (``{layer name: layer params}``, flat ``{path: bool array}``) for ``jax_model``, the
    compressed model as this backend's `Model`."""

    jax_model: Any = None

    def apply(self, x, train: bool = False):
        return self.model(x)


def compress(
    model,
    data=None,
    sparsity=0.99,
    format="tt",
    score="trainability",
    *,
    params=None,
    input_shape=None,
    **kwargs,
) -> FlaxCompressionResult:
    """`tedepr.backends.jax.compress` on a Flax NNX model (same arguments; ``params`` must be
    None — the model holds them; ``input_shape`` defaults to the data's sample shape).

    Layer names (report rows, mask paths) are the ``/``-joined NNX paths (``layers/0``).
    """
    _check_model(model)
    if params is not None:
        raise ValueError("params must be None for a Flax NNX model (the model holds its params)")
    bridge = FlaxBridge(model, _input_shape(data, input_shape, model))
    if bridge.masks:
        raise ValueError(
            "model already holds pruning masks (a compressed model); compress the dense model"
        )
    result = _compress(
        bridge.model,
        data,
        sparsity,
        format,
        score,
        params=bridge.params,
        input_shape=input_shape,
        **kwargs,
    )
    return FlaxCompressionResult(
        model=bridge.rebuild(result.model, result.params, result.masks),
        report=result.report,
        masks=result.masks,
        params=result.params,
        jax_model=result.model,
    )


def score(model, data=None, method="snip", *, params=None, input_shape=None, **kwargs) -> dict:
    """`tedepr.backends.jax.score` on a Flax NNX model: ``{path: score array}`` keyed by the
    ``/``-joined NNX paths (``layers/0/weight``, ``layers/0/cores/1``)."""
    _check_model(model)
    if params is not None:
        raise ValueError("params must be None for a Flax NNX model (the model holds its params)")
    bridge = FlaxBridge(model, _input_shape(data, input_shape, model))
    return _score(
        bridge.model, data, method, params=bridge.params, input_shape=input_shape, **kwargs
    )


def fit(model, params=None, train_data=None, *, masks=None, **kwargs):
    """`tedepr.backends.jax.fit` on a Flax NNX model (same keyword arguments).

    ``params``/``masks`` default to the model's own (its ``nnx.Param`` s and `Mask` s); pass the
    `FlaxCompressionResult`'s to continue from them. The caller's model is not modified: the
    returned `FitResult`'s ``model`` is a new NNX model holding the trained weights and the masks
    (``params`` the pipeline's trained params).
    """
    _check_model(model)
    sample = train_data if isinstance(train_data, (tuple, list)) else None
    bridge = FlaxBridge(model, _input_shape(sample, kwargs.pop("input_shape", None), model))
    params = bridge.params if params is None else params
    masks = (bridge.masks or None) if masks is None else masks
    result = _fit(bridge.model, params, train_data, masks=masks, **kwargs)
    result.model = bridge.rebuild(bridge.model, result.params, result.masks)
    return result


# ------------------------------------------------------------------------------------------ io
def flax_export(obj) -> CompressionResult:
    """The pipeline's view (`Model`, params, masks) of a Flax model for `tedepr.save`: ``obj`` is
    an NNX model or anything holding one as ``.model`` (a `FlaxCompressionResult`, a ``fit``
    result), read as it is now (trained weights, masks, BatchNorm statistics)."""
    module = obj if isinstance(obj, nnx.Module) else obj.model
    jax_model = getattr(obj, "jax_model", None)
    shape = getattr(module, "input_shape", None) or getattr(jax_model, "input_shape", (1,))
    bridge = FlaxBridge(module, shape)
    if OPAQUE in bridge.model.layers:
        names = ", ".join(repr(".".join(map(str, p))) for p in bridge._paths[:4])
        raise ValueError(
            f"tedepr.save cannot store a Flax model's parameters outside its nnx.Linear, "
            f"nnx.Conv, nnx.BatchNorm, nnx.MultiHeadAttention, nnx.RNN and tedepr NNX layers "
            f"yet (here {names}"
            f"{', ...' if len(bridge._paths) > 4 else ''}): the file format has no place for "
            "them; save the arrays of nnx.state(model) yourself (e.g. with orbax)"
        )
    return CompressionResult(bridge.model, None, bridge.masks, bridge.params)


def flax_import(structure, arrays, model, dtype, load) -> FlaxCompressionResult:
    """`tedepr.load` into a Flax NNX model: ``model`` (the dense or a compressed NNX model of the
    file's architecture), or for ``None`` the Flax zoo model the file records; ``load(structure,
    arrays, jax_model, dtype)`` is the `Model` loader (`tedepr.backends.jax.storage`)."""
    if model is None:
        from ...io import json_tuples
        from . import flax_zoo

        zoo = structure["zoo"]
        model = flax_zoo.get(zoo["name"], **json_tuples(zoo["kwargs"]))
    _check_model(model)
    bridge = FlaxBridge(model, getattr(model, "input_shape", None) or (1,))
    result = load(structure, arrays, bridge.model, dtype)
    return FlaxCompressionResult(
        model=bridge.rebuild(result.model, result.params, result.masks),
        report=result.report,
        masks=result.masks,
        params=result.params,
        jax_model=result.model,
    )
