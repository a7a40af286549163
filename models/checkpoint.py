"""Checkpoint files of zoo models: the weights plus the config that rebuilds the model.

A checkpoint is one ``torch.save`` file that loads with ``torch.load(path, weights_only=True)``
(nothing is ever unpickled beyond tensors and plain containers). It holds::

    {"format": "neurodeploy-checkpoint", "version": 1,
     "config": <zoo config dict>, "metrics": <dict of numbers/strings>,
     "state_dict": {name: tensor}}

Writes are atomic (temporary file in the same folder, then ``os.replace``). Loading checks the
format tag, version, keys, config, and every tensor of the state dict against the model that
the config rebuilds (names, shapes, dtypes, finite values) before any weight is allocated;
each problem is a one-line :class:`~neurodeploy.errors.BadInputFileError`.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BadInputFileError
from . import zoo

FORMAT = "neurodeploy-checkpoint"
VERSION = 1
_KEYS = ("format", "version", "config", "metrics", "state_dict")
_HINT = "write checkpoints with neurodeploy.models.checkpoint.save_checkpoint"
#: What ``torch.load`` raises on corrupt, truncated or pickled-object files.
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError,
                AttributeError, ImportError, IndexError, KeyError, UnicodeDecodeError,
                zipfile.BadZipFile, struct.error, OSError)


CHECKPOINT_NAME = "model.pt"
#: The shipped demo checkpoint folder (a BNTT CNN trained on mnist5k; its ANN twin is
#: ``demo_cnn_ann`` beside it): the default model of ``sam``, ``attack``, ``prune`` and ``demo``.
DEMO_MODEL = Path(__file__).resolve().parent / "checkpoints" / "demo_cnn"


def checkpoint_file(path: str | os.PathLike[str]) -> Path | None:
    """The checkpoint ``path`` names: a ``.pt`` file itself, or a folder's ``model.pt``
    (what ``neurodeploy train`` writes); None when there is none."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".pt":
        return p
    if p.is_dir() and (p / CHECKPOINT_NAME).is_file():
        return p / CHECKPOINT_NAME
    return None


