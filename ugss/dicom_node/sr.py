"""Comprehensive 3D SR measurement report (PS3.16 TID 1500) with the hemorrhage volume.

One TID 1411 volumetric ROI group: tracking identifier shared with the SEG segment, the segment
referenced explicitly (highdicom 0.28's ``ReferencedSegment.from_segmentation`` fails on a
single-segment SEG), finding "Hemorrhage" at "Intracranial", and one TID 300 measurement:
Volume (SCT 118565006) in mL with the Monte Carlo interval as TID 310 upper/lower measurement
uncertainty (value − low, high − value).
"""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ugss.dicom_node.seg import MANUFACTURER, SEGMENT_LABEL, SEGMENT_NUMBER, ResultIds

MILLILITER = hd.sr.CodedConcept("mL", "UCUM", "milliliter")
CT_HEAD = hd.sr.CodedConcept("24725-4", "LN", "CT Head")
UPPER_UNCERTAINTY = "371886008"  # SCT "+, range of upper measurement uncertainty"
LOWER_UNCERTAINTY = "371885007"  # SCT "-, range of lower measurement uncertainty"


@dataclass(frozen=True)
class VolumeFinding:
    """The numbers the SR carries: volume in mL and its MC interval ``[low, high]``."""

    volume_ml: float
    low_ml: float
    high_ml: float

    def __post_init__(self) -> None:
        if not self.low_ml <= self.volume_ml <= self.high_ml:
            object.__setattr__(self, "low_ml", min(self.low_ml, self.volume_ml))
            object.__setattr__(self, "high_ml", max(self.high_ml, self.volume_ml))


def build_sr(
    seg: Dataset,
    source_series_uid: str,
    finding: VolumeFinding,
    ids: ResultIds,
    *,
    model_name: str,
    model_version: str,
) -> hd.sr.Comprehensive3DSR:
    """TID 1500 report referencing segment 1 of ``seg``."""
    algorithm = hd.sr.AlgorithmIdentification(name=model_name, version=model_version)
    measurement = hd.sr.Measurement(
        name=codes.SCT.Volume,
        value=round(float(finding.volume_ml), 3),
        unit=MILLILITER,
        algorithm_id=algorithm,
        properties=hd.sr.MeasurementProperties(
            upper_measurement_uncertainty=round(finding.high_ml - finding.volume_ml, 3),
            lower_measurement_uncertainty=round(finding.volume_ml - finding.low_ml, 3),
        ),
    )
    reference = hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        segment_number=SEGMENT_NUMBER,
        source_series=hd.sr.SourceSeriesForSegmentation(source_series_uid),
    )
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=ids.tracking_uid, identifier=SEGMENT_LABEL
        ),
        referenced_segment=reference,
        finding_type=codes.SCT.Hemorrhage,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Intracranial)],
        measurements=[measurement],
        algorithm_id=algorithm,
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=str(hd.UID.from_uuid(_device_uuid())),
            name="ugss-node",
            manufacturer_name=MANUFACTURER,
            model_name=model_name,
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CT_HEAD,
        imaging_measurements=[group],
        title=codes.cid7021.ImagingMeasurementReport,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[seg],
        content=report,
        series_instance_uid=ids.sr_series_uid,
        series_number=950 + ids.version,
        sop_instance_uid=ids.sr_sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=f"UGSS hemorrhage volume v{ids.version}",
    )


def _device_uuid() -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_OID, "ugss-node/device"))


def read_volume_ml(sr: Dataset) -> tuple[float, float, float]:
    """The reader for ``build_sr``: ``(volume, low, high)`` in mL from a stored report.

    Walks the content tree for the NUM item named Volume (SCT 118565006) and its TID 310
    uncertainty children; independent of how the SR was built.
    """

    def walk(items):
        for item in items:
            yield item
            yield from walk(item.get("ContentSequence", []))

    for item in walk(sr.get("ContentSequence", [])):
        names = item.get("ConceptNameCodeSequence", [])
        if item.get("ValueType") != "NUM" or not names or names[0].CodeValue != "118565006":
            continue
        value = float(item.MeasuredValueSequence[0].NumericValue)
        bounds = {UPPER_UNCERTAINTY: 0.0, LOWER_UNCERTAINTY: 0.0}
        for child in item.get("ContentSequence", []):
            code = child.ConceptNameCodeSequence[0].CodeValue
            if code in bounds and child.get("MeasuredValueSequence"):
                bounds[code] = float(child.MeasuredValueSequence[0].NumericValue)
        return value, value - bounds[LOWER_UNCERTAINTY], value + bounds[UPPER_UNCERTAINTY]
    raise ValueError("no Volume measurement in the SR")
