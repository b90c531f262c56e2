"""Issue 14, sockets: no connection can hold the node, plain or TLS.

Attackers use other loopback addresses (127.0.0.2 …) so that the per-peer limit and the global
one can be told apart; the normal peer is 127.0.0.1. Case list: ``SECURITY.md``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import time

import pytest
from node_helpers import echo, send_files, wait_until, write_series
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from test_hostile_inputs import _still_serves

pytestmark = pytest.mark.slow  # each test starts a node and waits out its quiet periods

TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("sockets")
    return write_series(root / "a", slices=2, size=64, entropy="sock-a"), write_series(
        root / "b", slices=2, size=64, entropy="sock-b"
    )


def _connect(port: int, source: str, first: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    if first:
        s.sendall(first)
    return s


def _closed_within(sockets: list[socket.socket], limit_s: float) -> float:
    """Seconds until the node closed every socket (each recv returns b"" or resets)."""
    t0 = time.monotonic()
    for s in sockets:
        s.settimeout(max(0.1, limit_s - (time.monotonic() - t0)))
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, TimeoutError, ssl.SSLError):
            pass
        s.close()
    return time.monotonic() - t0


def _serve_time(port: int, tls=None, limit_s: float = 30.0) -> float:
    """Seconds until a normal peer's C-ECHO succeeds (retrying refused associations)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        ae = AE(ae_title="SCU")
        ae.acse_timeout = ae.network_timeout = 10
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="UGSS", tls_args=tls)
        if assoc.is_established:
            ok = int(assoc.send_c_echo().Status) == 0
            assoc.release()
            if ok:
                return time.monotonic() - t0
        time.sleep(0.2)
    return float("inf")


def _stallers(port: int, first: bytes, n: int = 10) -> list[socket.socket]:
    """``n`` connections, five per address (the default per-peer limit)."""
    return [_connect(port, f"127.0.0.{2 + i // 5}", first) for i in range(n)]


PARTIAL_RQ = struct.pack(">BBL", 0x01, 0, 1000)  # A-ASSOCIATE-RQ claiming 1000 bytes, none sent


def test_partial_pdus_are_dropped_after_the_network_timeout(make_node, small, caplog):
    """Ten 6-byte connections used to hold every slot for as long as the attacker liked."""
    node = make_node(network_timeout_s=TIMEOUT_S)
    port = node.address[1]
    with caplog.at_level(logging.WARNING, logger="ugss.dicom_node"):
        held = _stallers(port, PARTIAL_RQ)
        waited = _serve_time(port)
        assert waited < TIMEOUT_S + 5
        assert _closed_within(held, TIMEOUT_S + 5) < TIMEOUT_S + 5
    assert wait_until(lambda: node.stats.stalled >= 10, timeout=5)
    assert "connection_stalled" in caplog.text and "Traceback" not in caplog.text
    _still_serves(node, small)


def test_a_dripping_pdu_is_dropped_at_its_deadline(make_node, small):
    """One byte per half second keeps a per-read timeout happy; the PDU deadline is not."""
    node = make_node(network_timeout_s=TIMEOUT_S)
    s = _connect(node.address[1], "127.0.0.2", PARTIAL_RQ)
    t0 = time.monotonic()
    try:
        for _ in range(40):
            s.sendall(b"\0")
            time.sleep(0.5)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert time.monotonic() - t0 < TIMEOUT_S + 3
    s.close()
    _still_serves(node, small)


def test_one_address_holds_at_most_its_share(make_node, small):
    node = make_node(network_timeout_s=30)
    port = node.address[1]
    held = [_connect(port, "127.0.0.2", PARTIAL_RQ) for _ in range(5)]
    time.sleep(0.3)
    extra = [_connect(port, "127.0.0.2", PARTIAL_RQ) for _ in range(3)]
    assert _closed_within(extra, 3) < 3  # refused at accept: over the per-peer limit
    assert _serve_time(port) < 2  # another address is served at once
    assert node.stats.rejected_associations >= 3
    for s in held:
        s.close()
    _still_serves(node, small)


def test_idle_association_is_released_after_the_network_timeout(make_node, small):
    node = make_node(network_timeout_s=TIMEOUT_S)
    ae = AE(ae_title="SCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.address[1], ae_title="UGSS")
    assert assoc.is_established
    assert wait_until(lambda: not assoc.is_established, timeout=TIMEOUT_S + 5)
    _still_serves(node, small)


@pytest.fixture
def certs(tmp_path):
    from test_dcmtk import _certificates

    return _certificates(tmp_path)


@pytest.mark.integration
def test_silent_connections_to_the_tls_port_block_no_one(make_node, small, certs):
    """A silent TCP connection to the TLS port used to block every TLS client (and shutdown)."""
    node = make_node(tls_cert=certs["srv.pem"], tls_key=certs["srv.key"],
                     network_timeout_s=TIMEOUT_S)  # fmt: skip
    port = node.address[1]
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs["ca.pem"]))
    silent = _stallers(port, b"")
    assert _serve_time(port, tls=(ctx, "127.0.0.1")) < 3  # no waiting for the silent ones
    assert _closed_within(silent, TIMEOUT_S + 5) < TIMEOUT_S + 5
    assert wait_until(lambda: node.stats.stalled >= 10, timeout=5)
    more = _stallers(port, b"\x16\x03\x01")  # a TLS record header, then nothing
    t0 = time.monotonic()
    node.stop()  # shutdown does not wait for handshakes
    assert time.monotonic() - t0 < 5
    for s in more:
        s.close()


@pytest.mark.integration
def test_tls_stallers_and_partial_pdus_together(make_node, small, certs):
    """Ten stalled TLS connections: a normal TLS peer is served within the timeout + 5 s."""
    node = make_node(tls_cert=certs["srv.pem"], tls_key=certs["srv.key"],
                     network_timeout_s=TIMEOUT_S)  # fmt: skip
    port = node.address[1]
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs["ca.pem"]))
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs["ca.pem"]))
    held = []
    for i in range(10):  # handshake done, then a partial A-ASSOCIATE-RQ
        raw = _connect(port, f"127.0.0.{2 + i // 5}")
        tls = client.wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall(PARTIAL_RQ)
        held.append(tls)
    assert _serve_time(port, tls=(ctx, "127.0.0.1")) < TIMEOUT_S + 5
    assert _closed_within(held, TIMEOUT_S + 5) < TIMEOUT_S + 5
    assert echo(port) == "no-association"  # still TLS only
    ae = AE(ae_title="SCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="UGSS", tls_args=(ctx, "127.0.0.1"))
    assert assoc.is_established and int(assoc.send_c_store(small[1][0]).Status) == 0
    assoc.release()


def test_normal_series_still_goes_through_after_the_attacks(make_node, small):
    node = make_node(network_timeout_s=TIMEOUT_S)
    held = _stallers(node.address[1], PARTIAL_RQ, n=4)
    assert send_files(node.address[1], small[0]) == [0, 0]
    for s in held:
        s.close()
