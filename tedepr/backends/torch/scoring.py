"""torch.autograd implementation of `tedepr.pruning.problem.ScoringProblem`.

The score math lives in the core (`tedepr.pruning.scores`); this module only differentiates. The
model is evaluated with `torch.func.functional_call`, replacing each prunable parameter by the
effective weight ``w = θ ⊙ m`` (a leaf that requires grad), so gradients are taken with respect to the
masked weights and the caller's model is never touched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import array_api_compat.torch as xp_torch
import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from ...pruning.problem import CoreInfo, core_info
from ...validation import batches_of, check_input_shape, check_labels
from .masking import prunable_parameters, row_name

__all__ = ["TorchScoringProblem", "structure_of", "as_batches"]


def as_batches(data, num_batches: int | None, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``num_batches`` ``(x, y)`` batches of ``data`` (`tedepr.validation.batches_of`:
    a DataLoader, any iterable of ``(x, y)`` pairs, NumPy or torch, or one ``(x, y)`` tuple) as
    checked tensors on ``device``, labels int64."""
    return [(x.to(device), y.long().to(device)) for x, y in batches_of(data, num_batches, _tensor)]


def _tensor(a, index: int, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"data (batch {index}): {what} must be a NumPy array or torch tensor; got "
            f"{type(a).__name__}"
        ) from exc


def structure_of(model: torch.nn.Module, names: Iterable[str]) -> dict[str, CoreInfo]:
    """`CoreInfo` of each named parameter: tensorized cores get their format's slice and bond axes."""
    out = {}
    for name in names:
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name) if module_name else model
        f = module.factorized() if callable(getattr(module, "factorized", None)) else None
        fmt = f.format if f is not None else None
        if attr.startswith("core_") and fmt:
            idx = int(attr[len("core_") :])
            info = core_info(f, module_name, idx)
        else:
            info = CoreInfo(row_name(module, module_name, attr), "dense")
        out[name] = info
    return out


