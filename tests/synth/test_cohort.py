"""make_cohort on disk: PhysioNet layout, exact truth volumes, orientations, determinism, DICOM."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ugss.errors import ConfigError
from ugss.runtime.nifti import read_nifti, write_nifti
from ugss.synth import CohortSummary, make_cohort, make_scan
from ugss.synth.cohort import DIAGNOSIS_COLUMNS
from ugss.synth.geometry import STORAGE_AXCODES


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> CohortSummary:
    out = tmp_path_factory.mktemp("cohort")
    return make_cohort(out, n_scans=4, seed=3, matrix=64, thin_fraction=0.25, free_fraction=0.25)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_layout_and_csv_files(cohort):
    out = cohort.out_dir
    assert sorted(p.name for p in (out / "ct_scans").iterdir()) == [
        "001.nii",
        "002.nii",
        "003.nii",
        "004.nii",
    ]
    assert sorted(p.name for p in (out / "masks").iterdir()) == [
        "001.nii",
        "002.nii",
        "003.nii",
        "004.nii",
    ]
    truth = _rows(out / "truth.csv")
    assert [r["scan_id"] for r in truth] == ["001", "002", "003", "004"]
    assert sum(r["types"] == "none" for r in truth) == 1
    assert sum(r["thin"] == "1" for r in truth) == 1
    diag = _rows(out / "hemorrhage_diagnosis_raw_ct.csv")
    assert tuple(diag[0]) == DIAGNOSIS_COLUMNS
    assert len(diag) == sum(int(r["shape_z"]) for r in truth)
    json.loads((out / "cohort.json").read_text())
    assert cohort.to_dict()["n_scans"] == 4


def test_truth_matches_the_written_files_exactly(cohort):
    out = cohort.out_dir
    diag = _rows(out / "hemorrhage_diagnosis_raw_ct.csv")
    for row, rec in zip(_rows(out / "truth.csv"), cohort.scans, strict=True):
        ct = read_nifti(out / row["ct_path"])
        mask_vol = read_nifti(out / row["mask_path"])
        mask = mask_vol.hu > 0
        assert np.array_equal(mask_vol.affine, ct.affine)
        assert nib.load(out / row["ct_path"]).get_data_dtype() == np.int16
        assert nib.load(out / row["mask_path"]).get_data_dtype() == np.uint8
        voxel_ml = abs(np.linalg.det(mask_vol.affine[:3, :3])) / 1000.0
        assert float(row["volume_ml"]) == float(np.count_nonzero(mask)) * voxel_ml
        assert float(row["volume_ml"]) == rec.volume_ml == mask_vol.volume_ml(mask)
        positive = np.flatnonzero(mask.any(axis=(1, 2))).tolist()
        assert row["positive_slices"] == ";".join(map(str, positive))
        assert int(row["n_positive_slices"]) == len(positive)
        assert ct.shape == tuple(int(row[f"shape_{a}"]) for a in "zyx")
        assert ct.spacing == tuple(float(row[f"spacing_{a}"]) for a in "zyx")
        # the per-slice PhysioNet file agrees with the mask, slice numbers 1-based
        mine = [d for d in diag if d["PatientNumber"] == str(int(row["scan_id"]))]
        assert [int(d["SliceNumber"]) for d in mine] == list(range(1, ct.shape[0] + 1))
        assert [int(d["No_Hemorrhage"]) == 0 for d in mine] == mask.any(axis=(1, 2)).tolist()
        # regenerating from the truth row gives the same scan
        again, again_mask, _ = make_scan(
            int(row["seed"]),
            matrix=64,
            thin=row["thin"] == "1",
            hemorrhage=row["hemorrhage_option"],
        )
        assert np.array_equal(again.hu, ct.hu) and np.array_equal(again_mask > 0, mask)


def test_same_seed_gives_identical_bytes(tmp_path, cohort):
    again = make_cohort(
        tmp_path / "again", n_scans=4, seed=3, matrix=64, thin_fraction=0.25, free_fraction=0.25
    )
    for rel in (
        "ct_scans/002.nii",
        "masks/003.nii",
        "truth.csv",
        "hemorrhage_diagnosis_raw_ct.csv",
    ):
        assert (again.out_dir / rel).read_bytes() == (cohort.out_dir / rel).read_bytes(), rel


@pytest.mark.parametrize("axcodes", sorted(STORAGE_AXCODES))
def test_storage_orientation_round_trip(tmp_path, axcodes):
    vol, mask, truth = make_scan(
        9, matrix=48, max_slices=3, fov="rect", hemorrhage="subdural", orientation=axcodes
    )
    write_nifti(tmp_path / "ct.nii.gz", vol.hu, like=vol, dtype=np.int16)
    write_nifti(tmp_path / "mask.nii.gz", mask, like=vol, dtype=np.uint8)
    img = nib.load(tmp_path / "ct.nii.gz")
    assert "".join(nib.aff2axcodes(img.affine)) == axcodes
    back = read_nifti(tmp_path / "ct.nii.gz")
    back_mask = read_nifti(tmp_path / "mask.nii.gz")
    assert np.array_equal(back.hu, vol.hu)
    assert np.array_equal(back.affine, vol.affine)
    assert np.array_equal(back_mask.hu.astype(np.uint8), mask)
    assert back_mask.volume_ml(back_mask.hu > 0) == truth.volume_ml


def test_compressed_cohort(tmp_path):
    summary = make_cohort(tmp_path / "gz", n_scans=1, seed=0, matrix=48, compress=True)
    rec = summary.scans[0]
    assert rec.ct_path == "ct_scans/001.nii.gz"
    assert read_nifti(summary.out_dir / rec.ct_path).shape == rec.shape


def test_every_type_appears_in_a_small_cohort(tmp_path):
    summary = make_cohort(
        tmp_path / "c", n_scans=5, seed=1, matrix=32, thin_fraction=0.0, free_fraction=0.0
    )
    assert {t for s in summary.scans for t in s.types} == {
        "intraventricular",
        "intraparenchymal",
        "subarachnoid",
        "epidural",
        "subdural",
    }


@pytest.mark.parametrize(
    "kwargs",
    [{"n_scans": 0}, {"matrix": 8}, {"thin_fraction": 1.5}, {"free_fraction": -0.1}, {"seed": -1}],
)
def test_bad_options(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        make_cohort(tmp_path / "x", **kwargs)


def test_out_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError):
        make_cohort(tmp_path / "f", n_scans=1, matrix=32)


def test_sharp_fraction_is_an_exact_count_and_leaves_the_rest_of_the_plan(tmp_path):
    summary = make_cohort(tmp_path / "k", n_scans=6, seed=3, matrix=32, sharp_fraction=0.5)
    kernels = [s.extra["kernel"] for s in summary.scans]
    assert kernels.count("sharp") == 3 and kernels.count("soft") == 3
    natural = make_cohort(tmp_path / "n", n_scans=6, seed=3, matrix=32)
    assert [s.types for s in summary.scans] == [s.types for s in natural.scans]
    assert [s.extra["hemorrhage_option"] for s in summary.scans] == [
        s.extra["hemorrhage_option"] for s in natural.scans
    ]
    doc = json.loads((summary.out_dir / "cohort.json").read_text())
    assert doc["options"]["sharp_fraction"] == 0.5
    with pytest.raises(ConfigError):
        make_cohort(tmp_path / "bad", n_scans=2, matrix=32, sharp_fraction=1.5)


def test_dicom_series_are_written(tmp_path):
    summary = make_cohort(
        tmp_path / "d", n_scans=1, seed=2, matrix=48, thin_fraction=0.0, dicom=True
    )
    rec = summary.scans[0]
    folder = summary.out_dir / rec.dicom_dir
    assert rec.dicom_dir == "dicom/001" and len(list(folder.glob("*.dcm"))) == rec.shape[0]
    from ugss.runtime.dicom_series import read_dicom_series

    back = read_dicom_series(folder)
    ct = read_nifti(summary.out_dir / rec.ct_path)
    assert np.array_equal(back.hu, ct.hu)
    np.testing.assert_allclose(back.affine, ct.affine, atol=1e-4)
