"""The skull base: what the lowest slices of a head CT cut through.

The cranial floor is a surface ``w = F(u, v)`` in steps, as on a real skull: the anterior fossa
(orbital roofs, ~⅓ of the half height below the centre) in front, the deeper middle fossae
(temporal lobes) with the sella/sphenoid ridge raised in the midline, and the posterior fossa
lowest. The petrous ridges rise between the middle and posterior fossae as a V running
anteromedially from the mastoids to the clivus. Depth above this floor joins the depth below the
inner table (the smaller wins), so brain, CSF and extra-axial blood all stop at the floor.

Below the floor lies a bony plate (cortical ~1500 HU over cancellous bone), thickest in the
midline (sphenoid body and clivus) and laterally (temporal bone); under it soft tissue (muscle
40–55 HU, with fat planes) with the nasopharynx and the pharyngeal airway (air), and the
upper cervical spine (C1 ring around the dens,
spinal canal) below the foramen magnum. The petrous bones are very dense (1500–2500 HU), with
mastoid air cells (air between thin bony septa) behind and lateral to them. Within the bone lie
the ethmoid and sphenoid sinuses (air, sometimes a 20–40 HU mucosal lining). The orbits and the
face in front are drawn by ``ugss.synth.face``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ugss.synth.partial import ramp, sheet

AIR = -1000.0


@dataclass(frozen=True)
class SkullBase:
    """Heights are head-frame w (mm, negative = below the centre), lengths in mm."""

    anterior: float  # floor of the anterior fossa
    middle: float  # floor of the middle fossae
    posterior: float  # floor of the posterior fossa (foramen magnum level)
    sella_rise: float  # midline sphenoid ridge above the middle floor
    v_front: float  # anterior/middle fossa border (AP, head frame v)
    v_back: float  # petrous ridges meet the clivus here (midline); they run back laterally
    ridge_slope: float  # dv/d|u| of the petrous ridge line (anteromedial axis)
    petrous_h: float  # ridge height above the middle fossa floor
    petrous_len: float  # lateral reach |u| of the petrous ridge
    petrous_hu: float
    bone_t: float  # bony floor thickness before the soft tissue below
    orbit_u: float
    orbit_v: float
    orbit_w: float
    orbit_r: float
    globe_r: float
    sinus_v: float  # centre of the ethmoid/sphenoid air along v
    diploe_hu: float
    fat_hu: float
    globe_hu: float
    soft_hu: float  # muscle and soft tissue below the skull base
    mucosa_mm: float  # thickness (mm) of a mucosal lining of the ethmoid/sphenoid; 0 = none
    mastoid_r: float  # radius of the mastoid air-cell region
    mastoid_u: float  # its distance from the midline (in the temporal bone, under the skin)
    dens_v: float  # AP position of the dens (C2)

    @property
    def top(self) -> float:
        """Highest point of the floor: above it nothing changes."""
        return max(self.anterior, self.middle + self.sella_rise, self.middle + self.petrous_h)

    def ridge_distance(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Signed distance (mm) across the petrous ridge line (> 0 behind it)."""
        ridge = np.float32(self.v_back) + np.float32(self.ridge_slope) * np.abs(u)
        return (v - ridge) * np.float32(1.0 / np.sqrt(1.0 + self.ridge_slope**2))

    def petrous_profile(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """0–1 tent over the ridge line: 1 on the crest, 0 at the pyramid's base edges."""
        au = np.abs(u)
        along = np.clip((au - 9.0) * np.float32(1 / 6.0), 0.0, 1.0) * np.clip(
            (np.float32(self.petrous_len) - au) * np.float32(1 / 8.0), 0.0, 1.0
        )
        return np.clip(1.0 - np.abs(self.ridge_distance(u, v)) * np.float32(1 / 13.0), 0, 1) * along

    def floor(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Height ``F(u, v)`` of the cranial floor."""
        # linear steps 12 mm wide: smooth enough, and no exp() over millions of voxels
        # the sphenoid ridges curve forward laterally from the anterior clinoids
        v_front = np.float32(self.v_front) - 12.0 * (u * np.float32(1 / 55.0)) ** 2
        front = np.clip(0.5 - (v - v_front) * np.float32(1 / 12.0), 0.0, 1.0)
        back = np.clip(0.5 + self.ridge_distance(u, v) * np.float32(1 / 12.0), 0.0, 1.0)
        bump = np.clip(1.0 - (u * np.float32(1 / 20.0)) ** 2, 0.0, None)
        au = np.abs(u)
        # middle and posterior fossae are bowls: deepest in the temporal fossae and around the
        # foramen magnum, rising towards their walls
        dm = ((au - np.float32(0.5 * self.petrous_len / 0.64)) * np.float32(1 / 26.0)) ** 2
        dm = dm + ((v - np.float32(self.v_front + 22.0)) * np.float32(1 / 24.0)) ** 2
        mid = np.float32(self.middle) + 10.0 * np.clip(dm, 0.0, 1.5)
        mid = mid + np.float32(self.sella_rise) * bump * bump
        dp = (u * np.float32(1 / 42.0)) ** 2 + (
            (v - np.float32(self.dens_v + 16.0)) * np.float32(1 / 38.0)
        ) ** 2
        post = np.float32(self.posterior) + 45.0 * dp / (dp + 0.5)  # rises, never flat
        # orbital roofs domed up over each orbit, the olfactory groove lower in the midline
        roof = 5.0 * np.clip(
            1.0 - ((au - np.float32(self.orbit_u)) * np.float32(1 / 18.0)) ** 2, 0, 1
        )
        roof -= 5.0 * np.clip(1.0 - au * np.float32(1 / 7.0), 0.0, 1.0)
        steps = mid + front * (np.float32(self.anterior) + roof - mid) + back * (post - mid)
        crest = np.float32(self.middle + self.petrous_h)
        return steps + np.maximum(crest - steps, 0.0) * self.petrous_profile(u, v)

    def plate(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Thickness (mm) of bone below the floor: thick in the midline and the temporal bone."""
        au = np.abs(u)
        mid = np.clip(1.0 - au * np.float32(1 / 16.0), 0.0, 1.0)
        clivus = mid * np.clip((np.float32(self.v_back + 14.0) - v) * np.float32(1 / 6.0), 0, 1)
        lateral = np.clip((au - np.float32(self.petrous_len - 20.0)) * np.float32(1 / 10.0), 0, 1)
        lateral = lateral * np.clip(1.0 - np.abs(v - np.float32(self.v_back + 10.0)) / 35.0, 0, 1)
        return np.float32(self.bone_t) + 9.0 * clivus + 14.0 * lateral


def draw_skull_base(rng: np.random.Generator, a: float, b: float, c: float) -> SkullBase:
    """A skull base scaled to an outer head of half width ``a``, length ``b``, height ``c``."""
    anterior = -rng.uniform(0.26, 0.34) * c
    orbit_r = rng.uniform(15.0, 17.0)
    globe_r = rng.uniform(11.0, 12.5)
    orbit_u = rng.uniform(0.3, 0.36) * a
    # the cornea sits ~4 mm (eyelids) behind the skin of the outer profile at the orbit's |u|
    cornea_v = -(b * np.sqrt(1.0 - (orbit_u / a) ** 2) - rng.uniform(3.5, 5.0))
    middle = -rng.uniform(0.5, 0.58) * c
    v_back = -rng.uniform(0.0, 0.08) * b
    return SkullBase(
        anterior=anterior,
        middle=middle,
        posterior=-0.95 * c,
        sella_rise=rng.uniform(0.12, 0.2) * c,
        v_front=-rng.uniform(0.26, 0.34) * b,
        v_back=v_back,
        ridge_slope=rng.uniform(0.65, 0.9),
        petrous_h=rng.uniform(0.75, 0.95) * (anterior - middle),
        petrous_len=rng.uniform(0.6, 0.68) * a,
        petrous_hu=rng.uniform(1600.0, 2400.0),
        bone_t=rng.uniform(3.0, 5.0),
        orbit_u=orbit_u,
        orbit_v=cornea_v + globe_r + 0.6 * orbit_r,
        orbit_w=anterior - orbit_r - rng.uniform(1.0, 4.0),
        orbit_r=orbit_r,
        globe_r=globe_r,
        sinus_v=-(b - rng.uniform(38.0, 46.0)),
        diploe_hu=rng.uniform(650.0, 950.0),
        fat_hu=rng.uniform(-100.0, -60.0),
        globe_hu=rng.uniform(8.0, 20.0),
        soft_hu=rng.uniform(40.0, 55.0),
        mucosa_mm=float(rng.uniform(1.5, 4.0)) if rng.random() < 0.3 else 0.0,
        mastoid_r=rng.uniform(9.0, 14.0),
        mastoid_u=a - rng.uniform(15.0, 19.0),
        dens_v=v_back + rng.uniform(6.0, 12.0),
    )


def ellipsoid_sd(u, v, w, center, radii) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipsoid."""
    d = None
    for x, c0, r in zip((u, v, w), center, radii, strict=True):
        t = ((x - np.float32(c0)) * np.float32(1 / r)) ** 2
        d = t if d is None else d + t
    return (np.sqrt(d) - 1.0) * np.float32(min(radii))


def air_cells(u, v, w, period: float) -> np.ndarray:
    """0–1: air between thin bony septa, a honeycomb of cells about ``period`` mm across."""
    k = np.float32(2 * np.pi / period)
    g = np.cos(u * k) + np.cos(v * (k * 1.13) + 0.7) + np.cos(w * (k * 0.91) + 1.9)
    return np.clip((g + 1.6) * 2.0, 0.0, 1.0)


def _cavity_sd(base: SkullBase, u, v, w):
    """Signed distances of the ethmoid, sphenoid and nasopharynx air."""
    ethmoid = ellipsoid_sd(u, v, w, (0.0, base.sinus_v, base.anterior - 15.0), (9.0, 20.0, 13.0))
    sph_w = base.middle + base.sella_rise - base.bone_t - 11.0
    sphenoid = ellipsoid_sd(u, v, w, (0.0, base.v_front + 14.0, sph_w), (11.0, 10.0, 9.0))
    naso_w = sph_w - 22.0
    naso = ellipsoid_sd(u, v, w, (0.0, base.v_front + 9.0, naso_w), (11.0, 8.0, 13.0))
    return ethmoid, sphenoid, naso


def _deep(base: SkullBase, g, pix: float) -> np.ndarray:
    """Soft tissue below the bony plate under the floor (inside the skin)."""
    return ramp(-(g.d_floor + base.plate(g.u, g.v)), pix) * ramp(g.d_out - g.scalp, pix)


def _spine(base: SkullBase, g, pix: float) -> list[tuple[float, np.ndarray]]:
    """C1 ring (anterior arch, lateral masses, posterior arch), the dens and the spinal canal."""
    u, v, w = g.u, g.v, g.w
    fm = np.float32(base.posterior)
    deep = _deep(base, g, pix)
    below = ramp(fm - 6.0 - w, pix) * deep
    dv = v - np.float32(base.dens_v)
    dens = ramp(5.0 - np.sqrt(u * u + dv * dv), pix) * ramp(fm - 9.0 - w, pix)
    cv = dv - 16.0
    ring_r = np.sqrt((u * np.float32(1 / 1.15)) ** 2 + cv * cv)
    c1_level = ramp(7.0 - np.abs(w - (fm - 18.0)), pix)
    ring = sheet(ring_r - 13.5, 2.5, pix) * c1_level * ramp(cv + 2.0, pix)
    arch = ramp(3.0 - np.sqrt(u * u * 0.08 + (dv + 9.0) ** 2), pix) * c1_level
    masses = ramp(7.0 - np.sqrt((np.abs(u) - 15.0) ** 2 + (dv - 3.0) ** 2), pix) * c1_level
    canal = ramp(9.5 - np.sqrt(u * u + cv * cv), pix) * below
    bone = np.maximum(np.maximum(ring, arch), masses) * below
    return [(30.0, canal), (base.diploe_hu, bone), (base.diploe_hu + 150.0, dens * deep)]


def _petrous(base: SkullBase, g, pix: float) -> np.ndarray:
    profile = base.petrous_profile(g.u, g.v)
    petrous = ramp(profile * 13.0 - 2.0, pix) * ramp(g.w - np.float32(base.middle - 14.0), pix)
    return petrous * ramp(-g.d_floor, pix)


def _mastoids(base: SkullBase, g, pix: float) -> list[tuple[float, np.ndarray]]:
    u, v, w = g.u, g.v, g.w
    mast_c = (base.mastoid_u, base.v_back + 14.0, base.middle - 8.0)
    mastoid = ellipsoid_sd(np.abs(u), v, w, mast_c, (base.mastoid_r * 0.7, base.mastoid_r, 14.0))
    air = ramp(-mastoid, pix) * air_cells(u, v, w, 4.0) * ramp(-g.d_in - 1.0, pix)
    return [(AIR, air * ramp(g.d_out - g.scalp - 1.5, pix))]


def _sinuses(base: SkullBase, g, pix: float) -> list[tuple[float, np.ndarray]]:
    u, v, w = g.u, g.v, g.w
    under = ramp(-g.d_floor, pix)
    ethmoid, sphenoid, naso = _cavity_sd(base, u, v, w)
    sinus = np.maximum(ramp(-ethmoid, pix) * air_cells(u, v, w, 6.0), ramp(-sphenoid, pix))
    # the pharyngeal airway continues down from the nasopharynx in front of the spine
    naso_c = base.middle + base.sella_rise - base.bone_t - 33.0
    dv = (v - np.float32(base.v_front + 9.0)) * np.float32(1 / 6.0)
    airway = ramp(np.float32(9.0) * (1.0 - np.sqrt((u * np.float32(1 / 9.0)) ** 2 + dv * dv)), pix)
    airway *= ramp(np.float32(naso_c) - w, pix)
    deep = _deep(base, g, pix)
    layers = [(AIR, sinus * under), (AIR, np.maximum(ramp(-naso, pix), airway) * deep)]
    if base.mucosa_mm > 0:  # mucosal thickening along the sinus walls
        lining = ramp(-sphenoid, pix) - ramp(-sphenoid - np.float32(base.mucosa_mm), pix)
        layers.append((30.0, np.clip(lining, 0.0, 1.0) * under))
    return layers


def _fat_planes(base: SkullBase, g, pix: float) -> list[tuple[float, np.ndarray]]:
    """Fat between the muscles of the face and neck (~12 % of the soft tissue, in 3 mm lobules)."""
    fat = np.clip((g.lump - np.float32(1.15)) * np.float32(2.5), 0.0, 1.0)
    return [(base.fat_hu, fat * _deep(base, g, pix))]


def plate_layers(base: SkullBase, g, pix: float) -> list[tuple[float, np.ndarray]]:
    """Bone just under the floor and soft tissue below it, over a whole voxel box ``g``."""
    deep = _deep(base, g, pix)
    bone_zone = ramp(-(g.d_floor + 1.5), pix) * ramp(g.d_out - g.scalp, pix) * (1.0 - deep)
    return [(base.diploe_hu, bone_zone), (base.soft_hu, deep)]


def _box(lo, hi, painter):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return (lo + hi) / 2, (hi - lo) / 2, painter


def base_parts(base: SkullBase):
    """The skull base's parts as (head-frame centre, half size, painter): each painter maps a
    voxel box's geometry to (HU, weight) layers; ``"petrous"`` marks the petrous bones."""
    crest = base.middle + base.petrous_h
    reach = base.v_back + base.ridge_slope * base.petrous_len
    fm = base.posterior
    return [
        (
            np.array([0.0, (base.v_back + reach) / 2, (crest + base.middle - 16.0) / 2]),
            np.array([base.petrous_len + 2.0, (reach - base.v_back) / 2 + 16.0, 20.0]),
            "petrous",
        ),
        (
            np.array([0.0, base.v_back + 14.0, base.middle - 8.0]),
            np.array([base.mastoid_u + base.mastoid_r, base.mastoid_r + 2.0, 16.0]),
            _mastoids,
        ),
        _box((-120.0, -150.0, fm - 70.0), (120.0, 120.0, base.middle - 6.0), _fat_planes),
        _box(
            (-14.0, base.sinus_v - 22.0, fm - 45.0),
            (14.0, base.v_front + 26.0, base.anterior),
            _sinuses,
        ),
        (
            np.array([0.0, base.dens_v + 10.0, fm - 20.0]),
            np.array([30.0, 30.0, 16.0]),
            _spine,
        ),
    ]


def petrous_layers(base: SkullBase, g, pix: float):
    weight = _petrous(base, g, pix)
    return [(base.petrous_hu, weight)], weight
