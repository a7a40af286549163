"""Benchmark: train the default small BNTT CNN (``models.train.DEFAULTS``) on ``mnist5k`` and
report its test accuracy and the wall-clock minutes it took (goal: ≥ 95 % in ≤ 10 minutes on a
2-core CPU).

Also reports the process's CPU minutes and the load average before and after, because the
wall-clock time depends on what else runs on the machine. ``--ann`` also trains the ANN twin
with the same hyper-parameters. Run:
``.venv/bin/python bench/bench_train.py [--json bench/results/train.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import load_average

from neurodeploy.models.train import DEFAULTS, train

GOAL_ACCURACY = 0.95
GOAL_MINUTES = 10.0


def run_one(kind: str, args: argparse.Namespace, out_root: Path) -> dict:
    """Train one model with the defaults (overridden by ``args``); its timing and accuracy."""
    load_before = load_average()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = train(DEFAULTS["model"], args.data, out_dir=out_root / kind, kind=kind,
                   epochs=args.epochs, timesteps=args.timesteps, seed=args.seed,
                   threads=args.threads, progress=args.progress)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    row = {
        "kind": kind,
        "test_accuracy": result["test_accuracy"],
        "train_accuracy": result["train_accuracy"],
        "minutes": wall / 60.0,
        "cpu_minutes": cpu / 60.0,
        "epochs": result["epochs_run"],
        "timesteps": result["config"]["timesteps"],
        "per_epoch_test_accuracy": [h["test_accuracy"] for h in result["history"]],
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    if kind == "snn":
        row["meets_goal"] = bool(row["test_accuracy"] >= GOAL_ACCURACY
                                 and row["minutes"] <= GOAL_MINUTES)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULTS["data"], help="dataset spec (default mnist5k)")
    ap.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    ap.add_argument("--timesteps", type=int, default=DEFAULTS["timesteps"])
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    ap.add_argument("--threads", type=int, default=DEFAULTS["threads"],
                    help="PyTorch CPU threads during training")
    ap.add_argument("--ann", action="store_true", help="also train the ANN twin")
    ap.add_argument("--progress", action="store_true", help="show progress bars")
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)
    results = {
        "benchmark": "train the default small BNTT CNN",
        "model": DEFAULTS["model"], "data": args.data,
        "defaults": DEFAULTS,
        "goal": {"test_accuracy": GOAL_ACCURACY, "minutes": GOAL_MINUTES},
        "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0], "torch": torch.__version__, "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for kind in ("snn", "ann") if args.ann else ("snn",):
            row = run_one(kind, args, Path(tmp))
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
