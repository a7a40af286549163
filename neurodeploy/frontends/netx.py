"""Read and write lava-dl netx HDF5 network files (``.net``) as fixed-point IR graphs.

The reader mirrors what ``lava.lib.dl.netx.hdf5.Network`` builds from a file (without importing
Lava): dense weights go through netx's ``optimize_weight_bits`` and are clipped in the sign mode
Lava's ``Dense`` picks for itself (netx passes none), conv weights are used as stored (exponent
0), CUBA neurons get netx's ``bias_exp = 6``. Every value read from the file is checked
(presence, dtype, shape, range, size before allocation) and every problem is reported as a
one-line :class:`~neurodeploy.errors.BadInputFileError` naming the file and the layer.

Layer ``i`` of type ``t`` becomes a neuron node ``f"{t}{i}"`` (fed by a synapse node
``f"{t}{i}_syn"`` for dense/conv/pool layers); the input layer becomes an ``Input`` node named
``input`` followed by its neuron ``input0``. What the IR does not model (the ``simulation`` group,
the input transform, extra neuron fields such as ``scaleRho``, the stored dtypes and shapes of
datasets) is kept in ``graph.metadata["netx"]`` so that :func:`write_netx` writes an equivalent
file back. The input layer's ``messageBits`` (written when the ``Input`` sends graded events into
the first synapse layer) is neurodeploy's record of what netx takes as
``Network(input_message_bits=...)``; netx itself ignores the field.

The writer refuses what netx would run differently from hw_sim (see :func:`write_netx`), and
:func:`run_netx` runs a file in lava-dl's own netx under hw_sim's run conventions, so that the
two compare spike for spike (``docs/concepts.md``, "netx files").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._hdf5 import CheckedGroup
from ..errors import (
    BadInputFileError,
    InvalidIRError,
    MissingExtraError,
    NeurodeployError,
    QuantizationError,
    UnsupportedError,
)
from ..ir import (
    MAX_ELEMENTS,
    Average,
    Concat,
    Flatten,
    Graph,
    Input,
    Node,
    QConv2d,
    QCubaBNTT,
    QCubaLIF,
    QDense,
    QResonateFire,
    QSigmaDelta,
    QSumPool2d,
)
from ..ir.nodes import DECAY_UNITY, VTH_MANT_MAX, lava_weights
from ..simulation import RECORDABLE, RunResult, check_inputs

#: Layer types the reader understands (``dense_comp`` is recognized but not supported yet).
LAYER_TYPES = ("input", "flatten", "dense", "dense_rec", "conv", "pool", "average", "concat")
#: Layer types lava-dl 0.6's ``netx.hdf5.Network`` can build (the others raise in netx).
NETX_RUNNABLE = ("input", "conv", "dense", "dense_rec", "flatten")
#: netx's bias exponent for every CUBA neuron.
NETX_BIAS_EXP = 6
#: Range of Lava's int16 ``bias_mant`` (netx casts larger biases into it, wrapping them).
_BIAS_MANT_MIN, _BIAS_MANT_MAX = -(1 << 15), (1 << 15) - 1
#: Largest synaptic delay netx keeps (larger ones are clamped with a warning).
MAX_DELAY = 62
#: netx's neuron for a dense layer without a ``neuron`` group (a non-leaky integrator). netx
#: writes ``vThMant = 1 << 18 - 1``, which Python evaluates to ``2**17`` (one more than a
#: 17-bit mantissa; Lava accepts it and such a neuron never spikes). The IR keeps it exactly.
DEFAULT_DENSE_NEURON = {"iDecay": 0, "vDecay": 4096, "vThMant": VTH_MANT_MAX, "refDelay": 1}


# ============================================================================================
# netx's weight optimization (lava/lib/dl/netx/utils.py), reimplemented without Lava
# ============================================================================================


def optimize_weight_bits(weight: np.ndarray) -> tuple[np.ndarray, int, int, str]:
    """Fit integer weights to Loihi's synapse exactly as netx's ``optimize_weight_bits`` does.

    Returns ``(mantissa, num_weight_bits, weight_exponent, sign_mode)`` with
    ``mantissa * 2**weight_exponent == weight`` (after netx's clipping of mixed-sign weights to
    ``[-256, 254]``, which warns as netx does). ``sign_mode`` is ``"mixed"``, ``"excitatory"`` or
    ``"inhibitory"``. All-zero weights (where netx divides by zero) give exponent 0 and 8 bits.

    Raises :class:`QuantizationError` for non-integer weights and for single-sign weights
    outside ``[-256, 255]`` (netx would shift them by a negative amount).
    """
    weight = np.asarray(weight)
    if weight.size == 0:
        return weight.astype(np.int64), 8, 0, "excitatory"
    if weight.dtype.kind == "f" and not np.array_equal(weight, np.round(weight)):
        raise QuantizationError("weights must be integers")
    weight = weight.astype(np.int64)
    max_w, min_w = int(weight.max()), int(weight.min())
    if max_w == 0 and min_w == 0:
        return weight, 8, 0, "excitatory"
    if (max_w > 254 and min_w < 0) or (min_w < -256 and max_w > 0):
        warnings.warn(
            f"mixed-sign weights span [{min_w}, {max_w}]; clipped to [-256, 254] as netx does",
            stacklevel=2,
        )
        weight = np.clip(weight, -256, 254)
        max_w, min_w = int(weight.max()), int(weight.min())
    if max_w < 0:
        sign_mode, is_signed, scale = "inhibitory", 0, -256 / min_w
    elif min_w >= 0:
        sign_mode, is_signed, scale = "excitatory", 0, 255 / max_w
    else:
        sign_mode, is_signed = "mixed", 1
        pos_scale = 127 / max_w if max_w > 0 else math.inf
        scale = min(pos_scale, -128 / min_w)
    scale_bits = math.floor(math.log2(scale)) + is_signed
    if scale_bits < 0:
        raise QuantizationError(
            f"{sign_mode} weights span [{min_w}, {max_w}], outside the 8-bit synapse range"
        )
    n = 8
    while n > 0 and np.any(weight % (1 << n)):
        n -= 1
    n -= is_signed
    return weight << scale_bits, int(8 - scale_bits - n), int(-scale_bits), sign_mode


def _sign_mode(weight: np.ndarray) -> str:
    if weight.size and weight.max() < 0:
        return "inhibitory"
    if not weight.size or weight.min() >= 0:
        return "excitatory"
    return "mixed"


def lava_sign_mode(weight: np.ndarray) -> str:
    """The sign mode Lava's ``Dense`` gives itself (``weightutils.determine_sign_mode``): netx
    passes no sign mode, so this, not netx's, decides how the weights are clipped. It differs
    from netx's where the largest weight is 0 (netx: mixed; Lava: inhibitory)."""
    if not weight.size or weight.min() >= 0:
        return "excitatory"
    if weight.max() <= 0:
        return "inhibitory"
    return "mixed"


