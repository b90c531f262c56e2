"""Patient-level split into test / validation / labeled-train / unlabeled-train.

Never by slice: every split unit is a patient (all of its scans go together). Test and
validation patients need masks (they are scored); patients without masks are always unlabeled
training data. Selections are stratified by "has hemorrhage" so a small validation set still
contains positive scans.

Order: test = ``test_fraction`` of the labeled patients (at least one when the fraction is
> 0) — or, for k-fold cross-validation (``folds`` = k ≥ 2), fold ``fold`` of a stratified
partition of the labeled patients into k folds (one seed gives one partition, so the k runs
test every labeled patient exactly once); validation = ``val_fraction`` of the remaining
labeled patients (at least one); ``labeled_fraction`` of the rest keep their masks (at least
one), the others join the unlabeled patients.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ugss.errors import ConfigError, InputError
from ugss.train.manifest import ScanRecord


@dataclass(frozen=True)
class DataSplit:
    """Scan ids per role."""

    train_labeled: tuple[str, ...]
    train_unlabeled: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "train_labeled": list(self.train_labeled),
            "train_unlabeled": list(self.train_unlabeled),
            "val": list(self.val),
            "test": list(self.test),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[str]]) -> DataSplit:
        return cls(*(tuple(d[k]) for k in ("train_labeled", "train_unlabeled", "val", "test")))

    def role_of(self, scan_id: str) -> str | None:
        for role in ("train_labeled", "train_unlabeled", "val", "test"):
            if scan_id in getattr(self, role):
                return role
        return None


def _stratified_pick(
    groups: list[str], positive: Mapping[str, bool | None], k: int, rng: np.random.Generator
) -> list[str]:
    """Pick ``k`` groups spread proportionally over the strata (positive / negative / unknown)."""
    strata: dict[bool | None, list[str]] = defaultdict(list)
    for g in groups:
        strata[positive.get(g)].append(g)
    keyed = []
    for members in strata.values():
        order = rng.permutation(len(members))
        n = len(members)
        for rank, idx in enumerate(order):
            keyed.append(((rank + 0.5) / n, rng.random(), members[idx]))
    keyed.sort()
    return [g for _, _, g in keyed[:k]]


def stratified_fold(
    groups: list[str], positive: Mapping[str, bool | None], folds: int, fold: int, seed: int
) -> list[str]:
    """Fold ``fold`` of ``folds``: each stratum (positive / negative / unknown), shuffled by
    ``seed``, is dealt round-robin over the folds, continuing where the last stratum stopped, so
    the folds partition ``groups``, hold each stratum's share to within one and differ in size
    by at most one."""
    if folds < 2 or not 0 <= fold < folds:
        raise ConfigError(f"fold must be in [0, {folds}) with folds >= 2, got {fold} of {folds}")
    if len(groups) < folds:
        raise ConfigError(f"{len(groups)} labeled patient(s) cannot make {folds} folds")
    rng = np.random.default_rng([seed, folds])
    strata: dict[bool | None, list[str]] = defaultdict(list)
    for g in sorted(groups):
        strata[positive.get(g)].append(g)
    mine, dealt = [], 0
    for key in sorted(strata, key=lambda k: {True: 0, False: 1, None: 2}[k]):
        members = strata[key]
        for j in rng.permutation(len(members)):
            if dealt % folds == fold:
                mine.append(members[j])
            dealt += 1
    return mine


def split_records(
    records: Sequence[ScanRecord],
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    labeled_fraction: float = 1.0,
    seed: int = 0,
    positive: Mapping[str, bool] | None = None,
    folds: int = 0,
    fold: int = 0,
) -> DataSplit:
    """Split by patient; ``positive`` maps scan id → has hemorrhage (for stratification);
    ``folds`` ≥ 2: the test patients are fold ``fold`` (``test_fraction`` is then unused)."""
    if not records:
        raise InputError("the dataset is empty")
    if not 0.0 < labeled_fraction <= 1.0:
        raise ConfigError(f"labeled fraction must be in (0, 1], got {labeled_fraction}")
    positive = dict(positive or {})
    by_patient: dict[str, list[ScanRecord]] = defaultdict(list)
    for r in records:
        by_patient[r.patient_id].append(r)
    labeled = sorted(p for p, rs in by_patient.items() if all(r.labeled for r in rs))
    unlabeled = sorted(set(by_patient) - set(labeled))
    group_pos: dict[str, bool | None] = {}
    for p, rs in by_patient.items():
        flags = [positive.get(r.scan_id, r.has_hemorrhage) for r in rs]
        group_pos[p] = True if any(flags) else (None if None in flags else False)

    rng = np.random.default_rng(seed)
    if folds:
        test = stratified_fold(labeled, group_pos, folds, fold, seed)
        n_test = len(test)
    else:
        n_test = 0 if test_fraction <= 0 else max(1, round(test_fraction * len(labeled)))
    if len(labeled) - n_test < 2:
        raise ConfigError(
            f"{len(labeled)} labeled patient(s): need at least {n_test + 2} "
            f"({n_test} test, 1 validation, 1 training); lower the test fraction or add scans"
        )
    if not folds:
        test = _stratified_pick(labeled, group_pos, n_test, rng)
    rest = [p for p in labeled if p not in set(test)]
    n_val = min(max(1, round(val_fraction * len(rest))), len(rest) - 1)
    val = _stratified_pick(rest, group_pos, n_val, rng)
    rest = [p for p in rest if p not in set(val)]
    n_keep = max(1, round(labeled_fraction * len(rest)))
    keep = set(_stratified_pick(rest, group_pos, n_keep, rng))
    hidden = [p for p in rest if p not in keep]

    def scans(patients: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted(r.scan_id for p in patients for r in by_patient[p]))

    return DataSplit(
        train_labeled=scans(sorted(keep)),
        train_unlabeled=scans(sorted(hidden) + unlabeled),
        val=scans(val),
        test=scans(test),
    )
