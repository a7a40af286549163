"""Pruning of zoo models (SNNs and their ANN twins) and what it saves once deployed: magnitude
pruning (one global threshold or the same sparsity per layer) and an attention-guided one-shot
compression after Spike-Thrift's AGC, fine-tuning with the pruning masks fixed, and per
sparsity the deployed network's cores, synaptic memory, synapse encodings, energy per
inference and accuracy (``neurodeploy prune``, :func:`run_pruning`).

**Masks.** The prunable weights are every ``nn.Conv2d`` and ``nn.Linear`` weight of the model
(biases, norms and neuron parameters are kept), in module order; ``keep_first`` /
``keep_last`` leave the first / last of them dense. Pruning is *exact*: the ``k = round(s·n)``
smallest magnitudes are removed (ties broken by position, a stable sort), over all prunable
weights at once (``scope="global"``, one threshold) or in each layer (``"layer"``). A mask is
kept beside the model (:class:`Masks`), not inside it, so the state dict and checkpoints keep
their layout; fine-tuning zeroes the pruned weights' gradients before and the weights after
every optimizer step.

**AGC** (``reference/algorithms.md`` §10). The unpruned model is the meta-model (teacher). One
shot: magnitude pruning as above (Spike-Thrift's sparse learning prunes and regrows by
momentum; here the mask is chosen once, by magnitude, and stays fixed), then fine-tuning of
the pruned student with

    L = CE + (β/2) Σ_j mean_{b,p} (q_s^j − q_m^j)²,   q^j = Q^j/‖Q^j‖₂,   Q^j = vec(Σ_c A_c^j²)

over the selected layers ``j`` (default: every spiking conv layer, ``(C, H, W)`` outputs; in an
ANN the ReLU conv layers). ``A^j`` of an SNN is the layer's **spike count over the time
window**, ``Σ_t s^j[t]`` (differentiable through the surrogate), of an ANN the activation. The
norm is read as in Zagoruyko & Komodakis' attention-transfer code, which the formula follows:
the squared distance of the L2-normalized maps, averaged over the batch and the map's positions
— their paper's "β = 10³ divided by the number of elements in the attention map and the batch
size" — so β = 1000 balances cross-entropy. The teacher sees the very input steps the student
saw (Poisson trains are replayed). ``method="magnitude"`` fine-tunes with plain cross-entropy
for the same number of epochs, so the two differ only in the attention term.

**Deployment.** Each pruned model is compiled in memory exactly as ``neurodeploy compile``
does (:func:`neurodeploy.compile.fixed_point` with calibration on the training split, then
:func:`~neurodeploy.compile.compile_model` on the fixed graph for legalization, mapping and
the folder that :func:`neurodeploy.inference.evaluate` runs on hw_sim with event accounting
and the cost model). The mapping chooses each synapse's encoding (``sparse`` stores only
non-zero weights, with index bits) where it is cheaper.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import BadInputFileError, NeurodeployError, UnsupportedError

METHODS = ("magnitude", "agc")
SCOPES = ("global", "layer")
DEFAULT_SPARSITIES = (0.5, 0.8, 0.9, 0.95)
#: Attention-transfer weight β (Zagoruyko & Komodakis; Spike-Thrift).
DEFAULT_BETA = 1000.0
#: Fine-tuning defaults: Adam, learning rate (cosine-decayed to 0 per iteration), batch size.
FINETUNE_LR = 3e-4
FINETUNE_BATCH = 32
#: Test samples the deployed (hw_sim) and float accuracies are measured on by default.
DEFAULT_SAMPLES = 500
#: Training samples the quantizer calibrates on (as ``neurodeploy compile``'s default).
CALIB_SAMPLES = 64

FORMAT = "neurodeploy-pruning"
VERSION = 1
OUTPUT_FILES = ("pruning.json", "pruning.png")
_CHECKPOINT_DIR = re.compile(r"s0\.\d+")


# ============================================================================================
# Masks and magnitude pruning
# ============================================================================================


def check_sparsity(value: Any) -> float:
    """``value`` as a float in ``[0, 1)`` (fraction of weights removed); else
    :class:`NeurodeployError`."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or not 0.0 <= float(value) < 1.0:
        raise NeurodeployError(f"sparsity {value!r} must be a number in [0, 1) (the fraction of "
                               "weights removed; 0.9 keeps one weight in ten)")
    return float(value)


def _choice(name: str, value: Any, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise NeurodeployError(f"unknown {name} {value!r}; use one of {', '.join(options)}")
    return value


def prunable_weights(model: nn.Module, *, keep_first: bool = False,
                     keep_last: bool = False) -> dict[str, nn.Parameter]:
    """``{state-dict name: weight}`` of every ``nn.Conv2d``/``nn.Linear`` in module order
    (``body.conv1.weight`` …), without the first / last when ``keep_first`` / ``keep_last``.
    Raises :class:`UnsupportedError` when nothing is left to prune."""
    found = {f"{path}.weight": m.weight for path, m in model.named_modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))}
    names = list(found)
    if keep_last and names:
        names = names[:-1]
    if keep_first and names:
        names = names[1:]
    if not names:
        raise UnsupportedError(
            f"{type(model).__name__} has no prunable conv/linear weights"
            + (" besides the first and last layer kept dense" if found else ""),
            hint="prune a model with conv or linear layers" if not found
            else "let the first or last layer be pruned")
    return {n: found[n] for n in names}


