"""neurodeploy: compile spiking neural networks for Loihi-style chips, simulate them bit-exactly
and fast, and report what the deployment costs.

The main entry points are re-exported here lazily, so ``import neurodeploy`` stays cheap (no
torch or Lava import until a function needs them): :func:`simulate`, :func:`save_run` and
:func:`load_model`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "simulate": ("neurodeploy.api", "simulate"),
    "save_run": ("neurodeploy.api", "save_run"),
    "load_model": ("neurodeploy.frontends.load", "load_model"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'neurodeploy' has no attribute {name!r}")
