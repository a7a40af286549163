"""Shared by the benchmark scripts in this folder (run as ``python bench/<script>.py``, which
puts this folder on ``sys.path``)."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (timings depend on what else runs), or None."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def machine() -> dict[str, Any]:
    """What the timings were taken on: Python, torch, its threads, CPUs, platform."""
    import torch

    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "platform": platform.platform()}


def best_of(runs: list[dict[str, Any]], goal_seconds: float,
            load_before: list[float] | None) -> dict[str, Any]:
    """The summary of timed ``runs`` (each with ``"seconds"``): the best run, every run's
    seconds, the goal and whether the best run meets it, the load averages around the runs and
    the machine."""
    best = min(runs, key=lambda r: r["seconds"])
    return {"best_seconds": best["seconds"], "best_run": best,
            "all_seconds": [r["seconds"] for r in runs], "goal_seconds": goal_seconds,
            "meets_goal": best["seconds"] <= goal_seconds,
            "load_before": load_before, "load_after": load_average(), "machine": machine()}


def finish(result: dict[str, Any], path: Path | None) -> None:
    """Print ``result`` without its ``best_run`` detail and write it whole to ``path``."""
    print(json.dumps({k: v for k, v in result.items() if k != "best_run"}, indent=1))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
