"""Property tests: hw_sim equals Lava's bit-accurate models state for state and spike for spike
on random small fixed-point networks (dense, conv, pooling, residual add; every weight sign
mode, tiny and large weights, all decays, saturation and wrap-around, resets, both input
modes, batch of 2)."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from neurodeploy.backends import lava as lava_backend
from neurodeploy.ir import Graph
from neurodeploy.ir.nodes import (
    Add,
    Flatten,
    Input,
    QConv2d,
    QCubaLIF,
    QDense,
    QSumPool2d,
)

pytestmark = pytest.mark.lava

# No shrinking: every example costs two Lava runs (about a second), and shrinking a failure
# would take minutes; the generated networks are small already.
PROPERTY = settings(max_examples=15, deadline=None, derandomize=True,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module", autouse=True)
def _needs_lava(lava):
    """Every test here is a Lava cross-check (the shared ``lava`` fixture skips or fails)."""


def hw_sim_run():
    """The function under test (imported late: hw_sim is developed alongside)."""
    from neurodeploy import hw_sim

    if hasattr(hw_sim, "run"):
        return hw_sim.run
    from neurodeploy.hw_sim import engine  # until the package exports run

    return engine.run


# ------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------

SIGN_RANGES = {"mixed": (-256, 255), "excitatory": (0, 255), "inhibitory": (-255, 0)}
DECAYS = st.one_of(st.sampled_from([0, 1, 2048, 4095, 4096]), st.integers(0, 4096))


@st.composite
def neurons(draw, shape, *, big_bias=False):
    """A QCubaLIF with random threshold, decays and bias."""
    threshold = draw(st.one_of(st.integers(0, 50), st.integers(0, 3000),
                               st.sampled_from([131071])))
    bias_exp = draw(st.integers(0, 7))
    limit = 4000 if big_bias else 300
    bias = draw(st.one_of(
        st.just(0),
        st.integers(-limit, limit),
        st.builds(np.array, st.lists(st.integers(-limit, limit), min_size=int(np.prod(shape)),
                                     max_size=int(np.prod(shape)))).map(
            lambda a: a.reshape(shape)),
    ))
    return QCubaLIF(threshold=threshold, current_decay=draw(DECAYS),
                    voltage_decay=draw(DECAYS), bias=bias, bias_exp=bias_exp)


@st.composite
def weights(draw, shape, sign_mode):
    """Integer weight mantissas: usually within the sign mode's range, sometimes anything in
    8 bits (so clipping by sign mode is exercised), sometimes tiny."""
    lo, hi = draw(st.sampled_from([SIGN_RANGES[sign_mode], (-256, 255), (-3, 3)]))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).integers(lo, hi + 1, size=shape)


@st.composite
def qweights(draw, *, exp_range):
    sign_mode = draw(st.sampled_from(list(SIGN_RANGES)))
    return dict(sign_mode=sign_mode, num_weight_bits=draw(st.integers(1, 8)),
                weight_exp=draw(st.integers(*exp_range)))


@st.composite
def run_options(draw):
    interval = draw(st.one_of(st.none(), st.integers(1, 6)))
    return dict(steps=draw(st.integers(4, 14)), reset_interval=interval,
                reset_offset=draw(st.integers(0, 5)))


def bias_inputs(draw, shape):
    seed = draw(st.integers(0, 2**32 - 1))
    hi = draw(st.sampled_from([50, 1000, 20000]))
    return np.random.default_rng(seed).integers(-hi // 4, hi, size=(2, *shape))


def spike_inputs(draw, shape, steps, graded):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if graded:
        return rng.integers(-100, 100, size=(2, *shape, steps))
    density = draw(st.sampled_from([0.2, 0.6, 1.0]))
    return (rng.random((2, *shape, steps)) < density).astype(np.int64)


@st.composite
def dense_cases(draw):
    """Input → LIF → Dense → LIF (→ Dense → LIF), bias- or spike-driven."""
    opts = draw(run_options())
    mode = draw(st.sampled_from(["bias", "spikes"]))
    n0 = draw(st.integers(1, 6))
    graded = mode == "spikes" and draw(st.booleans())
    layers = [("inp", Input(shape=(n0,), num_message_bits=8 if graded else 0))]
    layers.append(("l0", draw(neurons((n0,), big_bias=True))))
    n_prev = n0
    for i in range(1, draw(st.integers(1, 2)) + 1):
        n = draw(st.integers(1, 6))
        q = draw(qweights(exp_range=(-7, 4)))
        layers.append((f"d{i}", QDense(weight=draw(weights((n, n_prev), q["sign_mode"])), **q)))
        layers.append((f"l{i}", draw(neurons((n,)))))
        n_prev = n
    graph = Graph.chain(layers)
    if mode == "bias":
        inputs = bias_inputs(draw, (n0,))
    else:
        inputs = spike_inputs(draw, (n0,), opts["steps"], graded)
    return graph, inputs, mode, opts


@st.composite
def spike_dense_cases(draw):
    """Spikes straight into a Dense (Input → Dense → LIF), large weights to wrap u."""
    opts = draw(run_options())
    n0, n1 = draw(st.integers(1, 8)), draw(st.integers(1, 4))
    graded = draw(st.booleans())
    q = draw(qweights(exp_range=(-2, 4)))
    lif = draw(neurons((n1,))).replace(threshold=131071, current_decay=draw(
        st.sampled_from([0, 1, 10])))
    graph = Graph.chain([
        ("inp", Input(shape=(n0,), num_message_bits=4 if graded else 0)),
        ("d", QDense(weight=draw(weights((n1, n0), q["sign_mode"])), **q)),
        ("l", lif),
    ])
    inputs = spike_inputs(draw, (n0,), opts["steps"], graded)
    if graded:
        inputs = np.clip(inputs, -8, 7)
    return graph, inputs, "spikes", opts


@st.composite
def conv_cases(draw):
    """Input → LIF → Conv (stride, padding, dilation, groups) → LIF → Flatten → Dense → LIF."""
    opts = draw(run_options())
    groups = draw(st.sampled_from([1, 1, 2]))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    h, w = draw(st.integers(3, 6)), draw(st.integers(3, 6))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 1)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if h + 2 * padding[0] < dilation[0] * (kh - 1) + 1:
        dilation = (1, dilation[1])
    if w + 2 * padding[1] < dilation[1] * (kw - 1) + 1:
        dilation = (dilation[0], 1)
    q = draw(qweights(exp_range=(0, 2)))
    conv = QConv2d(weight=draw(weights((c_out, c_in // groups, kh, kw), q["sign_mode"])),
                   stride=stride, padding=padding, dilation=dilation, groups=groups, **q)
    mode = draw(st.sampled_from(["bias", "spikes"]))
    layers = [("inp", Input(shape=(c_in, h, w)))]
    if mode == "bias":
        layers.append(("l0", draw(neurons((c_in, h, w), big_bias=True))))
    layers += [("c", conv)]
    graph = Graph.chain(layers)
    shape = graph.shapes["c"]
    layers.append(("l1", draw(neurons(shape))))
    if draw(st.booleans()):
        n = draw(st.integers(1, 4))
        qd = draw(qweights(exp_range=(-7, 1)))
        layers += [
            ("f", Flatten()),
            ("d", QDense(weight=draw(weights((n, int(np.prod(shape))), qd["sign_mode"])), **qd)),
            ("l2", draw(neurons((n,)))),
        ]
    graph = Graph.chain(layers)
    if mode == "bias":
        inputs = bias_inputs(draw, (c_in, h, w))
    else:
        inputs = spike_inputs(draw, (c_in, h, w), opts["steps"], False)
    return graph, inputs, mode, opts


@st.composite
def residual_pool_cases(draw):
    """Input → LIF → {SumPool, Conv 1x1 stride 2} → Add → LIF (a residual-style join)."""
    opts = draw(run_options())
    c, h, w = draw(st.integers(1, 2)), 2 * draw(st.integers(1, 3)), 2 * draw(st.integers(1, 3))
    q = draw(qweights(exp_range=(0, 1)))
    nodes = {
        "inp": Input(shape=(c, h, w)),
        "l0": draw(neurons((c, h, w), big_bias=True)),
        "p": QSumPool2d(kernel_size=(2, 2), stride=(2, 2), weight=draw(st.integers(-256, 255)),
                        weight_exp=draw(st.integers(0, 2))),
        "c": QConv2d(weight=draw(weights((c, c, 1, 1), q["sign_mode"])), stride=(2, 2), **q),
        "add": Add(),
        "l1": draw(neurons((c, h // 2, w // 2))),
    }
    edges = [("inp", "l0"), ("l0", "p"), ("l0", "c"), ("p", "add"), ("c", "add"),
             ("add", "l1")]
    graph = Graph(nodes, edges)
    return graph, bias_inputs(draw, (c, h, w)), "bias", opts


# ------------------------------------------------------------------------------------------
# The property
# ------------------------------------------------------------------------------------------


def assert_same(graph, inputs, mode, opts):
    record = {name: "uvs" for name in graph.neurons}
    kwargs = dict(input_mode=mode, record=record, **opts)
    want = lava_backend.run(graph, inputs, **kwargs)
    got = hw_sim_run()(graph, inputs, **kwargs)
    assert got.layers == want.layers
    assert sorted(got.traces) == sorted(want.traces)
    for key in want.traces:
        np.testing.assert_array_equal(got.traces[key], want.traces[key], err_msg=key)
    for name in want.spike_counts:
        np.testing.assert_array_equal(got.spike_counts[name], want.spike_counts[name],
                                      err_msg=f"{name} spike count")


@PROPERTY
@given(dense_cases())
def test_dense_networks(case):
    assert_same(*case)


@PROPERTY
@given(spike_dense_cases())
def test_spikes_into_dense_with_large_weights(case):
    assert_same(*case)


@PROPERTY
@given(conv_cases())
def test_conv_networks(case):
    assert_same(*case)


@PROPERTY
@given(residual_pool_cases())
def test_residual_add_and_sum_pool(case):
    assert_same(*case)


def test_binary_input_values_into_a_neuron_are_added_as_they_are():
    """Input.num_message_bits == 0 binarizes events into synapses only; a neuron fed directly
    adds the raw value to its input, as Lava's LIF does with a RingBuffer source."""
    graph = Graph.chain([
        ("inp", Input(shape=(2,))),
        ("n", QCubaLIF(threshold=1000, current_decay=4096, voltage_decay=4096)),
    ])
    inputs = np.array([[[0, 2, 3], [1, 0, -1]]])
    assert_same(graph, inputs, "spikes", dict(steps=3))


