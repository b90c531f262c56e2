"""Post-processing on the native grid: speck removal by physical size, and component descriptions.

Components are 3D connected regions of the final mask (26-connectivity by default: a bleed
that touches itself across a corner is still one bleed). Sizes are compared in millilitres,
never voxels, so the same setting means the same thing for 0.5 mm and 5 mm slices.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage

from ugss.errors import ConfigError
from ugss.runtime.volume import Volume

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

# A component whose voxels lie at least this fraction on one side of the midline is on that side.
SIDE_FRACTION = 0.8
HEAD_HU = -300.0  # skin/air boundary: everything denser is head (or table)


@dataclass(frozen=True)
class Component:
    """One connected hemorrhage region of the final mask.

    Slice indices are canonical (0 = most inferior slice); ``side`` is the patient's side,
    ``left`` / ``right`` when at least 80 % of the voxels lie on it, else ``midline``.
    """

    index: int  # 1-based, largest first
    voxels: int
    volume_ml: float
    slice_first: int
    slice_last: int
    centroid_ras_mm: tuple[float, float, float]
    side: str
    left_fraction: float
    mean_prob: float
    mean_uncertainty_bits: float | None

    @property
    def slices(self) -> int:
        return self.slice_last - self.slice_first + 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Cleaned:
    """The mask after speck removal, its component labels (inside ``box``) and what went."""

    mask: np.ndarray
    labels: np.ndarray  # int32 labels 1..count of the kept components, shape of the box
    count: int
    box: tuple[slice, slice, slice]
    removed_components: int
    removed_ml: float


def connectivity_structure(connectivity: int) -> np.ndarray:
    """1 → faces (6), 2 → + edges (18), 3 → + corners (26)."""
    if connectivity not in (1, 2, 3):
        raise ConfigError(f"connectivity must be 1, 2 or 3, got {connectivity}")
    return ndimage.generate_binary_structure(3, connectivity)


def bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Smallest box holding every voxel of ``mask`` (None when empty): labels stay small."""
    boxes = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        boxes.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return boxes[0], boxes[1], boxes[2]


def label_components(mask: np.ndarray, connectivity: int = 3) -> tuple[np.ndarray, int, tuple]:
    """Labels inside the mask's bounding box: ``(labels, count, box)``; empty mask → count 0."""
    box = bounding_box(mask)
    if box is None:
        return np.zeros((0, 0, 0), dtype=np.int32), 0, (slice(0, 0),) * 3
    labels, count = ndimage.label(mask[box], structure=connectivity_structure(connectivity))
    return labels, int(count), box


def remove_small_components(
    mask: np.ndarray,
    voxel_ml: float,
    min_ml: float,
    connectivity: int = 3,
    *,
    min_slices: int = 1,
    in_place: bool = False,
) -> Cleaned:
    """Drop connected components smaller than ``min_ml`` millilitres or seen on fewer than
    ``min_slices`` consecutive axial slices; returns a new mask.

    The labels of the kept components come along, so describing them needs no second pass.
    ``in_place``: clean ``mask`` itself rather than a copy.
    """
    if min_ml < 0:
        raise ConfigError(f"minimum component size must be >= 0 mL, got {min_ml}")
    if min_slices < 1:
        raise ConfigError(f"minimum component extent must be >= 1 slice, got {min_slices}")
    mask = np.asarray(mask, dtype=bool)
    labels, count, box = label_components(mask, connectivity)
    out = mask if in_place else mask.copy()
    if count == 0:
        return Cleaned(out, labels, 0, box, 0, 0.0)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)  # a view of the labels: no copy
    keep = sizes * voxel_ml >= min_ml
    if min_slices > 1:
        extent = [0] + [b[0].stop - b[0].start for b in ndimage.find_objects(labels, count)]
        keep &= np.asarray(extent) >= min_slices
    keep[0] = False
    removed = count - int(keep.sum())
    removed_ml = float(sizes[1:][~keep[1:]].sum() * voxel_ml)
    if removed:
        lut = (np.cumsum(keep) * keep).astype(np.int32)  # kept ids renumbered 1..k, rest 0
        labels = lut[labels]
        out[box] = labels > 0
        count -= removed
        log.debug(
            "removed %d components below %.3f mL or on < %d slices", removed, min_ml, min_slices
        )
    return Cleaned(out, labels, count, box, removed, removed_ml)


