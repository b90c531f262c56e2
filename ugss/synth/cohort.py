"""A synthetic cohort on disk in the PhysioNet CT-ICH layout, with per-scan truth.

Layout of ``OUT/``:

- ``ct_scans/NNN.nii[.gz]``: int16 HU, voxel order as drawn per scan (canonical L/P/S or a
  flipped/swapped in-plane order with the matching affine; ``read_nifti`` canonicalizes);
- ``masks/NNN.nii[.gz]``: uint8 0/1 hemorrhage mask on exactly the scan's grid and voxel order;
- ``hemorrhage_diagnosis_raw_ct.csv``: PhysioNet's per-slice labels. ``SliceNumber`` is 1-based
  along the third stored axis, which always runs inferior → superior here, so it is also the
  canonical slice index + 1;
- ``truth.csv``: one row per scan (paths relative to ``OUT/``; ``positive_slices`` and
  ``fracture_slices`` are 0-based canonical slice indices, ``;``-joined; ``volume_ml`` is mask
  voxels × |det(affine)| / 1000 and equals what the written files give, to the last bit);
- ``cohort.json``: the options and every scan's truth, for programs;
- ``dicom/NNN/IM*.dcm`` with ``--dicom``: each scan as a CT series;
- ``cavity/NNN.nii`` with ``--cavity``: uint8 0/1 intracranial space (inside the inner table,
  above the cranial floor) on the scan's grid; ``truth.csv``'s ``icv_ml`` is its volume.

Scan ``NNN`` is ``make_case(seed, matrix=…, thin=…, hemorrhage=…)`` with the ``seed``, ``thin`` and
``hemorrhage_option`` of its truth row (and ``kernel=…`` of its truth when the cohort was written
with a ``sharp_fraction``): any scan can be regenerated alone. With
``write_cohort(scan_options=…)`` (e.g. a synthetic site, ``ugss.synth.sites``) the scan also gets
those options: it is ``make_case(seed, matrix=…, hemorrhage=…, **extra["scan_options"])`` with
the scan's ``extra`` in ``cohort.json`` (``thin`` there is the planned flag, which decides the
random stream; ``truth.csv``'s ``thin`` is the slice thickness actually drawn, < 4 mm).
"""

from __future__ import annotations

import csv
import inspect
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ugss.errors import ConfigError
from ugss.runtime.nifti import write_nifti
from ugss.runtime.volume import Volume, VolumeSource
from ugss.synth.hemorrhage import TYPES, random_kinds
from ugss.synth.scan import MAX_MATRIX, MIN_MATRIX, ScanTruth, SynthCase, make_case

DIAGNOSIS_CSV = "hemorrhage_diagnosis_raw_ct.csv"
TRUTH_CSV = "truth.csv"
DIAGNOSIS_COLUMNS = (
    "PatientNumber",
    "SliceNumber",
    "Intraventricular",
    "Intraparenchymal",
    "Subarachnoid",
    "Epidural",
    "Subdural",
    "No_Hemorrhage",
    "Fracture_Yes_No",
)
MAX_SCANS = 9999
OWN_FILE = re.compile(r"\d+\.nii(\.gz)?")  # a scan, mask or cavity file written here


@dataclass(frozen=True)
class CohortSummary:
    """What ``make_cohort`` wrote: the folder and one truth record per scan."""

    out_dir: Path
    scans: list[ScanTruth]
    seed: int = 0
    matrix: int = 512
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "n_scans": len(self.scans),
            "seed": self.seed,
            "matrix": self.matrix,
            "seconds": round(self.seconds, 3),
            "scans": [s.to_dict() for s in self.scans],
        }


