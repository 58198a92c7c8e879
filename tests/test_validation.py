"""Issue 10, "nothing wrong gets through": one test per case the issue lists, each ending in a clear
error that names the argument (or a correct result), plus the shared batch validator on NumPy,
torch and JAX arrays."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import tedepr
from tedepr.validation import (
    check_batch,
    check_float_dtype,
    check_globs_match,
    check_input_shape,
    check_int,
    check_seed,
    check_tolerance,
)

RNG = np.random.default_rng(0)
X16 = RNG.standard_normal((16, 1, 28, 28)).astype(np.float32)
Y16 = RNG.integers(0, 10, 16)
W64x48 = RNG.standard_normal((64, 48))  # Σ w² at scale 1e153 overflows float64 (~3e309)

torch_only = pytest.mark.torch
jax_only = pytest.mark.jax


def _torch():
    return pytest.importorskip("torch")


def _jax():
    return pytest.importorskip("jax")


def _labels(value):
    y = Y16.copy()
    y[3] = value
    return y


# ----------------------------------------------------------------------------- the validator
def _libraries():
    out = [pytest.param("numpy", id="numpy")]
    out.append(pytest.param("torch", id="torch", marks=torch_only))
    out.append(pytest.param("jax", id="jax", marks=jax_only))
    return out


def _to(lib, a):
    if lib == "numpy":
        return a
    if lib == "torch":
        return _torch().as_tensor(a)
    _jax()
    import jax.numpy as jnp

    return jnp.asarray(a)


@pytest.mark.parametrize("lib", _libraries())
def test_check_batch_accepts_a_good_batch(lib):
    check_batch(_to(lib, X16), _to(lib, Y16), num_classes=10, input_shape=(1, 28, 28))


@pytest.mark.parametrize("lib", _libraries())
@pytest.mark.parametrize(
    "x, y, kw, match",
    [
        (X16.astype(np.int32), Y16, {}, r"train_data \(batch 2\): inputs x must be floating point"),
        (X16, Y16.astype(np.float32), {}, r"labels y must be a 1-D integer array.*float32"),
        (X16, Y16 > 3, {}, r"labels y must be a 1-D integer array.*bool"),
        (X16, Y16[:, None], {}, r"labels y must be a 1-D integer array.*shape \(16, 1\)"),
        (X16[:0], Y16[:0], {}, r"batch 2\): the batch is empty"),
        (X16, Y16[:8], {}, r"x and y must have the same length"),
        (X16, _labels(10), {"num_classes": 10}, r"class indices in \[0, 10\).*to 10$"),
        (X16, _labels(-1), {}, r"non-negative class indices; got values from -1"),
        (X16, Y16, {"input_shape": (784,)}, r"each sample must have shape \(784,\)"),
        (np.where(np.arange(X16.size).reshape(X16.shape) == 5, np.inf, X16), Y16, {}, "1 NaN"),
    ],
    ids=["int-x", "float-y", "bool-y", "2d-y", "empty", "lengths", "label>=C", "label<0",
         "shape", "inf"],
)  # fmt: skip
def test_check_batch_names_the_argument_batch_and_expectation(lib, x, y, kw, match):
    with pytest.raises(ValueError, match=match) as info:
        check_batch(_to(lib, x), _to(lib, y), name="train_data", index=2, **kw)
    assert "train_data (batch 2)" in str(info.value)


def test_check_batch_rejects_non_arrays_with_type_error():
    with pytest.raises(TypeError, match=r"data: inputs x must be an array.*list"):
        check_batch([[1.0]], Y16[:1])
    with pytest.raises(TypeError, match=r"data: labels y must be an array.*NoneType"):
        check_batch(X16, None)


def test_option_checks():
    assert check_int(3, "n_iter") == 3 and check_int(np.int64(2), "n_iter") == 2
    with pytest.raises(ValueError, match="n_iter must be an int >= 1; got 0"):
        check_int(0, "n_iter")
    with pytest.raises(TypeError, match="n_iter must be an int >= 1; got float"):
        check_int(2.0, "n_iter")
    with pytest.raises(TypeError, match="n_iter"):
        check_int(True, "n_iter")
    for bad in (-1e-3, math.nan, math.inf):
        with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
            check_tolerance(bad)
    with pytest.raises(TypeError, match="tol must be a finite number"):
        check_tolerance("small")
    assert check_seed(None) is None and check_seed(np.int32(4)) == 4
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        check_seed(-1)
    with pytest.raises(TypeError, match="seed must be None, an int"):
        check_seed(1.5)
    with pytest.raises(ValueError, match="input_shape must be a non-empty tuple of positive ints"):
        check_input_shape((-1,))
    with pytest.raises(TypeError, match="input_shape must be a tuple of positive ints"):
        check_input_shape("28x28")
    import array_api_compat.numpy as xp

    assert check_float_dtype("float32", xp) == xp.float32
    with pytest.raises(ValueError, match="dtype must be a real floating dtype"):
        check_float_dtype("complex128", xp)
    with pytest.raises(ValueError, match="did you mean 'classifier'"):
        check_globs_match(["classifer"], ["hidden.0", "classifier"], "exclude")
    check_globs_match(["hidden.*"], ["hidden.0", "classifier"], "include")


# ----------------------------------------------------------------------------- labels
@jax_only
@pytest.mark.parametrize("label", [99, -1, 10**6])
def test_jax_score_and_compress_reject_out_of_range_labels(label):
    _jax()
    model = tedepr.models.get("lenet300_100", backend="jax")
    for call in (tedepr.score, tedepr.compress):
        with pytest.raises(ValueError, match=r"data \(batch 0\): labels y must be .*class ind"):
            call(model, (X16, _labels(label)), backend="jax")


@torch_only
def test_torch_compress_rejects_float_labels():
    torch = _torch()
    model = tedepr.models.get("lenet300_100", backend="torch", seed=0)
    with pytest.raises(ValueError, match=r"data \(batch 0\): labels y must be a 1-D integer"):
        tedepr.compress(model, (torch.as_tensor(X16), torch.rand(16)), backend="torch")


@torch_only
@pytest.mark.parametrize("label", [99, -1, 10**6])
def test_torch_compress_and_score_reject_out_of_range_labels(label):
    torch = _torch()
    model = tedepr.models.get("lenet300_100", backend="torch", seed=0)
    data = (torch.as_tensor(X16), torch.as_tensor(_labels(label)))
    for call in (tedepr.score, tedepr.compress):
        with pytest.raises(ValueError, match=r"data \(batch 0\): labels y must be"):
            call(model, data, backend="torch")


@torch_only
def test_torch_scoring_checks_labels_against_the_output_width():
    torch = _torch()
    model = tedepr.models.get("lenet300_100", backend="torch", seed=0, num_classes=4)
    data = (torch.as_tensor(X16), torch.as_tensor(Y16 % 5))  # holds a 4
    assert int(data[1].max()) == 4
    with pytest.raises(ValueError, match=r"\[0, 4\) \(the model's output width is 4\)"):
        tedepr.score(model, data, backend="torch")
    ok = tedepr.score(model, (data[0], data[1] % 4), backend="torch")  # the same batch, in range
    assert all(bool(torch.isfinite(v).all()) for v in ok.values())


# ----------------------------------------------------------------------------- empty batches
@torch_only
def test_torch_compress_rejects_an_empty_batch():
    torch = _torch()
    model = tedepr.models.get("lenet300_100", backend="torch", seed=0)
    empty = (torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"data \(batch 0\): the batch is empty"):
        tedepr.compress(model, empty, backend="torch")
    with pytest.raises(ValueError, match=r"data \(batch 1\): the batch is empty"):
        tedepr.score(model, [(X16, Y16), empty], num_batches=2, backend="torch")


@jax_only
def test_jax_compress_rejects_an_empty_batch():
    _jax()
    model = tedepr.models.get("lenet300_100", backend="jax")
    with pytest.raises(ValueError, match=r"data \(batch 0\): the batch is empty"):
        tedepr.compress(model, (X16[:0], Y16[:0]), backend="jax")


# ----------------------------------------------------------------------------- NaN in the data
def _with_nan(x):
    x = x.copy()
    x[0, 0, 0, 0] = np.nan
    return x


@torch_only
def test_make_loader_rejects_nan():
    from tedepr.backends.torch import make_loader

    with pytest.raises(ValueError, match=r"make_loader\(x, y\): inputs x hold 1 NaN"):
        make_loader(_with_nan(X16), Y16, 4)


@torch_only
def test_torch_compress_names_the_data_not_a_parameter_for_nan():
    torch = _torch()
    model = tedepr.models.get("lenet300_100", backend="torch", seed=0)
    with pytest.raises(ValueError, match=r"data \(batch 0\): inputs x hold 1 NaN"):
        tedepr.compress(model, (torch.as_tensor(_with_nan(X16)), torch.as_tensor(Y16)))


@torch_only
def test_torch_fit_checks_every_batch():
    torch = _torch()
    from tedepr.backends.torch import fit

    model = tedepr.models.get("lenet300_100", backend="torch", seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    good = (torch.as_tensor(X16[:8]), torch.as_tensor(Y16[:8]))
    nan = (torch.as_tensor(_with_nan(X16[8:])), torch.as_tensor(Y16[8:]))
    # NaN data in fit is its non-finite event (a ValueError too), naming the step and the sample
    with pytest.raises(ValueError, match=r"step 2: the batch contains NaN/inf at index 0"):
        fit(model, [good, nan], epochs=1, progress=False)
    bad_label = (torch.as_tensor(X16[8:]), torch.as_tensor(_labels(10)[8:] * 0 + 10))
    with pytest.raises(ValueError, match=r"train_data \(batch 1\): labels y must be class ind"):
        fit(model, [good, bad_label], epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"eval_data: labels y must be class indices in \[0, 10\)"):
        fit(model, [good], epochs=1, progress=False, eval_data=[bad_label])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert len(before) == len(list(model.parameters()))


@jax_only
def test_jax_fit_checks_the_data_and_every_batch():
    jax = _jax()
    from tedepr.backends.jax import fit

    model = tedepr.models.get("lenet300_100", backend="jax", flax=False)
    params = model.init(jax.random.key(0))
    # NaN data in fit is its non-finite event (a ValueError too), naming the sample
    with pytest.raises(
        ValueError, match=r"the batch contains NaN/inf at index \d+ \(sample \d+ of train_data\)"
    ):
        fit(model, params, (_with_nan(X16), Y16), epochs=1, progress=False)
    batches = [(X16[:8], Y16[:8]), (X16[8:], np.full(8, 10))]
    with pytest.raises(ValueError, match=r"train_data \(batch 1\): labels y must be class ind"):
        fit(model, params, batches, epochs=1, progress=False)
    batches = [(X16[:8], Y16[:8]), (_with_nan(X16[8:]), Y16[8:])]
    with pytest.raises(ValueError, match=r"step 2: the batch contains NaN/inf"):
        fit(model, params, batches, epochs=1, progress=False)


# ----------------------------------------------------------------------------- typos and nonsense
def test_decompose_rejects_unknown_and_misplaced_options():
    with pytest.raises(TypeError, match="n_iters"):
        tedepr.decompose(W64x48, "tt", rank=4, n_iters=5)
    with pytest.raises(ValueError, match=r"n_iter apply to the iterative methods only.*'tt'"):
        tedepr.decompose(W64x48, "tt", rank=4, n_iter=5)
    with pytest.raises(ValueError, match="seed applies to format 'cp' only"):
        tedepr.decompose(W64x48, "tucker", rank=4, method="hooi", seed=1)


@pytest.mark.parametrize("fmt, kw", [("cp", {}), ("tucker", {"method": "hooi"})])
def test_iteration_counts_and_tolerances(fmt, kw):
    for n_iter in (0, -2):
        with pytest.raises(ValueError, match=rf"n_iter must be an int >= 1; got {n_iter}"):
            tedepr.decompose(W64x48, fmt, rank=2, n_iter=n_iter, **kw)
    for tol in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
            tedepr.decompose(W64x48, fmt, rank=2, tol=tol, **kw)
    f = tedepr.decompose(W64x48, fmt, rank=2, n_iter=1, **kw)
    assert 0.0 < f.error < 1.0  # one sweep is a finite error, never inf


@pytest.mark.parametrize("dtype", ["int", "bool", "object", np.int32, "complex128"])
def test_random_factorized_dtype_must_be_real_floating(dtype):
    with pytest.raises(ValueError, match="dtype must be a real floating dtype"):
        tedepr.random_factorized("tt", 12, 6, 2, dtype=dtype)
    with pytest.raises(ValueError, match="dtype must be a real floating dtype"):
        tedepr.random_factorized_conv("tucker", 4, 4, 3, 2, dtype=dtype)


def test_random_factorized_dtype_not_a_dtype_is_type_error():
    with pytest.raises(TypeError, match="dtype must be a real floating dtype; got 'nope'"):
        tedepr.random_factorized("tt", 12, 6, 2, dtype="nope")
    f = tedepr.random_factorized("tt", 12, 6, 2, dtype="float32", seed=0)
    assert f.dtype == np.float32 and np.all(np.isfinite(f.to_dense()))


@torch_only
def test_torch_tensorize_patterns_must_match_a_layer():
    from tedepr.backends.torch import tensorize

    model = tedepr.models.get("lenet300_100", backend="torch", seed=0)
    with pytest.raises(ValueError, match=r"overrides: the pattern 'nope' matches no module"):
        tensorize(model, overrides={"nope": {"rank": 2}})
    with pytest.raises(ValueError, match=r"include: .*'hiden\.\*'.*did you mean 'hidden\.[01]'"):
        tensorize(model, include="hiden.*")
    with pytest.raises(ValueError, match=r"exclude: .*'classifer'.*did you mean 'classifier'"):
        tensorize(model, exclude=["classifer"])
    new = tensorize(model, "tt", 4, include="hidden.*", exclude="classifier")
    assert type(new.classifier).__name__ == "Linear"


@jax_only
def test_jax_tensorize_patterns_must_match_a_layer():
    _jax()
    from tedepr.backends.jax import tensorize

    model = tedepr.models.get("lenet300_100", backend="jax", flax=False)
    with pytest.raises(ValueError, match=r"overrides: the pattern 'nope' matches no layer"):
        tensorize(model, overrides={"nope": {"rank": 2}})
    with pytest.raises(ValueError, match=r"exclude: .*did you mean 'classifier'"):
        tensorize(model, exclude="clasifier")


@pytest.mark.parametrize(
    "backend", [pytest.param("torch", marks=torch_only), pytest.param("jax", marks=jax_only)]
)
@pytest.mark.parametrize(
    "name, kw, error, match",
    [
        ("lenet300_100", {"hidden": (0,)}, ValueError, r"hidden\[0\] must be an int >= 1; got 0"),
        ("lenet300_100", {"hidden": 300}, TypeError, "hidden must be a sequence"),
        ("lstm", {"hidden_size": 0}, ValueError, "hidden_size must be an int >= 1"),
        ("vit", {"depth": 0}, ValueError, "depth must be an int >= 1"),
        ("vit", {"patch_size": 0}, ValueError, "patch_size must be an int >= 1"),
        ("vit", {"heads": -2}, ValueError, "heads must be an int >= 1"),
    ],
)
def test_zoo_hyper_parameters_are_validated(backend, name, kw, error, match):
    pytest.importorskip(backend)
    with pytest.raises(error, match=match):
        tedepr.models.get(name, backend=backend, **kw)


# ----------------------------------------------------------------------------- scale
@pytest.mark.parametrize(
    "fmt, kw",
    [("tt", {}), ("tr", {}), ("tucker", {}), ("tucker", {"method": "hooi"}), ("cp", {})],
)
@pytest.mark.parametrize("scale", [1e153, 1e300, 1e-300])
def test_decompositions_are_scale_safe(fmt, kw, scale):
    base = tedepr.decompose(W64x48, fmt, rank=4, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow anywhere inside
        f = tedepr.decompose(W64x48 * scale, fmt, rank=4, **kw)
    assert math.isfinite(f.error)
    assert f.error == pytest.approx(base.error, rel=1e-9)
    dense = f.to_dense() if scale < 1e200 else None
    if dense is not None:  # the rescaled cores reproduce the scaled matrix
        assert np.allclose(dense / scale, base.to_dense(), rtol=1e-8, atol=1e-10)
    assert all(np.all(np.isfinite(c)) for c in f.cores)


def test_tt_scale_1e153_is_the_issue_case():
    w = np.random.default_rng(3).standard_normal((784, 300))
    assert tedepr.decompose(w * 1e153, "tt", rank=4).error == pytest.approx(
        tedepr.decompose(w, "tt", rank=4).error, rel=1e-10
    )


def test_bounds_scale_with_the_input():
    from tedepr.decompositions import hosvd, tt_svd

    _, b1 = tt_svd(W64x48, (8, 8), (6, 8), rank=3)
    _, b2 = tt_svd(W64x48 * 1e200, (8, 8), (6, 8), rank=3)
    assert b2 == pytest.approx(1e200 * b1, rel=1e-9)
    _, h1 = hosvd(W64x48, (8, 8), (6, 8), rank=3)
    _, h2 = hosvd(W64x48 * 1e-200, (8, 8), (6, 8), rank=3)
    assert h2 == pytest.approx(1e-200 * h1, rel=1e-9)


def test_zero_matrix_decomposes_to_zero():
    f = tedepr.decompose(np.zeros((12, 6)), "cp", rank=2)
    assert f.error == 0.0 and not np.any(f.to_dense())


# ----------------------------------------------------------------------------- right-kind errors
def _tt():
    return tedepr.random_factorized("tt", 12, 6, 2, seed=0)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: tedepr.plan_contraction(None), TypeError, "f must be a tedepr Factorized"),
        (lambda: tedepr.plan_contraction(_tt(), batch=2.0), TypeError, "batch must be"),
        (lambda: tedepr.contract(None, _tt()), TypeError, "x must be an array"),
        (lambda: tedepr.contract([[1.0] * 12], _tt()), TypeError, "x must be an array"),
        (lambda: tedepr.contract(np.ones((2, 12)), _tt(), xp="numpy"), TypeError, "xp must be"),
        (lambda: tedepr.get_namespace(np.ones(2), xp=3), TypeError, "xp must be an array names"),
        (
            lambda: tedepr.from_cores("tt", ["a", "b"], (3, 4), (2, 3)),
            TypeError,
            r"cores\[0\] must be an array; got str",
        ),
        (lambda: tedepr.from_cores("cp", "abc", (3, 4), (2, 3)), TypeError, "cores must be a seq"),
        (
            lambda: tedepr.TuckerMatrix("core", [None], (12,), (6,)),
            TypeError,
            "core must be an array",
        ),
        (
            lambda: tedepr.random_factorized("tt", 12, 6, 2, seed=-1),
            ValueError,
            "seed must be an int >= 0",
        ),
        (
            lambda: tedepr.random_factorized("tt", 12, 6, 2, seed="x"),
            TypeError,
            "seed must be None",
        ),
        (lambda: tedepr.decompose(W64x48, "cp", 2, seed=-1), ValueError, "seed must be an int"),
    ],
)
def test_core_right_kind_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@jax_only
def test_jax_layer_params_without_cores():
    jax = _jax()
    import jax.numpy as jnp

    from tedepr.backends import jax as tj

    layer = tj.TTLinear(12, 6, rank=2)
    params = layer.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"params of TTLinear must hold 'cores'.*\['bias'\]"):
        layer.apply({"bias": params["bias"]}, jnp.ones((2, 12)))
    with pytest.raises(TypeError, match="params of TTLinear must be the dict its init returns"):
        layer.apply([params], jnp.ones((2, 12)))
    dense = tj.Dense(12, 6)
    with pytest.raises(ValueError, match="params of Dense must hold 'weight'"):
        dense.apply({}, jnp.ones((2, 12)))


@pytest.mark.parametrize(
    "backend", [pytest.param("torch", marks=torch_only), pytest.param("jax", marks=jax_only)]
)
@pytest.mark.parametrize("shape", [(-1,), (0, 28), ()])
def test_compress_input_shape_is_validated(backend, shape):
    pytest.importorskip(backend)
    model = tedepr.models.get("lenet300_100", backend=backend)
    with pytest.raises(ValueError, match="input_shape must be a non-empty tuple of positive ints"):
        tedepr.compress(model, None, score="synflow", input_shape=shape, backend=backend)


@torch_only
def test_torch_layers_take_tensors_only_like_nn_linear():
    torch = _torch()
    from tedepr.backends.torch import TensorizedLSTM, TTConv2d, TTLinear

    x = np.ones((2, 12), np.float32)
    with pytest.raises(TypeError):  # what nn.Linear does
        torch.nn.Linear(12, 6)(x)
    with pytest.raises(TypeError, match=r"TTLinear.forward\(\): argument 'input' must be Tensor"):
        TTLinear(12, 6, rank=2)(x)
    with pytest.raises(TypeError, match="TTConv2d.forward"):
        TTConv2d(4, 4, 3, rank=2)(np.ones((1, 4, 5, 5), np.float32))
    with pytest.raises(TypeError, match="TensorizedLSTM.forward"):
        TensorizedLSTM(12, 8, rank=2)(np.ones((3, 2, 12), np.float32))
    assert TTLinear(12, 6, rank=2)(torch.ones(2, 12)).shape == (2, 6)


@pytest.mark.parametrize(
    "backend", [pytest.param("torch", marks=torch_only), pytest.param("jax", marks=jax_only)]
)
def test_score_and_compress_seed_names_the_argument(backend):
    pytest.importorskip(backend)
    model = tedepr.models.get("lenet300_100", backend=backend)
    data = (X16, Y16)
    with pytest.raises(ValueError, match=r"seed must be an int >= 0 .*got -1"):
        tedepr.score(model, data, method="random", seed=-1, backend=backend)
    with pytest.raises(ValueError, match=r"seed must be an int >= 0 .*got -1"):
        tedepr.compress(model, data, score="random", seed=-1, backend=backend)
