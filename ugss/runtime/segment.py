"""Segment one CT volume with an engine: slabs → shared preprocessing → model → native grid.

The volume is processed in slabs of ``batch_size`` slices, so memory is bounded by the
slab, not the scan. Outputs go back onto the native grid with ``PlaneTransform.inverse_window``
(the shared preprocessing, never a copy of it) one slice at a time: the mask is
``prob ≥ threshold`` on that grid, computed from the float values, and the maps are kept as
uint8 steps of 1/255 (``ugss.runtime.unit_map``), the precision of the written files. Each map
of each slice is resampled only around the model pixels outside its most common step (and, for
the probability, those at or above the threshold); the rest is filled with that step
(``_resample_steps``). A scan without findings costs almost nothing here. Findings outside the
intracranial space (``ugss.runtime.intracranial``, estimated once per scan before the model:
face, sinuses, skull base, scalp) are dropped, then specks below ``min_component_ml`` and
findings on fewer than ``min_component_slices`` adjacent slices are removed. A scan in which
no head is found (no skull enclosing a space of head size, and none that the scan cuts off) is
not assessed: the model is not run and nothing is claimed. The volume is the paper's eq. 12 on
the final mask: voxel count × voxel volume, exactly what the written mask gives.

MC volume interval. The MC graph returns, per slice and sample, the number of foreground
pixels at model resolution. Summed over slices and scaled by the physical size of a model pixel,
they give T per-sample volumes before speck removal. These are calibrated by the ratio
``final volume / volume of the mean-probability mask at model resolution`` (which carries the
resampling and speck removal over to the samples). The interval is
``ugss.runtime.interval.volume_interval`` of these samples: their 5th–95th percentile widened to
include the point estimate, scaled by the split-conformal calibration stored in the model's
metadata when there is one (and said to be uncalibrated when there is none).
Both counts cover the intracranial space only: the mean mask's pixels are counted inside it (the
space's blocks read at each model pixel's centre), and since the graph's per-sample counts are
whole slices, each slice's mean-mask pixels outside the space are subtracted from every sample
of that slice (clipped at 0): a sample is taken to find outside what the mean mask finds there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ugss.errors import VolumeError
from ugss.runtime.engines import Engine, auto_batch_size
from ugss.runtime.interval import IntervalCalibration, volume_interval
from ugss.runtime.intracranial import (
    BONE_HU,
    IntracranialSpace,
    estimate_intracranial,
    model_pixel_rows,
)
from ugss.runtime.model_info import KIND_MC
from ugss.runtime.postprocess import (
    Component,
    bounding_box,
    describe_components,
    head_midline_x,
    remove_small_components,
)
from ugss.runtime.preprocess import PlaneTransform, iter_slabs, preprocess_slices
from ugss.runtime.unit_map import MAP_STEPS, MAP_UNIT, dequantized, quantize_unit
from ugss.runtime.volume import Volume

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

DEFAULT_MIN_COMPONENT_ML = 0.05
# A finding must show on two adjacent axial slices. On tuning scans (synthetic
# anatomy, 5 mm slices, seeds apart from training, calibration and the benchmark) 53 of the
# model's 57 one-slice components were false (dense rims, tentorium, skull-cap partial volume:
# 0.05-1.7 mL each); the 4 true ones were 0.9 mL of small subarachnoid fragments.
DEFAULT_MIN_COMPONENT_SLICES = 2
# Default slab: model time per slice measured flat from 3 to 34 slices on CPU (within noise),
# while memory grows with the slab (300 x 512² MC: 1.79 GiB peak at 19 slices).
DEFAULT_SLAB = 8


@dataclass(frozen=True, eq=False)
class Segmentation:
    """A segmented scan on the native canonical grid of its ``Volume``."""

    mask: np.ndarray  # (z, y, x) bool, after speck removal
    prob_q: np.ndarray  # (z, y, x) uint8: probability in steps of 1/255, as the map file holds
    entropy_q: np.ndarray | None  # (z, y, x) uint8: MC entropy in steps of 1/255 bit; MC only
    volume_ml: float
    interval_ml: tuple[float, float] | None
    interval_method: str | None  # one sentence: what the interval is (calibrated or not)
    sample_volumes_ml: tuple[float, ...] | None
    components: tuple[Component, ...]
    removed_components: int
    removed_ml: float
    threshold: float
    min_component_ml: float
    midline_x: float
    batch_size: int
    intensity: dict[str, float]  # ct_intensity_stats of the scan, for the report's QC flags
    timings: dict[str, float] = field(default_factory=dict)
    intracranial: IntracranialSpace | None = None  # where hemorrhage was looked for
    outside_ml: float = 0.0  # model findings dropped outside the intracranial space
    min_component_slices: int = 1

    @classmethod
    def empty(
        cls,
        volume: Volume,
        *,
        threshold: float,
        min_component_ml: float,
        batch_size: int,
        min_component_slices: int = DEFAULT_MIN_COMPONENT_SLICES,
        mc: bool = False,
        intensity: dict[str, float] | None = None,
        intracranial: IntracranialSpace | None = None,
        timings: dict[str, float] | None = None,
    ) -> Segmentation:
        """Nothing found, nothing claimed: empty mask, zero maps, no interval (a scan that is
        not a head CT, where the model is not run)."""
        return cls(
            mask=np.zeros(volume.shape, dtype=bool),
            prob_q=np.zeros(volume.shape, dtype=np.uint8),
            entropy_q=np.zeros(volume.shape, dtype=np.uint8) if mc else None,
            volume_ml=0.0, interval_ml=None, interval_method=None, sample_volumes_ml=None,
            components=(), removed_components=0, removed_ml=0.0, threshold=float(threshold),
            min_component_ml=float(min_component_ml), midline_x=head_midline_x(volume.hu),
            batch_size=int(batch_size),
            intensity=ct_intensity_stats(volume.hu) if intensity is None else intensity,
            timings=dict(timings or {}), intracranial=intracranial,
            min_component_slices=int(min_component_slices),
        )  # fmt: skip

    @property
    def intracranial_ml(self) -> float | None:
        return None if self.intracranial is None else self.intracranial.volume_ml

    @property
    def intracranial_mask(self) -> np.ndarray | None:
        """Native ``(z, y, x)`` bool of the intracranial space (built on first use)."""
        return None if self.intracranial is None else self.intracranial.mask

    @property
    def assessed(self) -> bool:
        """False when the scan is not a head CT: then no hemorrhage is claimed."""
        return self.intracranial is None or self.intracranial.is_head

    @property
    def hemorrhage_present(self) -> bool:
        return self.volume_ml > 0.0

    @property
    def slices_involved(self) -> tuple[int, ...]:
        return tuple(int(i) for i in np.flatnonzero(self.mask.any(axis=(1, 2))))

    @property
    def is_mc(self) -> bool:
        return self.entropy_q is not None

    @property
    def prob(self) -> np.ndarray:
        """Probability as float32 (a new array; the values of ``prob_q``)."""
        return dequantized(self.prob_q)

    @property
    def entropy(self) -> np.ndarray | None:
        """MC entropy in bits as float32 (a new array), None without MC."""
        return None if self.entropy_q is None else dequantized(self.entropy_q)


# Intensity sanity: a CT in HU has air (≈ −1000) and soft tissue (≈ 0–100) somewhere.
_CT_SAMPLE = 200_000


def ct_intensity_stats(hu: np.ndarray) -> dict[str, float]:
    """Fractions of air, soft tissue, bone and implausibly dense voxels, from ~200 000 evenly
    spread voxels copied once (each test on a strided view would pull the volume's cache lines
    through memory again); ``finite`` is 1.0 when no sampled voxel is NaN or infinite."""
    flat = hu.reshape(-1)
    sample = np.ascontiguousarray(flat[:: max(1, flat.size // _CT_SAMPLE)])
    return {
        "air_fraction": float(np.mean(sample < -500)),
        "soft_tissue_fraction": float(np.mean((sample > -100) & (sample < 150))),
        "bone_fraction": float(np.mean(sample > BONE_HU)),
        "very_high_fraction": float(np.mean(sample > 4000)),
        "finite": float(np.isfinite(sample).all()),
    }


def check_ct_intensities(volume: Volume, stats: dict[str, float] | None = None) -> dict[str, float]:
    """Refuse images that cannot be CT in HU (MR, raw stored values, masks); returns the stats
    (``ct_intensity_stats``, computed here unless given)."""
    stats = ct_intensity_stats(volume.hu) if stats is None else stats
    where = volume.source.path
    if not stats["finite"]:
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
    min_component_slices: int = DEFAULT_MIN_COMPONENT_SLICES,
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
    intensity = ct_intensity_stats(volume.hu)
    if check_intensities:
        check_ct_intensities(volume, intensity)
    info = engine.info
    thr = info.threshold if threshold is None else float(threshold)
    mc = use_mc and info.kind == KIND_MC
    bs = batch_size or min(auto_batch_size(info), DEFAULT_SLAB)
    t0 = time.perf_counter()
    space = estimate_intracranial(volume)
    t_space = time.perf_counter() - t0
    if not space.is_head:
        log.info("%s: not a head CT, not assessed", volume.source.path)
        return Segmentation.empty(
            volume, threshold=thr, min_component_ml=min_component_ml, batch_size=bs, mc=mc,
            min_component_slices=min_component_slices,
            intensity=intensity, intracranial=space, timings={"intracranial": t_space},
        )  # fmt: skip
    engine.reseed(seed)
    maps = _model_pass(volume, engine, space, thr, mc, bs)
    maps.timings["intracranial"] = t_space
    seg = _finish(
        volume, maps, space, threshold=thr, batch_size=bs, intensity=intensity,
        min_component_ml=min_component_ml, min_component_slices=min_component_slices,
        connectivity=connectivity,
        calibration=info.interval_calibration,
    )  # fmt: skip
    log.info(
        "segmented %s: %.2f mL in %d components",
        volume.source.path, seg.volume_ml, len(seg.components),
    )  # fmt: skip
    return seg


@dataclass(eq=False)
class _Maps:
    """What the model pass leaves on the native grid, before post-processing."""

    raw_mask: np.ndarray  # prob >= threshold, every finding
    prob_q: np.ndarray
    entropy_q: np.ndarray | None
    sample_counts: np.ndarray  # per MC sample: foreground model pixels inside the space
    mean_mask_pixels: int  # the mean-probability mask's model pixels inside the space
    pixel_ml: float  # physical volume of one model pixel
    timings: dict[str, float]


def _model_pass(
    volume: Volume, engine: Engine, space: IntracranialSpace, thr: float, mc: bool, bs: int
) -> _Maps:
    """Run the model slab by slab and resample its outputs onto the native grid."""
    info = engine.info
    z, h, w = volume.shape
    transform = PlaneTransform(h, w, info.input_size)
    grid = _model_grid(transform)
    # calloc'd zeros: pages outside every window are never touched
    raw_mask = np.zeros(volume.shape, dtype=bool)
    prob_q = np.zeros(volume.shape, dtype=np.uint8)
    entropy_q = np.zeros(volume.shape, dtype=np.uint8) if mc else None
    scratch = np.empty(h * w, dtype=np.float32)  # one slice's window at a time: stays in cache
    sample_counts = np.zeros(max(info.mc_samples, 1), dtype=np.float64)
    mean_mask_pixels = 0
    t = dict.fromkeys(("preprocess", "model", "resample", "postprocess"), 0.0)
    for slab in iter_slabs(z, bs):
        t0 = time.perf_counter()
        batch = preprocess_slices(volume.hu[slab], info.input_size, info.windows)
        t1 = time.perf_counter()
        out = engine.run(batch)
        t2 = time.perf_counter()
        if entropy_q is not None and out.entropy is not None:
            inside, counts = _inside_counts(space, grid, slab, out, thr)
            mean_mask_pixels += inside
            if counts is not None:
                sample_counts += counts
        for k, z_index in enumerate(range(slab.start, slab.stop)):
            window, hit = _resample_steps(
                transform, out.prob[k], prob_q[z_index], scratch, threshold=thr
            )
            if window is not None:
                raw_mask[z_index][window] = hit
            if entropy_q is not None and out.entropy is not None:
                _resample_steps(transform, out.entropy[k], entropy_q[z_index], scratch)
        t["preprocess"] += t1 - t0
        t["model"] += t2 - t1
        t["resample"] += time.perf_counter() - t2
    sz, sy, sx = volume.spacing
    pixel_ml = (transform.side / info.input_size) ** 2 * sy * sx * sz / 1000.0
    return _Maps(raw_mask, prob_q, entropy_q, sample_counts, mean_mask_pixels, pixel_ml, t)


def _finish(
    volume: Volume,
    maps: _Maps,
    space: IntracranialSpace,
    *,
    threshold: float,
    batch_size: int,
    intensity: dict[str, float],
    min_component_ml: float,
    min_component_slices: int,
    connectivity: int,
    calibration: IntervalCalibration | None,
) -> Segmentation:
    """Outside-space findings dropped, specks removed, components described, MC interval."""
    t0 = time.perf_counter()
    voxel_ml = volume.voxel_volume_ml
    outside_ml = _drop_outside(maps.raw_mask, space) * voxel_ml
    cleaned = remove_small_components(
        maps.raw_mask, voxel_ml, min_component_ml, connectivity,
        min_slices=min_component_slices, in_place=True,
    )  # fmt: skip
    mask = cleaned.mask
    volume_ml = float(np.count_nonzero(mask[cleaned.box])) * voxel_ml
    midline = head_midline_x(volume.hu)
    components = describe_components(
        mask, volume, maps.prob_q, maps.entropy_q, midline_x=midline,
        connectivity=connectivity, cleaned=cleaned, map_unit=MAP_UNIT,
    )  # fmt: skip
    interval, samples = None, None
    if maps.entropy_q is not None:
        mean_ml = maps.mean_mask_pixels * maps.pixel_ml
        ratio = volume_ml / mean_ml if mean_ml > 0 else 1.0
        samples = tuple(float(v) for v in maps.sample_counts * maps.pixel_ml * ratio)
        interval = volume_interval(samples, volume_ml, calibration)
    maps.timings["postprocess"] = time.perf_counter() - t0
    return Segmentation(
        mask=mask,
        prob_q=maps.prob_q,
        entropy_q=maps.entropy_q,
        volume_ml=volume_ml,
        interval_ml=None if interval is None else (interval.low_ml, interval.high_ml),
        interval_method=None if interval is None else interval.method,
        sample_volumes_ml=samples,
        components=components,
        removed_components=cleaned.removed_components,
        removed_ml=cleaned.removed_ml,
        threshold=threshold,
        min_component_ml=float(min_component_ml),
        midline_x=midline,
        batch_size=batch_size,
        intensity=intensity,
        timings=maps.timings,
        intracranial=space,
        outside_ml=outside_ml,
        min_component_slices=int(min_component_slices),
    )


def _model_grid(transform: PlaneTransform) -> tuple[np.ndarray, np.ndarray]:
    """Native row and column under each model pixel's centre (−1 in the padding)."""
    top, left = transform.pad
    size, side = transform.size, transform.side
    return (
        model_pixel_rows(size, side, top, transform.height),
        model_pixel_rows(size, side, left, transform.width),
    )


