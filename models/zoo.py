"""Model zoo: builds the seeds' SNN architectures (and their ANN twins) from a JSON-able config.

A **config** is a plain dict (only str/int/float/bool/None and lists of them) that says how to
rebuild a model; :func:`default_config` fills every key, :func:`validate_config` checks one and
:func:`build_model` turns it into a module. Checkpoints store the config beside the weights
(``models/checkpoint.py``).

``kind="snn"`` gives a :class:`~neurodeploy.models.layers.SpikingNet` whose ``body`` is one time
step: ``Conv2d(bias=False)`` → optional ``BNTT`` → ``LIF``, ``AvgPool2d(2)`` on spikes, then
``Flatten``, the hidden fc layers (``Linear`` → optional ``BNTT`` → ``LIF``) and a final
``Linear(bias=False)`` → ``Accumulator``. No biases anywhere, as in the seeds' code.
``kind="ann"`` gives the **ANN twin** (:class:`ANNNet`): the same topology and the same names for
every conv/linear weight, ``ReLU`` in place of ``LIF``, ``BatchNorm`` without β in place of
``BNTT`` (only when ``bntt=True``), no accumulator (the last ``Linear`` gives the logits).

Every stateful layer is a :class:`~neurodeploy.models.layers.StatefulModule` (see
:data:`LEAF_TYPES`), so ``torch.fx`` can trace a body with those as leaf modules without
unrolling time. Module names (``conv1``, ``bn1``, ``lif1``, ``pool1``, ``flatten``, ``fc1``,
``bn_fc1``, ``lif_fc1``, ``out``, ``acc``; ``block1.conv1`` … in the ResNet) become IR layer
names.

Layer lists (3×3 convs, stride 1, padding 1; ``"P"`` = ``AvgPool2d(2)``, ``"G"`` = average over
the remaining map, ``"D"`` = dropout site), before ``width`` scaling:

- ``mlp``: hidden ``[256]``.
- ``cnn``: ``[16, P, 32, P]``, hidden ``[128]`` (small enough to train on MNIST on a CPU).
- ``vgg5`` (Rathi/Sharmin ``cfg['VGG5']``): ``[64, P, 128, D, 128, P]``, hidden
  ``[1024, 1024]``.
- ``vgg9`` (BNTT ``SNN_VGG9_BNTT``, reference/algorithms.md §4.4):
  ``[64, 64, P, 128, 128, P, 256, 256, 256, P]``, hidden ``[1024]``.
- ``vgg11`` (BNTT/SAM ``SNN_VGG11_BNTT``): ``[64, P, 128, P, 256, 256, P, 512, 512, P, 512, 512,
  G]``, hidden ``[4096]`` (the final ``G`` is the seeds' ``AdaptiveAvgPool2d(1)``).
- ``resnet``: stem conv ``[16]``, stages ``[16, 32, 64]`` of ``blocks`` basic blocks each, a
  pool between stages and a global pool at the end; each block adds its input spikes to its
  output spikes (``x + y``, values 0…2), with a 1×1 conv → norm → LIF shortcut where the
  channel count changes.

Pools floor odd sizes, as ``nn.AvgPool2d`` does (28×28 through three pools gives 3×3).
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import NeurodeployError
from .layers import (
    BNTT,
    ENCODERS,
    LIF,
    RESETS,
    SURROGATES,
    UPDATE_ORDERS,
    Accumulator,
    SpikingNet,
    StatefulModule,
)

MODELS = ("mlp", "cnn", "vgg5", "vgg9", "vgg11", "resnet")
KINDS = ("snn", "ann")
ENCODER_NAMES = tuple(ENCODERS)
#: Module types a ``torch.fx`` tracer must keep as leaves (they carry state across steps).
LEAF_TYPES: tuple[type[nn.Module], ...] = (StatefulModule,)
#: Sanity limits for configs read from untrusted checkpoint files.
MAX_TIMESTEPS = 10_000
MAX_LAYERS = 64
MAX_WIDTH = 65_536

_POOL, _GLOBAL, _DROP = "P", "G", "D"

#: Per-architecture defaults: base conv list, hidden fc sizes, default T (and ResNet stages).
_ARCHS: dict[str, dict[str, Any]] = {
    "mlp": {"features": [], "hidden": [256], "timesteps": 8},
    "cnn": {"features": [16, _POOL, 32, _POOL], "hidden": [128], "timesteps": 8},
    "vgg5": {"features": [64, _POOL, 128, _DROP, 128, _POOL], "hidden": [1024, 1024],
             "timesteps": 20},
    "vgg9": {"features": [64, 64, _POOL, 128, 128, _POOL, 256, 256, 256, _POOL],
             "hidden": [1024], "timesteps": 25},
    "vgg11": {"features": [64, _POOL, 128, _POOL, 256, 256, _POOL, 512, 512, _POOL, 512, 512,
                           _GLOBAL],
              "hidden": [4096], "timesteps": 30},
    "resnet": {"features": [16], "stages": [16, 32, 64], "blocks": 1, "hidden": [],
               "timesteps": 8},
}

#: Keys every config has (ResNet configs also have ``stages`` and ``blocks``).
_COMMON_KEYS = (
    "arch", "kind", "in_shape", "num_classes", "timesteps", "bntt", "leak", "threshold",
    "reset", "order", "surrogate", "surrogate_scale", "learn_leak", "learn_threshold",
    "encoder", "poisson_rescale", "width", "features", "hidden", "dropout", "init_gain",
)
_RESNET_KEYS = ("stages", "blocks")
_OVERRIDABLE = ("surrogate", "surrogate_scale", "learn_leak", "learn_threshold",
                "poisson_rescale", "features", "hidden", "dropout", "init_gain",
                *_RESNET_KEYS)


class ModelConfigError(NeurodeployError, ValueError):
    """A model config (or a pair of supposed twin models) is invalid; names the key."""


# ============================================================================================
# Configs
# ============================================================================================


def default_config(name: str, *, in_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10,
                   timesteps: int | None = None, kind: str = "snn", bntt: bool = False,
                   leak: float = 0.95, threshold: float = 1.0, reset: str = "subtract",
                   order: str = "integrate_fire", encoder: str = "direct",
                   width: float | None = None, **overrides: Any) -> dict[str, Any]:
    """A complete, validated config for architecture ``name`` (one of :data:`MODELS`).

    ``in_shape`` is one sample, ``(C, H, W)`` (or ``(N,)`` for ``mlp``). ``timesteps`` T
    defaults to the architecture's (8 for mlp/cnn/resnet, 20 for vgg5, 25 for vgg9, 30 for
    vgg11, the seeds' values). ``leak`` λ (per step, dimensionless) and ``threshold`` θ are the
    LIF's; ``reset``/``order`` as in :class:`~neurodeploy.models.layers.LIF`. ``encoder`` is
    ``"direct"`` (analog current every step) or ``"poisson"`` (signed rate code, rescale
    ``poisson_rescale``). ``width`` scales every conv channel count and hidden fc size
    (``None`` = 1.0 = paper widths). ``overrides`` may set ``features``, ``hidden``,
    ``dropout`` (probability, one mask per sequence), ``surrogate``, ``surrogate_scale``,
    ``learn_leak``, ``learn_threshold``, ``init_gain`` (Xavier-uniform gain, 2.0 as in BNTT;
    0 keeps PyTorch's default init) and, for ``resnet``, ``stages`` and ``blocks``.

    Raises :class:`ModelConfigError` (a ``ValueError``) naming the bad key.
    """
    if name not in _ARCHS:
        raise ModelConfigError(f"unknown model {name!r}", hint=f"choose one of {MODELS}")
    arch = _ARCHS[name]
    allowed = [k for k in _OVERRIDABLE if name == "resnet" or k not in _RESNET_KEYS]
    for key in overrides:
        if key not in allowed:
            raise ModelConfigError(f"unknown config key {key!r} for {name}",
                                   hint=f"keys that can be overridden: {', '.join(allowed)}")
    config: dict[str, Any] = {
        "arch": name, "kind": kind, "in_shape": in_shape, "num_classes": num_classes,
        "timesteps": arch["timesteps"] if timesteps is None else timesteps, "bntt": bntt,
        "leak": leak, "threshold": threshold, "reset": reset, "order": order,
        "surrogate": "linear", "surrogate_scale": 0.3, "learn_leak": False,
        "learn_threshold": False, "encoder": encoder, "poisson_rescale": 1.0,
        "width": 1.0 if width is None else width, "features": copy.deepcopy(arch["features"]),
        "hidden": list(arch["hidden"]), "dropout": 0.0, "init_gain": 2.0,
    }
    if name == "resnet":
        config["stages"] = list(arch["stages"])
        config["blocks"] = arch["blocks"]
    config.update(copy.deepcopy(overrides))
    return validate_config(config)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (values may come from untrusted files)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _bad(key: str, problem: str, hint: str | None = None) -> ModelConfigError:
    return ModelConfigError(f"config key {key!r}: {problem}", hint=hint)


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check every key of ``config`` and return a normalized copy (lists, floats, ints).

    Also checks that the input is large enough for the architecture's pools. Raises
    :class:`ModelConfigError` naming the first bad key.
    """
    if not isinstance(config, Mapping):
        raise ModelConfigError(f"a model config must be a dict, got {type(config).__name__}")
    arch = config.get("arch")
    if not isinstance(arch, str) or arch not in _ARCHS:
        raise _bad("arch", f"unknown model {_short(arch)}", f"choose one of {MODELS}")
    keys = _COMMON_KEYS + (_RESNET_KEYS if arch == "resnet" else ())
    for key in keys:
        if key not in config:
            raise _bad(key, "missing", "build configs with default_config(...)")
    for key in config:
        if key not in keys:
            raise _bad(_short(key, 40).strip("'"), f"unknown key for {arch}",
                       f"known keys: {', '.join(keys)}")
    out: dict[str, Any] = {"arch": arch}

    def choice(key: str, options: tuple[str, ...]) -> None:
        if not isinstance(config[key], str) or config[key] not in options:
            raise _bad(key, f"{_short(config[key])} is not one of {options}")
        out[key] = config[key]

    def number(key: str, low: float, high: float, *, low_open: bool = False,
               high_open: bool = False) -> None:
        value = config[key]
        ok = _is_number(value) and (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
        if not ok:
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            raise _bad(key, f"{_short(value)} must be a number in {lo}{low:g}, {high:g}{hi}")
        out[key] = float(value)

    def integer(key: str, low: int, high: int) -> None:
        value = config[key]
        if not _is_int(value) or not low <= value <= high:
            raise _bad(key, f"{_short(value)} must be an integer in [{low}, {high}]")
        out[key] = int(value)

    def flag(key: str) -> None:
        if not isinstance(config[key], bool):
            raise _bad(key, f"{_short(config[key])} must be true or false")
        out[key] = config[key]

    def sizes(key: str, *, markers: tuple[str, ...] = (), allow_empty: bool = True) -> None:
        value = config[key]
        if not isinstance(value, (list, tuple)) or len(value) > MAX_LAYERS or (
                not allow_empty and not value):
            raise _bad(key, f"{_short(value)} must be a list of at most {MAX_LAYERS} sizes"
                       + ("" if allow_empty else " (not empty)"))
        for item in value:
            if not (_is_int(item) and 1 <= item <= MAX_WIDTH) and item not in markers:
                what = f"integers in [1, {MAX_WIDTH}]" + (
                    f" or markers {markers}" if markers else "")
                raise _bad(key, f"item {_short(item)} is not allowed; items are {what}")
        out[key] = list(value)

    choice("kind", KINDS)
    shape = config["in_shape"]
    if (not isinstance(shape, (list, tuple)) or len(shape) not in (1, 3)
            or not all(_is_int(d) and 1 <= d <= MAX_WIDTH for d in shape)):
        raise _bad("in_shape", f"{_short(shape)} must be (C, H, W) or (N,) with positive sizes")
    if arch != "mlp" and len(shape) != 3:
        raise _bad("in_shape", f"{arch} needs an image shape (C, H, W), got {list(shape)}")
    out["in_shape"] = [int(d) for d in shape]
    integer("num_classes", 1, MAX_WIDTH)
    integer("timesteps", 1, MAX_TIMESTEPS)
    flag("bntt")
    number("leak", 0.0, 1.0)
    number("threshold", 0.0, 1e9, low_open=True)
    choice("reset", RESETS)
    choice("order", UPDATE_ORDERS)
    choice("surrogate", SURROGATES)
    number("surrogate_scale", 0.0, 1e9, low_open=True)
    flag("learn_leak")
    flag("learn_threshold")
    choice("encoder", ENCODER_NAMES)
    number("poisson_rescale", 0.0, 1e9, low_open=True)
    number("width", 0.0, 64.0, low_open=True)
    sizes("features", markers=() if arch in ("mlp", "resnet") else (_POOL, _GLOBAL, _DROP),
          allow_empty=arch == "mlp")
    sizes("hidden")
    number("dropout", 0.0, 1.0, high_open=True)
    number("init_gain", 0.0, 1e3)
    if arch == "resnet":
        sizes("stages", allow_empty=False)
        integer("blocks", 1, 16)
        if len(out["features"]) != 1:
            raise _bad("features", f"resnet takes one stem conv width, got {out['features']}")
    if arch == "mlp" and out["features"]:
        raise _bad("features", f"mlp has no conv layers, got {out['features']}",
                   "use arch 'cnn' or a vgg for conv layers")
    _plan(out)  # checks that the input survives the pools
    return out


def twin_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config of the twin: ``kind`` flipped between ``"snn"`` and ``"ann"``, all else kept."""
    twin = validate_config(config)
    twin["kind"] = "ann" if twin["kind"] == "snn" else "snn"
    return twin


# ============================================================================================
# Layer plan (shared by build_model, describe and the parameter count)
# ============================================================================================


def _scaled(size: int, width: float) -> int:
    return max(1, int(round(size * width)))


def _plan(config: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Ops of the network in order: ``("conv", (cin, cout, k))``, ``("pool", (kh, kw, global))``,
    ``("drop", None)``, ``("block", (cin, cout))``, ``("flatten", n)``, ``("fc", (n_in, n_out))``,
    ``("out", (n_in, classes))``. Raises :class:`ModelConfigError` when a pool gets an empty
    map."""
    width = config["width"]
    shape = list(config["in_shape"])
    ops: list[tuple[str, Any]] = []

    def pool(kh: int, kw: int, label: str, is_global: bool = False) -> None:
        c, h, w = shape
        if h < kh or w < kw or h < 1:
            need = 2 ** (1 + sum(1 for op, _ in ops if op == "pool"))
            raise _bad("in_shape", f"{h}x{w} maps are too small for {label} of "
                       f"{config['arch']}", f"use inputs of at least {need}x{need}")
        ops.append(("pool", (kh, kw, is_global)))
        shape[:] = [c, h // kh, w // kw]

    if config["arch"] == "resnet":
        stem = _scaled(config["features"][0], width)
        ops.append(("conv", (shape[0], stem, 3)))
        shape[0] = stem
        for i, channels in enumerate(config["stages"]):
            if i > 0:
                pool(2, 2, f"the pool before stage {i + 1}")
            for _ in range(config["blocks"]):
                cout = _scaled(channels, width)
                ops.append(("block", (shape[0], cout)))
                shape[0] = cout
        pool(shape[1], shape[2], "the global pool", True)
    else:
        for item in config["features"]:
            if item == _POOL:
                pool(2, 2, "an AvgPool2d(2)")
            elif item == _GLOBAL:
                pool(shape[1], shape[2], "the global pool", True)
            elif item == _DROP:
                ops.append(("drop", None))
            else:
                cout = _scaled(item, width)
                ops.append(("conv", (shape[0], cout, 3)))
                shape[0] = cout
    n = math.prod(shape)
    ops.append(("flatten", n))
    for size in config["hidden"]:
        ops.append(("fc", (n, _scaled(size, width))))
        n = _scaled(size, width)
    ops.append(("out", (n, config["num_classes"])))
    return ops


def count_parameters(config: Mapping[str, Any]) -> int:
    """Number of trainable parameters of ``build_model(config)`` (weights, γ of BNTT/BN, and
    learnable λ/θ), computed from the layer plan without building the model."""
    config = validate_config(config)
    steps = config["timesteps"] if config["kind"] == "snn" else 1
    norm = steps if config["bntt"] else 0
    per_lif = (config["kind"] == "snn") * (config["learn_leak"] + config["learn_threshold"])
    total = 0

    def layer(weights: int, channels: int) -> int:
        return weights + norm * channels + per_lif

    for op, arg in _plan(config):
        if op == "conv":
            cin, cout, k = arg
            total += layer(cin * cout * k * k, cout)
        elif op == "block":
            cin, cout = arg
            total += layer(9 * cin * cout, cout) + layer(9 * cout * cout, cout)
            total += layer(cin * cout, cout) if cin != cout else 0
        elif op == "fc":
            total += layer(arg[0] * arg[1], arg[1])
        elif op == "out":
            total += arg[0] * arg[1]
    return total


def describe(config: Mapping[str, Any]) -> str:
    """One line: architecture, kind, input, layer list, neuron and norm settings, parameters."""
    config = validate_config(config)
    parts = []
    for op, arg in _plan(config):
        if op == "conv":
            parts.append(f"conv{arg[1]}")
        elif op == "block":
            parts.append(f"res{arg[1]}")
        elif op == "pool":
            parts.append("G" if arg[2] else "P")
        elif op == "drop":
            parts.append("D")
        elif op in ("fc", "out"):
            parts.append(f"fc{arg[1]}")
    norm = {("snn", True): "BNTT", ("ann", True): "BN"}.get((config["kind"], config["bntt"]),
                                                           "no norm")
    shape = "x".join(str(d) for d in config["in_shape"])
    if config["kind"] == "snn":
        neuron = (f"T={config['timesteps']}, LIF(λ={config['leak']:g}, θ={config['threshold']:g},"
                  f" {config['reset']}, {config['order']}), {config['encoder']} input, ")
    else:
        neuron = "ReLU, "
    drop = f", dropout {config['dropout']:g}" if config["dropout"] > 0 else ""
    return (f"{config['arch']} {config['kind'].upper()} on {shape}: {'-'.join(parts)}; "
            f"{neuron}{norm}{drop}; {count_parameters(config):,} parameters")


# ============================================================================================
# Modules
# ============================================================================================


class StepDropout(StatefulModule):
    """Dropout with one mask per sample for a whole time window (DIET/HIRE/Rathi style,
    reference/algorithms.md §2): the mask is drawn on the first step after
    :meth:`reset_state` and reused at every step; kept units are scaled by ``1/(1−p)``.
    Identity in ``eval()``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability {p} must be in [0, 1)")
        self.p = float(p)
        self.mask: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"p={self.p:g}"

    def reset_state(self) -> None:
        self.mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.mask is None or self.mask.shape != x.shape:
            keep = torch.full_like(x, 1.0 - self.p)
            self.mask = torch.bernoulli(keep) / (1.0 - self.p)
        return x * self.mask


class ANNNet(nn.Module):
    """The ANN twin: ``forward(x)`` is ``body(x)``, shape ``(B, *in_shape) -> (B, classes)``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Factory:
    """Makes the kind-specific layers (norm, activation, dropout) for one config."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.snn = config["kind"] == "snn"
        self.act_prefix = "lif" if self.snn else "relu"

    def norm(self, channels: int, dims: int) -> nn.Module | None:
        if not self.config["bntt"]:
            return None
        if self.snn:
            return BNTT(channels, self.config["timesteps"], dims=dims)
        bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims](channels, eps=1e-4, momentum=0.1)
        bn.bias = None  # like BNTT: no β
        return bn

    def act(self) -> nn.Module:
        if not self.snn:
            return nn.ReLU()
        c = self.config
        return LIF(c["leak"], c["threshold"], reset=c["reset"], order=c["order"],
                   surrogate=c["surrogate"], surrogate_scale=c["surrogate_scale"],
                   learn_leak=c["learn_leak"], learn_threshold=c["learn_threshold"])

    def drop(self) -> nn.Module | None:
        p = self.config["dropout"]
        if p == 0.0:
            return None
        return StepDropout(p) if self.snn else nn.Dropout(p)


class BasicBlock(nn.Module):
    """Residual block of the ResNet: ``y = act2(norm2(conv2(act1(norm1(conv1(x))))))``, output
    ``y + shortcut(x)`` where ``shortcut`` is the identity or 1×1 conv → norm → act when the
    channel count changes. In the SNN both summands are spike tensors (sum in {0, 1, 2})."""

    def __init__(self, cin: int, cout: int, make: _Factory) -> None:
        super().__init__()
        a = make.act_prefix
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = make.norm(cout, 2)
        self.add_module(f"{a}1", make.act())
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = make.norm(cout, 2)
        self.add_module(f"{a}2", make.act())
        self.shortcut: nn.Module | None = None
        if cin != cout:
            layers: list[tuple[str, nn.Module]] = [
                ("conv", nn.Conv2d(cin, cout, 1, bias=False))]
            norm = make.norm(cout, 2)
            if norm is not None:
                layers.append(("bn", norm))
            layers.append((a, make.act()))
            self.shortcut = nn.Sequential(OrderedDict(layers))
        self._acts = (f"{a}1", f"{a}2")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        if self.bn1 is not None:
            y = self.bn1(y)
        y = getattr(self, self._acts[0])(y)
        y = self.conv2(y)
        if self.bn2 is not None:
            y = self.bn2(y)
        y = getattr(self, self._acts[1])(y)
        s = x if self.shortcut is None else self.shortcut(x)
        return y + s


def _body(config: Mapping[str, Any]) -> nn.Sequential:
    make = _Factory(config)
    a = make.act_prefix
    layers: list[tuple[str, nn.Module | None]] = []
    n_conv = n_pool = n_block = n_fc = 0
    for op, arg in _plan(config):
        if op == "conv":
            n_conv += 1
            cin, cout, k = arg
            layers += [(f"conv{n_conv}", nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)),
                       (f"bn{n_conv}", make.norm(cout, 2)), (f"{a}{n_conv}", make.act())]
        elif op == "drop":
            layers.append((f"drop{n_conv}", make.drop()))
        elif op == "pool":
            n_pool += 1
            kernel = arg[:2] if arg[2] else 2  # AvgPool2d(2) as in the seeds
            layers.append((f"pool{n_pool}", nn.AvgPool2d(kernel)))
        elif op == "block":
            n_block += 1
            layers.append((f"block{n_block}", BasicBlock(arg[0], arg[1], make)))
        elif op == "flatten":
            layers.append(("flatten", nn.Flatten()))
        elif op == "fc":
            n_fc += 1
            layers += [(f"fc{n_fc}", nn.Linear(arg[0], arg[1], bias=False)),
                       (f"bn_fc{n_fc}", make.norm(arg[1], 1)), (f"{a}_fc{n_fc}", make.act()),
                       (f"drop_fc{n_fc}", make.drop())]
        elif op == "out":
            layers.append(("out", nn.Linear(arg[0], arg[1], bias=False)))
            if make.snn:
                layers.append(("acc", Accumulator()))
    return nn.Sequential(OrderedDict((k, m) for k, m in layers if m is not None))


def _init_weights(module: nn.Module, gain: float) -> None:
    if gain == 0.0:
        return
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, gain=gain)


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """Build the model that ``config`` describes (validated first).

    ``kind="snn"``: a :class:`SpikingNet` (``forward(x)`` with ``x`` of shape
    ``(B, *in_shape)`` returns logits ``(B, num_classes)`` = accumulator / T). ``kind="ann"``:
    an :class:`ANNNet` with the same shapes. Weights get Xavier-uniform init with gain
    ``init_gain`` (BNTT's recipe), γ of every norm starts at 1.
    """
    config = validate_config(config)
    body = _body(config)
    _init_weights(body, config["init_gain"])
    if config["kind"] == "ann":
        return ANNNet(body)
    encoder_cls = ENCODERS[config["encoder"]]
    encoder = (encoder_cls(rescale=config["poisson_rescale"]) if config["encoder"] == "poisson"
               else encoder_cls())
    return SpikingNet(body, config["timesteps"], encoder)


def _weights(model: nn.Module) -> dict[str, nn.Parameter]:
    body = getattr(model, "body", model)
    return {f"{name}.weight": m.weight for name, m in body.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))}


def load_twin_weights(dst: nn.Module, src: nn.Module) -> list[str]:
    """Copy every conv/linear weight of ``src`` into ``dst`` by name (``body.conv1.weight`` …).

    ``load_twin_weights(snn, ann)`` loads the ANN's weights into its SNN twin (ANN→SNN
    conversion); swap the arguments for the other direction. Either may be the full model or its
    ``body``. Returns the names copied. Raises :class:`ModelConfigError` when the two do not
    have the same conv/linear layers with the same shapes (nothing is copied then).
    """
    to, frm = _weights(dst), _weights(src)
    if to.keys() != frm.keys():
        only_dst = sorted(set(to) - set(frm))
        only_src = sorted(set(frm) - set(to))
        raise ModelConfigError(
            f"models are not twins: weights only in the destination {only_dst}, only in the "
            f"source {only_src}", hint="build both from twin_config(...) of one config")
    for name, w in to.items():
        if w.shape != frm[name].shape:
            raise ModelConfigError(
                f"models are not twins: {name} has shape {tuple(w.shape)} in the destination "
                f"and {tuple(frm[name].shape)} in the source",
                hint="build both from twin_config(...) of one config")
    with torch.no_grad():
        for name, w in to.items():
            w.copy_(frm[name])
    return list(to)


def state_shapes(config: Mapping[str, Any]) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """``{state_dict key: (shape, dtype)}`` of ``build_model(config)``, found without
    allocating the weights (the model is built on PyTorch's ``meta`` device)."""
    with torch.device("meta"):
        model = build_model(config)
    return {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}

