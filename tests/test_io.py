"""tedepr.save / tedepr.load (compact file, both backends), torch.save of masked models, finalize
and folded inference (checked against the NumPy reference)."""

from __future__ import annotations

import copy
import io
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import reference  # noqa: E402
import tedepr  # noqa: E402
import tedepr.io as tio  # noqa: E402
from tedepr.backends.torch import finalize, get_masks, prunable_parameters  # noqa: E402
from tedepr.backends.torch.interchange import export_arrays  # noqa: E402
from tedepr.backends.torch.layers import _TensorizedLinear  # noqa: E402

pytestmark = pytest.mark.torch

FORMATS = ("tt", "tr", "tucker", "cp")


def _data(seed=0, n=12, side=8, channels=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, side, side, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y


def _mlp(fmt="tt", sparsity=0.9, seed=0):
    """A small zoo MLP 64-32-16-10: hidden.0 tensorized, hidden.1 and classifier dense (masked)."""
    model = tedepr.models.get(
        "lenet300_100", backend="torch", image_size=8, hidden=(32, 16), seed=seed
    )
    x, y = _data(seed)
    r = tedepr.compress(model, (x, y), sparsity=sparsity, format=fmt, score="snip", backend="torch")
    r.model.eval()
    return r, x


def _assert_same_arrays(a, b, exact=True):
    assert set(a["params"]) == set(b["params"])
    assert set(a["masks"]) == set(b["masks"])
    for k in a["masks"]:
        np.testing.assert_array_equal(a["masks"][k], b["masks"][k])
    for k in a["params"]:
        if exact:
            np.testing.assert_array_equal(a["params"][k], b["params"][k], err_msg=k)
        else:
            np.testing.assert_allclose(a["params"][k], b["params"][k], rtol=1e-6, err_msg=k)


# ---------------------------------------------------------------------------- torch -> torch
@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_round_trip_is_bitwise(tmp_path, fmt):
    r, x = _mlp(fmt)
    assert any(isinstance(m, _TensorizedLinear) for m in r.model.modules())
    path = tmp_path / "m.tedepr"
    size = tedepr.save(r, path)
    assert size == path.stat().st_size
    r2 = tedepr.load(path, backend="torch")
    r2.model.eval()
    _assert_same_arrays(export_arrays(r.model), export_arrays(r2.model))
    with torch.no_grad():
        assert torch.equal(r.model(x), r2.model(x))
    assert r2.report.kept_weights == r.report.kept_weights
    assert r2.report.sparsity == r.report.sparsity
    assert r2.masks.keys() == r.masks.keys()


def test_file_stores_only_kept_entries(tmp_path):
    r, _ = _mlp("tt", sparsity=0.95)
    path = tmp_path / "m.tedepr"
    tedepr.save(r, path)
    from safetensors.numpy import load_file

    t = load_file(path)
    kept = sum(int(m.sum()) for m in r.masks.values())
    masked_entries = sum(m.numel() for m in r.masks.values())
    assert t["kept"].size == kept
    assert t["bits"].size == -(-masked_entries // 8)  # one bit per masked entry
    assert t["kept"].dtype == np.float32
    s = tio.read_structure(path)
    assert s["version"] == tio.FORMAT_VERSION and s["dtype"] == "float32"
    assert s["zoo"]["name"] == "lenet300_100"
    assert s["layers"]["hidden.0"]["format"] == "tt"


def test_float16_option(tmp_path):
    r, x = _mlp("tt")
    p32, p16 = tmp_path / "a.tedepr", tmp_path / "b.tedepr"
    n32 = tedepr.save(r, p32)
    n16 = tedepr.save(r, p16, dtype="float16")
    assert n16 < n32
    r2 = tedepr.load(p16)
    assert r2.model.hidden[0].core_0.dtype == torch.float32  # loaded in the training dtype
    a, b = export_arrays(r.model), export_arrays(r2.model)
    for k in a["params"]:  # bitwise equal to the float16 rounding of the saved values
        want = a["params"][k].astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(b["params"][k], want, err_msg=k)
    for k in a["masks"]:
        np.testing.assert_array_equal(a["masks"][k], b["masks"][k])
    r2.model.eval()
    with torch.no_grad():
        y, y2 = r.model(x), r2.model(x)
    assert not torch.equal(y, y2)  # float16 is lossy ...
    torch.testing.assert_close(y2, y, rtol=1e-2, atol=1e-2)  # ... by about its precision


# ---------------------------------------------------------------------------- across backends
@pytest.mark.jax
@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_to_jax(tmp_path, fmt):
    jax = pytest.importorskip("jax")
    from tedepr.backends.jax.interchange import export_arrays as jexport

    r, x = _mlp(fmt)
    path = tmp_path / "m.tedepr"
    tedepr.save(r, path)
    rj = tedepr.load(path, backend="jax")
    # the arrays are bitwise the saved ones, in either backend's layout
    _assert_same_arrays(export_arrays(r.model), jexport(rj.model, rj.params, rj.masks))
    assert rj.params["hidden/0"]["cores"][0].dtype == jax.numpy.float32
    with torch.no_grad():
        y = r.model(x).numpy()
    yj = np.asarray(rj.apply(jax.numpy.asarray(x.numpy())))
    np.testing.assert_allclose(yj, y, rtol=1e-5, atol=1e-5)


@pytest.mark.jax
def test_jax_to_torch(tmp_path):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    model = tedepr.models.get(
        "lenet300_100", backend="jax", flax=False, image_size=8, hidden=(32, 16)
    )
    x, y = _data(1)
    xj, yj = jnp.asarray(x.numpy()), jnp.asarray(y.numpy())
    rj = tedepr.compress(model, (xj, yj), sparsity=0.9, format="tr", score="snip", backend="jax")
    path = tmp_path / "j.tedepr"
    tedepr.save(rj, path)
    assert tio.read_structure(path)["source_backend"] == "jax"
    rt = tedepr.load(path, backend="torch")
    rt.model.eval()
    with torch.no_grad():
        yt = rt.model(x).numpy()
    np.testing.assert_allclose(yt, np.asarray(rj.apply(xj)), rtol=1e-5, atol=1e-5)
    # and back into JAX: bitwise the same params
    rj2 = tedepr.load(path, backend="jax")
    assert type(rj2.model).__name__ == "Model"  # the file records a Model: a Model back
    for a, b in zip(jax.tree.leaves(rj.params), jax.tree.leaves(rj2.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.jax
def test_conv_model_torch_to_jax(tmp_path):
    jax = pytest.importorskip("jax")
    model = tedepr.models.get("lenet5", backend="torch", image_size=16, seed=0)
    x, y = _data(2, n=6, side=16)
    r = tedepr.compress(model, (x, y), sparsity=0.9, format="tt", score="snip", backend="torch")
    r.model.eval()
    path = tmp_path / "c.tedepr"
    tedepr.save(r, path)
    kinds = {rec["kind"] for rec in tio.read_structure(path)["layers"].values()}
    assert "conv2d" in kinds
    rt = tedepr.load(path)
    rt.model.eval()
    rj = tedepr.load(path, backend="jax")
    with torch.no_grad():
        want = r.model(x)
        assert torch.equal(rt.model(x), want)
    got = np.asarray(rj.apply(jax.numpy.asarray(x.numpy())))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- user's own model
class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 48))
        self.head = torch.nn.Linear(48, 10)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def test_own_model_needs_matching_skeleton(tmp_path):
    torch.manual_seed(0)
    net = _Net()
    x, y = _data(3)
    r = tedepr.compress(net, (x, y), sparsity=0.9, format="tt", score="snip", backend="torch")
    r.model.eval()
    path = tmp_path / "own.tedepr"
    tedepr.save(r.model, path)  # a bare model is accepted too
    with pytest.raises(ValueError, match="model="):
        tedepr.load(path)
    r2 = tedepr.load(path, model=_Net())  # the dense skeleton
    r3 = tedepr.load(path, model=r.model)  # or a compressed one of the same structure
    with torch.no_grad():
        want = r.model(x)
        assert torch.equal(r2.model.eval()(x), want)
        assert torch.equal(r3.model.eval()(x), want)

    class Other(_Net):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(48, 7)

    with pytest.raises(ValueError, match="head"):
        tedepr.load(path, model=Other())
    bad = _Net()
    bad.body[1] = torch.nn.Linear(64, 40)
    with pytest.raises(ValueError, match="body.1"):
        tedepr.load(path, model=bad)


# ---------------------------------------------------------------------------- damaged files
def _saved(tmp_path):
    r, _ = _mlp("tt")
    path = tmp_path / "m.tedepr"
    tedepr.save(r, path)
    return path, path.read_bytes()


def test_corrupt_byte_anywhere_is_detected(tmp_path):
    path, data = _saved(tmp_path)
    header = int.from_bytes(data[:8], "little") + 8
    # a byte in the header JSON, in the structure document, in the payload, and the last byte
    doc_at = data.index(b"in_features")
    for where in (12, doc_at, header + 5, (header + len(data)) // 2, len(data) - 1):
        bad = bytearray(data)
        bad[where] ^= 0x41
        path.write_bytes(bytes(bad))
        with pytest.raises(tio.CorruptFileError):
            tedepr.load(path)


def test_truncated_file_is_detected(tmp_path):
    path, data = _saved(tmp_path)
    for n in (0, 5, 100, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:n])
        with pytest.raises(tio.CorruptFileError, match="truncated or corrupt|SHA-256"):
            tedepr.load(path)


def test_wrong_version_and_foreign_files(tmp_path, monkeypatch):
    r, _ = _mlp("tt")
    path = tmp_path / "v.tedepr"
    monkeypatch.setattr(tio, "FORMAT_VERSION", 99)
    tedepr.save(r, path)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="version 99.*reads version 1"):
        tedepr.load(path)
    from safetensors.numpy import save_file

    foreign = tmp_path / "f.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, foreign)
    with pytest.raises(tio.CorruptFileError, match="not a tedepr file"):
        tedepr.load(foreign)


def test_bad_arguments(tmp_path):
    r, _ = _mlp("tt")
    path = tmp_path / "m.tedepr"
    with pytest.raises(ValueError, match="dtype"):
        tedepr.save(r, path, dtype="int8")
    with pytest.raises(TypeError, match="path"):
        tedepr.save(r, 3)
    with pytest.raises(TypeError, match="result_or_model"):
        tedepr.save({"a": 1}, path)
    tedepr.save(r, path)
    with pytest.raises(ValueError, match="backend"):
        tedepr.load(path, backend="mxnet")
    with pytest.raises(TypeError, match="model"):
        tedepr.load(path, model="lenet")
    with pytest.raises(FileNotFoundError):
        tedepr.load(tmp_path / "missing.tedepr")


# ---------------------------------------------------------------------------- masks survive
def _pruned_entries_are_zero(model, masks):
    params = prunable_parameters(model)
    for name, m in masks.items():
        p = params[name]
        assert torch.all(p.detach()[~m] == 0), name
        assert torch.all(
            getattr(model.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2]).detach()[
                ~m
            ]
            == 0
        ), name


