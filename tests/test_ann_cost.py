"""Tests of neurodeploy.ann_cost: MAC/AC/parameter counts worked out by hand, energies from the
target files' per-op numbers, the break-even band and the ``ann_comparison`` document."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from neurodeploy import ann_cost as ac
from neurodeploy.errors import NeurodeployError, UnsupportedError
from neurodeploy.ir import (
    LIF, Add, Affine, AvgPool2d, BatchNorm, Conv2d, Flatten, Graph, Input, Linear, QConv2d,
    QDense, QSigmaDelta, QSumPool2d, ReLU, SumPool2d,
)
from neurodeploy.targets import load_target

# Horowitz 2014 as in targets/{cpu,gpu,edge-int8}.toml (joules)
MAC32, AC32, MAC8, AC8 = 4.6e-12, 0.9e-12, 0.23e-12, 0.03e-12
SRAM, DRAM = 5e-12, 640e-12


def tiny_cnn() -> Graph:
    """Input 1x6x6 -> conv 2@3x3 pad 1 (+bias) -> ReLU -> sum pool 2 -> flatten -> affine
    18->4 -> ReLU -> linear 4->3."""
    rng = np.random.default_rng(1)
    return Graph.chain([
        ("input", Input((1, 6, 6))),
        ("conv", Conv2d(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2), padding=1)),
        ("relu1", ReLU()),
        ("pool", SumPool2d(2, 2)),
        ("flatten", Flatten()),
        ("fc", Affine(rng.normal(size=(4, 18)), rng.normal(size=4))),
        ("relu2", ReLU()),
        ("out", Linear(rng.normal(size=(3, 4)))),
    ])


# by hand: conv 2x6x6 = 72 outputs x 9 taps = 648 MACs, 18 + 2 params, reads 36, writes 72;
# pool 2x3x3 = 18 outputs x 4 = 72 ACs, reads 72, writes 18; fc 4 x 18 = 72 MACs, 72 + 4
# params, reads 18, writes 4; out 3 x 4 = 12 MACs and params, reads 4, writes 3.
MACS, ACS, PARAMS, NEURONS = 648 + 72 + 12, 72, 20 + 76 + 12, 72 + 4
SRAM_WORDS_FP32 = (36 + 72) + (72 + 18) + (18 + 4) + (4 + 3)  # 227
SRAM_WORDS_INT8 = (9 + 18) + (18 + 5) + (5 + 1) + (1 + 1)  # ceil(n / 4) per tensor: 58


def test_layer_counts_by_hand() -> None:
    rows = {r.layer: r for r in ac.layer_costs(tiny_cnn())}
    assert (rows["conv"].macs, rows["conv"].params, rows["conv"].inputs,
            rows["conv"].activations) == (648, 20, 36, 72)
    assert (rows["pool"].acs, rows["pool"].macs, rows["pool"].activations) == (72, 0, 18)
    assert (rows["fc"].macs, rows["fc"].params, rows["fc"].inputs) == (72, 76, 18)
    assert (rows["out"].macs, rows["out"].params, rows["out"].activations) == (12, 12, 3)
    assert rows["relu1"].neurons == 72 and rows["relu1"].macs == 0
    assert rows["flatten"].macs == rows["flatten"].acs == rows["flatten"].activations == 0
    assert ac.connections(tiny_cnn()) == MACS + ACS == 804


def test_conv_geometry_by_hand() -> None:
    """Stride 2, padding 1, dilation 2, 2 groups on 4x9x9: H_out = (9 + 2 - 2*2 - 1)//2 + 1
    = 4, so 6x4x4 = 96 outputs x (4/2 channels x 9 taps) = 1,728 MACs, 108 weights."""
    w = np.ones((6, 2, 3, 3))
    g = Graph.chain([("input", Input((4, 9, 9))),
                     ("conv", Conv2d(w, None, stride=2, padding=1, dilation=2, groups=2))])
    (row,) = [r for r in ac.layer_costs(g) if r.layer == "conv"]
    assert (row.macs, row.params, row.activations) == (1728, 108, 96)


def test_batchnorm_folding_pooling_residual_and_neurons() -> None:
    c = 3
    conv_w = np.ones((c, c, 1, 1))
    bn = BatchNorm(np.ones(c), np.zeros(c))
    nodes = {
        "input": Input((c, 4, 4)),
        "conv": Conv2d(conv_w, None),
        "bn_folded": bn,
        "lif": LIF(tau=np.array(2.0), r=np.array(2.0), v_leak=np.array(0.0),
                   v_threshold=np.array(1.0)),
        "avg": AvgPool2d(2, 2),
        "bn_alone": bn,
        "conv2": Conv2d(conv_w, None),
        "add": Add(),
    }
    edges = [("input", "conv"), ("conv", "bn_folded"), ("bn_folded", "lif"), ("lif", "avg"),
             ("avg", "bn_alone"), ("bn_alone", "conv2"), ("conv2", "add"), ("avg", "add")]
    rows = {r.layer: r for r in ac.layer_costs(Graph(nodes, edges))}
    assert rows["bn_folded"].macs == 0 and rows["bn_folded"].params == 0
    assert "folded" in rows["bn_folded"].note
    assert (rows["bn_alone"].macs, rows["bn_alone"].params) == (3 * 2 * 2, 6)
    assert rows["avg"].acs == 3 * 2 * 2 * 4  # 12 outputs x 4 window elements
    assert rows["add"].acs == 12  # one add per element for the second operand
    assert rows["lif"].neurons == 48 and "neuron counted" in rows["lif"].note
    assert rows["conv"].macs == 48 * 3


def test_fixed_point_nodes_are_counted_like_their_float_forms() -> None:
    g = Graph.chain([
        ("input", Input((2, 4, 4))),
        ("conv", QConv2d(np.ones((3, 2, 3, 3), dtype=int), padding=1)),
        ("pool", QSumPool2d(2, 2)),
        ("flatten", Flatten()),
        ("dense", QDense(np.ones((5, 12), dtype=int), weight_rec=np.ones((5, 5), dtype=int))),
    ])
    rows = {r.layer: r for r in ac.layer_costs(g)}
    assert rows["conv"].macs == 3 * 4 * 4 * 18
    assert rows["pool"].acs == 3 * 2 * 2 * 4
    assert rows["dense"].macs == 5 * 12 + 5 * 5 and rows["dense"].params == 85


def test_unsupported_nodes_are_all_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import dataclass

    from neurodeploy.ir import nodes

    monkeypatch.setattr(nodes, "NODE_TYPES", dict(nodes.NODE_TYPES))  # keep the registry clean

    @dataclass(frozen=True, eq=False)
    class Mystery(nodes.Node):
        def output_shape(self, in_shapes: list) -> tuple:
            return in_shapes[0]

    g = Graph.chain([("input", Input((4,))), ("m1", Mystery()), ("sd", QSigmaDelta()),
                     ("m2", Mystery())])
    with pytest.raises(UnsupportedError, match=r"m1 \(Mystery\), m2 \(Mystery\); supported"):
        ac.layer_costs(g)


def test_energy_and_latency_by_hand() -> None:
    cost = ac.ann_cost(tiny_cnn(), model="tiny")
    assert (cost["macs"], cost["acs"], cost["params"], cost["neurons"]) == (
        MACS, ACS, PARAMS, NEURONS)
    assert cost["first_layer_macs"] == 648
    assert cost["memory_bytes"]["params"] == {"fp32": 4 * PARAMS, "int8": PARAMS}
    cpu, gpu, edge = (cost["targets"][n] for n in ("cpu", "gpu", "edge-int8"))
    # compute-only, the papers' convention: 732 x 4.6 pJ + 72 x 0.9 pJ = 3.432 nJ
    assert cpu["compute_only_j"]["fp32"] == pytest.approx(3.432e-9)
    assert cpu["compute_only_j"]["int8"] == pytest.approx(732 * MAC8 + 72 * AC8)
    assert gpu["compute_only_j"] == cpu["compute_only_j"]
    # memory-aware FP32: 108 weights from DRAM + 227 activation words through SRAM
    assert cpu["memory_j"]["dram"] == pytest.approx(108 * DRAM)  # 69.12 nJ
    assert cpu["memory_j"]["sram"] == pytest.approx(227 * SRAM)
    assert cpu["memory_aware_j"] == pytest.approx(3.432e-9 + 69.12e-9 + 1.135e-9)
    # memory-aware INT8 on the edge device: 27 words of weights, 58 activation words
    assert edge["precision"] == "int8" and cpu["precision"] == "fp32"
    assert edge["memory_aware_j"] == pytest.approx(
        732 * MAC8 + 72 * AC8 + 27 * DRAM + SRAM_WORDS_INT8 * SRAM)
    # device corner: KerasSpiking per-op energy x (732 + 72 + 76 = 880 ops)
    assert cpu["device_j"] == pytest.approx(8.6e-9 * 880)
    assert gpu["device_j"] == pytest.approx(0.3e-9 * 880)
    assert edge["device_j"] == pytest.approx(0.9e-9 * 880)
    # latency: 804 ops at 1e11 / 1e13 / 1e12 MAC/s
    assert cpu["latency_s"] == pytest.approx(8.04e-9)
    assert gpu["latency_s"] == pytest.approx(8.04e-11)
    assert edge["throughput_fps"] == pytest.approx(1e12 / 804)
    assert cpu["sources"]["energy.mac_fp32"].startswith("Horowitz 2014")


def test_energies_follow_the_target_file(tmp_path: Path) -> None:
    """A user's ANN target: every number is taken from it (none hard-coded)."""
    text = (Path(load_target("cpu").path)).read_text()
    text = text.replace('name = "cpu"', 'name = "mine"').replace("mac_fp32 = 4.6e-12",
                                                                  "mac_fp32 = 1e-12")
    text = text.replace("dram_read_32b = 640e-12", "dram_read_32b = 0.0")
    path = tmp_path / "mine.toml"
    path.write_text(text)
    mine = ac.ann_cost(tiny_cnn(), [path])["targets"]["mine"]
    assert mine["compute_only_j"]["fp32"] == pytest.approx(732e-12 + 72 * AC32)
    assert mine["memory_aware_j"] == pytest.approx(732e-12 + 72 * AC32 + 227 * SRAM)