def head_midline_x(hu: np.ndarray) -> float:
    """Column coordinate of the head's midline: the centroid of head voxels (sampled for speed)."""
    step = max(1, hu.shape[2] // 128)
    sample = hu[:, ::step, ::step] > HEAD_HU
    cols = sample.sum(axis=(0, 1))
    if cols.sum() == 0:
        return (hu.shape[2] - 1) / 2.0
    x = np.arange(cols.size) * step
    return float((cols * x).sum() / cols.sum())


def _mean(values: np.ndarray, inside: np.ndarray) -> float:
    return float(np.sum(values, where=inside, dtype=np.float64) / np.count_nonzero(inside))


def describe_components(
    mask: np.ndarray,
    volume: Volume,
    prob: np.ndarray,
    entropy: np.ndarray | None,
    *,
    midline_x: float,
    connectivity: int = 3,
    cleaned: Cleaned | None = None,
    map_unit: float = 1.0,
) -> tuple[Component, ...]:
    """Volume, slice range, side, centroid and mean uncertainty of each component, largest first.

    ``cleaned`` (from ``remove_small_components`` on this mask) reuses its labels. ``map_unit``:
    the value of one unit of ``prob`` / ``entropy`` (1/255 for uint8 maps).
    """
    if cleaned is not None:
        labels, count, box = cleaned.labels, cleaned.count, cleaned.box
    else:
        labels, count, box = label_components(mask, connectivity)
    if count == 0:
        return ()
    comps = []
    # each component inside its own bounding box: a few passes over a small crop
    for i, crop in enumerate(ndimage.find_objects(labels, max_label=count), start=1):
        where = tuple(
            slice(b.start + c.start, b.start + c.stop) for b, c in zip(box, crop, strict=True)
        )
        inside = labels[crop] == i
        per_zy = inside.sum(axis=2, dtype=np.int64)
        per_z, per_y = per_zy.sum(axis=1), per_zy.sum(axis=0)
        per_x = inside.sum(axis=(0, 1), dtype=np.int64)
        voxels = int(per_z.sum())
        z, y, x = (
            float(np.arange(w.start, w.stop) @ counts) / voxels
            for w, counts in zip(where, (per_z, per_y, per_x), strict=True)
        )
        ras = volume.affine @ np.array([x, y, z, 1.0])
        frac = float(per_x[np.arange(where[2].start, where[2].stop) > midline_x].sum() / voxels)
        side = (
            "left" if frac >= SIDE_FRACTION else "right" if frac <= 1 - SIDE_FRACTION else "midline"
        )
        mean_prob = _mean(prob[where], inside) * map_unit
        mean_unc = None if entropy is None else _mean(entropy[where], inside) * map_unit
        comps.append(
            Component(
                index=0,
                voxels=voxels,
                volume_ml=voxels * volume.voxel_volume_ml,
                slice_first=where[0].start,  # a connected region spans consecutive slices
                slice_last=where[0].stop - 1,
                centroid_ras_mm=(
                    round(float(ras[0]), 2),
                    round(float(ras[1]), 2),
                    round(float(ras[2]), 2),
                ),
                side=side,
                left_fraction=round(frac, 4),
                mean_prob=mean_prob,
                mean_uncertainty_bits=mean_unc,
            )
        )
    comps.sort(key=lambda c: -c.voxels)
    return tuple(replace(c, index=n) for n, c in enumerate(comps, start=1))
