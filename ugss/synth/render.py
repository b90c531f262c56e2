"""Paint a head and its bleeds into HU voxels, slab by slab, with partial volume and noise.

Each tissue boundary is an implicit surface in the head frame (radial depth below the scalp,
depth below the inner table, distance to a sulcus …). A voxel takes the area fraction of a pixel
on each side of a boundary (``ramp``), so edges carry partial volume at any pixel size, and the
layers are composited outside-in like a painter. The skin, skull and inner-table boundaries
average over the slice as well: their ramp is as wide as the slice's footprint along the surface
normal, so the skull cap on the top slices of a 5 mm scan is a broad rim of intermediate density,
as on real scans. Order: head and skull base/face, bleeds (labelled) and non-acute collections
(not labelled), the dura, venous sinuses and calcifications on top (never labelled), then the
scanner's artefacts, kernel, head holder, table and noise. Work is limited to the head's bounding
box per slab of slices; only the support and the noise touch the air around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ugss.synth import artefacts as art_mod
from ugss.synth.anatomy import HeadAnatomy, deep_grey_sd, sulcal_taper, ventricle_sd
from ugss.synth.artefacts import Artefacts
from ugss.synth.dura import posterior_sinuses, sagittal_sinus, tentorium
from ugss.synth.face import face_parts, frontal_sinus
from ugss.synth.fields import DirectionalField, LatticeField, pool_planes, upsample_linear
from ugss.synth.geometry import HeadPose, ScanGrid, box_corners, head_coords, sphere_directions
from ugss.synth.hemorrhage import Bleed, ExtraAxial, Intraparenchymal, type_code
from ugss.synth.partial import ramp, sheet
from ugss.synth.skullbase import base_parts, ellipsoid_sd, petrous_layers, plate_layers

AIR_HU = -1000.0
MIN_HU, MAX_HU = -1024.0, 3071.0
SLAB = 8  # slices per slab: bounded memory (~10 arrays of SLAB × box)
#: codes of the ``structures`` map: the mimics of blood a voxel mostly belongs to (0: none)
STRUCTURES: tuple[str, ...] = (
    "falx",
    "tentorium",
    "venous_sinus",
    "calcification",
    "petrous_bone",
    "chronic_collection",
)


def structure_code(name: str) -> int:
    return STRUCTURES.index(name) + 1


@dataclass(frozen=True, eq=False)
class Geo:
    """Head-frame geometry over one voxel box (all float32 mm, shape (nz, ny, nx))."""

    u: np.ndarray
    v: np.ndarray
    w: np.ndarray
    rq: np.ndarray  # distance from the head centre
    d_out: np.ndarray  # radial depth below the outer scalp surface
    d_in: np.ndarray  # depth inside the cranial cavity (below the inner table, above the floor)
    scalp: np.ndarray  # scalp thickness here
    skull: np.ndarray  # skull thickness here
    ds: np.ndarray  # distance to the nearest sulcal wall's mid-surface
    y_ras: np.ndarray  # (1, ny, 1) RAS y of each row
    idx: tuple[np.ndarray, np.ndarray, np.ndarray]  # voxel indices (k, j, i) of the box
    lump_field: LatticeField
    pix: float
    pv: np.ndarray  # slice-aware partial-volume width (mm) of the skin/skull/inner-table ramps
    d_floor: np.ndarray | None = None  # height above the cranial floor, where the box reaches it

    _ARRAYS = ("u", "v", "w", "rq", "d_out", "d_in", "scalp", "skull", "ds", "pv")

    def sub(self, rel: tuple[slice, slice, slice]) -> Geo:
        arrays = {name: getattr(self, name)[rel] for name in self._ARRAYS}
        idx = (self.idx[0][rel[0]], self.idx[1][rel[1]], self.idx[2][rel[2]])
        floor = None if self.d_floor is None else self.d_floor[rel]
        return Geo(
            **arrays,
            y_ras=self.y_ras[:, rel[1]],
            idx=idx,
            lump_field=self.lump_field,
            pix=self.pix,
            d_floor=floor,
        )

    @cached_property
    def lump(self) -> np.ndarray:
        """Unit smooth random field (σ 3 mm) for lesion irregularity; made only where needed."""
        coarse = max(1, int(1.2 / self.pix))
        return self.lump_field.sample(*self.idx, coarse=coarse)[0]


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything that decides one scan's voxels."""

    anat: HeadAnatomy
    pose: HeadPose
    grid: ScanGrid
    bleeds: tuple[Bleed, ...]
    shape_field: LatticeField  # channels: shape deformation, skull thickness, scalp thickness
    sulci: DirectionalField
    lump_field: LatticeField
    art: Artefacts
    collections: tuple[ExtraAxial, ...] = ()  # chronic / subacute extra-axial: never labelled


