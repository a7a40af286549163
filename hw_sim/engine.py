"""The functional engine: bit-exact Loihi fixed-point dynamics of an IR graph, vectorized with
torch over batch and neurons (CPU or CUDA), streaming over time steps.

It reproduces Lava's ``fixed_pt`` process models (``PyLifModelBitAcc``, ``PyLifResetModelBitAcc``,
``PyDenseModelBitAcc``, ``PyDelayDenseModelBitAcc``, ``PyConvModelFixed``) and neurodeploy's own
neuron kinds (soft reset; ``QCubaBNTT``'s per-step gain/bias schedule, as the ``CubaBNTT``
process of ``neurodeploy.backends.lava_neurons`` computes it) bit for bit,
including their corner cases: the 24-bit wrap of u is Lava's single conditional wrap, the int32
arithmetic of Lava's numpy code is emulated where a layer can reach it, conv outputs wrap to 24
bits, the weight exponent shifts the *summed* input with floor semantics, and every synapse
delivers one step late.

Speed: synaptic sums run as float32 matmuls/convolutions when a static bound proves every partial
sum is an integer below 2**24 (float32 represents those exactly, whatever the summation order),
else in float64 (exact below 2**53; the bound is checked and the run refused beyond it). Neuron
state holds exact integers too: float32 where static bounds on |u| and |v| prove every product
and sum of the update exact in it (:func:`_float_state_dtype`), else float64; int64 with Lava's
int32 overflow emulated only for layers whose bound says the synaptic input can reach it. Terms
known to be zero are skipped, and u is not stored when nothing reads it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from neurodeploy.errors import NeurodeployError, UnsupportedError
from neurodeploy.ir.nodes import lava_weights
from neurodeploy.ir import (
    Add,
    Concat,
    Flatten,
    Graph,
    Input,
    Node,
    QConv2d,
    QCubaBNTT,
    QCubaLIF,
    QDense,
    QSumPool2d,
)
from neurodeploy.simulation import (
    RunResult,
    check_inputs,
    normalize_record,
    pipeline_depths,
    reset_phase,
)

M24 = 1 << 23  # Lava's max_uv_val
FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53
INT32_SAFE_ACTIVATION = (1 << 24)  # |a| below this: a << 6 plus a 24-bit u never leaves int32

SUPPORTED_NODES = (Input, QCubaLIF, QCubaBNTT, QDense, QConv2d, QSumPool2d, Flatten, Add,
                   Concat)


def _wrap32(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement wrap of int64 values into int32's range (numpy int32 overflow)."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _wrap24(x: torch.Tensor) -> torch.Tensor:
    """Lava's ``signed_clamp(x, 24)``: modular wrap into [-2**23, 2**23)."""
    return ((x + M24) & 0xFFFFFF) - M24


def _sum_events(vals: list) -> torch.Tensor | int:
    """The sum of a step's inputs, where None or the int 0 means nothing was delivered: the int
    0 when nothing was, the tensor itself when one was (no ``0 + tensor`` copy)."""
    total: torch.Tensor | int = 0
    for val in vals:
        if val is None or (not torch.is_tensor(val) and val == 0):
            continue
        total = val if (not torch.is_tensor(total) and total == 0) else total + val
    return total


def _odd_part(m: int) -> int:
    """``m`` with its factors of two removed (0 for 0)."""
    while m and not m & 1:
        m >>= 1
    return m


def _float_state_dtype(node: QCubaLIF, u_bound: float, v_bound: float, special: bool
                       ) -> torch.dtype:
    """float32 when the static bounds prove every value of the float update exact in it, else
    float64 (exact below 2**53).

    The update holds integers only: ``trunc(u·m/4096)`` with ``m <= 4096`` is exact in
    float32 when ``|u|·odd(m) < 2**24`` (``odd(m)``: m without its factors of two; the product
    then has at most 24 significant bits), and every sum of u, v, 64·a and the bias stays
    below ``max(u_bound, v_bound) < 2**24`` (u_bound and v_bound bound |u| and |v| at every step,
    partial sums included). ``special`` (the wrap of u or the saturation of v can trigger, or a
    per-step schedule) keeps float64."""
    mu, mv = 4096 - node.current_decay, 4096 - node.voltage_decay
    exact = (not special and max(u_bound, v_bound, int(node.threshold) << 6) < FLOAT32_EXACT
             and u_bound * _odd_part(mu) < FLOAT32_EXACT
             and v_bound * _odd_part(mv) < FLOAT32_EXACT)
    return torch.float32 if exact else torch.float64


