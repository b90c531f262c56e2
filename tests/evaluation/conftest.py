"""The ``summary`` fixture: the three hand-worked scans of eval_cases.py."""

from __future__ import annotations

import pytest
from eval_cases import filled

from ugss.evaluation import EvaluationSummary


@pytest.fixture
def summary() -> EvaluationSummary:
    return filled().summary()
