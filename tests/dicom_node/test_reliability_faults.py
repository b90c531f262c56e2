"""Faults: the node killed with SIGKILL while receiving and while delivering, and a model file
that does not load. What was acknowledged survives, every series is answered exactly once,
nothing half-written remains, and a node that cannot process data never opens its port.

(Killed during inference: ``test_restart.py``; PACS down then back: ``test_pipeline.py``;
spool limit: ``test_scp.py``.)
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest
from node_helpers import echo, free_port, send_files, wait_until
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts, build_context

pytestmark = [pytest.mark.integration]


class _Node:
    """``ugss-node`` as its own process (so it can be killed), on a fixed port and spool."""

    def __init__(self, tmp_path: Path, model: Path, dest_port: int | None = None) -> None:
        self.tmp = tmp_path
        self.model = model
        self.port = free_port()
        self.spool = tmp_path / "spool"
        self.dest_port = dest_port
        self.log = open(tmp_path / "node.log", "a")  # noqa: SIM115
        self.proc: subprocess.Popen | None = None

    def start(self, quiet_s: float) -> _Node:
        cfg = self.tmp / "node.toml"
        text = (
            f'ae_title = "UGSS"\nport = {self.port}\nspool = "{self.spool}"\n'
            f'model = "{self.model}"\nquiet_period_s = {quiet_s}\nretry_base_s = 0.2\n'
        )
        if self.dest_port:
            text += 'peers = ["SCU@127.0.0.1"]\n'
            text += f'destinations = ["pacs=PACS@127.0.0.1:{self.dest_port}"]\n'
        cfg.write_text(text)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ugss.dicom_node.cli", "--config", str(cfg)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        up = wait_until(lambda: self.proc.poll() is not None or echo(self.port) == 0, 60, 0.1)
        assert up and self.proc.poll() is None, self.text()
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def close(self) -> None:
        self.stop()
        self.log.close()

    def text(self) -> str:
        self.log.flush()
        return (self.tmp / "node.log").read_text()

    def rows(self, sql: str) -> list[tuple]:
        db = self.spool / "node.sqlite"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql).fetchall()


def _send_slowly(port: int, paths: list[Path], gap_s: float) -> list[int]:
    """C-STORE one by one on one association; -1 for any instance not acknowledged."""
    ae = AE(ae_title="SCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="UGSS")
    assert assoc.is_established
    out = []
    for p in paths:
        try:
            rsp = assoc.send_c_store(p)
            out.append(int(rsp.Status) if "Status" in rsp else -1)
        except Exception:  # association aborted under it
            out.append(-1)
        time.sleep(gap_s)
    if assoc.is_established:
        assoc.release()
    return out


def _sop(p: Path) -> str:
    return str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)


def test_kill_while_receiving_keeps_every_acknowledged_instance(tmp_path, model_path, series34):
    from node_helpers import CollectingSCP

    pacs = CollectingSCP()
    pacs.port = pacs.start()
    node = _Node(tmp_path, model_path, pacs.port).start(quiet_s=60)
    try:
        series_dir = node.spool / "series"

        def killer() -> None:
            wait_until(lambda: len(list(series_dir.glob("*/*.dcm"))) >= 10, 30, 0.002)
            node.kill()

        k = threading.Thread(target=killer)
        k.start()
        statuses = _send_slowly(node.port, series34, gap_s=0.03)
        k.join(30)
        acked = {_sop(p) for p, s in zip(series34, statuses, strict=True) if s == 0}
        assert 5 <= len(acked) < 34, statuses  # killed mid-series; the sender saw failures
        assert statuses[len(acked) :] == [-1] * (34 - len(acked))  # no silent loss

        node.start(quiet_s=60)  # restart: the partial files of the kill are cleared
        assert list((node.spool / "incoming").iterdir()) == []
        spooled = list(series_dir.glob("*/*.dcm"))
        assert acked <= {p.stem for p in spooled}
        for p in spooled:  # each spooled file is whole
            ds = pydicom.dcmread(p)
            assert len(ds.PixelData) == ds.Rows * ds.Columns * 2
        assert send_files(node.port, series34) == [0] * 34  # the sender retries everything
        node.stop()
        node.start(quiet_s=0.5)  # a short quiet period now: the series completes
        assert len(pacs.wait_for(2, timeout=60)) == 2
        time.sleep(1.0)
        assert len(pacs.received) == 2  # answered exactly once
        assert node.rows("SELECT version, state, n_instances FROM jobs") == [(1, "done", 34)]
        assert node.rows("SELECT COUNT(*) FROM instances") == [(34,)]
        assert len(list(series_dir.glob("*/*.dcm"))) == 34
    finally:
        node.close()
        pacs.stop()


class _SlowPacs:
    """A storage SCP that counts SOP Instance UIDs and holds its first answer for a while."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.sop_uids: list[str] = []
        self.first = threading.Event()
        ae = AE(ae_title="PACS")
        ae.supported_contexts = [
            build_context(cx.abstract_syntax, ExplicitVRLittleEndian)
            for cx in AllStoragePresentationContexts
        ]

        def on_store(event: evt.Event) -> int:
            self.sop_uids.append(str(event.request.AffectedSOPInstanceUID))
            if not self.first.is_set():
                self.first.set()
                time.sleep(self.hold_s)  # the node is killed while it waits for this answer
            return 0

        self.ae = ae
        self.server = ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
        )
        self.port = int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.ae.shutdown()


def test_kill_during_delivery_redelivers_without_duplicates(tmp_path, model_path, series34):
    pacs = _SlowPacs(hold_s=3.0)
    node = _Node(tmp_path, model_path, pacs.port).start(quiet_s=0.5)
    try:
        assert send_files(node.port, series34) == [0] * 34
        assert pacs.first.wait(60), node.text()
        node.kill()  # a result is on the wire, its answer not yet received
        assert node.rows("SELECT state FROM outbox") == [("pending",), ("pending",)]
        node.start(quiet_s=0.5)
        sent = lambda: node.rows("SELECT state FROM outbox") == [("sent",), ("sent",)]  # noqa: E731
        assert wait_until(sent, 60, 0.1), node.rows("SELECT state, error FROM outbox")
        # the job was not redone: same result UIDs, re-sent only where unconfirmed
        assert node.rows("SELECT version, state, attempts FROM jobs") == [(1, "done", 1)]
        assert len(set(pacs.sop_uids)) == 2  # SEG and SR: a PACS keeps one copy of each
        assert len(pacs.sop_uids) <= 3  # only the unconfirmed one went twice
    finally:
        node.close()
        pacs.stop()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unloadable_model_refuses_to_start(tmp_path, model_path, damage):
    model = tmp_path / "model.onnx"
    if damage == "garbage":
        model.write_bytes(os.urandom(512))
    elif damage == "truncated":
        model.write_bytes(model_path.read_bytes()[: model_path.stat().st_size // 2])
    port = free_port()
    out = subprocess.run(
        [sys.executable, "-m", "ugss.dicom_node.cli", "--port", str(port), "--model", str(model),
         "--spool", str(tmp_path / "spool")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "model" in lines[0].lower()
    assert str(model) in lines[0] or model.name in lines[0]
    assert "Traceback" not in out.stderr + out.stdout
    assert echo(port) == "no-association"  # the port never opened
