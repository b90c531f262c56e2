"""Export-time calibration of the MC volume interval: into the metadata, read by the runtime.

The labeled scans are tiny hand-made head CTs in the PhysioNet layout (48² at 4 mm, 6 slices:
a skull ring around brain, cut by the scan at both ends), so the tiny 32² model runs over each
in milliseconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from export_ckpts import write_checkpoint
from export_fixtures import Exported, torch_threads

from ugss.errors import ConfigError
from ugss.export.api import ExportOptions, export_checkpoint
from ugss.export.cli import main
from ugss.export.metadata import EXPORT_PREFIX, read_onnx_metadata
from ugss.runtime.engines import OnnxEngine, model_twin
from ugss.runtime.interval import METADATA_KEY, IntervalCalibration, volume_interval
from ugss.runtime.model_info import ModelInfo
from ugss.runtime.nifti import write_nifti
from ugss.runtime.volume import Volume
from ugss.train.checkpoint import read_checkpoint, save_checkpoint
from ugss.train.synthetic import MARKER

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def write_cohort(root: Path, n: int) -> list[str]:
    """``n`` labeled scans: 40 HU brain in a 1000 HU skull ring, most with a 75 HU blob (the
    mask)."""
    rng = np.random.default_rng(n)
    zz, yy, xx = np.mgrid[:6, :48, :48]
    r2 = (yy - 24) ** 2 + (xx - 24) ** 2
    ids = []
    for i in range(n):
        hu = np.select([r2 < 19**2, r2 < 22**2], [40.0, 1000.0], -1000.0)
        hu = hu + rng.normal(0, 5, hu.shape)
        r = 0 if i % 3 == 0 else rng.uniform(3, 8)
        mask = ((yy - 20) ** 2 + (xx - 26) ** 2 < r**2) & (zz >= 1) & (zz <= 4)
        hu[mask] = 75.0
        vol = Volume(hu.astype(np.float32), np.diag([4.0, 4.0, 5.0, 1.0]))
        sid = f"{i + 1:03d}"
        write_nifti(root / "ct_scans" / f"{sid}.nii.gz", vol.hu, like=vol, dtype=np.int16)
        write_nifti(root / "masks" / f"{sid}.nii.gz", mask, like=vol)
        ids.append(sid)
    return ids


def checkpoint_on(path: Path, data: dict, ids: list[str], n_scans: int) -> Path:
    """A tiny checkpoint trained (it says) on ``data`` (``DataConfig`` fields), validation
    split ``ids``."""
    doc = read_checkpoint(write_checkpoint(path, steps=2))
    doc["config"]["data"].update(data)
    doc["data"]["split"]["val"] = ids
    doc["data"]["n_scans"] = n_scans
    return save_checkpoint(path, doc)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory):
    """Exported with the default calibration on the checkpoint's validation split (10 scans)."""
    root = tmp_path_factory.mktemp("interval")
    ids = write_cohort(root / "cohort", 10)
    with torch_threads(1):
        ckpt = checkpoint_on(root / "model.pt", {"data_dir": str(root / "cohort")}, ids, 10)
        options = ExportOptions(
            onnx=root / "out" / "m.onnx",
            triton=root / "repo",
            int8=True,
            calibration=(str(root / "cohort" / "ct_scans"),),
        )
        result = export_checkpoint(ckpt, options)
    return options, result


@pytest.mark.slow
def test_export_stores_the_calibration_in_the_mc_model(calibrated):
    options, result = calibrated
    assert result.interval is not None and result.interval.seconds > 0
    cal = result.interval.calibration
    assert cal.n_scans == 10 and not cal.weak
    assert cal.source.startswith("validation split of ")
    assert 0.0 <= cal.uncalibrated_coverage <= 1.0 and cal.empirical_coverage >= 0.9
    meta = read_onnx_metadata(options.onnx)
    assert IntervalCalibration.from_json(meta[METADATA_KEY]) == cal
    assert ModelInfo.from_metadata(meta) == result.infos["mc"]
    assert f"{EXPORT_PREFIX}interval_calibration_warning" not in meta
    assert METADATA_KEY not in read_onnx_metadata(options.det_path)  # only MC has intervals


@pytest.mark.slow
def test_int8_and_triton_copies_carry_the_calibration(calibrated):
    options, result = calibrated
    cal = result.interval.calibration
    int8 = read_onnx_metadata(model_twin(options.onnx, int8=True))
    assert IntervalCalibration.from_json(int8[METADATA_KEY]) == cal
    config = (options.triton / options.name / "config.pbtxt").read_text()
    assert f'key: "{METADATA_KEY}"' in config
    assert METADATA_KEY not in (options.triton / options.det_name / "config.pbtxt").read_text()


