"""The SCP over real sockets: association checks, the issue's bad inputs, and it keeps serving."""

from __future__ import annotations

import pydicom
import pytest
from node_helpers import echo, send_files, send_raw, wait_until, write_series
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ugss.dicom_node import dimse
from ugss.dicom_node.config import Peer

pytestmark = pytest.mark.slow  # each test starts a node and waits out its quiet periods


def _spool_files(node):
    return sorted(p.name for p in (node.config.spool / "series").rglob("*") if p.is_file())


def _partial_files(node):
    return list((node.config.spool / "incoming").iterdir())


def test_echo_and_store(make_node, series34):
    node = make_node()
    port = node.address[1]
    assert echo(port) == 0
    assert send_files(port, series34[:3]) == [0, 0, 0]
    assert len(_spool_files(node)) == 3
    assert node.stats.stored == 3


def test_wrong_called_ae_is_rejected(make_node):
    port = make_node().address[1]
    assert echo(port, called="NOTUGSS") == f"rejected:1:{dimse.DIAG_CALLED_AE_NOT_RECOGNIZED}"
    assert echo(port) == 0


def test_calling_ae_allow_list_with_host(make_node, series34):
    node = make_node(peers=(Peer("ORTHANC", "127.0.0.1"), Peer("ANY", "*")))
    port = node.address[1]
    diag = f"rejected:1:{dimse.DIAG_CALLING_AE_NOT_RECOGNIZED}"
    assert echo(port, calling="STRANGER") == diag
    assert echo(port, calling="ORTHANC", bind="127.0.0.2") == diag  # right AE, wrong host
    assert send_files(port, series34[:1], calling="STRANGER") == [-1]
    assert echo(port, calling="ORTHANC") == 0
    assert echo(port, calling="ANY", bind="127.0.0.3") == 0
    assert node.stats.rejected_associations == 3


