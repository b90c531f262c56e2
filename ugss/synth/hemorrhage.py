"""Intracranial hemorrhages with their typical shapes, places and densities.

Acute blood is 50–90 HU (clotted blood ~60–80 HU; layered or CSF-mixed blood lower). Shapes:

- intraparenchymal: lumpy ellipsoid in the basal ganglia/thalamus or a lobe, with a hypodense
  rim of perihematomal edema (~15–25 HU, not part of the mask);
- subdural: crescent along the inner table, flat-topped thickness profile so the inner margin
  stays concave; does not cross the midline;
- epidural: biconvex lens against the inner table, thicker and more compact; often a fracture;
- intraventricular: blood layering in the dependent (posterior, patient supine) part of one or
  both lateral ventricles, a fluid level in the scanner's frame;
- subarachnoid: thin strands filling sulci and the surface CSF layer over a region.

Each bleed gives a soft weight (partial volume) on a voxel box of head-frame geometry; the mask is
weight ≥ 0.5, so the mask and the painted densities agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ugss.errors import ConfigError
from ugss.synth.anatomy import HeadAnatomy, sulcal_taper, ventricle_sd
from ugss.synth.geometry import box_corners
from ugss.synth.partial import band, ramp, sheet

if TYPE_CHECKING:
    from ugss.synth.render import Geo

#: PhysioNet CT-ICH column order; label code = position + 1
TYPES: tuple[str, ...] = (
    "intraventricular",
    "intraparenchymal",
    "subarachnoid",
    "epidural",
    "subdural",
)
ALIASES = {
    "ivh": "intraventricular",
    "iph": "intraparenchymal",
    "ich": "intraparenchymal",
    "sah": "subarachnoid",
    "edh": "epidural",
    "sdh": "subdural",
}
_TYPE_WEIGHTS = {
    "intraparenchymal": 0.3,
    "subdural": 0.25,
    "subarachnoid": 0.17,
    "intraventricular": 0.15,
    "epidural": 0.13,
}
#: painting order: extra-axial first, blood inside the brain and ventricles last
PAINT_ORDER = ("epidural", "subdural", "subarachnoid", "intraparenchymal", "intraventricular")


#: blood against the inner table starts this many pixels below it: the pixel straddling the
#: table is mostly bone (~1500 HU) and stays out of the mask, as an annotator would draw it
BONE_GAP = 0.35


def _table_gap(geo: Geo) -> np.ndarray:
    """Depth below the inner table where blood starts: ``BONE_GAP`` pixels, plus half the
    extra slice-averaging width where the slice cuts the table obliquely (the vertex), so a
    labelled voxel is never a bone/blood mixture."""
    return np.float32(BONE_GAP * geo.pix) + np.float32(0.5) * (geo.pv - np.float32(geo.pix))


def type_code(kind: str) -> int:
    return TYPES.index(kind) + 1


def parse_types(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Type names (PhysioNet words or ivh/iph/sah/edh/sdh) → canonical names; '' or none → ()."""
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        for word in str(item).replace(";", ",").split(","):
            name = word.strip().lower()
            if name in ("", "none"):
                continue
            name = ALIASES.get(name, name)
            if name not in TYPES:
                raise ConfigError(
                    f"unknown hemorrhage type {word!r}; use one of {', '.join(TYPES)}"
                )
            if name not in out:
                out.append(name)
    return tuple(out)


class Bleed(Protocol):
    kind: str
    hu: float

    def bounds(self, anat: HeadAnatomy) -> np.ndarray:
        """Head-frame points whose bounding box holds the whole bleed."""
        ...

    def weight(self, geo: Geo, anat: HeadAnatomy) -> np.ndarray:
        """Blood fraction of each voxel of ``geo`` (0–1)."""
        ...


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


