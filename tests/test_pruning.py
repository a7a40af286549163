"""Tests of neurodeploy.pruning: exact magnitude pruning (global vs per layer, ties), fixed masks
through fine-tuning, AGC's attention maps and loss against hand computations, the sparse
synapse encoding the mapping picks for pruned dense layers, zeros surviving quantization, and
the pruning run's output folder and input checks."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from neurodeploy.errors import BadInputFileError, NeurodeployError
from neurodeploy.models import zoo
from neurodeploy.models.checkpoint import load_checkpoint, save_checkpoint
from neurodeploy.models.data import Dataset
from neurodeploy.pruning import (
    AttentionRecorder,
    Masks,
    attention_loss,
    attention_map,
    checkpoint_dir,
    copy_model,
    finetune,
    ir_zero_check,
    magnitude_masks,
    prunable_weights,
    prune,
    run_pruning,
)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread (as training uses): spinning OpenMP workers slow small models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _hand_model(seed: int = 0) -> nn.Module:
    """Three prunable layers of different scales (so global and per-layer pruning differ)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.Flatten(),
                          nn.Linear(12, 20, bias=False), nn.ReLU(), nn.Linear(20, 5, bias=False))
    with torch.no_grad():
        model[0].weight.mul_(10.0)  # the conv's weights are the largest
        model[4].weight.mul_(0.1)  # the last layer's the smallest
    return model


def _tiny_config(**kw: object) -> dict:
    return zoo.default_config("cnn", in_shape=(1, 8, 8), timesteps=4, bntt=True,
                              features=[4, "P"], hidden=[16], **kw)


def _tiny_snn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return zoo.build_model(_tiny_config()).eval()


def _synthetic(n: int = 64, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 1, 8, 8), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return Dataset(x=x, y=y, num_classes=10, in_shape=(1, 8, 8), name="synthetic",
                   normalization=((0.0,), (1.0,)))


# ------------------------------------------------------------------------ magnitude pruning


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
def test_global_scope_prunes_the_smallest_weights_over_all_layers(sparsity: float) -> None:
    model = _hand_model()
    masks = magnitude_masks(model, sparsity, scope="global")
    flat = np.concatenate([w.detach().numpy().ravel()
                           for w in prunable_weights(model).values()])
    k = math.floor(sparsity * flat.size + 0.5)
    expected = np.ones(flat.size, dtype=bool)
    expected[np.argsort(np.abs(flat))[:k]] = False  # the k smallest magnitudes go
    got = np.concatenate([m.numpy().ravel() for m in masks.keep.values()])
    np.testing.assert_array_equal(got, expected)
    assert int((~got).sum()) == k
    # one threshold: every pruned magnitude is at most every kept one
    assert np.abs(flat[~got]).max() <= np.abs(flat[got]).min()
    per_layer = masks.sparsity()["per_layer"]
    # the scaled-up conv keeps more and the scaled-down last layer loses more than average
    assert per_layer["0.weight"] < sparsity < per_layer["4.weight"]
    assert masks.sparsity()["total"] == pytest.approx(k / flat.size)


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.8, 0.95])
def test_layer_scope_gives_the_same_exact_sparsity_in_every_layer(sparsity: float) -> None:
    model = _hand_model()
    masks = magnitude_masks(model, sparsity, scope="layer")
    for name, w in prunable_weights(model).items():
        keep = masks.keep[name].numpy()
        n = keep.size
        assert int((~keep).sum()) == math.floor(sparsity * n + 0.5)  # within one weight
        a = np.abs(w.detach().numpy())
        assert a[~keep].max() <= a[keep].min()


def test_ties_still_give_exact_counts() -> None:
    model = _hand_model()
    with torch.no_grad():
        model[2].weight.fill_(0.5)  # 240 equal magnitudes
        model[4].weight.fill_(-0.5)  # 100 more, same magnitude, opposite sign
        model[0].weight.fill_(0.5)
    for scope in ("global", "layer"):
        masks = magnitude_masks(model, 0.37, scope=scope)
        total = sum(masks.sizes().values())
        if scope == "global":
            assert sum(masks.pruned().values()) == math.floor(0.37 * total + 0.5)
        else:
            for name, n in masks.sizes().items():
                assert masks.pruned()[name] == math.floor(0.37 * n + 0.5)


