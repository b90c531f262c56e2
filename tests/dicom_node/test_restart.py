"""A node killed (SIGKILL) while a job runs loses nothing: the restart redoes the job, once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from node_helpers import echo, free_port, send_files, wait_until
from typer.testing import CliRunner

from ugss.dicom_node.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _job_states(db) -> list[tuple[int, str, int]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT version, state, attempts FROM jobs").fetchall()
    except sqlite3.OperationalError:
        return []


def _start(config, log):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ugss.dicom_node.cli", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc


def test_kill_during_processing_then_restart(tmp_path, model_path, pacs, series34):
    port = free_port()
    config = tmp_path / "node.toml"
    config.write_text(
        f'ae_title = "UGSS"\nport = {port}\nspool = "{tmp_path / "spool"}"\n'
        f'model = "{model_path}"\nquiet_period_s = 0.5\nretry_base_s = 0.2\n'
        f'peers = ["SCU@127.0.0.1"]\ndestinations = ["pacs=PACS@127.0.0.1:{pacs.port}"]\n'
    )
    db = tmp_path / "spool" / "node.sqlite"
    log = open(tmp_path / "node.log", "w")  # noqa: SIM115
    proc = _start(config, log)
    try:
        assert wait_until(lambda: echo(port) == 0 if proc.poll() is None else True, timeout=30)
        assert send_files(port, series34) == [0] * 34
        running = wait_until(lambda: any(s == "running" for _, s, _ in _job_states(db)), 30, 0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert running, (tmp_path / "node.log").read_text()
        assert pacs.received == []

        proc = _start(config, log)
        assert len(pacs.wait_for(2, timeout=60)) == 2
        time.sleep(1.0)  # nothing more arrives: the rerun replaced, it did not duplicate
        assert len(pacs.received) == 2
        assert _job_states(db) == [(1, "done", 2)]
        out = CliRunner().invoke(app, ["status", "--spool", str(tmp_path / "spool")])
        assert out.exit_code == 0, out.output
        assert "jobs: done 1" in out.output and "outbox: sent 2" in out.output
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
    assert proc.returncode in (0, -signal.SIGTERM)
    text = (tmp_path / "node.log").read_text()
    assert "requeued=1" in text and "job_done" in text
    assert "UGSS-TEST" not in text and "Synthetic" not in text  # no patient data in logs
