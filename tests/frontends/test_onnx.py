"""ONNX export and import: torch-exported ANNs read into IR and run by the float simulator,
IR ANNs run by onnxruntime, SNN and fixed-point graphs round-tripped through the custom
domain, and one-line errors for bad or unsupported files."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from neurodeploy.backends.floatsim import forward
from neurodeploy.errors import BadInputFileError, InvalidIRError, UnsupportedError
from neurodeploy.frontends.onnx import DOMAIN, export_onnx, read_onnx, to_onnx
from neurodeploy.ir import (
    BNTT, IF, LIF, NODE_TYPES, Add, Affine, Average, AvgPool2d, BatchNorm, Concat, Conv2d,
    CubaLIF, Flatten, Graph, I, Input, Linear, QConv2d, QCubaBNTT, QCubaLIF, QDense, QResonateFire,
    QSigmaDelta, QSumPool2d, ReLU, SumPool2d,
)

ort = pytest.importorskip("onnxruntime")
RNG = np.random.default_rng(7)


def f32(*shape: int, scale: float = 0.5, offset: float = 0.0) -> np.ndarray:
    """Random float32-representable values as float64 (so float32 files round-trip exactly)."""
    return (RNG.standard_normal(shape) * scale + offset).astype(np.float32).astype(np.float64)


def ort_run(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]


def sim(graph: Graph, x: np.ndarray) -> np.ndarray:
    return forward(graph, x, steps=1).numpy()


def assert_same_graph(a: Graph, b: Graph) -> None:
    assert list(a.nodes) == list(b.nodes)
    assert sorted(a.edges) == sorted(b.edges)
    for name in a.nodes:
        assert a.predecessors(name) == b.predecessors(name), name
        assert same(a.nodes[name], b.nodes[name]), name


def same(a, b) -> bool:
    return a.same_as(b)


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


# ------------------------------------------------------------------ torch → ONNX → IR


class TorchNet(nn.Module):
    """Conv(bias) → BN → ReLU → AvgPool → Conv → ReLU (+ residual or concat) → Flatten →
    Linear. Variant ``"view"`` flattens with ``x.view(x.size(0), -1)``, which a dynamic
    batch exports as Shape → Gather → Unsqueeze → Concat → Reshape."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        self.variant = variant
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(6, eps=1e-3)
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, stride=1)
        self.flatten = nn.Flatten()
        features = 6 * 4 * 4 * (2 if variant == "concat" else 1)
        self.fc = nn.Linear(features, 5)
        with torch.no_grad():  # non-trivial statistics, so BN is not an identity
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.05, 0.5)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.3, 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.bn(self.conv1(x))))
        y = torch.relu(self.conv2(h))
        if self.variant == "residual":
            y = y + h
        elif self.variant == "concat":
            y = torch.cat([y, h], dim=1)
        if self.variant == "view":
            return self.fc(y.view(y.size(0), -1))
        return self.fc(self.flatten(y))


def torch_export(model: nn.Module, x: torch.Tensor, path: Path, *, dynamic: bool = True,
                 training: torch.onnx.TrainingMode = torch.onnx.TrainingMode.EVAL) -> Path:
    kwargs = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    if dynamic:
        kwargs["dynamic_axes"] = {"x": {0: "batch"}, "y": {0: "batch"}}
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"],
                      opset_version=17, training=training, **kwargs)
    return path


@pytest.mark.filterwarnings("ignore:It is recommended that constant folding")
@pytest.mark.parametrize("variant", ["plain", "residual", "concat", "view"])
@pytest.mark.parametrize("keep_bn", [False, True], ids=["bn-fused", "bn-kept"])
def test_torch_ann_reads_and_matches_torch(tmp_path: Path, variant: str, keep_bn: bool) -> None:
    torch.manual_seed(0)
    model = TorchNet(variant).eval()
    x = torch.randn(4, 3, 8, 8)
    # PRESERVE keeps BatchNormalization in the file; EVAL lets the exporter fold it into conv1.
    mode = torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL
    path = torch_export(model, x[:1], tmp_path / "net.onnx", training=mode)
    graph = read_onnx(path)
    types = [n.type_name for n in graph.nodes.values()]
    assert graph.nodes[graph.inputs[0]].shape == (3, 8, 8)
    assert ("BatchNorm" in types) == keep_bn
    assert types.count("Conv2d") == 2 and "AvgPool2d" in types and "Affine" in types
    assert ("Add" in types) == (variant == "residual")
    assert ("Concat" in types) == (variant == "concat")
    assert types.count("Flatten") == 1
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(sim(graph, x.numpy()), want, atol=1e-5, rtol=0)


