"""Exported tiny models shared across the export tests (one export per session).

torch runs single-threaded here: on a shared 2-core machine its 2-thread kernels spin against
other processes and a 32² training step takes seconds instead of milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from export_ckpts import write_checkpoint

from ugss.export.api import ExportOptions, ExportResult, export_checkpoint
from ugss.train.predict import LoadedCheckpoint, load_checkpoint


@dataclass(frozen=True)
class Exported:
    ckpt_path: Path
    ckpt: LoadedCheckpoint  # the student, as exported by default
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


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def export_tiny(root: Path, *, triton: bool = False, **ckpt_kw) -> Exported:
    with torch_threads(1):
        ckpt_path = write_checkpoint(root / "model.pt", **ckpt_kw)
        options = ExportOptions(
            onnx=root / "out" / "model.onnx",
            mc_samples=8,
            triton=root / "repo" if triton else None,
        )
        result = export_checkpoint(ckpt_path, options)
    return Exported(ckpt_path, load_checkpoint(ckpt_path, which="student"), options, result)


@pytest.fixture(scope="session")
def head_export(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Default placement (channel dropout before the 1×1 head), 32², with a Triton repository."""
    return export_tiny(tmp_path_factory.mktemp("head"), triton=True)


@pytest.fixture(scope="session")
def decoder_export(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Dropout on the deep decoder levels (dec4, dec3): the generic repeated-tail path, 48²."""
    return export_tiny(tmp_path_factory.mktemp("decoder"), dropout_at="decoder", input_size=48)
