"""Deployment reports: the versioned ``report.json`` document, its checker, the self-contained
``report.html`` (plots as inline SVG, no scripts, no external resources) and the short
terminal summary behind ``neurodeploy report DIR``.

Schema ``neurodeploy-report`` version 1 (stable keys; producers may add keys, readers ignore
the ones they do not know). Per-inference numbers are means over the samples of the run.

* ``schema``: ``{"name": "neurodeploy-report", "version": 1}``
* ``model``, ``target``: strings; ``steps`` (time steps per inference, ≥ 1) and ``samples``
  (inferences simulated, ≥ 1): integers
* ``accuracy``: list of ``{"stage", "accuracy" (fraction in [0, 1] or null when unknown),
  "samples"?, "note"?}`` in pipeline order (e.g. float, quantized, hw_sim, lava)
* ``mapping`` (or null): ``cores_used``, ``chips_used``, ``per_layer`` (rows with ``layer``),
  ``per_core`` (rows with ``core``, ``chip``, ``tile`` [x, y] in global tile coordinates,
  ``layer``, ``utilization`` {resource: fraction}); optional ``mesh_tiles`` [x, y],
  ``cores_per_tile``, ``cores_per_chip`` for the mesh drawing: ``mapping.json`` as written by
  :meth:`neurodeploy.mapping.Mapping.to_json` fits as it is
* ``activity`` (or null): ``per_layer`` rows ``{"layer", "neurons", "spikes_per_sample",
  "synops_per_sample", "neuron_updates_per_sample"}`` (per inference)
* ``energy`` (or null): ``per_inference_j`` {``total``, ``dynamic``, ``static``} in joules,
  ``breakdown_j`` {part: J per inference}, ``preset`` (the target file the numbers come
  from), ``scope`` (what the energy covers); optional ``per_step_j`` (list)
* ``latency`` (or null): ``time_per_step_s`` (mean seconds per step, or a list per step),
  ``latency_per_inference_s``, ``throughput_fps`` (null when unknown)
* ``ann_comparison`` (or null): :func:`neurodeploy.ann_cost.compare_doc`'s document
* ``assumptions``: list of strings, every assumption behind the numbers

HTML sections are :class:`Section` renderers in :data:`SECTIONS`; :func:`register_section`
adds one (e.g. SAM heatmaps). A section without data says so instead of failing.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadInputFileError, NeurodeployError
from .outdir import jsonable, write_dir_atomic

SCHEMA = {"name": "neurodeploy-report", "version": 1}
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
REPORT_FILES = (REPORT_JSON, REPORT_HTML)
#: Per-layer activity keys (values per inference).
ACTIVITY_KEYS = ("spikes_per_sample", "synops_per_sample", "neuron_updates_per_sample")
_GENERATOR = '<meta name="generator" content="neurodeploy-report">'


# ------------------------------------------------------------------------------ validation


def _is_num(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Checker:
    """Collects every schema problem as ``"<path>: <problem>"``."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, problem: str) -> None:
        self.problems.append(f"{path}: {problem}")

    def get(self, obj: Mapping[str, Any], key: str, path: str, kind: str, *,
            nullable: bool = False, optional: bool = False, lo: float | None = None,
            hi: float | None = None) -> Any:
        """``obj[key]`` if it has ``kind`` (str, int, num, list, dict, bool, num|list), else
        record the problem and return None."""
        where = f"{path}.{key}" if path else key
        if key not in obj:
            if not optional:
                self.add(where, "missing")
            return None
        value = obj[key]
        if value is None:
            if not (nullable or optional):
                self.add(where, f"must be {_KIND_WORDS[kind]}, got null")
            return None
        ok = {"str": lambda v: isinstance(v, str), "int": _is_int, "num": _is_num,
              "list": lambda v: isinstance(v, list), "dict": lambda v: isinstance(v, dict),
              "bool": lambda v: isinstance(v, bool)}[kind](value)
        if not ok:
            self.add(where, f"must be {_KIND_WORDS[kind]}, got {_describe(value)}")
            return None
        if kind in ("int", "num"):
            if lo is not None and value < lo:
                self.add(where, f"{value!r} is below {lo:g}")
            if hi is not None and value > hi:
                self.add(where, f"{value!r} is above {hi:g}")
        return value


_KIND_WORDS = {"str": "a string", "int": "an integer", "num": "a finite number",
               "list": "a list", "dict": "an object", "bool": "true or false"}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return repr(value)
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value),
                                                                     type(value).__name__)


def _rows(c: _Checker, obj: Mapping[str, Any], key: str, path: str
          ) -> list[tuple[int, dict[str, Any]]]:
    """``(index, row)`` of the object rows of the list ``obj[key]`` (others are problems)."""
    value = c.get(obj, key, path, "list")
    if value is None:
        return []
    rows = []
    for i, row in enumerate(value):
        if isinstance(row, dict):
            rows.append((i, row))
        else:
            c.add(f"{path}.{key}[{i}]", f"must be an object, got {_describe(row)}")
    return rows


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b)) + 1e-30


def _check_accuracy(c: _Checker, doc: Mapping[str, Any]) -> None:
    for i, row in _rows(c, doc, "accuracy", ""):
        path = f"accuracy[{i}]"
        c.get(row, "stage", path, "str")
        c.get(row, "accuracy", path, "num", nullable=True, lo=0.0, hi=1.0)
        c.get(row, "samples", path, "int", optional=True, lo=0)
        c.get(row, "note", path, "str", optional=True)


def _check_mapping(c: _Checker, m: Mapping[str, Any]) -> None:
    p = "mapping"
    c.get(m, "cores_used", p, "int", lo=0)
    c.get(m, "chips_used", p, "int", lo=0)
    for i, row in _rows(c, m, "per_layer", p):
        c.get(row, "layer", f"{p}.per_layer[{i}]", "str")
    mesh = c.get(m, "mesh_tiles", p, "list", optional=True)
    if mesh is not None and (len(mesh) != 2 or not all(_is_int(v) and v > 0 for v in mesh)):
        c.add(f"{p}.mesh_tiles", "must be two positive integers [x, y]")
    c.get(m, "cores_per_tile", p, "int", optional=True, lo=1)
    c.get(m, "cores_per_chip", p, "int", optional=True, lo=1)
    for i, row in _rows(c, m, "per_core", p):
        path = f"{p}.per_core[{i}]"
        c.get(row, "core", path, "int", lo=0)
        c.get(row, "chip", path, "int", lo=0)
        c.get(row, "layer", path, "str")
        tile = c.get(row, "tile", path, "list")
        if tile is not None and (len(tile) != 2 or not all(_is_int(v) and v >= 0
                                                           for v in tile)):
            c.add(f"{path}.tile", "must be two non-negative integers [x, y]")
        util = c.get(row, "utilization", path, "dict")
        for key, value in (util or {}).items():
            if not _is_num(value) or value < 0:
                c.add(f"{path}.utilization.{key}", "must be a non-negative number")


