"""``new_folders_removed_on_error``: a command that checked (and so created) its output folders
before the work leaves none of them behind when the work then fails (issue 16 item 7)."""

from __future__ import annotations

import pytest

from ugss.cli_support import new_folders_removed_on_error


def test_folders_made_for_a_failed_command_are_removed(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError), new_folders_removed_on_error(out):
        out.mkdir(parents=True)
        raise RuntimeError("the export failed")
    assert not (tmp_path / "a").exists()


def test_existing_folders_and_anything_written_stay(tmp_path):
    keep = tmp_path / "kept"
    keep.mkdir()
    out = keep / "new"
    with pytest.raises(RuntimeError), new_folders_removed_on_error(out, keep / "other"):
        out.mkdir()
        (out / "partial.onnx").write_bytes(b"x")  # not empty: not removed
        (keep / "other").mkdir()
        raise RuntimeError("failed")
    assert (out / "partial.onnx").exists() and not (keep / "other").exists() and keep.is_dir()


def test_nothing_is_removed_when_the_command_succeeds(tmp_path):
    out = tmp_path / "x" / "out"
    with new_folders_removed_on_error(out):
        out.mkdir(parents=True)
    assert out.is_dir()
