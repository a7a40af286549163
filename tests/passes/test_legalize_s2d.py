"""Tests of relays through downsampling layers (neurodeploy.passes.legalize): space-to-depth
relays through strided convs (the standard downsampling ResNet block, two in a row, a skip over
two strided hops), Flatten → dense relay hops, the re-pointed strided conv checked by brute
force, refusals, and a legalized downsampling block run in Lava equal to hw_sim.

Positive cases use the exact float/fixed twins of test_legalize.py: the legalized graph's
spikes equal the float graph's aligned by pipeline depth, on non-trivial spike trains."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy.errors import UnsupportedError
from neurodeploy.ir import Add, Concat, Conv2d, Flatten, Input, QConv2d
from neurodeploy.passes.legalize import legalize, s2d_taps

sys.path.insert(0, str(Path(__file__).parent))
from test_legalize import _if, _neuron, _spikes, _Twins  # noqa: E402
from test_legalize_multihop import _check_float  # noqa: E402


def _sconv(t: _Twins, name: str, w: np.ndarray, pred: str, stride: int, padding: int):
    t.add(name, Conv2d(weight=w.astype(float), stride=stride, padding=padding),
          QConv2d(weight=w, stride=stride, padding=padding), pred)


def _block(t: _Twins, src: str, cin: int, cout: int, tag: str) -> str:
    """The standard downsampling block from ``src``; returns its output layer."""
    _sconv(t, f"{tag}c1", t.ints((cout, cin, 3, 3), -10, 40), src, 2, 1)
    t.add(f"{tag}n1", _if(), _neuron(), f"{tag}c1")
    t.conv(f"{tag}c2", t.ints((cout, cout, 3, 3), -10, 40), f"{tag}n1")
    _sconv(t, f"{tag}sc", t.ints((cout, cin, 1, 1), 0, 60), src, 2, 0)
    t.add(f"{tag}add", Add(), Add(), f"{tag}c2", f"{tag}sc")
    t.add(f"{tag}n2", _if(), _neuron(), f"{tag}add")
    return f"{tag}n2"


def _one_block():
    t = _Twins(21)
    t.add("input", Input(shape=(2, 8, 8)), Input(shape=(2, 8, 8)))
    t.conv("c0", t.ints((3, 2, 3, 3), -10, 50), "input")
    t.add("n0", _if(), _neuron(), "c0")
    _block(t, "n0", 3, 4, "")
    return t.graphs()


def test_standard_downsampling_block():
    fg, qg = _one_block()
    legal = legalize(qg)
    # n1 = [its 4 channels ; n0's 3 channels in space-to-depth form (c, a, b): 3·2·2 = 12]
    assert legal.shapes["n1"] == (16, 4, 4) and legal.shapes["n2"] == (4, 4, 4)
    q = qg.nodes
    c1 = legal.nodes["c1"]
    assert c1.stride == (2, 2) and c1.padding == (1, 1)
    np.testing.assert_array_equal(c1.weight[:4, :3], q["c1"].weight)
    # relay (c, a, b) reads input channel c at tap (a + 1, b + 1) and nothing else
    r = c1.weight[4, 0, 1, 1]
    assert r << c1.weight_exp > 100
    ident = np.zeros((12, 3, 3, 3), dtype=int)
    for c in range(3):
        for a in range(2):
            for b in range(2):
                ident[4 * c + 2 * a + b, c, a + 1, b + 1] = r
    np.testing.assert_array_equal(c1.weight[4:], ident)
    # the 1x1 stride-2 shortcut is a 1x1 stride-1 conv on relays (c, 0, 0), merged into c2's
    # centre tap
    c2 = legal.nodes["c2"]
    assert "sc" not in legal.nodes and c2.stride == (1, 1) and c2.weight.shape == (4, 16, 3, 3)
    eff = c2.weight.astype(int) << c2.weight_exp
    np.testing.assert_array_equal(eff[:, :4], q["c2"].weight)
    np.testing.assert_array_equal(eff[:, 4 + 4 * np.arange(3), 1, 1], q["sc"].weight[:, :, 0, 0])
    relay = eff[:, 4:].copy()
    relay[:, 4 * np.arange(3), 1, 1] = 0
    assert not relay.any()
    x = _spikes((2, 8, 8), batch=4, seed=1)
    h = _check_float(fg, legal, x, {})
    # every relay channel copies its source cell one step later
    for c in range(3):
        for a in range(2):
            for b in range(2):
                np.testing.assert_array_equal(h["n1.s"][:, 4 + 4 * c + 2 * a + b, ..., 1:],
                                              h["n0.s"][:, c, a::2, b::2, :-1])
    assert h["n1.s"][:, 4:].sum() > 0


def test_three_by_three_strided_shortcut_over_two_hops():
    # n0 (2,6,6) -> c1 (stride 2) -> n1 (2,3,3) -> c2 -> n2 -> c3 + cs(n0: 3x3 stride 2 pad 1)
    # -> n3: cs becomes a stride-1 conv over n1's space-to-depth relays, kernel 3, padding 1
    t = _Twins(28)
    t.add("input", Input(shape=(2, 6, 6)), Input(shape=(2, 6, 6)))
    t.conv("c0", t.ints((2, 2, 3, 3), -10, 50), "input")
    t.add("n0", _if(), _neuron(), "c0")
    _sconv(t, "c1", t.ints((2, 2, 3, 3), -10, 50), "n0", 2, 1)
    t.add("n1", _if(), _neuron(), "c1")
    t.conv("c2", t.ints((2, 2, 3, 3), -10, 50), "n1")
    t.add("n2", _if(), _neuron(), "c2")
    t.conv("c3", t.ints((2, 2, 3, 3), -10, 40), "n2")
    _sconv(t, "cs", t.ints((2, 2, 3, 3), -10, 40), "n0", 2, 1)
    t.add("add", Add(), Add(), "c3", "cs")
    t.add("n3", _if(), _neuron(), "add")
    fg, qg = t.graphs()
    legal = legalize(qg)
    assert legal.shapes["n1"] == (10, 3, 3) and legal.shapes["n2"] == (10, 3, 3)
    c3 = legal.nodes["c3"]
    assert c3.stride == (1, 1) and c3.padding == (1, 1) and c3.weight.shape == (2, 10, 3, 3)
    # tap ky of cs reads phase (ky - 1) mod 2 at offset floor((ky - 1)/2) + 1 = 0, 1, 1
    eff = c3.weight.astype(int) << c3.weight_exp
    ws, off, ph = qg.nodes["cs"].weight, [0, 1, 1], [1, 0, 1]
    for ky in range(3):
        for kx in range(3):
            np.testing.assert_array_equal(
                eff[:, 2 + 4 * np.arange(2) + 2 * ph[ky] + ph[kx], off[ky], off[kx]],
                ws[:, :, ky, kx])
    x = _spikes((2, 6, 6), batch=6, seed=6, p=0.6)
    _check_float(fg, legal, x, {})


def test_two_downsampling_blocks_in_a_row():
    t = _Twins(22)
    t.add("input", Input(shape=(2, 8, 8)), Input(shape=(2, 8, 8)))
    t.conv("c0", t.ints((3, 2, 3, 3), -10, 50), "input")
    t.add("n0", _if(), _neuron(), "c0")
    out = _block(t, "n0", 3, 4, "a")
    _block(t, out, 4, 4, "b")
    fg, qg = t.graphs()
    legal = legalize(qg)
    assert legal.shapes["an1"] == (16, 4, 4) and legal.shapes["bn1"] == (20, 2, 2)
    assert legal.shapes["bn2"] == (4, 2, 2)
    x = _spikes((2, 8, 8), batch=6, seed=2, p=0.6)
    _check_float(fg, legal, x, {})


def test_skip_over_two_strided_hops_is_space_to_depth_of_space_to_depth():
    # n0 (2,8,8) -> s2 -> n1 (3,4,4) -> s2 -> n2 (3,2,2) -> c3 + sc(n0: 1x1 stride 4) -> n3
    t = _Twins(23)
    t.add("input", Input(shape=(2, 8, 8)), Input(shape=(2, 8, 8)))
    t.conv("c0", t.ints((2, 2, 3, 3), -10, 50), "input")
    t.add("n0", _if(), _neuron(), "c0")
    _sconv(t, "c1", t.ints((3, 2, 3, 3), -10, 40), "n0", 2, 1)
    t.add("n1", _if(), _neuron(), "c1")
    _sconv(t, "c2", t.ints((3, 3, 3, 3), -10, 40), "n1", 2, 1)
    t.add("n2", _if(), _neuron(), "c2")
    t.conv("c3", t.ints((3, 3, 3, 3), -10, 40), "n2")
    _sconv(t, "sc", t.ints((3, 2, 1, 1), 10, 80), "n0", 4, 0)
    t.add("add", Add(), Add(), "c3", "sc")
    t.add("n3", _if(), _neuron(), "add")
    fg, qg = t.graphs()
    legal = legalize(qg)
    # n1 relays n0 as 2·4 = 8 channels; n2 relays each of them again: 8·4 = 32 channels
    assert legal.shapes["n1"] == (11, 4, 4) and legal.shapes["n2"] == (35, 2, 2)
    x = _spikes((2, 8, 8), batch=6, seed=3, p=0.6)
    h = _check_float(fg, legal, x, {})
    # n2's relay (c, a, b, a2, b2) holds n0[c, 4y + a + 2·a2, 4x + b + 2·b2] two steps later
    for c in range(2):
        for a in range(2):
            for b in range(2):
                for a2 in range(2):
                    for b2 in range(2):
                        k = 3 + (4 * c + 2 * a + b) * 4 + 2 * a2 + b2
                        np.testing.assert_array_equal(
                            h["n2.s"][:, k, ..., 2:],
                            h["n0.s"][:, c, a + 2 * a2::4, b + 2 * b2::4, :-2])
    assert h["n2.s"][:, 3:].sum() > 0


def test_skip_from_a_conv_layer_to_a_dense_read_out_two_dense_layers_later():
    # n0 (2,3,3) -> flat -> f1 -> n1 (6) -> f2 -> n2 (5) -> f3 + fs(flatS(n0)) -> n3 (4)
    t = _Twins(24)
    t.add("input", Input(shape=(2, 3, 3)), Input(shape=(2, 3, 3)))
    t.conv("c0", t.ints((2, 2, 3, 3), -10, 50), "input")
    t.add("n0", _if(), _neuron(), "c0")
    t.add("flat", Flatten(), Flatten(), "n0")
    t.dense("f1", t.ints((6, 18), -20, 40, even=True), "flat")
    t.add("n1", _if(), _neuron(), "f1")
    t.dense("f2", t.ints((5, 6), -20, 60, even=True), "n1")
    t.add("n2", _if(), _neuron(), "f2")
    t.dense("f3", t.ints((4, 5), -20, 50, even=True), "n2")
    t.add("flatS", Flatten(), Flatten(), "n0")
    ws = t.ints((4, 18), -10, 30, even=True)
    t.dense("fs", ws, "flatS")
    t.add("add", Add(), Add(), "f3", "fs")
    t.add("n3", _if(), _neuron(), "add")
    fg, qg = t.graphs()
    legal = legalize(qg)
    assert "flatS" not in legal.nodes and "fs" not in legal.nodes
    # n1 relays n0's 18 values (flatten order), n2 relays those 18 neurons of n1
    assert legal.shapes["n1"] == (24,) and legal.shapes["n2"] == (23,)
    q = qg.nodes
    np.testing.assert_array_equal(legal.nodes["f1"].weight[:6, :18], q["f1"].weight)
    np.testing.assert_array_equal(legal.nodes["f1"].weight[6:], 102 * np.eye(18))
    np.testing.assert_array_equal(legal.nodes["f3"].weight,
                                  np.hstack([q["f3"].weight, ws]))
    x = _spikes((2, 3, 3), batch=8, seed=4, p=0.6)
    h = _check_float(fg, legal, x, {})
    np.testing.assert_array_equal(h["n1.s"][:, 6:, 1:], h["n0.s"].reshape(8, 18, -1)[..., :-1])


def test_flatten_read_out_after_a_strided_hop():
    # n0 (2,4,4) -> s2 -> n1 (3,2,2) -> flat -> f2 -> n2 (6) -> f3 + fs(flatS(n0)) -> n3:
    # fs's columns move to n1's space-to-depth positions, then to n2's relay neurons
    t = _Twins(25)
    t.add("input", Input(shape=(2, 4, 4)), Input(shape=(2, 4, 4)))
    t.conv("c0", t.ints((2, 2, 3, 3), -10, 50), "input")
    t.add("n0", _if(), _neuron(), "c0")
    _sconv(t, "c1", t.ints((3, 2, 3, 3), -10, 40), "n0", 2, 1)
    t.add("n1", _if(), _neuron(), "c1")
    t.add("flat", Flatten(), Flatten(), "n1")
    t.dense("f2", t.ints((6, 12), -20, 50, even=True), "flat")
    t.add("n2", _if(), _neuron(), "f2")
    t.dense("f3", t.ints((4, 6), -20, 50, even=True), "n2")
    t.add("flatS", Flatten(), Flatten(), "n0")
    ws = t.ints((4, 32), -10, 30, even=True)
    t.dense("fs", ws, "flatS")
    t.add("add", Add(), Add(), "f3", "fs")
    t.add("n3", _if(), _neuron(), "add")
    fg, qg = t.graphs()
    legal = legalize(qg)
    assert legal.shapes["n1"] == (11, 2, 2) and legal.shapes["n2"] == (6 + 32,)
    # n2's relay neuron k holds n1's relay (c, a, b) at (y, x) = n0[c, 2y + a, 2x + b]; f3's
    # column for it carries fs's column of that n0 value
    w = legal.nodes["f3"].weight
    cols = [(c, 2 * y + a, 2 * x + b) for c in range(2) for a in range(2) for b in range(2)
            for y in range(2) for x in range(2)]
    want = np.stack([ws[:, c * 16 + r * 4 + col] for c, r, col in cols], axis=1)
    np.testing.assert_array_equal(w[:, 6:], want)
    x = _spikes((2, 4, 4), batch=8, seed=5, p=0.6)
    _check_float(fg, legal, x, {})


@pytest.mark.parametrize("k, p, d, s, h, n", [
    (1, 0, 1, 2, 2, 8), (3, 1, 1, 2, 2, 8), (3, 1, 1, 2, 2, 7), (3, 0, 1, 2, 2, 9),
    (5, 2, 1, 2, 2, 10), (3, 1, 2, 2, 2, 8), (1, 0, 1, 4, 2, 8), (3, 1, 1, 4, 2, 9),
    (3, 1, 1, 3, 3, 9), (2, 0, 1, 2, 1, 6),
])
def test_repointed_strided_conv_equals_the_original_by_brute_force(k, p, d, s, h, n):
    rng = np.random.default_rng(k * 100 + p * 10 + s + n)
    c = 2
    w = rng.integers(-5, 6, (3, c, k, k)).astype(float)
    x = rng.integers(0, 2, (1, c, n, n)).astype(float)
    want = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), stride=s, padding=p,
                                      dilation=d).numpy()
    m = -(-n // h)  # the space-to-depth map: channel (c, a, b) at (y, x) = x[c, hy+a, hx+b]
    xp = np.zeros((1, c, m * h, m * h))
    xp[..., :n, :n] = x
    s2d = xp.reshape(1, c, m, h, m, h).transpose(0, 1, 3, 5, 2, 4).reshape(1, c * h * h, m, m)
    n_out = want.shape[-1]
    a, tap, p2, k2, s2 = s2d_taps(k, p, d, s, h, m, n_out)
    w2 = np.zeros((3, c, h, h, k2, k2))
    for iy in range(k):
        for ix in range(k):
            w2[:, :, a[iy], a[ix], tap[iy], tap[ix]] += w[:, :, iy, ix]
    got = torch.nn.functional.conv2d(torch.tensor(s2d),
                                     torch.tensor(w2.reshape(3, c * h * h, k2, k2)),
                                     stride=s2, padding=p2).numpy()
    np.testing.assert_array_equal(got, want)
    assert np.abs(want).sum() > 0


def test_s2d_refusals():
    with pytest.raises(UnsupportedError, match="stride 3 is not a multiple"):
        s2d_taps(3, 1, 1, 3, 2)
    # a stride-3 3x3 pad-1 hop has no tap for phase 2
    t = _Twins(26)
    t.add("input", Input(shape=(2, 6, 6)), Input(shape=(2, 6, 6)))
    t.conv("c0", t.ints((2, 2, 3, 3)), "input")
    t.add("n0", _if(), _neuron(), "c0")
    _sconv(t, "c1", t.ints((2, 2, 3, 3)), "n0", 3, 1)
    t.add("n1", _if(), _neuron(), "c1")
    t.conv("c2", t.ints((2, 2, 3, 3)), "n1")
    _sconv(t, "sc", t.ints((2, 2, 1, 1)), "n0", 3, 0)
    t.add("add", Add(), Add(), "c2", "sc")
    t.add("n2", _if(), _neuron(), "add")
    with pytest.raises(UnsupportedError, match=r"^add \(Add\): c1 has stride \(3, 3\): "
                                               r"space-to-depth relays cannot carry n0's spikes "
                                               r"through it \(kernel \(3, 3\) with padding "
                                               r"\(1, 1\) has no tap for phase 2 of stride 3\)$"):
        legalize(t.graphs()[1])
    # a Concat operand relayed in space-to-depth form cannot be the concatenation (a 4x4
    # stride-2 pad-2 conv keeps a 2x2 map, so the Concat is valid IR)
    t = _Twins(27)
    t.add("input", Input(shape=(2, 2, 2)), Input(shape=(2, 2, 2)))
    t.conv("c0", t.ints((2, 2, 3, 3)), "input")
    t.add("n0", _if(), _neuron(), "c0")
    _sconv(t, "c1", t.ints((2, 2, 4, 4)), "n0", 2, 2)
    t.add("n1", _if(), _neuron(), "c1")
    t.conv("c2", t.ints((2, 2, 3, 3)), "n1")
    t.add("n2", _if(), _neuron(), "c2")
    t.add("cat", Concat(), Concat(), "n0", "n2")
    with pytest.raises(UnsupportedError, match=r"^cat \(Concat\): n0 would be relayed through "
                                               r"c1 \(a strided conv\).*n2 cannot be the "
                                               r"concatenation$"):
        legalize(t.graphs()[1])


@pytest.mark.lava
def test_legalized_downsampling_block_writes_netx_and_matches_lava(tmp_path):
    from test_legalize import netx_lava_check

    _, qg = _one_block()
    legal = legalize(qg)
    x = _spikes((2, 8, 8), batch=1, seed=9, p=0.6)[..., :5]
    layers, back, b = netx_lava_check(legal, x, 5, tmp_path / "s2d.net")
    assert layers == 3
    assert [back.shapes[n] for n in back.neurons] == [(3, 8, 8), (16, 4, 4), (4, 4, 4)]
    assert b.spike_counts["n2"].sum() > 0 and b.traces["n1.s"][:, 4:].sum() > 0
