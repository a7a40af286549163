"""Quantization pass: weight quantization worked by hand, thresholds/decays/biases by hand,
lossless and lossy MLPs against the float simulator (aligned by pipeline depth), a pooled conv
net's logit agreement, exact pool folding, error listing, calibration statistics and a Lava
cross-check of the quantized graph."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np
import pytest
import torch

from neurodeploy.backends import floatsim
from neurodeploy.backends import lava as lava_backend
from neurodeploy.errors import QuantizationError, UnsupportedError
from neurodeploy.hw_sim import run as hw_run
from neurodeploy.hw_sim.engine import lava_weights
from neurodeploy.ir import (
    BNTT,
    IF,
    LIF,
    Add,
    Affine,
    AvgPool2d,
    Conv2d,
    CubaLIF,
    Flatten,
    Graph,
    I,
    Input,
    Linear,
    QConv2d,
    QCubaLIF,
    QDense,
    QSumPool2d,
    ReLU,
    SumPool2d,
)
from neurodeploy.ir.serialize import load_graph, save_graph
from neurodeploy.passes import quantize as quantize_module
from neurodeploy.passes.convert import poisson_spikes
from neurodeploy.passes.quantize import (
    fold_pooling,
    quantize,
    quantize_inputs,
    quantize_weights,
    sqnr_db,
)
from neurodeploy.simulation import pipeline_depths
from neurodeploy.targets import load_target


def _lif(lam: float, theta: float = 1.0, reset: str = "zero", **kw) -> LIF:
    """The seeds' discrete LIF ``v ← λv + I``."""
    return LIF(tau=1.0 / (1.0 - lam), r=1.0 / (1.0 - lam), v_leak=0.0, v_threshold=theta,
               reset=reset, **kw)


def _run_both(float_graph: Graph, fixed: Graph, x_float: np.ndarray, steps: int,
              record: list[str]) -> tuple:
    """Float run for ``steps`` steps; fixed run for ``steps`` + output depth steps (zero input
    after ``steps``), the same events."""
    fr = floatsim.run(float_graph, x_float, steps, record={n: ["s", "v"] for n in record})
    depth = pipeline_depths(fixed)
    extra = max(depth[n] for n in fixed.outputs)
    q = quantize_inputs(fixed, x_float, steps=steps)
    q = np.concatenate([q, np.zeros((*q.shape[:-1], extra), dtype=np.int64)], axis=-1)
    hr = hw_run(fixed, q, steps=steps + extra, input_mode="spikes",
                record={**{n: ["s", "v"] for n in record},
                        **{n: ["v"] for n in fixed.outputs}})
    return fr, hr, depth


# ------------------------------------------------------------------------------------------
# weights by hand
# ------------------------------------------------------------------------------------------


def test_weight_exponent_and_mantissas_by_hand():
    # Mixed 8-bit keeps even mantissas in [-256, 254]. [100, -50, 25.2]: e = -2 would need
    # 400 > 254; e = -1 gives [200, -100, 50.4 -> 50] (even grid).
    q = quantize_weights([100.0, -50.0, 25.2], exp_min=-8, exp_max=7)
    assert (q.weight_exp, q.sign_mode, q.num_weight_bits) == (-1, "mixed", 8)
    assert q.mantissa.tolist() == [200, -100, 50]
    assert q.clipped_fraction == 0 and q.underflow_fraction == 0 and q.exp_clamped is None
    # All positive: the excitatory grid (step 1, [0, 255]); 300 needs e = 1 -> [150, 5].
    q = quantize_weights([300.0, 10.0])
    assert (q.weight_exp, q.sign_mode, q.mantissa.tolist()) == (1, "excitatory", [150, 5])
    # 4-bit mixed: step 2**(9-4) = 32, range [-256, 224]. 100 at e = -1 is 200 -> 6.25 steps
    # -> 192; e = -2 would be 400 -> 384 > 224.
    q = quantize_weights([100.0, -3.0], num_weight_bits=4)
    assert (q.weight_exp, q.mantissa.tolist()) == (-1, [192, 0])
    assert q.underflow_fraction == 0.5  # -3 rounds to 0 on the 32-step grid
    # Too large for exp_max = 7: saturates at 254 (mixed) and says so.
    q = quantize_weights([1e6, -1.0], exp_max=7)
    assert (q.weight_exp, q.exp_clamped, q.mantissa.tolist()) == (7, "max", [254, 0])
    assert q.clipped_fraction == 0.5
    # Every mantissa is one Lava's weight truncation keeps as it is.
    rng = np.random.default_rng(0)
    for bits in (8, 6, 3):
        for w in (rng.normal(size=50) * 300, np.abs(rng.normal(size=50)) * 7,
                  -np.abs(rng.normal(size=50))):
            q = quantize_weights(w, num_weight_bits=bits)
            kept = lava_weights(q.mantissa, q.num_weight_bits, q.sign_mode)
            np.testing.assert_array_equal(kept, q.mantissa)


def test_all_zero_and_tiny_weights_do_not_inflate_the_exponent():
    q = quantize_weights(np.zeros((3, 4)), exp_min=-7, exp_max=7)
    assert q.all_zero and q.weight_exp == 0 and not q.mantissa.any()
    assert math.isnan(sqnr_db(np.zeros(3), np.zeros(3)))
    q = quantize_weights(np.full(5, 1e-12) * np.arange(5), exp_min=-7, exp_max=7)
    assert q.weight_exp == -7 and q.exp_clamped == "min"
    assert q.underflow_fraction == 1.0 and not q.mantissa.any()
    with pytest.raises(QuantizationError):
        quantize_weights([np.nan, 1.0])


