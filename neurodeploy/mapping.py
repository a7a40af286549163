"""Mapping: split the neuron layers of a fixed-point graph into core-sized slices and place
them on the target's chip mesh (multi-chip when needed).

Model (documented in ``docs/concepts.md`` § Mapping):

* Every neuron layer (``QCubaLIF`` & co.) is cut into equal slices of ``n`` consecutive neurons
  (flat ``(C, H, W)`` order); a slice occupies one core. ``n`` is the largest value for which
  every slice of the layer fits **all** per-core limits, so each layer uses the fewest cores
  the model allows (cores are minimized first).
* Per slice: *neurons* = ``n``; *synaptic memory* = Σ over incoming synapses of the bits the
  chosen synapse encoding stores (below), plus ``neuron_state_bits`` per neuron where the
  target shares one memory between synapses and neuron state (Loihi 2); *input axons* = the
  distinct presynaptic neurons with at least one synapse into the slice (for convolutions the
  union of the receptive fields, exact without dilation; with dilation the gaps are counted).
  On targets with ``population_axons`` (Loihi's hierarchical connectivity: one population
  axon per source position, the channel travelling as the spike's *atom*, as nengo-loihi
  maps convolutions), a synapse whose source is a feature map ``(C, H, W)`` (a convolution,
  or a dense layer after a Flatten) needs one input axon per distinct source *position*
  instead of one per source neuron; synaptic memory is unchanged. *Output axons* = Σ over
  the slice's neurons of the number of distinct destination cores each one reaches (Loihi's
  core-to-core fan-out entries).
* Synapse encodings (the target lists the ones it has; the cheapest is chosen per synapse):
  ``dense``: ``n × fan_in × (weight_bits + delay_bits)``; ``sparse``: per non-zero weight
  ``weight_bits + delay_bits + ceil(log2 n)`` index bits; ``conv`` (shared weights, Loihi 2):
  the kernel of the slice's output channels once per core.
* Placement: slices in layer order along a boustrophedon path over the tiles of each chip,
  chips side by side, so consecutive layers sit on neighbouring tiles (fewer hops). Hops use
  XY routing over the global tile grid.
* **On-chip SAM accumulator** (``sam=``, a :class:`neurodeploy.sam.SamSpec`; targets with
  programmable neurons and graded spikes only). Its compartments share the cores of the layer
  they watch: every traced neuron's **trace** sits on the neuron's core, and the **channel
  sum** of a pixel on the core holding channel 0 of that pixel (the slice of the first channel
  group of the pixel's tile). They occupy compartment slots there, so the layer may need more
  cores than without SAM (``extra_cores``). Per slice, with ``tr`` traces, ``sm`` sums and
  ``Ck`` traced channels: *neurons* ``+= tr + sm``; *synaptic memory* ``+= 8·(tr + Ck·sm)``
  (one 8-bit synapse neuron → trace, one per channel trace → sum) plus, where state shares
  that memory, ``tr·trace_bits + sm·sum_bits`` (:func:`neurodeploy.sam.accumulator_cost`);
  *input axons* ``+= tr + Ck·sm``, with population axons one per position instead
  (positions holding a trace, plus ``sm``); *output axons* ``+= 2·tr`` (each neuron reaches its
  trace's core, each trace its pixel's sum's core). Keeping traces beside their neurons keeps
  the spike → trace messages on the core (no hops); a read-out crosses cores only when a
  layer's channels are split into groups.

A layer that does not fit even with one neuron per core raises :class:`ResourceError` naming
the layer, the resource, what is needed and what is available, with a suggestion — before
any simulation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from collections.abc import Callable
from functools import cached_property
from operator import attrgetter
from typing import Any

import numpy as np

from .errors import NeurodeployError, ResourceError, UnsupportedError
from .ir import Concat, Flatten, Graph, Input, Node
from .ir.nodes import Add, QConv2d, QDense, QSumPool2d

DELAY_BITS = 6  # Loihi's per-synapse delay field (reference/loihi.md §1.2)
RESOURCES = ("neurons", "synaptic_memory_bits", "input_axons", "output_axons")


# ------------------------------------------------------------------------------ connectivity


@dataclass(frozen=True)
class SourceBlock:
    """One contiguous block of a synapse's flat input and where it comes from."""

    layer: str | None  # neuron layer, or None for the graph input (host)
    node: str  # the neuron layer or the Input node
    offset: int  # position of the block in the synapse's flat input
    size: int


def source_blocks(graph: Graph, start: str, shapes: dict[str, tuple[int, ...]]
                  ) -> list[SourceBlock]:
    """The blocks of the flat vector node ``start`` makes, traced back through Flatten and
    Concat(axis=0) to neuron layers or the input (mapping and event accounting read synapse
    inputs this way)."""
    out: list[SourceBlock] = []

    def walk(node_name: str, offset: int) -> None:
        node = graph.nodes[node_name]
        size = int(np.prod(shapes[node_name]))
        if node.is_neuron:
            out.append(SourceBlock(node_name, node_name, offset, size))
        elif isinstance(node, Input):
            out.append(SourceBlock(None, node_name, offset, size))
        elif isinstance(node, Flatten):
            walk(graph.predecessors(node_name)[0], offset)
        elif isinstance(node, Concat) and node.axis == 0:
            pos = offset
            for pred in graph.predecessors(node_name):
                walk(pred, pos)
                pos += int(np.prod(shapes[pred]))
        else:
            raise UnsupportedError(
                f"{node_name} ({node.type_name}): synapses must be fed by neuron layers "
                "through Flatten/Concat(axis=0) only; legalize the graph first")

    walk(start, 0)
    return out


@dataclass
class _Synapse:
    name: str
    node: Node
    target: str  # neuron layer it feeds
    sources: list[SourceBlock]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    recurrent: bool = False
    encoding: str = "dense"
    #: ``(C, H, W)`` of a dense synapse's source feature map (through a Flatten), else None
    pop_shape: tuple[int, ...] | None = None

    @property
    def in_size(self) -> int:
        return int(np.prod(self.in_shape))


def _sources(graph: Graph, name: str, shapes: dict[str, tuple[int, ...]]) -> list[SourceBlock]:
    """The input blocks of synapse ``name``."""
    return [b for pred in graph.predecessors(name) for b in source_blocks(graph, pred, shapes)]


