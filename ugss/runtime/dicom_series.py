"""A folder holding one DICOM CT series → ``Volume`` on the canonical grid, or one clear refusal.

Every refusal is a ``DicomSeriesError`` with one line naming the problem: a model must never see a
volume assembled from mixed series, a scout or a series with missing slices.

Gantry tilt (up to ``MAX_TILT_DEG``): the slices are stacked as they are, and the affine's slice
column is the real step between neighbours (along the table), so the affine is sheared as
dcm2niix writes it; ``Volume.voxel_volume_ml`` (its determinant) is then the true voxel volume
(pixel area × spacing along the slice normal), and results written back on the source grid —
NIfTI maps, DICOM-SEG frames — lie on the CT's own tilted slices.
Slices are sorted by their position along the image-plane normal, never by file name or
InstanceNumber. The geometry follows DICOM: the first ImageOrientationPatient triplet is the
direction of increasing column index ``i``, the second of increasing row index ``j``, and
PixelSpacing is ``[between rows (along j), between columns (along i)]``; LPS becomes RAS by
negating x and y. Deployment side: pydicom and numpy only, never torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ImplicitVRLittleEndian

from ugss.errors import DicomSeriesError
from ugss.runtime.dicom_write import write_dicom_series, write_dicom_stack
from ugss.runtime.io import has_dicom_magic, read_head
from ugss.runtime.volume import SourceGrid, Volume, VolumeSource, canonicalize

__all__ = [
    "DicomSeriesInfo",
    "read_dicom_series",
    "read_dicom_series_with_refs",
    "write_dicom_series",
    "write_dicom_stack",
]

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR
MULTI_FRAME_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
ORIENTATION_TOL = 1e-4  # direction cosines, absolute
PIXEL_SPACING_TOL = 1e-4  # mm
TILT_TOL = 1e-3  # sideways offset per mm of slice step (≈ 0.06°): below this, not tilted
MAX_TILT_DEG = 35.0  # gantry tilt read (head protocols tilt 10-30°); beyond: refused
STEP_TOL_MM = 0.05  # every step between neighbours equals the mean step within this
DUPLICATE_TOL_MM = 1e-3  # two slices closer than this along the normal sit at the same position
SPACING_REL_TOL = 0.02  # a gap may differ from the median gap by this fraction


@dataclass(frozen=True, eq=False)
class DicomSeriesInfo:
    """The source images behind a volume, for results that must reference them (DICOM-SEG, SR).

    ``files`` and ``headers`` (datasets read without pixel data) are in the stored stack order:
    sorted along the image-plane normal, one per slice ``k`` of the source grid.
    """

    files: tuple[Path, ...]
    headers: tuple[Dataset, ...]
    grid: SourceGrid

    @property
    def sop_instance_uids(self) -> tuple[str, ...]:
        return tuple(str(h.SOPInstanceUID) for h in self.headers)

    @property
    def is_axial(self) -> bool:
        """True when the stored slices are the canonical z slices (in some order)."""
        return int(self.grid.ornt[2, 0]) == 2

    def z_order(self) -> list[int]:
        """``z_order()[z]`` is the index into ``headers`` of the image behind canonical slice z.

        Only for axially stored series; in-plane axes may still be flipped relative to the
        canonical grid, so take per-image pixels from ``frames``, not from ``data[z]``.
        """
        if not self.is_axial:
            raise DicomSeriesError("the series is not stored as axial slices: no z order")
        n = len(self.headers)
        return list(range(n)) if self.grid.ornt[2, 1] > 0 else list(range(n - 1, -1, -1))

    def frames(self, data_zyx: np.ndarray) -> np.ndarray:
        """Canonical ``(z, y, x)`` data → ``(n, Rows, Columns)`` frames aligned with ``headers``."""
        return np.ascontiguousarray(
            self.grid.from_canonical(np.asarray(data_zyx)).transpose(2, 1, 0)
        )


@dataclass(frozen=True)
class _Slice:
    path: Path
    header: Dataset
    position: np.ndarray  # ImagePositionPatient, LPS mm
    distance: float  # along the image-plane normal, mm


def read_dicom_series(folder: str | Path) -> Volume:
    """Read one CT series from a folder (searched recursively) into a canonical ``Volume``."""
    return read_dicom_series_with_refs(folder)[0]


SliceReader = Callable[[Path, int, int], np.ndarray]


def read_dicom_series_with_refs(
    folder: str | Path, *, read_slice: SliceReader | None = None
) -> tuple[Volume, DicomSeriesInfo]:
    """Like ``read_dicom_series``, plus the files and headers of the source images.

    ``read_slice(path, rows, cols)`` returns one slice in HU (default ``read_slice_hu``); a
    caller may decode elsewhere, e.g. in a process a decoder crash cannot take down.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomSeriesError(f"{folder}: not a folder")
    headers = _read_headers(folder)
    slices, row_dir, col_dir = _checked_slices(folder, headers)
    rows, cols = int(slices[0].header.Rows), int(slices[0].header.Columns)

    stack = np.empty((len(slices), rows, cols), dtype=np.float32)  # (k, j, i)
    read = read_slice or read_slice_hu
    for k, s in enumerate(slices):
        stack[k] = read(s.path, rows, cols)

    row_spacing, col_spacing = (float(v) for v in slices[0].header.PixelSpacing)
    step = (slices[-1].position - slices[0].position) / (len(slices) - 1)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing  # increasing column index i
    affine[:3, 1] = col_dir * row_spacing  # increasing row index j
    affine[:3, 2] = step
    affine[:3, 3] = slices[0].position
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # LPS → RAS
    hu, canon_affine, grid = canonicalize(stack.transpose(2, 1, 0), affine)

    first = slices[0].header
    source = VolumeSource(
        path=str(folder),
        format="dicom",
        series_instance_uid=_str_or_none(first.get("SeriesInstanceUID")),
        study_instance_uid=_str_or_none(first.get("StudyInstanceUID")),
    )
    volume = Volume(hu=hu, affine=canon_affine, source=source, source_grid=grid)
    info = DicomSeriesInfo(
        files=tuple(s.path for s in slices),
        headers=tuple(s.header for s in slices),
        grid=grid,
    )
    return volume, info


