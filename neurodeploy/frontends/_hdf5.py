"""Checked access to the HDF5 groups of untrusted model files (netx ``.net``, NIR ``.nir``):
every failure is a one-line :class:`~neurodeploy.errors.BadInputFileError` naming the file and
the place in it. The readers subclass :class:`CheckedGroup` for their own field types."""

from __future__ import annotations

import math
from pathlib import Path

import h5py

from ..errors import BadInputFileError
from ..ir.nodes import MAX_ELEMENTS


class CheckedGroup:
    """One HDF5 group of a file being read; ``where`` names it in error messages."""

    def __init__(self, path: Path, group: h5py.Group, where: str) -> None:
        self.path, self.group, self.where = path, group, where

    def fail(self, problem: str) -> BadInputFileError:
        return BadInputFileError(self.path, f"{self.where}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.group

    def _dataset(self, key: str) -> h5py.Dataset:
        """The dataset ``key``: present, a dataset, not empty and at most ``MAX_ELEMENTS``."""
        if key not in self.group:
            raise self.fail(f"missing field {key!r}")
        ds = self.group[key]
        if not isinstance(ds, h5py.Dataset):
            raise self.fail(f"field {key!r} is a group, expected a dataset")
        if ds.shape is None:
            raise self.fail(f"field {key!r} is empty")
        if math.prod(int(s) for s in ds.shape) > MAX_ELEMENTS:
            raise self.fail(f"field {key!r} of shape {ds.shape} is too large")
        return ds
