"""Shared pytest fixtures."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def lavadl_netx_dir() -> Path:
    """lava-dl's netx test folder (with its shipped ``.net`` files).

    Skips when lava-dl is not installed, except in CI (``CI`` set), where it fails.
    """
    spec = importlib.util.find_spec("lava.lib.dl")
    folder = None
    if spec is not None and spec.submodule_search_locations:
        site = Path(next(iter(spec.submodule_search_locations))).parents[2]
        folder = site / "tests" / "lava" / "lib" / "dl" / "netx"
    if folder is None or not (folder / "tiny.net").is_file():
        message = "lava-dl and its netx test files are not installed"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder
