"""Event accounting for hw_sim: what a mapped network does on the chip, per core and per time
step — input spikes, synaptic operations by synapse encoding, active and inactive neuron
updates, output spikes, NoC messages with their east-west/north-south hops under XY routing —
and the synaptic memory each core uses. :mod:`neurodeploy.cost` turns an :class:`Activity`
into energy and latency.

Use::

    acc = Accountant(graph, mapping, device="cpu")
    hw_sim.run(graph, x, steps=T, input_mode="spikes", observer=acc)   # several runs add up
    activity = acc.result()

:class:`Accountant` is a :class:`neurodeploy.hw_sim.StepObserver`. At construction it turns the
graph and its :class:`~neurodeploy.mapping.Mapping` into one sparse table per event source (each
neuron layer and the host input): for every presynaptic neuron, the synaptic ops it causes in
each destination core, the (source core, destination core) route each of its messages takes,
and its own core; neurons with identical rows (a convolution's input channels at one position)
share one group. Each step then costs, per layer, two to four casts of the layer's tensors to
bool with as many ors (the active-update test), two sums over the batch, and index/scatter adds
over the layer's groups into that step's count row, all on the run's device; nothing is copied
back before :meth:`Accountant.result`.

Counting rules (every count is per step, summed over the batch; :class:`Activity` divides by
the number of samples where it says *per sample*):

* **Messages** (NoC traffic). A spike of neuron ``j`` — or a non-zero event of the host input —
  sends one message to every destination core holding at least one of its non-zero-weight
  synapses (convolution and pooling: at least one kernel tap), once per synapse node: the
  mapping's output axons (Loihi's one axon per destination core). A message belongs to the step
  its spike is emitted: the spike crosses the mesh and is accumulated before that step's
  barrier; Lava's one-step synaptic delay only defers when the neuron integrates it.
* **input_spikes** of core ``c``: the messages it receives, from cores and from the host.
* **syn_ops** of core ``c``, by the encoding the mapping chose for each synapse node: per
  message received, the synapse entries the core reads for that axon, i.e. what the encoding
  stores — ``dense`` (QDense): one weight per neuron of the core, zeros included (the mapping
  stores ``n × fan_in`` weights); ``sparse``: the non-zero weights from ``j`` into the core;
  convolution and pooling (``dense`` or shared-weight ``conv``): the kernel taps connecting
  ``j`` to the core's neurons (receptive-field geometry, zero taps included).
* **output_spikes** of core ``c``: spikes its neurons emit (the last layer's too; their readout
  by the host is no message).
* **active_updates**: neurons of the core whose update at step ``t`` is *active*: a non-zero
  synaptic input ``a(t)``, a non-zero state before (``u(t-1)``, ``v(t-1)``) or after
  (``u(t)``, ``v(t)``) the update, or a spike. This is reference/loihi.md §8's "non-zero input,
  non-zero state, or a spike": a neuron at rest (zero state) with zero synaptic input and zero
  bias stays at rest and cannot spike, and any non-zero bias shows as ``v(t) != 0`` or a spike.
  Under a ``reset_interval`` the state before is the one the previous step left (pre-reset).
  Layers where a term cannot change the count skip it (see ``_checks_needed``: e.g. the spike
  test only matters under hard reset with a bias above threshold); tests check the result
  against the full definition.
* **inactive_updates**: the core's other neurons (every mapped neuron is updated every step).
* **messages_out**, **hops_ew**, **hops_ns** of core ``c``: the messages it sends and their
  tile hops east-west and north-south under XY (dimension-ordered) routing on the global tile
  grid (chips side by side, :meth:`Mapping.hops`). ``routes`` keeps every (source core,
  destination core) pair with its message count per step for the NoC time and congestion.
* **Host input**: events from the host (``input_mode="spikes"``) enter at their destination
  core: they count as input spikes and synaptic ops there, with source ``HOST`` (-1) and no
  hops (host I/O lies outside every target's energy scope). Bias input sends no events.
* **synaptic_memory_bits**, **neurons**: per core, from the mapping (constant over steps).

**On-chip SAM accumulator** (a mapping made with ``sam=``, :mod:`neurodeploy.mapping`): its
events are counted apart, in :attr:`Activity.sam` (a :class:`SamActivity`), so the network's
own counts stay what they are without it. Per spike of a traced neuron (at the step it is
emitted): one message from the neuron to its trace's core (its own core: no hops) and one
synaptic op there; the trace's graded read-out, one output spike of the trace's core, one
message to the pixel's channel-sum core (hops when that is another core) and one synaptic op
there: 2 synaptic ops and 2 messages per spike. Every trace and sum is updated every step;
a trace's update is *active* when its value before or after is non-zero (the accountant runs
the trace ``q = floor(q·(4096 − δ)/4096) + A·s`` from step 0 of each run, as
:class:`neurodeploy.sam.SamAccumulator` does from its start step), a sum's when a channel of its
pixel fires in this step or fired in the previous one (it holds one step's map).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import NeurodeployError, UnsupportedError
from .ir import Graph, Input, Node, QConv2d, QCubaLIF, QDense, QSumPool2d
from .mapping import SourceBlock, incoming, source_blocks
from .simulation import pipeline_depths

#: Source core index of messages that come from the host (input events).
HOST = -1
#: Per-core per-step count kinds of an :class:`Activity` (``syn_ops`` is a dict by encoding).
COUNT_KINDS = ("input_spikes", "syn_ops", "active_updates", "inactive_updates",
               "output_spikes", "messages_out", "hops_ew", "hops_ns")
_MASK_ELEMENTS = 1 << 24  # float32 elements per chunk of per-core masks (conv fan-out)


# ------------------------------------------------------------------------------ the result


@dataclass
class Activity:
    """What a mapped network did over a run (or several runs of equal length).

    Per-core per-step arrays are ``(steps, cores)`` int64 counts summed over all observed
    samples; divide by ``samples`` (or use :meth:`per_sample`) for one sample.

    Attributes:
        target: the mapping's target name.
        steps: time steps per run.
        samples: samples observed (sum of the batch sizes of all runs).
        runs: runs observed.
        layers: neuron layers in graph order.
        core_layer: ``(cores,)`` layer of each core.
        core_tile: ``(cores, 2)`` global tile (x, y) of each core.
        core_chip: ``(cores,)`` chip of each core.
        neurons: ``(cores,)`` neurons mapped on each core.
        synaptic_memory_bits: ``(cores,)`` synaptic memory in use on each core (bits).
        input_spikes, active_updates, inactive_updates, output_spikes, messages_out,
        hops_ew, hops_ns: ``(steps, cores)`` counts (see the module docstring).
        syn_ops: encoding → ``(steps, cores)`` synaptic ops.
        route_src, route_dst: ``(routes,)`` source core (``HOST`` = -1 for the host) and
            destination core of every connected pair.
        route_hops_ew, route_hops_ns: ``(routes,)`` tile hops of one message on the route.
        route_messages: ``(steps, routes)`` messages on each route.
        chips_used: chips of the mapping.
        tiles_used: distinct tiles holding mapped cores.
        pipeline_depth: synapses on the longest input-to-output path (Lava's one-step delay
            each): extra steps before the last input reaches the output.
    """

    target: str
    steps: int
    samples: int
    runs: int
    layers: list[str]
    core_layer: list[str]
    core_tile: np.ndarray
    core_chip: np.ndarray
    neurons: np.ndarray
    synaptic_memory_bits: np.ndarray
    input_spikes: np.ndarray
    syn_ops: dict[str, np.ndarray]
    active_updates: np.ndarray
    inactive_updates: np.ndarray
    output_spikes: np.ndarray
    messages_out: np.ndarray
    hops_ew: np.ndarray
    hops_ns: np.ndarray
    route_src: np.ndarray
    route_dst: np.ndarray
    route_hops_ew: np.ndarray
    route_hops_ns: np.ndarray
    route_messages: np.ndarray
    chips_used: int
    tiles_used: int
    pipeline_depth: int
    counting_rules: list[str] = field(default_factory=list)
    #: the on-chip SAM accumulator's events (None when the mapping has none)
    sam: SamActivity | None = None

    @property
    def cores(self) -> int:
        return len(self.core_layer)

    @property
    def syn_ops_total(self) -> np.ndarray:
        """``(steps, cores)`` synaptic ops of all encodings."""
        total = np.zeros((self.steps, self.cores), dtype=np.int64)
        for arr in self.syn_ops.values():
            total += arr
        return total

    def counts(self, kind: str) -> np.ndarray:
        """``(steps, cores)`` counts of ``kind`` (one of :data:`COUNT_KINDS`; ``syn_ops`` gives
        all encodings together), summed over samples."""
        if kind == "syn_ops":
            return self.syn_ops_total
        if kind not in COUNT_KINDS:
            raise NeurodeployError(f"unknown count {kind!r}; choose from {', '.join(COUNT_KINDS)}")
        return getattr(self, kind)

    def per_sample(self, kind: str) -> np.ndarray:
        """``(steps, cores)`` mean counts of ``kind`` per sample (float)."""
        return self.counts(kind) / self.samples

    def total(self, kind: str) -> int:
        """Count of ``kind`` over all cores, steps and samples."""
        return int(self.counts(kind).sum())

    def per_layer(self) -> dict[str, dict[str, Any]]:
        """Layer → totals over its cores and all steps, per sample (floats), plus ``neurons``,
        ``cores`` and ``synaptic_memory_bits``."""
        layer_arr = np.asarray(self.core_layer)
        out: dict[str, dict[str, Any]] = {}
        for name in self.layers:
            sel = layer_arr == name
            row: dict[str, Any] = {
                "neurons": int(self.neurons[sel].sum()), "cores": int(sel.sum()),
                "synaptic_memory_bits": int(self.synaptic_memory_bits[sel].sum())}
            for kind in COUNT_KINDS:
                row[kind] = float(self.counts(kind)[:, sel].sum()) / self.samples
            row["syn_ops_by_encoding"] = {
                enc: float(arr[:, sel].sum()) / self.samples for enc, arr in self.syn_ops.items()}
            out[name] = row
        return out

    def to_dict(self, *, per_step: bool = True) -> dict[str, Any]:
        """JSON-ready summary, counts per sample: ``totals`` (over cores and steps),
        ``per_layer``, ``per_core`` (totals over steps) and, with ``per_step``,
        ``per_core_per_step`` (``[step][core]`` lists) for every count kind."""
        totals = {kind: self.total(kind) / self.samples for kind in COUNT_KINDS}
        totals["syn_ops_by_encoding"] = {enc: float(a.sum()) / self.samples
                                         for enc, a in self.syn_ops.items()}
        per_core = []
        sums = {kind: self.counts(kind).sum(axis=0) / self.samples for kind in COUNT_KINDS}
        for c in range(self.cores):
            row: dict[str, Any] = {
                "core": c, "layer": self.core_layer[c], "chip": int(self.core_chip[c]),
                "tile": [int(v) for v in self.core_tile[c]], "neurons": int(self.neurons[c]),
                "synaptic_memory_bits": int(self.synaptic_memory_bits[c])}
            row.update({kind: float(sums[kind][c]) for kind in COUNT_KINDS})
            per_core.append(row)
        doc: dict[str, Any] = {
            "target": self.target, "steps": self.steps, "samples": self.samples,
            "runs": self.runs, "cores": self.cores, "chips_used": self.chips_used,
            "tiles_used": self.tiles_used, "pipeline_depth": self.pipeline_depth,
            "encodings": sorted(self.syn_ops),
            "totals_per_sample": totals, "per_layer": self.per_layer(), "per_core": per_core,
            "counting_rules": list(self.counting_rules),
        }
        if per_step:
            doc["per_core_per_step"] = {
                kind: (self.per_sample(kind)).tolist() for kind in COUNT_KINDS}
        if self.sam is not None:
            doc["sam"] = self.sam.to_dict(self.core_layer, self.samples)
        return doc


@dataclass
class SamActivity:
    """The on-chip SAM accumulator's events over a run (module docstring), apart from the
    network's. Arrays ``(steps, cores)`` are int64 counts summed over all observed samples.

    Attributes:
        layers: SAM layer → ``{"channels", "traces", "sums"}``.
        compartments: ``(cores,)`` trace and sum compartments on each core.
        syn_ops: synaptic ops (one per message received), charged at
            :data:`neurodeploy.sam.SAM_ENCODING`'s cost.
        input_spikes: messages received.
        output_spikes: trace read-outs (graded spikes) sent.
        active_updates, inactive_updates: compartment updates.
        messages_out, hops_ew, hops_ns: messages sent and their hops (by sending core).
        route_src, route_dst, route_hops_ew, route_hops_ns, route_messages: as
            :class:`Activity`'s, for the accumulator's messages.
    """

    layers: dict[str, dict[str, int]]
    compartments: np.ndarray
    syn_ops: np.ndarray
    input_spikes: np.ndarray
    output_spikes: np.ndarray
    active_updates: np.ndarray
    inactive_updates: np.ndarray
    messages_out: np.ndarray
    hops_ew: np.ndarray
    hops_ns: np.ndarray
    route_src: np.ndarray
    route_dst: np.ndarray
    route_hops_ew: np.ndarray
    route_hops_ns: np.ndarray
    route_messages: np.ndarray

    def to_dict(self, core_layer: list[str], samples: int) -> dict[str, Any]:
        """JSON-ready, counts per sample: ``totals_per_sample`` and ``per_layer`` (the layer's
        cores: every count kind, plus ``channels``, ``traces``, ``sums``, ``compartments``)
        and ``per_core`` (totals over steps, cores holding accumulator compartments only)."""
        kinds = {k: getattr(self, k) for k in COUNT_KINDS}
        totals = {k: float(v.sum()) / samples for k, v in kinds.items()}
        layer_arr = np.asarray(core_layer)
        per_layer = {}
        for name, info in self.layers.items():
            sel = layer_arr == name
            row: dict[str, Any] = dict(info)
            row["compartments"] = int(self.compartments[sel].sum())
            row.update({k: float(v[:, sel].sum()) / samples for k, v in kinds.items()})
            per_layer[name] = row
        sums = {k: v.sum(axis=0) / samples for k, v in kinds.items()}
        per_core = [{"core": c, "layer": core_layer[c],
                     "compartments": int(self.compartments[c]),
                     **{k: float(sums[k][c]) for k in COUNT_KINDS}}
                    for c in np.flatnonzero(self.compartments).tolist()]
        return {"totals_per_sample": totals, "per_layer": per_layer, "per_core": per_core,
                "counting_rules": list(SAM_COUNTING_RULES)}


COUNTING_RULES = [
    "messages: one per (spike or non-zero input event, synapse node, destination core holding "
    "one of its synapses), counted at the step the spike is emitted",
    "input_spikes: messages a core receives (from cores and from the host)",
    "syn_ops: per message, the synapse entries its encoding stores for that axon in the core "
    "(dense: every neuron of the core; sparse: non-zero weights; conv/pool: kernel taps)",
    "active_updates: neurons with non-zero synaptic input, non-zero u or v before or after the "
    "update, or a spike; inactive_updates: the core's other neurons",
    "output_spikes: spikes the core's neurons emit; hops: XY routing on the global tile grid, "
    "charged to the sending core; host input enters at the destination core (no hops)",
]


SAM_COUNTING_RULES = [
    "SAM accumulator: per spike of a traced neuron, one message to its trace's core (local) "
    "and one synaptic op there, one read-out (an output spike of the trace's core), one "
    "message to the pixel's channel-sum core and one synaptic op there",
    "SAM accumulator: every trace and channel sum is updated every step; a trace's update is "
    "active when its value before or after it is non-zero, a sum's when a channel of its "
    "pixel fires in this step or the previous one",
]


# ------------------------------------------------------------------------------ graph tracing


@dataclass
class _Conn:
    """A synapse node (or a recurrent matrix) feeding a neuron layer."""

    name: str  # key of mapping.synapse_encoding
    node: Node
    target: str
    blocks: list[SourceBlock]
    in_shape: tuple[int, ...]
    weight: np.ndarray | None = None  # dense matrices only (out, in)
    binary_host: bool = False  # fed by a binary Input directly (hw_sim binarizes its events)


def _trace(graph: Graph) -> tuple[list[_Conn], list[tuple[str, SourceBlock]]]:
    """Every synapse into every neuron layer, and the host input blocks that feed a neuron
    layer directly (without a synapse)."""
    shapes = graph.shapes
    conns: list[_Conn] = []
    direct: list[tuple[str, SourceBlock]] = []
    for neuron in graph.neurons:
        synapses, feeds = incoming(graph, neuron)
        for name in synapses:
            node = graph.nodes[name]
            if not isinstance(node, (QDense, QConv2d, QSumPool2d)):
                raise UnsupportedError(f"{name} ({node.type_name}): event accounting needs a "
                                       "fixed-point graph (QDense, QConv2d, QSumPool2d)")
            pred = graph.predecessors(name)[0]
            blocks = source_blocks(graph, pred, shapes)
            pnode = graph.nodes[pred]
            conns.append(_Conn(name, node, neuron, blocks, tuple(shapes[pred]),
                               getattr(node, "weight", None),
                               isinstance(pnode, Input) and pnode.num_message_bits == 0))
            rec = getattr(node, "weight_rec", None)
            if rec is not None:
                n = int(np.prod(shapes[neuron]))
                conns.append(_Conn(f"{name}.rec", node, neuron,
                                   [SourceBlock(neuron, neuron, 0, n)], (n,), np.asarray(rec)))
        for name in feeds:
            for block in source_blocks(graph, name, shapes):
                if block.layer is not None:
                    raise UnsupportedError(
                        f"{neuron}: fed by neuron layer {block.layer} without a synapse; "
                        "a core can only receive spikes through synapses")
                direct.append((neuron, block))
    return conns, direct


def _input_bound(graph: Graph, conn: _Conn) -> float:
    """Upper bound of ``|a|`` a synapse can deliver in one step (inf when unknown)."""
    node = conn.node
    if any(b.layer is None for b in conn.blocks) and not conn.binary_host:
        return math.inf  # graded (or not binarized) host events: no bound before the run
    if isinstance(node, QSumPool2d):
        total = abs(node.weight) * node.kernel_size[0] * node.kernel_size[1]
        exp = node.weight_exp
    else:
        w = np.abs(np.asarray(conn.weight if conn.weight is not None else node.weight,
                              dtype=np.float64))
        total = float(w.reshape(w.shape[0], -1).sum(axis=1).max(initial=0))
        exp = node.weight_exp
    return total * 2.0 ** exp + 1.0  # +1: the floor of a right shift


def _checks_needed(graph: Graph, name: str, conns: list[_Conn],
                   direct: list[tuple[str, SourceBlock]]) -> tuple[bool, bool, bool, bool]:
    """Which terms of the active-update test can matter for layer ``name`` beyond "u or v
    non-zero before or after the update" — ``(spike, input)`` — and two shortcuts for ``u``:
    ``u_is_a`` (``u == 64·a`` exactly: no current memory, no wrap, so ``a`` can stand for
    ``u``) and ``u_rests`` (no current memory: ``u == 0`` in a step without input).

    From rest (zero state), an update with input ``a`` gives ``u = wrap24(64·a)`` and
    ``v = u + bias·2**bias_exp`` before the spike test, so: a spike leaves no trace in the
    state only under hard reset with a bias above the threshold (``bias·2**bias_exp >
    threshold·64``, or a bias input); a non-zero input leaves none only when ``64·|a|`` reaches
    the 24-bit wrap (``|a| >= 2**17``). Layers where neither can happen skip those tests (a cast
    and an or each); the count is the same."""
    node = graph.nodes[name]
    has_direct = any(target == name for target, _ in direct)
    if type(node) is not QCubaLIF:  # other kinds (QCubaBNTT's gain...): test everything
        return True, True, False, False
    bias = float(np.max(np.asarray(node.bias), initial=0)) * 2.0 ** node.bias_exp
    need_s = node.reset != "subtract" and (has_direct or bias > node.threshold * 64)
    bound = sum(_input_bound(graph, c) for c in conns if c.target == name)
    need_a = has_direct or bound >= 2 ** 17
    # Without current memory (current_decay 4096) u = wrap24(64·a): 0 without input, and
    # exactly 64·a where the wrap cannot happen.
    u_rests = node.current_decay == 4096
    return need_s, need_a, u_rests and not need_a, u_rests


# ------------------------------------------------------------------------------ fan-out


def _dense_fanout(nonzero: np.ndarray, out_core: np.ndarray, encoding: str,
                  core_neurons: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(j, core, syn_ops)`` of a dense matrix (``nonzero`` ``(out, in)``) for every input
    ``j`` and destination core it reaches (at least one non-zero weight)."""
    order = np.argsort(out_core, kind="stable")
    cores, starts = np.unique(out_core[order], return_index=True)
    nnz = np.add.reduceat(nonzero[order].view(np.uint8), starts, axis=0, dtype=np.int64)
    ci, jj = np.nonzero(nnz)
    core = cores[ci]
    ops = nnz[ci, jj] if encoding == "sparse" else core_neurons[core]
    return jj.astype(np.int64), core.astype(np.int64), ops.astype(np.int64)