def make_cohort(
    out_dir: Path,
    n_scans: int = 20,
    seed: int = 0,
    *,
    matrix: int = 512,
    thin_fraction: float = 0.15,
    free_fraction: float = 0.25,
    dicom: bool = False,
    compress: bool = False,
    cavity: bool = False,
    sharp_fraction: float | None = None,
) -> CohortSummary:
    """Write ``n_scans`` synthetic head CTs with masks and truth under ``out_dir``.

    ``thin_fraction`` / ``free_fraction``: share of thin-slice / hemorrhage-free scans (rounded
    to whole scans). ``sharp_fraction``: share of sharp-kernel scans, placed at random (None:
    each scan draws its kernel, sharp in ~18 %). ``cavity``: also write ``cavity/NNN`` (the
    intracranial space). Same arguments → byte-identical NIfTI and CSV files.
    """
    return write_cohort(
        out_dir,
        n_scans,
        seed,
        matrix=matrix,
        thin_fraction=thin_fraction,
        free_fraction=free_fraction,
        dicom=dicom,
        compress=compress,
        cavity=cavity,
        sharp_fraction=sharp_fraction,
    )


def write_cohort(
    out_dir: Path | str,
    n_scans: int = 20,
    seed: int = 0,
    *,
    matrix: int = 512,
    thin_fraction: float = 0.15,
    free_fraction: float = 0.25,
    dicom: bool = False,
    compress: bool = False,
    cavity: bool = False,
    sharp_fraction: float | None = None,
    on_scan: Callable[[int, ScanTruth, float], None] | None = None,
    scan_options: Callable[[int], Mapping[str, Any]] | None = None,
) -> CohortSummary:
    """``make_cohort`` with a callback ``on_scan(index, truth, seconds)`` after each scan.

    ``scan_options(index)``: more ``make_case`` keyword options for scan ``index`` (0-based),
    e.g. ``ugss.synth.sites.site_options("B", seed)``; they may override ``matrix`` and ``thin``
    but not the planned ``hemorrhage``. ``None`` (the default) writes exactly the cohort
    ``make_cohort`` writes.
    """
    out_dir = Path(out_dir)
    validate_options(out_dir, n_scans, seed, matrix, thin_fraction, free_fraction, sharp_fraction)
    start = time.perf_counter()
    plan = _plan(n_scans, seed, thin_fraction, free_fraction)
    kernels = _kernels(n_scans, seed, sharp_fraction)
    width = max(3, len(str(n_scans)))
    suffix = ".nii.gz" if compress else ".nii"
    for sub in ("ct_scans", "masks", *(("cavity",) if cavity else ())):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)

    scans: list[ScanTruth] = []
    for index, (scan_seed, thin, option) in enumerate(plan):
        t0 = time.perf_counter()
        scan_id = f"{index + 1:0{width}d}"
        extra_options: dict[str, Any] = {}
        if scan_options is not None:
            extra_options = dict(scan_options(index))
            if "hemorrhage" in extra_options:
                raise ConfigError("scan_options may not set 'hemorrhage' (the cohort plans it)")
            thin = bool(extra_options.pop("thin", thin))
        kwargs: dict[str, Any] = {"matrix": matrix, "thin": thin, **kernels[index]}
        kwargs.update(extra_options)
        case = make_case(scan_seed, hemorrhage=option, **kwargs)
        truth = _write_scan(out_dir, scan_id, case, suffix, cavity=cavity, dicom=dicom, seed=seed)
        truth = replace(
            truth,
            extra={
                **truth.extra,
                "hemorrhage_option": option,
                **({"scan_options": {"thin": thin, **extra_options}} if scan_options else {}),
            },
        )
        scans.append(truth)
        if on_scan is not None:
            on_scan(index, truth, time.perf_counter() - t0)

    _remove_stale(out_dir, scans, suffix, cavity)
    _write_diagnosis_csv(out_dir / DIAGNOSIS_CSV, scans)
    _write_truth_csv(out_dir / TRUTH_CSV, scans)
    summary = CohortSummary(out_dir, scans, seed, matrix, time.perf_counter() - start)
    options = {
        "n_scans": n_scans,
        "seed": seed,
        "matrix": matrix,
        "thin_fraction": thin_fraction,
        "free_fraction": free_fraction,
        "dicom": dicom,
        "compress": compress,
        "cavity": cavity,
        "sharp_fraction": sharp_fraction,
    }
    if scan_options is not None:
        options["scan_options"] = getattr(scan_options, "site", "custom")
    doc = {"options": options, "scans": [s.to_dict() for s in scans]}
    (out_dir / "cohort.json").write_text(json.dumps(doc, indent=1) + "\n")
    return summary


