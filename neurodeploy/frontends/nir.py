"""Read and write NIR graphs (``.nir``: the Neuromorphic Intermediate Representation, HDF5) as
float-stage IR graphs, node by node with NIR's field names.

**Reading** checks every dataset before use (node type, dtype, shape, size, finite values) and
reports each problem as a one-line :class:`~neurodeploy.errors.BadInputFileError` naming the
file and the node. The file is opened with h5py only: nothing is unpickled (``nir.read`` does the
same, but trusts every field; this reader validates them). Mapping (NIR → IR):

* ``Input`` → ``Input`` (a leading batch axis of 1 is dropped, a channels-last shape feeding a
  ``Conv2d`` is read as ``(C, H, W)``, both with a warning);
* ``Output`` → implicit (graph outputs are the nodes without successors); the file's output
  names are kept in ``metadata["nir"]["outputs"]``;
* ``Affine``/``Linear`` → ``Affine``/``Linear`` (``weight`` ``(out, in)``);
* ``Conv2d`` → ``Conv2d`` (PyTorch weight layout ``(out, in/groups, kh, kw)``; ``input_shape``
  checked, or inferred with a warning when missing; ``"same"``/``"valid"`` padding);
* ``SumPool2d``/``AvgPool2d`` → ``SumPool2d``/``AvgPool2d``;
* ``Flatten`` → ``Flatten`` (only flattening every sample axis; PyTorch's batch-inclusive
  ``start_dim=1`` is accepted with a warning);
* ``LIF``/``IF``/``CubaLIF``/``I`` → the IR nodes of the same names and fields (0-d or
  per-neuron parameters; other shapes of the right size are reshaped with a warning);
* ``Scale`` → ``BatchNorm(scale, shift=0)`` when the scale is per channel;
* ``LI``, ``CubaLI``, ``Threshold``, ``Delay``, ``Conv1d``, subgraphs →
  :class:`~neurodeploy.errors.UnsupportedError` (the IR has no node for them yet).

Several edges into one node are summed (NIR's rule): an ``Add`` node ``<name>_sum`` is inserted
(for an ``Output``, the ``Add`` takes the output's name).
Node names that are not IR names (``"0"``, ``"lif1.lif"``) are made valid (``"n0"``,
``"lif1_lif"``); ``metadata["nir"]["names"]`` maps IR names back to the file's.

**Time step.** NIR is continuous-time and its files hold no ``dt``: :func:`read_nir` stores the
``dt`` it is given in ``graph.metadata["dt"]`` (seconds), the step the float simulator's Euler
updates use. Without one it uses a ``dt`` this module wrote into the file's graph metadata, or
1.0 with a warning.

**Reset mode.** NIR neurons reset to ``v_reset`` (0 when the field is absent). Reset by
subtraction has no NIR encoding: snnTorch's "subtract" export
(``braille_noDelay_noBias_subtract.nir``) holds exactly the same fields as its "zero" one. Pass
``reset="subtract"`` (or a per-node mapping) to :func:`read_nir`; :func:`write_nir` records a
subtracting neuron as node metadata ``reset = "subtract"``, which :func:`read_nir` honours
(other NIR tools ignore it).

**Recurrence.** A neuron whose own spikes come back through an ``Affine``/``Linear`` (snnTorch's
``RSynaptic``/``RLeaky``: ``lif1.lif → lif1.w_rec → lif1.lif``) is a cycle, and the IR is a
DAG. The feedback synapse is taken out of the graph and stored on the neuron node as its
``weight_rec`` ``(N, N)`` and ``bias_rec`` ``(N,)`` (``None`` for a ``Linear``), which the IR
defines with a one-step delay (the spikes of step ``t−1`` feed step ``t``, as every discrete
NIR simulator does); the synapse's file name is kept in
``metadata["nir"]["recurrent_names"][neuron]`` so that :func:`write_nir` can reuse it. Other
cycles are unsupported.

**Writing** (:func:`write_nir`) builds ``nir`` nodes and saves them with ``nir.write`` through a
temporary file, so a failed write leaves nothing behind. Neuron parameters are broadcast to the
neuron shape (NIR derives types from them). ``BatchNorm`` becomes ``Scale`` (no shift), a
diagonal ``Affine`` (vectors) or a diagonal 1×1 ``Conv2d``; ``Add`` becomes fan-in edges; an
``Affine``/``Linear`` fed a feature map gets an explicit ``Flatten``; a neuron's
``weight_rec``/``bias_rec`` becomes the cycle ``neuron → Linear/Affine → neuron``. Nodes NIR
cannot express (fixed point, ``ReLU``, ``BNTT``, ``Concat``, ``order="fire_integrate"``,
recurrence over a feature map: NIR 1.0 has no unflatten to close the cycle) raise
:class:`~neurodeploy.errors.UnsupportedError` listing all of them.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._hdf5 import CheckedGroup
from ..errors import (
    BadInputFileError,
    InvalidIRError,
    NeurodeployError,
    UnsupportedError,
)
from ..ir import (
    IF,
    LIF,
    MAX_ELEMENTS,
    Add,
    Affine,
    AvgPool2d,
    BatchNorm,
    Conv2d,
    CubaLIF,
    Flatten,
    Graph,
    I,
    Input,
    Linear,
    Node,
    SumPool2d,
)
from ..ir.nodes import RESET_MODES

#: NIR node types read into the IR.
READ_TYPES = ("Input", "Output", "Affine", "Linear", "Conv2d", "SumPool2d", "AvgPool2d",
              "Flatten", "LIF", "CubaLIF", "IF", "I", "Scale")
#: NIR node types that exist but have no IR counterpart yet.
UNSUPPORTED_TYPES = ("LI", "CubaLI", "Threshold", "Delay", "Conv1d", "NIRGraph", "Identity")
#: IR node types :func:`write_nir` can express.
WRITE_TYPES = (Input, Affine, Linear, Conv2d, SumPool2d, AvgPool2d, Flatten, Add, BatchNorm,
               LIF, IF, CubaLIF, I)
_SPIKING = ("LIF", "IF", "CubaLIF")
_NEURON_FIELDS = {
    "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset"),
    "IF": ("r", "v_threshold", "v_reset"),
    "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in", "v_reset"),
    "I": ("r",),
}
_OPTIONAL = {"v_reset", "w_in"}
_POSITIVE = {"tau", "tau_syn", "tau_mem"}
_NAME_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


class NIRWarning(UserWarning):
    """A NIR file quirk that was accepted (its meaning is clear) or a missing ``dt``."""


def _natural(name: str) -> list[Any]:
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name)]


# ============================================================================================
# Checked access to one HDF5 group
# ============================================================================================


class _Group(CheckedGroup):
    """Checked reads from one NIR node group; failures name the file and the node."""

    def __init__(self, path: Path, group: h5py.Group, name: str,
                 notes: list[str] | None = None) -> None:
        super().__init__(path, group, f"node {name!r}")
        self.name = name
        self.notes = notes if notes is not None else []

    def warn(self, message: str) -> None:
        self.notes.append(f"{self.path}: {self.where}: {message}")

    def numbers(self, key: str) -> np.ndarray:
        """A finite float64 array."""
        ds = self._dataset(key)
        if ds.dtype.kind not in "biuf":
            raise self.fail(f"field {key!r} holds {ds.dtype} values, expected numbers")
        value = np.asarray(ds[()], dtype=np.float64)
        if not np.all(np.isfinite(value)):
            raise self.fail(f"field {key!r} holds NaN or infinite values")
        return value

    def integers(self, key: str) -> np.ndarray:
        """An int64 array of whole numbers."""
        value = self.numbers(key)
        if not np.array_equal(value, np.round(value)) or (value.size and np.abs(value).max()
                                                          >= 2**53):
            raise self.fail(f"field {key!r} must hold whole numbers")
        return value.astype(np.int64)

    def integer(self, key: str, default: int | None = None) -> int:
        if default is not None and key not in self.group:
            return default
        value = self.integers(key)
        if value.size != 1:
            raise self.fail(f"field {key!r} must be one number, got shape {value.shape}")
        return int(value.reshape(-1)[0])

    def pair(self, key: str, lo: int) -> tuple[int, int]:
        """An ``(h, w)`` pair stored as one or two whole numbers, each at least ``lo``."""
        value = self.integers(key).reshape(-1)
        if value.size == 1:
            value = np.repeat(value, 2)
        if value.size != 2:
            raise self.fail(f"field {key!r} must hold 1 or 2 numbers, got {value.size}")
        if value.min() < lo:
            raise self.fail(f"field {key!r} = {value.tolist()} must be >= {lo}")
        return (int(value[0]), int(value[1]))

    def is_string(self, key: str) -> bool:
        ds = self._dataset(key)
        return ds.dtype.kind in "SU" or h5py.check_string_dtype(ds.dtype) is not None

    def string(self, key: str) -> str:
        ds = self._dataset(key)
        if not self.is_string(key) or math.prod(ds.shape) != 1:
            raise self.fail(f"field {key!r} must be one string, got {ds.dtype} {ds.shape}")
        value = np.asarray(ds[()], dtype=object).reshape(-1)[0]
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail(f"field {key!r} is not UTF-8 text") from None
        if not isinstance(value, str) or len(value) > 256:
            raise self.fail(f"field {key!r} must be a short string")
        return value

    def metadata(self) -> dict[str, Any]:
        """The node's ``metadata`` group: strings and numbers only (other entries skipped)."""
        if "metadata" not in self.group or not isinstance(self.group["metadata"], h5py.Group):
            return {}
        sub = _Group(self.path, self.group["metadata"], self.name, self.notes)
        out: dict[str, Any] = {}
        for key, item in self.group["metadata"].items():
            if not isinstance(item, h5py.Dataset) or item.shape is None:
                continue
            if sub.is_string(key) and math.prod(item.shape) == 1:
                out[key] = sub.string(key)
            elif item.dtype.kind in "biuf" and math.prod(item.shape) == 1:
                out[key] = float(np.asarray(item[()]).reshape(-1)[0])
        return out


