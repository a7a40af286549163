"""Spike Activation Maps: the float reference against the worked examples of
``reference/algorithms.md`` §5.6 and a literal transcription of the authors' loop, the
fixed-point accumulator (decay table, worked integers, the error bound on random spike trains,
hw_sim observer against the numpy reference), the metrics on hand-computed maps, the
accumulator's cost, and ``run_sam`` end to end on a tiny zoo model (checkpoint and compile
folder) with its errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from neurodeploy import hw_sim, sam
from neurodeploy.errors import NeurodeployError, UnsupportedError
from neurodeploy.ir import Graph
from neurodeploy.ir.nodes import Flatten, Input, QConv2d, QCubaLIF, QDense
from neurodeploy.simulation import pipeline_depths

E = math.exp
# Example 1: one neuron, gamma 0.5, spikes at t = 1, 2, 5.
S1 = np.array([0, 1, 1, 0, 0, 1, 0], dtype=float)


def _one(train) -> np.ndarray:
    """A single-neuron spike train as (B=1, T, C=1, H=1, W=1)."""
    return np.asarray(train, dtype=float).reshape(1, -1, 1, 1, 1)


# ------------------------------------------------------------------------------------------
# Float reference: worked examples
# ------------------------------------------------------------------------------------------


def test_example1_all_modes():
    excl = [0, 0, 0.606531, 0.974410, 0.591010, 0.358465, 0.823951]
    incl = [0, 1.000000, 1.606531, 0.974410, 0.591010, 1.358465, 0.823951]
    offi = [1.000000, 1.606531, 1.974410, 1.420670, 0.997015, 1.604720, 1.023099]
    for mode, want in (("exclusive", excl), ("inclusive", incl), ("official", offi)):
        got = sam.ncs(_one(S1), 0.5, mode).ravel()
        np.testing.assert_allclose(got, want, atol=1e-6)
        # one channel: SAM = NCS * s
        np.testing.assert_allclose(sam.sam_map(_one(S1), 0.5, mode).ravel(),
                                   np.array(want) * S1, atol=1e-6)
    # closed forms
    n = sam.ncs(_one(S1), 0.5, "exclusive").ravel()
    assert n[2] == pytest.approx(E(-0.5))
    assert n[3] == pytest.approx(E(-1) + E(-0.5))
    assert n[5] == pytest.approx(E(-2) + E(-1.5))
    assert n[6] == pytest.approx(E(-2.5) + E(-2) + E(-0.5))
    w = sam.ncs(_one(S1), 0.5, "official").ravel()
    assert w[1] == pytest.approx(E(-0.5) + 1)
    assert w[5] == pytest.approx(3 * E(-2.5) + E(-2) + E(-1.5) + 1)


def test_example1b_official_breaks_shift_invariance():
    s = _one([1, 1, 0, 0, 1, 0])
    np.testing.assert_allclose(sam.ncs(s, 0.5, "inclusive").ravel(),
                               [1, 1.606531, 0.974410, 0.591010, 1.358465, 0.823951], atol=1e-6)
    np.testing.assert_allclose(sam.ncs(s, 0.5, "official").ravel(),
                               [1.000000, 1.606531, 1.342290, 1.037270, 1.629136, 1.070206],
                               atol=1e-6)
    # the paper modes are shift invariant: Example 1 is this train one step later
    np.testing.assert_allclose(sam.ncs(_one(S1), 0.5, "inclusive").ravel()[1:],
                               sam.ncs(s, 0.5, "inclusive").ravel(), atol=1e-12)


def _example3() -> np.ndarray:
    s = np.zeros((1, 3, 2, 2, 2))
    s[0, :, 0, 0, 0] = 1  # ch0 (0,0) at t = 0, 1, 2
    s[0, 2, 0, 0, 1] = 1  # ch0 (0,1) at t = 2
    s[0, 1:, 1, 0, 0] = 1  # ch1 (0,0) at t = 1, 2
    s[0, [0, 2], 1, 1, 0] = 1  # ch1 (1,0) at t = 0, 2
    return s


def test_example3_channel_sum_and_normalization():
    s = _example3()
    m = sam.sam_map(s, 0.5, "inclusive")[0, 2]
    np.testing.assert_allclose(m, [[3.580941, 1], [1.367879, 0]], atol=1e-6)
    np.testing.assert_allclose(m[0, 0], (1 + E(-0.5) + E(-1)) + (1 + E(-0.5)))
    np.testing.assert_allclose(sam.normalize(m), [[0.999721, 0.279178], [0.381882, 0]],
                               atol=1e-6)
    e = sam.sam_map(s, 0.5, "exclusive")[0, 2]
    np.testing.assert_allclose(e, [[1.580941, 0], [0.367879, 0]], atol=1e-6)
    np.testing.assert_allclose(sam.normalize(e), [[0.999368, 0], [0.232549, 0]], atol=1e-6)
    # inclusive = exclusive + the spike-count map
    np.testing.assert_allclose(m - e, s[0, 2].sum(axis=0))


def _official_loop(spikes: np.ndarray, gamma: float) -> np.ndarray:
    """The authors' main.py, transcribed: a list of spike tensors A[0..t] (batch 1),
    W = Σ_{t'≤t} exp(−γ(t − A[t']·t')), M = Σ_{b,k} W·A[t]."""
    history, maps = [], []
    for t in range(spikes.shape[1]):
        history.append(spikes[:, t])
        w = sum(np.exp(-gamma * (t - a * tp)) for tp, a in enumerate(history))
        maps.append((w * spikes[:, t]).sum(axis=(0, 1)))
    return np.stack(maps)