def _check_activity(c: _Checker, a: Mapping[str, Any]) -> None:
    for i, row in _rows(c, a, "per_layer", "activity"):
        path = f"activity.per_layer[{i}]"
        c.get(row, "layer", path, "str")
        c.get(row, "neurons", path, "int", lo=0)
        for key in ACTIVITY_KEYS:
            c.get(row, key, path, "num", lo=0.0)


def _check_energy(c: _Checker, e: Mapping[str, Any]) -> None:
    p = "energy"
    per = c.get(e, "per_inference_j", p, "dict")
    vals = {}
    if per is not None:
        for key in ("total", "dynamic", "static"):
            vals[key] = c.get(per, key, f"{p}.per_inference_j", "num", lo=0.0)
        if all(v is not None for v in vals.values()) and not _close(
                vals["total"], vals["dynamic"] + vals["static"]):
            c.add(f"{p}.per_inference_j", f"total {vals['total']:.6g} J != dynamic + static "
                                          f"{vals['dynamic'] + vals['static']:.6g} J")
    parts = c.get(e, "breakdown_j", p, "dict")
    if parts is not None:
        bad = [k for k, v in parts.items() if not _is_num(v) or v < 0]
        for k in bad:
            c.add(f"{p}.breakdown_j.{k}", "must be a non-negative number")
        total, dyn = vals.get("total"), vals.get("dynamic")
        if not bad and parts and total is not None and dyn is not None:
            s = sum(parts.values())
            if not (_close(s, total) or _close(s, dyn)):
                c.add(f"{p}.breakdown_j", f"parts sum to {s:.6g} J, neither the total "
                                          f"{total:.6g} J nor the dynamic {dyn:.6g} J")
    c.get(e, "preset", p, "str")
    c.get(e, "scope", p, "str")
    steps = c.get(e, "per_step_j", p, "list", optional=True)
    if steps is not None and not all(_is_num(v) and v >= 0 for v in steps):
        c.add(f"{p}.per_step_j", "must hold non-negative numbers")


def _check_latency(c: _Checker, lat: Mapping[str, Any]) -> None:
    p = "latency"
    if "time_per_step_s" not in lat:
        c.add(f"{p}.time_per_step_s", "missing")
    else:
        t = lat["time_per_step_s"]
        if isinstance(t, list):
            if not t or not all(_is_num(v) and v >= 0 for v in t):
                c.add(f"{p}.time_per_step_s", "must be a non-empty list of non-negative numbers")
        elif not _is_num(t) or t < 0:
            c.add(f"{p}.time_per_step_s", f"must be a non-negative number or a list of them, "
                                          f"got {_describe(t)}")
    c.get(lat, "latency_per_inference_s", p, "num", lo=0.0)
    c.get(lat, "throughput_fps", p, "num", nullable=True, lo=0.0)


def _check_comparison(c: _Checker, cmp: Mapping[str, Any]) -> None:
    p = "ann_comparison"
    acc = c.get(cmp, "accuracy", p, "dict")
    for key in ("ann", "snn"):
        if acc is not None:
            c.get(acc, key, f"{p}.accuracy", "num", nullable=True, lo=0.0, hi=1.0)
    ann = c.get(cmp, "ann", p, "dict")
    if ann is not None:
        c.get(ann, "macs", f"{p}.ann", "int", lo=0)
        targets = c.get(ann, "targets", f"{p}.ann", "dict")
        for name, t in (targets or {}).items():
            path = f"{p}.ann.targets.{name}"
            if not isinstance(t, dict):
                c.add(path, "must be an object")
                continue
            for key in ("memory_aware_j", "device_j"):
                c.get(t, key, path, "num", lo=0.0)
            comp = c.get(t, "compute_only_j", path, "dict")
            for key in ("fp32", "int8"):
                if comp is not None:
                    c.get(comp, key, f"{path}.compute_only_j", "num", lo=0.0)
    snn = c.get(cmp, "snn", p, "dict")
    if snn is not None:
        c.get(snn, "energy_j", f"{p}.snn", "num", nullable=True, lo=0.0)
    be = c.get(cmp, "break_even", p, "dict")
    if be is not None:
        c.get(be, "spikes_per_synapse", f"{p}.break_even", "num", lo=0.0)
        band = c.get(be, "band", f"{p}.break_even", "list")
        if band is not None and (len(band) != 2 or not all(_is_num(v) for v in band)):
            c.add(f"{p}.break_even.band", "must be two numbers [low, high]")


def report_problems(doc: Any) -> list[str]:
    """Every way ``doc`` departs from the report schema, as ``"<key path>: <problem>"``
    lines (empty when it conforms)."""
    c = _Checker()
    if not isinstance(doc, dict):
        return [f"report: must be a JSON object, got {_describe(doc)}"]
    schema = c.get(doc, "schema", "", "dict")
    if schema is not None and (schema.get("name") != SCHEMA["name"]
                               or schema.get("version") != SCHEMA["version"]):
        c.add("schema", f"expected {SCHEMA['name']} version {SCHEMA['version']}, got "
                        f"{schema.get('name')!r} version {schema.get('version')!r}")
    c.get(doc, "model", "", "str")
    c.get(doc, "target", "", "str")
    c.get(doc, "steps", "", "int", lo=1)
    c.get(doc, "samples", "", "int", lo=1)
    _check_accuracy(c, doc)
    for key, check in (("mapping", _check_mapping), ("activity", _check_activity),
                       ("energy", _check_energy), ("latency", _check_latency),
                       ("ann_comparison", _check_comparison)):
        section = c.get(doc, key, "", "dict", nullable=True)
        if section is not None:
            check(c, section)
    assumptions = c.get(doc, "assumptions", "", "list")
    if assumptions is not None and not all(isinstance(a, str) for a in assumptions):
        c.add("assumptions", "must hold strings only")
    return c.problems


