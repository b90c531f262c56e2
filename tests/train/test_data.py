"""Reading layouts and manifests, the patient split, the slice cache and augmentation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from train_toys import _affine, toy_scan, write_scan

from ugss.errors import ConfigError, InputError
from ugss.runtime.nifti import read_nifti
from ugss.runtime.preprocess import DEFAULT_WINDOWS, PlaneTransform, preprocess_slices
from ugss.train.augment import AugmentParams, apply_augment, draw_params
from ugss.train.cache import cache_scan
from ugss.train.config import DataConfig
from ugss.train.data import BatchSampler, prepare_data
from ugss.train.manifest import ScanRecord, read_manifest, read_physionet
from ugss.train.split import split_records


def test_physionet_layout_and_missing_mask(toy_cohort: Path):
    records = read_physionet(toy_cohort)
    assert [r.scan_id for r in records] == [f"{i:03d}" for i in range(6)]
    assert all(r.labeled and r.patient_id == r.scan_id for r in records)
    os.remove(toy_cohort / "masks" / "003.nii")
    with pytest.raises(InputError, match="no mask"):
        read_physionet(toy_cohort)


def test_empty_layout_is_an_input_error(tmp_path: Path):
    (tmp_path / "ct_scans").mkdir()
    with pytest.raises(InputError, match="no NIfTI"):
        read_physionet(tmp_path)


def test_manifest_csv_and_json_with_unlabeled(toy_cohort: Path):
    csv_path = toy_cohort / "m.csv"
    csv_path.write_text(
        "scan,mask,patient_id\n"
        "ct_scans/000.nii,masks/000.nii,P1\n"
        "ct_scans/001.nii,,P1\n"
        "ct_scans/002.nii,masks/002.nii,P2\n"
    )
    recs = read_manifest(csv_path)
    assert [r.labeled for r in recs] == [True, False, True]
    assert recs[1].patient_id == "P1"
    json_path = toy_cohort / "m.json"
    json_path.write_text(json.dumps({"scans": [{"ct_path": "ct_scans/004.nii"}]}))
    (rec,) = read_manifest(json_path)
    assert rec.scan_id == "004" and rec.mask_path is None
    bad = toy_cohort / "bad.csv"
    bad.write_text("scan,mask\nct_scans/000.nii,masks/nope.nii\n")
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(bad)


def _records(n: int, patients: int | None = None) -> list[ScanRecord]:
    return [
        ScanRecord(f"s{i}", f"/x/s{i}.nii", f"/x/m{i}.nii", f"p{i % (patients or n)}")
        for i in range(n)
    ]


def test_split_never_puts_a_patient_on_both_sides():
    recs = _records(30, patients=12)
    split = split_records(recs, test_fraction=0.25, labeled_fraction=0.5, seed=3)
    roles = {}
    for role in ("train_labeled", "train_unlabeled", "val", "test"):
        for sid in getattr(split, role):
            patient = next(r.patient_id for r in recs if r.scan_id == sid)
            roles.setdefault(patient, set()).add(role)
    assert all(len(v) == 1 for v in roles.values())
    assert sum(len(getattr(split, r)) for r in split.to_dict()) == 30
    assert split.val and split.test and split.train_labeled and split.train_unlabeled


def test_split_stratifies_validation_and_checks_sizes():
    recs = _records(10)
    positive = {f"s{i}": i < 7 for i in range(10)}
    for seed in range(5):
        split = split_records(recs, test_fraction=0.2, seed=seed, positive=positive)
        assert any(positive[s] for s in split.val)
        assert len(split.val) == 1 and len(split.test) == 2
    with pytest.raises(ConfigError):
        split_records(_records(2), test_fraction=0.5)
    with pytest.raises(ConfigError):
        split_records(_records(5), labeled_fraction=0.0)
    with pytest.raises(InputError):
        split_records([])


def test_cache_uses_runtime_preprocessing_and_aligns_masks(toy_cohort: Path, tmp_path: Path):
    rec = read_physionet(toy_cohort)[0]
    cached = cache_scan(rec, size=32, windows=DEFAULT_WINDOWS, cache_root=tmp_path / "c")
    vol = read_nifti(rec.scan_path)
    np.testing.assert_array_equal(cached.images, preprocess_slices(vol.hu, 32, DEFAULT_WINDOWS))
    mask = read_nifti(rec.mask_path).hu != 0
    tf = PlaneTransform(mask.shape[1], mask.shape[2], 32)
    expected = tf.forward(mask.astype(np.float32), fill=0) >= 0.5
    np.testing.assert_array_equal(cached.mask, expected)
    assert isinstance(cached.images, np.memmap)
    again = cache_scan(rec, size=32, windows=DEFAULT_WINDOWS, cache_root=tmp_path / "c")
    assert again.images.filename == cached.images.filename  # reused, not rebuilt
    os.utime(rec.scan_path, ns=(1, 1))  # a changed file gets a new entry
    fresh = cache_scan(rec, size=32, windows=DEFAULT_WINDOWS, cache_root=tmp_path / "c")
    assert fresh.images.filename != cached.images.filename


def test_mismatched_mask_geometry_is_an_input_error(tmp_path: Path):
    rng = np.random.default_rng(0)
    hu, mask = toy_scan(rng, (40, 40, 4))
    write_scan(tmp_path / "ct_scans" / "001.nii", hu, _affine())
    write_scan(tmp_path / "masks" / "001.nii", mask[:, :32], _affine(), np.uint8)
    (rec,) = read_physionet(tmp_path)
    with pytest.raises(InputError, match="differs"):
        cache_scan(rec, size=32, windows=DEFAULT_WINDOWS, cache_root=tmp_path / "c")
    write_scan(tmp_path / "masks" / "001.nii", mask, _affine((0.8, 0.8, 2.5)), np.uint8)
    with pytest.raises(InputError, match="geometry"):
        cache_scan(rec, size=32, windows=DEFAULT_WINDOWS, cache_root=tmp_path / "c")


def test_unrotated_augment_is_an_exact_crop_of_image_and_mask():
    x = torch.rand(1, 3, 32, 32)
    y = (torch.rand(1, 1, 32, 32) > 0.5).float()
    params = AugmentParams(
        centers=np.array([[12.0, 20.0]]),  # rows 4..19, cols 12..27 for a 16 crop
        angles=np.zeros(1),
        flip_lr=np.array([True]),
        flip_ud=np.array([False]),
    )
    xa, ya = apply_augment(x, y, params, 16)
    torch.testing.assert_close(xa, x[:, :, 4:20, 12:28].flip(-1))
    torch.testing.assert_close(ya, y[:, :, 4:20, 12:28].flip(-1))


def test_rotation_moves_image_and_mask_together():
    rng = np.random.default_rng(0)
    x = torch.zeros(4, 3, 48, 48)
    x[:, :, 20:28, 14:34] = 1.0
    y = x[:, :1].clone()
    params = draw_params(rng, 4, 48, 32, rotation_deg=40, flip_lr=0.5, flip_ud=0.5)
    xa, ya = apply_augment(x, y, params, 32)
    agree = ((xa[:, :1] >= 0.5).float() == ya).float().mean()
    assert agree > 0.99


def test_sampler_batches_are_reproducible_and_oversample_positives(toy_cohort: Path, tmp_path):
    cfg = DataConfig(
        data_dir=str(toy_cohort),
        input_size=32,
        crop_size=16,
        labeled_fraction=0.5,
        test_fraction=0.0,
        positive_fraction=1.0,
    )
    data = prepare_data(read_physionet(toy_cohort), cfg, cache_root=str(tmp_path / "c"))
    assert data.w_pos >= 1.0
    assert all(data.scans[s].mask is None for s in data.split.train_unlabeled)

    def draw(seed):
        s = BatchSampler(
            data, cfg, batch_size=4, use_unlabeled=True, rng=np.random.default_rng(seed)
        )
        return s.next()

    a, b = draw(7), draw(7)
    assert torch.equal(a.x_l, b.x_l) and torch.equal(a.x_u, b.x_u)
    assert a.x_l.shape == (2, 3, 16, 16) and a.x_u.shape == (2, 3, 16, 16)
    assert a.y_l.shape == (2, 1, 16, 16)
    assert torch.all(a.y_l.flatten(1).sum(1) > 0)  # positive slices, crops around hemorrhage
