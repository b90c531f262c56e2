"""Model metadata: every writer has a reader."""

from __future__ import annotations

import pytest

from ugss.errors import InputError
from ugss.runtime.model_info import KIND_MC, ModelInfo
from ugss.runtime.preprocess import Window


def test_metadata_round_trip():
    info = ModelInfo(
        kind=KIND_MC,
        input_size=160,
        windows=(Window("brain", 40, 80), Window("bone", 600, 2800)),
        threshold=0.4,
        mc_samples=8,
        dropout_rate=0.2,
        dropout_at="head",
        version="3",
        checkpoint_sha256="ab" * 32,
        training={"method": "ugss", "labeled_fraction": 0.5, "val_dice": 0.83},
    )
    meta = info.to_metadata()
    assert all(isinstance(v, str) and k.startswith("ugss.") for k, v in meta.items())
    assert ModelInfo.from_metadata(meta) == info


def test_refuses_foreign_or_bad_metadata():
    with pytest.raises(InputError, match="no UGSS metadata"):
        ModelInfo.from_metadata({"producer": "someone"})
    with pytest.raises(InputError, match="malformed"):
        ModelInfo.from_metadata({"ugss.kind": "mc", "ugss.input_size": "big"})
    with pytest.raises(InputError, match="mc_samples"):
        ModelInfo(kind="mc", mc_samples=1)
    with pytest.raises(InputError, match="multiple of 16"):
        ModelInfo(input_size=100)
