"""Running float data through a deployed (fixed-point) network: one definition of the input
events, the run length, the per-layer time windows and the read-out, shared by every command
that evaluates a compiled model on a dataset (``verify``, ``simulate DIR --data``, SAM,
attacks, calibration).

**Timing.** Every synapse delivers one step late, so a neuron layer at pipeline depth ``d``
(:func:`neurodeploy.simulation.pipeline_depths`) sees input step ``t`` at step ``t + d``. A
sample of ``T`` input steps therefore runs ``T + D`` steps (``D`` the deepest layer's depth;
zero input during the last ``D``), and layer ``d``'s window ``[d, d + T)`` is what the float
network computes in steps ``[0, T)``.

**Staggered reset.** Biases act from step 0 at every depth, so before its first input arrives
a layer at depth ``d > 0`` would integrate ``d`` steps of bias alone (and fire on it): the
BNTT/BN shifts folded into biases then corrupt every later layer. The run uses lava-dl netx's
remedy, a reset interval with each layer's reset staggered by its depth (Lava's ``LIFReset``;
hw_sim's ``reset_interval``): with interval ``T + D`` each layer's ``u`` and ``v`` are cleared
exactly once, at the start of step ``d``, so it integrates precisely its window. This runs
identically on hw_sim, Lava and Loihi.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import NeurodeployError
from .ir import Graph, QCubaLIF
from .simulation import RunResult, pipeline_depths


@dataclass
class DeployedInputs:
    """What a fixed graph is fed for a batch of float samples."""

    events: np.ndarray  # (B, *input_shape, total) for "spikes"; (B, *input_shape) for "bias"
    input_mode: str  # "spikes" or "bias"
    steps: int  # T: input steps of one sample
    total: int  # T + D: steps to run

    @property
    def reset_interval(self) -> int:
        return self.total


def depth_of_outputs(graph: Graph) -> int:
    """``D``: the largest pipeline depth of a neuron layer."""
    depths = pipeline_depths(graph)
    return max((depths[n] for n in graph.neurons), default=0)


def deployed_inputs(graph: Graph, x: np.ndarray, steps: int, *, seed: int = 0,
                    offset: int = 0, extra: int | None = None) -> DeployedInputs:
    """Input events for float samples ``x`` ``(B, *input_shape)`` (or per-step
    ``(B, *input_shape, T')``) on a fixed graph made by ``quantize`` (its input encoding) or
    read from netx (its ``input_transform``: ``round(weight·x + bias)``, as bias when the input
    feeds neurons directly). ``extra`` (default ``D``) sets the run to ``steps + extra`` steps,
    e.g. to run graphs of different depths for the same number of steps."""
    if steps < 1:
        raise NeurodeployError(f"steps must be >= 1, got {steps}")
    extra = depth_of_outputs(graph) if extra is None else int(extra)
    total = steps + extra
    if graph.metadata.get("input_encoding") is not None:
        from .passes.quantize import quantize_inputs

        q = quantize_inputs(graph, x, steps=steps, seed=seed, offset=offset)
        pad = np.zeros((*q.shape[:-1], extra), dtype=np.int64)
        return DeployedInputs(np.concatenate([q, pad], axis=-1), "spikes", steps, total)
    netx = graph.metadata.get("netx")
    transform = netx.get("input_transform", {}) if isinstance(netx, dict) else {}
    w = float(transform.get("weight", 1.0))
    b = float(transform.get("bias", 0.0))
    vals = np.round(w * np.asarray(x, dtype=np.float64) + b).astype(np.int64)
    succ = graph.successors(graph.inputs[0])
    if succ and all(isinstance(graph.nodes[s], QCubaLIF) for s in succ):
        return DeployedInputs(vals, "bias", steps, total)
    q = np.repeat(vals[..., None], steps, axis=-1)
    pad = np.zeros((*q.shape[:-1], extra), dtype=np.int64)
    return DeployedInputs(np.concatenate([q, pad], axis=-1), "spikes", steps, total)


def run_deployed(graph: Graph, inputs: DeployedInputs, *, backend: str = "hw_sim",
                 record: Any = None, observer: Any = None, device: str = "cpu") -> RunResult:
    """Run ``inputs`` through the fixed ``graph`` on ``backend`` (``"hw_sim"`` or ``"lava"``)
    for ``T + D`` steps with the staggered reset (module docstring). ``observer`` (hw_sim
    only) sees every step."""
    kw = dict(steps=inputs.total, input_mode=inputs.input_mode,
              reset_interval=inputs.reset_interval, record=record)
    if backend == "lava":
        if observer is not None:
            raise NeurodeployError("step observers run on hw_sim only")
        from .backends import lava

        return lava.run(graph, inputs.events, **kw)
    if backend != "hw_sim":
        raise NeurodeployError(f"unknown backend {backend!r}; use hw_sim or lava")
    from neurodeploy.hw_sim import run as hw_run

    return hw_run(graph, inputs.events, device=device, observer=observer, **kw)


def window(graph: Graph, name: str, trace: np.ndarray, steps: int) -> np.ndarray:
    """Layer ``name``'s steps ``[d, d + T)`` of a trace ``(B, ..., total)``: what the float
    network computes in steps ``[0, T)``."""
    d = pipeline_depths(graph)[name]
    return trace[..., d:d + steps]


def output_scale(graph: Graph, name: str) -> float | None:
    """``S`` of an accumulator output (logits = v / (64·S·T)), from the quantizer's metadata."""
    scale = graph.metadata.get("output_scale")
    if isinstance(scale, dict):
        scale = scale.get(name)
    ok = isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0
    return float(scale) if ok else None