def test_sqnr_on_a_known_case():
    # IF (gain 1, θ = 1): the layer's scale is 256, so [0.75, -0.5, 0.3] -> [192, -128, 76.8]
    # at exponent 0; 76.8 rounds to 76 on the even grid: ŵ = 0.296875, error 0.003125.
    g = Graph.chain([
        ("inp", Input((3,))),
        ("fc1", Linear(np.array([[0.75, -0.5, 0.3]]))),
        ("n", IF(r=1.0, v_threshold=1.0)),
        ("fc2", Linear(np.array([[1.0]]))),
        ("acc", I(r=1.0)),
    ], timesteps=4)
    fixed, rep = quantize(g, "loihi2")
    assert fixed.nodes["fc1"].weight.tolist() == [[192, -128, 76]]
    assert fixed.nodes["fc1"].weight_exp == 0
    want = 10 * math.log10((0.75**2 + 0.5**2 + 0.3**2) / 0.003125**2)  # 49.657 dB
    assert rep.synapse("fc1").sqnr_db == pytest.approx(want, rel=1e-9)
    assert want == pytest.approx(49.657, abs=1e-3)
    assert rep.synapse("fc2").sqnr_db == math.inf  # 1.0 is on the grid: lossless
    data = json.loads(rep.to_json())
    assert data["layers"][1]["synapses"][0]["sqnr_db"] is None  # inf → null in JSON


def test_all_zero_and_tiny_layers_in_a_network():
    rng = np.random.default_rng(1)

    def net(w1: np.ndarray) -> Graph:
        return Graph.chain([
            ("inp", Input((4,))), ("fc1", Linear(w1)), ("n", _lif(0.9)),
            ("fc2", Linear(rng.normal(size=(2, 3)))), ("acc", I(r=1.0)),
        ], timesteps=8)

    fixed, rep = quantize(net(np.zeros((3, 4))), "loihi2")
    syn = rep.synapse("fc1")
    assert syn.all_zero and syn.weight_exp == 0 and math.isnan(syn.sqnr_db)
    assert not fixed.nodes["fc1"].weight.any()
    assert any("fc1: all weights are zero" in w for w in rep.warnings)
    res = hw_run(fixed, np.ones((1, 4, 8), dtype=np.int64), steps=8, input_mode="spikes",
                 record={"acc": ["v"]})
    assert not res.traces["acc.v"].any()

    for target, e_min in (("loihi2", -8), ("loihi1", -7)):
        fixed, rep = quantize(net(np.full((3, 4), 1e-12)), target)
        syn, layer = rep.synapse("fc1"), rep.layer("n")
        # The scale was raised as far as the threshold allows (2**(17-3)), then the exponent
        # stays at the target's minimum and every weight underflows.
        assert layer.scale_status == "raised" and layer.threshold_mant == 1 << 14
        assert syn.weight_exp == e_min and fixed.nodes["fc1"].weight_exp == e_min
        assert syn.exp_clamped == "min" and syn.underflow_fraction == 1.0
        assert any("round to zero" in w for w in rep.warnings)


# ------------------------------------------------------------------------------------------
# neurons, thresholds, decays and biases by hand
# ------------------------------------------------------------------------------------------


def test_threshold_decay_and_bias_by_hand():
    # LIF λ = 0.75, θ = 2: voltage_decay = 4096·0.25 = 1024 (exact), S = 256 a-units per
    # threshold, so the layer's scale is 128 and w = 0.5 is 64 a-units: mantissa 128 at the
    # smallest exponent that fits, -1 (full 8-bit mantissa).
    # Biases b go to v as 64·S·b/θ per step: 0.25 -> 2048, 1.0 -> 8192, 100 -> 819200;
    # 819200 does not fit 13 bits (4095) even at bias_exp 7 (6400), so all use exponent 7:
    # [16, 64, 4095], one overflow in three.
    g = Graph.chain([
        ("inp", Input((2,))),
        ("fc1", Affine(np.full((3, 2), 0.5), np.array([0.25, 1.0, 100.0]))),
        ("n", _lif(0.75, theta=2.0)),
        ("fc2", Linear(np.ones((1, 3)))),
        ("acc", I(r=1.0)),
    ], timesteps=4)
    fixed, rep = quantize(g, "loihi2")
    n = fixed.nodes["n"]
    assert isinstance(n, QCubaLIF)
    assert (n.threshold, n.voltage_decay, n.current_decay, n.reset) == (256, 1024, 4096, "zero")
    assert (n.bias_exp, n.bias.tolist()) == (7, [16, 64, 4095])
    layer = rep.layer("n")
    assert layer.scale == 128.0 and layer.threshold_error == 0 and layer.decay_error == 0
    assert layer.bias_overflow_fraction == pytest.approx(1 / 3)
    assert fixed.nodes["fc1"].weight.tolist() == [[128, 128]] * 3
    assert fixed.nodes["fc1"].weight_exp == -1
    # Without the overflowing bias the smallest exponent is chosen: 8192/2 = 4096 > 4095.
    g2 = g.replace_node("fc1", Affine(np.full((3, 2), 0.5), np.array([0.25, 1.0, 0.0])))
    n2 = quantize(g2, "loihi2")[0].nodes["n"]
    assert (n2.bias_exp, n2.bias.tolist()) == (2, [512, 2048, 0])
    # λ = 0.9 is not a 12-bit decay: round(409.6) = 410, λ_fixed = 0.899902...
    g3 = g.replace_node("n", _lif(0.9))
    rep3 = quantize(g3, "loihi2")[1]
    assert rep3.layer("n").voltage_decay == 410
    assert rep3.layer("n").decay_error == pytest.approx(abs(410 / 4096 - 0.1), abs=1e-12)
    # The accumulator: threshold 2**17 (never reached), no leak; overflow risk by hand:
    # fc2 = ones at scale S_acc: worst |u| = 64 · 3 · mantissa · 2**e · 1 spike.
    acc = fixed.nodes["acc"]
    assert (acc.threshold, acc.voltage_decay) == (1 << 17, 0)
    fc2 = fixed.nodes["fc2"]
    worst = 64 * np.abs(fc2.weight).sum() * 2.0**fc2.weight_exp
    assert rep.layer("acc").worst_case_u == worst
    assert rep.layer("acc").overflow_risk == worst / 2**23
    assert fixed.metadata["output_scale"] == rep.output_scale["acc"] == rep.layer("acc").scale


