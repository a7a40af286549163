"""Save and load IR graphs as versioned HDF5 files (``*.ir.h5``), without pickle.

Layout (``format="neurodeploy-ir"``, ``version=1``)::

    /                   attrs: format (str), version (int)
    /metadata           uint8 dataset: graph.metadata as UTF-8 JSON (tagged, see below)
    /edges              int64 dataset (E, 2): edges as indices into the node order
    /nodes/<name>       one group per node, attrs: type (a NODE_TYPES name), index (layer order)
        array fields         -> datasets in the node's dtype (float64, int32, int64)
        optional arrays      -> a dataset, or absent for None
        int / str fields     -> scalar attributes
        int tuples (shapes, strides, ...) -> 1-D int64 attributes
        (name, number) pairs -> a JSON string attribute

Which encoding a field uses follows from its annotation on the node dataclass, so every type in
:data:`~neurodeploy.ir.NODE_TYPES` is covered without a second list. Metadata JSON keeps
numpy arrays (``{"__ndarray__": {dtype, shape, data}}``), numpy scalars (``{"__npscalar__":
{dtype, data}}``) and tuples (``{"__tuple__": [...]}``),
so metadata such as the netx reader's survives a round trip.

:func:`load_graph` treats the file as untrusted: it checks the format and version, every node
type against ``NODE_TYPES``, every field name, kind, dtype and shape (sizes against
``MAX_ELEMENTS`` before reading), the JSON, and finally ``graph.validate()``. Every problem is a
one-line :class:`~neurodeploy.errors.BadInputFileError`. Strings are read from attributes only
and object dtypes are refused. Writes are atomic (``<path>.partial``, then rename).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import BadInputFileError, InvalidIRError, UnsupportedError
from .graph import Graph
from .nodes import MAX_ELEMENTS, NODE_TYPES, Node

FORMAT = "neurodeploy-ir"
VERSION = 1

# Field encodings, chosen by the dataclass annotation.
_ARRAY, _OPT_ARRAY, _INT, _FLOAT, _STR, _INTS, _PAIRS = (
    "array", "optional array", "int", "float", "str", "int tuple", "pairs")
_KINDS = {
    "np.ndarray": _ARRAY,
    "np.ndarray | None": _OPT_ARRAY,
    "int": _INT,
    "float": _FLOAT,
    "str": _STR,
    "Shape": _INTS,
    "tuple[int, int]": _INTS,
    "tuple[int, ...]": _INTS,
    "tuple[tuple[str, float], ...]": _PAIRS,
}
_MAX_NDIM = 8
_MAX_ATTR_ELEMENTS = 64
_MAX_STRING = 1 << 16


def _schema(cls: type[Node]) -> dict[str, str]:
    """Field name -> encoding for node class ``cls``."""
    schema = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind = _KINDS.get(str(f.type))
        if kind is None:  # a new annotation in nodes.py: teach this module how to store it
            raise NotImplementedError(f"{cls.__name__}.{f.name}: no encoding for {f.type!r}")
        schema[f.name] = kind
    return schema


# ------------------------------------------------------------------------------------------
# Metadata as tagged JSON
# ------------------------------------------------------------------------------------------

_TAGS = ("__ndarray__", "__npscalar__", "__tuple__", "__dict__")


def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):  # numpy scalars keep their dtype
        body = _encode(np.asarray(value), where)["__ndarray__"]
        return {"__npscalar__": {"dtype": body["dtype"], "data": body["data"]}}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufUS":
            raise UnsupportedError(f"metadata {where}: arrays of {value.dtype} cannot be saved")
        data = value.tolist()
        if value.dtype.kind == "S":
            data = np.char.decode(value, "latin-1").tolist()
        return {"__ndarray__": {"dtype": value.dtype.str, "shape": list(value.shape),
                                "data": data}}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        raise UnsupportedError(f"metadata {where}: sets cannot be saved; use a sorted list")
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise UnsupportedError(
                    f"metadata {where}: key {k!r} is not a string; only string keys can be saved")
            out[k] = _encode(v, f"{where}.{k}" if where else k)
        if len(out) == 1 and next(iter(out)) in _TAGS:
            return {"__dict__": out}
        return out
    raise UnsupportedError(
        f"metadata {where}: a {type(value).__name__} cannot be saved; use numbers, strings, "
        "lists, tuples, dicts with string keys or numpy arrays")


def _decode(value: Any, fail: Any, where: str = "metadata") -> Any:
    if isinstance(value, list):
        return [_decode(v, fail, where) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in _TAGS:
        tag, body = next(iter(value.items()))
        if tag == "__tuple__":
            if not isinstance(body, list):
                raise fail(f"{where}: malformed tuple")
            return tuple(_decode(v, fail, where) for v in body)
        if tag == "__dict__":
            if not isinstance(body, dict):
                raise fail(f"{where}: malformed dict")
            return {k: _decode(v, fail, where) for k, v in body.items()}
        if tag == "__npscalar__":
            if not isinstance(body, dict) or set(body) != {"dtype", "data"}:
                raise fail(f"{where}: malformed numpy scalar")
            return _decode_array({**body, "shape": []}, fail, where)[()]
        return _decode_array(body, fail, where)
    return {k: _decode(v, fail, f"{where}.{k}") for k, v in value.items()}


def _decode_array(body: Any, fail: Any, where: str) -> np.ndarray:
    if not isinstance(body, dict) or set(body) != {"dtype", "shape", "data"}:
        raise fail(f"{where}: malformed array")
    try:
        dtype = np.dtype(body["dtype"]) if isinstance(body["dtype"], str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "biufUS":
        raise fail(f"{where}: array dtype {body['dtype']!r} not allowed")
    shape = body["shape"]
    if (not isinstance(shape, list) or len(shape) > _MAX_NDIM
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
            or math.prod(shape) > MAX_ELEMENTS):
        raise fail(f"{where}: bad array shape {shape!r}")
    data = body["data"]
    try:
        if dtype.kind == "S":
            arr = np.char.encode(np.array(data, dtype="U"), "latin-1").astype(dtype)
        else:
            arr = np.array(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError, UnicodeEncodeError):
        raise fail(f"{where}: array data does not fit dtype {dtype}") from None
    if arr.size == 0 and math.prod(shape) == 0:
        arr = arr.reshape(shape)  # JSON cannot tell [] of shape (0,) from (0, 0)
    if arr.shape != tuple(shape):
        raise fail(f"{where}: array data of shape {arr.shape} != declared {tuple(shape)}")
    return arr


# ------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------


def _compact(arr: np.ndarray) -> np.ndarray:
    """Integer arrays in the narrowest signed type that holds their values (lossless; nodes
    cast them back on load): fixed-point weights are 8-bit, not 64-bit, on disk."""
    if arr.dtype.kind not in "iu" or arr.size == 0:
        return arr
    lo, hi = int(arr.min()), int(arr.max())
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return arr.astype(dtype)
    return arr


def _write_node(group: h5py.Group, name: str, node: Node, index: int) -> None:
    sub = group.create_group(name)
    sub.attrs["type"] = node.type_name
    sub.attrs["index"] = np.int64(index)
    for field, kind in _schema(type(node)).items():
        value = getattr(node, field)
        if kind in (_ARRAY, _OPT_ARRAY):
            if value is not None:
                sub.create_dataset(field, data=_compact(np.asarray(value)))
        elif kind == _INT:
            sub.attrs[field] = np.int64(value)
        elif kind == _FLOAT:
            sub.attrs[field] = np.float64(value)
        elif kind == _STR:
            sub.attrs[field] = str(value)
        elif kind == _INTS:
            sub.attrs[field] = np.asarray(value, dtype=np.int64).reshape(-1)
        else:  # _PAIRS
            sub.attrs[field] = json.dumps([[str(k), v] for k, v in value])


def save_graph(graph: Graph, path: str | Path) -> None:
    """Write ``graph`` (validated first) to the HDF5 file ``path`` atomically.

    Raises :class:`InvalidIRError` for an invalid graph and :class:`UnsupportedError` for
    metadata that cannot be stored (e.g. objects, non-string dict keys). Nothing is left at
    ``path`` on failure.
    """
    path = Path(path)
    graph.validate()
    meta = json.dumps(_encode(dict(graph.metadata), "")).encode("utf-8")
    order = list(graph.nodes)
    position = {name: i for i, name in enumerate(order)}
    edges = np.array([[position[a], position[b]] for a, b in graph.edges],
                     dtype=np.int64).reshape(-1, 2)
    tmp = path.with_name(path.name + ".partial")
    try:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["format"] = FORMAT
            handle.attrs["version"] = np.int64(VERSION)
            handle.create_dataset("metadata", data=np.frombuffer(meta, dtype=np.uint8))
            handle.create_dataset("edges", data=edges)
            nodes = handle.create_group("nodes")
            for index, name in enumerate(order):
                _write_node(nodes, name, graph.nodes[name], index)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------


class _Reader:
    """Checked access to attributes and datasets; failures name the file and place."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, problem: str) -> BadInputFileError:
        return BadInputFileError(self.path, problem)

    def attr(self, obj: h5py.HLObject, key: str, where: str, *, required: bool = True) -> Any:
        if key not in obj.attrs:
            if required:
                raise self.fail(f"{where}: missing attribute {key!r}")
            return None
        aid = obj.attrs.get_id(key)
        dtype, shape = aid.dtype, aid.shape
        if shape is None or math.prod(shape) > _MAX_ATTR_ELEMENTS or len(shape) > 1:
            raise self.fail(f"{where}: attribute {key!r} of shape {shape} is too large")
        if h5py.check_string_dtype(dtype) is not None or dtype.kind == "S":
            if shape != () or (dtype.kind == "S" and dtype.itemsize > _MAX_STRING):
                raise self.fail(f"{where}: attribute {key!r} must be one string")
            value = obj.attrs[key]
            if isinstance(value, (bytes, np.bytes_)):
                try:
                    value = bytes(value).decode("utf-8")
                except UnicodeDecodeError:
                    raise self.fail(f"{where}: attribute {key!r} is not UTF-8") from None
            if not isinstance(value, str) or len(value) > _MAX_STRING:
                raise self.fail(f"{where}: attribute {key!r} must be one string")
            return value
        if dtype.kind not in "biuf":
            raise self.fail(f"{where}: attribute {key!r} holds {dtype} values")
        return np.asarray(obj.attrs[key])

    def string(self, obj: h5py.HLObject, key: str, where: str) -> str:
        value = self.attr(obj, key, where)
        if not isinstance(value, str):
            raise self.fail(f"{where}: attribute {key!r} must be a string, got {value.dtype}")
        return value

    def integer(self, obj: h5py.HLObject, key: str, where: str) -> int:
        value = self.attr(obj, key, where)
        if isinstance(value, str) or value.shape != () or value.dtype.kind not in "iu":
            shown = "a string" if isinstance(value, str) else f"{value.dtype} {value.shape}"
            raise self.fail(f"{where}: attribute {key!r} must be one integer, got {shown}")
        return int(value)

    def child(self, obj: h5py.Group, key: str, where: str) -> Any:
        """The object at ``key``; only hard links (no soft or external links) are followed."""
        if not isinstance(obj.get(key, getlink=True), h5py.HardLink):
            raise self.fail(f"{where}: {key!r} is a link; only plain groups and datasets")
        return obj[key]

    def dataset(self, obj: h5py.Group, key: str, where: str, kinds: str = "biuf") -> np.ndarray:
        if key not in obj:
            raise self.fail(f"{where}: missing field {key!r}")
        ds = self.child(obj, key, where)
        if not isinstance(ds, h5py.Dataset):
            raise self.fail(f"{where}: field {key!r} must be a dataset")
        if ds.shape is None or len(ds.shape) > _MAX_NDIM or math.prod(ds.shape) > MAX_ELEMENTS:
            raise self.fail(f"{where}: field {key!r} of shape {ds.shape} is empty or too large")
        if ds.dtype.kind not in kinds:
            raise self.fail(f"{where}: field {key!r} holds {ds.dtype} values, expected numbers")
        return np.asarray(ds[()])


