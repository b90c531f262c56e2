"""Series in, SEG + SR out, against a stand-in PACS: results, versions, retries, restarts."""

from __future__ import annotations

import json
import time

import numpy as np
import pydicom
import pytest
from node_helpers import CollectingSCP, free_port, mask_from_seg, send_files, wait_until

from ugss.dicom_node.seg import ResultIds
from ugss.dicom_node.sr import read_volume_ml
from ugss.runtime.dicom_series import read_dicom_series_with_refs
from ugss.runtime.segment import segment_volume

pytestmark = pytest.mark.slow  # each test starts a node and waits out its quiet periods

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"


def _by_class(datasets):
    out: dict[str, list] = {}
    for ds in datasets:
        out.setdefault(str(ds.SOPClassUID), []).append(ds)
    return out


def test_series_gets_seg_and_sr_matching_the_runtime(make_node, pacs, series34, engine, tmp_path):
    node = make_node(pacs=pacs)
    assert send_files(node.address[1], series34) == [0] * 34
    got = _by_class(pacs.wait_for(2))
    assert set(got) == {SEG_CLASS, SR_CLASS}
    seg_ds, sr_ds = got[SEG_CLASS][0], got[SR_CLASS][0]

    volume, info = read_dicom_series_with_refs(series34[0].parent)
    expected = segment_volume(volume, engine)
    seg_path = tmp_path / "seg.dcm"
    seg_ds.save_as(seg_path, enforce_file_format=True)
    mask = mask_from_seg(seg_path, list(info.sop_instance_uids))
    assert np.array_equal(mask, info.frames(expected.mask))
    assert expected.mask.any()

    value, low, high = read_volume_ml(sr_ds)
    assert value == pytest.approx(expected.volume_ml, abs=1e-3)
    assert (low, high) == pytest.approx(expected.interval_ml, abs=1e-3)
    ref = sr_ds.ContentSequence  # the SR names the SEG it measures
    assert seg_ds.SOPInstanceUID in str(ref)
    assert sr_ds.PatientID == seg_ds.PatientID == "UGSS-TEST"
    assert seg_ds.StudyInstanceUID == info.headers[0].StudyInstanceUID

    seg_item = seg_ds.SegmentSequence[0]
    assert seg_item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert seg_item.SegmentedPropertyTypeCodeSequence[0].CodeValue == "50960005"
    assert seg_item.AnatomicRegionSequence[0].CodeValue == "1101003"
    algo = seg_item.SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "tiny-mc" and algo.AlgorithmVersion == "3"
    assert algo.AlgorithmFamilyCodeSequence[0].CodeValue == "123110"

    # the results folder holds the same objects, and the job summary its timings
    job = node.db.rows("jobs")[0]
    result = json.loads(job["result"])
    assert set(result["timings_s"]) == {"wait", "load", "model", "encode"}
    assert result["seg_sop_uid"] == seg_ds.SOPInstanceUID
    files = sorted(p.name for p in node.config.results_dir.rglob("*.dcm"))
    assert files == ["seg.dcm", "sr.dcm"]
    wait_until(lambda: node.db.counts("outbox") == {"sent": 2})


def test_late_instance_reopens_and_versions(make_node, pacs, series34):
    node = make_node(pacs=pacs)
    port = node.address[1]
    assert send_files(port, series34[:-1]) == [0] * 33
    first = pacs.wait_for(2)
    assert send_files(port, series34[-1:]) == [0]  # late: reopens the series
    both = pacs.wait_for(4)
    assert len(both) == 4
    v1, v2 = both[:2], both[2:]
    assert {d.SOPInstanceUID for d in v1}.isdisjoint({d.SOPInstanceUID for d in v2})
    segs = [d for d in both if d.SOPClassUID == SEG_CLASS]
    assert segs[0].NumberOfFrames <= segs[1].NumberOfFrames
    assert [s.SeriesDescription[-2:] for s in segs] == ["v1", "v2"]
    jobs = sorted(node.db.rows("jobs"), key=lambda j: j["version"])
    assert [(j["version"], j["n_instances"]) for j in jobs] == [(1, 33), (2, 34)]
    # a resend of the same instances does not produce another result
    assert send_files(port, series34[:3]) == [0] * 3
    time.sleep(node.config.quiet_period_s * 3)
    assert len(pacs.received) == 4
    assert first[0].SOPInstanceUID == v1[0].SOPInstanceUID


def test_delivery_retries_until_the_pacs_is_back(make_node, series34):
    port = free_port()
    late = CollectingSCP()
    from ugss.dicom_node.config import Destination

    node = make_node(destinations=(Destination("pacs", "PACS", "127.0.0.1", port),))
    assert send_files(node.address[1], series34) == [0] * 34
    wait_until(lambda: any(r["attempts"] >= 1 for r in node.db.rows("outbox")), timeout=20)
    assert node.db.counts("outbox") == {"pending": 2}
    assert "association" in node.db.rows("outbox")[0]["error"]
    late.start(port)
    try:
        assert len(late.wait_for(2, timeout=30)) == 2
        wait_until(lambda: node.db.counts("outbox") == {"sent": 2})
    finally:
        late.stop()


def test_restart_resumes_a_series_that_was_still_receiving(make_node, pacs, series34, tmp_path):
    spool = tmp_path / "shared-spool"
    node = make_node(pacs=pacs, spool=spool, quiet_period_s=60)
    assert send_files(node.address[1], series34) == [0] * 34
    node.stop()
    assert pacs.received == []
    again = make_node(pacs=pacs, spool=spool, quiet_period_s=0.5)
    assert len(pacs.wait_for(2)) == 2
    assert again.db.rows("series")[0]["n_instances"] == 34


def test_result_uids_depend_only_on_series_and_version():
    a = ResultIds.for_version("1.2.3", 1)
    assert a == ResultIds.for_version("1.2.3", 1)
    assert a.seg_sop_uid != ResultIds.for_version("1.2.3", 2).seg_sop_uid
    assert all(pydicom.uid.UID(u).is_valid for u in (a.seg_sop_uid, a.sr_sop_uid, a.tracking_uid))


def test_spooled_instances_the_database_lost_are_recorded_again(
    make_node, pacs, series34, tmp_path
):
    spool = tmp_path / "spool-resync"
    node = make_node(spool=spool, quiet_period_s=60)
    assert send_files(node.address[1], series34[:5]) == [0] * 5
    node.stop()
    import sqlite3

    with sqlite3.connect(spool / "node.sqlite") as conn:  # as if a power loss ate the rows
        conn.execute("DELETE FROM instances")
        conn.execute("DELETE FROM series")
    again = make_node(pacs=pacs, spool=spool, quiet_period_s=60)
    assert again.db.rows("series")[0]["n_instances"] == 5
