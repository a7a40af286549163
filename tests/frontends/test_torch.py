"""Tests of the PyTorch frontend (neurodeploy.frontends.torch).

Round trips: a torch model run in float64 and the float IR simulator
(:mod:`neurodeploy.backends.floatsim`) run on ``from_torch(model)`` must agree: logits and every
LIF layer's membrane potential after each step within 1e-9 (absolute), and every LIF layer's
spike train identical, step by step. ANN outputs agree within 1e-9. Also: the parameter
mapping by hand-worked numbers, node names, the one-error listing of every unsupported
operation, user-registered converters, and every zoo model.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.backends import floatsim
from neurodeploy.errors import InvalidIRError, NeurodeployError, UnsupportedError
from neurodeploy.frontends import torch as ftorch
from neurodeploy.frontends.torch import from_torch, register_module, supported_modules
from neurodeploy.ir import BNTT, IF, LIF, Affine, Conv2d, I
from neurodeploy.models import layers as L

TOL = 1e-9


def _seed(k: int = 0) -> None:
    torch.manual_seed(k)


def _body_names_to_ir(name: str) -> str:
    name = name.replace(".", "_")
    ir_name = f"_{name}" if name[:1].isdigit() else name
    assert ftorch.node_name(name) == ir_name
    return ir_name


def _train_bn_stats(net: nn.Module, in_shape: tuple[int, ...], batches: int = 3) -> None:
    """Run a few training-mode forwards so BN/BNTT running statistics are non-trivial, and give
    γ and β random values."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                if m.bias is not None:
                    m.bias.uniform_(-0.3, 0.3)
    net.train()
    with torch.no_grad():
        for _ in range(batches):
            net(torch.randn(16, *in_shape, dtype=torch.float64) * 2 + 0.5)
    net.eval()


def _check_snn(net: L.SpikingNet, in_shape: tuple[int, ...], *, batch: int = 4,
               dt: float = 1.0, x: torch.Tensor | None = None,
               steps_input: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """torch (float64) vs floatsim on from_torch(net): logits within TOL, spikes identical.
    ``steps_input`` ``(B, *in_shape, T)`` replaces ``x`` on the IR side (encoded input).
    Returns the IR spike trains (and checks that some layer spikes)."""
    net = net.double().eval()
    if x is None:
        x = torch.rand(batch, *in_shape, dtype=torch.float64) * 2
    graph = from_torch(net.body, in_shape=in_shape, dt=dt)
    T = net.timesteps
    potentials: dict[str, list[torch.Tensor]] = {}
    hooks = [m.register_forward_hook(
        lambda m, i, o, key=name: potentials.setdefault(key, []).append(m.v.clone()))
        for name, m in net.body.named_modules() if isinstance(m, L.LIF)]
    try:
        with torch.no_grad():
            logits, spikes = net.run(x, record=True)
    finally:
        for h in hooks:
            h.remove()
    assert spikes, "the model has no LIF layer"
    ir_in = x.numpy() if steps_input is None else steps_input.numpy()
    result = floatsim.run(graph, ir_in, T,
                          record={_body_names_to_ir(k): ["s", "v"] for k in spikes})
    (out,) = graph.outputs
    ir_logits = result.traces[f"{out}.out"][..., -1] / T
    np.testing.assert_allclose(ir_logits, logits.numpy(), rtol=0, atol=TOL)
    trains = {}
    for name, steps in spikes.items():
        expected = torch.stack(steps, dim=-1).numpy()
        got = result.traces[f"{_body_names_to_ir(name)}.s"]
        assert got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected, err_msg=name)
        trains[name] = got
        # membrane potentials after each step's reset, too (spikes alone hide small errors)
        v = torch.stack(potentials[name], dim=-1).numpy()
        np.testing.assert_allclose(result.traces[f"{_body_names_to_ir(name)}.v"], v,
                                   rtol=0, atol=TOL, err_msg=name)
    total = sum(int(t.sum()) for t in trains.values())
    assert total > 0, "no layer spiked: the comparison would be vacuous"
    return trains


# ------------------------------------------------------------------------------------------
# Parameter mapping by hand
# ------------------------------------------------------------------------------------------


