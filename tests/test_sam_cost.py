"""The on-chip SAM accumulator's events and energy: counts by hand on tiny conv networks (2
synaptic ops per spike of the layer, exactly, against hw_sim's spike counts; trace and sum
updates against an independent run of the trace; read-out hops when channels sit on other
cores), its energy against the hand formula with the target's per-op numbers, a network
without it costed exactly as before it existed, and the compile → dataset run → report and
``run_sam`` paths."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy import sam
from neurodeploy.accounting import COUNTING_RULES, Accountant
from neurodeploy.cost import estimate
from neurodeploy.errors import BadInputFileError, NeurodeployError, UnsupportedError
from neurodeploy.hw_sim import run
from neurodeploy.ir import Flatten, Graph, Input, QConv2d, QCubaLIF, QDense, QSumPool2d
from neurodeploy.mapping import map_graph
from neurodeploy.targets import BUILTIN_DIR, load_target

from target_edits import small_target as _small


def small_target(tmp_path: Path, neurons: int, mesh: tuple[int, int] = (2, 2),
                 **changes: str):
    """loihi2, small (see target_edits), with 7 pJ per spike out."""
    return _small(tmp_path, neurons, mesh, "loihi2",
                  **{"spike_out = 0.0": "spike_out = 7e-12", **changes})  # the first: [energy]

pytestmark = pytest.mark.usefixtures("one_thread")

PJ, NS = 1e-12, 1e-9
#: loihi2's per-event energies (J) with a non-zero spike-out energy (7 pJ) so every term shows
E_SYN, E_ACT, E_INACT, E_OUT = 11.8 * PJ, 40.5 * PJ, 26 * PJ, 7 * PJ
E_LOCAL, E_EW, E_NS = 0.85 * PJ, 1.5 * PJ, 2.0 * PJ
#: loihi2's times (s)
T_SYN, T_ACT, T_INACT, T_LOCAL, T_EW = 1.75 * NS, 4.2 * NS, 2.65 * NS, 2.1 * NS, 4.1 * NS


def conv_net(channels: int = 2) -> Graph:
    """input (1,4,4) → 3x3 conv → lif (C,4,4) with memory → 2x2 sum pool → lifp (C,2,2)."""
    rng = np.random.default_rng(channels)
    return Graph.chain([
        ("input", Input((1, 4, 4))),
        ("conv", QConv2d(weight=rng.integers(2, 12, (channels, 1, 3, 3)), padding=(1, 1))),
        ("lif", QCubaLIF(threshold=20, current_decay=2048, voltage_decay=1024)),
        ("pool", QSumPool2d(kernel_size=(2, 2), stride=(2, 2), weight=10)),
        ("lifp", QCubaLIF(threshold=300, current_decay=4096, voltage_decay=4096))])


STEPS, BATCH = 10, 3


def counted(graph: Graph, mapping, x: np.ndarray):
    acc = Accountant(graph, mapping)
    res = run(graph, x, steps=STEPS, input_mode="spikes", observer=acc,
              record={"lif": ["s"]})
    return acc.result(), np.moveaxis(res.traces["lif.s"], -1, 1).astype(np.int64), res


def inputs(seed: int = 0) -> np.ndarray:
    x = (np.random.default_rng(seed).random((BATCH, 1, 4, 4, STEPS)) < 0.35).astype(np.int64)
    x[:, :, :, :, 6:8] = 0  # a pause: traces decay without input, some reach 0
    return x


def independent_updates(spikes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(active trace updates, active sum updates)`` per step, summed over the batch, from
    the numpy trace (:func:`neurodeploy.sam.fixed_trace`) of spikes ``(B, T, C, H, W)``."""
    q = sam.fixed_trace(spikes)
    q_before = np.concatenate([np.zeros_like(q[:, :1]), q[:, :-1]], axis=1)
    traces = ((q != 0) | (q_before != 0)).sum(axis=(0, 2, 3, 4))
    fired = spikes.any(axis=2)
    before = np.concatenate([np.zeros_like(fired[:, :1]), fired[:, :-1]], axis=1)
    return traces, (fired | before).sum(axis=(0, 2, 3))


