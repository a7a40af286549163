"""The zoo ResNet through quantize: its blocks add *spikes* (``y + x``, values 0…2), which no
Loihi synapse reads, so quantize distributes each such Add over the synapses after it
(``W·(a + b) = W·a + W·b``). Checked: the rewrite alone is exact in float, the quantized
graph holds only current-side Adds with identical mantissas in each synapse's copies, the
compile's in-memory steps accept the ResNet, and hw_sim and Lava run the quantized graph to the
same spikes and potentials bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurodeploy.backends import floatsim
from neurodeploy.backends import lava as lava_backend
from neurodeploy.compile import fixed_point
from neurodeploy.frontends.torch import from_torch
from neurodeploy.hw_sim import run as hw_run
from neurodeploy.ir import (
    IF,
    Add,
    Affine,
    Conv2d,
    Flatten,
    Graph,
    I,
    Input,
    QConv2d,
    QDense,
    SumPool2d,
)
from neurodeploy.models.zoo import build_model, default_config
from neurodeploy.passes.quantize import distribute_spike_adds, quantize, quantize_inputs
from neurodeploy.simulation import pipeline_depths


def _resnet(seed: int = 0, **overrides) -> Graph:
    """A small zoo ResNet (stem 4, stages 4/8/8, mnist-like 1×12×12 input)."""
    torch.manual_seed(seed)
    config = default_config("resnet", in_shape=(1, 12, 12), num_classes=5, timesteps=4,
                            features=[4], stages=[4, 8, 8], **overrides)
    return from_torch(build_model(config).eval(), in_shape=(1, 12, 12))


def _spike_adds(graph: Graph) -> list[str]:
    return [n for n, node in graph.nodes.items() if isinstance(node, Add)
            and not any(graph.nodes[p].is_synapse for p in graph.predecessors(n))]


def test_zoo_resnet_adds_spikes():
    # What made quantize fail: Adds of spikes (or of pooled spikes: block3's identity
    # shortcut reads pool2) that feed synapses.
    g = _resnet()
    assert _spike_adds(g) == ["add", "add_1", "add_2"]
    assert g.predecessors("add") == ["block1_lif2", "lif1"]
    assert g.predecessors("add_2") == ["block3_lif2", "pool2"]


def test_distributing_a_spike_add_is_exact_in_float():
    # Each Add of spikes is pushed through the Flatten and the synapses after it; the graph
    # computes the same logits (floatsim has no synaptic delay, so no skew appears).
    g = _resnet(seed=1)
    new, notes = distribute_spike_adds(g)
    assert not _spike_adds(new)
    # add -> pool1 -> (block2_conv1, block2_shortcut_conv): pool1 and both convs copied for
    # lif1; add_1 -> pool2 -> (block3_conv1, add_2): add_1 merged into add_2; add_2 -> pool3 ->
    # flatten -> out: three copies of out
    assert [n.split(";")[1].split()[0] for n in notes] == [
        "block2_conv1", "block2_shortcut_conv", "block3_conv1", "out"]
    assert new.predecessors("add_block2_conv1") == ["block2_conv1", "block2_conv1_lif1"]
    assert new.predecessors("block2_conv1_lif1") == ["pool1_lif1"]
    assert new.predecessors("pool1_lif1") == ["lif1"]
    assert new.predecessors("add_2") == ["out", "out_pool2", "out_block2_shortcut_lif"]
    assert new.predecessors("pool3_pool2") == ["pool2"]
    x = np.random.default_rng(0).random((3, 1, 12, 12))
    a = floatsim.run(g, x, 4, record={"acc": ["v"]}).traces["acc.v"]
    b = floatsim.run(new, x, 4, record={"acc": ["v"]}).traces["acc.v"]
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    assert np.abs(a).max() > 0.1  # the read-out is not trivially zero


def test_distribution_by_hand():
    # in -> IF a, IF b; s = a + b -> SumPool -> Flatten -> Affine(W, bias) -> I. Distributed:
    # Affine(W, bias)·flatten(pool(a)) + Affine(W, 0)·flatten(pool(b)): the bias once.
    w = np.arange(8.0).reshape(2, 4)
    g = Graph(
        {"inp": Input((1, 4, 4)), "ca": Conv2d(np.ones((1, 1, 1, 1)), None),
         "a": IF(r=1.0, v_threshold=0.5), "cb": Conv2d(np.full((1, 1, 1, 1), 2.0), None),
         "b": IF(r=1.0, v_threshold=0.5), "s": Add(), "pool": SumPool2d((2, 2), (2, 2)),
         "flat": Flatten(), "fc": Affine(w, np.array([1.0, -1.0])), "acc": I(r=1.0)},
        (("inp", "ca"), ("ca", "a"), ("inp", "cb"), ("cb", "b"), ("a", "s"), ("b", "s"),
         ("s", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "acc")), {"timesteps": 3})
    new, notes = distribute_spike_adds(g)
    assert set(new.nodes) == {"inp", "ca", "a", "cb", "b", "pool", "pool_b", "flat", "flat_b",
                              "fc", "fc_b", "s", "acc"}
    assert new.predecessors("s") == ["fc", "fc_b"] and new.successors("s") == ["acc"]
    assert new.predecessors("pool") == ["a"] and new.predecessors("pool_b") == ["b"]
    assert new.predecessors("fc_b") == ["flat_b"]
    np.testing.assert_array_equal(new.nodes["fc_b"].bias, [0.0, 0.0])
    np.testing.assert_array_equal(new.nodes["fc"].bias, [1.0, -1.0])
    np.testing.assert_array_equal(new.nodes["fc_b"].weight, w)
    assert notes == ["s (Add): sums spikes, which no synapse can read; fc now has one copy per "
                     "input (fc, fc_b), summed by s"]
    x = np.random.default_rng(1).random((2, 1, 4, 4))
    a = floatsim.run(g, x, 3, record={"acc": ["v"]}).traces["acc.v"]
    b = floatsim.run(new, x, 3, record={"acc": ["v"]}).traces["acc.v"]
    np.testing.assert_allclose(b, a, rtol=1e-12)
    # A graph without spike adds comes back as it is.
    assert distribute_spike_adds(new) == (new, [])


def test_quantize_zoo_resnet():
    g = _resnet()
    fixed, rep = quantize(g, "loihi2", lava_compatible=True)
    # every Add now sums synaptic currents: copies of one synapse
    adds = [n for n, node in fixed.nodes.items() if isinstance(node, Add)]
    assert sorted(adds) == ["add_1_block3_conv1", "add_2", "add_block2_conv1",
                            "add_block2_shortcut_conv"]
    for a in adds:
        assert all(isinstance(fixed.nodes[p], (QConv2d, QDense)) for p in fixed.predecessors(a))
    # copies reading maps of the same shape hold the same float weights and share the layer's
    # scale: identical mantissas and exponent (pools folded into them alike)
    for a, b in (("block2_conv1", "block2_conv1_lif1"), ("block3_conv1",
                 "block3_conv1_block2_shortcut_lif"), ("out_pool2", "out_block2_shortcut_lif")):
        np.testing.assert_array_equal(fixed.nodes[a].weight, fixed.nodes[b].weight)
        assert fixed.nodes[a].weight_exp == fixed.nodes[b].weight_exp
    assert fixed.nodes["block2_conv1"].weight.shape[2:] == (6, 6)  # pool1 folded in
    assert fixed.nodes["out"].weight.shape == (5, 8 * 3 * 3)  # pool3 folded in
    assert fixed.nodes["out_pool2"].weight.shape == (5, 8 * 6 * 6)  # pool3 and pool2
    assert sum("sums spikes" in w for w in rep.warnings) == 4
    assert sum("different pipeline depths" in w for w in rep.warnings) == 4
    # The compile's in-memory steps (fold BN, quantize) take it as well, BNTT included.
    fixed2, report, _ = fixed_point(_resnet(bntt=True), "loihi2")
    assert report["quantization"]["layers"] and not _spike_adds(fixed2)


@pytest.mark.lava
def test_quantized_resnet_hw_sim_matches_lava(lava):
    g = _resnet(seed=2)
    fixed, _ = quantize(g, "loihi2", lava_compatible=True)
    steps = 4
    depth = max(pipeline_depths(fixed)[n] for n in fixed.outputs)
    x = np.random.default_rng(2).random((1, 1, 12, 12))
    q = quantize_inputs(fixed, x, steps=steps)
    q = np.concatenate([q, np.zeros((*q.shape[:-1], depth), dtype=np.int64)], axis=-1)
    total = steps + depth
    layers = fixed.neurons
    hw = hw_run(fixed, q, steps=total, input_mode="spikes",
                record={n: ["s", "v"] for n in layers})
    lv = lava_backend.run(fixed, q, steps=total, input_mode="spikes",
                          record={n: ["s", "v"] for n in layers})
    spikes = 0
    for n in layers:
        np.testing.assert_array_equal(hw.traces[f"{n}.v"], lv.traces[f"{n}.v"], err_msg=n)
        np.testing.assert_array_equal(hw.traces[f"{n}.s"], lv.traces[f"{n}.s"], err_msg=n)
        spikes += int(hw.traces[f"{n}.s"].sum())
    assert spikes > 0
    assert np.abs(hw.traces["acc.v"]).max() > 0


def test_zoo_resnet_compiles_and_verifies(tmp_path, lava):
    """``compile`` of a zoo ResNet checkpoint: its skips cannot be legalized for netx (soft
    reset, and shortcut neuron layers parallel to the main path's with other thresholds; see
    ``tests/passes/test_legalize_multihop.py``), so the quantized graph is deployed as it is
    (a warning says so, no network.net), and verify finds quantized, hw_sim and Lava equal bit
    for bit."""
    from neurodeploy.compile import compile_model
    from neurodeploy.models.checkpoint import save_checkpoint
    from neurodeploy.verify import verify

    torch.manual_seed(0)
    config = default_config("resnet", in_shape=(1, 28, 28), num_classes=10, timesteps=4,
                            features=[4], stages=[4, 8, 8])
    (tmp_path / "r").mkdir()
    save_checkpoint(tmp_path / "r" / "model.pt", build_model(config), config)
    doc = compile_model(tmp_path / "r", "loihi2", tmp_path / "c", calib="mnist5k",
                        calib_samples=16)
    assert any(w.startswith("not legalized for netx") for w in doc["warnings"])
    assert "network.net" not in doc["files"]
    result = verify(tmp_path / "c", "mnist5k", 6, lava_samples=1,
                    backends=("quantized", "hw_sim", "lava"))
    assert result["ok"] and all(p["agree"] for p in result["pairs"] if p["exact"])
