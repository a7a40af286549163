"""The netx files neurodeploy writes run in lava-dl's own ``netx.hdf5.Network`` (Lava
``fixed_pt`` models) to exactly hw_sim's spikes, step for step (issue 4, item 6).

How the two runs line up (see :func:`neurodeploy.frontends.netx.run_netx`):

* **No time shift.** netx's blocks add Lava's one step per synapse layer, exactly as hw_sim's
  pipeline depth does, and the ``RingBuffer`` feeding ``Network.inp`` delivers step ``t``'s
  events in step ``t`` (as hw_sim's ``input_mode="spikes"``). So step ``t`` of netx block ``k``
  is compared with step ``t`` of the ``k``-th neuron layer of the graph, for every ``t``.
* **Input.** A compiled network's input layer has no neuron: images are graded events (8-bit
  payloads) into the first synapse layer. netx needs ``Network(input_message_bits=8)`` for
  that (its default 0 turns every non-zero pixel into a binary spike); the writer records the
  width as the input layer's ``messageBits``. A netx-style input layer *with* a neuron takes the
  sample as that neuron's ``bias_mant`` (hw_sim's ``input_mode="bias"``).
* **Reset.** hw_sim resets a layer at depth ``d`` when ``tau % K == (offset + 1 + d) % K``;
  netx numbers blocks from 0, so ``Network(reset_offset=offset + 1)`` when the first block is
  at depth 1 (no input neuron), ``offset`` otherwise.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from neurodeploy.errors import UnsupportedError
from neurodeploy.frontends.netx import optimize_weight_bits, read_netx, run_netx, write_netx
from neurodeploy.hw_sim import run as hw_run
from neurodeploy.ir import (
    Add, Flatten, Graph, Input, QConv2d, QCubaLIF, QDense, QSumPool2d,
)
from neurodeploy.passes.legalize import legalize

T = 10


def _lif(threshold: int, *, bias: object = 0, bias_exp: int = 6, current_decay: int = 4096,
         voltage_decay: int = 0) -> QCubaLIF:
    return QCubaLIF(threshold=threshold, current_decay=current_decay,
                    voltage_decay=voltage_decay, bias=bias, bias_exp=bias_exp)


def _compare(graph: Graph, path: Path, x: np.ndarray, *, steps: int,
             reset_interval: int | None, record: tuple[str, ...] = ("s",),
             hw: object = None) -> dict[str, np.ndarray]:
    """Run ``x`` through ``graph`` on hw_sim and through ``path`` in netx; assert every
    recorded trace is equal at every step (no shift). Returns hw_sim's spike counts."""
    mode = "bias" if x.ndim == len(graph.shapes[graph.inputs[0]]) + 1 else "spikes"
    if hw is None:
        hw = hw_run(graph, x, steps=steps, input_mode=mode, reset_interval=reset_interval,
                    record={n: record for n in graph.neurons})
    nx = run_netx(path, x, steps=steps, reset_interval=reset_interval, names=graph.neurons,
                  record=record)
    assert nx.layers == graph.neurons
    for name in graph.neurons:
        for q in record:
            a, b = hw.traces[f"{name}.{q}"], nx.traces[f"{name}.{q}"]
            assert a.shape == b.shape == (len(x), *graph.shapes[name], steps), (name, q)
            for t in range(steps):
                np.testing.assert_array_equal(b[..., t], a[..., t], err_msg=f"{name}.{q} t={t}")
    return hw.spike_counts


# ------------------------------------------------------------------------------ Lava runs


