"""Metrics of the paper's evaluation (eq. 16–19) as pure numpy/scipy functions.

Every function states its rule for the undefined cases (empty masks, one class only,
zero variance): it returns ``nan`` there, never a silent 0 or 1, unless a parameter asks
for a value. Masks are ``(z, y, x)`` arrays; anything non-zero counts as positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from ugss.errors import InputError

NAN = float("nan")
LOA_Z = 1.96  # eq. 19: limits of agreement = bias ± 1.96 sd (95 %, two-sided)


def check_same_shape(a: np.ndarray, b: np.ndarray, what: str = "truth and prediction") -> None:
    """Raise ``InputError`` when two arrays that must be voxel-aligned are not."""
    if np.shape(a) != np.shape(b):
        raise InputError(f"{what} must have the same shape, got {np.shape(a)} and {np.shape(b)}")


def _bool(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype == bool else a != 0


def jsonable(value: Any) -> Any:
    """Turn a (nested) value into JSON-safe Python: non-finite floats become ``None``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


class JsonRecord:
    """Mixin for the frozen result dataclasses: ``to_dict`` is their fields, JSON-safe."""

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))  # type: ignore[call-overload]


# --- overlap (eq. 16–17) and pixel accuracy (eq. 18) ------------------------------------------


def dice_from_counts(inter: float, n_truth: float, n_pred: float, *, empty: float = NAN) -> float:
    """Dice from voxel counts ``|y ∩ ŷ|``, ``|y|``, ``|ŷ|``; both empty → ``empty`` (``nan``).

    The one Dice rule of the package: :func:`dice`, the evaluation accumulator and the
    training validation all call it.
    """
    total = n_truth + n_pred
    return empty if total == 0 else 2.0 * inter / total


def jaccard_from_counts(
    inter: float, n_truth: float, n_pred: float, *, empty: float = NAN
) -> float:
    """Jaccard from voxel counts; both empty → ``empty`` (default ``nan``)."""
    union = n_truth + n_pred - inter
    return empty if union == 0 else inter / union


def dice(truth: np.ndarray, pred: np.ndarray, *, empty: float = NAN) -> float:
    """Dice, eq. 16: 2|y ∩ ŷ| / (|y| + |ŷ|).

    Both masks empty → ``empty`` (default ``nan``: undefined). The paper's ε makes that case 0.
    """
    check_same_shape(truth, pred)
    t, p = _bool(truth), _bool(pred)
    return dice_from_counts(
        float(np.count_nonzero(t & p)), np.count_nonzero(t), np.count_nonzero(p), empty=empty
    )


def jaccard(truth: np.ndarray, pred: np.ndarray, *, empty: float = NAN) -> float:
    """Jaccard, eq. 17: |y ∩ ŷ| / |y ∪ ŷ|; both masks empty → ``empty`` (default ``nan``)."""
    check_same_shape(truth, pred)
    t, p = _bool(truth), _bool(pred)
    return jaccard_from_counts(
        float(np.count_nonzero(t & p)), np.count_nonzero(t), np.count_nonzero(p), empty=empty
    )


