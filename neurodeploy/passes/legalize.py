"""Legalize a fixed-point graph for lava-dl netx: rewrite it into a chain of ``Input``,
``QDense``/``QConv2d`` + ``QCubaLIF`` layers and ``Flatten``, the only structure netx runs.

Rewrites (each one exact in hw_sim's arithmetic, or refused with an
:class:`~neurodeploy.errors.UnsupportedError` naming the node):

* **Pooling.** A ``QSumPool2d`` (``shift(w·Σwindow, e)``) becomes a depthwise ``QConv2d``
  (``groups = C``) whose ``(C, 1, kh, kw)`` kernel holds ``w`` everywhere, same stride, padding
  and exponent: the same sum per output, bit for bit.
* **Joins (``Add`` of synapses, ``Concat`` of neuron layers): relay neurons.** Every synapse
  delays by one step, so a join's inputs that come from layers at different pipeline depths
  (:func:`~neurodeploy.simulation.pipeline_depths`) arrive skewed in the fixed graph, unlike
  the float graph, where they arrive in the same step. Legalization removes the skew by a
  reduction, **relay one layer forward, repeatedly**::

      src ─ synA ─ n1 ─ synB ─ n2 ─ … ─ D ─ synD ─┐
        └────────────── synS ─────────────────────Add ─ out

  Take the shallowest operand layer ``src`` and the next neuron layer ``n1`` on the main path
  from ``src`` to the deepest operand layer ``D`` (``n1`` has one input, a synapse ``synA``
  reading ``src``). Append relay channels for ``src``'s channels to ``n1``: identity rows in
  ``synA`` (``synA' = [synA ; r·I]``) and neurons with ``n1``'s parameters and bias 0. Every
  other consumer of ``n1`` reads zeros from the relay channels (zero input channels of a conv,
  grouped ones expanded first; zero columns at the matching flattened positions of a
  ``Flatten`` → dense), so it sees exactly what it saw before. The skip synapse ``synS`` (or
  the ``Concat`` operand) is re-pointed from ``src`` to ``n1``'s relay channels: its weights
  move to the relay slice, with zeros on ``n1``'s other channels. Repeat until every operand
  reads ``D``; then

  - an ``Add``'s N >= 2 synapses merge into one (effective weights ``mantissa·2**exp`` summed
    in one kernel grid and re-encoded as one 8-bit mantissa/exponent pair);
  - a ``Concat``'s layer ``D`` *is* the concatenation: relays follow ``D``'s own channels when
    ``D`` is the ``Concat``'s first operand, else they come before them (the convention that
    :mod:`neurodeploy.verify` and the SAM code use to find a layer's own channels), and the
    ``Concat``'s consumers read ``D`` with their columns moved to where each channel landed
    (unchanged when ``D``'s channel order is the ``Concat``'s).

  **Hops that change the map.** Through a strided conv ``synA`` (stride ``(sy, sx)``,
  dilation 1) ``src``'s channels are relayed in *space-to-depth* form: ``C·sy·sx`` relay
  channels in ``n1``, channel ``(c, i, j)`` at ``(y, x)`` copying ``src[c, sy·y + i, sx·x + j]``
  (its identity row reads channel ``c`` at kernel tap ``(i + pad_y, j + pad_x)``, which must
  exist, and ``n1``'s map times the stride must cover ``src``'s). A conv skip re-pointed to
  them becomes a stride-``s/sy`` conv over the space-to-depth map: tap ``k`` moves to phase
  ``(k - p) mod sy`` and offset ``floor((k - p)/sy)`` (:func:`s2d_taps`; the standard 1×1
  stride-2 pad-0 shortcut becomes a 1×1 stride-1 conv on relays ``(c, 0, 0)``). Through
  ``Flatten`` → dense, ``src``'s ``C·H·W`` values become relay neurons of the dense layer
  (identity rows on the flattened inputs). A dense skip through a ``Flatten`` gets each column
  ``(c, y, x)`` moved to the relay position holding that value. Each relay channel records its
  layout in its origin (``(layer, c, ay, ax, i, j)``: at ``(y, x)`` it holds
  ``layer[c, ay·y + i, ax·x + j]``), so later hops compose: identity hops at the new resolution,
  a second strided hop (space-to-depth of space-to-depth), a Flatten → dense hop.

  A 2-layer residual block is the one-hop case. Relay channels are shared: a layer that
  already relays a channel (for an earlier join) relays it once for every later join. Joins are
  rewritten in topological order, so nested and overlapping blocks reduce one after the other.

  **Why a relay is exact.** A layer that carries relays must have ``current_decay = 4096`` (u
  holds only this step's input) and ``reset = "zero"``; relays have bias 0 (unity gain and
  bias 0 at every step in a ``QCubaBNTT`` layer) and binary output. A relay's potential is 0
  before every step, becomes ``64·r > 64·threshold`` exactly when its source spiked one step
  earlier, fires and resets to 0: a one-step copy of binary spikes. ``r`` is the smallest
  mantissa on the synapse's grid whose shifted value exceeds the threshold (the synapse is
  re-encoded when its exponent cannot reach one). Merging synapses is exact when their
  effective weights are integers (always for exponents >= 0) and their sum fits one
  mantissa/exponent pair.

  **What is and is not preserved.** The legalized graph is *not* spike-for-spike equal to the
  un-legalized fixed graph: they differ exactly in the skew the relays remove. What the relays
  preserve is the float graph's semantics: the legalized graph's spikes of a layer at depth
  ``d`` at step ``t + d`` equal the float graph's at step ``t`` (when quantization itself is
  exact). Relays do not change any node's pipeline depth.

``QCubaBNTT`` layers (per-step gain/bias neurons) pass through like ``QCubaLIF``; relays added to
one get gain ``2**gain_exp`` (unity) and bias 0 at every step. They are no netx layer:
``write_netx`` refuses them, so such a graph is legal for hw_sim and the Lava backend only.

Refused (``UnsupportedError``, one line naming the join and the layers): graded (multi-bit)
spikes into a relay; a relay weight that cannot exceed the layer's threshold in the synapse's
mantissa range (re-quantize with a lower ``threshold_mant``); ``current_decay != 4096``,
``reset != "zero"`` or graded output in a layer that must carry relays; negative exponents
that make merging inexact; geometry a relay cannot copy through (a stride-1 conv without 'same'
padding, a strided conv with dilation != 1, without a kernel tap for every phase or whose output
map does not cover its input, a skip whose stride the hop's stride does not divide or whose
re-pointed conv cannot keep its output size, or skip kernels that do not fit the main kernel
grid); a ``Concat`` operand that would be relayed through a strided conv or a Flatten → dense
hop (rearranged, the layer cannot be the concatenation); joins whose operands come from
*parallel* layers at the same depth (two layers fed from the same source, e.g. a ResNet
projection shortcut with its own neuron layer: they would have to be fused into one layer);
and anything else netx cannot hold. All joins are checked: the error lists every join that cannot be legalized.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
# Channel columns of synapses
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


def _cols(node: Node, in_shape: tuple[int, ...], weight: np.ndarray | None = None
          ) -> np.ndarray:
    """A synapse's weights (or ``weight`` in its layout) with the input channel on axis 1:
    ``(out, C, kh, kw)`` for a conv (groups expanded), ``(out, C, H·W)`` for a dense reading a
    ``(C, H, W)`` layer (PyTorch flatten order) and ``(out, N, 1)`` for one reading ``(N,)``."""
    w = np.asarray(node.weight if weight is None else weight, dtype=np.int64)
    if isinstance(node, QConv2d):
        return _dense_conv(node.replace(weight=w))
    return w.reshape(w.shape[0], in_shape[0], -1)


def _from_cols(node: Node, cols: np.ndarray, **changes) -> Node:
    """``node`` with the columns ``cols`` (layout of :func:`_cols`) as its weight."""
    if isinstance(node, QConv2d):
        return node.replace(weight=cols, groups=1, **changes)
    return node.replace(weight=cols.reshape(cols.shape[0], -1), **changes)


def _move_cols(node: Node, in_shape: tuple[int, ...], src: list[int] | np.ndarray,
               dst: list[int] | np.ndarray, channels: int) -> Node:
    """``node`` reading a layer of ``channels`` channels instead of one of ``in_shape``: input
    channel ``src[k]`` moves to ``dst[k]``; every other input channel gets zero weights (and a
    zero delay)."""
    w = _cols(node, in_shape)
    new = np.zeros((w.shape[0], channels, *w.shape[2:]), dtype=np.int64)
    new[:, dst] = w[:, src]
    changes = {}
    if isinstance(node, QDense) and node.delay is not None:
        d = _cols(node, in_shape, node.delay)
        nd = np.zeros_like(new)
        nd[:, dst] = d[:, src]
        changes["delay"] = nd.reshape(nd.shape[0], -1)
    return _from_cols(node, new, **changes)


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
        raise UnsupportedError(f"{label}: stride {skip.stride} != stride {main.stride} of "
                               "the other synapse; the two synapses cannot be merged")
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
                f"{label}: the kernel (padding {skip.padding}, dilation {skip.dilation}) "
                f"does not fit the kernel grid {tuple(kb)} (padding {main.padding}, "
                f"dilation {main.dilation}) of the other synapse; they cannot be merged")
        idx.append(i)
    out[:, :, idx[0][:, None], idx[1][None, :]] = w
    return out


# ============================================================================================
# Relays
# ============================================================================================


def _relay_synapse(syn: Node, in_shape: tuple[int, ...], rows: np.ndarray, n_rows: int,
                   relay_rows: np.ndarray, relay_cols: np.ndarray, relay_all: np.ndarray,
                   n1: QCubaLIF, n1_name: str, label: str,
                   relay_at: tuple[np.ndarray, ...] | None = None) -> Node:
    """``syn`` (reading a layer of ``in_shape``) with its output rows moved to ``rows`` of
    ``n_rows`` and identity relay rows added: row ``relay_rows[k]`` reads input channel
    ``relay_cols[k]`` with the smallest weight above ``n1``'s threshold. ``relay_all`` marks
    every relay row (earlier ones too: they keep a weight above the threshold if the synapse
    is re-encoded). ``relay_at`` gives each relay row's input position (dense: the flattened
    ``H·W`` index) or kernel tap (conv: two arrays); default the identity tap."""
    need = n1.threshold + 1
    dense = isinstance(syn, QDense)
    raw = _cols(syn, in_shape)

    def place(w: np.ndarray) -> np.ndarray:
        out = np.zeros((n_rows, *w.shape[1:]), dtype=np.int64)
        out[rows] = w
        return out

    ident = np.zeros((n_rows, *raw.shape[1:]), dtype=bool)
    if relay_at is not None:  # per-row position (dense) or kernel tap (conv)
        ident[(relay_rows, relay_cols, *relay_at)] = True
    elif dense:
        ident[relay_rows, relay_cols, 0] = True
    else:
        i0, j0 = _identity_tap(syn, label)
        ident[relay_rows, relay_cols, i0, j0] = True
    base = place(raw)
    all_rows = relay_all.reshape(-1, *([1] * (base.ndim - 1)))
    mask = ident | (all_rows & (base != 0))
    extra = {}
    if dense and syn.delay is not None:
        extra["delay"] = place(_cols(syn, in_shape, syn.delay)).reshape(n_rows, -1)
    if dense and syn.weight_rec is not None:
        rec = np.zeros((n_rows, n_rows), dtype=np.int64)
        rec[np.ix_(rows, rows)] = syn.weight_rec
        extra["weight_rec"] = rec
    # 1) keep the synapse's own encoding; the relay mantissa uses its exponent and grid
    sign = syn.sign_mode
    if not (dense and sign == "inhibitory"):  # an inhibitory Dense has no positive weights
        step, lo, hi = _grid(dense, sign, syn.num_weight_bits)
        e = syn.weight_exp
        r = -(-need // (1 << e)) if e >= 0 else need << -e
        r = -(-r // step) * step
        if r <= hi and _shift_ok(r, e, need):
            return _from_cols(syn, np.where(mask, r, base), **extra)
    # 2) re-encode the effective weights with a relay value that fits
    eff = _effective(syn)
    if eff is not None and "weight_rec" not in extra:
        full = np.where(ident, 1, place(_cols(syn, in_shape, eff)))
        enc = _encode(full, dense, mask, need)
        if enc is not None:
            m, e, sign = enc
            return _from_cols(syn, m, weight_exp=e, num_weight_bits=8, sign_mode=sign, **extra)
    raise UnsupportedError(
        f"{label}: relay neurons need a weight above the threshold {n1.threshold} of layer "
        f"{n1_name} with weight_exp={syn.weight_exp}, which an 8-bit mantissa cannot reach "
        "exactly; re-quantize with a lower threshold_mant (e.g. 128)")


def _carrier_problems(node: Node) -> list[str]:
    """Why relay channels cannot share ``node``'s neuron parameters (empty: they can)."""
    problems = []
    if node.current_decay != DECAY_UNITY:
        problems.append(f"current_decay={node.current_decay} (relays need 4096: u must hold "
                        "only this step's input)")
    if node.reset != "zero":
        problems.append(f"reset={node.reset!r} (relays need 'zero'; quantize with "
                        "allow_hard_reset=True, compile --hard-reset)")
    if node.num_message_bits:
        problems.append(f"num_message_bits={node.num_message_bits} (relays send binary "
                        "spikes)")
    return problems