def _write_scan(
    out_dir: Path,
    scan_id: str,
    case: SynthCase,
    suffix: str,
    *,
    cavity: bool,
    dicom: bool,
    seed: int,
) -> ScanTruth:
    """Write one scan's CT, mask (and cavity, DICOM series); its truth with those paths."""
    volume, truth = case.volume, case.truth
    ct_rel, mask_rel = f"ct_scans/{scan_id}{suffix}", f"masks/{scan_id}{suffix}"
    ct_path = out_dir / ct_rel
    volume = replace(volume, source=VolumeSource(str(ct_path), "nifti"))
    # integer HU already: converting first halves the bytes write_nifti reorders
    write_nifti(ct_path, volume.hu.astype(np.int16), like=volume, dtype=np.int16)
    write_nifti(out_dir / mask_rel, case.mask, like=volume, dtype=np.uint8)
    if cavity:
        cavity_u8 = case.cavity.astype(np.uint8)
        write_nifti(out_dir / f"cavity/{scan_id}{suffix}", cavity_u8, like=volume, dtype=np.uint8)
    dicom_rel = ""
    if dicom:
        dicom_rel = f"dicom/{scan_id}"
        _write_dicom(volume, out_dir / dicom_rel, scan_id, seed)
    return replace(truth, scan_id=scan_id, ct_path=ct_rel, mask_path=mask_rel, dicom_dir=dicom_rel)


def _remove_stale(out_dir: Path, scans: list[ScanTruth], suffix: str, cavity: bool) -> None:
    """Scans of an earlier run into the same folder that this cohort does not hold (a larger
    ``--n``, the other ``--compress``, a dropped ``--cavity`` or ``--dicom``) are removed, so
    the folder holds exactly what ``truth.csv`` lists. Only files named like ours go."""
    ids = {s.scan_id for s in scans}
    keep = {f"{i}{suffix}" for i in ids}
    for sub in ("ct_scans", "masks", "cavity"):
        for path in _own_files(out_dir / sub):
            if path.name not in keep or (sub == "cavity" and not cavity):
                path.unlink()
    wanted = {s.dicom_dir for s in scans if s.dicom_dir}
    dicom = out_dir / "dicom"
    if dicom.is_dir():
        for series in sorted(p for p in dicom.iterdir() if p.is_dir() and p.name.isdigit()):
            if f"dicom/{series.name}" not in wanted:
                for old in series.glob("IM*.dcm"):
                    old.unlink()
                if not any(series.iterdir()):
                    series.rmdir()


def _own_files(folder: Path) -> list[Path]:
    """``NNN.nii`` / ``NNN.nii.gz`` files in ``folder`` (what ``write_cohort`` writes there)."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.is_file() and OWN_FILE.fullmatch(p.name)]


def validate_options(
    out_dir: Path, n_scans, seed, matrix, thin_fraction, free_fraction, sharp_fraction=None
) -> None:
    """Raise ``ConfigError`` for options ``make_cohort`` cannot honour."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a folder")
    if not isinstance(n_scans, int | np.integer) or not 1 <= n_scans <= MAX_SCANS:
        raise ConfigError(f"number of scans must be 1–{MAX_SCANS}, got {n_scans}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed}")
    if not isinstance(matrix, int | np.integer) or not MIN_MATRIX <= matrix <= MAX_MATRIX:
        raise ConfigError(f"matrix must be {MIN_MATRIX}–{MAX_MATRIX} pixels, got {matrix}")
    fractions = [("thin fraction", thin_fraction), ("free fraction", free_fraction)]
    if sharp_fraction is not None:
        fractions.append(("sharp fraction", sharp_fraction))
    for name, value in fractions:
        if not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1, got {value}")