def _step(model, x, opt_cls=torch.optim.Adam):
    model.train()
    opt = opt_cls(model.parameters(), lr=0.05)
    y = torch.arange(len(x)) % 10
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_mask_bits_survive_load_and_training(tmp_path):
    r, x = _mlp("tt", sparsity=0.95)
    path = tmp_path / "m.tedepr"
    tedepr.save(r, path)
    r2 = tedepr.load(path)
    masks = get_masks(r2.model)
    assert masks.keys() == r.masks.keys()
    for k in masks:
        assert torch.equal(masks[k], r.masks[k])
        assert not masks[k].all()  # something is pruned in every masked array
    _pruned_entries_are_zero(r2.model, masks)
    before = {n: p.detach().clone() for n, p in prunable_parameters(r2.model).items()}
    _step(r2.model, x)
    after = prunable_parameters(r2.model)
    assert any(not torch.equal(before[n], after[n]) for n in before)  # it did train
    _pruned_entries_are_zero(r2.model, masks)


# ---------------------------------------------------------------------------- torch.save
def test_torch_save_and_load_whole_masked_model():
    r, x = _mlp("tr", sparsity=0.95)
    buf = io.BytesIO()
    torch.save(r.model, buf)
    buf.seek(0)
    m = torch.load(buf, weights_only=False)
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x), r.model(x))
    masks = get_masks(m)
    assert masks.keys() == r.masks.keys()
    assert all(torch.equal(masks[k], r.masks[k]) for k in masks)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in r.model.named_parameters()]
    _step(m, x, torch.optim.SGD)
    _pruned_entries_are_zero(m, masks)


