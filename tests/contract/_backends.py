"""The per-backend fixture layer of the contract suite: build a layer, set its arrays, run it, and
hand everything back as NumPy, the same way for torch and JAX.

A contract test takes the ``backend`` fixture (parametrised over ``"torch"`` and ``"jax"``; a
backend that is not installed is skipped with its reason) and talks only to the `Backend` methods,
so one assertion covers both backends.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tedepr
from tedepr.pruning.problem import canonical_name

BACKENDS = ("torch", "jax")


class Backend:
    """Layer handles are ``(layer, params)`` pairs; torch's params are the module itself."""

    name = ""

    # -- building
    def module(self):
        raise NotImplementedError

    def linear(self, fmt, *args, **kw):
        layer = self.module().linear_class(fmt)(*args, **kw)
        return self._handle(layer)

    def conv(self, fmt, *args, **kw):
        layer = self.module().conv_class(fmt)(*args, **kw)
        return self._handle(layer)

    # -- arrays in and out
    def set_arrays(self, handle, cores, bias, dtype: str):
        """The handle with these cores (and bias) in ``dtype`` (the handle is not changed)."""
        raise NotImplementedError

    def rounded(self, a, dtype: str) -> np.ndarray:
        """``a`` rounded to ``dtype`` and back to float64: what the backend computes with."""
        return np.asarray(np.asarray(a, dtype=dtype), dtype=np.float64)

    def forward(self, handle, x, masks=None):
        """``(y as NumPy, y's dtype name)``; ``masks``: a bool array per core, or None."""
        raise NotImplementedError

    def weight(self, handle) -> np.ndarray:
        """The reconstructed ``(in_features, out_features)`` matrix."""
        raise NotImplementedError

    def grads(self, handle, x, masks=None) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Gradients of ``sum(y²)`` with respect to every core (the unmasked parameter) and the
        bias."""
        raise NotImplementedError

    def init_draws(self, fmt, args, kw, draws: int):
        """``(cores (draws, K), weights (draws, N_in·N_out), bias (draws, N_out), core std the
        layer targets)`` of ``draws`` independently initialised float64 layers."""
        raise NotImplementedError

    # -- models and compress results (names are canonical: ``hidden.0.core_1``)
    def zoo(self, name, **kw):
        raise NotImplementedError

    def compress(self, model, data, **kw):
        return self.module().compress(model, data, **kw)

    def dense_count(self, model) -> int:
        raise NotImplementedError

    def is_dense(self, model, layer: str) -> bool:
        """Whether ``model``'s layer ``layer`` is a plain (untensorized) Linear."""
        raise NotImplementedError

    def masks(self, result) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def stored_weights(self, result) -> dict[str, np.ndarray]:
        """The trainable weights as stored (the unmasked originals), by canonical name."""
        raise NotImplementedError

    def run(self, result, x) -> np.ndarray:
        raise NotImplementedError

    def tensorized_norms(self, result) -> dict[str, float]:
        """Frobenius norm of every tensorized layer's reconstructed matrix, by layer name."""
        raise NotImplementedError

    # -- training
    def tensorize(self, model, *args, **kw):
        return self.module().tensorize(model, *args, **kw)

    def fit(self, model, data, **kw):
        """The backend's ``fit`` on ``model`` (JAX: with its params from ``init(key(0))``)."""
        raise NotImplementedError

    def snapshot(self, model) -> list[np.ndarray]:
        """Copies of every parameter array of ``model`` (JAX: of the params `fit` starts from)."""
        raise NotImplementedError

    def layer(self, model, name: str):
        """The (sub)layer ``name`` (canonical, ``hidden.0``) of ``model``."""
        raise NotImplementedError

    def evaluate(self, model, data, **kw):
        """The backend's ``evaluate`` (JAX: with the params `fit` starts from)."""
        raise NotImplementedError

    def full_masks(self, model, value: bool) -> dict:
        """A mask of ``value`` for every prunable weight, by the backend's own names."""
        raise NotImplementedError

    def strategy(self, layer) -> str:
        return layer.strategy

    def param_name(self, canonical: str) -> str:
        """The backend's own name of a parameter (``hidden.0.core_1``; JAX ``hidden/0/cores/1``)."""
        return canonical