def test_leak_bias_cubalif_and_saved_metadata(tmp_path):
    # v_leak: LIF(tau=4) adds dt/tau·v_leak = 0.1 per step; over θ = 2 at S = 256 that is
    # 64·256·0.05 = 819.2 -> bias mantissa 819 at exponent 0.
    g = Graph.chain([
        ("inp", Input((2,))), ("fc1", Linear(np.full((3, 2), 0.5))),
        ("n", LIF(tau=4.0, r=4.0, v_leak=0.4, v_threshold=2.0)),
        ("fc2", Linear(np.ones((1, 3)))), ("acc", I(r=1.0)),
    ], timesteps=4)
    n = quantize(g, "loihi2")[0].nodes["n"]
    assert (n.bias_exp, int(n.bias), n.voltage_decay) == (0, 819, 1024)
    # CubaLIF: tau_syn = 2, tau_mem = 4 give current_decay 2048 and voltage_decay 1024; the
    # input gain dt/tau_mem·r·dt/tau_syn = 1/8 goes into the weights (2·1/8·256 = 64 a-units).
    rng = np.random.default_rng(0)
    steps = 20
    cuba = Graph.chain([
        ("inp", Input((10,))), ("fc1", Linear(rng.integers(-8, 9, size=(20, 10)) / 4)),
        ("n", CubaLIF(tau_syn=2.0, tau_mem=4.0, r=1.0, v_leak=0.0, v_threshold=1.0)),
        ("fc2", Linear(rng.integers(-4, 5, size=(3, 20)) / 4)), ("acc", I(r=1.0)),
    ], timesteps=steps)
    fixed, rep = quantize(cuba, "loihi2")
    n = fixed.nodes["n"]
    assert (n.current_decay, n.voltage_decay, n.threshold) == (2048, 1024, 256)
    fc1 = fixed.nodes["fc1"]
    np.testing.assert_array_equal(fc1.weight * 2.0**fc1.weight_exp,
                                  np.asarray(cuba.nodes["fc1"].weight) * 256 / 8)
    x = (rng.random((8, 10, steps)) < 0.3).astype(np.float64)
    fr, hr, depth = _run_both(cuba, fixed, x, steps, ["n"])
    fs = fr.traces["n.s"]
    assert fs.mean() > 0.05
    # Only the truncation of u and v (1/64 a-unit per step) separates them.
    assert (hr.traces["n.s"][..., 1:1 + steps] != fs).mean() < 0.005
    # The fixed graph, metadata included, survives the IR file format.
    path = tmp_path / "q.ndir"
    save_graph(fixed, path)
    back = load_graph(path)
    assert back.metadata["quantization"] == fixed.metadata["quantization"]
    assert back.metadata["output_scale"] == rep.output_scale["acc"]
    assert all(back.nodes[k].same_as(fixed.nodes[k]) for k in fixed.nodes)


def test_two_synapses_into_one_neuron_share_its_scale():
    # 0.5 -> 128 at exponent 0; 0.01 -> 2.56 needs exponent -6 (163.84 -> 164) for a full
    # mantissa; one threshold mantissa (256) for both.
    g = Graph(
        {"inp": Input((1,)), "a": Linear(np.array([[0.5]])), "b": Linear(np.array([[0.01]])),
         "add": Add(), "n": IF(r=1.0, v_threshold=1.0, reset="subtract"),
         "out": Linear(np.array([[1.0]])), "acc": I(r=1.0)},
        [("inp", "a"), ("inp", "b"), ("a", "add"), ("b", "add"), ("add", "n"), ("n", "out"),
         ("out", "acc")], {"timesteps": 30},
    )
    fixed, rep = quantize(g, "loihi2")
    assert (fixed.nodes["a"].weight_exp, fixed.nodes["a"].weight.tolist()) == (0, [[128]])
    assert (fixed.nodes["b"].weight_exp, fixed.nodes["b"].weight.tolist()) == (-6, [[164]])
    assert fixed.nodes["n"].threshold == 256
    x = np.ones((1, 1, 30))
    fr, hr, depth = _run_both(g, fixed, x, 30, ["n"])
    # Float: v grows by 0.51 per step and the surplus after each spike by 0.02, so over 30
    # steps the neuron fires every second step (v = 1.02, 1.04, ...); fixed: 128 +
    # floor(164/64) = 130 a-units per step (0.5078 thresholds): every second step as well.
    fs = fr.traces["n.s"][0, 0]
    hs = hr.traces["n.s"][0, 0, depth["n"]:depth["n"] + 30]
    assert fs.sum() == hs.sum() == 15


# ------------------------------------------------------------------------------------------
# float vs fixed
# ------------------------------------------------------------------------------------------


def _mlp(lam: float, seed: int, steps: int) -> Graph:
    rng = np.random.default_rng(seed)
    w1 = rng.integers(-8, 9, size=(32, 16)) / 16  # a coarse grid: exact mantissas at S = 256
    w2 = rng.integers(-8, 9, size=(10, 32)) / 8
    return Graph.chain([
        ("inp", Input((16,))),
        ("fc1", Affine(w1, np.zeros(32))),
        ("lif1", _lif(lam, theta=1.0, reset="subtract")),
        ("fc2", Affine(w2, np.zeros(10))),
        ("acc", I(r=1.0)),
    ], timesteps=steps, dt=1.0)