@dataclass(frozen=True, eq=False)
class Intraparenchymal:
    """Lumpy ellipsoid; ``axes`` columns are its principal directions in the head frame."""

    center: np.ndarray
    axes: np.ndarray
    radii: np.ndarray
    lump: float
    edema_mm: float
    hu: float
    kind: str = "intraparenchymal"

    def bounds(self, anat: HeadAnatomy) -> np.ndarray:
        reach = float(self.radii.max()) * (1 + 2.5 * self.lump) + self.edema_mm + 2.0
        return box_corners(self.center, reach)

    def signed_distance(self, geo: Geo) -> np.ndarray:
        """Approximate distance (mm) outside the lumpy surface (< 0 inside)."""
        cu, cv, cw = (float(x) for x in self.center)  # Python floats keep the arrays float32
        du, dv, dw = geo.u - cu, geo.v - cv, geo.w - cw
        rho2 = None
        for col in range(3):
            e = self.axes[:, col] / self.radii[col]
            p = du * np.float32(e[0]) + dv * np.float32(e[1]) + dw * np.float32(e[2])
            rho2 = p * p if rho2 is None else rho2 + p * p
        lump = np.clip(geo.lump, -2.5, 2.5) * np.float32(self.lump)
        return (np.sqrt(rho2) - 1.0 - lump) * np.float32(self.radii.mean())

    def weight(self, geo: Geo, anat: HeadAnatomy) -> np.ndarray:
        inside_brain = ramp(geo.d_in - anat.csf_t, geo.pix)
        return ramp(-self.signed_distance(geo), geo.pix) * inside_brain


@dataclass(frozen=True, eq=False)
class ExtraAxial:
    """Subdural crescent or epidural lens: thickness over a cap of directions around ``normal``."""

    kind: str  # "subdural" | "epidural"
    normal: np.ndarray  # centre direction (unit)
    t1: np.ndarray  # tangent, mostly anterior-posterior
    t2: np.ndarray  # tangent, mostly superior-inferior
    sigma1: float
    sigma2: float
    thickness: float  # maximum, mm
    side: int  # +1 left, -1 right (head frame u)
    hu: float
    fracture: bool = False
    fracture_halfwidth: float = 0.6

    def bounds(self, anat: HeadAnatomy) -> np.ndarray:
        a = np.linspace(-1.0, 1.0, 9)
        dirs = [
            _unit(self.normal + x * self.sigma1 * self.t1 + y * self.sigma2 * self.t2)
            for x in a
            for y in a
        ]
        dirs_arr = np.array(dirs)
        r_out = anat.outer_radius(dirs_arr)[:, None] * (1 + anat.max_deform) + 2.0
        r_in = np.maximum(anat.inner_radius(dirs_arr)[:, None] - self.thickness - 6.0, 0.0)
        return np.concatenate([dirs_arr * r_out, dirs_arr * r_in])

    def profile(self, geo: Geo) -> np.ndarray:
        """Relative thickness 0–1 over directions (0 outside the cap)."""
        inv_r = np.float32(1.0) / np.maximum(geo.rq, np.float32(1e-3))
        s1 = (
            geo.u * np.float32(self.t1[0])
            + geo.v * np.float32(self.t1[1])
            + geo.w * np.float32(self.t1[2])
        ) * inv_r
        s2 = (
            geo.u * np.float32(self.t2[0])
            + geo.v * np.float32(self.t2[1])
            + geo.w * np.float32(self.t2[2])
        ) * inv_r
        rho2 = (s1 * np.float32(1 / self.sigma1)) ** 2 + (s2 * np.float32(1 / self.sigma2)) ** 2
        front = (
            geo.u * np.float32(self.normal[0])
            + geo.v * np.float32(self.normal[1])
            + geo.w * np.float32(self.normal[2])
        ) > 0
        # subdural: flat top → concave inner margin, thin tapering tips; epidural: a lens
        prof = 1.0 - rho2 * rho2 if self.kind == "subdural" else 1.0 - rho2
        return np.where(front, np.clip(prof, 0.0, 1.0), np.float32(0.0))

    def weight(self, geo: Geo, anat: HeadAnatomy) -> np.ndarray:
        t = self.profile(geo) * np.float32(self.thickness)
        own_side = ramp(geo.u * np.float32(self.side) - 1.0, geo.pix)
        return band(geo.d_in, _table_gap(geo), t, geo.pix) * own_side

    def fracture_weight(self, geo: Geo) -> np.ndarray:
        """A fracture line through the skull over the lens: a plane across the AP tangent."""
        inv_r = np.float32(1.0) / np.maximum(geo.rq, np.float32(1e-3))
        dist = np.abs(
            geo.u * np.float32(self.t1[0])
            + geo.v * np.float32(self.t1[1])
            + geo.w * np.float32(self.t1[2])
        )
        cos0 = (
            geo.u * np.float32(self.normal[0])
            + geo.v * np.float32(self.normal[1])
            + geo.w * np.float32(self.normal[2])
        ) * inv_r
        near = ramp((cos0 - np.float32(np.cos(0.8 * self.sigma2))) * geo.rq, geo.pix)
        return sheet(dist, np.float32(self.fracture_halfwidth), geo.pix) * near


