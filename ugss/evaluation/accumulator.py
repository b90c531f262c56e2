"""Collects scans one at a time and summarizes them (Dice, Jaccard, PA, detection, volumes).

Only per-slice counts and slice maxima are kept per scan, so a cohort of any size fits in memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ugss.errors import ConfigError, InputError
from ugss.evaluation.metrics import (
    LOA_Z,
    NAN,
    DetectionMetrics,
    JsonRecord,
    VolumeAgreement,
    check_same_shape,
    detection_metrics,
    dice_from_counts,
    jaccard_from_counts,
    jsonable,
    overlap_from_slice_counts,
    slice_counts,
    slice_scores,
    volume_agreement,
)

VolumeScans = Literal["all", "truth_positive"]


@dataclass(frozen=True)
class ScanResult:
    """One scan's row. ``dice``/``jaccard`` are ``nan`` when truth and prediction are both empty."""

    scan_id: str
    n_slices: int
    threshold: float
    voxel_volume_ml: float
    dice: float
    jaccard: float
    both_empty: bool
    pixel_accuracy: float
    true_volume_ml: float
    pred_volume_ml: float
    truth_positive: bool
    pred_positive: bool
    truth_positive_slices: int
    pred_positive_slices: int

    @property
    def volume_diff_ml(self) -> float:
        """Δ = V̂ − V (eq. 19)."""
        return self.pred_volume_ml - self.true_volume_ml

    def to_dict(self) -> dict[str, Any]:
        return jsonable({**asdict(self), "volume_diff_ml": self.volume_diff_ml})


@dataclass(frozen=True)
class OverlapSummary(JsonRecord):
    """Dice/Jaccard over the cohort, per scan, pooled and per slice (rules in the definitions)."""

    dice_mean: float
    dice_std: float
    jaccard_mean: float
    jaccard_std: float
    n_scans_scored: int
    n_scans_both_empty: int
    dice_mean_empty_as_one: float
    jaccard_mean_empty_as_one: float
    dice_pooled: float
    jaccard_pooled: float
    slice_dice_mean: float
    slice_dice_std: float
    slice_jaccard_mean: float
    slice_jaccard_std: float
    n_slices_scored: int


@dataclass(frozen=True)
class EvaluationSummary:
    """Everything ``ugss-eval`` reports, with the definitions of what was computed."""

    threshold: float
    min_slice_voxels: int
    volume_scans: VolumeScans
    n_scans: int
    n_slices: int
    scans: tuple[ScanResult, ...]
    overlap: OverlapSummary
    pixel_accuracy: float
    pixel_accuracy_mean: float
    slice_detection: DetectionMetrics
    scan_detection: DetectionMetrics
    volume: VolumeAgreement
    definitions: Mapping[str, str] = field(default_factory=dict)

    def volume_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(true_ml, pred_ml)`` of the scans that entered :attr:`volume`."""
        rows = _volume_rows(self.scans, self.volume_scans)
        return (
            np.array([s.true_volume_ml for s in rows], dtype=np.float64),
            np.array([s.pred_volume_ml for s in rows], dtype=np.float64),
        )

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "threshold": self.threshold,
                "min_slice_voxels": self.min_slice_voxels,
                "volume_scans": self.volume_scans,
                "n_scans": self.n_scans,
                "n_slices": self.n_slices,
                "overlap": self.overlap.to_dict(),
                "pixel_accuracy": self.pixel_accuracy,
                "pixel_accuracy_mean": self.pixel_accuracy_mean,
                "slice_detection": self.slice_detection.to_dict(),
                "scan_detection": self.scan_detection.to_dict(),
                "volume": self.volume.to_dict(),
                "definitions": dict(self.definitions),
                "scans": [s.to_dict() for s in self.scans],
            }
        )

    def write_json(self, path: str | Path) -> Path:
        """Strict JSON (undefined values as ``null``); parent folders are created."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return path


