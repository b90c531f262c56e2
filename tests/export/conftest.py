"""Exported tiny models shared across the export tests (one export per session).

torch runs single-threaded here: on a shared 2-core machine its 2-thread kernels spin against
other processes and a 32² training step takes seconds instead of milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from export_fixtures import Exported, export_tiny, torch_threads


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def head_export(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Default placement (channel dropout before the 1×1 head), 32², with a Triton repository."""
    return export_tiny(tmp_path_factory.mktemp("head"), triton=True)


@pytest.fixture(scope="session")
def decoder_export(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Dropout on the deep decoder levels (dec4, dec3): the generic repeated-tail path, 48²."""
    return export_tiny(tmp_path_factory.mktemp("decoder"), dropout_at="decoder", input_size=48)
