"""Named choices are enums inside and plain strings at every edge (CLI, checkpoint, metadata)."""

from __future__ import annotations

import json

import pytest

from ugss.errors import ConfigError, InputError
from ugss.runtime.model_info import ModelInfo, ModelKind
from ugss.train.config import MethodConfig, TrainConfig
from ugss.train.kinds import Consistency, Method, TeacherUpdate


def test_strings_are_converted_at_the_door_and_written_back_as_strings():
    cfg = MethodConfig(method="cutmix", teacher_update="ema", consistency="smoothl1")
    assert cfg.method is Method.CUTMIX and cfg.consistency is Consistency.SMOOTHL1
    assert cfg.resolved_teacher_update is TeacherUpdate.EMA
    saved = TrainConfig(method=cfg).to_dict()["method"]
    assert type(saved["method"]) is str and saved["method"] == "cutmix"  # no enum in a checkpoint
    assert json.loads(json.dumps(saved))["consistency"] == "smoothl1"


def test_the_default_teacher_update_follows_the_method():
    assert MethodConfig(method="ugss").resolved_teacher_update is TeacherUpdate.WEMA
    assert MethodConfig(method="supervised", teacher_update="ema").resolved_teacher_update == "none"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("method", "mixmatch", "method must be one of ugss, supervised, cutmix, cutpaste"),
        ("teacher_update", "swa", "teacher update must be one of none, ema, wema"),
        ("consistency", "mse", "consistency must be one of kl, smoothl1"),
    ],
)
def test_an_unknown_choice_names_the_choices(field, value, message):
    with pytest.raises(ConfigError, match=message):
        MethodConfig(**{field: value})


def test_model_kind_is_an_enum_and_metadata_stays_a_string():
    info = ModelInfo(kind="mc", mc_samples=8)
    assert info.kind is ModelKind.MC and info.to_metadata()["ugss.kind"] == "mc"
    with pytest.raises(InputError, match="deterministic or mc"):
        ModelInfo(kind="ensemble")