def test_prune_zeroes_weights_and_can_keep_first_and_last_layer() -> None:
    model = _hand_model()
    first = model[0].weight.detach().clone()
    last = model[4].weight.detach().clone()
    masks = prune(model, 0.6, scope="global", keep_first=True, keep_last=True)
    assert list(masks.keep) == ["2.weight"]
    assert torch.equal(model[0].weight, first) and torch.equal(model[4].weight, last)
    assert int((model[2].weight == 0).sum()) == 144  # 0.6 * 240
    assert masks.violations(model) == 0
    with torch.no_grad():
        model[2].weight.add_(1.0)
    assert masks.violations(model) == 144


def test_masks_stay_fixed_through_fine_tuning() -> None:
    model = _tiny_snn()
    teacher = copy.deepcopy(model)
    masks = prune(model, 0.7, scope="layer")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for kwargs in ({}, {"teacher": teacher}):  # plain CE, then AGC
        result = finetune(model, masks, _synthetic(), epochs=1, lr=1e-2, batch_size=16,
                          max_steps=3, **kwargs)
        assert result["steps"] == 3
        assert masks.violations(model) == 0
        for name, keep in masks.keep.items():
            assert torch.all(dict(model.named_parameters())[name][~keep] == 0)
    name = "body.fc1.weight"  # the kept weights did move (the optimizer ran)
    kept = masks.keep[name]
    assert not torch.equal(dict(model.named_parameters())[name][kept], before[name][kept])
    assert result["history"][0]["attention"] > 0  # AGC's term was active


# ------------------------------------------------------------------------ AGC attention