def incoming(graph: Graph, neuron: str) -> tuple[list[str], list[str]]:
    """``(synapses, direct)`` feeding neuron layer ``neuron``: the synapse nodes whose current
    reaches it (through Add nodes), and the Input/Flatten/Concat/neuron nodes that feed it
    without a synapse (bias input). Mapping and event accounting both read a layer's inputs
    this way."""
    synapses: list[str] = []
    direct: list[str] = []
    queue = list(graph.predecessors(neuron))
    while queue:
        name = queue.pop(0)
        node = graph.nodes[name]
        if isinstance(node, Add):
            queue.extend(graph.predecessors(name))
        elif node.is_synapse:
            synapses.append(name)
        elif isinstance(node, (Input, Flatten, Concat)) or node.is_neuron:
            direct.append(name)
        else:
            raise UnsupportedError(f"{name} ({node.type_name}): cannot follow this node into "
                                   f"{neuron}; legalize the graph first")
    return synapses, direct


def _synapses_into(graph: Graph, neuron: str, shapes: dict[str, tuple[int, ...]]
                   ) -> list[_Synapse]:
    """Every synapse whose current reaches ``neuron``, with its recurrent matrix."""
    found: list[_Synapse] = []
    for name in incoming(graph, neuron)[0]:  # direct (bias) inputs use no synapses
        node = graph.nodes[name]
        pred = graph.predecessors(name)[0]
        pop_shape = None
        if isinstance(graph.nodes[pred], Flatten):
            before = tuple(shapes[graph.predecessors(pred)[0]])
            pop_shape = before if len(before) == 3 else None
        found.append(_Synapse(name, node, neuron, _sources(graph, name, shapes),
                              tuple(shapes[pred]), tuple(shapes[name]), pop_shape=pop_shape))
        rec = getattr(node, "weight_rec", None)
        if rec is not None:
            size = int(np.prod(shapes[neuron]))
            found.append(_Synapse(f"{name}.rec", QDense(weight=rec), neuron,
                                  [SourceBlock(neuron, neuron, 0, size)], (size,), (size,),
                                  recurrent=True))
    return found


# ------------------------------------------------------------------------------ layouts