def test_deep_copy_then_unmask_leaves_original_masked():
    r, x = _mlp("tt")
    with torch.no_grad():
        want = r.model(x)
    c = copy.deepcopy(r.model)
    tedepr.backends.torch.remove_masks(c)
    with torch.no_grad():
        assert torch.equal(r.model(x), want)  # torch alone would share (and strip) the class
    assert get_masks(r.model).keys() == r.masks.keys()


# ---------------------------------------------------------------------------- finalize / fold
def _reference_logits(model, x):
    """The NumPy reference: dense reconstruction of every tensorized layer, then a plain MLP."""
    h = x.reshape(len(x), -1).numpy().astype(np.float64)
    layers = [*model.hidden, model.classifier]
    for k, layer in enumerate(layers):
        if isinstance(layer, _TensorizedLinear):
            f = layer.factorized()
            cores = [c.detach().double().numpy() for c in f.cores]
            if f.format == "tucker":
                it = iter(cores[1:])
                cores = (cores[0], [next(it) if r is not None else None for r in f.ranks])
            w = reference.to_dense(f.format, cores, f.in_modes, f.out_modes)
        else:
            w = layer.weight.detach().double().numpy().T
        h = reference.matmul_reference(h, w) + layer.bias.detach().double().numpy()
        if k < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


