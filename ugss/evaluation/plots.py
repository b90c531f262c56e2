"""PNG plots of an evaluation: ROC (Fig. 11), Bland-Altman and volume regression (Fig. 12).

Figures are drawn on matplotlib's Agg canvas directly, without pyplot: no global backend
switch, no figure registry, safe in servers and threads. matplotlib is imported on first use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ugss.evaluation.metrics import DetectionMetrics, volume_agreement

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ugss.evaluation.accumulator import EvaluationSummary

DPI = 120


def new_figure(size: tuple[float, float] = (5.0, 4.5)) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _fmt(x: float, spec: str = ".3f") -> str:
    return format(x, spec) if math.isfinite(x) else "n/a"


def plot_roc(curves: Mapping[str, DetectionMetrics], path: str | Path) -> Path:
    """ROC curves, one per named detection level, AUC in the legend."""
    fig = new_figure()
    ax = fig.add_subplot()
    for name, det in curves.items():
        ax.plot(det.roc.fpr, det.roc.tpr, lw=1.8, label=f"{name} (AUC = {_fmt(det.auc)})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="1 − specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_title("ROC, hemorrhage detection")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_bland_altman(true_ml: np.ndarray, pred_ml: np.ndarray, path: str | Path) -> Path:
    """Δ = V̂ − V against (V̂ + V)/2, bias line and bias ± 1.96 sd limits (eq. 19)."""
    t, p = np.asarray(true_ml, float), np.asarray(pred_ml, float)
    va = volume_agreement(t, p)
    fig = new_figure((6.0, 4.5))
    ax = fig.add_subplot()
    ax.scatter((t + p) / 2.0, p - t, s=18, alpha=0.8, label=f"scans (n = {va.n})")
    if math.isfinite(va.bias_ml):
        ax.axhline(va.bias_ml, color="black", lw=1.2, label=f"bias {va.bias_ml:+.2f} mL")
    if math.isfinite(va.sd_diff_ml):
        for y, which in ((va.loa_upper_ml, "upper"), (va.loa_lower_ml, "lower")):
            ax.axhline(y, color="red", ls="--", lw=1.2, label=f"{which} limit {y:+.2f} mL")
    ax.axhline(0.0, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("mean of predicted and true volume (mL)")
    ax.set_ylabel("predicted − true volume (mL)")
    ax.set_title("Bland-Altman, hemorrhage volume")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_volume_regression(true_ml: np.ndarray, pred_ml: np.ndarray, path: str | Path) -> Path:
    """Predicted against true volume, identity line, least-squares line, R² in the legend."""
    t, p = np.asarray(true_ml, float), np.asarray(pred_ml, float)
    va = volume_agreement(t, p)
    fig = new_figure()
    ax = fig.add_subplot()
    ax.scatter(t, p, s=18, alpha=0.8, label=f"scans (n = {va.n})")
    hi = float(max(t.max(initial=0.0), p.max(initial=0.0))) * 1.05 or 1.0
    ax.plot([0, hi], [0, hi], color="grey", ls="--", lw=1, label=f"identity (R² = {_fmt(va.r2)})")
    if math.isfinite(va.slope):
        xs = np.array([0.0, hi])
        ax.plot(
            xs,
            va.slope * xs + va.intercept,
            color="red",
            lw=1.2,
            label=f"fit {va.slope:.2f}·V {va.intercept:+.2f} (r² = {_fmt(va.pearson_r2)})",
        )
    ax.set(xlim=(0, hi), ylim=(0, hi))
    ax.set_xlabel("true volume (mL)")
    ax.set_ylabel("predicted volume (mL)")
    ax.set_title("Hemorrhage volume")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def write_plots(summary: EvaluationSummary, out_dir: str | Path) -> list[Path]:
    """Write ``roc.png`` (if an AUC is defined), ``bland_altman.png``, ``volume_regression.png``."""
    out = Path(out_dir)
    written: list[Path] = []
    curves = {
        name: det
        for name, det in (("slice", summary.slice_detection), ("scan", summary.scan_detection))
        if math.isfinite(det.auc)
    }
    if curves:
        written.append(plot_roc(curves, out / "roc.png"))
    true_ml, pred_ml = summary.volume_pairs()
    if true_ml.size:
        written.append(plot_bland_altman(true_ml, pred_ml, out / "bland_altman.png"))
        written.append(plot_volume_regression(true_ml, pred_ml, out / "volume_regression.png"))
    return written
