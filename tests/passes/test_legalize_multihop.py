"""Tests of legalization's general relay mechanism (neurodeploy.passes.legalize): skips over
several layers, conv paths, Concats in any operand order, N-input Adds, shared relays, nested
and overlapping blocks, a Flatten read-out, the refusals (parallel layers, geometry, the zoo
ResNet), and a multi-hop result run in Lava equal to hw_sim.

Each positive case builds an exact float/fixed twin pair (``_Twins`` of test_legalize.py) and
checks that the legalized graph's spikes equal the float graph's aligned by pipeline depth,
on non-trivial spike trains."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from neurodeploy.backends import floatsim
from neurodeploy.errors import UnsupportedError
from neurodeploy.hw_sim import run as hw_run
from neurodeploy.ir import Add, Concat, Conv2d, Flatten, Graph, Input, QConv2d
from neurodeploy.passes.legalize import LEGAL_NODES, legalize
from neurodeploy.simulation import pipeline_depths

sys.path.insert(0, str(Path(__file__).parent))
from test_legalize import (  # noqa: E402
    STEPS,
    _aligned,
    _if,
    _is_chain,
    _neuron,
    _spikes,
    _Twins,
)

R = 102  # relay mantissa: the smallest even (mixed 8-bit Dense grid) value above THR = 100


def _check_float(fg: Graph, legal: Graph, x: np.ndarray, own: dict[str, slice]) -> dict:
    """Every neuron layer of the legalized graph (its own channels ``own[name]``, default the
    first ones) equals the float graph at step t - depth; returns the hw_sim traces."""
    assert _is_chain(legal)
    assert all(isinstance(n, LEGAL_NODES) for n in legal.nodes.values())
    depths = pipeline_depths(legal)
    f = floatsim.run(fg, x, STEPS, record=["s"])
    h = hw_run(legal, x, steps=STEPS, input_mode="spikes", record=["s"])
    for name in legal.neurons:
        fs = f.traces[f"{name}.s"]
        hs = h.traces[f"{name}.s"][:, own.get(name, slice(0, fs.shape[1]))]
        a, b = _aligned(fs, hs, depths[name])
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert a.sum() > 0, name
    return h.traces


# ------------------------------------------------------------------------------ conv path


def test_conv_residual_over_three_convs():
    # n0 -> cA -> n1 -> cB (groups=2) -> n2 -> cC -> [+ cS(n0), 1x1] -> n3 -> fc -> n4
    t = _Twins(10)
    t.add("input", Input(shape=(2, 5, 5)), Input(shape=(2, 5, 5)))
    t.conv("c0", t.ints((3, 2, 3, 3), -10, 50), "input")
    t.add("n0", _if(), _neuron(), "c0")
    t.conv("cA", t.ints((4, 3, 3, 3), -20, 40), "n0")
    t.add("n1", _if(), _neuron(), "cA")
    wb = t.ints((4, 2, 3, 3), -20, 60)
    t.add("cB", Conv2d(weight=wb.astype(float), padding=1, groups=2),
          QConv2d(weight=wb, padding=1, groups=2), "n1")
    t.add("n2", _if(), _neuron(), "cB")
    t.conv("cC", t.ints((3, 4, 3, 3), -30, 40), "n2")
    t.conv("cS", t.ints((3, 3, 1, 1), 0, 60), "n0", padding=0)
    t.add("add", Add(), Add(), "cC", "cS")
    t.add("n3", _if(), _neuron(), "add")
    t.add("flat", Flatten(), Flatten(), "n3")
    t.dense("fc", t.ints((4, 75), -10, 20, even=True), "flat")
    t.add("n4", _if(), _neuron(), "fc")
    fg, qg = t.graphs()
    legal = legalize(qg)
    assert legal.shapes["n1"] == (7, 5, 5) and legal.shapes["n2"] == (7, 5, 5)
    assert legal.shapes["n3"] == (3, 5, 5)
    q = qg.nodes
    # cB: the grouped conv expanded block-diagonally, plus identity relay rows at the centre tap
    cb = legal.nodes["cB"]
    assert cb.groups == 1 and cb.weight.shape == (7, 7, 3, 3)
    np.testing.assert_array_equal(cb.weight[:2, :2], wb[:2])
    np.testing.assert_array_equal(cb.weight[2:4, 2:4], wb[2:])
    assert not cb.weight[:2, 2:].any() and not cb.weight[2:4, :2].any()
    assert not cb.weight[:4, 4:].any() and not cb.weight[4:, :4].any()
    relay = np.zeros((3, 3, 3, 3), dtype=int)
    relay[np.arange(3), np.arange(3), 1, 1] = cb.weight[4, 4, 1, 1]
    np.testing.assert_array_equal(cb.weight[4:, 4:], relay)
    assert cb.weight[4, 4, 1, 1] << cb.weight_exp > 100
    # cC reads [n2 ; relays of n0]: the 1x1 skip sits at the 3x3 kernel's centre
    cc = legal.nodes["cC"]
    eff = cc.weight.astype(int) << cc.weight_exp
    np.testing.assert_array_equal(eff[:, :4], q["cC"].weight)
    np.testing.assert_array_equal(eff[:, 4:, 1, 1], q["cS"].weight[:, :, 0, 0])
    assert not eff[:, 4:, [0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 2, 0, 1, 2]].any()
    x = _spikes((2, 5, 5), batch=4, seed=1)
    h = _check_float(fg, legal, x, {})
    np.testing.assert_array_equal(h["n2.s"][:, 4:, ..., 2:], h["n0.s"][..., :-2])


# ------------------------------------------------------------------------------ Concat


def _chain_concat(order: tuple[str, ...]) -> tuple[Graph, Graph, np.ndarray]:
    """n0 (6) -> n1 (5) -> n2 (4), Concat of ``order`` -> fcC -> n3."""
    t = _Twins(11)
    t.add("input", Input(shape=(8,)), Input(shape=(8,)))
    t.dense("fc0", t.ints((6, 8), -20, 60, even=True), "input")
    t.add("n0", _if(), _neuron(), "fc0")
    t.dense("fcA", t.ints((5, 6), -20, 60, even=True), "n0")
    t.add("n1", _if(), _neuron(), "fcA")
    t.dense("fcB", t.ints((4, 5), -20, 60, even=True), "n1")
    t.add("n2", _if(), _neuron(), "fcB")
    t.add("cat", Concat(), Concat(), *order)
    width = sum({"n0": 6, "n1": 5, "n2": 4}[n] for n in order)
    wc = t.ints((4, width), -20, 40, even=True)
    t.dense("fcC", wc, "cat")
    t.add("n3", _if(), _neuron(), "fcC")
    fg, qg = t.graphs()
    return fg, qg, wc


@pytest.mark.parametrize("order, n1_layout, n2_layout", [
    # relays follow a layer's own channels, or come before them when the layer is a Concat
    # operand other than the first; the Concat's consumer reads n2 in n2's channel order
    (("n0", "n2"), ["n1", "n0"], ["n0", "n2"]),
    (("n2", "n0"), ["n1", "n0"], ["n2", "n0"]),
    (("n0", "n1", "n2"), ["n0", "n1"], ["n0", "n1", "n2"]),
    (("n1", "n2", "n0"), ["n1", "n0"], ["n1", "n0", "n2"]),
])
def test_skip_concat_over_two_layers(order, n1_layout, n2_layout):
    fg, qg, wc = _chain_concat(order)
    legal = legalize(qg)
    assert "cat" not in legal.nodes
    size = {"n0": 6, "n1": 5, "n2": 4}
    assert legal.shapes["n1"] == (sum(size[n] for n in n1_layout),)
    assert legal.shapes["n2"] == (sum(size[n] for n in n2_layout),)
    # fcC's columns, block by block, where n2's layout puts each operand
    blocks, at = {}, 0
    for n in order:
        blocks[n] = wc[:, at:at + size[n]]
        at += size[n]
    np.testing.assert_array_equal(legal.nodes["fcC"].weight,
                                  np.hstack([blocks[n] for n in n2_layout]))
    own = {n: slice(sum(size[m] for m in lay[:lay.index(n)]),
                    sum(size[m] for m in lay[:lay.index(n) + 1]))
           for n, lay in (("n1", n1_layout), ("n2", n2_layout))}
    x = _spikes((8,), batch=8, seed=2)
    h = _check_float(fg, legal, x, own)
    # every relay block of n2 copies its origin's spikes (depth 3 - its depth) steps later
    for n in n2_layout:
        if n != "n2":
            lag = 3 - pipeline_depths(qg)[n]
            s = slice(sum(size[m] for m in n2_layout[:n2_layout.index(n)]), None)
            np.testing.assert_array_equal(h["n2.s"][:, s][:, :size[n], lag:],
                                          h[f"{n}.s"][:, own.get(n, slice(None)), :STEPS - lag],
                                          err_msg=n)


# ------------------------------------------------------------------------------ Adds


def test_add_of_three_inputs_from_three_depths():
    t = _Twins(12)
    t.add("input", Input(shape=(6,)), Input(shape=(6,)))
    t.dense("fc0", t.ints((6, 6), -20, 60, even=True), "input")
    t.add("n0", _if(), _neuron(), "fc0")
    t.dense("fcA", t.ints((5, 6), -20, 60, even=True), "n0")
    t.add("n1", _if(), _neuron(), "fcA")
    t.dense("fcB", t.ints((5, 5), -20, 60, even=True), "n1")
    t.add("n2", _if(), _neuron(), "fcB")
    t.dense("fcC", t.ints((4, 5), -20, 50, even=True), "n2")
    t.dense("fcD", t.ints((4, 5), -20, 50, even=True), "n1")
    t.dense("fcS", t.ints((4, 6), -20, 50, even=True), "n0")
    t.add("add", Add(), Add(), "fcS", "fcC", "fcD")
    t.add("n3", _if(), _neuron(), "add")
    fg, qg = t.graphs()
    legal = legalize(qg)
    # the merged synapse keeps the name of the one that read the deepest layer
    assert set(legal.nodes) == set(qg.nodes) - {"add", "fcS", "fcD"}
    # n1 = [n1 ; n0's relays]; n2 = [n2 ; relays in the Add's operand order: n0's, n1's]
    assert legal.shapes["n1"] == (11,) and legal.shapes["n2"] == (16,)
    q = qg.nodes
    np.testing.assert_array_equal(legal.nodes["fcC"].weight, np.hstack(
        [q["fcC"].weight, q["fcS"].weight, q["fcD"].weight]))
    # fcB: n2's rows, then relay rows reading n1's relay channels (n0) and n1's own channels
    wb = legal.nodes["fcB"].weight
    np.testing.assert_array_equal(wb[:5], np.hstack([q["fcB"].weight, np.zeros((5, 6))]))
    np.testing.assert_array_equal(wb[5:], R * np.block([[np.zeros((6, 5)), np.eye(6)],
                                                        [np.eye(5), np.zeros((5, 6))]]))
    x = _spikes((6,), batch=8, seed=5)
    _check_float(fg, legal, x, {})


def test_shared_source_is_relayed_once_and_other_consumers_see_zeros():
    # J1: n2 = b(n1) + s1(n0); J2: n3 = c(n2) + s2(n0) + y(n1). n1 relays n0 for J1; J2 reuses
    # those relays, and y, another consumer of n1, reads zeros from them until J2 moves it.
    t = _Twins(13)
    t.add("input", Input(shape=(6,)), Input(shape=(6,)))
    t.dense("a0", t.ints((6, 6), -20, 60, even=True), "input")
    t.add("n0", _if(), _neuron(), "a0")
    t.dense("a", t.ints((5, 6), -20, 60, even=True), "n0")
    t.add("n1", _if(), _neuron(), "a")
    t.dense("b", t.ints((5, 5), -20, 60, even=True), "n1")
    t.dense("s1", t.ints((5, 6), -20, 60, even=True), "n0")
    t.add("j1", Add(), Add(), "b", "s1")
    t.add("n2", _if(), _neuron(), "j1")
    t.dense("c", t.ints((4, 5), -20, 50, even=True), "n2")
    t.dense("s2", t.ints((4, 6), -20, 50, even=True), "n0")
    t.dense("y", t.ints((4, 5), -20, 50, even=True), "n1")
    t.add("j2", Add(), Add(), "c", "s2", "y")
    t.add("n3", _if(), _neuron(), "j2")
    fg, qg = t.graphs()
    legal = legalize(qg)
    assert legal.shapes["n1"] == (5 + 6,)  # n0 relayed into n1 once, not once per join
    assert legal.shapes["n2"] == (5 + 6 + 5,)  # [n2 ; n0 via n1 ; n1]
    assert any("n0 -> n1 (0 new relay channels)" in note
               for note in legal.metadata["legalized"])
    q = qg.nodes
    np.testing.assert_array_equal(legal.nodes["b"].weight[:5], np.hstack(
        [q["b"].weight, q["s1"].weight]))
    # j2's merged synapse: c on n2, s2 on n0's relays (2 hops), y on n1's relays (1 hop)
    np.testing.assert_array_equal(legal.nodes["c"].weight, np.hstack(
        [q["c"].weight, q["s2"].weight, q["y"].weight]))
    x = _spikes((6,), batch=8, seed=6)
    _check_float(fg, legal, x, {})


def test_nested_and_overlapping_blocks():
    # J1: n2 = b(n1) + s1(n0); J2: n3 = c(n2) + s2(n1) (starts inside J1's block);
    # J3: n4 = d(n3) + s3(n2) (its source is J1's output)
    t = _Twins(14)
    t.add("input", Input(shape=(6,)), Input(shape=(6,)))
    t.dense("a0", t.ints((6, 6), -20, 60, even=True), "input")
    t.add("n0", _if(), _neuron(), "a0")
    t.dense("a", t.ints((5, 6), -20, 60, even=True), "n0")
    t.add("n1", _if(), _neuron(), "a")
    t.dense("b", t.ints((5, 5), -20, 60, even=True), "n1")
    t.dense("s1", t.ints((5, 6), -20, 60, even=True), "n0")
    t.add("j1", Add(), Add(), "b", "s1")
    t.add("n2", _if(), _neuron(), "j1")
    t.dense("c", t.ints((5, 5), -20, 60, even=True), "n2")
    t.dense("s2", t.ints((5, 5), -20, 60, even=True), "n1")
    t.add("j2", Add(), Add(), "c", "s2")
    t.add("n3", _if(), _neuron(), "j2")
    t.dense("d", t.ints((4, 5), -20, 50, even=True), "n3")
    t.dense("s3", t.ints((4, 5), -20, 50, even=True), "n2")
    t.add("j3", Add(), Add(), "d", "s3")
    t.add("n4", _if(), _neuron(), "j3")
    fg, qg = t.graphs()
    legal = legalize(qg)
    assert [legal.shapes[n][0] for n in ("n0", "n1", "n2", "n3", "n4")] == [6, 11, 10, 10, 4]
    q = qg.nodes
    # b reads [n1 ; n0's relays] and adds relay rows for n1's own channels only
    wb = legal.nodes["b"].weight
    np.testing.assert_array_equal(wb[:5], np.hstack([q["b"].weight, q["s1"].weight]))
    np.testing.assert_array_equal(wb[5:], np.hstack([R * np.eye(5), np.zeros((5, 6))]))
    np.testing.assert_array_equal(legal.nodes["c"].weight[:5],
                                  np.hstack([q["c"].weight, q["s2"].weight]))
    np.testing.assert_array_equal(legal.nodes["d"].weight,
                                  np.hstack([q["d"].weight, q["s3"].weight]))
    x = _spikes((6,), batch=8, seed=7)
    _check_float(fg, legal, x, {})


def test_flatten_read_out_with_a_skip_from_a_conv_layer():
    # n0 (2,4,4) -> c1 -> n1 (3,4,4) -> c2 -> n2 (3,4,4) -> flat -> fc, + fcS(flatS(n0)) -> n3:
    # fc, a Flatten consumer of n2, gets zero columns at the relays' flattened positions
    t = _Twins(15)
    t.add("input", Input(shape=(2, 4, 4)), Input(shape=(2, 4, 4)))
    t.conv("c0", t.ints((2, 2, 3, 3), -10, 50), "input")
    t.add("n0", _if(), _neuron(), "c0")
    t.conv("c1", t.ints((3, 2, 3, 3), -10, 50), "n0")
    t.add("n1", _if(), _neuron(), "c1")
    t.conv("c2", t.ints((3, 3, 3, 3), -10, 50), "n1")
    t.add("n2", _if(), _neuron(), "c2")
    t.add("flat", Flatten(), Flatten(), "n2")
    t.dense("fc", t.ints((4, 48), -10, 30, even=True), "flat")
    t.add("flatS", Flatten(), Flatten(), "n0")
    t.dense("fcS", t.ints((4, 32), -10, 30, even=True), "flatS")
    t.add("add", Add(), Add(), "fc", "fcS")
    t.add("n3", _if(), _neuron(), "add")
    fg, qg = t.graphs()
    legal = legalize(qg)
    assert "flatS" not in legal.nodes and legal.shapes["n2"] == (5, 4, 4)
    w = legal.nodes["fc"].weight.reshape(4, 5, 16)
    np.testing.assert_array_equal(w[:, :3], qg.nodes["fc"].weight.reshape(4, 3, 16))
    np.testing.assert_array_equal(w[:, 3:], qg.nodes["fcS"].weight.reshape(4, 2, 16))
    x = _spikes((2, 4, 4), batch=4, seed=8)
    _check_float(fg, legal, x, {})


# ------------------------------------------------------------------------------ refusals


def _parallel_graph(threshold_b: int = 120, concat: bool = False) -> Graph:
    t = _Twins(16)
    t.add("input", Input(shape=(6,)), Input(shape=(6,)))
    t.dense("fc0", t.ints((6, 6), even=True), "input")
    t.add("n0", _if(), _neuron(), "fc0")
    t.dense("fa", t.ints((5, 6), even=True), "n0")
    t.add("na", _if(), _neuron(), "fa")
    t.dense("fb", t.ints((5, 6), even=True), "n0")
    t.add("nb", _if(), _neuron(threshold=threshold_b), "fb")
    if concat:
        t.add("join", Concat(), Concat(), "na", "nb")
        t.dense("out", t.ints((3, 10), even=True), "join")
    else:
        t.dense("xa", t.ints((3, 5), even=True), "na")
        t.dense("xb", t.ints((3, 5), even=True), "nb")
        t.add("join", Add(), Add(), "xa", "xb")
    t.add("n2", _if(), _neuron(), "out" if concat else "join")
    return t.graphs()[1]


def test_parallel_layers_at_equal_depth_are_refused():
    with pytest.raises(UnsupportedError) as err:
        legalize(_parallel_graph())
    msg = str(err.value)
    assert msg.startswith("join (Add): its operands come from na and nb, parallel layers at "
                          "depth 2;")
    assert "fused into one layer" in msg and "threshold 100 vs 120" in msg
    with pytest.raises(UnsupportedError, match=r"join \(Concat\): its operands come from na "
                                               r"and nb, parallel layers at depth 2.*fused.*"
                                               r"legalization does not do"):
        legalize(_parallel_graph(threshold_b=100, concat=True))


def test_geometry_on_the_main_path_is_refused():
    # a stride-1 conv without 'same' padding shrinks the map on the main path of a 2-hop skip
    # (strided convs and Flatten -> dense hops are relayed: see test_legalize_s2d.py)
    t = _Twins(17)
    t.add("input", Input(shape=(2, 6, 6)), Input(shape=(2, 6, 6)))
    t.conv("c0", t.ints((2, 2, 3, 3)), "input")
    t.add("n0", _if(), _neuron(), "c0")
    t.conv("c1", t.ints((2, 2, 3, 3)), "n0", padding=0)
    t.add("n1", _if(), _neuron(), "c1")
    t.conv("c2", t.ints((2, 2, 3, 3)), "n1")
    t.add("n2", _if(), _neuron(), "c2")
    t.conv("c3", t.ints((2, 2, 3, 3)), "n2")
    t.conv("cs", t.ints((2, 2, 3, 3)), "n0", padding=0)
    t.add("add", Add(), Add(), "c3", "cs")
    t.add("n3", _if(), _neuron(), "add")
    _, qg = t.graphs()
    with pytest.raises(UnsupportedError, match=r"^add \(Add\): c1: the map size changes from "
                                               r"\(2, 6, 6\) to \(2, 4, 4\), so relay channels "
                                               r"cannot carry n0's spikes through it$"):
        legalize(qg)
    # a dilated strided conv: space-to-depth relays need dilation 1
    t = _Twins(18)
    t.add("input", Input(shape=(2, 6, 6)), Input(shape=(2, 6, 6)))
    t.conv("c0", t.ints((2, 2, 3, 3)), "input")
    t.add("n0", _if(), _neuron(), "c0")
    w = t.ints((2, 2, 3, 3))
    t.add("c1", Conv2d(weight=w.astype(float), stride=2, padding=2, dilation=2),
          QConv2d(weight=w, stride=2, padding=2, dilation=2), "n0")
    t.add("n1", _if(), _neuron(), "c1")
    t.conv("c2", t.ints((2, 2, 3, 3)), "n1")
    w = t.ints((2, 2, 1, 1))
    t.add("cs", Conv2d(weight=w.astype(float), stride=2), QConv2d(weight=w, stride=2), "n0")
    t.add("add", Add(), Add(), "c2", "cs")
    t.add("n2", _if(), _neuron(), "add")
    _, qg = t.graphs()
    with pytest.raises(UnsupportedError, match=r"c1 has stride \(2, 2\): space-to-depth relays "
                                               r"cannot carry n0's spikes through it \(dilation "
                                               r"\(2, 2\) \(space-to-depth relays need 1\)\)$"):
        legalize(qg)


def test_multihop_refusals_name_every_relay_layer():
    from test_legalize import _dense_skip_over_three_layers

    _, qg = _dense_skip_over_three_layers()
    n0, n1, n2 = (qg.nodes[n] for n in ("n0", "n1", "n2"))
    with pytest.raises(UnsupportedError, match=r"^add \(Add\): the skip source n0 sends graded "
                                               r"spikes; relay neurons copy binary spikes only$"):
        legalize(qg.replace_node("n0", n0.replace(num_message_bits=8)))
    # the second hop's layer is checked too, and layers with the same reason are grouped
    bad = qg.replace_node("n2", n2.replace(current_decay=100))
    with pytest.raises(UnsupportedError, match=r"^add \(Add\): relay channels in n2 would share "
                                               r"the neuron parameters of this layer, which has "
                                               r"current_decay=100 \(relays need 4096"):
        legalize(bad)
    bad = qg.replace_node("n1", n1.replace(current_decay=100)).replace_node(
        "n2", n2.replace(current_decay=100))
    with pytest.raises(UnsupportedError, match=r"relay channels in n1, n2 would share the neuron "
                                               r"parameters of these layers, which have "
                                               r"current_decay=100"):
        legalize(bad)


def test_zoo_resnet_refusal_names_every_join_and_reason():
    from test_quantize_resnet import _resnet

    from neurodeploy.passes.quantize import quantize

    fixed, _ = quantize(_resnet(), "loihi2", lava_compatible=True)
    with pytest.raises(UnsupportedError) as err:
        legalize(fixed)
    msg = str(err.value)
    assert "\n" not in msg and "not built yet" not in msg
    parts = dict(p.split(": ", 1) for p in msg.split("; add"))
    # the block-1 shortcuts: relays through soft-reset layers
    assert parts["add_block2_conv1, add_block2_shortcut_conv (Add)"].startswith(
        "relay channels in block1_lif1, block1_lif2 would share the neuron parameters of these "
        "layers, which have reset='subtract' (relays need 'zero'")
    # block 3 reads the parallel layers block2_lif1 (threshold 2048) and block2_shortcut_lif
    assert parts["_1_block3_conv1 (Add)"] == (
        "skip source block2_shortcut_lif (depth 4) is parallel to block2_lif1 on the main path "
        "to block2_lif2: parallel layers would have to be fused into one layer, which needs "
        "equal neuron parameters and map sizes (threshold 512 vs 2048)")
    # the read-out's skip crosses the stride-2 block3_conv1 (space-to-depth relays could
    # carry it) but starts at the same parallel layers and passes block 3's refused join
    assert parts["_2 (Add)"].startswith("skip source block2_shortcut_lif (depth 4) is parallel "
                                        "to block2_lif1 on the main path to block3_lif2")
    assert parts["_2 (Add)"].endswith(
        "block3_lif1 is fed by add_1_block3_conv1, which cannot be legalized")
    assert "stride" not in msg


# ------------------------------------------------------------------------------ netx + Lava


@pytest.mark.lava
def test_multihop_result_writes_netx_and_matches_lava(tmp_path):
    from test_legalize import _dense_skip_over_three_layers, netx_lava_check

    _, qg = _dense_skip_over_three_layers()
    legal = legalize(qg)
    x = _spikes((4,), batch=2, seed=3, p=0.6)[..., :7]
    layers, back, b = netx_lava_check(legal, x, 7, tmp_path / "multihop.net")
    assert layers == 4  # four dense layers
    assert [back.shapes[n] for n in back.neurons] == [(4,), (8,), (8,), (4,)]
    assert b.spike_counts["n3"].sum() > 0 and b.traces["n2.s"][:, 4:].sum() > 0
