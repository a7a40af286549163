"""Spike Activation Maps (SAM, Kim & Panda 2021): the float reference, the on-chip fixed-point
accumulator, its error bound, the comparison metrics and ``neurodeploy sam`` (:func:`run_sam`).

Exact definitions: ``reference/algorithms.md`` §5 (time ``t`` is 0-based, spikes are 0/1).

**Float SAM.** For a spiking conv layer with spikes ``s[t, k, i, j]`` and ``d = exp(-γ)``, the
neuronal contribution score (NCS) of a neuron at step ``t`` is, by mode:

* ``"inclusive"`` (default): ``M[t] = Σ_{t' ≤ t} s[t'] d^(t−t')`` (the official code's sum,
  which includes the current step, without its quirk); recurrence ``M[t] = d·M[t−1] + s[t]``;
* ``"exclusive"``: ``N[t] = M[t] − s[t]`` (the paper's literal "previous firing times"),
  so an isolated spike scores 0;
* ``"official"``: ``W[t] = M[t] + Z[t]·d^t`` with ``Z[t]`` the number of *silent* steps in
  ``[0, t]``: the authors' ``main.py`` computes ``exp(−γ(t − s[t']·t'))`` for every past step,
  so each silent step counts as a spike at time 0 (parity with their published heatmaps).

The heatmap is ``SAM[t, i, j] = Σ_k s[t, k, i, j] · NCS[t, k, i, j]`` (channels only; the
official code also sums over the batch, which is why it needs batch size 1: a batch here is
a stack of independent single-image runs). For display and metrics a map is min-max normalized
per image and step, ``(x − min)/(max − min + 1e-3)`` as the official code does, and upsampled
bilinearly (``align_corners=False``) to the input size.

**On-chip accumulator** (§5.5). Per neuron an integer trace with a 12-bit decay
``δ = round(4096·(1 − e^{−γ}))`` and increment ``A`` (default 4096, Loihi's 8-bit weight 64
times its activation shift 2^6)::

    q[t] = rtz(q[t−1]·(4096 − δ) / 4096) + A·s[t]          # rtz: round toward zero (q ≥ 0)
    map[t, i, j] = Σ_k s·q            (inclusive)   or   Σ_k s·(q − A·s)   (exclusive)

in trace units (divide by ``A`` for NCS units). It needs only the layer's spikes of the
current step: :class:`SamAccumulator` runs it inside hw_sim as a
:class:`~neurodeploy.hw_sim.engine.StepObserver` (no spike history is stored), and
:mod:`neurodeploy.backends.lava_sam` as a Lava process bit-exact with it. The official mode's
silent-step term needs the absolute time ``d^t`` and is float-only. :func:`error_bound` bounds
``|q/A − M|`` per neuron; a map pixel's error is at most that times the number of channels
firing there.

**Comparisons**: :func:`localization_error` (the SAM paper's metric: the cross entropy between
a SAM and the ANN's Grad-CAM, minimum over time steps), :func:`heatmap_agreement` (normalized
L1, IoU of the 15 % masks, peak distance; ``algorithms.md`` §11.2), :func:`heatmap_variance`
(the paper's smoothing measure) and :func:`drift` (float model vs deployed model).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import BadInputFileError, NeurodeployError, UnsupportedError
from .models.checkpoint import DEMO_MODEL
from .outdir import check_out_dir, jsonable, write_dir_atomic

FORMAT = "neurodeploy-sam"
VERSION = 1
#: NCS modes of the float reference.
MODES = ("inclusive", "exclusive", "official")
#: Modes the fixed-point accumulator implements.
ONCHIP_MODES = ("inclusive", "exclusive")
#: γ of the paper and the official code (per time step).
DEFAULT_GAMMA = 0.5
#: Trace increment per spike (A): Loihi weight 64 times the activation shift 2**6.
DEFAULT_SCALE = 4096
#: 12-bit decay unit.
DECAY_UNITY = 4096
#: Largest value of a 24-bit signed state.
STATE_MAX = (1 << 23) - 1
#: ``+eps`` in the min-max normalization (the official code's).
NORM_EPS = 1e-3
#: Mask threshold (fraction of the maximum) of the IoU metric (CAM/Grad-CAM protocol).
MASK_THRESHOLD = 0.15
#: Probability clip of the cross entropy (log of an exact 0 or 1 is infinite).
CE_CLIP = 1e-6
#: Most time steps drawn per figure row (every k-th step beyond that, as the official code).
MAX_FIGURE_STEPS = 10


# ============================================================================================
# Arguments
# ============================================================================================


def check_gamma(gamma: Any) -> float:
    """``gamma`` as a float; raises :class:`NeurodeployError` unless it is a finite number > 0
    (γ is the kernel's steepness per time step)."""
    ok = isinstance(gamma, (int, float, np.integer, np.floating)) and not isinstance(gamma, bool)
    if not ok or not math.isfinite(float(gamma)) or float(gamma) <= 0:
        raise NeurodeployError(f"gamma must be a positive number (per time step), got {gamma!r}",
                               hint=f"the paper uses gamma={DEFAULT_GAMMA}")
    return float(gamma)


def check_mode(mode: Any, allowed: Sequence[str] = MODES) -> str:
    """``mode`` if it is one of ``allowed``; else :class:`NeurodeployError`."""
    if not isinstance(mode, str) or mode not in allowed:
        raise NeurodeployError(f"SAM mode {mode!r} is not one of {', '.join(allowed)}")
    return mode


def _as_spikes(spikes: Any, what: str = "spikes") -> np.ndarray:
    """Spikes as a float64 array ``(B, T, C, H, W)``: a numpy array, a torch tensor, or a list
    over time of ``(B, C, H, W)`` tensors (what ``SpikingNet.run(record=True)`` gives)."""
    if isinstance(spikes, (list, tuple)):
        if not spikes:
            raise NeurodeployError(f"{what}: no time steps")
        spikes = [s.detach().cpu().numpy() if torch.is_tensor(s) else np.asarray(s)
                  for s in spikes]
        arr = np.stack(spikes, axis=1)
    elif torch.is_tensor(spikes):
        arr = spikes.detach().cpu().numpy()
    else:
        arr = np.asarray(spikes)
    if arr.ndim != 5:
        raise NeurodeployError(
            f"{what} have shape {arr.shape}; SAM needs (batch, steps, channels, H, W) spikes "
            "of a conv layer")
    if arr.dtype.kind not in "biuf":
        raise NeurodeployError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all((arr == 0) | (arr == 1)):
        raise NeurodeployError(f"{what} must be 0/1 spikes")
    return arr


# ============================================================================================
# Float reference
# ============================================================================================


def ncs(spikes: Any, gamma: float = DEFAULT_GAMMA, mode: str = "inclusive") -> np.ndarray:
    """Neuronal contribution score of every neuron and step, ``(B, T, C, H, W)`` float64
    (dimensionless: a sum of ``exp(−γ·Δt)`` terms); see the module docstring for the modes.

    ``spikes``: ``(B, T, C, H, W)`` 0/1 (numpy, torch, or a list over time of
    ``(B, C, H, W)``); ``gamma`` per time step."""
    s = _as_spikes(spikes)
    g = check_gamma(gamma)
    mode = check_mode(mode)
    d = math.exp(-g)
    out = np.empty_like(s)
    m = np.zeros_like(s[:, 0])
    silent = np.zeros_like(s[:, 0])
    for t in range(s.shape[1]):
        m = d * m + s[:, t]
        if mode == "inclusive":
            out[:, t] = m
        elif mode == "exclusive":
            out[:, t] = m - s[:, t]
        else:
            silent += 1.0 - s[:, t]
            out[:, t] = m + silent * math.exp(-g * t)
    return out


def sam_map(spikes: Any, gamma: float = DEFAULT_GAMMA, mode: str = "inclusive") -> np.ndarray:
    """SAM heatmaps ``(B, T, H, W)`` float64 of one layer's spikes ``(B, T, C, H, W)``:
    ``Σ_k s·NCS`` over channels (NCS units, not normalized)."""
    s = _as_spikes(spikes)
    return (s * ncs(s, gamma, mode)).sum(axis=2)


def sam_float(spikes: Mapping[str, Any], gamma: float = DEFAULT_GAMMA,
              mode: str = "inclusive") -> dict[str, np.ndarray]:
    """:func:`sam_map` of every layer: ``{layer: (B, T, C, H, W) spikes}`` →
    ``{layer: (B, T, H, W) heatmaps}``."""
    check_gamma(gamma)
    check_mode(mode)
    return {name: sam_map(_as_spikes(s, f"layer {name}"), gamma, mode)
            for name, s in spikes.items()}


def normalize(maps: Any, eps: float = NORM_EPS) -> np.ndarray:
    """Min-max normalize every map over its last two axes: ``(x − min)/(max − min + eps)``
    (an all-equal map becomes 0). Any leading shape; float64."""
    x = np.asarray(maps, dtype=np.float64)
    lo = x.min(axis=(-2, -1), keepdims=True)
    span = x.max(axis=(-2, -1), keepdims=True) - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (x - lo) / (span + eps)
    return np.where(span + eps > 0, out, 0.0)


def upsample(maps: Any, size: Sequence[int]) -> np.ndarray:
    """Bilinear resize (``align_corners=False``) of the last two axes to ``size = (H, W)``."""
    x = np.asarray(maps, dtype=np.float64)
    size = (int(size[0]), int(size[1]))
    if x.shape[-2:] == size:
        return x.copy()
    lead = x.shape[:-2]
    t = torch.as_tensor(x.reshape(-1, 1, *x.shape[-2:]))
    out = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size).numpy()


