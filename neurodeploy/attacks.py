"""Adversarial robustness of spiking networks (issue 7): FGSM, PGD and Gaussian noise on torch
models (the zoo's :class:`~neurodeploy.models.layers.SpikingNet` and its ANN twin), the
evaluation of the adversarial examples on the float, quantized and deployed (hw_sim,
fixed-point) SNN, the stability of Spike Activation Maps and Grad-CAM under attack, and
``neurodeploy attack`` (:func:`run_attack`).

Definitions (``reference/algorithms.md`` §8, §8.1, §11.3):

* **Pixel space.** Attacks work on images ``p ∈ [0, 1]`` (pixel units: ``p = raw/R`` with
  ``R`` the data's full scale, 255 for 8-bit images, 16 for ``digits``). The models take the
  normalized input ``x = (R·p − mean)/std`` (:mod:`neurodeploy.models.data`); this affine map
  (:class:`PixelSpace`) is applied *outside* the model, so ε is in pixel units and the
  gradient is taken with respect to ``p`` (its sign equals that of ``∂L/∂x``: ``std > 0``).
* **Loss**: cross entropy of the model's logits (SNN: ``U_out/T``; ANN: its output) with the
  true labels, per sample.
* **FGSM**: ``p' = clip_[0,1](p + ε·sign(∇_p L))``.
* **PGD**: random start ``p + U(−ε, ε)`` (optional), then ``steps`` times
  ``p' ← Π(p' + α·sign(∇_p L))`` with ``Π`` the projection onto the L∞ ball of radius ε around
  ``p`` and onto ``[0, 1]``; ``α`` defaults to ε/4 (2/255 at ε = 8/255, Sharmin et al.). With
  ``restarts > 1`` the worst case per sample is kept: a restart replaces the current example
  when it fools the model and the current does not, or when both do or both do not and its
  loss is higher.
* **Gaussian noise**: ``p' = clip_[0,1](p + ε·n)``, ``n ~ N(0, 1)`` per pixel (σ = ε); not
  crafted, so every model sees the same noisy images.
* **SNN gradients**: backpropagation through time over all ``T`` steps, through the
  surrogate spike function (choose it at attack time: ``surrogate=``, ``surrogate_scale=``;
  the LIF layers' own settings are restored afterwards) and straight through the Poisson
  encoder (its straight-through estimator ``∂s[t]/∂x = 1``, so ``∇_x = Σ_t ∂L/∂s_in[t]``).

Every random draw (random starts, noise, Poisson spike trains while crafting and evaluating)
comes from a ``torch.Generator`` seeded from ``seed``, and random starts and noise are drawn for
the whole sample set before batching: the same arguments give the same examples and numbers.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import NeurodeployError, UnsupportedError
from .outdir import check_out_dir, jsonable, write_dir_atomic

FORMAT = "neurodeploy-robustness"
VERSION = 1
#: Attacks by name.
ATTACKS = ("fgsm", "pgd", "noise")
#: Default ε list (pixel units).
DEFAULT_EPS = (0.0, 2 / 255, 4 / 255, 8 / 255)
#: Models evaluated, in report order (``snn_quantized`` only with ``quantized=True``).
MODELS = ("ann", "snn_float", "snn_quantized", "snn_deployed")
#: Files an attack run writes.
OUTPUT_FILES = ("robustness.json", "robustness.png", "report.json", "report.html")
#: Default PGD step size as a fraction of ε.
STEP_FRACTION = 0.25


# ============================================================================================
# Pixel space
# ============================================================================================


@dataclass(frozen=True)
class PixelSpace:
    """The affine map between pixels ``p ∈ [0, 1]`` and a model's normalized input ``x``::

        x = p·gain − bias,   gain = R/std,   bias = mean/std      (per channel)

    ``gain`` and ``bias`` are float64 arrays broadcastable to one sample's shape;
    ``pixel_max`` is ``R`` (raw units per pixel unit)."""

    gain: np.ndarray
    bias: np.ndarray
    pixel_max: float = 1.0

    @classmethod
    def identity(cls) -> PixelSpace:
        """Models that take pixels directly."""
        return cls(np.ones(()), np.zeros(()), 1.0)

    def to_model(self, p: Any) -> Any:
        """Normalized input of pixels ``p`` (numpy array or torch tensor ``(B, *shape)``)."""
        if torch.is_tensor(p):
            gain = torch.as_tensor(self.gain, dtype=p.dtype, device=p.device)
            bias = torch.as_tensor(self.bias, dtype=p.dtype, device=p.device)
            return p * gain - bias
        return np.asarray(p) * self.gain - self.bias

    def to_pixels(self, x: Any) -> np.ndarray:
        """Pixels of normalized inputs ``x`` (numpy ``(B, *shape)``), clipped to [0, 1]."""
        return np.clip((np.asarray(x, dtype=np.float64) + self.bias) / self.gain, 0.0, 1.0)


def pixel_space(spec: str, shape: Sequence[int]) -> PixelSpace:
    """The :class:`PixelSpace` of dataset ``spec`` for a model taking samples of ``shape``
    (flat models take flattened images): the training split's normalization
    (``Dataset.normalization``) and the full scale ``R`` of the raw values
    (:func:`neurodeploy.models.data.pixel_max`: 255 for ``mnist5k``, 16 for ``digits``).

    Raises :class:`UnsupportedError` for data with negative raw values (no pixel scale)."""
    from .models.data import load_dataset, pixel_max

    data = load_dataset(spec, split="test")
    mean, std = (np.asarray(v, dtype=np.float64) for v in data.normalization)
    in_shape = tuple(data.in_shape)
    if len(in_shape) == 3:
        mean, std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
    try:
        r = pixel_max(data)
    except UnsupportedError as err:
        raise UnsupportedError(f"{err}; attacks work on images with values in [0, R]",
                               hint="give image data (0-255 or 0-1 values)") from None
    gain = np.broadcast_to(r / std, in_shape)
    bias = np.broadcast_to(mean / std, in_shape)
    shape = tuple(int(s) for s in shape)
    if shape != in_shape:
        if int(np.prod(shape)) != int(np.prod(in_shape)):
            raise NeurodeployError(f"data {spec!r} has samples of shape {in_shape}, the model "
                                   f"takes {shape}")
        gain, bias = gain.reshape(shape), bias.reshape(shape)
    return PixelSpace(np.ascontiguousarray(gain), np.ascontiguousarray(bias), float(r))


# ============================================================================================
# Arguments
# ============================================================================================

_FRACTION = re.compile(r"^\s*([0-9.eE+-]+)\s*(?:/\s*([0-9.eE+-]+))?\s*$")


def parse_eps(text: str) -> list[float]:
    """ε values from a comma-separated list of numbers or fractions, e.g.
    ``"0,2/255,4/255,0.031"`` (pixel units); checked like :func:`check_eps`."""
    if not isinstance(text, str):
        return check_eps(text)
    values: list[float] = []
    for item in (s for s in text.split(",") if s.strip()):
        match = _FRACTION.match(item)
        try:
            if match is None:
                raise ValueError(item)
            value = float(match.group(1))
            if match.group(2) is not None:
                value /= float(match.group(2))
        except (ValueError, ZeroDivisionError):
            raise NeurodeployError(f"eps {item.strip()!r} is not a number or fraction",
                                   hint="e.g. --eps 0,2/255,4/255,8/255") from None
        values.append(value)
    return check_eps(values)


def check_eps(eps: Any) -> list[float]:
    """``eps`` (a number, a sequence of numbers, or a string for :func:`parse_eps`) as a
    sorted list of distinct floats in [0, 1] (pixel units); raises :class:`NeurodeployError`
    for anything else."""
    if isinstance(eps, str):
        return parse_eps(eps)
    if _is_number(eps):
        eps = [eps]
    if not isinstance(eps, (Sequence, np.ndarray)) or len(eps) == 0:
        raise NeurodeployError(f"eps must be a list of numbers in [0, 1], got {eps!r}",
                               hint="e.g. eps=(0, 2/255, 4/255, 8/255)")
    out = []
    for value in eps:
        if not _is_number(value) or not math.isfinite(float(value)):
            raise NeurodeployError(f"eps {value!r} is not a finite number")
        if not 0.0 <= float(value) <= 1.0:
            raise NeurodeployError(f"eps {float(value):g} is outside [0, 1] (pixel units of "
                                   "[0, 1] images; 8/255 = 0.0314)")
        out.append(float(value))
    return sorted(set(out))


def _one_eps(eps: Any) -> float:
    if isinstance(eps, str) or not _is_number(eps):
        raise NeurodeployError(f"eps must be one number in [0, 1], got {eps!r}")
    return check_eps([eps])[0]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < low:
        raise NeurodeployError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_step_size(step_size: Any) -> float | None:
    if step_size is None:
        return None
    if not _is_number(step_size) or not math.isfinite(float(step_size)) or \
            not 0.0 < float(step_size) <= 1.0:
        raise NeurodeployError(f"step_size must be a number in (0, 1] (pixel units), got "
                               f"{step_size!r}", hint="default: eps/4")
    return float(step_size)


def check_surrogate(surrogate: Any, scale: Any = None) -> tuple[str | None, float | None]:
    """``(surrogate, scale)`` checked: a name of
    :data:`neurodeploy.models.layers.SURROGATES` or ``None`` (keep the model's), and a finite
    scale > 0 or ``None``."""
    from .models.layers import SURROGATES

    if surrogate is not None and (not isinstance(surrogate, str) or surrogate not in SURROGATES):
        raise NeurodeployError(f"unknown surrogate {surrogate!r}; choose one of "
                               f"{', '.join(SURROGATES)}")
    if scale is not None and (not _is_number(scale) or not math.isfinite(float(scale))
                              or float(scale) <= 0):
        raise NeurodeployError(f"surrogate_scale must be a number > 0, got {scale!r}")
    return surrogate, None if scale is None else float(scale)


# ============================================================================================
# Attacks
# ============================================================================================


@contextlib.contextmanager
def crafting(model: nn.Module, *, surrogate: str | None = None,
             surrogate_scale: float | None = None,
             generator: torch.Generator | None = None) -> Iterator[nn.Module]:
    """Within the block ``model`` is in ``eval()`` with frozen parameters (no weight
    gradients), its LIF layers use ``surrogate``/``surrogate_scale`` (when given) and its
    Poisson encoder (if any) draws from ``generator`` (when given); all restored on exit."""
    from .models.layers import LIF

    surrogate, surrogate_scale = check_surrogate(surrogate, surrogate_scale)
    was_training = model.training
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    lifs = [(m, m.surrogate, m.surrogate_scale) for m in model.modules() if isinstance(m, LIF)]
    encoder = getattr(model, "encoder", None)
    has_gen = encoder is not None and hasattr(encoder, "generator") and generator is not None
    saved_gen = encoder.generator if has_gen else None
    try:
        model.eval()
        for p, _ in frozen:
            p.requires_grad_(False)
        for m, _, _ in lifs:
            if surrogate is not None:
                m.surrogate = surrogate
            if surrogate_scale is not None:
                m.surrogate_scale = surrogate_scale
        if has_gen:
            encoder.generator = generator
        yield model
    finally:
        model.train(was_training)
        for p, flag in frozen:
            p.requires_grad_(flag)
        for m, name, scale in lifs:
            m.surrogate, m.surrogate_scale = name, scale
        if has_gen:
            encoder.generator = saved_gen


def input_gradient(model: nn.Module, p: torch.Tensor, y: torch.Tensor,
                   space: PixelSpace | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∇_p L, L)``: the gradient of the summed per-sample cross entropy ``L`` of
    ``model(space.to_model(p))`` with respect to the pixels ``p`` ``(B, *shape)``, and ``L``
    per sample ``(B,)``. For a :class:`~neurodeploy.models.layers.SpikingNet` this is BPTT
    over all its time steps through the LIF layers' surrogates (set them with
    :func:`crafting`)."""
    space = space or PixelSpace.identity()
    leaf = p.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(space.to_model(leaf))
        loss = nn.functional.cross_entropy(logits, y, reduction="none")
        if loss.requires_grad:
            (grad,) = torch.autograd.grad(loss.sum(), leaf, allow_unused=True)
        else:
            grad = None
    if grad is None:
        grad = torch.zeros_like(leaf)
    return grad.detach(), loss.detach()


def _batches(n: int, batch: int | None) -> list[slice]:
    size = n if batch is None else max(1, int(batch))
    return [slice(a, min(a + size, n)) for a in range(0, n, size)]


def _as_tensors(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    xt = (x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))).to(torch.float32)
    yt = (y if torch.is_tensor(y) else torch.as_tensor(np.asarray(y))).to(torch.int64)
    if yt.dim() != 1 or yt.shape[0] != xt.shape[0]:
        raise NeurodeployError(f"{tuple(yt.shape)} labels for a batch of {xt.shape[0]} images")
    return xt, yt


