"""``ugss-train``: --resume without a run and an output folder that cannot be made are one line."""

from __future__ import annotations

import sys

import pytest

from ugss.train.cli import main


def run(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ugss-train", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def test_resume_with_nothing_to_resume_stops(tmp_path, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "--resume", "--out", tmp_path / "run")
    assert code == 2
    assert err.splitlines() == [
        f"Error: {tmp_path}/run: nothing to resume (no last.pt there); drop --resume to start"
    ]
    assert not (tmp_path / "run").exists()


def test_unwritable_run_folder_is_one_line(tmp_path, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "-o", "/proc/ugss-run")
    assert code == 2
    assert err.splitlines() == [
        "Error: /proc/ugss-run: cannot write the run folder there (No such file or directory)"
    ]
