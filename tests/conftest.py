"""Shared pytest fixtures."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

# Helper modules in this folder (``target_edits``) import by name: --import-mode=importlib
# puts no test folder on sys.path.
sys.path.insert(0, str(Path(__file__).parent))


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


@pytest.fixture(scope="session")
def lava():
    """Lava's modules (``neurodeploy.backends.lava.load_lava()``) for the Lava cross-checks.

    Skips when Lava is not importable, except in CI (``CI`` set), where Lava must be installed
    and the test fails instead.
    """
    from neurodeploy.backends import lava as lava_backend

    if not lava_backend.available():
        if os.environ.get("CI"):
            pytest.fail("Lava is not importable in CI (needs Python 3.10 + neurodeploy[lava])")
        pytest.skip("Lava is not installed (needs Python 3.10 + neurodeploy[lava])")
    return lava_backend.load_lava()


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny tensors only pay for the thread pool, and on a
    busy 2-core machine two spinning OpenMP workers made such tests 10-40x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_twin_models(tmp_path_factory):
    """Checkpoint folders of a small BNTT CNN SNN on 8x8 digits (untrained, seed 0) and its
    ANN twin (``snn``, ``snn_ann``), and an MLP SNN without conv layers (``mlp``)."""
    import torch

    from neurodeploy.models import zoo
    from neurodeploy.models.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("tiny_twin_models")
    torch.manual_seed(0)
    cfg = zoo.default_config("cnn", in_shape=(1, 8, 8), timesteps=4, bntt=True, width=0.5,
                             leak=0.9)
    snn = zoo.build_model(cfg)
    acfg = zoo.twin_config(cfg)
    ann = zoo.build_model(acfg)
    zoo.load_twin_weights(ann, snn)
    mcfg = zoo.default_config("mlp", in_shape=(64,), timesteps=3)
    for name, model, config in (("snn", snn, cfg), ("snn_ann", ann, acfg),
                                ("mlp", zoo.build_model(mcfg), mcfg)):
        (root / name).mkdir()
        save_checkpoint(root / name / "model.pt", model, config)
    return root