def _inside_counts(
    space: IntracranialSpace, grid: tuple[np.ndarray, np.ndarray], slab: slice, out, thr: float
) -> tuple[int, np.ndarray | None]:
    """MC counts of one slab restricted to the intracranial space, at model resolution.

    Returns the mean-probability mask's pixels inside the space and the per-sample foreground
    counts with the mean mask's pixels outside it subtracted per slice (clipped at 0): the graph
    counts whole slices, so a sample's outside pixels are taken to be the mean mask's there.
    """
    hits = out.prob >= thr
    n_hits = np.count_nonzero(hits, axis=(1, 2))
    if not n_hits.any():
        outside = n_hits
        inside = 0
    else:
        inside_per = np.count_nonzero(hits & space.on_model_grid(*grid, slab), axis=(1, 2))
        outside, inside = n_hits - inside_per, int(inside_per.sum())
    if out.sample_counts is None:
        return inside, None
    counts = np.maximum(out.sample_counts - outside[:, None], 0)
    return inside, counts.sum(axis=0, dtype=np.float64)


def _drop_outside(raw_mask: np.ndarray, space: IntracranialSpace) -> int:
    """In place: clear the mask outside the intracranial space; returns the voxels cleared."""
    box = bounding_box(raw_mask)
    if box is None:
        return 0
    before = int(np.count_nonzero(raw_mask[box]))
    space.keep(raw_mask, box)
    return before - int(np.count_nonzero(raw_mask[box]))


