"""The one worker thread: complete studies are judged (``study.py``), their jobs run one at a
time; results go to the outbox.

The SCP threads only write files and rows; inference happens here, so a C-STORE is never held
by a model. A ``DicomSeriesError`` (mixed spacing, missing slices, …) fails the series with a
logged reason; any other exception fails the job the same way and the node keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ugss.dicom_node.config import NodeConfig
from ugss.dicom_node.db import Job, NodeDB
from ugss.dicom_node.decode import DecodeFailed, DecodeLimits
from ugss.dicom_node.jobs import JobOutput, process_series, process_study, warm_up
from ugss.dicom_node.log import event as log_event
from ugss.dicom_node.metrics import NodeMetrics
from ugss.dicom_node.spool import Spool, remove_tree, tree_bytes
from ugss.dicom_node.sr import SeriesNote
from ugss.dicom_node.states import NOT_ASSESSED_STATES, SeriesState
from ugss.dicom_node.study import StudyDecision, anchor_header, decide, read_facts
from ugss.errors import DicomSeriesError, UGSSError
from ugss.runtime.engines import Engine

RETENTION_CHECK_S = 60.0


class Worker(threading.Thread):
    """Promotes quiet series to jobs and runs them (PS3.4 has no end-of-series: a quiet period)."""

    def __init__(
        self,
        config: NodeConfig,
        db: NodeDB,
        spool: Spool,
        engine: Engine,
        on_result: Callable[[], None] | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        super().__init__(name="ugss-node-worker", daemon=True)
        self.metrics = metrics
        self.config = config
        self.db = db
        self.spool = spool
        self.engine = engine
        self.on_result = on_result
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.busy = threading.Event()
        self._last_retention = 0.0

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        try:
            log_event("warm_up", seconds=round(warm_up(self.engine), 3))
        except Exception:  # never fatal: the first job just pays the costs itself
            logging.getLogger(__name__).exception("warm-up failed")
        while not self.stopping.is_set():
            try:
                ran = self.step()
            except Exception:
                logging.getLogger(__name__).exception("worker loop failed")
                ran = False
            if not ran:
                self.wake.wait(self.config.poll_s)
                self.wake.clear()

    def step(self) -> bool:
        """Judge complete studies, run at most one job; True when a job ran."""
        for study_uid in self.db.quiet_studies(self.config.quiet_period_s):
            self.judge_study(study_uid)
        job = self.db.next_job()
        if job is None:
            self._retention()
            return False
        self.busy.set()
        try:
            self.run_job(job)
        finally:
            self.busy.clear()
        return True

    def judge_study(self, study_uid: str) -> None:
        """Selection for one complete study (``study.py``); never raises: a study that cannot
        be judged has its series passed over with the reason, so it cannot block the others."""
        series = self.db.study_series(study_uid)
        rules = self.config.selection_rules
        receiving = [s.series_uid for s in series if s.state == SeriesState.RECEIVING]
        try:
            facts = {uid: read_facts(self.spool, uid, rules) for uid in receiving}
            earlier = self.db.study_answers(study_uid)
            decision = decide(study_uid, series, facts, rules, earlier_reports=earlier)
        except Exception as exc:
            logging.getLogger(__name__).exception("selection of study %s failed", study_uid)
            reason = f"selection failed: {type(exc).__name__}"
            decision = StudyDecision(study_uid, passed=dict.fromkeys(receiving, reason))
        jobs = self.db.queue_study(
            study_uid, chosen=list(decision.chosen), passed=decision.passed,
            not_assessed_on=decision.not_assessed_on,
        )  # fmt: skip
        if self.metrics is not None:
            self.metrics.studies.inc()
        log_event("study_complete", study=study_uid, series=len(series),
                  chosen=",".join(decision.chosen) or "none", jobs=len(jobs))  # fmt: skip
        for uid, reason in decision.passed.items():
            log_event("series_passed", study=study_uid, series=uid, reason=reason)
        for job in jobs:
            if job.kind == "series":
                log_event("series_complete", series=job.series_uid, instances=job.n_instances,
                          version=job.version, job=job.id)  # fmt: skip
            else:
                log_event("study_not_assessed", study=study_uid, series=job.series_uid,
                          version=job.version, job=job.id)  # fmt: skip

    def _notes(self, job: Job) -> tuple[str, tuple[SeriesNote, ...]]:
        """The job's series label, and the study's other series that were not assessed."""
        series = self.db.study_series(job.study_uid)
        label = next((s.label for s in series if s.series_uid == job.series_uid), "")
        notes = tuple(
            SeriesNote(s.series_uid, s.label, s.reason)
            for s in series
            if s.state in NOT_ASSESSED_STATES
            and (job.kind == "study" or s.series_uid != job.series_uid)
        )
        return label, notes

    def run_job(self, job: Job) -> None:
        started = time.time()
        wait_s = max(0.0, started - job.last_at)
        log_event("job_started", job=job.id, series=job.series_uid, version=job.version,
                  instances=job.n_instances, attempt=job.attempts)  # fmt: skip
        try:
            output = self._execute(job)
        except DecodeFailed as exc:  # the decoder died, not the node: never retried
            self.db.finish_job(job, ok=False, error=str(exc), series_state=SeriesState.QUARANTINED)
            self._finished("quarantined")
            log_event("series_quarantined", level=logging.WARNING, job=job.id,
                      series=job.series_uid, version=job.version, reason=str(exc))  # fmt: skip
            return
        except UGSSError as exc:
            self.db.finish_job(job, ok=False, error=str(exc), result={"wait_s": round(wait_s, 3)})
            self._finished("rejected")
            log_event("series_rejected", level=logging.WARNING, job=job.id,
                      series=job.series_uid, version=job.version, reason=str(exc))  # fmt: skip
            return
        except Exception as exc:
            logging.getLogger(__name__).exception("job %d failed", job.id)
            error = f"{type(exc).__name__}: {exc}"
            self.db.finish_job(job, ok=False, error=error)
            self._finished("failed")
            log_event("job_failed", level=logging.ERROR, job=job.id, series=job.series_uid,
                      version=job.version, error=error)  # fmt: skip
            return
        summary = dict(output.summary)
        summary["timings_s"] = {"wait": round(wait_s, 3), **summary.get("timings_s", {})}
        outbox = [
            (dest.name, str(f.path), f.sop_class_uid, f.sop_instance_uid)
            for dest in self.config.destinations
            for f in output.files
        ]
        self.db.finish_job(job, ok=True, result=summary, outbox=outbox)
        self._count_results(job)
        t = summary["timings_s"]
        self._finished("segmented" if job.kind == "series" else "not_assessed", t.get("model"))
        log_event(
            "job_done", job=job.id, kind=job.kind, series=job.series_uid, version=job.version,
            volume_ml=summary.get("volume_ml"), seg=summary.get("seg_sop_uid"),
            sr=summary["sr_sop_uid"], files=len(output.files), deliveries=len(outbox),
            wait_s=t["wait"], load_s=t.get("load"), model_s=t.get("model"),
            encode_s=t.get("encode"),
        )  # fmt: skip
        if self.on_result is not None:
            self.on_result()

    def _execute(self, job: Job) -> JobOutput:
        """Run the job's pipeline (a series' SEG + SR, or a study's report)."""
        label, notes = self._notes(job)
        if job.kind == "study":
            return self._study_report(job, notes)
        return process_series(
            self.spool.series_dir(job.series_uid),
            study_uid=job.study_uid,
            series_uid=job.series_uid,
            version=job.version,
            engine=self.engine,
            results=self.config.results_dir,
            use_mc=self.config.mc_samples != 0,
            overlay=self.config.overlay,
            scratch=self.spool.scratch,
            decode_limits=DecodeLimits(self.config.decode_memory_mb, self.config.decode_timeout_s),
            source_label=label,
            not_assessed=notes,
        )

    def _study_report(self, job: Job, notes: tuple[SeriesNote, ...]) -> JobOutput:
        evidence = anchor_header(self.spool, job.series_uid)
        if evidence is None:
            raise DicomSeriesError("no header of the study kept: the report cannot be written")
        n = len(notes)
        reason = f"not assessed: no suitable series ({n} series, none meets the selection rules)"
        return process_study(
            evidence, study_uid=job.study_uid, version=job.version, reason=reason,
            not_assessed=notes, engine=self.engine, results=self.config.results_dir,
        )  # fmt: skip

    def _retention(self) -> None:
        now = time.time()
        if now - self._last_retention < RETENTION_CHECK_S:
            return
        self._last_retention = now
        for series_uid, study_uid in self.db.expired_series(now - self.config.retention_h * 3600.0):
            freed = self.spool.remove_series(series_uid)
            remove_tree(self.config.results_dir / study_uid / series_uid)
            counted = self.db.purge_series(series_uid)
            self.spool.account(-counted)
            log_event("series_purged", series=series_uid, bytes=freed + counted)

    def _finished(self, outcome: str, model_s: float | None = None) -> None:
        if self.metrics is not None:
            self.metrics.job_finished(outcome, model_s)

    def _count_results(self, job: Job) -> None:
        """Results count against the spool limit (all versions of the series, as on disk)."""
        total = tree_bytes(self.config.results_dir / job.study_uid / job.series_uid)
        previous = self.db.set_result_bytes(job.series_uid, total)
        self.spool.account(total - previous)
