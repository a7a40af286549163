"""Load a model file into an IR graph, choosing the reader by file suffix (and, for HDF5, by
content: neurodeploy's own serialized IR or a lava-dl netx network)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import BadInputFileError, UnsupportedError
from ..ir import Graph


def _read_hdf5(path: Path, **options: Any) -> Graph:
    """``.h5``/``.hdf5``/``.net``: neurodeploy IR (``format="neurodeploy-ir"``) or netx."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
    except OSError as exc:
        raise BadInputFileError(path, f"not a readable HDF5 file ({exc})") from None
    if isinstance(fmt, bytes):
        fmt = fmt.decode("utf-8", "replace")
    if fmt == "neurodeploy-ir":
        from ..ir.serialize import load_graph

        return load_graph(path)
    from .netx import read_netx

    return read_netx(path)


def _read_checkpoint(path: Path, **options: Any) -> Graph:
    """A neurodeploy training checkpoint (``model.pt``) traced to IR with torch.fx."""
    from ..models.checkpoint import load_checkpoint
    from .torch import from_torch

    model, config, _ = load_checkpoint(path)
    graph = from_torch(model, in_shape=tuple(config["in_shape"]))
    return graph.with_metadata(source=str(path), model_config=config)


def _read_onnx(path: Path, **options: Any) -> Graph:
    from .onnx import read_onnx

    return read_onnx(path)


def _read_nir(path: Path, *, dt: float | None = None, **options: Any) -> Graph:
    from .nir import read_nir

    return read_nir(path, dt=dt)


#: Reader for each supported suffix (lower case).
LOADERS: dict[str, Callable[..., Graph]] = {
    ".net": _read_hdf5,
    ".h5": _read_hdf5,
    ".hdf5": _read_hdf5,
    ".pt": _read_checkpoint,
    ".onnx": _read_onnx,
    ".nir": _read_nir,
}


def load_model(path: str | Path, *, dt: float | None = None) -> Graph:
    """Read the model at ``path`` into a validated IR graph.

    Supported: lava-dl netx (``.net``/``.h5``/``.hdf5``), neurodeploy's serialized IR (HDF5
    with ``format="neurodeploy-ir"``), training checkpoints (``.pt``, traced with torch.fx),
    ONNX ANNs (``.onnx``) and NIR graphs (``.nir``; ``dt`` in seconds, NIR files carry none).
    A folder is read through the model file inside it (``model.pt``, ``snn.ir.h5``,
    ``network.net``). Raises :class:`BadInputFileError` for a missing file and
    :class:`UnsupportedError` for an unknown suffix (naming the supported ones).
    """
    path = Path(path)
    if path.is_dir():
        path = _model_in_folder(path)
    reader = LOADERS.get(path.suffix.lower())
    if reader is None:
        raise UnsupportedError(
            f"{path}: unsupported model file suffix {path.suffix or '(none)'!r}; "
            f"supported: {', '.join(LOADERS)}"
        )
    if not path.is_file():
        raise BadInputFileError(path, "no such file")
    return reader(path, dt=dt)


#: Model files looked for, in order, when a folder is given.
FOLDER_MODEL_FILES = ("network.net", "model.ir.h5", "snn.ir.h5", "model.pt", "model.onnx",
                      "model.nir")


def _model_in_folder(folder: Path) -> Path:
    for name in FOLDER_MODEL_FILES:
        if (folder / name).is_file():
            return folder / name
    raise BadInputFileError(
        folder, "folder holds no model file",
        hint=f"expected one of {', '.join(FOLDER_MODEL_FILES)}")