class TorchBackend(Backend):
    name = "torch"

    def __init__(self):
        import torch

        self.torch = torch

    def module(self):
        from tedepr.backends import torch as backend

        return backend

    def _handle(self, layer):
        return layer, layer

    def set_arrays(self, handle, cores, bias, dtype):
        import copy

        layer = copy.deepcopy(handle[0]).to(getattr(self.torch, dtype))
        layer._load_cores(cores)
        if bias is not None:
            with self.torch.no_grad():
                layer.bias.copy_(self.torch.as_tensor(bias))
        return layer, layer

    def _masked(self, layer, masks):
        if masks is None:
            return layer
        import copy

        layer = copy.deepcopy(layer)
        self.module().apply_masks(
            layer, {f"core_{k}": self.torch.as_tensor(m) for k, m in enumerate(masks)}
        )
        return layer

    def forward(self, handle, x, masks=None):
        layer = self._masked(handle[0], masks)
        dtype = next(layer.parameters()).dtype
        with self.torch.no_grad():
            y = layer(self.torch.as_tensor(np.asarray(x)).to(dtype))
        return y.double().numpy(), str(y.dtype).removeprefix("torch.")

    def weight(self, handle):
        return handle[0].dense_weight().detach().double().numpy()

    def grads(self, handle, x, masks=None):
        layer = self._masked(handle[0], masks)
        dtype = next(layer.parameters()).dtype
        layer.zero_grad()
        layer(self.torch.as_tensor(np.asarray(x)).to(dtype)).pow(2).sum().backward()
        weights = self.module().prunable_weights(layer)
        cores = [weights[f"core_{k}"].grad for k in range(len(weights))]
        assert all(g is not None for g in cores), "a core got no gradient at all"
        bias = None if layer.bias is None else layer.bias.grad.double().numpy()
        return [g.double().numpy() for g in cores], bias

    def init_draws(self, fmt, args, kw, draws):
        cls = self.module().linear_class(fmt)
        cores, weights, biases = [], [], []
        for s in range(draws):
            self.torch.manual_seed(s)  # the bias comes from torch's generator
            layer = cls(*args, **kw, seed=s, dtype=self.torch.float64)
            cores.append(np.concatenate([c.detach().numpy().ravel() for c in layer.cores]))
            weights.append(layer.dense_weight().detach().numpy().ravel())
            biases.append(layer.bias.detach().numpy())
        target = 1.0 / math.sqrt(3 * layer.in_features)
        std = tedepr.core_std(layer.format, layer.ranks, len(layer.cores), target)
        return np.stack(cores), np.stack(weights), np.stack(biases), std

    def zoo(self, name, **kw):
        return self.module().get(name, seed=0, **kw)

    def dense_count(self, model):
        return self.module().count_weights(model)["dense"]

    def is_dense(self, model, layer):
        return type(model.get_submodule(layer)) is self.torch.nn.Linear

    def masks(self, result):
        return {canonical_name(n): m.numpy() for n, m in result.masks.items()}

    def stored_weights(self, result):
        weights = self.module().prunable_weights(result.model)
        return {canonical_name(n): p.detach().numpy() for n, p in weights.items()}

    def run(self, result, x):
        with self.torch.no_grad():
            return result.model(self.torch.as_tensor(np.asarray(x))).numpy()

    def tensorized_norms(self, result):
        return {
            name: float(np.linalg.norm(m.factorized().to_dense().detach().double().numpy()))
            for name, m in result.model.named_modules()
            if name and hasattr(m, "factorized")
        }

    def fit(self, model, data, **kw):
        return self.module().fit(model, data, **kw)

    def snapshot(self, model):
        return [p.detach().clone().numpy() for p in model.parameters()]

    def layer(self, model, name):
        return model.get_submodule(name)

    def evaluate(self, model, data, **kw):
        return self.module().evaluate(model, data, **kw)

    def full_masks(self, model, value):
        weights = self.module().prunable_weights(model)
        return {
            n: self.torch.full(p.shape, value, dtype=self.torch.bool) for n, p in weights.items()
        }

    def strategy(self, layer):
        return layer._strategy


