"""``ugss-infer`` end to end: real files in, real onnxruntime, files out on the input's grid."""

from __future__ import annotations

import gzip
import json
import sys

import nibabel as nib
import numpy as np
import onnx_models as om
import pytest

from ugss.runtime.dicom_series import write_dicom_series
from ugss.runtime.infer_cli import expand_inputs, main, unique_names
from ugss.runtime.io import read_volume
from ugss.runtime.nifti import write_nifti
from ugss.synth.scan import make_scan

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ugss-infer", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "mc": om.save(om.build_mc_model(om.mc_info()), d / "mc.onnx"),
        "det": om.save(om.build_det_model(om.det_info()), d / "det.onnx"),
        "foreign": om.save(om.build_det_model(None), d / "foreign.onnx"),
    }


def save_ras_nifti(path, hu_zyx, spacing=(5.0, 0.9, 0.9), dtype=np.int16):
    """Store canonical (z, y, x) data the way many tools do: RAS+ voxel order, int16."""
    sz, sy, sx = spacing
    data = hu_zyx.transpose(2, 1, 0)[::-1, ::-1, :]  # i → patient right, j → anterior, k → up
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = (-50.0, -60.0, 20.0)
    img = nib.Nifti1Image(np.rint(data).astype(dtype), affine)
    img.set_qform(affine, code=1)
    nib.save(img, str(path))
    return path


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    d = tmp_path_factory.mktemp("scans")
    bleed, truth = om.phantom_hu()
    clean, _ = om.phantom_hu(bleed=False, seed=1)
    return {
        "bleed": save_ras_nifti(d / "bleed.nii.gz", bleed),
        "clean": save_ras_nifti(d / "clean.nii.gz", clean),
        "truth": truth,
    }


@pytest.mark.slow
def test_outputs_on_the_input_grid_with_consistent_volume(
    models, scans, tmp_path, monkeypatch, capsys
):
    code, out, err = run(
        monkeypatch, capsys, scans["bleed"], "--model", models["mc"], "-o", tmp_path
    )
    assert code == 0, err
    assert out.strip().startswith("bleed.nii.gz:") and "mL" in out and "left" in out
    src = nib.load(str(scans["bleed"]))
    mask_img = nib.load(str(tmp_path / "bleed_mask.nii.gz"))
    for name in ("mask", "prob", "uncertainty"):
        img = nib.load(str(tmp_path / f"bleed_{name}.nii.gz"))
        assert img.shape == src.shape
        np.testing.assert_allclose(img.affine, src.affine, atol=1e-5)
    mask = np.asarray(mask_img.dataobj)
    report = json.loads((tmp_path / "bleed_report.json").read_text())
    voxel_ml = abs(np.linalg.det(mask_img.affine[:3, :3])) / 1000.0
    assert report["total_volume_ml"] == pytest.approx(np.count_nonzero(mask) * voxel_ml)
    lo, hi = report["interval_ml"]
    assert lo <= report["total_volume_ml"] <= hi
    # the mask lies on the blood of the input file, voxel for voxel
    hu = np.asarray(src.dataobj)
    blood = (hu > 60) & (hu < 100)
    assert (mask.astype(bool) & blood).sum() > 0.9 * mask.sum()
    assert report["components"][0]["side"] == "left"
    # maps hold values in [0, 1] (uint8 + slope); the mask is where the stored prob is ≥ 0.5
    prob = np.asarray(nib.load(str(tmp_path / "bleed_prob.nii.gz")).get_fdata())
    unc = np.asarray(nib.load(str(tmp_path / "bleed_uncertainty.nii.gz")).get_fdata())
    assert prob.min() >= 0.0 and unc.min() >= 0.0  # slope 1/255 is stored as float32
    assert prob.max() <= 1 + 1e-6 and unc.max() <= 1 + 1e-6
    assert (prob >= 0.5)[mask.astype(bool)].all()
    for stage in ("read", "preprocess", "model", "postprocess", "write", "pictures"):
        assert report["timings_s"][stage] >= 0
    for pic in ("bleed_montage.png", "bleed_3d.png"):
        assert (tmp_path / pic).read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "bleed_hemorrhage.ply").read_bytes().startswith(b"ply\n")
    assert "Hemorrhage present | **yes**" in (tmp_path / "bleed_report.md").read_text()


def test_unit_map_round_trip(tmp_path):
    from ugss.runtime.pipeline import write_unit_map

    hu, _ = om.phantom_hu((5, 32, 40))
    volume = read_volume(save_ras_nifti(tmp_path / "s.nii.gz", hu))
    data = np.random.default_rng(0).random(volume.shape, dtype=np.float32)
    img = nib.load(str(write_unit_map(tmp_path / "m.nii.gz", data, volume)))
    assert img.get_data_dtype() == np.uint8
    back = read_volume(tmp_path / "m.nii.gz").hu  # read like any scan: canonical order
    assert np.abs(back - data).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(back >= 0.5, data >= 0.5)


