"""Issue 14, decoding: hostile pixel data never reaches a decoder in the node's own process.

Each case runs against a real node on loopback with pynetdicom as the peer, and ends with a
C-ECHO and a normal store (``_still_serves``). Case list: ``SECURITY.md``.
"""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from node_helpers import send_files, send_raw, wait_until, write_series
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    JPEGLSLossless,
)
from test_hostile_inputs import _encoded, _still_serves

from ugss.dicom_node import dimse, series
from ugss.dicom_node.status import format_status, read_status

pytestmark = pytest.mark.slow  # each test starts a node and waits out its quiet periods

A900, C000 = dimse.DATASET_DOES_NOT_MATCH_SOP_CLASS, dimse.CANNOT_UNDERSTAND
CT = "1.2.840.10008.5.1.4.1.1.2"
CRASHING_SEEDS = (0, 1, 2)  # of 20 seeds, 16 abort GDCM 3.2 (issue 14); these three do


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack")
    return write_series(root / "a", slices=3, size=64, entropy="attack-a"), write_series(
        root / "b", slices=2, size=64, entropy="attack-b"
    )


def hostile_j2k(seed: int) -> bytes:
    """The issue's codestream: SOC, the SIZ marker, then a few KB of random bytes."""
    return b"\xff\x4f\xff\x51" + np.random.default_rng(seed).bytes(4000)


def _with_fragment(src: Path, out: Path, fragment: bytes, ts: str, **changes) -> Path:
    ds = pydicom.dcmread(src)
    ds.PixelData = encapsulate([fragment])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = ts
    for key, value in changes.items():
        setattr(ds, key, value)
    out.mkdir(parents=True, exist_ok=True)
    path = out / src.name
    ds.save_as(path, enforce_file_format=True)
    return path


def _j2k_series(small, tmp_path: Path) -> list[Path]:
    return [
        _with_fragment(src, tmp_path / "j2k", hostile_j2k(seed), JPEG2000)
        for src, seed in zip(small[0], CRASHING_SEEDS, strict=True)
    ]


def _old_path_exit(folder: Path) -> int:
    """Read the folder as the worker did before issue 14: decoding in the calling process."""
    code = (
        "import sys; from ugss.runtime.dicom_series import read_dicom_series as r; r(sys.argv[1])"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, timeout=120, check=False
    )
    return run.returncode


@pytest.mark.integration
def test_hostile_jpeg2000_is_refused_at_the_door(make_node, small, tmp_path):
    """The codestreams abort a process that decodes them; the node refuses them unread."""
    files = _j2k_series(small, tmp_path)
    assert _old_path_exit(files[0].parent) == -signal.SIGABRT  # the input really is a crasher
    node = make_node()
    assert send_files(node.address[1], files) == [A900] * 3
    _still_serves(node, small)


@pytest.mark.integration
def test_decoder_crash_quarantines_the_series_and_the_node_serves(
    make_node, small, tmp_path, monkeypatch
):
    """With the header check bypassed, GDCM aborts in the decoder process, not in the node."""
    monkeypatch.setattr(series, "check_frame", lambda *a: None)
    files = _j2k_series(small, tmp_path)
    node = make_node(quiet_period_s=0.3)
    assert send_files(node.address[1], files) == [0, 0, 0]
    assert wait_until(lambda: node.db.counts("series").get("quarantined"), timeout=60)
    row = node.db.rows("series")[0]
    assert row["state"] == "quarantined" and "SIGABRT" in row["error"]
    folder = node.spool.series_dir(row["series_uid"])
    assert _old_path_exit(folder) == -signal.SIGABRT  # the spooled files crash the old path
    assert "quarantined" in format_status(read_status(node.config.db_path))
    # no retry loop: a resend is a duplicate, a late slice does not rerun the decoder
    assert send_files(node.address[1], files) == [0, 0, 0]
    late = _with_fragment(small[1][0], tmp_path / "late", hostile_j2k(3), JPEG2000,
                          SeriesInstanceUID=row["series_uid"])  # fmt: skip
    assert send_files(node.address[1], [late]) == [0]
    time.sleep(1.0)
    assert len(node.db.rows("jobs")) == 1 and node.worker.is_alive()
    _still_serves(node, small)


def _jpeg_ls(img: np.ndarray) -> bytes:
    """A real JPEG-LS codestream of ``img`` (CharLS through pyjpegls)."""
    from pydicom.pixels import get_encoder

    rows, cols = img.shape
    return get_encoder(JPEGLSLossless).encode(
        img, rows=rows, columns=cols, samples_per_pixel=1, bits_allocated=16, bits_stored=16,
        pixel_representation=0, photometric_interpretation="MONOCHROME2", number_of_frames=1,
    )  # fmt: skip


def _peak_rss_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)


def _peak_rss_mib() -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if "VmHWM" in x)
    return int(line.split()[1]) / 1024


