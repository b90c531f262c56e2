"""``ugss-node status``: series, jobs and outbox from the node database (read-only).

Safe to run while the node is serving (SQLite WAL readers do not block the writer).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ugss.dicom_node.db import NodeDB
from ugss.dicom_node.states import PASSED_STATES, SeriesState
from ugss.errors import InputError


@dataclass(frozen=True)
class NodeStatus:
    counts: dict[str, dict[str, int]]
    series: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    outbox: list[dict[str, Any]]
    studies: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "studies": self.studies,
            "series": self.series,
            "jobs": self.jobs,
            "outbox": self.outbox,
        }


def read_status(db_path: Path, limit: int = 20) -> NodeStatus:
    if not Path(db_path).is_file():
        raise InputError(f"{db_path}: no node database (has the node run with this spool?)")
    db = NodeDB(db_path, readonly=True)
    try:
        tables = ("series", "jobs", "outbox")
        counts = {t: db.counts(t) for t in tables}
        series, jobs, outbox = (db.rows(t, limit) for t in tables)
        studies = _studies(db.studies(limit))
    finally:
        db.close()
    for job in jobs:
        job["result"] = json.loads(job.get("result") or "{}")
    return NodeStatus(counts, series, jobs, outbox, studies)


def _studies(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per study: its series, each chosen (segmented) or passed over with why."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        study = out.setdefault(r["study_uid"], {"study_uid": r["study_uid"], "series": []})
        role = "passed" if r["state"] in PASSED_STATES else "receiving"
        if r["state"] not in (*PASSED_STATES, SeriesState.RECEIVING, SeriesState.PURGED):
            role = "chosen"
        study["series"].append({
            "series_uid": r["series_uid"], "label": r["label"], "role": role,
            "state": r["state"], "reason": r["error"] if role == "passed" else "",
            "instances": r["n_instances"],
        })  # fmt: skip
    return list(out.values())


def _format_studies(studies: list[dict[str, Any]]) -> list[str]:
    lines = ["", "STUDIES (newest first): the series chosen and why the others were not"]
    for st in studies:
        lines.append(f"study {_short(st['study_uid'])}")
        for s in st["series"]:
            label = s["label"][:24] or _short(s["series_uid"])
            lines.append(
                f"  {s['role']:9} {label:24} {s['instances']:>5}  {s['state']:10} "
                f"{s['reason'][:70]}"
            )
    return lines


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _short(uid: str) -> str:
    return uid if len(uid) <= 28 else "…" + uid[-27:]


def format_status(status: NodeStatus) -> str:
    """Plain text tables, one line per row (no patient data: the database holds none)."""
    lines = []
    for name in ("series", "jobs", "outbox"):
        parts = ", ".join(f"{k} {v}" for k, v in sorted(status.counts[name].items())) or "none"
        lines.append(f"{name}: {parts}")
    lines += _format_studies(status.studies)
    lines += [
        "",
        "SERIES (newest first)",
        f"{'series':29} {'state':10} {'inst':>5} {'last instance':19}  error",
    ]
    for s in status.series:
        lines.append(
            f"{_short(s['series_uid']):29} {s['state']:10} {s['n_instances']:>5} "
            f"{_when(s['last_at']):19}  {s['error'][:60]}"
        )
    lines += [
        "",
        "JOBS",
        f"{'id':>5} {'series':29} {'ver':>3} {'state':8} {'volume mL':>10}  error",
    ]
    for j in status.jobs:
        vol = j["result"].get("volume_ml")
        vol_s = f"{vol:.2f}" if isinstance(vol, int | float) else "-"
        lines.append(
            f"{j['id']:>5} {_short(j['series_uid']):29} {j['version']:>3} {j['state']:8} "
            f"{vol_s:>10}  {j['error'][:60]}"
        )
    lines += [
        "",
        "OUTBOX",
        f"{'id':>5} {'job':>5} {'destination':12} {'state':8} {'tries':>5} {'sent':19}  error",
    ]
    for o in status.outbox:
        lines.append(
            f"{o['id']:>5} {o['job_id']:>5} {o['destination'][:12]:12} {o['state']:8} "
            f"{o['attempts']:>5} {_when(o['sent_at']):19}  {o['error'][:50]}"
        )
    return "\n".join(lines)
