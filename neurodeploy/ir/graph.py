"""The IR graph: named nodes plus an ordered edge list (a DAG), with shape inference and
validation that reports every problem at once.

Node order is meaningful: it is the *layer order* (the order of a netx file, of a PyTorch
``Sequential``), used for reports and trace files. Edge order is meaningful for multi-input
nodes (``Add``, ``Concat``): inputs are taken in the order their edges appear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..errors import InvalidIRError
from .nodes import Concat, Flatten, Input, Node, QCubaLIF, Shape

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


@dataclass(frozen=True, eq=False)
class Graph:
    """An immutable network: ``nodes`` (name → node, in layer order) and ``edges`` (src, dst).

    Build with :meth:`chain` for sequential networks or pass nodes and edges directly.
    Call :meth:`validate` (or use :attr:`shapes`, which validates) before using a graph built
    from untrusted input.
    """

    nodes: Mapping[str, Node]
    edges: tuple[tuple[str, str], ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", dict(self.nodes))
        object.__setattr__(self, "edges", tuple((str(a), str(b)) for a, b in self.edges))
        object.__setattr__(self, "metadata", dict(self.metadata))

    # ---------------------------------------------------------------- construction helpers

    @classmethod
    def chain(cls, layers: Iterable[tuple[str, Node]], **metadata: Any) -> Graph:
        """A sequential graph: each node feeds the next."""
        layers = list(layers)
        edges = tuple((a[0], b[0]) for a, b in zip(layers, layers[1:]))
        return cls(dict(layers), edges, metadata)

    def replace_node(self, name: str, node: Node) -> Graph:
        """A new graph with ``name`` bound to ``node`` (same edges)."""
        nodes = dict(self.nodes)
        nodes[name] = node
        return Graph(nodes, self.edges, self.metadata)

    def with_metadata(self, **changes: Any) -> Graph:
        return Graph(self.nodes, self.edges, {**self.metadata, **changes})

    # ---------------------------------------------------------------- structure queries

    def predecessors(self, name: str) -> list[str]:
        """Source nodes of ``name``'s incoming edges, in edge order."""
        return self._preds.get(name, [])

    def successors(self, name: str) -> list[str]:
        return self._succs.get(name, [])

    def message_bits(self, name: str) -> int | None:
        """``num_message_bits`` of the events leaving ``name`` (0: binary spikes), looking
        through Flatten/Concat to the ``Input`` or ``QCubaLIF`` nodes that send them; ``None``
        when ``name`` is not such a spike source."""
        node = self.nodes[name]
        if isinstance(node, (Input, QCubaLIF)):
            return node.num_message_bits
        if isinstance(node, (Flatten, Concat)):
            bits = [self.message_bits(p) for p in self.predecessors(name)]
            return None if None in bits else max(bits)  # type: ignore[type-var]
        return None

    @cached_property
    def _preds(self) -> dict[str, list[str]]:
        preds: dict[str, list[str]] = {}
        for a, b in self.edges:
            preds.setdefault(b, []).append(a)
        return preds

    @cached_property
    def _succs(self) -> dict[str, list[str]]:
        succs: dict[str, list[str]] = {}
        for a, b in self.edges:
            succs.setdefault(a, []).append(b)
        return succs

    @property
    def inputs(self) -> list[str]:
        return [n for n, node in self.nodes.items() if isinstance(node, Input)]

    @property
    def outputs(self) -> list[str]:
        """Nodes without successors, in layer order."""
        return [n for n in self.nodes if not self.successors(n)]

    @property
    def neurons(self) -> list[str]:
        """Names of nodes with neuron state, in layer order (the trace/report order)."""
        return [n for n, node in self.nodes.items() if node.is_neuron]

    @cached_property
    def topo_order(self) -> list[str]:
        """Nodes in an order where every node follows its inputs (layer order where possible).

        Raises :class:`InvalidIRError` on a cycle.
        """
        indeg = {n: 0 for n in self.nodes}
        for a, b in self.edges:
            if a in indeg and b in indeg:
                indeg[b] += 1
        position = {n: i for i, n in enumerate(self.nodes)}
        ready = sorted((n for n, d in indeg.items() if d == 0), key=position.__getitem__)
        order: list[str] = []
        while ready:
            n = ready.pop(0)
            order.append(n)
            for m in self.successors(n):
                if m in indeg:
                    indeg[m] -= 1
                    if indeg[m] == 0:
                        ready.append(m)
                        ready.sort(key=position.__getitem__)
        if len(order) != len(self.nodes):
            cyclic = sorted(set(self.nodes) - set(order), key=position.__getitem__)
            raise InvalidIRError(f"the graph has a cycle through {', '.join(cyclic)}")
        return order

    # ---------------------------------------------------------------- validation and shapes

    def problems(self) -> list[str]:
        """Every structural, parameter and shape problem, as ``"<node>: <problem>"`` lines."""
        problems: list[str] = []
        if not self.nodes:
            return ["the graph has no nodes"]
        for name in self.nodes:
            if not _NAME.match(name):
                problems.append(
                    f"{name!r}: node names must start with a letter or '_' and hold only "
                    "letters, digits, '_' and '-'"
                )
        seen = set()
        for a, b in self.edges:
            for end in (a, b):
                if end not in self.nodes:
                    problems.append(f"edge {a} -> {b}: unknown node {end!r}")
            if (a, b) in seen:
                problems.append(f"edge {a} -> {b}: duplicate edge")
            seen.add((a, b))
        if not self.inputs:
            problems.append("the graph has no Input node")
        for name, node in self.nodes.items():
            lo, hi = node.arity
            n_in = len(self.predecessors(name))
            if not lo <= n_in <= hi:
                want = f"{lo}" if lo == hi else f"{lo} to {hi}"
                problems.append(f"{name} ({node.type_name}): has {n_in} inputs, needs {want}")
            problems.extend(f"{name} ({node.type_name}): {p}" for p in node.check())
        if problems:
            return problems
        try:
            order = self.topo_order
        except InvalidIRError as err:
            return err.problems
        shapes: dict[str, Shape] = {}
        for name in order:
            node = self.nodes[name]
            ins = [shapes[p] for p in self.predecessors(name)]
            if any(s is None for s in ins):
                shapes[name] = None  # type: ignore[assignment]
                continue
            found = node.check_inputs(ins)
            if found:
                problems.extend(f"{name} ({node.type_name}): {p}" for p in found)
                shapes[name] = None  # type: ignore[assignment]
            else:
                shapes[name] = node.output_shape(ins)
        return problems

    def validate(self) -> Graph:
        """Raise :class:`InvalidIRError` listing every problem; return ``self`` when valid."""
        problems = self.problems()
        if problems:
            raise InvalidIRError(problems)
        return self

    @cached_property
    def shapes(self) -> dict[str, Shape]:
        """Output shape of one sample for every node (validates the graph first)."""
        self.validate()
        shapes: dict[str, Shape] = {}
        for name in self.topo_order:
            ins = [shapes[p] for p in self.predecessors(name)]
            shapes[name] = self.nodes[name].output_shape(ins)
        return {n: shapes[n] for n in self.nodes}

    @property
    def stage(self) -> str:
        """``"fixed"`` if any node is fixed-point, ``"float"`` if any is float, else ``"any"``."""
        stages = {node.stage for node in self.nodes.values()}
        if "fixed" in stages:
            return "fixed"
        return "float" if "float" in stages else "any"

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        body = ", ".join(f"{n}: {node.type_name}" for n, node in self.nodes.items())
        return f"Graph({body})"
