"""Per-patient head anatomy: shape, layer thicknesses, ventricles and tissue densities.

Everything is in the head frame (mm; u → left, v → posterior, w → superior, origin at the centre
of the head's outer ellipsoid). The values are drawn from adult non-contrast head CT ranges:

- scalp and soft tissue 20–60 HU, 3–7 mm thick (thicker over the temporalis muscle);
- skull: cortical tables ~1400–1800 HU around a diploic core ~700–1000 HU, 4–9 mm thick, thin over
  the temporal squama (2–4 mm), thick at the occiput and the skull base;
- CSF 0–15 HU; grey matter 35–45 HU; white matter 25–32 HU (grey–white contrast ~8–12 HU);
- head 140–160 mm wide, 180–200 mm long (outer scalp); below the centre the head is a rounded
  cylinder (an L4 profile stretched downwards) rather than an ellipsoid cap, so the skull base,
  face and upper neck keep a realistic width;
- ventricles sized by an atrophy factor (young adult ~7 mL per lateral ventricle, more with age).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ugss.synth.calcification import Calcifications, draw_calcifications
from ugss.synth.dura import Dura, draw_dura
from ugss.synth.face import Face, draw_face
from ugss.synth.skullbase import SkullBase, draw_skull_base


@dataclass(frozen=True)
class TissueHU:
    """Mean densities of one patient's tissues (HU) and the scan's noise level."""

    scalp: float
    diploe: float
    cortical: float
    csf: float
    grey: float
    white: float
    falx: float
    table_spill: float  # bone spilling into the first mm under the inner table (HU at the table)
    texture_sd: float  # grey/white mottling, smooth
    noise_sd: float  # quantum noise in the brain, 3–8 HU


@dataclass(frozen=True)
class Ventricles:
    """Lateral ventricles as two arched tubes, plus a slit-like third ventricle (mm)."""

    u0: float  # distance of each body's axis from the midline
    v_mid: float  # AP centre of the lateral ventricles
    w0: float  # height of the bodies' axis at the ends
    length: float  # AP half length
    ru: float  # half width (left-right)
    rw: float  # half height
    arch: float  # how much the middle rises above the ends
    spread: float  # how far the frontal and occipital horns diverge from the midline
    third_halfwidth: float

    @property
    def third_center(self) -> tuple[float, float, float]:
        return (0.0, self.v_mid + 0.15 * self.length, self.w0 - 14.0)

    def head_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Head-frame (low, high) corners of everything deep: ventricles and nuclei."""
        lo = np.array([-36.0, self.v_mid - self.length - 10.0, self.w0 - 32.0])
        hi = np.array([36.0, self.v_mid + self.length + 10.0, self.w0 + self.arch + self.rw + 6])
        return lo, hi


@dataclass(frozen=True)
class HeadAnatomy:
    """One patient's head, all lengths in mm."""

    a: float  # outer half width (u)
    b: float  # outer half length (v)
    c: float  # outer half height (w) above the centre
    c_low: float  # reach of the L4 profile below the centre (> c: a cylinder-like lower head)
    egg: float  # wider occiput, narrower forehead
    deform: float  # amplitude of the smooth random shape deformation (fraction of radius)
    scalp_t: float
    skull_t: float
    temporal_thinning: float  # fraction of skull thickness lost over the temporal squama
    base_thickening: float  # extra thickness factor towards the skull base
    csf_t: float  # subarachnoid CSF between inner table and cortex
    cortex_t: float
    sulcal_depth: float
    sulcal_halfwidth: float
    gyral_wavelength: tuple[float, float]  # sulcus-to-sulcus-to-sulcus distance range at the cortex
    fissure_halfwidth: float
    atrophy: float  # 0 (young) … 1 (old)
    ventricles: Ventricles
    base: SkullBase
    face: Face
    dura: Dura
    calc: Calcifications
    hu: TissueHU

    @property
    def max_deform(self) -> float:
        """Largest relative radius change (random field is clipped at ±2.5 σ)."""
        return 2.5 * self.deform + abs(self.egg)

    @property
    def brain_semi_axes(self) -> np.ndarray:
        """Rough semi-axes of the intracranial space (for placing lesions)."""
        inset = self.scalp_t + self.skull_t + self.csf_t
        return np.array([self.a - inset, self.b - inset, self.c - inset])

    def outer_radius(self, directions: np.ndarray) -> np.ndarray:
        """Undeformed outer radius along unit head-frame directions ``(N, 3)``."""
        d = np.atleast_2d(directions)
        h2 = (d[:, 0] / self.a) ** 2 + (d[:, 1] / self.b) ** 2
        up = np.sqrt(h2 + (d[:, 2] / self.c) ** 2)
        down = np.sqrt(np.sqrt(h2 * h2 + (d[:, 2] / self.c_low) ** 4))
        return 1.0 / np.where(d[:, 2] >= 0, up, down)

    def inner_radius(self, directions: np.ndarray) -> np.ndarray:
        """Approximate radius of the inner skull table along unit directions."""
        d = np.atleast_2d(directions)
        return self.outer_radius(d) - self.scalp_t - self.skull_t * (1 + 0.2 * d[:, 1])