def _carrier_message(layers: list[str], reason: str) -> str:
    one = len(layers) == 1
    return (f"relay channels in {', '.join(layers)} would share the neuron parameters of "
            f"{'this layer, which has' if one else 'these layers, which have'} {reason}")


def _relay_layer(n1: QCubaLIF, shape: tuple[int, ...], rows: np.ndarray, n_rows: int,
                 name: str) -> QCubaLIF:
    """``n1`` (of ``shape``) with its channels moved to ``rows`` of ``n_rows`` channels and
    relay neurons (bias 0) in the others."""
    problems = _carrier_problems(n1)
    if problems:
        raise UnsupportedError(_carrier_message([name], " and ".join(problems)))
    if isinstance(n1, QCubaBNTT):
        return _relay_schedule(n1, rows, n_rows, name)
    bias = np.broadcast_to(np.asarray(n1.bias, dtype=np.int64), shape)
    full = np.zeros((n_rows, *shape[1:]), dtype=np.int64)
    full[rows] = bias
    if not np.any(full):
        full = np.zeros((), dtype=np.int64)
    return n1.replace(bias=full)


def _relay_schedule(n1: QCubaBNTT, rows: np.ndarray, n_rows: int, name: str) -> QCubaBNTT:
    """A QCubaBNTT layer with relay channels: unity gain ``2**gain_exp`` (``a' = a`` exactly)
    and bias 0 at every step."""
    unity = 1 << n1.gain_exp
    if unity > GAIN_MANT_RANGE[1]:
        raise UnsupportedError(f"{name}: relay channels need the unity gain 2**gain_exp, which "
                               f"gain_exp={n1.gain_exp} puts outside the 16-bit gain mantissa; "
                               "re-quantize with gain_exp <= 14")
    gain = np.full((n1.timesteps, n_rows), unity, dtype=np.int64)
    bias = np.zeros((n1.timesteps, n_rows), dtype=np.int64)
    gain[:, rows] = n1.gain
    bias[:, rows] = n1.bias
    return n1.replace(gain=gain, bias=bias)


