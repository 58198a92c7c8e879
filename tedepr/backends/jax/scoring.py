"""`jax.grad`/`jax.jvp` implementation of `tedepr.pruning.problem.ScoringProblem`.

The score math lives in the core (`tedepr.pruning.scores`); this module only differentiates. The
prunable leaves of the params (`tedepr.backends.jax.masking.prunable_paths`) are replaced by the
effective weights ``w = θ ⊙ m`` and the model is differentiated with respect to them:

* ``loss_gradient``: ``∂L/∂w`` with `jax.grad`, averaged over the scoring batches;
* ``hessian_gradient_product``: ``H g`` by forward-over-reverse,
  ``jax.jvp(jax.grad(L), (w,), (g,))``;
* ``synflow_gradient``: ``∂R/∂w`` of ``R = Σ f(1)`` on the ``|θ|`` network, in float64 inside a
  `jax.enable_x64` context (the caller's global configuration is left alone).

Data scores use training-mode normalisation (batch statistics), as SNIP/GraSP and the torch backend
do; SynFlow uses eval mode. Every function is jitted once per problem; masks are arguments, so the
rounds of an iterative score reuse one compilation.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import array_api_compat.numpy
import jax
import jax.numpy as jnp
import numpy as np

from ...pruning.problem import CoreInfo
from ...validation import batches_of, check_batch, check_input_shape
from .masking import is_prunable, leaf_paths
from .models import Model
from .training import _loss_fn

__all__ = ["JaxScoringProblem", "as_batches", "float64_context"]


def as_batches(data, num_batches: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``num_batches`` ``(x, y)`` batches of ``data`` (`tedepr.validation.batches_of`:
    one ``(x, y)`` tuple of arrays, or an iterable of ``(x, y)`` pairs) as checked NumPy arrays."""
    return batches_of(data, num_batches, _host_array)


def _host_array(a, index: int, what: str) -> np.ndarray:
    try:
        out = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"data (batch {index}): {what} must be an array; got {type(a).__name__}"
        ) from exc
    if out.dtype.kind not in "biuf":
        raise TypeError(
            f"data (batch {index}): {what} must be a numeric array; got {type(a).__name__}"
        )
    return out


def float64_context():
    """A context in which JAX computes in float64, without touching the global configuration.

    Uses `jax.enable_x64` (or the older `jax.experimental.enable_x64`). Where neither exists and x64
    is off, a warning says that SynFlow runs in float32, and a null context is returned.
    """
    if jax.config.read("jax_enable_x64"):
        return contextlib.nullcontext()
    ctx = getattr(jax, "enable_x64", None)
    if ctx is not None:
        return ctx(True)
    try:  # pragma: no cover - older JAX
        from jax.experimental import enable_x64

        return enable_x64()
    except ImportError:  # pragma: no cover
        warnings.warn(
            "this JAX has no enable_x64 context: SynFlow gradients are computed in float32",
            stacklevel=3,
        )
        return contextlib.nullcontext()


