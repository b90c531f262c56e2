"""The teacher: Monte Carlo uncertainty (eq. 2–3) and the weighted-EMA update (eq. 11)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ugss.errors import ConfigError
from ugss.train.kinds import TeacherUpdate, choice
from ugss.train.losses import entropy_bits, mc_mean
from ugss.train.model import ResUNet


@dataclass(frozen=True)
class TeacherOutput:
    """Mean foreground probability p (eq. 2) and its entropy û in bits (eq. 3), ``(N, 1, H, W)``."""

    prob: torch.Tensor
    uncertainty: torch.Tensor


@torch.no_grad()
def teacher_mc(
    teacher: ResUNet,
    x: torch.Tensor,
    samples: int = 8,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> TeacherOutput:
    """T stochastic passes batched in one forward: trunk once, the part after dropout T times.

    ``noise_std`` adds N(0, σ²) to the teacher's input: this project's choice, as in common
    mean-teacher code, not the paper's (which perturbs the teacher only by its dropout).
    The teacher runs with BatchNorm in eval mode (its statistics are the copied student's) and
    dropout on, which is what ``mc`` means.
    """
    if noise_std > 0:
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = x + noise_std * eps
    logits = teacher.mc_logits(x, samples).float()
    p = mc_mean(torch.sigmoid(logits))
    return TeacherOutput(prob=p, uncertainty=entropy_bits(p))


@torch.no_grad()
def teacher_mc_sequential(teacher: ResUNet, x: torch.Tensor, samples: int = 8) -> TeacherOutput:
    """The same estimate as ``teacher_mc`` from T full passes (the benchmark's reference)."""
    probs = torch.stack([torch.sigmoid(teacher(x, mc=True).float()) for _ in range(samples)])
    p = mc_mean(probs)
    return TeacherOutput(prob=p, uncertainty=entropy_bits(p))


def make_teacher(student: nn.Module) -> ResUNet:
    """A frozen copy of the student (θ′₀ = θ₀)."""
    teacher = ResUNet(student.config)  # type: ignore[arg-type]
    teacher.load_state_dict(student.state_dict())
    teacher.to(next(student.parameters()).device)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


@torch.no_grad()
def wema_update(
    teacher: nn.Module,
    student: nn.Module,
    decay: float,
    student_weight: float = 1.0,
) -> None:
    """Eq. 11: θ′ ← α′θ′ + (1−α′)(w_s·θ + w_t·θ′), w_t = 1 − w_s; buffers are copied.

    Note that with w_s + w_t = 1 this equals an EMA with decay α′ + (1−α′)·w_t: w_s = 1 is the
    classic mean-teacher EMA, smaller w_s makes the teacher slower. BatchNorm running statistics
    and counters are copied from the student (they are not parameters and have no gradient).
    """
    if not 0.0 <= decay <= 1.0:
        raise ConfigError(f"teacher decay must be in [0, 1], got {decay}")
    if not 0.0 <= student_weight <= 1.0:
        raise ConfigError(f"wEMA student weight w_s must be in [0, 1], got {student_weight}")
    w_s = student_weight
    w_t = 1.0 - w_s
    t_params = list(teacher.parameters())
    s_params = list(student.parameters())
    for tp, sp in zip(t_params, s_params, strict=True):
        mixed = w_s * sp.detach() + w_t * tp
        tp.mul_(decay).add_(mixed, alpha=1.0 - decay)
    for tb, sb in zip(teacher.buffers(), student.buffers(), strict=True):
        tb.copy_(sb)


def effective_decay(kind: str, decay: float, student_weight: float) -> float:
    """The plain-EMA decay the update of ``kind`` amounts to: θ′ ← d·θ′ + (1−d)·θ.

    ``wema``: d = α′ + (1−α′)·w_t (eq. 11 with w_s + w_t = 1); ``ema``: d = α′; ``none``: 0.
    """
    update = choice(TeacherUpdate, kind, "teacher update")
    if update == TeacherUpdate.WEMA:
        return decay + (1.0 - decay) * (1.0 - student_weight)
    return decay if update == TeacherUpdate.EMA else 0.0


def update_teacher(
    kind: str,
    teacher: nn.Module,
    student: nn.Module,
    *,
    decay: float,
    student_weight: float,
) -> None:
    """``none``: θ′ = θ (no averaging); ``ema``: eq. 11 with w_s = 1; ``wema``: eq. 11 with w_s."""
    update = choice(TeacherUpdate, kind, "teacher update")
    if update == TeacherUpdate.NONE:
        wema_update(teacher, student, 0.0, 1.0)
    elif update == TeacherUpdate.EMA:
        wema_update(teacher, student, decay, 1.0)
    else:
        wema_update(teacher, student, decay, student_weight)
