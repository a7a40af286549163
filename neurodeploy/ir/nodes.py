"""Typed, immutable IR nodes: the vocabulary every frontend, pass and backend speaks.

Two stages share one graph type:

* **float** nodes follow NIR's names and parameters (``Affine``, ``Linear``, ``Conv2d``,
  ``SumPool2d``, ``AvgPool2d``, ``LIF``, ``CubaLIF``, ``IF``) so NIR import/export is a
  field-by-field copy;
* **fixed** nodes (``QDense``, ``QConv2d``, ``QSumPool2d``, ``QCubaLIF``) carry the integer
  mantissas, exponents and bit widths that Loihi runs, with the semantics of Lava's bit-accurate
  ``fixed_pt`` process models (see :class:`QCubaLIF` and ``docs/concepts.md``);
  :class:`QCubaBNTT` (a ``QCubaLIF`` with a per-step gain/bias schedule) is a neurodeploy
  neuron kind for programmable neurons.

Structural nodes (``Input``, ``Flatten``, ``Add``, ``Concat``) belong to both stages.

All shapes are of one sample, without the batch axis, in PyTorch order: ``(C, H, W)`` for
feature maps and ``(N,)`` for vectors. Arrays are copied and made read-only when a node is built.
Each node reports its own parameter problems with :meth:`Node.check` (a list, never an
exception), so graph validation can report every problem at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

Shape = tuple[int, ...]

#: Every concrete node class by name (filled by ``Node.__init_subclass__``); serialization and the
#: round-trip tests enumerate it, so nothing is listed twice.
NODE_TYPES: dict[str, type[Node]] = {}

#: Largest number of elements a single tensor (weights or one sample's activations) may have.
#: Absurd shapes from a corrupt file are refused before anything is allocated.
MAX_ELEMENTS = 1 << 28

# Loihi fixed-point widths (reference/loihi.md §3.1).
DECAY_UNITY = 4096  # 12-bit decays: a decay of d multiplies the state by (4096 - d) / 4096
# 17-bit unsigned threshold mantissa. Lava does not enforce the width and netx's default for
# dense layers without a neuron group is ``1 << 18 - 1`` == 2**17, so 2**17 is accepted too.
VTH_MANT_MAX = 1 << 17
BIAS_MANT_BITS = 13  # bias mantissa is 13-bit signed on Loihi
#: Gain mantissas of :class:`QCubaBNTT` are signed 16-bit.
GAIN_MANT_RANGE = (-(1 << 15), (1 << 15) - 1)
#: Largest gain exponent of :class:`QCubaBNTT` (right shift of the gain product).
GAIN_EXP_MAX = 24
SIGN_MODES = ("mixed", "excitatory", "inhibitory")
RESET_MODES = ("zero", "subtract")
#: Discrete update orders of the seeds' LIF (reference/algorithms.md §2): A integrates then
#: fires from the new potential; B fires from the previous potential, then integrates.
UPDATE_ORDERS = ("integrate_fire", "fire_integrate")


def _array(value: Any, dtype: Any) -> np.ndarray:
    """A read-only array of ``dtype`` holding ``value``: a copy, except that a read-only
    array of that dtype which owns its data (what this function returns: a node derived
    from another shares its arrays) is taken as it is. No view can write to such an array,
    and copying large weights (hundreds of MB) costs time."""
    if isinstance(value, np.ndarray) and type(value) is np.ndarray \
            and value.dtype == np.dtype(dtype) and value.base is None \
            and not value.flags.writeable:
        return value
    arr = np.array(value, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    vals = tuple(int(v) for v in value)
    if len(vals) == 1:
        return (vals[0], vals[0])
    return vals  # type: ignore[return-value]


def _conv_out(size: int, kernel: int, stride: int, pad: int, dil: int) -> int:
    return (size + 2 * pad - dil * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True, eq=False)
class Node:
    """Base of all IR nodes.

    Subclasses declare their fields as a frozen dataclass, convert arrays in ``__post_init__``
    and implement :meth:`output_shape` and :meth:`check`.
    """

    #: ``"float"``, ``"fixed"`` or ``"any"``: which IR stage the node belongs to.
    stage: ClassVar[str] = "any"
    #: Minimum and maximum number of incoming edges.
    arity: ClassVar[tuple[int, int]] = (1, 1)
    #: True for nodes with neuron state (u, v, spikes) that can be recorded.
    is_neuron: ClassVar[bool] = False
    #: True for synapse nodes; in the fixed stage each adds Lava's one-step delay.
    is_synapse: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        NODE_TYPES[cls.__name__] = cls

    @property
    def type_name(self) -> str:
        return type(self).__name__

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        """Shape of one output sample given the input shapes (already checked for arity)."""
        raise NotImplementedError

    def check(self) -> list[str]:
        """Parameter problems of this node alone (empty when fine)."""
        return []

    def check_inputs(self, in_shapes: list[Shape]) -> list[str]:
        """Problems with the given input shapes; empty when ``output_shape`` can be called."""
        return []

    def params(self) -> dict[str, Any]:
        """Field values by name (arrays included), e.g. for serialization."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Node:
        """A copy with some fields changed (nodes are immutable)."""
        return dataclasses.replace(self, **changes)

    def same_as(self, other: Node) -> bool:
        """Structural equality, comparing arrays by value and dtype kind."""
        if type(self) is not type(other):
            return False
        for name, a in self.params().items():
            b = getattr(other, name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None:
                    return False
                a, b = np.asarray(a), np.asarray(b)
                if a.shape != b.shape or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True


# --------------------------------------------------------------------------------------------
# Structural nodes (both stages)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Input(Node):
    """Graph input of one sample of ``shape`` (``(C, H, W)`` or ``(N,)``).

    In the fixed stage an ``Input`` feeds its successor neuron either as bias current
    (``input_mode="bias"``: the value is the neuron's bias mantissa, as lava-dl feeds images)
    or as spikes/graded events on its synaptic input (``input_mode="spikes"``).
    ``num_message_bits`` is 0 for binary spikes and the payload width for graded input. As in
    Lava, a synapse fed binary events counts any non-zero value as one spike, while a neuron fed
    directly by the input adds the value to its synaptic input as it is.
    """

    shape: Shape = ()
    num_message_bits: int = 0
    arity: ClassVar[tuple[int, int]] = (0, 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        return self.shape

    def check(self) -> list[str]:
        if not self.shape or any(s <= 0 for s in self.shape):
            return [f"input shape {self.shape} must be non-empty and positive"]
        if len(self.shape) not in (1, 3):
            return [f"input shape {self.shape} must be (N,) or (C, H, W)"]
        if int(np.prod(self.shape)) > MAX_ELEMENTS:
            return [f"input shape {self.shape} has more than {MAX_ELEMENTS} elements"]
        return []


@dataclass(frozen=True, eq=False)
class Flatten(Node):
    """Flattens ``(C, H, W)`` to ``(C*H*W,)`` in PyTorch (row-major C, H, W) order."""

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        return (int(np.prod(in_shapes[0])),)


@dataclass(frozen=True, eq=False)
class Add(Node):
    """Element-wise sum of two or more inputs of equal shape (residual connections).

    In the fixed stage the operands are synaptic currents that arrive at the same neurons.
    """

    arity: ClassVar[tuple[int, int]] = (2, 64)

    def check_inputs(self, in_shapes: list[Shape]) -> list[str]:
        if len(set(in_shapes)) != 1:
            return [f"inputs must have equal shapes, got {in_shapes}"]
        return []

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        return in_shapes[0]


@dataclass(frozen=True, eq=False)
class Concat(Node):
    """Concatenation along the channel axis (axis 0 of a sample), in edge order."""

    axis: int = 0
    arity: ClassVar[tuple[int, int]] = (1, 64)

    def check_inputs(self, in_shapes: list[Shape]) -> list[str]:
        ranks = {len(s) for s in in_shapes}
        if len(ranks) != 1:
            return [f"inputs must have the same rank, got {in_shapes}"]
        rank = ranks.pop()
        if not 0 <= self.axis < rank:
            return [f"axis {self.axis} out of range for rank {rank}"]
        rest = {s[: self.axis] + s[self.axis + 1 :] for s in in_shapes}
        if len(rest) != 1:
            return [f"inputs differ outside axis {self.axis}: {in_shapes}"]
        return []

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        first = list(in_shapes[0])
        first[self.axis] = sum(s[self.axis] for s in in_shapes)
        return tuple(first)


# --------------------------------------------------------------------------------------------
# Shared shape logic
# --------------------------------------------------------------------------------------------


class _DenseShape:
    weight: np.ndarray

    def check_inputs(self, in_shapes: list[Shape]) -> list[str]:
        n_in = int(np.prod(in_shapes[0]))
        if self.weight.ndim == 2 and self.weight.shape[1] != n_in:
            return [f"weight has {self.weight.shape[1]} inputs but receives {in_shapes[0]}"]
        return []

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        return (int(self.weight.shape[0]),)


class _ConvShape:
    weight: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    def _check_geometry(self) -> list[str]:
        problems = []
        if self.weight.ndim != 4:
            return [f"conv weight must be 4-D (out, in/groups, kh, kw), got {self.weight.shape}"]
        if self.groups < 1 or self.weight.shape[0] % self.groups:
            problems.append(f"groups={self.groups} must divide out channels {self.weight.shape[0]}")
        for name in ("stride", "dilation"):
            if len(getattr(self, name)) != 2 or min(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} must be two positive integers")
        if len(self.padding) != 2 or min(self.padding) < 0:
            problems.append(f"padding={self.padding} must be two non-negative integers")
        return problems

    def check_inputs(self, in_shapes: list[Shape]) -> list[str]:
        shape = in_shapes[0]
        if len(shape) != 3:
            return [f"conv needs a (C, H, W) input, got {shape}"]
        if self.weight.ndim == 4 and shape[0] != self.weight.shape[1] * self.groups:
            return [
                f"input has {shape[0]} channels but weight expects "
                f"{self.weight.shape[1]}x{self.groups} groups"
            ]
        out = self.output_shape(in_shapes)
        if min(out) <= 0:
            return [f"kernel larger than padded input {shape}: output would be {out}"]
        return []

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        _, h, w = in_shapes[0]
        kh, kw = self.weight.shape[2:]
        return (
            int(self.weight.shape[0]),
            _conv_out(h, kh, self.stride[0], self.padding[0], self.dilation[0]),
            _conv_out(w, kw, self.stride[1], self.padding[1], self.dilation[1]),
        )


class _PoolShape:
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]

    def check(self) -> list[str]:
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            return [
                f"kernel_size={self.kernel_size}, stride={self.stride} must be positive "
                f"and padding={self.padding} non-negative"
            ]
        return []

    def check_inputs(self, in_shapes: list[Shape]) -> list[str]:
        if len(in_shapes[0]) != 3:
            return [f"pooling needs a (C, H, W) input, got {in_shapes[0]}"]
        if min(self.output_shape(in_shapes)) <= 0:
            return [f"pooling window larger than input {in_shapes[0]}"]
        return []

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        c, h, w = in_shapes[0]
        return (
            c,
            _conv_out(h, self.kernel_size[0], self.stride[0], self.padding[0], 1),
            _conv_out(w, self.kernel_size[1], self.stride[1], self.padding[1], 1),
        )


def _check_weight(weight: np.ndarray, ndim: int) -> list[str]:
    problems = []
    if weight.ndim != ndim:
        problems.append(f"weight must be {ndim}-D, got shape {weight.shape}")
    if weight.size > MAX_ELEMENTS:
        problems.append(f"weight has {weight.size} elements (limit {MAX_ELEMENTS})")
    if weight.dtype.kind == "f" and not np.all(np.isfinite(weight)):
        problems.append("weight holds NaN or infinite values")
    return problems


# --------------------------------------------------------------------------------------------
# Float stage (NIR names and parameters)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Affine(_DenseShape, Node):
    """``y = W x + b`` with ``weight`` of shape ``(out, in)``."""

    weight: np.ndarray = None  # type: ignore[assignment]
    bias: np.ndarray = None  # type: ignore[assignment]
    stage: ClassVar[str] = "float"
    is_synapse: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _array(self.weight, np.float64))
        object.__setattr__(self, "bias", _array(self.bias, np.float64))

    def check(self) -> list[str]:
        problems = _check_weight(self.weight, 2)
        if self.weight.ndim == 2 and self.bias.shape != (self.weight.shape[0],):
            problems.append(f"bias shape {self.bias.shape} != ({self.weight.shape[0]},)")
        return problems


