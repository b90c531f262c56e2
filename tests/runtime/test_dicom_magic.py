"""One "is this a DICOM file" test (issue 18 item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ugss.runtime.io import is_dicom_file


def test_is_dicom_file(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"\0" * 128 + b"DICM" + b"rest")
    (tmp_path / "b").write_bytes(b"\0" * 128 + b"NOPE")
    (tmp_path / "c").write_bytes(b"short")
    assert is_dicom_file(tmp_path / "a")
    assert not is_dicom_file(tmp_path / "b")
    assert not is_dicom_file(tmp_path / "c")
    with pytest.raises(OSError):
        is_dicom_file(tmp_path / "missing")
