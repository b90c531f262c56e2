"""The skull base: what the lowest slices of a head CT cut through.

The cranial floor is a surface ``w = F(u, v)`` in steps, as on a real skull: the anterior fossa
(orbital roofs, ~⅓ of the half height below the centre) in front, the deeper middle fossae
(temporal lobes) with the sella/sphenoid ridge raised in the midline, and the posterior fossa
lowest, below the usual scan start. Depth above this floor joins the depth below the inner table
(the smaller wins), so brain, CSF and extra-axial blood all stop at the floor and everything below
it inside the skull is bone: a cortical floor (~1500 HU) over cancellous bone (~700–1000 HU).
Within it lie the orbits (fat about −80 HU around a globe of ~15 HU) and the ethmoid and sphenoid
sinuses (air, about −950 HU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ugss.synth.partial import ramp


@dataclass(frozen=True)
class SkullBase:
    """Heights are head-frame w (mm, negative = below the centre), lengths in mm."""

    anterior: float  # floor of the anterior fossa
    middle: float  # floor of the middle fossae
    posterior: float  # floor of the posterior fossa
    sella_rise: float  # midline sphenoid ridge above the middle floor
    v_front: float  # anterior/middle fossa border (AP, head frame v)
    v_back: float  # middle/posterior border (petrous ridges) at the midline; runs back laterally
    bone_t: float  # bony floor thickness before the cavities below
    orbit_u: float
    orbit_v: float
    orbit_w: float
    orbit_r: float
    globe_r: float
    sinus_v: float  # centre of the ethmoid/sphenoid air along v
    diploe_hu: float
    fat_hu: float
    globe_hu: float

    @property
    def top(self) -> float:
        """Highest point of the floor: above it nothing changes."""
        return max(self.anterior, self.middle + self.sella_rise)

    def floor(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Height ``F(u, v)`` of the cranial floor."""
        # linear steps 12 mm wide: smooth enough, and no exp() over millions of voxels
        front = np.clip(0.5 - (v - np.float32(self.v_front)) * np.float32(1 / 12.0), 0.0, 1.0)
        ridge = np.float32(self.v_back) + np.float32(0.5) * np.abs(u)  # petrous ridges: a V
        back = np.clip(0.5 + (v - ridge) * np.float32(1 / 12.0), 0.0, 1.0)
        bump = np.clip(1.0 - (u * np.float32(1 / 20.0)) ** 2, 0.0, None)
        mid = np.float32(self.middle) + np.float32(self.sella_rise) * bump * bump
        return (
            mid
            + front * (np.float32(self.anterior) - mid)
            + back * (np.float32(self.posterior) - mid)
        )


def draw_skull_base(rng: np.random.Generator, a: float, b: float, c: float) -> SkullBase:
    """A skull base scaled to an outer head of half width ``a``, length ``b``, height ``c``."""
    anterior = -rng.uniform(0.26, 0.34) * c
    orbit_r = rng.uniform(15.0, 17.0)
    return SkullBase(
        anterior=anterior,
        middle=-rng.uniform(0.5, 0.58) * c,
        posterior=-0.95 * c,
        sella_rise=rng.uniform(0.12, 0.2) * c,
        v_front=-rng.uniform(0.26, 0.34) * b,
        v_back=-rng.uniform(0.0, 0.08) * b,
        bone_t=rng.uniform(3.0, 5.0),
        orbit_u=rng.uniform(0.3, 0.36) * a,
        orbit_v=-(b - rng.uniform(30.0, 36.0)),
        orbit_w=anterior - orbit_r - rng.uniform(1.0, 4.0),
        orbit_r=orbit_r,
        globe_r=rng.uniform(11.0, 12.5),
        sinus_v=-(b - rng.uniform(38.0, 46.0)),
        diploe_hu=rng.uniform(650.0, 950.0),
        fat_hu=rng.uniform(-100.0, -60.0),
        globe_hu=rng.uniform(8.0, 20.0),
    )


def _ellipsoid_sd(u, v, w, center, radii) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipsoid."""
    d = None
    for x, c0, r in zip((u, v, w), center, radii, strict=True):
        t = ((x - np.float32(c0)) * np.float32(1 / r)) ** 2
        d = t if d is None else d + t
    return (np.sqrt(d) - 1.0) * np.float32(min(radii))


def cavities(
    base: SkullBase, u, v, w, d_floor, d_skull, pix: float
) -> list[tuple[float, np.ndarray]]:
    """(HU, weight) layers to paint, in order, beneath the cranial floor inside the skull."""
    inside = ramp(d_skull - 1.5, pix)
    below = ramp(-(d_floor + np.float32(base.bone_t)), pix) * inside
    au = np.abs(u)
    r = base.orbit_r
    orbit_c = (base.orbit_u, base.orbit_v, base.orbit_w)
    orbit = ramp(-_ellipsoid_sd(au, v, w, orbit_c, (r * 0.95, r * 1.3, r * 0.95)), pix)
    globe_c = (base.orbit_u, base.orbit_v - r * 0.6, base.orbit_w)
    globe = ramp(-_ellipsoid_sd(au, v, w, globe_c, (base.globe_r,) * 3), pix)
    ethmoid_c = (0.0, base.sinus_v, base.anterior - 15.0)
    ethmoid = ramp(-_ellipsoid_sd(u, v, w, ethmoid_c, (9.0, 20.0, 13.0)), pix)
    sphenoid_c = (0.0, base.v_front + 14.0, base.middle + base.sella_rise - base.bone_t - 11.0)
    sphenoid = ramp(-_ellipsoid_sd(u, v, w, sphenoid_c, (11.0, 10.0, 9.0)), pix)
    return [
        (base.diploe_hu, below),
        (base.fat_hu, orbit * inside),
        (base.globe_hu, globe * inside),
        (-950.0, np.maximum(ethmoid, sphenoid) * inside),
    ]
