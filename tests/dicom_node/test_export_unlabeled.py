"""``ugss-node export-unlabeled``: the node's segmented CT series, de-identified by dicognito,
become a folder ``ugss-train --unlabeled`` reads; nothing else is exported."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from ugss.dicom_node.cli import app
from ugss.dicom_node.db import NodeDB
from ugss.dicom_node.export_unlabeled import DONE, export_unlabeled
from ugss.dicom_node.spool import SERIES_DIR
from ugss.runtime.dicom_write import write_dicom_series
from ugss.runtime.io import read_volume
from ugss.runtime.volume import Volume

NAME, PID = "Doe^Jane", "MRN-0042"


def _ct(seed: int) -> Volume:
    rng = np.random.default_rng(seed)
    hu = np.full((4, 32, 32), -1000.0, np.float32)
    hu[:, 6:26, 6:26] = 35.0 + rng.normal(0, 3, (4, 20, 20))
    return Volume(hu, np.diag([0.8, 0.8, 5.0, 1.0]))


def _spool_series(spool: Path, db: Path, state: str, seed: int, **tags) -> str:
    tmp = spool / "tmp" / str(seed)
    files = write_dicom_series(_ct(seed), tmp, patient_id=PID, patient_name=NAME)
    uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    folder = spool / SERIES_DIR / uid
    folder.mkdir(parents=True)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.add_new(0x00090010, "LO", "HOSPITAL PRIVATE")  # a private creator …
        ds.add_new(0x00091001, "LO", PID)  # … and a private copy of the MRN
        for k, v in tags.items():
            setattr(ds, k, v)
        ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    NodeDB(db).close()  # the schema
    with sqlite3.connect(db) as conn:
        now = time.time()
        conn.execute(
            "INSERT INTO series (series_uid, study_uid, state, first_at, last_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (uid, "1.2.3", state, now, now),
        )
    return uid


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    root = tmp_path / "spool"
    db = root / "node.sqlite"
    _spool_series(root, db, DONE, 1, BurnedInAnnotation="NO")
    _spool_series(root, db, DONE, 2, BurnedInAnnotation="YES")
    _spool_series(root, db, "failed", 3)
    return root


def test_export_deidentifies_the_segmented_series_only(spool: Path, tmp_path: Path):
    out = tmp_path / "unlabeled"
    res = export_unlabeled(spool, spool / "node.sqlite", out, seed="s3cret")
    assert len(res.written) == 1  # the failed series is not considered, the burned-in one skipped
    assert [r for _, r in res.skipped] == ["BurnedInAnnotation YES: identity may be in the pixels"]
    (series,) = [Path(p) for p in res.written]
    original = {p.name for p in (spool / SERIES_DIR).iterdir()}
    src_date = pydicom.dcmread(next((spool / "tmp" / "1").iterdir())).StudyDate
    for f in sorted(series.iterdir()):
        ds = pydicom.dcmread(f)
        assert str(ds.PatientName) != NAME and ds.PatientID != PID
        assert ds.PatientIdentityRemoved == "YES" and "DICOGNITO" in str(ds.DeidentificationMethod)
        assert not any(el.tag.is_private for el in ds)
        assert ds.SeriesInstanceUID not in original and ds.StudyDate != src_date
    source = read_volume(spool / "tmp" / "1")
    vol = read_volume(series)  # the pixels and geometry are untouched: the same CT
    np.testing.assert_array_equal(vol.hu, source.hu)
    np.testing.assert_allclose(vol.affine, source.affine)

    again = export_unlabeled(spool, spool / "node.sqlite", out, seed="s3cret")
    assert again.written == () and ("already exported (same seed)") in dict(again.skipped).values()


def test_cli_export_then_train_reads_it(spool: Path, tmp_path: Path):
    from ugss.train.unlabeled import unlabeled_records

    seed = tmp_path / "seed.txt"
    seed.write_text("another secret\n")
    out = tmp_path / "unl"
    args = ["export-unlabeled", str(out), "--spool", str(spool), "--seed-file", str(seed)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == f"1 series written to {out}, 1 skipped"
    (rec,) = unlabeled_records([str(out)], [])
    assert Path(rec.scan_path).parent == out
    described = CliRunner().invoke(app, ["export-unlabeled", "--describe"])
    assert "Remove private tags" in described.output and "PatientID" in described.output


def test_without_dicognito_one_line_names_the_extra(spool: Path, tmp_path: Path, monkeypatch):
    import sys

    from ugss.errors import InputError

    monkeypatch.setitem(sys.modules, "dicognito.anonymizer", None)  # as if not installed
    with pytest.raises(InputError, match=r"pip install 'ugss\[deid\]'") as err:
        export_unlabeled(spool, spool / "node.sqlite", tmp_path / "o")
    assert "\n" not in str(err.value)


@pytest.mark.integration
def test_the_export_imports_no_torch_or_onnx():
    import subprocess
    import sys

    code = (
        "import sys, ugss.dicom_node.cli, ugss.dicom_node.export_unlabeled;"
        "print(sorted(m for m in ('torch', 'onnx') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
