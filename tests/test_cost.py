"""Cost model: the estimator's arithmetic equals a hand computation with the published per-op
numbers (Davies 2018 and SANA-FE) on hand-counted activity, the idle-core sanity figure, and
costs scale as expected with spike rate and time steps; bad input fails with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurodeploy.accounting import Accountant
from neurodeploy.cost import estimate
from neurodeploy.errors import NeurodeployError, UnsupportedError
from neurodeploy.hw_sim import run
from neurodeploy.ir import Graph, Input, QCubaLIF, QDense
from neurodeploy.mapping import map_graph
from neurodeploy.targets import load_target

from target_edits import small_target as _small


def small_target(tmp_path: Path, base: str = "loihi1"):
    """``base`` with 2 neurons per core, 4 cores on a 2x2 mesh of one-core tiles."""
    return _small(tmp_path, 2, (2, 2), base)

pytestmark = pytest.mark.usefixtures("one_thread")

PJ, NS = 1e-12, 1e-9


def tiny_dense() -> Graph:
    """The network of tests/test_accounting.py's hand count (same weights, same neurons)."""
    lif = dict(threshold=15, current_decay=4096, voltage_decay=4096)
    w0 = np.array([[10, 0, 10], [10, 10, 0], [0, 10, 0], [10, 10, 0]])
    w1 = np.array([[10, 10, 10, 10], [5, 5, 5, 5]])
    return Graph.chain([("input", Input((3,))), ("fc0", QDense(weight=w0)),
                        ("lif0", QCubaLIF(**lif)), ("fc1", QDense(weight=w1)),
                        ("lif1", QCubaLIF(**lif))])


def counted(graph: Graph, target, x: np.ndarray, steps: int, **kw):
    m = map_graph(graph, target)
    acc = Accountant(graph, m)
    run(graph, x, steps=steps, observer=acc, **kw)
    return m, acc.result()


def tiny_run(target):
    x = np.zeros((2, 3, 5), dtype=np.int64)  # sample 1 is silent
    x[0] = [[1, 1, 0, 1, 0], [0, 1, 0, 1, 0], [0, 0, 1, 1, 0]]
    return counted(tiny_dense(), target, x, 5, input_mode="spikes")


# The hand counts of tests/test_accounting.py::test_tiny_dense_network_by_hand ((steps, cores),
# summed over the 2 samples): cores 0, 1 hold lif0, core 2 lif1 at tiles (0,0) (1,0) (1,1).
SPARSE = np.array([[2, 1, 0], [3, 3, 0], [1, 0, 0], [4, 3, 0], [0, 0, 0]])
DENSE = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 4], [0, 0, 0], [0, 0, 6]])
ACTIVE = np.array([[0, 0, 0], [2, 1, 0], [2, 2, 0], [2, 2, 2], [2, 2, 2]])
INACTIVE = 4 - ACTIVE
OUT = np.array([[0, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 1], [2, 1, 0]])
INTO = np.array([[1, 1, 0], [2, 2, 0], [1, 0, 2], [3, 2, 0], [0, 0, 3]])
# core 0 -> 2: 1 E-W + 1 N-S hop, 1 message at step 2, 2 at step 4; core 1 -> 2: 1 N-S hop,
# 1 message at steps 2 and 4. Both routes cross the boundary (1,0)-(1,1).
M02 = np.array([0, 0, 1, 0, 2])
M12 = np.array([0, 0, 1, 0, 1])


