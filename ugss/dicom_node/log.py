"""Structured log lines: ``event key=value ...`` with UIDs, never patient names or IDs.

Patient identity may appear only at DEBUG level, and only where a person debugging a single
series needs it; every INFO-and-above line is safe to ship to a central log.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("ugss.dicom_node")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.3f}"
    text = str(value)
    if not text or any(c in text for c in ' "='):
        text = '"' + text.replace('"', "'") + '"'
    return text


def event(name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one line ``name k=v ...``; fields keep their keyword order."""
    if logger.isEnabledFor(level):
        logger.log(level, "%s %s", name, " ".join(f"{k}={_fmt(v)}" for k, v in fields.items()))
