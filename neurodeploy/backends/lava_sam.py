"""The on-chip SAM accumulator as a custom Lava process with a bit-accurate ``fixed_pt`` model,
attached to a spiking layer's output port; bit-exact with hw_sim's
:class:`neurodeploy.sam.SamAccumulator`.

**SamAccumulatorProcess** (shape ``(W, H, C)`` in Lava order, channel last): in port ``s_in``
(the layer's spikes), out port ``map_out`` ``(W, H)`` and per neuron an integer trace ``q``.
At Lava step ``tau`` (1-based; ``t = tau − 1``), with ``keep = 4096 − decay`` and
``A = scale``::

    t <  start:  q = 0, map = 0
    t >= start:  q = floor(q·keep / 4096) + A·s          (q ≥ 0: floor is round toward zero)
                 map[x, y] = Σ_c s·q   (inclusive)   or   Σ_c s·(q − A·s)   (exclusive)

``decay = round(4096·(1 − e^{−γ}))`` (:func:`neurodeploy.sam.decay_mantissa`). The map is sent
in the step it is computed; a ``RingBuffer`` sink records it.

:func:`run_sam_lava` builds the Lava network of a fixed-point graph with the Lava backend's
builder, connects one accumulator to each chosen layer's ``s_out`` and returns the maps;
:func:`run_sam_spikes` drives accumulators from recorded spikes (a ``RingBuffer`` source).

Lava is imported lazily (the process classes are created on first access; without Lava,
:class:`~neurodeploy.errors.MissingExtraError`). Absolute imports only and no
``from __future__ import annotations``: Lava re-executes the files of this folder as top-level
modules when it looks for process models (see :mod:`neurodeploy.backends.lava_neurons`).
"""

import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from neurodeploy.backends.lava import lazy_lava_classes
from neurodeploy.errors import NeurodeployError, UnsupportedError

_LAZY = ("SamAccumulatorProcess", "PySamAccumulatorModelFixed")

#: Largest channel sum the int32 output port carries.
_INT32_MAX = (1 << 31) - 1


def _make_classes() -> dict[str, Any]:
    """The Lava processes and their fixed_pt models (called once, by ``_define``)."""
    from lava.magma.core.decorator import implements, requires, tag
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.model.py.ports import PyInPort, PyOutPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.process.ports.ports import InPort, OutPort
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.process.variable import Var
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

    class SamAccumulatorProcess(AbstractProcess):
        """Per-neuron decaying spike trace and its spike-gated channel sum (see the module
        docstring). ``shape`` is Lava's ``(W, H, C)``; ``decay`` the 12-bit decay, ``scale``
        the trace increment per spike, ``mode`` ``"inclusive"``/``"exclusive"``, ``start``
        the 0-based step at which the trace starts."""

        def __init__(self, *, shape: tuple, decay: int, scale: int, mode: str = "inclusive",
                     start: int = 0, name: Any = None, **kwargs: Any) -> None:
            super().__init__(shape=shape, mode=mode, start=start, name=name, **kwargs)
            self.s_in = InPort(shape=shape)
            self.map_out = OutPort(shape=tuple(shape[:-1]))
            self.q = Var(shape=shape, init=0)
            self.decay = Var(shape=(1,), init=decay)
            self.scale = Var(shape=(1,), init=scale)

    @implements(proc=SamAccumulatorProcess, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("bit_accurate_loihi", "fixed_pt")
    class PySamAccumulatorModelFixed(PyLoihiProcessModel):
        """Bit-accurate model: integer trace, floor decay by ``(4096 − decay)/4096``."""

        s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
        map_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=32)
        q: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
        decay: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
        scale: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

        def __init__(self, proc_params: Any) -> None:
            super().__init__(proc_params)
            self.exclusive = proc_params["mode"] == "exclusive"
            self.trace_start = int(proc_params["start"])  # (not "start": a model method)

        def run_spk(self) -> None:
            s = (np.asarray(self.s_in.recv()) != 0).astype(np.int64)
            if self.time_step - 1 < self.trace_start:
                self.map_out.send(np.zeros(self.map_out.shape, dtype=np.int32))
                return
            keep = 4096 - int(np.ravel(self.decay)[0])
            a = int(np.ravel(self.scale)[0])
            q = (np.asarray(self.q, dtype=np.int64) * keep) // 4096 + a * s
            self.q[:] = q
            value = q - a * s if self.exclusive else q
            self.map_out.send((value * s).sum(axis=-1).astype(np.int32))

    return {"SamAccumulatorProcess": SamAccumulatorProcess,
            "PySamAccumulatorModelFixed": PySamAccumulatorModelFixed}