def netx_dense_weights(weight: np.ndarray, weight_rec: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray | None, int, int, str]:
    """What lava-dl netx and Lava's ``Dense`` make of a file's integer dense weights:
    ``(weight, weight_rec, num_weight_bits, weight_exp, sign_mode)`` with the mantissas Lava
    actually multiplies by (netx's ``optimize_weight_bits`` of the joint matrix, then Lava's
    clipping and truncation in the sign mode each ``Dense`` determines for itself).

    The sign mode returned is one under which hw_sim (one mode for both matrices) computes the
    same mantissas. Raises :class:`UnsupportedError` when no single mode does (a recurrent
    layer whose two matrices Lava clips differently).
    """
    parts = [np.asarray(weight)] + ([np.asarray(weight_rec)] if weight_rec is not None else [])
    joint = np.hstack(parts) if len(parts) > 1 else parts[0]
    mant, bits, exp, _ = optimize_weight_bits(joint)
    n_in = parts[0].shape[1]
    pieces = [mant[:, :n_in]] + ([mant[:, n_in:]] if weight_rec is not None else [])
    used = [lava_weights(m, bits, lava_sign_mode(m)) for m in pieces]
    for sign in dict.fromkeys(lava_sign_mode(m) for m in pieces):
        if all(np.array_equal(lava_weights(m, bits, sign), u)
               for m, u in zip(pieces, used)):
            return used[0], (used[1] if len(used) > 1 else None), bits, exp, sign
    raise UnsupportedError(
        "Lava's Dense clips the feed-forward and recurrent weights of this layer in different "
        "sign modes, which one IR synapse cannot express")