@dataclass
class Layout:
    """How one neuron layer is cut into core slices.

    ``flat`` (vectors, or any layer cut in IR flat order): slices of ``n`` consecutive
    neurons. ``tiles`` (feature maps ``(C, H, W)``): a slice is a group of ``cg`` channels
    times a ``th × tw`` rectangle of positions (edge slices smaller), listed channel group by
    channel group, tiles row by row; inside a slice neurons go position by position, all the
    slice's channels of a position together. Channel groups keep the shared kernels a core
    stores small; position tiles keep the input receptive field (input axons) small.
    """

    kind: str
    shape: tuple[int, ...]
    n: int = 0  # flat: neurons per slice
    cg: int = 0  # tiles: channels per slice
    tile: tuple[int, int] = (0, 0)  # tiles: (rows, cols) of positions per slice

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @cached_property
    def box(self) -> np.ndarray:
        """tiles: ``(slices, 6)`` half-open ``c0, c1, y0, y1, x0, x1`` of every slice."""
        c, h, w = self.shape
        (th, tw), cg = self.tile, self.cg
        c0, y0, x0 = np.arange(0, c, cg), np.arange(0, h, th), np.arange(0, w, tw)
        cc, yy, xx = (a.reshape(-1) for a in np.meshgrid(c0, y0, x0, indexing="ij"))
        return np.stack([cc, np.minimum(cc + cg, c), yy, np.minimum(yy + th, h),
                         xx, np.minimum(xx + tw, w)], axis=1)

    @cached_property
    def sizes(self) -> np.ndarray:
        """Neurons of every slice."""
        if self.kind == "flat":
            starts = np.arange(0, self.size, self.n)
            return np.minimum(starts + self.n, self.size) - starts
        b = self.box
        return (b[:, 1] - b[:, 0]) * (b[:, 3] - b[:, 2]) * (b[:, 5] - b[:, 4])

    @property
    def slices(self) -> int:
        return len(self.sizes)

    @cached_property
    def starts(self) -> np.ndarray:
        """Position in :attr:`order` where every slice begins."""
        return np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)

    @cached_property
    def _keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Per neuron (IR flat order): its slice and its position in the slicing order."""
        if self.kind == "flat":
            idx = np.arange(self.size)
            return idx // self.n, idx
        c, h, w = self.shape
        (th, tw), cg = self.tile, self.cg
        nty, ntx = -(-h // th), -(-w // tw)
        cc, yy, xx = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
        ty, tx = yy // th, xx // tw
        sl = ((cc // cg) * nty + ty) * ntx + tx
        b = self.box[sl]  # the neuron's slice box
        rank = ((yy - b[..., 2]) * (b[..., 5] - b[..., 4]) + (xx - b[..., 4])) \
            * (b[..., 1] - b[..., 0]) + (cc - b[..., 0])
        return sl.reshape(-1), (self.starts[sl] + rank).reshape(-1)

    @cached_property
    def order(self) -> np.ndarray:
        """IR flat index of the neuron at each position of the slicing order."""
        order = np.empty(self.size, dtype=np.int64)
        order[self._keys[1]] = np.arange(self.size)
        return order

    def slice_of(self) -> np.ndarray:
        """Slice index of every neuron, in IR flat order."""
        return self._keys[0]

    def per_slice(self, values: np.ndarray) -> np.ndarray:
        """Sum of a per-neuron quantity (IR flat order) over each slice."""
        if self.kind == "flat":
            return np.add.reduceat(values, self.starts)
        c, h, w = self.shape
        (th, tw), cg = self.tile, self.cg
        v = values.reshape(c, h, w)
        v = np.add.reduceat(v, np.arange(0, c, cg), axis=0)
        v = np.add.reduceat(v, np.arange(0, h, th), axis=1)
        return np.add.reduceat(v, np.arange(0, w, tw), axis=2).reshape(-1)

    def to_json(self) -> dict[str, Any]:
        if self.kind == "flat":
            return {"kind": "flat", "neurons_per_core": self.n}
        return {"kind": "tiles", "channels_per_core": self.cg, "tile": list(self.tile)}


class _SliceSums:
    """Per-slice sums of one integer per-neuron quantity (IR flat order) for many layouts of
    its layer: prefix sums once, then every layout's sums from the slice corners (exactly
    :meth:`Layout.per_slice`, in O(slices) per layout)."""

    def __init__(self, values: np.ndarray, shape: tuple[int, ...]) -> None:
        v = np.asarray(values, dtype=np.int64)
        if len(shape) == 3:
            p = np.zeros(tuple(d + 1 for d in shape), dtype=np.int64)
            p[1:, 1:, 1:] = v.reshape(shape).cumsum(0).cumsum(1).cumsum(2)
        else:
            p = np.concatenate([[0], v.cumsum()])
        self.prefix = p

    def of(self, lay: Layout) -> np.ndarray:
        """The sum over every slice of ``lay`` (int64)."""
        if lay.kind == "flat":
            edges = np.append(np.arange(0, lay.size, lay.n), lay.size)
            return np.diff(self.prefix[edges])
        c, h, w = lay.shape
        (th, tw), cg = lay.tile, lay.cg
        edges = [np.append(np.arange(0, n, step), n) for n, step in ((c, cg), (h, th), (w, tw))]
        corner = self.prefix[np.ix_(*edges)]
        return np.diff(np.diff(np.diff(corner, axis=0), axis=1), axis=2).reshape(-1)


def layout_from_json(shape: tuple[int, ...], doc: dict[str, Any]) -> Layout:
    """The :class:`Layout` written by :meth:`Layout.to_json` for a layer of ``shape``."""
    if doc["kind"] == "flat":
        return Layout("flat", shape, n=int(doc["neurons_per_core"]))
    return Layout("tiles", shape, cg=int(doc["channels_per_core"]),
                  tile=(int(doc["tile"][0]), int(doc["tile"][1])))


def _candidates(shape: tuple[int, ...], cap: int) -> list[list[Layout]]:
    """Families of layouts, each ordered by growing slices: one family for a flat layer (all
    ``n``), one per channel-group size for a feature map (tiles ``1×1 … 1×W``, then
    ``2×W … H×W``)."""
    if len(shape) != 3:
        size = int(np.prod(shape))
        return [[Layout("flat", shape, n=n) for n in range(1, min(cap, size) + 1)]]
    c, h, w = shape
    tiles = [(1, tw) for tw in range(1, w + 1)] + [(th, w) for th in range(2, h + 1)]
    fams = []
    for cg in (d for d in range(1, c + 1) if c % d == 0):
        fam = [Layout("tiles", shape, cg=cg, tile=t) for t in tiles if cg * t[0] * t[1] <= cap]
        if fam:
            fams.append(fam)
    return fams


# ------------------------------------------------------------------------------ per-slice costs


def _weight_bits(node: Node) -> int:
    return int(getattr(node, "num_weight_bits", 8))


def _delay_bits(node: Node) -> int:
    return DELAY_BITS if getattr(node, "delay", None) is not None else 0


def _cover(lo: np.ndarray, hi: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """How many of the rectangles ``lo..hi`` (inclusive ``(y, x)`` corners) cover each
    position of a ``shape`` grid (2-D difference array)."""
    diff = np.zeros((shape[0] + 1, shape[1] + 1), dtype=np.int64)
    ok = (hi[:, 0] >= lo[:, 0]) & (hi[:, 1] >= lo[:, 1])
    lo, hi = lo[ok], hi[ok]
    np.add.at(diff, (lo[:, 0], lo[:, 1]), 1)
    np.add.at(diff, (lo[:, 0], hi[:, 1] + 1), -1)
    np.add.at(diff, (hi[:, 0] + 1, lo[:, 1]), -1)
    np.add.at(diff, (hi[:, 0] + 1, hi[:, 1] + 1), 1)
    return diff.cumsum(0).cumsum(1)[:shape[0], :shape[1]]


#: Set bits of every byte value.
_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(
    axis=1, dtype=np.int64)


def _popcount64(x: np.ndarray) -> np.ndarray:
    """Set bits of every element of a uint64 array (SWAR bit counting), as uint64."""
    m1, m2, m4 = (np.uint64(0x5555555555555555), np.uint64(0x3333333333333333),
                  np.uint64(0x0F0F0F0F0F0F0F0F))
    x = x - ((x >> np.uint64(1)) & m1)
    x = (x & m2) + ((x >> np.uint64(2)) & m2)
    x = (x + (x >> np.uint64(4))) & m4
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


class _SliceCosts:
    """Synaptic memory and input axons of every slice of a layer for a layout, and how many
    slices of the layer each presynaptic neuron reaches (for output axons)."""

    def __init__(self, syn: _Synapse, encodings: tuple[str, ...],
                 population: bool = False) -> None:
        self.syn = syn
        node = syn.node
        self.encodings = encodings
        self.population = population
        if isinstance(node, QDense):
            nonzero = np.asarray(node.weight) != 0  # (out, in)
            self.kind = "dense"
            self.n_in = nonzero.shape[1]
            #: per postsynaptic neuron: its non-zero weights
            self.row_nnz = nonzero.sum(axis=1, dtype=np.int64)
            #: the non-zero pattern, 8 presynaptic neurons a byte (MSB first), rows padded
            #: with zero bytes to whole 64-bit words: ORs over a slice's rows and bit counts
            #: work on 64 neurons at a time
            packed = np.packbits(nonzero, axis=1)
            pad = -packed.shape[1] % 8
            self.packed = np.pad(packed, ((0, 0), (0, pad))) if pad else packed
        elif isinstance(node, (QConv2d, QSumPool2d)):
            self.kind = "conv"
        else:
            raise UnsupportedError(f"{syn.name} ({node.type_name}): no mapping cost model")

    @staticmethod
    def _choose(options: dict[str, np.ndarray]) -> str:
        return min(options, key=lambda k: int(options[k].max(initial=0)))

    # -- dense synapses (any layout: rows taken in the slicing order)
    def _dense(self, lay: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        node = self.syn.node
        bits = _weight_bits(node) + _delay_bits(node)
        n_in = self.n_in
        if lay.kind == "flat":
            rows, row_nnz = self.packed, self.row_nnz
        else:
            rows, row_nnz = self.packed[lay.order], self.row_nnz[lay.order]
        nnz = np.add.reduceat(row_nnz, lay.starts)
        if lay.slices == len(rows):  # one row a slice
            cols_any = rows
        else:  # (slices, bytes): the OR of each slice's rows, packed
            cols_any = np.bitwise_or.reduceat(rows.view(np.uint64), lay.starts, axis=0
                                              ).view(np.uint8)
        shape = self.syn.pop_shape
        if self.population and shape is not None:  # one axon per source position
            positions = n_in // shape[0]
            if positions % 8 == 0:  # whole bytes per channel: OR the channels' bytes
                per_pos = np.bitwise_or.reduce(
                    cols_any[:, :n_in // 8].reshape(lay.slices, shape[0], positions // 8),
                    axis=1)
                in_axons = _POPCOUNT[per_pos].sum(axis=1, dtype=np.int64)
            else:
                bits_any = np.unpackbits(cols_any, axis=1, count=n_in).view(bool)
                in_axons = bits_any.reshape(lay.slices, shape[0], -1).any(axis=1).sum(
                    axis=1, dtype=np.int64)
        else:
            in_axons = _popcount64(cols_any.view(np.uint64)).sum(axis=1, dtype=np.int64)
        options = {"dense": lay.sizes * n_in * bits}
        if "sparse" in self.encodings:
            index_bits = max(1, math.ceil(math.log2(max(int(lay.sizes.max()), 2))))
            options["sparse"] = nnz * (bits + index_bits)
        encoding = self._choose(options)
        # per presynaptic neuron: slices reached
        reach = np.unpackbits(cols_any, axis=1, count=n_in).sum(axis=0, dtype=np.int32
                                                                 ).astype(np.int64)
        return options[encoding], in_axons, reach, encoding

    # -- convolution / pooling synapses (tiles layouts)
    def _conv(self, lay: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        node = self.syn.node
        c_in, h_in, w_in = self.syn.in_shape
        c_out = self.syn.out_shape[0]
        if isinstance(node, QSumPool2d):
            groups, (kh, kw) = c_out, node.kernel_size
            cin_g, cout_g = 1, 1
        else:
            groups = node.groups
            kh, kw = node.weight.shape[2:]
            cin_g, cout_g = c_in // groups, c_out // groups
        (sh, sw), (ph, pw) = node.stride, node.padding
        dh, dw = getattr(node, "dilation", (1, 1))
        bits = _weight_bits(node)
        fan_in = cin_g * kh * kw
        b = lay.box
        chans = b[:, 1] - b[:, 0]
        options = {"dense": lay.sizes * fan_in * bits}
        if "conv" in self.encodings:
            options["conv"] = chans * fan_in * bits
        encoding = self._choose(options)
        # receptive field of each slice's position rectangle (gaps of stride/dilation counted)
        lo = np.stack([np.maximum(0, b[:, 2] * sh - ph), np.maximum(0, b[:, 4] * sw - pw)], 1)
        hi = np.stack([np.minimum(h_in - 1, (b[:, 3] - 1) * sh - ph + (kh - 1) * dh),
                       np.minimum(w_in - 1, (b[:, 5] - 1) * sw - pw + (kw - 1) * dw)], 1)
        area = np.clip(hi[:, 0] - lo[:, 0] + 1, 0, None) * np.clip(hi[:, 1] - lo[:, 1] + 1, 0,
                                                                    None)
        g0, g1 = b[:, 0] // cout_g, (b[:, 1] - 1) // cout_g
        # population axons: one per source position (its channels are the atoms)
        per_position = 1 if self.population else (g1 - g0 + 1) * cin_g
        in_axons = per_position * area
        # slices reached by each input neuron: channel groups needing its group x tiles
        # covering its position (every channel group has the same tiles)
        n_tiles = lay.slices // -(-c_out // lay.cg)
        cover = _cover(lo[:n_tiles], hi[:n_tiles], (h_in, w_in))
        need = np.zeros(groups + 1, dtype=np.int64)
        starts_g = b[::n_tiles]
        np.add.at(need, starts_g[:, 0] // cout_g, 1)
        np.add.at(need, (starts_g[:, 1] - 1) // cout_g + 1, -1)
        per_group = need.cumsum()[:groups]
        reach = (np.repeat(per_group, cin_g)[:, None, None] * cover[None]).reshape(-1)
        return options[encoding], in_axons, reach, encoding

    def costs(self, lay: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """``(memory bits per slice, input axons per slice, reach per presynaptic neuron,
        encoding)`` for the slices of ``lay``."""
        if self.kind == "conv" and lay.kind == "tiles":
            return self._conv(lay)
        if self.kind == "conv":
            raise UnsupportedError(f"{self.syn.name}: a convolution into a layer without a "
                                   "(C, H, W) shape cannot be mapped")
        return self._dense(lay)


# ------------------------------------------------------------------------------ SAM accumulator


class _SamLayer:
    """The on-chip SAM accumulator of one layer: its per-slice resources (module docstring)."""

    def __init__(self, name: str, shape: tuple[int, ...], spec: Any, shared_state: bool,
                 population: bool) -> None:
        from .sam import SAM_SYNAPSE_BITS, accumulator_cost

        c, h, w = shape
        self.channels = spec.channels_of(name, shape)
        cost = accumulator_cost((self.channels, h, w), gamma=spec.gamma, scale=spec.scale)
        self.cost = cost
        self.trace_bits = int(cost["trace_bits"]) if shared_state else 0
        self.sum_bits = int(cost["sum_bits"]) if shared_state else 0
        self.population = population
        self.synapse_bits = SAM_SYNAPSE_BITS
        #: per neuron (IR flat order): output axons the accumulator adds (2 per traced neuron)
        self.reach = np.repeat(np.where(np.arange(c) < self.channels, 2, 0), h * w).astype(
            np.int64)

    def usage(self, lay: Layout) -> dict[str, np.ndarray]:
        """Per slice of ``lay`` (a tiles layout): :data:`SAM_CORE_KEYS` arrays."""
        if lay.kind != "tiles":
            raise UnsupportedError("the SAM accumulator needs a (C, H, W) layer")
        b = lay.box
        area = (b[:, 3] - b[:, 2]) * (b[:, 5] - b[:, 4])
        k = self.channels
        traces = np.clip(np.minimum(b[:, 1], k) - b[:, 0], 0, None) * area
        sums = np.where(b[:, 0] == 0, area, 0)
        synapses = traces + k * sums
        memory = self.synapse_bits * synapses + traces * self.trace_bits + sums * self.sum_bits
        if self.population:  # one axon per source position (the channel is the atom)
            axons = np.where(traces > 0, area, 0) + sums
        else:
            axons = traces + k * sums
        return {"traces": traces, "sums": sums, "compartments": traces + sums,
                "synapses": synapses, "synaptic_memory_bits": memory, "input_axons": axons,
                "output_axons": 2 * traces}


def _sam_core_from_json(doc: Any) -> dict[str, int] | None:
    """A per-core ``sam`` entry of ``mapping.json`` (checked) or None."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ValueError("a core's sam entry is not an object")
    out = {}
    for key in SAM_CORE_KEYS:
        value = doc[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"a core's sam.{key} is not a count")
        out[key] = value
    return out


