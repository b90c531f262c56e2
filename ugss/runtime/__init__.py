"""Deployment side: volume I/O, shared preprocessing, inference. Never imports torch."""

from ugss.runtime.dicom_series import (
    DicomSeriesInfo,
    read_dicom_series,
    read_dicom_series_with_refs,
    write_dicom_series,
)
from ugss.runtime.io import read_volume
from ugss.runtime.nifti import read_nifti, write_nifti
from ugss.runtime.preprocess import (
    DEFAULT_WINDOWS,
    PlaneTransform,
    Window,
    apply_windows,
    iter_slabs,
    preprocess_slices,
    resize_plane,
)
from ugss.runtime.volume import SourceGrid, Volume, VolumeSource, canonicalize

__all__ = [
    "DEFAULT_WINDOWS",
    "DicomSeriesInfo",
    "PlaneTransform",
    "SourceGrid",
    "Volume",
    "VolumeSource",
    "Window",
    "apply_windows",
    "canonicalize",
    "iter_slabs",
    "preprocess_slices",
    "read_dicom_series",
    "read_dicom_series_with_refs",
    "read_nifti",
    "read_volume",
    "resize_plane",
    "write_dicom_series",
    "write_nifti",
]
