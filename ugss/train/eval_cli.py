"""``ugss-eval``: score a trained model on labeled scans (paper eq. 16–19), with plots.

The model is a training checkpoint (``.pt``: torch, ``ugss.train.torch_engine``) or an exported
ONNX model (``.onnx``: onnxruntime). Both go through ``ugss.runtime.segment.segment_volume`` —
the deployment path: inverse transform, intracranial filter, component rules — so a checkpoint
and its export are scored by one pipeline. Each scan is predicted on its native grid and handed
to ``ugss.evaluation.EvaluationAccumulator``; this module only wires prediction to the metrics.

Which scans: ``--data``/``--manifest`` (every labeled scan, or ``--split`` when they are the
checkpoint's own data) or, for a checkpoint given alone, the data it was trained on and its
saved ``test`` split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ugss.cli_support import (
    QuietOpt,
    ThreadsOpt,
    VerboseOpt,
    VersionOpt,
    check_device,
    check_output_dir,
    make_app,
    note,
    run_cli,
    setup_logging,
    threads_or_none,
)
from ugss.errors import InputError
from ugss.runtime.nifti import read_nifti
from ugss.runtime.volume import Volume
from ugss.train.cache import read_mask_for
from ugss.train.manifest import ScanRecord, load_records, read_physionet
from ugss.wording import mean_sd, number, plural

app = make_app(__doc__)
console = Console(stderr=True)
log = logging.getLogger(__name__)

SPLITS = ("test", "val", "train", "all")
DEFAULT_WEIGHTS = "auto"  # the validated weights; ugss-export's default too
Predictor = Callable[[Volume], tuple[np.ndarray, np.ndarray | None]]  # → prob, pred mask


def _subset(records: list[ScanRecord], split: dict[str, list[str]], which: str) -> list[ScanRecord]:
    """The records of one role of a checkpoint's saved split (``all``: every record)."""
    if which == "all":
        return records
    if which == "train":
        wanted = set(split["train_labeled"] + split["train_unlabeled"])
    else:
        wanted = set(split.get(which, []))
    return [r for r in records if r.scan_id in wanted]


def _checkpoint_records(
    doc_config: Any, split: dict[str, list[str]], which: str
) -> list[ScanRecord]:
    """The scans a checkpoint was trained with, restricted to one role of its saved split."""
    from ugss.train.synthetic import synthetic_cohort_dir

    d = doc_config.data
    if d.data_dir or d.manifest:
        records = load_records(d.data_dir, d.manifest)
    else:
        root = synthetic_cohort_dir(d)
        if not root.is_dir():
            raise InputError(f"the synthetic cohort {root} is gone: pass --data or --manifest")
        records = read_physionet(root)
    return _subset(records, split, which)


def _torch_predictor(
    path: Path,
    which: str,
    mc_samples: int,
    batch_size: int,
    device: str,
    threshold: float | None,
    min_ml: float,
) -> tuple[Predictor, float, dict[str, Any], Any]:
    """A checkpoint scored through the runtime's ``segment_volume``, as its exported ONNX is
    (``TorchEngine``): the same inverse transform, intracranial filter and component rules."""
    from ugss.train.loop import resolve_device
    from ugss.train.predict import load_checkpoint
    from ugss.train.torch_engine import TorchEngine

    ck = load_checkpoint(path, which=which, device=resolve_device(device))
    thr = ck.threshold if threshold is None else threshold
    engine = TorchEngine(ck, mc_samples)
    predict = _segmenting_predictor(engine, batch_size, thr, min_ml, mc_samples != 0)
    info = {"model": str(path), "weights": ck.which, "method": ck.method, "epoch": ck.epoch}
    info["engine"] = engine.description
    return predict, thr, info, ck


def _segmenting_predictor(
    engine: Any, batch_size: int, thr: float, min_ml: float, use_mc: bool
) -> Predictor:
    """``volume → (prob, mask)`` through ``segment_volume`` (``ugss-infer``'s pipeline)."""
    from ugss.runtime.segment import segment_volume

    def predict(volume: Volume) -> tuple[np.ndarray, np.ndarray | None]:
        seg = segment_volume(
            volume,
            engine,
            batch_size=batch_size,
            min_component_ml=min_ml,
            threshold=thr,
            use_mc=use_mc,
            check_intensities=False,
        )
        return seg.prob, seg.mask

    return predict


