"""Dataset simulation of a compile folder, the report and the ANN comparison, end to end
through the CLI on the shipped demo CNN (compiled for loihi2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurodeploy.cli import main

DEMO = Path(__file__).resolve().parents[1] / "models" / "checkpoints"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rep")
    assert main(["compile", str(DEMO / "demo_cnn"), "--target", "loihi2", "--out",
                 str(root / "c"), "-q"]) == 0
    assert main(["simulate", str(root / "c"), "--data", "mnist5k", "--samples", "40",
                 "--batch", "16", "--out", str(root / "s"), "-q"]) == 0
    return root / "c", root / "s"


def test_dataset_simulation_matches_verify(simulated, one_thread) -> None:
    from neurodeploy.verify import verify

    compiled, sim = simulated
    doc = json.loads((sim / "summary.json").read_text())
    assert doc["format"] == "neurodeploy-simulation" and doc["samples"] == 40
    assert doc["steps"] == 6 and doc["pipeline_depth"] == 4
    # verify runs the same network through its own windows and read-out
    ver = verify(compiled, "mnist5k", 40, lava_samples=0, backends=("hw_sim",))
    hw = next(row for row in ver["stages"] if row["stage"] == "hw_sim") \
        if isinstance(ver["stages"], list) else ver["stages"]["hw_sim"]
    assert doc["accuracy"]["deployed"] == pytest.approx(hw["accuracy"])
    # per-layer spikes from the accountant equal hw_sim's own spike counts
    layers = doc["activity"]["per_layer"]
    for name, counts in doc["spike_counts"].items():
        assert layers[name]["output_spikes"] * 40 == pytest.approx(sum(counts))
    energy = doc["cost"]["energy"]["per_inference_j"]
    assert energy["total"] == pytest.approx(energy["dynamic"] + energy["static"])


def test_report_and_compare(simulated, tmp_path, capsys) -> None:
    from neurodeploy.report import load_report

    _, sim = simulated
    assert main(["report", str(sim), "-q"]) == 0
    out = capsys.readouterr().out
    assert "energy" in out and "vs ANN" in out
    doc = load_report(sim)
    stages = {row["stage"]: row["accuracy"] for row in doc["accuracy"]}
    assert set(stages) == {"deployed", "float (training)", "ann"}
    assert doc["mapping"]["cores_used"] == json.loads(
        (Path(json.loads((sim / "summary.json").read_text())["compiled"]) / "mapping.json")
        .read_text())["cores_used"]
    assert doc["ann_comparison"]["ann_model"].endswith("demo_cnn_ann")
    # the ANN's accuracy is measured on the SNN's 40 test samples, not the whole split
    from neurodeploy.models.checkpoint import load_checkpoint
    from neurodeploy.models.data import load_dataset, subset
    from neurodeploy.models.train import evaluate

    ann, _, _ = load_checkpoint(DEMO / "demo_cnn_ann" / "model.pt")
    same = evaluate(ann, subset(load_dataset("mnist5k", split="test"), 40))
    assert stages["ann"] == same
    html = (sim / "report.html").read_text()
    # self-contained: no scripts, no external resources (XML namespaces are only names)
    assert "<script" not in html and "<link" not in html
    assert 'src="http' not in html and "url(http" not in html
    plot = tmp_path / "cmp.png"
    assert main(["compare", str(sim), "--plot", str(plot), "-q"]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs(simulated, tmp_path, capsys) -> None:
    compiled, _ = simulated
    assert main(["report", str(compiled)]) == 2  # a compile folder is no simulation
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "simulation" in err[0]
    assert main(["simulate", "pilotnet", "--data", "mnist5k", "--out",
                 str(tmp_path / "x")]) == 2
    assert "compile folder" in capsys.readouterr().err
    assert main(["simulate", str(compiled), "--data", "digits", "--out",
                 str(tmp_path / "y"), "-q"]) == 2
    assert "shape" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
