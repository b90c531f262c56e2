"""The node: database, spool, engine, worker, sender and SCP, started and stopped together.

Start order makes a restart safe: the database recovers interrupted jobs and the spool clears
unacknowledged partial files before the port opens; the port closes first on stop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from types import TracebackType

import pydicom

from ugss.dicom_node.config import NodeConfig
from ugss.dicom_node.db import NodeDB
from ugss.dicom_node.log import event as log_event
from ugss.dicom_node.metrics import NodeMetrics
from ugss.dicom_node.scp import (
    ReceiveLimits,
    Receiver,
    ReceiveStats,
    decodable_syntaxes,
    start_scp,
)
from ugss.dicom_node.sender import Sender
from ugss.dicom_node.spool import Spool
from ugss.dicom_node.worker import Worker
from ugss.errors import ConfigError
from ugss.runtime.engines import Engine, open_engine
from ugss.runtime.model_info import KIND_MC


def load_engine(config: NodeConfig) -> Engine:
    """The configured model (or the bundled one), checked against ``mc_samples``."""
    engine = open_engine(
        config.model, provider=config.provider, triton_url=config.triton_url,
        threads=config.threads or None,
    )  # fmt: skip
    info = engine.info
    if config.mc_samples not in (None, 0):
        if info.kind != KIND_MC:
            raise ConfigError(f"mc_samples={config.mc_samples}, but the model is deterministic")
        if config.mc_samples != info.mc_samples:
            raise ConfigError(
                f"mc_samples={config.mc_samples}, but the model draws {info.mc_samples} samples "
                "(fixed when it was exported); use 0 (deterministic) or leave it unset"
            )
    return engine


def resync_spool(db: NodeDB, spool: Spool) -> int:
    """Record spooled instances the database lost (power loss with WAL NORMAL); returns count."""
    known = db.known_paths()
    added = 0
    for path in sorted(spool.series_root.glob("*/*.dcm")):
        if str(path) in known:
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            series_uid, study_uid = str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID)
        except Exception:
            continue
        if path.parent.name != series_uid or path.stem != str(ds.SOPInstanceUID):
            continue
        db.record_instance(
            series_uid=series_uid, study_uid=study_uid, sop_uid=path.stem, path=str(path),
            size=path.stat().st_size, calling_ae="", now=path.stat().st_mtime,
        )  # fmt: skip
        added += 1
    return added


class Node:
    """A running ``ugss-node``; use as a context manager or call ``start``/``stop``."""

    def __init__(self, config: NodeConfig, engine: Engine | None = None) -> None:
        self.config = config
        self._engine = engine
        self.stats = ReceiveStats()
        self.result_event = threading.Event()
        self.db: NodeDB | None = None
        self.spool: Spool | None = None
        self.worker: Worker | None = None
        self.sender: Sender | None = None
        self.metrics: NodeMetrics | None = None
        self.metrics_port: int | None = None  # the bound scrape port, when metrics are on
        self._ae = None
        self._server = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when the config said 0)."""
        if self._server is None:
            raise RuntimeError("node not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> Node:
        """Open everything; on any failure what was started is stopped again."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        cfg = self.config
        engine = self._engine or load_engine(cfg)
        try:
            self.db = NodeDB(cfg.db_path)
            recovered = self.db.recover()
            self.spool = Spool(cfg.spool, cfg.spool_limit_mb * 2**20, self.db.spool_bytes())
            cfg.results_dir.mkdir(parents=True, exist_ok=True)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"spool {cfg.spool}: {exc}") from None
        resynced = resync_spool(self.db, self.spool)
        self.metrics = NodeMetrics(self.stats, lambda: self.db, self.spool)
        if cfg.metrics_port is not None:
            try:
                self.metrics_port = self.metrics.serve(cfg.metrics_bind, cfg.metrics_port)
            except OSError as exc:
                raise ConfigError(
                    f"metrics port {cfg.metrics_bind}:{cfg.metrics_port}: {exc.strerror}"
                ) from None
        self.sender = Sender(cfg, self.db, self.metrics)

        def on_result() -> None:
            assert self.sender is not None
            self.sender.wake.set()
            self.result_event.set()

        self.worker = Worker(cfg, self.db, self.spool, engine, on_result, self.metrics)
        self.worker.start()
        self.sender.start()

        receiver = Receiver(self.spool, self.db, self.stats, ReceiveLimits.from_config(cfg))
        self._ae, self._server = start_scp(cfg, receiver, self.stats)
        host, port = self.address
        log_event(
            "node_started", ae_title=cfg.ae_title, host=host, port=port, tls=cfg.tls,
            peers=",".join(map(str, cfg.peers)) or "any",
            destinations=",".join(d.name for d in cfg.destinations) or "none",
            quiet_period_s=cfg.quiet_period_s, model=f"{engine.info.name}:{engine.info.version}",
            spool=str(cfg.spool), syntaxes=len(decodable_syntaxes()), resynced=resynced,
            metrics=f"{cfg.metrics_bind}:{self.metrics_port}" if self.metrics_port else "off",
            **recovered,
        )  # fmt: skip
        if not cfg.peers and host not in ("127.0.0.1", "::1"):
            log_event("open_to_any_peer", level=logging.WARNING, host=host,
                      hint="set peers to an allow-list")  # fmt: skip

    def stop(self, timeout_s: float = 30.0) -> None:
        """Close the port, then let the worker finish its job and the sender its batch."""
        was_serving = self._server is not None
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._ae is not None:
            self._ae.shutdown()
            self._ae = None
        for thread in (self.worker, self.sender):
            if thread is not None:
                thread.stop()
        for thread in (self.worker, self.sender):
            if thread is not None and thread.is_alive():
                thread.join(timeout_s)
        if self.metrics is not None:
            self.metrics.stop()
        if self.db is not None:
            self.db.close()
            self.db = None
        if was_serving:
            log_event("node_stopped", ae_title=self.config.ae_title)

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def serve_forever(self, stop: threading.Event | None = None) -> None:
        """Block until ``stop`` is set (the CLI sets it on SIGTERM/SIGINT)."""
        stop = stop or threading.Event()
        try:
            while not stop.wait(1.0):
                pass
        finally:
            self.stop()
