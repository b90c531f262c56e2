"""``ugss-export CKPT``: ONNX (deterministic + batched MC dropout), TensorRT, Triton.

    ugss-export model.pt --onnx model.onnx --mc-samples 8
    ugss-export model.pt --onnx model.onnx --trt            # + model.plan (fp16), model-det.plan
    ugss-export model.pt --onnx model.onnx --triton repo/   # + repo/ugss/, repo/ugss-det/
    ugss-export model.pt --interval-calibration labeled/    # calibrate the interval there

Writes the MC model to --onnx and its deterministic twin beside it (``-det.onnx``); prints the
parity of every graph with PyTorch and the calibration of the MC volume interval (on the
checkpoint's validation split unless told otherwise). Thin over
``ugss.export.api.export_checkpoint``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ugss.cli_support import (
    QuietOpt,
    ThreadsOpt,
    VerboseOpt,
    VersionOpt,
    check_output_dir,
    check_output_file,
    make_app,
    new_folders_removed_on_error,
    run_cli,
    setup_logging,
)
from ugss.errors import InputError
from ugss.export.api import ExportOptions, ExportResult, export_checkpoint
from ugss.runtime.interval import weak_warning
from ugss.runtime.model_info import KIND_MC

app = make_app(__doc__)
console = Console(stderr=True)
_O = ExportOptions(onnx=Path("model.onnx"))


# the options of main_command (help text as --help prints it)
_Checkpoint = Annotated[
    Path | None,
    typer.Argument(
        help="Training checkpoint written by ugss-train (best.pt / last.pt)",
        show_default=False,
        metavar="CHECKPOINT",
    ),
]

_CheckpointOption = Annotated[
    Path | None,
    typer.Option("-i", "--input", help="The checkpoint (instead of CHECKPOINT)", metavar="FILE"),
]

_Onnx = Annotated[
    Path | None,
    typer.Option(
        "-o",
        "--onnx",
        help="Output .onnx path (default: the checkpoint's name + .onnx)",
        metavar="FILE",
    ),
]

_McSamples = Annotated[
    int,
    typer.Option(
        "--mc-samples",
        help="MC dropout samples T in the MC graph; 0 = only the deterministic graph",
    ),
]

_Weights = Annotated[
    str, typer.Option("--weights", help="student | teacher | auto (the validated one)")
]

_Noise = Annotated[
    str,
    typer.Option(
        "--noise",
        help="MC dropout noise: input (dropout_noise[T,C] fed by the runtime, exact replay) "
        "| graph (RandomUniform inside the graph, drawn per execution)",
    ),
]

_Threshold = Annotated[
    float, typer.Option("--threshold", help="Probability threshold for masks and counts")
]

_ModelVersion = Annotated[
    int, typer.Option("--model-version", help="Model version (metadata, Triton folder)")
]

_Exporter = Annotated[
    str,
    typer.Option("--exporter", help="legacy (TorchScript, opset 17, fast) | dynamo (opset 18)"),
]

_Trt = Annotated[
    bool, typer.Option("--trt", help="Also build TensorRT engines (needs an NVIDIA GPU)")
]

_Fp32 = Annotated[
    bool, typer.Option("--fp32", help="TensorRT engine in fp32 instead of fp16 (with --trt)")
]

_Triton = Annotated[
    Path | None,
    typer.Option("--triton", help="Write a Triton Inference Server model repository here"),
]

_MaxBatch = Annotated[
    int, typer.Option("--max-batch", help="Largest batch for TensorRT profiles and Triton")
]

_Int8 = Annotated[
    bool,
    typer.Option(
        "--int8",
        help="Also write int8 twins (X-int8.onnx, X-det-int8.onnx) for fast CPU inference",
    ),
]

_Calibration = Annotated[
    list[str] | None,
    typer.Option(
        "--calibration",
        help="CT scans (NIfTI, DICOM folder, glob) to calibrate --int8; default: synthetic",
    ),
]

_IntervalCohort = Annotated[
    Path | None,
    typer.Option(
        "--interval-calibration",
        help="Labeled folder (ct_scans/, masks/) to calibrate the MC volume interval on; "
        "default: the checkpoint's validation split",
    ),
]

_NoIntervalCalibration = Annotated[
    bool,
    typer.Option(
        "--no-interval-calibration",
        help="Leave the MC volume interval uncalibrated (the runtime then says so)",
    ),
]


@app.command()
def main_command(
    checkpoint: _Checkpoint = None,
    checkpoint_option: _CheckpointOption = None,
    onnx: _Onnx = None,
    mc_samples: _McSamples = _O.mc_samples,
    weights: _Weights = _O.weights,
    noise: _Noise = _O.noise,
    threshold: _Threshold = _O.threshold,
    name: Annotated[str, typer.Option("--name", help="Model name (Triton model folder)")] = _O.name,
    model_version: _ModelVersion = _O.version,
    exporter: _Exporter = _O.exporter,
    trt: _Trt = False,
    fp32: _Fp32 = False,
    triton: _Triton = None,
    max_batch: _MaxBatch = _O.max_batch,
    int8: _Int8 = False,
    calibration: _Calibration = None,
    interval_cohort: _IntervalCohort = None,
    no_interval_calibration: _NoIntervalCalibration = False,
    threads: ThreadsOpt = 0,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    version: VersionOpt = False,
) -> None:
    """Export a trained checkpoint: MC ONNX + deterministic twin, optionally TensorRT / Triton.

    Example: ugss-export best.pt --onnx model.onnx --mc-samples 8 [--int8] [--trt] [--triton repo/]
    """
    setup_logging(verbose, quiet, default=logging.WARNING)
    checkpoint = _checkpoint(checkpoint, checkpoint_option)
    options = ExportOptions(
        onnx=onnx if onnx is not None else checkpoint.with_suffix(".onnx"),
        weights=weights,
        mc_samples=mc_samples,
        noise=noise,
        threshold=threshold,
        name=name,
        version=model_version,
        exporter=exporter,
        trt=trt,
        fp16=not fp32,
        triton=triton,
        max_batch=max_batch,
        int8=int8,
        calibration=tuple(calibration or ()),
        interval_calibration=not no_interval_calibration,
        interval_cohort=interval_cohort,
    )
    outputs = [options.onnx.parent] + ([options.triton] if options.triton is not None else [])
    with new_folders_removed_on_error(*outputs):
        check_outputs(options)
        if threads:
            import torch

            torch.set_num_threads(threads)
        console.quiet = quiet
        with console.status("exporting") as status:
            result = export_checkpoint(checkpoint, options, lambda msg: status.update(msg))
    if quiet:
        _warn_interval(result)
    else:
        _report(result)


def _checkpoint(positional: Path | None, option: Path | None) -> Path:
    if positional is not None and option is not None and positional != option:
        raise InputError(f"two checkpoints given: {positional} and -i {option}")
    checkpoint = positional or option
    if checkpoint is None:
        raise InputError("no checkpoint: give CHECKPOINT or -i FILE")
    return checkpoint


def check_outputs(options: ExportOptions) -> None:
    """Before any work: the ONNX files' folder and the Triton repository can be written."""
    for path in (options.onnx, options.det_path):
        check_output_file(path, "ONNX file")
    if options.triton is not None:
        check_output_dir(options.triton, "Triton repository")


