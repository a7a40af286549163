"""Legalize a fixed-point graph for lava-dl netx: rewrite it into a chain of ``Input``,
``QDense``/``QConv2d`` + ``QCubaLIF`` layers and ``Flatten``, the only structure netx runs.

Rewrites (each one exact in hw_sim's arithmetic, or refused with an
:class:`~neurodeploy.errors.UnsupportedError` naming the node):

* **Pooling.** A ``QSumPool2d`` (``shift(w·Σwindow, e)``) becomes a depthwise ``QConv2d``
  (``groups = C``) whose ``(C, 1, kh, kw)`` kernel holds ``w`` everywhere, same stride, padding
  and exponent: the same sum per output, bit for bit.
* **Residual ``Add`` and ``Concat``: relay neurons.** In a 2-layer residual block ::

      src ─ synA ─ n1 ─ synB ─┐
        └───────── synS ──────Add ─ n2

  the skip path has one synapse hop and the main path two, so in the fixed graph (one step of
  delay per synapse) the skip current reaches ``n2`` one step *earlier* than the main path's,
  unlike the float graph, where both arrive in the same step. Legalization carries the skip
  path through **relay** channels appended to ``n1``'s layer::

      src ─ synA' ─ n1' ─ synB' ─ n2        synA' = [synA ; r·identity]
                                            n1'   = [n1 ; relays]   (one QCubaLIF layer)
                                            synB' = [synB | synS]

  A relay channel receives ``r > threshold`` from its source neuron's spike through the
  identity rows of ``synA'`` and nothing else. The layer must have ``current_decay = 4096``
  (u holds only this step's input) and ``reset = "zero"``; the relays have bias 0. Then a
  relay's potential is 0 before every step, becomes ``64·r > 64·threshold`` exactly when its
  source spiked one step earlier, fires and resets to 0: a one-step copy of binary spikes, and
  every path into ``n2`` now has the same number of synapse hops. ``synB'`` sums both paths in
  one synapse, which is exact when both synapses' effective weights (mantissa·2**exp) are
  integers (always for exponents >= 0) and fit one mantissa/exponent pair.
  A ``Concat(n1, src)`` (DenseNet-style) is rewritten the same way, without ``synS``: ``n1'``
  *is* the concatenation, in the ``Concat``'s channel order.

  **What is and is not preserved.** The legalized graph is *not* spike-for-spike equal to the
  un-legalized fixed graph: they differ exactly in the one-step skew the relays remove. What
  the relays preserve is the float graph's semantics: the legalized graph's spikes of a layer
  at depth ``d`` at step ``t + d`` equal the float graph's at step ``t`` (when quantization
  itself is exact). Relays do not change any node's pipeline depth (the main path was the
  longest already).

``QCubaBNTT`` layers (per-step gain/bias neurons) pass through like ``QCubaLIF``; relays added to
one get gain ``2**gain_exp`` (unity) and bias 0 at every step. They are no netx layer:
``write_netx`` refuses them, so such a graph is legal for hw_sim and the Lava backend only.

Refused (``UnsupportedError``): graded (multi-bit) spikes into a relay, a relay weight that
cannot exceed the layer's threshold in the synapse's mantissa range (re-quantize with a lower
``threshold_mant``), spatial geometry a relay cannot copy through (``synA`` must keep ``H, W``
and have a tap at offset 0; ``synS`` must fit in ``synB``'s kernel grid), skips across more than
two synapse hops, joins of layers at equal depth, and anything else netx cannot hold.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from ..ir import (
    Add,
    Concat,
    Flatten,
    Graph,
    Input,
    Node,
    QConv2d,
    QCubaBNTT,
    QCubaLIF,
    QDense,
    QSumPool2d,
)
from ..ir.nodes import DECAY_UNITY, GAIN_MANT_RANGE

#: Node types a legalized graph holds (netx layers: input, dense, conv, flatten).
LEGAL_NODES = (Input, QDense, QConv2d, QCubaLIF, Flatten)
#: Node types legalization accepts.
ACCEPTED_NODES = (*LEGAL_NODES, QSumPool2d, Add, Concat)
_SYN = (QDense, QConv2d)
#: Exponents tried when re-encoding merged weights: non-negative first (Lava's Conv and netx's
#: conv have no exponent), finest first.
_EXP_ORDER = list(range(0, 9)) + list(range(-1, -9, -1))


# ============================================================================================
# Weights
# ============================================================================================


def _lava_mant(node: Node) -> np.ndarray:
    """The mantissas hw_sim/Lava actually use (Dense clips and truncates; Conv does not)."""
    from neurodeploy.ir.nodes import lava_weights

    w = np.asarray(node.weight, dtype=np.int64)
    if isinstance(node, QDense):
        return lava_weights(w, node.num_weight_bits, node.sign_mode)
    return w


def _effective(node: Node) -> np.ndarray | None:
    """Integer effective weights ``mantissa·2**exp``, or None when they are not integers (a
    negative exponent floors the summed input, so such a synapse cannot be merged exactly)."""
    m = _lava_mant(node)
    e = node.weight_exp
    if e >= 0:
        return m << e
    if np.any(m % (1 << -e)):
        return None
    return m >> -e


def _grid(dense: bool, sign_mode: str, bits: int = 8) -> tuple[int, int, int]:
    """(step, lo, hi) of mantissas kept unchanged: Lava's Dense grid, or the conv range."""
    if not dense:
        return 1, -256, 255
    from .quantize import weight_grid

    return weight_grid(bits, sign_mode)