def _window_values(
    transform: PlaneTransform, model_plane: np.ndarray, window: tuple[slice, slice], scratch
) -> np.ndarray:
    """The native values of one model plane inside ``window``, in (a view of) ``scratch``."""
    rows, cols = window
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    view = scratch[: shape[0] * shape[1]].reshape(shape)
    return transform.inverse_window(model_plane, window, out=view)


def _resample_steps(
    transform: PlaneTransform,
    model_plane: np.ndarray,
    native: np.ndarray,
    scratch: np.ndarray,
    threshold: float | None = None,
) -> tuple[tuple[slice, slice] | None, np.ndarray | None]:
    """``native`` (uint8 steps, zeros) ← the resampled plane, exact at the stored precision.

    Most of a map sits in one step (probability: 0; uncertainty in air: ~0.004 bit, step 1). A
    native pixel whose taps all read model pixels in that step lies in it too (a convex
    combination stays in the interval), so only the window around the other steps is resampled
    and the rest is filled. With ``threshold`` the window also covers every model pixel at or
    above it, so nothing outside reaches it. Returns the window and, with ``threshold``, its
    pixels at or above it (from the float values).
    """
    steps = quantize_unit(
        np.array(model_plane, dtype=np.float32), np.empty(model_plane.shape, np.uint8)
    )
    background = int(np.bincount(steps.ravel(), minlength=MAP_STEPS + 1).argmax())
    active = steps != background
    if threshold is not None:
        active |= model_plane >= threshold
    if background:
        native.fill(background)
    window = transform.window_of(active)
    if window is None:
        return None, None
    values = _window_values(transform, model_plane, window, scratch)
    hit = values >= threshold if threshold is not None else None
    quantize_unit(values, native[window])
    return window, hit
