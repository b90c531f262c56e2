"""Optional secondary-capture overlay series (PS3.3 A.8.1) for viewers that cannot show SEG.

One RGB image per source slice that holds hemorrhage (or the middle slice when none does): the
CT in the brain window, the mask outline burned in, the volume with its interval, and
"NOT FOR DIAGNOSTIC USE". BurnedInAnnotation is YES; patient and study come from the source.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from scipy import ndimage

from ugss.dicom_node.seg import MANUFACTURER, ResultIds
from ugss.dicom_node.sr import NOT_HEAD_CT, VolumeFinding
from ugss.runtime.preprocess import BRAIN_WINDOW

OUTLINE_RGB = (255, 40, 40)


def _caption(finding: VolumeFinding, slice_no: int, n: int, version: int) -> list[str]:
    if not finding.assessed:
        return [NOT_HEAD_CT, f"UGSS v{version}  slice {slice_no}/{n}", "NOT FOR DIAGNOSTIC USE"]
    volume = f"Hemorrhage {finding.volume_ml:.1f} mL"
    if finding.high_ml > finding.low_ml:
        volume += f" ({finding.low_ml:.1f}-{finding.high_ml:.1f})"
    return [volume, f"UGSS v{version}  slice {slice_no}/{n}", "NOT FOR DIAGNOSTIC USE"]


def render_slice(hu: np.ndarray, mask: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """``(rows, cols)`` HU and mask → ``(rows, cols, 3)`` uint8 with outline and caption."""
    level, width = BRAIN_WINDOW.level, BRAIN_WINDOW.width
    gray = np.clip((hu - (level - width / 2)) / width * 255.0, 0, 255).astype(np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    edge = mask & ~ndimage.binary_erosion(mask, iterations=1, border_value=0)
    rgb[edge] = OUTLINE_RGB
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    longest = max((len(line) for line in lines), default=1)
    size = max(6, min(max(10, hu.shape[0] // 32), int(hu.shape[1] / (0.62 * longest))))
    font = ImageFont.load_default(size=size)
    for i, line in enumerate(lines):
        draw.text((4, 4 + i * (size + 3)), line, fill=(255, 255, 0), font=font)
    return np.asarray(image)


def build_overlay(
    source_images: Sequence[Dataset],
    hu_frames: np.ndarray,
    mask_frames: np.ndarray,
    finding: VolumeFinding,
    ids: ResultIds,
) -> list[hd.sc.SCImage]:
    """Frames aligned with ``source_images`` (stored order) → SC images, one per shown slice."""
    n = len(source_images)
    shown = [k for k in range(n) if mask_frames[k].any()] or [n // 2]
    out = []
    for number, k in enumerate(shown, start=1):
        ref = source_images[k]
        rgb = render_slice(hu_frames[k], mask_frames[k], _caption(finding, k + 1, n, ids.version))
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=ref,
            pixel_array=rgb,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=ids.overlay_series_uid,
            series_number=980 + ids.version,
            sop_instance_uid=ids.overlay_sop_uid(number),
            instance_number=number,
            manufacturer=MANUFACTURER,
            pixel_spacing=tuple(float(v) for v in ref.PixelSpacing),
            patient_orientation=_patient_orientation(ref),
            transfer_syntax_uid="1.2.840.10008.1.2.1",
        )
        sc.BurnedInAnnotation = "YES"
        sc.BodyPartExamined = ref.get("BodyPartExamined") or "HEAD"  # dciodvfy: Laterality 2C
        sc.SeriesDescription = f"UGSS hemorrhage overlay v{ids.version} (not for diagnosis)"
        sc.ImageComments = "NOT FOR DIAGNOSTIC USE"
        out.append(sc)
    return out


def _patient_orientation(ref: Dataset) -> tuple[str, str]:
    """PS3.3 C.7.6.1.1.1: the patient directions of the row and column axes."""
    iop = [float(v) for v in ref.ImageOrientationPatient]

    def letters(v: Sequence[float]) -> str:
        names = (("L", "R"), ("P", "A"), ("H", "F"))
        order = np.argsort(-np.abs(v))
        return "".join(names[i][0 if v[i] > 0 else 1] for i in order if abs(v[i]) > 0.2) or "L"

    return letters(iop[:3]), letters(iop[3:])
