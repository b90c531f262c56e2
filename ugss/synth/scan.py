"""One synthetic head CT in memory: ``make_case`` → SynthCase (volume, mask, truth, cavity);
``make_scan`` → (Volume, mask, ScanTruth), the same scan without the cavity.

The truth is read off the rendered label map, never off the intentions: a type is listed only
if it has voxels, and volumes are voxel count × voxel volume on the scan's own grid (eq. 12).
Slice indices in the truth are 0-based along the canonical inferior→superior axis, which is also
the stored file's third axis (storage orientations only flip or swap the in-plane axes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ugss.errors import ConfigError
from ugss.runtime.volume import Volume, VolumeSource
from ugss.synth.anatomy import HeadAnatomy, draw_anatomy
from ugss.synth.artefacts import draw_artefacts, draw_noise_sd
from ugss.synth.fields import DirectionalField, LatticeField
from ugss.synth.geometry import (
    STORAGE_AXCODES,
    HeadPose,
    ScanGrid,
    check_axcodes,
    exact_mm,
    storage_grid,
)
from ugss.synth.hemorrhage import (
    TYPES,
    Bleed,
    ExtraAxial,
    Intraparenchymal,
    Intraventricular,
    Subarachnoid,
    draw_bleeds,
    draw_extra_axial,
    parse_types,
    random_kinds,
)
from ugss.synth.render import STRUCTURES, Scene, outer_points, render

MIN_MATRIX, MAX_MATRIX = 32, 1024
THIN_THICKNESS = (1.0, 1.25, 2.5)
THIN_MAX_SLICES = 64  # thin scans cover a slab around the lesion: cost stays ~2 × a 5 mm scan
FOV_LAYOUTS = ("square", "rect", "small")
KERNELS = ("soft", "sharp")
LARGE_SHARE = 0.3  # scans with a large (≈ 30–90 mL) bleed, when no volume is asked
_MARGIN_MM = 4.0  # air kept between the head and the edge of the image


@dataclass(frozen=True)
class ScanTruth:
    """What a synthetic scan contains. Paths are relative to the cohort folder (empty in memory)."""

    scan_id: str
    seed: int
    types: tuple[str, ...]  # present types, PhysioNet order; () when hemorrhage-free
    volume_ml: float  # mask voxels × voxel volume
    volumes_ml: dict[str, float] = field(hash=False)  # per type
    positive_slices: tuple[int, ...]  # 0-based canonical slice indices with any blood
    slice_types: tuple[tuple[str, ...], ...]  # per slice: the types on it
    fracture_slices: tuple[int, ...]  # 0-based slices where a skull fracture line shows
    spacing: tuple[float, float, float]  # (z, y, x) mm
    shape: tuple[int, int, int]  # (z, y, x)
    orientation: str  # voxel axis codes of the stored file, e.g. "LPS" (canonical) or "RAS"
    thin: bool
    noise_sd: float
    ct_path: str = ""
    mask_path: str = ""
    dicom_dir: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def n_positive_slices(self) -> int:
        return len(self.positive_slices)

    @property
    def hemorrhage(self) -> bool:
        return bool(self.types)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["n_positive_slices"] = self.n_positive_slices
        return out


def _rng_and_seed(rng_or_seed: int | np.random.Generator | None) -> tuple[np.random.Generator, int]:
    """A generator plus an integer seed that regenerates the same scan with ``make_scan(seed)``."""
    if isinstance(rng_or_seed, np.random.Generator):
        seed = int(rng_or_seed.integers(0, 2**63 - 1))
    elif rng_or_seed is None:
        seed = 0
    else:
        seed = int(rng_or_seed)
        if seed < 0:
            raise ConfigError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(seed), seed


def _layout(rng, matrix: int, fov: str | None) -> tuple[int, int, str]:
    if fov is None:
        fov = str(rng.choice(FOV_LAYOUTS, p=[0.75, 0.15, 0.10]))
    if fov not in FOV_LAYOUTS:
        raise ConfigError(f"fov must be one of {', '.join(FOV_LAYOUTS)}, got {fov!r}")
    if fov == "square":
        return matrix, matrix, fov
    cut = 2 * round(matrix * rng.uniform(0.78, 0.9) / 2)
    return (matrix, cut, fov) if fov == "rect" else (cut, cut, fov)


def _in_plane(
    rng,
    anat: HeadAnatomy,
    pose: HeadPose,
    matrix: int,
    rows: int,
    cols: int,
    spacing: float | None,
    fov_scale: float = 1.0,
):
    """Pixel spacing and the head centre's RAS x, y so the head fits inside the image.

    The spacing is drawn for the nominal ``matrix`` (0.4–0.5 mm at 512, times ``fov_scale``), so
    a cut-down layout has a smaller field of view, enlarged only as far as the head needs.
    """
    pts = outer_points(anat, pose) - pose.center
    ext = pts.max(axis=0) - pts.min(axis=0)
    need = max((ext[0] + 2 * _MARGIN_MM) / cols, (ext[1] + 2 * _MARGIN_MM) / rows)
    if spacing is None:
        s = max(rng.uniform(0.4, 0.5) * fov_scale * 512.0 / matrix, need)
        s = np.ceil(s * 1024.0) / 1024.0
    else:
        s = exact_mm(spacing)
        if s < need:
            raise ConfigError(
                f"pixel spacing {spacing} mm gives a {cols * s:.0f} × {rows * s:.0f} mm field of "
                f"view; this head needs {need * cols:.0f} × {need * rows:.0f} mm"
            )
    ox = exact_mm(s * (cols - 1) / 2 + rng.uniform(-5.0, 5.0))
    oy = exact_mm(s * (rows - 1) / 2 + rng.uniform(-5.0, 5.0))
    # image spans x ∈ [ox − s(cols − ½), ox + s/2], y likewise; keep the head inside with margin
    lo_x, hi_x = (
        ox - s * (cols - 0.5) + _MARGIN_MM - pts[:, 0].min(),
        ox + s / 2 - _MARGIN_MM - pts[:, 0].max(),
    )
    lo_y, hi_y = (
        oy - s * (rows - 0.5) + _MARGIN_MM - pts[:, 1].min(),
        oy + s / 2 - _MARGIN_MM - pts[:, 1].max(),
    )
    cx = rng.uniform(min(lo_x, hi_x), max(lo_x, hi_x))
    cy = rng.uniform(min(lo_y, hi_y), max(lo_y, hi_y))
    return float(s), ox, oy, cx, cy


def _focus(bleed: Bleed, anat: HeadAnatomy) -> np.ndarray:
    """A head-frame point the lesion certainly covers (thin slabs are placed around it)."""
    if isinstance(bleed, Intraparenchymal | Subarachnoid):
        return bleed.center
    if isinstance(bleed, ExtraAxial):
        return bleed.normal * (anat.inner_radius(bleed.normal[None])[0] - 0.5 * bleed.thickness)
    v, side = anat.ventricles, bleed.sides[0] if isinstance(bleed, Intraventricular) else 1
    return np.array([v.u0 * side, v.v_mid + 0.6 * v.length, v.w0])  # an occipital horn


def _coverage(rng, anat: HeadAnatomy, pose: HeadPose) -> tuple[float, float]:
    """RAS z of the lowest and highest slice wanted: most scans run from the skull base to the
    vertex; some start through the face and C1, some higher up, some stop below the vertex."""
    pts = outer_points(anat, pose)
    start = rng.choice(3, p=[0.25, 0.55, 0.2])
    depth = (rng.uniform(1.0, 1.25), rng.uniform(0.62, 0.85), rng.uniform(0.35, 0.55))[start]
    bottom = pose.center[2] - depth * anat.c
    if rng.random() < 0.15:
        top = pts[:, 2].max() - rng.uniform(10.0, 35.0)
    else:
        top = pts[:, 2].max() - rng.uniform(-8.0, 2.0)
    return float(bottom), float(top)


def _z_range(rng, anat, pose, bleeds, sz: float, cap: int | None) -> tuple[float, int]:
    """First slice's RAS z and slice count: skull base to vertex, or a capped slab."""
    bottom, top = _coverage(rng, anat, pose)
    n = int(np.ceil((top - bottom) / sz)) + 1
    start = bottom
    if cap is not None and n > cap:
        if bleeds:
            focus_z = float(np.mean([pose.to_ras(_focus(b, anat))[0, 2] for b in bleeds]))
        else:
            focus_z = pose.center[2] + rng.uniform(-40.0, 30.0)
        start = focus_z - rng.uniform(0.3, 0.7) * (cap - 1) * sz
        start = float(np.clip(start, bottom, top - (cap - 1) * sz))
        n = cap
    return exact_mm(start), n


