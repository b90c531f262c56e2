"""Schedules over training steps: λ_u (eq. 10), wEMA decay α′ (section 2.6), learning rate (3.4)."""

from __future__ import annotations

import math

import torch

from ugss.errors import ConfigError


def _progress(step: int, total: int) -> float:
    if total <= 0:
        raise ConfigError(f"total steps must be > 0, got {total}")
    return min(max(step / total, 0.0), 1.0)


def consistency_weight(
    step: int, total: int, *, initial: float = 0.0, maximum: float = 0.6, exponent: float = 2.0
) -> float:
    """Eq. 10: λ_u = α + (δ_c/δ_T)^e · (m − α), δ_c the global step, δ_T all steps of training.

    (δ_c/δ_T) ≤ 1, so a larger ``exponent`` ramps up *later*; the paper's sentence says the
    opposite, its formula says this.
    """
    return initial + _progress(step, total) ** exponent * (maximum - initial)


def cosine_decay(step: int, total: int, *, start: float = 0.9, end: float = 0.99) -> float:
    """α′ for the wEMA teacher: cos over [0, π] of the normalised step, from ``start`` to ``end``.

    α′ = end + (start − end)·(1 + cos(π·step/total))/2; the mean over training is
    (start + end)/2 ≈ 0.95, the paper's best value.
    """
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * _progress(step, total)))


def warmup_cosine_lr(
    step: int, total: int, warmup: int, *, base: float, minimum: float = 0.0
) -> float:
    """Linear warm-up over ``warmup`` steps to ``base``, then cosine decay to ``minimum``."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    span = max(total - warmup, 1)
    t = min(max((step - warmup) / span, 0.0), 1.0)
    return minimum + (base - minimum) * 0.5 * (1.0 + math.cos(math.pi * t))


class WarmupCosine:
    """LR schedule with a state dict, so ``--resume`` restores it exactly."""

    def __init__(self, total: int, warmup: int, base: float, minimum: float = 0.0) -> None:
        self.total, self.warmup, self.base, self.minimum = total, warmup, base, minimum
        self.step_count = 0

    def lr(self, step: int | None = None) -> float:
        s = self.step_count if step is None else step
        return warmup_cosine_lr(s, self.total, self.warmup, base=self.base, minimum=self.minimum)

    def apply(self, optimizer: torch.optim.Optimizer, step: int | None = None) -> float:
        lr = self.lr(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, float | int]:
        return {
            "total": self.total,
            "warmup": self.warmup,
            "base": self.base,
            "minimum": self.minimum,
            "step_count": self.step_count,
        }

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.total = int(state["total"])
        self.warmup = int(state["warmup"])
        self.base = float(state["base"])
        self.minimum = float(state["minimum"])
        self.step_count = int(state["step_count"])
