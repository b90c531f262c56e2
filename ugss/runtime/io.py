"""One entry point for reading a scan from whatever the user points at, and for finding the
scans in what the user names (files, DICOM series folders, folders of many, glob patterns)."""

from __future__ import annotations

import glob
from pathlib import Path

from ugss.errors import VolumeError
from ugss.runtime.nifti import is_nifti_path, read_nifti
from ugss.runtime.volume import Volume

_GLOB_CHARS = set("*?[")
# ugss-infer's own outputs are not scans: re-running on a folder must not pick them up
OUTPUT_SUFFIXES = ("_mask.nii.gz", "_prob.nii.gz", "_uncertainty.nii.gz")


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
    with open(path, "rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM":
        raise VolumeError(
            f"{path}: a single DICOM file; pass the folder that holds the whole series"
        )
    raise VolumeError(f"{path}: not a NIfTI file (.nii, .nii.gz) or a DICOM series folder")


def _looks_like_dicom_folder(folder: Path, files: list[Path]) -> bool:
    for f in files[:5]:
        if f.suffix.lower() == ".dcm" or f.name == "DICOMDIR":
            return True
        try:
            with open(f, "rb") as fh:
                if fh.read(132)[128:132] == b"DICM":
                    return True
        except OSError:
            continue
    return False


def _scan_folder(folder: Path) -> list[Path]:
    """A folder → its NIfTI files, itself if it holds a DICOM series, and its subfolders' scans."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file()]
    nifti = [p for p in files if is_nifti_path(p) and not p.name.endswith(OUTPUT_SUFFIXES)]
    others = [
        p
        for p in files
        if not is_nifti_path(p) and p.suffix not in (".json", ".md", ".png", ".ply")
    ]
    found: list[Path] = []
    if others and _looks_like_dicom_folder(folder, others):
        found.append(folder)
    found += nifti
    for sub in (p for p in entries if p.is_dir()):
        found += _scan_folder(sub)
    return found


def expand_inputs(items: list[str]) -> list[Path]:
    """NIfTI files, DICOM series folders, folders of many and glob patterns → scan paths.

    A folder with nothing recognisable is kept as is, so reading it gives the precise error.
    """
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += _scan_folder(path) or [path]
        elif not path.exists() and _GLOB_CHARS & set(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                found.append(path)  # reported as "no such file"
            for m in matches:
                found += _scan_folder(Path(m)) if Path(m).is_dir() else [Path(m)]
        else:
            found.append(path)
    unique: dict[Path, None] = {}
    for p in found:
        unique.setdefault(p, None)
    return list(unique)
