"""Tests of neurodeploy.api that need no backend: layouts, batch detection, input files and
atomic saving of runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurodeploy import api
from neurodeploy.errors import BadInputFileError, NeurodeployError
from neurodeploy.ir import Graph, Input, QConv2d, QCubaLIF
from neurodeploy.simulation import RunResult


def conv_graph(layout: str = "netx") -> Graph:
    """Input (2, 4, 3) → LIF → 3x3 conv (pad 1) → LIF, i.e. netx (W, H, C) = (3, 4, 2)."""
    weight = np.ones((5, 2, 3, 3), dtype=np.int32)
    return Graph.chain(
        [
            ("in", Input(shape=(2, 4, 3))),
            ("input", QCubaLIF(threshold=10)),
            ("conv", QConv2d(weight=weight, padding=1)),
            ("lif", QCubaLIF(threshold=20)),
        ],
        layout=layout,
    )


def fake_result(graph: Graph, *, batch: int, steps: int, batched: bool,
                layout: str = "netx") -> api.SimulationResult:
    rng = np.random.default_rng(0)
    shapes = graph.shapes
    traces, counts = {}, {}
    for name in graph.neurons:
        for what in ("s", "u", "v"):
            traces[f"{name}.{what}"] = rng.integers(-100, 100, (batch, *shapes[name], steps))
        counts[name] = np.arange(batch, dtype=np.int64) + 1
    return api.SimulationResult(
        backend="hw_sim", steps=steps, samples=batch, layers=graph.neurons, traces=traces,
        spike_counts=counts, sim_time_s=0.5, batched=batched, layout=layout,
        shapes={n: shapes[n] for n in graph.neurons}, input_mode="bias",
    )


# ---------------------------------------------------------------------------- layouts


def test_reverse_sample_axes_round_trip():
    arr = np.arange(2 * 3 * 4 * 5 * 6).reshape(2, 3, 4, 5, 6)  # (B, C, H, W, T)
    netx = api.reverse_sample_axes(arr, 3, batched=True, time_last=True)
    assert netx.shape == (2, 5, 4, 3, 6)
    assert netx[1, 4, 2, 0, 5] == arr[1, 0, 2, 4, 5]
    back = api.reverse_sample_axes(netx, 3, batched=True, time_last=True)
    np.testing.assert_array_equal(back, arr)


def test_reverse_sample_axes_leaves_vectors():
    arr = np.arange(12).reshape(3, 4)
    assert api.reverse_sample_axes(arr, 1) is arr or np.array_equal(
        api.reverse_sample_axes(arr, 1), arr
    )


def test_lava_dl_image_layout_maps_to_ir():
    # lava-dl's PilotNet image.npy is (W, H, C) = (200, 66, 3); the IR input is (3, 66, 200).
    graph = Graph.chain([("in", Input(shape=(3, 66, 200))), ("n", QCubaLIF())], layout="netx")
    image = np.random.default_rng(1).integers(0, 77, (200, 66, 3))
    arr, batched, steps = api.prepare_inputs(graph, image, input_mode="bias", steps=16)
    assert arr.shape == (1, 3, 66, 200) and not batched and steps == 16
    assert arr[0, 2, 10, 150] == image[150, 10, 2]


def test_ir_layout_models_take_inputs_unchanged():
    graph = conv_graph(layout="ir")
    x = np.arange(2 * 4 * 3).reshape(2, 4, 3)
    arr, batched, _ = api.prepare_inputs(graph, x, input_mode="bias", steps=1)
    np.testing.assert_array_equal(arr[0], x)


# ---------------------------------------------------------------------------- batches


@pytest.mark.parametrize("mode,shape,batched,steps", [
    ("bias", (3, 4, 2), False, 5),
    ("bias", (7, 3, 4, 2), True, 5),
    ("spikes", (3, 4, 2, 9), False, 9),
    ("spikes", (7, 3, 4, 2, 9), True, 9),
])
def test_batch_detection(mode, shape, batched, steps):
    graph = conv_graph()
    x = np.zeros(shape, dtype=np.int32)
    arr, got_batched, got_steps = api.prepare_inputs(
        graph, x, input_mode=mode, steps=5 if mode == "bias" else None
    )
    assert got_batched is batched and got_steps == steps
    n = shape[0] if batched else 1
    assert arr.shape == ((n, 2, 4, 3) if mode == "bias" else (n, 2, 4, 3, 9))
    assert arr.dtype == np.int64


def test_vector_inputs_need_no_conversion():
    graph = Graph.chain([("in", Input(shape=(6,))), ("n", QCubaLIF())], layout="netx")
    x = np.arange(6)
    arr, batched, _ = api.prepare_inputs(graph, x, input_mode="bias", steps=2)
    np.testing.assert_array_equal(arr, x[None])
    arr, batched, _ = api.prepare_inputs(graph, np.stack([x, x]), input_mode="bias", steps=2)
    assert batched and arr.shape == (2, 6)


@pytest.mark.parametrize("shape", [(2, 4, 3), (3, 4), (1, 1, 3, 4, 2), (3, 4, 2, 1, 1)])
def test_wrong_shape_is_refused(shape):
    with pytest.raises(NeurodeployError, match="expected"):
        api.prepare_inputs(conv_graph(), np.zeros(shape), input_mode="bias", steps=1)


def test_bias_mode_needs_steps_and_spikes_default_to_their_length():
    graph = conv_graph()
    with pytest.raises(NeurodeployError, match="steps"):
        api.prepare_inputs(graph, np.zeros((3, 4, 2)), input_mode="bias")
    with pytest.raises(NeurodeployError, match="4 time steps"):
        api.prepare_inputs(graph, np.zeros((3, 4, 2, 4)), input_mode="spikes", steps=5)


@pytest.mark.parametrize("bad,match", [
    (np.full((3, 4, 2), np.nan), "NaN"),
    (np.full((3, 4, 2), 0.5), "non-integer"),
    (np.full((3, 4, 2), "a"), "numbers"),
])
def test_bad_values_are_refused(bad, match):
    with pytest.raises(NeurodeployError, match=match):
        api.prepare_inputs(conv_graph(), bad, input_mode="bias", steps=1)


# ---------------------------------------------------------------------------- input files


def test_input_files(tmp_path):
    graph = conv_graph()
    x = np.ones((3, 4, 2), dtype=np.int16)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "two.npz", a=x, b=x)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    np.save(tmp_path / "nan.npy", np.full((3, 4, 2), np.nan))
    np.save(tmp_path / "wrong.npy", np.zeros((5, 5)))
    for name in ("x.npy", "x.npz"):
        arr, batched, _ = api.prepare_inputs(graph, tmp_path / name, input_mode="bias", steps=1)
        assert arr.shape == (1, 2, 4, 3) and not batched
    for name, match in [("missing.npy", "no such file"), ("two.npz", "exactly one"),
                        ("obj.npy", "readable"), ("junk.npy", "readable"), ("nan.npy", "NaN"),
                        ("wrong.npy", "expected")]:
        with pytest.raises(BadInputFileError, match=match) as info:
            api.prepare_inputs(graph, tmp_path / name, input_mode="bias", steps=1)
        assert info.value.path == str(tmp_path / name)
        assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------- saving


def test_save_run_layout_and_summary(tmp_path):
    graph = conv_graph()
    result = fake_result(graph, batch=1, steps=4, batched=False)
    out = api.save_run(result, tmp_path / "run", model_name="m.net", load_time_s=0.25)
    with np.load(out / "trace.npz") as npz:
        assert list(npz.files) == [f"{n}.{q}" for n in ("input", "lif") for q in "uvs"]
        # unbatched netx: (W, H, C, T)
        assert npz["lif.u"].shape == (3, 4, 5, 4)
        np.testing.assert_array_equal(
            npz["lif.v"], result.traces["lif.v"][0].transpose(2, 1, 0, 3)
        )
    summary = json.loads((out / "summary.json").read_text())
    for key in ("backend", "steps", "samples", "sim_time_s", "load_time_s", "layers",
                "spike_counts", "model", "input_mode", "reset_interval", "neurodeploy_version"):
        assert key in summary
    assert summary["layers"] == ["input", "lif"]
    assert summary["spike_counts"]["lif"] == {
        "total": 1, "per_sample": [1], "rate_per_neuron_per_step": 1 / (5 * 4 * 3 * 4)
    }
    assert summary["layer_shapes"]["lif"] == [3, 4, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_save_run_keeps_batch_axis(tmp_path):
    result = fake_result(conv_graph(), batch=3, steps=2, batched=True)
    out = api.save_run(result, tmp_path / "run", model_name="m", load_time_s=0.0)
    with np.load(out / "trace.npz") as npz:
        assert npz["input.s"].shape == (3, 3, 4, 2, 2)


def test_save_run_is_atomic(tmp_path, monkeypatch):
    result = fake_result(conv_graph(), batch=1, steps=2, batched=False)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(api.json, "dump", boom)
    with pytest.raises(OSError, match="disk full"):
        api.save_run(result, tmp_path / "deep" / "run", model_name="m", load_time_s=0.0)
    assert list(tmp_path.iterdir()) == []


def test_save_run_overwrites_only_its_own_output(tmp_path):
    result = fake_result(conv_graph(), batch=1, steps=2, batched=False)
    out = tmp_path / "run"
    api.save_run(result, out, model_name="first", load_time_s=0.0)
    api.save_run(result, out, model_name="second", load_time_s=0.0)
    assert json.loads((out / "summary.json").read_text())["model"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(NeurodeployError, match="notes.txt"):
        api.save_run(result, out, model_name="third", load_time_s=0.0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NeurodeployError, match="not a folder"):
        api.save_run(result, tmp_path / "file", model_name="m", load_time_s=0.0)


def test_plain_run_result_saves_batched_ir_layout(tmp_path):
    result = RunResult(
        backend="lava", steps=2, samples=1, layers=["n"],
        traces={"n.s": np.zeros((1, 6, 2), dtype=np.int64)},
        spike_counts={"n": np.zeros(1, dtype=np.int64)},
    )
    out = api.save_run(result, tmp_path / "r", model_name="m", load_time_s=0.0)
    with np.load(out / "trace.npz") as npz:
        assert npz["n.s"].shape == (1, 6, 2)


def test_simulate_validates_before_running():
    graph = conv_graph()
    x = np.zeros((3, 4, 2))
    with pytest.raises(NeurodeployError, match="unknown backend"):
        api.simulate(graph, x, backend="spinnaker", steps=1)
    with pytest.raises(NeurodeployError, match="unknown layer"):
        api.simulate(graph, x, steps=1, record={"nope": "s"})
    with pytest.raises(NeurodeployError, match="cannot record"):
        api.simulate(graph, x, steps=1, record=["q"])
    with pytest.raises(NeurodeployError, match="no inputs"):
        api.simulate(graph, None, steps=1)
    with pytest.raises(NeurodeployError, match="device"):
        api.simulate(graph, x, steps=1, device="tpu")
    with pytest.raises(NeurodeployError, match="reset interval"):
        api.simulate(graph, x, steps=1, reset_interval=0)


def test_import_neurodeploy_is_cheap():
    import subprocess
    import sys

    code = ("import sys, neurodeploy, neurodeploy.cli, neurodeploy.api; "
            "print(','.join(m for m in ('torch', 'lava', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