def test_energy_and_time_by_hand_davies(tmp_path):
    m, act = tiny_run(small_target(tmp_path))
    assert act.syn_ops["sparse"].tolist() == SPARSE.tolist()  # the counts this test assumes
    rep = estimate(act, m, small_target(tmp_path))
    # Davies 2018: 23.6 pJ/syn op (any encoding), 81/52 pJ active/inactive update, 0 pJ spike
    # out, 1.7 pJ per message + 3.0 pJ E-W hop + 4.0 pJ N-S hop; per sample: / 2.
    syn = (SPARSE.sum() + DENSE.sum()) * 23.6 * PJ / 2
    neuron = (ACTIVE.sum() * 81 + INACTIVE.sum() * 52) * PJ / 2
    noc = (M02.sum() * (1.7 + 3.0 + 4.0) + M12.sum() * (1.7 + 4.0)) * PJ / 2
    assert (SPARSE.sum() + DENSE.sum(), ACTIVE.sum(), INACTIVE.sum()) == (27, 19, 41)
    assert rep.breakdown["synaptic"] == pytest.approx(syn, rel=1e-12)
    assert rep.breakdown["neuron"] == pytest.approx(neuron, rel=1e-12)
    assert rep.breakdown["spike_noc"] == pytest.approx(noc, rel=1e-12)
    assert rep.energy_per_inference["dynamic"] == pytest.approx(syn + neuron + noc, rel=1e-12)
    # Time: slowest core (3.5 ns/syn op, 8.4/5.3 ns per update, nothing for spikes out or in)
    # + longest route used (2.1 + 4.1 + 6.5 ns, steps 2 and 4) + busiest boundary / 3.44e9
    # (2 then 3 messages, / 2 samples) + barrier at 3 tiles (113 -> 465 ns over 1 -> 32 tiles).
    core = ((SPARSE + DENSE) * 3.5 + ACTIVE * 8.4 + INACTIVE * 5.3) * NS / 2
    route = np.array([0, 0, 12.7, 0, 12.7]) * NS
    congestion = np.array([0, 0, 2, 0, 3]) / 2 / 3.44e9
    barrier = (113 + (465 - 113) * 2 / 31) * NS
    t_step = core.max(axis=1) + route + congestion + barrier
    assert rep.step_time_s == pytest.approx(t_step.tolist(), rel=1e-12)
    assert rep.time_per_step_s == pytest.approx(t_step.mean(), rel=1e-12)
    assert rep.time_breakdown_s["barrier"] == pytest.approx(barrier, rel=1e-12)
    static = 0.029 * t_step.sum()  # 29 mW x 1 chip over the 5 steps
    assert rep.energy_per_inference["static"] == pytest.approx(static, rel=1e-12)
    total = syn + neuron + noc + static
    assert rep.energy_per_inference["total"] == pytest.approx(total, rel=1e-12)
    assert rep.energy_per_step["total"] == pytest.approx(total / 5, rel=1e-12)
    # latency: (5 steps + depth 2) x mean step; throughput: a new input every 5 steps
    assert rep.latency_per_inference_s == pytest.approx(7 * t_step.mean(), rel=1e-12)
    assert rep.throughput_fps == pytest.approx(1 / t_step.sum(), rel=1e-12)
    assert rep.edp_j_s == pytest.approx(total * 7 * t_step.mean(), rel=1e-12)
    assert sum(c["dynamic_j"] for c in rep.per_core) == pytest.approx(syn + neuron + noc)


def test_energy_by_hand_sanafe(tmp_path):
    target = small_target(tmp_path, "loihi1-sanafe")
    m, act = tiny_run(target)
    rep = estimate(act, m, target)
    # SANA-FE: 33.6 pJ sparse / 35.5 pJ dense syn op, 72.8/51.2 pJ updates, 180.3 pJ per
    # spike out, no local cost, 3.0 / 4.2 pJ per hop.
    assert rep.breakdown["synaptic"] == pytest.approx(
        (SPARSE.sum() * 33.6 + DENSE.sum() * 35.5) * PJ / 2, rel=1e-12)
    assert rep.breakdown["neuron"] == pytest.approx(
        (ACTIVE.sum() * 72.8 + INACTIVE.sum() * 51.2) * PJ / 2, rel=1e-12)
    assert rep.breakdown["spike_noc"] == pytest.approx(
        (OUT.sum() * 180.3 + M02.sum() * (3.0 + 4.2) + M12.sum() * 4.2) * PJ / 2, rel=1e-12)
    # core time adds 35.1 ns per spike out and 16 ns per message received (host's too)
    core = (SPARSE * 4.7 + DENSE * 3.8 + ACTIVE * 9.7 + INACTIVE * 6.0 + OUT * 35.1
            + INTO * 16) * NS / 2
    route = np.array([0, 0, 4.1 + 6.5, 0, 4.1 + 6.5]) * NS
    barrier = (1.0 + (1.4 - 1.0) * (3 - 2) / (4 - 2)) * 1e-6  # SANA-FE table at 3 tiles
    congestion = np.array([0, 0, 2, 0, 3]) / 2 / 3.44e9
    assert rep.step_time_s == pytest.approx(
        (core.max(axis=1) + route + congestion + barrier).tolist(), rel=1e-12)


def test_idle_full_core_sanity():
    # reference/loihi.md §8.2: an idle full Loihi 1 core costs >= 1024 x 5.3 ns per step.
    g = Graph.chain([("input", Input((1024,))),
                     ("lif", QCubaLIF(threshold=10, current_decay=4096, voltage_decay=0))])
    target = load_target("loihi1")
    m, act = counted(g, target, np.zeros((1, 1024), dtype=np.int64), 3)
    rep = estimate(act, m, target)
    assert rep.time_per_step_s == pytest.approx(1024 * 5.3e-9 + 113e-9, rel=1e-12)
    assert rep.energy_per_step["dynamic"] == pytest.approx(1024 * 52e-12, rel=1e-12)
    assert rep.energy_per_step["static"] == pytest.approx(0.029 * rep.time_per_step_s)


def periodic(period: int, steps: int) -> np.ndarray:
    x = np.zeros((1, 3, steps), dtype=np.int64)
    x[0, :, ::period] = 1
    return x


