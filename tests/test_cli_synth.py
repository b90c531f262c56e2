"""``ugss-synth``: a rerun into a folder holds exactly the new cohort; -o; one-line errors."""

from __future__ import annotations

import csv
import sys

import pytest

from ugss.synth.cli import main


def run(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ugss-synth", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


@pytest.mark.slow
def test_smaller_rerun_leaves_no_stale_scan(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cohort"
    common = ("--matrix", "32", "--seed", "1", "-q")
    assert run(monkeypatch, capsys, out, "--n", "3", "--dicom", *common)[0] == 0
    (out / "ct_scans" / "notes.txt").write_text("mine")  # not ours: kept
    code, stdout, err = run(monkeypatch, capsys, "-o", out, "--n", "2", *common)
    assert code == 0, err
    assert stdout == ""  # --quiet
    assert sorted(p.name for p in (out / "ct_scans").iterdir()) == [
        "001.nii",
        "002.nii",
        "notes.txt",
    ]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["001.nii", "002.nii"]
    assert not (out / "dicom" / "003").exists()
    with open(out / "truth.csv") as fh:
        assert [r["scan_id"] for r in csv.DictReader(fh)] == ["001", "002"]


def test_compressed_rerun_removes_the_uncompressed_files(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cohort"
    assert run(monkeypatch, capsys, out, "-n", "1", "--matrix", "32", "-q")[0] == 0
    assert run(monkeypatch, capsys, out, "-n", "1", "--matrix", "32", "--compress", "-q")[0] == 0
    assert [p.name for p in (out / "ct_scans").iterdir()] == ["001.nii.gz"]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["-o", "/proc/ugss-x"], "Error: /proc/ugss-x: cannot write the output folder there "
         "(No such file or directory)"),
        ([], "Error: no output folder: give OUT or -o DIR"),
        (["a", "-o", "b"], "Error: two output folders given: a and -o b"),
        (["a", "--n", "x"], "Error: Invalid value for '-n' / '--n': Input should be a valid "
         "integer, unable to parse string as an integer (see ugss-synth --help)"),
    ],
)  # fmt: skip
def test_output_errors_are_one_line(monkeypatch, capsys, args, line):
    code, _, err = run(monkeypatch, capsys, "--n", "1", *args)
    assert (code, err.splitlines()) == (2, [line])


def test_one_scan_is_worded_singular(tmp_path, monkeypatch, capsys):
    """Issue 16 item 14: no "1 scans" on the console."""
    code, stdout, err = run(monkeypatch, capsys, tmp_path / "c", "-n", "1", "--matrix", "32")
    assert code == 0, err
    text = " ".join(stdout.split())  # rich wraps a long path onto its own line
    assert f"1 scan in {tmp_path}/c" in text and "1 scans" not in text
    assert "1 scan (" in text
