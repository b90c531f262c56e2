"""The one worker thread: quiet series become jobs, run one at a time; results go to the outbox.

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
from ugss.dicom_node.jobs import process_series, warm_up
from ugss.dicom_node.log import event as log_event
from ugss.dicom_node.spool import Spool, remove_tree, tree_bytes
from ugss.errors import UGSSError
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
    ) -> None:
        super().__init__(name="ugss-node-worker", daemon=True)
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
        """Queue quiet series, run at most one job; True when a job ran."""
        for job in self.db.queue_quiet_series(self.config.quiet_period_s):
            log_event("series_complete", series=job.series_uid, instances=job.n_instances,
                      version=job.version, job=job.id)  # fmt: skip
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

    def run_job(self, job: Job) -> None:
        started = time.time()
        wait_s = max(0.0, started - job.last_at)
        log_event("job_started", job=job.id, series=job.series_uid, version=job.version,
                  instances=job.n_instances, attempt=job.attempts)  # fmt: skip
        use_mc = self.config.mc_samples != 0
        try:
            output = process_series(
                self.spool.series_dir(job.series_uid),
                study_uid=job.study_uid,
                series_uid=job.series_uid,
                version=job.version,
                engine=self.engine,
                results=self.config.results_dir,
                use_mc=use_mc,
                overlay=self.config.overlay,
                scratch=self.spool.scratch,
                decode_limits=DecodeLimits(
                    self.config.decode_memory_mb, self.config.decode_timeout_s
                ),
            )
        except DecodeFailed as exc:  # the decoder died, not the node: never retried
            self.db.finish_job(job, ok=False, error=str(exc), series_state="quarantined")
            log_event("series_quarantined", level=logging.WARNING, job=job.id,
                      series=job.series_uid, version=job.version, reason=str(exc))  # fmt: skip
            return
        except UGSSError as exc:
            self.db.finish_job(job, ok=False, error=str(exc), result={"wait_s": round(wait_s, 3)})
            log_event("series_rejected", level=logging.WARNING, job=job.id,
                      series=job.series_uid, version=job.version, reason=str(exc))  # fmt: skip
            return
        except Exception as exc:
            logging.getLogger(__name__).exception("job %d failed", job.id)
            error = f"{type(exc).__name__}: {exc}"
            self.db.finish_job(job, ok=False, error=error)
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
        log_event(
            "job_done", job=job.id, series=job.series_uid, version=job.version,
            volume_ml=summary["volume_ml"], seg=summary["seg_sop_uid"], sr=summary["sr_sop_uid"],
            files=len(output.files), deliveries=len(outbox), wait_s=t["wait"], load_s=t["load"],
            model_s=t["model"], encode_s=t["encode"],
        )  # fmt: skip
        if self.on_result is not None:
            self.on_result()

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

    def _count_results(self, job: Job) -> None:
        """Results count against the spool limit (all versions of the series, as on disk)."""
        total = tree_bytes(self.config.results_dir / job.study_uid / job.series_uid)
        previous = self.db.set_result_bytes(job.series_uid, total)
        self.spool.account(total - previous)
