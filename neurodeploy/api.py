"""The Python API behind the CLI: load a model, simulate it on a backend, save the run.

:func:`simulate` takes a model (an IR :class:`~neurodeploy.ir.Graph` or a file path) and inputs
in the *model file's* layout, runs one backend and returns a :class:`SimulationResult`;
:func:`save_run` writes ``trace.npz`` and ``summary.json`` atomically.

Layouts: the IR is PyTorch order, ``(C, H, W)`` per sample. Models read from netx HDF5 files
(``graph.metadata["layout"] == "netx"``) take and give arrays in netx/lava-dl order
``(W, H, C)``, time last for spikes and traces, exactly like lava-dl's ``image.npy``
``(200, 66, 3)`` and ``input-s.npy`` ``(200, 66, 3, 24)``. Converting between the two reverses
the per-sample axes; vectors ``(N,)`` are the same in both.

Batches: an input array with one more leading axis than one sample is a batch; a single sample
gets a batch axis internally, and the saved traces drop it again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Union

import numpy as np

from . import __version__
from .errors import BadInputFileError, MissingExtraError, NeurodeployError
from .ir import Graph
from . import outdir
from .outdir import write_dir_atomic
from .simulation import INPUT_MODES, RECORDABLE, RunResult

#: Simulation backends :func:`simulate` can run.
BACKENDS = ("hw_sim", "lava")
#: The files :func:`save_run` writes; a folder holding only these may be overwritten.
OUTPUT_FILES = ("trace.npz", "summary.json", "report.json", "report.html")

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class SimulationResult(RunResult):
    """A :class:`~neurodeploy.simulation.RunResult` plus what :func:`save_run` needs to write
    it back in the user's terms.

    Attributes (beyond RunResult's):
        batched: whether the user gave a batch (else traces drop the batch axis when saved).
        layout: ``"netx"`` (per-sample axes reversed in files) or ``"ir"``.
        shapes: neuron name → IR shape of one sample.
        input_mode, reset_interval, reset_offset, device: the run options used.
    """

    batched: bool = True
    layout: str = "ir"
    shapes: dict[str, tuple[int, ...]] | None = None
    input_mode: str = "bias"
    reset_interval: int | None = None
    reset_offset: int = 0
    device: str = "cpu"


# ------------------------------------------------------------------------------- models


def load(model: Graph | PathLike) -> Graph:
    """Return ``model`` if it is a Graph, else read the file at that path (netx HDF5, …)."""
    if isinstance(model, Graph):
        return model
    from .frontends.load import load_model

    return load_model(model)


def model_layout(graph: Graph) -> str:
    """``"netx"`` for graphs read from netx files (arrays in (W, H, C) order), else ``"ir"``."""
    return "netx" if graph.metadata.get("layout") == "netx" else "ir"


# ------------------------------------------------------------------------------- layouts


def reverse_sample_axes(arr: np.ndarray, sample_ndim: int, *, batched: bool = True,
                        time_last: bool = False) -> np.ndarray:
    """Reverse the ``sample_ndim`` per-sample axes of ``arr``: (C,H,W) ↔ (W,H,C).

    ``arr`` is ``([B,] *sample, [T])``: a leading batch axis if ``batched``, a trailing time axis
    if ``time_last``. The conversion is its own inverse; vectors are returned unchanged.
    """
    arr = np.asarray(arr)
    if sample_ndim < 2:
        return arr
    lead = 1 if batched else 0
    axes = list(range(arr.ndim))
    axes[lead : lead + sample_ndim] = reversed(axes[lead : lead + sample_ndim])
    if time_last and arr.ndim != lead + sample_ndim + 1:
        raise ValueError(f"array of shape {arr.shape} has no trailing time axis")
    return np.ascontiguousarray(arr.transpose(axes))


def file_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """One sample's shape as the model file writes it (reversed for netx)."""
    return tuple(reversed(shape)) if layout == "netx" else tuple(shape)


# ------------------------------------------------------------------------------- inputs


def load_input_file(path: PathLike) -> np.ndarray:
    """Read an input array from ``.npy`` (or an ``.npz`` holding exactly one array).

    Never unpickles. Raises :class:`BadInputFileError` when the file is missing, unreadable,
    not numeric, or holds NaN/infinite values.
    """
    p = Path(path)
    if not p.exists():
        raise BadInputFileError(p, "no such file")
    if not p.is_file():
        raise BadInputFileError(p, "not a file")
    suffix = p.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise BadInputFileError(p, f"unsupported input file type {suffix or '(none)'!r}",
                                hint="give a .npy file (or an .npz holding one array)")
    try:
        loaded = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise BadInputFileError(p, f"not a readable numpy file ({err})") from err
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if len(names) != 1:
                raise BadInputFileError(
                    p, f"an .npz input must hold exactly one array, found {len(names)}"
                    + (f" ({', '.join(names)})" if names else "")
                )
            try:
                arr = loaded[names[0]]
            except (ValueError, OSError, EOFError) as err:
                raise BadInputFileError(p, f"cannot read array {names[0]!r} ({err})") from err
    else:
        arr = loaded
    _check_values(arr, lambda msg: BadInputFileError(p, msg))
    return arr


def _check_values(arr: np.ndarray, error: Any) -> None:
    """Raise ``error(message)`` unless ``arr`` holds finite integer values."""
    if arr.dtype.kind not in "biuf":
        raise error(f"holds {arr.dtype} values; inputs must be numbers")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise error("holds NaN or infinite values")
        if not np.all(arr == np.round(arr)):
            raise error("holds non-integer values; inputs are bias mantissas or spike payloads")


def prepare_inputs(
    graph: Graph, inputs: np.ndarray | PathLike, *, input_mode: str,
    steps: int | None = None,
) -> tuple[np.ndarray, bool, int]:
    """Convert user inputs (file layout, batch optional) to the backends' convention.

    Returns ``(array, batched, steps)``: ``array`` is int64 ``(B, *input_shape[, T])`` in IR
    layout, ``batched`` tells whether the user gave a batch axis, ``steps`` is ``steps`` or,
    for spike input without ``steps``, the input's number of time steps.
    """
    if input_mode not in INPUT_MODES:
        raise NeurodeployError(
            f"unknown input mode {input_mode!r}; choose from {', '.join(INPUT_MODES)}"
        )
    source: Path | None = None
    if isinstance(inputs, (str, os.PathLike)):
        source = Path(inputs)
        arr = load_input_file(source)
    else:
        arr = np.asarray(inputs)

    def error(message: str) -> NeurodeployError:
        if source is not None:
            return BadInputFileError(source, message)
        return NeurodeployError(f"inputs: {message}")

    if source is None:
        _check_values(arr, error)
    names = graph.inputs
    if len(names) != 1:
        raise NeurodeployError(f"simulation needs exactly one Input node, found {len(names)}")
    shape = tuple(graph.shapes[names[0]])
    layout = model_layout(graph)
    fshape = file_shape(shape, layout)
    k = len(shape)
    extra = 1 if input_mode == "spikes" else 0
    if arr.ndim == k + extra and tuple(arr.shape[:k]) == fshape:
        batched = False
        arr = arr[None]
    elif arr.ndim == k + extra + 1 and tuple(arr.shape[1 : 1 + k]) == fshape:
        batched = True
    else:
        one = ", ".join(map(str, fshape)) + (", T" if extra else "")
        raise error(
            f"shape {arr.shape} does not fit the model input: expected ({one}) for one sample "
            f"or (batch, {one}) for a batch, in input mode {input_mode!r}"
        )
    if arr.shape[0] == 0:
        raise error("the batch is empty")
    if input_mode == "spikes":
        n_t = arr.shape[-1]
        if steps is None:
            steps = n_t
        elif steps > n_t:
            raise error(f"spike input holds {n_t} time steps but {steps} were requested")
    elif steps is None:
        raise NeurodeployError("steps is required for input mode 'bias' (give --steps)")
    if steps < 1:
        raise NeurodeployError(f"steps must be at least 1, got {steps}")
    if layout == "netx":
        arr = reverse_sample_axes(arr, k, batched=True, time_last=bool(extra))
    return arr.astype(np.int64), batched, int(steps)


# ------------------------------------------------------------------------------- simulate


def _backend_run(backend: str, device: str) -> Any:
    if backend == "hw_sim":
        from . import hw_sim

        return lambda *a, **kw: hw_sim.run(*a, device=device, **kw)
    if backend == "lava":
        if device != "cpu":
            raise NeurodeployError(
                f"the lava backend runs on the CPU only; got device {device!r}",
                hint="use --backend hw_sim for CUDA",
            )
        try:
            from .backends import lava
        except ModuleNotFoundError as err:
            if (err.name or "").split(".")[0] != "lava":
                raise
            raise MissingExtraError(
                "the lava backend needs lava-nc 0.10.0 and lava-dl 0.6.0, which need Python 3.10",
                hint="pip install 'neurodeploy[lava]' on Python 3.10",
            ) from err
        return lava.run
    raise NeurodeployError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def _check_device(device: str) -> None:
    if device == "cpu":
        return
    if device != "cuda" and not device.startswith("cuda:"):
        raise NeurodeployError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    import torch

    if not torch.cuda.is_available():
        raise NeurodeployError(f"device {device!r} requested but CUDA is not available here")


def simulate(
    model: Graph | PathLike,
    inputs: np.ndarray | PathLike | None = None,
    *,
    backend: str = "hw_sim",
    steps: int | None = None,
    input_mode: str = "bias",
    reset_interval: int | None = None,
    reset_offset: int = 0,
    record: Mapping[str, Iterable[str]] | Iterable[str] | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Simulate ``model`` on ``inputs`` with one backend.

    Args:
        model: an IR graph (fixed-point stage) or the path of a model file.
        inputs: array or ``.npy`` path in the model file's layout (see the module docstring):
            one sample or a batch; bias mantissas (``input_mode="bias"``) or events with time
            last (``"spikes"``).
        backend: ``"hw_sim"`` (fast, CPU or CUDA) or ``"lava"`` (Lava's fixed_pt models, CPU).
        steps: time steps to run; defaults to the spike input's length, required for bias input.
        reset_interval: netx-style periodic reset of u and v every K steps (staggered per layer
            by its pipeline depth), ``None`` for no reset; ``reset_offset`` shifts it (steps).
        record: what to record: ``None``, quantities for every layer (``["u", "v", "s"]``) or
            ``{layer: quantities}``.
        device: ``"cpu"`` or ``"cuda[:N]"`` (hw_sim only).
        log: called with a progress message before the simulation starts.

    Returns:
        a :class:`SimulationResult`: traces ``(B, *shape, steps)`` in IR layout (convert with
        :func:`save_run` or :func:`reverse_sample_axes`), spike counts per layer and sample,
        ``sim_time_s`` in seconds.
    """
    if backend not in BACKENDS:
        raise NeurodeployError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if reset_interval is not None and reset_interval < 1:
        raise NeurodeployError(f"reset interval must be at least 1 step, got {reset_interval}")
    if reset_offset < 0:
        raise NeurodeployError(f"reset offset must be >= 0 steps, got {reset_offset}")
    _check_device(device)
    graph = load(model)
    if inputs is None:
        raise NeurodeployError("no inputs given (give an input array or .npy file)")
    from .simulation import normalize_record

    record_map = normalize_record(graph, record)
    arr, batched, steps = prepare_inputs(graph, inputs, input_mode=input_mode, steps=steps)
    run = _backend_run(backend, device)
    if log is not None:
        n = arr.shape[0]
        log(f"simulating {n} sample{'s' if n != 1 else ''} x {steps} steps on {backend} "
            f"({device})")
    result = run(
        graph, arr, steps=steps, input_mode=input_mode, reset_interval=reset_interval,
        reset_offset=reset_offset, record=record_map,
    )
    base = {f.name: getattr(result, f.name) for f in fields(RunResult)}
    shapes = graph.shapes
    return SimulationResult(
        **base, batched=batched, layout=model_layout(graph),
        shapes={name: tuple(shapes[name]) for name in graph.neurons},
        input_mode=input_mode, reset_interval=reset_interval, reset_offset=reset_offset,
        device=device,
    )


# ------------------------------------------------------------------------------- reports


def activity(result: RunResult) -> list[dict[str, Any]]:
    """Per-layer spike activity: ``layer``, ``neurons``, ``spikes`` (total over the batch),
    ``spikes_per_sample`` (mean) and ``rate`` (spikes per neuron per step; None if the layer's
    size is unknown)."""
    shapes = getattr(result, "shapes", None) or {}
    rows = []
    for layer in result.layers:
        counts = np.asarray(result.spike_counts.get(layer, np.zeros(result.samples)))
        total = int(counts.sum())
        n = int(np.prod(shapes[layer])) if layer in shapes else None
        rate = total / (n * result.samples * result.steps) if n and result.steps else None
        rows.append({
            "layer": layer, "neurons": n, "spikes": total,
            "spikes_per_sample": total / max(result.samples, 1), "rate": rate,
        })
    return rows


# ------------------------------------------------------------------------------- saving


def check_out_dir(out_dir: PathLike) -> Path:
    """Return ``out_dir`` as a Path if :func:`save_run` may write it.

    Allowed: a path that does not exist yet, an empty folder, or a folder holding only a
    previous run's ``trace.npz``/``summary.json`` (replaced). Anything else raises
    :class:`NeurodeployError` (nothing is ever overwritten that neurodeploy did not write).
    """
    return outdir.check_out_dir(out_dir, OUTPUT_FILES, overwrite=True, what="run")


def _to_saved(arr: np.ndarray, result: RunResult) -> np.ndarray:
    """A trace ``(B, *shape, T)`` in IR layout → file layout, batch axis dropped if unbatched,
    integer values stored as int32 when they fit (u and v are 24-bit on Loihi)."""
    arr = np.asarray(arr)
    if getattr(result, "layout", "ir") == "netx":
        arr = reverse_sample_axes(arr, arr.ndim - 2, batched=True, time_last=True)
    if not getattr(result, "batched", True):
        arr = arr[0]
    if arr.dtype.kind in "biu" and arr.size:
        info = np.iinfo(np.int32)
        if info.min <= arr.min() and arr.max() <= info.max:
            arr = arr.astype(np.int32)
    return arr


def summary(result: RunResult, *, model_name: str, load_time_s: float,
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``summary.json`` content of a run (see :func:`save_run`)."""
    layout = getattr(result, "layout", "ir")
    shapes = getattr(result, "shapes", None) or {}
    rows = {row["layer"]: row for row in activity(result)}
    data: dict[str, Any] = {
        "neurodeploy_version": __version__,
        "model": str(model_name),
        "layout": layout,
        "backend": result.backend,
        "device": getattr(result, "device", "cpu"),
        "input_mode": getattr(result, "input_mode", None),
        "steps": int(result.steps),
        "samples": int(result.samples),
        "batched": bool(getattr(result, "batched", True)),
        "reset_interval": getattr(result, "reset_interval", None),
        "reset_offset": getattr(result, "reset_offset", 0),
        "sim_time_s": float(result.sim_time_s),
        "load_time_s": float(load_time_s),
        "layers": list(result.layers),
        "layer_shapes": {
            name: list(file_shape(shapes[name], layout)) for name in result.layers
            if name in shapes
        },
        "spike_counts": {
            name: {
                "total": int(np.asarray(result.spike_counts[name]).sum()),
                "per_sample": [int(c) for c in np.asarray(result.spike_counts[name])],
                "rate_per_neuron_per_step": rows[name]["rate"],
            }
            for name in result.layers if name in result.spike_counts
        },
        "traces": {},
    }
    if extra:
        data.update(extra)
    return data


def _trace_items(result: RunResult) -> list[tuple[str, np.ndarray]]:
    """Traces in layer order, then u, v, s."""
    order = {name: i for i, name in enumerate(result.layers)}

    def key(item: tuple[str, np.ndarray]) -> tuple[int, int, str]:
        layer, _, what = item[0].rpartition(".")
        rank = RECORDABLE.index(what) if what in RECORDABLE else len(RECORDABLE)
        return (order.get(layer, len(order)), rank, item[0])

    return sorted(result.traces.items(), key=key)


def save_run(
    result: RunResult, out_dir: PathLike, *, model_name: str, load_time_s: float,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/trace.npz`` and ``out_dir/summary.json`` atomically; return ``out_dir``.

    ``trace.npz`` holds ``<layer>.u``, ``<layer>.v``, ``<layer>.s`` in layer order, time on
    the last axis, in the model file's layout ((W, H, C, T) for netx models), with a leading
    batch axis only when the inputs were a batch. ``summary.json`` holds the run options,
    ``sim_time_s``/``load_time_s`` (seconds), per-layer spike counts (total, per sample, rate
    per neuron per step), the layer order, model name and neurodeploy version; ``extra`` adds
    keys. Everything is written to a temporary folder beside ``out_dir`` and renamed at the
    end, so a failure leaves no partial output. See :func:`check_out_dir` for what may be
    overwritten.
    """
    out = check_out_dir(out_dir)

    def write(tmp: Path) -> None:
        data = summary(result, model_name=model_name, load_time_s=load_time_s, extra=extra)
        arrays = {}
        for name, arr in _trace_items(result):
            saved = _to_saved(arr, result)
            arrays[name] = saved
            data["traces"][name] = list(saved.shape)
        np.savez_compressed(tmp / "trace.npz", **arrays)
        with open(tmp / "summary.json", "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")

    return write_dir_atomic(out, write)


def timed_load(model: Graph | PathLike) -> tuple[Graph, float]:
    """:func:`load` plus the seconds it took."""
    t0 = time.perf_counter()
    graph = load(model)
    return graph, time.perf_counter() - t0