def test_lossless_mlp_matches_the_float_simulator_exactly():
    # λ = 0.5 is a 12-bit decay (2048/4096) and the weights lie on a 1/16 grid: v·64·256
    # stays an integer for 10 halvings, so with T = 10 every fixed-point value is the float
    # value times 2**14 — spike trains equal after the one-step delay, logits equal.
    steps = 10
    g = _mlp(0.5, seed=3, steps=steps)
    fixed, rep = quantize(g, "loihi2")
    assert rep.synapse("fc1").sqnr_db == math.inf and rep.synapse("fc2").sqnr_db == math.inf
    assert rep.layer("lif1").decay_error == 0
    x = (np.random.default_rng(4).random((16, 16, steps)) < 0.3).astype(np.float64)
    fr, hr, depth = _run_both(g, fixed, x, steps, ["lif1"])
    fs = fr.traces["lif1.s"]
    assert 0.05 < fs.mean() < 0.5  # the network is active
    d = depth["lif1"]
    np.testing.assert_array_equal(hr.traces["lif1.s"][..., d:d + steps], fs)
    np.testing.assert_array_equal(hr.traces["lif1.v"][..., d:d + steps],
                                  fr.traces["lif1.v"] * 64 * 256)
    s_out = fixed.metadata["output_scale"]
    fixed_logits = hr.traces["acc.v"][..., depth["acc"] + steps - 1] / (64 * s_out * steps)
    np.testing.assert_array_equal(fixed_logits, fr.traces["acc.out"][..., -1] / steps)


def test_mlp_with_lambda_09_matches_up_to_the_decay_rounding():
    # λ = 0.9 becomes 1 - 410/4096: a relative error of 1e-4 per step, so a spike can only
    # move when the float potential lies within a hair of the threshold.
    steps = 20
    g = _mlp(0.9, seed=0, steps=steps)
    fixed, rep = quantize(g, "loihi2")
    assert rep.layer("lif1").threshold_mant == 256 and rep.layer("lif1").voltage_decay == 410
    x = (np.random.default_rng(0).random((8, 16, steps)) < 0.3).astype(np.float64)
    fr, hr, depth = _run_both(g, fixed, x, steps, ["lif1"])
    fs, d = fr.traces["lif1.s"], depth["lif1"]
    hs = hr.traces["lif1.s"][..., d:d + steps]
    assert 0.1 < fs.mean() < 0.3
    differ = fs != hs
    assert differ.mean() < 0.005
    # The first disagreement of each neuron sits where the float potential before reset was
    # within 0.01 of the threshold (error bound (1e-4·max|v| + 2**-14)/(1-λ) ≈ 0.01).
    v_pre = fr.traces["lif1.v"] + fs
    for b, n in {(b, n) for b, n, _ in np.argwhere(differ)}:
        t = int(np.argmax(differ[b, n]))
        assert abs(v_pre[b, n, t] - 1.0) < 0.01
    s_out = fixed.metadata["output_scale"]
    fixed_logits = hr.traces["acc.v"][..., depth["acc"] + steps - 1] / (64 * s_out * steps)
    float_logits = fr.traces["acc.out"][..., -1] / steps
    assert np.abs(fixed_logits - float_logits).max() < 0.2
    assert (fixed_logits.argmax(1) == float_logits.argmax(1)).mean() >= 7 / 8


def _conv_net(rng: np.random.Generator, steps: int) -> Graph:
    def lif() -> LIF:
        return _lif(0.9, theta=1.0)

    return Graph.chain([
        ("inp", Input((1, 8, 8))),
        ("c1", Conv2d(rng.normal(0, 0.5, (8, 1, 3, 3)), rng.normal(0, 0.05, 8), padding=1)),
        ("l1", lif()),
        ("p1", AvgPool2d(2, 2)),
        ("c2", Conv2d(rng.normal(0, 0.3, (16, 8, 3, 3)), None, padding=1)),
        ("l2", lif()),
        ("p2", AvgPool2d(2, 2)),
        ("fl", Flatten()),
        ("fc", Affine(rng.normal(0, 0.3, (10, 64)), np.zeros(10))),
        ("acc", I(r=1.0)),
    ], timesteps=steps, dt=1.0, encoder="direct")


def test_pool_folding_is_exact_and_keeps_the_timing():
    rng = np.random.default_rng(5)
    g = _conv_net(rng, 6)
    folded, which, problems = fold_pooling(g)
    assert problems == [] and which == {"p1": ["c2"], "p2": ["fc"]}
    assert "p1" not in folded.nodes and folded.nodes["c2"].weight.shape == (16, 8, 6, 6)
    assert folded.nodes["fc"].weight.shape == (10, 256)
    x = rng.random((3, 1, 8, 8)) * 2
    a = floatsim.run(g, x, 6, record={"l2": ["v", "s"]})
    b = floatsim.run(folded, x, 6, record={"l2": ["v", "s"]})
    np.testing.assert_allclose(b.traces["acc.out"], a.traces["acc.out"], rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(b.traces["l2.s"], a.traces["l2.s"])
    # A pool between a conv and its neuron folds into that conv (its bias as well).
    g2 = Graph.chain([
        ("inp", Input((2, 6, 6))),
        ("c", Conv2d(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), padding=1)),
        ("p", AvgPool2d(2, 2)), ("n", _lif(0.8)), ("fl", Flatten()),
        ("fc", Linear(rng.normal(size=(2, 27)))), ("acc", I(r=1.0)),
    ])
    folded2, which2, _ = fold_pooling(g2)
    assert which2 == {"p": ["c"]} and folded2.shapes["c"] == (3, 3, 3)
    x2 = rng.random((2, 2, 6, 6)) * 3
    np.testing.assert_allclose(floatsim.run(folded2, x2, 5).traces["acc.out"],
                               floatsim.run(g2, x2, 5).traces["acc.out"], rtol=1e-9, atol=1e-9)