def _plan(
    n: int, seed: int, thin_fraction: float, free_fraction: float
) -> list[tuple[int, bool, str]]:
    """Per scan: (seed, thin, hemorrhage option). Fractions are exact counts, placed at random;
    the scans with blood cycle through the five types as their main type, so every type shows up
    in any cohort with at least five such scans."""
    rng = np.random.default_rng([int(seed), 0xC0_407])
    thin = set(rng.permutation(n)[: round(thin_fraction * n)].tolist())
    free = set(rng.permutation(n)[: round(free_fraction * n)].tolist())
    order = [TYPES[i] for i in rng.permutation(len(TYPES))]
    plan, with_blood = [], 0
    for i in range(n):
        scan_seed = np.random.SeedSequence([int(seed), i]).generate_state(1, np.uint64)[0]
        if i in free:
            option = "none"
        else:
            option = ";".join(random_kinds(rng, include=order[with_blood % len(order)]))
            with_blood += 1
        plan.append((int(scan_seed >> np.uint64(1)), i in thin, option))
    return plan


def _kernels(n: int, seed: int, sharp_fraction: float | None) -> list[dict[str, str]]:
    """Per scan: the ``make_case`` kernel option. ``None``: none (each scan draws its own);
    otherwise an exact count of sharp scans at random places, from a stream of its own so that
    the rest of the plan is the same as without it."""
    if sharp_fraction is None:
        return [{} for _ in range(n)]
    rng = np.random.default_rng([int(seed), 0x5A_A4])
    sharp = set(rng.permutation(n)[: round(sharp_fraction * n)].tolist())
    return [{"kernel": "sharp" if i in sharp else "soft"} for i in range(n)]


def _write_dicom(volume: Volume, folder: Path, scan_id: str, seed: int) -> None:
    """Each scan as a DICOM CT series (the writer lives in the runtime; imported only here)."""
    try:
        from ugss.runtime.dicom_series import write_dicom_series  # type: ignore[attr-defined]
    except ImportError:
        from ugss.runtime.dicom_write import write_dicom_series
    if folder.is_dir():  # a previous run's series: replace it, never other files
        for old in folder.glob("IM*.dcm"):
            old.unlink()
    kwargs: dict[str, Any] = {}
    if "uid_entropy" in inspect.signature(write_dicom_series).parameters:
        kwargs["uid_entropy"] = f"ugss-synth/{seed}/{scan_id}"  # same cohort → same UIDs
    write_dicom_series(
        volume,
        folder,
        patient_id=f"SYNTH{scan_id}",
        series_description=f"UGSS synthetic head CT {scan_id}",
        **kwargs,
    )


def _write_diagnosis_csv(path: Path, scans: list[ScanTruth]) -> None:
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(DIAGNOSIS_COLUMNS)
        for s in scans:
            fractures = set(s.fracture_slices)
            for k, kinds in enumerate(s.slice_types):
                flags = [int(t in kinds) for t in TYPES]
                out.writerow([int(s.scan_id), k + 1, *flags, int(not kinds), int(k in fractures)])


def truth_row(s: ScanTruth) -> dict[str, Any]:
    """One ``truth.csv`` row; floats in shortest round-trip form, lists ``;``-joined."""
    row: dict[str, Any] = {
        "scan_id": s.scan_id,
        "ct_path": s.ct_path,
        "mask_path": s.mask_path,
        "dicom_dir": s.dicom_dir,
        "types": ";".join(s.types) if s.types else "none",
        "volume_ml": repr(float(s.volume_ml)),
    }
    for t in TYPES:
        row[f"{t}_ml"] = repr(float(s.volumes_ml.get(t, 0.0)))
    row.update(
        n_positive_slices=s.n_positive_slices,
        positive_slices=";".join(map(str, s.positive_slices)),
        fracture_slices=";".join(map(str, s.fracture_slices)),
        spacing_z=repr(s.spacing[0]),
        spacing_y=repr(s.spacing[1]),
        spacing_x=repr(s.spacing[2]),
        shape_z=s.shape[0],
        shape_y=s.shape[1],
        shape_x=s.shape[2],
        orientation=s.orientation,
        thin=int(s.thin),
        noise_sd=s.noise_sd,
        icv_ml=repr(float(s.extra.get("icv_ml", 0.0))),
        seed=s.seed,
        hemorrhage_option=s.extra.get("hemorrhage_option", ""),
    )
    return row


def _write_truth_csv(path: Path, scans: list[ScanTruth]) -> None:
    rows = [truth_row(s) for s in scans]
    with open(path, "w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        out.writeheader()
        out.writerows(rows)
