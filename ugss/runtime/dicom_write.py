"""Volume → a DICOM CT series (one CT Image Storage file per slice), e.g. to feed the DICOM node.

HU are stored as integers: int16 with slope 1 and intercept 0 when the rounded values fit, else
uint16 with an intercept (−1024 when that fits). Integer-valued HU round-trip exactly; other
values are rounded to the nearest HU. Deployment side: pydicom and numpy only, never torch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from ugss.errors import VolumeError
from ugss.runtime.preprocess import BRAIN_WINDOW
from ugss.runtime.volume import Volume

_LPS = np.diag([-1.0, -1.0, 1.0])  # RAS ↔ LPS, its own inverse
_GEOMETRY_TOL = 1e-4


def write_dicom_series(
    volume: Volume,
    out_dir: str | Path,
    *,
    patient_id: str = "UGSS-SYNTH",
    patient_name: str = "Synthetic^Patient",
    series_description: str = "UGSS synthetic head CT",
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    series_number: int = 1,
    uid_entropy: str | None = None,
) -> list[Path]:
    """Write the volume's canonical axial slices as ``IM0001.dcm``… into a new or empty folder.

    ``uid_entropy`` makes every generated UID a function of it (same input → same UIDs);
    without it UIDs are random. Returns the written paths in slice order (inferior first).
    """
    return write_dicom_stack(
        volume.hu,
        volume.affine,
        out_dir,
        patient_id=patient_id,
        patient_name=patient_name,
        series_description=series_description,
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        uid_entropy=uid_entropy,
    )


def write_dicom_stack(
    stack: np.ndarray,
    affine: np.ndarray,
    out_dir: str | Path,
    *,
    patient_id: str = "UGSS-SYNTH",
    patient_name: str = "Synthetic^Patient",
    series_description: str = "UGSS synthetic head CT",
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    series_number: int = 1,
    uid_entropy: str | None = None,
) -> list[Path]:
    """Write ``stack`` ``(k, rows, columns)`` in HU, placed by a RAS ``affine`` of ``(i, j, k)``.

    The lower level of ``write_dicom_series``: any orthogonal grid, so a series can be stored in
    a non-axial or flipped orientation (``i`` = column, ``j`` = row, ``k`` = slice); a slice
    column off the image-plane normal (a sheared affine) is written as a gantry-tilted series.
    """
    stack = np.asarray(stack)
    affine = np.asarray(affine, dtype=np.float64)
    if stack.ndim != 3 or stack.shape[0] < 1:
        raise VolumeError(f"expected a (slices, rows, columns) stack, got shape {stack.shape}")
    if affine.shape != (4, 4):
        raise VolumeError(f"affine must be 4x4, got {affine.shape}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise VolumeError(f"{out_dir}: exists and is not an empty folder")
    pixels, pixel_representation, intercept = _encode_hu(stack)
    header = _SeriesHeader.make(
        affine, uid_entropy, study_instance_uid, series_instance_uid, series_number
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(stack.shape[0])))
    paths = []
    for k in range(stack.shape[0]):
        ds = header.slice_dataset(k, affine)
        ds.SeriesDescription = series_description
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.Rows, ds.Columns = int(stack.shape[1]), int(stack.shape[2])
        ds.PixelRepresentation = pixel_representation
        ds.RescaleIntercept = _ds(intercept)
        ds.PixelData = np.ascontiguousarray(pixels[k]).astype("<" + pixels.dtype.str[1:]).tobytes()
        path = out_dir / f"IM{k + 1:0{width}d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _uid(entropy: str | None, *parts: str) -> UID:
    """Deterministic from ``entropy`` and ``parts`` when given (reproducible series), else new."""
    return generate_uid(entropy_srcs=[entropy, *parts]) if entropy else generate_uid()


@dataclass(frozen=True)
class _SeriesHeader:
    """What every slice of one written series shares: UIDs, dates, geometry."""

    study: UID
    series: UID
    frame_of_reference: UID
    series_number: int
    date: str
    time: str
    geometry: dict
    uid_entropy: str | None

    @classmethod
    def make(cls, affine, uid_entropy, study_uid, series_uid, series_number) -> _SeriesHeader:
        def uid(*parts: str) -> UID:
            return _uid(uid_entropy, *parts)

        study = UID(study_uid) if study_uid else uid("study")
        series = UID(series_uid) if series_uid else uid("series", str(series_number))
        for name, value in (("study_instance_uid", study), ("series_instance_uid", series)):
            if not value.is_valid:
                raise VolumeError(f"{name} {value!r} is not a valid DICOM UID")
        now = dt.datetime.now()
        return cls(
            study, series, uid("frame-of-reference", str(study), str(series)),
            int(series_number), now.strftime("%Y%m%d"), now.strftime("%H%M%S"),
            _geometry(affine), uid_entropy,
        )  # fmt: skip

    def slice_dataset(self, k: int, affine: np.ndarray) -> Dataset:
        """Slice ``k``'s data set without the patient, the description and the pixels."""
        sop = _uid(self.uid_entropy, "sop", str(self.series), str(k))
        position = _LPS @ (affine[:3, 3] + k * affine[:3, 2])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = "UGSS"
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = self.date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = self.time
        ds.AccessionNumber = ds.ReferringPhysicianName = ""
        ds.Modality = "CT"
        ds.Manufacturer = "UGSS"
        ds.PatientBirthDate = ds.PatientSex = ""
        ds.BodyPartExamined = "HEAD"
        ds.SliceThickness = _ds(self.geometry["thickness"])
        ds.KVP = "120"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = self.study, self.series
        ds.StudyID = "1"
        ds.SeriesNumber = self.series_number
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = [_ds(v) for v in self.geometry["orientation"]]
        ds.FrameOfReferenceUID = self.frame_of_reference
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds(float(position @ self.geometry["normal"]))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelSpacing = [_ds(v) for v in self.geometry["pixel_spacing"]]
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.WindowCenter, ds.WindowWidth = _ds(BRAIN_WINDOW.level), _ds(BRAIN_WINDOW.width)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        return ds