def test_neuron_parameters_by_hand() -> None:
    body = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False),
                         L.LIF(0.75, 0.5, reset="zero", order="fire_integrate"),
                         nn.Linear(3, 3), L.IF(2.0), nn.Linear(3, 2, bias=False),
                         L.LIF(1.0, 1.5), nn.Linear(2, 2, bias=False), L.Accumulator())
    graph = from_torch(L.SpikingNet(body, 7, L.PoissonEncoder(2.0)), in_shape=(4,), dt=1e-3)
    assert list(graph.nodes) == ["input", "_0", "_1", "_2", "_3", "_4", "_5", "_6", "_7", "_8"]
    assert graph.metadata == {"dt": 1e-3, "source": "torch", "model": "SpikingNet",
                              "timesteps": 7, "encoder": "poisson", "encoder_rescale": 2.0,
                              "kind": "snn"}
    lif = graph.nodes["_2"]
    assert isinstance(lif, LIF) and lif.reset == "zero" and lif.order == "fire_integrate"
    # λ = 0.75, dt = 1 ms: tau = dt/(1-λ) = 4 ms, r = 1/(1-λ) = 4; scalars stay 0-d
    assert lif.tau.shape == () and math.isclose(float(lif.tau), 4e-3, rel_tol=1e-7)
    assert math.isclose(float(lif.r), 4.0, rel_tol=1e-7)
    assert float(lif.v_leak) == 0.0 and float(lif.v_threshold) == 0.5
    assert float(lif.v_reset) == 0.0
    for name, theta in (("_4", 2.0), ("_6", 1.5)):  # IF and LIF(leak=1) both become IF
        node = graph.nodes[name]
        assert isinstance(node, IF) and float(node.r) == 1000.0
        assert float(node.v_threshold) == theta and node.reset == "subtract"
    assert isinstance(graph.nodes["_3"], Affine) and isinstance(graph.nodes["_8"], I)
    assert float(graph.nodes["_8"].r) == 1000.0


def test_conv_and_pool_parameters() -> None:
    body = nn.Sequential()
    body.add_module("conv", nn.Conv2d(4, 6, (3, 5), stride=(1, 2), padding=(1, 0),
                                      dilation=(2, 1), groups=2))
    body.add_module("same", nn.Conv2d(6, 6, 3, padding="same", dilation=2, bias=False))
    body.add_module("pool", nn.AvgPool2d(2, stride=1, padding=1))
    body.add_module("gap", nn.AdaptiveAvgPool2d((2, None)))
    graph = from_torch(body, in_shape=(4, 11, 12))
    conv = graph.nodes["conv"]
    assert isinstance(conv, Conv2d)
    assert (conv.stride, conv.padding, conv.dilation, conv.groups) == ((1, 2), (1, 0), (2, 1), 2)
    np.testing.assert_array_equal(conv.weight, body.conv.weight.detach().double().numpy())
    np.testing.assert_array_equal(conv.bias, body.conv.bias.detach().double().numpy())
    assert graph.nodes["same"].padding == (2, 2) and graph.nodes["same"].bias is None
    pool = graph.nodes["pool"]
    assert (pool.kernel_size, pool.stride, pool.padding) == ((2, 2), (1, 1), (1, 1))
    # (4, 11, 12) -> conv: H (11 + 2 - 2*2 - 1) + 1 = 9, W (12 - 4 - 1)//2 + 1 = 4 -> same
    # (6, 9, 4) -> pool (6, 10, 5) -> gap to 2 rows, columns kept: windows (5, 1), (6, 2, 5)
    assert graph.shapes["conv"] == (6, 9, 4) and graph.shapes["pool"] == (6, 10, 5)
    assert graph.shapes["gap"] == (6, 2, 5) and graph.nodes["gap"].kernel_size == (5, 1)
    assert graph.metadata["kind"] == "ann" and "timesteps" not in graph.metadata
    x = torch.randn(3, 4, 11, 12, dtype=torch.float64)
    with torch.no_grad():
        expected = body.double()(x)
    np.testing.assert_allclose(floatsim.forward(graph, x.numpy(), 1).numpy(), expected.numpy(),
                               rtol=0, atol=TOL)


