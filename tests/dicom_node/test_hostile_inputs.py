"""Hostile and broken input not covered in ``test_scp.py``: each case gets the right status or
a clean refusal, and the node then still serves a normal sender (C-ECHO and a small store).

Case list and where each is tested: ``SECURITY.md``.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time

import pydicom
import pytest
from node_helpers import echo, send_files, send_raw, wait_until, write_series
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from ugss.dicom_node import dimse
from ugss.dicom_node.scp import MAX_PDU_READ

pytestmark = pytest.mark.slow  # each test starts a node and waits out its quiet periods

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
LONG_UID = "1.2." + "1234567890" * 7  # 74 characters, digits only: valid but for its length
A900 = dimse.DATASET_DOES_NOT_MATCH_SOP_CLASS


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 6-slice 64² series for the cases, and one more for the normal sender afterwards."""
    root = tmp_path_factory.mktemp("hostile")
    return write_series(root / "a", slices=6, size=64, entropy="hostile-a"), write_series(
        root / "b", slices=2, size=64, entropy="hostile-b"
    )


def _still_serves(node, normal, port=None, *, resent: bool = False) -> None:
    """C-ECHO, then the normal series' first instance: stored, or with ``resent`` (the test
    sent it before) counted as a duplicate."""
    port = port or node.address[1]
    stored, duplicates = node.stats.stored, node.stats.duplicates
    assert echo(port) == 0
    assert send_files(port, normal[1][:1]) == [0]
    expected = (stored, duplicates + 1) if resent else (stored + 1, duplicates)
    assert (node.stats.stored, node.stats.duplicates) == expected


def _encoded(ds: pydicom.Dataset) -> bytes:
    """The data set alone, explicit VR little endian (as a C-STORE carries it)."""
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)
    return buf.getvalue()


def _changed(src, tmp_path, **changes):
    ds = pydicom.dcmread(src)
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = tmp_path / f"{generate_uid()}.dcm"
    ds.save_as(out, enforce_file_format=False)
    return out


def _nothing_spooled(node) -> bool:
    spool = node.config.spool
    return not list((spool / "series").rglob("*.dcm")) and not list((spool / "incoming").iterdir())


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")
def test_overlong_sop_instance_uid_is_refused(make_node, small):
    node = make_node()
    ds = pydicom.dcmread(small[0][0])
    command_uid = str(ds.SOPInstanceUID)  # pynetdicom will not put a 74-character UID there
    ds.SOPInstanceUID = LONG_UID
    assert send_raw(node.address[1], CT, command_uid, _encoded(ds)) == A900
    assert _nothing_spooled(node)
    _still_serves(node, small)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")
def test_overlong_series_uid_is_refused(make_node, small, tmp_path):
    node = make_node()
    bad = _changed(small[0][0], tmp_path, SeriesInstanceUID=LONG_UID)
    assert send_files(node.address[1], [bad]) == [A900]
    assert _nothing_spooled(node)
    _still_serves(node, small)


def test_command_and_dataset_sop_instance_uid_differ(make_node, small):
    node = make_node()
    ds = pydicom.dcmread(small[0][0])
    assert send_raw(node.address[1], CT, generate_uid(), _encoded(ds)) == A900
    assert _nothing_spooled(node) and node.stats.refused == 1
    _still_serves(node, small)


def test_command_and_dataset_sop_class_differ(make_node, small):
    node = make_node()
    ds = pydicom.dcmread(small[0][0])  # a CT data set sent as an MR image
    assert send_raw(node.address[1], MR, str(ds.SOPInstanceUID), _encoded(ds)) == A900
    assert _nothing_spooled(node)
    _still_serves(node, small)


def test_oversized_pixel_data_is_refused(make_node, small, tmp_path):
    node = make_node()
    ds = pydicom.dcmread(small[0][0])
    bad = _changed(small[0][0], tmp_path, PixelData=ds.PixelData * 4)
    odd_pad = _changed(small[0][1], tmp_path, PixelData=ds.PixelData + b"\0\0")
    assert send_files(node.address[1], [bad, odd_pad]) == [A900, A900]
    assert _nothing_spooled(node)
    _still_serves(node, small)


def test_huge_rows_and_columns_claim_is_refused(make_node, small, tmp_path):
    node = make_node()
    bad = _changed(small[0][0], tmp_path, Rows=65535, Columns=65535)  # 8 GiB claimed, 8 KiB sent
    assert send_files(node.address[1], [bad]) == [A900]
    assert _nothing_spooled(node)
    _still_serves(node, small)


def test_duplicate_within_one_association_is_stored_once(make_node, small):
    node = make_node(quiet_period_s=30)
    first = small[0][0]
    assert send_files(node.address[1], [first, first, first]) == [0, 0, 0]
    assert node.stats.stored == 1 and node.stats.duplicates == 2
    assert len(list((node.config.spool / "series").rglob("*.dcm"))) == 1
    _still_serves(node, small)


def test_mixed_orientation_series_is_rejected_once(make_node, small, tmp_path):
    node = make_node()
    files = write_series(tmp_path / "o", slices=6, size=64, entropy="hostile-orient")
    ds = pydicom.dcmread(files[2])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.996195, -0.087156]  # tilted 5°: still axial
    ds.save_as(files[2])
    assert send_files(node.address[1], files) == [0] * 6
    assert wait_until(lambda: node.db.counts("jobs").get("failed"), timeout=20)
    job = node.db.rows("jobs")[0]
    assert "ImageOrientationPatient" in job["error"] and len(node.db.rows("jobs")) == 1
    _still_serves(node, small)


