"""Tests of IR serialization (neurodeploy.ir.serialize): a round trip of a graph that holds every
node type in NODE_TYPES, metadata round trips (hypothesis), atomic writes, and one-line
BadInputFileError for every kind of damaged file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.errors import BadInputFileError, InvalidIRError, UnsupportedError
from neurodeploy.ir import (
    BNTT,
    IF,
    LIF,
    NODE_TYPES,
    Add,
    Affine,
    Average,
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
    QConv2d,
    QCubaBNTT,
    QCubaLIF,
    QDense,
    QResonateFire,
    QSigmaDelta,
    QSumPool2d,
    ReLU,
    SumPool2d,
)
from neurodeploy.ir import serialize
from neurodeploy.ir.serialize import load_graph, save_graph

RNG = np.random.default_rng(7)


def _every_node_graph() -> Graph:
    """A valid DAG with one node of every type (float and fixed mixed), optional arrays both
    present and None, per-neuron and 0-d parameters, tuples and (name, number) pairs."""
    r = RNG
    nodes = {
        "input": Input(shape=(2, 4, 4)),
        "conv": Conv2d(weight=r.normal(size=(2, 2, 3, 3)), bias=r.normal(size=2), padding=1),
        "bn": BatchNorm(scale=r.uniform(0.5, 2, 2), shift=r.normal(size=2)),
        "bntt": BNTT(scale=r.uniform(0.5, 2, (3, 2)), shift=r.normal(size=(3, 2))),
        "lif": LIF(tau=r.uniform(2, 20, (2, 4, 4)), r=np.array(1.5), v_leak=np.array(0.0),
                   v_threshold=np.array(1.0), v_reset=None, reset="subtract",
                   order="fire_integrate"),
        "avg": AvgPool2d(kernel_size=2, stride=2),
        "sum": SumPool2d(kernel_size=(1, 1), stride=(1, 1), padding=(0, 0)),
        "relu": ReLU(),
        "qconv": QConv2d(weight=r.integers(-256, 256, (2, 2, 1, 1)), weight_exp=-2,
                         num_weight_bits=6, sign_mode="mixed", stride=(1, 1), groups=1),
        "qcuba": QCubaLIF(threshold=100, current_decay=1024, voltage_decay=256,
                          bias=r.integers(-50, 50, (2, 2, 2)), bias_exp=3, reset="subtract",
                          refractory=1, num_message_bits=3),
        "qbntt": QCubaBNTT(threshold=90, current_decay=2048, voltage_decay=100,
                           bias=r.integers(-50, 50, (3, 2)), bias_exp=2, reset="subtract",
                           gain=r.integers(-3000, 3000, (3, 2)), gain_exp=11),
        "qpool": QSumPool2d(kernel_size=1, stride=1, weight=3, weight_exp=-1),
        "cat": Concat(axis=0),
        "add": Add(),
        "flat": Flatten(),
        "aff": Affine(weight=r.normal(size=(6, 16)), bias=r.normal(size=6)),
        "lin": Linear(weight=r.normal(size=(6, 16))),
        "add2": Add(),
        "cuba": CubaLIF(tau_syn=np.array(5.0), tau_mem=r.uniform(5, 9, 6), r=np.array(2.0),
                        v_leak=np.array(0.1), v_threshold=np.array(0.8),
                        w_in=r.uniform(0.5, 1, 6), v_reset=None, reset="zero",
                        weight_rec=r.normal(size=(6, 6)), bias_rec=r.normal(size=6)),
        "if_": IF(r=np.array(1.0), v_threshold=r.uniform(0.5, 1, 6), v_reset=np.array(0.0),
                  weight_rec=np.eye(6), bias_rec=None),
        "acc": I(r=np.array(1.0)),
        "qdense": QDense(weight=r.integers(-256, 256, (5, 6)), weight_exp=1, num_weight_bits=8,
                         sign_mode="mixed", delay=r.integers(0, 62, (5, 6)),
                         weight_rec=r.integers(-10, 10, (5, 5))),
        "qdense2": QDense(weight=r.integers(0, 255, (5, 5)), sign_mode="excitatory"),
        "sigma": QSigmaDelta(kind="sigma", threshold=4, num_message_bits=16,
                             bias=r.integers(-3, 3, 5)),
        "rf": QResonateFire(kind="RF_IZ", threshold=7,
                            neuron_params=(("decay", 0.25), ("period", 12),
                                           ("alpha", -1e-300)),
                            bias=np.int64(2)),
        "mean": Average(num_outputs=5),
    }
    edges = [
        ("input", "conv"), ("conv", "bn"), ("bn", "bntt"), ("bntt", "lif"), ("lif", "avg"),
        ("avg", "sum"), ("sum", "relu"), ("relu", "qconv"), ("qconv", "qcuba"),
        ("qcuba", "qpool"), ("relu", "cat"), ("qpool", "cat"), ("qcuba", "add"),
        ("relu", "add"), ("qconv", "qbntt"), ("cat", "flat"), ("flat", "aff"), ("flat", "lin"),
        ("lin", "add2"),
        ("aff", "add2"), ("add2", "cuba"), ("cuba", "if_"), ("if_", "acc"), ("acc", "qdense"),
        ("qdense", "sigma"), ("sigma", "qdense2"), ("qdense2", "rf"), ("rf", "mean"),
    ]
    metadata = {"dt": 1e-3, "timesteps": 25, "encoder": "poisson", "encoder_rescale": 2.0,
                "nested": {"tuple": (1, "a", (2.5, None)), "list": [True, False, None],
                           "array": np.arange(6, dtype=np.int32).reshape(2, 3),
                           "f32": np.float32(0.1), "scalar0d": np.array(3, dtype=np.int64),
                           "bytes": np.array([b"ab", b"c"]), "nan": float("nan"),
                           "__tuple__": "a real key that looks like a tag"}}
    return Graph(nodes, edges, metadata).validate()


def _same_node(a, b) -> bool:
    """``Node.same_as`` plus equal array dtypes, tuple types and None-ness, field by field."""
    if not a.same_as(b):
        return False
    for field, value in a.params().items():
        other = getattr(b, field)
        if isinstance(value, np.ndarray):
            if not (isinstance(other, np.ndarray) and other.dtype == value.dtype
                    and other.shape == value.shape and np.array_equal(other, value)):
                return False
        elif not (other == value and type(other) is type(value)):
            return False
    return True


def _same_metadata(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and np.array_equal(a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_metadata(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_metadata(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and np.isnan(a):
        return np.isnan(b)
    return a == b


def _saved(tmp_path: Path, graph: Graph | None = None) -> Path:
    path = tmp_path / "net.ir.h5"
    save_graph(graph or _every_node_graph(), path)
    return path


# ------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------


def test_graph_covers_every_node_type() -> None:
    used = {node.type_name for node in _every_node_graph().nodes.values()}
    assert used == set(NODE_TYPES), set(NODE_TYPES) - used


def test_round_trip_every_node_type(tmp_path: Path) -> None:
    graph = _every_node_graph()
    back = load_graph(_saved(tmp_path, graph))
    assert list(back.nodes) == list(graph.nodes)  # layer order kept
    assert back.edges == graph.edges  # edge order kept (Add/Concat input order)
    for name, node in graph.nodes.items():
        assert _same_node(node, back.nodes[name]), name
    assert back.nodes["lif"].v_reset is None and back.nodes["cuba"].w_in is not None
    assert back.nodes["if_"].bias_rec is None and back.nodes["if_"].weight_rec.shape == (6, 6)
    assert back.nodes["qconv"].stride == (1, 1)
    assert back.nodes["qbntt"].gain.shape == (3, 2) and back.nodes["qbntt"].gain_exp == 11
    assert back.nodes["rf"].neuron_params[1] == ("period", 12)
    assert _same_metadata(back.metadata, graph.metadata)
    assert back.shapes == graph.shapes


def test_round_trip_keeps_netx_metadata(tmp_path: Path, lavadl_netx_dir: Path) -> None:
    """A graph read from a real netx file (metadata with arrays and layout tuples) survives
    save -> load with identical nodes and metadata."""
    from neurodeploy.frontends.netx import read_netx

    graph = read_netx(lavadl_netx_dir / "tiny.net")
    back = load_graph(_saved(tmp_path, graph))
    assert all(_same_node(node, back.nodes[n]) for n, node in graph.nodes.items())
    assert back.edges == graph.edges
    assert _same_metadata(back.metadata, graph.metadata)


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**62, 2**62),
                     st.floats(allow_nan=False), st.text(max_size=8))
_arrays = st.builds(
    lambda dtype, shape, seed: np.random.default_rng(seed).integers(-100, 100, shape)
    .astype(dtype), st.sampled_from(["<i4", "<i8", "<f4", "<f8", "|u1", "|b1"]),
    st.lists(st.integers(0, 3), max_size=3).map(tuple), st.integers(0, 2**32 - 1))
_values = st.recursive(
    st.one_of(_scalars, _arrays),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=10)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meta=st.dictionaries(st.text(max_size=6), _values, max_size=4),
       weight=st.lists(st.floats(-1e6, 1e6, width=64), min_size=6, max_size=6),
       threshold=st.floats(1e-3, 1e3))
def test_round_trip_random(meta: dict, weight: list, threshold: float) -> None:
    graph = Graph.chain([
        ("input", Input(shape=(3,))),
        ("fc", Affine(weight=np.reshape(weight, (2, 3)), bias=np.zeros(2))),
        ("lif", LIF(tau=np.array(2.0), r=np.array(2.0), v_leak=np.zeros(2),
                    v_threshold=np.array(threshold), v_reset=np.zeros(2))),
    ], **meta)
    with tempfile.TemporaryDirectory() as folder:
        back = load_graph(_saved(Path(folder), graph))
    assert all(_same_node(node, back.nodes[n]) for n, node in graph.nodes.items())
    assert back.edges == graph.edges
    assert _same_metadata(back.metadata, graph.metadata)


# ------------------------------------------------------------------------------------------
# Atomic writes
# ------------------------------------------------------------------------------------------


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _saved(tmp_path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(serialize, "_write_node", boom)
    with pytest.raises(RuntimeError):
        save_graph(_every_node_graph(), path)
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no .partial left


def test_unsavable_metadata_and_invalid_graph(tmp_path: Path) -> None:
    graph = Graph.chain([("input", Input(shape=(3,))), ("relu", ReLU())])
    with pytest.raises(UnsupportedError, match="key 1 is not a string"):
        save_graph(graph.with_metadata(bad={1: 2}), tmp_path / "a.h5")
    with pytest.raises(UnsupportedError, match="metadata obj: a object"):
        save_graph(graph.with_metadata(obj=object()), tmp_path / "b.h5")
    with pytest.raises(InvalidIRError):
        save_graph(Graph({"relu": ReLU()}), tmp_path / "c.h5")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------
# Damaged files: every problem is a one-line BadInputFileError naming the file
# ------------------------------------------------------------------------------------------


def _edit(path: Path, change) -> Path:
    with h5py.File(path, "r+") as handle:
        change(handle)
    return path


def _load_error(path: Path) -> str:
    with pytest.raises(BadInputFileError) as info:
        load_graph(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def _replace_dataset(group: h5py.Group, key: str, data) -> None:
    del group[key]
    group.create_dataset(key, data=data)


DAMAGE = {
    "unknown type": (lambda h: h["nodes/relu"].attrs.__setitem__("type", "MaxPool2d"),
                     "unknown node type 'MaxPool2d'"),
    "missing field": (lambda h: h["nodes/conv"].__delitem__("weight"),
                      "node 'conv' (Conv2d): missing field 'weight'"),
    "missing attribute": (lambda h: h["nodes/qcuba"].attrs.__delitem__("threshold"),
                          "missing attribute 'threshold'"),
    "extra field": (lambda h: h["nodes/relu"].attrs.__setitem__("slope", 0.1),
                    "unknown field(s) slope"),
    "float weight for integers": (
        lambda h: _replace_dataset(h["nodes/qdense"], "weight", np.full((5, 6), 1.5)),
        "field 'weight' holds float64 values, expected integers"),
    "string dataset": (
        lambda h: _replace_dataset(h["nodes/aff"], "bias", np.array([b"x"] * 6)),
        "field 'bias' holds |S1 values, expected numbers"),
    "int overflow": (
        lambda h: _replace_dataset(h["nodes/qdense"], "weight", np.full((5, 6), 2**40)),
        "field 'weight' does not fit the node's int32"),
    "string for int": (lambda h: h["nodes/qcuba"].attrs.__setitem__("threshold", "100"),
                       "attribute 'threshold' must be one integer"),
    "wrong weight shape": (
        lambda h: _replace_dataset(h["nodes/aff"], "weight", np.zeros((6, 15))),
        "aff (Affine): weight has 15 inputs"),
    "nan weight": (
        lambda h: _replace_dataset(h["nodes/lin"], "weight", np.full((6, 16), np.nan)),
        "lin (Linear): weight holds NaN"),
    "bad reset": (lambda h: h["nodes/lif"].attrs.__setitem__("reset", "explode"),
                  "reset 'explode' must be one of"),
    "edge out of range": (lambda h: _replace_dataset(h, "edges", np.array([[0, 99]])),
                          "edges refer to node indices outside"),
    "duplicate index": (lambda h: h["nodes/relu"].attrs.__setitem__("index", np.int64(0)),
                        "share index 0"),
    "wrong format": (lambda h: h.attrs.__setitem__("format", "netx"),
                     "not a neurodeploy IR file"),
    "newer version": (lambda h: h.attrs.__setitem__("version", np.int64(2)),
                      "version 2 is newer"),
    "bad metadata json": (
        lambda h: _replace_dataset(h, "metadata", np.frombuffer(b"{nope", dtype=np.uint8)),
        "metadata is not valid UTF-8 JSON"),
    "object array in metadata": (
        lambda h: _replace_dataset(h, "metadata", np.frombuffer(
            b'{"a": {"__ndarray__": {"dtype": "|O", "shape": [1], "data": [1]}}}',
            dtype=np.uint8)),
        "array dtype '|O' not allowed"),
    "soft link": (lambda h: (h["nodes/conv"].__delitem__("bias"),
                             h["nodes/conv"].__setitem__("bias", h5py.SoftLink("/edges"))),
                  "'bias' is a link"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_files(tmp_path: Path, case: str) -> None:
    change, expected = DAMAGE[case]
    path = _edit(_saved(tmp_path), change)
    assert expected in _load_error(path)


def test_truncated_missing_and_foreign_files(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    data = path.read_bytes()
    for keep in (len(data) // 2, 1000, 10):
        cut = tmp_path / f"cut{keep}.h5"
        cut.write_bytes(data[:keep])
        _load_error(cut)
    assert "no such file" in _load_error(tmp_path / "absent.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    assert "not a readable HDF5 file" in _load_error(text)
    assert serialize.is_ir_file(path) and not serialize.is_ir_file(text)