def _fshift(x: torch.Tensor, exp: int) -> torch.Tensor:
    """``_shift`` on exact-integer floats: a multiply by a power of two (exact) and a floor."""
    if exp > 0:
        return x * float(1 << exp)
    if exp < 0:
        return torch.floor(x * (1.0 / (1 << -exp)))
    return x


def _shift(x: torch.Tensor, exp: int) -> torch.Tensor:
    """Left shift for positive ``exp``, arithmetic (floor) right shift for negative."""
    if exp > 0:
        return x << exp
    if exp < 0:
        return x >> (-exp)
    return x


@dataclass
class _Synapse:
    """Compiled synapse: computes the current delivered one step later."""

    name: str
    kind: str  # "dense", "conv", "pool"
    out_shape: tuple[int, ...]
    weight_exp: int
    wrap24: bool
    weight: torch.Tensor | None = None  # float weights for matmul/conv
    abs_row_sum: float = 0.0  # max over outputs of sum |w| (the accumulation bound per unit event)
    conv_args: dict = field(default_factory=dict)
    delay_slots: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    max_delay: int = 0
    rec_weight: torch.Tensor | None = None
    rec_target: str | None = None
    rec_bound: float = 0.0
    dtype: torch.dtype = torch.float32
    needs_wrap24: bool = True
    # The weights above cast to ``dtype`` (set per run by ``cast_weights``).
    w: torch.Tensor | None = None
    rec_w: torch.Tensor | None = None
    delay_w: list[tuple[int, torch.Tensor]] = field(default_factory=list)

    def cast_weights(self) -> None:
        if self.w is not None and self.w.dtype == self.dtype:
            return  # cast for an earlier run already
        self.w = None if self.weight is None else self.weight.to(self.dtype)
        self.rec_w = None if self.rec_weight is None else self.rec_weight.to(self.dtype)
        self.delay_w = [(k, wk.to(self.dtype)) for k, wk in self.delay_slots]


class StepObserver(Protocol):
    """Receives a run's events step by step (event accounting, on-chip probes).

    ``input_step(name, t, events)``: the ``Input`` node's events at step ``t`` (0-based),
    ``(B, *shape)``; spike input mode only (bias input sends no events).
    ``neuron_step(name, t, s, u, v, a)``: a neuron layer after its update at step ``t``:
    ``s`` its output spikes ``(B, *shape)`` (bool), ``u``/``v`` its state after the
    update, ``a`` the synaptic input it integrated this step (a tensor, or the int 0 when no
    synapse delivered anything; for a ``QCubaBNTT`` layer the input after its gain).
    Tensors are the engine's own: read, never modify them.

    Optional ``reads_u(name) -> bool``: False when the observer never reads ``u`` of layer
    ``name``; the engine then need not store u (where ``current_decay`` is 4096, u is just
    ``64·a``) and may pass ``u=None``. Observers without the method get u always.
    """

    def input_step(self, name: str, t: int, events: torch.Tensor) -> None: ...

    def neuron_step(self, name: str, t: int, s: torch.Tensor, u: torch.Tensor,
                    v: torch.Tensor, a: torch.Tensor | int) -> None: ...


