"""Cost model: turns the event counts of a mapped run (:class:`neurodeploy.accounting.Activity`)
into energy, time per step, latency, throughput and energy-delay product with a target's
per-event numbers (``targets/*.toml``), following reference/loihi.md §8.

Per recorded step ``t``, for one sample (counts divided by the samples observed):

* energy ``E(t) = Σ_c [S_c·e_syn(enc) + A_c·e_act + I_c·e_inact + O_c·e_out]
  + Σ_m [e_local + h_EW(m)·e_EW + h_NS(m)·e_NS] + P_static·chips·T_step(t)`` with ``S`` the
  synaptic ops by encoding, ``A``/``I`` active/inactive neuron updates, ``O`` output spikes and
  ``m`` the core-to-core messages; split into *synaptic*, *neuron*, *spike_noc* (``O·e_out``
  plus messages) and *static*;
* core time ``T_c(t) = S_c·t_syn(enc) + A_c·t_act + I_c·t_inact + O_c·t_out + R_c·t_in``
  (``R`` = messages received);
* ``T_step(t) = max_c T_c(t) + max_m [t_local + h_EW·t_EW + h_NS·t_NS]
  + congestion(t) + T_barrier(tiles, chips)``, where congestion is the messages crossing the
  busiest tile boundary (XY routes) divided by the target's link bandwidth.

**On-chip SAM accumulator** (:attr:`Activity.sam`): its synaptic ops (at the
``neurodeploy.sam.SAM_ENCODING`` cost), compartment updates, read-out spikes and messages are
charged with the same per-event numbers and reported as one more part, *sam* (its dynamic
energy; per layer in ``sam_per_layer``); its work is added to its cores' time and its messages
to the routes and link loads, so it also lengthens the step (and the static energy).

Per inference of ``steps`` steps: energy = mean ``E(t)`` × steps; latency =
(steps + pipeline depth) × mean ``T_step`` (the last input needs the pipeline depth to reach the
output); throughput = 1 / (steps × mean ``T_step``) (pipelined: a new input every ``steps``
steps); EDP = energy × latency. :attr:`CostReport.assumptions` lists every assumption and every
per-event number used, with its source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .accounting import HOST, Activity
from .errors import NeurodeployError, UnsupportedError


@dataclass
class CostReport:
    """Energy and latency of one inference on a target (see the module docstring).

    Energies in joules, times in seconds, per inference (one sample) unless named per step.

    Attributes:
        preset: target name.
        scope: what the target's energy covers (its ``energy_scope``).
        confidence: the target's statement of how far its numbers can be trusted.
        steps: time steps per inference.
        samples: inferences the activity holds.
        pipeline_depth: synapses on the longest path (extra steps in latency).
        energy_per_inference: ``total``, ``dynamic``, ``static``.
        breakdown: ``synaptic``, ``neuron``, ``spike_noc``, ``static`` per inference, and
            ``sam`` (the on-chip SAM accumulator's dynamic energy) when the activity has one.
        energy_per_step: mean per step: ``total``, ``dynamic``, ``static``, ``synaptic``,
            ``neuron``, ``spike_noc`` (and ``sam``).
        time_per_step_s: mean time per step.
        time_breakdown_s: mean per step: ``cores`` (slowest core), ``routing`` (longest
            route), ``congestion``, ``barrier``.
        latency_per_inference_s, throughput_fps, edp_j_s: per inference.
        step_time_s, step_energy_j, step_dynamic_j: per recorded step (one sample).
        per_core: per core ``core``, ``layer``, ``dynamic_j`` (per inference, its messages'
            NoC energy included), ``time_per_step_s`` (mean busy time), ``busy_fraction``;
            cores holding SAM accumulator compartments add ``sam_j`` (its share of
            ``dynamic_j``).
        assumptions: every assumption and per-event number used, as sentences.
        sam_per_layer: SAM layer → dynamic energy of its accumulator per inference (J);
            empty without one.
    """

    preset: str
    scope: str
    confidence: str
    steps: int
    samples: float
    pipeline_depth: int
    energy_per_inference: dict[str, float]
    breakdown: dict[str, float]
    energy_per_step: dict[str, float]
    time_per_step_s: float
    time_breakdown_s: dict[str, float]
    latency_per_inference_s: float
    throughput_fps: float
    edp_j_s: float
    step_time_s: list[float]
    step_energy_j: list[float]
    step_dynamic_j: list[float]
    per_core: list[dict[str, Any]]
    assumptions: list[str] = field(default_factory=list)
    sam_per_layer: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``energy`` and ``latency`` as in the report schema (``energy``:
        ``per_inference_j``, ``breakdown_j``, ``preset``, ``scope``; ``latency``:
        ``time_per_step_s``, ``latency_per_inference_s``, ``throughput_fps``), each with a few
        extra keys, plus ``edp_j_s``, ``per_step``, ``per_core`` and ``assumptions``."""
        energy = {
            "per_inference_j": dict(self.energy_per_inference),
            "breakdown_j": dict(self.breakdown),
            "preset": self.preset,
            "scope": self.scope,
            "mean_per_step_j": dict(self.energy_per_step),
            "confidence": self.confidence,
        }
        if self.sam_per_layer:
            energy["sam_per_layer_j"] = dict(self.sam_per_layer)
        return {
            "energy": energy,
            "latency": {
                "time_per_step_s": self.time_per_step_s,
                "latency_per_inference_s": self.latency_per_inference_s,
                "throughput_fps": self.throughput_fps,
                "time_per_step_breakdown_s": dict(self.time_breakdown_s),
                "steps_per_inference": self.steps,
                "pipeline_depth": self.pipeline_depth,
            },
            "edp_j_s": self.edp_j_s,
            "samples": self.samples,
            "per_step": {"time_s": list(self.step_time_s), "energy_j": list(self.step_energy_j),
                         "dynamic_j": list(self.step_dynamic_j)},
            "per_core": [dict(row) for row in self.per_core],
            "assumptions": list(self.assumptions),
        }


# ------------------------------------------------------------------------------ helpers


def _link_loads(activity: Activity) -> np.ndarray:
    """``(steps,)`` messages crossing the busiest tile boundary (both directions together)
    under XY routing: along x on the source row, then along y on the destination column
    (the SAM accumulator's messages included)."""
    tiles = activity.core_tile
    route_ids: list[int] = []
    link_ids: list[int] = []
    links: dict[tuple[str, int, int], int] = {}
    src, dst, messages = activity.route_src, activity.route_dst, activity.route_messages
    if activity.sam is not None:
        src = np.concatenate([src, activity.sam.route_src])
        dst = np.concatenate([dst, activity.sam.route_dst])
        messages = np.concatenate([messages, activity.sam.route_messages], axis=1)
    for r, (a, b) in enumerate(zip(src, dst)):
        if a == HOST:
            continue
        (xa, ya), (xb, yb) = tiles[a], tiles[b]
        crossed = [("h", x, int(ya)) for x in range(min(xa, xb), max(xa, xb))]
        crossed += [("v", int(xb), y) for y in range(min(ya, yb), max(ya, yb))]
        for link in crossed:
            route_ids.append(r)
            link_ids.append(links.setdefault(link, len(links)))
    steps = messages.shape[0]
    if not links:
        return np.zeros(steps)
    rid, lid = np.asarray(route_ids), np.asarray(link_ids)
    loads = np.stack([np.bincount(lid, weights=messages[t, rid].astype(float),
                                  minlength=len(links)) for t in range(steps)])
    return loads.max(axis=1)


def _pj(value: float) -> str:
    return f"{value * 1e12:g} pJ"


def _ns(value: float) -> str:
    return f"{value * 1e9:g} ns"


def _check(activity: Activity, mapping: Any, target: Any, steps: int | None,
           samples: float | None) -> tuple[int, float]:
    if not isinstance(activity, Activity):
        raise NeurodeployError("estimate needs an Activity (Accountant.result())")
    if not getattr(target, "is_neuromorphic", False):
        raise UnsupportedError(f"target {getattr(target, 'name', target)} is not a neuromorphic "
                               "target; cost SNN activity on loihi1, loihi1-sanafe or loihi2")
    res = target.resources
    same = (mapping.target == target.name
            and dict(mapping.limits) == {
                "neurons": res["neurons_per_core"],
                "synaptic_memory_bits": res["synaptic_memory_bits_per_core"],
                "input_axons": res["input_axons_per_core"],
                "output_axons": res["output_axons_per_core"]}
            and tuple(mapping.mesh_tiles) == tuple(res["mesh_tiles"])
            and mapping.cores_per_tile == res["cores_per_tile"])
    if not same:
        raise NeurodeployError(
            f"the mapping was made for target {mapping.target} ({target.name} at "
            f"{target.path} has other cores or mesh); map the graph for this target and count "
            "again")
    if activity.target != mapping.target or activity.cores != mapping.cores_used:
        raise NeurodeployError(
            f"the activity was counted on a mapping of {activity.cores} cores for "
            f"{activity.target}, this mapping has {mapping.cores_used} cores for "
            f"{mapping.target}; count the run with an Accountant of this mapping")
    total = activity.steps * activity.samples
    if steps is None:
        steps = activity.steps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise NeurodeployError(f"steps per inference must be a positive integer, got {steps!r}")
    if samples is None:
        samples = total / steps
    if not isinstance(samples, (int, float, np.integer, np.floating)) or isinstance(
            samples, bool) or not math.isfinite(samples) or samples <= 0:
        raise NeurodeployError(f"samples must be a positive number, got {samples!r}")
    if abs(steps * samples - total) > 1e-9 * total:
        raise NeurodeployError(
            f"{samples} inferences of {steps} steps do not match the activity's "
            f"{activity.samples} samples x {activity.steps} steps; give steps and samples whose "
            "product is the steps observed")
    return int(steps), float(samples)


# ------------------------------------------------------------------------------ estimate


def estimate(activity: Activity, mapping: Any, target: Any, *, steps: int | None = None,
             samples: float | None = None, drained: bool = False) -> CostReport:
    """Energy, time per step, latency, throughput and EDP of ``activity`` on ``target``.

    Args:
        activity: counts from :meth:`neurodeploy.accounting.Accountant.result`.
        mapping: the :class:`~neurodeploy.mapping.Mapping` the activity was counted on (made
            for ``target``).
        target: a neuromorphic :class:`~neurodeploy.targets.Target`.
        steps: time steps per inference (default: the activity's steps per run).
        samples: inferences the activity holds (default: samples × steps per run / ``steps``);
            ``steps × samples`` must equal the activity's sample-steps.
        drained: each inference's ``steps`` already include the pipeline drain (runs of
            ``T + D`` steps with the staggered reset, :mod:`neurodeploy.inference`): latency
            is ``steps`` steps and inferences run one after the other (no overlap).

    Raises :class:`NeurodeployError` (or :class:`UnsupportedError` for ANN targets) when the
    inputs do not belong together.
    """
    steps, samples = _check(activity, mapping, target, steps, samples)
    en, tm = target.energy, target.time
    n_s = float(activity.samples)
    act = activity.active_updates / n_s  # (T, C) per sample
    inact = activity.inactive_updates / n_s
    out = activity.output_spikes / n_s
    into = activity.input_spikes / n_s
    syn = {enc: arr / n_s for enc, arr in activity.syn_ops.items()}

    # energy per step per core
    e_syn = sum(arr * target.syn_op_energy(enc) for enc, arr in syn.items())
    e_syn = np.zeros_like(act) + e_syn
    e_neu = act * en["neuron_update_active"] + inact * en["neuron_update_inactive"]
    e_out = out * en["spike_out"]
    msgs = activity.route_messages / n_s  # (T, R)
    core_route = activity.route_src != HOST
    per_msg_e = (en["local_spike"] + activity.route_hops_ew * en["hop_ew"]
                 + activity.route_hops_ns * en["hop_ns"]) * core_route
    e_noc_route = msgs * per_msg_e  # (T, R)
    e_noc = e_noc_route.sum(axis=1)
    e_noc_core = np.zeros_like(act)  # charged to the sending core
    np.add.at(e_noc_core.T, activity.route_src[core_route], e_noc_route[:, core_route].T)

    # time per step
    t_core = sum(arr * target.syn_op_time(enc) for enc, arr in syn.items())
    t_core = (np.zeros_like(act) + t_core + act * tm["neuron_update_active"]
              + inact * tm["neuron_update_inactive"] + out * tm["spike_out"]
              + into * tm["message_in"])
    per_msg_t = (tm["local_spike"] + activity.route_hops_ew * tm["hop_ew"]
                 + activity.route_hops_ns * tm["hop_ns"])
    used = (activity.route_messages > 0) & core_route[None, :]
    t_route = np.where(used, per_msg_t[None, :], 0.0).max(axis=1, initial=0.0)
    sam = _sam_costs(activity, target) if activity.sam is not None else None
    if sam is not None:
        t_core = t_core + sam["t_core"]
        t_route = np.maximum(t_route, sam["t_route"])
    t_cong = _link_loads(activity) / n_s / float(tm["link_bandwidth"])
    barrier = target.barrier_time(activity.tiles_used, activity.chips_used)
    t_cores = t_core.max(axis=1, initial=0.0)
    t_step = t_cores + t_route + t_cong + barrier
    p_static = float(en["static_power_per_chip"]) * activity.chips_used
    e_static = p_static * t_step

    parts = {"synaptic": e_syn.sum(axis=1), "neuron": e_neu.sum(axis=1),
             "spike_noc": e_out.sum(axis=1) + e_noc, "static": e_static}
    dynamic = parts["synaptic"] + parts["neuron"] + parts["spike_noc"]
    names = ["synaptic", "neuron", "spike_noc", "static"]
    if sam is not None:
        parts["sam"] = sam["e_step"]
        dynamic = dynamic + parts["sam"]
        names.insert(3, "sam")
    mean = {k: float(v.mean()) for k, v in parts.items()}
    mean_dyn = float(dynamic.mean())
    per_step = {"total": mean_dyn + mean["static"], "dynamic": mean_dyn,
                "static": mean["static"], "synaptic": mean["synaptic"],
                "neuron": mean["neuron"], "spike_noc": mean["spike_noc"]}
    if sam is not None:
        per_step["sam"] = mean["sam"]
    per_inf = {"total": per_step["total"] * steps, "dynamic": mean_dyn * steps,
               "static": mean["static"] * steps}
    breakdown = {k: mean[k] * steps for k in names}
    t_mean = float(t_step.mean())
    latency = (steps + (0 if drained else activity.pipeline_depth)) * t_mean
    throughput = 1.0 / (steps * t_mean) if t_mean > 0 else math.inf
    e_all = e_syn + e_neu + e_out + e_noc_core
    if sam is not None:
        e_all = e_all + sam["e_core"]
    e_core = e_all.mean(axis=0) * steps
    t_core_mean = t_core.mean(axis=0)
    per_core = [{"core": c, "layer": activity.core_layer[c], "dynamic_j": float(e_core[c]),
                 "time_per_step_s": float(t_core_mean[c]),
                 "busy_fraction": float(t_core_mean[c] / t_mean) if t_mean > 0 else 0.0}
                for c in range(activity.cores)]
    sam_layers: dict[str, float] = {}
    if sam is not None:
        sam_core = sam["e_core"].mean(axis=0) * steps
        layer_arr = np.asarray(activity.core_layer)
        for c, row in enumerate(per_core):
            if activity.sam.compartments[c]:  # type: ignore[union-attr]
                row["sam_j"] = float(sam_core[c])
        sam_layers = {name: float(sam_core[layer_arr == name].sum())
                      for name in activity.sam.layers}  # type: ignore[union-attr]
    return CostReport(
        preset=target.name, scope=target.energy_scope, confidence=target.confidence,
        steps=steps, samples=samples, pipeline_depth=activity.pipeline_depth,
        energy_per_inference=per_inf, breakdown=breakdown, energy_per_step=per_step,
        time_per_step_s=t_mean,
        time_breakdown_s={"cores": float(t_cores.mean()), "routing": float(t_route.mean()),
                          "congestion": float(t_cong.mean()), "barrier": float(barrier)},
        latency_per_inference_s=latency, throughput_fps=throughput,
        edp_j_s=per_inf["total"] * latency,
        step_time_s=t_step.tolist(), step_energy_j=(dynamic + e_static).tolist(),
        step_dynamic_j=dynamic.tolist(), per_core=per_core,
        assumptions=_assumptions(activity, mapping, target, steps, drained),
        sam_per_layer=sam_layers,
    )


def _sam_costs(activity: Activity, target: Any) -> dict[str, np.ndarray]:
    """The SAM accumulator's per-sample energy and time: ``e_core`` ``(T, C)`` (its events on
    each core, its messages' NoC energy charged to the sending core), ``e_step`` ``(T,)``,
    ``t_core`` ``(T, C)`` (its work on each core) and ``t_route`` ``(T,)`` (longest of its
    routes used)."""
    from .sam import SAM_ENCODING

    sa = activity.sam
    assert sa is not None
    en, tm = target.energy, target.time
    n_s = float(activity.samples)
    syn, act, inact = sa.syn_ops / n_s, sa.active_updates / n_s, sa.inactive_updates / n_s
    out, into = sa.output_spikes / n_s, sa.input_spikes / n_s
    e_core = (syn * target.syn_op_energy(SAM_ENCODING) + act * en["neuron_update_active"]
              + inact * en["neuron_update_inactive"] + out * en["spike_out"])
    per_msg = (en["local_spike"] + sa.route_hops_ew * en["hop_ew"]
               + sa.route_hops_ns * en["hop_ns"])
    e_route = sa.route_messages / n_s * per_msg  # (T, R)
    np.add.at(e_core.T, sa.route_src, e_route.T)
    t_core = (syn * target.syn_op_time(SAM_ENCODING) + act * tm["neuron_update_active"]
              + inact * tm["neuron_update_inactive"] + out * tm["spike_out"]
              + into * tm["message_in"])
    per_msg_t = (tm["local_spike"] + sa.route_hops_ew * tm["hop_ew"]
                 + sa.route_hops_ns * tm["hop_ns"])
    t_route = np.where(sa.route_messages > 0, per_msg_t[None, :], 0.0).max(axis=1, initial=0.0)
    return {"e_core": e_core, "e_step": e_core.sum(axis=1), "t_core": t_core,
            "t_route": t_route}


def _assumptions(activity: Activity, mapping: Any, target: Any, steps: int,
                 drained: bool = False) -> list[str]:
    en, tm, src = target.energy, target.time, target.sources

    def cite(key: str) -> str:
        return f" ({src[key]})" if key in src else ""

    encs = sorted(activity.syn_ops)
    syn_e = ", ".join(f"{e} {_pj(target.syn_op_energy(e))}" for e in encs)
    syn_t = ", ".join(f"{e} {_ns(target.syn_op_time(e))}" for e in encs)
    chips, tiles = activity.chips_used, activity.tiles_used
    lines = [
        f"Preset {target.name} ({target.path}); confidence: {target.confidence}.",
        f"Energy scope: {target.energy_scope}.",
        f"Synaptic op energy by encoding: {syn_e}{cite('energy.syn_op')}; time: {syn_t}"
        f"{cite('time.syn_op')}.",
        f"Neuron update energy: active {_pj(en['neuron_update_active'])}, inactive "
        f"{_pj(en['neuron_update_inactive'])}{cite('energy.neuron_update_active')}; time: "
        f"active {_ns(tm['neuron_update_active'])}, inactive "
        f"{_ns(tm['neuron_update_inactive'])}{cite('time.neuron_update_active')}.",
        f"Spike out: {_pj(en['spike_out'])} and {_ns(tm['spike_out'])} per generated spike"
        f"{cite('energy.spike_out')}; message in: {_ns(tm['message_in'])} per message "
        f"received{cite('time.message_in')}.",
        f"NoC: each core-to-core message pays {_pj(en['local_spike'])} + "
        f"{_pj(en['hop_ew'])} per east-west hop + {_pj(en['hop_ns'])} per north-south hop "
        f"(XY routing on the global tile grid){cite('energy.hop_ew')}; route latency "
        f"{_ns(tm['local_spike'])} + {_ns(tm['hop_ew'])} per E-W hop + "
        f"{_ns(tm['hop_ns'])} per N-S hop, the longest route used in a step counting"
        f"{cite('time.hop_ew')}.",
        "Hops between chips are charged as on-chip hops (chips side by side on one grid); "
        "off-chip link energy and latency are not modelled beyond the multi-chip barrier.",
        f"Congestion: messages crossing the busiest tile boundary (both directions) / "
        f"{tm['link_bandwidth']:g} spikes/s{cite('time.link_bandwidth')}.",
        f"Barrier: {_ns(target.barrier_time(tiles, chips))} per step for {tiles} tile(s) on "
        f"{chips} chip(s){cite('time.barrier') if chips == 1 else cite('time.multichip_barrier')}.",
        f"Static power: {en['static_power_per_chip']:g} W per chip x {chips} chip(s) used, over "
        f"each step's duration{cite('energy.static_power_per_chip')}; idle cores of used chips "
        "are included, unused chips are not.",
        "Input events from the host enter at their destination core: they count as messages "
        "received and synaptic ops there, with no NoC energy or route latency (host I/O is "
        "outside the scope); output spikes are read out at no cost.",
        "Every mapped neuron is updated every step; an update is active when the neuron has a "
        "non-zero synaptic input, a non-zero state before or after the update, or spikes.",
        "Synaptic ops: per message, the synapse entries the core stores for that axon (dense: "
        "one per neuron of the core, zeros included; sparse: the non-zero weights; "
        "convolution and pooling: the kernel taps), charged at the encoding's cost.",
        f"Counts are averaged over the {activity.samples} simulated sample(s) before the "
        "slowest core is taken (the time of an average sample, not the mean of per-sample "
        "maxima); the longest route is the longest used by any sample in the step.",
        f"Energy per inference = mean energy per step x {steps} steps; static energy covers "
        "those steps only (in pipelined mode the pipeline's extra steps overlap the next "
        "input).",
        (f"Latency per inference = {steps} steps (input steps plus the pipeline drain of "
         f"{activity.pipeline_depth} steps, each layer reset at the start of its window) x "
         f"mean time per step; throughput = 1 / ({steps} x mean time per step): inferences "
         "run one after the other.") if drained else
        (f"Latency per inference = ({steps} steps + pipeline depth {activity.pipeline_depth}) x "
         "mean time per step (fall-through: the last input needs one step per synapse layer to "
         f"reach the output); throughput = 1 / ({steps} x mean time per step) (pipelined: a "
         "new input every inference's steps)."),
        "Steps run as fast as their work allows (no real-time throttle).",
    ]
    if activity.sam is not None:
        from .sam import SAM_ENCODING

        layers = ", ".join(activity.sam.layers)
        lines.append(
            f"On-chip SAM accumulator on {layers}: its synaptic ops (2 per spike of a traced "
            f"neuron) cost {_pj(target.syn_op_energy(SAM_ENCODING))} each ({SAM_ENCODING} "
            "synapses, one 8-bit weight), its trace and channel-sum updates, read-out spikes "
            "and messages the same per-event numbers as the network's; its dynamic energy is "
            "the breakdown's 'sam' part, and its work lengthens its cores' step time (so the "
            "static energy includes it). Events are counted at the step the traced spike is "
            "emitted (the read-out happens a synaptic delay later on the chip).")
    if target.proxy:
        factors = ", ".join(f"{k} = {v:g}" for k, v in sorted(target.proxy.items()))
        lines.append(f"{target.name}'s per-event numbers are a calibrated proxy ({factors}); "
                     "no per-op energy is published for this chip.")
    lines += [f"Mapping: {w}" for w in getattr(mapping, "warnings", [])]
    return lines


__all__ = ["CostReport", "estimate"]