# ============================================================================================
# Fixed point
# ============================================================================================


def decay_mantissa(gamma: float) -> int:
    """The 12-bit decay ``δ = round(4096·(1 − e^{−γ}))`` of the trace (``d_q = (4096 − δ)/4096``).

    Raises :class:`NeurodeployError` when γ is so small that δ rounds to 0 (no decay: the trace
    would grow without bound)."""
    g = check_gamma(gamma)
    delta = int(round(DECAY_UNITY * (1.0 - math.exp(-g))))
    if delta < 1:
        raise NeurodeployError(f"gamma={g:g} is too small for a 12-bit decay (it rounds to 0)",
                               hint="use gamma >= 1.3e-4")
    return delta


@dataclass(frozen=True)
class SamFixedPoint:
    """Fixed-point parameters of the SAM accumulator (see the module docstring).

    Attributes:
        gamma: kernel steepness per step.
        scale: trace increment ``A`` per spike (trace units per NCS unit).
    """

    gamma: float = DEFAULT_GAMMA
    scale: int = DEFAULT_SCALE

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", check_gamma(self.gamma))
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
            raise NeurodeployError(f"SAM trace scale must be a positive integer, got {scale!r}")
        object.__setattr__(self, "scale", int(scale))
        if self.max_trace > STATE_MAX:
            raise NeurodeployError(
                f"SAM trace with scale {self.scale} and gamma {self.gamma:g} can reach "
                f"{self.max_trace}, beyond the 24-bit state", hint="use a smaller scale")

    @property
    def delta(self) -> int:
        """12-bit decay ``δ``."""
        return decay_mantissa(self.gamma)

    @property
    def keep(self) -> int:
        """``4096 − δ``: the trace is multiplied by ``keep/4096`` each step."""
        return DECAY_UNITY - self.delta

    @property
    def d(self) -> float:
        """Float decay ``e^{−γ}``."""
        return math.exp(-self.gamma)

    @property
    def d_q(self) -> float:
        """Quantized decay ``(4096 − δ)/4096``."""
        return self.keep / DECAY_UNITY

    @property
    def max_trace(self) -> int:
        """Largest trace value: the fixed point of ``q ← floor(q·keep/4096) + A`` from 0
        (one spike every step), at most ``A/(1 − d_q)``."""
        return int(self.scale * DECAY_UNITY // self.delta)

    @property
    def bound(self) -> float:
        """:func:`error_bound` for these parameters (NCS units)."""
        return error_bound(self.gamma, self.scale)


def error_bound(gamma: float = DEFAULT_GAMMA, scale: int = DEFAULT_SCALE) -> float:
    """Largest ``|q[t]/A − M[t]|`` (NCS units) between the fixed-point trace and the float
    inclusive NCS of one neuron, any binary spike train, any length::

        (|d − d_q|·M_max + 1/A) / (1 − d_q),   M_max = 1/(1 − d)

    Derivation: ``e[t] = q[t]/A − M[t] = d_q·e[t−1] + (d_q − d)·M[t−1] − r[t]/A`` with the
    truncation ``0 ≤ r[t] < 1`` and ``0 ≤ M ≤ M_max``; summing the geometric series of
    ``d_q`` gives the bound. (``algorithms.md`` §5.5 writes ``|d − d_q|/(1 − d)² +
    1/(A(1 − d_q))``, the same to first order in ``d − d_q``.) The exclusive NCS has the same
    error; a map pixel adds at most one such error per channel firing there.
    For γ = 0.5 and A = 4096: 1.17e-3."""
    p = SamFixedPoint(gamma, scale)
    m_max = 1.0 / (1.0 - p.d)
    return (abs(p.d - p.d_q) * m_max + 1.0 / p.scale) / (1.0 - p.d_q)


def fixed_trace(spikes: Any, gamma: float = DEFAULT_GAMMA,
                scale: int = DEFAULT_SCALE) -> np.ndarray:
    """The accumulator's integer trace ``q`` of every neuron and step (plain numpy reference):
    ``(B, T, C, H, W)`` spikes → int64 of the same shape (trace units)."""
    s = _as_spikes(spikes).astype(np.int64)
    p = SamFixedPoint(gamma, scale)
    out = np.empty_like(s)
    q = np.zeros_like(s[:, 0])
    for t in range(s.shape[1]):
        q = (q * p.keep) // DECAY_UNITY + p.scale * s[:, t]  # q >= 0: floor = rtz
        out[:, t] = q
    return out


def sam_fixed(spikes: Any, gamma: float = DEFAULT_GAMMA, mode: str = "inclusive",
              scale: int = DEFAULT_SCALE) -> np.ndarray:
    """The accumulator's maps ``(B, T, H, W)`` int64 in trace units (numpy reference of
    :class:`SamAccumulator`, on stored spikes ``(B, T, C, H, W)``)."""
    mode = check_mode(mode, ONCHIP_MODES)
    s = _as_spikes(spikes).astype(np.int64)
    q = fixed_trace(s, gamma, scale)
    if mode == "exclusive":
        q = q - int(scale) * s
    return (s * q).sum(axis=2)


def accumulator_cost(shape: Sequence[int], *, gamma: float = DEFAULT_GAMMA,
                     scale: int = DEFAULT_SCALE) -> dict[str, Any]:
    """What the on-chip SAM accumulator of one spiking layer of shape ``(C, H, W)`` adds to the
    deployment (for mapping and energy reports).

    The design (as :mod:`neurodeploy.backends.lava_sam` builds it): one **trace compartment**
    per neuron, fed by its neuron's spikes through a one-to-one synapse of weight ``A``
    (``A = 64 << 6``), with a 12-bit current decay ``δ``; when the neuron fires, its trace
    sends its value as a graded event through a weight-1 synapse to one **channel-sum
    compartment** per pixel (no decay, cleared every step), whose value is ``map[t, i, j]``.

    Returns a JSON-able dict:

    * ``compartments``: ``C·H·W`` traces + ``H·W`` channel sums;
    * ``synops_per_spike``: 2 (spike → its trace; trace read-out → its pixel's sum) per output
      spike of the layer;
    * ``updates_per_step``: compartment updates per time step (every trace decays every step;
      every sum is updated), ``C·H·W + H·W``;
    * ``trace_bits`` / ``sum_bits``: state bits needed (``⌈log2(max + 1)⌉`` of the largest
      trace ``A/(1 − d_q)`` and of ``C`` times it); a Loihi compartment holds 24;
    * ``synapses``: ``2·C·H·W``; ``synapse_bits``: 8 per synapse (weight mantissa);
    * ``state_bits``: ``C·H·W·trace_bits + H·W·sum_bits``;
      ``config_bits``: 12 (decay) + 8 (weight) + 3 (weight exponent) per layer;
    * ``memory_bits``: ``state_bits + synapses·8 + config_bits``;
    * ``reasoning``: the above as sentences.
    """
    if len(shape) != 3 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in shape):
        raise NeurodeployError(f"SAM accumulator needs a conv layer shape (C, H, W), got "
                               f"{tuple(shape)}")
    c, h, w = (int(v) for v in shape)
    p = SamFixedPoint(gamma, scale)
    neurons, pixels = c * h * w, h * w
    trace_bits = int(p.max_trace).bit_length()
    sum_bits = int(c * p.max_trace).bit_length()
    synapses = 2 * neurons
    state_bits = neurons * trace_bits + pixels * sum_bits
    config_bits = 12 + 8 + 3
    memory_bits = state_bits + synapses * 8 + config_bits
    return {
        "shape": [c, h, w], "gamma": p.gamma, "scale": p.scale, "decay": p.delta,
        "compartments": neurons + pixels, "trace_compartments": neurons,
        "sum_compartments": pixels, "synops_per_spike": 2,
        "updates_per_step": neurons + pixels, "trace_bits": trace_bits, "sum_bits": sum_bits,
        "synapses": synapses, "synapse_bits": synapses * 8, "state_bits": state_bits,
        "config_bits": config_bits, "memory_bits": memory_bits,
        "reasoning": [
            f"one trace compartment per neuron ({c}x{h}x{w} = {neurons}) and one channel-sum "
            f"compartment per pixel ({h}x{w} = {pixels})",
            "each output spike of the layer costs 2 synaptic ops: the spike into its trace "
            "(weight A) and the trace's graded read-out into its pixel's channel sum",
            f"every trace decays every step (12-bit decay {p.delta}), so {neurons + pixels} "
            "compartment updates per step whether or not the layer fires",
            f"the largest trace is A/(1-d_q) = {p.max_trace} ({trace_bits} bits), a channel "
            f"sum at most {c} times that ({sum_bits} bits); Loihi compartments hold 24 bits",
            f"{synapses} one-to-one synapses with an 8-bit weight each; decay, weight and "
            "exponent are configured once per layer",
        ],
    }


