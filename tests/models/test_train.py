"""Training loop: output files (atomic, loadable with weights_only), accuracy above chance on a
small digits subset for an SNN and its ANN twin, evaluate(), early stop, refusal of a non-empty
output folder and cleanup on failure."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from neurodeploy.errors import NeurodeployError
from neurodeploy.models import checkpoint
from neurodeploy.models.checkpoint import load_checkpoint
from neurodeploy.models.data import Dataset, load_splits, subset
from neurodeploy.models.train import DEFAULTS, evaluate, train
from neurodeploy.models.zoo import default_config


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, Dataset]:
    train_set, test_set = load_splits("digits", seed=0)
    return subset(train_set, 600, seed=0), subset(test_set, 200, seed=0)


def tiny_config(kind: str = "snn") -> dict:
    return default_config("cnn", in_shape=(1, 8, 8), num_classes=10, timesteps=3, kind=kind,
                          bntt=True, features=[8, "P"], hidden=[32])


def manual_accuracy(model: nn.Module, ds: Dataset) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(ds.x).argmax(dim=1) == ds.y).float().mean())


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("kind", ["snn", "ann"])
def test_train_one_epoch_writes_loadable_files(tmp_path, digits, kind):
    out = tmp_path / "run"
    config = tiny_config(kind)
    result = train(config, digits, out_dir=out, epochs=1, batch_size=16, lr=1e-2, seed=0,
                   progress=False)
    assert leftovers(tmp_path) == ["run"]  # no temporary folders left
    assert leftovers(out) == ["config.json", "model.pt", "train.json"]
    stored = json.loads((out / "train.json").read_text())
    assert stored["test_accuracy"] == result["test_accuracy"]
    assert stored["seed"] == 0 and stored["config"]["kind"] == kind
    assert stored["data"]["train_samples"] == 600 and stored["data"]["test_samples"] == 200
    assert len(stored["history"]) == 1 and stored["epochs_run"] == 1
    assert stored["history"][0]["loss"] > 0 and stored["seconds"] > 0
    assert stored["hyperparameters"]["optimizer"] == "adam"
    assert json.loads((out / "config.json").read_text()) == config
    # plain tensors and containers only
    raw = torch.load(out / "model.pt", weights_only=True)
    assert raw["metrics"]["test_accuracy"] == result["test_accuracy"]
    assert raw["metrics"]["normalization_mean"] == list(digits[0].normalization[0])
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "model.pt").stat().st_mode & 0o777 == 0o666 & ~umask
    model, loaded_config, _ = load_checkpoint(out / "model.pt")
    assert loaded_config == config
    # the stored accuracies are reproduced by an independent argmax over the loaded model
    assert manual_accuracy(model, digits[1]) == pytest.approx(result["test_accuracy"])
    assert manual_accuracy(model, digits[0]) == pytest.approx(result["train_accuracy"])
    assert result["test_accuracy"] > 0.6  # chance is 0.1; seeds 0-4 gave 0.74-0.89


def test_same_seed_same_run(tmp_path, digits):
    small = (subset(digits[0], 128, seed=1), subset(digits[1], 64, seed=1))
    runs = [train(tiny_config(), small, out_dir=tmp_path / f"r{i}", epochs=1, batch_size=32,
                  seed=seed, progress=False) for i, seed in enumerate((3, 3, 4))]
    assert runs[0]["history"][0]["loss"] == runs[1]["history"][0]["loss"]
    assert runs[0]["history"][0]["loss"] != runs[2]["history"][0]["loss"]
    a = torch.load(tmp_path / "r0" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "r1" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_counts_correct_argmax():
    x = torch.arange(10, dtype=torch.float32).reshape(10, 1)
    ds = Dataset(x=x, y=torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]), num_classes=3,
                 in_shape=(1,), name="toy", normalization=((0.0,), (1.0,)))

    class ModThree(nn.Module):  # predicts int(x) % 3: right on samples 0, 1, 2 only
        def forward(self, x):
            return nn.functional.one_hot(x[:, 0].long() % 3, 3).float() * (x < 3).float()

    model = ModThree().train()
    # samples 3..9 give all-zero logits -> argmax 0 -> right where y == 0 (3, 6, 9)
    assert evaluate(model, ds, batch_size=4) == pytest.approx(6 / 10)
    assert model.training  # mode restored


def test_max_minutes_stops_early_but_saves(tmp_path, digits):
    result = train(tiny_config(), digits, out_dir=tmp_path / "run", epochs=5, batch_size=16,
                   progress=False, max_minutes=1e-6)
    assert result["stopped_early"] and result["epochs_run"] == 1
    assert (tmp_path / "run" / "model.pt").is_file()


def test_refuses_non_empty_out_dir_and_overwrites_on_request(tmp_path, digits):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    with pytest.raises(NeurodeployError, match="not empty") as info:
        train(tiny_config(), digits, out_dir=out, epochs=1, progress=False)
    assert "\n" not in str(info.value)
    assert leftovers(out) == ["old.txt"]
    small = (subset(digits[0], 64), subset(digits[1], 32))
    train(tiny_config(), small, out_dir=out, epochs=1, progress=False, overwrite=True)
    assert leftovers(out) == ["config.json", "model.pt", "train.json"]
    assert leftovers(tmp_path) == ["run"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(NeurodeployError, match="not a folder"):
        train(tiny_config(), small, out_dir=tmp_path / "file", epochs=1, progress=False)


def test_failure_leaves_nothing(tmp_path, digits, monkeypatch):
    small = (subset(digits[0], 64), subset(digits[1], 32))

    def broken_save(path, *args, **kwargs):
        path.write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(checkpoint, "save_checkpoint", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        train(tiny_config(), small, out_dir=tmp_path / "run", epochs=1, progress=False)
    assert leftovers(tmp_path) == []


def test_bad_arguments_fail_before_training(tmp_path, digits):
    wrong_shape = default_config("cnn", in_shape=(1, 28, 28), timesteps=2, bntt=True)
    cases = [
        (dict(config=wrong_shape), "expects inputs of shape"),
        (dict(config=tiny_config(), optimizer="rmsprop"), "unknown optimizer"),
        (dict(config=tiny_config(), epochs=0), "must be >= 1"),
        (dict(config=tiny_config(), lr=0.0), "learning rate"),
        (dict(config=tiny_config(), threads=0), "threads"),
        (dict(config="cnn", data="no-such-dataset"), "unknown dataset"),
    ]
    for kwargs, match in cases:
        kwargs.setdefault("data", digits)
        with pytest.raises(NeurodeployError, match=match):
            train(out_dir=tmp_path / "run", progress=False, **kwargs)
    assert leftovers(tmp_path) == []


def test_defaults_build_the_small_bntt_cnn(digits):
    from neurodeploy.models.layers import BNTT, SpikingNet
    from neurodeploy.models.train import _resolve_config
    from neurodeploy.models.zoo import build_model

    config = _resolve_config(DEFAULTS["model"], digits[0], None, "snn")
    assert config["arch"] == "cnn" and config["bntt"] and config["encoder"] == "direct"
    assert config["timesteps"] == DEFAULTS["timesteps"] and config["in_shape"] == [1, 8, 8]
    model = build_model(config)
    assert isinstance(model, SpikingNet) and any(isinstance(m, BNTT) for m in model.modules())
    assert DEFAULTS["optimizer"] in ("adam", "sgd") and 1 <= DEFAULTS["epochs"] <= 10