def draw_anatomy(
    rng: np.random.Generator,
    *,
    noise_sd: float | None = None,
    atrophy: float | None = None,
    head_scale: float = 1.0,
    mimic_scale: float = 1.0,
) -> HeadAnatomy:
    """A random adult head.

    ``atrophy`` (0–1) replaces the drawn atrophy factor (ventricles, sulci, fissures and
    calcification odds follow it); ``head_scale`` multiplies the drawn outer head size (width,
    length, height); ``mimic_scale`` multiplies the odds of each physiological calcification
    (``draw_calcifications``). The defaults draw exactly what they always drew (the random
    stream is consumed the same way whatever the overrides).
    """
    drawn_atrophy = float(rng.beta(1.6, 2.2))
    atrophy = drawn_atrophy if atrophy is None else float(atrophy)
    width = rng.uniform(140.0, 160.0)
    length = rng.uniform(180.0, 200.0)
    height = rng.uniform(150.0, 175.0)
    if head_scale != 1.0:
        width, length, height = (float(x * head_scale) for x in (width, length, height))
    scale = 1.0 + 0.8 * atrophy  # ventricles grow with age
    ru = float(rng.uniform(3.5, 5.0) * np.sqrt(scale))  # Python floats: arrays stay float32
    vent = Ventricles(
        u0=ru + rng.uniform(1.5, 3.0),
        v_mid=rng.uniform(-8.0, 2.0),
        w0=rng.uniform(-2.0, 8.0),
        length=rng.uniform(30.0, 38.0),
        ru=ru,
        rw=float(rng.uniform(5.0, 7.0) * np.sqrt(scale)),
        arch=rng.uniform(6.0, 12.0),
        spread=rng.uniform(6.0, 12.0),
        third_halfwidth=float(rng.uniform(1.0, 2.0) * scale),
    )
    c_low = height / 2.0 * rng.uniform(1.5, 1.7)
    grey = rng.uniform(36.0, 44.0)
    hu = TissueHU(
        scalp=rng.uniform(25.0, 50.0),
        diploe=rng.uniform(700.0, 1000.0),
        cortical=rng.uniform(1450.0, 1800.0),
        csf=rng.uniform(2.0, 12.0),
        grey=grey,
        white=min(rng.uniform(26.0, 31.0), grey - 7.0),
        falx=rng.uniform(45.0, 70.0),
        table_spill=rng.uniform(30.0, 70.0),
        texture_sd=rng.uniform(1.0, 2.0),
        noise_sd=float(noise_sd) if noise_sd is not None else rng.uniform(3.0, 8.0),
    )
    base = draw_skull_base(rng, width / 2.0, length / 2.0, height / 2.0)
    return HeadAnatomy(
        a=width / 2.0,
        b=length / 2.0,
        c=height / 2.0,
        c_low=c_low,
        egg=rng.uniform(0.0, 0.05),
        deform=rng.uniform(0.008, 0.018),
        scalp_t=rng.uniform(3.5, 6.5),
        skull_t=rng.uniform(5.0, 7.5),
        temporal_thinning=rng.uniform(0.4, 0.6),
        base_thickening=rng.uniform(1.0, 2.0),
        csf_t=rng.uniform(0.8, 1.5) + 2.0 * atrophy,
        cortex_t=rng.uniform(2.5, 3.5),
        sulcal_depth=rng.uniform(12.0, 20.0),
        sulcal_halfwidth=rng.uniform(0.35, 0.6) + 1.0 * atrophy,
        gyral_wavelength=(rng.uniform(16.0, 20.0), rng.uniform(24.0, 30.0)),
        fissure_halfwidth=rng.uniform(0.8, 1.5) + 1.5 * atrophy,
        atrophy=atrophy,
        ventricles=vent,
        base=base,
        face=draw_face(rng, base, width / 2.0, length / 2.0, height / 2.0, c_low),
        dura=draw_dura(rng, base, vent_w=vent.w0, a=width / 2.0, b=length / 2.0),
        calc=draw_calcifications(rng, vent, atrophy, share=mimic_scale),
        hu=hu,
    )