def _sign_mode(values: np.ndarray) -> str:
    if values.size == 0 or values.min() >= 0:
        return "excitatory"
    if values.max() <= 0:
        return "inhibitory"
    return "mixed"


def _encode(eff: np.ndarray, dense: bool, relay: np.ndarray | None, relay_min: int
            ) -> tuple[np.ndarray, int, str] | None:
    """Mantissas, exponent and sign mode (8-bit) representing integer weights ``eff`` exactly,
    with the entries where ``relay`` is True set to the smallest value whose shifted input is at
    least ``relay_min``. None when no exponent fits."""
    relay = np.zeros(eff.shape, dtype=bool) if relay is None else relay
    probe = np.where(relay, relay_min, eff)
    sign = _sign_mode(probe)
    step, lo, hi = _grid(dense, sign)
    for e in _EXP_ORDER:
        if e >= 0:
            if np.any(eff[~relay] % (1 << e)):
                continue
            m = eff >> e
            r = -(-relay_min // (1 << e))  # ceil: shift(r, e) = r·2**e >= relay_min
        else:
            m = eff << -e
            r = relay_min << -e  # floor(r / 2**-e) == relay_min
        r = -(-r // step) * step
        m = np.where(relay, r, m)
        if m.size and (m.min() < lo or m.max() > hi or np.any(m % step)):
            continue
        return m.astype(np.int64), e, sign
    return None


def _shift_ok(m: int, e: int, need: int) -> bool:
    return (m << e if e >= 0 else m >> -e) >= need


# ============================================================================================
# Pooling
# ============================================================================================


def pool_to_conv(node: QSumPool2d, channels: int) -> QConv2d:
    """The depthwise ``QConv2d`` equal to ``node`` on ``channels`` input channels: kernel
    ``(C, 1, kh, kw)`` of ``node.weight``, ``groups = C``, same stride, padding, exponent."""
    kh, kw = node.kernel_size
    weight = np.full((channels, 1, kh, kw), node.weight, dtype=np.int64)
    return QConv2d(weight=weight, stride=node.stride, padding=node.padding, dilation=(1, 1),
                   groups=channels, weight_exp=node.weight_exp, num_weight_bits=8,
                   sign_mode=_sign_mode(weight))


# ============================================================================================
# Relays
# ============================================================================================


def _dense_conv(node: QConv2d) -> np.ndarray:
    """A grouped conv's weight expanded to ``groups = 1`` (block diagonal), effective or raw."""
    w = np.asarray(node.weight, dtype=np.int64)
    if node.groups == 1:
        return w
    out, per, kh, kw = w.shape
    cin = per * node.groups
    full = np.zeros((out, cin, kh, kw), dtype=np.int64)
    opg = out // node.groups
    for o in range(out):
        g = o // opg
        full[o, g * per:(g + 1) * per] = w[o]
    return full


def _identity_tap(node: QConv2d, label: str) -> tuple[int, int]:
    """Kernel tap reading input position == output position (stride 1, H, W kept)."""
    if node.stride != (1, 1):
        raise UnsupportedError(f"{label}: stride {node.stride} changes the map size, so relay "
                               "channels cannot copy the skip path through it")
    tap = []
    for k, p, d in zip(node.weight.shape[2:], node.padding, node.dilation):
        if p % d or not 0 <= p // d < k or 2 * p != d * (k - 1):
            raise UnsupportedError(f"{label}: padding {node.padding} is not 'same' padding for "
                                   f"kernel {tuple(node.weight.shape[2:])}, so relay channels "
                                   "cannot copy the skip path through it")
        tap.append(p // d)
    return tap[0], tap[1]


def _embed(skip: QConv2d, eff: np.ndarray, main: QConv2d, cin: int, label: str) -> np.ndarray:
    """``skip``'s effective kernel ``eff`` placed in ``main``'s kernel grid:
    ``(out, cin, kh, kw)``."""
    if skip.stride != main.stride:
        raise UnsupportedError(f"{label}: skip stride {skip.stride} != main stride "
                               f"{main.stride}; the two synapses cannot be merged")
    w = _dense_conv(skip.replace(weight=eff))
    kb = main.weight.shape[2:]
    out = np.zeros((w.shape[0], cin, *kb), dtype=np.int64)
    idx = []
    for ax in range(2):
        js = np.arange(w.shape[2 + ax])
        num = main.padding[ax] - skip.padding[ax] + js * skip.dilation[ax]
        i = num // main.dilation[ax]
        if np.any(num % main.dilation[ax]) or i.min() < 0 or i.max() >= kb[ax]:
            raise UnsupportedError(
                f"{label}: the skip kernel (padding {skip.padding}, dilation {skip.dilation}) "
                f"does not fit the main kernel grid {tuple(kb)} (padding {main.padding}, "
                f"dilation {main.dilation}); the synapses cannot be merged")
        idx.append(i)
    out[:, :, idx[0][:, None], idx[1][None, :]] = w
    return out


def _relay_synapse(syn: Node, src_channels: int, order: str, n1: QCubaLIF, n1_name: str,
                   label: str) -> Node:
    """``syn`` with identity relay rows appended (``order="after"``) or prepended."""
    need = n1.threshold + 1
    dense = isinstance(syn, QDense)
    if dense:
        rel = np.eye(src_channels, dtype=np.int64)
        base = np.asarray(syn.weight, dtype=np.int64)
    else:
        i0, j0 = _identity_tap(syn, label)
        base = _dense_conv(syn)
        rel = np.zeros((src_channels, base.shape[1], *base.shape[2:]), dtype=np.int64)
        rel[np.arange(src_channels), np.arange(src_channels), i0, j0] = 1
    rows = [base, rel] if order == "after" else [rel, base]
    mask = [np.zeros(base.shape, bool), rel.astype(bool)]
    mask = mask if order == "after" else mask[::-1]
    # 1) keep the synapse's own encoding; the relay mantissa uses its exponent and grid
    sign = syn.sign_mode
    if not (dense and sign == "inhibitory"):  # an inhibitory Dense has no positive weights
        step, lo, hi = _grid(dense, sign, syn.num_weight_bits)
        e = syn.weight_exp
        r = -(-need // (1 << e)) if e >= 0 else need << -e
        r = -(-r // step) * step
        if r <= hi and _shift_ok(r, e, need):
            weight = np.concatenate(rows, axis=0)
            weight = np.where(np.concatenate(mask, axis=0), r, weight)
            extra = {} if dense else {"groups": 1}
            return syn.replace(weight=weight, **extra)
    # 2) re-encode the effective weights with a relay value that fits
    eff = _effective(syn)
    if eff is not None:
        eff = eff if dense else _dense_conv(syn.replace(weight=eff))
        full = np.concatenate([eff, rel] if order == "after" else [rel, eff], axis=0)
        enc = _encode(full, dense, np.concatenate(mask, axis=0), need)
        if enc is not None:
            m, e, sign = enc
            extra = {} if dense else {"groups": 1}
            return syn.replace(weight=m, weight_exp=e, num_weight_bits=8, sign_mode=sign,
                               **extra)
    raise UnsupportedError(
        f"{label}: relay neurons need a weight above the threshold {n1.threshold} of layer "
        f"{n1_name} with weight_exp={syn.weight_exp}, which an 8-bit mantissa cannot reach "
        "exactly; re-quantize with a lower threshold_mant (e.g. 128)")


def _merge_synapses(main: Node, skip: Node, n1_channels: int, src_channels: int, order: str,
                    label: str) -> Node:
    """One synapse reading ``[n1 ; relays]`` (or ``[relays ; n1]``) equal to main + skip."""
    if type(main) is not type(skip):
        raise UnsupportedError(f"{label}: main synapse {main.type_name} and skip synapse "
                               f"{skip.type_name} differ in kind; they cannot be merged")
    eff_m, eff_s = _effective(main), _effective(skip)
    if eff_m is None or eff_s is None:
        raise UnsupportedError(
            f"{label}: a negative weight exponent floors each synapse's sum separately, so "
            "main and skip synapses cannot be merged exactly; quantize with lava_compatible=True "
            "or weights whose mantissas are multiples of 2**-exp")
    dense = isinstance(main, QDense)
    if dense:
        parts = [eff_m, eff_s]
    else:
        parts = [_dense_conv(main.replace(weight=eff_m)),
                 _embed(skip, eff_s, main, src_channels, label)]
    full = np.concatenate(parts if order == "after" else parts[::-1], axis=1)
    enc = _encode(full, dense, None, 0)
    if enc is None:
        raise UnsupportedError(f"{label}: the merged main and skip weights span "
                               f"[{full.min()}, {full.max()}], which no 8-bit mantissa and "
                               "exponent represent exactly")
    m, e, sign = enc
    extra = {} if dense else {"groups": 1}
    return main.replace(weight=m, weight_exp=e, num_weight_bits=8, sign_mode=sign, **extra)


def _relay_layer(n1: QCubaLIF, n1_shape: tuple[int, ...], src_channels: int, order: str,
                 label: str) -> QCubaLIF:
    problems = []
    if n1.current_decay != DECAY_UNITY:
        problems.append(f"current_decay={n1.current_decay} (relays need 4096: u must hold only "
                        "this step's input)")
    if n1.reset != "zero":
        problems.append(f"reset={n1.reset!r} (relays need 'zero')")
    if problems:
        raise UnsupportedError(f"{label}: relay channels would share the neuron parameters of "
                               f"this layer, which has {' and '.join(problems)}")
    if isinstance(n1, QCubaBNTT):
        return _relay_schedule(n1, src_channels, order, label)
    rest = n1_shape[1:]
    bias = np.broadcast_to(np.asarray(n1.bias, dtype=np.int64), n1_shape)
    zeros = np.zeros((src_channels, *rest), dtype=np.int64)
    full = np.concatenate([bias, zeros] if order == "after" else [zeros, bias], axis=0)
    if not np.any(full):
        full = np.zeros((), dtype=np.int64)
    return n1.replace(bias=full)


def _relay_schedule(n1: QCubaBNTT, src_channels: int, order: str, label: str) -> QCubaBNTT:
    """A QCubaBNTT layer with relay channels: unity gain ``2**gain_exp`` (``a' = a`` exactly)
    and bias 0 at every step."""
    unity = 1 << n1.gain_exp
    if unity > GAIN_MANT_RANGE[1]:
        raise UnsupportedError(f"{label}: relay channels need the unity gain 2**gain_exp, which "
                               f"gain_exp={n1.gain_exp} puts outside the 16-bit gain mantissa; "
                               "re-quantize with gain_exp <= 14")
    steps = n1.timesteps
    gain = np.full((steps, src_channels), unity, dtype=np.int64)
    bias = np.zeros((steps, src_channels), dtype=np.int64)
    gains = [n1.gain, gain] if order == "after" else [gain, n1.gain]
    biases = [n1.bias, bias] if order == "after" else [bias, n1.bias]
    return n1.replace(gain=np.concatenate(gains, axis=1), bias=np.concatenate(biases, axis=1))


def _only(items: list[str]) -> str | None:
    return items[0] if len(items) == 1 else None


def _find_block(graph: Graph, join: str) -> tuple[str, str, str, str | None, str | None, str]:
    """For a join (Add or Concat), ``(src, synA, n1, synB, synS, order)``: ``order`` is
    ``"after"`` when the relays follow n1's channels."""
    node = graph.nodes[join]
    label = f"{join} ({node.type_name})"
    preds = graph.predecessors(join)
    if len(preds) != 2:
        raise UnsupportedError(f"{label}: joins {len(preds)} inputs; legalization handles two "
                               "(a residual block or a skip concatenation)")
    nodes = graph.nodes
    if isinstance(node, Add):
        # each operand is a synapse; the main one reads a neuron n1 fed by synA from src
        cands = []
        for k, p in enumerate(preds):
            q = preds[1 - k]
            if not isinstance(nodes[p], _SYN) or not isinstance(nodes[q], _SYN):
                raise UnsupportedError(f"{label}: adds {p} and {q}; both must be QDense/QConv2d "
                                       "synapses (pooling into an Add is not supported)")
            n1 = graph.predecessors(p)[0]
            src = graph.predecessors(q)[0]
            if isinstance(nodes[n1], QCubaLIF):
                syn_a = _only(graph.predecessors(n1))
                if syn_a and isinstance(nodes[syn_a], _SYN) and \
                        graph.predecessors(syn_a)[0] == src:
                    cands.append((src, syn_a, n1, p, q, "after"))
        if not cands:
            raise UnsupportedError(
                f"{label}: not a 2-layer residual block (src → synapse → neuron → synapse, plus "
                "src → synapse, into the Add); skips over more or fewer layers need relays "
                "through several layers, which legalization does not build yet")
        return cands[0]
    # Concat of a neuron layer n1 and the source src it is computed from
    for k, n1 in enumerate(preds):
        src = preds[1 - k]
        if not isinstance(nodes[n1], QCubaLIF):
            continue
        syn_a = _only(graph.predecessors(n1))
        if syn_a and isinstance(nodes[syn_a], _SYN) and graph.predecessors(syn_a)[0] == src:
            return src, syn_a, n1, None, None, "after" if k == 0 else "before"
    raise UnsupportedError(
        f"{label}: concatenates {preds[0]} and {preds[1]}, which are not a neuron layer and the "
        "source one synapse before it; only such skip concatenations can be relayed")


def _rewrite_join(graph: Graph, join: str) -> tuple[Graph, str]:
    node = graph.nodes[join]
    label = f"{join} ({node.type_name})"
    src, syn_a, n1, syn_b, syn_s, order = _find_block(graph, join)
    shapes = graph.shapes
    nodes = graph.nodes
    if (graph.message_bits(src) or 0) > 0:
        raise UnsupportedError(f"{label}: the skip source {src} sends graded spikes; relay "
                               "neurons copy binary spikes only")
    if graph.successors(n1) != [syn_b if syn_b else join] or graph.successors(syn_a) != [n1]:
        raise UnsupportedError(f"{label}: layer {n1} also feeds other nodes, which would see "
                               "the relay channels")
    src_shape, n1_shape = shapes[src], shapes[n1]
    if len(src_shape) != len(n1_shape) or src_shape[1:] != n1_shape[1:]:
        raise UnsupportedError(f"{label}: skip source {src} {src_shape} and layer {n1} "
                               f"{n1_shape} differ in map size; relays cannot be carried in {n1}")
    c0 = src_shape[0]
    new_a = _relay_synapse(nodes[syn_a], c0, order, nodes[n1], n1, f"{syn_a} ({label})")
    new_n1 = _relay_layer(nodes[n1], n1_shape, c0, order, f"{n1} ({label})")
    new_nodes = dict(nodes)
    new_nodes[syn_a], new_nodes[n1] = new_a, new_n1
    edges = list(graph.edges)
    if syn_b is not None and syn_s is not None:  # Add
        new_nodes[syn_b] = _merge_synapses(nodes[syn_b], nodes[syn_s], n1_shape[0], c0, order,
                                           label)
        del new_nodes[join], new_nodes[syn_s]
        consumers = graph.successors(join)
        edges = [(a, b) for a, b in edges if join not in (a, b) and syn_s not in (a, b)]
        edges += [(syn_b, c) for c in consumers]
        note = (f"{join}: skip {syn_s} merged into {syn_b}, source {src} relayed through "
                f"{c0} channels of {n1}")
    else:
        consumers = graph.successors(join)
        del new_nodes[join]
        edges = [(a, b) for a, b in edges if join not in (a, b)]
        edges += [(n1, c) for c in consumers]
        note = f"{join}: source {src} relayed through {c0} channels of {n1}"
    # keep edge order of multi-input consumers stable by rebuilding in the original order
    return Graph(new_nodes, tuple(dict.fromkeys(edges)), graph.metadata).validate(), note


# ============================================================================================
# The pass
# ============================================================================================


def legalize(fixed_graph: Graph) -> Graph:
    """A graph equivalent to ``fixed_graph`` that lava-dl netx can hold and run.

    Args:
        fixed_graph: a fixed-point graph (``Input``, ``QDense``, ``QConv2d``, ``QSumPool2d``,
            ``QCubaLIF``, ``Flatten``, ``Add``, ``Concat``), e.g. from
            :func:`~neurodeploy.passes.quantize.quantize`.

    Returns:
        A chain of ``Input``, ``QDense``/``QConv2d`` + ``QCubaLIF`` and ``Flatten`` nodes. Node
        names are kept (removed skip synapses and joins disappear); ``metadata["legalized"]``
        lists the rewrites. Pool rewrites are exact against ``fixed_graph``; relay rewrites
        remove its one-step skew between paths and match the float graph aligned by depth
        (see the module docstring). Spike shapes of kept neuron layers that gained relays grow
        by the relayed channels (relays come after the layer's own channels, or before them
        when a ``Concat`` lists the source first).

    Raises:
        UnsupportedError: naming the node when a rewrite cannot be exact or the result would
            not be a chain.
    """
    graph = fixed_graph.validate()
    bad = [f"{n} ({node.type_name})" for n, node in graph.nodes.items()
           if not isinstance(node, ACCEPTED_NODES)]
    if bad:
        raise UnsupportedError(
            f"cannot legalize {', '.join(bad)} for netx; legalization takes "
            + ", ".join(t.__name__ for t in ACCEPTED_NODES))
    notes: list[str] = []
    # 1) pools between neuron layers -> depthwise convolutions
    nodes = dict(graph.nodes)
    for name, node in graph.nodes.items():
        if isinstance(node, QSumPool2d):
            c = graph.shapes[graph.predecessors(name)[0]][0]
            nodes[name] = pool_to_conv(node, c)
            notes.append(f"{name}: QSumPool2d -> depthwise QConv2d")
    graph = Graph(nodes, graph.edges, graph.metadata).validate()
    # 2) single-input Concat nodes are identities
    for name, node in list(graph.nodes.items()):
        if isinstance(node, Concat) and len(graph.predecessors(name)) == 1:
            (p,) = graph.predecessors(name)
            rest = {k: v for k, v in graph.nodes.items() if k != name}
            edges = [(a, b) for a, b in graph.edges if name not in (a, b)]
            edges += [(p, c) for c in graph.successors(name)]
            graph = Graph(rest, tuple(edges), graph.metadata).validate()
    # 3) joins -> relays, one at a time in topological order
    while True:
        joins = [n for n in graph.topo_order if isinstance(graph.nodes[n], (Add, Concat))]
        if not joins:
            break
        graph, note = _rewrite_join(graph, joins[0])
        notes.append(note)
    # 4) the result must be a chain of legal nodes
    problems = []
    for name, node in graph.nodes.items():
        if not isinstance(node, LEGAL_NODES):
            problems.append(f"{name} ({node.type_name}): not a netx layer")
        if len(graph.successors(name)) > 1:
            problems.append(f"{name} ({node.type_name}): feeds "
                            f"{', '.join(graph.successors(name))}; netx layers form a chain")
    for name in graph.topo_order:
        node = graph.nodes[name]
        if isinstance(node, _SYN):
            succ = graph.successors(name)
            if len(succ) != 1 or not isinstance(graph.nodes[succ[0]], QCubaLIF):
                problems.append(f"{name} ({node.type_name}): a netx synapse layer needs one "
                                "neuron layer right after it")
        if isinstance(node, QCubaLIF):
            pred = graph.predecessors(name)
            if len(pred) != 1 or not isinstance(graph.nodes[pred[0]], (*_SYN, Input)):
                problems.append(f"{name} (QCubaLIF): must follow one synapse (or the input)")
    if problems:
        raise UnsupportedError("cannot legalize for netx: " + "; ".join(problems))
    # keep layer order = topological order for netx
    order = graph.topo_order
    out = Graph({n: graph.nodes[n] for n in order}, graph.edges,
                {**dict(graph.metadata), "legalized": notes})
    return out.validate()


def legalize_or_keep(fixed_graph: Graph) -> tuple[Graph, str | None]:
    """``(legalize(fixed_graph), None)`` when netx can hold the network, else
    ``(fixed_graph, reason)``: the quantized graph unchanged (hw_sim, Lava and the mapping
    run it as it is; only the netx export needs the rewrite) and a one-line warning."""
    try:
        return legalize(fixed_graph), None
    except UnsupportedError as err:
        return fixed_graph, (f"not legalized for netx ({err.message}); the quantized graph "
                             "is deployed as it is (hw_sim, Lava and the mapping run it)")

