"""Target descriptions (installed as ``neurodeploy.targets``): the chips and ANN devices a
network can be mapped and costed on, as TOML data with a source for every number.

``load_target("loihi2")`` reads a built-in file, ``load_target("my.toml")`` a user's file;
both are validated against one schema (required keys by kind, types, ranges, and a
``[sources]`` entry for every number) and fail with a one-line
:class:`~neurodeploy.errors.BadInputFileError` naming the file and key. Units are SI: joules,
seconds, watts, bits. ``docs/targets.md`` explains the fields and how to add a target.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInputFileError, NeurodeployError, UnsupportedError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10
    import tomli as tomllib

SCHEMA = 1
KINDS = ("neuromorphic", "ann")
BUILTIN_DIR = Path(__file__).resolve().parent
SYNAPSE_ENCODINGS = ("dense", "sparse", "conv")

# Required numeric keys per section and kind: name -> (min, max, integer?)
_INT = True
_NUM = False
_NEURO: dict[str, dict[str, tuple[float, float, bool]]] = {
    "resources": {
        "cores_per_chip": (1, 1 << 20, _INT),
        "chips_per_board": (1, 1 << 20, _INT),
        "neurons_per_core": (1, 1 << 24, _INT),
        "synaptic_memory_bits_per_core": (1, 1 << 40, _INT),
        "input_axons_per_core": (1, 1 << 24, _INT),
        "output_axons_per_core": (1, 1 << 24, _INT),
        "cores_per_tile": (1, 1 << 10, _INT),
        "max_delay": (0, 1 << 16, _INT),
    },
    "precision": {
        "weight_bits_max": (1, 32, _INT),
        "weight_exp_min": (-64, 0, _INT),
        "weight_exp_max": (0, 64, _INT),
        "decay_bits": (1, 32, _INT),
        "threshold_mant_bits": (1, 32, _INT),
        "state_bits": (1, 64, _INT),
        "bias_mant_bits": (1, 32, _INT),
        "message_bits_max": (0, 32, _INT),
    },
    "energy": {k: (0.0, 1.0, _NUM) for k in (
        "syn_op", "neuron_update_active", "neuron_update_inactive", "spike_out",
        "local_spike", "hop_ew", "hop_ns")} | {"static_power_per_chip": (0.0, 1e3, _NUM)},
    "time": {k: (0.0, 1.0, _NUM) for k in (
        "syn_op", "neuron_update_active", "neuron_update_inactive", "spike_out", "message_in",
        "local_spike", "hop_ew", "hop_ns", "multichip_barrier")}
    | {"link_bandwidth": (1.0, 1e18, _NUM)},
}
_ANN: dict[str, dict[str, tuple[float, float, bool]]] = {
    "energy": {k: (0.0, 1.0, _NUM) for k in (
        "mac_fp32", "ac_fp32", "mac_int8", "ac_int8", "sram_read_32b", "dram_read_32b",
        "device_op")},
    "time": {"macs_per_second": (1.0, 1e18, _NUM)},
}
_OPTIONAL_NUMERIC = {"energy": ("syn_op_sparse", "syn_op_conv"),
                     "time": ("syn_op_sparse", "syn_op_conv"),
                     "resources": ("neuron_state_bits",),
                     "proxy": ("k_energy", "k_time")}
_TOP_STRINGS = ("name", "kind", "description", "energy_scope", "confidence")


@dataclass(frozen=True)
class Target:
    """A validated target: the TOML tables as dicts plus where it came from.

    ``energy``/``time`` hold joules/seconds per event (neuromorphic) or per op (ANN);
    ``resources``/``precision`` are empty for ANN devices. ``sources`` maps dotted keys
    (``"energy.syn_op"``) to the citation of that number."""

    name: str
    kind: str
    description: str
    energy_scope: str
    confidence: str
    path: Path
    programmable_neurons: bool = False
    int8: bool = False
    resources: dict[str, Any] = field(default_factory=dict)
    precision: dict[str, Any] = field(default_factory=dict)
    energy: dict[str, float] = field(default_factory=dict)
    time: dict[str, Any] = field(default_factory=dict)
    proxy: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def is_neuromorphic(self) -> bool:
        return self.kind == "neuromorphic"

    def require_neuromorphic(self, action: str) -> Target:
        """This target, or an :class:`UnsupportedError` when it is an ANN device; ``action``
        says what needs a chip (e.g. ``"compile for"``)."""
        if not self.is_neuromorphic:
            raise UnsupportedError(f"target {self.name} is an ANN device; {action} a "
                                   "neuromorphic target (loihi1, loihi1-sanafe, loihi2)")
        return self

    @property
    def mesh_tiles(self) -> tuple[int, int]:
        return tuple(self.resources["mesh_tiles"])  # type: ignore[return-value]

    @property
    def cores_per_mesh(self) -> int:
        """Cores a chip's mesh can hold (tiles × cores per tile)."""
        x, y = self.mesh_tiles
        return x * y * int(self.resources["cores_per_tile"])

    def syn_op_energy(self, encoding: str = "dense") -> float:
        """Joules per synaptic op for a synapse encoding (falls back to the dense value)."""
        return float(self.energy.get(f"syn_op_{encoding}", self.energy["syn_op"]))

    def syn_op_time(self, encoding: str = "dense") -> float:
        """Seconds per synaptic op for a synapse encoding (falls back to the dense value)."""
        return float(self.time.get(f"syn_op_{encoding}", self.time["syn_op"]))

    def barrier_time(self, tiles: int, chips: int = 1) -> float:
        """Seconds of barrier synchronization per step for ``tiles`` tiles in use
        (piecewise-linear in the target's table, clamped), or the multi-chip value."""
        if chips > 1:
            return float(self.time["multichip_barrier"])
        xs, ys = self.time["barrier_tiles"], self.time["barrier"]
        if tiles <= xs[0]:
            return float(ys[0])
        for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
            if tiles <= x1:
                return float(y0 + (y1 - y0) * (tiles - x0) / (x1 - x0))
        return float(ys[-1])

    def summary(self) -> dict[str, Any]:
        """What ``neurodeploy targets`` prints for this target."""
        row: dict[str, Any] = {"name": self.name, "kind": self.kind,
                               "description": self.description}
        if self.is_neuromorphic:
            r = self.resources
            row.update(cores_per_chip=r["cores_per_chip"], neurons_per_core=r["neurons_per_core"],
                       synaptic_memory_kib_per_core=r["synaptic_memory_bits_per_core"] // 8192,
                       programmable_neurons=self.programmable_neurons)
        return row


