"""``ugss-infer``: segment head CT scans and write masks, maps, reports and pictures.

One engine (one onnxruntime session) serves every scan of a run. A scan that fails is
reported with one ``Error:`` line and the others are still processed; the exit code is then
that of the worst failure (2 for bad input).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from ugss.cli_support import run_cli, setup_logging
from ugss.errors import InputError, UGSSError
from ugss.runtime.engines import Engine, open_engine
from ugss.runtime.io import expand_inputs, read_volume
from ugss.runtime.nifti import write_nifti
from ugss.runtime.report import ScanReport, build_report
from ugss.runtime.segment import DEFAULT_MIN_COMPONENT_ML, Segmentation, segment_volume
from ugss.runtime.unit_map import MAP_UNIT, quantized
from ugss.runtime.volume import Volume

log = logging.getLogger(__name__)

app = typer.Typer(
    add_completion=False,
    help="Segment intracranial hemorrhage in head CT scans (NIfTI files or DICOM series "
    "folders) and write mask, probability and uncertainty maps, a volume report and pictures. "
    "Research software, not for clinical use.",
)


@dataclass(frozen=True)
class InferOptions:
    """Per-scan settings of a run."""

    batch_size: int | None = None
    min_component_ml: float = DEFAULT_MIN_COMPONENT_ML
    use_mc: bool = True
    pictures: bool = True
    seed: int | None = 0


@dataclass
class RunResult:
    reports: list[ScanReport] = field(default_factory=list)
    failures: list[tuple[str, str, int]] = field(default_factory=list)  # (input, message, code)


def scan_name(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name or "scan"


def unique_names(paths: list[Path]) -> list[str]:
    """Output stems, made unique with the parent folder's name or a counter."""
    names = [scan_name(p) for p in paths]
    seen: dict[str, int] = {}
    out = []
    for p, n in zip(paths, names, strict=True):
        if names.count(n) > 1 and p.parent.name:
            n = f"{p.parent.name}_{n}"
        if n in seen:
            seen[n] += 1
            n = f"{n}_{seen[n]}"
        else:
            seen[n] = 1
        out.append(n)
    return out


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


def run_batch(
    paths: list[Path], engine: Engine, out_dir: Path, opts: InferOptions, *, progress: bool = True
) -> RunResult:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    result = RunResult()
    names = unique_names(paths)
    console = Console()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(
        *columns, console=console, transient=True, disable=not (progress and console.is_terminal)
    ) as bar:
        task = bar.add_task("segmenting", total=len(paths))
        for path, name in zip(paths, names, strict=True):
            bar.update(task, description=f"segmenting {name}")
            try:
                report = process_scan(path, engine, out_dir, name, opts)
            except UGSSError as exc:
                result.failures.append((str(path), str(exc), exc.exit_code))
                typer.echo(f"Error: {exc}", err=True)
            except MemoryError:
                msg = f"{path}: out of memory (try a smaller --batch-size)"
                result.failures.append((str(path), msg, 1))
                typer.echo(f"Error: {msg}", err=True)
            except Exception as exc:  # keep the batch going; the log has the traceback
                log.debug("failure on %s", path, exc_info=True)
                msg = f"{path}: internal error: {type(exc).__name__}: {exc}"
                result.failures.append((str(path), msg, 1))
                typer.echo(f"Error: {msg}", err=True)
            else:
                result.reports.append(report)
                console.print(report.summary_line(), markup=False, highlight=False)
            bar.advance(task)
    return result


@app.command()
def infer(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="NIfTI files (.nii, .nii.gz), DICOM series folders, folders holding many, or "
            "glob patterns (quoted).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option("-o", "--out", help="Folder for the outputs (created if missing).")
    ] = Path("ugss-out"),
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model file: ONNX from ugss-export (.onnx) or a TensorRT plan (.plan); with "
            "--triton-url the model's name on the server (default ugss). Default: the bundled "
            "model.",
        ),
    ] = None,
    provider: Annotated[
        str,
        typer.Option(
            "--provider", help="onnxruntime execution provider: auto, cpu, cuda or tensorrt."
        ),
    ] = "auto",
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="Threads for the model (default: all cores)."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Slices per model call; bounds memory (default: sized to the model and T).",
        ),
    ] = None,
    deterministic: Annotated[
        bool,
        typer.Option(
            "--deterministic",
            help="No MC sampling: use the model's -det.onnx twin if present, else drop MC outputs.",
        ),
    ] = False,
    min_component_ml: Annotated[
        float,
        typer.Option(
            "--min-component-ml",
            min=0.0,
            help="Remove connected components smaller than this volume (mL).",
        ),
    ] = DEFAULT_MIN_COMPONENT_ML,
    no_pictures: Annotated[
        bool,
        typer.Option("--no-pictures", help="Skip the PNG montage, the 3D view and the mesh file."),
    ] = False,
    triton_url: Annotated[
        str | None,
        typer.Option(
            "--triton-url", help="Run the model on a Triton server at this URL (host:port)."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the MC dropout noise, reset per scan.")
    ] = 0,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log each stage.")] = False,
) -> None:
    """Segment each scan; per scan NAME writes NAME_mask/_prob/_uncertainty.nii.gz,
    NAME_report.json/.md, NAME_montage.png, NAME_3d.png and NAME_hemorrhage.ply."""
    if verbose:
        setup_logging(True)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    paths = expand_inputs(inputs)
    engine = open_engine(
        model,
        provider=provider,
        threads=threads,
        seed=seed,
        triton_url=triton_url,
        deterministic=deterministic,
    )
    out.mkdir(parents=True, exist_ok=True)
    opts = InferOptions(
        batch_size=batch_size,
        min_component_ml=min_component_ml,
        use_mc=not deterministic,
        pictures=not no_pictures,
        seed=seed,
    )
    result = run_batch(paths, engine, out, opts)
    if result.failures:
        if len(paths) > 1:
            typer.echo(
                f"{len(result.failures)} of {len(paths)} scans failed:\n"
                + "\n".join(f"  {p}" for p, _, _ in result.failures),
                err=True,
            )
        raise typer.Exit(max(code for _, _, code in result.failures))


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
