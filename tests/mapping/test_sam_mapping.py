"""Mapping of the on-chip SAM accumulator: its traces and channel sums counted by hand on the
cores of the layer they watch (compartments C·H·W + H·W, synapses, memory, axons), a layer that
fills its cores forced onto more, channel groups with sums on the first group's cores, the
per-core limits respected, the mapping.json round trip, bad layer names and targets, and a
mapping without SAM exactly as before the accumulator existed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurodeploy.errors import (BadInputFileError, NeurodeployError, ResourceError,
                                UnsupportedError)
from neurodeploy.ir import Flatten, Graph, Input, QConv2d, QCubaLIF, QDense, QSumPool2d
from neurodeploy.mapping import RESOURCES, Mapping, map_graph
from neurodeploy.sam import SamSpec

from target_edits import small_target as _small


def small_target(tmp_path: Path, neurons: int, mesh: tuple[int, int] = (2, 2),
                 base: str = "loihi2", **changes: str):
    return _small(tmp_path, neurons, mesh, base, **changes)


def lif(threshold: int = 5) -> QCubaLIF:
    return QCubaLIF(threshold=threshold, current_decay=4096, voltage_decay=4096)


def conv_net(channels: int = 2) -> Graph:
    """input (1,4,4) → 3x3 conv → lif (C,4,4) → 2x2 sum pool → lifp (C,2,2)."""
    return Graph.chain([
        ("input", Input((1, 4, 4))),
        ("conv", QConv2d(weight=np.full((channels, 1, 3, 3), 10), padding=(1, 1))),
        ("lif", lif()),
        ("pool", QSumPool2d(kernel_size=(2, 2), stride=(2, 2), weight=10)),
        ("lifp", lif(1000))])


# sum_bits of a 2-channel (3-channel) sum at gamma 0.5: 2 (3) x the largest trace 10407
TRACE_BITS, SUM_BITS_2, SUM_BITS_3 = 14, 15, 15


def test_one_core_by_hand(tmp_path):
    t = small_target(tmp_path, 128)
    g = conv_net()
    plain = map_graph(g, t)
    m = map_graph(g, t, sam=SamSpec(("lif",)))
    assert m.cores_used == plain.cores_used == 2
    core = m.cores[0]
    assert core.layer == "lif" and m.cores[1].sam is None
    # the layer's own use is what it was without the accumulator
    assert core.usage() == plain.cores[0].usage()
    # 32 traces (2x4x4) + 16 sums (4x4); a synapse neuron -> trace per trace and one per
    # channel trace -> sum; loihi2 keeps state in synaptic memory (14-bit traces, 15-bit
    # sums); population axons: one per position for each synapse kind; 2 output axons a trace
    assert core.sam == {"traces": 32, "sums": 16, "compartments": 48, "synapses": 64,
                        "synaptic_memory_bits": 8 * 64 + 32 * TRACE_BITS + 16 * SUM_BITS_2,
                        "input_axons": 16 + 16, "output_axons": 64}
    assert core.total_usage()["neurons"] == 32 + 48
    doc = m.to_json()
    row = doc["per_core"][0]
    assert row["sam"] == core.sam and row["neurons"] == 32
    assert row["utilization"]["neurons"] == pytest.approx(80 / 128, abs=1e-6)
    info = doc["per_layer"][0]["sam"]
    assert (info["compartments"], info["traces"], info["sums"]) == (32 + 16, 32, 16)
    assert (info["channels"], info["decay"], info["scale"]) == (2, 1612, 4096)
    assert (info["cores"], info["cores_without_sam"], info["extra_cores"]) == (1, 1, 0)
    assert doc["sam"]["layers"] == ["lif"] and doc["sam"]["extra_cores"] == 0
    assert doc["per_layer"][0]["max_per_core"]["neurons"] == 80


def test_a_full_layer_forces_an_extra_core(tmp_path):
    t = small_target(tmp_path, 64)
    g = conv_net()
    assert map_graph(g, t).layers["lif"]["cores"] == 1  # 32 neurons fit one core
    m = map_graph(g, t, sam=SamSpec(["lif"]))
    # With the accumulator a position costs 2 neurons + 2 traces + 1 sum = 5 compartments:
    # 12 positions (3 rows) fit 64, so rows 0-2 and row 3 take a core each.
    lif_cores = [c for c in m.cores if c.layer == "lif"]
    assert [(c.neurons, c.sam["traces"], c.sam["sums"]) for c in lif_cores] == \
        [(24, 24, 12), (8, 8, 4)]
    assert m.cores_used == 3 and m.sam["cores_used_without_sam"] == 2
    assert m.sam["extra_cores"] == 1 and m.layers["lif"]["sam"]["extra_cores"] == 1
    for c in m.cores:
        use = c.total_usage()
        assert all(use[k] <= m.limits[k] for k in RESOURCES)
    assert sum(c.sam["compartments"] for c in lif_cores) == 2 * 16 + 16


def test_channel_groups_put_sums_on_the_first_group(tmp_path):
    # 3 channels, 48 compartments a core, no population axons: one channel per core
    # (3 cores: 16 + 16 traces + 16 sums, then 16 + 16 twice) beats whole rows (4 cores).
    t = small_target(tmp_path, 48, **{"population_axons = true": "population_axons = false"})
    g = conv_net(3)
    m = map_graph(g, t, sam=SamSpec(("lif",)))
    cores = [c for c in m.cores if c.layer == "lif"]
    assert m.layers["lif"]["layout"] == {"kind": "tiles", "channels_per_core": 1,
                                         "tile": [4, 4]}
    assert [c.sam["sums"] for c in cores] == [16, 0, 0]
    assert [c.sam["traces"] for c in cores] == [16, 16, 16]
    # the sums' synapses: one per channel of their pixel; one input axon per source neuron
    assert [c.sam["synapses"] for c in cores] == [16 + 3 * 16, 16, 16]
    assert [c.sam["input_axons"] for c in cores] == [16 + 3 * 16, 16, 16]
    assert [c.sam["synaptic_memory_bits"] for c in cores] == [
        8 * 64 + 16 * TRACE_BITS + 16 * SUM_BITS_3, 8 * 16 + 16 * TRACE_BITS,
        8 * 16 + 16 * TRACE_BITS]
    trace_core, sum_core = m.sam_cores("lif", (3, 4, 4))
    assert trace_core.tolist() == [0] * 16 + [1] * 16 + [2] * 16
    assert sum_core.tolist() == [0] * 16
    assert all(c.total_usage()["neurons"] <= 48 for c in m.cores)


def test_relay_channels_get_no_trace(tmp_path):
    t = small_target(tmp_path, 256)
    m = map_graph(conv_net(3), t, sam=SamSpec(("lif",), channels={"lif": 2}))
    s = m.layers["lif"]["sam"]
    assert (s["channels"], s["traces"], s["sums"], s["synapses"]) == (2, 32, 16, 32 + 32)


@pytest.mark.parametrize("limit,value", [("synaptic_memory_bits_per_core", 3400),
                                         ("input_axons_per_core", 40),
                                         ("output_axons_per_core", 50)])
def test_every_limit_holds_with_the_accumulator(tmp_path, limit, value):
    default = {"synaptic_memory_bits_per_core": 1572864, "input_axons_per_core": 4096,
               "output_axons_per_core": 4096}[limit]
    t = small_target(tmp_path, 512, mesh=(4, 4),
                     **{f"{limit} = {default}": f"{limit} = {value}"})
    g = conv_net()
    plain = map_graph(g, t)
    m = map_graph(g, t, sam=SamSpec(("lif",)))
    key = limit.replace("_per_core", "")
    for c in m.cores:
        use = c.total_usage()
        assert all(use[k] <= m.limits[k] for k in RESOURCES), (c, use)
    # the accumulator needs more of the limited resource than the layer alone: more cores
    assert m.layers["lif"]["cores"] > plain.layers["lif"]["cores"]
    assert max(c.total_usage()[key] for c in m.cores if c.layer == "lif") > \
        max(c.usage()[key] for c in m.cores if c.layer == "lif")


def test_mapping_json_round_trip(tmp_path):
    t = small_target(tmp_path, 64)
    m = map_graph(conv_net(), t, sam=SamSpec(("lif",), gamma=0.2))
    doc = json.loads(json.dumps(m.to_json()))
    back = Mapping.from_json(doc)
    assert back.to_json() == doc
    assert back.sam_layers == m.sam_layers and back.sam["decay"] == 742
    assert [c.sam for c in back.cores] == [c.sam for c in m.cores]
    for bad in ({"traces": -1}, {"traces": "x"}):
        broken = json.loads(json.dumps(doc))
        broken["per_core"][0]["sam"].update(bad)
        with pytest.raises(BadInputFileError, match="sam.traces"):
            Mapping.from_json(broken, "m.json")
    broken = json.loads(json.dumps(doc))
    broken["per_layer"][0]["sam"]["decay"] = 5000
    with pytest.raises(BadInputFileError, match="sam.decay"):
        Mapping.from_json(broken, "m.json")


def test_bad_layers_and_targets(tmp_path):
    t = small_target(tmp_path, 128)
    g = conv_net()
    with pytest.raises(NeurodeployError, match="unknown SAM layer.*nope; conv neuron layers: "
                                               "lif, lifp"):
        map_graph(g, t, sam=SamSpec(("nope",)))
    flat = Graph.chain([("input", Input((1, 4, 4))),
                        ("conv", QConv2d(weight=np.full((2, 1, 3, 3), 10), padding=(1, 1))),
                        ("lif", lif()), ("fl", Flatten()),
                        ("fc", QDense(weight=np.ones((3, 32), dtype=np.int64))),
                        ("out", lif())])
    with pytest.raises(UnsupportedError, match=r"not out \(3,\)"):
        map_graph(flat, t, sam=SamSpec(("out",)))
    with pytest.raises(UnsupportedError, match="loihi1-small cannot run the on-chip SAM"):
        map_graph(g, small_target(tmp_path, 128, base="loihi1"), sam=SamSpec(("lif",)))
    with pytest.raises(NeurodeployError, match="SamSpec"):
        map_graph(g, t, sam=["lif"])
    with pytest.raises(NeurodeployError, match="gamma"):
        SamSpec(("lif",), gamma=0)
    with pytest.raises(NeurodeployError, match="non-empty"):
        SamSpec(())
    # one neuron with its trace and its pixel's sum needs 3 compartments
    with pytest.raises(ResourceError, match="lif: one neuron with its SAM accumulator share "
                                            "needs 3 neurons per core, the target has 2"):
        map_graph(g, small_target(tmp_path, 2, mesh=(8, 8)), sam=SamSpec(("lif",)))


# mapping.json of this network on loihi2 with 16 neurons a core, 2x2 one-core tiles, made
# before the SAM accumulator existed: a mapping without one must not change.
GOLDEN = json.loads(
    '{"target":"loihi2-small","cores_used":4,"chips_used":1,"cores_per_chip":4,"mesh_tiles":['
    '2,2],"cores_per_tile":1,"limits_per_core":{"neurons":16,"synaptic_memory_bits":1572864,"'
    'input_axons":4096,"output_axons":4096},"synapse_encoding":{"c1":"conv","d":"dense"},"per'
    '_layer":[{"layer":"l1","neurons":48,"cores":3,"first_core":0,"neurons_per_core":16,"layo'
    'ut":{"kind":"tiles","channels_per_core":1,"tile":[4,4]},"synapses":["c1"],"synapse_encod'
    'ings":{"c1":"conv"},"max_per_core":{"neurons":16,"synaptic_memory_bits":3216,"input_axon'
    's":16,"output_axons":16},"utilization":{"neurons":1.0,"synaptic_memory_bits":0.002045,"i'
    'nput_axons":0.003906,"output_axons":0.003906}},{"layer":"out","neurons":5,"cores":1,"fir'
    'st_core":3,"neurons_per_core":5,"layout":{"kind":"flat","neurons_per_core":5},"synapses"'
    ':["d"],"synapse_encodings":{"d":"dense"},"max_per_core":{"neurons":5,"synaptic_memory_bi'
    'ts":2880,"input_axons":16,"output_axons":0},"utilization":{"neurons":0.3125,"synaptic_me'
    'mory_bits":0.001831,"input_axons":0.003906,"output_axons":0.0}}],"per_core":[{"core":0,"'
    'chip":0,"tile":[0,0],"layer":"l1","first_neuron":0,"neurons":16,"synaptic_memory_bits":3'
    '216,"input_axons":16,"output_axons":16,"utilization":{"neurons":1.0,"synaptic_memory_bit'
    's":0.002045,"input_axons":0.003906,"output_axons":0.003906}},{"core":1,"chip":0,"tile":['
    '1,0],"layer":"l1","first_neuron":16,"neurons":16,"synaptic_memory_bits":3216,"input_axon'
    's":16,"output_axons":16,"utilization":{"neurons":1.0,"synaptic_memory_bits":0.002045,"in'
    'put_axons":0.003906,"output_axons":0.003906}},{"core":2,"chip":0,"tile":[1,1],"layer":"l'
    '1","first_neuron":32,"neurons":16,"synaptic_memory_bits":3216,"input_axons":16,"output_a'
    'xons":16,"utilization":{"neurons":1.0,"synaptic_memory_bits":0.002045,"input_axons":0.00'
    '3906,"output_axons":0.003906}},{"core":3,"chip":0,"tile":[0,1],"layer":"out","first_neur'
    'on":0,"neurons":5,"synaptic_memory_bits":2880,"input_axons":16,"output_axons":0,"utiliza'
    'tion":{"neurons":0.3125,"synaptic_memory_bits":0.001831,"input_axons":0.003906,"output_a'
    'xons":0.0}}],"warnings":[]}'
)


def regression_net() -> Graph:
    rng = np.random.default_rng(7)
    return Graph.chain([
        ("in", Input((2, 4, 4))),
        ("c1", QConv2d(weight=rng.integers(-40, 60, (3, 2, 3, 3)), padding=(1, 1))),
        ("l1", QCubaLIF(threshold=60, current_decay=2048, voltage_decay=1024)),
        ("fl", Flatten()), ("d", QDense(weight=rng.integers(-30, 40, (5, 48)))),
        ("out", QCubaLIF(threshold=80, current_decay=4096, voltage_decay=4096))])


def test_no_sam_mapping_is_unchanged(tmp_path):
    t = small_target(tmp_path, 16)
    m = map_graph(regression_net(), t)
    assert m.to_json() == GOLDEN
    assert map_graph(regression_net(), t, sam=None).to_json() == GOLDEN
    assert m.sam == {} and m.sam_layers == {} and all(c.sam is None for c in m.cores)
