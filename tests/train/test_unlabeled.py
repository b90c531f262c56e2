"""``ugss-train --unlabeled DIR``: NIfTI files and DICOM series as unlabeled training scans;
bad input is one line and exit code 2."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from train_toys import _affine, toy_scan, write_scan

from ugss.runtime.dicom_write import write_dicom_series
from ugss.runtime.nifti import read_nifti
from ugss.train.checkpoint import read_checkpoint
from ugss.train.cli import main
from ugss.train.config import DataConfig, MethodConfig, OptimConfig, RunConfig, TrainConfig
from ugss.train.loop import train
from ugss.train.manifest import read_physionet
from ugss.train.unlabeled import UNLABELED_PREFIX, fingerprint, unlabeled_records


@pytest.fixture
def unlabeled_dir(tmp_path: Path) -> Path:
    """Two unlabeled NIfTI scans and one DICOM series (in a subfolder), plus a stray file."""
    root = tmp_path / "unlabeled"
    rng = np.random.default_rng(7)
    for k in range(2):
        hu, _ = toy_scan(rng, lesion=k == 0)
        write_scan(root / f"u{k}.nii.gz", hu, _affine())
    hu, _ = toy_scan(rng)
    write_scan(tmp_path / "tmp.nii", hu, _affine())
    write_dicom_series(read_nifti(tmp_path / "tmp.nii"), root / "series" / "s1")
    (root / "notes.txt").write_text("not a scan\n")
    return root


def test_finds_nifti_and_dicom_scans_as_unlabeled_records(toy_cohort, unlabeled_dir):
    recs = unlabeled_records([str(unlabeled_dir)], read_physionet(toy_cohort))
    names = sorted(Path(r.scan_path).name for r in recs)
    assert names == ["s1", "u0.nii.gz", "u1.nii.gz"]
    assert all(r.mask_path is None and r.scan_id.startswith(UNLABELED_PREFIX) for r in recs)
    assert len({r.patient_id for r in recs}) == 3


@pytest.mark.slow
def test_a_run_trains_on_the_unlabeled_folder(toy_cohort, unlabeled_dir, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(
        data=DataConfig(
            data_dir=str(toy_cohort),
            unlabeled_dirs=(str(unlabeled_dir),),
            input_size=32,
            crop_size=32,
            test_fraction=0.0,
            cache_dir=str(tmp_path / "cache"),
        ),
        method=MethodConfig(mc_samples=2),
        optim=OptimConfig(epochs=1, steps_per_epoch=1, batch_size=4),
        run=RunConfig(out=str(out), threads=1),
    )
    train(cfg)
    doc = read_checkpoint(out / "last.pt")
    split = doc["data"]["split"]
    ours = [s for s in split["train_unlabeled"] if s.startswith(UNLABELED_PREFIX)]
    assert len(ours) == 3 and split["train_labeled"]  # labeled fraction 1: only ours unlabeled
    assert not any(s.startswith(UNLABELED_PREFIX) for s in split["val"] + split["test"])
    assert doc["data"]["batch"]["unlabeled"] == 2
    assert TrainConfig.from_dict(doc["config"]) == cfg  # the folders are in the checkpoint


def test_fingerprint_sees_copies_under_other_names(unlabeled_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(unlabeled_dir / "series" / "s1", copy)
    for i, f in enumerate(sorted(copy.iterdir())):
        f.rename(copy / f"x{100 - i}.dcm")
    assert fingerprint(copy) == fingerprint(unlabeled_dir / "series" / "s1")
    assert fingerprint(unlabeled_dir / "u0.nii.gz") != fingerprint(unlabeled_dir / "u1.nii.gz")


def _bad(tmp_path: Path, toy_cohort: Path, kind: str) -> Path:
    d = tmp_path / kind
    d.mkdir()
    if kind == "text_only":
        (d / "a.txt").write_text("x")
        (d / "b.pdf").write_bytes(b"%PDF")
    elif kind == "duplicate":
        shutil.copy(toy_cohort / "ct_scans" / "001.nii", d / "renamed.nii")
    elif kind == "mask":
        shutil.copy(toy_cohort / "masks" / "002.nii", d / "scan.nii")
    return d


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such folder"),
        ("text_only", "no NIfTI scan (.nii, .nii.gz) or DICOM series in it (2 other files)"),
        ("duplicate", "1 scan(s) already in the training data: "),
        ("mask", "intensities are not CT Hounsfield units"),
    ],
)
def test_bad_unlabeled_input_is_one_line_and_exit_2(
    toy_cohort, tmp_path, monkeypatch, capsys, kind, message
):
    d = tmp_path / kind if kind == "missing" else _bad(tmp_path, toy_cohort, kind)
    args = ["--data", str(toy_cohort), "--unlabeled", str(d), "--out", str(tmp_path / "run")]
    args += ["--cache-dir", str(tmp_path / "c"), "--input-size", "32", "--crop-size", "32"]
    monkeypatch.setattr(sys, "argv", ["ugss-train", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("Error:") and message in err[0], err
    if kind == "duplicate":  # both are named
        assert "renamed.nii = labeled " in err[0] and "001.nii" in err[0]
    if kind == "mask":
        assert "scan.nii" in err[0]
