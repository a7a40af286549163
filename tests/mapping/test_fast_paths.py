"""The fast paths of mapping and its writer against straightforward computations: dense-synapse
costs from packed bits against per-slice Python sets, per-slice sums from prefix sums against
``Layout.per_slice``, the vectorized placement against the divmod/tile-path walk, the per-core
``mapping.json`` lines against ``json.dumps`` (byte for byte, with and without SAM, after a
round trip, and for rows the template cannot take), and ``_array`` sharing only read-only
arrays that own their data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from neurodeploy.compile import mapping_text
from neurodeploy.ir import Flatten, Graph, Input, QConv2d, QCubaLIF, QDense, QSumPool2d
from neurodeploy.ir.nodes import _array
from neurodeploy.mapping import (CoreSlice, Layout, Mapping, SourceBlock, _SliceCosts,
                                 _SliceSums, _Synapse, _tile_path, map_graph)
from neurodeploy.sam import SamSpec

from target_edits import edited_target

ENCODINGS = ("dense", "sparse", "conv")


# ------------------------------------------------------------------------------ dense costs


def _naive_dense(w: np.ndarray, lay: Layout, population: bool,
                 pop_shape: tuple[int, ...] | None, bits: int) -> tuple[list, list, list, str]:
    """Memory, input axons, reach and encoding of a dense synapse, slice by slice with sets."""
    n_in = w.shape[1]
    order = np.arange(lay.size) if lay.kind == "flat" else lay.order
    reach = [0] * n_in
    in_axons, nnz = [], []
    for start, size in zip(lay.starts.tolist(), lay.sizes.tolist()):
        rows = order[start:start + size]
        cols = {int(j) for r in rows for j in np.flatnonzero(w[r])}
        nnz.append(sum(int(np.count_nonzero(w[r])) for r in rows))
        if population and pop_shape is not None:
            positions = n_in // pop_shape[0]
            in_axons.append(len({j % positions for j in cols}))
        else:
            in_axons.append(len(cols))
        for j in cols:
            reach[j] += 1
    dense = [size * n_in * bits for size in lay.sizes.tolist()]
    index_bits = max(1, math.ceil(math.log2(max(int(lay.sizes.max()), 2))))
    sparse = [k * (bits + index_bits) for k in nnz]
    encoding = "dense" if max(dense) <= max(sparse) else "sparse"
    return (dense if encoding == "dense" else sparse), in_axons, reach, encoding


def _synapse(w: np.ndarray, out_shape: tuple[int, ...],
             pop_shape: tuple[int, ...] | None = None) -> _Synapse:
    n_in = w.shape[1]
    return _Synapse("fc", QDense(weight=w), "lif", [SourceBlock(None, "input", 0, n_in)],
                    (n_in,), out_shape, pop_shape=pop_shape)


@pytest.mark.parametrize("n_in,pop_shape", [
    (37, None),  # not whole bytes
    (64, None),  # whole 64-bit words, no padding
    (100, (4, 5, 5)),  # population axons, 25 positions per channel: not whole bytes
    (3 * 16, (3, 4, 4)),  # population axons, 16 positions: two bytes per channel
    (5 * 64, (5, 8, 8)),  # population axons, 64 positions
])
@pytest.mark.parametrize("density", [0.03, 0.5])
def test_packed_dense_costs_equal_per_slice_sets(n_in, pop_shape, density):
    rng = np.random.default_rng(n_in + int(density * 100))
    out = 60
    w = rng.integers(1, 50, size=(out, n_in)) * (rng.random((out, n_in)) < density)
    w[7] = 0  # a neuron without synapses
    for population in (False, True):
        flat = _SliceCosts(_synapse(w, (out,), pop_shape), ENCODINGS, population)
        tiled = _SliceCosts(_synapse(w, (3, 4, 5), pop_shape), ENCODINGS, population)
        layouts = [(flat, Layout("flat", (out,), n=n)) for n in (1, 2, 7, 13, 60)] + [
            (tiled, Layout("tiles", (3, 4, 5), cg=cg, tile=t))
            for cg in (1, 3) for t in ((1, 1), (1, 2), (2, 5), (4, 5))]
        for coster, lay in layouts:
            mem, axons, reach, enc = coster.costs(lay)
            want = _naive_dense(w, lay, population, pop_shape, 8)
            assert (mem.tolist(), axons.tolist(), reach.tolist(), enc) == want, (population, lay)
            assert mem.dtype == axons.dtype == reach.dtype == np.int64


def test_packed_dense_costs_by_hand():
    # 3 postsynaptic neurons x 10 inputs, 2 per slice: slice 0 = rows 0-1, slice 1 = row 2
    w = np.zeros((3, 10), dtype=np.int64)
    w[0, [0, 9]] = 1
    w[1, [0, 1, 2]] = 1
    w[2, [9]] = 1
    mem, axons, reach, enc = _SliceCosts(_synapse(w, (3,)), ENCODINGS).costs(
        Layout("flat", (3,), n=2))
    assert axons.tolist() == [4, 1]  # {0, 1, 2, 9} and {9}
    assert reach.tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0, 2]
    # sparse: 5 and 1 non-zeros x (8 + 1 index bit) beats dense 2 x 10 x 8
    assert (enc, mem.tolist()) == ("sparse", [45, 9])


# ------------------------------------------------------------------------------ slice sums


def test_slice_sums_equal_per_slice():
    rng = np.random.default_rng(3)
    shape = (6, 7, 5)
    values = rng.integers(0, 1000, size=int(np.prod(shape)))
    sums = _SliceSums(values, shape)
    for cg in (1, 2, 3, 6):
        for tile in ((1, 1), (1, 3), (1, 5), (2, 5), (3, 5), (7, 5)):
            lay = Layout("tiles", shape, cg=cg, tile=tile)
            assert sums.of(lay).tolist() == lay.per_slice(values).tolist()
    flat = rng.integers(0, 1000, size=50)
    for n in (1, 7, 50):
        lay = Layout("flat", (50,), n=n)
        assert _SliceSums(flat, (50,)).of(lay).tolist() == lay.per_slice(flat).tolist()
    # by hand: a 1x2x2 map cut in columns -> [v00 + v10, v01 + v11]
    lay = Layout("tiles", (1, 2, 2), cg=1, tile=(2, 1))
    assert _SliceSums(np.array([1, 2, 30, 40]), (1, 2, 2)).of(lay).tolist() == [31, 42]


# ------------------------------------------------------------------------------ placement


def _lif() -> QCubaLIF:
    return QCubaLIF(threshold=5, current_decay=4096, voltage_decay=4096)


def _conv_net() -> Graph:
    """input (1,6,6) → conv → lif (4,6,6) → pool → lifp (4,3,3) → dense → lifo (10,)."""
    rng = np.random.default_rng(0)
    return Graph.chain([
        ("input", Input((1, 6, 6))),
        ("conv", QConv2d(weight=rng.integers(-20, 20, size=(4, 1, 3, 3)), padding=(1, 1))),
        ("lif", _lif()),
        ("pool", QSumPool2d(kernel_size=(2, 2), stride=(2, 2), weight=10)),
        ("lifp", _lif()),
        ("flat", Flatten()),
        ("fc", QDense(weight=rng.integers(-20, 20, size=(10, 36)))),
        ("lifo", _lif())])


def test_placement_equals_tile_path_walk(tmp_path):
    t = edited_target(tmp_path, "loihi2", **{"neurons_per_core = 8192": "neurons_per_core = 7",
                             "cores_per_chip = 128": "cores_per_chip = 6",
                             "mesh_tiles = [8, 4]": "mesh_tiles = [3, 1]",
                             "cores_per_tile = 4": "cores_per_tile = 2"})
    m = map_graph(_conv_net(), t)
    assert m.chips_used > 2
    path = _tile_path((3, 1))
    for k, core in enumerate(m.cores):
        chip, local = divmod(k, 6)
        tx, ty = path[local // 2]
        assert (core.core, core.chip, core.tile) == (k, chip, (chip * 3 + tx, ty))
        assert all(type(v) is int for v in (core.core, core.chip, *core.tile, core.start,
                                            core.neurons, core.output_axons))
    for name, info in m.layers.items():
        cores = [c for c in m.cores if c.layer == name]
        assert [c.core for c in cores][0] == info["first_core"] and len(cores) == info["cores"]
        assert sum(c.neurons for c in cores) == info["neurons"]


# ------------------------------------------------------------------------------ writer


def _plain_text(doc: dict) -> str:
    """mapping.json as json.dumps writes it (the writer before templates)."""
    rows = doc["per_core"]
    head = json.dumps({**doc, "per_core": []}, indent=1)
    body = ",\n  ".join(json.dumps(row, separators=(",", ":")) for row in rows)
    return head.replace('"per_core": []', '"per_core": [\n  ' + body + "\n ]", 1) + "\n"


def _check_text(m: Mapping) -> None:
    doc = m.to_json()
    lines = m.core_lines()
    assert lines == [json.dumps(row, separators=(",", ":")) for row in doc["per_core"]]
    assert mapping_text(m.to_json(per_core=False), lines) == _plain_text(doc) \
        == mapping_text(doc)
    assert m.to_json(per_core=False) == {**doc, "per_core": []}


def test_core_lines_equal_json_dumps(tmp_path):
    # odd limits so that utilizations need rounding (1/7, 2/3, ...)
    t = edited_target(tmp_path, "loihi2", **{"neurons_per_core = 8192": "neurons_per_core = 7",
                             "input_axons_per_core = 4096": "input_axons_per_core = 97",
                             "output_axons_per_core = 4096": "output_axons_per_core = 4093"})
    m = map_graph(_conv_net(), t)
    assert m.cores_used > 20
    _check_text(m)
    text = mapping_text(m.to_json(per_core=False), m.core_lines())
    assert '"utilization":{"neurons":0.428571,' in text  # 3 / 7 rounded
    back = Mapping.from_json(json.loads(text))
    assert back.core_lines() == m.core_lines()


def test_core_lines_with_sam_equal_json_dumps(tmp_path):
    t = edited_target(tmp_path, "loihi2", **{"neurons_per_core = 8192": "neurons_per_core = 50",
                             "cores_per_chip = 128": "cores_per_chip = 4",
                             "mesh_tiles = [8, 4]": "mesh_tiles = [2, 2]",
                             "cores_per_tile = 4": "cores_per_tile = 1"})
    m = map_graph(_conv_net(), t, sam=SamSpec(("lif",), gamma=0.5))
    assert any(c.sam for c in m.cores) and any(c.sam is None for c in m.cores)
    _check_text(m)
    assert m.core_lines()[0].count('"sam":{"traces":') == 1
    back = Mapping.from_json(json.loads(mapping_text(m.to_json())))
    assert back.core_lines() == m.core_lines()


def test_core_lines_of_rows_the_template_cannot_take():
    limits = {"neurons": 3, "synaptic_memory_bits": 7, "input_axons": 9, "output_axons": 11}
    sam = {"traces": 1, "sums": 1, "compartments": 2, "synapses": 3,
           "synaptic_memory_bits": 5, "input_axons": 1, "output_axons": 2}
    cores = [CoreSlice(0, 0, (0, 0), 'l"ay\u00e9r', 0, 1, 2, 3, 4),
             CoreSlice(1, 0, (0, 0), "b", 1, 1, 2, 3, 4, sam=dict(reversed(sam.items()))),
             CoreSlice(2, 0, (1, 0), "b", 2, 2, 5, 1, 0, sam={}),
             CoreSlice(3, 0, (1, 0), "b", 3, 2, 5, 1, 0, sam=dict(sam))]

    def mapping(rows: list[CoreSlice]) -> Mapping:
        return Mapping(target="x", limits=limits, cores=rows, layers={}, chips_used=1,
                       cores_per_chip=4, mesh_tiles=(2, 1), cores_per_tile=2)

    m = mapping(cores)
    _check_text(m)  # escapes, SAM keys in another order, an empty SAM entry
    assert '"layer":"l\\"ay\\u00e9r"' in m.core_lines()[0]
    # a float count, a bool and a tile list: json.dumps decides
    odd = [CoreSlice(0, 0, [0, 0], "a", 0, 1.5, 2, 3, 4),  # type: ignore[arg-type]
           CoreSlice(1, 0, (0, 0), "a", 1, True, 2, 3, 4)]  # type: ignore[arg-type]
    lines = mapping(odd).core_lines()
    assert '"neurons":1.5' in lines[0] and '"neurons":true' in lines[1]
    _check_text(mapping(odd))
    assert mapping([]).core_lines() == []
    assert mapping_text(mapping([]).to_json(per_core=False), []) == \
        json.dumps(mapping([]).to_json(), indent=1) + "\n"


# ------------------------------------------------------------------------------ _array


def test_array_shares_only_read_only_arrays_owning_their_data():
    owned = np.arange(6, dtype=np.int32)
    owned.setflags(write=False)
    assert _array(owned, np.int32) is owned
    writable = np.arange(6, dtype=np.int32)
    copy = _array(writable, np.int32)
    assert copy is not writable and not np.shares_memory(copy, writable)
    writable[0] = 99  # the node keeps its values
    assert copy[0] == 0 and not copy.flags.writeable
    view = writable[::2]
    view.setflags(write=False)  # read-only view of a writable base: copied
    assert not np.shares_memory(_array(view, np.int32), writable)
    other = _array(owned, np.int64)  # another dtype: converted
    assert other.dtype == np.int64 and other.tolist() == owned.tolist()
    big_endian = owned.astype(">i4")
    big_endian.setflags(write=False)
    assert _array(big_endian, np.int32).dtype == np.dtype(np.int32)
    # a node derived from another shares its weights
    node = QDense(weight=np.ones((3, 4)))
    assert node.replace(weight=node.weight).weight is node.weight