# ============================================================================================
# Joins
# ============================================================================================

#: A channel's origin: (layer, channel) of the spikes it carries (its own, or relayed).
Origin = tuple
#   ``(layer, c)``: channel ``c`` of ``layer``, position for position; or
#   ``(layer, c, ay, ax, i, j)``: at position ``(y, x)``, ``layer[c, ay·y + i, ax·x + j]``
#   (space-to-depth relays; ``ay = ax = 0`` for a dense relay of the single value
#   ``layer[c, i, j]``).


def _geo(o: Origin) -> tuple:
    return o if len(o) == 6 else (o[0], o[1], 1, 1, 0, 0)


def _norm(layer: str, c: int, ay: int, ax: int, i: int, j: int) -> Origin:
    return (layer, c) if (ay, ax, i, j) == (1, 1, 0, 0) else (layer, c, ay, ax, i, j)


def _s2d(o: Origin, sy: int, sx: int, a: int, b: int) -> Origin:
    """The origin of relay channel ``(o, a, b)`` of a stride-``(sy, sx)`` hop: at ``(y, x)``
    it holds ``o``'s value at ``(sy·y + a, sx·x + b)``."""
    layer, c, ay, ax, i, j = _geo(o)
    return _norm(layer, c, ay * sy, ax * sx, i + ay * a, j + ax * b)


def _at(o: Origin, y: int, x: int) -> Origin:
    """The origin of the dense relay neuron holding ``o``'s value at ``(y, x)``."""
    layer, c, ay, ax, i, j = _geo(o)
    return _norm(layer, c, 0, 0, ay * y + i, ax * x + j)


def s2d_taps(k: int, p: int, d: int, s: int, h: int, n_in: int | None = None,
             n_out: int | None = None) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """One axis of a conv (kernel ``k``, padding ``p``, dilation ``d``, stride ``s``)
    re-pointed to the space-to-depth form (factor ``h``) of its input.

    Tap ``t`` reads input row ``s·y - p + d·t`` = ``h·(s/h·y + δ) + a`` with phase
    ``a = (d·t - p) mod h`` and offset ``δ = floor((d·t - p)/h)``. Returns ``(a, new tap index
    δ + p', p', k', s/h)``: per-tap phase and tap in a kernel of ``k'`` taps with padding
    ``p'`` and stride ``s/h`` over the space-to-depth map. Raises ``UnsupportedError`` when
    ``h`` does not divide ``s``. With ``n_in`` (the space-to-depth map's size) and ``n_out``
    (the conv's output size), ``p'`` and ``k'`` (trailing zero taps) are chosen so that the new
    conv has ``n_out`` outputs too (``UnsupportedError`` when none does)."""
    if s % h:
        raise UnsupportedError(f"stride {s} is not a multiple of the relay hop's stride {h}")
    off = d * np.arange(k) - p
    a, delta = off % h, off // h
    p0 = max(0, -int(delta.min()))
    s2 = s // h
    if n_in is None or n_out is None:
        return a, delta + p0, p0, int(delta.max()) + p0 + 1, s2
    for p2 in range(p0, p0 + k + 1):
        for k2 in range(int(delta.max()) + p2 + 1, n_in + 2 * p2 + 1):
            if (n_in + 2 * p2 - k2) // s2 + 1 == n_out:
                return a, delta + p2, p2, k2, s2
    raise UnsupportedError(f"no kernel over the {n_in} space-to-depth positions gives the "
                           f"{n_out} outputs of the original conv")


