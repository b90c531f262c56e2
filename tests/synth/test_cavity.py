"""make_case's cavity truth: the intracranial space, its volume, and the bleeds inside it."""

from __future__ import annotations

import numpy as np
import pytest

from ugss.synth import SynthCase, make_case, make_scan


@pytest.fixture(scope="module")
def full_case() -> SynthCase:
    return make_case(3, matrix=96, hemorrhage="subdural", hemorrhage_ml=20.0, thin=False)


def test_make_case_matches_make_scan():
    case = make_case(7, matrix=64, max_slices=6)
    vol, mask, truth = make_scan(7, matrix=64, max_slices=6)
    assert np.array_equal(case.volume.hu, vol.hu) and np.array_equal(case.mask, mask)
    assert case.truth == truth
    assert case.cavity.dtype == bool and case.cavity.shape == vol.shape


def test_icv_is_adult_sized_on_full_coverage(full_case):
    icv = full_case.truth.extra["icv_ml"]
    assert icv == np.count_nonzero(full_case.cavity) * full_case.volume.voxel_volume_ml
    assert 1100.0 <= icv <= 1900.0


def test_bleeds_lie_inside_the_cavity(full_case):
    blood = full_case.mask > 0
    assert blood.any()
    assert np.mean(full_case.cavity[blood]) > 0.98


def test_cavity_excludes_bone_and_air(full_case):
    hu, cav = full_case.volume.hu, full_case.cavity
    # a voxel centred just inside the inner table is at most half bone: never full cortex
    assert np.mean(hu[cav] > 1000) < 0.002
    assert np.mean(hu[cav] > 300) < 0.06
    assert np.mean(hu[cav] < -200) < 0.002  # air sinuses, mastoids, outside
    assert np.mean(cav[hu < -500]) < 1e-3


def test_cli_writes_the_cavity_and_its_volume(tmp_path):
    import csv

    from typer.testing import CliRunner

    from ugss.runtime.nifti import read_nifti
    from ugss.synth.cli import app

    out = tmp_path / "c"
    result = CliRunner().invoke(app, [str(out), "--n", "1", "--matrix", "48", "--cavity"])
    assert result.exit_code == 0, result.output
    with open(out / "truth.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    cavity = read_nifti(out / "cavity" / "001.nii")
    ct = read_nifti(out / row["ct_path"])
    assert cavity.shape == ct.shape and np.array_equal(cavity.affine, ct.affine)
    assert float(row["icv_ml"]) == cavity.volume_ml(cavity.hu > 0)
    again = make_case(
        int(row["seed"]), matrix=48, thin=row["thin"] == "1", hemorrhage=row["hemorrhage_option"]
    )
    assert np.array_equal(again.cavity, cavity.hu > 0)
