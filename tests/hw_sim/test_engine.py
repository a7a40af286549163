"""hw_sim dynamics with expected sequences written out by hand from Lava's fixed-point equations
(reference/loihi.md §3), plus the arithmetic corner cases the engine must get exactly right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurodeploy.errors import NeurodeployError, UnsupportedError
from neurodeploy.hw_sim import run
from neurodeploy.ir import Flatten, Graph, Input, QConv2d, QCubaLIF, QDense, QSigmaDelta


def neuron_chain(neuron: QCubaLIF, n: int = 1, **input_kw) -> Graph:
    return Graph.chain([("input", Input((n,), **input_kw)), ("lif", neuron)])


def test_bias_driven_neuron_sequence():
    # b = 5 << 6 = 320; v decays by (4096 - 1024)/4096 = 0.75 (rounded toward zero); vth = 640.
    g = neuron_chain(QCubaLIF(threshold=10, current_decay=4096, voltage_decay=1024, bias_exp=6))
    r = run(g, np.array([[5]]), steps=6, record=["u", "v", "s"])
    assert r.traces["lif.v"][0, 0].tolist() == [320, 560, 0, 320, 560, 0]
    assert r.traces["lif.s"][0, 0].tolist() == [0, 0, 1, 0, 0, 1]
    assert r.traces["lif.u"][0, 0].tolist() == [0] * 6
    assert r.spike_counts["lif"].tolist() == [2]


def test_current_decay_rounds_toward_zero():
    # u = -3 << 6 = -192, then u *= (4096 - 1000) / 4096 rounded toward zero:
    # -145.125 -> -145, -109.6 -> -109 (floor would give -146, -110).
    g = neuron_chain(QCubaLIF(threshold=100, current_decay=1000, voltage_decay=4096),
                     num_message_bits=8)
    x = np.zeros((1, 1, 3), dtype=np.int64)
    x[0, 0, 0] = -3
    r = run(g, x, steps=3, input_mode="spikes", record=["u", "v"])
    assert r.traces["lif.u"][0, 0].tolist() == [-192, -145, -109]
    # dv = 4096: v holds only this step's u (no memory)
    assert r.traces["lif.v"][0, 0].tolist() == [-192, -145, -109]


def test_u_wraps_like_lava():
    # a << 6 == 2**23 stays (Lava wraps only values > 2**23); adding 64 more wraps to -2**23+64.
    M = 1 << 23
    g = neuron_chain(QCubaLIF(threshold=(1 << 17) - 1, current_decay=0, voltage_decay=4096),
                     num_message_bits=24)
    x = np.zeros((1, 1, 3), dtype=np.int64)
    x[0, 0, 0] = 1 << 17
    x[0, 0, 1] = 1
    r = run(g, x, steps=3, input_mode="spikes", record=["u", "v", "s"])
    assert r.traces["lif.u"][0, 0].tolist() == [M, -M + 64, -M + 64]
    # v = u saturates at 2**23 - 1, which is above the largest threshold: spike and reset.
    assert r.traces["lif.s"][0, 0].tolist() == [1, 0, 0]
    assert r.traces["lif.v"][0, 0].tolist() == [0, -M + 64, -M + 64]


def test_v_saturates_instead_of_wrapping():
    # bias -4095 << 7 = -524160 per step with no voltage decay: after 17 steps v would be
    # -8910720; it saturates at -(2**23 - 1).
    g = neuron_chain(QCubaLIF(threshold=10, current_decay=4096, voltage_decay=0, bias_exp=7))
    r = run(g, np.array([[-4095]]), steps=18, record=["v"])
    v = r.traces["lif.v"][0, 0]
    assert v[15] == -524160 * 16
    assert v[16] == v[17] == -((1 << 23) - 1)


def test_dense_delivers_one_step_late_with_floor_exponent():
    g = Graph.chain([
        ("input", Input((2,))),
        ("syn", QDense(np.array([[3, 0], [0, -3]]), weight_exp=-1, sign_mode="mixed",
                       num_weight_bits=7)),
        ("lif", QCubaLIF(threshold=1000, current_decay=4096, voltage_decay=4096)),
    ])
    x = np.zeros((1, 2, 3), dtype=np.int64)
    x[0, :, 0] = 1  # both inputs spike at step 0
    r = run(g, x, steps=3, input_mode="spikes", record=["u"])
    # mixed, 7 bits: Lava zeroes the low 8 - 7 + 1 = 2 bits: 3 -> 0, -3 -> -4; then >> 1 (floor).
    u = r.traces["lif.u"][0]
    assert u[:, 0].tolist() == [0, 0]
    assert u[:, 1].tolist() == [0, -2 << 6]
    assert u[:, 2].tolist() == [0, 0]


def test_weight_exponent_applies_to_the_sum():
    # Two inputs of weight 1 with exponent -1: Lava shifts the sum (2 >> 1 = 1), not each
    # weight (which would give 0).
    g = Graph.chain([
        ("input", Input((2,))),
        ("syn", QDense(np.array([[1, 1]]), weight_exp=-1, sign_mode="excitatory")),
        ("lif", QCubaLIF(threshold=1000, current_decay=4096, voltage_decay=4096)),
    ])
    x = np.ones((1, 2, 2), dtype=np.int64)
    r = run(g, x, steps=2, input_mode="spikes", record=["u"])
    assert r.traces["lif.u"][0, 0].tolist() == [0, 64]


def test_reset_interval_is_staggered_by_depth():
    # Layer at depth d resets before Lava step tau with tau % K == (1 + d) % K.
    g = Graph.chain([
        ("input", Input((1,))),
        ("l0", QCubaLIF(threshold=1000, current_decay=4096, voltage_decay=0, bias_exp=0)),
        ("syn", QDense(np.array([[1]]), sign_mode="excitatory")),
        ("l1", QCubaLIF(threshold=1000, current_decay=4096, voltage_decay=0, bias=1)),
    ])
    r = run(g, np.array([[1]]), steps=7, reset_interval=3, record=["v"])
    # l0: v += 1 each step, zeroed before tau = 1, 4, 7.
    assert r.traces["l0.v"][0, 0].tolist() == [1, 2, 3, 1, 2, 3, 1]
    # l1: v += 1 (bias) each step, zeroed before tau = 2, 5.
    assert r.traces["l1.v"][0, 0].tolist() == [1, 1, 2, 3, 1, 2, 3]


def test_conv_is_pytorch_cross_correlation_with_stride_and_padding():
    rng = np.random.default_rng(0)
    w = rng.integers(-20, 20, size=(3, 2, 3, 2))
    x = rng.integers(0, 2, size=(1, 2, 7, 6, 1))
    g = Graph.chain([
        ("input", Input((2, 7, 6))),
        ("conv", QConv2d(w, stride=(2, 1), padding=(1, 0))),
        ("lif", QCubaLIF(threshold=10**5, current_decay=4096, voltage_decay=4096)),
    ])
    x = np.concatenate([x, np.zeros_like(x)], axis=-1)
    r = run(g, x, steps=2, input_mode="spikes", record=["u"])
    xp = np.pad(x[0, ..., 0], ((0, 0), (1, 1), (0, 0)))
    ho, wo = (7 + 2 - 3) // 2 + 1, 6 - 2 + 1
    expect = np.zeros((3, ho, wo), dtype=np.int64)
    for o in range(3):
        for i in range(ho):
            for j in range(wo):
                expect[o, i, j] = np.sum(w[o] * xp[:, 2 * i : 2 * i + 3, j : j + 2])
    np.testing.assert_array_equal(r.traces["lif.u"][0, ..., 1], expect << 6)


def test_large_fan_in_falls_back_to_exact_float64():
    # 70000 inputs of weight 255: the sum can reach 1.8e7 > 2**24, so float32 would not be
    # exact; the engine must switch to float64 and still match integer arithmetic.
    n = 70000
    rng = np.random.default_rng(1)
    w = np.full((2, n), 255)
    w[1, ::2] = 1
    x = (rng.random((1, n, 2)) < 0.97).astype(np.int64)
    g = Graph.chain([
        ("input", Input((n,))),
        ("syn", QDense(w, weight_exp=-8, sign_mode="excitatory")),
        ("lif", QCubaLIF(threshold=10**5, current_decay=4096, voltage_decay=4096)),
    ])
    r = run(g, x, steps=2, input_mode="spikes", record=["u"])
    expect = (w.astype(np.int64) @ x[0, :, 0]) >> 8
    np.testing.assert_array_equal(r.traces["lif.u"][0, :, 1], expect << 6)


def test_batch_equals_separate_runs():
    rng = np.random.default_rng(2)
    g = Graph.chain([
        ("input", Input((4,))),
        ("l0", QCubaLIF(threshold=3, current_decay=100, voltage_decay=300, bias_exp=6)),
        ("syn", QDense(rng.integers(-50, 50, (5, 4)))),
        ("flat", Flatten()),
        ("l1", QCubaLIF(threshold=2, current_decay=2000, voltage_decay=100)),
    ])
    x = rng.integers(0, 12, (3, 4))
    both = run(g, x, steps=9, record=["u", "v", "s"])
    for i in range(3):
        one = run(g, x[i : i + 1], steps=9, record=["u", "v", "s"])
        for key, arr in one.traces.items():
            np.testing.assert_array_equal(both.traces[key][i : i + 1], arr)


def test_unsupported_node_is_named():
    g = Graph.chain([("input", Input((2,))), ("sd", QSigmaDelta())])
    with pytest.raises(UnsupportedError, match="sd \\(QSigmaDelta\\)"):
        run(g, np.zeros((1, 2)), steps=1)


def test_bad_inputs_are_refused():
    g = neuron_chain(QCubaLIF(), n=3)
    with pytest.raises(NeurodeployError, match="expected \\(batch, 3\\)"):
        run(g, np.zeros((1, 4)), steps=1)
    with pytest.raises(NeurodeployError, match="NaN"):
        run(g, np.full((1, 3), np.nan), steps=1)
    with pytest.raises(NeurodeployError, match="2 time steps"):
        run(g, np.zeros((1, 3, 2)), steps=3, input_mode="spikes")
    with pytest.raises(NeurodeployError, match="unknown layer"):
        run(g, np.zeros((1, 3)), steps=1, record={"nope": "u"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(3)
    g = Graph.chain([
        ("input", Input((2, 9, 9))),
        ("l0", QCubaLIF(threshold=5, current_decay=500, voltage_decay=700, bias_exp=6)),
        ("conv", QConv2d(rng.integers(-60, 60, (4, 2, 3, 3)), stride=2)),
        ("l1", QCubaLIF(threshold=3, current_decay=1000, voltage_decay=100)),
    ])
    x = rng.integers(0, 30, (5, 2, 9, 9))
    a = run(g, x, steps=8, record=["u", "v", "s"])
    b = run(g, x, steps=8, record=["u", "v", "s"], device="cuda")
    for key in a.traces:
        np.testing.assert_array_equal(a.traces[key], b.traces[key])


def test_synapse_fed_by_synapse_waits_for_its_first_delivery():
    """A pool feeding a conv directly: nothing arrives at step 0; each synapse adds a step."""
    from neurodeploy.ir import Graph, Input, QConv2d, QCubaLIF, QSumPool2d
    from neurodeploy.hw_sim import run

    g = Graph.chain([("input", Input(shape=(1, 4, 4))), ("pool", QSumPool2d()),
                     ("conv", QConv2d(weight=np.full((1, 1, 1, 1), 2))),
                     ("lif", QCubaLIF(threshold=1 << 17, current_decay=4096))])
    r = run(g, np.ones((1, 1, 4, 4, 4), dtype=np.int64), steps=4, input_mode="spikes",
            record=["u"])
    # binary events: the pool sums 4 spikes, the conv multiplies by 2, u = a * 2**6
    assert r.traces["lif.u"][0, 0, 0, 0].tolist() == [0, 0, 8 * 64, 8 * 64]


def _trunc_ref(v: np.ndarray, m: int) -> np.ndarray:
    """Lava's decay in integers: (v * m) / 4096 rounded toward zero."""
    p = v.astype(np.int64) * m
    return np.sign(p) * (np.abs(p) >> 12)


