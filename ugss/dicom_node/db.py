"""The node's state in SQLite (WAL): series, instances, jobs and the outbox.

Migrations are named and recorded in ``schema_migrations``. One connection is shared by the
node's threads behind a lock; each public method is one short transaction, so an instance row
is committed before its C-STORE is answered and a job's outbox rows land with its result.

Durability: WAL with ``synchronous=NORMAL`` survives a crash of the node (committed
transactions are in the WAL); after a power loss the newest transactions may be missing, so
the spool — whose files are fsynced before the answer — is the truth for instances, and
``Node.start`` re-records any spooled file the database does not know (``known_paths``).
Result UIDs are deterministic, so a job or delivery replayed after a power loss adds nothing.

States:
- series: receiving → queued → processing → done | failed (a new instance reopens it)
  | quarantined (the decoder process crashed or hit a limit: kept for inspection, never rerun)
  | passed (study selection chose another series; ``error`` says why) | ignored (instances
  acknowledged but not kept: localizer, reformat, dose report; ``error`` says why)
  → purged (retention: ``retention_h`` after its last instance a finished, quarantined, passed
  or ignored series has its instances and results deleted; the row and its jobs stay, and a
  new instance reopens it as receiving)
- studies: a study is judged when none of its series had an instance for the quiet period
  (``quiet_studies``); ``queue_study`` records the choice and its jobs in one transaction
- jobs: queued → running → done | failed (running jobs go back to queued on restart); kind
  ``series`` segments a series, kind ``study`` reports a study with no suitable series
- outbox: pending → sent | failed (retries with backoff until ``max_attempts``)
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ugss.dicom_node.states import FINISHED_STATES, OPEN_STATES, JobState, SeriesState

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001_initial",
        """
        CREATE TABLE series (
            series_uid TEXT PRIMARY KEY,
            study_uid TEXT NOT NULL,
            calling_ae TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL,
            n_instances INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0,
            first_at REAL NOT NULL,
            last_at REAL NOT NULL,
            error TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE instances (
            series_uid TEXT NOT NULL REFERENCES series(series_uid),
            sop_uid TEXT NOT NULL,
            path TEXT NOT NULL,
            size INTEGER NOT NULL,
            received_at REAL NOT NULL,
            PRIMARY KEY (series_uid, sop_uid)
        );
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            series_uid TEXT NOT NULL REFERENCES series(series_uid),
            version INTEGER NOT NULL,
            state TEXT NOT NULL,
            n_instances INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            error TEXT NOT NULL DEFAULT '',
            result TEXT NOT NULL DEFAULT '{}',
            UNIQUE (series_uid, version)
        );
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            destination TEXT NOT NULL,
            path TEXT NOT NULL,
            sop_class_uid TEXT NOT NULL,
            sop_instance_uid TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            sent_at REAL,
            error TEXT NOT NULL DEFAULT '',
            UNIQUE (job_id, destination, sop_instance_uid)
        );
        CREATE INDEX series_state ON series(state, last_at);
        CREATE INDEX jobs_state ON jobs(state, id);
        CREATE INDEX outbox_due ON outbox(state, next_at);
        """,
    ),
    (
        "0002_peers_and_budgets",
        """
        ALTER TABLE series ADD COLUMN peer TEXT NOT NULL DEFAULT '';
        ALTER TABLE series ADD COLUMN voxels INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE series ADD COLUMN result_bytes INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX series_peer ON series(peer, first_at);
        """,
    ),
    (
        "0003_studies",
        """
        ALTER TABLE series ADD COLUMN label TEXT NOT NULL DEFAULT '';
        ALTER TABLE series ADD COLUMN judged_at REAL;
        ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'series';
        CREATE INDEX series_study ON series(study_uid, last_at);
        """,
    ),
)


@dataclass(frozen=True)
class Job:
    id: int
    series_uid: str
    study_uid: str
    version: int
    state: JobState
    n_instances: int
    attempts: int
    created_at: float
    last_at: float  # when the series' newest instance arrived
    kind: str = "series"  # "series": segment it; "study": the study's "not assessed" report


@dataclass(frozen=True)
class StudySeries:
    """One series of a study as selection sees it (``reason``: why it was passed over)."""

    series_uid: str
    label: str
    state: SeriesState
    reason: str
    n_instances: int
    job_state: JobState | str  # state of its newest segmentation job ("" if none)


@dataclass(frozen=True)
class OutboxItem:
    id: int
    job_id: int
    destination: str
    path: str
    sop_class_uid: str
    sop_instance_uid: str
    attempts: int


@dataclass(frozen=True)
class SeriesBudget:
    """What a new instance would add to: its series (None if new) and its peer's last hour."""

    peer: str | None
    n_instances: int
    voxels: int
    peer_series_last_hour: int