@dataclass
class Masks:
    """Fixed pruning masks: ``keep[name]`` is a bool tensor of the weight's shape, ``True``
    for weights that stay. Names are the model's state-dict names."""

    keep: dict[str, torch.Tensor]

    def _params(self, model: nn.Module) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        missing = [n for n in self.keep if n not in params]
        if missing:
            raise NeurodeployError(f"the model lacks the masked weight(s) {', '.join(missing)}")
        return {n: params[n] for n in self.keep}

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Set the pruned weights of ``model`` to zero (in place)."""
        for name, w in self._params(model).items():
            w.mul_(self.keep[name].to(w.device, w.dtype))

    @torch.no_grad()
    def mask_grads(self, model: nn.Module) -> None:
        """Zero the gradients of the pruned weights (before an optimizer step)."""
        for name, w in self._params(model).items():
            if w.grad is not None:
                w.grad.mul_(self.keep[name].to(w.grad.device, w.grad.dtype))

    def violations(self, model: nn.Module) -> int:
        """Pruned weights of ``model`` that are not exactly zero (0 when the mask holds)."""
        return sum(int(((w.detach() != 0) & ~self.keep[n].to(w.device)).sum())
                   for n, w in self._params(model).items())

    def sizes(self) -> dict[str, int]:
        """Weights per masked layer."""
        return {n: int(k.numel()) for n, k in self.keep.items()}

    def pruned(self) -> dict[str, int]:
        """Pruned weights per masked layer."""
        return {n: int((~k).sum()) for n, k in self.keep.items()}

    def sparsity(self) -> dict[str, Any]:
        """``{"total": fraction pruned over all masked weights, "per_layer": {name: fraction}}``."""
        sizes, pruned = self.sizes(), self.pruned()
        total = sum(sizes.values())
        return {"total": sum(pruned.values()) / total if total else 0.0,
                "per_layer": {n: pruned[n] / sizes[n] for n in sizes}}


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def magnitude_masks(model: nn.Module, sparsity: float, *, scope: str = "global",
                    keep_first: bool = False, keep_last: bool = False) -> Masks:
    """Masks that remove the smallest-magnitude weights of ``model``'s prunable weights.

    ``scope="global"``: ``round(s·N)`` weights of all ``N`` prunable weights together (one
    threshold); ``"layer"``: ``round(s·n)`` of each layer's ``n``. Ties are broken by position
    (a stable sort), so the achieved count is exact. The model is not changed (see
    :func:`prune`)."""
    s = check_sparsity(sparsity)
    scope = _choice("scope", scope, SCOPES)
    weights = prunable_weights(model, keep_first=keep_first, keep_last=keep_last)
    mags = {n: w.detach().abs().flatten().cpu() for n, w in weights.items()}
    keep: dict[str, torch.Tensor] = {}
    if scope == "layer":
        for name, m in mags.items():
            flat = torch.ones(m.numel(), dtype=torch.bool)
            flat[torch.sort(m, stable=True).indices[:_round_half_up(s * m.numel())]] = False
            keep[name] = flat.view(weights[name].shape)
    else:
        allm = torch.cat(list(mags.values()))
        flat = torch.ones(allm.numel(), dtype=torch.bool)
        flat[torch.sort(allm, stable=True).indices[:_round_half_up(s * allm.numel())]] = False
        start = 0
        for name, m in mags.items():
            keep[name] = flat[start:start + m.numel()].view(weights[name].shape).clone()
            start += m.numel()
    return Masks(keep)


def prune(model: nn.Module, sparsity: float, *, scope: str = "global", keep_first: bool = False,
          keep_last: bool = False) -> Masks:
    """Magnitude-prune ``model`` in place (:func:`magnitude_masks`, then zero the pruned
    weights) and return its fixed masks."""
    masks = magnitude_masks(model, sparsity, scope=scope, keep_first=keep_first,
                            keep_last=keep_last)
    masks.apply(model)
    return masks


# ============================================================================================
# Attention maps (AGC)
# ============================================================================================


def attention_map(a: torch.Tensor) -> torch.Tensor:
    """``Q = vec(Σ_c |A_c|²)``: activity ``(B, C, H, W)`` → spatial attention ``(B, H·W)``."""
    if a.dim() != 4:
        raise ValueError(f"attention maps need (B, C, H, W) activity, got shape {tuple(a.shape)}")
    return a.pow(2).sum(dim=1).flatten(1)


def attention_loss(student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                   beta: float = DEFAULT_BETA) -> torch.Tensor:
    """AGC's attention term ``(β/2) Σ_j mean_{b,p} (Q_s^j/‖Q_s^j‖₂ − Q_m^j/‖Q_m^j‖₂)²`` over
    the layers ``j`` of ``student`` (activities ``(B, C, H, W)``; ``teacher`` has the same
    keys and shapes). Each map is normalized per sample; a silent layer's map stays zero."""
    if set(student) != set(teacher):
        raise ValueError(f"student layers {sorted(student)} != teacher layers {sorted(teacher)}")
    total = torch.zeros(())
    for name, a in student.items():
        qs = F.normalize(attention_map(a), dim=1)
        qm = F.normalize(attention_map(teacher[name]), dim=1)
        total = total + (qs - qm).pow(2).mean()
    return 0.5 * float(beta) * total


def _activation_modules(model: nn.Module) -> dict[str, nn.Module]:
    """IR-style name (``lif1``, ``block1_relu2``) → every LIF (SNN) or ReLU (ANN) module."""
    from .frontends.torch import node_name
    from .models.layers import LIF

    root = getattr(model, "body", model)
    return {node_name(p): m for p, m in root.named_modules()
            if p and isinstance(m, (LIF, nn.ReLU))}


