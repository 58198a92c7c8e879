"""tedepr: extreme sparsity before training — low-rank tensor networks plus pruning at initialization.

The core (this package) is backend-neutral: it imports neither torch nor jax. Backends live in
``tedepr.backends.torch`` and ``tedepr.backends.jax`` and are imported only when asked for.
"""

from . import models, pruning, shapes
from .budget import BudgetError
from .compression import DeadLayerError, compress, score
from .contraction import (
    STRATEGIES,
    ContractionPlan,
    contract,
    einsum,
    plan_contraction,
    reconstruct,
)
from .decompositions import cp_als, decompose, decompose_conv, hooi, hosvd, tr_svd, tt_svd
from .formats import CPMatrix, Factorized, TRMatrix, TTMatrix, TuckerMatrix, from_cores
from .init import conv_modes, core_std, random_factorized, random_factorized_conv, target_std
from .io import CorruptFileError, load, save
from .namespace import get_namespace
from .pruning import Guards, scores
from .report import Report
from .shapes import FORMATS, auto_modes, balanced_modes, solve_ranks

__version__ = "0.1.0"

__all__ = [
    "BudgetError",
    "DeadLayerError",
    "Guards",
    "FORMATS",
    "STRATEGIES",
    "Report",
    "CorruptFileError",
    "load",
    "save",
    "models",
    "compress",
    "pruning",
    "score",
    "scores",
    "ContractionPlan",
    "CPMatrix",
    "Factorized",
    "TRMatrix",
    "TTMatrix",
    "TuckerMatrix",
    "auto_modes",
    "balanced_modes",
    "contract",
    "conv_modes",
    "core_std",
    "cp_als",
    "decompose",
    "decompose_conv",
    "einsum",
    "from_cores",
    "get_namespace",
    "hooi",
    "hosvd",
    "plan_contraction",
    "random_factorized",
    "random_factorized_conv",
    "reconstruct",
    "shapes",
    "solve_ranks",
    "target_std",
    "tr_svd",
    "tt_svd",
]