def _read_field(rd: _Reader, group: h5py.Group, field: str, kind: str, where: str) -> Any:
    if kind in (_ARRAY, _OPT_ARRAY):
        if kind == _OPT_ARRAY and field not in group:
            return None
        return rd.dataset(group, field, where)
    if kind == _INT:
        return rd.integer(group, field, where)
    if kind == _STR:
        return rd.string(group, field, where)
    value = rd.attr(group, field, where)
    if kind == _FLOAT:
        if isinstance(value, str) or value.shape != () or value.dtype.kind not in "iuf":
            raise rd.fail(f"{where}: attribute {field!r} must be one number")
        return float(value)
    if kind == _INTS:
        if isinstance(value, str) or value.ndim != 1 or value.dtype.kind not in "iu":
            raise rd.fail(f"{where}: attribute {field!r} must be a list of integers")
        return tuple(int(v) for v in value)
    # _PAIRS: JSON [[name, number], ...]
    if not isinstance(value, str):
        raise rd.fail(f"{where}: attribute {field!r} must be a JSON string")
    try:
        pairs = json.loads(value)
    except json.JSONDecodeError:
        raise rd.fail(f"{where}: attribute {field!r} is not valid JSON") from None
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
            and isinstance(p[1], (int, float)) and not isinstance(p[1], bool) for p in pairs):
        raise rd.fail(f"{where}: attribute {field!r} must be a list of [name, number] pairs")
    return tuple((k, v) for k, v in pairs)


