"""Benchmark: hw_sim with and without event accounting, side by side in one process.

Networks (same inputs for both runs of each pair):

* ``demo-cnn``: the shipped demo CNN (``models/checkpoints/demo_cnn``) compiled for loihi2
  (BNTT folded, quantized on 64 mnist5k training images), 64 mnist5k test images as direct
  (graded) input events, the model's 6 time steps;
* ``pilotnet``: lava-dl's PilotNet (``gts/pilotnet_lif``) mapped on loihi1 (466 cores), its
  image as bias input plus noisy copies, 15 steps.

Runs alternate plain / accounted ``--repeats`` times after a warm-up; the table reports the best
simulation time of each (``RunResult.sim_time_s``: the step loop, setup excluded), their ratio
(goal <= 1.30), the median of the per-pair ratios, and the same best-of ratio in process CPU
time (whole ``run`` calls; steadier than wall time on a shared machine, and equal to the
work done with one thread). The accountant is built once per network
(its set-up time is reported apart, like the engine's compilation), and ``result()`` (one copy
back and the per-core sums) is timed too.

Run: ``.venv/bin/python bench/bench_accounting.py [--threads 1,2] [--device cuda] [--json OUT]``
(default JSON: ``bench/results/accounting.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neurodeploy.accounting import Accountant
from neurodeploy.hw_sim import Engine
from neurodeploy.mapping import map_graph
from neurodeploy.targets import load_target

ROOT = Path(__file__).resolve().parents[1]


def demo_cnn(batch: int):
    """(graph, target, inputs, run kwargs) for the compiled demo CNN."""
    from neurodeploy.compile import compile_model
    from neurodeploy.ir.serialize import load_graph
    from neurodeploy.models.data import load_dataset, subset
    from neurodeploy.passes.quantize import quantize_inputs

    with tempfile.TemporaryDirectory() as tmp:
        compile_model(ROOT / "models/checkpoints/demo_cnn/model.pt", "loihi2",
                      Path(tmp) / "out", calib="mnist5k", calib_samples=64)
        graph = load_graph(Path(tmp) / "out" / "model.ir.h5")
    steps = int(graph.metadata["timesteps"])
    data = subset(load_dataset("mnist5k", split="test"), batch)
    x = quantize_inputs(graph, data.x.numpy(), steps=steps)
    return graph, "loihi2", x, dict(steps=steps, input_mode="spikes")


def pilotnet(batch: int):
    """(graph, target, inputs, run kwargs) for lava-dl's PilotNet."""
    from neurodeploy.examples import netx_data_dir
    from neurodeploy.frontends.netx import read_netx

    folder = netx_data_dir() / "gts" / "pilotnet_lif"
    graph = read_netx(folder / "network.net")
    image = np.load(folder / "image.npy").transpose(2, 1, 0).astype(np.int64)
    rng = np.random.default_rng(0)
    x = np.stack([image] + [np.clip(image + rng.integers(-3, 4, image.shape), 0, 255)
                            for _ in range(batch - 1)])
    return graph, "loihi1", x, dict(steps=15, reset_interval=16)


NETWORKS = {"demo-cnn": (demo_cnn, 64), "pilotnet": (pilotnet, 16)}


def bench(name: str, batch: int, device: str, repeats: int) -> dict:
    graph, target_name, x, kwargs = NETWORKS[name][0](batch)
    target = load_target(target_name)
    mapping = map_graph(graph, target)
    t0 = time.perf_counter()
    acc = Accountant(graph, mapping, device=device)
    build_s = time.perf_counter() - t0
    engine = Engine(graph, device=device)
    engine.run(x, **kwargs)  # warm-up both paths
    engine.run(x, observer=acc, **kwargs)
    plain, counted, ratios, result_s, cpu_plain, cpu_counted = [], [], [], [], [], []
    for _ in range(repeats):
        acc.reset()
        c0 = time.process_time()
        a = engine.run(x, **kwargs).sim_time_s
        c1 = time.process_time()
        b = engine.run(x, observer=acc, **kwargs).sim_time_s
        c2 = time.process_time()
        t0 = time.perf_counter()
        activity = acc.result()
        result_s.append(time.perf_counter() - t0)
        plain.append(a)
        counted.append(b)
        ratios.append(b / a)
        cpu_plain.append(c1 - c0)
        cpu_counted.append(c2 - c1)
    row = {
        "network": name, "target": target_name, "cores": mapping.cores_used,
        "batch": batch, "steps": kwargs["steps"], "device": device,
        "plain_s": min(plain), "accounted_s": min(counted),
        "ratio_best": min(counted) / min(plain), "ratio_median": statistics.median(ratios),
        "cpu_plain_s": min(cpu_plain), "cpu_accounted_s": min(cpu_counted),
        "cpu_ratio_best": min(cpu_counted) / min(cpu_plain),
        "accountant_build_s": build_s, "result_s": min(result_s),
        "syn_ops_per_sample": activity.total("syn_ops") / activity.samples,
        "messages_per_sample": activity.total("messages_out") / activity.samples,
    }
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default="demo-cnn,pilotnet")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", default=None,
                    help="comma-separated torch CPU thread counts to run (default: torch's)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "accounting.json"))
    args = ap.parse_args(argv)
    threads = ([int(t) for t in args.threads.split(",")] if args.threads
               else [torch.get_num_threads()])
    results = {
        "goal": "accounted / plain simulation time <= 1.30",
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "python": sys.version.split()[0], "torch": torch.__version__, "rows": [],
    }
    if args.device.startswith("cuda") and torch.cuda.is_available():
        results["gpu"] = torch.cuda.get_device_name(0)
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for name in args.networks.split(","):
            row = bench(name, NETWORKS[name][1], args.device, args.repeats)
            row["torch_threads"] = n_threads
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
