"""What the same network costs as an ANN on conventional hardware, and how that compares with
the SNN on a neuromorphic target (the ``ann_comparison`` section of ``report.json``).

Counting (per sample, batch-1 inference; :func:`layer_costs`):

* ``Conv2d``/``QConv2d``: MACs = output elements × (in channels / groups) × kh × kw (padding
  positions count, as profilers such as thop count them); ``Affine``/``Linear``/``QDense``:
  MACs = out × in (plus out × out for a recurrent matrix).
* ``SumPool2d``/``AvgPool2d``/``QSumPool2d``: one accumulate (AC) per window element per
  output (an average pool's 1/k² scale is folded into the next layer); ``Add``: one AC per
  element per extra operand; ``Average``: one AC per input element.
* ``BatchNorm``/``BNTT`` directly after a synapse are folded into it (no ops, no parameters,
  as deployed ANNs run); elsewhere one MAC per element and 2 parameters per channel.
* ``ReLU`` (and any neuron node, when an SNN's float graph is costed as its ANN twin) is an
  activation: no arithmetic energy, but it counts as a neuron in the device corner.
* Parameters: weights + biases; activations: output elements of every compute layer.

Energy per inference on an ANN target (``targets/cpu.toml``, ``gpu.toml``, ``edge-int8.toml``;
every number comes from the target file, see ``reference/loihi.md`` §5 and §8.3):

* ``compute_only_j`` (the SNN papers' convention): ``macs·mac_<p> + acs·ac_<p>`` for
  ``p`` = fp32 and int8 — arithmetic only, no memory.
* ``memory_aware_j``: compute at the target's precision (int8 when the target says
  ``int8 = true``, else fp32) plus memory traffic: every parameter is read once per inference
  from DRAM (batch 1: the weights are not resident between inferences) and every compute
  layer reads its input activations and writes its outputs once in on-chip SRAM (a write costs
  a read), counted in 32-bit words (``dram_read_32b``, ``sram_read_32b``); 8-bit values pack
  four to a word. Activations are reused perfectly inside a layer, so this is a lower bound on
  traffic for real dataflows, while DRAM weights make it an upper corner for tiny models that
  would fit on chip.
* ``device_j`` (KerasSpiking's non-spiking device convention): ``device_op`` × (connections +
  neurons), connections = MACs + ACs, neurons = activation outputs.
* ``latency_s`` = (MACs + ACs) / ``macs_per_second`` (compute-bound), ``throughput_fps`` its
  inverse.

:func:`break_even` places the SNN's synaptic ops per synapse per inference against the
Dampfhoffer et al. (IEEE TETCI 2023) band of 0.15–1.38, where SNNs break even with efficient
ANN accelerators, and against the rate at which the SNN's modelled energy equals each ANN cost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import NeurodeployError, UnsupportedError
from .ir import (
    BNTT, Add, Affine, Average, AvgPool2d, BatchNorm, Concat, Conv2d, Flatten, Graph, Input,
    Linear, QConv2d, QDense, QSumPool2d, ReLU, SumPool2d,
)

#: ANN targets of a comparison, in display order.
DEFAULT_TARGETS = ("cpu", "gpu", "edge-int8")
#: Dampfhoffer et al., "Are SNNs Really More Energy-Efficient Than ANNs? An In-Depth
#: Hardware-Aware Study", IEEE TETCI 7(3), 2023 (reference/loihi.md §5.2): synaptic ops per
#: synapse per inference at which SNNs break even with efficient ANN accelerators.
BREAK_EVEN_BAND = (0.15, 1.38)
BREAK_EVEN_SOURCE = "Dampfhoffer et al., IEEE TETCI 7(3), 2023 (reference/loihi.md §5.2)"
PRECISIONS = {"fp32": 4, "int8": 1}  # bytes per value
_CONV = (Conv2d, QConv2d)
_DENSE = (Affine, Linear, QDense)
_POOL = (SumPool2d, AvgPool2d, QSumPool2d)
_STRUCTURAL = (Input, Flatten, Concat)


@dataclass(frozen=True)
class LayerCost:
    """Operations and memory of one node for one sample.

    ``macs``: multiply-accumulates; ``acs``: accumulates (adds); ``params``: weights and
    biases (values); ``activations``: output elements written; ``inputs``: input elements read;
    ``neurons``: activation units (ReLU or neuron outputs); ``note``: how it was counted."""

    layer: str
    type: str
    macs: int = 0
    acs: int = 0
    params: int = 0
    activations: int = 0
    inputs: int = 0
    neurons: int = 0
    note: str = ""

    @property
    def compute(self) -> bool:
        """True for layers that do arithmetic (and so move activations)."""
        return self.macs > 0 or self.acs > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _size(shape: Sequence[int] | None) -> int:
    return int(np.prod(shape)) if shape else 0


def layer_costs(graph: Graph) -> list[LayerCost]:
    """Per-node operation and memory counts of ``graph`` for one sample, in layer order
    (structural nodes included with zero counts). Works on float and fixed-point graphs.

    Raises :class:`UnsupportedError` listing every node type it cannot count."""
    shapes = graph.shapes
    rows: list[LayerCost] = []
    unsupported: list[str] = []
    for name, node in graph.nodes.items():
        preds = graph.predecessors(name)
        out = _size(shapes[name])
        ins = sum(_size(shapes[p]) for p in preds)
        kind = node.type_name
        if isinstance(node, _CONV):
            w = node.weight
            fan_in = int(np.prod(w.shape[1:]))
            bias = getattr(node, "bias", None)
            rows.append(LayerCost(name, kind, macs=out * fan_in,
                                  params=int(w.size) + (int(bias.size) if bias is not None else 0),
                                  activations=out, inputs=ins))
        elif isinstance(node, _DENSE):
            w = node.weight
            macs = int(w.size)
            params = int(w.size)
            bias = getattr(node, "bias", None)
            if isinstance(bias, np.ndarray):
                params += int(bias.size)
            rec = getattr(node, "weight_rec", None)
            if rec is not None:
                macs += int(rec.size)
                params += int(rec.size)
            rows.append(LayerCost(name, kind, macs=macs, params=params, activations=out,
                                  inputs=ins))
        elif isinstance(node, _POOL):
            k = int(np.prod(node.kernel_size))
            rows.append(LayerCost(name, kind, acs=out * k, activations=out, inputs=ins,
                                  note="one add per window element"
                                  + ("; 1/k² folded into the next layer"
                                     if isinstance(node, AvgPool2d) else "")))
        elif isinstance(node, Add):
            rows.append(LayerCost(name, kind, acs=out * (len(preds) - 1), activations=out,
                                  inputs=ins))
        elif isinstance(node, Average):
            rows.append(LayerCost(name, kind, acs=ins, activations=out, inputs=ins))
        elif isinstance(node, (BatchNorm, BNTT)):
            if preds and graph.nodes[preds[0]].is_synapse:
                rows.append(LayerCost(name, kind, note="folded into the preceding layer"))
            else:
                rows.append(LayerCost(name, kind, macs=out, params=2 * int(node.scale.shape[-1]),
                                      activations=out, inputs=ins,
                                      note="not foldable: one MAC per element"))
        elif isinstance(node, ReLU) or node.is_neuron:
            rows.append(LayerCost(name, kind, neurons=out,
                                  note="activation (no arithmetic energy)"
                                  + ("" if isinstance(node, ReLU)
                                     else "; neuron counted as a ReLU-like activation")))
        elif isinstance(node, _STRUCTURAL):
            rows.append(LayerCost(name, kind))
        else:
            unsupported.append(f"{name} ({kind})")
    if unsupported:
        raise UnsupportedError(
            f"cannot count ANN operations of {', '.join(unsupported)}; supported: Conv2d, "
            "Affine, Linear, SumPool2d, AvgPool2d, Add, Average, BatchNorm, BNTT, ReLU, neuron "
            "nodes, Input, Flatten, Concat and their fixed-point forms")
    return rows


def connections(graph: Graph) -> int:
    """Synapses used once per time step by one sample: Σ MACs + ACs over the graph (for an
    SNN graph, the number of (presynaptic, postsynaptic) pairs a spike can drive, shared
    convolution weights counted once per use). Divides synaptic ops into spikes per synapse."""
    return sum(r.macs + r.acs for r in layer_costs(graph))


def _words(values: int, precision: str) -> int:
    """32-bit words holding ``values`` values at ``precision`` (fp32: 1 each, int8: 4 a word)."""
    return math.ceil(values * PRECISIONS[precision] / 4)


def _load_targets(targets: Iterable[Any]) -> list[Any]:
    from .targets import Target, load_target

    out = []
    for spec in targets:
        tgt = spec if isinstance(spec, Target) else load_target(spec)
        if tgt.kind != "ann":
            raise NeurodeployError(
                f"target {tgt.name} is a {tgt.kind} target; ANN costs need an ANN device "
                f"({', '.join(DEFAULT_TARGETS)} or an ANN target .toml)")
        out.append(tgt)
    return out


def target_cost(rows: Sequence[LayerCost], target: Any) -> dict[str, Any]:
    """Energy (J) and latency (s) per inference of the layers ``rows`` on one ANN ``target``
    (a loaded :class:`neurodeploy.targets.Target` of kind ``"ann"``); see the module docstring
    for each formula."""
    e = target.energy
    macs = sum(r.macs for r in rows)
    acs = sum(r.acs for r in rows)
    neurons = sum(r.neurons for r in rows)
    params = sum(r.params for r in rows)
    precision = "int8" if target.int8 else "fp32"
    compute = {p: macs * e[f"mac_{p}"] + acs * e[f"ac_{p}"] for p in PRECISIONS}
    dram = _words(params, precision) * e["dram_read_32b"]
    sram = sum(_words(r.inputs, precision) + _words(r.activations, precision)
               for r in rows if r.compute) * e["sram_read_32b"]
    ops = macs + acs
    rate = float(target.time["macs_per_second"])
    return {
        "target": target.name,
        "description": target.description,
        "precision": precision,
        "compute_only_j": compute,
        "memory_j": {"dram": dram, "sram": sram},
        "memory_aware_j": compute[precision] + dram + sram,
        "device_j": e["device_op"] * (ops + neurons),
        "latency_s": ops / rate if ops else 0.0,
        "throughput_fps": rate / ops if ops else None,
        "per_op_j": {k: float(v) for k, v in e.items()},
        "scope": target.energy_scope,
        "confidence": target.confidence,
        "sources": {k: v for k, v in target.sources.items()
                    if k.startswith(("energy.", "time."))},
    }


def ann_cost(graph: Graph, targets: Iterable[Any] = DEFAULT_TARGETS, *,
             model: str | None = None) -> dict[str, Any]:
    """The ANN side of a comparison: per-layer counts of ``graph`` (one sample) and its cost on
    each ANN target (names, ``.toml`` paths or loaded targets).

    Returns ``{"model", "macs", "acs", "params", "activations", "neurons",
    "first_layer_macs", "memory_bytes": {"params": {fp32, int8}, "activations": {...}},
    "per_layer": [LayerCost dicts], "targets": {name: target_cost(...)}, "assumptions"}``;
    ``first_layer_macs`` are the MACs of the first synapse layer (the one an SNN with direct
    encoding runs on analog input)."""
    rows = layer_costs(graph)
    tgts = _load_targets(targets)
    first = next((r.macs for r in rows if r.macs and r.type in
                  {c.__name__ for c in _CONV + _DENSE}), 0)
    params = sum(r.params for r in rows)
    acts = sum(r.activations for r in rows)
    return {
        "model": model if model is not None else str(graph.metadata.get("source", "graph")),
        "macs": sum(r.macs for r in rows),
        "acs": sum(r.acs for r in rows),
        "params": params,
        "activations": acts,
        "neurons": sum(r.neurons for r in rows),
        "first_layer_macs": first,
        "memory_bytes": {"params": {p: params * b for p, b in PRECISIONS.items()},
                         "activations": {p: acts * b for p, b in PRECISIONS.items()}},
        "per_layer": [r.to_dict() for r in rows if r.type not in ("Input", "Flatten", "Concat")],
        "targets": {t.name: target_cost(rows, t) for t in tgts},
        "assumptions": ann_assumptions(),
    }


def ann_assumptions() -> list[str]:
    """The counting and energy rules behind :func:`ann_cost`, one sentence each."""
    return [
        "ANN: batch-1 inference; MACs of convolutions include padded positions; BatchNorm "
        "after a synapse is folded into it; pooling and residual adds count one accumulate "
        "per element; ReLU costs no arithmetic energy",
        "ANN compute-only energy (SNN papers' convention): MACs x E_MAC + ACs x E_AC with "
        "Horowitz 2014 45 nm numbers (FP32 4.6/0.9 pJ, INT8 0.23/0.03 pJ), memory ignored",
        "ANN memory-aware energy: compute at the device's precision plus every parameter read "
        "once from DRAM (640 pJ per 32-bit word) and every compute layer's input and output "
        "activations moved once through SRAM (5 pJ per 32-bit word); INT8 packs 4 values a word",
        "ANN device corner: KerasSpiking device energy per op x (MACs + ACs + activations)",
        "ANN latency: (MACs + ACs) / the device's sustained MAC rate (compute-bound)",
    ]


# ------------------------------------------------------------------------------ comparison


def break_even_rate(rate: float, fixed_j: float, variable_j: float, ann_j: float
                    ) -> float | None:
    """Synaptic ops per synapse per inference at which the SNN's energy equals ``ann_j``,
    when the SNN's energy is ``fixed_j + variable_j · r / rate`` (``variable_j``: the part
    proportional to spikes at the measured ``rate``). ``None`` when the SNN costs more than
    the ANN at any rate (``fixed_j >= ann_j``) or the slope is unknown (no spikes)."""
    if ann_j <= fixed_j:
        return None
    if rate <= 0 or variable_j <= 0:
        return None
    return rate * (ann_j - fixed_j) / variable_j


def band_position(rate: float, band: tuple[float, float] = BREAK_EVEN_BAND) -> str:
    """``"below"``, ``"within"`` or ``"above"`` the break-even band."""
    if rate < band[0]:
        return "below"
    return "within" if rate <= band[1] else "above"


def break_even(synops: float, synapses: int, *, fixed_j: float | None = None,
               variable_j: float | None = None,
               ann_j: Mapping[str, float] | None = None,
               band: tuple[float, float] = BREAK_EVEN_BAND) -> dict[str, Any]:
    """The SNN's synaptic ops per synapse per inference (``synops`` per inference /
    ``synapses``) against the Dampfhoffer break-even ``band``, and, when the SNN's energy split
    is given (``fixed_j`` + ``variable_j`` proportional to spikes, joules per inference), the
    rate at which it equals each ANN energy in ``ann_j`` (label → J).

    Returns ``{"spikes_per_synapse", "synops", "synapses", "band", "band_source",
    "position", "meaning", "rates": {label: rate | None}}``."""
    if synapses <= 0:
        raise NeurodeployError("break-even needs a positive synapse count")
    rate = float(synops) / float(synapses)
    position = band_position(rate, band)
    meaning = {
        "below": "below the band: in Dampfhoffer's study the SNN would beat efficient ANN "
                 "accelerators",
        "within": "within the band: whether the SNN wins depends on the ANN accelerator",
        "above": "above the band: efficient ANN accelerators would beat this SNN",
    }[position]
    rates: dict[str, float | None] = {}
    if ann_j and fixed_j is not None and variable_j is not None:
        rates = {label: break_even_rate(rate, fixed_j, variable_j, j)
                 for label, j in ann_j.items()}
    return {"spikes_per_synapse": rate, "synops": float(synops), "synapses": int(synapses),
            "band": list(band), "band_source": BREAK_EVEN_SOURCE, "position": position,
            "meaning": meaning, "rates": rates}


#: Breakdown parts of the SNN energy that scale with spikes (by name fragment).
_VARIABLE_PARTS = ("syn", "spike", "noc", "hop", "message", "axon")


def spike_energy(breakdown: Mapping[str, float]) -> float:
    """Joules of an SNN energy breakdown that scale with spikes: the parts whose name mentions
    synapses, spikes, NoC, hops, messages or axons (neuron updates and static power do not)."""
    return sum(float(v) for k, v in breakdown.items()
               if any(p in k.lower() for p in _VARIABLE_PARTS))


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def compare_doc(snn: Mapping[str, Any], ann: Mapping[str, Any],
                accuracies: Mapping[str, float | None] | None = None, *,
                synapses: int | None = None) -> dict[str, Any]:
    """The ``ann_comparison`` section of ``report.json``.

    Args:
        snn: the SNN side in report shape: ``steps``, ``target``, ``energy``
            (``per_inference_j`` {total, dynamic, static}, ``breakdown_j``), ``latency``
            (``latency_per_inference_s``) and ``activity`` (``per_layer`` rows with
            ``synops_per_sample`` and ``spikes_per_sample``), e.g. a report document.
        ann: :func:`ann_cost`'s result for the ANN twin.
        accuracies: ``{"ann": fraction | None, "snn": fraction | None}``.
        synapses: the SNN's synapses (:func:`connections` of its graph); defaults to the
            ANN's MACs + ACs (the same layers, when the ANN is the SNN's twin).

    SNN compute-only energy in the papers' convention (reference/loihi.md §5.2):
    ``first_layer_macs · T · E_MAC + SOPs · E_AC``, SOPs excluding the first neuron layer's
    (its analog input is counted as MACs). Ratios are ANN energy / SNN energy (> 1: SNN wins).
    """
    energy, latency, activity = snn.get("energy") or {}, snn.get("latency") or {}, \
        snn.get("activity") or {}
    steps = int(snn.get("steps") or 0)
    per_inf = energy.get("per_inference_j") or {}
    total = _num(per_inf.get("total"))
    rows = list(activity.get("per_layer") or [])
    synops = sum(float(r.get("synops_per_sample") or 0) for r in rows)
    spikes = sum(float(r.get("spikes_per_sample") or 0) for r in rows)
    sops_rest = synops - (float(rows[0].get("synops_per_sample") or 0) if rows else 0.0)
    n_syn = int(synapses) if synapses else int(ann["macs"] + ann["acs"])
    assumptions = list(ann.get("assumptions", []))
    if not synapses:
        assumptions.append("SNN synapses taken as the ANN twin's MACs + ACs per step")
    assumptions.append(
        "SNN compute-only energy (papers' convention): first-layer MACs x T x E_MAC + synaptic "
        "ops of the other layers x E_AC")
    assumptions.append(
        "break-even rates: the SNN's synaptic, spike and NoC energy scales with its spike "
        "count, its neuron-update and static energy stay fixed")

    targets = ann.get("targets", {})
    first = next(iter(targets.values()), None)
    m1 = int(ann.get("first_layer_macs") or 0)
    # papers' convention: fixed part first-layer MACs x T, variable part the SOP term
    paper_parts: dict[str, tuple[float, float]] = {}
    if first is not None and steps:
        e = first["per_op_j"]
        paper_parts = {p: (m1 * steps * e[f"mac_{p}"], sops_rest * e[f"ac_{p}"])
                       for p in PRECISIONS}
    paper = {p: fixed + var for p, (fixed, var) in paper_parts.items()}
    ratios: dict[str, Any] = {}
    if first is not None:
        ratios["paper"] = {p: (first["compute_only_j"][p] / paper[p] if paper.get(p) else None)
                           for p in PRECISIONS}
    for name, t in targets.items():
        ratios[name] = {kind: (t[f"{kind}_j"] / total if total else None)
                        for kind in ("memory_aware", "device")}
    breakdown = energy.get("breakdown_j") or {}
    variable = spike_energy(breakdown) if breakdown else (total or 0.0)
    if total is not None and not breakdown:
        assumptions.append("no SNN energy breakdown: all of its energy taken as scaling with "
                           "spikes for the break-even rates")
    fixed = max((total or 0.0) - variable, 0.0)
    ann_j = {f"{name}.{kind}": t[f"{kind}_j"] for name, t in targets.items()
             for kind in ("memory_aware", "device")}
    if total is not None:
        be = break_even(synops, n_syn, fixed_j=fixed, variable_j=variable, ann_j=ann_j)
    else:
        be = break_even(synops, n_syn)
    for p, (fixed_p, var_p) in paper_parts.items():
        be["rates"][f"paper.{p}"] = break_even_rate(be["spikes_per_synapse"], fixed_p, var_p,
                                                    first["compute_only_j"][p])
    return {
        "snn_target": snn.get("target"),
        "ann_model": ann.get("model"),
        "accuracy": {"ann": (accuracies or {}).get("ann"), "snn": (accuracies or {}).get("snn")},
        "ann": {k: ann[k] for k in ("macs", "acs", "params", "activations", "neurons",
                                    "first_layer_macs", "memory_bytes", "per_layer")}
        | {"targets": targets},
        "snn": {
            "energy_j": total,
            "dynamic_j": _num(per_inf.get("dynamic")),
            "static_j": _num(per_inf.get("static")),
            "latency_s": _num(latency.get("latency_per_inference_s")),
            "preset": energy.get("preset"),
            "synops": synops,
            "spikes": spikes,
            "synapses": n_syn,
            "steps": steps,
            "compute_only_j": paper,
        },
        "ratios": ratios,
        "break_even": be,
        "assumptions": assumptions,
    }