def _check_sam_layer(doc: Any) -> None:
    """A per-layer ``sam`` entry of ``mapping.json``: what accounting reads must be sound."""
    if not isinstance(doc, dict):
        raise ValueError("a layer's sam entry is not an object")
    for key, lo, hi in (("channels", 1, None), ("scale", 1, None), ("decay", 1, 4095)):
        value = doc[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (
                hi is not None and value > hi):
            raise ValueError(f"a layer's sam.{key} is {value!r}")


# ------------------------------------------------------------------------------ results


#: Keys of a core's ``sam`` entry (the accumulator's share of the core).
SAM_CORE_KEYS = ("traces", "sums", "compartments", "synapses", "synaptic_memory_bits",
                 "input_axons", "output_axons")


#: A row of ``mapping.json``'s ``per_core`` (:meth:`Mapping.core_lines`): where the core is,
#: then the tail: its own use, ``"sam":{...},`` or nothing, and its utilization.
_HEAD_TEMPLATE = '{"core":%d,"chip":%d,"tile":[%d,%d],"layer":%s,"first_neuron":%d,%s'
_TAIL_TEMPLATE = (
    '"neurons":%d,"synaptic_memory_bits":%d,"input_axons":%d,"output_axons":%d,%s'
    '"utilization":{' + ",".join(f'"{key}":%s' for key in RESOURCES) + "}}")
_SAM_TEMPLATE = '"sam":{' + ",".join(f'"{key}":%d' for key in SAM_CORE_KEYS) + "},"


def _only(values: list[Any], kind: type) -> bool:
    """Whether every value is exactly of type ``kind`` (for ``int``: no bool, no numpy)."""
    return set(map(type, values)) <= {kind}


@dataclass(slots=True)
class CoreSlice:
    """One core: a slice of one layer, where it sits and what it uses.

    ``neurons``, ``synaptic_memory_bits``, ``input_axons`` and ``output_axons`` are the layer's
    own; ``sam`` (or None) is what the on-chip SAM accumulator adds on the core
    (:data:`SAM_CORE_KEYS`); :meth:`total_usage` is both together, checked against the
    limits."""

    core: int
    chip: int
    tile: tuple[int, int]  # global tile coordinates (x across chips, y)
    layer: str
    start: int  # first neuron's position in the layer's slicing order (see Layout.order)
    neurons: int
    synaptic_memory_bits: int
    input_axons: int
    output_axons: int
    sam: dict[str, int] | None = None

    def usage(self) -> dict[str, int]:
        """The layer's own use of the core's resources (SAM excluded)."""
        return {"neurons": self.neurons, "synaptic_memory_bits": self.synaptic_memory_bits,
                "input_axons": self.input_axons, "output_axons": self.output_axons}

    def total_usage(self) -> dict[str, int]:
        """Use of the core's resources including the SAM accumulator's (its compartments in
        ``neurons``): what the per-core limits bound."""
        use = self.usage()
        if self.sam:
            use["neurons"] += int(self.sam["compartments"])
            for key in ("synaptic_memory_bits", "input_axons", "output_axons"):
                use[key] += int(self.sam[key])
        return use


@dataclass
class Mapping:
    """Where every neuron of a graph lives on the target."""

    target: str
    limits: dict[str, int]
    cores: list[CoreSlice]
    layers: dict[str, dict[str, Any]]
    chips_used: int
    cores_per_chip: int
    mesh_tiles: tuple[int, int]
    cores_per_tile: int
    synapse_encoding: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: the on-chip SAM accumulator (empty without one): ``layers``, ``gamma``, ``scale``,
    #: ``decay``, ``cores_used_without_sam``, ``extra_cores``; each layer's details are in
    #: ``layers[name]["sam"]``
    sam: dict[str, Any] = field(default_factory=dict)

    @property
    def cores_used(self) -> int:
        return len(self.cores)

    @property
    def sam_layers(self) -> dict[str, dict[str, Any]]:
        """Layer → its SAM accumulator entry (``channels``, ``decay``, ``scale``, counts), for
        the layers that carry one."""
        return {name: info["sam"] for name, info in self.layers.items() if info.get("sam")}

    def sam_cores(self, layer: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``(trace core of every traced neuron (IR flat order of the first ``channels``
        channels), channel-sum core of every pixel (H·W))`` of a SAM layer of ``shape``."""
        c, h, w = shape
        k = int(self.layers[layer]["sam"]["channels"])
        core = self.core_of(layer, shape)
        return core[:k * h * w], core[:h * w]

    def core_of(self, layer: str, shape: tuple[int, ...]) -> np.ndarray:
        """Core index of every neuron of ``layer`` (of ``shape``), in IR flat order."""
        info = self.layers[layer]
        return info["first_core"] + layout_from_json(tuple(shape), info["layout"]).slice_of()

    def hops(self, core_a: int, core_b: int) -> tuple[int, int]:
        """(east-west, north-south) tile hops from core ``a`` to core ``b`` (XY routing)."""
        ta, tb = self.cores[core_a].tile, self.cores[core_b].tile
        return abs(ta[0] - tb[0]), abs(ta[1] - tb[1])

    @classmethod
    def from_json(cls, doc: dict[str, Any], source: Any = "mapping.json") -> Mapping:
        """The mapping a ``mapping.json`` document (:meth:`to_json`) describes; raises
        :class:`~neurodeploy.errors.BadInputFileError` naming ``source`` when it is not one."""
        from .errors import BadInputFileError

        try:
            cores = [CoreSlice(core=int(r["core"]), chip=int(r["chip"]),
                               tile=(int(r["tile"][0]), int(r["tile"][1])), layer=str(r["layer"]),
                               start=int(r["first_neuron"]), neurons=int(r["neurons"]),
                               synaptic_memory_bits=int(r["synaptic_memory_bits"]),
                               input_axons=int(r["input_axons"]),
                               output_axons=int(r["output_axons"]),
                               sam=_sam_core_from_json(r.get("sam")))
                     for r in doc["per_core"]]
            layers = {str(r["layer"]): {k: v for k, v in r.items() if k != "layer"}
                      for r in doc["per_layer"]}
            for info in layers.values():
                if info["layout"]["kind"] not in ("flat", "tiles"):
                    raise ValueError(f"layout kind {info['layout']['kind']!r}")
                if info.get("sam") is not None:
                    _check_sam_layer(info["sam"])
            sam = doc.get("sam") or {}
            if not isinstance(sam, dict):
                raise ValueError("sam is not an object")
            mapping = cls(target=str(doc["target"]),
                          limits={k: int(v) for k, v in doc["limits_per_core"].items()},
                          cores=cores, layers=layers, chips_used=int(doc["chips_used"]),
                          cores_per_chip=int(doc["cores_per_chip"]),
                          mesh_tiles=(int(doc["mesh_tiles"][0]), int(doc["mesh_tiles"][1])),
                          cores_per_tile=int(doc["cores_per_tile"]),
                          synapse_encoding=dict(doc.get("synapse_encoding", {})),
                          warnings=list(doc.get("warnings", [])), sam=dict(sam))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise BadInputFileError(source, f"not a neurodeploy mapping ({err!r}); compile the "
                                            "model again") from None
        if [c.core for c in cores] != list(range(len(cores))):
            raise BadInputFileError(source, "per_core rows are not cores 0..N-1 in order")
        return mapping

    def to_json(self, per_core: bool = True) -> dict[str, Any]:
        """The ``mapping.json`` document: totals, per-layer and per-core utilization
        (``per_core=False``: an empty ``per_core`` list, for writers that take the rows from
        :meth:`core_lines`)."""
        def util(use: dict[str, int]) -> dict[str, float]:
            return {k: round(use[k] / self.limits[k], 6) for k in RESOURCES}

        def core_row(c: CoreSlice) -> dict[str, Any]:
            row = {"core": c.core, "chip": c.chip, "tile": list(c.tile), "layer": c.layer,
                   "first_neuron": c.start, **c.usage()}
            if c.sam:
                row["sam"] = dict(c.sam)
            row["utilization"] = util(c.total_usage())
            return row

        doc: dict[str, Any] = {
            "target": self.target,
            "cores_used": self.cores_used,
            "chips_used": self.chips_used,
            "cores_per_chip": self.cores_per_chip,
            "mesh_tiles": list(self.mesh_tiles),
            "cores_per_tile": self.cores_per_tile,
            "limits_per_core": dict(self.limits),
            "synapse_encoding": dict(self.synapse_encoding),
            "per_layer": [
                {"layer": name, **{k: v for k, v in info.items()}}
                for name, info in self.layers.items()
            ],
            "per_core": [core_row(c) for c in self.cores] if per_core else [],
            "warnings": list(self.warnings),
        }
        if self.sam:
            doc["sam"] = dict(self.sam)
        return doc

    def core_lines(self) -> list[str]:
        """Every row of :meth:`to_json`'s ``per_core`` as compact JSON text, byte for byte
        ``json.dumps(row, separators=(",", ":"))``, filled into fixed templates: a compile
        writes 10^5 cores and more, where one ``json.dumps`` per row takes seconds. Integers
        print as ``%d`` (what ``json.dumps`` writes for an ``int``), each utilization as the
        ``repr`` of its rounded float (``json.dumps``'s float format); the part from
        ``neurons`` on is made once per distinct use of a core; strings, and rows holding
        anything but plain ``int``/``str`` values, go through ``json.dumps``."""
        cores = self.cores
        if not cores:
            return []
        ints = ("core", "chip", "start", "neurons", "synaptic_memory_bits", "input_axons",
                "output_axons")
        cols = {key: list(map(attrgetter(key), cores)) for key in ints + ("layer", "sam")}
        tiles = list(map(attrgetter("tile"), cores))
        sams = [sam for sam in cols["sam"] if sam]
        plain = all(_only(cols[key], int) for key in ints) and _only(cols["layer"], str) \
            and _only(tiles, tuple) and set(map(len, tiles)) == {2} \
            and _only([v for t in tiles for v in t], int) and _only(sams, dict) \
            and _only([v for sam in sams for v in sam.values()], int)
        if not plain:  # not what map_graph or from_json make: the general way
            return [json.dumps(row, separators=(",", ":"))
                    for row in self.to_json()["per_core"]]
        limits = [self.limits[key] for key in RESOURCES]
        utils: list[dict[int, str]] = [{} for _ in RESOURCES]

        def tail(use: tuple[int, int, int, int], sam: dict[str, Any] | None) -> str:
            """The row from ``neurons`` on (own use, SAM share, utilization of both)."""
            total = list(use)
            sam_text = ""
            if sam:
                if tuple(sam) == SAM_CORE_KEYS:
                    sam_text = _SAM_TEMPLATE % tuple(sam.values())
                else:
                    sam_text = '"sam":' + json.dumps(dict(sam), separators=(",", ":")) + ","
                total[0] += int(sam["compartments"])
                for i, key in enumerate(RESOURCES[1:], 1):
                    total[i] += int(sam[key])
            util = []
            for value, limit, cache in zip(total, limits, utils):
                if value not in cache:
                    cache[value] = repr(round(value / limit, 6))
                util.append(cache[value])
            return _TAIL_TEMPLATE % (*use, sam_text, *util)

        keys: list[Any] = list(zip(cols["neurons"], cols["synaptic_memory_bits"],
                                   cols["input_axons"], cols["output_axons"]))
        if sams:  # the SAM share is part of the tail
            keys = [(use, tuple(sam.items()) if sam else ())
                    for use, sam in zip(keys, cols["sam"])]
            tails = {key: tail(key[0], dict(key[1])) for key in set(keys)}
        else:
            tails = {key: tail(key, None) for key in set(keys)}
        row_tails = [tails[key] for key in keys]
        names = {name: json.dumps(name) for name in set(cols["layer"])}
        return [_HEAD_TEMPLATE % row for row in zip(
            cols["core"], cols["chip"], [t[0] for t in tiles], [t[1] for t in tiles],
            [names[v] for v in cols["layer"]], cols["start"], row_tails)]


# ------------------------------------------------------------------------------ partition


def _limits(target: Any) -> dict[str, int]:
    r = target.resources
    return {"neurons": int(r["neurons_per_core"]),
            "synaptic_memory_bits": int(r["synaptic_memory_bits_per_core"]),
            "input_axons": int(r["input_axons_per_core"]),
            "output_axons": int(r["output_axons_per_core"])}


_SUGGEST = {
    "neurons": "use a target with more neurons per core",
    "synaptic_memory_bits": "reduce the layer's fan-in (smaller kernels or fewer input "
                            "channels), use fewer weight bits, prune it (sparse encoding), or "
                            "choose a target with more synaptic memory or shared-weight "
                            "convolution (loihi2)",
    "input_axons": "reduce the layer's fan-in (fewer input channels or smaller kernels) or "
                   "split the previous layer",
    "output_axons": "reduce the layer's fan-out (fewer destination cores: smaller next layer "
                    "or larger kernels' stride)",
}


_SAM_NOTE = " with its SAM accumulator share"


class _Layer:
    def __init__(self, name: str, shape: tuple[int, ...], synapses: list[_Synapse],
                 encodings: tuple[str, ...], state_bits: int, population: bool) -> None:
        self.name, self.shape, self.synapses = name, shape, synapses
        self.size = int(np.prod(shape))
        self.costers = [_SliceCosts(s, encodings, population and not s.recurrent)
                        for s in synapses]
        self.state_bits = state_bits
        self.family: list[Layout] = []
        self.index = 0
        self.fitting: list[tuple[list[Layout], int]] = []
        #: the layer's SAM accumulator, and whether the partition counts it
        self.sam: _SamLayer | None = None
        self.sam_on = False
        #: the last :meth:`usage` (layout, sam_on, result): the partition asks again and again
        #: for the chosen layout's
        self._last: tuple[Layout, bool, Any] | None = None

    def restart(self, sam_on: bool) -> None:
        """Forget the chosen layout (to partition again, with or without the SAM)."""
        self.family, self.index, self.fitting = [], 0, []
        self.sam_on = sam_on and self.sam is not None

    @property
    def layout(self) -> Layout:
        return self.family[self.index]

    def usage(self, lay: Layout) -> tuple[dict[str, np.ndarray],
                                          list[tuple[_Synapse, np.ndarray]], dict[str, str]]:
        """``(use per slice, (synapse, reach per presynaptic neuron) pairs, encoding per
        synapse)`` of the layer cut by ``lay`` (the arrays are shared: do not modify)."""
        last = self._last
        if last is not None and last[0] is lay and last[1] == self.sam_on:
            return last[2]
        mem = lay.sizes.astype(np.int64) * self.state_bits
        axons = np.zeros(lay.slices, dtype=np.int64)
        reaches, encodings = [], {}
        for syn, coster in zip(self.synapses, self.costers):
            m, a, reach, enc = coster.costs(lay)
            mem = mem + m
            axons = axons + a
            reaches.append((syn, reach))
            encodings[syn.name] = enc
        use = {"neurons": lay.sizes, "synaptic_memory_bits": mem, "input_axons": axons}
        if self.sam_on:
            assert self.sam is not None
            extra = self.sam.usage(lay)
            use = {"neurons": use["neurons"] + extra["compartments"],
                   "synaptic_memory_bits": mem + extra["synaptic_memory_bits"],
                   "input_axons": axons + extra["input_axons"]}
        self._last = (lay, self.sam_on, (use, reaches, encodings))
        return use, reaches, encodings


def _fits(use: dict[str, np.ndarray], limits: dict[str, int]) -> str | None:
    for key in ("neurons", "synaptic_memory_bits", "input_axons"):
        if int(use[key].max(initial=0)) > limits[key]:
            return key
    return None


def _largest(family: list[Layout], hi: int, ok: Callable[[Layout], bool]) -> int | None:
    """Index of the largest layout in ``family[:hi + 1]`` that is ``ok`` (costs grow along the
    family), or None when even the smallest is not."""
    if not ok(family[0]):
        return None
    lo = 0
    if ok(family[hi]):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(family[mid]):
            lo = mid
        else:
            hi = mid
    return lo


def _partition(layer: _Layer, limits: dict[str, int], reach: np.ndarray | None = None) -> None:
    """Choose the layout with the fewest slices (cores) that fits the per-core limits (and,
    given ``reach``, the destination cores each neuron sends to, the output-axon limit); ties
    go to the larger channel groups (fewer destination cores per spike)."""
    if not layer.fitting:  # per family: the largest layout fitting the input-side limits
        for family in _candidates(layer.shape, limits["neurons"]):
            i = _largest(family, len(family) - 1,
                         lambda lay: _fits(layer.usage(lay)[0], limits) is None)
            if i is not None:
                layer.fitting.append((family, i))
        if not layer.fitting:
            smallest = _candidates(layer.shape, 1)[0][0]
            use = layer.usage(smallest)[0]
            bad = _fits(use, limits) or "neurons"
            raise ResourceError(
                f"layer {layer.name}: one neuron{_SAM_NOTE if layer.sam_on else ''} needs "
                f"{int(use[bad].max()):,} {bad.replace('_', ' ')} per core, the target has "
                f"{limits[bad]:,}; {_SUGGEST[bad]}"
                + ("; or leave this layer's SAM accumulator out" if layer.sam_on else ""))

    sums = None if reach is None else _SliceSums(reach, layer.shape)

    def out_ok(lay: Layout) -> bool:
        assert sums is not None
        return int(sums.of(lay).max(initial=0)) <= limits["output_axons"]

    best: tuple[int, int, list[Layout], int] | None = None
    for k, (family, i) in enumerate(layer.fitting):
        j = i if reach is None else _largest(family, i, out_ok)
        if j is None:
            continue
        key = (family[j].slices, -k)
        if best is None or key < best[:2]:
            best = (*key, family, j)
    if best is None:  # only the output-axon limit (reach given) can leave nothing
        assert reach is not None
        raise ResourceError(
            f"layer {layer.name}: one neuron{_SAM_NOTE if layer.sam_on else ''} needs "
            f"{int(reach.max()):,} output axons, the target has {limits['output_axons']:,} per "
            f"core; {_SUGGEST['output_axons']}"
            + ("; or leave this layer's SAM accumulator out" if layer.sam_on else ""))
    layer.family, layer.index = best[2], best[3]


def _tile_path(mesh: tuple[int, int]) -> list[tuple[int, int]]:
    """Boustrophedon order of a chip's tiles: row by row, reversing every other row."""
    x_n, y_n = mesh
    path = []
    for y in range(y_n):
        xs = range(x_n) if y % 2 == 0 else range(x_n - 1, -1, -1)
        path.extend((x, y) for x in xs)
    return path


def _partition_all(layers: dict[str, _Layer], limits: dict[str, int], sam_on: bool
                   ) -> dict[str, np.ndarray]:
    """Steps 1-2 of :func:`map_graph` (with or without the SAM accumulators): choose every
    layer's layout; returns the output axons of every slice of every layer."""
    for layer in layers.values():
        layer.restart(sam_on)

    # 1. neurons, synaptic memory and input axons: fewest slices per layer.
    for layer in layers.values():
        _partition(layer, limits)

    # 2. output axons depend on the downstream slicing: shrink sources until they fit.
    for _ in range(64):
        reach = {name: np.zeros(layer.size, dtype=np.int64) for name, layer in layers.items()}
        for layer in layers.values():
            _, reaches, _ = layer.usage(layer.layout)
            for syn, r in reaches:
                for src in syn.sources:
                    if src.layer is not None:
                        reach[src.layer] += r[src.offset:src.offset + src.size]
        for name, layer in layers.items():
            if layer.sam_on:
                assert layer.sam is not None
                reach[name] += layer.sam.reach
        changed = False
        for name, layer in reversed(layers.items()):
            lay = layer.layout
            if int(lay.per_slice(reach[name]).max(initial=0)) <= limits["output_axons"]:
                continue
            _partition(layer, limits, reach[name])
            changed = True
        if not changed:
            break
    return {name: layer.layout.per_slice(reach[name]).astype(np.int64)
            for name, layer in layers.items()}


def map_graph(graph: Graph, target: Any, *, max_chips: int | None = None,
              sam: Any = None) -> Mapping:
    """Partition and place a fixed-point ``graph`` on ``target`` (a loaded
    :class:`neurodeploy.targets.Target`). Raises :class:`ResourceError` when it cannot fit.

    ``sam`` (a :class:`neurodeploy.sam.SamSpec`, or None) places the on-chip SAM accumulator
    of its layers on their cores (module docstring); the mapping then records it per core
    (``sam``), per layer (``layers[name]["sam"]``, with ``extra_cores`` against the layer
    mapped without it) and in :attr:`Mapping.sam`."""
    target.require_neuromorphic("map onto")
    if graph.stage == "float":
        raise UnsupportedError("mapping needs a fixed-point graph; quantize it first "
                               "(neurodeploy compile does)")
    limits = _limits(target)
    shapes = graph.shapes
    encodings = tuple(target.resources["synapse_encodings"])
    state_bits = int(target.resources.get("neuron_state_bits", 0))
    population = bool(target.resources.get("population_axons", False))
    layers = {name: _Layer(name, tuple(shapes[name]), _synapses_into(graph, name, shapes),
                           encodings, state_bits, population)
              for name in graph.neurons}
    base_cores: dict[str, int] = {}
    if sam is not None:
        from .sam import SamSpec, check_sam_layers, check_sam_target

        if not isinstance(sam, SamSpec):
            raise NeurodeployError(f"sam must be a neurodeploy.sam.SamSpec, got "
                                   f"{type(sam).__name__}")
        check_sam_target(target)
        for name in check_sam_layers(graph, list(sam.layers)):
            layers[name].sam = _SamLayer(name, tuple(shapes[name]), sam, state_bits > 0,
                                         population)
        _partition_all(layers, limits, sam_on=False)  # the baseline: cores without SAM
        base_cores = {name: layer.layout.slices for name, layer in layers.items()}
    out_axons = _partition_all(layers, limits, sam_on=sam is not None)

    # 3. place along the tile path, chip after chip.
    cores_per_chip = int(target.resources["cores_per_chip"])
    per_tile = int(target.resources["cores_per_tile"])
    mesh = tuple(target.resources["mesh_tiles"])
    path_xy = np.array(_tile_path(mesh), dtype=np.int64).reshape(-1, 2)  # type: ignore[arg-type]
    total_cores = sum(layer.layout.slices for layer in layers.values())
    chips = max(1, math.ceil(total_cores / cores_per_chip))
    if max_chips is not None and chips > max_chips:
        raise ResourceError(
            f"the network needs {total_cores:,} cores on {chips} chips, at most {max_chips} "
            f"chips allowed ({cores_per_chip} cores each); reduce the network or allow more "
            "chips")
    cores: list[CoreSlice] = []
    info: dict[str, dict[str, Any]] = {}
    syn_encoding: dict[str, str] = {}
    for name, layer in layers.items():
        lay = layer.layout
        use, _, encs = layer.usage(lay)
        syn_encoding.update(encs)
        extra = layer.sam.usage(lay) if layer.sam_on and layer.sam is not None else None
        first = len(cores)
        k = np.arange(first, first + lay.slices, dtype=np.int64)
        chip, local = np.divmod(k, cores_per_chip)
        txy = path_xy[local // per_tile]
        own = {key: use[key].astype(np.int64) for key in ("neurons", "synaptic_memory_bits",
                                                           "input_axons")}
        own["output_axons"] = out_axons[name].astype(np.int64)
        core_sams: list[dict[str, int] | None] = [None] * lay.slices
        if extra is not None:
            for key in own:
                own[key] = own[key] - extra["compartments" if key == "neurons" else key]
            core_sams = [dict(zip(SAM_CORE_KEYS, row)) for row in zip(
                *(extra[key].tolist() for key in SAM_CORE_KEYS))]
        cores.extend(CoreSlice(*row) for row in zip(
            k.tolist(), chip.tolist(),
            zip((chip * mesh[0] + txy[:, 0]).tolist(), txy[:, 1].tolist()),
            [name] * lay.slices, lay.starts.tolist(), own["neurons"].tolist(),
            own["synaptic_memory_bits"].tolist(), own["input_axons"].tolist(),
            own["output_axons"].tolist(), core_sams))
        n_cores = len(cores) - first
        info[name] = {
            "neurons": layer.size, "cores": n_cores, "first_core": first,
            "neurons_per_core": int(lay.sizes.max()), "layout": lay.to_json(),
            "synapses": [s.name for s in layer.synapses],
            "synapse_encodings": {s.name: encs[s.name] for s in layer.synapses},
            "max_per_core": {k: int(v.max(initial=0)) for k, v in use.items()}
            | {"output_axons": int(out_axons[name].max(initial=0))},
            "utilization": {
                k: round(float(np.asarray(use[k] if k != "output_axons" else out_axons[name])
                               .mean()) / limits[k], 6) for k in RESOURCES},
        }
        if extra is not None:
            assert layer.sam is not None
            info[name]["sam"] = _sam_layer_info(layer.sam, extra, n_cores, base_cores[name])
    warnings = []
    if chips > int(target.resources["chips_per_board"]):
        warnings.append(f"{chips} chips exceed one board ({target.resources['chips_per_board']}"
                        " chips): multi-board latency is not modelled beyond the barrier")
    summary: dict[str, Any] = {}
    if sam is not None:
        base_total = sum(base_cores.values())
        summary = {"layers": [n for n in layers if layers[n].sam_on], "gamma": sam.gamma,
                   "scale": sam.scale, "decay": sam.params.delta,
                   "cores_used_without_sam": base_total,
                   "extra_cores": len(cores) - base_total,
                   "placement": SAM_PLACEMENT}
    return Mapping(target=target.name, limits=limits, cores=cores, layers=info,
                   chips_used=chips, cores_per_chip=cores_per_chip, mesh_tiles=mesh,  # type: ignore[arg-type]
                   cores_per_tile=per_tile, synapse_encoding=syn_encoding, warnings=warnings,
                   sam=summary)


#: How :func:`map_graph` places the SAM accumulator (recorded in ``mapping.json``).
SAM_PLACEMENT = ("traces on their neuron's core; the channel sum of a pixel on the core "
                 "holding channel 0 of that pixel")


def _sam_layer_info(sam: _SamLayer, extra: dict[str, np.ndarray], cores: int,
                    base: int) -> dict[str, Any]:
    """A layer's ``sam`` entry of ``mapping.json``."""
    cost = sam.cost
    totals = {key: int(extra[key].sum()) for key in SAM_CORE_KEYS}
    return {"channels": sam.channels, "gamma": cost["gamma"], "scale": cost["scale"],
            "decay": cost["decay"], **totals,
            "trace_bits": int(cost["trace_bits"]), "sum_bits": int(cost["sum_bits"]),
            "state_in_synaptic_memory": sam.trace_bits > 0,
            "cores": int((extra["compartments"] > 0).sum()), "cores_without_sam": base,
            "extra_cores": cores - base}