def _effective_dense(node: QDense, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Integer weights netx must store so that it rebuilds ``node`` exactly."""
    parts = [node.weight] + ([node.weight_rec] if node.weight_rec is not None else [])
    joint = lava_weights(np.hstack(parts), node.num_weight_bits, node.sign_mode)
    if node.weight_exp >= 0:
        eff = joint << node.weight_exp
    else:
        shift = -node.weight_exp
        if np.any(joint % (1 << shift)):
            raise QuantizationError(
                f"{name}: effective weights (mantissa * 2**{node.weight_exp}) are not integers; "
                "netx files hold integer weights"
            )
        eff = joint >> shift
    if eff.size and (eff.min() < -256 or eff.max() > 255 or (eff.min() < 0 and eff.max() > 254)):
        raise QuantizationError(
            f"{name}: effective weights span [{eff.min()}, {eff.max()}]; netx can only express "
            "[-256, 254] (mixed sign) or [-256, 255] (single sign)"
        )
    n_in = node.weight.shape[1]
    return eff[:, :n_in], (eff[:, n_in:] if node.weight_rec is not None else None)


# ============================================================================================
# Reading
# ============================================================================================


def _product(shape: Any) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


class _Group(CheckedGroup):
    """A netx HDF5 group; remembers the shape and dtype of every field it read."""

    def __init__(self, path: Path, group: h5py.Group, where: str) -> None:
        super().__init__(path, group, where)
        self.layout: dict[str, tuple[tuple[int, ...], str]] = {}

    def _dataset(self, key: str) -> h5py.Dataset:
        ds = super()._dataset(key)
        self.layout[key] = (tuple(ds.shape), ds.dtype.str)
        return ds

    def array(self, key: str, *, integral: bool = False) -> np.ndarray:
        """A finite numeric array (``integral``: every value a whole number)."""
        ds = self._dataset(key)
        if ds.dtype.kind not in "biuf":
            raise self.fail(f"field {key!r} holds {ds.dtype} values, expected numbers")
        value = np.asarray(ds[()])
        if value.dtype.kind == "f":
            if not np.all(np.isfinite(value)):
                raise self.fail(f"field {key!r} holds NaN or infinite values")
            if integral and not np.array_equal(value, np.round(value)):
                raise self.fail(
                    f"field {key!r} holds non-integer values (netx would truncate them)"
                )
            if integral:
                if value.size and np.abs(value).max() >= 2**62:
                    raise self.fail(f"field {key!r} holds values too large for an integer")
                value = value.astype(np.int64)
        return value

    def integer(self, key: str, default: int | None = None, lo: int | None = None,
                hi: int | None = None) -> int:
        """One whole number (a scalar or a one-element array) within ``[lo, hi]``."""
        if default is not None and key not in self.group:
            return default
        value = self.array(key, integral=True)
        if value.size != 1:
            raise self.fail(f"field {key!r} must be a single number, got shape {value.shape}")
        out = int(value.reshape(-1)[0])
        if (lo is not None and out < lo) or (hi is not None and out > hi):
            raise self.fail(f"{key}={out} outside [{lo}, {hi}]")
        return out

    def pair(self, key: str, default: int | tuple[int, int] | None = None) -> tuple[int, int]:
        """An ``(h, w)`` pair stored as a scalar or a two-element array."""
        if default is not None and key not in self.group:
            return default if isinstance(default, tuple) else (default, default)
        value = self.array(key, integral=True).reshape(-1)
        if value.size == 1:
            return (int(value[0]), int(value[0]))
        if value.size != 2:
            raise self.fail(f"field {key!r} must hold 1 or 2 numbers, got {value.size}")
        return (int(value[0]), int(value[1]))

    def string(self, key: str) -> str:
        """A short ASCII string stored as a scalar or a one-element array of bytes."""
        ds = self._dataset(key)
        if ds.dtype.kind not in "SOU" or _product(ds.shape) != 1:
            raise self.fail(f"field {key!r} must be one string, got {ds.dtype} {ds.shape}")
        value = np.asarray(ds[()]).reshape(-1)[0]
        if isinstance(value, bytes):
            try:
                value = value.decode("ascii")
            except UnicodeDecodeError:
                raise self.fail(f"field {key!r} is not ASCII") from None
        if not isinstance(value, str):
            raise self.fail(f"field {key!r} must be a string")
        return value

    def shape(self) -> tuple[int, ...]:
        """The layer's declared ``shape`` (file order ``(C, H, W)``), checked for size."""
        value = self.array("shape", integral=True).reshape(-1)
        if not 1 <= value.size <= 3 or value.min() <= 0:
            raise self.fail(f"shape {value.tolist()} must hold 1 to 3 positive sizes")
        if _product(value) > MAX_ELEMENTS:
            raise self.fail(f"shape {value.tolist()} has more than {MAX_ELEMENTS} elements")
        return tuple(int(v) for v in value)

    def extras(self, consumed: set[str], skip_groups: tuple[str, ...] = ()) -> dict[str, Any]:
        """Every dataset not in ``consumed`` (nested ones as ``"sub/key"``), values as read."""
        found: dict[str, Any] = {}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and name not in consumed:
                if name.split("/")[0] in skip_groups:
                    return
                ds = self._dataset(name)
                value = ds[()]
                found[name] = value.decode("ascii", "replace") if isinstance(value, bytes) \
                    else np.asarray(value)

        self.group.visititems(visit)
        return found


class _Reader:
    """Builds the IR graph layer by layer; ``outputs[i]`` is layer ``i``'s output node."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.nodes: list[tuple[str, Node]] = []
        self.edges: list[tuple[str, str]] = []
        self.outputs: dict[int, str] = {}
        self.declared: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.layers: list[dict[str, Any]] = []
        self.input_transform: dict[str, Any] = {}

    def add(self, name: str, node: Node, sources: list[str]) -> str:
        self.nodes.append((name, node))
        self.edges.extend((src, name) for src in sources)
        return name

    def previous(self, layer: _Group, index: int) -> str:
        if index - 1 not in self.outputs:
            raise layer.fail("must follow another layer (layer 0 must be the input layer)")
        return self.outputs[index - 1]


def _neuron_bias(layer: _Group, kind: str, declared: tuple[int, ...]) -> Any:
    """The layer's ``bias`` as IR neuron bias: scalar, per-neuron, or per-channel broadcast."""
    if not layer.has("bias"):
        return 0
    bias = layer.array("bias", integral=True)
    if bias.size == 1:
        return int(bias.reshape(-1)[0])
    if kind in ("dense", "dense_rec"):
        if bias.size != _product(declared):
            raise layer.fail(f"bias of {bias.size} values for {_product(declared)} neurons")
        return bias.reshape(-1)
    chw = declared if len(declared) == 3 else (1,) * (3 - len(declared)) + declared
    if bias.ndim == 1 and bias.size == chw[0]:
        return np.broadcast_to(bias.reshape(-1, 1, 1), chw)
    if tuple(bias.shape) == chw[::-1]:  # netx's neuron-wise bias in (W, H, C) order
        return bias.transpose(2, 1, 0)
    raise layer.fail(f"bias shape {bias.shape} fits neither {chw[0]} channels nor {chw}")


def _read_neuron(
    layer: _Group, kind: str, index: int, declared: tuple[int, ...]
) -> tuple[Node, dict[str, Any]]:
    """The layer's neuron node and what the writer needs to restore its group."""
    is_input = kind == "input"
    bias = 0 if is_input else _neuron_bias(layer, kind, declared)
    if not layer.has("neuron"):
        params = DEFAULT_DENSE_NEURON
        node = QCubaLIF(threshold=params["vThMant"], current_decay=params["iDecay"],
                        voltage_decay=params["vDecay"], bias=bias, bias_exp=NETX_BIAS_EXP,
                        refractory=params["refDelay"])
        return node, {"group": False}
    sub = layer.group["neuron"]
    if not isinstance(sub, h5py.Group):
        raise layer.fail("'neuron' must be a group")
    group = _Group(layer.path, sub, f"{layer.where} neuron")
    ntype = group.string("type")
    consumed = {"type"}
    if ntype in ("LOIHI", "CUBA"):
        node = QCubaLIF(
            threshold=group.integer("vThMant", lo=0, hi=VTH_MANT_MAX),
            current_decay=group.integer("iDecay", lo=0, hi=DECAY_UNITY),
            voltage_decay=group.integer("vDecay", lo=0, hi=DECAY_UNITY),
            bias=bias,
            bias_exp=NETX_BIAS_EXP,
            refractory=group.integer("refDelay", default=0, lo=0),
            num_message_bits=group.integer("messageBits", default=0, lo=0, hi=24),
        )
        consumed |= {"vThMant", "iDecay", "vDecay", "refDelay", "messageBits"}
    elif ntype == "SDNN":
        sigma = group.has("sigma_output")
        node = QSigmaDelta(
            kind="delta" if is_input else ("sigma" if sigma else "sigma_delta"),
            threshold=group.integer("vThMant", default=0 if sigma else None, lo=0),
            num_message_bits=group.integer("messageBits", default=16, lo=0, hi=24),
            bias=bias,
        )
        consumed |= {"vThMant", "messageBits"}
    elif "RF" in ntype:
        threshold = group.integer("vThMant", lo=0)
        params = []
        for key in sorted(set(group.group.keys()) - {"type", "vThMant"}):
            value = group.array(key)
            if value.size != 1:
                raise group.fail(f"field {key!r} must be a single number")
            params.append((key, value.reshape(-1)[0].item()))
        node = QResonateFire(kind=ntype, threshold=threshold, neuron_params=tuple(params),
                              bias=bias)
        consumed |= {"vThMant"} | {k for k, _ in params}
    else:
        raise UnsupportedError(
            f"{layer.path}: {layer.where}: neuron type {ntype!r} is not supported; "
            "supported: LOIHI, CUBA, SDNN, RF*"
        )
    extra = group.extras(consumed)
    return node, {"group": True, "type": ntype, "extra": extra, "layout": group.layout}


def _read_input(rd: _Reader, layer: _Group, index: int, meta: dict[str, Any]) -> str:
    declared = layer.shape()
    shape = declared if len(declared) != 2 else (1, *declared)
    # messageBits: neurodeploy's record of graded input events into the first synapse layer
    # (netx itself takes it as ``Network(input_message_bits=...)``); ignored with a neuron
    bits = layer.integer("messageBits", default=0, lo=0, hi=24)
    name = rd.add("input", Input(shape=shape, num_message_bits=0 if layer.has("neuron")
                                 else bits), [])
    for key in ("weight", "bias"):
        if layer.has(key):
            value = layer.array(key)
            if value.size != 1:
                raise layer.fail(f"input transform {key!r} must be a single number")
            rd.input_transform[key] = value.reshape(-1)[0].item()
    meta["consumed"] |= {"weight", "bias", "messageBits"}
    if layer.has("neuron"):
        neuron, meta["neuron"] = _read_neuron(layer, "input", index, declared)
        name = rd.add(f"input{index}", neuron, [name])
    rd.declared[name] = ("exact", shape)
    return name


def _read_weight(layer: _Group, key: str, out: int) -> np.ndarray:
    weight = layer.array(key, integral=True)
    if weight.ndim == 1:
        if weight.size % out:
            raise layer.fail(f"{key} of {weight.size} values does not split into {out} rows")
        weight = weight.reshape(out, -1)
    if weight.ndim != 2 or weight.shape[0] != out:
        raise layer.fail(f"{key} shape {weight.shape} inconsistent with {out} output neurons")
    return weight


def _read_delay(layer: _Group, shape: tuple[int, int]) -> np.ndarray | None:
    if not layer.has("delay"):
        return None
    delay = layer.array("delay", integral=True)
    if delay.size and delay.min() < 0:
        raise layer.fail(f"negative delay {delay.min()}")
    if delay.size and delay.max() > MAX_DELAY:
        warnings.warn(f"{layer.path}: {layer.where}: delays up to {delay.max()} clamped to "
                      f"{MAX_DELAY} as netx does", stacklevel=3)
        delay = np.clip(delay, 0, MAX_DELAY)
    out, n_in = shape
    if delay.size == 1:
        return np.full(shape, int(delay.reshape(-1)[0]))
    if delay.ndim == 1 and delay.size == out:
        return np.repeat(delay.reshape(-1, 1), n_in, axis=1)
    if delay.ndim == 1 and delay.size == n_in:
        return np.repeat(delay.reshape(1, -1), out, axis=0)
    if tuple(delay.shape) == shape:
        return delay
    raise layer.fail(f"delay shape {delay.shape} incompatible with weight shape {shape}")


def _read_dense(rd: _Reader, layer: _Group, index: int, meta: dict[str, Any]) -> str:
    kind = meta["type"]
    declared = layer.shape()
    out = _product(declared)
    weight = _read_weight(layer, "weight", out)
    rec = _read_weight(layer, "weight_rec", out) if kind == "dense_rec" else None
    if rec is not None and rec.shape != (out, out):
        raise layer.fail(f"weight_rec shape {rec.shape} must be ({out}, {out})")
    for key, want in (("outFeatures", out), ("inFeatures", weight.shape[1])):
        if layer.has(key) and layer.integer(key) != want:
            raise layer.fail(f"{key}={layer.integer(key)} but weight has shape {weight.shape}")
    try:
        mant, mant_rec, bits, exp, sign = netx_dense_weights(weight, rec)
    except QuantizationError as err:
        raise layer.fail(err.message) from None
    except UnsupportedError as err:
        raise UnsupportedError(f"{layer.path}: {layer.where}: {err.message}") from None
    delay = _read_delay(layer, weight.shape)
    syn = QDense(weight=mant, weight_exp=exp, num_weight_bits=bits, sign_mode=sign,
                 delay=delay, weight_rec=mant_rec)
    meta["consumed"] |= {"weight", "weight_rec", "delay", "bias", "inFeatures", "outFeatures"}
    return _add_synapse_layer(rd, layer, index, meta, kind, syn, declared, "size")



def _add_synapse_layer(
    rd: _Reader, layer: _Group, index: int, meta: dict[str, Any], kind: str, syn: Node,
    declared: tuple[int, ...], shape_check: str,
) -> str:
    """Add a netx synapse layer as ``<kind><i>_syn`` feeding its neuron ``<kind><i>``; return
    the neuron's name. ``shape_check`` is how the declared shape is compared later."""
    neuron, meta["neuron"] = _read_neuron(layer, kind, index, declared)
    syn_name = rd.add(f"{kind}{index}_syn", syn, [rd.previous(layer, index)])
    name = rd.add(f"{kind}{index}", neuron, [syn_name])
    rd.declared[name] = (shape_check, declared)
    return name

def _read_conv(rd: _Reader, layer: _Group, index: int, meta: dict[str, Any]) -> str:
    declared = layer.shape()
    weight = layer.array("weight", integral=True)
    if weight.ndim == 5 and weight.shape[4] == 1:
        weight = weight[..., 0]
    if weight.ndim != 4:
        raise layer.fail(f"conv weight must be (out, in/groups, kh, kw), got {weight.shape}")
    groups = layer.integer("groups", default=1, lo=1)
    checks = (("outChannels", weight.shape[0]), ("inChannels", weight.shape[1] * groups))
    for key, want in checks:
        if layer.has(key) and layer.integer(key) != want:
            raise layer.fail(f"{key}={layer.integer(key)} but weight has shape {weight.shape}")
    if layer.has("kernelSize") and layer.pair("kernelSize") != tuple(weight.shape[2:]):
        raise layer.fail(
            f"kernelSize={layer.pair('kernelSize')} but weight has shape {weight.shape}"
        )
    if len(declared) != 3 or declared[0] != weight.shape[0]:
        raise layer.fail(f"shape {declared} inconsistent with {weight.shape[0]} out channels")
    syn = QConv2d(
        weight=weight, stride=layer.pair("stride", 1), padding=layer.pair("padding", 0),
        dilation=layer.pair("dilation", 1), groups=groups, weight_exp=0, num_weight_bits=8,
        sign_mode=_sign_mode(weight),
    )
    meta["consumed"] |= {"weight", "stride", "padding", "dilation", "groups", "bias",
                         "inChannels", "outChannels", "kernelSize"}
    return _add_synapse_layer(rd, layer, index, meta, "conv", syn, declared, "exact")


def _read_pool(rd: _Reader, layer: _Group, index: int, meta: dict[str, Any]) -> str:
    declared = layer.shape()
    if len(declared) != 3:
        raise layer.fail(f"pool shape {declared} must be (C, H, W)")
    kernel = layer.pair("kernelSize")
    if layer.pair("dilation", 1) != (1, 1):
        raise UnsupportedError(f"{layer.path}: {layer.where}: dilated pooling is not supported")
    weight = layer.array("weight", integral=True) if layer.has("weight") else np.ones(1, int)
    if weight.size == 0 or np.any(weight != weight.reshape(-1)[0]):
        raise layer.fail("pool weight must hold one value repeated over the window")
    syn = QSumPool2d(kernel_size=kernel, stride=layer.pair("stride", kernel),
                     padding=layer.pair("padding", 0), weight=int(weight.reshape(-1)[0]))
    meta["consumed"] |= {"weight", "kernelSize", "stride", "padding", "dilation", "bias"}
    return _add_synapse_layer(rd, layer, index, meta, "pool", syn, declared, "exact")


def _read_flatten(rd: _Reader, layer: _Group, index: int, meta: dict[str, Any]) -> str:
    declared = layer.shape() if layer.has("shape") else None
    name = rd.add(f"flatten{index}", Flatten(), [rd.previous(layer, index)])
    if declared is not None:
        rd.declared[name] = ("size", declared)
    return name


def _read_average(rd: _Reader, layer: _Group, index: int, meta: dict[str, Any]) -> str:
    declared = layer.shape()
    name = rd.add(f"average{index}", Average(num_outputs=declared[0]),
                  [rd.previous(layer, index)])
    rd.declared[name] = ("size", declared)
    return name


def _read_concat(rd: _Reader, layer: _Group, index: int, meta: dict[str, Any]) -> str:
    """netx concat: the previous layer plus the listed non-sequential layers (channel axis).

    When the list names the previous layer itself, the list alone gives the order."""
    declared = layer.shape()
    ids = [int(v) for v in layer.array("layers", integral=True).reshape(-1)]
    bad = [i for i in ids if i not in rd.outputs]
    if bad:
        raise layer.fail(f"concat lists layers {bad}, which are not earlier layers")
    if index - 1 not in ids:
        ids = [index - 1, *ids]
    name = rd.add(f"concat{index}", Concat(axis=0), [rd.outputs[i] for i in ids])
    rd.declared[name] = ("size", declared)
    return name


def _read_dense_comp(rd: _Reader, layer: _Group, index: int, meta: dict[str, Any]) -> str:
    raise UnsupportedError(
        f"{layer.path}: layer {index} (dense_comp): complex dense layers are not supported yet"
    )


_READERS: dict[str, Callable[[_Reader, _Group, int, dict[str, Any]], str]] = {
    "input": _read_input,
    "flatten": _read_flatten,
    "dense": _read_dense,
    "dense_rec": _read_dense,
    "conv": _read_conv,
    "pool": _read_pool,
    "average": _read_average,
    "concat": _read_concat,
    "dense_comp": _read_dense_comp,
}


def _read_simulation(path: Path, root: h5py.File) -> dict[str, Any] | None:
    if "simulation" not in root:
        return None
    group = _Group(path, root["simulation"], "simulation")
    out = {}
    for key in group.group:
        value = group.array(key)
        out[key] = value.reshape(-1)[0].item() if value.size == 1 else value
    return out


def _check_declared_shapes(path: Path, graph: Graph, declared: dict[str, Any]) -> None:
    shapes = graph.shapes
    for name, (mode, want) in declared.items():
        got = shapes[name]
        if (mode == "exact" and tuple(got) != tuple(want)) or _product(got) != _product(want):
            raise BadInputFileError(
                path, f"{name}: declared shape {list(want)} but the layers compute {list(got)}"
            )


def _read_file(path: Path, root: h5py.File) -> Graph:
    if "layer" not in root or not isinstance(root["layer"], h5py.Group):
        raise BadInputFileError(path, "no 'layer' group: not a netx network file")
    layers = root["layer"]
    keys = sorted(layers.keys(), key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0))
    if not keys:
        raise BadInputFileError(path, "the 'layer' group is empty")
    if keys != [str(i) for i in range(len(keys))]:
        raise BadInputFileError(path, f"layers must be named 0..{len(keys) - 1}, got {keys}")
    rd = _Reader(path)
    for index in range(len(keys)):
        sub = layers[str(index)]
        if not isinstance(sub, h5py.Group):
            raise BadInputFileError(path, f"layer {index} is not a group")
        layer = _Group(path, sub, f"layer {index}")
        kind = layer.string("type")
        layer.where = f"layer {index} ({kind})"
        if kind not in _READERS:
            raise BadInputFileError(
                path, f"layer {index}: unknown layer type {kind!r}; supported: "
                + ", ".join(LAYER_TYPES)
            )
        if index == 0 and kind != "input":
            raise layer.fail("the first layer must be of type 'input'")
        meta: dict[str, Any] = {"index": index, "type": kind, "consumed": {"type", "shape"}}
        if layer.has("shape"):
            meta["shape"] = layer.array("shape", integral=True)
        rd.outputs[index] = _READERS[kind](rd, layer, index, meta)
        meta["node"] = rd.outputs[index]
        meta["extra"] = layer.extras(meta.pop("consumed"), skip_groups=("neuron",))
        meta["layout"] = layer.layout
        rd.layers.append(meta)
    metadata = {
        "layout": "netx",
        "source": str(path),
        "netx": {
            "simulation": _read_simulation(path, root),
            "input_transform": rd.input_transform,
            "layers": rd.layers,
        },
    }
    graph = Graph(dict(rd.nodes), tuple(rd.edges), metadata)
    try:
        graph.validate()
    except InvalidIRError as err:
        raise BadInputFileError(path, err.message) from None
    _check_declared_shapes(path, graph, rd.declared)
    return graph


