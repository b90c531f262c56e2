"""Which series of a study the node segments, and why every other one was passed over.

A head CT study pushed from a PACS holds several series; a radiologist needs one answer, computed
on the series the model was made for. Rules, in order (the first that fails is the reason):

1. one reconstruction kernel: ConvolutionKernel equal on every slice ("mixed kernels" otherwise);
2. soft-tissue kernel: a name containing a ``sharp_kernels`` word (BONE, SHARP, LUNG, …) fails;
   a name with a ``soft_kernels`` word passes; an unknown or missing name is judged by the
   series' noise in brain tissue (``noise_hu`` of the middle slice: a bone kernel's edge
   enhancement makes it several times that of a soft kernel) against ``sharp_noise_hu``;
3. no contrast: ContrastBolusAgent set (not "NONE"/"NO"), or a ``contrast_keywords`` word (a
   whole word) in the series description (CTA, ANGIO, C+, …);
4. slice thickness (SliceThickness, else the spacing between slices) within ``thickness_mm``;
5. a head: BodyPartExamined, else the study description, names one of ``head_keywords``
   (neither given: assumed; the job's intracranial estimate still says "not a head CT").

Localizers, reformats (non-axial or DERIVED), dose reports and other non-CT objects never reach
this: they are acknowledged, not kept, and listed with the reason given at the door.

``select = "best"``: exactly one series, the suitable one whose thickness is closest to
``preferred_mm`` (the model's training thickness; the thin-slice series is the fallback when no
thick one is suitable), ties to the one with more slices. ``select = "all"``: every suitable
series. No suitable series: the study gets a report that says "not assessed" and why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from ugss.runtime.noise import SHARP_NOISE_HU

SELECT_MODES = ("best", "all")
# Substrings of ConvolutionKernel (upper case): GE names, Siemens H/J/Hr/Br families, Canon FC.
SHARP_KERNELS = ("BONE", "SHARP", "LUNG", "DETAIL", "EDGE", "H60", "H70", "B60", "B70", "B80",
                 "J70", "HR6", "BR6", "FC30", "FC81")  # fmt: skip
SOFT_KERNELS = ("STANDARD", "SOFT", "BRAIN", "SMOOTH", "H20", "H30", "H31", "H40", "J30",
                "J40", "HR3", "HR4", "BR3", "BR4", "FC2")  # fmt: skip
CONTRAST_KEYWORDS = ("CONTRAST", "C+", "CTA", "ANGIO", "ARTERIAL", "VENOUS", "PERFUSION",
                     "POST", "KM")  # fmt: skip
HEAD_KEYWORDS = ("HEAD", "BRAIN", "SKULL", "CRAN", "KOPF", "SCHAEDEL", "CEREBR", "NEURO")
NO_CONTRAST = ("", "NONE", "NO", "N", "0")


@dataclass(frozen=True)
class SelectionRules:
    """The configurable rules (TOML keys ``select``, ``select_*``); see the module docstring."""

    mode: str = "best"
    preferred_mm: float = 5.0
    thickness_mm: tuple[float, float] = (0.5, 6.0)
    sharp_kernels: tuple[str, ...] = SHARP_KERNELS
    soft_kernels: tuple[str, ...] = SOFT_KERNELS
    contrast_keywords: tuple[str, ...] = CONTRAST_KEYWORDS
    head_keywords: tuple[str, ...] = HEAD_KEYWORDS
    sharp_noise_hu: float = SHARP_NOISE_HU


@dataclass(frozen=True)
class SeriesFacts:
    """What the rules read from a series' headers (and its middle slice when needed)."""

    series_uid: str
    label: str
    n_slices: int
    kernels: tuple[str, ...]
    thickness_mm: float | None
    contrast_agent: str
    description: str
    body_part: str
    study_description: str
    noise_hu: float | None = None  # measured only when the kernel name is unknown


@dataclass(frozen=True)
class Choice:
    """One series' outcome: segmented (``chosen``) or passed over, with the reason."""

    series_uid: str
    chosen: bool
    reason: str = ""


def series_label(ds: Dataset) -> str:
    """``#3 Head 5mm soft`` (printable ASCII only, for status tables and reports)."""
    text = f"#{ds.get('SeriesNumber', '') or '?'} {ds.get('SeriesDescription', '') or ''}"
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text).strip()[:64]


