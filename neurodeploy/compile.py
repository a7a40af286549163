"""The compile pipeline behind ``neurodeploy compile MODEL --target T --out DIR``: a named list of
passes from any model file to a mapped fixed-point network, each step checked and timed.

Steps (each validates the IR it returns and records its wall time in ``compile.json``):

1. ``load``: read the model (``.pt``, ``.onnx``, ``.nir``, ``.net``, IR file or folder);
2. ``fold_bntt`` (float models with BNTT): time-averaged BatchNorm, accuracy change reported
   when calibration data is given;
3. ``fold_bn``: fold BatchNorm into the preceding synapse;
4. ``quantize``: fixed point for the target (per-layer scales, exponents, decays, thresholds)
   with the quantization report;
5. ``legalize``: only layer types lava-dl netx can run (pool → conv, joins → relays);
6. ``map``: cores and chips under the target's limits (fails here, before any simulation, when
   the network does not fit);
7. ``write``: ``model.ir.h5`` (fixed-point IR), ``network.net`` (lava-dl netx, when netx can
   express every neuron: Lava's LIF has no soft reset, so such networks need
   ``--hard-reset``), ``mapping.json`` and ``compile.json``.

A model that is already fixed point (a netx file) skips steps 2–4.

**On-chip SAM accumulator** (``sam_layers``): the named conv spiking layers get the
accumulator of :mod:`neurodeploy.sam` (a decaying trace per neuron and a channel sum per pixel);
``map`` places its compartments, synapses and state on the layers' cores
(:func:`neurodeploy.mapping.map_graph` with a :class:`~neurodeploy.sam.SamSpec`), so
``mapping.json`` shows what it takes and every dataset run of the folder counts and costs its
events. ``compile.json`` records the layers and γ in ``options`` and the mapping's SAM
summary under ``sam``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import BadInputFileError, NeurodeployError
from .ir import BNTT, BatchNorm, Graph
from .outdir import check_out_dir, jsonable, write_dir_atomic

FORMAT = "neurodeploy-compile"
VERSION = 1
#: Files a compile writes; an output folder holding only these may be overwritten.
OUTPUT_FILES = ("model.ir.h5", "network.net", "mapping.json", "compile.json")


class _Steps:
    """Runs named steps, validates each result graph and records times and notes."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.rows: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.log = log

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        self.log(f"{name} ...")
        t0 = time.perf_counter()
        out = fn()
        graph = out[0] if isinstance(out, tuple) else out
        if isinstance(graph, Graph):
            graph.validate()
        seconds = time.perf_counter() - t0
        self.rows.append({"step": name, "seconds": round(seconds, 6)})
        return out


def calibration_samples(calib: str | None, samples: int, in_shape: tuple[int, ...]
                        ) -> np.ndarray | None:
    """``samples`` float samples ``(N, *in_shape)`` of the training split of dataset ``calib``
    (None without one); the shape must be the model's."""
    if calib is None:
        return None
    from .models.data import load_dataset, subset

    data = subset(load_dataset(calib, split="train"), samples)
    if tuple(data.in_shape) != tuple(in_shape):
        raise NeurodeployError(
            f"calibration data {calib!r} has samples of shape {tuple(data.in_shape)}, the model "
            f"expects {tuple(in_shape)}")
    return data.x.numpy().astype(np.float64)


BNTT_MODES = ("fold", "schedule")


def compile_in_memory(graph: Graph, target: Any, *, calib: str | None = None,
                      calib_samples: int = 64, steps: int | None = None
                      ) -> tuple[Graph, Graph, list[str]]:
    """``(quantized graph, deployed graph, warnings)`` of a float ``graph`` as ``neurodeploy
    compile --calib CALIB --calib-samples N`` makes them (BNTT folded, quantized, legalized
    when netx can hold it), without writing files: what the SAM, attack and pruning runs
    deploy."""
    from .passes.legalize import legalize_or_keep

    x_cal = calibration_samples(calib, calib_samples, tuple(graph.shapes[graph.inputs[0]]))
    fixed, _, warnings = fixed_point(graph, target, calib=x_cal, steps=steps)
    deployed, not_legal = legalize_or_keep(fixed)
    if not_legal is not None:
        warnings.append(not_legal)
    return fixed, deployed, warnings