def read_netx(path: str | Path) -> Graph:
    """Read a lava-dl netx HDF5 file into a validated fixed-point IR graph.

    Raises :class:`BadInputFileError` (one line, naming the file and problem) for missing,
    non-HDF5, truncated or malformed files and out-of-range values, and
    :class:`UnsupportedError` for layer or neuron types that are recognized but not supported.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputFileError(path, "no such file")
    try:
        root = h5py.File(path, "r")
    except OSError as err:
        raise BadInputFileError(path, f"not a readable HDF5 file ({err})") from None
    try:
        with root:
            return _read_file(path, root)
    except NeurodeployError:
        raise
    except (OSError, KeyError, RuntimeError) as err:  # corrupt data inside a valid header
        raise BadInputFileError(path, f"corrupt HDF5 file ({err})") from None


# ============================================================================================
# Writing
# ============================================================================================


def _put(group: h5py.Group, key: str, value: Any, layout: dict[str, Any]) -> None:
    """Write ``value``, restoring the dtype and shape the source file used when exact."""
    if isinstance(value, str):
        if key == "type" and layout.get(key, ((1,), ""))[0] == (1,):
            group.create_dataset(key, (1,), "S10", [value.encode("ascii")])
        else:
            group.create_dataset(key, data=value)
        return
    value = np.asarray(value)
    if key in layout:
        shape, dtype = layout[key]
        if _product(shape) == value.size:
            value = value.reshape(shape)
        if np.dtype(dtype).kind in "biuf":
            cast = value.astype(dtype)
            if np.array_equal(cast, value):
                value = cast
    group.create_dataset(key, data=value)


class _Layer:
    """One netx layer being assembled by the writer."""

    def __init__(self, kind: str, node: str, meta: dict[str, Any] | None) -> None:
        self.kind, self.node = kind, node
        self.meta = meta or {}
        self.data: dict[str, Any] = {}
        self.neuron: Node | None = None
        self.neuron_name = ""
        self.out_shape: tuple[int, ...] = ()
        self.first = node  # the layer's first IR node (its synapse for synapse layers)


def _neuron_fields(layer: _Layer) -> tuple[dict[str, Any] | None, Any]:
    """(neuron group datasets or None, layer bias or None) for the layer's neuron."""
    node, name = layer.neuron, layer.neuron_name
    meta = layer.meta.get("neuron") or {}
    bias = np.asarray(node.bias)
    fields: dict[str, Any]
    if isinstance(node, QCubaLIF):
        if node.bias_exp != NETX_BIAS_EXP and np.any(bias):
            # the same bias values with netx's exponent, when that is exact
            value = bias.astype(np.int64) << node.bias_exp
            if np.any(value % (1 << NETX_BIAS_EXP)):
                raise UnsupportedError(
                    f"{name}: netx fixes bias_exp at {NETX_BIAS_EXP} and bias·2**"
                    f"{node.bias_exp} is not a multiple of 2**{NETX_BIAS_EXP}; quantize with "
                    "lava_compatible=True (neurodeploy compile does)")
            bias = value >> NETX_BIAS_EXP
        if node.reset != "zero":
            raise UnsupportedError(f"{name}: netx neurons reset to zero, not by subtraction")
        fields = {"type": meta.get("type", "CUBA"), "vThMant": node.threshold,
                  "iDecay": node.current_decay, "vDecay": node.voltage_decay,
                  "refDelay": node.refractory}
        if node.num_message_bits or "messageBits" in meta.get("layout", {}):
            fields["messageBits"] = node.num_message_bits
        default = {k: fields[k] for k in DEFAULT_DENSE_NEURON}
        if not meta.get("group", True) and default == DEFAULT_DENSE_NEURON \
                and not node.num_message_bits:
            fields = None  # netx's own default neuron: omit the group, as the source did
    elif isinstance(node, QSigmaDelta):
        if (node.kind == "delta") != (layer.kind == "input"):
            raise UnsupportedError(
                f"{name}: netx makes input SDNN neurons 'delta' and others 'sigma'/'sigma_delta'"
            )
        fields = {"type": "SDNN", "vThMant": node.threshold}
        if node.kind == "sigma" and not node.threshold and "vThMant" not in meta.get(
                "layout", {}):
            del fields["vThMant"]
        if node.num_message_bits != 16 or "messageBits" in meta.get("layout", {}):
            fields["messageBits"] = node.num_message_bits
        if node.kind == "sigma" and "sigma_output" not in meta.get("extra", {}):
            fields["sigma_output"] = True
    elif isinstance(node, QResonateFire):
        fields = {"type": node.kind, "vThMant": node.threshold, **dict(node.neuron_params)}
    else:
        raise UnsupportedError(f"{name}: netx has no neuron type for {node.type_name}")
    if fields is not None:
        extra = dict(meta.get("extra", {}))
        if not (isinstance(node, QSigmaDelta) and node.kind == "sigma"):
            extra.pop("sigma_output", None)
        fields = {**extra, **fields}
    if layer.kind == "input":
        if np.any(bias):
            raise UnsupportedError(f"{name}: netx input neurons take no bias (their input is)")
        if isinstance(node, QCubaLIF) and node.bias_exp != NETX_BIAS_EXP:
            raise UnsupportedError(
                f"{name}: netx feeds an input neuron its sample as bias_mant with bias_exp "
                f"{NETX_BIAS_EXP}, but this one has bias_exp {node.bias_exp}; inputs would be "
                f"scaled by 2**{NETX_BIAS_EXP - node.bias_exp}")
        return fields, None
    if isinstance(node, QCubaLIF) and bias.size and (
            bias.min() < _BIAS_MANT_MIN or bias.max() > _BIAS_MANT_MAX):
        raise UnsupportedError(
            f"{name}: at netx's bias_exp {NETX_BIAS_EXP} the bias mantissas span "
            f"[{bias.min()}, {bias.max()}], beyond Lava's int16 bias_mant (netx would wrap "
            "them); quantize with smaller biases or keep model.ir.h5")
    if not np.any(bias) and "bias" not in layer.meta.get("layout", {}):
        return fields, None
    if layer.kind in ("dense", "dense_rec") or (bias.ndim == 0 and "bias" in layer.meta.get(
            "layout", {})):
        return fields, bias
    if bias.ndim == 0:  # netx broadcasts conv/pool biases per channel only
        return fields, np.full(layer.out_shape[0], int(bias))
    per_channel = bias[:, :1, :1]
    if np.array_equal(np.broadcast_to(per_channel, bias.shape), bias):
        return fields, per_channel.reshape(-1)
    return fields, bias.transpose(2, 1, 0)  # netx's neuron-wise bias is (W, H, C)