def fgsm(model: nn.Module, x: Any, y: Any, eps: float, *, space: PixelSpace | None = None,
         surrogate: str | None = None, surrogate_scale: float | None = None,
         generator: torch.Generator | None = None, batch: int | None = None) -> torch.Tensor:
    """FGSM: ``clip_[0,1](x + ε·sign(∇_x L))`` for pixel images ``x`` ``(B, *shape)`` in
    [0, 1] with labels ``y`` ``(B,)``; ``eps`` in pixel units. ``space`` maps pixels to the
    model's input (default: the model takes pixels). ``surrogate``/``surrogate_scale``
    override an SNN's surrogate gradient; ``generator`` drives a Poisson encoder;
    ``batch`` bounds the samples per backward pass. Returns float32 ``(B, *shape)``."""
    eps = _one_eps(eps)
    p, yt = _as_tensors(x, y)
    out = p.clone()
    with crafting(model, surrogate=surrogate, surrogate_scale=surrogate_scale,
                  generator=generator):
        for sl in _batches(len(p), batch):
            grad, _ = input_gradient(model, p[sl], yt[sl], space)
            out[sl] = (p[sl] + eps * grad.sign()).clamp(0.0, 1.0)
    return out


def pgd(model: nn.Module, x: Any, y: Any, eps: float, *, steps: int = 7,
        step_size: float | None = None, random_start: bool = True, restarts: int = 1,
        space: PixelSpace | None = None, surrogate: str | None = None,
        surrogate_scale: float | None = None, generator: torch.Generator | None = None,
        batch: int | None = None) -> torch.Tensor:
    """PGD (L∞, module docstring) on pixel images ``x`` ``(B, *shape)`` in [0, 1] with
    labels ``y``: ``steps`` signed-gradient steps of ``step_size`` (pixel units; default
    ε/4), each projected onto the ε-ball around ``x`` and onto [0, 1], from a random start
    ``U(−ε, ε)`` (``random_start``; drawn from ``generator`` for all samples before
    batching); ``restarts`` runs keeping the worst case per sample. Other arguments as
    :func:`fgsm`. Returns float32 ``(B, *shape)``.

    ``steps=1, random_start=False, step_size=eps`` is FGSM."""
    eps = _one_eps(eps)
    steps = _check_int("steps", steps, 1)
    restarts = _check_int("restarts", restarts, 1)
    alpha = _check_step_size(step_size)
    alpha = STEP_FRACTION * eps if alpha is None else alpha
    p, yt = _as_tensors(x, y)
    best = p.clone()
    if eps == 0.0:
        return best
    best_fooled = torch.zeros(len(p), dtype=torch.bool)
    best_loss = torch.full((len(p),), -math.inf)
    with crafting(model, surrogate=surrogate, surrogate_scale=surrogate_scale,
                  generator=generator):
        for _ in range(restarts):
            if random_start:
                start = torch.empty(p.shape, dtype=torch.float32).uniform_(
                    -eps, eps, generator=generator)
            else:
                start = torch.zeros_like(p)
            for sl in _batches(len(p), batch):
                p0 = p[sl]
                lo, hi = (p0 - eps).clamp(min=0.0), (p0 + eps).clamp(max=1.0)
                cur = torch.max(torch.min(p0 + start[sl], hi), lo)
                for _ in range(steps):
                    grad, _ = input_gradient(model, cur, yt[sl], space)
                    cur = torch.max(torch.min(cur + alpha * grad.sign(), hi), lo)
                if restarts == 1:
                    best[sl] = cur
                    continue
                with torch.no_grad():
                    logits = model(_model_input(cur, space))
                    loss = nn.functional.cross_entropy(logits, yt[sl], reduction="none")
                    fooled = logits.argmax(dim=1) != yt[sl]
                better = (fooled & ~best_fooled[sl]) | (
                    (fooled == best_fooled[sl]) & (loss > best_loss[sl]))
                idx = torch.arange(sl.start, sl.stop)[better]
                best[idx] = cur[better]
                best_loss[idx] = loss[better]
                best_fooled[idx] = fooled[better]
    return best


