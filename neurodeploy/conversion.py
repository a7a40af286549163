"""The Python API behind ``neurodeploy convert ANN --calib DATA --out DIR``: load a ReLU ANN
(a zoo checkpoint, an ONNX file, an IR file or graph, or a torch module), convert it to an IF
SNN with layer-wise threshold balancing (:func:`neurodeploy.passes.convert.ann_to_snn`),
evaluate the ANN and the SNN at several numbers of time steps, and write the result atomically.

Output folder (written to a temporary folder beside it, then renamed; see :data:`OUTPUT_FILES`):

* ``snn.ir.h5``: the converted SNN (:func:`neurodeploy.ir.serialize.save_graph`);
* ``conversion.json``: settings, per-layer thresholds and statistics, ANN accuracy, SNN
  accuracy per T, notes and warnings;
* ``accuracy_vs_timesteps.png``: SNN accuracy against T with the ANN's as a reference line;
* ``model.pt`` (zoo checkpoints only): the SNN twin as a zoo checkpoint (IF neurons, λ = 1,
  the per-layer thresholds in each LIF's ``threshold`` buffer, the ANN's weights), checked
  against the IR SNN by simulation before it is written.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from . import __version__
from .errors import NeurodeployError, UnsupportedError
from . import outdir
from .outdir import write_dir_atomic
from .ir import Graph

PathLike = Union[str, "os.PathLike[str]"]

#: Files :func:`convert` writes; an output folder holding only these may be overwritten.
OUTPUT_FILES = ("snn.ir.h5", "conversion.json", "accuracy_vs_timesteps.png", "model.pt")
#: Time steps evaluated by default.
DEFAULT_STEPS = (10, 20, 50, 100, 200)
#: Samples used to check ``model.pt`` against the IR SNN.
CHECK_SAMPLES = 32
FORMAT = "neurodeploy-conversion"
VERSION = 1


# ============================================================================================
# Loading the ANN
# ============================================================================================


def load_ann(ann: Graph | nn.Module | PathLike, *, in_shape: Sequence[int] | None = None
             ) -> tuple[Graph, dict[str, Any]]:
    """The ANN as an IR graph plus what is known about its source.

    ``ann`` is an IR :class:`Graph`, a torch module (traced with ``from_torch``; needs
    ``in_shape``), or a file: a zoo checkpoint ``.pt``/``.pth`` (its config must say
    ``kind="ann"``), an ``.onnx`` file, or anything :func:`~neurodeploy.frontends.load.load_model`
    reads. The returned dict has ``source`` (a description), and for zoo checkpoints ``model``
    (the torch ANN) and ``config``.

    Raises :class:`UnsupportedError` for an SNN checkpoint and for modules without
    ``in_shape``; file problems come from the readers as
    :class:`~neurodeploy.errors.BadInputFileError`.
    """
    if isinstance(ann, Graph):
        return ann, {"source": "IR graph"}
    if isinstance(ann, nn.Module):
        if in_shape is None:
            raise UnsupportedError(
                f"converting a torch module ({type(ann).__name__}) needs its input shape; pass "
                "in_shape=(C, H, W) or (N,)")
        from .frontends.torch import from_torch

        graph = from_torch(ann.eval(), in_shape=tuple(int(s) for s in in_shape))
        return graph, {"source": f"torch module {type(ann).__name__}"}
    path = Path(ann)
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        from .frontends.torch import from_torch
        from .models.checkpoint import load_checkpoint

        model, config, metrics = load_checkpoint(path)
        if config["kind"] != "ann":
            raise UnsupportedError(
                f"{path}: the checkpoint holds an SNN (kind={config['kind']!r}); conversion "
                "takes the ANN twin (a zoo config with kind='ann')")
        graph = from_torch(model, in_shape=tuple(config["in_shape"]))
        return graph, {"source": str(path), "model": model, "config": config,
                       "metrics": metrics}
    if suffix == ".onnx":
        from .frontends.onnx import read_onnx

        return read_onnx(path), {"source": str(path)}
    from .frontends.load import load_model

    return load_model(path), {"source": str(path)}


# ============================================================================================
# Output folder
# ============================================================================================


def check_out_dir(out_dir: PathLike, *, overwrite: bool = False) -> Path:
    """``out_dir`` as a Path if :func:`convert` may write it: a new path, an empty folder, or
    (with ``overwrite=True``) a folder holding only a previous conversion's files. Anything else
    raises :class:`NeurodeployError`; files neurodeploy did not write are never replaced."""
    return outdir.check_out_dir(out_dir, OUTPUT_FILES, overwrite=overwrite, what="conversion")


def _write_atomic(out: Path, write: Any) -> None:
    """Call ``write(tmp_folder)``, then move the folder to ``out`` (replacing an old one)."""
    write_dir_atomic(out, write)


def plot_accuracy(path: PathLike, curve: Sequence[tuple[int, float]], ann_accuracy: float, *,
                  title: str = "") -> None:
    """Write a PNG of SNN accuracy (%) against time steps T, with the ANN's accuracy dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ts = [t for t, _ in curve]
    ax.plot(ts, [100 * a for _, a in curve], "o-", label="converted SNN")
    ax.axhline(100 * ann_accuracy, color="gray", ls="--", label=f"ANN ({100 * ann_accuracy:.1f}%)")
    if len(ts) > 1 and max(ts) / max(min(ts), 1) >= 10:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(ts)
    ax.set_xticklabels([str(t) for t in ts])
    ax.set_xlabel("time steps T")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "ANN→SNN conversion")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(str(path))


