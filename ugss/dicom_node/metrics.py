"""Prometheus metrics (``prometheus-client``): an optional scrape endpoint, off by default.

``metrics_port`` turns it on, bound to ``metrics_bind`` (loopback unless set). Every node owns
its registry (no process-global state), so two nodes in one process never mix their numbers.
Counters count since the process started (Prometheus handles the reset at a restart); the
gauges (outbox, spool, jobs) are read from the database and the spool at each scrape, so
they also hold what an earlier process left. The names, labels and example alert rules are in
``docs/operations.md`` ("Metrics").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ugss import __version__

if TYPE_CHECKING:  # the node's parts, imported for the types only
    from ugss.dicom_node.db import NodeDB
    from ugss.dicom_node.scp import ReceiveStats
    from ugss.dicom_node.spool import Spool

PREFIX = "ugss_node"
JOB_OUTCOMES = ("segmented", "not_assessed", "rejected", "quarantined", "failed")
DELIVERY_OUTCOMES = ("delivered", "retrying", "failed")
TURNAROUND_BUCKETS = (5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600, 1800, 3600)
MODEL_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 10, 20, 40, 80, 160)
RECEIVE_OUTCOMES = {"stored": "stored", "duplicate": "duplicates", "ignored": "ignored"}


class _StateCollector(Collector):
    """Read at scrape time: receive counters, outbox items, jobs and spool bytes."""

    def __init__(self, stats: ReceiveStats, db: Callable[[], NodeDB | None], spool: Spool):
        self.stats, self.db, self.spool = stats, db, spool

    def collect(self) -> Iterator:
        s = self.stats
        inst = CounterMetricFamily(
            f"{PREFIX}_instances", "C-STORE requests answered, by outcome", labels=["outcome"]
        )
        for outcome, attr in RECEIVE_OUTCOMES.items():
            inst.add_metric([outcome], getattr(s, attr))
        inst.add_metric(["refused"], s.refused)
        yield inst
        yield CounterMetricFamily(
            f"{PREFIX}_associations_rejected", "A-ASSOCIATE-RJ sent", value=s.rejected_associations
        )
        yield CounterMetricFamily(
            f"{PREFIX}_connections_stalled", "connections dropped by the network timeout",
            value=s.stalled,
        )  # fmt: skip
        spool = GaugeMetricFamily(
            f"{PREFIX}_spool_bytes", "spool bytes counted against spool_limit_mb", labels=["kind"]
        )
        spool.add_metric(["used"], self.spool.used_bytes)
        spool.add_metric(["limit"], self.spool.limit_bytes)
        yield spool
        db = self.db()
        if db is None:
            return
        try:
            yield from _db_gauges(db)
        except Exception as exc:  # a scrape never breaks the node; the gauges are left out
            logging.getLogger(__name__).warning("metrics: database not read (%s)", exc)


def _db_gauges(db: NodeDB) -> Iterator:
    outbox = GaugeMetricFamily(
        f"{PREFIX}_outbox_items", "result deliveries by destination and state",
        labels=["destination", "state"],
    )  # fmt: skip
    for (destination, state), n in sorted(db.outbox_counts().items()):
        outbox.add_metric([destination, state], n)
    yield outbox
    jobs = GaugeMetricFamily(f"{PREFIX}_jobs", "jobs by state", labels=["state"])
    for state, n in sorted(db.counts("jobs").items()):
        jobs.add_metric([state], n)
    yield jobs


class NodeMetrics:
    """The node's counters and histograms, its registry and (when on) its HTTP endpoint."""

    def __init__(self, stats: ReceiveStats, db: Callable[[], NodeDB | None], spool: Spool):
        self.registry = CollectorRegistry()
        reg = self.registry
        self.studies = Counter(
            f"{PREFIX}_studies_completed", "studies judged after their quiet period", registry=reg
        )
        self.jobs = Counter(
            f"{PREFIX}_jobs_finished", "jobs finished, by outcome", ["outcome"], registry=reg
        )
        self.deliveries = Counter(
            f"{PREFIX}_deliveries", "delivery attempts, by destination and outcome",
            ["destination", "outcome"], registry=reg,
        )  # fmt: skip
        self.turnaround = Histogram(
            f"{PREFIX}_turnaround_seconds", "last instance of the series -> result delivered",
            ["destination"], buckets=TURNAROUND_BUCKETS, registry=reg,
        )  # fmt: skip
        self.model_time = Histogram(
            f"{PREFIX}_model_seconds", "model time per segmented series",
            buckets=MODEL_BUCKETS, registry=reg,
        )  # fmt: skip
        info = Gauge(f"{PREFIX}_info", "the running node", ["version"], registry=reg)
        info.labels(version=__version__).set(1)
        for outcome in JOB_OUTCOMES:
            self.jobs.labels(outcome=outcome)  # present at 0 from the start
        reg.register(_StateCollector(stats, db, spool))
        self._server = None

    def job_finished(self, outcome: str, model_s: float | None = None) -> None:
        self.jobs.labels(outcome=outcome).inc()
        if model_s is not None:
            self.model_time.observe(model_s)

    def delivery(self, destination: str, outcome: str, turnaround_s: float | None = None):
        self.deliveries.labels(destination=destination, outcome=outcome).inc()
        if turnaround_s is not None:
            self.turnaround.labels(destination=destination).observe(max(0.0, turnaround_s))

    def serve(self, host: str, port: int) -> int:
        """Start the scrape endpoint (``/metrics``); returns the bound port."""
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
