"""Issue 14, hygiene: peer strings cannot forge log lines; the spool refuses links and loose
modes it did not create. Case list: ``SECURITY.md``.
"""

from __future__ import annotations

import logging
import os
import socket
import struct

import pytest
from node_helpers import write_series
from test_hostile_inputs import _still_serves

from ugss.dicom_node.config import Peer
from ugss.errors import ConfigError

pytestmark = pytest.mark.slow  # each test starts a node and waits out its quiet periods


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("hygiene")
    return write_series(root / "a", slices=2, size=64, entropy="hyg-a"), write_series(
        root / "b", slices=2, size=64, entropy="hyg-b"
    )


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def association_rq(called: bytes, calling: bytes) -> bytes:
    """A-ASSOCIATE-RQ (PS3.8 9.3.2) for Verification, with AE titles as raw bytes."""
    pc = b"\x01\x00\x00\x00" + _item(0x30, b"1.2.840.10008.1.1") + _item(0x40, b"1.2.840.10008.1.2")
    user = _item(0x51, struct.pack(">L", 16384)) + _item(0x52, b"1.2.3.4")
    body = struct.pack(">HH", 1, 0) + called.ljust(16) + calling.ljust(16) + bytes(32)
    body += _item(0x10, b"1.2.840.10008.3.1.1.1") + _item(0x20, pc) + _item(0x50, user)
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


@pytest.mark.parametrize("calling", [b"EVIL\nnode_start", b"\x1b[31mRED\x1b[0m"])
def test_peer_strings_are_escaped_in_the_log(make_node, small, caplog, calling):
    node = make_node(peers=(Peer("SCU", "127.0.0.1"),))
    port = node.address[1]
    with (
        caplog.at_level(logging.DEBUG),
        socket.create_connection(("127.0.0.1", port), timeout=10) as s,
    ):
        s.sendall(association_rq(b"UGSS", calling))
        s.settimeout(5)
        try:
            answer = s.recv(1)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert answer in (b"", b"\x03", b"\x07")  # closed, A-ASSOCIATE-RJ or A-ABORT
    for record in caplog.records:
        text = record.getMessage()
        assert "\n" not in text and "\x1b" not in text, text
        assert record.exc_info is None and not record.exc_text
    assert "Traceback" not in caplog.text
    _still_serves(node, small)


def _victim(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    victim = elsewhere / "precious.txt"
    victim.write_text("keep me")
    return elsewhere, victim


@pytest.mark.parametrize("folder", ["incoming", "series", "scratch"])
def test_spool_refuses_symlinked_folders(make_node, tmp_path, folder):
    """A symlinked incoming/ used to have its target's files deleted at start."""
    elsewhere, victim = _victim(tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    (spool / folder).symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="symlink"):
        make_node(spool=spool)
    assert victim.read_text() == "keep me"


def test_spool_refuses_a_world_writable_spool(make_node, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    os.chmod(spool, 0o777)
    with pytest.raises(ConfigError, match="mode 0777"):
        make_node(spool=spool)


def test_spool_refuses_a_spool_another_user_owns(make_node, tmp_path):
    """Case 56: a spool folder someone else prepared (and so can read or swap) is refused."""
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    other = os.geteuid() + 1
    try:
        os.chown(spool, other, -1)
    except PermissionError:
        pytest.skip("changing a folder's owner needs root")
    with pytest.raises(ConfigError, match=f"belongs to uid {other}, not to this user"):
        make_node(spool=spool)


def test_spool_removes_links_in_incoming_not_their_targets(make_node, small, tmp_path):
    elsewhere, victim = _victim(tmp_path)
    spool = tmp_path / "spool"
    (spool / "incoming").mkdir(parents=True, mode=0o700)
    os.chmod(spool, 0o700)
    (spool / "incoming" / "x.part").symlink_to(victim)
    (spool / "incoming" / "d").symlink_to(elsewhere)
    node = make_node(spool=spool)
    assert victim.read_text() == "keep me"
    assert list((spool / "incoming").iterdir()) == []
    _still_serves(node, small)
