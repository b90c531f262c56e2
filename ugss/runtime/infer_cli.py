"""``ugss-infer``: segment head CT scans and write masks, maps, reports and pictures.

One engine (one onnxruntime session) serves every scan of a run. A scan that fails is
reported with one ``Error:`` line and the others are still processed; the exit code is then
that of the worst failure (2 for bad input).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
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
from ugss.errors import InputError, UGSSError
from ugss.runtime.batch_summary import (
    ScanOutcome,
    closing_line,
    renamed_lines,
    unique_names,
    write_summary_csv,
)
from ugss.runtime.engines import Engine, open_engine
from ugss.runtime.io import OUTPUT_SUFFIXES, expand_inputs, find_scans, read_volume
from ugss.runtime.nifti import write_nifti
from ugss.runtime.report import ScanReport, build_report
from ugss.runtime.segment import (
    DEFAULT_MIN_COMPONENT_ML,
    DEFAULT_MIN_COMPONENT_SLICES,
    Segmentation,
    segment_volume,
)
from ugss.runtime.unit_map import MAP_UNIT, quantized
from ugss.runtime.volume import Volume

log = logging.getLogger(__name__)

app = make_app(
    "Segment intracranial hemorrhage in head CT scans (NIfTI files or DICOM series "
    "folders) and write mask, probability and uncertainty maps, a volume report and pictures. "
    "Research software, not for clinical use.",
)
__all__ = ["expand_inputs", "main", "process_scan", "run_batch", "unique_names"]


@dataclass(frozen=True)
class InferOptions:
    """Per-scan settings of a run."""

    batch_size: int | None = None
    min_component_ml: float = DEFAULT_MIN_COMPONENT_ML
    min_component_slices: int = DEFAULT_MIN_COMPONENT_SLICES
    use_mc: bool = True
    pictures: bool = True
    seed: int | None = 0


def write_unit_map(path: Path, data: np.ndarray, like: Volume) -> Path:
    """A map in [0, 1] as uint8 with ``scl_slope`` 1/255, on ``like``'s source grid.

    ``data``: uint8 steps (``ugss.runtime.unit_map``, as ``Segmentation`` holds them) or floats,
    quantised here. Readers that apply the NIfTI scaling (nibabel, ITK, 3D Slicer) get values in
    [0, 1] back to within 0.002; the file is ~10x smaller and ~8x faster to gzip than float32.
    """
    steps = data if data.dtype == np.uint8 else quantized(data)
    return write_nifti(path, steps, like, slope=MAP_UNIT)


def write_outputs(volume: Volume, seg: Segmentation, out_dir: Path, name: str) -> dict[str, Path]:
    """Mask (uint8 0/1), probability and uncertainty maps as gzipped NIfTI.

    The largest (the uncertainty map, or else the probability map) is written here while one
    helper thread writes the others: gzip releases the GIL, so the two cores share the work.
    """
    jobs = {
        "mask": lambda: write_nifti(out_dir / f"{name}_mask.nii.gz", seg.mask, like=volume),
        "prob": lambda: write_unit_map(out_dir / f"{name}_prob.nii.gz", seg.prob_q, volume),
    }
    if seg.entropy_q is not None:
        entropy = seg.entropy_q
        jobs["uncertainty"] = lambda: write_unit_map(
            out_dir / f"{name}_uncertainty.nii.gz", entropy, volume
        )
    largest = "uncertainty" if "uncertainty" in jobs else "prob"
    with ThreadPoolExecutor(max_workers=1) as helper:
        futures = {key: helper.submit(job) for key, job in jobs.items() if key != largest}
        written = {largest: jobs[largest]()}
        written.update((key, f.result()) for key, f in futures.items())
    return {key: written[key] for key in jobs}


def process_scan(
    path: Path, engine: Engine, out_dir: Path, name: str, opts: InferOptions
) -> ScanReport:
    """Read → segment → write NIfTI maps → pictures → report; returns the report."""
    start = t0 = time.perf_counter()
    volume = read_volume(path)
    t_read = time.perf_counter() - t0
    seg = segment_volume(
        volume,
        engine,
        batch_size=opts.batch_size,
        min_component_ml=opts.min_component_ml,
        min_component_slices=opts.min_component_slices,
        use_mc=opts.use_mc,
        seed=opts.seed,
    )
    t0 = time.perf_counter()
    outputs: dict[str, Path] = write_outputs(volume, seg, out_dir, name)
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    if opts.pictures:
        from ugss.runtime.render import render_all

        try:
            outputs.update(render_all(volume, seg, out_dir, name))
        except Exception as exc:  # a picture must not cost the mask and report already written
            log.warning("pictures for %s failed: %s", path, exc)
            typer.echo(f"Warning: {path}: pictures failed ({exc})", err=True)
    t_pictures = time.perf_counter() - t0
    files = {
        "report_json": out_dir / f"{name}_report.json",
        "report_md": out_dir / f"{name}_report.md",
    }
    report = build_report(
        volume,
        seg,
        engine,
        timings={
            "read": t_read,
            "write": t_write,
            "pictures": t_pictures,
            "total": time.perf_counter() - start,
        },
        outputs={k: v.name for k, v in {**outputs, **files}.items()},
    )
    report.write(files["report_json"], files["report_md"])
    return report


def check_output_names(path: Path, out_dir: Path, name: str) -> None:
    """Before any work on a scan: no folder has the name of one of its outputs."""
    for suffix in OUTPUT_SUFFIXES:
        taken = out_dir / f"{name}{suffix}"
        if taken.is_dir():
            raise InputError(f"{path}: cannot write {taken}: a folder has that name")


def _remove_partial(before: dict[Path, int | None]) -> None:
    """After a failed scan: remove the outputs it wrote (``before``: their mtimes before it;
    an earlier run's files that it did not rewrite stay)."""
    for path, mtime in before.items():
        try:
            if path.is_file() and path.stat().st_mtime_ns != mtime:
                path.unlink()
        except OSError:
            log.debug("could not remove %s", path, exc_info=True)


def _mtimes(out_dir: Path, name: str) -> dict[Path, int | None]:
    paths = [out_dir / f"{name}{suffix}" for suffix in OUTPUT_SUFFIXES]
    return {p: p.stat().st_mtime_ns if p.is_file() else None for p in paths}


def run_scan(
    path: Path, engine: Engine, out_dir: Path, name: str, opts: InferOptions
) -> ScanOutcome:
    """One scan of a batch → ``ScanOutcome``: its report, or its error line and no files."""
    try:
        check_output_names(path, out_dir, name)
        before = _mtimes(out_dir, name)
        try:
            return ScanOutcome(str(path), name, process_scan(path, engine, out_dir, name, opts))
        except BaseException:
            _remove_partial(before)
            raise
    except UGSSError as exc:
        failure, code = str(exc), exc.exit_code
    except MemoryError:
        failure, code = f"{path}: out of memory (try a smaller --batch-size)", 1
    except Exception as exc:  # keep the batch going; the log has the traceback
        log.debug("failure on %s", path, exc_info=True)
        failure, code = f"{path}: internal error: {type(exc).__name__}: {exc}", 1
    return ScanOutcome(str(path), name, error=failure, exit_code=code)


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