def _onnx_predictor(
    path: Path,
    mc_samples: int,
    batch_size: int,
    threshold: float | None,
    min_ml: float,
    threads: int | None = None,
) -> tuple[Predictor, float, dict[str, Any], dict[str, Any]]:
    from ugss.runtime.engines import OnnxEngine

    engine = OnnxEngine(path, threads=threads)
    thr = engine.info.threshold if threshold is None else threshold
    predict = _segmenting_predictor(engine, batch_size, thr, min_ml, mc_samples != 0)

    training = engine.info.training
    info = {
        "model": str(path),
        "engine": engine.description,
        "weights": training.get("weights", "unrecorded"),
    }
    return predict, thr, info, training


def evaluate_records(
    records: list[ScanRecord],
    predict: Predictor,
    threshold: float,
    progress: Callable[[int, int], None] | None = None,
):
    """Predict every labeled record and accumulate the metrics."""
    from ugss.evaluation import EvaluationAccumulator

    labeled = [r for r in records if r.mask_path]
    if not labeled:
        raise InputError("no labeled scans to evaluate (every scan lacks a mask)")
    acc = EvaluationAccumulator(threshold=threshold)
    for i, rec in enumerate(labeled):
        volume = read_nifti(rec.scan_path)
        truth = read_mask_for(volume, rec.mask_path)  # type: ignore[arg-type]
        prob, pred = predict(volume)
        acc.add(rec.scan_id, truth, prob, volume.voxel_volume_ml, pred_mask=pred)
        if progress is not None:
            progress(i + 1, len(labeled))
    return acc.summary()


def _print(summary: Any, info: dict[str, Any]) -> None:
    """The headline numbers, worded as evaluation.md words them (``n/a``, ``1 scan``)."""
    o, v = summary.overlap, summary.volume
    table = Table(title=f"ugss-eval: {plural(summary.n_scans, 'scan')}", show_header=False)
    for k, val in info.items():
        table.add_row(k, str(val))
    table.add_row("Dice per scan (mean ± sd)", mean_sd(o.dice_mean, o.dice_std))
    table.add_row("Dice pooled", number(o.dice_pooled))
    table.add_row(
        "Jaccard per scan / pooled", f"{number(o.jaccard_mean)} / {number(o.jaccard_pooled)}"
    )
    table.add_row("pixel accuracy", number(summary.pixel_accuracy, ".4f"))
    counts = summary.slice_detection.counts
    table.add_row(
        "slice detection sens / spec / AUC",
        f"{number(counts.sensitivity)} / {number(counts.specificity)}"
        f" / {number(summary.slice_detection.auc)}",
    )
    table.add_row("volume R² (identity) / bias mL", f"{number(v.r2)} / {number(v.bias_ml, '+.2f')}")
    Console().print(table)


def _onnx_split(info: dict[str, Any], training: dict[str, Any], split: str) -> dict | None:
    """The split an exported model records (``data.split_ids``), or ``None`` with a note."""
    ids = (training.get("data") or {}).get("split_ids")
    if ids:
        return ids
    if split not in ("", "all"):
        note(
            f"note: {info['model']} records no training split: scoring every scan given, "
            f"not the {split} split"
        )
    return None


def _select_records(
    model: Path,
    data: Path | None,
    manifest: Path | None,
    split: str,
    split_ids: dict | None,
    ck: Any,
) -> tuple[list[ScanRecord], str]:
    """The scans to score and the label of the table: the same rule for checkpoints and ONNX
    (``--split`` of the recorded split; no split recorded: every scan, labelled so)."""
    if data or manifest:
        records = load_records(str(data) if data else None, str(manifest) if manifest else None)
        if split_ids is None:
            return records, "all (no split recorded)" if split not in ("", "all") else "all"
        split = split or "all"
        return _subset(records, split_ids, split), split
    if ck is None:
        raise InputError("an ONNX model needs --data or --manifest to evaluate on")
    if ck.config is None:
        raise InputError(f"{model}: the checkpoint carries no configuration")
    split = split or "test"
    return _checkpoint_records(ck.config, ck.data["split"], split), split


# the options of main_command (help text as --help prints it)
_Model = Annotated[
    Path,
    typer.Argument(help="Checkpoint (.pt) or exported model (.onnx).", metavar="MODEL"),
]

_Data = Annotated[
    Path | None,
    typer.Option("-i", "--data", help="PhysioNet CT-ICH folder to evaluate on.", metavar="DIR"),
]

