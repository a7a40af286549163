"""Float IR simulator: neuron dynamics against hand-worked sequences (both update orders, both
resets, IF, I, CubaLIF, recurrence), BNTT's per-step rows, and synapse/pool/structural nodes
against numpy computations."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from neurodeploy.backends.floatsim import FloatSim, forward, run
from neurodeploy.errors import NeurodeployError, UnsupportedError
from neurodeploy.ir import (
    BNTT, IF, LIF, Add, Affine, AvgPool2d, BatchNorm, Concat, Conv2d, CubaLIF, Flatten, Graph, I,
    Input, Linear, QCubaLIF, QDense, ReLU, SumPool2d,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def single(neuron, *, dt: float = 1.0, n: int = 1) -> Graph:
    return Graph.chain([("x", Input((n,))), ("n", neuron)], dt=dt)


def discrete_lif(lam: float, thr: float, dt: float = 1.0, **kw) -> LIF:
    """The seeds' ``v <- lam*v + I`` as an IR LIF."""
    return LIF(tau=dt / (1 - lam), r=1 / (1 - lam), v_leak=0.0, v_threshold=thr, **kw)


def trace(graph: Graph, x, steps: int, what: str = "s", node: str = "n") -> np.ndarray:
    res = run(graph, np.asarray(x, dtype=float), steps, record={node: [what]})
    return res.traces[f"{node}.{what}"][0, 0]


# ------------------------------------------------------------------------------ LIF


def test_discrete_lif_order_a_subtract_hand_worked() -> None:
    # lam = 0.5, theta = 1, I = 0.6: v = 0.6, 0.9, 1.05 -> spike, 0.05, 0.625, 0.9125, ...
    g = single(discrete_lif(0.5, 1.0, reset="subtract"))
    v = trace(g, [[0.6]], 12, "v")
    s = trace(g, [[0.6]], 12, "s")
    assert np.nonzero(s)[0].tolist() == [2, 5, 8, 11]
    np.testing.assert_allclose(
        v[:9], [0.6, 0.9, 0.05, 0.625, 0.9125, 0.05625, 0.628125, 0.9140625, 0.05703125],
        rtol=0, atol=1e-12)


def test_discrete_lif_zero_reset_and_dt_invariance() -> None:
    for dt in (1.0, 1e-3):
        g = single(discrete_lif(0.5, 1.0, dt=dt, reset="zero"), dt=dt)
        v = trace(g, [[0.6]], 9, "v")
        np.testing.assert_allclose(v, [0.6, 0.9, 0, 0.6, 0.9, 0, 0.6, 0.9, 0], atol=1e-12)
        assert np.nonzero(trace(g, [[0.6]], 9))[0].tolist() == [2, 5, 8]


def test_discrete_lif_order_b_fires_from_previous_potential() -> None:
    # s[t] = H(v[t-1] - 1); v[t] = 0.5 v[t-1] + 0.6 - s[t]:
    # v = 0.6, 0.9, 1.05, 0.125 (spike at t=3), 0.6625, 0.93125, 1.065625, 0.1328125 (t=7)
    g = single(discrete_lif(0.5, 1.0, reset="subtract", order="fire_integrate"))
    v = trace(g, [[0.6]], 12, "v")
    np.testing.assert_allclose(
        v[:8], [0.6, 0.9, 1.05, 0.125, 0.6625, 0.93125, 1.065625, 0.1328125], atol=1e-12)
    assert np.nonzero(trace(g, [[0.6]], 12))[0].tolist() == [3, 7, 11]


def test_lif_leak_potential_and_v_reset() -> None:
    # Continuous LIF, dt/tau = 0.25, r = 2, v_leak = 0.4, I = 1:
    # v <- 0.75 v + 0.25*(0.4 + 2) = 0.75 v + 0.6; threshold 1.2; reset to v_reset = 0.5.
    node = LIF(tau=4.0, r=2.0, v_leak=0.4, v_threshold=1.2, v_reset=0.5)
    g = single(node)
    v = trace(g, [[1.0]], 4, "v")
    # 0.6, 1.05, 1.3875 -> spike -> 0.5, 0.975
    np.testing.assert_allclose(v, [0.6, 1.05, 0.5, 0.975], atol=1e-12)


# ------------------------------------------------------------------------------ IF, I