def twin_checkpoint(source: str | os.PathLike[str]) -> Path | None:
    """The trained ANN twin of an SNN checkpoint: ``model.pt`` in the folder
    ``<SNN folder>_ann`` beside it (the shipped ``demo_cnn``/``demo_cnn_ann``), or None."""
    p = Path(source)
    folder = p if p.is_dir() else p.parent
    return checkpoint_file(folder.with_name(folder.name + "_ann"))


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON-able primitives (numbers from numpy/torch scalars become floats/ints)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalar
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {k!r}")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    raise TypeError(f"{where}: {type(value).__name__} is not a number, string, list or dict")


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write through ``write(file)`` to a temporary file beside ``path`` (synced), then rename
    it (:func:`neurodeploy.outdir.write_file_atomic`)."""
    from ..outdir import write_file_atomic

    def to(tmp: Path) -> None:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    write_file_atomic(path, to)


def _check_state(state: Mapping[str, Any], expected: Mapping[str, tuple[torch.Size, torch.dtype]]
                 ) -> str | None:
    """The first way ``state`` does not fit the rebuilt model, or ``None``."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        return f"state_dict lacks {len(missing)} tensor(s) of the model, e.g. {missing[:3]}"
    if unexpected:
        return f"state_dict has {len(unexpected)} tensor(s) the model lacks, e.g. {unexpected[:3]}"
    for key, (shape, dtype) in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            return f"state_dict[{key!r}] is a {type(value).__name__}, not a tensor"
        if value.shape != shape:
            return (f"state_dict[{key!r}] has shape {tuple(value.shape)}, the config's model "
                    f"needs {tuple(shape)}")
        if value.dtype.is_floating_point != dtype.is_floating_point or value.is_complex():
            return f"state_dict[{key!r}] has dtype {value.dtype}, the model needs {dtype}"
        if value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
            return f"state_dict[{key!r}] holds NaN or infinite values"
    return None


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, config: Mapping[str, Any], *,
                    metrics: Mapping[str, Any] | None = None,
                    write_config: bool = False) -> Path:
    """Save ``model``'s weights with the ``config`` that rebuilds it, atomically, to ``path``.

    ``metrics`` is an optional dict of numbers/strings (accuracy, epoch, …); numpy/torch
    scalars are stored as Python numbers. ``write_config=True`` also writes ``config.json``
    beside the file. Returns the path written.

    Raises :class:`~neurodeploy.models.zoo.ModelConfigError` when ``config`` is invalid or does
    not describe ``model`` (different tensor names or shapes), ``TypeError`` for metrics that
    are not plain values.
    """
    path = Path(path)
    config = zoo.validate_config(config)
    metrics = _plain(dict(metrics or {}), "metrics")
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    problem = _check_state(state, zoo.state_shapes(config))
    if problem is not None:
        raise zoo.ModelConfigError(f"the model does not match its config: {problem}",
                                   hint="pass the config the model was built from")
    payload = {"format": FORMAT, "version": VERSION, "config": config, "metrics": metrics,
               "state_dict": state}
    _atomic_write(path, lambda f: torch.save(payload, f))
    if write_config:
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        _atomic_write(path.parent / "config.json", lambda f: f.write(text.encode()))
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any],
                                                           dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`: ``(model, config, metrics)``.

    The model is rebuilt with :func:`~neurodeploy.models.zoo.build_model` from the stored
    config, gets the stored weights and is put in ``eval()``, on the CPU. Only tensors and
    plain containers are read (``weights_only=True``). Raises
    :class:`~neurodeploy.errors.BadInputFileError` (one line) for a missing, truncated or
    pickled-object file, a wrong format tag or version, missing keys, a bad config, or a
    state dict that does not fit the rebuilt model.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputFileError(path, "no such checkpoint file", hint="check the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = str(err).rpartition("WeightsUnpickler error:")[2].strip()
        detail = " ".join(detail.split())[:120] or type(err).__name__
        raise BadInputFileError(
            path, f"refused: not a weights-only torch file, it holds pickled Python objects or "
            f"is corrupt ({detail})",
            hint=f"{_HINT}; arbitrary pickles are never loaded, for safety") from None
    except _LOAD_ERRORS as err:
        detail = " ".join(str(err).split())[:120]
        raise BadInputFileError(
            path, f"truncated or corrupt checkpoint file ({type(err).__name__}"
            f"{': ' + detail if detail and detail != type(err).__name__ else ''})",
            hint=f"re-save it; {_HINT}") from None
    if not isinstance(obj, dict):
        raise BadInputFileError(path, f"holds a {type(obj).__name__}, not a checkpoint dict",
                                hint=_HINT)
    if obj.get("format") != FORMAT:
        raise BadInputFileError(path, f"format tag is {obj.get('format')!r}, not {FORMAT!r}",
                                hint=_HINT)
    if obj.get("version") != VERSION:
        raise BadInputFileError(
            path, f"checkpoint version {obj.get('version')!r} is not supported (this "
            f"neurodeploy reads version {VERSION})", hint="upgrade neurodeploy or re-save it")
    missing = [k for k in _KEYS if k not in obj]
    extra = [str(k) for k in obj if k not in _KEYS]
    if missing or extra:
        what = f"lacks keys {missing}" if missing else f"has unknown keys {extra}"
        raise BadInputFileError(path, f"checkpoint {what}", hint=_HINT)
    try:
        config = zoo.validate_config(obj["config"])
    except zoo.ModelConfigError as err:
        raise BadInputFileError(path, err.message, hint=err.hint) from None
    metrics = obj["metrics"]
    if not isinstance(metrics, dict) or not all(isinstance(k, str) for k in metrics):
        raise BadInputFileError(path, "metrics must be a dict with string keys", hint=_HINT)
    state = obj["state_dict"]
    if not isinstance(state, dict):
        raise BadInputFileError(path, f"state_dict is a {type(state).__name__}, not a dict",
                                hint=_HINT)
    problem = _check_state(state, zoo.state_shapes(config))
    if problem is not None:
        raise BadInputFileError(path, problem,
                                hint="the weights were saved from a different model than the "
                                     "stored config describes")
    model = zoo.build_model(config)
    model.load_state_dict(state, strict=True)
    return model.eval(), config, metrics


__all__ = ["FORMAT", "VERSION", "load_checkpoint", "save_checkpoint"]