def validate_report(doc: Any) -> dict[str, Any]:
    """Return ``doc`` if it conforms to the report schema; else raise
    :class:`NeurodeployError` listing every problem."""
    problems = report_problems(doc)
    if problems:
        n = len(problems)
        raise NeurodeployError(
            f"report does not match schema {SCHEMA['name']} v{SCHEMA['version']} "
            f"({n} problem{'s' if n > 1 else ''}): " + "; ".join(problems))
    return doc


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a ``report.json`` (or the one in a folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_JSON
    if not path.is_file():
        raise BadInputFileError(path, "no such file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputFileError(path, f"not valid JSON ({exc})") from None
    problems = report_problems(doc)
    if problems:
        raise BadInputFileError(path, f"not a {SCHEMA['name']} v{SCHEMA['version']} document: "
                                      + "; ".join(problems[:10])
                                      + (f"; … ({len(problems)} problems)"
                                         if len(problems) > 10 else ""))
    return doc


# ------------------------------------------------------------------------------ building


def accuracy_rows(accuracy: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None
                  ) -> list[dict[str, Any]]:
    """``{stage: fraction | None}`` or a list of rows → the report's ``accuracy`` rows."""
    if accuracy is None:
        return []
    if isinstance(accuracy, Mapping):
        return [{"stage": str(k), "accuracy": v} for k, v in accuracy.items()]
    return [dict(row) for row in accuracy]


def make_report(*, model: str, target: str, steps: int, samples: int,
                accuracy: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None = None,
                mapping: Mapping[str, Any] | None = None,
                activity: Mapping[str, Any] | None = None,
                energy: Mapping[str, Any] | None = None,
                latency: Mapping[str, Any] | None = None,
                ann_comparison: Mapping[str, Any] | None = None,
                assumptions: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    """A validated report document from its parts (see the module docstring for each);
    ``extra`` adds keys (e.g. ``warnings``, ``sam``). Numpy values become plain JSON types."""
    from . import __version__

    doc = {"schema": dict(SCHEMA), "neurodeploy": __version__, "model": str(model),
           "target": str(target), "steps": steps, "samples": samples,
           "accuracy": accuracy_rows(accuracy), "mapping": mapping, "activity": activity,
           "energy": energy, "latency": latency, "ann_comparison": ann_comparison,
           "assumptions": list(assumptions), **extra}
    return validate_report(jsonable(doc))


#: Report activity keys filled from the accountant's per-layer counts (per inference).
_FROM_ACCOUNTING = {"spikes_per_sample": ("output_spikes",),
                    "synops_per_sample": ("syn_ops",),
                    "neuron_updates_per_sample": ("active_updates", "inactive_updates"),
                    "active_updates_per_sample": ("active_updates",),
                    "input_spikes_per_sample": ("input_spikes",),
                    "messages_per_sample": ("messages_out",),
                    "hops_per_sample": ("hops_ew", "hops_ns")}


def activity_section(activity: Any) -> dict[str, Any]:
    """The report's ``activity`` section from an accountant result
    (:class:`neurodeploy.accounting.Activity` or its ``to_dict()``: per-layer counts per
    sample under ``output_spikes``, ``syn_ops``, ``active_updates``, ``inactive_updates``,
    ...). Rows also keep ``cores`` and the optional counts above when present."""
    d = activity.to_dict(per_step=False) if hasattr(activity, "to_dict") else dict(activity)
    layers = d["per_layer"]
    items = layers.items() if isinstance(layers, Mapping) else (
        (row["layer"], row) for row in layers)
    rows = []
    for name, counts in items:
        row: dict[str, Any] = {"layer": name, "neurons": int(counts["neurons"])}
        if "cores" in counts:
            row["cores"] = int(counts["cores"])
        for key, parts in _FROM_ACCOUNTING.items():
            if all(p in counts for p in parts):
                row[key] = float(sum(counts[p] for p in parts))
        rows.append(row)
    out: dict[str, Any] = {"per_layer": rows}
    if "totals_per_sample" in d:
        out["totals_per_sample"] = d["totals_per_sample"]
    if d.get("counting_rules"):
        out["counting_rules"] = list(d["counting_rules"])
    return out


# ------------------------------------------------------------------------------ formatting


_PREFIXES = ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"),
             (1e-9, "n"), (1e-12, "p"), (1e-15, "f"))


def si(value: float | None, unit: str = "", digits: int = 3) -> str:
    """``value`` with an SI prefix and ``digits`` significant digits (``"1.23 µJ"``);
    ``"—"`` for None."""
    if value is None or not _is_num(value):
        return "—"
    if value == 0:
        return f"0 {unit}".strip()
    mag = abs(value)
    i = next((k for k, (scale, _) in enumerate(_PREFIXES) if mag >= scale),
             len(_PREFIXES) - 1)
    scaled = float(f"{value / _PREFIXES[i][0]:.{digits}g}")
    if abs(scaled) >= 1000 and i > 0:  # rounding reached the next prefix (999.96 -> 1000)
        i -= 1
        scaled = float(f"{value / _PREFIXES[i][0]:.{digits}g}")
    text = f"{scaled:.{max(digits, 4)}g}"
    return f"{text} {_PREFIXES[i][1]}{unit}".strip()


def _count(value: float | None) -> str:
    """A count per inference: thousands separators below 10^6, SI above."""
    if value is None or not _is_num(value):
        return "—"
    if abs(value) >= 1e6:
        return si(value)
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.3g}"


def _pct(value: float | None) -> str:
    return "—" if value is None or not _is_num(value) else f"{100 * value:.1f}%"


def _mean(value: Any) -> float | None:
    if isinstance(value, list):
        return sum(value) / len(value) if value else None
    return value if _is_num(value) else None


def _ratio(value: float | None) -> str:
    if value is None or not _is_num(value):
        return "—"
    return f"{value:.3g}×"


# ------------------------------------------------------------------------------ terminal


def summary_text(doc: Mapping[str, Any]) -> str:
    """The short terminal summary of a report (a few aligned lines, no trailing newline)."""
    lines = [f"{doc['model']} on {doc['target']}: {doc['steps']} steps per inference, "
             f"{doc['samples']} sample{'s' if doc['samples'] != 1 else ''}"]

    def row(label: str, text: str) -> None:
        lines.append(f"  {label:<10} {text}")

    acc = [r for r in doc.get("accuracy") or []]
    if acc:
        row("accuracy", " · ".join(f"{r['stage']} {_pct(r.get('accuracy'))}" for r in acc))
    m = doc.get("mapping")
    if m:
        row("mapping", f"{m['cores_used']} core{'s' if m['cores_used'] != 1 else ''} on "
                       f"{m['chips_used']} chip{'s' if m['chips_used'] != 1 else ''}")
    a = doc.get("activity")
    if a and a.get("per_layer"):
        tot = {k: sum(r[k] for r in a["per_layer"]) for k in ACTIVITY_KEYS}
        row("activity", f"{_count(tot['spikes_per_sample'])} spikes, "
                        f"{_count(tot['synops_per_sample'])} synaptic ops, "
                        f"{_count(tot['neuron_updates_per_sample'])} neuron updates per "
                        "inference")
    e = doc.get("energy")
    if e:
        per = e["per_inference_j"]
        row("energy", f"{si(per['total'], 'J')} per inference (dynamic "
                      f"{si(per['dynamic'], 'J')}, static {si(per['static'], 'J')}); "
                      f"preset {e['preset']}")
    lat = doc.get("latency")
    if lat:
        row("latency", f"{si(_mean(lat['time_per_step_s']), 's')} per step, "
                       f"{si(lat['latency_per_inference_s'], 's')} per inference, "
                       f"{_count(lat.get('throughput_fps'))} inferences/s")
    cmp = doc.get("ann_comparison")
    if cmp:
        for line in comparison_lines(cmp):
            row("vs ANN", line)
    if e:
        lines.append(f"  scope: {e['scope']}")
    return "\n".join(lines)


def comparison_lines(cmp: Mapping[str, Any]) -> list[str]:
    """One line per ANN target (memory-aware and device energy, ratio to the SNN), then the
    papers' compute-only ratio and the break-even position."""
    snn = cmp.get("snn") or {}
    ratios = cmp.get("ratios") or {}
    lines = []
    for name, t in (cmp.get("ann") or {}).get("targets", {}).items():
        r = ratios.get(name, {})
        lines.append(f"{name}: memory-aware {si(t['memory_aware_j'], 'J')} "
                     f"({_ratio(r.get('memory_aware'))} the SNN), device "
                     f"{si(t['device_j'], 'J')} ({_ratio(r.get('device'))})")
    paper = ratios.get("paper") or {}
    if paper:
        lines.append(f"compute-only (papers' convention): ANN/SNN {_ratio(paper.get('fp32'))} "
                     f"at FP32, {_ratio(paper.get('int8'))} at INT8")
    be = cmp.get("break_even")
    if be:
        lo, hi = be["band"]
        lines.append(f"{be['spikes_per_synapse']:.3g} synaptic ops per synapse per inference: "
                     f"{be['position']} the break-even band {lo:g}–{hi:g}")
    acc = cmp.get("accuracy") or {}
    if acc.get("ann") is not None or acc.get("snn") is not None:
        lines.append(f"accuracy ANN {_pct(acc.get('ann'))}, SNN {_pct(acc.get('snn'))}")
    if snn.get("energy_j") is None:
        lines.append("SNN energy unknown: ratios need a simulated cost")
    return lines


# ------------------------------------------------------------------------------ plots

_PALETTE = ("#3b6ea5", "#e07b39", "#5a9e52", "#c44e52", "#8172b3", "#937860", "#da8bc3",
            "#8c8c8c", "#ccb974", "#64b5cd")


def _figure(width: float, height: float) -> Any:
    """A pyplot-free figure (no GUI backend, no global figure state): savefig renders it
    with matplotlib's SVG backend, or Agg for PNG."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _svg(fig: Any, salt: str) -> str:
    """The figure as an inline ``<svg>`` element (text kept as text, ids salted per figure
    so several SVGs in one page never share an id)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    start = text.find("<svg")
    return text[start:] if start >= 0 else text


def _style_axes(ax: Any) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)