@pytest.mark.lava
def test_compiled_conv_net(lava, tmp_path: Path, one_thread) -> None:
    """float conv net → quantize (direct 8-bit input, pool folded into conv2) → legalize →
    network.net; fed as ``inference`` feeds compiled networks (graded events, T + D steps,
    staggered reset with interval T + D)."""
    from neurodeploy.compile import fixed_point
    from neurodeploy.inference import deployed_inputs, run_deployed
    from neurodeploy.ir import LIF, Affine, Conv2d, I, SumPool2d
    from neurodeploy.targets import load_target

    rng = np.random.default_rng(1)

    def lif() -> LIF:
        return LIF(tau=np.array(5.0), r=np.array(5.0), v_leak=np.array(0.0),
                   v_threshold=np.array(1.0), reset="zero")

    steps = 4
    float_graph = Graph.chain([
        ("input", Input(shape=(1, 8, 8))),
        ("conv1", Conv2d(weight=rng.normal(0, 0.6, (4, 1, 3, 3)), bias=rng.normal(0, 0.1, 4),
                         padding=(1, 1))),
        ("lif1", lif()),
        ("pool1", SumPool2d(kernel_size=(2, 2), stride=(2, 2))),
        ("conv2", Conv2d(weight=rng.normal(0, 0.4, (6, 4, 3, 3)), bias=np.zeros(6),
                         padding=(1, 1))),
        ("lif2", lif()),
        ("flat", Flatten()),
        ("fc", Affine(weight=rng.normal(0, 0.3, (5, 96)), bias=rng.normal(0, 0.05, 5))),
        ("acc", I(r=np.array(1.0))),
    ], timesteps=steps, encoder="direct", dt=1.0)
    fixed, _, _ = fixed_point(float_graph, load_target("loihi2"), calib=rng.random((8, 1, 8, 8)),
                              steps=steps)
    graph = legalize(fixed)
    path = tmp_path / "network.net"
    write_netx(graph, path)
    with h5py.File(path) as f:
        bits = int(f["layer/0/messageBits"][()])
    assert bits == graph.nodes["input"].num_message_bits > 1  # graded input, recorded
    inputs = deployed_inputs(graph, rng.random((1, 1, 8, 8)), steps)
    assert inputs.input_mode == "spikes" and inputs.total == steps + 3  # D = 3
    assert inputs.events.max() > 1  # graded pixels, not spikes
    hw = run_deployed(graph, inputs, record={n: ["s", "v"] for n in graph.neurons})
    counts = _compare(graph, path, inputs.events, steps=inputs.total,
                      reset_interval=inputs.reset_interval, record=("s", "v"), hw=hw)
    assert counts["lif1"][0] > 20 and counts["lif2"][0] > 5  # the comparison is not vacuous
    # binarized input (netx's default input_message_bits=0) would change the first layer
    binary = Graph(dict(graph.nodes, input=Input(shape=(1, 8, 8))), graph.edges, graph.metadata)
    other = run_deployed(binary, inputs, record={"lif1": ["s"]})
    assert not np.array_equal(other.traces["lif1.s"], hw.traces["lif1.s"])


@pytest.mark.lava
def test_dense_residual_graded_input(lava, tmp_path: Path, one_thread) -> None:
    """Graded 8-bit input, a negative weight exponent with 6 weight bits, bias_exp 7 (rewritten
    for netx's 6), a recurrent layer, synaptic delays, a residual block legalized into relay
    neurons, and a periodic staggered reset (interval 4, so every layer resets mid-run)."""
    rng = np.random.default_rng(0)
    nodes = {
        "input": Input(shape=(12,), num_message_bits=8),
        "fc0": QDense(weight=rng.integers(-60, 60, (8, 12)) * 4, weight_exp=-2, num_weight_bits=6,
                      sign_mode="mixed", weight_rec=rng.integers(-60, 60, (8, 8)) * 4),
        "lif0": _lif(150, bias=rng.integers(-20, 20, 8), voltage_decay=300),
        "fc1": QDense(weight=rng.integers(-60, 100, (8, 8)), sign_mode="mixed"),
        "lif1": _lif(120, voltage_decay=100),
        "fc2": QDense(weight=rng.integers(-60, 100, (6, 8)), sign_mode="mixed"),
        "skip": QDense(weight=rng.integers(-60, 100, (6, 8)), sign_mode="mixed"),
        "add": Add(),
        "lif2": _lif(150, bias=rng.integers(-10, 30, 6), bias_exp=7, current_decay=3000,
                     voltage_decay=200),
        "out": QDense(weight=rng.integers(-100, 120, (4, 6)), weight_exp=1, sign_mode="mixed",
                      delay=rng.integers(0, 3, (4, 6))),
        "acc": _lif(1 << 17, current_decay=4096, voltage_decay=0),
    }
    edges = [("input", "fc0"), ("fc0", "lif0"), ("lif0", "fc1"), ("fc1", "lif1"),
             ("lif1", "fc2"), ("lif0", "skip"), ("fc2", "add"), ("skip", "add"), ("add", "lif2"),
             ("lif2", "out"), ("out", "acc")]
    graph = legalize(Graph(nodes, tuple(edges), {}).validate())
    assert graph.shapes["lif1"] == (16,)  # 8 relays of lif0
    path = tmp_path / "dense.net"
    write_netx(graph, path)
    x = rng.integers(-127, 128, (2, 12, T))
    counts = _compare(graph, path, x, steps=T, reset_interval=4, record=("s", "v"))
    assert all(counts[n].min() > 0 for n in ("lif0", "lif1", "lif2"))