_Manifest = Annotated[
    Path | None,
    typer.Option("--manifest", help="CSV/JSON manifest of scans and masks.", metavar="FILE"),
]

_Split = Annotated[
    str,
    typer.Option(
        help="test | val | train | all of the split recorded in the checkpoint or exported "
        "model (default: test without --data, all with it).",
        show_default=False,
    ),
]

_Out = Annotated[
    Path | None,
    typer.Option(
        "-o",
        "--out",
        help="Report folder (default: eval-SPLIT beside the model).",
        metavar="DIR",
    ),
]

_Which = Annotated[
    str,
    typer.Option(help="Checkpoint weights: auto (the validated ones) | teacher | student."),
]

_McSamples = Annotated[
    int,
    typer.Option(
        help="MC-dropout samples (0: deterministic; checkpoints: T; ONNX: >0 uses the MC graph)."
    ),
]

_Threshold = Annotated[
    float | None,
    typer.Option(help="Probability threshold (default: the model's).", show_default=False),
]

_MinComponentMl = Annotated[float, typer.Option(help="Drop components smaller than this (mL).")]


@app.command()
def main_command(
    model: _Model,
    data: _Data = None,
    manifest: _Manifest = None,
    split: _Split = "",
    out: _Out = None,
    which: _Which = DEFAULT_WEIGHTS,
    mc_samples: _McSamples = 0,
    threshold: _Threshold = None,
    min_component_ml: _MinComponentMl = 0.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Slices per forward pass.")] = 8,
    device: Annotated[str, typer.Option(help="Checkpoints: auto | cpu | cuda.")] = "auto",
    threads: ThreadsOpt = 0,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    version: VersionOpt = False,
) -> None:
    """Dice, Jaccard, pixel accuracy, slice detection and volume agreement, with plots.

    Writes OUT/evaluation.json, OUT/evaluation.md and OUT/*.png."""
    setup_logging(verbose, quiet, default=logging.WARNING)
    check_device(device)
    if split and split not in SPLITS:
        raise InputError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if data and manifest:
        raise InputError("give either --data or --manifest, not both")
    if not model.is_file():
        raise InputError(f"{model}: no such model file")
    ck = None
    if model.suffix.lower() == ".onnx":
        predict, thr, info, training = _onnx_predictor(
            model, mc_samples, batch_size, threshold, min_component_ml, threads_or_none(threads)
        )
        split_ids = _onnx_split(info, training, split)
    else:
        if threads:
            import torch

            torch.set_num_threads(threads)
        predict, thr, info, ck = _torch_predictor(
            model, which, mc_samples, batch_size, device, threshold, min_component_ml
        )
        split_ids = ck.data.get("split")
    records, label = _select_records(model, data, manifest, split, split_ids, ck)
    info["split"], info["threshold"] = label, thr
    if not records:
        raise InputError(f"no scans in split {label!r}")
    out_dir = check_output_dir(out or model.parent / f"eval-{label.split()[0]}", "report folder")
    summary = _evaluate_with_progress(records, predict, thr, quiet)
    _write(summary, out_dir, model, info, quiet)


def _evaluate_with_progress(records: list[ScanRecord], predict: Predictor, thr: float, quiet: bool):
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=quiet) as bar:
        task = bar.add_task("evaluating scans", total=len([r for r in records if r.mask_path]))
        return evaluate_records(
            records, predict, thr, lambda done, _total: bar.update(task, completed=done)
        )


def _write(summary: Any, out_dir: Path, model: Path, info: dict[str, Any], quiet: bool) -> None:
    from ugss.evaluation import write_markdown, write_plots

    summary.write_json(out_dir / "evaluation.json")
    write_markdown(summary, out_dir / "evaluation.md", title=f"UGSS evaluation — {model.name}")
    plots = write_plots(summary, out_dir)
    if model.suffix.lower() != ".onnx":  # a checkpoint: its run's diagnostics, when beside it
        from ugss.evaluation.training_plot import plot_run

        training = plot_run(model, out_dir)
        plots += [training] if training is not None else []
    if quiet:
        return
    _print(summary, info)
    names = ", ".join(p.name for p in plots)
    note(
        f"wrote {out_dir}/evaluation.json, evaluation.md"
        + (f" and {len(plots)} plot(s): {names}" if plots else "")
    )


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