def _snap_to_slices(bleeds: list[Bleed], pose: HeadPose, grid: ScanGrid) -> list[Bleed]:
    """Put each parenchymal clot's centre on a slice plane, so even a 0.2 mL clot is seen."""
    out: list[Bleed] = []
    for b in bleeds:
        if isinstance(b, Intraparenchymal):
            z = pose.to_ras(b.center)[0, 2]
            k = np.clip(np.rint((z - grid.origin[2]) / grid.spacing[0]), 0, grid.shape[0] - 1)
            shift = pose.ras_to_head @ np.array([0.0, 0.0, float(grid.slice_z(k)) - z])
            b = Intraparenchymal(b.center + shift, b.axes, b.radii, b.lump, b.edema_mm, b.hu)
        out.append(b)
    return out


def _kinds(rng, hemorrhage: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if hemorrhage is None:
        return random_kinds(rng) if rng.random() < 0.75 else ()
    if isinstance(hemorrhage, str) and hemorrhage.strip().lower() == "any":
        return random_kinds(rng)
    return parse_types(hemorrhage)


@dataclass(frozen=True, eq=False)
class SynthCase:
    """One synthetic scan with its truths, all on the canonical ``(z, y, x)`` grid.

    ``cavity`` is True inside the intracranial space: below the inner table of the skull and
    above the cranial floor at the voxel centre (brain, CSF, ventricles, dura, venous sinuses and
    extra-axial blood inside; bone, air sinuses, orbits, scalp and face outside).
    ``truth.extra["icv_ml"]`` is its voxel count × voxel volume.
    """

    volume: Volume
    mask: np.ndarray  # uint8 0/1 hemorrhage (acute blood only)
    truth: ScanTruth
    cavity: np.ndarray  # bool
    #: uint8 codes of the blood mimics (``STRUCTURES[code - 1]``; 0 none): falx, tentorium,
    #: venous sinus, calcification, petrous bone, chronic collection — never in ``mask``
    structures: np.ndarray | None = None


def make_scan(
    rng_or_seed: int | np.random.Generator | None = 0,
    **options: Any,
) -> tuple[Volume, np.ndarray, ScanTruth]:
    """``make_case`` without the cavity: ``(volume, mask, truth)``; same options, same voxels."""
    case = make_case(rng_or_seed, **options)
    return case.volume, case.mask, case.truth


def _check_population(atrophy, head_scale, mimic_scale, fov_scale) -> None:
    if atrophy is not None and not 0.0 <= atrophy <= 1.0:
        raise ConfigError(f"atrophy must be 0–1, got {atrophy}")
    if not 0.8 <= head_scale <= 1.2:
        raise ConfigError(f"head scale must be 0.8–1.2, got {head_scale}")
    if not 0.0 <= mimic_scale <= 10.0:
        raise ConfigError(f"mimic scale must be 0–10, got {mimic_scale}")
    if not 0.5 <= fov_scale <= 2.0:
        raise ConfigError(f"field-of-view scale must be 0.5–2, got {fov_scale}")


def _check_options(
    matrix, max_slices, slice_thickness, pixel_spacing, hemorrhage_ml, noise_sd, kernel
):
    if not MIN_MATRIX <= int(matrix) <= MAX_MATRIX:
        raise ConfigError(f"matrix must be between {MIN_MATRIX} and {MAX_MATRIX}, got {matrix}")
    if max_slices is not None and max_slices < 1:
        raise ConfigError(f"max_slices must be >= 1, got {max_slices}")
    if slice_thickness is not None and not 0.3 <= slice_thickness <= 10.0:
        raise ConfigError(f"slice thickness must be 0.3–10 mm, got {slice_thickness}")
    if pixel_spacing is not None and not 0.1 <= pixel_spacing <= 10.0:
        raise ConfigError(f"pixel spacing must be 0.1–10 mm, got {pixel_spacing}")
    if hemorrhage_ml is not None and not 0.01 <= hemorrhage_ml <= 500.0:
        raise ConfigError(f"hemorrhage volume must be 0.01–500 mL, got {hemorrhage_ml}")
    if noise_sd is not None and not 0.0 <= noise_sd <= 100.0:
        raise ConfigError(f"noise sd must be 0–100 HU, got {noise_sd}")
    if kernel is not None and kernel not in KERNELS:
        raise ConfigError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")


def _slices(rng, thin, slice_thickness, max_slices) -> tuple[float, bool, int | None]:
    """Slice thickness, thin or not, and the slice cap."""
    if thin is None:
        thin = bool(rng.random() < 0.15)
    sz = float(rng.choice(THIN_THICKNESS, p=[0.3, 0.4, 0.3])) if thin else 5.0
    sz = exact_mm(slice_thickness if slice_thickness is not None else sz)
    cap = THIN_MAX_SLICES if sz < 4.0 else None
    if max_slices is not None:
        cap = min(cap or max_slices, max_slices)
    return sz, sz < 4.0, cap


def _orientation(rng, orientation: str | None) -> str:
    if orientation is None:
        codes = list(STORAGE_AXCODES)
        p = np.array(list(STORAGE_AXCODES.values()))
        orientation = codes[int(rng.choice(len(codes), p=p / p.sum()))]
    return check_axcodes(orientation)


def _total_ml(rng, hemorrhage_ml: float | None) -> float:
    """Target total blood: 35–110 mL in ~30 % of scans (≈ 30–90 mL rendered: crescents and
    lenses come out ~20 % below target), else log-uniform 0.3–30 mL."""
    if hemorrhage_ml is not None:
        return float(hemorrhage_ml)
    if rng.random() < LARGE_SHARE:
        return float(rng.uniform(35.0, 110.0))
    return float(np.exp(rng.uniform(np.log(0.3), np.log(30.0))))


def _collections(rng, anat: HeadAnatomy, pix: float, share: float = 1.0) -> tuple[ExtraAxial, ...]:
    """A chronic (0–25 HU) or subacute isodense (30–45 HU) subdural in ~10 % of scans
    (× ``share``)."""
    if rng.random() >= 0.1 * share:
        return ()
    coll = draw_extra_axial(rng, anat, "subdural", float(rng.uniform(15.0, 80.0)), pix)
    hu = float(rng.uniform(0.0, 25.0) if rng.random() < 0.6 else rng.uniform(30.0, 45.0))
    return (replace(coll, hu=hu),)


def make_case(
    rng_or_seed: int | np.random.Generator | None = 0,
    *,
    matrix: int = 512,
    hemorrhage: str | tuple[str, ...] | list[str] | None = None,
    hemorrhage_ml: float | None = None,
    thin: bool | None = None,
    slice_thickness: float | None = None,
    pixel_spacing: float | None = None,
    max_slices: int | None = None,
    fov: str | None = None,
    orientation: str | None = None,
    noise_sd: float | None = None,
    kernel: str | None = None,
    atrophy: float | None = None,
    head_scale: float = 1.0,
    mimic_scale: float = 1.0,
    fov_scale: float = 1.0,
) -> SynthCase:
    """One synthetic non-contrast head CT with its hemorrhage mask, truth and cavity.

    ``rng_or_seed``: an int seed (same seed and options → identical voxels) or a Generator.
    ``matrix``: image rows (columns equal rows unless ``fov='rect'``); anatomy has physical
    size, so a small matrix gives larger pixels. ``hemorrhage``: ``None`` random (75 % with
    blood), ``"any"`` at least one random type, ``"none"``, or type name(s) such as
    ``"subdural"`` / ``("epidural", "sah")``. ``hemorrhage_ml``: target total volume (the truth
    reports the rendered one; drawn: 30–90 mL in 30 % of scans with blood). ``thin``: thin
    slices (1–2.5 mm, slab of ≤ 64 slices); ``None`` draws it (15 %). ``slice_thickness`` /
    ``pixel_spacing`` override the drawn spacings. ``max_slices`` caps the slice count (a slab
    around the lesion). ``fov``: ``"square"``, ``"rect"`` (fewer columns), ``"small"`` (smaller
    square matrix) or ``None`` to draw it. ``orientation``: storage voxel order ("LPS"
    canonical, "RAS", "LAS", "RPS", "PLS", "ARS"); the returned Volume is canonical and carries
    the storage grid for ``write_nifti``. ``noise_sd``: quantum noise (HU) instead of the
    kernel's drawn level. ``kernel``: ``"soft"``, ``"sharp"`` or ``None`` (sharp in ~18 %).

    Population knobs (for synthetic "sites"; the defaults give exactly the scans they always
    gave): ``atrophy`` 0–1 instead of the drawn age factor; ``head_scale`` (0.8–1.2) times the
    drawn head size; ``mimic_scale`` (0–10) times the odds of calcifications and of chronic /
    isodense subdural collections; ``fov_scale`` (0.5–2) times the drawn pixel spacing, i.e.
    the field of view of a given matrix (the head fills less of a larger field).

    Returns a ``SynthCase``: ``volume.hu`` float32 integer-valued HU ``(z, y, x)``, ``mask``
    uint8 0/1, ``cavity`` bool and ``structures`` uint8 on the same grid.
    """
    _check_options(
        matrix, max_slices, slice_thickness, pixel_spacing, hemorrhage_ml, noise_sd, kernel
    )
    _check_population(atrophy, head_scale, mimic_scale, fov_scale)
    rng, seed = _rng_and_seed(rng_or_seed)
    anat = draw_anatomy(
        rng, noise_sd=noise_sd, atrophy=atrophy, head_scale=head_scale, mimic_scale=mimic_scale
    )
    art = draw_artefacts(rng, kernel)
    if noise_sd is None:
        anat = replace(anat, hu=replace(anat.hu, noise_sd=draw_noise_sd(rng, art)))
    pose0 = HeadPose.from_angles(
        np.zeros(3), rng.uniform(-15.0, 15.0), rng.uniform(-12.0, 15.0), rng.uniform(-8.0, 8.0)
    )
    rows, cols, layout = _layout(rng, int(matrix), fov)
    s, ox, oy, cx, cy = _in_plane(
        rng, anat, pose0, int(matrix), rows, cols, pixel_spacing, fov_scale
    )
    pose = HeadPose(np.array([cx, cy, rng.uniform(-40.0, 40.0)]), pose0.rotation)
    sz, thin, cap = _slices(rng, thin, slice_thickness, max_slices)
    orientation = _orientation(rng, orientation)
    wanted = _kinds(rng, hemorrhage)
    total_ml = _total_ml(rng, hemorrhage_ml)
    collections = _collections(rng, anat, s, mimic_scale)
    for _attempt in range(3):
        bleeds = draw_bleeds(rng, anat, wanted, total_ml, s, pose.to_ras)
        oz, n = _z_range(rng, anat, pose, bleeds, sz, cap)
        grid = ScanGrid((n, rows, cols), (sz, s, s), (ox, oy, oz))
        scene = Scene(
            anat=anat,
            pose=pose,
            grid=grid,
            bleeds=tuple(_snap_to_slices(bleeds, pose, grid)),
            shape_field=LatticeField.random(rng, grid.shape, grid.spacing, 22.0, channels=3),
            sulci=DirectionalField.random(
                rng, float(np.mean(anat.brain_semi_axes)), anat.gyral_wavelength
            ),
            lump_field=LatticeField.random(rng, grid.shape, grid.spacing, 3.0),
            art=art,
            collections=collections,
        )
        out = render(scene, rng)
        counts = _label_counts(out.labels)
        if np.count_nonzero(counts[:, 1:].sum(axis=0)) == len(wanted):
            break  # else: a lesion fell between slices or out of a slab; draw it again
    return _case(seed, out, counts, grid, orientation, thin, anat, art, layout, total_ml, wanted)


def _case(seed, out, counts, grid, orientation, thin, anat, art, layout, total_ml, wanted):
    volume = Volume(
        hu=out.hu,
        affine=grid.affine,
        source=VolumeSource(f"<synthetic seed={seed}>", "memory"),
        source_grid=storage_grid(grid, orientation),
    )
    truth = _truth(
        seed, volume, counts, out.fracture, orientation, thin, anat, layout, total_ml, wanted
    )
    extra = {
        "icv_ml": float(np.count_nonzero(out.cavity)) * volume.voxel_volume_ml,
        "kernel": art.kernel,
        "calcifications": list(anat.calc.kinds()),
        "mimics": [n for i, n in enumerate(STRUCTURES, 1) if (out.structures == i).any()],
    }
    truth = replace(truth, extra={**truth.extra, **extra})
    mask = (out.labels > 0).astype(np.uint8)
    return SynthCase(volume, mask, truth, out.cavity, out.structures)


def _label_counts(labels: np.ndarray) -> np.ndarray:
    """Voxels per slice and label code: ``(z, 1 + len(TYPES))``."""
    return np.stack([np.bincount(sl.ravel(), minlength=len(TYPES) + 1) for sl in labels])


def _truth(
    seed, volume: Volume, counts, fracture, orientation, thin, anat, layout, total_ml, wanted
) -> ScanTruth:
    nz = counts.shape[0]
    voxel_ml = volume.voxel_volume_ml
    per_type = counts[:, 1:].sum(axis=0)
    types = tuple(t for t, c in zip(TYPES, per_type, strict=True) if c > 0)
    slice_types = tuple(
        tuple(t for t, c in zip(TYPES, counts[k, 1:], strict=True) if c > 0) for k in range(nz)
    )
    positive = tuple(int(k) for k in np.flatnonzero(counts[:, 1:].sum(axis=1)))
    total_voxels = int(per_type.sum())
    z, y, x = volume.spacing
    return ScanTruth(
        scan_id="",
        seed=seed,
        types=types,
        volume_ml=float(total_voxels) * voxel_ml,
        volumes_ml={
            t: float(int(c)) * voxel_ml for t, c in zip(TYPES, per_type, strict=True) if c > 0
        },
        positive_slices=positive,
        slice_types=slice_types,
        fracture_slices=tuple(int(k) for k in np.flatnonzero(fracture)),
        spacing=(z, y, x),
        shape=volume.shape,
        orientation=orientation,
        thin=bool(thin),
        noise_sd=round(float(anat.hu.noise_sd), 3),
        extra={
            "fov_layout": layout,
            "requested_types": list(wanted),
            "requested_ml": round(float(total_ml), 3) if wanted else 0.0,
            "atrophy": round(float(anat.atrophy), 3),
        },
    )