# --- reading headers -------------------------------------------------------------------------


def _read_headers(folder: Path) -> list[tuple[Path, Dataset]]:
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        header = _read_header(path)
        if header is not None:
            found.append((path, header))
    if not found:
        raise DicomSeriesError(f"no DICOM files in {folder}")
    return found


def _read_header(path: Path) -> Dataset | None:
    """A DICOM file's header without pixel data; None for files that are not DICOM images."""
    try:
        head = read_head(path)
    except OSError as exc:
        raise DicomSeriesError(f"{path}: cannot read ({exc.strerror})") from exc
    if has_dicom_magic(head):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:
            raise DicomSeriesError(f"{path}: damaged DICOM file ({exc})") from exc
    elif head[:2] in (b"\x02\x00", b"\x08\x00"):  # a raw dataset without preamble, maybe
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception:  # not DICOM after all
            return None
        if "SOPClassUID" not in ds:
            return None
    else:
        return None
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("MediaStorageSOPClassUID") == MEDIA_STORAGE_DIRECTORY:
        return None
    if "DirectoryRecordSequence" in ds:
        return None
    return ds


# --- checks ----------------------------------------------------------------------------------


def _checked_slices(
    folder: Path, found: list[tuple[Path, Dataset]]
) -> tuple[list[_Slice], np.ndarray, np.ndarray]:
    """Apply every series check; the slices come back sorted along the normal, deduplicated."""
    _check_one_ct_series(folder, found)
    for check in (_check_single_frame, _check_not_localizer, _check_placed_grey):
        for path, ds in found:  # each check over every file first: the commonest reason wins
            check(path, ds)
    items = _unique_instances(found)
    _check_same_grid(items)
    row_dir, col_dir, normal = _orientation(*items[0])
    if len(items) < 2:
        raise DicomSeriesError(
            f"only one slice: a 2D image is not a CT volume ({items[0][0].name} in {folder})"
        )
    slices = []
    for path, ds in items:
        position = _floats(ds.ImagePositionPatient, 3, path)
        slices.append(_Slice(path, ds, position, float(position @ normal)))
    slices.sort(key=lambda s: (s.distance, str(s.path)))
    _check_positions(slices, normal)
    return slices, row_dir, col_dir


def _check_one_ct_series(folder: Path, found: list[tuple[Path, Dataset]]) -> None:
    """One SeriesInstanceUID, and CT on every file."""
    series = Counter(str(ds.get("SeriesInstanceUID", "<none>")) for _, ds in found)
    if len(series) > 1:
        listed = ", ".join(f"{uid} ({n} files)" for uid, n in series.most_common(3))
        more = f", and {len(series) - 3} more" if len(series) > 3 else ""
        raise DicomSeriesError(f"mixed series: {len(series)} series in {folder}: {listed}{more}")
    for path, ds in found:
        modality = str(ds.get("Modality", "") or "<missing>")
        if modality != "CT":
            raise DicomSeriesError(f"modality {modality}, expected CT ({path.name} in {folder})")


