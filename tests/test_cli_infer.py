"""``ugss-infer`` as a newcomer meets it: cohort folders, output locations, batches, options."""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "runtime"))
import onnx_models as om
from test_infer_cli import save_ras_nifti

from ugss.runtime.infer_cli import main
from ugss.runtime.io import OUTPUT_SUFFIXES
from ugss.synth.cohort import write_cohort


def run(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ugss-infer", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


@pytest.fixture(scope="module")
def det(tmp_path_factory):
    return om.save(om.build_det_model(om.det_info()), tmp_path_factory.mktemp("m") / "det.onnx")


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    d = tmp_path_factory.mktemp("scans")
    bleed, _ = om.phantom_hu()
    clean, _ = om.phantom_hu(bleed=False, seed=1)
    return {
        "bleed": save_ras_nifti(d / "bleed.nii.gz", bleed),
        "clean": save_ras_nifti(d / "clean.nii.gz", clean),
    }


def test_cohort_folder_reads_ct_scans_only(det, tmp_path, monkeypatch, capsys):
    """Item 5: a ugss-synth cohort (with --dicom) is read once, from ct_scans/, and said so."""
    cohort = write_cohort(tmp_path / "cohort", 2, 0, matrix=32, dicom=True).out_dir
    out = tmp_path / "out"
    code, stdout, err = run(monkeypatch, capsys, cohort, "--model", det, "-o", out, "--no-pictures")
    assert code == 0, err
    assert err.splitlines() == [
        f"{cohort}: a labeled cohort folder: reading the 2 scans in ct_scans/ (not dicom/, masks/)"
    ]
    assert sorted(p.name for p in out.glob("*_report.json")) == [
        "001_report.json",
        "002_report.json",
    ]
    assert stdout.startswith("1/2 001.nii: ")


@pytest.mark.parametrize(
    ("where", "line"),
    [
        ("/proc/ugss-x", "Error: /proc/ugss-x: cannot write the output folder there "
         "(No such file or directory)"),
        ("{tmp}/file/sub", "Error: {tmp}/file/sub: cannot write the output folder there "
         "(Not a directory)"),
        ("{tmp}/file", "Error: {tmp}/file: the output folder exists and is not a folder"),
    ],
)  # fmt: skip
def test_output_folder_checked_before_the_work(where, line, scans, tmp_path, monkeypatch, capsys):
    """Item 7: one line and exit 2, before the model is even opened (it does not exist here)."""
    (tmp_path / "file").write_text("x")
    where = where.format(tmp=tmp_path)
    code, _, err = run(monkeypatch, capsys, scans["bleed"], "--model", "nope.onnx", "-o", where)
    assert (code, err.splitlines()) == (2, [line.format(tmp=tmp_path)])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder(scans, tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code, _, err = run(monkeypatch, capsys, scans["bleed"], "-o", locked / "sub")
    assert (code, err.splitlines()) == (
        2,
        [f"Error: {locked}/sub: cannot write the output folder there (Permission denied)"],
    )


@pytest.mark.slow
def test_output_name_taken_by_a_folder_is_a_listed_failure(
    det, scans, tmp_path, monkeypatch, capsys
):
    """Item 7: the scan fails with one line, writes nothing; the batch goes on."""
    out = tmp_path / "out"
    (out / "bleed_report.json").mkdir(parents=True)
    code, stdout, err = run(
        monkeypatch, capsys, scans["bleed"], scans["clean"], "--model", det, "-o", out
    )
    assert code == 2
    assert err.splitlines() == [
        f"Error: {scans['bleed']}: cannot write {out}/bleed_report.json: a folder has that name",
        "1 of 2 scans failed:",
        f"  {scans['bleed']}",
    ]
    assert [p.name for p in out.glob("bleed_*")] == ["bleed_report.json"]  # the folder only
    assert (out / "clean_report.json").is_file()
    assert "2/2 clean.nii.gz: no hemorrhage" in stdout


def test_a_failed_scan_leaves_no_partial_files(det, scans, tmp_path, monkeypatch, capsys):
    """Item 7: outputs written before a scan fails are removed; an earlier run's files that
    this run did not rewrite stay."""
    from ugss.runtime import pipeline

    out = tmp_path / "out"
    out.mkdir()
    (out / "bleed_montage.png").write_bytes(b"earlier run")

    def failing_report(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline, "build_report", failing_report)
    code, _, err = run(
        monkeypatch, capsys, scans["bleed"], "--model", det, "-o", out, "--no-pictures"
    )
    assert code == 1
    assert err.splitlines() == [
        f"Error: {scans['bleed']}: internal error: OSError: [Errno 28] No space left on device"
    ]
    assert [p.name for p in out.iterdir()] == ["bleed_montage.png"]
    assert (out / "bleed_montage.png").read_bytes() == b"earlier run"


def test_batch_progress_summary_and_same_named_inputs(det, scans, tmp_path, monkeypatch, capsys):
    """Item 11: N/total lines, a closing line, --summary CSV; same-named inputs told apart."""
    for folder, key in (("a", "bleed"), ("b", "clean")):
        (tmp_path / folder).mkdir()
        shutil.copy(scans[key], tmp_path / folder / "x.nii.gz")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    out, table = tmp_path / "out", tmp_path / "sheets" / "summary.csv"
    args = (tmp_path / "a" / "x.nii.gz", "-i", tmp_path / "b" / "x.nii.gz")
    code, stdout, err = run(
        monkeypatch, capsys, *args, "-i", tmp_path / "broken.nii.gz", "--model", det,
        "-o", out, "--no-pictures", "--summary", table,
    )  # fmt: skip
    assert code == 2
    broken_line, *failed = err.splitlines()
    assert broken_line.startswith(f"Error: {tmp_path}/broken.nii.gz: ")
    assert failed == ["1 of 3 scans failed:", f"  {tmp_path}/broken.nii.gz"]
    lines = stdout.splitlines()
    assert lines[0].startswith("1/3 x.nii.gz → a_x_*: ")
    assert lines[1].startswith("2/3 x.nii.gz → b_x_*: no hemorrhage")
    assert lines[2].startswith("3 scans: 1 with hemorrhage, 1 without, 1 failed in ")
    assert lines[3:] == [
        "inputs with the same name, outputs named apart:",
        f"  {tmp_path}/a/x.nii.gz → a_x_*",
        f"  {tmp_path}/b/x.nii.gz → b_x_*",
        f"summary: {table}",
    ]
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["scan"], r["output_name"], r["status"]) for r in rows] == [
        (f"{tmp_path}/a/x.nii.gz", "a_x", "ok"),
        (f"{tmp_path}/b/x.nii.gz", "b_x", "ok"),
        (f"{tmp_path}/broken.nii.gz", "broken", "failed"),
    ]
    bleed, clean, broken = rows
    assert bleed["hemorrhage"] == "yes" and float(bleed["volume_ml"]) > 0
    assert int(bleed["components"]) >= 1 and bleed["intracranial_ml"] != ""
    assert (clean["hemorrhage"], clean["volume_ml"], clean["components"]) == ("no", "0.00", "0")
    assert broken["error"].startswith(f"{tmp_path}/broken.nii.gz: ") and broken["volume_ml"] == ""
    assert "qc_flags" in bleed and "interval_low_ml" in bleed


