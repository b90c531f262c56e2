"""``ugss-infer``: segment head CT scans and write masks, maps, reports and pictures.

One engine (one onnxruntime session) serves every scan of a run. A scan that fails is
reported with one ``Error:`` line and the others are still processed; the exit code is then
that of the worst failure (2 for bad input).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from ugss.cli_support import (
    DeviceOpt,
    QuietOpt,
    ThreadsOpt,
    VerboseOpt,
    VersionOpt,
    check_output_dir,
    check_output_file,
    make_app,
    note,
    provider_for,
    run_cli,
    setup_logging,
    threads_or_none,
)
from ugss.errors import InputError
from ugss.runtime.batch_summary import (
    ScanOutcome,
    closing_line,
    renamed_lines,
    unique_names,
    write_summary_csv,
)
from ugss.runtime.engines import Engine, open_engine
from ugss.runtime.io import expand_inputs, find_scans
from ugss.runtime.pipeline import InferOptions, run_scan
from ugss.runtime.segment import DEFAULT_MIN_COMPONENT_ML, DEFAULT_MIN_COMPONENT_SLICES

log = logging.getLogger(__name__)

app = make_app(
    "Segment intracranial hemorrhage in head CT scans (NIfTI files or DICOM series "
    "folders) and write mask, probability and uncertainty maps, a volume report and pictures. "
    "Research software, not for clinical use.",
)
__all__ = ["expand_inputs", "main", "run_batch", "unique_names"]


def _result_line(outcome: ScanOutcome, index: int, total: int) -> str:
    """``2/5 x.nii.gz: 3.10 mL ...``; a renamed input says its output name."""
    assert outcome.report is not None
    label = f"{Path(outcome.source).name} → {outcome.name}_*" if outcome.renamed else None
    line = outcome.report.summary_line(label)
    return f"{index}/{total} {line}" if total > 1 else line


def run_batch(
    paths: list[Path],
    engine: Engine,
    out_dir: Path,
    opts: InferOptions,
    *,
    progress: bool = True,
    quiet: bool = False,
) -> list[ScanOutcome]:
    """Every scan in turn; one line per scan (``N/total`` in a batch), errors as they come."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    outcomes: list[ScanOutcome] = []
    console = Console(quiet=quiet)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    show_bar = progress and not quiet and console.is_terminal
    with Progress(*columns, console=console, transient=True, disable=not show_bar) as bar:
        task = bar.add_task("segmenting", total=len(paths))
        for i, (path, name) in enumerate(zip(paths, unique_names(paths), strict=True), 1):
            bar.update(task, description=f"segmenting {name}")
            outcome = run_scan(path, engine, out_dir, name, opts)
            outcomes.append(outcome)
            if outcome.report is None:
                typer.echo(f"Error: {outcome.error}", err=True)
            else:
                line = _result_line(outcome, i, len(paths))
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            bar.advance(task)
    return outcomes


def _close(outcomes: list[ScanOutcome], seconds: float, summary: Path | None, quiet: bool) -> None:
    """The closing lines of a batch, the ``--summary`` CSV, the list of failures."""
    if summary is not None:
        write_summary_csv(summary, outcomes)
    failed = [o for o in outcomes if o.report is None]
    if len(outcomes) > 1 and not quiet:
        lines = [closing_line(outcomes, seconds), *renamed_lines(outcomes)]
        if summary is not None:
            lines.append(f"summary: {summary}")
        typer.echo("\n".join(lines))
    if failed and len(outcomes) > 1:
        typer.echo(
            f"{len(failed)} of {len(outcomes)} scans failed:\n"
            + "\n".join(f"  {o.source}" for o in failed),
            err=True,
        )


# the options of ugss-infer (help text as printed by --help)
_Inputs = Annotated[
    list[str] | None,
    typer.Argument(
        help="NIfTI files (.nii, .nii.gz), DICOM series folders, folders holding many, or "
        "glob patterns (quoted). A labeled cohort folder (ugss-synth, PhysioNet CT-ICH) is "
        "read from its ct_scans/ only (not masks/ or dicom/).",
        show_default=False,
        metavar="INPUT",
    ),
]

_InputOption = Annotated[
    list[str] | None,
    typer.Option("-i", "--input", help="An input, as INPUT (repeat for more).", metavar="PATH"),
]

_Out = Annotated[
    Path,
    typer.Option("-o", "--out", help="Folder for the outputs (created if missing).", metavar="DIR"),
]

