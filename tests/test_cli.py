"""Tests of the ``neurodeploy`` command line, run in-process through ``neurodeploy.cli.main``.

A small fixed-point network (bias input layer, conv, dense) is written as a netx file by a
fixture; the built-in examples (lava-dl's files) are used where lava-dl is installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neurodeploy.cli import main
from neurodeploy.ir import Flatten, Graph, Input, QConv2d, QCubaLIF, QDense

HAVE_LAVA_DL = importlib.util.find_spec("lava") is not None and sys.version_info[:2] == (3, 10)
needs_lava_dl = pytest.mark.skipif(
    not HAVE_LAVA_DL and not os.environ.get("CI"),
    reason="lava-dl (Python 3.10) not installed; CI=true makes this fail instead",
)


@pytest.fixture(scope="module")
def small_net(tmp_path_factory) -> Path:
    """A netx file: input (C, H, W) = (2, 5, 4) → 3x3 conv to 3 channels → dense to 6."""
    from neurodeploy.frontends.netx import write_netx

    rng = np.random.default_rng(0)
    graph = Graph.chain([
        ("in", Input(shape=(2, 5, 4))),
        ("inp", QCubaLIF(threshold=40, current_decay=4096, voltage_decay=512, bias_exp=6)),
        # even conv weights keep this file about the CLI: whether the lowest bit of 8-bit mixed
        # conv weights is truncated (as Lava's Dense does) is for the backends' own tests
        ("conv_syn", QConv2d(weight=2 * rng.integers(-30, 60, (3, 2, 3, 3)), padding=1)),
        ("conv", QCubaLIF(threshold=60, current_decay=1024, voltage_decay=256, bias_exp=6)),
        ("flat", Flatten()),
        ("fc_syn", QDense(weight=rng.integers(-80, 120, (6, 60)))),
        ("fc", QCubaLIF(threshold=50, current_decay=2048, voltage_decay=128, bias_exp=6)),
    ])
    path = tmp_path_factory.mktemp("net") / "small.net"
    write_netx(graph, path)
    return path


@pytest.fixture
def bias_input(tmp_path) -> Path:
    """One bias sample in netx layout (W, H, C) = (4, 5, 2)."""
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(1).integers(0, 80, (4, 5, 2)).astype(np.int32))
    return path


def run_cli(*args: object) -> int:
    return main([str(a) for a in args])


# ---------------------------------------------------------------------------- simulate


def test_simulate_writes_traces_and_summary(small_net, bias_input, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("simulate", small_net, "--input", bias_input, "--steps", 6, "--out", out) == 0
    captured = capsys.readouterr()
    assert "spikes/sample" in captured.out and "simulating 1 sample" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "trace.npz"]
    with np.load(out / "trace.npz") as npz:
        layers = ["input0", "conv1", "dense3"]
        assert list(npz.files) == [f"{n}.{q}" for n in layers for q in "uvs"]
        # netx layout (W, H, C), time last, no batch axis for a single sample
        assert npz["input0.u"].shape == (4, 5, 2, 6)
        assert npz["conv1.s"].shape == (4, 5, 3, 6)
        assert npz["dense3.v"].shape == (6, 6)
        spikes = {n: int(npz[f"{n}.s"].sum()) for n in layers}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "hw_sim" and summary["steps"] == 6
    assert summary["samples"] == 1 and summary["batched"] is False
    assert summary["layers"] == layers and summary["input_mode"] == "bias"
    assert summary["reset_interval"] is None
    assert summary["sim_time_s"] >= 0 and summary["load_time_s"] >= 0
    assert summary["model"] == str(small_net)
    for name in layers:
        assert summary["spike_counts"][name]["total"] == spikes[name]
        assert summary["spike_counts"][name]["per_sample"] == [spikes[name]]
    assert spikes["input0"] > 0


def test_simulate_batch_keeps_batch_axis(small_net, tmp_path):
    x = np.random.default_rng(2).integers(0, 80, (3, 4, 5, 2))
    np.save(tmp_path / "batch.npy", x)
    out = tmp_path / "out"
    assert run_cli("simulate", small_net, "--input", tmp_path / "batch.npy", "--steps", 5,
                   "--record", "s", "--layers", "conv1,dense3", "--out", out, "-q") == 0
    with np.load(out / "trace.npz") as npz:
        assert list(npz.files) == ["conv1.s", "dense3.s"]
        assert npz["conv1.s"].shape == (3, 4, 5, 3, 5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 3 and summary["batched"] is True
    assert len(summary["spike_counts"]["dense3"]["per_sample"]) == 3


def test_simulate_spike_input_defaults_steps_to_its_length(small_net, tmp_path):
    x = (np.random.default_rng(3).random((4, 5, 2, 7)) < 0.5).astype(np.uint8)
    np.save(tmp_path / "s.npy", x)
    out = tmp_path / "out"
    assert run_cli("simulate", small_net, "--input", tmp_path / "s.npy", "--input-mode",
                   "spikes", "--record", "none", "--out", out, "-q") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 7 and summary["input_mode"] == "spikes"
    with np.load(out / "trace.npz") as npz:
        assert npz.files == []


def test_single_sample_equals_batch_of_one(small_net, bias_input, tmp_path):
    x = np.load(bias_input)
    np.save(tmp_path / "b.npy", x[None])
    assert run_cli("simulate", small_net, "--input", bias_input, "--steps", 4,
                   "--out", tmp_path / "one", "-q") == 0
    assert run_cli("simulate", small_net, "--input", tmp_path / "b.npy", "--steps", 4,
                   "--out", tmp_path / "batch", "-q") == 0
    with np.load(tmp_path / "one" / "trace.npz") as a, \
            np.load(tmp_path / "batch" / "trace.npz") as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key][0])


def test_rerun_overwrites_previous_output(small_net, bias_input, tmp_path):
    out = tmp_path / "out"
    for steps in (3, 4):
        assert run_cli("simulate", small_net, "--input", bias_input, "--steps", steps,
                       "--out", out, "-q") == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "x.npy"]


# ---------------------------------------------------------------------------- errors


def _write_bad_inputs(tmp_path: Path) -> dict[str, Path]:
    files = {
        "wrong_shape": np.zeros((5, 4, 2)),
        "nan": np.full((4, 5, 2), np.nan),
        "fraction": np.full((4, 5, 2), 0.5),
        "text": np.full((4, 5, 2), "a"),
    }
    paths = {}
    for name, arr in files.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    paths["not_npy"] = tmp_path / "junk.npy"
    paths["not_npy"].write_bytes(b"\x00garbage")
    return paths


@pytest.mark.parametrize("case", [
    "missing_model", "non_hdf5_model", "bad_suffix_model", "missing_input", "not_npy",
    "wrong_shape", "nan", "fraction", "text", "unknown_backend", "unknown_record",
    "unknown_layer", "no_input", "bias_without_steps", "bad_device", "bad_reset",
    "too_many_steps",
])
def test_bad_input_exits_2_with_one_line(case, small_net, bias_input, tmp_path, capsys):
    bad = _write_bad_inputs(tmp_path)
    junk_model = tmp_path / "model.net"
    junk_model.write_text("this is not HDF5")
    spikes = tmp_path / "spikes.npy"
    np.save(spikes, np.zeros((4, 5, 2, 3), dtype=np.uint8))
    base = [small_net, "--input", bias_input, "--steps", 3]
    args = {
        "missing_model": [tmp_path / "nope.net", "--input", bias_input, "--steps", 3],
        "non_hdf5_model": [junk_model, "--input", bias_input, "--steps", 3],
        "bad_suffix_model": [bias_input, "--input", bias_input, "--steps", 3],
        "missing_input": [small_net, "--input", tmp_path / "nope.npy", "--steps", 3],
        "not_npy": [small_net, "--input", bad["not_npy"], "--steps", 3],
        "wrong_shape": [small_net, "--input", bad["wrong_shape"], "--steps", 3],
        "nan": [small_net, "--input", bad["nan"], "--steps", 3],
        "fraction": [small_net, "--input", bad["fraction"], "--steps", 3],
        "text": [small_net, "--input", bad["text"], "--steps", 3],
        "unknown_backend": [*base, "--backend", "spinnaker"],
        "unknown_record": [*base, "--record", "u,x"],
        "unknown_layer": [*base, "--layers", "conv1,nope"],
        "no_input": [small_net, "--steps", 3],
        "bias_without_steps": [small_net, "--input", bias_input],
        "bad_device": [*base, "--device", "tpu"],
        "bad_reset": [*base, "--reset-interval", 0],
        "too_many_steps": [small_net, "--input", spikes, "--input-mode", "spikes",
                           "--steps", 9],
    }[case]
    out = tmp_path / "out"
    assert run_cli("simulate", *args, "--out", out, "-q") == 2
    err = capsys.readouterr().err
    assert err.startswith("neurodeploy: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_message_names_the_file(small_net, tmp_path, capsys):
    bad = _write_bad_inputs(tmp_path)
    assert run_cli("simulate", small_net, "--input", bad["nan"], "--steps", 2,
                   "--out", tmp_path / "o", "-q") == 2
    err = capsys.readouterr().err
    assert str(bad["nan"]) in err and "NaN" in err


def test_refuses_foreign_output_folder(small_net, bias_input, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert run_cli("simulate", small_net, "--input", bias_input, "--steps", 2,
                   "--out", out, "-q") == 2
    assert "mine.txt" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_usage_errors_exit_2(small_net, capsys):
    assert run_cli("simulate", small_net) == 2  # --out missing
    assert run_cli("frobnicate") == 2
    assert run_cli() == 2
    assert run_cli("simulate", small_net, "--out", "x", "--steps", "many") == 2
    capsys.readouterr()


def test_help_and_version(capsys):
    assert run_cli("--version") == 0
    assert "neurodeploy 0." in capsys.readouterr().out
    for args in (["--help"], ["simulate", "--help"], ["inspect", "--help"]):
        assert run_cli(*args) == 0
        text = capsys.readouterr().out
        assert "usage:" in text
    assert run_cli("simulate", "--help") == 0
    text = capsys.readouterr().out
    assert "pilotnet" in text and "--reset-interval" in text and "examples:" in text


def test_python_m_neurodeploy_help():
    proc = subprocess.run([sys.executable, "-m", "neurodeploy", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "simulate" in proc.stdout and "inspect" in proc.stdout


# ---------------------------------------------------------------------------- inspect


def test_inspect_prints_layers(small_net, capsys):
    assert run_cli("inspect", small_net) == 0
    out = capsys.readouterr().out
    for name in ("input0", "conv1", "dense3"):
        assert name in out


def test_inspect_missing_file(tmp_path, capsys):
    assert run_cli("inspect", tmp_path / "nope.net") == 2
    err = capsys.readouterr().err
    assert err.startswith("neurodeploy: error: ") and err.count("\n") == 1


# ---------------------------------------------------------------------------- examples


@needs_lava_dl
def test_example_tinynet_with_its_defaults(tmp_path, capsys):
    out = tmp_path / "tiny"
    assert run_cli("simulate", "tinynet", "--record", "s", "--out", out, "-q") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["example"] == "tinynet" and summary["steps"] == 20
    assert summary["reset_interval"] == 17 and summary["layout"] == "netx"
    with np.load(out / "trace.npz") as npz:
        assert npz["input0.s"].shape == (16, 16, 3, 20)
    assert "conv2" in capsys.readouterr().out


@needs_lava_dl
def test_example_without_input_needs_one(tmp_path, capsys):
    assert run_cli("simulate", "mnist-mlp", "--out", tmp_path / "o", "-q") == 2
    assert "--input" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@needs_lava_dl
def test_examples_resolve():
    from neurodeploy import examples

    for name in examples.names():
        example = examples.resolve(name)
        assert example.path.is_file()
        assert example.input_path is None or example.input_path.is_file()


def test_unknown_example_lists_names():
    from neurodeploy import examples
    from neurodeploy.errors import NeurodeployError

    with pytest.raises(NeurodeployError, match="pilotnet"):
        examples.resolve("resnet")


# ---------------------------------------------------------------------------- lava


@pytest.mark.lava
def test_lava_backend_matches_hw_sim(small_net, bias_input, tmp_path):
    if importlib.util.find_spec("lava") is None and not os.environ.get("CI"):
        pytest.skip("Lava not installed (Python 3.10 + lava-nc); CI=true makes this fail")
    for backend in ("hw_sim", "lava"):
        assert run_cli("simulate", small_net, "--input", bias_input, "--steps", 6,
                       "--backend", backend, "--reset-interval", 4,
                       "--out", tmp_path / backend, "-q") == 0
    with np.load(tmp_path / "hw_sim" / "trace.npz") as a, \
            np.load(tmp_path / "lava" / "trace.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