def _modified(src, tmp_path, name, **changes):
    ds = pydicom.dcmread(src)
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    if "SOPInstanceUID" in changes:
        ds.file_meta.MediaStorageSOPInstanceUID = changes["SOPInstanceUID"]
    if "SOPClassUID" in changes:
        ds.file_meta.MediaStorageSOPClassUID = changes["SOPClassUID"]
    out = tmp_path / name
    ds.save_as(out, enforce_file_format=False)
    return out


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_bad_instances_get_failure_statuses(make_node, series34, tmp_path):
    node = make_node()
    port = node.address[1]
    src = series34[0]
    bad_uid = _modified(src, tmp_path, "uid.dcm", SeriesInstanceUID="../../x")
    bad_sop = _modified(src, tmp_path, "sop.dcm", SOPInstanceUID="1.2.3.4.0005")  # leading zero
    ds = pydicom.dcmread(src)
    truncated = _modified(
        src, tmp_path, "trunc.dcm", PixelData=ds.PixelData[: len(ds.PixelData) // 2]
    )
    no_geometry = _modified(src, tmp_path, "geo.dcm", ImagePositionPatient=None)
    no_spacing = _modified(src, tmp_path, "spacing.dcm", PixelSpacing=None)

    statuses = send_files(port, [bad_uid, bad_sop, truncated, no_geometry, no_spacing])
    assert statuses == [dimse.DATASET_DOES_NOT_MATCH_SOP_CLASS] * 5
    garbage = b"\x08\x00\x18\x00UI\xff\x7fgarbage" * 50
    ct = "1.2.840.10008.5.1.4.1.1.2"
    assert send_raw(port, ct, generate_uid(), garbage) == dimse.CANNOT_UNDERSTAND
    # a valid header cut off inside an element: also cannot be understood
    raw = series34[0].read_bytes()
    assert send_raw(port, ct, generate_uid(), raw[400:1000]) == dimse.CANNOT_UNDERSTAND
    assert _spool_files(node) == []
    assert _partial_files(node) == []
    assert not (node.config.spool.parent / "x").exists()
    assert node.stats.refused == 7
    assert echo(port) == 0  # still serving
    assert send_files(port, series34[:1]) == [0]


def test_non_ct_and_multiframe_are_acknowledged_and_ignored(make_node, series34, tmp_path):
    node = make_node()
    port = node.address[1]
    mr = _modified(
        series34[1],
        tmp_path,
        "mr.dcm",
        Modality="MR",
        SOPClassUID="1.2.840.10008.5.1.4.1.1.4",
        SOPInstanceUID=generate_uid(),
    )
    scout = _modified(
        series34[2],
        tmp_path,
        "scout.dcm",
        ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
        SOPInstanceUID=generate_uid(),
    )
    enhanced = _modified(
        series34[3],
        tmp_path,
        "enh.dcm",
        SOPClassUID="1.2.840.10008.5.1.4.1.1.2.1",
        NumberOfFrames=1,
        SOPInstanceUID=generate_uid(),
    )
    derived = _modified(
        series34[4],
        tmp_path,
        "derived.dcm",
        ImageType=["DERIVED", "SECONDARY"],
        SOPInstanceUID=generate_uid(),
    )
    sagittal = _modified(
        series34[5],
        tmp_path,
        "sag.dcm",
        ImageOrientationPatient=[0, 1, 0, 0, 0, -1],
        SOPInstanceUID=generate_uid(),
    )
    assert send_files(port, [mr, scout, enhanced, derived, sagittal]) == [0] * 5
    assert node.stats.ignored == 5
    assert _spool_files(node) == []


@pytest.mark.parametrize("kind", ["slice", "pixel"])
def test_mixed_spacing_series_is_rejected_with_a_logged_reason(make_node, tmp_path, caplog, kind):
    node = make_node()
    files = write_series(tmp_path / "a", slices=6, size=64, entropy=f"mix-{kind}")
    ds = pydicom.dcmread(files[3])
    if kind == "slice":  # one interior slice 1.5 mm off: gaps 6.5 and 3.5 mm instead of 5
        pos = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [pos[0], pos[1], pos[2] + 1.5]
        expected = "non-uniform slice spacing"
    else:
        ds.PixelSpacing = [0.5, 0.5]
        expected = "inconsistent PixelSpacing"
    ds.save_as(files[3])
    with caplog.at_level("INFO", logger="ugss.dicom_node"):
        assert send_files(node.address[1], files) == [0] * 6
        # the worker records the failure, then logs it: wait for both
        wait_until(
            lambda: (
                node.db.counts("jobs").get("failed")
                and any("series_rejected" in r.getMessage() for r in caplog.records)
            ),
            timeout=20,
        )
    job = node.db.rows("jobs")[0]
    assert job["state"] == "failed" and expected in job["error"]
    assert node.db.rows("series")[0]["state"] == "failed"
    assert any("series_rejected" in r.getMessage() for r in caplog.records)
    assert echo(node.address[1]) == 0


def test_spool_limit_answers_out_of_resources(make_node, series34):
    node = make_node(spool_limit_mb=1)
    statuses = send_files(node.address[1], series34[:3])  # ~18 KB each: fits
    assert statuses == [0, 0, 0]
    big = node.spool.limit_bytes
    node.spool.limit_bytes = node.spool.used_bytes + 100
    assert send_files(node.address[1], series34[3:4]) == [dimse.OUT_OF_RESOURCES]
    node.spool.limit_bytes = big
    assert _partial_files(node) == []


def test_duplicates_are_counted_once(make_node, series34):
    node = make_node(quiet_period_s=30)
    port = node.address[1]
    assert send_files(port, series34[:4]) == [0] * 4
    assert send_files(port, series34[:4]) == [0] * 4
    assert node.stats.stored == 4 and node.stats.duplicates == 4
    assert node.db.rows("series")[0]["n_instances"] == 4


def test_ae_title_with_transfer_syntax_explicit(make_node, series34):
    node = make_node()
    assert pydicom.dcmread(series34[0]).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert send_files(node.address[1], series34[:2]) == [0, 0]


def test_associations_are_bounded_and_idle_peers_are_dropped(make_node):
    import socket
    import time

    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    node = make_node(max_associations=2, network_timeout_s=2)
    port = node.address[1]
    ae = AE(ae_title="SCU")
    ae.add_requested_context(Verification)
    held = [ae.associate("127.0.0.1", port, ae_title="UGSS") for _ in range(2)]
    assert all(a.is_established for a in held)
    extra = ae.associate("127.0.0.1", port, ae_title="UGSS")
    assert extra.is_rejected  # PS3.8: transient, local limit exceeded
    for a in held:
        a.release()
    assert echo(port) == 0
    # a connection that never sends an A-ASSOCIATE-RQ is closed after the ACSE timeout
    idle = socket.create_connection(("127.0.0.1", port))
    idle.settimeout(10)
    t0 = time.monotonic()
    assert idle.recv(1) == b""
    assert time.monotonic() - t0 < 8
    idle.close()
    assert echo(port) == 0