def mapping_text(doc: dict[str, Any], core_lines: Sequence[str] | None = None) -> str:
    """``mapping.json`` text: indented, one compact line per core (large networks have
    hundreds of thousands of cores; fully indented they take seconds and 40 % more bytes).

    ``core_lines`` (:meth:`neurodeploy.mapping.Mapping.core_lines`, the rows already as
    compact JSON) replaces ``doc["per_core"]``: the compile writes a mapping this way, with
    ``doc = mapping.to_json(per_core=False)``; the text is the same."""
    if core_lines is None:
        core_lines = [json.dumps(row, separators=(",", ":")) for row in doc["per_core"]]
    head = json.dumps({**doc, "per_core": []}, indent=1)
    if not core_lines:
        return head + "\n"
    body = ",\n  ".join(core_lines)
    return head.replace('"per_core": []', '"per_core": [\n  ' + body + "\n ]", 1) + "\n"


def fixed_point(graph: Graph, target: Any, *, calib: np.ndarray | None = None,
                steps: int | None = None, hard_reset: bool = False, bntt: str = "fold",
                bntt_statistic: str = "mean",
                run: Callable[[str, Callable[[], Any]], Any] | None = None
                ) -> tuple[Graph, dict[str, Any], list[str]]:
    """Compile steps 2–4 on a float ``graph``: fold BNTT (``bntt="fold"``) or keep it as
    per-step ``QCubaBNTT`` neurons (``"schedule"``, targets with programmable neurons), fold
    BatchNorm, quantize for ``target`` (Lava-compatible: conv exponents >= 0).

    ``run(name, fn)`` runs each step (compile times and validates them); ``calib`` is float
    calibration samples ``(N, *input_shape)``. Returns ``(fixed graph, report, warnings)``
    with the report's ``bntt`` and ``quantization`` entries.
    """
    if bntt not in BNTT_MODES:
        raise NeurodeployError(f"bntt must be one of {', '.join(BNTT_MODES)}, got {bntt!r}")
    run = run or (lambda name, fn: fn())
    report: dict[str, Any] = {}
    warnings: list[str] = []
    has_bntt = any(isinstance(n, BNTT) for n in graph.nodes.values())
    if has_bntt and bntt == "fold":
        from .passes.bntt import fold_bntt

        graph, bntt_report = run("fold_bntt", lambda: fold_bntt(graph,
                                                                statistic=bntt_statistic))
        report["bntt"] = bntt_report.to_dict()
        warnings.append("BNTT folded into time-averaged batch norm (per-step statistics are "
                        "lost; see bntt in compile.json for the deviation per layer; "
                        "--bntt schedule keeps them on targets with programmable neurons)")
    if any(isinstance(n, BatchNorm) for n in graph.nodes.values()):
        from .passes.fold_bn import fold_batchnorm

        graph = run("fold_bn", lambda: fold_batchnorm(graph))
    from .passes.quantize import quantize

    extra = {"bntt": "schedule"} if has_bntt and bntt == "schedule" else {}
    graph, qreport = run("quantize", lambda: quantize(
        graph, target, calib=calib, allow_hard_reset=hard_reset, steps=steps,
        lava_compatible=True, **extra))
    report["quantization"] = qreport.to_dict()
    warnings.extend(report["quantization"].get("warnings", []))
    return graph, report, warnings


# ------------------------------------------------------------------------------ reading back


