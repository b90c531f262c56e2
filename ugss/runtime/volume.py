"""The one volume type: HU voxels in canonical axial order plus the geometry that places them.

Axis conventions, used across the package:
- ``Volume.hu`` is ``(z, y, x)`` = ``(slice, row, column)``, float32 Hounsfield units;
  ``Volume.spacing`` is the voxel size in millimetres in the same ``(z, y, x)`` order.
- Canonical orientation is the radiological axial display: column index runs to patient Left,
  row index to Posterior, slice index to Superior (nibabel axis codes ``L, P, S``). NIfTI files
  in any orientation and DICOM series both land here, so a model sees the same pixels from both.
- ``Volume.affine`` maps voxel indices ``(x, y, z, 1)`` (note: column first, as in NIfTI) to
  RAS+ millimetres, the NIfTI world convention. DICOM's LPS is converted by flipping x and y.
- ``Volume.source_grid`` remembers the grid the data came from, so masks and maps can be written
  back onto exactly that grid (same shape, voxel order and affine).
- Model input is ``(n, C, H, W)`` float32 in [0, 1], one channel per HU window (eq. 13–15);
  model output is ``(n, 1, H, W)`` probability of hemorrhage (the graph contract is in
  ``ugss.runtime.model_info``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from nibabel import orientations as nio

from ugss.errors import VolumeError

CANONICAL_AXCODES = ("L", "P", "S")
_CANONICAL_ORNT = nio.axcodes2ornt(CANONICAL_AXCODES)


@dataclass(frozen=True)
class SourceGrid:
    """The voxel grid of the file a volume was read from: shape ``(i, j, k)`` and affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    ornt: np.ndarray  # nibabel orientation transform from the source grid to canonical

    def to_canonical(self, data_ijk: np.ndarray) -> np.ndarray:
        """Source-ordered ``(i, j, k)`` data → canonical ``(z, y, x)``."""
        return np.ascontiguousarray(nio.apply_orientation(data_ijk, self.ornt).transpose(2, 1, 0))

    def from_canonical(self, data_zyx: np.ndarray) -> np.ndarray:
        """Canonical ``(z, y, x)`` data → the source file's ``(i, j, k)`` order."""
        back = nio.ornt_transform(_CANONICAL_ORNT, nio.io_orientation(self.affine))
        # a view where possible: NIfTI stores Fortran order, which a transposed C array already is
        return nio.apply_orientation(data_zyx.transpose(2, 1, 0), back)


@dataclass(frozen=True)
class VolumeSource:
    """Where a volume came from (a path, a format, and for DICOM the series identity)."""

    path: str
    format: str  # "nifti" | "dicom" | "memory"
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None


@dataclass(frozen=True, eq=False)
class Volume:
    """A CT volume in HU with its geometry; see the module docstring for the axes."""

    hu: np.ndarray
    affine: np.ndarray
    source: VolumeSource = field(default_factory=lambda: VolumeSource("<memory>", "memory"))
    source_grid: SourceGrid | None = None

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise VolumeError(f"a volume needs 3 dimensions, got shape {self.hu.shape}")
        if self.affine.shape != (4, 4):
            raise VolumeError(f"affine must be 4x4, got {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(z, y, x)`` = slices, rows, columns."""
        z, y, x = self.hu.shape
        return (z, y, x)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm as ``(z, y, x)``."""
        sx, sy, sz = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(sz), float(sy), float(sx))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (1 mL = 1000 mm³)."""
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)

    def volume_ml(self, mask: np.ndarray) -> float:
        """Paper eq. 12: voxel count × voxel volume, at the scan's native resolution."""
        if mask.shape != self.shape:
            raise VolumeError(f"mask shape {mask.shape} differs from volume shape {self.shape}")
        return float(np.count_nonzero(mask)) * self.voxel_volume_ml

    def to_source(self, data_zyx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Data on this volume's grid → (array, affine) on the grid of the original file."""
        if data_zyx.shape != self.shape:
            raise VolumeError(f"data shape {data_zyx.shape} differs from volume {self.shape}")
        if self.source_grid is None:
            return data_zyx.transpose(2, 1, 0), self.affine
        return self.source_grid.from_canonical(data_zyx), self.source_grid.affine


def canonicalize(
    data_ijk: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray, SourceGrid]:
    """Reorder ``(i, j, k)`` voxel data with its RAS affine into canonical ``(z, y, x)``.

    Returns the canonical array, its affine, and the source grid to map results back.
    """
    if data_ijk.ndim != 3:
        raise VolumeError(f"expected 3D data, got shape {data_ijk.shape}")
    ornt = nio.ornt_transform(nio.io_orientation(affine), _CANONICAL_ORNT)
    grid = SourceGrid(
        shape=(int(data_ijk.shape[0]), int(data_ijk.shape[1]), int(data_ijk.shape[2])),
        affine=np.asarray(affine, dtype=np.float64),
        ornt=ornt,
    )
    canon_affine = affine @ nio.inv_ornt_aff(ornt, data_ijk.shape)
    return grid.to_canonical(data_ijk), canon_affine, grid