def test_hemorrhage_free_scan(models, scans, tmp_path, monkeypatch, capsys):
    code, out, _ = run(
        monkeypatch,
        capsys,
        scans["clean"],
        "--model",
        models["det"],
        "-o",
        tmp_path,
        "--no-pictures",
    )
    assert code == 0 and "no hemorrhage" in out
    report = json.loads((tmp_path / "clean_report.json").read_text())
    assert report["hemorrhage_present"] is False and report["total_volume_ml"] == 0.0
    assert report["components"] == [] and report["interval_ml"] is None
    assert not np.asarray(nib.load(str(tmp_path / "clean_mask.nii.gz")).dataobj).any()
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "clean_uncertainty.nii.gz").exists()


def test_deterministic_flag_with_mc_model(models, scans, tmp_path, monkeypatch, capsys):
    code, _, _ = run(
        monkeypatch, capsys, scans["bleed"], "--model", models["mc"], "--deterministic",
        "--no-pictures", "-o", tmp_path, "--threads", "1", "--batch-size", "4",
    )  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "bleed_report.json").read_text())
    assert report["model"]["mode"] == "deterministic" and report["interval_ml"] is None
    assert not (tmp_path / "bleed_uncertainty.nii.gz").exists()


def _bad_inputs(d, models):
    text = d / "notes.txt"
    text.write_text("not an image")
    flat = d / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((64, 64), np.int16), np.eye(4)), str(flat))
    mr = d / "mr.nii.gz"
    rng = np.random.default_rng(0)
    nib.save(
        nib.Nifti1Image(rng.uniform(0, 900, (64, 64, 8)).astype(np.float32), np.eye(4)), str(mr)
    )
    corrupt = d / "corrupt.nii.gz"
    corrupt.write_bytes(gzip.compress(b"\0" * 4000)[:60] + b"garbage")
    return {
        "missing": ([d / "nope.nii.gz"], "no such file"),
        "not an image": ([text], "not a NIfTI"),
        "2D": ([flat], "3D"),
        "non-CT": ([mr], "not CT"),
        "corrupt gzip": ([corrupt], "corrupt.nii.gz"),
        "foreign model": (["--model", models["foreign"], d / "nope.nii.gz"], "no UGSS metadata"),
        "model not ONNX": (["--model", text, d / "nope.nii.gz"], "not a usable ONNX model"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing", "not an image", "2D", "non-CT", "corrupt gzip", "foreign model", "model not ONNX"],
)
def test_bad_input_gives_one_error_line_and_exit_2(case, models, tmp_path, monkeypatch, capsys):
    args, fragment = _bad_inputs(tmp_path, models)[case]
    if "--model" not in args:
        args = [*args, "--model", models["det"]]
    code, _, err = run(monkeypatch, capsys, *args, "-o", tmp_path / "out")
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], err