def _check_netx_dense(name: str, weight: np.ndarray, rec: np.ndarray | None) -> None:
    """Refuse integer dense weights that lava-dl netx + Lava's Dense would not run exactly."""
    if not np.any(weight) and (rec is None or not np.any(rec)):
        raise UnsupportedError(
            f"{name}: all weights are zero, and lava-dl netx cannot load such a dense layer "
            "(its optimize_weight_bits takes log2(255 / 0)); remove the layer or keep "
            "model.ir.h5")
    try:
        used, used_rec, _, exp, _ = netx_dense_weights(weight, rec)
    except UnsupportedError as err:
        raise UnsupportedError(f"{name}: {err.message}") from None
    ok = np.array_equal(used, weight.astype(np.int64) << -exp) and (
        rec is None or np.array_equal(used_rec, rec.astype(np.int64) << -exp))
    if not ok:
        raise UnsupportedError(
            f"{name}: lava-dl netx would not run these weights exactly: netx scales weights "
            "whose largest value is <= 0 and smallest is -2**k to the mantissa -256, which "
            "Lava's Dense (inhibitory sign mode) clips to -255; keep model.ir.h5 for this "
            "network or re-quantize the layer")


def _write_dense(layer: _Layer, node: QDense, in_shape: tuple[int, ...]) -> None:
    weight, rec = _effective_dense(node, layer.first)
    if rec is not None and node.delay is not None:
        raise UnsupportedError(
            f"{layer.first}: lava-dl netx builds a recurrent dense layer with delays without "
            "its weight exponent and with the feed-forward delays on the recurrent synapse; "
            "netx files cannot hold it (model.ir.h5 can)")
    _check_netx_dense(layer.first, weight, rec)
    layer.kind = "dense_rec" if rec is not None else "dense"
    layer.data.update(weight=weight, inFeatures=weight.shape[1], outFeatures=weight.shape[0])
    if rec is not None:
        layer.data["weight_rec"] = rec
    if node.delay is not None:
        delay = np.asarray(node.delay)
        if np.all(delay == delay[:, :1]):
            delay = delay[:, 0]
        elif np.all(delay == delay[:1, :]) and delay.shape[0] != delay.shape[1]:
            delay = delay[0, :]
        layer.data["delay"] = delay


