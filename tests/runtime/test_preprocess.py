"""The shared preprocessing: windows (eq. 13–15), plane transform there and back, slabs."""

from __future__ import annotations

import numpy as np
import pytest

from ugss.errors import ConfigError
from ugss.runtime.preprocess import (
    DEFAULT_WINDOWS,
    PlaneTransform,
    Window,
    apply_windows,
    iter_slabs,
    preprocess_slices,
    resize_plane,
    windows_from_str,
    windows_to_str,
)


def test_windowing_matches_eq_13_to_15_by_hand():
    hu = np.array([[[-1000.0, 0.0, 40.0, 80.0, 1000.0]]], dtype=np.float32)
    out = apply_windows(hu, DEFAULT_WINDOWS)
    assert out.shape == (1, 3, 1, 5)
    # brain 40/80: min 0, max 80 → (HU − 0) / 80, clipped
    np.testing.assert_allclose(out[0, 0, 0], [0.0, 0.0, 0.5, 1.0, 1.0])
    # subdural 80/200: min −20, max 180
    np.testing.assert_allclose(out[0, 1, 0], [0.0, 0.1, 0.3, 0.5, 1.0])
    # bone 600/2800: min −800, max 2000
    np.testing.assert_allclose(out[0, 2, 0], [0.0, 800 / 2800, 840 / 2800, 880 / 2800, 1800 / 2800])


def test_window_strings_round_trip():
    text = windows_to_str(DEFAULT_WINDOWS)
    assert text == "brain:40/80,subdural:80/200,bone:600/2800"
    assert windows_from_str(text) == DEFAULT_WINDOWS
    with pytest.raises(ConfigError, match="bad window"):
        Window.from_str("brain-40-80")
    with pytest.raises(ConfigError, match="width must be > 0"):
        Window("x", 0, 0)


def test_resize_by_area_when_shrinking_and_linear_when_enlarging():
    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(resize_plane(a, 2, 2), [[2.5, 4.5], [10.5, 12.5]])
    ramp = np.array([[0.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(resize_plane(ramp, 1, 4), [[0.0, 0.25, 0.75, 1.0]])
    # a constant stays constant at any size, mean is kept when shrinking by a non-integer factor
    assert np.allclose(resize_plane(np.full((7, 5), 3.0), 16, 16), 3.0)
    rng = np.random.default_rng(0)
    x = rng.random((60, 60)).astype(np.float32)
    assert resize_plane(x, 16, 16).mean() == pytest.approx(x.mean(), rel=1e-5)


def test_resize_batched_equals_per_item():
    rng = np.random.default_rng(1)
    x = rng.random((3, 2, 20, 30)).astype(np.float32)
    batched = resize_plane(x, 16, 16)
    for i in range(3):
        for c in range(2):
            np.testing.assert_allclose(batched[i, c], resize_plane(x[i, c], 16, 16), atol=1e-6)


@pytest.mark.parametrize(("h", "w"), [(64, 64), (48, 64), (64, 40), (96, 96)])
def test_plane_transform_round_trip(h, w):
    t = PlaneTransform(h, w, 32)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = (np.sin(yy / 9.0) + np.cos(xx / 7.0)).astype(np.float32)
    there = t.forward(smooth, fill=0.0)
    assert there.shape == (32, 32)
    back = t.inverse(there)
    assert back.shape == (h, w)
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(back[inner] - smooth[inner]).max() < 0.15


@pytest.mark.parametrize(("h", "w", "size"), [(512, 512, 160), (300, 512, 160), (100, 80, 160)])
def test_inverse_in_the_support_window_equals_the_full_inverse(h, w, size):
    """Outside the window every resampled value is below the floor; inside it is identical."""
    rng = np.random.default_rng(1)
    t = PlaneTransform(h, w, size)
    prob = np.zeros((size, size), np.float32)
    prob[40:50, 60:75] = rng.random((10, 15))
    prob[5, 5] = 0.001  # below the floor: not worth a window
    prob[90, 100] = 0.5  # a second spot widens the window
    for model_map in (prob, prob[None].repeat(2, axis=0)):  # one plane, or a stack of them
        window = t.window_of((model_map >= 0.002).reshape(-1, size, size).any(axis=0))
        assert window is not None
        full = t.inverse(model_map)
        rows, cols = window
        np.testing.assert_array_equal(t.inverse_window(model_map, window), full[..., rows, cols])
        into = np.full(full[..., rows, cols].shape, np.nan, np.float32)
        assert t.inverse_window(model_map, window, out=into) is into
        np.testing.assert_array_equal(into, full[..., rows, cols])
        outside = np.ones((h, w), bool)
        outside[window] = False
        assert full[..., outside].max(initial=0) < 0.002
    assert t.window_of(np.zeros((size, size), bool)) is None


def test_resize_window_equals_the_crop_of_the_full_resize():
    x = np.random.default_rng(2).random((2, 40, 50)).astype(np.float32)
    for shape in ((128, 96), (20, 25), (40, 50)):
        full = resize_plane(x, *shape)
        rows, cols = slice(3, shape[0] - 5), slice(1, shape[1] // 2)
        part = resize_plane(x, *shape, rows=rows, cols=cols)
        np.testing.assert_array_equal(part, full[:, rows, cols])


def test_padding_keeps_the_aspect_ratio_and_fills_with_air():
    t = PlaneTransform(32, 64, 32)
    plane = np.zeros((32, 64), dtype=np.float32)
    out = t.forward(plane)
    assert out.shape == (32, 32)
    assert out[0, 10] == pytest.approx(-1024.0)  # padded rows above the data are air
    assert out[16, 10] == pytest.approx(0.0)


def test_preprocess_slices_shape_range_and_validation():
    hu = np.random.default_rng(2).normal(40, 300, (4, 50, 70)).astype(np.float32)
    x = preprocess_slices(hu, 48)
    assert x.shape == (4, 3, 48, 48) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    with pytest.raises(ConfigError, match="multiple of 16"):
        preprocess_slices(hu, 50)
    with pytest.raises(ConfigError, match=r"\(n, H, W\)"):
        preprocess_slices(hu[0], 48)


def test_slabs_cover_every_slice_once():
    slabs = list(iter_slabs(10, 4))
    assert [(s.start, s.stop) for s in slabs] == [(0, 4), (4, 8), (8, 10)]
    with pytest.raises(ConfigError):
        list(iter_slabs(10, 0))
