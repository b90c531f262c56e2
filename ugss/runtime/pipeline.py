"""One scan through the runtime, as ``ugss-infer`` runs it: read → segment → NIfTI maps →
pictures → report, and a batch's per-scan outcome (its report, or its error line and no partial
files). A library module: ``ugss.runtime.infer_cli`` parses and prints, the benchmarks call
``process_scan`` directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ugss.errors import InputError, UGSSError
from ugss.runtime.batch_summary import ScanOutcome
from ugss.runtime.engines import Engine
from ugss.runtime.io import OUTPUT_SUFFIXES, read_volume
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


@dataclass(frozen=True)
class InferOptions:
    """Per-scan settings of a run."""

    batch_size: int | None = None
    min_component_ml: float = DEFAULT_MIN_COMPONENT_ML
    min_component_slices: int = DEFAULT_MIN_COMPONENT_SLICES
    use_mc: bool = True
    pictures: bool = True
    seed: int | None = 0
    warn: Callable[[str], None] | None = None  # a warning for the user (the CLI prints it)


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
            if opts.warn is not None:
                opts.warn(f"Warning: {path}: pictures failed ({exc})")
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
