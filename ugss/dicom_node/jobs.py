"""One job: a complete series in the spool → versioned SEG + SR (+ overlay) files.

The volume is assembled by the runtime's DICOM reader (sorted along the slice normal, spacing
and orientation checked; a bad series is one ``DicomSeriesError`` line), segmented by the
runtime on its native grid, and encoded per source image. Result UIDs depend only on the series
and the version (``ResultIds.for_version``), so a job rerun after a crash rewrites the same
objects instead of adding duplicates. Files are written atomically under
``<results>/<StudyUID>/<SeriesUID>/v<version>/``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ugss.dicom_node.decode import DecodeLimits, slice_reader
from ugss.dicom_node.overlay import build_overlay
from ugss.dicom_node.seg import ResultIds, build_seg
from ugss.dicom_node.sr import SeriesNote, VolumeFinding, build_sr, build_study_sr
from ugss.errors import DicomSeriesError
from ugss.runtime.dicom_series import read_dicom_series_with_refs, write_dicom_series
from ugss.runtime.engines import Engine
from ugss.runtime.segment import segment_volume
from ugss.runtime.volume import Volume

# Attributes every slice of one series must share (PS3.3 C.7.1.1, C.7.2.1): slices from two
# patients or studies under one Series Instance UID are refused, never segmented together.
IDENTITY_KEYWORDS = ("PatientID", "PatientName", "PatientBirthDate", "StudyInstanceUID")


@dataclass(frozen=True)
class ResultFile:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    kind: str  # "seg" | "sr" | "overlay"


@dataclass(frozen=True)
class JobOutput:
    """What a job produced: files to deliver and a summary for the database and logs."""

    files: tuple[ResultFile, ...]
    summary: dict[str, Any] = field(default_factory=dict)


def save_atomic(ds: Dataset, path: Path) -> None:
    """Write a DICOM file next to its final name, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        ds.save_as(tmp, enforce_file_format=True)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def result_dir(results: Path, study_uid: str, series_uid: str, version: int) -> Path:
    return results / study_uid / series_uid / f"v{version}"


def check_identity(headers: tuple[Dataset, ...]) -> None:
    """``DicomSeriesError`` naming the attribute (never its values) if the slices disagree."""
    for keyword in IDENTITY_KEYWORDS:
        values = {str(h.get(keyword, "") or "") for h in headers}
        if len(values) > 1:
            raise DicomSeriesError(
                f"slices disagree on {keyword} ({len(values)} different values): "
                "mixed patients or studies in one series, not processed"
            )


