"""Mapping: per-core resource counts checked by hand on small networks, minimal slicing,
placement on the mesh, and resource errors before any simulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurodeploy.errors import ResourceError, UnsupportedError
from neurodeploy.ir import Graph, Input, QConv2d, QCubaLIF, QDense
from neurodeploy.ir.nodes import Flatten
from neurodeploy.mapping import Layout, layout_from_json, map_graph
from neurodeploy.targets import load_target

from target_edits import edited_target as _target


def _lif(n: int | tuple[int, ...]) -> QCubaLIF:
    """A neuron group; its shape comes from its input (``n`` documents it)."""
    return QCubaLIF(threshold=10, current_decay=4096, voltage_decay=0)


def _dense_net(n_in: int, sizes: list[int], rng: np.random.Generator,
               zero_frac: float = 0.0) -> Graph:
    layers: list[tuple[str, object]] = [("input", Input(shape=(n_in,)))]
    prev = n_in
    for i, n in enumerate(sizes):
        w = rng.integers(-100, 100, size=(n, prev)) * 2
        w[w == 0] = 2
        if zero_frac:
            w[rng.random(w.shape) < zero_frac] = 0
        layers += [(f"fc{i}", QDense(weight=w)), (f"lif{i}", _lif(n))]
        prev = n
    return Graph.chain(layers)


def test_dense_counts_by_hand():
    g = _dense_net(100, [50, 10], np.random.default_rng(0))
    m = map_graph(g, load_target("loihi1"))
    assert m.cores_used == 2 and m.chips_used == 1
    c0, c1 = m.cores
    assert (c0.layer, c0.neurons, c0.synaptic_memory_bits, c0.input_axons) == \
        ("lif0", 50, 50 * 100 * 8, 100)
    # each lif0 neuron reaches the one core of lif1: 50 output axons; lif1 sends nowhere
    assert c0.output_axons == 50 and c1.output_axons == 0
    assert (c1.neurons, c1.synaptic_memory_bits, c1.input_axons) == (10, 10 * 50 * 8, 50)
    doc = m.to_json()
    assert doc["cores_used"] == 2 and doc["per_core"][0]["utilization"]["neurons"] == \
        pytest.approx(50 / 1024, abs=1e-6)
    assert [row["layer"] for row in doc["per_layer"]] == ["lif0", "lif1"]


def test_memory_bound_slicing_is_minimal(tmp_path):
    # 10,000 bits per core; each neuron of fc0 needs 100 * 8 = 800 bits -> 12 per core
    t = _target(tmp_path, **{"synaptic_memory_bits_per_core = 1048576":
                             "synaptic_memory_bits_per_core = 10000"})
    g = _dense_net(100, [50], np.random.default_rng(1))
    m = map_graph(g, t)
    assert m.layers["lif0"]["neurons_per_core"] == 12
    assert m.layers["lif0"]["cores"] == 5  # ceil(50 / 12)
    assert max(c.synaptic_memory_bits for c in m.cores) <= 10000
    assert sum(c.neurons for c in m.cores) == 50


def test_output_axons_split_the_source(tmp_path):
    # lif1 needs 10 cores (neuron limit 5); every lif0 neuron then reaches 10 cores, so with
    # 40 output axons per core a lif0 core holds at most 4 neurons.
    t = _target(tmp_path, **{"neurons_per_core = 1024": "neurons_per_core = 50",
                             "output_axons_per_core = 4096": "output_axons_per_core = 40"})
    g = _dense_net(20, [8, 500], np.random.default_rng(2))
    m = map_graph(g, t)
    assert m.layers["lif1"]["cores"] == 10
    assert m.layers["lif0"]["neurons_per_core"] == 4
    assert all(c.output_axons <= 40 for c in m.cores)
    assert m.cores[0].output_axons == 4 * 10


def test_sparse_encoding_saves_memory():
    g = _dense_net(200, [100], np.random.default_rng(3), zero_frac=0.9)
    dense_only = map_graph(g, load_target("loihi2"))  # dense, sparse, conv
    sanafe = map_graph(g, load_target("loihi1-sanafe"))
    assert sanafe.synapse_encoding["fc0"] == "sparse"
    nnz = int(np.count_nonzero(g.nodes["fc0"].weight))
    assert sanafe.cores[0].synaptic_memory_bits == nnz * (8 + 7)  # 7 index bits for 100
    assert dense_only.synapse_encoding["fc0"] == "sparse"


def _discrete(tmp_path: Path, base: str = "loihi1", **changes: str) -> object:
    """The target without population axons (one input axon per source neuron)."""
    return _target(tmp_path, base, **{"population_axons = true": "population_axons = false"},
                   **changes)


def test_conv_input_axons_by_hand(tmp_path):
    w = np.full((4, 2, 3, 3), 2)
    g = Graph.chain([("input", Input(shape=(2, 5, 5))), ("conv", QConv2d(weight=w)),
                     ("lif", _lif((4, 3, 3)))])
    t = load_target("loihi1")
    m = map_graph(g, t)
    assert m.cores_used == 1
    assert m.cores[0].input_axons == 5 * 5  # population axons: one per input position
    m_discrete = map_graph(g, _discrete(tmp_path))
    assert m_discrete.cores[0].input_axons == 2 * 5 * 5  # one per input neuron
    assert m.cores[0].synaptic_memory_bits == 36 * 18 * 8  # dense: fan-in 18 per neuron
    m2 = map_graph(g, load_target("loihi2"))  # shared-weight conv encoding
    assert m2.synapse_encoding["conv"] == "conv"
    assert m2.cores[0].synaptic_memory_bits == 4 * 18 * 8 + 36 * 192  # kernel + neuron state


def test_conv_slices_follow_positions(tmp_path):
    # 4 neurons per core = all 4 channels of one output position -> receptive field 2x3x3
    t = _discrete(tmp_path, **{"neurons_per_core = 1024": "neurons_per_core = 4"})
    w = np.full((4, 2, 3, 3), 2)
    g = Graph.chain([("input", Input(shape=(2, 5, 5))), ("conv", QConv2d(weight=w)),
                     ("lif", _lif((4, 3, 3)))])
    m = map_graph(g, t)
    # all 4 channels of one position per core (9 cores) beats 1 channel x 1x3 rows (12)
    assert m.cores_used == 9
    assert m.layers["lif"]["layout"] == {"kind": "tiles", "channels_per_core": 4,
                                         "tile": [1, 1]}
    assert [c.input_axons for c in m.cores] == [18] * 9  # receptive field 2x3x3
    cores = m.core_of("lif", (4, 3, 3))
    assert cores.reshape(4, 3, 3)[:, 1, 2].tolist() == [5] * 4  # position (1, 2) -> core 5
    lay = layout_from_json((4, 3, 3), m.layers["lif"]["layout"])
    assert lay.order[:4].tolist() == [0, 9, 18, 27]


def test_tiles_layout_by_hand():
    lay = Layout("tiles", (4, 3, 5), cg=2, tile=(2, 5))
    # channel groups {0,1}, {2,3} x row tiles {0,1}, {2}: 4 slices of 20, 10, 20, 10 neurons
    assert lay.sizes.tolist() == [20, 10, 20, 10]
    assert lay.starts.tolist() == [0, 20, 30, 50]
    sl = lay.slice_of().reshape(4, 3, 5)
    assert sl[0, 0, 0] == 0 and sl[1, 1, 4] == 0 and sl[0, 2, 0] == 1 and sl[3, 2, 4] == 3
    # inside a slice: position by position, the slice's channels together
    assert lay.order[:4].tolist() == [0, 15, 1, 16]
    assert sorted(lay.order.tolist()) == list(range(60))
    values = np.arange(60, dtype=np.float64)
    assert lay.per_slice(values).tolist() == [
        float(values.reshape(4, 3, 5)[c0:c0 + 2, y0:y1].sum())
        for c0 in (0, 2) for y0, y1 in ((0, 2), (2, 3))]


def test_shared_kernels_pick_channel_groups(tmp_path):
    # 64 -> 64 channels, 3x3 kernel, 8x8 map, shared-weight conv encoding (loihi2): a core
    # holding all 64 output channels needs the whole 64*64*9*8 = 294,912-bit kernel; with
    # 300,000 bits per core and 192 bits of state per neuron, 32 channels fit only as 2x8
    # tiles (147,456 + 32*16*192 = 245,760; 8 cores), 16 channels fit as whole 8x8 maps
    # (73,728 + 16*64*192 = 270,336; 4 cores), fewer channels need more cores.
    t = _target(tmp_path, "loihi2", **{
        "synaptic_memory_bits_per_core = 1572864": "synaptic_memory_bits_per_core = 300000"})
    w = np.full((64, 64, 3, 3), 2)
    g = Graph.chain([("input", Input(shape=(64, 8, 8))), ("in", _lif((64, 8, 8))),
                     ("conv", QConv2d(weight=w, padding=(1, 1))), ("lif", _lif((64, 8, 8)))])
    m = map_graph(g, t)
    info = m.layers["lif"]
    assert info["synapse_encodings"]["conv"] == "conv"
    assert info["layout"] == {"kind": "tiles", "channels_per_core": 16, "tile": [8, 8]}
    assert info["cores"] == 4
    assert info["max_per_core"]["synaptic_memory_bits"] == 16 * 64 * 9 * 8 + 16 * 64 * 192


def test_placement_and_multichip(tmp_path):
    t = _target(tmp_path, **{"neurons_per_core = 1024": "neurons_per_core = 10",
                             "cores_per_chip = 128": "cores_per_chip = 8",
                             "mesh_tiles = [8, 4]": "mesh_tiles = [2, 1]"})
    g = _dense_net(10, [100, 50], np.random.default_rng(4))
    m = map_graph(g, t)
    assert m.cores_used == 15 and m.chips_used == 2
    assert [c.tile for c in m.cores[:9]] == [(0, 0)] * 4 + [(1, 0)] * 4 + [(2, 0)]
    assert m.cores[8].chip == 1
    assert m.hops(0, 8) == (2, 0)
    with pytest.raises(ResourceError, match="2 chips, at most 1"):
        map_graph(g, t, max_chips=1)


def test_boustrophedon_rows(tmp_path):
    t = _target(tmp_path, **{"neurons_per_core = 1024": "neurons_per_core = 1",
                             "cores_per_tile = 4": "cores_per_tile = 1",
                             "cores_per_chip = 128": "cores_per_chip = 4",
                             "mesh_tiles = [8, 4]": "mesh_tiles = [2, 2]"})
    g = _dense_net(3, [4], np.random.default_rng(5))
    m = map_graph(g, t)
    assert [c.tile for c in m.cores] == [(0, 0), (1, 0), (1, 1), (0, 1)]


def test_layer_that_cannot_fit(tmp_path):
    t = _target(tmp_path, **{"input_axons_per_core = 4096": "input_axons_per_core = 64"})
    g = _dense_net(100, [10], np.random.default_rng(6))
    with pytest.raises(ResourceError) as info:
        map_graph(g, t)
    text = str(info.value)
    assert "layer lif0" in text and "100 input axons" in text and "64" in text
    assert "fan-in" in text and "\n" not in text


def test_refuses_float_graph_and_ann_target():
    g = _dense_net(4, [3], np.random.default_rng(7))
    with pytest.raises(UnsupportedError, match="ANN device"):
        map_graph(g, load_target("cpu"))
    from neurodeploy.ir import LIF, Linear
    fg = Graph.chain([("input", Input(shape=(4,))), ("fc", Linear(weight=np.ones((3, 4)))),
                      ("lif", LIF(tau=2.0, r=2.0, v_leak=0.0, v_threshold=1.0))])
    with pytest.raises(UnsupportedError, match="quantize it first"):
        map_graph(fg, load_target("loihi1"))


def test_lavadl_pilotnet_fits(lavadl_netx_dir):
    from neurodeploy.frontends.netx import read_netx

    g = read_netx(lavadl_netx_dir / "gts" / "pilotnet_lif" / "network.net")
    for name in ("loihi1", "loihi2"):
        t = load_target(name)
        m = map_graph(g, t)
        limits = m.limits
        for core in m.cores:
            for key, used in core.usage().items():
                assert used <= limits[key], (name, core.layer, key)
        assert sum(c.neurons for c in m.cores) == sum(
            int(np.prod(g.shapes[n])) for n in g.neurons)
    assert map_graph(g, load_target("loihi2")).cores_used < \
        map_graph(g, load_target("loihi1")).cores_used


def test_flatten_and_recurrent_sources(tmp_path):
    rng = np.random.default_rng(8)
    w = rng.integers(-5, 5, size=(6, 2 * 2 * 2)) * 2
    rec = rng.integers(-5, 5, size=(6, 6)) * 2
    g = Graph(
        {"input": Input(shape=(2, 2, 2)), "in_lif": _lif((2, 2, 2)), "flat": Flatten(),
         "fc": QDense(weight=w, weight_rec=rec), "lif": _lif(6)},
        [("input", "in_lif"), ("in_lif", "flat"), ("flat", "fc"), ("fc", "lif")])
    m = map_graph(g, _discrete(tmp_path))
    lif_core = m.cores[m.layers["lif"]["first_core"]]
    assert lif_core.input_axons == int((w != 0).any(axis=0).sum() + (rec != 0).any(axis=0).sum())
    # population axons: the flattened (2, 2, 2) source counts by position (4), the recurrent
    # synapse (no feature map) by neuron
    m_pop = map_graph(g, load_target("loihi1"))
    lif_core = m_pop.cores[m_pop.layers["lif"]["first_core"]]
    positions = int((w.reshape(6, 2, 4) != 0).any(axis=(0, 1)).sum())
    assert lif_core.input_axons == positions + int((rec != 0).any(axis=0).sum())
    assert m.layers["lif"]["synapses"] == ["fc", "fc.rec"]


def test_mapping_json_round_trip(tmp_path):
    import json

    from neurodeploy.errors import BadInputFileError
    from neurodeploy.mapping import Mapping

    w = np.full((4, 2, 3, 3), 2)
    g = Graph.chain([("input", Input(shape=(2, 5, 5))), ("conv", QConv2d(weight=w)),
                     ("lif", _lif((4, 3, 3))), ("flat", Flatten()),
                     ("fc", QDense(weight=np.ones((5, 36), int) * 2)), ("out", _lif(5))])
    t = _target(tmp_path, **{"neurons_per_core = 1024": "neurons_per_core = 4"})
    m = map_graph(g, t)
    doc = json.loads(json.dumps(m.to_json()))
    back = Mapping.from_json(doc)
    assert back.to_json() == m.to_json()
    assert np.array_equal(back.core_of("lif", (4, 3, 3)), m.core_of("lif", (4, 3, 3)))
    assert back.hops(0, back.cores_used - 1) == m.hops(0, m.cores_used - 1)
    del doc["per_core"][0]["tile"]
    with pytest.raises(BadInputFileError, match="not a neurodeploy mapping"):
        Mapping.from_json(doc, tmp_path / "mapping.json")
