"""Train zoo models (SNNs with BPTT through the surrogate spike, and their ANN twins) on the
offline datasets of :mod:`neurodeploy.models.data`, and evaluate them.

:func:`train` builds the model from a zoo config, trains it with cross-entropy on the logits
(an SNN's forward pass already loops over its time steps, so backpropagation is BPTT), and
writes ``model.pt`` (via :func:`~neurodeploy.models.checkpoint.save_checkpoint`),
``config.json`` and ``train.json`` atomically into ``out_dir``: everything is written into a
temporary folder beside it and renamed at the end, so a failure or interruption leaves nothing.

Tuned defaults (:data:`DEFAULTS`, measured on ``mnist5k`` with the default BNTT ``cnn``, seed
0, 1 CPU thread): Adam, learning rate 3e-3 decayed to 0 by a per-iteration cosine, batch 32,
T = 6, 6 epochs: 97.2 % test accuracy in 1.9 minutes on an idle 2-core machine (an
8-epoch run took 8.5 minutes with the load average at 10). Adam was chosen over BNTT's recipe (SGD with
momentum 0.9 and weight decay 1e-4, reference/algorithms.md §4.3; ``optimizer="sgd"``, same
cosine decay instead of the step decay), which reached 96.8 % with lr 0.1 in the same 6 epochs.
T = 4 gives about the same accuracy (97.5 %) 25 % faster; T = 6 is kept for a finer rate code
after quantization. Accuracy plateaus after about 5 epochs (training accuracy reaches ~100 %).

HIRE-SNN (``train(..., hire={"periods": N, "eps": ε})``, reference/algorithms.md §9): every
mini-batch is run as ``N`` periods of ``T/N`` steps; each period sees the input plus crafted
noise ``δ`` (pixel units, ``|δ| ≤ ε``, image clipped to the pixel range), takes its own
optimizer step on the cross-entropy of the output accumulated over the period, and updates
``δ ← clip(δ + ε·sign(∇_x L), −ε, ε)`` for the next period (:func:`hire_batch`). Evaluation is
the ordinary full-window run on clean inputs, so the result is an ordinary checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from neurodeploy.errors import NeurodeployError, UnsupportedError
from neurodeploy.outdir import write_dir_atomic

from .data import Dataset, load_splits, make_loader, pixel_max

#: Tuned defaults: the small BNTT CNN (``cnn``, direct encoding) on ``mnist5k`` reaches ≥ 95 %
#: test accuracy (97.2 % measured) in a few minutes on 2 CPU cores (``bench/bench_train.py``).
DEFAULTS: dict[str, Any] = {
    "model": "cnn",
    "data": "mnist5k",
    "timesteps": 6,
    "bntt": True,
    "encoder": "direct",
    "epochs": 6,
    "batch_size": 32,
    "lr": 3e-3,
    "optimizer": "adam",
    "seed": 0,
    "threads": 1,
}
OPTIMIZERS = ("adam", "sgd")
#: SGD settings of BNTT's recipe (reference/algorithms.md §4.3).
SGD_MOMENTUM = 0.9
SGD_WEIGHT_DECAY = 1e-4
#: Batch size used by :func:`evaluate` and for the final accuracies.
EVAL_BATCH_SIZE = 256
#: HIRE-SNN options (reference/algorithms.md §9) and their defaults; ``periods`` is required.
#: ``eps``: noise bound in pixel units (the pixel range maps to [0, 1]); ``carry_state``:
#: neuron states continue into the next period, detached (truncated BPTT), else they restart
#: at 0; ``carry_noise``: δ is carried across mini-batches ("free" adversarial training), else
#: it restarts at 0 for every batch; ``pixel_range``: ``(low, high)`` of the raw inputs in the
#: dataset's source units (e.g. ``(0, 255)``), ``None`` = ``(0, R)`` (see :func:`pixel_box`).
HIRE_DEFAULTS: dict[str, Any] = {"periods": None, "eps": 8 / 255, "carry_state": True,
                                 "carry_noise": False, "pixel_range": None}


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = EVAL_BATCH_SIZE, *,
             device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy (fraction in [0, 1]) of ``model`` on ``dataset`` in ``eval()`` mode.

    ``model(x)`` must map a batch ``(B, *dataset.in_shape)`` to logits ``(B, K)``. The model's
    train/eval mode is restored afterwards.
    """
    if len(dataset) == 0:
        raise NeurodeployError(f"cannot evaluate on an empty dataset ({dataset.name})")
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for x, y in make_loader(dataset, batch_size):
                logits = model(x.to(device))
                correct += int((logits.argmax(dim=1).cpu() == y).sum())
    finally:
        model.train(was_training)
    return correct / len(dataset)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NeurodeployError(f"output {out_dir} exists and is not a folder; choose another "
                               "--out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise NeurodeployError(f"output folder {out_dir} is not empty; choose another --out or "
                               "pass overwrite=True (--overwrite)")