#: Bits of an accumulator synapse's weight (both kinds; :func:`accumulator_cost`).
SAM_SYNAPSE_BITS = 8
#: Synapse encoding whose per-op energy and time the accumulator's synaptic ops are charged at
#: (one-to-one and one-per-channel synapses, one 8-bit weight each, no index).
SAM_ENCODING = "dense"


@dataclass(frozen=True)
class SamSpec:
    """Which neuron layers of a fixed-point graph carry an on-chip SAM accumulator, for the
    mapping (:func:`neurodeploy.mapping.map_graph`), the event accounting and the cost model.

    Attributes:
        layers: conv neuron layers (IR names, shape ``(C, H, W)``).
        gamma: kernel steepness per step (> 0); sets the 12-bit decay.
        scale: trace increment ``A`` per spike.
        channels: per layer, the channels that get a trace (the first ``k``; default all):
            relay channels that legalization appends to a layer carry no trace.
    """

    layers: tuple[str, ...]
    gamma: float = DEFAULT_GAMMA
    scale: int = DEFAULT_SCALE
    channels: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        layers = [self.layers] if isinstance(self.layers, str) else list(self.layers)
        if not layers or not all(isinstance(n, str) and n for n in layers):
            raise NeurodeployError(f"SAM layers must be a non-empty list of layer names, got "
                                   f"{self.layers!r}")
        object.__setattr__(self, "layers", tuple(dict.fromkeys(layers)))
        params = SamFixedPoint(self.gamma, self.scale)
        object.__setattr__(self, "gamma", params.gamma)
        object.__setattr__(self, "scale", params.scale)
        chans = dict(self.channels or {})
        bad = [f"{k}={v!r}" for k, v in chans.items() if isinstance(v, bool)
               or not isinstance(v, (int, np.integer)) or v < 1]
        if bad:
            raise NeurodeployError(f"SAM channels must be positive integers: {', '.join(bad)}")
        object.__setattr__(self, "channels", {str(k): int(v) for k, v in chans.items()})

    @property
    def params(self) -> SamFixedPoint:
        """The fixed-point parameters (decay, increment)."""
        return SamFixedPoint(self.gamma, self.scale)

    def channels_of(self, layer: str, shape: Sequence[int]) -> int:
        """Channels of ``layer`` (of neuron shape ``(C, H, W)``) that get a trace."""
        assert self.channels is not None  # set in __post_init__
        return min(int(self.channels.get(layer, shape[0])), int(shape[0]))


def check_sam_target(target: Any) -> None:
    """Raise :class:`UnsupportedError` unless ``target`` (a loaded
    :class:`~neurodeploy.targets.Target`) can run the on-chip accumulator: its spike-gated
    read-out of a trace is a graded spike sent by a programmable neuron (Loihi 2); Loihi 1's
    binary spikes and fixed neuron model cannot carry it (``algorithms.md`` §5.4)."""
    graded = int(target.precision.get("message_bits_max", 0)) > 0
    if not (getattr(target, "programmable_neurons", False) and graded):
        raise UnsupportedError(
            f"target {target.name} cannot run the on-chip SAM accumulator: its trace read-out "
            "is a graded spike from a programmable neuron (binary spikes and a fixed neuron "
            "model cannot carry it)", hint="use loihi2, or compute SAM with neurodeploy sam")


def check_sam_layers(graph: Any, layers: str | Sequence[str]) -> list[str]:
    """The SAM layers ``layers`` (names, or one comma-separated string) of ``graph``, checked:
    spiking layers (float graph) or neuron layers (fixed graph) of shape ``(C, H, W)``.
    Raises :class:`NeurodeployError` for unknown names and :class:`UnsupportedError` for
    layers without a ``(C, H, W)`` shape, each listing the valid layers."""
    if graph.stage == "float":
        return select_layers(graph, layers)
    shapes = graph.shapes
    neurons = list(graph.neurons)
    conv = [n for n in neurons if len(shapes[n]) == 3]
    if not conv:
        raise UnsupportedError(f"the network has no neuron layers of shape (C, H, W) (neuron "
                               f"layers: {', '.join(neurons) or 'none'}); the SAM accumulator "
                               "needs conv layers")
    return _checked_layers(layers, neurons, conv, shapes, label="SAM ", kind="neuron",
                           needs="the SAM accumulator")


def _checked_layers(layers: str | Sequence[str], known: Sequence[str], conv: Sequence[str],
                    shapes: Mapping[str, Any], *, label: str, kind: str, needs: str
                    ) -> list[str]:
    """``layers`` (names, or one comma-separated string) without repeats, each one of
    ``known`` and of shape ``(C, H, W)`` (in ``conv``); one-line errors listing ``conv``."""
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    names = list(dict.fromkeys(str(n) for n in layers))
    if not names:
        raise NeurodeployError(f"no {label}layers given; conv {kind} layers: {', '.join(conv)}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise NeurodeployError(f"unknown {label}layer(s) {', '.join(unknown)}; conv {kind} "
                               f"layers: {', '.join(conv)}")
    flat = [f"{n} {tuple(shapes[n])}" for n in names if n not in conv]
    if flat:
        raise UnsupportedError(f"{needs} needs conv layers (channels, H, W); not "
                               f"{', '.join(flat)}", hint=f"conv {kind} layers: {', '.join(conv)}")
    return names