class JaxScoringProblem:
    """A JAX model, its params, scoring batches and a loss, as a `ScoringProblem`.

    Parameters
    ----------
    model : Model
    params : the model's params (not modified)
    data : ``(x, y)`` arrays (one batch), an iterable of ``(x, y)`` batches, or None (data-free
    scores) num_batches : int
        Batches of ``data`` used; gradients are averaged over them.
    loss : ``"cross_entropy"`` or a callable ``(logits, labels) -> mean loss``.
    input_shape : tuple, optional
        Shape of one sample for the SynFlow input (default: ``model.input_shape``).
    namespace : {"numpy", "jax"}
        The array library of everything returned (`xp`). ``"numpy"`` (default): the gradients are
        computed by JAX and handed to the pruning core as NumPy arrays, whose selection then runs
        eagerly on the host — op-by-op ``jax.numpy`` compiles every small operation for every core
        shape, about 100× slower on a CPU for the same masks. ``"jax"`` keeps them on the device.

    Keys of every returned dict are the ``/``-joined paths of the prunable leaves
    (`prunable_paths`).
    """

    def __init__(
        self,
        model: Model,
        params,
        data=None,
        *,
        num_batches: int = 1,
        loss="cross_entropy",
        input_shape: tuple[int, ...] | None = None,
        namespace: str = "numpy",
    ):
        if not isinstance(model, Model):
            raise TypeError(
                f"model must be a tedepr.backends.jax Model; got {type(model).__name__}"
            )
        if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
            raise ValueError(f"num_batches must be a positive int; got {num_batches!r}")
        self.model = model
        self.params = params
        leaves, self._treedef = jax.tree_util.tree_flatten(params)
        self._paths = leaf_paths(params)
        self._prunable = [p for p in self._paths if is_prunable(p)]
        if not self._prunable:
            raise ValueError(
                "the params have no prunable weights (dense weights or tensorized cores)"
            )
        by_path = dict(zip(self._paths, leaves, strict=True))
        self._weights = {p: by_path[p] for p in self._prunable}
        self._others = {p: by_path[p] for p in self._paths if p not in self._weights}
        input_shape = check_input_shape(input_shape)
        batches = as_batches(data, num_batches)
        if batches:  # each batch against the model: its sample shape and output width
            width = model.output_width(params, None, self._dtype())
            for index, (x, y) in enumerate(batches):
                check_batch(
                    x, y, name="data", index=index, num_classes=width, input_shape=model.input_shape
                )
        self._batches = [
            (jnp.asarray(x, dtype=self._dtype()), jnp.asarray(y, dtype=jnp.int32))
            for x, y in batches
        ]
        self.loss_fn: Callable = _loss_fn(loss)
        self.input_shape = tuple(model.input_shape if input_shape is None else input_shape)
        if namespace not in ("numpy", "jax"):
            raise ValueError(f"namespace must be 'numpy' or 'jax'; got {namespace!r}")
        self.xp = array_api_compat.numpy if namespace == "numpy" else jnp
        self._host = namespace == "numpy"
        self._grad = jax.jit(self._grad_fn)
        self._hvp = jax.jit(self._hvp_fn)
        self._synflow = jax.jit(self._synflow_fn)

    def _dtype(self):
        for w in self._weights.values():
            if jnp.issubdtype(w.dtype, jnp.floating):
                return w.dtype
        return jnp.float32

    # -- protocol
    @property
    def has_data(self) -> bool:
        return bool(self._batches)

    def _out(self, arrays: dict) -> dict[str, Any]:
        return {k: np.asarray(v) for k, v in arrays.items()} if self._host else dict(arrays)

    def weights(self) -> dict[str, Any]:
        return self._out(self._weights)

    def structure(self) -> dict[str, CoreInfo]:
        known = self.model.structure()
        out = {}
        for p in self._prunable:
            info = known.get(p)
            if info is None:  # a leaf no layer describes (a user layer): treat it as dense
                info = CoreInfo(p.rpartition("/")[0], "dense")
            out[p] = info
        return out

    def _params_with(self, weights, others):
        return jax.tree_util.tree_unflatten(
            self._treedef, [weights[p] if p in weights else others[p] for p in self._paths]
        )

    def _loss(self, w, others, x, y):
        logits = self.model.apply(self._params_with(w, others), x, train=True)
        return self.loss_fn(logits, y)

    @staticmethod
    def _effective(weights, masks):
        return {n: w * masks[n].astype(w.dtype) for n, w in weights.items()}

    def _grad_fn(self, weights, masks, others, x, y):
        return jax.grad(self._loss)(self._effective(weights, masks), others, x, y)

    def _hvp_fn(self, weights, masks, g, others, x, y):
        w = self._effective(weights, masks)
        return jax.jvp(lambda v: jax.grad(self._loss)(v, others, x, y), (w,), (g,))[1]

    def _masks(self, masks):
        missing = set(self._weights) - set(masks)
        if missing:
            raise ValueError(
                f"masks must hold an entry for every prunable weight; missing {sorted(missing)[:5]}"
            )
        return {n: jnp.asarray(masks[n]) for n in self._weights}

    @staticmethod
    def _mean(parts):
        if len(parts) == 1:
            return dict(parts[0])
        return {k: sum(p[k] for p in parts) / len(parts) for k in parts[0]}

    def _need_data(self, what):
        if not self._batches:
            raise ValueError(f"{what} needs data: pass (x, y) batches to JaxScoringProblem")

    def loss_gradient(self, masks):
        self._need_data("loss_gradient")
        m = self._masks(masks)
        return self._out(
            self._mean([self._grad(self._weights, m, self._others, x, y) for x, y in self._batches])
        )

    def hessian_gradient_product(self, masks):
        self._need_data("hessian_gradient_product")
        g = self.loss_gradient(masks)
        m = self._masks(masks)
        return self._out(
            self._mean(
                [self._hvp(self._weights, m, g, self._others, x, y) for x, y in self._batches]
            )
        )

    def _synflow_fn(self, weights, masks, others):
        def objective(w):
            params = self._params_with(w, others)
            x = jnp.ones((1,) + self.input_shape, dtype=jnp.float64)
            return jnp.sum(self.model.apply(params, x, train=False))

        def abs64(a):
            return jnp.abs(a.astype(jnp.float64)) if jnp.issubdtype(a.dtype, jnp.floating) else a

        # linearise: every parameter and running statistic positive (Tanaka et al. 2020, as torch)
        weights = {n: abs64(v) for n, v in weights.items()}
        others = {n: abs64(v) for n, v in others.items()}
        return jax.grad(objective)(self._effective(weights, masks))

    def synflow_gradient(self, masks):
        m = self._masks(masks)
        with float64_context():
            return self._out(self._synflow(self._weights, m, self._others))

    def _lookahead_fn(self, weights, masks, others, batches, lr, steps):
        def objective(w0):
            w = w0
            for k in range(steps):
                x, y = batches[k % len(batches)]
                g = jax.grad(self._loss)(w, others, x, y)
                w = {n: w[n] - lr * g[n] for n in w}
            x, y = batches[steps % len(batches)]
            return self._loss(w, others, x, y)

        return jax.grad(objective)(self._effective(weights, masks))

    def lookahead_gradient(self, masks, steps: int, lr: float):
        """``∂L(w_M)/∂w_0`` at ``w_0 = θ ⊙ m``, through ``M = steps`` SGD steps
        ``w_{k+1} = w_k − lr ∇L_k(w_k)`` on the prunable weights (ProsPr); step ``k`` uses batch
        ``k mod B``, the final loss batch ``M mod B``. `jax.grad` through the unrolled steps."""
        self._need_data("lookahead_gradient")
        if not hasattr(self, "_lookahead"):
            self._lookahead = jax.jit(self._lookahead_fn, static_argnames=("steps",))
        m = self._masks(masks)
        return self._out(
            self._lookahead(
                self._weights, m, self._others, tuple(self._batches), float(lr), steps=int(steps)
            )
        )

    def _ntk_fn(self, masks, weights, perturbed, others, x):
        def objective(m):
            f = self.model.apply(self._params_with(self._effective(weights, m), others), x)
            fp = self.model.apply(self._params_with(self._effective(perturbed, m), others), x)
            return jnp.mean(jnp.sum(((f - fp) ** 2).reshape(x.shape[0], -1), axis=1))

        return jax.grad(objective)(masks)

    def ntk_perturbation_gradient(self, masks, weights, perturbed, inputs):
        """``∂R/∂m`` of ``R(m) = mean_x ||f(x; w⊙m) − f(x; w'⊙m)||²`` (NTK-SAP), with ``weights`` w
        and ``perturbed`` w' replacing the prunable leaves (other leaves as they are) and
        normalisation in eval mode; ``inputs`` a batch of samples."""
        if not hasattr(self, "_ntk"):
            self._ntk = jax.jit(self._ntk_fn)
        dtype = self._dtype()
        m = {n: jnp.asarray(v, dtype=dtype) for n, v in self._masks(masks).items()}
        w = {n: jnp.asarray(weights[n], dtype=dtype) for n in self._weights}
        wp = {n: jnp.asarray(perturbed[n], dtype=dtype) for n in self._weights}
        return self._out(self._ntk(m, w, wp, self._others, jnp.asarray(inputs, dtype=dtype)))

    def evaluate_masks(self, masks) -> float:
        """Mean loss of the masked network on the scoring batches (diagnostics)."""
        self._need_data("evaluate_masks")
        w = self._effective(self._weights, self._masks(masks))
        return float(
            sum(self._loss(w, self._others, x, y) for x, y in self._batches) / len(self._batches)
        )
