"""Comprehensive 3D SR measurement report (PS3.16 TID 1500) with the hemorrhage volume.

One TID 1411 volumetric ROI group: tracking identifier shared with the SEG segment, the segment
referenced explicitly (highdicom 0.28's ``ReferencedSegment.from_segmentation`` fails on a
single-segment SEG), finding "Hemorrhage" at "Intracranial", and one TID 300 measurement:
Volume (SCT 118565006) in mL with the Monte Carlo interval as TID 310 upper/lower measurement
uncertainty (value − low, high − value).

The intracranial volume (the space searched for hemorrhage) is a second, TID 1501 group: finding
"Cranial cavity" (SCT 1101003) with its Volume (SCT 118565006) in mL, standard codes only.

A scan that is not a head CT is not assessed: the hemorrhage group then carries no volume, but
the qualitative evaluation Hemorrhage = "Not Evaluated" (SCT 373121007) and a Comment (DCM
121106) "not assessed: not a head CT"; the SEG written beside it is empty.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ugss.dicom_node.seg import MANUFACTURER, SEGMENT_LABEL, SEGMENT_NUMBER, ResultIds

if TYPE_CHECKING:
    from ugss.runtime.segment import Segmentation

MILLILITER = hd.sr.CodedConcept("mL", "UCUM", "milliliter")
CT_HEAD = hd.sr.CodedConcept("24725-4", "LN", "CT Head")
UPPER_UNCERTAINTY = "371886008"  # SCT "+, range of upper measurement uncertainty"
LOWER_UNCERTAINTY = "371885007"  # SCT "-, range of lower measurement uncertainty"
VOLUME_CODE = "118565006"  # SCT Volume
HEMORRHAGE_CODE = "50960005"  # SCT Hemorrhage
CRANIAL_CAVITY = codes.SCT.CranialCavity  # SCT 1101003: finding of the intracranial volume group
NOT_EVALUATED = codes.SCT.NotEvaluated  # SCT 373121007
FINDING = "121071"  # DCM Finding
NOT_HEAD_CT = "not assessed: not a head CT"


@dataclass(frozen=True)
class VolumeFinding:
    """The numbers the SR carries: volume in mL and its MC interval ``[low, high]``, the
    intracranial volume searched (None: unknown), and whether the scan was assessed at all."""

    volume_ml: float
    low_ml: float
    high_ml: float
    intracranial_ml: float | None = None
    assessed: bool = True  # False: not a head CT, no hemorrhage volume is claimed

    def __post_init__(self) -> None:
        if not self.low_ml <= self.volume_ml <= self.high_ml:
            object.__setattr__(self, "low_ml", min(self.low_ml, self.volume_ml))
            object.__setattr__(self, "high_ml", max(self.high_ml, self.volume_ml))

    @classmethod
    def of(cls, seg: Segmentation) -> VolumeFinding:
        """What the SR says about one segmented scan."""
        low, high = seg.interval_ml if seg.interval_ml is not None else (seg.volume_ml,) * 2
        return cls(seg.volume_ml, low, high, seg.intracranial_ml, seg.assessed)


@dataclass(frozen=True)
class SeriesNote:
    """A series of the study the report was not computed on, and why (study selection)."""

    series_uid: str
    label: str
    reason: str

    def text(self) -> str:
        label = f" ({self.label})" if self.label else ""
        return f"series {self.series_uid}{label} not assessed: {self.reason}"[:1024]


def build_sr(
    seg: Dataset,
    source_series_uid: str,
    finding: VolumeFinding,
    ids: ResultIds,
    *,
    model_name: str,
    model_version: str,
    source_label: str = "",
    not_assessed: Sequence[SeriesNote] = (),
) -> hd.sr.Comprehensive3DSR:
    """TID 1500 report referencing segment 1 of ``seg``; Comments (DCM 121106) name the series
    it was computed on and each series of the study it did not assess, with the reason."""
    algorithm = hd.sr.AlgorithmIdentification(name=model_name, version=model_version)
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
        measurements=[_hemorrhage_volume(finding, algorithm)] if finding.assessed else None,
        qualitative_evaluations=None
        if finding.assessed
        else [hd.sr.QualitativeEvaluation(codes.SCT.Hemorrhage, NOT_EVALUATED)],
        algorithm_id=algorithm,
    )
    if not finding.assessed:
        group[0].ContentSequence.append(_comment(NOT_HEAD_CT))
    label = f" ({source_label})" if source_label else ""
    group[0].ContentSequence.append(_comment(f"computed on series {source_series_uid}{label}"))
    for note in not_assessed:
        group[0].ContentSequence.append(_comment(note.text()))
    groups = [group]
    if finding.intracranial_ml is not None:
        groups.append(_intracranial_group(finding.intracranial_ml, ids, algorithm))
    return _report(groups, [seg], ids, model_name)


def build_study_sr(
    evidence: Dataset,
    reason: str,
    ids: ResultIds,
    *,
    model_name: str,
    model_version: str,
    not_assessed: Sequence[SeriesNote] = (),
) -> hd.sr.Comprehensive3DSR:
    """The report of a study with no suitable series: Hemorrhage "Not Evaluated", a Comment
    ``reason`` (starting "not assessed: ") and one Comment per series; no SEG, no volume."""
    algorithm = hd.sr.AlgorithmIdentification(name=model_name, version=model_version)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=ids.tracking_uid, identifier=SEGMENT_LABEL
        ),
        finding_type=codes.SCT.Hemorrhage,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Intracranial)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.SCT.Hemorrhage, NOT_EVALUATED)],
        algorithm_id=algorithm,
    )
    group[0].ContentSequence.append(_comment(reason))
    for note in not_assessed:
        group[0].ContentSequence.append(_comment(note.text()))
    return _report([group], [evidence], ids, model_name)


def _comment(text: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=codes.DCM.Comment,
        value=text,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )


def _report(
    groups: list, evidence: list[Dataset], ids: ResultIds, model_name: str
) -> hd.sr.Comprehensive3DSR:
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
        imaging_measurements=groups,
        title=codes.cid7021.ImagingMeasurementReport,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=ids.sr_series_uid,
        series_number=950 + ids.version,
        sop_instance_uid=ids.sr_sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=f"UGSS hemorrhage volume v{ids.version}",
    )


def _hemorrhage_volume(
    finding: VolumeFinding, algorithm: hd.sr.AlgorithmIdentification
) -> hd.sr.Measurement:
    return hd.sr.Measurement(
        name=codes.SCT.Volume,
        value=round(float(finding.volume_ml), 3),
        unit=MILLILITER,
        algorithm_id=algorithm,
        properties=hd.sr.MeasurementProperties(
            upper_measurement_uncertainty=round(finding.high_ml - finding.volume_ml, 3),
            lower_measurement_uncertainty=round(finding.volume_ml - finding.low_ml, 3),
        ),
    )


def _intracranial_group(
    icv_ml: float, ids: ResultIds, algorithm: hd.sr.AlgorithmIdentification
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501: Volume of the cranial cavity (the space searched for hemorrhage)."""
    uid = hd.UID.from_uuid(str(uuid.uuid5(uuid.NAMESPACE_OID, f"{ids.tracking_uid}/icv")))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=str(uid), identifier="Intracranial"),
        finding_type=CRANIAL_CAVITY,
        measurements=[
            hd.sr.Measurement(
                name=codes.SCT.Volume,
                value=round(float(icv_ml), 1),
                unit=MILLILITER,
                algorithm_id=algorithm,
            )
        ],
        algorithm_id=algorithm,
    )