def _check_arrays(rd: _Reader, node: Node, raw: dict[str, Any], where: str) -> None:
    """Arrays must keep their values when converted to the node's dtype (no float->int)."""
    for field, value in raw.items():
        if not isinstance(value, np.ndarray):
            continue
        converted = getattr(node, field)
        kind = converted.dtype.kind
        if kind in "iu" and value.dtype.kind not in "biu":
            raise rd.fail(f"{where}: field {field!r} holds {value.dtype} values, expected integers")
        if converted.shape != value.shape or not np.array_equal(
                converted, value, equal_nan=value.dtype.kind == "f"):
            raise rd.fail(f"{where}: field {field!r} does not fit the node's {converted.dtype}")


def _read_node(rd: _Reader, group: h5py.Group, name: str) -> tuple[int, Node]:
    where = f"node {name!r}"
    type_name = rd.string(group, "type", where)
    cls = NODE_TYPES.get(type_name)
    if cls is None:
        raise rd.fail(f"{where}: unknown node type {type_name!r}; known: "
                      + ", ".join(sorted(NODE_TYPES)))
    where = f"node {name!r} ({type_name})"
    index = rd.integer(group, "index", where)
    schema = _schema(cls)
    known = set(schema) | {"type", "index"}
    extra = sorted((set(group.attrs.keys()) | set(group.keys())) - known)
    if extra:
        raise rd.fail(f"{where}: unknown field(s) {', '.join(extra)}; {type_name} has "
                      + ", ".join(schema))
    for field, kind in schema.items():  # arrays are datasets, everything else attributes
        in_attrs, in_data = field in group.attrs, field in group
        if (kind in (_ARRAY, _OPT_ARRAY) and in_attrs) or (
                kind not in (_ARRAY, _OPT_ARRAY) and in_data):
            raise rd.fail(f"{where}: field {field!r} stored as the wrong kind of HDF5 object")
    raw = {field: _read_field(rd, group, field, kind, where) for field, kind in schema.items()}
    try:
        with np.errstate(all="ignore"):  # bad casts are caught by _check_arrays below
            node = cls(**raw)
    except (TypeError, ValueError, OverflowError) as err:
        raise rd.fail(f"{where}: {' '.join(str(err).split())}") from None
    _check_arrays(rd, node, raw, where)
    return index, node