@dataclass(frozen=True, eq=False)
class Linear(_DenseShape, Node):
    """``y = W x`` with ``weight`` of shape ``(out, in)``."""

    weight: np.ndarray = None  # type: ignore[assignment]
    stage: ClassVar[str] = "float"
    is_synapse: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _array(self.weight, np.float64))

    def check(self) -> list[str]:
        return _check_weight(self.weight, 2)


@dataclass(frozen=True, eq=False)
class Conv2d(_ConvShape, Node):
    """2-D convolution (cross-correlation, as PyTorch), ``weight`` ``(out, in/groups, kh, kw)``."""

    weight: np.ndarray = None  # type: ignore[assignment]
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    stage: ClassVar[str] = "float"
    is_synapse: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _array(self.weight, np.float64))
        if self.bias is not None:
            object.__setattr__(self, "bias", _array(self.bias, np.float64))
        for name in ("stride", "padding", "dilation"):
            object.__setattr__(self, name, _pair(getattr(self, name)))
        object.__setattr__(self, "groups", int(self.groups))

    def check(self) -> list[str]:
        problems = _check_weight(self.weight, 4) or self._check_geometry()
        if self.bias is not None and self.weight.ndim == 4:
            if self.bias.shape != (self.weight.shape[0],):
                problems.append(f"bias shape {self.bias.shape} != ({self.weight.shape[0]},)")
        return problems