# ------------------------------------------------------------------------------------------
# SNN round trips
# ------------------------------------------------------------------------------------------


def test_mlp_round_trip() -> None:
    _seed(1)
    body = nn.Sequential()
    body.add_module("flatten", nn.Flatten())
    body.add_module("fc1", nn.Linear(36, 40))
    body.add_module("lif1", L.LIF(0.9, 0.5))
    body.add_module("fc2", nn.Linear(40, 30, bias=False))
    body.add_module("lif2", L.LIF(0.6, 0.3, reset="zero"))
    body.add_module("out", nn.Linear(30, 5, bias=False))
    body.add_module("acc", L.Accumulator())
    trains = _check_snn(L.SpikingNet(body, 12), (1, 6, 6))
    assert set(trains) == {"lif1", "lif2"}


def test_cnn_bntt_round_trip() -> None:
    _seed(2)
    T = 6
    body = nn.Sequential()
    body.add_module("conv1", nn.Conv2d(2, 8, 3, padding=1, bias=False))
    body.add_module("bntt1", L.BNTT(8, T))
    body.add_module("lif1", L.LIF(0.95, 1.0))
    body.add_module("pool1", nn.AvgPool2d(2))
    body.add_module("conv2", nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False))
    body.add_module("bntt2", L.BNTT(8, T))
    body.add_module("lif2", L.LIF(0.9, 0.8))
    body.add_module("gap", nn.AdaptiveAvgPool2d(1))
    body.add_module("flatten", nn.Flatten())
    body.add_module("fc1", nn.Linear(8, 16, bias=False))
    body.add_module("bntt_fc1", L.BNTT(16, T, dims=1))
    body.add_module("lif_fc1", L.LIF(0.8, 1.0))
    body.add_module("out", nn.Linear(16, 4, bias=False))
    body.add_module("acc", L.Accumulator())
    net = L.SpikingNet(body, T).double()
    _train_bn_stats(net, (2, 8, 8))
    scale, shift = body.bntt1.inference_affine()
    assert not torch.allclose(scale[0], scale[1]) and shift.abs().min() > 0  # per-step stats
    graph = from_torch(net, in_shape=(2, 8, 8))
    bntt = graph.nodes["bntt1"]
    assert isinstance(bntt, BNTT) and bntt.scale.shape == (T, 8)
    np.testing.assert_array_equal(bntt.shift, shift.numpy())
    _check_snn(net, (2, 8, 8))


def test_order_b_if_and_dt_round_trip() -> None:
    """Order B (fire from the previous potential) with zero reset, IF (λ = 1) and a LIF with
    λ = 1 via leak, at dt = 0.5 ms: the Euler form with tau = dt/(1-λ) is the discrete LIF."""
    _seed(3)
    body = nn.Sequential()
    body.add_module("conv1", nn.Conv2d(1, 6, 3, bias=False))
    body.add_module("lif1", L.LIF(0.7, 0.6, order="fire_integrate", reset="zero"))
    body.add_module("flatten", nn.Flatten())
    body.add_module("fc1", nn.Linear(6 * 4 * 4, 20, bias=False))
    body.add_module("if1", L.IF(0.7, order="fire_integrate"))
    body.add_module("fc2", nn.Linear(20, 20, bias=False))
    body.add_module("if2", L.LIF(1.0, 0.4))
    body.add_module("out", nn.Linear(20, 3, bias=False))
    body.add_module("acc", L.Accumulator())
    trains = _check_snn(L.SpikingNet(body, 10), (1, 6, 6), dt=5e-4)
    # order B: a layer cannot fire before step l (1-based depth); lif1 is silent at t = 0,
    # if1 (the second order-B layer) at t = 0 and 1
    assert trains["lif1"][..., 0].sum() == 0 and trains["if1"][..., :2].sum() == 0
    assert trains["lif1"][..., 1:].sum() > 0 and trains["if1"][..., 2:].sum() > 0