def _write_conv(layer: _Layer, node: QConv2d, in_shape: tuple[int, ...]) -> None:
    if node.weight_exp < 0 and np.any(node.weight % (1 << -node.weight_exp)):
        raise QuantizationError(f"{layer.first}: conv weights * 2**{node.weight_exp} are not "
                                "integers; netx conv weights have no exponent")
    weight = node.weight.astype(np.int64) * 2**node.weight_exp if node.weight_exp >= 0 \
        else node.weight.astype(np.int64) >> -node.weight_exp
    if weight.size and (weight.min() < -256 or weight.max() > 255):
        raise QuantizationError(f"{layer.first}: conv weights exceed 8 bits")
    layer.data.update(
        weight=weight, inChannels=in_shape[0], outChannels=weight.shape[0],
        kernelSize=np.array(weight.shape[2:]), stride=np.array(node.stride),
        padding=np.array(node.padding), dilation=np.array(node.dilation), groups=node.groups,
    )


def _write_pool(layer: _Layer, node: QSumPool2d, in_shape: tuple[int, ...]) -> None:
    if node.weight_exp:
        raise UnsupportedError(f"{layer.first}: netx pool weights have no exponent")
    shape = layer.meta.get("layout", {}).get("weight", ((1, 1, *node.kernel_size), ""))[0]
    layer.data.update(
        weight=np.full(shape, node.weight), kernelSize=np.array(node.kernel_size),
        stride=np.array(node.stride), padding=np.array(node.padding), dilation=np.array([1, 1]),
    )


_SYNAPSE_WRITERS: dict[type, tuple[str, Callable[..., None]]] = {
    QDense: ("dense", _write_dense),
    QConv2d: ("conv", _write_conv),
    QSumPool2d: ("pool", _write_pool),
}
_NEURONS = (QCubaLIF, QSigmaDelta, QResonateFire)
_STRUCTURAL = {Flatten: "flatten", Average: "average", Concat: "concat"}


def _group_layers(graph: Graph) -> list[tuple[_Layer, list[str]]]:
    """Split the graph into netx layers: (layer, names of its IR nodes)."""
    by_node = {m["node"]: m for m in graph.metadata.get("netx", {}).get("layers", [])}
    order = graph.topo_order
    layers: list[tuple[_Layer, list[str]]] = []
    taken: set[str] = set()
    for name in order:
        if name in taken:
            continue
        node = graph.nodes[name]
        succ = graph.successors(name)
        nxt = graph.nodes[succ[0]] if len(succ) == 1 else None
        with_neuron = isinstance(nxt, _NEURONS) and len(graph.predecessors(succ[0])) == 1
        if isinstance(node, Input) or type(node) in _SYNAPSE_WRITERS:
            kind = "input" if isinstance(node, Input) else _SYNAPSE_WRITERS[type(node)][0]
            if not with_neuron and kind != "input":
                raise UnsupportedError(f"{name}: a netx {kind} layer needs a neuron after it")
            members = [name, succ[0]] if with_neuron else [name]
            out = members[-1]
            layer = _Layer(kind, out, by_node.get(out))
            layer.first = name
            if with_neuron:
                layer.neuron, layer.neuron_name = nxt, succ[0]
        elif type(node) in _STRUCTURAL:
            members = [name]
            layer = _Layer(_STRUCTURAL[type(node)], name, by_node.get(name))
        else:
            raise UnsupportedError(
                f"{name}: netx has no layer type for {node.type_name}; it writes Input, QDense, "
                "QConv2d, QSumPool2d (+ QCubaLIF/QSigmaDelta/QResonateFire), Flatten, Average, "
                "Concat"
            )
        taken.update(members)
        layers.append((layer, members))
    return layers