@pytest.mark.slow
def test_every_output_name_is_known(det, scans, tmp_path, monkeypatch, capsys):
    """The names checked for folders in the way are the names written (pictures included)."""
    code, _, err = run(monkeypatch, capsys, scans["bleed"], "--model", det, "-o", tmp_path, "-q")
    assert code == 0, err
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f"bleed{s}" for s in OUTPUT_SUFFIXES if s != "_uncertainty.nii.gz")


def test_quiet_threads_zero_and_device(det, scans, tmp_path, monkeypatch, capsys):
    """Item 9: --threads 0 is all cores, --device cpu the provider, -q prints nothing."""
    code, stdout, err = run(
        monkeypatch, capsys, "-i", scans["clean"], "--model", det, "-o", tmp_path,
        "--no-pictures", "--threads", "0", "--device", "cpu", "-q",
    )  # fmt: skip
    assert (code, stdout, err) == (0, "", "")
    assert (tmp_path / "clean_report.json").is_file()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--device", "gpu"], "Error: --device must be one of auto, cpu, cuda, got 'gpu'"),
        (["--device", "cuda", "--provider", "cpu"],
         "Error: --device cuda and --provider cpu disagree: give one"),
        (["--threads", "-1"], "Error: Invalid value for '--threads': Input should be greater "
         "than or equal to 0 (see ugss-infer --help)"),
        (["--batch-size", "-1"], "Error: Invalid value for '--batch-size': Input should be "
         "greater than or equal to 1 (see ugss-infer --help)"),
    ],
)  # fmt: skip
def test_option_errors_are_one_line(args, line, scans, tmp_path, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, scans["clean"], "-o", tmp_path, *args)
    assert (code, err.splitlines()) == (2, [line])


def test_no_input_is_one_line(monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "-o", "x")
    assert (code, err.splitlines()) == (2, ["Error: no input: give INPUT... or -i PATH"])


@pytest.mark.integration
def test_verbose_shows_ugss_debug_lines_not_matplotlib(det, scans, tmp_path, monkeypatch, capsys):
    """Item 10: -v shows the project's own log lines; matplotlib's font manager stays quiet."""
    import subprocess

    args = [sys.executable, "-m", "ugss.runtime.infer_cli", scans["bleed"], "--model", det]
    proc = subprocess.run(
        [*map(str, args), "-o", str(tmp_path), "-v"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert " INFO ugss.runtime.engines: loaded " in proc.stderr
    assert "matplotlib" not in proc.stderr and "font" not in proc.stderr.lower()
    assert (tmp_path / "bleed_montage.png").is_file()  # matplotlib did run


def test_a_batch_that_all_succeeds_still_closes_with_its_summary(
    det, scans, tmp_path, monkeypatch, capsys
):
    """Item 11: the closing line also when nothing failed, and exit 0."""
    code, stdout, err = run(
        monkeypatch, capsys, scans["bleed"], "-i", scans["clean"], "--model", det,
        "-o", tmp_path / "out", "--no-pictures",
    )  # fmt: skip
    assert code == 0 and err == ""
    lines = stdout.splitlines()
    assert [line[:4] for line in lines[:2]] == ["1/2 ", "2/2 "]
    assert lines[2].startswith("2 scans: 1 with hemorrhage, 1 without, 0 failed in ")
    assert len(lines) == 3