# ============================================================================================
# The SNN as a zoo checkpoint
# ============================================================================================


def _zoo_snn(ann_model: nn.Module, config: Mapping[str, Any], snn_graph: Graph,
             report: Mapping[str, Any], *, timesteps: int) -> tuple[nn.Module, dict[str, Any]]:
    """The zoo SNN twin of ``ann_model`` with the converted thresholds (and BNTT = the ANN's
    BN at every step, mean divided by the input's spike scale, as the IR's folded bias)."""
    from .frontends.torch import node_name
    from .models import layers as L
    from .models import zoo

    conv = report
    snn_config = zoo.twin_config(config)
    snn_config.update(leak=1.0, threshold=1.0, reset=conv["reset"], order="integrate_fire",
                      encoder=conv["encoding"], learn_leak=False, learn_threshold=False,
                      timesteps=int(timesteps))
    if conv["encoding"] == "poisson":
        snn_config["poisson_rescale"] = float(conv["poisson_rescale"])
    snn_config = zoo.validate_config(snn_config)
    snn = zoo.build_model(snn_config)
    zoo.load_twin_weights(snn, ann_model)
    ann_body = getattr(ann_model, "body", ann_model)
    relus = [p for p, m in ann_body.named_modules() if isinstance(m, nn.ReLU)]
    lifs = [(p, m) for p, m in snn.body.named_modules() if isinstance(m, L.LIF)]
    thresholds = {e["name"]: e["threshold"] for e in report["layers"]}
    if len(relus) != len(lifs):
        raise UnsupportedError(f"the ANN has {len(relus)} ReLU modules but its SNN twin "
                               f"{len(lifs)} LIF layers")
    scales = report["scales"]
    per_layer: dict[str, float] = {}
    with torch.no_grad():
        for relu_path, (lif_path, lif) in zip(relus, lifs):
            name = node_name(relu_path)
            if name not in thresholds:
                raise UnsupportedError(f"no threshold for ANN layer {relu_path} (IR node {name})")
            lif.threshold.fill_(thresholds[name])
            per_layer[lif_path] = thresholds[name]
        # BN (ANN) -> BNTT (SNN): the same affine at every step, shift divided by the input scale
        ann_mods = dict(ann_body.named_modules())
        snn_mods = dict(snn.body.named_modules())
        last_syn = None
        for path, m in ann_body.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                last_syn = path
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                bntt = snn_mods.get(path)
                if not isinstance(bntt, L.BNTT) or last_syn is None:
                    raise UnsupportedError(f"no BNTT twin for the ANN's batch norm {path}")
                syn = node_name(last_syn)
                preds = snn_graph.predecessors(syn)
                s_in = float(scales.get(preds[0], 1.0)) if preds else 1.0
                bn = ann_mods[path]
                for step_bn in bntt.bn:
                    step_bn.weight.copy_(bn.weight)
                    step_bn.running_var.copy_(bn.running_var)
                    step_bn.running_mean.copy_(bn.running_mean / s_in)
    return snn.eval(), {"config": snn_config, "thresholds": per_layer}


def _check_zoo_snn(snn: nn.Module, snn_graph: Graph, x: torch.Tensor, steps: int, *,
                   encoding: str, seed: int, rescale: float) -> dict[str, Any]:
    """Run the zoo SNN's body step by step (float64, the same input spikes) and the IR SNN in
    the float simulator; return agreement numbers."""
    from .backends import floatsim
    from .passes.convert import poisson_spikes

    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    feed = (poisson_spikes(xt, steps, seed=seed, rescale=rescale) if encoding == "poisson"
            else xt)
    ir = floatsim.forward(snn_graph, feed, steps).reshape(xt.shape[0], -1).numpy()
    model = copy.deepcopy(snn).double().eval()
    model.reset_state()
    with torch.no_grad():
        out = None
        for t in range(steps):
            out = model.body(feed[..., t] if encoding == "poisson" else feed)
    zoo_v = out.reshape(xt.shape[0], -1).numpy()
    diff = np.abs(zoo_v - ir)
    agree = float((zoo_v.argmax(1) == ir.argmax(1)).mean())
    return {"samples": int(xt.shape[0]), "steps": int(steps), "prediction_agreement": agree,
            "median_abs_diff": float(np.median(diff)), "max_abs_diff": float(diff.max())}