@pytest.mark.slow
def test_runtime_reads_the_calibration(calibrated):
    options, result = calibrated
    info = OnnxEngine(options.onnx, provider="cpu").info
    assert info.interval_calibration == result.interval.calibration
    iv = volume_interval([1.0, 1.5, 2.0], 1.5, calibration=info.interval_calibration)
    assert iv.calibrated and "10 labeled scans" in iv.method


def test_without_calibration_the_runtime_says_uncalibrated(head_export: Exported):
    info = OnnxEngine(head_export.mc, provider="cpu").info
    assert info.interval_calibration is None
    iv = volume_interval([1.0, 1.5, 2.0], 1.5, calibration=info.interval_calibration)
    assert not iv.calibrated and "uncalibrated" in iv.method


@pytest.mark.slow
def test_synthetic_default_uses_the_cached_cohort(tmp_path: Path):
    """No data folder: the validation scans come from the synthetic cohort (cached here)."""
    ids = write_cohort(tmp_path / "synth", 4)
    (tmp_path / "synth" / MARKER).write_text("ok\n")  # complete: not generated again
    data = {"synth_dir": str(tmp_path / "synth"), "synth_scans": 4}
    with torch_threads(1):
        ckpt = checkpoint_on(tmp_path / "model.pt", data, ids[1:3], 4)
        result = export_checkpoint(ckpt, ExportOptions(onnx=tmp_path / "m.onnx"))
    cal = result.interval.calibration
    assert cal.n_scans == 2 and cal.weak and cal.source.startswith("validation split of")
    meta = read_onnx_metadata(tmp_path / "m.onnx")
    assert "only 2 calibration scan" in meta[f"{EXPORT_PREFIX}interval_calibration_warning"]


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ugss-export", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.mark.slow
def test_cli_folder_with_few_scans_warns_loudly(tmp_path: Path, monkeypatch, capsys):
    write_cohort(tmp_path / "few", 3)
    with torch_threads(1):
        ckpt = write_checkpoint(tmp_path / "model.pt", steps=1)
        out = tmp_path / "m.onnx"
        args = [str(ckpt), "--onnx", str(out), "--interval-calibration", str(tmp_path / "few")]
        code, stdout, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    line = next(ln for ln in stdout.splitlines() if ln.startswith("volume interval calibration"))
    assert "labeled cohort few/" in line and "3 scans" in line and "uncalibrated" in line
    assert "WARNING" in err and "--interval-calibration" in err
    meta = read_onnx_metadata(out)
    assert "only 3 calibration scan" in meta[f"{EXPORT_PREFIX}interval_calibration_warning"]
    assert IntervalCalibration.from_json(meta[METADATA_KEY]).weak


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--no-interval-calibration", "--interval-calibration", "x"], "exclude each other"),
        (["--mc-samples", "0", "--interval-calibration", "x"], "applies to an MC model"),
        (["--interval-calibration", "nowhere"], "--interval-calibration nowhere: no such data"),
        ([], "cannot rebuild the validation split"),  # the tiny checkpoint's split is made up
    ],
)
def test_cli_errors_are_one_line_before_any_work(
    tmp_path: Path, monkeypatch, capsys, extra, message
):
    ckpt = write_checkpoint(tmp_path / "model.pt", steps=1)
    out = tmp_path / "out" / "m.onnx"
    code, _, err = run_cli(monkeypatch, capsys, str(ckpt), "--onnx", str(out), *extra)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0], lines
    assert not out.parent.exists()


def test_options_refuse_contradictions(tmp_path: Path):
    with pytest.raises(ConfigError, match="exclude each other"):
        ExportOptions(tmp_path / "m.onnx", interval_calibration=False, interval_cohort=tmp_path)


@pytest.mark.integration
@pytest.mark.slow
def test_bench_interval_tiny(tmp_path: Path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(BENCH / "bench_interval.py"), "--tiny", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["test"]["n_scans"] >= 2 and doc["calibration"]["n_scans"] >= 2
    assert set(doc["test"]) >= {"uncalibrated", "calibrated"}
    for row in doc["test"]["uncalibrated"], doc["test"]["calibrated"]:
        assert 0.0 <= row["coverage"] <= 1.0 and row["median_width_ml"] >= 0.0
    assert not set(doc["seeds"]["test"]) & set(doc["seeds"]["calibration"])