@dataclass(frozen=True, eq=False)
class SumPool2d(_PoolShape, Node):
    """Sum over each pooling window."""

    kernel_size: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    stage: ClassVar[str] = "float"

    def __post_init__(self) -> None:
        for name in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, name, _pair(getattr(self, name)))


@dataclass(frozen=True, eq=False)
class AvgPool2d(_PoolShape, Node):
    """Mean over each pooling window."""

    kernel_size: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    stage: ClassVar[str] = "float"

    def __post_init__(self) -> None:
        for name in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, name, _pair(getattr(self, name)))


class _FloatNeuron:
    """Shared handling of NIR-style per-neuron parameter arrays (shape = neuron shape).

    ``_param_names`` are the parameter arrays (0-d or of the neuron shape), ``_required`` those
    that may not be ``None``, ``_time_constants`` those that must be positive. Spiking neurons
    (``_recurrent``) also take ``weight_rec``/``bias_rec``, checked against the neuron count.
    """

    _param_names: ClassVar[tuple[str, ...]] = ()
    _required: ClassVar[tuple[str, ...]] = ()
    _time_constants: ClassVar[tuple[str, ...]] = ()
    _recurrent: ClassVar[bool] = False

    def _convert(self) -> None:
        names = self._param_names + (("weight_rec", "bias_rec") if self._recurrent else ())
        for name in names:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _array(value, np.float64))

    def check(self) -> list[str]:
        problems = []
        for name in self._param_names:
            value = getattr(self, name)
            if value is None:
                if name in self._required:
                    problems.append(f"{name} is missing (required for {type(self).__name__})")
            elif not np.all(np.isfinite(value)):
                problems.append(f"{name} holds NaN or infinite values")
            elif name in self._time_constants and np.any(value <= 0):
                problems.append(f"{name} must be positive (a time constant in the units of dt)")
        if self._recurrent:
            problems.extend(self._check_recurrent())
        reset = getattr(self, "reset", None)
        if reset is not None and reset not in RESET_MODES:
            problems.append(f"reset {reset!r} must be one of {RESET_MODES}")
        order = getattr(self, "order", None)
        if order is not None and order not in UPDATE_ORDERS:
            problems.append(f"order {order!r} must be one of {UPDATE_ORDERS}")
        return problems

    def _check_recurrent(self) -> list[str]:
        problems = []
        w = getattr(self, "weight_rec")
        b = getattr(self, "bias_rec")
        if w is not None:
            if w.ndim != 2 or w.shape[0] != w.shape[1]:
                problems.append(f"weight_rec must be a square (N, N) matrix, got shape {w.shape}")
            elif w.size > MAX_ELEMENTS:
                problems.append(f"weight_rec has {w.size} elements (limit {MAX_ELEMENTS})")
            elif not np.all(np.isfinite(w)):
                problems.append("weight_rec holds NaN or infinite values")
        if b is not None:
            if w is None:
                problems.append("bias_rec is given without weight_rec; add a zero weight_rec "
                                "or move the bias into the input synapse")
            elif b.ndim != 1:
                problems.append(f"bias_rec must be 1-D (N,), got shape {b.shape}")
            elif w.ndim == 2 and b.shape[0] != w.shape[0]:
                problems.append(f"bias_rec shape {b.shape} != ({w.shape[0]},) of weight_rec")
            elif not np.all(np.isfinite(b)):
                problems.append("bias_rec holds NaN or infinite values")
        return problems

    def check_inputs(self, in_shapes: list[Shape]) -> list[str]:
        for name in self._param_names:
            value = getattr(self, name)
            if value is not None and value.ndim and value.shape != tuple(in_shapes[0]):
                return [f"{name} shape {value.shape} != input shape {in_shapes[0]}"]
        w = getattr(self, "weight_rec", None)
        if w is not None and w.ndim == 2:
            n = int(np.prod(in_shapes[0]))
            if w.shape != (n, n):
                return [f"weight_rec shape {w.shape} != ({n}, {n}) for the {n} neurons of "
                        f"shape {tuple(in_shapes[0])}"]
        return []

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        return in_shapes[0]


