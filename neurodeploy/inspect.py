"""The per-layer table of a network (what ``neurodeploy inspect`` prints): shapes, geometry,
fan-in, neuron parameters and weight precision of every node, in layer order."""

from __future__ import annotations

from typing import Any

import numpy as np

from .ir import Graph, Node

#: Columns of :func:`format_layer_table`, in order, with their headings.
COLUMNS = (
    ("name", "name"), ("type", "type"), ("shape", "output"), ("kernel", "kernel"),
    ("stride", "stride"), ("padding", "pad"), ("dilation", "dil"), ("groups", "grp"),
    ("fan_in", "fan-in"), ("neuron", "neuron params"), ("weights", "weights"),
)

_NEURON_FIELDS = ("threshold", "current_decay", "voltage_decay", "bias_exp", "reset",
                  "refractory", "num_message_bits", "kind", "tau", "tau_syn", "tau_mem",
                  "v_threshold", "order")


#: Short names of neuron parameters in the text table.
_ABBREV = {"threshold": "vth", "current_decay": "i_decay", "voltage_decay": "v_decay",
           "refractory": "ref", "num_message_bits": "msg_bits"}


def _fan_in(node: Node) -> int | None:
    weight = getattr(node, "weight", None)
    if isinstance(weight, np.ndarray) and weight.ndim >= 2:
        fan = int(np.prod(weight.shape[1:]))
        rec = getattr(node, "weight_rec", None)
        return fan + (rec.shape[1] if isinstance(rec, np.ndarray) else 0)
    kernel = getattr(node, "kernel_size", None)
    return int(np.prod(kernel)) if kernel is not None else None


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            item = value.item()
            return f"{item:.6g}" if isinstance(item, float) else str(item)
        lo, hi = value.min(), value.max()
        return f"{lo:g}" if lo == hi else f"[{lo:g}..{hi:g}]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _neuron_params(node: Node) -> dict[str, Any]:
    if not node.is_neuron:
        return {}
    params = node.params()
    out = {k: params[k] for k in _NEURON_FIELDS if k in params}
    if "bias" in params and np.any(params["bias"]):
        out["bias"] = params["bias"]
    return out


def layer_table(graph: Graph) -> list[dict[str, Any]]:
    """One row per node in layer order: ``name``, ``type``, ``shape`` (output, one sample),
    ``kernel``/``stride``/``padding``/``dilation``/``groups`` (convolution and pooling),
    ``fan_in`` (synapses per output neuron), ``neuron`` (parameter dict of neuron nodes) and
    ``weight_bits``/``weight_exp``/``sign_mode`` (fixed-point synapses). Absent values are None.
    """
    shapes = graph.shapes
    rows = []
    for name, node in graph.nodes.items():
        params = node.params()
        kernel = params.get("kernel_size")
        weight = params.get("weight")
        if kernel is None and isinstance(weight, np.ndarray) and weight.ndim == 4:
            kernel = tuple(int(k) for k in weight.shape[2:])
        rows.append({
            "name": name,
            "type": node.type_name,
            "shape": tuple(shapes[name]),
            "kernel": kernel,
            "stride": params.get("stride"),
            "padding": params.get("padding"),
            "dilation": params.get("dilation"),
            "groups": params.get("groups"),
            "fan_in": _fan_in(node) if node.is_synapse else None,
            "neuron": _neuron_params(node),
            "weight_bits": params.get("num_weight_bits"),
            "weight_exp": params.get("weight_exp") if node.is_synapse else None,
            "sign_mode": params.get("sign_mode"),
        })
    return rows


def _cell(row: dict[str, Any], key: str) -> str:
    if key == "shape":
        return "x".join(str(s) for s in row["shape"])
    if key in ("kernel", "stride", "padding", "dilation"):
        value = row[key]
        return "" if value is None else "x".join(str(v) for v in value)
    if key == "neuron":
        return " ".join(f"{_ABBREV.get(k, k)}={_short(v)}" for k, v in row["neuron"].items())
    if key == "weights":
        parts = []
        if row["weight_bits"] is not None:
            parts.append(f"{row['weight_bits']}b")
        if row["weight_exp"] is not None:
            parts.append(f"exp={row['weight_exp']}")
        if row["sign_mode"] is not None:
            parts.append(row["sign_mode"])
        return " ".join(parts)
    value = row.get(key)
    return "" if value is None else str(value)


def format_layer_table(rows: list[dict[str, Any]]) -> str:
    """Render :func:`layer_table` rows as a fixed-width text table with a header line."""
    cells = [[heading for _, heading in COLUMNS]]
    cells += [[_cell(row, key) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
