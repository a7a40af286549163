"""Fold inference-mode batch norm into the synapse before it.

A :class:`~neurodeploy.ir.BatchNorm` node computes ``y = scale·x + shift`` per channel (axis 0
of a sample). When its only input is a ``Conv2d``, ``Affine`` or ``Linear`` node whose only
consumer is the BatchNorm, the pair equals one synapse with

    W' = scale[:, None, ...] · W        b' = scale · b + shift      (b = 0 when absent)

so the BatchNorm node disappears and the synapse gains a bias (a ``Linear`` becomes an
``Affine``). A BatchNorm without such a predecessor (after an ``Add``, a pooling layer, the
input, or a synapse that also feeds other nodes) cannot be folded; it is reported as an
:class:`~neurodeploy.errors.UnsupportedError` naming every such node.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from ..ir import Affine, BatchNorm, Conv2d, Graph, Linear, Node

#: Synapse node types a BatchNorm can be folded into.
FOLDABLE = (Conv2d, Affine, Linear)


def fold_problems(graph: Graph) -> list[str]:
    """One line per ``BatchNorm`` node of ``graph`` that cannot be folded (empty when all can).

    Each line names the BatchNorm node, its predecessor and why (wrong predecessor type, or a
    predecessor with several consumers).
    """
    problems = []
    for name, node in graph.nodes.items():
        if not isinstance(node, BatchNorm):
            continue
        preds = graph.predecessors(name)
        if len(preds) != 1:
            problems.append(f"{name} (BatchNorm): has {len(preds)} inputs, needs 1")
            continue
        src = preds[0]
        src_node = graph.nodes.get(src)
        if not isinstance(src_node, FOLDABLE):
            kind = src_node.type_name if src_node is not None else "unknown node"
            problems.append(
                f"{name} (BatchNorm): follows {src} ({kind}); only a BatchNorm right after "
                "Conv2d, Affine or Linear can be folded"
            )
            continue
        consumers = graph.successors(src)
        if len(consumers) != 1:
            problems.append(
                f"{name} (BatchNorm): its input {src} ({src_node.type_name}) also feeds "
                f"{', '.join(c for c in consumers if c != name)}, so the BatchNorm cannot be "
                "folded into it"
            )
    return problems


def _fold_node(syn: Node, bn: BatchNorm) -> Node:
    scale = np.asarray(bn.scale, dtype=np.float64)
    shift = np.asarray(bn.shift, dtype=np.float64)
    out_channels = syn.weight.shape[0]
    if scale.shape != (out_channels,):
        raise UnsupportedError(
            f"BatchNorm has {scale.shape[0] if scale.ndim else 0} channels but its input "
            f"{syn.type_name} has {out_channels} outputs; fix the BatchNorm's scale/shift shape"
        )
    w_scale = scale.reshape((-1,) + (1,) * (syn.weight.ndim - 1))
    weight = np.asarray(syn.weight) * w_scale
    old_bias = getattr(syn, "bias", None)
    bias = shift.copy() if old_bias is None else scale * np.asarray(old_bias) + shift
    if isinstance(syn, Conv2d):
        return syn.replace(weight=weight, bias=bias)
    return Affine(weight=weight, bias=bias)


def fold_batchnorm(graph: Graph) -> Graph:
    """A graph equal to ``graph`` with every ``BatchNorm`` folded into the synapse before it.

    Computes the same function (up to float rounding, ~1e-15 relative in float64). Node order,
    the other edges (including their order into ``Add``/``Concat``) and metadata are kept; the
    folded synapse keeps its name and takes over the BatchNorm's outgoing edges. A graph
    without BatchNorm nodes is returned as is.

    Raises :class:`UnsupportedError` listing every BatchNorm that cannot be folded (see
    :func:`fold_problems`).
    """
    bns = [n for n, node in graph.nodes.items() if isinstance(node, BatchNorm)]
    if not bns:
        return graph
    problems = fold_problems(graph)
    if problems:
        raise UnsupportedError(
            "cannot fold batch norm: " + "; ".join(problems)
            + " (move the BatchNorm directly after a conv/linear layer used only by it)"
        )
    nodes = dict(graph.nodes)
    rename: dict[str, str] = {}  # BatchNorm name -> synapse it was folded into
    for name in bns:
        src = graph.predecessors(name)[0]
        try:
            nodes[src] = _fold_node(nodes[src], graph.nodes[name])
        except UnsupportedError as err:
            raise UnsupportedError(f"{name} (BatchNorm): {err.message}") from None
        del nodes[name]
        rename[name] = src
    edges = []
    for a, b in graph.edges:
        if b in rename:  # synapse -> BatchNorm: dropped
            continue
        edges.append((rename.get(a, a), b))
    return Graph(nodes, tuple(edges), graph.metadata)
