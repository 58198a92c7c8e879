"""PyTorch backend: tensorized layers, `tensorize`, and pruning masks (needs torch).

``__all__`` is `tedepr.api.backend_all("torch")`: the names both backends share, then the few that
exist only in torch. Older names (`prunable_parameters`, `TorchScoringProblem`, `TensorizedLayer`,
`dense_weight_count`, ...) stay importable but are not part of the shared surface.
"""

# ruff: noqa: F401  (a plain list of re-exports)

from ...api import backend_all
from . import models
from .attention import TensorizedMultiheadAttention, TensorizedTransformerEncoderLayer
from .compact import compact
from .compress import CompressionResult, build_report, compress, dense_weight_count, score
from .conv import (
    CONV_CLASSES,
    CONV_STRATEGIES,
    CPConv2d,
    TRConv2d,
    TTConv2d,
    TuckerConv2d,
    conv_class,
)
from .conv import _TensorizedConv2d as TensorizedConv2d
from .inference import finalize, fold_costs, fold_layer
from .layers import (
    LINEAR_CLASSES,
    CPLinear,
    TensorizedLayer,
    TRLinear,
    TTLinear,
    TuckerLinear,
    linear_class,
)
from .layers import _TensorizedLinear as TensorizedLinear
from .masking import (
    apply_masks,
    count_weights,
    get_masks,
    load_masked_state_dict,
    prunable_parameters,
    remove_masks,
)
from .models import MODELS, available, get
from .recurrent import TensorizedGRU, TensorizedLSTM
from .scoring import TorchScoringProblem
from .tensorize import DEFAULT_MIN_PARAMS, LAYER_KINDS, tensorize
from .training import FitResult, evaluate, fit, load_checkpoint, make_loader

#: the shared names (`tedepr.api`)
prunable_weights = prunable_parameters
ScoringProblem = TorchScoringProblem

__all__ = backend_all("torch")
