"""Lava backend: runs a fixed-point IR graph on Lava's bit-accurate ``fixed_pt`` process models.

This is neurodeploy's golden reference. :func:`run` builds one Lava network per batch sample
(Lava has no batch axis), runs it with ``Loihi2SimCfg(select_tag="fixed_pt")`` and returns a
:class:`~neurodeploy.simulation.RunResult` laid out exactly like hw_sim's, so the two compare
element for element.

Lava processes use netx's ``(W, H, C)`` order (the IR's ``(C, H, W)`` reversed); vectors stay
``(N,)``. Lava is imported lazily: importing this module works without it, and :func:`run`
raises :class:`~neurodeploy.errors.MissingExtraError` when it is missing.

Neuron kinds Lava's LIF lacks run as neurodeploy's custom processes
(:mod:`neurodeploy.backends.lava_neurons`): ``QCubaLIF(reset="subtract")`` as ``LIFSoftReset``,
``QCubaBNTT`` as ``CubaBNTT`` (schedule phase = the layer's pipeline depth).
"""

from __future__ import annotations

import importlib
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import MissingExtraError, NeurodeployError, UnsupportedError
from ..ir import Graph
from ..ir.nodes import (
    Add,
    Concat,
    Flatten,
    Input,
    QConv2d,
    QCubaBNTT,
    QCubaLIF,
    QDense,
    QSumPool2d,
)
from ..simulation import (
    RunResult,
    check_inputs,
    normalize_record,
    pipeline_depths,
    reset_phase,
)

#: Node types this backend can build.
SUPPORTED_NODES = ("Input", "QCubaLIF", "QCubaBNTT", "QDense", "QConv2d", "QSumPool2d",
                   "Flatten", "Add", "Concat")

#: Largest delay DelayDense is built for (Loihi 2: 6 bits; IR delays lie in [0, 62]).
MAX_DELAY = 62

#: Range of Lava's int16 ``bias_mant`` variable (larger mantissas would silently wrap).
_BIAS_MANT_RANGE = (-(1 << 15), (1 << 15) - 1)

_LAVA_MODULES = {
    "lif": "lava.proc.lif.process",
    "dense": "lava.proc.dense.process",
    "conv": "lava.proc.conv.process",
    "conv_utils": "lava.proc.conv.utils",
    "source": "lava.proc.io.source",
    "sink": "lava.proc.io.sink",
    "monitor": "lava.proc.monitor.process",
    "run_configs": "lava.magma.core.run_configs",
    "run_conditions": "lava.magma.core.run_conditions",
    "weightutils": "lava.utils.weightutils",
}

_MISSING = (
    "the Lava backend needs Python 3.10 and pip install 'neurodeploy[lava]' "
    "(lava-nc==0.10.0, lava-dl==0.6.0)"
)


def _import_module(name: str) -> Any:
    """Import one module (a seam for tests that simulate a missing Lava)."""
    return importlib.import_module(name)


def _allow_lava_start_method() -> None:
    """Lava's message infrastructure calls ``multiprocessing.set_start_method('fork')`` when
    first imported, which raises if anything (tqdm's lock, a DataLoader, ...) has already fixed
    the process's start method. Before that first import, clear the choice (on Linux the default
    is 'fork' anyway, so nothing else changes)."""
    import multiprocessing

    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    if sys.platform != "win32" and multiprocessing.get_start_method(allow_none=True) is not None:
        multiprocessing.set_start_method(None, force=True)


def fixed_pt_run(lava: SimpleNamespace, steps: int) -> tuple[Any, Any]:
    """``(run_cfg, condition)`` of a bit-exact run of ``steps`` steps: Lava's ``fixed_pt``
    models on the Loihi 2 simulator, with Lava's exact integer (scipy) convolution path."""
    lava.conv_utils.TORCH_IS_AVAILABLE = False
    return (lava.run_configs.Loihi2SimCfg(select_tag="fixed_pt"),
            lava.run_conditions.RunSteps(num_steps=steps))


def load_lava() -> SimpleNamespace:
    """Import the Lava modules this backend uses.

    Raises:
        MissingExtraError: Lava is not installed or this Python is not 3.10.
    """
    if sys.version_info[:2] != (3, 10):
        raise MissingExtraError(
            f"{_MISSING}; this is Python {sys.version_info[0]}.{sys.version_info[1]}"
        )
    _allow_lava_start_method()
    try:
        mods = {key: _import_module(name) for key, name in _LAVA_MODULES.items()}
    except ImportError as err:
        raise MissingExtraError(f"{_MISSING}; import failed: {err}") from err
    return SimpleNamespace(**mods)


