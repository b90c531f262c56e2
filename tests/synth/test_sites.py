"""The population knobs of ``make_case`` and the synthetic sites of ``ugss.synth.sites``.

The knobs are additive: at their defaults (and with an override equal to the drawn value) the
scan is exactly the scan of before, because the bundled model and other tests depend on it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ugss.errors import ConfigError
from ugss.runtime.nifti import read_nifti
from ugss.synth.anatomy import draw_anatomy
from ugss.synth.cohort import make_cohort, write_cohort
from ugss.synth.scan import make_case
from ugss.synth.sites import site_options


def _same(a, b) -> bool:
    return (
        np.array_equal(a.volume.hu, b.volume.hu)
        and np.array_equal(a.mask, b.mask)
        and np.array_equal(a.volume.affine, b.volume.affine)
    )


@pytest.mark.parametrize("seed", [0, 3])
def test_default_knobs_change_nothing(seed):
    base = make_case(seed, matrix=64)
    drawn = draw_anatomy(np.random.default_rng(seed)).atrophy
    same = make_case(seed, matrix=64, atrophy=drawn, head_scale=1.0, mimic_scale=1.0, fov_scale=1.0)
    assert _same(base, same)  # the random stream is consumed as before
    assert base.truth.to_dict() == same.truth.to_dict()


def test_knobs_move_the_scan():
    base = make_case(5, matrix=128, hemorrhage="none")
    small = make_case(5, matrix=128, hemorrhage="none", head_scale=0.85)
    assert small.truth.extra["icv_ml"] < 0.8 * base.truth.extra["icv_ml"]
    wide = make_case(5, matrix=128, hemorrhage="none", fov_scale=1.6)
    assert wide.truth.spacing[1] > base.truth.spacing[1]
    none = [
        make_case(s, matrix=64, mimic_scale=0.0).truth.extra["calcifications"] for s in range(6)
    ]
    assert all(c == [] for c in none)
    many = [
        make_case(s, matrix=64, mimic_scale=10.0).truth.extra["calcifications"] for s in range(6)
    ]
    assert all(len(c) == 4 for c in many)  # every kind at odds ≥ 1
    old = draw_anatomy(np.random.default_rng(1), atrophy=0.95)
    young = draw_anatomy(np.random.default_rng(1), atrophy=0.05)
    assert old.ventricles.ru > young.ventricles.ru and old.csf_t > young.csf_t


@pytest.mark.parametrize(
    "option", [{"atrophy": 1.5}, {"head_scale": 0.5}, {"mimic_scale": -1.0}, {"fov_scale": 3.0}]
)
def test_knob_ranges(option):
    with pytest.raises(ConfigError):
        make_case(0, matrix=64, **option)


def test_sites_differ_and_repeat():
    a, b = site_options("A", 11), site_options("b", 11)
    assert a(3) == site_options("A", 11)(3) and a(3) != a(4)
    oa, ob = [a(i) for i in range(40)], [b(i) for i in range(40)]
    assert {o["kernel"] for o in oa} == {"soft"} and "sharp" in {o["kernel"] for o in ob}
    assert max(o["noise_sd"] for o in oa) < min(o["noise_sd"] for o in ob)
    assert {o["slice_thickness"] for o in oa} == {5.0} and 2.5 in {o["slice_thickness"] for o in ob}
    assert max(o["head_scale"] for o in ob) < min(o["head_scale"] for o in oa)
    assert max(o["atrophy"] for o in oa) < min(o["atrophy"] for o in ob)
    assert min(o["fov_scale"] for o in ob) > 1.0 and {o["fov_scale"] for o in oa} == {1.0}
    with pytest.raises(ConfigError):
        site_options("C", 0)


def test_site_cohort_records_options_and_regenerates(tmp_path):
    opts = site_options("B", 4_170_099)
    summary = write_cohort(tmp_path / "b", 3, 4_170_099, matrix=64, scan_options=opts)
    doc = json.loads((tmp_path / "b" / "cohort.json").read_text())
    assert doc["options"]["scan_options"] == "B"
    for i, truth in enumerate(summary.scans):
        recorded = dict(truth.extra["scan_options"])
        assert isinstance(recorded.pop("thin"), bool) and recorded == opts(i)
        option = truth.extra["hemorrhage_option"]  # the documented recipe
        case = make_case(truth.seed, matrix=64, hemorrhage=option, **truth.extra["scan_options"])
        hu = read_nifti(tmp_path / "b" / truth.ct_path).hu
        assert np.array_equal(hu, case.volume.hu)
    with pytest.raises(ConfigError):
        write_cohort(tmp_path / "c", 2, 1, matrix=64, scan_options=lambda i: {"hemorrhage": "sah"})


def test_default_cohort_has_no_site(tmp_path):
    make_cohort(tmp_path / "d", 2, 1, matrix=64)
    doc = json.loads((tmp_path / "d" / "cohort.json").read_text())
    assert "scan_options" not in doc["options"]
    assert all("scan_options" not in s["extra"] for s in doc["scans"])