def test_abandoned_partial_series_is_processed_once_after_the_quiet_period(make_node, pacs, small):
    """A sender that aborts half-way: the acknowledged part is a series like any other."""
    node = make_node(pacs=pacs, quiet_period_s=0.8)
    ae = AE(ae_title="SCU")
    ae.add_requested_context(CT, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.address[1], ae_title="UGSS")
    assert [int(assoc.send_c_store(p).Status) for p in small[0][:3]] == [0, 0, 0]
    assoc.abort()
    assert wait_until(lambda: sum(node.db.counts("jobs").values()) >= 1, timeout=20)
    assert wait_until(lambda: node.db.counts("jobs").get("running") is None, timeout=20)
    assert len(pacs.wait_for(2, timeout=30)) == 2
    time.sleep(1.2)  # longer than the quiet period: nothing is queued or sent again
    jobs = node.db.rows("jobs")
    assert [(j["version"], j["n_instances"], j["state"]) for j in jobs] == [(1, 3, "done")]
    assert sorted(d.Modality for d in pacs.received) == ["SEG", "SR"]  # answered once
    _still_serves(node, small)


def test_series_that_keeps_arriving_waits_then_is_processed_once(make_node, pacs, small, tmp_path):
    """Instances closer together than the quiet period hold the series open; it runs once."""
    node = make_node(pacs=pacs, quiet_period_s=0.8)
    files = write_series(tmp_path / "t", slices=8, size=64, entropy="hostile-trickle")
    for f in files:
        assert send_files(node.address[1], [f]) == [0]
        time.sleep(0.2)
        assert node.db.rows("jobs") == []  # still receiving
    assert len(pacs.wait_for(2, timeout=30)) == 2
    time.sleep(1.0)
    assert len(pacs.received) == 2
    jobs = node.db.rows("jobs")
    assert [(j["version"], j["n_instances"], j["state"]) for j in jobs] == [(1, 8, "done")]
    _still_serves(node, small)


def _raw_connection(port: int, data: bytes, wait_s: float = 3) -> bytes:
    """Send ``data`` on a bare TCP connection; what comes back before the node closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        s.sendall(data)
        got = b""
        try:
            while chunk := s.recv(4096):
                got += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return got


def _a_aborts(data: bytes) -> list[tuple[int, int]]:
    """``(source, reason)`` of each A-ABORT PDU in ``data``; fails on anything else."""
    assert data and len(data) % 10 == 0, data
    pdus = [data[i : i + 10] for i in range(0, len(data), 10)]
    assert all(p[:6] == b"\x07\x00\x00\x00\x00\x04" for p in pdus), data
    return [(p[8], p[9]) for p in pdus]


def test_random_bytes_instead_of_an_association_request(make_node, small):
    """PS3.8 9.2: an unrecognised PDU while awaiting an A-ASSOCIATE-RQ is answered by an
    A-ABORT (AA-1), each further one by an A-ABORT from the provider, reason "unrecognised
    PDU" (AA-7); pynetdicom reads 6-byte headers, so 540 bytes are 90 of them."""
    node = make_node()
    back = _raw_connection(node.address[1], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
    aborts = _a_aborts(back)
    assert aborts[0] == (0, 0) and set(aborts[1:]) == {(2, 2)}
    assert node.stats.stored == 0
    _still_serves(node, small)


def test_unknown_pdu_type_is_dropped(make_node, small):
    """pynetdicom skips no body of an unknown PDU: its 4 bytes start the next header, whose read
    waits (up to ``network_timeout_s``, 60 s) before the A-ABORT is sent, so within the 3 s
    this peer waits nothing comes back; it gets no association and the node serves on."""
    node = make_node()
    back = _raw_connection(node.address[1], struct.pack(">BBL", 0x09, 0, 4) + b"\0" * 4)
    assert back == b""
    assert node.stats.stored == 0
    _still_serves(node, small)


def test_oversized_association_request_is_refused_unread(make_node, small):
    """A PDU announcing 1 GiB is refused after its 6-byte header: the node never buffers it."""
    node = make_node()
    t0 = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", node.address[1]), timeout=10) as s:
        s.sendall(struct.pack(">BBL", 0x01, 0, 2**30))
        chunk = b"\0" * 65536
        try:
            while sent < 64 * 2**20 and time.monotonic() - t0 < 20:
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
    # the node closed the connection long before 64 MiB (socket buffers hold a few MiB)
    assert sent < 16 * 2**20 and time.monotonic() - t0 < 15
    assert MAX_PDU_READ <= 4 * 2**20
    _still_serves(node, small)


@pytest.mark.integration
def test_plaintext_to_a_tls_port_is_refused(make_node, small, tmp_path):
    from test_dcmtk import _certificates

    certs = _certificates(tmp_path)
    node = make_node(tls_cert=certs["srv.pem"], tls_key=certs["srv.key"])
    port = node.address[1]
    assert echo(port) == "no-association"  # plain DICOM to the TLS port
    assert node.stats.stored == 0
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs["ca.pem"]))
    ae = AE(ae_title="SCU")
    ae.acse_timeout = ae.network_timeout = 10
    ae.add_requested_context(Verification)
    ae.add_requested_context(CT, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="UGSS", tls_args=(ctx, "127.0.0.1"))
    assert assoc.is_established  # TLS still served afterwards
    assert int(assoc.send_c_echo().Status) == 0
    assert int(assoc.send_c_store(small[1][0]).Status) == 0
    assoc.release()


def test_tls_to_a_plain_port_is_refused(make_node, small, tmp_path):
    node = make_node()
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ae = AE(ae_title="SCU")
    ae.acse_timeout = ae.network_timeout = 5
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.address[1], ae_title="UGSS", tls_args=(ctx, None))
    assert not assoc.is_established
    _still_serves(node, small)