def lazy_lava_classes(module: str, names: tuple[str, ...],
                      define: Callable[[], dict[str, Any]]
                      ) -> tuple[Callable[[], SimpleNamespace], Callable[[str], Any]]:
    """``(classes, __getattr__)`` for a module that defines Lava processes and process models
    only when first used (importing Lava is slow and needs Python 3.10).

    ``classes()`` loads Lava (:func:`load_lava`: a clear error without it), runs ``define()``
    once, publishes what it returns in ``module``'s globals (Lava looks for process models
    there) and returns it as a namespace; the module's ``__getattr__`` (PEP 562) calls it for
    the ``names`` it defines."""
    made: list[SimpleNamespace] = []

    def classes() -> SimpleNamespace:
        if not made:
            load_lava()
            defined = define()
            vars(sys.modules[module]).update(defined)
            made.append(SimpleNamespace(**defined))
        return made[0]

    def module_getattr(name: str) -> Any:
        if name in names:
            return getattr(classes(), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return classes, module_getattr


def available() -> bool:
    """True when Lava can be imported on this Python."""
    try:
        load_lava()
    except MissingExtraError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# Layout helpers
# ------------------------------------------------------------------------------------------


def _lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """IR ``(C, H, W)`` → Lava ``(W, H, C)``; vectors unchanged."""
    return tuple(reversed(shape))


def _to_lava(arr: np.ndarray, spatial: int) -> np.ndarray:
    """Reverse the first ``spatial`` axes of ``arr`` (trailing axes, e.g. time, stay)."""
    order = list(range(spatial))[::-1] + list(range(spatial, arr.ndim))
    return np.ascontiguousarray(arr.transpose(order))


def _monitor_to_ir(data: np.ndarray, spatial: int) -> np.ndarray:
    """Monitor data ``(T, *lava_shape)`` → ``(*ir_shape, T)``."""
    return data.transpose(list(range(spatial, 0, -1)) + [0])


# ------------------------------------------------------------------------------------------
# Graph analysis (independent of Lava)
# ------------------------------------------------------------------------------------------


def check_supported(graph: Graph) -> None:
    bad = [
        f"{name} ({node.type_name})"
        for name, node in graph.nodes.items()
        if node.type_name not in SUPPORTED_NODES
    ]
    if bad:
        raise UnsupportedError(
            f"the Lava backend cannot run {', '.join(bad)}; "
            f"supported node types: {', '.join(SUPPORTED_NODES)}"
        )
    for name, node in graph.nodes.items():
        if isinstance(node, (QConv2d, QSumPool2d)) and node.weight_exp < 0:
            raise UnsupportedError(
                f"{name} ({node.type_name}): weight_exp={node.weight_exp} < 0 cannot be run by "
                "Lava's fixed_pt Conv model, which has no weight exponent"
            )
        if type(node) is QCubaLIF and node.bias.size:  # CubaBNTT keeps int32 bias mantissas
            lo, hi = _BIAS_MANT_RANGE
            if node.bias.min() < lo or node.bias.max() > hi:
                raise UnsupportedError(
                    f"{name} (QCubaLIF): bias mantissas span [{node.bias.min()}, "
                    f"{node.bias.max()}], outside Lava's int16 bias_mant [{lo}, {hi}]"
                )


def _message_bits(graph: Graph, name: str) -> int:
    """``num_message_bits`` of the spikes leaving ``name`` (through Flatten/Concat)."""
    bits = graph.message_bits(name)
    if bits is None:
        node = graph.nodes[name]
        raise UnsupportedError(
            f"{name} ({node.type_name}) cannot feed a synapse: synapses take spikes from "
            "neurons, the Input node, Flatten or Concat"
        )
    return bits


# ------------------------------------------------------------------------------------------
# Network construction
# ------------------------------------------------------------------------------------------


class ProcessBuilder:
    """Builds the Lava processes of one sample and wires them up; after :meth:`build`,
    ``procs`` holds every neuron and synapse process by IR node name, so callers can attach
    their own processes (e.g. the SAM accumulator to a layer's ``s_out``)."""

    def __init__(self, lava: SimpleNamespace, graph: Graph, sample: np.ndarray, steps: int,
                 input_mode: str, reset_interval: int | None, reset_offset: int,
                 record: Mapping[str, frozenset[str]]) -> None:
        self.lava = lava
        self.graph = graph
        self.shapes = graph.shapes
        self.sample = sample
        self.steps = steps
        self.input_mode = input_mode
        self.reset_interval = reset_interval
        self.reset_offset = reset_offset
        self.record = record
        self.depth = pipeline_depths(graph)
        self.procs: dict[str, Any] = {}  # neuron and synapse processes by node name
        self.source: Any = None  # spike-mode RingBuffer
        self.sinks: dict[str, Any] = {}
        self.monitors: dict[tuple[str, str], Any] = {}
        self.extra: list[Any] = []  # recurrent Dense processes

    # -------------------------------------------------------------- processes

    def build(self) -> Any:
        """Create and connect all processes; return one of them (to run the network)."""
        graph = self.graph
        (input_name,) = graph.inputs
        if self.input_mode == "spikes":
            data = _to_lava(self.sample[..., : self.steps], len(self.shapes[input_name]))
            # Values go out as they are: Lava's Dense/Conv treat any non-zero binary event as one
            # spike, and a neuron fed directly adds the value to its input (hw_sim does the same).
            self.source = self.lava.source.RingBuffer(data=data.astype(np.int32))
        else:
            for succ in graph.successors(input_name):
                if not isinstance(graph.nodes[succ], QCubaLIF):
                    raise UnsupportedError(
                        f"input mode 'bias' needs the Input node to feed a QCubaLIF; "
                        f"{succ} is a {graph.nodes[succ].type_name} (use input mode 'spikes')"
                    )
            lo, hi = _BIAS_MANT_RANGE
            if self.sample.size and (self.sample.min() < lo or self.sample.max() > hi):
                raise UnsupportedError(
                    f"bias-mode inputs span [{self.sample.min()}, {self.sample.max()}], "
                    f"outside Lava's int16 bias_mant [{lo}, {hi}]"
                )
        for name in graph.topo_order:
            node = graph.nodes[name]
            if isinstance(node, QCubaLIF):
                self.procs[name] = self._neuron(name, node)
            elif isinstance(node, QDense):
                self.procs[name] = self._dense(name, node)
            elif isinstance(node, (QConv2d, QSumPool2d)):
                self.procs[name] = self._conv(name, node)
        for name in graph.topo_order:
            node = graph.nodes[name]
            if node.is_synapse:
                self._spikes_port(graph.predecessors(name)[0]).connect(self.procs[name].s_in)
            elif isinstance(node, QCubaLIF):
                for port in self._current_ports(graph.predecessors(name)[0], name):
                    port.connect(self.procs[name].a_in)
        for name, node in graph.nodes.items():
            if isinstance(node, QDense) and node.weight_rec is not None:
                self._recurrent(name, node)
        self._add_recorders()
        return self._anchor()

    def _components(self) -> list[list[str]]:
        """Neuron names grouped by the connected pieces Lava sees (the bias-mode Input node
        is not a process, so each layer it feeds may start a separate piece)."""
        parent = {name: name for name in self.graph.nodes}

        def root(name: str) -> str:
            while parent[name] != name:
                parent[name] = parent[parent[name]]
                name = parent[name]
            return name

        skip = set(self.graph.inputs) if self.source is None else set()
        for a, b in self.graph.edges:
            if a not in skip and b not in skip:
                parent[root(a)] = root(b)
        groups: dict[str, list[str]] = {}
        for name in self.graph.neurons:
            groups.setdefault(root(name), []).append(name)
        return list(groups.values())

    def _anchor(self) -> Any:
        """Return one process whose ``run`` runs the whole network.

        Lava compiles only the processes connected to the one it runs, so when the network
        has several pieces each is tied to a shared sink through an all-zero Dense (which
        changes no neuron's input).
        """
        pieces = self._components()
        if not pieces:
            raise UnsupportedError("the network has no neuron layer to run")
        if len(pieces) == 1:
            return self.procs[pieces[0][0]]
        anchor = self.lava.sink.RingBuffer(shape=(1,), buffer=1)
        for piece in pieces:
            proc = self.procs[piece[0]]
            size = int(np.prod(proc.s_out.shape))
            link = self.lava.dense.Dense(weights=np.zeros((1, size), dtype=np.int32))
            proc.s_out.flatten().connect(link.s_in)
            link.a_out.connect(anchor.a_in)
            self.extra.append(link)
        return anchor

    def _neuron(self, name: str, node: QCubaLIF) -> Any:
        shape = self.shapes[name]
        if isinstance(node, QCubaBNTT):  # neurodeploy's per-step gain/bias neuron kind
            return self._bntt_neuron(name, node)
        bias = np.broadcast_to(node.bias, shape)
        if self.input_mode == "bias" and self.graph.inputs[0] in self.graph.predecessors(name):
            bias = self.sample
        kwargs = dict(
            shape=_lava_shape(shape),
            vth=node.threshold,
            du=node.current_decay - 1,
            dv=node.voltage_decay,
            bias_mant=_to_lava(np.asarray(bias, dtype=np.int64), len(shape)),
            bias_exp=node.bias_exp,
            name=name,
        )
        if node.reset == "subtract":  # neurodeploy's soft-reset neuron kind (custom process)
            from .lava_neurons import soft_reset_lif

            offset = (0 if self.reset_interval is None else
                      reset_phase(self.depth[name], self.reset_interval, self.reset_offset))
            return soft_reset_lif(**kwargs, reset_interval=self.reset_interval,
                                  reset_offset=offset)
        if self.reset_interval is None:
            return self.lava.lif.LIF(**kwargs)
        k = self.reset_interval
        return self.lava.lif.LIFReset(
            reset_interval=k, reset_offset=reset_phase(self.depth[name], k, self.reset_offset),
            **kwargs,
        )

    def _bntt_neuron(self, name: str, node: QCubaBNTT) -> Any:
        """A ``CubaBNTT`` process (custom ``fixed_pt`` model) whose schedule phase is the
        layer's pipeline depth, with the run's periodic reset staggered as for LIF."""
        from .lava_neurons import bntt_params, cuba_bntt

        if self.input_mode == "bias" and self.graph.inputs[0] in self.graph.predecessors(name):
            raise UnsupportedError(
                f"{name} (QCubaBNTT): input mode 'bias' would replace its per-step bias "
                "schedule; feed it with input mode 'spikes'")
        offset = (0 if self.reset_interval is None else
                  reset_phase(self.depth[name], self.reset_interval, self.reset_offset))
        params = bntt_params(node, self.shapes[name], phase=self.depth[name],
                             reset_interval=self.reset_interval, reset_offset=offset)
        return cuba_bntt(params, name=name)

    def _sign_mode(self, sign_mode: str) -> Any:
        modes = self.lava.weightutils.SignMode
        return {"mixed": modes.MIXED, "excitatory": modes.EXCITATORY,
                "inhibitory": modes.INHIBITORY}[sign_mode]

    def _dense(self, name: str, node: QDense) -> Any:
        bits = _message_bits(self.graph, self.graph.predecessors(name)[0])
        kwargs = dict(
            weights=np.asarray(node.weight, dtype=np.int32),
            weight_exp=node.weight_exp,
            num_weight_bits=node.num_weight_bits,
            sign_mode=self._sign_mode(node.sign_mode),
            num_message_bits=bits,
            name=name,
        )
        if node.delay is not None:
            return self.lava.dense.DelayDense(
                delays=np.asarray(node.delay).astype(int), max_delay=MAX_DELAY, **kwargs
            )
        return self.lava.dense.Dense(**kwargs)

    @staticmethod
    def _conv_weight(weight: np.ndarray, weight_exp: int) -> np.ndarray:
        """IR (out, in/g, kh, kw) correlation weights → Lava (out, kx, ky, in) convolution
        weights, pre-shifted by a non-negative ``weight_exp`` (Lava's Conv has no exponent).

        Like Lava's ``PyConvModelFixed`` (and netx deployments through it), the raw mantissas
        are used: Conv neither clips by sign mode nor truncates to ``num_weight_bits``.
        """
        lava_w = np.asarray(weight, dtype=np.int32)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
        return np.ascontiguousarray(lava_w << weight_exp)

    def _conv(self, name: str, node: QConv2d | QSumPool2d) -> Any:
        pred = self.graph.predecessors(name)[0]
        c_in, _, _ = self.shapes[pred]
        if isinstance(node, QConv2d):
            weight = self._conv_weight(node.weight, node.weight_exp)
            stride, padding, dilation, groups = (
                node.stride, node.padding, node.dilation, node.groups
            )
        else:
            kh, kw = node.kernel_size
            raw = np.full((c_in, 1, kh, kw), node.weight, dtype=np.int32)
            weight = self._conv_weight(raw, node.weight_exp)
            stride, padding, dilation, groups = node.stride, node.padding, (1, 1), c_in
        return self.lava.conv.Conv(
            weight=weight,
            input_shape=_lava_shape(self.shapes[pred]),
            stride=tuple(reversed(stride)),
            padding=tuple(reversed(padding)),
            dilation=tuple(reversed(dilation)),
            groups=groups,
            num_message_bits=_message_bits(self.graph, pred),
            name=name,
        )

    def _recurrent(self, name: str, node: QDense) -> None:
        targets = self._downstream_neurons(name)
        if len(targets) != 1:
            raise UnsupportedError(
                f"{name} (QDense): weight_rec needs exactly one neuron layer downstream, "
                f"found {len(targets)}"
            )
        neuron = self.procs[targets[0]]
        rec = self.lava.dense.Dense(
            weights=np.asarray(node.weight_rec, dtype=np.int32),
            weight_exp=node.weight_exp,
            num_weight_bits=node.num_weight_bits,
            sign_mode=self._sign_mode(node.sign_mode),
            num_message_bits=self.graph.nodes[targets[0]].num_message_bits,
            name=f"{name}_rec",
        )
        neuron.s_out.connect(rec.s_in)
        rec.a_out.connect(neuron.a_in)
        self.extra.append(rec)

    def _downstream_neurons(self, name: str) -> list[str]:
        found = []
        for succ in self.graph.successors(name):
            if isinstance(self.graph.nodes[succ], QCubaLIF):
                found.append(succ)
            elif isinstance(self.graph.nodes[succ], Add):
                found.extend(self._downstream_neurons(succ))
        return found

    # -------------------------------------------------------------- ports

    def _spikes_port(self, name: str) -> Any:
        """The Lava out port carrying the spikes of node ``name`` (Lava layout)."""
        node = self.graph.nodes[name]
        if isinstance(node, Input):
            if self.source is None:
                raise UnsupportedError(
                    f"in input mode 'bias' the Input node {name} can only feed neurons; "
                    "use input mode 'spikes' to feed a synapse"
                )
            return self.source.s_out
        if isinstance(node, QCubaLIF):
            return self.procs[name].s_out
        if isinstance(node, Flatten):
            pred = self.graph.predecessors(name)[0]
            port = self._spikes_port(pred)
            if len(self.shapes[pred]) == 3:
                return port.transpose([2, 1, 0]).flatten()
            return port.flatten()
        if isinstance(node, Concat):
            preds = self.graph.predecessors(name)
            if len(preds) == 1:
                return self._spikes_port(preds[0])
            raise UnsupportedError(
                f"{name} (Concat): Lava 0.10 cannot compile concatenated ports "
                "(ConcatPorts are not yet supported); the Lava backend runs Concat only "
                "with a single input"
            )
        raise UnsupportedError(
            f"{name} ({node.type_name}) cannot feed a synapse with spikes"
        )

    def _current_ports(self, name: str, neuron: str) -> list[Any]:
        """The out ports whose sum is the synaptic input of ``neuron`` coming from ``name``."""
        node = self.graph.nodes[name]
        if node.is_synapse:
            return [self.procs[name].a_out]
        if isinstance(node, Add):
            return [p for pred in self.graph.predecessors(name)
                    for p in self._current_ports(pred, neuron)]
        if isinstance(node, Input):
            if self.source is None:
                return []  # bias mode: the sample is the neuron's bias
            return [self.source.s_out]
        raise UnsupportedError(
            f"{neuron} ({self.graph.nodes[neuron].type_name}) receives input from {name} "
            f"({node.type_name}); "
            "neurons take input from synapses, Add or the Input node"
        )

    # -------------------------------------------------------------- recording

    def _add_recorders(self) -> None:
        for name in self.graph.neurons:
            proc = self.procs[name]
            sink = self.lava.sink.RingBuffer(shape=proc.s_out.shape, buffer=self.steps)
            proc.s_out.connect(sink.a_in)
            self.sinks[name] = sink
            for var in sorted(self.record.get(name, frozenset()) - {"s"}):
                monitor = self.lava.monitor.Monitor()
                monitor.probe(getattr(proc, var), self.steps)
                self.monitors[(name, var)] = monitor

    def collect(self) -> dict[str, np.ndarray]:
        """Recorded values of this sample: ``"<layer>.<u|v|s>"`` → ``(*shape, steps)`` int64."""
        out = {}
        for name, sink in self.sinks.items():
            spatial = len(self.shapes[name])
            data = np.asarray(sink.data.get())
            out[f"{name}.s"] = _to_lava(data, spatial).astype(np.int64)
        for (name, var), monitor in self.monitors.items():
            data = np.asarray(monitor.get_data()[self.procs[name].name][var])
            out[f"{name}.{var}"] = _monitor_to_ir(data, len(self.shapes[name])).astype(np.int64)
        return out


# ------------------------------------------------------------------------------------------
# Public entry point
# ------------------------------------------------------------------------------------------


def run(
    graph: Graph,
    inputs: np.ndarray,
    *,
    steps: int,
    input_mode: str = "bias",
    reset_interval: int | None = None,
    reset_offset: int = 0,
    record: Mapping[str, Iterable[str]] | Iterable[str] | None = None,
) -> RunResult:
    """Run a batch through a fixed-point graph on Lava's bit-accurate models.

    Args:
        graph: fixed-point IR graph with one ``Input`` node.
        inputs: ``(B, *input_shape)`` bias mantissas (``input_mode="bias"``) or
            ``(B, *input_shape, T)`` spike payloads with ``T >= steps`` (``"spikes"``).
        steps: time steps to simulate.
        input_mode: ``"bias"`` or ``"spikes"`` (see :mod:`neurodeploy.simulation`).
        reset_interval: if given, every neuron's u and v are zeroed every ``reset_interval``
            steps, staggered by pipeline depth as netx does (see ``QCubaLIF``).
        reset_offset: phase of that reset.
        record: which of ``"u"``, ``"v"``, ``"s"`` to return per neuron layer.

    Returns:
        A :class:`RunResult` with ``backend="lava"``; ``sim_time_s`` is the time spent in
        Lava's ``run`` calls (compilation included, as Lava compiles inside ``run``).

    Raises:
        MissingExtraError: Lava is not available.
        UnsupportedError: the graph holds something this backend cannot build.
        NeurodeployError: bad inputs, steps, record or reset options.
    """
    record_map = normalize_record(graph, record)
    arr = check_inputs(graph, inputs, steps, input_mode)
    if reset_interval is not None and int(reset_interval) < 1:
        raise NeurodeployError(f"reset_interval must be at least 1, got {reset_interval}")
    check_supported(graph)
    lava = load_lava()
    run_cfg, condition = fixed_pt_run(lava, steps)

    per_sample: list[dict[str, np.ndarray]] = []
    sim_time = 0.0
    for sample in arr:
        builder = ProcessBuilder(
            lava, graph, sample, steps, input_mode,
            None if reset_interval is None else int(reset_interval), int(reset_offset),
            record_map,
        )
        proc = builder.build()
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # Lava imports every file beside a custom process to find its models; our
                # package-relative modules cannot be imported that way, which is harmless
                warnings.filterwarnings("ignore", message="Cannot import module")
                proc.run(condition=condition, run_cfg=run_cfg)
            sim_time += time.perf_counter() - start
            per_sample.append(builder.collect())
        finally:
            proc.stop()

    neurons = graph.neurons
    stacked = {key: np.stack([s[key] for s in per_sample]) for key in per_sample[0]}
    traces = {
        f"{name}.{var}": stacked[f"{name}.{var}"]
        for name in neurons
        for var in ("u", "v", "s")
        if var in record_map.get(name, frozenset())
    }
    counts = {
        name: stacked[f"{name}.s"].reshape(len(arr), -1).sum(axis=1).astype(np.int64)
        for name in neurons
    }
    return RunResult(
        backend="lava",
        steps=steps,
        samples=len(arr),
        layers=list(neurons),
        traces=traces,
        spike_counts=counts,
        sim_time_s=sim_time,
    )
