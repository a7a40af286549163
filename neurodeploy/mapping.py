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
  union of the receptive fields, exact without dilation; with dilation the gaps are counted); *output axons* = Σ over the slice's neurons of the number
  of distinct destination cores each one reaches (Loihi's core-to-core fan-out entries).
* Synapse encodings (the target lists the ones it has; the cheapest is chosen per synapse):
  ``dense``: ``n × fan_in × (weight_bits + delay_bits)``; ``sparse``: per non-zero weight
  ``weight_bits + delay_bits + ceil(log2 n)`` index bits; ``conv`` (shared weights, Loihi 2):
  the kernel of the slice's output channels once per core.
* Placement: slices in layer order along a boustrophedon path over the tiles of each chip,
  chips side by side, so consecutive layers sit on neighbouring tiles (fewer hops). Hops use
  XY routing over the global tile grid.

A layer that does not fit even with one neuron per core raises :class:`ResourceError` naming
the layer, the resource, what is needed and what is available, with a suggestion — before
any simulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ResourceError, UnsupportedError
from .ir import Concat, Flatten, Graph, Input, Node
from .ir.nodes import Add, QConv2d, QDense, QSumPool2d

DELAY_BITS = 6  # Loihi's per-synapse delay field (reference/loihi.md §1.2)
RESOURCES = ("neurons", "synaptic_memory_bits", "input_axons", "output_axons")


# ------------------------------------------------------------------------------ connectivity


@dataclass(frozen=True)
class _Source:
    """One contiguous block of a synapse's input vector and where it comes from."""

    layer: str | None  # neuron layer, or None for the graph input (host)
    offset: int  # position of the block in the synapse's flat input
    size: int


@dataclass
class _Synapse:
    name: str
    node: Node
    target: str  # neuron layer it feeds
    sources: list[_Source]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    recurrent: bool = False
    encoding: str = "dense"

    @property
    def in_size(self) -> int:
        return int(np.prod(self.in_shape))


def _sources(graph: Graph, name: str, shapes: dict[str, tuple[int, ...]]) -> list[_Source]:
    """Trace a synapse's input back through Flatten/Concat to neuron layers or the input."""
    out: list[_Source] = []

    def walk(node_name: str, offset: int) -> None:
        node = graph.nodes[node_name]
        size = int(np.prod(shapes[node_name]))
        if node.is_neuron:
            out.append(_Source(node_name, offset, size))
        elif isinstance(node, Input):
            out.append(_Source(None, offset, size))
        elif isinstance(node, Flatten):
            walk(graph.predecessors(node_name)[0], offset)
        elif isinstance(node, Concat) and node.axis == 0:
            pos = offset
            for pred in graph.predecessors(node_name):
                walk(pred, pos)
                pos += int(np.prod(shapes[pred]))
        else:
            raise UnsupportedError(
                f"{node_name} ({node.type_name}): mapping needs synapses fed by neuron layers "
                "through Flatten/Concat only; legalize the graph first")

    for pred in graph.predecessors(name):
        walk(pred, 0)
    return out


def _synapses_into(graph: Graph, neuron: str, shapes: dict[str, tuple[int, ...]]
                   ) -> list[_Synapse]:
    """Every synapse node whose current reaches ``neuron`` (through Add nodes)."""
    found: list[_Synapse] = []
    queue = list(graph.predecessors(neuron))
    while queue:
        name = queue.pop(0)
        node = graph.nodes[name]
        if isinstance(node, Add):
            queue.extend(graph.predecessors(name))
        elif node.is_synapse:
            pred = graph.predecessors(name)[0]
            found.append(_Synapse(name, node, neuron, _sources(graph, name, shapes),
                                  tuple(shapes[pred]), tuple(shapes[name])))
            rec = getattr(node, "weight_rec", None)
            if rec is not None:
                size = int(np.prod(shapes[neuron]))
                found.append(_Synapse(f"{name}.rec", QDense(weight=rec), neuron,
                                      [_Source(neuron, 0, size)], (size,), (size,),
                                      recurrent=True))
        elif isinstance(node, (Input, Flatten, Concat)) or node.is_neuron:
            continue  # direct (bias) input into the neuron: no synapses
        else:
            raise UnsupportedError(
                f"{name} ({node.type_name}): cannot map this node; legalize the graph first")
    return found


# ------------------------------------------------------------------------------ per-slice costs


def slice_order(shape: tuple[int, ...]) -> np.ndarray:
    """IR flat index of the neuron at each position of the slicing order: ``(H, W, C)`` for
    feature maps (a core holds all channels of neighbouring positions, so convolutions share
    input axons), plain order for vectors."""
    size = int(np.prod(shape))
    if len(shape) != 3:
        return np.arange(size)
    return np.arange(size).reshape(shape).transpose(1, 2, 0).reshape(-1)


def _slices(total: int, n: int) -> np.ndarray:
    """Start indices of slices of ``n`` neurons covering ``total`` neurons."""
    return np.arange(0, total, n)


def _weight_bits(node: Node) -> int:
    return int(getattr(node, "num_weight_bits", 8))


def _delay_bits(node: Node) -> int:
    return DELAY_BITS if getattr(node, "delay", None) is not None else 0


class _SliceCosts:
    """Synaptic memory and input axons of every slice of a layer for a slice size ``n``, and
    how many slices of the layer each presynaptic neuron reaches (for output axons)."""

    def __init__(self, syn: _Synapse, encodings: tuple[str, ...]) -> None:
        self.syn = syn
        node = syn.node
        self.encodings = encodings
        if isinstance(node, QDense):
            w = np.asarray(node.weight)
            self.kind = "dense"
            self.nonzero = w != 0  # (out, in)
        elif isinstance(node, (QConv2d, QSumPool2d)):
            self.kind = "conv"
        else:
            raise UnsupportedError(f"{syn.name} ({node.type_name}): no mapping cost model")

    # -- dense synapses
    def _dense(self, starts: np.ndarray, n: int, total: int) -> tuple[np.ndarray, np.ndarray,
                                                                        np.ndarray, str]:
        node = self.syn.node
        bits = _weight_bits(node) + _delay_bits(node)
        sizes = np.minimum(starts + n, total) - starts
        nnz_rows = self.nonzero.sum(axis=1)
        nnz = np.add.reduceat(nnz_rows, starts) if len(starts) else np.zeros(0, int)
        cols_any = np.logical_or.reduceat(self.nonzero, starts, axis=0)  # (slices, in)
        in_axons = cols_any.sum(axis=1)
        fan_in = self.nonzero.shape[1]
        options = {"dense": sizes * fan_in * bits}
        if "sparse" in self.encodings:
            index_bits = max(1, math.ceil(math.log2(max(n, 2))))
            options["sparse"] = nnz * (bits + index_bits)
        encoding = min(options, key=lambda k: int(options[k].max(initial=0)))
        reach = cols_any.sum(axis=0)  # per presynaptic neuron: slices reached
        return options[encoding], in_axons, reach, encoding

    # -- convolution / pooling synapses (row bands; columns counted whole)
    def _conv(self, starts: np.ndarray, n: int, total: int) -> tuple[np.ndarray, np.ndarray,
                                                                       np.ndarray, str]:
        node = self.syn.node
        c_in, h_in, w_in = self.syn.in_shape
        c_out, h_out, w_out = self.syn.out_shape
        if isinstance(node, QSumPool2d):
            groups, kh, kw = c_out, *node.kernel_size
            cin_g, cout_g = 1, 1
        else:
            groups = node.groups
            kh, kw = node.weight.shape[2:]
            cin_g, cout_g = c_in // groups, c_out // groups
        sh, sw = node.stride
        ph, pw = node.padding
        dh = node.dilation[0] if hasattr(node, "dilation") else 1
        bits = _weight_bits(node)
        ends = np.minimum(starts + n, total)
        sizes = ends - starts
        fan_in = cin_g * kh * kw
        # slices run in (H, W, C) order: position-major, all channels of a position together
        p_first, p_last = starts // c_out, (ends - 1) // c_out
        whole = p_last > p_first
        ch_lo = np.where(whole, 0, starts % c_out)
        ch_hi = np.where(whole, c_out - 1, (ends - 1) % c_out)
        options = {"dense": sizes * fan_in * bits}
        if "conv" in self.encodings:
            options["conv"] = (ch_hi - ch_lo + 1) * fan_in * bits
        encoding = min(options, key=lambda k: int(options[k].max(initial=0)))
        in_axons = np.zeros(len(starts), dtype=np.int64)
        reach_g = np.zeros((groups, h_in, w_in), dtype=np.int64)
        dw = node.dilation[1] if hasattr(node, "dilation") else 1
        kh_span, kw_span = (kh - 1) * dh, (kw - 1) * dw
        for i in range(len(starts)):
            r0, q0 = divmod(int(p_first[i]), w_out)
            r1, q1 = divmod(int(p_last[i]), w_out)
            # output segments (row range, col range) covered by the slice
            if r0 == r1:
                segments = [(r0, r0, q0, q1)]
            else:
                segments = [(r0, r0, q0, w_out - 1), (r1, r1, 0, q1)]
                if r1 - r0 >= 2:
                    segments.append((r0 + 1, r1 - 1, 0, w_out - 1))
            lo = max(0, r0 * sh - ph)
            hi = min(h_in - 1, r1 * sh - ph + kh_span)
            band = np.zeros((max(0, hi - lo + 1), w_in), dtype=bool)
            for ra, rb, qa, qb in segments:
                top, bottom = max(lo, ra * sh - ph), min(hi, rb * sh - ph + kh_span)
                left, right = max(0, qa * sw - pw), min(w_in - 1, qb * sw - pw + kw_span)
                if top <= bottom and left <= right:
                    band[top - lo:bottom - lo + 1, left:right + 1] = True
            g0, g1 = int(ch_lo[i]) // cout_g, int(ch_hi[i]) // cout_g
            in_axons[i] = (g1 - g0 + 1) * cin_g * int(band.sum())
            reach_g[g0:g1 + 1, lo:hi + 1] += band
        reach = np.repeat(reach_g, cin_g, axis=0).reshape(-1)
        return options[encoding], in_axons, reach, encoding

    def costs(self, n: int, total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """``(memory bits per slice, input axons per slice, reach per presynaptic neuron,
        encoding)`` for slices of ``n`` neurons."""
        starts = _slices(total, n)
        if self.kind == "dense":
            return self._dense(starts, n, total)
        return self._conv(starts, n, total)


# ------------------------------------------------------------------------------ results


@dataclass
class CoreSlice:
    """One core: a slice of one layer, where it sits and what it uses."""

    core: int
    chip: int
    tile: tuple[int, int]  # global tile coordinates (x across chips, y)
    layer: str
    start: int  # first neuron (flat index in the layer)
    neurons: int
    synaptic_memory_bits: int
    input_axons: int
    output_axons: int

    def usage(self) -> dict[str, int]:
        return {"neurons": self.neurons, "synaptic_memory_bits": self.synaptic_memory_bits,
                "input_axons": self.input_axons, "output_axons": self.output_axons}


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

    @property
    def cores_used(self) -> int:
        return len(self.cores)

    def core_of(self, layer: str, shape: tuple[int, ...]) -> np.ndarray:
        """Core index of every neuron of ``layer`` (of ``shape``), in IR flat order."""
        info = self.layers[layer]
        n, first = info["neurons_per_core"], info["first_core"]
        cores = np.empty(info["neurons"], dtype=np.int64)
        cores[slice_order(shape)] = first + np.arange(info["neurons"]) // n
        return cores

    def hops(self, core_a: int, core_b: int) -> tuple[int, int]:
        """(east-west, north-south) tile hops from core ``a`` to core ``b`` (XY routing)."""
        ta, tb = self.cores[core_a].tile, self.cores[core_b].tile
        return abs(ta[0] - tb[0]), abs(ta[1] - tb[1])

    def to_json(self) -> dict[str, Any]:
        """The ``mapping.json`` document: totals, per-layer and per-core utilization."""
        def util(use: dict[str, int]) -> dict[str, float]:
            return {k: round(use[k] / self.limits[k], 6) for k in RESOURCES}

        return {
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
            "per_core": [
                {"core": c.core, "chip": c.chip, "tile": list(c.tile), "layer": c.layer,
                 "first_neuron": c.start, **c.usage(), "utilization": util(c.usage())}
                for c in self.cores
            ],
            "warnings": list(self.warnings),
        }


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


class _Layer:
    def __init__(self, name: str, size: int, synapses: list[_Synapse],
                 encodings: tuple[str, ...], state_bits: int) -> None:
        self.name, self.size, self.synapses = name, size, synapses
        self.costers = [_SliceCosts(s, encodings) for s in synapses]
        self.state_bits = state_bits
        self.n = size

    def usage(self, n: int) -> tuple[dict[str, np.ndarray], list[tuple[_Synapse, np.ndarray]],
                                     dict[str, str]]:
        starts = _slices(self.size, n)
        sizes = np.minimum(starts + n, self.size) - starts
        mem = sizes.astype(np.int64) * self.state_bits
        axons = np.zeros(len(starts), dtype=np.int64)
        reaches, encodings = [], {}
        for syn, coster in zip(self.synapses, self.costers):
            m, a, reach, enc = coster.costs(n, self.size)
            mem = mem + m
            axons = axons + a
            reaches.append((syn, reach))
            encodings[syn.name] = enc
        return {"neurons": sizes, "synaptic_memory_bits": mem, "input_axons": axons}, \
            reaches, encodings


def _fits(use: dict[str, np.ndarray], limits: dict[str, int]) -> str | None:
    for key in ("neurons", "synaptic_memory_bits", "input_axons"):
        if int(use[key].max(initial=0)) > limits[key]:
            return key
    return None


def _largest_fitting(layer: _Layer, limits: dict[str, int], cap: int) -> int:
    """Largest slice size ``n <= cap`` whose slices all fit (the costs grow with ``n``)."""
    hi = min(cap, layer.size, limits["neurons"])
    use, _, _ = layer.usage(1)
    bad = _fits(use, limits)
    if bad is not None:
        needed = int(use[bad].max())
        raise ResourceError(
            f"layer {layer.name}: one neuron needs {needed:,} {bad.replace('_', ' ')} per core, "
            f"the target has {limits[bad]:,}; {_SUGGEST[bad]}")
    use, _, _ = layer.usage(hi)
    if _fits(use, limits) is None:
        return hi
    lo = 1  # fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        use, _, _ = layer.usage(mid)
        if _fits(use, limits) is None:
            lo = mid
        else:
            hi = mid
    return lo


def _tile_path(mesh: tuple[int, int]) -> list[tuple[int, int]]:
    """Boustrophedon order of a chip's tiles: row by row, reversing every other row."""
    x_n, y_n = mesh
    path = []
    for y in range(y_n):
        xs = range(x_n) if y % 2 == 0 else range(x_n - 1, -1, -1)
        path.extend((x, y) for x in xs)
    return path


def map_graph(graph: Graph, target: Any, *, max_chips: int | None = None) -> Mapping:
    """Partition and place a fixed-point ``graph`` on ``target`` (a loaded
    :class:`neurodeploy.targets.Target`). Raises :class:`ResourceError` when it cannot fit."""
    if not target.is_neuromorphic:
        raise UnsupportedError(f"target {target.name} is an ANN device; map onto a "
                               "neuromorphic target (loihi1, loihi1-sanafe, loihi2)")
    if graph.stage == "float":
        raise UnsupportedError("mapping needs a fixed-point graph; quantize it first "
                               "(neurodeploy compile does)")
    limits = _limits(target)
    shapes = graph.shapes
    encodings = tuple(target.resources["synapse_encodings"])
    state_bits = int(target.resources.get("neuron_state_bits", 0))
    layers = {name: _Layer(name, int(np.prod(shapes[name])),
                           _synapses_into(graph, name, shapes), encodings, state_bits)
              for name in graph.neurons}

    orders = {name: slice_order(tuple(shapes[name])) for name in layers}

    # 1. neurons, synaptic memory and input axons: largest slice per layer.
    for layer in layers.values():
        layer.n = _largest_fitting(layer, limits, layer.size)

    # 2. output axons depend on the downstream slicing: shrink sources until they fit.
    for _ in range(16):
        reach = {name: np.zeros(layer.size, dtype=np.int64) for name, layer in layers.items()}
        for layer in layers.values():
            _, reaches, _ = layer.usage(layer.n)
            for syn, r in reaches:
                for src in syn.sources:
                    if src.layer is not None:
                        reach[src.layer] += r[src.offset:src.offset + src.size]
        changed = False
        for name in reach:
            reach[name] = reach[name][orders[name]]  # into the layer's slicing order
        for name, layer in layers.items():
            per_slice = np.add.reduceat(reach[name], _slices(layer.size, layer.n))
            if int(per_slice.max(initial=0)) <= limits["output_axons"]:
                continue
            per_neuron = int(reach[name].max())
            if per_neuron > limits["output_axons"]:
                raise ResourceError(
                    f"layer {name}: one neuron needs {per_neuron:,} output axons, the target "
                    f"has {limits['output_axons']:,} per core; {_SUGGEST['output_axons']}")
            n = layer.n
            while n > 1 and int(np.add.reduceat(reach[name], _slices(layer.size, n)).max()) \
                    > limits["output_axons"]:
                n = max(1, n * 3 // 4)
            layer.n, changed = n, True
        if not changed:
            break
    out_axons = {name: np.add.reduceat(reach[name], _slices(layer.size, layer.n))
                 for name, layer in layers.items()}

    # 3. place along the tile path, chip after chip.
    cores_per_chip = int(target.resources["cores_per_chip"])
    per_tile = int(target.resources["cores_per_tile"])
    mesh = tuple(target.resources["mesh_tiles"])
    path = _tile_path(mesh)  # type: ignore[arg-type]
    total_cores = sum(len(_slices(layer.size, layer.n)) for layer in layers.values())
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
        use, _, encs = layer.usage(layer.n)
        syn_encoding.update(encs)
        first = len(cores)
        for i, start in enumerate(_slices(layer.size, layer.n)):
            k = len(cores)
            chip, local = divmod(k, cores_per_chip)
            tx, ty = path[local // per_tile]
            cores.append(CoreSlice(
                core=k, chip=chip, tile=(chip * mesh[0] + tx, ty), layer=name,
                start=int(start), neurons=int(use["neurons"][i]),
                synaptic_memory_bits=int(use["synaptic_memory_bits"][i]),
                input_axons=int(use["input_axons"][i]),
                output_axons=int(out_axons[name][i])))
        n_cores = len(cores) - first
        info[name] = {
            "neurons": layer.size, "cores": n_cores, "first_core": first,
            "neurons_per_core": layer.n,
            "synapses": [s.name for s in layer.synapses],
            "synapse_encodings": {s.name: encs[s.name] for s in layer.synapses},
            "max_per_core": {k: int(v.max(initial=0)) for k, v in use.items()}
            | {"output_axons": int(out_axons[name].max(initial=0))},
            "utilization": {
                k: round(float(np.asarray(use[k] if k != "output_axons" else out_axons[name])
                               .mean()) / limits[k], 6) for k in RESOURCES},
        }
    warnings = []
    if chips > int(target.resources["chips_per_board"]):
        warnings.append(f"{chips} chips exceed one board ({target.resources['chips_per_board']}"
                        " chips): multi-board latency is not modelled beyond the barrier")
    return Mapping(target=target.name, limits=limits, cores=cores, layers=info,
                   chips_used=chips, cores_per_chip=cores_per_chip, mesh_tiles=mesh,  # type: ignore[arg-type]
                   cores_per_tile=per_tile, synapse_encoding=syn_encoding, warnings=warnings)