def accumulator_summary(mapping: Mapping[str, Any], activity: Mapping[str, Any] | None = None,
                        cost: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """What the on-chip accumulator takes and costs as deployed, per layer, from the documents
    of a mapping made with a :class:`SamSpec` (``mapping.json``,
    :meth:`~neurodeploy.mapping.Mapping.to_json`) and, optionally, of a run counted and costed
    on it (:meth:`~neurodeploy.accounting.Activity.to_dict`,
    :meth:`~neurodeploy.cost.CostReport.to_dict`; their samples are inferences). None when the
    mapping has no accumulator.

    Returns ``target``, ``gamma``, ``scale``, ``decay``, ``placement``, ``cores_used``,
    ``cores_used_without_sam``, ``extra_cores``; with a run also ``energy_per_inference_j``
    (the whole network's, J), ``sam_energy_per_inference_j`` (the breakdown's ``sam`` part),
    ``sam_share`` (of the total), ``preset``, ``scope``; and ``layers``: per layer its mapping
    counts (``channels``, ``compartments``, ``traces``, ``sums``, ``synapses``,
    ``synaptic_memory_bits``, ``cores``, ``cores_without_sam``, ``extra_cores``) and, with a
    run, per inference: ``spikes`` (the layer's), ``synops`` (the accumulator's: 2 per
    spike), ``updates``, ``active_updates``, ``messages`` and ``energy_j``."""
    summary = mapping.get("sam")
    if not summary:
        return None
    out: dict[str, Any] = {
        "target": mapping.get("target"),
        **{k: summary.get(k) for k in ("gamma", "scale", "decay", "placement")},
        "cores_used": mapping.get("cores_used"),
        "cores_used_without_sam": summary.get("cores_used_without_sam"),
        "extra_cores": summary.get("extra_cores"),
    }
    sam_act = ((activity or {}).get("sam") or {}).get("per_layer") or {}
    net_act = (activity or {}).get("per_layer") or {}
    energy = (cost or {}).get("energy") or {}
    per_layer_j = energy.get("sam_per_layer_j") or {}
    if cost is not None:
        total = energy["per_inference_j"]["total"]
        part = energy["breakdown_j"].get("sam", 0.0)
        out.update({"energy_per_inference_j": total, "sam_energy_per_inference_j": part,
                    "sam_share": part / total if total else None,
                    "preset": energy.get("preset"), "scope": energy.get("scope")})
    layers: dict[str, Any] = {}
    for row in mapping.get("per_layer", []):
        info = row.get("sam")
        if not info:
            continue
        name = row["layer"]
        item = {k: info.get(k) for k in ("channels", "compartments", "traces", "sums",
                                         "synapses", "synaptic_memory_bits", "cores",
                                         "cores_without_sam", "extra_cores")}
        counts = sam_act.get(name)
        if counts is not None:
            item.update({
                "spikes": (net_act.get(name) or {}).get("output_spikes"),
                "synops": counts["syn_ops"],
                "updates": counts["active_updates"] + counts["inactive_updates"],
                "active_updates": counts["active_updates"],
                "messages": counts["messages_out"],
                "energy_j": per_layer_j.get(name)})
        layers[name] = item
    out["layers"] = layers
    return out


class _Observers:
    """Several hw_sim step observers as one (hw_sim takes one)."""

    def __init__(self, *observers: Any) -> None:
        self.observers = [o for o in observers if o is not None]

    def input_step(self, name: str, t: int, events: torch.Tensor) -> None:
        for o in self.observers:
            o.input_step(name, t, events)

    def neuron_step(self, name: str, t: int, s: torch.Tensor, u: torch.Tensor | None,
                    v: torch.Tensor, a: torch.Tensor | int) -> None:
        for o in self.observers:
            o.neuron_step(name, t, s, u, v, a)

    def reads_u(self, name: str) -> bool:
        return any(getattr(o, "reads_u", lambda n: True)(name) for o in self.observers)


class SamAccumulator:
    """The on-chip SAM accumulator as a hw_sim :class:`~neurodeploy.hw_sim.engine.StepObserver`
    (``hw_sim.run(graph, x, steps=..., observer=acc)``): streaming, it keeps per neuron only its
    integer trace and per step only the channel-summed map (no spike history).

    Args:
        layers: the conv neuron layers to watch: names, or ``{name: start}`` where ``start`` is
            the 0-based step at which the layer's trace starts (before it the trace is held at
            0 and the map is 0; pass the layer's pipeline depth to align with the float model).
        gamma, scale: see :class:`SamFixedPoint`.
        mode: ``"inclusive"`` or ``"exclusive"``.
        channels: optional ``{name: slice}`` of the channels summed (e.g. to leave out relay
            channels that legalization appended).

    After the run, :meth:`maps` gives ``{layer: (B, steps, H, W)}`` int64 maps in trace units
    (steps before ``start`` are 0) and :meth:`maps_ncs` the same divided by ``scale``.
    """

    def __init__(self, layers: Mapping[str, int] | Sequence[str], *,
                 gamma: float = DEFAULT_GAMMA, mode: str = "inclusive",
                 scale: int = DEFAULT_SCALE,
                 channels: Mapping[str, slice] | None = None) -> None:
        if isinstance(mode, str) and mode == "official":
            raise UnsupportedError(
                "the official mode's silent-step term needs the absolute time factor d^t; the "
                "on-chip accumulator implements the inclusive and exclusive modes",
                hint="use mode='inclusive' (the official maps without the quirk)")
        self.mode = check_mode(mode, ONCHIP_MODES)
        self.params = SamFixedPoint(gamma, scale)
        if isinstance(layers, Mapping):
            self.start = {str(k): int(v) for k, v in layers.items()}
        else:
            if isinstance(layers, str):
                layers = [layers]
            self.start = {str(k): 0 for k in layers}
        if not self.start:
            raise NeurodeployError("SamAccumulator needs at least one layer")
        bad = [f"{k}={v}" for k, v in self.start.items() if v < 0]
        if bad:
            raise NeurodeployError(f"SAM start steps must be >= 0: {', '.join(bad)}")
        self.channels = dict(channels or {})
        self._q: dict[str, torch.Tensor] = {}
        self._maps: dict[str, list[torch.Tensor]] = {name: [] for name in self.start}

    def input_step(self, name: str, t: int, events: torch.Tensor) -> None:
        """Input events are not used."""

    def reads_u(self, name: str) -> bool:
        """u is not used (see ``StepObserver``)."""
        return False

    def neuron_step(self, name: str, t: int, s: torch.Tensor, u: torch.Tensor,
                    v: torch.Tensor, a: torch.Tensor | int) -> None:
        """One step of a layer: update its traces and append this step's map."""
        if name not in self.start:
            return
        if s.dim() != 4:
            raise UnsupportedError(
                f"SAM needs a conv layer (channels, H, W); {name} has neuron shape "
                f"{tuple(s.shape[1:])}")
        maps = self._maps[name]
        if len(maps) != t:
            raise NeurodeployError(f"SamAccumulator saw step {t} of {name} after "
                                   f"{len(maps)} steps; use a fresh accumulator per run")
        sl = self.channels.get(name, slice(None))
        spk = (s[:, sl] != 0).to(torch.int64)
        if t < self.start[name]:
            maps.append(torch.zeros((spk.shape[0], *spk.shape[2:]), dtype=torch.int64))
            return
        p = self.params
        q = self._q.get(name)
        if q is None:
            q = torch.zeros_like(spk)
        q = torch.div(q * p.keep, DECAY_UNITY, rounding_mode="floor") + p.scale * spk
        self._q[name] = q
        value = q - p.scale * spk if self.mode == "exclusive" else q
        maps.append((value * spk).sum(dim=1).cpu())

    def maps(self) -> dict[str, np.ndarray]:
        """``{layer: (B, steps, H, W)}`` int64 maps in trace units (empty layers skipped)."""
        return {name: torch.stack(m, dim=1).numpy() for name, m in self._maps.items() if m}

    def maps_ncs(self) -> dict[str, np.ndarray]:
        """:meth:`maps` divided by the scale ``A`` (NCS units, float64)."""
        return {name: m / float(self.params.scale) for name, m in self.maps().items()}


# ============================================================================================
# Metrics
# ============================================================================================


def _pair(a: Any, b: Any, size: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Both maps resized to a common size (``size``, else the larger of the two) and
    min-max normalized."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if size is None:
        size = max(a.shape[-2:], b.shape[-2:], key=lambda s: s[0] * s[1])
    return normalize(upsample(a, size)), normalize(upsample(b, size))


def localization_error(sam: Any, reference: Any, *,
                       size: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """The SAM paper's localization error of heatmaps against a reference (the ANN's Grad-CAM).

    For each step ``t`` the binary cross entropy, averaged over pixels, of the SAM (as the
    prediction ``p``) against the Grad-CAM (as the target ``g``), both upsampled to ``size``
    (default: the larger map) and min-max normalized::

        CE[t] = −mean_ij( g·log p[t] + (1 − g)·log(1 − p[t]) ),   p clipped to [1e-6, 1 − 1e-6]

    and the error is ``min_t CE[t]``. (The paper states "the cross entropy between the
    predicted SAMs and the Grad-CAM, minimum across time steps"; the pixel-wise binary form is
    our reading.) ``sam``: ``(B, T, h, w)``; ``reference``: ``(B, h', w')``.

    Returns ``{"curve": (B, T), "error": (B,), "best_t": (B,)}``."""
    s = np.asarray(sam, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if s.ndim != 4 or r.ndim != 3 or s.shape[0] != r.shape[0]:
        raise NeurodeployError(f"localization error needs SAM (B, T, h, w) and reference "
                               f"(B, h, w) maps, got {s.shape} and {r.shape}")
    p, g = _pair(s, r[:, None], size)
    p = np.clip(p, CE_CLIP, 1.0 - CE_CLIP)
    curve = -(g * np.log(p) + (1.0 - g) * np.log(1.0 - p)).mean(axis=(-2, -1))
    return {"curve": curve, "error": curve.min(axis=1), "best_t": curve.argmin(axis=1)}


def heatmap_agreement(a: Any, b: Any, *, threshold: float = MASK_THRESHOLD,
                      size: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Agreement of two heatmaps (``algorithms.md`` §11.2), per map over any leading shape:
    ``l1`` = mean absolute difference of the min-max normalized maps (0 = same), ``iou`` of
    the masks ``map > threshold·max`` (1 = same; 1 when both are empty) and
    ``peak_distance`` = distance between the argmax pixels divided by the image side."""
    x, y = _pair(a, b, size)
    x, y = np.broadcast_arrays(x, y)
    h, w = x.shape[-2:]
    l1 = np.abs(x - y).mean(axis=(-2, -1))
    mx = x > threshold * x.max(axis=(-2, -1), keepdims=True)
    my = y > threshold * y.max(axis=(-2, -1), keepdims=True)
    inter = (mx & my).sum(axis=(-2, -1))
    union = (mx | my).sum(axis=(-2, -1))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    ax = x.reshape(*x.shape[:-2], -1).argmax(axis=-1)
    ay = y.reshape(*y.shape[:-2], -1).argmax(axis=-1)
    dist = np.hypot(ax // w - ay // w, ax % w - ay % w) / max(h, w)
    return {"l1": l1, "iou": iou, "peak_distance": dist}


def heatmap_variance(maps: Any) -> np.ndarray:
    """The paper's smoothing measure: pixel variance of each min-max normalized map, maximum
    over time steps; ``(B, T, h, w)`` → ``(B,)`` (``(B, h, w)`` → ``(B,)`` without the max)."""
    x = normalize(maps)
    var = x.var(axis=(-2, -1))
    return var.max(axis=1) if x.ndim == 4 else var


def drift(reference: Any, deployed: Any) -> dict[str, Any]:
    """How much the SAM of the deployed (fixed-point) model differs from the float model's,
    maps ``(B, T, h, w)`` of the same layer, both in NCS units.

    Returns ``l1`` (mean over samples and steps of the normalized-map L1, see
    :func:`heatmap_agreement`), ``l1_per_step`` (list over t), ``iou`` and ``peak_distance``
    (means), ``relative_l1`` = ``Σ|a − b| / Σ|a|`` of the raw maps (``None`` when the
    reference is all zero) and ``max_abs`` (largest raw difference, NCS units)."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(deployed, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise NeurodeployError(f"drift needs two (B, T, h, w) map stacks of one shape, got "
                               f"{a.shape} and {b.shape}")
    agree = heatmap_agreement(a, b)
    total = float(np.abs(a).sum())
    return {
        "l1": float(agree["l1"].mean()), "l1_per_step": agree["l1"].mean(axis=0).tolist(),
        "iou": float(agree["iou"].mean()), "peak_distance": float(agree["peak_distance"].mean()),
        "relative_l1": float(np.abs(a - b).sum() / total) if total > 0 else None,
        "max_abs": float(np.abs(a - b).max(initial=0.0)),
    }


def onchip_error(onchip: Any, spikes: Any, gamma: float = DEFAULT_GAMMA,
                 mode: str = "inclusive", scale: int = DEFAULT_SCALE) -> dict[str, Any]:
    """The accumulator's arithmetic error: on-chip maps (NCS units, ``(B, T, H, W)``) against
    the float SAM of the *same* spikes ``(B, T, C, H, W)``.

    Returns ``max_abs_error`` (NCS units), ``max_error_per_spike`` (the largest pixel error
    divided by the number of channels firing at that pixel and step; where none fires the
    error must be 0), ``bound`` (:func:`error_bound`) and ``within_bound``."""
    s = _as_spikes(spikes)
    ref = sam_map(s, gamma, mode)
    on = np.asarray(onchip, dtype=np.float64)
    if on.shape != ref.shape:
        raise NeurodeployError(f"on-chip maps {on.shape} do not match the spikes' maps "
                               f"{ref.shape}")
    err = np.abs(on - ref)
    fired = s.sum(axis=2)
    per_spike = np.where(fired > 0, err / np.maximum(fired, 1), np.where(err > 0, np.inf, 0))
    bound = error_bound(gamma, scale)
    worst = float(per_spike.max(initial=0.0))
    return {"max_abs_error": float(err.max(initial=0.0)), "max_error_per_spike": worst,
            "bound": bound, "within_bound": worst <= bound}


# ============================================================================================
# neurodeploy sam: float model, deployed model, Grad-CAMs, files
# ============================================================================================

#: Fixed files of a SAM output folder (plus ``sample_NNN.png`` figures).
OUTPUT_FILES = ("sam.npz", "sam.json", "report.json", "report.html")
_FIGURE = re.compile(r"sample_\d{3,}\.png")
#: Time steps kept in the report's preview figure.
PREVIEW_STEPS = 8


class _Owned:
    """The file names a SAM run writes (for :func:`neurodeploy.outdir.check_out_dir`)."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in OUTPUT_FILES or bool(_FIGURE.fullmatch(name)))

    def __iter__(self) -> Any:
        return iter(OUTPUT_FILES)

    def __len__(self) -> int:
        return len(OUTPUT_FILES)


@dataclass
class _Models:
    """What a SAM run works on."""

    source: Path  # the float model
    float_graph: Any  # its IR graph (float stage)
    net: Any  # the torch SpikingNet (zoo checkpoint) or None
    deployed: Any  # fixed-point graph, or None (compile in memory)
    compiled: Path | None  # compile folder given
    steps: int


def _load_models(model: str | Path | None) -> _Models:
    from .frontends.load import load_model

    path = Path(model) if model is not None else DEMO_MODEL
    deployed = compiled = None
    steps: int | None = None
    if path.is_dir() and (path / "compile.json").is_file():
        from .compile import read_compiled

        folder = read_compiled(path)
        compiled, deployed, steps = folder.path, folder.graph, folder.steps
        src = folder.doc.get("model")
        cj = path / "compile.json"
        if not isinstance(src, str) or not src or not folder.quantized_source:
            raise BadInputFileError(cj, "the compile has no float source model (SAM compares "
                                    "the deployed network with its float model)",
                                    hint="compile a float model (e.g. a checkpoint)")
        path = Path(src)
        if not path.exists():
            raise BadInputFileError(path, "source model of the compile not found",
                                    hint="run from the folder the compile ran in")
    elif not path.exists():
        raise BadInputFileError(path, "no such model", hint="give a checkpoint (model.pt or "
                                "its folder) or a compile folder")
    graph = load_model(path)
    if graph.stage != "float":
        raise UnsupportedError(
            f"{path} is a {graph.stage}-point model; SAM compares the deployed network with "
            "its float model", hint="give the float model or a compile folder made from one")
    if not _spiking_layers(graph):
        raise UnsupportedError(f"{path} has no spiking layers; SAM explains spiking networks",
                               hint="convert an ANN first (neurodeploy convert)")
    from .models.checkpoint import checkpoint_file

    net = None
    ckpt = checkpoint_file(path)
    if ckpt is not None:
        from .models.checkpoint import load_checkpoint

        net, config, _ = load_checkpoint(ckpt)
        if config["kind"] != "snn":
            net = None
    if steps is None:
        steps = int(graph.metadata.get("timesteps") or 0) or None
    if steps is None:
        raise NeurodeployError(f"{path} records no number of time steps",
                               hint="compile it with --timesteps T and give the folder")
    return _Models(path, graph, net, deployed, compiled, int(steps))


def _spiking_layers(graph: Any) -> list[str]:
    from .ir import IF, LIF, CubaLIF

    return [n for n in graph.topo_order if isinstance(graph.nodes[n], (LIF, IF, CubaLIF))]


def select_layers(graph: Any, layers: str | Sequence[str] | None) -> list[str]:
    """The conv spiking layers of a float graph to explain: ``layers`` (names, or one
    comma-separated string) or, when ``None``, every spiking layer with a ``(C, H, W)`` shape.

    Raises :class:`UnsupportedError` for a model without spiking (conv) layers or a non-conv
    layer, :class:`NeurodeployError` for unknown names (listing the available ones)."""
    spiking = _spiking_layers(graph)
    shapes = graph.shapes
    conv = [n for n in spiking if len(shapes[n]) == 3]
    if not spiking:
        raise UnsupportedError("the model has no spiking layers; SAM explains spiking networks",
                               hint="convert an ANN first (neurodeploy convert)")
    if not conv:
        raise UnsupportedError(f"the model has no spiking conv layers (spiking layers: "
                               f"{', '.join(spiking)}); SAM needs (channels, H, W) layers")
    if layers is None:
        return conv
    return _checked_layers(layers, spiking, conv, shapes, label="", kind="spiking",
                           needs="SAM")


def _module_paths(net: Any) -> dict[str, str]:
    """IR node name → module path of every LIF of a SpikingNet's body."""
    from .gradcam import _ir_name
    from .models.layers import LIF

    return {_ir_name(p): p for p, m in net.body.named_modules() if p and isinstance(m, LIF)}


def _float_run(m: _Models, layers: list[str], x: np.ndarray, trains: np.ndarray | None
               ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """``({layer: (B, T, C, H, W) spikes}, predictions or None)`` of the float model."""
    T = m.steps
    if m.net is not None:
        from .gradcam import replay_inputs

        paths = _module_paths(m.net)
        steps_in = None if trains is None else torch.as_tensor(trains, dtype=torch.float32)
        with torch.no_grad(), replay_inputs(m.net, steps_in):
            logits, rec = m.net.run(torch.as_tensor(x, dtype=torch.float32), T, record=True)
        spikes = {n: torch.stack(rec[paths[n]], dim=1).numpy() for n in layers}
        return spikes, logits.argmax(dim=1).numpy()
    from .backends import floatsim

    res = floatsim.run(m.float_graph, x if trains is None else trains, T,
                       record={n: ["s"] for n in layers})
    spikes = {n: np.moveaxis(res.traces[f"{n}.s"], -1, 1) for n in layers}
    return spikes, None


def _compile_in_memory(m: _Models, target: str, data: str, calib_samples: int,
                       log: Callable[[str], None]) -> tuple[Any, str]:
    from .compile import compile_in_memory

    log(f"compiling {m.source} for {target} in memory (calibration: {calib_samples} training "
        f"samples of {data})")
    _, deployed, warnings = compile_in_memory(m.float_graph, target, calib=data,
                                              calib_samples=calib_samples, steps=m.steps)
    from .ir import BNTT

    folded = any(isinstance(nd, BNTT) for nd in m.float_graph.nodes.values())
    note = (f"deployed model: {m.source} compiled in memory for {target} as neurodeploy "
            f"compile --calib {data} --calib-samples {calib_samples} does"
            + (" (BNTT folded into time-averaged batch norm)" if folded else "")
            + "".join(f"; {w}" for w in warnings if w.startswith("not legalized")))
    return deployed, note


def _deployed_run(graph: Any, layers: list[str], channels: dict[str, int], x: np.ndarray,
                  steps: int, *, gamma: float, mode: str, scale: int, onchip: bool,
                  accountant: Any = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray | None]:
    """hw_sim run of the deployed graph with the accumulator attached: ``(window spikes
    (B, T, C, H, W), on-chip maps (B, T, H, W) NCS units, predictions or None)``;
    ``accountant`` (an :class:`~neurodeploy.accounting.Accountant`) also counts the run."""
    from .inference import deployed_inputs, output_scale, run_deployed, window
    from .ir import QCubaLIF
    from .simulation import pipeline_depths

    problems = [n for n in layers if n not in graph.nodes or
                not isinstance(graph.nodes[n], QCubaLIF)
                or len(graph.shapes[n]) != 3 or graph.shapes[n][0] < channels[n]]
    if problems:
        raise NeurodeployError(f"the deployed network lacks the layer(s) {', '.join(problems)} "
                               "of the float model (or they changed shape)",
                               hint="re-compile the model")
    depths = pipeline_depths(graph)
    inputs = deployed_inputs(graph, x, steps)
    sl = {n: slice(0, channels[n]) for n in layers}
    acc = SamAccumulator({n: depths[n] for n in layers}, gamma=gamma, mode=mode, scale=scale,
                         channels=sl) if onchip else None
    record: dict[str, list[str]] = {n: ["s"] for n in layers}
    outs = [o for o in graph.outputs if isinstance(graph.nodes[o], QCubaLIF)]
    out = outs[0] if len(outs) == 1 and output_scale(graph, outs[0]) is not None else None
    if out is not None:
        record.setdefault(out, []).append("v")
    observer = _Observers(acc, accountant) if accountant is not None else acc
    res = run_deployed(graph, inputs, record=record, observer=observer)
    spikes = {n: np.moveaxis(window(graph, n, res.traces[f"{n}.s"], steps)[:, sl[n]], -1, 1)
              for n in layers}
    maps = {}
    if acc is not None:
        raw = acc.maps_ncs()
        maps = {n: raw[n][:, depths[n]:depths[n] + steps] for n in layers}
    pred = None
    if out is not None:
        v = window(graph, out, res.traces[f"{out}.v"], steps)[..., -1]
        pred = v.reshape(len(v), -1).argmax(axis=1)
    return spikes, maps, pred


def _accumulator_mapping(m: _Models, graph: Any, names: list[str], channels: dict[str, int],
                         gamma: float, scale: int, target: str) -> tuple[Any, Any, str | None]:
    """``(mapping with the accumulator on ``names``, its target, None)`` for the deployed
    graph (on the compile folder's target, else ``target``), or ``(None, None, a note)`` when
    the target cannot run it or it does not fit."""
    from .errors import ResourceError
    from .mapping import map_graph
    from .targets import load_target

    if m.compiled is not None:
        from .compile import read_compiled

        tgt = read_compiled(m.compiled).target()
    else:
        tgt = load_target(target)
    try:
        check_sam_target(tgt)
        spec = SamSpec(tuple(names), gamma, scale, channels=channels)
        return map_graph(graph, tgt, sam=spec), tgt, None
    except (UnsupportedError, ResourceError) as err:
        return None, None, f"no on-chip accumulator cost: {err}"


def _ann_twin(ann: str | Path | None, source: Path, in_shape: tuple[int, ...]
              ) -> tuple[Any, Path | None, str | None]:
    """``(ANN model or None, its path, a note when none is used)``: ``ann``, else the
    trained twin ``<model folder>_ann`` beside the SNN."""
    from .models.checkpoint import checkpoint_file, load_checkpoint, twin_checkpoint

    if ann is not None:
        path = Path(ann)
        ckpt = checkpoint_file(path)
        if ckpt is None:
            raise BadInputFileError(path, "no ANN checkpoint (model.pt or its folder)")
    else:
        ckpt = twin_checkpoint(source)
        if ckpt is None:
            folder = source if source.is_dir() else source.parent
            path = folder.with_name(folder.name + "_ann")
            return None, None, (f"no ANN twin found ({path} has no model.pt; give ann=...): "
                                "Grad-CAM of the ANN and the localization error are skipped")
        path = ckpt.parent
    net, config, _ = load_checkpoint(ckpt)
    if config["kind"] != "ann":
        raise BadInputFileError(ckpt, "is not an ANN (kind 'ann') checkpoint")
    if tuple(config["in_shape"]) != tuple(in_shape):
        raise BadInputFileError(ckpt, f"takes inputs of shape {tuple(config['in_shape'])}, the "
                                f"SNN {tuple(in_shape)}")
    return net, path, None


def _mean(values: Any) -> float | None:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()) if arr.size else None


def _display_image(x: np.ndarray) -> np.ndarray:
    """A sample ``(C, H, W)`` as a displayable ``(H, W)`` or ``(H, W, 3)`` array in [0, 1]."""
    img = np.asarray(x, dtype=np.float64)
    img = img.mean(axis=0) if img.shape[0] != 3 else np.moveaxis(img, 0, -1)
    lo, hi = img.min(), img.max()
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def _shown_steps(T: int, most: int = MAX_FIGURE_STEPS) -> list[int]:
    step = max(1, math.ceil(T / most))
    return list(range(0, T, step))


def _overlay(base: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """``base`` (H, W) or (H, W, 3) in [0, 1] with the heatmap ``heat`` (H, W, in [0, 1]) in
    the jet colormap blended over it at alpha 0.5 (the official display); (H, W, 3)."""
    import matplotlib

    rgb = np.repeat(base[..., None], 3, axis=-1) if base.ndim == 2 else base
    color = matplotlib.colormaps["jet"](np.clip(heat, 0.0, 1.0))[..., :3]
    return 0.5 * rgb + 0.5 * color


def _sample_figure(path: Path, image: np.ndarray, rows: list[tuple[str, np.ndarray]],
                   steps: list[int], title: str) -> None:
    """A PNG: the input first, then one row per ``(label, maps (T, h, w) or (h, w))`` of
    heatmaps (normalized, upsampled to the image, jet at alpha 0.5 over it), one column per
    shown time step. Drawn as one mosaic image (fast for many samples)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    disp = _display_image(image)
    h, w = disp.shape[:2]
    k = max(1, math.ceil(64 / max(h, w)))  # small inputs are enlarged (nearest)
    disp = np.repeat(np.repeat(disp, k, axis=0), k, axis=1)
    ch, cw, pad = h * k, w * k, 2
    cols = max(len(steps), 1)
    nrows = len(rows) + 1
    mosaic = np.ones((nrows * (ch + pad) - pad, cols * (cw + pad) - pad, 3))

    def put(r: int, c: int, cell: np.ndarray) -> None:
        y, x = r * (ch + pad), c * (cw + pad)
        mosaic[y:y + ch, x:x + cw] = cell

    put(0, 0, np.repeat(disp[..., None], 3, axis=-1) if disp.ndim == 2 else disp)
    for r, (_, maps) in enumerate(rows, start=1):
        stack = maps[None] if maps.ndim == 2 else maps[steps]
        heat = normalize(upsample(stack, (ch, cw)))
        for c, hm in enumerate(heat):
            put(r, c, _overlay(disp, hm))
    width, height = 1.7 + 1.1 * cols, 0.9 + 1.1 * nrows
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((1.5 / width, 0.1 / height, 1.1 * cols / width, 1.1 * nrows / height))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([c * (cw + pad) + cw / 2 for c in range(len(steps))])
    ax.set_xticklabels([f"t={t}" for t in steps], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks([r * (ch + pad) + ch / 2 for r in range(nrows)])
    ax.set_yticklabels(["input"] + [label for label, _ in rows], fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.suptitle(title, fontsize=9, y=1.0 - 0.08 / height, va="top")
    fig.savefig(path, format="png")


def _preview(image: np.ndarray, maps: Mapping[str, np.ndarray], T: int) -> dict[str, Any]:
    """Sample 0 for the report section: the input and the normalized float SAM per layer at
    up to :data:`PREVIEW_STEPS` steps (3 decimals)."""
    steps = _shown_steps(T, PREVIEW_STEPS)
    disp = _display_image(image)
    if disp.ndim == 3:
        disp = disp.mean(axis=-1)
    return {"steps": steps, "input": np.round(disp, 3),
            "maps": {n: np.round(normalize(m[0][steps]), 3) for n, m in maps.items()}}


def run_sam(model: str | Path | None = None, data: str | None = None, samples: int = 4,
            layers: str | Sequence[str] | None = None, gamma: float = DEFAULT_GAMMA,
            out_dir: str | Path | None = None, *, mode: str = "inclusive",
            target: str = "loihi2", ann: str | Path | None = None,
            scale: int = DEFAULT_SCALE, alpha_mode: str = "time_sum",
            calib_samples: int = 64, figures: int | None = 8, overwrite: bool = False,
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Spike Activation Maps of a model's conv layers, float and on-chip, with the Grad-CAM
    comparisons, written to ``out_dir`` (``neurodeploy sam``).

    Args:
        model: a zoo SNN checkpoint (``model.pt`` or its folder), another float model file, or
            a compile folder (its float source model is read from ``compile.json``). Default:
            the shipped demo checkpoint (:data:`DEMO_MODEL`).
        data: dataset spec (test split; :func:`neurodeploy.models.data.load_dataset`); default:
            the dataset the model was trained on, when recorded.
        samples: test samples (a seeded subset, as ``verify`` takes).
        layers: conv spiking layers (IR names, e.g. ``lif2``; a list or a comma-separated
            string); default all.
        gamma: SAM kernel steepness per step (> 0).
        out_dir: output folder, written atomically (new, empty, or a previous SAM run with
            ``overwrite``).
        mode: ``"inclusive"``, ``"exclusive"`` or ``"official"`` (float only: the on-chip
            maps are then skipped).
        target: target of the in-memory compile of a float model (a compile folder keeps its
            own).
        ann: the ANN for Grad-CAM (checkpoint or folder); default the trained twin
            ``<model folder>_ann``; without one, the Grad-CAM comparisons are skipped.
        scale: on-chip trace increment ``A`` per spike.
        alpha_mode: SNN Grad-CAM channel weights, ``"time_sum"`` (paper) or ``"per_t"``.
        calib_samples: training samples calibrating the in-memory compile.
        figures: samples drawn as PNG figures (the first ones; ``None``: all).
        overwrite: replace a previous SAM output folder.
        log: called with progress messages.

    Writes ``sam.npz`` (``input`` (N, C, H, W), ``labels`` (N,), and per layer: ``<layer>``
    the float model's SAM (N, T, h, w, NCS units), ``<layer>.onchip`` the accumulator's maps on
    the deployed model (NCS units), ``<layer>.deployed`` the float SAM of the deployed model's
    spikes (the accumulator's exact reference), ``<layer>.gradcam_snn`` (N, T, h, w) and
    ``<layer>.gradcam_ann`` (N, h, w) when available), ``sample_NNN.png`` (input, then layers ×
    time steps overlaid on it), ``sam.json`` (the returned document), ``report.json`` and
    ``report.html`` (with a SAM section).

    Returns the JSON-able SAM document (``format``, ``version``, ``model``, ``deployed``,
    ``data``, ``samples``, ``labels``, ``timesteps``, ``gamma``, ``mode``, ``scale``,
    ``decay``, ``bound``, ``alpha_mode``, ``ann``, ``accuracy`` {float, deployed},
    ``layers`` (one row per layer: ``layer``, ``shape``, ``depth``, ``onchip`` (see
    :func:`onchip_error`), ``drift`` (see :func:`drift`), ``localization`` {sam, sam_onchip,
    snn_gradcam: {error, per_sample, best_t, agreement}}, ``variance``), ``cost`` (per layer,
    :func:`accumulator_cost`), ``accumulator`` (the accumulator mapped on the deployed
    network's target and costed on this run: :func:`accumulator_summary`; None for the
    official mode or a target that cannot run it), ``files``, ``notes``, ``preview``,
    ``seconds``).

    Raises:
        NeurodeployError: bad arguments (γ ≤ 0, unknown layers or mode, …), data that does
            not fit the model; :class:`UnsupportedError` for models without spiking (conv)
            layers; :class:`BadInputFileError` for unreadable model files or compile folders.
    """
    from .gradcam import ALPHA_MODES, ann_layer_name, gradcam_ann, gradcam_snn
    from .inference import load_eval_data, trained_on

    say = log or (lambda message: None)
    t_start = time.perf_counter()
    g = check_gamma(gamma)
    mode = check_mode(mode)
    params = SamFixedPoint(g, scale)
    if alpha_mode not in ALPHA_MODES:
        raise NeurodeployError(f"alpha_mode {alpha_mode!r} is not one of {', '.join(ALPHA_MODES)}")
    bad_figures = figures is not None and (isinstance(figures, bool) or not isinstance(
        figures, (int, np.integer)) or figures < 0)
    if bad_figures:
        raise NeurodeployError(f"figures must be an integer >= 0, got {figures!r}")
    for name, value in (("samples", samples), ("calib_samples", calib_samples)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise NeurodeployError(f"{name} must be a positive integer, got {value!r}")
    if out_dir is None:
        raise NeurodeployError("give an output folder (--out DIR)")
    out = check_out_dir(out_dir, _Owned(), overwrite=overwrite, what="SAM run")
    m = _load_models(model)
    names = select_layers(m.float_graph, layers)
    shapes = m.float_graph.shapes
    in_shape = tuple(shapes[m.float_graph.inputs[0]])
    T = m.steps
    notes: list[str] = []
    if data is None:
        data = trained_on(m.source)
        if data is None:
            raise NeurodeployError("no data given and the model records no training dataset",
                                   hint="give data= (--data DATA), e.g. digits or mnist5k")
    say(f"loading {data} (test split, {samples} samples)")
    x, y, data_name = load_eval_data(str(data), int(samples), in_shape)
    if len(in_shape) != 3:
        raise UnsupportedError(f"SAM needs image inputs (C, H, W); the model takes {in_shape}")
    n = len(x)
    encoding = m.float_graph.metadata.get("encoder", "direct")
    trains = None
    if encoding == "poisson":
        from .passes.convert import poisson_spikes

        rescale = float(m.float_graph.metadata.get("encoder_rescale", 1.0))
        trains = poisson_spikes(torch.as_tensor(x), T, seed=0, rescale=rescale).numpy()
        notes.append("Poisson input: spike trains drawn once (seed 0) and fed to both models")

    # ---------------------------------------------------------------- float model
    say(f"float model: {m.source} ({T} steps)")
    f_spikes, f_pred = _float_run(m, names, x, trains)
    f_maps = {nm: sam_map(f_spikes[nm], g, mode) for nm in names}

    # ---------------------------------------------------------------- deployed model
    if m.deployed is None:
        deployed, note = _compile_in_memory(m, target, str(data), int(calib_samples), say)
        deployed_desc = f"{m.source} compiled in memory for {target}"
        notes.append(note)
    else:
        deployed = m.deployed
        deployed_desc = str(m.compiled)
    onchip = mode in ONCHIP_MODES
    if not onchip:
        notes.append("mode 'official' is float only (its silent-step term needs the absolute "
                     "time d^t): no on-chip maps; drift is measured on the float SAM of the "
                     "deployed model's spikes")
    say("deployed model on hw_sim with the SAM accumulator")
    channels = {nm: int(shapes[nm][0]) for nm in names}
    sam_mapping = acc_target = accountant = None
    if onchip:
        sam_mapping, acc_target, note = _accumulator_mapping(
            m, deployed, names, channels, g, params.scale, target)
        if note:
            notes.append(note)
        if sam_mapping is not None:
            from .accounting import Accountant

            accountant = Accountant(deployed, sam_mapping)
    d_spikes, on_maps, d_pred = _deployed_run(deployed, names, channels, x, T, gamma=g,
                                              mode=mode if onchip else "inclusive",
                                              scale=params.scale, onchip=onchip,
                                              accountant=accountant)
    accumulator = None
    if accountant is not None:
        from .cost import estimate
        from .inference import depth_of_outputs

        activity = accountant.result()
        report_cost = estimate(activity, sam_mapping, acc_target,
                               steps=T + depth_of_outputs(deployed), samples=n, drained=True)
        accumulator = accumulator_summary(sam_mapping.to_json(),  # type: ignore[union-attr]
                                          activity.to_dict(per_step=False),
                                          report_cost.to_dict())
    from .simulation import pipeline_depths

    depths = pipeline_depths(deployed)
    d_maps = {nm: sam_map(d_spikes[nm], g, mode) for nm in names}

    # ---------------------------------------------------------------- Grad-CAMs
    ann_net, ann_path, ann_note = _ann_twin(ann, m.source, in_shape)
    if ann_note:
        notes.append(ann_note)
    paths = _module_paths(m.net) if m.net is not None else {}
    if m.net is None:
        notes.append("the float model is not a zoo SNN checkpoint: no SNN Grad-CAM")
    cam_ann: dict[str, np.ndarray] = {}
    cam_snn: dict[str, np.ndarray] = {}
    steps_in = None if trains is None else torch.as_tensor(trains, dtype=torch.float32)
    for nm in names:
        module = paths.get(nm, nm)
        if ann_net is not None:
            say(f"Grad-CAM of the ANN at {ann_layer_name(module)}")
            try:
                cam_ann[nm] = gradcam_ann(ann_net, x, ann_layer_name(module), y)
            except NeurodeployError as err:
                notes.append(f"{nm}: no ANN Grad-CAM ({err})")
        if m.net is not None:
            say(f"SNN Grad-CAM at {nm} ({alpha_mode})")
            cam_snn[nm] = gradcam_snn(m.net, x, module, y, alpha_mode=alpha_mode,
                                      timesteps=T, steps_input=steps_in)

    # ---------------------------------------------------------------- metrics
    size = in_shape[1:]
    rows = []
    for nm in names:
        row: dict[str, Any] = {"layer": nm, "shape": list(shapes[nm]), "depth": depths[nm]}
        if onchip:
            row["onchip"] = onchip_error(on_maps[nm], d_spikes[nm], g, mode, params.scale)
        else:
            row["onchip"] = None
        row["drift"] = drift(f_maps[nm], on_maps[nm] if onchip else d_maps[nm])
        row["drift"]["against"] = "onchip" if onchip else "deployed"
        loc: dict[str, Any] = {}
        if nm in cam_ann:
            candidates = {"sam": f_maps[nm], "sam_onchip": on_maps.get(nm),
                          "snn_gradcam": cam_snn.get(nm)}
            for key, maps in candidates.items():
                if maps is None:
                    continue
                le = localization_error(maps, cam_ann[nm], size=size)
                agree = heatmap_agreement(maps.mean(axis=1), cam_ann[nm], size=size)
                loc[key] = {"error": _mean(le["error"]), "per_sample": le["error"],
                            "best_t": le["best_t"],
                            "agreement": {k: _mean(v) for k, v in agree.items()}}
        row["localization"] = loc or None
        var = {"sam": _mean(heatmap_variance(f_maps[nm]))}
        if nm in cam_snn:
            var["snn_gradcam"] = _mean(heatmap_variance(cam_snn[nm]))
        if nm in cam_ann:
            var["ann_gradcam"] = _mean(heatmap_variance(cam_ann[nm]))
        row["variance"] = var
        rows.append(row)
    accuracy = {"float": None if f_pred is None else float(np.mean(f_pred == y)),
                "deployed": None if d_pred is None else float(np.mean(d_pred == y))}

    # ---------------------------------------------------------------- files
    arrays: dict[str, np.ndarray] = {"input": x.astype(np.float32), "labels": y}
    for nm in names:
        arrays[nm] = f_maps[nm]
        arrays[f"{nm}.deployed"] = d_maps[nm]
        if onchip:
            arrays[f"{nm}.onchip"] = on_maps[nm]
        if nm in cam_snn:
            arrays[f"{nm}.gradcam_snn"] = cam_snn[nm]
        if nm in cam_ann:
            arrays[f"{nm}.gradcam_ann"] = cam_ann[nm]
    drawn = n if figures is None else min(n, int(figures))
    pngs = [f"sample_{i:03d}.png" for i in range(drawn)]
    files = ["sam.npz", *pngs, "sam.json", "report.json", "report.html"]
    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "model": str(m.source), "deployed": deployed_desc,
        "target": deployed.metadata.get("target", target), "data": data_name,
        "data_spec": str(data), "split": "test", "samples": n, "labels": y,
        "timesteps": T, "gamma": g, "mode": mode, "scale": params.scale,
        "decay": params.delta, "bound": params.bound, "alpha_mode": alpha_mode,
        "ann": None if ann_path is None else str(ann_path), "accuracy": accuracy,
        "layers": rows,
        "cost": {nm: accumulator_cost(shapes[nm], gamma=g, scale=params.scale)
                 for nm in names},
        "accumulator": accumulator,
        "files": files, "notes": notes,
        "preview": _preview(x[0], f_maps, T),
    }
    shown = _shown_steps(T)

    def write(tmp: Path) -> None:
        np.savez_compressed(tmp / "sam.npz", **arrays)
        for i in range(drawn):
            fig_rows: list[tuple[str, np.ndarray]] = []
            for nm in names:
                if nm in cam_ann:
                    fig_rows.append((f"ANN Grad-CAM\n{nm}", cam_ann[nm][i]))
                fig_rows.append((f"SAM {nm}", f_maps[nm][i]))
                if onchip:
                    fig_rows.append((f"SAM {nm}\non-chip", on_maps[nm][i]))
                if nm in cam_snn:
                    fig_rows.append((f"SNN Grad-CAM\n{nm}", cam_snn[nm][i]))
            _sample_figure(tmp / pngs[i], x[i], fig_rows, shown,
                           f"sample {i} (label {int(y[i])}), γ={g:g}, {mode}")
        doc["seconds"] = round(time.perf_counter() - t_start, 3)
        final = jsonable(doc)
        (tmp / "sam.json").write_text(json.dumps(final, indent=1) + "\n", encoding="utf-8")
        from .report import make_report, write_report

        register_report_section()
        report = make_report(
            model=str(m.source), target=str(final["target"]), steps=T, samples=n,
            accuracy=[{"stage": "float", "accuracy": accuracy["float"], "samples": n},
                      {"stage": "hw_sim", "accuracy": accuracy["deployed"], "samples": n}],
            assumptions=[f"SAM γ={g:g}, mode {mode}; on-chip trace: 12-bit decay "
                         f"{params.delta}, increment {params.scale} per spike",
                         "localization error: pixel-wise binary cross entropy of the "
                         "normalized SAM against the ANN's Grad-CAM, minimum over time "
                         "steps (our reading of the SAM paper)"],
            sam=final)
        write_report(report, tmp)

    say(f"writing {out}")
    write_dir_atomic(out, write)
    return jsonable(doc)


# ============================================================================================
# Report section
# ============================================================================================


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}"
    return str(value)


def render_section(doc: Mapping[str, Any]) -> str:
    """The ``report.html`` section of a report document's ``sam`` entry (what
    :func:`run_sam` returns): parameters, a table per layer (on-chip error against the bound,
    drift, localization errors, variance) and a preview of the first sample."""
    from .report import _e, _figure, _figure_html, _nodata, _table

    sam = doc.get("sam")
    if not isinstance(sam, Mapping):
        return _nodata("No spike activation maps in this report (neurodeploy sam).")
    out = ['<dl class="facts">']
    for key, label in (("gamma", "γ"), ("mode", "mode"), ("decay", "12-bit decay"),
                       ("scale", "trace increment A"), ("bound", "error bound per spike"),
                       ("samples", "samples"), ("ann", "ANN")):
        if key in sam:
            out.append(f"<div><dt>{_e(label)}</dt><dd>{_e(_fmt(sam.get(key)))}</dd></div>")
    out.append("</dl>")
    if not sam.get("layers") and not isinstance(sam.get("accumulator"), Mapping):
        out.append(_nodata("No SAM layers in this report."))
    head = ("layer", "shape", "depth", "on-chip error / spike", "within bound", "drift L1",
            "loc. err SAM", "loc. err on-chip", "loc. err SNN Grad-CAM", "variance SAM",
            "variance SNN Grad-CAM")
    table_rows = []
    for row in sam.get("layers") or []:
        onc = row.get("onchip") or {}
        loc = row.get("localization") or {}
        var = row.get("variance") or {}
        table_rows.append((
            row.get("layer"), "x".join(str(v) for v in row.get("shape", [])), row.get("depth"),
            _fmt(onc.get("max_error_per_spike")), _fmt(onc.get("within_bound")),
            _fmt((row.get("drift") or {}).get("l1")),
            _fmt((loc.get("sam") or {}).get("error")),
            _fmt((loc.get("sam_onchip") or {}).get("error")),
            _fmt((loc.get("snn_gradcam") or {}).get("error")),
            _fmt(var.get("sam")), _fmt(var.get("snn_gradcam"))))
    if table_rows:
        out.append(_table(head, table_rows, numeric_from=2))
    acc = sam.get("accumulator")
    if isinstance(acc, Mapping):
        out.append(render_accumulator(acc))
    preview = sam.get("preview")
    if isinstance(preview, Mapping) and preview.get("maps"):
        try:
            img = np.asarray(preview["input"], dtype=np.float64)
            steps = list(preview["steps"])
            maps = {k: np.asarray(v, dtype=np.float64) for k, v in preview["maps"].items()}
            fig = _figure(1.1 * (len(steps) + 1), 1.1 * len(maps) + 0.3)
            grid = fig.add_gridspec(len(maps), len(steps) + 1)
            for r, (name, stack) in enumerate(maps.items()):
                ax = fig.add_subplot(grid[r, 0])
                ax.imshow(img, cmap="gray")
                ax.set_title(name, fontsize=7)
                ax.axis("off")
                up = upsample(stack, img.shape)
                for c, t in enumerate(steps):
                    ax = fig.add_subplot(grid[r, c + 1])
                    ax.imshow(img, cmap="gray")
                    ax.imshow(up[c], cmap="jet", alpha=0.5, vmin=0, vmax=1)
                    ax.axis("off")
                    if r == 0:
                        ax.set_title(f"t={t}", fontsize=7)
            out.append(_figure_html(fig, "sam", "Float SAM of the first sample per layer and "
                                                 "time step (normalized, over the input)."))
        except (ValueError, TypeError, KeyError):
            out.append(_nodata("The SAM preview could not be drawn."))
    notes = sam.get("notes") or []
    if notes:
        out.append("<ul>" + "".join(f"<li>{_e(x)}</li>" for x in notes) + "</ul>")
    return "".join(out)


def render_accumulator(acc: Mapping[str, Any]) -> str:
    """HTML table of the on-chip accumulator's cost (:func:`accumulator_summary`)."""
    from .report import _e, _table, si

    rows = []
    for name, r in (acc.get("layers") or {}).items():
        share = (r.get("energy_j") / acc["energy_per_inference_j"]
                 if r.get("energy_j") is not None and acc.get("energy_per_inference_j")
                 else None)
        rows.append((name, _fmt(r.get("compartments")), _fmt(r.get("cores")),
                     _fmt(r.get("extra_cores")), _fmt(r.get("synaptic_memory_bits")),
                     _fmt(r.get("spikes")), _fmt(r.get("synops")),
                     si(r.get("energy_j"), "J"),
                     "—" if share is None else f"{100 * share:.1f} %"))
    head = ("layer", "compartments", "cores", "extra cores", "memory bits",
            "layer spikes / inference", "SAM synops / inference", "SAM energy / inference",
            "share of total")
    text = (f"<p>On-chip SAM accumulator on {_e(acc.get('target'))}: "
            f"{_fmt(acc.get('extra_cores'))} extra core(s) over "
            f"{_fmt(acc.get('cores_used_without_sam'))}; {_e(acc.get('placement') or '')}.")
    if acc.get("sam_energy_per_inference_j") is not None:
        text += (f" It costs {si(acc['sam_energy_per_inference_j'], 'J')} of "
                 f"{si(acc.get('energy_per_inference_j'), 'J')} per inference (preset "
                 f"{_e(acc.get('preset'))}; dynamic energy; the step time it adds is in the "
                 "static part).")
    return text + "</p>" + _table(head, rows, numeric_from=1)


def register_report_section() -> None:
    """Add the SAM section to ``report.html`` (:func:`neurodeploy.report.register_section`;
    idempotent)."""
    from .report import Section, register_section

    register_section(Section("sam", "Spike Activation Maps", render_section, key="sam"))
