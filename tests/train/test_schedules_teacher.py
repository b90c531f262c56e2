"""λ_u (eq. 10), the cosine α′ schedule, the LR schedule and the wEMA teacher update (eq. 11)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ugss.train.schedules import WarmupCosine, consistency_weight, cosine_decay, warmup_cosine_lr
from ugss.train.teacher import update_teacher, wema_update


def test_lambda_u_endpoints_and_midpoint():
    kw = {"initial": 0.1, "maximum": 0.6, "exponent": 2.0}
    assert consistency_weight(0, 100, **kw) == pytest.approx(0.1)
    assert consistency_weight(100, 100, **kw) == pytest.approx(0.6)
    assert consistency_weight(50, 100, **kw) == pytest.approx(0.1 + 0.25 * 0.5)
    assert consistency_weight(150, 100, **kw) == pytest.approx(0.6)  # clamped after the end


def test_cosine_decay_endpoints_and_midpoint():
    assert cosine_decay(0, 10, start=0.9, end=0.99) == pytest.approx(0.9)
    assert cosine_decay(10, 10, start=0.9, end=0.99) == pytest.approx(0.99)
    assert cosine_decay(5, 10, start=0.9, end=0.99) == pytest.approx(0.945)


def test_warmup_then_cosine_lr():
    assert warmup_cosine_lr(0, 100, 10, base=1.0) == pytest.approx(0.1)
    assert warmup_cosine_lr(9, 100, 10, base=1.0) == pytest.approx(1.0)
    assert warmup_cosine_lr(10, 100, 10, base=1.0) == pytest.approx(1.0)
    assert warmup_cosine_lr(55, 100, 10, base=1.0) == pytest.approx(0.5)
    assert warmup_cosine_lr(100, 100, 10, base=1.0, minimum=0.01) == pytest.approx(0.01)
    sched = WarmupCosine(100, 10, 1.0)
    sched.step_count = 42
    other = WarmupCosine(1, 0, 0.5)
    other.load_state_dict(sched.state_dict())
    assert other.lr() == sched.lr()


class OneParam(nn.Module):
    def __init__(self, w: float, buf: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w]))
        self.register_buffer("running", torch.tensor([buf]))


def test_wema_on_one_parameter_with_buffer_copy():
    teacher, student = OneParam(1.0, 5.0), OneParam(3.0, 7.0)
    # θ′ = 0.9·1 + 0.1·(0.25·3 + 0.75·1) = 0.9 + 0.15 = 1.05
    wema_update(teacher, student, decay=0.9, student_weight=0.25)
    assert teacher.w.item() == pytest.approx(1.05)
    assert teacher.running.item() == 7.0


def test_plain_ema_and_no_averaging():
    teacher, student = OneParam(1.0, 0.0), OneParam(3.0, 2.0)
    update_teacher("ema", teacher, student, decay=0.9, student_weight=0.25)
    assert teacher.w.item() == pytest.approx(0.9 * 1 + 0.1 * 3)  # w_s ignored: classic EMA
    update_teacher("none", teacher, student, decay=0.9, student_weight=0.25)
    assert teacher.w.item() == pytest.approx(3.0)


def test_effective_decay_is_the_plain_ema_the_update_amounts_to():
    from ugss.train.teacher import effective_decay

    teacher, student = OneParam(1.0, 0.0), OneParam(3.0, 0.0)
    d = effective_decay("wema", 0.9, 0.25)
    assert d == pytest.approx(0.9 + 0.1 * 0.75)
    wema_update(teacher, student, decay=0.9, student_weight=0.25)
    assert teacher.w.item() == pytest.approx(d * 1.0 + (1 - d) * 3.0)
    assert effective_decay("ema", 0.99, 0.25) == 0.99
    assert effective_decay("none", 0.99, 0.25) == 0.0