def test_costs_scale_with_steps(tmp_path):
    # Input every 4 steps into memoryless neurons: every 4-step window repeats exactly, so 8
    # steps cost twice 4 steps, per step the same, latency (steps + depth 2) x step time.
    target = small_target(tmp_path)
    reps = {}
    for steps in (4, 8):
        m, act = counted(tiny_dense(), target, periodic(4, steps), steps, input_mode="spikes")
        reps[steps] = estimate(act, m, target)
    a, b = reps[4], reps[8]
    for key in ("total", "dynamic", "static"):
        assert b.energy_per_inference[key] == pytest.approx(2 * a.energy_per_inference[key])
    assert b.energy_per_step["total"] == pytest.approx(a.energy_per_step["total"])
    assert b.time_per_step_s == pytest.approx(a.time_per_step_s)
    assert a.latency_per_inference_s == pytest.approx(6 * a.time_per_step_s)
    assert b.latency_per_inference_s == pytest.approx(10 * a.time_per_step_s)
    assert b.throughput_fps == pytest.approx(a.throughput_fps / 2)


def test_costs_scale_with_spike_rate(tmp_path):
    # Twice the input events (every 2 steps instead of 4, effects never overlapping): twice
    # the synaptic ops and messages, more active updates, more energy per inference.
    target = small_target(tmp_path)
    reps, acts = {}, {}
    for period in (4, 2):
        m, acts[period] = counted(tiny_dense(), target, periodic(period, 8), 8,
                                  input_mode="spikes")
        reps[period] = estimate(acts[period], m, target)
    slow, fast = reps[4], reps[2]
    assert acts[2].total("input_spikes") == 2 * acts[4].total("input_spikes")
    assert fast.breakdown["synaptic"] == pytest.approx(2 * slow.breakdown["synaptic"])
    assert fast.breakdown["spike_noc"] == pytest.approx(2 * slow.breakdown["spike_noc"])
    assert slow.breakdown["spike_noc"] > 0
    active = acts[2].total("active_updates") - acts[4].total("active_updates")
    assert active > 0
    assert fast.breakdown["neuron"] - slow.breakdown["neuron"] == pytest.approx(
        active * (81 - 52) * PJ)
    assert fast.energy_per_inference["total"] > slow.energy_per_inference["total"]


def test_report_dict_and_assumptions(tmp_path):
    target = small_target(tmp_path)
    m, act = tiny_run(target)
    doc = json.loads(json.dumps(estimate(act, m, target).to_dict()))
    energy, latency = doc["energy"], doc["latency"]
    assert set(energy["per_inference_j"]) == {"total", "dynamic", "static"}
    assert set(energy["breakdown_j"]) == {"synaptic", "neuron", "spike_noc", "static"}
    assert energy["preset"] == "loihi1-small" and energy["scope"] == target.energy_scope
    assert {"time_per_step_s", "latency_per_inference_s", "throughput_fps"} <= set(latency)
    assert len(doc["per_step"]["time_s"]) == 5 and len(doc["per_core"]) == 3
    text = " ".join(doc["assumptions"]).lower()
    for needle in ("23.6 pJ", "0.029 W", "energy scope", "barrier", "pipeline depth 2",
                   "host", "davies 2018"):
        assert needle.lower() in text, needle


def test_loihi2_report_says_proxy():
    target = load_target("loihi2")
    m, act = counted(tiny_dense(), target, np.zeros((1, 3), dtype=np.int64), 2)
    rep = estimate(act, m, target)
    assert any("calibrated proxy" in line for line in rep.assumptions)
    assert rep.confidence.startswith("calibrated proxy")


def test_bad_input(tmp_path):
    target = small_target(tmp_path)
    m, act = tiny_run(target)
    with pytest.raises(UnsupportedError, match="not a neuromorphic"):
        estimate(act, m, load_target("cpu"))
    with pytest.raises(NeurodeployError, match="map the graph for this target"):
        estimate(act, m, load_target("loihi1"))
    other_m, other_act = counted(tiny_dense(), load_target("loihi1"),
                                 np.zeros((1, 3), dtype=np.int64), 2)
    with pytest.raises(NeurodeployError, match="counted on a mapping"):
        estimate(other_act, m, target)
    with pytest.raises(NeurodeployError, match="do not match"):
        estimate(act, m, target, steps=5, samples=3)
    with pytest.raises(NeurodeployError, match="positive integer"):
        estimate(act, m, target, steps=0)
    with pytest.raises(NeurodeployError, match="positive number"):
        estimate(act, m, target, samples=-1)
    with pytest.raises(NeurodeployError, match="Activity"):
        estimate({"steps": 5}, m, target)
    # a run of 10 sample-steps read as 2 inferences of 5 steps, or 5 of 2
    assert estimate(act, m, target, steps=2).samples == 5
