"""The SAM accumulator as a Lava process: driven by recorded spikes it gives the worked
integers of ``algorithms.md`` §5.6 (Example 2) and the numpy reference; attached to the real
LIF processes of a small conv network (Lava backend's builder) it equals hw_sim's
``SamAccumulator`` bit for bit, with the staggered reset of deployed runs."""

from __future__ import annotations

import numpy as np
import pytest

from neurodeploy import hw_sim, sam
from neurodeploy.backends import lava_sam
from neurodeploy.errors import NeurodeployError, UnsupportedError
from neurodeploy.ir import Graph
from neurodeploy.ir.nodes import Input, QConv2d, QCubaLIF
from neurodeploy.simulation import pipeline_depths

pytestmark = [pytest.mark.lava,
              pytest.mark.filterwarnings("ignore:Cannot import module:UserWarning")]


def test_worked_example_and_reference_from_a_spike_source(lava):
    s = np.zeros((1, 7, 3, 2, 2), dtype=np.int64)
    s[0, :, 0, 0, 0] = [0, 1, 1, 0, 0, 1, 0]  # Example 1's train in one neuron
    rng = np.random.default_rng(0)
    s[0, :, 1:] = rng.random((7, 2, 2, 2)) < 0.5
    maps = lava_sam.run_sam_spikes(s, gamma=0.5, mode="inclusive")
    np.testing.assert_array_equal(maps, sam.sam_fixed(s, 0.5, "inclusive"))
    # the pixel where only channel 0 can be read: Example 2's trace times the spike
    only0 = s.copy()
    only0[:, :, 1:] = 0
    np.testing.assert_array_equal(lava_sam.run_sam_spikes(only0)[0, :, 0, 0],
                                  [0, 4096, 6580, 0, 0, 5562, 0])
    late = lava_sam.run_sam_spikes(s, gamma=1.0, mode="exclusive", start=2)
    s_late = s.copy()
    s_late[:, :2] = 0
    np.testing.assert_array_equal(late, sam.sam_fixed(s_late, 1.0, "exclusive"))
    assert not late[:, :2].any()


def _graph() -> Graph:
    rng = np.random.default_rng(3)
    return Graph.chain([
        ("in", Input(shape=(2, 5, 6))),
        ("c1", QConv2d(weight=rng.integers(-80, 80, (4, 2, 3, 3)), padding=1)),
        ("l1", QCubaLIF(threshold=150, current_decay=2048, voltage_decay=512,
                        reset="subtract")),
        ("c2", QConv2d(weight=rng.integers(-80, 80, (3, 4, 3, 3)), padding=1)),
        ("l2", QCubaLIF(threshold=140, current_decay=4096, voltage_decay=1024, bias=5,
                        bias_exp=3)),
    ])


def test_attached_to_lif_outputs_bit_exact_with_hw_sim(lava):
    g = _graph()
    rng = np.random.default_rng(2)
    steps = 9
    x = (rng.random((2, 2, 5, 6, steps)) < 0.4).astype(np.int64)
    depths = pipeline_depths(g)
    starts = {"l1": depths["l1"] + 2, "l2": depths["l2"]}  # l1 fires before its start
    acc = sam.SamAccumulator(starts, gamma=0.4)
    res = hw_sim.run(g, x, steps=steps, input_mode="spikes", observer=acc, reset_interval=steps,
                     record={"l1": ["s"], "l2": ["s"]})
    got = lava_sam.run_sam_lava(g, x, steps=steps, layers=starts, gamma=0.4,
                                reset_interval=steps)
    want = acc.maps()
    for name in starts:
        assert 0.05 < res.traces[f"{name}.s"].mean() < 0.8
        assert got[name].shape == (2, steps, 5, 6) and got[name].any()
        np.testing.assert_array_equal(got[name], want[name])


def test_errors():
    with pytest.raises(UnsupportedError, match="conv layer"):
        lava_sam.sam_process((16,))
    with pytest.raises(NeurodeployError, match="gamma"):
        lava_sam.sam_process((2, 3, 3), gamma=-1)
    with pytest.raises(NeurodeployError, match="mode"):
        lava_sam.sam_process((2, 3, 3), mode="official")
    with pytest.raises(NeurodeployError, match="unknown layer"):
        lava_sam.run_sam_lava(_graph(), np.zeros((1, 2, 5, 6, 2)), steps=2, layers=["c1"])
