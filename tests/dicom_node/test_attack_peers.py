"""Issue 14, peers: provenance, budgets and a fair queue; one peer can neither rewrite another's
study nor starve it. Case list: ``SECURITY.md``.
"""

from __future__ import annotations

import logging
import time

import pydicom
import pytest
from node_helpers import send_files, wait_until, write_series
from pydicom.uid import generate_uid
from test_hostile_inputs import _still_serves

from ugss.dicom_node import dimse

pytestmark = pytest.mark.slow  # each test starts a node and waits out its quiet periods

A700, A900 = dimse.OUT_OF_RESOURCES, dimse.DATASET_DOES_NOT_MATCH_SOP_CLASS


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("peers")
    return write_series(root / "a", slices=3, size=64, entropy="peers-a"), write_series(
        root / "b", slices=2, size=64, entropy="peers-b"
    )


def _tampered(src, out, **changes):
    ds = pydicom.dcmread(src)
    for key, value in changes.items():
        setattr(ds, key, value)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


def test_an_instance_belongs_to_the_peer_that_sent_it_first(make_node, small, tmp_path, caplog):
    """A second peer re-sending a SOP Instance UID with another patient used to replace it."""
    node = make_node(quiet_period_s=30)
    port = node.address[1]
    assert send_files(port, small[0], calling="PACSA") == [0, 0, 0]
    stored = next(p for p in node.spool.series_root.rglob("*.dcm") if p.stem == str(
        pydicom.dcmread(small[0][0]).SOPInstanceUID))  # fmt: skip
    original = stored.read_bytes()
    ds = pydicom.dcmread(small[0][0])
    evil = _tampered(small[0][0], tmp_path / "evil.dcm", PatientID="OTHER",
                     PixelData=bytes(len(ds.PixelData)))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ugss.dicom_node"):
        assert send_files(port, [evil], calling="PACSB") == [A900]
        assert send_files(port, [evil], calling="PACSA") == [A900]  # other content: refused
        assert send_files(port, [small[0][0]], calling="PACSB") == [0]  # identical: duplicate
    assert stored.read_bytes() == original
    assert "instance_conflict" in caplog.text and node.stats.duplicates == 1
    # a new instance into PACSA's series from another host is refused too
    intruder = _tampered(small[0][1], tmp_path / "new.dcm", SOPInstanceUID=generate_uid())
    assert send_files(port, [intruder], calling="PACSA", bind="127.0.0.2") == [A900]
    assert node.db.rows("series")[0]["n_instances"] == 3
    _still_serves(node, small)


def test_two_peers_racing_with_one_instance_store_it_once(make_node, small, tmp_path):
    """Case 49, concurrently: the same SOP Instance UID with two contents from two peers at the
    same moment (10 rounds): one is stored, the other refused or a duplicate, never both."""
    from concurrent.futures import ThreadPoolExecutor

    node = make_node(quiet_period_s=30)
    port = node.address[1]
    for i in range(10):
        src = _tampered(small[0][0], tmp_path / f"a{i}.dcm", SOPInstanceUID=generate_uid())
        other = _tampered(src, tmp_path / f"b{i}.dcm", PatientID="OTHER")
        with ThreadPoolExecutor(2) as pool:
            a = pool.submit(send_files, port, [src], calling="PACSA")
            b = pool.submit(send_files, port, [other], calling="PACSB")
            statuses = [*a.result(), *b.result()]
        assert sorted(statuses) == [0, A900], (i, statuses)  # exactly one stored
        winner = src if statuses[0] == 0 else other
        uid = str(pydicom.dcmread(src).SOPInstanceUID)
        (kept,) = [p for p in node.spool.series_root.rglob("*.dcm") if p.stem == uid]
        assert pydicom.dcmread(kept).PatientID == pydicom.dcmread(winner).PatientID
    _still_serves(node, small)