# ------------------------------------------------------------------------------ one core


def test_events_by_hand_on_one_core(tmp_path):
    t = small_target(tmp_path, 128)
    g = conv_net()
    plain = map_graph(g, t)
    m = map_graph(g, t, sam=sam.SamSpec(("lif",)))
    assert [c.layer for c in m.cores] == [c.layer for c in plain.cores] == ["lif", "lifp"]
    act, spikes, res = counted(g, m, inputs())
    base, _, _ = counted(g, plain, inputs())
    per_step = spikes.sum(axis=(0, 2, 3, 4))  # lif's spikes per step, all samples
    assert per_step.sum() == res.spike_counts["lif"].sum() > 20
    sa = act.sam
    # 2 synaptic ops per spike, both on the layer's core: the spike into its trace and the
    # trace's read-out into its pixel's sum
    assert sa.syn_ops[:, 0].tolist() == (2 * per_step).tolist()
    assert sa.syn_ops.sum() == 2 * res.spike_counts["lif"].sum()
    assert sa.input_spikes.tolist() == sa.syn_ops.tolist()
    assert sa.output_spikes[:, 0].tolist() == per_step.tolist()  # one read-out a spike
    assert sa.messages_out[:, 0].tolist() == (2 * per_step).tolist()
    assert not sa.hops_ew.any() and not sa.hops_ns.any() and not sa.syn_ops[:, 1].any()
    assert (sa.route_src.tolist(), sa.route_dst.tolist()) == ([0], [0])
    traces, sums = independent_updates(spikes)
    assert 0 < traces.sum() < 32 * BATCH * STEPS and 0 < sums.sum()
    assert sa.active_updates[:, 0].tolist() == (traces + sums).tolist()
    assert sa.inactive_updates[:, 0].tolist() == (48 * BATCH - traces - sums).tolist()
    assert sa.compartments.tolist() == [48, 0]
    # the network's own counts do not change
    for kind in ("input_spikes", "syn_ops", "active_updates", "inactive_updates",
                 "output_spikes", "messages_out", "hops_ew", "hops_ns"):
        np.testing.assert_array_equal(act.counts(kind), base.counts(kind))
    doc = act.to_dict(per_step=False)
    row = doc["sam"]["per_layer"]["lif"]
    assert row["syn_ops"] == pytest.approx(2 * per_step.sum() / BATCH)
    assert (row["compartments"], row["traces"], row["sums"]) == (48, 32, 16)
    assert doc["counting_rules"][:len(COUNTING_RULES)] == COUNTING_RULES
    assert "sam" not in base.to_dict(per_step=False) and base.sam is None