def _model_input(p: torch.Tensor, space: PixelSpace | None) -> torch.Tensor:
    return p if space is None else space.to_model(p)


def gaussian_noise(x: Any, eps: float, *, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """``clip_[0,1](x + ε·n)`` with ``n ~ N(0, 1)`` per pixel (σ = ε, pixel units), for
    pixel images ``x`` ``(B, *shape)``; float32."""
    eps = _one_eps(eps)
    p = (x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))).to(torch.float32)
    if eps == 0.0:
        return p.clone()
    noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
    return (p + eps * noise).clamp(0.0, 1.0)


def seeded(seed: int, *keys: int) -> torch.Generator:
    """A ``torch.Generator`` seeded from ``seed`` and ``keys`` (independent streams for each
    model, ε and purpose)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *keys]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


# ============================================================================================
# Evaluation
# ============================================================================================


def predict(model: nn.Module, x: np.ndarray, *, batch: int | None = None,
            generator: torch.Generator | None = None, record: int = 0
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(predicted class (N,), spikes)`` of a torch model on normalized inputs ``x``
    ``(N, *shape)``. For a SpikingNet with ``record = k > 0``, ``spikes`` maps each LIF
    layer (module path) to its spikes ``(k, T, *neuron_shape)`` for the first ``k``
    samples; ``generator`` drives a Poisson encoder."""
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    preds: list[np.ndarray] = []
    spikes: dict[str, list[np.ndarray]] = {}
    run = getattr(model, "run", None)
    with crafting(model, generator=generator), torch.no_grad():
        for sl in _batches(len(xt), batch):
            want = max(0, min(record, sl.stop) - sl.start)
            if want and run is not None:
                logits, rec = run(xt[sl], record=True)
                for name, steps in rec.items():
                    spikes.setdefault(name, []).append(
                        torch.stack(steps, dim=1)[:want].numpy())
            else:
                logits = model(xt[sl])
            preds.append(logits.argmax(dim=1).numpy())
    return (np.concatenate(preds) if preds else np.zeros(0, np.int64),
            {k: np.concatenate(v) for k, v in spikes.items()})


