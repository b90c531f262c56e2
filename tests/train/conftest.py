"""Fixtures for the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_toys import write_toy_cohort


@pytest.fixture
def toy_cohort(tmp_path: Path) -> Path:
    return write_toy_cohort(tmp_path / "cohort")
