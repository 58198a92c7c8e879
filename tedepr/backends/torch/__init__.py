"""PyTorch backend: tensorized layers, `tensorize`, and pruning masks (needs torch)."""

# ruff: noqa: F401  (a plain list of re-exports)

from . import models
from .attention import TensorizedMultiheadAttention, TensorizedTransformerEncoderLayer
from .compact import compact
from .compress import CompressionResult, build_report, compress, dense_weight_count, score
from .conv import CONV_CLASSES, CPConv2d, TRConv2d, TTConv2d, TuckerConv2d, conv_class
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
from .masking import (
    apply_masks,
    count_weights,
    get_masks,
    load_masked_state_dict,
    prunable_parameters,
    remove_masks,
)
from .recurrent import TensorizedGRU, TensorizedLSTM
from .scoring import TorchScoringProblem
from .tensorize import LAYER_KINDS, tensorize
from .training import FitResult, evaluate, fit, load_checkpoint, make_loader