def definitions(
    threshold: float, min_slice_voxels: int, volume_scans: VolumeScans
) -> dict[str, str]:
    """The rules behind every number, written into each summary."""
    k = min_slice_voxels
    vol = "all scans" if volume_scans == "all" else "scans whose truth is positive"
    return {
        "prediction": f"a voxel is predicted positive when its probability >= {threshold:g}",
        "dice": "eq. 16, 2|y∩ŷ|/(|y|+|ŷ|), per scan over its 3D voxels; dice_mean/std: mean and "
        "sample sd (ddof 1) over scans where truth or prediction is non-empty; scans empty in "
        "both are excluded and counted in n_scans_both_empty; dice_mean_empty_as_one counts "
        "them as 1 (the paper's ε would count them as 0)",
        "jaccard": "eq. 17, |y∩ŷ|/|y∪ŷ|, per scan, same empty-vs-empty rule as dice",
        "pooled": "dice_pooled/jaccard_pooled: one value over all voxels of all scans",
        "per_slice": "slice_dice/slice_jaccard: per 2D slice, mean and sd over the slices "
        "where truth or prediction is positive (slices empty in both are left out)",
        "pixel_accuracy": "eq. 18, correct voxels / all voxels, pooled over all scans; "
        "pixel_accuracy_mean: mean of per-scan values",
        "slice_detection": f"a slice is positive when it holds >= {k} positive voxels (truth "
        "mask or thresholded prediction); ROC score = maximum probability in the slice; pooled "
        "over all slices of all scans",
        "scan_detection": "a scan is positive when any of its slices is positive; ROC score = "
        "maximum probability in the scan",
        "rates": "sensitivity TP/(TP+FN), specificity TN/(TN+FP), accuracy (TP+TN)/N, Cohen's "
        "kappa (p_o-p_e)/(1-p_e); null when undefined",
        "auc": "ROC AUC by the Mann-Whitney rank formula, ties counted 1/2",
        "volume": "eq. 12, positive voxels x voxel volume in mL at the scan's resolution; "
        f"agreement over {vol}",
        "r2": "1 - sum((V̂-V)^2)/sum((V-mean V)^2): V̂ against the identity line V̂ = V",
        "pearson_r2": "squared Pearson correlation of V̂ and V = R² of the least-squares line "
        "(the paper's regression goodness of fit); slope/intercept: V̂ ≈ slope·V + intercept",
        "mean_abs_diff_ml": "mean |V̂ - V| in mL",
        "bland_altman": f"eq. 19, Δ = V̂ - V; bias = mean Δ; limits = bias ± {LOA_Z} x sample sd "
        "(ddof 1) of Δ",
    }


@dataclass(frozen=True)
class _ScanCounts:
    scan_id: str
    threshold: float
    voxel_volume_ml: float
    voxels_per_slice: int
    inter: np.ndarray
    n_truth: np.ndarray
    n_pred: np.ndarray
    slice_max: np.ndarray


def _mean_sd(values: list[float] | np.ndarray) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean()) if v.size else NAN
    return mean, float(v.std(ddof=1)) if v.size >= 2 else NAN