@pytest.mark.parametrize("m", [3072, 3891, 4095, 2049, 1])
def test_float32_decay_is_exact_within_the_bound(m):
    # The engine keeps a layer's state in float32 only when |v| * odd(m) < 2**24 (odd(m): m
    # without its factors of two). Inside that bound trunc(v * m/4096) in float32 is exact:
    # checked on both edges of the range and on random values within it.
    from neurodeploy.hw_sim.engine import FLOAT32_EXACT, _odd_part

    vmax = (FLOAT32_EXACT - 1) // _odd_part(m)
    vmax = min(vmax, FLOAT32_EXACT - 1)
    rng = np.random.default_rng(m)
    v = np.concatenate([np.arange(-vmax, -vmax + 5000), np.arange(vmax - 5000, vmax + 1),
                        np.arange(-3000, 3000), rng.integers(-vmax, vmax + 1, 200_000)])
    got = torch.trunc(torch.tensor(v, dtype=torch.float32) * (m / 4096)).to(torch.int64)
    np.testing.assert_array_equal(got.numpy(), _trunc_ref(v, m))


def test_float32_decay_bound_is_needed():
    # Just beyond the bound float32 rounds the product and the truncation goes wrong: the
    # engine must not use float32 there (odd(4095) = 4095, bound 4097).
    v = np.arange(1 << 20, (1 << 20) + 20000)
    got = torch.trunc(torch.tensor(v, dtype=torch.float32) * (4095 / 4096)).to(torch.int64)
    assert np.any(got.numpy() != _trunc_ref(v, 4095))


