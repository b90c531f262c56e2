"""The scan report: frozen dataclasses that become JSON and a readable Markdown twin.

QC flags warn, they do not refuse: a scan with an unusual spacing or a cut-off head is still
segmented, and the reader is told why the numbers may be less trustworthy. Thresholds are the
module constants below; the bone and head HU levels are the intracranial estimate's and the
post-processing's (``BONE_HU``, ``HEAD_HU``), imported, not redefined.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from nibabel import orientations as nio

import ugss
from ugss.runtime.engines import Engine
from ugss.runtime.intracranial import (
    ADULT_ICV_ML,
    BONE_HU,
    HEAD_ICV_ML,
    HEAD_SLICE_MM2,
    IntracranialSpace,
)
from ugss.runtime.noise import SHARP_NOISE_HU, volume_noise_hu
from ugss.runtime.postprocess import HEAD_HU, Component
from ugss.runtime.preprocess import windows_to_str
from ugss.runtime.segment import Segmentation
from ugss.runtime.unit_map import steps_at_least
from ugss.runtime.volume import Volume
from ugss.wording import NOT_AVAILABLE

DISCLAIMER = "Research software: not a medical device, not for clinical use."
IN_PLANE_MM = (0.2, 1.5)
SLICE_MM = (0.4, 10.0)
ANISOTROPY = 0.1  # in-plane row vs column spacing may differ by this fraction
BORDER_HEAD_FRACTION = 0.05  # of a slice's border pixels inside the head → truncated FOV
UNCERTAIN_BITS = 0.5  # a voxel this uncertain (p ≈ 0.11–0.89) counts as uncertain
HIGH_MEAN_UNCERTAINTY_BITS = 0.4  # mean entropy inside the mask above this → high_uncertainty
# ... or uncertain voxels (≥ UNCERTAIN_BITS) above max(floor, fraction × mask volume)
UNCERTAIN_ML_FLOOR = 0.5
UNCERTAIN_MASK_FRACTION = 0.5
MIN_BONE_FRACTION = 0.001  # of sampled voxels above BONE_HU; below this → non_ct_like_intensities
MAX_AIR_FRACTION = 0.97  # of sampled voxels below -500 HU; above this → non_ct_like_intensities
STAGES = (
    "read",
    "intracranial",
    "preprocess",
    "model",
    "resample",
    "postprocess",
    "write",
    "pictures",
    "total",
)
NOT_ASSESSED = "not assessed: not a head CT"


@dataclass(frozen=True)
class ScanGeometry:
    """Shape and spacing in canonical order (z, y, x) = (slices, rows, columns)."""

    source: str
    format: str
    shape_zyx: tuple[int, int, int]
    spacing_mm_zyx: tuple[float, float, float]
    voxel_volume_ml: float
    field_of_view_mm_yx: tuple[float, float]
    source_orientation: str
    series_instance_uid: str | None = None

    @classmethod
    def of(cls, volume: Volume) -> ScanGeometry:
        z, y, x = volume.shape
        sz, sy, sx = volume.spacing
        affine = volume.source_grid.affine if volume.source_grid is not None else volume.affine
        return cls(
            source=volume.source.path,
            format=volume.source.format,
            shape_zyx=(z, y, x),
            spacing_mm_zyx=(round(sz, 4), round(sy, 4), round(sx, 4)),
            voxel_volume_ml=volume.voxel_volume_ml,
            field_of_view_mm_yx=(round(y * sy, 1), round(x * sx, 1)),
            source_orientation="".join(nio.aff2axcodes(affine)),
            series_instance_uid=volume.source.series_instance_uid,
        )


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    kind: str
    method: str
    weights: str  # the checkpoint weights exported: teacher or student ("" if not recorded)
    checkpoint_sha256: str
    input_size: int
    windows: str
    threshold: float
    mc_samples: int
    engine: str
    mode: str  # what this report used: "mc" or "deterministic"

    @classmethod
    def of(cls, engine: Engine, seg: Segmentation) -> ModelIdentity:
        info = engine.info
        return cls(
            name=info.name,
            version=info.version,
            kind=info.kind,
            method=info.method,
            weights=str(info.training.get("weights", "")),
            checkpoint_sha256=info.checkpoint_sha256,
            input_size=info.input_size,
            windows=windows_to_str(info.windows),
            threshold=seg.threshold,
            mc_samples=info.mc_samples if seg.is_mc else 0,
            engine=engine.description,
            mode="mc" if seg.is_mc else "deterministic",
        )


@dataclass(frozen=True)
class QCFlag:
    code: str
    message: str


@dataclass(frozen=True)
class ScanReport:
    """Everything a reader needs about one segmented scan; ``to_dict`` is the JSON form."""

    scan: ScanGeometry
    model: ModelIdentity
    hemorrhage_present: bool
    total_volume_ml: float
    interval_ml: tuple[float, float] | None
    interval_method: str | None
    sample_volumes_ml: tuple[float, ...] | None
    slices_involved: tuple[int, ...]
    mean_uncertainty_bits: float | None
    uncertain_volume_ml: float | None
    components: tuple[Component, ...]
    removed_components: int
    removed_ml: float
    min_component_ml: float
    min_component_slices: int
    assessed: bool  # False: not a head CT, no hemorrhage claimed
    intracranial_ml: float | None  # estimated intracranial volume (ICV)
    outside_intracranial_ml: float  # model findings dropped outside the intracranial space
    qc_flags: tuple[QCFlag, ...]
    timings_s: dict[str, float]
    outputs: dict[str, str] = field(default_factory=dict)
    ugss_version: str = ugss.__version__
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        return _markdown(self)

    def write(self, json_path: str | Path, md_path: str | Path) -> None:
        Path(json_path).write_text(self.to_json() + "\n")
        Path(md_path).write_text(self.to_markdown())

    def summary_line(self, label: str | None = None) -> str:
        """One line per scan for the CLI, led by ``label`` (default: the input's file name)."""
        name = label or Path(self.scan.source).name
        if not self.assessed:
            text = f"{name}: {NOT_ASSESSED}"
        elif not self.hemorrhage_present:
            text = f"{name}: no hemorrhage"
        else:
            text = f"{name}: {self.total_volume_ml:.2f} mL"
            if self.interval_ml is not None:
                text += f" [{self.interval_ml[0]:.2f}–{self.interval_ml[1]:.2f}]"
            sides = "/".join(sorted({c.side for c in self.components}))
            text += f" in {len(self.components)} component(s), {sides}"
        if self.qc_flags:
            text += f"; QC: {', '.join(f.code for f in self.qc_flags)}"
        return text


def noise_flags(volume: Volume) -> list[QCFlag]:
    """``high_noise``: brain-tissue noise of a sharp (bone) kernel, where the model is much
    less accurate (``runtime/noise.py``; the node passes such series over)."""
    noise = volume_noise_hu(volume.hu)
    if noise is None or noise <= SHARP_NOISE_HU:
        return []
    return [
        QCFlag(
            "high_noise",
            f"image noise {noise:.0f} HU in brain tissue (above {SHARP_NOISE_HU:g}): a sharp "
            "(bone) reconstruction kernel or very thin slices? Hemorrhage is read on a "
            "soft-tissue kernel, and the model is much less accurate on sharp ones",
        )
    ]


def qc_flags(
    volume: Volume, seg: Segmentation, uncertainty: tuple[float | None, float | None] | None = None
) -> tuple[QCFlag, ...]:
    flags: list[QCFlag] = []
    sz, sy, sx = volume.spacing
    if not (IN_PLANE_MM[0] <= sy <= IN_PLANE_MM[1] and IN_PLANE_MM[0] <= sx <= IN_PLANE_MM[1]):
        flags.append(
            QCFlag(
                "unusual_spacing",
                f"in-plane spacing {sy:.3g} x {sx:.3g} mm is outside "
                f"{IN_PLANE_MM[0]}–{IN_PLANE_MM[1]} mm",
            )
        )
    elif abs(sy - sx) > ANISOTROPY * max(sy, sx):
        flags.append(QCFlag("unusual_spacing", f"non-square pixels {sy:.3g} x {sx:.3g} mm"))
    if not SLICE_MM[0] <= sz <= SLICE_MM[1]:
        flags.append(
            QCFlag(
                "unusual_spacing",
                f"slice spacing {sz:.3g} mm is outside {SLICE_MM[0]}–{SLICE_MM[1]} mm",
            )
        )
    hu = volume.hu
    border = np.concatenate([hu[:, 0, :], hu[:, -1, :], hu[:, :, 0], hu[:, :, -1]], axis=1)
    touching = (border > HEAD_HU).mean(axis=1) > BORDER_HEAD_FRACTION
    if touching.any():
        flags.append(
            QCFlag(
                "truncated_fov",
                f"the head touches the image border on {int(touching.sum())} "
                "slice(s): the field of view may cut off part of the head",
            )
        )
    bone, air = seg.intensity["bone_fraction"], seg.intensity["air_fraction"]
    if bone < MIN_BONE_FRACTION or air > MAX_AIR_FRACTION:
        flags.append(
            QCFlag(
                "non_ct_like_intensities",
                f"little bone ({bone:.2%} > {BONE_HU:g} HU) or mostly air ({air:.0%}): "
                "is this a head CT?",
            )
        )
    flags += icv_flags(seg.intracranial)
    flags += noise_flags(volume)
    mean_unc, uncertain_ml = uncertainty or uncertainty_summary(volume, seg)
    # about the mask: with an empty mask (mean None) there is no finding to doubt
    if (
        mean_unc is not None
        and uncertain_ml is not None
        and (
            mean_unc > HIGH_MEAN_UNCERTAINTY_BITS
            or uncertain_ml > max(UNCERTAIN_ML_FLOOR, UNCERTAIN_MASK_FRACTION * seg.volume_ml)
        )
    ):
        flags.append(
            QCFlag(
                "high_uncertainty",
                f"mean uncertainty {mean_unc:.2f} bits in the mask, "
                f"{uncertain_ml:.2f} mL of voxels above {UNCERTAIN_BITS} bits: review the scan",
            )
        )
    return tuple(flags)


def icv_flags(space: IntracranialSpace | None) -> list[QCFlag]:
    """The intracranial volume against an adult head's: not a head CT (nothing claimed), a
    scan that cuts the space off at its first or last slice, or an implausible volume."""
    if space is None:
        return []
    icv, (lo, hi) = space.volume_ml, ADULT_ICV_ML
    if not space.is_head:
        if not space.found:
            why = "no skull enclosing an intracranial space was found"
        elif space.widest_mm2 < HEAD_SLICE_MM2:
            why = (
                f"the space enclosed by bone is at most {space.widest_mm2:.0f} mm² on a slice, "
                f"smaller than any head's ({HEAD_SLICE_MM2:.0f} mm²)"
            )
        else:
            why = (
                f"the space enclosed by bone is {icv:.0f} mL, outside a head's "
                f"{HEAD_ICV_ML[0]:.0f}–{HEAD_ICV_ML[1]:.0f} mL, and the scan does not cut it off"
            )
        return [QCFlag("not_head_ct", f"{why}: {NOT_ASSESSED}, no hemorrhage reported")]
    if lo <= icv <= hi:
        return []
    if icv < lo and space.truncated:
        cuts = (("first", space.cut_inferior), ("last", space.cut_superior))
        ends = [end for end, cut in cuts if cut]
        return [
            QCFlag(
                "truncated_scan",
                f"intracranial volume {icv:.0f} mL is below an adult's {lo:.0f}–{hi:.0f} mL: the "
                f"scan cuts the intracranial space at its {' and '.join(ends)} slice, so only "
                "the scanned part was searched",
            )
        ]
    return [
        QCFlag(
            "implausible_icv",
            f"intracranial volume {icv:.0f} mL is outside an adult's {lo:.0f}–{hi:.0f} mL "
            "(a child, a skull defect or a failed estimate?): check what was searched",
        )
    ]


def uncertainty_summary(volume: Volume, seg: Segmentation) -> tuple[float | None, float | None]:
    """Mean entropy inside the mask (bits; ``None`` for an empty mask) and the volume of
    uncertain voxels (mL); both ``None`` without MC."""
    if seg.entropy_q is None:
        return None, None
    voxels = sum(c.voxels for c in seg.components)
    weighted = sum(c.voxels * (c.mean_uncertainty_bits or 0.0) for c in seg.components)
    mean = weighted / voxels if voxels else None  # the components tile the mask
    uncertain_map = seg.entropy_q >= steps_at_least(UNCERTAIN_BITS)
    if seg.intracranial is not None:  # only where hemorrhage was looked for
        uncertain_map &= seg.intracranial.mask
    uncertain = np.count_nonzero(uncertain_map)
    return mean, float(uncertain) * volume.voxel_volume_ml


def build_report(
    volume: Volume,
    seg: Segmentation,
    engine: Engine,
    *,
    timings: dict[str, float] | None = None,
    outputs: dict[str, str] | None = None,
) -> ScanReport:
    mean_unc, uncertain_ml = uncertainty_summary(volume, seg)
    times = {**seg.timings, **(timings or {})}
    return ScanReport(
        scan=ScanGeometry.of(volume),
        model=ModelIdentity.of(engine, seg),
        hemorrhage_present=seg.hemorrhage_present,
        total_volume_ml=seg.volume_ml,
        interval_ml=seg.interval_ml,
        interval_method=seg.interval_method,
        sample_volumes_ml=seg.sample_volumes_ml,
        slices_involved=seg.slices_involved,
        mean_uncertainty_bits=mean_unc,
        uncertain_volume_ml=uncertain_ml,
        components=seg.components,
        removed_components=seg.removed_components,
        removed_ml=seg.removed_ml,
        min_component_ml=seg.min_component_ml,
        min_component_slices=seg.min_component_slices,
        assessed=seg.assessed,
        intracranial_ml=seg.intracranial_ml,
        outside_intracranial_ml=seg.outside_ml,
        qc_flags=qc_flags(volume, seg, (mean_unc, uncertain_ml)),
        timings_s={k: round(times[k], 4) for k in (*STAGES, *times) if k in times},
        outputs=dict(outputs or {}),
    )


def _ranges(indices: tuple[int, ...]) -> str:
    """(3, 4, 5, 9) → '3–5, 9'."""
    if not indices:
        return "none"
    parts, start, prev = [], indices[0], indices[0]
    for i in (*indices[1:], None):
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}" if start == prev else f"{start}–{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def _markdown(r: ScanReport) -> str:
    s = r.scan
    lines = [
        f"# Hemorrhage report: {Path(s.source).name}",
        "",
        f"> {r.disclaimer}",
        "",
        "| | |",
        "|---|---|",
    ]
    if not r.assessed:
        lines.append(f"| Hemorrhage present | **{NOT_ASSESSED}** |")
    else:
        lines.append(f"| Hemorrhage present | **{'yes' if r.hemorrhage_present else 'no'}** |")
    lines += [
        f"| Total volume | **{r.total_volume_ml:.2f} mL** |",
    ]
    if r.interval_ml is not None:
        lines.append(f"| MC interval | {r.interval_ml[0]:.2f} – {r.interval_ml[1]:.2f} mL |")
    if r.uncertain_volume_ml is not None:
        mean = r.mean_uncertainty_bits
        shown = f"{mean:.3f} bits" if mean is not None else f"{NOT_AVAILABLE} (empty mask)"
        lines.append(f"| Mean uncertainty in mask | {shown} |")
        lines.append(
            f"| Uncertain voxels (≥ {UNCERTAIN_BITS} bits) | {r.uncertain_volume_ml:.2f} mL |"
        )
    if r.intracranial_ml is not None:
        lines.append(f"| Intracranial volume (searched) | {r.intracranial_ml:.0f} mL |")
    lines += [
        f"| Outside the intracranial space | {r.outside_intracranial_ml:.2f} mL dropped |",
        f"| Slices involved | {_ranges(r.slices_involved)} (0 = most inferior) |",
        f"| Specks removed | {r.removed_components} below {r.min_component_ml:g} mL or on fewer "
        f"than {r.min_component_slices} adjacent slices ({r.removed_ml:.3f} mL) |",
        "",
    ]
    if r.components:
        lines += [
            "## Components",
            "",
            "| # | volume mL | slices | side | centroid RAS mm | mean prob "
            "| mean uncertainty bits |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in r.components:
            unc = "–" if c.mean_uncertainty_bits is None else f"{c.mean_uncertainty_bits:.3f}"
            cen = ", ".join(f"{v:.1f}" for v in c.centroid_ras_mm)
            lines.append(
                f"| {c.index} | {c.volume_ml:.2f} | {c.slice_first}–{c.slice_last} | {c.side} "
                f"| {cen} | {c.mean_prob:.2f} | {unc} |"
            )
        lines.append("")
    lines += ["## Quality checks", ""]
    lines += [f"- **{f.code}**: {f.message}" for f in r.qc_flags] or ["- none raised"]
    m = r.model
    lines += [
        "",
        "## Scan",
        "",
        f"- source: `{s.source}` ({s.format}, stored {s.source_orientation})",
        f"- shape (slices, rows, columns): {' x '.join(map(str, s.shape_zyx))}",
        f"- spacing (mm): {' x '.join(f'{v:g}' for v in s.spacing_mm_zyx)}; "
        f"voxel {s.voxel_volume_ml * 1000:.3g} mm³",
        f"- field of view (mm): {s.field_of_view_mm_yx[0]:g} x {s.field_of_view_mm_yx[1]:g}",
        "",
        "## Model",
        "",
        f"- {m.name} version {m.version} ({m.kind}, method {m.method or '–'}, "
        f"{m.weights or 'unrecorded'} weights), used as {m.mode}"
        + (f" with T = {m.mc_samples}" if m.mc_samples else ""),
        f"- checkpoint sha256: `{m.checkpoint_sha256 or 'unknown'}`",
        f"- input {m.input_size}², windows {m.windows}, threshold {m.threshold:g}",
        f"- engine: {m.engine}",
        "",
        "## Timings (s)",
        "",
        "| " + " | ".join(r.timings_s) + " |",
        "|" + "---|" * len(r.timings_s),
        "| " + " | ".join(f"{v:.3f}" for v in r.timings_s.values()) + " |",
        "",
    ]
    if r.interval_method:
        lines += [
            f"Volume = voxel count × voxel volume of the mask. Interval: {r.interval_method}.",
            "",
        ]
    if r.outputs:
        lines += ["## Files", ""] + [f"- {k}: `{v}`" for k, v in r.outputs.items()] + [""]
    return "\n".join(lines)