class TorchScoringProblem:
    """A torch model, scoring batches and a loss, as a `ScoringProblem`.

    Parameters
    ----------
    model : nn.Module
        Copied; the copy is scored (normalisation layers in train mode for data scores, as in SNIP /
        GraSP, and eval mode for SynFlow).
    data : DataLoader, iterable of (x, y), (x, y) arrays, or None
    num_batches : int
        Batches of ``data`` used; gradients are averaged over them.
    loss : "cross_entropy" or callable(logits, y) -> scalar
        The scoring loss (``loss_fn=`` is accepted as its older spelling).
    input_shape : tuple, optional
        Shape of one sample, for the data-free SynFlow input when there is no data.
    """

    xp = xp_torch

    def __init__(
        self,
        model: torch.nn.Module,
        data=None,
        *,
        num_batches: int = 1,
        loss="cross_entropy",
        input_shape: tuple[int, ...] | None = None,
        device: str | torch.device | None = None,
        loss_fn: Callable | None = None,
    ):
        if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
            raise ValueError(f"num_batches must be a positive int; got {num_batches!r}")
        self.model = copy.deepcopy(model)
        params = prunable_parameters(self.model)
        if not params:
            raise ValueError(
                "the model has no prunable weights (Linear, Conv, recurrent, attention or tensorized cores)"
            )
        self.device = (
            torch.device(device) if device is not None else next(iter(params.values())).device
        )
        self.model.to(self.device)
        self._params = {n: p.detach() for n, p in prunable_parameters(self.model).items()}
        input_shape = check_input_shape(input_shape)
        self._batches = as_batches(data, num_batches, self.device)
        if loss_fn is not None:  # the older spelling of loss=
            if loss != "cross_entropy" and loss is not loss_fn:
                raise ValueError("pass the loss once, as loss= (loss_fn= is its older spelling)")
            loss = loss_fn
        if callable(loss):
            self.loss_fn = loss
        elif loss == "cross_entropy":
            self.loss_fn = F.cross_entropy
        else:
            raise ValueError(
                f"loss must be 'cross_entropy' or a callable (logits, labels) -> mean loss; got "
                f"{loss!r}"
            )
        self._check_data(input_shape)
        if input_shape is None and self._batches:
            input_shape = tuple(self._batches[0][0].shape[1:])
        self.input_shape = input_shape

    def _check_data(self, input_shape) -> None:
        """Every batch against the model: one sample's shape (when given), and labels below the
        output width, found by a forward pass of one sample in eval mode (no statistics change)."""
        if not self._batches:
            return
        for index, (x, _) in enumerate(self._batches):
            if input_shape is not None and tuple(x.shape[1:]) != input_shape:
                raise ValueError(
                    f"data (batch {index}): each sample must have shape {input_shape} "
                    f"(input_shape); got x of shape {tuple(x.shape)}"
                )
        widths: dict[tuple, int | None] = {}  # one forward per distinct sample shape
        mode = self.model.training
        try:
            self.model.eval()
            for index, (x, y) in enumerate(self._batches):
                shape = tuple(x.shape[1:])
                if shape not in widths:
                    try:
                        with torch.no_grad():
                            out = self.model(x[:1])
                    except RuntimeError as exc:
                        raise ValueError(
                            f"data (batch {index}): the model cannot take these inputs (one sample "
                            f"of shape {shape}, dtype {x.dtype}): {exc}"
                        ) from exc
                    is_logits = isinstance(out, torch.Tensor) and out.dim() >= 2
                    widths[shape] = int(out.shape[-1]) if is_logits else None
                check_labels(y, name="data", index=index, num_classes=widths[shape])
        finally:
            self.model.train(mode)

    @property
    def has_data(self) -> bool:
        return bool(self._batches)

    def weights(self) -> dict[str, torch.Tensor]:
        return dict(self._params)

    def structure(self) -> dict[str, CoreInfo]:
        return structure_of(self.model, self._params)

    def _effective(self, masks, transform=None, dtype=None):
        eff = {}
        for n, w in self._params.items():
            w = w if transform is None else transform(w)
            if dtype is not None:
                w = w.to(dtype)
            eff[n] = (w * masks[n].to(w.dtype)).requires_grad_(True)
        return eff

    def _loss(self, eff, x, y):
        self.model.train()
        return self.loss_fn(functional_call(self.model, eff, (x,)), y)

    def loss_gradient(self, masks):
        eff = self._effective(masks)
        total = {n: torch.zeros_like(w) for n, w in eff.items()}
        for x, y in self._batches:
            grads = torch.autograd.grad(
                self._loss(eff, x, y), list(eff.values()), allow_unused=True
            )
            for n, g in zip(eff, grads):
                if g is not None:
                    total[n] += g
        return {n: g / len(self._batches) for n, g in total.items()}

    def hessian_gradient_product(self, masks):
        g_total = self.loss_gradient(masks)
        eff = self._effective(masks)
        total = {n: torch.zeros_like(w) for n, w in eff.items()}
        for x, y in self._batches:
            grads = torch.autograd.grad(
                self._loss(eff, x, y), list(eff.values()), create_graph=True, allow_unused=True
            )
            z = sum((g * g_total[n]).sum() for n, g in zip(eff, grads) if g is not None)
            hg = torch.autograd.grad(z, list(eff.values()), allow_unused=True)
            for n, h in zip(eff, hg):
                if h is not None:
                    total[n] += h
        return {n: h / len(self._batches) for n, h in total.items()}

    def synflow_gradient(self, masks):
        if self.input_shape is None:
            raise ValueError(
                "synflow needs the input shape of one sample: pass data or input_shape="
            )
        model = copy.deepcopy(self.model).double().eval()
        with torch.no_grad():  # linearise: every parameter and buffer positive (Tanaka et al. 2020)
            for p in model.parameters():
                p.abs_()
        eff = self._effective(masks, transform=torch.abs, dtype=torch.float64)
        x = torch.ones((1,) + tuple(self.input_shape), dtype=torch.float64, device=self.device)
        r = functional_call(model, eff, (x,)).sum()
        grads = torch.autograd.grad(r, list(eff.values()), allow_unused=True)
        return {
            n: (torch.zeros_like(w) if g is None else g) for (n, w), g in zip(eff.items(), grads)
        }

    def lookahead_gradient(self, masks, steps: int, lr: float):
        """``∂L(w_M)/∂w_0`` at ``w_0 = θ ⊙ m``, through ``M = steps`` SGD steps
        ``w_{k+1} = w_k − lr ∇L_k(w_k)`` on the prunable weights (ProsPr); step ``k`` uses batch
        ``k mod B``, the final loss batch ``M mod B``. Second order: autograd with create_graph."""
        if not self._batches:
            raise ValueError("lookahead_gradient needs data: pass (x, y) batches")
        eff = self._effective(masks)
        names = list(eff)
        w = dict(eff)
        nb = len(self._batches)
        for k in range(steps):
            x, y = self._batches[k % nb]
            grads = torch.autograd.grad(
                self._loss(w, x, y), [w[n] for n in names], create_graph=True, allow_unused=True
            )
            w = {n: (w[n] if g is None else w[n] - lr * g) for n, g in zip(names, grads)}
        x, y = self._batches[steps % nb]
        grads = torch.autograd.grad(self._loss(w, x, y), [eff[n] for n in names], allow_unused=True)
        return {n: (torch.zeros_like(eff[n]) if g is None else g) for n, g in zip(names, grads)}

    def ntk_perturbation_gradient(self, masks, weights, perturbed, inputs):
        """``∂R/∂m`` of ``R(m) = mean_x ||f(x; w⊙m) − f(x; w'⊙m)||²`` (NTK-SAP), with ``weights`` w
        and ``perturbed`` w' replacing the prunable parameters (other parameters as they are) and
        normalisation in eval mode; ``inputs`` a batch of samples."""
        dtype = next(iter(self._params.values())).dtype
        m = {
            n: torch.as_tensor(masks[n], device=self.device).to(dtype).requires_grad_(True)
            for n in self._params
        }

        def tensor(a):
            return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).to(
                device=self.device, dtype=dtype
            )

        w = {n: tensor(weights[n]) * m[n] for n in self._params}
        wp = {n: tensor(perturbed[n]) * m[n] for n in self._params}
        x = tensor(inputs)
        self.model.eval()
        diff = functional_call(self.model, w, (x,)) - functional_call(self.model, wp, (x,))
        r = (diff.reshape(len(x), -1) ** 2).sum(dim=1).mean()
        grads = torch.autograd.grad(r, list(m.values()), allow_unused=True)
        return {n: (torch.zeros_like(m[n]) if g is None else g) for n, g in zip(m, grads)}

    def evaluate_masks(self, masks: dict[str, Any]) -> float:
        """Mean loss of the masked network on the scoring batches (for diagnostics)."""
        eff = {n: (w * masks[n].to(w.dtype)) for n, w in self._params.items()}
        with torch.no_grad():
            return float(sum(self._loss(eff, x, y) for x, y in self._batches) / len(self._batches))
