"""The quantization-aware Loihi layers run exactly what hw_sim (and Lava) run.

Hand-worked numbers for the neuron update, the floor shift of the summed input, the int32
overflow and the conv output wrap; trace-for-trace equality with hw_sim on random two-layer
networks across decays 0 and 4096, u wrap and v saturation; the proof on sklearn digits (train,
export, identical per-layer spike counts and accuracy); exponent selection; gradients; errors;
and one tiny exported network cross-checked against Lava.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from neurodeploy.errors import NeurodeployError, QuantizationError, UnsupportedError
from neurodeploy.hw_sim import lava_weights
from neurodeploy.hw_sim import run as hw_run
from neurodeploy.ir import Flatten, Input, QConv2d, QCubaLIF, QDense
from neurodeploy.models.loihi import (
    LoihiConv2d,
    LoihiDense,
    LoihiNet,
    build_loihi_model,
    choose_weight_exp,
    quantize_weight,
    rate_encode,
    to_graph,
    weight_step,
)

M24 = 1 << 23


def _set_weight(layer, values) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(values, dtype=torch.float32))


def _compare_with_hw_sim(model: LoihiNet, spikes: torch.Tensor):
    """Assert torch and hw_sim agree on every u, v, s trace and count; return both results."""
    steps = spikes.shape[-1]
    ours = model.run(spikes, record=["u", "v", "s"])
    ref = hw_run(to_graph(model), spikes.numpy(), steps=steps, input_mode="spikes",
                 record=["u", "v", "s"])
    assert set(ours.traces) == set(ref.traces) == {
        f"{n}.{q}" for n in model.neuron_names for q in "uvs"}
    for key in ref.traces:
        np.testing.assert_array_equal(ours.traces[key], ref.traces[key], err_msg=key)
    for name in model.neuron_names:
        np.testing.assert_array_equal(ours.spike_counts[name], ref.spike_counts[name])
    return ours, ref


# ------------------------------------------------------------------------------------------
# Weight exponent and mantissas
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("w,bits,exp", [
    ([-1.0, 1.0], 8, -7),        # lava-dl#304: ±1 → ±128 at 2**-7 (in range here: max 254)
    ([254.0, -3.0], 8, 0),       # exactly the largest positive mantissa
    ([255.0], 8, 1),             # one more needs the next exponent
    ([-256.0, 3.0], 8, 0),       # the negative end reaches -256
    ([-257.0], 8, 1),
    ([224.0], 4, 0),             # 4 bits: mantissas step 32, largest positive 224
    ([225.0], 4, 1),
    ([0.0, 0.0], 8, -8),         # all-zero: the floor, no inflation (lava#501)
    ([1e-9, -1e-9], 8, -8),      # tiny: the floor, never below Lava's -8
    ([1e6], 8, 7),               # huge: capped at 7 (and saturates)
])
def test_choose_weight_exp_hand_values(w, bits, exp):
    assert choose_weight_exp(torch.tensor(w), bits) == exp


def test_weight_exp_floor_and_all_zero_layers():
    w = torch.zeros(3, 4)
    assert choose_weight_exp(w, 8, exp_min=0) == 0
    assert choose_weight_exp(torch.tensor([1.0]), 8, exp_min=-3) == -3  # floor wins over -7
    conv = LoihiConv2d(1, 2, 3, threshold=10, current_decay=100, voltage_decay=100)
    dense = LoihiDense(4, 2, threshold=10, current_decay=100, voltage_decay=100)
    for layer, floor in ((conv, 0), (dense, -8)):
        with torch.no_grad():
            layer.weight.zero_()
        m, exp = layer.quantized()
        assert exp == floor and not m.any()
    with pytest.raises(QuantizationError, match="NaN"):
        choose_weight_exp(torch.tensor([1.0, float("nan")]))
    with pytest.raises(QuantizationError, match=r"\[-8, 7\]"):
        choose_weight_exp(torch.tensor([1.0]), exp_min=-9)


@pytest.mark.parametrize("bits", [2, 4, 7, 8])
def test_quantized_mantissas_survive_lava_truncation(bits):
    gen = torch.Generator().manual_seed(bits)
    w = torch.randn(40, 30, generator=gen) * 37.0
    exp = choose_weight_exp(w, bits)
    m = quantize_weight(w, exp, bits)
    step = weight_step(bits)
    ints = m.numpy().astype(np.int64)
    assert np.all(ints % step == 0) and ints.min() >= -256 and ints.max() <= 256 - step
    # Lava's truncation to num_weight_bits (hw_sim.lava_weights) leaves them as they are.
    np.testing.assert_array_equal(lava_weights(ints, bits, "mixed"), ints)
    # The exponent avoids saturation: every weight is within half a grid step.
    err = (m * 2.0**exp - w.double()).abs().max()
    assert float(err) <= step * 2.0**exp / 2 + 1e-9
    # The next smaller exponent would not fit (exponent is the smallest possible).
    hi, lo = float(w.max()), float(w.min())
    assert hi > (256 - step) * 2.0 ** (exp - 1) or -lo > 256 * 2.0 ** (exp - 1)


def test_weights_too_large_saturate_at_fixed_exponent():
    layer = LoihiDense(3, 1, threshold=1, current_decay=0, voltage_decay=0, weight_exp=0)
    _set_weight(layer, [[1000.0, -1000.0, 7.0]])
    m, exp = layer.quantized()
    assert exp == 0 and m.tolist() == [[254, -256, 8]]  # 7 rounds half-to-even: 3.5 → 4 → 8


# ------------------------------------------------------------------------------------------
# Dynamics written out by hand
# ------------------------------------------------------------------------------------------


def _single(weight, *, threshold=20, current_decay=1024, voltage_decay=0, weight_exp=0,
            n_in=1, steps=6):
    layer = LoihiDense(n_in, 1, threshold=threshold, current_decay=current_decay,
                       voltage_decay=voltage_decay, weight_exp=weight_exp)
    _set_weight(layer, [weight])
    return LoihiNet([layer], steps, (n_in,))


def test_one_neuron_by_hand():
    # Spike at step 0 arrives at step 1 (Lava's delay): a = 10, u += 10·64; u decays by
    # rtz(u·3072/4096); v integrates (voltage_decay 0), fires when v > 20·64 = 1280, resets to 0.
    net = _single([10.0])
    x = torch.tensor([[[1, 0, 0, 0, 0, 0]]])
    res = net.run(x, record=["u", "v", "s"])
    assert res.traces["lif1.u"][0, 0].tolist() == [0, 640, 480, 360, 270, 202]
    assert res.traces["lif1.v"][0, 0].tolist() == [0, 640, 1120, 0, 270, 472]
    assert res.traces["lif1.s"][0, 0].tolist() == [0, 0, 0, 1, 0, 0]
    # Negative current: rtz(-270·0.75) = -202 (toward zero, not floor's -203).
    res = _single([-10.0]).run(x, record=["u", "v"])
    assert res.traces["lif1.u"][0, 0].tolist() == [0, -640, -480, -360, -270, -202]
    assert res.traces["lif1.v"][0, 0].tolist() == [0, -640, -1120, -1480, -1750, -1952]
    # Through the gradient path (forward) the count is the same as the run's.
    assert net(x.float()).tolist() == [[1.0]]


def test_negative_exponent_shifts_the_summed_input_with_floor():
    # weight_exp -2, weights ±0.5 (mantissas ±2). Lava shifts the *sum*: 2+2 = 4 → 1, while a
    # per-weight shift would give 0; a lone -2 → floor(-0.5) = -1, a lone +2 → 0.
    net = _single([0.5, 0.5], weight_exp=-2, n_in=2, steps=2, current_decay=4096,
                  threshold=1000)
    x = torch.tensor([[[1, 0], [1, 0]], [[1, 0], [0, 0]]])
    assert net.run(x, record=["u"]).traces["lif1.u"][:, 0, 1].tolist() == [64, 0]
    net = _single([-0.5, 0.5], weight_exp=-2, n_in=2, steps=2, current_decay=4096,
                  threshold=1000)
    assert net.run(x, record=["u"]).traces["lif1.u"][:, 0, 1].tolist() == [0, -64]
    assert to_graph(net).nodes["fc1"].weight.tolist() == [[-2, 2]]


def test_int32_overflow_of_lava_is_emulated():
    # 1100 inputs all spiking, mantissa 254 at 2**7: a = 1100·254·128 = 35,763,200 and
    # a << 6 = 2,288,844,800 overflows int32 to -2,006,122,496; Lava's single conditional wrap
    # adds 2**24 → u = -1,989,345,280; v saturates at -(2**23 - 1).
    n = 1100
    layer = LoihiDense(n, 2, threshold=100, current_decay=4096, voltage_decay=4096,
                       weight_exp=7)
    _set_weight(layer, np.full((2, n), 254.0 * 128))
    net = LoihiNet([layer], 3, (n,))
    x = torch.ones((1, n, 3), dtype=torch.uint8)
    ours, _ = _compare_with_hw_sim(net, x)
    assert ours.traces["lif1.u"][0, :, 1].tolist() == [-1_989_345_280] * 2
    assert ours.traces["lif1.v"][0, :, 1].tolist() == [-(M24 - 1)] * 2


def test_conv_output_wraps_to_24_bits():
    # 32 channels of 3x3 all spiking, one 3x3 kernel of 254 at 2**7, padding 1. The centre sums
    # 288·254·128 = 9,363,456 ≥ 2**23 and wraps to -7,413,760; u = 64·that + 2**24
    # (Lava's conditional wrap) = -457,703,424. A corner sums 128·32,512 = 4,161,536 (no wrap),
    # u = 266,338,304 - 2**24 = 249,561,088; an edge 192·32,512: u = 382,730,240.
    layer = LoihiConv2d(32, 1, 3, padding=1, threshold=100, current_decay=4096,
                        voltage_decay=4096, weight_exp=7)
    _set_weight(layer, np.full((1, 32, 3, 3), 254.0 * 128))
    net = LoihiNet([layer], 2, (32, 3, 3))
    ours, _ = _compare_with_hw_sim(net, torch.ones((1, 32, 3, 3, 2), dtype=torch.uint8))
    u1 = ours.traces["lif1.u"][0, 0, :, :, 1]
    assert u1[1, 1] == -457_703_424
    assert u1[0, 0] == u1[2, 2] == 249_561_088
    assert u1[0, 1] == u1[1, 0] == 382_730_240


# ------------------------------------------------------------------------------------------
# Random networks: traces bit for bit against hw_sim
# ------------------------------------------------------------------------------------------


def _random_mlp(seed, current_decay, voltage_decay, *, weight_exp=None, scale=60.0,
                bias=False, reset="zero", threshold=40):
    gen = torch.Generator().manual_seed(seed)
    kw = dict(threshold=threshold, current_decay=current_decay, voltage_decay=voltage_decay,
              weight_exp=weight_exp, bias=bias, reset=reset)
    layers = [LoihiDense(20, 12, **kw), LoihiDense(12, 6, **kw)]
    for layer in layers:
        _set_weight(layer, (torch.rand(layer.weight.shape, generator=gen) - 0.4) * scale)
        if bias:
            with torch.no_grad():
                layer.bias.copy_((torch.rand(layer.bias.shape, generator=gen) - 0.5) * 40)
    net = LoihiNet(layers, 24, (20,))
    spikes = (torch.rand((3, 20, 24), generator=gen) < 0.4).to(torch.uint8)
    return net, spikes


@pytest.mark.parametrize("current_decay,voltage_decay", [
    (1024, 256), (4096, 4096), (0, 4096), (4096, 0), (1, 4095), (2048, 100),
])
def test_random_two_layer_traces_match_hw_sim(current_decay, voltage_decay):
    net, spikes = _random_mlp(current_decay + voltage_decay, current_decay, voltage_decay)
    ours, _ = _compare_with_hw_sim(net, spikes)
    assert ours.spike_counts["lif1"].sum() > 0 and ours.spike_counts["lif2"].sum() > 0


def test_u_wrap_and_v_saturation_match_hw_sim():
    # No decay at all: u gains ~64·24,000 per step and wraps past 2**23 within a few steps;
    # v saturates.
    net, spikes = _random_mlp(7, 0, 0, weight_exp=7, scale=30000.0)
    ours, _ = _compare_with_hw_sim(net, spikes)
    u, v = ours.traces["lif1.u"].astype(np.int64), ours.traces["lif1.v"]
    assert np.any(np.abs(np.diff(u, axis=-1)) > M24), "no u wrap was exercised"
    assert np.any(v == -(M24 - 1)), "no v saturation was exercised"
    assert ours.spike_counts["lif2"].sum() > 0


def test_bias_and_subtract_reset_match_hw_sim():
    net, spikes = _random_mlp(3, 1024, 512, bias=True, reset="subtract")
    _compare_with_hw_sim(net, spikes)
    graph = to_graph(net)
    assert graph.nodes["lif1"].bias_exp == 6 and graph.nodes["lif1"].reset == "subtract"
    np.testing.assert_array_equal(graph.nodes["lif1"].bias,
                                  torch.round(net.layers[0].bias.detach()).numpy())


def test_conv_model_matches_hw_sim():
    net = build_loihi_model({
        "model": "loihi-conv", "in_shape": [2, 6, 6], "channels": [4, 3], "stride": [1, 2],
        "padding": 1, "hidden": [8], "num_classes": 3, "timesteps": 12, "threshold": 30,
        "current_decay": [1024, 2048, 512, 4096], "voltage_decay": 128, "bias": True,
        "init_gain": 0.4, "seed": 1,
    })
    with torch.no_grad():
        for layer in net.layers:
            layer.bias.uniform_(-10, 30)
    spikes = rate_encode(torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(1)),
                         12, generator=torch.Generator().manual_seed(2))
    ours, _ = _compare_with_hw_sim(net, spikes)
    assert all(ours.spike_counts[n].sum() > 0 for n in net.neuron_names)
    graph = to_graph(net)
    assert [type(graph.nodes[n]) for n in graph.nodes] == [
        Input, QConv2d, QCubaLIF, QConv2d, QCubaLIF, Flatten, QDense, QCubaLIF, QDense, QCubaLIF]
    assert graph.shapes["lif2"] == (3, 3, 3) and graph.nodes["conv2"].stride == (2, 2)
    assert all(graph.nodes[s].weight_exp >= 0 for s in ("conv1", "conv2"))  # Lava's Conv


# ------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------


def test_gradients_are_finite_and_nonzero_and_forward_is_exact():
    net = build_loihi_model({
        "model": "loihi-conv", "in_shape": [1, 6, 6], "channels": [3], "padding": 1,
        "hidden": [10], "num_classes": 4, "timesteps": 10, "threshold": 50,
        "current_decay": 1024, "voltage_decay": 256, "bias": True, "init_gain": 1.0,
    })
    spikes = rate_encode(torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0)),
                         10, generator=torch.Generator().manual_seed(1))
    counts = net(spikes)
    loss = torch.nn.functional.cross_entropy(counts, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets no gradient"
    # The surrogate does not touch the forward value: counts are the exact run's.
    assert counts.detach().sum(dim=1).numpy().astype(int).tolist() == \
        net.run(spikes).spike_counts["lif3"].tolist()


def test_straight_through_weight_gradient_of_one_step():
    # One dense layer, input at step 0 only, output read at step 1 through v: with the STE the
    # gradient of v[1] = 64·(W·s) with respect to W is 64·s (rounding of W is invisible).
    layer = LoihiDense(3, 1, threshold=1000, current_decay=4096, voltage_decay=4096)
    _set_weight(layer, [[3.3, -7.9, 11.2]])
    layer.reset_state()
    layer(torch.tensor([[1.0, 0.0, 1.0]]))
    layer(torch.zeros(1, 3))
    layer.v.sum().backward()
    assert layer.weight.grad.tolist() == [[64.0, 0.0, 64.0]]
    m, exp = layer.quantized()
    assert float(layer.v) == 64 * np.floor((m[0, 0] + m[0, 2]) * 2.0**exp)


# ------------------------------------------------------------------------------------------
# The proof: digits, trained here, deployed on hw_sim with identical spikes
# ------------------------------------------------------------------------------------------


def test_digits_trained_model_runs_identically_on_hw_sim(one_thread):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target)
    steps = 16
    spikes = rate_encode(images, steps, generator=torch.Generator().manual_seed(0))
    train, test = slice(0, 1400), slice(1400, None)
    config = {"model": "loihi-mlp", "in_shape": [1, 8, 8], "hidden": [64], "num_classes": 10,
              "timesteps": steps, "current_decay": 1024, "voltage_decay": 256,
              "threshold": 64, "seed": 0}
    net = build_loihi_model(config)
    opt = torch.optim.Adam(net.parameters(), lr=0.5)
    x_train, y_train = spikes[train], labels[train]
    shuffle = torch.Generator().manual_seed(0)
    for _ in range(3):
        order = torch.randperm(len(y_train), generator=shuffle)
        for i in range(0, len(order), 50):
            idx = order[i:i + 50]
            loss = torch.nn.functional.cross_entropy(net(x_train[idx]) * 0.5, y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    x_test, y_test = spikes[test], labels[test].numpy()
    graph = to_graph(net)
    ours = net.run(x_test, record=["s"])
    ref = hw_run(graph, x_test.numpy(), steps=steps, input_mode="spikes", record=["s"])
    for name in ("lif1", "lif2"):  # every layer, every sample: totals and per neuron
        np.testing.assert_array_equal(ours.spike_counts[name], ref.spike_counts[name])
        np.testing.assert_array_equal(ours.traces[f"{name}.s"].sum(-1),
                                      ref.traces[f"{name}.s"].sum(-1))
    torch_counts = net(x_test).detach().numpy()
    np.testing.assert_array_equal(torch_counts, ref.traces["lif2.s"].sum(-1))
    acc_torch = float(np.mean(torch_counts.argmax(1) == y_test))
    acc_hw = float(np.mean(ref.traces["lif2.s"].sum(-1).argmax(1) == y_test))
    assert acc_torch == acc_hw
    print(f"digits test accuracy {acc_hw:.3f}")
    assert acc_hw > 0.7, f"accuracy {acc_hw:.3f} (chance 0.1)"
    # The export is what was trained: integer mantissas in Lava's range, config JSON-able.
    for syn in ("fc1", "fc2"):
        node = graph.nodes[syn]
        assert -8 <= node.weight_exp <= 7
        np.testing.assert_array_equal(lava_weights(node.weight, 8, "mixed"), node.weight)
    assert build_loihi_model(json.loads(json.dumps(net.config))).shapes == net.shapes


# ------------------------------------------------------------------------------------------
# Encoding, export structure and errors
# ------------------------------------------------------------------------------------------


def test_rate_encode_is_seeded_and_follows_intensity():
    img = torch.tensor([[0.0, 0.25, 1.0]])
    a = rate_encode(img, 4000, generator=torch.Generator().manual_seed(5))
    b = rate_encode(img, 4000, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == (1, 3, 4000)
    rates = a.float().mean(-1)[0]
    assert rates[0] == 0 and rates[2] == 1 and abs(float(rates[1]) - 0.25) < 0.03
    with pytest.raises(NeurodeployError, match=r"\[0, 1\]"):
        rate_encode(torch.tensor([1.5]), 3)


def test_mlp_export_structure():
    net = build_loihi_model({"model": "loihi-mlp", "in_shape": [1, 4, 4], "hidden": [5],
                             "num_classes": 3, "timesteps": 4, "threshold": 9,
                             "current_decay": 100, "voltage_decay": 200, "weight_bits": 6})
    g = to_graph(net)
    assert list(g.nodes) == ["input", "flatten1", "fc1", "lif1", "fc2", "lif2"]
    assert g.metadata["timesteps"] == 4
    lif = g.nodes["lif1"]
    assert (lif.threshold, lif.current_decay, lif.voltage_decay, lif.reset) == (9, 100, 200,
                                                                                 "zero")
    m, exp = net.layers[0].quantized()
    np.testing.assert_array_equal(g.nodes["fc1"].weight, m)
    assert g.nodes["fc1"].weight_exp == exp and g.nodes["fc1"].num_weight_bits == 6
    assert np.all(m % weight_step(6) == 0)


def test_errors_are_neurodeploy_errors_with_one_line_messages():
    base = {"model": "loihi-mlp", "in_shape": [4], "num_classes": 2, "timesteps": 3,
            "threshold": 10, "current_decay": 10, "voltage_decay": 10}
    cases = [
        ({"hiden": [3]}, NeurodeployError, "hiden"),
        ({"model": "loihi-rnn"}, UnsupportedError, "loihi-rnn"),
        ({"current_decay": 5000}, QuantizationError, "current_decay"),
        ({"threshold": -1}, QuantizationError, "threshold"),
        ({"weight_exp": 8}, QuantizationError, "weight_exp"),
        ({"weight_bits": 1}, QuantizationError, "weight_bits"),
        ({"voltage_decay": [1, 2, 3]}, NeurodeployError, "voltage_decay"),
        ({"reset": "soft"}, UnsupportedError, "reset"),
        ({"channels": [2]}, NeurodeployError, "channels"),
    ]
    for change, err, word in cases:
        with pytest.raises(err, match=word) as info:
            build_loihi_model({**base, **change})
        assert "\n" not in str(info.value)
    with pytest.raises(NeurodeployError, match="lacks threshold"):
        build_loihi_model({k: v for k, v in base.items() if k != "threshold"})
    net = build_loihi_model(base)
    with pytest.raises(NeurodeployError, match="binary"):
        net.run(torch.full((1, 4, 3), 2))
    with pytest.raises(NeurodeployError, match="expected"):
        net.run(torch.zeros((1, 5, 3)))
    with pytest.raises(NeurodeployError, match="time steps"):
        net.run(torch.zeros((1, 4, 2)))
    with torch.no_grad():
        net.layers[0].weight[0, 0] = float("nan")
    with pytest.raises(QuantizationError, match="NaN"):
        to_graph(net)
    with pytest.raises(NeurodeployError, match="expects 7 inputs"):
        LoihiNet([LoihiDense(7, 2, threshold=1, current_decay=0, voltage_decay=0)], 2, (4,))


# ------------------------------------------------------------------------------------------
# Lava: the export is what Lava runs
# ------------------------------------------------------------------------------------------


@pytest.mark.lava
def test_tiny_export_matches_lava():
    from neurodeploy.backends import lava as lava_backend

    if not lava_backend.available():
        if os.environ.get("CI"):
            pytest.fail("Lava is not importable in CI (needs Python 3.10 + neurodeploy[lava])")
        pytest.skip("Lava is not installed (needs Python 3.10 + neurodeploy[lava])")
    net = build_loihi_model({
        "model": "loihi-conv", "in_shape": [1, 4, 4], "channels": [2], "padding": 1,
        "num_classes": 3, "timesteps": 6, "threshold": 20, "current_decay": 1024,
        "voltage_decay": 256, "bias": True, "init_gain": 0.8, "seed": 3,
    })
    with torch.no_grad():
        for layer in net.layers:
            layer.bias.uniform_(-5, 15)
    spikes = rate_encode(torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)),
                         6, generator=torch.Generator().manual_seed(1))
    ours = net.run(spikes, record=["u", "v", "s"])
    ref = lava_backend.run(to_graph(net), spikes.numpy(), steps=6, input_mode="spikes",
                           record=["u", "v", "s"])
    for key in ref.traces:
        np.testing.assert_array_equal(ours.traces[key], ref.traces[key], err_msg=key)
    for name in net.neuron_names:
        np.testing.assert_array_equal(ours.spike_counts[name], ref.spike_counts[name])
    assert ours.spike_counts["lif1"].sum() > 0 and ours.spike_counts["lif2"].sum() > 0