_define, __getattr__ = lazy_lava_classes(__name__, _LAZY, _make_classes)


def sam_process(shape: tuple, *, gamma: float = 0.5, scale: int = 4096,
                mode: str = "inclusive", start: int = 0, name: Any = None) -> Any:
    """A :class:`SamAccumulatorProcess` for a layer of IR shape ``(C, H, W)`` (built in Lava's
    ``(W, H, C)`` order).

    Raises:
        NeurodeployError: bad γ, scale, mode, start or shape, or channel sums that could
            leave the int32 output.
        MissingExtraError: Lava is not available.
    """
    from neurodeploy.sam import ONCHIP_MODES, SamFixedPoint, check_mode

    params = SamFixedPoint(gamma, scale)
    mode = check_mode(mode, ONCHIP_MODES)
    if len(shape) != 3:
        raise UnsupportedError(f"SAM needs a conv layer (C, H, W), got shape {tuple(shape)}")
    if int(start) < 0:
        raise NeurodeployError(f"SAM start step must be >= 0, got {start}")
    if int(shape[0]) * params.max_trace > _INT32_MAX:
        raise NeurodeployError(f"{shape[0]} channels of SAM traces up to {params.max_trace} "
                               "overflow the int32 map port", hint="use a smaller scale")
    cls = _define().SamAccumulatorProcess
    return cls(shape=tuple(int(v) for v in reversed(tuple(shape))), decay=params.delta,
               scale=params.scale, mode=mode, start=int(start), name=name)


def _layers(layers: Mapping[str, int] | Iterable[str]) -> dict[str, int]:
    if isinstance(layers, Mapping):
        return {str(k): int(v) for k, v in layers.items()}
    if isinstance(layers, str):
        return {layers: 0}
    return {str(k): 0 for k in layers}


def _map_to_ir(data: np.ndarray) -> np.ndarray:
    """Sink data ``(W, H, steps)`` → ``(steps, H, W)`` int64."""
    return np.asarray(data).astype(np.int64).transpose(2, 1, 0)


def _run(proc: Any, steps: int, lava: Any) -> float:
    condition = lava.run_conditions.RunSteps(num_steps=steps)
    cfg = lava.run_configs.Loihi2SimCfg(select_tag="fixed_pt")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cannot import module")
        proc.run(condition=condition, run_cfg=cfg)
    return time.perf_counter() - start