def _conv_fanout(node: Node, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                 out_core: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(j, core, taps)`` of a convolution or sum pooling: for every input neuron ``j`` and
    destination core, the kernel taps connecting it to the core's neurons (a transposed
    convolution of each core's output mask with an all-ones kernel)."""
    c_in, h_in, w_in = in_shape
    c_out = out_shape[0]
    if isinstance(node, QSumPool2d):
        ones = torch.ones((c_out, 1, *node.kernel_size))
        args: dict[str, Any] = dict(stride=node.stride, padding=node.padding, groups=c_out)
        dil = (1, 1)
    else:
        ones = torch.ones((c_out, c_in // node.groups, *node.weight.shape[2:]))
        args = dict(stride=node.stride, padding=node.padding, dilation=node.dilation,
                    groups=node.groups)
        dil = node.dilation
    # The input rows/columns past the transposed output's natural size (a stride that does not
    # divide the padded input) are reached through output_padding (< stride, always valid).
    natural = [(o - 1) * s - 2 * p + d * (k - 1) + 1 for o, s, p, d, k in zip(
        out_shape[1:], node.stride, node.padding, dil, ones.shape[2:])]
    args["output_padding"] = (h_in - natural[0], w_in - natural[1])
    cores = np.unique(out_core)
    grid = torch.as_tensor(out_core.reshape(out_shape))
    n_in, n_out = c_in * h_in * w_in, int(out_core.size)
    chunk = max(1, _MASK_ELEMENTS // max(n_in + n_out, 1))
    js, cs, ops = [], [], []
    for lo in range(0, len(cores), chunk):
        part = torch.as_tensor(cores[lo:lo + chunk])
        mask = (grid[None] == part[:, None, None, None]).to(torch.float32)
        taps = F.conv_transpose2d(mask, ones, **args).reshape(len(part), n_in)
        ki, jj = torch.nonzero(taps, as_tuple=True)
        js.append(jj.numpy())
        cs.append(part[ki].numpy())
        ops.append(taps[ki, jj].round().to(torch.int64).numpy())
    if not js:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return (np.concatenate(js).astype(np.int64), np.concatenate(cs).astype(np.int64),
            np.concatenate(ops))


def _group_columns(cols: np.ndarray, rows: np.ndarray, vals: np.ndarray, n_cols: int,
                   n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge duplicate ``(row, col)`` entries of a sparse ``(n_rows, n_cols)`` table and group
    identical columns (a convolution's input channels at one position reach the same cores).

    Returns ``(gid, rows, groups, vals)``: the group of every column and the entries of one
    column per group. Columns are grouped by two random 64-bit hashes of their entries and
    every member is then checked entry by entry against its group's first column (a hash
    collision leaves the columns ungrouped), so the grouping is exact."""
    key = cols * n_rows + rows
    uniq, inv = np.unique(key, return_inverse=True)  # sorted by column, then row
    vals = np.bincount(inv, weights=vals, minlength=len(uniq))
    cols, rows = uniq // n_rows, uniq % n_rows
    length = np.bincount(cols, minlength=n_cols)
    start = np.concatenate(([0], np.cumsum(length)[:-1]))
    rng = np.random.default_rng(0)
    sig = [length.astype(np.uint64)]
    for _ in range(2):
        weight = rng.integers(1, 2 ** 63, size=n_rows, dtype=np.uint64) | np.uint64(1)
        with np.errstate(over="ignore"):
            mixed = weight[rows] * (vals.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
            csum = np.concatenate((np.zeros(1, np.uint64), np.cumsum(mixed, dtype=np.uint64)))
            sig.append(csum[start + length] - csum[start])
    _, first, gid = np.unique(np.stack(sig, axis=1), axis=0, return_index=True,
                              return_inverse=True)
    gid = gid.reshape(-1)
    # exact check: every entry of every column equals the same entry of its group's first
    rep = first[gid][cols]  # representative column of each entry's column
    pos = start[rep] + (np.arange(len(cols)) - start[cols])
    same = (length[rep] == length[cols]) & (rows[pos.clip(max=len(rows) - 1)] == rows) & \
        (vals[pos.clip(max=len(vals) - 1)] == vals)
    if not same.all():  # a hash collision: keep every column on its own
        gid = np.arange(n_cols)
        first = gid
    keep = np.isin(cols, first)
    group_of_first = np.empty(n_cols, dtype=np.int64)
    group_of_first[first] = np.arange(len(first))
    return gid.astype(np.int64), rows[keep], group_of_first[cols[keep]], vals[keep]


# ------------------------------------------------------------------------------ the observer


@dataclass
class _Table:
    """One event source's map from per-neuron batch sums to the per-step count row.

    When blocks of ``k`` channels of a feature-map position share group and core (cores that
    hold channel groups of position tiles, feeding convolutions), ``fold = (C/k, k, H·W)`` and
    the per-neuron arrays hold one entry per (block, position): the batch sums then also sum
    over the channels of each block first."""

    gid: torch.Tensor  # (size or C/k·H·W,) group of each neuron (identical fan-out) or block
    groups: int
    rows: torch.Tensor  # per entry of the group table: row of the step's count vector
    cols: torch.Tensor  # ... the group
    vals: torch.Tensor  # ... count per spike (synaptic ops, messages, output spikes)
    size: int  # neurons of the source
    act_rows: torch.Tensor | None  # (size or C/k·H·W,) row of the active-update counts
    fold: tuple[int, int, int] | None

    def batch_sum(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``(B, *shape)`` → float64 sums over the batch (and channels when folded)."""
        total = x.reshape(x.shape[0], -1).sum(0, dtype=dtype)  # contiguous: the fast reduction
        if self.fold is not None:
            total = total.reshape(self.fold).sum(1).reshape(-1)
        return total.to(torch.float64)

    def add_spikes(self, row: torch.Tensor, counts: torch.Tensor) -> None:
        """Add the events caused by ``counts`` float64 spikes per neuron (or position)."""
        per_group = torch.zeros(self.groups, dtype=torch.float64, device=counts.device)
        per_group.index_add_(0, self.gid, counts)
        row.scatter_add_(0, self.rows, per_group[self.cols] * self.vals)


def _fold(shape: tuple[int, ...], *per_neuron: np.ndarray | None
          ) -> tuple[tuple[int, int, int] | None, list[np.ndarray | None]]:
    """``((C/k, k, H·W), per-(channel block, position) arrays)`` for the largest channel block
    ``k > 1`` of a ``(C, H, W)`` layer within which every array is the same for all channels of
    each position (cores that hold groups of channels of a tile of positions, feeding
    convolutions), else ``(None, the arrays)``."""
    if len(shape) != 3 or shape[0] == 1:
        return None, list(per_neuron)
    c, hw = shape[0], shape[1] * shape[2]
    for k in range(c, 1, -1):
        if c % k:
            continue
        grids = [None if a is None else a.reshape(c // k, k, hw) for a in per_neuron]
        if all(g is None or (g == g[:, :1]).all() for g in grids):
            return (c // k, k, hw), [None if g is None else g[:, 0].reshape(-1).copy()
                                     for g in grids]
    return None, list(per_neuron)


@dataclass
class _SamTable:
    """One SAM layer's rows in the step's count row (per traced neuron / per pixel)."""

    channels: int
    keep: int  # 4096 - decay
    scale: int
    hw: int
    local_rows: torch.Tensor  # (K,) message route neuron -> its trace (same core)
    read_rows: torch.Tensor  # (K,) message route trace -> its pixel's sum
    out_rows: torch.Tensor  # (K,) read-out spike of the trace's core
    trace_act_rows: torch.Tensor  # (K,) active-update row of the trace's core
    sum_act_rows: torch.Tensor  # (H*W,) active-update row of the sum's core


class Accountant:
    """Counts a mapped network's events while hw_sim runs it (a ``StepObserver``).

    Args:
        graph: the fixed-point graph hw_sim runs.
        mapping: its :class:`~neurodeploy.mapping.Mapping` (``map_graph(graph, target)``).
        device: where hw_sim runs (``"cpu"``, ``"cuda"``): the tables live there and every
            per-step operation stays on it; :meth:`result` copies the counts back once.

    Pass it as ``observer=`` to one or more ``hw_sim.run`` calls of equal length (the
    counts add up over runs), then call :meth:`result`. Raises :class:`NeurodeployError` when
    the mapping does not belong to the graph, :class:`UnsupportedError` for graphs the
    mapping model cannot express.
    """

    def __init__(self, graph: Graph, mapping: Any, *, device: str | torch.device = "cpu"
                 ) -> None:
        self.graph = graph
        self.mapping = mapping
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise NeurodeployError("device 'cuda' requested but torch sees no CUDA device")
        if graph.stage == "float":
            raise UnsupportedError("event accounting needs a fixed-point graph; quantize it "
                                   "first (neurodeploy compile does)")
        shapes = graph.shapes
        self._check_mapping(graph, mapping, shapes)
        n_cores = mapping.cores_used
        self._cores = n_cores
        conns, direct = _trace(graph)
        self.encodings = sorted({mapping.synapse_encoding.get(c.name, "dense") for c in conns}
                                | {"dense"})
        enc_index = {e: i for i, e in enumerate(self.encodings)}
        core_of = {name: mapping.core_of(name, tuple(shapes[name])) for name in graph.neurons}
        core_neurons = np.array([c.neurons for c in mapping.cores], dtype=np.int64)

        # Layout of a step's count row: output spikes (cores), active updates (cores), synaptic
        # ops (cores, per encoding), messages (routes). Entries per source: (neuron columns,
        # synaptic-op rows or -1, synaptic ops per spike, (source cores, destination cores)).
        entries: dict[str, list[tuple[np.ndarray, ...]]] = {}
        pair_src: list[np.ndarray] = []
        pair_dst: list[np.ndarray] = []

        def add(source: str, cols: np.ndarray, rows: np.ndarray, vals: np.ndarray,
                pairs: tuple[np.ndarray, np.ndarray] | None = None) -> None:
            entries.setdefault(source, []).append((cols, rows, vals, pairs))

        syn_base = 2 * n_cores
        for conn in conns:
            encoding = mapping.synapse_encoding.get(conn.name, "dense")
            out_core = core_of[conn.target]
            if isinstance(conn.node, QDense):
                jj, cc, ops = _dense_fanout(np.asarray(conn.weight) != 0, out_core, encoding,
                                            core_neurons)
            else:
                jj, cc, ops = _conv_fanout(conn.node, conn.in_shape,
                                           tuple(shapes[conn.target]), out_core)
            syn_rows = syn_base + enc_index[encoding] * n_cores + cc
            for block in conn.blocks:
                sel = (jj >= block.offset) & (jj < block.offset + block.size)
                j_src = jj[sel] - block.offset
                src_core = (np.full(len(j_src), HOST, dtype=np.int64) if block.layer is None
                            else core_of[block.layer][j_src])
                add(block.node, j_src, syn_rows[sel], ops[sel].astype(np.float64),
                    (src_core, cc[sel]))
        for neuron, block in direct:
            j = np.arange(block.size, dtype=np.int64)
            add(block.node, j, np.full(block.size, -1, dtype=np.int64), np.zeros(block.size),
                (np.full(block.size, HOST, dtype=np.int64), core_of[neuron][block.offset + j]))
        # Routes: every connected (source core, destination core) pair.
        for items in entries.values():
            for _, _, _, pairs in items:
                pair_src.append(pairs[0])
                pair_dst.append(pairs[1])
        src_all = np.concatenate(pair_src) if pair_src else np.zeros(0, np.int64)
        dst_all = np.concatenate(pair_dst) if pair_dst else np.zeros(0, np.int64)
        keys = (src_all + 1) * n_cores + dst_all
        route_keys = np.unique(keys)
        self.route_src = (route_keys // n_cores - 1).astype(np.int64)
        self.route_dst = (route_keys % n_cores).astype(np.int64)
        hops = np.array([mapping.hops(int(a), int(b)) if a != HOST else (0, 0)
                         for a, b in zip(self.route_src, self.route_dst)],
                        dtype=np.int64).reshape(-1, 2)
        self.route_hops_ew, self.route_hops_ns = hops[:, 0], hops[:, 1]
        pair_base = syn_base + len(self.encodings) * n_cores
        self._width = pair_base + len(route_keys)

        # One table per source: neuron → groups of neurons with identical fan-out → row.
        self._tables: dict[str, _Table] = {}
        for source in set(entries) | set(graph.neurons):
            is_layer = graph.nodes[source].is_neuron
            size = int(np.prod(shapes[source]))
            cols_l, rows_l, vals_l = [], [], []
            for cols, rows, vals, pairs in entries.get(source, []):
                keep = rows >= 0
                pid = np.searchsorted(route_keys, (pairs[0] + 1) * n_cores + pairs[1])
                cols_l += [cols[keep], cols]
                rows_l += [rows[keep], pair_base + pid]
                vals_l += [vals[keep], np.ones(len(cols))]
            own = core_of[source] if is_layer else None
            if own is not None:  # a spike is an output spike of its own core
                cols_l.append(np.arange(size, dtype=np.int64))
                rows_l.append(own)
                vals_l.append(np.ones(size))
            empty = [np.zeros(0, np.int64)]
            gid, g_rows, g_cols, g_vals = _group_columns(
                np.concatenate(cols_l + empty), np.concatenate(rows_l + empty),
                np.concatenate(vals_l + [np.zeros(0)]), size, self._width)

            def dev(arr: np.ndarray, dtype: torch.dtype = torch.int64) -> torch.Tensor:
                return torch.as_tensor(arr, dtype=dtype, device=self.device)

            fold, (gid_f, own_f) = _fold(tuple(shapes[source]), gid, own)
            self._tables[source] = _Table(
                gid=dev(gid_f), groups=int(gid.max(initial=-1)) + 1, rows=dev(g_rows),
                cols=dev(g_cols), vals=dev(g_vals, torch.float64), size=size,
                act_rows=None if own_f is None else dev(n_cores + own_f), fold=fold)
        self.pipeline_depth = self._depth(graph)
        self._needs = {name: _checks_needed(graph, name, conns, direct)
                       for name in graph.neurons}
        self._sam_setup(mapping, shapes)
        self._reset()

    def _sam_setup(self, mapping: Any, shapes: dict) -> None:
        """The SAM accumulator's rows, after the network's in each step's count row: output
        spikes (read-outs, per core), active updates (per core), messages (per route)."""
        self._sam: dict[str, _SamTable] = {}
        layers = getattr(mapping, "sam_layers", None) or {}
        n = self._cores
        self._sam_base = self._width
        if not layers:
            return
        compartments = np.zeros(n, dtype=np.int64)
        parts = []
        for name, info in layers.items():
            shape = tuple(shapes[name])
            trace_core, sum_core = mapping.sam_cores(name, shape)
            hw = shape[1] * shape[2]
            pix = np.tile(np.arange(hw), int(info["channels"]))
            compartments += np.bincount(trace_core, minlength=n) + np.bincount(sum_core,
                                                                                minlength=n)
            parts.append((name, info, trace_core, sum_core, trace_core * n + trace_core,
                          trace_core * n + sum_core[pix]))
        keys = np.unique(np.concatenate([np.concatenate(p[4:]) for p in parts]))
        self.sam_route_src, self.sam_route_dst = keys // n, keys % n
        hops = np.array([mapping.hops(int(a), int(b)) for a, b in zip(self.sam_route_src,
                                                                       self.sam_route_dst)],
                        dtype=np.int64).reshape(-1, 2)
        self.sam_route_hops_ew, self.sam_route_hops_ns = hops[:, 0], hops[:, 1]
        base = self._sam_base
        route_base = base + 2 * n

        def dev(arr: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(arr, dtype=torch.int64, device=self.device)

        for name, info, trace_core, sum_core, local, read in parts:
            self._sam[name] = _SamTable(
                channels=int(info["channels"]), keep=4096 - int(info["decay"]),
                scale=int(info["scale"]), hw=len(sum_core),
                local_rows=dev(route_base + np.searchsorted(keys, local)),
                read_rows=dev(route_base + np.searchsorted(keys, read)),
                out_rows=dev(base + trace_core), trace_act_rows=dev(base + n + trace_core),
                sum_act_rows=dev(base + n + sum_core))
        self._sam_compartments = compartments
        self._sam_info = {p[0]: {"channels": int(p[1]["channels"]), "traces": len(p[2]),
                                 "sums": len(p[3])} for p in parts}
        self._width = route_base + len(keys)

    # ------------------------------------------------------------------ set-up helpers

    @staticmethod
    def _check_mapping(graph: Graph, mapping: Any, shapes: dict) -> None:
        layers = getattr(mapping, "layers", None)
        if not isinstance(layers, dict) or not getattr(mapping, "cores", None):
            raise NeurodeployError("accounting needs a neurodeploy.mapping.Mapping of the graph "
                                   "(map_graph(graph, target))")
        names = list(graph.neurons)
        if set(layers) != set(names):
            raise NeurodeployError(
                f"the mapping holds layers {', '.join(sorted(layers))} but the graph has "
                f"{', '.join(names)}; map this graph (neurodeploy.mapping.map_graph)")
        for name in names:
            size = int(np.prod(shapes[name]))
            if int(layers[name]["neurons"]) != size:
                raise NeurodeployError(
                    f"layer {name}: the mapping places {layers[name]['neurons']} neurons, the "
                    f"graph has {size}; map this graph (neurodeploy.mapping.map_graph)")
        for name, info in (getattr(mapping, "sam_layers", None) or {}).items():
            shape = tuple(shapes[name])
            if len(shape) != 3 or int(info["channels"]) > shape[0]:
                raise NeurodeployError(
                    f"layer {name}: the mapping's SAM accumulator traces {info['channels']} "
                    f"channels of a layer of shape {shape}; map this graph "
                    "(neurodeploy.mapping.map_graph)")

    @staticmethod
    def _depth(graph: Graph) -> int:
        """Synapses on the longest path to a neuron layer (the deepest layer is an output)."""
        depth = pipeline_depths(graph)
        return max((depth[n] for n in graph.neurons), default=0)

    def _reset(self) -> None:
        self._buf = torch.zeros((16, self._width), dtype=torch.float64, device=self.device)
        self._runs: list[list[int]] = []  # per run: [batch, steps seen]
        self._t = -1
        self._seen: set[str] = set()
        self._prev: dict[str, bool] = {}  # layers whose state-before buffer is valid
        self._bufs: dict[str, list[torch.Tensor]] = {}
        self._sam_state: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------------ per step

    def _begin(self, name: str, t: int, tensor: torch.Tensor) -> torch.Tensor:
        """Run/step bookkeeping; returns this step's count row."""
        if tensor.device != self.device and not (
                tensor.device.type == self.device.type == "cuda" and self.device.index is None):
            raise NeurodeployError(f"the accountant was built for device {self.device} but "
                                   f"hw_sim runs on {tensor.device}; pass device= the same")
        batch = int(tensor.shape[0])
        new_run = not self._runs or (t == 0 and (self._t != 0 or name in self._seen))
        if new_run:
            if t != 0:
                raise NeurodeployError(f"observer joined a run at step {t}; pass it to "
                                       "hw_sim.run from the start")
            self._runs.append([batch, 0])
            self._prev.clear()
            self._sam_state.clear()
            self._seen = set()
        elif t == self._t + 1:
            self._seen = set()
        elif t != self._t or name in self._seen:
            raise NeurodeployError(f"{name}: step {t} arrived after step {self._t}; one "
                                   "accountant observes one run at a time")
        run = self._runs[-1]
        if batch != run[0]:
            raise NeurodeployError(f"{name}: batch of {batch} in a run of batch {run[0]}")
        self._t = t
        self._seen.add(name)
        run[1] = max(run[1], t + 1)
        if t >= self._buf.shape[0]:
            grown = torch.zeros((2 * (t + 1), self._width), dtype=torch.float64,
                                device=self.device)
            grown[:self._buf.shape[0]] = self._buf
            self._buf = grown
        return self._buf[t]

    def input_step(self, name: str, t: int, events: torch.Tensor) -> None:
        """Host input events of step ``t`` (``(B, *shape)``; non-zero = an event)."""
        row = self._begin(name, t, events)
        table = self._tables.get(name)
        if table is None:
            return
        flat = torch.empty((events.shape[0], table.size), dtype=torch.bool, device=self.device)
        flat.copy_(events.reshape(events.shape[0], -1))  # non-zero events
        table.add_spikes(row, table.batch_sum(flat.view(torch.uint8), torch.int32))

    @staticmethod
    def _copy(buf: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> None:
        """``buf = (a != 0)`` for the input ``a`` of a layer with spikes ``s``."""
        if a.numel() == s.numel():
            buf.copy_(a.reshape(buf.shape))
        else:  # broadcast
            buf.view(s.shape).copy_(a)

    def reads_u(self, name: str) -> bool:
        """Whether :meth:`neuron_step` reads ``u`` of layer ``name`` (see ``StepObserver``):
        not where ``u == 64·a`` (``u_is_a``), which it reads from ``a``."""
        needs = self._needs.get(name)
        return needs is None or not needs[2]

    def neuron_step(self, name: str, t: int, s: torch.Tensor, u: torch.Tensor | None,
                    v: torch.Tensor, a: torch.Tensor | int) -> None:
        """A neuron layer after its update at step ``t`` (see ``StepObserver``)."""
        row = self._begin(name, t, s)
        table = self._tables[name]
        batch = s.shape[0]
        bufs = self._bufs.get(name)
        if bufs is None or bufs[0].shape[0] != batch:
            bufs = [torch.empty((batch, table.size), dtype=torch.bool, device=self.device)
                    for _ in range(5)]
            self._bufs[name] = bufs
        cur, prev, tmp, out_a, out_b = bufs

        def either(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.bitwise_or(x, y, out=out_b if x is out_a else out_a)

        # Casts to bool (x != 0) into preallocated buffers and ors into a third buffer: the
        # fastest torch sequence measured on CPU (fresh allocations, logical_or on the float
        # tensors, in-place or aliased-output ors were 1.5-15x slower per op).
        need_s, need_a, u_is_a, u_rests = self._needs[name]
        if u_rests and not torch.is_tensor(a) and not a:  # no input, no current memory: u = 0
            cur.copy_(v.reshape(batch, -1))
        else:
            if u_is_a:  # u = 64·a exactly: read a (often float32)
                if torch.is_tensor(a):
                    self._copy(tmp, a, s)
                else:
                    tmp.fill_(bool(a))
            else:
                tmp.copy_(u.reshape(batch, -1))
            out_a.copy_(v.reshape(batch, -1))
            torch.bitwise_or(out_a, tmp, out=cur)  # the state after the update is non-zero
        act = either(cur, prev) if name in self._prev else cur  # ... or the state before
        if need_s:  # ... or a spike (needed only where a bias can fire a neuron at rest)
            flat_s = s.reshape(batch, -1)  # the engine's bool spikes: read only
            act = either(act, flat_s)
            spikes = table.batch_sum(flat_s.view(torch.uint8), torch.int32)  # 1 byte a neuron
        else:
            spikes = table.batch_sum(s)
        if torch.is_tensor(a) and need_a:  # ... or a non-zero input the 24-bit u wraps to 0
            self._copy(tmp, a, s)
            act = either(act, tmp)
        elif not torch.is_tensor(a) and a:
            act = torch.ones_like(cur)  # a constant non-zero input reaches every neuron
        bufs[0], bufs[1] = prev, cur  # this step's state becomes the next step's "before"
        self._prev[name] = True
        table.add_spikes(row, spikes)
        row.index_add_(0, table.act_rows, table.batch_sum(act.view(torch.uint8), torch.int32))
        if name in self._sam:
            self._sam_step(name, row, s)

    def _sam_step(self, name: str, row: torch.Tensor, s: torch.Tensor) -> None:
        """The SAM accumulator's events of layer ``name`` in this step (module docstring)."""
        st = self._sam[name]
        batch = s.shape[0]
        fired = (s[:, :st.channels] != 0).reshape(batch, -1)
        count = fired.sum(0, dtype=torch.int32).to(torch.float64)
        row.index_add_(0, st.local_rows, count)  # neuron -> trace (one synaptic op there)
        row.index_add_(0, st.read_rows, count)  # trace read-out -> sum (one synaptic op)
        row.index_add_(0, st.out_rows, count)  # the read-out is a spike of the trace's core
        state = self._sam_state.get(name)
        if state is None:
            q = torch.zeros(fired.shape, dtype=torch.int64, device=fired.device)
            before = torch.zeros((batch, st.hw), dtype=torch.bool, device=fired.device)
        else:
            q, before = state
        q_new = torch.div(q * st.keep, 4096, rounding_mode="floor") + st.scale * fired
        active = (q != 0) | (q_new != 0)
        row.index_add_(0, st.trace_act_rows, active.sum(0, dtype=torch.int32).to(torch.float64))
        any_fired = fired.reshape(batch, -1, st.hw).any(dim=1)
        row.index_add_(0, st.sum_act_rows,
                       (any_fired | before).sum(0, dtype=torch.int32).to(torch.float64))
        self._sam_state[name] = (q_new, any_fired)

    # ------------------------------------------------------------------ result

    def result(self) -> Activity:
        """The counts of every run observed so far (runs must have equal lengths)."""
        if not self._runs:
            raise NeurodeployError("the accountant observed no run; pass it to "
                                   "hw_sim.run(..., observer=accountant) first")
        lengths = sorted({steps for _, steps in self._runs})
        if len(lengths) > 1:
            raise NeurodeployError(
                f"runs of {', '.join(map(str, lengths))} steps cannot add up to one activity; "
                "use one Accountant per run length")
        steps = lengths[0]
        samples = sum(b for b, _ in self._runs)
        data = np.rint(self._buf[:steps].cpu().numpy()).astype(np.int64)
        m, n = self.mapping, self._cores
        syn_base = 2 * n
        pair_base = syn_base + len(self.encodings) * n
        out_spk = data[:, :n]
        active = data[:, n:2 * n]
        syn_ops = {enc: data[:, syn_base + i * n: syn_base + (i + 1) * n]
                   for i, enc in enumerate(self.encodings)}
        route_msgs = data[:, pair_base:self._sam_base]
        neurons = np.array([c.neurons for c in m.cores], dtype=np.int64)
        into = np.zeros((steps, n), dtype=np.int64)
        sent = np.zeros((steps, n), dtype=np.int64)
        hew = np.zeros((steps, n), dtype=np.int64)
        hns = np.zeros((steps, n), dtype=np.int64)
        for r, (a, b) in enumerate(zip(self.route_src, self.route_dst)):
            into[:, b] += route_msgs[:, r]
            if a != HOST:
                sent[:, a] += route_msgs[:, r]
                hew[:, a] += route_msgs[:, r] * self.route_hops_ew[r]
                hns[:, a] += route_msgs[:, r] * self.route_hops_ns[r]
        tiles = np.array([c.tile for c in m.cores], dtype=np.int64).reshape(-1, 2)
        sam = self._sam_result(data, samples) if self._sam else None
        return Activity(
            target=m.target, steps=steps, samples=samples, runs=len(self._runs),
            layers=list(self.graph.neurons), core_layer=[c.layer for c in m.cores],
            core_tile=tiles, core_chip=np.array([c.chip for c in m.cores], dtype=np.int64),
            neurons=neurons,
            synaptic_memory_bits=np.array([c.synaptic_memory_bits for c in m.cores],
                                          dtype=np.int64),
            input_spikes=into, syn_ops=syn_ops, active_updates=active,
            inactive_updates=neurons[None, :] * samples - active, output_spikes=out_spk,
            messages_out=sent, hops_ew=hew, hops_ns=hns,
            route_src=self.route_src.copy(), route_dst=self.route_dst.copy(),
            route_hops_ew=self.route_hops_ew.copy(), route_hops_ns=self.route_hops_ns.copy(),
            route_messages=route_msgs, chips_used=int(m.chips_used),
            tiles_used=len({tuple(t) for t in tiles.tolist()}),
            pipeline_depth=self.pipeline_depth,
            counting_rules=list(COUNTING_RULES) + (list(SAM_COUNTING_RULES) if sam else []),
            sam=sam,
        )

    def _sam_result(self, data: np.ndarray, samples: int) -> SamActivity:
        n, base = self._cores, self._sam_base
        steps = data.shape[0]
        out = data[:, base:base + n]
        active = data[:, base + n:base + 2 * n]
        msgs = data[:, base + 2 * n:self._width]
        into = np.zeros((steps, n), dtype=np.int64)
        sent = np.zeros((steps, n), dtype=np.int64)
        hew = np.zeros((steps, n), dtype=np.int64)
        hns = np.zeros((steps, n), dtype=np.int64)
        for r, (a, b) in enumerate(zip(self.sam_route_src, self.sam_route_dst)):
            into[:, b] += msgs[:, r]
            sent[:, a] += msgs[:, r]
            hew[:, a] += msgs[:, r] * self.sam_route_hops_ew[r]
            hns[:, a] += msgs[:, r] * self.sam_route_hops_ns[r]
        return SamActivity(
            layers={k: dict(v) for k, v in self._sam_info.items()},
            compartments=self._sam_compartments.copy(), syn_ops=into.copy(), input_spikes=into,
            output_spikes=out, active_updates=active,
            inactive_updates=self._sam_compartments[None, :] * samples - active,
            messages_out=sent, hops_ew=hew, hops_ns=hns,
            route_src=self.sam_route_src.copy(), route_dst=self.sam_route_dst.copy(),
            route_hops_ew=self.sam_route_hops_ew.copy(),
            route_hops_ns=self.sam_route_hops_ns.copy(), route_messages=msgs)

    def reset(self) -> None:
        """Forget every run observed so far."""
        self._reset()


__all__ = ["Accountant", "Activity", "COUNT_KINDS", "COUNTING_RULES", "HOST", "SamActivity",
           "SAM_COUNTING_RULES"]