def test_if_subtract_zero_and_orders() -> None:
    # I = 0.75, theta = 1 (all values exact in binary; v = 1.0 does not fire: strict >)
    sub = single(IF(r=1.0, v_threshold=1.0, reset="subtract"))
    assert np.nonzero(trace(sub, [[0.75]], 10))[0].tolist() == [1, 2, 4, 5, 6, 8, 9]
    assert trace(sub, [[0.75]], 4, "v").tolist() == [0.75, 0.5, 0.25, 1.0]
    zero = single(IF(r=1.0, v_threshold=1.0, reset="zero"))
    assert np.nonzero(trace(zero, [[0.75]], 10))[0].tolist() == [1, 3, 5, 7, 9]
    # order B = order A one step later for IF with subtraction
    late = single(IF(r=1.0, v_threshold=1.0, reset="subtract", order="fire_integrate"))
    assert np.nonzero(trace(late, [[0.75]], 11))[0].tolist() == [2, 3, 5, 6, 7, 9, 10]


def test_if_uses_dt_and_r() -> None:
    # v += dt*r*I = 0.5*3*0.25 = 0.375 per step; threshold 1 crossed at t = 2 (v = 1.125)
    g = single(IF(r=3.0, v_threshold=1.0, reset="subtract"), dt=0.5)
    np.testing.assert_allclose(trace(g, [[0.25]], 3, "v"), [0.375, 0.75, 0.125], atol=1e-12)


def test_integrator_accumulates_time_varying_input() -> None:
    # accumulator U[t] = U[t-1] + I[t] is I(r=1/dt); output is v
    g = single(I(r=2.0), dt=0.5, n=2)
    x = np.array([[[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 0.25]]])
    res = run(g, x, 3, record=["v"])
    np.testing.assert_array_equal(res.traces["n.v"][0], [[1, 3, 6], [0.5, -0.5, -0.5]])
    np.testing.assert_array_equal(res.traces["n.out"], res.traces["n.v"])
    assert "n" not in res.spike_counts  # an integrator has no spikes
    out = forward(g, x, 3)
    assert isinstance(out, torch.Tensor) and out.tolist() == [[6.0, -0.5]]


# ------------------------------------------------------------------------------ CubaLIF


def test_cubalif_current_first_then_membrane() -> None:
    # alpha = beta = 0.5 (tau = 2, dt = 1), w_in = r = 2 -> i <- 0.5 i + x; v <- 0.5 v + i
    node = CubaLIF(tau_syn=2.0, tau_mem=2.0, r=2.0, v_leak=0.0, v_threshold=1.25, w_in=2.0)
    g = single(node)
    res = run(g, np.array([[0.5]]), 7, record={"n": ["i", "u", "v", "s"]})
    i = res.traces["n.i"][0, 0]
    np.testing.assert_array_equal(
        i, [0.5, 0.75, 0.875, 0.9375, 0.96875, 0.984375, 0.9921875])
    np.testing.assert_array_equal(res.traces["n.u"], res.traces["n.i"])
    # v: 0.5, 1.0 (no spike), 1.375 -> spike -> 0, 0.9375, 1.4375 -> spike -> 0, 0.984375, ...
    np.testing.assert_array_equal(
        res.traces["n.v"][0, 0], [0.5, 1.0, 0.0, 0.9375, 0.0, 0.984375, 0.0])
    assert np.nonzero(res.traces["n.s"][0, 0])[0].tolist() == [2, 4, 6]
    assert res.spike_counts["n"].tolist() == [3]


def test_cubalif_subtract_keeps_current() -> None:
    node = CubaLIF(tau_syn=2.0, tau_mem=2.0, r=2.0, v_leak=0.0, v_threshold=1.25, w_in=2.0,
                   reset="subtract")
    res = run(single(node), np.array([[0.5]]), 4, record=["v", "i"])
    np.testing.assert_array_equal(res.traces["n.i"][0, 0], [0.5, 0.75, 0.875, 0.9375])
    # 0.5, 1.0, 1.375 - 1.25 = 0.125, 0.0625 + 0.9375 = 1.0
    np.testing.assert_array_equal(res.traces["n.v"][0, 0], [0.5, 1.0, 0.125, 1.0])


# ------------------------------------------------------------------------------ recurrence