@dataclass
class _State:
    """The graph being legalized, mutable: nodes, ordered edges, and per spike source (input
    or neuron layer) the origin of each of its channels."""

    nodes: dict[str, Node]
    edges: list[tuple[str, str]]
    base: dict[str, tuple[int, ...]]  # shapes before any relay
    depth: dict[str, int]
    before: frozenset[str]  # layers whose relays go before their own channels
    layout: dict[str, list[Origin]] = field(default_factory=dict)
    #: views of Concat operands that stand for an earlier Concat: (concat, layer) -> origins
    alias: dict[tuple[str, str], list[Origin]] = field(default_factory=dict)

    def preds(self, name: str) -> list[str]:
        return [a for a, b in self.edges if b == name]

    def succs(self, name: str) -> list[str]:
        return [b for a, b in self.edges if a == name]

    def own(self, layer: str) -> list[Origin]:
        return [(layer, c) for c in range(self.base[layer][0])]

    def lay(self, layer: str) -> list[Origin]:
        if layer not in self.layout:
            self.layout[layer] = self.own(layer)
        return self.layout[layer]

    def shape(self, layer: str) -> tuple[int, ...]:
        return (len(self.lay(layer)), *self.base[layer][1:])

    def is_source(self, name: str) -> bool:
        return isinstance(self.nodes[name], (Input, QCubaLIF))

    def retarget(self, old: tuple[str, str], new: tuple[str, str]) -> None:
        """Replace edge ``old`` by ``new`` in place (multi-input order is kept)."""
        self.edges = [new if e == old else e for e in self.edges]

    def copy(self) -> _State:
        return _State(dict(self.nodes), list(self.edges), self.base, self.depth, self.before,
                      {k: list(v) for k, v in self.layout.items()}, dict(self.alias))


@dataclass
class _Op:
    """A join operand: the synapse ``name`` of an ``Add`` (reading ``layer``, through
    ``flat`` if set) or a ``Concat``'s operand ``name``; ``origins`` are the channels of
    ``layer`` it reads."""

    name: str
    layer: str
    origins: list[Origin]
    flat: str | None = None


@dataclass
class _Plan:
    ops: list[_Op]
    deep: str  # the deepest operand layer D
    main: str | None  # an Add's operand synapse that reads D (the merged synapse's name)
    chain: dict[int, str]  # depth -> layer on the main path to D
    hops: dict[int, str]  # depth d -> synapse from chain[d] to chain[d + 1]


def _reader(st: _State, syn: str) -> tuple[str, str | None] | None:
    """(layer, flatten) a synapse reads, or None when it reads no spike source."""
    preds = st.preds(syn)
    if len(preds) != 1:
        return None
    q, flat = preds[0], None
    if isinstance(st.nodes[q], Flatten):
        flat, fp = q, st.preds(q)
        if len(fp) != 1:
            return None
        q = fp[0]
    return (q, flat) if st.is_source(q) else None


def _operands(st: _State, join: str) -> tuple[list[_Op], list[str]]:
    node = st.nodes[join]
    ops, problems = [], []
    for p in st.preds(join):
        if isinstance(node, Add):
            src = _reader(st, p) if isinstance(st.nodes[p], _SYN) else None
            if src is None:
                problems.append(f"operand {p} ({st.nodes[p].type_name}) is no QDense/QConv2d "
                                "synapse reading a neuron layer (an Add of spikes or of "
                                "pooled values cannot be relayed)")
                continue
            if st.succs(p) != [join]:
                others = ", ".join(s for s in st.succs(p) if s != join)
                problems.append(f"synapse {p} also feeds {others}")
                continue
            layer, flat = src
            w = _cols(st.nodes[p], st.shape(layer))
            used = np.any(w != 0, axis=tuple(i for i in range(w.ndim) if i != 1))
            origins = [o for o, u in zip(st.lay(layer), used) if u or o[0] == layer]
            ops.append(_Op(p, layer, origins, flat))
        else:
            if (join, p) in st.alias:
                ops.append(_Op(p, p, list(st.alias[(join, p)])))
            elif st.is_source(p):
                ops.append(_Op(p, p, st.own(p)))
            else:
                problems.append(f"operand {p} ({st.nodes[p].type_name}) is no neuron layer")
    if isinstance(node, Concat) and ops:
        seen = [o for op in ops for o in op.origins]
        if len(set(seen)) != len(seen):
            problems.append("concatenates the same channels twice")
    return ops, problems


def _main_chain(st: _State, deep: str) -> tuple[dict[int, str], dict[int, str],
                                                 dict[int, str]]:
    """The main path into ``deep``: layers by depth, the synapse from the layer at depth d to
    the one at d + 1, and the joins it passes (joins that could not be legalized: the path
    follows their deepest operand)."""
    chain, hops, via = {st.depth[deep]: deep}, {}, {}
    cur = deep
    while not isinstance(st.nodes[cur], Input):
        preds = st.preds(cur)
        if len(preds) != 1:
            break
        p = preds[0]
        join = None
        if isinstance(st.nodes[p], Add):
            join = p
            readers = [(st.depth[r[0]], s) for s in st.preds(p)
                       if isinstance(st.nodes[s], _SYN) and (r := _reader(st, s))]
            if not readers:
                break
            p = max(readers)[1]
        if not isinstance(st.nodes[p], _SYN):
            break
        preds = st.preds(p)
        if len(preds) != 1:
            break
        q = preds[0]
        if isinstance(st.nodes[q], Flatten) and len(st.preds(q)) == 1:
            q = st.preds(q)[0]
        if not st.is_source(q) or st.depth[q] != st.depth[cur] - 1:
            break
        d = st.depth[q]
        chain[d], hops[d] = q, p
        if join:
            via[d] = join
        cur = q
    return chain, hops, via


def _param_diff(a: QCubaLIF, b: QCubaLIF) -> list[str]:
    diff = [] if type(a) is type(b) else [f"kind {a.type_name} vs {b.type_name}"]
    for f in ("threshold", "current_decay", "voltage_decay", "reset", "bias_exp",
              "num_message_bits"):
        va, vb = getattr(a, f), getattr(b, f)
        if va != vb:
            diff.append(f"{f} {va!r} vs {vb!r}")
    return diff


