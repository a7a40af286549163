"""Reference simulator for float-stage IR graphs: every node evaluated once per time step in
topological order, in float64 by default, vectorized over the batch with torch (CPU or CUDA).

It is the ground truth the torch frontend, ANN→SNN conversion and NIR round trips are checked
against, so it follows the node docstrings of :mod:`neurodeploy.ir.nodes` literally:

* **No synaptic delay.** A value computed at step ``t`` reaches every successor at step ``t``
  (unlike the fixed stage, where each synapse delivers one step late).
* **Neurons**, forward Euler at ``dt = graph.metadata.get("dt", 1.0)`` (seconds, or steps for
  discrete models), with ``I`` the node's input at this step. The updates are computed as
  ``decay·v + gain·I + a·v_leak`` with ``a = dt/tau``, ``decay = 1 − a``, ``gain = a·r``, so the
  seeds' discrete LIF ``v ← λv + I`` (``tau = dt/(1−λ)``, ``r = 1/(1−λ)``) comes out with float64
  rounding only:

  - ``LIF``: ``v ← v + dt/tau·(v_leak − v + r·I)``;
  - ``IF``: ``v ← v + dt·r·I``;
  - ``I`` (integrator, no spikes): ``v ← v + dt·r·I``; its output is ``v``;
  - ``CubaLIF``: synaptic current first, then the membrane from the *new* current (as
    snnTorch's ``Synaptic``, Lava's/Loihi's CUBA and :class:`~neurodeploy.ir.QCubaLIF`)::

        i ← i + dt/tau_syn·(−i + w_in·I)
        v ← v + dt/tau_mem·(v_leak − v + r·i)

    Norse's ``LIFBox``/CubaLIF step integrates ``v`` from the *previous* current instead, so
    its membrane lags one step behind this order.

  Spikes are ``s = v > v_threshold`` (strict). ``reset="zero"`` sets ``v`` to ``v_reset`` (0 when
  ``None``) where ``s``; ``reset="subtract"`` subtracts ``v_threshold``. ``order`` (LIF, IF):
  ``"integrate_fire"`` updates, fires from the new ``v`` and resets; ``"fire_integrate"`` fires
  from the previous ``v``, then updates and resets (one step of latency per layer, as
  :class:`neurodeploy.models.layers.LIF`). CubaLIF always integrates then fires, and resets
  ``v`` only.
* **Recurrence** (a neuron's own spikes fed back, e.g. the recurrent CubaLIF of NIR files,
  see :mod:`neurodeploy.frontends.nir`): a ``LIF``/``IF``/``CubaLIF`` with ``weight_rec``
  ``(N, N)`` (``N`` the neuron count) and optional ``bias_rec`` ``(N,)`` gets
  ``weight_rec @ s[t−1] + bias_rec`` added to its input at step ``t`` (``s[−1] = 0``; the bias
  is added at every step), spikes flattened in C, H, W order.
* Other nodes: ``Affine``/``Linear`` (input flattened), ``Conv2d`` (cross-correlation),
  ``SumPool2d`` (window sum), ``AvgPool2d`` (window mean, zero padding counted, as PyTorch's
  default), ``Flatten``, ``Add``, ``Concat``, ``ReLU``, ``BatchNorm`` (per channel
  ``scale·x + shift``) and ``BNTT`` (row ``t`` of its ``(T, C)`` tables at step ``t``; a run
  may not exceed ``T`` steps).

Results follow :mod:`neurodeploy.simulation` (``RunResult`` with ``backend="float"``). Traces
are ``(B, *shape, steps)`` numpy arrays, value after each step: ``"<neuron>.v"``,
``"<neuron>.s"`` (int8 0/1), ``"<cubalif>.i"`` (synaptic current, also accepted as ``"u"``, the
fixed stage's name for it). The value of every graph output (nodes without successors) is
always recorded as ``"<output>.out"``, so ANN outputs and accumulator potentials can be read;
``record`` may also ask ``{"<any node>": ["out"]}``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import NeurodeployError, UnsupportedError
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
    ReLU,
    SumPool2d,
)
from ..simulation import RunResult, normalize_record

#: Node types this simulator runs.
SUPPORTED_NODES = (
    Input, Affine, Linear, Conv2d, SumPool2d, AvgPool2d, Flatten, Add, Concat, ReLU, BatchNorm,
    BNTT, LIF, IF, CubaLIF, I,
)
#: What can be recorded per neuron type (besides ``"out"``, the node's output value).
QUANTITIES: dict[type, tuple[str, ...]] = {
    LIF: ("v", "s"), IF: ("v", "s"), CubaLIF: ("v", "s", "i", "u"), I: ("v",),
}
_SPIKING = (LIF, IF, CubaLIF)


def _supported_check(graph: Graph) -> None:
    bad = [f"{n} ({node.type_name})" for n, node in graph.nodes.items()
           if type(node) not in SUPPORTED_NODES]
    if bad:
        raise UnsupportedError(
            f"the float simulator cannot run {', '.join(bad)}; it supports "
            + ", ".join(t.__name__ for t in SUPPORTED_NODES)
        )


def _record_map(graph: Graph, record: Mapping[str, Iterable[str]] | Iterable[str] | None
                ) -> dict[str, frozenset[str]]:
    """``{node: quantities}``: ``normalize_record`` plus ``"i"`` (CubaLIF current) and
    ``"out"`` (any node's output). A quantity asked for every neuron is recorded where the
    neuron has it; one asked for a named neuron that lacks it is an error."""
    if record is None:
        return {}
    explicit = isinstance(record, Mapping)
    if explicit:
        items = {str(k): set(v) if not isinstance(v, str) else {v} for k, v in record.items()}
    else:
        wanted = {record} if isinstance(record, str) else set(record)
        items = {name: set(wanted) for name in graph.neurons}
    unknown = sorted(k for k in items if k not in graph.nodes)
    if unknown:
        raise NeurodeployError(
            f"cannot record unknown node(s) {', '.join(unknown)}; nodes: {', '.join(graph.nodes)}"
        )
    for name, what in items.items():
        if name not in graph.neurons and what - {"out"}:
            raise NeurodeployError(
                f"{name} ({graph.nodes[name].type_name}) has no neuron state; only its output "
                "'out' can be recorded"
            )
    base = normalize_record(graph, {
        k: v - {"i", "out"} for k, v in items.items() if k in graph.neurons
    })
    result: dict[str, frozenset[str]] = {}
    for name, what in items.items():
        node = graph.nodes[name]
        extra = {q for q in what if q == "i"}
        want = set(base.get(name, ())) | extra
        have = set(QUANTITIES.get(type(node), ()))
        missing = sorted(want - have)
        if missing and explicit:
            raise NeurodeployError(
                f"cannot record {', '.join(missing)} of {name} ({node.type_name}); it has "
                f"{', '.join(sorted(have)) or 'no state'} (and 'out')"
            )
        want &= have
        if "out" in what:
            want.add("out")
        if want:
            result[name] = frozenset(want)
    return result


class _Compiled:
    """Per-graph tensors (parameters cast to the run's dtype and device)."""

    def __init__(self, graph: Graph, dtype: torch.dtype, device: torch.device) -> None:
        self.graph = graph
        self.dtype, self.device = dtype, device
        self.order = graph.topo_order
        self.shapes = graph.shapes
        dt = graph.metadata.get("dt")
        self.dt = 1.0 if dt is None else float(dt)
        if not np.isfinite(self.dt) or self.dt <= 0:
            raise NeurodeployError(f"graph time step dt={self.dt} must be a positive number")
        self.params: dict[str, dict[str, Any]] = {}
        for name in self.order:
            self.params[name] = self._compile(name, graph.nodes[name])

    def t(self, value: Any) -> torch.Tensor:
        return torch.as_tensor(np.array(value, dtype=np.float64), dtype=self.dtype,
                               device=self.device)

    def _channel(self, value: np.ndarray, name: str) -> torch.Tensor:
        """Per-channel ``(C,)`` (or ``(T, C)``) values shaped to broadcast over a sample."""
        rank = len(self.shapes[name])
        arr = self.t(value)
        return arr.reshape(*arr.shape, *([1] * (rank - 1)))

    def _compile(self, name: str, node: Any) -> dict[str, Any]:
        # Graph.validate() (FloatSim's first step) has checked the parameters: required ones
        # present, time constants positive, recurrent shapes (LIF/IF/CubaLIF.check()).
        dt = self.dt
        if isinstance(node, (Affine, Linear)):
            return {"w": self.t(node.weight),
                    "b": self.t(node.bias) if isinstance(node, Affine) else None}
        if isinstance(node, Conv2d):
            return {"w": self.t(node.weight),
                    "b": None if node.bias is None else self.t(node.bias)}
        if isinstance(node, (BatchNorm, BNTT)):
            return {"scale": self._channel(node.scale, name),
                    "shift": self._channel(node.shift, name)}
        if isinstance(node, LIF):
            a = dt / node.tau
            p = {"decay": self.t(1.0 - a), "gain": self.t(a * node.r),
                 "leak": self.t(a * node.v_leak) if np.any(node.v_leak) else None}
        elif isinstance(node, IF):
            p = {"decay": None, "gain": self.t(dt * node.r), "leak": None}
        elif isinstance(node, I):
            return {"gain": self.t(dt * node.r)}
        elif isinstance(node, CubaLIF):
            a_s = dt / node.tau_syn
            a_m = dt / node.tau_mem
            w_in = 1.0 if node.w_in is None else node.w_in
            p = {"syn_decay": self.t(1.0 - a_s), "syn_gain": self.t(a_s * w_in),
                 "decay": self.t(1.0 - a_m), "gain": self.t(a_m * node.r),
                 "leak": self.t(a_m * node.v_leak) if np.any(node.v_leak) else None}
        else:
            return {}
        p["thr"] = self.t(node.v_threshold)
        p["v_reset"] = None if node.v_reset is None else self.t(node.v_reset)
        # recurrence: (B, N) spikes @ weight_rec.T, so the transposed matrix is kept
        p["w_rec"] = None if node.weight_rec is None else self.t(node.weight_rec.T.copy())
        p["b_rec"] = None if node.bias_rec is None else self.t(node.bias_rec)
        return p


def _as_tensor(value: Any, dtype: torch.dtype, device: torch.device, what: str) -> torch.Tensor:
    if torch.is_tensor(value):
        arr = value.detach()
    else:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise NeurodeployError(f"{what} must be numeric, got dtype {arr.dtype}")
        arr = torch.as_tensor(arr.astype(np.float64, copy=False))
    arr = arr.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(arr).all()):
        raise NeurodeployError(f"{what} hold NaN or infinite values")
    return arr


def _prepare_inputs(graph: Graph, inputs: Any, steps: int, dtype: torch.dtype,
                    device: torch.device) -> tuple[dict[str, tuple[torch.Tensor, bool]], int]:
    """``{input node: (tensor, time_varying)}`` and the batch size."""
    names = graph.inputs
    if not names:
        raise NeurodeployError("the graph has no Input node")
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        extra = [n for n in inputs if n not in names]
        if missing or extra:
            raise NeurodeployError(
                f"inputs must be given for exactly the Input nodes {', '.join(names)}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(map(str, extra))}" if extra else "")
            )
        given = dict(inputs)
    elif len(names) == 1:
        given = {names[0]: inputs}
    else:
        raise NeurodeployError(
            f"the graph has {len(names)} Input nodes ({', '.join(names)}); pass a mapping "
            "from input name to array"
        )
    out: dict[str, tuple[torch.Tensor, bool]] = {}
    batch = None
    for name in names:
        shape = tuple(graph.shapes[name])
        arr = _as_tensor(given[name], dtype, device, f"inputs for {name}")
        found = tuple(arr.shape)
        if arr.dim() == len(shape) + 1 and found[1:] == shape:
            varying = False
        elif arr.dim() == len(shape) + 2 and found[1:-1] == shape:
            varying = True
            if found[-1] < steps:
                raise NeurodeployError(
                    f"inputs for {name} hold {found[-1]} time steps but {steps} were requested"
                )
        else:
            dims = ", ".join(map(str, shape))
            raise NeurodeployError(
                f"inputs for {name} have shape {found}; expected (batch, {dims}) for a constant "
                f"input or (batch, {dims}, T) with T >= steps"
            )
        if batch is None:
            batch = found[0]
        elif found[0] != batch:
            raise NeurodeployError(f"inputs disagree on the batch size ({batch} vs {found[0]})")
        out[name] = (arr, varying)
    return out, int(batch or 0)


