"""The step losses: what each method feeds the student and compares it with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ugss.errors import ConfigError
from ugss.train.config import DataConfig, MethodConfig, TrainConfig
from ugss.train.data import Batch
from ugss.train.losses import weighted_bce
from ugss.train.model import ModelConfig, ResUNet
from ugss.train.step import (
    StepSettings,
    box_masks,
    compute_loss,
    cutmix_pairs,
    derangement,
    lesion_boxes,
    random_boxes,
)
from ugss.train.teacher import make_teacher


def test_random_boxes_cover_the_requested_area():
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 50, 32, area=(0.25, 0.5))
    areas = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2]) / 32**2
    assert np.all((areas > 0.2) & (areas < 0.56))
    assert np.all(boxes[:, [0, 2]] >= 0) and np.all(boxes[:, [1, 3]] <= 32)


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_cutmix_pairs_are_a_uniform_derangement(n):
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(600):
        perm = derangement(rng, n)
        assert sorted(perm.tolist()) == list(range(n))
        assert not np.any(perm == np.arange(n)), perm  # nobody is paired with itself
        seen.add(tuple(perm.tolist()))
    if n <= 4:  # every derangement turns up: 1, 2, 9 of them
        assert len(seen) == {2: 1, 3: 2, 4: 9}[n]
    assert derangement(rng, 1).tolist() == [0]


def test_every_cutmix_crop_takes_its_box_from_another_crop():
    rng = np.random.default_rng(1)
    pool = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1).expand(4, 3, 16, 16)
    for _ in range(50):
        mix = cutmix_pairs(rng, pool)
        mixed = mix.apply(pool)
        inside = mix.box.expand_as(pool) > 0
        for i in range(4):
            assert inside[i].any()
            assert torch.all(mixed[i][inside[i]] != i)  # the box holds another crop's pixels
            assert torch.all(mixed[i][~inside[i]] == i)


def test_lesion_boxes_enclose_the_hemorrhage():
    masks = torch.zeros(2, 1, 32, 32)
    masks[0, 0, 10:13, 20:22] = 1
    boxes = lesion_boxes(np.random.default_rng(0), masks, margin=2, min_side=8)
    r0, r1, c0, c1 = boxes[0]
    assert r0 <= 8 and r1 >= 15 and c0 <= 18 and c1 >= 24
    assert r1 - r0 >= 8 and c1 - c0 >= 8
    m = box_masks(boxes, 32, masks)
    assert torch.all(m[0, 0][masks[0, 0] > 0] == 1)


@pytest.fixture
def nets():
    torch.manual_seed(0)
    student = ResUNet(ModelConfig())
    return student, make_teacher(student)


def batch(n_l=2, n_u=2, size=32) -> Batch:
    g = torch.Generator().manual_seed(1)
    y = torch.zeros(n_l, 1, size, size)
    y[:, :, 8:14, 8:14] = 1
    return Batch(torch.rand(n_l, 3, size, size, generator=g), y, torch.rand(n_u, 3, size, size))


def test_supervised_is_weighted_bce_of_the_student(nets):
    student, _ = nets
    b = batch()
    torch.manual_seed(5)
    parts = compute_loss(
        student, None, b, StepSettings(method="supervised", w_pos=3.0), lambda_u=0.5, rng=None
    )
    torch.manual_seed(5)
    expected = weighted_bce(student(b.x_l, mc=True), b.y_l, 3.0)
    assert parts.total.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("method", ["ugss", "cutmix", "cutpaste"])
def test_lambda_zero_leaves_only_the_supervised_term(nets, method):
    student, teacher = nets
    parts = compute_loss(
        student,
        teacher,
        batch(),
        StepSettings(method=method, mc_samples=2),
        lambda_u=0.0,
        rng=np.random.default_rng(0),
    )
    assert parts.total.item() == pytest.approx(parts.parts["sup"], rel=1e-6)
    assert parts.parts["cons"] >= 0.0
    parts.total.backward()
    assert student.head.weight.grad is not None


def test_ugss_consistency_covers_labeled_and_unlabeled(nets):
    student, teacher = nets
    s = StepSettings(method="ugss", mc_samples=2, uncertainty_mask=False)
    b = batch(2, 2)
    only_l = Batch(b.x_l, b.y_l, b.x_l[:0])
    rng = np.random.default_rng(0)
    a = compute_loss(student, teacher, b, s, lambda_u=1.0, rng=rng)
    c = compute_loss(student, teacher, only_l, s, lambda_u=1.0, rng=rng)
    assert a.parts["cons"] != pytest.approx(c.parts["cons"])  # unlabeled crops count too


def test_config_round_trip_and_validation():
    cfg = TrainConfig().replace(method={"method": "cutmix"}, optim={"epochs": 3})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.method.resolved_teacher_update == "ema"
    assert (
        MethodConfig(method="supervised", teacher_update="wema").resolved_teacher_update == "none"
    )
    newer = cfg.to_dict()
    newer["optim"]["future_option"] = 1  # a newer checkpoint still loads
    assert TrainConfig.from_dict(newer) == cfg
    with pytest.raises(ConfigError):
        DataConfig(crop_size=200, input_size=160)
    with pytest.raises(ConfigError):
        MethodConfig(delta=0.0)
    old = MethodConfig.from_dict({"use_uncertainty": False})  # a checkpoint before the rename
    assert not old.uncertainty_mask and old.use_confidence and old.uncertainty_guided


def test_ugss_logs_what_the_uncertainty_lets_through_on_unlabeled_crops(nets, monkeypatch):
    import ugss.train.step as step
    from ugss.train.teacher import TeacherOutput

    def fake_teacher(teacher, x, samples, noise):  # labeled crops unsure, unlabeled half sure
        u = torch.full((x.shape[0], 1, *x.shape[-2:]), 0.9)
        u[2:, :, :16] = 0.1
        return TeacherOutput(prob=torch.full_like(u, 0.5), uncertainty=u)

    monkeypatch.setattr(step, "teacher_mc", fake_teacher)
    student, teacher = nets
    s = StepSettings(method="ugss", mc_samples=2, delta=0.7)
    parts = compute_loss(student, teacher, batch(2, 2), s, lambda_u=1.0, rng=None).parts
    assert parts["unl_pass_delta"] == pytest.approx(0.5)  # unlabeled pixels only
    assert parts["unl_conf"] == pytest.approx(0.5)  # mean of 1 − 0.1 and 1 − 0.9
    assert parts["kept"] == pytest.approx(0.25)  # the mask over all crops
    off = StepSettings(method="ugss", mc_samples=2, delta=0.7, uncertainty_mask=False)
    parts = compute_loss(student, teacher, batch(2, 2), off, lambda_u=1.0, rng=None).parts
    assert parts["unl_pass_delta"] == pytest.approx(0.5) and parts["kept"] == 1.0
    no_u = compute_loss(student, teacher, batch(2, 0), s, lambda_u=1.0, rng=None).parts
    assert "unl_pass_delta" not in no_u and "unl_conf" not in no_u