class Engine:
    """A compiled graph ready to run batches. Build once, :meth:`run` many times."""

    def __init__(self, graph: Graph, device: str | torch.device = "cpu") -> None:
        self.graph = graph.validate()
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise NeurodeployError("device 'cuda' requested but torch sees no CUDA device")
        unsupported = [
            f"{n} ({node.type_name})"
            for n, node in graph.nodes.items()
            if not isinstance(node, SUPPORTED_NODES)
        ]
        if unsupported:
            raise UnsupportedError(
                f"hw_sim cannot simulate {', '.join(unsupported)} yet; it supports "
                + ", ".join(t.__name__ for t in SUPPORTED_NODES)
            )
        self.order = graph.topo_order
        self.shapes = graph.shapes
        self.depth = pipeline_depths(graph)
        self.synapses: dict[str, _Synapse] = {}
        for name in self.order:
            node = graph.nodes[name]
            if isinstance(node, (QDense, QConv2d, QSumPool2d)):
                self.synapses[name] = self._compile_synapse(name, node)
        self._check_structure()
        #: neuron → recurrent synapses feeding back its own spikes (netx dense_rec)
        self.rec_sources: dict[str, list[str]] = {}
        for name, syn in self.synapses.items():
            if syn.rec_target is not None:
                self.rec_sources.setdefault(syn.rec_target, []).append(name)

    # ------------------------------------------------------------------ compilation

    def _check_structure(self) -> None:
        g = self.graph
        problems = []
        for name in self.order:
            node = g.nodes[name]
            preds = g.predecessors(name)
            if isinstance(node, QCubaLIF):
                for p in preds:
                    if isinstance(g.nodes[p], QCubaLIF):
                        problems.append(
                            f"{name}: neuron fed directly by neuron {p}; put a synapse between"
                        )
            if isinstance(node, Input):
                for s in g.successors(name):
                    if not isinstance(g.nodes[s], (QCubaLIF, QDense, QConv2d, QSumPool2d,
                                                   Flatten, Concat)):
                        problems.append(f"{name}: cannot feed {s} ({g.nodes[s].type_name})")
        if problems:
            raise UnsupportedError("hw_sim: " + "; ".join(problems))

    def _compile_synapse(self, name: str, node: Node) -> _Synapse:
        dev = self.device
        out_shape = self.shapes[name]
        if isinstance(node, QDense):
            w = lava_weights(node.weight, node.num_weight_bits, node.sign_mode)
            syn = _Synapse(name, "dense", out_shape, node.weight_exp, wrap24=False)
            if node.delay is not None and node.delay.size and node.delay.max() > 0:
                syn.max_delay = int(node.delay.max())
                for k in range(syn.max_delay + 1):
                    wk = np.where(node.delay == k, w, 0)
                    if np.any(wk):
                        syn.delay_slots.append((k, torch.as_tensor(wk.T, dtype=torch.float64)))
            else:
                syn.weight = torch.as_tensor(w.T.copy(), dtype=torch.float64)  # (in, out)
            syn.abs_row_sum = float(np.abs(w).sum(axis=1).max(initial=0))
            if node.weight_rec is not None:
                wr = lava_weights(node.weight_rec, node.num_weight_bits, node.sign_mode)
                syn.rec_weight = torch.as_tensor(wr.T.copy(), dtype=torch.float64)
                syn.rec_bound = float(np.abs(wr).sum(axis=1).max(initial=0))
                targets = [s for s in self.graph.successors(name)
                           if isinstance(self.graph.nodes[s], QCubaLIF)]
                if len(targets) != 1:
                    raise UnsupportedError(
                        f"{name}: a recurrent dense layer must feed exactly one neuron layer"
                    )
                syn.rec_target = targets[0]
        elif isinstance(node, QConv2d):
            w = node.weight.astype(np.int64)  # Lava's Conv uses the raw weights
            syn = _Synapse(name, "conv", out_shape, node.weight_exp, wrap24=True)
            syn.weight = torch.as_tensor(w, dtype=torch.float64)
            syn.conv_args = dict(stride=node.stride, padding=node.padding,
                                 dilation=node.dilation, groups=node.groups)
            syn.abs_row_sum = float(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0))
        else:  # QSumPool2d
            syn = _Synapse(name, "pool", out_shape, node.weight_exp, wrap24=True)
            syn.conv_args = dict(kernel_size=node.kernel_size, stride=node.stride,
                                 padding=node.padding)
            syn.weight = torch.tensor(float(node.weight), dtype=torch.float64)
            syn.abs_row_sum = abs(node.weight) * node.kernel_size[0] * node.kernel_size[1]
        if syn.weight is not None and syn.weight.dim():
            syn.weight = syn.weight.to(dev)
        syn.delay_slots = [(k, wk.to(dev)) for k, wk in syn.delay_slots]
        if syn.rec_weight is not None:
            syn.rec_weight = syn.rec_weight.to(dev)
        return syn

    # ------------------------------------------------------------------ running

    def run(
        self,
        inputs: np.ndarray,
        *,
        steps: int,
        input_mode: str = "bias",
        reset_interval: int | None = None,
        reset_offset: int = 0,
        record: Mapping[str, Iterable[str]] | Iterable[str] | None = None,
        observer: StepObserver | None = None,
    ) -> RunResult:
        """Simulate a batch; see :mod:`neurodeploy.simulation` for the conventions.

        ``observer`` (optional) sees every event source once per step, in layer order (see
        :class:`StepObserver`); it must not modify the tensors it is given."""
        g = self.graph
        x = check_inputs(g, inputs, steps, input_mode)
        rec = normalize_record(g, record)
        if reset_interval is not None and reset_interval < 1:
            raise NeurodeployError(f"reset interval must be >= 1, got {reset_interval}")
        batch = x.shape[0]
        dev = self.device
        in_name = g.inputs[0]
        in_node: Input = g.nodes[in_name]  # type: ignore[assignment]
        start = time.perf_counter()

        # Per-run synapse dtypes from the accumulation bound (events from neurons are 0/1;
        # input events are bounded by the data).
        max_in = float(np.abs(x).max(initial=0)) if input_mode == "spikes" else 1.0
        if in_node.num_message_bits == 0:
            max_in = min(max_in, 1.0)
        event_bound: dict[str, float] = {}
        act_bound: dict[str, float] = {}
        for name in self.order:
            node = g.nodes[name]
            preds = g.predecessors(name)
            if isinstance(node, Input):
                event_bound[name] = max_in if input_mode == "spikes" else 0.0
            elif isinstance(node, QCubaLIF):
                event_bound[name] = 1.0
            elif name in self.synapses:
                syn = self.synapses[name]
                b_in = max(event_bound[p] for p in preds)
                acc = syn.abs_row_sum * b_in
                rec_acc = syn.rec_bound if syn.rec_weight is not None else 0.0
                worst = max(acc, rec_acc)
                if worst >= FLOAT64_EXACT:
                    raise NeurodeployError(
                        f"{name}: synaptic sums can reach {worst:.3g}, beyond exact arithmetic"
                    )
                shifted = acc * 2.0 ** syn.weight_exp + rec_acc * 2.0 ** syn.weight_exp
                worst = max(worst, shifted)
                syn.dtype = torch.float32 if worst < FLOAT32_EXACT else torch.float64
                syn.cast_weights()
                syn.needs_wrap24 = syn.wrap24 and acc * 2.0 ** syn.weight_exp >= M24
                act_bound[name] = min(shifted, float(M24)) if syn.wrap24 else shifted
                event_bound[name] = act_bound[name]
            else:
                event_bound[name] = max((event_bound[p] for p in preds), default=0.0)
                act_bound[name] = sum(act_bound.get(p, event_bound[p]) for p in preds) \
                    if isinstance(node, Add) else max(act_bound.get(p, 0.0) for p in preds)
        # Neuron parameters and state.
        neurons: dict[str, dict] = {}
        for name in self.order:
            node = g.nodes[name]
            if not isinstance(node, QCubaLIF):
                continue
            shape = self.shapes[name]
            preds = g.predecessors(name)
            sched = None
            if isinstance(node, QCubaBNTT):
                if input_mode == "bias" and in_name in preds:
                    raise UnsupportedError(
                        f"{name} (QCubaBNTT): input mode 'bias' would replace its per-step bias "
                        "schedule; feed it with input mode 'spikes'")
                bias = torch.zeros(shape, dtype=torch.int64, device=dev)  # bias: per step
            else:
                bias = torch.as_tensor(np.broadcast_to(node.bias, shape).astype(np.int64),
                                       device=dev)
            if input_mode == "bias" and in_name in preds:
                bias = torch.as_tensor(x, device=dev)  # (B, *shape) bias mantissas
            eff_bias = _shift(bias, node.bias_exp)
            a_bound = sum(
                act_bound.get(p, event_bound.get(p, 0.0)) for p in preds
                if not (input_mode == "bias" and p == in_name)
            )
            if input_mode == "spikes" and in_name in preds:
                a_bound += max_in if in_node.num_message_bits else float(np.abs(x).max(initial=0))
            k = None
            if reset_interval is not None:
                k = reset_phase(self.depth[name], reset_interval, reset_offset)
            emulate32 = a_bound >= INT32_SAFE_ACTIVATION
            if isinstance(node, QCubaBNTT):
                sched, a_bound, emulate32 = self._bntt_schedule(node, shape, self.depth[name],
                                                                a_bound)
            # Static bounds decide whether the wrap of u and the saturation of v can trigger.
            if node.current_decay == 0:
                u_bound = float("inf") if a_bound else 0.0
            else:
                u_bound = a_bound * 64 * 4096 / node.current_decay
            wrap_u = u_bound >= M24
            u_max = float(M24) if wrap_u else u_bound
            b_max = float(eff_bias.abs().max()) if eff_bias.numel() else 0.0
            if sched is not None:  # the largest per-step bias
                b_max = float(sched["bias"].abs().max()) if sched["bias"].numel() else 0.0
            if node.voltage_decay == 0:
                v_bound = float("inf") if (u_max or b_max) else 0.0
            else:
                v_bound = (u_max + b_max) * 4096 / node.voltage_decay
            state_dtype = torch.int64 if emulate32 else _float_state_dtype(
                node, u_bound, v_bound, wrap_u or v_bound >= M24 - 1 or sched is not None)
            zeros = torch.zeros((batch, *shape), dtype=state_dtype, device=dev)
            neurons[name] = dict(
                u=zeros,  # shared: state tensors are never modified in place
                v=zeros,
                mu=4096 - node.current_decay,
                mv=4096 - node.voltage_decay,
                vth=int(node.threshold) << 6,
                bias=eff_bias.to(state_dtype),
                emulate32=emulate32,
                wrap_u=wrap_u,
                clamp_v=v_bound >= M24 - 1,
                reset_phase=k,
                subtract=node.reset == "subtract",
                zeros=zeros,
                # u is stored only when something reads it (see _neuron_step)
                keep_u=(node.current_decay != 4096 or wrap_u or "u" in rec.get(name, ())
                        or (observer is not None
                            and getattr(observer, "reads_u", lambda n: True)(name))),
                bias_zero=sched is None and not bool(eff_bias.any()),
                sched=sched,
            )
            if sched is not None:  # schedule tables in the state's dtype
                sched["gain"] = sched["gain"].to(state_dtype)
                sched["bias"] = sched["bias"].to(state_dtype)
        # Synapse buffers (what each synapse delivers this step).
        buffers: dict[str, torch.Tensor | int] = {n: 0 for n in self.synapses}
        rings: dict[str, torch.Tensor] = {}
        for n, syn in self.synapses.items():
            if syn.max_delay:
                out = int(np.prod(syn.out_shape))
                rings[n] = torch.zeros((batch, out, syn.max_delay + 1), dtype=torch.float64,
                                       device=dev)
        rec_buffers: dict[str, torch.Tensor | int] = {n: 0 for n, s in self.synapses.items()
                                                     if s.rec_weight is not None}
        traces: dict[str, list[torch.Tensor]] = {
            f"{n}.{q}": [] for n, qs in rec.items() for q in ("u", "v", "s") if q in qs
        }
        counts: dict[str, list[torch.Tensor]] = {n: [] for n in neurons}  # per step, (B,)
        x_dev = torch.as_tensor(x, device=dev)

        for t in range(steps):
            tau = t + 1  # Lava's 1-based time step
            values: dict[str, torch.Tensor | int | None] = {}
            for name in self.order:
                node = g.nodes[name]
                preds = g.predecessors(name)
                if isinstance(node, Input):
                    values[name] = x_dev[..., t] if input_mode == "spikes" else None
                    if observer is not None and values[name] is not None:
                        observer.input_step(name, t, values[name])
                elif name in self.synapses:
                    values[name] = buffers[name]
                elif isinstance(node, QCubaLIF):
                    a = _sum_events([values[p] for p in preds] + [
                        rec_buffers[src] for src in self.rec_sources.get(name, ())])
                    st = neurons[name]
                    if reset_interval is not None and tau % reset_interval == st["reset_phase"]:
                        st["u"] = torch.zeros_like(st["u"])
                        st["v"] = torch.zeros_like(st["v"])
                    if st["sched"] is not None:  # QCubaBNTT: this step's gain and bias rows
                        a = self._bntt_gain(st, a, t)
                    step = self._neuron_step_int if st["emulate32"] else self._neuron_step
                    s_bool = step(st, a)
                    s_out = s_bool.to(torch.float32)  # synapses read 0/1 floats
                    values[name] = s_out
                    if observer is not None:
                        observer.neuron_step(name, t, s_bool,
                                             st["u"] if st["keep_u"] else None, st["v"], a)
                    counts[name].append(s_out.reshape(batch, -1).sum(dim=1))  # exact: < 2**24
                    qs = rec.get(name, ())
                    if "u" in qs:  # state tensors are never modified in place: no copies
                        traces[f"{name}.u"].append(st["u"])
                    if "v" in qs:
                        traces[f"{name}.v"].append(st["v"])
                    if "s" in qs:
                        traces[f"{name}.s"].append(s_bool.to(torch.int8))
                elif isinstance(node, Flatten):
                    values[name] = self._map(values[preds[0]], lambda v: v.reshape(batch, -1))
                elif isinstance(node, Concat):
                    vals = [values[p] for p in preds]
                    vals = [v if torch.is_tensor(v) else
                            torch.zeros((batch, *self.shapes[p]), dtype=torch.int64, device=dev)
                            for v, p in zip(vals, preds)]
                    values[name] = torch.cat(vals, dim=1 + node.axis)
                elif isinstance(node, Add):
                    values[name] = _sum_events([values[p] for p in preds])
            # Synapses consume this step's events and buffer the current for the next step.
            for name, syn in self.synapses.items():
                src = g.predecessors(name)[0]
                ev = values[src]
                # Events from neurons are already 0/1; binary input events are binarized here.
                binary = src == in_name and in_node.num_message_bits == 0
                buffers[name] = self._synapse_step(syn, ev, batch, binary, rings.get(name))
                if syn.rec_weight is not None:
                    s_self = values[syn.rec_target]
                    acc = s_self.reshape(batch, -1).to(syn.dtype) @ syn.rec_w
                    rec_buffers[name] = _fshift(acc, syn.weight_exp).reshape(
                        batch, *syn.out_shape)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        sim_time = time.perf_counter() - start
        out_traces = {
            key: torch.stack(vals, dim=-1).to(torch.int32 if key[-1] in "uv" else torch.int8)
            .cpu().numpy()
            for key, vals in traces.items()
        }
        return RunResult(
            backend="hw_sim",
            steps=steps,
            samples=batch,
            layers=list(g.neurons),
            traces=out_traces,
            spike_counts={n: (torch.stack(c).to(torch.int64).sum(dim=0).cpu().numpy() if c
                              else np.zeros(batch, dtype=np.int64))
                          for n, c in counts.items()},
            sim_time_s=sim_time,
        )

    @staticmethod
    def _map(value, fn):
        return fn(value) if torch.is_tensor(value) else value

    def _synapse_step(self, syn: _Synapse, ev, batch: int, binary: bool, ring):
        """This step's events in; the (exact-integer float) current delivered next step out."""
        if ev is None or (not torch.is_tensor(ev) and ev == 0):
            return 0  # no events (e.g. an upstream synapse before its first delivery)
        if not torch.is_tensor(ev):
            ev = torch.zeros((batch, 1), dtype=torch.int64, device=self.device) + ev
        if binary:
            ev = ev != 0
        dtype = syn.dtype
        if syn.kind == "dense":
            flat = ev.reshape(batch, -1).to(dtype)
            if ring is not None:  # Lava's DelayDense: a ring of per-delay accumulations
                ring[..., 0] = 0
                ring.copy_(torch.roll(ring, -1, dims=-1))
                for k, wk in syn.delay_w:
                    ring[..., k] += _fshift(flat @ wk, syn.weight_exp).double()
                return ring[..., 0].reshape(batch, *syn.out_shape).clone()
            acc = flat @ syn.w
            return _fshift(acc, syn.weight_exp).reshape(batch, *syn.out_shape)
        if syn.kind == "conv":
            acc = F.conv2d(ev.to(dtype), syn.w, **syn.conv_args)
        else:
            a = syn.conv_args
            acc = F.avg_pool2d(ev.to(dtype), a["kernel_size"], a["stride"], a["padding"],
                               divisor_override=1) * syn.w
        acc = _fshift(acc, syn.weight_exp)
        if syn.needs_wrap24:  # Lava's signed_clamp(x, 24) is a modular wrap
            acc = torch.remainder(acc.double() + M24, float(1 << 24)) - M24
        return acc

    def _bntt_schedule(self, node: QCubaBNTT, shape: tuple[int, ...], depth: int,
                       a_bound: float) -> tuple[dict, float, bool]:
        """Schedule tables of a QCubaBNTT layer and the bounds of its gained input.

        Returns ``(sched, a_bound, emulate32)``: ``sched`` holds the ``(T, C, 1, ...)`` gain
        mantissas and shifted bias rows (broadcasting over the neuron shape), the phase
        (pipeline depth); ``a_bound`` bounds the gained input ``|a'|`` (saturated at 2**23);
        ``emulate32`` selects the int64 step with Lava's int32 overflow, needed once
        ``a' * 2**6`` can leave the 24-bit range (u can then leave it too) or once
        ``a * gain`` can leave float64's exact integers."""
        per_channel = (node.gain.shape[1],) + (1,) * (len(shape) - 1)
        steps = node.gain.shape[0]
        gain = node.gain.astype(np.int64).reshape(steps, *per_channel)
        bias = (node.bias.astype(np.int64) << node.bias_exp).reshape(steps, *per_channel)
        g_max = float(np.abs(gain).max(initial=0))
        raw = a_bound * g_max
        gained = min(raw / 2.0 ** node.gain_exp, float(M24))
        sched = dict(
            gain=torch.as_tensor(gain, device=self.device),
            bias=torch.as_tensor(bias, device=self.device),
            gain_exp=int(node.gain_exp), phase=int(depth), steps=int(steps),
        )
        return sched, gained, gained * 64 >= M24 or raw >= FLOAT64_EXACT

    @staticmethod
    def _bntt_gain(st: dict, a, t: int):
        """QCubaBNTT at step ``t``: set this step's bias row and return the gained input
        ``a' = clip(rtz(a * gain[k], gain_exp), -2**23, 2**23 - 1)``, ``k = (t - depth) mod T``
        (exact: int64, or float64 below 2**53)."""
        sched = st["sched"]
        k = (t - sched["phase"]) % sched["steps"]
        st["bias"] = sched["bias"][k]
        if not torch.is_tensor(a):
            if not a:
                return 0
            a = torch.full((1,), float(a), dtype=torch.float64, device=st["u"].device)
        g = sched["gain"][k]
        e = sched["gain_exp"]
        if st["emulate32"]:
            prod = a.to(torch.int64) * g
            out = torch.div(prod, 1 << e, rounding_mode="trunc") if e else prod
        else:
            out = (a.to(torch.float64) * g).mul_(1.0 / (1 << e)).trunc_()
        return out.clamp_(-M24, M24 - 1)

    @staticmethod
    def _neuron_step(st: dict, a) -> torch.Tensor:
        """CUBA-LIF update in float32 or float64 (see :func:`_float_state_dtype`), exact: every
        value is an integer the dtype represents, decays are a multiply by m/4096 (exact) and a
        truncation (Lava's round toward zero).

        Terms that are known to be zero are not added, and when ``current_decay`` is 4096 and
        nothing reads u (``keep_u`` False: no wrap, no recording, no observer that reads it)
        the new u, ``64·a``, is added into v directly instead of being stored."""
        u, v = st["u"], st["v"]
        mu, mv = st["mu"], st["mv"]
        if mv == 0:
            y, own = None, False  # v's decayed part is 0
        elif mv == 4096:
            y, own = v, False  # state tensors are never modified in place
        else:
            y, own = (v * (mv / 4096)).trunc_(), True

        def plus(term, alpha=1):  # y += alpha·term, into a tensor this update owns
            nonlocal y, own
            if y is None:  # a new tensor of the state's shape and dtype
                y = torch.add(st["zeros"], term, alpha=alpha)
            elif own:
                y.add_(term, alpha=alpha)
            else:
                y = torch.add(y, term, alpha=alpha)
            own = True

        x = None  # the new u, when stored
        if mu == 0 and not st["keep_u"]:
            if torch.is_tensor(a):
                plus(a, 64)
            elif a:
                plus(st["zeros"] + float(a) * 64)
        else:
            if torch.is_tensor(a):
                if mu == 0:
                    x = a.to(v.dtype) * 64
                elif mu == 4096:
                    x = torch.add(u, a, alpha=64)
                else:
                    x = (u * (mu / 4096)).trunc_().add_(a, alpha=64)
            else:
                if mu == 0:
                    x = st["zeros"]  # shared: state tensors are never modified in place
                elif mu == 4096:
                    x = u
                else:
                    x = (u * (mu / 4096)).trunc_()
                if a:
                    x = x + float(a) * 64
            if st["wrap_u"]:  # Lava's single conditional wrap into (-2**23, 2**23]
                x = torch.where(x > M24, x - 2 * M24, torch.where(x <= -M24, x + 2 * M24, x))
            if x is not st["zeros"]:
                plus(x)
        if not st["bias_zero"]:
            plus(st["bias"])
        if y is None:
            y = torch.zeros_like(v)
        elif not own:
            y = y.clone()
        if st["clamp_v"]:
            y.clamp_(-(M24 - 1), M24 - 1)
        s = y > st["vth"]
        if st["subtract"]:
            y.sub_(s.to(y.dtype) * st["vth"])
        else:
            y.masked_fill_(s, 0)
        if x is not None:
            st["u"] = x
        st["v"] = y
        return s

    @staticmethod
    def _neuron_step_int(st: dict, a) -> torch.Tensor:
        """The same update in int64 with Lava's int32 overflow emulated, for layers whose
        synaptic input can reach 2**24 (where Lava's ``a << 6`` leaves int32)."""
        u, v = st["u"], st["v"]
        du = torch.div(u * st["mu"], 4096, rounding_mode="trunc")
        if torch.is_tensor(a):
            act = _wrap32(a.to(torch.int64) << 6)
            du = _wrap32(du + act)
        elif a:
            du = _wrap32(du + (int(a) << 6))
        x = torch.where(du > M24, du - 2 * M24, torch.where(du <= -M24, du + 2 * M24, du))
        y = _wrap32(torch.div(v * st["mv"], 4096, rounding_mode="trunc") + x + st["bias"])
        y = y.clamp_(-(M24 - 1), M24 - 1)
        s = y > st["vth"]
        if st["subtract"]:
            y.sub_(s.to(torch.int64) * st["vth"])
        else:
            y.masked_fill_(s, 0)
        st["u"], st["v"] = x, y
        return s


def run(
    graph: Graph,
    inputs: np.ndarray,
    *,
    steps: int,
    input_mode: str = "bias",
    reset_interval: int | None = None,
    reset_offset: int = 0,
    record: Mapping[str, Iterable[str]] | Iterable[str] | None = None,
    device: str | torch.device = "cpu",
    observer: StepObserver | None = None,
) -> RunResult:
    """Simulate ``inputs`` (a batch) through ``graph`` for ``steps`` steps, bit-exactly.

    See :mod:`neurodeploy.simulation` for the input/record conventions. Returns a
    :class:`~neurodeploy.simulation.RunResult` with ``backend="hw_sim"``.
    """
    engine = Engine(graph, device=device)
    return engine.run(
        inputs, steps=steps, input_mode=input_mode, reset_interval=reset_interval,
        reset_offset=reset_offset, record=record, observer=observer,
    )
