"""From a dataset simulation folder (``neurodeploy simulate COMPILE_DIR --data DATA --out DIR``)
to the report (``neurodeploy report DIR``) and the ANN vs SNN comparison (``neurodeploy
compare DIR``): reads the folder's ``summary.json`` and the compile folder's ``mapping.json``,
finds the ANN and puts the sections of :mod:`neurodeploy.report` together.

**Which ANN.** ``--ann`` names it. Otherwise the SNN's *trained twin*: a checkpoint folder
``<model folder>_ann`` next to the SNN's (how the shipped ``demo_cnn``/``demo_cnn_ann`` and
``neurodeploy train --ann`` outputs are laid out). Otherwise, for a zoo checkpoint, the twin's
architecture (:func:`neurodeploy.models.zoo.twin_config`) with untrained weights: its cost
does not depend on the weights, its accuracy is unknown (reported as such).

**On-chip SAM accumulator.** A compile made with ``sam_layers`` counts and costs the
accumulator in every dataset run: the energy breakdown has its ``sam`` part, and the report's
``sam`` entry (its "Spike Activation Maps" section) holds
:func:`neurodeploy.sam.accumulator_summary` of the run (compartments, cores, extra cores,
synaptic ops and energy per inference, per layer).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import BadInputFileError, NeurodeployError

SIMULATION_FORMAT = "neurodeploy-simulation"


def read_simulation(folder: str | Path) -> dict[str, Any]:
    """``summary.json`` of a dataset simulation folder (checked)."""
    path = Path(folder)
    hint = "make one with: neurodeploy simulate COMPILE_DIR --data DATA --out DIR"
    if not path.is_dir():
        raise BadInputFileError(path, "no such folder", hint=hint)
    summary = path / "summary.json"
    try:
        doc = json.loads(summary.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputFileError(path, "not a simulation folder (no summary.json)",
                                hint=hint) from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BadInputFileError(summary, f"not valid JSON ({err})", hint=hint) from None
    if not isinstance(doc, dict) or doc.get("format") != SIMULATION_FORMAT:
        raise BadInputFileError(summary, "not a dataset simulation of a compile folder (the "
                                "report needs event counts)", hint=hint)
    for key in ("compiled", "activity", "cost", "accuracy", "steps", "samples"):
        if key not in doc:
            raise BadInputFileError(summary, f"lacks {key!r}", hint=hint)
    return doc


def _ann_source(sim: dict[str, Any], ann: str | None) -> tuple[Path | None, Any]:
    """``(path of a trained ANN or None, graph-building fallback or None)``."""
    from .models.checkpoint import checkpoint_file, twin_checkpoint

    if ann is not None:
        path = Path(ann)
        if not path.exists():
            raise BadInputFileError(path, "no such ANN model")
        return path, None
    model = Path(str(sim.get("model", "")))
    twin = twin_checkpoint(model)
    if twin is not None:
        return twin.parent, None
    folder = model if model.is_dir() else model.parent
    return None, checkpoint_file(model if model.suffix == ".pt" else folder)


def ann_side(sim: dict[str, Any], ann: str | None, data: str | None = None,
             samples: int | None = None, log: Callable[[str], None] | None = None
             ) -> tuple[dict[str, Any] | None, float | None, str | None]:
    """``(ann_cost result, ANN accuracy or None, ANN description)`` for a simulation; the
    accuracy on the test split of ``data`` (default: the simulation's dataset)."""
    from .ann_cost import ann_cost
    from .frontends.load import load_model

    say = log or (lambda message: None)
    path, twin_ckpt = _ann_source(sim, ann)
    if path is None and twin_ckpt is None:
        return None, None, None
    if path is not None:
        say(f"ANN: {path}")
        graph = load_model(path)
        accuracy = _ann_accuracy(path, data or sim.get("data"), samples)
        return ann_cost(graph, model=str(path)), accuracy, str(path)
    from .models.checkpoint import load_checkpoint, save_checkpoint
    from .models.zoo import build_model, twin_config

    _, config, _ = load_checkpoint(twin_ckpt)
    twin = twin_config(config)
    say(f"ANN: the zoo twin of {twin_ckpt} (untrained: cost only)")
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "twin.pt"
        save_checkpoint(p, build_model(twin), twin)
        graph = load_model(p)
    return ann_cost(graph, model=f"zoo twin of {twin_ckpt}"), None, f"zoo twin of {twin_ckpt}"


def _ann_accuracy(path: Path, data: str | None, samples: int | None) -> float | None:
    if data is None:
        return None
    from .models.checkpoint import checkpoint_file, load_checkpoint

    ckpt = checkpoint_file(path)
    if ckpt is None:
        return None
    from .models.data import load_dataset, subset
    from .models.train import evaluate

    model, _, _ = load_checkpoint(ckpt)
    test = load_dataset(data, split="test")
    if samples is not None:
        test = subset(test, samples)
    return evaluate(model, test)


def _snn_synapses(sim: dict[str, Any]) -> int | None:
    from .ann_cost import connections
    from .ir.serialize import load_graph

    path = Path(sim["compiled"]) / "model.ir.h5"
    try:
        return connections(load_graph(path))
    except NeurodeployError:
        return None


def _snn_view(sim: dict[str, Any]) -> dict[str, Any]:
    """The SNN side in report shape (what :func:`~neurodeploy.ann_cost.compare_doc` reads)."""
    from .report import activity_section

    return {"steps": sim["steps"], "target": sim["target"],
            "energy": sim["cost"]["energy"], "latency": sim["cost"]["latency"],
            "activity": activity_section(sim["activity"])}


def compare(snn: str | Path, *, ann: str | None = None, data: str | None = None,
            samples: int | None = None, log: Callable[[str], None] | None = None
            ) -> dict[str, Any]:
    """The ``ann_comparison`` section for a simulation folder ``snn`` (module docstring for
    the ANN); raises when no ANN can be found."""
    from .ann_cost import compare_doc

    sim = read_simulation(snn)
    ann_doc, ann_acc, what = ann_side(sim, ann, data, samples, log)
    if ann_doc is None:
        raise NeurodeployError(f"{snn}: no ANN to compare with; give --ann MODEL")
    snn_acc = sim["accuracy"].get("deployed")
    cmp = compare_doc(_snn_view(sim), ann_doc, {"ann": ann_acc, "snn": snn_acc},
                      synapses=_snn_synapses(sim))
    cmp["ann_model"] = what
    return cmp


def build_report(folder: str | Path, *, ann: str | None = None,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The report document of a dataset simulation folder (validated)."""
    from .compile import read_mapping_json
    from .report import activity_section, make_report

    sim = read_simulation(folder)
    cost = sim["cost"]
    accuracy = {stage: value for stage, value in sim["accuracy"].items()}
    cmp = None
    try:
        # the ANN on the same test samples as the SNN (the same seeded subset)
        cmp = compare(folder, ann=ann, samples=sim["samples"], log=log)
    except NeurodeployError as err:
        if ann is not None:
            raise
        (log or (lambda m: None))(f"no ANN comparison: {err}")
    if cmp is not None and (cmp.get("accuracy") or {}).get("ann") is not None:
        accuracy["ann"] = cmp["accuracy"]["ann"]
    mapping = read_mapping_json(sim["compiled"])
    extra: dict[str, Any] = {}
    if mapping.get("sam"):
        from .sam import accumulator_summary, register_report_section

        acc = accumulator_summary(mapping, sim["activity"], cost)
        if acc is not None:
            register_report_section()
            extra["sam"] = {"gamma": acc["gamma"], "decay": acc["decay"],
                            "scale": acc["scale"], "accumulator": acc}
    return make_report(
        model=sim["model"], target=sim["target"], steps=sim["steps"], samples=sim["samples"],
        accuracy=accuracy, mapping=mapping,
        activity=activity_section(sim["activity"]),
        energy={**cost["energy"], "per_step_j": cost["per_step"]["energy_j"]},
        latency={**cost["latency"], "time_per_step_s": cost["per_step"]["time_s"],
                 "mean_time_per_step_s": cost["latency"]["time_per_step_s"]},
        ann_comparison=cmp,
        assumptions=list(cost.get("assumptions", [])), data=sim.get("data"),
        pipeline_depth=sim.get("pipeline_depth"), **extra)
