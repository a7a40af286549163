"""Tests of ``neurodeploy.verify``: a small zoo MLP trained briefly on ``digits``, compiled for
loihi2, then verified stage by stage (float, quantized, hw_sim, Lava), with independent
recomputations of the accuracy, the aligned spike counts and the agreement; corrupted stages
must fail with the right first divergent layer; bad inputs raise one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy import verify as verify_mod
from neurodeploy.errors import BadInputFileError, NeurodeployError
from neurodeploy.ir import QDense
from neurodeploy.verify import exit_code, format_table, verify

T = 4
HIDDEN = [32, 32]  # two spiking layers: lif_fc1 -> fc2 -> lif_fc2 -> out -> acc


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``{model dir}/model.pt`` trained two epochs on digits (train.json records the data) and
    its compile folder for loihi2 (calibrated on digits)."""
    from neurodeploy.compile import compile_model
    from neurodeploy.models.data import load_splits
    from neurodeploy.models.train import train
    from neurodeploy.models.zoo import default_config

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("verify")
        tr, te = load_splits("digits")
        cfg = default_config("mlp", in_shape=tr.in_shape, num_classes=tr.num_classes,
                             timesteps=T, hidden=HIDDEN)
        train(cfg, (tr, te), out_dir=root / "model", epochs=2, batch_size=32, lr=3e-3, seed=0,
              progress=False)
        compile_model(root / "model" / "model.pt", "loihi2", root / "compiled", calib="digits",
                      calib_samples=64)
    finally:
        torch.set_num_threads(before)
    return root / "compiled"


def _copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


def _pair(result: dict, a: str, b: str) -> dict:
    return next(p for p in result["pairs"] if p["stages"] == [a, b])


def _row(pair: dict, layer: str) -> dict:
    return next(r for r in pair["layers"] if r["layer"] == layer)


def _negated_fc2(graph):
    """The graph with fc2's mantissas negated (lif_fc2's input flips sign)."""
    node = graph.nodes["fc2"]
    assert isinstance(node, QDense)
    w = np.clip(-np.asarray(node.weight), -256, 254)
    return graph.replace_node("fc2", node.replace(weight=w))


# ============================================================================================
# A good folder: every stage, Lava for real
# ============================================================================================


@pytest.mark.lava
def test_stages_agree_and_match_independent_runs(compiled: Path, lava, one_thread) -> None:
    from neurodeploy import hw_sim
    from neurodeploy.backends import floatsim
    from neurodeploy.frontends.load import load_model
    from neurodeploy.ir.serialize import load_graph
    from neurodeploy.models.checkpoint import load_checkpoint
    from neurodeploy.models.data import load_dataset, subset
    from neurodeploy.passes.quantize import quantize_inputs

    n = 60
    result = verify(compiled, samples=n, lava_samples=2)  # data: digits, from train.json
    json.dumps(result, allow_nan=False)  # JSON-able as promised
    assert result["data"] == "digits" and result["samples"] == n and result["timesteps"] == T
    assert result["layers"] == ["lif_fc1", "lif_fc2", "acc"]
    assert result["pipeline_depth"] == 3  # fc1, fc2, out
    assert [s["status"] for s in result["stages"].values()] == ["ran"] * 4
    assert result["stages"]["lava"]["samples"] == 2
    assert result["stale_nodes"] == []
    assert [p["stages"] for p in result["pairs"]] == [
        ["float", "quantized"], ["quantized", "hw_sim"], ["hw_sim", "lava"]]

    # fixed-point stages: bit for bit on every layer and value
    for a, b, samples in (("quantized", "hw_sim", n), ("hw_sim", "lava", 2)):
        pair = _pair(result, a, b)
        assert pair["exact"] and pair["agree"] and pair["first_divergence"] is None
        assert pair["samples"] == samples
        for row in pair["layers"]:
            assert row["agreement"] == 1.0 and row["first_step"] is None
            assert row["values"] == samples * row["neurons"] * T
        assert _row(pair, "acc")["max_abs_diff"] == 0.0
    assert result["ok"] and exit_code(result) == 0
    assert "OK" in format_table(result)

    # float vs quantized: reported, not failed; spikes differ a little, accuracy close
    fq = _pair(result, "float", "quantized")
    assert not fq["exact"]
    agreements = [r["agreement"] for r in fq["layers"] if r["kind"] == "spikes"]
    assert min(agreements) < 1.0 and min(agreements) > 0.9
    first = next(r for r in fq["layers"] if r["agreement"] < 1.0)
    assert fq["first_divergence"]["layer"] == first["layer"]
    assert fq["first_divergence"]["agreement"] == first["agreement"]
    acc = {s: result["stages"][s]["accuracy"] for s in ("float", "quantized", "hw_sim")}
    assert acc["float"] > 0.5  # trained, well above chance (0.1)
    assert abs(acc["float"] - acc["quantized"]) <= 0.05
    assert acc["quantized"] == acc["hw_sim"]

    # independent: the torch model (float64) on the same subset gives the float accuracy
    data = subset(load_dataset("digits", split="test"), n)
    model, _, _ = load_checkpoint(compiled.parent / "model" / "model.pt")
    with torch.no_grad():
        logits = model.double()(data.x.double())
    torch_correct = int((logits.argmax(1) == data.y).sum())
    assert abs(result["stages"]["float"]["correct"] - torch_correct) <= 1

    # independent: spike counts and agreement of lif_fc2 from direct runs, aligned by hand
    stored = load_graph(compiled / "model.ir.h5")
    x = data.x.numpy().astype(np.float64)
    q = quantize_inputs(stored, x, steps=T)
    q = np.concatenate([q, np.zeros((*q.shape[:-1], 3), dtype=np.int64)], axis=-1)
    hw = hw_sim.run(stored, q, steps=T + 3, input_mode="spikes", record={"lif_fc2": ["s"]})
    fl = floatsim.run(load_model(compiled.parent / "model" / "model.pt"), x, T,
                      record={"lif_fc2": ["s"]})
    s_hw = hw.traces["lif_fc2.s"][..., 2:2 + T]  # lif_fc2 sits behind fc1 and fc2: depth 2
    s_fl = fl.traces["lif_fc2.s"]
    row = _row(fq, "lif_fc2")
    assert row["spikes"] == {"float": int(s_fl.sum()), "quantized": int(s_hw.sum())}
    assert row["agreement"] == pytest.approx(float(np.mean(s_fl == s_hw)), abs=1e-12)
    assert _row(_pair(result, "quantized", "hw_sim"), "lif_fc2")["spikes"]["hw_sim"] == \
        int(s_hw.sum())