def test_energy_and_time_by_hand(tmp_path):
    t = small_target(tmp_path, 128)
    g = conv_net()
    m = map_graph(g, t, sam=sam.SamSpec(("lif",)))
    act, spikes, _ = counted(g, m, inputs())
    base, _, _ = counted(g, map_graph(g, t), inputs())
    rep, ref = estimate(act, m, t), estimate(base, map_graph(g, t), t)
    sa = act.sam
    S = int(spikes.sum())
    A, I = int(sa.active_updates.sum()), int(sa.inactive_updates.sum())
    assert A + I == 48 * BATCH * STEPS
    # per inference (one sample): 2 ops a spike, the updates, a read-out spike a spike, and
    # two local messages a spike (no hops)
    hand = (2 * S * E_SYN + A * E_ACT + I * E_INACT + S * E_OUT + 2 * S * E_LOCAL) / BATCH
    assert rep.breakdown["sam"] == pytest.approx(hand, rel=1e-12)
    assert rep.sam_per_layer == pytest.approx({"lif": hand}, rel=1e-12)
    for part in ("synaptic", "neuron", "spike_noc"):
        assert rep.breakdown[part] == pytest.approx(ref.breakdown[part], rel=1e-12)
    assert rep.energy_per_inference["dynamic"] - ref.energy_per_inference["dynamic"] == \
        pytest.approx(hand, rel=1e-9)
    assert sum(v for k, v in rep.breakdown.items()) == pytest.approx(
        rep.energy_per_inference["total"], rel=1e-12)
    assert rep.per_core[0]["sam_j"] == pytest.approx(hand, rel=1e-12)
    assert sum(c["dynamic_j"] for c in rep.per_core) == pytest.approx(
        rep.energy_per_inference["dynamic"], rel=1e-12)
    # time: the accumulator's work runs on core 0 (lif) and its local route may be the only
    # one used; core 1 holds lifp; lif -> lifp is one east-west hop
    per = {k: act.counts(k) / BATCH for k in ("syn_ops", "active_updates",
                                              "inactive_updates")}
    core = per["syn_ops"] * T_SYN + per["active_updates"] * T_ACT \
        + per["inactive_updates"] * T_INACT
    core[:, 0] += (sa.syn_ops[:, 0] * T_SYN + sa.active_updates[:, 0] * T_ACT
                   + sa.inactive_updates[:, 0] * T_INACT) / BATCH
    net_used = act.route_messages[:, list(act.route_src).index(0)] > 0
    route = np.where(net_used, T_LOCAL + T_EW, np.where(sa.route_messages[:, 0] > 0,
                                                        T_LOCAL, 0.0))
    cong = act.route_messages[:, list(act.route_src).index(0)] / BATCH / 3.44e9
    barrier = (113 + (465 - 113) * 1 / 31) * NS  # 2 tiles
    t_step = core.max(axis=1) + route + cong + barrier
    assert rep.step_time_s == pytest.approx(t_step.tolist(), rel=1e-12)
    assert rep.energy_per_inference["static"] == pytest.approx(0.23 * t_step.sum(), rel=1e-12)
    assert rep.time_per_step_s > ref.time_per_step_s
    d = rep.to_dict()
    assert d["energy"]["breakdown_j"]["sam"] == rep.breakdown["sam"]
    assert d["energy"]["sam_per_layer_j"] == {"lif": rep.breakdown["sam"]}
    assert any("SAM accumulator on lif" in a for a in d["assumptions"])


