"""netx HDF5 reader/writer: round trips of lava-dl's shipped files, weight optimization as
netx does it, the writer's refusals and one-line errors for every kind of bad file."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from neurodeploy.errors import BadInputFileError, QuantizationError, UnsupportedError
from neurodeploy.frontends.load import load_model
from neurodeploy.frontends.netx import optimize_weight_bits, read_netx, write_netx
from neurodeploy.ir import (
    Add, Average, Concat, Flatten, Graph, Input, QConv2d, QCubaLIF, QDense, QSigmaDelta,
)

SHIPPED = [
    "tiny.net", "mnist.net", "gts/pilotnet_lif/network.net", "gts/pilotnet_sdnn/network.net",
    "gts/pilotnet_sdnn/square_network.net", "gts/ntidigits/ntidigits.net",
]


def _datasets(path: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset)
                     else None)
    return out


def _text(value: object) -> str | None:
    arr = np.asarray(value)
    if arr.dtype.kind in "SOU":
        item = arr.reshape(-1)[0]
        return item.decode() if isinstance(item, bytes) else str(item)
    return None


def assert_same_graph(a: Graph, b: Graph) -> None:
    assert list(a.nodes) == list(b.nodes)
    assert a.edges == b.edges
    for name in a.nodes:
        assert a.nodes[name].same_as(b.nodes[name]), name


# ------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("rel", SHIPPED)
def test_shipped_files_round_trip(lavadl_netx_dir: Path, tmp_path: Path, rel: str) -> None:
    src = lavadl_netx_dir / rel
    graph = read_netx(src)
    assert graph.metadata["layout"] == "netx" and graph.metadata["source"] == str(src)
    out = tmp_path / "out.net"
    write_netx(graph, out)
    assert_same_graph(graph, read_netx(out))
    original, written = _datasets(src), _datasets(out)
    assert set(original) == set(written)
    for key, value in original.items():
        if _text(value) is not None:
            assert _text(value) == _text(written[key]), key
        else:
            assert np.shape(value) == np.shape(written[key]), key
            assert np.array_equal(value, written[key]), key


def test_pilotnet_structure(lavadl_netx_dir: Path) -> None:
    g = read_netx(lavadl_netx_dir / "gts/pilotnet_lif/network.net")
    assert list(g.nodes)[:3] == ["input", "input0", "conv1_syn"]
    assert g.shapes["conv4"] == (64, 4, 22)
    conv = g.nodes["conv4_syn"]
    assert isinstance(conv, QConv2d) and conv.stride == (2, 1) and conv.padding == (1, 0)
    assert conv.weight_exp == 0 and conv.num_weight_bits == 8
    with h5py.File(lavadl_netx_dir / "gts/pilotnet_lif/network.net") as f:
        assert np.array_equal(conv.weight, f["layer/4/weight"][()])
        bias = f["layer/1/bias"][()]
    neuron = g.nodes["conv1"]
    assert neuron.bias.shape == (24, 32, 99) and np.array_equal(neuron.bias[:, 5, 7], bias)
    assert neuron.bias_exp == 6 and neuron.threshold == 25 and neuron.voltage_decay == 1024
    assert isinstance(g.nodes["flatten6"], Flatten)
    assert g.metadata["netx"]["input_transform"] == {"weight": 40.0, "bias": 36.0}
    assert g.metadata["netx"]["simulation"] == {"Ts": 1, "tSample": 16}
    layer0 = g.metadata["netx"]["layers"][0]
    assert float(layer0["neuron"]["extra"]["scaleRho"]) == 1.0


def test_dense_weights_match_netx_effective(lavadl_netx_dir: Path) -> None:
    g = read_netx(lavadl_netx_dir / "mnist.net")
    with h5py.File(lavadl_netx_dir / "mnist.net") as f:
        raw = f["layer/1/weight"][()]
    d = g.nodes["dense1_syn"]
    np.testing.assert_array_equal(d.weight * 2.0 ** d.weight_exp, raw)
    # layer 3 has no neuron group: netx's non-leaky integrator with its 2**17 threshold
    n = g.nodes["dense3"]
    assert (n.current_decay, n.voltage_decay, n.threshold) == (0, 4096, 2**17)


def test_sdnn_and_average_and_delay(lavadl_netx_dir: Path) -> None:
    g = read_netx(lavadl_netx_dir / "gts/pilotnet_sdnn/network.net")
    assert isinstance(g.nodes["input0"], QSigmaDelta) and g.nodes["input0"].kind == "delta"
    assert g.nodes["conv1"].kind == "sigma_delta"
    t = read_netx(lavadl_netx_dir / "gts/ntidigits/ntidigits.net")
    assert isinstance(t.nodes["average5"], Average) and t.shapes["average5"] == (11,)
    with h5py.File(lavadl_netx_dir / "gts/ntidigits/ntidigits.net") as f:
        delay = f["layer/2/delay"][()]
    d = t.nodes["dense2_syn"].delay
    assert d.shape == (256, 64) and np.array_equal(d[:, 0], delay) and np.all(d == d[:, :1])


@pytest.mark.lava
@pytest.mark.parametrize("rel", ["tiny.net", "gts/pilotnet_lif/network.net"])
def test_lava_accepts_written_files(lavadl_netx_dir: Path, tmp_path: Path, rel: str) -> None:
    hdf5 = pytest.importorskip("lava.lib.dl.netx.hdf5")
    out = tmp_path / "out.net"
    write_netx(read_netx(lavadl_netx_dir / rel), out)
    net = hdf5.Network(net_config=str(out))
    ref = hdf5.Network(net_config=str(lavadl_netx_dir / rel))
    assert len(net) == len(ref) and str(net) == str(ref)


# ------------------------------------------------------------------------------ weight bits


def test_optimize_weight_bits_matches_netx() -> None:
    utils = pytest.importorskip("lava.lib.dl.netx.utils")
    rng = np.random.default_rng(0)
    cases = [rng.integers(-256, 255, (6, 5)), rng.integers(0, 256, (4, 4)),
             rng.integers(-256, 0, (3, 7)), rng.integers(-3, 4, (5, 5)) * 8,
             np.array([[0, 1], [1, 0]]), np.array([[-1, 0]]), np.array([[-4, 12]]),
             rng.integers(-40, 40, (8, 8)) * 2]
    for w in cases:
        mant, bits, exp, sign = optimize_weight_bits(w)
        ref_mant, ref_bits, ref_exp, ref_sign = utils.optimize_weight_bits(w.astype(float))
        assert np.array_equal(mant, ref_mant) and (bits, exp) == (ref_bits, ref_exp)
        assert sign == ref_sign.name.lower()
        assert np.array_equal(mant * 2.0 ** exp, w)


def test_optimize_weight_bits_edge_cases() -> None:
    mant, bits, exp, sign = optimize_weight_bits(np.zeros((2, 2)))
    assert not mant.any() and exp == 0
    with pytest.raises(QuantizationError):
        optimize_weight_bits(np.array([[0.5, 1.0]]))
    with pytest.raises(QuantizationError):
        optimize_weight_bits(np.array([[0, 300]]))
    with pytest.warns(UserWarning, match="clipped"):
        mant, bits, exp, sign = optimize_weight_bits(np.array([[-300, 300]]))
    assert np.array_equal(mant * 2.0 ** exp, [[-256, 254]])


# ------------------------------------------------------------------------------ writer refusals


def _small_graph(**dense: object) -> Graph:
    params = {"weight": np.ones((3, 4), int), "weight_exp": 0, "num_weight_bits": 8,
              "sign_mode": "excitatory", **dense}
    return Graph.chain([
        ("input", Input(shape=(4,))),
        ("input0", QCubaLIF(threshold=10, current_decay=4096, voltage_decay=0, bias_exp=6)),
        ("dense1_syn", QDense(**params)),
        ("dense1", QCubaLIF(threshold=10, bias=np.arange(3), bias_exp=6)),
    ])


def test_write_graph_without_metadata(tmp_path: Path) -> None:
    g = _small_graph(weight=np.array([[1, -2, 3, 0]] * 3), sign_mode="mixed",
                     delay=np.tile(np.arange(4), (3, 1)))
    write_netx(g, tmp_path / "a.net")
    back = read_netx(tmp_path / "a.net")
    d = back.nodes["dense1_syn"]
    # mixed sign with 8 weight bits: the IR (as Lava) zeroes the mantissa's lowest bit
    np.testing.assert_array_equal(d.weight * 2.0 ** d.weight_exp, [[0, -2, 2, 0]] * 3)
    np.testing.assert_array_equal(d.delay, g.nodes["dense1_syn"].delay)
    assert np.array_equal(back.nodes["dense1"].bias, [0, 1, 2])


def test_write_refuses_fractional_weights(tmp_path: Path) -> None:
    g = _small_graph(weight=np.full((3, 4), 3), weight_exp=-1, sign_mode="excitatory")
    with pytest.raises(QuantizationError, match="dense1_syn"):
        write_netx(g, tmp_path / "a.net")
    assert not (tmp_path / "a.net").exists()


def test_write_refuses_large_weights(tmp_path: Path) -> None:
    g = _small_graph(weight=np.array([[200, -1, 0, 0]] * 3), weight_exp=1, sign_mode="mixed")
    with pytest.raises(QuantizationError, match="dense1_syn"):
        write_netx(g, tmp_path / "a.net")


def test_write_refuses_non_chain_and_unknown_nodes(tmp_path: Path) -> None:
    lif = QCubaLIF(threshold=10, bias_exp=6)
    nodes = {
        "input": Input(shape=(4,)), "input0": lif,
        "a_syn": QDense(weight=np.ones((4, 4), int), sign_mode="excitatory"), "a": lif,
        "b_syn": QDense(weight=np.ones((4, 4), int), sign_mode="excitatory"), "b": lif,
        "add": Add(),
    }
    edges = [("input", "input0"), ("input0", "a_syn"), ("a_syn", "a"), ("a", "b_syn"),
             ("b_syn", "b"), ("a", "add"), ("b", "add")]
    with pytest.raises(UnsupportedError, match="add"):
        write_netx(Graph(nodes, edges), tmp_path / "a.net")
    nodes["add"] = Concat()
    write_netx(Graph(nodes, edges), tmp_path / "c.net")  # skip connection through concat
    back = read_netx(tmp_path / "c.net")
    assert back.predecessors("concat3") == ["dense1", "dense2"] and back.shapes["concat3"] == (8,)
    skip = {**{k: v for k, v in nodes.items() if k != "add"}}
    bad = Graph(skip, [("input", "input0"), ("input0", "a_syn"), ("a_syn", "a"),
                       ("input0", "b_syn"), ("b_syn", "b")])
    with pytest.raises(UnsupportedError):
        write_netx(bad, tmp_path / "d.net")


# ------------------------------------------------------------------------------ bad files


def _write_tiny(path: Path, **changes: object) -> Path:
    """A small valid netx file (input 2x6x6 -> conv -> flatten -> dense); ``changes`` maps
    dataset paths to new values (None deletes)."""
    with h5py.File(path, "w") as f:
        def put(key: str, value: object) -> None:
            f.create_dataset(key, data=value)
        put("layer/0/type", [b"input"]); put("layer/0/shape", [2, 6, 6])
        for i in (0, 1, 3):
            for k, v in {"type": "CUBA", "vThMant": 80, "iDecay": 4096, "vDecay": 100,
                         "refDelay": 1}.items():
                put(f"layer/{i}/neuron/{k}", v)
        put("layer/1/type", [b"conv"]); put("layer/1/shape", [3, 4, 4])
        put("layer/1/weight", np.arange(54, dtype=np.float32).reshape(3, 2, 3, 3) - 27)
        put("layer/1/stride", [1, 1]); put("layer/1/padding", [0, 0])
        put("layer/1/dilation", [1, 1]); put("layer/1/groups", 1)
        put("layer/1/inChannels", 2); put("layer/1/outChannels", 3)
        put("layer/1/kernelSize", [3, 3]); put("layer/1/bias", np.array([1.0, 2.0, 3.0]))
        put("layer/2/type", [b"flatten"]); put("layer/2/shape", [48, 1, 1])
        put("layer/3/type", [b"dense"]); put("layer/3/shape", [5])
        put("layer/3/weight", np.ones((5, 48), np.float32) * 2)
        for key, value in changes.items():
            key = key.replace(".", "/")
            if key in f:
                del f[key]
            if value is not None:
                put(key, value)
    return path


def test_tiny_fixture_reads(tmp_path: Path) -> None:
    g = read_netx(_write_tiny(tmp_path / "ok.net"))
    assert g.shapes["dense3"] == (5,) and g.nodes["conv1"].bias[2, 3, 3] == 3


BAD_FILES = {
    "no_layer": ({"layer": None}, "no 'layer' group"),
    "conv_without_weight": ({"layer.1.weight": None}, "missing field 'weight'"),
    "neuron_without_vth": ({"layer.1.neuron.vThMant": None}, "'vThMant'"),
    "weight_vs_channels": ({"layer.1.inChannels": 5}, "inChannels=5"),
    "weight_vs_previous": ({"layer.3.weight": np.ones((5, 47))}, "dense3_syn"),
    "conv_shape_vs_weight": ({"layer.1.shape": [3, 5, 5]}, "conv1"),
    "dense_shape_vs_weight": ({"layer.3.shape": [6]}, "6 output neurons"),
    "string_for_number": ({"layer.1.neuron.vThMant": "big"}, "expected numbers"),
    "nan_weight": ({"layer.3.weight": np.full((5, 48), np.nan)}, "NaN"),
    "fractional_weight": ({"layer.3.weight": np.full((5, 48), 0.5)}, "non-integer"),
    "unknown_type": ({"layer.2.type": [b"warp"]}, "unknown layer type 'warp'"),
    "vth_negative": ({"layer.1.neuron.vThMant": -1}, "vThMant=-1"),
    "vth_too_large": ({"layer.1.neuron.vThMant": 2**17 + 1}, "vThMant=131073"),
    "decay_too_large": ({"layer.3.neuron.vDecay": 5000}, "vDecay=5000"),
    "absurd_shape": ({"layer.0.shape": [100000, 100000, 100000]}, "elements"),
    "first_not_input": ({"layer.0.type": [b"flatten"]}, "first layer"),
    "bad_bias": ({"layer.1.bias": np.ones(7)}, "bias shape"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files(tmp_path: Path, case: str) -> None:
    changes, message = BAD_FILES[case]
    path = _write_tiny(tmp_path / f"{case}.net", **changes)
    with pytest.raises(BadInputFileError) as err:
        read_netx(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and message in text, text


def test_absurd_weight_dataset_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.net"
    _write_tiny(path)
    with h5py.File(path, "a") as f:
        del f["layer/3/weight"]
        f.create_dataset("layer/3/weight", shape=(1 << 20, 1 << 20), dtype="f4")  # unallocated
    with pytest.raises(BadInputFileError, match="too large"):
        read_netx(path)


def test_missing_text_and_truncated_files(tmp_path: Path) -> None:
    with pytest.raises(BadInputFileError, match="no such file"):
        read_netx(tmp_path / "nope.net")
    text = tmp_path / "text.net"
    text.write_text("not hdf5\n")
    with pytest.raises(BadInputFileError, match="HDF5") as err:
        read_netx(text)
    assert "\n" not in str(err.value)
    full = _write_tiny(tmp_path / "full.net")
    cut = tmp_path / "cut.net"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputFileError) as err:
        read_netx(cut)
    assert str(cut) in str(err.value) and "\n" not in str(err.value)


def test_dense_comp_unsupported(tmp_path: Path) -> None:
    path = _write_tiny(tmp_path / "c.net", **{"layer.3.type": [b"dense_comp"]})
    with pytest.raises(UnsupportedError, match="layer 3 .*not supported yet"):
        read_netx(path)


def test_delay_clamped_with_warning(tmp_path: Path) -> None:
    path = _write_tiny(tmp_path / "d.net", **{"layer.3.delay": np.arange(5) * 20})
    with pytest.warns(UserWarning, match="clamped"):
        g = read_netx(path)
    assert g.nodes["dense3_syn"].delay.max() == 62


# ------------------------------------------------------------------------------ load_model


def test_load_model_dispatch(tmp_path: Path) -> None:
    path = _write_tiny(tmp_path / "m.h5")
    assert "dense3" in load_model(path).nodes
    with pytest.raises(UnsupportedError, match=r"\.net"):
        load_model(tmp_path / "model.xyz")
    with pytest.raises(BadInputFileError, match="no such file"):
        load_model(tmp_path / "missing.net")
