"""Tests of netx legalization (neurodeploy.passes.legalize): pools become depthwise convs
(exact in hw_sim), residual Add / skip Concat become relay neurons (float semantics kept,
aligned by depth), and the result writes to netx and runs identically in Lava and hw_sim."""

from __future__ import annotations

import numpy as np
import pytest

from neurodeploy.backends import floatsim
from neurodeploy.errors import UnsupportedError
from neurodeploy.hw_sim import run as hw_run
from neurodeploy.ir import (
    IF,
    Add,
    Concat,
    Conv2d,
    Flatten,
    Graph,
    Input,
    Linear,
    QConv2d,
    QCubaLIF,
    QDense,
    QSumPool2d,
)
from neurodeploy.passes.legalize import LEGAL_NODES, legalize, pool_to_conv
from neurodeploy.simulation import pipeline_depths

THR = 100  # threshold of every layer: float IF(v_threshold=100) == QCubaLIF(threshold=100)
STEPS = 10


def _neuron(threshold: int = THR, **kw) -> QCubaLIF:
    return QCubaLIF(threshold=threshold, current_decay=4096, voltage_decay=0, **kw)


def _if() -> IF:
    return IF(r=1.0, v_threshold=float(THR))


def _spikes(shape, batch=6, seed=0, p=0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((batch, *shape, STEPS)) < p).astype(np.float64)


