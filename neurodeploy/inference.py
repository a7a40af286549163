"""Running float data through a deployed (fixed-point) network: one definition of the input
events, the run length, the per-layer time windows and the read-out, shared by every command
that evaluates a compiled model on a dataset (``verify``, ``simulate DIR --data``, SAM,
attacks, calibration).

**Timing.** Every synapse delivers one step late, so a neuron layer at pipeline depth ``d``
(:func:`neurodeploy.simulation.pipeline_depths`) sees input step ``t`` at step ``t + d``. A
sample of ``T`` input steps therefore runs ``T + D`` steps (``D`` the deepest layer's depth;
zero input during the last ``D``), and layer ``d``'s window ``[d, d + T)`` is what the float
network computes in steps ``[0, T)``.

**Staggered reset.** Biases act from step 0 at every depth, so before its first input arrives
a layer at depth ``d > 0`` would integrate ``d`` steps of bias alone (and fire on it): the
BNTT/BN shifts folded into biases then corrupt every later layer. The run uses lava-dl netx's
remedy, a reset interval with each layer's reset staggered by its depth (Lava's ``LIFReset``;
hw_sim's ``reset_interval``): with interval ``T + D`` each layer's ``u`` and ``v`` are cleared
exactly once, at the start of step ``d``, so it integrates precisely its window. This runs
identically on hw_sim, Lava and Loihi.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NeurodeployError
from .ir import Graph, QCubaLIF
from .simulation import RunResult, pipeline_depths


@dataclass
class DeployedInputs:
    """What a fixed graph is fed for a batch of float samples."""

    events: np.ndarray  # (B, *input_shape, total) for "spikes"; (B, *input_shape) for "bias"
    input_mode: str  # "spikes" or "bias"
    steps: int  # T: input steps of one sample
    total: int  # T + D: steps to run

    @property
    def reset_interval(self) -> int:
        return self.total


def depth_of_outputs(graph: Graph) -> int:
    """``D``: the largest pipeline depth of a neuron layer."""
    depths = pipeline_depths(graph)
    return max((depths[n] for n in graph.neurons), default=0)


def deployed_inputs(graph: Graph, x: np.ndarray, steps: int, *, seed: int = 0,
                    offset: int = 0, extra: int | None = None) -> DeployedInputs:
    """Input events for float samples ``x`` ``(B, *input_shape)`` (or per-step
    ``(B, *input_shape, T')``) on a fixed graph made by ``quantize`` (its input encoding) or
    read from netx (its ``input_transform``: ``round(weight·x + bias)``, as bias when the input
    feeds neurons directly). ``extra`` (default ``D``) sets the run to ``steps + extra`` steps,
    e.g. to run graphs of different depths for the same number of steps."""
    if steps < 1:
        raise NeurodeployError(f"steps must be >= 1, got {steps}")
    extra = depth_of_outputs(graph) if extra is None else int(extra)
    total = steps + extra
    if graph.metadata.get("input_encoding") is not None:
        from .passes.quantize import quantize_inputs

        q = quantize_inputs(graph, x, steps=steps, seed=seed, offset=offset)
        pad = np.zeros((*q.shape[:-1], extra), dtype=np.int64)
        return DeployedInputs(np.concatenate([q, pad], axis=-1), "spikes", steps, total)
    netx = graph.metadata.get("netx")
    transform = netx.get("input_transform", {}) if isinstance(netx, dict) else {}
    w = float(transform.get("weight", 1.0))
    b = float(transform.get("bias", 0.0))
    vals = np.round(w * np.asarray(x, dtype=np.float64) + b).astype(np.int64)
    succ = graph.successors(graph.inputs[0])
    if succ and all(isinstance(graph.nodes[s], QCubaLIF) for s in succ):
        return DeployedInputs(vals, "bias", steps, total)
    q = np.repeat(vals[..., None], steps, axis=-1)
    pad = np.zeros((*q.shape[:-1], extra), dtype=np.int64)
    return DeployedInputs(np.concatenate([q, pad], axis=-1), "spikes", steps, total)


def run_deployed(graph: Graph, inputs: DeployedInputs, *, backend: str = "hw_sim",
                 record: Any = None, observer: Any = None, device: str = "cpu") -> RunResult:
    """Run ``inputs`` through the fixed ``graph`` on ``backend`` (``"hw_sim"`` or ``"lava"``)
    for ``T + D`` steps with the staggered reset (module docstring). ``observer`` (hw_sim
    only) sees every step."""
    kw = dict(steps=inputs.total, input_mode=inputs.input_mode,
              reset_interval=inputs.reset_interval, record=record)
    if backend == "lava":
        if observer is not None:
            raise NeurodeployError("step observers run on hw_sim only")
        from .backends import lava

        return lava.run(graph, inputs.events, **kw)
    if backend != "hw_sim":
        raise NeurodeployError(f"unknown backend {backend!r}; use hw_sim or lava")
    from neurodeploy.hw_sim import run as hw_run

    return hw_run(graph, inputs.events, device=device, observer=observer, **kw)


def window(graph: Graph, name: str, trace: np.ndarray, steps: int) -> np.ndarray:
    """Layer ``name``'s steps ``[d, d + T)`` of a trace ``(B, ..., total)``: what the float
    network computes in steps ``[0, T)``."""
    d = pipeline_depths(graph)[name]
    return trace[..., d:d + steps]


def predictions(window: np.ndarray, by_potential: bool) -> np.ndarray:
    """Predicted class per sample from an output layer's window ``(B, *shape, T)``: the
    largest potential at the last step (an accumulator, ``by_potential``) or the most spikes."""
    score = window[..., -1] if by_potential else window.sum(axis=-1)
    return score.reshape(window.shape[0], -1).argmax(axis=1)


def output_scale(graph: Graph, name: str) -> float | None:
    """``S`` of an accumulator output (logits = v / (64·S·T)), from the quantizer's metadata."""
    scale = graph.metadata.get("output_scale")
    if isinstance(scale, dict):
        scale = scale.get(name)
    ok = isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0
    return float(scale) if ok else None


def trained_on(source: Path) -> str | None:
    """The dataset spec recorded with a zoo model (``train.json`` beside it, else the
    checkpoint's metrics), or ``None``."""
    folder = source if source.is_dir() else source.parent
    doc = _train_json(source)
    spec = doc.get("data", {}).get("spec") if isinstance(doc, dict) and isinstance(
        doc.get("data"), dict) else None
    if isinstance(spec, str) and spec:
        return spec
    from .models.checkpoint import checkpoint_file, load_checkpoint

    ckpt = checkpoint_file(source if source.suffix.lower() == ".pt" else folder)
    if ckpt is not None:
        try:
            _, _, metrics = load_checkpoint(ckpt)
        except NeurodeployError:
            return None
        spec = metrics.get("data")
        if isinstance(spec, str) and spec:
            return spec
    return None


def load_eval_data(spec: str, samples: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray,
                                                                          str]:
    """``(x float64, y int64, dataset name)``: ``samples`` test samples of dataset ``spec``
    shaped for a model taking ``shape`` (flat models take flattened images)."""
    from .models.data import load_dataset, subset

    data = subset(load_dataset(spec, split="test"), samples)
    x = data.x.numpy().astype(np.float64)
    if tuple(data.in_shape) != shape:
        if len(shape) == 1 and int(np.prod(data.in_shape)) == shape[0]:
            x = x.reshape(len(x), -1)  # e.g. lava-dl's flat MNIST networks
        else:
            raise NeurodeployError(
                f"data {spec!r} has samples of shape {tuple(data.in_shape)}, the compiled "
                f"model takes {shape}; give the dataset the model was trained on")
    return x, data.y.numpy().astype(np.int64), data.name


def evaluate(folder: str | Path, data: str | None = None, samples: int | None = None, *,
             batch: int = 64, device: str = "cpu", account: bool = True,
             progress: bool = False, log: Any = None) -> dict[str, Any]:
    """Run a compile folder's network on ``samples`` test samples of ``data`` with hw_sim
    (staggered reset, module docstring), counting events with the folder's mapping.

    ``data`` defaults to the dataset the model was trained on (when recorded); ``samples``
    to the whole test split. Returns a JSON-able dict: ``compiled`` (folder), ``model``,
    ``target``, ``data``, ``samples``, ``steps``, ``pipeline_depth``, ``accuracy``
    (deployed, and the float model's test accuracy recorded at training when known),
    ``spike_counts`` (per layer, per sample), ``sim_time_s``, and with ``account``
    ``activity`` (:meth:`neurodeploy.accounting.Activity.to_dict`) and ``cost``
    (:meth:`neurodeploy.cost.CostReport.to_dict`).
    """
    import time

    from .compile import read_compiled

    if batch < 1:
        raise NeurodeployError(f"batch must be >= 1, got {batch}")
    if samples is not None and samples < 1:
        raise NeurodeployError(f"samples must be >= 1, got {samples}")
    say = log or (lambda message: None)
    comp = read_compiled(folder)
    graph, steps = comp.graph, comp.steps
    source = comp.doc.get("model")
    src_path = Path(source) if isinstance(source, str) and Path(source).exists() else None
    if data is None:
        data = trained_on(src_path) if src_path is not None else None
        if data is None:
            raise NeurodeployError(f"{folder}: no dataset recorded with the model; give one "
                                   "(--data digits, mnist5k, a .npz file or an image folder)")
    shape = tuple(graph.shapes[graph.inputs[0]])
    x, y, name = load_eval_data(data, samples if samples is not None else 10 ** 9, shape)
    target = comp.target()
    mapping = None
    accountant = None
    if account:
        from .accounting import Accountant

        mapping = comp.mapping()
        accountant = Accountant(graph, mapping, device=device)
    out = graph.outputs[0] if graph.outputs else graph.neurons[-1]
    scale = output_scale(graph, out)
    value = scale is not None  # an accumulator read out by its potential, else spike counts
    depth = depth_of_outputs(graph)
    say(f"{comp.path}: {len(x)} {name} test samples x {steps} steps on hw_sim ({device})")
    chunks = [(a, min(a + batch, len(x))) for a in range(0, len(x), batch)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(x), desc="simulate", unit="sample")
    correct = 0
    counts: dict[str, list[np.ndarray]] = {n: [] for n in graph.neurons}
    sim_time = 0.0
    t0 = time.perf_counter()
    for a, b in chunks:
        inputs = deployed_inputs(graph, x[a:b], steps, offset=a)
        res = run_deployed(graph, inputs, record={out: ["v" if value else "s"]},
                           observer=accountant, device=device)
        sim_time += res.sim_time_s
        trace = window(graph, out, res.traces[f"{out}.{'v' if value else 's'}"], steps)
        correct += int((predictions(trace, value) == y[a:b]).sum())
        for n in graph.neurons:
            counts[n].append(res.spike_counts[n])
        if bar is not None:
            bar.update(b - a)
    if bar is not None:
        bar.close()
    accuracy: dict[str, Any] = {"deployed": correct / len(x)}
    float_acc = _recorded_accuracy(src_path)
    if float_acc is not None:
        accuracy["float (training)"] = float_acc
    doc: dict[str, Any] = {
        "compiled": str(comp.path.resolve()), "model": source if isinstance(source, str)
        else str(comp.path), "target": target.name, "data": name, "samples": len(x),
        "steps": steps, "pipeline_depth": depth, "accuracy": accuracy,
        "spike_counts": {n: np.concatenate(c).tolist() for n, c in counts.items()},
        "sim_time_s": sim_time, "wall_time_s": time.perf_counter() - t0, "device": device,
    }
    if accountant is not None:
        from .cost import estimate

        activity = accountant.result()
        doc["activity"] = activity.to_dict(per_step=True)
        doc["cost"] = estimate(activity, mapping, target, steps=steps + depth,
                               samples=len(x), drained=True).to_dict()
    return doc


def _train_json(source: Path) -> Any:
    """The ``train.json`` that ``neurodeploy train`` wrote beside a model, or None."""
    folder = source if source.is_dir() else source.parent
    try:
        return json.loads((folder / "train.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _recorded_accuracy(source: Path | None) -> float | None:
    """The test accuracy recorded when the source model was trained (``train.json``)."""
    doc = _train_json(source) if source is not None else None
    value = doc.get("test_accuracy") if isinstance(doc, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None