def plot_accuracy(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Bar per pipeline stage (known accuracies only), value labels in percent."""
    known = [r for r in rows if r.get("accuracy") is not None]
    fig = _figure(max(3.5, 1.1 * len(known) + 1.5), 2.8)
    ax = fig.add_subplot()
    xs = range(len(known))
    vals = [100 * r["accuracy"] for r in known]
    ax.bar(xs, vals, color=_PALETTE[0], width=0.6)
    for x, v in zip(xs, vals):
        ax.text(x, v, f"{v:.1f}%", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(list(xs), [r["stage"] for r in known])
    lo = min(vals) if vals else 0
    ax.set_ylim(max(0.0, min(lo - 10, 90)) if lo > 50 else 0, 100.5)
    ax.set_ylabel("accuracy (%)")
    _style_axes(ax)
    return fig


def plot_activity(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Grouped bars per layer: spikes, synaptic ops and neuron updates per inference (log)."""
    import numpy as np

    labels = [r["layer"] for r in rows]
    fig = _figure(max(5.0, 0.9 * len(rows) + 2.5), 3.2)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    width = 0.27
    names = ("spikes", "synaptic ops", "neuron updates")
    for i, (key, name) in enumerate(zip(ACTIVITY_KEYS, names)):
        vals = [r[key] for r in rows]
        ax.bar(x + (i - 1) * width, vals, width, label=name, color=_PALETTE[i])
    if any(r[k] > 0 for r in rows for k in ACTIVITY_KEYS):
        ax.set_yscale("log")
        ax.minorticks_off()
        ax.yaxis.set_major_formatter(_si_formatter(""))
    ax.set_xticks(x, labels, rotation=30 if len(rows) > 6 else 0,
                  ha="right" if len(rows) > 6 else "center")
    ax.set_ylabel("per inference")
    ax.legend(frameon=False, fontsize=8, ncols=3, loc="upper center",
              bbox_to_anchor=(0.5, 1.15))
    _style_axes(ax)
    return fig


def plot_energy(energy: Mapping[str, Any]) -> Any:
    """Horizontal bars of the energy breakdown per inference, with shares of the total."""
    parts = energy.get("breakdown_j") or {}
    total = energy["per_inference_j"]["total"]
    names = list(parts)
    fig = _figure(6.0, 0.45 * max(len(names), 2) + 1.0)
    ax = fig.add_subplot()
    vals = [parts[n] for n in names]
    ys = range(len(names))
    ax.barh(ys, vals, color=[_PALETTE[i % len(_PALETTE)] for i in ys], height=0.6)
    ax.set_yticks(list(ys), [n.replace("_", " ") for n in names])
    ax.invert_yaxis()
    top = max(vals) if vals else 1.0
    for y, v in zip(ys, vals):
        share = f" ({100 * v / total:.1f}%)" if total else ""
        ax.text(v + 0.01 * top, y, f"{si(v, 'J')}{share}", va="center", fontsize=8)
    ax.set_xlim(0, top * 1.35 if top > 0 else 1)
    ax.set_xlabel("energy per inference (J)")
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.xaxis.set_major_formatter(_si_formatter("J"))
    return fig


def _si_formatter(unit: str) -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: si(v, unit, 2) if v else "0")


def _core_layout(per_tile: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(per_tile))
    return cols, math.ceil(per_tile / cols)


