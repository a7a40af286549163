"""The model-side commands end to end, in-process: train, convert, inspect of every model
format, targets; bad input exits 2 with one line and leaves no output folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neurodeploy.cli import main

NIR_DIR = Path(__file__).resolve().parent / "golden" / "nir"
DEMO = Path(__file__).resolve().parents[1] / "models" / "checkpoints"


pytestmark = pytest.mark.usefixtures("one_thread")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("neurodeploy: error: ")
    return err[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A tiny SNN and ANN twin trained for one epoch on digits through the CLI."""
    root = tmp_path_factory.mktemp("trained")
    common = ["--model", "mlp", "--data", "digits", "--epochs", "1", "--timesteps", "3",
              "--no-bntt", "-q"]
    assert main(["train", *common, "--out", str(root / "snn")]) == 0
    assert main(["train", *common, "--ann", "--out", str(root / "ann")]) == 0
    return {"snn": root / "snn", "ann": root / "ann"}


def test_train_writes_checkpoint_config_and_report(trained):
    for kind in ("snn", "ann"):
        out = trained[kind]
        report = json.loads((out / "train.json").read_text())
        assert report["test_accuracy"] > 0.5  # chance is 0.1
        assert report["config"]["kind"] == kind
        blob = torch.load(out / "model.pt", weights_only=True)
        assert blob["format"] == "neurodeploy-checkpoint"
        assert json.loads((out / "config.json").read_text())["arch"] == "mlp"