@dataclass(frozen=True)
class NewInstance:
    """What recording an instance did: new or a resend, and whether it reopened its series."""

    new: bool
    reopened: bool
    n_instances: int


class NodeDB:
    """Thread-safe access to the node database (one connection, one lock)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            uri = f"file:{self.path}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.isolation_level = None  # explicit transactions
        self._lock = threading.RLock()
        if not readonly:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _migrate(self) -> None:
        with self._tx() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (name TEXT PRIMARY KEY, applied_at REAL)"
            )
            done = {r[0] for r in c.execute("SELECT name FROM schema_migrations")}
            for name, sql in MIGRATIONS:
                if name in done:
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, time.time()))

    # --- receiving ----------------------------------------------------------------------------

    def record_instance(
        self,
        *,
        series_uid: str,
        study_uid: str,
        sop_uid: str,
        path: str,
        size: int,
        calling_ae: str,
        now: float | None = None,
        peer: str = "",
        voxels: int = 0,
        label: str = "",
    ) -> NewInstance:
        """Called after the file is on disk, before the C-STORE response."""
        now = time.time() if now is None else now
        with self._tx() as c:
            row = c.execute(
                "SELECT state, n_instances FROM series WHERE series_uid=?", (series_uid,)
            ).fetchone()
            if row is not None and row["state"] == SeriesState.IGNORED:  # its first kept instance
                c.execute(
                    "UPDATE series SET state='receiving', n_instances=0, error='', peer=?,"
                    " calling_ae=?, judged_at=NULL WHERE series_uid=?",
                    (peer, calling_ae, series_uid),
                )
                row = None
            if row is None:
                c.execute(
                    "INSERT OR IGNORE INTO series (series_uid, study_uid, calling_ae, state,"
                    " first_at, last_at, peer, label) VALUES (?, ?, ?, 'receiving', ?, ?, ?, ?)",
                    (series_uid, study_uid, calling_ae, now, now, peer, label[:64]),
                )
            old = c.execute(
                "SELECT size FROM instances WHERE series_uid=? AND sop_uid=?", (series_uid, sop_uid)
            ).fetchone()
            if old is not None:  # a resend: same instance, replaced on disk; no reopening
                c.execute(
                    "UPDATE instances SET size=?, received_at=? WHERE series_uid=? AND sop_uid=?",
                    (size, now, series_uid, sop_uid),
                )
                c.execute(
                    "UPDATE series SET bytes=bytes+? WHERE series_uid=?",
                    (size - old["size"], series_uid),
                )
                n = row["n_instances"] if row is not None else 0
                return NewInstance(False, False, n)
            c.execute(
                "INSERT INTO instances VALUES (?, ?, ?, ?, ?)",
                (series_uid, sop_uid, path, size, now),
            )
            reopened = row is not None and row["state"] not in OPEN_STATES
            if row is not None and row["state"] == SeriesState.QUEUED:  # wait for the rest
                c.execute("DELETE FROM jobs WHERE series_uid=? AND state='queued'", (series_uid,))
            c.execute(  # a quarantined series stays so: more slices never rerun the decoder
                "UPDATE series SET n_instances=n_instances+1, bytes=bytes+?, last_at=?,"
                " voxels=voxels+?,"
                " state=CASE state WHEN 'quarantined' THEN state ELSE 'receiving' END,"
                " error=CASE state WHEN 'quarantined' THEN error ELSE '' END WHERE series_uid=?",
                (size, now, voxels, series_uid),
            )
            n = (row["n_instances"] if row is not None else 0) + 1
            return NewInstance(True, reopened, n)

    def record_ignored(
        self, *, series_uid: str, study_uid: str, reason: str, label: str = "",
        now: float | None = None,
    ) -> bool:  # fmt: skip
        """An instance acknowledged but not kept: its series is listed (state ``ignored``,
        ``error`` = the reason) so the study's report can say why it was not assessed, and it
        keeps the study open. True when this made a new series row."""
        now = time.time() if now is None else now
        with self._tx() as c:
            new = c.execute(
                "INSERT OR IGNORE INTO series (series_uid, study_uid, state, first_at, last_at,"
                " error, label, n_instances) VALUES (?, ?, 'ignored', ?, ?, ?, ?, 1)",
                (series_uid, study_uid, now, now, reason[:500], label[:64]),
            ).rowcount
            if not new:
                c.execute(
                    "UPDATE series SET last_at=MAX(last_at, ?),"
                    " n_instances=n_instances+(state='ignored') WHERE series_uid=?",
                    (now, series_uid),
                )
        return bool(new)

    def budget(self, series_uid: str, peer: str, now: float | None = None) -> SeriesBudget:
        """Counts the receive limits are checked against (one read, no write)."""
        now = time.time() if now is None else now
        with self._lock:
            row = self._conn.execute(
                "SELECT peer, n_instances, voxels FROM series WHERE series_uid=?", (series_uid,)
            ).fetchone()
            recent = self._conn.execute(
                "SELECT COUNT(*) FROM series WHERE peer=? AND first_at>?", (peer, now - 3600.0)
            ).fetchone()[0]
        if row is None:
            return SeriesBudget(None, 0, 0, int(recent))
        return SeriesBudget(row["peer"], row["n_instances"], row["voxels"], int(recent))

    def known_paths(self) -> set[str]:
        return {r[0] for r in self._query("SELECT path FROM instances")}

    def spool_bytes(self) -> int:
        """Instances and results together: both count against ``spool_limit_mb``."""
        return int(self._query("SELECT COALESCE(SUM(bytes + result_bytes), 0) FROM series")[0][0])

    def set_result_bytes(self, series_uid: str, size: int) -> int:
        """Record the size of a series' results on disk; returns the size recorded before."""
        with self._tx() as c:
            row = c.execute(
                "SELECT result_bytes FROM series WHERE series_uid=?", (series_uid,)
            ).fetchone()
            c.execute("UPDATE series SET result_bytes=? WHERE series_uid=?", (size, series_uid))
        return int(row[0]) if row is not None else 0

    # --- jobs ---------------------------------------------------------------------------------

    def quiet_studies(self, quiet_s: float, now: float | None = None) -> list[str]:
        """Studies to judge: one of their series is receiving (or ignored and not yet judged)
        and no series of the study has had an instance for ``quiet_s`` (PS3.4 has no
        end-of-study either)."""
        now = time.time() if now is None else now
        rows = self._query(
            "SELECT study_uid FROM series GROUP BY study_uid HAVING MAX(last_at)<=? AND"
            " SUM(state='receiving' OR (state='ignored' AND judged_at IS NULL))>0"
            " ORDER BY MAX(last_at)",
            (now - quiet_s,),
        )
        return [str(r[0]) for r in rows]

    def study_series(self, study_uid: str) -> list[StudySeries]:
        """Every series of a study (oldest first) with its state and the reason it has."""
        rows = self._query(
            "SELECT s.series_uid, s.label, s.state, s.error, s.n_instances, (SELECT j.state FROM"
            " jobs j WHERE j.series_uid=s.series_uid AND j.kind='series' ORDER BY j.version DESC"
            " LIMIT 1) AS job_state FROM series s WHERE s.study_uid=? ORDER BY s.first_at,"
            " s.series_uid",
            (study_uid,),
        )
        return [
            StudySeries(
                r[0], r[1], SeriesState(r[2]), r[3], int(r[4]), JobState(r[5]) if r[5] else ""
            )
            for r in rows
        ]

    def queue_study(
        self,
        study_uid: str,
        *,
        chosen: list[str],
        passed: dict[str, str] | None = None,
        not_assessed_on: str | None = None,
        now: float | None = None,
    ) -> list[Job]:
        """Record a study's selection in one transaction: a job (next version) per chosen
        series, the reason of each passed-over series, and ``not_assessed_on`` (a series of
        the study) anchors a study job: the "not assessed" report without a SEG."""
        now = time.time() if now is None else now
        ids = []
        with self._tx() as c:
            for uid, reason in (passed or {}).items():
                c.execute(
                    "UPDATE series SET state=CASE state WHEN 'ignored' THEN state ELSE 'passed'"
                    " END, error=?, judged_at=? WHERE series_uid=? AND state IN ('receiving',"
                    " 'ignored')",
                    (reason[:500], now, uid),
                )
            c.execute(
                "UPDATE series SET judged_at=? WHERE study_uid=? AND state='ignored'",
                (now, study_uid),
            )
            anchors = [(uid, "series") for uid in chosen]
            anchors += [(not_assessed_on, "study")] if not_assessed_on else []
            for uid, kind in anchors:
                version, n = c.execute(
                    "SELECT (SELECT COALESCE(MAX(version), 0) + 1 FROM jobs WHERE series_uid=?),"
                    " n_instances FROM series WHERE series_uid=?",
                    (uid, uid),
                ).fetchone()
                cur = c.execute(
                    "INSERT INTO jobs (series_uid, version, state, n_instances, created_at, kind)"
                    " VALUES (?, ?, 'queued', ?, ?, ?)",
                    (uid, version, n, now, kind),
                )
                if kind == "series":
                    c.execute(
                        "UPDATE series SET state='queued', judged_at=?, error='' WHERE"
                        " series_uid=?",
                        (now, uid),
                    )
                ids.append(int(cur.lastrowid or 0))
        return [self.job(i) for i in ids]

    def study_answers(self, study_uid: str) -> int:
        """How many "not assessed" study reports the study has had (jobs of kind study)."""
        return int(self._query(
            "SELECT COUNT(*) FROM jobs j JOIN series s USING (series_uid) WHERE s.study_uid=?"
            " AND j.kind='study'", (study_uid,),
        )[0][0])  # fmt: skip

    def queue_quiet_series(self, quiet_s: float, now: float | None = None) -> list[Job]:
        """Without selection: every receiving series of each quiet study becomes a job."""
        jobs = []
        for study in self.quiet_studies(quiet_s, now):
            chosen = [
                s.series_uid for s in self.study_series(study) if s.state == SeriesState.RECEIVING
            ]
            jobs += self.queue_study(study, chosen=chosen, now=now)
        return jobs

    def job(self, job_id: int) -> Job:
        r = self._query(
            "SELECT j.*, s.study_uid, s.last_at FROM jobs j JOIN series s USING (series_uid)"
            " WHERE j.id=?",
            (job_id,),
        )[0]
        return Job(
            r["id"], r["series_uid"], r["study_uid"], r["version"], JobState(r["state"]),
            r["n_instances"], r["attempts"], r["created_at"], r["last_at"], r["kind"],
        )  # fmt: skip

    def next_job(self) -> Job | None:
        """A queued job, marked running (attempts counted): peers take turns — the oldest job of
        the peer whose last job started longest ago — so one peer's flood delays no other."""
        with self._tx() as c:
            r = c.execute(
                "WITH last AS (SELECT s.peer, MAX(j.started_at) AS t FROM jobs j"
                " JOIN series s USING (series_uid) WHERE j.started_at IS NOT NULL GROUP BY s.peer)"
                " SELECT j.id FROM jobs j JOIN series s USING (series_uid)"
                " LEFT JOIN last ON last.peer = s.peer WHERE j.state='queued'"
                " ORDER BY COALESCE(last.t, 0), j.id LIMIT 1"
            ).fetchone()
            if r is None:
                return None
            c.execute(
                "UPDATE jobs SET state='running', attempts=attempts+1, started_at=? WHERE id=?",
                (time.time(), r["id"]),
            )
            c.execute(
                "UPDATE series SET state='processing' WHERE state='queued' AND series_uid="
                "(SELECT series_uid FROM jobs WHERE id=?)",
                (r["id"],),
            )
        return self.job(int(r["id"]))

    def finish_job(
        self,
        job: Job,
        *,
        ok: bool,
        error: str = "",
        result: dict[str, Any] | None = None,
        outbox: list[tuple[str, str, str, str]] = (),  # type: ignore[assignment]
        series_state: str | None = None,
    ) -> None:
        """Record the outcome and, in the same transaction, the deliveries it needs.

        ``outbox`` rows are ``(destination, path, sop_class_uid, sop_instance_uid)``; a job
        rerun after a crash re-inserts the same rows, which the UNIQUE key ignores.
        """
        now = time.time()
        state = "done" if ok else "failed"
        with self._tx() as c:
            c.execute(
                "UPDATE jobs SET state=?, finished_at=?, error=?, result=? WHERE id=?",
                (state, now, error, json.dumps(result or {}, sort_keys=True), job.id),
            )
            c.execute(
                "UPDATE series SET state=?, error=? WHERE series_uid=? AND state='processing'",
                (series_state or state, error, job.series_uid),
            )
            for dest, path, sop_class, sop_uid in outbox:
                c.execute(
                    "INSERT OR IGNORE INTO outbox (job_id, destination, path, sop_class_uid,"
                    " sop_instance_uid, next_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (job.id, dest, path, sop_class, sop_uid, now),
                )

    def recover(self, max_attempts: int = 3) -> dict[str, int]:
        """At start: interrupted jobs run again (or fail after ``max_attempts`` crashes)."""
        with self._tx() as c:
            failed = c.execute(
                "UPDATE jobs SET state='failed', error='crashed too often' "
                "WHERE state='running' AND attempts>=?",
                (max_attempts,),
            ).rowcount
            requeued = c.execute("UPDATE jobs SET state='queued' WHERE state='running'").rowcount
            c.execute(
                "UPDATE series SET state='queued' WHERE state='processing' AND series_uid IN "
                "(SELECT series_uid FROM jobs WHERE state='queued')"
            )
            c.execute("UPDATE series SET state='failed' WHERE state='processing'")
        return {"requeued": requeued, "failed": failed}

    # --- outbox -------------------------------------------------------------------------------

    def due_outbox(self, now: float | None = None, limit: int = 64) -> list[OutboxItem]:
        now = time.time() if now is None else now
        rows = self._query(
            "SELECT * FROM outbox WHERE state='pending' AND next_at<=? ORDER BY id LIMIT ?",
            (now, limit),
        )
        fields = ("id", "job_id", "destination", "path", "sop_class_uid", "sop_instance_uid")
        return [OutboxItem(*(r[f] for f in fields), attempts=r["attempts"]) for r in rows]

    def mark_sent(self, item_id: int) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE outbox SET state='sent', sent_at=?, attempts=attempts+1, error=''"
                " WHERE id=?",
                (time.time(), item_id),
            )

    def mark_retry(self, item_id: int, error: str, next_at: float, give_up: bool) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE outbox SET state=?, attempts=attempts+1, next_at=?, error=? WHERE id=?",
                ("failed" if give_up else "pending", next_at, error[:500], item_id),
            )

    def next_outbox_time(self) -> float | None:
        r = self._query("SELECT MIN(next_at) FROM outbox WHERE state='pending'")
        return None if r[0][0] is None else float(r[0][0])

    # --- retention ----------------------------------------------------------------------------

    def expired_series(self, older_than: float) -> list[tuple[str, str]]:
        """Finished series (UID, study UID) whose last instance is older than ``older_than``."""
        marks = ", ".join("?" * len(FINISHED_STATES))
        rows = self._query(
            f"SELECT series_uid, study_uid FROM series WHERE state IN ({marks}) AND last_at<? AND"
            " (bytes+result_bytes>0 OR state='ignored') AND"
            " NOT EXISTS (SELECT 1 FROM outbox o JOIN jobs j ON o.job_id=j.id"
            " WHERE j.series_uid=series.series_uid AND o.state='pending')",
            (*FINISHED_STATES, older_than),
        )
        return [(r[0], r[1]) for r in rows]

    def purge_series(self, series_uid: str) -> int:
        """Forget a series' instances and results (files already removed); its jobs stay.
        Returns the result bytes that were counted."""
        with self._tx() as c:
            row = c.execute(
                "SELECT result_bytes FROM series WHERE series_uid=?", (series_uid,)
            ).fetchone()
            c.execute("DELETE FROM instances WHERE series_uid=?", (series_uid,))
            c.execute(
                "UPDATE series SET bytes=0, result_bytes=0, n_instances=0, voxels=0,"
                " state='purged' WHERE series_uid=?",
                (series_uid,),
            )
        return int(row[0]) if row is not None else 0

    # --- reading for status -------------------------------------------------------------------

    def rows(self, table: str, limit: int = 50) -> list[dict[str, Any]]:
        order = {"series": "last_at", "jobs": "id", "outbox": "id"}[table]
        rows = self._query(f"SELECT * FROM {table} ORDER BY {order} DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def studies(self, limit: int = 20) -> list[dict[str, Any]]:
        """Series rows of the newest ``limit`` studies, grouped by study (newest first)."""
        rows = self._query(
            "WITH recent AS (SELECT study_uid, MAX(last_at) AS t FROM series GROUP BY study_uid"
            " ORDER BY t DESC LIMIT ?) SELECT s.study_uid, s.series_uid, s.label, s.state,"
            " s.error, s.n_instances FROM series s JOIN recent USING (study_uid)"
            " ORDER BY recent.t DESC, s.study_uid, s.first_at, s.series_uid",
            (limit,),
        )
        return [dict(r) for r in rows]

    def outbox_counts(self) -> dict[tuple[str, str], int]:
        """``(destination, state) → items`` of the outbox (pending, sent, failed)."""
        rows = self._query("SELECT destination, state, COUNT(*) FROM outbox GROUP BY 1, 2")
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def series_in_state(self, state: str) -> list[str]:
        """Series UIDs in ``state``, oldest first."""
        sql = "SELECT series_uid FROM series WHERE state = ? ORDER BY first_at"
        rows = self._query(sql, (state,))
        return [str(r[0]) for r in rows]

    def counts(self, table: str) -> dict[str, int]:
        if table not in ("series", "jobs", "outbox"):
            raise ValueError(table)
        rows = self._query(f"SELECT state, COUNT(*) FROM {table} GROUP BY state")
        return {r[0]: int(r[1]) for r in rows}