def _resolve_config(config: Mapping[str, Any] | str, train_set: Dataset,
                    timesteps: int | None, kind: str) -> dict[str, Any]:
    from .zoo import default_config, validate_config

    if isinstance(config, str):
        return default_config(
            config, in_shape=train_set.in_shape, num_classes=train_set.num_classes,
            timesteps=timesteps if timesteps is not None else DEFAULTS["timesteps"],
            kind=kind, bntt=DEFAULTS["bntt"], encoder=DEFAULTS["encoder"])
    config = validate_config(config)
    shape = config.get("in_shape")
    if shape is not None and tuple(shape) != tuple(train_set.in_shape):
        raise NeurodeployError(
            f"model config expects inputs of shape {tuple(shape)} but dataset "
            f"{train_set.name!r} has {tuple(train_set.in_shape)}; build the config with "
            f"in_shape={tuple(train_set.in_shape)} (or resize the images)")
    classes = config.get("num_classes")
    if classes is not None and int(classes) < train_set.num_classes:
        raise NeurodeployError(
            f"model config has {classes} classes but dataset {train_set.name!r} has "
            f"{train_set.num_classes}; build the config with num_classes="
            f"{train_set.num_classes}")
    return config


def _make_optimizer(name: str, params: Any, lr: float,
                    weight_decay: float | None) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay or 0.0)
    if name == "sgd":
        wd = SGD_WEIGHT_DECAY if weight_decay is None else weight_decay
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, weight_decay=wd)
    raise NeurodeployError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")


def _data_summary(spec: Any, train_set: Dataset, test_set: Dataset,
                  split_seed: int) -> dict[str, Any]:
    return {
        "spec": spec if isinstance(spec, str) else (
            os.fspath(spec) if isinstance(spec, os.PathLike) else train_set.name),
        "name": train_set.name,
        "train_samples": len(train_set),
        "test_samples": len(test_set),
        "in_shape": list(train_set.in_shape),
        "num_classes": train_set.num_classes,
        "normalization": {"mean": list(train_set.normalization[0]),
                          "std": list(train_set.normalization[1])},
        "split_seed": split_seed,
    }


# ------------------------------------------------------------------------------------------
# HIRE-SNN
# ------------------------------------------------------------------------------------------


