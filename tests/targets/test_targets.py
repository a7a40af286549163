"""Target files: every built-in loads and cites a source for every number; bad files fail with
one line naming the file and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from neurodeploy.errors import BadInputFileError, NeurodeployError
from neurodeploy.targets import BUILTIN_DIR, all_targets, builtin_names, load_target


def test_builtins_present_and_valid():
    assert set(builtin_names()) >= {"loihi1", "loihi1-sanafe", "loihi2", "cpu", "gpu",
                                    "edge-int8"}
    for target in all_targets():
        assert target.name == target.path.stem
        assert target.energy_scope and target.confidence


def test_every_number_has_a_source():
    for target in all_targets():
        for section in ("resources", "precision", "energy", "time", "proxy"):
            for key, value in getattr(target, section).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    assert f"{section}.{key}" in target.sources, (target.name, key)


def test_published_numbers():
    l1 = load_target("loihi1")
    assert l1.energy["syn_op"] == pytest.approx(23.6e-12)
    assert l1.energy["neuron_update_active"] == pytest.approx(81e-12)
    assert l1.resources["neurons_per_core"] == 1024
    assert l1.resources["synaptic_memory_bits_per_core"] == 128 * 1024 * 8
    assert not l1.programmable_neurons
    sanafe = load_target("loihi1-sanafe")
    assert sanafe.syn_op_energy("sparse") == pytest.approx(33.6e-12)
    assert sanafe.syn_op_energy("conv") == pytest.approx(24.0e-12)
    assert l1.syn_op_energy("conv") == l1.energy["syn_op"]  # falls back to dense
    l2 = load_target("loihi2")
    assert l2.programmable_neurons and l2.resources["neurons_per_core"] == 8192
    # the proxy factors are applied as documented
    assert l2.energy["syn_op"] == pytest.approx(l1.energy["syn_op"] * l2.proxy["k_energy"])
    assert l2.time["syn_op"] == pytest.approx(l1.time["syn_op"] * l2.proxy["k_time"])
    assert "proxy" in l2.confidence


def test_barrier_interpolation():
    l1 = load_target("loihi1")
    assert l1.barrier_time(1) == pytest.approx(113e-9)
    assert l1.barrier_time(32) == pytest.approx(465e-9)
    assert l1.barrier_time(100) == pytest.approx(465e-9)
    mid = 113e-9 + (465e-9 - 113e-9) * (16.5 - 1) / 31
    assert l1.barrier_time(16.5) == pytest.approx(mid)
    assert l1.barrier_time(4, chips=2) == pytest.approx(15e-6)
    sanafe = load_target("loihi1-sanafe")
    assert sanafe.barrier_time(3) == pytest.approx(1.2e-6)


def _edit(tmp_path: Path, old: str, new: str, name: str = "loihi1") -> Path:
    text = (BUILTIN_DIR / f"{name}.toml").read_text()
    assert old in text
    path = tmp_path / "mine.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_user_file_loads(tmp_path):
    path = _edit(tmp_path, 'name = "loihi1"', 'name = "my-chip"')
    assert load_target(path).name == "my-chip"
    assert load_target(str(path)).path == path


@pytest.mark.parametrize("old,new,message", [
    ('"energy.syn_op" = "Davies 2018 Table 2: 23.6 pJ per synaptic spike op (minimum)"\n', "",
     "no source for energy.syn_op"),
    ("syn_op = 23.6e-12", "syn_op = -1.0", "energy.syn_op = -1.0 is outside"),
    ("neurons_per_core = 1024", 'neurons_per_core = "many"', "must be an integer"),
    ("neurons_per_core = 1024", "neurons_per_core = 1024.5", "must be an integer"),
    ("mesh_tiles = [8, 4]", "mesh_tiles = [2, 2]", "holds fewer than cores_per_chip"),
    ('kind = "neuromorphic"', 'kind = "quantum"', "kind 'quantum'"),
    ("schema = 1", "schema = 2", "schema must be 1"),
    ("max_delay = 62", "max_delay = 62\nmax_dealy = 3", "unknown key(s) max_dealy"),
    ('synapse_encodings = ["dense", "sparse"]', 'synapse_encodings = ["sparse", "ring"]',
     "synapse_encodings"),
    ("barrier = [113e-9, 465e-9]", "barrier = [113e-9]", "equal-length"),
    ("[energy]\n", "[energy]\nthis is = not toml\n", "not valid TOML"),
])
def test_bad_files(tmp_path, old, new, message):
    path = _edit(tmp_path, old, new)
    with pytest.raises(BadInputFileError) as info:
        load_target(path)
    text = str(info.value)
    assert message in text and str(path) in text
    assert "\n" not in text


def test_missing_table(tmp_path):
    text = (BUILTIN_DIR / "cpu.toml").read_text()
    path = tmp_path / "cpu2.toml"
    path.write_text(re.sub(r"\[time\]\nmacs_per_second = .*\n", "", text))
    with pytest.raises(BadInputFileError, match=r"missing table \[time\]"):
        load_target(path)


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(NeurodeployError, match="unknown target 'loihi9'.*loihi2"):
        load_target("loihi9")
    with pytest.raises(BadInputFileError, match="no such file"):
        load_target(tmp_path / "nope.toml")
