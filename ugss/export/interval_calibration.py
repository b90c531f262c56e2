"""Export-time calibration of the MC volume interval (``ugss.runtime.interval``).

Labeled scans the model was not trained on: by default the checkpoint's own validation split,
rebuilt from the data configuration and the split scan ids saved in the checkpoint (for the
synthetic default the cohort is found in the cache, or regenerated, by ``ugss.train.synthetic``);
or every scan of a labeled folder in the PhysioNet layout (``ct_scans/``, ``masks/``, what
``ugss-synth`` writes) given with ``--interval-calibration DIR``.

Each scan goes through the deployment path: the exported MC ONNX model in an ``OnnxEngine``
and ``ugss.runtime.segment.segment_volume`` with ``ugss-infer``'s defaults (MC seed 0, speck
removal at ``DEFAULT_MIN_COMPONENT_ML`` and ``DEFAULT_MIN_COMPONENT_SLICES``). Its MC per-sample
volumes and point estimate, with the volume of the true mask, feed
``ugss.runtime.interval.calibrate``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ugss.errors import InputError
from ugss.runtime.engines import Engine, OnnxEngine
from ugss.runtime.interval import IntervalCalibration, LabeledVolume, calibrate
from ugss.runtime.model_info import KIND_MC
from ugss.runtime.nifti import read_nifti
from ugss.runtime.segment import segment_volume
from ugss.runtime.volume import Volume
from ugss.train.cache import read_mask_for
from ugss.train.manifest import ScanRecord, load_records, read_physionet
from ugss.train.predict import LoadedCheckpoint

Progress = Callable[[str], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationScans:
    """The labeled scans to calibrate on and, in words, where they come from."""

    records: tuple[ScanRecord, ...]
    source: str


@dataclass(frozen=True)
class IntervalResult:
    """The calibration and what it cost."""

    calibration: IntervalCalibration
    seconds: float


def _no_split(ckpt: LoadedCheckpoint, why: str) -> InputError:
    return InputError(
        f"{ckpt.path}: cannot rebuild the validation split to calibrate the MC volume "
        f"interval ({why}); pass --interval-calibration DIR (labeled scans) or "
        "--no-interval-calibration"
    )


def _training_records(ckpt: LoadedCheckpoint) -> list[ScanRecord]:
    """Every scan of the data the checkpoint was trained on (synthetic: made if absent)."""
    assert ckpt.config is not None
    data = ckpt.config.data
    if data.data_dir or data.manifest:
        return load_records(data.data_dir, data.manifest)
    trained_on = ckpt.data.get("n_scans")
    if trained_on is not None and int(trained_on) != data.synth_scans:  # before generating it
        raise InputError(
            f"trained on {trained_on} scans, not its synthetic cohort of {data.synth_scans}"
        )
    from ugss.train.synthetic import ensure_synthetic_cohort

    return read_physionet(ensure_synthetic_cohort(data))


def validation_scans(ckpt: LoadedCheckpoint, sha256: str) -> CalibrationScans:
    """The checkpoint's validation scans, each with its mask."""
    wanted = set(ckpt.data.get("split", {}).get("val", ()))
    if ckpt.config is None or not wanted:
        raise _no_split(ckpt, "the checkpoint records no data configuration or split")
    try:
        records = _training_records(ckpt)
    except InputError as exc:
        raise _no_split(ckpt, str(exc)) from exc
    found = [r for r in records if r.scan_id in wanted and r.labeled]
    if len(found) != len(wanted):
        missing = sorted(wanted - {r.scan_id for r in found})
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise _no_split(ckpt, f"{len(missing)} validation scan(s) not found or unlabeled: {shown}")
    return CalibrationScans(tuple(found), f"validation split of {sha256[:12]}")


def folder_scans(folder: Path) -> CalibrationScans:
    """Every scan of a labeled PhysioNet-layout folder."""
    try:
        records = read_physionet(folder)
    except InputError as exc:
        raise InputError(f"--interval-calibration {exc}") from exc
    return CalibrationScans(tuple(records), f"labeled cohort {folder.name}/")


def mc_engine(model: Path) -> OnnxEngine:
    """The MC model on CPU, as ``ugss-infer`` opens it (MC noise seed 0)."""
    engine = OnnxEngine(model, provider="cpu", seed=0)
    if engine.info.kind != KIND_MC:
        raise InputError(f"{model}: not an MC model, it has no volume interval to calibrate")
    return engine


def measure_volume(engine: Engine, volume: Volume, truth: np.ndarray) -> LabeledVolume | None:
    """One labeled scan through ``segment_volume`` (``ugss-infer``'s defaults); None when the
    runtime does not assess it (not a head CT: no interval)."""
    seg = segment_volume(volume, engine, check_intensities=False)
    if seg.sample_volumes_ml is None:
        return None
    true_ml = float(np.count_nonzero(truth)) * volume.voxel_volume_ml
    return LabeledVolume(seg.sample_volumes_ml, seg.volume_ml, true_ml)


def measure(
    model: Path, records: Sequence[ScanRecord], progress: Progress | None = None
) -> list[LabeledVolume]:
    """``measure_volume`` of each labeled scan file; scans not assessed are left out."""
    engine = mc_engine(model)
    out = []
    for i, rec in enumerate(records):
        if progress is not None:
            progress(f"calibrating the volume interval: scan {i + 1}/{len(records)}")
        volume = read_nifti(rec.scan_path)
        truth = read_mask_for(volume, rec.mask_path)  # type: ignore[arg-type]
        scan = measure_volume(engine, volume, truth)
        if scan is None:
            log.warning("%s: not assessed by the runtime, left out of the calibration", rec.scan_id)
        else:
            out.append(scan)
    if not out:
        raise InputError("no calibration scan was assessed by the runtime (are they head CTs?)")
    return out


def calibrate_model(
    model: Path, scans: CalibrationScans, progress: Progress | None = None
) -> IntervalResult:
    """Run ``model`` over ``scans`` and calibrate its volume interval."""
    t0 = time.perf_counter()
    measured = measure(model, scans.records, progress)
    calibration = calibrate(measured, scans.source)
    return IntervalResult(calibration, time.perf_counter() - t0)
