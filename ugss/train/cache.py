"""Preprocess each scan once and keep the slices on disk as memory-mapped ``.npy``.

A scan is a NIfTI file or a DICOM series folder (``ugss.runtime.io.read_volume``); before it is
preprocessed the runtime's intensity check refuses what cannot be CT in HU (a mask, MR,
unscaled data) with one line naming the file.

Images go through ``ugss.runtime.preprocess.preprocess_slices`` — the exact function the
runtime uses — and masks through the same ``PlaneTransform.forward`` (fill 0, threshold ½), so
model pixels and label pixels line up and training sees deployment's pixels. An entry is keyed
by a hash of the file paths, their sizes and modification times, the input size and the windows:
editing a file or changing preprocessing makes a new entry, nothing is silently reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ugss.cache_root import user_cache_root
from ugss.errors import InputError
from ugss.runtime.io import read_volume
from ugss.runtime.nifti import read_nifti
from ugss.runtime.preprocess import (
    PlaneTransform,
    Window,
    iter_slabs,
    preprocess_slices,
    windows_to_str,
)
from ugss.runtime.volume import Volume
from ugss.train.manifest import ScanRecord

log = logging.getLogger(__name__)

CACHE_VERSION = 1
SLAB = 16  # slices preprocessed at a time: bounded memory for thin-slice scans


@dataclass(frozen=True)
class CachedScan:
    """One preprocessed scan: images ``(n, C, S, S)`` float32, mask ``(n, S, S)`` uint8 or None."""

    scan_id: str
    images: np.ndarray
    mask: np.ndarray | None
    native_shape: tuple[int, int, int]
    voxel_volume_ml: float

    @property
    def n_slices(self) -> int:
        return int(self.images.shape[0])

    @property
    def positive_slices(self) -> np.ndarray:
        if self.mask is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.mask.reshape(self.mask.shape[0], -1).any(axis=1))

    @property
    def has_hemorrhage(self) -> bool | None:
        return None if self.mask is None else bool(self.positive_slices.size)


def _file_identity(path: str | None) -> dict[str, Any] | None:
    """Path, size and modification time; for a DICOM series folder, those of its files."""
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file())
        return {"path": str(p.resolve()), "files": [_file_identity(str(f)) for f in files]}
    st = os.stat(path)
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key(record: ScanRecord, size: int, windows: tuple[Window, ...]) -> str:
    ident = {
        "version": CACHE_VERSION,
        "scan": _file_identity(record.scan_path),
        "mask": _file_identity(record.mask_path),
        "size": size,
        "windows": windows_to_str(windows),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def read_mask_for(volume: Volume, mask_path: str) -> np.ndarray:
    """Read a mask the way the scan was read and check it sits on the same voxel grid."""
    mask_vol = read_nifti(mask_path)
    if mask_vol.shape != volume.shape:
        raise InputError(
            f"{mask_path}: mask shape {mask_vol.shape} differs from scan {volume.source.path} "
            f"shape {volume.shape}"
        )
    if not np.allclose(mask_vol.affine, volume.affine, atol=1e-2):
        raise InputError(
            f"{mask_path}: mask geometry (affine) differs from scan {volume.source.path}"
        )
    return mask_vol.hu != 0


def preprocess_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """``(n, H, W)`` bool → ``(n, size, size)`` uint8 on the model grid (the images' transform)."""
    transform = PlaneTransform(mask.shape[1], mask.shape[2], size)
    return (transform.forward(mask.astype(np.float32), fill=0.0) >= 0.5).astype(np.uint8)


def _build(record: ScanRecord, size: int, windows: tuple[Window, ...], dest: Path) -> None:
    from ugss.runtime.segment import check_ct_intensities  # imports onnxruntime: only here

    volume = read_volume(record.scan_path)
    check_ct_intensities(volume)
    mask = read_mask_for(volume, record.mask_path) if record.mask_path else None
    n = volume.shape[0]
    images = np.lib.format.open_memmap(
        dest / "images.npy", mode="w+", dtype=np.float32, shape=(n, len(windows), size, size)
    )
    for sl in iter_slabs(n, SLAB):
        images[sl] = preprocess_slices(volume.hu[sl], size, windows)
    images.flush()
    del images
    if mask is not None:
        np.save(dest / "mask.npy", preprocess_mask(mask, size))
    meta = {
        "scan_id": record.scan_id,
        "native_shape": list(volume.shape),
        "voxel_volume_ml": volume.voxel_volume_ml,
        "scan_path": record.scan_path,
        "mask_path": record.mask_path,
    }
    (dest / "meta.json").write_text(json.dumps(meta))


def load_cached(entry: Path, scan_id: str) -> CachedScan:
    meta = json.loads((entry / "meta.json").read_text())
    mask_file = entry / "mask.npy"
    return CachedScan(
        scan_id=scan_id,
        images=np.load(entry / "images.npy", mmap_mode="r"),
        mask=np.load(mask_file, mmap_mode="r") if mask_file.exists() else None,
        native_shape=tuple(meta["native_shape"]),  # type: ignore[arg-type]
        voxel_volume_ml=float(meta["voxel_volume_ml"]),
    )


def cache_scan(
    record: ScanRecord,
    *,
    size: int,
    windows: tuple[Window, ...],
    cache_root: str | Path | None = None,
) -> CachedScan:
    """Preprocessed slices of one scan, built on first use and memory-mapped afterwards."""
    root = Path(cache_root) if cache_root else user_cache_root() / "slices"
    root.mkdir(parents=True, exist_ok=True)
    entry = root / cache_key(record, size, windows)
    if not (entry / "meta.json").is_file():
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
        try:
            _build(record, size, windows, tmp)
            try:
                os.replace(tmp, entry)
            except OSError:  # another process finished the same entry first
                if not (entry / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.debug("cached %s → %s", record.scan_id, entry)
    return load_cached(entry, record.scan_id)
