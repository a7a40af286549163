"""BN folding: the folded graph computes the same function (checked with an independent torch
evaluator of the ANN nodes, and with floatsim when present); unfoldable BatchNorms are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurodeploy.errors import UnsupportedError
from neurodeploy.ir import (
    Add,
    Affine,
    AvgPool2d,
    BatchNorm,
    Conv2d,
    Flatten,
    Graph,
    Input,
    Linear,
    ReLU,
)
from neurodeploy.passes.fold_bn import fold_batchnorm, fold_problems


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.array(a, dtype=np.float64))


def ann_forward(graph: Graph, x: np.ndarray) -> dict[str, torch.Tensor]:
    """Independent float64 evaluator of the ANN node types used here (batch first)."""
    vals: dict[str, torch.Tensor] = {}
    for name in graph.topo_order:
        node = graph.nodes[name]
        ins = [vals[p] for p in graph.predecessors(name)]
        if isinstance(node, Input):
            out = torch.as_tensor(x, dtype=torch.float64)
        elif isinstance(node, Conv2d):
            b = None if node.bias is None else _t(node.bias)
            out = F.conv2d(ins[0], _t(node.weight), b, node.stride, node.padding,
                           node.dilation, node.groups)
        elif isinstance(node, Affine):
            out = ins[0] @ _t(node.weight).T + _t(node.bias)
        elif isinstance(node, Linear):
            out = ins[0] @ _t(node.weight).T
        elif isinstance(node, BatchNorm):
            shape = (1, -1) + (1,) * (ins[0].ndim - 2)
            out = ins[0] * _t(node.scale).reshape(shape) + _t(
                node.shift).reshape(shape)
        elif isinstance(node, ReLU):
            out = torch.relu(ins[0])
        elif isinstance(node, Flatten):
            out = ins[0].flatten(1)
        elif isinstance(node, AvgPool2d):
            out = F.avg_pool2d(ins[0], node.kernel_size, node.stride, node.padding)
        elif isinstance(node, Add):
            out = sum(ins)
        else:  # pragma: no cover - test helper
            raise TypeError(node.type_name)
        vals[name] = out
    return vals


def _bn(rng: np.random.Generator, c: int) -> BatchNorm:
    return BatchNorm(scale=rng.uniform(0.3, 2.0, c) * rng.choice([-1, 1], c),
                     shift=rng.normal(0, 1, c))


def conv_net(rng: np.random.Generator) -> Graph:
    return Graph.chain([
        ("x", Input((2, 8, 8))),
        ("c1", Conv2d(weight=rng.normal(0, 0.5, (4, 2, 3, 3)), padding=1)),  # no bias
        ("bn1", _bn(rng, 4)),
        ("r1", ReLU()),
        ("p1", AvgPool2d(2, 2)),
        ("c2", Conv2d(weight=rng.normal(0, 0.5, (6, 2, 3, 3)), bias=rng.normal(0, 1, 6),
                      stride=2, groups=2)),
        ("bn2", _bn(rng, 6)),
        ("r2", ReLU()),
        ("f", Flatten()),
        ("l3", Linear(weight=rng.normal(0, 0.5, (5, 6)))),
        ("bn3", _bn(rng, 5)),
        ("r3", ReLU()),
        ("fc", Affine(weight=rng.normal(0, 0.5, (3, 5)), bias=rng.normal(0, 1, 3))),
        ("bn4", _bn(rng, 3)),
    ], dt=1.0)


def test_fold_equals_unfolded_within_1e_12():
    rng = np.random.default_rng(0)
    graph = conv_net(rng)
    folded = fold_batchnorm(graph)
    folded.validate()
    assert not any(isinstance(n, BatchNorm) for n in folded.nodes.values())
    assert list(folded.nodes) == ["x", "c1", "r1", "p1", "c2", "r2", "f", "l3", "r3", "fc"]
    assert isinstance(folded.nodes["l3"], Affine)  # Linear gained a bias
    assert folded.nodes["c1"].bias is not None
    assert folded.outputs == ["fc"]
    assert folded.metadata == {"dt": 1.0}
    x = rng.normal(0, 1, (7, 2, 8, 8))
    ref = ann_forward(graph, x)["bn4"]
    got = ann_forward(folded, x)["fc"]
    assert ref.shape == (7, 3)
    assert float((ref - got).abs().max()) < 1e-12
    # the input graph is untouched
    assert isinstance(graph.nodes["bn1"], BatchNorm) and graph.nodes["c1"].bias is None


def test_fold_hand_numbers():
    """y = 2·(W x + b) + 1 with W = [[1, -1]], b = [0.5] -> W' = [[2, -2]], b' = [2]."""
    graph = Graph.chain([
        ("x", Input((2,))),
        ("fc", Affine(weight=[[1.0, -1.0]], bias=[0.5])),
        ("bn", BatchNorm(scale=[2.0], shift=[1.0])),
    ])
    fc = fold_batchnorm(graph).nodes["fc"]
    np.testing.assert_array_equal(fc.weight, [[2.0, -2.0]])
    np.testing.assert_array_equal(fc.bias, [2.0])


def test_fold_keeps_edge_order_into_add():
    rng = np.random.default_rng(1)
    nodes = {
        "x": Input((3,)),
        "a": Linear(weight=rng.normal(size=(3, 3))),
        "bn": _bn(rng, 3),
        "b": Affine(weight=rng.normal(size=(3, 3)), bias=rng.normal(size=3)),
        "sum": Add(),
        "r": ReLU(),
    }
    edges = [("x", "a"), ("x", "b"), ("a", "bn"), ("b", "sum"), ("bn", "sum"), ("sum", "r")]
    graph = Graph(nodes, edges)
    folded = fold_batchnorm(graph)
    assert folded.predecessors("sum") == ["b", "a"]
    x = rng.normal(size=(4, 3))
    diff = ann_forward(graph, x)["r"] - ann_forward(folded, x)["r"]
    assert float(diff.abs().max()) < 1e-12


def test_unfoldable_batchnorms_are_all_named():
    rng = np.random.default_rng(2)
    nodes = {
        "x": Input((3,)),
        "a": Linear(weight=rng.normal(size=(3, 3))),
        "b": Linear(weight=rng.normal(size=(3, 3))),
        "sum": Add(),
        "bn_add": _bn(rng, 3),          # after an Add
        "bn_shared": _bn(rng, 3),       # "a" also feeds "sum"
        "bn_input": _bn(rng, 3),        # after the input
    }
    edges = [("x", "a"), ("x", "b"), ("a", "sum"), ("b", "sum"), ("sum", "bn_add"),
             ("a", "bn_shared"), ("x", "bn_input")]
    graph = Graph(nodes, edges)
    graph.validate()
    problems = fold_problems(graph)
    assert len(problems) == 3
    with pytest.raises(UnsupportedError) as info:
        fold_batchnorm(graph)
    msg = str(info.value)
    assert "\n" not in msg
    for name in ("bn_add", "bn_shared", "bn_input"):
        assert name in msg
    assert "Add" in msg and "also feeds sum" in msg


def test_no_batchnorm_returns_same_graph():
    graph = Graph.chain([("x", Input((2,))), ("fc", Linear(weight=np.eye(2)))])
    assert fold_batchnorm(graph) is graph


def test_fold_matches_floatsim_when_available():
    floatsim = pytest.importorskip("neurodeploy.backends.floatsim")
    rng = np.random.default_rng(3)
    graph = conv_net(rng)
    folded = fold_batchnorm(graph)
    x = rng.normal(0, 1, (5, 2, 8, 8))
    ref = ann_forward(graph, x)["bn4"].numpy()
    got = np.asarray(floatsim.forward(folded, x, 1))
    assert got.shape[0] == 5
    np.testing.assert_allclose(got.reshape(5, 3), ref, rtol=0, atol=1e-12)
