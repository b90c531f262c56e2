"""Scan grids, head pose and storage orientation for synthetic scans.

Coordinates used throughout the generator:

- voxel indices ``(k, j, i)`` on the canonical grid (slice, row, column = S, P, L);
- RAS millimetres (NIfTI world), through ``ScanGrid.affine``;
- the head frame ``q = (u, v, w)`` in mm from the head centre: u to the patient's left, v to
  posterior, w to superior, i.e. LPS-like axes rotated by the head's pose in the scanner.

Spacings and origins are rounded to multiples of 1/1024 mm so that they survive the float32
NIfTI header exactly: volumes computed from the written files then equal the truth bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel import orientations as nio

from ugss.errors import ConfigError
from ugss.runtime.volume import CANONICAL_AXCODES, SourceGrid

_FLIP_XY = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS

#: storage orientations a synthetic scan may be written in (the slice axis stays third and
#: superior, so the slice numbers of the CSV files index the stored file and the canonical volume
#: alike); weights make the canonical order the common case
STORAGE_AXCODES: dict[str, float] = {
    "LPS": 0.55,
    "RAS": 0.2,
    "LAS": 0.1,
    "RPS": 0.05,
    "PLS": 0.05,
    "ARS": 0.05,
}


def exact_mm(value: float) -> float:
    """Round to 1/1024 mm: exactly representable in the header's float32 and in products."""
    return round(float(value) * 1024.0) / 1024.0


@dataclass(frozen=True)
class ScanGrid:
    """The canonical voxel grid: shape ``(z, y, x)``, spacing ``(z, y, x)`` mm, RAS origin."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]  # RAS mm of voxel (i, j, k) = (0, 0, 0)

    @property
    def affine(self) -> np.ndarray:
        """Canonical L/P/S affine: column → RAS −x, row → RAS −y, slice → RAS +z."""
        sz, sy, sx = self.spacing
        aff = np.diag([-sx, -sy, sz, 1.0])
        aff[:3, 3] = self.origin
        return aff

    @property
    def pixel_mm(self) -> float:
        return float(max(self.spacing[1], self.spacing[2]))

    def slice_z(self, k: np.ndarray | float) -> np.ndarray | float:
        """RAS z (mm) of slice index ``k``."""
        return self.origin[2] + self.spacing[0] * np.asarray(k, dtype=np.float64)

    def ras_to_index(self, ras: np.ndarray) -> np.ndarray:
        """``(N, 3)`` RAS points → fractional ``(N, 3)`` indices ``(k, j, i)``."""
        sz, sy, sx = self.spacing
        ox, oy, oz = self.origin
        ras = np.atleast_2d(ras)
        return np.stack(
            [(ras[:, 2] - oz) / sz, (oy - ras[:, 1]) / sy, (ox - ras[:, 0]) / sx], axis=1
        )

    def box_of(self, ras: np.ndarray, margin: float = 2.0) -> tuple[slice, slice, slice] | None:
        """Voxel box ``(z, y, x)`` holding the RAS points (plus ``margin`` voxels), clipped."""
        idx = self.ras_to_index(ras)
        lo = np.floor(idx.min(axis=0) - margin).astype(int)
        hi = np.ceil(idx.max(axis=0) + margin).astype(int) + 1
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, self.shape)
        if np.any(hi <= lo):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True)
class HeadPose:
    """Where the head sits: centre (RAS mm) and rotation of the head axes in the LPS frame."""

    center: np.ndarray  # (3,) RAS
    rotation: np.ndarray  # (3, 3), columns = head u, v, w axes in scanner LPS coordinates

    @classmethod
    def from_angles(cls, center: np.ndarray, yaw: float, pitch: float, roll: float) -> HeadPose:
        """Angles in degrees: yaw about S, pitch (chin down +) about L, roll about P."""
        y, p, r = np.deg2rad([yaw, pitch, roll])
        rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
        ry = np.array([[np.cos(r), 0, np.sin(r)], [0, 1, 0], [-np.sin(r), 0, np.cos(r)]])
        return cls(np.asarray(center, dtype=np.float64), rz @ rx @ ry)

    @property
    def ras_to_head(self) -> np.ndarray:
        """3×3 matrix M with ``q = M (P − centre)``."""
        return self.rotation.T @ _FLIP_XY

    def to_ras(self, q: np.ndarray) -> np.ndarray:
        """Head-frame points ``(N, 3)`` → RAS ``(N, 3)``."""
        return np.atleast_2d(q) @ (_FLIP_XY @ self.rotation).T + self.center

    def to_head(self, ras: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(ras) - self.center) @ self.ras_to_head.T

    def linear(self, grid: ScanGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``q = q0 + gk·k + gj·j + gi·i`` for voxel indices: returns (q0, gk, gj, gi)."""
        m = self.ras_to_head
        aff = grid.affine
        q0 = m @ (aff[:3, 3] - self.center)
        return q0, m @ aff[:3, 2], m @ aff[:3, 1], m @ aff[:3, 0]


