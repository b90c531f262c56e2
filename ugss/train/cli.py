"""``ugss-train``: train UGSS or a baseline; thin over ``ugss.train.loop.train``.

With no ``--data``/``--manifest`` it trains on a synthetic cohort (made once, kept in the user
cache). Multi-GPU / multi-process: ``torchrun --nproc-per-node N -m ugss.train.cli …``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ugss.cli_config import config_options
from ugss.cli_support import (
    QuietOpt,
    VerboseOpt,
    VersionOpt,
    check_output_dir,
    make_app,
    run_cli,
    setup_logging,
)
from ugss.errors import InputError
from ugss.train.config import TrainConfig
from ugss.train.loop import LAST, TrainHooks, TrainResult, train

app = make_app(__doc__)
console = Console(stderr=True)

HELP_NO_UNC = (
    "Ablation: no uncertainty anywhere (no û < δ·û_max mask and no p_conf weight): "
    "plain consistency, the paper's not uncertainty-guided rows"
)


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


@app.command()
@config_options(*TrainConfig.sections().values(), before="no_uncertainty")
def main_command(
    no_uncertainty: Annotated[bool, typer.Option("--no-uncertainty", help=HELP_NO_UNC)] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    version: VersionOpt = False,
    **options: Any,
) -> None:
    """Train the UGSS mean teacher (or a baseline) and write best.pt, last.pt, metrics.jsonl."""
    # every option but these four is a field of ugss.train.config, declared there with its help
    setup_logging(verbose, quiet, default=logging.WARNING)
    out = Path(options["out"])
    check_run_folder(out, options["resume"])
    console.quiet = quiet
    if no_uncertainty:
        options.update(uncertainty_mask=False, use_confidence=False)
    config = TrainConfig.from_flat(options)
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


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