def test_train_hire_through_the_cli(tmp_path, capsys):
    """--hire N trains period-wise (2 optimizer steps per batch) and records the options."""
    out = tmp_path / "hire"
    common = ["--model", "mlp", "--data", "digits", "--epochs", "1", "--timesteps", "4",
              "--no-bntt", "-q"]
    assert main(["train", *common, "--hire", "2", "--hire-eps", "0.05", "--out", str(out)]) == 0
    report = json.loads((out / "train.json").read_text())
    assert report["hire"]["periods"] == 2 and report["hire"]["eps"] == 0.05
    assert report["hire"]["carry_state"] is True and report["hire"]["carry_noise"] is False
    batches = -(-report["data"]["train_samples"] // report["hyperparameters"]["batch_size"])
    assert report["optimizer_steps"] == 2 * batches
    capsys.readouterr()
    for bad, words in ((["--hire", "3"], "divide"), (["--hire-eps", "0.1"], "need --hire N"),
                       (["--hire", "2", "--hire-eps", "2"], "eps")):
        assert main(["train", *common, *bad, "--out", str(tmp_path / "bad")]) == 2
        line = _error_line(capsys)
        assert words in line, line
        assert not (tmp_path / "bad").exists()


def test_convert_the_trained_ann(trained, tmp_path, capsys):
    out = tmp_path / "conv"
    code = main(["convert", str(trained["ann"]), "--calib", "digits", "--calib-samples", "64",
                 "--steps", "5,20", "--eval-samples", "120", "--out", str(out), "-q"])
    assert code == 0
    text = capsys.readouterr().out
    assert "ANN accuracy" in text and "T=   20" in text
    report = json.loads((out / "conversion.json").read_text())
    assert set(report["thresholds"]) == {"relu_fc1"}
    assert [row["timesteps"] for row in report["snn_accuracy"]] == [5, 20]
    for name in ("snn.ir.h5", "accuracy_vs_timesteps.png", "model.pt"):
        assert (out / name).is_file()
    # the converted SNN is itself a model file inspect reads
    assert main(["inspect", str(out / "snn.ir.h5")]) == 0
    assert "IF" in capsys.readouterr().out


@pytest.mark.parametrize("path", [
    DEMO / "demo_cnn" / "model.pt",
    DEMO / "demo_cnn",  # a folder: the model file inside it
    NIR_DIR / "cnn_sinabs.nir",
])
def test_inspect_reads_every_format(path, capsys):
    if not path.exists():
        pytest.skip(f"{path} is absent")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Input" in out and ("LIF" in out or "IF" in out)


def test_inspect_onnx(tmp_path, capsys):
    from neurodeploy.frontends.onnx import export_onnx
    from neurodeploy.frontends.torch import from_torch
    from neurodeploy.models.checkpoint import load_checkpoint

    model, config, _ = load_checkpoint(DEMO / "demo_cnn_ann" / "model.pt")
    path = export_onnx(from_torch(model, in_shape=tuple(config["in_shape"])), tmp_path / "a.onnx")
    assert main(["inspect", str(path)]) == 0
    assert "ReLU" in capsys.readouterr().out


def test_demo_checkpoints_are_small_and_accurate():
    for name in ("demo_cnn", "demo_cnn_ann"):
        assert (DEMO / name / "model.pt").stat().st_size < 2 * 1024 * 1024
        assert json.loads((DEMO / name / "train.json").read_text())["test_accuracy"] >= 0.95


@pytest.mark.parametrize("args,message", [
    (["train", "--model", "vgg99"], "unknown model 'vgg99'"),
    (["train", "--data", "nope.npz"], "nope.npz"),
    (["train", "--data", "digits", "--leak", "1.5"], "leak"),
    (["convert", "missing.pt", "--calib", "digits"], "missing.pt: no such file"),
    (["inspect", "model.xyz"], "unsupported model file suffix"),
])
def test_bad_input_exits_2_without_output(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.xyz").write_text("not a model")
    out = tmp_path / "out"
    argv = [*args, "--out", str(out)] if args[0] != "inspect" else args
    assert main(argv) == 2
    line = _error_line(capsys)
    assert message in line
    assert not out.exists()


def test_convert_refuses_an_snn_checkpoint(trained, tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["convert", str(trained["snn"]), "--calib", "digits", "--out", str(out),
                 "-q"]) == 2
    assert "ann" in _error_line(capsys).lower()
    assert not out.exists()


def test_targets_lists_and_shows(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "loihi1" in out and "loihi2" in out and "edge-int8" in out
    assert main(["targets", "loihi1"]) == 0
    assert "Davies 2018 Table 2" in capsys.readouterr().out
    assert main(["targets", "loihi7"]) == 2
    assert "unknown target" in _error_line(capsys)


def test_compile_a_trained_checkpoint(trained, tmp_path, capsys):
    out = tmp_path / "compiled"
    assert main(["compile", str(trained["snn"]), "--target", "loihi2", "--calib", "digits",
                 "--out", str(out), "-q"]) == 0
    doc = json.loads((out / "compile.json").read_text())
    assert [row["step"] for row in doc["steps"]] == ["load", "quantize", "legalize", "map",
                                                     "write"]
    mapping = json.loads((out / "mapping.json").read_text())
    assert mapping["cores_used"] == doc["cores_used"] >= 2
    assert sum(row["neurons"] for row in mapping["per_core"]) == 256 + 10
    from neurodeploy.frontends.load import load_model

    fixed = load_model(out)  # the folder: its model.ir.h5
    assert fixed.stage == "fixed"
    assert "cores" in capsys.readouterr().out


def test_compile_the_demo_cnn(tmp_path):
    out = tmp_path / "demo"
    assert main(["compile", str(DEMO / "demo_cnn"), "--target", "loihi2", "--out", str(out),
                 "-q"]) == 0
    mapping = json.loads((out / "mapping.json").read_text())
    limits = mapping["limits_per_core"]
    for row in mapping["per_core"]:
        assert all(row[k] <= limits[k] for k in limits), row
    # every neuron on exactly one core: 16x28x28 + 32x14x14 + 128 + 10
    assert sum(row["neurons"] for row in mapping["per_core"]) == 12544 + 6272 + 128 + 10
    assert mapping["chips_used"] == 1


def test_compile_errors_before_writing(trained, tmp_path, capsys):
    out = tmp_path / "c"
    # soft reset on a target without programmable neurons
    assert main(["compile", str(trained["snn"]), "--target", "loihi1", "--out", str(out),
                 "-q"]) == 2
    assert "programmable neurons" in _error_line(capsys)
    # a target whose cores take fewer input axons than one hidden neuron's 64 inputs
    from neurodeploy.targets import BUILTIN_DIR

    small = tmp_path / "small.toml"
    small.write_text((BUILTIN_DIR / "loihi2.toml").read_text().replace(
        "input_axons_per_core = 4096", "input_axons_per_core = 32"))
    assert main(["compile", str(trained["snn"]), "--target", str(small), "--out", str(out),
                 "-q"]) == 2
    line = _error_line(capsys)
    assert "input axons" in line and "needs 64" in line and "has 32" in line
    assert main(["compile", str(trained["snn"]), "--target", "cpu", "--out", str(out)]) == 2
    assert "ANN device" in _error_line(capsys)
    assert not out.exists()