_Summary = Annotated[
    Path | None,
    typer.Option(
        "--summary",
        help="Also write a CSV with one row per input: scan, output name, status, "
        "hemorrhage, volume, MC interval, components, slices, intracranial volume, QC "
        "flags, error.",
        metavar="CSV",
    ),
]

_Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model file: ONNX from ugss-export (.onnx) or a TensorRT plan (.plan); with "
        "--triton-url the model's name on the server (default ugss). Default: the bundled "
        "model.",
        metavar="FILE",
    ),
]

_Provider = Annotated[
    str | None,
    typer.Option(
        "--provider",
        help="onnxruntime execution provider: auto, cpu, cuda or tensorrt (default auto; "
        "--device is the short form).",
        metavar="NAME",
        show_default=False,
    ),
]

_BatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=1,
        help="Slices per model call; bounds memory (default: sized to the model and T).",
        metavar="INT",
    ),
]

_Deterministic = Annotated[
    bool,
    typer.Option(
        "--deterministic",
        help="No MC sampling: use the model's -det.onnx twin if present, else drop MC "
        "outputs (no uncertainty map, no interval).",
    ),
]

_MinComponentMl = Annotated[
    float,
    typer.Option(
        "--min-component-ml",
        min=0.0,
        help="Remove connected components smaller than this volume (mL).",
        metavar="ML",
    ),
]

_MinComponentSlices = Annotated[
    int,
    typer.Option(
        "--min-component-slices",
        min=1,
        help="Remove findings seen on fewer adjacent axial slices than this (1 keeps "
        "one-slice findings; see the model card for what the default trades).",
        metavar="N",
    ),
]

_NoPictures = Annotated[
    bool,
    typer.Option("--no-pictures", help="Skip the PNG montage, the 3D view and the mesh file."),
]

_TritonUrl = Annotated[
    str | None,
    typer.Option(
        "--triton-url",
        help="Run the model on a Triton server at this URL (host:port).",
        metavar="URL",
    ),
]

_Seed = Annotated[
    int,
    typer.Option("--seed", help="Seed of the MC dropout noise, reset per scan.", metavar="INT"),
]


@app.command()
def infer(
    inputs: _Inputs = None,
    input_option: _InputOption = None,
    out: _Out = Path("ugss-out"),
    summary: _Summary = None,
    model: _Model = None,
    device: DeviceOpt = None,
    provider: _Provider = None,
    threads: ThreadsOpt = 0,
    batch_size: _BatchSize = None,
    deterministic: _Deterministic = False,
    min_component_ml: _MinComponentMl = DEFAULT_MIN_COMPONENT_ML,
    min_component_slices: _MinComponentSlices = DEFAULT_MIN_COMPONENT_SLICES,
    no_pictures: _NoPictures = False,
    triton_url: _TritonUrl = None,
    seed: _Seed = 0,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    version: VersionOpt = False,
) -> None:
    """Segment each scan; per scan NAME writes NAME_mask/_prob/_uncertainty.nii.gz,
    NAME_report.json/.md, NAME_montage.png, NAME_3d.png and NAME_hemorrhage.ply."""
    setup_logging(verbose, quiet, default=logging.WARNING)
    items = [*(inputs or ()), *(input_option or ())]
    if not items:
        raise InputError("no input: give INPUT... or -i PATH")
    provider_name = provider_for(device, provider) or "auto"
    check_output_dir(out)
    if summary is not None:
        check_output_file(summary, "summary file")
    found = find_scans(items)
    engine = open_engine(
        model,
        provider=provider_name,
        threads=threads_or_none(threads),
        seed=seed,
        triton_url=triton_url,
        deterministic=deterministic,
    )
    for line in found.notes:
        note(line, quiet=quiet)
    opts = InferOptions(
        batch_size=batch_size,
        min_component_ml=min_component_ml,
        min_component_slices=min_component_slices,
        use_mc=not deterministic,
        pictures=not no_pictures,
        seed=seed,
        warn=lambda line: typer.echo(line, err=True),
    )
    start = time.perf_counter()
    outcomes = run_batch(list(found.paths), engine, out, opts, quiet=quiet)
    _close(outcomes, time.perf_counter() - start, summary, quiet)
    codes = [o.exit_code for o in outcomes if o.report is None]
    if codes:
        raise typer.Exit(max(codes))


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
