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

# Inference names load on first use, so importing the package (as training does for the
# shared preprocessing) does not import onnxruntime.
_LAZY = {
    "Engine": "ugss.runtime.engines",
    "EngineOutput": "ugss.runtime.engines",
    "open_engine": "ugss.runtime.engines",
    "Segmentation": "ugss.runtime.segment",
    "segment_volume": "ugss.runtime.segment",
    "ScanReport": "ugss.runtime.report",
    "build_report": "ugss.runtime.report",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    *_LAZY,
]
