"""What a batch of ``ugss-infer`` did: output names, the closing line and the ``--summary`` CSV.

Inputs that share a name (``a/x.nii.gz``, ``b/x.nii``) get outputs named after their folder
(``a_x_*``, ``b_x_*``); the console and the CSV say which input got which name.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ugss.runtime.report import ScanReport
from ugss.wording import plural

SUMMARY_COLUMNS = (
    "scan",
    "output_name",
    "status",
    "hemorrhage",
    "volume_ml",
    "interval_low_ml",
    "interval_high_ml",
    "components",
    "slices",
    "intracranial_ml",
    "qc_flags",
    "error",
)


def scan_name(path: Path) -> str:
    """``x.nii.gz`` → ``x``; a DICOM series folder → its name."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name or "scan"


def unique_names(paths: list[Path]) -> list[str]:
    """Output stems, made unique with the parent folder's name or a counter."""
    names = [scan_name(p) for p in paths]
    seen: dict[str, int] = {}
    out = []
    for p, n in zip(paths, names, strict=True):
        if names.count(n) > 1 and p.parent.name:
            n = f"{p.parent.name}_{n}"
        if n in seen:
            seen[n] += 1
            n = f"{n}_{seen[n]}"
        else:
            seen[n] = 1
        out.append(n)
    return out


@dataclass(frozen=True)
class ScanOutcome:
    """One input of a batch: its output name, and its report or its error line."""

    source: str
    name: str
    report: ScanReport | None = None
    error: str = ""
    exit_code: int = 0

    @property
    def renamed(self) -> bool:
        """The outputs are not named after the input (another input has its name)."""
        return self.name != scan_name(Path(self.source))

    def finding(self) -> str:
        """``yes``, ``no``, ``not assessed`` or ``""`` (failed)."""
        r = self.report
        if r is None:
            return ""
        if not r.assessed:
            return "not assessed"
        return "yes" if r.hemorrhage_present else "no"

    def row(self) -> dict[str, str]:
        """The ``--summary`` row: numbers as the report has them, empty where there are none."""
        r = self.report
        row = dict.fromkeys(SUMMARY_COLUMNS, "")
        row.update(scan=self.source, output_name=self.name, error=self.error)
        row["status"] = "ok" if r is not None else "failed"
        if r is None:
            return row
        row.update(
            hemorrhage=self.finding(),
            volume_ml=f"{r.total_volume_ml:.2f}",
            components=str(len(r.components)),
            slices=str(len(r.slices_involved)),
            intracranial_ml="" if r.intracranial_ml is None else f"{r.intracranial_ml:.0f}",
            qc_flags=";".join(f.code for f in r.qc_flags),
        )
        if r.interval_ml is not None:
            row.update(
                interval_low_ml=f"{r.interval_ml[0]:.2f}",
                interval_high_ml=f"{r.interval_ml[1]:.2f}",
            )
        return row


def write_summary_csv(path: Path, outcomes: list[ScanOutcome]) -> None:
    """One row per input, in input order (``status`` ok or failed, ``error`` its line)."""
    with open(path, "w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
        out.writeheader()
        out.writerows(o.row() for o in outcomes)


def closing_line(outcomes: list[ScanOutcome], seconds: float) -> str:
    """``4 scans: 2 with hemorrhage, 1 without, 1 failed in 12.3 s``."""
    findings = [o.finding() for o in outcomes]
    parts = [f"{findings.count('yes')} with hemorrhage", f"{findings.count('no')} without"]
    if findings.count("not assessed"):
        parts.append(f"{findings.count('not assessed')} not assessed (not a head CT)")
    parts.append(f"{findings.count('')} failed")
    return f"{plural(len(outcomes), 'scan')}: {', '.join(parts)} in {seconds:.1f} s"


def renamed_lines(outcomes: list[ScanOutcome]) -> list[str]:
    """For inputs that share a name: which output name each got."""
    renamed = [o for o in outcomes if o.renamed]
    if not renamed:
        return []
    return ["inputs with the same name, outputs named apart:"] + [
        f"  {o.source} → {o.name}_*" for o in renamed
    ]
