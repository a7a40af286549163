"""Grad-CAM baselines for Spike Activation Maps: the standard Grad-CAM of an ANN (the SNN's ANN
twin) and the SAM paper's "SNN-crafted Grad-CAM" (gradients through the surrogate, BPTT).

Definitions (``reference/algorithms.md`` §6, SAM paper §4.3), with ``A`` a layer's activations
(ANN: the ReLU output ``(K, h, w)``; SNN: the LIF spikes ``A[t]`` of each step), ``y^c`` the
class score (ANN: the logit; SNN: the accumulated output ``U_out/T``) and ``Z = h·w``::

    ANN:  α_k = (1/Z) Σ_ij ∂y^c/∂A_k[i, j],               L = ReLU(Σ_k α_k A_k)
    SNN:  α_k = (1/Z) Σ_t Σ_ij ∂y^c/∂A_k[t, i, j]          ("time_sum", the paper's Eq. 9)
          α_k[t] = (1/Z) Σ_ij ∂y^c/∂A_k[t, i, j]           ("per_t", a reading of a note)
          G[t] = ReLU(Σ_k α_k(·) A_k[t])                   (one map per step)

The class ``c`` is the ground-truth label when given (as in the paper), else the predicted
class. Maps are returned raw (not normalized); see :func:`neurodeploy.sam.normalize` and
:func:`neurodeploy.sam.upsample`. Both work on the zoo's models
(:mod:`neurodeploy.models.zoo`): the layer is named by its module path (``relu2``, ``lif2``,
``block1.lif1``) or by its IR node name (``block1_lif1``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import NeurodeployError

ALPHA_MODES = ("time_sum", "per_t")


def _body(model: nn.Module) -> nn.Module:
    return getattr(model, "body", model)


def _ir_name(path: str) -> str:
    base = path.replace(".", "_")
    return f"_{base}" if base[:1].isdigit() else base


def find_layer(model: nn.Module, layer: str, kinds: tuple[type, ...] | None = None
               ) -> tuple[str, nn.Module]:
    """``(module path, module)`` of ``layer`` in the model's body, given its module path or its
    IR node name. Raises :class:`NeurodeployError` naming the layers available (of ``kinds``
    when given)."""
    candidates = [(p, m) for p, m in _body(model).named_modules() if p and
                  (kinds is None or isinstance(m, kinds))]
    for path, module in candidates:
        if layer in (path, _ir_name(path)):
            return path, module
    names = ", ".join(p for p, _ in candidates) or "none"
    raise NeurodeployError(f"unknown layer {layer!r}; layers available: {names}")


def ann_layer_name(snn_layer: str) -> str:
    """The ANN twin's layer matching an SNN layer: the zoo names the activation ``lif…`` in
    the SNN and ``relu…`` in its twin (``lif2`` → ``relu2``, ``block1.lif1`` →
    ``block1.relu1``, ``lif_fc1`` → ``relu_fc1``)."""
    head, _, last = snn_layer.rpartition(".")
    if not last.startswith("lif"):
        return snn_layer
    last = "relu" + last[3:]
    return f"{head}.{last}" if head else last


def _targets(target: Any, logits: torch.Tensor) -> torch.Tensor:
    if target is None:
        return logits.argmax(dim=1)
    t = torch.as_tensor(np.asarray(target), dtype=torch.int64).reshape(-1)
    if t.shape[0] != logits.shape[0]:
        raise NeurodeployError(f"{t.shape[0]} target labels for a batch of {logits.shape[0]}")
    if t.numel() and (t.min() < 0 or t.max() >= logits.shape[1]):
        raise NeurodeployError(f"target labels must lie in [0, {logits.shape[1]})")
    return t


@contextlib.contextmanager
def replay_inputs(model: nn.Module, steps_input: torch.Tensor | None) -> Iterator[None]:
    """Within the block, a :class:`~neurodeploy.models.layers.SpikingNet` takes step ``t``'s
    input from ``steps_input[..., t]`` (``(B, *input_shape, T)``, e.g. Poisson trains drawn
    once so that several runs see the same spikes) instead of its encoder. ``None``: no
    change."""
    if steps_input is None:
        yield
        return

    class _Replay(nn.Module):
        def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
            return steps_input[..., t].to(x.dtype)

    saved = model.encoder
    model.encoder = _Replay()
    try:
        yield
    finally:
        model.encoder = saved


def gradcam_ann(model: nn.Module, x: Any, layer: str, target: Any = None) -> np.ndarray:
    """Grad-CAM of an ANN at ``layer`` (its output, usually a ReLU): ``(B, h, w)`` float64.

    ``x``: ``(B, *input_shape)`` batch (normalized as in training); ``target``: class per
    sample (``(B,)``; default the predicted class)."""
    _, module = find_layer(model, layer)
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32)
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        if out.requires_grad:
            out.retain_grad()
        store["a"] = out

    was_training = model.training
    model.eval()
    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(x)
            cls = _targets(target, logits)
            act = store.get("a")
            if act is None or act.dim() != 4:
                raise NeurodeployError(f"Grad-CAM needs a conv layer; {layer} gives "
                                       f"{None if act is None else tuple(act.shape[1:])}")
            model.zero_grad(set_to_none=True)
            logits.gather(1, cls[:, None]).sum().backward()
    finally:
        handle.remove()
        model.train(was_training)
    grad = act.grad if act.grad is not None else torch.zeros_like(act)
    alpha = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((alpha * act).sum(dim=1))
    return cam.detach().double().numpy()


def gradcam_snn(model: nn.Module, x: Any, layer: str, target: Any = None, *,
                alpha_mode: str = "time_sum", timesteps: int | None = None,
                steps_input: torch.Tensor | None = None) -> np.ndarray:
    """SNN-crafted Grad-CAM of a :class:`~neurodeploy.models.layers.SpikingNet` at the LIF
    layer ``layer``: ``(B, T, h, w)`` float64, one map per time step.

    Gradients of ``y^c`` (the logits ``U_out/T``) flow back through the surrogate spike
    function (BPTT); hooks capture each step's spike tensor. ``alpha_mode``: ``"time_sum"``
    (channel weights accumulated over time, the paper) or ``"per_t"``. ``target``: class per
    sample (default: predicted). ``steps_input``: optional per-step inputs
    ``(B, *input_shape, T)`` (see :func:`replay_inputs`)."""
    from .models.layers import LIF

    if alpha_mode not in ALPHA_MODES:
        raise NeurodeployError(f"alpha_mode {alpha_mode!r} is not one of {', '.join(ALPHA_MODES)}")
    if not hasattr(model, "run") or not hasattr(model, "encoder"):
        raise NeurodeployError("SNN Grad-CAM needs a SpikingNet (a zoo SNN checkpoint)")
    _, module = find_layer(model, layer, (LIF,))
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32)
    acts: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        if out.requires_grad:
            out.retain_grad()
        acts.append(out)

    was_training = model.training
    model.eval()
    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad(), replay_inputs(model, steps_input):
            logits, _ = model.run(x, timesteps)
            cls = _targets(target, logits)
            if acts and acts[0].dim() != 4:
                raise NeurodeployError(f"Grad-CAM needs a conv layer; {layer} has neuron shape "
                                       f"{tuple(acts[0].shape[1:])}")
            model.zero_grad(set_to_none=True)
            score = logits.gather(1, cls[:, None]).sum()
            if score.requires_grad:
                score.backward()
    finally:
        handle.remove()
        model.train(was_training)
    a = torch.stack([s.detach() for s in acts], dim=1)  # (B, T, K, h, w)
    g = torch.stack([s.grad if s.grad is not None else torch.zeros_like(s) for s in acts], dim=1)
    alpha = g.mean(dim=(3, 4), keepdim=True)  # (B, T, K, 1, 1)
    if alpha_mode == "time_sum":
        alpha = alpha.sum(dim=1, keepdim=True)
    cam = torch.relu((alpha * a).sum(dim=2))
    return cam.double().numpy()
