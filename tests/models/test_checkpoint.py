"""Checkpoints: weights-only files that round-trip bit for bit, atomic writes, and a one-line
BadInputFileError for every kind of bad file (pickled objects, wrong tag or version, missing
keys, bad config, tensors that do not fit, NaN, truncation)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from neurodeploy.errors import BadInputFileError
from neurodeploy.models import checkpoint, zoo
from neurodeploy.models.checkpoint import load_checkpoint, save_checkpoint


def _trained(name: str = "cnn", **kw: object) -> tuple[torch.nn.Module, dict]:
    """A small BNTT model whose running statistics and weights differ from a fresh build."""
    torch.manual_seed(0)
    config = zoo.default_config(name, in_shape=(1, 12, 12), width=0.25, timesteps=3, bntt=True,
                                num_classes=4, **kw)
    model = zoo.build_model(config).train()
    for _ in range(2):  # plain SGD steps (torch.optim's first import costs seconds)
        model.zero_grad()
        model(torch.randn(8, 1, 12, 12)).square().mean().backward()
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p -= 0.1 * p.grad
    return model.eval(), config


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module, dict]:
    model, config = _trained()
    path = save_checkpoint(tmp_path / "net.pt", model, config, metrics={"acc": 0.5})
    return path, model, config


def _payload(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _rewrite(path: Path, change: dict) -> Path:
    obj = _payload(path)
    obj.update(change)
    out = path.with_name("bad.pt")
    torch.save(obj, out)
    return out


def _refused(path: Path, match: str) -> BadInputFileError:
    with pytest.raises(BadInputFileError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return info.value


@pytest.mark.parametrize(("name", "kind"), [("cnn", "snn"), ("resnet", "snn"), ("resnet", "ann"),
                                            ("mlp", "ann")])
def test_round_trip_is_bit_exact(tmp_path: Path, name: str, kind: str) -> None:
    model, config = _trained(name, kind=kind)
    x = torch.randn(5, 1, 12, 12)
    expected = model(x)
    metrics = {"acc": torch.tensor(0.75), "epoch": 3, "history": [0.1, 0.2], "note": "ok"}
    path = save_checkpoint(tmp_path / "m.pt", model, config, metrics=metrics)
    loaded, config2, metrics2 = load_checkpoint(path)
    assert config2 == config
    assert metrics2 == {"acc": 0.75, "epoch": 3, "history": [0.1, 0.2], "note": "ok"}
    assert not loaded.training
    assert torch.equal(loaded(x), expected)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_file_is_weights_only_and_plain(saved: tuple[Path, torch.nn.Module, dict]) -> None:
    path, model, config = saved
    obj = _payload(path)
    assert set(obj) == {"format", "version", "config", "metrics", "state_dict"}
    assert obj["format"] == "neurodeploy-checkpoint" and obj["version"] == 1
    assert obj["config"] == config and obj["metrics"] == {"acc": 0.5}
    assert json.loads(json.dumps(obj["config"])) == config
    assert all(isinstance(v, torch.Tensor) for v in obj["state_dict"].values())
    # BNTT's per-step BatchNorms have no β: γ, running stats and step counts only
    bntt_keys = [k for k in obj["state_dict"] if k.startswith("body.bn1.")]
    assert len(bntt_keys) == 3 * 4  # T = 3 steps × (weight, running_mean, running_var, count)
    assert not any(k.endswith(".bias") for k in obj["state_dict"])
    loaded, _, _ = load_checkpoint(path)
    assert all(bn.bias is None for bn in loaded.body.bn1.bn)
    # running statistics were learned per step (conv2 sees different spikes at each step)
    # and survive the round trip
    means = torch.stack([bn.running_mean for bn in loaded.body.bn2.bn])
    assert not torch.equal(means[0], means[1])
    assert torch.equal(means, torch.stack([bn.running_mean for bn in model.body.bn2.bn]))


def test_write_config_and_atomic_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, config = _trained()
    path = save_checkpoint(tmp_path / "net.pt", model, config, write_config=True)
    assert json.loads((tmp_path / "config.json").read_text()) == config
    assert sorted(os.listdir(tmp_path)) == ["config.json", "net.pt"]  # no temp files left
    before = path.read_bytes()

    def broken_save(obj: object, f: object) -> None:
        f.write(b"partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, config)
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["config.json", "net.pt"]


def test_save_refuses_a_config_that_does_not_describe_the_model(tmp_path: Path) -> None:
    model, config = _trained()
    with pytest.raises(zoo.ModelConfigError, match="does not match its config"):
        save_checkpoint(tmp_path / "x.pt", model, {**config, "width": 0.5})
    with pytest.raises(zoo.ModelConfigError, match="'leak'"):
        save_checkpoint(tmp_path / "x.pt", model, {**config, "leak": 3.0})
    with pytest.raises(TypeError, match="metrics.model"):
        save_checkpoint(tmp_path / "x.pt", model, config, metrics={"model": model})
    assert not list(tmp_path.iterdir())


class _Payload:
    """Unpickling this would create a marker file: proof that nothing was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_pickled_objects_are_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(_Payload(marker)))
    torch_file = tmp_path / "torch.pt"
    torch.save({"format": "neurodeploy-checkpoint", "obj": _Payload(marker)}, torch_file)
    for path in (plain, torch_file):
        err = _refused(path, "refused: not a weights-only torch file")
        assert "pickled" in str(err)
    assert not marker.exists()


