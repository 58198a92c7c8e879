"""PyTorch backend: tensorized layers, `tensorize`, and pruning masks (needs torch)."""

# ruff: noqa: F401  (a plain list of re-exports)

from .attention import TensorizedMultiheadAttention, TensorizedTransformerEncoderLayer
from .conv import CONV_CLASSES, CPConv2d, TRConv2d, TTConv2d, TuckerConv2d, conv_class
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
from .tensorize import LAYER_KINDS, tensorize
from . import models
from .compress import CompressionResult, build_report, compress, dense_weight_count, score
from .scoring import TorchScoringProblem
from .training import FitResult, evaluate, fit, load_checkpoint, make_loader