def _geometry(affine_ras: np.ndarray) -> dict:
    """ImageOrientationPatient, PixelSpacing, slice normal and thickness from a RAS affine."""
    lps = _LPS @ affine_ras[:3, :3]
    if not np.all(np.isfinite(lps)):
        raise VolumeError("the affine is not finite")
    col_spacing, row_spacing, step = np.linalg.norm(lps, axis=0)
    if min(col_spacing, row_spacing, step) < 1e-9:
        raise VolumeError("the affine is degenerate (a zero voxel size)")
    row_dir, col_dir = lps[:, 0] / col_spacing, lps[:, 1] / row_spacing
    normal = np.cross(row_dir, col_dir)
    if abs(row_dir @ col_dir) > _GEOMETRY_TOL:
        raise VolumeError("a sheared image plane (non-orthogonal rows and columns) cannot be "
                          "written as DICOM")  # fmt: skip
    along = float(lps[:, 2] @ normal)  # a slice step off the normal is a gantry tilt
    if along < 1e-9 * step:
        raise VolumeError("the slice axis lies in the image plane")
    orientation = np.concatenate([row_dir, col_dir])
    orientation[np.abs(orientation) < 1e-12] = 0.0
    return {
        "orientation": orientation,
        "pixel_spacing": (row_spacing, col_spacing),
        "normal": normal,
        "thickness": along,  # the spacing along the normal, also when the gantry is tilted
    }


def _encode_hu(stack: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Rounded HU → (stored values, PixelRepresentation, RescaleIntercept) with slope 1."""
    if not np.all(np.isfinite(stack)):
        raise VolumeError("the volume holds NaN or infinite values")
    rounded = np.rint(stack.astype(np.float64))
    lo, hi = float(rounded.min()), float(rounded.max())
    if lo >= -32768 and hi <= 32767:
        return rounded.astype(np.int16), 1, 0.0
    intercept = -1024.0 if lo >= -1024 and hi <= 65535 - 1024 else lo
    if hi - intercept > 65535:
        raise VolumeError(f"HU range {lo:g}..{hi:g} does not fit 16 bits")
    return (rounded - intercept).astype(np.uint16), 0, intercept


def _ds(value: float) -> str:
    """A decimal string that fits DICOM's 16 characters."""
    value = float(value)
    if abs(value) < 1e-12:
        value = 0.0
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return format_number_as_ds(value)
