"""The conversion API: a zoo ANN checkpoint (and the same ANN as ONNX) converted with digits
calibration; the output folder's files, their consistency with each other and with the ANN,
the zoo SNN checkpoint, atomic output and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy.backends import floatsim
from neurodeploy.conversion import OUTPUT_FILES, convert
from neurodeploy.errors import NeurodeployError, UnsupportedError
from neurodeploy.ir import IF, I
from neurodeploy.ir.serialize import load_graph
from neurodeploy.models import zoo
from neurodeploy.models.checkpoint import load_checkpoint, save_checkpoint
from neurodeploy.models.data import load_dataset
from neurodeploy.models.layers import LIF

STEPS = (5, 20, 60)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ann_checkpoint(tmp_path_factory) -> tuple[Path, torch.nn.Module, dict]:
    """A zoo MLP ANN (64-48-10, no bias) trained for about a second on digits."""
    torch.set_num_threads(1)
    train = load_dataset("digits", split="train")
    config = zoo.default_config("mlp", kind="ann", in_shape=tuple(train.in_shape), hidden=[48])
    torch.manual_seed(0)
    model = zoo.build_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):
        for i in range(0, len(train), 128):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(train.x[i:i + 128]),
                                              train.y[i:i + 128]).backward()
            opt.step()
    model.eval()
    path = tmp_path_factory.mktemp("ann") / "ann.pt"
    save_checkpoint(path, model, config)
    return path, model, config


@pytest.fixture(scope="module")
def converted(ann_checkpoint, tmp_path_factory) -> tuple[dict, Path]:
    path, _, _ = ann_checkpoint
    out = tmp_path_factory.mktemp("conv") / "out"
    torch.set_num_threads(1)
    result = convert(path, out_dir=out, calib="digits", calib_samples=256, steps=STEPS,
                     progress=False)
    return result, out


def test_output_files_and_json(converted, ann_checkpoint):
    result, out = converted
    _, model, _ = ann_checkpoint
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    data = json.loads((out / "conversion.json").read_text())
    assert data["format"] == "neurodeploy-conversion" and data["version"] == 1
    assert data["settings"]["method"] == "max" and data["settings"]["calib_samples"] == 256
    assert data["settings"]["calib_steps"] == 60 and data["settings"]["steps"] == list(STEPS)
    assert [p["timesteps"] for p in data["snn_accuracy"]] == list(STEPS)
    assert data["files"] == ["snn.ir.h5", "conversion.json", "accuracy_vs_timesteps.png",
                             "model.pt"]
    assert result["out_dir"] == str(out)
    # the ANN accuracy is the torch model's on the digits test split
    test = load_dataset("digits", split="test")
    with torch.no_grad():
        torch_acc = float((model(test.x).argmax(1) == test.y).float().mean())
    assert data["ann_accuracy"] == pytest.approx(torch_acc, abs=1.5 / len(test))
    assert data["ann_accuracy"] > 0.85
    snn_acc = {p["timesteps"]: p["accuracy"] for p in data["snn_accuracy"]}
    assert snn_acc[60] >= data["ann_accuracy"] - 0.05, (snn_acc, data["ann_accuracy"])
    assert snn_acc[60] > snn_acc[5]
    png = (out / "accuracy_vs_timesteps.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not list(out.parent.glob(".out.*"))  # no temporary folders left


def test_ir_file_matches_json_and_accuracy(converted):
    result, out = converted
    snn = load_graph(out / "snn.ir.h5")
    ifs = {n: float(node.v_threshold) for n, node in snn.nodes.items() if isinstance(node, IF)}
    assert ifs == result["thresholds"] and list(ifs) == ["relu_fc1"]
    assert isinstance(snn.nodes["acc"], I) and snn.metadata["timesteps"] == 60
    assert snn.metadata["conversion"]["thresholds"] == result["thresholds"]
    # the saved SNN reproduces the reported accuracy at T = 20
    test = load_dataset("digits", split="test")
    v = floatsim.forward(snn, test.x, 20).numpy()
    acc20 = float((v.argmax(1) == test.y.numpy()).mean())
    assert acc20 == pytest.approx(result["snn_accuracy"][1]["accuracy"])


def test_zoo_snn_checkpoint(converted):
    result, out = converted
    model, config, metrics = load_checkpoint(out / "model.pt")
    assert config["kind"] == "snn" and config["leak"] == 1.0 and config["reset"] == "subtract"
    assert config["timesteps"] == 60 and config["encoder"] == "direct"
    lifs = {n: float(m.threshold) for n, m in model.body.named_modules() if isinstance(m, LIF)}
    assert lifs == pytest.approx({"lif_fc1": result["thresholds"]["relu_fc1"]})
    assert metrics["thresholds"] == pytest.approx({"lif_fc1": result["thresholds"]["relu_fc1"]})
    info = result["zoo_checkpoint"]
    assert info["written"] and info["check"]["prediction_agreement"] == 1.0
    # the zoo SNN (float64) gives the IR SNN's logits: accumulator / T
    test = load_dataset("digits", split="test")
    snn = load_graph(out / "snn.ir.h5")
    x = test.x[:40].double()
    with torch.no_grad():
        logits = model.double()(x, 20).numpy()
    ir = floatsim.forward(snn, x, 20).numpy() / 20
    np.testing.assert_allclose(logits, ir, rtol=0, atol=1e-9)


def test_onnx_source_gives_same_thresholds(converted, ann_checkpoint, tmp_path):
    from neurodeploy.frontends.onnx import export_onnx
    from neurodeploy.frontends.torch import from_torch

    result, _ = converted
    _, model, config = ann_checkpoint
    onnx_path = tmp_path / "ann.onnx"
    export_onnx(from_torch(model, in_shape=tuple(config["in_shape"])), onnx_path)
    res = convert(onnx_path, out_dir=tmp_path / "o", calib="digits", calib_samples=256,
                  steps=(20,), calib_steps=60, progress=False)
    assert res["thresholds"] == pytest.approx(result["thresholds"], rel=1e-6)
    assert res["ann_accuracy"] == pytest.approx(result["ann_accuracy"])
    assert not res["zoo_checkpoint"]["written"] and "zoo" in res["zoo_checkpoint"]["reason"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted(OUTPUT_FILES[:3])


def test_out_dir_rules(converted, ann_checkpoint, tmp_path):
    _, out = converted
    path, _, _ = ann_checkpoint
    with pytest.raises(NeurodeployError, match="not empty"):
        convert(path, out_dir=out, calib="digits", steps=(5,), progress=False)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(NeurodeployError, match="did not write"):
        convert(path, out_dir=foreign, calib="digits", steps=(5,), overwrite=True,
                progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    # overwrite=True replaces a previous conversion
    again = tmp_path / "again"
    convert(path, out_dir=again, calib="digits", calib_samples=32, steps=(3,), progress=False)
    res = convert(path, out_dir=again, calib="digits", calib_samples=32, steps=(4,),
                  method="p99.9", overwrite=True, progress=False)
    data = json.loads((again / "conversion.json").read_text())
    assert data["settings"]["method"] == "p99.9" and data["settings"]["steps"] == [4]
    assert res["settings"] == data["settings"]


def test_failures_leave_nothing(ann_checkpoint, tmp_path):
    path, _, _ = ann_checkpoint
    bad = tmp_path / "wrong.npz"
    rng = np.random.default_rng(0)
    np.savez(bad, x=rng.random((40, 1, 4, 4)), y=np.arange(40) % 10)
    out = tmp_path / "nested" / "out"
    with pytest.raises(NeurodeployError, match=r"shape \(1, 4, 4\).*takes \(1, 8, 8\)"):
        convert(path, out_dir=out, calib=bad, steps=(5,), progress=False)
    assert not (tmp_path / "nested").exists()
    with pytest.raises(UnsupportedError, match="p50"):
        convert(path, out_dir=out, calib="digits", method="p50", steps=(5,), progress=False)
    assert not (tmp_path / "nested").exists()


def test_snn_checkpoint_is_refused(tmp_path):
    config = zoo.default_config("mlp", kind="snn", in_shape=(1, 8, 8), hidden=[8])
    path = tmp_path / "snn.pt"
    save_checkpoint(path, zoo.build_model(config), config)
    with pytest.raises(UnsupportedError, match="holds an SNN") as info:
        convert(path, out_dir=tmp_path / "out", calib="digits", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
