"""``ugss-export``: a real run, and one ``Error:`` line with exit code 2 for every bad input."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from export_ckpts import write_checkpoint
from export_fixtures import Exported, torch_threads

import ugss.export.tensorrt as trt_mod
from ugss.export.cli import main
from ugss.runtime import engines
from ugss.train.predict import load_checkpoint


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ugss-export", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_error(code: int, err: str, message: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], lines


def test_cli_exports_teacher_weights_and_prints_parity(
    head_export: Exported, tmp_path: Path, monkeypatch, capsys
):
    out = tmp_path / "teacher.onnx"
    args = [str(head_export.ckpt_path), "--onnx", str(out), "--mc-samples", "0"]
    code, stdout, err = run_main(monkeypatch, capsys, *args, "--weights", "teacher")
    assert code == 0, err
    assert out.is_file() and not (tmp_path / "teacher-det.onnx").exists()
    parity = [ln for ln in stdout.splitlines() if ln.startswith("parity deterministic")]
    assert parity and float(parity[0].split("prob ")[1].split()[0]) < 1e-4
    teacher = load_checkpoint(head_export.ckpt_path, which="teacher").model
    x = torch.rand(2, 3, 32, 32)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (prob,) = sess.run(["prob"], {"image": x.numpy()})
    with torch.no_grad():
        assert np.abs(prob - torch.sigmoid(teacher(x)).numpy()).max() < 1e-4


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    (root / "notes.txt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(3)}, root / "random.pt")
    torch.save(torch.nn.Linear(2, 2).state_dict(), root / "state_dict.pt")
    return {
        "TEXT": root / "notes.txt",
        "RANDOM": root / "random.pt",
        "STATE": root / "state_dict.pt",
        "MISSING": root / "missing.pt",
        "DIR": root,
    }


@pytest.mark.parametrize(
    ("ckpt", "extra", "message"),
    [
        ("MISSING", [], "no such checkpoint"),
        ("DIR", [], "is a folder"),
        ("TEXT", [], "not a readable checkpoint"),
        ("RANDOM", [], "not a UGSS training checkpoint"),
        ("STATE", [], "not a UGSS training checkpoint"),
        ("GOOD", ["--fp32"], "--fp32 applies to the TensorRT engine: add --trt"),
        ("GOOD", ["--mc-samples", "1"], "--mc-samples must be 0"),
        ("GOOD", ["--onnx", "model.txt"], "--onnx must name a .onnx file"),
        ("GOOD", ["--weights", "best"], "--weights must be one of"),
        ("GOOD", ["--noise", "host"], "--noise must be one of"),
        ("GOOD", ["--exporter", "jit"], "--exporter must be one of"),
        ("GOOD", ["--threshold", "1.5"], "--threshold must be in (0, 1)"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(
    head_export: Exported, bad_files, tmp_path, monkeypatch, capsys, ckpt, extra, message
):
    path = head_export.ckpt_path if ckpt == "GOOD" else bad_files[ckpt]
    args = [str(path), "--onnx", str(tmp_path / "m.onnx"), *extra]
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert_one_error(code, err, message)
    assert not (tmp_path / "m.onnx").exists()


def test_trt_without_tensorrt_package(head_export: Exported, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails like an absent package
    args = [str(head_export.ckpt_path), "--onnx", str(tmp_path / "m.onnx"), "--trt"]
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert_one_error(code, err, "--trt needs the tensorrt package and an NVIDIA GPU")
    assert not (tmp_path / "m.onnx").exists()  # refused before any work


def test_trt_without_gpu(head_export: Exported, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setattr(trt_mod, "cuda_device_count", lambda: 0)
    args = [str(head_export.ckpt_path), "--onnx", str(tmp_path / "m.onnx"), "--trt", "--fp32"]
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert_one_error(code, err, "--trt needs an NVIDIA GPU")


def test_gpu_count_agrees_with_torch():
    count = trt_mod.cuda_device_count()
    assert type(count) is int and count == torch.cuda.device_count()


class _FakeDriver:
    """libcuda's two calls: ``cuInit`` and ``cuDeviceGetCount`` with their CUresult codes."""

    def __init__(self, init: int, count: int) -> None:
        self.init, self.count = init, count

    def cuInit(self, flags: int) -> int:
        return self.init

    def cuDeviceGetCount(self, out) -> int:
        out._obj.value = self.count
        return 0


def test_gpu_count_without_a_driver(monkeypatch):
    def no_library(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(engines.ctypes, "CDLL", no_library)
    assert trt_mod.cuda_device_count() == 0  # no driver: 0, never an exception
    monkeypatch.setattr(engines.ctypes, "CDLL", lambda name: _FakeDriver(init=100, count=2))
    assert trt_mod.cuda_device_count() == 0  # CUDA_ERROR_NO_DEVICE from cuInit
    monkeypatch.setattr(engines.ctypes, "CDLL", lambda name: _FakeDriver(init=0, count=2))
    assert trt_mod.cuda_device_count() == 2


@pytest.fixture(scope="module")
def odd_ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("odd")
    with torch_threads(1):
        return {
            "element": write_checkpoint(root / "element.pt", dropout_kind="element", steps=1),
            "no_dropout": write_checkpoint(root / "plain.pt", dropout_rate=0.0, steps=1),
            "supervised": write_checkpoint(root / "sup.pt", method="supervised", steps=1),
        }


@pytest.mark.parametrize(
    ("which", "extra", "message"),
    [
        ("element", [], "use --noise graph"),
        ("no_dropout", [], "trained without dropout"),
        ("supervised", ["--weights", "teacher"], "has no teacher weights"),
    ],
)
def test_checkpoint_option_mismatch(
    odd_ckpts, tmp_path, monkeypatch, capsys, which, extra, message
):
    args = [str(odd_ckpts[which]), "--onnx", str(tmp_path / "m.onnx"), *extra]
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert_one_error(code, err, message)
    assert not list(tmp_path.iterdir())  # refused before writing anything


@pytest.mark.slow
def test_element_dropout_exports_with_graph_noise(odd_ckpts, tmp_path, monkeypatch, capsys):
    out = tmp_path / "el.onnx"
    args = [str(odd_ckpts["element"]), "--onnx", str(out), "--noise", "graph", "--mc-samples", "4"]
    args.append("--no-interval-calibration")
    code, stdout, err = run_main(monkeypatch, capsys, *args)
    assert code == 0, err
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    a, b = (sess.run(["mean_prob"], {"image": x})[0] for _ in range(2))
    assert np.abs(a - b).max() > 0
    assert "in-graph noise" in stdout
