"""PyTorch frontend: turn a torch model into a float-stage IR graph by tracing it with ``torch.fx``.

:func:`from_torch` traces one time step of a network. For a
:class:`~neurodeploy.models.layers.SpikingNet` it traces ``model.body`` (the per-step module) and
records the time loop in ``graph.metadata`` (``timesteps``, ``encoder``, ``dt``); for the zoo's
``ANNNet`` it traces ``model.body`` too (so ANN and SNN twins share layer names); any other
module (an ANN) is traced as it is. Time is never unrolled: neuron layers
(:class:`~neurodeploy.models.layers.StatefulModule` subclasses) and every module type in the
module map are fx leaves, converted one call at a time.

**Module map.** :data:`MODULE_MAP` maps a module type (exact type, not subclasses) to a
:data:`Converter` ``(module, name, in_shapes) -> [(node_name, node), ...]``: the IR nodes, a
chain, that replace one call of the module. ``in_shapes`` are the per-sample input shapes
(PyTorch order, no batch axis); an empty chain means "pass the input through" (``nn.Identity``,
``nn.Dropout``). Users add layers with :func:`register_module`, or per call with
``from_torch(module_map=...)``. Converters that need the time step read :func:`current_dt`.

**Node names.** A module call is named after its module path with dots replaced by
underscores (``layer1.conv`` → ``layer1_conv``; a leading digit, as in a ``Sequential``'s
``0``, gets a ``_`` prefix: ``_0``); a function or method call keeps its fx node name
(``add``, ``add_1``, ``cat``, ``relu``, ``flatten``); the graph input is ``input``. A clash
(a module called twice, or ``a.b`` next to ``a_b``) gets a suffix ``_1``, ``_2``, ...

**Neurons.** ``models.layers.LIF`` with leak λ < 1 (``v ← λv + I``) becomes
``LIF(tau=dt/(1-λ), r=1/(1-λ), v_leak=0, v_threshold=θ, v_reset=0)``; λ = 1 and ``IF`` become
``IF(r=1/dt, ...)``; ``Accumulator`` becomes ``I(r=1/dt)``. Scalar torch parameters stay
scalars (0-d arrays). With these, the float IR simulator reproduces the torch forward up to
float64 rounding: the round-trip tests require logits and membrane potentials within 1e-9 and
identical spike trains.
BatchNorm uses the running statistics and dropout is skipped (``eval()`` semantics, with a
warning for a model left in training mode); ``BNTT`` uses ``inference_affine()``.

Everything the frontend cannot convert (unknown modules, unsupported functions or arguments) is
collected over the whole model and raised as one :class:`~neurodeploy.errors.UnsupportedError`.
"""

from __future__ import annotations

import contextvars
import math
import operator
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import InvalidIRError, NeurodeployError, UnsupportedError
from ..ir import (
    BNTT,
    IF,
    LIF,
    Add,
    Affine,
    AvgPool2d,
    BatchNorm,
    Concat,
    Conv2d,
    Flatten,
    Graph,
    I,
    Input,
    Linear,
    Node,
    ReLU,
)
from ..ir.nodes import Shape
from ..models import layers as L

#: Converts one module call: ``(module, name, in_shapes) -> [(node_name, node), ...]``, a chain
#: of IR nodes (empty: the module passes its input through). ``name`` is the suggested node
#: name; extra nodes of a chain should be named ``f"{name}_<suffix>"``. Raise
#: :class:`UnsupportedError` for settings the converter cannot express.
Converter = Callable[[nn.Module, str, list[Shape]], list[tuple[str, Node]]]

_DT: contextvars.ContextVar[float] = contextvars.ContextVar("neurodeploy_torch_dt", default=1.0)


def current_dt() -> float:
    """The time step (seconds, ``graph.metadata["dt"]``) of the :func:`from_torch` call in
    progress, for converters of neuron layers (1.0 outside a call)."""
    return _DT.get()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _scalar(t: Any) -> np.ndarray:
    """A 0-d float64 array from a Python number or a one-element tensor."""
    if isinstance(t, torch.Tensor):
        if t.numel() != 1:
            return _np(t)
        return np.array(float(t.detach().reshape(-1)[0]))
    return np.array(float(t))


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    vals = tuple(int(v) for v in value)
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


def _need_rank(name: str, kind: str, shape: Shape, rank: int) -> None:
    if len(shape) != rank:
        want = "(N,)" if rank == 1 else "(C, H, W)"
        raise UnsupportedError(f"{kind} needs a per-sample {want} input, got {shape}")


