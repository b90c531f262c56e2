"""The structural walk that decides 0xC000: real encodings pass, damaged ones do not."""

from __future__ import annotations

import pydicom
import pytest
from pynetdicom.dsutils import encode

from ugss.dicom_node.dimse import CANNOT_UNDERSTAND, StoreRefusal
from ugss.dicom_node.encoding import check_encoding


def _sr_like() -> pydicom.Dataset:
    """Nested sequences, as in an SR content tree."""
    ds = pydicom.Dataset()
    ds.SOPInstanceUID = "1.2.3"
    item = pydicom.Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "x" * 300
    inner = pydicom.Dataset()
    inner.CodeValue = "118565006"
    item.ConceptNameCodeSequence = [inner]
    ds.ContentSequence = [item, item]
    return ds


@pytest.mark.parametrize(("implicit", "little"), [(True, True), (False, True), (False, False)])
def test_valid_encodings_pass(series34, implicit, little):
    for ds in (pydicom.dcmread(series34[0]), _sr_like()):
        data = encode(ds, implicit, little)
        check_encoding(data, implicit_vr=implicit, little_endian=little)


def test_undefined_length_sequences_and_encapsulated_pixel_data(series34, tmp_path):
    from pydicom.filewriter import dcmwrite

    ds = _sr_like()
    path = tmp_path / "undef.dcm"
    ds.ContentSequence[0].ConceptNameCodeSequence.is_undefined_length = True
    ds["ContentSequence"].is_undefined_length = True
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    dcmwrite(path, ds, enforce_file_format=False)
    raw = path.read_bytes()
    body = raw[raw.index(b"\x08\x00\x18\x00") :]  # after the file meta
    check_encoding(body, implicit_vr=False, little_endian=True)
    with pytest.raises(StoreRefusal):
        check_encoding(body[:-8], implicit_vr=False, little_endian=True)  # delimiter cut off

    ct = pydicom.dcmread(series34[0])
    ct.compress(pydicom.uid.RLELossless)
    data = encode(ct, False, True)
    check_encoding(data, implicit_vr=False, little_endian=True)
    with pytest.raises(StoreRefusal) as exc:
        check_encoding(data[:-20], implicit_vr=False, little_endian=True)
    assert exc.value.status == CANNOT_UNDERSTAND


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x08\x00\x18\x00UI\xff\x7fgarbage", b"\x08\x00\x18\x00XX\x02\x001.", b"\x08\x00\x18"],
    ids=["empty", "length-past-end", "bad-vr", "cut-header"],
)
def test_garbage_is_refused(payload):
    with pytest.raises(StoreRefusal) as exc:
        check_encoding(payload, implicit_vr=False, little_endian=True)
    assert exc.value.status == CANNOT_UNDERSTAND