# ============================================================================================
# A residual block (relay channels) with Poisson input, from a hand-made float IR
# ============================================================================================


def _residual_ir(path: Path) -> Path:
    """input → fc0 → lif0 → fc1 → lif1 → fc2 ─┐
                        └──── skip ─────────── add → lif2 → out → acc   (Poisson input)"""
    from neurodeploy.ir import LIF, Add, Affine, Flatten, Graph, I, Input, Linear
    from neurodeploy.ir.serialize import save_graph

    rng = np.random.default_rng(0)
    lam = 0.9

    def lif() -> LIF:
        return LIF(tau=np.array(1 / (1 - lam)), r=np.array(1 / (1 - lam)),
                   v_leak=np.array(0.0), v_threshold=np.array(1.0), reset="zero")

    def lin(o: int, i: int) -> Linear:
        return Linear(weight=rng.normal(0, 0.5, (o, i)))

    nodes = {"input": Input(shape=(1, 8, 8)), "flatten": Flatten(),
             "fc0": Affine(weight=rng.normal(0, 0.3, (16, 64)), bias=np.zeros(16)),
             "lif0": lif(), "fc1": lin(16, 16), "lif1": lif(), "fc2": lin(16, 16),
             "skip": lin(16, 16), "add": Add(), "lif2": lif(), "out": lin(10, 16),
             "acc": I(r=np.array(1.0))}
    edges = [("input", "flatten"), ("flatten", "fc0"), ("fc0", "lif0"), ("lif0", "fc1"),
             ("fc1", "lif1"), ("lif1", "fc2"), ("lif0", "skip"), ("fc2", "add"),
             ("skip", "add"), ("add", "lif2"), ("lif2", "out"), ("out", "acc")]
    graph = Graph(nodes, tuple(edges), {"timesteps": T, "encoder": "poisson",
                                        "encoder_rescale": 1.0, "dt": 1.0}).validate()
    save_graph(graph, path)
    return path