# ============================================================================================
# convert
# ============================================================================================


def _steps_list(steps: Sequence[int]) -> list[int]:
    try:
        out = sorted({int(s) for s in steps})
    except (TypeError, ValueError):
        raise NeurodeployError(f"steps {steps!r} must be positive integers") from None
    if not out or out[0] < 1 or any(int(s) != s for s in steps):
        raise NeurodeployError(f"steps {list(steps)} must be positive integers")
    return out


def convert(ann: Graph | nn.Module | PathLike, *, out_dir: PathLike, calib: str | PathLike =
            "mnist5k", calib_samples: int = 512, method: str = "max",
            steps: Sequence[int] = DEFAULT_STEPS, eval_data: str | PathLike | None = None,
            eval_samples: int | None = None, calib_steps: int | None = None,
            reset: str = "subtract", encoding: str = "direct", scale: float = 1.0,
            poisson_rescale: float = 1.0, seed: int = 0, batch_size: int = 256,
            in_shape: Sequence[int] | None = None, overwrite: bool = False,
            progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Convert an ANN to an SNN, evaluate both, and write ``out_dir`` (see the module doc).

    Args:
        ann: zoo ANN checkpoint (``.pt``), ``.onnx`` file, IR file/graph, or torch module (then
            ``in_shape`` is needed).
        out_dir: output folder (new or empty; ``overwrite=True`` replaces a previous
            conversion's folder).
        calib: dataset spec of the calibration data (its *training* split; see
            :func:`neurodeploy.models.data.load_dataset`): ``"digits"``, ``"mnist5k"``, a
            ``.npz`` file or an image folder.
        calib_samples: calibration samples (a seeded random subset; 512 as Rathi).
        method: ``"max"``, ``"p99.7"`` or ``"p99.9"``.
        steps: numbers of time steps T at which the SNN is evaluated.
        eval_data: dataset spec for evaluation (its *test* split); default ``calib``.
        eval_samples: evaluate on at most this many test samples (default all).
        calib_steps: steps of each calibration run (default ``max(steps)``).
        reset, encoding, scale, poisson_rescale, seed: as in
            :func:`~neurodeploy.passes.convert.ann_to_snn`.
        batch_size: samples per simulator run when evaluating.
        overwrite: allow replacing a previous conversion in ``out_dir``.
        progress: tqdm progress bars.
        device: where the float simulator runs (``"cpu"`` or ``"cuda[:N]"``).

    Returns:
        The content of ``conversion.json`` plus ``out_dir`` (str): ``ann_accuracy`` and
        ``snn_accuracy`` (``[{"timesteps": T, "accuracy": a}]``, fractions), ``thresholds``
        (IF layer → θ), ``layers`` (per-layer statistics), ``settings``, ``files``,
        ``zoo_checkpoint``, ``notes``, ``warnings``, timings in seconds.

    Raises:
        NeurodeployError (and subclasses): bad files, datasets whose input shape does not
        match the ANN, ANN constraint violations (all listed), bad options, an output folder
        that may not be written. Nothing is left in ``out_dir`` on failure.
    """
    from .ir.serialize import save_graph
    from .models.data import load_dataset, subset
    from .passes.convert import accuracy_vs_timesteps, ann_accuracy, ann_to_snn

    t_start = time.perf_counter()
    out = check_out_dir(out_dir, overwrite=overwrite)
    step_list = _steps_list(steps)
    for name, value in (("calib_samples", calib_samples), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise NeurodeployError(f"{name}={value!r} must be a positive integer")
    if eval_samples is not None and (not isinstance(eval_samples, int) or eval_samples < 1):
        raise NeurodeployError(f"eval_samples={eval_samples!r} must be a positive integer")
    calib_steps = int(calib_steps) if calib_steps is not None else max(step_list)

    graph, source = load_ann(ann, in_shape=in_shape)
    t_loaded = time.perf_counter()
    train = subset(load_dataset(calib, split="train", seed=seed), calib_samples, seed=seed)
    test = load_dataset(eval_data if eval_data is not None else calib, split="test", seed=seed)
    if eval_samples is not None:
        test = subset(test, eval_samples, seed=seed)
    in_name = graph.inputs[0] if len(graph.inputs) == 1 else None
    want = tuple(graph.shapes[in_name]) if in_name else None
    for ds, what in ((train, "calibration"), (test, "evaluation")):
        if want is not None and tuple(ds.in_shape) != want:
            raise NeurodeployError(
                f"{what} data {ds.name!r} has samples of shape {tuple(ds.in_shape)} but the ANN "
                f"takes {want}", hint="use the dataset the ANN was trained on")
    outs = graph.outputs
    if len(outs) == 1:
        n_out = int(np.prod(graph.shapes[outs[0]]))
        if n_out < test.num_classes:
            raise NeurodeployError(
                f"the ANN has {n_out} outputs but {test.name!r} has {test.num_classes} classes",
                hint="use the dataset the ANN was trained on")

    snn, report = ann_to_snn(graph, train.x, method=method, calib_steps=calib_steps,
                             reset=reset, encoding=encoding, scale=scale,
                             poisson_rescale=poisson_rescale, seed=seed, progress=progress,
                             device=device)
    t_calibrated = time.perf_counter()
    x_test, y_test = test.x, test.y
    ann_acc = ann_accuracy(graph, x_test, y_test, batch_size=batch_size, device=device)
    curve = accuracy_vs_timesteps(snn, x_test, y_test, steps=step_list, batch_size=batch_size,
                                  seed=seed + 1, progress=progress, device=device)
    t_evaluated = time.perf_counter()

    zoo_info: dict[str, Any] = {"written": False}
    zoo_model = None
    if "model" in source:
        try:
            zoo_model, built = _zoo_snn(source["model"], source["config"], snn, report,
                                        timesteps=max(step_list))
            check = _check_zoo_snn(zoo_model, snn, x_test[:CHECK_SAMPLES],
                                   min(max(step_list), 32), encoding=encoding, seed=seed,
                                   rescale=poisson_rescale)
            zoo_info.update(check=check, thresholds=built["thresholds"])
            if check["prediction_agreement"] < 0.9 or check["median_abs_diff"] > 1e-6:
                zoo_info["reason"] = ("the zoo SNN does not reproduce the converted IR SNN "
                                      f"(agreement {check['prediction_agreement']:.2f}); "
                                      "model.pt not written")
                zoo_model = None
            else:
                zoo_info.update(written=True, config=built["config"])
        except NeurodeployError as err:
            zoo_info["reason"] = f"cannot express the SNN as a zoo model: {err.message}"
            zoo_model = None
    else:
        zoo_info["reason"] = "the ANN did not come from a zoo checkpoint"

    settings = {
        "method": method, "reset": reset, "encoding": encoding, "scale": float(scale),
        "poisson_rescale": float(poisson_rescale) if encoding == "poisson" else None,
        "calib": str(calib), "calib_samples": len(train), "calib_steps": calib_steps,
        "eval_data": str(eval_data if eval_data is not None else calib),
        "eval_samples": len(test), "steps": step_list, "seed": int(seed),
        "batch_size": int(batch_size), "device": str(device),
    }
    files = ["snn.ir.h5", "conversion.json", "accuracy_vs_timesteps.png"]
    if zoo_model is not None:
        files.append("model.pt")
    result: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "neurodeploy_version": __version__,
        "source": source["source"], "settings": settings,
        "ann_accuracy": float(ann_acc),
        "snn_accuracy": [{"timesteps": t, "accuracy": a} for t, a in curve],
        "thresholds": {e["name"]: e["threshold"] for e in report["layers"]},
        "layers": report["layers"],
        "output": report["output"], "scales": report["scales"],
        "folded_batchnorm": report["folded_batchnorm"], "biases": report["biases"],
        "scaled_biases": report["scaled_biases"],
        "dropped_final_relu": report["dropped_final_relu"],
        "notes": report["notes"], "warnings": report["warnings"],
        "zoo_checkpoint": zoo_info, "files": files,
        "timings_s": {"load": t_loaded - t_start, "calibrate": t_calibrated - t_loaded,
                      "evaluate": t_evaluated - t_calibrated},
    }
    _check_json(result)
    snn = snn.with_metadata(timesteps=max(step_list))

    def write(folder: Path) -> None:
        save_graph(snn, folder / "snn.ir.h5")
        with open(folder / "conversion.json", "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
        plot_accuracy(folder / "accuracy_vs_timesteps.png", curve, ann_acc,
                      title=f"{Path(str(source['source'])).name}: {method}, {reset} reset, "
                            f"{encoding} input")
        if zoo_model is not None:
            from .models.checkpoint import save_checkpoint

            save_checkpoint(folder / "model.pt", zoo_model, zoo_info["config"], metrics={
                "converted_from": source["source"], "method": method,
                "ann_accuracy": float(ann_acc),
                "snn_accuracy": {str(t): a for t, a in curve},
                "thresholds": zoo_info["thresholds"]})

    _write_atomic(out, write)
    return {**result, "out_dir": str(out)}


def _check_json(value: Any, where: str = "result") -> None:
    """Fail early (before anything is written) if ``value`` holds non-finite floats."""
    if isinstance(value, float) and not math.isfinite(value):
        raise NeurodeployError(f"{where} is {value}; conversion produced a non-finite number")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_json(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
