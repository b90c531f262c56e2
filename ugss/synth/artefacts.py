"""Scanner effects: reconstruction kernel, beam hardening, cupping, head holder and table.

- kernel: "soft" (brain; quantum noise σ 3–8 HU, fine grain) in most scans, "sharp" (bone; σ
  30–60 HU, finer grain, edge overshoot along bone from an unsharp mask) in ~18 %;
- beam hardening between the petrous bones: radial streaks and a dark band across the posterior
  fossa, ±15–40 HU, fading within ~1 cm above and below the petrous level;
- cupping: brain next to the inner table 2–6 HU brighter, fading over ~15 mm;
- head holder (a curved plastic shell, 100–300 HU, on a foam pad, −900…−700 HU) behind the head
  and the table (two thin skins around a foam core) below it, both outside the head and uniform
  along z; either may be missing or partly outside the field of view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ugss.synth.partial import ramp, sheet

SHARP_SHARE = 0.18


@dataclass(frozen=True)
class Artefacts:
    kernel: str  # "soft" | "sharp"
    overshoot: float  # unsharp-mask gain of the sharp kernel (0: none)
    grain_px: float  # noise correlation (pixels at < 1 mm pixels)
    bh_amp: float  # beam-hardening amplitude (HU)
    bh_waves: int
    bh_phase: float
    cup_hu: float
    holder: bool
    pad_mm: float
    shell_mm: float
    shell_hu: float
    pad_hu: float
    table: bool
    table_gap: float
    table_mm: float
    table_hu: float


def draw_artefacts(rng: np.random.Generator, kernel: str | None = None) -> Artefacts:
    sharp = bool(rng.random() < SHARP_SHARE) if kernel is None else kernel == "sharp"
    return Artefacts(
        kernel="sharp" if sharp else "soft",
        overshoot=float(rng.uniform(0.5, 1.0)) if sharp else 0.0,
        grain_px=0.5 if sharp else 0.8,
        bh_amp=rng.uniform(15.0, 40.0),
        bh_waves=int(rng.integers(18, 30)),
        bh_phase=rng.uniform(0.0, 2 * np.pi),
        cup_hu=rng.uniform(2.0, 6.0),
        holder=bool(rng.random() < 0.85),
        pad_mm=rng.uniform(3.0, 9.0),
        shell_mm=rng.uniform(3.0, 6.0),
        shell_hu=rng.uniform(100.0, 300.0),
        pad_hu=rng.uniform(-900.0, -700.0),
        table=bool(rng.random() < 0.7),
        table_gap=rng.uniform(1.0, 6.0),
        table_mm=rng.uniform(10.0, 25.0),
        table_hu=rng.uniform(150.0, 400.0),
    )


def draw_noise_sd(rng: np.random.Generator, art: Artefacts) -> float:
    return float(rng.uniform(30.0, 60.0) if art.kernel == "sharp" else rng.uniform(3.0, 8.0))


def beam_hardening(art: Artefacts, base, u, v, w, inside, pix: float) -> np.ndarray:
    """HU offsets of petrous beam hardening over a voxel box (0 far from the petrous level)."""
    w_p = np.float32(base.middle + 0.6 * base.petrous_h)
    level = np.clip(1.0 - ((w - w_p) * np.float32(1 / 10.0)) ** 2, 0.0, 1.0)
    fossa = ramp(base.ridge_distance(u, v) + 6.0, pix) * inside * level
    vc = np.float32(base.v_back + base.ridge_slope * 18.0)
    phi = np.arctan2(v - vc, u)
    streaks = np.cos(phi * np.float32(art.bh_waves) + np.float32(art.bh_phase))
    near = np.clip(1.0 - np.abs(v - vc) * np.float32(1 / 30.0), 0.0, 1.0)
    bar = sheet(v - (vc + 4.0), 5.0, 6.0)  # dark band between the petrous apices
    return np.float32(art.bh_amp) * (0.5 * streaks * near - bar) * fossa


def cupping(art: Artefacts, d_in: np.ndarray) -> np.ndarray:
    """HU offsets: brighter next to the inner table (0 outside the cavity)."""
    return (
        np.float32(art.cup_hu) * np.clip(1.0 - d_in * np.float32(1 / 15.0), 0.0, 1.0) * (d_in >= 0)
    )


def sharpen(art: Artefacts, part: np.ndarray, pix: float) -> None:
    """In place: the sharp kernel's edge overshoot (unsharp mask, σ ≈ 0.7 mm, per slice)."""
    if art.overshoot <= 0:
        return
    sigma = max(0.7 / pix, 0.6)
    blur = ndi.gaussian_filter(part, (0, sigma, sigma), mode="nearest", truncate=3.0)
    part += np.float32(art.overshoot) * (part - blur)


def support_plane(art: Artefacts, grid, center_ras: np.ndarray, reach: float):
    """(HU, weight) planes ``(ny, nx)`` of the head holder and table, or None when neither.

    ``reach``: the head's largest in-plane distance from ``center_ras`` behind its centre.
    """
    if not (art.holder or art.table):
        return None
    ny, nx = grid.shape[1:]
    _, sy, sx = grid.spacing
    ox, oy, _ = grid.origin
    x = (ox - sx * np.arange(nx, dtype=np.float32))[None, :] - np.float32(center_ras[0])
    y = (oy - sy * np.arange(ny, dtype=np.float32))[:, None] - np.float32(center_ras[1])
    r = np.sqrt(x * x + y * y)
    pix = float(max(sx, sy))
    behind = ramp(-y - np.float32(0.25 * reach), pix)  # posterior: RAS −y
    hu = np.full((ny, nx), -1000.0, dtype=np.float32)
    weight = np.zeros((ny, nx), dtype=np.float32)
    r0 = np.float32(reach + 1.0)
    if art.holder:
        pad = sheet(r - (r0 + art.pad_mm / 2), art.pad_mm / 2, pix) * behind
        shell = sheet(r - (r0 + art.pad_mm + art.shell_mm / 2), art.shell_mm / 2, pix) * behind
        hu += pad * (np.float32(art.pad_hu) - hu)
        hu += shell * (np.float32(art.shell_hu) - hu)
        weight = np.maximum(pad, shell)
    if art.table:
        top = -(r0 + art.pad_mm + art.shell_mm + art.table_gap)
        slab = sheet(y - np.float32(top - art.table_mm / 2), art.table_mm / 2, pix)
        skins = sheet(y - np.float32(top - 1.0), 1.0, pix) + sheet(
            y - np.float32(top - art.table_mm + 1.0), 1.0, pix
        )
        hu += slab * (np.float32(-850.0) - hu)
        hu += np.clip(skins, 0, 1) * (np.float32(art.table_hu) - hu)
        weight = np.maximum(weight, slab)
    return hu, weight
