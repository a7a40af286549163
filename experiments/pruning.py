"""Pruning compression vs accuracy (Spike-Thrift: AGC-guided SNNs keep accuracy at about
90-97 % sparsity, up to 33.4x compression).

The shipped demo CNN pruned globally by magnitude and by attention-guided one-shot
compression (AGC: magnitude masks, then fine-tuning with the attention-transfer loss from the
unpruned model, β = 1000), 1 epoch of fine-tuning with the masks fixed, at sparsities 0.5,
0.8, 0.9, 0.95 and 0.98; each compiled for loihi2 and run deployed on 500 mnist5k test samples
(``neurodeploy.pruning.run_pruning``): float and deployed accuracy, cores, synaptic memory,
energy per inference.

    .venv/bin/python experiments/pruning.py        # about 15 min on 2 cores
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import DATA, DEMO, log, parse_args, save, smoke_model, table

SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.98)


def main() -> None:
    args = parse_args(__doc__)
    from neurodeploy.pruning import run_pruning

    if args.smoke:
        model = smoke_model(args.work)
        sparsities, samples, data = SPARSITIES[2:3], 16, "digits"
    else:
        model, sparsities, samples, data = DEMO, SPARSITIES, 500, DATA
    docs = {}
    for method in ("magnitude", "agc"):
        with tempfile.TemporaryDirectory() as tmp:
            docs[method] = run_pruning(model, method=method, sparsities=sparsities, data=data,
                                       samples=samples, out=Path(tmp) / "p", log=log)
    rows = []
    for method, doc in docs.items():
        for r in doc["rows"]:
            e = r.get("energy_per_inference_j") or {}
            rows.append([method, r["sparsity"], r["achieved"]["total"],
                         r["accuracy"]["float"], r["accuracy"].get("deployed"), r.get("cores"),
                         r.get("synaptic_memory_bits", 0) / 1e6, e.get("total", 0) * 1e6,
                         e.get("dynamic", 0) * 1e6])
    print(table(["method", "sparsity", "achieved", "float acc", "deployed acc", "cores",
                 "syn. memory Mbit", "energy µJ", "dynamic µJ"], rows))
    save(args.results, "pruning",
         {"experiment": "pruning compression vs accuracy", "data": data, "samples": samples,
          "methods": {m: {"rows": d["rows"], "params": d.get("params")}
                      for m, d in docs.items()}})


if __name__ == "__main__":
    main()
