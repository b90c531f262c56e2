"""One entry point for reading a scan from whatever the user points at, and for finding the
scans in what the user names (files, DICOM series folders, folders of many, glob patterns).

A DICOM series folder is a folder that holds DICOM images itself; the series reader reads it
with everything below it, so the folder walker stops there and never also lists its subfolders
(their files would be read twice). Folders without images of their own are walked into: a study
folder of series folders, or a CD/PACS export whose ``DICOMDIR`` (an index, not an image) sits
above ``DICOM/…/<series>/`` folders, gives one scan per series folder.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from ugss.errors import VolumeError
from ugss.runtime.nifti import is_nifti_path, read_nifti
from ugss.runtime.volume import Volume
from ugss.wording import plural

_GLOB_CHARS = set("*?[")
# every file ugss-infer writes per scan NAME is NAME + one of these: re-running on a folder must
# not pick them up, and a folder in the way of one fails that scan before anything is written
OUTPUT_SUFFIXES = (
    "_mask.nii.gz",
    "_prob.nii.gz",
    "_uncertainty.nii.gz",
    "_report.json",
    "_report.md",
    "_montage.png",
    "_3d.png",
    "_hemorrhage.ply",
)
# a labeled cohort (PhysioNet CT-ICH, ugss-synth): its scans are in ct_scans/; masks/, cavity/
# and dicom/ (the same scans as DICOM series) beside it are not scans to segment
COHORT_SCANS = "ct_scans"
# a DICOM Part 10 file: a 128-byte preamble, then these four bytes
DICOM_MAGIC = b"DICM"
_DICOM_HEAD = 128 + len(DICOM_MAGIC)


def has_dicom_magic(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) is that of a DICOM Part 10 file.

    The one "is this a DICOM file" test of the package; :func:`is_dicom_file` reads the bytes.
    """
    return head[128:_DICOM_HEAD] == DICOM_MAGIC


def read_head(path: str | Path) -> bytes:
    """The first bytes of a file, as many as :func:`has_dicom_magic` needs (``OSError`` passes)."""
    with open(path, "rb") as fh:
        return fh.read(_DICOM_HEAD)


def is_dicom_file(path: str | Path) -> bool:
    """True when ``path`` starts like a DICOM Part 10 file; ``OSError`` when it cannot be read."""
    return has_dicom_magic(read_head(path))


def read_volume(path: str | Path) -> Volume:
    """A NIfTI file or a folder holding one DICOM CT series → ``Volume``."""
    path = Path(path)
    if not path.exists():
        raise VolumeError(f"{path}: no such file or folder")
    if path.is_dir():
        from ugss.runtime.dicom_series import read_dicom_series

        return read_dicom_series(path)
    if is_nifti_path(path):
        return read_nifti(path)
    if is_dicom_file(path):
        raise VolumeError(
            f"{path}: a single DICOM file; pass the folder that holds the whole series"
        )
    raise VolumeError(f"{path}: not a NIfTI file (.nii, .nii.gz) or a DICOM series folder")


def _looks_like_dicom_folder(folder: Path, files: list[Path]) -> bool:
    """True when the folder itself holds DICOM images, judged by its first five files that are
    not NIfTI; a ``DICOMDIR`` does not count: it indexes series kept in subfolders."""
    for f in [f for f in files if f.name.upper() != "DICOMDIR"][:5]:
        if f.suffix.lower() == ".dcm":
            return True
        try:
            if is_dicom_file(f):
                return True
        except OSError:
            continue
    return False


@dataclass(frozen=True)
class FoundScans:
    """The scans found in what the user named, and what was said about how they were found."""

    paths: tuple[Path, ...]
    notes: tuple[str, ...] = ()


def _cohort_scans(folder: Path, notes: list[str]) -> list[Path]:
    """A cohort folder → the scans of its ``ct_scans/`` only, with a note saying so."""
    found = _scan_folder(folder / COHORT_SCANS, notes)
    others = sorted(
        f"{p.name}/"
        for p in folder.iterdir()
        if p.is_dir() and p.name != COHORT_SCANS and not p.name.startswith(".")
    )
    skipped = f" (not {', '.join(others)})" if others else ""
    notes.append(
        f"{folder}: a labeled cohort folder: reading the {plural(len(found), 'scan')} in "
        f"{COHORT_SCANS}/{skipped}"
    )
    return found


def _scan_folder(folder: Path, notes: list[str]) -> list[Path]:
    """A folder → its NIfTI files and either itself, when it holds DICOM images (a series read
    with its subfolders), or its subfolders' scans (a cohort folder: those in ``ct_scans/``)."""
    if (folder / COHORT_SCANS).is_dir():
        return _cohort_scans(folder, notes)
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file()]
    nifti = [p for p in files if is_nifti_path(p) and not p.name.endswith(OUTPUT_SUFFIXES)]
    others = [
        p
        for p in files
        if not is_nifti_path(p) and p.suffix not in (".json", ".md", ".png", ".ply")
    ]
    if others and _looks_like_dicom_folder(folder, others):
        return [folder, *nifti]  # the series reader reads the subfolders as part of it
    found = list(nifti)
    for sub in (p for p in entries if p.is_dir()):
        found += _scan_folder(sub, notes)
    return found


def find_scans(items: list[str]) -> FoundScans:
    """NIfTI files, DICOM series folders, folders of many (a cohort folder: its ``ct_scans/``)
    and glob patterns → scan paths, each once, and notes on the cohort folders read.

    A folder with nothing recognisable is kept as is, so reading it gives the precise error.
    """
    found: list[Path] = []
    notes: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += _scan_folder(path, notes) or [path]
        elif not path.exists() and _GLOB_CHARS & set(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                found.append(path)  # reported as "no such file"
            for m in matches:
                found += _scan_folder(Path(m), notes) if Path(m).is_dir() else [Path(m)]
        else:
            found.append(path)
    return FoundScans(tuple(dict.fromkeys(found)), tuple(notes))


def expand_inputs(items: list[str]) -> list[Path]:
    """``find_scans(items).paths`` as a list."""
    return list(find_scans(items).paths)