def test_official_mode_matches_the_authors_loop_per_sample():
    rng = np.random.default_rng(5)
    s = (rng.random((3, 9, 4, 3, 5)) < 0.35).astype(float)
    got = sam.sam_map(s, 0.7, "official")
    for b in range(3):  # the authors' code needs batch 1; each sample alone
        np.testing.assert_allclose(got[b], _official_loop(s[b:b + 1], 0.7), atol=1e-12)


def test_inputs_as_torch_and_list_of_steps():
    s = _example3()
    as_list = [torch.as_tensor(s[:, t]) for t in range(3)]
    np.testing.assert_array_equal(sam.sam_map(as_list), sam.sam_map(s))
    np.testing.assert_array_equal(sam.sam_map(torch.as_tensor(s)), sam.sam_map(s))
    out = sam.sam_float({"a": s, "b": as_list}, 0.5, "exclusive")
    assert set(out) == {"a", "b"} and out["a"].shape == (1, 3, 2, 2)


def test_normalize_and_upsample():
    np.testing.assert_array_equal(sam.normalize(np.zeros((2, 3, 4))), 0)
    np.testing.assert_allclose(sam.normalize(np.array([[1.0, 3.0]]), eps=0), [[0, 1]])
    up = sam.upsample(np.array([[0.0, 1.0], [0.0, 1.0]]), (2, 4))
    np.testing.assert_allclose(up, [[0, 0.25, 0.75, 1]] * 2)  # bilinear, align_corners=False


@pytest.mark.parametrize("bad", [0, -0.5, float("nan"), float("inf"), True, "0.5", None])
def test_gamma_must_be_positive(bad):
    with pytest.raises(NeurodeployError, match="gamma"):
        sam.sam_map(_one(S1), bad)


def test_bad_spikes_and_mode():
    with pytest.raises(NeurodeployError, match="batch, steps, channels"):
        sam.sam_map(np.zeros((2, 3, 4, 4)))
    with pytest.raises(NeurodeployError, match="0/1"):
        sam.sam_map(_one([0, 0.5, 1]))
    with pytest.raises(NeurodeployError, match="mode"):
        sam.sam_map(_one(S1), 0.5, "paper")


# ------------------------------------------------------------------------------------------
# Fixed point
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma,delta,dq,ncs_max", [(0.1, 390, 0.904785, 10.508),
                                                    (0.2, 742, 0.818848, 5.517),
                                                    (0.5, 1612, 0.606445, 2.542),
                                                    (1.0, 2589, 0.367920, 1.582)])
def test_decay_table(gamma, delta, dq, ncs_max):
    p = sam.SamFixedPoint(gamma)
    assert p.delta == delta == sam.decay_mantissa(gamma)
    assert p.d_q == pytest.approx(dq, abs=1e-6)
    assert 1 / (1 - p.d) == pytest.approx(ncs_max, abs=1e-3)
    assert p.max_trace <= 4096 / (1 - p.d_q)


def test_example2_fixed_trace_integers():
    np.testing.assert_array_equal(sam.fixed_trace(_one(S1)).ravel(),
                                  [0, 4096, 6580, 3990, 2419, 5562, 3373])
    np.testing.assert_array_equal(sam.fixed_trace(_one(S1), scale=64).ravel(),
                                  [0, 64, 102, 61, 36, 85, 51])
    err = np.abs(sam.fixed_trace(_one(S1)) / 4096 - sam.ncs(_one(S1))).max()
    assert err == pytest.approx(5.6e-4, abs=5e-5)
    assert err <= sam.error_bound(0.5, 4096)
    assert sam.error_bound(0.5, 4096) == pytest.approx(1.17e-3, abs=5e-6)
    assert sam.error_bound(0.5, 64) == pytest.approx(0.040, abs=1e-3)
    # exclusive maps: s·(q − A·s)
    np.testing.assert_array_equal(sam.sam_fixed(_one(S1), mode="exclusive").ravel(),
                                  [0, 0, 2484, 0, 0, 1466, 0])