def test_pool_between_neurons_carries_the_scale():
    # IF -> AvgPool2d -> IF has no weighted synapse: the pool stays a QSumPool2d whose one
    # weight is S·(1/4)/θ = 256·0.25/0.5 = 128. Weights on a 1/4 grid and binary (signed
    # Poisson: 2-bit graded) input make the whole network lossless: equal spike rates and
    # logits.
    rng = np.random.default_rng(0)
    g = Graph.chain([
        ("inp", Input((2, 4, 4))),
        ("c", Conv2d(rng.integers(-4, 5, (2, 2, 3, 3)) / 4, None, padding=1)),
        ("l1", IF(r=1.0, v_threshold=1.0)), ("p", AvgPool2d(2, 2)),
        ("l2", IF(r=1.0, v_threshold=0.5)), ("fl", Flatten()),
        ("fc", Linear(rng.integers(-4, 5, (3, 8)) / 4)), ("acc", I(r=1.0)),
    ], timesteps=10, encoder="poisson")
    calib = rng.random((4, 2, 4, 4)) * 2 - 1
    fixed, rep = quantize(g, "loihi2", calib=calib)
    p = fixed.nodes["p"]
    assert isinstance(p, QSumPool2d) and (p.weight, p.weight_exp) == (128, 0)
    assert rep.folded_pools == {} and fixed.nodes["inp"].num_message_bits == 2
    for name in ("l1", "l2"):
        assert rep.layer(name).calib_rate_fixed == rep.layer(name).calib_rate_float > 0.1
    assert rep.calib["argmax_agreement"] == 1.0 and rep.calib["max_abs_logit_error"] == 0.0
    with pytest.raises(UnsupportedError, match="negative values"):
        quantize(g, "loihi1", calib=calib)


def test_conv_net_with_avgpool_agrees_with_float():
    # Random weights, direct 8-bit input, calibrated input range. Measured: the argmax of the
    # float and hw_sim logits agrees on 48/48 test samples (16/16 in the calibration run);
    # the largest logit error is 0.147 for logits up to 1.34 (SQNR of the weights 36-43 dB).
    rng = np.random.default_rng(1)
    steps = 12
    g = _conv_net(rng, steps)
    calib = rng.random((16, 1, 8, 8)) * 2
    fixed, rep = quantize(g, "loihi2", calib=calib)
    assert set(rep.folded_pools) == {"p1", "p2"}
    assert not any(isinstance(n, QSumPool2d) for n in fixed.nodes.values())
    assert isinstance(fixed.nodes["c2"], QConv2d) and isinstance(fixed.nodes["fc"], QDense)
    assert fixed.nodes["inp"].num_message_bits == 8
    assert rep.input["signed"] is False and rep.input["input_scale"] == pytest.approx(
        255 / np.abs(calib).max())
    assert rep.calib["argmax_agreement"] >= 0.9
    for layer in ("l1", "l2"):
        lr = rep.layer(layer)
        assert lr.calib_rate_float > 0.05
        assert lr.calib_rate_fixed == pytest.approx(lr.calib_rate_float, rel=0.1)
        assert lr.calib_v_saturation_fraction == 0
    x = rng.random((48, 1, 8, 8)) * 2
    fr, hr, depth = _run_both(g, fixed, x, steps, [])
    s_out = fixed.metadata["output_scale"]
    fixed_logits = hr.traces["acc.v"][..., depth["acc"] + steps - 1] / (64 * s_out * steps)
    float_logits = fr.traces["acc.out"][..., -1] / steps
    agreement = (fixed_logits.argmax(1) == float_logits.argmax(1)).mean()
    assert agreement >= 0.9
    assert np.abs(fixed_logits - float_logits).max() < 0.25 * np.abs(float_logits).max()


# ------------------------------------------------------------------------------------------
# errors and warnings
# ------------------------------------------------------------------------------------------


def test_soft_reset_on_loihi1_is_refused_or_converted():
    g = _mlp(0.9, seed=0, steps=8)
    assert not load_target("loihi1").programmable_neurons
    with pytest.raises(UnsupportedError) as err:
        quantize(g, "loihi1")
    msg = str(err.value)
    assert "lif1 (LIF)" in msg and "reset='zero'" in msg and "allow_hard_reset" in msg
    assert "\n" not in msg
    fixed, rep = quantize(g, "loihi1", allow_hard_reset=True)
    assert fixed.nodes["lif1"].reset == "zero" and rep.layer("lif1").reset == "zero"
    assert any("lif1" in w and "hard reset" in w for w in rep.warnings)
    assert fixed.nodes["fc1"].weight_exp >= -7  # loihi1's exponent range
    # loihi2 keeps the soft reset.
    assert quantize(g, "loihi2")[0].nodes["lif1"].reset == "subtract"


def test_every_offender_is_listed_at_once():
    g = Graph.chain([
        ("inp", Input((4,))),
        ("fc1", Linear(np.ones((4, 4)))),
        ("relu", ReLU()),
        ("fc2", Linear(np.ones((4, 4)))),
        ("bn", BNTT(scale=np.ones((5, 4)), shift=np.zeros((5, 4)))),
        ("n", _lif(0.9, order="fire_integrate")),
        ("fc3", Linear(np.ones((2, 4)))),
        ("acc", I(r=1.0)),
    ])
    with pytest.raises(UnsupportedError) as err:
        quantize(g, "loihi2")
    msg = str(err.value)
    assert "relu (ReLU)" in msg and "convert the ANN first" in msg
    assert "bn (BNTT)" in msg and "bntt='schedule'" in msg and "bntt='fold'" in msg
    assert "n (LIF)" in msg and "fire_integrate" in msg


