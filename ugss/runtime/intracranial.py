"""The intracranial space of one head CT: inside the inner table of the skull, above the floor.

Hemorrhage can only lie there, so ``segment_volume`` drops anything found outside it (face,
nasal cavity, skull base, scalp). Classical and numpy/scipy only; it works on blocks of
``f × f`` native pixels (``f`` a power of two, blocks of ~1.8 mm: 4 at 0.45 mm pixels):

1. **Bone** per block: the count of its pixels above ``BONE_HU``, from one threshold of the
   volume and a packed-integer sum (the bytes of ``f`` neighbouring bools are summed as one
   unsigned integer), a few ms for 34 × 512². A block with any bone pixel is bone.
2. **Ring**: per slice, bone closed with a square of ``CLOSE_MM`` (sutures, small foramina,
   partial volume of a thin squama leave gaps). Bone blocks within ``SKIN_MM`` of the air
   around the head are not bone unless they join deeper bone: a sharp kernel overshoots at
   the skin by several hundred HU, a thin "bone" ring that would enclose the face and neck
   (a skull without scalp, as in a phantom, stays).
3. **Enclosed**: per slice, the non-ring blocks not connected to the image border: the cranial
   cavity, but also orbits, sinuses, the nasal cavity, mastoid cells.
4. **Main component**: in 3D the cavity is one region (the posterior fossa joins the rest
   through the tentorial notch; a skull base slice shows its fossae apart, the slices above
   join them). The enclosed blocks are eroded by one block in-plane (cutting thin bony
   channels to the orbits and sinuses) and labelled per slice; of the 2D regions mostly of
   soft tissue (a strided HU sample in ``SOFT_HU``: orbits are fat, sinuses air) the largest
   seeds the cavity, and a region joins when ``LINK_FRACTION`` of it lies over or under the
   cavity on a neighbouring slice: the cavity narrows towards vertex and skull base, while a
   face and neck that some bony or skin ring encloses lies mostly beside the foramen magnum,
   not under it. The cavity is grown back by one block inside the enclosed blocks. Small bone
   islands inside it (calcifications) lie inside the region of step 5: no filling needed.
5. **Native resolution**: the cavity grown by one block (the *region*) covers the inner table
   to within a block. The native mask is the region's pixels below ``TABLE_HU`` (half-way
   to cortical bone), so the boundary is the inner table at full resolution; its volume is
   their count, known from a second block count in step 1 without another pass. The mask is
   built only when asked for (montage, benchmarks); filtering hemorrhage reads the region for
   the mask's voxels only.

The filter keeps hemorrhage anywhere in the region, bone pixels of its outer blocks included:
a safety margin of up to one block (~1.8 mm) beyond the inner table, so extra-axial blood
resampled into the partial-volume edge of the skull is kept.

Scans cut at the bottom or top leave the cavity open at the first or last slice; per-slice
enclosure does not need the skull to be closed in 3D, and the cut is reported
(``cut_inferior`` / ``cut_superior``) so an ICV below the adult range can be explained.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

from ugss.runtime.volume import Volume

BONE_HU = 300.0  # cortical and cancellous bone; brain, blood and calcified-free CSF lie below
# The inner table at native resolution: half-way between CSF (~0 HU) and cortical bone
# (~1400 HU), where a pixel straddling the boundary is half inside (BONE_HU would move the
# boundary inward by the partial-volume width: ICV −3 % on synthetic scans, −1 % here).
TABLE_HU = 700.0
BLOCK_MM = 2.0  # largest block side: blocks are the largest power of two of pixels within it
MAX_BLOCK = 8  # ... and at most 8 pixels (the packed sum uses one uint64 per block row)
CLOSE_MM = 4.0  # gaps in the bone ring narrower than about twice this are closed
CUT_FRACTION = 0.05  # cavity on the first / last slice ≥ this of the widest: the scan cuts it
ADULT_ICV_ML = (1200.0, 1800.0)  # adult intracranial volume
HEAD_ICV_ML = (250.0, 3000.0)  # an uncut scan outside this is not a head (newborn ≈ 350 mL)
HEAD_SLICE_MM2 = 1000.0  # a head's widest cavity slice is larger (adult ≈ 15000 mm²; a spinal
# canal, which a body CT's vertebrae enclose on every slice, is ≈ 300 mm²)
AIR_HU = -400.0  # below: air (around the head, in sinuses)
SKIN_MM = 4.0  # "bone" this near the air around the head is skin overshoot; the skull is deeper
SOFT_HU = (-50.0, 150.0)  # brain, CSF and blood; not fat (orbits) or air (sinuses)
SOFT_FRACTION = 0.6  # of a region's blocks soft: a candidate for the cavity
LINK_FRACTION = 0.5  # a 2D region joins when this share of it lies over / under the cavity
SEED_CANDIDATES = 4  # largest 2D regions tried as the cavity's seed (the largest grown wins)
MAX_SWEEPS = 4  # up-and-down passes of the joining (two suffice on every scan seen)

_PLANE = np.zeros((3, 3, 3), dtype=bool)
_PLANE[1] = ndimage.generate_binary_structure(2, 1)  # in-plane 4-connectivity, no z links
_CROSS_3D = ndimage.generate_binary_structure(3, 1)
_PACKED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@dataclass(frozen=True, eq=False)
class IntracranialSpace:
    """The intracranial space of one scan, on blocks of ``factor²`` native pixels.

    ``region``: ``(z, ny, nx)`` bool blocks holding the space (the cavity grown by one block);
    ``mask`` the native ``(z, y, x)`` space (the region's pixels below ``TABLE_HU``), built on
    first use.
    """

    region: np.ndarray
    factor: int
    shape: tuple[int, int, int]
    volume_ml: float
    bone_fraction: float  # of the native voxels above BONE_HU (0: no skull at all)
    cut_inferior: bool  # the first slice holds ≥ CUT_FRACTION of the widest slice's space
    cut_superior: bool  # ... the last slice does
    widest_mm2: float  # area of the space on its widest slice
    hu: np.ndarray | None = None  # the scan's HU (a reference, not a copy), for ``mask``

    @property
    def found(self) -> bool:
        return self.volume_ml > 0.0

    @property
    def truncated(self) -> bool:
        return self.cut_inferior or self.cut_superior

    @property
    def is_head(self) -> bool:
        """A skull encloses a space of head size, or a smaller one the scan cuts off; either
        way one slice of it is at least ``HEAD_SLICE_MM2``."""
        lo, hi = HEAD_ICV_ML
        if not self.found or self.volume_ml > hi or self.widest_mm2 < HEAD_SLICE_MM2:
            return False
        return self.volume_ml >= lo or self.truncated

    @property
    def adult_range(self) -> bool:
        lo, hi = ADULT_ICV_ML
        return lo <= self.volume_ml <= hi

    @cached_property
    def mask(self) -> np.ndarray:
        """Native ``(z, y, x)`` bool: the region's pixels below ``TABLE_HU`` (all of it
        without ``hu``)."""
        up = upsample_blocks(self.region, self.factor, self.shape)
        if self.hu is not None:
            up &= self.hu < np.float32(TABLE_HU)
        return up

    def plane(self, z: int) -> np.ndarray:
        """Native ``(y, x)`` bool of slice ``z`` of ``mask``, without building the whole mask."""
        if "mask" in self.__dict__:
            return self.mask[z]
        _, h, w = self.shape
        box = (slice(z, z + 1), slice(0, h), slice(0, w))
        up = region_window(self.region, self.factor, box)[0].copy()
        if self.hu is not None:
            up &= self.hu[z] < np.float32(TABLE_HU)
        return up

    def keep(self, mask: np.ndarray, box: tuple[slice, slice, slice] | None = None) -> None:
        """In place: clear ``mask`` outside the region (inside ``box``, if given: all of the
        mask's voxels must lie in it). Costs the box, not the scan."""
        if box is None:
            box = (slice(0, self.shape[0]), slice(0, self.shape[1]), slice(0, self.shape[2]))
        mask[box] &= region_window(self.region, self.factor, box)

    def on_model_grid(self, rows: np.ndarray, cols: np.ndarray, zs: slice) -> np.ndarray:
        """The region at model pixels: ``rows`` / ``cols`` are the native row / column of each
        model row / column (−1 outside the native plane). Returns ``(n, len(rows), len(cols))``."""
        inside_r, inside_c = rows >= 0, cols >= 0
        br = np.where(inside_r, rows, 0) // self.factor
        bc = np.where(inside_c, cols, 0) // self.factor
        out = self.region[zs][:, br][:, :, bc]
        out &= inside_r[None, :, None] & inside_c[None, None, :]
        return out


def block_factor(pixel_mm: float) -> int:
    """Largest power of two of pixels that fits in ``BLOCK_MM`` (1 for pixels ≥ 1 mm ... )."""
    f = 1
    while f * 2 <= MAX_BLOCK and f * 2 * pixel_mm <= BLOCK_MM:
        f *= 2
    return f


def block_counts(hit: np.ndarray, f: int) -> np.ndarray:
    """``(z, H, W)`` bool → ``(z, ceil(H/f), ceil(W/f))`` uint8 count of True per block.

    The ``f`` bools of a block row are read as one unsigned integer of ``f`` bytes; adding
    ``f`` rows adds the bytes without carries (each ≤ f), and multiplying by 0x0101… gathers
    the byte sum in the top byte: no per-pixel reduction.
    """
    z, h, w = hit.shape
    ny, nx = -(-h // f), -(-w // f)
    if (h, w) != (ny * f, nx * f):
        padded = np.zeros((z, ny * f, nx * f), dtype=bool)
        padded[:, :h, :w] = hit
        hit = padded
    if f == 1:
        return hit.view(np.uint8).copy()
    kind = _PACKED[f]
    packed = np.ascontiguousarray(hit).view(np.uint8).view(kind).reshape(z, ny, f, nx)
    rows = packed.sum(axis=2, dtype=kind)
    ones = kind(int.from_bytes(b"\x01" * f, "little"))
    with np.errstate(over="ignore"):
        total = (rows * ones) >> kind(8 * (f - 1))
    return total.astype(np.uint8)


def valid_counts(h: int, w: int, f: int) -> np.ndarray:
    """Native pixels per block of an ``h × w`` plane (edge blocks may be partial)."""
    rows = np.minimum(f, h - f * np.arange(-(-h // f)))
    cols = np.minimum(f, w - f * np.arange(-(-w // f)))
    return (rows[:, None] * cols[None, :]).astype(np.uint8)


def upsample_blocks(region: np.ndarray, f: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Blocks → native ``shape`` (each block repeated ``f × f``, cropped)."""
    _, h, w = shape
    if f == 1:
        return region[:, :h, :w].copy()
    up = np.repeat(np.repeat(region, f, axis=1), f, axis=2)
    return np.ascontiguousarray(up[:, :h, :w])


def region_window(region: np.ndarray, f: int, box: tuple[slice, slice, slice]) -> np.ndarray:
    """The native window ``box`` of the upsampled ``region``, computed for the window only."""
    zs, rows, cols = box
    r0, c0 = rows.start // f, cols.start // f
    r1, c1 = -(-rows.stop // f), -(-cols.stop // f)
    sub = region[zs, r0:r1, c0:c1]
    up = np.repeat(np.repeat(sub, f, axis=1), f, axis=2)
    dr, dc = rows.start - r0 * f, cols.start - c0 * f
    return up[:, dr : dr + rows.stop - rows.start, dc : dc + cols.stop - cols.start]


def _shift_or(out: np.ndarray, src: np.ndarray, axis: int, step: int) -> None:
    """``out |= src`` moved by ``step`` pixels along ``axis`` (both ways)."""
    lo = [slice(None)] * 3
    hi = [slice(None)] * 3
    lo[axis], hi[axis] = slice(step, None), slice(None, -step)
    out[tuple(lo)] |= src[tuple(hi)]
    out[tuple(hi)] |= src[tuple(lo)]


def dilate_square(mask: np.ndarray, radius: int) -> np.ndarray:
    """Per slice: dilation by a ``(2r+1)²`` square (separable: rows, then columns)."""
    out = mask
    for axis in (1, 2):
        src, out = out, out.copy()
        for step in range(1, radius + 1):
            _shift_or(out, src, axis, step)
    return out


def erode_square(mask: np.ndarray, radius: int) -> np.ndarray:
    """Per slice: erosion by a ``(2r+1)²`` square; outside the image counts as inside."""
    return ~dilate_square(~mask, radius)


def dilate_cross(mask: np.ndarray) -> np.ndarray:
    """Per slice: dilation by the 4-neighbour cross."""
    out = mask.copy()
    _shift_or(out, mask, 1, 1)
    _shift_or(out, mask, 2, 1)
    return out


def _label(mask: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, int]:
    """``ndimage.label`` into an ``intp`` array: lookups and ``bincount`` then read it as is
    (int32 labels are converted on every use)."""
    labels = np.zeros(mask.shape, dtype=np.intp)
    count = ndimage.label(mask, structure=structure, output=labels)
    return labels, int(count)


def _border_connected(mask: np.ndarray, structure: np.ndarray = _PLANE) -> np.ndarray:
    """The blocks of ``mask`` connected to the in-plane image border: per slice (``_PLANE``)
    or through the slices too (``_CROSS_3D``)."""
    labels, count = _label(mask, structure)
    if count == 0:
        return np.zeros_like(mask)
    border = np.zeros(count + 1, dtype=bool)
    for edge in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        border[edge] = True
    border[0] = False
    return border[labels]


def _enclosed(ring: np.ndarray) -> np.ndarray:
    """Per slice: blocks outside ``ring`` not connected in-plane to the image border."""
    return ~ring & ~_border_connected(~ring)


def _grow_through_slices(labels: np.ndarray, sizes: np.ndarray, seed: int) -> np.ndarray:
    """Labels (2D regions, numbered slice after slice) joined to ``seed``: a region joins when
    at least ``LINK_FRACTION`` of it lies over or under joined regions of the neighbouring
    slice. Passes up and down until one joins nothing."""
    joined = np.zeros(sizes.size, dtype=bool)
    joined[seed] = True
    n = labels.shape[0]
    # slice k holds labels first[k] + 1 … last[k] (ndimage.label numbers in raster order)
    last = np.maximum.accumulate(labels.reshape(n, -1).max(axis=1))
    first = np.concatenate([[0], last[:-1]])
    need = np.where(sizes > 0, LINK_FRACTION * sizes, np.inf)
    # upwards then downwards, alternating: each pass leaves its direction settled (a slice is
    # judged after its neighbour), so the first pass after the first one to join nothing ends
    passes = ((range(1, n), -1), (range(n - 2, -1, -1), 1))
    for sweep in range(2 * MAX_SWEEPS):
        ks, step = passes[sweep % 2]
        changed = False
        for k in ks:
            lo, hi = int(first[k]), int(last[k])
            if hi == lo:
                continue
            foot = joined[labels[k + step]]
            if not foot.any():
                continue
            hit = labels[k][foot] - lo
            over = np.bincount(hit[hit > 0], minlength=hi - lo + 1)[1:]
            new = (over >= need[lo + 1 : hi + 1]) & ~joined[lo + 1 : hi + 1]
            if new.any():
                joined[lo + 1 : hi + 1] |= new
                changed = True
        if sweep and not changed:
            break
    return joined


def _main_component(enclosed: np.ndarray, soft: np.ndarray, near_air: np.ndarray) -> np.ndarray:
    """The cavity's regions of ``enclosed``, after cutting channels one block wide in-plane.

    Per slice the enclosed blocks fall into 2D regions; those mostly of soft tissue (``soft``:
    brain, CSF, blood; orbits are fat, sinuses air) are joined, starting from the largest, to
    any region of a neighbouring slice that lies mostly over or under them. The cavity narrows
    towards the vertex and the skull base; a much larger enclosed region below the foramen
    magnum (a face and neck inside some bony or skin ring) lies mostly beside it, not under it.
    The seed comes no nearer than the scalp to the air around the head (``near_air``), as a
    region enclosed by a ring at the skin would.
    """
    core = ~dilate_cross(~enclosed)
    labels, count = _label(core, _PLANE)
    if count == 0:
        return np.zeros_like(enclosed)
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=count + 1)
    softness = np.bincount(flat[soft.ravel()], minlength=count + 1) / np.maximum(sizes, 1)
    sizes[0] = 0
    sizes[softness < SOFT_FRACTION] = 0
    if not sizes.any():
        return np.zeros_like(enclosed)
    shallow = np.bincount(labels[near_air], minlength=count + 1) > 0
    deep = np.where(shallow, 0, sizes)
    pool = deep if deep.any() else sizes
    best, best_size = np.zeros(count + 1, dtype=bool), -1
    for seed in _seeds(pool):
        if best[seed]:
            continue  # joining is monotone: grown from inside the best, never larger
        joined = _grow_through_slices(labels, sizes, int(seed))
        size = int(sizes[joined].sum())
        if size > best_size:
            best, best_size = joined, size
    return dilate_cross(best[labels]) & enclosed


def _seeds(sizes: np.ndarray) -> np.ndarray:
    """The ``SEED_CANDIDATES`` largest regions: each is grown and the largest 3D result kept.
    The largest 2D region alone can be a neck below the skull base (wider than any slice of
    the cavity on scans that start through the face); the cavity is the largest in 3D."""
    order = np.argsort(sizes)[::-1][:SEED_CANDIDATES]
    return order[sizes[order] > 0]


def _head_box(bone: np.ndarray, margin: int) -> tuple[slice, slice]:
    """In-plane box of every bone block, grown by ``margin`` blocks (the whole plane if none)."""
    rows = np.flatnonzero(bone.any(axis=(0, 2)))
    cols = np.flatnonzero(bone.any(axis=(0, 1)))
    if rows.size == 0:
        return slice(0, bone.shape[1]), slice(0, bone.shape[2])
    return (
        slice(max(0, int(rows[0]) - margin), int(rows[-1]) + margin + 1),
        slice(max(0, int(cols[0]) - margin), int(cols[-1]) + margin + 1),
    )


def _skull(bone: np.ndarray, near_air: np.ndarray) -> np.ndarray:
    """Bone without the pieces that lie wholly in the skin layer ``near_air`` (per slice): a
    thin ring along the skin (a sharp kernel's overshoot) goes, a skull without scalp (a
    phantom) or a facial bone reaching the skin stays with the deeper bone it belongs to."""
    labels, count = _label(bone, _PLANE)
    deep = np.zeros(count + 1, dtype=bool)
    deep[labels[bone & ~near_air]] = True
    deep[0] = False
    return deep[labels]


def cavity_blocks(
    bone: np.ndarray, soft: np.ndarray, air: np.ndarray, radius: int, air_radius: int
) -> np.ndarray:
    """Bone, soft-tissue and air blocks ``(z, ny, nx)`` → the cranial cavity's blocks (2–4).

    Bone within ``air_radius`` blocks of the air around the head and not near deeper bone is
    dropped first (``_skull``): a sharp kernel's overshoot at the skin (several hundred HU)
    would otherwise be a "bone" ring enclosing the face and neck. That air is found in 3D, so
    a pocket between the head and the table that one slice closes off still counts. Air blocks
    are never cavity: sinuses and the nasal cavity do not bridge.
    """
    rows, cols = _head_box(bone, radius + 1)
    air = air[:, rows, cols]
    near_air = dilate_square(_border_connected(air, _CROSS_3D), air_radius)
    ring = erode_square(dilate_square(_skull(bone[:, rows, cols], near_air), radius), radius)
    cavity = np.zeros_like(soft)
    cavity[:, rows, cols] = _main_component(_enclosed(ring) & ~air, soft[:, rows, cols], near_air)
    return cavity


def block_sample(hu: np.ndarray, f: int) -> np.ndarray:
    """The HU of each block's centre pixel ``(z, ceil(H/f), ceil(W/f))`` (one strided copy;
    edge blocks cut by the plane read as air)."""
    z, h, w = hu.shape
    out = np.full((z, -(-h // f), -(-w // f)), -1000.0, dtype=np.float32)
    sample = hu[:, f // 2 :: f, f // 2 :: f]
    out[:, : sample.shape[1], : sample.shape[2]] = sample
    return out


def estimate_intracranial(volume: Volume) -> IntracranialSpace:
    """The intracranial space of ``volume`` (see the module docstring for the steps)."""
    hu = volume.hu
    z, h, w = hu.shape
    _, sy, sx = volume.spacing
    f = block_factor(min(sy, sx))
    hit = hu > np.float32(BONE_HU)
    bone_count = block_counts(hit, f)
    np.greater_equal(hu, np.float32(TABLE_HU), out=hit)
    table_count = block_counts(hit, f)
    del hit
    bone_fraction = float(bone_count.sum(dtype=np.int64)) / hu.size
    block_mm = f * max(sy, sx)
    radius = max(1, round(CLOSE_MM / block_mm))
    air_radius = max(1, round(SKIN_MM / block_mm))
    sample = block_sample(hu, f)
    soft = (sample > np.float32(SOFT_HU[0])) & (sample < np.float32(SOFT_HU[1]))
    air = sample < np.float32(AIR_HU)
    cavity = cavity_blocks(bone_count > 0, soft, air, radius, air_radius)
    region = dilate_square(cavity, 1)
    inside = valid_counts(h, w, f)[None] - table_count
    voxels = int(inside.sum(where=region, dtype=np.int64))
    areas = np.count_nonzero(cavity, axis=(1, 2))
    widest = max(int(areas.max()), 1)
    return IntracranialSpace(
        region=region,
        factor=f,
        shape=(z, h, w),
        volume_ml=voxels * volume.voxel_volume_ml,
        bone_fraction=bone_fraction,
        cut_inferior=bool(areas[0] >= CUT_FRACTION * widest and areas[0]),
        cut_superior=bool(areas[-1] >= CUT_FRACTION * widest and areas[-1]),
        widest_mm2=float(areas.max()) * f * f * sy * sx if areas.size else 0.0,
        hu=hu,
    )


def model_pixel_rows(size: int, side: int, offset: int, extent: int) -> np.ndarray:
    """Native index under the centre of each of ``size`` model pixels along one axis of a plane
    padded by ``offset`` to ``side`` (``PlaneTransform``); −1 where it falls in the padding."""
    centre = (np.arange(size) + 0.5) * (side / size) - 0.5 - offset
    index = np.rint(centre).astype(np.intp)
    index[(index < 0) | (index >= extent)] = -1
    return index