@dataclass(frozen=True, eq=False)
class LIF(_FloatNeuron, Node):
    """Leaky integrate-and-fire (NIR): ``tau dv/dt = (v_leak - v) + r I``; spike and reset at
    ``v > v_threshold``. ``reset`` is ``"zero"`` (to ``v_reset``) or ``"subtract"``.

    Simulated with forward Euler at the graph's ``metadata["dt"]``:
    ``v ← v + dt/tau·(v_leak − v + r·I)``. The seeds' discrete LIF ``v ← λ·v + I`` is
    ``tau = dt/(1−λ)``, ``r = 1/(1−λ)``, ``v_leak = 0``. ``order`` is ``"integrate_fire"``
    (update, then spike if ``v > v_threshold`` and reset) or ``"fire_integrate"`` (spike from
    the previous ``v``, then update and subtract/reset; adds one step of latency per layer).
    ``tau > 0`` is in the units of ``dt``; ``v_reset=None`` means 0.

    **Recurrence.** ``weight_rec`` (optional, ``(N, N)``, ``N`` = number of neurons = product of
    the neuron shape, flattened in C, H, W order) and ``bias_rec`` (optional, ``(N,)``, only
    with ``weight_rec``) feed the neurons' own spikes back with a one-step delay, as snnTorch's
    ``RLeaky``/``RSynaptic`` and NIR's ``neuron → Affine/Linear → same neuron`` cycles: the
    input at step ``t`` is ``I[t] + weight_rec @ s[t-1] + bias_rec`` with ``s[t-1]`` the
    spikes the node output at step ``t-1`` (``s[-1] = 0``; ``bias_rec`` is added at every
    step), before ``r`` scales it.
    """

    tau: np.ndarray = None  # type: ignore[assignment]
    r: np.ndarray = None  # type: ignore[assignment]
    v_leak: np.ndarray = None  # type: ignore[assignment]
    v_threshold: np.ndarray = None  # type: ignore[assignment]
    v_reset: np.ndarray | None = None
    reset: str = "zero"
    order: str = "integrate_fire"
    weight_rec: np.ndarray | None = None
    bias_rec: np.ndarray | None = None
    stage: ClassVar[str] = "float"
    is_neuron: ClassVar[bool] = True
    _param_names: ClassVar[tuple[str, ...]] = ("tau", "r", "v_leak", "v_threshold", "v_reset")
    _required: ClassVar[tuple[str, ...]] = ("tau", "r", "v_leak", "v_threshold")
    _time_constants: ClassVar[tuple[str, ...]] = ("tau",)
    _recurrent: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._convert()


@dataclass(frozen=True, eq=False)
class CubaLIF(_FloatNeuron, Node):
    """Current-based LIF (NIR): ``tau_syn dI/dt = -I + w_in x``;
    ``tau_mem dv/dt = (v_leak - v) + r I``; spike at ``v > v_threshold``. ``tau_syn`` and
    ``tau_mem`` are positive, in the units of ``dt``; ``w_in=None`` means 1, ``v_reset=None`` 0.

    **Recurrence.** ``weight_rec`` (optional, ``(N, N)``, ``N`` = number of neurons = product of
    the neuron shape, flattened in C, H, W order) and ``bias_rec`` (optional, ``(N,)``, only
    with ``weight_rec``) feed the neurons' own spikes back with a one-step delay, as snnTorch's
    ``RLeaky``/``RSynaptic`` and NIR's ``neuron → Affine/Linear → same neuron`` cycles: the
    input at step ``t`` is ``x[t] + weight_rec @ s[t-1] + bias_rec`` with ``s[t-1]`` the
    spikes the node output at step ``t-1`` (``s[-1] = 0``; ``bias_rec`` is added at every
    step), before ``w_in`` scales it.
    """

    tau_syn: np.ndarray = None  # type: ignore[assignment]
    tau_mem: np.ndarray = None  # type: ignore[assignment]
    r: np.ndarray = None  # type: ignore[assignment]
    v_leak: np.ndarray = None  # type: ignore[assignment]
    v_threshold: np.ndarray = None  # type: ignore[assignment]
    w_in: np.ndarray | None = None
    v_reset: np.ndarray | None = None
    reset: str = "zero"
    weight_rec: np.ndarray | None = None
    bias_rec: np.ndarray | None = None
    stage: ClassVar[str] = "float"
    is_neuron: ClassVar[bool] = True
    _param_names: ClassVar[tuple[str, ...]] = (
        "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in", "v_reset",
    )
    _required: ClassVar[tuple[str, ...]] = ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold")
    _time_constants: ClassVar[tuple[str, ...]] = ("tau_syn", "tau_mem")
    _recurrent: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._convert()