def test_structural_and_option_errors():
    # A neuron fed by a neuron without a synapse, and an output that is not a neuron.
    g = Graph.chain([("inp", Input((2,))), ("fc", Linear(np.ones((2, 2)))),
                     ("a", IF(r=1.0, v_threshold=1.0)), ("b", IF(r=1.0, v_threshold=1.0)),
                     ("out", Linear(np.ones((1, 2))))])
    with pytest.raises(UnsupportedError) as err:
        quantize(g, "loihi2")
    assert "b: fed by a (IF) without a synapse" in str(err.value)
    assert "out (Linear): does not feed a neuron layer" in str(err.value)
    # Direct (graded) input needs graded spikes: Loihi 1 has none.
    mlp = _mlp(0.9, 0, 8)
    with pytest.raises(UnsupportedError, match="graded spikes"):
        quantize(mlp, "loihi1", encoder="direct", allow_hard_reset=True)
    with pytest.raises(QuantizationError, match="weight_bits"):
        quantize(mlp, "loihi2", weight_bits=9)
    with pytest.raises(QuantizationError, match="ANN device"):
        quantize(mlp, "cpu")


# ------------------------------------------------------------------------------------------
# inputs and calibration
# ------------------------------------------------------------------------------------------


def test_quantize_inputs_direct_poisson_and_spikes():
    net = _mlp(0.9, 0, 3)
    # Signed calibration data, 8 bits: qmax 127, input_scale 127/max|x| = 127.
    calib = np.zeros((2, 16))
    calib[0, 0], calib[1, 1] = 1.0, -0.5
    fixed, rep = quantize(net, "loihi2", encoder="direct", calib=calib)
    assert rep.input == {"encoding": "direct", "num_message_bits": 8, "input_scale": 127.0,
                         "input_range": 1.0, "signed": True}
    x = np.zeros((1, 16))
    x[0, :3] = [0.5, -1.0, 2.0]
    q = quantize_inputs(fixed, x)
    assert q.shape == (1, 16, 3) and q.dtype == np.int64
    assert q[0, :3, 0].tolist() == [64, -127, 127]  # 63.5 rounds to even; 254 clips
    assert (q == q[..., :1]).all()
    # Poisson: binary input, the spike trains of passes.convert.poisson_spikes.
    fixed_p, rep_p = quantize(net, "loihi2", encoder="poisson")
    assert fixed_p.nodes["inp"].num_message_bits == 0
    rates = np.random.default_rng(0).random((2, 16))
    want = poisson_spikes(torch.as_tensor(rates), 3, seed=7).numpy()
    np.testing.assert_array_equal(quantize_inputs(fixed_p, rates, seed=7), want)
    # Binary spikes must be 0/1.
    fixed_s, _ = quantize(net, "loihi2")
    with pytest.raises(QuantizationError, match=r"integers in \[0, 1\]"):
        quantize_inputs(fixed_s, -np.ones((1, 16, 3)))


def test_calibration_reports_saturation_by_hand():
    # w = -20 at S = 256: -5120 a-units = mantissa -160 at exponent 5, so v drops by
    # 64·5120 = 327680 per step from step 1 on (one-step delay). It passes -(2**23 - 1) at
    # step 26 and stays clamped through step 41 (40 input steps plus the accumulator's two
    # steps of pipeline): 16 of 42 steps saturated.
    g = Graph.chain([
        ("inp", Input((1,))), ("fc", Linear(np.array([[-20.0]]))),
        ("n", IF(r=1.0, v_threshold=1.0)), ("out", Linear(np.array([[1.0]]))),
        ("acc", I(r=1.0)),
    ], timesteps=40)
    fixed, rep = quantize(g, "loihi2", calib=np.ones((1, 1, 40)))
    assert fixed.nodes["fc"].weight.tolist() == [[-160]] and fixed.nodes["fc"].weight_exp == 5
    layer = rep.layer("n")
    assert layer.calib_max_abs_u == 327680 and layer.calib_max_abs_v == 2**23 - 1
    assert layer.calib_v_saturation_fraction == pytest.approx(16 / 42)
    assert layer.calib_rate_fixed == layer.calib_rate_float == 0
    assert any("24-bit limit" in w for w in rep.warnings)
    assert rep.layer("acc").calib_v_saturation_fraction == 0
    data = json.loads(rep.to_json())
    assert data["layers"][0]["calib_v_saturation_fraction"] == pytest.approx(16 / 42)
    assert data["calib"]["steps"] == 40 and data["calib"]["pipeline_depth"] == 2
    assert fixed.metadata["input_encoding"] == "spikes"
    assert fixed.metadata["quantization"]["n"]["threshold_mant"] == 256


# ------------------------------------------------------------------------------------------
# Lava cross-check
# ------------------------------------------------------------------------------------------


@pytest.mark.lava
def test_quantized_graph_runs_the_same_on_lava(lava):
    # Hard reset (Lava's LIF has no soft reset); direct input, so graded 8-bit events go into
    # the first Dense on both backends; the conv variant uses lava_compatible exponents.
    rng = np.random.default_rng(2)
    steps = 6
    dense = Graph.chain([
        ("inp", Input((6,))), ("fc1", Affine(rng.normal(0, 0.6, (5, 6)), rng.normal(0, 0.1, 5))),
        ("n", _lif(0.8)), ("fc2", Linear(rng.normal(0, 1.0, (3, 5)))), ("acc", I(r=1.0)),
    ], timesteps=steps, encoder="direct")
    conv = Graph.chain([
        ("inp", Input((1, 4, 4))), ("c", Conv2d(rng.normal(0, 0.6, (2, 1, 3, 3)), None)),
        ("n", _lif(0.8)), ("fl", Flatten()), ("fc", Linear(rng.normal(0, 1.0, (2, 8)))),
        ("acc", I(r=1.0)),
    ], timesteps=steps, encoder="direct")
    for g, x in ((dense, rng.normal(0, 1, (2, 6))), (conv, rng.random((1, 1, 4, 4)))):
        fixed, _ = quantize(g, "loihi2", calib=x, lava_compatible=True)
        assert fixed.nodes["inp"].num_message_bits == 8
        q = quantize_inputs(fixed, x)
        rec = {"n": ["s", "v"], "acc": ["v"]}
        a = hw_run(fixed, q, steps=steps, input_mode="spikes", record=rec)
        b = lava_backend.run(fixed, q, steps=steps, input_mode="spikes", record=rec)
        assert a.traces["n.s"].any()
        for key in ("n.s", "n.v", "acc.v"):
            np.testing.assert_array_equal(b.traces[key], a.traces[key])


