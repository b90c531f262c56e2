"""Synthetic "sites": scanner and population profiles that make two cohorts differ the way two
hospitals' scans do (``write_cohort(..., scan_options=site_options("B", seed))``).

Each profile draws, per scan, the ``make_case`` options below from its own random stream
(``[seed, index, SITE_STREAM]``: independent of the scan's own seed, so the same cohort seed and
site always give the same scans, and the anatomy of scan ``i`` is drawn from the same seed at
both sites — only the options differ).

=================  ===========================================  ===============================
                   site A ("labeled hospital")                  site B ("deploying hospital")
=================  ===========================================  ===============================
kernel / noise     soft brain kernel, σ 3–5 HU                  sharp kernel (edge overshoot)
                                                                in 40 %, σ 9–14 HU; else soft,
                                                                σ 6–9 HU
slice thickness    5 mm                                         2.5 mm in 40 % (a ≤ 64-slice
                                                                slab), else 5 mm
field of view      square matrix, pixels 0.40–0.50 mm × 512 /   pixels × 1.15–1.35 (a wider
                   matrix (the head fills the field)            field, the head smaller in the
                                                                image); "rect" / "small"
                                                                layouts in 40 %
head size          × 1.00–1.06                                  × 0.90–0.97
atrophy            0.05–0.40 (younger)                          0.45–0.95 (older: larger
                                                                ventricles, wider sulci)
mimics             × 0.7 (calcifications, chronic subdurals)    × 2.0
=================  ===========================================  ===============================

None of this is a real scanner: the profiles move the synthetic generator's own knobs
(``ugss.synth.scan.make_case``), so a model's behaviour across them says how it copes with
these shifts, not with a particular vendor's images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ugss.errors import ConfigError

SITES = ("A", "B")
SITE_STREAM = 0x517E5


def _site_a(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "kernel": "soft",
        "noise_sd": round(float(rng.uniform(3.0, 5.0)), 2),
        "slice_thickness": 5.0,
        "fov": "square",
        "fov_scale": 1.0,
        "head_scale": round(float(rng.uniform(1.0, 1.06)), 3),
        "atrophy": round(float(rng.uniform(0.05, 0.40)), 3),
        "mimic_scale": 0.7,
    }


def _site_b(rng: np.random.Generator) -> dict[str, Any]:
    sharp = bool(rng.random() < 0.4)
    noise = rng.uniform(9.0, 14.0) if sharp else rng.uniform(6.0, 9.0)
    layout = str(rng.choice(["square", "rect", "small"], p=[0.6, 0.25, 0.15]))
    return {
        "kernel": "sharp" if sharp else "soft",
        "noise_sd": round(float(noise), 2),
        "slice_thickness": 2.5 if rng.random() < 0.4 else 5.0,
        "fov": layout,
        "fov_scale": round(float(rng.uniform(1.15, 1.35)), 3),
        "head_scale": round(float(rng.uniform(0.90, 0.97)), 3),
        "atrophy": round(float(rng.uniform(0.45, 0.95)), 3),
        "mimic_scale": 2.0,
    }


_PROFILES = {"A": _site_a, "B": _site_b}


def site_options(site: str, seed: int) -> Callable[[int], dict[str, Any]]:
    """``index → make_case options`` of ``site`` ("A" or "B") for the cohort drawn with ``seed``."""
    name = str(site).upper()
    if name not in _PROFILES:
        raise ConfigError(f"site must be one of {', '.join(SITES)}, got {site!r}")
    profile = _PROFILES[name]

    def options(index: int) -> dict[str, Any]:
        return profile(np.random.default_rng([int(seed), int(index), SITE_STREAM]))

    options.site = name  # type: ignore[attr-defined]
    return options
