"""Quantization-aware training layers for Loihi's CUBA-LIF whose forward pass *is* the fixed-point
arithmetic that :mod:`neurodeploy.hw_sim` (and Lava's bit-accurate ``fixed_pt`` models) run, the
network that stacks them (:class:`LoihiNet`, :func:`build_loihi_model`) and its export to
fixed-point IR (:func:`to_graph`).

A layer is one synapse (dense or conv) plus a group of CUBA-LIF neurons, exported as
``QDense``/``QConv2d`` → ``QCubaLIF``. Per step, with ``M = 2**23``, ``rtz`` = truncation toward
zero and ``s_in`` the binary input events of the *previous* step (Lava's one-step synaptic
delay; zero at the first step)::

    a = shift(sum_j m[i, j] * s_in[j], weight_exp)   # floor for weight_exp < 0; conv: wrap24
    u = wrap(rtz(u * (4096 - current_decay) / 4096) + 64 * a)
    v = clip(rtz(v * (4096 - voltage_decay) / 4096) + u + 64 * bias, -(M-1), M-1)
    s = v > 64 * threshold                           # strict, exact
    v = 0 where s   (reset="zero", Lava's LIF)   or   v -= 64 * threshold  (reset="subtract")

``wrap`` is Lava's single conditional wrap (above ``M``: ``-2M``; at or below ``-M``: ``+2M``).
Layers whose synaptic input can reach ``2**24`` also emulate Lava's int32 overflow exactly as
hw_sim does.

Units. A float shadow weight ``w`` is in *activation units*: the value the synapse adds to ``a``
for one input spike. It is quantized in every forward pass to ``w ≈ m * 2**weight_exp`` with an
integer mantissa ``m`` that Lava's weight truncation leaves unchanged (a multiple of
``2**(9 - weight_bits)`` in ``[-256, 255]``: even values for 8-bit mixed sign). The threshold
``threshold`` (the ``vth`` mantissa) is in the same units (the neuron fires when ``v``
exceeds ``64 * threshold``); so is the optional bias (exported with ``bias_exp = 6``).

Exactness. Neuron state and synaptic sums are float64 tensors holding integers: every quantized
weight is a multiple of ``2**weight_exp``, every partial sum is bounded far below ``2**53`` times
that, decays multiply by ``k / 4096`` (exact) and truncate, so no value is ever rounded; float32
could not hold the 24-bit products exactly. The result equals hw_sim bit for bit.

Gradients. Every integer operation (weight rounding, the exponent's floor, ``rtz``, the wraps
and the saturation) is straight-through: the backward pass is that of the real-valued CUBA
dynamics ``u' = λ_u u + 64a``, ``v' = λ_v v + u' + 64b``. Spikes use
:func:`neurodeploy.models.layers.spike` on ``(v - 64·threshold) / (64·threshold)``, whose forward
value is exactly ``v > 64·threshold``. The reset is detached.

Weight exponent rule (:func:`choose_weight_exp`): the smallest ``e`` with
``max(w) <= (256 - step) * 2**e`` and ``-min(w) <= 256 * 2**e``, clamped to
``[weight_exp_min, 7]``. An all-zero (or all-tiny) layer gets the floor ``weight_exp_min``
instead of an inflated exponent (lava#859, lava-dl#304, lava#501), mantissas never leave the
8-bit range, and the exponent never leaves Lava's ``[-8, 7]``. The floor defaults to -8 for
dense layers and 0 for conv layers (Lava's fixed_pt ``Conv`` has no right shift). Weights that
do not fit even at exponent 7 (or at a fixed ``weight_exp``) saturate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.errors import NeurodeployError, QuantizationError, UnsupportedError
from neurodeploy.ir import Flatten, Graph, Input, QConv2d, QCubaLIF, QDense
from neurodeploy.ir.nodes import VTH_MANT_MAX
from neurodeploy.simulation import RunResult

from .layers import SURROGATES, spike

M24 = 1 << 23  # Lava's max_uv_val
DECAY_UNITY = 4096
#: Lava's weight-exponent range.
WEIGHT_EXP_RANGE = (-8, 7)
#: The bias goes to v as ``bias_mant << 6`` (netx's convention): bias mantissas are in
#: activation units, like weights and the threshold.
BIAS_EXP = 6
BIAS_MANT_RANGE = (-(1 << 12), (1 << 12) - 1)  # 13-bit signed
INT32_SAFE_ACTIVATION = 1 << 24  # as hw_sim: below this, a << 6 plus u never leaves int32
RESETS = ("zero", "subtract")
MODELS = ("loihi-mlp", "loihi-conv")


# ------------------------------------------------------------------------------------------
# Integer helpers (exact on integer-valued float64, straight-through in backward)
# ------------------------------------------------------------------------------------------


def _ste(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, identity gradient to ``x`` in the backward pass."""
    return x + (value - x).detach()


