"""Custom Lava neuron kinds: LIFSoftReset against hw_sim's reset="subtract" and a hand-worked
sequence; CubaBNTT (per-step gain/bias schedule) against hand-worked numbers and against its
numpy reference ``bntt_neuron_step``."""

from __future__ import annotations


import numpy as np
import pytest

from neurodeploy import hw_sim
from neurodeploy.backends import lava_neurons as ln
from neurodeploy.errors import InvalidIRError
from neurodeploy.ir import Graph
from neurodeploy.ir.nodes import Input, QCubaLIF, QDense

from bntt_example import A, BIAS, GAIN, PARAMS, WANT_S, WANT_U, WANT_V, reference

# Lava's process-model search re-executes every file of neurodeploy/backends/ as a top-level
# module; those with relative imports fail there and Lava warns (harmlessly).
pytestmark = pytest.mark.filterwarnings("ignore:Cannot import module:UserWarning")


def _run(lava, neuron, steps: int, source=None, synapse=None):
    """Run ``neuron`` (fed by ``source`` → optional ``synapse``) and return u, v, s as
    ``(*lava_shape, steps)`` arrays."""
    if source is not None:
        if synapse is not None:
            source.s_out.connect(synapse.s_in)
            synapse.a_out.connect(neuron.a_in)
        else:
            source.s_out.connect(neuron.a_in)
    sink = lava.sink.RingBuffer(shape=neuron.s_out.shape, buffer=steps)
    neuron.s_out.connect(sink.a_in)
    monitors = {}
    for var in ("u", "v"):
        monitors[var] = lava.monitor.Monitor()
        monitors[var].probe(getattr(neuron, var), steps)
    cfg = lava.run_configs.Loihi2SimCfg(select_tag="fixed_pt")
    neuron.run(condition=lava.run_conditions.RunSteps(num_steps=steps), run_cfg=cfg)
    try:
        out = {var: np.moveaxis(np.asarray(m.get_data()[neuron.name][var]), 0, -1)
               .astype(np.int64) for var, m in monitors.items()}
        out["s"] = np.asarray(sink.data.get()).astype(np.int64)
    finally:
        neuron.stop()
    return out


# ------------------------------------------------------------------------------------------
# LIFSoftReset
# ------------------------------------------------------------------------------------------


