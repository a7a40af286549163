"""Export IR graphs to ONNX and import ANNs (and neurodeploy's own exports) from ONNX.

**Export** (:func:`export_onnx`, :func:`to_onnx`). One ONNX node per IR node, named as the IR
node; its output tensor has the same name, and the graph input is named after the IR ``Input``.
Every tensor has a batch axis in front (``"N"`` or a fixed size). Standard ops:

=============  ===================================================================================
IR node        ONNX (default domain)
=============  ===================================================================================
``Affine``     ``Gemm(x, W, b, transB=1)`` with initializers ``<node>.weight`` (out, in) and
               ``<node>.bias``; fed a (C, H, W) tensor it is preceded by an auxiliary
               ``Flatten`` named ``<node>/flatten`` (the IR flattens implicitly, Gemm does not)
``Linear``     ``Gemm(x, W, transB=1)`` without bias, same naming
``Conv2d``     ``Conv`` (``<node>.weight``, optional ``<node>.bias``), symmetric ``pads``
``AvgPool2d``  ``AveragePool`` with ``count_include_pad=1`` (padding counts as zeros)
``SumPool2d``  a depthwise ``Conv`` with a ones kernel ``<node>.ones`` (C, 1, kh, kw),
               ``group=C``, no bias: an exact window sum (``AveragePool`` × k² would round)
``Flatten``    ``Flatten(axis=1)``
``Add``        ``Add`` for two inputs, ``Sum`` for more
``Concat``     ``Concat(axis=axis+1)`` (the batch axis comes first)
``ReLU``       ``Relu``
``BatchNorm``  ``BatchNormalization`` with ``scale``/``B`` = the IR's scale/shift, ``mean`` 0,
               ``var`` 1, ``epsilon`` 0 (initializers ``<node>.scale|.shift|.mean|.var``)
=============  ===================================================================================

Neurons and fixed-point nodes go to the custom domain ``ai.neurodeploy`` (version 1), whose
opset import the model declares only when it uses it (an ANN exports as plain ONNX that
onnxruntime runs). Each custom node describes **one time step** of its IR node (its
``doc_string`` gives the update). Input 0 is the data tensor; then come the node's array
parameters as initializers named ``<node>.<field>``, in the order below (an absent optional
array is an empty input name). Every other field is an attribute of the same name (ints, strings,
int lists):

=================  ===================================================  =========================
op                 array inputs after ``x``                             attributes
=================  ===================================================  =========================
``LIF``            tau, r, v_leak, v_threshold, v_reset (float64)       reset, order
``IF``             r, v_threshold, v_reset (float64)                    reset, order
``CubaLIF``        tau_syn, tau_mem, r, v_leak, v_threshold, w_in,      reset
                   v_reset (float64)
``I``              r (float64)                                          —
``BNTT``           scale, shift (float64, (T, C); step t uses row t)    —
``QDense``         weight, delay, weight_rec (int32)                    weight_exp,
                                                                        num_weight_bits,
                                                                        sign_mode
``QConv2d``        weight (int32)                                       stride, padding,
                                                                        dilation, groups,
                                                                        weight_exp,
                                                                        num_weight_bits,
                                                                        sign_mode
``QSumPool2d``     —                                                    kernel_size, stride,
                                                                        padding, weight,
                                                                        weight_exp
``QCubaLIF``       bias (int64)                                         threshold,
                                                                        current_decay,
                                                                        voltage_decay,
                                                                        bias_exp, reset,
                                                                        refractory,
                                                                        num_message_bits
``QSigmaDelta``    bias (int64)                                         kind, threshold,
                                                                        num_message_bits
``QResonateFire``  bias (int64)                                         kind, threshold,
                                                                        param_names,
                                                                        param_values
``Average``        —                                                    num_outputs
=================  ===================================================  =========================

A missing attribute means the IR field's default. Float-stage tensors are float32 (standard-op
initializers too, so a round trip keeps float32-representable values exactly); fixed-stage
tensors are int32. Graph metadata goes into ``metadata_props``, one JSON value per key (``dt``,
``timesteps``, ...; tuples come back as lists, values JSON cannot hold are skipped with a
warning). Keys starting with ``neurodeploy.`` are the format's own: ``neurodeploy.format``
(``"1"``), ``neurodeploy.stage`` and ``neurodeploy.input.<name>.num_message_bits``.

**Import** (:func:`read_onnx`) reads a single-input, single-output ANN into float IR: Conv,
Gemm, MatMul (+ Add → ``Affine``), Relu, AveragePool, GlobalAveragePool, BatchNormalization,
Flatten, a Reshape that only flattens, Add/Sum (residual), Concat, Identity and Dropout
(skipped), Constant, plus an ``Add``/``Mul`` by a per-channel constant (folded into the
preceding bias or ``BatchNorm``), the shape arithmetic of ``x.view(x.size(0), -1)`` (Shape,
Gather, Unsqueeze, Squeeze, Slice, Cast and Concat on constants, evaluated at import) and every
``ai.neurodeploy`` op above, so exported SNN graphs round-trip. The batch axis of the input
is dropped, whether symbolic or a number. Files are parsed as protobuf (nothing is
unpickled), every initializer is checked (finite, size, dtype, shape) and every problem is a
one-line :class:`~neurodeploy.errors.NeurodeployError`. Nodes that do not contribute to the
output are ignored. Names are kept where they are valid IR names; others are sanitized
(``/conv1/Conv`` → ``conv1_Conv``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper

from .. import __version__
from ..errors import BadInputFileError, InvalidIRError, NeurodeployError, UnsupportedError
from ..ir import (
    MAX_ELEMENTS,
    NODE_TYPES,
    Add,
    Affine,
    AvgPool2d,
    BatchNorm,
    Concat,
    Conv2d,
    Flatten,
    Graph,
    Input,
    Linear,
    Node,
    QResonateFire,
    ReLU,
    SumPool2d,
)

#: The custom operator domain and its version.
DOMAIN = "ai.neurodeploy"
DOMAIN_VERSION = 1
#: Version of this file format (``metadata_props["neurodeploy.format"]``).
FORMAT_VERSION = "1"
#: Marks auxiliary or re-encoded nodes in ``doc_string`` so the reader restores the IR node.
_MARK_FLATTEN = "neurodeploy:implicit-flatten"
_MARK_SUMPOOL = "neurodeploy:SumPool2d"
#: Oldest default-domain opset the exporter writes and the reader accepts.
MIN_EXPORT_OPSET = 13
MIN_READ_OPSET = 7

#: Array parameters of each custom op, in input order after the data input.
CUSTOM_ARRAYS: dict[str, tuple[str, ...]] = {
    "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset", "weight_rec", "bias_rec"),
    "IF": ("r", "v_threshold", "v_reset", "weight_rec", "bias_rec"),
    "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in", "v_reset",
                "weight_rec", "bias_rec"),
    "I": ("r",),
    "BNTT": ("scale", "shift"),
    "QDense": ("weight", "delay", "weight_rec"),
    "QConv2d": ("weight",),
    "QSumPool2d": (),
    "QCubaLIF": ("bias",),
    "QCubaBNTT": ("bias", "gain"),
    "QSigmaDelta": ("bias",),
    "QResonateFire": ("bias",),
    "Average": (),
}
#: One-line per-step semantics of each custom op (the nodes' ``doc_string``, shown by Netron).
CUSTOM_DOCS: dict[str, str] = {
    "LIF": "one Euler step of dt: v += dt/tau*(v_leak - v + r*x); spike where v > v_threshold, "
           "then reset (attribute reset) in the given update order; optional recurrence: "
           "x += weight_rec @ s[t-1] + bias_rec",
    "IF": "one Euler step of dt: v += dt*r*x; spike where v > v_threshold, then reset; "
          "optional recurrence: x += weight_rec @ s[t-1] + bias_rec",
    "CubaLIF": "one Euler step of dt: i += dt/tau_syn*(-i + w_in*x); "
               "v += dt/tau_mem*(v_leak - v + r*i); spike where v > v_threshold, then reset; "
               "optional recurrence: x += weight_rec @ s[t-1] + bias_rec",
    "I": "one Euler step of dt: v += dt*r*x; outputs v (no spikes)",
    "BNTT": "at step t (0-based): y = scale[t]*x + shift[t] per channel",
    "QDense": "Loihi dense synapses: a = shift(W @ s, weight_exp), delivered one step later",
    "QConv2d": "Loihi conv synapses: a = wrap24(shift(conv(s, W), weight_exp)), one step later",
    "QSumPool2d": "Loihi sum pooling: a = shift(weight * window_sum(s), weight_exp)",
    "QCubaLIF": "Loihi CUBA-LIF in fixed point (Lava bit-accurate), one step",
    "QCubaBNTT": "Fixed-point CUBA-LIF with a per-step BNTT gain and bias schedule",
    "QSigmaDelta": "Loihi sigma-delta neuron (not simulated by neurodeploy)",
    "QResonateFire": "Loihi resonate-and-fire neuron (not simulated by neurodeploy)",
    "Average": "mean over num_outputs equal contiguous groups of the flattened input",
}
_CUSTOM_TYPES: dict[str, type[Node]] = {name: NODE_TYPES[name] for name in CUSTOM_ARRAYS}

_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
_INT_TYPES = {TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64,
              TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64,
              TensorProto.BOOL}


# ============================================================================================
# Export
# ============================================================================================


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class _Exporter:
    """Collects ONNX nodes, initializers and value infos for one IR graph."""

    def __init__(self, graph: Graph, batch: str | int) -> None:
        self.graph = graph
        self.shapes = graph.shapes
        self.batch = batch
        self.fixed = graph.stage == "fixed"
        self.elem = TensorProto.INT32 if self.fixed else TensorProto.FLOAT
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.value_info: list[onnx.ValueInfoProto] = []
        self.custom = False

    def info(self, tensor: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(tensor, self.elem, [self.batch, *shape])

    def init(self, name: str, value: np.ndarray, dtype: Any) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def emit(self, name: str, op: str, inputs: list[str], *, domain: str = "",
             doc: str | None = None, **attrs: Any) -> None:
        attrs = {k: v for k, v in attrs.items() if not (isinstance(v, list) and not v)}
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, doc_string=doc,
                                           domain=domain or None, **attrs))

    # ----------------------------------------------------------------- standard ops

    def dense(self, name: str, node: Affine | Linear, src: str) -> None:
        x = src
        if len(self.shapes[src]) != 1:
            x = f"{name}/flatten"
            self.emit(x, "Flatten", [src], doc=_MARK_FLATTEN, axis=1)
            self.value_info.append(self.info(x, (int(np.prod(self.shapes[src])),)))
        inputs = [x, self.init(f"{name}.weight", node.weight, np.float32)]
        if isinstance(node, Affine):
            inputs.append(self.init(f"{name}.bias", node.bias, np.float32))
        self.emit(name, "Gemm", inputs, transB=1)

    def conv(self, name: str, node: Conv2d, src: str) -> None:
        inputs = [src, self.init(f"{name}.weight", node.weight, np.float32)]
        if node.bias is not None:
            inputs.append(self.init(f"{name}.bias", node.bias, np.float32))
        self.emit(name, "Conv", inputs, kernel_shape=list(node.weight.shape[2:]),
                  strides=list(node.stride), pads=list(node.padding) * 2,
                  dilations=list(node.dilation), group=node.groups)

    def sum_pool(self, name: str, node: SumPool2d, src: str) -> None:
        channels = self.shapes[src][0]
        ones = self.init(f"{name}.ones", np.ones((channels, 1, *node.kernel_size)), np.float32)
        self.emit(name, "Conv", [src, ones], doc=_MARK_SUMPOOL,
                  kernel_shape=list(node.kernel_size), strides=list(node.stride),
                  pads=list(node.padding) * 2, dilations=[1, 1], group=channels)

    def avg_pool(self, name: str, node: AvgPool2d, src: str) -> None:
        self.emit(name, "AveragePool", [src], kernel_shape=list(node.kernel_size),
                  strides=list(node.stride), pads=list(node.padding) * 2, count_include_pad=1)

    def batch_norm(self, name: str, node: BatchNorm, src: str) -> None:
        c = node.scale.shape[0]
        inputs = [src, self.init(f"{name}.scale", node.scale, np.float32),
                  self.init(f"{name}.shift", node.shift, np.float32),
                  self.init(f"{name}.mean", np.zeros(c), np.float32),
                  self.init(f"{name}.var", np.ones(c), np.float32)]
        self.emit(name, "BatchNormalization", inputs, epsilon=0.0)

    # ----------------------------------------------------------------- custom ops

    def custom_op(self, name: str, node: Node, srcs: list[str]) -> None:
        op = node.type_name
        arrays = CUSTOM_ARRAYS[op]
        inputs = list(srcs)
        for field in arrays:
            value = getattr(node, field)
            if value is None:
                inputs.append("")
                continue
            value = np.asarray(value)
            dtype = np.float64 if value.dtype.kind == "f" else value.dtype
            inputs.append(self.init(f"{name}.{field}", value, dtype))
        while inputs and inputs[-1] == "":
            inputs.pop()
        attrs: dict[str, Any] = {}
        for field in dataclasses.fields(node):
            if field.name in arrays:
                continue
            value = getattr(node, field.name)
            if isinstance(node, QResonateFire) and field.name == "neuron_params":
                attrs["param_names"] = [k for k, _ in value]
                attrs["param_values"] = [float(v) for _, v in value]
            elif isinstance(value, tuple):
                attrs[field.name] = [int(v) for v in value]
            elif isinstance(value, (bool, np.bool_)):
                attrs[field.name] = int(value)
            elif isinstance(value, (int, np.integer)):
                attrs[field.name] = int(value)
            elif isinstance(value, (float, np.floating)):
                attrs[field.name] = float(value)
            else:
                attrs[field.name] = str(value)
        self.emit(name, op, inputs, domain=DOMAIN, doc=CUSTOM_DOCS[op], **attrs)
        self.custom = True

    # ----------------------------------------------------------------- driver

    def run(self) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
        graph = self.graph
        inputs, outputs = [], []
        for name in graph.topo_order:
            node = graph.nodes[name]
            srcs = graph.predecessors(name)
            if isinstance(node, Input):
                inputs.append(self.info(name, self.shapes[name]))
                continue
            if isinstance(node, (Affine, Linear)):
                self.dense(name, node, srcs[0])
            elif isinstance(node, Conv2d):
                self.conv(name, node, srcs[0])
            elif isinstance(node, SumPool2d):
                self.sum_pool(name, node, srcs[0])
            elif isinstance(node, AvgPool2d):
                self.avg_pool(name, node, srcs[0])
            elif isinstance(node, Flatten):
                self.emit(name, "Flatten", srcs, axis=1)
            elif isinstance(node, Add):
                self.emit(name, "Add" if len(srcs) == 2 else "Sum", srcs)
            elif isinstance(node, Concat):
                self.emit(name, "Concat", srcs, axis=node.axis + 1)
            elif isinstance(node, ReLU):
                self.emit(name, "Relu", srcs)
            elif isinstance(node, BatchNorm):
                self.batch_norm(name, node, srcs[0])
            elif node.type_name in CUSTOM_ARRAYS:
                self.custom_op(name, node, srcs)
            else:
                raise UnsupportedError(
                    f"{name}: no ONNX mapping for IR node type {node.type_name}"
                )
            if graph.successors(name):
                self.value_info.append(self.info(name, self.shapes[name]))
        for name in graph.outputs:
            outputs.append(self.info(name, self.shapes[name]))
        return inputs, outputs


def _metadata_props(graph: Graph) -> dict[str, str]:
    props = {"neurodeploy.format": FORMAT_VERSION, "neurodeploy.stage": graph.stage}
    for name in graph.inputs:
        bits = graph.nodes[name].num_message_bits  # type: ignore[attr-defined]
        if bits:
            props[f"neurodeploy.input.{name}.num_message_bits"] = str(int(bits))
    for key, value in graph.metadata.items():
        key = str(key)
        if key.startswith("neurodeploy."):
            continue
        try:
            props[key] = json.dumps(value, default=_json_default, allow_nan=False)
        except (TypeError, ValueError) as err:
            warnings.warn(f"metadata {key!r} not written to ONNX ({err})", stacklevel=3)
    return props


def to_onnx(graph: Graph, *, opset: int = 17, batch: str | int = "dynamic") -> onnx.ModelProto:
    """The ONNX model of ``graph`` (see the module docstring for the op mapping), checked with
    ``onnx.checker`` (with full shape inference when it holds no custom ops).

    ``opset`` is the default-domain opset (13 to the newest the installed ``onnx`` knows);
    ``batch`` is ``"dynamic"`` (a symbolic batch axis ``N``) or a fixed positive batch size.
    Raises :class:`InvalidIRError` for an invalid graph and :class:`UnsupportedError` for a bad
    ``opset``/``batch`` or a node type without an ONNX mapping.
    """
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or \
            not MIN_EXPORT_OPSET <= opset <= newest:
        raise UnsupportedError(
            f"opset {opset!r} not supported; use {MIN_EXPORT_OPSET} to {newest}"
        )
    if batch == "dynamic":
        batch_dim: str | int = "N"
    elif isinstance(batch, (int, np.integer)) and not isinstance(batch, bool) and batch >= 1:
        batch_dim = int(batch)
    else:
        raise UnsupportedError(f"batch={batch!r} must be 'dynamic' or a positive integer")
    graph.validate()
    exporter = _Exporter(graph, batch_dim)
    inputs, outputs = exporter.run()
    name = str(graph.metadata.get("name", "neurodeploy"))
    onnx_graph = helper.make_graph(exporter.nodes, name, inputs, outputs,
                                   initializer=exporter.inits, value_info=exporter.value_info)
    opsets = [helper.make_opsetid("", opset)]
    if exporter.custom:
        opsets.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
    model = helper.make_model(
        onnx_graph, opset_imports=opsets, producer_name="neurodeploy",
        producer_version=__version__,
        ir_version=helper.find_min_ir_version_for([helper.make_opsetid("", opset)]),
        doc_string=(
            f"neurodeploy {graph.stage}-stage network; nodes of domain {DOMAIN} describe one "
            f"time step of dt={float(graph.metadata.get('dt', 1.0)):g} (see "
            "neurodeploy.frontends.onnx)"
        ),
    )
    helper.set_model_props(model, _metadata_props(graph))
    onnx.checker.check_model(model, full_check=not exporter.custom)
    return model


def export_onnx(graph: Graph, path: str | os.PathLike[str], *, opset: int = 17,
                batch: str | int = "dynamic") -> Path:
    """Write ``graph`` as an ONNX file at ``path`` (atomically: nothing is left there on
    failure) and return the path. See :func:`to_onnx` for ``opset``/``batch`` and the errors.

    An ANN (no neurons, no fixed-point nodes) becomes plain ONNX that onnxruntime runs with the
    IR's outputs (float32); neurons and fixed-point nodes use the custom domain
    ``ai.neurodeploy`` (one time step each), so such a file opens in Netron but does not run.
    Files over protobuf's 2 GB limit are not supported.
    """
    path = Path(path)
    model = to_onnx(graph, opset=opset, batch=batch)
    try:
        data = model.SerializeToString()
    except ValueError as err:  # protobuf's 2 GB limit
        raise UnsupportedError(f"{path}: model too large for one ONNX file ({err})") from None
    from ..outdir import write_file_atomic

    return write_file_atomic(path, lambda tmp: tmp.write_bytes(data))


# ============================================================================================
# Import
# ============================================================================================

_NAME_BAD = re.compile(r"[^A-Za-z0-9_\-]+")
#: Stands for the dynamic batch size in shape arithmetic (``Shape`` → ``Gather`` → ``Concat``
#: → ``Reshape``, as ``x.view(x.size(0), -1)`` exports).
BATCH = np.iinfo(np.int64).min + 1


def _attr_value(attr: onnx.AttributeProto) -> Any:
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
    return value


class _Reader:
    """Converts one loaded ONNX model into an IR graph; every failure names the file."""

    def __init__(self, path: Path, model: onnx.ModelProto) -> None:
        self.path = path
        self.model = model
        self.g = model.graph
        self.consts: dict[str, np.ndarray] = {}
        self.tensors: dict[str, str] = {}  # tensor -> IR node name
        self.nodes: dict[str, Node] = {}
        self.srcs: dict[str, list[str]] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.taken: set[str] = set()
        self.consumers: dict[str, int] = {}
        self.onnx_name: dict[str, str] = {}  # IR name -> ONNX node description

    # ----------------------------------------------------------------- helpers

    def bad(self, problem: str) -> BadInputFileError:
        return BadInputFileError(self.path, problem)

    def unsupported(self, node: onnx.NodeProto, problem: str, hint: str | None = None
                    ) -> UnsupportedError:
        return UnsupportedError(f"{self.path}: node {self.describe(node)}: {problem}", hint=hint)

    @staticmethod
    def describe(node: onnx.NodeProto) -> str:
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        name = node.name or f"(unnamed, output {node.output[0] if node.output else ''!r})"
        return f"{name} ({op})"

    def ir_name(self, raw: str, fallback: str) -> str:
        name = _NAME_BAD.sub("_", raw).strip("_") or fallback
        if not re.match(r"[A-Za-z_]", name):
            name = "n_" + name
        base, k = name, 2
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def array(self, tensor: onnx.TensorProto, what: str) -> np.ndarray:
        """A checked numpy copy of ``tensor`` (finite, size-limited, numeric)."""
        dims = list(tensor.dims)
        if any(d < 0 for d in dims):
            raise self.bad(f"{what} has negative dimensions {dims}")
        if math.prod(dims) > MAX_ELEMENTS:
            raise self.bad(f"{what} of shape {dims} has more than {MAX_ELEMENTS} elements")
        if tensor.data_type not in _FLOAT_TYPES | _INT_TYPES:
            raise self.bad(f"{what} holds {TensorProto.DataType.Name(tensor.data_type)} values,"
                           " expected numbers")
        try:
            value = np.array(numpy_helper.to_array(tensor))
        except (ValueError, TypeError, OSError) as err:
            raise self.bad(f"{what} is corrupt ({err})") from None
        if value.shape != tuple(dims):
            raise self.bad(f"{what} holds {value.size} values for shape {dims}")
        if value.dtype.kind == "f":
            if not np.all(np.isfinite(value)):
                raise self.bad(f"{what} holds NaN or infinite values")
            value = value.astype(np.float64)
        elif value.dtype.kind == "b":
            value = value.astype(np.int64)
        return value

    def add(self, onnx_node: onnx.NodeProto, node: Node, srcs: list[str],
            name: str | None = None) -> str:
        """Add an IR node for ``onnx_node`` (checked now, naming the ONNX node) and bind the
        ONNX node's first output to it."""
        if name is None:
            name = self.ir_name(onnx_node.name, f"{onnx_node.op_type.lower()}_{len(self.nodes)}")
        self.onnx_name[name] = self.describe(onnx_node)
        self.put(name, node, srcs)
        self.tensors[onnx_node.output[0]] = name
        return name

    def put(self, name: str, node: Node, srcs: list[str]) -> None:
        problems = node.check()
        if not problems:
            problems = node.check_inputs([self.shapes[s] for s in srcs])
        if problems:
            raise self.bad(f"node {self.onnx_name[name]}: {'; '.join(problems)}")
        self.nodes[name] = node
        self.srcs[name] = list(srcs)
        self.shapes[name] = node.output_shape([self.shapes[s] for s in srcs])

    def alias(self, onnx_node: onnx.NodeProto, index: int = 0) -> None:
        src = onnx_node.input[index]
        if src in self.consts:
            self.consts[onnx_node.output[0]] = self.consts[src]
        else:
            self.tensors[onnx_node.output[0]] = self.act(onnx_node, index)

    def act(self, node: onnx.NodeProto, index: int) -> str:
        """The IR node computing input ``index`` of ``node`` (an activation, not a constant)."""
        if index >= len(node.input) or not node.input[index]:
            raise self.bad(f"node {self.describe(node)}: input {index} is missing")
        tensor = node.input[index]
        if tensor in self.tensors:
            return self.tensors[tensor]
        if tensor in self.consts:
            raise self.unsupported(node, f"input {index} ({tensor!r}) is a constant; "
                                         "expected a tensor computed from the network input")
        raise self.bad(f"node {self.describe(node)} reads tensor {tensor!r}, which no earlier "
                       "node produces")

    def const(self, node: onnx.NodeProto, index: int, *, optional: bool = False,
              batch_ok: bool = False) -> np.ndarray | None:
        """Input ``index`` of ``node`` as a constant array (``None`` if optional and absent).
        Only shape arithmetic (``batch_ok``) may see the dynamic batch size."""
        if index >= len(node.input) or not node.input[index]:
            if optional:
                return None
            raise self.bad(f"node {self.describe(node)}: input {index} is missing")
        tensor = node.input[index]
        if tensor not in self.consts:
            raise self.unsupported(node, f"input {index} ({tensor!r}) must be an initializer or "
                                         "Constant (weights computed at run time are not "
                                         "supported)")
        value = self.consts[tensor]
        if not batch_ok and value.dtype == np.int64 and np.any(value == BATCH):
            raise self.unsupported(node, f"input {index} ({tensor!r}) depends on the batch size")
        return value

    def attrs(self, node: onnx.NodeProto) -> dict[str, Any]:
        return {a.name: _attr_value(a) for a in node.attribute}

    def in_shape(self, ir: str) -> tuple[int, ...]:
        return self.shapes[ir]

    def only_first_output(self, node: onnx.NodeProto) -> None:
        for extra in node.output[1:]:
            if extra and self.consumers.get(extra):
                raise self.unsupported(node, f"output {extra!r} (training-only) is used")

    # ----------------------------------------------------------------- loading

    def load_initializers(self) -> None:
        if len(self.g.sparse_initializer):
            raise UnsupportedError(f"{self.path}: sparse initializers are not supported")
        for tensor in self.g.initializer:
            if tensor.name in self.consts:
                raise self.bad(f"initializer {tensor.name!r} is defined twice")
            self.consts[tensor.name] = self.array(tensor, f"initializer {tensor.name!r}")

    def load_input(self) -> None:
        inputs = [v for v in self.g.input if v.name not in self.consts]
        if len(inputs) != 1:
            names = ", ".join(v.name for v in inputs) or "none"
            raise self.bad(f"the model has {len(inputs)} inputs ({names}); neurodeploy reads "
                           "networks with exactly one input")
        outputs = list(self.g.output)
        if len(outputs) != 1:
            names = ", ".join(v.name for v in outputs) or "none"
            raise self.bad(f"the model has {len(outputs)} outputs ({names}); neurodeploy reads "
                           "networks with exactly one output")
        value = inputs[0]
        if not value.type.HasField("tensor_type"):
            raise self.bad(f"input {value.name!r} is not a tensor")
        ttype = value.type.tensor_type
        if ttype.elem_type not in _FLOAT_TYPES | _INT_TYPES:
            raise self.bad(f"input {value.name!r} has element type "
                           f"{TensorProto.DataType.Name(ttype.elem_type)}, expected numbers")
        if not ttype.HasField("shape"):
            raise self.bad(f"input {value.name!r} has no shape; export with a fixed sample shape")
        dims = list(ttype.shape.dim)
        if len(dims) not in (2, 4):
            raise UnsupportedError(
                f"{self.path}: input {value.name!r} has rank {len(dims)}; neurodeploy reads "
                "(batch, features) or (batch, C, H, W) inputs"
            )
        shape = []
        for i, dim in enumerate(dims[1:], start=1):
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                label = dim.dim_param or "?"
                raise self.bad(f"input {value.name!r} axis {i} has unknown size {label!r}; "
                               "export with a fixed sample shape (only the batch may vary)")
            shape.append(int(dim.dim_value))
        first = dims[0]
        self.batch = int(first.dim_value) if first.HasField("dim_value") else None
        props = {p.key: p.value for p in self.model.metadata_props}
        bits_key = props.get(f"neurodeploy.input.{value.name}.num_message_bits")
        try:
            bits = int(bits_key) if bits_key is not None else 0
        except ValueError:
            raise self.bad(f"metadata input num_message_bits {bits_key!r} is not an integer") \
                from None
        name = self.ir_name(value.name, "input")
        self.input_name = name
        node = Input(shape=tuple(shape), num_message_bits=bits)
        problems = node.check()
        if problems:
            raise self.bad(f"input {value.name!r}: {'; '.join(problems)}")
        self.nodes[name] = node
        self.srcs[name] = []
        self.shapes[name] = tuple(shape)
        self.tensors[value.name] = name
        self.onnx_name[name] = f"input {value.name!r}"
        self.output_tensor = outputs[0].name

    def live_nodes(self) -> list[onnx.NodeProto]:
        """The nodes the output depends on, in file order."""
        producer: dict[str, int] = {}
        for i, node in enumerate(self.g.node):
            for out in node.output:
                if out:
                    if out in producer:
                        raise self.bad(f"tensor {out!r} is produced by two nodes")
                    producer[out] = i
        live: set[int] = set()
        stack = [self.output_tensor]
        while stack:
            tensor = stack.pop()
            i = producer.get(tensor)
            if i is None or i in live:
                continue
            live.add(i)
            stack.extend(t for t in self.g.node[i].input if t)
        nodes = [n for i, n in enumerate(self.g.node) if i in live]
        for node in nodes:
            for tensor in node.input:
                if tensor:
                    self.consumers[tensor] = self.consumers.get(tensor, 0) + 1
        self.consumers[self.output_tensor] = self.consumers.get(self.output_tensor, 0) + 1
        return nodes

    def check_opsets(self) -> None:
        versions = {o.domain or "": o.version for o in self.model.opset_import}
        default = versions.get("", versions.get("ai.onnx"))
        if default is None:
            raise self.bad("the model declares no default-domain opset")
        if default < MIN_READ_OPSET:
            raise UnsupportedError(
                f"{self.path}: opset {default} is too old; re-export with opset "
                f"{MIN_READ_OPSET} or newer"
            )
        if DOMAIN in versions and versions[DOMAIN] != DOMAIN_VERSION:
            raise UnsupportedError(
                f"{self.path}: custom domain {DOMAIN} version {versions[DOMAIN]} is not "
                f"supported (this neurodeploy reads version {DOMAIN_VERSION})"
            )

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        for prop in self.model.metadata_props:
            if prop.key.startswith("neurodeploy."):
                continue
            try:
                meta[prop.key] = json.loads(prop.value)
            except ValueError:
                meta[prop.key] = prop.value
        dt = meta.get("dt")
        if dt is not None and (isinstance(dt, bool) or not isinstance(dt, (int, float))
                               or not math.isfinite(dt) or dt <= 0):
            raise self.bad(f"metadata dt={dt!r} must be a positive number (the time step)")
        if dt is not None:
            meta["dt"] = float(dt)
        meta["source"] = str(self.path)
        return meta

    # ----------------------------------------------------------------- driver

    def read(self) -> Graph:
        self.check_opsets()
        self.load_initializers()
        self.load_input()
        nodes = self.live_nodes()
        offenders = [n for n in nodes if _handler(n) is None]
        if offenders:
            listed = ", ".join(self.describe(n) for n in offenders)
            hint = None
            if any("MaxPool" in n.op_type for n in offenders):
                hint = ("max pooling has no spiking equivalent: use average pooling "
                        "(nn.AvgPool2d) for SNN conversion and retrain")
            raise UnsupportedError(
                f"{self.path}: unsupported ONNX operators: {listed}; supported: "
                f"{', '.join(sorted(_STANDARD))} and {DOMAIN} {', '.join(CUSTOM_ARRAYS)}",
                hint=hint,
            )
        for node in nodes:
            _handler(node)(self, node)  # type: ignore[misc]
        out = self.output_tensor
        if out not in self.tensors:
            raise UnsupportedError(f"{self.path}: the output {out!r} is a constant")
        out_ir = self.tensors[out]
        edges = [(s, n) for n in self.nodes for s in self.srcs[n]]
        graph = Graph(self.nodes, edges, self.metadata())
        try:
            graph.validate()
        except InvalidIRError as err:
            raise self.bad(err.message) from None
        if graph.outputs != [out_ir]:
            raise self.bad(f"the network's output {out!r} is not its only final node "
                           f"(final nodes: {', '.join(graph.outputs)})")
        return graph


