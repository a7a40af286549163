"""Adversarial attacks (neurodeploy.attacks): FGSM against a hand-computed gradient of a linear
model, PGD's projection, its one-step equivalence with FGSM and its restarts, seeded noise, the
straight-through gradient of the Poisson encoder against per-step gradients, the surrogate
override, the pixel space of the built-in data, the demo model's clean and attacked accuracy,
and ``run_attack`` end to end (deployed accuracy at ε = 0 against ``inference.evaluate``, the
robustness.json schema, determinism, bad arguments)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neurodeploy import attacks
from neurodeploy.attacks import PixelSpace, fgsm, gaussian_noise, pgd, seeded
from neurodeploy.errors import NeurodeployError, UnsupportedError
from neurodeploy.models.layers import LIF, Accumulator, PoissonEncoder, SpikingNet

EPS8 = 8 / 255


@pytest.fixture(autouse=True)
def _one_torch_thread(one_thread):
    """Every test here runs on one torch thread (see conftest's ``one_thread``)."""


# ------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------


def _linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    lin = nn.Linear(6, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(3, 6))
        lin.bias.copy_(torch.randn(3))
    return lin


@pytest.fixture(scope="module")
def demo():
    """The shipped demo SNN, its ANN twin and 200 mnist5k test samples in pixel space."""
    from neurodeploy.inference import load_eval_data
    from neurodeploy.models.checkpoint import load_checkpoint
    from neurodeploy.models.checkpoint import DEMO_MODEL

    snn, _, _ = load_checkpoint(DEMO_MODEL / "model.pt")
    ann, _, _ = load_checkpoint(DEMO_MODEL.with_name("demo_cnn_ann") / "model.pt")
    x, y, _ = load_eval_data("mnist5k", 200, (1, 28, 28))
    space = attacks.pixel_space("mnist5k", (1, 28, 28))
    p = torch.as_tensor(space.to_pixels(x), dtype=torch.float32)
    return snn, ann, space, x, p, torch.as_tensor(y)


def _loss(model, space, p, y):
    with torch.no_grad():
        return nn.functional.cross_entropy(model(space.to_model(p)), y, reduction="none")


def _accuracy(model, space, p, y):
    with torch.no_grad():
        return float((model(space.to_model(p)).argmax(1) == y).float().mean())


# ------------------------------------------------------------------------------------------
# FGSM and PGD on a linear model
# ------------------------------------------------------------------------------------------


def test_fgsm_equals_hand_computation():
    lin = _linear()
    space = PixelSpace(np.full(6, 2.0), np.full(6, 0.5))  # x = 2p - 0.5
    p = torch.tensor([[0.0, 0.2, 0.5, 0.99, 1.0, 0.3], [0.7, 0.0, 1.0, 0.4, 0.6, 0.02]])
    y = torch.tensor([2, 0])
    W, b = lin.weight.detach().double(), lin.bias.detach().double()
    z = 2.0 * p.double() - 0.5
    prob = torch.softmax(z @ W.T + b, dim=1)
    grad = 2.0 * (prob - nn.functional.one_hot(y, 3).double()) @ W  # dCE/dp by hand
    eps = 0.05
    expected = (p.double() + eps * grad.sign()).clamp(0, 1).float()
    got = fgsm(lin, p, y, eps, space=space)
    assert torch.allclose(got, expected, atol=1e-7)
    assert (got - p).abs().max() <= eps + 1e-7
    assert lin.weight.requires_grad and lin.training  # restored after the attack


def test_pgd_stays_in_ball_and_range():
    lin = _linear(1)
    g = torch.Generator().manual_seed(3)
    p = torch.rand(64, 6, generator=g)
    p[:8] = 0.0
    p[8:16] = 1.0
    y = torch.randint(0, 3, (64,), generator=g)
    eps = 0.1
    adv = pgd(lin, p, y, eps, steps=6, step_size=0.04, restarts=2, generator=seeded(0))
    assert (adv - p).abs().max() <= eps + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert (adv != p).any()
    base = _loss(lin, PixelSpace.identity(), p, y)
    assert float(_loss(lin, PixelSpace.identity(), adv, y).mean()) > float(base.mean())


def test_pgd_one_step_is_fgsm_on_the_snn(demo):
    snn, _, space, _, p, y = demo
    a = fgsm(snn, p[:16], y[:16], EPS8, space=space)
    b = pgd(snn, p[:16], y[:16], EPS8, steps=1, step_size=EPS8, random_start=False,
            space=space)
    assert torch.equal(a, b)
    assert (a != p[:16]).float().mean() > 0.5  # the gradient is nonzero almost everywhere


def test_pgd_restarts_keep_the_worst_case():
    lin = _linear(2)
    p = torch.rand(32, 6, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(32, dtype=torch.int64)
    ident = PixelSpace.identity()
    one = pgd(lin, p, y, 0.2, steps=2, step_size=0.02, generator=seeded(5))
    three = pgd(lin, p, y, 0.2, steps=2, step_size=0.02, restarts=3, generator=seeded(5))

    def key(adv):
        with torch.no_grad():
            logits = lin(adv)
        return (logits.argmax(1) != y).numpy(), _loss(lin, ident, adv, y).numpy()

    f1, l1 = key(one)
    f3, l3 = key(three)
    # the first restart draws the same start: per sample, 3 restarts are at least as bad
    assert np.all((f3 > f1) | ((f3 == f1) & (l3 >= l1 - 1e-6)))
    assert np.any(l3 > l1 + 1e-4)


def test_pgd_loss_at_least_fgsm_on_the_demo_snn(demo):
    snn, _, space, _, p, y = demo
    p, y = p[:32], y[:32]
    adv_f = fgsm(snn, p, y, EPS8, space=space)
    adv_p = pgd(snn, p, y, EPS8, steps=7, space=space, generator=seeded(0))
    lf, lp = _loss(snn, space, adv_f, y), _loss(snn, space, adv_p, y)
    assert float(lp.mean()) >= float(lf.mean())
    assert float(lf.mean()) > float(_loss(snn, space, p, y).mean())


def test_same_seed_same_examples(demo):
    snn, _, space, _, p, y = demo
    a = pgd(snn, p[:8], y[:8], EPS8, steps=2, space=space, generator=seeded(4))
    b = pgd(snn, p[:8], y[:8], EPS8, steps=2, space=space, generator=seeded(4), batch=3)
    c = pgd(snn, p[:8], y[:8], EPS8, steps=2, space=space, generator=seeded(5))
    assert torch.equal(a, b)  # random starts are drawn before batching
    assert not torch.equal(a, c)


def test_gaussian_noise_is_seeded():
    p = torch.full((4, 1, 30, 30), 0.5)
    a = gaussian_noise(p, 0.1, generator=seeded(0, 2))
    b = gaussian_noise(p, 0.1, generator=seeded(0, 2))
    c = gaussian_noise(p, 0.1, generator=seeded(1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float((a - p).std()) - 0.1) < 0.01 and abs(float((a - p).mean())) < 0.01
    edge = gaussian_noise(torch.zeros(1000), 0.2, generator=seeded(0))
    assert edge.min() == 0.0 and float((edge == 0).float().mean()) > 0.4  # clipped at 0
    assert torch.equal(gaussian_noise(p, 0.0), p)


# ------------------------------------------------------------------------------------------
# SNN gradients
# ------------------------------------------------------------------------------------------


class _Replay(nn.Module):
    """Feeds given per-step tensors instead of encoding."""

    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def forward(self, x, t):
        return self.steps[t]


def _tiny_snn(encoder) -> SpikingNet:
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), LIF(0.9, 0.5),
                         nn.Flatten(), nn.Linear(4 * 36, 3, bias=False), Accumulator())
    with torch.no_grad():
        body[0].weight.mul_(3.0)
    return SpikingNet(body, 5, encoder)


def test_poisson_gradient_is_the_straight_through_sum():
    x = torch.rand(6, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    net = _tiny_snn(PoissonEncoder())
    with attacks.crafting(net, generator=seeded(9)):
        grad, loss = attacks.input_gradient(net, x, y)
    # the same spike trains (same generator stream), fed as leaves: dL/ds[t] per step
    enc = PoissonEncoder(generator=seeded(9))
    trains = [enc(x, t).detach().requires_grad_(True) for t in range(5)]
    replay = _tiny_snn(_Replay(trains))
    replay.load_state_dict(net.state_dict())
    out = nn.functional.cross_entropy(replay(x), y, reduction="none")
    assert torch.allclose(out, loss)
    per_step = torch.autograd.grad(out.sum(), trains)
    assert grad.abs().sum() > 0
    assert torch.allclose(grad, sum(per_step), atol=1e-6)
    # with the direct encoder the gradient is the same sum over steps of dL/d(input[t])
    direct = _tiny_snn(None)
    g_direct, _ = attacks.input_gradient(direct, x, y)
    xs = [x.clone().requires_grad_(True) for _ in range(5)]
    rep = _tiny_snn(_Replay(xs))
    per = torch.autograd.grad(nn.functional.cross_entropy(rep(x), y, reduction="sum"), xs)
    assert torch.allclose(g_direct, sum(per), atol=1e-6)


def test_surrogate_override_is_restored(demo):
    snn, _, space, _, p, y = demo
    lifs = [m for m in snn.modules() if isinstance(m, LIF)]
    base, _ = attacks.input_gradient(snn, p[:4], y[:4], space)
    with attacks.crafting(snn, surrogate="fast_sigmoid", surrogate_scale=1.0):
        assert all(m.surrogate == "fast_sigmoid" and m.surrogate_scale == 1.0 for m in lifs)
        other, _ = attacks.input_gradient(snn, p[:4], y[:4], space)
    assert all(m.surrogate == "linear" and m.surrogate_scale == 0.3 for m in lifs)
    assert not torch.allclose(base, other)
    with pytest.raises(NeurodeployError, match="unknown surrogate"):
        with attacks.crafting(snn, surrogate="tanh"):
            pass


# ------------------------------------------------------------------------------------------
# Pixel space and the demo model
# ------------------------------------------------------------------------------------------


def test_pixel_space_of_builtin_data(demo):
    _, _, space, x, p, _ = demo
    assert space.pixel_max == 255.0
    assert abs(float(p.min())) < 1e-6 and abs(float(p.max()) - 1.0) < 1e-6
    assert np.allclose(space.to_model(space.to_pixels(x)), x, atol=1e-9)
    # one pixel unit is R/std normalized units (mnist5k's std is about 78.7 raw units)
    assert 3.0 < float(space.gain.ravel()[0]) < 3.5
    digits = attacks.pixel_space("digits", (64,))  # flat model on 8x8 images
    assert digits.pixel_max == 16.0 and digits.gain.shape == (64,)


def test_demo_clean_accuracy_and_fgsm_drop(demo):
    snn, ann, space, _, p, y = demo
    assert _accuracy(snn, space, p, y) >= 0.9
    assert _accuracy(ann, space, p, y) >= 0.9
    adv = fgsm(snn, p, y, EPS8, space=space)
    assert _accuracy(snn, space, adv, y) < _accuracy(snn, space, p, y)


# ------------------------------------------------------------------------------------------
# run_attack
# ------------------------------------------------------------------------------------------


def test_deployed_accuracy_at_eps0_matches_evaluate(tmp_path):
    from neurodeploy.compile import compile_model
    from neurodeploy.inference import evaluate
    from neurodeploy.models.checkpoint import DEMO_MODEL

    folder = tmp_path / "compiled"
    compile_model(DEMO_MODEL, "loihi2", folder, calib="mnist5k", calib_samples=8)
    ref = evaluate(folder, "mnist5k", 24, account=False)
    doc = attacks.run_attack(folder, attack="fgsm", eps="0,8/255", samples=24,
                             out=tmp_path / "att", sam_samples=3)
    assert doc["accuracy"]["snn_deployed"][0] == ref["accuracy"]["deployed"]
    assert doc["deployed"] == str(folder.resolve()) or doc["deployed"].endswith("compiled")
    # schema of robustness.json
    saved = json.loads((tmp_path / "att" / "robustness.json").read_text())
    assert saved == doc
    assert saved["attack"] == "fgsm" and saved["eps"] == [0.0, EPS8]
    assert set(saved["accuracy"]) == {"ann", "snn_float", "snn_deployed"}
    for values in saved["accuracy"].values():
        assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)
    assert saved["samples"] == 24 and saved["seed"] == 0 and saved["data"] == "mnist5k"
    assert saved["perturbation"]["snn"]["linf"][0] == 0.0
    assert abs(saved["perturbation"]["snn"]["linf"][1] - EPS8) < 1e-6
    sam_rows = saved["sam_stability"]["layers"]
    assert set(sam_rows) == {"lif1", "lif2"}
    for row in sam_rows.values():
        assert row["l1"][0] == 0.0 and len(row["l1_per_step"]) == 2
        assert len(row["l1_per_step"][1]) == saved["timesteps"] == 6
        assert 0.0 <= row["l1"][1] <= 1.0
    cams = saved["gradcam_stability"]["layers"]
    assert cams["lif1"]["ann_layer"] == "relu1" and cams["lif2"]["l1"][0] == 0.0
    assert {"load", "craft_snn", "eval_float", "eval_deployed", "total"} <= set(saved["timing"])
    html = (tmp_path / "att" / "report.html").read_text()
    assert '<section id="robustness">' in html and "<svg" in html
    assert (tmp_path / "att" / "robustness.png").read_bytes()[:4] == b"\x89PNG"


def test_run_attack_is_deterministic_and_noise_runs(tmp_path):
    kw = dict(attack="pgd", eps=[0.0, 0.1], samples=8, steps=2, restarts=2, deployed=False,
              sam_samples=2, data="mnist5k")
    a = attacks.run_attack(out=tmp_path / "a", **kw)
    b = attacks.run_attack(out=tmp_path / "b", **kw)
    assert a["accuracy"] == b["accuracy"] and a["perturbation"] == b["perturbation"]
    assert a["sam_stability"] == b["sam_stability"]
    assert a["accuracy"]["snn_deployed"] == [None, None]
    assert a["params"]["step_size"] == [0.0, 0.025] and a["params"]["restarts"] == 2
    noise = attacks.run_attack(out=tmp_path / "n", attack="noise", eps=[0.2], samples=8,
                               deployed=False, sam_samples=0, data="mnist5k")
    assert noise["sam_stability"] is None and noise["eps"] == [0.2]
    assert noise["params"]["white_box"] is False
    with pytest.raises(NeurodeployError, match="not empty"):
        attacks.run_attack(out=tmp_path / "a", **kw)


@pytest.mark.parametrize("kwargs, match", [
    ({"attack": "cw"}, "unknown attack"),
    ({"eps": [-0.1]}, "outside"),
    ({"eps": [1.5]}, "outside"),
    ({"eps": "abc"}, "not a number"),
    ({"eps": [True]}, "not a finite number"),
    ({"eps": []}, "list of numbers"),
    ({"samples": 0}, "samples"),
    ({"steps": 0}, "steps"),
    ({"restarts": 0}, "restarts"),
    ({"step_size": 0.0}, "step_size"),
    ({"surrogate": "tanh"}, "unknown surrogate"),
    ({"surrogate_scale": -1}, "surrogate_scale"),
    ({"batch": 0}, "batch"),
    ({"out": None}, "output folder"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    args = {"out": tmp_path / "o", **kwargs}
    with pytest.raises(NeurodeployError, match=match):
        attacks.run_attack(**args)
    assert not (tmp_path / "o").exists()


def test_model_without_spiking_layers(tmp_path):
    from neurodeploy.models.checkpoint import DEMO_MODEL

    with pytest.raises(UnsupportedError, match="no spiking layers"):
        attacks.run_attack(DEMO_MODEL.with_name("demo_cnn_ann"), out=tmp_path / "o")


def test_parse_eps():
    assert attacks.parse_eps("8/255, 0,2/255,0.5,0") == [0.0, 2 / 255, EPS8, 0.5]
    for bad in ("1/0", "x", "2/255/3"):
        with pytest.raises(NeurodeployError):
            attacks.parse_eps(bad)
    with pytest.raises(NeurodeployError, match="one number"):
        fgsm(_linear(), torch.zeros(1, 6), torch.zeros(1, dtype=torch.int64), [0.1, 0.2])


def test_attack_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``neurodeploy attack`` on the shipped demo: exit 0 and robustness.json with one
    accuracy per ε per model; bad ε exits 2 with one line and no folder."""
    from neurodeploy.cli import main

    out = tmp_path / "rob"
    assert main(["attack", "--attack", "fgsm", "--eps", "0,8/255", "--samples", "16",
                 "--sam-samples", "0", "--out", str(out), "-q"]) == 0
    doc = json.loads((out / "robustness.json").read_text())
    assert doc["attack"] == "fgsm" and doc["eps"] == [0.0, 8 / 255]
    for model in ("ann", "snn_float", "snn_deployed"):
        assert len(doc["accuracy"][model]) == 2
    assert (out / "robustness.png").exists() and (out / "report.html").exists()
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main(["attack", "--eps", "0,abc", "--out", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neurodeploy: error:") and "abc" in err[0]
    assert not bad.exists()