def _wrap32(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement wrap into int32's range (numpy int32 overflow), gradient 1."""
    return torch.remainder(x + 2.0**31, 2.0**32) - 2.0**31


def _wrap24(x: torch.Tensor) -> torch.Tensor:
    """Lava's ``signed_clamp(x, 24)`` (a modular wrap into ``[-2**23, 2**23)``), gradient 1."""
    return torch.remainder(x + M24, float(1 << 24)) - M24


def _decay(x: torch.Tensor, keep: int) -> torch.Tensor:
    """``rtz(x * keep / 4096)`` with a straight-through truncation (``keep`` in [0, 4096])."""
    if keep == DECAY_UNITY:
        return x
    if keep == 0:
        return torch.zeros_like(x)
    scaled = x * (keep / DECAY_UNITY)  # exact: a 24..32-bit integer times a 12-bit fraction
    return _ste(scaled, torch.trunc(scaled.detach()))


def weight_step(num_weight_bits: int) -> int:
    """Spacing of the mantissas Lava keeps for mixed-sign weights of ``num_weight_bits`` bits:
    Lava zeroes the low ``8 - num_weight_bits + 1`` bits (8 bits: even mantissas)."""
    return 1 << (9 - num_weight_bits)


def choose_weight_exp(weight: torch.Tensor, num_weight_bits: int = 8, *,
                      exp_min: int = WEIGHT_EXP_RANGE[0],
                      exp_max: int = WEIGHT_EXP_RANGE[1]) -> int:
    """Per-layer weight exponent for float weights ``weight`` (activation units, any shape).

    The smallest integer ``e`` in ``[exp_min, exp_max]`` with ``max(w) <= (256 - step)·2**e``
    and ``-min(w) <= 256·2**e`` (``step = weight_step(num_weight_bits)``), so rounding to the
    mantissa grid never saturates when it can be avoided. All-zero or all-tiny weights get
    ``exp_min`` (no exponent inflation); weights too large for ``exp_max`` get ``exp_max`` and
    saturate when quantized.

    Raises:
        QuantizationError: the weights hold NaN or infinite values, or the range is invalid.
    """
    _check_exp_range(exp_min, exp_max)
    w = weight.detach()
    if w.numel() == 0:
        return exp_min
    hi, lo = float(w.max()), float(w.min())
    if not (math.isfinite(hi) and math.isfinite(lo)):
        raise QuantizationError(
            "weights hold NaN or infinite values; lower the learning rate or check the data"
        )
    m_pos, m_neg = 256 - weight_step(num_weight_bits), 256

    def fits(e: int) -> bool:
        return hi <= math.ldexp(m_pos, e) and -lo <= math.ldexp(m_neg, e)

    e = exp_min
    while e < exp_max and not fits(e):
        e += 1
    return e


def quantize_weight(weight: torch.Tensor, weight_exp: int, num_weight_bits: int = 8
                    ) -> torch.Tensor:
    """Integer mantissas (float64 tensor of integers, same shape) of ``weight`` at
    ``weight_exp``: ``w / 2**weight_exp`` rounded half-to-even to the grid of
    :func:`weight_step` and saturated to ``[-256, 256 - step]``. Lava's weight truncation
    (``hw_sim.lava_weights``) leaves these mantissas unchanged. No gradient."""
    step = weight_step(num_weight_bits)
    scaled = weight.detach().to(torch.float64) * math.ldexp(1.0, -weight_exp) / step
    return (torch.round(scaled) * step).clamp_(-256, 256 - step)


def _check_exp_range(exp_min: int, exp_max: int) -> None:
    lo, hi = WEIGHT_EXP_RANGE
    if not (isinstance(exp_min, (int, np.integer)) and isinstance(exp_max, (int, np.integer))
            and lo <= exp_min <= exp_max <= hi):
        raise QuantizationError(
            f"weight exponent range [{exp_min}, {exp_max}] must be integers within Lava's "
            f"[{lo}, {hi}]"
        )


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise QuantizationError(f"{name}={value!r} must be an integer in [{lo}, {hi}]")
    return int(value)


# ------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------


class LoihiLayer(nn.Module):
    """One synapse layer plus a CUBA-LIF neuron group, stepped one time step per call.

    Subclasses define the synapse (:class:`LoihiDense`, :class:`LoihiConv2d`). The state
    (``u``, ``v`` and the current ``pending`` for the next step) lives on the module between
    calls until :meth:`reset_state`; the quantized weights are computed once per run (at the
    first step after a reset), so gradients reach the float shadow weights through all steps.

    Args (shared, keyword-only):
        threshold: ``vth`` mantissa in [0, 2**17], activation units (fires when ``v > 64·vth``).
        current_decay, voltage_decay: 12-bit decays in [0, 4096] (``QCubaLIF`` convention:
            the state is multiplied by ``(4096 - decay) / 4096`` and truncated toward zero).
        weight_bits: mantissa bits in [2, 8] (mixed sign).
        weight_exp: fixed weight exponent in [-8, 7], or ``None`` to choose it from the
            weights at every forward pass (:func:`choose_weight_exp`).
        weight_exp_min: floor of the automatic exponent (Lava range).
        bias: learn a per-neuron bias (13-bit mantissa, activation units, ``bias_exp = 6``).
        reset: ``"zero"`` (Lava's LIF) or ``"subtract"`` (a neurodeploy neuron kind that Lava's
            backend cannot run).
        surrogate, surrogate_scale: surrogate gradient of the spike (``models.layers.spike``).
        init_gain: initial weights are uniform with std ``init_gain·max(threshold, 1)/√fan_in``
            (0.1 suits decays around 1024/256, where a sustained input of ``threshold/64`` per
            step already makes a neuron fire; scale it up for faster decays).
    """

    def __init__(self, *, threshold: int, current_decay: int, voltage_decay: int,
                 weight_bits: int = 8, weight_exp: int | None = None,
                 weight_exp_min: int = WEIGHT_EXP_RANGE[0], bias: bool = False,
                 reset: str = "zero", surrogate: str = "fast_sigmoid",
                 surrogate_scale: float = 1.0, init_gain: float = 0.1) -> None:
        super().__init__()
        self.threshold = _check_int("threshold", threshold, 0, VTH_MANT_MAX)
        self.current_decay = _check_int("current_decay", current_decay, 0, DECAY_UNITY)
        self.voltage_decay = _check_int("voltage_decay", voltage_decay, 0, DECAY_UNITY)
        self.weight_bits = _check_int("weight_bits", weight_bits, 2, 8)
        lo, hi = WEIGHT_EXP_RANGE
        self.weight_exp_min = _check_int("weight_exp_min", weight_exp_min, lo, hi)
        self.fixed_weight_exp = (None if weight_exp is None
                                 else _check_int("weight_exp", weight_exp, lo, hi))
        if reset not in RESETS:
            raise UnsupportedError(f"reset={reset!r} is not supported; choose one of {RESETS}")
        if surrogate not in SURROGATES:
            raise NeurodeployError(f"surrogate={surrogate!r} must be one of {SURROGATES}")
        if not (isinstance(surrogate_scale, (int, float)) and surrogate_scale > 0
                and isinstance(init_gain, (int, float)) and init_gain >= 0):
            raise NeurodeployError(
                f"surrogate_scale={surrogate_scale!r} must be > 0 and "
                f"init_gain={init_gain!r} >= 0"
            )
        self.reset = reset
        self.surrogate, self.surrogate_scale = surrogate, float(surrogate_scale)
        self.init_gain = float(init_gain)
        self.has_bias = bool(bias)
        self.u: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.pending: torch.Tensor | None = None
        self._wq: torch.Tensor | None = None
        self._bias_eff: torch.Tensor | float = 0.0
        self._emulate32 = False
        self._wrap_out = False
        self._exp = 0

    # -------------------------------------------------------------- parameters

    def _init_params(self, weight_shape: tuple[int, ...], n_out: int, fan_in: int) -> None:
        bound = self.init_gain * max(self.threshold, 1) * math.sqrt(3.0 / max(fan_in, 1))
        self.weight = nn.Parameter(torch.empty(weight_shape).uniform_(-bound, bound))
        if self.has_bias:
            self.bias = nn.Parameter(torch.zeros(n_out))
        else:
            self.register_parameter("bias", None)

    def weight_exp(self) -> int:
        """The weight exponent the next forward pass (and the export) uses."""
        if self.fixed_weight_exp is not None:
            return self.fixed_weight_exp
        return choose_weight_exp(self.weight, self.weight_bits, exp_min=self.weight_exp_min)

    def quantized(self) -> tuple[np.ndarray, int]:
        """``(mantissas as int32 array shaped like weight, weight_exp)`` as exported."""
        exp = self.weight_exp()
        m = quantize_weight(self.weight, exp, self.weight_bits)
        return m.cpu().numpy().astype(np.int32), exp

    def bias_mantissa(self) -> np.ndarray:
        """Integer bias mantissas (``(out,)`` int64; zeros without a bias)."""
        return self._bias_mant().detach().cpu().numpy().astype(np.int64)

    def _bias_mant(self) -> torch.Tensor:
        if self.bias is None:
            return torch.zeros(self.out_channels, dtype=torch.float64)
        b = self.bias.to(torch.float64)
        return _ste(b, torch.round(b.detach()).clamp(*BIAS_MANT_RANGE))

    # -------------------------------------------------------------- state

    def reset_state(self) -> None:
        """Forget u, v, the pending synaptic current and the cached quantized weights."""
        self.u = self.v = self.pending = None
        self._wq = None

    def _prepare(self) -> None:
        exp = self.weight_exp()
        m = quantize_weight(self.weight, exp, self.weight_bits)
        w64 = self.weight.to(torch.float64)
        self._exp = exp
        self._wq = _ste(w64, m * math.ldexp(1.0, exp))  # exact: m · 2**exp is dyadic
        bound = self._abs_row_sum(m) * math.ldexp(1.0, exp)
        self._wrap_out = self._wraps_output and bound >= M24
        a_bound = min(bound, float(M24)) if self._wraps_output else bound
        self._emulate32 = a_bound >= INT32_SAFE_ACTIVATION
        self._bias_eff = 0.0
        if self.bias is not None:  # bias_mant << 6, per channel
            bias = self._bias_mant() * float(1 << BIAS_EXP)
            self._bias_eff = bias.view(-1, *([1] * (self._neuron_rank - 1)))

    # -------------------------------------------------------------- one step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One time step: binary events ``x`` (``(B, in_features)`` or ``(B, C, H, W)``) in,
        this step's spikes (float64 0/1, ``(B, *out_shape)``) out. The events reach the
        neurons at the next step (Lava's synaptic delay)."""
        if self._wq is None:
            self._prepare()
        x = x.to(torch.float64)
        acc = self._synapse(x)
        if self._exp < 0:  # Lava shifts the summed input right with floor semantics
            acc = _ste(acc, torch.floor(acc.detach()))
        if self._wrap_out:
            acc = _wrap24(acc)
        a = self.pending if self.pending is not None else torch.zeros_like(acc)
        self.pending = acc
        return self._neuron_step(a)

    def _neuron_step(self, a: torch.Tensor) -> torch.Tensor:
        u = self.u if self.u is not None else torch.zeros_like(a)
        v = self.v if self.v is not None else torch.zeros_like(a)
        du = _decay(u, DECAY_UNITY - self.current_decay)
        act = a * 64.0
        if self._emulate32:  # Lava's numpy int32 arithmetic overflows here
            x = _wrap32(du + _wrap32(act))
        else:
            x = du + act
        x = torch.where(x > M24, x - 2 * M24, torch.where(x <= -M24, x + 2 * M24, x))
        y = _decay(v, DECAY_UNITY - self.voltage_decay) + x + self._bias_eff
        if self._emulate32:
            y = _wrap32(y)
        y = _ste(y, y.detach().clamp(-(M24 - 1), M24 - 1))
        vth = float(self.threshold << 6)
        # (y - vth) / vth > 0  ⇔  y > vth exactly: y - vth is an exact integer, vth > 0.
        s = spike((y - vth) / max(vth, 1.0), self.surrogate, self.surrogate_scale)
        fired = s.detach()
        if self.reset == "zero":
            y = torch.where(fired > 0, torch.zeros_like(y), y)
        else:
            y = y - fired * vth
        self.u, self.v = x, y
        return s

    # -------------------------------------------------------------- to implement

    _wraps_output = False  # conv outputs wrap to 24 bits in Lava's Conv model
    _neuron_rank = 1
    out_channels: int

    def _synapse(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _abs_row_sum(self, m: torch.Tensor) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def synapse_node(self) -> QDense | QConv2d:  # pragma: no cover - abstract
        raise NotImplementedError

    def neuron_node(self, shape: Sequence[int]) -> QCubaLIF:
        """The layer's neurons (output ``shape``) as a ``QCubaLIF`` node with the integer
        threshold, decays, reset and bias mantissas (``bias_exp = 6``) that the forward uses."""
        bias: np.ndarray | int = 0
        if self.bias is not None:
            mant = self.bias_mantissa().reshape(-1, *([1] * (len(shape) - 1)))
            bias = np.ascontiguousarray(np.broadcast_to(mant, tuple(shape)))
        return QCubaLIF(
            threshold=self.threshold, current_decay=self.current_decay,
            voltage_decay=self.voltage_decay, bias=bias,
            bias_exp=BIAS_EXP if self.bias is not None else 0, reset=self.reset,
        )


class LoihiDense(LoihiLayer):
    """Dense synapses ``(out, in)`` + CUBA-LIF neurons; exported as ``QDense`` → ``QCubaLIF``.

    ``forward`` takes one step's binary events ``(B, in_features)`` and returns this step's
    spikes ``(B, out_features)``. See :class:`LoihiLayer` for the keyword arguments.
    """

    def __init__(self, in_features: int, out_features: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.in_features = _check_int("in_features", in_features, 1, 1 << 24)
        self.out_features = self.out_channels = _check_int("out_features", out_features, 1,
                                                           1 << 24)
        self._init_params((self.out_features, self.in_features), self.out_features,
                          self.in_features)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, threshold={self.threshold}, "
                f"current_decay={self.current_decay}, voltage_decay={self.voltage_decay}, "
                f"weight_bits={self.weight_bits}, reset={self.reset}")

    def _synapse(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self._wq.t()

    def _abs_row_sum(self, m: torch.Tensor) -> float:
        return float(m.abs().sum(dim=1).max()) if m.numel() else 0.0

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if int(np.prod(in_shape)) != self.in_features:
            raise NeurodeployError(
                f"dense layer expects {self.in_features} inputs but receives shape "
                f"{tuple(in_shape)}; fix in_features or the previous layer"
            )
        return (self.out_features,)

    def synapse_node(self) -> QDense:
        """The synapses as a ``QDense`` node (mantissas, exponent, bits, mixed sign)."""
        m, exp = self.quantized()
        return QDense(weight=m, weight_exp=exp, num_weight_bits=self.weight_bits,
                      sign_mode="mixed")


class LoihiConv2d(LoihiLayer):
    """2-D convolution synapses (PyTorch cross-correlation, ``(out, in/groups, kh, kw)``) +
    CUBA-LIF neurons; exported as ``QConv2d`` → ``QCubaLIF``.

    ``forward`` takes one step's binary events ``(B, C, H, W)``. As Lava's ``Conv`` model, the
    synaptic sum wraps to 24 bits. The automatic exponent's floor defaults to 0 because Lava's
    fixed_pt ``Conv`` cannot shift right (hw_sim can: pass ``weight_exp_min`` < 0 for it).
    """

    _wraps_output = True
    _neuron_rank = 3

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, *,
                 weight_exp_min: int = 0, **kwargs: Any) -> None:
        super().__init__(weight_exp_min=weight_exp_min, **kwargs)
        self.in_channels = _check_int("in_channels", in_channels, 1, 1 << 16)
        self.out_channels = _check_int("out_channels", out_channels, 1, 1 << 16)
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = _pair("stride", stride, 1)
        self.padding = _pair("padding", padding, 0)
        self.dilation = _pair("dilation", dilation, 1)
        self.groups = _check_int("groups", groups, 1, 1 << 16)
        if in_channels % groups or out_channels % groups:
            raise NeurodeployError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        self._init_params((out_channels, in_channels // groups, *self.kernel_size),
                          out_channels, fan_in)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, threshold={self.threshold}, "
                f"current_decay={self.current_decay}, voltage_decay={self.voltage_decay}")

    def _synapse(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self._wq, stride=self.stride, padding=self.padding,
                        dilation=self.dilation, groups=self.groups)

    def _abs_row_sum(self, m: torch.Tensor) -> float:
        return float(m.abs().reshape(m.shape[0], -1).sum(dim=1).max())

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(in_shape) != 3 or in_shape[0] != self.in_channels:
            raise NeurodeployError(
                f"conv layer expects ({self.in_channels}, H, W) inputs but receives shape "
                f"{tuple(in_shape)}"
            )
        hw = []
        for size, k, s, p, d in zip(in_shape[1:], self.kernel_size, self.stride, self.padding,
                                    self.dilation):
            out = (size + 2 * p - d * (k - 1) - 1) // s + 1
            if out < 1:
                raise NeurodeployError(
                    f"conv kernel {self.kernel_size} is larger than its padded input "
                    f"{tuple(in_shape)}"
                )
            hw.append(out)
        return (self.out_channels, *hw)

    def synapse_node(self) -> QConv2d:
        """The synapses as a ``QConv2d`` node (mantissas, exponent, geometry)."""
        m, exp = self.quantized()
        return QConv2d(weight=m, weight_exp=exp, num_weight_bits=self.weight_bits,
                       sign_mode="mixed", stride=self.stride, padding=self.padding,
                       dilation=self.dilation, groups=self.groups)


def _pair(name: str, value: Any, lo: int) -> tuple[int, int]:
    vals = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(vals) != 2:
        raise NeurodeployError(f"{name}={value!r} must be an integer or a pair of integers")
    return tuple(_check_int(name, v, lo, 1 << 16) for v in vals)  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------


class LoihiNet(nn.Module):
    """A feed-forward stack of :class:`LoihiLayer` run over ``timesteps`` steps exactly as
    hw_sim runs :func:`to_graph` of it with ``input_mode="spikes"``.

    Args:
        layers: the layers in order; a dense layer after a conv layer (or after a 3-D input)
            sees the events flattened in PyTorch ``(C, H, W)`` order.
        timesteps: steps per sample T.
        in_shape: one sample's input shape, ``(N,)`` or ``(C, H, W)``.
        config: the JSON-able config it was built from (kept for saving), if any.

    Layer ``i`` (1-based) is named ``fc{i}``/``conv{i}`` (synapse) and ``lif{i}`` (neurons),
    as in :func:`to_graph` and in :meth:`run`'s result.
    """

    def __init__(self, layers: Sequence[LoihiLayer], timesteps: int, in_shape: Sequence[int],
                 config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if not layers:
            raise NeurodeployError("a LoihiNet needs at least one layer")
        bad = [type(m).__name__ for m in layers if not isinstance(m, LoihiLayer)]
        if bad:
            raise UnsupportedError(
                f"LoihiNet layers must be LoihiDense or LoihiConv2d, got {', '.join(bad)}"
            )
        self.layers = nn.ModuleList(layers)
        self.timesteps = _check_int("timesteps", timesteps, 1, 1 << 20)
        self.in_shape = tuple(int(s) for s in in_shape)
        if len(self.in_shape) not in (1, 3) or min(self.in_shape) < 1:
            raise NeurodeployError(f"in_shape={self.in_shape} must be (N,) or (C, H, W)")
        self.config = dict(config) if config is not None else None
        self.shapes: list[tuple[int, ...]] = []  # output shape of every layer
        shape = self.in_shape
        for layer in self.layers:
            shape = layer.output_shape(shape)
            self.shapes.append(shape)
        self.synapse_names = [
            f"{'conv' if isinstance(m, LoihiConv2d) else 'fc'}{i}"
            for i, m in enumerate(self.layers, 1)
        ]
        self.neuron_names = [f"lif{i}" for i in range(1, len(self.layers) + 1)]

    @property
    def num_outputs(self) -> int:
        """Number of output neurons (classes) of the last layer."""
        return int(np.prod(self.shapes[-1]))

    def reset_state(self) -> None:
        """Reset every layer's state (done at the start and end of every run)."""
        for layer in self.layers:
            layer.reset_state()

    def _check_spikes(self, spikes: torch.Tensor, steps: int) -> torch.Tensor:
        x = torch.as_tensor(spikes)
        want = (*self.in_shape, "T")
        if x.dim() != len(self.in_shape) + 2 or tuple(x.shape[1:-1]) != self.in_shape:
            raise NeurodeployError(
                f"spike input has shape {tuple(x.shape)}; expected (batch, "
                f"{', '.join(map(str, want))})"
            )
        if x.shape[-1] < steps:
            raise NeurodeployError(
                f"spike input holds {x.shape[-1]} time steps but {steps} were requested"
            )
        if bool(((x != 0) & (x != 1)).any()):
            raise NeurodeployError(
                "spike input must be binary (0/1); encode images with rate_encode"
            )
        return x

    def _simulate(self, spikes: torch.Tensor, steps: int, keep: Mapping[str, Iterable[str]]
                  ) -> tuple[list[torch.Tensor], dict[str, list[torch.Tensor]]]:
        device = self.layers[0].weight.device
        x = self._check_spikes(spikes, steps).to(device=device, dtype=torch.float64)
        self.reset_state()
        counts: list[torch.Tensor] = [0] * len(self.layers)  # type: ignore[list-item]
        traces: dict[str, list[torch.Tensor]] = {
            f"{n}.{q}": [] for n, qs in keep.items() for q in ("u", "v", "s") if q in qs
        }
        try:
            for t in range(steps):
                ev = x[..., t]
                for i, layer in enumerate(self.layers):
                    if isinstance(layer, LoihiDense) and ev.dim() > 2:
                        ev = ev.reshape(ev.shape[0], -1)
                    ev = layer(ev)
                    counts[i] = counts[i] + ev
                    name = self.neuron_names[i]
                    for q in keep.get(name, ()):
                        val = ev if q == "s" else getattr(layer, q)
                        traces[f"{name}.{q}"].append(val.detach())
        finally:
            self.reset_state()
        return counts, traces

    def forward(self, spikes: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Per-class spike counts of the last layer, ``(B, num_outputs)`` float64 with
        surrogate gradients, for binary ``spikes`` ``(B, *in_shape, T)``. Classify by argmax
        of the count; train with e.g. cross-entropy on ``count * scale``."""
        steps = self.timesteps if steps is None else int(steps)
        counts, _ = self._simulate(spikes, steps, {})
        return counts[-1].reshape(counts[-1].shape[0], -1)

    def layer_counts(self, spikes: torch.Tensor, steps: int | None = None) -> list[torch.Tensor]:
        """Per-neuron spike counts of every layer, ``(B, *layer_shape)`` each, with gradients
        (e.g. for activity regularization)."""
        steps = self.timesteps if steps is None else int(steps)
        return self._simulate(spikes, steps, {})[0]

    @torch.no_grad()
    def run(self, spikes: torch.Tensor | np.ndarray, steps: int | None = None, *,
            record: Mapping[str, Iterable[str]] | Iterable[str] | None = None) -> RunResult:
        """Run like ``hw_sim.run(to_graph(self), spikes, steps=..., input_mode="spikes",
        record=record)`` and return a :class:`RunResult` (``backend="torch"``) laid out the
        same way: traces ``(B, *shape, steps)`` int32 (u, v) / int8 (s), per-layer total
        spike counts ``(B,)`` int64."""
        from neurodeploy.simulation import normalize_record

        steps = self.timesteps if steps is None else int(steps)
        if steps < 1:
            raise NeurodeployError(f"steps must be at least 1, got {steps}")
        keep = normalize_record(to_graph(self), record)
        counts, traces = self._simulate(torch.as_tensor(spikes), steps, keep)
        out = {
            key: torch.stack(vals, dim=-1).cpu().numpy().astype(
                np.int8 if key.endswith(".s") else np.int32)
            for key, vals in traces.items()
        }
        totals = {
            name: c.reshape(c.shape[0], -1).sum(dim=1).cpu().numpy().astype(np.int64)
            for name, c in zip(self.neuron_names, counts)
        }
        return RunResult(backend="torch", steps=steps, samples=int(spikes.shape[0]),
                         layers=list(self.neuron_names), traces=out, spike_counts=totals)


# ------------------------------------------------------------------------------------------
# Encoding, building, export
# ------------------------------------------------------------------------------------------


def rate_encode(images: torch.Tensor | np.ndarray, timesteps: int, *,
                generator: torch.Generator | None = None, max_rate: float = 1.0
                ) -> torch.Tensor:
    """Bernoulli rate code: ``(B, *shape)`` intensities in [0, 1] → ``(B, *shape, T)`` binary
    spikes (uint8), spiking at step t with probability ``max_rate · intensity``. A seeded
    ``generator`` gives the same trains every time (feed them to hw_sim as they are)."""
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.numel() and (not bool(torch.isfinite(x).all()) or float(x.min()) < 0
                      or float(x.max()) > 1):
        raise NeurodeployError("rate_encode needs intensities in [0, 1]; rescale the images")
    if not 0 <= max_rate <= 1:
        raise NeurodeployError(f"max_rate={max_rate} must be in [0, 1]")
    timesteps = _check_int("timesteps", timesteps, 1, 1 << 20)
    u = torch.rand((*x.shape, timesteps), generator=generator)
    return (u < (x * max_rate).unsqueeze(-1)).to(torch.uint8)


_NEURON_KEYS = ("threshold", "current_decay", "voltage_decay", "weight_bits", "weight_exp",
                "weight_exp_min", "bias", "reset", "surrogate", "surrogate_scale", "init_gain")
_CONFIG_KEYS = {"model", "in_shape", "hidden", "num_classes", "timesteps", "channels",
                "kernel_size", "stride", "padding", "seed", *_NEURON_KEYS}


def build_loihi_model(config: Mapping[str, Any]) -> LoihiNet:
    """Build a :class:`LoihiNet` from a JSON-able config.

    Keys: ``model`` (``"loihi-mlp"`` or ``"loihi-conv"``), ``in_shape`` (list), ``hidden``
    (dense widths, list), ``num_classes``, ``timesteps``, and the neuron/weight options of
    :class:`LoihiLayer` (``threshold``, ``current_decay``, ``voltage_decay`` required;
    ``weight_bits``, ``weight_exp``, ``weight_exp_min``, ``bias``, ``reset``, ``surrogate``,
    ``surrogate_scale``, ``init_gain`` optional). Each neuron/weight option is one value for
    all layers or a list with one value per layer. ``loihi-conv`` adds ``channels`` (list of
    conv widths, before the dense layers), ``kernel_size`` (default 3), ``stride`` (default 1)
    and ``padding`` (default 0), each a value or a per-conv-layer list. ``seed`` (default 0)
    seeds the weight initialisation.

    Raises:
        NeurodeployError: a key is unknown, missing or has the wrong type.
        UnsupportedError: unknown ``model``.
        QuantizationError: a parameter is outside its fixed-point range.
    """
    if not isinstance(config, Mapping):
        raise NeurodeployError(f"model config must be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise NeurodeployError(
            f"unknown model config key(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(_CONFIG_KEYS))}"
        )
    missing = [k for k in ("model", "in_shape", "num_classes", "timesteps", "threshold",
                           "current_decay", "voltage_decay") if k not in config]
    if missing:
        raise NeurodeployError(f"model config lacks {', '.join(missing)}")
    kind = config["model"]
    if kind not in MODELS:
        raise UnsupportedError(f"model {kind!r} is not one of {', '.join(MODELS)}")
    in_shape = _int_list("in_shape", config["in_shape"])
    hidden = _int_list("hidden", config.get("hidden", []))
    channels = _int_list("channels", config.get("channels", [])) if kind == "loihi-conv" else []
    if kind == "loihi-mlp" and "channels" in config:
        raise NeurodeployError("'channels' applies to model 'loihi-conv' only")
    if kind == "loihi-conv" and (not channels or len(in_shape) != 3):
        raise NeurodeployError("model 'loihi-conv' needs 'channels' and a (C, H, W) in_shape")
    num_classes = _check_int("num_classes", config["num_classes"], 1, 1 << 20)
    n_layers = len(channels) + len(hidden) + 1

    def per_layer(key: str, n: int, default: Any) -> list[Any]:
        value = config.get(key, default)
        if isinstance(value, list):
            if len(value) != n:
                raise NeurodeployError(f"'{key}' lists {len(value)} values for {n} layers")
            return value
        return [value] * n

    neuron = {k: per_layer(k, n_layers, None) for k in _NEURON_KEYS if k in config}
    geometry = {k: per_layer(k, len(channels), d)
                for k, d in (("kernel_size", 3), ("stride", 1), ("padding", 0))}
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(_check_int("seed", config.get("seed", 0), 0, (1 << 63) - 1))
    try:
        layers: list[LoihiLayer] = []
        shape = tuple(in_shape)
        for i, ch in enumerate(channels):
            kw = {k: v[i] for k, v in neuron.items()}
            layer = LoihiConv2d(shape[0], ch, geometry["kernel_size"][i],
                                geometry["stride"][i], geometry["padding"][i], **kw)
            shape = layer.output_shape(shape)
            layers.append(layer)
        sizes = [*hidden, num_classes]
        n_in = int(np.prod(shape))
        for j, width in enumerate(sizes):
            kw = {k: v[len(channels) + j] for k, v in neuron.items()}
            layers.append(LoihiDense(n_in, width, **kw))
            n_in = width
    except TypeError as err:
        raise NeurodeployError(f"bad model config value: {err}") from err
    finally:
        torch.random.set_rng_state(torch_state)
    return LoihiNet(layers, _check_int("timesteps", config["timesteps"], 1, 1 << 20), in_shape,
                    config=config)


def _int_list(key: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)):
        raise NeurodeployError(f"'{key}' must be a list of positive integers, got {value!r}")
    return [_check_int(key, v, 1, 1 << 24) for v in value]


def to_graph(model: LoihiNet) -> Graph:
    """Export ``model`` to fixed-point IR: ``Input`` → (``Flatten``) → ``QDense``/``QConv2d``
    → ``QCubaLIF`` → …, with the exact integer mantissas, exponents, decays, thresholds and
    biases the torch forward uses. ``hw_sim.run(graph, spikes, steps=T, input_mode="spikes")``
    then gives the torch forward's spikes bit for bit.

    Raises:
        QuantizationError: the weights hold NaN/inf.
    """
    if not isinstance(model, LoihiNet):
        raise UnsupportedError(f"to_graph exports LoihiNet models, got {type(model).__name__}")
    nodes: list[tuple[str, Any]] = [("input", Input(shape=model.in_shape))]
    shape = model.in_shape
    for i, layer in enumerate(model.layers):
        if isinstance(layer, LoihiDense) and len(shape) > 1:
            nodes.append((f"flatten{i + 1}", Flatten()))
        nodes.append((model.synapse_names[i], layer.synapse_node()))
        out_shape = model.shapes[i]
        neuron = layer.neuron_node(out_shape)
        nodes.append((model.neuron_names[i], neuron))
        shape = out_shape
    graph = Graph.chain(nodes, dt=1.0, timesteps=model.timesteps,
                        source="neurodeploy.models.loihi")
    return graph.validate()
