"""ugss-synth: writes the layout, explains its options, and fails with one line and exit 2."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from ugss.synth.cli import app, main


def test_cli_writes_the_cohort(tmp_path):
    result = CliRunner().invoke(
        app, [str(tmp_path / "out"), "--n", "2", "--matrix", "48", "--seed", "4"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "ct_scans" / "001.nii").is_file()
    assert (tmp_path / "out" / "masks" / "002.nii").is_file()
    assert (tmp_path / "out" / "truth.csv").is_file()
    assert (tmp_path / "out" / "hemorrhage_diagnosis_raw_ct.csv").is_file()
    assert "2 scans" in result.output


def test_help_lists_every_option():
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for opt in (
        "--n",
        "--seed",
        "--matrix",
        "--thin-fraction",
        "--free-fraction",
        "--dicom",
        "--compress",
    ):
        assert opt in result.output


@pytest.mark.parametrize(
    "args",
    [["--n", "0"], ["--matrix", "8"], ["--free-fraction", "2"], ["FILE"]],
)
def test_bad_input_exits_2_with_one_error_line(tmp_path, monkeypatch, capsys, args):
    (tmp_path / "a_file").write_text("not a folder")
    out = str(tmp_path / "a_file") if args == ["FILE"] else str(tmp_path / "out")
    argv = ["ugss-synth", out, *([] if args == ["FILE"] else args)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: "), err
    assert not (tmp_path / "out").exists()
