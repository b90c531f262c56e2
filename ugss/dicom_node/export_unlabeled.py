"""``ugss-node export-unlabeled OUT``: received CT series → a de-identified folder of DICOM
series for ``ugss-train --unlabeled OUT``. Nothing is exported unless this is run.

Which series: those the node segmented (state ``done``: suitable CT series chosen by the study
selection, complete) that are still in the spool (kept ``retention_h`` hours). A series whose
first instance says ``BurnedInAnnotation`` = YES is skipped: its pixels may carry identity.

De-identification is done by libraries, not here: every instance goes through ``dicognito``
(MIT; names, IDs, UIDs, dates shifted consistently, addresses, equipment; it sets
``PatientIdentityRemoved`` and ``DeidentificationMethod``) after pydicom's
``remove_private_tags``. ``describe_deidentification()`` lists dicognito's actions. This is
dicognito's profile, modelled on PS3.15 Annex E's Basic Application Level Confidentiality
Profile but not a certified implementation of it: free-text descriptions (study and series
descriptions, comments) are kept. Review the output before it leaves the hospital.

One ``Anonymizer`` serves a whole export, so the series of one patient and study stay grouped.
With a ``seed`` the pseudonyms are a function of it: exporting again with the same seed gives
the same new UIDs, and series already in OUT are skipped. Keep the seed secret (whoever has it
can recompute the pseudonyms); without one they are random per export.

Installing: ``pip install 'ugss[deid]'`` (dicognito is not a base dependency).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

from ugss.errors import InputError

DONE = "done"  # the series state exported (``ugss.dicom_node.db``)


@dataclass(frozen=True)
class ExportResult:
    """Output folders written, and (series folder, reason) for each series not exported."""

    written: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]


def read_seed(path: Path) -> str:
    """The first line of a secret file (a seed on the command line would show in ``ps``)."""
    try:
        seed = Path(path).read_text().splitlines()[0].strip() if Path(path).stat().st_size else ""
    except OSError as exc:
        raise InputError(f"{path}: cannot read the seed file ({exc.strerror})") from exc
    if not seed:
        raise InputError(f"{path}: the seed file is empty")
    return seed


def _anonymizer(seed: str | None) -> Any:
    try:
        from dicognito.anonymizer import Anonymizer
    except ImportError as exc:
        raise InputError(
            "export-unlabeled needs dicognito: pip install 'ugss[deid]' (or dicognito)"
        ) from exc
    return Anonymizer(seed=seed)


def describe_deidentification() -> str:
    """What is done to every instance: pydicom's private-tag removal and dicognito's actions."""
    return "* Remove private tags (pydicom)\n" + _anonymizer(None).describe_actions()


def _unsuitable(files: list[Path]) -> str | None:
    if not files:
        return "no instances left in the spool"
    head = pydicom.dcmread(files[0], stop_before_pixels=True)
    if str(head.get("Modality", "")) != "CT":
        return f"modality {head.get('Modality', '<missing>')}, not CT"
    if str(head.get("BurnedInAnnotation", "")).upper() == "YES":
        return "BurnedInAnnotation YES: identity may be in the pixels"
    return None


def _deidentify_series(files: list[Path], out: Path, anonymizer: Any) -> Path | None:
    """Write the series de-identified to ``out/<new SeriesUID>/``; None if already there."""
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        series_uid = ""
        for i, f in enumerate(files, start=1):
            ds = pydicom.dcmread(f)
            ds.remove_private_tags()
            anonymizer.anonymize(ds)
            series_uid = str(ds.SeriesInstanceUID)
            ds.save_as(tmp / f"IM{i:04d}.dcm", enforce_file_format=True)
        dest = out / series_uid
        if dest.exists():
            return None
        os.replace(tmp, dest)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_series(folders: list[Path], out: Path, *, seed: str | None = None) -> ExportResult:
    """De-identify each series folder (``*.dcm``) into ``out`` (see the module docstring)."""
    anonymizer = _anonymizer(seed)
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    skipped: list[tuple[str, str]] = []
    for folder in folders:
        files = sorted(folder.glob("*.dcm")) if folder.is_dir() else []
        reason = _unsuitable(files)
        if reason is None:
            dest = _deidentify_series(files, out, anonymizer)
            reason = None if dest else "already exported (same seed)"
            if dest:
                written.append(str(dest))
        if reason:
            skipped.append((str(folder), reason))
    return ExportResult(tuple(written), tuple(skipped))


def export_unlabeled(
    spool: Path, db_path: Path, out: Path, *, seed: str | None = None
) -> ExportResult:
    """The node's segmented series (state ``done``) still in ``spool`` → ``export_series``."""
    from ugss.dicom_node.db import NodeDB
    from ugss.dicom_node.spool import SERIES_DIR

    if not Path(db_path).is_file():
        raise InputError(f"{db_path}: no node database (has the node run with this spool?)")
    db = NodeDB(db_path, readonly=True)
    try:
        uids = db.series_in_state(DONE)
    finally:
        db.close()
    return export_series([Path(spool) / SERIES_DIR / uid for uid in uids], out, seed=seed)