@pytest.mark.parametrize("fmt", FORMATS)
def test_finalize_equals_masked_model_and_reference(fmt):
    r, x = _mlp(fmt)
    with torch.no_grad():
        want = r.model(x)
    ref = _reference_logits(r.model, x)
    np.testing.assert_allclose(want.numpy(), ref, rtol=1e-5, atol=1e-5)
    for fold in (False, True, "auto"):
        f = finalize(r.model, batch_size=len(x), fold=fold)
        assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in f.modules())
        assert not f.training and not any(p.requires_grad for p in f.parameters())
        with torch.no_grad():
            got = f(x)
        # float32 reassociation only (the folded product sums in another order)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-5)
        if fold is True:
            assert not any(isinstance(m, _TensorizedLinear) for m in f.modules())
            w = f.hidden[0].weight.double().numpy().T  # the folded weight is the reference's
            np.testing.assert_allclose(w, _dense_ref(r.model.hidden[0]), rtol=1e-5, atol=1e-7)
        pickle_buf = io.BytesIO()
        torch.save(f, pickle_buf)  # a plain module
    # finalize never touches its input
    assert get_masks(r.model).keys() == r.masks.keys()
    with torch.no_grad():
        assert torch.equal(r.model(x), want)


def _dense_ref(layer):
    f = layer.factorized()
    cores = [c.detach().double().numpy() for c in f.cores]
    if f.format == "tucker":
        it = iter(cores[1:])
        cores = (cores[0], [next(it) if r is not None else None for r in f.ranks])
    return reference.to_dense(f.format, cores, f.in_modes, f.out_modes)


