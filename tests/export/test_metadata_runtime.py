"""Exported files describe themselves, and ``ugss.runtime`` runs them without torch."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import onnx
import onnxruntime as ort
import pytest
from export_fixtures import Exported

from ugss.runtime.engines import OnnxEngine, open_engine
from ugss.runtime.model_info import KIND_DETERMINISTIC, KIND_MC, ModelInfo
from ugss.runtime.preprocess import DEFAULT_WINDOWS


def meta_of(path) -> dict[str, str]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(sess.get_modelmeta().custom_metadata_map)


def test_mc_metadata_round_trips_through_model_info(head_export: Exported):
    meta = meta_of(head_export.mc)
    info = ModelInfo.from_metadata(meta)
    sha = hashlib.sha256(head_export.ckpt_path.read_bytes()).hexdigest()
    assert info == head_export.result.infos[KIND_MC]
    assert info.kind == KIND_MC and info.mc_samples == 8
    assert info.input_size == 32 and info.windows == DEFAULT_WINDOWS
    assert info.threshold == 0.5 and info.dropout_rate == 0.2 and info.dropout_at == "head"
    assert info.method == "ugss" and info.version == "1" and info.checkpoint_sha256 == sha
    training = info.training
    assert training["weights"] == "teacher" and training["step"] == 4  # auto: the validated
    assert training["teacher_update"] == "wema" and training["dropout_kind"] == "channel"
    assert training["data"]["scans"] == {
        "train_labeled": 2,
        "train_unlabeled": 1,
        "val": 1,
        "test": 1,
    }
    assert training["data"]["w_pos"] == 2.5
    assert meta["ugss.export.noise"] == "input"
    assert meta["ugss.export.noise_shape"] == "[8, 16]"
    assert meta["ugss.export.noise_layout"] == "head:16"
    assert float(meta["ugss.export.parity_max_abs_diff"]) < 1e-4
    model = onnx.load(str(head_export.mc))
    assert model.model_version == 1 and model.producer_name == "ugss-export"


def test_deterministic_twin_metadata(head_export: Exported):
    info = ModelInfo.from_metadata(meta_of(head_export.det))
    assert info.kind == KIND_DETERMINISTIC and info.mc_samples == 0
    assert info.name == "ugss-det" and info.dropout_at == ""
    assert head_export.det.name == "model-det.onnx"


@pytest.mark.slow
def test_runtime_noise_shape_agrees_with_the_graph(head_export: Exported, decoder_export: Exported):
    """engines.py feeds dropout_noise[T, C]: its shape must be the graph's and the metadata's."""
    for exp, channels in ((head_export, 16), (decoder_export, 256 + 128)):
        engine = OnnxEngine(exp.mc, provider="cpu")
        assert engine.noise.shape == (8, channels)
        assert meta_of(exp.mc)["ugss.export.noise_shape"] == f"[8, {channels}]"


def test_deterministic_companion_is_picked_by_open_engine(head_export: Exported):
    engine = open_engine(head_export.mc, provider="cpu", deterministic=True)
    assert engine.info.kind == KIND_DETERMINISTIC


RUNTIME_SCRIPT = """
import json, sys
import numpy as np
from ugss.runtime.engines import open_engine
from ugss.runtime.segment import segment_volume
from ugss.runtime.volume import Volume

engine = open_engine(sys.argv[1], provider="cpu")
hu = np.full((6, 64, 64), -1000.0, np.float32)
hu[:, 8:56, 8:56] = 35.0
hu[2:4, 20:30, 20:30] = 75.0
seg = segment_volume(Volume(hu=hu, affine=np.diag([-0.9, -0.9, 5.0, 1.0])), engine)
out = engine.run(np.zeros((2, 3, engine.info.input_size, engine.info.input_size), np.float32))
print(json.dumps({
    "torch": "torch" in sys.modules,
    "kind": engine.info.kind,
    "is_mc": seg.is_mc,
    "mask_shape": list(seg.mask.shape),
    "counts_shape": list(out.sample_counts.shape),
}))
"""


@pytest.mark.integration
def test_runtime_runs_the_export_without_torch(head_export: Exported):
    proc = subprocess.run(
        [sys.executable, "-c", RUNTIME_SCRIPT, str(head_export.mc)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {
        "torch": False,
        "kind": "mc",
        "is_mc": True,
        "mask_shape": [6, 64, 64],
        "counts_shape": [2, 8],
    }
