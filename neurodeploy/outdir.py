"""Output folders and the JSON documents in them: every command that writes a folder
(simulate, train, convert, compile, ...) checks it first, fills a temporary folder beside the
destination and renames it into place at the end, so a failure never leaves partial output."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NeurodeployError


def check_out_dir(out_dir: str | os.PathLike[str], owned: Collection[str], *,
                  overwrite: bool, what: str) -> Path:
    """``out_dir`` as a Path if a command that writes the files ``owned`` may write it: a new
    path, an empty folder, or (with ``overwrite``) a folder holding only such files, a previous
    ``what`` (e.g. ``"conversion"``). Files neurodeploy did not write are never replaced.

    Raises :class:`NeurodeployError` (one line, with a hint) otherwise.
    """
    out = Path(out_dir)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise NeurodeployError(f"output path {out} exists and is not a folder")
    if out.is_dir():
        names = sorted(p.name for p in out.iterdir())
        foreign = [n for n in names if n not in owned]
        if foreign:
            shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
            raise NeurodeployError(
                f"refusing to write into {out}: it holds files neurodeploy did not write "
                f"({shown})", hint="choose a new output folder")
        if names and not overwrite:
            raise NeurodeployError(
                f"output folder {out} is not empty (it holds a previous {what})",
                hint="pass overwrite=True (--overwrite) or choose a new folder")
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_file_atomic(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a hidden path beside ``path`` (in the same folder, which must
    exist), then rename it to ``path``; on any failure the temporary file is removed and
    ``path`` is untouched. The file gets the permissions the umask gives new files. Returns
    ``path``."""
    import secrets

    path = Path(path)
    folder = path.absolute().parent
    if not folder.is_dir():
        raise NeurodeployError(f"cannot write {path}: the folder {folder} does not exist")
    tmp = folder / f".{path.name}.{secrets.token_hex(4)}.partial"
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_dir_atomic(out: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a new empty folder beside ``out``, then move it to ``out``.

    An existing ``out`` is replaced only after ``write`` succeeded (and restored if the final
    rename fails). On any failure the temporary folder, and every parent folder this call
    created, are removed. Files and the folder get the permissions the umask gives new ones
    (temporary files are often private). Returns ``out``.
    """
    out = Path(out)
    parent = out.absolute().parent
    created: list[Path] = []
    probe = parent
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        write(tmp)
        mask = _umask()
        for path in tmp.rglob("*"):
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
        tmp.chmod(0o777 & ~mask)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.replace(out, old / out.name)
            try:
                os.replace(tmp, out)
            except OSError:
                os.replace(old / out.name, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for path in created:
            try:
                path.rmdir()
            except OSError:
                break
        raise
    return out


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays and tuples turned into plain JSON types, dict keys
    into strings, and non-finite floats into ``None`` (JSON has no NaN or infinity)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    return value