class _Block(nn.Module):
    """A residual block: conv-BNTT-LIF twice, plus a 1x1 shortcut when channels change."""

    def __init__(self, cin: int, cout: int, T: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = L.BNTT(cout, T)
        self.lif1 = L.LIF(0.9, 1.0)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = L.BNTT(cout, T)
        self.lif2 = L.LIF(0.9, 1.0)
        self.shortcut = nn.Identity() if cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, bias=False), L.LIF(0.5, 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lif2(self.bn2(self.conv2(self.lif1(self.bn1(self.conv1(x))))))
        return y + self.shortcut(x)


class _ResNet(nn.Module):
    def __init__(self, T: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.lif0 = L.LIF(0.9, 0.5)
        self.layer1 = _Block(4, 4, T)
        self.layer2 = _Block(4, 8, T)
        self.out = nn.Linear(8 * 2 * 2, 3, bias=False)
        self.acc = L.Accumulator()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(F.avg_pool2d(self.layer1(self.lif0(self.stem(x))), 2))
        x = F.adaptive_avg_pool2d(x, 2)
        return self.acc(self.out(x.view(x.size(0), -1)))


def test_resnet_round_trip() -> None:
    _seed(4)
    net = L.SpikingNet(_ResNet(5), 5).double()
    _train_bn_stats(net, (2, 8, 8))
    graph = from_torch(net, in_shape=(2, 8, 8))
    assert graph.predecessors("add") == ["layer1_lif2", "lif0"]  # identity shortcut
    assert graph.predecessors("add_1") == ["layer2_lif2", "layer2_shortcut_1"]
    assert "layer2_shortcut_0" in graph.nodes and "view" in graph.nodes
    _check_snn(net, (2, 8, 8))


class _Inception(nn.Module):
    """Two branches concatenated on channels (torch.cat(dim=1)), functional ops throughout."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 3, 1, bias=False)
        self.b = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.lif_a, self.lif_b = L.LIF(0.8, 0.4), L.LIF(0.8, 0.6)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(10 * 3 * 3, 4, bias=False)
        self.acc = L.Accumulator()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ya, yb = self.lif_a(self.a(x)), self.lif_b(self.b(x))
        p = F.avg_pool2d(torch.cat([ya, yb], dim=1), kernel_size=2)
        q = F.avg_pool2d(self.drop(torch.cat((yb, ya), 1)), 2, 2)
        z = torch.concat((p, q), -3)  # negative dim
        return self.acc(self.fc(torch.flatten(z, 1)))


def test_concat_round_trip() -> None:
    _seed(5)
    net = L.SpikingNet(_Inception(), 6)
    graph = from_torch(net.double().eval(), in_shape=(1, 6, 6))
    assert graph.predecessors("cat") == ["lif_a", "lif_b"] and graph.shapes["cat"] == (5, 6, 6)
    assert graph.predecessors("cat_1") == ["lif_b", "lif_a"]  # input order kept, drop skipped
    assert graph.predecessors("concat") == ["avg_pool2d", "avg_pool2d_1"]
    assert graph.shapes["concat"] == (10, 3, 3)
    _check_snn(net, (1, 6, 6))


def test_poisson_input_replayed() -> None:
    """A Poisson-coded run: the encoder's spikes, fed to floatsim as a (B, *shape, T) input,
    give the same logits and spikes."""
    _seed(6)
    T = 8
    body = nn.Sequential(nn.Flatten(), nn.Linear(16, 12, bias=False), L.LIF(0.9, 0.4),
                         nn.Linear(12, 3, bias=False), L.Accumulator())
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    encoded = torch.stack([L.PoissonEncoder(1.0, gen)(x, t) for t in range(T)], dim=-1)
    assert set(np.unique(encoded.numpy())) <= {-1.0, 0.0, 1.0}

    class Replay(nn.Module):
        def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
            return encoded[..., t]

    net = L.SpikingNet(body, T, Replay())
    with pytest.raises(UnsupportedError, match="encoder .*Replay"):
        from_torch(net, in_shape=(1, 4, 4))
    meta = from_torch(L.SpikingNet(body, T, L.PoissonEncoder(1.0)), in_shape=(1, 4, 4)).metadata
    assert (meta["encoder"], meta["encoder_rescale"]) == ("poisson", 1.0)
    _check_snn(net, (1, 4, 4), x=x, steps_input=encoded)


# ------------------------------------------------------------------------------------------
# ANN round trip
# ------------------------------------------------------------------------------------------


class _ANN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8, affine=False)
        self.fc1 = nn.Linear(8 * 4 * 4, 20)
        self.bn_fc = nn.BatchNorm1d(20)
        self.skip = nn.Identity()
        self.fc2 = nn.Linear(20, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        x = torch.relu(self.bn2(self.conv2(x))).relu()
        x = x.reshape(x.shape[0], -1)
        x = F.relu(self.bn_fc(self.fc1(x)))
        return self.fc2(F.dropout(self.skip(x), 0.5, training=False))


def test_ann_with_batchnorm_round_trip() -> None:
    _seed(7)
    model = _ANN().double()
    _train_bn_stats(model, (3, 8, 8))
    graph = from_torch(model, in_shape=(3, 8, 8))
    assert [type(n).__name__ for n in graph.nodes.values()] == [
        "Input", "Conv2d", "BatchNorm", "ReLU", "AvgPool2d", "Conv2d", "BatchNorm", "ReLU",
        "ReLU", "Flatten", "Affine", "BatchNorm", "ReLU", "Affine"]
    bn = model.bn1
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    np.testing.assert_allclose(graph.nodes["bn1"].scale, scale, rtol=1e-15)
    np.testing.assert_allclose(graph.nodes["bn1"].shift,
                               bn.bias.detach().numpy() - scale * bn.running_mean.numpy(),
                               rtol=1e-14)
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
    got = floatsim.forward(graph, x.numpy(), 1)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0, atol=TOL)


# ------------------------------------------------------------------------------------------
# Errors and extension
# ------------------------------------------------------------------------------------------


class _MyNeuron(L.StatefulModule):
    """A custom neuron the frontend does not know: ``v <- v/2 + I``, spike at v > 1, v -= 1."""

    def __init__(self) -> None:
        super().__init__()
        self.v = None

    def reset_state(self) -> None:
        self.v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x if self.v is None else self.v / 2 + x
        s = (v > 1.0).to(x.dtype)
        self.v = v - s
        return s


class _Bad(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.block = nn.Sequential(nn.MaxPool2d(2), _MyNeuron())
        self.rnn = nn.LSTM(4, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(self.block(self.conv(x)))
        y = self.rnn(y.flatten(2))[0] * 2
        return self.fc(y.mean((1, 2)).unsqueeze(1).expand(-1, 4))


def test_unsupported_lists_every_offender() -> None:
    with pytest.raises(UnsupportedError) as info:
        from_torch(_Bad(), in_shape=(1, 8, 8))
    msg = str(info.value)
    assert "\n" not in msg
    for offender in ("block.0 (nn.MaxPool2d)", "block.1 (", "_MyNeuron)", "rnn (nn.LSTM)",
                     "sigmoid (torch.sigmoid)", "mul (operator.mul)", "mean (Tensor.mean)",
                     "expand (Tensor.expand)"):
        assert offender in msg, offender
    assert msg.startswith("cannot convert ")
    assert "nn.Conv2d" in msg and "models.layers.LIF" in msg  # the supported list
    assert "register_module" in msg


@pytest.mark.parametrize("layer, problem", [
    (nn.Conv2d(1, 2, 2, padding="same"), "pads asymmetrically"),
    (nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"), "padding_mode='circular'"),
    (nn.AvgPool2d(2, ceil_mode=True), "ceil_mode=True"),
    (nn.AvgPool2d(3, padding=1, count_include_pad=False), "count_include_pad=False"),
    (nn.AdaptiveAvgPool2d(3), "does not divide"),
    (nn.BatchNorm2d(1, track_running_stats=False), "track_running_stats=False"),
    (nn.Linear(8, 2), "flatten first"),
    (nn.Flatten(start_dim=2), r"flatten\(start_dim=2, end_dim=-1\) of a rank-4 batch"),
])
def test_unsupported_settings(layer: nn.Module, problem: str) -> None:
    with pytest.raises(UnsupportedError, match=problem):
        from_torch(nn.Sequential(layer).eval(), in_shape=(1, 8, 8))


def test_other_errors() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Sequential(_Gate())

        def forward(self, x):
            return self.inner(x)

    with pytest.raises(UnsupportedError, match=r"cannot trace Branchy in inner\.0 \(.*_Gate\)"):
        from_torch(Branchy(), in_shape=(4,))
    layer = L.LIF(0.9)
    with pytest.raises(UnsupportedError, match="called more than once"):
        from_torch(_Twice(layer), in_shape=(4,))
    with pytest.raises(UnsupportedError, match="adding a constant"):
        from_torch(_AddConst(), in_shape=(4,))
    with pytest.raises(InvalidIRError, match="in_shape"):
        from_torch(nn.ReLU(), in_shape=(2, 3))
    with pytest.raises(NeurodeployError, match="dt=0"):
        from_torch(nn.ReLU(), in_shape=(3,), dt=0)
    with pytest.raises(InvalidIRError, match="weight has 5 inputs"):
        from_torch(nn.Linear(5, 2), in_shape=(4,))
    with pytest.warns(UserWarning, match="training mode; it is converted with eval"):
        from_torch(nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)), in_shape=(4,))


class _Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            return x
        return -x


class _Twice(nn.Module):
    def __init__(self, lif: nn.Module) -> None:
        super().__init__()
        self.lif = lif

    def forward(self, x):
        return self.lif(self.lif(x))


class _AddConst(nn.Module):
    def forward(self, x):
        return F.relu(x) + 1.0


def _my_neuron_converter(module: nn.Module, name: str, in_shapes):
    # v <- v/2 + I is the discrete LIF with λ = 0.5: tau = dt/(1-λ) = 2 dt, r = 2
    dt = ftorch.current_dt()
    return [(name, LIF(tau=np.array(2 * dt), r=np.array(2.0), v_leak=np.array(0.0),
                       v_threshold=np.array(1.0), v_reset=np.array(0.0), reset="subtract"))]


def test_registered_custom_module(monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(8)
    body = nn.Sequential(nn.Flatten(), nn.Linear(9, 10, bias=False), _MyNeuron(),
                         nn.Linear(10, 2, bias=False), L.Accumulator())
    net = L.SpikingNet(body, 9).double()
    with pytest.raises(UnsupportedError, match="_MyNeuron"):
        from_torch(net, in_shape=(1, 3, 3))
    # per call...
    graph = from_torch(net, in_shape=(1, 3, 3), module_map={_MyNeuron: _my_neuron_converter},
                       dt=0.25)
    assert isinstance(graph.nodes["_2"], LIF) and float(graph.nodes["_2"].tau) == 0.5
    assert _MyNeuron not in ftorch.MODULE_MAP
    # ...and registered for good
    monkeypatch.setitem(ftorch.MODULE_MAP, _MyNeuron, None)  # restored after the test
    register_module(_MyNeuron, _my_neuron_converter)
    assert any(name.endswith("_MyNeuron") for name in supported_modules())
    graph = from_torch(net, in_shape=(1, 3, 3))
    x = torch.rand(3, 1, 3, 3, dtype=torch.float64) * 3
    with torch.no_grad():
        logits, _ = net.run(x)
    result = floatsim.run(graph, x.numpy(), net.timesteps, record={"_2": ["s"]})
    np.testing.assert_allclose(result.traces["_4.out"][..., -1] / net.timesteps,
                               logits.numpy(), rtol=0, atol=TOL)
    assert result.traces["_2.s"].sum() > 0
    with pytest.raises(TypeError):
        register_module(int, _my_neuron_converter)


# ------------------------------------------------------------------------------------------
# The model zoo
# ------------------------------------------------------------------------------------------

zoo = pytest.importorskip("neurodeploy.models.zoo")

_ZOO_CASES = [
    ("mlp", dict(in_shape=(36,), width=0.1)),
    ("cnn", dict(in_shape=(1, 12, 12), width=0.25, bntt=True)),
    ("cnn", dict(in_shape=(2, 8, 8), width=0.25, order="fire_integrate", leak=1.0)),
    ("vgg5", dict(in_shape=(3, 8, 8), width=0.05, bntt=True)),
    ("vgg9", dict(in_shape=(3, 8, 8), width=0.05, bntt=True)),
    ("vgg11", dict(in_shape=(3, 32, 32), width=0.02, bntt=True)),
    ("resnet", dict(in_shape=(3, 8, 8), width=0.25, bntt=True, blocks=1)),
    ("resnet", dict(in_shape=(3, 8, 8), width=0.25, reset="zero")),
]


@pytest.mark.parametrize("arch, options", _ZOO_CASES,
                         ids=[f"{a}-{i}" for i, (a, _) in enumerate(_ZOO_CASES)])
def test_zoo_snn_round_trip(arch: str, options: dict) -> None:
    _seed(9)
    config = zoo.default_config(arch, num_classes=4, timesteps=5, threshold=0.5, **options)
    net = zoo.build_model(config).double()
    if options.get("bntt"):
        _train_bn_stats(net, tuple(options["in_shape"]), batches=2)
    net.eval()
    graph = from_torch(net, in_shape=tuple(options["in_shape"]))
    assert graph.metadata["timesteps"] == 5 and graph.metadata["kind"] == "snn"
    _check_snn(net, tuple(options["in_shape"]), batch=3)


@pytest.mark.parametrize("arch, options", _ZOO_CASES[:1] + _ZOO_CASES[3:4] + _ZOO_CASES[6:7],
                         ids=["mlp", "vgg5", "resnet"])
def test_zoo_ann_round_trip(arch: str, options: dict) -> None:
    _seed(10)
    config = zoo.default_config(arch, num_classes=4, kind="ann", **options)
    model = zoo.build_model(config).double()
    if options.get("bntt"):
        _train_bn_stats(model, tuple(options["in_shape"]), batches=2)
    model.eval()
    graph = from_torch(model, in_shape=tuple(options["in_shape"]))
    assert graph.metadata["kind"] == "ann" and "out" in graph.nodes  # body names, no "body_"
    x = torch.randn(4, *options["in_shape"], dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
    np.testing.assert_allclose(floatsim.forward(graph, x.numpy(), 1).numpy(), expected.numpy(),
                               rtol=0, atol=TOL)


def test_loihi_layers_through_a_module_map() -> None:
    """Fixed-point QAT layers convert through the module map (converter -> QConv2d/QDense +
    QCubaLIF chain) to the same nodes as models.loihi.to_graph."""
    loihi = pytest.importorskip("neurodeploy.models.loihi")

    def convert(m, name, in_shapes):
        return [(f"{name}_syn", m.synapse_node()),
                (name, m.neuron_node(m.output_shape(in_shapes[0])))]

    _seed(11)
    decays = dict(threshold=100, current_decay=1024, voltage_decay=256)
    layers = [loihi.LoihiConv2d(2, 4, 3, **decays),
              loihi.LoihiDense(4 * 4 * 4, 5, bias=True, **decays)]
    reference = loihi.to_graph(loihi.LoihiNet(layers, 4, (2, 6, 6)))
    graph = from_torch(nn.Sequential(layers[0], nn.Flatten(), layers[1]), in_shape=(2, 6, 6),
                       module_map={loihi.LoihiConv2d: convert, loihi.LoihiDense: convert})
    assert list(graph.nodes) == ["input", "_0_syn", "_0", "_1", "_2_syn", "_2"]
    assert graph.stage == "fixed" and len(graph.nodes) == len(reference.nodes)
    for ours, theirs in zip(graph.nodes.values(), reference.nodes.values()):
        assert ours.same_as(theirs), (ours, theirs)
    assert graph.edges == tuple(zip(list(graph.nodes)[:-1], list(graph.nodes)[1:]))


def test_converted_graph_survives_serialization(tmp_path: Path) -> None:
    from neurodeploy.ir.serialize import load_graph, save_graph

    _seed(12)
    net = L.SpikingNet(_ResNet(4), 4).double()
    _train_bn_stats(net, (2, 8, 8), batches=1)
    graph = from_torch(net, in_shape=(2, 8, 8))
    save_graph(graph, tmp_path / "resnet.ir.h5")
    back = load_graph(tmp_path / "resnet.ir.h5")
    assert back.metadata == graph.metadata and back.edges == graph.edges
    x = np.random.default_rng(0).uniform(0, 2, (2, 2, 8, 8))
    a = floatsim.run(graph, x, 4, record=["s", "v"]).traces
    b = floatsim.run(back, x, 4, record=["s", "v"]).traces
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
