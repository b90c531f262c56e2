"""``ugss-synth OUT/``: write a synthetic head-CT cohort with hemorrhage masks and truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ugss.cli_support import QuietOpt, VersionOpt, check_output_dir, make_app, run_cli
from ugss.errors import InputError
from ugss.synth.cohort import validate_options, write_cohort
from ugss.synth.scan import ScanTruth
from ugss.wording import plural

app = make_app(
    (
        "Write a synthetic non-contrast head-CT cohort in the PhysioNet CT-ICH layout: "
        "OUT/ct_scans/NNN.nii, OUT/masks/NNN.nii, OUT/hemorrhage_diagnosis_raw_ct.csv, "
        "OUT/truth.csv (per-scan truth) and OUT/cohort.json."
    ),
)


def _describe(t: ScanTruth) -> str:
    kinds = ",".join(t.types) if t.types else "none"
    return (
        f"{t.scan_id}: {t.shape[0]}×{t.shape[1]}×{t.shape[2]} "
        f"@ {t.spacing[0]:g}/{t.spacing[1]:.3f} mm {t.orientation}  {kinds}  "
        f"{t.volume_ml:.2f} mL on {t.n_positive_slices} slices"
    )


def _output_folder(out: Path | None, out_option: Path | None) -> Path:
    if out is not None and out_option is not None and out != out_option:
        raise InputError(f"two output folders given: {out} and -o {out_option}")
    folder = out if out is not None else out_option
    if folder is None:
        raise InputError("no output folder: give OUT or -o DIR")
    return folder


# the options of main_command (help text as --help prints it)
_Out = Annotated[
    Path | None,
    typer.Argument(
        help="Output folder (created if missing). An earlier cohort there is replaced: its "
        "scans that this cohort does not hold are removed, so the folder holds exactly what "
        "truth.csv lists.",
        show_default=False,
        metavar="OUT",
    ),
]

_OutOption = Annotated[
    Path | None,
    typer.Option("-o", "--out", help="Output folder (instead of OUT).", metavar="DIR"),
]

_Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        help="Random seed: the same seed and options give byte-identical NIfTI and CSV files.",
    ),
]

_Matrix = Annotated[
    int,
    typer.Option(
        "--matrix",
        help="Nominal image matrix (32–1024): most scans are MATRIX×MATRIX, one in four has "
        "a cut-down field of view (78–90 % of MATRIX rows and/or columns; truth.csv has each "
        "scan's shape). Anatomy keeps its size in mm, so a smaller matrix gets larger pixels "
        "(0.4–0.5 mm at 512).",
    ),
]

_ThinFraction = Annotated[
    float,
    typer.Option(
        "--thin-fraction",
        help="Share of thin-slice scans (1–2.5 mm slices, a slab of at most 64 slices); "
        "the others have 5 mm slices.",
    ),
]

_FreeFraction = Annotated[
    float,
    typer.Option(
        "--free-fraction",
        help="Share of hemorrhage-free scans; the others carry 1–3 hemorrhage types.",
    ),
]

_SharpFraction = Annotated[
    float | None,
    typer.Option(
        "--sharp-fraction",
        help="Share of sharp-kernel scans (bone kernel: noise and edge overshoot); default: "
        "each scan draws its kernel, sharp in about 18 %.",
    ),
]

_Dicom = Annotated[
    bool,
    typer.Option("--dicom", help="Also write each scan as a DICOM CT series: OUT/dicom/NNN/."),
]

_Compress = Annotated[bool, typer.Option("--compress", help="Write .nii.gz files instead of .nii.")]

_Cavity = Annotated[
    bool,
    typer.Option(
        "--cavity",
        help="Also write OUT/cavity/NNN.nii: uint8 0/1 intracranial space (inside the inner "
        "table, above the cranial floor); truth.csv's icv_ml is its volume.",
    ),
]


@app.command()
def main_command(
    out: _Out = None,
    out_option: _OutOption = None,
    n: Annotated[int, typer.Option("-n", "--n", help="Number of scans (1–9999).")] = 20,
    seed: _Seed = 0,
    matrix: _Matrix = 512,
    thin_fraction: _ThinFraction = 0.15,
    free_fraction: _FreeFraction = 0.25,
    sharp_fraction: _SharpFraction = None,
    dicom: _Dicom = False,
    compress: _Compress = False,
    cavity: _Cavity = False,
    quiet: QuietOpt = False,
    version: VersionOpt = False,
) -> None:
    """Write a synthetic head-CT cohort under OUT in the PhysioNet CT-ICH layout.

    ct_scans/NNN.nii: int16 HU; masks/NNN.nii: uint8 0/1 hemorrhage mask on the same grid.

    hemorrhage_diagnosis_raw_ct.csv: PhysioNet's per-slice labels (SliceNumber 1-based).

    truth.csv: per scan types, volume (mL), 0-based positive slices, spacing, shape, intracranial
    volume (icv_ml) and seed.
    """
    out = _output_folder(out, out_option)
    validate_options(out, n, seed, matrix, thin_fraction, free_fraction, sharp_fraction)
    check_output_dir(out)
    err = Console(stderr=True, quiet=quiet)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("synthesizing", total=n)

        def on_scan(_index: int, truth: ScanTruth, seconds: float) -> None:
            progress.console.print(f"{_describe(truth)}  ({seconds:.2f} s)")
            progress.advance(task)

        summary = write_cohort(
            out,
            n,
            seed,
            matrix=matrix,
            thin_fraction=thin_fraction,
            free_fraction=free_fraction,
            sharp_fraction=sharp_fraction,
            dicom=dicom,
            compress=compress,
            cavity=cavity,
            on_scan=on_scan,
        )
    table = Table(title=f"{plural(len(summary.scans), 'scan')} in {summary.out_dir}")
    for col in ("scan", "types", "mL", "slices +/all", "thickness", "orientation"):
        table.add_column(col)
    for t in summary.scans:
        table.add_row(
            t.scan_id,
            ";".join(t.types) or "none",
            f"{t.volume_ml:.2f}",
            f"{t.n_positive_slices}/{t.shape[0]}",
            f"{t.spacing[0]:g} mm",
            t.orientation,
        )
    console = Console(quiet=quiet)
    console.print(table)
    with_blood = sum(1 for t in summary.scans if t.types)
    console.print(
        f"{plural(len(summary.scans), 'scan')} ({with_blood} with hemorrhage) "
        f"in {summary.seconds:.1f} s → {summary.out_dir}"
    )


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