@pytest.mark.parametrize("gamma", [0.05, 0.2, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("scale", [64, 4096])
def test_error_bound_holds_on_random_spike_trains(gamma, scale):
    rng = np.random.default_rng(int(gamma * 100) + scale)
    rates = rng.uniform(0.02, 1.0, size=(1, 1, 64, 4, 4))
    s = (rng.random((2, 300, 64, 4, 4)) < rates).astype(float)
    s[:, :, 0] = 1  # one channel fires every step: the trace's maximum
    err = np.abs(sam.fixed_trace(s, gamma, scale) / scale - sam.ncs(s, gamma)).max()
    bound = sam.error_bound(gamma, scale)
    assert err <= bound
    assert err > 0.25 * bound  # and the bound is not vacuous
    # maps: at most one neuron error per channel firing there
    on = sam.sam_fixed(s, gamma, "inclusive", scale) / scale
    check = sam.onchip_error(on, s, gamma, "inclusive", scale)
    assert check["within_bound"] and check["max_error_per_spike"] <= bound
    assert check["max_abs_error"] > bound  # several channels add up


def test_fixed_point_limits():
    with pytest.raises(NeurodeployError, match="too small"):
        sam.decay_mantissa(1e-5)
    with pytest.raises(NeurodeployError, match="24-bit"):
        sam.SamFixedPoint(0.0004, 4096)  # decay 2: trace up to 4096 * 2048 = 2**23
    with pytest.raises(NeurodeployError, match="scale"):
        sam.SamFixedPoint(0.5, 0)


def _tiny_graph(seed: int = 3) -> Graph:
    """Input (2,6,6) → conv → soft-reset LIF → conv → hard-reset LIF (with bias) → dense."""
    rng = np.random.default_rng(seed)
    return Graph.chain([
        ("in", Input(shape=(2, 6, 6))),
        ("c1", QConv2d(weight=rng.integers(-80, 80, (4, 2, 3, 3)), padding=1)),
        ("l1", QCubaLIF(threshold=150, current_decay=2048, voltage_decay=512,
                        reset="subtract")),
        ("c2", QConv2d(weight=rng.integers(-80, 80, (3, 4, 3, 3)), padding=1)),
        ("l2", QCubaLIF(threshold=140, current_decay=4096, voltage_decay=1024, bias=5,
                        bias_exp=3)),
        ("fl", Flatten()),
        ("d", QDense(weight=rng.integers(-50, 50, (5, 108)))),
        ("out", QCubaLIF(threshold=100)),
    ])


def test_hw_sim_accumulator_streams_the_reference(one_thread):
    g = _tiny_graph()
    rng = np.random.default_rng(1)
    x = (rng.random((2, 2, 6, 6, 12)) < 0.4).astype(np.int64)
    depths = pipeline_depths(g)
    starts = {"l1": depths["l1"], "l2": depths["l2"]}
    for mode in sam.ONCHIP_MODES:
        acc = sam.SamAccumulator(starts, gamma=0.5, mode=mode)
        res = hw_sim.run(g, x, steps=12, input_mode="spikes", observer=acc,
                         record={"l1": ["s"], "l2": ["s"]}, reset_interval=12)
        maps = acc.maps()
        for name, start in starts.items():
            s = np.moveaxis(res.traces[f"{name}.s"], -1, 1).astype(np.int64)
            assert 0.1 < s.mean() < 0.7  # the layer is active but not saturated
            s[:, :start] = 0  # the trace starts at the layer's depth
            np.testing.assert_array_equal(maps[name], sam.sam_fixed(s, 0.5, mode))
            assert not maps[name][:, :start].any()
            check = sam.onchip_error(acc.maps_ncs()[name], s, 0.5, mode)
            assert check["within_bound"]
    # only the traces (one per neuron) are kept between steps, no spike history
    assert {k: tuple(v.shape) for k, v in acc._q.items()} == {"l1": (2, 4, 6, 6),
                                                              "l2": (2, 3, 6, 6)}


def test_accumulator_errors():
    with pytest.raises(UnsupportedError, match="official"):
        sam.SamAccumulator(["l1"], mode="official")
    with pytest.raises(NeurodeployError, match="gamma"):
        sam.SamAccumulator(["l1"], gamma=0)
    acc = sam.SamAccumulator(["out"])
    g = _tiny_graph()
    x = np.zeros((1, 2, 6, 6, 3), dtype=np.int64)
    with pytest.raises(UnsupportedError, match="conv layer"):
        hw_sim.run(g, x, steps=3, input_mode="spikes", observer=acc)


def test_accumulator_cost():
    c = sam.accumulator_cost((32, 14, 14))
    assert c["compartments"] == 32 * 14 * 14 + 14 * 14 == 6468
    assert c["synops_per_spike"] == 2 and c["updates_per_step"] == 6468
    assert c["trace_bits"] == 14  # largest trace 10407 < 2**14
    assert c["sum_bits"] == 19  # 32 * 10407 = 333024 < 2**19
    assert c["memory_bits"] == 6272 * 14 + 196 * 19 + 2 * 6272 * 8 + 23
    with pytest.raises(NeurodeployError, match="conv layer"):
        sam.accumulator_cost((128,))


# ------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------


def test_agreement_and_drift():
    a = np.zeros((1, 4, 4))
    a[0, 0, 0] = 1.0
    b = np.zeros((1, 4, 4))
    b[0, 3, 3] = 2.0  # same shape of map, peak moved 3 rows and 3 columns
    same = sam.heatmap_agreement(a, a)
    assert same["l1"][0] == 0 and same["iou"][0] == 1 and same["peak_distance"][0] == 0
    diff = sam.heatmap_agreement(a, b)
    assert diff["iou"][0] == 0
    assert diff["peak_distance"][0] == pytest.approx(math.hypot(3, 3) / 4)
    assert diff["l1"][0] == pytest.approx((1 / 1.001 + 2 / 2.001) / 16)
    maps = np.random.default_rng(0).random((2, 3, 4, 4))
    d = sam.drift(maps, maps)
    assert d["l1"] == 0 and d["max_abs"] == 0 and d["relative_l1"] == 0 and d["iou"] == 1
    d2 = sam.drift(maps, 2 * maps)  # a scale: normalized maps agree, raw maps do not
    assert d2["l1"] == pytest.approx(0, abs=1e-3) and d2["relative_l1"] == pytest.approx(1)


def test_localization_error_by_hand():
    g = np.array([[[0.0, 1.0], [0.0, 0.0]]])  # Grad-CAM: normalized to [0, 0.999, 0, 0]
    good = np.array([[[[0.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]]])  # (1, T=2, 2, 2)
    le = sam.localization_error(good, g)
    p, q = 1 / 1.001, 1e-6  # normalized peak (clipped below 1 - 1e-6: no), and a clipped 0
    t0 = -(p * math.log(p) + (1 - p) * math.log(1 - p) + 3 * math.log(1 - q)) / 4
    t1 = -(math.log(1 - p) + p * math.log(q) + (1 - p) * math.log(1 - q)
           + 2 * math.log(1 - q)) / 4
    np.testing.assert_allclose(le["curve"][0], [t0, t1], rtol=1e-9)
    assert le["best_t"][0] == 0 and le["error"][0] == pytest.approx(t0)
    assert sam.heatmap_variance(good)[0] == pytest.approx(np.var([0, p, 0, 0]))


# ------------------------------------------------------------------------------------------
# run_sam end to end
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tiny_twin_models):
    """A small BNTT CNN SNN on 8x8 digits (untrained) and its ANN twin, as checkpoint folders
    ``snn`` and ``snn_ann``, and an MLP SNN without conv layers."""
    return tiny_twin_models


def test_run_sam_checkpoint_and_compile_folder(tiny_models, tmp_path, one_thread):
    from neurodeploy.compile import compile_model

    out = tmp_path / "sam"
    doc = sam.run_sam(tiny_models / "snn", "digits", 2, None, 0.5, out)
    assert doc["layers"][0]["layer"] == "lif1" and [r["layer"] for r in doc["layers"]] == [
        "lif1", "lif2"]
    assert sorted(p.name for p in out.iterdir()) == sorted(doc["files"])
    z = np.load(out / "sam.npz")
    assert z["lif1"].shape == (2, 4, 8, 8) and z["lif2"].shape == (2, 4, 4, 4)
    assert z["lif2.gradcam_ann"].shape == (2, 4, 4) and z["lif2.gradcam_snn"].shape == (2, 4, 4, 4)
    assert z["input"].shape == (2, 1, 8, 8)
    for row in doc["layers"]:
        name, c = row["layer"], row["shape"][0]
        on, ref = z[f"{name}.onchip"], z[f"{name}.deployed"]
        assert on.any()
        # the accumulator against the float SAM of the same (deployed) spikes: within the bound
        assert row["onchip"]["within_bound"]
        assert np.abs(on - ref).max() <= c * doc["bound"]
        assert row["onchip"]["max_abs_error"] == pytest.approx(np.abs(on - ref).max())
        assert 0 <= row["drift"]["l1"] < 0.5
        loc = row["localization"]
        assert set(loc) == {"sam", "sam_onchip", "snn_gradcam"}
        assert all(v["error"] > 0 for v in loc.values())
    saved = json.loads((out / "sam.json").read_text())
    assert saved["layers"][1]["onchip"] == doc["layers"][1]["onchip"]
    html = (out / "report.html").read_text()
    assert "Spike Activation Maps" in html and "lif2" in html
    report = json.loads((out / "report.json").read_text())
    assert report["sam"]["gamma"] == 0.5 and report["steps"] == 4
    assert (out / "sample_001.png").read_bytes()[:4] == b"\x89PNG"

    # the same model compiled to a folder: the same float and on-chip maps
    compiled = tmp_path / "compiled"
    compile_model(tiny_models / "snn", "loihi2", compiled, calib="digits")
    out2 = tmp_path / "sam2"
    doc2 = sam.run_sam(compiled, "digits", 2, ["lif2"], 0.5, out2, mode="exclusive")
    z2 = np.load(out2 / "sam.npz")
    assert [r["layer"] for r in doc2["layers"]] == ["lif2"] and "lif1" not in z2
    # exclusive = inclusive − spike-count map, for the float model and the deployed one
    np.testing.assert_allclose(z2["lif2"], z["lif2"] - _counts(z, "lif2", tiny_models),
                               atol=1e-12)
    counts = z["lif2.deployed"] - z2["lif2.deployed"]
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert counts.min() >= 0 and counts.max() <= 16 and counts.any()
    np.testing.assert_allclose(z["lif2.onchip"] - z2["lif2.onchip"], counts, atol=1e-9)
    assert doc2["layers"][0]["onchip"]["within_bound"]
    assert doc2["deployed"] == str(compiled)


def _counts(z, name, models):
    """Spike-count maps of the float model (inclusive − exclusive)."""
    from neurodeploy.models.checkpoint import load_checkpoint

    net, _, _ = load_checkpoint(models / "snn" / "model.pt")
    with torch.no_grad():
        _, rec = net.run(torch.as_tensor(z["input"]), record=True)
    return torch.stack(rec[name], dim=1).sum(dim=2).numpy()


def test_run_sam_errors(tiny_models, tmp_path):
    out = tmp_path / "o"
    with pytest.raises(NeurodeployError, match="unknown layer.*lif1, lif2"):
        sam.run_sam(tiny_models / "snn", "digits", 1, ["lif9"], 0.5, out)
    with pytest.raises(UnsupportedError, match="conv layers"):
        sam.run_sam(tiny_models / "snn", "digits", 1, "lif_fc1", 0.5, out)
    with pytest.raises(NeurodeployError, match="gamma"):
        sam.run_sam(tiny_models / "snn", "digits", 1, None, 0.0, out)
    with pytest.raises(UnsupportedError, match="no spiking layers"):
        sam.run_sam(tiny_models / "snn_ann", "digits", 1, None, 0.5, out)
    with pytest.raises(UnsupportedError, match="no spiking conv layers"):
        sam.run_sam(tiny_models / "mlp", "digits", 1, None, 0.5, out)
    with pytest.raises(NeurodeployError, match="output folder"):
        sam.run_sam(tiny_models / "snn", "digits", 1, None, 0.5, None)
    out.mkdir()
    (out / "mine.txt").write_text("x")
    with pytest.raises(NeurodeployError, match="did not write"):
        sam.run_sam(tiny_models / "snn", "digits", 1, None, 0.5, out)
    assert not (tmp_path / "o" / "sam.npz").exists()


def test_cli_sam_on_the_demo_checkpoint(tmp_path, capsys, one_thread) -> None:
    from neurodeploy.cli import main

    out = tmp_path / "sam"
    assert main(["sam", "--samples", "1", "--figures", "1", "--layers", "lif2",
                 "--out", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "lif2" in text and "bound" in text
    with np.load(out / "sam.npz") as z:
        assert z["lif2"].shape == (1, 6, 14, 14) and z["lif2.onchip"].shape == (1, 6, 14, 14)
    assert (out / "report.html").is_file() and (out / "sample_000.png").is_file()
    bad = tmp_path / "bad"
    assert main(["sam", "--gamma", "-1", "--out", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gamma" in err[0] and not bad.exists()
