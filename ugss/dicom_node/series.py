"""Which received instances the node keeps: checks at the door, before anything is written.

Two outcomes besides keeping an instance:
- a refusal (``StoreRefusal``, a PS3.4 B.2.3 failure status): the object is malformed — invalid
  UIDs, command and data set disagree, a CT image without its type 1 geometry (PS3.3 C.7.6.2),
  pixel data shorter or longer than Rows × Columns × BitsAllocated (both decode silently);
- an ignore (success status, a log line, nothing stored): a valid object the node has no use
  for — not CT, a localizer, a derived or non-axial reformat, a multi-frame or dose object — so
  a PACS pushing a whole study is never aborted.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import UID, CTImageStorage

from ugss.dicom_node.codestream import ImageClaim, check_frame
from ugss.dicom_node.dimse import DATASET_DOES_NOT_MATCH_SOP_CLASS, StoreRefusal
from ugss.dicom_node.spool import checked_uid

AXIAL_MIN_COS = 0.8  # |normal · z| above this counts as axial (tilt up to ~37°; the reader decides)
# Rows × Columns of one slice, for every transfer syntax (CT is 512², rarely 1024²): a header
# claiming more is refused before anything is decoded or allocated.
MAX_SLICE_PIXELS = 2048 * 2048
BITS_ALLOCATED = (8, 16)  # PS3.3 C.8.2.1.1.4 says 16 for CT; 8 is tolerated


@dataclass(frozen=True)
class Verdict:
    """What to do with a well-formed instance: keep it for a series, or ignore it (why)."""

    keep: bool
    series_uid: str
    study_uid: str
    sop_uid: str
    sop_class_uid: str
    reason: str = ""


def check_instance(ds: Dataset, command_sop_class: str, command_sop_uid: str) -> Verdict:
    """Refuse malformed objects; decide keep or ignore for well-formed ones."""
    sop_uid = checked_uid(ds.get("SOPInstanceUID"), "SOPInstanceUID")
    sop_class = checked_uid(ds.get("SOPClassUID"), "SOPClassUID")
    if sop_uid != str(command_sop_uid).strip("\0 "):
        raise StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOPInstanceUID differs from command")
    if sop_class != str(command_sop_class).strip("\0 "):
        raise StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOPClassUID differs from command")
    series_uid = checked_uid(ds.get("SeriesInstanceUID"), "SeriesInstanceUID")
    study_uid = checked_uid(ds.get("StudyInstanceUID"), "StudyInstanceUID")

    def verdict(keep: bool, reason: str = "") -> Verdict:
        return Verdict(keep, series_uid, study_uid, sop_uid, sop_class, reason)

    if sop_class != CTImageStorage:
        return verdict(False, f"SOP class {UID(sop_class).name} is not single-frame CT Image")
    modality = str(ds.get("Modality", "") or "")
    if modality != "CT":
        return verdict(False, f"modality {modality or 'missing'} is not CT")
    _check_geometry(ds)
    _check_pixel_data(ds)
    image_type = [str(v).upper() for v in _as_list(ds.get("ImageType"))]
    if "LOCALIZER" in image_type:
        return verdict(False, "localizer image")
    if image_type[:2] != ["ORIGINAL", "PRIMARY"]:
        shown = "/".join(image_type[:2]) or "missing"
        return verdict(False, f"derived image or reformat (ImageType {shown} is not original)")
    if _int(ds.get("NumberOfFrames"), 1) > 1:
        return verdict(False, "multi-frame image")
    r = [float(v) for v in ds.ImageOrientationPatient]  # row, column direction cosines
    normal = (r[1] * r[5] - r[2] * r[4], r[2] * r[3] - r[0] * r[5], r[0] * r[4] - r[1] * r[3])
    if abs(normal[2]) < AXIAL_MIN_COS * max(math.hypot(*normal), 1e-9):
        return verdict(False, "reformat: not an axial image")
    return verdict(True)


def _check_geometry(ds: Dataset) -> None:
    """PS3.3 C.7.6.2 Image Plane and C.7.6.3 Image Pixel: type 1 for CT Image (A.3)."""
    for keyword, n in (
        ("ImagePositionPatient", 3),
        ("ImageOrientationPatient", 6),
        ("PixelSpacing", 2),
    ):
        values = _as_list(ds.get(keyword))
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) != n or not all(math.isfinite(v) for v in numbers):
            raise StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, f"missing or bad {keyword}")
    for keyword in ("Rows", "Columns", "BitsAllocated"):
        if _int(ds.get(keyword), 0) <= 0:
            raise StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, f"missing or bad {keyword}")
    if _int(ds.get("SamplesPerPixel"), 1) != 1:
        raise StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "CT image with SamplesPerPixel != 1")
    rows, cols, bits = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated)
    if rows * cols > MAX_SLICE_PIXELS:
        raise StoreRefusal(
            DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"{rows}x{cols} pixels: more than {MAX_SLICE_PIXELS} per slice",
        )
    if bits not in BITS_ALLOCATED or not 1 <= _int(ds.get("BitsStored"), bits) <= bits:
        raise StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, f"bad BitsAllocated/BitsStored {bits}")


def _check_pixel_data(ds: Dataset) -> None:
    """Native pixel data must hold every pixel; encapsulated data must parse into fragments."""
    if "PixelData" not in ds:
        raise StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "no PixelData")
    data = ds.PixelData
    if not isinstance(data, bytes | bytearray):
        raise StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "unreadable PixelData")
    ts = UID(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else UID("")
    frames = _int(ds.get("NumberOfFrames"), 1)
    expected = int(ds.Rows) * int(ds.Columns) * frames * int(ds.BitsAllocated) // 8
    if ts.is_encapsulated:
        fragments = _fragments(data)
        if not fragments:
            raise StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "no PixelData fragments")
        if sum(len(f) for f in fragments) > 2 * expected + 65536:  # no codec doubles its input
            raise StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "compressed frame larger than 2x")
        claim = ImageClaim(int(ds.Rows), int(ds.Columns), 1, int(ds.BitsAllocated))
        check_frame(ts, bytes(fragments[0]), claim)
        return
    if len(data) < expected:
        raise StoreRefusal(
            DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"truncated PixelData: {len(data)} of {expected} bytes",
        )
    if len(data) > expected + (expected & 1):  # PS3.5 8.1.1: only an odd length's pad byte
        raise StoreRefusal(
            DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"oversized PixelData: {len(data)} bytes for {expected}",
        )


def _fragments(data: bytes) -> list[memoryview]:
    """PS3.5 A.4: items (FFFE,E000) after the Basic Offset Table, each wholly inside ``data``."""
    pos, items = 0, []
    view = memoryview(data)
    while pos + 8 <= len(data):
        group, elem, length = struct.unpack_from("<HHL", data, pos)
        tag = group << 16 | elem
        if tag == 0xFFFEE0DD:  # sequence delimiter
            break
        if tag != 0xFFFEE000 or length == 0xFFFFFFFF or pos + 8 + length > len(data):
            raise StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "broken encapsulated PixelData")
        items.append(view[pos + 8 : pos + 8 + length])
        pos += 8 + length
    return items[1:]  # the first item is the Basic Offset Table


def _as_list(value: object) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes):
        return [value]
    try:
        return list(value)  # type: ignore[call-overload]
    except TypeError:
        return [value]


def _int(value: object, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default
