"""What a compressed frame claims to be, read from its codestream header, before any decoder runs.

Native decoders trust their input: a JPEG 2000 SIZ segment declaring 39-bit samples aborts GDCM
(SIGABRT), a JPEG-LS frame declaring 16384² pixels allocates 512 MiB before it fails, and one
declaring 1024² in a 64² image decodes silently as the wrong pixels. The node therefore reads the
header itself and refuses a frame whose image size, components or precision disagree with the
DICOM header (PS3.5 8.2: the codestream must describe the image the data set describes):

- JPEG 2000 (ISO 15444-1 A.5.1): SOC then SIZ — Xsiz−XOsiz = Columns, Ysiz−YOsiz = Rows,
  Csiz = SamplesPerPixel, every component at most BitsAllocated bits and not subsampled;
- JPEG and JPEG-LS (ISO 10918-1 B.2.2, ISO 14495-1 C.2.2): SOI, then marker segments up to the
  first SOFn / SOF55 — Y = Rows, X = Columns, Nf = SamplesPerPixel, P ≤ BitsAllocated;
- RLE (PS3.5 G.3.1): a 64-byte header with BitsAllocated/8 × SamplesPerPixel segments whose
  offsets lie inside the fragment.

A mismatch is a ``StoreRefusal`` (0xA900) at receive time; nothing is decoded here.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

from pydicom.uid import UID

from ugss.dicom_node.dimse import DATASET_DOES_NOT_MATCH_SOP_CLASS, StoreRefusal

J2K_SYNTAXES = {
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
}
JPEG_SYNTAXES = {
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
}
RLE_SYNTAX = "1.2.840.10008.1.2.5"
# SOFn markers (ISO 10918-1 Table B.1: C0-CF except DHT C4, JPG C8, DAC CC) and JPEG-LS SOF55
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
_MAX_MARKERS = 64  # marker segments before SOF (APPn, DQT, DHT, LSE …); real files have < 20
_J2K_SEARCH = 256  # a JP2 wrapper (not allowed by PS3.5, but seen) puts SOC after its boxes


@dataclass(frozen=True)
class ImageClaim:
    """What the DICOM header says one frame is."""

    rows: int
    columns: int
    samples: int
    bits_allocated: int


def _refuse(reason: str) -> StoreRefusal:
    return StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, reason)


def check_frame(ts: UID, frame: bytes, claim: ImageClaim) -> None:
    """Refuse ``frame`` (the first fragment of an encapsulated frame) if its header disagrees."""
    if ts in J2K_SYNTAXES:
        _check_j2k(frame, claim)
    elif ts in JPEG_SYNTAXES:
        _check_jpeg(frame, claim)
    elif ts == RLE_SYNTAX:
        _check_rle(frame, claim)
    else:  # a compressed syntax the node does not negotiate: nothing decodes it
        raise _refuse(f"unsupported transfer syntax {ts}")


def _check_j2k(frame: bytes, claim: ImageClaim) -> None:
    start = frame.find(b"\xff\x4f\xff\x51", 0, _J2K_SEARCH)
    if start < 0:
        raise _refuse("JPEG 2000 frame without SOC and SIZ")
    try:
        lsiz, _, xsiz, ysiz, xo, yo, xt, yt, _, _, csiz = struct.unpack_from(
            ">HHIIIIIIIIH", frame, start + 4
        )
        comps = [struct.unpack_from(">BBB", frame, start + 42 + 3 * i) for i in range(csiz)]
    except struct.error:
        raise _refuse("JPEG 2000 SIZ segment cut short") from None
    if lsiz != 38 + 3 * csiz or csiz != claim.samples:
        raise _refuse(f"JPEG 2000 SIZ: {csiz} components, header says {claim.samples}")
    if (xsiz - xo, ysiz - yo) != (claim.columns, claim.rows) or xsiz < xo or ysiz < yo:
        raise _refuse(
            f"JPEG 2000 SIZ: {xsiz - xo}x{ysiz - yo}, header says {claim.columns}x{claim.rows}"
        )
    if xt == 0 or yt == 0:
        raise _refuse("JPEG 2000 SIZ: zero tile size")
    for ssiz, xr, yr in comps:
        if (ssiz & 0x7F) + 1 > claim.bits_allocated or (xr, yr) != (1, 1):
            raise _refuse(
                f"JPEG 2000 SIZ: {(ssiz & 0x7F) + 1}-bit samples (subsampling {xr}x{yr}) "
                f"in {claim.bits_allocated}-bit pixels"
            )


def _check_jpeg(frame: bytes, claim: ImageClaim) -> None:
    if frame[:2] != b"\xff\xd8":
        raise _refuse("JPEG frame without SOI")
    pos = 2
    for _ in range(_MAX_MARKERS):
        while frame[pos : pos + 2] == b"\xff\xff":
            pos += 1  # fill bytes (ISO 10918-1 B.1.1.2)
        if pos + 4 > len(frame) or frame[pos] != 0xFF:
            break
        marker = frame[pos + 1]
        (length,) = struct.unpack_from(">H", frame, pos + 2)
        if marker in _SOF:
            if pos + 10 > len(frame):
                break
            precision, y, x, nf = struct.unpack_from(">BHHB", frame, pos + 4)
            if (y, x) != (claim.rows, claim.columns) or nf != claim.samples:
                raise _refuse(
                    f"JPEG SOF: {x}x{y}, {nf} components; header says "
                    f"{claim.columns}x{claim.rows}, {claim.samples}"
                )
            if not 2 <= precision <= claim.bits_allocated:
                raise _refuse(f"JPEG SOF: {precision}-bit samples in {claim.bits_allocated}-bit")
            return
        if marker in (0xD9, 0xDA) or length < 2:  # EOI or SOS before any SOF
            break
        pos += 2 + length
    raise _refuse("JPEG frame without a frame header (SOF)")


def _check_rle(frame: bytes, claim: ImageClaim) -> None:
    if len(frame) < 64:
        raise _refuse("RLE frame without its 64-byte header")
    n, *offsets = struct.unpack_from("<16L", frame, 0)
    expected = claim.samples * claim.bits_allocated // 8
    if n != expected:
        raise _refuse(f"RLE header: {n} segments, header implies {expected}")
    used = offsets[:n]
    if used[0] != 64 or any(b <= a for a, b in itertools.pairwise(used)):
        raise _refuse("RLE header: bad segment offsets")
    if used[-1] >= len(frame):
        raise _refuse("RLE header: segment offset past the frame")