def test_recurrent_weights_delay_one_step() -> None:
    # neuron 0 fires at t=0 from the input; its spike reaches neuron 1 at t=1 through the
    # recurrent weight; neuron 1 also gets the recurrent bias 0.2 at every step.
    g = Graph.chain(
        [("x", Input((1,))), ("fc", Affine([[1.0], [0.0]], [0.0, 0.0])),
         ("n", IF(r=1.0, v_threshold=0.5, weight_rec=[[0.0, 0.0], [1.0, 0.0]],
                  bias_rec=[0.0, 0.2]))],
    )
    x = np.zeros((1, 1, 5))
    x[0, 0, 0] = 1.0
    res = run(g, x, 5, record=["s", "v"])
    s = res.traces["n.s"][0]
    assert s[0].tolist() == [1, 0, 0, 0, 0]
    # neuron 1: 0.2, 0.2 + 0.2 + 1 = 1.4 -> spike, reset 0, 0.2, 0.4, 0.6 -> spike
    assert s[1].tolist() == [0, 1, 0, 0, 1]
    np.testing.assert_allclose(res.traces["n.v"][0, 1], [0.2, 0.0, 0.2, 0.4, 0.0], atol=1e-12)


def test_recurrent_cubalif_feature_map_against_numpy() -> None:
    # a (2, 2, 2) CubaLIF with a dense recurrent matrix over its 8 neurons (C, H, W order) and
    # no recurrent bias, stepped by hand with numpy: i <- 0.5 i + 0.5 w_in (x + W s[t-1]),
    # v <- 0.75 v + 0.25 r i (tau_syn = 2, tau_mem = 4, dt = 1), zero reset.
    rng = np.random.default_rng(3)
    w_rec = rng.normal(size=(8, 8))
    thr = rng.uniform(0.2, 0.6, size=(2, 2, 2))
    node = CubaLIF(tau_syn=2.0, tau_mem=4.0, r=3.0, v_leak=0.0, v_threshold=thr, w_in=1.5,
                   weight_rec=w_rec)
    g = Graph.chain([("x", Input((2, 2, 2))), ("n", node)])
    x = rng.uniform(-0.2, 0.6, size=(3, 2, 2, 2, 10))
    res = run(g, x, 10, record=["s"])
    i = v = np.zeros((3, 8))
    s = np.zeros((3, 8))
    for t in range(10):
        inp = x[..., t].reshape(3, 8) + s @ w_rec.T
        i = 0.5 * i + 0.5 * 1.5 * inp
        v = 0.75 * v + 0.25 * 3.0 * i
        s = (v > thr.reshape(8)).astype(float)
        v = np.where(s > 0, 0.0, v)
        np.testing.assert_array_equal(res.traces["n.s"][..., t].reshape(3, 8), s)
    assert 5 < res.spike_counts["n"].sum() < 3 * 8 * 10
    # the recurrence changes the spikes
    plain = run(Graph.chain([("x", Input((2, 2, 2))), ("n", node.replace(weight_rec=None))]),
                x, 10, record=["s"])
    assert not np.array_equal(plain.traces["n.s"], res.traces["n.s"])


def test_recurrent_fields_are_checked() -> None:
    g = single(IF(r=1.0, v_threshold=1.0, weight_rec=np.ones((3, 3))), n=2)
    with pytest.raises(NeurodeployError, match=r"weight_rec shape \(3, 3\) != \(2, 2\)"):
        run(g, np.zeros((1, 2)), 1)
    lif = LIF(tau=2.0, r=1.0, v_leak=0.0, v_threshold=1.0)
    cases = {
        r"weight_rec must be a square \(N, N\) matrix, got shape \(2, 3\)":
            {"weight_rec": np.ones((2, 3))},
        "weight_rec holds NaN": {"weight_rec": [[np.inf]]},
        r"bias_rec shape \(3,\) != \(2,\) of weight_rec":
            {"weight_rec": np.eye(2), "bias_rec": np.ones(3)},
        r"bias_rec must be 1-D": {"weight_rec": np.eye(2), "bias_rec": np.ones((2, 1))},
        "bias_rec holds NaN": {"weight_rec": np.eye(2), "bias_rec": [0.0, np.nan]},
        "bias_rec is given without weight_rec": {"bias_rec": np.ones(2)},
    }
    for pattern, fields in cases.items():
        problems = lif.replace(**fields).check()
        assert len(problems) == 1 and re.search(pattern, problems[0]), (pattern, problems)
    assert lif.replace(weight_rec=np.eye(2), bias_rec=np.ones(2)).check() == []
    # same_as compares the arrays, None included
    a = lif.replace(weight_rec=np.eye(2))
    assert a.same_as(lif.replace(weight_rec=np.eye(2))) and lif.same_as(lif.replace())
    assert not a.same_as(lif) and not lif.same_as(a)
    assert not a.same_as(lif.replace(weight_rec=2 * np.eye(2)))
    assert a.params()["weight_rec"].shape == (2, 2) and a.params()["bias_rec"] is None


# ------------------------------------------------------------------------------ BNTT, ANN


