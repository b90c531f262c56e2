"""Helpers for the export tests: a tiny checkpoint exported once, and torch thread control.

Kept out of conftest.py so test modules can import them by a unique module name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from export_ckpts import write_checkpoint

from ugss.export.api import ExportOptions, ExportResult, export_checkpoint
from ugss.train.predict import LoadedCheckpoint, load_checkpoint


@dataclass(frozen=True)
class Exported:
    ckpt_path: Path
    ckpt: LoadedCheckpoint  # the validated weights, as exported by default (weights=auto)
    options: ExportOptions
    result: ExportResult

    @property
    def mc(self) -> Path:
        return self.options.onnx

    @property
    def det(self) -> Path:
        return self.options.det_path


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def export_tiny(root: Path, *, triton: bool = False, **ckpt_kw) -> Exported:
    """Export a tiny checkpoint; its split names no real scans, so the volume interval stays
    uncalibrated (``test_interval_calibration`` covers calibration)."""
    with torch_threads(1):
        ckpt_path = write_checkpoint(root / "model.pt", **ckpt_kw)
        options = ExportOptions(
            onnx=root / "out" / "model.onnx",
            mc_samples=8,
            triton=root / "repo" if triton else None,
            interval_calibration=False,
        )
        result = export_checkpoint(ckpt_path, options)
    return Exported(ckpt_path, load_checkpoint(ckpt_path, which="auto"), options, result)