def outer_points(anat: HeadAnatomy, pose: HeadPose) -> np.ndarray:
    """RAS points on a surface enclosing the whole head (largest allowed deformation, nose)."""
    dirs = sphere_directions()
    head = dirs * (anat.outer_radius(dirs) * (1 + anat.max_deform))[:, None]
    f = anat.face
    nose = np.array(
        [
            [s * f.nose_p * f.nose_k, -f.b - f.nose_p - 2.0, w]
            for s in (-1.0, 0.0, 1.0)
            for w in (f.nasion_w, f.tip_w, f.base_w)
        ]
        + [[s * 26.0, -f.b - f.lip_p - 2.0, f.base_w - 14.0] for s in (-1.0, 0.0, 1.0)]
    )
    return pose.to_ras(np.concatenate([head, nose]))


def _intersect(a: tuple[slice, ...], b: tuple[slice, ...] | None):
    """Intersection of two boxes, and the result relative to ``a``; None when empty."""
    if b is None:
        return None
    lo = [max(x.start, y.start) for x, y in zip(a, b, strict=True)]
    hi = [min(x.stop, y.stop) for x, y in zip(a, b, strict=True)]
    if any(h <= lo_ for lo_, h in zip(lo, hi, strict=True)):
        return None
    rel = tuple(slice(lo_ - x.start, h - x.start) for lo_, h, x in zip(lo, hi, a, strict=True))
    return rel