class EvaluationAccumulator:
    """Add scans with :meth:`add`, then call :meth:`summary` or :meth:`write_json`."""

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        min_slice_voxels: int = 1,
        volume_scans: VolumeScans = "all",
    ) -> None:
        _check_threshold(threshold)
        if int(min_slice_voxels) != min_slice_voxels or min_slice_voxels < 1:
            raise ConfigError(f"min_slice_voxels must be an integer >= 1, got {min_slice_voxels}")
        if volume_scans not in ("all", "truth_positive"):
            raise ConfigError(
                f"volume_scans must be 'all' or 'truth_positive', got {volume_scans!r}"
            )
        self.threshold = float(threshold)
        self.min_slice_voxels = int(min_slice_voxels)
        self.volume_scans: VolumeScans = volume_scans
        self._scans: list[_ScanCounts] = []
        self._ids: set[str] = set()

    def __len__(self) -> int:
        return len(self._scans)

    def add(
        self,
        scan_id: str,
        truth_mask: np.ndarray,
        prob: np.ndarray,
        voxel_volume_ml: float,
        threshold: float | None = None,
        *,
        pred_mask: np.ndarray | None = None,
    ) -> None:
        """Record one scan: ``truth_mask`` and ``prob`` are ``(z, y, x)`` on the same grid.

        ``threshold`` overrides the accumulator's for this scan; ``pred_mask`` (optional, e.g.
        after post-processing) replaces ``prob >= threshold`` while ``prob`` still gives the ROC
        scores.
        """
        thr = self.threshold if threshold is None else float(threshold)
        _check_threshold(thr)
        scan_id = str(scan_id)
        if scan_id in self._ids:
            raise InputError(f"scan {scan_id!r} was added twice")
        truth = np.asarray(truth_mask)
        p = np.asarray(prob)
        if truth.ndim != 3:
            raise InputError(
                f"scan {scan_id!r}: truth mask must be (z, y, x), got shape {truth.shape}"
            )
        check_same_shape(truth, p, f"scan {scan_id!r}: truth mask and probability map")
        if truth.size == 0:
            raise InputError(f"scan {scan_id!r}: empty volume {truth.shape}")
        if not np.issubdtype(p.dtype, np.floating) or not np.all(np.isfinite(p)):
            raise InputError(f"scan {scan_id!r}: probability map must be finite floats")
        if p.min() < 0.0 or p.max() > 1.0:
            raise InputError(
                f"scan {scan_id!r}: probabilities must lie in [0, 1], got "
                f"{p.min():g}..{p.max():g}; pass sigmoid outputs, not logits"
            )
        if not (math.isfinite(voxel_volume_ml) and voxel_volume_ml > 0):
            raise InputError(
                f"scan {scan_id!r}: voxel volume must be > 0 mL, got {voxel_volume_ml}"
            )
        if pred_mask is None:
            pred = p >= thr
        else:
            pred = np.asarray(pred_mask)
            check_same_shape(truth, pred, f"scan {scan_id!r}: truth mask and predicted mask")
        inter, nt, npred = slice_counts(truth, pred)
        self._scans.append(
            _ScanCounts(
                scan_id=scan_id,
                threshold=thr,
                voxel_volume_ml=float(voxel_volume_ml),
                voxels_per_slice=int(truth[0].size),
                inter=inter,
                n_truth=nt,
                n_pred=npred,
                slice_max=slice_scores(p),
            )
        )
        self._ids.add(scan_id)

    def _row(self, s: _ScanCounts) -> ScanResult:
        k = self.min_slice_voxels
        i, t, p = int(s.inter.sum()), int(s.n_truth.sum()), int(s.n_pred.sum())
        both_empty = t + p == 0
        n_vox = s.voxels_per_slice * s.inter.size
        return ScanResult(
            scan_id=s.scan_id,
            n_slices=int(s.inter.size),
            threshold=s.threshold,
            voxel_volume_ml=s.voxel_volume_ml,
            dice=dice_from_counts(i, t, p),
            jaccard=jaccard_from_counts(i, t, p),
            both_empty=both_empty,
            pixel_accuracy=(n_vox - (t + p - 2 * i)) / n_vox,
            true_volume_ml=t * s.voxel_volume_ml,
            pred_volume_ml=p * s.voxel_volume_ml,
            truth_positive=bool(np.any(s.n_truth >= k)),
            pred_positive=bool(np.any(s.n_pred >= k)),
            truth_positive_slices=int(np.count_nonzero(s.n_truth >= k)),
            pred_positive_slices=int(np.count_nonzero(s.n_pred >= k)),
        )

    def summary(self) -> EvaluationSummary:
        """Cohort metrics; raises ``InputError`` when no scan was added."""
        if not self._scans:
            raise InputError("no scans to evaluate")
        rows = tuple(self._row(s) for s in self._scans)
        return EvaluationSummary(
            threshold=self.threshold,
            min_slice_voxels=self.min_slice_voxels,
            volume_scans=self.volume_scans,
            n_scans=len(rows),
            n_slices=sum(r.n_slices for r in rows),
            scans=rows,
            overlap=self._overlap(rows),
            pixel_accuracy=self._pooled_pixel_accuracy(),
            pixel_accuracy_mean=float(np.mean([r.pixel_accuracy for r in rows])),
            slice_detection=self._slice_detection(),
            scan_detection=detection_metrics(
                np.array([r.truth_positive for r in rows]),
                np.array([r.pred_positive for r in rows]),
                np.array([s.slice_max.max() for s in self._scans]),
            ),
            volume=self._volume(rows),
            definitions=definitions(self.threshold, self.min_slice_voxels, self.volume_scans),
        )

    def write_json(self, path: str | Path) -> Path:
        return self.summary().write_json(path)

    def _overlap(self, rows: tuple[ScanResult, ...]) -> OverlapSummary:
        scored = [r for r in rows if not r.both_empty]
        n_empty = len(rows) - len(scored)
        dice_m, dice_sd = _mean_sd([r.dice for r in scored])
        jac_m, jac_sd = _mean_sd([r.jaccard for r in scored])
        i = sum(int(s.inter.sum()) for s in self._scans)
        t = sum(int(s.n_truth.sum()) for s in self._scans)
        p = sum(int(s.n_pred.sum()) for s in self._scans)
        sd_list, sj_list = [], []
        for s in self._scans:
            _, sd, sj = overlap_from_slice_counts(s.inter, s.n_truth, s.n_pred)
            sd_list.append(sd)
            sj_list.append(sj)
        slice_dice, slice_jac = np.concatenate(sd_list), np.concatenate(sj_list)
        sdm, sds = _mean_sd(slice_dice)
        sjm, sjs = _mean_sd(slice_jac)
        return OverlapSummary(
            dice_mean=dice_m,
            dice_std=dice_sd,
            jaccard_mean=jac_m,
            jaccard_std=jac_sd,
            n_scans_scored=len(scored),
            n_scans_both_empty=n_empty,
            dice_mean_empty_as_one=(sum(r.dice for r in scored) + n_empty) / len(rows),
            jaccard_mean_empty_as_one=(sum(r.jaccard for r in scored) + n_empty) / len(rows),
            dice_pooled=dice_from_counts(i, t, p),
            jaccard_pooled=jaccard_from_counts(i, t, p),
            slice_dice_mean=sdm,
            slice_dice_std=sds,
            slice_jaccard_mean=sjm,
            slice_jaccard_std=sjs,
            n_slices_scored=int(slice_dice.size),
        )

    def _pooled_pixel_accuracy(self) -> float:
        wrong = sum(int((s.n_truth + s.n_pred - 2 * s.inter).sum()) for s in self._scans)
        total = sum(s.voxels_per_slice * s.inter.size for s in self._scans)
        return (total - wrong) / total

    def _slice_detection(self) -> DetectionMetrics:
        k = self.min_slice_voxels
        return detection_metrics(
            np.concatenate([s.n_truth >= k for s in self._scans]),
            np.concatenate([s.n_pred >= k for s in self._scans]),
            np.concatenate([s.slice_max for s in self._scans]),
        )

    def _volume(self, rows: tuple[ScanResult, ...]) -> VolumeAgreement:
        used = _volume_rows(rows, self.volume_scans)
        return volume_agreement(
            np.array([r.true_volume_ml for r in used], dtype=np.float64),
            np.array([r.pred_volume_ml for r in used], dtype=np.float64),
        )


def _volume_rows(rows: tuple[ScanResult, ...], which: VolumeScans) -> list[ScanResult]:
    return [r for r in rows if which == "all" or r.truth_positive]


def _check_threshold(threshold: float) -> None:
    if not (0.0 < threshold <= 1.0):
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