def predict_fixed(graph: Any, x: np.ndarray, steps: int, *, batch: int | None = None
                  ) -> np.ndarray:
    """Predicted class ``(N,)`` of a fixed-point graph run by hw_sim on normalized inputs
    ``x`` ``(N, *shape)``, exactly as :func:`neurodeploy.inference.evaluate` runs it
    (``deployed_inputs``/``run_deployed`` with the staggered reset, the output layer's
    window, ``predictions``)."""
    from .inference import deployed_inputs, output_scale, predictions, run_deployed, window

    out = graph.outputs[0] if graph.outputs else graph.neurons[-1]
    value = output_scale(graph, out) is not None
    key = "v" if value else "s"
    preds = []
    for sl in _batches(len(x), batch):
        inputs = deployed_inputs(graph, x[sl], steps, offset=sl.start)
        res = run_deployed(graph, inputs, record={out: [key]})
        preds.append(predictions(window(graph, out, res.traces[f"{out}.{key}"], steps), value))
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


# ============================================================================================
# neurodeploy attack
# ============================================================================================


@dataclass
class _Setup:
    """What an attack run works on (models, data, pixel space)."""

    m: Any  # sam._Models
    ann: nn.Module | None
    ann_path: Path | None
    x: np.ndarray  # (N, *shape) normalized, float64
    y: np.ndarray
    p: np.ndarray  # pixels (N, *shape) float64 in [0, 1]
    space: PixelSpace
    data_name: str
    data_spec: str
    seed: int


def _load(model: Any, ann: Any, data: Any, samples: int, seed: int, notes: list[str],
          say: Callable[[str], None]) -> _Setup:
    from .inference import load_eval_data, trained_on
    from .sam import _ann_twin, _load_models

    try:
        m = _load_models(model)
    except UnsupportedError as err:
        if "no spiking layers" not in err.message:
            raise
        raise UnsupportedError(
            f"{model if model is not None else 'the model'} has no spiking layers; the attack "
            "compares a spiking network with its ANN twin",
            hint="give the SNN checkpoint as MODEL and the ANN as ann= (--ann)") from None
    if m.net is None:
        raise UnsupportedError(
            f"{m.source} is not a zoo SNN checkpoint: crafting attacks needs the torch model "
            "(gradients through time)", hint="give a checkpoint written by neurodeploy train "
            "(model.pt or its folder) or a compile folder made from one")
    in_shape = tuple(m.float_graph.shapes[m.float_graph.inputs[0]])
    if data is None:
        data = trained_on(m.source)
        if data is None:
            raise NeurodeployError("no data given and the model records no training dataset",
                                   hint="give data= (--data DATA), e.g. digits or mnist5k")
    data = str(data)
    say(f"loading {data} (test split, {samples} samples)")
    x, y, name = load_eval_data(data, samples, in_shape)
    space = pixel_space(data, in_shape)
    net, ann_path, note = _ann_twin(ann, m.source, in_shape)
    if note:
        notes.append("no ANN twin found beside the model (give ann=, --ann): the ANN "
                     "accuracy and Grad-CAM stability are null")
    return _Setup(m, net, ann_path, x, y, space.to_pixels(x), space, name, data, seed)


def _adversarial(setup: _Setup, p_adv: torch.Tensor | np.ndarray) -> np.ndarray:
    """Normalized inputs of adversarial pixels, anchored at the clean inputs (an unchanged
    pixel gives exactly the clean input)."""
    delta = np.asarray(p_adv, dtype=np.float64) - setup.p.astype(np.float32).astype(np.float64)
    return setup.x + delta * setup.space.gain


