"""Evaluation metrics (paper eq. 16–19), cohort accumulator, plots and report.

numpy/scipy only at import; matplotlib is loaded when a plot is drawn. Never imports torch.
"""

from ugss.evaluation.accumulator import (
    EvaluationAccumulator,
    EvaluationSummary,
    OverlapSummary,
    ScanResult,
    definitions,
)
from ugss.evaluation.metrics import (
    BinaryCounts,
    DetectionMetrics,
    RocCurve,
    VolumeAgreement,
    detection_metrics,
    dice,
    jaccard,
    pearson_r2,
    per_slice_overlap,
    pixel_accuracy,
    r2_identity,
    roc_auc,
    roc_curve,
    slice_labels,
    slice_scores,
    volume_agreement,
)
from ugss.evaluation.plots import (
    plot_bland_altman,
    plot_roc,
    plot_volume_regression,
    write_plots,
)
from ugss.evaluation.report import render_markdown, write_markdown

__all__ = [
    "BinaryCounts",
    "DetectionMetrics",
    "EvaluationAccumulator",
    "EvaluationSummary",
    "OverlapSummary",
    "RocCurve",
    "ScanResult",
    "VolumeAgreement",
    "definitions",
    "detection_metrics",
    "dice",
    "jaccard",
    "pearson_r2",
    "per_slice_overlap",
    "pixel_accuracy",
    "plot_bland_altman",
    "plot_roc",
    "plot_volume_regression",
    "r2_identity",
    "render_markdown",
    "roc_auc",
    "roc_curve",
    "slice_labels",
    "slice_scores",
    "volume_agreement",
    "write_markdown",
    "write_plots",
]