def test_neuromorphic_targets_are_refused() -> None:
    with pytest.raises(NeurodeployError, match="loihi1 is a neuromorphic target"):
        ac.ann_cost(tiny_cnn(), ["loihi1"])


def test_zoo_ann_twin_counts() -> None:
    """The shipped demo CNN's ANN twin: conv 16@3x3 on 28x28, avg pool, conv 32@3x3 on 14x14,
    avg pool, 1568 -> 128 -> 10, batch norms folded, no biases in the conv/linear layers."""
    from neurodeploy.frontends.load import load_model

    folder = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "demo_cnn_ann"
    cost = ac.ann_cost(load_model(folder))
    convs = 16 * 28 * 28 * 9 + 32 * 14 * 14 * 16 * 9
    assert cost["macs"] == convs + 1568 * 128 + 128 * 10 == 1_218_048
    assert cost["acs"] == 16 * 14 * 14 * 4 + 32 * 7 * 7 * 4 == 18_816
    assert cost["params"] == 144 + 4608 + 200_704 + 1280
    assert cost["first_layer_macs"] == 16 * 28 * 28 * 9
    assert cost["targets"]["cpu"]["compute_only_j"]["fp32"] == pytest.approx(
        1_218_048 * MAC32 + 18_816 * AC32)


# ------------------------------------------------------------------------------ break-even


