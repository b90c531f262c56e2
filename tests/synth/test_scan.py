"""make_scan: determinism, every hemorrhage type with blood densities, free scans, small grids."""

from __future__ import annotations

import numpy as np
import pytest

from ugss.errors import ConfigError
from ugss.synth import TYPES, make_scan


def test_same_seed_same_scan_and_different_seed_different_scan():
    a = make_scan(7, matrix=64, max_slices=6)
    b = make_scan(7, matrix=64, max_slices=6)
    c = make_scan(8, matrix=64, max_slices=6)
    assert np.array_equal(a[0].hu, b[0].hu)
    assert np.array_equal(a[0].affine, b[0].affine)
    assert np.array_equal(a[1], b[1])
    assert a[2] == b[2]
    assert a[0].hu.shape != c[0].hu.shape or not np.array_equal(a[0].hu, c[0].hu)


def test_generator_input_records_a_seed_that_regenerates_the_scan():
    vol, mask, truth = make_scan(np.random.default_rng(3), matrix=64, max_slices=4, fov="square")
    again = make_scan(truth.seed, matrix=64, max_slices=4, fov="square")
    assert np.array_equal(vol.hu, again[0].hu)
    assert np.array_equal(mask, again[1])


@pytest.mark.parametrize("kind", TYPES)
def test_each_type_is_drawn_with_acute_blood_density(kind):
    vol, mask, truth = make_scan(
        11, matrix=192, hemorrhage=kind, hemorrhage_ml=8.0, thin=False, max_slices=8
    )
    assert truth.types == (kind,)
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) == {0, 1}
    assert 50.0 <= float(vol.hu[mask > 0].mean()) <= 90.0
    assert truth.volume_ml == pytest.approx(mask.sum() * vol.voxel_volume_ml, rel=0, abs=0)
    assert truth.volumes_ml == {kind: truth.volume_ml}
    assert truth.positive_slices == tuple(np.flatnonzero(mask.any(axis=(1, 2))).tolist())
    assert all((kind in t) == (k in truth.positive_slices) for k, t in enumerate(truth.slice_types))


def test_hemorrhage_free_scan_has_an_empty_mask():
    _, mask, truth = make_scan(5, matrix=96, hemorrhage="none", max_slices=10)
    assert not mask.any()
    assert truth.types == () and truth.volume_ml == 0.0 and truth.n_positive_slices == 0
    assert set(truth.slice_types) == {()}


def test_head_anatomy_densities():
    vol, _, truth = make_scan(2, matrix=128, hemorrhage="none", thin=False, fov="square")
    hu = vol.hu
    assert hu.min() >= -1024 and hu.max() <= 3071
    assert np.all(hu == np.rint(hu))
    assert np.median(hu[:, :3, :]) < -900  # air around the head
    assert (hu > 700).mean() > 0.005  # a skull
    brain = hu[(hu > 15) & (hu < 55)]
    assert 25 < np.median(brain) < 45  # grey/white matter
    assert 3.0 <= truth.noise_sd <= 8.0
    # in-plane pixels 0.4–0.5 mm at 512 scale to the matrix; 5 mm slices
    assert truth.spacing[0] == 5.0 and 0.4 * 4 <= truth.spacing[1] <= 0.52 * 4 + 0.3


def test_small_matrix_and_spacing_overrides():
    vol, mask, truth = make_scan(
        1, matrix=64, fov="square", max_slices=4, slice_thickness=2.5, orientation="RAS"
    )
    assert vol.shape == (4, 64, 64) == mask.shape
    assert vol.spacing[0] == 2.5 and truth.orientation == "RAS"
    vol, _, _ = make_scan(1, matrix=128, fov="square", pixel_spacing=2.0, max_slices=3)
    assert vol.spacing[1:] == (2.0, 2.0)


def test_thin_scans_are_capped_slabs():
    vol, _, truth = make_scan(4, matrix=64, thin=True)
    assert truth.thin and vol.spacing[0] <= 2.5 and vol.shape[0] <= 64


@pytest.mark.parametrize(
    "kwargs",
    [
        {"matrix": 16},
        {"matrix": 5000},
        {"hemorrhage": "stroke"},
        {"max_slices": 0},
        {"pixel_spacing": 0.2, "matrix": 64},  # 13 mm field of view: no head fits
        {"orientation": "XYZ", "max_slices": 2, "matrix": 64},
    ],
)
def test_bad_options_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        make_scan(0, **kwargs)