def _check_chain(graph: Graph, layers: list[tuple[_Layer, list[str]]]) -> dict[str, int]:
    """Every layer must read the previous one (a Concat may add earlier ones); returns the
    layer index of each layer's output node."""
    ids = {layer.node: i for i, (layer, _) in enumerate(layers)}
    layer_of = {m: i for i, (_, members) in enumerate(layers) for m in members}
    if len(graph.inputs) != 1 or layers[0][0].kind != "input":
        raise UnsupportedError("netx files need exactly one Input, as the first layer")
    for i, (layer, members) in enumerate(layers[1:], start=1):
        preds = graph.predecessors(members[0])
        prev = layers[i - 1][0].node
        if layer.kind == "concat":
            if prev not in preds or any(p not in ids for p in preds):
                raise UnsupportedError(
                    f"{members[0]}: a netx concat must read the layer just before it "
                    f"({prev}) plus earlier layer outputs"
                )
        elif preds != [prev]:
            raise UnsupportedError(
                f"{members[0]}: netx layers form a chain; it reads {preds}, not [{prev!r}]"
            )
    for i, (_, members) in enumerate(layers):
        for member in members:
            for succ in graph.successors(member):
                if layer_of[succ] in (i, i + 1) or isinstance(graph.nodes[succ], Concat):
                    continue
                raise UnsupportedError(
                    f"{member}: feeds {succ}, which is not the next layer (netx layers form "
                    "a chain except through concat)"
                )
    return ids


