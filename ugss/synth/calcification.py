"""Physiological intracranial calcifications: bright dots that are not blood.

Present in a realistic share of adults, more often with age (the atrophy factor stands in for
age): pineal gland (~40–80 %), choroid plexus glomus in the atria of the lateral ventricles
(~35–75 %, usually both sides), globus pallidus (~8–25 %, both sides) and dural plaques on the falx
(~10–25 %). Each is a small ellipsoid of 150–450 HU; partial volume brings small ones down to
100–300 HU on a 5 mm slice, as on real scans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ugss.synth.geometry import box_corners


@dataclass(frozen=True)
class Calcification:
    kind: str  # "pineal" | "choroid" | "pallidum" | "dural"
    center: np.ndarray  # head frame (3,)
    radii: tuple[float, float, float]
    hu: float

    def bounds(self) -> np.ndarray:
        return box_corners(self.center, max(self.radii) + 2.0)

    def signed_distance(self, u, v, w) -> np.ndarray:
        d = None
        for x, c0, r in zip((u, v, w), self.center, self.radii, strict=True):
            t = ((x - np.float32(c0)) * np.float32(1 / r)) ** 2
            d = t if d is None else d + t
        return (np.sqrt(d) - 1.0) * np.float32(min(self.radii))


@dataclass(frozen=True)
class Calcifications:
    items: tuple[Calcification, ...]

    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted({c.kind for c in self.items}))


def _radii(rng, lo: float, hi: float, flat: float = 1.0) -> tuple[float, float, float]:
    r = float(rng.uniform(lo, hi))
    return (r * flat, r * float(rng.uniform(0.8, 1.2)), r * float(rng.uniform(0.8, 1.2)))


def draw_calcifications(
    rng: np.random.Generator, vent, atrophy: float, *, share: float = 1.0
) -> Calcifications:
    """The calcifications of one adult (``vent``: its Ventricles; ``atrophy`` 0–1).

    ``share`` multiplies each kind's odds (capped at 1): > 1 a population with more blood
    mimics, < 1 fewer; 1 (the default) draws exactly what it always drew.
    """
    items: list[Calcification] = []
    _, cv, cw = vent.third_center
    p_pineal, p_choroid = 0.4 + 0.4 * atrophy, 0.35 + 0.4 * atrophy
    p_pallidum, p_dural = 0.08 + 0.17 * atrophy, 0.1 + 0.15 * atrophy
    if share != 1.0:
        p_pineal, p_choroid, p_pallidum, p_dural = (
            min(1.0, p * share) for p in (p_pineal, p_choroid, p_pallidum, p_dural)
        )
    draws = rng.random(5)
    if draws[0] < p_pineal:
        c = np.array([0.0, cv + 13.0 + rng.uniform(0.0, 3.0), cw + rng.uniform(2.0, 6.0)])
        items.append(Calcification("pineal", c, _radii(rng, 1.5, 4.0), rng.uniform(150, 450)))
    if draws[1] < p_choroid:
        t = 0.6
        u = vent.u0 + vent.spread * t * t
        w = vent.w0 + vent.arch * (1.0 - t * t) - 0.3 * vent.rw
        sides = (1.0, -1.0) if rng.random() < 0.85 else (float(rng.choice([-1.0, 1.0])),)
        for side in sides:
            c = np.array([side * u, vent.v_mid + t * vent.length, w])
            items.append(
                Calcification("choroid", c, _radii(rng, 2.0, 4.5), float(rng.uniform(150, 400)))
            )
    if draws[2] < p_pallidum:
        r, hu = _radii(rng, 1.2, 3.0), float(rng.uniform(150, 350))
        for side in (1.0, -1.0):
            c = np.array([side * 18.0, vent.v_mid - 4.0, vent.w0 - 8.0])
            items.append(Calcification("pallidum", c, r, hu))
    if draws[3] < p_dural:
        top = vent.w0 + vent.arch + vent.rw + 10.0
        c = np.array([0.0, rng.uniform(-40.0, 40.0), top + rng.uniform(5.0, 20.0)])
        items.append(
            Calcification(
                "dural", c, (1.0, *_radii(rng, 4.0, 9.0)[1:]), float(rng.uniform(200, 450))
            )
        )
    return Calcifications(tuple(items))
