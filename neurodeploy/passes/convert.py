"""ANN→SNN conversion with layer-wise threshold balancing (Spike-Norm), and accuracy versus
the number of time steps of the converted network.

:func:`ann_to_snn` follows ``reference/algorithms.md`` §7. It folds batch norm, checks the
ANN's constraints (ReLU activations, average pooling, nodes the float simulator runs; every
violation is listed at once), then replaces each hidden ``ReLU`` by an integrate-and-fire
neuron (``IF(r=1/dt)``: ``v ← v + I``, spike at ``v > θ_l``, soft or hard reset) and feeds the
final synapse layer into an ``I`` accumulator, whose potential divided by ``T`` gives the logits.

Thresholds are found layer by layer (Rathi's ``find_threshold``): with layers ``1..l-1``
already converted, the partial SNN runs on the calibration batch for ``calib_steps`` steps with
λ = 1, and layer ``l``'s input current ``z_l[t]`` (the output of the node feeding its ReLU,
biases included; not the membrane) is recorded. ``θ_l`` is the maximum of ``z_l`` over steps,
samples and neurons (``method="max"``), or, at each step, the ``p``-th percentile of ``z_l``
over all samples and neurons, then the maximum over steps (``"p99.7"``, ``"p99.9"``; numpy's
linear interpolation). ``θ_l`` is finally multiplied by ``scale``.

Weights are kept; the thresholds absorb the rescaling. Biases (allowed, unlike Spike-Norm's
ANNs) become constant input currents, divided by the spike scale of their input (the product of
the thresholds upstream) so they stay in proportion to the spike-driven current.

Input encodings (§1): ``"direct"`` feeds the (normalized) sample as a constant current at every
step; ``"poisson"`` feeds signed Poisson spikes ``sign(x)·1[r·u ≤ |x|]`` with fresh
``u ~ U[0, 1)`` per step, drawn from a generator seeded per sample (``seed``, sample index), so
a sample's spike train does not depend on batching.

The float simulator (:mod:`neurodeploy.backends.floatsim`) runs every network; it records whole
traces, so runs are split into sub-batches that keep each recorded trace under
:data:`TRACE_BUDGET_BYTES` (percentiles over the whole batch are merged exactly from per-chunk
top-k values).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..backends import floatsim
from ..errors import NeurodeployError, UnsupportedError
from ..ir import (
    BNTT,
    IF,
    Add,
    Affine,
    AvgPool2d,
    BatchNorm,
    Concat,
    Conv2d,
    Flatten,
    Graph,
    I,
    Input,
    Linear,
    Node,
    ReLU,
    SumPool2d,
)
from .fold_bn import fold_batchnorm, fold_problems

#: Calibration statistics by name: ``None`` is the maximum, a number a percentile.
METHODS: dict[str, float | None] = {"max": None, "p99.7": 99.7, "p99.9": 99.9}
ENCODINGS = ("direct", "poisson")
RESETS = ("subtract", "zero")
#: Node types a convertible ANN may contain (``BatchNorm`` is folded first).
ANN_NODES: tuple[type[Node], ...] = (
    Input, Affine, Linear, Conv2d, AvgPool2d, SumPool2d, Flatten, Add, Concat, ReLU, BatchNorm,
)
#: Percentiles of the input current reported per layer (besides the maximum).
REPORT_PERCENTILES = (99.0, 99.7, 99.9)
#: Fewer calibration samples than this gives a warning (Rathi uses one batch of 512).
MIN_CALIB_SAMPLES = 64
#: Largest recorded trace (bytes) of one simulator run; bigger batches are split.
TRACE_BUDGET_BYTES = 1 << 27


class CalibrationError(NeurodeployError, ValueError):
    """Calibration data or options are unusable (wrong shape, empty, NaN, bad option)."""


# ============================================================================================
# ANN checks
# ============================================================================================


def ann_violations(graph: Graph) -> list[str]:
    """Every reason ``graph`` cannot be converted, one line each (empty when it can).

    Lists BatchNorms that cannot be folded, non-ReLU activations and neuron nodes (the graph
    must be an ANN), max pooling, fixed-point nodes and any node the float simulator or the
    conversion does not handle.
    """
    problems = list(fold_problems(graph))
    for name, node in graph.nodes.items():
        if isinstance(node, ANN_NODES):
            if type(node) not in floatsim.SUPPORTED_NODES:
                problems.append(f"{name} ({node.type_name}): the float simulator cannot run it")
            continue
        kind = node.type_name
        low = kind.lower()
        if "maxpool" in low or "max_pool" in low:
            why = "max pooling has no rate-coded spiking equivalent; use average pooling"
        elif node.is_neuron or isinstance(node, BNTT):
            why = ("a spiking/stateful layer: conversion takes an ANN with ReLU activations, "
                   "not an SNN")
        elif node.stage == "fixed":
            why = "a fixed-point node: convert the float ANN before quantization"
        elif any(a in low for a in ("sigmoid", "tanh", "gelu", "elu", "softmax", "relu6",
                                    "hardswish", "swish", "silu", "leaky", "prelu", "clip")):
            why = "a non-ReLU activation: retrain the ANN with ReLU"
        else:
            why = "not supported by ANN→SNN conversion"
        problems.append(f"{name} ({kind}): {why}")
    return problems


def _check_options(method: str, reset: str, encoding: str, scale: float,
                   calib_steps: int) -> float | None:
    if method not in METHODS:
        raise UnsupportedError(f"threshold method {method!r} is not supported; choose one of "
                               f"{', '.join(METHODS)}")
    if reset not in RESETS:
        raise UnsupportedError(f"reset {reset!r} is not supported; choose one of "
                               f"{', '.join(RESETS)}")
    if encoding not in ENCODINGS:
        raise UnsupportedError(f"input encoding {encoding!r} is not supported; choose one of "
                               f"{', '.join(ENCODINGS)}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (
            math.isfinite(scale) and scale > 0):
        raise CalibrationError(f"threshold scale {scale!r} must be a positive number "
                               "(1.0 for pure conversion, 0.7 before fine-tuning)")
    if isinstance(calib_steps, bool) or not isinstance(calib_steps, (int, np.integer)) or (
            calib_steps < 1):
        raise CalibrationError(f"calib_steps={calib_steps!r} must be a positive integer "
                               "(Rathi uses 1000 with Poisson input)")
    return METHODS[method]


def _as_batch(graph: Graph, x: Any, what: str) -> torch.Tensor:
    """``x`` as a float64 CPU tensor ``(B, *input_shape)``; raises CalibrationError."""
    shape = tuple(graph.shapes[graph.inputs[0]])
    try:
        t = torch.as_tensor(np.asarray(x.detach().cpu() if torch.is_tensor(x) else x,
                                       dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise CalibrationError(f"{what} must be a numeric array ({err})") from None
    if t.dim() == len(shape) and tuple(t.shape) == shape:
        t = t.unsqueeze(0)
    if t.dim() != len(shape) + 1 or tuple(t.shape[1:]) != shape:
        raise CalibrationError(
            f"{what} has shape {tuple(t.shape)}; expected (batch, {', '.join(map(str, shape))})")
    if t.shape[0] == 0:
        raise CalibrationError(f"{what} is empty; give at least one sample (512 recommended)")
    if not bool(torch.isfinite(t).all()):
        raise CalibrationError(f"{what} holds NaN or infinite values")
    return t


# ============================================================================================
# Input encoding and chunked simulation
# ============================================================================================


def poisson_spikes(x: torch.Tensor, steps: int, *, seed: int = 0, rescale: float = 1.0,
                   offset: int = 0) -> torch.Tensor:
    """Signed Poisson spike trains ``(B, *shape, steps)`` for a batch ``x`` ``(B, *shape)``.

    ``s[t] = sign(x)·1[rescale·u ≤ |x|]`` with fresh ``u ~ U[0, 1)`` per element and step
    (reference/algorithms.md §1.1; spike probability ``min(|x|/rescale, 1)``). Sample ``i``
    (global index ``offset + i``) uses its own generator seeded from ``(seed, offset + i)``.
    """
    out = torch.empty((*x.shape, steps), dtype=x.dtype)
    sign = torch.sign(x)
    mag = x.abs()
    gen = torch.Generator()
    for i in range(x.shape[0]):
        gen.manual_seed(int(seed) * 1_000_003 + offset + i)
        u = torch.rand((*x.shape[1:], steps), generator=gen, dtype=x.dtype)
        out[i] = sign[i].unsqueeze(-1) * (rescale * u <= mag[i].unsqueeze(-1)).to(x.dtype)
    return out


def _chunks(n: int, per_sample_bytes: float) -> list[tuple[int, int]]:
    size = max(1, int(TRACE_BUDGET_BYTES // max(per_sample_bytes, 1.0)))
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _run_chunked(graph: Graph, x: torch.Tensor, steps: int, record: dict[str, list[str]],
                 *, encoding: str, seed: int, rescale: float, per_sample_values: int,
                 on_chunk: Callable[[int, int, Any], None], max_batch: int | None = None,
                 progress: Any = None, device: str = "cpu") -> None:
    """Run ``graph`` on ``x`` in sub-batches; call ``on_chunk(start, stop, RunResult)``."""
    sim = floatsim.FloatSim(graph, device=device)
    per_sample = 16.0 * steps * per_sample_values  # float64 clones + stacked copy
    if encoding == "poisson":
        per_sample += 8.0 * steps * int(np.prod(x.shape[1:]))
    spans = _chunks(x.shape[0], per_sample)
    if max_batch is not None:
        spans = [(a, min(a + max_batch, b)) for a0, b in spans
                 for a in range(a0, b, max_batch)]
    for a, b in spans:
        xb = x[a:b]
        if encoding == "poisson":
            xb = poisson_spikes(xb, steps, seed=seed, rescale=rescale, offset=a)
        result = sim.run(xb, steps, record=record or None)
        on_chunk(a, b, result)
        if progress is not None:
            progress.update(b - a)


# ============================================================================================
# Per-step statistics of a recorded current
# ============================================================================================


class _CurrentStats:
    """Running per-step statistics of a layer's input current over batch chunks.

    Keeps, per step, the top ``k`` values over every element seen (enough for the requested
    upper percentiles of the whole batch), the sum, the count of positive elements and the
    count of all elements.
    """

    def __init__(self, n_total: int, steps: int, percentiles: Iterable[float]) -> None:
        self.n = n_total
        self.steps = steps
        self.ps = sorted(set(percentiles))
        lo_min = math.floor(self.ps[0] / 100.0 * (n_total - 1)) if self.ps else n_total - 1
        self.k = n_total - lo_min  # top values holding every order statistic needed
        self.top: torch.Tensor | None = None  # (k', steps), descending per column
        self.total = 0.0
        self.positive = 0
        self.seen = 0
        self.nan = False

    def add(self, z: np.ndarray) -> None:
        """``z``: ``(b, *shape, steps)`` trace of a chunk."""
        t = torch.from_numpy(np.ascontiguousarray(z)).reshape(-1, self.steps)
        if not bool(torch.isfinite(t).all()):
            self.nan = True
            return
        k = min(self.k, t.shape[0])
        top = torch.topk(t, k, dim=0).values
        if self.top is not None:
            both = torch.cat([self.top, top], dim=0)
            top = torch.topk(both, min(self.k, both.shape[0]), dim=0).values
        self.top = top
        self.total += float(t.sum())
        self.positive += int((t > 0).sum())
        self.seen += t.numel()

    def order_stat(self, i: int) -> torch.Tensor:
        """Per step, the ``i``-th smallest value (0-based) over all ``n`` elements."""
        return self.top[self.n - 1 - i]

    def percentile(self, p: float) -> torch.Tensor:
        """Per-step ``p``-th percentile (numpy's linear interpolation), shape ``(steps,)``."""
        pos = p / 100.0 * (self.n - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, self.n - 1)
        frac = pos - lo
        a, b = self.order_stat(lo), self.order_stat(hi)
        return a + (b - a) * frac

    def maximum(self) -> torch.Tensor:
        return self.top[0]


def _statistic(stats: _CurrentStats, percentile: float | None) -> float:
    per_step = stats.maximum() if percentile is None else stats.percentile(percentile)
    return float(per_step.max())


# ============================================================================================
# Conversion
# ============================================================================================


def _ancestors(graph: Graph, name: str) -> set[str]:
    seen, todo = {name}, [name]
    while todo:
        for p in graph.predecessors(todo.pop()):
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return seen


def _subgraph(graph: Graph, keep: set[str]) -> Graph:
    nodes = {n: node for n, node in graph.nodes.items() if n in keep}
    edges = [(a, b) for a, b in graph.edges if a in keep and b in keep]
    return Graph(nodes, edges, graph.metadata)


def _unique(base: str, taken: Iterable[str]) -> str:
    taken = set(taken)
    name, i = base, 1
    while name in taken:
        name = f"{base}_{i}"
        i += 1
    return name


def _skeleton(ann: Graph) -> tuple[Graph, list[str], list[str], dict[str, str], list[str]]:
    """The ANN with final ReLUs dropped and an ``I`` accumulator after every output.

    Returns ``(graph, hidden ReLU names in topological order, dropped final ReLUs,
    {accumulator: node it integrates}, notes)``.
    """
    notes: list[str] = []
    order = ann.topo_order
    final = [n for n in order if isinstance(ann.nodes[n], ReLU) and not ann.successors(n)]
    nodes = {n: node for n, node in ann.nodes.items() if n not in final}
    edges = [(a, b) for a, b in ann.edges if b not in final]
    for n in final:
        notes.append(f"{n}: final ReLU dropped; the accumulator integrates its input (the "
                     "class ranking is the same unless every logit is negative)")
    dt = float(ann.metadata.get("dt", 1.0))
    outputs = [n for n in nodes if not any(a == n for a, _ in edges)]
    accs: dict[str, str] = {}
    for out in outputs:
        acc = _unique("acc" if len(outputs) == 1 else f"{out}_acc", list(nodes) + list(accs))
        accs[acc] = out
    for acc, out in accs.items():
        nodes[acc] = I(r=np.array(1.0 / dt))
        edges.append((out, acc))
    hidden = [n for n in order if isinstance(ann.nodes[n], ReLU) and n not in final]
    return Graph(nodes, edges, ann.metadata), hidden, final, accs, notes


def ann_to_snn(graph: Graph, calib_x: Any, *, method: str = "max", calib_steps: int = 100,
               reset: str = "subtract", encoding: str = "direct", scale: float = 1.0,
               poisson_rescale: float = 1.0, seed: int = 0, progress: bool = False,
               device: str = "cpu") -> tuple[Graph, dict[str, Any]]:
    """Convert a ReLU ANN into an IF SNN with layer-wise threshold balancing.

    Args:
        graph: float-stage ANN (``Input``, ``Conv2d``/``Affine``/``Linear``, ``BatchNorm``,
            ``ReLU``, ``AvgPool2d``/``SumPool2d``, ``Flatten``, ``Add``, ``Concat``); biases
            are allowed and become constant input currents.
        calib_x: calibration batch ``(B, *input_shape)`` in the units the ANN was trained on
            (normalized inputs); 512 training samples is the usual choice.
        method: ``"max"``, ``"p99.7"`` or ``"p99.9"`` (see the module docstring).
        calib_steps: time steps of each calibration run (dimensionless steps of ``dt``).
        reset: ``"subtract"`` (soft reset, default) or ``"zero"`` of the IF neurons.
        encoding: ``"direct"`` (analog input current) or ``"poisson"`` (signed rate code).
        scale: factor applied to every threshold (1.0; 0.7 is Rathi's choice before
            fine-tuning at low latency).
        poisson_rescale: Poisson rescale factor ``r`` (spike probability ``|x|/r``).
        seed: seed of the Poisson spike trains.
        progress: show a tqdm progress bar over layers and samples.
        device: where the float simulator runs (``"cpu"`` or ``"cuda[:N]"``).

    Returns:
        ``(snn, report)``. ``snn`` has the ANN's node names, each hidden ReLU replaced by an
        ``IF`` of the same name, and an ``I`` accumulator (``"acc"``) after the output;
        metadata adds ``kind="snn"``, ``encoder``, ``conversion`` (method and thresholds).
        ``report`` is a JSON-able dict: ``layers`` (per IF layer: ``name``, ``input`` node,
        ``threshold`` θ, ``threshold_raw`` (statistic before ``scale``/fallback), ``method``,
        ``percentiles`` of the input current (per-step percentile, max over steps: ``p99``,
        ``p99.7``, ``p99.9``, ``max``), ``mean_current``, ``positive_fraction``,
        ``dead_fraction`` (neurons that never spiked on any calibration sample),
        ``firing_rate`` (spikes per neuron and step), ``fallback``, ``neurons``, ``scale``),
        ``output`` (accumulator, its input, ``logit_scale``), ``scales`` (node → σ: the SNN's
        time-averaged value of the node is the ANN's divided by σ), ``biases`` (synapses with
        a bias), ``scaled_biases`` (biases divided by their input's σ), ``folded_batchnorm``,
        ``dropped_final_relu``, ``notes``, ``warnings``, and the settings.

    Spike scales: a rate-coded layer carries the ANN's activation divided by the product of the
    thresholds upstream (σ; the Poisson rescale for the input). Weights are unchanged (the
    thresholds absorb the scaling), but a bias must be divided by its input's σ to stay in
    proportion; the report lists every bias so scaled. ``Add``/``Concat`` of branches with
    different σ cannot be exact and gives a warning.

    Raises:
        UnsupportedError: listing every ANN constraint violation, or for an unknown method,
            reset or encoding.
        CalibrationError: for calibration data of the wrong shape, empty or non-finite, for
            bad ``scale``/``calib_steps``, and when a layer's current becomes non-finite.
        InvalidIRError: when ``graph`` is not a valid IR graph.
    """
    percentile = _check_options(method, reset, encoding, scale, calib_steps)
    calib_steps = int(calib_steps)
    if not isinstance(poisson_rescale, (int, float)) or not poisson_rescale > 0:
        raise CalibrationError(f"poisson_rescale={poisson_rescale!r} must be a positive number")
    graph.validate()
    if len(graph.inputs) != 1:
        raise UnsupportedError(f"conversion needs exactly one Input node, found "
                               f"{len(graph.inputs)} ({', '.join(graph.inputs)})")
    problems = ann_violations(graph)
    if problems:
        raise UnsupportedError(
            f"cannot convert the ANN ({len(problems)} problem{'s' if len(problems) > 1 else ''}"
            "): " + "; ".join(problems)
            + ". Convertible: Conv2d/Affine/Linear with ReLU, BatchNorm right after a synapse, "
            "AvgPool2d/SumPool2d, Flatten, Add, Concat")
    folded = [n for n, node in graph.nodes.items() if isinstance(node, BatchNorm)]
    ann = fold_batchnorm(graph)
    x = _as_batch(ann, calib_x, "calibration input")
    batch = int(x.shape[0])
    dt = float(ann.metadata.get("dt", 1.0))
    snn, hidden, final, accs, notes = _skeleton(ann)
    warnings_: list[str] = []
    if batch < MIN_CALIB_SAMPLES:
        warnings_.append(f"calibration used only {batch} sample(s); thresholds from fewer than "
                         f"{MIN_CALIB_SAMPLES} samples are unreliable (512 is usual)")
    biases = [n for n, node in ann.nodes.items()
              if getattr(node, "bias", None) is not None and np.any(node.bias)]
    if biases:
        notes.append(f"biases of {', '.join(biases)} become constant input currents added "
                     "at every step (on Loihi: the neurons' bias), divided by the spike scale "
                     "of their input (the product of the thresholds upstream)")
    if folded:
        notes.append(f"batch norm {', '.join(folded)} folded into the preceding synapses")
    if not hidden:
        warnings_.append("the ANN has no hidden ReLU: nothing to balance, the SNN is only "
                         "the accumulator of a linear model")

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=batch * (len(hidden) + 1), desc="threshold balancing", unit="sample")
    layers: list[dict[str, Any]] = []
    thresholds: dict[str, float] = {}
    scaled_biases: list[dict[str, Any]] = []
    # sigma[n]: the SNN's (time-averaged) value of node n is the ANN's value divided by sigma[n]
    sigma: dict[str, float] = {}
    prev_theta: float | None = None
    try:
        for name in list(snn.topo_order):
            node = snn.nodes[name]
            ins = [sigma[p] for p in snn.predecessors(name)]
            if isinstance(node, Input):
                sigma[name] = float(poisson_rescale) if encoding == "poisson" else 1.0
                continue
            if len(set(ins)) > 1:
                warnings_.append(
                    f"{name} ({node.type_name}): its inputs carry different spike scales "
                    f"({', '.join(f'{v:.4g}' for v in ins)}), so their sum/concatenation "
                    "differs from the ANN's; expect an accuracy loss here")
            s_in = ins[0]
            if name not in hidden:
                sigma[name] = s_in
                bias = getattr(node, "bias", None)
                if bias is not None and np.any(bias) and s_in != 1.0:
                    snn = snn.replace_node(name, node.replace(bias=np.asarray(bias) / s_in))
                    scaled_biases.append({"name": name, "divided_by": s_in})
                continue
            src = snn.predecessors(name)[0]
            sub = _subgraph(snn, _ancestors(snn, src))
            n_neurons = int(np.prod(sub.shapes[src]))
            # without neurons upstream, a direct input gives the same current at every step
            run_steps = 1 if encoding == "direct" and not sub.neurons else calib_steps
            stats = _CurrentStats(batch * n_neurons, run_steps,
                                  REPORT_PERCENTILES + ((percentile,) if percentile else ()))

            def take(a: int, b: int, result: Any, _s: _CurrentStats = stats,
                     _src: str = src) -> None:
                _s.add(result.traces[f"{_src}.out"])

            _run_chunked(sub, x, run_steps, {src: ["out"]}, encoding=encoding, seed=seed,
                         rescale=float(poisson_rescale), per_sample_values=n_neurons,
                         on_chunk=take, progress=bar, device=device)
            if stats.nan:
                raise CalibrationError(
                    f"layer {name}: its input current {src} became NaN or infinite during "
                    "calibration; check the weights and the calibration inputs")
            raw = _statistic(stats, percentile)
            entry: dict[str, Any] = {
                "name": name, "input": src, "method": method, "threshold_raw": raw,
                "percentiles": {f"p{p:g}": float(stats.percentile(p).max())
                                for p in REPORT_PERCENTILES},
                "mean_current": stats.total / max(stats.seen, 1),
                "positive_fraction": stats.positive / max(stats.seen, 1),
                "neurons": n_neurons, "fallback": False,
            }
            entry["percentiles"]["max"] = float(stats.maximum().max())
            if percentile is not None and batch * n_neurons * (1 - percentile / 100) < 1:
                warnings_.append(
                    f"{name}: with {batch * n_neurons} current values per step the "
                    f"{percentile:g}th percentile only interpolates between the largest values; "
                    "calibrate on more samples")
            theta = raw * scale
            if not raw > 0:
                fallback = prev_theta if prev_theta is not None else 1.0
                what = "the previous layer's threshold" if prev_theta is not None else "1.0"
                warnings_.append(
                    f"{name}: its input current {src} was never positive during calibration "
                    f"(a dead layer: statistic {raw:g}); threshold set to {what} ({fallback:g})")
                theta = fallback
                entry["fallback"] = True
            entry["threshold"] = float(theta)
            thresholds[name] = float(theta)
            prev_theta = float(theta)
            sigma[name] = s_in * float(theta)
            entry["scale"] = sigma[name]
            node = IF(r=np.array(1.0 / dt), v_threshold=np.array(float(theta)),
                      v_reset=np.array(0.0), reset=reset, order="integrate_fire")
            snn = snn.replace_node(name, node)
            layers.append(entry)

        # One run of the whole SNN: spiking statistics of every converted layer.
        spikes = {e["name"]: None for e in layers}
        totals = {e["name"]: 0 for e in layers}
        record = {name: ["s"] for name in spikes}
        per_sample = sum(e["neurons"] for e in layers) + sum(
            int(np.prod(snn.shapes[a])) for a in accs)

        def count(a: int, b: int, result: Any) -> None:
            for name in spikes:
                s = result.traces[f"{name}.s"]
                fired = s.reshape(s.shape[0], -1, s.shape[-1]).any(axis=(0, 2))
                spikes[name] = fired if spikes[name] is None else spikes[name] | fired
                totals[name] += int(s.sum(dtype=np.int64))

        _run_chunked(snn, x, calib_steps, record, encoding=encoding, seed=seed,
                     rescale=float(poisson_rescale), per_sample_values=per_sample,
                     on_chunk=count, progress=bar, device=device)
    finally:
        if bar is not None:
            bar.close()
    for entry in layers:
        fired = spikes[entry["name"]]
        entry["dead_fraction"] = float(1.0 - fired.mean()) if fired is not None else 1.0
        entry["firing_rate"] = totals[entry["name"]] / (batch * entry["neurons"] * calib_steps)
        if entry["dead_fraction"] > 0.5:
            warnings_.append(f"{entry['name']}: {entry['dead_fraction']:.0%} of its neurons "
                             "never spiked during calibration")

    meta = dict(snn.metadata)
    meta.update({
        "dt": dt, "kind": "snn", "encoder": encoding,
        "conversion": {"method": method, "scale": float(scale), "reset": reset,
                       "calib_steps": calib_steps, "thresholds": dict(thresholds)},
    })
    meta.pop("timesteps", None)
    if encoding == "poisson":
        meta["encoder_rescale"] = float(poisson_rescale)
    else:
        meta.pop("encoder_rescale", None)
    snn = Graph(snn.nodes, snn.edges, meta).validate()
    report = {
        "method": method, "encoding": encoding, "reset": reset, "scale": float(scale),
        "calib_steps": calib_steps, "calib_samples": batch, "seed": int(seed), "dt": dt,
        "poisson_rescale": float(poisson_rescale) if encoding == "poisson" else None,
        "layers": layers,
        "output": [{"name": acc, "input": out, "logit_scale": sigma[out]}
                   for acc, out in accs.items()],
        "dropped_final_relu": final, "folded_batchnorm": folded, "biases": biases,
        "scaled_biases": scaled_biases, "scales": dict(sigma),
        "notes": notes, "warnings": warnings_,
    }
    return snn, report