# ----------------------------------------------------------------- op handlers


def _ints(value: Any, what: str, rd: _Reader, node: onnx.NodeProto, n: int) -> list[int]:
    if not isinstance(value, list) or len(value) != n or \
            not all(isinstance(v, int) for v in value):
        raise rd.bad(f"node {rd.describe(node)}: attribute {what} must hold {n} integers, "
                     f"got {value!r}")
    return value


def _spatial(rd: _Reader, node: onnx.NodeProto, attrs: dict[str, Any], kernel: list[int],
             in_hw: tuple[int, int], *, dilations: list[int]) -> tuple[list[int], list[int]]:
    """(strides, symmetric pads per axis) of a 2-D Conv/AveragePool, resolving auto_pad."""
    strides = _ints(attrs.get("strides", [1, 1]), "strides", rd, node, 2)
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = _ints(attrs.get("pads", [0, 0, 0, 0]), "pads", rd, node, 4)
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(in_hw, kernel, strides, dilations):
            out = -(-size // s)
            pads.append(max((out - 1) * s + (k - 1) * d + 1 - size, 0))
        if any(p % 2 for p in pads):
            raise rd.unsupported(node, f"auto_pad={auto} pads asymmetrically here; neurodeploy "
                                       "pads both sides equally",
                                 hint="use explicit symmetric padding")
        pads = [p // 2 for p in pads] * 2
    else:
        raise rd.bad(f"node {rd.describe(node)}: unknown auto_pad {auto!r}")
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise rd.unsupported(
            node, f"asymmetric padding pads={pads} (top, left, bottom, right); neurodeploy "
                  "pads both sides of an axis equally",
            hint="pad symmetrically, or pad the input explicitly before the layer",
        )
    if min(strides) < 1 or min(pads) < 0:
        raise rd.bad(f"node {rd.describe(node)}: strides {strides} must be positive and pads "
                     f"{pads} non-negative")
    return strides, pads[:2]


def _conv(rd: _Reader, node: onnx.NodeProto) -> None:
    src = rd.act(node, 0)
    weight = rd.const(node, 1)
    bias = rd.const(node, 2, optional=True)
    if weight.ndim != 4:
        raise rd.unsupported(node, f"only 2-D convolutions are supported (weight shape "
                                   f"{weight.shape})")
    shape = rd.in_shape(src)
    if len(shape) != 3:
        raise rd.bad(f"node {rd.describe(node)}: needs a (N, C, H, W) input, got {shape}")
    attrs = rd.attrs(node)
    kernel = list(weight.shape[2:])
    if "kernel_shape" in attrs and list(attrs["kernel_shape"]) != kernel:
        raise rd.bad(f"node {rd.describe(node)}: kernel_shape {attrs['kernel_shape']} does not "
                     f"match the weight's {kernel}")
    dilations = _ints(attrs.get("dilations", [1, 1]), "dilations", rd, node, 2)
    strides, pads = _spatial(rd, node, attrs, kernel, shape[1:], dilations=dilations)
    group = attrs.get("group", 1)
    if node.doc_string == _MARK_SUMPOOL and bias is None and group == shape[0] \
            and weight.shape[:2] == (shape[0], 1) and dilations == [1, 1] \
            and np.all(weight == 1):
        rd.add(node, SumPool2d(kernel_size=tuple(kernel), stride=tuple(strides),
                               padding=tuple(pads)), [src])
        return
    if bias is not None and bias.shape != (weight.shape[0],):
        raise rd.bad(f"node {rd.describe(node)}: bias shape {bias.shape} != "
                     f"({weight.shape[0]},)")
    rd.add(node, Conv2d(weight=weight, bias=bias, stride=tuple(strides), padding=tuple(pads),
                        dilation=tuple(dilations), groups=int(group)), [src])


def _gemm(rd: _Reader, node: onnx.NodeProto) -> None:
    src = rd.act(node, 0)
    b = rd.const(node, 1)
    c = rd.const(node, 2, optional=True)
    attrs = rd.attrs(node)
    if attrs.get("transA", 0):
        raise rd.unsupported(node, "transA=1 (the activation must be the left operand, "
                                   "(batch, features))")
    if b.ndim != 2:
        raise rd.bad(f"node {rd.describe(node)}: weight must be 2-D, got shape {b.shape}")
    weight = (b if attrs.get("transB", 0) else b.T) * float(attrs.get("alpha", 1.0))
    if c is None:
        rd.add(node, Linear(weight=weight), [src])
        return
    rd.add(node, Affine(weight=weight, bias=_vector(rd, node, c, weight.shape[0]) *
                        float(attrs.get("beta", 1.0))), [src])


def _vector(rd: _Reader, node: onnx.NodeProto, value: np.ndarray, n: int) -> np.ndarray:
    """``value`` broadcast to ``(n,)`` along the last axis (Gemm's C)."""
    if value.size == 1:
        return np.full(n, float(value.reshape(-1)[0]))
    if value.shape[-1:] == (n,) and value.size == n:
        return value.reshape(n)
    raise rd.bad(f"node {rd.describe(node)}: bias shape {value.shape} does not broadcast to "
                 f"({n},)")


def _matmul(rd: _Reader, node: onnx.NodeProto) -> None:
    src = rd.act(node, 0)
    b = rd.const(node, 1)
    if b.ndim != 2:
        raise rd.unsupported(node, f"MatMul with a weight of shape {b.shape}; expected 2-D")
    if len(rd.in_shape(src)) != 1:
        raise rd.unsupported(node, f"MatMul on a {rd.in_shape(src)} tensor; flatten it first")
    rd.add(node, Linear(weight=b.T), [src])


def _channel_const(rd: _Reader, node: onnx.NodeProto, value: np.ndarray,
                   shape: tuple[int, ...]) -> np.ndarray | None:
    """``value`` as a per-channel vector ``(C,)`` if it broadcasts to ``(1, *shape)`` and is
    constant except along the channel axis; else None."""
    try:
        full = np.broadcast_to(value, (1, *shape))[0]
    except ValueError:
        return None
    if np.broadcast_shapes(value.shape, (1, *shape)) != (1, *shape):
        return None
    per = full.reshape(shape[0], -1)
    if not np.all(per == per[:, :1]):
        return None
    return per[:, 0].copy()


def _arith(rd: _Reader, node: onnx.NodeProto) -> None:
    """Add/Mul: activations summed (Add), or an activation times/plus a per-channel constant."""
    op = node.op_type
    consts = [i for i, t in enumerate(node.input) if t in rd.consts]
    if len(node.input) != 2:
        raise rd.bad(f"node {rd.describe(node)}: needs 2 inputs")
    if not consts:
        if op == "Mul":
            raise rd.unsupported(node, "multiplying two activations")
        a, b = rd.act(node, 0), rd.act(node, 1)
        if rd.in_shape(a) != rd.in_shape(b):
            raise rd.unsupported(node, f"broadcasting add of {rd.in_shape(a)} and "
                                       f"{rd.in_shape(b)}; only equal shapes are supported")
        rd.add(node, Add(), [a, b])
        return
    if len(consts) == 2:
        raise rd.unsupported(node, "arithmetic on two constants (export with constant folding)")
    src = rd.act(node, 1 - consts[0])
    value = rd.consts[node.input[consts[0]]]
    shape = rd.in_shape(src)
    prev = rd.nodes[src]
    sole = rd.consumers.get(node.input[1 - consts[0]], 0) == 1 and src != rd.input_name
    if op == "Add" and sole and isinstance(prev, (Linear, Affine)) and len(shape) == 1:
        try:
            bias = np.broadcast_to(value, (1, shape[0])).reshape(shape[0])
        except ValueError:
            bias = None
        if bias is not None and np.broadcast_shapes(value.shape, (1, shape[0])) == (1, shape[0]):
            old = prev.bias if isinstance(prev, Affine) else 0.0
            rd.put(src, Affine(weight=prev.weight, bias=old + bias), rd.srcs[src])
            rd.tensors[node.output[0]] = src
            return
    per_channel = _channel_const(rd, node, value, shape)
    if per_channel is None:
        raise rd.unsupported(node, f"{op} with a constant of shape {value.shape} that is not "
                                   f"per channel for a {shape} tensor")
    if op == "Add" and sole and isinstance(prev, Conv2d):
        old = prev.bias if prev.bias is not None else 0.0
        rd.put(src, prev.replace(bias=old + per_channel), rd.srcs[src])
        rd.tensors[node.output[0]] = src
        return
    if sole and isinstance(prev, BatchNorm):
        if op == "Add":
            new = BatchNorm(scale=prev.scale, shift=prev.shift + per_channel)
        else:
            new = BatchNorm(scale=prev.scale * per_channel, shift=prev.shift * per_channel)
        rd.put(src, new, rd.srcs[src])
        rd.tensors[node.output[0]] = src
        return
    ones, zeros = np.ones_like(per_channel), np.zeros_like(per_channel)
    bn = BatchNorm(scale=ones, shift=per_channel) if op == "Add" else \
        BatchNorm(scale=per_channel, shift=zeros)
    rd.add(node, bn, [src])


def _sum(rd: _Reader, node: onnx.NodeProto) -> None:
    srcs = [rd.act(node, i) for i in range(len(node.input))]
    if len(srcs) == 1:
        rd.tensors[node.output[0]] = srcs[0]
        return
    if len({rd.in_shape(s) for s in srcs}) != 1:
        raise rd.unsupported(node, "broadcasting sum; only equal shapes are supported")
    rd.add(node, Add(), srcs)


def _relu(rd: _Reader, node: onnx.NodeProto) -> None:
    rd.add(node, ReLU(), [rd.act(node, 0)])


def _average_pool(rd: _Reader, node: onnx.NodeProto) -> None:
    src = rd.act(node, 0)
    shape = rd.in_shape(src)
    if len(shape) != 3:
        raise rd.unsupported(node, f"only 2-D pooling is supported (input {shape})")
    attrs = rd.attrs(node)
    kernel = _ints(attrs.get("kernel_shape"), "kernel_shape", rd, node, 2)
    dilations = _ints(attrs.get("dilations", [1, 1]), "dilations", rd, node, 2)
    if dilations != [1, 1]:
        raise rd.unsupported(node, f"dilated pooling (dilations={dilations})")
    strides, pads = _spatial(rd, node, attrs, kernel, shape[1:], dilations=dilations)
    if any(pads) and not attrs.get("count_include_pad", 0):
        raise rd.unsupported(
            node, "count_include_pad=0 with padding (the IR's AvgPool2d divides by the whole "
                  "window)", hint="export with count_include_pad=True or without padding")
    node_ir = AvgPool2d(kernel_size=tuple(kernel), stride=tuple(strides), padding=tuple(pads))
    if attrs.get("ceil_mode", 0):
        ceil = tuple(-(-(size + 2 * p - k) // s) + 1
                     for size, p, k, s in zip(shape[1:], pads, kernel, strides))
        if min(kernel) >= 1 and ceil != node_ir.output_shape([shape])[1:]:
            raise rd.unsupported(node, "ceil_mode=1 changes the output size here",
                                 hint="use ceil_mode=False or an input size the window divides")
    rd.add(node, node_ir, [src])


def _global_average_pool(rd: _Reader, node: onnx.NodeProto) -> None:
    src = rd.act(node, 0)
    shape = rd.in_shape(src)
    if len(shape) != 3:
        raise rd.unsupported(node, f"only 2-D pooling is supported (input {shape})")
    rd.add(node, AvgPool2d(kernel_size=shape[1:], stride=shape[1:], padding=(0, 0)), [src])


def _batch_norm(rd: _Reader, node: onnx.NodeProto) -> None:
    src = rd.act(node, 0)
    attrs = rd.attrs(node)
    if attrs.get("training_mode", 0):
        raise rd.unsupported(node, "training_mode=1; export the model in eval mode")
    if not attrs.get("spatial", 1):
        raise rd.unsupported(node, "spatial=0 (per-position statistics)")
    rd.only_first_output(node)
    channels = rd.in_shape(src)[0]
    params = []
    for i, what in enumerate(("scale", "B", "mean", "var"), start=1):
        value = rd.const(node, i)
        if value.shape != (channels,):
            raise rd.bad(f"node {rd.describe(node)}: {what} has shape {value.shape}, expected "
                         f"({channels},)")
        params.append(value)
    gamma, beta, mean, var = params
    eps = float(attrs.get("epsilon", 1e-5))
    if not math.isfinite(eps) or np.any(var + eps <= 0):
        raise rd.bad(f"node {rd.describe(node)}: var + epsilon must be positive")
    scale = gamma / np.sqrt(var + eps)
    rd.add(node, BatchNorm(scale=scale, shift=beta - scale * mean), [src])


def _flatten(rd: _Reader, node: onnx.NodeProto) -> None:
    src = rd.act(node, 0)
    shape = rd.in_shape(src)
    axis = rd.attrs(node).get("axis", 1)
    if axis < 0:
        axis += len(shape) + 1
    if axis != 1:
        raise rd.unsupported(node, f"Flatten(axis={axis}) mixes the batch axis with features; "
                                   "only axis=1 is supported")
    if node.doc_string == _MARK_FLATTEN:
        rd.tensors[node.output[0]] = src  # the following dense node flattens implicitly
        return
    rd.add(node, Flatten(), [src])


def _reshape(rd: _Reader, node: onnx.NodeProto) -> None:
    src = rd.act(node, 0)
    target = rd.const(node, 1, batch_ok=True)
    shape = rd.in_shape(src)
    size = int(np.prod(shape))
    allowzero = rd.attrs(node).get("allowzero", 0)
    t = [int(v) for v in np.asarray(target).reshape(-1)]
    if BATCH in t[1:]:
        raise rd.unsupported(node, "moves the batch axis")
    batch_ok = {rd.batch if rd.batch is not None else BATCH, BATCH}
    if not allowzero:
        batch_ok.add(0)
    rest = t[1:]
    if -1 in rest:
        known = int(np.prod([v for v in rest if v != -1])) if len(rest) > 1 else 1
        if rest.count(-1) == 1 and known and size % known == 0:
            rest = [size // known if v == -1 else v for v in rest]
    if t and t[0] == -1 and -1 not in rest and int(np.prod(rest)) == size:
        first_ok = True
    else:
        first_ok = bool(t) and t[0] in batch_ok
    if first_ok and tuple(rest) == shape:
        rd.tensors[node.output[0]] = src
        return
    if not first_ok or rest != [size]:
        shown = ["batch" if v == BATCH else v for v in t]
        raise rd.unsupported(node, f"Reshape to {shown} does more than flatten a {shape} sample "
                                   f"(batch {rd.batch if rd.batch is not None else 'dynamic'})",
                             hint="only Reshape(x, [batch or 0 or -1, -1 or C*H*W]) is read")
    rd.add(node, Flatten(), [src])


def _concat(rd: _Reader, node: onnx.NodeProto) -> None:
    if all(t in rd.consts for t in node.input):  # shape arithmetic
        axis = rd.attrs(node).get("axis", 0)
        parts = [rd.const(node, i, batch_ok=True) for i in range(len(node.input))]
        try:
            rd.consts[node.output[0]] = np.concatenate(parts, axis=axis)
        except (ValueError, TypeError, np.AxisError) as err:
            raise rd.bad(f"node {rd.describe(node)}: {err}") from None
        return
    srcs = [rd.act(node, i) for i in range(len(node.input))]
    rank = len(rd.in_shape(srcs[0])) + 1
    axis = rd.attrs(node).get("axis")
    if not isinstance(axis, int):
        raise rd.bad(f"node {rd.describe(node)}: missing integer attribute axis")
    if axis < 0:
        axis += rank
    if axis == 0:
        raise rd.unsupported(node, "concatenation along the batch axis")
    if not 0 < axis < rank:
        raise rd.bad(f"node {rd.describe(node)}: axis {axis} out of range for rank {rank}")
    if len(srcs) == 1:
        rd.tensors[node.output[0]] = srcs[0]
        return
    rd.add(node, Concat(axis=axis - 1), srcs)


def _identity(rd: _Reader, node: onnx.NodeProto) -> None:
    if node.op_type == "Dropout":
        rd.only_first_output(node)
    rd.alias(node)


def _constant(rd: _Reader, node: onnx.NodeProto) -> None:
    attrs = {a.name: a for a in node.attribute}
    what = f"Constant {rd.describe(node)}"
    if "value" in attrs:
        value = rd.array(attrs["value"].t, what)
    elif "value_float" in attrs:
        value = np.array(attrs["value_float"].f, dtype=np.float64)
    elif "value_floats" in attrs:
        value = np.array(list(attrs["value_floats"].floats), dtype=np.float64)
    elif "value_int" in attrs:
        value = np.array(attrs["value_int"].i, dtype=np.int64)
    elif "value_ints" in attrs:
        value = np.array(list(attrs["value_ints"].ints), dtype=np.int64)
    else:
        raise rd.unsupported(node, f"constant kind {', '.join(attrs) or '(none)'}; numeric "
                                   "tensors only")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise rd.bad(f"{what} holds NaN or infinite values")
    rd.consts[node.output[0]] = value


def _custom(rd: _Reader, node: onnx.NodeProto) -> None:
    cls = _CUSTOM_TYPES[node.op_type]
    arrays = CUSTOM_ARRAYS[node.op_type]
    n_data = 1
    if len(node.input) > n_data + len(arrays):
        raise rd.bad(f"node {rd.describe(node)}: {len(node.input)} inputs, at most "
                     f"{n_data + len(arrays)} expected (x, {', '.join(arrays)})")
    srcs = [rd.act(node, 0)]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for i, field in enumerate(arrays, start=n_data):
        value = rd.const(node, i, optional=True)
        if value is None:
            if fields[field].default is None and "None" not in str(fields[field].type):
                raise rd.bad(f"node {rd.describe(node)}: missing required input {field!r}")
            continue
        integer = node.op_type.startswith("Q")
        if integer:
            if value.dtype.kind == "f" and not np.array_equal(value, np.round(value)):
                raise rd.bad(f"node {rd.describe(node)}: {field} must hold integers")
            limit = 2**31 if field != "bias" else 2**62
            if value.size and np.abs(value).max() >= limit:
                raise rd.bad(f"node {rd.describe(node)}: {field} values too large")
            value = value.astype(np.int64)
        kwargs[field] = value
    for name, value in rd.attrs(node).items():
        if node.op_type == "QResonateFire" and name in ("param_names", "param_values"):
            continue
        if name not in fields or name in arrays:
            raise rd.bad(f"node {rd.describe(node)}: unknown attribute {name!r}")
        default = fields[name].default
        ok = (isinstance(default, tuple) and isinstance(value, list)
              and all(isinstance(v, int) for v in value)) or \
             (isinstance(default, str) and isinstance(value, str)) or \
             (isinstance(default, int) and not isinstance(default, bool)
              and isinstance(value, int))
        if not ok:
            raise rd.bad(f"node {rd.describe(node)}: attribute {name}={value!r} has the wrong "
                         f"type (expected like {default!r})")
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    if node.op_type == "QResonateFire":
        attrs = rd.attrs(node)
        names = attrs.get("param_names", [])
        values = attrs.get("param_values", [])
        if len(names) != len(values) or not all(isinstance(v, float) for v in values):
            raise rd.bad(f"node {rd.describe(node)}: param_names and param_values must be "
                         "equally long lists of strings and floats")
        kwargs["neuron_params"] = tuple(zip(names, values))
    try:
        ir = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise rd.bad(f"node {rd.describe(node)}: {err}") from None
    rd.add(node, ir, srcs)


def _shape_op(rd: _Reader, node: onnx.NodeProto) -> None:
    """Shape arithmetic on constants: Shape, Gather, Unsqueeze, Squeeze, Slice, Cast. The
    dynamic batch size is carried as :data:`BATCH` and may only end up in a Reshape."""
    op, attrs = node.op_type, rd.attrs(node)
    try:
        if op == "Shape":
            src = rd.act(node, 0)
            full = np.array([rd.batch if rd.batch is not None else BATCH, *rd.in_shape(src)],
                            dtype=np.int64)
            rank = len(full)
            start, end = attrs.get("start", 0), attrs.get("end", rank)
            value = full[slice(start, end)]
        elif op == "Gather":
            data = rd.const(node, 0, batch_ok=True)
            indices = rd.const(node, 1)
            value = np.take(data, indices.astype(np.int64), axis=attrs.get("axis", 0))
        elif op in ("Unsqueeze", "Squeeze"):
            data = rd.const(node, 0, batch_ok=True)
            axes = attrs.get("axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                axes = [int(v) for v in rd.const(node, 1).reshape(-1)]
            if op == "Unsqueeze":
                rank = data.ndim + len(axes or [])
                value = np.expand_dims(data, tuple(a % rank for a in axes or []))
            else:
                value = np.squeeze(data, axis=None if axes is None else tuple(axes))
        elif op == "Slice":
            data = rd.const(node, 0, batch_ok=True)
            starts, ends = rd.const(node, 1), rd.const(node, 2)
            axes = rd.const(node, 3, optional=True)
            steps = rd.const(node, 4, optional=True)
            axes = range(len(starts)) if axes is None else [int(a) for a in axes]
            steps = [1] * len(starts) if steps is None else [int(v) for v in steps]
            index = [slice(None)] * data.ndim
            for a, b, e, k in zip(axes, starts, ends, steps):
                index[a] = slice(int(b), int(e), k)
            value = data[tuple(index)]
        else:  # Cast
            data = rd.const(node, 0, batch_ok=True)
            dtype = helper.tensor_dtype_to_np_dtype(attrs["to"])
            if dtype.kind not in "iuf":
                raise rd.unsupported(node, f"cast to {dtype}")
            if np.any(data == BATCH) and dtype != np.int64:
                raise rd.unsupported(node, "casts the batch size")
            value = data.astype(dtype)
    except (ValueError, TypeError, IndexError, KeyError, np.AxisError) as err:
        raise rd.bad(f"node {rd.describe(node)}: {err}") from None
    rd.consts[node.output[0]] = np.asarray(value)


_STANDARD: dict[str, Callable[[_Reader, onnx.NodeProto], None]] = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "Add": _arith, "Mul": _arith,
    "Sum": _sum, "Relu": _relu, "AveragePool": _average_pool,
    "GlobalAveragePool": _global_average_pool, "BatchNormalization": _batch_norm,
    "Flatten": _flatten, "Reshape": _reshape, "Concat": _concat, "Identity": _identity,
    "Dropout": _identity, "Constant": _constant, "Shape": _shape_op, "Gather": _shape_op,
    "Unsqueeze": _shape_op, "Squeeze": _shape_op, "Slice": _shape_op, "Cast": _shape_op,
}


def _handler(node: onnx.NodeProto) -> Callable[[_Reader, onnx.NodeProto], None] | None:
    if node.domain in ("", "ai.onnx"):
        return _STANDARD.get(node.op_type)
    if node.domain == DOMAIN and node.op_type in CUSTOM_ARRAYS:
        return _custom
    return None


def _check_external(path: Path, model: onnx.ModelProto) -> None:
    """Every external-data file must be a relative path inside the model's folder, present."""
    base = path.absolute().parent
    for tensor in model.graph.initializer:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        where = {e.key: e.value for e in tensor.external_data}
        location = where.get("location", "")
        target = (base / location).resolve()
        if not location or Path(location).is_absolute() or \
                not target.is_relative_to(base.resolve()):
            raise BadInputFileError(
                path, f"initializer {tensor.name!r}: external data location {location!r} must "
                      "be a file beside the model"
            )
        if not target.is_file():
            raise BadInputFileError(
                path, f"initializer {tensor.name!r}: external data file {location!r} is "
                      "missing (copy it next to the model)"
            )


def _load(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise BadInputFileError(path, "no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as err:
        raise BadInputFileError(path, f"not a readable ONNX model ({err})") from None
    if not model.HasField("graph") or not (len(model.graph.node) or len(model.graph.input)):
        raise BadInputFileError(path, "not an ONNX model (it holds no graph)")
    _check_external(path, model)
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError) as err:
        raise BadInputFileError(path, f"cannot read external data ({err})") from None
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInputFileError(path, f"not a valid ONNX model ({first})") from None
    return model


def read_onnx(path: str | os.PathLike[str]) -> Graph:
    """Read the ONNX model at ``path`` into a validated IR graph.

    An ANN (standard ops, see the module docstring) gives a float-stage graph; a file written
    by :func:`export_onnx` gives back the exported graph (float32 rounding aside). The input's
    batch axis (symbolic or fixed) is dropped: an ``(N, C, H, W)`` input becomes
    ``Input((C, H, W))``. ``graph.metadata`` holds the file's ``metadata_props`` (JSON values
    decoded) and ``source`` (the path).

    Raises :class:`BadInputFileError` for a missing, corrupt or malformed file (several inputs
    or outputs, missing external data, NaN or mis-shaped initializers) and
    :class:`UnsupportedError` for valid ONNX neurodeploy cannot represent: unsupported
    operators (all listed at once, with the supported ones), asymmetric padding, and the like.
    """
    path = Path(path)
    model = _load(path)
    try:
        return _Reader(path, model).read()
    except NeurodeployError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as err:  # malformed protobuf content
        raise BadInputFileError(path, f"malformed ONNX model ({type(err).__name__}: {err})") \
            from None