class _Twins:
    """A float graph and its exact fixed-point twin: integer weights, exponent 0, IF neurons
    with threshold THR ↔ QCubaLIF(threshold=THR, current_decay=4096, voltage_decay=0). The
    float potential v equals the fixed v / 64, so only the synapse delays differ."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.float: list[tuple[str, object]] = []
        self.fixed: list[tuple[str, object]] = []
        self.edges: list[tuple[str, str]] = []

    def ints(self, shape, lo=-20, hi=50, even=False) -> np.ndarray:
        w = self.rng.integers(lo, hi, shape)
        return w * 2 if even else w

    def add(self, name, fnode, qnode, *preds):
        self.float.append((name, fnode))
        self.fixed.append((name, qnode))
        self.edges += [(p, name) for p in preds]

    def conv(self, name, w, pred, padding=1):
        self.add(name, Conv2d(weight=w.astype(float), padding=padding),
                 QConv2d(weight=w, padding=padding), pred)

    def dense(self, name, w, pred):
        self.add(name, Linear(weight=w.astype(float)), QDense(weight=w), pred)

    def graphs(self) -> tuple[Graph, Graph]:
        return (Graph(dict(self.float), self.edges, {"dt": 1.0}).validate(),
                Graph(dict(self.fixed), self.edges, {}).validate())


def _conv_residual() -> tuple[Graph, Graph]:
    t = _Twins(0)
    t.add("input", Input(shape=(2, 6, 6)), Input(shape=(2, 6, 6)))
    t.conv("c0", t.ints((3, 2, 3, 3)), "input")
    t.add("n0", _if(), _neuron(), "c0")
    t.conv("cA", t.ints((4, 3, 3, 3)), "n0")
    t.add("n1", _if(), _neuron(), "cA")
    t.conv("cB", t.ints((3, 4, 3, 3), -30, 40), "n1")
    t.conv("cS", t.ints((3, 3, 1, 1), 0, 60), "n0", padding=0)
    t.add("add", Add(), Add(), "cB", "cS")
    t.add("n2", _if(), _neuron(), "add")
    t.add("flat", Flatten(), Flatten(), "n2")
    t.dense("fc", t.ints((5, 108), -10, 20, even=True), "flat")
    t.add("n3", _if(), _neuron(), "fc")
    return t.graphs()


def _dense_concat() -> tuple[Graph, Graph]:
    t = _Twins(1)
    t.add("input", Input(shape=(8,)), Input(shape=(8,)))
    t.dense("fc0", t.ints((6, 8), -20, 60, even=True), "input")
    t.add("n0", _if(), _neuron(), "fc0")
    t.dense("fcA", t.ints((5, 6), -20, 60, even=True), "n0")
    t.add("n1", _if(), _neuron(), "fcA")
    t.add("cat", Concat(), Concat(), "n1", "n0")
    t.dense("fcC", t.ints((4, 11), -20, 50, even=True), "cat")
    t.add("n2", _if(), _neuron(), "fcC")
    return t.graphs()


def _dense_residual() -> tuple[Graph, Graph]:
    t = _Twins(2)
    t.add("input", Input(shape=(8,)), Input(shape=(8,)))
    t.dense("fc0", t.ints((6, 8), -20, 60, even=True), "input")
    t.add("n0", _if(), _neuron(), "fc0")
    t.dense("fcA", t.ints((5, 6), -20, 60, even=True), "n0")
    t.add("n1", _if(), _neuron(), "fcA")
    t.dense("fcB", t.ints((4, 5), -20, 60, even=True), "n1")
    t.dense("fcS", t.ints((4, 6), -20, 60, even=True), "n0")
    t.add("add", Add(), Add(), "fcB", "fcS")
    t.add("n2", _if(), _neuron(), "add")
    return t.graphs()


def _aligned(float_s: np.ndarray, fixed_s: np.ndarray, depth: int) -> tuple[np.ndarray, ...]:
    """Float spikes of steps [0, T-depth) and fixed spikes of steps [depth, T)."""
    return float_s[..., : STEPS - depth], fixed_s[..., depth:]


def _is_chain(g: Graph) -> bool:
    return all(len(g.successors(n)) <= 1 and len(g.predecessors(n)) <= 1 for n in g.nodes)


# ------------------------------------------------------------------------------ pooling


def _pool_graph(weight_exp: int = 1) -> Graph:
    rng = np.random.default_rng(3)
    return Graph.chain([
        ("input", Input(shape=(2, 6, 6))),
        ("c0", QConv2d(weight=rng.integers(-20, 60, (3, 2, 3, 3)), padding=1)),
        ("n0", _neuron()),
        ("pool", QSumPool2d(kernel_size=2, stride=2, weight=3 if weight_exp else 60,
                            weight_exp=weight_exp)),
        ("n1", _neuron(threshold=150)),
        ("flat", Flatten()),
        ("fc", QDense(weight=rng.integers(-10, 30, (4, 27)) * 2)),
        ("n2", _neuron()),
    ])


def test_pool_becomes_depthwise_conv_exact_in_hw_sim():
    g = _pool_graph()
    legal = legalize(g)
    conv = legal.nodes["pool"]
    assert isinstance(conv, QConv2d) and conv.groups == 3 and conv.weight.shape == (3, 1, 2, 2)
    assert np.all(conv.weight == 3) and conv.weight_exp == 1 and conv.stride == (2, 2)
    assert all(isinstance(n, LEGAL_NODES) for n in legal.nodes.values())
    x = _spikes((2, 6, 6))
    a = hw_run(g, x, steps=STEPS, input_mode="spikes", record=["v", "s"])
    b = hw_run(legal, x, steps=STEPS, input_mode="spikes", record=["v", "s"])
    for key in a.traces:
        np.testing.assert_array_equal(a.traces[key], b.traces[key], err_msg=key)
    assert a.spike_counts["n1"].sum() > 0 and a.spike_counts["n2"].sum() > 0
    assert legal.metadata["legalized"] == ["pool: QSumPool2d -> depthwise QConv2d"]


def test_pool_to_conv_by_hand():
    conv = pool_to_conv(QSumPool2d(kernel_size=(2, 3), stride=(1, 2), padding=(0, 1),
                                   weight=-5, weight_exp=2), 4)
    assert conv.weight.shape == (4, 1, 2, 3) and np.all(conv.weight == -5)
    assert (conv.groups, conv.stride, conv.padding, conv.weight_exp) == (4, (1, 2), (0, 1), 2)


# ------------------------------------------------------------------------------ relays


def test_conv_residual_keeps_float_semantics_aligned_by_depth():
    fg, qg = _conv_residual()
    legal = legalize(qg)
    assert _is_chain(legal)
    assert all(isinstance(n, LEGAL_NODES) for n in legal.nodes.values())
    assert "add" not in legal.nodes and "cS" not in legal.nodes
    assert legal.shapes["n1"] == (4 + 3, 6, 6)  # n1's 4 channels + 3 relays of n0
    depths = pipeline_depths(legal)
    assert [depths[n] for n in ("n0", "n1", "n2", "n3")] == [1, 2, 3, 4]
    assert pipeline_depths(qg)["n2"] == 3  # relays do not change any depth
    x = _spikes((2, 6, 6))
    f = floatsim.run(fg, x, STEPS, record=["s"])
    h = hw_run(legal, x, steps=STEPS, input_mode="spikes", record=["s"])
    q = hw_run(qg, x, steps=STEPS, input_mode="spikes", record=["s"])
    for name in ("n0", "n1", "n2", "n3"):
        fs, hs = f.traces[f"{name}.s"], h.traces[f"{name}.s"]
        if name == "n1":
            relays = hs[:, 4:]
            hs = hs[:, :4]
            # the relays copy n0's spikes one step later
            np.testing.assert_array_equal(relays[..., 1:], h.traces["n0.s"][..., :-1])
        a, b = _aligned(fs, hs, depths[name])
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert a.sum() > 0, name
    # the un-legalized fixed graph gets the skip one step early: it differs from the float one
    a, b = _aligned(f.traces["n2.s"], q.traces["n2.s"], 3)
    assert not np.array_equal(a, b)


def test_dense_concat_relays():
    fg, qg = _dense_concat()
    legal = legalize(qg)
    assert _is_chain(legal) and "cat" not in legal.nodes
    assert legal.shapes["n1"] == (11,)
    np.testing.assert_array_equal(legal.nodes["fcC"].weight, qg.nodes["fcC"].weight)
    w = legal.nodes["fcA"].weight
    np.testing.assert_array_equal(w[:5], qg.nodes["fcA"].weight)
    # relay rows: an identity times the smallest even mantissa above the threshold (102)
    np.testing.assert_array_equal(w[5:], 102 * np.eye(6, dtype=int))
    x = _spikes((8,), batch=8)
    f = floatsim.run(fg, x, STEPS, record=["s"])
    h = hw_run(legal, x, steps=STEPS, input_mode="spikes", record=["s"])
    for name, depth in (("n0", 1), ("n2", 3)):
        a, b = _aligned(f.traces[f"{name}.s"], h.traces[f"{name}.s"], depth)
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert a.sum() > 0
    a, b = _aligned(f.traces["n1.s"], h.traces["n1.s"][:, :5], 2)
    np.testing.assert_array_equal(a, b)


def test_dense_residual_merges_skip_weights():
    fg, qg = _dense_residual()
    legal = legalize(qg)
    assert _is_chain(legal)
    w = legal.nodes["fcB"].weight
    assert w.shape == (4, 5 + 6)
    np.testing.assert_array_equal(w, np.concatenate(
        [qg.nodes["fcB"].weight, qg.nodes["fcS"].weight], axis=1))
    x = _spikes((8,), batch=8, seed=4)
    f = floatsim.run(fg, x, STEPS, record=["s"])
    h = hw_run(legal, x, steps=STEPS, input_mode="spikes", record=["s"])
    a, b = _aligned(f.traces["n2.s"], h.traces["n2.s"], 3)
    np.testing.assert_array_equal(a, b)
    assert a.sum() > 0


def test_merge_with_different_exponents_is_exact():
    _, qg = _dense_residual()
    want = (qg.nodes["fcS"].weight // 4) * 4
    # effective weights `want`, written as even mantissas want/2 with exponent 1
    qg = qg.replace_node("fcS", qg.nodes["fcS"].replace(weight=want // 2, weight_exp=1))
    legal = legalize(qg)
    eff = legal.nodes["fcB"].weight.astype(int) << legal.nodes["fcB"].weight_exp
    np.testing.assert_array_equal(eff[:, 5:], want)
    np.testing.assert_array_equal(eff[:, :5], qg.nodes["fcB"].weight)


def test_unsupported_cases_name_the_node():
    _, qg = _dense_residual()
    with pytest.raises(UnsupportedError, match=r"n1.*current_decay=100"):
        legalize(qg.replace_node("n1", qg.nodes["n1"].replace(current_decay=100)))
    with pytest.raises(UnsupportedError, match=r"n1.*reset='subtract'"):
        legalize(qg.replace_node("n1", qg.nodes["n1"].replace(reset="subtract")))
    # threshold too high for any 8-bit relay mantissa at the synapse's exponent
    fcA = qg.nodes["fcA"]
    odd = qg.replace_node("fcA", fcA.replace(weight=np.abs(fcA.weight) + 1,
                                             sign_mode="excitatory"))  # odd and even values
    with pytest.raises(UnsupportedError, match=r"fcA.*threshold 300 of layer n1"):
        legalize(odd.replace_node("n1", odd.nodes["n1"].replace(threshold=300)))
    # a negative exponent floors each synapse's sum separately: merging is not exact
    fcS = qg.nodes["fcS"]
    with pytest.raises(UnsupportedError, match=r"add \(Add\).*negative weight exponent"):
        legalize(qg.replace_node("fcS", fcS.replace(weight=np.full_like(fcS.weight, 6),
                                                    weight_exp=-2)))  # 6/4 is no integer


def _dense_skip_over_three_layers() -> tuple[Graph, Graph]:
    t = _Twins(5)
    t.add("input", Input(shape=(4,)), Input(shape=(4,)))
    t.dense("a", t.ints((4, 4), -20, 60, even=True), "input")
    t.add("n0", _if(), _neuron(), "a")
    t.dense("b", t.ints((4, 4), -20, 60, even=True), "n0")
    t.add("n1", _if(), _neuron(), "b")
    t.dense("c", t.ints((4, 4), -20, 60, even=True), "n1")
    t.add("n2", _if(), _neuron(), "c")
    t.dense("d", t.ints((4, 4), -20, 60, even=True), "n2")
    t.dense("s", t.ints((4, 4), -20, 60, even=True), "n0")
    t.add("add", Add(), Add(), "d", "s")
    t.add("n3", _if(), _neuron(), "add")
    return t.graphs()


def test_skip_over_three_layers_relays_through_two_layers():
    # n0 -> n1 -> n2 -> [d + s(n0)] -> n3: n0's 4 channels ride in n1 and then in n2
    fg, qg = _dense_skip_over_three_layers()
    legal = legalize(qg)
    assert _is_chain(legal) and "add" not in legal.nodes and "s" not in legal.nodes
    assert legal.shapes["n1"] == (8,) and legal.shapes["n2"] == (8,)
    q, r, eye = qg.nodes, 102, np.eye(4, dtype=int)  # r: smallest even mantissa above 100
    z = np.zeros((4, 4), dtype=int)
    np.testing.assert_array_equal(legal.nodes["b"].weight, np.vstack([q["b"].weight, r * eye]))
    # c reads [n1 ; relays]: its own block, and identity relay-of-relay rows
    np.testing.assert_array_equal(legal.nodes["c"].weight,
                                  np.block([[q["c"].weight, z], [z, r * eye]]))
    np.testing.assert_array_equal(legal.nodes["d"].weight,
                                  np.hstack([q["d"].weight, q["s"].weight]))
    depths = pipeline_depths(legal)
    assert [depths[n] for n in ("n0", "n1", "n2", "n3")] == [1, 2, 3, 4]
    x = _spikes((4,), batch=8, seed=3, p=0.6)
    f = floatsim.run(fg, x, STEPS, record=["s"])
    h = hw_run(legal, x, steps=STEPS, input_mode="spikes", record=["s"])
    for name in ("n0", "n1", "n2", "n3"):
        a, b = _aligned(f.traces[f"{name}.s"], h.traces[f"{name}.s"][:, :4], depths[name])
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert a.sum() > 0, name
    # n2's relays are n0's spikes two steps later
    np.testing.assert_array_equal(h.traces["n2.s"][:, 4:, 2:], h.traces["n0.s"][..., :-2])
    # without relays the skip arrives two steps early and n3 differs from the float graph
    u = hw_run(qg, x, steps=STEPS, input_mode="spikes", record=["s"])
    assert not np.array_equal(*_aligned(f.traces["n3.s"], u.traces["n3.s"], 4))


# ------------------------------------------------------------------------------ netx + Lava


def netx_lava_check(legal: Graph, x: np.ndarray, steps: int, path) -> tuple[int, Graph, object]:
    """Write ``legal`` to the netx file ``path``, load it in lava-dl's netx and read it back,
    then run it in Lava and hw_sim on the spikes ``x`` and check every trace equal. Returns
    (netx's layer count, the read-back graph, hw_sim's result)."""
    hdf5 = pytest.importorskip("lava.lib.dl.netx.hdf5")
    from neurodeploy.backends import lava as lava_backend
    from neurodeploy.frontends.netx import read_netx, write_netx

    write_netx(legal, path)
    layers = len(hdf5.Network(net_config=str(path)))
    back = read_netx(path)
    a = lava_backend.run(legal, x, steps=steps, input_mode="spikes", record=["s"])
    b = hw_run(legal, x, steps=steps, input_mode="spikes", record=["s"])
    for key in b.traces:
        np.testing.assert_array_equal(a.traces[key], b.traces[key], err_msg=key)
    return layers, back, b


@pytest.mark.lava
def test_legalized_graph_writes_netx_and_matches_lava(tmp_path):
    _, qg = _dense_residual()
    legal = legalize(qg)
    x = _spikes((8,), batch=2, seed=7)[..., :6]
    layers, back, b = netx_lava_check(legal, x, 6, tmp_path / "legal.net")
    assert layers >= 3
    assert len(back.neurons) == len(legal.neurons)
    assert b.spike_counts["n2"].sum() > 0
