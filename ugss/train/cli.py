"""``ugss-train``: train UGSS or a baseline; thin over ``ugss.train.loop.train``.

With no ``--data``/``--manifest`` it trains on a synthetic cohort (made once, kept in the user
cache). Multi-GPU / multi-process: ``torchrun --nproc-per-node N -m ugss.train.cli …``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ugss.cli_support import (
    QuietOpt,
    ThreadsOpt,
    VerboseOpt,
    VersionOpt,
    check_output_dir,
    make_app,
    run_cli,
    setup_logging,
)
from ugss.errors import InputError
from ugss.train.config import DataConfig, MethodConfig, OptimConfig, RunConfig, TrainConfig
from ugss.train.loop import LAST, TrainHooks, TrainResult, train
from ugss.train.model import ModelConfig

app = make_app(__doc__)
console = Console(stderr=True)

_D, _M, _MC, _O, _R = DataConfig(), ModelConfig(), MethodConfig(), OptimConfig(), RunConfig()
HELP_NO_UNC = (
    "Ablation: no uncertainty anywhere (no û < δ·û_max mask and no p_conf weight): "
    "plain consistency, the paper's not uncertainty-guided rows"
)
HELP_NO_MASK = "Ablation: keep every pixel (no û < δ·û_max mask); the p_conf weight stays"
HELP_NO_CONF = "Ablation: no p_conf weight on the consistency loss; the δ mask stays"


class RichHooks(TrainHooks):
    """Progress bars for caching and steps; one line per epoch."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.started = False
        self.cache_task: Any = None
        self.step_task: Any = None
        self.last_val = "–"

    def start(self) -> None:
        """Show the bars only once there is work (an early user error prints just its line)."""
        if not self.started:
            self.progress.start()
            self.started = True

    def stop(self, failed: bool = False) -> None:
        """Stop the bars; after an error they vanish, so the error is the one line left."""
        if self.started:
            self.progress.live.transient = self.progress.live.transient or failed
            self.progress.stop()

    def on_note(self, text: str) -> None:
        console.print(text)

    def on_data(self, done: int, total: int) -> None:
        self.start()
        if self.cache_task is None:
            self.cache_task = self.progress.add_task("preprocessing scans", total=total)
        self.progress.update(self.cache_task, completed=done)

    def on_start(self, info: dict[str, Any]) -> None:
        self.start()
        d = info["data"]
        split = d["split"]
        console.print(
            f"[bold]data[/]: {len(split['train_labeled'])} labeled + "
            f"{len(split['train_unlabeled'])} unlabeled training scans, {len(split['val'])} "
            f"validation, {len(split['test'])} test; w_pos = {d['w_pos']:.2f}; "
            f"batch = {d['batch']['labeled']} labeled + {d['batch']['unlabeled']} unlabeled; "
            f"device {info['device']} × {info['world_size']}"
        )
        done = info["start_epoch"] * info["steps_per_epoch"]
        self.step_task = self.progress.add_task("training", total=info["total_steps"])
        self.progress.update(self.step_task, completed=done)

    def on_step(self, step: int, epoch: int, parts: dict[str, float]) -> None:
        self.progress.update(
            self.step_task,
            completed=step,
            description=f"epoch {epoch + 1} loss {parts['loss']:.3f} val Dice {self.last_val}",
        )

    def on_epoch(self, record: dict[str, Any]) -> None:
        self.last_val = f"{record['val_dice']:.3f}"
        extra = ""
        if "cons" in record:
            extra = f" cons {record['cons']:.4f} λ_u {record['lambda_u']:.3f}"
        console.print(
            f"epoch {record['epoch']:3d}  loss {record['loss']:.4f}  sup {record['sup']:.4f}"
            f"{extra}  lr {record['lr']:.2e}  val Dice {record['val_dice']:.3f}"
            f" {record['eval_model']} (pooled {record['val_dice_pooled'] or 0:.3f})"
            f"{'  *best' if record['best'] else ''}  ({record['time_s']:.0f} s)"
        )


