"""Stage-by-stage verification of a compile folder (``neurodeploy verify DIR``): the float
model, the quantized model, hw_sim and Lava run on the same test inputs, and the result gives
each stage's accuracy and, per neuron layer and pair of neighbouring stages, how many spike
values agree and where the stages first diverge.

**Stages.**

1. ``float``: the source model of the compile (``compile.json["model"]``, re-read with
   :func:`~neurodeploy.frontends.load.load_model`) **as trained**, BatchNorm and BNTT not
   folded, in :mod:`~neurodeploy.backends.floatsim` (float64). This is the network whose
   accuracy the user measured in training, so ``float`` vs ``quantized`` shows everything the
   deployment changed: BNTT folding into a time-averaged BatchNorm when the compile folded it
   (an approximation; its share alone is ``compile.json["bntt_accuracy_change"]`` when the
   compile had calibration data), weight/threshold/decay rounding and the input quantization.
   Folding plain BatchNorm is exact up to float rounding, so it does not matter which side it
   is counted on; a BNTT kept as a per-step schedule (``options.bntt == "schedule"``) meets
   the float graph step for step.
2. ``quantized``: the fixed-point graph straight out of
   :func:`~neurodeploy.passes.quantize.quantize`, before legalization, re-created by running
   the compile's steps again (fold BNTT unless scheduled, fold BN, quantize) with the options
   recorded in ``compile.json`` (``calib``, ``calib_samples``, ``timesteps``, ``hard_reset``,
   ``bntt_statistic``, ``bntt``, ``lava_compatible``: true when absent, as compile quantizes)
   and the same target, in hw_sim. Legalizing it must give back
   the folder's ``model.ir.h5``; nodes that differ are listed in ``stale_nodes`` (the source or
   the folder changed since the compile, or the compile's steps changed).
3. ``hw_sim``: the folder's ``model.ir.h5`` (the deployed, legalized graph) in hw_sim.
4. ``lava``: ``model.ir.h5`` on Lava's bit-accurate models (``Loihi2SimCfg`` ``fixed_pt``),
   on the first ``lava_samples`` samples only (Lava takes about a second per sample).

A folder compiled from a fixed-point model (a netx file) has no float model: ``float`` and
``quantized`` are skipped with a note.

**Inputs** are ``samples`` samples of the *test* split of ``data`` (a seeded subset in dataset
order, :func:`neurodeploy.models.data.subset`), fed as the compile did: the float graph gets the
float batch (``direct`` encoding: the same value every step; ``poisson``: spike trains drawn
once with :func:`neurodeploy.passes.convert.poisson_spikes`, seed 0, sample ``i`` from
``offset i``); the fixed graphs get :func:`~neurodeploy.passes.quantize.quantize_inputs` of
the same batch (the same spike trains) as ``input_mode="spikes"`` events for ``T`` steps,
followed by ``D`` steps of zeros, ``D`` the deepest neuron layer's pipeline depth, so the
last input reaches every layer, with each layer reset once at the start of its window (the
staggered reset of :mod:`neurodeploy.inference`, shared by every deployed run). Folders
compiled from
netx files take the data through netx's input transform, ``round(weight·x + bias)``, as bias
mantissas of the input neurons (``input_mode="bias"``; spikes repeated over the steps when the
input feeds a synapse). ``T`` is the compile's time steps.

**Alignment.** A fixed-point layer at pipeline depth ``d`` (synapses on the longest path from
the input; one step of delay each) answers float step ``t`` at step ``t + d``, so every layer
is compared on the window ``[d, d + T)`` of its fixed run against float steps ``[0, T)``;
fixed stages are compared on the same windows. Relay channels that legalization appended to
a layer (:mod:`neurodeploy.passes.legalize`) are dropped when the layer is compared with the
float or quantized graph (the original channels only); hw_sim vs Lava compare whole layers.

**Metrics**, per pair of neighbouring stages that ran (``float``→``quantized``→``hw_sim``→
``lava``; plus ``float`` vs ``hw_sim`` when legalization added relay channels, since the relays
exist to restore the float graph's timing) and per neuron layer in topological order
(``neurons``: neurons compared per sample, relay neurons included between hw_sim and Lava):

* spiking layers: ``agreement`` = fraction of ``(sample, neuron, step)`` spike values that
  are equal, ``spikes`` = total spikes of each stage in the window, ``count_diff`` = second
  stage's total minus the first's, ``first_step`` = earliest window step with a difference;
* accumulator layers (the non-spiking ``I`` read-out, threshold ``2**17``): ``agreement`` =
  fraction of ``(sample, neuron, step)`` potentials that are equal (bit for bit between fixed
  stages; to a relative 1e-9 in logit units against float, where logits are ``v_float/T`` and
  ``v/(64·S·T)``), plus ``argmax_agreement`` at the read-out step and ``max_abs_diff``
  (logits; raw ``v`` when the scale is unknown);
* ``first_divergence``: the first layer whose agreement is below 1, with its agreement, count
  difference and first step (``None`` when all agree).

Stage accuracy is the argmax of the read-out at the last window step (accumulator potential)
or of the spike counts over the window (spiking output), against the labels.

**Exact pairs.** ``quantized``/``hw_sim``/``lava`` run the same integer arithmetic, so those
pairs must agree bit for bit (``exact: true``); :func:`exit_code` is 1 when one does not.
The exception is ``quantized`` vs a legalized graph with relay channels: relays remove the
quantized graph's one-step skew between the paths of a residual block or skip concatenation
(by design, see :mod:`neurodeploy.passes.legalize`), so that pair is reported, not required.
``float`` vs ``quantized`` is always reported, never failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadInputFileError, MissingExtraError, NeurodeployError
from .ir import BNTT, I, Graph, QCubaLIF
from .ir.nodes import VTH_MANT_MAX
from .outdir import jsonable
from .simulation import pipeline_depths
from .compile import CompiledFolder, read_compiled
from .inference import (
    DeployedInputs,
    deployed_inputs,
    load_eval_data,
    output_scale,
    predictions,
    run_deployed,
    trained_on,
    window,
)

FORMAT = "neurodeploy-verify"
VERSION = 1
#: Stages in pipeline order.
STAGES = ("float", "quantized", "hw_sim", "lava")
#: Stages that run integer (Loihi) arithmetic and must agree bit for bit.
FIXED_STAGES = ("quantized", "hw_sim", "lava")
#: Rough bound (bytes) of the traces held for one chunk of samples.
TRACE_BUDGET_BYTES = 1 << 27
#: Relative tolerance of float-vs-fixed potential comparisons (float64 rounding only).
FLOAT_RTOL = 1e-9


# ============================================================================================
# The compile folder
# ============================================================================================


def _source_path(folder: CompiledFolder) -> Path:
    source = folder.doc.get("model")
    cj = folder.path / "compile.json"
    if not isinstance(source, str) or not source:
        raise BadInputFileError(cj, "records no source model path ('model')",
                                hint="verify only the fixed-point stages: backends=('hw_sim', "
                                     "'lava') (--backends hw_sim,lava)")
    path = Path(source)
    if not path.exists():
        raise BadInputFileError(
            path, "source model of the compile not found (the float and quantized stages "
            "re-read it)", hint="run from the folder the compile ran in, or verify only the "
            "fixed-point stages: --backends hw_sim,lava")
    return path


# ============================================================================================
# Stage graphs
# ============================================================================================


def _stage_graph(stage: str, graph: Graph) -> Graph:
    """The graph a stage runs (identity; a seam where tests perturb one stage)."""
    return graph


def _requantize(folder: CompiledFolder, float_graph: Graph) -> Graph:
    """The compile's fold/quantize steps again, with its recorded options and target."""
    from .compile import calibration_samples, fixed_point

    opts = folder.doc["options"]
    target = folder.target()
    graph = float_graph
    shape = tuple(graph.shapes[graph.inputs[0]])
    x_cal = calibration_samples(opts.get("calib"), int(opts.get("calib_samples", 64)), shape)
    steps = int(opts.get("timesteps") or graph.metadata.get("timesteps") or 0) or None
    fixed, _, _ = fixed_point(graph, target, calib=x_cal, steps=steps,
                              hard_reset=bool(opts.get("hard_reset", False)),
                              bntt=opts.get("bntt", "fold"),
                              bntt_statistic=opts.get("bntt_statistic", "mean"))
    return fixed