@dataclass(frozen=True, eq=False)
class Intraventricular:
    """Blood below a fluid level (RAS y, posterior = lower) in the chosen lateral ventricles."""

    sides: tuple[int, ...]  # +1 left, -1 right
    level_y: float
    hu: float
    kind: str = "intraventricular"

    def bounds(self, anat: HeadAnatomy) -> np.ndarray:
        lo, hi = anat.ventricles.head_box()
        return box_corners((lo + hi) / 2, (hi - lo) / 2)

    def weight(self, geo: Geo, anat: HeadAnatomy) -> np.ndarray:
        wgt = ramp(-ventricle_sd(geo.u, geo.v, geo.w, anat.ventricles), geo.pix)
        wgt *= ramp(np.float32(self.level_y) - geo.y_ras, geo.pix)
        if len(self.sides) == 1:
            wgt *= ramp(geo.u * np.float32(self.sides[0]), geo.pix)
        return wgt


@dataclass(frozen=True, eq=False)
class Subarachnoid:
    """Blood in the sulci and the surface CSF layer within a ball around ``center``."""

    center: np.ndarray
    radius: float
    halfwidth: float  # of the blood-filled sulci (mm)
    layer: float  # thickness of the blood-filled surface layer (mm)
    hu: float
    kind: str = "subarachnoid"

    def bounds(self, anat: HeadAnatomy) -> np.ndarray:
        return box_corners(self.center, self.radius + 2.0)

    def weight(self, geo: Geo, anat: HeadAnatomy) -> np.ndarray:
        cu, cv, cw = (float(x) for x in self.center)
        du, dv, dw = geo.u - cu, geo.v - cv, geo.w - cw
        ball = ramp(np.float32(self.radius) - np.sqrt(du * du + dv * dv + dw * dw), geo.pix)
        depth = np.float32(anat.sulcal_depth)
        strands = sheet(geo.ds, np.float32(self.halfwidth) * sulcal_taper(geo.d_in, depth), geo.pix)
        surface = band(geo.d_in, _table_gap(geo), self.layer, geo.pix)
        return np.maximum(strands * ramp(geo.d_in, geo.pix), surface) * ball