def _parallel(st: _State, a: str, b: str) -> str:
    """Why two parallel layers cannot be joined."""
    na, nb = st.nodes[a], st.nodes[b]
    diff = (_param_diff(na, nb) if isinstance(na, QCubaLIF) and isinstance(nb, QCubaLIF)
            else ["one is the input"])
    if st.base[a][1:] != st.base[b][1:]:
        diff.append(f"map size {st.base[a][1:]} vs {st.base[b][1:]}")
    tail = (f"which needs equal neuron parameters and map sizes ({', '.join(diff)})" if diff
            else "which legalization does not do")
    return "parallel layers would have to be fused into one layer, " + tail


def _hop_problems(st: _State, syn: str, src: str, n1: str, via: str | None) -> list[str]:
    """Geometry and wiring problems of relaying ``src``'s channels through ``syn`` into ``n1``
    (``via``: a join between them that could not be legalized)."""
    node = st.nodes[syn]
    a, b = st.base[src], st.base[n1]
    problems = []
    if via is None and st.succs(syn) != [n1]:
        problems.append(f"{syn} feeds {', '.join(st.succs(syn))}, not only {n1}")
    if isinstance(node, QDense):
        pass  # 1-D: identity rows; a flattened map: one relay neuron per value
    elif tuple(node.stride) != (1, 1):
        why = []
        if tuple(node.dilation) != (1, 1):
            why.append(f"dilation {node.dilation} (space-to-depth relays need 1)")
        for ax, (s, p, k) in enumerate(zip(node.stride, node.padding, node.weight.shape[2:])):
            if why and ax == 0 and tuple(node.dilation) != (1, 1):
                break
            if p + s - 1 >= k:
                why.append(f"kernel {tuple(node.weight.shape[2:])} with padding {node.padding} "
                           f"has no tap for phase {s - 1} of stride {s}")
            elif b[1 + ax] * s < a[1 + ax]:
                why.append(f"its {b[1 + ax]} outputs x stride {s} do not cover the "
                           f"{a[1 + ax]} {('rows', 'columns')[ax]} of {src}")
        if why:
            problems.append(f"{syn} has stride {node.stride}: space-to-depth relays cannot "
                            f"carry {src}'s spikes through it ({'; '.join(dict.fromkeys(why))})")
    elif a[1:] != b[1:]:
        problems.append(f"{syn}: the map size changes from {a} to {b}, so relay channels "
                        f"cannot carry {src}'s spikes through it")
    else:
        try:
            _identity_tap(node, syn)
        except UnsupportedError as err:
            problems.append(str(err))
    if via is not None and not problems:
        problems.append(f"{n1} is fed by {via}, which cannot be legalized")
    return problems


def _plan(st: _State, join: str) -> tuple[_Plan | None, list[str]]:
    """How to relay ``join``'s operands to one layer, or every reason it cannot be done."""
    ops, problems = _operands(st, join)
    if problems:
        return None, problems
    layers = list(dict.fromkeys(op.layer for op in ops))
    top = max(st.depth[n] for n in layers)
    deepest = [n for n in layers if st.depth[n] == top]
    if len(deepest) > 1:
        return None, [f"its operands come from {' and '.join(deepest)}, parallel layers at "
                      f"depth {top}; " + _parallel(st, deepest[0], deepest[1])]
    deep = deepest[0]
    chain, hops, via = _main_chain(st, deep)
    carriers: dict[str, list[str]] = {}  # reason -> layers
    for src in sorted((n for n in layers if n != deep), key=lambda n: st.depth[n]):
        d0 = st.depth[src]
        if chain.get(d0) != src:
            other = chain.get(d0)
            problems.append(
                f"skip source {src} (depth {d0}) is parallel to {other} on the main path to "
                f"{deep}: " + _parallel(st, src, other) if other else
                f"skip source {src} (depth {d0}) does not reach {deep} through single-input "
                "layers")
            continue
        if st.nodes[src].num_message_bits:
            problems.append(f"the skip source {src} sends graded spikes; relay neurons copy "
                            "binary spikes only")
        for d in range(d0, top):
            n1 = chain[d + 1]
            problems += _hop_problems(st, hops[d], chain[d], n1, via.get(d))
            if (isinstance(st.nodes[join], Concat) and not problems
                    and _hop_kind(st, hops[d], chain[d]) != "id"):
                how = ("a strided conv" if isinstance(st.nodes[hops[d]], QConv2d)
                       else "Flatten → dense")
                problems.append(
                    f"{src} would be relayed through {hops[d]} ({how}), "
                    f"rearranged (space-to-depth or flattened), so {deep} cannot be the "
                    "concatenation")
            reason = " and ".join(_carrier_problems(st.nodes[n1]))
            if reason and n1 not in carriers.setdefault(reason, []):
                carriers[reason].append(n1)
    if not problems:  # neuron parameters matter once the structure can carry relays
        problems += [_carrier_message(ls, r) for r, ls in carriers.items()]
    main = None
    if isinstance(st.nodes[join], Add):
        main = next(op.name for op in ops if op.layer == deep)
        syns = [st.nodes[op.name] for op in ops]
        kinds = sorted({s.type_name for s in syns})
        if len(kinds) > 1:
            problems.append(f"its synapses are {' and '.join(kinds)}, which cannot be merged")
        if any(_effective(s) is None for s in syns):
            problems.append(
                "a negative weight exponent floors each synapse's sum separately, so the "
                "synapses cannot be merged exactly; quantize with lava_compatible=True or "
                "weights whose mantissas are multiples of 2**-exp")
        rec = [op.name for op, s in zip(ops, syns) if getattr(s, "weight_rec", None) is not None]
        if rec:
            problems.append(f"{', '.join(rec)} hold recurrent weights, which cannot be merged")
    problems = list(dict.fromkeys(problems))
    if problems:
        return None, problems
    return _Plan(ops, deep, main, chain, hops), []