def _check_single_frame(path: Path, ds: Dataset) -> None:
    frames = _int_or(ds.get("NumberOfFrames"), 1)
    sop_class = str(ds.get("SOPClassUID", ""))
    if frames > 1 or sop_class in MULTI_FRAME_SOP_CLASSES:
        kind = MULTI_FRAME_SOP_CLASSES.get(sop_class, f"{frames} frames")
        raise DicomSeriesError(
            f"multi-frame object {path} ({kind}): only single-frame CT slices are supported"
        )


def _check_not_localizer(path: Path, ds: Dataset) -> None:
    image_type = [str(v).upper() for v in _as_list(ds.get("ImageType"))]
    if "LOCALIZER" in image_type:
        shown = "\\".join(image_type)
        raise DicomSeriesError(
            f"localizer (scout) image {path.name} (ImageType {shown}): "
            "a localizer is not a CT volume"
        )


def _check_placed_grey(path: Path, ds: Dataset) -> None:
    """The attributes that place the slice in space, and one sample per pixel."""
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if ds.get(keyword) in (None, ""):
            raise DicomSeriesError(f"{path}: no {keyword}, cannot place the slice in space")
    for keyword in ("Rows", "Columns", "SOPInstanceUID"):
        if ds.get(keyword) in (None, ""):
            raise DicomSeriesError(f"{path}: no {keyword}")
    if _int_or(ds.get("SamplesPerPixel"), 1) != 1:
        raise DicomSeriesError(f"{path}: a colour image (SamplesPerPixel > 1), not CT")


def _unique_instances(found: list[tuple[Path, Dataset]]) -> list[tuple[Path, Dataset]]:
    """An instance sent twice (PACS resends) counts once; one UID at two places is a conflict."""
    unique: dict[str, tuple[Path, Dataset]] = {}
    for path, ds in found:
        uid = str(ds.SOPInstanceUID)
        if uid in unique:
            other = unique[uid][1]
            if not np.allclose(
                _floats(ds.ImagePositionPatient, 3, path),
                _floats(other.ImagePositionPatient, 3, path),
                atol=DUPLICATE_TOL_MM,
            ):
                raise DicomSeriesError(
                    f"conflicting copies of SOPInstanceUID {uid}: {unique[uid][0].name} and "
                    f"{path.name} sit at different positions"
                )
            continue
        unique[uid] = (path, ds)
    return list(unique.values())


def _check_same_grid(items: list[tuple[Path, Dataset]]) -> None:
    """Every slice has the first one's size, pixel spacing and orientation."""
    first_path, first = items[0]
    iop0 = _floats(first.ImageOrientationPatient, 6, first_path)
    spacing0 = _floats(first.PixelSpacing, 2, first_path)
    size0 = (int(first.Rows), int(first.Columns))
    for path, ds in items[1:]:
        size = (int(ds.Rows), int(ds.Columns))
        if size != size0:
            raise DicomSeriesError(
                f"inconsistent image size: {path.name} is {size[0]}x{size[1]}, "
                f"{first_path.name} is {size0[0]}x{size0[1]} (Rows x Columns)"
            )
        spacing = _floats(ds.PixelSpacing, 2, path)
        if np.max(np.abs(spacing - spacing0)) > PIXEL_SPACING_TOL:
            raise DicomSeriesError(
                f"inconsistent PixelSpacing: {path.name} has {_fmt(spacing)}, "
                f"{first_path.name} has {_fmt(spacing0)}"
            )
        iop = _floats(ds.ImageOrientationPatient, 6, path)
        if np.max(np.abs(iop - iop0)) > ORIENTATION_TOL:
            raise DicomSeriesError(
                f"inconsistent ImageOrientationPatient: {path.name} has {_fmt(iop)}, "
                f"{first_path.name} has {_fmt(iop0)}"
            )
    if np.any(spacing0 <= 0):
        raise DicomSeriesError(f"{first_path}: PixelSpacing {_fmt(spacing0)} is not positive")