def test_bntt_uses_row_of_each_step() -> None:
    scale = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    shift = np.array([[0.5, 0.0], [0.0, -1.0], [1.0, 1.0]])
    g = Graph.chain([("x", Input((2,))), ("bn", BNTT(scale, shift))])
    x = np.array([[1.0, -2.0], [0.5, 0.25]])
    out = run(g, x, 3).traces["bn.out"]  # (B, 2, 3)
    want = np.stack([x * scale[t] + shift[t] for t in range(3)], axis=-1)
    np.testing.assert_array_equal(out, want)
    with pytest.raises(NeurodeployError, match="bn .3 steps"):
        run(g, x, 4)


def test_bntt_per_channel_on_feature_maps() -> None:
    scale = np.array([[1.0, 2.0], [-1.0, 0.5]])
    shift = np.array([[0.0, 1.0], [2.0, 0.0]])
    g = Graph.chain([("x", Input((2, 2, 3))), ("bn", BNTT(scale, shift))])
    x = np.arange(12.0).reshape(1, 2, 2, 3)
    out = run(g, x, 2).traces["bn.out"]
    np.testing.assert_array_equal(out[0, 1, :, :, 1], 0.5 * x[0, 1])
    np.testing.assert_array_equal(out[0, 0, :, :, 1], 2.0 - x[0, 0])


def test_ann_affine_relu_equals_numpy() -> None:
    rng = np.random.default_rng(1)
    w1, b1 = rng.normal(size=(6, 4)), rng.normal(size=6)
    w2, b2 = rng.normal(size=(3, 6)), rng.normal(size=3)
    g = Graph.chain([("x", Input((4,))), ("fc1", Affine(w1, b1)), ("relu", ReLU()),
                     ("fc2", Affine(w2, b2))])
    x = rng.normal(size=(5, 4))
    want = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2
    got = forward(g, x)
    assert got.dtype == torch.float64 and got.shape == (5, 3)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
    res = run(g, torch.as_tensor(x), 1)
    assert res.backend == "float" and res.layers == [] and res.spike_counts == {}
    np.testing.assert_allclose(res.traces["fc2.out"][..., 0], want, atol=1e-12)


def test_batchnorm_linear_flatten_concat_add() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 2, 2, 2))
    scale, shift = np.array([2.0, -1.0]), np.array([0.5, 1.0])
    w = rng.normal(size=(3, 8))
    g = Graph(
        {"x": Input((2, 2, 2)), "bn": BatchNorm(scale, shift), "cat": Concat(),
         "flat": Flatten(), "lin": Linear(w), "lin2": Linear(w), "sum": Add()},
        [("x", "bn"), ("bn", "cat"), ("x", "cat"), ("cat", "flat"), ("x", "lin"),
         ("bn", "lin2"), ("lin", "sum"), ("lin2", "sum")],
    )
    res = run(g, x, 1, record={"flat": ["out"]})
    bn = x * scale[:, None, None] + shift[:, None, None]
    want_flat = np.concatenate([bn, x], axis=1).reshape(2, -1)
    np.testing.assert_allclose(res.traces["flat.out"][..., 0], want_flat, atol=1e-12)
    want_sum = x.reshape(2, -1) @ w.T + bn.reshape(2, -1) @ w.T
    np.testing.assert_allclose(res.traces["sum.out"][..., 0], want_sum, atol=1e-12)


def test_conv_and_pools_against_numpy() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 7, 7))
    w = rng.normal(size=(6, 2, 3, 3))  # groups=2: 2 input channels per group
    b = rng.normal(size=6)
    conv = Conv2d(w, b, stride=2, padding=1, groups=2)
    g = Graph(
        {"x": Input((4, 7, 7)), "conv": conv, "sum": SumPool2d(2, 2), "avg": AvgPool2d(3, 1, 1)},
        [("x", "conv"), ("x", "sum"), ("x", "avg")],
    )
    res = run(g, x, 1)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    want = np.concatenate([
        np.einsum("bchwkl,ockl->bohw", win[:, 2 * grp:2 * grp + 2], w[3 * grp:3 * grp + 3])
        for grp in range(2)], axis=1) + b[:, None, None]
    np.testing.assert_allclose(res.traces["conv.out"][..., 0], want, atol=1e-12)
    want_sum = x[:, :, :6, :6].reshape(2, 4, 3, 2, 3, 2).sum(axis=(3, 5))
    np.testing.assert_allclose(res.traces["sum.out"][..., 0], want_sum, atol=1e-12)
    win3 = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))
    np.testing.assert_allclose(res.traces["avg.out"][..., 0], win3.sum(axis=(4, 5)) / 9,
                               atol=1e-12)


