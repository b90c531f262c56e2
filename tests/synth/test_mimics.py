"""The mimics of blood: present at their densities, inside or outside the cavity as in life, and
never labelled; kernels, coverage and large bleeds drawn in realistic shares."""

from __future__ import annotations

import numpy as np
import pytest

from ugss.errors import ConfigError
from ugss.synth import make_case
from ugss.synth.anatomy import draw_anatomy
from ugss.synth.cohort import _plan
from ugss.synth.geometry import HeadPose
from ugss.synth.render import STRUCTURES, outer_points
from ugss.synth.scan import _coverage


def _code(name: str) -> int:
    return STRUCTURES.index(name) + 1


@pytest.fixture(scope="module")
def clean():
    """A full-coverage hemorrhage-free scan without noise, so densities read exactly."""
    return make_case(0, matrix=128, thin=False, noise_sd=0.0, kernel="soft", hemorrhage="none")


def test_dura_and_sinuses_at_their_densities(clean):
    hu, st = clean.volume.hu, clean.structures
    sinus = hu[st == _code("venous_sinus")]
    assert sinus.size > 100 and 40.0 <= np.median(sinus) <= 62.0
    tent = hu[st == _code("tentorium")]
    assert tent.size > 20 and 38.0 <= np.median(tent) <= 70.0
    falx = hu[st == _code("falx")]
    assert falx.size > 100 and 30.0 <= np.median(falx) <= 70.0  # 1–3 mm sheet, 1 mm pixels
    assert clean.cavity[st == _code("venous_sinus")].all()  # intracranial, outside the brain


def test_petrous_bone_is_dense_and_outside_the_cavity(clean):
    petrous = clean.structures == _code("petrous_bone")
    assert petrous.sum() > 50
    assert np.percentile(clean.volume.hu[petrous], 75) > 1500.0
    assert not clean.cavity[petrous].any()


def test_air_and_fat_lie_outside_the_cavity(clean):
    hu, cav = clean.volume.hu, clean.cavity
    head = hu > -900
    assert np.count_nonzero(head & (hu < -300)) > 500  # sinuses, mastoid cells, nasal cavity
    assert np.mean(cav[hu < -50]) < 1e-3  # air and orbital/subcutaneous fat never intracranial


def test_calcifications_in_some_adults():
    found = 0
    for seed in range(6):
        case = make_case(seed, matrix=96, thin=False, hemorrhage="none", noise_sd=0.0)
        calc = case.structures == _code("calcification")
        if case.truth.extra["calcifications"] and calc.any():
            found += 1
            assert case.volume.hu[calc].max() > 100.0
            assert case.cavity[calc].all()
    assert 1 <= found <= 6


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_labels_are_blood_only(seed):
    case = make_case(seed, matrix=96, thin=False, hemorrhage="any")
    blood = case.mask > 0
    assert blood.any()
    assert not (case.structures[blood] > 0).any()
    assert case.cavity[blood].mean() > 0.97
    assert 40.0 <= float(np.median(case.volume.hu[blood])) <= 95.0


def test_chronic_collections_are_not_labelled():
    for seed in range(40):
        case = make_case(seed, matrix=48, max_slices=12, hemorrhage="none")
        coll = case.structures == _code("chronic_collection")
        if coll.any():
            assert not case.mask.any()
            return
    pytest.fail("no chronic / subacute collection in 40 seeds (drawn in ~10 %)")


def test_icv_of_full_coverage_adults():
    for seed in (11, 12, 13):
        case = make_case(seed, matrix=64, slice_thickness=5.0, thin=False, hemorrhage="none")
        cav = case.cavity.any(axis=(1, 2))
        if cav[-1]:
            continue  # stops below the vertex: part of the cavity is out of view
        assert 1100.0 <= case.truth.extra["icv_ml"] <= 1900.0


@pytest.mark.slow
def test_large_bleeds_come_out_large():
    case = make_case(2, matrix=96, thin=False, hemorrhage="subdural", hemorrhage_ml=60.0)
    assert 35.0 <= case.truth.volume_ml <= 90.0
    big = sum(
        make_case(s, matrix=32, thin=False, hemorrhage=o).truth.volume_ml >= 25.0
        for s, _, o in _plan(12, 4, 0.0, 0.0)
    )
    assert big >= 1


def test_sharp_kernel_share_and_noise():
    sharp = make_case(5, matrix=48, max_slices=4, kernel="sharp")
    assert sharp.truth.extra["kernel"] == "sharp" and 30.0 <= sharp.truth.noise_sd <= 60.0
    soft = make_case(5, matrix=48, max_slices=4, kernel="soft")
    assert 3.0 <= soft.truth.noise_sd <= 8.0
    kernels = [make_case(s, matrix=32, max_slices=1).truth.extra["kernel"] for s in range(40)]
    assert 2 <= kernels.count("sharp") <= 16
    with pytest.raises(ConfigError):
        make_case(0, matrix=32, kernel="bone")


@pytest.mark.slow
def test_coverage_varies():
    rng = np.random.default_rng(0)
    anat = draw_anatomy(rng)
    pose = HeadPose.from_angles(np.zeros(3), 0.0, 0.0, 0.0)
    top_of_head = outer_points(anat, pose)[:, 2].max()
    drawn = np.array([_coverage(rng, anat, pose) for _ in range(400)])
    below_base = np.mean(drawn[:, 0] < anat.base.posterior - 5.0)  # through C1 and the face
    high_start = np.mean(drawn[:, 0] > anat.base.middle)
    short_top = np.mean(drawn[:, 1] < top_of_head - 9.0)  # stops below the vertex
    assert 0.15 < below_base < 0.35 and 0.1 < high_start < 0.3 and 0.08 < short_top < 0.25
    # and the cavity reaches the first slice of some scans, not of others
    first = [
        bool(make_case(s, matrix=32, thin=False, hemorrhage="none").cavity[0].any())
        for s in range(12)
    ]
    assert 1 <= first.count(False) <= 11


def test_the_nose_protrudes_beyond_the_forehead_profile():
    face = draw_anatomy(np.random.default_rng(3)).face
    tip = np.array([0.0], np.float32)
    v = np.array([face.front_v(face.tip_w) - 0.5 * face.nose_p], np.float32)
    assert face.nose_depth(tip, v, np.array([face.tip_w], np.float32))[0] > 0
    assert face.nose_depth(tip, v, np.array([face.nasion_w + 20.0], np.float32))[0] < 0


def test_case_is_deterministic():
    a = make_case(9, matrix=64, max_slices=8, hemorrhage="any")
    b = make_case(9, matrix=64, max_slices=8, hemorrhage="any")
    for x, y in ((a.volume.hu, b.volume.hu), (a.mask, b.mask), (a.cavity, b.cavity)):
        assert np.array_equal(x, y)
    assert np.array_equal(a.structures, b.structures) and a.truth == b.truth