def test_recurrent_dense_and_delays():
    """netx dense_rec (recurrent matrix from the layer's own spikes, shifted separately) and
    DelayDense (per-synapse delays), with enough drive that the recurrent path carries spikes."""
    rng = np.random.default_rng(7)
    graph = Graph.chain([
        ("inp", Input(shape=(5,))),
        ("rec_syn", QDense(rng.integers(-40, 120, (6, 5)), weight_exp=-1, sign_mode="mixed",
                           weight_rec=rng.integers(-60, 60, (6, 6)))),
        ("rec", QCubaLIF(threshold=20, current_decay=1000, voltage_decay=500)),
        ("del_syn", QDense(rng.integers(-30, 90, (4, 6)), sign_mode="mixed",
                           delay=rng.integers(0, 5, (4, 6)))),
        ("out", QCubaLIF(threshold=15, current_decay=2000, voltage_decay=1000)),
    ])
    inputs = (rng.random((2, 5, 12)) < 0.6).astype(np.int64)
    got = hw_sim_run()(graph, inputs, steps=12, input_mode="spikes", record=["s"])
    assert got.spike_counts["rec"].sum() > 5  # the recurrent path is exercised
    assert got.spike_counts["out"].sum() > 0  # and the delayed one
    assert_same(graph, inputs, "spikes", dict(steps=12))