def _stale_nodes(quantized: Graph, stored: Graph) -> list[str]:
    """Nodes where legalizing ``quantized`` does not give the folder's graph back."""
    from .passes.legalize import legalize_or_keep

    fresh, _ = legalize_or_keep(quantized)
    names = list(dict.fromkeys([*stored.topo_order, *fresh.topo_order]))
    out = [n for n in names if n not in fresh.nodes or n not in stored.nodes
           or not fresh.nodes[n].same_as(stored.nodes[n])]
    if not out and set(fresh.edges) != set(stored.edges):
        out = ["(edges)"]
    return out


# ============================================================================================
# Running the stages
# ============================================================================================


@dataclass
class _Layer:
    """A neuron layer as the comparison sees it."""

    name: str
    value: bool  # accumulator (non-spiking read-out) rather than spikes
    shape: tuple[int, ...]  # original (un-relayed) shape


@dataclass
class _StageRun:
    """One stage on one chunk: aligned windows ``(B, *shape, T)`` per layer and the
    per-value scale to logits (``None``: unknown)."""

    windows: dict[str, np.ndarray]
    scale: dict[str, float | None]
    predictions: np.ndarray | None
    #: where each layer's original channels sit (legalized graphs with relay channels)
    slices: dict[str, slice] = field(default_factory=dict)