def _report(result: TrainResult) -> None:
    table = Table(title="ugss-train", show_header=False)
    table.add_row("best validation Dice", f"{result.best_val_dice:.3f} (epoch {result.best_epoch})")
    table.add_row("weights (--weights auto)", result.eval_model)
    if result.test_dice is not None:
        pooled = result.test_dice_pooled or 0.0
        table.add_row(
            "test Dice (best checkpoint)", f"{result.test_dice:.3f} per scan, {pooled:.3f} pooled"
        )
    table.add_row("epochs / steps", f"{result.epochs_run} / {result.steps}")
    table.add_row("stopped early", "yes" if result.stopped_early else "no")
    table.add_row("time", f"{result.seconds:.0f} s")
    table.add_row("best checkpoint", result.best_checkpoint)
    table.add_row("last checkpoint", result.last_checkpoint)
    Console().print(table)


def check_run_folder(out: Path, resume: bool) -> None:
    """Before any work: ``--out`` can be written, and ``--resume`` has a run to continue."""
    if resume and not (out / LAST).is_file():
        raise InputError(f"{out}: nothing to resume (no {LAST} there); drop --resume to start")
    check_output_dir(out, "run folder")


# the options of main_command (help text as --help prints it)
_Data = Annotated[
    Path | None,
    typer.Option(
        "-i",
        "--data",
        help="PhysioNet CT-ICH folder (ct_scans/, masks/); default: synthetic",
        metavar="DIR",
        show_default=False,
    ),
]

_Manifest = Annotated[
    Path | None,
    typer.Option("--manifest", help="CSV/JSON listing scan, optional mask and patient_id per row"),
]

_Unlabeled = Annotated[
    list[Path] | None,
    typer.Option(
        "--unlabeled",
        help="Folder of unlabeled CT scans (NIfTI files or DICOM series folders), "
        "repeatable; used by the semi-supervised methods",
        metavar="DIR",
        show_default=False,
    ),
]

_Out = Annotated[
    Path,
    typer.Option("-o", "--out", help="Folder for checkpoints and metrics", metavar="DIR"),
]

_Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --out exactly")]

_TeacherUpdate = Annotated[
    str,
    typer.Option(help="none | ema | wema (default: wema for ugss, ema for cutmix/cutpaste)"),
]

_Consistency = Annotated[str, typer.Option(help="Consistency loss: kl | smoothl1")]

_NoUncertaintyMask = Annotated[bool, typer.Option("--no-uncertainty-mask", help=HELP_NO_MASK)]

_NoCalibrate = Annotated[
    bool,
    typer.Option(
        "--no-calibrate", help="Keep the raw weighted-BCE output (no −ln w_pos logit offset)"
    ),
]

_LabeledFraction = Annotated[
    float, typer.Option(help="Share of training scans keeping their masks, in (0, 1]")
]

_TestFraction = Annotated[float, typer.Option(help="Share of patients held out")]

_ValFraction = Annotated[
    float, typer.Option(help="Share of training patients used for validation (at least 1)")
]

_Folds = Annotated[
    int,
    typer.Option(
        help="k-fold cross-validation by patient: k stratified folds, the test split is fold "
        "--fold and --test-fraction is unused (0: off; run k times for every fold)"
    ),
]
_Fold = Annotated[int, typer.Option(help="With --folds: which fold is the test split (0 … k−1)")]

_StepsPerEpoch = Annotated[int, typer.Option(help="Training steps per epoch")]

_BatchSize = Annotated[int, typer.Option(help="Crops per step (labeled + unlabeled)")]

_InputSize = Annotated[
    int, typer.Option(help="Model input size (multiple of 16), also used at inference")
]

_CropSize = Annotated[int, typer.Option(help="Training crop size (multiple of 16)")]