def test_readouts_cross_cores_with_hops(tmp_path):
    # 3 channels, 48 compartments a core, no population axons: one channel per core (cores
    # 0, 1, 2 at tiles (0,0), (1,0), (1,1)); every sum sits on core 0, so channel 1's
    # read-outs take one east-west hop and channel 2's one east-west and one north-south.
    t = small_target(tmp_path, 48, **{"population_axons = true": "population_axons = false"})
    g = conv_net(3)
    m = map_graph(g, t, sam=sam.SamSpec(("lif",)))
    assert [(c.layer, c.tile) for c in m.cores][:3] == [("lif", (0, 0)), ("lif", (1, 0)),
                                                       ("lif", (1, 1))]
    act, spikes, _ = counted(g, m, inputs(1))
    s = spikes.sum(axis=(0, 3, 4))  # (T, C): spikes per step and channel
    assert (s.sum(axis=0) > 5).all()
    sa = act.sam
    assert sa.syn_ops[:, 0].tolist() == (2 * s[:, 0] + s[:, 1] + s[:, 2]).tolist()
    assert sa.syn_ops[:, 1].tolist() == s[:, 1].tolist()
    assert sa.syn_ops[:, 2].tolist() == s[:, 2].tolist()
    assert sa.output_spikes[:, :3].tolist() == s.tolist()
    assert sa.hops_ew[:, :3].tolist() == np.stack([0 * s[:, 0], s[:, 1], s[:, 2]], 1).tolist()
    assert sa.hops_ns[:, :3].tolist() == np.stack([0 * s[:, 0], 0 * s[:, 1], s[:, 2]],
                                                  1).tolist()
    traces, sums = independent_updates(spikes)
    assert sa.active_updates[:, :3].sum(axis=1).tolist() == (traces + sums).tolist()
    assert sa.compartments.tolist() == [32, 16, 16, 0]
    rep = estimate(act, m, t)
    S, A, I = int(s.sum()), int(sa.active_updates.sum()), int(sa.inactive_updates.sum())
    S1, S2 = int(s[:, 1].sum()), int(s[:, 2].sum())
    hand = (2 * S * E_SYN + A * E_ACT + I * E_INACT + S * E_OUT + 2 * S * E_LOCAL
            + (S1 + S2) * E_EW + S2 * E_NS) / BATCH
    assert rep.breakdown["sam"] == pytest.approx(hand, rel=1e-12)
    # the read-outs cross tile boundaries: they add to the network's link loads
    alone = estimate(dataclasses.replace(act, sam=None), m, t)
    assert rep.time_breakdown_s["congestion"] > alone.time_breakdown_s["congestion"]
    assert map_graph(g, t).cores_used == 2  # without the accumulator lif fits one core


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_counts_equal_cpu(tmp_path):
    t = small_target(tmp_path, 48, **{"population_axons = true": "population_axons = false"})
    g = conv_net(3)
    m = map_graph(g, t, sam=sam.SamSpec(("lif",)))
    out = []
    for device in ("cpu", "cuda"):
        acc = Accountant(g, m, device=device)
        run(g, inputs(2), steps=STEPS, input_mode="spikes", observer=acc, device=device)
        out.append(acc.result().sam)
    for kind in ("syn_ops", "active_updates", "output_spikes", "hops_ew", "hops_ns"):
        assert getattr(out[0], kind).tolist() == getattr(out[1], kind).tolist(), kind


# ------------------------------------------------------------------------------ regression

#: Counts and cost of tests/mapping/test_sam_mapping.py's regression network (loihi2, 16
#: neurons a core, 2x2 one-core tiles), recorded before the SAM accumulator existed.
GOLDEN = {
    "spikes": {"l1": 701, "out": 60},
    "energy": {"total": 9.168781620030008e-07, "dynamic": 5.943365e-08,
               "static": 8.574445120030008e-07},
    "breakdown": {"synaptic": 4.2330533333333336e-08, "neuron": 1.6331000000000002e-08,
                  "spike_noc": 7.721166666666667e-10, "static": 8.574445120030008e-07},
    "time_per_step_s": 4.660024521755439e-07,
    "step_time_s": [3.7438118279569893e-07, 4.1546606651662914e-07, 4.737683920980245e-07,
                    4.708517254313578e-07, 5.005997874468616e-07, 4.883517254313578e-07,
                    5.037102525631408e-07, 5.008904851212803e-07],
    "syn_ops": [2419, 2419, 2419, 3505], "active": [336, 336, 336, 90],
    "messages": [391, 391, 391, 262, 269, 170],
}


