"""The checkpoint record: what the file holds, read back as a ``Checkpoint``."""

from __future__ import annotations

import pytest
import torch

from ugss.errors import InputError
from ugss.train.checkpoint import FORMAT, Checkpoint, load, read_checkpoint, save_checkpoint

MINIMAL = {"model": {"dropout_at": "head"}, "input_size": 64, "windows": "brain:40/80"}


def _weights() -> dict[str, torch.Tensor]:
    return {"head.bias": torch.zeros(1)}


def test_a_saved_checkpoint_reads_back_field_for_field(tmp_path):
    ckpt = Checkpoint(
        **MINIMAL, student=_weights(), teacher=_weights(), method="ugss",
        eval_model="teacher", val_dice={"student": 0.6, "teacher": 0.7}, logit_offset=-1.5,
        optimizer={"state": {}}, scheduler={}, scaler={}, state={"epoch": 2}, rng=[{}],
        data={"split": {"val": ["a"]}}, step=10, epoch=2,
    )  # fmt: skip
    path = save_checkpoint(tmp_path / "c.pt", ckpt.to_dict())
    doc = read_checkpoint(path)
    assert doc["format"] == FORMAT and doc["eval_model"] == "teacher"  # the file stays a dict
    back = load(path)
    assert back.can_resume and back.epoch == 2 and back.val_dice == ckpt.val_dice
    assert back.logit_offset == -1.5 and back.data == ckpt.data
    assert torch.equal(back.weights("teacher")["head.bias"], torch.zeros(1))


def test_an_export_only_checkpoint_has_defaults_and_cannot_resume():
    ckpt = Checkpoint.from_dict({**MINIMAL, "student": _weights(), "teacher": None, "new": 1})
    assert ckpt.eval_model == "student" and ckpt.threshold == 0.5 and ckpt.logit_offset == 0.0
    assert ckpt.val_dice == {} and ckpt.weights("teacher") is None and not ckpt.can_resume


def test_to_dict_does_not_copy_the_weights():
    weights = _weights()
    assert Checkpoint(**MINIMAL, student=weights).to_dict()["student"] is weights


@pytest.mark.parametrize("drop", ["model", "input_size", "windows", "student"])
def test_a_checkpoint_without_its_model_description_is_one_clear_error(drop):
    doc = {**MINIMAL, "student": _weights()}
    del doc[drop]
    with pytest.raises(InputError, match=f"not a complete UGSS checkpoint \\(no {drop}\\)"):
        Checkpoint.from_dict(doc, "x.pt")


def test_weights_are_student_or_teacher():
    with pytest.raises(InputError, match="auto, teacher or student"):
        Checkpoint(**MINIMAL, student=_weights()).weights("ema")