def _layer_datasets(graph: Graph, layer: _Layer, members: list[str], index: int,
                    ids: dict[str, int]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    shapes = graph.shapes
    first = graph.nodes[members[0]]
    in_shape = tuple(shapes[graph.predecessors(members[0])[0]]) if graph.predecessors(
        members[0]) else ()
    out_shape = layer.out_shape = tuple(shapes[layer.node])
    file_shape = out_shape
    raw = layer.meta.get("shape")
    if raw is not None and _product(raw) == _product(out_shape):
        file_shape = tuple(int(v) for v in np.asarray(raw).reshape(-1))
    if type(first) in _SYNAPSE_WRITERS:
        _SYNAPSE_WRITERS[type(first)][1](layer, first, in_shape)
    if layer.kind == "concat":
        preds = [ids[p] for p in graph.predecessors(members[0])]
        layer.data["layers"] = np.array(preds[1:] if preds[0] == index - 1 else preds)
    layer.data["shape"] = np.array(file_shape)
    neuron_fields = None
    if layer.neuron is not None:
        neuron_fields, bias = _neuron_fields(layer)
        if bias is not None:
            layer.data["bias"] = bias
    data = {"type": layer.kind, **dict(layer.meta.get("extra", {})), **layer.data}
    keep = set(layer.meta.get("layout", {})) | {"type", "shape", "weight", "weight_rec",
                                                 "delay", "bias", "layers", "stride",
                                                 "padding", "dilation", "groups", "kernelSize"}
    if layer.meta:  # restore exactly the source's set of descriptive fields
        data = {k: v for k, v in data.items() if k in keep or k in layer.meta.get("extra", {})}
    return data, neuron_fields


def _write_file(graph: Graph, handle: h5py.File) -> None:
    layers = _group_layers(graph)
    ids = _check_chain(graph, layers)
    netx_meta = graph.metadata.get("netx", {})
    group = handle.create_group("layer")
    for index, (layer, members) in enumerate(layers):
        data, neuron = _layer_datasets(graph, layer, members, index, ids)
        sub = group.create_group(str(index))
        layout = layer.meta.get("layout", {})
        if layer.kind == "input":
            for key, value in netx_meta.get("input_transform", {}).items():
                data[key] = value
            bits = graph.nodes[members[0]].num_message_bits
            if layer.neuron is None and bits:
                data["messageBits"] = bits  # graded input: Network(input_message_bits=bits)
        for key, value in data.items():
            _put(sub, key, value, layout)
        if neuron is not None:
            nsub = sub.create_group("neuron")
            nlayout = layer.meta.get("neuron", {}).get("layout", {})
            for key, value in neuron.items():
                _put(nsub, key, value, {k: v for k, v in nlayout.items() if k != "type"})
    simulation = netx_meta.get("simulation")
    if simulation:
        sim = handle.create_group("simulation")
        for key, value in simulation.items():
            sim.create_dataset(key, data=value)


def write_netx(graph: Graph, path: str | Path) -> None:
    """Write a fixed-point IR graph as a lava-dl netx HDF5 file that netx rebuilds exactly: run
    in ``netx.hdf5.Network`` (:func:`run_netx`) it gives hw_sim's spikes of ``graph``.

    Raises :class:`UnsupportedError` for nodes netx has no layer type for (``QCubaBNTT``
    included: a per-step schedule is no netx neuron), for graphs that are not a chain (except
    through ``Concat``) and for what netx would run differently: soft reset, all-zero dense
    layers (netx cannot load them), dense weights Lava's ``Dense`` would clip in its own sign
    mode, biases beyond Lava's int16 ``bias_mant`` at ``bias_exp = 6``, recurrent dense layers
    with delays and input neurons with ``bias_exp != 6``; :class:`QuantizationError` for
    weights netx cannot express exactly. Nothing is left at ``path`` on failure.
    """
    path = Path(path)
    graph.validate()
    bntt = [name for name, node in graph.nodes.items() if isinstance(node, QCubaBNTT)]
    if bntt:
        raise UnsupportedError(
            f"netx cannot hold the per-step gain/bias neurons (QCubaBNTT) of {', '.join(bntt)}: "
            "lava-dl has no such neuron; keep the IR file (model.ir.h5, runnable on hw_sim and "
            "the Lava backend) or fold BNTT into the synapses (--bntt fold) for a netx file")
    tmp = path.with_name(path.name + ".partial")
    try:
        with h5py.File(tmp, "w") as handle:
            _write_file(graph, handle)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ============================================================================================
# Running a file in lava-dl's own netx
# ============================================================================================


def netx_input_mode(graph: Graph) -> str:
    """How a netx network takes its input: ``"bias"`` when the input layer has a neuron (netx's
    ``Input`` block leaves ``Network.inp`` unconnected: the sample is that neuron's
    ``bias_mant``), else ``"spikes"`` (events into ``Network.inp``, which is the first synapse
    layer's input)."""
    (name,) = graph.inputs
    succ = graph.successors(name)
    return "bias" if succ and all(graph.nodes[s].is_neuron for s in succ) else "spikes"


def run_netx(path: str | Path, inputs: np.ndarray, *, steps: int,
             reset_interval: int | None = None, reset_offset: int = 0,
             names: list[str] | None = None, record: tuple[str, ...] = ("s",)) -> RunResult:
    """Run a netx file in lava-dl's own ``lava.lib.dl.netx.hdf5.Network`` on Lava's bit-accurate
    models (``Loihi2SimCfg(select_tag="fixed_pt")``), one network per sample, recording every
    block.

    The run follows :mod:`neurodeploy.simulation`'s conventions, so its result compares element
    for element with hw_sim's run of the graph the file was written from (same ``steps``,
    ``reset_interval`` and ``reset_offset``), with no time shift:

    * ``inputs``, when the input layer has no neuron: ``(B, *input_shape, T)`` events
      (``T >= steps``), sent by a ``RingBuffer`` into ``Network.inp`` (the first synapse
      layer's input) in Lava's ``(W, H, C)`` order, or flattened in ``(C, H, W)`` order when
      netx's first block is dense. The network is built with ``input_message_bits`` = the
      file's input ``messageBits`` (0: any non-zero event is one spike, as in hw_sim).
    * ``inputs``, when the input layer has a neuron: ``(B, *input_shape)`` bias mantissas, set
      as that neuron's ``bias_mant`` (netx's ``Input`` block leaves ``Network.inp`` unconnected
      and applies no input transform).
    * Timing: netx adds Lava's one step per synapse layer exactly as hw_sim's pipeline depth
      does, and the ``RingBuffer`` delivers step ``t``'s events in step ``t``.
    * Reset: ``reset_offset`` is hw_sim's (a layer at pipeline depth ``d`` resets when
      ``tau % reset_interval == (reset_offset + 1 + d) % reset_interval``). netx counts blocks
      instead (block ``k`` at ``netx_offset + 1 + k``), so it gets ``netx_offset =
      reset_offset + 1`` when the input layer has no neuron (its first block is at depth 1),
      else ``reset_offset``.

    ``record``: of ``"s"`` (always recorded), ``"u"``, ``"v"``, for every layer.

    Returns a :class:`~neurodeploy.simulation.RunResult` (``backend="netx"``) with
    ``"<name>.<q>"`` traces ``(B, *shape, steps)`` for every neuron layer, named ``names`` (in
    layer order) or as :func:`read_netx` names them.

    Raises:
        MissingExtraError: Lava or lava-dl is not installed.
        UnsupportedError: the file holds layers netx cannot run (pool, average, concat, ...)
            or bias inputs outside Lava's int16 ``bias_mant``.
        NeurodeployError: bad inputs, steps, names, record or reset options.
    """
    import time

    from ..backends.lava import fixed_pt_run, load_lava

    path = Path(path)
    graph = read_netx(path)
    mode = netx_input_mode(graph)
    arr = check_inputs(graph, inputs, steps, mode)
    if reset_interval is not None and int(reset_interval) < 1:
        raise NeurodeployError(f"reset_interval must be at least 1, got {reset_interval}")
    quantities = sorted(set(record) | {"s"})
    if set(quantities) - set(RECORDABLE):
        raise NeurodeployError(f"cannot record {sorted(set(quantities) - set(RECORDABLE))}; "
                               f"choose from {', '.join(RECORDABLE)}")
    neurons = graph.neurons
    names = list(neurons if names is None else names)
    if len(names) != len(neurons):
        raise NeurodeployError(f"{len(names)} names given for the {len(neurons)} neuron layers "
                               f"of {path}")
    bad = [f"layer {m['index']} ({m['type']})" for m in graph.metadata["netx"]["layers"]
           if m["type"] not in NETX_RUNNABLE]
    if bad:
        raise UnsupportedError(f"{path}: lava-dl netx cannot run {', '.join(bad)} (it runs "
                               f"{', '.join(NETX_RUNNABLE)} layers); legalize the graph "
                               "(neurodeploy.passes.legalize) before writing it")
    if mode == "bias" and arr.size and (arr.min() < _BIAS_MANT_MIN or arr.max() > _BIAS_MANT_MAX):
        raise UnsupportedError(f"bias-mode inputs span [{arr.min()}, {arr.max()}], outside "
                               "Lava's int16 bias_mant")
    lava = load_lava()
    try:
        from lava.lib.dl.netx import hdf5
    except ImportError as err:
        raise MissingExtraError(f"running a netx file needs lava-dl 0.6 ({err})") from err
    (in_name,) = graph.inputs
    spatial = len(graph.shapes[in_name])
    kwargs: dict[str, Any] = {"input_message_bits": graph.nodes[in_name].num_message_bits}
    if reset_interval is not None:
        kwargs.update(reset_interval=int(reset_interval),
                      reset_offset=int(reset_offset) + (1 if mode == "spikes" else 0))
    run_cfg, condition = fixed_pt_run(lava, steps)
    per_sample: list[dict[str, np.ndarray]] = []
    sim_time = 0.0
    for sample in arr:
        net = hdf5.Network(net_config=str(path), **kwargs)
        if len(net.layers) != len(neurons):
            raise UnsupportedError(f"{path}: netx built {len(net.layers)} blocks for the "
                                   f"{len(neurons)} neuron layers the file describes")
        reverse = (*range(spatial - 1, -1, -1),)
        if mode == "spikes":
            data = sample[..., :steps]
            data = data.reshape(-1, steps) if len(net.inp.shape) == 1 \
                else data.transpose(*reverse, spatial)
            source = lava.source.RingBuffer(data=np.ascontiguousarray(data, dtype=np.int32))
            source.s_out.connect(net.inp)
        else:
            net.layers[0].neuron.bias_mant.init = sample.transpose(reverse).astype(np.int32)
        sinks, monitors = [], []
        for block in net.layers:
            sink = lava.sink.RingBuffer(shape=block.out.shape, buffer=steps)
            block.neuron.s_out.connect(sink.a_in)
            sinks.append(sink)
            for q in quantities:
                if q != "s":
                    monitor = lava.monitor.Monitor()
                    monitor.probe(getattr(block.neuron, q), steps)
                    monitors.append((block, q, monitor))
        start = time.perf_counter()
        try:
            net.run(condition=condition, run_cfg=run_cfg)
            sim_time += time.perf_counter() - start
            got: dict[str, np.ndarray] = {}
            for name, neuron, sink in zip(names, neurons, sinks):
                data = np.asarray(sink.data.get())  # (*lava_shape, steps)
                n = data.ndim - 1
                got[f"{name}.s"] = data.transpose(*range(n - 1, -1, -1), n).reshape(
                    *graph.shapes[neuron], steps)
            for block, q, monitor in monitors:
                k = net.layers.index(block)
                data = np.asarray(monitor.get_data()[block.neuron.name][q])  # (steps, *lava)
                n = data.ndim - 1
                got[f"{names[k]}.{q}"] = data.transpose(*range(n, 0, -1), 0).reshape(
                    *graph.shapes[neurons[k]], steps)
            per_sample.append(got)
        finally:
            net.stop()
    traces = {key: np.stack([s[key] for s in per_sample]) for key in per_sample[0]}
    traces = {k: v.astype(np.int8 if k.endswith(".s") else np.int32) for k, v in traces.items()}
    return RunResult(
        backend="netx", steps=steps, samples=len(arr), layers=names, traces=traces,
        spike_counts={n: traces[f"{n}.s"].reshape(len(arr), -1).sum(axis=1).astype(np.int64)
                      for n in names},
        sim_time_s=sim_time)