def test_attention_map_and_loss_match_a_hand_computation() -> None:
    # student: one channel with squares 3, 4, 0, 0 -> Q = [3, 4, 0, 0], normalized [.6, .8, 0, 0]
    a_s = torch.tensor([math.sqrt(3.0), 2.0, 0.0, 0.0]).view(1, 1, 2, 2)
    # meta-model: two channels, Q = [1+0, 0+0, 0+4, 0+0] = [1, 0, 4, 0]
    a_m = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -2.0, 0.0]]).view(1, 2, 2, 2)
    np.testing.assert_allclose(attention_map(a_s).numpy(), [[3.0, 4.0, 0.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(attention_map(a_m).numpy(), [[1.0, 0.0, 4.0, 0.0]], rtol=1e-6)
    qm = np.array([1.0, 0.0, 4.0, 0.0]) / math.sqrt(17.0)
    diff = np.array([0.6, 0.8, 0.0, 0.0]) - qm
    expected = 1000.0 / 2 * np.mean(diff ** 2)
    got = float(attention_loss({"l": a_s}, {"l": a_m}, beta=1000.0))
    assert got == pytest.approx(expected, rel=1e-6)
    # two layers add up; beta scales linearly
    assert float(attention_loss({"a": a_s, "b": a_s}, {"a": a_m, "b": a_m}, beta=10.0)) == \
        pytest.approx(2 * expected / 100, rel=1e-6)


def test_recorder_sums_spikes_over_time_and_loss_is_zero_for_the_teacher_itself() -> None:
    net = _tiny_snn()
    x = _synthetic(8).x
    with AttentionRecorder(net) as rec:
        _, spikes = net.run(x, record=True)
        maps = dict(rec.maps)
    assert list(maps) == ["lif1"]  # the conv spiking layer (lif_fc1 is flat)
    torch.testing.assert_close(maps["lif1"], torch.stack(spikes["lif1"]).sum(0))
    assert float(maps["lif1"].sum()) > 0  # the layer fires
    twin = copy_model(net)
    with AttentionRecorder(twin) as rec2:
        twin(x)
        assert float(attention_loss(rec2.maps, maps)) == 0.0
        prune(twin, 0.9, scope="layer")  # a different student: the loss is positive
        rec2.clear()
        twin(x)
        assert float(attention_loss(rec2.maps, maps)) > 0.0


# ------------------------------------------------------------------------ deployment


def test_pruned_dense_layer_is_stored_sparse_with_less_memory() -> None:
    from neurodeploy.compile import fixed_point
    from neurodeploy.frontends.torch import from_torch
    from neurodeploy.mapping import map_graph
    from neurodeploy.passes.legalize import legalize
    from neurodeploy.targets import load_target

    target = load_target("loihi1")  # dense + sparse encodings, no neuron state in the memory
    config = zoo.default_config("mlp", in_shape=(64,), timesteps=4, hidden=[32], reset="zero",
                                 encoder="poisson")
    torch.manual_seed(0)

    def mapped(model: nn.Module) -> tuple:
        graph = from_torch(model, in_shape=(64,))
        fixed = legalize(fixed_point(graph, target, steps=4)[0])
        return fixed, map_graph(fixed, target)

    dense_model = zoo.build_model(config).eval()
    pruned_model = copy.deepcopy(dense_model)
    masks = prune(pruned_model, 0.9, scope="layer", keep_last=True)
    assert list(masks.keep) == ["body.fc1.weight"]
    fixed_d, map_d = mapped(dense_model)
    fixed_p, map_p = mapped(pruned_model)
    assert map_d.synapse_encoding["fc1"] == "dense"
    assert map_p.synapse_encoding["fc1"] == "sparse"
    mem_d = sum(c.synaptic_memory_bits for c in map_d.cores if c.layer == "lif_fc1")
    mem_p = sum(c.synaptic_memory_bits for c in map_p.cores if c.layer == "lif_fc1")
    bits = fixed_d.nodes["fc1"].num_weight_bits
    assert mem_d == 32 * 64 * bits  # dense: every weight of the 32 x 64 matrix
    nnz = int(np.count_nonzero(fixed_p.nodes["fc1"].weight))
    assert nnz <= 205  # 10 % of 2048 (rounding may zero a few more)
    assert mem_p == nnz * (bits + 5)  # sparse: weight + ceil(log2 32) index bits each
    assert mem_p < mem_d / 5


def test_pruned_weights_stay_zero_in_the_fixed_point_ir() -> None:
    from neurodeploy.compile import fixed_point
    from neurodeploy.frontends.torch import from_torch
    from neurodeploy.targets import load_target

    net = _tiny_snn()
    unpruned_graph = from_torch(net, in_shape=(1, 8, 8))
    masks = prune(net, 0.8, scope="global")
    graph = from_torch(net, in_shape=(1, 8, 8))
    target = load_target("loihi2")
    fixed = fixed_point(graph, target, steps=4)[0]
    check = ir_zero_check(graph, fixed, masks)
    assert check["unchecked"] == []
    assert set(check["layers"]) == {"conv1", "fc1", "out"}
    assert check["pruned_nonzero"] == 0
    # conv1 is not folded with a pool: compare element by element
    q = np.asarray(fixed.nodes["conv1"].weight)
    assert np.all(q[~masks.keep["body.conv1.weight"].numpy()] == 0)
    # fc1 absorbed the 2x2 pool: each float weight became 4 (a 16 x 256 matrix)
    assert check["layers"]["fc1"]["weights"] == 16 * 256
    assert check["layers"]["fc1"]["zeros"] >= 4 * int((~masks.keep["body.fc1.weight"]).sum())
    # the check can fail: the unpruned network's IR breaks the masks
    fixed_unpruned = fixed_point(unpruned_graph, target, steps=4)[0]
    assert ir_zero_check(unpruned_graph, fixed_unpruned, masks)["pruned_nonzero"] > 0


# ------------------------------------------------------------------------ the pruning run


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tiny")
    save_checkpoint(folder / "model.pt", _tiny_snn(), _tiny_config(),
                    metrics={"data": "digits"})
    return folder


def test_run_pruning_writes_json_plot_and_checkpoints(tiny_checkpoint, tmp_path) -> None:
    out = tmp_path / "prune"
    doc = run_pruning(tiny_checkpoint, method="agc", scope="global", sparsities=[0.5],
                      samples=20, finetune_epochs=1, target="loihi2", out=out, batch_size=64)
    assert sorted(p.name for p in out.iterdir()) == ["pruning.json", "pruning.png", "s0.5"]
    saved = json.loads((out / "pruning.json").read_text())
    assert saved["format"] == "neurodeploy-pruning" and saved["version"] == 1
    for key in ("model", "method", "scope", "sparsities", "data", "samples", "target",
                "finetune", "rows", "energy_scope", "pruned_layers"):
        assert key in saved
    assert saved["method"] == "agc" and saved["data"] == "digits" and saved["samples"] == 20
    base, row = saved["rows"]
    assert base["sparsity"] == 0.0 and row["sparsity"] == 0.5
    assert base["checkpoint"] is None and row["checkpoint"] == "s0.5"
    n = row["weights"]["prunable"]
    assert abs(row["achieved"]["total"] * n - 0.5 * n) <= 0.5
    assert set(row["achieved"]["per_layer"]) == {"body.conv1.weight", "body.fc1.weight",
                                                 "body.out.weight"}
    for r in (base, row):
        for key in ("float", "deployed"):
            assert 0.0 <= r["accuracy"][key] <= 1.0
        assert r["cores"] >= 1
        assert r["synaptic_memory_bits"] == sum(r["synaptic_memory_bits_per_layer"].values())
        assert set(r["synapse_encoding"]) == {"conv1", "fc1", "out"}
        assert sum(r["cores_per_layer"].values()) == r["cores"]
        assert r["latency_per_inference_s"] > 0
        assert r["energy_per_inference_j"]["total"] == pytest.approx(
            r["energy_per_inference_j"]["dynamic"] + r["energy_per_inference_j"]["static"])
    assert row["synapse_encoding"]["fc1"] == "sparse"
    assert row["ir_zero_check"]["pruned_nonzero"] == 0
    assert row["finetune"]["epochs"] == 1 and row["finetune"]["history"][0]["attention"] > 0
    assert base["saved"]["cores"] == 0 and base["saved"]["synaptic_memory_bits"] == 0
    s = row["saved"]
    assert s["synaptic_memory_bits"] == base["synaptic_memory_bits"] - row["synaptic_memory_bits"]
    assert s["synaptic_memory_bits"] > 0
    assert s["energy_j"] == pytest.approx(base["energy_per_inference_j"]["total"]
                                          - row["energy_per_inference_j"]["total"])
    assert s["accuracy_lost_deployed"] == pytest.approx(base["accuracy"]["deployed"]
                                                        - row["accuracy"]["deployed"])
    assert doc["rows"][1]["cores"] == row["cores"] and doc["out"] == str(out)
    # the checkpoint loads, with the pruned weights zero
    model, config, metrics = load_checkpoint(out / "s0.5" / "model.pt")
    assert config == _tiny_config() and metrics["data"] == "digits"
    nonzero = sum(int(torch.count_nonzero(w)) for w in prunable_weights(model).values())
    assert nonzero == row["weights"]["nonzero"] <= n - math.floor(0.5 * n)
    # a second run needs overwrite; files neurodeploy did not write are never replaced
    with pytest.raises(NeurodeployError, match="not empty"):
        run_pruning(tiny_checkpoint, sparsities=[0.5], out=out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(NeurodeployError, match="did not write"):
        run_pruning(tiny_checkpoint, sparsities=[0.5], out=out, overwrite=True)


@pytest.mark.parametrize("kwargs, match", [
    ({"sparsities": [1.0]}, "in \\[0, 1\\)"),
    ({"sparsities": [-0.1]}, "in \\[0, 1\\)"),
    ({"sparsities": [float("nan")]}, "in \\[0, 1\\)"),
    ({"sparsities": [True]}, "in \\[0, 1\\)"),
    ({"sparsities": "0.5"}, "list of numbers"),
    ({"sparsities": [0.0]}, "at least one sparsity"),
    ({"method": "random"}, "unknown method"),
    ({"scope": "channel"}, "unknown scope"),
    ({"finetune_epochs": -1}, "finetune_epochs"),
    ({"method": "agc", "finetune_epochs": 0}, "AGC"),
    ({"samples": 0}, "samples"),
    ({"beta": float("inf")}, "beta"),
    ({"attention_layers": ["lif9"]}, "unknown attention layer"),
    ({"data": "mnist5k"}, "shape"),
    ({"target": "cpu"}, "ANN device"),
])
def test_bad_input_is_one_clear_error(tiny_checkpoint, tmp_path, kwargs, match) -> None:
    with pytest.raises(NeurodeployError, match=match) as info:
        run_pruning(tiny_checkpoint, out=tmp_path / "o", **{"sparsities": [0.5], **kwargs})
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o").exists()


def test_missing_or_foreign_model_is_a_bad_input_file(tmp_path) -> None:
    with pytest.raises(BadInputFileError, match="not a neurodeploy checkpoint"):
        run_pruning(tmp_path / "nothing", out=tmp_path / "o")
    with pytest.raises(NeurodeployError, match="sparsity"):
        magnitude_masks(_hand_model(), 1.5)
    with pytest.raises(NeurodeployError, match="unknown scope"):
        magnitude_masks(_hand_model(), 0.5, scope="row")
    with pytest.raises(NeurodeployError, match="no prunable"):
        prunable_weights(nn.Sequential(nn.Linear(3, 3)), keep_first=True)
    with pytest.raises(NeurodeployError, match="lacks the masked"):
        Masks({"x.weight": torch.ones(2, dtype=torch.bool)}).apply(_hand_model())


def test_checkpoint_folder_names() -> None:
    assert checkpoint_dir(0.5) == "s0.5"
    assert checkpoint_dir(0.95) == "s0.95"
    assert checkpoint_dir(0.123) == "s0.123"


def test_ann_models_are_pruned_and_fine_tuned_but_not_deployed(tmp_path) -> None:
    config = zoo.twin_config(_tiny_config())
    torch.manual_seed(0)
    (tmp_path / "ann").mkdir()
    save_checkpoint(tmp_path / "ann" / "model.pt", zoo.build_model(config).eval(), config,
                    metrics={"data": "digits"})
    doc = run_pruning(tmp_path / "ann", method="agc", sparsities=[0.9], samples=30,
                      out=tmp_path / "o", batch_size=128)
    base, row = doc["rows"]
    assert doc["kind"] == "ann" and doc["target"] is None and "convert" in doc["notes"][0]
    assert row["accuracy"]["deployed"] is None and "cores" not in row
    assert row["finetune"]["history"][0]["attention"] > 0  # relu1's maps guide it
    assert row["weights"]["nonzero"] <= round(0.1 * row["weights"]["prunable"])
    assert row["saved"]["cores"] is None and row["saved"]["weights"] > 0
    assert (tmp_path / "o" / "pruning.png").is_file()


def test_parse_sparsities_for_the_cli() -> None:
    from neurodeploy.pruning import parse_sparsities

    assert parse_sparsities("0.5, 0.8,0.9,") == [0.5, 0.8, 0.9]
    for bad, match in (("0.5,x", "not a number"), ("", "no sparsity"), ("1", r"\[0, 1\)")):
        with pytest.raises(NeurodeployError, match=match):
            parse_sparsities(bad)


def test_prune_command_end_to_end(tmp_path, capsys) -> None:
    """``neurodeploy prune`` on the shipped demo: exit 0, a baseline and one pruned row with
    the achieved sparsity and deployed numbers; a bad sparsity exits 2 with one line and no
    folder."""
    from neurodeploy.cli import main

    out = tmp_path / "p"
    assert main(["prune", "--sparsity", "0.9", "--finetune-epochs", "0", "--samples", "16",
                 "--out", str(out), "-q"]) == 0
    doc = json.loads((out / "pruning.json").read_text())
    rows = doc["rows"]
    assert [r["sparsity"] for r in rows] == [0.0, 0.9]
    assert abs(rows[1]["achieved"]["total"] - 0.9) < 1e-3
    assert rows[1]["cores"] <= rows[0]["cores"]
    assert (out / "s0.9" / "model.pt").exists() and (out / "pruning.png").exists()
    capsys.readouterr()
    assert main(["prune", "--sparsity", "1.5", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neurodeploy: error:") and "1.5" in err[0]
    assert not (tmp_path / "bad").exists()
