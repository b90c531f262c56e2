"""Preprocessing shared by training and deployment (numpy only): one place, the same pixels.

Per slice: pad the HU plane to a square with air, resize it to the model's input size (area
averaging when shrinking, linear when enlarging), then window it into three channels scaled to
[0, 1] (paper eq. 13–15). Model outputs go back the other way with ``PlaneTransform.inverse``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ugss.errors import ConfigError
from ugss.runtime.resize import resize_plane, touched

AIR_HU = -1024.0


@dataclass(frozen=True)
class Window:
    """A CT display window: level (centre) and width in HU (eq. 13–14)."""

    name: str
    level: float
    width: float

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ConfigError(f"window {self.name!r}: width must be > 0, got {self.width}")

    @property
    def low(self) -> float:
        return self.level - self.width / 2.0

    @property
    def high(self) -> float:
        return self.level + self.width / 2.0

    def to_str(self) -> str:
        return f"{self.name}:{self.level:g}/{self.width:g}"

    @classmethod
    def from_str(cls, text: str) -> Window:
        """Parse ``name:level/width``, the form used in model metadata and CLI options."""
        try:
            name, rest = text.split(":")
            level, width = rest.split("/")
            return cls(name.strip(), float(level), float(width))
        except ValueError as exc:
            raise ConfigError(f"bad window {text!r}: expected name:level/width") from exc


BRAIN_WINDOW = Window("brain", 40.0, 80.0)  # level/width (HU): what every picture shows

DEFAULT_WINDOWS: tuple[Window, ...] = (
    BRAIN_WINDOW,
    Window("subdural", 80.0, 200.0),
    Window("bone", 600.0, 2800.0),
)


def windows_to_str(windows: Sequence[Window]) -> str:
    return ",".join(w.to_str() for w in windows)


def windows_from_str(text: str) -> tuple[Window, ...]:
    return tuple(Window.from_str(part) for part in text.split(",") if part.strip())


def apply_windows(hu: np.ndarray, windows: Sequence[Window] = DEFAULT_WINDOWS) -> np.ndarray:
    """Eq. 13–15: ``(..., H, W)`` HU → ``(..., C, H, W)`` float32, each window scaled to [0, 1]."""
    hu = np.asarray(hu, dtype=np.float32)
    out = np.empty((*hu.shape[:-2], len(windows), *hu.shape[-2:]), dtype=np.float32)
    for c, win in enumerate(windows):
        chan = out[..., c, :, :]
        np.subtract(hu, np.float32(win.low), out=chan)
        np.multiply(chan, np.float32(1.0 / win.width), out=chan)
        np.clip(chan, 0.0, 1.0, out=chan)
    return out


@dataclass(frozen=True)
class PlaneTransform:
    """Maps a native ``(H, W)`` slice plane to the model's square input and back.

    The plane is padded symmetrically to a square (air), so the head keeps its aspect ratio,
    then resized to ``size``. ``inverse`` undoes both for model outputs.
    """

    height: int
    width: int
    size: int

    def __post_init__(self) -> None:
        if self.size < 16 or self.size % 16:
            raise ConfigError(f"model input size must be a multiple of 16, got {self.size}")
        if self.height < 2 or self.width < 2:
            raise ConfigError(f"slice plane too small: {self.height}x{self.width}")

    @property
    def side(self) -> int:
        return max(self.height, self.width)

    @property
    def pad(self) -> tuple[int, int]:
        """Rows and columns of padding before the data (the rest goes after)."""
        return ((self.side - self.height) // 2, (self.side - self.width) // 2)

    def forward(self, plane: np.ndarray, fill: float = AIR_HU) -> np.ndarray:
        """``(..., H, W)`` → ``(..., size, size)``."""
        top, left = self.pad
        if self.side != self.height or self.side != self.width:
            padded = np.full((*plane.shape[:-2], self.side, self.side), fill, dtype=np.float32)
            padded[..., top : top + self.height, left : left + self.width] = plane
            plane = padded
        return resize_plane(plane, self.size, self.size)

    def inverse(self, model_plane: np.ndarray) -> np.ndarray:
        """``(..., size, size)`` → ``(..., H, W)`` on the native grid."""
        return self.inverse_window(model_plane, (slice(0, self.height), slice(0, self.width)))

    def window_of(self, active: np.ndarray) -> tuple[slice, slice] | None:
        """Native ``(rows, cols)`` window of every pixel whose resize taps read an ``active``
        model pixel (``(size, size)`` bool); None when none is active.
        """
        hit_rows, hit_cols = np.flatnonzero(active.any(axis=1)), np.flatnonzero(active.any(axis=0))
        if hit_rows.size == 0:
            return None
        top, left = self.pad
        r0, r1 = touched(self.size, self.side, int(hit_rows[0]), int(hit_rows[-1]))
        c0, c1 = touched(self.size, self.side, int(hit_cols[0]), int(hit_cols[-1]))
        r0, r1 = max(r0, top), min(r1, top + self.height)
        c0, c1 = max(c0, left), min(c1, left + self.width)
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0 - top, r1 - top), slice(c0 - left, c1 - left)

    def inverse_window(
        self, model_plane: np.ndarray, window: tuple[slice, slice], out: np.ndarray | None = None
    ) -> np.ndarray:
        """``inverse(model_plane)[..., rows, cols]`` for a native ``window`` (from ``window_of``),
        computed only there: outputs of a small lesion cost a small window. ``out`` (float32,
        the window's shape) receives it.
        """
        top, left = self.pad
        rows, cols = window
        return resize_plane(
            model_plane,
            self.side,
            self.side,
            rows=slice(rows.start + top, rows.stop + top),
            cols=slice(cols.start + left, cols.stop + left),
            out=out,
        )


def preprocess_slices(
    hu_slices: np.ndarray,
    size: int,
    windows: Sequence[Window] = DEFAULT_WINDOWS,
) -> np.ndarray:
    """``(n, H, W)`` HU slices → model input ``(n, C, size, size)`` float32 in [0, 1]."""
    hu_slices = np.asarray(hu_slices, dtype=np.float32)
    if hu_slices.ndim != 3:
        raise ConfigError(f"expected (n, H, W) slices, got shape {hu_slices.shape}")
    transform = PlaneTransform(hu_slices.shape[1], hu_slices.shape[2], size)
    return apply_windows(transform.forward(hu_slices), windows)


def iter_slabs(n_slices: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slice ranges of at most ``batch_size``: bounded memory for long scans."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    for start in range(0, n_slices, batch_size):
        yield slice(start, min(start + batch_size, n_slices))