@dataclass(frozen=True, eq=False)
class IF(_FloatNeuron, Node):
    """Integrate-and-fire (NIR): ``dv/dt = r I``; spike at ``v > v_threshold``.

    Euler at ``metadata["dt"]``: ``v ← v + dt·r·I``; ``order`` as in :class:`LIF`.

    **Recurrence.** ``weight_rec`` (optional, ``(N, N)``, ``N`` = number of neurons = product of
    the neuron shape, flattened in C, H, W order) and ``bias_rec`` (optional, ``(N,)``, only
    with ``weight_rec``) feed the neurons' own spikes back with a one-step delay, as snnTorch's
    ``RLeaky``/``RSynaptic`` and NIR's ``neuron → Affine/Linear → same neuron`` cycles: the
    input at step ``t`` is ``I[t] + weight_rec @ s[t-1] + bias_rec`` with ``s[t-1]`` the
    spikes the node output at step ``t-1`` (``s[-1] = 0``; ``bias_rec`` is added at every
    step), before ``r`` scales it.
    """

    r: np.ndarray = None  # type: ignore[assignment]
    v_threshold: np.ndarray = None  # type: ignore[assignment]
    v_reset: np.ndarray | None = None
    reset: str = "zero"
    order: str = "integrate_fire"
    weight_rec: np.ndarray | None = None
    bias_rec: np.ndarray | None = None
    stage: ClassVar[str] = "float"
    is_neuron: ClassVar[bool] = True
    _param_names: ClassVar[tuple[str, ...]] = ("r", "v_threshold", "v_reset")
    _required: ClassVar[tuple[str, ...]] = ("r", "v_threshold")
    _recurrent: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._convert()


@dataclass(frozen=True, eq=False)
class I(_FloatNeuron, Node):  # noqa: E742 - NIR's name for the integrator
    """Integrator (NIR ``I``): ``dv/dt = r I``, no leak, no threshold, no spikes.

    The seeds' output accumulator (``U_out[t] = U_out[t-1] + W·s[t]``) is ``r = 1/dt``; its
    output is the membrane potential ``v`` (the logits are ``v / T`` after ``T`` steps)."""

    r: np.ndarray = None  # type: ignore[assignment]
    stage: ClassVar[str] = "float"
    is_neuron: ClassVar[bool] = True
    _param_names: ClassVar[tuple[str, ...]] = ("r",)
    _required: ClassVar[tuple[str, ...]] = ("r",)

    def __post_init__(self) -> None:
        self._convert()


@dataclass(frozen=True, eq=False)
class ReLU(Node):
    """Rectified linear unit of an ANN (``max(x, 0)``); ANN→SNN conversion replaces it."""

    stage: ClassVar[str] = "float"

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        return in_shapes[0]


class _ChannelAffine:
    """Per-channel ``y = scale·x + shift`` over axis 0 of a sample (channels or features)."""

    scale: np.ndarray
    shift: np.ndarray
    _time_axis: ClassVar[bool] = False

    def __post_init__(self) -> None:
        for name in ("scale", "shift"):
            object.__setattr__(self, name, _array(getattr(self, name), np.float64))

    def check(self) -> list[str]:
        want = 2 if self._time_axis else 1
        problems = []
        for name in ("scale", "shift"):
            value = getattr(self, name)
            if value.ndim != want:
                problems.append(f"{name} must have {want} dimension(s), got shape {value.shape}")
            elif not np.all(np.isfinite(value)):
                problems.append(f"{name} holds NaN or infinite values")
        if not problems and self.scale.shape != self.shift.shape:
            problems.append(f"scale shape {self.scale.shape} != shift shape {self.shift.shape}")
        return problems

    def check_inputs(self, in_shapes: list[Shape]) -> list[str]:
        channels = self.scale.shape[-1] if self.scale.ndim else None
        if channels != in_shapes[0][0]:
            return [f"{channels} channels in scale/shift, input has {in_shapes[0][0]}"]
        return []

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        return in_shapes[0]


@dataclass(frozen=True, eq=False)
class BatchNorm(_ChannelAffine, Node):
    """Inference-mode batch norm folded to ``scale = γ/sqrt(σ²+ε)``, ``shift = β − scale·μ``,
    shape ``(C,)``; the fold-BN pass moves it into the preceding synapse."""

    scale: np.ndarray = None  # type: ignore[assignment]
    shift: np.ndarray = None  # type: ignore[assignment]
    stage: ClassVar[str] = "float"


@dataclass(frozen=True, eq=False)
class BNTT(_ChannelAffine, Node):
    """Batch Normalization Through Time at inference (reference/algorithms.md §4): at step
    ``t`` (0-based) ``y = scale[t]·x + shift[t]`` per channel, shapes ``(T, C)``, with
    ``scale[t] = γ_t/sqrt(σ²_t+ε)`` and ``shift[t] = −scale[t]·μ_t`` (no β). A run may not be
    longer than ``T`` steps."""

    scale: np.ndarray = None  # type: ignore[assignment]
    shift: np.ndarray = None  # type: ignore[assignment]
    stage: ClassVar[str] = "float"
    _time_axis: ClassVar[bool] = True

    @property
    def timesteps(self) -> int:
        return int(self.scale.shape[0])


# --------------------------------------------------------------------------------------------
# Fixed-point stage (Loihi / Lava bit-accurate semantics)
# --------------------------------------------------------------------------------------------


