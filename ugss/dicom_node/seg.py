"""Binary DICOM-SEG for the hemorrhage mask (PS3.3 A.51, C.8.20) with highdicom.

One segment: category SCT 49755003 "Morphologically abnormal structure", type SCT 50960005
"Hemorrhage", anatomic region SCT 1101003 "Intracranial", algorithm identification (PS3.3
C.8.20.2 / CID 7162 family "Artificial Intelligence") with the model's name and version, and a
tracking UID that the SR's measurement group carries too. Frames follow the source images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

import ugss

SEGMENT_NUMBER = 1
SEGMENT_LABEL = "Hemorrhage"
MANUFACTURER = "UGSS"
MODEL_NAME = "ugss-node"


@dataclass(frozen=True)
class ResultIds:
    """UIDs and numbers of one versioned result (deterministic per series and version)."""

    seg_series_uid: str
    seg_sop_uid: str
    sr_series_uid: str
    sr_sop_uid: str
    overlay_series_uid: str
    tracking_uid: str
    version: int

    @classmethod
    def for_version(cls, source_series_uid: str, version: int) -> ResultIds:
        """Same series and version → same UIDs, so a rerun after a crash is no duplicate."""

        def uid(kind: str) -> str:
            return str(hd.UID.from_uuid(_uuid5(source_series_uid, version, kind)))

        return cls(
            seg_series_uid=uid("seg-series"),
            seg_sop_uid=uid("seg"),
            sr_series_uid=uid("sr-series"),
            sr_sop_uid=uid("sr"),
            overlay_series_uid=uid("overlay-series"),
            tracking_uid=uid("tracking"),
            version=version,
        )

    def overlay_sop_uid(self, index: int) -> str:
        return str(hd.UID.from_uuid(_uuid5(self.overlay_series_uid, self.version, f"sc{index}")))


def _uuid5(series_uid: str, version: int, kind: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"ugss-node/{series_uid}/v{version}/{kind}"))


def segment_description(
    model_name: str, model_version: str, tracking_uid: str
) -> hd.seg.SegmentDescription:
    """PS3.3 C.8.20.4 Segment Description for the hemorrhage segment."""
    return hd.seg.SegmentDescription(
        segment_number=SEGMENT_NUMBER,
        segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Hemorrhage,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=model_name,
            version=model_version,
            family=codes.cid7162.ArtificialIntelligence,
        ),
        tracking_uid=tracking_uid,
        tracking_id=SEGMENT_LABEL,
        anatomic_regions=[codes.SCT.Intracranial],
    )


def build_seg(
    source_images: Sequence[Dataset],
    mask_frames: np.ndarray,
    ids: ResultIds,
    *,
    model_name: str,
    model_version: str,
) -> hd.seg.Segmentation:
    """``mask_frames`` ``(n, Rows, Columns)`` bool, aligned with ``source_images``."""
    mask_frames = np.asarray(mask_frames, dtype=bool)
    if mask_frames.shape[0] != len(source_images):
        raise ValueError(f"{mask_frames.shape[0]} mask frames for {len(source_images)} images")
    return hd.seg.Segmentation(
        source_images=list(source_images),
        pixel_array=mask_frames.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment_description(model_name, model_version, ids.tracking_uid)],
        series_instance_uid=ids.seg_series_uid,
        series_number=900 + ids.version,
        sop_instance_uid=ids.seg_sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=f"ugss {ugss.__version__}; model {model_name} {model_version}",
        device_serial_number="0",
        series_description=f"UGSS hemorrhage SEG v{ids.version}",
        omit_empty_frames=True,
    )