def _is_value(node: Any) -> bool:
    return isinstance(node, I) or (isinstance(node, QCubaLIF)
                                   and int(node.threshold) >= VTH_MANT_MAX)


def _channel_slice(stored: Graph, quantized: Graph | None, name: str) -> slice:
    """Where a layer's original channels sit in the legalized layer (relays after them, or
    before them when a ``Concat`` listed the relayed source first)."""
    if quantized is None or name not in quantized.nodes:
        return slice(None)
    c_orig, c_leg = quantized.shapes[name][0], stored.shapes[name][0]
    if c_orig == c_leg:
        return slice(None)
    for succ in quantized.successors(name):
        if type(quantized.nodes[succ]).__name__ == "Concat" and \
                quantized.predecessors(succ)[0] != name:
            return slice(c_leg - c_orig, None)
    return slice(0, c_orig)


def _predict(windows: dict[str, np.ndarray], out: _Layer | None) -> np.ndarray | None:
    if out is None or out.name not in windows:
        return None
    return predictions(windows[out.name], out.value)


def _run_float(graph: Graph, x: np.ndarray, layers: list[_Layer], out: _Layer | None,
               steps: int) -> _StageRun:
    from .backends import floatsim

    record = {ly.name: ["v"] if ly.value else ["s"] for ly in layers}
    res = floatsim.run(graph, x, steps, record=record)
    windows, scale = {}, {}
    for ly in layers:
        key = f"{ly.name}.{'v' if ly.value else 's'}"
        windows[ly.name] = res.traces[key]
        scale[ly.name] = 1.0 / steps if ly.value else None
    return _StageRun(windows, scale, _predict(windows, out))


def _run_fixed(stage: str, graph: Graph, inputs: DeployedInputs, layers: list[_Layer],
               out: _Layer | None, slices: dict[str, slice]) -> _StageRun:
    record = {ly.name: ["v"] if ly.value else ["s"] for ly in layers}
    res = run_deployed(graph, inputs, backend="lava" if stage == "lava" else "hw_sim",
                       record=record)
    steps = inputs.steps
    windows, scale = {}, {}
    for ly in layers:
        win = window(graph, ly.name, res.traces[f"{ly.name}.{'v' if ly.value else 's'}"], steps)
        windows[ly.name] = win.astype(np.int64) if ly.value else win
        s = output_scale(graph, ly.name) if ly.value else None
        scale[ly.name] = None if s is None else 1.0 / (64.0 * s * steps)
    return _StageRun(windows, scale, _predict(windows, out), slices)


# ============================================================================================
# Comparison
# ============================================================================================


@dataclass
class _LayerStats:
    values: int = 0
    equal: int = 0
    spikes_a: int = 0
    spikes_b: int = 0
    first_step: int | None = None
    argmax_equal: int = 0
    samples: int = 0
    max_abs_diff: float = 0.0
    unit: str = "logits"
    neurons: int = 0


@dataclass
class _PairStats:
    a: str
    b: str
    exact: bool
    note: str | None
    layers: dict[str, _LayerStats] = field(default_factory=dict)
    samples: int = 0