def _sulcal_distance(scene: Scene, idx, rq: np.ndarray) -> np.ndarray:
    """Distance (mm) to the nearest sulcal mid-surface, from the directional field.

    The field is evaluated on a grid about 1.3 mm coarse in-plane and interpolated linearly: it
    varies on a 3 mm scale at the cortex, and the cosines are the costliest step otherwise.
    """
    grid = scene.grid
    f = max(1, round(1.3 / grid.pixel_mm))
    kc = idx[0]
    jc = idx[1][0] + f * np.arange(-(-(len(idx[1]) - 1) // f) + 1)
    ic = idx[2][0] + f * np.arange(-(-(len(idx[2]) - 1) // f) + 1)
    u, v, w = head_coords(scene.pose, grid, kc, jc, ic)
    inv = 1.0 / np.maximum(np.sqrt(u * u + v * v + w * w), np.float32(1e-3))
    g = np.abs(scene.sulci(u * inv, v * inv, w * inv))
    g = upsample_linear(upsample_linear(g, f, 1, len(idx[1])), f, 2, len(idx[2]))
    return g * rq * np.float32(1.0 / scene.sulci.mean_gradient)


def _join_nose(scene: Scene, box, u, v, w, d_out: np.ndarray) -> None:
    """In place: the nose's soft tissue joins the skin depth where the box reaches it."""
    f = scene.anat.face
    lo = np.array([-30.0, -f.b - f.nose_p - 3.0, f.base_w - 27.0])
    hi = np.array([30.0, -f.b * 0.8, f.nasion_w + 2.0])
    rel = _sub_box(scene, box, box_corners((lo + hi) / 2, (hi - lo) / 2))
    if rel is None:
        return
    np.maximum(d_out[rel], f.nose_depth(u[rel], v[rel], w[rel]), out=d_out[rel])


def _profile_rho(anat: HeadAnatomy, ua: np.ndarray, va: np.ndarray, w: np.ndarray):
    """Homogeneous radius of the outer profile: an ellipsoid above the centre, an L4 rounded
    cylinder below it; and w scaled by c above, by c_low below."""
    h2 = ua * ua + va * va
    w_min, w_max = float(w.min()), float(w.max())
    if w_min >= 0:
        wa = w * np.float32(1 / anat.c)
        return np.sqrt(h2 + wa * wa), wa
    wl = w * np.float32(1 / anat.c_low)
    w2 = wl * wl
    low = np.sqrt(np.sqrt(h2 * h2 + w2 * w2))
    if w_max < 0:
        return low, wl
    wa = w * np.float32(1 / anat.c)
    below = w < 0
    return np.where(below, low, np.sqrt(h2 + wa * wa)), np.where(below, wl, wa)


def _floor_depth(anat: HeadAnatomy, u, v, w, pix: float) -> np.ndarray:
    """Height above the cranial floor, evaluated only where it can matter.

    Every ramp and band that reads the depth in the cavity saturates within ~35 mm of the
    surface (plus half a pixel), so voxels higher than that above the floor's top get a large
    stand-in: the same voxels, for a fraction of the work on slabs that only graze the base.
    """
    near = w < np.float32(anat.base.top + 40.0 + 2.0 * pix)
    out = np.full(w.shape, 1.0e4, dtype=np.float32)
    ks, js, is_ = (np.flatnonzero(near.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    if len(ks) == 0:
        return out
    sub = (slice(ks[0], ks[-1] + 1), slice(js[0], js[-1] + 1), slice(is_[0], is_[-1] + 1))
    f = max(1, round(1.0 / pix))  # the floor is smooth on a 1 mm scale: evaluate it coarser
    uc, vc = _coarse_linear(u[sub], f), _coarse_linear(v[sub], f)
    floor = anat.base.floor(uc, vc)
    ny, nx = w[sub].shape[1:]
    out[sub] = w[sub] - upsample_linear(upsample_linear(floor, f, 1, ny), f, 2, nx)
    return out


def _coarse_linear(a: np.ndarray, f: int) -> np.ndarray:
    """Every ``f``-th row and column of an array that is linear in-plane (head coordinates),
    extended by linear extrapolation so the last coarse sample reaches past the last voxel."""
    if f == 1:
        return a
    for axis in (1, 2):
        n = a.shape[axis]
        if n == 1:
            continue
        m = -(-(n - 1) // f) + 1
        idx = np.arange(m) * f
        lo = np.take(a, np.minimum(idx, n - 1), axis=axis)
        step = np.take(a, [1], axis=axis) - np.take(a, [0], axis=axis)
        over = (idx - np.minimum(idx, n - 1)).astype(np.float32)
        shape = [1, 1, 1]
        shape[axis] = m
        a = lo + step * over.reshape(shape)
    return a


def geometry(scene: Scene, box: tuple[slice, slice, slice]) -> Geo:
    anat, grid = scene.anat, scene.grid
    idx = tuple(np.arange(s.start, s.stop) for s in box)
    u, v, w = head_coords(scene.pose, grid, *idx)
    ua, va = u * np.float32(1 / anat.a), v * np.float32(1 / anat.b)
    rho, wa = _profile_rho(anat, ua, va, w)
    inv_rho = 1.0 / np.maximum(rho, np.float32(1e-3))
    del rho
    rq = np.sqrt(u * u + v * v + w * w)
    un2 = (ua * inv_rho) ** 2
    vn, wn = va * inv_rho, wa * inv_rho
    del ua, va, wa
    coarse = max(1, int(4.0 / grid.pixel_mm))  # σ 22 mm: a 4 mm grid is plenty
    f_def, f_skull, f_scalp = scene.shape_field.sample(*idx, coarse=coarse)
    delta = np.clip(f_def, -2.5, 2.5) * np.float32(anat.deform) + np.float32(anat.egg) * vn * un2
    d_out = rq * ((1.0 + delta) * inv_rho - 1.0)
    del delta, inv_rho
    _join_nose(scene, box, u, v, w, d_out)
    lateral = un2 * (1.0 - np.abs(wn))  # over the temporal squama and temporalis muscle
    scalp = np.float32(anat.scalp_t) * (1.0 + 0.15 * np.clip(f_scalp, -2.5, 2.5)) + 3.0 * lateral
    base = np.clip(-wn - 0.45, 0.0, None)
    skull = np.float32(anat.skull_t) * (
        1.0
        + 0.2 * vn
        - np.float32(anat.temporal_thinning) * lateral
        + np.float32(2.0 * anat.base_thickening) * base * base
        + 0.12 * np.clip(f_skull, -2.5, 2.5)
    )
    skull = np.maximum(skull, np.float32(1.5))
    d_in = d_out - scalp - skull
    d_floor = None
    if float(w.min()) < anat.base.top + 2.0:  # the slab reaches the skull base
        d_floor = _floor_depth(anat, u, v, w, grid.pixel_mm)
        np.minimum(d_in, d_floor, out=d_in)
    ds = _sulcal_distance(scene, idx, rq)
    ez = scene.pose.ras_to_head @ np.array([0.0, 0.0, 1.0])  # scanner z in the head frame
    nz = (u * np.float32(ez[0]) + v * np.float32(ez[1]) + w * np.float32(ez[2])) / np.maximum(
        rq, np.float32(1e-3)
    )
    pv = np.sqrt(np.float32(grid.pixel_mm**2) + (np.float32(grid.spacing[0]) * nz) ** 2)
    del nz
    if d_floor is not None:  # where the floor bounds the cavity, its normal is ~head-superior
        floor_pv = np.float32(np.hypot(grid.pixel_mm, grid.spacing[0] * ez[2]))
        np.copyto(pv, np.maximum(pv, floor_pv), where=d_floor <= d_in + 0.5)
    sy = grid.spacing[1]
    y_ras = (grid.origin[1] - sy * idx[1]).astype(np.float32)[None, :, None]
    return Geo(
        u,
        v,
        w,
        rq,
        d_out,
        d_in,
        scalp,
        skull,
        ds,
        y_ras,
        idx,
        scene.lump_field,
        grid.pixel_mm,
        pv,
        d_floor,
    )


def _lerp(hu: np.ndarray, target, weight: np.ndarray) -> None:
    """In place: hu ← hu + weight · (target − hu)."""
    hu += weight * (target - hu)


def paint_anatomy(scene: Scene, geo: Geo, box, struct: np.ndarray):
    """HU of the head over ``box`` (no bleeds, no noise) and the brain's weight."""
    anat, hu_t, pix, pv = scene.anat, scene.anat.hu, geo.pix, geo.pv
    hu = np.float32(AIR_HU) + ramp(geo.d_out, pv) * np.float32(hu_t.scalp - AIR_HU)
    below_scalp = geo.d_out - geo.scalp
    s = np.clip(below_scalp / geo.skull, 0.0, 1.0) * 2.0 - 1.0
    bone = np.float32(hu_t.diploe) + np.float32(hu_t.cortical - hu_t.diploe) * (s * s)
    _lerp(hu, bone, ramp(below_scalp, pv))
    del s, bone
    _lerp(hu, np.float32(hu_t.csf), ramp(geo.d_in, pv))
    brain = ramp(geo.d_in - np.float32(anat.csf_t), pv)
    _lerp(hu, np.float32(hu_t.grey), brain)
    cortex = np.float32(anat.cortex_t)
    taper = sulcal_taper(geo.d_in, anat.sulcal_depth)
    hw = np.float32(anat.sulcal_halfwidth) * taper
    near_sulcus = sheet(geo.ds, hw + cortex * np.minimum(taper * 3.0, 1.0), pix)
    white = ramp(geo.d_in - np.float32(anat.csf_t) - cortex, pv) * (1.0 - near_sulcus)
    _lerp(hu, np.float32(hu_t.white), white)
    del near_sulcus, white
    _lerp(hu, np.float32(hu_t.csf), sheet(geo.ds, hw, pix) * brain)
    del hw, taper
    # the tail of the slice profile and the in-plane blur spill some bone into the first
    # millimetres under the inner table: a thin rim of intermediate density, widest where the
    # slice cuts the skull cap obliquely (the top slices)
    rim = np.clip(1.0 - geo.d_in / (np.float32(0.6) * pv), 0.0, 1.0)
    hu += np.float32(hu_t.table_spill) * rim * rim * (geo.d_in > 0)
    del rim
    _paint_fissure(scene, geo, box, hu, brain)
    _paint_deep(scene, geo, box, hu, brain)
    _paint_fourth(scene, geo, box, hu, brain)
    _paint_frontal_sinus(scene, geo, box, hu, below_scalp)
    if geo.d_floor is not None:
        _paint_base(scene, geo, box, hu, struct)
    return hu, brain


def _paint_base(scene: Scene, geo: Geo, box, hu: np.ndarray, struct: np.ndarray) -> None:
    """Skull base, upper neck and face below the cranial floor, part by part on sub-boxes."""
    anat, pix = scene.anat, geo.pix
    base, face = anat.base, anat.face
    for value, weight in plate_layers(base, geo, pix):
        _lerp(hu, np.float32(value), weight)
    for center, half, painter in base_parts(base):
        rel = _sub_box(scene, box, box_corners(center, half))
        if rel is None:
            continue
        g = geo.sub(rel)
        if painter == "petrous":
            layers, petrous = petrous_layers(base, g, pix)
            struct[rel][petrous >= 0.5] = structure_code("petrous_bone")
        else:
            layers = painter(base, g, pix)
        for value, weight in layers:
            _lerp(hu[rel], np.float32(value), weight)
    for lo, hi, painter in face_parts(face, base):
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        rel = _sub_box(scene, box, box_corners((lo + hi) / 2, (hi - lo) / 2))
        if rel is None:
            continue
        for value, weight in painter(face, base, geo.sub(rel), pix):
            _lerp(hu[rel], np.float32(value), weight)


def _paint_frontal_sinus(scene: Scene, geo: Geo, box, hu: np.ndarray, below_scalp) -> None:
    f = scene.anat.face
    if f.frontal_r[0] <= 0:
        return
    half = np.array([f.frontal_r[0] + 2.0, 30.0, f.frontal_r[1] + 2.0])
    rel = _sub_box(scene, box, box_corners(np.array([0.0, -f.b, f.frontal_w]), half))
    if rel is None:
        return
    g = geo.sub(rel)
    weight = frontal_sinus(f, g.u, g.v, g.w, below_scalp[rel], g.d_in, geo.pix)
    if weight is not None:
        _lerp(hu[rel], np.float32(AIR_HU), weight)


def _sub_box(scene: Scene, box, head_points: np.ndarray):
    ras = scene.pose.to_ras(head_points)
    return _intersect(box, scene.grid.box_of(ras, margin=2.0))


def _midline_region(scene: Scene, g: Geo, pix: float) -> np.ndarray:
    """Where the interhemispheric fissure and falx are: above the corpus callosum, at the poles."""
    anat, vent = scene.anat, scene.anat.ventricles
    top_cc = np.float32(vent.w0 + vent.arch + vent.rw + 3.0)
    return np.maximum(
        ramp(g.w - top_cc, pix), ramp(np.abs(g.v - np.float32(vent.v_mid)) - vent.length - 8.0, pix)
    ) * anat.dura.above_tent(g.u, g.v, g.w, anat.base, pix)


def _midline_box(scene: Scene, box):
    anat = scene.anat
    half = np.array([8.0, anat.b + 5.0, anat.c + 5.0])
    return _sub_box(scene, box, box_corners(np.zeros(3), half))


def _midline(scene: Scene, geo: Geo, box):
    """The midline sub-box and its fissure/falx region, computed once per slab."""
    memo = geo.__dict__  # a frozen dataclass: keep the result beside its cached properties
    if "_midline" not in memo:
        rel = _midline_box(scene, box)
        region = None if rel is None else _midline_region(scene, geo.sub(rel), geo.pix)
        memo["_midline"] = (rel, region)
    return memo["_midline"]


def _paint_fissure(scene: Scene, geo: Geo, box, hu: np.ndarray, brain: np.ndarray) -> None:
    """Interhemispheric fissure (CSF) above the corpus callosum and at the poles."""
    rel, region = _midline(scene, geo, box)
    if rel is None:
        return
    g, pix = geo.sub(rel), geo.pix
    fissure = sheet(np.abs(g.u), np.float32(scene.anat.fissure_halfwidth), pix) * region
    _lerp(hu[rel], np.float32(scene.anat.hu.csf), fissure * brain[rel])


def _paint_deep(scene: Scene, geo: Geo, box, hu: np.ndarray, brain: np.ndarray) -> None:
    """Deep grey nuclei and the ventricles."""
    lo, hi = scene.anat.ventricles.head_box()
    rel = _sub_box(scene, box, box_corners((lo + hi) / 2, (hi - lo) / 2))
    if rel is None:
        return
    g, pix, vent = geo.sub(rel), geo.pix, scene.anat.ventricles
    _lerp(
        hu[rel],
        np.float32(scene.anat.hu.grey),
        ramp(-deep_grey_sd(g.u, g.v, g.w, vent), pix) * brain[rel],
    )
    _lerp(
        hu[rel],
        np.float32(scene.anat.hu.csf),
        ramp(-ventricle_sd(g.u, g.v, g.w, vent), pix) * brain[rel],
    )


def _paint_fourth(scene: Scene, geo: Geo, box, hu: np.ndarray, brain: np.ndarray) -> None:
    """The fourth ventricle: a small CSF slit in the midline of the posterior fossa."""
    base = scene.anat.base
    fourth = (0.0, base.v_back + 30.0, base.middle - 4.0)
    rel = _sub_box(scene, box, box_corners(np.array(fourth), 10.0))
    if rel is None:
        return
    g = geo.sub(rel)
    sd = ellipsoid_sd(g.u, g.v, g.w, fourth, (7.0, 3.5, 7.0))
    _lerp(hu[rel], np.float32(scene.anat.hu.csf), ramp(-sd, geo.pix) * brain[rel])


def paint_bleeds(
    scene: Scene, geo: Geo, box, hu: np.ndarray, labels: np.ndarray, fracture: np.ndarray
) -> None:
    """Composite each bleed (and any fracture) into ``hu``; mark its voxels in ``labels``."""
    anat, pix = scene.anat, geo.pix
    for bleed in scene.bleeds:
        rel = _sub_box(scene, box, bleed.bounds(anat))
        if rel is None:
            continue
        g = geo.sub(rel)
        if isinstance(bleed, ExtraAxial) and bleed.fracture:
            bone = ramp(g.d_out - g.scalp, pix) - ramp(g.d_in, pix)
            gap = bleed.fracture_weight(g) * bone
            _lerp(hu[rel], np.float32(anat.hu.scalp + 10.0), gap)
            fracture[rel[0]] |= np.any(gap >= 0.5, axis=(1, 2))
        if isinstance(bleed, Intraparenchymal):  # perihematomal edema around the clot
            sd = bleed.signed_distance(g)
            edema = ramp(np.float32(bleed.edema_mm) - sd, pix) * ramp(g.d_in - anat.csf_t, pix)
            _lerp(hu[rel], np.float32(anat.hu.white - 9.0), 0.7 * edema)
        weight = bleed.weight(g, anat)
        _lerp(hu[rel], np.float32(bleed.hu), weight)
        labels[rel][weight >= 0.5] = type_code(bleed.kind)


def paint_collections(scene: Scene, geo: Geo, box, hu, labels, struct) -> None:
    """Chronic / subacute extra-axial collections (0–45 HU): painted, never labelled."""
    for coll in scene.collections:
        rel = _sub_box(scene, box, coll.bounds(scene.anat))
        if rel is None:
            continue
        weight = coll.weight(geo.sub(rel), scene.anat)
        _lerp(hu[rel], np.float32(coll.hu), weight)
        _unlabel(labels[rel], struct[rel], weight, "chronic_collection")


def _unlabel(labels: np.ndarray, struct: np.ndarray, weight: np.ndarray, name: str) -> None:
    """A voxel mostly covered by a mimic is that mimic: no blood label there."""
    on = weight >= 0.5
    labels[on] = 0
    struct[on] = structure_code(name)


def paint_mimics(scene: Scene, geo: Geo, box, hu, labels, struct) -> None:
    """Falx, tentorium, venous sinuses and calcifications, over any blood (never labelled)."""
    anat, pix = scene.anat, geo.pix
    dura, base = anat.dura, anat.base
    rel, region = _midline(scene, geo, box)
    if rel is not None:
        g = geo.sub(rel)
        falx = sheet(g.u, np.float32(dura.falx_halfwidth), pix) * region
        falx *= ramp(g.d_in, pix)
        _lerp(hu[rel], np.float32(anat.hu.falx), falx)
        _unlabel(labels[rel], struct[rel], falx, "falx")
        sss = sagittal_sinus(dura, g.u, g.v, g.w, g.d_in, anat.b, g.pv, pix)
        _lerp(hu[rel], np.float32(dura.sinus_hu), sss)
        _unlabel(labels[rel], struct[rel], sss, "venous_sinus")
    lo = np.array([-anat.a, base.v_back - 5.0, base.posterior - 2.0])
    hi = np.array([anat.a, anat.b + 5.0, dura.apex_w + 6.0])
    rel = _sub_box(scene, box, box_corners((lo + hi) / 2, (hi - lo) / 2))
    if rel is not None:
        g = geo.sub(rel)
        inside = ramp(g.d_in, pix)
        tent = tentorium(dura, base, g.u, g.v, g.w, inside, pix)
        _lerp(hu[rel], np.float32(anat.hu.falx), tent)
        _unlabel(labels[rel], struct[rel], tent, "tentorium")
        veins = posterior_sinuses(dura, g.u, g.v, g.w, g.d_in, pix)
        _lerp(hu[rel], np.float32(dura.sinus_hu), veins)
        _unlabel(labels[rel], struct[rel], veins, "venous_sinus")
    for calc in anat.calc.items:
        rel = _sub_box(scene, box, calc.bounds())
        if rel is None:
            continue
        g = geo.sub(rel)
        weight = ramp(-calc.signed_distance(g.u, g.v, g.w), pix) * ramp(g.d_in, pix)
        _lerp(hu[rel], np.float32(calc.hu), weight)
        _unlabel(labels[rel], struct[rel], weight, "calcification")


def paint_artefacts(scene: Scene, geo: Geo, box, hu: np.ndarray) -> None:
    """Cupping over the cavity, beam hardening across the posterior fossa."""
    anat, art = scene.anat, scene.art
    hu += art_mod.cupping(art, geo.d_in)
    base = anat.base
    w_p = base.middle + 0.6 * base.petrous_h
    lo = np.array([-anat.a, base.v_back - 10.0, w_p - 15.0])
    hi = np.array([anat.a, anat.b, w_p + 15.0])
    rel = _sub_box(scene, box, box_corners((lo + hi) / 2, (hi - lo) / 2))
    if rel is not None:
        g = geo.sub(rel)
        hu[rel] += art_mod.beam_hardening(art, base, g.u, g.v, g.w, ramp(g.d_in, geo.pix), geo.pix)


def slab_box(scene: Scene, k0: int, k1: int, points: np.ndarray):
    """In-plane box of the head over slices ``k0:k1`` (None when the slab misses the head)."""
    grid = scene.grid
    z_lo, z_hi = grid.slice_z(k0), grid.slice_z(k1 - 1)
    reach = 6.0 + grid.spacing[0]
    near = points[(points[:, 2] >= z_lo - reach) & (points[:, 2] <= z_hi + reach)]
    if len(near) == 0:
        return None
    box = grid.box_of(near, margin=3.0)
    if box is None:
        return None
    return (slice(k0, k1), box[1], box[2])


@dataclass(frozen=True, eq=False)
class Rendered:
    """What ``render`` paints: HU, label codes, fracture per slice and the intracranial space."""

    hu: np.ndarray  # float32, integer-valued, clipped to MIN_HU…MAX_HU
    labels: np.ndarray  # uint8 type codes (0 = no blood)
    fracture: np.ndarray  # bool per slice
    cavity: np.ndarray  # bool: d_in >= 0 at the voxel centre (inside the inner table, above floor)
    structures: np.ndarray  # uint8 STRUCTURES codes (0 = none): the mimics of blood


def _head_reach(points: np.ndarray, center: np.ndarray) -> float:
    """Largest in-plane distance of the head's posterior half from its centre (RAS mm)."""
    rel = points[:, :2] - center[:2]
    back = rel[rel[:, 1] < 0]
    return float(np.hypot(back[:, 0], back[:, 1]).max()) if len(back) else 0.0


def _paint_slab(scene: Scene, box, rng, labels, fracture, struct) -> tuple[np.ndarray, np.ndarray]:
    """One slab's HU (before noise) and its cavity."""
    geo = geometry(scene, box)
    part, brain = paint_anatomy(scene, geo, box, struct)
    paint_bleeds(scene, geo, box, part, labels, fracture)
    paint_collections(scene, geo, box, part, labels, struct)
    paint_mimics(scene, geo, box, part, labels, struct)
    paint_artefacts(scene, geo, box, part)
    # correlation lengths in pixels, as a reconstruction kernel gives: ~1 mm mottling for
    # grey/white texture; coarse matrices get white noise
    fine = geo.pix < 1.0
    tex_sd = np.float32(scene.anat.hu.texture_sd)
    for k, plane in enumerate(pool_planes(rng, *brain.shape, sigma_px=2.5 if fine else 0.0)):
        part[k] += tex_sd * plane * brain[k]
    art_mod.sharpen(scene.art, part, geo.pix)
    return part, geo.d_in >= 0


def render(scene: Scene, rng: np.random.Generator) -> Rendered:
    """Paint the scene: anatomy, bleeds, mimics, artefacts, support and noise, slab by slab."""
    grid, anat = scene.grid, scene.anat
    nz, ny, nx = grid.shape
    hu = np.full(grid.shape, AIR_HU, dtype=np.float32)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    struct = np.zeros(grid.shape, dtype=np.uint8)
    fracture = np.zeros(nz, dtype=bool)
    cavity = np.zeros(grid.shape, dtype=bool)
    points = outer_points(anat, scene.pose)
    for k0 in range(0, nz, SLAB):
        box = slab_box(scene, k0, min(k0 + SLAB, nz), points)
        if box is None:
            continue
        hu[box], cavity[box] = _paint_slab(
            scene, box, rng, labels[box], fracture[box[0]], struct[box]
        )
    support = art_mod.support_plane(
        scene.art, grid, scene.pose.center, _head_reach(points, scene.pose.center)
    )
    if support is not None:
        plane, weight = support
        on = weight > 0
        hu[:, on] = plane[on]
    fine = grid.pixel_mm < 1.0
    noise_sd = np.float32(anat.hu.noise_sd)
    grain = scene.art.grain_px if fine else 0.0
    for k, plane in enumerate(pool_planes(rng, nz, ny, nx, sigma_px=grain)):
        hu[k] += noise_sd * plane
    np.rint(hu, out=hu)
    np.clip(hu, MIN_HU, MAX_HU, out=hu)
    return Rendered(hu, labels, fracture, cavity, struct)
