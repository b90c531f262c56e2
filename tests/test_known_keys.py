"""One rule for unknown keys (``ugss.known_keys``): refused in what a person wrote, logged and
ignored in what a program wrote."""

from __future__ import annotations

import logging

import pytest

from ugss.dicom_node.config import NodeConfig
from ugss.errors import ConfigError
from ugss.train.checkpoint import Checkpoint
from ugss.train.config import TrainConfig
from ugss.train.model import ModelConfig


def test_the_node_configuration_refuses_a_misspelt_key():
    with pytest.raises(ConfigError, match="unknown configuration keys: quiet_periode_s"):
        NodeConfig.from_dict({"quiet_periode_s": 5})


def test_a_newer_checkpoints_keys_are_named_and_ignored(caplog):
    doc = TrainConfig().to_dict()
    doc["optim"]["schedule_v2"] = "cosine"
    doc["model"]["attention"] = True
    with caplog.at_level(logging.WARNING):
        cfg = TrainConfig.from_dict(doc)
        model = ModelConfig.from_dict({**ModelConfig().to_dict(), "attention": True})
    assert cfg == TrainConfig() and model == ModelConfig()
    lines = [r.getMessage() for r in caplog.records]
    assert "ignoring unknown OptimConfig keys: schedule_v2" in lines
    assert lines.count("ignoring unknown ModelConfig keys: attention") == 2  # both readers


def test_a_checkpoint_header_is_not_an_unknown_key(caplog):
    doc = {
        "format": "ugss-checkpoint",
        "format_version": 1,
        "ugss_version": "9",
        "torch_version": "9",
    }
    doc.update(model={}, input_size=64, windows="brain:40/80", student={}, ema_weights={})
    with caplog.at_level(logging.WARNING):
        Checkpoint.from_dict(doc)
    assert [r.getMessage() for r in caplog.records] == [
        "ignoring unknown Checkpoint keys: ema_weights"
    ]