def _spike_reset(p: dict[str, Any], node: Any, v: torch.Tensor, s: torch.Tensor
                 ) -> torch.Tensor:
    if node.reset == "subtract":
        return v - p["thr"] * s
    reset_to = p["v_reset"] if p["v_reset"] is not None else torch.zeros((), dtype=v.dtype,
                                                                          device=v.device)
    return torch.where(s.bool(), reset_to, v)


class FloatSim:
    """A float-stage graph compiled for one dtype and device; :meth:`run` many batches."""

    def __init__(self, graph: Graph, *, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu") -> None:
        self.graph = graph.validate()
        _supported_check(graph)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise NeurodeployError(f"device {device!r} requested but torch sees no CUDA device")
        if not dtype.is_floating_point:
            raise NeurodeployError(f"dtype must be a floating-point torch dtype, got {dtype}")
        self.dtype = dtype
        self.c = _Compiled(graph, dtype, self.device)
        bntt = [(n, node.timesteps) for n, node in graph.nodes.items() if isinstance(node, BNTT)]
        self.max_steps = min((t for _, t in bntt), default=None)
        self._bntt = bntt

    def run(self, inputs: Any, steps: int, *,
            record: Mapping[str, Iterable[str]] | Iterable[str] | None = None) -> RunResult:
        """Simulate a batch for ``steps`` steps; see the module docstring for the conventions.

        Args:
            inputs: ``(B, *input_shape)`` (the same value at every step) or
                ``(B, *input_shape, T)`` with ``T >= steps``; numpy or torch, any real dtype.
                A mapping ``{input name: array}`` for graphs with several ``Input`` nodes.
            steps: time steps to run (at least 1).
            record: ``None``, quantities for every neuron (``["v", "s"]``) or
                ``{node: quantities}`` (``"v"``, ``"s"``, ``"i"``/``"u"``, ``"out"``).
        """
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise NeurodeployError(f"steps must be a positive integer, got {steps!r}")
        steps = int(steps)
        if self.max_steps is not None and steps > self.max_steps:
            layers = ", ".join(f"{n} ({t} steps)" for n, t in self._bntt if t < steps)
            raise NeurodeployError(
                f"BNTT layer(s) {layers} have statistics for fewer than the {steps} steps "
                "requested; run with fewer steps"
            )
        rec = _record_map(self.graph, record)
        for out in self.graph.outputs:
            rec[out] = rec.get(out, frozenset()) | {"out"}
        feeds, batch = _prepare_inputs(self.graph, inputs, steps, self.dtype, self.device)
        start = time.perf_counter()
        with torch.no_grad():
            traces, counts = self._loop(feeds, batch, steps, rec)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        sim_time = time.perf_counter() - start
        out_traces = {}
        for key, vals in traces.items():
            arr = torch.stack(vals, dim=-1)
            if key.endswith(".s"):
                arr = arr.to(torch.int8)
            out_traces[key] = arr.cpu().numpy()
        return RunResult(
            backend="float", steps=steps, samples=batch, layers=list(self.graph.neurons),
            traces=out_traces,
            spike_counts={n: c.cpu().numpy().astype(np.int64) for n, c in counts.items()},
            sim_time_s=sim_time,
        )

    def _loop(self, feeds: dict[str, tuple[torch.Tensor, bool]], batch: int, steps: int,
              rec: dict[str, frozenset[str]]
              ) -> tuple[dict[str, list[torch.Tensor]], dict[str, torch.Tensor]]:
        g, c = self.graph, self.c
        dev, dtype = self.device, self.dtype
        state: dict[str, dict[str, torch.Tensor]] = {}
        counts: dict[str, torch.Tensor] = {}
        for name in g.neurons:
            shape = (batch, *c.shapes[name])
            zeros = {"v": torch.zeros(shape, dtype=dtype, device=dev)}
            if isinstance(g.nodes[name], CubaLIF):
                zeros["i"] = torch.zeros(shape, dtype=dtype, device=dev)
            if isinstance(g.nodes[name], _SPIKING):
                zeros["s"] = torch.zeros(shape, dtype=dtype, device=dev)
                counts[name] = torch.zeros(batch, dtype=torch.int64, device=dev)
            state[name] = zeros
        traces: dict[str, list[torch.Tensor]] = {
            f"{n}.{q}": [] for n, qs in rec.items() for q in sorted(qs)
        }
        for t in range(steps):
            values: dict[str, torch.Tensor] = {}
            for name in c.order:
                node = g.nodes[name]
                p = c.params[name]
                ins = [values[q] for q in g.predecessors(name)]
                if isinstance(node, Input):
                    arr, varying = feeds[name]
                    out = arr[..., t] if varying else arr
                elif isinstance(node, (Affine, Linear)):
                    out = F.linear(ins[0].reshape(batch, -1), p["w"], p["b"])
                elif isinstance(node, Conv2d):
                    out = F.conv2d(ins[0], p["w"], p["b"], stride=node.stride,
                                   padding=node.padding, dilation=node.dilation,
                                   groups=node.groups)
                elif isinstance(node, SumPool2d):
                    out = F.avg_pool2d(ins[0], node.kernel_size, node.stride, node.padding,
                                       count_include_pad=True, divisor_override=1)
                elif isinstance(node, AvgPool2d):
                    out = F.avg_pool2d(ins[0], node.kernel_size, node.stride, node.padding,
                                       count_include_pad=True)
                elif isinstance(node, Flatten):
                    out = ins[0].reshape(batch, -1)
                elif isinstance(node, Add):
                    out = ins[0]
                    for other in ins[1:]:
                        out = out + other
                elif isinstance(node, Concat):
                    out = torch.cat(ins, dim=1 + node.axis)
                elif isinstance(node, ReLU):
                    out = torch.clamp(ins[0], min=0.0)
                elif isinstance(node, BatchNorm):
                    out = ins[0] * p["scale"] + p["shift"]
                elif isinstance(node, BNTT):
                    out = ins[0] * p["scale"][t] + p["shift"][t]
                else:
                    out = self._neuron_step(name, node, p, ins[0], state[name], batch)
                    if name in counts:
                        counts[name] += state[name]["s"].reshape(batch, -1).sum(1).to(
                            torch.int64)
                values[name] = out
                for q in rec.get(name, ()):
                    if q == "out":
                        val = out
                    else:
                        val = state[name]["i" if q == "u" else q]
                    traces[f"{name}.{q}"].append(val.clone())
        return traces, counts

    def _neuron_step(self, name: str, node: Any, p: dict[str, Any], x: torch.Tensor,
                     st: dict[str, torch.Tensor], batch: int) -> torch.Tensor:
        if isinstance(node, I):
            st["v"] = st["v"] + p["gain"] * x
            return st["v"]
        if p["w_rec"] is not None:
            fed = st["s"].reshape(batch, -1) @ p["w_rec"]  # the previous step's spikes
            if p["b_rec"] is not None:
                fed = fed + p["b_rec"]
            x = x + fed.reshape(x.shape)
        v = st["v"]
        if isinstance(node, CubaLIF):
            st["i"] = p["syn_decay"] * st["i"] + p["syn_gain"] * x
            x = st["i"]
        fire_first = getattr(node, "order", "integrate_fire") == "fire_integrate"
        if fire_first:
            s = (v > p["thr"]).to(v.dtype)
        v = v + p["gain"] * x if p["decay"] is None else p["decay"] * v + p["gain"] * x
        if p["leak"] is not None:
            v = v + p["leak"]
        if not fire_first:
            s = (v > p["thr"]).to(v.dtype)
        st["v"] = _spike_reset(p, node, v, s)
        st["s"] = s
        return s


def run(graph: Graph, inputs: Any, steps: int, *,
        record: Mapping[str, Iterable[str]] | Iterable[str] | None = None,
        dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> RunResult:
    """Simulate a float-stage ``graph`` on a batch for ``steps`` time steps.

    Args:
        graph: a float-stage IR graph (see :data:`SUPPORTED_NODES`); time step
            ``graph.metadata.get("dt", 1.0)`` (the unit of the neurons' time constants).
        inputs: ``(B, *input_shape)`` (constant, direct/analog input) or
            ``(B, *input_shape, T)`` with ``T >= steps``; a mapping for several inputs.
        steps: time steps to simulate.
        record: ``None``, quantities for every neuron (``["v", "s"]``) or
            ``{node: quantities}`` with ``"v"``, ``"s"``, ``"i"``/``"u"`` (CubaLIF current) and
            ``"out"`` (any node's output value). Graph outputs are always recorded as
            ``"<name>.out"``.
        dtype: torch floating dtype of the computation (float64 by default).
        device: ``"cpu"`` or ``"cuda[:N]"``.

    Returns:
        a :class:`~neurodeploy.simulation.RunResult` with ``backend="float"``; traces
        ``(B, *shape, steps)``, spike counts ``(B,)`` per spiking neuron node.

    Raises:
        UnsupportedError: for node types the simulator lacks (all of them listed).
        NeurodeployError: for inputs of the wrong shape or non-finite values, and for runs
            longer than a BNTT layer's statistics.
    """
    return FloatSim(graph, dtype=dtype, device=device).run(inputs, steps, record=record)


def forward(graph: Graph, x: Any, steps: int = 1, *, output: str | None = None,
            dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
            ) -> torch.Tensor:
    """The value of the graph's output node after ``steps`` steps, ``(B, *output_shape)``.

    For an ANN (no neurons) ``steps=1`` gives its output; for an SNN ending in an ``I``
    accumulator it is the accumulated potential (divide by ``steps`` for the seeds' logits).
    ``output`` picks one of several outputs (default: the only one). Inputs as in :func:`run`.
    """
    sim = FloatSim(graph, dtype=dtype, device=device)
    outs = graph.outputs
    if output is None:
        if len(outs) != 1:
            raise NeurodeployError(
                f"the graph has {len(outs)} outputs ({', '.join(outs)}); choose one with output="
            )
        output = outs[0]
    elif output not in graph.nodes:
        raise NeurodeployError(f"unknown output node {output!r}")
    result = sim.run(x, steps, record={output: ["out"]} if output not in outs else None)
    return torch.as_tensor(result.traces[f"{output}.out"][..., -1])