def test_auto_fold_follows_the_cost_model(monkeypatch):
    from tedepr.backends.torch import inference

    r, x = _mlp("tt")
    layer = r.model.hidden[0]
    unfolded, folded = inference.fold_costs(layer, 4)
    assert unfolded > 0 and folded > 0
    # force each decision through the cost function and check finalize obeys it
    for cheaper_folded in (True, False):
        monkeypatch.setattr(
            inference, "fold_costs", lambda m, b, c=cheaper_folded: (2.0, 1.0) if c else (1.0, 2.0)
        )
        f = finalize(r.model, batch_size=4, fold="auto")
        assert isinstance(f.hidden[0], torch.nn.Linear) is cheaper_folded
    monkeypatch.undo()
    for cheaper_folded in (True, False):  # fold="measure" obeys the timings the same way
        monkeypatch.setattr(
            inference,
            "fold_timings",
            lambda m, b, c=cheaper_folded: (2e-3, 1e-3) if c else (1e-3, 2e-3),
        )
        f = finalize(r.model, batch_size=4, fold="measure")
        assert isinstance(f.hidden[0], torch.nn.Linear) is cheaper_folded
    monkeypatch.undo()
    t_unfolded, t_folded = inference.fold_timings(layer, 4, repeats=3)
    assert t_unfolded > 0 and t_folded > 0
    f = finalize(r.model, batch_size=4, fold="measure")
    with torch.no_grad():
        torch.testing.assert_close(f(x), r.model(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        finalize(r.model, fold="auto")
    with pytest.raises(ValueError, match="batch_size"):
        finalize(r.model, fold="measure")
    with pytest.raises(ValueError, match="fold"):
        finalize(r.model, fold=1)
    with pytest.raises(ValueError, match="fold"):
        finalize(r.model, fold="yes")
    with pytest.raises(TypeError, match="model"):
        finalize("model")


def test_finalize_folds_convolutions():
    model = tedepr.models.get("lenet5", backend="torch", image_size=16, seed=0)
    x, y = _data(2, n=6, side=16)
    r = tedepr.compress(model, (x, y), sparsity=0.9, format="cp", score="snip", backend="torch")
    r.model.eval()
    f = finalize(r.model, fold=True)
    assert not any(hasattr(m, "factorized") for m in f.modules())
    with torch.no_grad():
        torch.testing.assert_close(f(x), r.model(x), rtol=1e-5, atol=1e-5)


def test_structure_document_is_plain_json(tmp_path):
    r, _ = _mlp("tucker")
    path = tmp_path / "m.tedepr"
    tedepr.save(r, path)
    s = tio.read_structure(path)
    json.dumps(s)  # round-trips through JSON
    assert {e[0] for e in s["arrays"]} == set(export_arrays(r.model)["params"])


# ---------------------------------------------------------------------------- packing (NumPy)
@given(
    shapes=st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=3), min_size=1, max_size=4),
    masked=st.lists(st.booleans(), min_size=4, max_size=4),
    seed=st.integers(0, 2**16),
    stored=st.sampled_from([None, "float16"]),
)
def test_pack_unpack_inverts(shapes, masked, seed, stored):
    rng = np.random.default_rng(seed)
    params, masks = {}, {}
    for k, shape in enumerate(shapes):
        a = rng.standard_normal(shape).astype(np.float32)
        if masked[k]:
            m = rng.random(shape) < 0.4
            a = np.where(m, a, 0).astype(np.float32)
            masks[f"a{k}"] = m
        params[f"a{k}"] = a
    tensors, entries, train = tio.pack_arrays({"params": params, "masks": masks}, stored)
    assert train == "float32"
    assert tensors["kept"].size == sum(int(m.sum()) for m in masks.values())
    back = tio.unpack_arrays(tensors, entries, np.float32)
    assert back["masks"].keys() == masks.keys()
    for k, m in masks.items():
        np.testing.assert_array_equal(back["masks"][k], m)
        assert np.all(back["params"][k][~m] == 0)
    for k, a in params.items():
        want = a if stored is None else a.astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(back["params"][k], want)


