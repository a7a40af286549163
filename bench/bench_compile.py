"""Benchmark: compile a VGG11 with 64×64 RGB inputs (zoo ``vgg11``, 100 classes, random
weights from a fixed seed; the zoo default has no BNTT layers, ``--bntt`` adds them, folded as
``compile`` does by default) for ``loihi2`` and report the wall-clock seconds of each compile
step (goal: the whole compile in ≤ 10 s on this 2-core machine).

The checkpoint is written once to a temporary folder (not timed); the compile then runs
``--repeat`` times (default 3) and the best total is reported, with the steps of that run.
Also records the load average before and after the runs and at the start of each, because
timings depend on what else runs.
Run: ``.venv/bin/python bench/bench_compile.py [--bntt] [--json bench/results/compile.json]``
(recorded: ``bench/results/compile.json``, and ``compile_bntt.json`` with ``--bntt``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from _common import best_of, finish, load_average

from neurodeploy.compile import compile_model
from neurodeploy.models.checkpoint import save_checkpoint
from neurodeploy.models.zoo import build_model, count_parameters, default_config

GOAL_SECONDS = 10.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="loihi2")
    ap.add_argument("--size", type=int, default=64, help="input height and width (pixels)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bntt", action="store_true", help="with BNTT layers (folded)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    config = default_config("vgg11", in_shape=(3, args.size, args.size), num_classes=100,
                            bntt=args.bntt)
    load_before = load_average()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "vgg11.pt"
        save_checkpoint(ckpt, build_model(config), config)
        for i in range(args.repeat):
            out = Path(tmp) / f"out{i}"
            load = load_average()
            t0 = time.perf_counter()
            doc = compile_model(ckpt, args.target, out)
            total = time.perf_counter() - t0
            runs.append({"seconds": round(total, 3), "load": load, "steps": doc["steps"],
                         "cores_used": doc["cores_used"], "chips_used": doc["chips_used"],
                         "model_ir_bytes": (out / "model.ir.h5").stat().st_size,
                         "mapping_json_bytes": (out / "mapping.json").stat().st_size})
            print(json.dumps(runs[-1]), flush=True)
            shutil.rmtree(out)
    result = {
        "model": f"zoo vgg11, 3x{args.size}x{args.size}, 100 classes, "
                 f"{'BNTT (folded)' if args.bntt else 'no BNTT'}, random weights",
        "parameters": count_parameters(config), "target": args.target,
        **best_of(runs, GOAL_SECONDS, load_before),
    }
    finish(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
