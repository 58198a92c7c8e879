"""Independent, deliberately naive NumPy reference for tedepr.

This package re-derives the conventions of docs/method.md (matrix formats TT/TR/Tucker/CP over
in/out modes, C-order index raveling, the conv kernel matrix view) with explicit loops and one-shot
``np.einsum(..., optimize=False)``, plus textbook decompositions and derivative oracles. The tests
compare tedepr against it. It imports only numpy and the standard library: it never imports tedepr
(nor opt_einsum, scipy, torch or jax), so it cannot share a bug with the code it checks.
"""

from .baselines import (
    erk_real_counts,
    lookahead_loss,
    mlp_forward,
    ntk_sap_objective,
    ntk_sap_scores,
    prospr_scores,
)
from .contract import conv2d_reference, einsum_equation, einsum_reference, matmul_reference
from .decompositions import hosvd, tr_svd, tt_svd
from .formats import (
    cp_to_dense,
    kernel_to_matrix,
    matrix_to_kernel,
    to_dense,
    tr_to_dense,
    tt_to_dense,
    tucker_to_dense,
)
from .gradients import (
    central_difference_grad,
    central_difference_hvp,
    complex_step_grad,
    cross_entropy,
    dense_mlp_forward,
    relu,
    synflow_objective,
    tt_mlp_forward,
)
from .isometry import isometry_objective_reference, log_participation_svd
from .paths import chain_paths, entry_path_counts, live_ranks, path_count, useful

__all__ = [
    "isometry_objective_reference",
    "log_participation_svd",
    "chain_paths",
    "live_ranks",
    "entry_path_counts",
    "path_count",
    "useful",
    "tt_to_dense",
    "tr_to_dense",
    "tucker_to_dense",
    "cp_to_dense",
    "to_dense",
    "matrix_to_kernel",
    "kernel_to_matrix",
    "matmul_reference",
    "einsum_reference",
    "einsum_equation",
    "conv2d_reference",
    "tt_svd",
    "tr_svd",
    "hosvd",
    "central_difference_grad",
    "complex_step_grad",
    "central_difference_hvp",
    "relu",
    "dense_mlp_forward",
    "tt_mlp_forward",
    "cross_entropy",
    "synflow_objective",
    "erk_real_counts",
    "mlp_forward",
    "lookahead_loss",
    "prospr_scores",
    "ntk_sap_objective",
    "ntk_sap_scores",
]