def _widen_consumers(st: _State, layer: str, shape: tuple[int, ...], rows: np.ndarray,
                     channels: int) -> None:
    """Every consumer of ``layer`` (of ``shape``, now ``channels`` channels with the old ones
    at ``rows``) reads zeros from the new channels: it sees what it saw before."""
    old = np.arange(shape[0])
    for s in st.succs(layer):
        node = st.nodes[s]
        if isinstance(node, _SYN):
            st.nodes[s] = _move_cols(node, shape, old, rows, channels)
        elif isinstance(node, Flatten):
            for t in st.succs(s):
                if not isinstance(st.nodes[t], QDense):
                    raise UnsupportedError(f"{t} reads {layer} through {s} and would see the "
                                           f"relay channels added to {layer}")
                st.nodes[t] = _move_cols(st.nodes[t], shape, old, rows, channels)
        elif not isinstance(node, Concat):  # a Concat reads its operands' channels by origin
            raise UnsupportedError(f"{s} ({node.type_name}) reads {layer} and would see the "
                                   f"relay channels added to {layer}")


def _hop_kind(st: _State, syn: str, src: str) -> str:
    """``"id"`` (same map), ``"s2d"`` (a strided conv) or ``"flat"`` (Flatten → dense)."""
    node = st.nodes[syn]
    if isinstance(node, QDense):
        return "flat" if len(st.base[src]) == 3 else "id"
    return "s2d" if tuple(node.stride) != (1, 1) else "id"


def _expand(st: _State, syn: str, src: str, o: Origin) -> list[tuple[Origin, tuple]]:
    """The relay channels of ``n1`` that carry ``src``'s channel ``o`` through ``syn``, each
    with the input position (dense) or kernel tap (conv) of its identity row."""
    node, kind = st.nodes[syn], _hop_kind(st, syn, src)
    if kind == "id":
        return [(o, (0,) if isinstance(node, QDense) else _identity_tap(node, syn))]
    if kind == "flat":
        h, w = st.base[src][1:]
        return [(_at(o, y, x), (y * w + x,)) for y in range(h) for x in range(w)]
    (sy, sx), (py, px) = node.stride, node.padding
    return [(_s2d(o, sy, sx, a, b), (a + py, b + px)) for a in range(sy) for b in range(sx)]


def _relay_hop(st: _State, src: str, syn: str, n1: str, origins: list[Origin]) -> int:
    """Make ``n1`` carry the channels ``origins`` of ``src`` one step after ``src`` (those it
    carries already are reused): as they are through a same-size conv or dense, in
    space-to-depth form through a strided conv, one neuron per value through Flatten → dense.
    Returns the number of relay channels added."""
    lay_src, lay_n1 = st.lay(src), st.lay(n1)
    present = set(lay_n1)
    at = {o: i for i, o in enumerate(lay_src)}
    pos: dict[Origin, tuple[int, tuple]] = {}
    for o in dict.fromkeys(origins):
        for no, where in _expand(st, syn, src, o):
            if no not in present and no not in pos:
                pos[no] = (at[o], where)
    new = list(pos)
    if not new:
        return 0
    old = len(lay_n1)
    if n1 in st.before:
        layout = new + lay_n1
        rows, relay_rows = np.arange(len(new), len(new) + old), np.arange(len(new))
    else:
        layout = lay_n1 + new
        rows, relay_rows = np.arange(old), np.arange(old, old + len(new))
    relay_cols = np.array([pos[o][0] for o in new])
    relay_at = None
    if _hop_kind(st, syn, src) != "id":
        relay_at = tuple(np.array([pos[o][1][ax] for o in new])
                         for ax in range(len(pos[new[0]][1])))
    relay_all = np.array([o[0] != n1 for o in layout])
    shape = st.shape(n1)
    st.nodes[syn] = _relay_synapse(st.nodes[syn], st.shape(src), rows, len(layout), relay_rows,
                                   relay_cols, relay_all, st.nodes[n1], n1, syn, relay_at)
    st.nodes[n1] = _relay_layer(st.nodes[n1], shape, rows, len(layout), n1)
    _widen_consumers(st, n1, shape, rows, len(layout))
    st.layout[n1] = layout
    return len(new)


def _fresh(st: _State, name: str) -> str:
    k, out = 0, name
    while out in st.nodes:
        k += 1
        out = f"{name}_{k}"
    return out