# --- drawing ---------------------------------------------------------------------------------


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _tangents(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tangent 1 close to the anterior-posterior axis, tangent 2 completing the frame."""
    ap = np.array([0.0, 1.0, 0.0])
    t1 = _unit(ap - normal * (ap @ normal))
    return t1, np.cross(normal, t1)


def draw_iph(rng, anat: HeadAnatomy, ml: float, pix: float) -> Intraparenchymal:
    vent = anat.ventricles
    r0 = max((3.0 * ml * 1000.0 / (4.0 * np.pi)) ** (1 / 3), 1.5 * pix)
    elong = np.array([1.0, rng.uniform(0.65, 1.0), rng.uniform(0.55, 0.9)])
    radii = r0 * elong / np.cbrt(elong.prod())
    axes = _random_rotation(rng)
    semi = anat.brain_semi_axes
    center = np.zeros(3)
    for attempt in range(40):
        shrink = 1.0 if attempt < 20 else 0.85 ** (attempt - 19)
        if rng.random() < 0.45:  # deep: basal ganglia / thalamus
            side = rng.choice([-1.0, 1.0])
            center = np.array(
                [
                    side * rng.uniform(14.0, 26.0),
                    vent.v_mid + rng.uniform(-14.0, 10.0),
                    vent.w0 + rng.uniform(-14.0, 2.0),
                ]
            )
        else:  # lobar
            d = _unit(rng.standard_normal(3) * np.array([1.0, 1.0, 0.6]) + [0, 0, 0.25])
            center = d * semi * rng.uniform(0.35, 0.75)
        reach = radii.max() * shrink
        fits = np.linalg.norm(center / semi) + reach * 1.15 / semi.min() < 0.93
        clear = float(ventricle_sd(*(np.array([x], np.float32) for x in center), vent)[0]) > 2.0
        if fits and clear:
            radii = radii * shrink
            break
    return Intraparenchymal(
        center=center,
        axes=axes,
        radii=radii,
        lump=rng.uniform(0.1, 0.22),
        edema_mm=rng.uniform(1.5, 5.0),
        hu=rng.uniform(60.0, 80.0),
    )


def draw_extra_axial(rng, anat: HeadAnatomy, kind: str, ml: float, pix: float) -> ExtraAxial:
    side = int(rng.choice([-1, 1]))
    r_in = float(np.mean(anat.brain_semi_axes))
    t_min = max(2.0, 1.6 * pix)
    if kind == "subdural":
        normal = _unit(np.array([side * 1.0, rng.uniform(-0.35, 0.35), rng.uniform(0.05, 0.6)]))
        thick = float(np.clip(2.0 + 0.22 * ml, t_min, 22.0))
        area = ml * 1000.0 / (r_in**2 * thick * 2.0 * np.pi / 3.0)  # ∫(1−ρ⁴) = 2π/3
        aspect = rng.uniform(1.1, 1.6)
        sig_max = 0.85
        hu = rng.uniform(55.0, 80.0)
    else:
        normal = _unit(np.array([side * 1.0, rng.uniform(-0.5, 0.5), rng.uniform(-0.25, 0.45)]))
        thick = float(np.clip(5.0 + 0.3 * ml, t_min + 1.0, 32.0))
        area = ml * 1000.0 / (r_in**2 * thick * np.pi / 2.0)  # ∫(1−ρ²) = π/2
        aspect = rng.uniform(1.0, 1.35)
        sig_max = 0.6
        hu = rng.uniform(58.0, 78.0)
    sigma2 = float(np.clip(np.sqrt(area / aspect), 0.12, sig_max))
    sigma1 = float(np.clip(area / sigma2, 0.12, sig_max * 1.2))
    t1, t2 = _tangents(normal)
    return ExtraAxial(
        kind=kind,
        normal=normal,
        t1=t1,
        t2=t2,
        sigma1=sigma1,
        sigma2=sigma2,
        thickness=thick,
        side=side,
        hu=hu,
        fracture=bool(kind == "epidural" and rng.random() < 0.7),
        fracture_halfwidth=max(rng.uniform(0.4, 0.9), 0.6 * pix),
    )


def draw_ivh(rng, anat: HeadAnatomy, ml: float, pix: float, to_ras) -> Intraventricular:
    """``to_ras`` maps head-frame points to RAS; the level is a quantile of ventricle RAS y."""
    lo, hi = anat.ventricles.head_box()
    axes = [np.arange(a, b, 1.5, dtype=np.float32) for a, b in zip(lo, hi, strict=True)]
    u, v, w = np.meshgrid(*axes, indexing="ij")
    inside = ventricle_sd(u, v, w, anat.ventricles) < 0
    pts = np.stack([u[inside], v[inside], w[inside]], axis=1).astype(np.float64)
    sides = (1, -1) if rng.random() < 0.4 else (int(rng.choice([-1, 1])),)
    pts = pts[np.isin(np.sign(pts[:, 0]), sides)]
    ras_y = to_ras(pts)[:, 1]
    capacity = len(pts) * 1.5**3 / 1000.0  # mL of ventricle on those sides
    frac = float(np.clip(ml / max(capacity, 1e-6), 0.15, 1.0))
    level = float(np.quantile(ras_y, frac)) if len(ras_y) else 0.0
    return Intraventricular(sides=sides, level_y=level, hu=rng.uniform(56.0, 72.0))


def draw_sah(rng, anat: HeadAnatomy, ml: float, pix: float) -> Subarachnoid:
    side = rng.choice([-1.0, 1.0])
    if rng.random() < 0.35:  # sylvian fissure region
        d = _unit(np.array([side, rng.uniform(-0.4, 0.0), rng.uniform(-0.2, 0.1)]))
    else:  # convexity
        d = _unit(
            np.array([side * rng.uniform(0.2, 1.0), rng.uniform(-0.8, 0.8), rng.uniform(0.1, 1.0)])
        )
    center = d * anat.inner_radius(d[None])[0]
    ml = min(ml, 15.0)  # subarachnoid blood is thin; a larger share would flood the hemisphere
    radius = float(np.clip((ml * 1000.0 / (0.035 * 4.19)) ** (1 / 3), 12.0, 38.0))
    return Subarachnoid(
        center=center,
        radius=radius,
        halfwidth=max(anat.sulcal_halfwidth + rng.uniform(0.3, 0.8), 1.1 * pix, 0.9),
        layer=max(anat.csf_t, 1.6 * pix, 1.5),
        hu=rng.uniform(55.0, 70.0),
    )


def draw_bleeds(
    rng: np.random.Generator,
    anat: HeadAnatomy,
    kinds: Sequence[str],
    total_ml: float,
    pix: float,
    to_ras,
) -> list[Bleed]:
    """One bleed per kind, sharing ``total_ml`` (target; the mask decides the truth)."""
    if not kinds:
        return []
    shares = rng.dirichlet(np.full(len(kinds), 2.0)) if len(kinds) > 1 else np.ones(1)
    bulky = [i for i, k in enumerate(kinds) if k in ("subdural", "intraparenchymal", "epidural")]
    if total_ml >= 30.0 and len(kinds) > 1 and bulky:  # a large bleed: one type holds most
        main = bulky[int(rng.integers(len(bulky)))]
        shares = shares * (0.2 / (1.0 - shares[main] + 1e-9))
        shares[main] = 0.8
    bleeds: list[Bleed] = []
    for kind, share in zip(kinds, shares, strict=True):
        ml = max(float(total_ml * share), 0.2)
        if kind == "intraparenchymal":
            bleeds.append(draw_iph(rng, anat, ml, pix))
        elif kind in ("subdural", "epidural"):
            bleeds.append(draw_extra_axial(rng, anat, kind, ml, pix))
        elif kind == "intraventricular":
            bleeds.append(draw_ivh(rng, anat, ml, pix, to_ras))
        else:
            bleeds.append(draw_sah(rng, anat, ml, pix))
    return sorted(bleeds, key=lambda b: PAINT_ORDER.index(b.kind))


def random_kinds(rng: np.random.Generator, include: str | None = None) -> tuple[str, ...]:
    """1–3 distinct types with clinical-ish frequencies (always containing ``include``)."""
    n = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    names = [k for k in _TYPE_WEIGHTS if k != include]
    p = np.array([_TYPE_WEIGHTS[k] for k in names])
    picked = [names[i] for i in rng.choice(len(names), size=n, replace=False, p=p / p.sum())]
    if include is not None:
        picked = [include, *picked[: n - 1]]
    return tuple(t for t in TYPES if t in picked)
