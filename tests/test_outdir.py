"""Atomic output: a failed write leaves nothing behind, a good one gets the umask's modes."""

from __future__ import annotations

import os

import pytest

from neurodeploy.errors import NeurodeployError
from neurodeploy.outdir import write_file_atomic


def test_write_file_atomic(tmp_path) -> None:
    target = tmp_path / "a.json"
    target.write_text("old")

    def boom(tmp) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_file_atomic(target, boom)
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.json"]
    old = os.umask(0o022)
    try:
        write_file_atomic(target, lambda tmp: tmp.write_text("new"))
    finally:
        os.umask(old)
    assert target.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["a.json"]
    assert target.stat().st_mode & 0o777 == 0o644
    with pytest.raises(NeurodeployError, match="does not exist"):
        write_file_atomic(tmp_path / "no" / "b.json", lambda tmp: tmp.write_text("x"))
