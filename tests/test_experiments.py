"""Every script in ``experiments/`` runs end to end on its ``--smoke`` settings (tiny data, one
epoch, few samples) and writes its results file, so the scripts behind docs/experiments.md
keep working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "experiments").glob("*.py")
                 if not p.name.startswith("_"))


def test_every_script_is_documented() -> None:
    doc = (ROOT / "docs" / "experiments.md").read_text()
    assert SCRIPTS, "no experiment scripts found"
    for name in SCRIPTS:
        assert f"experiments/{name}" in doc, name


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_script_smoke_run(script: str, tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), "--smoke",
         "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = list((tmp_path / "results").glob("*.json"))
    assert len(results) == 1, results
    doc = json.loads(results[0].read_text())
    assert doc.get("experiment") and "|" in proc.stdout  # a table was printed
