"""Shared by the benchmark scripts in this folder (run as ``python bench/<script>.py``, which
puts this folder on ``sys.path``)."""

from __future__ import annotations

import os


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (timings depend on what else runs), or None."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None
