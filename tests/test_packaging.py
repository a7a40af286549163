"""Packaging: the wheel installs one import name, ``neurodeploy``, with the folders mapped into
it (``hw_sim/`` → ``neurodeploy.hw_sim``, ``targets/`` → ``neurodeploy.targets``, …)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _can_build_offline() -> bool:
    """setuptools >= 70 builds wheels alone; older ones need the ``wheel`` package."""
    try:
        import setuptools
    except ImportError:
        return False
    major = int(setuptools.__version__.split(".")[0])
    return major >= 70 or importlib.util.find_spec("wheel") is not None


@pytest.mark.slow
def test_wheel_has_one_top_level_package(tmp_path):
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
           "-q", "-w", str(tmp_path), str(ROOT)]
    if _can_build_offline():
        cmd.insert(4, "--no-build-isolation")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(tmp_path.glob("neurodeploy-*.whl"))
    assert len(wheels) == 1, list(tmp_path.iterdir())
    with zipfile.ZipFile(wheels[0]) as whl:
        names = whl.namelist()
    top = {name.split("/")[0] for name in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert top - dist_info == {"neurodeploy"}, sorted(top)
    for module in ("neurodeploy/__init__.py", "neurodeploy/cli.py", "neurodeploy/api.py",
                   "neurodeploy/ir/__init__.py", "neurodeploy/hw_sim/__init__.py",
                   "neurodeploy/targets/__init__.py", "neurodeploy/models/__init__.py"):
        assert module in names, module
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheels[0]) as whl:
        assert "neurodeploy = neurodeploy.cli:main" in whl.read(entry_points).decode()
    assert not [n for n in names if n.startswith("neurodeploy/") and "/tests/" in n]


def test_editable_install_maps_folders():
    import neurodeploy.hw_sim
    import neurodeploy.targets

    assert Path(neurodeploy.hw_sim.__file__).resolve().parent == ROOT / "hw_sim"
    assert Path(neurodeploy.targets.__file__).resolve().parent == ROOT / "targets"
