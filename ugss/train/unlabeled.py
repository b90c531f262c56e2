"""Unlabeled scans from folders of their own (``ugss-train --unlabeled DIR``, repeatable).

Each folder is searched with ``ugss.runtime.io.find_scans``, the search ``ugss-infer`` uses:
NIfTI files, DICOM series folders, folders of many, a cohort folder's ``ct_scans/``. Every scan
found becomes an unlabeled training record with its own patient (a folder carries no patient
identity beyond the scan; exact copies of labeled scans are refused, below), so it can only
ever join the unlabeled training data, never validation or test. Whether a file really is CT
is checked when it is first preprocessed (``cache.cache_scan``, with the runtime's intensity
check), so a mask, an MR image or unscaled data stops the run with one line naming it.

Refused with one line (``InputError``, exit code 2): a folder that does not exist or holds no
scan; a scan that is an exact copy of a labeled scan or of another unlabeled scan
(``fingerprint``: the same file bytes; for a DICOM series the same files under any names),
each pair named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from ugss.errors import InputError
from ugss.runtime.io import find_scans, is_dicom_file
from ugss.runtime.nifti import is_nifti_path
from ugss.train.manifest import ScanRecord

UNLABELED_PREFIX = "unlabeled:"  # scan and patient ids of these records start with it
_EDGE = 1 << 16  # bytes hashed at each end of every file


def _file_digest(path: Path) -> bytes:
    """Size plus the first and last 64 KiB: a NIfTI header and a DICOM file's UIDs are inside."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(_EDGE))
        if size > 2 * _EDGE:
            fh.seek(size - _EDGE)
        h.update(fh.read(_EDGE))
    return h.digest()


def _series_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def fingerprint(path: str | Path) -> str:
    """Identity of a scan's bytes: a NIfTI file, or a DICOM folder's files in any naming."""
    path = Path(path)
    files = _series_files(path) if path.is_dir() else [path]
    digests = sorted(_file_digest(f) for f in files)
    return hashlib.sha256(b"".join(digests)).hexdigest()


def _holds_dicom(folder: Path) -> bool:
    for f in _series_files(folder)[:5]:
        if f.suffix.lower() == ".dcm":
            return True
        try:
            if is_dicom_file(f):
                return True
        except OSError:
            continue
    return False


def scans_in(folder: str | Path) -> list[Path]:
    """The scans ``find_scans`` finds in ``folder``; an ``InputError`` if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--unlabeled {folder}: no such folder")
    paths = list(find_scans([str(folder)]).paths)
    usable = [p for p in paths if p.is_dir() or is_nifti_path(p)]
    if usable == [folder] and not _holds_dicom(folder):
        usable = []
    if not usable:
        n = sum(1 for p in folder.rglob("*") if p.is_file())
        raise InputError(
            f"--unlabeled {folder}: no NIfTI scan (.nii, .nii.gz) or DICOM series in it "
            f"({n} other file{'s' if n != 1 else ''})"
        )
    return usable


def _check_duplicates(unlabeled: Sequence[ScanRecord], labeled: Sequence[ScanRecord]) -> None:
    seen = {fingerprint(r.scan_path): f"labeled {r.scan_path}" for r in labeled}
    pairs = []
    for r in unlabeled:
        key = fingerprint(r.scan_path)
        if key in seen:
            pairs.append(f"{r.scan_path} = {seen[key]}")
        else:
            seen[key] = f"unlabeled {r.scan_path}"
    if pairs:
        shown = "; ".join(pairs[:3]) + (f"; … {len(pairs) - 3} more" if len(pairs) > 3 else "")
        raise InputError(f"--unlabeled: {len(pairs)} scan(s) already in the training data: {shown}")


def unlabeled_records(dirs: Sequence[str], labeled: Sequence[ScanRecord]) -> list[ScanRecord]:
    """Unlabeled records for the scans in ``dirs``, refusing copies of ``labeled`` scans."""
    records: list[ScanRecord] = []
    for folder in dirs:
        for path in scans_in(folder):
            sid = UNLABELED_PREFIX + str(path.resolve())
            records.append(ScanRecord(sid, str(path), None, sid))
    _check_duplicates(records, labeled)
    return records
