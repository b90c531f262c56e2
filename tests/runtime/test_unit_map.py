"""uint8 maps in steps of 1/255: rounding, thresholds, and the resampling shortcut."""

from __future__ import annotations

import numpy as np

from ugss.runtime.preprocess import PlaneTransform
from ugss.runtime.segment import _resample_steps
from ugss.runtime.unit_map import MAP_UNIT, dequantized, quantized, steps_at_least


def test_steps_round_half_up_and_clip():
    values = np.array([0.0, 0.5 / 255 - 1e-6, 0.5 / 255 + 1e-6, 0.5, 1.0, 1.2, -0.1], np.float32)
    np.testing.assert_array_equal(quantized(values), [0, 0, 1, 128, 255, 255, 0])
    back = dequantized(quantized(values))
    assert back.dtype == np.float32 and np.abs(back[:5] - values[:5]).max() <= 0.5 * MAP_UNIT + 1e-6


def test_threshold_on_steps_matches_the_float_map_at_one_half():
    values = np.random.default_rng(0).random(100_000, dtype=np.float32)
    steps = quantized(values)
    np.testing.assert_array_equal(steps >= steps_at_least(0.5), values >= 0.5)
    assert steps_at_least(0.5) == 128 and steps_at_least(0.0) == 0 and steps_at_least(1.0) == 255


def test_resampled_steps_equal_quantizing_the_full_resample():
    """Filling the background step outside the window loses nothing at stored precision."""
    rng = np.random.default_rng(3)
    for shape in ((512, 512), (300, 512)):
        t = PlaneTransform(*shape, 160)
        plane = np.full((160, 160), 0.0039, np.float32)  # air: one step everywhere
        plane += rng.normal(0, 0.0003, plane.shape).astype(np.float32)
        plane[60:90, 40:100] = rng.random((30, 60), dtype=np.float32)  # head and lesion
        native = np.zeros(shape, np.uint8)
        _resample_steps(t, plane, native, np.empty(shape[0] * shape[1], np.float32))
        np.testing.assert_array_equal(native, quantized(t.inverse(plane)))


def test_resampled_probability_gives_the_whole_mask_at_any_threshold():
    """The window covers every model pixel at or above the threshold, even one below a step."""
    t = PlaneTransform(300, 512, 160)
    plane = np.zeros((160, 160), np.float32)
    plane[70:80, 50:60] = 0.9  # a lesion
    plane[20, 140] = 0.001  # stored as step 0, yet above a tiny threshold
    full = t.inverse(plane)
    for threshold in (0.5, 0.0005):
        native = np.zeros((300, 512), np.uint8)
        window, hit = _resample_steps(
            t, plane, native, np.empty(300 * 512, np.float32), threshold=threshold
        )
        mask = np.zeros((300, 512), bool)
        mask[window] = hit
        np.testing.assert_array_equal(mask, full >= threshold)
        np.testing.assert_array_equal(native, quantized(full))