def slice_counts(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-slice (axis 0) voxel counts ``(intersection, truth, pred)`` as int64 arrays."""
    check_same_shape(truth, pred)
    t, p = _bool(truth), _bool(pred)
    if t.ndim < 2:
        raise InputError(f"masks must be (z, y, x) or (z, y), got shape {t.shape}")
    axes = tuple(range(1, t.ndim))
    return tuple(np.count_nonzero(a, axis=axes).astype(np.int64) for a in (t & p, t, p))


def per_slice_overlap(
    truth: np.ndarray, pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-slice Dice and Jaccard over the slices where truth or prediction is positive.

    Returns ``(slice_indices, dice, jaccard)``; slices empty in both are left out (not 0, not 1).
    """
    inter, nt, npred = slice_counts(truth, pred)
    return overlap_from_slice_counts(inter, nt, npred)


def overlap_from_slice_counts(
    inter: np.ndarray, n_truth: np.ndarray, n_pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same as :func:`per_slice_overlap`, from the counts of :func:`slice_counts`."""
    inter, n_truth, n_pred = (np.asarray(a, dtype=np.float64) for a in (inter, n_truth, n_pred))
    idx = np.flatnonzero(n_truth + n_pred > 0)
    i, t, p = inter[idx], n_truth[idx], n_pred[idx]
    return idx, 2.0 * i / (t + p), i / (t + p - i)


def pixel_accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    """Pixel accuracy, eq. 18: correctly classified voxels / all voxels (background included)."""
    check_same_shape(truth, pred)
    t = _bool(truth)
    if t.size == 0:
        return NAN
    return float(np.count_nonzero(t == _bool(pred))) / t.size


# --- detection: counts, kappa, ROC ------------------------------------------------------------


def slice_labels(mask: np.ndarray, min_voxels: int = 1) -> np.ndarray:
    """A slice (axis 0) is positive when it holds at least ``min_voxels`` positive voxels."""
    m = _bool(mask)
    return np.count_nonzero(m.reshape(m.shape[0], -1), axis=1) >= min_voxels


def slice_scores(prob: np.ndarray) -> np.ndarray:
    """Slice score for ROC: the maximum probability in the slice."""
    p = np.asarray(prob)
    return p.reshape(p.shape[0], -1).max(axis=1).astype(np.float64)


def _ratio(num: float, den: float) -> float:
    return num / den if den else NAN


@dataclass(frozen=True)
class BinaryCounts:
    """A 2×2 confusion table of a binary decision (truth vs prediction)."""

    tp: int
    fp: int
    tn: int
    fn: int

    @classmethod
    def from_labels(cls, truth: np.ndarray, pred: np.ndarray) -> BinaryCounts:
        check_same_shape(truth, pred, "truth and predicted labels")
        t, p = _bool(truth).ravel(), _bool(pred).ravel()
        return cls(
            tp=int(np.count_nonzero(t & p)),
            fp=int(np.count_nonzero(~t & p)),
            tn=int(np.count_nonzero(~t & ~p)),
            fn=int(np.count_nonzero(t & ~p)),
        )

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def sensitivity(self) -> float:
        """TP / (TP + FN); ``nan`` with no positive truth."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        """TN / (TN + FP); ``nan`` with no negative truth."""
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.n)

    @property
    def kappa(self) -> float:
        """Cohen's kappa (p_o − p_e) / (1 − p_e); ``nan`` when p_e = 1 (one class everywhere)."""
        n = self.n
        if n == 0:
            return NAN
        po = (self.tp + self.tn) / n
        pe = (
            (self.tp + self.fp) * (self.tp + self.fn) + (self.fn + self.tn) * (self.fp + self.tn)
        ) / (n * n)
        return NAN if pe == 1.0 else (po - pe) / (1.0 - pe)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                **asdict(self),
                "sensitivity": self.sensitivity,
                "specificity": self.specificity,
                "accuracy": self.accuracy,
                "kappa": self.kappa,
            }
        )