def test_pai_masked_dense_round_trip(tmp_path):
    model = tedepr.models.get("lenet300_100", backend="torch", image_size=8, hidden=(32, 16))
    x, y = _data(4)
    r = tedepr.compress(model, (x, y), sparsity=0.9, format=None, score="snip", backend="torch")
    r.model.eval()
    path = tmp_path / "pai.tedepr"
    tedepr.save(r, path)
    assert tio.read_structure(path)["layers"] == {}
    r2 = tedepr.load(path)
    r2.model.eval()
    with torch.no_grad():
        assert torch.equal(r2.model(x), r.model(x))
    assert get_masks(r2.model).keys() == r.masks.keys()


@pytest.mark.jax
@pytest.mark.parametrize("fmt", FORMATS)
def test_jax_finalize_equals_masked_apply_and_reference(tmp_path, fmt):
    jax = pytest.importorskip("jax")
    from tedepr.backends.jax import Dense, TensorizedLinear
    from tedepr.backends.jax import finalize as jfinalize

    r, x = _mlp(fmt)
    path = tmp_path / "m.tedepr"
    tedepr.save(r, path)
    rj = tedepr.load(path, backend="jax")
    xj = jax.numpy.asarray(x.numpy())
    want = np.asarray(rj.apply(xj))
    ref = _reference_logits(r.model, x)
    for fold in (False, True, "auto"):
        model, params = jfinalize(rj.model, rj.params, rj.masks, batch_size=len(x), fold=fold)
        got = np.asarray(model.apply(params, xj))  # no masks: they are in the params
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
        if fold is True:
            assert isinstance(model.layers["hidden/0"], Dense)
            np.testing.assert_allclose(
                np.asarray(params["hidden/0"]["weight"]),
                _dense_ref(r.model.hidden[0]),
                rtol=1e-5,
                atol=1e-7,
            )
        if fold is False:
            assert isinstance(model.layers["hidden/0"], TensorizedLinear)
    assert isinstance(rj.model.layers["hidden/0"], TensorizedLinear)  # the input is unchanged
    with pytest.raises(ValueError, match="batch_size"):
        jfinalize(rj.model, rj.params, rj.masks, fold="auto")


# ---------------------------------------------------------------------------- Flax NNX models
def _flax_setup():
    pytest.importorskip("jax")
    nnx = pytest.importorskip("flax.nnx")
    from tedepr.backends.jax import nnx as tnnx

    return nnx, tnnx


def _nnx_arrays(tnnx, module):
    """The pipeline's view of an NNX model's arrays: ``(params, masks)``, NumPy."""
    import jax

    bridge = tnnx.to_model(module, (1, 8, 8))
    params = jax.tree.map(np.asarray, bridge.params)
    return params, {k: np.asarray(v) for k, v in bridge.masks.items()}