def _repoint_geo(st: _State, op: _Op, n1: str, hop: str) -> None:
    """Re-point an Add operand synapse across a strided-conv (space-to-depth) or Flatten →
    dense hop ``hop``: a conv becomes a conv over the space-to-depth map (stride ``s/h``,
    kernel and padding from :func:`s2d_taps`); a dense through a Flatten gets each column
    ``(c, y, x)`` moved to the relay position that holds that value."""
    src, node = op.layer, st.nodes[op.name]
    kind = _hop_kind(st, hop, src)
    at_src = {o: i for i, o in enumerate(st.lay(src))}
    at_n1 = {o: i for i, o in enumerate(st.lay(n1))}
    h_src, w_src = st.base[src][1:]
    n_out = np.asarray(node.weight).shape[0]
    new_origins: list[Origin] = []
    if isinstance(node, QConv2d):
        if kind != "s2d":
            raise UnsupportedError(f"{op.name}: a conv skip cannot read {n1} through the "
                                   f"Flatten → dense hop {hop}")
        hs, ws = st.nodes[hop].stride
        h1, w1 = st.base[n1][1:]
        size = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
                zip((h_src, w_src), node.padding, node.dilation, node.weight.shape[2:],
                    node.stride)]
        try:
            ty = s2d_taps(node.weight.shape[2], node.padding[0], node.dilation[0],
                          node.stride[0], hs, h1, size[0])
            tx = s2d_taps(node.weight.shape[3], node.padding[1], node.dilation[1],
                          node.stride[1], ws, w1, size[1])
        except UnsupportedError as err:
            raise UnsupportedError(f"{op.name}: cannot read the space-to-depth relays of {n1} "
                                   f"({err.message})") from None
        w = _cols(node, st.shape(src))
        out = np.zeros((n_out, len(at_n1), ty[3], tx[3]), dtype=np.int64)
        for o in op.origins:
            k = at_src[o]
            for a in range(hs):
                for b in range(ws):
                    new_origins.append(_s2d(o, hs, ws, a, b))
            for iy in range(len(ty[0])):
                for ix in range(len(tx[0])):
                    ch = at_n1[_s2d(o, hs, ws, int(ty[0][iy]), int(tx[0][ix]))]
                    out[:, ch, ty[1][iy], tx[1][ix]] += w[:, k, iy, ix]
        size2 = [(n + 2 * t[2] - t[3]) // t[4] + 1 for n, t in zip((h1, w1), (ty, tx))]
        if size != size2:
            raise UnsupportedError(
                f"{op.name}: re-pointed to the space-to-depth relays of {n1}, its output map "
                f"{tuple(size2)} differs from its map {tuple(size)}")
        st.nodes[op.name] = node.replace(weight=out, stride=(ty[4], tx[4]),
                                         padding=(ty[2], tx[2]), dilation=(1, 1), groups=1)
        st.retarget((src, op.name), (n1, op.name))
        op.origins, op.layer = list(dict.fromkeys(new_origins)), n1
        return
    if op.flat is None:
        raise UnsupportedError(f"{op.name} reads {src} without a Flatten")
    n1_shape = st.shape(n1)
    cells = int(np.prod(n1_shape[1:])) if len(n1_shape) == 3 else 1
    hop_node = st.nodes[hop]

    def place(o: Origin, y: int, x: int) -> tuple[int, int]:
        if kind == "flat":
            return at_n1[_at(o, y, x)], 0
        hs, ws = hop_node.stride
        return (at_n1[_s2d(o, hs, ws, y % hs, x % ws)],
                (y // hs) * n1_shape[2] + x // ws)

    def move(arr: np.ndarray) -> np.ndarray:
        cols = _cols(node, st.shape(src), arr)
        out = np.zeros((n_out, len(at_n1), cells), dtype=np.int64)
        for o in op.origins:
            for y in range(h_src):
                for x in range(w_src):
                    ch, p = place(o, y, x)
                    out[:, ch, p] = cols[:, at_src[o], y * w_src + x]
        return out.reshape(n_out, -1)

    for o in op.origins:
        new_origins += [_expand(st, hop, src, o)[k][0]
                        for k in range(len(_expand(st, hop, src, o)))]
    changes = {} if node.delay is None else {"delay": move(node.delay)}
    st.nodes[op.name] = node.replace(weight=move(node.weight), **changes)
    flat = op.flat
    shared = st.succs(flat) != [op.name]
    if kind == "flat":  # n1 is a dense layer: read it directly
        st.retarget((flat, op.name), (n1, op.name))
        if not shared:
            del st.nodes[flat]
            st.edges = [e for e in st.edges if flat not in e]
        op.flat = None
    elif not shared:
        st.retarget((src, flat), (n1, flat))
    else:
        flat2 = _fresh(st, f"{flat}_{n1}")
        st.nodes[flat2] = Flatten()
        st.retarget((flat, op.name), (flat2, op.name))
        st.edges.append((n1, flat2))
        op.flat = flat2
    op.origins, op.layer = list(dict.fromkeys(new_origins)), n1


def _repoint(st: _State, op: _Op, n1: str, hop: str | None = None) -> None:
    """Re-point an Add operand synapse from ``op.layer`` to the channels of ``n1`` that now
    carry its origins (zeros on ``n1``'s other channels)."""
    src = op.layer
    if hop is not None and _hop_kind(st, hop, src) != "id":
        _repoint_geo(st, op, n1, hop)
        return
    at_src = {o: i for i, o in enumerate(st.lay(src))}
    at_n1 = {o: i for i, o in enumerate(st.lay(n1))}
    st.nodes[op.name] = _move_cols(st.nodes[op.name], st.shape(src),
                                   [at_src[o] for o in op.origins],
                                   [at_n1[o] for o in op.origins], len(at_n1))
    if op.flat is None:
        st.retarget((src, op.name), (n1, op.name))
    elif st.succs(op.flat) == [op.name]:
        st.retarget((src, op.flat), (n1, op.flat))
    else:  # the Flatten is shared: give the re-pointed synapse its own
        flat = _fresh(st, f"{op.flat}_{n1}")
        st.nodes[flat] = Flatten()
        st.retarget((op.flat, op.name), (flat, op.name))
        st.edges.append((n1, flat))
        op.flat = flat
    op.layer = n1


def _merge_synapses(st: _State, parts: list[str], main: str, deep: str
                    ) -> tuple[Node, str]:
    """One synapse reading ``deep`` equal to the sum of ``parts`` (all reading ``deep``), in
    the kernel grid of ``main`` (or of another part when ``main``'s does not hold them all)."""
    nodes = {p: st.nodes[p] for p in parts}
    effs = {p: _effective(n) for p, n in nodes.items()}
    shape = st.shape(deep)
    dense = isinstance(nodes[main], QDense)
    if dense:
        full = sum(_cols(nodes[p], shape, effs[p]).reshape(len(effs[p]), -1) for p in parts)
        host = main
    else:
        first: UnsupportedError | None = None
        for host in [main, *(p for p in parts if p != main)]:
            try:
                full = sum(_dense_conv(nodes[p].replace(weight=effs[p])) if p == host else
                           _embed(nodes[p], effs[p], nodes[host], shape[0], p) for p in parts)
                break
            except UnsupportedError as err:
                first = first or err
        else:
            raise first  # type: ignore[misc]
    extra = {}
    if dense and any(n.delay is not None for n in nodes.values()):
        delay = np.full(full.shape, -1, dtype=np.int64)
        for p, n in nodes.items():
            d = np.zeros(full.shape, np.int64) if n.delay is None else np.asarray(n.delay)
            used = effs[p].reshape(full.shape) != 0
            if np.any(used & (delay >= 0) & (delay != d)):
                raise UnsupportedError(f"{p}: its synaptic delays differ from those of another "
                                       "synapse on the same inputs; they cannot be merged")
            delay[used] = d[used]
        extra["delay"] = np.maximum(delay, 0)
    enc = _encode(full, dense, None, 0)
    if enc is None:
        raise UnsupportedError(f"the merged weights of {', '.join(parts)} span "
                               f"[{full.min()}, {full.max()}], which no 8-bit mantissa and "
                               "exponent represent exactly")
    m, e, sign = enc
    if not dense:
        extra["groups"] = 1
    return nodes[host].replace(weight=m, weight_exp=e, num_weight_bits=8, sign_mode=sign,
                               **extra), host


def _finish_add(st: _State, join: str, ops: list[_Op], main: str, deep: str) -> str:
    parts = [op.name for op in ops]
    merged, host = _merge_synapses(st, parts, main, deep)
    st.nodes[host] = merged
    for op in ops:
        if op.name == host:
            continue
        if op.flat and st.succs(op.flat) == [op.name]:
            del st.nodes[op.flat]
            st.edges = [e for e in st.edges if op.flat not in e]
        del st.nodes[op.name]
        st.edges = [e for e in st.edges if op.name not in e]
    st.edges = [(host if a == join else a, b) for a, b in st.edges if b != join]
    del st.nodes[join]
    return f"{', '.join(parts)} merged into {host}" if len(parts) > 1 else host


def _finish_concat(st: _State, join: str, ops: list[_Op], deep: str) -> str:
    target = [o for op in ops for o in op.origins]
    lay = st.lay(deep)
    at = {o: i for i, o in enumerate(lay)}
    pos = [at[o] for o in target]
    same = pos == list(range(len(lay)))
    shape = (len(target), *st.base[deep][1:])
    cols = np.arange(len(target))

    def refuse(why: str) -> UnsupportedError:
        return UnsupportedError(f"{why}, and the channels of {deep} (its own and relays) are "
                                "not in the Concat's order")

    for c in st.succs(join):
        node = st.nodes[c]
        if isinstance(node, _SYN):
            st.nodes[c] = node if same else _move_cols(node, shape, cols, pos, len(lay))
        elif isinstance(node, Flatten):
            for t in st.succs(c):
                if isinstance(st.nodes[t], QDense):
                    st.nodes[t] = (st.nodes[t] if same else
                                   _move_cols(st.nodes[t], shape, cols, pos, len(lay)))
                elif not same:
                    raise refuse(f"{t} reads it through {c}")
        elif isinstance(node, Concat):
            if deep in st.preds(c):
                raise UnsupportedError(f"{c} concatenates {join} and {deep}, which become one")
            st.alias[(c, deep)] = target
        elif not same:
            raise refuse(f"{c} ({node.type_name}) reads it")
    if not st.succs(join) and not same:
        raise refuse("it is a graph output")
    st.edges = [(deep if a == join else a, b) for a, b in st.edges if b != join]
    del st.nodes[join]
    return f"{deep} is the concatenation"


def _rewrite_join(st: _State, join: str, plan: _Plan) -> str:
    """Relay ``join``'s operands forward until they read one layer, then merge (``Add``) or
    drop the ``Concat``. Returns a note for ``metadata["legalized"]``."""
    ops, deep = plan.ops, plan.deep
    add = isinstance(st.nodes[join], Add)
    moves = []
    while True:
        srcs = sorted({op.layer for op in ops if op.layer != deep}, key=lambda n: st.depth[n])
        if not srcs:
            break
        src = srcs[0]
        d = st.depth[src]
        n1 = plan.chain[d + 1]
        moving = [op for op in ops if op.layer == src]
        k = _relay_hop(st, src, plan.hops[d], n1, [o for op in moving for o in op.origins])
        for op in moving:
            if add:
                _repoint(st, op, n1, plan.hops[d])
            else:
                op.layer = n1
        moves.append(f"{src} -> {n1} ({k} new relay channels)")
    end = (_finish_add(st, join, ops, plan.main, deep) if add
           else _finish_concat(st, join, ops, deep))
    return f"{join}: " + "; ".join([*moves, end])


# ============================================================================================
# The pass
# ============================================================================================


def _failure_message(failures: list[tuple[str, str, str]]) -> str:
    """One line: ``join (Kind): problems`` per join, joins with the same problems grouped."""
    groups: dict[tuple[str, str], list[str]] = {}
    for join, kind, text in failures:
        groups.setdefault((kind, text), []).append(join)
    return "; ".join(f"{', '.join(joins)} ({kind}): {text}"
                     for (kind, text), joins in groups.items())


def legalize(fixed_graph: Graph) -> Graph:
    """A graph equivalent to ``fixed_graph`` that lava-dl netx can hold and run.

    Args:
        fixed_graph: a fixed-point graph (``Input``, ``QDense``, ``QConv2d``, ``QSumPool2d``,
            ``QCubaLIF``, ``Flatten``, ``Add``, ``Concat``), e.g. from
            :func:`~neurodeploy.passes.quantize.quantize`.

    Returns:
        A chain of ``Input``, ``QDense``/``QConv2d`` + ``QCubaLIF`` and ``Flatten`` nodes. Node
        names are kept (merged synapses keep the name of the synapse that read the deepest
        layer; the other operand synapses and the joins disappear); ``metadata["legalized"]``
        lists the rewrites. Pool rewrites are exact against ``fixed_graph``; relay rewrites
        remove its skew between paths and match the float graph aligned by pipeline depth
        (see the module docstring). A layer that carries relays grows by the relayed channels
        (shape ``(C + k, H, W)`` or ``(N + k,)``): they follow its own channels, or come
        before them when the layer is a ``Concat``'s operand other than the first.

    Raises:
        UnsupportedError: one line naming every join that cannot be legalized with its
            layers and reasons, or a node that netx cannot hold.
    """
    from ..simulation import pipeline_depths

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
    # 3) joins -> relays, one at a time in topological order; every failure is reported
    before = frozenset(p for n, node in graph.nodes.items() if isinstance(node, Concat)
                       for p in graph.predecessors(n)[1:])
    st = _State(dict(graph.nodes), list(graph.edges), dict(graph.shapes),
                pipeline_depths(graph), before)
    failures: list[tuple[str, str, str]] = []
    for join in [n for n in graph.topo_order if isinstance(graph.nodes[n], (Add, Concat))]:
        kind = graph.nodes[join].type_name
        plan, problems = _plan(st, join)
        if plan is None:
            failures.append((join, kind, "; ".join(problems)))
            continue
        trial = st.copy()
        try:
            notes.append(_rewrite_join(trial, join, plan))
        except UnsupportedError as err:
            failures.append((join, kind, str(err)))
            continue
        st = trial
    if failures:
        raise UnsupportedError(_failure_message(failures))
    order = [n for n in graph.nodes if n in st.nodes] + [n for n in st.nodes
                                                         if n not in graph.nodes]
    graph = Graph({n: st.nodes[n] for n in order}, tuple(dict.fromkeys(st.edges)),
                  graph.metadata).validate()
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