def ventricle_sd(u: np.ndarray, v: np.ndarray, w: np.ndarray, vent: Ventricles) -> np.ndarray:
    """Approximate signed distance (mm, < 0 inside) to the ventricular system."""
    t = (v - np.float32(vent.v_mid)) * np.float32(1.0 / vent.length)
    t2 = t * t
    uc = vent.u0 + vent.spread * t2
    wc = vent.w0 + vent.arch * (1.0 - t2)
    du = (np.abs(u) - uc) * np.float32(1.0 / vent.ru)
    dw = (w - wc) * np.float32(1.0 / vent.rw)
    lat = (np.sqrt(du * du + dw * dw + t2 * t2) - 1.0) * np.float32(min(vent.ru, vent.rw))
    cu, cv, cw = vent.third_center
    r3 = (vent.third_halfwidth, 11.0, 9.0)
    d3 = ((u - cu) / r3[0]) ** 2 + ((v - cv) / r3[1]) ** 2 + ((w - cw) / r3[2]) ** 2
    third = (np.sqrt(d3) - 1.0) * np.float32(r3[0])
    return np.minimum(lat, third)


def deep_grey_sd(u: np.ndarray, v: np.ndarray, w: np.ndarray, vent: Ventricles) -> np.ndarray:
    """Approximate signed distance (mm) to thalami, lentiform and caudate nuclei (both sides)."""
    au = np.abs(u)
    _, cv, cw = vent.third_center
    nuclei = (
        # (u, v, w) centre, (ru, rv, rw) radii
        ((vent.third_halfwidth + 8.0, cv + 5.0, cw + 3.0), (7.0, 12.0, 8.0)),  # thalamus
        ((21.0, vent.v_mid - 6.0, vent.w0 - 7.0), (5.0, 13.0, 9.0)),  # lentiform
        ((vent.u0 + vent.ru + 1.5, vent.v_mid - 0.6 * vent.length, vent.w0 + 2.0), (3.5, 8.0, 7.0)),
    )
    out = None
    for (nu, nv, nw), (ru, rv, rw) in nuclei:
        d = ((au - nu) / ru) ** 2 + ((v - nv) / rv) ** 2 + ((w - nw) / rw) ** 2
        sd = (np.sqrt(d) - 1.0) * np.float32(min(ru, rv, rw))
        out = sd if out is None else np.minimum(out, sd)
    assert out is not None
    return out


def sulcal_taper(d_in: np.ndarray, depth: float) -> np.ndarray:
    """Relative sulcal width at a depth below the inner table: open at the top, closed at depth."""
    return np.clip(np.float32(1.25) - d_in * np.float32(1.0 / depth), 0.0, 1.0)