# ============================================================================================
# Reading
# ============================================================================================


class _Raw:
    """One NIR node as found in the file."""

    def __init__(self, name: str, kind: str, group: _Group) -> None:
        self.name, self.kind, self.g = name, kind, group


class _Reader:
    def __init__(self, path: Path, root: h5py.File, dt: float | None,
                 reset: str | Mapping[str, str] | None) -> None:
        self.path, self.root = path, root
        self.dt_arg, self.reset_arg = dt, reset
        self.raw: dict[str, _Raw] = {}
        self.ir_name: dict[str, str] = {}
        self.nodes: dict[str, Node] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        #: accepted quirks, emitted as warnings once the file has been read
        self.notes: list[str] = []

    def fail(self, problem: str) -> BadInputFileError:
        return BadInputFileError(self.path, problem)

    # ------------------------------------------------------------------ file structure

    def _graph_group(self) -> h5py.Group:
        node = self.root.get("node")
        if not isinstance(node, h5py.Group):
            raise self.fail("not a NIR file: no 'node' group")
        top = _Group(self.path, node, "node")
        kind = top.string("type") if top.has("type") else None
        if kind != "NIRGraph":
            raise self.fail(f"not a NIR graph: top node type is {kind!r}, expected 'NIRGraph'")
        if not isinstance(node.get("nodes"), h5py.Group):
            raise self.fail("NIR graph has no 'nodes' group")
        return node

    def _version(self) -> str | None:
        if "version" not in self.root:
            return None
        return _Group(self.path, self.root, "(root)").string("version")

    def _file_dt(self, node: h5py.Group) -> float | None:
        meta = _Group(self.path, node, "(graph)").metadata()
        value = meta.get("dt")
        if value is None:
            return None
        if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
            raise self.fail(f"graph metadata dt={value!r} must be a positive number (seconds)")
        return value

    def _read_nodes(self, node: h5py.Group) -> None:
        unknown, unsupported = [], []
        for name, item in node["nodes"].items():
            if not isinstance(item, h5py.Group):
                raise self.fail(f"node {name!r} is not a group")
            g = _Group(self.path, item, name, self.notes)
            kind = g.string("type")
            if kind in UNSUPPORTED_TYPES:
                unsupported.append(f"{name} ({kind})")
            elif kind not in READ_TYPES:
                unknown.append(f"{name} ({kind})")
            self.raw[name] = _Raw(name, kind, g)
        if unknown:
            raise self.fail(
                f"unknown NIR node type(s): {', '.join(unknown)}; NIR 1.0 types are "
                + ", ".join(READ_TYPES + UNSUPPORTED_TYPES)
            )
        if unsupported:
            raise UnsupportedError(
                f"{self.path}: NIR node(s) {', '.join(unsupported)} have no IR counterpart; "
                f"supported: {', '.join(READ_TYPES)}"
            )
        if not self.raw:
            raise self.fail("NIR graph has no nodes")

    def _read_edges(self, node: h5py.Group) -> list[tuple[str, str]]:
        top = _Group(self.path, node, "(graph)")
        ds = top._dataset("edges")
        if ds.size == 0:
            return []
        if not top.is_string("edges") or len(ds.shape) != 2 or ds.shape[1] != 2:
            raise self.fail(f"edges must be an (E, 2) array of node names, got {ds.dtype} "
                            f"{ds.shape}")
        edges = []
        seen = set()
        for a, b in np.asarray(ds[()], dtype=object):
            a = a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a)
            b = b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)
            for end in (a, b):
                if end not in self.raw:
                    raise self.fail(f"edge {a} -> {b}: no node named {end!r}")
            if (a, b) in seen:
                raise self.fail(f"duplicate edge {a} -> {b}")
            seen.add((a, b))
            edges.append((a, b))
        return edges

    # ------------------------------------------------------------------ structure

    def _names(self) -> None:
        used: set[str] = set()
        for name in sorted(self.raw, key=_natural):
            base = name if _NAME_OK.match(name) else re.sub(r"[^A-Za-z0-9_\-]", "_", name)
            if not _NAME_OK.match(base):
                base = "n" + base
            new, k = base, 2
            while new in used:
                new, k = f"{base}_{k}", k + 1
            used.add(new)
            self.ir_name[name] = new

    def _recurrent(self, edges: list[tuple[str, str]]) -> tuple[list[tuple[str, str]],
                                                                dict[str, str]]:
        """Take neuron → synapse → same neuron loops out of ``edges``; refuse other cycles."""
        succ: dict[str, set[str]] = {}
        for a, b in edges:
            succ.setdefault(a, set()).add(b)

        def reaches(src: str, dst: str) -> bool:
            stack, seen = [src], {src}
            while stack:
                n = stack.pop()
                for m in succ.get(n, ()):
                    if m == dst:
                        return True
                    if m not in seen:
                        seen.add(m)
                        stack.append(m)
            return False

        cyclic = sorted({a for a, b in edges if a == b or reaches(b, a)}, key=_natural)
        if not cyclic:
            return edges, {}
        preds: dict[str, list[str]] = {}
        for a, b in edges:
            preds.setdefault(b, []).append(a)
        loops: dict[str, str] = {}
        for syn in cyclic:
            raw = self.raw[syn]
            if raw.kind not in ("Affine", "Linear"):
                continue
            p, s = preds.get(syn, []), sorted(succ.get(syn, ()))
            if len(p) == 1 and s == p and self.raw[p[0]].kind in _SPIKING:
                loops[p[0]] = syn
        covered = set(loops) | set(loops.values())
        bad = [f"{n} ({self.raw[n].kind})" for n in cyclic if n not in covered]
        if bad:
            raise UnsupportedError(
                f"{self.path}: the graph has a cycle through {', '.join(bad)}; only a spiking "
                "neuron's own feedback through one Affine/Linear (neuron -> synapse -> neuron) "
                "is supported"
            )
        rest = [(a, b) for a, b in edges if a not in loops.values() and b not in loops.values()]
        return rest, loops

    def _topo(self, names: list[str], edges: list[tuple[str, str]]) -> list[str]:
        indeg = {n: 0 for n in names}
        succ: dict[str, list[str]] = {}
        for a, b in edges:
            indeg[b] += 1
            succ.setdefault(a, []).append(b)
        ready = sorted((n for n, d in indeg.items() if d == 0), key=_natural)
        order = []
        while ready:
            n = ready.pop(0)
            order.append(n)
            for m in succ.get(n, []):
                indeg[m] -= 1
                if indeg[m] == 0:
                    ready.append(m)
                    ready.sort(key=_natural)
        return order

    # ------------------------------------------------------------------ graph

    def graph(self) -> Graph:
        top = self._graph_group()
        version = self._version()
        self._read_nodes(top)
        dt = self._dt(self._file_dt(top))
        edges = self._read_edges(top)
        self._names()
        self._check_reset_names()
        edges, loops = self._recurrent(edges)
        outputs = [n for n, r in self.raw.items() if r.kind == "Output"]
        for a, b in edges:
            if self.raw[a].kind == "Output":
                raise self.fail(f"edge {a} -> {b} leaves an Output node")
            if self.raw[b].kind == "Input":
                raise self.fail(f"edge {a} -> {b} enters an Input node")
        if not any(r.kind == "Input" for r in self.raw.values()):
            raise self.fail("NIR graph has no Input node")
        preds: dict[str, list[str]] = {}
        succs: dict[str, list[str]] = {}
        for a, b in edges:
            preds.setdefault(b, []).append(a)
            succs.setdefault(a, []).append(b)
        names = [n for n in self.raw if n not in loops.values()]
        order = self._topo(names, edges)
        if len(order) != len(names):
            raise self.fail("the graph has a cycle")  # _recurrent removed all allowed ones
        ir_edges: list[tuple[str, str]] = []
        out_map: dict[str, str] = {}
        for name in order:
            raw = self.raw[name]
            src = [self.ir_name[p] for p in preds.get(name, [])]
            if raw.kind == "Output":
                out_map[name] = self._output(raw, src, ir_edges)
                continue
            if raw.kind != "Input" and not src:
                raise self.fail(f"node {name!r} ({raw.kind}) has no incoming edge")
            if len(src) > 1:
                sum_name = self._fresh(f"{self.ir_name[name]}_sum")
                self._add_node(sum_name, Add(), src, ir_edges, raw.g)
                src = [sum_name]
            in_shape = self.shapes[src[0]] if src else ()
            node = self._build(raw, in_shape, succs.get(name, []))
            if name in loops:
                node = node.replace(**self._rec_fields(self.raw[loops[name]], in_shape))
            self._add_node(self.ir_name[name], node, src, ir_edges, raw.g)
        metadata: dict[str, Any] = {
            "dt": dt,
            "source": str(self.path),
            "nir": {
                "version": version,
                "names": {self.ir_name[n]: n for n in names if self.raw[n].kind != "Output"},
                "outputs": out_map,
            },
        }
        if loops:
            metadata["nir"]["recurrent_names"] = {
                self.ir_name[neuron]: syn for neuron, syn in loops.items()
            }
        graph = Graph(self.nodes, ir_edges, metadata)
        try:
            graph.validate()
        except InvalidIRError as err:
            raise self.fail(err.message) from None
        if not outputs:
            self.notes.append(f"{self.path}: the NIR graph has no Output node; its outputs are "
                              "the nodes without successors")
        return graph

    def _fresh(self, base: str) -> str:
        taken = set(self.ir_name.values()) | set(self.nodes)
        new, k = base, 2
        while new in taken:
            new, k = f"{base}_{k}", k + 1
        return new

    def _add_node(self, name: str, node: Node, src: list[str], ir_edges: list[tuple[str, str]],
                  g: _Group) -> None:
        in_shapes = [self.shapes[s] for s in src]
        problems = node.check() or node.check_inputs(in_shapes)
        if not problems and not node.arity[0] <= len(src) <= node.arity[1]:
            problems = [f"has {len(src)} inputs"]
        if problems:
            raise g.fail("; ".join(problems))
        self.nodes[name] = node
        self.shapes[name] = tuple(node.output_shape(in_shapes))
        ir_edges.extend((s, name) for s in src)

    def _output(self, raw: _Raw, src: list[str], ir_edges: list[tuple[str, str]]) -> str:
        if not src:
            raise raw.g.fail("Output node has no incoming edge")
        if len(src) > 1:  # the output is the sum of its inputs: an Add named like the Output
            name = self.ir_name[raw.name]
            self._add_node(name, Add(), src, ir_edges, raw.g)
            src = [name]
        shape = self.shapes[src[0]]
        if raw.g.has("shape"):
            declared = tuple(int(v) for v in raw.g.integers("shape").reshape(-1))
            if declared != shape:
                if math.prod(declared) != math.prod(shape):
                    raise raw.g.fail(f"output shape {declared} does not match its source "
                                     f"{src[0]} of shape {shape}")
                raw.g.warn(f"output shape {declared} read as {shape} (same size)")
        return src[0]

    def _dt(self, file_dt: float | None) -> float:
        if self.dt_arg is not None:
            dt = self.dt_arg
            if isinstance(dt, bool) or not isinstance(dt, (int, float, np.floating, np.integer)) \
                    or not math.isfinite(float(dt)) or dt <= 0:
                raise NeurodeployError(f"dt={dt!r} must be a positive number of seconds")
            if file_dt is not None and not math.isclose(float(dt), file_dt, rel_tol=1e-12):
                self.notes.append(f"{self.path}: the file was written for dt={file_dt:g}; "
                                  f"using the dt={float(dt):g} given")
            return float(dt)
        if file_dt is not None:
            return file_dt
        self.notes.append(
            f"{self.path}: NIR files hold no time step; simulating with dt=1.0. Pass "
            "read_nir(path, dt=...) with the step the exporter assumed (in seconds, "
            "e.g. 1e-4 for snnTorch and Norse exports)"
        )
        return 1.0

    def _check_reset_names(self) -> None:
        if not isinstance(self.reset_arg, Mapping):
            return
        spiking = [n for n, r in self.raw.items() if r.kind in _SPIKING]
        known = set(spiking) | {self.ir_name[n] for n in spiking}
        bad = sorted(str(k) for k in self.reset_arg if k not in known)
        if bad:
            raise NeurodeployError(
                f"reset modes given for {', '.join(bad)}, which are not spiking neurons of "
                f"{self.path}; its spiking neurons: {', '.join(spiking) or 'none'}"
            )

    def _reset(self, raw: _Raw) -> str:
        arg = self.reset_arg
        if isinstance(arg, Mapping):
            arg = arg.get(raw.name, arg.get(self.ir_name[raw.name]))
        if arg is not None:
            if arg not in RESET_MODES:
                raise NeurodeployError(f"reset mode {arg!r} for node {raw.name!r} must be one "
                                       f"of {', '.join(RESET_MODES)}")
            return str(arg)
        mode = raw.g.metadata().get("reset", "zero")
        if mode not in RESET_MODES:
            raise raw.g.fail(f"metadata reset={mode!r} must be one of {', '.join(RESET_MODES)}")
        return str(mode)

    # ------------------------------------------------------------------ node builders

    def _build(self, raw: _Raw, in_shape: tuple[int, ...], succs: list[str]) -> Node:
        g, kind = raw.g, raw.kind
        if kind == "Input":
            return self._input(raw, succs)
        if kind in ("Affine", "Linear"):
            weight = g.numbers("weight")
            if weight.ndim != 2:
                raise g.fail(f"weight must be 2-D (out, in), got shape {weight.shape}")
            if kind == "Linear":
                return Linear(weight)
            bias = g.numbers("bias")
            if bias.ndim == 0 or (bias.shape == (1,) and weight.shape[0] != 1):
                g.warn(f"scalar bias broadcast to the {weight.shape[0]} outputs")
                bias = np.full(weight.shape[0], float(bias.reshape(-1)[0]))
            elif bias.shape != (weight.shape[0],):
                raise g.fail(f"bias shape {bias.shape} != ({weight.shape[0]},)")
            return Affine(weight, bias)
        if kind == "Conv2d":
            return self._conv(g, in_shape)
        if kind in ("SumPool2d", "AvgPool2d"):
            cls = SumPool2d if kind == "SumPool2d" else AvgPool2d
            return cls(kernel_size=g.pair("kernel_size", 1), stride=g.pair("stride", 1),
                       padding=g.pair("padding", 0))
        if kind == "Flatten":
            return self._flatten(g, in_shape)
        if kind == "Scale":
            return self._scale(g, in_shape)
        return self._neuron(raw, in_shape)

    def _input(self, raw: _Raw, succs: list[str]) -> Input:
        g = raw.g
        shape = tuple(int(v) for v in g.integers("shape").reshape(-1))
        if len(shape) in (2, 4) and shape[0] <= 1 and min(shape[1:], default=0) > 0:
            g.warn(f"input shape {shape} read as {shape[1:]} (leading batch axis dropped)")
            shape = shape[1:]
        if not shape or min(shape) <= 0 or len(shape) not in (1, 3):
            raise g.fail(f"input shape {shape} must be (N,) or (C, H, W) with positive sizes")
        if len(shape) == 3:
            convs = [self.raw[s] for s in succs if self.raw[s].kind == "Conv2d"]
            for conv in convs:
                w = conv.g.numbers("weight")
                groups = conv.g.integer("groups", 1)
                if w.ndim != 4:
                    continue
                want = w.shape[1] * groups
                if shape[0] != want and shape[2] == want:
                    hw = None
                    if conv.g.has("input_shape"):
                        hw = tuple(int(v) for v in conv.g.integers("input_shape").reshape(-1))
                    if hw is None or hw == shape[:2]:
                        new = (shape[2], shape[0], shape[1])
                        g.warn(f"input shape {shape} is channels-last (H, W, C); read as "
                               f"(C, H, W) = {new}: feed inputs in (C, H, W) order")
                        shape = new
                        break
        if math.prod(shape) > MAX_ELEMENTS:
            raise g.fail(f"input shape {shape} is too large")
        return Input(shape)

    def _conv(self, g: _Group, in_shape: tuple[int, ...]) -> Conv2d:
        weight = g.numbers("weight")
        if weight.ndim != 4:
            raise g.fail(f"weight must be 4-D (out, in/groups, kh, kw), got {weight.shape}")
        if len(in_shape) != 3:
            raise g.fail(f"Conv2d needs a (C, H, W) input, gets {in_shape}")
        if not g.has("groups"):
            g.warn("field 'groups' missing; using 1")
        groups = g.integer("groups", 1)
        stride = g.pair("stride", 1)
        dilation = g.pair("dilation", 1)
        if g.has("padding") and g.is_string("padding"):
            mode = g.string("padding")
            if mode == "valid":
                padding = (0, 0)
            elif mode == "same":
                totals = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
                if stride != (1, 1) or any(t % 2 for t in totals):
                    raise UnsupportedError(
                        f"{self.path}: node {g.name!r}: padding 'same' with stride {stride} and "
                        f"kernel {weight.shape[2:]} pads asymmetrically; the IR pads symmetrically"
                    )
                padding = (totals[0] // 2, totals[1] // 2)
            else:
                raise g.fail(f"padding {mode!r} must be a number, a pair, 'same' or 'valid'")
        else:
            padding = g.pair("padding", 0)
        if g.has("input_shape"):
            declared = tuple(int(v) for v in g.integers("input_shape").reshape(-1))
            if declared == tuple(in_shape):
                pass
            elif declared != tuple(in_shape[1:]):
                raise g.fail(f"input_shape {declared} does not match the input {in_shape}")
        else:
            g.warn(f"input_shape missing; inferred (H, W) = {in_shape[1:]} from the graph")
        bias = g.numbers("bias") if g.has("bias") else None
        if bias is None:
            g.warn("field 'bias' missing; using no bias")
        elif bias.ndim == 0 or (bias.shape == (1,) and weight.shape[0] != 1):
            g.warn(f"scalar bias broadcast to the {weight.shape[0]} output channels")
            bias = np.full(weight.shape[0], float(bias.reshape(-1)[0]))
        elif bias.shape != (weight.shape[0],):
            raise g.fail(f"bias shape {bias.shape} != ({weight.shape[0]},)")
        return Conv2d(weight, bias, stride=stride, padding=padding, dilation=dilation,
                      groups=groups)

    def _flatten(self, g: _Group, in_shape: tuple[int, ...]) -> Flatten:
        rank = len(in_shape)
        start = g.integer("start_dim") if g.has("start_dim") else None
        end = g.integer("end_dim") if g.has("end_dim") else None
        if start is None or end is None:
            g.warn("start_dim/end_dim missing; flattening every sample axis")
            start, end = 0, -1
        batch = False
        if g.has("input_type"):
            declared = tuple(int(v) for v in g.integers("input_type").reshape(-1))
            if declared == tuple(in_shape):
                pass
            elif len(declared) == rank + 1 and declared[0] <= 1 and declared[1:] == in_shape:
                g.warn(f"input_type {declared} has a batch axis; start_dim/end_dim read "
                       "relative to it")
                batch = True
            else:
                raise g.fail(f"input_type {declared} does not match the input {in_shape}")
        else:
            g.warn(f"input_type missing; inferred {in_shape} from the graph")
        if batch:
            start, end = start - 1 if start > 0 else start, end - 1 if end > 0 else end
        norm_end = end + rank if end < 0 else end
        if start == 1 and norm_end == rank - 1 and rank > 1 and not batch:
            g.warn(f"start_dim=1 over the {rank}-D sample {in_shape} read as PyTorch's "
                   "batch-inclusive index (flatten every sample axis)")
            start = 0
        norm_start = start + rank if start < 0 else start
        if rank == 1 and norm_start in (0, 1) and norm_end in (0, -1 + rank):
            return Flatten()
        if norm_start != 0 or norm_end != rank - 1:
            raise UnsupportedError(
                f"{self.path}: node {g.name!r}: Flatten of axes {start}..{end} of {in_shape} "
                "keeps some axes; the IR only flattens a whole sample"
            )
        return Flatten()

    def _scale(self, g: _Group, in_shape: tuple[int, ...]) -> BatchNorm:
        scale = g.numbers("scale")
        channels = in_shape[0]
        if scale.ndim == 0 or scale.size == 1:
            g.warn(f"scalar scale broadcast over {in_shape}")
            per_channel = np.full(channels, float(scale.reshape(-1)[0]))
        elif scale.shape == tuple(in_shape):
            flat = scale.reshape(channels, -1)
            if not np.all(flat == flat[:, :1]):
                raise UnsupportedError(
                    f"{self.path}: node {g.name!r}: Scale varies within a channel of {in_shape}; "
                    "the IR scales per channel only"
                )
            per_channel = flat[:, 0]
        elif scale.shape == (channels,):
            per_channel = scale
        else:
            raise g.fail(f"scale shape {scale.shape} does not match the input {in_shape}")
        return BatchNorm(scale=per_channel, shift=np.zeros(channels))

    def _param(self, g: _Group, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
        if key in _OPTIONAL and not g.has(key):
            return None
        value = g.numbers(key)
        if key in _POSITIVE and np.any(value <= 0):
            raise g.fail(f"{key} must be positive (a time constant in seconds)")
        if value.ndim == 0 or value.shape == tuple(shape):
            return value
        if value.size == 1:
            g.warn(f"{key} of shape {value.shape} broadcast to the neuron shape {shape}")
            return value.reshape(())
        if value.size == math.prod(shape):
            g.warn(f"{key} of shape {value.shape} reshaped to the neuron shape {shape}")
            return value.reshape(shape)
        raise g.fail(f"{key} shape {value.shape} does not match the neuron shape {shape}")

    def _neuron(self, raw: _Raw, shape: tuple[int, ...]) -> Node:
        g = raw.g
        p = {key: self._param(g, key, shape) for key in _NEURON_FIELDS[raw.kind]}
        if raw.kind == "I":
            return I(**p)
        reset = self._reset(raw)
        if raw.kind == "LIF":
            return LIF(**p, reset=reset)
        if raw.kind == "IF":
            return IF(**p, reset=reset)
        return CubaLIF(**p, reset=reset)

    def _rec_fields(self, raw: _Raw, shape: tuple[int, ...]) -> dict[str, Any]:
        """``weight_rec``/``bias_rec`` of a neuron of ``shape`` from its feedback synapse."""
        g = raw.g
        n = math.prod(shape)
        weight = g.numbers("weight")
        if weight.shape != (n, n):
            raise g.fail(f"recurrent weight shape {weight.shape} != ({n}, {n}) for the "
                         f"{n} neurons it feeds back to")
        bias = None
        if raw.kind == "Affine":
            bias = g.numbers("bias")
            if bias.ndim == 0 or (bias.shape == (1,) and n != 1):
                g.warn(f"scalar recurrent bias broadcast to the {n} neurons")
                bias = np.full(n, float(bias.reshape(-1)[0]))
            if bias.shape != (n,):
                raise g.fail(f"recurrent bias shape {bias.shape} != ({n},)")
        return {"weight_rec": weight, "bias_rec": bias}


def read_nir(path: str | Path, *, dt: float | None = None,
             reset: str | Mapping[str, str] | None = None) -> Graph:
    """Read a NIR file into a validated float-stage IR graph.

    Args:
        path: the ``.nir`` (HDF5) file.
        dt: simulation time step in seconds, stored as ``graph.metadata["dt"]``. NIR files
            hold none; without it a ``dt`` recorded by :func:`write_nir` is used, else 1.0 with
            a :class:`NIRWarning`.
        reset: ``"zero"``/``"subtract"`` for every spiking neuron, or ``{node name: mode}``
            (file or IR names). Default: the node's ``reset`` metadata, else NIR's reset to
            ``v_reset``.

    Returns:
        the graph; ``metadata`` holds ``dt``, ``source`` and ``nir`` (version, IR → file
        names, outputs and, for recurrent neurons, the file names of their feedback synapses).
        Recurrent weights are the neurons' ``weight_rec``/``bias_rec``.

    Raises:
        BadInputFileError: missing, non-HDF5, truncated or malformed files, unknown node types,
            bad arrays (dtype, shape, NaN/inf), inconsistent shapes (one line, naming the node).
        UnsupportedError: NIR nodes without an IR counterpart (listing all of them), cycles
            other than a neuron's own feedback synapse.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputFileError(path, "no such file")
    try:
        root = h5py.File(path, "r")
    except OSError as err:
        raise BadInputFileError(path, f"not a readable HDF5 file ({err})") from None
    try:
        with root:
            reader = _Reader(path, root, dt, reset)
            graph = reader.graph()
    except NeurodeployError:
        raise
    except (OSError, KeyError, RuntimeError) as err:  # corrupt data inside a valid header
        raise BadInputFileError(path, f"corrupt HDF5 file ({err})") from None
    for note in reader.notes:
        warnings.warn(note, NIRWarning, stacklevel=2)
    return graph


# ============================================================================================
# Writing
# ============================================================================================


def _writer_problems(graph: Graph) -> list[str]:
    problems = []
    for name, node in graph.nodes.items():
        if type(node) not in WRITE_TYPES:
            problems.append(f"{name} ({node.type_name})")
        elif getattr(node, "order", "integrate_fire") != "integrate_fire":
            problems.append(f"{name} ({node.type_name} with order={node.order!r})")
        elif getattr(node, "weight_rec", None) is not None and len(graph.shapes[name]) != 1:
            # NIR's Linear/Affine take vectors and NIR 1.0 has no unflatten to close the cycle
            problems.append(f"{name} ({node.type_name} with weight_rec over a "
                            f"{graph.shapes[name]} feature map)")
    return problems


def _full(value: np.ndarray | None, shape: tuple[int, ...], default: float) -> np.ndarray:
    arr = np.full(shape, default) if value is None else np.broadcast_to(value, shape)
    return np.array(arr, dtype=np.float64)


def _nir_names(graph: Graph) -> dict[str, str]:
    known = graph.metadata.get("nir", {}).get("names", {}) if isinstance(
        graph.metadata.get("nir"), Mapping) else {}
    names: dict[str, str] = {}
    used: set[str] = set()
    for name in graph.nodes:
        want = known.get(name, name) if isinstance(known, Mapping) else name
        if not isinstance(want, str) or not want or want in used or "/" in want:
            want = name
        new, k = want, 2
        while new in used:
            new, k = f"{want}_{k}", k + 1
        names[name] = new
        used.add(new)
    return names


class _Writer:
    def __init__(self, graph: Graph) -> None:
        import nir

        self.nir = nir
        self.graph = graph
        self.shapes = graph.shapes
        self.names = _nir_names(graph)
        self.used = set(self.names.values())
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []

    def fresh(self, base: str) -> str:
        new, k = base, 2
        while new in self.used:
            new, k = f"{base}_{k}", k + 1
        self.used.add(new)
        return new

    def sources(self, name: str) -> list[str]:
        """NIR nodes whose outputs carry ``name``'s value (an Add is its inputs' fan-in)."""
        if isinstance(self.graph.nodes[name], Add):
            return [s for p in self.graph.predecessors(name) for s in self.sources(p)]
        return [self.names[name]]

    def connect(self, srcs: list[str], dst: str) -> None:
        for s in srcs:
            if (s, dst) in self.edges:
                raise UnsupportedError(
                    f"{dst}: the same value enters twice through Add nodes; NIR sums distinct "
                    "edges only"
                )
            self.edges.append((s, dst))

    def build(self, dt: float | None) -> Any:
        nir, g = self.nir, self.graph
        for name in g.topo_order:
            node = g.nodes[name]
            if isinstance(node, Add):
                continue
            preds = g.predecessors(name)
            in_shape = tuple(self.shapes[preds[0]]) if preds else ()
            srcs = [s for p in preds for s in self.sources(p)]
            if isinstance(node, (Affine, Linear)) and len(in_shape) != 1:
                flat = self.fresh(f"{self.names[name]}_flatten")
                self.nodes[flat] = nir.Flatten(input_type={"input": np.array(in_shape)},
                                               start_dim=0, end_dim=-1)
                self.connect(srcs, flat)
                srcs = [flat]
            self.nodes[self.names[name]] = self.convert(name, node, in_shape)
            self.connect(srcs, self.names[name])
        self._recurrent()
        self._outputs()
        metadata = {} if dt is None else {"dt": float(dt)}
        return nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=metadata,
                            type_check=False)

    def _recurrent(self) -> None:
        """Each neuron's ``weight_rec``/``bias_rec`` as a ``neuron → Linear/Affine → neuron``
        cycle (named as in the file it was read from, when known)."""
        meta = self.graph.metadata.get("nir")
        known = meta.get("recurrent_names", {}) if isinstance(meta, Mapping) else {}
        if not isinstance(known, Mapping):
            known = {}
        for neuron, node in self.graph.nodes.items():
            weight = getattr(node, "weight_rec", None)
            if weight is None:
                continue
            want = known.get(neuron)
            if not isinstance(want, str) or not want or "/" in want:
                want = f"{self.names[neuron]}_rec"
            name = self.fresh(want)
            bias = node.bias_rec
            if bias is None:
                self.nodes[name] = self.nir.Linear(weight=np.array(weight))
            else:
                self.nodes[name] = self.nir.Affine(weight=np.array(weight), bias=np.array(bias))
            self.edges.append((self.names[neuron], name))
            self.edges.append((name, self.names[neuron]))

    def _outputs(self) -> None:
        meta = self.graph.metadata.get("nir")
        known = meta.get("outputs", {}) if isinstance(meta, Mapping) else {}
        by_source = {v: k for k, v in known.items()} if isinstance(known, Mapping) else {}
        outs = self.graph.outputs
        for i, name in enumerate(outs):
            base = by_source.get(name) or ("output" if len(outs) == 1 else f"output{i}")
            out = self.fresh(base if base not in self.used else f"{base}_out")
            self.nodes[out] = self.nir.Output(
                output_type={"output": np.array(self.shapes[name])})
            self.connect(self.sources(name), out)

    def convert(self, name: str, node: Node, in_shape: tuple[int, ...]) -> Any:
        nir = self.nir
        shape = tuple(self.shapes[name])
        meta = {"reset": "subtract"} if getattr(node, "reset", "zero") == "subtract" else {}
        if isinstance(node, Input):
            return nir.Input(input_type={"input": np.array(node.shape)})
        if isinstance(node, Affine):
            return nir.Affine(weight=np.array(node.weight), bias=np.array(node.bias))
        if isinstance(node, Linear):
            return nir.Linear(weight=np.array(node.weight))
        if isinstance(node, Conv2d):
            bias = np.zeros(node.weight.shape[0]) if node.bias is None else np.array(node.bias)
            return nir.Conv2d(input_shape=np.array(in_shape[1:]), weight=np.array(node.weight),
                              stride=np.array(node.stride), padding=np.array(node.padding),
                              dilation=np.array(node.dilation), groups=node.groups, bias=bias)
        if isinstance(node, (SumPool2d, AvgPool2d)):
            cls = nir.SumPool2d if isinstance(node, SumPool2d) else nir.AvgPool2d
            return cls(kernel_size=np.array(node.kernel_size), stride=np.array(node.stride),
                       padding=np.array(node.padding))
        if isinstance(node, Flatten):
            return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
        if isinstance(node, BatchNorm):
            return self._batchnorm(node, in_shape)
        if isinstance(node, LIF):
            return nir.LIF(tau=_full(node.tau, shape, 0), r=_full(node.r, shape, 0),
                           v_leak=_full(node.v_leak, shape, 0),
                           v_threshold=_full(node.v_threshold, shape, 0),
                           v_reset=_full(node.v_reset, shape, 0.0), metadata=meta)
        if isinstance(node, IF):
            return nir.IF(r=_full(node.r, shape, 0), v_threshold=_full(node.v_threshold, shape, 0),
                          v_reset=_full(node.v_reset, shape, 0.0), metadata=meta)
        if isinstance(node, CubaLIF):
            return nir.CubaLIF(
                tau_syn=_full(node.tau_syn, shape, 0), tau_mem=_full(node.tau_mem, shape, 0),
                r=_full(node.r, shape, 0), v_leak=_full(node.v_leak, shape, 0),
                v_threshold=_full(node.v_threshold, shape, 0),
                v_reset=_full(node.v_reset, shape, 0.0), w_in=_full(node.w_in, shape, 1.0),
                metadata=meta)
        if isinstance(node, I):
            return nir.I(r=_full(node.r, shape, 0))
        raise UnsupportedError(f"{name}: NIR has no node for {node.type_name}")  # pragma: no cover

    def _batchnorm(self, node: BatchNorm, in_shape: tuple[int, ...]) -> Any:
        nir = self.nir
        scale, shift = np.array(node.scale), np.array(node.shift)
        channels = scale.shape[0]
        if not np.any(shift):
            full = scale.reshape(channels, *([1] * (len(in_shape) - 1)))
            return nir.Scale(scale=np.array(np.broadcast_to(full, in_shape)))
        if len(in_shape) == 1:
            return nir.Affine(weight=np.diag(scale), bias=shift)
        # a diagonal 1x1 convolution (not a depthwise one: nir 1.0's type inference ignores
        # groups, so grouped convolutions fail nir.read's type check)
        weight = np.diag(scale).reshape(channels, channels, 1, 1)
        return nir.Conv2d(input_shape=np.array(in_shape[1:]), weight=weight,
                          stride=np.array((1, 1)), padding=np.array((0, 0)),
                          dilation=np.array((1, 1)), groups=1, bias=shift)


def write_nir(graph: Graph, path: str | Path, *, dt: float | None = None) -> None:
    """Write a float-stage IR graph as a NIR file (readable by ``nir.read`` and other tools).

    Args:
        graph: a float-stage graph of :data:`WRITE_TYPES` nodes (a neuron's ``weight_rec``/
            ``bias_rec`` is written as its feedback ``Linear``/``Affine`` cycle).
        path: the ``.nir`` file to write (replaced atomically; nothing is left on failure).
        dt: time step in seconds to record in the file's graph metadata (read back by
            :func:`read_nir`; other NIR tools ignore it). Defaults to ``graph.metadata["dt"]``;
            a different value than the graph's raises, since the graph's parameters were made
            for its own step.

    Raises:
        UnsupportedError: listing every node NIR cannot express (fixed-point nodes, ``ReLU``,
            ``BNTT``, ``Concat``, ``order="fire_integrate"`` neurons, recurrent neurons over a
            ``(C, H, W)`` feature map, ...).
        InvalidIRError: for an invalid graph.
    """
    path = Path(path)
    graph.validate()
    problems = _writer_problems(graph)
    if problems:
        raise UnsupportedError(
            f"NIR cannot express {', '.join(problems)}; it can write "
            + ", ".join(t.__name__ for t in WRITE_TYPES)
            + " (LIF/IF with order='integrate_fire'; weight_rec on vector-shaped neurons)"
        )
    graph_dt = graph.metadata.get("dt")
    if dt is None:
        dt = graph_dt
    elif graph_dt is not None and not math.isclose(float(dt), float(graph_dt), rel_tol=1e-12):
        raise NeurodeployError(
            f"the graph was made for dt={graph_dt:g}, not dt={dt:g}; pass the graph's own dt "
            "(its time constants are tied to it) or none"
        )
    if dt is not None and (not math.isfinite(float(dt)) or float(dt) <= 0):
        raise NeurodeployError(f"dt={dt!r} must be a positive number of seconds")
    nir_graph = _Writer(graph).build(dt)
    import nir

    from ..outdir import write_file_atomic

    write_file_atomic(path, lambda tmp: nir.write(str(tmp), nir_graph))