def test_torch_fixed_batch_of_one_is_accepted(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = TorchNet("plain").eval()
    x = torch.randn(1, 3, 8, 8)
    graph = read_onnx(torch_export(model, x, tmp_path / "b1.onnx", dynamic=False))
    assert graph.nodes[graph.inputs[0]].shape == (3, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(sim(graph, x.numpy()), model(x).numpy(), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ IR ANN → ONNX


def conv_ann() -> Graph:
    """A DAG with every ANN node type: residual Add, Concat, both poolings, BN, Flatten."""
    nodes = {
        "x": Input((2, 6, 6)),
        "conv1": Conv2d(weight=f32(4, 2, 3, 3), bias=f32(4), padding=1),
        "bn1": BatchNorm(scale=f32(4, offset=1.0), shift=f32(4)),
        "relu1": ReLU(),
        "pool1": AvgPool2d(kernel_size=2, stride=2),
        "conv2": Conv2d(weight=f32(4, 2, 3, 3), padding=1, groups=2),
        "relu2": ReLU(),
        "res": Add(),
        "cat": Concat(axis=0),
        "spool": SumPool2d(kernel_size=2, stride=1),
        "flat": Flatten(),
        "fc1": Affine(weight=f32(7, 32), bias=f32(7)),
        "relu3": ReLU(),
        "fc2": Linear(weight=f32(3, 7)),
    }
    edges = [("x", "conv1"), ("conv1", "bn1"), ("bn1", "relu1"), ("relu1", "pool1"),
             ("pool1", "conv2"), ("conv2", "relu2"), ("relu2", "res"), ("pool1", "res"),
             ("res", "cat"), ("pool1", "cat"), ("cat", "spool"), ("spool", "flat"),
             ("flat", "fc1"), ("fc1", "relu3"), ("relu3", "fc2")]
    return Graph(nodes, edges, {"name": "conv_ann"})


def dense_ann() -> Graph:
    """Affine straight on a (C, H, W) map (implicit flatten), a three-way Add (ONNX Sum),
    BatchNorm on features, strided padded conv with dilation, padded average pooling."""
    nodes = {
        "img": Input((1, 7, 7)),
        "conv": Conv2d(weight=f32(3, 1, 3, 3), bias=f32(3), stride=2, padding=2, dilation=2),
        "apool": AvgPool2d(kernel_size=3, stride=1, padding=1),
        "fa": Affine(weight=f32(6, 48), bias=f32(6)),
        "fb": Linear(weight=f32(6, 48)),
        "fc": Affine(weight=f32(6, 48), bias=f32(6)),
        "sum3": Add(),
        "bn": BatchNorm(scale=f32(6), shift=f32(6)),
        "out": ReLU(),
    }
    edges = [("img", "conv"), ("conv", "apool"), ("apool", "fa"), ("apool", "fb"),
             ("apool", "fc"), ("fa", "sum3"), ("fb", "sum3"), ("fc", "sum3"), ("sum3", "bn"),
             ("bn", "out")]
    return Graph(nodes, edges)


@pytest.mark.parametrize("build", [conv_ann, dense_ann])
def test_ir_ann_runs_in_onnxruntime_and_round_trips(tmp_path: Path, build) -> None:
    graph = build()
    path = export_onnx(graph, tmp_path / "ann.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain for o in model.opset_import} == {""}  # plain ONNX
    assert all(n.domain == "" for n in model.graph.node)
    assert {n.name for n in model.graph.node} >= set(graph.nodes) - set(graph.inputs)
    assert [i.name for i in model.graph.input] == graph.inputs
    x = RNG.standard_normal((5, *graph.nodes[graph.inputs[0]].shape)).astype(np.float32)
    want = sim(graph, x)
    got = ort_run(model, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    back = read_onnx(path)
    assert_same_graph(graph, back)
    for name, node in graph.nodes.items():  # allclose as well, in case same_as ever loosens
        if isinstance(node, BatchNorm):
            np.testing.assert_allclose(back.nodes[name].scale, node.scale, rtol=1e-7)
            np.testing.assert_allclose(back.nodes[name].shift, node.shift, rtol=1e-7)


def test_hand_worked_ann_numbers() -> None:
    # [[1, 2], [3, 4]] @ [2, 1] + [0.5, -1] = [4.5, 9]; relu keeps both.
    dense = Graph.chain([("x", Input((2,))),
                         ("fc", Affine(weight=[[1, 2], [3, 4]], bias=[0.5, -1.0])),
                         ("r", ReLU())])
    np.testing.assert_array_equal(ort_run(to_onnx(dense), np.array([[2.0, 1.0]])),
                                  [[4.5, 9.0]])
    # 2x2 window sum of [[1, 2], [3, 4]] is 10; the average 2.5; with a fixed batch of 3.
    for node, want in ((SumPool2d(kernel_size=2, stride=2), 10.0),
                       (AvgPool2d(kernel_size=2, stride=2), 2.5)):
        g = Graph.chain([("x", Input((1, 2, 2))), ("p", node)])
        model = to_onnx(g, batch=3)
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
        x = np.tile(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), (3, 1, 1, 1))
        np.testing.assert_array_equal(ort_run(model, x), np.full((3, 1, 1, 1), want))


# ------------------------------------------------------------------ SNN / fixed graphs


def snn_graph() -> Graph:
    lam, dt = 0.9, 1e-3
    return Graph.chain([
        ("x", Input((1, 6, 6))),
        ("conv1", Conv2d(weight=f32(4, 1, 3, 3), bias=f32(4), padding=1)),
        ("lif1", LIF(tau=dt / (1 - lam), r=1 / (1 - lam), v_leak=0.0,
                     v_threshold=np.full((4, 6, 6), 1.0) + f32(4, 6, 6, scale=0.1),
                     reset="subtract", order="fire_integrate")),
        ("pool1", AvgPool2d(kernel_size=2, stride=2)),
        ("flat", Flatten()),
        ("fc", Affine(weight=f32(10, 36), bias=f32(10))),
        ("acc", I(r=1 / dt)),
    ], dt=dt, timesteps=8, name="snn")


def snn_graph_more() -> Graph:
    """IF, CubaLIF (with and without optional arrays), BNTT, SumPool2d, Linear on a map."""
    return Graph.chain([
        ("x", Input((2, 4, 4))),
        ("bntt", BNTT(scale=f32(5, 2) + 1.0, shift=f32(5, 2))),
        ("if1", IF(r=1.0, v_threshold=0.75, v_reset=0.1, reset="zero")),
        ("sp", SumPool2d(kernel_size=2, stride=2)),
        ("lin", Linear(weight=f32(6, 8))),
        ("cuba", CubaLIF(tau_syn=2.0, tau_mem=np.linspace(2, 4, 6), r=1.0, v_leak=0.0,
                         v_threshold=1.0, w_in=None, v_reset=np.zeros(6))),
        ("cuba2", CubaLIF(tau_syn=3.0, tau_mem=5.0, r=2.0, v_leak=0.25, v_threshold=0.5,
                          w_in=np.full(6, 0.5))),
    ], dt=1.0, timesteps=5)


def fixed_dense_graph() -> Graph:
    w1 = RNG.integers(-256, 256, size=(8, 12))
    return Graph.chain([
        ("x", Input((12,), num_message_bits=8)),
        ("d1", QDense(weight=w1, weight_exp=-2, num_weight_bits=7,
                      delay=RNG.integers(0, 4, size=(8, 12)))),
        ("n1", QCubaLIF(threshold=300, current_decay=1024, voltage_decay=256,
                        bias=RNG.integers(-50, 50, size=8), bias_exp=6, reset="subtract")),
        ("d2", QDense(weight=RNG.integers(0, 256, size=(4, 8)), sign_mode="excitatory",
                      weight_rec=RNG.integers(-5, 5, size=(4, 4)))),
        ("n2", QCubaLIF(threshold=100, current_decay=4096, voltage_decay=0,
                        num_message_bits=3, refractory=2)),
        ("d3", QDense(weight=RNG.integers(-20, 20, size=(3, 4)))),
        ("n3", QCubaBNTT(threshold=50, gain=RNG.integers(-3000, 3000, size=(5, 3)),
                         gain_exp=12, bias=RNG.integers(-9, 9, size=(5, 3)))),
    ], timesteps=16)


def fixed_conv_graph() -> Graph:
    return Graph(
        {
            "x": Input((2, 8, 8)),
            "c1": QConv2d(weight=RNG.integers(-100, 100, size=(4, 1, 3, 3)), groups=2,
                          padding=1, stride=(1, 2), weight_exp=1),
            "n1": QCubaLIF(threshold=64, bias=0),
            "p1": QSumPool2d(kernel_size=2, stride=2, weight=3, weight_exp=-1),
            "n2": QSigmaDelta(kind="sigma_delta", threshold=5, bias=RNG.integers(0, 9, (4, 4, 2))),
            "f": Flatten(),
            "d": QDense(weight=RNG.integers(-9, 9, size=(6, 32))),
            "rf": QResonateFire(kind="RF", threshold=7, neuron_params=(("period", 12.0),
                                                              ("decay", 0.5))),
            "rf0": QResonateFire(kind="RF_IZ"),
            "sum": Add(),
            "avg": Average(num_outputs=3),
            "cat": Concat(),
        },
        [("x", "c1"), ("c1", "n1"), ("n1", "p1"), ("p1", "n2"), ("n2", "f"), ("f", "cat"),
         ("f", "d"), ("d", "rf"), ("d", "rf0"), ("rf", "sum"), ("rf0", "sum"), ("sum", "avg"),
         ("avg", "cat")],
    )


ROUND_TRIP = [snn_graph, snn_graph_more, fixed_dense_graph, fixed_conv_graph]


@pytest.mark.parametrize("build", ROUND_TRIP)
def test_snn_and_fixed_graphs_export_and_round_trip(tmp_path: Path, build) -> None:
    graph = build()
    path = export_onnx(graph, tmp_path / "snn.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert {o.domain: o.version for o in model.opset_import} == {"": 17, DOMAIN: 1}
    by_name = {n.name: n for n in model.graph.node}
    for name, node in graph.nodes.items():
        if node.is_neuron or node.stage == "fixed" or isinstance(node, (BNTT, Average)):
            assert by_name[name].domain == DOMAIN and by_name[name].op_type == node.type_name
            assert by_name[name].doc_string  # per-step semantics, shown by Netron
    props = {p.key: p.value for p in model.metadata_props}
    assert props["neurodeploy.format"] == "1" and props["neurodeploy.stage"] == graph.stage
    for key, value in graph.metadata.items():
        assert json.loads(props[key]) == value
    elem = model.graph.input[0].type.tensor_type.elem_type
    assert elem == (TensorProto.INT32 if graph.stage == "fixed" else TensorProto.FLOAT)
    back = read_onnx(path)
    assert_same_graph(graph, back)
    assert back.metadata == {**graph.metadata, "source": str(path)}
    assert back.nodes["x"].num_message_bits == graph.nodes["x"].num_message_bits


def test_snn_named_parameters_are_initializers(tmp_path: Path) -> None:
    model = to_onnx(snn_graph())
    lif = next(n for n in model.graph.node if n.name == "lif1")
    assert list(lif.input) == ["conv1", "lif1.tau", "lif1.r", "lif1.v_leak", "lif1.v_threshold"]
    assert {a.name: helper.get_attribute_value(a) for a in lif.attribute} == {
        "reset": b"subtract", "order": b"fire_integrate"}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert inits["lif1.tau"].dtype == np.float64 and inits["lif1.tau"] == pytest.approx(0.01)
    assert inits["lif1.v_threshold"].shape == (4, 6, 6)
    gemm = next(n for n in model.graph.node if n.name == "fc")
    assert gemm.op_type == "Gemm" and inits["fc.weight"].shape == (10, 36)


def test_every_ir_node_type_has_an_onnx_mapping() -> None:
    used = {type(n).__name__ for build in ROUND_TRIP + [conv_ann, dense_ann]
            for n in build().nodes.values()}
    assert used == set(NODE_TYPES)


# ------------------------------------------------------------------ reader coverage


def _vi(name: str, shape: list | None = None) -> onnx.ValueInfoProto:
    """A float tensor value info (``shape=None``: filled in by shape inference)."""
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _model(nodes, inits, in_shape, *, inputs=None, outputs=None,
           opset: int = 17) -> onnx.ModelProto:
    """A hand-built model; output shapes left open are inferred by ONNX."""
    inputs = inputs or [_vi("x", in_shape)]
    outputs = outputs or [_vi(nodes[-1].output[0])]
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return onnx.shape_inference.infer_shapes(model)


def test_reader_handles_quirks_of_other_exporters(tmp_path: Path) -> None:
    """Fixed batch 1, SAME padding, a bias Add after Conv, a per-channel Mul,
    GlobalAveragePool, Constant + Reshape flattening, MatMul + Add, Dropout and Identity, Gemm
    with transB=0/alpha/beta, and a dead branch with an unsupported op."""
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c0"], name="conv", auto_pad="SAME_UPPER"),
        helper.make_node("Add", ["c0", "cb"], ["c"], name="conv_bias"),
        helper.make_node("Mul", ["c", "gain"], ["m"], name="gain_mul"),
        helper.make_node("Relu", ["m"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Constant", [], ["shape"], name="k",
                         value=numpy_helper.from_array(np.array([1, -1], np.int64))),
        helper.make_node("Reshape", ["g", "shape"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "mw"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "mb"], ["a"], name="bias_add"),
        helper.make_node("Dropout", ["a"], ["d"], name="drop"),
        helper.make_node("Identity", ["d"], ["i"], name="ident"),
        helper.make_node("Gemm", ["i", "gw", "gc"], ["y"], name="head", alpha=0.5, beta=2.0),
        helper.make_node("Sigmoid", ["x"], ["unused"], name="dead_branch"),  # ignored
    ]
    inits = {"w": w, "cb": RNG.standard_normal((4, 1, 1)).astype(np.float32), "gain": RNG.uniform(0.5, 2, (1, 4, 1, 1)).astype(np.float32),
             "mw": RNG.standard_normal((4, 6)).astype(np.float32),
             "mb": RNG.standard_normal(6).astype(np.float32),
             "gw": RNG.standard_normal((6, 2)).astype(np.float32),
             "gc": RNG.standard_normal((1, 2)).astype(np.float32)}
    model = _model(nodes, inits, [1, 3, 5, 5], outputs=[_vi("y", [1, 2])])
    onnx.checker.check_model(model, full_check=True)
    graph = read_onnx(save(model, tmp_path / "q.onnx"))
    assert [n.type_name for n in graph.nodes.values()] == [
        "Input", "Conv2d", "BatchNorm", "ReLU", "AvgPool2d", "Flatten", "Affine", "Affine"]
    assert graph.nodes["conv"].padding == (1, 1) and graph.nodes["mm"].bias.shape == (6,)
    np.testing.assert_array_equal(graph.nodes["conv"].bias, inits["cb"].reshape(4))
    x = RNG.standard_normal((1, 3, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(sim(graph, x), ort_run(model, x), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ bad and unsupported files


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_unsupported_ops_listed_together(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("MaxPool", ["c"], ["p"], name="mp", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Sigmoid", ["p"], ["s"], name="sig"),
        helper.make_node("Flatten", ["s"], ["f"], name="flat"),
    ]
    model = _model(nodes, {"w": np.ones((2, 1, 3, 3), np.float32)}, ["N", 1, 6, 6])
    with pytest.raises(UnsupportedError) as err:
        read_onnx(save(model, tmp_path / "mp.onnx"))
    text = _one_line(err)
    assert "mp (MaxPool)" in text and "sig (Sigmoid)" in text and "conv (Conv)" not in text
    assert "AveragePool" in text and "average pooling" in text  # supported list and hint


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage\xff\xfe not a protobuf" * 3,
                                     b"\x00" * 64])
def test_garbage_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(BadInputFileError) as err:
        read_onnx(path)
    assert str(path) in _one_line(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputFileError, match="no such file"):
        read_onnx(tmp_path / "nope.onnx")


def test_asymmetric_pad(tmp_path: Path) -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="c0", pads=[0, 0, 1, 1])]
    model = _model(nodes, {"w": np.ones((2, 1, 3, 3), np.float32)}, ["N", 1, 6, 6])
    with pytest.raises(UnsupportedError) as err:
        read_onnx(save(model, tmp_path / "pad.onnx"))
    text = _one_line(err)
    assert "c0 (Conv)" in text and "asymmetric" in text and "[0, 0, 1, 1]" in text


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_initializer(tmp_path: Path, value: float) -> None:
    w = np.ones((3, 4), np.float32)
    w[1, 2] = value
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)]
    with pytest.raises(BadInputFileError) as err:
        read_onnx(save(_model(nodes, {"w": w}, ["N", 4]), tmp_path / "nan.onnx"))
    assert "initializer 'w'" in _one_line(err) and "NaN or infinite" in str(err.value)


def test_wrong_initializer_shape(tmp_path: Path) -> None:
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn")]
    inits = {k: np.ones(3, np.float32) for k in "sbmv"}
    inits["v"] = np.ones(4, np.float32)
    with pytest.raises(BadInputFileError, match=r"bn \(BatchNormalization\): var has shape"):
        read_onnx(save(_model(nodes, inits, ["N", 3, 2, 2], outputs=[_vi("y", ["N", 3, 2, 2])]),
                       tmp_path / "bn.onnx"))


def test_several_inputs_or_outputs(tmp_path: Path) -> None:
    add = helper.make_node("Add", ["a", "b"], ["y"], name="add")
    two_in = _model([add], {}, None, inputs=[_vi("a", ["N", 3]), _vi("b", ["N", 3])])
    with pytest.raises(BadInputFileError, match=r"2 inputs \(a, b\)"):
        read_onnx(save(two_in, tmp_path / "in.onnx"))
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="r"),
             helper.make_node("Relu", ["r"], ["s"], name="s")]
    two_out = _model(nodes, {}, ["N", 3], outputs=[_vi("r", None), _vi("s", None)])
    with pytest.raises(BadInputFileError, match=r"2 outputs \(r, s\)"):
        read_onnx(save(two_out, tmp_path / "out.onnx"))


def test_missing_external_data(tmp_path: Path) -> None:
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)]
    model = _model(nodes, {"w": np.ones((3, 4), np.float32)}, ["N", 4])
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="w.bin",
                    size_threshold=0)
    assert read_onnx(path).nodes["fc"].weight.shape == (3, 4)  # present: fine
    (tmp_path / "w.bin").unlink()
    with pytest.raises(BadInputFileError) as err:
        read_onnx(path)
    assert "'w.bin'" in _one_line(err) and "missing" in str(err.value)


