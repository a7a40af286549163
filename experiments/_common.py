"""Shared plumbing of the experiment scripts: a cached training step, result files and the
command line every script takes.

Trained models go to ``experiments/work/<name>/`` (ignored by git) and are reused when the
same name was trained with the same settings before (``settings.json`` beside the model), so
a script can be re-run to redo only its analysis. Results go to
``experiments/results/<script>.json`` (committed; ``docs/experiments.md`` quotes them) and
plots beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work"
RESULTS = ROOT / "results"
DEMO = ROOT.parent / "models" / "checkpoints" / "demo_cnn"
DEMO_ANN = ROOT.parent / "models" / "checkpoints" / "demo_cnn_ann"
DATA = "mnist5k"


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The common command line: ``--smoke`` (a seconds-long run on tiny settings, for the
    tests) and ``--work DIR`` (where trained models are cached)."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="tiny settings (1 epoch, few samples): checks the script runs")
    p.add_argument("--work", type=Path, default=WORK, help="trained-model cache folder")
    p.add_argument("--results", type=Path, default=RESULTS, help="results folder")
    return p


def parse_args(doc: str | None) -> argparse.Namespace:
    """Parse the common command line; a smoke run never touches the real model cache or
    results (they go to ``smoke/`` sub-folders unless given)."""
    args = parser(doc).parse_args()
    if args.smoke:
        if args.work == WORK:
            args.work = WORK / "smoke"
        if args.results == RESULTS:
            args.results = WORK / "smoke" / "results"
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def train_cached(work: Path, name: str, *, epochs: int, data: str = DATA,
                 hire: dict[str, Any] | None = None, **config: Any) -> tuple[Path, dict[str, Any]]:
    """Train the zoo ``cnn`` on ``data`` (default mnist5k) with ``config`` overrides (``timesteps``, ``bntt``,
    ``leak``, ...) into ``work/name``, or reuse it when the settings match. Returns the folder
    and its ``train.json``."""
    from neurodeploy.models import train as training
    from neurodeploy.models.data import load_splits
    from neurodeploy.models.zoo import default_config

    folder = work / name
    settings = {"epochs": epochs, "data": data, "hire": hire, "config": config}
    stamp = folder / "settings.json"
    if stamp.exists() and json.loads(stamp.read_text()) == settings \
            and (folder / "train.json").exists():
        log(f"reusing {folder}")
        return folder, json.loads((folder / "train.json").read_text())
    train_set, test_set = load_splits(data)
    arch = config.pop("arch", "cnn")
    cfg = default_config(arch, in_shape=train_set.in_shape, num_classes=train_set.num_classes,
                         **config)
    log(f"training {name}: {json.dumps(settings)}")
    extra = {"hire": hire} if hire is not None else {}
    result = training.train(cfg, (train_set, test_set), out_dir=folder, epochs=epochs,
                            progress=False, overwrite=True, **extra)
    stamp.write_text(json.dumps(settings) + "\n")
    log(f"{name}: test accuracy {result['test_accuracy']:.4f} in {result['seconds']:.0f} s")
    return folder, result


#: what ``--smoke`` runs train instead of the real models: 1 epoch on ``digits``, T = 4
SMOKE = dict(epochs=1, data="digits", timesteps=4, bntt=True)


def smoke_model(work: Path) -> Path:
    """The standard-trained model every ``--smoke`` run shares (trained once into
    ``work/standard``)."""
    return train_cached(work, "standard", **SMOKE)[0]


def save(results: Path, name: str, doc: dict[str, Any]) -> Path:
    """Write ``results/name.json`` (numpy values made plain)."""
    from neurodeploy.outdir import jsonable

    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    path.write_text(json.dumps(jsonable(doc), indent=1) + "\n")
    log(f"saved {path}")
    return path


def table(head: list[str], rows: list[list[Any]]) -> str:
    """A markdown table (printed by the scripts, pasted into docs/experiments.md)."""
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


if str(ROOT) not in sys.path:  # scripts import this module by name
    sys.path.insert(0, str(ROOT))
