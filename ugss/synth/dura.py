"""Dura and dural venous sinuses: the classic mimics of subdural and subarachnoid blood.

- falx cerebri: a 1–3 mm sheet in the midline, 45–70 HU, from the frontal to the occipital pole
  above the corpus callosum (painted by ``ugss.synth.render`` with these values), never below
  the tentorium;
- tentorium cerebelli: a tent over the cerebellum from the petrous ridges and the transverse
  sinuses up to its apex behind the pineal, 1–2 mm, same density, open at the incisura;
- superior sagittal sinus: a triangle (base 8–10 mm on the inner table, 6–9 mm high) in the
  midline under the vault, growing from front to back, 40–60 HU;
- transverse sinuses along the occipital inner table at the tentorium's attachment, sigmoid
  sinuses curving down behind the petrous bones, the straight sinus along the falx–tentorium
  junction to the confluence; 40–60 HU.

All lie inside the cranial cavity (they are intracranial, outside the brain) and never carry a
hemorrhage label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ugss.synth.partial import band, ramp, sheet
from ugss.synth.skullbase import SkullBase


@dataclass(frozen=True)
class Dura:
    falx_halfwidth: float
    tent_halfwidth: float
    apex_v: float  # tentorial apex (straight sinus origin), head-frame v
    apex_w: float
    ts_w: float  # height of the transverse sinuses / posterior attachment
    tent_u: float  # lateral reach of the tent's dome
    back_v: float  # v where the tent meets the occipital inner table
    sss_height: float
    sss_halfbase: float
    sinus_r: float  # transverse / sigmoid radius
    straight_r: float
    sinus_hu: float
    sigmoid_u: float
    sigmoid_v: float

    def tent_w(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Height of the tentorium over (u, v)."""
        dome = np.clip(1.0 - (u * np.float32(1 / self.tent_u)) ** 2, 0.0, 1.0)
        slope = np.clip(
            (np.float32(self.back_v) - v) * np.float32(1 / (self.back_v - self.apex_v)), 0.0, 1.0
        )
        return np.float32(self.ts_w) + np.float32(self.apex_w - self.ts_w) * dome * slope

    def above_tent(self, u, v, w, base: SkullBase, pix: float) -> np.ndarray:
        """1 above the tentorium or in front of the petrous ridges, 0 in the posterior fossa."""
        behind = ramp(base.ridge_distance(u, v) + 4.0, pix)
        return 1.0 - behind * ramp(self.tent_w(u, v) - w, pix)


def draw_dura(rng: np.random.Generator, base: SkullBase, *, vent_w: float, a: float, b: float):
    """Dura and sinuses for a skull base, ventricles at height ``vent_w`` and head size."""
    ts_w = base.middle + rng.uniform(4.0, 10.0)
    petrous_crest = base.middle + base.petrous_h
    return Dura(
        falx_halfwidth=rng.uniform(0.5, 1.5),
        tent_halfwidth=rng.uniform(0.5, 1.0),
        apex_v=base.v_back + rng.uniform(14.0, 22.0),
        apex_w=max(vent_w - rng.uniform(12.0, 18.0), petrous_crest + 6.0),
        ts_w=ts_w,
        tent_u=rng.uniform(0.7, 0.85) * a,
        back_v=b,  # at the occiput: the inner table cuts the tent a little before
        sss_height=rng.uniform(6.0, 9.0),
        sss_halfbase=rng.uniform(4.0, 5.0),
        sinus_r=rng.uniform(3.0, 4.5),
        straight_r=rng.uniform(2.0, 3.0),
        sinus_hu=rng.uniform(40.0, 55.0),  # + cupping and partial volume: 40–60
        sigmoid_u=base.petrous_len - rng.uniform(2.0, 6.0),
        sigmoid_v=base.v_back + base.ridge_slope * base.petrous_len + rng.uniform(8.0, 13.0),
    )


def tentorium(dura: Dura, base: SkullBase, u, v, w, inside, pix: float) -> np.ndarray:
    """Weight of the tentorium sheet (``inside``: the cavity weight)."""
    behind = ramp(base.ridge_distance(u, v) + 2.0, pix)
    incisura = ramp(13.0 - np.abs(u), pix) * ramp(np.float32(dura.apex_v + 10.0) - v, pix)
    return (
        sheet(w - dura.tent_w(u, v), dura.tent_halfwidth, pix) * behind * (1.0 - incisura) * inside
    )


def sagittal_sinus(dura: Dura, u, v, w, d_in, b: float, pv, pix: float) -> np.ndarray:
    """Weight of the superior sagittal sinus: a triangle on the inner table in the midline.

    ``pv``: the slice-aware partial-volume width along the inner table (array), ``pix`` the
    in-plane pixel size.
    """
    growth = np.clip(0.65 + 0.35 * v * np.float32(1.0 / b), 0.4, 1.0)
    h = np.float32(dura.sss_height) * growth
    halfbase = np.float32(dura.sss_halfbase) * growth
    upper = ramp(w - np.float32(dura.ts_w + 4.0), pv)
    # where the slice cuts the inner table obliquely its bone blurs inwards: start below that
    lo = np.float32(0.5) * (pv - np.float32(pix))
    tri = ramp(halfbase * (1.0 - (d_in - lo) / h) - np.abs(u), pix)
    return tri * band(d_in, lo, h + lo, pv) * upper


def posterior_sinuses(dura: Dura, u, v, w, d_in, pix: float) -> np.ndarray:
    """Weight of the transverse, sigmoid and straight sinuses."""
    au = np.abs(u)
    r = np.float32(dura.sinus_r)
    wall = band(d_in, 0.0, 2.0 * r, pix)
    # the sigmoid groove runs down the posterolateral wall at one azimuth; the transverse sinus
    # runs along the wall behind that azimuth at the tentorium's attachment
    phi = np.arctan2(dura.sigmoid_v, dura.sigmoid_u)
    across = au * np.float32(np.sin(phi)) - v * np.float32(np.cos(phi))  # < 0: more posterior
    level = ramp(r - np.abs(w - np.float32(dura.ts_w)), pix)
    transverse = wall * level * ramp(r - across, pix) * ramp(v, pix)
    sigmoid = wall * ramp(r + 1.0 - np.abs(across), pix) * ramp(v, pix)
    sigmoid *= ramp(np.float32(dura.ts_w + r) - w, pix)
    # straight sinus along the tent's midline, from its apex back to the confluence
    on_tent = sheet(w - dura.tent_w(np.zeros_like(u), v), dura.straight_r, pix)
    straight = on_tent * ramp(dura.straight_r - au, pix) * ramp(v - np.float32(dura.apex_v), pix)
    straight *= ramp(d_in, pix)
    return np.maximum(np.maximum(transverse, sigmoid), straight)
