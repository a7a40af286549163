"""Test helpers: built-in targets edited into small or altered ones (one mechanism for every
test that needs a target with few neurons per core, a small mesh or a changed field).

Import as ``from target_edits import edited_target, small_target`` (``tests/conftest.py`` puts
``tests/`` on ``sys.path``)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from neurodeploy.targets import BUILTIN_DIR, load_target

_COUNTER = itertools.count()


def edited_target(tmp_path: Path, base: str = "loihi1", **changes: str):
    """Built-in target ``base`` with each ``old`` text replaced by ``new`` (first occurrence;
    every ``old`` must be present), loaded from a fresh file under ``tmp_path``."""
    text = (BUILTIN_DIR / f"{base}.toml").read_text()
    for old, new in changes.items():
        assert old in text, f"{old!r} not in {base}.toml"
        text = text.replace(old, new, 1)
    path = tmp_path / f"{base}-edited-{next(_COUNTER)}.toml"
    path.write_text(text)
    return load_target(path)


def small_target(tmp_path: Path, neurons: int, mesh: tuple[int, int] = (2, 2),
                 base: str = "loihi1", **changes: str):
    """``base`` renamed ``<base>-small`` with ``neurons`` per core, one core per tile and a
    ``mesh`` of tiles (one chip of ``mesh[0]·mesh[1]`` cores), plus ``changes``."""
    text = (BUILTIN_DIR / f"{base}.toml").read_text()

    def field(key: str) -> str:
        m = re.search(rf"^{key} = .*$", text, flags=re.MULTILINE)
        assert m, f"{key} not in {base}.toml"
        return m.group(0)

    edits = {f'name = "{base}"': f'name = "{base}-small"',
             field("neurons_per_core"): f"neurons_per_core = {neurons}",
             field("cores_per_chip"): f"cores_per_chip = {mesh[0] * mesh[1]}",
             field("mesh_tiles"): f"mesh_tiles = [{mesh[0]}, {mesh[1]}]",
             field("cores_per_tile"): "cores_per_tile = 1"}
    return edited_target(tmp_path, base, **edits, **changes)
