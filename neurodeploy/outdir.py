"""Atomic output folders: every command that writes a folder (simulate, train, convert, ...)
fills a temporary folder beside the destination and renames it into place at the end, so a
failure never leaves partial output."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
