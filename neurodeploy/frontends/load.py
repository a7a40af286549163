"""Load a model file into an IR graph, choosing the reader by file suffix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import BadInputFileError, UnsupportedError
from ..ir import Graph
from .netx import read_netx

#: Reader for each supported suffix (lower case).
LOADERS: dict[str, Callable[[Path], Graph]] = {
    ".net": read_netx,
    ".h5": read_netx,
    ".hdf5": read_netx,
}


def load_model(path: str | Path) -> Graph:
    """Read the model at ``path`` (netx ``.net``/``.h5``/``.hdf5``) into a validated IR graph.

    Raises :class:`BadInputFileError` for a missing file and :class:`UnsupportedError` for an
    unknown suffix (naming the supported ones).
    """
    path = Path(path)
    reader = LOADERS.get(path.suffix.lower())
    if reader is None:
        raise UnsupportedError(
            f"{path}: unsupported model file suffix {path.suffix or '(none)'!r}; "
            f"supported: {', '.join(LOADERS)}"
        )
    if not path.is_file():
        raise BadInputFileError(path, "no such file")
    return reader(path)
