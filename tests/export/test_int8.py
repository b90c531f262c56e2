"""``ugss-export --int8``: quantized twins that the runtime opens, checked against fp32."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from export_ckpts import write_checkpoint
from export_fixtures import torch_threads

from ugss.errors import ConfigError, InputError
from ugss.export.api import ExportOptions, export_checkpoint
from ugss.export.cli import main
from ugss.export.metadata import read_onnx_metadata
from ugss.export.quantize import (
    MIN_FOREGROUND_PX,
    Calibration,
    calibration_slices,
    quantize_int8,
)
from ugss.runtime.engines import OnnxEngine, model_twin, open_engine
from ugss.runtime.model_info import DET_OUTPUT, INPUT_NAME, KIND_MC, ModelInfo
from ugss.runtime.nifti import write_nifti
from ugss.synth import make_scan


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("int8")
    with torch_threads(1):
        ckpt = write_checkpoint(root / "model.pt")
        options = ExportOptions(
            onnx=root / "out" / "model.onnx", mc_samples=8, int8=True, interval_calibration=False
        )
        result = export_checkpoint(ckpt, options)
    return options, result


@pytest.mark.slow
def test_int8_twins_are_written_described_and_quantized(int8_export):
    options, result = int8_export
    int8_arts = [a for a in result.artifacts if a.form == "onnx-int8"]
    twins = {model_twin(p, int8=True) for p in (options.onnx, options.det_path)}
    assert {a.path for a in int8_arts} == twins
    for art in int8_arts:
        assert art.path.name.endswith("-int8.onnx")
        assert "mask Dice" in art.note
        meta = read_onnx_metadata(art.path)
        assert meta["ugss.export.precision"] == "int8"
        assert "synthetic" in meta["ugss.export.calibration"]
        assert float(meta["ugss.export.int8_max_prob_diff"]) >= 0.0
        info = ModelInfo.from_metadata(meta)
        assert info.name.endswith("-int8") and info.kind == art.kind
        graph = onnx.load(str(art.path)).graph
        ops = {n.op_type for n in graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)
    fp32_meta = read_onnx_metadata(options.onnx)
    assert fp32_meta["ugss.export.precision"] == "fp32"


@pytest.mark.slow
def test_int8_model_runs_in_the_runtime_close_to_fp32(int8_export):
    options, _ = int8_export
    for src in (options.det_path, options.onnx):
        fp32 = OnnxEngine(src, provider="cpu", threads=1, seed=0)
        q = OnnxEngine(model_twin(src, int8=True), provider="cpu", threads=1, seed=0)
        assert q.info.kind == fp32.info.kind
        x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
        a, b = fp32.run(x), q.run(x)
        assert b.prob.shape == a.prob.shape
        assert np.abs(a.prob - b.prob).max() < 0.2  # 8-bit activations, not bit-exact
        if q.info.kind == KIND_MC:
            assert b.entropy is not None and (b.entropy >= 0).all() and (b.entropy <= 1).all()
            assert b.sample_counts is not None and b.sample_counts.shape == (3, 8)


@pytest.mark.slow
def test_deterministic_flag_finds_the_int8_twin(int8_export):
    options, _ = int8_export
    engine = open_engine(model_twin(options.onnx, int8=True), provider="cpu", deterministic=True)
    assert engine.info.kind == "deterministic" and engine.info.name.endswith("-int8")


def test_twin_names():
    x = Path("m/model.onnx")
    assert model_twin(x, det=True) == Path("m/model-det.onnx")
    assert model_twin(x, int8=True) == Path("m/model-int8.onnx")
    assert model_twin(model_twin(x, det=True), int8=True) == Path("m/model-det-int8.onnx")
    assert model_twin(Path("m/model-int8.onnx"), det=True) == Path("m/model-det-int8.onnx")


def test_calibration_reads_the_users_scans(tmp_path: Path):
    vol, _, _ = make_scan(5, matrix=64, slice_thickness=5.0)
    path = write_nifti(tmp_path / "scan.nii.gz", vol.hu, like=vol)
    info = ModelInfo(input_size=32)
    calib = calibration_slices(info, [str(tmp_path)], max_slices=8)
    assert calib.slices.shape[1:] == (3, 32, 32) and 2 <= len(calib.slices) <= 8
    assert "scan.nii.gz" in calib.source
    fit, check = calib.split(np.zeros(len(calib.slices)))
    assert sorted([*fit, *check]) == list(range(len(calib.slices)))
    assert calibration_slices(info, [str(path)], max_slices=8).slices.shape == calib.slices.shape


@pytest.mark.slow
def test_int8_option_errors(tmp_path: Path, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="--calibration applies to --int8"):
        ExportOptions(onnx=tmp_path / "m.onnx", calibration=("x",))
    ckpt = write_checkpoint(tmp_path / "model.pt")
    out = str(tmp_path / "m.onnx")
    for args, message in [
        (["--calibration", "x"], "--calibration applies to --int8"),
        (["--int8", "--calibration", "nope/"], "--calibration nope: no such file or folder"),
    ]:
        argv = ["ugss-export", str(ckpt), "--onnx", out, *args, "--no-interval-calibration"]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exc:
            main()
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert exc.value.code == 2 and len(err) == 1 and message in err[0], err


def _bright_channel_model(path: Path) -> Path:
    """prob = sigmoid(20 · (channel 0 − 0.5)): foreground exactly where channel 0 is bright."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.array([20, 0, 0], np.float32).reshape(1, 3, 1, 1), "w")
    bias = numpy_helper.from_array(np.array([-10.0], np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", [INPUT_NAME, "w", "b"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], [DET_OUTPUT]),
        ],
        "bright",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info(DET_OUTPUT, TensorProto.FLOAT, ["n", 1, 16, 16])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _slices(bright: tuple[int, ...], n: int = 8) -> Calibration:
    x = np.full((n, 3, 16, 16), 0.2, np.float32)
    for i in bright:
        x[i, 0, 3:13, 3:13] = 0.9  # 100 px of foreground
    return Calibration(x, "test slices")


def test_int8_check_sees_foreground_wherever_it_lies(tmp_path: Path):
    """Foreground on slices 0 and 2 only: an even/odd split would hold all of it out of the
    check and report "mask Dice 1.0000 (0 fp32 foreground px)" (issue 16 item 6); dealt out,
    one calibrates (int8 learns the bright range) and one is checked."""
    src = _bright_channel_model(tmp_path / "m.onnx")
    agreement = quantize_int8(src, tmp_path / "q.onnx", _slices((0, 2)), threshold=0.5)
    assert agreement.fp32_pixels == 100 and agreement.foreground_slices == 1
    assert agreement.fp32_pixels >= MIN_FOREGROUND_PX and agreement.mask_dice > 0.9
    assert "(100 fp32 foreground px on 1 slices)" in agreement.describe()


def test_int8_check_without_foreground_fails_with_one_line(tmp_path: Path):
    src = _bright_channel_model(tmp_path / "m.onnx")
    dst = tmp_path / "q.onnx"
    with pytest.raises(InputError) as exc:
        quantize_int8(src, dst, _slices(()), threshold=0.5)
    message = str(exc.value)
    assert "\n" not in message and not dst.exists()
    assert message.startswith("int8 check: the fp32 model marks 0 px of hemorrhage on 4 held-out")
    assert "(test slices)" in message and "--calibration" in message