def _report(result: ExportResult) -> None:
    """One row per file; then the parity lines the issue asks for (max |Δ| vs PyTorch)."""
    table = Table(title=f"ugss-export {result.checkpoint.name} (sha256 {result.sha256[:12]}…)")
    for col in ("file", "kind", "form", "seconds", "max |Δ| vs PyTorch", "notes"):
        table.add_column(col)
    for a in result.artifacts:
        parity = f"{a.parity.max_prob_diff:.1e}" if a.parity else "–"
        table.add_row(str(a.path), a.kind, a.form, f"{a.seconds:.1f}", parity, a.note)
    Console(width=160).print(table)
    for a in result.artifacts:
        if a.parity is not None:
            print(f"parity {a.kind} ({a.path.name}): {a.parity.describe()} (limit 1e-4)")
    _report_interval(result)


def _report_interval(result: ExportResult) -> None:
    """The MC volume interval's calibration; a loud warning when it rests on few scans."""
    if KIND_MC not in result.infos:
        return
    if result.interval is None:
        print("volume interval: uncalibrated (--no-interval-calibration)")
        return
    cal = result.interval.calibration
    print(
        f"volume interval calibration ({cal.source}): {cal.describe()}; "
        f"{result.interval.seconds:.1f} s"
    )
    _warn_interval(result)


def _warn_interval(result: ExportResult) -> None:
    """A loud warning (also with --quiet) when the interval's calibration rests on few scans."""
    if result.interval is not None and result.interval.calibration.weak:
        warning = weak_warning(result.interval.calibration.n_scans)
        Console(stderr=True).print(f"[bold red]WARNING[/]: volume interval: {warning}")


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
