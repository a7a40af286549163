"""Deploy Batch Normalization Through Time (BNTT): fold it into a time-invariant BatchNorm, or
split it into a per-step schedule for a programmable neuron.

A :class:`~neurodeploy.ir.BNTT` node applies a different per-channel affine at every time step
(``y = scale[t]·x + shift[t]``, tables of shape ``(T, C)``). Two ways to deploy it:

* **fold** (any target): Loihi's synapses are the same at every step, so :func:`fold_bntt`
  replaces each BNTT by one :class:`~neurodeploy.ir.BatchNorm` whose ``scale``/``shift`` are the
  mean (or median) of the tables over ``t``; the usual
  :func:`~neurodeploy.passes.fold_bn.fold_batchnorm` then moves it into the synapse before it.
  This is exact when every step has the same statistics and an approximation otherwise: the
  report says per layer how far the steps are from the folded value, and
  :func:`bntt_accuracy_change` measures what it costs in accuracy (float simulation before and
  after).
* **schedule** (targets with programmable neurons): :func:`split_bntt` moves a per-channel
  reference factor ``r[c] = max_t |scale[t, c]|`` into the synapse before the BNTT and keeps the
  rest as a :class:`BNTTSchedule` (gain ``scale[t]/r`` in ``[-1, 1]`` and a per-step bias
  current); ``passes.quantize.quantize(..., bntt="schedule")`` turns it into the exact per-step
  gain/bias neuron :class:`~neurodeploy.ir.QCubaBNTT`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import NeurodeployError, UnsupportedError
from ..ir import BNTT, IF, LIF, Affine, BatchNorm, Conv2d, CubaLIF, Graph, I, Linear

#: Statistics a BNTT table can be reduced to.
STATISTICS = ("mean", "median")


@dataclass
class BNTTLayerReport:
    """How far one BNTT layer's per-step tables are from their folded (time-invariant) value.

    Attributes:
        name: the BNTT node (the BatchNorm that replaces it keeps the name).
        timesteps: ``T``, rows of the tables.
        channels: ``C``.
        scale_rel_dev: ``max over t and c of |scale[t,c] − folded[c]| / |folded[c]|`` (0 when
            every step is equal; channels with ``folded[c] == 0`` use the absolute deviation).
        shift_rel_dev: the same for ``shift``.
        scale_rel_dev_per_channel, shift_rel_dev_per_channel: the max over ``t`` per channel,
            ``(C,)`` lists.
    """

    name: str
    timesteps: int
    channels: int
    scale_rel_dev: float
    shift_rel_dev: float
    scale_rel_dev_per_channel: list[float] = field(default_factory=list)
    shift_rel_dev_per_channel: list[float] = field(default_factory=list)


@dataclass
class BNTTReport:
    """Result of :func:`fold_bntt`: the statistic used and one entry per folded BNTT layer
    (layer order). ``accuracy_before``/``accuracy_after`` are filled by
    :func:`bntt_accuracy_change` when it is given the report."""

    statistic: str
    layers: list[BNTTLayerReport] = field(default_factory=list)
    accuracy_before: float | None = None
    accuracy_after: float | None = None

    @property
    def accuracy_change(self) -> float | None:
        """``accuracy_after − accuracy_before`` (fraction, negative = loss), when measured."""
        if self.accuracy_before is None or self.accuracy_after is None:
            return None
        return self.accuracy_after - self.accuracy_before

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["accuracy_change"] = self.accuracy_change
        return out


def _rel_dev(table: np.ndarray, folded: np.ndarray) -> np.ndarray:
    """Per channel ``max_t |table[t] − folded| / |folded|`` (absolute where ``folded == 0``)."""
    dev = np.abs(table - folded[None, :]).max(axis=0)
    denom = np.abs(folded)
    return np.where(denom > 0, dev / np.where(denom > 0, denom, 1.0), dev)


def fold_bntt(graph: Graph, *, statistic: str = "mean") -> tuple[Graph, BNTTReport]:
    """Replace every ``BNTT`` node by a time-invariant ``BatchNorm`` of its tables' statistic.

    Args:
        graph: a float-stage graph (other nodes are kept as they are, edges and metadata too).
        statistic: ``"mean"`` (average over the ``T`` steps) or ``"median"`` (per channel
            median over the steps, robust to a few outlying steps such as the first one).

    Returns:
        ``(graph, report)``: the new graph, where each BNTT ``name`` became ``BatchNorm(scale
        (C,), shift (C,))`` under the same name (run
        :func:`~neurodeploy.passes.fold_bn.fold_batchnorm` next to fold it into the synapse),
        and a :class:`BNTTReport` with per-layer maximum relative deviations (dimensionless).
        A graph without BNTT nodes comes back unchanged with an empty report.

    Raises:
        NeurodeployError: for an unknown ``statistic``.
    """
    if statistic not in STATISTICS:
        raise NeurodeployError(f"statistic={statistic!r} is not one of {', '.join(STATISTICS)}")
    reduce = np.mean if statistic == "mean" else np.median
    report = BNTTReport(statistic=statistic)
    new = dict(graph.nodes)
    for name, node in graph.nodes.items():
        if not isinstance(node, BNTT):
            continue
        scale_t = np.asarray(node.scale, dtype=np.float64)
        shift_t = np.asarray(node.shift, dtype=np.float64)
        scale = reduce(scale_t, axis=0)
        shift = reduce(shift_t, axis=0)
        new[name] = BatchNorm(scale=scale, shift=shift)
        s_dev, b_dev = _rel_dev(scale_t, scale), _rel_dev(shift_t, shift)
        report.layers.append(BNTTLayerReport(
            name=name, timesteps=int(scale_t.shape[0]), channels=int(scale_t.shape[1]),
            scale_rel_dev=float(s_dev.max(initial=0.0)),
            shift_rel_dev=float(b_dev.max(initial=0.0)),
            scale_rel_dev_per_channel=[float(v) for v in s_dev],
            shift_rel_dev_per_channel=[float(v) for v in b_dev],
        ))
    if not report.layers:
        return graph, report
    return Graph(new, graph.edges, graph.metadata), report


@dataclass
class BNTTSchedule:
    """The per-step part of one BNTT layer after :func:`split_bntt` (float, per channel).

    Attributes:
        bntt: name of the BNTT node (removed from the graph).
        synapse: the ``Conv2d``/``Affine``/``Linear`` node before it, now scaled by
            ``reference`` and without bias.
        neuron: the neuron layer it fed (now fed by ``synapse`` directly).
        reference: ``(C,)`` factor moved into the synapse's output channels,
            ``max_t |scale[t, c]|`` (1 for an all-zero channel).
        gain: ``(T, C)`` per-step gain on the synapse's output, ``scale / reference``, in
            ``[-1, 1]``.
        current: ``(T, C)`` per-step input current added after the gain,
            ``scale[t]·bias + shift[t]`` (``bias`` the synapse's bias, 0 when absent), in the
            units of the synapse's output.

    At step ``t`` the neuron's input is ``gain[t]·(synapse output) + current[t]``, which equals
    the BNTT's ``scale[t]·(W x + bias) + shift[t]``.
    """

    bntt: str
    synapse: str
    neuron: str
    reference: np.ndarray
    gain: np.ndarray
    current: np.ndarray

    @property
    def timesteps(self) -> int:
        return int(self.gain.shape[0])


#: Synapse node types a BNTT schedule can be split from, and neuron types it can feed.
SPLIT_SYNAPSES = (Conv2d, Affine, Linear)
SPLIT_NEURONS = (LIF, IF, CubaLIF, I)


def split_problems(graph: Graph) -> list[str]:
    """One line per ``BNTT`` node :func:`split_bntt` cannot split (empty when all can): each
    must follow a ``Conv2d``/``Affine``/``Linear`` that feeds only it and feed one neuron layer
    (``LIF``, ``IF``, ``CubaLIF`` or ``I``) that has no other input."""
    problems = []
    for name, node in graph.nodes.items():
        if not isinstance(node, BNTT):
            continue
        label = f"{name} (BNTT)"
        preds, succs = graph.predecessors(name), graph.successors(name)
        if len(preds) != 1 or not isinstance(graph.nodes[preds[0]], SPLIT_SYNAPSES):
            kinds = ", ".join(f"{p} ({graph.nodes[p].type_name})" for p in preds) or "nothing"
            problems.append(f"{label}: follows {kinds}; a per-step schedule needs a BNTT right "
                            "after one Conv2d, Affine or Linear")
        elif graph.successors(preds[0]) != [name]:
            problems.append(f"{label}: its synapse {preds[0]} also feeds other nodes, which "
                            "would see the BNTT's reference scale")
        if len(succs) != 1 or not isinstance(graph.nodes[succs[0]], SPLIT_NEURONS) or \
                len(graph.predecessors(succs[0])) != 1:
            kinds = ", ".join(f"{s} ({graph.nodes[s].type_name})" for s in succs) or "nothing"
            problems.append(f"{label}: feeds {kinds}; a per-step schedule lives in the neuron, "
                            "so the BNTT must feed exactly one LIF, IF, CubaLIF or I layer that "
                            "has no other input")
    return problems


def split_bntt(graph: Graph) -> tuple[Graph, dict[str, BNTTSchedule]]:
    """Split every ``BNTT`` into a reference scale folded into its synapse and a per-step
    schedule kept for its neuron layer (see :class:`BNTTSchedule`).

    Args:
        graph: a float-stage graph where each BNTT sits between a ``Conv2d``/``Affine``/
            ``Linear`` and a neuron layer (the zoo's ``conv → BNTT → LIF``).

    Returns:
        ``(graph, schedules)``: the graph without BNTT nodes (each synapse's output channels
        scaled by ``reference`` and its bias removed; node names, order and the other edges
        kept), and the schedules by neuron name. A graph without BNTT comes back unchanged with
        ``{}``.

    Raises:
        UnsupportedError: listing every BNTT that cannot be split (:func:`split_problems`).
    """
    problems = split_problems(graph)
    if problems:
        raise UnsupportedError("cannot split BNTT into per-step schedules: "
                               + "; ".join(problems))
    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    schedules: dict[str, BNTTSchedule] = {}
    for name, node in graph.nodes.items():
        if not isinstance(node, BNTT):
            continue
        (syn,), (neuron,) = graph.predecessors(name), graph.successors(name)
        scale = np.asarray(node.scale, dtype=np.float64)
        shift = np.asarray(node.shift, dtype=np.float64)
        ref = np.abs(scale).max(axis=0)
        ref = np.where(ref > 0, ref, 1.0)
        snode = nodes[syn]
        weight = np.asarray(snode.weight, dtype=np.float64)
        weight = weight * ref.reshape((-1,) + (1,) * (weight.ndim - 1))
        bias = getattr(snode, "bias", None)
        bias = np.zeros(scale.shape[1]) if bias is None else np.asarray(bias, dtype=np.float64)
        if isinstance(snode, Affine):
            nodes[syn] = Affine(weight=weight, bias=np.zeros_like(bias))
        else:
            nodes[syn] = snode.replace(weight=weight, **(
                {"bias": None} if isinstance(snode, Conv2d) else {}))
        schedules[neuron] = BNTTSchedule(bntt=name, synapse=syn, neuron=neuron, reference=ref,
                                         gain=scale / ref[None, :],
                                         current=scale * bias[None, :] + shift)
        del nodes[name]
        edges[edges.index((name, neuron))] = (syn, neuron)
        edges.remove((syn, name))
    if not schedules:
        return graph, {}
    return Graph(nodes, tuple(edges), graph.metadata).validate(), schedules


def _predict(graph: Graph, x: np.ndarray, steps: int, batch_size: int) -> np.ndarray:
    import torch

    from ..backends import floatsim

    preds = []
    for lo in range(0, x.shape[0], batch_size):
        out = floatsim.forward(graph, torch.as_tensor(x[lo:lo + batch_size]), steps)
        preds.append(out.reshape(out.shape[0], -1).argmax(dim=1).cpu().numpy())
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def bntt_accuracy_change(graph: Graph, x: Any, y: Any, steps: int, *, statistic: str = "mean",
                         batch_size: int = 250, report: BNTTReport | None = None
                         ) -> dict[str, float]:
    """Classification accuracy of ``graph`` in float simulation before and after BNTT folding.

    Args:
        graph: a float-stage SNN with BNTT layers, one output (an ``I`` accumulator whose
            potential after ``steps`` steps is the logits, up to the factor ``1/steps``).
        x: input batch ``(N, *input_shape)`` (direct input) or ``(N, *input_shape, T)``.
        y: integer labels ``(N,)``.
        steps: time steps per sample (at most the BNTT tables' ``T``).
        statistic: passed to :func:`fold_bntt`.
        batch_size: samples per floatsim call.
        report: a :class:`BNTTReport` whose ``accuracy_before``/``accuracy_after`` are filled.

    Returns:
        ``{"before": acc, "after": acc, "change": after − before}``, accuracies as fractions
        in ``[0, 1]``. Folding is followed by ``fold_batchnorm``, so ``after`` is what the
        deployed (time-invariant) network computes.
    """
    from .fold_bn import fold_batchnorm

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    if x.shape[0] != y.shape[0]:
        raise NeurodeployError(f"x has {x.shape[0]} samples but y has {y.shape[0]} labels")
    folded, _ = fold_bntt(graph, statistic=statistic)
    folded = fold_batchnorm(folded)
    before = float(np.mean(_predict(graph, x, steps, batch_size) == y)) if y.size else 0.0
    after = float(np.mean(_predict(folded, x, steps, batch_size) == y)) if y.size else 0.0
    if report is not None:
        report.accuracy_before, report.accuracy_after = before, after
    return {"before": before, "after": after, "change": after - before}
