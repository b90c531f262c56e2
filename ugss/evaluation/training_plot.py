"""``training.png``: what a run's ``metrics.jsonl`` says about the semi-supervised terms.

Four panels over the epochs: validation Dice of the student and the teacher; λ_u and the
teacher's effective decay; the share of unlabeled pixels passing the δ mask and their mean
confidence weight; the teacher–student Dice on unlabeled slices. Keys a run did not log (a
supervised run has no teacher) leave their curve out; a panel with none says so. If UGSS does
not beat supervision, these say why (the unlabeled term never weighed in, the mask let almost
nothing through, the teacher never diverged from the student).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ugss.evaluation.plots import new_figure, save_figure

METRICS_FILE = "metrics.jsonl"
PANELS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("validation Dice", (("val_dice_student", "student"), ("val_dice_teacher", "teacher"))),
    ("schedules", (("lambda_u", "λ_u"), ("teacher_decay", "teacher decay"))),
    ("unlabeled pixels", (("unl_pass_delta", "share passing δ"), ("unl_conf", "mean p_conf"))),
    ("teacher vs student", (("ts_dice_unlabeled", "Dice on unlabeled slices"),)),
)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The epoch records of a ``metrics.jsonl`` (lines with an ``epoch``; others skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "epoch" in rec:
            records.append(rec)
    return records


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(int(r["epoch"]), r.get(key)) for r in records]
    kept = [(e, float(v)) for e, v in pairs if isinstance(v, (int, float)) and math.isfinite(v)]
    return [e for e, _ in kept], [v for _, v in kept]


def plot_training(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """The four diagnostic panels of ``records`` as one PNG."""
    fig = new_figure((9.0, 6.5))
    for ax, (title, curves) in zip(fig.subplots(2, 2).flat, PANELS, strict=True):
        drawn = 0
        for key, label in curves:
            epochs, values = _series(records, key)
            if epochs:
                ax.plot(epochs, values, marker="o", markersize=3, label=label)
                drawn += 1
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "not logged by this run", ha="center", va="center",
                    transform=ax.transAxes)  # fmt: skip
    return save_figure(fig, path)


def plot_run(checkpoint: str | Path, out_dir: str | Path) -> Path | None:
    """``out_dir/training.png`` from the ``metrics.jsonl`` beside ``checkpoint``, if any."""
    metrics = Path(checkpoint).parent / METRICS_FILE
    records = read_metrics(metrics) if metrics.is_file() else []
    return plot_training(records, Path(out_dir) / "training.png") if records else None