def test_truncated_empty_and_missing_files(saved: tuple[Path, torch.nn.Module, dict],
                                           tmp_path: Path) -> None:
    path = saved[0]
    data = path.read_bytes()
    for size in (len(data) // 2, len(data) - 10, 100):
        cut = tmp_path / f"cut{size}.pt"
        cut.write_bytes(data[:size])
        with pytest.raises(BadInputFileError) as info:
            load_checkpoint(cut)
        assert str(cut) in str(info.value) and "\n" not in str(info.value)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _refused(empty, "corrupt")
    _refused(tmp_path / "nope.pt", "no such checkpoint file")


@pytest.mark.parametrize(("change", "match"), [
    ({"format": "lava-dl"}, "format tag is 'lava-dl'"),
    ({"version": 2}, "version 2 is not supported"),
    ({"extra": 1}, "unknown keys"),
    ({"metrics": [1, 2]}, "metrics must be a dict"),
    ({"state_dict": [1, 2]}, "state_dict is a list"),
])
def test_wrong_tags_and_keys(saved: tuple[Path, torch.nn.Module, dict], change: dict,
                             match: str) -> None:
    _refused(_rewrite(saved[0], change), match)


def test_missing_key_and_non_dict(saved: tuple[Path, torch.nn.Module, dict],
                                  tmp_path: Path) -> None:
    obj = _payload(saved[0])
    del obj["metrics"]
    torch.save(obj, tmp_path / "nometrics.pt")
    _refused(tmp_path / "nometrics.pt", r"lacks keys \['metrics'\]")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    _refused(tmp_path / "list.pt", "holds a list, not a checkpoint dict")


def test_bad_config_in_file(saved: tuple[Path, torch.nn.Module, dict]) -> None:
    path, _, config = saved
    _refused(_rewrite(path, {"config": {**config, "leak": 2.0}}), "config key 'leak'")
    _refused(_rewrite(path, {"config": {**config, "arch": "alexnet"}}), "unknown model")
    _refused(_rewrite(path, {"config": "cnn"}), "must be a dict")


def test_state_dict_that_does_not_fit(saved: tuple[Path, torch.nn.Module, dict]) -> None:
    path = saved[0]
    state = _payload(path)["state_dict"]

    def with_state(new: dict) -> Path:
        return _rewrite(path, {"state_dict": new})

    w = state["body.conv1.weight"]
    _refused(with_state({**state, "body.conv1.weight": w[:, :, :2]}),
             r"'body.conv1.weight'\] has shape \(4, 1, 2, 3\), the config's model needs "
             r"\(4, 1, 3, 3\)")
    _refused(with_state({k: v for k, v in state.items() if k != "body.out.weight"}),
             "lacks 1 tensor")
    _refused(with_state({**state, "body.fc9.weight": w}), "has 1 tensor.* the model lacks")
    _refused(with_state({**state, "body.conv1.weight": w.to(torch.int32)}), "dtype torch.int32")
    nan = w.clone()
    nan[0, 0, 0, 0] = float("nan")
    _refused(with_state({**state, "body.conv1.weight": nan}), "NaN or infinite")
    _refused(with_state({**state, "body.conv1.weight": 1.5}), "is a float, not a tensor")
    # a config for another width: every shape is checked before building
    other = {**_payload(path)["config"], "width": 0.5}
    _refused(_rewrite(path, {"config": other}), "has shape")
