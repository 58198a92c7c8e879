"""One public surface: both backends export `tedepr.api.BACKEND_API` plus their documented
framework-only names, and every shared callable takes the same parameters in both."""

from __future__ import annotations

import inspect

import pytest

from tedepr import api

torch_backend = pytest.importorskip("tedepr.backends.torch")
jax_backend = pytest.importorskip("tedepr.backends.jax")
BACKEND = {"torch": torch_backend, "jax": jax_backend}


@pytest.mark.parametrize("name", api.BACKENDS)
def test_all_is_the_shared_list_plus_framework_only(name):
    module = BACKEND[name]
    assert module.__all__ == api.backend_all(name)
    assert module.__all__[: len(api.BACKEND_API)] == list(api.BACKEND_API)
    assert len(set(module.__all__)) == len(module.__all__), "a name is listed twice"


@pytest.mark.parametrize("name", api.BACKENDS)
def test_every_listed_name_exists(name):
    module = BACKEND[name]
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name} lists names it does not define: {missing}"


def test_framework_only_names_are_really_framework_only():
    # a name both backends define belongs in BACKEND_API, not in one backend's own list
    for name, own in api.FRAMEWORK_ONLY.items():
        other = BACKEND["jax" if name == "torch" else "torch"]
        shared = [n for n in own if hasattr(other, n) and not inspect.ismodule(getattr(other, n))]
        assert not shared, f"{name}-only names that the other backend also has: {shared}"
        assert not set(own) & set(api.BACKEND_API)


@pytest.mark.parametrize("name", api.BACKENDS)
def test_old_names_stay_as_aliases_outside_all(name):
    module = BACKEND[name]
    for old, new in api.ALIASES[name].items():
        assert getattr(module, old) is getattr(module, new)
        assert old not in module.__all__
    # the renamed concepts
    if name == "torch":
        assert issubclass(module.TTLinear, module.TensorizedLinear)
        assert issubclass(module.TTConv2d, module.TensorizedConv2d)
        assert issubclass(module.TensorizedLinear, module.TensorizedLayer)
    else:
        assert module.count_kept is not module.count_weights


@pytest.mark.parametrize("fmt", ["tt", "tr", "tucker", "cp"])
def test_format_lookup_and_bases_agree(fmt):
    for module in BACKEND.values():
        lin, conv = module.linear_class(fmt), module.conv_class(fmt)
        assert lin is module.LINEAR_CLASSES[fmt] and conv is module.CONV_CLASSES[fmt]
        assert issubclass(lin, module.TensorizedLinear)
        assert issubclass(conv, module.TensorizedConv2d)
    assert torch_backend.linear_class(fmt).__name__ == jax_backend.linear_class(fmt).__name__
    assert torch_backend.conv_class(fmt).__name__ == jax_backend.conv_class(fmt).__name__
    with pytest.raises(ValueError, match="format"):
        jax_backend.linear_class("ttt")


def test_shared_constants_agree():
    for name in ("LAYER_KINDS", "DEFAULT_MIN_PARAMS", "CONV_STRATEGIES"):
        assert getattr(torch_backend, name) == getattr(jax_backend, name), name
    assert torch_backend.available() == jax_backend.available()
    assert set(torch_backend.MODELS) == set(jax_backend.MODELS)


def _shared_callables():
    for name in api.BACKEND_API:
        if name in api.SIGNATURE_EXEMPT:
            continue
        t, j = getattr(torch_backend, name), getattr(jax_backend, name)
        if callable(t) and callable(j):
            yield name


@pytest.mark.parametrize("name", list(_shared_callables()))
def test_shared_callables_take_the_same_parameters(name):
    t, j = getattr(torch_backend, name), getattr(jax_backend, name)
    differences = api.signature_differences(t, j)
    if name in api.SIGNATURE_GAPS:
        # a listed gap must still be one; remove it from SIGNATURE_GAPS once it is closed
        assert differences, f"{name} now agrees in both backends: drop it from SIGNATURE_GAPS"
    else:
        assert not differences, f"{name}: " + "; ".join(differences)


def test_the_rule_catches_what_it_should():
    def torch_like(model, data, *, lr=0.1, device=None):
        pass

    def jax_like(model, params, data, *, lr=0.1):
        pass

    assert api.signature_differences(torch_like, jax_like) == []  # state and framework-only

    def renamed(model, params, data, *, learning_rate=0.1):
        pass

    assert any("learning_rate" in d for d in api.signature_differences(torch_like, renamed))

    def positional_kw(model, params, data, lr=0.1):
        pass

    assert api.signature_differences(torch_like, positional_kw)  # keyword-only marker differs

    def reordered(model, data, other, *, lr=0.1):
        pass

    def reordered2(model, other, data, *, lr=0.1):
        pass

    assert api.signature_differences(reordered, reordered2)

    def middle_device(model, data, device=None, *, lr=0.1):
        pass

    def no_device(model, params, data, *, lr=0.1):
        pass

    assert api.signature_differences(middle_device, no_device) == []  # trailing: set aside

    def device_first(model, device, data, *, lr=0.1):
        pass

    assert api.signature_differences(device_first, no_device)  # in the middle: not


def test_legacy_keywords_still_work_and_conflicts_are_named():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)  # the bias comes from torch's generator
    a = torch_backend.TTLinear(16, 12, rank=2, init="he", seed=0)
    torch.manual_seed(0)
    b = torch_backend.TTLinear(16, 12, rank=2, weight_init="he", seed=0)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    c = torch_backend.TTLinear(16, 12, rank=2, seed=0)
    assert not torch.equal(a.core_0, c.core_0)  # "he" is not the default scheme
    with pytest.raises(ValueError, match="weight_init"):
        torch_backend.TTLinear(16, 12, rank=2, weight_init="he", init="glorot")
    with pytest.raises(ValueError, match="padding_mode"):
        jax_backend.TTConv2d(4, 8, 3, padding_mode="reflect")


def test_backend_all_rejects_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        api.backend_all("tensorflow")


def test_short_aliases_export_the_same_surface():
    import tedepr.jax
    import tedepr.torch

    assert tedepr.torch.__all__ == api.backend_all("torch")
    assert tedepr.jax.__all__ == api.backend_all("jax")