def process_series(
    folder: Path,
    *,
    study_uid: str,
    series_uid: str,
    version: int,
    engine: Engine,
    results: Path,
    use_mc: bool = True,
    overlay: bool = False,
    scratch: Path | None = None,
    decode_limits: DecodeLimits | None = None,
    source_label: str = "",
    not_assessed: tuple[SeriesNote, ...] = (),
) -> JobOutput:
    """Run the pipeline for one series folder; raises ``DicomSeriesError`` for a bad series
    (``DecodeFailed`` when the decoder process crashed or hit a limit)."""
    t0 = time.perf_counter()
    scratch = scratch if scratch is not None else Path(tempfile.gettempdir())
    with slice_reader(folder, scratch, decode_limits or DecodeLimits()) as read_slice:
        volume, info = read_dicom_series_with_refs(folder, read_slice=read_slice)
    check_identity(info.headers)
    t1 = time.perf_counter()
    seg = segment_volume(volume, engine, use_mc=use_mc)
    t2 = time.perf_counter()

    model_name, model_version = engine.info.name, engine.info.version
    finding = VolumeFinding.of(seg)
    ids = ResultIds.for_version(series_uid, version)
    icv = seg.intracranial_ml
    summary: dict[str, Any] = {
        "version": version,
        "slices": len(info.headers),
        "assessed": seg.assessed,
        "volume_ml": round(seg.volume_ml, 3),
        "interval_ml": (
            [round(finding.low_ml, 3), round(finding.high_ml, 3)]
            if seg.interval_ml is not None
            else None
        ),
        "intracranial_ml": None if icv is None else round(icv, 1),
        "outside_ml": round(seg.outside_ml, 3),
        "model": {"name": model_name, "version": model_version, "engine": engine.description},
    }
    # Free the probability and entropy maps (and the HU volume) before anything new is
    # allocated: they dominate the peak memory of a long series.
    mask = seg.mask
    del seg
    hu_frames = info.frames(volume.hu) if overlay else None
    del volume
    mask_frames = info.frames(mask)
    del mask

    out_dir = result_dir(results, study_uid, series_uid, version)
    seg_ds = build_seg(
        info.headers, mask_frames, ids, model_name=model_name, model_version=model_version
    )
    sr_ds = build_sr(
        seg_ds, series_uid, finding, ids, model_name=model_name, model_version=model_version,
        source_label=source_label, not_assessed=not_assessed,
    )  # fmt: skip
    files = [
        ResultFile(out_dir / "seg.dcm", str(seg_ds.SOPClassUID), ids.seg_sop_uid, "seg"),
        ResultFile(out_dir / "sr.dcm", str(sr_ds.SOPClassUID), ids.sr_sop_uid, "sr"),
    ]
    datasets: list[Dataset] = [seg_ds, sr_ds]
    if overlay and hu_frames is not None:
        for i, sc in enumerate(build_overlay(info.headers, hu_frames, mask_frames, finding, ids)):
            path = out_dir / "overlay" / f"{i + 1:04d}.dcm"
            files.append(ResultFile(path, str(sc.SOPClassUID), str(sc.SOPInstanceUID), "overlay"))
            datasets.append(sc)
    for f, ds in zip(files, datasets, strict=True):
        save_atomic(ds, f.path)
    t3 = time.perf_counter()

    summary["seg_sop_uid"] = ids.seg_sop_uid
    summary["sr_sop_uid"] = ids.sr_sop_uid
    summary["files"] = len(files)
    summary["not_assessed"] = {n.series_uid: n.reason for n in not_assessed}
    summary["timings_s"] = {
        "load": round(t1 - t0, 3),
        "model": round(t2 - t1, 3),
        "encode": round(t3 - t2, 3),
    }
    (out_dir / "result.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return JobOutput(tuple(files), summary)


def study_result_ids(study_uid: str, version: int) -> ResultIds:
    """UIDs of a study's "not assessed" report: never those of a series' result."""
    return ResultIds.for_version(f"study/{study_uid}", version)


def process_study(
    evidence: Path,
    *,
    study_uid: str,
    version: int,
    reason: str,
    not_assessed: tuple[SeriesNote, ...],
    engine: Engine,
    results: Path,
) -> JobOutput:
    """The report of a study with no suitable series: one SR, no SEG (``evidence``: a header
    file of the study). Written under ``<results>/<StudyUID>/study/v<version>/``."""
    header = pydicom.dcmread(evidence, stop_before_pixels=True, force=True)
    if str(header.get("StudyInstanceUID", "")) != study_uid:
        raise DicomSeriesError(f"{evidence.name}: not of study {study_uid}")
    ids = study_result_ids(study_uid, version)
    sr_ds = build_study_sr(
        header, reason, ids, model_name=engine.info.name, model_version=engine.info.version,
        not_assessed=not_assessed,
    )  # fmt: skip
    out_dir = results / study_uid / "study" / f"v{version}"
    sr_file = ResultFile(out_dir / "sr.dcm", str(sr_ds.SOPClassUID), ids.sr_sop_uid, "sr")
    save_atomic(sr_ds, sr_file.path)
    summary: dict[str, Any] = {
        "version": version,
        "assessed": False,
        "reason": reason,
        "sr_sop_uid": ids.sr_sop_uid,
        "files": 1,
        "not_assessed": {n.series_uid: n.reason for n in not_assessed},
    }
    (out_dir / "result.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return JobOutput((sr_file,), summary)


def warm_up(engine: Engine) -> float:
    """Pay first-use costs before the first series: the model's memory arena and highdicom's
    tables of the standard (~0.5 s on first SEG). Returns the seconds spent."""
    t0 = time.perf_counter()
    info = engine.info
    engine.run(np.zeros((1, len(info.windows), info.input_size, info.input_size), np.float32))
    hu = np.full((2, 16, 16), -1000.0, dtype=np.float32)
    hu[:, 4:12, 4:12] = 40.0
    with tempfile.TemporaryDirectory(prefix="ugss-node-warmup-") as tmp:
        write_dicom_series(Volume(hu=hu, affine=np.diag([-1.0, -1.0, 5.0, 1.0])), Path(tmp) / "s")
        _, info_ = read_dicom_series_with_refs(Path(tmp) / "s")
        ids = ResultIds.for_version(str(info_.headers[0].SeriesInstanceUID), 1)
        seg = build_seg(info_.headers, hu > 0, ids, model_name="warm-up", model_version="0")
        build_sr(seg, ids.seg_series_uid, VolumeFinding(0.0, 0.0, 0.0), ids,
                 model_name="warm-up", model_version="0")  # fmt: skip
    return time.perf_counter() - t0