def test_decoder_memory_limit_quarantines_not_the_node(make_node, small, tmp_path, monkeypatch):
    """A JPEG-LS frame declaring 16384² in 4 KB: refused at the door; past it, the decoder
    process hits its limit while the node's own peak memory does not move."""
    fragment = _jpeg_ls(np.zeros((64, 64), np.uint16))
    sof = fragment.index(b"\xff\xf7")
    fragment = fragment[: sof + 5] + struct.pack(">HH", 16384, 16384) + fragment[sof + 9 :]
    assert len(fragment) < 4096
    node = make_node(quiet_period_s=0.3, decode_memory_mb=400)
    lying = _with_fragment(small[0][0], tmp_path / "ls", fragment, JPEGLSLossless)
    claims = _with_fragment(small[0][1], tmp_path / "ls2", fragment, JPEGLSLossless,
                            Rows=16384, Columns=16384)  # fmt: skip
    assert send_files(node.address[1], [lying, claims]) == [A900, A900]
    monkeypatch.setattr(series, "check_frame", lambda *a: None)
    files = [_with_fragment(src, tmp_path / "ls3", fragment, JPEGLSLossless) for src in small[0]]
    _peak_rss_reset()
    before = _peak_rss_mib()
    assert send_files(node.address[1], files) == [0, 0, 0]
    assert wait_until(lambda: node.db.counts("jobs").get("failed"), timeout=60)
    assert _peak_rss_mib() - before < 200  # the 512 MiB allocation happened elsewhere
    row = node.db.rows("series")[0]
    assert row["state"] == "quarantined" and "decoder" in row["error"], row  # limit hit
    _still_serves(node, small)


def test_jpeg_ls_frame_larger_than_its_header_is_refused(make_node, small, tmp_path):
    """A real 1024² JPEG-LS codestream in a 64² header used to decode as its first pixels."""
    img = np.arange(1024 * 1024, dtype=np.uint16).reshape(1024, 1024) % 3000
    fragment = _jpeg_ls(img)
    bad = _with_fragment(small[0][0], tmp_path / "ls", fragment, JPEGLSLossless)
    node = make_node()
    assert send_files(node.address[1], [bad]) == [A900]
    _still_serves(node, small)


def test_huge_encapsulated_image_is_refused(make_node, small, tmp_path):
    """65535² encapsulated (4 KB sent) was accepted and failed later allocating 32 GiB."""
    bad = _with_fragment(small[0][0], tmp_path / "big", hostile_j2k(0), JPEG2000,
                         Rows=65535, Columns=65535)  # fmt: skip
    node = make_node()
    assert send_files(node.address[1], [bad]) == [A900]
    _still_serves(node, small)


def _deflated(payload: bytes) -> bytes:
    comp = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    return comp.compress(payload) + comp.flush()


def _zeros_element_deflated(ds: pydicom.Dataset, size: int) -> bytes:
    """``ds`` with a private OB element of ``size`` zeros, deflated without holding it whole."""
    head = _encoded(ds)
    split = head.index(struct.pack("<HH", 0x7FE0, 0x0010))
    element = struct.pack("<HH2sHL", 0x0009, 0x1000, b"OB", 0, size)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [comp.compress(head[:split] + element)]
    chunk = bytes(2**24)
    for _ in range(size // len(chunk)):
        out.append(comp.compress(chunk))
    out.append(comp.compress(head[split:]))
    return b"".join(out) + comp.flush()


def test_deflated_zip_bomb_is_refused_while_inflating(make_node, small):
    """A 1 GiB private element of zeros, about 1 MiB deflated: refused, memory bounded."""
    ds = pydicom.dcmread(small[0][0])
    payload = _zeros_element_deflated(ds, 2**30)
    assert len(payload) < 4 * 2**20
    node = make_node()
    _peak_rss_reset()
    before = _peak_rss_mib()
    status = send_raw(node.address[1], CT, str(ds.SOPInstanceUID), payload,
                      transfer_syntax=DeflatedExplicitVRLittleEndian)  # fmt: skip
    assert status == A900
    assert _peak_rss_mib() - before < 300  # was 6.6 GB for two slices
    _still_serves(node, small)


def test_deflated_element_running_past_the_end_is_refused(make_node, small):
    """The same bytes uncompressed were refused (0xC000); deflated they were accepted."""
    ds = pydicom.dcmread(small[0][0])
    raw = _encoded(ds)
    cut = raw[:-100]  # Pixel Data's length now runs past the end
    node = make_node()
    sop = str(ds.SOPInstanceUID)
    assert send_raw(node.address[1], CT, sop, cut) == C000
    assert send_raw(node.address[1], CT, sop, _deflated(cut),
                    transfer_syntax=DeflatedExplicitVRLittleEndian) == C000  # fmt: skip
    _still_serves(node, small)


def test_large_private_element_is_refused(make_node, small):
    ds = pydicom.dcmread(small[0][0])
    ds.add_new(0x00091000, "OB", bytes(8 * 2**20))
    node = make_node()
    assert send_raw(node.address[1], CT, str(ds.SOPInstanceUID), _encoded(ds)) == A900
    _still_serves(node, small)
