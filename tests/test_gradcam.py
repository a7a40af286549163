"""Grad-CAM baselines: the ANN form against its closed form on a network whose gradient is
known (ReLU → global average pool → linear), the SNN-crafted form against the closed form
when the target layer feeds the read-out directly (∂y/∂A[t] = W/T: the reset is detached, so
no gradient reaches later steps), both alpha modes, input replay and the errors."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from neurodeploy.errors import NeurodeployError
from neurodeploy.gradcam import ann_layer_name, find_layer, gradcam_ann, gradcam_snn, replay_inputs
from neurodeploy.models.layers import LIF, Accumulator, SpikingNet


class _ANN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(2, 3, 3, padding=1)), ("relu1", nn.ReLU()),
            ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
            ("fc", nn.Linear(3, 4)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_gradcam_ann_closed_form(one_thread):
    model = _ANN()
    x = torch.randn(2, 2, 5, 5)
    target = np.array([1, 3])
    cam = gradcam_ann(model, x, "relu1", target)
    # y_c = Σ_k W[c,k]·mean_ij A_k + b  →  α_k = W[c,k]/25 for every pixel, mean → W[c,k]/25
    with torch.no_grad():
        a = model.body.relu1(model.body.conv1(x))
        w = model.body.fc.weight[torch.as_tensor(target)] / 25.0  # (B, K)
        want = torch.relu((w[:, :, None, None] * a).sum(dim=1)).double().numpy()
    np.testing.assert_allclose(cam, want, rtol=1e-6, atol=1e-9)
    assert cam.shape == (2, 5, 5)
    # default target: the predicted class
    pred = model(x).argmax(dim=1).numpy()
    np.testing.assert_allclose(gradcam_ann(model, x, "relu1"), gradcam_ann(model, x, "relu1",
                                                                           pred))


def _snn(steps: int = 5) -> SpikingNet:
    torch.manual_seed(1)
    body = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 4, 3, padding=1, bias=False)),
        ("lif1", LIF(leak=0.9, threshold=0.5)),
        ("conv2", nn.Conv2d(4, 3, 3, padding=1, bias=False)),
        ("lif2", LIF(leak=0.9, threshold=0.5)),
        ("flatten", nn.Flatten()),
        ("out", nn.Linear(3 * 6 * 6, 5, bias=False)),
        ("acc", Accumulator()),
    ]))
    with torch.no_grad():
        body.conv1.weight.mul_(3.0)
        body.conv2.weight.mul_(3.0)
    return SpikingNet(body, steps)


@pytest.mark.parametrize("alpha_mode", ["time_sum", "per_t"])
def test_gradcam_snn_closed_form_at_the_last_spiking_layer(alpha_mode, one_thread):
    net = _snn()
    T = net.timesteps
    x = torch.rand(2, 1, 6, 6) * 2
    target = np.array([0, 4])
    cam = gradcam_snn(net, x, "lif2", target, alpha_mode=alpha_mode)
    with torch.no_grad():
        _, rec = net.run(x, record=True)
    a = torch.stack(rec["lif2"], dim=1)  # (B, T, 3, 6, 6)
    assert 0.05 < float(a.mean()) < 0.95
    # y = (1/T) Σ_t W_c · flatten(A[t])  →  ∂y/∂A[t,k,i,j] = W[c,(k,i,j)]/T at every step
    w = net.body.out.weight.detach()[torch.as_tensor(target)].reshape(2, 3, 6, 6) / T
    alpha = w.mean(dim=(2, 3))  # per step
    if alpha_mode == "time_sum":
        alpha = alpha * T
    want = torch.relu((alpha[:, None, :, None, None] * a).sum(dim=2)).double().numpy()
    np.testing.assert_allclose(cam, want, rtol=1e-5, atol=1e-9)
    assert cam.shape == (2, T, 6, 6)


def test_gradcam_snn_through_the_surrogate(one_thread):
    net = _snn()
    x = torch.rand(3, 1, 6, 6) * 2
    cam = gradcam_snn(net, x, "lif1", [0, 1, 2], alpha_mode="per_t")
    assert cam.shape == (3, 5, 6, 6) and np.all(cam >= 0) and cam.any()
    # the model is left as it was (eval/train mode, no hooks)
    assert not net.body.lif1._forward_hooks and net.training


def test_replay_inputs_feeds_the_given_steps():
    net = _snn(steps=3)
    x = torch.zeros(1, 1, 6, 6)
    trains = torch.zeros(1, 1, 6, 6, 3)
    trains[..., 1] = 5.0  # only step 1 carries input
    with torch.no_grad(), replay_inputs(net, trains):
        _, rec = net.run(x, record=True)
    assert not rec["lif1"][0].any() and rec["lif1"][1].any()
    with torch.no_grad():
        _, rec0 = net.run(x, record=True)  # the encoder is back: zero input
    assert not torch.stack(rec0["lif1"]).any()


def test_names_and_errors():
    assert ann_layer_name("lif2") == "relu2"
    assert ann_layer_name("block1.lif1") == "block1.relu1"
    assert ann_layer_name("lif_fc1") == "relu_fc1"
    net = _snn()
    assert find_layer(net, "lif2")[0] == "lif2"
    with pytest.raises(NeurodeployError, match="unknown layer 'lif9'.*lif1, lif2"):
        gradcam_snn(net, torch.zeros(1, 1, 6, 6), "lif9")
    with pytest.raises(NeurodeployError, match="alpha_mode"):
        gradcam_snn(net, torch.zeros(1, 1, 6, 6), "lif1", alpha_mode="sum")
    with pytest.raises(NeurodeployError, match="target labels"):
        gradcam_snn(net, torch.zeros(1, 1, 6, 6), "lif1", [7])
    with pytest.raises(NeurodeployError, match="conv layer"):
        gradcam_ann(_ANN(), torch.zeros(1, 2, 5, 5), "fc")
    with pytest.raises(NeurodeployError, match="SpikingNet"):
        gradcam_snn(_ANN(), torch.zeros(1, 2, 5, 5), "relu1")