# ------------------------------------------------------------------------------------------
# Golden results: the quantization of small networks, pinned bit for bit
# ------------------------------------------------------------------------------------------


def _golden_graph(case: str) -> Graph:
    """Small float networks with random weights (numpy seeds): a BNTT CNN whose second pool
    leaves a row and column unread, the same CNN without BNTT and with 2-channel direct input,
    and a mixed one (SumPool → Flatten → Affine with bias, IF and CubaLIF, a neuron with gain 0
    so its synapse row has factor 0)."""
    rng = np.random.default_rng(["cnn", "direct", "mixed"].index(case) + 7)
    if case in ("cnn", "direct"):
        w1 = rng.normal(0, 0.4, (8, 1 if case == "cnn" else 2, 3, 3))
        w1[0, 0, 0, 0] = -0.0
        layers = [("input", Input((w1.shape[1], 14, 14))),
                  ("conv1", Conv2d(w1, None, padding=(1, 1)))]
        if case == "cnn":
            layers.append(("bn1", BNTT(rng.uniform(0.5, 1.5, (4, 8)),
                                       rng.normal(0, 0.1, (4, 8)))))
        layers += [("lif1", _lif(0.9)), ("pool1", AvgPool2d((2, 2), (2, 2))),
                   ("conv2", Conv2d(rng.normal(0, 0.15, (16, 8, 3, 3)), rng.normal(0, 0.05, 16),
                                    padding=(1, 1))),
                   ("lif2", _lif(0.95, theta=0.8, reset="subtract")),
                   ("pool2", AvgPool2d((2, 2), (2, 2))),  # 7 -> 3: row and column 7 unread
                   ("flatten", Flatten()),
                   ("fc1", Linear(rng.normal(0, 0.08, (32, 144))))]
        if case == "cnn":
            layers.append(("bn2", BNTT(rng.uniform(-1.2, 1.2, (4, 32)),
                                       rng.normal(0, 0.1, (4, 32)))))
        layers += [("lif3", _lif(0.8)), ("out", Linear(rng.normal(0, 0.2, (10, 32)))),
                   ("acc", I(r=1.0))]
        return Graph.chain(layers, timesteps=4,
                           encoder="direct" if case == "direct" else "spikes")
    r = np.full(12, 1.0)
    r[3] = 0.0
    return Graph.chain([
        ("input", Input((3, 9, 9))),
        ("conv1", Conv2d(rng.normal(0, 0.3, (6, 3, 2, 2)) * (rng.random((6, 3, 2, 2)) > 0.3),
                         None)),
        ("if1", IF(r=1.0, v_threshold=1.0)),
        ("pool1", SumPool2d((3, 3), (3, 3))),  # 8 -> 2: two rows and columns unread
        ("flatten", Flatten()),
        ("fc1", Affine(rng.normal(0, 0.5, (12, 24)), rng.normal(0, 0.1, 12))),
        ("cuba", CubaLIF(tau_syn=2.0, tau_mem=4.0, r=r, v_leak=0.0, v_threshold=0.5)),
        ("out", Linear(rng.normal(0, 0.3, (5, 12)) * 1e3)),
        ("acc", I(r=1.0)),
    ], timesteps=6)


def _golden_digest(fixed: Graph, report) -> str:
    """sha256 (16 hex digits) of every node field of ``fixed``, its metadata and the report's
    numbers (calibration statistics, which come from hw_sim, and warning texts left out)."""
    h = hashlib.sha256()
    for name, node in fixed.nodes.items():
        h.update(f"{name}:{node.type_name}".encode())
        for f in dataclasses.fields(node):
            v = getattr(node, f.name)
            if isinstance(v, np.ndarray):
                kind = np.int64 if v.dtype.kind in "iub" else np.float64
                h.update(f"{f.name}{v.shape}".encode()
                         + np.ascontiguousarray(v, dtype=kind).tobytes())
            else:
                h.update(f"{f.name}={v!r}".encode())
    doc = report.to_dict()
    doc.pop("calib")
    doc.pop("warnings")
    for layer in doc["layers"]:
        for key in [k for k in layer if k.startswith("calib_")] + ["warnings"]:
            layer.pop(key)
    h.update(json.dumps(doc, sort_keys=True).encode())
    h.update(json.dumps(dict(fixed.metadata), sort_keys=True, default=repr).encode())
    return h.hexdigest()[:16]


#: name -> (network, quantize options, digest, {synapse: (weight_exp, Σ|mantissa|, SQNR dB)}).
#: Computed with the whole-array implementation that preceded the blockwise passes.
GOLDEN = {
    "cnn_fold": ("cnn", {"bntt": "fold", "lava_compatible": True}, "2882bbc7289011dd",
                 {"conv1": (0, 5188, 43.88887651915625), "conv2": (0, 168336, 38.16890646151095),
                  "fc1": (0, 283792, 32.752402370045886), "out": (0, 13006, 38.20942618981012)}),
    "cnn_schedule": ("cnn", {"bntt": "schedule"}, "90f29e771b4a3f9c",
                     {"conv1": (1, 3440, 41.212840071153), "conv2": (-2, 168336, 38.16890646151095),
                      "fc1": (-3, 577264, 36.620548880477884),
                      "out": (4, 13006, 38.20942618981012)}),
    "direct_calib": ("direct", {"calib": "random"}, "4ca6d094f49dc138",
                     {"conv1": (-6, 6052, 39.43283157917803),
                      "conv2": (-2, 175352, 38.24708269473255),
                      "fc1": (-3, 608760, 37.12535150382598),
                      "out": (7, 12520, 38.955935605908365)}),
    "mixed_5bit": ("mixed", {"weight_bits": 5}, "924ae71b58bd84e0",
                   {"conv1": (0, 3200, 24.49072274648453), "fc1": (-1, 124272, 23.518263657779524),
                    "out": (4, 4016, 25.415837487983715)}),
}