@dataclass
class CompiledFolder:
    """A compile output folder, read and checked (:func:`read_compiled`)."""

    path: Path
    doc: dict[str, Any]
    graph: Graph  # model.ir.h5
    steps: int
    quantized_source: bool  # compiled from a float model (quantize ran)

    def target(self) -> Any:
        """The compile's target: its ``.toml`` file when it still exists, else its name."""
        from .targets import load_target

        path, name = self.doc.get("target_path"), self.doc.get("target")
        spec = path if isinstance(path, str) and Path(path).is_file() else name
        if not isinstance(spec, str):
            raise BadInputFileError(self.path / "compile.json", "records no target",
                                    hint="re-run the compile")
        return load_target(spec)

    def mapping(self) -> Any:
        """The compile's :class:`~neurodeploy.mapping.Mapping` (``mapping.json``)."""
        from .mapping import Mapping

        return Mapping.from_json(read_mapping_json(self.path), self.path / "mapping.json")


def read_mapping_json(folder: str | Path) -> dict[str, Any]:
    """The ``mapping.json`` document of a compile folder."""
    path = Path(folder) / "mapping.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BadInputFileError(path, f"cannot read the compile's mapping ({err})",
                                hint="re-run the compile") from None


def read_compiled(folder: str | Path) -> CompiledFolder:
    """Read a compile folder (``compile.json``, ``model.ir.h5``); every problem is a one-line
    :class:`~neurodeploy.errors.BadInputFileError` naming the file and what to do."""
    from .ir.serialize import load_graph

    path = Path(folder)
    hint = "make one with: neurodeploy compile MODEL --target TARGET --out DIR"
    if not path.exists():
        raise BadInputFileError(path, "no such folder", hint=hint)
    if not path.is_dir():
        raise BadInputFileError(path, "not a folder; give a compile output folder", hint=hint)
    cj = path / "compile.json"
    if not cj.is_file():
        raise BadInputFileError(path, "not a compile folder (no compile.json)", hint=hint)
    try:
        doc = json.loads(cj.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BadInputFileError(cj, f"not valid JSON ({' '.join(str(err).split())})",
                                hint="re-run the compile") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BadInputFileError(cj, f"format is not {FORMAT!r}", hint=hint)
    if doc.get("version") != VERSION:
        raise BadInputFileError(cj, f"compile.json version {doc.get('version')!r} is not "
                                f"supported (this neurodeploy reads {VERSION})",
                                hint="re-run the compile")
    options = doc.get("options")
    if not isinstance(options, dict):
        raise BadInputFileError(cj, "lacks the compile options ('options')",
                                hint="re-run the compile with this neurodeploy")
    _check_options(cj, options)
    ir = path / "model.ir.h5"
    if not ir.is_file():
        raise BadInputFileError(ir, "no such file (the compile folder is incomplete)",
                                hint="re-run the compile")
    graph = load_graph(ir)
    if graph.stage != "fixed":
        raise BadInputFileError(ir, f"holds a {graph.stage}-stage graph, not the fixed-point "
                                "network a compile writes", hint="re-run the compile")
    if len(graph.inputs) != 1:
        raise BadInputFileError(ir, f"has {len(graph.inputs)} Input nodes; "
                                "deployed runs need exactly one")
    steps = _compiled_steps(doc, options, graph)
    if steps is None:
        raise BadInputFileError(cj, "records no number of time steps",
                                hint="re-compile with --timesteps T")
    return CompiledFolder(path, doc, graph, steps, isinstance(doc.get("quantization"), dict))


def _check_options(cj: Path, options: dict[str, Any]) -> None:
    from .passes.bntt import STATISTICS

    def positive(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    problems = []
    if options.get("calib") is not None and not isinstance(options["calib"], str):
        problems.append("calib must be a dataset spec (string) or null")
    if not positive(options.get("calib_samples", 64)):
        problems.append("calib_samples must be a positive integer")
    if options.get("timesteps") is not None and not positive(options["timesteps"]):
        problems.append("timesteps must be a positive integer or null")
    for key in ("hard_reset", "lava_compatible"):
        if not isinstance(options.get(key, False), bool):
            problems.append(f"{key} must be true or false")
    if options.get("bntt") not in (None, "fold", "schedule"):
        problems.append("bntt must be 'fold', 'schedule' or null")
    if options.get("bntt_statistic", "mean") not in STATISTICS:
        problems.append(f"bntt_statistic must be one of {', '.join(STATISTICS)}")
    sam_layers = options.get("sam_layers")
    if sam_layers is not None and (not isinstance(sam_layers, list) or not sam_layers or not all(
            isinstance(n, str) and n for n in sam_layers)):
        problems.append("sam_layers must be a non-empty list of layer names or null")
    gamma = options.get("sam_gamma")
    if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, (int, float))
                              or not np.isfinite(gamma) or gamma <= 0):
        problems.append("sam_gamma must be a positive number or null")
    if problems:
        raise BadInputFileError(cj, "bad compile options: " + "; ".join(problems),
                                hint="re-run the compile")


