"""hw_sim against ground truth that ships with lava-dl: PilotNet recorded on Loihi 2 hardware
(``gts/pilotnet_lif``) and the tiny CNN's output spikes (``gts/tinynet``).

Ground-truth traces are in netx's (W, H, C, T) layout; hw_sim's are (C, H, W, T).
"""

from __future__ import annotations

import numpy as np
import pytest

from neurodeploy.frontends.netx import read_netx
from neurodeploy.hw_sim import run
from neurodeploy.ir import Graph

# Neuron layers of PilotNet in file order, with their ground-truth file prefixes.
PILOTNET_LAYERS = [
    ("conv1", "conv-0"), ("conv2", "conv-1"), ("conv3", "conv-2"), ("conv4", "conv-3"),
    ("conv5", "conv-4"), ("dense7", "fc-0"), ("dense8", "fc-1"), ("dense9", "fc-2"),
    ("dense10", "fc-3"),
]


def to_netx(trace: np.ndarray) -> np.ndarray:
    """(C, H, W, T) → (W, H, C, T); vectors unchanged."""
    return trace.transpose(2, 1, 0, 3) if trace.ndim == 4 else trace


@pytest.fixture(scope="module")
def pilotnet(lavadl_netx_dir):
    folder = lavadl_netx_dir / "gts" / "pilotnet_lif"
    return read_netx(folder / "network.net"), folder


def test_pilotnet_bias_input_matches_loihi2_u_of_every_layer(pilotnet):
    """As lava-dl's hardware test: image as input bias, reset interval 16, u after 15 steps."""
    graph, folder = pilotnet
    image = np.load(folder / "image.npy")  # (W, H, C)
    x = image.transpose(2, 1, 0)[None].astype(np.int64)
    r = run(graph, x, steps=15, reset_interval=16, record=["u", "s"])
    for layer, gt_name in PILOTNET_LAYERS:
        gt = np.load(folder / f"{gt_name}-u.npy")
        ours = to_netx(r.traces[f"{layer}.u"][0])
        np.testing.assert_array_equal(ours[..., 14], gt[..., 14].astype(ours.dtype), err_msg=layer)
        # Beyond lava-dl's check, u matches the hardware at every one of the 15 steps, except for
        # fc-3, whose trace (float64, 25 steps, unlike the others) was recorded differently: it
        # agrees at 13 of 15 steps, while its input layer fc-2 agrees at every step.
        if gt_name != "fc-3":
            np.testing.assert_array_equal(ours, gt[..., :15].astype(ours.dtype), err_msg=layer)
    for layer, gt_name in PILOTNET_LAYERS[:-1]:
        gt = np.load(folder / f"{gt_name}.npy")
        np.testing.assert_array_equal(to_netx(r.traces[f"{layer}.s"][0]), gt[..., :15],
                                      err_msg=f"{layer} spikes")


def test_pilotnet_spike_input_matches_loihi2(pilotnet):
    """lava-dl's spike-injection variant: the input layer is skipped and its recorded spikes
    (``input-s.npy``) drive conv-0; the first four conv layers run 16 steps."""
    graph, folder = pilotnet
    keep = ["input", "conv1_syn", "conv1", "conv2_syn", "conv2", "conv3_syn", "conv3",
            "conv4_syn", "conv4"]
    nodes = {n: graph.nodes[n] for n in keep}
    sub = Graph.chain(nodes.items())
    spikes = np.load(folder / "input-s.npy")  # (W, H, C, T)
    x = spikes.transpose(2, 1, 0, 3)[None].astype(np.int64)
    r = run(sub, x, steps=16, input_mode="spikes", reset_interval=16, record=["u"])
    for layer, gt_name in PILOTNET_LAYERS[:4]:
        gt = np.load(folder / f"{gt_name}-u.npy")[..., :16]
        np.testing.assert_array_equal(to_netx(r.traces[f"{layer}.u"][0]), gt, err_msg=layer)


def test_tinynet_output_spikes_match_ground_truth(lavadl_netx_dir):
    """As lava-dl's test_tinynet: per-layer resets every 17 steps staggered by depth, output
    spikes of steps 2..16 against the recorded ground truth."""
    graph = read_netx(lavadl_netx_dir / "tiny.net")
    bias = np.load(lavadl_netx_dir / "gts" / "tinynet" / "input_bias.npy")  # (W, H, C)
    x = bias.transpose(2, 1, 0)[None].astype(np.int64)
    r = run(graph, x, steps=20, reset_interval=17, record=["s"])
    out = to_netx(r.traces["conv2.s"][0])
    gt = np.load(lavadl_netx_dir / "gts" / "tinynet" / "output.npy")[0].transpose(2, 1, 0, 3)
    assert gt[..., 1:].sum() > 50  # the comparison is not vacuous
    np.testing.assert_array_equal(out[..., 2:17], gt[..., 1:])


def test_ntidigits_axonal_delays_match_ground_truth(lavadl_netx_dir):
    """NTIDIGITS (dense layers with per-synapse delays up to 62 steps, Lava's DelayDense): the
    output spikes of the last dense layer equal lava-dl's recorded ground truth at every step
    (the recording lags by one step). lava-dl's own test only compares one time column."""
    folder = lavadl_netx_dir / "gts" / "ntidigits"
    graph = read_netx(folder / "ntidigits.net")
    assert max(int(n.delay.max()) for n in graph.nodes.values()
               if getattr(n, "delay", None) is not None) == 62
    # netx skips the final 'average' layer (not supported by netx); so do we.
    keep = [n for n in graph.nodes if n != "average5"]
    sub = Graph({n: graph.nodes[n] for n in keep}, [e for e in graph.edges if e[1] in keep])
    steps = 1200
    spikes = np.load(folder / "input.npy")[:, :steps]  # (64, T) events of the (1, 1, 64) input
    x = spikes.reshape(1, 1, 1, 64, steps).astype(np.int64)
    r = run(sub, x, steps=steps, input_mode="spikes", record={"dense4": "s"})
    out = r.traces["dense4.s"][0]
    gt = np.load(folder / "output.npy")[:, : steps + 1]
    assert gt.sum() > 1000  # the comparison is not vacuous
    np.testing.assert_array_equal(out, gt[:, 1:])