@pytest.mark.lava
def test_soft_reset_by_hand(lava):
    # No input, no voltage decay, bias 100 * 2**1 = 200 per step, threshold 4 * 64 = 256.
    # v: 200; 400 > 256 → 144; 344 → 88; 288 → 32; 232; 432 → 176.
    neuron = ln.soft_reset_lif(shape=(1,), vth=4, du=4095, dv=0, bias_mant=100, bias_exp=1,
                               name="soft")
    out = _run(lava, neuron, 6)
    np.testing.assert_array_equal(out["v"][0], [200, 144, 88, 32, 232, 176])
    np.testing.assert_array_equal(out["s"][0], [0, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(out["u"][0], [0] * 6)


@pytest.mark.lava
def test_soft_reset_periodic_reset(lava):
    # Same neuron with reset_interval 3, offset 1: u, v zeroed before Lava steps 1 and 4.
    neuron = ln.soft_reset_lif(shape=(1,), vth=4, du=4095, dv=0, bias_mant=100, bias_exp=1,
                               reset_interval=3, reset_offset=1, name="soft_ri")
    out = _run(lava, neuron, 6)
    np.testing.assert_array_equal(out["v"][0], [200, 144, 88, 200, 144, 88])
    np.testing.assert_array_equal(out["s"][0], [0, 1, 1, 0, 1, 1])


@pytest.mark.lava
def test_soft_reset_matches_hw_sim_through_dense(lava):
    rng = np.random.default_rng(7)
    steps = 10
    weight = np.array([[50, -30, 40], [20, 60, -35]], dtype=np.int32)
    bias = np.array([3, -2])
    spikes = (rng.random((3, steps)) < 0.6).astype(np.int32)
    node = QCubaLIF(threshold=40, current_decay=1024, voltage_decay=512, bias=bias, bias_exp=2,
                    reset="subtract")
    graph = Graph.chain([
        ("inp", Input(shape=(3,))),
        ("fc", QDense(weight=weight, weight_exp=1)),
        ("n", node),
    ])
    want = hw_sim.run(graph, spikes[None], steps=steps, input_mode="spikes",
                      record=["u", "v", "s"])

    source = lava.source.RingBuffer(data=spikes)
    dense = lava.dense.Dense(weights=weight, weight_exp=1, num_weight_bits=8,
                             num_message_bits=0)
    neuron = ln.soft_reset_lif(shape=(2,), vth=40, du=1024 - 1, dv=512, bias_mant=bias,
                               bias_exp=2, name="soft_dense")
    got = _run(lava, neuron, steps, source, dense)
    for var in ("u", "v", "s"):
        np.testing.assert_array_equal(got[var], want.traces[f"n.{var}"][0], err_msg=var)
    s, v = got["s"], got["v"]
    assert 3 <= s.sum() < s.size  # spikes happen, not every step ...
    assert np.any(v[s == 1] != 0)  # ... and leave a remainder: not a hard reset


# ------------------------------------------------------------------------------------------
# CubaBNTT
# ------------------------------------------------------------------------------------------

def _hand_params(**kw):
    args = dict(shape=(2,), gain=GAIN, bias=BIAS, **PARAMS)
    args.update(kw)
    return ln.BNTTNeuronParams(**args)


def test_bntt_reference_by_hand():
    ref = reference(_hand_params(), A)
    np.testing.assert_array_equal(ref["u"], WANT_U)
    np.testing.assert_array_equal(ref["v"], WANT_V)
    np.testing.assert_array_equal(ref["s"], WANT_S)


def test_bntt_reference_hard_reset_and_phase():
    # Hard reset: channel 1's first spike zeroes v: 0; then -192; -96+128 = 32.
    ref = reference(_hand_params(reset="zero"), A[:, :3])
    np.testing.assert_array_equal(ref["v"][1], [0, -192, 32])
    # phase 1: the schedule starts one step later (row 2 at t=0, then rows 0, 1).
    p = _hand_params(phase=1)
    assert [p.schedule_index(t) for t in range(4)] == [2, 0, 1, 2]
    ref = reference(p, A[:, :2])
    # t=0: row 2: ch0 a' = rtz(30, 1) = 15 → u 960, v = 960 - 64 = 896 > 640 → 256
    np.testing.assert_array_equal(ref["u"][:, 0], [960, 0])
    np.testing.assert_array_equal(ref["v"][:, 0], [256, 128])


def test_bntt_reference_channels_and_saturation():
    # (C, H, W) = (2, 1, 2): the gain row applies per channel (first IR axis).
    p = ln.BNTTNeuronParams(shape=(2, 1, 2), gain=[[3, -2]], gain_exp=0, bias=[[0, 0]],
                            threshold=1 << 16, current_decay=4096, voltage_decay=4096)
    state = ln.bntt_init_state(p, (1,))
    a = np.array([[[[1, 2]], [[3, 4]]]])
    ln.bntt_neuron_step(state, a, 0, p)
    np.testing.assert_array_equal(state["u"][0, :, 0], [[192, 384], [-384, -512]])
    # The gained input saturates at 2**23 - 1 before the 6-bit alignment.
    p = ln.BNTTNeuronParams(shape=(1,), gain=[[1 << 14]], gain_exp=0, bias=[[0]],
                            threshold=1 << 16)
    state = ln.bntt_init_state(p)
    ln.bntt_neuron_step(state, np.array([1 << 12]), 0, p)  # 2**26 → 2**23 - 1
    expect = ((1 << 23) - 1) * 64  # then Lava's conditional 24-bit wrap
    expect = expect - (1 << 24) if expect > (1 << 23) else expect
    assert state["u"][0] == expect


def test_bntt_params_errors():
    with pytest.raises(InvalidIRError) as err:
        ln.BNTTNeuronParams(shape=(2,), gain=[[1, 2, 3]], gain_exp=30, bias=[[0, 0], [0, 0]],
                            bias_exp=9, reset="soft")
    msg = str(err.value)
    assert "gain has shape (1, 3), expected (T, 2)" in msg
    assert "gain_exp=30" in msg and "bias_exp=9" in msg and "reset='soft'" in msg
    assert "\n" not in msg
    with pytest.raises(InvalidIRError, match="signed 16-bit"):
        ln.BNTTNeuronParams(shape=(1,), gain=[[1 << 15]], gain_exp=0, bias=[[0]])


@pytest.mark.lava
def test_cuba_bntt_lava_by_hand(lava):
    source = lava.source.RingBuffer(data=A.astype(np.int32))
    neuron = ln.cuba_bntt(_hand_params(), name="bntt_hand")
    got = _run(lava, neuron, 6, source)
    np.testing.assert_array_equal(got["u"], WANT_U)
    np.testing.assert_array_equal(got["v"], WANT_V)
    np.testing.assert_array_equal(got["s"], WANT_S)


@pytest.mark.lava
def test_cuba_bntt_lava_equalsreference(lava):
    # (C, H, W) = (3, 1, 2) neurons, graded random input, phase 1, periodic reset, leaks.
    rng = np.random.default_rng(3)
    steps = 6
    p = ln.BNTTNeuronParams(
        shape=(3, 1, 2), gain=rng.integers(-300, 900, (4, 3)), gain_exp=7,
        bias=rng.integers(-20, 40, (4, 3)), bias_exp=3, threshold=60, current_decay=1500,
        voltage_decay=700, reset="subtract", phase=1, reset_interval=4, reset_offset=2,
    )
    a = rng.integers(-150, 300, (3, 1, 2, steps))
    want = reference(p, a)
    source = lava.source.RingBuffer(data=np.ascontiguousarray(
        a.transpose(2, 1, 0, 3)).astype(np.int32))  # IR (C, H, W) → Lava (W, H, C)
    neuron = ln.cuba_bntt(p, name="bntt_rand")
    got = _run(lava, neuron, steps, source)
    for var in ("u", "v", "s"):
        np.testing.assert_array_equal(got[var].transpose(2, 1, 0, 3), want[var], err_msg=var)
    assert want["s"].sum() >= 2 and np.any(want["u"] < 0)
