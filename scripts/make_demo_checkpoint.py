"""Train the demo checkpoints with a fixed seed: the default small BNTT CNN on ``mnist5k``
(``models/checkpoints/demo_cnn``) and its ANN twin, trained separately with the same
hyper-parameters (``models/checkpoints/demo_cnn_ann``). Each folder gets ``model.pt``,
``config.json`` and ``train.json``; existing ones are replaced. Fails if a ``model.pt`` is not
under 2 MB.

Run: ``.venv/bin/python scripts/make_demo_checkpoint.py [--out-root models/checkpoints]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from neurodeploy.models.train import DEFAULTS, train

ROOT = Path(__file__).resolve().parents[1]
#: Seed of the demo checkpoints (weights, shuffling; the data split uses split seed 0).
SEED = 0
MAX_BYTES = 2 * 1024 * 1024
#: Output folder per model kind.
FOLDERS = {"snn": "demo_cnn", "ann": "demo_cnn_ann"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-root", type=Path, default=ROOT / "models" / "checkpoints",
                    help="folder that receives demo_cnn/ and demo_cnn_ann/")
    ap.add_argument("--kinds", default="snn,ann", help="which to train: snn, ann or both")
    ap.add_argument("--progress", action="store_true", help="show progress bars")
    args = ap.parse_args(argv)
    summary = {}
    for kind in args.kinds.split(","):
        if kind not in FOLDERS:
            ap.error(f"unknown kind {kind!r}; use snn and/or ann")
        out = args.out_root / FOLDERS[kind]
        result = train(DEFAULTS["model"], DEFAULTS["data"], out_dir=out, kind=kind, seed=SEED,
                       progress=args.progress, overwrite=True)
        size = (out / "model.pt").stat().st_size
        summary[FOLDERS[kind]] = {
            "test_accuracy": result["test_accuracy"],
            "train_accuracy": result["train_accuracy"],
            "minutes": round(result["seconds"] / 60.0, 2), "model_pt_bytes": size,
        }
        print(json.dumps({FOLDERS[kind]: summary[FOLDERS[kind]]}), flush=True)
        if size >= MAX_BYTES:
            print(f"error: {out / 'model.pt'} is {size} bytes, over the 2 MB limit",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
