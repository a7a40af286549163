"""HIRE-SNN training (models/train.py, reference/algorithms.md §9): N = 1 with ε = 0 is
standard training bit for bit; N = 2 doubles the optimizer steps; period n runs BNTT steps
n·T/N … and carries the (detached) state; the noise δ follows the hand-worked sign rule, stays
within ±ε and keeps inputs in the pixel range; options are validated before training."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from neurodeploy.errors import NeurodeployError
from neurodeploy.models.checkpoint import load_checkpoint
from neurodeploy.models.data import Dataset, load_splits, make_loader, subset
from neurodeploy.models.layers import BNTT, Accumulator, SpikingNet
from neurodeploy.models.train import (evaluate, hire_batch, hire_options, pixel_box,
                                      train)
from neurodeploy.models.zoo import build_model, default_config

T = 4


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, Dataset]:
    train_set, test_set = load_splits("digits", seed=0)
    return subset(train_set, 160, seed=0), subset(test_set, 80, seed=0)


def tiny_config(kind: str = "snn") -> dict:
    return default_config("cnn", in_shape=(1, 8, 8), num_classes=10, timesteps=T, kind=kind,
                          bntt=True, features=[8, "P"], hidden=[32])


def state(folder) -> dict[str, torch.Tensor]:
    return torch.load(folder / "model.pt", weights_only=True)["state_dict"]


def count_adam_steps(monkeypatch) -> list[int]:
    calls = [0]
    original = torch.optim.Adam.step

    def counting(self, *args, **kwargs):
        calls[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counting)
    return calls


def test_one_period_without_noise_is_standard_training(tmp_path, digits, monkeypatch):
    calls = count_adam_steps(monkeypatch)
    kw = dict(epochs=1, batch_size=32, lr=1e-2, seed=2, progress=False)
    std = train(tiny_config(), digits, out_dir=tmp_path / "std", **kw)
    assert calls[0] == 5  # 160 samples / 32
    hire = train(tiny_config(), digits, out_dir=tmp_path / "hire",
                 hire={"periods": 1, "eps": 0.0}, **kw)
    assert calls[0] == 10 and std["optimizer_steps"] == hire["optimizer_steps"] == 5
    a, b = state(tmp_path / "std"), state(tmp_path / "hire")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert hire["history"][0]["loss"] == std["history"][0]["loss"]
    assert hire["test_accuracy"] == std["test_accuracy"]
    assert std["hire"] is None


def test_two_periods_double_the_steps_and_write_an_ordinary_checkpoint(tmp_path, digits,
                                                                       monkeypatch):
    calls = count_adam_steps(monkeypatch)
    kw = dict(epochs=1, batch_size=32, lr=1e-2, seed=2, progress=False)
    std = train(tiny_config(), digits, out_dir=tmp_path / "std", **kw)
    n_std = calls[0]
    out = tmp_path / "hire"
    result = train(tiny_config(), digits, out_dir=out, hire={"periods": 2, "eps": 0.0}, **kw)
    assert calls[0] - n_std == 2 * n_std == 10 and result["optimizer_steps"] == 10
    a, b = state(tmp_path / "std"), state(out)
    assert not all(torch.equal(a[k], b[k]) for k in a)
    stored = json.loads((out / "train.json").read_text())
    assert stored["hire"] == {"periods": 2, "eps": 0.0, "carry_state": True,
                              "carry_noise": False, "pixel_range": [0.0, 16.0],
                              "steps_per_period": 2}
    assert stored["optimizer_steps"] == 10 and std["optimizer_steps"] == 5
    # the architecture is unchanged: same config.json, an ordinary checkpoint whose stored
    # accuracy is the full-window run on clean inputs
    assert json.loads((out / "config.json").read_text()) == tiny_config()
    model, config, metrics = load_checkpoint(out / "model.pt")
    assert config == tiny_config() and metrics["hire_periods"] == 2
    assert evaluate(model, digits[1]) == pytest.approx(result["test_accuracy"])


def test_noisy_hire_training_learns(tmp_path, digits):
    result = train(tiny_config(), digits, out_dir=tmp_path / "run", epochs=3, batch_size=16,
                   lr=1e-2, seed=0, progress=False,
                   hire={"periods": 2, "eps": 0.1, "carry_noise": True})
    assert result["hire"]["eps"] == 0.1 and result["optimizer_steps"] == 3 * 10 * 2
    assert result["test_accuracy"] > 0.4  # chance 0.1; seeds 0-2 gave 0.55-0.69


def bntt_trace(model: nn.Module) -> list[int]:
    """Records which per-step BN of the first BNTT layer runs, in order."""
    bntt = next(m for m in model.modules() if isinstance(m, BNTT))
    seen: list[int] = []
    for t, bn in enumerate(bntt.bn):
        bn.register_forward_hook(lambda *_args, t=t: seen.append(t))
    return seen


@pytest.mark.parametrize("carry_state", [True, False])
def test_periods_use_their_own_bntt_steps_and_carry_state(digits, carry_state):
    torch.manual_seed(0)
    model = build_model(tiny_config()).train()
    x, y = digits[0].x[:16], digits[0].y[:16]
    with torch.no_grad():
        full = model(x)  # full window, train-mode BNTT (batch statistics)
    seen = bntt_trace(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    out = hire_batch(model, x, y, opt, periods=2, eps=0.0, box=pixel_box(digits[0]),
                     carry_state=carry_state)
    assert seen == [0, 1, 2, 3]  # period 2 runs steps T/N..T-1 = 2, 3
    assert len(out.losses) == 2
    # with the state carried (and weights unchanged), the mean of the periods' logits is the
    # full window's accumulator / T; restarting the state in period 2 changes it
    assert torch.allclose(out.logits, full, atol=1e-6) == carry_state
    four = hire_batch(model, x, y, opt, periods=4, eps=0.0, box=pixel_box(digits[0]))
    assert seen[4:] == [0, 1, 2, 3] and torch.allclose(four.logits, full, atol=1e-6)


def test_run_start_offsets_the_encoder_and_bntt():
    class StepEncoder(nn.Module):
        def forward(self, x, t):
            return x * (t + 1)

    net = SpikingNet(nn.Sequential(nn.Identity(), Accumulator()), timesteps=4,
                     encoder=StepEncoder())
    x = torch.ones(1, 1)
    assert float(net.run(x)[0]) == pytest.approx((1 + 2 + 3 + 4) / 4)
    # steps 2, 3: the accumulator restarts, so the logits are (3 + 4) / 2
    assert float(net.run(x, 2, start=2, carry_state=True)[0]) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="start"):
        net.run(x, 2, start=-1)


def linear_net() -> SpikingNet:
    """logits = x (identity weights), the same at every step."""
    fc = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.eye(2))
    return SpikingNet(nn.Sequential(fc, Accumulator()), timesteps=4)


def test_noise_update_by_hand():
    # pixels p in [0, 1], normalized with mean 0.5 and std 0.25: x = (p - 0.5) / 0.25
    pix = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.05, 0.98]])
    y = torch.tensor([0, 1, 0])
    ds = Dataset(x=(pix - 0.5) / 0.25, y=y, num_classes=2, in_shape=(2,), name="toy",
                 normalization=((0.5,), (0.25,)))
    box = pixel_box(ds, (0.0, 1.0))
    assert float(box.unit) == 4.0 and float(box.origin) == -2.0
    net = linear_net()
    inputs: list[torch.Tensor] = []
    net.body.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach()))
    eps = 0.1
    out = hire_batch(net, ds.x, y, torch.optim.SGD(net.parameters(), lr=0.0), periods=2,
                     eps=eps, box=box)
    # period 1: dCE/dlogits = softmax - onehot; logits = x, so ∂L/∂x has the sign of
    # (p0 - 1, p1) for y = 0 -> (-, +), and (+, -) for y = 1: δ = ∓ε, ±ε
    expected_delta = torch.tensor([[-eps, eps], [eps, -eps], [-eps, eps]])
    assert torch.equal(out.delta, expected_delta)
    # period 2 inputs (2 steps per period, each step sees the same input): clean + δ, with
    # sample 3's pixels 0.05 - 0.1 and 0.98 + 0.1 clipped to 0 and 1
    seen2 = inputs[2]
    assert torch.allclose(inputs[0], ds.x) and torch.equal(inputs[0], inputs[1])
    assert torch.allclose(seen2, torch.tensor([[-0.4, 0.4], [0.4, -0.4], [-2.0, 2.0]]))
    assert torch.allclose(box.to_pixels(seen2)[2], torch.tensor([0.0, 1.0]))

    def ce(a: float, b: float, label: int) -> float:  # cross-entropy of logits (a, b)
        z = (a, b)
        return math.log(math.exp(a) + math.exp(b)) - z[label]

    l1 = (ce(0, 0, 0) + ce(0, 0, 1) + ce(-1.8, 1.92, 0)) / 3
    l2 = (ce(-0.4, 0.4, 0) + ce(0.4, -0.4, 1) + ce(-2, 2, 0)) / 3
    assert out.losses == pytest.approx([l1, l2], rel=1e-6)
    assert l2 > l1  # the crafted noise raises the loss
    # the sign persists in period 2, so the update saturates at ±ε (clip), not ±2ε
    again = hire_batch(net, ds.x, y, torch.optim.SGD(net.parameters(), lr=0.0), periods=2,
                       eps=eps, box=box, delta=out.delta)
    assert torch.equal(again.delta, expected_delta)


def test_noise_stays_within_eps_and_inputs_within_pixels(digits):
    torch.manual_seed(1)
    model = build_model(tiny_config()).train()
    box = pixel_box(digits[0])
    assert box.pixel_range == (0.0, 16.0)  # sklearn digits: values 0..16
    inputs: list[torch.Tensor] = []
    model.body.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach()))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    eps, delta, batches = 0.25, None, 0
    for x, y in make_loader(digits[0], 48, shuffle=True):  # 48, 48, 48, 16 samples
        inputs.clear()
        out = hire_batch(model, x, y, opt, periods=2, eps=eps, box=box, delta=delta)
        if batches == 1:  # carried from a 48-sample batch into a 48-sample batch
            assert torch.equal(inputs[0], box.perturb(x, delta))
        delta, batches = out.delta, batches + 1
        assert set(delta.unique().tolist()) <= {-eps, 0.0, eps}
        assert (delta != 0).float().mean() > 0.5  # the noise is really applied
        clean = box.to_pixels(x)
        for seen in inputs:  # T = 4 steps: two per period
            p = box.to_pixels(seen)
            assert p.min() >= -1e-6 and p.max() <= 1 + 1e-6
            assert (p - clean).abs().max() <= eps + 1e-5
        # period 1 sees the carried noise (none in the first batch), period 2 the new one
        assert torch.equal(inputs[0], x) == (batches == 1)
        assert not torch.equal(inputs[2], inputs[0])
    assert batches == 4 and delta.shape[0] == 16  # cut to the last, smaller batch


def test_pixel_box_is_per_channel_and_exact_on_clean_inputs():
    raw = torch.tensor([[[[0.0, 255.0]], [[10.0, 200.0]]]])  # (1, 2, 1, 2) in 0..255
    mean, std = (3.0, 100.0), (7.0, 50.0)
    x = (raw - torch.tensor(mean).view(1, 2, 1, 1)) / torch.tensor(std).view(1, 2, 1, 1)
    ds = Dataset(x=x, y=torch.tensor([0]), num_classes=1, in_shape=(2, 1, 2), name="rgb",
                 normalization=(mean, std))
    box = pixel_box(ds, (0, 255))
    assert box.unit.flatten().tolist() == pytest.approx([255 / 7, 255 / 50])
    assert box.origin.flatten().tolist() == pytest.approx([-3 / 7, -2.0])
    assert torch.equal(box.perturb(x, torch.zeros_like(x)), x)
    assert torch.allclose(box.to_pixels(x).flatten(),
                          torch.tensor([0.0, 1.0, 10 / 255, 200 / 255]))
    shifted = box.to_pixels(box.perturb(x, torch.full_like(x, 0.1))).flatten()
    assert torch.allclose(shifted, torch.tensor([0.1, 1.0, 10 / 255 + 0.1, 200 / 255 + 0.1]))
    # inferred full scale (as in neurodeploy.attacks): 255 for values in [0, 255], 1 for
    # values in [0, 1], the largest value beyond 255; negative values have no pixel scale
    assert pixel_box(ds).pixel_range == (0.0, 255.0)

    def flat(values: list[float], name: str = "toy") -> Dataset:
        return Dataset(x=torch.tensor([values]), y=torch.tensor([0]), num_classes=1,
                       in_shape=(len(values),), name=name, normalization=((0.0,), (1.0,)))

    assert pixel_box(flat([0.25, 0.75])).pixel_range == (0.0, 1.0)
    assert pixel_box(flat([3.0, 700.0])).pixel_range == (0.0, 700.0)
    assert pixel_box(flat([3.0, 12.0], "digits")).pixel_range == (0.0, 16.0)
    assert pixel_box(flat([3.0, 40.0], "digits")).pixel_range == (0.0, 255.0)  # not sklearn's
    with pytest.raises(NeurodeployError, match="negative raw values"):
        pixel_box(flat([-1.0, 1.0]))
    assert pixel_box(flat([-1.0, 1.0]), (-1, 1)).pixel_range == (-1.0, 1.0)


def test_bad_hire_options_fail_before_training(tmp_path, digits):
    cases = [
        ({"periods": 0}, "periods"),
        ({"periods": 1.5}, "periods"),
        ({"periods": True}, "periods"),
        ({}, "periods"),
        ({"periods": 3}, "divide"),
        ({"periods": 2, "eps": -0.1}, "eps"),
        ({"periods": 2, "eps": 1.5}, "eps"),
        ({"periods": 2, "eps": "8/255"}, "eps"),
        ({"periods": 2, "carry_state": "yes"}, "carry_state"),
        ({"periods": 2, "carry_noise": 1}, "carry_noise"),
        ({"periods": 2, "pixel_range": (1, 0)}, "pixel_range"),
        ({"periods": 2, "steps": 3}, "unknown HIRE option"),
        (2, "must be a dict"),
    ]
    for hire, match in cases:
        with pytest.raises(NeurodeployError, match=match) as info:
            train(tiny_config(), digits, out_dir=tmp_path / "run", progress=False, hire=hire)
        assert "\n" not in str(info.value)
    with pytest.raises(NeurodeployError, match="needs an SNN"):
        train(tiny_config("ann"), digits, out_dir=tmp_path / "run", progress=False,
              hire={"periods": 1})
    assert list(tmp_path.iterdir()) == []
    assert hire_options(None, 4) is None
    assert hire_options({"periods": 4}, 4)["steps_per_period"] == 1
    with pytest.raises(NeurodeployError, match="SpikingNet"):
        hire_batch(nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long),
                   torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1), periods=1, eps=0.1,
                   box=pixel_box(Dataset(x=torch.tensor([[0.0, 1.0]]), y=torch.tensor([0]),
                                         num_classes=1, in_shape=(2,), name="toy",
                                         normalization=((0.0,), (1.0,)))))