def test_reshape_that_does_more_than_flatten(tmp_path: Path) -> None:
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")]
    model = _model(nodes, {"s": np.array([0, 3, 4], np.int64)}, ["N", 12])
    with pytest.raises(UnsupportedError, match=r"rs \(Reshape\).*\[0, 3, 4\]"):
        read_onnx(save(model, tmp_path / "rs.onnx"))


def test_export_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "keep.onnx"
    path.write_bytes(b"previous")
    bad = Graph.chain([("x", Input((4,))), ("fc", Affine(weight=np.ones((2, 5)), bias=[0, 0]))])
    with pytest.raises(InvalidIRError):
        export_onnx(bad, path)
    assert path.read_bytes() == b"previous"
    with pytest.raises(UnsupportedError, match="opset"):
        export_onnx(conv_ann(), path, opset=5)
    with pytest.raises(UnsupportedError, match="batch"):
        export_onnx(conv_ann(), path, batch=0)
    assert sorted(os.listdir(tmp_path)) == ["keep.onnx"]
    export_onnx(conv_ann(), path)
    assert onnx.load(str(path)).graph.name == "conv_ann"
    assert sorted(os.listdir(tmp_path)) == ["keep.onnx"]


def test_bad_custom_nodes_and_metadata(tmp_path: Path) -> None:
    def broken(change) -> str:
        model = to_onnx(snn_graph())
        change(model, next(n for n in model.graph.node if n.name == "lif1"))
        with pytest.raises((BadInputFileError, UnsupportedError)) as err:
            read_onnx(save(model, tmp_path / "broken.onnx"))
        return _one_line(err)

    def no_tau(model, lif):
        lif.input[1] = ""

    def extra_attr(model, lif):
        lif.attribute.append(helper.make_attribute("tau_typo", 3))

    def bad_dt(model, lif):
        next(p for p in model.metadata_props if p.key == "dt").value = "-1"

    def other_domain(model, lif):
        lif.domain = "com.example"
        model.opset_import.append(helper.make_opsetid("com.example", 1))

    assert "lif1 (ai.neurodeploy.LIF): missing required input 'tau'" in broken(no_tau)
    assert "unknown attribute 'tau_typo'" in broken(extra_attr)
    assert "metadata dt=-1" in broken(bad_dt)
    assert "lif1 (com.example.LIF)" in broken(other_domain)
