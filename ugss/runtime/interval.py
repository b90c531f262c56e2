"""The MC volume interval: the raw percentile spread, or split-conformal calibrated (numpy only).

The MC per-sample volumes of one scan spread far less than the volume's real error (the samples
share one network and one scan), so their 5th–95th percentile covers the true volume much less
often than 90 % of the time. Split-conformal calibration on labeled scans the model never
trained on fixes the coverage.

Raw interval: ``[lo, hi]`` = the 5th–95th percentile of the samples, widened to include the
point estimate ``v``; ``h = (hi − lo) / 2`` is its half-width. Nonconformity score of a scan
with true volume ``y``:

    r = |y − v| / (h + u),   u = FLOOR_UNIT_ML

``u`` keeps scans without MC spread (hemorrhage-free: every sample 0) from dividing by zero, and
such a scan that is truly hemorrhage-free scores 0, so it never widens anyone's interval. With
``s`` the ``⌈(n+1)·coverage⌉``-th smallest of the ``n`` calibration scores, the interval

    [v − s·h − f, v + s·h + f]  clipped at 0,   f = s·u

holds the true volume of a new exchangeable scan with probability ≥ ``coverage`` (the
finite-sample split-conformal guarantee; ``u`` is fixed, not fitted, so it holds exactly).
With fewer than ``MIN_CALIBRATION_SCANS`` scans the rank can exceed ``n``: the largest score is
used and the guarantee is void or weak (``IntervalCalibration.weak``).

Why symmetric about ``v`` and why this ``u``: on synthetic scans the model under-segments (the
error is mostly ``y > v``) while the MC samples spread mostly below ``v``, so scaling each side
by its own spread gave 25–30 % wider intervals for the same held-out coverage (40 + 60
synthetic scans, bundled model); ``u`` = 0.5 mL is about the smallest synthetic bleed (0.3 mL)
and small against the MC spread of large ones. ``benchmarks/bench_interval.py`` measures the
held-out coverage.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from ugss.errors import InputError

INTERVAL_QUANTILES = (5.0, 95.0)  # percentiles of the MC per-sample volumes
NOMINAL_COVERAGE = (INTERVAL_QUANTILES[1] - INTERVAL_QUANTILES[0]) / 100.0  # 0.90
FLOOR_UNIT_ML = 0.5
MIN_CALIBRATION_SCANS = 10  # below this the conformal guarantee is weak (or void)
METADATA_KEY = "ugss.interval_calibration"
UNCALIBRATED_METHOD = (
    "uncalibrated: 5th-95th percentile of the MC per-sample volumes, widened to include the "
    f"point estimate; it is not a {NOMINAL_COVERAGE:.0%} interval and misses the true volume "
    "far more often"
)


@dataclass(frozen=True)
class IntervalCalibration:
    """Split-conformal calibration of the MC volume interval (JSON in ``METADATA_KEY``)."""

    coverage: float  # nominal coverage, e.g. 0.90
    scale: float  # conformal factor s on the raw interval's half-width
    floor_ml: float  # additive floor f (mL) on both sides
    n_scans: int  # calibration scans used
    empirical_coverage: float  # on the calibration scans after scaling
    source: str  # where the calibration scans came from
    uncalibrated_coverage: float | None = None  # of the raw percentile interval, same scans

    def __post_init__(self) -> None:
        values = (self.scale, self.floor_ml, self.empirical_coverage)
        ok = (
            0.0 < self.coverage < 1.0
            and all(math.isfinite(v) and v >= 0.0 for v in values)
            and self.empirical_coverage <= 1.0
            and self.n_scans >= 1
        )
        if not ok:
            raise InputError(f"invalid interval calibration: {self}")

    @property
    def weak(self) -> bool:
        """Too few calibration scans for the conformal guarantee to mean much."""
        return self.n_scans < MIN_CALIBRATION_SCANS

    def describe(self) -> str:
        before = self.uncalibrated_coverage
        text = (
            f"{self.n_scans} scans, scale {self.scale:.3g}, floor {self.floor_ml:.3g} mL, "
            f"coverage {'?' if before is None else f'{before:.0%}'} uncalibrated -> "
            f"{self.empirical_coverage:.0%} calibrated (nominal {self.coverage:.0%})"
        )
        return text + (f"; WARNING: {weak_warning(self.n_scans)}" if self.weak else "")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IntervalCalibration:
        """Inverse of ``to_json``; anything else is an ``InputError``."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            known = {f.name for f in fields(cls)}
            kept = {k: v for k, v in data.items() if k in known}
            before = kept.get("uncalibrated_coverage")
            return cls(
                coverage=float(kept["coverage"]),
                scale=float(kept["scale"]),
                floor_ml=float(kept["floor_ml"]),
                n_scans=int(kept["n_scans"]),
                empirical_coverage=float(kept["empirical_coverage"]),
                source=str(kept.get("source", "")),
                uncalibrated_coverage=None if before is None else float(before),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise InputError(f"model metadata {METADATA_KEY} is malformed: {exc!r}") from exc


@dataclass(frozen=True)
class VolumeInterval:
    """An interval for the hemorrhage volume (mL) and, in one sentence, what it is."""

    low_ml: float
    high_ml: float
    calibrated: bool
    method: str


def weak_warning(n_scans: int) -> str:
    return (
        f"only {n_scans} calibration scan(s) (fewer than {MIN_CALIBRATION_SCANS}), so the "
        "coverage guarantee is weak; calibrate on a bigger labeled set "
        "(ugss-export --interval-calibration DIR)"
    )


def raw_interval(sample_volumes_ml: Sequence[float], volume_ml: float) -> tuple[float, float]:
    """5th–95th percentile of the MC per-sample volumes, widened to include ``volume_ml``."""
    samples = np.asarray(sample_volumes_ml, dtype=np.float64)
    if samples.size == 0 or not np.isfinite(samples).all() or not math.isfinite(volume_ml):
        raise InputError("the MC volume interval needs finite per-sample volumes")
    lo, hi = np.percentile(samples, INTERVAL_QUANTILES)
    return min(float(lo), float(volume_ml)), max(float(hi), float(volume_ml))


def volume_interval(
    sample_volumes_ml: Sequence[float],
    volume_ml: float,
    calibration: IntervalCalibration | None,
) -> VolumeInterval:
    """The volume interval of one scan: split-conformal when ``calibration`` is given."""
    lo, hi = raw_interval(sample_volumes_ml, volume_ml)
    if calibration is None:
        return VolumeInterval(lo, hi, False, UNCALIBRATED_METHOD)
    c = calibration
    half = c.scale * (hi - lo) / 2.0 + c.floor_ml
    method = (
        f"{c.coverage:.0%} split-conformal interval: the point estimate ± {c.scale:.3g} x the "
        f"half-width of the MC 5th-95th percentile interval + {c.floor_ml:.3g} mL, calibrated "
        f"on {c.n_scans} labeled scans ({c.source})"
    )
    if c.weak:
        method += f"; {weak_warning(c.n_scans)}"
    return VolumeInterval(max(volume_ml - half, 0.0), volume_ml + half, True, method)


def conformal_rank(n: int, coverage: float) -> int:
    """The finite-sample split-conformal rank ``⌈(n + 1)·coverage⌉`` (1-based; may exceed n)."""
    if n < 1:
        raise InputError("conformal calibration needs at least one scan")
    if not 0.0 < coverage < 1.0:
        raise InputError(f"coverage must be in (0, 1), got {coverage}")
    # the tolerance keeps a product that is an integer in exact arithmetic from rounding up
    return math.ceil((n + 1) * coverage - 1e-9)


def conformal_quantile(scores: Sequence[float], coverage: float) -> float:
    """The ``conformal_rank``-th smallest score, or the largest when the rank exceeds n."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    k = conformal_rank(len(ordered), coverage)
    return float(ordered[min(k, len(ordered)) - 1])


@dataclass(frozen=True)
class LabeledVolume:
    """One calibration scan: MC per-sample volumes, point estimate and true volume (mL)."""

    sample_volumes_ml: tuple[float, ...]
    volume_ml: float
    true_ml: float


def score(scan: LabeledVolume, unit_ml: float = FLOOR_UNIT_ML) -> float:
    """Nonconformity ``|y − v| / (h + u)`` of one scan (see the module doc)."""
    lo, hi = raw_interval(scan.sample_volumes_ml, scan.volume_ml)
    return abs(scan.true_ml - scan.volume_ml) / ((hi - lo) / 2.0 + unit_ml)


def covers(interval: VolumeInterval, true_ml: float) -> bool:
    tol = 1e-9 * max(1.0, abs(true_ml))  # the true and predicted volumes of a perfect mask
    return interval.low_ml - tol <= true_ml <= interval.high_ml + tol


def coverage_of(
    scans: Sequence[LabeledVolume], calibration: IntervalCalibration | None
) -> tuple[float, float]:
    """Share of ``scans`` whose interval holds the true volume, and the median width (mL)."""
    if not scans:
        raise InputError("no scans to measure the interval coverage on")
    hits, widths = [], []
    for scan in scans:
        iv = volume_interval(scan.sample_volumes_ml, scan.volume_ml, calibration)
        hits.append(covers(iv, scan.true_ml))
        widths.append(iv.high_ml - iv.low_ml)
    return float(np.mean(hits)), float(np.median(widths))


def calibrate(
    scans: Sequence[LabeledVolume], source: str, coverage: float = NOMINAL_COVERAGE
) -> IntervalCalibration:
    """The split-conformal ``IntervalCalibration`` of labeled scans."""
    if not scans:
        raise InputError("interval calibration needs at least one labeled scan")
    s = conformal_quantile([score(scan) for scan in scans], coverage)
    before, _ = coverage_of(scans, None)
    draft = IntervalCalibration(coverage, s, s * FLOOR_UNIT_ML, len(scans), 0.0, source, before)
    after, _ = coverage_of(scans, draft)
    return replace(draft, empirical_coverage=after)
