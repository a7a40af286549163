"""Tests of BNTT deployment by folding (neurodeploy.passes.bntt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurodeploy.backends import floatsim
from neurodeploy.errors import NeurodeployError
from neurodeploy.frontends.torch import from_torch
from neurodeploy.ir import BNTT, I, LIF, BatchNorm, Graph, Input, Linear
from neurodeploy.models import layers as L
from neurodeploy.models.zoo import build_model, default_config
from neurodeploy.passes.bntt import BNTTReport, bntt_accuracy_change, fold_bntt
from neurodeploy.passes.fold_bn import fold_batchnorm

T = 4


def _tiny(scale, shift) -> Graph:
    c = np.asarray(scale).shape[1]
    return Graph.chain([
        ("input", Input(shape=(c,))),
        ("fc", Linear(weight=np.eye(c))),
        ("bn", BNTT(scale=scale, shift=shift)),
        ("acc", I(r=1.0)),
    ])


def test_report_numbers_by_hand():
    # T=2, C=2. scale: ch0 steps (1, 3) -> mean 2, max |dev|/2 = 0.5; ch1 (2, 2) -> 0.
    # shift: ch0 (0, 0) -> mean 0, deviation 0 (absolute when the mean is 0); ch1 (1, 3) ->
    # mean 2, max |dev|/2 = 0.5.
    scale = np.array([[1.0, 2.0], [3.0, 2.0]])
    shift = np.array([[0.0, 1.0], [0.0, 3.0]])
    g, rep = fold_bntt(_tiny(scale, shift))
    bn = g.nodes["bn"]
    assert isinstance(bn, BatchNorm)
    np.testing.assert_array_equal(bn.scale, [2.0, 2.0])
    np.testing.assert_array_equal(bn.shift, [0.0, 2.0])
    (layer,) = rep.layers
    assert (layer.name, layer.timesteps, layer.channels) == ("bn", 2, 2)
    assert layer.scale_rel_dev == pytest.approx(0.5)
    assert layer.shift_rel_dev == pytest.approx(0.5)
    assert layer.scale_rel_dev_per_channel == pytest.approx([0.5, 0.0])
    assert layer.shift_rel_dev_per_channel == pytest.approx([0.0, 0.5])
    assert g.edges == _tiny(scale, shift).edges


def test_median_statistic_by_hand():
    # T=3: ch0 scale (1, 1, 10): mean 4, median 1 -> dev max |10-1|/1 = 9.
    scale = np.array([[1.0], [1.0], [10.0]])
    shift = np.array([[-2.0], [-1.0], [4.0]])  # median -1: max |4-(-1)|/1 = 5
    g, rep = fold_bntt(_tiny(scale, shift), statistic="median")
    np.testing.assert_array_equal(g.nodes["bn"].scale, [1.0])
    np.testing.assert_array_equal(g.nodes["bn"].shift, [-1.0])
    assert rep.layers[0].scale_rel_dev == pytest.approx(9.0)
    assert rep.layers[0].shift_rel_dev == pytest.approx(5.0)
    g, rep = fold_bntt(_tiny(scale, shift), statistic="mean")
    np.testing.assert_allclose(g.nodes["bn"].scale, [4.0])
    assert rep.layers[0].scale_rel_dev == pytest.approx(6.0 / 4.0)


def test_bad_statistic_and_no_bntt():
    with pytest.raises(NeurodeployError, match="statistic"):
        fold_bntt(_tiny(np.ones((2, 1)), np.zeros((2, 1))), statistic="mode")
    g = Graph.chain([("input", Input(shape=(2,))), ("fc", Linear(weight=np.eye(2))),
                     ("acc", I(r=1.0))])
    out, rep = fold_bntt(g)
    assert out is g and rep.layers == []


def test_tiny_folded_output_by_hand():
    # Integrator over 2 steps of x=1: before Σ_t (scale[t] + shift[t]); after 2·(mean + mean).
    scale = np.array([[1.0, 2.0], [3.0, 2.0]])
    shift = np.array([[0.0, 1.0], [0.0, 3.0]])
    g = _tiny(scale, shift)
    x = np.ones((1, 2))
    before = floatsim.forward(g, x, 2).numpy()
    after = floatsim.forward(fold_batchnorm(fold_bntt(g)[0]), x, 2).numpy()
    np.testing.assert_allclose(before, [[4.0, 8.0]])
    np.testing.assert_allclose(after, [[4.0, 8.0]])  # the sums over t agree for a linear net


@pytest.fixture(scope="module")
def zoo_cnn():
    torch.manual_seed(0)
    config = default_config("cnn", bntt=True, width=0.25, timesteps=T)
    model = build_model(config)
    model.train()
    with torch.no_grad():  # a few batches of random data: per-step statistics now differ
        for _ in range(3):
            model(torch.rand(16, 1, 28, 28) * 2.0)
    model.eval()
    return model


def _with_equal_steps(graph: Graph) -> Graph:
    nodes = dict(graph.nodes)
    for name, node in graph.nodes.items():
        if isinstance(node, BNTT):
            nodes[name] = BNTT(scale=np.repeat(node.scale[1:2], node.timesteps, axis=0),
                               shift=np.repeat(node.shift[1:2], node.timesteps, axis=0))
    return Graph(nodes, graph.edges, graph.metadata)


def test_zoo_cnn_report_matches_module_statistics(zoo_cnn):
    graph = from_torch(zoo_cnn, in_shape=(1, 28, 28))
    folded, rep = fold_bntt(graph)
    bntt_modules = [m for m in zoo_cnn.modules() if isinstance(m, L.BNTT)]
    assert len(rep.layers) == len(bntt_modules) >= 2
    for layer, module in zip(rep.layers, bntt_modules):
        scale, shift = (t.double().numpy() for t in module.inference_affine())
        assert (layer.timesteps, layer.channels) == scale.shape
        # independent computation of the maximum relative deviation
        ms, mb = scale.mean(axis=0), shift.mean(axis=0)
        want_s = max(abs(scale[t, c] - ms[c]) / abs(ms[c]) for t in range(T)
                     for c in range(scale.shape[1]))
        want_b = max(abs(shift[t, c] - mb[c]) / abs(mb[c]) for t in range(T)
                     for c in range(shift.shape[1]))
        assert layer.scale_rel_dev == pytest.approx(want_s, rel=1e-9)
        assert layer.shift_rel_dev == pytest.approx(want_b, rel=1e-9)
        np.testing.assert_allclose(folded.nodes[layer.name].scale, ms, rtol=1e-12)
    # the training batches made the later layers' per-step statistics differ (the first BNTT
    # sees the same direct input at every step, so its steps may well be equal)
    assert max(layer.scale_rel_dev for layer in rep.layers) > 1e-3
    # fold_batchnorm removes the BatchNorms it became: no BN of any kind remains
    deployed = fold_batchnorm(folded)
    assert not any(isinstance(n, (BNTT, BatchNorm)) for n in deployed.nodes.values())


def test_folding_is_exact_when_steps_are_equal(zoo_cnn):
    graph = _with_equal_steps(from_torch(zoo_cnn, in_shape=(1, 28, 28)))
    folded, rep = fold_bntt(graph)
    assert all(layer.scale_rel_dev == 0 and layer.shift_rel_dev == 0 for layer in rep.layers)
    deployed = fold_batchnorm(folded)
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2.0
    res_a = floatsim.run(graph, x, T, record=["s"])
    res_b = floatsim.run(deployed, x, T, record=["s"])
    np.testing.assert_allclose(res_b.traces["acc.out"], res_a.traces["acc.out"], rtol=1e-9,
                               atol=1e-9)
    for name in graph.neurons:
        if isinstance(graph.nodes[name], LIF):
            np.testing.assert_array_equal(res_a.traces[f"{name}.s"], res_b.traces[f"{name}.s"])


def test_folding_changes_outputs_when_steps_differ(zoo_cnn):
    graph = from_torch(zoo_cnn, in_shape=(1, 28, 28))
    deployed = fold_batchnorm(fold_bntt(graph)[0])
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2.0
    a = floatsim.forward(graph, x, T).numpy()
    b = floatsim.forward(deployed, x, T).numpy()
    assert np.abs(a - b).max() > 1e-6


def test_accuracy_change(zoo_cnn):
    graph = from_torch(zoo_cnn, in_shape=(1, 28, 28))
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(40, 1, 28, 28, generator=gen) * 2.0
    with torch.no_grad():  # the torch model itself is the independent "before" reference
        logits = zoo_cnn(x)
        logits = logits[0] if isinstance(logits, tuple) else logits
    pred = logits.argmax(dim=1).numpy()
    # labels: the torch prediction for the first half, something else for the second half
    y = pred.copy()
    y[20:] = (y[20:] + 1) % 10
    rep = BNTTReport(statistic="mean")
    out = bntt_accuracy_change(graph, x.numpy(), y, T, report=rep)
    assert out["before"] == pytest.approx(0.5)
    assert out["change"] == pytest.approx(out["after"] - out["before"])
    assert rep.accuracy_before == out["before"] and rep.accuracy_change == out["change"]
    # equal statistics: folding is exact, so the accuracy does not change
    same = bntt_accuracy_change(_with_equal_steps(graph), x.numpy(), y, T)
    assert same["change"] == 0.0
    with pytest.raises(NeurodeployError, match="labels"):
        bntt_accuracy_change(graph, x.numpy(), y[:3], T)