def test_no_sam_costs_are_unchanged(tmp_path):
    text = (BUILTIN_DIR / "loihi2.toml").read_text()
    for old, new in {'name = "loihi2"': 'name = "loihi2-small"',
                     "neurons_per_core = 8192": "neurons_per_core = 16",
                     "cores_per_chip = 128": "cores_per_chip = 4",
                     "mesh_tiles = [8, 4]": "mesh_tiles = [2, 2]",
                     "cores_per_tile = 4": "cores_per_tile = 1"}.items():
        text = text.replace(old, new, 1)
    (tmp_path / "t.toml").write_text(text)
    t = load_target(tmp_path / "t.toml")
    rng = np.random.default_rng(7)
    g = Graph.chain([
        ("in", Input((2, 4, 4))),
        ("c1", QConv2d(weight=rng.integers(-40, 60, (3, 2, 3, 3)), padding=(1, 1))),
        ("l1", QCubaLIF(threshold=60, current_decay=2048, voltage_decay=1024)),
        ("fl", Flatten()), ("d", QDense(weight=rng.integers(-30, 40, (5, 48)))),
        ("out", QCubaLIF(threshold=80, current_decay=4096, voltage_decay=4096))])
    m = map_graph(g, t)
    x = (np.random.default_rng(1).random((3, 2, 4, 4, 8)) < 0.5).astype(np.int64)
    acc = Accountant(g, m)
    r = run(g, x, steps=8, input_mode="spikes", observer=acc)
    act = acc.result()
    rep = estimate(act, m, t)
    assert {k: v.sum().item() for k, v in r.spike_counts.items()} == GOLDEN["spikes"]
    assert act.syn_ops_total.sum(0).tolist() == GOLDEN["syn_ops"]
    assert act.active_updates.sum(0).tolist() == GOLDEN["active"]
    assert act.route_messages.sum(0).tolist() == GOLDEN["messages"]
    assert rep.energy_per_inference == pytest.approx(GOLDEN["energy"], rel=1e-12)
    assert list(rep.breakdown) == list(GOLDEN["breakdown"])
    assert rep.breakdown == pytest.approx(GOLDEN["breakdown"], rel=1e-12)
    assert rep.time_per_step_s == pytest.approx(GOLDEN["time_per_step_s"], rel=1e-12)
    assert rep.step_time_s == pytest.approx(GOLDEN["step_time_s"], rel=1e-12)
    assert act.sam is None and rep.sam_per_layer == {}
    doc = rep.to_dict()
    assert "sam_per_layer_j" not in doc["energy"] and "sam" not in doc["energy"]["mean_per_step_j"]
    assert all("sam_j" not in c for c in doc["per_core"])
    assert act.counting_rules == COUNTING_RULES


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def tiny_snn(tiny_twin_models):
    """A small BNTT CNN SNN on 8x8 digits (untrained) and its ANN twin (``snn``, ``snn_ann``)."""
    return tiny_twin_models


def test_compile_simulate_and_report(tiny_snn, tmp_path):
    from neurodeploy.compile import compile_model, read_compiled
    from neurodeploy.inference import evaluate
    from neurodeploy.reporting import build_report

    out = tmp_path / "c"
    doc = compile_model(tiny_snn / "snn", "loihi2", out, sam_layers="lif2", sam_gamma=0.5)
    assert doc["options"]["sam_layers"] == ["lif2"] and doc["options"]["sam_gamma"] == 0.5
    assert doc["sam"]["layers"] == ["lif2"] and doc["sam"]["extra_cores"] == 0
    comp = read_compiled(out)
    c, h, w = comp.graph.shapes["lif2"]
    mapping = json.loads((out / "mapping.json").read_text())
    row = next(r for r in mapping["per_layer"] if r["layer"] == "lif2")
    assert row["sam"]["compartments"] == c * h * w + h * w
    assert comp.mapping().sam_layers["lif2"]["channels"] == c

    sim = evaluate(out, "digits", 3)
    spikes = np.asarray(sim["spike_counts"]["lif2"], dtype=np.float64)
    counts = sim["activity"]["sam"]["per_layer"]["lif2"]
    assert spikes.sum() > 0
    assert counts["syn_ops"] == pytest.approx(2 * spikes.mean(), rel=1e-12)  # per inference
    energy = sim["cost"]["energy"]
    assert energy["breakdown_j"]["sam"] > 0
    assert energy["sam_per_layer_j"]["lif2"] == pytest.approx(energy["breakdown_j"]["sam"])
    assert sum(energy["breakdown_j"].values()) == pytest.approx(
        energy["per_inference_j"]["total"], rel=1e-9)

    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(
        {"format": "neurodeploy-simulation", "version": 1, **sim}))
    report = build_report(folder)
    assert report["energy"]["breakdown_j"]["sam"] == energy["breakdown_j"]["sam"]
    acc = report["sam"]["accumulator"]
    assert acc["layers"]["lif2"]["synops"] == counts["syn_ops"]
    assert acc["layers"]["lif2"]["energy_j"] == energy["sam_per_layer_j"]["lif2"]
    assert acc["sam_share"] == pytest.approx(
        energy["breakdown_j"]["sam"] / energy["per_inference_j"]["total"])
    html = sam.render_section(report)  # report.html's SAM section (run_sam checks the page)
    assert "SAM synops / inference" in html and "On-chip SAM accumulator on loihi2" in html
    assert "No SAM layers" not in html

    cj = json.loads((out / "compile.json").read_text())
    cj["options"]["sam_layers"] = "lif2"
    (out / "compile.json").write_text(json.dumps(cj))
    with pytest.raises(BadInputFileError, match="sam_layers must be a non-empty list"):
        read_compiled(out)


