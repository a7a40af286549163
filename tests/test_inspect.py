"""The layer table of ``neurodeploy inspect``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurodeploy.frontends.netx import read_netx
from neurodeploy.inspect import format_layer_table, layer_table
from neurodeploy.ir import Flatten, Graph, Input, QConv2d, QCubaLIF, QDense


def _graph() -> Graph:
    return Graph.chain([
        ("input", Input(shape=(2, 6, 6))),
        ("conv_syn", QConv2d(weight=np.ones((3, 2, 3, 3), int), stride=2, padding=1,
                             sign_mode="excitatory")),
        ("conv", QCubaLIF(threshold=80, current_decay=4096, voltage_decay=100, bias=5,
                          bias_exp=6)),
        ("flat", Flatten()),
        ("fc_syn", QDense(weight=np.ones((4, 27), int) * 64, weight_exp=-6,
                          num_weight_bits=2, sign_mode="excitatory")),
        ("fc", QCubaLIF(threshold=10)),
    ])


def test_rows() -> None:
    rows = layer_table(_graph())
    assert [r["name"] for r in rows] == ["input", "conv_syn", "conv", "flat", "fc_syn", "fc"]
    conv = rows[1]
    assert conv["shape"] == (3, 3, 3) and conv["kernel"] == (3, 3)
    assert conv["stride"] == (2, 2) and conv["padding"] == (1, 1) and conv["groups"] == 1
    assert conv["fan_in"] == 18 and conv["weight_bits"] == 8 and conv["weight_exp"] == 0
    assert rows[2]["neuron"]["threshold"] == 80 and rows[2]["neuron"]["bias"] == 5
    assert rows[2]["fan_in"] is None and rows[3]["shape"] == (27,)
    fc = rows[4]
    assert fc["fan_in"] == 27 and fc["weight_exp"] == -6 and fc["sign_mode"] == "excitatory"
    assert fc["kernel"] is None


def test_text_table() -> None:
    text = format_layer_table(layer_table(_graph()))
    lines = text.splitlines()
    assert len(lines) == 2 + 6
    assert lines[0].split()[:3] == ["name", "type", "output"]
    assert set(lines[1]) <= {"-", " "}
    conv = next(line for line in lines if line.startswith("conv_syn"))
    assert "3x3x3" in conv and "2x2" in conv and "8b exp=0 excitatory" in conv
    assert "vth=80" in next(line for line in lines if line.startswith("conv "))
    # fixed width: the type column starts at the same offset on every line
    offsets = {line.index(word) for line, word in zip(lines[2:], ["Input", "QConv2d"])}
    assert len(offsets) == 1


def test_netx_file_table(lavadl_netx_dir: Path) -> None:
    graph = read_netx(lavadl_netx_dir / "gts/pilotnet_lif/network.net")
    rows = layer_table(graph)
    assert len(rows) == len(graph.nodes)
    dense = next(r for r in rows if r["name"] == "dense7_syn")
    assert dense["fan_in"] == 2560 and dense["shape"] == (100,)
    assert "dense10" in format_layer_table(rows)