# ============================================================================================
# Evaluation
# ============================================================================================


def _output_node(graph: Graph) -> str:
    outs = graph.outputs
    if len(outs) != 1:
        raise NeurodeployError(f"the network has {len(outs)} outputs ({', '.join(outs)}); "
                               "accuracy needs exactly one")
    return outs[0]


def _labels(y: Any, n: int) -> np.ndarray:
    arr = np.asarray(y.detach().cpu() if torch.is_tensor(y) else y)
    if arr.shape != (n,) or arr.dtype.kind not in "iu":
        raise CalibrationError(f"labels must be {n} integers, got shape {arr.shape} and dtype "
                               f"{arr.dtype}")
    return arr.astype(np.int64)


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
            batch_size < 1):
        raise CalibrationError(f"batch_size={batch_size!r} must be a positive integer")
    return int(batch_size)


def accuracy_vs_timesteps(snn_graph: Graph, x: Any, y: Any, steps: Sequence[int] = (
        10, 20, 50, 100), batch_size: int = 256, *, encoding: str | None = None, seed: int = 0,
        poisson_rescale: float | None = None, progress: bool = False, device: str = "cpu"
        ) -> list[tuple[int, float]]:
    """Top-1 accuracy of an SNN with an ``I`` accumulator output after each ``T`` in ``steps``.

    One float-simulator run to ``max(steps)`` per batch records the accumulator after every step,
    so all ``T`` come from the same run (the prediction at ``T`` is the argmax of the
    accumulator then; dividing by ``T`` does not change it). ``x``: ``(N, *input_shape)``,
    ``y``: ``(N,)`` integer labels. ``encoding`` (and ``poisson_rescale``) default to the
    graph's ``metadata["encoder"]`` (``"direct"`` when absent). Returns ``[(T, accuracy)]`` in
    the order of ``steps``, accuracy as a fraction in [0, 1]. ``batch_size`` samples run per
    simulator call (fewer when the recorded accumulator trace would exceed
    :data:`TRACE_BUDGET_BYTES`); ``device`` is where the simulator runs.
    """
    steps = [int(s) for s in steps]
    if not steps or min(steps) < 1:
        raise CalibrationError(f"steps {steps} must be positive integers")
    batch_size = _check_batch_size(batch_size)
    encoding = encoding or snn_graph.metadata.get("encoder", "direct")
    if encoding not in ENCODINGS:
        raise UnsupportedError(f"input encoding {encoding!r} is not supported; choose one of "
                               f"{', '.join(ENCODINGS)}")
    rescale = float(poisson_rescale if poisson_rescale is not None
                    else snn_graph.metadata.get("encoder_rescale", 1.0))
    out = _output_node(snn_graph)
    xt = _as_batch(snn_graph, x, "evaluation input")
    labels = _labels(y, xt.shape[0])
    t_max = max(steps)
    correct = np.zeros(t_max, dtype=np.int64)
    n_out = int(np.prod(snn_graph.shapes[out]))

    def score(a: int, b: int, result: Any) -> None:
        v = result.traces[f"{out}.out"].reshape(b - a, n_out, t_max)
        pred = v.argmax(axis=1)  # (b, T)
        correct[:] += (pred == labels[a:b, None]).sum(axis=0)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(xt.shape[0]), desc="SNN accuracy", unit="sample")
    try:
        _run_chunked(snn_graph, xt, t_max, {}, encoding=encoding, seed=seed, rescale=rescale,
                     per_sample_values=n_out, on_chunk=score, max_batch=batch_size,
                     progress=bar, device=device)
    finally:
        if bar is not None:
            bar.close()
    n = xt.shape[0]
    return [(t, float(correct[t - 1] / n)) for t in steps]


def ann_accuracy(ann_graph: Graph, x: Any, y: Any, batch_size: int = 256, *,
                 device: str = "cpu") -> float:
    """Top-1 accuracy (fraction) of an ANN graph on ``x`` ``(N, *input_shape)``, ``y``
    ``(N,)``, evaluated by the float simulator in one step (ReLUs are stateless)."""
    batch_size = _check_batch_size(batch_size)
    out = _output_node(ann_graph)
    xt = _as_batch(ann_graph, x, "evaluation input")
    labels = _labels(y, xt.shape[0])
    sim = floatsim.FloatSim(ann_graph, device=device)
    correct = 0
    for a in range(0, xt.shape[0], batch_size):
        res = sim.run(xt[a:a + batch_size], 1)
        v = res.traces[f"{out}.out"][..., 0].reshape(min(batch_size, xt.shape[0] - a), -1)
        correct += int((v.argmax(axis=1) == labels[a:a + batch_size]).sum())
    return correct / xt.shape[0]