def lava_weights(weight: np.ndarray, num_weight_bits: int, sign_mode: str) -> np.ndarray:
    """The weights Lava's bit-accurate Dense actually uses: clipped by sign mode to 8 bits, then
    with the low ``8 - num_weight_bits + is_mixed`` bits zeroed (``lava.utils.weightutils``)."""
    w = np.asarray(weight).astype(np.int64)
    if sign_mode == "mixed":
        w = np.clip(w, -256, 255)
    elif sign_mode == "excitatory":
        w = np.clip(w, 0, 255)
    else:
        w = -np.clip(-w, 0, 255)
    mixed = 1 if sign_mode == "mixed" else 0
    drop = 8 - num_weight_bits + mixed
    if drop > 0:
        # truncate_weights works on magnitudes for inhibitory (negated excitatory) weights and
        # on the two's complement for mixed weights: a right-then-left shift of w (floor).
        if sign_mode == "inhibitory":
            w = -((-w) >> drop << drop)
        else:
            w = (w >> drop) << drop
    return w


class _QWeights:
    """Integer weight mantissas with Lava's exponent, bit width and sign mode.

    The synaptic input of a step is ``shift(sum_j W[i, j] * s_j, weight_exp)`` where ``shift``
    is a left shift for positive and an arithmetic (floor) right shift for negative exponents,
    applied to the *sum* as Lava's ``PyDenseModelBitAcc`` does. For :class:`QDense`, weights are
    first clipped by sign mode (mixed [-256, 255], excitatory [0, 255], inhibitory [-255, 0]) and
    their low ``8 - num_weight_bits + (sign_mode == "mixed")`` bits are zeroed, as Lava does.
    :class:`QConv2d` uses its mantissas as they are and wraps its output to 24 bits (Lava's
    ``PyConvModelFixed``); its ``num_weight_bits``/``sign_mode`` describe the storage only.
    """

    weight: np.ndarray
    weight_exp: int
    num_weight_bits: int
    sign_mode: str

    def _check_qweights(self, ndim: int) -> list[str]:
        problems = _check_weight(self.weight, ndim)
        if not -8 <= self.weight_exp <= 8:
            problems.append(f"weight_exp={self.weight_exp} outside [-8, 8]")
        if not 1 <= self.num_weight_bits <= 8:
            problems.append(f"num_weight_bits={self.num_weight_bits} outside [1, 8]")
        if self.sign_mode not in SIGN_MODES:
            problems.append(f"sign_mode={self.sign_mode!r} not one of {SIGN_MODES}")
        if self.weight.size and (self.weight.min() < -256 or self.weight.max() > 255):
            problems.append(
                f"weight mantissas span [{self.weight.min()}, {self.weight.max()}], "
                "outside the 8-bit range [-256, 255]"
            )
        return problems


@dataclass(frozen=True, eq=False)
class QDense(_QWeights, _DenseShape, Node):
    """Fixed-point dense synapses, ``weight`` ``(out, in)`` integer mantissas.

    Binary input spikes select weight columns; graded input (``num_message_bits > 0`` at the
    source neuron) multiplies them. ``delay`` (optional, ``(out, in)`` integer steps) holds
    netx's synaptic delays. ``weight_rec`` (optional, ``(out, out)``) is netx ``dense_rec``'s
    recurrent matrix from the layer's own neurons (same exponent and bits as ``weight``); like
    every Lava synapse it delivers a step later.
    """

    weight: np.ndarray = None  # type: ignore[assignment]
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: str = "mixed"
    delay: np.ndarray | None = None
    weight_rec: np.ndarray | None = None
    stage: ClassVar[str] = "fixed"
    is_synapse: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _array(self.weight, np.int32))
        if self.weight_rec is not None:
            object.__setattr__(self, "weight_rec", _array(self.weight_rec, np.int32))
        if self.delay is not None:
            object.__setattr__(self, "delay", _array(self.delay, np.int32))
        object.__setattr__(self, "weight_exp", int(self.weight_exp))
        object.__setattr__(self, "num_weight_bits", int(self.num_weight_bits))

    def check(self) -> list[str]:
        problems = self._check_qweights(2)
        if self.delay is not None:
            if self.delay.shape != self.weight.shape:
                problems.append(f"delay shape {self.delay.shape} != weight {self.weight.shape}")
            elif self.delay.size and (self.delay.min() < 0 or self.delay.max() > 62):
                problems.append("delays must lie in [0, 62] steps")
        if self.weight_rec is not None and self.weight.ndim == 2:
            n = self.weight.shape[0]
            if self.weight_rec.shape != (n, n):
                problems.append(f"weight_rec shape {self.weight_rec.shape} != ({n}, {n})")
        return problems


@dataclass(frozen=True, eq=False)
class QConv2d(_QWeights, _ConvShape, Node):
    """Fixed-point 2-D convolution, ``weight`` ``(out, in/groups, kh, kw)`` integer mantissas.

    Same arithmetic as :class:`QDense` (exponent applied to the summed input)."""

    weight: np.ndarray = None  # type: ignore[assignment]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: str = "mixed"
    stage: ClassVar[str] = "fixed"
    is_synapse: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _array(self.weight, np.int32))
        for name in ("stride", "padding", "dilation"):
            object.__setattr__(self, name, _pair(getattr(self, name)))
        object.__setattr__(self, "groups", int(self.groups))
        object.__setattr__(self, "weight_exp", int(self.weight_exp))
        object.__setattr__(self, "num_weight_bits", int(self.num_weight_bits))

    def check(self) -> list[str]:
        return self._check_qweights(4) or self._check_geometry()


@dataclass(frozen=True, eq=False)
class QSumPool2d(_PoolShape, Node):
    """Fixed-point sum pooling with one shared integer ``weight`` per window element
    (netx ``pool``): ``shift(weight * sum(window), weight_exp)``. Not runnable by lava-dl netx;
    legalization rewrites it to a :class:`QConv2d`."""

    kernel_size: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    weight: int = 1
    weight_exp: int = 0
    stage: ClassVar[str] = "fixed"
    is_synapse: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for name in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, name, _pair(getattr(self, name)))
        object.__setattr__(self, "weight", int(self.weight))
        object.__setattr__(self, "weight_exp", int(self.weight_exp))

    def check(self) -> list[str]:
        problems = _PoolShape.check(self)
        if not -256 <= self.weight <= 255:
            problems.append(f"pool weight {self.weight} outside [-256, 255]")
        return problems