def load_graph(path: str | Path) -> Graph:
    """Read a graph written by :func:`save_graph` and return it validated.

    Raises :class:`BadInputFileError` (naming the file and the node or field) for a missing,
    unreadable or truncated file, another format or a newer version, unknown node types or
    fields, wrong dtypes or shapes, malformed metadata and graphs that fail validation.
    """
    path = Path(path)
    rd = _Reader(path)
    if not path.is_file():
        raise rd.fail("no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise rd.fail(f"not a readable HDF5 file ({' '.join(str(err).split())})") from None
    try:
        with handle:
            return _load(rd, handle)
    except OSError as err:  # h5py reports corrupt or truncated data as OSError
        raise rd.fail(f"corrupt HDF5 data ({' '.join(str(err).split())})") from None


def _load(rd: _Reader, handle: h5py.File) -> Graph:
    fmt = rd.attr(handle, "format", "file", required=False)
    if fmt != FORMAT:
        raise rd.fail(f"not a neurodeploy IR file (format attribute {fmt!r}, expected {FORMAT!r})")
    version = rd.integer(handle, "version", "file")
    if version > VERSION:
        raise rd.fail(f"IR format version {version} is newer than this neurodeploy's "
                      f"({VERSION}); upgrade neurodeploy")
    if version < 1:
        raise rd.fail(f"IR format version {version} is invalid")
    extra = sorted(set(handle.keys()) - {"metadata", "edges", "nodes"})
    if extra:
        raise rd.fail(f"unknown top-level entries {', '.join(extra)}")
    raw = rd.dataset(handle, "metadata", "file", kinds="u")
    if raw.ndim != 1 or raw.dtype != np.uint8:
        raise rd.fail("metadata must be a 1-D uint8 dataset (UTF-8 JSON)")
    try:
        metadata = _decode(json.loads(raw.tobytes().decode("utf-8")), rd.fail)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise rd.fail("metadata is not valid UTF-8 JSON") from None
    if not isinstance(metadata, dict):
        raise rd.fail("metadata must be a JSON object")

    if "nodes" not in handle:
        raise rd.fail("missing group 'nodes'")
    group = rd.child(handle, "nodes", "file")
    if not isinstance(group, h5py.Group):
        raise rd.fail("'nodes' must be a group")
    found: dict[int, tuple[str, Node]] = {}
    for name in group.keys():
        sub = rd.child(group, name, f"node {name!r}")
        if not isinstance(sub, h5py.Group):
            raise rd.fail(f"node {name!r} must be a group")
        index, node = _read_node(rd, sub, name)
        if index in found:
            raise rd.fail(f"nodes {found[index][0]!r} and {name!r} share index {index}")
        found[index] = (name, node)
    if sorted(found) != list(range(len(found))):
        raise rd.fail(f"node indices {sorted(found)} are not 0..{len(found) - 1}")
    order = [found[i] for i in range(len(found))]

    edges = rd.dataset(handle, "edges", "file", kinds="iu")
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise rd.fail(f"edges must have shape (E, 2), got {edges.shape}")
    if edges.size and (edges.min() < 0 or edges.max() >= len(order)):
        raise rd.fail(f"edges refer to node indices outside 0..{len(order) - 1}")
    names = [name for name, _ in order]
    graph = Graph(dict(order), tuple((names[a], names[b]) for a, b in edges.tolist()), metadata)
    try:
        graph.validate()
    except InvalidIRError as err:
        raise rd.fail(err.message) from None
    return graph


def is_ir_file(path: str | Path) -> bool:
    """True when ``path`` is an HDF5 file whose root says ``format="neurodeploy-ir"`` (so a
    loader can tell it from a netx file with the same ``.h5`` suffix)."""
    try:
        with h5py.File(path, "r") as handle:
            value = handle.attrs.get("format")
    except (OSError, KeyError):
        return False
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value == FORMAT