# ------------------------------------------------------------------------------------------
# Module converters
# ------------------------------------------------------------------------------------------


def _conv2d(m: nn.Conv2d, name: str, in_shapes: list[Shape]) -> list[tuple[str, Node]]:
    _need_rank(name, "nn.Conv2d", in_shapes[0], 3)
    if m.padding_mode != "zeros":
        raise UnsupportedError(f"padding_mode={m.padding_mode!r} (only 'zeros')")
    kernel, dilation = _pair(m.kernel_size), _pair(m.dilation)
    if isinstance(m.padding, str):
        if m.padding == "valid":
            padding = (0, 0)
        else:  # "same" (stride 1, enforced by torch): symmetric when the total is even
            totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
            if any(t % 2 for t in totals):
                raise UnsupportedError(
                    f"padding='same' with kernel {kernel}, dilation {dilation} pads "
                    "asymmetrically; use explicit integer padding")
            padding = (totals[0] // 2, totals[1] // 2)
    else:
        padding = _pair(m.padding)
    bias = None if m.bias is None else _np(m.bias)
    return [(name, Conv2d(weight=_np(m.weight), bias=bias, stride=_pair(m.stride),
                          padding=padding, dilation=dilation, groups=m.groups))]


def _linear(m: nn.Linear, name: str, in_shapes: list[Shape]) -> list[tuple[str, Node]]:
    if len(in_shapes[0]) != 1:
        raise UnsupportedError(
            f"nn.Linear applied to a per-sample {in_shapes[0]} input acts on the last axis "
            "only; flatten first (nn.Flatten or torch.flatten(x, 1))")
    if m.bias is None:
        return [(name, Linear(weight=_np(m.weight)))]
    return [(name, Affine(weight=_np(m.weight), bias=_np(m.bias)))]


def _pool_node(kernel: Any, stride: Any, padding: Any, ceil_mode: bool,
               count_include_pad: bool, divisor_override: Any) -> AvgPool2d:
    kernel = _pair(kernel)
    stride = kernel if stride is None or (not isinstance(stride, int) and len(stride) == 0) \
        else _pair(stride)
    padding = _pair(padding)
    if ceil_mode:
        raise UnsupportedError("ceil_mode=True (only floor output sizes)")
    if divisor_override is not None:
        raise UnsupportedError(f"divisor_override={divisor_override}")
    if not count_include_pad and max(padding) > 0:
        raise UnsupportedError("count_include_pad=False with padding (padding counts as zeros)")
    return AvgPool2d(kernel_size=kernel, stride=stride, padding=padding)


def _avg_pool(m: nn.AvgPool2d, name: str, in_shapes: list[Shape]) -> list[tuple[str, Node]]:
    _need_rank(name, "nn.AvgPool2d", in_shapes[0], 3)
    return [(name, _pool_node(m.kernel_size, m.stride, m.padding, m.ceil_mode,
                              m.count_include_pad, m.divisor_override))]


def _adaptive_node(output_size: Any, shape: Shape) -> AvgPool2d:
    if len(shape) != 3:
        raise UnsupportedError(f"adaptive average pooling needs a (C, H, W) input, got {shape}")
    sizes = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(sizes) == 1:
        sizes = (sizes[0], sizes[0])
    kernel = []
    for size, dim in zip(sizes, shape[1:]):
        size = dim if size is None else int(size)
        if size < 1 or dim % size:
            raise UnsupportedError(
                f"output size {tuple(sizes)} does not divide the input {shape[1:]} "
                "(only equal windows map to AvgPool2d)")
        kernel.append(dim // size)
    return AvgPool2d(kernel_size=tuple(kernel), stride=tuple(kernel), padding=(0, 0))


def _adaptive_avg_pool(m: nn.AdaptiveAvgPool2d, name: str,
                       in_shapes: list[Shape]) -> list[tuple[str, Node]]:
    return [(name, _adaptive_node(m.output_size, in_shapes[0]))]


def _flatten(m: nn.Flatten, name: str, in_shapes: list[Shape]) -> list[tuple[str, Node]]:
    _check_flatten(m.start_dim, m.end_dim, len(in_shapes[0]) + 1)
    return [(name, Flatten())]


def _relu(m: nn.Module, name: str, in_shapes: list[Shape]) -> list[tuple[str, Node]]:
    return [(name, ReLU())]


def _skip(m: nn.Module, name: str, in_shapes: list[Shape]) -> list[tuple[str, Node]]:
    return []


def _batchnorm(m: nn.modules.batchnorm._BatchNorm, name: str,
               in_shapes: list[Shape]) -> list[tuple[str, Node]]:
    rank = 1 if isinstance(m, nn.BatchNorm1d) else 3
    _need_rank(name, type(m).__name__, in_shapes[0], rank)
    if m.running_mean is None or m.running_var is None:
        raise UnsupportedError(
            "track_running_stats=False normalizes with batch statistics at inference; "
            "train with running statistics")
    inv = 1.0 / torch.sqrt(m.running_var.detach().double() + m.eps)
    gamma = m.weight.detach().double() if m.weight is not None else torch.ones_like(inv)
    beta = m.bias.detach().double() if m.bias is not None else torch.zeros_like(inv)
    scale = gamma * inv
    shift = beta - scale * m.running_mean.detach().double()
    return [(name, BatchNorm(scale=_np(scale), shift=_np(shift)))]


def _bntt(m: L.BNTT, name: str, in_shapes: list[Shape]) -> list[tuple[str, Node]]:
    rank = 1 if isinstance(m.bn[0], nn.BatchNorm1d) else 3
    _need_rank(name, "BNTT", in_shapes[0], rank)
    for bn in m.bn:
        if bn.bias is not None:  # BNTT removes beta; keep it if a variant has one
            raise UnsupportedError("BNTT with a bias (beta) is not the seeds' BNTT")
    scale, shift = m.inference_affine()
    return [(name, BNTT(scale=_np(scale), shift=_np(shift)))]


def _lif(m: L.LIF, name: str, in_shapes: list[Shape]) -> list[tuple[str, Node]]:
    dt = current_dt()
    leak = float(m.leak.detach())
    threshold = _scalar(m.threshold)
    common = dict(v_threshold=threshold, v_reset=np.array(0.0), reset=m.reset, order=m.order)
    if leak == 1.0:
        return [(name, IF(r=np.array(1.0 / dt), **common))]
    return [(name, LIF(tau=np.array(dt / (1.0 - leak)), r=np.array(1.0 / (1.0 - leak)),
                       v_leak=np.array(0.0), **common))]


def _accumulator(m: L.Accumulator, name: str, in_shapes: list[Shape]) -> list[tuple[str, Node]]:
    return [(name, I(r=np.array(1.0 / current_dt())))]


#: The module types :func:`from_torch` converts (exact types), with their converters.
MODULE_MAP: dict[type, Converter] = {
    nn.Conv2d: _conv2d,
    nn.Linear: _linear,
    nn.AvgPool2d: _avg_pool,
    nn.AdaptiveAvgPool2d: _adaptive_avg_pool,
    nn.Flatten: _flatten,
    nn.ReLU: _relu,
    nn.BatchNorm1d: _batchnorm,
    nn.BatchNorm2d: _batchnorm,
    nn.Dropout: _skip,
    nn.Dropout1d: _skip,
    nn.Dropout2d: _skip,
    nn.Identity: _skip,
    L.LIF: _lif,
    L.IF: _lif,
    L.BNTT: _bntt,
    L.Accumulator: _accumulator,
}


def _zoo_types() -> tuple[type | None, type | None]:
    """``(ANNNet, StepDropout)`` from the model zoo, imported lazily (``(None, None)`` if the zoo
    cannot be imported), and ``StepDropout`` registered as a pass-through (identity in eval)."""
    try:
        from ..models import zoo
    except ImportError:
        return None, None
    step_dropout = getattr(zoo, "StepDropout", None)
    if step_dropout is not None:
        MODULE_MAP.setdefault(step_dropout, _skip)
    from ..models import loihi

    for layer_type in (loihi.LoihiDense, loihi.LoihiConv2d):
        MODULE_MAP.setdefault(layer_type, _loihi_layer)
    return getattr(zoo, "ANNNet", None), step_dropout


def _loihi_layer(module: nn.Module, name: str, in_shapes: list[Shape]) -> list[tuple[str, Node]]:
    """A quantization-aware Loihi layer: its fixed-point synapse and CUBA neuron group."""
    return [(f"{name}_syn", module.synapse_node()),
            (name, module.neuron_node(module.output_shape(in_shapes[0])))]


def register_module(module_type: type, converter: Converter) -> None:
    """Make :func:`from_torch` convert modules of exactly ``module_type`` with ``converter``
    (replacing any converter it had). The module becomes an fx leaf: it is not traced into."""
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
    if not callable(converter):
        raise TypeError(f"converter must be callable, got {converter!r}")
    MODULE_MAP[module_type] = converter


def _type_name(cls: type) -> str:
    module = cls.__module__
    if module.startswith("torch.nn"):
        return f"nn.{cls.__qualname__}"
    if module.startswith("neurodeploy."):
        module = module[len("neurodeploy."):]
    return f"{module}.{cls.__qualname__}"


def supported_modules() -> list[str]:
    """Names of the module types :data:`MODULE_MAP` converts (``nn.Conv2d``,
    ``models.layers.LIF``, ...), registered ones included, sorted."""
    return sorted(_type_name(t) for t in MODULE_MAP)


#: Function and method calls :func:`from_torch` understands (for error messages).
SUPPORTED_CALLS = (
    "a + b / torch.add(a, b)", "torch.cat(xs, dim>=1)", "torch.flatten(x, 1)", "x.flatten(1)",
    "x.view(x.size(0), -1)", "x.reshape(x.shape[0], -1)", "F.relu / torch.relu / x.relu()",
    "F.avg_pool2d", "F.adaptive_avg_pool2d", "F.dropout (skipped)",
)


# ------------------------------------------------------------------------------------------
# Tracing
# ------------------------------------------------------------------------------------------


class _Tracer(fx.Tracer):
    """fx tracer whose leaves are neuron layers, mapped module types and torch.nn modules."""

    def __init__(self, leaf_types: Mapping[type, Any]) -> None:
        super().__init__()
        self.leaf_types = leaf_types
        self.stack: list[str] = []
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, L.StatefulModule) or type(m) in self.leaf_types:
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        if self.is_leaf_module(m, ""):
            return super().call_module(m, forward, args, kwargs)
        path = self.path_of_module(m)
        self.stack.append(f"{path} ({_type_name(type(m))})")
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = self.stack[-1]
            raise
        finally:
            self.stack.pop()


@dataclass(frozen=True)
class _T:
    """An IR tensor: the output of IR node ``name``."""

    name: str


class _Batch:
    """The batch size (``x.size(0)``, ``x.shape[0]``)."""


@dataclass(frozen=True)
class _ShapeOf:
    """``x.shape`` / ``x.size()`` of IR tensor ``name``."""

    name: str


_FAILED = object()


class _Unsupported(Exception):
    """Raised by call handlers; the message says what is wrong with the call."""


def _call_name(n: fx.Node) -> str:
    if n.op == "call_method":
        return f"Tensor.{n.target}"
    target = n.target
    if target is operator.add:
        return "+"
    if target is operator.getitem:
        return "[]"
    name = torch.overrides.resolve_name(target) if callable(target) else None
    if name is None and getattr(operator, getattr(target, "__name__", ""), None) is target:
        name = f"operator.{target.__name__}"
    if name is None:
        mod = getattr(target, "__module__", None) or ""
        name = f"{mod}.{getattr(target, '__name__', repr(target))}".lstrip(".")
    return name.replace("torch.nn.functional.", "F.")


def _check_flatten(start: int, end: int, rank: int) -> None:
    """``rank`` is the full tensor rank (batch included)."""
    s = start + rank if start < 0 else start
    e = end + rank if end < 0 else end
    if s != 1 or e != rank - 1:
        raise UnsupportedError(
            f"flatten(start_dim={start}, end_dim={end}) of a rank-{rank} batch; only "
            "flattening every axis after the batch axis is supported")


class _Builder:
    """Converts an fx graph node by node into IR nodes, collecting every offender."""

    def __init__(self, root: nn.Module, module_map: Mapping[type, Converter]) -> None:
        self.root = root
        self.module_map = module_map
        self.nodes: list[tuple[str, Node]] = []
        self.edges: list[tuple[str, str]] = []
        self.shapes: dict[str, Shape] = {}
        self.used: set[str] = set()
        self.offenders: list[str] = []
        self.invalid: list[str] = []
        self.calls: Counter[str] = Counter()

    # ---------------------------------------------------------------- helpers

    def unique(self, base: str) -> str:
        base = node_name(base) or "node"
        name, k = base, 0
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    def emit(self, chain: list[tuple[str, Node]], inputs: list[_T]) -> Any:
        """Add a chain fed by ``inputs``; return its output tensor (``_FAILED`` if invalid)."""
        if not chain:
            if len(inputs) != 1:
                raise _Unsupported("a pass-through needs exactly one input")
            return inputs[0]
        sources = [t.name for t in inputs]
        for suggested, node in chain:
            if not isinstance(node, Node):
                raise _Unsupported(f"converter returned {type(node).__name__}, not an IR node")
            name = self.unique(str(suggested))
            ins = [self.shapes[s] for s in sources]
            lo, hi = node.arity
            problems = ([] if lo <= len(ins) <= hi
                        else [f"takes {lo} to {hi} inputs, got {len(ins)}"])
            problems = problems or node.check() or node.check_inputs(ins)
            if problems:
                self.invalid.extend(f"{name} ({node.type_name}): {p}" for p in problems)
                return _FAILED
            self.nodes.append((name, node))
            self.edges.extend((s, name) for s in sources)
            self.shapes[name] = tuple(node.output_shape(ins))
            sources = [name]
        return _T(sources[0])

    @staticmethod
    def tensors(values: list[Any], what: str) -> list[_T]:
        out = []
        for v in values:
            if not isinstance(v, _T):
                raise _Unsupported(f"{what} takes a tensor here, got {type(v).__name__}")
            out.append(v)
        if len({t.name for t in out}) != len(out):
            raise _Unsupported(f"{what} uses the same tensor twice")
        return out

    # ---------------------------------------------------------------- per fx node

    def module_call(self, n: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        module = self.root.get_submodule(n.target)
        converter = self.module_map.get(type(module))
        where = f"{n.target} ({_type_name(type(module))})"
        if converter is None:
            self.offenders.append(where)
            return _FAILED
        if isinstance(module, L.StatefulModule):
            self.calls[n.target] += 1
            if self.calls[n.target] == 2:
                self.offenders.append(
                    f"{where}: a stateful layer is called more than once per step "
                    "(use one module per call)")
                return _FAILED
        if kwargs or any(v is _FAILED for v in args):
            if kwargs:
                self.offenders.append(f"{where}: keyword arguments {sorted(kwargs)}")
            return _FAILED
        try:
            inputs = self.tensors(list(args), where)
            chain = converter(module, node_name(n.target),
                              [self.shapes[t.name] for t in inputs])
            return self.emit(list(chain), inputs)
        except (_Unsupported, UnsupportedError) as err:
            msg = err.message if isinstance(err, NeurodeployError) else str(err)
            self.offenders.append(f"{where}: {msg}")
            return _FAILED

    def function_call(self, n: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        handler = (_METHODS if n.op == "call_method" else _FUNCTIONS).get(n.target)
        stack = n.meta.get("nn_module_stack") or {}
        inside = f" in {next(reversed(stack.values()))[0]}" if stack else ""
        where = f"{n.name} ({_call_name(n)}{inside})"
        if handler is None:
            self.offenders.append(where)
            return _FAILED
        if _contains_failed((args, kwargs)):
            return _FAILED
        try:
            return handler(self, n, list(args), dict(kwargs))
        except (_Unsupported, UnsupportedError) as err:
            msg = err.message if isinstance(err, NeurodeployError) else str(err)
            self.offenders.append(f"{where}: {msg}")
            return _FAILED
        except (TypeError, ValueError):  # arguments of a kind the handler does not expect
            self.offenders.append(f"{where}: unsupported arguments")
            return _FAILED


def node_name(module_path: str) -> str:
    """The IR node name :func:`from_torch` gives a call of the module at ``module_path``
    (before de-duplication): dots become underscores, a leading digit gets ``_``
    (``"layer1.conv"`` → ``"layer1_conv"``, ``"0"`` → ``"_0"``)."""
    base = module_path.replace(".", "_")
    return f"_{base}" if base[:1].isdigit() else base





def _contains_failed(value: Any) -> bool:
    found = False

    def visit(v: Any) -> Any:
        nonlocal found
        if v is _FAILED:
            found = True
        return v

    fx.node.map_aggregate(value, visit)
    return found


# ------------------------------------------------------------------------------------------
# Function and method handlers: (builder, fx node, args, kwargs) -> value
# ------------------------------------------------------------------------------------------


def _arg(args: list[Any], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _h_add(b: _Builder, n: fx.Node, args: list[Any], kwargs: dict[str, Any]) -> Any:
    alpha = kwargs.pop("alpha", 1)
    if alpha != 1 or len(args) != 2 or kwargs:
        raise _Unsupported("only a + b of two tensors (no alpha, no out)")
    if not all(isinstance(a, _T) for a in args):
        raise _Unsupported("adding a constant; only tensor + tensor (residual) is supported")
    a, c = b.tensors(args, "add")
    return b.emit([(n.name, Add())], [a, c])


def _h_cat(b: _Builder, n: fx.Node, args: list[Any], kwargs: dict[str, Any]) -> Any:
    tensors = _arg(args, kwargs, 0, "tensors", None)
    dim = _arg(args, kwargs, 1, "dim", 0)
    if not isinstance(tensors, (list, tuple)) or not tensors:
        raise _Unsupported("expects a list of tensors")
    inputs = b.tensors(list(tensors), "cat")
    rank = len(b.shapes[inputs[0].name]) + 1
    full = dim + rank if dim < 0 else dim
    if not 1 <= full < rank:
        raise _Unsupported(f"dim={dim} concatenates along the batch axis; use dim>=1")
    return b.emit([(n.name, Concat(axis=full - 1))], inputs)


def _h_flatten(b: _Builder, n: fx.Node, args: list[Any], kwargs: dict[str, Any]) -> Any:
    (x,) = b.tensors(args[:1], "flatten")
    start = _arg(args, kwargs, 1, "start_dim", 0)
    end = _arg(args, kwargs, 2, "end_dim", -1)
    _check_flatten(start, end, len(b.shapes[x.name]) + 1)
    return b.emit([(n.name, Flatten())], [x])


def _h_view(b: _Builder, n: fx.Node, args: list[Any], kwargs: dict[str, Any]) -> Any:
    (x,) = b.tensors(args[:1], n.target)
    sizes = args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
        sizes = list(sizes[0])
    if kwargs.get("shape") is not None:
        sizes = list(kwargs["shape"])
    count = math.prod(b.shapes[x.name])
    ok = len(sizes) == 2 and (
        (isinstance(sizes[0], _Batch) and sizes[1] in (-1, count))
        or (sizes[0] == -1 and sizes[1] == count))
    if not ok:
        shown = ["B" if isinstance(s, _Batch) else s for s in sizes]
        raise _Unsupported(f"{n.target}{tuple(shown)} is not a flatten to (B, {count})")
    return b.emit([(n.name, Flatten())], [x])


def _h_size(b: _Builder, n: fx.Node, args: list[Any], kwargs: dict[str, Any]) -> Any:
    (x,) = b.tensors(args[:1], "size")
    dim = _arg(args, kwargs, 1, "dim", None)
    if dim is None:
        return _ShapeOf(x.name)
    return _dim_of(b, x.name, dim)


def _dim_of(b: _Builder, name: str, dim: Any) -> Any:
    shape = b.shapes[name]
    if not isinstance(dim, int) or not -len(shape) - 1 <= dim <= len(shape):
        raise _Unsupported(f"dimension {dim!r} of a rank-{len(shape) + 1} tensor")
    dim = dim + len(shape) + 1 if dim < 0 else dim
    return _Batch() if dim == 0 else shape[dim - 1]


def _h_getattr(b: _Builder, n: fx.Node, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if len(args) == 2 and isinstance(args[0], _T) and args[1] == "shape":
        return _ShapeOf(args[0].name)
    raise _Unsupported(f"attribute {args[1:]!r} (only .shape)")


def _h_getitem(b: _Builder, n: fx.Node, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if len(args) == 2 and isinstance(args[0], _ShapeOf) and isinstance(args[1], int):
        return _dim_of(b, args[0].name, args[1])
    raise _Unsupported("indexing (only x.shape[i])")


def _h_relu(b: _Builder, n: fx.Node, args: list[Any], kwargs: dict[str, Any]) -> Any:
    (x,) = b.tensors(args[:1], "relu")
    return b.emit([(n.name, ReLU())], [x])


def _h_dropout(b: _Builder, n: fx.Node, args: list[Any], kwargs: dict[str, Any]) -> Any:
    (x,) = b.tensors(args[:1], "dropout")
    return x


def _h_avg_pool(b: _Builder, n: fx.Node, args: list[Any], kwargs: dict[str, Any]) -> Any:
    (x,) = b.tensors(args[:1], "avg_pool2d")
    if len(b.shapes[x.name]) != 3:
        raise _Unsupported(f"needs a (C, H, W) input, got {b.shapes[x.name]}")
    node = _pool_node(
        _arg(args, kwargs, 1, "kernel_size", None), _arg(args, kwargs, 2, "stride", None),
        _arg(args, kwargs, 3, "padding", 0), _arg(args, kwargs, 4, "ceil_mode", False),
        _arg(args, kwargs, 5, "count_include_pad", True),
        _arg(args, kwargs, 6, "divisor_override", None))
    return b.emit([(n.name, node)], [x])


def _h_adaptive(b: _Builder, n: fx.Node, args: list[Any], kwargs: dict[str, Any]) -> Any:
    (x,) = b.tensors(args[:1], "adaptive_avg_pool2d")
    node = _adaptive_node(_arg(args, kwargs, 1, "output_size", None), b.shapes[x.name])
    return b.emit([(n.name, node)], [x])


_FUNCTIONS: dict[Any, Callable[..., Any]] = {
    operator.add: _h_add,
    torch.add: _h_add,
    torch.cat: _h_cat,
    torch.concat: _h_cat,
    torch.flatten: _h_flatten,
    torch.relu: _h_relu,
    F.relu: _h_relu,
    F.dropout: _h_dropout,
    F.avg_pool2d: _h_avg_pool,
    F.adaptive_avg_pool2d: _h_adaptive,
    getattr: _h_getattr,
    operator.getitem: _h_getitem,
}

_METHODS: dict[str, Callable[..., Any]] = {
    "add": _h_add,
    "flatten": _h_flatten,
    "view": _h_view,
    "reshape": _h_view,
    "size": _h_size,
    "relu": _h_relu,
}


# ------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------


def _encoder_metadata(encoder: nn.Module) -> dict[str, Any]:
    if isinstance(encoder, L.PeriodicEncoder):
        encoder = encoder.inner
    if isinstance(encoder, L.DirectEncoder):
        return {"encoder": "direct"}
    if isinstance(encoder, L.PoissonEncoder):
        return {"encoder": "poisson", "encoder_rescale": float(encoder.rescale)}
    raise UnsupportedError(
        f"encoder {_type_name(type(encoder))} cannot be recorded in the graph; supported: "
        "DirectEncoder, PoissonEncoder (trace model.body and set metadata['encoder'] yourself "
        "for another one)")


def _live_nodes(graph: fx.Graph) -> set[fx.Node]:
    """fx nodes the output depends on (dead code such as an unused ``x.size(0)`` is skipped)."""
    output = next(n for n in graph.nodes if n.op == "output")
    live, todo = set(), [output]
    while todo:
        n = todo.pop()
        if n in live:
            continue
        live.add(n)
        todo.extend(n.all_input_nodes)
    return live


def from_torch(model: nn.Module, *, in_shape: tuple[int, ...],
               module_map: Mapping[type, Converter] | None = None, dt: float = 1.0) -> Graph:
    """Trace ``model`` with ``torch.fx`` and return its float-stage IR graph (validated).

    Args:
        model: a :class:`~neurodeploy.models.layers.SpikingNet` (its per-step ``body`` is
            traced; ``timesteps`` and the encoder go to the metadata), a zoo ``ANNNet`` (its
            ``body`` is traced, so layer names match the SNN twin's) or any ``nn.Module``
            taking one batch tensor (an ANN, or a per-step SNN body).
        in_shape: one sample's input shape without the batch axis, ``(C, H, W)`` or ``(N,)``.
        module_map: extra or overriding converters for this call (see :data:`MODULE_MAP`).
        dt: the time step in seconds, stored as ``metadata["dt"]``; neuron time constants are
            expressed in it (a leak λ per step becomes ``tau = dt/(1-λ)``).

    Returns:
        A :class:`~neurodeploy.ir.Graph` with an ``Input`` named ``input`` and metadata
        ``dt``, ``source="torch"``, ``model`` (class name), ``kind`` (``"snn"`` when it has
        neuron nodes, else ``"ann"``) and, for a ``SpikingNet``, ``timesteps``, ``encoder``
        (``"direct"``/``"poisson"``) and ``encoder_rescale`` (Poisson only).

    Raises:
        UnsupportedError: listing every module, function or argument that cannot be
            converted, with the supported ones and a hint on :func:`register_module`.
        InvalidIRError: when converted nodes are inconsistent (e.g. wrong input sizes).
    """
    if not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise NeurodeployError(f"dt={dt!r} must be a positive, finite number of seconds")
    shape = tuple(int(s) for s in in_shape)
    problems = Input(shape=shape).check()
    if problems:
        raise InvalidIRError([f"in_shape: {p}" for p in problems])
    ann_net, _ = _zoo_types()
    from ..models.loihi import LoihiNet, to_graph

    if isinstance(model, LoihiNet):  # its forward runs the time loop: export it directly
        return to_graph(model)
    mapping = {**MODULE_MAP, **(module_map or {})}
    metadata: dict[str, Any] = {"dt": float(dt), "source": "torch", "model": type(model).__name__}
    root = model
    if isinstance(model, L.SpikingNet):
        root = model.body
        metadata["timesteps"] = int(model.timesteps)
        metadata.update(_encoder_metadata(model.encoder))
    elif ann_net is not None and type(model) is ann_net:
        root = model.body  # forward(x) is body(x): trace the body so names match the SNN twin
    if model.training and any(
            isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd,
                           L.BNTT)) or type(m).__name__ == "StepDropout"
            for m in root.modules()):
        warnings.warn(f"{type(model).__name__} is in training mode; it is converted with "
                      "eval() semantics (running BatchNorm statistics, no dropout)", stacklevel=2)
    tracer = _Tracer(mapping)
    if tracer.is_leaf_module(root, ""):
        root = nn.Sequential(root)  # a bare layer: trace a one-module container around it
    try:
        fx_graph = tracer.trace(root)
    except NeurodeployError:
        raise
    except Exception as err:  # user code that fx cannot trace (data-dependent control flow, ...)
        where = f" in {tracer.failed_in}" if tracer.failed_in else ""
        raise UnsupportedError(
            f"torch.fx cannot trace {type(root).__name__}{where}: "
            f"{' '.join(str(err).split()) or type(err).__name__}",
            hint="make that module a leaf with neurodeploy.frontends.torch.register_module",
        ) from err

    token = _DT.set(float(dt))
    try:
        builder = _convert(fx_graph, root, mapping, shape)
    finally:
        _DT.reset(token)
    if builder.offenders:
        n = len(builder.offenders)
        raise UnsupportedError(
            f"cannot convert {n} operation{'s' if n > 1 else ''} of {type(root).__name__}: "
            + "; ".join(builder.offenders)
            + f". Supported modules: {', '.join(supported_modules())}. "
            f"Supported calls: {', '.join(SUPPORTED_CALLS)}",
            hint="add a converter for a custom layer with "
                 "neurodeploy.frontends.torch.register_module(type, converter)",
        )
    if builder.invalid:
        raise InvalidIRError(builder.invalid)
    metadata["kind"] = "snn" if any(node.is_neuron for _, node in builder.nodes) else "ann"
    graph = Graph(dict(builder.nodes), tuple(builder.edges), metadata)
    return graph.validate()


def _convert(fx_graph: fx.Graph, root: nn.Module, mapping: Mapping[type, Converter],
             shape: Shape) -> _Builder:
    b = _Builder(root, mapping)
    live = _live_nodes(fx_graph)
    env: dict[fx.Node, Any] = {}
    seen_input = False
    for n in fx_graph.nodes:
        if n not in live:
            continue
        args = fx.node.map_arg(n.args, lambda a: env[a])
        kwargs = fx.node.map_arg(n.kwargs, lambda a: env[a])
        if n.op == "placeholder":
            if seen_input:
                b.offenders.append(f"{n.name} (a second forward argument; only one input)")
                env[n] = _FAILED
                continue
            seen_input = True
            env[n] = b.emit([("input", Input(shape=shape))], [])
        elif n.op == "get_attr":
            b.offenders.append(f"{n.target} (parameter or buffer used directly in forward; "
                               "wrap the operation in a module and register it)")
            env[n] = _FAILED
        elif n.op == "call_module":
            env[n] = b.module_call(n, args, kwargs)
        elif n.op in ("call_function", "call_method"):
            env[n] = b.function_call(n, args, kwargs)
        elif n.op == "output":
            out = args[0]
            if out is not _FAILED and not isinstance(out, _T):
                b.offenders.append(f"output ({type(out).__name__}; forward must return one "
                                   "tensor)")
            elif isinstance(out, _T) and out.name == "input":
                b.offenders.append("output (forward returns its input unchanged)")
    return b
