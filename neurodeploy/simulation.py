"""What a simulation run takes and returns, shared by every backend (hw_sim and Lava).

Conventions (all backends follow them, so their results compare element for element):

* ``inputs`` are integer numpy arrays in the IR's PyTorch layout with a leading batch axis:
  ``input_mode="bias"``: ``(B, *input_shape)``, the bias mantissa of the input layer's neurons,
  constant over the run (how lava-dl feeds images);
  ``input_mode="spikes"``: ``(B, *input_shape, T)`` with ``T >= steps``, the events arriving at
  the successors of the ``Input`` node at each step (binary unless the ``Input`` node declares
  ``num_message_bits``).
* ``record`` maps neuron names to a subset of ``"u"``, ``"v"``, ``"s"``; recorded traces are
  ``(B, *neuron_shape, steps)`` integer arrays, time on the last axis, value after each step.
* Lava's one-step delay per synapse and netx's staggered ``reset_interval`` are part of the
  semantics (see :class:`neurodeploy.ir.QCubaLIF`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .errors import NeurodeployError
from .ir import Graph

INPUT_MODES = ("bias", "spikes")
RECORDABLE = ("u", "v", "s")


@dataclass
class RunResult:
    """Outcome of one run of a batch through a network.

    Attributes:
        backend: ``"hw_sim"`` or ``"lava"``.
        steps: time steps simulated.
        samples: batch size B.
        layers: neuron names in layer order.
        traces: ``"<layer>.<u|v|s>"`` → ``(B, *shape, steps)`` array, for what was recorded.
        spike_counts: layer → ``(B,)`` int64 total output spikes of the layer over the run.
        sim_time_s: wall-clock seconds spent simulating (setup excluded where separable).
    """

    backend: str
    steps: int
    samples: int
    layers: list[str]
    traces: dict[str, np.ndarray] = field(default_factory=dict)
    spike_counts: dict[str, np.ndarray] = field(default_factory=dict)
    sim_time_s: float = 0.0


def normalize_record(
    graph: Graph, record: Mapping[str, Iterable[str]] | Iterable[str] | None
) -> dict[str, frozenset[str]]:
    """Turn ``record`` into ``{neuron name: {"u", "v", "s"} subset}``.

    ``record`` may be ``None`` (nothing), an iterable of quantities applied to every neuron
    (``["u", "s"]``), or a mapping from neuron names to quantities. Unknown names or quantities
    raise a :class:`NeurodeployError` naming them and what is available.
    """
    neurons = graph.neurons
    if record is None:
        return {}
    if not isinstance(record, Mapping):
        record = {name: tuple(record) for name in neurons}
    out: dict[str, frozenset[str]] = {}
    unknown_layers = [name for name in record if name not in neurons]
    if unknown_layers:
        raise NeurodeployError(
            f"cannot record unknown layer(s) {', '.join(unknown_layers)}; "
            f"layers with neuron state: {', '.join(neurons)}"
        )
    for name, what in record.items():
        what = frozenset(what)
        bad = sorted(what - set(RECORDABLE))
        if bad:
            raise NeurodeployError(
                f"cannot record {', '.join(bad)}; choose from {', '.join(RECORDABLE)}"
            )
        if what:
            out[name] = what
    return out


def check_inputs(graph: Graph, inputs: np.ndarray, steps: int, input_mode: str) -> np.ndarray:
    """Validate a batch of inputs against the graph's single ``Input`` node; return int64 array.

    Raises :class:`NeurodeployError` with the expected and found shapes, or when values are not
    finite integers.
    """
    if input_mode not in INPUT_MODES:
        raise NeurodeployError(f"input mode {input_mode!r} not one of {', '.join(INPUT_MODES)}")
    if steps < 1:
        raise NeurodeployError(f"steps must be at least 1, got {steps}")
    ins = graph.inputs
    if len(ins) != 1:
        raise NeurodeployError(f"simulation needs exactly one Input node, found {len(ins)}")
    shape = graph.shapes[ins[0]]
    arr = np.asarray(inputs)
    want = (shape if input_mode == "bias" else (*shape, "T"))
    if arr.ndim != len(want) + 1 or tuple(arr.shape[1 : 1 + len(shape)]) != tuple(shape):
        raise NeurodeployError(
            f"inputs have shape {arr.shape}; expected (batch, {', '.join(map(str, want))}) "
            f"for input mode {input_mode!r}"
        )
    if input_mode == "spikes" and arr.shape[-1] < steps:
        raise NeurodeployError(
            f"spike input holds {arr.shape[-1]} time steps but {steps} were requested"
        )
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise NeurodeployError("inputs hold NaN or infinite values")
        if not np.all(arr == np.round(arr)):
            raise NeurodeployError("inputs must be integers (bias mantissas or spike payloads)")
    elif arr.dtype.kind not in "biu":
        raise NeurodeployError(f"inputs must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def pipeline_depths(graph: Graph) -> dict[str, int]:
    """Synapse nodes on the longest path from the input to each node (Lava's pipeline depth:
    every synapse delivers one step late). The input layer's neuron has depth 0."""
    depth: dict[str, int] = {}
    for name in graph.topo_order:
        base = max((depth[p] for p in graph.predecessors(name)), default=0)
        depth[name] = base + (1 if graph.nodes[name].is_synapse else 0)
    return depth


def reset_phase(depth: int, reset_interval: int, reset_offset: int = 0) -> int:
    """Lava time step phase (``tau % reset_interval``) at which a neuron at ``depth`` resets:
    netx staggers each layer's reset by its delay (``LIFReset(reset_offset=...)``)."""
    return (reset_offset + 1 + depth) % reset_interval