def _accumulate(pair: _PairStats, layers: list[_Layer], ra: _StageRun, rb: _StageRun) -> None:
    fixed_pair = pair.a in FIXED_STAGES and pair.b in FIXED_STAGES
    for ly in layers:
        if ly.name not in ra.windows or ly.name not in rb.windows:
            continue
        wa, wb = ra.windows[ly.name], rb.windows[ly.name]
        if bool(ra.slices) != bool(rb.slices):  # one side has relay channels: drop them
            wa = wa[:, ra.slices.get(ly.name, slice(None))]
            wb = wb[:, rb.slices.get(ly.name, slice(None))]
        st = pair.layers.setdefault(ly.name, _LayerStats())
        if wa.shape != wb.shape:  # cannot happen for well-formed stages; be explicit
            raise NeurodeployError(f"layer {ly.name}: {pair.a} gives traces of shape "
                                   f"{wa.shape}, {pair.b} {wb.shape}")
        if ly.value:
            sa, sb = ra.scale[ly.name], rb.scale[ly.name]
            if fixed_pair or sa is None or sb is None:
                diff_eq = wa == wb
                if sa is not None and sa == sb:
                    va, vb = wa * sa, wb * sb
                else:
                    va, vb, st.unit = wa.astype(np.float64), wb.astype(np.float64), "v"
            else:
                va, vb = wa * sa, wb * sb
                diff_eq = np.isclose(va, vb, rtol=FLOAT_RTOL, atol=0.0)
            if va.size:
                st.max_abs_diff = max(st.max_abs_diff, float(np.abs(va - vb).max()))
            b = wa.shape[0]
            st.argmax_equal += int(np.sum(wa[..., -1].reshape(b, -1).argmax(1)
                                          == wb[..., -1].reshape(b, -1).argmax(1)))
        else:
            diff_eq = wa == wb
            st.spikes_a += int(np.count_nonzero(wa))
            st.spikes_b += int(np.count_nonzero(wb))
        st.neurons = int(np.prod(wa.shape[1:-1]))
        st.values += diff_eq.size
        st.equal += int(np.count_nonzero(diff_eq))
        st.samples += wa.shape[0]
        if not diff_eq.all():
            steps = np.nonzero(~diff_eq.reshape(-1, diff_eq.shape[-1]).all(axis=0))[0]
            first = int(steps[0])
            st.first_step = first if st.first_step is None else min(st.first_step, first)
    pair.samples += next(iter(ra.windows.values())).shape[0] if ra.windows else 0


def _pair_result(pair: _PairStats, layers: list[_Layer]) -> dict[str, Any]:
    rows = []
    first = None
    for ly in layers:
        st = pair.layers.get(ly.name)
        if st is None:
            continue
        agreement = st.equal / st.values if st.values else 1.0
        row: dict[str, Any] = {
            "layer": ly.name, "kind": "potential" if ly.value else "spikes",
            "neurons": st.neurons, "values": st.values, "agreement": agreement,
            "first_step": st.first_step,
        }
        if ly.value:
            row.update(unit=st.unit, max_abs_diff=st.max_abs_diff,
                       argmax_agreement=st.argmax_equal / st.samples if st.samples else 1.0,
                       spikes=None, count_diff=None)
        else:
            row.update(spikes={pair.a: st.spikes_a, pair.b: st.spikes_b},
                       count_diff=st.spikes_b - st.spikes_a)
        rows.append(row)
        if first is None and st.equal < st.values:
            first = {k: row[k] for k in ("layer", "kind", "agreement", "count_diff",
                                         "first_step")}
    return {"stages": [pair.a, pair.b], "exact": pair.exact, "samples": pair.samples,
            "agree": first is None, "first_divergence": first, "note": pair.note,
            "layers": rows}


# ============================================================================================
# Inputs
# ============================================================================================


def _float_input(graph: Graph, x: np.ndarray, steps: int, offset: int) -> np.ndarray:
    """What the float graph's Input gets: the batch, or Poisson trains drawn from it."""
    meta = graph.metadata
    if meta.get("input_encoding") == "poisson":
        import torch

        from .passes.convert import poisson_spikes

        return poisson_spikes(torch.as_tensor(x, dtype=torch.float64), steps, seed=0,
                              rescale=float(meta.get("encoder_rescale", 1.0)),
                              offset=offset).numpy()
    return x


