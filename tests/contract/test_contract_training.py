"""The training contract, once for both backends: `fit` names every bad argument (one validation
in the core, `tedepr.training`) and changes nothing before it raises."""

from __future__ import annotations

import numpy as np
import pytest
from _backends import backend  # noqa: F401  (the fixture)

_MODELS: dict = {}


def _tiny_tt_mlp(backend):
    """LeNet-300-100's shape at 4×4 pixels, hidden 8–6, 3 classes, with TT hidden layers (built
    once per backend: every test here leaves it unchanged, which they assert)."""
    if backend.name not in _MODELS:
        model = backend.zoo("lenet300_100", num_classes=3, image_size=4, hidden=(8, 6))
        _MODELS[backend.name] = backend.tensorize(
            model, "tt", 2, min_params=0, exclude="classifier"
        )
    return _MODELS[backend.name]


def _batches(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, 1, 4, 4)).astype(np.float32), rng.integers(0, 3, n)
    return [(x[i : i + 8], y[i : i + 8]) for i in range(0, n, 8)]


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"optimizer": "rmsprop"}, "optimizer must be one of 'sgd', 'adam', 'adamw'"),
        ({"schedule": "linear"}, "schedule must be one of 'cosine', 'step', 'constant'"),
        ({"epochs": 0}, "epochs must be an int >= 1"),
        ({"epochs": 2.0}, "epochs must be an int >= 1"),
        ({"resume": True}, "resume=True needs checkpoint_dir"),
        ({"lr": 0.0}, "lr must be"),
        ({"lr": float("nan")}, "lr must be"),
        ({"momentum": 1.0}, "momentum must be"),
        ({"weight_decay": -1e-4}, "weight_decay must be"),
        ({"loss": "mse"}, "loss must be one of 'cross_entropy'"),
        ({"log_every": 0}, "log_every must be"),
    ],
)
def test_fit_rejects_bad_arguments(backend, kw, match):
    model = _tiny_tt_mlp(backend)
    before = backend.snapshot(model)
    with pytest.raises(ValueError, match=match):
        backend.fit(model, _batches(), **{"epochs": 1, "progress": False, **kw})
    after = backend.snapshot(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_fit_rejects_bad_data_and_masks(backend):
    model = _tiny_tt_mlp(backend)
    x, y = _batches()[0]
    with pytest.raises(ValueError, match="floating"):
        backend.fit(model, [(x.astype(np.uint8), y)], epochs=1, progress=False)
    bogus = {backend.param_name("hidden.0.core_9"): np.ones(3, bool)}
    with pytest.raises(ValueError, match="unknown parameter name|is not a parameter") as err:
        backend.fit(model, [(x, y)], epochs=1, progress=False, masks=bogus)
    assert repr(next(iter(bogus))) in str(err.value)  # the mask is named


def test_evaluate_takes_arrays_batches_and_masks_alike(backend):
    model = _tiny_tt_mlp(backend)
    batches = _batches(24)
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    before = backend.snapshot(model)
    loss, acc = backend.evaluate(model, batches)
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0
    pair = backend.evaluate(model, (x, y), batch_size=5)
    assert pair == pytest.approx((loss, acc), rel=1e-6)
    kept = backend.evaluate(model, batches, masks=backend.full_masks(model, True))
    assert kept == pytest.approx((loss, acc), rel=1e-6)
    # every weight pruned: constant logits (the biases), so a different loss; the model is unchanged
    pruned = backend.evaluate(model, batches, masks=backend.full_masks(model, False))
    assert pruned[0] != pytest.approx(loss, rel=1e-3)
    assert all(np.array_equal(a, b) for a, b in zip(before, backend.snapshot(model), strict=True))
    with pytest.raises(ValueError, match="batch_size"):
        backend.evaluate(model, (x, y), batch_size=0)
