"""The JAX backend: tensorized layers as pure ``init``/``apply`` functions over pytrees, the model
zoo, `tensorize`, masks, an optax training loop with checkpoints and data parallelism, and the
`ScoringProblem` for the pruning core.

Every layer is a small frozen dataclass of static configuration::

    layer = TTLinear(784, 300, rank=8)
    params = layer.init(jax.random.key(0))          # {"cores": (G_1, ..., G_d), "bias": b}
    y = jax.jit(layer.apply)(params, x)             # x (..., 784) -> (..., 300)

Flax NNX users: `tedepr.backends.jax.nnx` holds the tensorized layers as ``nnx.Module`` s, and
`tensorize`, `compress`, `score` and `fit` here accept a model written in Flax NNX (docs/jax.md).

Importing this package imports jax and optax (flax only with `nnx`); ``import tedepr`` alone never
does. Nothing here
changes JAX's global configuration (float64 is used only inside a local `jax.enable_x64` context for
SynFlow).

``__all__`` is `tedepr.api.backend_all("jax")`: the names both backends share, then the few that
exist only here (the small module system, masks as pytrees, optax pieces). Older names
(`prunable_leaves`, `JaxScoringProblem`, `count_kept`, ...) stay importable but are not part of the
shared surface.
"""

# ruff: noqa: F401  (re-exports; __all__ is computed from tedepr.api)

from ...api import backend_all
from .attention import (
    MultiheadAttention,
    TensorizedMultiheadAttention,
    TensorizedTransformerEncoderLayer,
    TransformerEncoderLayer,
    scaled_dot_product_attention,
)
from .compact import compact
from .compress import CompressionResult, build_report, compress, score
from .conv import (
    CONV_CLASSES,
    CONV_STRATEGIES,
    Conv2d,
    CPConv2d,
    TensorizedConv2d,
    TRConv2d,
    TTConv2d,
    TuckerConv2d,
    conv2d,
    conv_class,
)
from .counting import count_weights
from .inference import finalize
from .layers import (
    LINEAR_CLASSES,
    BatchNorm,
    CPLinear,
    Dense,
    LayerNorm,
    TensorizedLinear,
    TRLinear,
    TTLinear,
    TuckerLinear,
    linear_class,
)
from .masking import (
    apply_masks,
    count_kept,
    flatten_masks,
    normalize_masks,
    ones_masks,
    prunable_leaves,
    prunable_paths,
)
from .models import MODELS, Model, Parameter, available, get, max_pool2d
from .recurrent import GRU, LSTM, TensorizedGRU, TensorizedLSTM
from .scoring import JaxScoringProblem
from .tensorize import (
    DEFAULT_MIN_PARAMS,
    LAYER_KINDS,
    tensorize,
    tensorize_layer,
    transfer_params,
)
from .training import FitResult, evaluate, fit, load_checkpoint, make_optimizer, make_train_step

#: the shared names (`tedepr.api`)
prunable_weights = prunable_leaves
ScoringProblem = JaxScoringProblem

__all__ = backend_all("jax")


def __getattr__(name):
    # the Flax NNX layer is imported on demand: flax costs import time a Model user never needs
    if name == "nnx":
        import importlib

        return importlib.import_module(".nnx", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