@dataclass(frozen=True, eq=False)
class QCubaLIF(Node):
    """Loihi CUBA-LIF neuron in fixed point, exactly as Lava's bit-accurate ``LIF``/``LIFReset``.

    Per step, with ``a`` the synaptic input (already shifted by the weight exponent),
    ``M = 2**23`` and ``rtz`` a right shift rounding toward zero::

        u = wrap24(rtz(u * (4096 - current_decay), 12) + a * 2**6)   # wraps like int24
        v = clip(rtz(v * (4096 - voltage_decay), 12) + u + bias * 2**bias_exp, -(M-1), M-1)
        s = v > threshold * 2**6                                       # strict
        v = 0 where s            (reset="zero", Lava's hard reset; u is not reset)
        v = v - threshold * 2**6 where s   (reset="subtract", a neurodeploy neuron kind)

    ``current_decay``/``voltage_decay`` are in [0, 4096] with the same meaning for both
    (netx's ``iDecay``/``vDecay``); Lava's ``du = current_decay - 1`` absorbs its ds_offset.
    With a ``reset_interval`` K (a run option, as netx's), u and v are zeroed before the update
    of every Lava time step ``tau`` (1-based) with ``tau % K == (reset_offset + 1 + depth) % K``,
    where ``depth`` is the neuron's pipeline depth (synapses between it and the input): netx
    staggers each layer's reset by its delay this way.
    ``num_message_bits > 0`` marks graded output (netx ``messageBits``); ``refractory`` is kept
    from netx files (``refDelay``) but, as in Lava's bit-accurate model, not simulated.
    """

    threshold: int = 1
    current_decay: int = 4096
    voltage_decay: int = 0
    bias: np.ndarray = 0  # type: ignore[assignment]
    bias_exp: int = 0
    reset: str = "zero"
    refractory: int = 0
    num_message_bits: int = 0
    stage: ClassVar[str] = "fixed"
    is_neuron: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "bias", _array(self.bias, np.int64))
        for name in ("threshold", "current_decay", "voltage_decay", "bias_exp", "refractory",
                     "num_message_bits"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def check(self) -> list[str]:
        problems = []
        if not 0 <= self.threshold <= VTH_MANT_MAX:
            problems.append(f"threshold={self.threshold} outside [0, {VTH_MANT_MAX}]")
        for name in ("current_decay", "voltage_decay"):
            value = getattr(self, name)
            if not 0 <= value <= DECAY_UNITY:
                problems.append(f"{name}={value} outside [0, {DECAY_UNITY}] (12-bit decay)")
        if not 0 <= self.bias_exp <= 7:
            problems.append(f"bias_exp={self.bias_exp} outside [0, 7]")
        if self.bias.size and np.abs(self.bias).max() * (1 << max(self.bias_exp, 0)) >= 1 << 23:
            problems.append("bias * 2**bias_exp exceeds the 24-bit voltage range")
        if self.reset not in RESET_MODES:
            problems.append(f"reset={self.reset!r} not one of {RESET_MODES}")
        if not 0 <= self.num_message_bits <= 24:
            problems.append(f"num_message_bits={self.num_message_bits} outside [0, 24]")
        if self.refractory < 0:
            problems.append(f"refractory={self.refractory} must be >= 0")
        return problems

    def check_inputs(self, in_shapes: list[Shape]) -> list[str]:
        if self.bias.ndim and self.bias.shape != tuple(in_shapes[0]):
            return [f"bias shape {self.bias.shape} != neuron shape {in_shapes[0]}"]
        return []

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        return in_shapes[0]


@dataclass(frozen=True, eq=False)
class QCubaBNTT(QCubaLIF):
    """CUBA-LIF with a per-time-step, per-channel input gain and bias: Batch Normalization
    Through Time in the neuron (a neurodeploy neuron kind for targets with programmable
    neurons; lava-dl netx cannot hold it).

    All :class:`QCubaLIF` fields keep their meaning except ``bias``, which here is the bias
    *schedule*: ``(T, C)`` mantissas, one row per step. ``gain`` holds ``(T, C)`` signed
    16-bit gain mantissas and ``gain_exp`` the right shift of the gain product (``[0, 24]``).
    ``C`` is the neuron's channel count: the first axis of a ``(C, H, W)`` shape; for a vector
    ``(N,)`` every neuron is its own channel (``C = N``). At step ``t`` (0-based simulation
    step) a layer at pipeline depth ``d`` (synapses between it and the input, see
    ``neurodeploy.simulation.pipeline_depths``) uses schedule row ``k = (t - d) mod T``, so row
    0 meets the first input the layer sees. With ``a`` the synaptic input, ``M = 2**23``,
    ``rtz(x, k)`` a right shift rounding toward zero and ``c`` the neuron's channel::

        a' = clip(rtz(a * gain[k, c], gain_exp), -M, M - 1)          # gain, saturated
        u  = wrap24(rtz(u * (4096 - current_decay), 12) + a' * 2**6)
        v  = clip(rtz(v * (4096 - voltage_decay), 12) + u + bias[k, c] * 2**bias_exp,
                  -(M-1), M-1)
        s  = v > threshold * 2**6;  then reset as QCubaLIF (``"zero"`` or ``"subtract"``)

    (sums in int32 as Lava's numpy model computes them). The reference implementation is
    ``neurodeploy.backends.lava_neurons.bntt_neuron_step``; hw_sim and the Lava backend's
    ``CubaBNTT`` process run it bit-exactly. Output spikes are binary
    (``num_message_bits = 0``). The periodic ``reset_interval`` of a run applies as for
    :class:`QCubaLIF`. Being a ``QCubaLIF`` subclass, it is a neuron wherever one is asked
    for; code that builds Lava's own LIF or netx layers must treat it separately.
    """

    bias: np.ndarray = None  # type: ignore[assignment]
    gain: np.ndarray = None  # type: ignore[assignment]
    gain_exp: int = 0

    def __post_init__(self) -> None:
        for name in ("bias", "gain"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros((0, 0), dtype=np.int64))
        super().__post_init__()
        object.__setattr__(self, "gain", _array(self.gain, np.int64))
        object.__setattr__(self, "gain_exp", int(self.gain_exp))

    @property
    def timesteps(self) -> int:
        """Schedule length ``T``."""
        return int(self.gain.shape[0]) if self.gain.ndim == 2 else 0

    def schedule_index(self, t: int, depth: int) -> int:
        """Schedule row used at 0-based step ``t`` by a layer at pipeline depth ``depth``."""
        return (int(t) - int(depth)) % self.timesteps

    def check(self) -> list[str]:
        problems = super().check()
        shapes_ok = True
        for name in ("gain", "bias"):
            value = getattr(self, name)
            if value.ndim != 2 or value.shape[0] < 1 or value.shape[1] < 1:
                problems.append(f"{name} schedule has shape {value.shape}; expected (T, C) with "
                                "T >= 1 steps and C >= 1 channels")
                shapes_ok = False
        if shapes_ok and self.gain.shape != self.bias.shape:
            problems.append(f"gain schedule shape {self.gain.shape} != bias schedule shape "
                            f"{self.bias.shape}")
        lo, hi = GAIN_MANT_RANGE
        if self.gain.size and (self.gain.min() < lo or self.gain.max() > hi):
            problems.append(f"gain mantissas span [{self.gain.min()}, {self.gain.max()}], "
                            f"outside signed 16-bit [{lo}, {hi}]")
        if not 0 <= self.gain_exp <= GAIN_EXP_MAX:
            problems.append(f"gain_exp={self.gain_exp} outside [0, {GAIN_EXP_MAX}]")
        if self.num_message_bits:
            problems.append(f"num_message_bits={self.num_message_bits}: QCubaBNTT sends binary "
                            "spikes only (0)")
        return problems

    def check_inputs(self, in_shapes: list[Shape]) -> list[str]:
        shape = tuple(in_shapes[0])
        if len(shape) not in (1, 3):
            return [f"neuron shape {shape} must be (N,) or (C, H, W)"]
        if self.gain.ndim == 2 and self.gain.shape[1] != shape[0]:
            return [f"schedule has {self.gain.shape[1]} channels, neuron shape {shape} has "
                    f"{shape[0]}"]
        return []


@dataclass(frozen=True, eq=False)
class QSigmaDelta(Node):
    """Sigma-delta neuron (netx ``SDNN``; Lava ``Sigma``/``Delta``/``SigmaDelta``), read and
    written but not simulated yet. ``kind`` is ``"sigma_delta"``, ``"delta"`` (input layer) or
    ``"sigma"`` (output accumulator)."""

    kind: str = "sigma_delta"
    threshold: int = 0
    num_message_bits: int = 16
    bias: np.ndarray = 0  # type: ignore[assignment]
    stage: ClassVar[str] = "fixed"
    is_neuron: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "bias", _array(self.bias, np.int64))
        object.__setattr__(self, "threshold", int(self.threshold))
        object.__setattr__(self, "num_message_bits", int(self.num_message_bits))

    def check(self) -> list[str]:
        if self.kind not in ("sigma_delta", "delta", "sigma"):
            return [f"kind={self.kind!r} not one of sigma_delta, delta, sigma"]
        return []

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        return in_shapes[0]


