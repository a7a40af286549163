"""Neuron kinds that Lava's LIF lacks, as custom Lava processes with bit-accurate ``fixed_pt``
models, plus a numpy reference of the BNTT neuron that hw_sim can call.

Notation (all integers): ``a`` is the synaptic input of one step (the Dense/Conv output, already
shifted by the weight exponent), ``M = 2**23``, ``rtz(x, k) = sign(x) * (|x| >> k)`` is a right
shift rounding toward zero, ``wrap24`` is Lava's single conditional wrap of the current into
``(-M, M]`` and ``mu = 4096 - current_decay``, ``mv = 4096 - voltage_decay``.

**LIFSoftReset** (``QCubaLIF(reset="subtract")``): Lava's bit-accurate CUBA-LIF
(``PyLifModelBitAcc``) except for the reset::

    u = wrap24(rtz(u * mu, 12) + a * 2**6)
    v = clip(rtz(v * mv, 12) + u + bias_mant * 2**bias_exp, -(M-1), M-1)
    s = v > vth * 2**6                       # strict
    v = v - vth * 2**6 where s                # soft reset: subtract, do not zero

This is exactly hw_sim's ``reset="subtract"`` (``hw_sim/engine.py``, ``_neuron_step``).

**CubaBNTT** (a CUBA-LIF whose input gain and bias follow a per-time-step, per-channel schedule:
Batch Normalization Through Time folded into the neuron). With ``T`` schedule entries, gain
mantissas ``g (T, C)``, bias mantissas ``b (T, C)``, Lava time step ``tau`` (1-based) and the
layer's pipeline ``phase`` (synapses between it and the input, so that schedule entry 0 meets the
first input the layer sees)::

    k  = (tau - 1 - phase) mod T                                   # schedule index
    a' = clip(rtz(a * g[k, c], gain_exp), -M, M-1)                 # gain, saturated to 24 bits
    u  = wrap24(wrap32(rtz(u * mu, 12) + a' * 2**6))
    v  = clip(wrap32(rtz(v * mv, 12) + u + b[k, c] * 2**bias_exp), -(M-1), M-1)
    s  = v > vth * 2**6
    v  = 0 where s            (reset="zero")   or   v - vth * 2**6 where s   (reset="subtract")

``wrap32`` is the two's-complement overflow of the int32 sums in Lava's numpy model: a gained
input near ``2**23`` makes ``a' * 2**6`` larger than the 24-bit range, so the single
conditional wrap can leave u outside it and later sums can leave int32 (only for such inputs).
This is the arithmetic of the IR node :class:`~neurodeploy.ir.QCubaBNTT` (``phase`` is its
pipeline depth); hw_sim implements the same steps in torch.

``c`` is the neuron's channel: the first axis of an IR ``(C, H, W)`` shape (the last of Lava's
``(W, H, C)``); for a vector ``(N,)`` every neuron is its own channel (``C = N``). A float BNTT
layer ``y = scale[t, c] * x + shift[t, c]`` feeding a neuron quantizes to
``g = round(scale * 2**gain_exp)`` and ``b = round(shift * 2**6 / (s_w * 2**bias_exp))``
with ``s_w`` the synapse scale (float units per ``a`` unit); with ``current_decay = 4096`` the
current has no memory and ``u = a' * 2**6``, i.e. BNTT's affine applied to the step's input.

Both kinds optionally zero u and v before the update of every Lava step with
``tau % reset_interval == reset_offset`` (as Lava's ``LIFReset``).

Lava is imported lazily: this module imports without it (``bntt_neuron_step`` is plain numpy);
the process classes are created on first access (``LIFSoftReset``, ``CubaBNTT``,
``PyLIFSoftResetModelFixed``, ``PyCubaBNTTModelFixed``), which raises
:class:`~neurodeploy.errors.MissingExtraError` when Lava is missing. Absolute imports only: Lava's
process-model search re-executes the files of this folder as top-level modules (which is also
why there is no ``from __future__ import annotations``: dataclasses then need the module in
``sys.modules``).
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from neurodeploy.backends.lava import lazy_lava_classes
from neurodeploy.errors import InvalidIRError
from neurodeploy.ir.nodes import GAIN_EXP_MAX, GAIN_MANT_RANGE, VTH_MANT_MAX

#: 2**23: the 24-bit state bound.
M24 = 1 << 23

_LAZY = ("LIFSoftReset", "CubaBNTT", "PyLIFSoftResetModelFixed", "PyCubaBNTTModelFixed")


# ------------------------------------------------------------------------------------------
# Integer helpers (shared by the reference and the Lava models)
# ------------------------------------------------------------------------------------------


def _rtz(x: np.ndarray, k: int) -> np.ndarray:
    """``x / 2**k`` rounded toward zero, for int64 ``x`` and ``k >= 0``."""
    x = np.asarray(x, dtype=np.int64)
    return np.sign(x) * (np.abs(x) >> k)


def _wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values into int32 (numpy int32 overflow)."""
    return ((np.asarray(x, dtype=np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _wrap24(x: np.ndarray) -> np.ndarray:
    """Lava's single conditional wrap of the current into ``(-2**23, 2**23]``."""
    x = np.where(x > M24, x - 2 * M24, x)
    return np.where(x <= -M24, x + 2 * M24, x)


def _gain(a: np.ndarray, g: np.ndarray, gain_exp: int) -> np.ndarray:
    """``clip(rtz(a * g, gain_exp), -2**23, 2**23 - 1)`` in int64 (exact for |g| < 2**15 and
    int32 ``a``)."""
    prod = np.asarray(a, dtype=np.int64) * np.asarray(g, dtype=np.int64)
    return np.clip(_rtz(prod, gain_exp), -M24, M24 - 1)


# ------------------------------------------------------------------------------------------
# Reference of the BNTT neuron (numpy; hw_sim can call it)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BNTTNeuronParams:
    """Fixed-point parameters of a CubaBNTT layer (see the module docstring for the equations).

    Attributes:
        shape: neuron shape in IR order, ``(C, H, W)`` or ``(N,)``.
        gain: ``(T, C)`` gain mantissas, signed 16-bit.
        gain_exp: right shift of the gain product, in ``[0, 24]``.
        bias: ``(T, C)`` bias mantissas; ``|bias| * 2**bias_exp < 2**23``.
        bias_exp: bias exponent in ``[0, 7]``.
        threshold: threshold mantissa ``vth`` in ``[0, 2**17]`` (compared as ``vth * 2**6``).
        current_decay, voltage_decay: 12-bit decays in ``[0, 4096]`` (``QCubaLIF`` meaning).
        reset: ``"zero"`` or ``"subtract"``.
        phase: pipeline depth of the layer in steps (schedule index 0 at Lava step
            ``phase + 1``).
        reset_interval, reset_offset: optional periodic reset of u and v (Lava ``LIFReset``).
    """

    shape: tuple[int, ...]
    gain: np.ndarray
    gain_exp: int
    bias: np.ndarray
    bias_exp: int = 0
    threshold: int = 1
    current_decay: int = 4096
    voltage_decay: int = 0
    reset: str = "zero"
    phase: int = 0
    reset_interval: int | None = None
    reset_offset: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "gain", np.asarray(self.gain, dtype=np.int64))
        object.__setattr__(self, "bias", np.asarray(self.bias, dtype=np.int64))
        for name in ("gain_exp", "bias_exp", "threshold", "current_decay", "voltage_decay",
                     "phase", "reset_offset"):
            object.__setattr__(self, name, int(getattr(self, name)))
        problems = self.problems()
        if problems:
            raise InvalidIRError(problems, hint="fix the CubaBNTT parameters")

    @property
    def steps(self) -> int:
        """Schedule length T."""
        return int(self.gain.shape[0])

    @property
    def channels(self) -> int:
        """Channel count C (first axis of the IR shape)."""
        return self.shape[0] if self.shape else 1

    def problems(self) -> list[str]:
        """Every violated constraint, as one-line messages."""
        out = []
        if len(self.shape) not in (1, 3) or min(self.shape, default=0) < 1:
            out.append(f"CubaBNTT shape {self.shape} must be (N,) or (C, H, W) with sizes >= 1")
            return out
        c = self.channels
        for name in ("gain", "bias"):
            arr = getattr(self, name)
            if arr.ndim != 2 or arr.shape[1] != c or arr.shape[0] < 1:
                out.append(f"CubaBNTT {name} has shape {arr.shape}, expected (T, {c}) with T >= 1")
        if not out and self.gain.shape[0] != self.bias.shape[0]:
            out.append(f"CubaBNTT gain has T={self.gain.shape[0]} steps, bias "
                       f"T={self.bias.shape[0]}")
        lo, hi = GAIN_MANT_RANGE
        if self.gain.size and (self.gain.min() < lo or self.gain.max() > hi):
            out.append(f"CubaBNTT gain mantissas span [{self.gain.min()}, {self.gain.max()}], "
                       f"outside signed 16-bit [{lo}, {hi}]")
        if not 0 <= self.gain_exp <= GAIN_EXP_MAX:
            out.append(f"CubaBNTT gain_exp={self.gain_exp} outside [0, {GAIN_EXP_MAX}]")
        if not 0 <= self.bias_exp <= 7:
            out.append(f"CubaBNTT bias_exp={self.bias_exp} outside [0, 7]")
        elif self.bias.size and np.abs(self.bias).max() * (1 << self.bias_exp) >= M24:
            out.append("CubaBNTT bias * 2**bias_exp exceeds the 24-bit voltage range")
        if not 0 <= self.threshold <= VTH_MANT_MAX:
            out.append(f"CubaBNTT threshold={self.threshold} outside [0, {VTH_MANT_MAX}]")
        for name in ("current_decay", "voltage_decay"):
            value = getattr(self, name)
            if not 0 <= value <= 4096:
                out.append(f"CubaBNTT {name}={value} outside [0, 4096] (12-bit decay)")
        if self.reset not in ("zero", "subtract"):
            out.append(f"CubaBNTT reset={self.reset!r} not one of ('zero', 'subtract')")
        if self.phase < 0:
            out.append(f"CubaBNTT phase={self.phase} must be >= 0")
        if self.reset_interval is not None and int(self.reset_interval) < 1:
            out.append(f"CubaBNTT reset_interval={self.reset_interval} must be >= 1")
        return out

    def schedule_index(self, t: int) -> int:
        """Schedule row used at 0-based step ``t`` (Lava step ``t + 1``)."""
        return (int(t) - self.phase) % self.steps

    def per_channel(self, row: np.ndarray) -> np.ndarray:
        """A ``(C,)`` row shaped to broadcast over ``(*batch, *shape)`` in IR order."""
        return row.reshape((self.channels,) + (1,) * (len(self.shape) - 1))


def bntt_params(node: Any, shape: tuple[int, ...], *, phase: int = 0,
                reset_interval: int | None = None, reset_offset: int = 0) -> BNTTNeuronParams:
    """The :class:`BNTTNeuronParams` of an IR :class:`~neurodeploy.ir.QCubaBNTT` node.

    Args:
        node: the ``QCubaBNTT`` node.
        shape: its neuron shape in IR order (``graph.shapes[name]``).
        phase: its pipeline depth (``neurodeploy.simulation.pipeline_depths``).
        reset_interval, reset_offset: optional periodic reset; ``reset_offset`` is the Lava
            step phase (``tau % reset_interval``) at which u and v are zeroed.

    Raises:
        InvalidIRError: parameters out of range.
    """
    return BNTTNeuronParams(
        shape=tuple(shape), gain=node.gain, gain_exp=node.gain_exp, bias=node.bias,
        bias_exp=node.bias_exp, threshold=node.threshold, current_decay=node.current_decay,
        voltage_decay=node.voltage_decay, reset=node.reset, phase=phase,
        reset_interval=reset_interval, reset_offset=reset_offset,
    )


def bntt_init_state(params: BNTTNeuronParams, batch: tuple[int, ...] = ()) -> dict:
    """Zero state ``{"u", "v"}``: int64 arrays of shape ``(*batch, *params.shape)``."""
    shape = tuple(batch) + params.shape
    return {"u": np.zeros(shape, dtype=np.int64), "v": np.zeros(shape, dtype=np.int64)}


def bntt_neuron_step(state: dict, a: np.ndarray | int, t: int,
                     params: BNTTNeuronParams) -> np.ndarray:
    """One step of the CubaBNTT neuron, bit-exact with :class:`CubaBNTT`'s fixed_pt model.

    Args:
        state: ``{"u": ..., "v": ...}`` int64 arrays ``(*batch, *params.shape)`` (IR order);
            replaced by the new state (the arrays are not modified in place).
        a: synaptic input of this step, integers broadcastable to the state's shape.
        t: 0-based step index (Lava time step ``t + 1``).
        params: the layer's parameters.

    Returns:
        Spikes: bool array of the state's shape.
    """
    u = np.asarray(state["u"], dtype=np.int64)
    v = np.asarray(state["v"], dtype=np.int64)
    tau = int(t) + 1
    if params.reset_interval is not None and tau % params.reset_interval == \
            params.reset_offset % params.reset_interval:
        u = np.zeros_like(u)
        v = np.zeros_like(v)
    k = params.schedule_index(t)
    g = params.per_channel(params.gain[k])
    b = params.per_channel(params.bias[k]) << params.bias_exp
    a2 = _gain(np.broadcast_to(np.asarray(a, dtype=np.int64), u.shape), g, params.gain_exp)
    u = _wrap24(_wrap32(_rtz(u * (4096 - params.current_decay), 12) + (a2 << 6)))
    v = _wrap32(_rtz(v * (4096 - params.voltage_decay), 12) + u + b)
    v = np.clip(v, -(M24 - 1), M24 - 1)
    vth = params.threshold << 6
    s = v > vth
    v = np.where(s, v - vth, v) if params.reset == "subtract" else np.where(s, 0, v)
    state["u"], state["v"] = u, v
    return s


# ------------------------------------------------------------------------------------------
# Lava processes and models (created lazily)
# ------------------------------------------------------------------------------------------


def _make_classes() -> dict[str, Any]:
    """The Lava processes and their fixed_pt models (called once, by ``_define``)."""
    from lava.magma.core.decorator import implements, requires, tag
    from lava.magma.core.model.py.ports import PyOutPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.process.ports.ports import InPort, OutPort
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.process.variable import Var
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
    from lava.proc.lif.models import AbstractPyLifModelFixed
    from lava.proc.lif.process import LIF

    class LIFSoftReset(LIF):
        """Lava's LIF (same ports and vars) with reset by subtraction: a spike subtracts
        ``vth * 2**6`` from v. Optional ``reset_interval``/``reset_offset`` zero u and v
        periodically as ``LIFReset`` does (``reset_interval=None``: never)."""

        def __init__(self, *, reset_interval: int | None = None, reset_offset: int = 0,
                     **kwargs: Any) -> None:
            super().__init__(reset_interval=reset_interval, reset_offset=reset_offset,
                             **kwargs)

    class _PeriodicReset:
        """Mixin: Lava ``LIFReset``'s periodic zeroing of u and v."""

        def _init_reset(self, proc_params: Any) -> None:
            interval = proc_params.get("reset_interval")
            self.reset_interval = None if interval is None else int(interval)
            offset = int(proc_params.get("reset_offset", 0))
            self.reset_offset = offset % self.reset_interval if self.reset_interval else 0

        def _maybe_reset(self) -> None:
            if self.reset_interval and self.time_step % self.reset_interval == self.reset_offset:
                self.u *= 0
                self.v *= 0

    @implements(proc=LIFSoftReset, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("bit_accurate_loihi", "fixed_pt")
    class PyLIFSoftResetModelFixed(_PeriodicReset, AbstractPyLifModelFixed):
        """``PyLifModelBitAcc`` with ``v -= vth << 6`` at a spike instead of ``v = 0``."""

        s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
        vth: int = LavaPyType(int, np.int32, precision=17)

        def __init__(self, proc_params: Any) -> None:
            super().__init__(proc_params)
            self.effective_vth = 0
            self._init_reset(proc_params)

        def scale_threshold(self) -> None:
            self.effective_vth = np.left_shift(self.vth, self.vth_shift)
            self.isthrscaled = True

        def spiking_activation(self) -> np.ndarray:
            return self.v > self.effective_vth

        def reset_voltage(self, spike_vector: np.ndarray) -> None:
            self.v[spike_vector] -= self.effective_vth

        def run_spk(self) -> None:
            a_in_data = self.a_in.recv()
            self._maybe_reset()
            self.scale_bias()
            if not self.isthrscaled:
                self.scale_threshold()
            self.subthr_dynamics(activation_in=a_in_data)
            s_out = self.spiking_activation()
            self.reset_voltage(spike_vector=s_out)
            self.s_out.send(s_out)

    class CubaBNTT(AbstractProcess):
        """CUBA-LIF with a per-step, per-channel input gain and bias schedule (see the module
        docstring of :mod:`neurodeploy.backends.lava_neurons`). Shapes in Lava order: the
        channel is the last axis of ``shape``; ``gain_mant``/``bias_mant`` are ``(T, C)``.
        ``du``/``dv`` have Lava LIF's meaning (``du = current_decay - 1``)."""

        def __init__(self, *, shape: tuple[int, ...], gain_mant: np.ndarray, gain_exp: int,
                     bias_mant: np.ndarray, bias_exp: int = 0, vth: int = 10, du: int = 4095,
                     dv: int = 0, u: Any = 0, v: Any = 0, reset: str = "zero", phase: int = 0,
                     reset_interval: int | None = None, reset_offset: int = 0,
                     name: str | None = None, **kwargs: Any) -> None:
            gain_mant = np.asarray(gain_mant)
            bias_mant = np.asarray(bias_mant)
            super().__init__(shape=shape, reset=reset, phase=phase,
                             reset_interval=reset_interval, reset_offset=reset_offset,
                             name=name, **kwargs)
            self.a_in = InPort(shape=shape)
            self.s_out = OutPort(shape=shape)
            self.u = Var(shape=shape, init=u)
            self.v = Var(shape=shape, init=v)
            self.du = Var(shape=(1,), init=du)
            self.dv = Var(shape=(1,), init=dv)
            self.vth = Var(shape=(1,), init=vth)
            self.gain_mant = Var(shape=gain_mant.shape, init=gain_mant)
            self.gain_exp = Var(shape=(1,), init=gain_exp)
            self.bias_mant = Var(shape=bias_mant.shape, init=bias_mant)
            self.bias_exp = Var(shape=(1,), init=bias_exp)

    @implements(proc=CubaBNTT, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("bit_accurate_loihi", "fixed_pt")
    class PyCubaBNTTModelFixed(_PeriodicReset, AbstractPyLifModelFixed):
        """Fixed-point CubaBNTT: gain/bias row ``k = (tau - 1 - phase) mod T``, then Lava's
        bit-accurate LIF update with the gained input and that row's bias."""

        s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
        vth: int = LavaPyType(int, np.int32, precision=17)
        gain_mant: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
        gain_exp: int = LavaPyType(int, np.int32, precision=5)
        bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
        bias_exp: int = LavaPyType(int, np.int32, precision=3)

        def __init__(self, proc_params: Any) -> None:
            super().__init__(proc_params)
            self.soft = proc_params["reset"] == "subtract"
            self.schedule_phase = int(proc_params["phase"])
            self._init_reset(proc_params)

        def run_spk(self) -> None:
            a_in_data = self.a_in.recv()
            self._maybe_reset()
            gain = np.asarray(self.gain_mant)
            k = (int(self.time_step) - 1 - self.schedule_phase) % gain.shape[0]
            a2 = _gain(a_in_data, gain[k], int(np.ravel(self.gain_exp)[0]))
            bias_exp = int(np.ravel(self.bias_exp)[0])
            self.effective_bias = np.asarray(self.bias_mant[k], dtype=np.int32) << bias_exp
            self.subthr_dynamics(activation_in=a2.astype(np.int32))
            vth = int(np.ravel(self.vth)[0]) << self.vth_shift
            s_out = self.v > vth
            if self.soft:
                self.v[s_out] -= vth
            else:
                self.v[s_out] = 0
            self.s_out.send(s_out)

    return {"LIFSoftReset": LIFSoftReset, "CubaBNTT": CubaBNTT,
            "PyLIFSoftResetModelFixed": PyLIFSoftResetModelFixed,
            "PyCubaBNTTModelFixed": PyCubaBNTTModelFixed}


_define, __getattr__ = lazy_lava_classes(__name__, _LAZY, _make_classes)


# ------------------------------------------------------------------------------------------
# Factories for the Lava backend
# ------------------------------------------------------------------------------------------


def soft_reset_lif(*, shape: tuple[int, ...], vth: int, du: int, dv: int,
                   bias_mant: np.ndarray | int = 0, bias_exp: int = 0,
                   reset_interval: int | None = None, reset_offset: int = 0,
                   name: str | None = None) -> Any:
    """A :class:`LIFSoftReset` process, taking the same keywords as Lava's ``LIF`` (Lava layout
    ``shape``; ``du = current_decay - 1``; ``vth`` the threshold mantissa) plus an optional
    ``LIFReset``-style ``reset_interval``/``reset_offset`` (Lava step phase).

    Raises:
        MissingExtraError: Lava is not available.
    """
    cls = _define().LIFSoftReset
    return cls(shape=tuple(shape), vth=vth, du=du, dv=dv, bias_mant=bias_mant,
               bias_exp=bias_exp, reset_interval=reset_interval, reset_offset=reset_offset,
               name=name)


def cuba_bntt(params: BNTTNeuronParams, *, name: str | None = None) -> Any:
    """A :class:`CubaBNTT` process for ``params`` (IR-order shape; built in Lava's reversed
    order, where the channel axis comes last).

    Raises:
        MissingExtraError: Lava is not available.
    """
    cls = _define().CubaBNTT
    return cls(
        shape=tuple(reversed(params.shape)),
        gain_mant=params.gain.astype(np.int32),
        gain_exp=params.gain_exp,
        bias_mant=params.bias.astype(np.int32),
        bias_exp=params.bias_exp,
        vth=params.threshold,
        du=params.current_decay - 1,
        dv=params.voltage_decay,
        reset=params.reset,
        phase=params.phase,
        reset_interval=params.reset_interval,
        reset_offset=params.reset_offset,
        name=name,
    )