def _compiled_steps(doc: dict[str, Any], options: dict[str, Any], graph: Graph) -> int | None:
    """The compile's ``T``: ``--timesteps``, else the model's, else netx's ``tSample``."""
    netx_sim = graph.metadata.get("netx", {}).get("simulation", {}) \
        if isinstance(graph.metadata.get("netx"), dict) else {}
    for value in (options.get("timesteps"), doc.get("timesteps"),
                  graph.metadata.get("timesteps"), netx_sim.get("tSample")):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
            return int(value)
    return None


def compile_model(model: str | Path | Graph, target: str | Path, out_dir: str | Path, *,
                  calib: str | None = None, calib_samples: int = 64,
                  timesteps: int | None = None, hard_reset: bool = False,
                  bntt: str = "fold", bntt_statistic: str = "mean",
                  sam_layers: str | Sequence[str] | None = None, sam_gamma: float = 0.5,
                  overwrite: bool = False,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compile ``model`` for ``target`` into ``out_dir`` (see the module docstring).

    Args:
        model: model path (any format :func:`neurodeploy.frontends.load.load_model` reads) or
            an IR graph (float or fixed point).
        target: built-in target name or a target ``.toml`` path (neuromorphic).
        out_dir: output folder, written atomically (new, empty, or a previous compile with
            ``overwrite``).
        calib: dataset spec (training split) for calibration and the BNTT accuracy change.
        calib_samples: calibration samples.
        timesteps: time steps per inference (default: the model's ``timesteps`` metadata).
        hard_reset: turn reset-by-subtraction neurons into Lava's hard reset (with a warning),
            so targets without programmable neurons and netx files can run them.
        bntt: ``"fold"`` (time-averaged statistics folded into the synapses) or
            ``"schedule"`` (exact per-step gain/bias neurons; programmable-neuron targets).
        bntt_statistic: ``"mean"`` or ``"median"`` over time for BNTT folding.
        sam_layers: conv spiking layers that carry an on-chip SAM accumulator (names, or one
            comma-separated string; module docstring); None for none. Needs a target with
            programmable neurons and graded spikes (loihi2).
        sam_gamma: the accumulator's γ per time step (> 0; sets its 12-bit decay).

    Returns the ``compile.json`` document.
    """
    from .frontends.load import load_model
    from .mapping import map_graph
    from .targets import load_target

    log = log or (lambda message: None)
    out = Path(out_dir)
    check_out_dir(out, OUTPUT_FILES, overwrite=overwrite, what="compile")
    tgt = load_target(target).require_neuromorphic("compile for")
    if sam_layers is not None:
        from .sam import check_gamma, check_sam_target, decay_mantissa

        sam_gamma = check_gamma(sam_gamma)
        decay_mantissa(sam_gamma)
        check_sam_target(tgt)
    steps = _Steps(log)
    t_start = time.perf_counter()
    graph = steps.run("load", lambda: model if isinstance(model, Graph) else load_model(model))
    sam_names: list[str] | None = None
    if sam_layers is not None:  # fail before the long steps
        from .sam import check_sam_layers

        sam_names = check_sam_layers(graph, sam_layers)
    source = str(Path(model).resolve()) if not isinstance(model, Graph) \
        else graph.metadata.get("source", "graph")
    report: dict[str, Any] = {}
    if graph.stage == "float":
        shape = graph.shapes[graph.inputs[0]]
        x_cal = calibration_samples(calib, calib_samples, tuple(shape))
        T = int(timesteps or graph.metadata.get("timesteps") or 0) or None
        if x_cal is not None and T is not None and bntt == "fold" and any(
                isinstance(n, BNTT) for n in graph.nodes.values()):
            from .models.data import load_dataset, subset
            from .passes.bntt import bntt_accuracy_change

            data = subset(load_dataset(calib, split="test"), calib_samples)
            report["bntt_accuracy_change"] = bntt_accuracy_change(
                graph, data.x.numpy(), data.y.numpy(), T, statistic=bntt_statistic)
        graph, fp_report, fp_warnings = fixed_point(
            graph, tgt, calib=x_cal, steps=T, hard_reset=hard_reset, bntt=bntt,
            bntt_statistic=bntt_statistic, run=steps.run)
        report.update(fp_report)
        steps.warnings.extend(fp_warnings)
    from .passes.legalize import legalize_or_keep

    before = graph
    graph, not_legal = steps.run("legalize", lambda: legalize_or_keep(graph))
    if not_legal is not None:
        steps.warnings.append(not_legal)
    spec = None
    if sam_names is not None:
        from .sam import SamSpec, check_sam_layers

        check_sam_layers(graph, sam_names)
        shapes = before.shapes  # relay channels that legalize appends carry no trace
        spec = SamSpec(tuple(sam_names), gamma=sam_gamma,
                       channels={n: int(shapes[n][0]) for n in sam_names if n in shapes})
    mapping = steps.run("map", lambda: map_graph(graph, tgt, sam=spec))
    steps.warnings.extend(mapping.warnings)

    def write(tmp: Path) -> None:
        from .frontends.netx import write_netx
        from .ir.serialize import save_graph

        t0 = time.perf_counter()
        save_graph(graph, tmp / "model.ir.h5")
        files = ["model.ir.h5"]
        try:
            write_netx(graph, tmp / "network.net")
            files.append("network.net")
        except NeurodeployError as err:
            hint = "; --hard-reset makes soft-reset networks netx-ready" \
                if "reset" in str(err) else ""
            steps.warnings.append(f"network.net not written: {err} (model.ir.h5 holds the "
                                  f"network{hint})")
        (tmp / "mapping.json").write_text(mapping_text(mapping.to_json(per_core=False),
                                                       mapping.core_lines()))
        files += ["mapping.json", "compile.json"]
        steps.rows.append({"step": "write", "seconds": round(time.perf_counter() - t0, 6)})
        doc.update({"files": files, "steps": steps.rows, "warnings": steps.warnings,
                    "seconds": round(time.perf_counter() - t_start, 6)})
        (tmp / "compile.json").write_text(json.dumps(jsonable(doc), indent=1) + "\n")

    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "neurodeploy": __version__, "model": source,
        "target": tgt.name, "target_path": str(tgt.path),
        "timesteps": timesteps or graph.metadata.get("timesteps"),
        "options": {"calib": calib, "calib_samples": calib_samples, "timesteps": timesteps,
                    "hard_reset": hard_reset, "bntt": bntt, "bntt_statistic": bntt_statistic,
                    "lava_compatible": True, "sam_layers": sam_names,
                    "sam_gamma": None if sam_names is None else sam_gamma},
        "cores_used": mapping.cores_used, "chips_used": mapping.chips_used,
        "layers": graph.neurons, **report,
    }
    if mapping.sam:
        doc["sam"] = dict(mapping.sam)
    write_dir_atomic(out, write)
    return doc