class _StateDtypes:
    """A StepObserver that notes each layer's state dtype."""

    def __init__(self) -> None:
        self.dtypes: dict[str, torch.dtype] = {}

    def input_step(self, name, t, events) -> None:
        pass

    def neuron_step(self, name, t, s, u, v, a) -> None:
        self.dtypes[name] = v.dtype


def test_state_dtype_follows_the_bounds():
    # Same layer, small vs large synaptic input bound: float32 state when every value provably
    # fits 24 bits, float64 otherwise; both give the integer reference. 100 binary inputs of
    # weight w: |u| <= 6400 w, |v| <= 4 |u| (voltage decay 1024), odd(3072) = 3, so float32
    # needs 3 * 25600 w < 2**24: w = 3 passes, w = 255 does not.
    for weight, want in ((3, torch.float32), (255, torch.float64)):
        g = Graph.chain([
            ("input", Input((100,))),
            ("syn", QDense(np.full((2, 100), weight), sign_mode="excitatory")),
            ("lif", QCubaLIF(threshold=(1 << 17) - 1, current_decay=4096, voltage_decay=1024)),
        ])
        x = np.ones((1, 100, 4), dtype=np.int64)
        obs = _StateDtypes()
        r = run(g, x, steps=4, input_mode="spikes", record=["v"], observer=obs)
        assert obs.dtypes["lif"] == want
        a = 100 * weight * 64  # u, delivered from step 1 on
        v = [0, a]
        for _ in range(2):
            v.append(int(_trunc_ref(np.array([v[-1]]), 3072)[0]) + a)
        assert r.traces["lif.v"][0, 0].tolist() == v
