"""``python -m ugss.export.triton_plans``: a Triton repository's ONNX models → TensorRT plans
built with the TensorRT at hand (inside the Triton image's TensorRT container), on the CPU with
the build itself stood in for."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from export_fixtures import Exported
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from ugss.export import triton_plans
from ugss.export.tensorrt import EngineBuild, write_sidecar
from ugss.runtime.engines import PLAN_TRT_VERSION_KEY
from ugss.runtime.model_info import KIND_MC, ModelInfo


@pytest.fixture
def repo(head_export: Exported, tmp_path) -> Path:
    assert head_export.options.triton is not None
    return Path(shutil.copytree(head_export.options.triton, tmp_path / "models"))


def test_plans_replace_the_onnx_models_with_the_config_switched(repo, monkeypatch, capsys):
    calls = []

    def fake_build(onnx_path, plan, meta, *, fp16, max_batch):
        calls.append((onnx_path, fp16, max_batch, ModelInfo.from_metadata(meta).kind))
        plan.write_bytes(b"PLAN")
        side = write_sidecar(plan, meta | {PLAN_TRT_VERSION_KEY: "10.7.0"})
        return EngineBuild(plan, side, "fp16", {}, 1.0, "TensorRT 10.7.0: …")

    monkeypatch.setattr(triton_plans, "build_engine", fake_build)
    triton_plans.main([str(repo)])
    assert {c[2] for c in calls} == {32} and all(c[1] for c in calls)  # Triton's max batch
    assert KIND_MC in {c[3] for c in calls}
    for name in ("ugss", "ugss-det"):
        config = text_format.Parse((repo / name / "config.pbtxt").read_text(), pb.ModelConfig())
        assert config.platform == "tensorrt_plan" and config.max_batch_size == 32
        assert config.parameters[PLAN_TRT_VERSION_KEY].string_value == "10.7.0"
        assert (repo / name / "1" / "model.plan").read_bytes() == b"PLAN"
        side = json.loads((repo / name / "1" / "model.plan.json").read_text())
        assert ModelInfo.from_metadata(side).name == name
    assert "model.plan" in capsys.readouterr().out
    triton_plans.main([str(repo)])  # already plans: left as they are
    assert len(calls) == 2


def test_without_tensorrt_it_is_one_line_and_exit_2(repo, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(SystemExit) as exc:
        triton_plans.main([str(repo)])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert exc.value.code == 2 and len(lines) == 1
    assert lines[0].startswith("Error: --trt needs the tensorrt package")
