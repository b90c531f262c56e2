"""The face below the forehead: nose, orbits' contents, nasal cavity, maxillary and frontal sinuses.

Head frame as everywhere (u left, v posterior, w superior, mm). The outer head below its centre
is a rounded cylinder (see ``ugss.synth.anatomy``); the nose protrudes from it in the midline
between the nasion and the columella as a triangular ridge, and the lips as a broad bulge below
it, so on the lowest slices the face stands out anteriorly below the forehead. Below the
cranial floor ``ugss.synth.skullbase`` fills the head with soft tissue (40–55 HU); this module
paints into it:

- subcutaneous fat (−100…−60 HU, 3–8 mm) under the skin of the face and neck;
- orbits: fat around the globe (vitreous 8–20 HU, sclera ~50 HU), the lens (80–120 HU), the optic
  nerve and four rectus muscles (40–60 HU), a thin bony wall open in front;
- nasal cavity (air) with the septum (bone/cartilage 150–400 HU) and three turbinates per side
  (mucosa 35–50 HU), nostrils, the hard palate;
- maxillary sinuses (air in a 1.5 mm bony shell, sometimes a 20–40 HU mucosal thickening);
- zygomatic arches and mandibular rami (bone);
- frontal sinus (air cells in the frontal bone above the nasion) in most adults.

Everything below the floor is masked with the floor (``under``), so the intracranial cavity keeps
its voxels; the frontal sinus is confined to the frontal bone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ugss.synth.partial import ramp, sheet
from ugss.synth.skullbase import AIR, SkullBase, air_cells, ellipsoid_sd


@dataclass(frozen=True)
class Face:
    """One patient's face; heights are head-frame w (mm), positions head-frame mm."""

    b: float  # outer half length (for the front profile)
    c_low: float
    nasion_w: float
    tip_w: float
    base_w: float  # columella / nose base
    nose_p: float  # nose protrusion at the tip beyond the outer profile
    nose_k: float  # half width of the nose per mm of protrusion
    lip_p: float  # protrusion of the lips in front of the profile
    nc_half: float  # nasal cavity half width
    nc_top: float
    choana_v: float
    palate_w: float
    ms_u: float
    ms_v: float
    ms_w: float
    ms_r: tuple[float, float, float]
    ms_mucosa: float  # mm of mucosal thickening in the maxillary sinuses (0: none)
    fat_t: float
    zyg_u: float
    zyg_w: float
    ramus_u: float
    ramus_v: float
    lens_hu: float
    muscle_hu: float
    septum_hu: float
    frontal_w: float
    frontal_r: tuple[float, float]  # (u, w) half sizes; 0 = no frontal sinus

    def front_v(self, w: np.ndarray | float) -> np.ndarray | float:
        """v of the outer profile's front in the midline at height w (w < 0)."""
        t = np.clip(np.asarray(w) * np.float32(1.0 / self.c_low), -1.0, 0.0) ** 4
        return -np.float32(self.b) * np.sqrt(np.sqrt(1.0 - t))

    def nose_protrusion(self, w: np.ndarray) -> np.ndarray:
        """How far the nose stands out in front of the profile at height w (mm, ≤ 0: none)."""
        rise = (np.float32(self.nasion_w) - w) * np.float32(1.0 / (self.nasion_w - self.tip_w))
        drop = (w - np.float32(self.base_w)) * np.float32(1.0 / (self.tip_w - self.base_w))
        return np.float32(self.nose_p) * np.minimum(np.clip(rise, 0.0, 1.0), drop) - 1.0

    def nose_depth(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Depth (mm) inside the nose's soft tissue (< 0 outside), to join the skin depth."""
        t = np.float32(-1.0) * (v - self.front_v(w))  # mm in front of the profile
        p = self.nose_protrusion(w)
        k = np.float32(self.nose_k)
        nose = np.minimum(p - t - np.abs(u) / k, t + 12.0) * np.float32(0.7)
        # the lips: a broad, rounded bulge below the nose
        lw = (w - np.float32(self.base_w - 14.0)) * np.float32(1 / 11.0)
        lip = np.float32(self.lip_p) * np.clip(1.0 - lw * lw, 0.0, 1.0) - 1.0
        lips = np.minimum(lip - t - (u * np.float32(1 / 26.0)) ** 2 * 12.0, t + 12.0) * 0.7
        return np.maximum(nose, lips)


def draw_face(rng: np.random.Generator, base: SkullBase, a: float, b: float, c: float, c_low):
    """A face fitted to the skull base's orbits and the outer head."""
    nasion = base.orbit_w + rng.uniform(8.0, 13.0)
    tip = nasion - rng.uniform(34.0, 42.0)
    nc_half = rng.uniform(11.0, 14.0)
    palate = base.orbit_w - rng.uniform(34.0, 40.0)
    present = rng.random() < 0.85
    ms_h = rng.uniform(13.0, 16.0)  # maxillary sinus half height: roof at the orbital floor
    return Face(
        b=b,
        c_low=c_low,
        nasion_w=nasion,
        tip_w=tip,
        base_w=tip - rng.uniform(6.0, 9.0),
        nose_p=rng.uniform(16.0, 26.0),
        nose_k=rng.uniform(0.55, 0.8),
        lip_p=rng.uniform(6.0, 12.0),
        nc_half=nc_half,
        nc_top=base.anterior - rng.uniform(8.0, 12.0),
        choana_v=base.v_front + rng.uniform(2.0, 8.0),
        palate_w=palate,
        ms_u=nc_half + rng.uniform(12.0, 15.0),
        ms_v=base.orbit_v + rng.uniform(0.0, 5.0),
        ms_w=base.orbit_w - 0.95 * base.orbit_r - ms_h + rng.uniform(2.0, 5.0),
        ms_r=(rng.uniform(11.0, 14.0), rng.uniform(15.0, 18.0), ms_h),
        ms_mucosa=float(rng.uniform(2.0, 7.0)) if rng.random() < 0.3 else 0.0,
        fat_t=rng.uniform(3.0, 8.0),
        zyg_u=a * 0.97 - rng.uniform(11.0, 14.0),
        zyg_w=base.orbit_w - rng.uniform(9.0, 13.0),
        ramus_u=a * 0.97 - rng.uniform(15.0, 19.0),
        ramus_v=base.v_back - rng.uniform(14.0, 22.0),
        lens_hu=rng.uniform(80.0, 120.0),
        muscle_hu=rng.uniform(42.0, 58.0),
        septum_hu=rng.uniform(150.0, 400.0),
        frontal_w=base.anterior + rng.uniform(8.0, 16.0),
        frontal_r=(rng.uniform(8.0, 22.0), rng.uniform(7.0, 14.0)) if present else (0.0, 0.0),
    )


def _tube_sd(u, v, w, p0, p1, radius: float) -> np.ndarray:
    """Signed distance (mm) to a capsule from ``p0`` to ``p1`` (head-frame points)."""
    d = np.asarray(p1, float) - np.asarray(p0, float)
    inv = 1.0 / float(d @ d)
    du, dv, dw = u - np.float32(p0[0]), v - np.float32(p0[1]), w - np.float32(p0[2])
    t = np.clip((du * d[0] + dv * d[1] + dw * d[2]) * np.float32(inv), 0.0, 1.0)
    eu, ev, ew = du - t * d[0], dv - t * d[1], dw - t * d[2]
    return np.sqrt(eu * eu + ev * ev + ew * ew) - np.float32(radius)


def orbit_layers(face: Face, base: SkullBase, au, v, w, d_out, under, pix: float):
    """(HU, weight) layers of both orbits (``au`` = |u|)."""
    r = base.orbit_r
    oc = (base.orbit_u, base.orbit_v, base.orbit_w)
    orbit_sd = ellipsoid_sd(au, v, w, oc, (r * 0.95, r * 1.3, r * 0.95))
    gv = base.orbit_v - r * 0.6
    gc = (base.orbit_u, gv, base.orbit_w)
    skin = ramp(d_out - 1.5, pix)
    globe = ramp(-ellipsoid_sd(au, v, w, gc, (base.globe_r,) * 3), pix) * skin
    sclera = sheet(ellipsoid_sd(au, v, w, gc, (base.globe_r,) * 3) + 0.6, 0.6, pix) * skin
    lens_c = (base.orbit_u, gv - base.globe_r + 3.5, base.orbit_w)
    lens = ramp(-ellipsoid_sd(au, v, w, lens_c, (4.5, 1.8, 4.5)), pix) * skin
    apex = (base.orbit_u - 9.0, base.orbit_v + r * 1.15, base.orbit_w + 2.0)
    nerve = ramp(
        -_tube_sd(au, v, w, (base.orbit_u, gv + base.globe_r - 1.0, base.orbit_w), apex, 2.2), pix
    )
    muscles = None
    off = r * 0.95 - 3.0
    for du, dw, ru, rw in (
        (-off, 0.0, 2.2, 4.5),
        (off, 0.0, 2.2, 4.5),
        (0.0, off, 4.5, 2.2),
        (0.0, -off, 4.5, 2.2),
    ):
        c = (base.orbit_u + du, base.orbit_v + 0.25 * r, base.orbit_w + dw)
        m = ramp(-ellipsoid_sd(au, v, w, c, (ru, r * 0.85, rw)), pix)
        muscles = m if muscles is None else np.maximum(muscles, m)
    inside = ramp(-orbit_sd, pix) * under
    wall = sheet(orbit_sd - 1.0, 1.0, pix) * ramp(v - np.float32(gv), pix) * under
    return [
        (base.diploe_hu, wall),
        (base.fat_hu, inside),
        (face.muscle_hu, muscles * inside),
        (face.muscle_hu - 10.0, nerve * inside),
        (base.globe_hu, globe * under),
        (50.0, sclera * under),
        (face.lens_hu, lens * under),
    ]


def nasal_layers(face: Face, base: SkullBase, u, v, w, under, pix: float):
    """(HU, weight) layers of the nasal cavity, septum, turbinates, nostrils and palate."""
    au = np.abs(u)
    front = face.front_v(w)
    top = np.float32(face.nc_top)
    height = top - np.float32(face.palate_w)
    taper = np.clip((top - w) / (0.45 * height), 0.3, 1.0)  # narrow at the top (ethmoid)
    in_u = ramp(np.float32(face.nc_half) * taper - au, pix)
    in_v = ramp(v - (front + 14.0), pix) * ramp(np.float32(face.choana_v) - v, pix)
    in_w = ramp(w - np.float32(face.palate_w), pix) * ramp(top - w, pix)
    cavity = in_u * in_v * in_w * under
    length = face.choana_v - (-face.b + 14.0)
    mid_v = face.choana_v - 0.5 * length
    turb = None
    for dw, ru, rw, f in ((7.0, 4.5, 5.0, 0.42), (19.0, 3.5, 4.0, 0.36), (29.0, 2.5, 3.0, 0.25)):
        c = (face.nc_half * (1.0 if dw < 25 else 0.6), mid_v + 6.0, face.palate_w + dw)
        t = ramp(-ellipsoid_sd(au, v, w, c, (ru, f * length, rw)), pix)
        turb = t if turb is None else np.maximum(turb, t)
    septum = sheet(u, 1.0, pix) * cavity
    nostril_c = (face.nose_p * face.nose_k * 0.35, -face.b - 0.3 * face.nose_p, face.base_w + 4.0)
    nostril = ramp(-ellipsoid_sd(au, v, w, nostril_c, (3.0, 7.0, 3.0)), pix) * under
    palate = (
        band_w(w, face.palate_w - 4.0, face.palate_w, pix)
        * ramp(np.float32(face.nc_half + 16.0) - au, pix)
        * ramp(v - (front + 8.0), pix)
        * ramp(np.float32(face.choana_v) - v, pix)
    )
    return [
        (AIR, cavity),
        (face.muscle_hu - 10.0, turb * cavity),
        (face.septum_hu, septum),
        (AIR, nostril),
        (base.diploe_hu, palate * under),
    ]


def band_w(x, lo: float, hi: float, pix: float) -> np.ndarray:
    """Fraction of a pixel inside ``[lo, hi]`` along one coordinate."""
    return ramp(x - np.float32(lo), pix) * ramp(np.float32(hi) - x, pix)


def bone_layers(face: Face, base: SkullBase, u, v, w, under, pix: float):
    """Maxillary sinuses in their bony shell, zygomatic arches, mandibular rami."""
    au = np.abs(u)
    ms = ellipsoid_sd(au, v, w, (face.ms_u, face.ms_v, face.ms_w), face.ms_r)
    shell = ramp(1.5 - ms, pix) * under
    air = ramp(-ms, pix) * under
    out = [(base.diploe_hu, shell), (AIR, air)]
    if face.ms_mucosa > 0:
        out.append((30.0, air * ramp(ms + np.float32(face.ms_mucosa), pix)))
    zyg = _tube_sd(
        au,
        v,
        w,
        (face.zyg_u, base.orbit_v + 8.0, face.zyg_w),
        (face.zyg_u, base.v_back - 4.0, face.zyg_w),
        3.5,
    )
    rv = (v - np.float32(face.ramus_v)) * np.float32(1 / 11.0)
    ramus = ramp(
        np.float32(3.0) * (1.0 - np.sqrt((au - np.float32(face.ramus_u)) ** 2 / 9.0 + rv * rv)), pix
    )
    ramus *= ramp(np.float32(face.zyg_w - 6.0) - w, pix)
    out.append((base.diploe_hu + 200.0, np.maximum(ramp(-zyg, pix), ramus) * under))
    return out


def _fat(face: Face, base: SkullBase, g, pix: float):
    fat = ramp(g.d_out - g.scalp, pix) * ramp(g.scalp + np.float32(face.fat_t) - g.d_out, pix)
    fat *= ramp(-(g.d_floor + 8.0), pix) * ramp(g.v - (face.front_v(g.w) + 3.0), pix)
    return [(base.fat_hu, fat)]


def _orbits(face: Face, base: SkullBase, g, pix: float):
    under = ramp(-g.d_floor, pix)
    return orbit_layers(face, base, np.abs(g.u), g.v, g.w, g.d_out, under, pix)


def _nasal(face: Face, base: SkullBase, g, pix: float):
    return nasal_layers(face, base, g.u, g.v, g.w, ramp(-g.d_floor, pix), pix)


def _bones(face: Face, base: SkullBase, g, pix: float):
    inside = ramp(-g.d_floor, pix) * ramp(g.d_out - g.scalp - 1.0, pix)  # under the skin
    return bone_layers(face, base, g.u, g.v, g.w, inside, pix)


def face_parts(face: Face, base: SkullBase):
    """The face's parts as (head-frame low corner, high corner, painter(face, base, geo, pix))."""
    r = base.orbit_r
    front = -face.b - face.nose_p - 4.0
    lat = face.zyg_u + 6.0
    return [
        ((-lat, front, face.palate_w - 45.0), (lat, face.ramus_v + 16.0, base.anterior), _fat),
        (
            (
                -lat,
                min(face.ms_v - face.ms_r[1], base.orbit_v - 1.3 * r) - 4.0,
                face.palate_w - 45.0,
            ),
            (lat, face.ramus_v + 16.0, max(face.zyg_w + 6.0, face.ms_w + face.ms_r[2] + 3.0)),
            _bones,
        ),
        (
            (-face.nc_half - 18.0, front, face.palate_w - 6.0),
            (face.nc_half + 18.0, face.choana_v + 2.0, face.nc_top + 2.0),
            _nasal,
        ),
        (
            (-base.orbit_u - r - 2.0, base.orbit_v - 1.3 * r - 3.0, base.orbit_w - r - 3.0),
            (base.orbit_u + r + 2.0, base.orbit_v + 1.3 * r + 3.0, base.orbit_w + r + 3.0),
            _orbits,
        ),
    ]


def frontal_sinus(face: Face, u, v, w, below_scalp, d_in, pix: float) -> np.ndarray | None:
    """Weight of frontal-sinus air (confined to the frontal bone), or None when absent."""
    ru, rw = face.frontal_r
    if ru <= 0:
        return None
    sd = ellipsoid_sd(u, v, w, (0.0, -face.b, face.frontal_w), (ru, 28.0, rw))
    bone = ramp(below_scalp - 1.2, pix) * ramp(-d_in - 1.2, pix)
    return ramp(-sd, pix) * bone * air_cells(u, v, w, 9.0) * ramp(np.abs(u) - 0.8, pix)