def run_attack(model: str | Path | None = None, ann: str | Path | None = None, *,
               attack: str = "fgsm", eps: Any = DEFAULT_EPS, data: str | None = None,
               samples: int = 500, out: str | Path | None = None, steps: int = 7,
               step_size: float | None = None, random_start: bool = True, restarts: int = 1,
               surrogate: str | None = None, surrogate_scale: float | None = None,
               seed: int = 0, target: str = "loihi2", deployed: bool = True,
               quantized: bool = False, transfer: bool = False,
               sam_layers: str | Sequence[str] | None = None, sam_samples: int = 100,
               batch: int = 100, calib_samples: int = 64, overwrite: bool = False,
               log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Attack a spiking network and its ANN twin at several ε and write the robustness
    report (``neurodeploy attack``).

    Adversarial examples are crafted white-box on each torch model: on the float SNN
    (BPTT through the surrogate; evaluated on ``snn_float``, ``snn_quantized`` and
    ``snn_deployed``) and on the ANN (evaluated on ``ann``). ``noise`` uses one set of noisy
    images for every model. ε = 0 gives the clean accuracies.

    Args:
        model: zoo SNN checkpoint (``model.pt`` or its folder) or a compile folder made from
            one (its fixed-point graph is the deployed model). Default: the shipped demo
            checkpoint.
        ann: the ANN twin (checkpoint or folder); default ``<model folder>_ann`` when it
            exists (else the ANN entries are ``null``).
        attack: ``"fgsm"``, ``"pgd"`` or ``"noise"``.
        eps: ε values in pixel units of [0, 1] images (numbers, or a string such as
            ``"0,2/255,8/255"``).
        data: dataset spec (test split); default the dataset the model was trained on.
        samples: test samples (the seeded subset ``verify`` and ``simulate`` use).
        out: output folder (new, empty, or a previous attack run with ``overwrite``).
        steps, step_size, random_start, restarts: PGD's (step size in pixel units; default
            ε/4 per ε).
        surrogate, surrogate_scale: the SNN's surrogate gradient while crafting (default:
            the model's own).
        seed: seeds every random draw (module docstring).
        target: target of the in-memory compile (a compile folder keeps its own).
        deployed: evaluate the deployed (legalized fixed-point) graph on hw_sim.
        quantized: also evaluate the fixed-point graph before legalization on hw_sim
            (``snn_quantized``, as ``verify``'s quantized stage; in-memory compiles only).
        transfer: also evaluate the ANN on the SNN's examples and the float SNN on the
            ANN's (black-box transfer).
        sam_layers: conv spiking layers for the SAM and Grad-CAM stability (default all;
            skipped when the model has none).
        sam_samples: samples (the first ones) for SAM and Grad-CAM stability (0: skip).
        batch: samples per forward/backward pass and per hw_sim run.
        calib_samples: training samples calibrating the in-memory compile.
        overwrite: replace a previous attack output folder.
        log: called with progress messages.

    Writes ``robustness.json`` (the returned document), ``robustness.png`` (accuracy against
    ε, one line per model), ``report.json`` and ``report.html`` (with a Robustness section).

    Returns the JSON-able document: ``format``, ``version``, ``attack``, ``eps``,
    ``accuracy`` {model: [one value per ε]} for ``ann``, ``snn_float``, ``snn_deployed``
    (and ``snn_quantized``), ``crafted_on``, ``transfer``, ``params``, ``seed``,
    ``samples``, ``data``, ``model``, ``ann_model``, ``deployed``, ``target``,
    ``timesteps``, ``encoder``, ``perturbation`` (mean L∞ and L2 distance to the clean
    pixels per model and ε), ``sam_stability`` and ``gradcam_stability`` (see
    :func:`stability`), ``timing`` (seconds per phase), ``notes``, ``files``.

    Raises:
        NeurodeployError: bad arguments (unknown attack or surrogate, ε outside [0, 1],
            samples/steps/restarts/batch < 1, …), data that does not fit the model.
        UnsupportedError: a model without spiking layers or that is no zoo SNN checkpoint.
        BadInputFileError: unreadable model files or compile folders.
    """
    say = log or (lambda message: None)
    t_start = time.perf_counter()
    if not isinstance(attack, str) or attack not in ATTACKS:
        raise NeurodeployError(f"unknown attack {attack!r}; choose one of {', '.join(ATTACKS)}")
    eps_list = check_eps(eps)
    samples = _check_int("samples", samples, 1)
    steps = _check_int("steps", steps, 1)
    restarts = _check_int("restarts", restarts, 1)
    batch = _check_int("batch", batch, 1)
    sam_samples = _check_int("sam_samples", sam_samples, 0)
    calib_samples = _check_int("calib_samples", calib_samples, 1)
    seed = _check_int("seed", seed, 0)
    step_size = _check_step_size(step_size)
    surrogate, surrogate_scale = check_surrogate(surrogate, surrogate_scale)
    if out is None:
        raise NeurodeployError("give an output folder (--out DIR)")
    dest = check_out_dir(out, OUTPUT_FILES, overwrite=overwrite, what="attack run")
    notes: list[str] = []
    timing: dict[str, float] = {}

    def timed(key: str, t0: float) -> None:
        timing[key] = round(timing.get(key, 0.0) + time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    s = _load(model, ann, data, samples, seed, notes, say)
    m, net, n, data_spec = s.m, s.m.net, len(s.x), s.data_spec
    T = m.steps
    timed("load", t0)

    # ---------------------------------------------------------------- fixed-point graphs
    fixed_graphs: dict[str, Any] = {}
    deployed_desc = None
    if deployed or quantized:
        t0 = time.perf_counter()
        if m.deployed is not None:
            fixed_graphs["snn_deployed"] = m.deployed
            deployed_desc = str(m.compiled)
            if quantized:
                notes.append("snn_quantized is evaluated only for in-memory compiles (not for "
                             "a compile folder)")
        else:
            from .compile import compile_in_memory

            say(f"compiling {m.source} for {target} in memory (calibration: {calib_samples} "
                f"training samples of {data_spec})")
            fixed, legal, warn = compile_in_memory(m.float_graph, target, calib=data_spec,
                                                   calib_samples=calib_samples, steps=T)
            if quantized:
                fixed_graphs["snn_quantized"] = fixed
            if deployed:
                fixed_graphs["snn_deployed"] = legal
            notes.extend(w for w in warn if w.startswith("not legalized"))
            deployed_desc = (f"{m.source} compiled in memory for {target} as neurodeploy "
                             f"compile --calib {data_spec} --calib-samples {calib_samples} "
                             "does")
            if any(w.startswith("BNTT folded") for w in warn):
                notes.append("deployed model: BNTT folded into time-averaged batch norm (the "
                             "per-step statistics are lost), as neurodeploy compile does")
        timed("compile", t0)

    # ---------------------------------------------------------------- craft
    p_clean = torch.as_tensor(s.p, dtype=torch.float32)
    y_t = torch.as_tensor(s.y)
    kinds = ["snn"] + (["ann"] if s.ann is not None else [])
    models = {"snn": net, "ann": s.ann}
    examples: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
    step_sizes = [step_size if step_size is not None else STEP_FRACTION * e for e in eps_list]
    for i, e in enumerate(eps_list):
        if e == 0.0:
            for k in kinds:
                examples[k].append(s.x)
            continue
        if attack == "noise":
            adv = _adversarial(s, gaussian_noise(p_clean, e, generator=seeded(seed, 2, i)))
            for k in kinds:
                examples[k].append(adv)
            continue
        for j, k in enumerate(kinds):
            t0 = time.perf_counter()
            say(f"{attack.upper()} eps={e:.4g} on the {'float SNN' if k == 'snn' else 'ANN'}")
            kw = dict(space=s.space, generator=seeded(seed, j, i), batch=batch,
                      surrogate=surrogate if k == "snn" else None,
                      surrogate_scale=surrogate_scale if k == "snn" else None)
            if attack == "fgsm":
                p_adv = fgsm(models[k], p_clean, y_t, e, **kw)
            else:
                p_adv = pgd(models[k], p_clean, y_t, e, steps=steps, step_size=step_sizes[i],
                            random_start=random_start, restarts=restarts, **kw)
            examples[k].append(_adversarial(s, p_adv))
            timed(f"craft_{k}", t0)

    # ---------------------------------------------------------------- evaluate
    accuracy: dict[str, list[float | None]] = {"ann": [], "snn_float": []}
    if "snn_quantized" in fixed_graphs:
        accuracy["snn_quantized"] = []
    accuracy["snn_deployed"] = []
    cross: dict[str, list[float | None]] = {"ann_on_snn_examples": [],
                                            "snn_float_on_ann_examples": []}
    spikes: list[dict[str, np.ndarray]] = []
    k_sam = min(sam_samples, n)
    for i, e in enumerate(eps_list):
        t0 = time.perf_counter()
        say(f"evaluating eps={e:.4g}: float SNN")
        pred, rec = predict(net, examples["snn"][i], batch=batch, generator=seeded(seed, 3),
                            record=k_sam)
        accuracy["snn_float"].append(float(np.mean(pred == s.y)))
        spikes.append(rec)
        if s.ann is not None:
            pred_ann, _ = predict(s.ann, examples["ann"][i], batch=batch)
            accuracy["ann"].append(float(np.mean(pred_ann == s.y)))
        else:
            accuracy["ann"].append(None)
        timed("eval_float", t0)
        if transfer and s.ann is not None and attack != "noise":
            t0 = time.perf_counter()
            if e == 0.0:
                cross["ann_on_snn_examples"].append(accuracy["ann"][-1])
                cross["snn_float_on_ann_examples"].append(accuracy["snn_float"][-1])
            else:
                a, _ = predict(s.ann, examples["snn"][i], batch=batch)
                b, _ = predict(net, examples["ann"][i], batch=batch, generator=seeded(seed, 3))
                cross["ann_on_snn_examples"].append(float(np.mean(a == s.y)))
                cross["snn_float_on_ann_examples"].append(float(np.mean(b == s.y)))
            timed("transfer", t0)
        for key in ("snn_quantized", "snn_deployed"):
            if key not in accuracy:
                continue
            if key not in fixed_graphs:
                accuracy[key].append(None)
                continue
            t0 = time.perf_counter()
            say(f"evaluating eps={e:.4g}: {key} on hw_sim")
            pred = predict_fixed(fixed_graphs[key], examples["snn"][i], T, batch=batch)
            accuracy[key].append(float(np.mean(pred == s.y)))
            timed(f"eval_{key.removeprefix('snn_')}", t0)
    if not deployed:
        notes.append("deployed model not evaluated (deployed=False)")

    # ---------------------------------------------------------------- stability
    t0 = time.perf_counter()
    sam_doc, cam_doc = stability(s, examples, spikes, eps_list, sam_layers, k_sam, notes, say)
    timed("stability", t0)

    perturbation = {}
    for k in kinds:
        rows = {"linf": [], "l2": []}
        for i in range(len(eps_list)):
            d = (examples[k][i] - s.x) / s.space.gain
            flat = d.reshape(n, -1)
            rows["linf"].append(float(np.abs(flat).max(axis=1).mean()))
            rows["l2"].append(float(np.sqrt((flat ** 2).sum(axis=1)).mean()))
        perturbation["snn" if k == "snn" else "ann"] = rows

    timing["total"] = round(time.perf_counter() - t_start, 3)
    crafted = {"ann": "ann", "snn_float": "snn_float", "snn_quantized": "snn_float",
               "snn_deployed": "snn_float"}
    if attack == "noise":
        crafted = {k: "none (Gaussian noise, the same images for every model)"
                   for k in crafted}
    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "attack": attack, "eps": eps_list,
        "eps_255": [round(e * 255, 4) for e in eps_list], "accuracy": accuracy,
        "crafted_on": {k: crafted[k] for k in accuracy},
        "transfer": cross if transfer and attack != "noise" and s.ann is not None else None,
        "params": {
            "steps": steps if attack == "pgd" else 1 if attack == "fgsm" else None,
            "step_size": step_sizes if attack == "pgd" else None,
            "random_start": random_start if attack == "pgd" else None,
            "restarts": restarts if attack == "pgd" else None,
            "surrogate": surrogate or _surrogate_of(net), "surrogate_scale":
                surrogate_scale if surrogate_scale is not None else _surrogate_of(net, True),
            "loss": "cross-entropy of the logits (SNN: U_out/T), true labels",
            "norm": "Linf" if attack != "noise" else "Gaussian, sigma = eps",
            "space": "pixels in [0, 1]: x = (R*p - mean)/std, applied outside the model",
            "pixel_max": s.space.pixel_max,
            "white_box": attack != "noise", "batch": batch},
        "seed": seed, "samples": n, "data": s.data_name, "data_spec": data_spec,
        "split": "test", "model": str(m.source),
        "ann_model": None if s.ann_path is None else str(s.ann_path),
        "deployed": deployed_desc, "target": _target_name(fixed_graphs, target),
        "timesteps": T, "encoder": m.float_graph.metadata.get("encoder", "direct"),
        "perturbation": perturbation, "sam_stability": sam_doc,
        "gradcam_stability": cam_doc, "timing": timing, "notes": notes,
        "files": list(OUTPUT_FILES),
    }
    final = jsonable(doc)

    def write(tmp: Path) -> None:
        from .report import make_report, save_figure, write_report

        save_figure(plot_robustness(final), tmp / "robustness.png")
        (tmp / "robustness.json").write_text(json.dumps(final, indent=1) + "\n",
                                             encoding="utf-8")
        register_report_section()
        rows = [{"stage": f"{k} (clean)", "accuracy": final["accuracy"][k][0], "samples": n}
                for k in final["accuracy"] if eps_list[0] == 0.0
                and final["accuracy"][k][0] is not None]
        report = make_report(
            model=str(m.source), target=str(final["target"]), steps=T, samples=n,
            accuracy=rows, robustness=final,
            assumptions=[f"{attack.upper()} in pixel units of [0, 1] images (R = "
                         f"{s.space.pixel_max:g}); white-box per model: SNN examples crafted "
                         "on the float SNN (BPTT through the surrogate) and evaluated on the "
                         "float and deployed SNN; ANN examples crafted on the ANN"
                         if attack != "noise" else
                         "Gaussian noise with sigma = eps in pixel units, clipped to [0, 1]"])
        write_report(report, tmp)

    say(f"writing {dest}")
    write_dir_atomic(dest, write)
    return final


def _surrogate_of(net: nn.Module, scale: bool = False) -> Any:
    from .models.layers import LIF

    for mod in net.modules():
        if isinstance(mod, LIF):
            return mod.surrogate_scale if scale else mod.surrogate
    return None


def _target_name(graphs: Mapping[str, Any], default: str) -> str:
    for g in graphs.values():
        name = g.metadata.get("target")
        if isinstance(name, str) and name:
            return name
    return str(default)


def stability(s: _Setup, examples: Mapping[str, list[np.ndarray]],
              spikes: list[dict[str, np.ndarray]], eps: list[float],
              layers: str | Sequence[str] | None, k: int, notes: list[str],
              say: Callable[[str], None]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """SAM stability of the SNN and Grad-CAM stability of the ANN (``algorithms.md`` §11.3)
    on the first ``k`` samples: the normalized L1 distance ``D = mean_ij |Ĥ_clean − Ĥ_adv|``
    of min-max normalized maps (:func:`neurodeploy.sam.heatmap_agreement`; 0 = unchanged, at
    most 1) and the IoU of their 15 % masks, each model under its own (white-box) examples.

    ``sam_stability``: ``{"metric", "gamma", "mode", "samples", "layers": {layer: {"l1": [per
    ε, mean over samples and steps], "l1_per_step": [per ε: [per t]], "iou": [per ε]}}}``;
    ``gradcam_stability``: ``{"metric", "samples", "target", "layers": {layer: {"ann_layer",
    "l1": [per ε], "iou": [per ε]}}}``. Either is ``None`` when skipped (a note says why)."""
    from .gradcam import ann_layer_name, gradcam_ann
    from .sam import DEFAULT_GAMMA, _module_paths, heatmap_agreement, sam_float, select_layers

    if k == 0:
        notes.append("SAM and Grad-CAM stability skipped (sam_samples=0)")
        return None, None
    try:
        names = select_layers(s.m.float_graph, layers)
    except UnsupportedError as err:
        if layers is not None:
            raise
        notes.append(f"SAM and Grad-CAM stability skipped: {err.message}")
        return None, None
    paths = _module_paths(s.m.net)
    missing = [nm for nm in names if nm not in paths]
    if missing:
        raise NeurodeployError(f"layer(s) {', '.join(missing)} are not LIF layers of the torch "
                               "model")
    say(f"SAM stability on {k} samples: {', '.join(names)}")
    metric = ("normalized L1 distance between the clean and adversarial heatmaps, min-max "
              "normalized per map: mean_ij |H_clean - H_adv| (algorithms.md 11.3)")
    sam_rows: dict[str, Any] = {}
    clean = sam_float({nm: spikes[0][paths[nm]] for nm in names}) if eps[0] == 0.0 else \
        None
    if clean is None:
        # no eps = 0 run: the clean spikes come from a separate run
        _, rec = predict(s.m.net, s.x[:k], generator=seeded(s.seed, 3), record=k)
        clean = sam_float({nm: rec[paths[nm]] for nm in names})
    for nm in names:
        row: dict[str, list[Any]] = {"l1": [], "l1_per_step": [], "iou": []}
        for i in range(len(eps)):
            adv = sam_float({nm: spikes[i][paths[nm]]})[nm]
            agree = heatmap_agreement(clean[nm], adv)
            row["l1"].append(float(agree["l1"].mean()))
            row["l1_per_step"].append(agree["l1"].mean(axis=0).tolist())
            row["iou"].append(float(agree["iou"].mean()))
        sam_rows[nm] = row
    sam_doc = {"metric": metric, "map": "float SAM", "gamma": DEFAULT_GAMMA,
               "mode": "inclusive", "samples": k, "examples": "crafted on the float SNN",
               "layers": sam_rows}
    if s.ann is None:
        return sam_doc, None
    cam_rows: dict[str, Any] = {}
    y = s.y[:k]
    for nm in names:
        layer = ann_layer_name(paths[nm])
        try:
            base = gradcam_ann(s.ann, s.x[:k], layer, y)
        except NeurodeployError as err:
            notes.append(f"{nm}: no ANN Grad-CAM ({err})")
            continue
        row = {"ann_layer": layer, "l1": [], "iou": []}
        for i in range(len(eps)):
            cam = gradcam_ann(s.ann, examples["ann"][i][:k], layer, y)
            agree = heatmap_agreement(base, cam)
            row["l1"].append(float(agree["l1"].mean()))
            row["iou"].append(float(agree["iou"].mean()))
        cam_rows[nm] = row
    cam_doc = {"metric": metric, "map": "Grad-CAM of the ANN twin (true class)", "samples": k,
               "examples": "crafted on the ANN", "layers": cam_rows}
    return sam_doc, cam_doc


# ============================================================================================
# Plot and report section
# ============================================================================================

_LABELS = {"ann": "ANN", "snn_float": "SNN float", "snn_quantized": "SNN quantized (hw_sim)",
           "snn_deployed": "SNN deployed (hw_sim)"}


def plot_robustness(doc: Mapping[str, Any]) -> Any:
    """Accuracy (%) against ε (×255) with one line per model of a robustness document."""
    from .report import _PALETTE, _figure, _style_axes

    fig = _figure(5.0, 3.2)
    ax = fig.add_subplot()
    xs = [255 * float(e) for e in doc.get("eps", [])]
    for i, (name, values) in enumerate((doc.get("accuracy") or {}).items()):
        pts = [(x, 100 * v) for x, v in zip(xs, values or []) if v is not None]
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=4,
                color=_PALETTE[i % len(_PALETTE)], label=_LABELS.get(name, name),
                linestyle="--" if name == "snn_quantized" else "-")
    ax.set_xlabel("ε × 255 (pixel units)")
    ax.set_ylabel("accuracy (%)")
    known = [100 * v for vals in (doc.get("accuracy") or {}).values() for v in vals or []
             if v is not None]
    ax.set_ylim(max(0.0, 10 * math.floor(min(known, default=0.0) / 10 - 1)), 101)
    ax.set_title(f"{str(doc.get('attack', '')).upper()} on {doc.get('samples')} "
                 f"{doc.get('data')} test samples", fontsize=9)
    if ax.lines:
        ax.legend(fontsize=8, frameon=False)
    _style_axes(ax)
    return fig


def summary_text(doc: Mapping[str, Any]) -> str:
    """A terminal table of a robustness document: one row per ε, one accuracy column per
    model, then the mean SAM / Grad-CAM change of the first layer."""
    eps = list(doc.get("eps") or [])
    acc = doc.get("accuracy") or {}
    names = list(acc)
    head = ["eps", *(_LABELS.get(k, k) for k in names)]
    sam = ((doc.get("sam_stability") or {}).get("layers") or {})
    cam = ((doc.get("gradcam_stability") or {}).get("layers") or {})
    layer = next(iter(sam), None)
    if layer is not None:
        head.append(f"SAM L1 {layer}")
        if layer in cam:
            head.append(f"Grad-CAM L1 {cam[layer].get('ann_layer')}")
    rows = []
    for i, e in enumerate(eps):
        row = [f"{255 * float(e):.3g}/255", *(_pct(acc[k][i]) for k in names)]
        if layer is not None:
            row.append(_num(sam[layer]["l1"][i]))
            if layer in cam:
                row.append(_num(cam[layer]["l1"][i]))
        rows.append(row)
    widths = [max(len(str(r[c])) for r in [head, *rows]) for c in range(len(head))]
    lines = [f"{str(doc.get('attack', '')).upper()} on {doc.get('samples')} {doc.get('data')} "
             "test samples (accuracy; heatmap change: normalized L1)"]
    for r in [head, *rows]:
        lines.append("  ".join(str(v).rjust(w) for v, w in zip(r, widths)))
    return "\n".join(lines)


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.1f}%"


def _num(value: Any) -> str:
    return "—" if value is None else f"{float(value):.3f}"


def render_section(doc: Mapping[str, Any]) -> str:
    """The ``report.html`` section of a report document's ``robustness`` entry (what
    :func:`run_attack` returns): parameters, accuracy against ε (plot and table), transfer,
    SAM and Grad-CAM stability."""
    from .report import _e, _figure_html, _nodata, _table

    rob = doc.get("robustness")
    if not isinstance(rob, Mapping) or not rob.get("eps"):
        return _nodata("No robustness evaluation in this report (neurodeploy attack).")
    eps = list(rob["eps"])
    heads = [f"{255 * float(e):.3g}/255" for e in eps]
    params = rob.get("params") or {}
    facts = [("attack", str(rob.get("attack", "")).upper()), ("samples", rob.get("samples")),
             ("data", rob.get("data")), ("seed", rob.get("seed"))]
    if rob.get("attack") == "pgd":
        facts += [("steps", params.get("steps")), ("restarts", params.get("restarts")),
                  ("random start", "yes" if params.get("random_start") else "no")]
    if rob.get("attack") != "noise":
        facts.append(("surrogate", f"{params.get('surrogate')} ×{params.get('surrogate_scale')}"))
    out = ['<dl class="facts">']
    out += [f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts]
    out.append("</dl>")
    acc = rob.get("accuracy") or {}
    try:
        out.append(_figure_html(plot_robustness(rob), "robustness",
                                "Accuracy against ε (pixel units ×255); each model under "
                                "white-box examples crafted on its torch model (the deployed "
                                "SNN: on the float SNN)."))
    except (TypeError, ValueError):
        out.append(_nodata("The robustness plot could not be drawn."))
    out.append(_table(["model", *heads],
                      [(_LABELS.get(k, k), *(_pct(v) for v in vals)) for k, vals in acc.items()]))
    tr = rob.get("transfer")
    if isinstance(tr, Mapping) and any(tr.values()):
        out.append("<p>Transfer (black-box): each model on the other's examples.</p>")
        out.append(_table(["model ← examples", *heads],
                          [("ANN ← SNN's", *(_pct(v) for v in tr.get(
                              "ann_on_snn_examples") or [])),
                           ("SNN float ← ANN's", *(_pct(v) for v in tr.get(
                               "snn_float_on_ann_examples") or []))]))
    sam = rob.get("sam_stability")
    cam = rob.get("gradcam_stability") or {}
    if isinstance(sam, Mapping) and sam.get("layers"):
        out.append(f"<p>Heatmap change under attack on {_e(sam.get('samples'))} samples: "
                   "normalized L1 distance between the clean and adversarial maps (0 = "
                   "unchanged); SAM averaged over time steps.</p>")
        rows = []
        for layer, row in sam["layers"].items():
            rows.append((f"SAM {layer}", *(_num(v) for v in row.get("l1", []))))
            crow = (cam.get("layers") or {}).get(layer)
            if crow:
                rows.append((f"ANN Grad-CAM {crow.get('ann_layer')}",
                             *(_num(v) for v in crow.get("l1", []))))
        out.append(_table(["map", *heads], rows))
    notes = rob.get("notes") or []
    if notes:
        out.append("<ul>" + "".join(f"<li>{_e(x)}</li>" for x in notes) + "</ul>")
    return "".join(out)


def register_report_section() -> None:
    """Add the Robustness section to ``report.html``
    (:func:`neurodeploy.report.register_section`; idempotent)."""
    from .report import Section, register_section

    register_section(Section("robustness", "Robustness", render_section, key="robustness"))