def plot_mesh(mapping: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """The chip mesh: every tile split into its cores; a used core is filled by its highest
    resource utilization and labelled with its layer's number; chips in rows of up to four.
    Returns the figure and the layer names in label order (1-based)."""
    import matplotlib.colors as mcolors
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    mx, my = mapping["mesh_tiles"]
    per_tile = int(mapping["cores_per_tile"])
    per_chip = int(mapping.get("cores_per_chip") or mx * my * per_tile)
    chips = max(1, int(mapping.get("chips_used") or 1),
                1 + max((r["chip"] for r in mapping["per_core"]), default=0))
    cols, rows = _core_layout(per_tile)
    layers: list[str] = []
    for r in mapping["per_core"]:
        if r["layer"] not in layers:
            layers.append(r["layer"])
    per_row = min(chips, 4)
    chip_rows = math.ceil(chips / per_row)
    gap = 1.0
    width_tiles = per_row * mx + (per_row - 1) * gap
    height_tiles = chip_rows * my + (chip_rows - 1) * gap
    scale = min(0.55, 11.0 / width_tiles)
    fig = _figure(width_tiles * scale + 1.6, height_tiles * scale + 0.9)
    ax = fig.add_subplot()
    cmap = colormaps["viridis"]
    norm = mcolors.Normalize(0.0, 1.0)

    def origin(chip: int) -> tuple[float, float]:
        r, c = divmod(chip, per_row)
        return c * (mx + gap), (chip_rows - 1 - r) * (my + gap)

    for chip in range(chips):
        ox, oy = origin(chip)
        ax.add_patch(Rectangle((ox - 0.08, oy - 0.08), mx + 0.16, my + 0.16, fill=False,
                               edgecolor="#555555", linewidth=1.0))
        if chips > 1:
            ax.text(ox, oy + my + 0.12, f"chip {chip}", fontsize=7, va="bottom")
        for tx in range(mx):
            for ty in range(my):
                ax.add_patch(Rectangle((ox + tx + 0.04, oy + (my - 1 - ty) + 0.04), 0.92, 0.92,
                                       facecolor="#f7f7f7", edgecolor="#bbbbbb",
                                       linewidth=0.5))
    show_labels = scale * 0.92 / cols >= 0.15 and len(mapping["per_core"]) <= 600
    cw, ch = 0.92 / cols, 0.92 / rows
    if chips <= 4:  # every core slot, unused ones grey
        for chip in range(chips):
            ox, oy = origin(chip)
            for tx in range(mx):
                for ty in range(my):
                    for slot in range(per_tile):
                        sc, sr = slot % cols, slot // cols
                        ax.add_patch(Rectangle(
                            (ox + tx + 0.04 + sc * cw + 0.01,
                             oy + (my - 1 - ty) + 0.04 + (rows - 1 - sr) * ch + 0.01),
                            cw - 0.02, ch - 0.02, facecolor="#e4e4e4", edgecolor="none"))
    for r in mapping["per_core"]:
        chip = int(r["chip"])
        gx, ty = r["tile"]
        tx = gx - chip * mx
        slot = (int(r["core"]) - chip * per_chip) % per_tile
        sc, sr = slot % cols, slot // cols
        ox, oy = origin(chip)
        x0 = ox + tx + 0.04 + sc * cw
        y0 = oy + (my - 1 - ty) + 0.04 + (rows - 1 - sr) * ch
        util = max(r["utilization"].values(), default=0.0)
        colour = cmap(norm(min(util, 1.0)))
        ax.add_patch(Rectangle((x0 + 0.01, y0 + 0.01), cw - 0.02, ch - 0.02,
                               facecolor=colour, edgecolor="white", linewidth=0.4))
        if show_labels:
            ax.text(x0 + cw / 2, y0 + ch / 2, str(layers.index(r["layer"]) + 1),
                    ha="center", va="center", fontsize=6,
                    color="white" if util < 0.6 else "black")
    ax.set_xlim(-0.3, width_tiles + 0.3)
    ax.set_ylim(-0.3, height_tiles + 0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    from matplotlib.cm import ScalarMappable

    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.04, pad=0.02)
    bar.set_label("highest resource utilization", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return fig, layers


def plot_time(latency: Mapping[str, Any]) -> Any:
    """Time per step over the run (a line when given per step, else one bar)."""
    t = latency["time_per_step_s"]
    fig = _figure(6.0, 2.6)
    ax = fig.add_subplot()
    if isinstance(t, list):
        ax.plot(range(1, len(t) + 1), t, marker="o" if len(t) <= 64 else None,
                markersize=3, color=_PALETTE[0])
        ax.set_xlabel("time step")
        ax.set_ylim(0, max(t) * 1.15 if max(t) > 0 else 1)
        mean = sum(t) / len(t)
        ax.axhline(mean, color=_PALETTE[1], linestyle="--", linewidth=1,
                   label=f"mean {si(mean, 's')}")
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    else:
        ax.bar([0], [t], color=_PALETTE[0], width=0.5)
        ax.set_xticks([0], ["mean over steps"])
        ax.set_xlim(-1, 1)
        ax.text(0, t, si(t, "s"), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("time per step (s)")
    ax.yaxis.set_major_formatter(_si_formatter("s"))
    _style_axes(ax)
    return fig


def plot_comparison(cmp: Mapping[str, Any]) -> Any:
    """ANN vs SNN: energy per inference of every variant (log scale), and the SNN's synaptic
    ops per synapse against the break-even band and the modelled break-even rates."""
    snn = cmp.get("snn") or {}
    targets = (cmp.get("ann") or {}).get("targets", {})
    bars: list[tuple[str, float, str]] = []
    if snn.get("energy_j"):
        bars.append((f"SNN on {cmp.get('snn_target') or 'target'}", snn["energy_j"],
                     _PALETTE[2]))
    for p, v in (snn.get("compute_only_j") or {}).items():
        if v:
            bars.append((f"SNN compute-only {p.upper()}", v, "#9fcf98"))
    first = next(iter(targets.values()), None)
    if first:
        for p, v in first["compute_only_j"].items():
            bars.append((f"ANN compute-only {p.upper()}", v, "#a9c2df"))
    for name, t in targets.items():
        bars.append((f"ANN {name} memory-aware", t["memory_aware_j"], _PALETTE[0]))
        bars.append((f"ANN {name} device", t["device_j"], _PALETTE[1]))
    be = cmp.get("break_even")
    fig = _figure(7.0, 0.32 * max(len(bars), 3) + (2.0 if be else 0.6))
    if be:
        gs = fig.add_gridspec(2, 1, height_ratios=[max(len(bars), 3) * 0.32, 1.3], hspace=0.55)
        ax, ax2 = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    else:
        ax, ax2 = fig.add_subplot(), None
    ys = range(len(bars))
    vals = [max(b[1], 1e-30) for b in bars]
    ax.barh(ys, vals, color=[b[2] for b in bars], height=0.65)
    ax.set_yticks(list(ys), [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    if vals:
        ax.set_xscale("log")
        ax.set_xlim(min(vals) / 3, max(vals) * 30)
        ax.minorticks_off()
        ax.xaxis.set_major_formatter(_si_formatter("J"))
        for y, v in zip(ys, vals):
            ax.text(v * 1.1, y, si(v, "J"), va="center", fontsize=7)
    ax.set_xlabel("energy per inference (J)")
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    if ax2 is not None:
        from matplotlib.ticker import FuncFormatter

        rate = be["spikes_per_synapse"]
        lo, hi = be["band"]
        marks: dict[str, float] = {}  # label -> rate, equal rates share one label
        for k, v in (be.get("rates") or {}).items():
            if v:
                same = next((m for m, w in marks.items() if abs(w - v) <= 1e-3 * v), None)
                label = k.replace(".memory_aware", " mem.").replace(".", " ")
                if same is None:
                    marks[label] = v
                else:
                    marks[f"{same}, {label}"] = marks.pop(same)
        pts = [rate, lo, hi, *marks.values()]
        pos = [p for p in pts if p > 0]
        left = min(pos) / 3 if pos else 0.01
        right = max(pos) * 3 if pos else 10
        ax2.set_xscale("log")
        ax2.set_xlim(left, right)
        ax2.minorticks_off()
        ax2.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax2.set_ylim(0, 1)
        ax2.axvspan(lo, hi, color="#f3d9a4", alpha=0.8, label="break-even band (Dampfhoffer)")
        for i, (k, v) in enumerate(sorted(marks.items(), key=lambda kv: kv[1])):
            ax2.axvline(v, color="#999999", linewidth=0.8, linestyle=":")
            ax2.text(v, 0.95 - 0.22 * (i % 4), f" {k}", fontsize=6, color="#555555",
                     va="top")
        ax2.axvline(max(rate, left), color=_PALETTE[3], linewidth=2.0,
                    label=f"this SNN: {rate:.3g}")
        ax2.set_yticks([])
        ax2.set_xlabel("synaptic ops per synapse per inference")
        ax2.legend(frameon=False, fontsize=7, loc="upper center", ncols=2,
                   bbox_to_anchor=(0.5, 1.45))
        for side in ("top", "right", "left"):
            ax2.spines[side].set_visible(False)
    return fig


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write a figure from this module to ``path`` (format from the suffix: png, svg, pdf)."""
    path = Path(path)
    fig.savefig(path, bbox_inches="tight", dpi=150)
    return path


# ------------------------------------------------------------------------------ HTML


@dataclass(frozen=True)
class Section:
    """One part of ``report.html``: ``id`` (anchor), ``title`` and ``render(doc) -> str``, an
    HTML fragment (escape every string from the document with :func:`html.escape`).

    ``key``: the document key an optional section draws (e.g. ``"sam"``); the section is left
    out of reports whose document lacks it (the core sections have none and always show)."""

    id: str
    title: str
    render: Callable[[Mapping[str, Any]], str]
    key: str | None = None

    def shown(self, doc: Mapping[str, Any]) -> bool:
        """Whether ``doc`` gets this section."""
        return self.key is None or doc.get(self.key) is not None


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _nodata(text: str) -> str:
    return f'<p class="nodata">{_e(text)}</p>'


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> str:
    out = ['<div class="scroll"><table><thead><tr>']
    out += [f"<th>{_e(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(
            f'<td class="{"num" if i >= numeric_from else ""}">{_e(v)}</td>'
            for i, v in enumerate(row)) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _figure_html(fig: Any, salt: str, caption: str = "") -> str:
    svg = _svg(fig, salt)
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure>{svg}{cap}</figure>'


#: Accuracy stage of the network as deployed (what the overview shows first).
DEPLOYED_STAGE = "deployed"


def _overview(doc: Mapping[str, Any]) -> str:
    cards: list[tuple[str, str, str]] = []
    e, lat, m = doc.get("energy"), doc.get("latency"), doc.get("mapping")
    acc = [r for r in doc.get("accuracy") or [] if r.get("accuracy") is not None]
    if acc:  # the deployed network's, else the last fixed-point stage's, else the last
        pick = next((r for r in acc if r["stage"] == DEPLOYED_STAGE),
                    next((r for r in reversed(acc) if r["stage"] in ("hw_sim", "lava")),
                         acc[-1]))
        cards.append(("accuracy", _pct(pick["accuracy"]), f"stage {pick['stage']}"))
    if e:
        cards.append(("energy / inference", si(e["per_inference_j"]["total"], "J"),
                      f"dynamic {si(e['per_inference_j']['dynamic'], 'J')} · static "
                      f"{si(e['per_inference_j']['static'], 'J')}"))
    if lat:
        cards.append(("latency / inference", si(lat["latency_per_inference_s"], "s"),
                      f"{si(_mean(lat['time_per_step_s']), 's')} per step"))
        cards.append(("throughput", f"{_count(lat.get('throughput_fps'))}", "inferences/s"))
    if m:
        cards.append(("cores", f"{m['cores_used']:,}",
                      f"on {m['chips_used']} chip{'s' if m['chips_used'] != 1 else ''}"))
    cmp = doc.get("ann_comparison")
    if cmp and cmp.get("break_even"):
        be = cmp["break_even"]
        cards.append(("synaptic ops / synapse", f"{be['spikes_per_synapse']:.3g}",
                      f"{be['position']} band {be['band'][0]:g}–{be['band'][1]:g}"))
    out = ['<dl class="facts">',
           f"<div><dt>model</dt><dd>{_e(doc['model'])}</dd></div>",
           f"<div><dt>target</dt><dd>{_e(doc['target'])}</dd></div>",
           f"<div><dt>time steps / inference</dt><dd>{doc['steps']:,}</dd></div>",
           f"<div><dt>samples simulated</dt><dd>{doc['samples']:,}</dd></div>", "</dl>"]
    out.append('<div class="cards">')
    for title, value, sub in cards:
        out.append(f'<div class="card"><div class="k">{_e(title)}</div>'
                   f'<div class="v">{_e(value)}</div><div class="s">{_e(sub)}</div></div>')
    out.append("</div>")
    if e:
        out.append(f'<p class="scope">Energy preset <b>{_e(e["preset"])}</b>; scope: '
                   f'{_e(e["scope"])}.</p>')
    else:
        out.append(_nodata("No energy estimate in this report."))
    warnings = doc.get("warnings") or []
    if warnings:
        out.append('<ul class="warn">' + "".join(f"<li>{_e(w)}</li>" for w in warnings)
                   + "</ul>")
    return "".join(out)


def _accuracy(doc: Mapping[str, Any]) -> str:
    rows = doc.get("accuracy") or []
    if not rows:
        return _nodata("No accuracy was measured for this run (pass labelled data to "
                       "measure it per stage).")
    out = []
    if any(r.get("accuracy") is not None for r in rows):
        out.append(_figure_html(plot_accuracy(rows), "accuracy"))
    else:
        out.append(_nodata("No stage has a known accuracy."))
    out.append(_table(["stage", "accuracy", "samples", "note"],
                      [(r["stage"], _pct(r.get("accuracy")),
                        _count(r.get("samples")) if r.get("samples") is not None else "—",
                        r.get("note", "")) for r in rows]))
    return "".join(out)


def _activity(doc: Mapping[str, Any]) -> str:
    a = doc.get("activity")
    rows = (a or {}).get("per_layer") or []
    if not rows:
        return _nodata("No per-layer activity in this report.")
    steps = doc["steps"]

    def rate(r: Mapping[str, Any]) -> str:
        n = r["neurons"]
        return f"{r['spikes_per_sample'] / (n * steps):.4f}" if n else "—"

    extra = [(k, label) for k, label in (("active_updates_per_sample", "active updates"),
                                         ("input_spikes_per_sample", "input events"),
                                         ("hops_per_sample", "tile hops"))
             if all(k in r for r in rows)]
    table = _table(["layer", "neurons", "spikes", "synaptic ops", "neuron updates",
                    *(label for _, label in extra), "spikes / neuron / step"],
                   [(r["layer"], f"{r['neurons']:,}", _count(r["spikes_per_sample"]),
                     _count(r["synops_per_sample"]), _count(r["neuron_updates_per_sample"]),
                     *(_count(r[k]) for k, _ in extra), rate(r)) for r in rows])
    tot = {k: sum(r[k] for r in rows) for k in ACTIVITY_KEYS}
    total = (f'<p>Per inference: {_count(tot["spikes_per_sample"])} spikes, '
             f'{_count(tot["synops_per_sample"])} synaptic ops, '
             f'{_count(tot["neuron_updates_per_sample"])} neuron updates.</p>')
    return _figure_html(plot_activity(rows), "activity",
                        "Counts per inference, mean over the samples (log scale).") + total \
        + table


def _energy(doc: Mapping[str, Any]) -> str:
    e = doc.get("energy")
    if not e:
        return _nodata("No energy estimate in this report.")
    per = e["per_inference_j"]
    out = [f'<p>Total {si(per["total"], "J")} per inference: dynamic '
           f'{si(per["dynamic"], "J")}, static {si(per["static"], "J")} '
           f'(preset <b>{_e(e["preset"])}</b>).</p>']
    if e.get("breakdown_j"):
        out.append(_figure_html(plot_energy(e), "energy"))
        out.append(_table(["part", "energy / inference", "share"],
                          [(k.replace("_", " "), si(v, "J"),
                            _pct(v / per["total"]) if per["total"] else "—")
                           for k, v in e["breakdown_j"].items()]))
    else:
        out.append(_nodata("No breakdown of the energy by part."))
    out.append(f'<p class="scope">Scope: {_e(e["scope"])}.</p>')
    return "".join(out)


def _mesh(doc: Mapping[str, Any]) -> str:
    m = doc.get("mapping")
    if not m:
        return _nodata("No mapping in this report.")
    out = []
    if not m.get("per_core"):
        out.append(_nodata("The mapping lists no cores."))
    elif not m.get("mesh_tiles") or not m.get("cores_per_tile"):
        out.append(_nodata("The mapping has no mesh geometry (mesh_tiles, cores_per_tile), "
                           "so the cores cannot be drawn on the chip."))
    else:
        fig, layers = plot_mesh(m)
        legend = ", ".join(f"{i + 1} = {name}" for i, name in enumerate(layers))
        out.append(_figure_html(
            fig, "mesh", f"{m['cores_used']} cores on {m['chips_used']} chip(s), "
                         f"{m['mesh_tiles'][0]}×{m['mesh_tiles'][1]} tiles of "
                         f"{m['cores_per_tile']} cores per chip; grey cores are unused, numbers "
                         "name the layer. "
                         f"Layers: {legend}."))
    layer_rows = m.get("per_layer") or []
    if layer_rows:
        resources = []
        for r in layer_rows:
            for k in (r.get("utilization") or {}):
                if k not in resources:
                    resources.append(k)
        out.append(_table(
            ["layer", "neurons", "cores", "neurons / core",
             *(f"{k.replace('_', ' ')} (mean)" for k in resources)],
            [(r["layer"], _count(r.get("neurons")), _count(r.get("cores")),
              _count(r.get("neurons_per_core")),
              *(_pct((r.get("utilization") or {}).get(k)) for k in resources))
             for r in layer_rows]))
    return "".join(out)


def _time(doc: Mapping[str, Any]) -> str:
    lat = doc.get("latency")
    if not lat:
        return _nodata("No latency estimate in this report.")
    out = [_figure_html(plot_time(lat), "time")]
    facts = [("time per step (mean)", si(_mean(lat["time_per_step_s"]), "s")),
             ("latency per inference", si(lat["latency_per_inference_s"], "s")),
             ("throughput", f"{_count(lat.get('throughput_fps'))} inferences/s")]
    for key, label, unit in (("pipeline_depth", "pipeline depth", " steps"),
                             ("edp_js", "energy-delay product", " J·s")):
        if _is_num(lat.get(key)):
            facts.append((label, (si(lat[key]) if key == "edp_js" else str(lat[key])) + unit))
    out.append(_table(["quantity", "value"], facts))
    return "".join(out)


def _comparison(doc: Mapping[str, Any]) -> str:
    cmp = doc.get("ann_comparison")
    if not cmp:
        return _nodata("No ANN was given for comparison (neurodeploy compare SNN --ann ANN).")
    return comparison_html(cmp)


def comparison_html(cmp: Mapping[str, Any]) -> str:
    """The ANN-vs-SNN section body: plot, per-target table, break-even and accuracies."""
    out = [_figure_html(plot_comparison(cmp), "compare",
                        "Energy per inference (log scale); below, the SNN's synaptic ops per "
                        "synapse against the break-even band and the rates where its modelled "
                        "energy equals each ANN cost.")]
    ann, snn, ratios = cmp.get("ann") or {}, cmp.get("snn") or {}, cmp.get("ratios") or {}
    rows = []
    for name, t in ann.get("targets", {}).items():
        r = ratios.get(name, {})
        rows.append((name, t.get("precision", ""), si(t["compute_only_j"]["fp32"], "J"),
                     si(t["compute_only_j"]["int8"], "J"), si(t["memory_aware_j"], "J"),
                     si(t["device_j"], "J"), si(t.get("latency_s"), "s"),
                     _ratio(r.get("memory_aware")), _ratio(r.get("device"))))
    if rows:
        out.append(_table(["ANN device", "precision", "compute FP32", "compute INT8",
                           "memory-aware", "device corner", "latency", "ANN/SNN (mem.)",
                           "ANN/SNN (device)"], rows, numeric_from=2))
    out.append(f"<p>ANN: {_count(ann.get('macs'))} MACs, {_count(ann.get('acs'))} ACs, "
               f"{_count(ann.get('params'))} parameters per inference. SNN on "
               f"{_e(cmp.get('snn_target'))}: {si(snn.get('energy_j'), 'J')} per inference, "
               f"{_count(snn.get('synops'))} synaptic ops, latency "
               f"{si(snn.get('latency_s'), 's')}.</p>")
    paper = ratios.get("paper") or {}
    if paper:
        out.append(f"<p>Compute-only, as SNN papers count (E_MAC vs E_AC): ANN/SNN "
                   f"{_ratio(paper.get('fp32'))} at FP32, {_ratio(paper.get('int8'))} at "
                   "INT8.</p>")
    be = cmp.get("break_even")
    if be:
        rates = be.get("rates") or {}
        out.append(f'<p>Synaptic ops per synapse per inference: <b>'
                   f'{be["spikes_per_synapse"]:.3g}</b> — {_e(be["meaning"])} '
                   f'(band {be["band"][0]:g}–{be["band"][1]:g}, {_e(be["band_source"])}).</p>')
        if rates:
            out.append(_table(["ANN cost", "break-even rate (SNN energy = ANN energy)"],
                              [(k, f"{v:.3g}" if v else "none: the SNN costs more at any "
                                                        "rate") for k, v in rates.items()]))
    acc = cmp.get("accuracy") or {}
    out.append(f"<p>Accuracy: ANN {_pct(acc.get('ann'))}, SNN {_pct(acc.get('snn'))}.</p>")
    return "".join(out)


def _assumptions(doc: Mapping[str, Any]) -> str:
    items = list(doc.get("assumptions") or [])
    cmp = doc.get("ann_comparison") or {}
    items += [a for a in cmp.get("assumptions", []) if a not in items]
    if not items:
        return _nodata("No assumptions were recorded.")
    return "<ul>" + "".join(f"<li>{_e(a)}</li>" for a in items) + "</ul>"


#: The sections of ``report.html``, in order. Add one with :func:`register_section`.
SECTIONS: list[Section] = [
    Section("overview", "Overview", _overview),
    Section("accuracy", "Accuracy per stage", _accuracy),
    Section("activity", "Per-layer activity", _activity),
    Section("energy", "Energy breakdown", _energy),
    Section("mesh", "Per-core utilization on the chip mesh", _mesh),
    Section("time", "Time per step", _time),
    Section("ann", "ANN vs SNN", _comparison),
    Section("assumptions", "Assumptions", _assumptions),
]


def register_section(section: Section, *, after: str | None = None) -> None:
    """Add (or replace, by ``id``) a section of ``report.html``, after the section ``after``
    (default: before the assumptions, which stay last)."""
    for i, s in enumerate(SECTIONS):
        if s.id == section.id:
            SECTIONS[i] = section
            return
    ids = [s.id for s in SECTIONS]
    if after is not None:
        if after not in ids:
            raise NeurodeployError(f"no report section {after!r}; sections: {', '.join(ids)}")
        SECTIONS.insert(ids.index(after) + 1, section)
    else:
        SECTIONS.insert(ids.index("assumptions") if "assumptions" in ids else len(SECTIONS),
                        section)


_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d8dee4;--bg:#ffffff;--panel:#f6f8fa;--accent:#3b6ea5}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--fg);background:var(--bg)}
header{padding:20px 32px 12px;border-bottom:1px solid var(--line)}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:var(--muted)}
nav{padding:8px 32px;border-bottom:1px solid var(--line);background:var(--panel);font-size:13px;
display:flex;flex-wrap:wrap;gap:2px 16px}
nav a{color:var(--accent);text-decoration:none;white-space:nowrap}
main{padding:8px 32px 32px;max-width:1100px}
section{padding:12px 0 16px;border-bottom:1px solid var(--line)}
h2{font-size:17px;margin:8px 0 12px}
figure{margin:8px 0 12px;overflow-x:auto}
figure svg{max-width:100%;height:auto}
figcaption{color:var(--muted);font-size:12px;margin-top:4px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:4px 10px;text-align:left}
th{background:var(--panel);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.nodata{color:var(--muted);font-style:italic}
.scope{color:var(--muted);font-size:13px}
.facts{display:flex;flex-wrap:wrap;gap:8px 28px;margin:4px 0 12px}
.facts div{display:flex;gap:6px}.facts dt{color:var(--muted)}.facts dd{margin:0;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid var(--line);border-radius:6px;padding:10px 14px;min-width:150px;
background:var(--panel)}
.card .k{color:var(--muted);font-size:12px}.card .v{font-size:20px;font-weight:600}
.card .s{color:var(--muted);font-size:12px}
.warn li{color:#9a6700}
footer{padding:12px 32px;color:var(--muted);font-size:12px}
"""


def render_html(doc: Mapping[str, Any]) -> str:
    """``report.html`` for a valid report document: one self-contained page (inline CSS and
    SVG; no scripts, fonts or images from elsewhere)."""
    import matplotlib

    parts = []
    with matplotlib.rc_context({"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
                                "xtick.labelsize": 8, "ytick.labelsize": 8,
                                "font.family": "DejaVu Sans"}):
        shown = [s for s in SECTIONS if s.shown(doc)]
        for s in shown:
            body = s.render(doc)
            parts.append(f'<section id="{_e(s.id)}"><h2>{_e(s.title)}</h2>{body}</section>')
    nav = "".join(f'<a href="#{_e(s.id)}">{_e(s.title)}</a>' for s in shown)
    title = f"{doc['model']} on {doc['target']}"
    version = doc.get("neurodeploy", "")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{_GENERATOR}"
        f"<title>neurodeploy report: {_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>neurodeploy report</h1><p>{_e(title)} · {doc['steps']} steps per "
        f"inference · {doc['samples']} sample(s)</p></header><nav>{nav}</nav><main>"
        + "".join(parts)
        + f"</main><footer>{_e(SCHEMA['name'])} v{SCHEMA['version']} · neurodeploy "
          f"{_e(version)} · the same numbers are in report.json</footer></body></html>\n")


# ------------------------------------------------------------------------------ writing


def _ours(path: Path) -> bool:
    """Whether an existing report file was written by neurodeploy (may be replaced)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if path.name == REPORT_HTML:
        return _GENERATOR in text
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("schema"), dict) \
        and doc["schema"].get("name") == SCHEMA["name"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_report(doc: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Validate ``doc`` and write ``out_dir/report.json`` and ``out_dir/report.html``.

    Both files are rendered in memory first. A new ``out_dir`` is created atomically (a
    temporary folder renamed into place); into an existing folder (e.g. a simulation's) each
    file goes to a temporary name beside its destination and both are renamed into place at
    the end, previous report files restored if that fails, so a failure never leaves a
    partial or mixed report. Report files that neurodeploy did not write are never replaced.
    Returns ``out_dir``.
    """
    doc = validate_report(jsonable(dict(doc)))
    out = Path(out_dir)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise NeurodeployError(f"output path {out} exists and is not a folder")
    foreign = [n for n in REPORT_FILES if out.is_dir() and (out / n).exists()
               and not _ours(out / n)]
    if foreign:
        raise NeurodeployError(
            f"refusing to replace {', '.join(foreign)} in {out}: not written by neurodeploy",
            hint="choose another folder or move the file away")
    texts = {REPORT_JSON: json.dumps(doc, indent=1, ensure_ascii=False) + "\n",
             REPORT_HTML: render_html(doc)}
    if not out.exists():
        def write(tmp: Path) -> None:
            for name, text in texts.items():
                (tmp / name).write_text(text, encoding="utf-8")

        return write_dir_atomic(out, write)
    mode = 0o666 & ~_umask()
    tmps: dict[str, Path] = {}
    backups: dict[str, Path] = {}
    placed: list[str] = []
    try:
        for name, text in texts.items():
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.tmp-", dir=out)
            tmps[name] = Path(tmp_name)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp_name, mode)
        for name in texts:
            if (out / name).exists():
                fd, bak = tempfile.mkstemp(prefix=f".{name}.old-", dir=out)
                os.close(fd)
                try:
                    os.replace(out / name, bak)
                except BaseException:
                    Path(bak).unlink(missing_ok=True)
                    raise
                backups[name] = Path(bak)
        for name in texts:
            os.replace(tmps[name], out / name)
            del tmps[name]
            placed.append(name)
    except BaseException:
        for name in placed:
            (out / name).unlink(missing_ok=True)
        for name, bak in backups.items():
            os.replace(bak, out / name)
        backups.clear()
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
        raise
    finally:
        for bak in backups.values():
            bak.unlink(missing_ok=True)
    return out