def test_break_even_band_and_rates() -> None:
    assert ac.band_position(0.1) == "below"
    assert ac.band_position(0.15) == "within" and ac.band_position(1.38) == "within"
    assert ac.band_position(1.4) == "above"
    be = ac.break_even(500, 1000, fixed_j=1e-6, variable_j=2e-6,
                       ann_j={"a": 5e-6, "b": 0.5e-6})
    assert be["spikes_per_synapse"] == 0.5 and be["position"] == "within"
    assert be["band"] == [0.15, 1.38] and "Dampfhoffer" in be["band_source"]
    # E(r) = 1 uJ + 2 uJ x r / 0.5 equals 5 uJ at r = 1.0; 0.5 uJ is below the fixed part
    assert be["rates"]["a"] == pytest.approx(1.0)
    assert be["rates"]["b"] is None
    assert ac.break_even_rate(0.0, 0.0, 0.0, 1.0) is None  # no spikes: slope unknown
    with pytest.raises(NeurodeployError, match="positive synapse count"):
        ac.break_even(10, 0)


def _snn_doc(scale: float = 1.0) -> dict:
    """SNN side of the tiny CNN: 4 steps, two neuron layers after the first."""
    synops = [600.0 * scale, 240.0 * scale, 30.0 * scale]
    spikes = [60.0 * scale, 12.0 * scale, 3.0 * scale]
    syn_j, noc_j, neuron_j, static_j = 2e-8 * scale, 1e-9 * scale, 5e-9, 4e-8
    return {
        "steps": 4, "target": "loihi1",
        "energy": {"per_inference_j": {"total": syn_j + noc_j + neuron_j + static_j,
                                       "dynamic": syn_j + noc_j + neuron_j,
                                       "static": static_j},
                   "breakdown_j": {"synaptic": syn_j, "spike_noc": noc_j, "neuron": neuron_j,
                                   "static": static_j},
                   "preset": "loihi1", "scope": "cores"},
        "latency": {"latency_per_inference_s": 2e-5},
        "activity": {"per_layer": [
            {"layer": f"l{i}", "neurons": 10, "spikes_per_sample": s,
             "synops_per_sample": o, "neuron_updates_per_sample": 40}
            for i, (s, o) in enumerate(zip(spikes, synops))]},
    }


