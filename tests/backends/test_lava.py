"""Lava backend on tiny hand-checkable networks: neuron dynamics written out by hand, the
one-step synapse delay, conv orientation against a direct numpy correlation, staggered resets,
unsupported nodes and the missing-Lava error."""

from __future__ import annotations


import numpy as np
import pytest

from neurodeploy.backends import lava as lava_backend
from neurodeploy.errors import MissingExtraError, UnsupportedError
from neurodeploy.ir import Graph
from neurodeploy.ir.nodes import (
    Flatten,
    Input,
    QConv2d,
    QCubaLIF,
    QDense,
    QSigmaDelta,
    QSumPool2d,
)


def _rtz(x: int, k: int) -> int:
    return -((-x) >> k) if x < 0 else x >> k


@pytest.mark.lava
def test_single_neuron_bias_mode_by_hand(lava):
    # u stays 0 (no synaptic input); v = rtz(v * (4096 - 1024), 12) + 100 * 2**1, vth 4 → 256.
    g = Graph.chain([
        ("inp", Input(shape=(1,))),
        ("n", QCubaLIF(threshold=4, current_decay=4096, voltage_decay=1024, bias_exp=1)),
    ])
    res = lava_backend.run(g, np.array([[100]]), steps=6, record=["u", "v", "s"])
    # v: 200, 150+200=350>256 → spike, 0; 200; 350 → spike; 0; 200
    np.testing.assert_array_equal(res.traces["n.v"][0, 0], [200, 0, 200, 0, 200, 0])
    np.testing.assert_array_equal(res.traces["n.s"][0, 0], [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(res.traces["n.u"][0, 0], [0] * 6)
    assert res.spike_counts["n"].tolist() == [3]
    assert res.backend == "lava" and res.layers == ["n"] and res.samples == 1


@pytest.mark.lava
def test_current_decay_and_spike_input_by_hand(lava):
    # Spike-mode graded input straight into a neuron: u = rtz(u * (4096 - 1000), 12) + a * 64.
    g = Graph.chain([
        ("inp", Input(shape=(1,), num_message_bits=8)),
        ("n", QCubaLIF(threshold=1000, current_decay=1000, voltage_decay=4096)),
    ])
    a = [5, 0, 0, -3, 0]
    u, v = 0, 0
    want_u, want_v = [], []
    for x in a:
        u = _rtz(u * (4096 - 1000), 12) + x * 64
        v = _rtz(v * 0, 12) + u
        want_u.append(u)
        want_v.append(v)
    res = lava_backend.run(g, np.array([[a]]), steps=5, input_mode="spikes", record=["u", "v"])
    np.testing.assert_array_equal(res.traces["n.u"][0, 0], want_u)
    np.testing.assert_array_equal(res.traces["n.v"][0, 0], want_v)
    assert want_u[:3] == [320, 241, 182]  # rtz(320 * 3096 / 4096) = 241, then 182


@pytest.mark.lava
def test_current_decay_zero_keeps_current(lava):
    # current_decay = 0 → Lava du = -1: the current is kept exactly (graded input of 7).
    g = Graph.chain([
        ("inp", Input(shape=(1,), num_message_bits=8)),
        ("n", QCubaLIF(threshold=100000, current_decay=0, voltage_decay=4096)),
    ])
    res = lava_backend.run(g, np.array([[[7, 0, 0, 0]]]), steps=4, input_mode="spikes",
                           record={"n": "u"})
    np.testing.assert_array_equal(res.traces["n.u"][0, 0], [448] * 4)


@pytest.mark.lava
def test_dense_one_step_delay_and_batch(lava):
    g = Graph.chain([
        ("inp", Input(shape=(2,))),
        ("a", QCubaLIF(threshold=0, current_decay=4096, voltage_decay=4096)),
        ("d", QDense(weight=[[2, 0], [0, -4], [6, 8]])),
        ("b", QCubaLIF(threshold=100000, current_decay=4096, voltage_decay=4096)),
    ])
    # Layer a: a positive bias spikes every step (v > 0), a zero bias never does.
    res = lava_backend.run(g, np.array([[1, 0], [0, 1]]), steps=3, record={"a": "s", "b": "u"})
    np.testing.assert_array_equal(res.traces["a.s"][0], [[1, 1, 1], [0, 0, 0]])
    # Dense output reaches b one step later: u = W[:, spiking] * 64 from step 2.
    np.testing.assert_array_equal(res.traces["b.u"][0], [[0, 128, 128], [0, 0, 0],
                                                         [0, 384, 384]])
    np.testing.assert_array_equal(res.traces["b.u"][1], [[0, 0, 0], [0, -256, -256],
                                                         [0, 512, 512]])
    assert res.spike_counts["a"].tolist() == [3, 3]
    assert res.traces["b.u"].shape == (2, 3, 3)


def _correlate(x, w, stride, padding, dilation, groups):
    """Direct PyTorch-style cross-correlation of one (C, H, W) sample."""
    c_in, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((c_out, oh, ow), dtype=np.int64)
    per_group = c_out // groups
    for o in range(c_out):
        g0 = (o // per_group) * cg
        for i in range(oh):
            for j in range(ow):
                for c in range(cg):
                    for p in range(kh):
                        for q in range(kw):
                            out[o, i, j] += w[o, c, p, q] * xp[
                                g0 + c, i * stride[0] + p * dilation[0],
                                j * stride[1] + q * dilation[1]]
    return out


@pytest.mark.lava
@pytest.mark.parametrize("stride,padding,dilation,groups", [
    ((1, 1), (0, 0), (1, 1), 1),
    ((2, 1), (1, 0), (1, 1), 1),
    ((1, 2), (0, 2), (2, 1), 2),
])
@pytest.mark.lava
def test_conv_orientation_matches_correlation(lava, stride, padding, dilation, groups):
    rng = np.random.default_rng(0)
    c_in, c_out = 2, 4
    weight = rng.integers(-60, 60, size=(c_out, c_in // groups, 2, 3)) * 2  # even: 8-bit mixed
    x = rng.integers(0, 2, size=(1, c_in, 5, 6, 2))
    conv = QConv2d(weight=weight, stride=stride, padding=padding, dilation=dilation,
                   groups=groups)
    g = Graph.chain([
        ("inp", Input(shape=(c_in, 5, 6))),
        ("c", conv),
        ("n", QCubaLIF(threshold=100000, current_decay=4096, voltage_decay=4096)),
    ])
    res = lava_backend.run(g, x, steps=2, input_mode="spikes", record={"n": "u"})
    want = _correlate(x[0, ..., 0], weight, stride, padding, dilation, groups) * 64
    np.testing.assert_array_equal(res.traces["n.u"][0, ..., 0], np.zeros_like(want))
    np.testing.assert_array_equal(res.traces["n.u"][0, ..., 1], want)


@pytest.mark.lava
def test_conv_positive_weight_exp_and_sum_pool(lava):
    x = np.zeros((1, 1, 4, 4, 2), dtype=np.int64)
    x[0, 0, 0, 1, 0] = 1
    x[0, 0, 3, 3, 0] = 1
    g = Graph.chain([
        ("inp", Input(shape=(1, 4, 4))),
        ("p", QSumPool2d(kernel_size=(2, 2), stride=(2, 2), weight=3, weight_exp=1)),
        ("n", QCubaLIF(threshold=100000, current_decay=4096, voltage_decay=4096)),
    ])
    res = lava_backend.run(g, x, steps=2, input_mode="spikes", record={"n": "u"})
    np.testing.assert_array_equal(res.traces["n.u"][0, 0, :, :, 1], [[6 * 64, 0], [0, 6 * 64]])


@pytest.mark.lava
def test_flatten_uses_pytorch_order(lava):
    # A (2, 1, 2) layer spikes in a known pattern; a Dense row picks flat index k.
    bias = np.array([[[1, 0]], [[0, 1]]])  # flat (C, H, W) order: [1, 0, 0, 1]
    g = Graph.chain([
        ("inp", Input(shape=(2, 1, 2))),
        ("a", QCubaLIF(threshold=0, current_decay=4096, voltage_decay=4096)),
        ("f", Flatten()),
        ("d", QDense(weight=np.eye(4, dtype=int) * 2)),
        ("b", QCubaLIF(threshold=100000, current_decay=4096, voltage_decay=4096)),
    ])
    res = lava_backend.run(g, bias[None], steps=2, record={"b": "u"})
    np.testing.assert_array_equal(res.traces["b.u"][0, :, 1], [128, 0, 0, 128])


@pytest.mark.lava
def test_reset_interval_staggers_layers(lava):
    # Input layer (depth 0) resets at tau % 3 == 1, the next layer (depth 1) at tau % 3 == 2.
    g = Graph.chain([
        ("inp", Input(shape=(1,))),
        ("a", QCubaLIF(threshold=100000, current_decay=4096, voltage_decay=0)),
        ("d", QDense(weight=[[0]])),
        ("b", QCubaLIF(threshold=100000, current_decay=4096, voltage_decay=0, bias=1)),
    ])
    res = lava_backend.run(g, np.array([[5]]), steps=7, reset_interval=3, record={
        "a": "v", "b": "v"})
    np.testing.assert_array_equal(res.traces["a.v"][0, 0], [5, 10, 15, 5, 10, 15, 5])
    np.testing.assert_array_equal(res.traces["b.v"][0, 0], [1, 1, 2, 3, 1, 2, 3])
    res = lava_backend.run(g, np.array([[5]]), steps=4, reset_interval=3, reset_offset=1,
                           record={"a": "v"})
    np.testing.assert_array_equal(res.traces["a.v"][0, 0], [5, 5, 10, 15])


@pytest.mark.lava
def test_unsupported_nodes_are_named(lava):
    g = Graph.chain([("inp", Input(shape=(2,))), ("sd", QSigmaDelta())])
    with pytest.raises(UnsupportedError, match=r"sd \(QSigmaDelta\).*supported node types"):
        lava_backend.run(g, np.zeros((1, 2)), steps=1)
    g = Graph.chain([
        ("inp", Input(shape=(1, 2, 2))),
        ("c", QConv2d(weight=np.ones((1, 1, 1, 1)), weight_exp=-1)),
        ("n", QCubaLIF()),
    ])
    with pytest.raises(UnsupportedError, match="weight_exp"):
        lava_backend.run(g, np.zeros((1, 1, 2, 2, 1)), steps=1, input_mode="spikes")


def test_missing_lava_raises_missing_extra(monkeypatch):
    def fail(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(lava_backend, "_import_module", fail)
    g = Graph.chain([("inp", Input(shape=(1,))), ("n", QCubaLIF())])
    with pytest.raises(MissingExtraError, match=r"Python 3\.10.*neurodeploy\[lava\]") as err:
        lava_backend.run(g, np.zeros((1, 1)), steps=1)
    assert "\n" not in str(err.value)
    assert not lava_backend.available()


@pytest.mark.lava
@pytest.mark.parametrize("reset_interval", [None, 4])
def test_soft_reset_runs_on_lava_like_hw_sim(lava, reset_interval):
    """reset='subtract' (neurodeploy's soft-reset kind) runs as a custom Lava process."""
    from neurodeploy.hw_sim import run as hw_run

    rng = np.random.default_rng(3)
    g = Graph.chain([
        ("inp", Input(shape=(3,))),
        ("a", QCubaLIF(threshold=40, current_decay=4096, voltage_decay=256, bias_exp=6,
                       reset="subtract")),
        ("d", QDense(weight=2 * rng.integers(-40, 60, (4, 3)))),
        ("b", QCubaLIF(threshold=30, current_decay=2048, voltage_decay=512, reset="subtract")),
    ])
    x = np.array([[50, 90, 130]])
    kw = dict(steps=9, record=["u", "v", "s"], reset_interval=reset_interval)
    lava_res = lava_backend.run(g, x, **kw)
    hw_res = hw_run(g, x, **kw)
    for key, value in hw_res.traces.items():
        np.testing.assert_array_equal(lava_res.traces[key], value, err_msg=key)
    v = hw_res.traces["a.v"]
    assert hw_res.traces["a.s"].any() and (v[hw_res.traces["a.s"].astype(bool)] != 0).any()