# ------------------------------------------------------------------------------ conventions


def test_batch_is_vectorized_and_recording_options() -> None:
    lif = discrete_lif(0.5, 1.0, reset="subtract")
    cuba = CubaLIF(tau_syn=2.0, tau_mem=2.0, r=2.0, v_leak=0.0, v_threshold=1.0)
    g = Graph.chain([("x", Input((1,))), ("a", lif), ("fc", Linear([[1.0]])), ("b", cuba)])
    x = np.array([[0.6], [0.0], [1.5]])
    res = run(g, x, 6, record=["v", "s", "i"])  # "i" only where the neuron has it
    assert set(res.traces) == {"a.v", "a.s", "b.v", "b.s", "b.i", "b.out"}
    assert res.traces["a.s"].dtype == np.int8 and res.traces["a.v"].shape == (3, 1, 6)
    one = run(g, x[:1], 6, record=["s"])
    np.testing.assert_array_equal(one.traces["a.s"][0], res.traces["a.s"][0])
    assert res.spike_counts["a"].tolist() == [2, 0, int(res.traces["a.s"][2].sum())]
    with pytest.raises(NeurodeployError, match="cannot record i of a"):
        run(g, x, 2, record={"a": ["i"]})
    with pytest.raises(NeurodeployError, match="fc .Linear. has no neuron state"):
        run(g, x, 2, record={"fc": ["v"]})
    assert run(g, x, 2, record={"fc": ["out"]}).traces["fc.out"].shape == (3, 1, 2)


def test_input_checks() -> None:
    g = single(IF(r=1.0, v_threshold=1.0), n=3)
    with pytest.raises(NeurodeployError, match=r"shape \(2, 4\); expected \(batch, 3\)"):
        run(g, np.zeros((2, 4)), 1)
    with pytest.raises(NeurodeployError, match="hold 2 time steps but 3 were requested"):
        run(g, np.zeros((1, 3, 2)), 3)
    with pytest.raises(NeurodeployError, match="NaN or infinite"):
        run(g, np.full((1, 3), np.nan), 1)
    with pytest.raises(NeurodeployError, match="steps must be a positive integer"):
        run(g, np.zeros((1, 3)), 0)


def test_unsupported_nodes_are_all_listed() -> None:
    g = Graph.chain([("x", Input((2,))), ("syn", QDense(np.ones((2, 2), dtype=int))),
                     ("neu", QCubaLIF())])
    with pytest.raises(UnsupportedError) as err:
        FloatSim(g)
    msg = str(err.value)
    assert "syn (QDense)" in msg and "neu (QCubaLIF)" in msg and "CubaLIF" in msg
    assert "\n" not in msg


def test_bad_neuron_parameters() -> None:
    with pytest.raises(NeurodeployError, match="n .LIF.: tau must be positive"):
        run(single(LIF(tau=0.0, r=1.0, v_leak=0.0, v_threshold=1.0)), np.zeros((1, 1)), 1)
    with pytest.raises(NeurodeployError, match="n .IF.: v_threshold is missing"):
        run(single(IF(r=1.0)), np.zeros((1, 1)), 1)
    # one message per problem, from the node itself
    cuba = CubaLIF(tau_syn=np.array([1.0, -2.0]), tau_mem=0.0, r=None, v_leak=0.0,
                   v_threshold=None)
    assert cuba.check() == [
        "tau_syn must be positive (a time constant in the units of dt)",
        "tau_mem must be positive (a time constant in the units of dt)",
        "r is missing (required for CubaLIF)",
        "v_threshold is missing (required for CubaLIF)",
    ]
    assert LIF(tau=None, r=1.0, v_leak=0.0, v_threshold=1.0).check() == [
        "tau is missing (required for LIF)"]
    assert I().check() == ["r is missing (required for I)"]
    # optional parameters may be None; NaN is reported instead of a sign
    assert CubaLIF(tau_syn=1.0, tau_mem=1.0, r=1.0, v_leak=0.0, v_threshold=1.0).check() == []
    assert LIF(tau=np.nan, r=1.0, v_leak=0.0, v_threshold=1.0).check() == [
        "tau holds NaN or infinite values"]


def test_float32_runs_on_requested_dtype() -> None:
    g = single(discrete_lif(0.5, 1.0, reset="subtract"))
    res = run(g, np.array([[0.6]]), 12, record=["s"], dtype=torch.float32)
    assert res.traces["n.out"].dtype == np.float32
    assert np.nonzero(res.traces["n.s"][0, 0])[0].tolist() == [2, 5, 8, 11]