@dataclass(frozen=True, eq=False)
class QResonateFire(Node):
    """Resonate-and-fire neuron (netx ``RF``/``RF_PHASE``/``RF_IZ``), read and written but not
    simulated yet. ``neuron_params`` keeps the file's neuron fields verbatim (name → scalar)."""

    kind: str = "RF"
    threshold: int = 0
    neuron_params: tuple[tuple[str, float], ...] = ()
    bias: np.ndarray = 0  # type: ignore[assignment]
    stage: ClassVar[str] = "fixed"
    is_neuron: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "bias", _array(self.bias, np.int64))
        object.__setattr__(self, "threshold", int(self.threshold))
        object.__setattr__(self, "neuron_params",
                           tuple((str(k), v) for k, v in self.neuron_params))

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        return in_shapes[0]


@dataclass(frozen=True, eq=False)
class Average(Node):
    """Mean over ``num_outputs`` equal, contiguous groups of the flattened input (PyTorch
    ``C, H, W`` order), as lava-dl slayer's ``Average`` block (netx layer type ``average``):
    ``y[k] = mean(x.flatten()[k * n : (k + 1) * n])`` with ``n = x.size // num_outputs``.
    Output shape ``(num_outputs,)``. A readout of graded values: read and written, not
    simulated on chip."""

    num_outputs: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_outputs", int(self.num_outputs))

    def check(self) -> list[str]:
        if self.num_outputs < 1:
            return [f"num_outputs={self.num_outputs} must be positive"]
        return []

    def check_inputs(self, in_shapes: list[Shape]) -> list[str]:
        size = int(np.prod(in_shapes[0]))
        if size % self.num_outputs:
            return [f"input of {size} values does not split into {self.num_outputs} groups"]
        return []

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        return (self.num_outputs,)