@pytest.mark.lava
def test_residual_relays_and_poisson_input(tmp_path: Path, lava, one_thread) -> None:
    from neurodeploy.compile import compile_model
    from neurodeploy.ir.serialize import load_graph

    source = _residual_ir(tmp_path / "snn.ir.h5")
    compile_model(source, "loihi2", tmp_path / "c", calib="digits", calib_samples=64)
    assert load_graph(tmp_path / "c" / "model.ir.h5").shapes["lif1"] == (32,)  # 16 relays
    result = verify(tmp_path / "c", data="digits", samples=40, lava_samples=1)
    assert result["encoding"] == "poisson" and result["stale_nodes"] == []
    assert [p["stages"] for p in result["pairs"]] == [
        ["float", "quantized"], ["quantized", "hw_sim"], ["hw_sim", "lava"],
        ["float", "hw_sim"]]
    qh = _pair(result, "quantized", "hw_sim")
    assert not qh["exact"] and "relay" in qh["note"]
    # upstream of the join the graphs are the same (relay channels left out: 16 neurons) ...
    for name in ("lif0", "lif1"):
        row = _row(qh, name)
        assert row["agreement"] == 1.0 and row["neurons"] == 16
    # ... at the join the relays remove the quantized graph's one-step skew of the skip path
    assert qh["first_divergence"]["layer"] == "lif2"
    fq, fh = _pair(result, "float", "quantized"), _pair(result, "float", "hw_sim")
    assert _row(fh, "lif2")["agreement"] > _row(fq, "lif2")["agreement"] + 0.05
    # the same Poisson trains reach float and fixed graphs: the first layer nearly agrees
    assert _row(fq, "lif0")["agreement"] > 0.97
    hl = _pair(result, "hw_sim", "lava")
    assert hl["exact"] and hl["agree"] and _row(hl, "lif1")["neurons"] == 32
    assert exit_code(result) == 0  # the relay pair is reported, not required


# ============================================================================================
# Corrupted stages
# ============================================================================================


def test_corrupted_ir_fails_and_names_the_layer(compiled: Path, tmp_path: Path,
                                                one_thread) -> None:
    from neurodeploy.ir.serialize import load_graph, save_graph

    bad = _copy(compiled, tmp_path / "bad")
    save_graph(_negated_fc2(load_graph(bad / "model.ir.h5")), bad / "model.ir.h5")
    result = verify(bad, samples=30, backends=("quantized", "hw_sim"))
    assert result["stale_nodes"] == ["fc2"]
    assert any("fc2" in note for note in result["notes"])
    pair = _pair(result, "quantized", "hw_sim")
    assert pair["exact"] and not pair["agree"]
    fd = pair["first_divergence"]
    assert fd["layer"] == "lif_fc2" and fd["agreement"] < 1.0 and fd["count_diff"] != 0
    assert _row(pair, "lif_fc1")["agreement"] == 1.0  # upstream of the change: untouched
    assert not result["ok"] and exit_code(result) == 1
    assert "MISMATCH" in format_table(result)


@pytest.mark.lava
def test_hw_sim_only_perturbation_disagrees_with_lava(compiled: Path, lava, monkeypatch,
                                                      one_thread) -> None:
    real = verify_mod._stage_graph
    monkeypatch.setattr(verify_mod, "_stage_graph", lambda stage, graph: _negated_fc2(graph)
                        if stage == "hw_sim" else real(stage, graph))
    result = verify(compiled, samples=1, lava_samples=1, backends=("hw_sim", "lava"))
    assert result["stages"]["float"]["status"] == "skipped"
    pair = _pair(result, "hw_sim", "lava")
    assert pair["exact"] and not pair["agree"]
    assert pair["first_divergence"]["layer"] == "lif_fc2"
    assert _row(pair, "lif_fc1")["agreement"] == 1.0
    assert exit_code(result) == 1


def test_exit_code_reads_only_exact_pairs() -> None:
    pairs = [{"stages": ["float", "quantized"], "exact": False, "agree": False}]
    assert exit_code({"pairs": pairs}) == 0
    pairs.append({"stages": ["hw_sim", "lava"], "exact": True, "agree": False})
    assert exit_code({"pairs": pairs}) == 1


def test_netx_folder_skips_float_stages(lavadl_netx_dir: Path, tmp_path: Path,
                                        one_thread) -> None:
    from neurodeploy.compile import compile_model

    compile_model(lavadl_netx_dir / "mnist.net", "loihi2", tmp_path / "c")
    with pytest.raises(NeurodeployError, match="records no training dataset"):
        verify(tmp_path / "c", lava_samples=0)
    # mnist5k images (1, 28, 28) feed the network's flat (784,) input
    result = verify(tmp_path / "c", data="mnist5k", samples=8, lava_samples=0)
    assert result["timesteps"] == 16  # netx's tSample
    assert [result["stages"][s]["status"] for s in ("float", "quantized", "hw_sim", "lava")] \
        == ["skipped", "skipped", "ran", "skipped"]
    assert "fixed-point model" in result["stages"]["float"]["reason"]
    assert result["pairs"] == [] and exit_code(result) == 0
    assert any("no pair" in note for note in result["notes"])
    assert 0.0 <= result["stages"]["hw_sim"]["accuracy"] <= 1.0


