"""Segment one CT volume with an engine: slabs → shared preprocessing → model → native grid.

The volume is processed in slabs of ``batch_size`` slices, so memory is bounded by the
slab, not the scan. Outputs go back onto the native grid with ``PlaneTransform.inverse`` (the
shared preprocessing, never a copy of it), the mask is ``prob ≥ threshold`` on that grid, and
specks below ``min_component_ml`` are removed. Each slice of each map is resampled only
inside the window where the model's map reaches ``SUPPORT_FLOOR`` (values below it are stored
as 0 anyway): a scan without findings costs almost nothing here. The volume is the paper's
eq. 12 on the final mask: voxel count × voxel volume, exactly what the written mask gives.

MC volume interval. The MC graph returns, per slice and sample, the number of foreground
pixels at model resolution. Summed over slices and scaled by the physical size of a model pixel,
they give T per-sample volumes before speck removal. These are calibrated by the ratio
``final volume / volume of the mean-probability mask at model resolution`` (which carries the
resampling and speck removal over to the samples), and the interval is their 5th–95th
percentile, widened to include the point estimate when the samples all fall on one side of it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ugss.errors import VolumeError
from ugss.runtime.engines import Engine, auto_batch_size
from ugss.runtime.model_info import KIND_MC
from ugss.runtime.postprocess import (
    Component,
    describe_components,
    head_midline_x,
    remove_small_components,
)
from ugss.runtime.preprocess import PlaneTransform, iter_slabs, preprocess_slices
from ugss.runtime.volume import Volume

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

DEFAULT_MIN_COMPONENT_ML = 0.05
# Maps are resampled to the native grid only inside the window where some model pixel reaches
# this value and are exactly 0 elsewhere: what a reader of the stored maps (1/255 steps) sees.
SUPPORT_FLOOR = 0.5 / 255.0
# Default slab: model time per slice measured flat from 3 to 34 slices on CPU (within noise),
# while memory grows with the slab (300 x 512² MC: 1.79 GiB peak at 19 slices).
DEFAULT_SLAB = 8
INTERVAL_QUANTILES = (5.0, 95.0)
INTERVAL_METHOD = (
    "5th-95th percentile of the T MC per-sample volumes (model resolution, calibrated to the "
    "final mask), widened to include the point estimate"
)


@dataclass(frozen=True, eq=False)
class Segmentation:
    """A segmented scan on the native canonical grid of its ``Volume``."""

    mask: np.ndarray  # (z, y, x) bool, after speck removal
    prob: np.ndarray  # (z, y, x) float32
    entropy: np.ndarray | None  # (z, y, x) float32 bits, MC only
    volume_ml: float
    interval_ml: tuple[float, float] | None
    sample_volumes_ml: tuple[float, ...] | None
    components: tuple[Component, ...]
    removed_components: int
    removed_ml: float
    threshold: float
    min_component_ml: float
    midline_x: float
    batch_size: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def hemorrhage_present(self) -> bool:
        return self.volume_ml > 0.0

    @property
    def slices_involved(self) -> tuple[int, ...]:
        return tuple(int(i) for i in np.flatnonzero(self.mask.any(axis=(1, 2))))

    @property
    def is_mc(self) -> bool:
        return self.entropy is not None


# Intensity sanity: a CT in HU has air (≈ −1000) and soft tissue (≈ 0–100) somewhere.
_CT_SAMPLE = 200_000


def check_ct_intensities(volume: Volume) -> dict[str, float]:
    """Refuse images that cannot be CT in HU (MR, raw stored values, masks); returns the stats."""
    flat = volume.hu.reshape(-1)
    sample = flat[:: max(1, flat.size // _CT_SAMPLE)]
    stats = {
        "air_fraction": float(np.mean(sample < -500)),
        "soft_tissue_fraction": float(np.mean((sample > -100) & (sample < 150))),
        "bone_fraction": float(np.mean(sample > 300)),
        "very_high_fraction": float(np.mean(sample > 4000)),
    }
    where = volume.source.path
    if not np.isfinite(sample).all():
        raise VolumeError(f"{where}: image holds NaN or infinite values, not CT")
    if stats["air_fraction"] < 0.005 or stats["soft_tissue_fraction"] < 0.005:
        raise VolumeError(
            f"{where}: intensities are not CT Hounsfield units (air below -500 HU: "
            f"{stats['air_fraction']:.1%}, soft tissue -100..150 HU: "
            f"{stats['soft_tissue_fraction']:.1%}); is this an MR image or unscaled data?"
        )
    if stats["very_high_fraction"] > 0.05:
        raise VolumeError(
            f"{where}: {stats['very_high_fraction']:.0%} of voxels exceed 4000 HU; "
            "not CT in Hounsfield units (missing rescale slope/intercept?)"
        )
    return stats


def segment_volume(
    volume: Volume,
    engine: Engine,
    *,
    batch_size: int | None = None,
    min_component_ml: float = DEFAULT_MIN_COMPONENT_ML,
    threshold: float | None = None,
    use_mc: bool = True,
    seed: int | None = 0,
    connectivity: int = 3,
    check_intensities: bool = True,
) -> Segmentation:
    """Mask, probability, uncertainty and volume (with MC interval) of one scan.

    ``use_mc=False`` drops the MC outputs of an MC engine (deterministic report);
    ``threshold`` overrides the model's; ``seed`` restarts the engine's MC noise for this scan.
    """
    if check_intensities:
        check_ct_intensities(volume)
    info = engine.info
    thr = info.threshold if threshold is None else float(threshold)
    mc = use_mc and info.kind == KIND_MC
    bs = batch_size or min(auto_batch_size(info), DEFAULT_SLAB)
    z, h, w = volume.shape
    transform = PlaneTransform(h, w, info.input_size)
    engine.reseed(seed)
    floor = min(SUPPORT_FLOOR, thr)
    prob = np.zeros(volume.shape, dtype=np.float32)  # calloc: untouched pages cost nothing
    entropy = np.zeros(volume.shape, dtype=np.float32) if mc else None
    sample_counts = np.zeros(max(info.mc_samples, 1), dtype=np.float64)
    mean_mask_pixels = 0
    t = {"preprocess": 0.0, "model": 0.0, "resample": 0.0, "postprocess": 0.0}

    for slab in iter_slabs(z, bs):
        t0 = time.perf_counter()
        batch = preprocess_slices(volume.hu[slab], info.input_size, info.windows)
        t1 = time.perf_counter()
        out = engine.run(batch)
        t2 = time.perf_counter()
        maps = [(out.prob, prob)]
        if entropy is not None and out.entropy is not None:
            maps.append((out.entropy, entropy))
            if out.sample_counts is not None:
                sample_counts += out.sample_counts.sum(axis=0, dtype=np.float64)
            mean_mask_pixels += int(np.count_nonzero(out.prob >= thr))
        for k, z_index in enumerate(range(slab.start, slab.stop)):
            for model_map, native in maps:  # slice by slice: cache-sized, 2x faster than a block
                window = transform.support(model_map[k], floor=floor)
                transform.inverse_into(model_map[k], native[z_index], window, zeroed=True)
        t["preprocess"] += t1 - t0
        t["model"] += t2 - t1
        t["resample"] += time.perf_counter() - t2
    t0 = time.perf_counter()
    voxel_ml = volume.voxel_volume_ml
    cleaned = remove_small_components(prob >= thr, voxel_ml, min_component_ml, connectivity)
    mask = cleaned.mask
    volume_ml = float(np.count_nonzero(mask)) * voxel_ml
    midline = head_midline_x(volume.hu)
    components = describe_components(
        mask, volume, prob, entropy, midline_x=midline, connectivity=connectivity, cleaned=cleaned
    )
    interval, samples = None, None
    if mc:
        sz, sy, sx = volume.spacing
        pixel_ml = (transform.side / info.input_size) ** 2 * sy * sx * sz / 1000.0
        raw = sample_counts * pixel_ml
        mean_ml = mean_mask_pixels * pixel_ml
        ratio = volume_ml / mean_ml if mean_ml > 0 else 1.0
        calibrated = raw * ratio
        lo, hi = np.percentile(calibrated, INTERVAL_QUANTILES)
        interval = (min(float(lo), volume_ml), max(float(hi), volume_ml))
        samples = tuple(float(v) for v in calibrated)
    t["postprocess"] = time.perf_counter() - t0
    log.info(
        "segmented %s: %.2f mL in %d components", volume.source.path, volume_ml, len(components)
    )
    return Segmentation(
        mask=mask,
        prob=prob,
        entropy=entropy if mc else None,
        volume_ml=volume_ml,
        interval_ml=interval,
        sample_volumes_ml=samples,
        components=components,
        removed_components=cleaned.removed_components,
        removed_ml=cleaned.removed_ml,
        threshold=thr,
        min_component_ml=float(min_component_ml),
        midline_x=midline,
        batch_size=bs,
        timings=t,
    )