def head_coords(
    pose: HeadPose, grid: ScanGrid, k: np.ndarray, j: np.ndarray, i: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head-frame ``u, v, w`` (float32 mm) at voxel indices ``k × j × i`` (any, even outside)."""
    q0, gk, gj, gi = pose.linear(grid)
    k, j, i = (np.asarray(x, dtype=np.float64) for x in (k, j, i))
    out = []
    for a in range(3):
        kj = (q0[a] + gk[a] * k)[:, None, None] + (gj[a] * j)[None, :, None]
        out.append(kj.astype(np.float32) + (gi[a] * i).astype(np.float32)[None, None, :])
    return out[0], out[1], out[2]


def check_axcodes(axcodes: str) -> str:
    """Normalize voxel axis codes such as 'ras' → 'RAS'; ``ConfigError`` unless one per axis."""
    codes = str(axcodes).strip().upper()
    axes = sorted(i for c in codes for i, pair in enumerate(("LR", "AP", "IS")) if c in pair)
    if len(codes) != 3 or axes != [0, 1, 2]:
        raise ConfigError(
            f"orientation must be three axis codes like 'RAS' or 'LPS', got {axcodes!r}"
        )
    return codes


def storage_grid(grid: ScanGrid, axcodes: str) -> SourceGrid | None:
    """The file grid for writing the canonical volume in voxel order ``axcodes`` (None: canonical).

    ``write_nifti(path, data, like=Volume(..., source_grid=this))`` then stores the data in that
    order with the matching affine, and ``read_nifti`` brings it back to the canonical grid.
    """
    codes = tuple(check_axcodes(axcodes))
    if codes == CANONICAL_AXCODES:
        return None
    target = nio.axcodes2ornt(codes)
    canon = nio.axcodes2ornt(CANONICAL_AXCODES)
    to_target = nio.ornt_transform(canon, target)
    shape_xyz = (grid.shape[2], grid.shape[1], grid.shape[0])
    shape_t = [0, 0, 0]
    for src_axis, (dst_axis, _flip) in enumerate(to_target):
        shape_t[int(dst_axis)] = shape_xyz[src_axis]
    affine_t = grid.affine @ nio.inv_ornt_aff(to_target, shape_xyz)
    to_canon = nio.ornt_transform(nio.io_orientation(affine_t), canon)
    return SourceGrid(shape=(shape_t[0], shape_t[1], shape_t[2]), affine=affine_t, ornt=to_canon)


def sphere_directions(n_lat: int = 48, n_lon: int = 96) -> np.ndarray:
    """Roughly even unit vectors ``(N, 3)``, including both poles."""
    theta = np.linspace(0.0, np.pi, n_lat)
    phi = np.linspace(0.0, 2 * np.pi, n_lon, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    return np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)


def box_corners(center: np.ndarray, half: np.ndarray | float) -> np.ndarray:
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    return center + signs * half