@pytest.mark.lava
def test_conv_pool_legalized_binary_input(lava, tmp_path: Path, one_thread) -> None:
    """Binary input, a conv with weight_exp 1 and per-channel bias, a sum pool legalized into a
    depthwise conv (groups = C), flatten, a dense layer with delays; reset interval T + D."""
    rng = np.random.default_rng(2)
    bias = np.broadcast_to(np.array([3, -2, 0, 5])[:, None, None], (4, 8, 8))
    graph = legalize(Graph.chain([
        ("input", Input(shape=(2, 8, 8))),
        ("conv1", QConv2d(weight=rng.integers(-80, 120, (4, 2, 3, 3)), padding=(1, 1),
                          weight_exp=1)),
        ("lif1", _lif(250, bias=bias, voltage_decay=200)),
        ("pool", QSumPool2d(kernel_size=(2, 2), stride=(2, 2), weight=3)),
        ("lifp", _lif(5)),
        ("flat", Flatten()),
        ("fc", QDense(weight=rng.integers(-50, 100, (6, 64)), sign_mode="mixed",
                      delay=rng.integers(0, 4, (6, 64)))),
        ("lif3", _lif(150, voltage_decay=100)),
    ]))
    assert graph.nodes["pool"].groups == 4
    path = tmp_path / "conv.net"
    write_netx(graph, path)
    x = (rng.random((1, 2, 8, 8, T)) < 0.4).astype(np.int64)
    counts = _compare(graph, path, x, steps=T, reset_interval=T)
    assert all(counts[n][0] > 0 for n in ("lif1", "lifp", "lif3"))


@pytest.mark.lava
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # netx's 127 / max(w) = 0
def test_bias_input_and_lava_sign_mode(lava, tmp_path: Path, one_thread) -> None:
    """A netx-style input layer with a neuron, fed as bias, and a dense layer whose weights
    lie in [-4, 0]: netx calls them mixed, but Lava's Dense (netx passes no sign mode) picks
    inhibitory and clips netx's mantissa -256 to -255, so -4 runs as -3. The writer refuses
    such weights; a file holding them is read as netx runs it."""
    rng = np.random.default_rng(3)
    fc = QDense(weight=rng.integers(-50, 100, (6, 16)), sign_mode="mixed")
    graph = Graph.chain([
        ("input", Input(shape=(3, 4, 4))),
        ("in0", _lif(100)),
        ("conv", QConv2d(weight=rng.integers(-80, 120, (1, 3, 3, 3)), padding=(1, 1))),
        ("lif1", _lif(250, voltage_decay=200)),
        ("flat", Flatten()),
        ("fc", fc),
        ("lif2", _lif(60, bias=np.full(6, 40), voltage_decay=100)),
    ])
    inhib = rng.choice([-4, -2, 0], size=(6, 16))
    with pytest.raises(UnsupportedError, match="fc: .*-255"):
        write_netx(Graph(dict(graph.nodes, fc=fc.replace(weight=inhib)), graph.edges), tmp_path
                   / "refused.net")
    path = tmp_path / "bias.net"
    write_netx(graph, path)
    with h5py.File(path, "r+") as f:
        f["layer/3/weight"][...] = inhib  # layers: input (+ neuron), conv, flatten, dense
    back = read_netx(path)
    syn = back.nodes["dense3_syn"]
    used = syn.weight * 2.0 ** syn.weight_exp
    assert syn.sign_mode == "inhibitory" and used.min() == -3 and set(np.unique(used)) <= \
        {-3, -2, 0}
    x = rng.integers(0, 40, (1, 3, 4, 4))
    counts = _compare(back, path, x, steps=T, reset_interval=None, record=("s", "v"))
    assert counts["dense3"][0] > 0 and counts["input0"][0] > 0
    # netx's own sign mode (mixed: -4 kept) is not what runs
    mant, bits, exp, sign = optimize_weight_bits(inhib)
    assert (sign, bits, exp) == ("mixed", syn.num_weight_bits, syn.weight_exp)
    naive = Graph(dict(back.nodes, dense3_syn=syn.replace(weight=mant, sign_mode=sign)),
                  back.edges)
    v_naive = hw_run(naive, x, steps=T, input_mode="bias", record={"dense3": ["v"]})
    v_back = hw_run(back, x, steps=T, input_mode="bias", record={"dense3": ["v"]})
    assert not np.array_equal(v_naive.traces["dense3.v"], v_back.traces["dense3.v"])


# ------------------------------------------------------------------------------ no Lava needed


def test_input_message_bits_round_trip(tmp_path: Path) -> None:
    g = Graph.chain([("input", Input(shape=(4,), num_message_bits=8)),
                     ("fc", QDense(weight=np.eye(4, dtype=int), sign_mode="excitatory")),
                     ("lif", _lif(10))])
    write_netx(g, tmp_path / "a.net")
    with h5py.File(tmp_path / "a.net") as f:
        assert int(f["layer/0/messageBits"][()]) == 8
    assert read_netx(tmp_path / "a.net").nodes["input"].num_message_bits == 8
    binary = Graph(dict(g.nodes, input=Input(shape=(4,))), g.edges)
    write_netx(binary, tmp_path / "b.net")
    with h5py.File(tmp_path / "b.net") as f:
        assert "messageBits" not in f["layer/0"]


