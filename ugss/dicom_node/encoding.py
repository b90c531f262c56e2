"""A strict structural walk over an encoded data set (PS3.5 7.1, 7.5): can it be understood?

pydicom reads leniently — an element whose length runs past the end of the stream is simply
cut short — so garbage can parse into a "data set". Before anything else the node walks the
raw bytes: explicit VRs valid, every defined length inside the
buffer, undefined lengths only where PS3.5 allows them and closed by their delimiters.
Tag order is not enforced: real archives hold out-of-order private tags that decode fine.

Sizes are bounded before anything is kept: an element other than Pixel Data longer than
``MAX_ELEMENT_BYTES`` (a 1 GiB private element of zeros, say) is refused, and a deflated data set
(PS3.5 A.5) is inflated in steps and refused as soon as it passes ``MAX_DATASET_BYTES``, then
walked like any other — zlib never gets to allocate what the stream claims.
"""

from __future__ import annotations

import struct
import zlib

from ugss.dicom_node.dimse import CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH_SOP_CLASS, StoreRefusal

MAX_ELEMENT_BYTES = 4 * 2**20  # CSA and other private headers of real CTs are < 1 MiB
MAX_DATASET_BYTES = 64 * 2**20  # a 2048² 16-bit slice is 8 MiB
_INFLATE_STEP = 2**20

_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}
_SHORT_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
}  # fmt: skip
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_MAX_DEPTH = 16


class _Bad(Exception):
    pass


def inflate_bounded(data: bytes | memoryview, limit: int = MAX_DATASET_BYTES) -> bytes:
    """Raw deflate (PS3.5 A.5, RFC 1951) of at most ``limit`` bytes, or a ``StoreRefusal``."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    pending = bytes(data)
    try:
        while pending and not inflater.eof:
            out += inflater.decompress(pending, _INFLATE_STEP)
            if len(out) > limit:
                raise StoreRefusal(
                    DATASET_DOES_NOT_MATCH_SOP_CLASS, f"deflated data set inflates past {limit}"
                )
            pending = inflater.unconsumed_tail
    except zlib.error:
        raise StoreRefusal(CANNOT_UNDERSTAND, "malformed deflated data set") from None
    if not inflater.eof:
        raise StoreRefusal(CANNOT_UNDERSTAND, "deflated data set cut short")
    return bytes(out)


def check_encoding(data: bytes | memoryview, *, implicit_vr: bool, little_endian: bool) -> None:
    """Raise ``StoreRefusal`` (PS3.4 0xC000 Cannot understand) if ``data`` is malformed."""
    walker = _Walker(data, implicit_vr, "<" if little_endian else ">")
    try:
        end = walker.elements(0, len(data), depth=0, until_item_end=False)
    except (_Bad, struct.error) as exc:
        raise StoreRefusal(CANNOT_UNDERSTAND, f"malformed data set: {exc}"[:64]) from None
    if end != len(data):
        raise StoreRefusal(CANNOT_UNDERSTAND, "malformed data set: trailing bytes")
    if walker.count == 0:
        raise StoreRefusal(CANNOT_UNDERSTAND, "empty data set")


class _Walker:
    def __init__(self, data: bytes | memoryview, implicit: bool, endian: str) -> None:
        self.data = data
        self.implicit = implicit
        self.e = endian
        self.count = 0

    def _tag(self, pos: int) -> int:
        group, elem = struct.unpack_from(f"{self.e}HH", self.data, pos)
        return int(group) << 16 | int(elem)

    def elements(self, pos: int, end: int, *, depth: int, until_item_end: bool) -> int:
        """Walk elements from ``pos``; returns the position after the last one (or delimiter)."""
        if depth > _MAX_DEPTH:
            raise _Bad("nesting too deep")
        while pos < end:
            if pos + 8 > end:
                raise _Bad(f"element header cut at {pos}")
            tag = self._tag(pos)
            if tag == _ITEM_END:
                if not until_item_end:
                    raise _Bad(f"stray item delimiter at {pos}")
                return pos + 8
            pos = self._element(pos, tag, end, depth)
            self.count += 1
        if until_item_end:
            raise _Bad("item without delimiter")
        return pos

    def _element(self, pos: int, tag: int, end: int, depth: int) -> int:
        if self.implicit:
            (length,) = struct.unpack_from(f"{self.e}L", self.data, pos + 4)
            start, vr = pos + 8, None
        else:
            vr = bytes(self.data[pos + 4 : pos + 6])
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    raise _Bad(f"element header cut at {pos}")
                (length,) = struct.unpack_from(f"{self.e}L", self.data, pos + 8)
                start = pos + 12
            elif vr in _SHORT_VRS:
                (length,) = struct.unpack_from(f"{self.e}H", self.data, pos + 6)
                start = pos + 8
            else:
                raise _Bad(f"invalid VR at {pos}")
        if length == _UNDEFINED:
            if vr not in (None, b"SQ", b"UN", b"OB", b"OW"):
                raise _Bad(f"undefined length for {vr!r} at {pos}")
            if tag == 0x7FE00010 and vr != b"SQ":
                return self._fragments(start, end)
            return self._sequence(start, end, None, depth)
        if start + length > end:
            raise _Bad(f"value of ({tag >> 16:04X},{tag & 0xFFFF:04X}) runs past the end")
        if length > MAX_ELEMENT_BYTES and tag != 0x7FE00010 and vr != b"SQ":
            raise StoreRefusal(
                DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) of {length} bytes is over the limit",
            )
        if vr == b"SQ":
            self._sequence(start, start + length, start + length, depth)
        return start + length

    def _sequence(self, pos: int, end: int, defined_end: int | None, depth: int) -> int:
        """Items of a sequence; returns the position after it."""
        while pos < end:
            if pos + 8 > end:
                raise _Bad("sequence item header cut")
            tag = self._tag(pos)
            (length,) = struct.unpack_from(f"{self.e}L", self.data, pos + 4)
            if tag == _SEQ_END:
                if defined_end is not None:
                    raise _Bad("sequence delimiter in a defined-length sequence")
                return pos + 8
            if tag != _ITEM:
                raise _Bad(f"expected an item at {pos}")
            if length == _UNDEFINED:
                pos = self.elements(pos + 8, end, depth=depth + 1, until_item_end=True)
            else:
                if pos + 8 + length > end:
                    raise _Bad("item runs past the end")
                self.elements(pos + 8, pos + 8 + length, depth=depth + 1, until_item_end=False)
                pos += 8 + length
        if defined_end is None:
            raise _Bad("sequence without delimiter")
        return pos

    def _fragments(self, pos: int, end: int) -> int:
        """Encapsulated pixel data (PS3.5 A.4): items of defined length, then a delimiter."""
        while pos + 8 <= end:
            tag = self._tag(pos)
            (length,) = struct.unpack_from(f"{self.e}L", self.data, pos + 4)
            if tag == _SEQ_END:
                return pos + 8
            if tag != _ITEM or length == _UNDEFINED or pos + 8 + length > end:
                raise _Bad("broken encapsulated pixel data")
            pos += 8 + length
        raise _Bad("encapsulated pixel data without delimiter")
