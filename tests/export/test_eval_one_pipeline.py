"""``ugss-eval`` scores a checkpoint and its exported ONNX through one pipeline (``TorchEngine``
and ``OnnxEngine`` behind ``segment_volume``): same maps, masks and MC sample volumes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from export_fixtures import Exported, torch_threads

from ugss.runtime.engines import OnnxEngine
from ugss.runtime.segment import segment_volume
from ugss.train.torch_engine import TorchEngine

sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))
import onnx_models as om


@pytest.fixture(scope="module")
def head() -> tuple:
    vol, _ = om.phantom_volume((6, 96, 96), spacing=(5.0, 2.0, 2.0))
    return vol


@pytest.mark.slow  # exports a checkpoint first
@pytest.mark.parametrize("mc", [False, True])
def test_a_checkpoint_and_its_onnx_give_the_same_answer(head_export: Exported, head, mc):
    onnx_path = head_export.mc if mc else head_export.det
    onnx_engine = OnnxEngine(onnx_path, seed=0)
    with torch_threads(1):
        torch_engine = TorchEngine(head_export.ckpt, mc_samples=8 if mc else 0, seed=0)
        a = segment_volume(head, torch_engine, use_mc=mc, check_intensities=False, seed=0)
    b = segment_volume(head, onnx_engine, use_mc=mc, check_intensities=False, seed=0)
    assert torch_engine.info.kind == onnx_engine.info.kind
    assert a.prob_q.any()  # the maps compared are not all background
    assert np.abs(a.prob_q.astype(int) - b.prob_q.astype(int)).max() <= 1  # steps of 1/255
    assert np.array_equal(a.mask, b.mask)
    assert a.mask.any()  # and a mask to compare
    if mc:
        assert a.entropy_q is not None and b.entropy_q is not None
        assert np.abs(a.entropy_q.astype(int) - b.entropy_q.astype(int)).max() <= 1
        assert a.sample_volumes_ml == pytest.approx(b.sample_volumes_ml, abs=1e-6)


@pytest.mark.slow
def test_the_torch_engine_describes_where_it_ran(head_export: Exported):
    engine = TorchEngine(head_export.ckpt)
    assert engine.description.startswith("torch ") and engine.description.endswith("cpu")
