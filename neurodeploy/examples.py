"""Built-in example models: real trained networks that lava-dl's wheel ships.

lava-dl 0.6.0 installs its netx test data under ``<site-packages>/tests/lava/lib/dl/netx/``:
trained networks as netx HDF5 files with inputs (and, for PilotNet, traces recorded on Loihi 2
hardware). neurodeploy does not copy them; :func:`resolve` finds them in the installed lava-dl
(``pip install 'neurodeploy[lava]'``, Python 3.10).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from .errors import MissingExtraError, NeurodeployError

#: Where lava-dl's wheel puts its netx test data, relative to site-packages.
NETX_DATA = Path("tests/lava/lib/dl/netx")


@dataclass(frozen=True)
class Example:
    """A built-in example: model file, default input and the run options that fit it.

    Attributes:
        name: the example's name on the command line.
        path: netx HDF5 model file.
        input_path: default input (``.npy`` in netx layout), or None when the example has none.
        input_mode: ``"bias"`` or ``"spikes"``.
        steps: default number of time steps (None: must be given).
        reset_interval: default netx reset interval in steps (None: no reset).
        description: one line for ``--help`` and listings.
    """

    name: str
    path: Path
    input_path: Path | None
    input_mode: str
    steps: int | None
    reset_interval: int | None
    description: str


# name → (model file, default input, input mode, steps, reset interval, description)
_CATALOG: dict[str, tuple[str, str | None, str, int | None, int | None, str]] = {
    "pilotnet": (
        "gts/pilotnet_lif/network.net", "gts/pilotnet_lif/image.npy", "bias", 16, 16,
        "PilotNet CUBA-LIF (5 conv + 4 dense) with a 200x66 driving image as input bias",
    ),
    "tinynet": (
        "tiny.net", "gts/tinynet/input_bias.npy", "bias", 20, 17,
        "3-layer CNN (3x16x16 input, 2 conv) with its input bias",
    ),
    "mnist-mlp": (
        "mnist.net", None, "bias", None, None,
        "784-512-512-10 MLP for MNIST (no bundled input: give --input and --steps)",
    ),
}


def names() -> list[str]:
    """Names of the built-in examples."""
    return list(_CATALOG)


def describe() -> str:
    """One line per example: ``name: description``."""
    return "\n".join(f"{name}: {entry[-1]}" for name, entry in _CATALOG.items())


def netx_data_dir() -> Path:
    """Folder of lava-dl's netx test data; raises :class:`MissingExtraError` without lava-dl."""
    try:
        dist = importlib.metadata.distribution("lava-dl")
    except importlib.metadata.PackageNotFoundError as err:
        raise MissingExtraError(
            "the built-in examples are lava-dl's trained networks, and lava-dl is not installed",
            hint="pip install 'neurodeploy[lava]' on Python 3.10",
        ) from err
    folder = Path(str(dist.locate_file(NETX_DATA)))
    if not folder.is_dir():
        raise MissingExtraError(
            f"lava-dl {dist.version} is installed but its netx test data is missing ({folder})",
            hint="pip install lava-dl==0.6.0",
        )
    return folder


def resolve(name: str) -> Example:
    """The example called ``name`` with absolute file paths.

    Raises :class:`NeurodeployError` listing the names for an unknown ``name`` and
    :class:`MissingExtraError` when lava-dl (or its data) is not installed.
    """
    if name not in _CATALOG:
        raise NeurodeployError(f"unknown example {name!r}; built-in examples: {', '.join(names())}")
    model, inp, mode, steps, reset, text = _CATALOG[name]
    root = netx_data_dir()
    return Example(
        name=name, path=root / model, input_path=root / inp if inp else None, input_mode=mode,
        steps=steps, reset_interval=reset, description=text,
    )