def hire_options(hire: Mapping[str, Any] | None, timesteps: int) -> dict[str, Any] | None:
    """Validated HIRE-SNN options (``None`` = off) with :data:`HIRE_DEFAULTS` filled in, plus
    ``steps_per_period`` = ``timesteps // periods``.

    Raises :class:`NeurodeployError` naming the option: unknown keys, ``periods`` missing, not
    an integer ≥ 1 or not dividing ``timesteps``, ``eps`` outside [0, 1] (pixel units; 0 = no
    noise, only the period-wise updates), flags that are not booleans, a bad ``pixel_range``.
    """
    if hire is None:
        return None
    if not isinstance(hire, Mapping):
        raise NeurodeployError(f"hire must be a dict such as {{'periods': 2, 'eps': 8/255}}, "
                               f"not {type(hire).__name__}")
    unknown = sorted(set(hire) - set(HIRE_DEFAULTS))
    if unknown:
        raise NeurodeployError(f"unknown HIRE option(s) {', '.join(map(repr, unknown))}; "
                               f"known: {', '.join(HIRE_DEFAULTS)}")
    opts = {**HIRE_DEFAULTS, **hire}
    n = opts["periods"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise NeurodeployError(f"HIRE periods ({n!r}) must be an integer >= 1 (--hire N)")
    if timesteps % n:
        divisors = [d for d in range(1, timesteps + 1) if timesteps % d == 0]
        raise NeurodeployError(
            f"HIRE periods ({n}) must divide the model's time steps T ({timesteps}); choose "
            f"one of {divisors}")
    eps = opts["eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 <= eps <= 1.0:
        raise NeurodeployError(f"HIRE eps ({eps!r}) must be a number in [0, 1] in pixel units "
                               "(--hire-eps; 8/255 = 0.0314 is the paper's)")
    for key in ("carry_state", "carry_noise"):
        if not isinstance(opts[key], bool):
            raise NeurodeployError(f"HIRE option {key} ({opts[key]!r}) must be True or False")
    rng = opts["pixel_range"]
    if rng is not None:
        ok = (isinstance(rng, (tuple, list)) and len(rng) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                      and math.isfinite(v) for v in rng) and rng[0] < rng[1])
        if not ok:
            raise NeurodeployError(f"HIRE pixel_range ({rng!r}) must be (low, high) with "
                                   "low < high, in the dataset's source units, e.g. (0, 255)")
        rng = [float(rng[0]), float(rng[1])]
    return {"periods": n, "eps": float(eps), "carry_state": opts["carry_state"],
            "carry_noise": opts["carry_noise"], "pixel_range": rng,
            "steps_per_period": timesteps // n}


@dataclass(frozen=True)
class PixelBox:
    """The pixel range in a dataset's normalized units, per channel, shaped to broadcast over a
    batch ``(B, C, H, W)`` or ``(B, F)``.

    ``origin``: the normalized value of pixel 0 (raw ``pixel_range[0]``); ``unit``: the
    normalized size of the whole pixel range (``(high − low)/std``), so pixel ``p ∈ [0, 1]``
    is ``origin + p·unit``; ``low``/``high``: the clipping bounds, the range's ends widened to
    the data's own min/max so that float rounding never clips a clean input; ``pixel_range``:
    ``(low, high)`` in source units.
    """

    origin: torch.Tensor
    unit: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    pixel_range: tuple[float, float]

    def perturb(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``normalize(clip(pixels(x) + delta, 0, 1))`` for normalized ``x`` and ``delta`` in
        pixel units (same shape): ``clamp(x + delta·unit, low, high)``. ``delta = 0`` gives
        ``x`` exactly."""
        return torch.maximum(torch.minimum(x + delta * self.unit, self.high), self.low)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized ``x`` in pixel units (0 … 1 over ``pixel_range``)."""
        return (x - self.origin) / self.unit

    def to(self, device: str | torch.device) -> PixelBox:
        """The same box with its tensors on ``device``."""
        return PixelBox(self.origin.to(device), self.unit.to(device), self.low.to(device),
                        self.high.to(device), self.pixel_range)


def pixel_box(dataset: Dataset, pixel_range: tuple[float, float] | None = None) -> PixelBox:
    """:class:`PixelBox` of ``dataset``, from its ``normalization`` (``x = (raw − mean)/std``).

    ``pixel_range``: ``(low, high)`` of raw values in the source's units. ``None`` gives
    ``(0, R)`` with the dataset's full scale ``R`` (:func:`~neurodeploy.models.data.pixel_max`,
    the same one attacks use). Raises :class:`NeurodeployError` for data with negative raw values (no pixel
    scale) unless ``pixel_range`` is given.
    """
    mean, std = (torch.tensor(v, dtype=torch.float64) for v in dataset.normalization)
    x = dataset.x
    per_channel = x.dim() >= 2 and mean.numel() == x.shape[1] and mean.numel() > 1
    shape = (1, -1) + (1,) * (x.dim() - 2) if per_channel else (1,) * x.dim()
    mean, std = mean.reshape(shape), std.reshape(shape)
    if pixel_range is None:
        try:
            full = pixel_max(dataset)
        except UnsupportedError as err:
            raise NeurodeployError(f"{err}; pass hire={{'pixel_range': (low, high), ...}} in "
                                   "its units") from None
        pixel_range = (0.0, full)
    lo, hi = float(pixel_range[0]), float(pixel_range[1])
    origin = ((lo - mean) / std).float()
    end = ((hi - mean) / std).float()
    unit = ((hi - lo) / std).float()
    low, high = origin, end
    if len(x):
        axes = [d for d in range(x.dim()) if not (per_channel and d == 1)]
        low = torch.minimum(origin, x.amin(dim=axes, keepdim=True))
        high = torch.maximum(end, x.amax(dim=axes, keepdim=True))
    return PixelBox(origin=origin, unit=unit, low=low, high=high, pixel_range=(lo, hi))


@dataclass
class HireBatch:
    """What :func:`hire_batch` did: ``delta`` (pixel units, the batch's shape) after the last
    period's update, ``losses`` (per period, floats), ``logits`` ``(B, K)`` (mean of the
    periods' logits, which is the whole window's accumulator / T when state is carried;
    detached)."""

    delta: torch.Tensor
    losses: list[float]
    logits: torch.Tensor


def hire_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               optimizer: torch.optim.Optimizer, *, periods: int, eps: float, box: PixelBox,
               delta: torch.Tensor | None = None, carry_state: bool = True,
               loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
               ) -> HireBatch:
    """One HIRE-SNN mini-batch (reference/algorithms.md §9): ``periods`` optimizer steps.

    ``model``: a :class:`~neurodeploy.models.layers.SpikingNet` with ``T`` steps (``periods``
    must divide ``T``); ``x``: normalized inputs ``(B, *in_shape)``; ``y``: labels ``(B,)``;
    ``delta``: starting noise in pixel units (``None`` = 0; a carried δ of another batch size
    is cut or zero-padded); ``eps``: the bound of ``|δ|`` in pixel units.

    For ``n = 0 … periods−1``: the input ``x_n = box.perturb(x, δ)`` (the image plus δ, clipped
    to the pixel range) runs steps ``n·T/N … (n+1)·T/N − 1`` (:meth:`SpikingNet.run` with
    ``start``: BNTT uses those steps' statistics; states carried and detached when
    ``carry_state``, else restarted at 0); ``L_n`` is ``loss_fn`` (default cross-entropy) of
    the output accumulated over the period divided by ``T/N``. One backward pass gives the
    weight gradients (then one optimizer step) and ``∇ L_n`` with respect to ``x_n``, whose
    sign (the same in pixel and normalized units) updates ``δ ← clip(δ + ε·sign(∇ L_n), −ε,
    ε)`` ("free" adversarial training: the noise gradient comes from the same pass, before
    the step). With ``eps = 0`` δ stays 0 and no input gradient is computed.
    """
    from .layers import SpikingNet

    if not isinstance(model, SpikingNet):
        raise NeurodeployError(f"HIRE training needs a SpikingNet (a zoo SNN), not "
                               f"{type(model).__name__}")
    steps = model.timesteps // max(periods, 1)
    if periods < 1 or steps * periods != model.timesteps:
        raise NeurodeployError(f"HIRE periods ({periods}) must divide the model's time steps "
                               f"({model.timesteps})")
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    if delta is None:
        delta = torch.zeros_like(x)
    elif delta.shape != x.shape:
        fitted = torch.zeros_like(x)
        k = min(len(delta), len(x))
        fitted[:k] = delta[:k].to(fitted)
        delta = fitted
    want_grad = eps > 0
    losses: list[float] = []
    logit_sum: torch.Tensor | None = None
    for n in range(periods):
        xn = box.perturb(x, delta).detach().requires_grad_(want_grad)
        logits, _ = model.run(xn, steps, start=n * steps, carry_state=carry_state and n > 0)
        loss = loss_fn(logits, y)
        if not torch.isfinite(loss):
            raise NeurodeployError(f"training diverged (loss {float(loss)}) in HIRE period "
                                   f"{n + 1}/{periods}; lower the learning rate or eps")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if want_grad:
            assert xn.grad is not None  # xn is a leaf that requires grad
            delta = (delta + eps * torch.sign(xn.grad)).clamp(-eps, eps)
        losses.append(float(loss))
        logit_sum = logits.detach() if logit_sum is None else logit_sum + logits.detach()
    assert logit_sum is not None  # periods >= 1
    return HireBatch(delta=delta.detach(), losses=losses, logits=logit_sum / periods)


def train(config: Mapping[str, Any] | str = DEFAULTS["model"],
          data: str | os.PathLike | tuple[Dataset, Dataset] = DEFAULTS["data"], *,
          out_dir: str | os.PathLike,
          epochs: int = DEFAULTS["epochs"], batch_size: int = DEFAULTS["batch_size"],
          lr: float = DEFAULTS["lr"], optimizer: str = DEFAULTS["optimizer"],
          weight_decay: float | None = None, seed: int = DEFAULTS["seed"],
          split_seed: int = 0, timesteps: int | None = None, kind: str = "snn",
          image_size: int | tuple[int, int] | None = None, progress: bool = True,
          max_minutes: float | None = None, overwrite: bool = False,
          device: str | torch.device = "cpu", threads: int | None = DEFAULTS["threads"],
          model: nn.Module | None = None,
          hire: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train a zoo model and write ``out_dir/{model.pt, config.json, train.json}``.

    ``config``: a zoo config dict (``zoo.default_config``; SNN or ANN twin, ``kind="ann"``) or a
    zoo model name, built as ``kind`` (``"snn"`` or its ANN twin ``"ann"``) for the dataset's
    input shape and classes with :data:`DEFAULTS`' time steps (or ``timesteps``), BNTT and
    encoder. ``data``: a dataset spec for
    :func:`~neurodeploy.models.data.load_splits` (split with ``split_seed``, images resized to
    ``image_size`` pixels) or a ready ``(train, test)`` pair of datasets.

    Training: ``epochs`` passes over the training split in shuffled mini-batches of
    ``batch_size`` (loader and weights seeded with ``seed``), cross-entropy on the logits,
    ``optimizer`` ``"adam"`` or ``"sgd"`` (momentum 0.9, weight decay 1e-4 unless
    ``weight_decay``) with learning rate ``lr`` decayed to 0 by a per-iteration cosine.
    ``max_minutes`` (wall-clock minutes) stops training early after the batch that exceeds it;
    the model is still evaluated and saved, with ``"stopped_early": true``. ``model`` trains
    an already built model for ``config`` instead of building a new one. ``threads`` sets
    PyTorch's intra-op CPU threads for the run (restored afterwards; ``None`` keeps the current
    setting). The default is 1: on a busy 2-core machine two threads made a training step of
    the default CNN 8–20× slower (OpenMP workers spin while competing for cores), and one
    thread costs little when idle because the layers are small.

    ``hire``: HIRE-SNN training (SNNs only; options and defaults in :data:`HIRE_DEFAULTS`,
    e.g. ``{"periods": 2, "eps": 8/255}``): every mini-batch takes ``periods`` optimizer steps,
    one per period of ``T/periods`` steps with its own crafted input noise
    (:func:`hire_batch`); the learning rate follows the same per-batch cosine. Test accuracy is
    still the full-window run on clean inputs, and ``config.json`` is unchanged.

    Returns the ``train.json`` dict: ``test_accuracy`` and ``train_accuracy`` (fractions, in
    eval mode), ``history`` (per epoch: mean ``loss``, running ``accuracy`` in train mode,
    ``test_accuracy``, ``lr`` at the epoch's end, ``seconds``), ``seconds`` (whole run),
    ``seed``, ``data``, ``config``, ``hyperparameters``, ``hire`` (the resolved options with
    ``steps_per_period`` and ``pixel_range``, or ``None``), ``optimizer_steps`` and
    ``out_dir``.

    Raises :class:`NeurodeployError` for a non-empty ``out_dir`` without ``overwrite``, bad
    hyper-parameters or a config that does not fit the data (before any training).
    """
    if threads is not None and threads < 1:
        raise NeurodeployError(f"threads ({threads}) must be >= 1")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(config, data, out_dir=Path(out_dir), epochs=epochs, batch_size=batch_size,
                      lr=lr, optimizer=optimizer, weight_decay=weight_decay, seed=seed,
                      split_seed=split_seed, timesteps=timesteps, kind=kind,
                      image_size=image_size, progress=progress, max_minutes=max_minutes,
                      overwrite=overwrite, device=device, model=model, hire=hire)
    finally:
        torch.set_num_threads(previous_threads)


def _train(config: Mapping[str, Any] | str, data: Any, *, out_dir: Path, epochs: int,
           batch_size: int, lr: float, optimizer: str, weight_decay: float | None, seed: int,
           split_seed: int, timesteps: int | None, kind: str, image_size: Any, progress: bool,
           max_minutes: float | None, overwrite: bool, device: str | torch.device,
           model: nn.Module | None, hire: Mapping[str, Any] | None) -> dict[str, Any]:
    start = time.perf_counter()
    _check_out_dir(out_dir, overwrite)
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise NeurodeployError(f"epochs ({epochs}) and batch size ({batch_size}) must be >= 1 "
                               f"and the learning rate ({lr}) > 0")
    if optimizer not in OPTIMIZERS:
        raise NeurodeployError(f"unknown optimizer {optimizer!r}; use one of "
                               f"{', '.join(OPTIMIZERS)}")
    if max_minutes is not None and not max_minutes > 0:
        raise NeurodeployError(f"max_minutes ({max_minutes}) must be > 0")

    if isinstance(data, tuple):
        train_set, test_set = data
    else:
        train_set, test_set = load_splits(data, seed=split_seed, image_size=image_size)
    config = _resolve_config(config, train_set, timesteps, kind)
    box = None
    if hire is not None:
        if config.get("kind") != "snn":
            raise NeurodeployError("HIRE training (hire=...) needs an SNN; the config is an "
                                   f"{config.get('kind')!r} model (drop --ann)")
        hire = hire_options(hire, int(config["timesteps"]))
        assert hire is not None
        box = pixel_box(train_set, hire["pixel_range"])
        hire["pixel_range"] = list(box.pixel_range)

    from .checkpoint import save_checkpoint

    torch.manual_seed(seed)
    if model is None:
        from .zoo import build_model

        model = build_model(config)
    if hire is not None:
        from .layers import SpikingNet

        if not isinstance(model, SpikingNet) or model.timesteps % hire["periods"]:
            raise NeurodeployError(
                f"HIRE training needs a SpikingNet whose time steps the periods "
                f"({hire['periods']}) divide; got {type(model).__name__}"
                f"{f' with T = {model.timesteps}' if isinstance(model, SpikingNet) else ''}")
    model.to(device)
    model.train()
    loader = make_loader(train_set, batch_size, shuffle=True, seed=seed)
    opt = _make_optimizer(optimizer, model.parameters(), lr, weight_decay)
    total_steps = epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1.0 + math.cos(math.pi * min(i, total_steps) / total_steps)))
    loss_fn = nn.CrossEntropyLoss()
    deadline = None if max_minutes is None else start + 60.0 * max_minutes

    history: list[dict[str, float]] = []
    stopped_early = False
    optimizer_steps = 0
    delta: torch.Tensor | None = None
    if box is not None:
        box = box.to(device)
    tag = "" if hire is None else f" (HIRE N={hire['periods']}, eps={hire['eps']:.4g})"
    for epoch in range(epochs):
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}{tag}", disable=not progress,
                   leave=False, unit="batch")
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            if hire is None:
                logits = model(x)
                loss = loss_fn(logits, y)
                if not torch.isfinite(loss):
                    raise NeurodeployError(
                        f"training diverged (loss {float(loss)}) in epoch {epoch + 1}; lower "
                        f"the learning rate (now {lr})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                optimizer_steps += 1
                batch_loss = float(loss)
            else:
                assert box is not None
                step = hire_batch(model, x, y, opt, periods=hire["periods"], eps=hire["eps"],
                                  box=box, delta=delta if hire["carry_noise"] else None,
                                  carry_state=hire["carry_state"], loss_fn=loss_fn)
                delta = step.delta
                logits = step.logits
                optimizer_steps += hire["periods"]
                batch_loss = sum(step.losses) / len(step.losses)
            sched.step()
            loss_sum += batch_loss * len(y)
            correct += int((logits.detach().argmax(dim=1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            if deadline is not None and time.perf_counter() > deadline:
                stopped_early = True
                break
        bar.close()
        test_acc = evaluate(model, test_set, device=device)
        model.train()
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(seen, 1),
                        "accuracy": correct / max(seen, 1), "test_accuracy": test_acc,
                        "lr": opt.param_groups[0]["lr"],
                        "seconds": time.perf_counter() - t0})
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{epochs}{tag}: loss {history[-1]['loss']:.4f}, "
                       f"train acc {history[-1]['accuracy']:.4f}, test acc {test_acc:.4f}")
        if stopped_early:
            break

    model.eval()
    result: dict[str, Any] = {
        "test_accuracy": history[-1]["test_accuracy"],
        "train_accuracy": evaluate(model, train_set, device=device),
        "history": history,
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "seed": seed,
        "data": _data_summary(data, train_set, test_set, split_seed),
        "config": config,
        "hyperparameters": {
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
            "weight_decay": (weight_decay if weight_decay is not None
                             else (SGD_WEIGHT_DECAY if optimizer == "sgd" else 0.0)),
            "momentum": SGD_MOMENTUM if optimizer == "sgd" else None,
            "schedule": "cosine per iteration", "loss": (
                "cross-entropy on logits" if hire is None else
                "cross-entropy on each HIRE period's logits (mean over periods reported)"),
            "max_minutes": max_minutes,
        },
        "hire": hire,
        "optimizer_steps": optimizer_steps,
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "device": str(device), "threads": torch.get_num_threads()},
    }
    result["seconds"] = time.perf_counter() - start

    def write(tmp: Path) -> None:
        metrics = {"test_accuracy": result["test_accuracy"],
                   "train_accuracy": result["train_accuracy"], "data": result["data"]["spec"],
                   "seed": seed, "normalization_mean": list(train_set.normalization[0]),
                   "normalization_std": list(train_set.normalization[1])}
        if hire is not None:
            metrics.update(hire_periods=hire["periods"], hire_eps=hire["eps"])
        model.cpu()
        save_checkpoint(tmp / "model.pt", model, config, metrics=metrics, write_config=True)
        if not (tmp / "config.json").is_file():
            (tmp / "config.json").write_text(json.dumps(config, indent=2, default=_json_default))
        result["seconds"] = time.perf_counter() - start
        (tmp / "train.json").write_text(
            json.dumps(result, indent=2, default=_json_default) + "\n")
        _check_out_dir(out_dir, overwrite)  # something may have appeared while training

    write_dir_atomic(out_dir, write)
    result["out_dir"] = str(out_dir)
    return result


def _json_default(value: Any) -> Any:
    """JSON for tuples-in-configs' leftovers: tensors and numpy scalars/arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
