"""``ugss-export``: the output locations are checked before the checkpoint is even read."""

from __future__ import annotations

import sys

import pytest

from ugss.export.cli import main


def run(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ugss-export", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["-o", "/proc/ugss-x.onnx"],
         "Error: /proc/ugss-x.onnx: cannot write the ONNX file there (No such file or directory)"),
        (["--onnx", "{tmp}/file/m.onnx"],
         "Error: {tmp}/file/m.onnx: cannot write the ONNX file there ({tmp}/file is not a folder)"),
        (["-o", "{tmp}/m.onnx", "--triton", "/proc/repo"],
         "Error: /proc/repo: cannot write the Triton repository there (No such file or directory)"),
        (["-o", "{tmp}/m.onnx", "--triton", "{tmp}/file"],
         "Error: {tmp}/file: the Triton repository exists and is not a folder"),
    ],
)  # fmt: skip
def test_output_checked_before_the_work(args, line, tmp_path, monkeypatch, capsys):
    """Issue 16 item 7: one line, exit 2; the (unreadable) checkpoint is never opened."""
    (tmp_path / "file").write_text("x")
    checkpoint = tmp_path / "not-a-checkpoint.pt"
    checkpoint.write_text("not a checkpoint")
    args = [a.format(tmp=tmp_path) for a in args]
    code, _, err = run(monkeypatch, capsys, "-i", checkpoint, *args)
    assert (code, err.splitlines()) == (2, [line.format(tmp=tmp_path)])


def test_two_checkpoints_is_one_line(tmp_path, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "a.pt", "-i", "b.pt")
    assert (code, err.splitlines()) == (2, ["Error: two checkpoints given: a.pt and -i b.pt"])