def test_series_with_two_patients_is_not_processed(make_node, pacs, small, tmp_path):
    node = make_node(pacs=pacs)
    files = write_series(tmp_path / "mix", slices=4, size=64, entropy="peers-mix")
    _tampered(files[2], files[2], PatientID="SOMEONE-ELSE")
    assert send_files(node.address[1], files) == [0] * 4
    assert wait_until(lambda: node.db.counts("jobs").get("failed"), timeout=30)
    job = node.db.rows("jobs")[0]
    assert "disagree on PatientID" in job["error"] and "SOMEONE" not in job["error"]
    time.sleep(0.5)
    assert pacs.received == []  # nothing delivered
    _still_serves(node, small)


def test_results_count_against_the_spool_and_are_purged(make_node, pacs, small):
    """A 65 MB SEG from 11 KB of input used to sit outside the spool limit forever."""
    node = make_node(pacs=pacs, retention_h=0.0002)
    assert send_files(node.address[1], small[0]) == [0, 0, 0]
    assert len(pacs.wait_for(2)) == 2
    row = node.db.rows("series")[0]
    assert row["result_bytes"] > 0
    assert node.spool.used_bytes == row["bytes"] + row["result_bytes"]
    results = node.config.results_dir / row["study_uid"] / row["series_uid"]
    assert results.is_dir()
    time.sleep(1.0)
    node.worker._last_retention = 0.0
    assert wait_until(lambda: node.db.rows("series")[0]["state"] == "purged", timeout=10)
    assert not results.exists() and node.spool.used_bytes == 0
    _still_serves(node, small)


def test_per_peer_series_per_hour_and_slices_per_series(make_node, small, tmp_path):
    node = make_node(quiet_period_s=30, max_series_per_hour=3, max_slices_per_series=3)
    port = node.address[1]
    statuses = []
    for i in range(5):
        files = write_series(tmp_path / f"f{i}", slices=2, size=16, entropy=f"flood-{i}")
        statuses += send_files(port, files[:1], calling="FLOOD")
    assert statuses == [0, 0, 0, A700, A700]
    assert send_files(port, small[0][:1], calling="OTHER") == [0]  # another peer's budget
    long = write_series(tmp_path / "long", slices=5, size=16, entropy="long")
    assert send_files(port, long, calling="OTHER") == [0, 0, 0, A700, A700]
    _still_serves(node, small)


def test_voxels_per_series_bound_a_job_whatever_the_slice_count(make_node, small, tmp_path):
    """Rows x Columns x slices: three 32² slices fit 3072 voxels, a fourth does not."""
    node = make_node(quiet_period_s=30, max_series_voxels=3 * 32 * 32)
    files = write_series(tmp_path / "wide", slices=5, size=32, entropy="voxels")
    assert send_files(node.address[1], files, calling="WIDE") == [0, 0, 0, A700, A700]
    assert node.stats.stored == 3
    _still_serves(node, small)


def test_a_flooding_peer_does_not_delay_another(make_node, pacs, small, tmp_path):
    """200 tiny series used to push a normal series from 3.6 s to 22 s; peers now take turns."""
    node = make_node(pacs=pacs, quiet_period_s=0.5)
    port = node.address[1]
    node.worker.stopping.set()  # hold the worker while the queue fills
    node.worker.join(10)
    for i in range(8):
        files = write_series(tmp_path / f"f{i}", slices=2, size=32, entropy=f"fair-{i}")
        assert send_files(port, files, calling="FLOOD") == [0, 0]
    assert send_files(port, small[1], calling="NORMAL") == [0, 0]
    time.sleep(0.6)
    from ugss.dicom_node.worker import Worker

    worker = Worker(node.config, node.db, node.spool, node.worker.engine)
    node.worker = worker
    worker.start()
    assert wait_until(lambda: node.db.counts("jobs").get("done", 0) == 9, timeout=120)
    jobs = sorted(node.db.rows("jobs", 20), key=lambda j: j["started_at"])
    normal_uid = str(pydicom.dcmread(small[1][0]).SeriesInstanceUID)
    order = [j["series_uid"] for j in jobs]
    assert order.index(normal_uid) <= 1  # served first or second, not ninth
    _still_serves(node, small, resent=True)  # NORMAL sent small[1] above
