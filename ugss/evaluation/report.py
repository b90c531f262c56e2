"""Readable Markdown twin of an :class:`EvaluationSummary`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ugss.evaluation.accumulator import EvaluationSummary
from ugss.evaluation.metrics import DetectionMetrics
from ugss.wording import mean_sd as _pm
from ugss.wording import number as _f
from ugss.wording import plural


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _detection_row(name: str, d: DetectionMetrics) -> list[str]:
    c = d.counts
    return [
        name,
        f"{d.n_positive}/{d.n_negative}",
        f"{c.tp}/{c.fp}/{c.tn}/{c.fn}",
        _f(c.sensitivity),
        _f(c.specificity),
        _f(c.accuracy),
        _f(c.kappa),
        _f(d.auc),
    ]


def render_markdown(summary: EvaluationSummary, title: str = "UGSS evaluation") -> str:
    """Headline metrics, detection table, volume agreement, definitions and per-scan rows."""
    s, o, v = summary, summary.overlap, summary.volume
    out = [
        f"# {title}",
        "",
        f"{plural(s.n_scans, 'scan')}, {plural(s.n_slices, 'slice')}; threshold {s.threshold:g}; "
        f"slice positive at >= {s.min_slice_voxels} voxels.",
        "",
        "## Segmentation",
        "",
        *_table(
            ["metric", "value"],
            [
                [f"Dice per scan (n = {o.n_scans_scored})", _pm(o.dice_mean, o.dice_std)],
                [f"Jaccard per scan (n = {o.n_scans_scored})", _pm(o.jaccard_mean, o.jaccard_std)],
                ["scans empty in truth and prediction", str(o.n_scans_both_empty)],
                ["Dice per scan, empty-vs-empty = 1", _f(o.dice_mean_empty_as_one)],
                ["Jaccard per scan, empty-vs-empty = 1", _f(o.jaccard_mean_empty_as_one)],
                ["Dice pooled", _f(o.dice_pooled)],
                ["Jaccard pooled", _f(o.jaccard_pooled)],
                [
                    f"Dice per slice (n = {o.n_slices_scored})",
                    _pm(o.slice_dice_mean, o.slice_dice_std),
                ],
                ["Jaccard per slice", _pm(o.slice_jaccard_mean, o.slice_jaccard_std)],
                ["pixel accuracy (pooled)", _f(s.pixel_accuracy, ".4f")],
                ["pixel accuracy (mean per scan)", _f(s.pixel_accuracy_mean, ".4f")],
            ],
        ),
        "",
        "## Detection",
        "",
        *_table(
            ["level", "pos/neg", "TP/FP/TN/FN", "sens", "spec", "acc", "kappa", "AUC"],
            [
                _detection_row("slice", s.slice_detection),
                _detection_row("scan", s.scan_detection),
            ],
        ),
        "",
        "## Volume",
        "",
        *_table(
            ["metric", "value"],
            [
                ["scans", str(v.n)],
                ["R² (identity line)", _f(v.r2)],
                ["R² (Pearson², least-squares fit)", _f(v.pearson_r2)],
                ["fit", f"V̂ = {_f(v.slope)}·V + {_f(v.intercept)} mL"],
                ["mean absolute difference", f"{_f(v.mean_abs_diff_ml, '.2f')} mL"],
                ["Bland-Altman bias", f"{_f(v.bias_ml, '+.2f')} mL"],
                [
                    "95 % limits of agreement",
                    f"{_f(v.loa_lower_ml, '+.2f')} to {_f(v.loa_upper_ml, '+.2f')} mL",
                ],
            ],
        ),
        "",
        "## Definitions",
        "",
        *[f"- **{k}**: {text}" for k, text in s.definitions.items()],
        "",
        "## Scans",
        "",
        *_table(
            ["scan", "slices", "Dice", "Jaccard", "PA", "true mL", "pred mL", "Δ mL"],
            [
                [
                    r.scan_id,
                    str(r.n_slices),
                    "empty" if r.both_empty else _f(r.dice),
                    "empty" if r.both_empty else _f(r.jaccard),
                    _f(r.pixel_accuracy, ".4f"),
                    _f(r.true_volume_ml, ".2f"),
                    _f(r.pred_volume_ml, ".2f"),
                    _f(r.volume_diff_ml, "+.2f"),
                ]
                for r in s.scans
            ],
        ),
    ]
    return "\n".join(out) + "\n"


def write_markdown(
    summary: EvaluationSummary, path: str | Path, title: str = "UGSS evaluation"
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(summary, title), encoding="utf-8")
    return path
