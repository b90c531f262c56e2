"""The intracranial-space estimate against exact truth, and what segment/report/SR do with it.

The head phantom is made here: nested ellipsoids (scalp, skull, inner table) with a stepped
cranial floor (anterior, middle, posterior fossa), bone below it holding orbits (fat) and a
sinus (air), and a face in front (soft tissue around a nasal cavity). Its cavity — inside the
inner table and above the floor — is exact. The tiny ONNX models of ``onnx_models`` call
anything at blood density (≈ 55–95 HU) hemorrhage, wherever it is.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx_models as om
import pytest

from ugss.runtime.engines import OnnxEngine
from ugss.runtime.intracranial import (
    ADULT_ICV_ML,
    block_counts,
    block_factor,
    estimate_intracranial,
    model_pixel_rows,
)
from ugss.runtime.report import build_report
from ugss.runtime.segment import segment_volume
from ugss.runtime.volume import Volume
from ugss.synth.scan import make_case

A, B, C = 72.0, 92.0, 84.0  # outer half width (x), length (y), height (z), mm
SCALP, SKULL = 5.0, 6.0  # thicknesses, mm
BLOOD_HU = 70.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _rotation(pitch_deg: float, roll_deg: float) -> np.ndarray:
    p, r = np.deg2rad([pitch_deg, roll_deg])
    rx = np.array([[np.cos(p), -np.sin(p), 0], [np.sin(p), np.cos(p), 0], [0, 0, 1]])  # z–y
    ry = np.array([[np.cos(r), 0, -np.sin(r)], [0, 1, 0], [np.sin(r), 0, np.cos(r)]])  # z–x
    return rx @ ry


def _rho(w, v, u, centre, axes):
    """Normalised ellipsoid radius (< 1 inside)."""
    return np.sqrt(sum(((q - c) / s) ** 2 for q, c, s in zip((w, v, u), centre, axes, strict=True)))


def head(
    z_mm=(-60.0, 95.0),
    *,
    tilt=(0.0, 0.0),
    size: int = 128,
    pixel: float = 1.5,
    slice_mm: float = 5.0,
    extra_axial: bool = False,
    outside: bool = False,
    scale: float = 1.0,
    seed: int = 0,
) -> tuple[Volume, np.ndarray, np.ndarray]:
    """``(volume, cavity, blood)``: the phantom between head heights ``z_mm`` (the head centre
    is 0; the vertex at +84, the posterior fossa floor at −70), optionally tilted (pitch, roll
    in degrees), with a subdural/epidural crescent against the inner table (``extra_axial``) and
    blood-dense findings in the scalp and the face (``outside``); ``scale`` shrinks the head."""
    zc = np.arange(z_mm[0], z_mm[1], slice_mm)
    yc = (np.arange(size) - (size - 1) / 2) * pixel
    z, y, x = np.meshgrid(zc, yc, yc, indexing="ij")
    w, v, u = np.einsum("ij,j...->i...", _rotation(*tilt).T, np.stack([z, y, x]) / scale)
    outer = _rho(w, v, u, (0, 0, 0), (C, B, A))
    skull_out = _rho(w, v, u, (0, 0, 0), (C - SCALP, B - SCALP, A - SCALP))
    inner = _rho(w, v, u, (0, 0, 0), (C - SCALP - SKULL, B - SCALP - SKULL, A - SCALP - SKULL))
    floor = np.where(v < -35, -25.0, np.where(v < 10, -45.0, -70.0))
    cavity = (inner < 1) & (w > floor)
    hu = np.full(z.shape, -1000.0)
    face = _rho(w, v, u, (-45, -85, 0), (30, 25, 45)) < 1
    hu[(outer < 1) | face] = 40.0
    hu[_rho(w, v, u, (-45, -92, 0), (15, 15, 8)) < 1] = -950.0  # nasal cavity
    hu[skull_out < 1] = 1400.0
    hu[(inner < 1) & ~cavity] = 900.0  # cancellous bone below the floor
    for side in (-1, 1):  # orbits: fat in the bone below the anterior fossa
        hu[(_rho(w, v, u, (-42, -62, 30 * side), (13, 16, 13)) < 1) & (skull_out < 1)] = -80.0
    hu[_rho(w, v, u, (-55, -40, 0), (9, 10, 9)) < 1] = -950.0  # sphenoid sinus
    hu[cavity] = 35.0
    hu[cavity & (inner > 0.97)] = 5.0  # CSF against the inner table
    blood = np.zeros(z.shape, bool)
    if extra_axial:
        blood = cavity & (inner > 0.86) & (u > 20) & (np.abs(w - 20) < 25)
    if outside:  # a scalp haematoma on the right and a dense lesion in the face
        scalp = (outer > 0.9) & (outer < 1.06) & (skull_out >= 1) & (u < -30) & (np.abs(w) < 20)
        hu[scalp | (_rho(w, v, u, (-30, -95, 18), (8, 6, 8)) < 1)] = BLOOD_HU
    hu[blood] = BLOOD_HU
    hu += np.random.default_rng(seed).normal(0.0, 3.0, hu.shape)
    affine = np.diag([-pixel, -pixel, slice_mm, 1.0])
    return Volume(hu=hu.astype(np.float32), affine=affine), cavity, blood


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    return {
        "det": OnnxEngine(om.save(om.build_det_model(om.det_info(128)), d / "det.onnx")),
        "mc": OnnxEngine(om.save(om.build_mc_model(om.mc_info(128)), d / "mc.onnx")),
    }


@pytest.mark.parametrize(
    "name, z_mm, tilt",
    [
        ("full", (-60.0, 95.0), (0.0, 0.0)),
        ("tilted", (-70.0, 100.0), (18.0, 10.0)),
        ("cut at the top", (-60.0, 40.0), (0.0, 0.0)),
        ("slab", (-10.0, 40.0), (5.0, 0.0)),
    ],
)
def test_estimate_matches_the_exact_cavity(name, z_mm, tilt):
    volume, cavity, _ = head(z_mm, tilt=tilt)
    space = estimate_intracranial(volume)
    assert dice(space.mask, cavity) >= 0.95, name
    assert space.volume_ml == pytest.approx(volume.volume_ml(cavity), rel=0.05)
    assert space.volume_ml == pytest.approx(volume.volume_ml(space.mask))  # count = mask
    assert space.is_head
    assert space.cut_superior == (z_mm[1] < 80.0)
    assert not (space.mask & (volume.hu > 300)).any()  # no bone inside


def test_estimate_of_a_synthetic_scan():
    case = make_case(3, matrix=128, thin=False)
    space = estimate_intracranial(case.volume)
    assert dice(space.mask, case.cavity) >= 0.95
    assert ADULT_ICV_ML[0] * 0.6 < space.volume_ml < ADULT_ICV_ML[1] * 1.2


def test_extra_axial_blood_at_the_inner_table_survives(engines):
    volume, _, blood = head(extra_axial=True)
    seg = segment_volume(volume, engines["det"])
    assert seg.outside_ml == 0.0
    assert dice(seg.mask, blood) > 0.9
    assert np.count_nonzero(seg.mask & blood) > 0.95 * np.count_nonzero(blood)


def test_findings_outside_the_skull_are_dropped(engines):
    volume, _, blood = head(extra_axial=True, outside=True)
    seg = segment_volume(volume, engines["det"])
    assert seg.outside_ml > 1.0  # scalp haematoma and face lesion were found, then dropped
    assert dice(seg.mask, blood) > 0.9
    assert not (seg.mask & ~seg.intracranial.mask & (volume.hu < 300)).any()
    clean = segment_volume(head(extra_axial=True)[0], engines["det"])
    assert seg.volume_ml == pytest.approx(clean.volume_ml, rel=0.02)


@pytest.mark.slow
def test_mc_interval_counts_only_the_intracranial_space(engines):
    inside = segment_volume(head(extra_axial=True)[0], engines["mc"])
    both = segment_volume(head(extra_axial=True, outside=True)[0], engines["mc"])
    assert both.outside_ml > 1.0
    lo, hi = both.interval_ml
    assert lo <= both.volume_ml <= hi
    # the samples count the same intracranial blood, not the dropped scalp and face findings
    np.testing.assert_allclose(both.sample_volumes_ml, inside.sample_volumes_ml, rtol=0.05)
    assert both.interval_ml == pytest.approx(inside.interval_ml, rel=0.05)


def _water_cylinder() -> Volume:
    z, y, x = np.meshgrid(np.arange(20), np.arange(128), np.arange(128), indexing="ij")
    hu = np.full(z.shape, -1000.0, np.float32)
    hu[(y - 64) ** 2 + (x - 64) ** 2 < 50**2] = 0.0
    hu[(y - 60) ** 2 + (x - 70) ** 2 + (3 * (z - 10)) ** 2 < 12**2] = BLOOD_HU  # a "bleed"
    return Volume(hu=hu, affine=np.diag([-1.5, -1.5, 5.0, 1.0]))


def _small_shell() -> Volume:
    """A closed bone shell of 20 mm inner radius, all inside the scan: ~34 mL, not a head."""
    z, y, x = np.meshgrid(np.arange(16), np.arange(96), np.arange(96), indexing="ij")
    r = np.sqrt(((z - 7.5) * 5.0) ** 2 + ((y - 48) * 1.0) ** 2 + ((x - 48) * 1.0) ** 2)
    hu = np.full(z.shape, -1000.0, np.float32)
    hu[r < 40] = 40.0
    hu[r < 26] = 1200.0
    hu[r < 20] = BLOOD_HU
    return Volume(hu=hu, affine=np.diag([-1.0, -1.0, 5.0, 1.0]))


def _body() -> Volume:
    """A trunk-like slab: soft tissue, a vertebra whose ring encloses the spinal canal on every
    slice (cut at both ends, as a truncated head would be), no skull."""
    z, y, x = np.meshgrid(np.arange(20), np.arange(128), np.arange(128), indexing="ij")
    hu = np.full(z.shape, -1000.0, np.float32)
    hu[((y - 64) / 55.0) ** 2 + ((x - 64) / 62.0) ** 2 < 1] = 40.0
    r = np.sqrt((y - 90) ** 2 + (x - 64) ** 2)
    hu[r < 14] = 700.0  # vertebral ring
    hu[r < 8] = 20.0  # spinal canal (≈ 200 mm²)
    hu[(y - 50) ** 2 + (x - 50) ** 2 < 64] = BLOOD_HU  # something blood-dense in the trunk
    return Volume(hu=hu, affine=np.diag([-1.5, -1.5, 5.0, 1.0]))


@pytest.mark.parametrize("make", [_water_cylinder, _small_shell, _body])
def test_not_a_head_claims_nothing(make, engines):
    volume = make()
    for engine in engines.values():
        seg = segment_volume(volume, engine)
        assert not seg.assessed and not seg.hemorrhage_present
        assert not seg.mask.any() and seg.volume_ml == 0.0 and seg.interval_ml is None
        report = build_report(volume, seg, engine)
        codes = [f.code for f in report.qc_flags]
        assert "not_head_ct" in codes and "truncated_scan" not in codes
        assert report.assessed is False and "not assessed" in report.summary_line()
        assert "not assessed" in report.to_markdown()


def test_icv_flags_tell_truncation_from_implausible():
    from ugss.runtime.report import icv_flags

    volume, _, _ = head((-10.0, 40.0))
    (flag,) = icv_flags(estimate_intracranial(volume))
    assert flag.code == "truncated_scan" and "first and last" in flag.message
    assert icv_flags(estimate_intracranial(head()[0])) == []  # an adult-sized, complete head
    small = estimate_intracranial(head(scale=0.8)[0])  # a complete head of ~750 mL
    assert not small.truncated and 600 < small.volume_ml < 900
    assert [f.code for f in icv_flags(small)] == ["implausible_icv"]


@pytest.mark.integration
def test_icv_in_json_markdown_and_sr(engines, tmp_path):
    volume, _, _ = head(extra_axial=True)
    seg = segment_volume(volume, engines["mc"])
    report = build_report(volume, seg, engines["mc"])
    data = json.loads(report.to_json())
    assert data["intracranial_ml"] == pytest.approx(seg.intracranial_ml)
    assert ADULT_ICV_ML[0] < data["intracranial_ml"] < ADULT_ICV_ML[1]
    assert data["assessed"] is True and data["outside_intracranial_ml"] == 0.0
    assert "intracranial" in data["timings_s"]
    assert f"| Intracranial volume (searched) | {seg.intracranial_ml:.0f} mL |" in (
        report.to_markdown()
    )
    sr = _sr(seg, tmp_path / "sr.dcm")
    from ugss.dicom_node.sr import read_intracranial_ml, read_not_assessed, read_volume_ml

    assert read_intracranial_ml(sr) == pytest.approx(seg.intracranial_ml, abs=0.05)
    assert read_volume_ml(sr)[0] == pytest.approx(seg.volume_ml, abs=1e-3)
    assert read_not_assessed(sr) is None


@pytest.mark.integration
def test_sr_of_a_scan_that_is_not_a_head(engines, tmp_path):
    from ugss.dicom_node.sr import NOT_HEAD_CT, read_not_assessed, read_volume_ml

    seg = segment_volume(_water_cylinder(), engines["det"])
    sr = _sr(seg, tmp_path / "sr.dcm")
    assert read_not_assessed(sr) == NOT_HEAD_CT
    with pytest.raises(ValueError):  # no hemorrhage volume is claimed
        read_volume_ml(sr)


def _sr(seg, path):
    """Write the node's SR for ``seg`` (a small SEG for it to reference) and read it back;
    dciodvfy must find no error where it is installed."""
    import shutil
    import subprocess

    import pydicom

    from ugss.dicom_node.seg import ResultIds, build_seg
    from ugss.dicom_node.sr import VolumeFinding, build_sr
    from ugss.runtime.dicom_series import read_dicom_series_with_refs, write_dicom_series

    hu = np.full((2, 16, 16), -1000.0, dtype=np.float32)
    hu[:, 4:12, 4:12] = 40.0
    folder = path.parent / "ct"
    write_dicom_series(Volume(hu=hu, affine=np.diag([-1.0, -1.0, 5.0, 1.0])), folder)
    _, info = read_dicom_series_with_refs(folder)
    ids = ResultIds.for_version(str(info.headers[0].SeriesInstanceUID), 1)
    seg_ds = build_seg(info.headers, hu > 0, ids, model_name="tiny", model_version="1")
    sr = build_sr(seg_ds, ids.seg_series_uid, VolumeFinding.of(seg), ids,
                  model_name="tiny", model_version="1")  # fmt: skip
    sr.save_as(path, enforce_file_format=True)
    if shutil.which("dciodvfy"):
        out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if "Error" in line]
        assert errors == []
    return pydicom.dcmread(path)


@pytest.mark.slow
def test_ugss_infer_exits_0_on_a_scan_that_is_not_a_head(tmp_path, monkeypatch, capsys):
    from ugss.runtime.infer_cli import main
    from ugss.runtime.nifti import write_nifti

    model = om.save(om.build_det_model(om.det_info()), tmp_path / "det.onnx")
    scan = write_nifti(tmp_path / "cylinder.nii.gz", _water_cylinder().hu, _water_cylinder())
    out_dir = tmp_path / "out"
    monkeypatch.setattr(
        sys, "argv", ["ugss-infer", str(scan), "-o", str(out_dir), "--model", str(model)]
    )
    with pytest.raises(SystemExit) as exc:
        main()
    assert (exc.value.code or 0) == 0
    assert "not assessed: not a head CT" in capsys.readouterr().out
    report = json.loads((out_dir / "cylinder_report.json").read_text())
    assert report["assessed"] is False and report["total_volume_ml"] == 0.0
    assert "not_head_ct" in [f["code"] for f in report["qc_flags"]]


def test_block_helpers():
    rng = np.random.default_rng(0)
    hit = rng.random((3, 37, 45)) < 0.3
    for f in (1, 2, 4, 8):
        pad = np.zeros((3, -(-37 // f) * f, -(-45 // f) * f), bool)
        pad[:, :37, :45] = hit
        expected = pad.reshape(3, pad.shape[1] // f, f, pad.shape[2] // f, f).sum(axis=(2, 4))
        np.testing.assert_array_equal(block_counts(hit, f), expected)
    assert [block_factor(p) for p in (0.25, 0.45, 0.9, 1.5)] == [8, 4, 2, 1]
    # model pixel centres: 512 native rows, 256 model rows → every other pair's centre
    rows = model_pixel_rows(256, 512, 0, 512)
    assert rows[0] in (0, 1) and rows[-1] in (510, 511)
    padded = model_pixel_rows(64, 128, 14, 100)  # 100 rows padded by 14 to 128
    assert padded[0] == -1 and padded[-1] == -1 and padded[32] in range(50, 53)


def test_estimate_is_fast():
    """About 10 ms for 28 x 128² on an idle machine, 0.4 s beside a training run on 2 cores:
    the bound catches an algorithmic regression, not a busy machine (bench_intracranial.py
    measures the real cost against the model)."""
    import time

    volume, _, _ = head()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        estimate_intracranial(volume)
        times.append(time.perf_counter() - t0)
    assert float(np.median(times)) < 1.5


@pytest.mark.integration
def test_benchmark_tiny_mode_runs():
    """benchmarks/bench_intracranial.py --tiny: one small scan per set, then the model share."""
    import subprocess
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_intracranial.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--tiny"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "of model time" in proc.stdout
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("all ")]
    assert len(rows) == 1 and float(rows[0][2]) >= 0.9  # mean Dice of the tiny scans


@pytest.mark.slow
def test_node_job_on_a_series_that_is_not_a_head(engines, tmp_path):
    """The node's job passes the assessment through: SR "not assessed", no volume claimed,
    result.json and the overlay caption say so."""
    import pydicom

    from ugss.dicom_node.jobs import process_series
    from ugss.dicom_node.sr import NOT_HEAD_CT, read_not_assessed
    from ugss.runtime.dicom_series import write_dicom_series

    folder = tmp_path / "ct"
    write_dicom_series(_water_cylinder(), folder)
    uid = str(pydicom.dcmread(next(folder.iterdir())).SeriesInstanceUID)
    out = process_series(
        folder, study_uid="1.2.3", series_uid=uid, version=1, engine=engines["det"],
        results=tmp_path / "results", overlay=True,
    )  # fmt: skip
    assert out.summary["assessed"] is False and out.summary["volume_ml"] == 0.0
    sr = next(f for f in out.files if f.kind == "sr")
    assert read_not_assessed(pydicom.dcmread(sr.path)) == NOT_HEAD_CT
    overlay = [f for f in out.files if f.kind == "overlay"]
    assert overlay and all(f.path.is_file() for f in overlay)
