"""One entry point for reading a scan from whatever the user points at."""

from __future__ import annotations

from pathlib import Path

from ugss.errors import VolumeError
from ugss.runtime.nifti import is_nifti_path, read_nifti
from ugss.runtime.volume import Volume


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