class JaxBackend(Backend):
    name = "jax"

    def __init__(self):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self._compiled: dict = {}  # (layer, what) -> jitted function

    def module(self):
        from tedepr.backends import jax as backend

        return backend

    # Each jit wrapper compiles anew, and an eager init compiles every random call on its own
    # (seconds per layer): the wrappers are cached per layer (layers are hashable), and a handle's
    # params are drawn (by one jitted init) only when a test uses them rather than set_arrays'.
    def _jitted(self, layer, what: str):
        key = (layer, what)
        if key not in self._compiled:
            jax, jnp = self.jax, self.jnp
            if what == "grad":
                fn = jax.grad(lambda p, x, m: jnp.sum(layer.apply(p, x, m) ** 2))
            else:
                fn = getattr(layer, what)  # apply, init, weight
            self._compiled[key] = jax.jit(fn)
        return self._compiled[key]

    def _handle(self, layer):
        return layer, None

    def _params_of(self, handle):
        layer, params = handle
        return self._jitted(layer, "init")(self.jax.random.key(0)) if params is None else params

    def set_arrays(self, handle, cores, bias, dtype):
        jnp = self.jnp
        params = {"cores": tuple(jnp.asarray(c, dtype=getattr(jnp, dtype)) for c in cores)}
        if bias is not None:
            params["bias"] = jnp.asarray(bias, dtype=getattr(jnp, dtype))
        return handle[0], params

    def _masks(self, masks):
        return None if masks is None else {"cores": tuple(self.jnp.asarray(m) for m in masks)}

    def forward(self, handle, x, masks=None):
        layer, params = handle[0], self._params_of(handle)
        dtype = params["cores"][0].dtype
        y = self._jitted(layer, "apply")(
            params, self.jnp.asarray(np.asarray(x), dtype), self._masks(masks)
        )
        return np.asarray(y, dtype=np.float64), str(y.dtype)

    def weight(self, handle):
        layer, params = handle[0], self._params_of(handle)
        return np.asarray(self._jitted(layer, "weight")(params), dtype=np.float64)

    def grads(self, handle, x, masks=None):
        layer, params = handle[0], self._params_of(handle)
        x = self.jnp.asarray(np.asarray(x), params["cores"][0].dtype)
        g = self._jitted(layer, "grad")(params, x, self._masks(masks))
        bias = None if "bias" not in g else np.asarray(g["bias"], np.float64)
        return [np.asarray(c, np.float64) for c in g["cores"]], bias

    def init_draws(self, fmt, args, kw, draws):
        jax, jnp = self.jax, self.jnp
        layer = self.module().linear_class(fmt)(*args, **kw)
        keys = jax.random.split(jax.random.key(0), draws)
        params = jax.jit(jax.vmap(lambda k: layer.init(k, jnp.float64)))(keys)
        cores = np.concatenate([np.asarray(c).reshape(draws, -1) for c in params["cores"]], axis=1)
        weights = np.asarray(jax.jit(jax.vmap(layer.weight))(params)).reshape(draws, -1)
        return cores, weights, np.asarray(params["bias"]), layer.core_std

    def zoo(self, name, **kw):
        # the Model (flax=False): this adapter reads model.init / model.layers / params; the
        # Flax default's parity with it is tests/test_flax_zoo.py's
        return self.module().get(name, flax=False, **kw)

    def dense_count(self, model):
        params = self.jax.eval_shape(model.init, self.jax.random.key(0))  # shapes suffice
        return self.module().count_weights(model, params)["dense"]

    def is_dense(self, model, layer):
        return type(model.layers[layer.replace(".", "/")]) is self.module().Dense

    def masks(self, result):
        return {canonical_name(n): np.asarray(m) for n, m in result.masks.items()}

    def stored_weights(self, result):
        weights = self.module().prunable_weights(result.params)
        return {canonical_name(n): np.asarray(a) for n, a in weights.items()}

    def run(self, result, x):
        return np.asarray(result.apply(self.jnp.asarray(np.asarray(x))))

    def tensorized_norms(self, result):
        out = {}
        for name, layer in result.model.layers.items():
            if callable(getattr(layer, "factorized", None)):
                f = layer.factorized(result.params[name])
                out[name.replace("/", ".")] = float(np.linalg.norm(np.asarray(f.to_dense())))
        return out

    def _params(self, model):
        return model.init(self.jax.random.key(0))

    def fit(self, model, data, **kw):
        return self.module().fit(model, self._params(model), data, **kw)

    def snapshot(self, model):
        return [np.array(a) for a in self.jax.tree.leaves(self._params(model))]

    def param_name(self, canonical):
        return canonical.replace(".core_", ".cores.").replace(".", "/")

    def layer(self, model, name):
        return model.layers[name.replace(".", "/")]

    def evaluate(self, model, data, **kw):
        return self.module().evaluate(model, self._params(model), data, **kw)

    def full_masks(self, model, value):
        weights = self.module().prunable_weights(self._params(model))
        return {n: np.full(np.shape(a), value) for n, a in weights.items()}


_MAKERS = {"torch": TorchBackend, "jax": JaxBackend}


def backend_params(*names):
    """``pytest.param`` of each backend name, with its marker (for ``indirect`` parametrisation)."""
    return [pytest.param(b, marks=getattr(pytest.mark, b)) for b in names]


def per_backend(cases: dict[str, list]) -> list:
    """``pytest.param(backend, *case)`` for every case of every backend: the same assertion, with
    a case table per backend where running every case on both would only add compile time (each
    backend keeps at least the cases its own suite ran before the contract suite existed). Use
    with ``indirect=["backend"]``."""
    out = []
    for name, rows in cases.items():
        for row in rows:
            row = row if isinstance(row, tuple) else (row,)
            out.append(pytest.param(name, *row, marks=getattr(pytest.mark, name)))
    return out


def make_backend(name: str) -> Backend:
    pytest.importorskip(name)
    return _MAKERS[name]()


@pytest.fixture(params=backend_params(*BACKENDS), scope="module")
def backend(request) -> Backend:
    """Each contract test runs once per backend."""
    return make_backend(request.param)