def builtin_names() -> list[str]:
    """Names of the target files shipped with neurodeploy."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def _fail(path: Path, problem: str) -> BadInputFileError:
    return BadInputFileError(path, problem, hint="see docs/targets.md for the target schema")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_section(path: Path, data: dict[str, Any], section: str,
                   spec: dict[str, tuple[float, float, bool]]) -> dict[str, Any]:
    table = data.get(section)
    if not isinstance(table, dict):
        raise _fail(path, f"missing table [{section}]")
    for key, (lo, hi, integer) in spec.items():
        if key not in table:
            raise _fail(path, f"[{section}] is missing {key!r}")
        value = table[key]
        if not _is_number(value) or (integer and not isinstance(value, int)):
            kind = "an integer" if integer else "a number"
            raise _fail(path, f"{section}.{key} must be {kind}, got {value!r}")
        if not math.isfinite(value) or not lo <= value <= hi:
            raise _fail(path, f"{section}.{key} = {value!r} is outside [{lo:g}, {hi:g}]")
    for key in _OPTIONAL_NUMERIC.get(section, ()):
        if key in table and (not _is_number(table[key]) or not math.isfinite(table[key])
                             or table[key] < 0):
            raise _fail(path, f"{section}.{key} must be a non-negative number")
    known = set(spec) | set(_OPTIONAL_NUMERIC.get(section, ())) | {
        "mesh_tiles", "synapse_encodings", "barrier_tiles", "barrier", "population_axons"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise _fail(path, f"[{section}] has unknown key(s) {', '.join(unknown)}")
    return dict(table)


def _numeric_leaves(data: dict[str, Any]) -> list[str]:
    keys = []
    for section in ("resources", "precision", "energy", "time", "proxy"):
        for key, value in data.get(section, {}).items():
            if _is_number(value) or (isinstance(value, list) and value
                                     and all(_is_number(v) for v in value)):
                keys.append(f"{section}.{key}")
    return keys


def _validate(path: Path, data: dict[str, Any]) -> Target:
    if data.get("schema") != SCHEMA:
        raise _fail(path, f"schema must be {SCHEMA}, got {data.get('schema')!r}")
    for key in _TOP_STRINGS:
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise _fail(path, f"{key!r} must be a non-empty string")
    kind = data["kind"]
    if kind not in KINDS:
        raise _fail(path, f"kind {kind!r} must be one of {', '.join(KINDS)}")
    allowed_top = set(_TOP_STRINGS) | {"schema", "programmable_neurons", "int8", "resources",
                                       "precision", "energy", "time", "proxy", "sources"}
    unknown = sorted(set(data) - allowed_top)
    if unknown:
        raise _fail(path, f"unknown top-level key(s) {', '.join(unknown)}")
    for flag in ("programmable_neurons", "int8"):
        if flag in data and not isinstance(data[flag], bool):
            raise _fail(path, f"{flag!r} must be true or false")
    spec = _NEURO if kind == "neuromorphic" else _ANN
    tables = {section: _check_section(path, data, section, s) for section, s in spec.items()}
    if "proxy" in data:
        tables["proxy"] = _check_section(path, data, "proxy", {})
    if kind == "neuromorphic":
        res, tim, prec = tables["resources"], tables["time"], tables["precision"]
        mesh = res.get("mesh_tiles")
        if (not isinstance(mesh, list) or len(mesh) != 2
                or not all(isinstance(v, int) and v > 0 for v in mesh)):
            raise _fail(path, "resources.mesh_tiles must be two positive integers [x, y]")
        if mesh[0] * mesh[1] * res["cores_per_tile"] < res["cores_per_chip"]:
            raise _fail(path, f"resources.mesh_tiles {mesh} x cores_per_tile "
                              f"{res['cores_per_tile']} holds fewer than cores_per_chip "
                              f"{res['cores_per_chip']}")
        if not isinstance(res.get("population_axons", False), bool):
            raise _fail(path, "resources.population_axons must be true or false")
        enc = res.get("synapse_encodings")
        if (not isinstance(enc, list) or not enc or "dense" not in enc
                or any(e not in SYNAPSE_ENCODINGS for e in enc)):
            raise _fail(path, "resources.synapse_encodings must list 'dense' and only "
                              f"{', '.join(SYNAPSE_ENCODINGS)}")
        xs, ys = tim.get("barrier_tiles"), tim.get("barrier")
        if (not isinstance(xs, list) or not isinstance(ys, list) or not xs
                or len(xs) != len(ys) or not all(_is_number(v) and v > 0 for v in xs + ys)
                or any(b <= a for a, b in zip(xs, xs[1:]))):
            raise _fail(path, "time.barrier_tiles and time.barrier must be equal-length "
                              "positive lists with increasing tile counts")
        if prec["weight_exp_min"] > prec["weight_exp_max"]:
            raise _fail(path, "precision.weight_exp_min > weight_exp_max")
    sources = data.get("sources")
    if not isinstance(sources, dict) or not all(
            isinstance(v, str) and v.strip() for v in sources.values()):
        raise _fail(path, "[sources] must map every number's key to a citation string")
    missing = [k for k in _numeric_leaves(data) if k not in sources]
    if missing:
        raise _fail(path, f"no source for {', '.join(missing)} (add them to [sources])")
    return Target(
        name=data["name"], kind=kind, description=data["description"],
        energy_scope=data["energy_scope"], confidence=data["confidence"], path=path,
        programmable_neurons=bool(data.get("programmable_neurons", False)),
        int8=bool(data.get("int8", False)),
        resources=tables.get("resources", {}), precision=tables.get("precision", {}),
        energy=tables["energy"], time=tables["time"], proxy=tables.get("proxy", {}),
        sources=dict(sources),
    )


def load_target(spec: str | Path) -> Target:
    """Load a built-in target by name (``"loihi2"``) or a user's TOML file by path."""
    path = Path(spec)
    if path.suffix.lower() != ".toml":
        if str(spec) not in builtin_names():
            raise NeurodeployError(
                f"unknown target {str(spec)!r}; built-in targets: {', '.join(builtin_names())} "
                "(or give the path of a .toml file)")
        path = BUILTIN_DIR / f"{spec}.toml"
    if not path.is_file():
        raise BadInputFileError(path, "no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not valid TOML ({exc})") from None
    return _validate(path, data)


def all_targets() -> list[Target]:
    """Every built-in target, loaded and validated."""
    return [load_target(name) for name in builtin_names()]