def test_missing_lava_is_a_clear_error(compiled: Path, monkeypatch) -> None:
    from neurodeploy.backends import lava as lava_backend
    from neurodeploy.errors import MissingExtraError

    def no_lava(name: str):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(lava_backend, "_import_module", no_lava)
    with pytest.raises(MissingExtraError, match=r"Lava backend needs.*--lava-samples 0"):
        verify(compiled, samples=2, backends=("hw_sim", "lava"))
    result = verify(compiled, samples=2, lava_samples=0, backends=("hw_sim", "lava"))
    assert result["stages"]["lava"] == {"status": "skipped", "reason": "lava_samples=0"}


# ============================================================================================
# Bad input
# ============================================================================================


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(NeurodeployError, match="samples must be a positive integer"):
        verify(tmp_path, samples=0)
    with pytest.raises(NeurodeployError, match="lava_samples"):
        verify(tmp_path, lava_samples=-1)
    with pytest.raises(NeurodeployError, match="unknown stage.*'gpu'"):
        verify(tmp_path, backends=("hw_sim", "gpu"))
    with pytest.raises(BadInputFileError, match="no such folder"):
        verify(tmp_path / "nope")
    with pytest.raises(BadInputFileError, match="not a compile folder"):
        verify(tmp_path)


def test_bad_folders(compiled: Path, tmp_path: Path) -> None:
    broken = _copy(compiled, tmp_path / "no_ir")
    (broken / "model.ir.h5").unlink()
    with pytest.raises(BadInputFileError, match=r"model\.ir\.h5: no such file"):
        verify(broken)
    garbled = _copy(compiled, tmp_path / "garbled")
    (garbled / "compile.json").write_text("{not json")
    with pytest.raises(BadInputFileError, match="not valid JSON"):
        verify(garbled)
    moved = _copy(compiled, tmp_path / "moved")
    doc = json.loads((moved / "compile.json").read_text())
    doc["model"] = str(tmp_path / "gone" / "model.pt")
    (moved / "compile.json").write_text(json.dumps(doc))
    with pytest.raises(BadInputFileError, match="source model of the compile not found"):
        verify(moved)
    with pytest.raises(NeurodeployError, match="records no training dataset"):
        verify(moved, backends=("hw_sim",))


def test_bad_data(compiled: Path, tmp_path: Path) -> None:
    with pytest.raises(NeurodeployError, match="unknown dataset 'nosuchdata'"):
        verify(compiled, data="nosuchdata", backends=("hw_sim",))
    x = np.random.default_rng(0).random((20, 3, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "rgb.npz", x=x, y=np.arange(20) % 2)
    with pytest.raises(NeurodeployError, match=r"shape \(3, 4, 4\).*takes \(1, 8, 8\)"):
        verify(compiled, data=str(tmp_path / "rgb.npz"), backends=("hw_sim",))


def test_errors_are_one_line(compiled: Path, tmp_path: Path) -> None:
    for call in (lambda: verify(tmp_path), lambda: verify(compiled, samples=-3),
                 lambda: verify(compiled, data="nosuchdata", backends=("hw_sim",))):
        with pytest.raises(NeurodeployError) as info:
            call()
        assert "\n" not in str(info.value)


def test_cli_verify_exit_codes(compiled: Path, tmp_path: Path, capsys, one_thread) -> None:
    from neurodeploy.cli import main

    out = tmp_path / "v.json"
    assert main(["verify", str(compiled), "--data", "digits", "--samples", "8",
                 "--lava-samples", "0", "--out", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["ok"] and "quantized vs hw_sim" in capsys.readouterr().out
    bad = _copy(compiled, tmp_path / "bad")
    from neurodeploy.ir.serialize import load_graph, save_graph

    save_graph(_negated_fc2(load_graph(bad / "model.ir.h5")), bad / "model.ir.h5")
    assert main(["verify", str(bad), "--data", "digits", "--samples", "8",
                 "--lava-samples", "0", "-q"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "nope"), "--data", "digits", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