_WarmupEpochs = Annotated[float, typer.Option(help="Linear LR warm-up, in epochs")]

_Patience = Annotated[int, typer.Option(help="Early stopping: epochs without improvement")]

_Delta = Annotated[float, typer.Option(help="Uncertainty threshold δ (keep û < δ·û_max)")]

_LambdaMax = Annotated[float, typer.Option(help="Maximum consistency weight m")]

_LambdaInit = Annotated[float, typer.Option(help="Initial consistency weight α")]

_LambdaExponent = Annotated[float, typer.Option(help="Ramp exponent e of λ_u")]

_LambdaRamp = Annotated[
    float,
    typer.Option(
        help="Share of the planned steps over which λ_u ramps up to m; early stopping "
        "counts no epoch before λ_u reached m"
    ),
]

_TeacherNoise = Annotated[float, typer.Option(help="σ of the teacher input noise")]

_AlphaStart = Annotated[float, typer.Option(help="wEMA decay α′ at the start")]

_EmaDecay = Annotated[float, typer.Option(help="Decay of the plain-EMA teacher")]

_WemaStudentWeight = Annotated[float, typer.Option(help="w_s of the wEMA update (w_t = 1 − w_s)")]

_Arch = Annotated[
    str, typer.Option(help="Network: resunet (paper Fig. 3) | unet (plain blocks, Table 3)")
]

_DropoutAt = Annotated[
    str, typer.Option(help="MC dropout sites: head | dec1..dec4 | decoder | bottleneck | none")
]

_PositiveFraction = Annotated[
    float, typer.Option(help="Share of labeled crops taken from hemorrhage slices")
]

_UnlabeledShare = Annotated[
    float, typer.Option(help="Share of each batch from unlabeled scans (if any)")
]

_SynthScans = Annotated[int, typer.Option(help="Synthetic cohort: number of scans")]

_SynthMatrix = Annotated[int, typer.Option(help="Synthetic cohort: in-plane matrix")]

_SynthDir = Annotated[
    Path | None, typer.Option(help="Where to keep the synthetic cohort (default: user cache)")
]

_CacheDir = Annotated[
    Path | None, typer.Option(help="Preprocessed-slice cache (default: ~/.cache/ugss/slices)")
]


