"""Which scans to train on: the PhysioNet CT-ICH folder layout or a manifest (CSV / JSON).

PhysioNet layout: ``DIR/ct_scans/NNN.nii[.gz]`` with ``DIR/masks/NNN.nii[.gz]`` for every scan,
and optionally ``DIR/hemorrhage_diagnosis_raw_ct.csv`` (per-slice diagnosis; used only to tell
which scans contain hemorrhage). One scan per patient, so the patient id is the scan id.

Manifest: one row per scan with a scan path and optionally a mask path and a patient id; rows
without a mask are unlabeled scans (first-class: they feed the consistency loss). Relative paths
are taken from the manifest's folder. Accepted column names (case-insensitive): scan |
scan_path | ct_path | image | path; mask | mask_path | label; patient_id | patient | subject;
scan_id | id. JSON: a list of such objects, or ``{"scans": [...]}``. The synthetic cohort's
``truth.csv`` is a valid manifest.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ugss.errors import InputError
from ugss.runtime.nifti import NIFTI_SUFFIXES

log = logging.getLogger(__name__)

SCAN_KEYS = ("scan", "scan_path", "ct_path", "image", "path")
MASK_KEYS = ("mask", "mask_path", "label")
PATIENT_KEYS = ("patient_id", "patient", "subject")
ID_KEYS = ("scan_id", "id")
DIAGNOSIS_CSV = "hemorrhage_diagnosis_raw_ct.csv"


@dataclass(frozen=True)
class ScanRecord:
    """One scan: where it is, its mask (``None`` = unlabeled), and whose it is."""

    scan_id: str
    scan_path: str
    mask_path: str | None
    patient_id: str
    has_hemorrhage: bool | None = None  # from a diagnosis table, when one is given

    @property
    def labeled(self) -> bool:
        return self.mask_path is not None


def _nifti_stem(path: Path) -> str | None:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def read_physionet(root: str | Path) -> list[ScanRecord]:
    """``root/ct_scans`` + ``root/masks`` (+ the diagnosis CSV) → records, sorted by scan id."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such data folder")
    scans_dir, masks_dir = root / "ct_scans", root / "masks"
    if not scans_dir.is_dir():
        raise InputError(f"{root}: not a PhysioNet CT-ICH folder (no ct_scans/ inside)")
    scans = {}
    for path in sorted(scans_dir.iterdir()):
        stem = _nifti_stem(path)
        if stem is not None:
            scans[stem] = path
    if not scans:
        raise InputError(f"{scans_dir}: no NIfTI scans (.nii, .nii.gz) found")
    masks = {}
    if masks_dir.is_dir():
        for path in masks_dir.iterdir():
            stem = _nifti_stem(path)
            if stem is not None:
                masks[stem] = path
    missing = sorted(set(scans) - set(masks))
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise InputError(
            f"{masks_dir}: no mask for {len(missing)} scan(s): {shown} "
            "(use a manifest to add unlabeled scans)"
        )
    diagnosis = read_diagnosis_csv(root / DIAGNOSIS_CSV)
    return [
        ScanRecord(
            scan_id=stem,
            scan_path=str(path),
            mask_path=str(masks[stem]),
            patient_id=stem,
            has_hemorrhage=diagnosis.get(_as_number(stem)),
        )
        for stem, path in scans.items()
    ]


def _as_number(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def read_diagnosis_csv(path: Path) -> dict[int | None, bool]:
    """PhysioNet's per-slice table → {patient number: any slice with hemorrhage}; {} if absent."""
    if not path.is_file():
        return {}
    result: dict[int | None, bool] = {}
    try:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                patient = int(row["PatientNumber"])
                positive = int(float(row["No_Hemorrhage"])) == 0
                result[patient] = result.get(patient, False) or positive
    except (KeyError, ValueError) as exc:
        log.warning("%s: ignoring unreadable diagnosis table (%s)", path, exc)
        return {}
    return result


def _pick(row: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    lowered = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    for key in keys:
        value = lowered.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def read_manifest(path: str | Path) -> list[ScanRecord]:
    """A CSV or JSON manifest → records (see the module docstring for the columns)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such manifest file")
    rows: list[Mapping[str, Any]]
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from exc
        rows = doc.get("scans", []) if isinstance(doc, dict) else doc
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InputError(f"{path}: expected a list of objects (or {{'scans': [...]}})")
    else:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    base = path.parent
    records: list[ScanRecord] = []
    seen: set[str] = set()
    for i, row in enumerate(rows, start=1):
        scan = _pick(row, SCAN_KEYS)
        if scan is None:
            raise InputError(f"{path}: row {i} has no scan path (columns: {', '.join(SCAN_KEYS)})")
        scan_path = (base / scan).resolve()
        if not scan_path.is_file():
            raise InputError(f"{path}: row {i}: scan {scan_path} does not exist")
        mask = _pick(row, MASK_KEYS)
        mask_path = None
        if mask is not None:
            mask_path = (base / mask).resolve()
            if not mask_path.is_file():
                raise InputError(f"{path}: row {i}: mask {mask_path} does not exist")
        scan_id = _pick(row, ID_KEYS) or _nifti_stem(scan_path) or scan_path.name
        if scan_id in seen:
            raise InputError(f"{path}: scan id {scan_id!r} appears twice")
        seen.add(scan_id)
        records.append(
            ScanRecord(
                scan_id=scan_id,
                scan_path=str(scan_path),
                mask_path=None if mask_path is None else str(mask_path),
                patient_id=_pick(row, PATIENT_KEYS) or scan_id,
            )
        )
    if not records:
        raise InputError(f"{path}: the manifest lists no scans")
    return records


def load_records(data_dir: str | None, manifest: str | None) -> list[ScanRecord]:
    if data_dir:
        return read_physionet(data_dir)
    if manifest:
        return read_manifest(manifest)
    raise InputError("no data: give a data folder or a manifest")