def facts_of(series_uid: str, headers: Sequence[Dataset], noise_hu: float | None) -> SeriesFacts:
    """The facts of a series from its slice headers (any order)."""
    first = headers[0]
    kernels = tuple(sorted({_text(h.get("ConvolutionKernel")) for h in headers}))
    return SeriesFacts(
        series_uid=series_uid,
        label=series_label(first),
        n_slices=len(headers),
        kernels=kernels,
        thickness_mm=_thickness(headers),
        contrast_agent=_text(first.get("ContrastBolusAgent")),
        description=_text(first.get("SeriesDescription")),
        body_part=_text(first.get("BodyPartExamined")),
        study_description=_text(first.get("StudyDescription")),
        noise_hu=noise_hu,
    )


def kernel_known(kernels: Sequence[str], rules: SelectionRules) -> bool:
    """True when the kernel name alone decides (so no pixels need to be read)."""
    name = kernels[0] if len(kernels) == 1 else ""
    return bool(name) and any(w in name for w in (*rules.sharp_kernels, *rules.soft_kernels))


def judge(facts: SeriesFacts, rules: SelectionRules) -> str:
    """The reason the series is unsuitable, or "" when it may be segmented."""
    if len(facts.kernels) > 1:
        return f"mixed kernels ({', '.join(k or '-' for k in facts.kernels)})"
    kernel = facts.kernels[0] if facts.kernels else ""
    sharp = next((w for w in rules.sharp_kernels if w in kernel), None)
    if sharp is not None:
        return f"sharp kernel {kernel} (bone/lung reconstruction)"
    if not any(w in kernel for w in rules.soft_kernels):
        noise = facts.noise_hu
        if noise is not None and noise > rules.sharp_noise_hu:
            return (f"sharp reconstruction: noise {noise:.0f} HU in brain tissue > "
                    f"{rules.sharp_noise_hu:g} (kernel {kernel or 'not named'})")  # fmt: skip
    if facts.contrast_agent not in NO_CONTRAST:
        return f"contrast (ContrastBolusAgent {facts.contrast_agent})"
    words = set(re.split(r"[\s/_,;()]+", facts.description))
    hit = next((w for w in rules.contrast_keywords if w in words), None)
    if hit is not None:
        return f"contrast ({hit} in the series description)"
    low, high = rules.thickness_mm
    if facts.thickness_mm is not None and not low <= facts.thickness_mm <= high:
        return f"slice thickness {facts.thickness_mm:g} mm outside {low:g}-{high:g} mm"
    place = facts.body_part or facts.study_description
    if place and not any(w in place for w in rules.head_keywords):
        what = "BodyPartExamined" if facts.body_part else "StudyDescription"
        return f"not a head ({what} {place})"
    return ""


def choose(candidates: Sequence[SeriesFacts], rules: SelectionRules) -> list[Choice]:
    """Apply the rules to every candidate; ``best`` keeps one suitable series, ``all`` all."""
    reasons = {f.series_uid: judge(f, rules) for f in candidates}
    suitable = [f for f in candidates if not reasons[f.series_uid]]
    if rules.mode == "all" or not suitable:
        return [Choice(f.series_uid, not reasons[f.series_uid], reasons[f.series_uid])
                for f in candidates]  # fmt: skip
    best = min(suitable, key=lambda f: (_distance(f, rules), -f.n_slices, f.series_uid))
    out = []
    for f in candidates:
        if f is best:
            out.append(Choice(f.series_uid, True))
        elif reasons[f.series_uid]:
            out.append(Choice(f.series_uid, False, reasons[f.series_uid]))
        else:
            why = f"suitable, but {best.label or best.series_uid} was chosen"
            if best.thickness_mm is not None:
                why += f" ({best.thickness_mm:g} mm, nearer {rules.preferred_mm:g} mm)"
            out.append(Choice(f.series_uid, False, why))
    return out


def _distance(facts: SeriesFacts, rules: SelectionRules) -> float:
    return abs(facts.thickness_mm - rules.preferred_mm) if facts.thickness_mm else 1e9


def _thickness(headers: Sequence[Dataset]) -> float | None:
    value = _float(headers[0].get("SliceThickness"))
    if value is not None and value > 0:
        return value
    positions = sorted(_float(h.get("SliceLocation")) or 0.0 for h in headers)
    gaps = np.diff(positions)
    return float(np.median(gaps)) if gaps.size and np.median(gaps) > 0 else None


def _text(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) and hasattr(value, "__iter__"):
        value = "\\".join(str(v) for v in value)
    return str(value).strip().upper()


def _float(value: object) -> float | None:
    try:
        return float(value) if value not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