def run_sam_lava(graph: Any, inputs: np.ndarray, *, steps: int,
                 layers: Mapping[str, int] | Iterable[str], gamma: float = 0.5,
                 mode: str = "inclusive", scale: int = 4096, input_mode: str = "spikes",
                 reset_interval: Any = None, reset_offset: int = 0) -> dict[str, np.ndarray]:
    """Run a fixed-point graph on Lava with a :class:`SamAccumulatorProcess` attached to the
    spike output (``s_out``) of each chosen layer.

    Args:
        graph: fixed-point IR graph (what :func:`neurodeploy.backends.lava.run` runs).
        inputs: a batch, as for :func:`neurodeploy.backends.lava.run`.
        steps: time steps.
        layers: conv neuron layers, or ``{layer: start}`` (the step at which its trace starts).
        gamma, mode, scale: the accumulator's parameters (see :mod:`neurodeploy.sam`).
        input_mode: ``"spikes"`` or ``"bias"``.
        reset_interval, reset_offset: the run's staggered periodic reset, as for
            :func:`neurodeploy.backends.lava.run` (:func:`neurodeploy.inference.run_deployed`
            uses ``T + D``).

    Returns:
        ``{layer: (B, steps, H, W)}`` int64 maps in trace units, equal to hw_sim's
        :class:`~neurodeploy.sam.SamAccumulator` with the same layers and parameters.

    Raises:
        NeurodeployError: unknown or non-conv layers, bad inputs or parameters.
        MissingExtraError: Lava is not available.
    """
    from neurodeploy.backends import lava as backend
    from neurodeploy.ir import QCubaLIF
    from neurodeploy.simulation import check_inputs

    starts = _layers(layers)
    unknown = [n for n in starts if n not in graph.nodes or
               not isinstance(graph.nodes[n], QCubaLIF)]
    if unknown:
        raise NeurodeployError(f"unknown layer(s) {', '.join(unknown)}; neuron layers: "
                               f"{', '.join(graph.neurons)}")
    shapes = graph.shapes
    for name in starts:
        if len(shapes[name]) != 3:
            raise UnsupportedError(f"SAM needs a conv layer (C, H, W); {name} has shape "
                                   f"{tuple(shapes[name])}")
    arr = check_inputs(graph, inputs, steps, input_mode)
    if reset_interval is not None and int(reset_interval) < 1:
        raise NeurodeployError(f"reset_interval must be at least 1, got {reset_interval}")
    backend.check_supported(graph)
    lava = backend.load_lava()
    lava.conv_utils.TORCH_IS_AVAILABLE = False  # Lava's exact scipy convolution path
    out: dict[str, list[np.ndarray]] = {name: [] for name in starts}
    for sample in arr:
        builder = backend.ProcessBuilder(
            lava, graph, sample, steps, input_mode,
            None if reset_interval is None else int(reset_interval), int(reset_offset), {})
        proc = builder.build()
        sinks = {}
        for name, start in starts.items():
            acc = sam_process(shapes[name], gamma=gamma, scale=scale, mode=mode, start=start,
                              name=f"{name}_sam")
            builder.procs[name].s_out.connect(acc.s_in)
            sink = lava.sink.RingBuffer(shape=acc.map_out.shape, buffer=steps)
            acc.map_out.connect(sink.a_in)
            sinks[name] = sink
        try:
            _run(proc, steps, lava)
            for name, sink in sinks.items():
                out[name].append(_map_to_ir(sink.data.get()))
        finally:
            proc.stop()
    return {name: np.stack(maps) for name, maps in out.items()}


def run_sam_spikes(spikes: np.ndarray, *, gamma: float = 0.5, mode: str = "inclusive",
                   scale: int = 4096, start: int = 0) -> np.ndarray:
    """Drive one :class:`SamAccumulatorProcess` from recorded spikes ``(B, T, C, H, W)`` (a
    ``RingBuffer`` source per sample); returns ``(B, T, H, W)`` int64 maps in trace units."""
    from neurodeploy.backends.lava import load_lava

    s = np.asarray(spikes)
    if s.ndim != 5:
        raise NeurodeployError(f"spikes have shape {s.shape}; expected (B, T, C, H, W)")
    lava = load_lava()
    steps = s.shape[1]
    maps = []
    for sample in s:
        data = sample.transpose(3, 2, 1, 0).astype(np.int32)  # (W, H, C, T)
        source = lava.source.RingBuffer(data=data)
        acc = sam_process(sample.shape[1:], gamma=gamma, scale=scale, mode=mode, start=start)
        sink = lava.sink.RingBuffer(shape=acc.map_out.shape, buffer=steps)
        source.s_out.connect(acc.s_in)
        acc.map_out.connect(sink.a_in)
        try:
            _run(acc, steps, lava)
            maps.append(_map_to_ir(sink.data.get()))
        finally:
            acc.stop()
    return np.stack(maps)