def roc_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank formula, ties counted ½: (R₊ − n₊(n₊+1)/2) / (n₊ n₋).

    ``nan`` when either class is absent.
    """
    check_same_shape(truth, scores, "labels and scores")
    t = _bool(truth).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(np.count_nonzero(t))
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return NAN
    ranks = rankdata(s)  # average ranks: a tie between classes contributes ½
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass(frozen=True)
class RocCurve(JsonRecord):
    """ROC points: predicting positive when score ≥ threshold; starts at (0, 0), threshold +inf."""

    fpr: tuple[float, ...]
    tpr: tuple[float, ...]
    thresholds: tuple[float, ...]


def roc_curve(truth: np.ndarray, scores: np.ndarray) -> RocCurve:
    """One point per distinct score; its trapezoid area equals :func:`roc_auc`.

    With one class absent, the rate for that class is ``nan``.
    """
    check_same_shape(truth, scores, "labels and scores")
    t = _bool(truth).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1] if s.size else np.array([], int)
    tps = np.cumsum(t)[last].astype(np.float64)
    fps = (last + 1 - tps).astype(np.float64)
    n_pos, n_neg = float(t.sum()), float(t.size - t.sum())
    tpr = np.r_[0.0, tps] / n_pos if n_pos else np.full(last.size + 1, NAN)
    fpr = np.r_[0.0, fps] / n_neg if n_neg else np.full(last.size + 1, NAN)
    thr = np.r_[np.inf, s[last]]
    return RocCurve(tuple(fpr.tolist()), tuple(tpr.tolist()), tuple(thr.tolist()))


@dataclass(frozen=True)
class DetectionMetrics:
    """Binary detection (slice or scan level): confusion counts, derived rates, AUC and ROC."""

    counts: BinaryCounts
    auc: float
    roc: RocCurve

    @property
    def n_positive(self) -> int:
        return self.counts.tp + self.counts.fn

    @property
    def n_negative(self) -> int:
        return self.counts.tn + self.counts.fp

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                **self.counts.to_dict(),
                "n_positive": self.n_positive,
                "n_negative": self.n_negative,
                "auc": self.auc,
                "roc": self.roc.to_dict(),
            }
        )


def detection_metrics(truth: np.ndarray, pred: np.ndarray, scores: np.ndarray) -> DetectionMetrics:
    """Counts from the hard labels ``pred``; AUC and ROC from the continuous ``scores``."""
    check_same_shape(truth, scores, "labels and scores")
    return DetectionMetrics(
        counts=BinaryCounts.from_labels(truth, pred),
        auc=roc_auc(truth, scores),
        roc=roc_curve(truth, scores),
    )


# --- volume agreement (eq. 19, Table 5, Fig. 12) ----------------------------------------------


@dataclass(frozen=True)
class VolumeAgreement(JsonRecord):
    """Agreement of predicted with true volumes (mL) over ``n`` scans.

    ``r2``: 1 − Σ(V̂ − V)² / Σ(V − mean V)², against the identity line V̂ = V (can be < 0).
    ``pearson_r2``: squared Pearson correlation = R² of the least-squares line (the paper's
    goodness of fit); ``slope``/``intercept``: that line, V̂ ≈ slope·V + intercept.
    ``bias_ml`` ± ``LOA_Z``·``sd_diff_ml`` (sample sd, ddof 1) of Δ = V̂ − V (eq. 19).
    """

    n: int
    r2: float
    pearson_r2: float
    slope: float
    intercept: float
    mean_abs_diff_ml: float
    bias_ml: float
    sd_diff_ml: float
    loa_lower_ml: float
    loa_upper_ml: float


def r2_identity(true_ml: np.ndarray, pred_ml: np.ndarray) -> float:
    """R² of V̂ as a predictor of V (the identity line); ``nan`` when var V = 0."""
    t, p = _volumes(true_ml, pred_ml)
    ss_tot = float(np.sum((t - t.mean()) ** 2)) if t.size else 0.0
    return 1.0 - float(np.sum((p - t) ** 2)) / ss_tot if ss_tot > 0 else NAN


def pearson_r2(true_ml: np.ndarray, pred_ml: np.ndarray) -> float:
    """Squared Pearson correlation; ``nan`` when either side has zero variance."""
    t, p = _volumes(true_ml, pred_ml)
    if t.size < 2:
        return NAN
    dt, dp = t - t.mean(), p - p.mean()
    den = float(np.sum(dt**2) * np.sum(dp**2))
    return float(np.sum(dt * dp)) ** 2 / den if den > 0 else NAN


def _volumes(true_ml: np.ndarray, pred_ml: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(true_ml, dtype=np.float64).ravel()
    p = np.asarray(pred_ml, dtype=np.float64).ravel()
    check_same_shape(t, p, "true and predicted volumes")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise InputError("volumes must be finite numbers")
    return t, p


def volume_agreement(true_ml: np.ndarray, pred_ml: np.ndarray) -> VolumeAgreement:
    """R², mean |Δ|, and Bland-Altman bias and 95 % limits (eq. 19) of paired volumes."""
    t, p = _volumes(true_ml, pred_ml)
    n = t.size
    d = p - t
    bias = float(d.mean()) if n else NAN
    sd = float(d.std(ddof=1)) if n >= 2 else NAN
    var_t = float(np.sum((t - t.mean()) ** 2)) if n else 0.0
    slope = float(np.sum((t - t.mean()) * (p - p.mean()))) / var_t if var_t > 0 else NAN
    intercept = float(p.mean() - slope * t.mean()) if var_t > 0 else NAN
    return VolumeAgreement(
        n=n,
        r2=r2_identity(t, p),
        pearson_r2=pearson_r2(t, p),
        slope=slope,
        intercept=intercept,
        mean_abs_diff_ml=float(np.abs(d).mean()) if n else NAN,
        bias_ml=bias,
        sd_diff_ml=sd,
        loa_lower_ml=bias - LOA_Z * sd,
        loa_upper_ml=bias + LOA_Z * sd,
    )
