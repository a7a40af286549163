"""Spiking layers for training in PyTorch: surrogate spike function, LIF/IF neurons with soft
reset in both of the seeds' update orders, BNTT, the output accumulator, input encoders and the
time-loop wrapper :class:`SpikingNet`.

Exact definitions: ``reference/algorithms.md`` §1–4. Time is 0-based. Every stateful layer
works on one time step per call and keeps its state between calls until :meth:`reset_state`
(``SpikingNet`` calls it at the start of every forward pass), so a network body is an ordinary
per-step ``nn.Module`` graph that ``torch.fx`` can trace (neuron layers are leaves).
``SpikingNet.run(..., start=, carry_state=)`` runs one period of a longer window (HIRE-SNN
training, truncated BPTT).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

#: Surrogate gradients ∂s/∂v of ``s = H(v)``, ``v = U/θ − 1``, by name.
SURROGATES = ("linear", "fast_sigmoid", "straight_through")
UPDATE_ORDERS = ("integrate_fire", "fire_integrate")
RESETS = ("subtract", "zero")


class _Spike(torch.autograd.Function):
    """Heaviside forward (strict ``v > 0``) with a chosen surrogate backward."""

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor, kind: str, scale: float) -> torch.Tensor:
        ctx.save_for_backward(v)
        ctx.kind, ctx.scale = kind, scale
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (v,) = ctx.saved_tensors
        if ctx.kind == "linear":  # triangle, "LinearSpike.gamma = 0.3"
            d = ctx.scale * torch.clamp(1.0 - v.abs(), min=0.0)
        elif ctx.kind == "fast_sigmoid":  # SuperSpike
            d = ctx.scale / (1.0 + 10.0 * v.abs()) ** 2
        else:  # straight through inside |v| < 1
            d = (v.abs() < 1.0).to(v.dtype) * ctx.scale
        return grad * d, None, None


def spike(v: torch.Tensor, surrogate: str = "linear", scale: float = 0.3) -> torch.Tensor:
    """``H(v)`` with ``H(0) = 0``; backward is the named surrogate times ``scale``.

    ``"linear"`` (default, the seeds'): ``scale·max(0, 1 − |v|)``; ``"fast_sigmoid"``:
    ``scale/(1 + 10|v|)²``; ``"straight_through"``: ``scale`` where ``|v| < 1``.
    """
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate {surrogate!r} must be one of {SURROGATES}")
    return _Spike.apply(v, surrogate, scale)


class StatefulModule(nn.Module):
    """A layer with per-sample state carried across time steps."""

    def reset_state(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def detach_state(self) -> None:
        """Cut the autograd history of the carried state, keeping its value (truncated BPTT).
        Layers whose state holds no tensor computed from the input need not override this."""


class LIF(StatefulModule):
    """Leaky integrate-and-fire with soft reset (reference/algorithms.md §2).

    Order A (``"integrate_fire"``)::

        U[t] = λ·U[t-1] + I[t];  s[t] = H(U[t]/θ − 1);  U[t] -= θ·s[t]   (or U[t] = 0 on "zero")

    Order B (``"fire_integrate"``)::

        s[t] = H(U[t-1]/θ − 1);  U[t] = λ·U[t-1] + I[t] − θ·s[t]

    ``U[-1] = 0``; the reset is detached from autograd (only the surrogate carries gradient).
    ``leak`` λ = 1 gives IF. ``learn_leak`` / ``learn_threshold`` make λ and θ per-layer
    trainable scalars (DIET/HIRE style). Shape-agnostic: works on ``(B, C, H, W)`` or ``(B, N)``.
    """

    def __init__(self, leak: float = 0.95, threshold: float = 1.0, *, reset: str = "subtract",
                 order: str = "integrate_fire", surrogate: str = "linear",
                 surrogate_scale: float = 0.3, learn_leak: bool = False,
                 learn_threshold: bool = False) -> None:
        super().__init__()
        if not 0.0 <= leak <= 1.0:
            raise ValueError(f"leak {leak} must be in [0, 1]")
        if threshold <= 0:
            raise ValueError(f"threshold {threshold} must be > 0")
        if reset not in RESETS:
            raise ValueError(f"reset {reset!r} must be one of {RESETS}")
        if order not in UPDATE_ORDERS:
            raise ValueError(f"order {order!r} must be one of {UPDATE_ORDERS}")
        if surrogate not in SURROGATES:
            raise ValueError(f"surrogate {surrogate!r} must be one of {SURROGATES}")
        self.reset, self.order = reset, order
        self.surrogate, self.surrogate_scale = surrogate, float(surrogate_scale)
        leak_t = torch.tensor(float(leak))
        thr_t = torch.tensor(float(threshold))
        if learn_leak:
            self.leak = nn.Parameter(leak_t)
        else:
            self.register_buffer("leak", leak_t)
        if learn_threshold:
            self.threshold = nn.Parameter(thr_t)
        else:
            self.register_buffer("threshold", thr_t)
        self.v: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return (f"leak={float(self.leak):g}, threshold={float(self.threshold):g}, "
                f"reset={self.reset}, order={self.order}, surrogate={self.surrogate}")

    def reset_state(self) -> None:
        self.v = None

    def detach_state(self) -> None:
        if self.v is not None:
            self.v = self.v.detach()

    def _fire(self, u: torch.Tensor) -> torch.Tensor:
        return spike(u / self.threshold - 1.0, self.surrogate, self.surrogate_scale)

    def _after_reset(self, u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        mask = s.detach()
        if self.reset == "subtract":
            return u - self.threshold.detach() * mask
        return u * (1.0 - mask)

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        v = self.v if self.v is not None else torch.zeros_like(current)
        if self.order == "integrate_fire":
            u = self.leak * v + current
            s = self._fire(u)
            self.v = self._after_reset(u, s)
        else:
            s = self._fire(v)
            self.v = self._after_reset(self.leak * v + current, s)
        return s


class IF(LIF):
    """Integrate-and-fire: :class:`LIF` with λ = 1 (conversion's neuron)."""

    def __init__(self, threshold: float = 1.0, **kwargs: Any) -> None:
        super().__init__(leak=1.0, threshold=threshold, **kwargs)


class BNTT(StatefulModule):
    """Batch Normalization Through Time (reference/algorithms.md §4): one ``BatchNorm`` per time
    step, affine with γ (init 1) and **no** β, ``eps=1e-4``, ``momentum=0.1``.

    Picks ``bn[t]`` by its own step counter (reset by :meth:`reset_state`). Running longer
    than ``timesteps`` raises: there is no statistic for ``t ≥ T``.
    """

    def __init__(self, num_features: int, timesteps: int, *, dims: int = 2, eps: float = 1e-4,
                 momentum: float = 0.1) -> None:
        super().__init__()
        if timesteps < 1:
            raise ValueError(f"timesteps {timesteps} must be >= 1")
        cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]
        self.bn = nn.ModuleList(
            cls(num_features, eps=eps, momentum=momentum, affine=True) for _ in range(timesteps)
        )
        for bn in self.bn:
            bn.bias = None  # the official code removes β
        self.timesteps = timesteps
        self.t = 0

    def reset_state(self) -> None:
        self.t = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.t >= self.timesteps:
            raise RuntimeError(
                f"BNTT layer has statistics for {self.timesteps} steps; cannot run step {self.t} "
                "(run with fewer time steps)")
        out = self.bn[self.t](z)
        self.t += 1
        return out

    def inference_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)`` of shape ``(T, C)`` used in ``eval()``:
        ``scale = γ/sqrt(σ²+ε)``, ``shift = −scale·μ``."""
        scale = torch.stack([bn.weight / torch.sqrt(bn.running_var + bn.eps) for bn in self.bn])
        mean = torch.stack([bn.running_mean for bn in self.bn])
        return scale.detach(), (-scale * mean).detach()


class Accumulator(StatefulModule):
    """Output accumulator: ``U[t] = U[t-1] + I[t]`` (no leak, threshold or BN); returns U."""

    def __init__(self) -> None:
        super().__init__()
        self.v: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.v = None

    def detach_state(self) -> None:
        if self.v is not None:
            self.v = self.v.detach()

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        self.v = current if self.v is None else self.v + current
        return self.v


# ------------------------------------------------------------------------------------------
# Encoders: called as encoder(x, t) -> input of step t
# ------------------------------------------------------------------------------------------


class DirectEncoder(nn.Module):
    """Direct (analog) input: the normalized image is the input current at every step."""

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return x


class PoissonEncoder(nn.Module):
    """Signed Poisson rate code (§1.1): ``s[t] = sign(x)·1[r·u ≤ |x|]``, fresh ``u ~ U[0,1)``
    per step. ``rescale`` r is 1 (Rathi/Sharmin) or 2 (BNTT/SAM). The backward pass is the
    straight-through identity (so SNN-crafted attacks see ∂s/∂x = 1).

    ``generator`` makes the spike trains reproducible."""

    def __init__(self, rescale: float = 1.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if rescale <= 0:
            raise ValueError(f"rescale {rescale} must be > 0")
        self.rescale = float(rescale)
        self.generator = generator

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        u = torch.rand(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
        s = torch.sign(x.detach()) * (self.rescale * u <= x.detach().abs()).to(x.dtype)
        return x + (s - x).detach()  # straight-through


class PeriodicEncoder(nn.Module):
    """Period-wise inputs (HIRE-SNN hook): the window of ``T`` steps is split into
    ``len(variants)`` equal periods; period ``p`` feeds ``inner(variants[p](x), t)``.

    ``variants`` are callables ``x -> x'`` (e.g. different crafted-noise versions of the
    input); ``inner`` is the per-step encoder (direct by default)."""

    def __init__(self, variants: Sequence[Callable[[torch.Tensor], torch.Tensor]],
                 timesteps: int, inner: nn.Module | None = None) -> None:
        super().__init__()
        if not variants:
            raise ValueError("PeriodicEncoder needs at least one input variant")
        self.variants = list(variants)
        self.timesteps = int(timesteps)
        self.inner = inner if inner is not None else DirectEncoder()
        self._cache: dict[int, torch.Tensor] = {}

    def period(self, t: int) -> int:
        n = len(self.variants)
        return min(t * n // self.timesteps, n - 1)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        if t == 0:
            self._cache = {}
        p = self.period(t)
        if p not in self._cache:
            self._cache[p] = self.variants[p](x)
        return self.inner(self._cache[p], t)


ENCODERS = {"direct": DirectEncoder, "poisson": PoissonEncoder}


class SpikingNet(nn.Module):
    """Time loop around a per-step ``body``: resets every stateful layer, then for
    ``t = 0 … T−1`` feeds ``encoder(x, t)`` through ``body``. The body ends in an
    :class:`Accumulator`; the logits are its value after ``T`` steps divided by ``T``.

    ``forward(x, timesteps=None)`` takes a batch ``(B, *input_shape)`` and returns ``(B, K)``.
    ``record=True`` in :meth:`run` also returns the per-step outputs of every LIF layer.
    """

    def __init__(self, body: nn.Module, timesteps: int, encoder: nn.Module | None = None) -> None:
        super().__init__()
        if timesteps < 1:
            raise ValueError(f"timesteps {timesteps} must be >= 1")
        self.body = body
        self.timesteps = int(timesteps)
        self.encoder = encoder if encoder is not None else DirectEncoder()

    def reset_state(self) -> None:
        for m in self.modules():
            if isinstance(m, StatefulModule):
                m.reset_state()

    def detach_state(self) -> None:
        """Detach every stateful layer's state from autograd (values kept)."""
        for m in self.modules():
            if isinstance(m, StatefulModule):
                m.detach_state()

    def run(self, x: torch.Tensor, timesteps: int | None = None, *, record: bool = False,
            start: int = 0, carry_state: bool = False
            ) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
        """``(logits, spikes)``; ``spikes[name]`` is the list over t of that LIF layer's
        output (only when ``record``).

        ``start`` and ``carry_state`` run one period of a longer window (HIRE-SNN): the
        steps are ``t = start … start+timesteps−1`` (the encoder gets these ``t`` and BNTT
        layers use these steps' statistics). With ``carry_state`` the layers' state continues
        from the previous call, detached from its autograd graph (truncated BPTT); else it
        starts from zero. The output :class:`Accumulator` restarts either way, so the logits
        are the output accumulated over these steps divided by their number. The defaults
        (``start=0``, no carry) are the ordinary full-window run.
        """
        steps = self.timesteps if timesteps is None else int(timesteps)
        if start < 0:
            raise ValueError(f"start step {start} must be >= 0")
        if carry_state:
            self.detach_state()
        else:
            self.reset_state()
        for m in self.modules():
            if isinstance(m, BNTT):
                m.t = int(start)
            elif isinstance(m, Accumulator):
                m.reset_state()
        spikes: dict[str, list[torch.Tensor]] = {}
        hooks = []
        if record:
            for name, m in self.body.named_modules():
                if isinstance(m, LIF):
                    spikes[name] = []
                    hooks.append(m.register_forward_hook(
                        lambda _m, _i, out, key=name: spikes[key].append(out)))
        try:
            out = None
            for t in range(start, start + steps):
                out = self.body(self.encoder(x, t))
        finally:
            for h in hooks:
                h.remove()
        return out / steps, spikes

    def forward(self, x: torch.Tensor, timesteps: int | None = None) -> torch.Tensor:
        return self.run(x, timesteps)[0]