def test_compare_doc_by_hand() -> None:
    ann = ac.ann_cost(tiny_cnn())
    cmp = ac.compare_doc(_snn_doc(), ann, {"ann": 0.9, "snn": 0.85})
    snn = cmp["snn"]
    assert snn["synops"] == 870 and snn["spikes"] == 75 and snn["synapses"] == 804
    # papers' convention: first-layer MACs x T x E_MAC + SOPs after the first layer x E_AC
    assert snn["compute_only_j"]["fp32"] == pytest.approx(648 * 4 * MAC32 + 270 * AC32)
    assert snn["compute_only_j"]["int8"] == pytest.approx(648 * 4 * MAC8 + 270 * AC8)
    total = 2e-8 + 1e-9 + 5e-9 + 4e-8
    assert snn["energy_j"] == pytest.approx(total)
    cpu = ann["targets"]["cpu"]
    assert cmp["ratios"]["cpu"]["memory_aware"] == pytest.approx(cpu["memory_aware_j"] / total)
    assert cmp["ratios"]["paper"]["fp32"] == pytest.approx(
        3.432e-9 / (648 * 4 * MAC32 + 270 * AC32))
    be = cmp["break_even"]
    rate = 870 / 804
    assert be["spikes_per_synapse"] == pytest.approx(rate) and be["position"] == "within"
    # spike-proportional part: synaptic + spike_noc = 21 nJ; fixed: neuron + static = 45 nJ
    assert be["rates"]["cpu.memory_aware"] == pytest.approx(
        rate * (cpu["memory_aware_j"] - 45e-9) / 21e-9)
    assert be["rates"]["gpu.device"] == pytest.approx(rate * (0.3e-9 * 880 - 45e-9) / 21e-9)
    assert cmp["accuracy"] == {"ann": 0.9, "snn": 0.85}
    assert any("papers' convention" in a for a in cmp["assumptions"])
    # the paper break-even: fixed 648 x 4 x 4.6 pJ exceeds the ANN's 3.432 nJ -> none
    assert be["rates"]["paper.fp32"] is None


def test_compare_rates_scale_with_activity() -> None:
    """Doubling every spike-driven count doubles spikes per synapse and leaves the break-even
    rates unchanged (they depend on the energy per spike, not on the activity)."""
    ann = ac.ann_cost(tiny_cnn())
    one = ac.compare_doc(_snn_doc(1.0), ann)["break_even"]
    two = ac.compare_doc(_snn_doc(2.0), ann)["break_even"]
    assert two["spikes_per_synapse"] == pytest.approx(2 * one["spikes_per_synapse"])
    for key, value in one["rates"].items():
        if value is None:
            assert two["rates"][key] is None
        else:
            assert two["rates"][key] == pytest.approx(value)


def test_compare_without_snn_energy_or_with_own_synapses() -> None:
    ann = ac.ann_cost(tiny_cnn())
    doc = _snn_doc()
    doc["energy"] = None
    cmp = ac.compare_doc(doc, ann, synapses=1740)
    assert cmp["snn"]["energy_j"] is None
    assert cmp["ratios"]["cpu"] == {"memory_aware": None, "device": None}
    assert cmp["break_even"]["spikes_per_synapse"] == pytest.approx(0.5)
    assert set(cmp["break_even"]["rates"]) == {"paper.fp32", "paper.int8"}
    assert not any("ANN twin's MACs" in a for a in cmp["assumptions"])
    assert math.isclose(cmp["ann"]["macs"], MACS)