@pytest.mark.jax
def test_flax_result_round_trip_and_torch_agrees(tmp_path):
    nnx, tnnx = _flax_setup()
    import jax

    jnp = jax.numpy
    model = tedepr.models.get(
        "lenet300_100", backend="jax", flax=True, image_size=8, hidden=(32, 16), rngs=1
    )
    x, y = _data(2)
    xj = jnp.asarray(x.numpy())
    r = tedepr.compress(
        model,
        (xj, jnp.asarray(y.numpy())),
        sparsity=0.9,
        format="tt",
        score="snip",
        backend="jax",
    )
    path = tmp_path / "flax.tedepr"
    tedepr.save(r, path)
    structure = tio.read_structure(path)
    assert structure["source_backend"] == "jax" and structure["zoo"]["flax"] is True
    back = tedepr.load(path, backend="jax")  # the Flax zoo model the file records
    assert isinstance(back, tnnx.FlaxCompressionResult)
    assert type(back.model) is type(r.model) and isinstance(back.model.hidden[0], tnnx.TTLinear)
    np.testing.assert_array_equal(np.asarray(back.model(xj)), np.asarray(r.model(xj)))  # bitwise
    for (a, ma), (b, mb) in [(_nnx_arrays(tnnx, back.model), _nnx_arrays(tnnx, r.model))]:
        assert jax.tree.structure(a) == jax.tree.structure(b)
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(u, v)
        assert sorted(ma) == sorted(mb) and all(np.array_equal(ma[k], mb[k]) for k in ma)
    # the same file in torch: the torch zoo model, the same function
    rt = tedepr.load(path, backend="torch")
    rt.model.eval()
    with torch.no_grad():
        yt = rt.model(x).numpy()
    np.testing.assert_allclose(yt, np.asarray(r.model(xj)), rtol=1e-5, atol=1e-5)
    # float16 storage: the loaded values are the float16 roundings, bitwise
    tedepr.save(r, tmp_path / "half.tedepr", dtype="float16")
    half = tedepr.load(tmp_path / "half.tedepr", backend="jax")
    got = np.asarray(half.model.hidden[0].cores[1][...])
    want = np.asarray(r.model.hidden[0].cores[1][...]).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(got, want)


@pytest.mark.jax
@pytest.mark.parametrize("case", ["vgg", pytest.param("resnet20", marks=pytest.mark.slow)])
def test_trained_flax_model_with_batchnorm_round_trip(tmp_path, case):
    """A trained NNX VGG / ResNet (fit's model: the module itself, BatchNorm statistics updated)
    saves and loads bitwise; torch agrees. The small VGG is no zoo entry: both loads take its
    skeleton as model=; the ResNet is rebuilt from the file's zoo record."""
    nnx, tnnx = _flax_setup()
    import jax

    from tedepr.backends.jax import fit, flax_zoo
    from tedepr.backends.torch.models import VGG

    jnp = jax.numpy
    small = {"in_channels": 1, "image_size": 8}
    if case == "vgg":
        model = flax_zoo.vgg((8, "M", 16), rngs=0, **small)
        bn = "features/1"
        skeletons = {
            "jax": flax_zoo.vgg((8, "M", 16), rngs=9, **small),
            "torch": VGG((8, "M", 16), **small),
        }
    else:
        kw = {**small, "shortcut": "B"}
        model = tedepr.models.get("resnet20", backend="jax", flax=True, rngs=0, **kw)
        bn, skeletons = "stem/1", {}
    x, y = _data(3, n=16)
    xj, yj = jnp.asarray(x.numpy()), jnp.asarray(y.numpy())
    r = tedepr.compress(
        model,
        (xj, yj),
        sparsity=0.9,
        format="tt",
        score="snip",
        backend="jax",
        tensorize_options={"min_params": 512},
    )
    trained = fit(r.model, None, (xj, yj), epochs=1, batch_size=8, lr=0.05, progress=False)
    path = tmp_path / "bn.tedepr"
    tedepr.save(trained.model, path)  # an NNX model, as it is now
    back = tedepr.load(path, backend="jax", model=skeletons.get("jax"))
    if case == "vgg":  # the conv tensorized, the first left dense (below min_params), masked
        assert isinstance(back.model.features[4], tnnx.TTConv2d)
        assert isinstance(back.model.features[0], tnnx.Conv)
    for m in (trained.model, back.model):
        m.eval()
    parent, index = bn.split("/")
    stats = getattr(trained.model, parent)[int(index)].mean[...]
    assert not np.allclose(np.asarray(stats), 0)  # fit updated the running statistics
    got = getattr(back.model, parent)[int(index)].mean[...]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(stats))
    np.testing.assert_array_equal(np.asarray(back.model(xj)), np.asarray(trained.model(xj)))
    rt = tedepr.load(path, backend="torch", model=skeletons.get("torch"))
    rt.model.eval()
    with torch.no_grad():
        yt = rt.model(x).numpy()
    np.testing.assert_allclose(yt, np.asarray(trained.model(xj)), rtol=1e-4, atol=1e-5)