class AttentionRecorder:
    """Forward hooks that sum the outputs of activation modules (spiking LIF layers, or ReLUs
    in an ANN) over the calls since :meth:`clear`: for an SNN forward pass ``maps[name]`` is
    the spike count over the time window ``Σ_t s[t]`` ``(B, C, H, W)``, for an ANN the
    activation. ``layers=None`` records every such layer whose output is ``(B, C, H, W)``;
    named layers must be ones (IR names, e.g. ``lif1``). Use as a context manager."""

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None) -> None:
        modules = _activation_modules(model)
        if layers is not None:
            names = list(dict.fromkeys(layers))
            unknown = [n for n in names if n not in modules]
            if unknown or not names:
                raise NeurodeployError(
                    f"unknown attention layer(s) {', '.join(unknown) or '(none given)'}; "
                    f"spiking/ReLU layers: {', '.join(modules) or '(none)'}")
            modules = {n: modules[n] for n in names}
        self.explicit = layers is not None
        self.maps: dict[str, torch.Tensor] = {}
        self._hooks = [m.register_forward_hook(self._hook(n)) for n, m in modules.items()]

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            if out.dim() != 4:
                if self.explicit:
                    raise NeurodeployError(f"attention layer {name} has outputs of shape "
                                           f"{tuple(out.shape[1:])}; AGC needs conv layers "
                                           "(channels, H, W)")
                return
            self.maps[name] = out if name not in self.maps else self.maps[name] + out
        return hook

    def clear(self) -> None:
        self.maps = {}

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def __enter__(self) -> AttentionRecorder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Tape(nn.Module):
    """An SNN encoder wrapper that keeps each step's (detached) input for a teacher replay."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.steps: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        out = self.inner(x, t)
        self.steps.append(out.detach())
        return out


@contextmanager
def _taped(model: nn.Module) -> Iterator[_Tape | None]:
    from .models.layers import SpikingNet

    if not isinstance(model, SpikingNet):
        yield None
        return
    saved = model.encoder
    tape = _Tape(saved)
    model.encoder = tape
    try:
        yield tape
    finally:
        model.encoder = saved


# ============================================================================================
# Fine-tuning with fixed masks
# ============================================================================================


def finetune(model: nn.Module, masks: Masks, train_set: Any, *, epochs: int = 1,
             lr: float = FINETUNE_LR, batch_size: int = FINETUNE_BATCH,
             optimizer: str = "adam", teacher: nn.Module | None = None,
             beta: float = DEFAULT_BETA, attention_layers: Sequence[str] | None = None,
             seed: int = 0, max_steps: int | None = None, progress: bool = False,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune a pruned ``model`` in place on ``train_set`` (a
    :class:`~neurodeploy.models.data.Dataset`) with its ``masks`` fixed.

    Loss: cross-entropy on the logits, plus with a ``teacher`` (the unpruned meta-model, AGC)
    the attention term :func:`attention_loss` with weight ``beta`` over ``attention_layers``
    (default every spiking/ReLU conv layer). ``optimizer`` ``"adam"`` or ``"sgd"`` (the
    training helper of :mod:`neurodeploy.models.train`), learning rate ``lr`` decayed to 0 by
    a per-iteration cosine, shuffled batches seeded with ``seed``. The pruned weights' grads
    are zeroed before and the weights after every step. ``max_steps`` stops early (tests).

    Returns ``{"epochs", "steps", "seconds", "history": [{"epoch", "loss", "ce",
    "attention", "accuracy"}]}`` (per-epoch means; accuracy in train mode). The model is left
    in ``eval()`` mode.
    """
    from .models.data import make_loader
    from .models.train import _make_optimizer

    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise NeurodeployError(f"fine-tuning epochs {epochs!r} must be an integer >= 0")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise NeurodeployError(f"learning rate {lr!r} must be a positive number")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise NeurodeployError(f"beta {beta!r} must be a number >= 0")
    say = log or (lambda message: None)
    t_start = time.perf_counter()
    torch.manual_seed(seed)
    loader = make_loader(train_set, batch_size, shuffle=True, seed=seed)
    total = max(1, epochs * len(loader) if max_steps is None
                else min(epochs * len(loader), max_steps))
    opt = _make_optimizer(optimizer, model.parameters(), lr, 0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1.0 + math.cos(math.pi * min(i, total) / total)))
    recorders: tuple[AttentionRecorder, AttentionRecorder] | None = None
    if teacher is not None:
        recorders = (AttentionRecorder(model, attention_layers),
                     AttentionRecorder(teacher, attention_layers))
        teacher.eval()
    masks.apply(model)
    history: list[dict[str, float]] = []
    steps = 0
    try:
        for epoch in range(epochs):
            if max_steps is not None and steps >= max_steps:
                break
            model.train()
            sums = {"loss": 0.0, "ce": 0.0, "attention": 0.0}
            correct = seen = 0
            bar = loader
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(loader, desc=f"fine-tune {epoch + 1}/{epochs}", leave=False,
                           unit="batch")
            for x, y in bar:
                if max_steps is not None and steps >= max_steps:
                    break
                if recorders is not None:
                    for rec in recorders:
                        rec.clear()
                with _taped(model) as tape:
                    logits = model(x)
                ce = F.cross_entropy(logits, y)
                att = torch.zeros(())
                if recorders is not None and teacher is not None:
                    with torch.no_grad():
                        _teacher_forward(teacher, x, tape)
                    student_maps, teacher_maps = (rec.maps for rec in recorders)
                    if not student_maps:
                        raise NeurodeployError("AGC found no conv activity to attend to; "
                                               "give attention layers with (C, H, W) outputs")
                    att = attention_loss(student_maps, teacher_maps, beta)
                loss = ce + att
                if not torch.isfinite(loss):
                    raise NeurodeployError(f"fine-tuning diverged (loss {float(loss)}) in epoch "
                                           f"{epoch + 1}; lower the learning rate (now {lr})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                masks.mask_grads(model)
                opt.step()
                masks.apply(model)
                sched.step()
                steps += 1
                n = len(y)
                sums["loss"] += float(loss) * n
                sums["ce"] += float(ce) * n
                sums["attention"] += float(att) * n
                correct += int((logits.detach().argmax(dim=1) == y).sum())
                seen += n
            history.append({"epoch": epoch + 1, **{k: v / max(seen, 1) for k, v in sums.items()},
                            "accuracy": correct / max(seen, 1)})
            say(f"  fine-tune epoch {epoch + 1}/{epochs}: loss {history[-1]['loss']:.4f} "
                f"(ce {history[-1]['ce']:.4f}, attention {history[-1]['attention']:.4f}), "
                f"train acc {history[-1]['accuracy']:.4f}")
    finally:
        for rec in recorders or ():
            rec.close()
        model.eval()
    return {"epochs": epochs, "steps": steps, "seconds": time.perf_counter() - t_start,
            "history": history}


def _teacher_forward(teacher: nn.Module, x: torch.Tensor, tape: _Tape | None) -> torch.Tensor:
    """The teacher on the student's input (an SNN replays the student's encoded steps)."""
    if tape is None or not tape.steps:
        return teacher(x)
    from .gradcam import replay_inputs

    with replay_inputs(teacher, torch.stack(tape.steps, dim=-1)):
        return teacher(x, len(tape.steps))


# ============================================================================================
# Deployment of a pruned model
# ============================================================================================


def _indicator_graph(graph: Any, masks: Masks) -> tuple[Any, dict[str, str]]:
    """``graph`` with every masked weight replaced by its keep-indicator (1.0 kept, 0.0 pruned)
    and pooling folded as the quantizer folds it, and ``{IR node: mask name}``."""
    from .frontends.torch import node_name
    from .ir import Graph
    from .passes.quantize import fold_pooling

    nodes = dict(graph.nodes)
    names: dict[str, str] = {}
    for pname, keep in masks.keep.items():
        path = pname[:-len(".weight")]
        path = path[len("body."):] if path.startswith("body.") else path
        ir = node_name(path)
        node = nodes.get(ir)
        if node is None or np.shape(getattr(node, "weight", None)) != tuple(keep.shape):
            continue
        nodes[ir] = dataclasses.replace(node, weight=keep.numpy().astype(np.float64))
        names[ir] = pname
    folded, _, _ = fold_pooling(Graph(nodes, graph.edges, dict(graph.metadata)))
    return folded, names


def ir_zero_check(float_graph: Any, fixed_graph: Any, masks: Masks) -> dict[str, Any]:
    """Whether the pruned weights are exactly zero in ``fixed_graph`` (the quantized IR of
    ``float_graph``, a traced pruned model): the keep-masks are folded like the weights
    (pooling into the next synapse), and every fixed-point weight outside the folded support
    must be 0. Returns ``{"pruned_nonzero": count (0 when they are), "layers": {IR name:
    {"weights", "zeros", "pruned_nonzero"}}, "unchecked": [masked layers not found]}``."""
    folded, names = _indicator_graph(float_graph, masks)
    layers: dict[str, dict[str, int]] = {}
    unchecked = [n for n in masks.keep if n not in names.values()]
    for ir, pname in names.items():
        fixed = fixed_graph.nodes.get(ir)
        support = np.asarray(getattr(folded.nodes.get(ir), "weight", np.zeros(0)))
        weight = np.asarray(getattr(fixed, "weight", np.zeros(0)))
        if weight.shape != support.shape:
            unchecked.append(pname)
            continue
        layers[ir] = {"weights": int(weight.size), "zeros": int((weight == 0).sum()),
                      "pruned_nonzero": int(((weight != 0) & (support == 0)).sum())}
    return {"pruned_nonzero": sum(r["pruned_nonzero"] for r in layers.values()),
            "layers": layers, "unchecked": unchecked}


def deploy(model: nn.Module, config: Mapping[str, Any], target: Any, data: str, *,
           samples: int = DEFAULT_SAMPLES, calib_samples: int = CALIB_SAMPLES,
           masks: Masks | None = None, label: str = "model",
           log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compile a zoo SNN ``model`` (``config`` its zoo config) for ``target`` (name, path or
    loaded target) as ``neurodeploy compile --calib data`` does, and run it on ``samples`` test
    samples of ``data`` with hw_sim, event accounting and the cost model
    (:func:`neurodeploy.inference.evaluate`).

    Returns ``{"accuracy_deployed", "cores", "chips", "synaptic_memory_bits" (total over
    cores, bits), "synaptic_memory_bits_per_layer", "synapse_encoding" (per synapse node),
    "synapse_weights" ({node: {"weights", "nonzero"}} of the deployed synapses),
    "cores_per_layer", "energy_per_inference_j" ({"total", "dynamic", "static"}, joules),
    "energy_scope", "latency_per_inference_s" (seconds, pipeline included),
    "syn_ops_per_inference", "spikes_per_inference", "ir_zero_check"}`` (the last with
    ``masks``, :func:`ir_zero_check`)."""
    from .compile import calibration_samples, compile_model, fixed_point, read_compiled
    from .frontends.torch import from_torch
    from .inference import evaluate
    from .targets import load_target

    say = log or (lambda message: None)
    tgt = target if hasattr(target, "is_neuromorphic") else load_target(target)
    shape = tuple(config["in_shape"])
    graph = from_torch(model, in_shape=shape).with_metadata(source=f"pruning:{label}")
    steps = int(graph.metadata.get("timesteps") or config["timesteps"])
    x_cal = calibration_samples(data, calib_samples, shape)
    say(f"  compiling {label} for {tgt.name} (calibration: {calib_samples} samples of {data})")
    fixed, _, _ = fixed_point(graph, tgt, calib=x_cal, steps=steps)
    zero = ir_zero_check(graph, fixed, masks) if masks is not None else None
    with tempfile.TemporaryDirectory(prefix="neurodeploy-prune-") as tmp:
        folder = Path(tmp) / "compiled"
        compile_model(fixed, tgt.path if getattr(tgt, "path", None) else tgt.name, folder,
                      timesteps=steps)
        comp = read_compiled(folder)
        mapping = comp.mapping()
        say(f"  running {label} on hw_sim ({samples} samples)")
        ev = evaluate(folder, data, samples)
        deployed = comp.graph
    per_layer: dict[str, int] = {}
    for core in mapping.cores:
        per_layer[core.layer] = per_layer.get(core.layer, 0) + core.synaptic_memory_bits
    weights = {n: {"weights": int(np.asarray(deployed.nodes[n].weight).size),
                   "nonzero": int(np.count_nonzero(deployed.nodes[n].weight))}
               for n in mapping.synapse_encoding if hasattr(deployed.nodes.get(n), "weight")}
    energy = ev["cost"]["energy"]
    latency = ev["cost"]["latency"]
    totals = ev["activity"]["totals_per_sample"]
    row: dict[str, Any] = {
        "accuracy_deployed": ev["accuracy"]["deployed"],
        "cores": mapping.cores_used, "chips": mapping.chips_used,
        "cores_per_layer": {name: int(info["cores"]) for name, info in mapping.layers.items()},
        "synaptic_memory_bits": sum(c.synaptic_memory_bits for c in mapping.cores),
        "synaptic_memory_bits_per_layer": per_layer,
        "synapse_encoding": dict(mapping.synapse_encoding),
        "synapse_weights": weights,
        "energy_per_inference_j": {k: energy["per_inference_j"][k]
                                   for k in ("total", "dynamic", "static")},
        "energy_scope": energy["scope"], "energy_preset": energy["preset"],
        "latency_per_inference_s": latency["latency_per_inference_s"],
        "syn_ops_per_inference": totals["syn_ops"],
        "spikes_per_inference": totals["output_spikes"],
        "steps": ev["steps"], "pipeline_depth": ev["pipeline_depth"],
    }
    if zero is not None:
        row["ir_zero_check"] = zero
    return row


# ============================================================================================
# The pruning run
# ============================================================================================


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with its per-step state cleared first (an SNN's membrane
    potentials after a forward pass with gradients cannot be deep-copied)."""
    from .models.layers import StatefulModule

    for m in model.modules():
        if isinstance(m, StatefulModule):
            m.reset_state()
    return copy.deepcopy(model)


class _Owned:
    """Names a pruning run writes (for :func:`neurodeploy.outdir.check_out_dir`)."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in OUTPUT_FILES
                                          or bool(_CHECKPOINT_DIR.fullmatch(name)))

    def __iter__(self) -> Iterator[str]:
        return iter(OUTPUT_FILES)

    def __len__(self) -> int:
        return len(OUTPUT_FILES)


def checkpoint_dir(sparsity: float) -> str:
    """Folder name of the checkpoint pruned to ``sparsity``: ``s0.9``, ``s0.95``."""
    return "s" + f"{float(sparsity):.6f}".rstrip("0")


def parse_sparsities(text: str) -> list[float]:
    """``"0.5,0.8,0.9"`` → ``[0.5, 0.8, 0.9]`` (the CLI's ``--sparsity`` list); each must be
    in ``[0, 1)``, else :class:`NeurodeployError`."""
    values = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            values.append(float(item))
        except ValueError:
            raise NeurodeployError(f"sparsity {item!r} is not a number; give fractions in "
                                   "[0, 1) separated by commas, e.g. 0.5,0.8,0.9") from None
    if not values:
        raise NeurodeployError("no sparsity given; e.g. --sparsity 0.5,0.8,0.9")
    return [check_sparsity(v) for v in values]


def _sparsities(values: Any) -> list[float]:
    if isinstance(values, (int, float, np.integer, np.floating)) and not isinstance(values, bool):
        values = [values]
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise NeurodeployError(f"sparsities {values!r} must be a list of numbers in [0, 1)")
    out = sorted({check_sparsity(round(check_sparsity(v), 6)) for v in values})
    return [s for s in out if s > 0.0]


def _positive_int(name: str, value: Any, low: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise NeurodeployError(f"{name} {value!r} must be an integer >= {low}")
    return int(value)


def _delta(base: float | None, value: float | None) -> float | None:
    return None if base is None or value is None else base - value


def _fraction(base: float | None, value: float | None) -> float | None:
    return None if base is None or value is None or base == 0 else (base - value) / base


def _saved(base: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    """What ``row`` saves against the unpruned ``base`` (positive = saved / lost)."""
    def energy(r: Mapping[str, Any], key: str) -> float | None:
        e = r.get("energy_per_inference_j")
        return None if e is None else e[key]

    out = {
        "weights": _delta(base["weights"]["nonzero"], row["weights"]["nonzero"]),
        "accuracy_lost_float": _delta(base["accuracy"]["float"], row["accuracy"]["float"]),
        "accuracy_lost_deployed": _delta(base["accuracy"].get("deployed"),
                                         row["accuracy"].get("deployed")),
        "cores": _delta(base.get("cores"), row.get("cores")),
        "synaptic_memory_bits": _delta(base.get("synaptic_memory_bits"),
                                       row.get("synaptic_memory_bits")),
        "synaptic_memory_fraction": _fraction(base.get("synaptic_memory_bits"),
                                              row.get("synaptic_memory_bits")),
        "energy_j": _delta(energy(base, "total"), energy(row, "total")),
        "energy_fraction": _fraction(energy(base, "total"), energy(row, "total")),
        "dynamic_energy_j": _delta(energy(base, "dynamic"), energy(row, "dynamic")),
        "dynamic_energy_fraction": _fraction(energy(base, "dynamic"), energy(row, "dynamic")),
        "latency_s": _delta(base.get("latency_per_inference_s"),
                            row.get("latency_per_inference_s")),
    }
    return out


def summary_table(doc: Mapping[str, Any]) -> str:
    """A plain-text table of a :func:`run_pruning` document, one line per sparsity: achieved
    sparsity, float and deployed accuracy (%), cores, synaptic memory (Mbit), energy per
    inference (µJ, total and dynamic), latency per inference (µs) and the synapse
    encodings."""
    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    head = (f"{'sparsity':>8} {'float %':>7} {'deploy %':>8} {'cores':>5} {'mem Mbit':>8} "
            f"{'E uJ':>7} {'E dyn uJ':>8} {'lat us':>7}  encodings")
    lines = [head]
    for r in doc["rows"]:
        e = r.get("energy_per_inference_j")
        enc = ", ".join(f"{k}={v}" for k, v in (r.get("synapse_encoding") or {}).items())
        lines.append(
            f"{r['achieved']['total']:>8.4f} {pct(r['accuracy']['float']):>7} "
            f"{pct(r['accuracy'].get('deployed')):>8} {r.get('cores', '-'):>5} "
            + (f"{r['synaptic_memory_bits'] / 1e6:>8.3f} {e['total'] * 1e6:>7.1f} "
               f"{e['dynamic'] * 1e6:>8.1f} {r['latency_per_inference_s'] * 1e6:>7.1f}"
               if e else f"{'-':>8} {'-':>7} {'-':>8} {'-':>7}")
            + f"  {enc}")
    return "\n".join(lines)


def plot_pruning(path: str | Path, doc: Mapping[str, Any]) -> Path:
    """Write ``pruning.png``: accuracy (float and deployed, %) and synaptic memory, energy and
    latency per inference (% of the unpruned network's) against sparsity, cores annotated."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = doc["rows"]
    xs = [100 * r["sparsity"] for r in rows]
    fig = Figure(figsize=(10, 3.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(xs, [100 * r["accuracy"]["float"] for r in rows], "o-", label="float")
    if all(r["accuracy"].get("deployed") is not None for r in rows):
        ax.plot(xs, [100 * r["accuracy"]["deployed"] for r in rows], "s-",
                label=f"deployed ({doc.get('target')}, hw_sim)")
    ax.set_xlabel("sparsity (% of weights pruned)")
    ax.set_ylabel(f"accuracy (%), {doc['samples']} test samples")
    ax.set_title(f"{doc['method']} pruning, {doc['scope']} scope")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax2 = fig.add_subplot(1, 2, 2)
    base = rows[0]

    def pct(value: Any, ref: Any) -> float:
        return 100.0 * value / ref if value is not None and ref else float("nan")

    if base.get("synaptic_memory_bits"):
        mem = [pct(r["synaptic_memory_bits"], base["synaptic_memory_bits"]) for r in rows]
        ax2.plot(xs, mem, "o-", label="synaptic memory")
        for key, style in (("dynamic", "s-"), ("total", "^--")):
            ax2.plot(xs, [pct(r["energy_per_inference_j"][key],
                              base["energy_per_inference_j"][key]) for r in rows], style,
                     label=f"{key} energy / inference")
        ax2.plot(xs, [pct(r["latency_per_inference_s"], base["latency_per_inference_s"])
                      for r in rows], "x:", color="gray", label="latency / inference")
        for x, y, r in zip(xs, mem, rows):
            ax2.annotate(f"{r['cores']} cores", (x, y), textcoords="offset points",
                         xytext=(0, -13), ha="center", fontsize=7)
        ax2.set_ylabel("% of the unpruned network")
    else:
        ax2.plot(xs, [pct(r["weights"]["nonzero"], base["weights"]["nonzero"]) for r in rows],
                 "o-", label="non-zero weights")
        ax2.set_ylabel("% of the unpruned model")
    ax2.set_xlabel("sparsity (% of weights pruned)")
    ax2.set_ylim(bottom=0)
    ax2.set_title("deployment cost" if base.get("synaptic_memory_bits") else "weights")
    ax2.grid(alpha=0.3)
    ax2.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(str(path))
    return path


def run_pruning(model: str | Path | None = None, *, method: str = "magnitude",
                scope: str = "global", sparsities: Sequence[float] | float = DEFAULT_SPARSITIES,
                data: str | None = None, samples: int = DEFAULT_SAMPLES,
                finetune_epochs: int = 1, target: str = "loihi2", out: str | Path,
                seed: int = 0, keep_first: bool = False, keep_last: bool = False,
                beta: float = DEFAULT_BETA, attention_layers: Sequence[str] | None = None,
                lr: float = FINETUNE_LR, batch_size: int = FINETUNE_BATCH,
                calib_samples: int = CALIB_SAMPLES, threads: int | None = 1,
                overwrite: bool = False, progress: bool = False,
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Prune a zoo checkpoint to each of ``sparsities``, fine-tune it, deploy it, and write
    ``out/pruning.json``, ``out/pruning.png`` and one checkpoint per sparsity
    (``out/s0.9/model.pt`` + ``config.json``, loadable by ``neurodeploy compile``), atomically.

    Args:
        model: checkpoint (``model.pt`` or its folder); default the shipped demo CNN.
        method: ``"magnitude"`` (fine-tuned with cross-entropy) or ``"agc"`` (attention-guided
            fine-tuning from the unpruned model, module docstring).
        scope: ``"global"`` (one threshold over all prunable weights) or ``"layer"``.
        sparsities: fractions of prunable weights removed, each in ``[0, 1)``; the unpruned
            model (0) is always the first row.
        data: dataset spec (default: the one the model was trained on); fine-tuning uses its
            training split, accuracies ``samples`` samples of its test split (a seeded subset,
            the same for float and deployed; the one ``neurodeploy simulate --data`` takes).
        finetune_epochs: epochs of fine-tuning per sparsity (0: none; AGC needs >= 1).
        target: neuromorphic target name or ``.toml`` (ANN models are not deployed).
        seed: fine-tuning seed. ``keep_first``/``keep_last``: leave those layers dense.
        beta, attention_layers: AGC's attention weight and layers (IR names, e.g. ``lif1``).
        lr, batch_size: fine-tuning (Adam, cosine decay). ``calib_samples``: quantizer
            calibration samples. ``threads``: PyTorch CPU threads while fine-tuning.

    Returns the ``pruning.json`` document (plus ``out``): ``rows`` (one per sparsity, 0
    first) with ``sparsity``, ``achieved`` (``total`` and ``per_layer`` fractions),
    ``weights`` (``prunable``, ``nonzero``), ``accuracy`` (``float``, ``deployed``),
    ``cores``, ``synaptic_memory_bits``, ``synapse_encoding``, ``energy_per_inference_j``,
    ``saved`` (against row 0: cores, memory, energy, accuracy lost) and ``checkpoint``.
    """
    from .inference import trained_on
    from .models.checkpoint import checkpoint_file, load_checkpoint, save_checkpoint
    from .models.data import load_dataset, subset
    from .models.train import evaluate as float_accuracy
    from .outdir import check_out_dir, jsonable, write_dir_atomic
    from .models.checkpoint import DEMO_MODEL

    say = log or (lambda message: None)
    method = _choice("method", method, METHODS)
    scope = _choice("scope", scope, SCOPES)
    levels = _sparsities(sparsities)
    if not levels:
        raise NeurodeployError("give at least one sparsity above 0 (e.g. 0.5,0.8,0.9)")
    finetune_epochs = _positive_int("finetune_epochs", finetune_epochs, 0)
    if method == "agc" and finetune_epochs < 1:
        raise NeurodeployError("AGC is attention-guided fine-tuning: give finetune_epochs >= 1 "
                               "(or use method magnitude without fine-tuning)")
    samples = _positive_int("samples", samples)
    calib_samples = _positive_int("calib_samples", calib_samples)
    batch_size = _positive_int("batch_size", batch_size)
    if threads is not None:
        threads = _positive_int("threads", threads)
    if not (isinstance(beta, (int, float)) and not isinstance(beta, bool)
            and math.isfinite(beta) and beta >= 0):
        raise NeurodeployError(f"beta {beta!r} must be a number >= 0")
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr)
            and lr > 0):
        raise NeurodeployError(f"learning rate {lr!r} must be a positive number")
    names = [checkpoint_dir(s) for s in levels]
    out_dir = check_out_dir(out, _Owned(), overwrite=overwrite, what="pruning run")

    source = Path(model) if model is not None else DEMO_MODEL
    ckpt = checkpoint_file(source)
    if ckpt is None:
        raise BadInputFileError(source, "not a neurodeploy checkpoint (model.pt or a folder "
                                "holding one)", hint="prune a model trained with neurodeploy "
                                "train, or a checkpoint written by save_checkpoint")
    net, config, _ = load_checkpoint(ckpt)
    snn = config["kind"] == "snn"
    if data is None:
        data = trained_on(ckpt)
        if data is None:
            raise NeurodeployError(f"{ckpt}: no dataset recorded with the model; give one "
                                   "(--data mnist5k, digits, a .npz file or an image folder)")
    train_set = load_dataset(data, split="train")
    test_set = subset(load_dataset(data, split="test"), samples)
    if tuple(train_set.in_shape) != tuple(config["in_shape"]):
        raise NeurodeployError(f"data {data!r} has samples of shape {tuple(train_set.in_shape)}, "
                               f"the model takes {tuple(config['in_shape'])}; give the dataset "
                               "it was trained on")
    tgt = None
    if snn:
        from .targets import load_target

        tgt = load_target(target).require_neuromorphic("prune for")
    if attention_layers is not None:
        AttentionRecorder(net, attention_layers).close()  # names checked before any work

    t_start = time.perf_counter()
    notes: list[str] = []
    if not snn:
        notes.append("ANN model: float accuracy and weights only; convert it to an SNN "
                     "(neurodeploy convert) to see the deployment cost")
    prunable = prunable_weights(net, keep_first=keep_first, keep_last=keep_last)
    n_prunable = sum(w.numel() for w in prunable.values())

    def measure(m: nn.Module, masks: Masks | None, s: float) -> dict[str, Any]:
        nonzero = sum(int(torch.count_nonzero(w)) for w in
                      prunable_weights(m, keep_first=keep_first, keep_last=keep_last).values())
        row: dict[str, Any] = {
            "sparsity": s,
            "achieved": masks.sparsity() if masks is not None else {
                "total": 0.0, "per_layer": {n: 0.0 for n in prunable}},
            "weights": {"prunable": n_prunable, "nonzero": nonzero},
            "accuracy": {"float": float_accuracy(m, test_set), "deployed": None},
        }
        if snn:
            dep = deploy(m, config, tgt, data, samples=samples, calib_samples=calib_samples,
                         masks=masks, label=f"sparsity {s:g}", log=say)
            row["accuracy"]["deployed"] = dep.pop("accuracy_deployed")
            row.update(dep)
        return row

    previous_threads = torch.get_num_threads()
    rows: list[dict[str, Any]] = []
    states: dict[str, dict[str, torch.Tensor]] = {}
    try:
        say(f"unpruned model {ckpt}: measuring")
        rows.append({**measure(net, None, 0.0), "checkpoint": None, "finetune": None})
        for s, name in zip(levels, names):
            say(f"sparsity {s:g}: {method} pruning ({scope} scope)")
            student = copy_model(net)
            masks = prune(student, s, scope=scope, keep_first=keep_first, keep_last=keep_last)
            tuned = None
            if finetune_epochs:
                if threads is not None:
                    torch.set_num_threads(threads)
                try:
                    tuned = finetune(student, masks, train_set, epochs=finetune_epochs, lr=lr,
                                     batch_size=batch_size,
                                     teacher=net if method == "agc" else None, beta=beta,
                                     attention_layers=attention_layers, seed=seed,
                                     progress=progress, log=say)
                finally:
                    torch.set_num_threads(previous_threads)
            if masks.violations(student):
                raise NeurodeployError(f"sparsity {s:g}: pruned weights became non-zero during "
                                       "fine-tuning")  # a bug, kept as a loud check
            row = measure(student, masks, s)
            row.update({"checkpoint": name, "finetune": tuned})
            rows.append(row)
            states[name] = {k: v.detach().clone() for k, v in student.state_dict().items()}
            say(f"  sparsity {row['achieved']['total']:.4f}: float accuracy "
                f"{row['accuracy']['float']:.4f}" + (
                    f", deployed {row['accuracy']['deployed']:.4f}, {row['cores']} cores, "
                    f"{row['synaptic_memory_bits']:,} synaptic memory bits"
                    if snn else ""))
    finally:
        torch.set_num_threads(previous_threads)
    for row in rows:
        row["saved"] = _saved(rows[0], row)
    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "model": str(ckpt), "kind": config["kind"],
        "method": method, "scope": scope, "keep_first": keep_first, "keep_last": keep_last,
        "sparsities": levels, "data": data, "samples": len(test_set),
        "target": tgt.name if tgt is not None else None,
        "energy_scope": rows[0].get("energy_scope"),
        "finetune": {"epochs": finetune_epochs, "optimizer": "adam", "lr": lr,
                     "batch_size": batch_size, "schedule": "cosine per iteration",
                     "loss": ("cross-entropy + (beta/2) sum_j mean (q_s - q_m)^2 over "
                              "L2-normalized attention maps sum_c A_c^2, A = spike count "
                              "over the time window" if method == "agc" else "cross-entropy"),
                     "beta": beta if method == "agc" else None,
                     "attention_layers": list(attention_layers) if attention_layers else None,
                     "seed": seed},
        "pruned_layers": list(prunable),
        "rows": rows, "notes": notes,
        "seconds": time.perf_counter() - t_start,
    }
    doc = jsonable(doc)

    def write(tmp: Path) -> None:
        import json

        for row in rows[1:]:
            name = row["checkpoint"]
            student = copy_model(net)
            student.load_state_dict(states[name])
            (tmp / name).mkdir()
            save_checkpoint(tmp / name / "model.pt", student, config, write_config=True,
                            metrics={"data": data, "test_accuracy": row["accuracy"]["float"],
                                     "pruned_from": str(ckpt), "method": method,
                                     "scope": scope, "sparsity": row["achieved"]["total"]})
        plot_pruning(tmp / "pruning.png", doc)
        (tmp / "pruning.json").write_text(json.dumps(doc, indent=1) + "\n")

    write_dir_atomic(out_dir, write)
    return {**doc, "out": str(out_dir)}


__all__ = [
    "AttentionRecorder", "DEFAULT_BETA", "DEFAULT_SPARSITIES", "METHODS", "Masks", "SCOPES",
    "attention_loss", "attention_map", "check_sparsity", "checkpoint_dir", "copy_model",
    "deploy",
    "finetune", "ir_zero_check", "magnitude_masks", "parse_sparsities", "plot_pruning",
    "prunable_weights", "prune", "run_pruning", "summary_table",
]
