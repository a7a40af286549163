"""Quantization pass: a float SNN graph (after BN folding) becomes the fixed-point graph a
Loihi-style target runs (``QDense``/``QConv2d``/``QSumPool2d``/``QCubaLIF``), with a per-layer
error report (:class:`QuantReport`).

**Units.** Every neuron layer gets one real scale ``S`` (its *a-units* per threshold for a
spiking layer, per unit of potential for an ``I`` accumulator). A synapse feeding it stores
mantissas ``m`` and an exponent ``e`` with ``m·2**e ≈ S·W̃``, where ``W̃`` is the float weight
times the neuron's input gain over its threshold and times the float value of one fixed-point
input event. In hw_sim's arithmetic (``QCubaLIF`` docstring) the synaptic input is
``a = shift(Σ m·x, e)`` and, with ``current_decay = 4096`` (u holds only this step's input),
``v`` grows by ``64·a``; so ``v/64`` is in a-units and the threshold mantissa is
``round(S)``. With ``S`` an integer (the usual case) the threshold is exact and all the
rounding sits in the weights.

**Neurons.** Discrete ``LIF`` (``v ← λv + g·I``, ``λ = 1 − dt/tau``, ``g = dt·r/tau``):
``voltage_decay = round(4096·(1−λ))``, ``current_decay = 4096``; ``IF``: ``voltage_decay = 0``;
``CubaLIF``: ``current_decay = round(4096·dt/tau_syn)`` as well (u then filters the input as the
float synaptic current does). ``reset="zero"`` stays; ``reset="subtract"`` (soft reset) is a
neurodeploy neuron kind that needs ``target.programmable_neurons`` (or ``allow_hard_reset``,
which turns it into ``"zero"`` with a warning). ``order="fire_integrate"``, a non-zero
``v_reset``, recurrent weights and per-neuron time constants are refused. The ``I``
accumulator becomes a non-spiking ``QCubaLIF`` (threshold ``2**17``, so ``v`` never reaches
``64·2**17 > 2**23 − 1``; ``voltage_decay = 0``), the logit accumulator of lava-dl's PilotNet
output layer: ``logits = v / (64·output_scale·T)`` (``metadata["output_scale"]``).

**Scale choice.** A spiking layer starts from ``S = threshold_mant`` (256): a-units of
``1/256`` threshold, so the per-step floor of negative exponents and the decays' truncation
cost at most ``θ/256`` per step, while u and v keep ``2**17/S = 512`` thresholds of headroom.
Each synapse then takes the *smallest* exponent in the target's range at which its rounded
mantissas fit Lava's grid (``lava_weights``: 8-bit mixed sign keeps even mantissas in
``[-256, 254]``; single-sign layers use the excitatory/inhibitory grid, one bit finer), so its
largest weight uses the full mantissa. If a layer's weights do not fit even at the largest
exponent, ``S`` is lowered (the threshold loses bits; reported). If even its largest weight
underuses the mantissa at the smallest exponent (weights tiny next to the threshold), ``S`` is
raised by a power of two up to ``2**(threshold_mant_bits − 3)`` (8 thresholds of headroom);
beyond that the weights underflow and the fraction is reported. An all-zero synapse gets
exponent 0 (no inflation, lava#501/lava#859/lava-dl#304) and a warning. Two synapses into one
neuron layer (through ``Add``) share its ``S`` and pick their own exponents. For an ``I``
layer ``S`` is the largest power of two keeping ``|v|`` within ``2**17`` a-units over the run:
from the worst case (every input at its bound every step) or, with ``calib``, half the range
over the largest potential the float graph reaches.

**Biases** (``Affine``/``Conv2d``) become the neuron's bias: ``bias·2**bias_exp = 64·S·g·b/θ``
per step, 13-bit signed mantissa with the smallest ``bias_exp`` in ``[0, 7]`` that fits
(overflow clips and is reported); ``v_leak`` adds ``dt/tau·v_leak`` the same way, and a bias
into a ``CubaLIF`` enters v at its steady-state value (warned). Biases act from step 0 at every
depth, while synaptic input arrives ``depth`` steps late in the fixed graph, so layers with
biases differ from the float graph during the first ``depth`` steps (as in every Lava
deployment).

**Pooling** is folded away first (:func:`fold_pooling`, exact in float64): an ``AvgPool2d`` or
``SumPool2d`` of spikes becomes part of the weights of the ``Conv2d`` after it (a larger,
strided kernel) or of the ``Affine``/``Linear`` after its ``Flatten`` (a matrix on the unpooled
input); a pool right after a ``Conv2d`` becomes part of that convolution. The ``1/k²`` of an
average pool thus enters the weights before they are rounded (no extra rounding step), and no
synapse feeds another synapse, which neither Loihi, Lava nor hw_sim can run (the alternative,
``QSumPool2d`` with weight 1 before the next synapse, would also add a step of delay that the
float graph lacks). The price is more synapses (a 3×3 conv after a 2×2 pool becomes 6×6 with
stride 2). A pool between two neuron layers (no weighted synapse next to it) stays: a
``QSumPool2d`` whose single weight carries the layer's scale. ``Add``, ``Concat`` and
``Flatten`` stay.

**Adds of spikes** (a residual block's ``y + x`` of two spike tensors, as in the zoo ResNet)
are pushed through the synapses after them first (:func:`distribute_spike_adds`, exact in
float64): each such synapse becomes one copy per Add input, and the Add sums the copies'
currents before the neuron layer, like any two synapses into one layer. The paths then have
their own synaptic delays, so their inputs reach the layer after different pipeline depths
(warned; the float graph has no such skew).

**Input.** ``encoder`` (default ``graph.metadata["encoder"]``, else ``"spikes"``):
``"direct"`` feeds graded events (``Input.num_message_bits = input_bits``): ``x`` becomes
``round(x·input_scale)`` with ``input_scale = qmax / input_range`` (``input_range`` is the
largest ``|x|`` of ``calib``), and the first synapse's weights absorb ``1/input_scale``.
``"poisson"`` and ``"spikes"`` keep a binary input (a 2-bit graded one when ``calib`` holds
negative values, for signed spikes; targets without graded spikes refuse those).
:func:`quantize_inputs` turns a float batch into the integer ``(B, *shape, T)`` events the
fixed graph takes (``input_mode="spikes"``).

**BNTT** (``bntt=``): ``None`` refuses ``BNTT`` nodes (deploy them first); ``"fold"`` folds
them into time-averaged batch norm and the synapses (``passes.bntt.fold_bntt`` +
``fold_batchnorm``, any target); ``"schedule"`` keeps them exact per step on targets with
programmable neurons: :func:`~neurodeploy.passes.bntt.split_bntt` moves each channel's
``r = max_t |scale[t]|`` into the synapse, and the neuron becomes a
:class:`~neurodeploy.ir.QCubaBNTT` with gain mantissas ``round(scale[t]/r · 2**gain_exp)``
(``gain_exp = 14``, the finest exponent that keeps a unity gain in 16 bits) and per-step bias
mantissas ``b[t]·2**bias_exp = 64·S·g·(scale[t]·bias + shift[t])/θ`` (one ``bias_exp`` for all
steps, chosen as for a static bias). Row ``t`` meets the float graph's step ``t`` (the schedule
phase is the layer's pipeline depth).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import NeurodeployError, QuantizationError, UnsupportedError
from ..ir import (
    BNTT,
    IF,
    LIF,
    Add,
    Affine,
    AvgPool2d,
    BatchNorm,
    Concat,
    Conv2d,
    CubaLIF,
    Flatten,
    Graph,
    I,
    Input,
    Linear,
    Node,
    QConv2d,
    QCubaBNTT,
    QCubaLIF,
    QDense,
    QSumPool2d,
    ReLU,
    SumPool2d,
)
from ..ir.nodes import GAIN_MANT_RANGE, VTH_MANT_MAX
from ..outdir import jsonable
from ..simulation import pipeline_depths
from .bntt import BNTTSchedule, split_bntt

#: Default threshold mantissa of a spiking layer (its a-units per threshold).
DEFAULT_THRESHOLD_MANT = 256
#: Encodings of the graph input (see the module docstring).
ENCODINGS = ("direct", "poisson", "spikes")
#: Float node types the pass converts.
SUPPORTED_NODES: tuple[type[Node], ...] = (
    Input, Affine, Linear, Conv2d, AvgPool2d, SumPool2d, Flatten, Add, Concat, LIF, IF, CubaLIF,
    I,
)
#: Lava's weight-exponent range (``QDense``/``QConv2d`` accept these).
LAVA_EXP_RANGE = (-8, 7)
M24 = 1 << 23  # Lava's max_uv_val: u wraps and v saturates at this magnitude
V_MAX = M24 - 1
#: Fraction of the 24-bit range an ``I`` layer's potential may fill, calibrated runs.
I_HEADROOM_CALIB = 0.5
#: Largest recorded trace (bytes) of one calibration run of hw_sim; bigger batches are split.
TRACE_BUDGET_BYTES = 1 << 26
#: Ways to deploy BNTT nodes (the ``bntt`` option; ``None`` refuses them).
BNTT_MODES = ("fold", "schedule")
#: Largest gain exponent of a BNTT schedule: a unity gain ``2**14`` still fits the signed
#: 16-bit mantissa (legalization's relay channels need one) and gains in ``[-1, 1]`` keep 14 bits.
BNTT_GAIN_EXP = 14

_NEURONS = (LIF, IF, CubaLIF, I)
_WEIGHTED = (Affine, Linear, Conv2d)
_POOLS = (AvgPool2d, SumPool2d)
_HINTS: dict[type, str] = {
    ReLU: "an ANN activation; convert the ANN first (passes.convert.ann_to_snn)",
    BNTT: "deploy BNTT: quantize with bntt='schedule' (exact per-step gain/bias neurons, "
          "programmable targets) or bntt='fold' (time-averaged, any target)",
    BatchNorm: "fold batch norm into the synapse before it first (passes.fold_bn)",
}


# ============================================================================================
# Weights
# ============================================================================================


def weight_grid(num_weight_bits: int, sign_mode: str) -> tuple[int, int, int]:
    """``(step, lo, hi)`` of the mantissas Lava's Dense keeps unchanged (``lava_weights``):
    mixed sign zeroes the low ``9 − bits`` bits of ``[-256, 255]``; excitatory and inhibitory
    the low ``8 − bits`` bits of ``[0, 255]`` and ``[-255, 0]``."""
    if sign_mode == "mixed":
        step = 1 << (9 - num_weight_bits)
        return step, -256, 256 - step
    step = 1 << (8 - num_weight_bits)
    if sign_mode == "excitatory":
        return step, 0, 256 - step
    return step, -(256 - step), 0


@dataclass
class WeightQuant:
    """Result of :func:`quantize_weights`.

    Attributes:
        mantissa: int64 mantissas, the input's shape, on the grid of :func:`weight_grid`.
        weight_exp: exponent ``e`` (``mantissa·2**e`` approximates the scaled weights).
        num_weight_bits, sign_mode: Lava's synapse format.
        clipped_fraction: fraction of weights that saturated at the grid's ends.
        underflow_fraction: fraction of the non-zero weights whose mantissa is 0.
        exp_clamped: ``"min"`` when a smaller exponent than the range allows would have been
            chosen (tiny weights), ``"max"`` when the weights do not fit the largest one,
            else ``None``.
        all_zero: every weight is 0 (exponent 0, no inflation).
    """

    mantissa: np.ndarray
    weight_exp: int
    num_weight_bits: int
    sign_mode: str
    clipped_fraction: float
    underflow_fraction: float
    exp_clamped: str | None
    all_zero: bool

    @property
    def max_mantissa(self) -> int:
        return int(np.abs(self.mantissa).max(initial=0))


def _grid_round(x: np.ndarray | float, e: int, step: int) -> np.ndarray:
    return np.round(np.ldexp(np.asarray(x, dtype=np.float64), -e) / step) * step


# --------------------------------------------------------------------------------------------
# Blockwise passes over large weight arrays
#
# A VGG's synapses hold tens of millions of weights. Every pass below walks them in blocks of
# whole rows (output channels) of about BLOCK_ELEMENTS numbers, so the several numpy
# operations on one block run in the CPU cache instead of streaming 100s of MB each. Each
# element goes through exactly the float64 operations of the plain array expressions they
# replace (``(s·W)·F``, ``round(x·2**-e / step)·step``, ...); order-independent reductions
# (max, min, counts, integer sums) are combined over blocks, and the two order-dependent
# float sums (the SQNR's Σw² and Σ(w − ŵ)²) are taken with ``np.sum`` over a full array, so
# the results are bit-identical to whole-array code.
# --------------------------------------------------------------------------------------------

#: Elements per block of the blockwise weight passes (512 KiB of float64).
BLOCK_ELEMENTS = 1 << 16


def _row_blocks(shape: tuple[int, ...]) -> tuple[list[tuple[int, int]], int]:
    """Ranges ``[a, b)`` of whole rows (axis 0) of about :data:`BLOCK_ELEMENTS` elements, and
    the largest block's element count."""
    rows = shape[0]
    per_row = math.prod(shape[1:])
    step = max(1, BLOCK_ELEMENTS // max(per_row, 1))
    return [(a, min(a + step, rows)) for a in range(0, rows, step)], min(step, rows) * per_row


def _rows(arr: np.ndarray, a: int, b: int) -> np.ndarray:
    """Rows ``a:b`` of a factor array that broadcasts against the weights (axis 0 of length 1
    or the weights' rows)."""
    return arr if arr.shape[0] == 1 else arr[a:b]


def _product_block(buf: np.ndarray, weight: np.ndarray, factors: np.ndarray, s: float | None,
                   a: int, b: int) -> np.ndarray:
    """``(s·W)·F`` (``W·F`` when ``s`` is None) of rows ``a:b``, in ``buf``."""
    wb = weight[a:b]
    out = buf[:wb.size].reshape(wb.shape)
    if s is None:
        return np.multiply(wb, _rows(factors, a, b), out=out)
    np.multiply(wb, s, out=out)
    return np.multiply(out, _rows(factors, a, b), out=out)


def _as_rows(weight: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(W, F)``: ``weight`` as C-ordered float64 with at least one axis, and factors of
    ones of its rank."""
    w = np.ascontiguousarray(weight, dtype=np.float64)
    if w.ndim == 0:
        w = w.reshape(1)
    return w, np.ones((1,) * w.ndim)


def _product_range(weight: np.ndarray, factors: np.ndarray, s: float | None = None,
                   squares: np.ndarray | None = None) -> tuple[float, float]:
    """``(max, min)`` of ``(s·W)·F`` (``W·F`` when ``s`` is None); ``(0, 0)`` when empty, NaN
    when a product is NaN. ``squares`` (``W``'s shape), when given, receives ``W·W`` on the
    way (the weights are read once for both)."""
    if weight.size == 0:
        return 0.0, 0.0
    blocks, size = _row_blocks(weight.shape)
    buf = np.empty(size)
    top, bottom = np.float64(-np.inf), np.float64(np.inf)
    for a, b in blocks:
        if squares is not None:
            np.multiply(weight[a:b], weight[a:b], out=squares[a:b])
        t = _product_block(buf, weight, factors, s, a, b)
        top = np.maximum(top, t.max())
        bottom = np.minimum(bottom, t.min())
    return float(top), float(bottom)


def _product_row_abs_max(weight: np.ndarray, factors: np.ndarray) -> float:
    """Largest per-row sum of ``|W·F|`` (dense rows, conv output channels; a pool's one
    weight)."""
    if weight.size <= 1:
        return float(np.abs(weight * factors).max(initial=0))
    blocks, size = _row_blocks(weight.shape)
    buf = np.empty(size)
    best = 0.0
    for a, b in blocks:
        t = _product_block(buf, weight, factors, None, a, b)
        np.abs(t, out=t)
        best = max(best, float(t.reshape(b - a, -1).sum(axis=1).max()))
    return best


@dataclass
class _SynapseQuant:
    """What :func:`_quantize_products` found: the quantized weights, the SQNR of the float
    weights ``W`` against their dequantized values, the largest per-row sum of ``|mantissa|``
    and the largest ``|mantissa|``."""

    quant: WeightQuant
    sqnr_db: float
    row_abs_max: float
    max_mantissa: int


def _quantize_products(weight: np.ndarray, factors: np.ndarray, s: float, *,
                       num_weight_bits: int, exp_min: int, exp_max: int,
                       sign_mode: str | None = None, error: bool = True,
                       dtype: Any = np.int32) -> _SynapseQuant:
    """Quantize the scaled weights ``(s·W)·F`` (``W`` float64 C-ordered, ``F`` broadcasting
    against it with ``W``'s rank) as :func:`quantize_weights` does, blockwise; with ``error``
    also the SQNR of ``W`` against ``ŵ = m·2**e / (s·F)`` (``ŵ = W`` where ``F = 0``), as
    :func:`sqnr_db` computes it. Mantissas come as ``dtype``."""
    if not 2 <= int(num_weight_bits) <= 8:
        raise QuantizationError(f"num_weight_bits={num_weight_bits} must lie in [2, 8]")
    if exp_min > exp_max:
        raise QuantizationError(f"weight exponent range [{exp_min}, {exp_max}] is empty")
    bits = int(num_weight_bits)
    # with ``error``, err2 first takes w² (for Σw² in np.sum's order), then (w − ŵ)²
    err2 = np.empty(weight.shape) if error else None
    top, bottom = _product_range(weight, factors, s, squares=err2)
    if not (math.isfinite(top) and math.isfinite(bottom)):
        raise QuantizationError("weights hold NaN or infinite values")
    all_zero = top == 0 and bottom == 0
    mant = np.zeros(weight.shape, dtype=dtype) if all_zero else np.empty(weight.shape, dtype)
    if all_zero:
        chosen, clamped, sign_mode = 0, None, sign_mode or "mixed"
        step, lo, hi = 1, 0, 0
    else:
        if sign_mode is None:
            sign_mode = ("excitatory" if bottom >= 0 else "inhibitory" if top <= 0
                         else "mixed")
        step, lo, hi = weight_grid(bits, sign_mode)

        def fits(e: int) -> bool:
            return (float(_grid_round(top, e, step)) <= hi
                    and float(_grid_round(bottom, e, step)) >= lo)

        found = next((e for e in range(exp_min, exp_max + 1) if fits(e)), None)
        clamped = None
        if found is None:
            found, clamped = exp_max, "max"
        elif found == exp_min and fits(exp_min - 1):
            clamped = "min"
        chosen = int(found)
    signal = None
    if error:
        signal = float(np.sum(err2))
        nonzero_f = factors != 0
        zero_f = None if nonzero_f.all() else ~nonzero_f
        denom = np.where(nonzero_f, s * factors, 1.0)
    blocks, size = _row_blocks(weight.shape)
    t, m, flags = np.empty(size), np.empty(size), np.empty(size, dtype=bool)
    down, up = math.ldexp(1.0, -chosen) / step, math.ldexp(1.0, chosen)
    nonzero = kept = clipped = 0
    row_max, mant_max = 0.0, 0.0
    for a, b in blocks:
        shape = (b - a, *weight.shape[1:])
        count = math.prod(shape)
        if not all_zero:
            mb = _product_block(t, weight, factors, s, a, b)  # the scaled weights
            # (counting a bool array is ~10x faster than counting float64 directly)
            nonzero += np.count_nonzero(np.not_equal(mb, 0.0, out=flags[:count].reshape(shape)))
            np.multiply(mb, down, out=mb)  # == ldexp(x, -e) / step (powers of two)
            np.round(mb, out=mb)
            if step != 1:
                np.multiply(mb, step, out=mb)
            # Clipping only when no exponent fits: else top and bottom fit, and rounding is
            # monotonic.
            if clamped == "max":
                fb = flags[:count].reshape(shape)
                clipped += int(np.count_nonzero(np.less(mb, lo, out=fb)))
                clipped += int(np.count_nonzero(np.greater(mb, hi, out=fb)))
                np.clip(mb, lo, hi, out=mb)
            mant[a:b] = mb
            kept += np.count_nonzero(mant[a:b])
            ab = np.abs(mb, out=m[:count].reshape(shape))
            row_max = max(row_max, float(ab.reshape(b - a, -1).sum(axis=1).max()))
            mant_max = max(mant_max, float(ab.max()))
        if error:  # ŵ = m·2**e / (s·F): mb still holds the mantissas (all-zero: mant's zeros)
            tb = np.multiply(mant[a:b] if all_zero else mb, up,
                             out=t[:count].reshape(shape))  # == ldexp(m, e)
            np.divide(tb, _rows(denom, a, b), out=tb)
            np.subtract(weight[a:b], tb, out=tb)  # w − ŵ
            if zero_f is not None:
                np.copyto(tb, 0.0, where=_rows(zero_f, a, b))
            np.multiply(tb, tb, out=err2[a:b])
    n = weight.size
    quant = WeightQuant(mant, chosen, bits, sign_mode,
                        clipped / n if n and not all_zero else 0.0,
                        (nonzero - kept) / nonzero if not all_zero else 0.0,
                        clamped, all_zero)
    sqnr = math.nan
    if error:
        noise = float(np.sum(err2))
        sqnr = (math.nan if signal == 0.0 else math.inf if noise == 0.0
                else 10.0 * math.log10(signal / noise))
    return _SynapseQuant(quant, sqnr, row_max, int(mant_max))


def quantize_weights(scaled: Any, *, num_weight_bits: int = 8, exp_min: int = -8,
                     exp_max: int = 7, sign_mode: str | None = None) -> WeightQuant:
    """Mantissas and exponent of ``scaled`` weights (already in a-units: float weight × scale).

    The exponent is the smallest ``e`` in ``[exp_min, exp_max]`` at which
    ``round(scaled / 2**e)`` (half to even, on the grid of :func:`weight_grid`) fits the
    grid's range, so the largest weight uses the full mantissa. All-zero weights get
    exponent 0; weights too small for ``exp_min`` underflow (reported); weights too large for
    ``exp_max`` saturate (reported). ``sign_mode`` defaults to ``"excitatory"`` when no weight
    is negative, ``"inhibitory"`` when none is positive, else ``"mixed"``.

    Raises:
        QuantizationError: non-finite weights, or options out of range.
    """
    x = np.asarray(scaled, dtype=np.float64)
    w, f = _as_rows(x)
    q = _quantize_products(w, f, 1.0, num_weight_bits=num_weight_bits, exp_min=exp_min,
                           exp_max=exp_max, sign_mode=sign_mode, error=False,
                           dtype=np.int64).quant
    q.mantissa = q.mantissa.reshape(x.shape)
    return q


def sqnr_db(weight: Any, dequantized: Any) -> float:
    """Signal-to-quantization-noise ratio ``10·log10(Σw² / Σ(w − ŵ)²)`` in dB; ``inf`` when
    lossless, ``nan`` for all-zero weights."""
    w = np.asarray(weight, dtype=np.float64)
    err = w - np.asarray(dequantized, dtype=np.float64)
    signal, noise = float(np.sum(w * w)), float(np.sum(err * err))
    if signal == 0.0:
        return math.nan
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise)


# ============================================================================================
# Report
# ============================================================================================


@dataclass
class SynapseReport:
    """One synapse node of a layer.

    ``scale`` is the factor with ``mantissa·2**weight_exp ≈ scale·w`` (``None`` when it varies
    over the weights, e.g. per-input factors of a pooled or direct input; ``scale_range`` gives
    its extremes). ``sqnr_db`` compares the float weights with the dequantized ones (``None``
    in JSON for lossless or all-zero). Fractions are of all weights (clipped) or of the
    non-zero weights (underflow)."""

    name: str
    type: str
    scale: float | None
    scale_range: tuple[float, float]
    weight_exp: int
    num_weight_bits: int
    sign_mode: str
    max_mantissa: int
    sqnr_db: float
    clipped_fraction: float
    underflow_fraction: float
    exp_clamped: str | None
    all_zero: bool
    worst_case_u: float
    overflow_risk: float


@dataclass
class LayerReport:
    """One neuron layer (float ``LIF``/``IF``/``CubaLIF``/``I`` → ``QCubaLIF``) and its synapses.

    ``scale`` is the layer's float-to-fixed factor (``v/64 ≈ scale·v_float``; ``S/θ`` for a
    spiking layer, ``S`` for ``I``); ``threshold_mant`` is ``round(S)`` (``2**17`` for ``I``)
    and ``threshold_error`` its relative rounding error. ``decay_error`` is
    ``|λ_fixed − λ|``; ``bias_error`` the largest bias rounding error in thresholds (``I``:
    float potential) per step. ``worst_case_u`` is ``64·Σ max_row Σ|m|·2**e·max input`` over
    the layer's synapses (grown by ``4096/current_decay`` for a filtering current) and
    ``overflow_risk`` its ratio to the ``2**23`` range of u (> 1 warns). ``calib_*`` come from
    a hw_sim run on the calibration data (``None`` without): largest ``|u|`` and ``|v|``, the
    fraction of neuron-steps whose potential hit the 24-bit limit, and the spikes per neuron
    per step in the float and fixed runs over the same ``T`` input steps. ``schedule`` (a
    ``QCubaBNTT`` layer only) holds ``bntt`` (the float BNTT node), ``timesteps``,
    ``gain_exp`` and ``gain_error`` (largest ``|gain_mant/2**gain_exp − scale/r|``); the
    ``bias_*`` fields then describe the per-step bias schedule.
    """

    name: str
    kind: str
    depth: int
    neurons: int
    scale: float | None
    scale_status: str
    threshold_mant: int
    threshold_error: float
    voltage_decay: int
    current_decay: int
    decay_error: float
    reset: str
    bias_exp: int
    bias_overflow_fraction: float
    bias_error: float
    worst_case_u: float
    overflow_risk: float
    synapses: list[SynapseReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    calib_max_abs_u: int | None = None
    calib_max_abs_v: int | None = None
    calib_v_saturation_fraction: float | None = None
    calib_rate_float: float | None = None
    calib_rate_fixed: float | None = None
    schedule: dict[str, Any] | None = None


@dataclass
class QuantReport:
    """What :func:`quantize` did and what it cost, per layer, plus global warnings.

    ``input`` describes the encoding (``encoding``, ``num_message_bits``, ``input_scale``,
    ``input_range``, ``signed``); ``output_scale`` maps each ``I`` layer to its ``S``
    (``logits = v / (64·S·T)``); ``folded_pools`` maps each pooling node folded away by
    :func:`fold_pooling` to the synapses that absorbed it. With ``calib``, ``calib`` holds
    the run's settings and, for a single ``I`` output, ``argmax_agreement`` (fraction of
    samples whose float and fixed logits have the same argmax) and ``max_abs_logit_error``."""

    target: str
    weight_bits: int
    input: dict[str, Any]
    output_scale: dict[str, float]
    folded_pools: dict[str, list[str]] = field(default_factory=dict)
    layers: list[LayerReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    calib: dict[str, Any] | None = None

    def layer(self, name: str) -> LayerReport:
        """The report of neuron layer ``name``."""
        for rep in self.layers:
            if rep.name == name:
                return rep
        raise KeyError(name)

    def synapse(self, name: str) -> SynapseReport:
        """The report of synapse node ``name``."""
        for rep in self.layers:
            for syn in rep.synapses:
                if syn.name == name:
                    return syn
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (non-finite numbers become ``None``)."""
        return jsonable(asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        """The report as a JSON string (stable keys)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


# ============================================================================================
# Analysis of the float graph
# ============================================================================================


@dataclass
class _Neuron:
    """Float neuron parameters reduced to the fixed neuron's terms (arrays of neuron shape)."""

    kind: str
    spiking: bool
    theta: np.ndarray  # thresholds (ones for I)
    gain: np.ndarray  # v gains per unit of synaptic input
    leak_bias: np.ndarray  # constant per-step v term from v_leak
    bias_factor: float  # multiplies the synaptic bias current (CubaLIF: 1/a_s steady state)
    vdecay: float  # 1 - λ
    cdecay: float  # 1 for "u holds only this step's input", a_s for CubaLIF
    reset: str


@dataclass
class _Weighted:
    """A synapse node whose weights carry a layer's scale."""

    name: str
    factor: float  # float value of the fixed output per unit (a carrier pool: 1/k² or 1)
    gain: float  # fixed-stage window-sum gain (a carrier pool: k, else 1)
    carrier: bool  # a pool carrying the scale (no weighted synapse on its path)
    weight: np.ndarray | None = None  # float weights (W) as in the float node, C-ordered
    # F, of W's rank and broadcasting against it (W̃ = W·F): axes along which F is constant
    # have length 1, so a (4096, 8192) dense layer does not carry a second (4096, 8192) array
    factors: np.ndarray | None = None
    event_bound: float = 1.0  # largest |fixed input event|


@dataclass
class _Region:
    target: str
    weighted: list[_Weighted] = field(default_factory=list)
    current: list[str] = field(default_factory=list)  # Add nodes between synapses and neuron


def _bcast(value: Any, shape: tuple[int, ...], default: float = 0.0) -> np.ndarray:
    if value is None:
        return np.full(shape, default, dtype=np.float64)
    return np.broadcast_to(np.asarray(value, dtype=np.float64), shape).copy()


def _uniform(arr: np.ndarray) -> bool:
    if arr.size == 0:
        return True
    ref = arr.reshape(-1)[0]
    return bool(np.allclose(arr, ref, rtol=1e-12, atol=0.0))


def _neuron_spec(name: str, node: Node, shape: tuple[int, ...], dt: float, programmable: bool,
                 allow_hard_reset: bool, problems: list[str], warnings: list[str]
                 ) -> _Neuron | None:
    label = f"{name} ({node.type_name})"
    bad = len(problems)
    order = getattr(node, "order", "integrate_fire")
    if order == "fire_integrate":
        problems.append(
            f"{label}: order='fire_integrate' (fire from the previous potential) is not what "
            "Loihi's neuron does; retrain or rebuild it with order='integrate_fire'")
    if getattr(node, "weight_rec", None) is not None:
        problems.append(f"{label}: recurrent weights are not supported by the quantizer")
    reset = getattr(node, "reset", "zero")
    if reset == "subtract" and (allow_hard_reset or not programmable):
        if allow_hard_reset:
            why = "as asked" if programmable else "because the target has no programmable neurons"
            warnings.append(
                f"{name}: reset='subtract' turned into Loihi's hard reset (reset='zero') {why}; "
                "spike counts will change")
            reset = "zero"
        else:
            problems.append(
                f"{label}: reset='subtract' (soft reset) needs programmable neurons, which the "
                "target lacks; use reset='zero' (retrain), a target such as loihi2, or "
                "allow_hard_reset=True to convert it with a warning")
    v_reset = getattr(node, "v_reset", None)
    if reset == "zero" and v_reset is not None and np.any(np.asarray(v_reset) != 0):
        problems.append(f"{label}: v_reset != 0; Loihi resets the potential to 0")
    ones = np.ones(shape)
    if isinstance(node, I):
        gain = dt * _bcast(node.r, shape)
        spec = _Neuron("I", False, ones, gain, np.zeros(shape), 1.0, 0.0, 1.0, "zero")
    elif isinstance(node, IF):
        gain = dt * _bcast(node.r, shape)
        spec = _Neuron("IF", True, _bcast(node.v_threshold, shape), gain, np.zeros(shape), 1.0,
                       0.0, 1.0, reset)
    elif isinstance(node, LIF):
        a = dt / _bcast(node.tau, shape)
        spec = _Neuron("LIF", True, _bcast(node.v_threshold, shape), a * _bcast(node.r, shape),
                       a * _bcast(node.v_leak, shape), 1.0, float(a.reshape(-1)[0]), 1.0, reset)
        if not _uniform(a):
            problems.append(f"{label}: per-neuron time constants; Loihi's decays are shared "
                            "by a layer")
    else:  # CubaLIF
        a_s = dt / _bcast(node.tau_syn, shape)
        a_m = dt / _bcast(node.tau_mem, shape)
        w_in = _bcast(node.w_in, shape, 1.0)
        spec = _Neuron("CubaLIF", True, _bcast(node.v_threshold, shape),
                       a_m * _bcast(node.r, shape) * a_s * w_in, a_m * _bcast(node.v_leak, shape),
                       float(1.0 / a_s.reshape(-1)[0]), float(a_m.reshape(-1)[0]),
                       float(a_s.reshape(-1)[0]), reset)
        if not (_uniform(a_s) and _uniform(a_m)):
            problems.append(f"{label}: per-neuron time constants; Loihi's decays are shared "
                            "by a layer")
    for what, value in (("dt/tau", spec.vdecay), ("dt/tau_syn", spec.cdecay)):
        if value > 1.0:
            problems.append(f"{label}: {what} = {value:.4g} > 1; the time step is longer than "
                            "the time constant (the discrete decay would be negative)")
    if spec.spiking and np.any(spec.theta <= 0):
        problems.append(f"{label}: thresholds must be positive")
    if len(problems) > bad:
        return None
    rowf = spec.gain / spec.theta
    if len(shape) == 3 and not np.allclose(rowf, rowf[:, :1, :1], rtol=1e-12, atol=0.0):
        problems.append(f"{label}: gain/threshold varies within a channel; a convolution can "
                        "only scale whole output channels")
        return None
    return spec


def _walk_region(graph: Graph, target: str, problems: list[str]) -> _Region:
    """Synapses and current-side nodes that feed neuron layer ``target``."""
    region = _Region(target)
    nodes = graph.nodes

    def visit(name: str, factor: float, gain: float) -> None:
        node = nodes[name]
        label = f"{name} ({node.type_name})"
        if isinstance(node, (*_NEURONS, Input)):
            problems.append(f"{target}: fed by {label} without a synapse; put a Linear, "
                            "Affine or Conv2d (an identity one for a residual) between them")
            return
        succs = graph.successors(name)
        if len(succs) != 1:
            problems.append(f"{label}: feeds {len(succs)} nodes ({', '.join(succs)}); a synapse "
                            "is scaled for the one neuron layer it feeds, duplicate it per "
                            "consumer")
            return
        if isinstance(node, _WEIGHTED):
            region.weighted.append(_Weighted(name, factor, gain, False))
            return
        if isinstance(node, _POOLS):
            pred = graph.predecessors(name)[0]
            if not isinstance(nodes[pred], (*_NEURONS, Input)):
                problems.append(f"{label}: pooling of synaptic currents that cannot be folded "
                                "into the synapse before it (see fold_pooling); pool the spikes "
                                "before the synapse instead")
                return
            k = node.kernel_size[0] * node.kernel_size[1]
            own = 1.0 / k if isinstance(node, AvgPool2d) else 1.0
            region.weighted.append(_Weighted(name, factor * own, gain * k, True))
            return
        if isinstance(node, Add):
            region.current.append(name)
            for pred in graph.predecessors(name):
                visit(pred, factor, gain)
            return
        problems.append(f"{label}: between a synapse and neuron layer {target}; only Add and "
                        "pooling may sit there, move it before the synapse")

    visit(graph.predecessors(target)[0], 1.0, 1.0)
    return region


def _event_side(graph: Graph, shapes: dict[str, tuple[int, ...]], input_factor: float,
                input_bound: float, problems: list[str]
                ) -> tuple[dict[str, np.ndarray | None], dict[str, float]]:
    """Per node on the event side: the float value of one fixed event per channel (3-D) or
    element (1-D), and the largest |fixed event|. ``None`` for current-carrying nodes."""
    fac: dict[str, np.ndarray | None] = {}
    bound: dict[str, float] = {}
    for name in graph.topo_order:
        node = graph.nodes[name]
        shape = shapes[name]
        preds = graph.predecessors(name)
        if isinstance(node, Input):
            fac[name] = np.full(shape[0], input_factor)
            bound[name] = input_bound
        elif isinstance(node, _NEURONS):
            fac[name] = np.ones(shape[0])
            bound[name] = 1.0
        elif isinstance(node, _POOLS) and fac.get(preds[0]) is not None:
            k = node.kernel_size[0] * node.kernel_size[1]
            src = fac[preds[0]]
            fac[name] = src / k if isinstance(node, AvgPool2d) else src.copy()
            bound[name] = bound[preds[0]] * k
        elif isinstance(node, Flatten) and fac.get(preds[0]) is not None:
            src_shape = shapes[preds[0]]
            reps = int(np.prod(src_shape[1:])) if len(src_shape) == 3 else 1
            fac[name] = np.repeat(fac[preds[0]], reps)
            bound[name] = bound[preds[0]]
        elif isinstance(node, Concat) and all(fac.get(p) is not None for p in preds):
            parts = [fac[p] for p in preds]
            if node.axis == 0:
                fac[name] = np.concatenate(parts)
            elif all(np.array_equal(parts[0], p) for p in parts[1:]):
                fac[name] = parts[0]
            else:
                problems.append(f"{name} (Concat): joins inputs of different scales along a "
                                "spatial axis; concatenate along channels")
                fac[name] = parts[0]
            bound[name] = max(bound[p] for p in preds)
        else:
            fac[name] = None
    return fac, bound


def _conv_input_index(weight: np.ndarray, groups: int) -> np.ndarray:
    """Input channel of each ``(out, in/groups)`` weight slice."""
    out, per_group = weight.shape[:2]
    out_per_group = out // groups
    return (np.arange(out)[:, None] // out_per_group) * per_group + np.arange(per_group)[None, :]


def _region_bias(graph: Graph, region: _Region, shape: tuple[int, ...]) -> np.ndarray:
    """Float bias current reaching ``region.target`` (its neuron shape) through the ``Add``
    nodes before it, with zero synaptic input."""
    members = {w.name for w in region.weighted} | set(region.current)
    values: dict[str, torch.Tensor] = {}
    shapes = graph.shapes
    for name in graph.topo_order:
        if name not in members:
            continue
        node = graph.nodes[name]
        out_shape = shapes[name]
        if isinstance(node, Affine):
            val = torch.as_tensor(np.array(node.bias, dtype=np.float64))
        elif isinstance(node, Conv2d) and node.bias is not None:
            val = torch.as_tensor(np.array(node.bias, dtype=np.float64))[:, None, None]
            val = val.expand(*out_shape).clone()
        elif name in {w.name for w in region.weighted}:
            val = torch.zeros(out_shape, dtype=torch.float64)
        else:  # Add
            val = sum(values[p] for p in graph.predecessors(name))  # type: ignore[assignment]
        values[name] = val
    out = values[graph.predecessors(region.target)[0]]
    return np.broadcast_to(out.numpy(), shape).astype(np.float64)


# ============================================================================================
# Pool folding (float → float, exact)
# ============================================================================================


def _pool_factor(node: Node) -> float:
    k = node.kernel_size[0] * node.kernel_size[1]
    return 1.0 / k if isinstance(node, AvgPool2d) else 1.0


def _run_pool(node: Node, x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, node.kernel_size, node.stride, node.padding, count_include_pad=True,
                        divisor_override=None if isinstance(node, AvgPool2d) else 1)


def _run_conv(node: Conv2d, x: torch.Tensor) -> torch.Tensor:
    bias = None if node.bias is None else torch.as_tensor(np.array(node.bias))
    return F.conv2d(x, torch.as_tensor(np.array(node.weight)), bias, stride=node.stride,
                    padding=node.padding, dilation=node.dilation, groups=node.groups)


def _windows(shape: tuple[int, ...], kh: int, kw: int, values: np.ndarray) -> np.ndarray:
    """An array of ``shape`` ``(n, c, rows, ph, cols, pw)`` holding ``0 + values[n, c, i, j]``
    in its ``[:, :, i, :kh, j, :kw]`` windows and 0 elsewhere (``0 + v`` turns ``-0.0`` into
    ``0.0``, as adding into a zero array does)."""
    values = values + 0.0
    full = shape[3] == kh and shape[5] == kw
    grid = np.empty(shape) if full else np.zeros(shape)
    np.copyto(grid[:, :, :, :kh, :, :kw], values[:, :, :, None, :, None])
    return grid


def _pool_then_conv(pool: Node, conv: Conv2d) -> Conv2d:
    """The convolution equal to ``conv(pool(x))``: taps ``κ`` of ``conv`` spread over the
    pooling windows they read (offset ``κ·dilation·pool_stride``, window ``kernel_size``)."""
    w = np.asarray(conv.weight)
    kh, kw = pool.kernel_size
    (sph, spw), (dh, dw) = pool.stride, conv.dilation
    ph, pw = dh * sph, dw * spw  # offset between the windows of neighbouring taps
    f = _pool_factor(pool)
    if ph >= kh and pw >= kw:  # windows do not overlap: each element gets one tap
        n, c, th, tw = w.shape
        grid = _windows((n, c, th, ph, tw, pw), kh, kw, w * f)
        out = grid.reshape(n, c, th * ph, tw * pw)[:, :, :(th - 1) * ph + kh,
                                                    :(tw - 1) * pw + kw]
    else:
        out = np.zeros((*w.shape[:2], (w.shape[2] - 1) * ph + kh,
                        (w.shape[3] - 1) * pw + kw))
        for i in range(w.shape[2]):
            for j in range(w.shape[3]):
                out[:, :, i * ph:i * ph + kh, j * pw:j * pw + kw] += \
                    w[:, :, i, j, None, None] * f
    return Conv2d(weight=out, bias=conv.bias,
                  stride=(conv.stride[0] * sph, conv.stride[1] * spw),
                  padding=(conv.padding[0] * sph + pool.padding[0],
                           conv.padding[1] * spw + pool.padding[1]),
                  dilation=(1, 1), groups=conv.groups)


def _conv_then_pool(conv: Conv2d, pool: Node) -> Conv2d:
    """The convolution equal to ``pool(conv(x))``: copies of the (dilated) kernel shifted by
    each window offset times the conv stride."""
    w = np.asarray(conv.weight)
    kh, kw = pool.kernel_size
    (sch, scw), (dh, dw) = conv.stride, conv.dilation
    mh = (kh - 1) * sch + (w.shape[2] - 1) * dh + 1
    mw = (kw - 1) * scw + (w.shape[3] - 1) * dw + 1
    out = np.zeros((*w.shape[:2], mh, mw))
    f = _pool_factor(pool)
    for a in range(kh):
        for b in range(kw):
            out[:, :, a * sch:a * sch + (w.shape[2] - 1) * dh + 1:dh,
                b * scw:b * scw + (w.shape[3] - 1) * dw + 1:dw] += w * f
    bias = None if conv.bias is None else np.asarray(conv.bias) * (f * kh * kw)
    return Conv2d(weight=out, bias=bias,
                  stride=(sch * pool.stride[0], scw * pool.stride[1]),
                  padding=conv.padding, dilation=(1, 1), groups=conv.groups)


def _pool_then_dense(pool: Node, dense: Node, in_shape: tuple[int, ...]) -> Node:
    """``dense(flatten(pool(x)))`` as one dense layer on ``flatten(x)``: each weight row is
    mapped back through the pooling's adjoint (for windows that neither overlap nor pad,
    directly: each input of a window gets ``w/divisor``, as torch's backward pass computes it;
    inputs outside every window get 0)."""
    (kh, kw), (sh, sw), (ph, pw) = pool.kernel_size, pool.stride, pool.padding
    c, h, wd = in_shape
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    if (ph, pw) == (0, 0) and sh >= kh and sw >= kw and oh > 0 and ow > 0:
        w = np.asarray(dense.weight, dtype=np.float64)
        n = w.shape[0]
        divisor = 1.0 if isinstance(pool, SumPool2d) else float(kh * kw)
        grid = _windows((n, c, oh, sh, ow, sw), kh, kw, w.reshape(n, c, oh, ow) / divisor)
        grid = grid.reshape(n, c, oh * sh, ow * sw)
        if (oh * sh, ow * sw) == (h, wd):
            weight = grid.reshape(n, -1)
        else:  # crop windows' gaps past the input, or add the rows no window reads
            full = np.zeros((n, c, h, wd))
            hh, ww = min(h, oh * sh), min(wd, ow * sw)
            full[:, :, :hh, :ww] = grid[:, :, :hh, :ww]
            weight = full.reshape(n, -1)
    else:
        wt = torch.as_tensor(np.array(dense.weight))
        x = torch.zeros((wt.shape[0], *in_shape), dtype=torch.float64, requires_grad=True)
        y = _run_pool(pool, x)
        (y.reshape(wt.shape[0], -1) * wt).sum().backward()
        weight = x.grad.reshape(wt.shape[0], -1).numpy()
    if isinstance(dense, Affine):
        return Affine(weight=weight, bias=dense.bias)
    return Linear(weight=weight)


def _same_function(shape: tuple[int, ...], before: Any, after: Any) -> bool:
    """Whether two float maps agree on a random input (float64, relative 1e-9)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((2, *shape), generator=gen, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        a, b = before(x), after(x)
    if a.shape != b.shape:
        return False
    return bool(torch.allclose(a, b, rtol=1e-9, atol=1e-9 * float(a.abs().max() + 1)))


def _exact_fold(pool: Node, conv: Conv2d, in_shape: tuple[int, ...]) -> bool:
    """Whether folding ``pool`` into ``conv`` is exact for any weights, checked like
    :func:`_same_function` on a stand-in convolution with the same geometry (kernel, stride,
    padding, dilation, groups) and one input and output channel per group, with random
    weights. The fold treats every (output, input) channel pair alike, so this answers for
    the real convolution at a fraction of its cost; when it says no, the caller checks the real
    weights (which could make an inexact geometry exact, e.g. zero border taps)."""
    gen = np.random.default_rng(0)
    g = conv.groups
    weight = gen.uniform(0.5, 1.5, (g, 1, *np.asarray(conv.weight).shape[2:]))
    small = Conv2d(weight=weight, bias=None, stride=conv.stride, padding=conv.padding,
                   dilation=conv.dilation, groups=g)
    new = _pool_then_conv(pool, small)
    return _same_function((g, *in_shape[1:]), lambda x: _run_conv(small, _run_pool(pool, x)),
                          lambda x: _run_conv(new, x))


def fold_pooling(graph: Graph) -> tuple[Graph, dict[str, list[str]], list[str]]:
    """Fold ``AvgPool2d``/``SumPool2d`` nodes into the weighted synapse next to them, exactly.

    A pool of spikes followed by ``Conv2d`` (or by ``Flatten`` feeding only ``Affine``/
    ``Linear``) becomes part of those synapses' weights (a larger, strided kernel; a dense
    matrix on the unpooled input); a pool right after a ``Conv2d`` that feeds nothing else
    becomes part of that convolution. Each fold is checked on a random input (float64; a
    pool folded into a following conv first on a one-channel stand-in of the same geometry,
    and on the real weights only when that fails) and refused when padding makes it inexact.
    On Loihi, Lava and hw_sim a synapse cannot feed another synapse, so this keeps the float
    graph's function *and* timing (no extra synaptic delay) at the cost of more synapses.
    Pools between neurons (no weighted synapse next to them) stay: they become ``QSumPool2d``
    synapses.

    Returns:
        ``(graph, folded, problems)``: the new float graph (pool nodes removed, node names
        otherwise kept; ``graph`` itself when no pool was folded), ``{pool: [synapses it
        went into]}``, and one line per pool that could have been folded but not exactly.
    """
    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    shapes = dict(graph.shapes)
    folded: dict[str, list[str]] = {}
    problems: list[str] = []
    refused: set[str] = set()

    def preds(n: str) -> list[str]:
        return [a for a, b in edges if b == n]

    def succs(n: str) -> list[str]:
        return [b for a, b in edges if a == n]

    def rewire(old_src: str, new_src: str, dst: str) -> None:
        edges[edges.index((old_src, dst))] = (new_src, dst)

    changed = True
    while changed:
        changed = False
        for name in list(nodes):
            pool = nodes.get(name)
            if not isinstance(pool, _POOLS) or name in refused:
                continue
            (src,) = preds(name)
            outs = succs(name)
            in_shape = shapes[src]
            src_node = nodes[src]
            if isinstance(src_node, Conv2d) and succs(src) == [name]:
                new = _conv_then_pool(src_node, pool)
                if not _same_function(shapes[preds(src)[0]],
                                      lambda x: _run_pool(pool, _run_conv(src_node, x)),
                                      lambda x: _run_conv(new, x)):
                    problems.append(f"{name} ({pool.type_name}): its padding makes folding it "
                                    f"into {src} inexact; use padding=0")
                    refused.add(name)
                    continue
                nodes[src] = new
                for dst in outs:
                    rewire(name, src, dst)
                edges.remove((src, name))
                shapes[src] = shapes[name]
                folded[name] = [src]
            elif outs and all(isinstance(nodes[d], Conv2d) or (
                    isinstance(nodes[d], Flatten) and succs(d)
                    and all(isinstance(nodes[e], (Affine, Linear)) for e in succs(d)))
                    for d in outs):
                updates: dict[str, Node] = {}
                for dst in outs:
                    node = nodes[dst]
                    if isinstance(node, Conv2d):
                        new = _pool_then_conv(pool, node)
                        if not _exact_fold(pool, node, in_shape) and not _same_function(
                                in_shape, lambda x, n=node: _run_conv(n, _run_pool(pool, x)),
                                lambda x, n=new: _run_conv(n, x)):
                            break
                        updates[dst] = new
                    else:
                        for dense in succs(dst):
                            updates[dense] = _pool_then_dense(pool, nodes[dense], in_shape)
                else:
                    nodes.update(updates)
                    for dst in outs:
                        rewire(name, src, dst)
                        if isinstance(nodes[dst], Flatten):
                            shapes[dst] = (int(np.prod(in_shape)),)
                    edges.remove((src, name))
                    folded[name] = sorted(updates)
                    del nodes[name]
                    changed = True
                    continue
                problems.append(f"{name} ({pool.type_name}): its padding makes folding it into "
                                f"{', '.join(outs)} inexact; use padding=0 or pool windows "
                                "that tile the input")
                refused.add(name)
                continue
            else:
                continue
            del nodes[name]
            changed = True
    if not folded:
        return graph, folded, problems
    out = Graph(nodes, tuple(edges), graph.metadata)
    out.shapes  # validates, once (the shapes stay cached for the caller)
    return out, folded, problems


# ============================================================================================
# Adds of spikes (float → float, exact)
# ============================================================================================


def _event_nodes(nodes: dict[str, Node], preds: dict[str, list[str]], order: list[str]
                 ) -> set[str]:
    """Nodes carrying events (spikes or the input): the input, neurons, and pools, Flatten,
    Concat and Add nodes all of whose inputs carry events."""
    out: set[str] = set()
    for name in order:
        node = nodes[name]
        if isinstance(node, (Input, *_NEURONS)) or (
                isinstance(node, (*_POOLS, Flatten, Concat, Add)) and preds[name]
                and all(p in out for p in preds[name])):
            out.add(name)
    return out


def distribute_spike_adds(graph: Graph) -> tuple[Graph, list[str]]:
    """Push every ``Add`` of events (spikes, e.g. a residual block's ``y + x``) through the
    linear nodes after it, until it sums synaptic currents, exactly.

    No Loihi synapse reads a sum of spike trains, but ``W·(a + b) = W·a + W·b``: a synapse after
    the Add becomes one copy per Add input, each reading that input, and the Add then sums the
    copies' currents before the neuron layer (the form quantize handles: the copies share the
    layer's scale). A ``Flatten`` or pooling node after the Add is copied per input the same way
    and the Add moves past it. The first copy of a node keeps its name and a ``Conv2d``/
    ``Affine`` bias (added once); the others are named ``<node>_<input>`` and have none. The
    Add keeps its name when it has one consumer; with several, it becomes one Add per consumer,
    named ``<add>_<consumer>``. In the fixed graph each path then has its own synapse delays,
    so the inputs reach the Add after different pipeline depths (quantize warns about it).

    An Add of events feeding another one is merged into it (``(a + b) + c = a + b + c``).

    Returns:
        ``(graph, notes)``: the new float graph (``graph`` itself when it has no such Add), and
        one line per synapse that was copied. An Add of events that feeds something else (a
        neuron, an output) is left for quantize to report.
    """
    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    notes: list[str] = []

    def preds_of(n: str) -> list[str]:
        return [a for a, b in edges if b == n]

    def succs_of(n: str) -> list[str]:
        return [b for a, b in edges if a == n]

    def fresh(base: str) -> str:
        name, k = base, 2
        while name in nodes:
            name, k = f"{base}_{k}", k + 1
        return name

    def movable(add: str, n: str, events: set[str]) -> bool:
        if isinstance(nodes[n], Add):  # an Add of events after it: merged into that one
            return n in events and not set(preds_of(add)) & set(preds_of(n))
        return isinstance(nodes[n], (*_WEIGHTED, *_POOLS, Flatten)) and len(preds_of(n)) == 1

    origin: dict[str, str] = {}  # a copy made for an Add input -> that input's name
    while True:
        order = Graph(nodes, tuple(edges), graph.metadata).topo_order
        preds = {n: preds_of(n) for n in order}
        events = _event_nodes(nodes, preds, order)
        found = next((n for n in order if isinstance(nodes[n], Add) and n in events
                      and succs_of(n) and all(movable(n, s, events) for s in succs_of(n))),
                     None)
        if found is None:
            break
        add_preds, consumers = preds[found], succs_of(found)
        del nodes[found]
        for consumer in consumers:
            if isinstance(nodes[consumer], Add):  # Add(Add(a, b), c) = Add(a, b, c)
                at = edges.index((found, consumer))
                edges[at:at + 1] = [(p, consumer) for p in add_preds]
        edges = [e for e in edges if found not in e]
        for consumer in consumers:
            node = nodes[consumer]
            if isinstance(node, Add):
                continue
            names = [consumer] + [fresh(f"{consumer}_{origin.get(p, p)}")
                                  for p in add_preds[1:]]
            for k, (copy, src) in enumerate(zip(names, add_preds)):
                if k and isinstance(node, Affine):
                    nodes[copy] = Affine(weight=node.weight, bias=np.zeros_like(node.bias))
                elif k and isinstance(node, Conv2d) and node.bias is not None:
                    nodes[copy] = node.replace(bias=None)
                else:
                    nodes[copy] = node
                edges.append((src, copy))
                if k:
                    origin[copy] = origin.get(src, src)
            add = found if len(consumers) == 1 else fresh(f"{found}_{consumer}")
            nodes[add] = Add()
            # the Add takes the consumer's place as the source of its outputs (edge order kept)
            edges = [(add if a == consumer else a, b) for a, b in edges]
            edges += [(copy, add) for copy in names]
            if isinstance(node, _WEIGHTED):
                notes.append(f"{found} (Add): sums spikes, which no synapse can read; {consumer} "
                             f"now has one copy per input ({', '.join(names)}), summed by {add}")
    if not notes:
        return graph, []
    out = Graph(nodes, tuple(edges), graph.metadata)
    out.shapes  # validates, once (the shapes stay cached for the caller)
    return out, notes


# ============================================================================================
# Options
# ============================================================================================


@dataclass
class _Options:
    target_name: str
    weight_bits: int
    exp_min: int
    exp_max: int
    conv_exp_min: int
    decay_step: int
    threshold_mant: int
    threshold_cap: int
    bias_mant_max: int
    bias_exp_min: int
    message_bits_max: int
    programmable: bool


def _options(target: Any, weight_bits: int | None, threshold_mant: int,
             lava_compatible: bool) -> _Options:
    from ..targets import Target, load_target

    tgt = target if isinstance(target, Target) else load_target(target)
    if not tgt.is_neuromorphic:
        raise QuantizationError(f"target {tgt.name!r} is an ANN device; quantize for a "
                                "neuromorphic target such as loihi2")
    p = tgt.precision
    max_bits = min(int(p["weight_bits_max"]), 8)
    bits = max_bits if weight_bits is None else weight_bits
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) \
            or not 2 <= bits <= max_bits:
        raise QuantizationError(f"weight_bits={weight_bits!r} must be an integer in "
                                f"[2, {max_bits}] for target {tgt.name}")
    exp_min = max(int(p["weight_exp_min"]), LAVA_EXP_RANGE[0])
    exp_max = min(int(p["weight_exp_max"]), LAVA_EXP_RANGE[1])
    tbits = min(int(p["threshold_mant_bits"]), 17)
    t_max = (1 << tbits) - 1
    if isinstance(threshold_mant, bool) or not isinstance(threshold_mant, (int, np.integer)) \
            or not 1 <= threshold_mant <= t_max:
        raise QuantizationError(f"threshold_mant={threshold_mant!r} must be an integer in "
                                f"[1, {t_max}] for target {tgt.name}")
    decay_bits = min(int(p["decay_bits"]), 12)
    if lava_compatible:  # Lava's Conv has no exponent; netx stores 8-bit integer weights
        exp_min, exp_max = max(exp_min, 0), min(exp_max, 0)
    return _Options(
        target_name=tgt.name, weight_bits=int(bits), exp_min=exp_min, exp_max=exp_max,
        conv_exp_min=exp_min,
        decay_step=1 << (12 - decay_bits), threshold_mant=int(threshold_mant),
        threshold_cap=max(int(threshold_mant), 1 << max(tbits - 3, 0)),
        bias_mant_max=(1 << (int(p["bias_mant_bits"]) - 1)) - 1,
        bias_exp_min=6 if lava_compatible else 0,  # netx's fixed bias exponent
        message_bits_max=int(p["message_bits_max"]), programmable=bool(tgt.programmable_neurons),
    )


def _check_calib(graph: Graph, calib: Any) -> np.ndarray | None:
    if calib is None:
        return None
    arr = _float_array(calib, "calibration data")
    shape = tuple(graph.shapes[graph.inputs[0]])
    ok = (arr.ndim == len(shape) + 1 and arr.shape[1:] == shape) or (
        arr.ndim == len(shape) + 2 and arr.shape[1:-1] == shape)
    if not ok or arr.shape[0] == 0:
        dims = ", ".join(map(str, shape))
        raise NeurodeployError(f"calibration data have shape {arr.shape}; expected "
                               f"(batch, {dims}) or (batch, {dims}, T) with batch >= 1")
    if not np.all(np.isfinite(arr)):
        raise NeurodeployError("calibration data hold NaN or infinite values")
    return arr


# ============================================================================================
# The pass
# ============================================================================================


def quantize(graph: Graph, target: Any, *, calib: Any = None, weight_bits: int | None = None,
             input_bits: int = 8, progress: bool = False, allow_hard_reset: bool = False,
             encoder: str | None = None, input_range: float | None = None,
             threshold_mant: int = DEFAULT_THRESHOLD_MANT, steps: int | None = None,
             lava_compatible: bool = False, seed: int = 0,
             bntt: str | None = None) -> tuple[Graph, QuantReport]:
    """Quantize a float SNN graph for ``target``; see the module docstring for the rules.

    Args:
        graph: float SNN after BN folding: ``Input`` → ``Conv2d``/``Affine``/``Linear``/
            ``AvgPool2d``/``SumPool2d``/``Flatten``/``Add``/``Concat`` → ``LIF``/``IF``/
            ``CubaLIF`` → … → synapse → ``I`` (or spiking outputs).
        target: a :class:`~neurodeploy.targets.Target` or its name (``"loihi2"``).
        calib: optional float input batch ``(B, *input_shape)`` (or ``(B, *input_shape, T)``)
            in the float graph's units: sets the direct input's range and the ``I`` layers'
            headroom, and fills the report's ``calib_*`` statistics (hw_sim run).
        weight_bits: mantissa bits (2..8, default the target's maximum).
        input_bits: payload bits of direct (graded) input events.
        progress: tqdm progress bars.
        allow_hard_reset: turn soft reset into hard reset (with a warning), e.g. for netx files
            and targets without programmable neurons instead of failing.
        encoder: ``"direct"``, ``"poisson"`` or ``"spikes"`` (default
            ``graph.metadata["encoder"]``, else ``"spikes"``: binary events as given).
        input_range: largest ``|x|`` of direct input (default: from ``calib``, else 1.0).
        threshold_mant: starting threshold mantissa of spiking layers (a-units per threshold).
        steps: time steps ``T`` of a run (default ``graph.metadata["timesteps"]``, else 100):
            the ``I`` layers' worst case and the calibration run.
        lava_compatible: weight exponents ``0`` (Lava's ``fixed_pt`` Conv has no weight
            exponent; lava-dl netx files hold 8-bit integer weights) and bias exponents
            ``>= 6`` (lava-dl netx fixes it at 6; the bias resolution stays 1/threshold_mant
            of the threshold).
        seed: seed of the Poisson spike trains of the calibration run.
        bntt: how ``BNTT`` nodes are deployed: ``None`` (refused), ``"fold"`` (time-averaged
            batch norm folded into the synapses, as ``passes.bntt.fold_bntt`` and
            ``fold_batchnorm`` do; other ``BatchNorm`` nodes are folded too) or ``"schedule"``
            (exact per-step ``QCubaBNTT`` neurons; needs ``target.programmable_neurons``).

    Returns:
        ``(fixed_graph, report)``. The fixed graph keeps the node names and edges; its
        metadata copies ``timesteps``/``dt``/``encoder``/``encoder_rescale`` and adds
        ``stage="fixed"``, ``target``, ``input_encoding``, ``input_scale``, ``input_qrange``,
        ``quantization`` (per layer: ``scale``, ``threshold_mant``, ``weight_exp`` per synapse),
        ``output_scale`` (``I`` layer → ``S``; a number when there is one) and
        ``output_depth`` (pipeline depth of each output), plus ``bntt`` (the mode) when the
        graph had BNTT nodes.

    Raises:
        UnsupportedError: every construct the pass cannot quantize, listed at once; a
            ``bntt="schedule"`` for a target without programmable neurons (naming the BNTT
            layers and suggesting ``bntt="fold"``).
        QuantizationError: options out of range for the target.
        InvalidIRError: an invalid graph.
    """
    opts = _options(target, weight_bits, threshold_mant, lava_compatible)
    graph.shapes  # validates the graph (once: the shapes stay cached)
    meta = dict(graph.metadata)
    had_bntt = any(isinstance(n, BNTT) for n in graph.nodes.values())
    graph, schedules, float_ref = _deploy_bntt(graph, bntt, opts)
    shapes = graph.shapes
    problems: list[str] = []
    warnings: list[str] = []

    # -------------------------------------------------------------- node types and neurons
    dt = float(meta.get("dt") or 1.0)
    specs: dict[str, _Neuron] = {}
    for name in graph.topo_order:
        node = graph.nodes[name]
        if isinstance(node, _NEURONS):
            spec = _neuron_spec(name, node, shapes[name], dt, opts.programmable,
                                allow_hard_reset, problems, warnings)
            if spec is not None:
                specs[name] = spec
    for name, node in graph.nodes.items():
        if type(node) in SUPPORTED_NODES:
            continue
        hint = _HINTS.get(type(node))
        if hint is None:
            hint = ("the graph is already fixed-point" if node.stage == "fixed" else
                    "not a float SNN node the quantizer handles; supported: "
                    + ", ".join(t.__name__ for t in SUPPORTED_NODES))
        problems.append(f"{name} ({node.type_name}): {hint}")
    if problems:
        raise UnsupportedError(f"cannot quantize for {opts.target_name}: " + "; ".join(problems))
    if len(graph.inputs) != 1:
        raise UnsupportedError(f"cannot quantize a graph with {len(graph.inputs)} Input nodes; "
                               "hw_sim and Lava take exactly one")
    graph, add_notes = distribute_spike_adds(graph)
    warnings.extend(add_notes)
    graph, folded, fold_problems = fold_pooling(graph)
    shapes = graph.shapes
    problems.extend(fold_problems)
    x_calib = _check_calib(graph, calib)

    # -------------------------------------------------------------- input encoding
    in_name = graph.inputs[0]
    encoding = encoder or meta.get("encoder") or "spikes"
    if encoding not in ENCODINGS:
        raise UnsupportedError(f"input encoding {encoding!r} is not one of "
                               f"{', '.join(ENCODINGS)}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer))
                              or steps < 1):
        raise QuantizationError(f"steps={steps!r} must be a positive integer")
    steps = int(steps if steps is not None else meta.get("timesteps") or 0)
    if steps <= 0:
        steps = 100
        warnings.append("no time step count (metadata 'timesteps' or steps=): assumed 100 steps "
                        "for the accumulator's headroom")
    input_info: dict[str, Any] = {"encoding": encoding}
    if encoding == "direct":
        if opts.message_bits_max == 0:
            problems.append(f"{in_name} (Input): direct (analog) input needs graded spikes, "
                            f"which {opts.target_name} lacks; encode the input as spikes "
                            "(Poisson) or use a target with graded spikes such as loihi2")
        if isinstance(input_bits, bool) or not isinstance(input_bits, (int, np.integer)) or \
                not 1 <= input_bits <= min(24, max(opts.message_bits_max, 1)):
            problems.append(f"{in_name} (Input): input_bits={input_bits!r} must be an integer "
                            f"in [1, {min(24, max(opts.message_bits_max, 1))}]")
            input_bits = 8
        if input_range is None and x_calib is not None and np.abs(x_calib).max() > 0:
            input_range = float(np.abs(x_calib).max())
        elif input_range is None:
            input_range = 1.0
            warnings.append("direct input without calibration data: assumed |x| <= 1 "
                            "(pass calib= or input_range=)")
        if not (isinstance(input_range, (int, float)) and math.isfinite(input_range)
                and input_range > 0):
            raise QuantizationError(f"input_range={input_range!r} must be a positive number")
        signed = True if x_calib is None else bool(x_calib.min() < 0)
        qmax = (1 << (int(input_bits) - 1)) - 1 if signed else (1 << int(input_bits)) - 1
        if qmax < 1:
            raise QuantizationError("input_bits=1 leaves no magnitude for signed input; use 2 "
                                    "or more")
        qmin = -qmax if signed else 0
        input_scale = qmax / float(input_range)
        msg_bits = int(input_bits)
        input_info.update(num_message_bits=msg_bits, input_scale=input_scale,
                          input_range=float(input_range), signed=signed)
    else:
        signed = x_calib is not None and bool(x_calib.min() < 0)
        qmin, qmax, input_scale, msg_bits = (-1 if signed else 0), 1, 1.0, 0
        if signed:
            if opts.message_bits_max >= 2:
                msg_bits = 2
                warnings.append("calibration data hold negative values: the input carries "
                                "signed spikes as 2-bit graded events")
            else:
                problems.append(f"{in_name} (Input): the calibration data hold negative values "
                                f"(signed spikes), but {opts.target_name} has binary spikes only "
                                "and would count a -1 as +1; use non-negative inputs")
        input_info.update(num_message_bits=msg_bits, input_scale=1.0, signed=signed)
    if encoding == "poisson":
        input_info["encoder_rescale"] = float(meta.get("encoder_rescale", 1.0))

    # -------------------------------------------------------------- neurons and regions
    regions: dict[str, _Region] = {}
    for name in graph.topo_order:
        if isinstance(graph.nodes[name], _NEURONS):
            regions[name] = _walk_region(graph, name, problems)
    owned = {w.name for r in regions.values() for w in r.weighted} | {
        n for r in regions.values() for n in r.current}
    for name, node in graph.nodes.items():
        if isinstance(node, (*_WEIGHTED, Add)) and name not in owned:
            problems.append(f"{name} ({node.type_name}): does not feed a neuron layer; end the "
                            "network with an I accumulator")
    for name in graph.outputs:
        if not isinstance(graph.nodes[name], _NEURONS):
            problems.append(f"{name} ({graph.nodes[name].type_name}): a graph output must be a "
                            "neuron layer (an I accumulator for logits)")
    carriers = {w.name for r in regions.values() for w in r.weighted if w.carrier}
    for name, node in graph.nodes.items():
        if isinstance(node, _POOLS) and name not in carriers and not any(
                p.startswith(f"{name} (") for p in problems):
            problems.append(f"{name} ({node.type_name}): pools events for a synapse it cannot be "
                            "folded into; pool right before a Conv2d, or Flatten → Affine/Linear")
    efac, ebound = _event_side(graph, shapes, 1.0 / input_scale, float(max(abs(qmin), qmax)),
                               problems)
    for name, region in regions.items():
        if name in specs:
            _attach_weights(graph, region, specs[name], efac, ebound, problems)
    if problems:
        problems = list(dict.fromkeys(problems))
        raise UnsupportedError(f"cannot quantize for {opts.target_name}: " + "; ".join(problems))

    # -------------------------------------------------------------- float calibration run
    float_out: dict[str, np.ndarray] = {}
    float_counts: dict[str, np.ndarray] = {}
    if x_calib is not None:
        # the float reference keeps the BNTT nodes a schedule reproduces
        float_out, float_counts = _float_calibration(float_ref if schedules else graph, x_calib,
                                                     encoding, steps, seed,
                                                     input_info.get("encoder_rescale", 1.0))

    # -------------------------------------------------------------- quantize layer by layer
    new_nodes: dict[str, Node] = {}
    layer_reports: dict[str, LayerReport] = {}
    layer_meta: dict[str, Any] = {}
    output_scale: dict[str, float] = {}
    names = [n for n in graph.topo_order if n in specs]
    iterator = names
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(names, desc="quantize", unit="layer")
    for name in iterator:
        rep, nodes_out = _quantize_layer(graph, regions[name], specs[name], opts, steps,
                                         float_out.get(name), schedules.get(name))
        new_nodes.update(nodes_out)
        layer_reports[name] = rep
        layer_meta[name] = {"scale": rep.scale, "threshold_mant": rep.threshold_mant,
                            "weight_exp": {s.name: s.weight_exp for s in rep.synapses}}
        if rep.kind == "I":
            output_scale[name] = float(rep.scale)  # type: ignore[arg-type]
    for name, node in graph.nodes.items():
        if name in new_nodes:
            continue
        if isinstance(node, Input):
            new_nodes[name] = Input(shape=node.shape, num_message_bits=msg_bits)
        else:  # Flatten, Concat on the event side
            new_nodes[name] = node
    fixed_meta = {k: meta[k] for k in ("timesteps", "dt", "encoder", "encoder_rescale",
                                       "source", "model") if k in meta}
    fixed = Graph({n: new_nodes[n] for n in graph.nodes}, graph.edges, fixed_meta)
    depths = pipeline_depths(fixed)
    fixed_meta.update(
        kind="snn", stage="fixed", target=opts.target_name, input_encoding=encoding,
        input_scale=float(input_scale), input_qrange=[int(qmin), int(qmax)],
        quantization=layer_meta,
        output_scale=(next(iter(output_scale.values())) if len(output_scale) == 1
                      else dict(output_scale)),
        output_depth={n: depths[n] for n in graph.outputs}, folded_pools=folded,
    )
    if bntt is not None and had_bntt:
        fixed_meta["bntt"] = bntt
    fixed = Graph(fixed.nodes, fixed.edges, fixed_meta).validate()
    for name, rep in layer_reports.items():
        rep.depth = depths[name]
    warnings.extend(_structure_warnings(fixed, depths))

    report = QuantReport(target=opts.target_name, weight_bits=opts.weight_bits,
                         input=input_info, output_scale=output_scale, folded_pools=folded,
                         layers=[layer_reports[n] for n in graph.nodes if n in layer_reports],
                         warnings=warnings)
    for rep in report.layers:
        report.warnings.extend(f"{rep.name}: {w}" for w in rep.warnings)
    if x_calib is not None:
        _fixed_calibration(fixed, x_calib, steps, seed, report, float_out, float_counts,
                           progress)
    return fixed, report


def _deploy_bntt(graph: Graph, bntt: str | None, opts: _Options
                 ) -> tuple[Graph, dict[str, BNTTSchedule], Graph]:
    """Apply the ``bntt`` option: ``(graph without BNTT, schedules by neuron, float reference)``.

    ``None`` leaves the graph as it is (its BNTT nodes are refused later, with a hint);
    ``"fold"`` folds BNTT and batch norm into the synapses; ``"schedule"`` splits each BNTT
    into its synapse and a :class:`~neurodeploy.passes.bntt.BNTTSchedule` (the float reference
    is then the graph as given, BNTT included)."""
    if bntt is not None and bntt not in BNTT_MODES:
        raise QuantizationError(f"bntt={bntt!r} is not one of {', '.join(map(repr, BNTT_MODES))} "
                                "(or None)")
    names = [n for n, node in graph.nodes.items() if isinstance(node, BNTT)]
    if bntt is None or not names:
        return graph, {}, graph
    if bntt == "fold":
        from .bntt import fold_bntt
        from .fold_bn import fold_batchnorm

        folded = fold_batchnorm(fold_bntt(graph)[0])
        return folded, {}, folded
    if not opts.programmable:
        raise UnsupportedError(
            f"cannot quantize for {opts.target_name}: " + "; ".join(
                f"{n} (BNTT): an exact per-step gain/bias schedule needs programmable neurons, "
                f"which {opts.target_name} lacks; fold BNTT into the synapses instead "
                "(bntt='fold', CLI --bntt fold) or use a target such as loihi2" for n in names))
    split, schedules = split_bntt(graph)
    return split, schedules, graph


def _quantize_gain(ratio: np.ndarray) -> tuple[np.ndarray, int, float]:
    """``(mantissas, gain_exp, max abs error)`` of per-step gains ``ratio`` (``(T, C)``, in
    ``[-1, 1]``): the largest exponent up to :data:`BNTT_GAIN_EXP` whose rounded mantissas fit
    signed 16 bits."""
    top = float(np.abs(ratio).max(initial=0))
    lo, hi = GAIN_MANT_RANGE
    exp = next((e for e in range(BNTT_GAIN_EXP, -1, -1) if round(math.ldexp(top, e)) <= hi), 0)
    mant = np.clip(np.round(np.ldexp(ratio, exp)), lo, hi).astype(np.int64)
    err = float(np.abs(np.ldexp(mant.astype(np.float64), -exp) - ratio).max(initial=0))
    return mant, exp, err


def _attach_weights(graph: Graph, region: _Region, spec: _Neuron,
                    efac: dict[str, np.ndarray | None], ebound: dict[str, float],
                    problems: list[str]) -> None:
    """Fill each weighted node's float weights, factor array ``F`` and input event bound."""
    shape = graph.shapes[region.target]
    rowf = spec.gain / spec.theta
    row = rowf[:, 0, 0] if len(shape) == 3 else rowf.reshape(-1)
    for w in region.weighted:
        node = graph.nodes[w.name]
        pred = graph.predecessors(w.name)[0]
        ef = efac.get(pred)
        if ef is None:
            problems.append(f"{w.name} ({node.type_name}): fed by the synaptic current of "
                            f"{pred} ({graph.nodes[pred].type_name}) without a neuron in "
                            "between; merge the two synapses or add a neuron layer")
            continue
        w.event_bound = ebound[pred]
        if isinstance(node, (Affine, Linear)):
            w.weight = np.ascontiguousarray(node.weight, dtype=np.float64)
            w.factors = _outer_factors(row, ef, w.factor)
        elif isinstance(node, Conv2d):
            w.weight = np.ascontiguousarray(node.weight, dtype=np.float64)
            idx = _conv_input_index(w.weight, node.groups)
            ef_in = ef[idx]
            w.factors = (_outer_factors(row, ef_in[0], w.factor) if _same_values(ef_in)
                         else row[:, None] * ef_in * w.factor)[:, :, None, None]
        else:  # a pool carrying the layer's scale: one shared weight
            own = 1.0 / (node.kernel_size[0] * node.kernel_size[1]) \
                if isinstance(node, AvgPool2d) else 1.0
            if not (_uniform(row) and _uniform(ef)):
                problems.append(f"{w.name} ({node.type_name}): its one weight cannot carry "
                                "per-channel scales (input or neuron gains differ by channel); "
                                "put a depthwise Conv2d there")
                continue
            w.weight = np.array([own])
            w.factors = np.array([row.reshape(-1)[0] * ef.reshape(-1)[0] * w.factor / own])


def _same_values(arr: np.ndarray) -> bool:
    """Whether every element of ``arr`` has the first one's bits (``0.0`` and ``-0.0`` differ)."""
    flat = np.ascontiguousarray(arr, dtype=np.float64).reshape(-1)
    return flat.size == 0 or bool(np.all(flat.view(np.int64) == flat.view(np.int64)[0]))


def _outer_factors(row: np.ndarray, ef: np.ndarray, factor: float) -> np.ndarray:
    """``row[:, None] · ef[None, :] · factor`` with an axis of length 1 where ``row`` or ``ef``
    is constant (every element computed as in the full product)."""
    ef = np.asarray(ef, dtype=np.float64).reshape(-1)
    if _same_values(ef):
        ef = ef[:1]
    if _same_values(row):
        row = row[:1]
    return row[:, None] * ef[None, :] * factor


def _fit_limit(top: float, bottom: float, bits: int, exp_max: int) -> float:
    """Largest scale at which weights spanning ``[bottom, top]`` fit the mantissa grid at
    ``exp_max``."""
    if top == 0 and bottom == 0:
        return math.inf
    mode = "excitatory" if bottom >= 0 else "inhibitory" if top <= 0 else "mixed"
    _, lo, hi = weight_grid(bits, mode)
    lim = math.inf
    if top > 0:
        lim = min(lim, math.ldexp(hi, exp_max) / top)
    if bottom < 0:
        lim = min(lim, math.ldexp(-lo, exp_max) / -bottom)
    return lim


def _pow2_floor(x: float) -> float:
    return math.ldexp(1.0, math.floor(math.log2(x)))


def _choose_scale(region: _Region, spec: _Neuron, opts: _Options, conv_like: dict[str, bool],
                  steps: int, vb_norm: np.ndarray, float_max_v: float | None
                  ) -> tuple[float, str]:
    """The layer's scale ``S`` and how it was reached (``"default"``, ``"lowered"``,
    ``"raised"``, ``"headroom"``, ``"calibrated"``)."""
    ranges = [_product_range(w.weight, w.factors) for w in region.weighted]
    s_hi = min((_fit_limit(top, bottom, opts.weight_bits, opts.exp_max)
                for top, bottom in ranges), default=math.inf)
    if not spec.spiking:
        if float_max_v is not None and float_max_v > 0:
            bound, status, room = float_max_v, "calibrated", I_HEADROOM_CALIB
        else:
            per_step = float(np.abs(vb_norm).max(initial=0))
            for w in region.weighted:
                per_step += _product_row_abs_max(w.weight, w.factors) * w.event_bound * w.gain
            bound, status, room = steps * per_step, "headroom", 1.0
        s = _pow2_floor(room * M24 / 64 / bound) if bound > 0 else float(opts.threshold_mant)
        s = min(s, float(1 << 20))
        if s > s_hi:
            s, status = _pow2_floor(s_hi), "lowered"
        return s, status
    s = float(opts.threshold_mant)
    if s > s_hi:
        return (float(math.floor(s_hi)) if s_hi >= 1 else s_hi), "lowered"
    # Raise S while even the largest synapse underuses its mantissa at its smallest exponent.
    room = math.inf
    for w, (top, bottom) in zip(region.weighted, ranges):
        peak = max(abs(top), abs(bottom))
        if peak == 0:
            continue
        e_min = opts.conv_exp_min if conv_like[w.name] else opts.exp_min
        _, _, hi = weight_grid(opts.weight_bits, "mixed")
        room = min(room, math.ldexp(hi, e_min) / (s * peak))
    if math.isfinite(room) and room >= 2:
        raised = min(s * _pow2_floor(room), float(opts.threshold_cap))
        if math.isfinite(s_hi):
            raised = min(raised, float(math.floor(s_hi)))
        if raised > s:
            return float(raised), "raised"
    return s, "default"


def _quantize_layer(graph: Graph, region: _Region, spec: _Neuron, opts: _Options, steps: int,
                    float_v: np.ndarray | None, schedule: BNTTSchedule | None = None
                    ) -> tuple[LayerReport, dict[str, Node]]:
    name = region.target
    shape = graph.shapes[name]
    warnings: list[str] = []
    bcur = _region_bias(graph, region, shape)
    vb = spec.gain * bcur * spec.bias_factor + spec.leak_bias  # float v per step
    vb_steps = None
    if schedule is not None:  # per-step bias currents of a BNTT schedule: (T, *shape)
        current = schedule.current.reshape(
            (schedule.timesteps, shape[0]) + (1,) * (len(shape) - 1))
        vb_steps = spec.gain * (bcur + current) * spec.bias_factor + spec.leak_bias
        vb = np.abs(vb_steps).max(axis=0)  # the largest per step (the I layer's headroom)
    vb_norm = vb / spec.theta
    if spec.kind == "CubaLIF" and (np.any(bcur) or (schedule is not None
                                                   and np.any(schedule.current))):
        warnings.append("a bias into a CubaLIF is added to v at its steady-state value (the "
                        "synaptic current's rise is skipped)")
    conv_like = {w.name: not isinstance(graph.nodes[w.name], (Affine, Linear))
                 for w in region.weighted}
    float_max_v = None if float_v is None else float(np.abs(float_v).max(initial=0))
    s, status = _choose_scale(region, spec, opts, conv_like, steps, vb_norm, float_max_v)
    if status == "lowered":
        warnings.append(f"weights too large for the exponent range: scale lowered to {s:.6g} "
                        "a-units per threshold, fewer threshold bits")

    # ---- synapses
    out_nodes: dict[str, Node] = {}
    syn_reports: list[SynapseReport] = []
    a_worst = 0.0
    for w in region.weighted:
        node = graph.nodes[w.name]
        e_min = opts.conv_exp_min if conv_like[w.name] else opts.exp_min
        sq = _quantize_products(w.weight, w.factors, s, num_weight_bits=opts.weight_bits,
                                exp_min=e_min, exp_max=opts.exp_max)
        wq = sq.quant
        mant = wq.mantissa
        eff = s * w.factors  # the same values as s·F broadcast to the weights' shape
        if isinstance(node, (Affine, Linear)):
            out_nodes[w.name] = QDense(weight=mant, weight_exp=wq.weight_exp,
                                       num_weight_bits=wq.num_weight_bits,
                                       sign_mode=wq.sign_mode)
        elif isinstance(node, Conv2d):
            out_nodes[w.name] = QConv2d(weight=mant, stride=node.stride, padding=node.padding,
                                        dilation=node.dilation, groups=node.groups,
                                        weight_exp=wq.weight_exp,
                                        num_weight_bits=wq.num_weight_bits,
                                        sign_mode=wq.sign_mode)
        else:
            out_nodes[w.name] = QSumPool2d(kernel_size=node.kernel_size, stride=node.stride,
                                           padding=node.padding, weight=int(mant.reshape(-1)[0]),
                                           weight_exp=wq.weight_exp)
        syn_a = sq.row_abs_max * math.ldexp(1.0, wq.weight_exp) * w.event_bound * w.gain
        a_worst += syn_a
        syn_u = 64.0 * syn_a
        syn_reports.append(SynapseReport(
            name=w.name, type=node.type_name,
            scale=float(eff.reshape(-1)[0]) if _uniform(eff) else None,
            scale_range=(float(eff.min()), float(eff.max())),
            weight_exp=wq.weight_exp, num_weight_bits=wq.num_weight_bits,
            sign_mode=wq.sign_mode, max_mantissa=sq.max_mantissa,
            sqnr_db=sq.sqnr_db, clipped_fraction=wq.clipped_fraction,
            underflow_fraction=wq.underflow_fraction, exp_clamped=wq.exp_clamped,
            all_zero=wq.all_zero, worst_case_u=syn_u, overflow_risk=syn_u / M24,
        ))
        if wq.all_zero:
            warnings.append(f"{w.name}: all weights are zero (exponent 0, zero mantissas)")
        if wq.clipped_fraction > 0:
            warnings.append(f"{w.name}: {wq.clipped_fraction:.1%} of the weights saturated")
        if wq.exp_clamped == "min":
            warnings.append(f"{w.name}: weights too small for the smallest exponent "
                            f"{wq.weight_exp}; {wq.underflow_fraction:.1%} of them round to zero")
        if wq.weight_exp < 0 and conv_like[w.name]:
            warnings.append(f"{w.name}: {node.type_name} exponent {wq.weight_exp} < 0 cannot run "
                            "on Lava's fixed_pt Conv (quantize with lava_compatible=True)")

    # ---- neuron
    if spec.spiking:
        theta_mant = max(1, int(round(s)))
        theta_err = theta_mant / s - 1.0
        if theta_mant != s and round(s) < 1:
            warnings.append("threshold mantissa rounded up to 1: weights are huge next to the "
                            "threshold")
    else:
        theta_mant, theta_err = VTH_MANT_MAX, 0.0
    vdecay = int(round(4096 * spec.vdecay / opts.decay_step)) * opts.decay_step
    cdecay = 4096 if spec.cdecay >= 1.0 else int(
        round(4096 * spec.cdecay / opts.decay_step)) * opts.decay_step
    decay_err = abs(vdecay / 4096 - spec.vdecay)
    if spec.vdecay > 0 and vdecay == 0:
        warnings.append(f"leak 1-λ = {spec.vdecay:.3g} rounds to 0 in the 12-bit decay: the "
                        "neuron integrates without leak")
    if spec.cdecay < 1.0 and cdecay == 0:
        warnings.append("current decay rounds to 0: the synaptic current never decays")
    schedule_info = None
    if schedule is None:
        bias_target = 64.0 * s * vb_norm
    else:  # one bias row per step and channel
        per_step = (64.0 * s * vb_steps / spec.theta).reshape(schedule.timesteps, shape[0], -1)
        tol = 1e-9 * max(float(np.abs(per_step).max(initial=0)), 1.0)
        if np.abs(per_step - per_step[..., :1]).max(initial=0) > tol:
            raise UnsupportedError(
                f"{name} ({spec.kind}): its per-step bias differs within a channel (per-neuron "
                "v_leak or thresholds); a BNTT schedule holds one bias per channel and step")
        bias_target = per_step[..., 0]
    bias_mant, bias_exp, bias_over, bias_abs_err = _quantize_bias(bias_target, opts.bias_mant_max,
                                                                 opts.bias_exp_min)
    bias_err = bias_abs_err / (64.0 * s)
    if schedule is not None:
        bias_mant = np.broadcast_to(np.asarray(bias_mant, dtype=np.int64),
                                    bias_target.shape).copy()
        gain_mant, gain_exp, gain_err = _quantize_gain(schedule.gain)
        schedule_info = {"bntt": schedule.bntt, "timesteps": schedule.timesteps,
                         "gain_exp": gain_exp, "gain_error": gain_err}
    if bias_over > 0:
        warnings.append(f"{bias_over:.1%} of the biases overflow the "
                        f"{opts.bias_mant_max.bit_length() + 1}-bit mantissa at exponent 7 and "
                        "were clipped")
    if schedule is None:
        out_nodes[name] = QCubaLIF(threshold=theta_mant, current_decay=cdecay,
                                   voltage_decay=vdecay if spec.spiking else 0, bias=bias_mant,
                                   bias_exp=bias_exp, reset=spec.reset)
    else:
        out_nodes[name] = QCubaBNTT(threshold=theta_mant, current_decay=cdecay,
                                    voltage_decay=vdecay if spec.spiking else 0, bias=bias_mant,
                                    bias_exp=bias_exp, reset=spec.reset, gain=gain_mant,
                                    gain_exp=gain_exp)
    u_worst = 64.0 * a_worst * (4096.0 / cdecay if 0 < cdecay < 4096 else 1.0)
    if cdecay == 0 and a_worst > 0:
        u_worst = math.inf
    risk = u_worst / M24
    if risk > 1:
        warnings.append(f"worst-case |u| = {u_worst:.3g} is {risk:.2f}x the 2**23 range of u; "
                        "it wraps if that many inputs arrive at once (check calib_max_abs_u)")
    theta = spec.theta
    scale = (s / float(theta.reshape(-1)[0])) if _uniform(theta) else None
    rep = LayerReport(
        name=name, kind=spec.kind, depth=0, neurons=int(np.prod(shape)), scale=scale,
        scale_status=status, threshold_mant=theta_mant, threshold_error=theta_err,
        voltage_decay=vdecay if spec.spiking else 0, current_decay=cdecay,
        decay_error=decay_err if spec.spiking else 0.0, reset=spec.reset, bias_exp=bias_exp,
        bias_overflow_fraction=bias_over, bias_error=bias_err, worst_case_u=u_worst,
        overflow_risk=risk, synapses=syn_reports, warnings=warnings, schedule=schedule_info,
    )
    return rep, out_nodes


def _quantize_bias(target: np.ndarray, mant_max: int, exp_min: int = 0
                   ) -> tuple[np.ndarray | int, int, float, float]:
    """``(mantissas, exponent, overflow fraction, max abs error)`` with
    ``mantissa·2**exp ≈ target`` (v units per step), the smallest exponent in
    ``[exp_min, 7]``."""
    if not np.any(target):
        return 0, 0, 0.0, 0.0
    exp = next((e for e in range(exp_min, 8)
                if np.abs(np.round(np.ldexp(target, -e))).max() <= mant_max), None)
    over = 0.0
    if exp is None:
        exp = 7
        raw = np.round(np.ldexp(target, -exp))
        over = float(np.mean(np.abs(raw) > mant_max))
    mant = np.clip(np.round(np.ldexp(target, -exp)), -mant_max, mant_max).astype(np.int64)
    err = float(np.abs(np.ldexp(mant.astype(np.float64), exp) - target).max())
    if _uniform(mant):
        return int(mant.reshape(-1)[0]), exp, over, err
    return mant, exp, over, err


def _structure_warnings(fixed: Graph, depths: dict[str, int]) -> list[str]:
    """Timing differences from the float graph and what the Lava backend cannot run."""
    out = []
    for name, node in fixed.nodes.items():
        preds = fixed.predecessors(name)
        if isinstance(node, (Add, Concat)) and len(preds) > 1:
            ds = sorted({depths[p] for p in preds})
            if len(ds) > 1:
                out.append(f"{name} ({node.type_name}): its inputs arrive after different "
                           f"pipeline depths ({', '.join(map(str, ds))} synapse delays), which "
                           "the float graph does not have")
        if type(node) is QCubaLIF and node.reset == "subtract":
            out.append(f"{name}: reset='subtract' runs on hw_sim and on Lava as neurodeploy's "
                       "custom LIFSoftReset process (programmable neurons); lava-dl netx files "
                       "cannot hold it")
        if isinstance(node, QCubaBNTT):
            out.append(f"{name}: the BNTT schedule runs on hw_sim and on Lava as neurodeploy's "
                       "custom CubaBNTT process (programmable neurons); lava-dl netx files "
                       "cannot hold it")
    return out


# ============================================================================================
# Inputs and calibration
# ============================================================================================


def _float_events(x: np.ndarray, encoding: str, steps: int, seed: int, rescale: float,
                  timed: bool, offset: int = 0) -> np.ndarray:
    """What the float graph's Input receives: the batch itself (direct input, spikes, or
    Poisson trains already drawn) or Poisson spike trains drawn from it."""
    if encoding == "poisson" and not timed:
        from .convert import poisson_spikes

        spikes = poisson_spikes(torch.as_tensor(x, dtype=torch.float64), steps, seed=seed,
                                rescale=rescale, offset=offset)
        return spikes.numpy()
    return x


def _float_array(x: Any, what: str) -> np.ndarray:
    """``x`` (array-like or tensor) as float64; ``what`` names it when it is not numeric."""
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise NeurodeployError(f"{what} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def quantize_inputs(fixed_graph: Graph, x: Any, *, steps: int | None = None, seed: int = 0,
                    offset: int = 0) -> np.ndarray:
    """Integer input events ``(B, *input_shape, T)`` (int64) of a float batch for a graph made
    by :func:`quantize`; run them with ``input_mode="spikes"``.

    ``x`` is ``(B, *input_shape)`` (the same input every step; Poisson spike trains are drawn
    with :func:`neurodeploy.passes.convert.poisson_spikes` from ``seed``, sample ``i`` using
    ``offset + i``) or ``(B, *input_shape, T')`` with ``T' >= T`` (per-step values; for Poisson
    encoding, spike trains already drawn). Direct input becomes
    ``clip(round(x·input_scale), qmin, qmax)``; spikes must be integers within the input's
    range (0/1 for a binary input). ``T`` is ``steps`` or ``metadata["timesteps"]``.

    Raises:
        NeurodeployError: the graph has no quantized input, or ``x`` has the wrong shape.
        QuantizationError: spikes outside the input's range.
    """
    meta = fixed_graph.metadata
    encoding = meta.get("input_encoding")
    if encoding not in ENCODINGS or len(fixed_graph.inputs) != 1:
        raise NeurodeployError("the graph has no quantized input (metadata 'input_encoding'); "
                               "make it with passes.quantize.quantize")
    shape = tuple(fixed_graph.shapes[fixed_graph.inputs[0]])
    steps = int(steps if steps is not None else meta.get("timesteps") or 0)
    if steps <= 0:
        raise NeurodeployError("give steps= (the graph's metadata has no 'timesteps')")
    arr = _float_array(x, "inputs")
    timed = arr.ndim == len(shape) + 2 and arr.shape[1:-1] == shape
    if not timed and not (arr.ndim == len(shape) + 1 and arr.shape[1:] == shape):
        dims = ", ".join(map(str, shape))
        raise NeurodeployError(f"inputs have shape {arr.shape}; expected (batch, {dims}) or "
                               f"(batch, {dims}, T) with T >= {steps}")
    if timed and arr.shape[-1] < steps:
        raise NeurodeployError(f"inputs hold {arr.shape[-1]} time steps but {steps} were "
                               "requested")
    if not np.all(np.isfinite(arr)):
        raise NeurodeployError("inputs hold NaN or infinite values")
    qmin, qmax = (int(v) for v in meta.get("input_qrange", (0, 1)))
    if encoding == "direct":
        q = np.clip(np.round(arr * float(meta["input_scale"])), qmin, qmax)
    else:
        if encoding == "poisson" and not timed:
            arr = _float_events(arr, "poisson", steps, seed,
                                float(meta.get("encoder_rescale", 1.0)), False, offset)
            timed = True
        if not np.array_equal(arr, np.round(arr)) or arr.min(initial=0) < qmin or \
                arr.max(initial=0) > qmax:
            hint = (" (analog input? quantize the graph with encoder='direct')"
                    if encoding == "spikes" else "")
            raise QuantizationError(f"input spikes must be integers in [{qmin}, {qmax}] for "
                                    f"this graph's {encoding!r} input{hint}")
        q = arr
    if timed:
        q = q[..., :steps]
    else:
        q = np.repeat(q[..., None], steps, axis=-1)
    return q.astype(np.int64)


def _bias_per_step(node: QCubaLIF, shape: tuple[int, ...], depth: int, steps: int
                   ) -> np.ndarray:
    """The bias added to v at each step, ``(*shape, 1)`` (static) or ``(*shape, steps)``
    (a ``QCubaBNTT`` schedule, row ``(t − depth) mod T`` at step ``t``)."""
    if isinstance(node, QCubaBNTT):
        rows = node.bias[(np.arange(steps) - depth) % node.timesteps] << node.bias_exp
        rows = rows.T.reshape((shape[0],) + (1,) * (len(shape) - 1) + (steps,))
        return np.broadcast_to(rows, (*shape, steps))
    return np.broadcast_to(np.asarray(node.bias, dtype=np.int64) << node.bias_exp,
                           shape)[..., None]


def _chunks(n: int, per_sample_bytes: float) -> list[tuple[int, int]]:
    size = max(1, int(TRACE_BUDGET_BYTES // max(per_sample_bytes, 1.0)))
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _float_calibration(graph: Graph, x: np.ndarray, encoding: str, steps: int, seed: int,
                       rescale: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Float run on the calibration batch: ``I`` potentials ``(B, *shape, steps)`` and spike
    counts per spiking layer."""
    from ..backends import floatsim

    acc = [n for n, node in graph.nodes.items() if isinstance(node, I)]
    record = {n: ["v"] for n in acc}
    sim = floatsim.FloatSim(graph)
    per_sample = 8.0 * steps * sum(int(np.prod(graph.shapes[n])) for n in acc)
    outs: dict[str, list[np.ndarray]] = {n: [] for n in acc}
    counts: dict[str, list[np.ndarray]] = {}
    timed = x.ndim == len(graph.shapes[graph.inputs[0]]) + 2
    for a, b in _chunks(len(x), per_sample):
        ev = _float_events(x[a:b], encoding, steps, seed, rescale, timed, offset=a)
        res = sim.run(ev, steps, record=record)
        for n in acc:
            outs[n].append(res.traces[f"{n}.v"])
        for n, c in res.spike_counts.items():
            counts.setdefault(n, []).append(c)
    return ({n: np.concatenate(v) for n, v in outs.items()},
            {n: np.concatenate(v) for n, v in counts.items()})


def _fixed_calibration(fixed: Graph, x: np.ndarray, steps: int, seed: int, report: QuantReport,
                       float_out: dict[str, np.ndarray], float_counts: dict[str, np.ndarray],
                       progress: bool) -> None:
    """hw_sim run on the calibration batch (``steps`` input steps plus the pipeline depth, with
    the staggered reset of :mod:`neurodeploy.inference`); fills the layers' ``calib_*`` fields
    and ``report.calib``."""
    from ..inference import deployed_inputs, run_deployed

    depths = pipeline_depths(fixed)
    extra = max((depths[n] for n in fixed.neurons), default=0)
    total = steps + extra
    neurons = fixed.neurons
    per_sample = 9.0 * total * sum(int(np.prod(fixed.shapes[n])) for n in neurons)
    stats = {n: {"u": 0, "v": 0, "sat": 0, "cnt": 0, "spk": 0} for n in neurons}
    finals: dict[str, list[np.ndarray]] = {n: [] for n in neurons
                                           if isinstance(fixed.nodes[n], QCubaLIF)
                                           and fixed.nodes[n].threshold == VTH_MANT_MAX}
    chunks = _chunks(len(x), per_sample)
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, desc="calibrate", unit="chunk")
    for a, b in chunks:
        inputs = deployed_inputs(fixed, x[a:b], steps, seed=seed, offset=a, extra=extra)
        res = run_deployed(fixed, inputs, record=["u", "v", "s"])
        for n in neurons:
            node: QCubaLIF = fixed.nodes[n]  # type: ignore[assignment]
            u = res.traces[f"{n}.u"].astype(np.int64)
            v = res.traces[f"{n}.v"].astype(np.int64)
            s = res.traces[f"{n}.s"]
            st = stats[n]
            st["u"] = max(st["u"], int(np.abs(u).max(initial=0)))
            st["v"] = max(st["v"], int(np.abs(v).max(initial=0)))
            # The potential before the reset: decayed previous v + u + bias (Lava's order).
            v_prev = np.concatenate([np.zeros_like(v[..., :1]), v[..., :-1]], axis=-1)
            v_prev[..., depths[n]] = 0  # the staggered reset clears v before step depth
            bias = _bias_per_step(node, fixed.shapes[n], depths[n], total)[None]
            pre = np.trunc(v_prev * ((4096 - node.voltage_decay) / 4096)) + u + bias
            st["sat"] += int(np.count_nonzero(np.abs(pre) >= V_MAX))
            st["cnt"] += pre.size
            d = depths[n]
            st["spk"] += int(s[..., d:d + steps].sum())
            if n in finals:
                finals[n].append(v[..., d + steps - 1])
    for rep in report.layers:
        st = stats[rep.name]
        rep.calib_max_abs_u = st["u"]
        rep.calib_max_abs_v = st["v"]
        rep.calib_v_saturation_fraction = st["sat"] / max(st["cnt"], 1)
        if rep.calib_v_saturation_fraction > 0:
            msg = (f"{rep.name}: the potential hit the 24-bit limit in "
                   f"{rep.calib_v_saturation_fraction:.2%} of neuron-steps on the calibration "
                   "data")
            rep.warnings.append(msg.split(": ", 1)[1])
            report.warnings.append(msg)
        if rep.kind != "I":
            denom = max(rep.neurons * steps * len(x), 1)
            rep.calib_rate_fixed = st["spk"] / denom
            if rep.name in float_counts:
                rep.calib_rate_float = float(float_counts[rep.name].sum()) / denom
    info: dict[str, Any] = {"samples": int(len(x)), "steps": int(steps),
                            "pipeline_depth": int(extra)}
    if len(finals) == 1:
        (name,) = finals
        s = report.output_scale[name]
        fixed_logits = np.concatenate(finals[name]).reshape(len(x), -1) / (64.0 * s * steps)
        float_logits = float_out[name][..., steps - 1].reshape(len(x), -1) / steps
        info["argmax_agreement"] = float(np.mean(
            fixed_logits.argmax(axis=1) == float_logits.argmax(axis=1)))
        info["max_abs_logit_error"] = float(np.abs(fixed_logits - float_logits).max())
    report.calib = info