def _chunks(n: int, per_sample: float) -> list[tuple[int, int]]:
    size = max(1, int(TRACE_BUDGET_BYTES // max(per_sample, 1.0)))
    return [(a, min(a + size, n)) for a in range(0, n, size)]


# ============================================================================================
# Public API
# ============================================================================================


def verify(dir: str | Path, data: str | Path | None = None, samples: int = 100, *,
           lava_samples: int = 4, backends: Sequence[str] = STAGES,
           log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the stages of a compile folder on the same test inputs and compare them (see the
    module docstring for the stages, the alignment and the metrics).

    Args:
        dir: a ``neurodeploy compile`` output folder (``compile.json``, ``model.ir.h5``).
        data: dataset spec (``digits``, ``mnist5k``, a ``.npz``, a folder; see
            :func:`neurodeploy.models.data.load_dataset`), test split. Default: the dataset
            the source model was trained on, when its folder records it (``train.json`` or the
            checkpoint's metrics).
        samples: test samples for the float, quantized and hw_sim stages (all of the split
            when it has fewer).
        lava_samples: samples for the Lava stage (the first ones of the same subset); 0
            skips Lava.
        backends: the stages to run, a subset of ``("float", "quantized", "hw_sim", "lava")``.
        log: called with a progress message per stage.

    Returns:
        A JSON-able dict: ``format``/``version``, ``dir``, ``model``, ``target``, ``data``,
        ``split``, ``samples``, ``timesteps`` (``T``), ``pipeline_depth`` (``D``),
        ``encoding``; ``stages``: per stage ``status`` (``"ran"``/``"skipped"``),
        ``samples``, ``accuracy``, ``correct``, ``seconds``, ``reason`` when skipped;
        ``layers`` (neuron layers compared, topological order); ``pairs``: per pair of
        neighbouring stages that ran (and float vs hw_sim when there are relays),
        ``stages``, ``exact``, ``samples``, ``agree``, ``first_divergence``, ``note`` and
        ``layers`` rows (``layer``, ``kind``, ``neurons``,
        ``values``, ``agreement``, ``first_step``, ``spikes``, ``count_diff`` or, for
        accumulators, ``unit``, ``max_abs_diff``, ``argmax_agreement``); ``stale_nodes``
        (see the module docstring), ``notes`` and ``ok`` (every exact pair agrees).

    Raises:
        BadInputFileError: not a compile folder, a missing or malformed file, a missing source
            model (when the float or quantized stage is asked for).
        NeurodeployError: unknown stage or data spec, data of the wrong shape, no data given
            and none recorded, ``samples < 1`` or ``lava_samples < 0``.
        MissingExtraError: Lava asked for (``lava_samples > 0``) but not installed.
    """
    log = log or (lambda message: None)
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise NeurodeployError(f"samples must be a positive integer, got {samples!r}")
    if isinstance(lava_samples, bool) or not isinstance(lava_samples, (int, np.integer)) \
            or lava_samples < 0:
        raise NeurodeployError(f"lava_samples must be an integer >= 0, got {lava_samples!r}")
    if isinstance(backends, str):
        backends = [b.strip() for b in backends.split(",") if b.strip()]
    wanted = list(dict.fromkeys(backends))
    unknown = [b for b in wanted if b not in STAGES]
    if unknown or not wanted:
        raise NeurodeployError(f"unknown stage(s) {', '.join(map(repr, unknown)) or '(none)'}; "
                               f"choose from {', '.join(STAGES)}")
    folder = read_compiled(dir)
    stored = folder.graph
    T = folder.steps
    notes: list[str] = []
    skipped: dict[str, str] = {}

    # ------------------------------------------------------------------ which stages run
    need_source = any(s in wanted for s in ("float", "quantized"))
    float_graph = quantized = None
    source: Path | None = None
    if need_source and not folder.quantized_source:
        reason = ("the folder was compiled from a fixed-point model (e.g. a netx file), which "
                  "has no float model")
        for s in ("float", "quantized"):
            if s in wanted:
                skipped[s] = reason
        notes.append(f"float and quantized stages skipped: {reason}")
    elif need_source:
        from .frontends.load import load_model

        source = _source_path(folder)
        log(f"loading {source}")
        float_graph = load_model(source)
        if float_graph.stage != "float":
            raise BadInputFileError(source, "the compile's source model is no longer a float "
                                    "model", hint="re-run the compile")
        log("re-running the compile's fold and quantize steps")
        quantized = _requantize(folder, float_graph)
    if "lava" in wanted and lava_samples == 0:
        skipped["lava"] = "lava_samples=0"
    elif "lava" in wanted:
        from .backends import lava as lava_backend

        try:
            lava_backend.load_lava()
        except MissingExtraError as err:
            raise MissingExtraError(err.message, hint="or skip the Lava stage: lava_samples=0 "
                                    "(--lava-samples 0)") from None
    for s in STAGES:
        if s not in wanted:
            skipped.setdefault(s, "not requested")
    ran = [s for s in STAGES if s in wanted and s not in skipped]

    stale: list[str] = []
    if quantized is not None:
        stale = _stale_nodes(quantized, stored)
        if stale:
            notes.append(
                "model.ir.h5 is not what the source model compiles to now (nodes "
                f"{', '.join(stale[:8])}{'…' if len(stale) > 8 else ''}): the folder or the "
                "source changed after the compile")
    if float_graph is not None and any(isinstance(n, BNTT) for n in float_graph.nodes.values()) \
            and folder.doc["options"].get("bntt") != "schedule":
        notes.append("the float stage keeps BNTT's per-step statistics; float vs quantized "
                     "includes the BNTT folding (see bntt_accuracy_change in compile.json)")

    # ------------------------------------------------------------------ data
    if data is None:
        src = folder.doc.get("model")
        if source is None and isinstance(src, str) and src and Path(src).exists():
            source = Path(src)
        data = trained_on(source) if source is not None else None
        if data is None:
            raise NeurodeployError("no data given and the model records no training dataset; "
                                   "give data= (--data DATA), e.g. digits or mnist5k")
    data = str(data)
    in_shape = tuple(stored.shapes[stored.inputs[0]])
    log(f"loading {data} (test split, {samples} samples)")
    x, y, data_name = load_eval_data(data, int(samples), in_shape)
    n = len(x)
    k = min(int(lava_samples), n) if "lava" in ran else 0

    # ------------------------------------------------------------------ layers
    graphs = {"float": float_graph, "quantized": quantized, "hw_sim": stored, "lava": stored}
    graphs = {s: _stage_graph(s, g) for s, g in graphs.items() if g is not None}
    names = [nm for nm in stored.topo_order if nm in set(stored.neurons)]
    if quantized is not None:
        names = [nm for nm in names if nm in quantized.nodes and quantized.nodes[nm].is_neuron]
    if float_graph is not None:
        names = [nm for nm in names if nm in float_graph.nodes and
                 float_graph.nodes[nm].is_neuron]
    ref = quantized if quantized is not None else stored
    layers = [_Layer(nm, _is_value(stored.nodes[nm]), tuple(ref.shapes[nm])) for nm in names]
    dropped = sorted(set(stored.neurons) - set(names))
    if dropped:
        notes.append(f"layers only in the deployed graph, not compared: {', '.join(dropped)}")
    outs = [o for o in stored.outputs if stored.nodes[o].is_neuron]
    out = next((ly for ly in layers if len(outs) == 1 and ly.name == outs[0]), None)
    if out is None:
        notes.append("no single neuron output layer: accuracy not computed")
    depths_stored = pipeline_depths(stored)
    extra = max((depths_stored[nm] for nm in stored.neurons), default=0)
    if quantized is not None:
        dq = pipeline_depths(quantized)
        extra = max(extra, max((dq[nm] for nm in quantized.neurons), default=0))
    total = T + extra
    relay_slices = {ly.name: _channel_slice(stored, quantized, ly.name) for ly in layers
                    if stored.shapes[ly.name] != ly.shape}

    # ------------------------------------------------------------------ pairs
    pairs: list[_PairStats] = []
    relays = bool(relay_slices)  # legalization appended relay channels to some layer
    for a, b in zip(ran, ran[1:]):
        exact = a in FIXED_STAGES and b in FIXED_STAGES
        note = None
        if exact and "quantized" in (a, b) and relays:
            exact = False
            note = ("legalization added relay channels, which remove the quantized graph's "
                    "one-step skew between paths by design: reported, not required to match")
        elif not exact:
            note = "float vs fixed point: reported, not required to match"
        pairs.append(_PairStats(a, b, exact, note))
    if relays and "float" in ran and "hw_sim" in ran:
        pairs.append(_PairStats("float", "hw_sim", False,
                                "the deployed graph against the float one, whose timing its "
                                "relay channels restore: reported, not required to match"))
    if relays and any(s in ran for s in ("float", "quantized")):
        notes.append("relay channels of the deployed graph are left out when comparing with "
                     "the float or quantized stage")

    # ------------------------------------------------------------------ run
    correct = {s: 0 for s in ran}
    counted = {s: 0 for s in ran}
    seconds = {s: 0.0 for s in ran}

    def run_stage(stage: str, x_chunk: np.ndarray, a: int, timed: bool = True) -> _StageRun:
        t0 = time.perf_counter()
        g = graphs[stage]
        x_in = _float_input(stored, x_chunk, T, a)
        if stage == "float":
            result = _run_float(g, x_in, layers, out, T)
        else:
            inputs = deployed_inputs(g, x_in, T, extra=total - T)
            slices = relay_slices if stage in ("hw_sim", "lava") else {}
            result = _run_fixed(stage, g, inputs, layers, out, slices)
        if timed:
            seconds[stage] += time.perf_counter() - t0
        return result

    def tally(stage: str, result: _StageRun, labels: np.ndarray) -> None:
        if result.predictions is not None:
            correct[stage] += int(np.sum(result.predictions == labels))
        counted[stage] += len(labels)

    per_sample = 24.0 * total * sum(int(np.prod(stored.shapes[nm])) for nm in stored.neurons)
    non_lava = [s for s in ran if s != "lava"]
    lava_pairs = [p for p in pairs if "lava" in (p.a, p.b)]
    other_pairs = [p for p in pairs if p not in lava_pairs]
    if non_lava:
        for a, b in _chunks(n, per_sample):
            log(f"{', '.join(non_lava)}: samples {a}-{b - 1} of {n}")
            results = {s: run_stage(s, x[a:b], a) for s in non_lava}
            for s, r in results.items():
                tally(s, r, y[a:b])
            for p in other_pairs:
                _accumulate(p, layers, results[p.a], results[p.b])
    if "lava" in ran:
        log(f"lava: {k} sample(s) x {total} steps")
        lava_result = run_stage("lava", x[:k], 0)
        tally("lava", lava_result, y[:k])
        for p in lava_pairs:  # the partner again on the Lava samples (not timed)
            partner = run_stage(p.a, x[:k], 0, timed=False)
            _accumulate(p, layers, partner, lava_result)

    # ------------------------------------------------------------------ result
    stages: dict[str, Any] = {}
    for s in STAGES:
        if s in ran:
            acc = correct[s] / counted[s] if out is not None and counted[s] else None
            stages[s] = {"status": "ran", "samples": counted[s], "accuracy": acc,
                         "correct": correct[s] if out is not None else None,
                         "seconds": round(seconds[s], 6)}
        else:
            stages[s] = {"status": "skipped", "reason": skipped.get(s, "not requested")}
    pair_rows = [_pair_result(p, layers) for p in pairs]
    if not any(p["exact"] for p in pair_rows):
        notes.append("no pair of fixed-point stages was compared")
    result = {
        "format": FORMAT, "version": VERSION, "dir": str(folder.path),
        "model": folder.doc.get("model"), "target": folder.doc.get("target"),
        "data": data_name, "data_spec": str(data), "split": "test", "samples": n,
        "lava_samples": k, "timesteps": T, "pipeline_depth": extra,
        "encoding": stored.metadata.get("input_encoding", "netx bias"),
        "stages": stages, "layers": [ly.name for ly in layers], "pairs": pair_rows,
        "stale_nodes": stale, "notes": notes,
        "ok": all(p["agree"] for p in pair_rows if p["exact"]),
    }
    return jsonable(result)


def exit_code(result: dict[str, Any]) -> int:
    """0 when every exact pair of fixed-point stages (quantized, hw_sim, Lava) agreed bit for
    bit, 1 when one disagreed (float vs quantized never fails)."""
    pairs = result.get("pairs", [])
    return 1 if any(p.get("exact") and not p.get("agree") for p in pairs) else 0


def format_table(result: dict[str, Any], *, max_layers: int = 12) -> str:
    """A short text summary of :func:`verify`'s result: accuracy per stage, one line per
    pair (first divergence), and per-layer agreement (at most ``max_layers`` rows)."""
    lines = [f"{result['dir']}: {result['samples']} {result['data']} test samples x "
             f"{result['timesteps']} steps (+{result['pipeline_depth']} pipeline), "
             f"target {result['target']}"]
    lines.append("stage      samples  accuracy  seconds")
    for s in STAGES:
        st = result["stages"][s]
        if st["status"] != "ran":
            lines.append(f"{s:<10} skipped: {st['reason']}")
            continue
        acc = "-" if st["accuracy"] is None else f"{st['accuracy']:.4f}"
        lines.append(f"{s:<10} {st['samples']:>7}  {acc:>8}  {st['seconds']:>7.2f}")
    pairs = result["pairs"]
    if pairs:
        lines.append("pair                  exact  samples  first divergence")
        for p in pairs:
            label = f"{p['stages'][0]} vs {p['stages'][1]}"
            fd = p["first_divergence"]
            if fd is None:
                what = "none (all layers agree)"
            else:
                what = f"{fd['layer']}: agreement {fd['agreement']:.4f}"
                if fd.get("count_diff") is not None:
                    what += f", spikes {fd['count_diff']:+d}"
                if fd.get("first_step") is not None:
                    what += f", from step {fd['first_step']}"
            flag = "yes" if p["exact"] else "no"
            bad = "  << MISMATCH" if p["exact"] and not p["agree"] else ""
            lines.append(f"{label:<21} {flag:<5}  {p['samples']:>7}  {what}{bad}")
        names = result["layers"][:max_layers]
        short = {"float": "float", "quantized": "quant", "hw_sim": "hw_sim", "lava": "lava"}
        heads = [f"{short[p['stages'][0]]}/{short[p['stages'][1]]}" for p in pairs]
        width = max([len("layer")] + [len(nm) for nm in names])
        lines.append("layer".ljust(width) + "".join(f"  {h:>22}" for h in heads))
        for nm in names:
            cells = []
            for p in pairs:
                row = next((r for r in p["layers"] if r["layer"] == nm), None)
                if row is None:
                    cells.append("-")
                elif row["kind"] == "potential":
                    cells.append(f"{row['agreement']:.4f} (argmax {row['argmax_agreement']:.2f})")
                else:
                    cells.append(f"{row['agreement']:.4f}")
            lines.append(nm.ljust(width) + "".join(f"  {c:>22}" for c in cells))
        if len(result["layers"]) > max_layers:
            lines.append(f"... {len(result['layers']) - max_layers} more layers in the JSON")
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("OK: fixed-point stages agree bit for bit" if result["ok"]
                 else "FAIL: fixed-point stages disagree")
    return "\n".join(lines)


def render_section(doc: Mapping[str, Any]) -> str:
    """The ``report.html`` section of a report document's ``verification`` entry (what
    :func:`verify` returns): accuracy per stage and, per pair of stages, whether they agree
    and where they first diverge."""
    from .report import _e, _nodata, _table

    result = doc.get("verification")
    if not isinstance(result, Mapping) or "stages" not in result:
        return _nodata("No stage-by-stage verification in this report (neurodeploy verify).")
    verdict = ("fixed-point stages agree bit for bit" if result.get("ok")
               else "FIXED-POINT STAGES DISAGREE")
    out = [f'<p class="scope">{_e(result.get("samples"))} {_e(result.get("data"))} test '
           f'samples x {_e(result.get("timesteps"))} steps: {_e(verdict)}.</p>']
    rows = []
    for s in STAGES:
        st = result["stages"].get(s) or {}
        if st.get("status") != "ran":
            rows.append((s, "skipped", "-", "-", st.get("reason", "")))
            continue
        acc = "-" if st.get("accuracy") is None else f"{st['accuracy']:.4f}"
        rows.append((s, st.get("samples"), acc, f"{st.get('seconds', 0.0):.2f}", ""))
    out.append(_table(("stage", "samples", "accuracy", "seconds", "note"), rows))
    pairs = []
    for p in result.get("pairs") or []:
        fd = p.get("first_divergence")
        what = "none (all layers agree)" if fd is None else \
            f"{fd['layer']}: agreement {fd['agreement']:.4f}"
        pairs.append((f"{p['stages'][0]} vs {p['stages'][1]}", "yes" if p["exact"] else "no",
                      "yes" if p["agree"] else "no", p["samples"], what))
    if pairs:
        out.append(_table(("pair", "must be exact", "agree", "samples", "first divergence"),
                          pairs, numeric_from=3))
    return "".join(out)


def register_report_section() -> None:
    """Add the verification section to ``report.html`` (after the accuracy; idempotent)."""
    from .report import Section, register_section

    register_section(Section("verification", "Stage-by-stage verification", render_section,
                             key="verification"),
                     after="accuracy")


__all__ = ["FORMAT", "STAGES", "VERSION", "exit_code", "format_table", "register_report_section",
           "render_section", "verify"]
