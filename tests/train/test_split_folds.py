"""k-fold cross-validation by patient (issue 17 fix 5): the folds partition the patients."""

from __future__ import annotations

import pytest

from ugss.errors import ConfigError
from ugss.train.config import DataConfig
from ugss.train.manifest import ScanRecord
from ugss.train.split import split_records


def _records(n: int, patients: int) -> list[ScanRecord]:
    return [
        ScanRecord(f"s{i}", f"/x/s{i}.nii", f"/x/m{i}.nii", f"p{i % patients}", i % 3 == 0)
        for i in range(n)
    ]


def _patients(ids) -> set[str]:
    return {f"p{int(s[1:]) % 12}" for s in ids}


def test_five_folds_test_every_patient_once_and_never_train_on_it():
    records = _records(30, 12)  # 12 patients, 2–3 scans each
    tests = []
    for fold in range(5):
        split = split_records(records, folds=5, fold=fold, val_fraction=0.2, seed=7)
        test = _patients(split.test)
        train = _patients(split.train_labeled + split.val + split.train_unlabeled)
        assert test and not test & train  # by patient, never by scan
        tests.append(test)
    assert set().union(*tests) == {f"p{i}" for i in range(12)}
    assert sum(len(t) for t in tests) == 12  # a partition
    assert sorted(len(t) for t in tests) == [2, 2, 2, 3, 3]


def test_folds_are_stratified_by_hemorrhage():
    records = [ScanRecord(f"s{i}", "a", "m", f"p{i}", i < 10) for i in range(20)]
    for fold in range(5):
        split = split_records(records, folds=5, fold=fold, seed=3)
        assert sum(int(s[1:]) < 10 for s in split.test) == 2  # 2 of 4 positive in each fold


def test_without_folds_the_split_is_what_it_was():
    records = _records(30, 12)
    assert split_records(records, seed=5) == split_records(records, seed=5, folds=0, fold=3)


@pytest.mark.parametrize(("folds", "fold"), [(1, 0), (5, 5), (5, -1)])
def test_a_fold_outside_the_folds_is_one_clear_error(folds, fold):
    with pytest.raises(ConfigError, match="fold must be in"):
        DataConfig(folds=folds, fold=fold)


def test_more_folds_than_patients_is_one_clear_error():
    with pytest.raises(ConfigError, match="3 labeled patient"):
        split_records(_records(6, 3), folds=5, fold=0)