def test_lava_weights_hand_values() -> None:
    """Lava's Dense clipping and truncation (``lava.utils.weightutils``), worked by hand:
    mixed clips to [-256, 255] and with 8 bits drops 1 bit of the two's complement (floor);
    inhibitory drops bits of the magnitude; excitatory clips to [0, 255]."""
    from neurodeploy.ir.nodes import lava_weights

    w = np.array([[300, 3, -3, -300]])
    np.testing.assert_array_equal(lava_weights(w, 8, "mixed"), [[254, 2, -4, -256]])
    np.testing.assert_array_equal(lava_weights(np.abs(w), 8, "excitatory"), [[255, 3, 3, 255]])
    np.testing.assert_array_equal(lava_weights(np.abs(w), 6, "excitatory"), [[252, 0, 0, 252]])
    np.testing.assert_array_equal(lava_weights(-np.abs(w), 7, "inhibitory"),
                                  [[-254, -2, -2, -254]])


def test_inhibitory_truncation_written_as_lava_runs_it(tmp_path: Path) -> None:
    """Lava truncates inhibitory weights by magnitude: with 7 bits -3 runs as -2 (a floor of
    the two's complement would give -4). The file must hold what hw_sim and Lava use."""
    g = _dense_graph(fc=QDense(weight=np.array([[-3, -5, -7, -1], [-2, -6, -1, -4]]),
                               num_weight_bits=7, sign_mode="inhibitory"))
    g = Graph.chain([("input", Input(shape=(4,))), *list(g.nodes.items())[1:]])
    write_netx(g, tmp_path / "a.net")
    with h5py.File(tmp_path / "a.net") as f:
        np.testing.assert_array_equal(f["layer/1/weight"][()], [[-2, -4, -6, 0], [-2, -6, 0, -4]])
    syn = read_netx(tmp_path / "a.net").nodes["dense1_syn"]
    np.testing.assert_array_equal(syn.weight * 2.0 ** syn.weight_exp,
                                  [[-2, -4, -6, 0], [-2, -6, 0, -4]])


def _dense_graph(**changes: object) -> Graph:
    fc = QDense(weight=np.array([[3, -2, 1], [0, 5, -1]]), sign_mode="mixed")
    nodes = {"input": Input(shape=(3,)), "fc": fc, "lif": _lif(10)}
    nodes.update(changes)
    return Graph.chain(list(nodes.items()))


@pytest.mark.parametrize("change, match", [
    ({"fc": QDense(weight=np.zeros((2, 3), int), sign_mode="excitatory")}, "all weights are zero"),
    ({"fc": QDense(weight=np.array([[-1, -2, -1], [-1, -1, -1]]), sign_mode="inhibitory")},
     "-255"),
    ({"lif": _lif(10, bias=np.array([20000, 0]), bias_exp=7)}, "int16 bias_mant"),
    ({"fc": QDense(weight=np.ones((2, 3), int), sign_mode="excitatory",
                   weight_rec=np.ones((2, 2), int), delay=np.ones((2, 3), int))},
     "recurrent dense layer with delays"),
])
def test_writer_refuses_what_netx_runs_differently(tmp_path: Path, change: dict, match: str
                                                   ) -> None:
    with pytest.raises(UnsupportedError, match=match):
        write_netx(_dense_graph(**change), tmp_path / "x.net")
    assert not (tmp_path / "x.net").exists()


def test_writer_refuses_input_neuron_bias_exp(tmp_path: Path) -> None:
    g = Graph.chain([("input", Input(shape=(3,))), ("in0", _lif(10, bias_exp=7)),
                     ("fc", QDense(weight=np.ones((2, 3), int), sign_mode="excitatory")),
                     ("lif", _lif(10))])
    with pytest.raises(UnsupportedError, match="in0: .*bias_exp 7"):
        write_netx(g, tmp_path / "x.net")


def test_run_netx_refuses_layers_netx_cannot_build(tmp_path: Path) -> None:
    g = Graph.chain([("input", Input(shape=(1, 4, 4))), ("in0", _lif(10)),
                     ("pool", QSumPool2d(kernel_size=(2, 2), stride=(2, 2))), ("lif", _lif(1))])
    write_netx(g, tmp_path / "pool.net")  # a netx 'pool' layer (round trips of netx files)
    with pytest.raises(UnsupportedError, match=r"cannot run layer 1 \(pool\).*legalize"):
        run_netx(tmp_path / "pool.net", np.zeros((1, 1, 4, 4)), steps=2)
