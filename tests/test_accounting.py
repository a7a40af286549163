"""Event accounting: per-core per-step counts checked against hand counts on tiny multi-core
networks (dense and convolution, with hops in both mesh directions), against an independent
count (spikes × fan-out from recorded traces, by explicit loops) on random networks, and the
corner cases of the active-update rule; plus accumulation over runs and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy.accounting import HOST, Accountant
from neurodeploy.errors import NeurodeployError, UnsupportedError
from neurodeploy.hw_sim import lava_weights, run
from neurodeploy.ir import Flatten, Graph, Input, Linear, QConv2d, QCubaLIF, QDense, QSumPool2d
from neurodeploy.mapping import map_graph
from neurodeploy.targets import load_target

from target_edits import small_target

pytestmark = pytest.mark.usefixtures("one_thread")


def memoryless(threshold: int, **kw) -> QCubaLIF:
    """u = 64·a and v = u (+ bias) each step: a neuron's step depends on this step's input."""
    return QCubaLIF(threshold=threshold, current_decay=4096, voltage_decay=4096, **kw)


def tiny_dense() -> Graph:
    w0 = np.array([[10, 0, 10],
                   [10, 10, 0],
                   [0, 10, 0],
                   [10, 10, 0]])  # input 2 has no synapse into lif0's second core (rows 2, 3)
    w1 = np.array([[10, 10, 10, 10],
                   [5, 5, 5, 5]])
    return Graph.chain([("input", Input((3,))), ("fc0", QDense(weight=w0)),
                        ("lif0", memoryless(15)), ("fc1", QDense(weight=w1)),
                        ("lif1", memoryless(15))])


#: input spikes (3 inputs × 5 steps) of sample 0; sample 1 is silent
TINY_SPIKES = np.array([[1, 1, 0, 1, 0],
                        [0, 1, 0, 1, 0],
                        [0, 0, 1, 1, 0]])


def tiny_dense_activity(tmp_path: Path):
    g = tiny_dense()
    m = map_graph(g, small_target(tmp_path, 2, (2, 2)))
    acc = Accountant(g, m)
    x = np.zeros((2, 3, 5), dtype=np.int64)
    x[0] = TINY_SPIKES
    r = run(g, x, steps=5, input_mode="spikes", observer=acc)
    return g, m, acc.result(), r


def test_tiny_dense_network_by_hand(tmp_path):
    g, m, act, r = tiny_dense_activity(tmp_path)
    # lif0 in two cores of 2 neurons, lif1 in one; tiles along the path (0,0) (1,0) (1,1)
    assert [(c.layer, c.start, c.tile) for c in m.cores] == \
        [("lif0", 0, (0, 0)), ("lif0", 2, (1, 0)), ("lif1", 0, (1, 1))]
    assert m.synapse_encoding == {"fc0": "sparse", "fc1": "dense"}
    assert act.steps == 5 and act.samples == 2 and act.runs == 1
    # Host messages: input 0 and 1 reach both lif0 cores, input 2 only core 0.
    assert act.input_spikes.tolist() == [[1, 1, 0], [2, 2, 0], [1, 0, 2], [3, 2, 0],
                                         [0, 0, 3]]
    # fc0 is sparse: non-zero weights from the input into the core. In 0: 2 (core 0), 1
    # (core 1); in 1: 1, 2; in 2: 1, 0. fc1 is dense: a message reads both neurons of core 2.
    assert act.syn_ops["sparse"].tolist() == [[2, 1, 0], [3, 3, 0], [1, 0, 0], [4, 3, 0],
                                              [0, 0, 0]]
    assert act.syn_ops["dense"].tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 4], [0, 0, 0],
                                             [0, 0, 6]]
    # lif0's input a(t) = 10·W0 x(t-1): [10,10,0,10], [10,20,10,20], [10,0,0,0], [20,20,10,20]
    # at steps 1-4; it spikes where a > 15: (n1, n3) at step 2, (n0, n1, n3) at step 4.
    # lif1 gets 10+10 and 5+5 at step 3 and its neuron 0 spikes.
    assert act.output_spikes.tolist() == [[0, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 1],
                                          [2, 1, 0]]
    assert act.output_spikes[:, :2].sum() == r.spike_counts["lif0"].sum()
    # Active: a(t) != 0 or a(t-1) != 0 (u = 64·a is the state). Neuron 2 first gets input at
    # step 2; lif1 is active at steps 3 (input) and 4 (state before).
    assert act.active_updates.tolist() == [[0, 0, 0], [2, 1, 0], [2, 2, 0], [2, 2, 2],
                                           [2, 2, 2]]
    # inactive = 2 samples x 2 neurons - active (the silent sample never wakes up)
    assert act.inactive_updates.tolist() == (4 - act.active_updates).tolist()
    # Core-to-core messages: spikes of lif0 to core 2. Core 0 -> 2 is 1 east + 1 north hop,
    # core 1 -> 2 is 1 north hop.
    assert act.messages_out.tolist() == [[0, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0],
                                         [2, 1, 0]]
    assert act.hops_ew.tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0], [2, 0, 0]]
    assert act.hops_ns.tolist() == [[0, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0], [2, 1, 0]]
    routes = {(int(a), int(b)): (int(e), int(n)) for a, b, e, n in zip(
        act.route_src, act.route_dst, act.route_hops_ew, act.route_hops_ns)}
    assert routes == {(HOST, 0): (0, 0), (HOST, 1): (0, 0), (0, 2): (1, 1), (1, 2): (0, 1)}
    assert act.neurons.tolist() == [2, 2, 2]
    assert act.synaptic_memory_bits.tolist() == [c.synaptic_memory_bits for c in m.cores]
    assert act.pipeline_depth == 2 and act.tiles_used == 3 and act.chips_used == 1


def tiny_conv() -> Graph:
    conv = QConv2d(weight=np.full((2, 1, 3, 3), 10), padding=(1, 1))
    pool = QSumPool2d(kernel_size=(2, 2), stride=(2, 2), weight=10)
    return Graph.chain([("input", Input((1, 4, 4))), ("conv", conv), ("lif", memoryless(5)),
                        ("pool", pool), ("lifp", memoryless(1000))])


def test_tiny_conv_network_by_hand(tmp_path):
    g = tiny_conv()
    m = map_graph(g, small_target(tmp_path, 8, (4, 2)))
    # lif (2x4x4) in HWC order, 8 neurons per core: core r holds output row r; lifp: core 4.
    assert [(c.layer, c.tile) for c in m.cores] == \
        [("lif", (0, 0)), ("lif", (1, 0)), ("lif", (2, 0)), ("lif", (3, 0)), ("lifp", (3, 1))]
    x = np.zeros((1, 1, 4, 4, 3), dtype=np.int64)
    for y, xx in [(0, 0), (1, 1), (3, 3)]:
        x[0, 0, y, xx, 0] = 1
    acc = Accountant(g, m)
    run(g, x, steps=3, input_mode="spikes", observer=acc)
    act = acc.result()
    # Step 0, host events: (0,0) reaches rows 0-1 at columns 0-1 (2 positions x 2 channels
    # per core); (1,1) rows 0-2, columns 0-2 (6 per core); (3,3) rows 2-3, columns 2-3 (4).
    assert act.input_spikes[0].tolist() == [2, 2, 2, 1, 0]
    assert act.syn_ops["dense"][0].tolist() == [10, 10, 10, 4, 0]
    # Step 1: lif spikes wherever a neighbour had an event: rows 0-2 x columns 0-2 plus
    # (2,3), (3,2), (3,3), both channels: 6, 6, 8, 4 per row. Each spike is one pool tap
    # in core 4 and one message.
    assert act.output_spikes[1].tolist() == [6, 6, 8, 4, 0]
    assert act.input_spikes[1].tolist() == [0, 0, 0, 0, 24]
    assert act.syn_ops["dense"][1].tolist() == [0, 0, 0, 0, 24]
    # Core r sits at (r, 0), core 4 at (3, 1): 3 - r east-west hops and 1 north-south hop.
    assert act.hops_ew[1].tolist() == [6 * 3, 6 * 2, 8 * 1, 0, 0]
    assert act.hops_ns[1].tolist() == [6, 6, 8, 4, 0]
    # Active: the 24 neurons with input at step 1, again at step 2 (their state before).
    # lifp: every window holds a spike at step 2 (4, 2, 2, 4 per channel): all 8 active.
    assert act.active_updates.tolist() == [[0, 0, 0, 0, 0], [6, 6, 8, 4, 0],
                                           [6, 6, 8, 4, 8]]
    assert act.syn_ops["dense"][2].sum() == 0 and act.output_spikes[2].sum() == 0


# ------------------------------------------------------------------------------ independent


def fanout_loops(g: Graph, m, syn: str, src_shape, dst: str) -> np.ndarray:
    """``(presynaptic neurons, cores)`` synapse entries by explicit loops over the weights
    (dense/sparse by the mapping's encoding) or the receptive fields (conv, pool)."""
    node = g.nodes[syn]
    dst_shape = g.shapes[dst]
    core = m.core_of(dst, tuple(dst_shape))
    n_src = int(np.prod(src_shape))
    out = np.zeros((n_src, m.cores_used), dtype=np.int64)
    if isinstance(node, QDense):
        enc = m.synapse_encoding[syn]
        w = np.asarray(node.weight)
        for j in range(n_src):
            for i in range(w.shape[0]):
                if w[i, j] != 0:
                    out[j, core[i]] += 1
            if enc == "dense":
                for c in np.flatnonzero(out[j]):
                    out[j, c] = m.cores[c].neurons
        return out
    c_in, h_in, w_in = src_shape
    c_out, h_out, w_out = dst_shape
    if isinstance(node, QSumPool2d):
        (kh, kw), (sh, sw), (ph, pw), (dh, dw), groups = \
            node.kernel_size, node.stride, node.padding, (1, 1), c_out
    else:
        kh, kw = node.weight.shape[2:]
        (sh, sw), (ph, pw), (dh, dw), groups = node.stride, node.padding, node.dilation, \
            node.groups
    cin_g, cout_g = c_in // groups, c_out // groups
    for co in range(c_out):
        g0 = co // cout_g
        for oy in range(h_out):
            for ox in range(w_out):
                i = (co * h_out + oy) * w_out + ox
                for ci in range(g0 * cin_g, (g0 + 1) * cin_g):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
                            if 0 <= iy < h_in and 0 <= ix < w_in:
                                out[(ci * h_in + iy) * w_in + ix, core[i]] += 1
    return out


def random_net(rng: np.random.Generator) -> Graph:
    """conv (stride 2, groups 2) -> pool -> dense with zeros, mixed decays, biases."""
    w_conv = rng.integers(-40, 60, size=(4, 1, 3, 3))
    w_fc = rng.integers(-30, 50, size=(16, 4 * 2 * 2))
    w_fc[rng.random(w_fc.shape) < 0.6] = 0
    lif = dict(current_decay=1200, voltage_decay=300)
    return Graph.chain([
        ("input", Input((2, 8, 8))),
        ("conv", QConv2d(weight=w_conv, stride=(2, 2), padding=(1, 1), groups=2)),
        ("lif1", QCubaLIF(threshold=30, bias=rng.integers(0, 3, size=(4, 4, 4)), bias_exp=6,
                          **lif)),
        ("pool", QSumPool2d(kernel_size=(2, 2), stride=(2, 2), weight=20)),
        ("lif2", QCubaLIF(threshold=25, reset="subtract", **lif)),
        ("flat", Flatten()),
        ("fc", QDense(weight=w_fc)),
        ("lif3", QCubaLIF(threshold=20, **lif)),
    ])


def test_counts_equal_spikes_times_fanout(tmp_path):
    rng = np.random.default_rng(3)
    g = random_net(rng)
    m = map_graph(g, small_target(tmp_path, 12, (4, 4)))
    assert m.layers["lif1"]["cores"] > 1 and m.layers["lif3"]["cores"] > 1
    steps, batch = 7, 3
    x = (rng.random((batch, 2, 8, 8, steps)) < 0.3).astype(np.int64)
    acc = Accountant(g, m)
    r = run(g, x, steps=steps, input_mode="spikes", observer=acc, record=["u", "v", "s"])
    act = acc.result()
    spikes = {"input": x.reshape(batch, -1, steps).transpose(2, 0, 1)}  # (T, B, N)
    for name in ("lif1", "lif2", "lif3"):
        spikes[name] = r.traces[f"{name}.s"].reshape(batch, -1, steps).transpose(2, 0, 1)
    conns = [("conv", "input", (2, 8, 8), "lif1"), ("pool", "lif1", (4, 4, 4), "lif2"),
             ("fc", "lif2", (4, 2, 2), "lif3")]
    syn = np.zeros((steps, m.cores_used), dtype=np.int64)
    msg = np.zeros_like(syn)
    ew = np.zeros_like(syn)
    ns = np.zeros_like(syn)
    for name, src, shape, dst in conns:
        fan = fanout_loops(g, m, name, shape, dst)
        per_step = spikes[src].sum(axis=1)  # (T, N) summed over the batch
        syn += per_step @ fan
        msg += per_step @ (fan > 0)
        if src != "input":
            src_core = m.core_of(src, tuple(g.shapes[src]))
            for j, c in zip(*np.nonzero(fan)):
                a = src_core[j]
                (xa, ya), (xb, yb) = m.cores[a].tile, m.cores[c].tile
                ew[:, a] += per_step[:, j] * abs(xa - xb)
                ns[:, a] += per_step[:, j] * abs(ya - yb)
    assert act.syn_ops_total.tolist() == syn.tolist()
    assert act.input_spikes.tolist() == msg.tolist()
    assert act.hops_ew.tolist() == ew.tolist() and act.hops_ns.tolist() == ns.tolist()
    assert act.total("messages_out") == msg.sum() - (spikes["input"].sum(1) @ (
        fanout_loops(g, m, "conv", (2, 8, 8), "lif1") > 0)).sum()
    assert act.total("syn_ops") > 0 and act.total("hops_ns") > 0
    # Active updates from the traces: the input is recovered from u (no wrap in this net):
    # a(t) = (u(t) - trunc(u(t-1)·(4096 - 1200)/4096)) / 64.
    for name in ("lif1", "lif2", "lif3"):
        u = r.traces[f"{name}.u"].astype(np.int64)
        v = r.traces[f"{name}.v"].astype(np.int64)
        s = r.traces[f"{name}.s"] != 0
        zeros = np.zeros_like(u[..., :1])
        u0 = np.concatenate([zeros, u[..., :-1]], axis=-1)
        v0 = np.concatenate([zeros, v[..., :-1]], axis=-1)
        a = u - np.trunc(u0 * (4096 - 1200) / 4096).astype(np.int64)
        active = (u0 != 0) | (v0 != 0) | (u != 0) | (v != 0) | s | (a != 0)
        active = active.reshape(batch, -1, steps)
        core = m.core_of(name, tuple(g.shapes[name]))
        for c in np.unique(core):
            assert act.active_updates[:, c].tolist() == \
                active[:, core == c].sum(axis=(0, 1)).tolist()
        assert act.output_spikes[:, np.unique(core)].sum() == r.spike_counts[name].sum()
    assert (act.inactive_updates == act.neurons * batch - act.active_updates).all()


# ------------------------------------------------------------------------------ active rule


def test_bias_spike_from_rest_is_active():
    # Bias 5 << 6 = 320 > vth 64: the neuron fires every step and the hard reset leaves
    # u = v = 0, so only the spike shows the update did something. lif0 gets it as bias input
    # (the run's x), lif1 from its own bias; lif0's neurons 1, 2 and lif1's 1, 2 stay at rest.
    hot = dict(threshold=1, current_decay=4096, voltage_decay=4096, bias_exp=6)
    g = Graph.chain([("input", Input((3,))), ("lif0", QCubaLIF(**hot)),
                     ("fc", QDense(weight=np.zeros((3, 3), dtype=np.int64))),
                     ("lif1", QCubaLIF(bias=np.array([5, 0, 0]), **hot))])
    m = map_graph(g, load_target("loihi1"))
    acc = Accountant(g, m)
    r = run(g, np.array([[5, 0, 0]]), steps=4, record=["u", "v"], observer=acc)
    assert r.spike_counts["lif0"].tolist() == [4] and r.spike_counts["lif1"].tolist() == [4]
    assert not any(trace.any() for trace in r.traces.values())
    act = acc.result()
    assert act.active_updates.tolist() == [[1, 1]] * 4
    assert act.output_spikes.tolist() == [[1, 1]] * 4
    assert act.total("input_spikes") == 0  # all-zero weights: no synapse, no message


def test_input_wrapped_to_zero_is_active():
    # 8 host spikes x 128 << 8 = 2**18: u = wrap24(64·2**18) = 0 and v = 0, yet the neuron
    # had a non-zero input at step 1.
    g = Graph.chain([("input", Input((8,))), ("fc", QDense(weight=np.full((1, 8), 128),
                                                            weight_exp=8)),
                     ("lif", QCubaLIF(threshold=1, current_decay=4096, voltage_decay=4096))])
    m = map_graph(g, load_target("loihi1"))
    acc = Accountant(g, m)
    x = np.zeros((1, 8, 3), dtype=np.int64)
    x[0, :, 0] = 1
    r = run(g, x, steps=3, input_mode="spikes", record=["u", "v"], observer=acc)
    assert not r.traces["lif.u"].any() and not r.traces["lif.v"].any()
    assert acc.result().active_updates[:, 0].tolist() == [0, 1, 0]


# ------------------------------------------------------------------------------ runs, output


def test_runs_add_up_like_one_batch(tmp_path):
    g = tiny_dense()
    m = map_graph(g, small_target(tmp_path, 2, (2, 2)))
    rng = np.random.default_rng(0)
    x = (rng.random((4, 3, 6)) < 0.5).astype(np.int64)
    one, two = Accountant(g, m), Accountant(g, m)
    run(g, x, steps=6, input_mode="spikes", observer=one)
    run(g, x[:1], steps=6, input_mode="spikes", observer=two)
    run(g, x[1:], steps=6, input_mode="spikes", observer=two)
    a, b = one.result(), two.result()
    assert (a.samples, b.samples, b.runs) == (4, 4, 2)
    for kind in ("input_spikes", "active_updates", "inactive_updates", "output_spikes",
                 "messages_out", "hops_ew", "hops_ns", "syn_ops"):
        assert a.counts(kind).tolist() == b.counts(kind).tolist(), kind
    assert a.route_messages.tolist() == b.route_messages.tolist()
    doc = json.loads(json.dumps(a.to_dict()))
    assert doc["per_layer"]["lif0"]["output_spikes"] == a.output_spikes[:, :2].sum() / 4
    assert doc["totals_per_sample"]["syn_ops"] == a.total("syn_ops") / 4
    assert len(doc["per_core_per_step"]["active_updates"]) == 6
    assert doc["counting_rules"]
    two.reset()
    with pytest.raises(NeurodeployError, match="observed no run"):
        two.result()


def test_bad_input(tmp_path):
    g = tiny_dense()
    m = map_graph(g, small_target(tmp_path, 2, (2, 2)))
    other = map_graph(tiny_conv(), load_target("loihi1"))
    with pytest.raises(NeurodeployError, match="map this graph"):
        Accountant(g, other)
    with pytest.raises(NeurodeployError, match="Mapping"):
        Accountant(g, object())
    acc = Accountant(g, m)
    with pytest.raises(NeurodeployError, match="observed no run"):
        acc.result()
    x = np.zeros((1, 3, 5), dtype=np.int64)
    run(g, x, steps=5, input_mode="spikes", observer=acc)
    run(g, x, steps=4, input_mode="spikes", observer=acc)
    with pytest.raises(NeurodeployError, match="5 steps|4, 5"):
        acc.result()
    fresh = Accountant(g, m)
    run(g, x, steps=2, input_mode="spikes", observer=fresh)
    with pytest.raises(NeurodeployError, match="unknown count"):
        fresh.result().counts("spikes")
    float_graph = Graph.chain([("input", Input((2,))), ("fc", Linear(weight=np.ones((2, 2))))])
    with pytest.raises(UnsupportedError, match="fixed-point"):
        Accountant(float_graph, m)


def test_lava_weights_do_not_change_synapse_counts(tmp_path):
    # A weight that Lava truncates to zero is still a stored synapse of the mapping (the
    # mapping and the accountant both count non-zero mantissas).
    w = np.array([[1, 10]])  # 1 loses its low bit under 7-bit mixed weights -> 0
    assert lava_weights(w, 7, "mixed")[0, 0] == 0
    g = Graph.chain([("input", Input((2,))), ("fc", QDense(weight=w, num_weight_bits=7)),
                     ("lif", memoryless(100))])
    m = map_graph(g, load_target("loihi1"))
    acc = Accountant(g, m)
    x = np.zeros((1, 2, 1), dtype=np.int64)
    x[0, 0, 0] = 1
    run(g, x, steps=1, input_mode="spikes", observer=acc)
    assert acc.result().input_spikes.tolist() == [[1]]


def test_recurrent_and_delayed_synapses(tmp_path):
    # netx dense_rec: the layer's own spikes reach the cores its recurrent weights touch;
    # synaptic delays only defer integration: the messages count when the spike is sent.
    rng = np.random.default_rng(5)
    w = rng.integers(1, 40, size=(4, 3))
    w_rec = np.array([[0, 20, 0, 0], [0, 0, 0, 0], [0, 0, 0, 20], [20, 0, 0, 0]])
    target = small_target(tmp_path, 2, (2, 2))
    x = (rng.random((2, 3, 6)) < 0.6).astype(np.int64)
    acts = {}
    for name, fc in {"rec": QDense(weight=w, weight_rec=w_rec),
                     "delay": QDense(weight=w, delay=rng.integers(0, 3, size=w.shape)),
                     "plain": QDense(weight=w)}.items():
        g = Graph.chain([("input", Input((3,))), ("fc", fc), ("lif", QCubaLIF(threshold=12))])
        m = map_graph(g, target)
        acc = Accountant(g, m)
        r = run(g, x, steps=6, input_mode="spikes", observer=acc, record=["s"])
        acts[name] = (acc.result(), r, m)
    act, r, m = acts["rec"]
    s = r.traces["lif.s"].sum(axis=0).T  # (steps, 4 neurons) summed over the batch
    # lif neuron j's spike reaches the cores of the rows i with w_rec[i, j] != 0:
    # neuron 0 (core 0) -> row 3 (core 1); neuron 1 (core 0) -> row 0 (core 0); neuron 3
    # (core 1) -> row 2 (core 1); neuron 2 reaches nothing.
    core_msgs = np.stack([s[:, 1], s[:, 0] + s[:, 3]], axis=1)
    own = act.route_src >= 0
    assert sorted(zip(act.route_src[own].tolist(), act.route_dst[own].tolist())) == \
        [(0, 0), (0, 1), (1, 1)]
    assert s.sum() > 0
    host_in = acts["plain"][0].input_spikes
    assert (act.input_spikes - host_in).tolist() == core_msgs.tolist()
    assert act.messages_out.tolist() == np.stack([s[:, 0] + s[:, 1], s[:, 3]], axis=1).tolist()
    # dense encoding on a 2-neuron core: each recurrent message reads 2 synapses
    enc = m.synapse_encoding["fc.rec"]
    per_msg = 1 if enc == "sparse" else 2
    assert (act.syn_ops_total - acts["plain"][0].syn_ops_total).tolist() == \
        (core_msgs * per_msg).tolist()
    delayed, plain = acts["delay"][0], acts["plain"][0]
    assert delayed.input_spikes.tolist() == plain.input_spikes.tolist()
    assert delayed.syn_ops_total.tolist() == plain.syn_ops_total.tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_counts_equal_cpu(tmp_path):
    rng = np.random.default_rng(3)
    g = random_net(rng)
    m = map_graph(g, small_target(tmp_path, 12, (4, 4)))
    x = (rng.random((3, 2, 8, 8, 5)) < 0.3).astype(np.int64)
    out = []
    for device in ("cpu", "cuda"):
        acc = Accountant(g, m, device=device)
        run(g, x, steps=5, input_mode="spikes", observer=acc, device=device)
        out.append(acc.result())
    for kind in ("input_spikes", "syn_ops", "active_updates", "output_spikes", "hops_ew"):
        assert out[0].counts(kind).tolist() == out[1].counts(kind).tolist(), kind