@app.command()
def main_command(
    data: _Data = None,
    manifest: _Manifest = None,
    unlabeled: _Unlabeled = None,
    out: _Out = Path(_R.out),
    resume: _Resume = False,
    method: Annotated[str, typer.Option(help="ugss | supervised | cutmix | cutpaste")] = _MC.method,
    teacher_update: _TeacherUpdate = "",
    consistency: _Consistency = _MC.consistency,
    no_uncertainty: Annotated[bool, typer.Option("--no-uncertainty", help=HELP_NO_UNC)] = False,
    no_uncertainty_mask: _NoUncertaintyMask = False,
    no_confidence: Annotated[bool, typer.Option("--no-confidence", help=HELP_NO_CONF)] = False,
    no_calibrate: _NoCalibrate = False,
    labeled_fraction: _LabeledFraction = _D.labeled_fraction,
    test_fraction: _TestFraction = _D.test_fraction,
    val_fraction: _ValFraction = _D.val_fraction,
    epochs: Annotated[int, typer.Option(help="Maximum number of epochs")] = _O.epochs,
    steps_per_epoch: _StepsPerEpoch = _O.steps_per_epoch,
    batch_size: _BatchSize = _O.batch_size,
    input_size: _InputSize = _D.input_size,
    crop_size: _CropSize = _D.crop_size,
    lr: Annotated[float, typer.Option(help="AdamW peak learning rate")] = _O.lr,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay")] = _O.weight_decay,
    warmup_epochs: _WarmupEpochs = _O.warmup_epochs,
    patience: _Patience = _O.patience,
    mc_samples: Annotated[int, typer.Option(help="Teacher MC-dropout samples T")] = _MC.mc_samples,
    delta: _Delta = _MC.delta,
    lambda_max: _LambdaMax = _MC.lambda_max,
    lambda_init: _LambdaInit = _MC.lambda_init,
    lambda_exponent: _LambdaExponent = _MC.lambda_exponent,
    lambda_ramp: _LambdaRamp = _MC.lambda_ramp,
    teacher_noise: _TeacherNoise = _MC.teacher_noise,
    alpha_start: _AlphaStart = _MC.alpha_start,
    alpha_end: Annotated[float, typer.Option(help="wEMA decay α′ at the end")] = _MC.alpha_end,
    ema_decay: _EmaDecay = _MC.ema_decay,
    wema_student_weight: _WemaStudentWeight = _MC.wema_student_weight,
    arch: _Arch = _M.arch,
    dropout_at: _DropoutAt = _M.dropout_at,
    dropout_rate: Annotated[float, typer.Option(help="MC dropout probability p")] = _M.dropout_rate,
    dropout_kind: Annotated[str, typer.Option(help="channel | element")] = _M.dropout_kind,
    positive_fraction: _PositiveFraction = _D.positive_fraction,
    unlabeled_share: _UnlabeledShare = _D.unlabeled_share,
    synth_scans: _SynthScans = _D.synth_scans,
    synth_matrix: _SynthMatrix = _D.synth_matrix,
    synth_seed: Annotated[int, typer.Option(help="Synthetic cohort: seed")] = _D.synth_seed,
    synth_dir: _SynthDir = None,
    cache_dir: _CacheDir = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = _R.device,
    amp: Annotated[bool, typer.Option(help="Mixed precision (CUDA only)")] = _R.amp,
    seed: Annotated[int, typer.Option(help="Seed of weights, batches and dropout")] = _R.seed,
    split_seed: Annotated[int, typer.Option(help="Seed of the patient split")] = _D.split_seed,
    folds: _Folds = _D.folds,
    fold: _Fold = _D.fold,
    threads: ThreadsOpt = _R.threads,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    version: VersionOpt = False,
) -> None:
    """Train the UGSS mean teacher (or a baseline) and write best.pt, last.pt, metrics.jsonl."""
    setup_logging(verbose, quiet, default=logging.WARNING)
    check_run_folder(out, resume)
    console.quiet = quiet
    config = _config(locals())
    is_main = int(os.environ.get("RANK", "0")) == 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    hooks = RichHooks(Progress(*columns, console=console, disable=quiet or not is_main))
    try:
        result = train(config, hooks if is_main else None)
    except BaseException:
        hooks.stop(failed=True)
        raise
    hooks.stop()
    if is_main and not quiet:
        _report(result)


def _config(args: dict) -> TrainConfig:
    """The training configuration from the command's arguments: an option fills the config
    field of its name; the rest are spelled out here."""

    def pick(cls, **given):
        names = {f.name for f in fields(cls)} - set(given)
        return cls(**{k: v for k, v in args.items() if k in names}, **given)

    def path(value) -> str | None:
        return str(value) if value else None

    no_unc = args["no_uncertainty"]
    return TrainConfig(
        data=pick(
            DataConfig, data_dir=path(args["data"]), manifest=path(args["manifest"]),
            unlabeled_dirs=tuple(str(u) for u in args["unlabeled"] or ()),
            synth_dir=path(args["synth_dir"]), cache_dir=path(args["cache_dir"]),
        ),
        model=pick(ModelConfig),
        method=pick(
            MethodConfig, uncertainty_mask=not (no_unc or args["no_uncertainty_mask"]),
            use_confidence=not (no_unc or args["no_confidence"]),
            calibrate=not args["no_calibrate"],
        ),
        optim=pick(OptimConfig),
        run=pick(RunConfig, out=str(args["out"])),
    )  # fmt: skip


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