@pytest.mark.jax
def test_users_flax_model_needs_its_skeleton_and_opaque_params_are_refused(tmp_path):
    nnx, tnnx = _flax_setup()
    import jax

    jnp = jax.numpy

    class MLP(nnx.Module):
        def __init__(self, rngs, norm=False):
            self.inp = nnx.Linear(64, 48, rngs=rngs)
            self.norm = nnx.LayerNorm(48, rngs=rngs) if norm else None
            self.out = nnx.Linear(48, 10, rngs=rngs)

        def __call__(self, x):
            h = self.inp(jnp.reshape(x, (x.shape[0], -1)))
            return self.out(jax.nn.relu(h if self.norm is None else self.norm(h)))

    x, y = _data(4)
    data = (jnp.asarray(x.numpy()), jnp.asarray(y.numpy()))
    r = tedepr.compress(MLP(nnx.Rngs(0)), data, sparsity=0.9, format="tt", backend="jax")
    path = tmp_path / "mlp.tedepr"
    tedepr.save(r, path)
    with pytest.raises(ValueError, match="not built by tedepr.models.get.*model="):
        tedepr.load(path, backend="jax")
    back = tedepr.load(path, backend="jax", model=MLP(nnx.Rngs(1)))  # other weights: replaced
    assert isinstance(back.model, MLP) and isinstance(back.model.inp, tnnx.TTLinear)
    np.testing.assert_array_equal(np.asarray(back.model(data[0])), np.asarray(r.model(data[0])))
    with pytest.raises(ValueError, match="does not match the file"):
        tedepr.load(path, backend="jax", model=nnx.Sequential(nnx.Linear(64, 10, rngs=nnx.Rngs(0))))
    normed = tedepr.compress(
        MLP(nnx.Rngs(0), norm=True), data, sparsity=0.9, format="tt", backend="jax"
    )
    with pytest.raises(ValueError, match="cannot store a Flax model's parameters outside.*norm"):
        tedepr.save(normed, tmp_path / "normed.tedepr")


@pytest.mark.jax
def test_model_file_loads_into_the_flax_zoo_model(tmp_path):
    """A file saved from the `Model` zoo loads into its Flax twin (and back): one file format."""
    nnx, tnnx = _flax_setup()
    import jax

    from tedepr.backends.jax import flax_zoo

    jnp = jax.numpy
    kw = {"image_size": 8, "hidden": (32, 16)}
    x, y = _data(5)
    xj, yj = jnp.asarray(x.numpy()), jnp.asarray(y.numpy())
    model = tedepr.models.get("lenet300_100", backend="jax", flax=False, **kw)
    r = tedepr.compress(model, (xj, yj), sparsity=0.9, format="tr", score="snip", backend="jax")
    tedepr.save(r, tmp_path / "m.tedepr")
    flax = tedepr.load(tmp_path / "m.tedepr", backend="jax", model=flax_zoo.lenet300_100(**kw))
    assert isinstance(flax.model.hidden[0], tnnx.TRLinear)
    np.testing.assert_array_equal(np.asarray(flax.model(xj)), np.asarray(r.apply(xj)))
    tedepr.save(flax, tmp_path / "f.tedepr")
    assert tio.read_structure(tmp_path / "f.tedepr")["zoo"] is None  # a skeleton, not from get
    again = tedepr.load(tmp_path / "f.tedepr", backend="jax", model=model)  # a Model again
    np.testing.assert_array_equal(np.asarray(again.apply(xj)), np.asarray(r.apply(xj)))