def test_compile_refuses_bad_sam_requests(tiny_snn, tmp_path):
    from neurodeploy.compile import compile_model

    out = tmp_path / "c"
    with pytest.raises(NeurodeployError, match="unknown layer.*lif9; conv spiking layers: "
                                               "lif1, lif2"):
        compile_model(tiny_snn / "snn", "loihi2", out, sam_layers=["lif9"])
    with pytest.raises(UnsupportedError, match="conv layers"):
        compile_model(tiny_snn / "snn", "loihi2", out, sam_layers=["lif_fc1"])
    with pytest.raises(UnsupportedError, match="loihi1 cannot run the on-chip SAM"):
        compile_model(tiny_snn / "snn", "loihi1", out, sam_layers=["lif2"])
    with pytest.raises(NeurodeployError, match="gamma"):
        compile_model(tiny_snn / "snn", "loihi2", out, sam_layers=["lif2"], sam_gamma=0)
    assert not out.exists()


def test_run_sam_reports_the_accumulator_cost(tiny_snn, tmp_path):
    out = tmp_path / "sam"
    doc = sam.run_sam(tiny_snn / "snn", "digits", 2, ["lif2"], 0.5, out, figures=0,
                      calib_samples=16)
    acc = doc["accumulator"]
    row = acc["layers"]["lif2"]
    assert acc["target"] == "loihi2" and acc["extra_cores"] == 0
    shape = doc["layers"][0]["shape"]
    assert row["compartments"] == doc["cost"]["lif2"]["compartments"] == \
        shape[0] * shape[1] * shape[2] + shape[1] * shape[2]
    assert row["spikes"] > 0 and row["synops"] == pytest.approx(2 * row["spikes"], rel=1e-12)
    assert 0 < row["energy_j"] == acc["sam_energy_per_inference_j"] < \
        acc["energy_per_inference_j"]
    assert json.loads((out / "sam.json").read_text())["accumulator"]["layers"]["lif2"] == row
    html = (out / "report.html").read_text()
    assert "SAM synops / inference" in html
    # where the accumulator does not fit, the maps are still made (hw_sim), without its cost
    text = (BUILTIN_DIR / "loihi2.toml").read_text()
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(text.replace('name = "loihi2"', 'name = "tiny"', 1)
                    .replace("neurons_per_core = 8192", "neurons_per_core = 2", 1))
    doc1 = sam.run_sam(tiny_snn / "snn", "digits", 1, ["lif2"], 0.5, tmp_path / "sam1",
                       figures=0, calib_samples=16, target=str(tiny))
    assert doc1["accumulator"] is None and (tmp_path / "sam1" / "sam.npz").is_file()
    assert any("no on-chip accumulator cost: layer lif2: one neuron with its SAM" in n
               for n in doc1["notes"])
