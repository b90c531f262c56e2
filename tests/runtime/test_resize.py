"""Resizing: polyphase blocks give the taps' values; windows and touched ranges are exact."""

from __future__ import annotations

import numpy as np
import pytest

from ugss.runtime.resize import _taps_along, polyphase, resize_plane, resize_taps, touched


def _by_taps(x, height, width, rows=None, cols=None):
    """The reference: every axis by gathered taps, in resize_plane's order."""
    passes = [(-1, width, cols), (-2, height, rows)]
    if height < x.shape[-2]:
        passes.reverse()
    for axis, n_out, part in passes:
        if x.shape[axis] == n_out:
            if part is not None:
                x = x[..., part, :] if axis == -2 else x[..., part]
            continue
        x = _taps_along(x, axis, n_out, part, None)
    return x


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ((512, 512), (160, 160)),  # the default CT plane into the model: blocks of 5 × 16
        ((160, 160), (512, 512)),  # and back: blocks of 16 × 7 with clamped borders
        ((300, 512), (160, 160)),
        ((160, 160), (300, 512)),
        ((256, 256), (160, 160)),
        ((511, 512), (160, 160)),  # 511 has no short period: taps for that axis
        ((7, 5), (16, 16)),
    ],
)
def test_polyphase_equals_taps_everywhere_and_in_windows(source, target):
    rng = np.random.default_rng(0)
    x = rng.random((2, *source), dtype=np.float32)
    np.testing.assert_allclose(resize_plane(x, *target), _by_taps(x, *target), atol=3e-7)
    for _ in range(10):
        r0, c0 = rng.integers(0, target[0]), rng.integers(0, target[1])
        rows = slice(int(r0), int(rng.integers(r0 + 1, target[0] + 1)))
        cols = slice(int(c0), int(rng.integers(c0 + 1, target[1] + 1)))
        np.testing.assert_allclose(
            resize_plane(x, *target, rows=rows, cols=cols),
            _by_taps(x, *target, rows=rows, cols=cols),
            atol=3e-7,
        )


def test_polyphase_plans_only_short_periods():
    block, step, pad = polyphase(512, 160)
    assert block.shape == (5, 16) and step == 16 and pad == 0
    np.testing.assert_allclose(block.sum(axis=1), 1.0, atol=1e-6)  # area weights
    block, step, pad = polyphase(160, 512)
    assert block.shape[0] == 16 and step == 5 and pad >= 1
    assert polyphase(511, 160) is None


@pytest.mark.parametrize(("n_in", "n_out"), [(160, 512), (512, 160), (160, 300), (7, 160)])
def test_touched_is_the_outputs_reading_a_range(n_in, n_out):
    idx, wts = resize_taps(n_in, n_out)
    rng = np.random.default_rng(1)
    for _ in range(100):
        first, last = sorted(int(v) for v in rng.integers(0, n_in, 2))
        reads = ((idx >= first) & (idx <= last) & (wts > 0)).any(axis=1)
        hit = np.flatnonzero(reads)
        assert touched(n_in, n_out, first, last) == (int(hit[0]), int(hit[-1]) + 1)
