"""Model zoo: every architecture in both kinds builds and runs, layer lists match the seeds'
(checked against hand-written functional forwards and a hand-counted VGG11), SNN dynamics on
hand-worked numbers, BNTT's step limit, ANN twins, gradients, torch.fx tracing with the
stateful layers as leaves, and config validation."""

from __future__ import annotations

import json
import operator

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from neurodeploy.errors import NeurodeployError
from neurodeploy.models import zoo
from neurodeploy.models.layers import BNTT, LIF, Accumulator, SpikingNet, StatefulModule

SMALL = {"in_shape": (3, 16, 16), "num_classes": 5, "width": 0.125, "timesteps": 2}


def small(name: str, **kw: object) -> dict:
    args = {**SMALL, **kw}
    if name == "mlp":
        args["in_shape"] = kw.get("in_shape", (1, 8, 8))
    return zoo.default_config(name, **args)


class StatefulLeafTracer(fx.Tracer):
    """How a frontend traces a per-step body: every StatefulModule (LIF, BNTT, Accumulator,
    StepDropout) stays one call_module node, so the traced graph is one time step."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, zoo.LEAF_TYPES) or super().is_leaf_module(m, qualname)


def trace(body: nn.Module) -> fx.GraphModule:
    return fx.GraphModule(body, StatefulLeafTracer().trace(body))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ------------------------------------------------------------------------------ build & run


@pytest.mark.parametrize("kind", zoo.KINDS)
@pytest.mark.parametrize("bntt", [False, True])
@pytest.mark.parametrize("name", zoo.MODELS)
def test_every_architecture_builds_and_runs(name: str, kind: str, bntt: bool) -> None:
    config = small(name, kind=kind, bntt=bntt, dropout=0.1)
    model = zoo.build_model(config)
    assert isinstance(model, SpikingNet if kind == "snn" else zoo.ANNNet)
    x = torch.randn(2, *config["in_shape"])
    out = model(x)
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == zoo.count_parameters(config)
    assert f"{n_params:,} parameters" in zoo.describe(config)
    # no biases anywhere: conv/linear have none, norms have γ only
    for mod_name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
            assert m.bias is None, mod_name
    if kind == "snn":
        assert model.timesteps == 2
        _, spikes = model.run(x, record=True)
        assert spikes and all(len(s) == 2 for s in spikes.values())
        for s in spikes.values():
            values = torch.stack(s).unique()
            assert set(values.tolist()) <= {0.0, 1.0}


def test_module_names_follow_the_layer_list() -> None:
    snn = zoo.build_model(small("cnn", bntt=True)).body
    assert list(dict(snn.named_children())) == [
        "conv1", "bn1", "lif1", "pool1", "conv2", "bn2", "lif2", "pool2", "flatten",
        "fc1", "bn_fc1", "lif_fc1", "out", "acc"]
    ann = zoo.build_model(small("cnn", kind="ann")).body
    assert list(dict(ann.named_children())) == [
        "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu_fc1",
        "out"]
    vgg5 = zoo.build_model(small("vgg5", dropout=0.2)).body
    names = list(dict(vgg5.named_children()))
    assert names.index("drop2") == names.index("lif2") + 1  # Rathi's 'D' after conv2
    assert "drop_fc1" in names and "drop_fc2" in names


def test_snn_dynamics_on_hand_worked_numbers() -> None:
    """mlp (2 → 2 → 1), λ = 0.5, θ = 1, subtract, T = 3, direct input x = (0.6, 1.0).

    fc1 currents (0.6, 1.2). Neuron 1: U = 0.6, 0.9, 1.05 → spikes 0, 0, 1. Neuron 2:
    U = 1.2 → 0.2, 1.3 → 0.3, 1.35 → spikes 1, 1, 1. out = s1 + 2·s2 per step; accumulator
    sum 1 + 6 = 7, logits 7/3. ANN twin: relu(0.6, 1.2) → 0.6 + 2.4 = 3.0."""
    config = zoo.default_config("mlp", in_shape=(2,), hidden=[2], num_classes=1, timesteps=3,
                                leak=0.5, threshold=1.0)
    snn = zoo.build_model(config)
    ann = zoo.build_model(zoo.twin_config(config))
    with torch.no_grad():
        snn.body.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.2]]))
        snn.body.out.weight.copy_(torch.tensor([[1.0, 2.0]]))
    zoo.load_twin_weights(ann, snn)
    x = torch.tensor([[0.6, 1.0]])
    logits, spikes = snn.run(x, record=True)
    assert torch.stack(spikes["lif_fc1"])[:, 0].tolist() == [[0.0, 1.0], [0.0, 1.0], [1.0, 1.0]]
    assert logits.item() == pytest.approx(7.0 / 3.0)
    assert ann(x).item() == pytest.approx(3.0)


def _vgg9_reference(body: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """VGG9 of reference/algorithms.md §4.4 written out with torch.nn.functional."""
    w = {name: m.weight for name, m in body.named_children() if hasattr(m, "weight")}
    h = x
    for i in range(1, 8):
        h = F.relu(F.conv2d(h, w[f"conv{i}"], padding=1))
        if i in (2, 4, 7):
            h = F.avg_pool2d(h, 2)
    h = F.relu(F.linear(h.flatten(1), w["fc1"]))
    return F.linear(h, w["out"])


def test_vgg9_twin_matches_the_paper_layer_list() -> None:
    config = zoo.default_config("vgg9", kind="ann", in_shape=(3, 32, 32), width=0.0625)
    model = zoo.build_model(config).eval()
    body = model.body
    assert [body.get_submodule(f"conv{i}").out_channels for i in range(1, 8)] == [
        4, 4, 8, 8, 16, 16, 16]
    assert body.fc1.in_features == 4 * 4 * 16 and body.fc1.out_features == 64
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), _vgg9_reference(body, x))


def test_vgg11_parameter_count_matches_bntt_layer_list() -> None:
    """BNTT SNN_VGG11_BNTT on CIFAR-100 (32×32), T = 30: conv 3-64 P 64-128 P 128-256 256-256 P
    256-512 512-512 P 512-512 512-512 G, fc 512-4096, fc 4096-100; a BNTT (γ only, one per
    step) after every conv and fc1."""
    convs = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512),
             (512, 512)]
    fcs = [(512, 4096), (4096, 100)]
    steps = 30
    weights = sum(9 * cin * cout for cin, cout in convs) + sum(i * o for i, o in fcs)
    gammas = steps * (sum(cout for _, cout in convs) + 4096)
    assert weights == 11_724_480 and gammas == 205_440
    config = zoo.default_config("vgg11", in_shape=(3, 32, 32), num_classes=100, bntt=True,
                                timesteps=steps, leak=0.99)
    assert zoo.count_parameters(config) == weights + gammas
    with torch.device("meta"):  # the shapes without allocating 48 MB
        model = zoo.build_model(config)
    assert sum(p.numel() for p in model.parameters()) == weights + gammas
    body = model.body
    assert body.pool5.kernel_size == (2, 2)  # the seeds' AdaptiveAvgPool2d(1) on a 2×2 map
    assert body.fc1.in_features == 512
    # the ANN twin has no time axis: one γ per channel
    ann = zoo.twin_config(config)
    assert zoo.count_parameters(ann) == weights + sum(c for _, c in convs) + 4096


def test_bntt_snn_runs_t_steps_and_refuses_t_plus_one() -> None:
    model = zoo.build_model(small("cnn", bntt=True, timesteps=4)).eval()
    x = torch.randn(2, 3, 16, 16)
    assert model(x).shape == (2, 5)
    assert model(x, timesteps=3).shape == (2, 5)  # early exit is allowed
    with pytest.raises(RuntimeError, match="statistics for 4 steps"):
        model(x, timesteps=5)
    bntt = [m for m in model.modules() if isinstance(m, BNTT)]
    assert len(bntt) == 3 and all(len(m.bn) == 4 and m.bn[0].bias is None for m in bntt)


# ------------------------------------------------------------------------------------ twins


@pytest.mark.parametrize("name", zoo.MODELS)
def test_twins_share_weight_names_and_load_twin_weights_copies_them(name: str) -> None:
    config = small(name, bntt=True)
    snn = zoo.build_model(config)
    ann = zoo.build_model(zoo.twin_config(config))
    assert zoo.twin_config(zoo.twin_config(config)) == config
    names = {k for k, v in snn.state_dict().items()
             if k.endswith(".weight") and v.dim() >= 2}
    ann_names = {k for k, v in ann.state_dict().items()
                 if k.endswith(".weight") and v.dim() >= 2}
    assert names == ann_names
    assert {"body.out.weight", "body.conv1.weight" if name != "mlp" else "body.fc1.weight"} <= names
    snn_sd = snn.state_dict()
    assert any(not torch.equal(snn_sd[k], ann.state_dict()[k]) for k in names)
    copied = zoo.load_twin_weights(snn, ann)
    assert {f"body.{k}" for k in copied} == names
    ann_sd = ann.state_dict()
    for k in names:
        assert torch.equal(snn.state_dict()[k], ann_sd[k]), k


def test_load_twin_weights_refuses_non_twins() -> None:
    a = zoo.build_model(small("cnn"))
    b = zoo.build_model(small("cnn", kind="ann", width=0.25))
    before = a.body.conv1.weight.clone()
    with pytest.raises(zoo.ModelConfigError, match="conv1.weight has shape"):
        zoo.load_twin_weights(a, b)
    with pytest.raises(zoo.ModelConfigError, match="not twins"):
        zoo.load_twin_weights(a, zoo.build_model(small("vgg5", kind="ann")))
    assert torch.equal(a.body.conv1.weight, before)


@pytest.mark.parametrize("name", zoo.MODELS)
def test_gradients_reach_the_first_layer(name: str) -> None:
    config = small(name, bntt=name in ("vgg9", "vgg11", "resnet"))  # deep nets need BNTT
    model = zoo.build_model(config).train()
    x = torch.randn(4, *config["in_shape"])
    loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    first = model.body.fc1 if name == "mlp" else model.body.conv1
    assert first.weight.grad is not None
    assert first.weight.grad.abs().sum() > 0


def test_step_dropout_keeps_one_mask_per_window() -> None:
    drop = zoo.StepDropout(0.5).train()
    x = torch.ones(4, 200)
    a, b = drop(x), drop(x)
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1/(1-p)
    drop.reset_state()
    assert not torch.equal(drop(x), a)
    assert torch.equal(drop.eval()(x), x)


# -------------------------------------------------------------------------------- torch.fx


@pytest.mark.parametrize("name", zoo.MODELS)
def test_fx_traces_every_snn_body_as_one_step(name: str) -> None:
    config = small(name, bntt=True, dropout=0.1)
    net = zoo.build_model(config).eval()
    gm = trace(net.body)
    stateful = {n for n, m in net.body.named_modules() if isinstance(m, StatefulModule)}
    called = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    # each stateful layer appears exactly once (as a leaf): time is not unrolled
    assert sorted(t for t in called if t in stateful) == sorted(stateful)
    assert not any(t.startswith(tuple(f"{s}." for s in stateful)) for t in called)
    assert sum(isinstance(net.body.get_submodule(t), LIF) for t in called) == sum(
        isinstance(m, LIF) for m in net.body.modules())
    assert isinstance(net.body.get_submodule(called[-1]), Accumulator)
    adds = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is operator.add]
    assert len(adds) == (3 if name == "resnet" else 0)
    # the traced step run over T steps gives the same logits as the model
    x = torch.randn(2, *config["in_shape"])
    expected = net(x)
    net.reset_state()
    out = None
    for t in range(config["timesteps"]):
        out = gm(net.encoder(x, t))
    torch.testing.assert_close(out / config["timesteps"], expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------------- configs


def test_default_config_is_complete_and_json_able() -> None:
    config = zoo.default_config("vgg9", in_shape=(3, 32, 32), bntt=True)
    assert config["timesteps"] == 25 and config["width"] == 1.0
    assert config["features"] == [64, 64, "P", 128, 128, "P", 256, 256, 256, "P"]
    assert json.loads(json.dumps(config)) == config
    assert zoo.validate_config(config) == config
    assert zoo.build_model(config).body.fc1.in_features == 4 * 4 * 256
    res = zoo.default_config("resnet", blocks=2)
    assert {"stages", "blocks"} <= set(res) and res["blocks"] == 2
    assert sum(isinstance(m, zoo.BasicBlock)
               for m in zoo.build_model({**res, "width": 0.25}).modules()) == 6


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"leak": 1.5}, "leak"),
    ({"threshold": 0.0}, "threshold"),
    ({"timesteps": 0}, "timesteps"),
    ({"kind": "rnn"}, "kind"),
    ({"encoder": "latency"}, "encoder"),
    ({"reset": "soft"}, "reset"),
    ({"bntt": 1}, "bntt"),
    ({"in_shape": (3, 4, 4)}, "in_shape"),
    ({"in_shape": (28, 28)}, "in_shape"),
    ({"width": -1.0}, "width"),
    ({"dropout": 1.0}, "dropout"),
    ({"hidden": [0]}, "hidden"),
    ({"features": [16, "X"]}, "features"),
    ({"frobnicate": 3}, "frobnicate"),
])
def test_bad_config_values_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(zoo.ModelConfigError) as info:
        zoo.default_config("vgg9", **kwargs)
    assert repr(key) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, NeurodeployError)


def test_validate_config_names_missing_and_unknown_keys() -> None:
    config = zoo.default_config("cnn")
    with pytest.raises(zoo.ModelConfigError, match="'leak': missing"):
        zoo.validate_config({k: v for k, v in config.items() if k != "leak"})
    with pytest.raises(zoo.ModelConfigError, match="'arch'"):
        zoo.validate_config({**config, "arch": "alexnet"})
    with pytest.raises(zoo.ModelConfigError, match="'stages'"):
        zoo.validate_config({**config, "stages": [4]})
    with pytest.raises(zoo.ModelConfigError, match="unknown model"):
        zoo.default_config("alexnet")
