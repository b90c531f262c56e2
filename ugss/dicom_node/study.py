"""A complete study → which series become jobs, which are passed over (why), or a study report.

The rules are ``selection.py``'s; this module reads the facts from the spool and applies the
study-level policy:

- ``select = "best"``: one series per study. A late instance of the chosen series reopens it and
  gives a new version (as before). A late *series* (one that arrives after the study was
  answered from a series) is passed over, even when the rules would have preferred it:
  "late series: the study was answered from …" — the answer already in the PACS is never
  contradicted by a second one from another series. When the study has no answer from a series
  yet (it was "not assessed", or its chosen series failed), a late suitable series is chosen.
- ``select = "all"``: every suitable series is segmented, late ones too.
- No suitable series and no answer from a series: a study job (kind ``study``) writes the
  "not assessed" report, once per batch of newly judged series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from ugss.dicom_node.db import StudySeries
from ugss.dicom_node.selection import (
    SelectionRules,
    SeriesFacts,
    choose,
    facts_of,
    judge,
    kernel_known,
)
from ugss.dicom_node.spool import Spool
from ugss.dicom_node.states import ACTIVE_STATES, JobState, SeriesState
from ugss.errors import DicomSeriesError
from ugss.runtime.dicom_series import read_slice_hu
from ugss.runtime.noise import noise_hu

_ANSWERABLE = (SeriesState.DONE, SeriesState.RECEIVING)  # a done job still answers for these


@dataclass(frozen=True)
class StudyDecision:
    """What ``queue_study`` records for one study."""

    study_uid: str
    chosen: tuple[str, ...] = ()
    passed: dict[str, str] = field(default_factory=dict)
    not_assessed_on: str | None = None  # the series a "not assessed" report is anchored on


def read_facts(spool: Spool, series_uid: str, rules: SelectionRules) -> SeriesFacts | str:
    """The facts of a spooled series, or the reason it cannot be judged."""
    files = sorted(spool.series_dir(series_uid).glob("*.dcm"))
    if not files:
        return "no instances in the spool"
    try:
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    except Exception as exc:
        return f"unreadable header ({type(exc).__name__})"
    noise = None
    kernels = sorted({str(h.get("ConvolutionKernel", "") or "").upper() for h in headers})
    if not kernel_known(kernels, rules):
        noise = _middle_noise(files, headers)
    return facts_of(series_uid, headers, noise)


def _middle_noise(files: list[Path], headers: list[Dataset]) -> float | None:
    """Noise of the middle slice (native pixel data only: compressed data is decoded only in
    the job's sandboxed decoder, so an unnamed kernel of a compressed series is not measured)."""
    order = sorted(range(len(files)), key=lambda i: _z(headers[i]))
    k = order[len(order) // 2]
    meta = getattr(headers[k], "file_meta", None)
    ts = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")
    if not ts or ts.is_encapsulated:
        return None
    try:
        hu = read_slice_hu(files[k], int(headers[k].Rows), int(headers[k].Columns))
    except (DicomSeriesError, ValueError, TypeError):
        return None
    return noise_hu(hu)


def _z(ds: Dataset) -> float:
    try:
        return float(ds.ImagePositionPatient[2])
    except (AttributeError, IndexError, TypeError, ValueError):
        return 0.0


def decide(
    study_uid: str,
    series: list[StudySeries],
    facts: dict[str, SeriesFacts | str],
    rules: SelectionRules,
    *,
    earlier_reports: int = 0,
) -> StudyDecision:
    """Apply rules and policy (module docstring) to the study's receiving series."""
    receiving = [s for s in series if s.state == SeriesState.RECEIVING]
    known = {uid: f for uid, f in facts.items() if isinstance(f, SeriesFacts)}
    passed = {uid: f for uid, f in facts.items() if isinstance(f, str)}
    choices = choose([known[s.series_uid] for s in receiving if s.series_uid in known], rules)
    passed.update({c.series_uid: c.reason for c in choices if not c.chosen})
    chosen = [c.series_uid for c in choices if c.chosen]
    answered = next(
        (s for s in series if s.job_state == JobState.DONE and s.state in _ANSWERABLE), None
    )
    if rules.mode == "best" and answered is not None:
        chosen = _keep_answered(answered, chosen, passed, known, rules)
    busy = any(s.state in ACTIVE_STATES for s in series)
    anchor = None
    if not chosen and answered is None and not busy and (receiving or not earlier_reports):
        anchor = _anchor(series)
    return StudyDecision(study_uid, tuple(chosen), passed, anchor)


def _keep_answered(
    answered: StudySeries,
    chosen: list[str],
    passed: dict[str, str],
    known: dict[str, SeriesFacts],
    rules: SelectionRules,
) -> list[str]:
    """``best`` after an answer: only the answered series may give a new version."""
    uid = answered.series_uid
    why = f"late series: the study was answered from {answered.label or uid}"
    passed.update({c: why for c in chosen if c != uid})
    if answered.state == SeriesState.RECEIVING and uid in known and not judge(known[uid], rules):
        passed.pop(uid, None)  # a late instance of the answered series: a new version
        return [uid]
    return []


def _anchor(series: list[StudySeries]) -> str | None:
    """A kept series if there is one (its files carry the study), else an ignored one."""
    kept = [s for s in series if s.state != SeriesState.IGNORED]
    pool = kept or series
    return pool[0].series_uid if pool else None


def anchor_header(spool: Spool, series_uid: str) -> Path | None:
    """A file whose header carries the study's patient and study modules."""
    files = sorted(spool.series_dir(series_uid).glob("*.dcm"))
    if files:
        return files[0]
    header = spool.header_path(series_uid)
    return header if header.is_file() else None