def _device_uuid() -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, "ugss-node/device"))


def _walk(items):
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def _code(item: Dataset, sequence: str = "ConceptNameCodeSequence") -> str | None:
    seq = item.get(sequence, [])
    return str(seq[0].CodeValue) if seq else None


def _groups(sr: Dataset):
    """``(finding code, group item)`` of each measurement group, in order."""
    for item in _walk(sr.get("ContentSequence", [])):
        if item.get("ValueType") != "CONTAINER" or _code(item) != "125007":
            continue
        children = item.get("ContentSequence", [])
        finding = next(
            (_code(c, "ConceptCodeSequence") for c in children if _code(c) == FINDING), None
        )
        yield finding, item


def _volume_item(group: Dataset) -> Dataset | None:
    for item in group.get("ContentSequence", []):
        if item.get("ValueType") == "NUM" and _code(item) == VOLUME_CODE:
            return item
    return None


def read_volume_ml(sr: Dataset) -> tuple[float, float, float]:
    """The reader for ``build_sr``: ``(volume, low, high)`` in mL from a stored report.

    Takes the Volume (SCT 118565006) NUM of the Hemorrhage group and its TID 310 uncertainty
    children; independent of how the SR was built. Raises ``ValueError`` when there is none
    (a scan that was not assessed has none).
    """
    for finding, group in _groups(sr):
        item = _volume_item(group) if finding in (HEMORRHAGE_CODE, None) else None
        if item is None:
            continue
        value = float(item.MeasuredValueSequence[0].NumericValue)
        bounds = {UPPER_UNCERTAINTY: 0.0, LOWER_UNCERTAINTY: 0.0}
        for child in item.get("ContentSequence", []):
            code = child.ConceptNameCodeSequence[0].CodeValue
            if code in bounds and child.get("MeasuredValueSequence"):
                bounds[code] = float(child.MeasuredValueSequence[0].NumericValue)
        return value, value - bounds[LOWER_UNCERTAINTY], value + bounds[UPPER_UNCERTAINTY]
    raise ValueError("no hemorrhage Volume measurement in the SR")


def read_intracranial_ml(sr: Dataset) -> float | None:
    """The intracranial volume (mL) of a stored report, None when it holds none."""
    for finding, group in _groups(sr):
        item = _volume_item(group) if finding == CRANIAL_CAVITY.value else None
        if item is not None:
            return float(item.MeasuredValueSequence[0].NumericValue)
    return None


def _comments(sr: Dataset) -> list[str]:
    return [
        str(item.TextValue)
        for item in _walk(sr.get("ContentSequence", []))
        if item.get("ValueType") == "TEXT" and _code(item) == "121106"
    ]


def read_not_assessed(sr: Dataset) -> str | None:
    """The Comment of a scan that was not assessed (e.g. "not assessed: not a head CT")."""
    return next((t for t in _comments(sr) if t.startswith("not assessed")), None)


def read_series_notes(sr: Dataset) -> tuple[str | None, dict[str, str]]:
    """``(series computed on, {series not assessed: reason})`` from a stored report."""
    computed, passed = None, {}
    for text in _comments(sr):
        if text.startswith("computed on series "):
            computed = text.split()[3]
        elif text.startswith("series ") and " not assessed: " in text:
            passed[text.split()[1]] = text.split(" not assessed: ", 1)[1]
    return computed, passed