def _orientation(path: Path, ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row and column directions and the slice normal of a slice's orientation."""
    iop = _floats(ds.ImageOrientationPatient, 6, path)
    row_dir, col_dir = iop[:3], iop[3:]
    if (
        abs(np.linalg.norm(row_dir) - 1) > 1e-3
        or abs(np.linalg.norm(col_dir) - 1) > 1e-3
        or abs(row_dir @ col_dir) > 1e-3
    ):
        raise DicomSeriesError(
            f"{path}: ImageOrientationPatient {_fmt(iop)} is not two orthogonal unit vectors"
        )
    row_dir = row_dir / np.linalg.norm(row_dir)
    col_dir = col_dir / np.linalg.norm(col_dir)
    return row_dir, col_dir, np.cross(row_dir, col_dir)


def _check_positions(slices: list[_Slice], normal: np.ndarray) -> None:
    distances = np.array([s.distance for s in slices])
    gaps = np.diff(distances)
    for k in np.flatnonzero(gaps < DUPLICATE_TOL_MM):
        a, b = slices[k], slices[k + 1]
        raise DicomSeriesError(
            f"duplicate positions: {a.path.name} and {b.path.name} are both at "
            f"{a.distance:.3f} mm along the slice normal, with different SOPInstanceUIDs"
        )

    steps = np.diff(np.array([s.position for s in slices]), axis=0)
    sideways = np.linalg.norm(steps - np.outer(steps @ normal, normal), axis=1)
    ratio = sideways / gaps
    if ratio.max() > TILT_TOL:  # gantry tilt: positions run along the table, not the normal
        angle = float(np.degrees(np.arctan(ratio.max())))
        if angle > MAX_TILT_DEG:
            raise DicomSeriesError(
                f"gantry tilt of {angle:.1f}°: more than {MAX_TILT_DEG:g}° is not supported"
            )
        mean = steps.mean(axis=0)
        k = int(np.argmax(np.linalg.norm(steps - mean, axis=1)))
        if np.linalg.norm(steps[k] - mean) > STEP_TOL_MM:
            a, b = slices[k], slices[k + 1]
            raise DicomSeriesError(
                f"tilted series with uneven steps: {a.path.name} → {b.path.name} moves "
                f"{_fmt(steps[k])} mm, the mean step is {_fmt(mean)} mm"
            )

    expected = float(np.median(gaps))
    bad = np.flatnonzero(np.abs(gaps - expected) > max(SPACING_REL_TOL * expected, 1e-3))
    if bad.size:
        k = int(bad[0])
        a, b = slices[k], slices[k + 1]
        what = "missing slices" if gaps[k] > 1.5 * expected else "non-uniform slice spacing"
        raise DicomSeriesError(
            f"{what}: gap of {gaps[k]:.4g} mm between positions {a.distance:.4g} and "
            f"{b.distance:.4g} mm ({a.path.name}, {b.path.name}; expected {expected:.4g} mm)"
        )


# --- pixels ----------------------------------------------------------------------------------


def read_slice_hu(path: Path, rows: int, cols: int) -> np.ndarray:
    """One slice's stored values through its own RescaleSlope/RescaleIntercept, as float32 HU."""
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise DicomSeriesError(f"{path}: damaged DICOM file ({exc})") from exc
    if "PixelData" not in ds:
        raise DicomSeriesError(f"{path}: no pixel data")
    meta = ds.file_meta
    ts = UID(meta.get("TransferSyntaxUID") or ImplicitVRLittleEndian)
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = ts
    if ts.is_compressed:
        try:
            decoder = get_decoder(ts)
        except NotImplementedError:
            raise DicomSeriesError(
                f"{path}: transfer syntax {ts.name} ({ts}) is not supported"
            ) from None
        if not decoder.is_available:
            needs = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
            raise DicomSeriesError(
                f"{path}: cannot decode transfer syntax {ts.name} ({ts}): no decoder installed "
                f"(needs {needs})"
            )
    else:
        bits = _int_or(ds.get("BitsAllocated"), 16)
        expected = rows * cols * bits // 8
        if len(ds.PixelData) < expected:
            raise DicomSeriesError(
                f"truncated pixel data in {path}: {len(ds.PixelData)} bytes, expected {expected}"
            )
    try:
        stored = ds.pixel_array
    except Exception as exc:
        raise DicomSeriesError(f"{path}: cannot decode pixel data ({ts.name}): {exc}") from exc
    if stored.shape != (rows, cols):
        raise DicomSeriesError(
            f"{path}: pixel array has shape {stored.shape}, expected {(rows, cols)}"
        )
    slope = _float_or(ds.get("RescaleSlope"), 1.0)
    intercept = _float_or(ds.get("RescaleIntercept"), 0.0)
    return (stored.astype(np.float64) * slope + intercept).astype(np.float32)


# --- small helpers ---------------------------------------------------------------------------


def _as_list(value) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _floats(value, n: int, path: Path) -> np.ndarray:
    try:
        out = np.array([float(v) for v in _as_list(value)], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DicomSeriesError(f"{path}: unreadable numbers {value!r}") from exc
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise DicomSeriesError(f"{path}: expected {n} numbers, got {value!r}")
    return out


def _int_or(value, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _float_or(value, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _str_or_none(value) -> str | None:
    return str(value) if value not in (None, "") else None


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"