def test_batch_with_a_bad_file_processes_the_others(models, scans, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for key in ("bleed", "clean"):
        (folder / scans[key].name).write_bytes(scans[key].read_bytes())
    (folder / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    out_dir = tmp_path / "out"
    code, out, err = run(
        monkeypatch, capsys, folder, "--model", models["det"], "-o", out_dir, "--no-pictures"
    )
    assert code == 2
    assert "bleed.nii.gz:" in out and "clean.nii.gz: no hemorrhage" in out
    assert (out_dir / "bleed_report.json").exists() and (out_dir / "clean_mask.nii.gz").exists()
    assert "1 of 3 scans failed" in err and "broken.nii.gz" in err


def test_dicom_series_folder(models, scans, tmp_path, monkeypatch, capsys):
    from ugss.runtime.dicom_write import write_dicom_series

    volume = read_volume(scans["bleed"])
    series = tmp_path / "series01"
    write_dicom_series(volume, series)
    out_dir = tmp_path / "out"
    code, out, err = run(
        monkeypatch, capsys, tmp_path, "--model", models["det"], "-o", out_dir, "--no-pictures"
    )
    assert code == 0, err
    assert out.startswith("series01:")
    dicom_volume = read_volume(series)
    mask_img = nib.load(str(out_dir / "series01_mask.nii.gz"))
    expected, affine = dicom_volume.to_source(np.zeros(dicom_volume.shape, np.uint8))
    assert mask_img.shape == expected.shape
    np.testing.assert_allclose(mask_img.affine, affine, atol=1e-4)
    nifti_run = json.loads((out_dir / "series01_report.json").read_text())
    assert nifti_run["total_volume_ml"] == pytest.approx(
        np.count_nonzero(np.asarray(mask_img.dataobj)) * dicom_volume.voxel_volume_ml
    )
    assert nifti_run["scan"]["format"] == "dicom"


def test_input_expansion(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.nii.gz").write_bytes(b"")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.nii").write_bytes(b"")
    (tmp_path / "b" / "README.txt").write_text("notes")  # not a DICOM series
    (tmp_path / "b" / "x_mask.nii.gz").write_bytes(b"")  # an earlier run's output
    found = expand_inputs([str(tmp_path)])
    assert found == [tmp_path / "a" / "x.nii.gz", tmp_path / "b" / "x.nii"]
    assert unique_names(found) == ["a_x", "b_x"]
    assert expand_inputs([str(tmp_path / "*" / "x.nii*")]) == found
    assert expand_inputs([str(tmp_path / "none*.nii")]) == [tmp_path / "none*.nii"]


def test_a_study_export_gives_each_series_folder_once(tmp_path, asym_volume):
    """A folder holding DICOM images is one series, read with its subfolders (as the series
    reader does): the walker lists it once and not its subfolders; folders above series
    folders, a CD export's DICOMDIR among them, are walked into."""
    study = tmp_path / "export"
    se1, se2 = study / "DICOM" / "ST1" / "SE1", study / "DICOM" / "ST1" / "SE2"
    write_dicom_series(asym_volume, se1, series_number=1, uid_entropy="se1")
    write_dicom_series(asym_volume, se2, series_number=2, uid_entropy="se2")
    (study / "DICOMDIR").write_bytes(bytes(128) + b"DICM")  # the index: not a series
    (study / "README.TXT").write_text("exported by a PACS\n")
    split = tmp_path / "split"  # one series whose last slices sit in a subfolder
    files = write_dicom_series(asym_volume, split, uid_entropy="split")
    (split / "more").mkdir()
    for f in files[3:]:
        f.rename(split / "more" / f.name)
    found = expand_inputs([str(study), str(split)])
    assert found == [se1, se2, split]
    volumes = [read_volume(p) for p in found]
    assert [v.shape for v in volumes] == [asym_volume.shape] * 3  # every slice, each once
    assert len({v.source.series_instance_uid for v in volumes}) == 3


@pytest.mark.slow
def test_bundled_default_model(scans, tmp_path, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, scans["bleed"], "-o", tmp_path, "--no-pictures")
    assert code == 0, err
    report = json.loads((tmp_path / "bleed_report.json").read_text())
    mask = np.asarray(nib.load(str(tmp_path / "bleed_mask.nii.gz")).dataobj)
    voxel_ml = read_volume(scans["bleed"]).voxel_volume_ml
    assert report["total_volume_ml"] == pytest.approx(np.count_nonzero(mask) * voxel_ml)
    if report["interval_ml"] is not None:
        assert report["interval_ml"][0] <= report["total_volume_ml"] <= report["interval_ml"][1]


def test_synthetic_scan_in_another_orientation(models, tmp_path, monkeypatch, capsys):
    """A ugss.synth scan stored in a non-canonical voxel order."""
    volume, _, truth = make_scan(5, matrix=96, hemorrhage="subdural", orientation="PLS")
    path = write_nifti(tmp_path / "synth.nii.gz", volume.hu, like=volume, dtype=np.int16)
    code, _, err = run(
        monkeypatch, capsys, path, "--model", models["mc"], "-o", tmp_path / "o", "--no-pictures"
    )
    assert code == 0, err
    src, mask_img = nib.load(str(path)), nib.load(str(tmp_path / "o" / "synth_mask.nii.gz"))
    assert "".join(nib.aff2axcodes(src.affine)) == truth.orientation == "PLS"
    assert mask_img.shape == src.shape
    np.testing.assert_allclose(mask_img.affine, src.affine, atol=1e-5)
    report = json.loads((tmp_path / "o" / "synth_report.json").read_text())
    voxel_ml = abs(np.linalg.det(src.affine[:3, :3])) / 1000.0
    count = np.count_nonzero(np.asarray(mask_img.dataobj))
    assert report["total_volume_ml"] == pytest.approx(count * voxel_ml)
    assert report["scan"]["source_orientation"] == "PLS"


@pytest.mark.integration
def test_benchmark_tiny_mode_runs(tmp_path):
    """benchmarks/bench_infer.py --tiny: the CI smoke run of the benchmark keeps working."""
    import subprocess
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_infer.py"
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(bench), "--tiny", "--no-pictures", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result["results"]) == {"deterministic", "mc"}
    for row in result["results"].values():
        assert row["stages_s"]["model"] > 0 and row["end_to_end_no_pictures_s"] > 0
    assert result["environment"]["onnxruntime"]
    assert "model" in proc.stdout


@pytest.mark.integration
def test_crop_benchmark_tiny_mode_runs():
    """benchmarks/bench_crop.py --tiny: full plane first, then one row per margin."""
    import subprocess
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_crop.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--tiny", "--margins", "16"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[2:]]
    assert rows[0][1] == "full" and rows[0][5] == "1.00x"
    assert rows[1][0] == "16" and 0.0 < float(rows[1][2]) <= 1.0