def _golden_run(name: str) -> tuple[str, Graph, object]:
    case, opts, _, _ = GOLDEN[name]
    g = _golden_graph(case)
    opts = dict(opts)
    if opts.get("calib") == "random":
        opts["calib"] = np.random.default_rng(3).uniform(-0.5, 1.0, (3, *g.shapes["input"]))
    fixed, rep = quantize(g, "loihi2", **opts)
    return _golden_digest(fixed, rep), fixed, rep


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_quantization_is_pinned_bit_for_bit(name):
    digest, fixed, rep = _golden_run(name)
    want = GOLDEN[name][3]
    got = {s.name: (s.weight_exp, int(np.abs(fixed.nodes[s.name].weight).sum()), s.sqnr_db)
           for layer in rep.layers for s in layer.synapses}
    assert got == want  # exact floats: the SQNR sums must keep numpy's summation order
    assert digest == GOLDEN[name][2]


def test_blockwise_passes_do_not_depend_on_the_block_size(monkeypatch):
    # Blocks of 5 elements: one row per block (and odd splits of the small layers); every
    # result must stay the same, bit for bit.
    monkeypatch.setattr(quantize_module, "BLOCK_ELEMENTS", 5)
    for name in ("cnn_schedule", "mixed_5bit"):
        assert _golden_run(name)[0] == GOLDEN[name][2]


def test_blockwise_quantizer_matches_whole_array_formulas():
    # The formulas the blockwise pass replaces, on whole arrays: (s·W)·F rounded on the grid,
    # ŵ = m·2**e/(s·F) (ŵ = W where F = 0), SQNR from np.sum over the whole arrays.
    rng = np.random.default_rng(4)
    w = rng.normal(0, 1, (37, 3, 5, 5))
    w[rng.random(w.shape) < 0.1] = 0.0
    factors = rng.uniform(0.5, 2.0, (37, 3, 1, 1))
    factors[5] = 0.0  # a row with factor 0
    for s, e_max in ((37.3, 7), (250.0, 0), (4e4, 0)):  # the last one clips at exponent 0
        got = quantize_module._quantize_products(w, factors, s, num_weight_bits=8, exp_min=0,
                                                 exp_max=e_max)
        scaled = s * w * factors
        ref = quantize_weights(scaled, exp_min=0, exp_max=e_max)
        np.testing.assert_array_equal(got.quant.mantissa, ref.mantissa)
        assert (got.quant.weight_exp, got.quant.sign_mode, got.quant.exp_clamped) == \
            (ref.weight_exp, ref.sign_mode, ref.exp_clamped)
        raw = np.round(scaled * 2.0 ** -ref.weight_exp / 2) * 2
        assert got.quant.clipped_fraction == np.mean(raw != np.clip(raw, -256, 254))
        nz = scaled != 0
        assert got.quant.underflow_fraction == np.count_nonzero(
            nz & (ref.mantissa == 0)) / np.count_nonzero(nz)
        keep = factors != 0
        w_hat = np.where(keep, np.ldexp(ref.mantissa.astype(float), ref.weight_exp)
                         / np.where(keep, s * factors, 1.0), w)
        assert got.sqnr_db == sqnr_db(w, w_hat)
        assert got.row_abs_max == np.abs(ref.mantissa).reshape(37, -1).sum(axis=1).max()
        assert got.max_mantissa == np.abs(ref.mantissa).max()
    assert got.quant.clipped_fraction > 0.5  # the last case did clip


def test_fast_pool_folds_match_the_generic_ones():
    # Non-overlapping pools are folded by placing each weight in its windows; the generic
    # forms are the tap loop (conv) and torch's backward pass of the pool (dense). Bit equal,
    # including -0.0 weights (0 + -0.0 = 0.0, as the generic forms compute it).
    rng = np.random.default_rng(5)
    for pool_type in (AvgPool2d, SumPool2d):
        for k, s in (((2, 2), (2, 2)), ((3, 3), (3, 3)), ((2, 3), (3, 4))):
            pool = pool_type(kernel_size=k, stride=s, padding=(0, 0))
            f = 1.0 / (k[0] * k[1]) if pool_type is AvgPool2d else 1.0
            for dil in ((1, 1), (2, 1)):
                w = rng.normal(size=(4, 3, 3, 2))
                w[0, 0, 0, 0] = -0.0
                conv = Conv2d(w, None, padding=(1, 0), dilation=dil)
                ph, pw = dil[0] * s[0], dil[1] * s[1]
                want = np.zeros((4, 3, 2 * ph + k[0], pw + k[1]))
                for i in range(3):
                    for j in range(2):
                        want[:, :, i * ph:i * ph + k[0], j * pw:j * pw + k[1]] += \
                            w[:, :, i, j, None, None] * f
                got = quantize_module._pool_then_conv(pool, conv)
                assert got.weight.tobytes() == want.tobytes()
                assert got.stride == s and got.padding == (s[0], 0)
            for shape in ((3, 8, 8), (3, 9, 7), (2, 10, 13)):
                oh, ow = (shape[1] - k[0]) // s[0] + 1, (shape[2] - k[1]) // s[1] + 1
                w = rng.normal(size=(5, shape[0] * oh * ow))
                w[1, 0] = -0.0
                x = torch.zeros((5, *shape), dtype=torch.float64, requires_grad=True)
                y = quantize_module._run_pool(pool, x)
                (y.reshape(5, -1) * torch.as_tensor(w)).sum().backward()
                got = quantize_module._pool_then_dense(pool, Linear(w), shape)
                assert got.weight.tobytes() == x.grad.reshape(5, -1).numpy().tobytes()
