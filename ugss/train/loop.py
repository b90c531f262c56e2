"""``train(config) -> TrainResult``: the loop of Algorithm 1 around the step losses.

Per step: draw a batch, set the LR (linear warm-up then cosine, section 3.4) and λ_u (eq. 10,
ramped over ``lambda_ramp`` of the planned steps), compute the method's loss, update the student
with AdamW, update the teacher (eq. 11). Per epoch (a fixed number of steps): validation Dice of
the student and, for the mean-teacher methods, of the teacher (the paper's output is both);
the better one is the epoch's score and its name is the checkpoint's ``eval_model`` (what
``load_checkpoint(which="auto")`` loads; the student on a tie); one JSONL line of metrics,
``last.pt``; ``best.pt`` when the score improved; early stopping after ``patience`` counted
epochs without improvement, where only epochs that ended with λ_u at its maximum count
(``early_stopping_counts``).

Diagnostics in each line of ``metrics.jsonl`` besides the losses: ``lambda_u`` (at the epoch's
last step) and ``ramp_done``; ``alpha`` (the schedule's α′) and ``teacher_decay`` (the plain-EMA
decay the teacher update amounts to, ``teacher.effective_decay``); for ``ugss`` the epoch means
of ``unl_pass_delta`` (share of unlabeled pixels passing the δ mask) and ``unl_conf`` (their
mean p_conf), both as the teacher's uncertainty gives them whatever the ablation switches use;
``val_dice_student`` / ``val_dice_teacher`` and ``eval_model``; ``ts_dice_unlabeled``, the Dice
between the teacher's and the student's deterministic masks on a fixed sample of up to 16
unlabeled training slices (None without a teacher, unlabeled scans, or any foreground).

``resume`` restarts from ``last.pt`` with every state restored,
including the random generators, so an interrupted run continues as if it had not stopped.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ugss.errors import ConfigError
from ugss.runtime.preprocess import windows_to_str
from ugss.train.checkpoint import Checkpoint, load, save_checkpoint
from ugss.train.config import MethodConfig, TrainConfig
from ugss.train.data import BatchSampler, TrainingData, prepare_data
from ugss.train.distributed import DistInfo, barrier, broadcast_flag, init_distributed, shutdown
from ugss.train.losses import prior_correction, raw_threshold
from ugss.train.manifest import ScanRecord, load_records, read_physionet
from ugss.train.model import ResUNet, build_model
from ugss.train.schedules import WarmupCosine, consistency_weight, cosine_decay
from ugss.train.step import StepSettings, compute_loss
from ugss.train.synthetic import (
    ensure_synthetic_cohort,
    is_complete_cohort,
    synthetic_cohort_dir,
)
from ugss.train.teacher import effective_decay, make_teacher, update_teacher
from ugss.train.unlabeled import unlabeled_records
from ugss.train.validate import ValidationResult, dice, predict_images, sample_slices, validate

log = logging.getLogger(__name__)

LAST, BEST, METRICS, SUMMARY = "last.pt", "best.pt", "metrics.jsonl", "summary.json"
SCHEDULE_KEYS = ("lambda_u", "alpha", "teacher_decay", "lr")  # logged at the epoch's last step


class TrainHooks:
    """Progress callbacks (the CLI draws bars with them); every method is optional."""

    def on_note(self, text: str) -> None: ...

    def on_data(self, done: int, total: int) -> None: ...

    def on_start(self, info: dict[str, Any]) -> None: ...

    def on_step(self, step: int, epoch: int, parts: dict[str, float]) -> None: ...

    def on_epoch(self, record: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class TrainResult:
    out_dir: str
    best_checkpoint: str
    last_checkpoint: str
    best_val_dice: float
    best_epoch: int
    epochs_run: int
    steps: int
    stopped_early: bool
    seconds: float
    test_dice: float | None
    test_dice_pooled: float | None = None
    eval_model: str = "student"  # the weights best.pt validated best (``load_checkpoint`` auto)
    lambda_u_reached: float = 0.0  # λ_u of the last step trained
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    best: float = -1.0
    best_epoch: int = 0
    since_best: int = 0
    stopped: bool = False
    elapsed: float = 0.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    return torch.device(name)


def _load_records(config: TrainConfig, dinfo: DistInfo, hooks: TrainHooks) -> list[ScanRecord]:
    """The labeled cohort (``--data``, ``--manifest`` or synthetic) plus ``--unlabeled`` scans."""
    records = _labeled_records(config, dinfo, hooks)
    if config.data.unlabeled_dirs:
        records += unlabeled_records(config.data.unlabeled_dirs, records)
    return records


def _labeled_records(config: TrainConfig, dinfo: DistInfo, hooks: TrainHooks) -> list[ScanRecord]:
    d = config.data
    if d.data_dir or d.manifest:
        return load_records(d.data_dir, d.manifest)
    if dinfo.is_main:
        if not is_complete_cohort(synthetic_cohort_dir(d)):
            hooks.on_note(
                f"generating a synthetic cohort of {d.synth_scans} scans "
                f"(matrix {d.synth_matrix}) in {synthetic_cohort_dir(d)}"
            )
        root = ensure_synthetic_cohort(d)
    barrier(dinfo)
    if not dinfo.is_main:
        root = ensure_synthetic_cohort(d)
    return read_physionet(root)


def _prepare(config: TrainConfig, dinfo: DistInfo, hooks: TrainHooks) -> TrainingData:
    records = _load_records(config, dinfo, hooks)
    cache = config.data.cache_dir
    if dinfo.is_main:
        data = prepare_data(records, config.data, cache_root=cache, progress=hooks.on_data)
    barrier(dinfo)
    if not dinfo.is_main:
        data = prepare_data(records, config.data, cache_root=cache)
    return data


def _resume_config(config: TrainConfig, ckpt: Checkpoint) -> TrainConfig:
    """The saved configuration, with this invocation's run settings (device, threads, out)."""
    if ckpt.config is None or not ckpt.can_resume:
        raise ConfigError("the checkpoint holds no training state to resume from")
    saved = TrainConfig.from_dict(ckpt.config)
    run = asdict(config.run)
    run["seed"] = saved.run.seed
    merged = TrainConfig.from_dict({**saved.to_dict(), "run": run})
    if {k: v for k, v in merged.to_dict().items() if k != "run"} != {
        k: v for k, v in config.to_dict().items() if k != "run"
    }:
        log.warning("resuming with the configuration saved in the checkpoint, not the one given")
    return merged


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _truncate_log(path: Path, epochs: int) -> None:
    """Keep the JSONL lines of the epochs a resumed checkpoint already covers."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["epoch"] <= epochs]
    path.write_text("".join(ln + "\n" for ln in keep))


def _decay(config: TrainConfig, step: int) -> float:
    m = config.method
    kind = m.resolved_teacher_update
    if kind == "wema":
        return cosine_decay(step, config.optim.total_steps, start=m.alpha_start, end=m.alpha_end)
    if kind == "ema":
        return m.ema_decay
    return 0.0


def early_stopping_counts(steps_done: int, ramp_steps: int, uses_lambda: bool) -> bool:
    """Whether an epoch that ends after ``steps_done`` steps counts towards the patience.

    For the methods with a consistency term only epochs trained to the end with λ_u = m do
    (``MethodConfig.ramp_steps``): a run is never judged before it used the unlabeled data fully.
    """
    return not uses_lambda or steps_done >= ramp_steps


def checkpoint_eligible(ramp_done: bool, method: MethodConfig) -> bool:
    """Whether this epoch's weights may become ``best.pt``.

    With ``select_after_ramp`` a consistency method's best checkpoint is chosen only among the
    epochs that ended with λ_u = m, so selection on the labeled site's validation scans cannot
    pick a model from before the unlabeled data had its full weight (with ``lambda_ramp`` 1 that
    is the last epoch). The ramp ends at the latest with the planned steps, so a finished run
    always has one.
    """
    return ramp_done or not (method.select_after_ramp and method.uses_teacher)


def pick_eval_model(val_dice: Mapping[str, float]) -> str:
    """The weights with the higher validation Dice; the student on a tie (the paper's output)."""
    teacher = val_dice.get("teacher")
    if teacher is not None and teacher > val_dice.get("student", -math.inf):
        return "teacher"
    return "student"


def train(config: TrainConfig, hooks: TrainHooks | None = None) -> TrainResult:
    """Train one model as ``config`` says; see the module docstring for what is written."""
    hooks = hooks or TrainHooks()
    t_start = time.perf_counter()
    device = resolve_device(config.run.device)
    dinfo = init_distributed(device.type)
    try:
        result = _train(config, hooks, device, dinfo, t_start)
        # no rank tears gloo down while another still runs: in 1 of 7 suite runs under load a
        # DDP rank was aborted at exit ("terminate called without an active exception")
        barrier(dinfo)
        return result
    finally:
        shutdown(dinfo)


@dataclass
class _Run:
    """Everything one training run holds while it runs (mutable; internal to this module)."""

    config: TrainConfig
    device: torch.device
    dinfo: DistInfo
    data: TrainingData
    student: ResUNet
    teacher: ResUNet | None
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosine
    scaler: torch.amp.GradScaler
    rng: np.random.Generator
    sampler: BatchSampler
    settings: StepSettings
    state: _State
    out: Path
    summary: dict[str, Any]
    val_dice: dict[str, float] = field(default_factory=dict)
    unlabeled_sample: np.ndarray | None = None  # fixed slices for the teacher–student Dice

    @property
    def amp(self) -> bool:
        return self.config.run.amp and self.device.type == "cuda"

    @property
    def offset(self) -> float:
        return prior_correction(self.data.w_pos) if self.config.method.calibrate else 0.0

    @property
    def raw_threshold(self) -> float:
        return raw_threshold(self.offset)

    @property
    def ramp_steps(self) -> int:
        return self.config.method.ramp_steps(self.config.optim.total_steps)

    def lambda_u(self, step: int) -> float:
        """Eq. 10 with δ_c = ``step + 1`` (steps done after this one) and δ_T = the ramp."""
        m = self.config.method
        return consistency_weight(
            step + 1,
            self.ramp_steps,
            initial=m.lambda_init,
            maximum=m.lambda_max,
            exponent=m.lambda_exponent,
        )


def _open(
    config: TrainConfig, hooks: TrainHooks, device: torch.device, dinfo: DistInfo
) -> tuple[TrainConfig, Checkpoint | None, TrainingData]:
    """Read ``last.pt`` when resuming (its configuration wins) and prepare the data."""
    out = Path(config.run.out)
    last_path = out / LAST
    ckpt = None
    if config.run.resume and last_path.is_file():
        ckpt = load(last_path)
        config = _resume_config(config, ckpt)
        log.info("resuming %s at epoch %d", last_path, ckpt.epoch)
    elif last_path.exists() and not config.run.resume:
        raise ConfigError(f"{out} already holds a run: pass --resume to continue it or a new --out")
    out.mkdir(parents=True, exist_ok=True)
    data = _prepare(config, dinfo, hooks)
    if ckpt is not None and ckpt.data.get("split") != data.split.to_dict():
        raise ConfigError("the data split differs from the checkpoint's: the data changed")
    return config, ckpt, data


def _build(config: TrainConfig, device: torch.device, dinfo: DistInfo, data: TrainingData) -> _Run:
    """Networks, optimizer, schedules, sampler and step settings for a fresh run."""
    mcfg, ocfg, rcfg = config.method, config.optim, config.run
    torch.manual_seed(rcfg.seed)  # the same initial weights on every rank
    student = build_model(config.model).to(device)
    teacher = make_teacher(student) if mcfg.uses_teacher else None
    fmt = torch.channels_last if rcfg.channels_last else torch.contiguous_format
    for net in (student, teacher):
        if net is not None:
            net.to(memory_format=fmt)
    optimizer = torch.optim.AdamW(student.parameters(), lr=ocfg.lr, weight_decay=ocfg.weight_decay)
    warmup = round(ocfg.warmup_epochs * ocfg.steps_per_epoch)
    schedule = WarmupCosine(ocfg.total_steps, warmup, ocfg.lr, ocfg.min_lr)
    scaler = torch.amp.GradScaler(device.type, enabled=rcfg.amp and device.type == "cuda")
    rng = np.random.default_rng([rcfg.seed, dinfo.rank])
    torch.manual_seed(rcfg.seed * 7919 + dinfo.rank + 1)  # dropout and teacher-noise streams
    wrapped: torch.nn.Module = student
    if dinfo.enabled:
        ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(student, device_ids=ids)
    sampler = BatchSampler(
        data,
        config.data,
        batch_size=ocfg.batch_size,
        use_unlabeled=mcfg.method != "supervised",
        rng=rng,
    )
    settings = StepSettings(
        method=mcfg.method,
        consistency=mcfg.consistency,
        uncertainty_mask=mcfg.uncertainty_mask,
        use_confidence=mcfg.use_confidence,
        delta=mcfg.delta,
        mc_samples=mcfg.mc_samples,
        teacher_noise=mcfg.teacher_noise,
        w_pos=data.w_pos,
    )
    summary = data.summary()
    summary["batch"] = {"labeled": sampler.n_labeled, "unlabeled": sampler.n_unlabeled}
    sample = sample_slices(data.role("train_unlabeled")) if teacher is not None else None
    return _Run(
        config, device, dinfo, data, student, teacher, wrapped, optimizer, schedule, scaler,
        rng, sampler, settings, _State(), Path(rcfg.out), summary, unlabeled_sample=sample,
    )  # fmt: skip


def _restore(run: _Run, ckpt: Checkpoint) -> None:
    """Every state of ``last.pt``, so the run continues as if it had not stopped."""
    assert ckpt.can_resume  # _resume_config refused it otherwise
    run.student.load_state_dict(ckpt.student)
    if run.teacher is not None:
        run.teacher.load_state_dict(ckpt.teacher)
    run.optimizer.load_state_dict(ckpt.optimizer)
    run.schedule.load_state_dict(ckpt.scheduler)
    run.scaler.load_state_dict(ckpt.scaler)
    run.state = _State(**ckpt.state)  # type: ignore[arg-type]
    run.val_dice = dict(ckpt.val_dice)
    rngs = ckpt.rng or []
    _restore_rng(run.rng, rngs[run.dinfo.rank] if run.dinfo.enabled else rngs[0])
    _truncate_log(run.out / METRICS, run.state.epoch)


def _payload(run: _Run) -> Checkpoint:
    rngs = [_rng_state(run.rng)]
    if run.dinfo.enabled:
        rngs = [None] * run.dinfo.world_size
        torch.distributed.all_gather_object(rngs, _rng_state(run.rng))
    config, state = run.config, run.state
    return Checkpoint(
        config=config.to_dict(),
        model=config.model.to_dict(),
        input_size=config.data.input_size,
        windows=windows_to_str(run.data.windows),
        method=config.method.method,
        eval_model=pick_eval_model(run.val_dice),
        val_dice=dict(run.val_dice),
        logit_offset=run.offset,
        threshold=0.5,
        student=run.student.state_dict(),
        teacher=None if run.teacher is None else run.teacher.state_dict(),
        optimizer=run.optimizer.state_dict(),
        scheduler=run.schedule.state_dict(),
        scaler=run.scaler.state_dict(),
        state=asdict(state),
        rng=rngs,
        data=run.summary,
        step=state.step,
        epoch=state.epoch,
    )


def _step(run: _Run) -> tuple[float, dict[str, float]]:
    """One optimisation step of the student and one teacher update; returns the loss parts."""
    mcfg, state = run.config.method, run.state
    batch = run.sampler.next().to(run.device, run.config.run.channels_last)
    lr = run.schedule.apply(run.optimizer, state.step)
    lam = run.lambda_u(state.step)
    with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.amp):
        parts = compute_loss(run.net, run.teacher, batch, run.settings, lambda_u=lam, rng=run.rng)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(parts.total).backward()
    if run.config.optim.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.student.parameters(), run.config.optim.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    decay = _decay(run.config, state.step)
    kind = mcfg.resolved_teacher_update
    if run.teacher is not None:
        w_s = mcfg.wema_student_weight
        update_teacher(kind, run.teacher, run.student, decay=decay, student_weight=w_s)
    state.step += 1
    run.schedule.step_count = state.step
    loss = float(parts.total.detach())
    schedule = {"lambda_u": lam, "alpha": decay, "lr": lr}
    if run.teacher is not None:
        schedule["teacher_decay"] = effective_decay(kind, decay, mcfg.wema_student_weight)
    return loss, {**parts.parts, **schedule}


def _train_epoch(run: _Run, hooks: TrainHooks) -> dict[str, float]:
    """``steps_per_epoch`` steps: epoch means of the loss parts, last values of the schedules."""
    run.student.train()
    sums: dict[str, float] = defaultdict(float)
    last: dict[str, float] = {}
    n = run.config.optim.steps_per_epoch
    for _ in range(n):
        loss, parts = _step(run)
        sums["loss"] += loss
        for k, v in parts.items():
            if k in SCHEDULE_KEYS:
                last[k] = v
            else:
                sums[k] += v
        hooks.on_step(run.state.step, run.state.epoch, {"loss": loss, **parts})
    return {**{k: v / n for k, v in sums.items()}, **last}


def _validate_all(run: _Run) -> dict[str, ValidationResult]:
    """Validation of the student and (mean-teacher methods) of the teacher."""
    rcfg = run.config.run
    nets = {"student": run.student}
    if run.teacher is not None:
        nets["teacher"] = run.teacher
    return {
        name: validate(
            net,
            run.data.role("val"),
            device=run.device,
            batch_size=rcfg.val_batch_size,
            channels_last=rcfg.channels_last,
            threshold=run.raw_threshold,
        )
        for name, net in nets.items()
    }


def _teacher_student_dice(run: _Run) -> float | None:
    """Dice between the teacher's and the student's masks on the fixed unlabeled sample."""
    if run.teacher is None or run.unlabeled_sample is None:
        return None
    masks = [
        predict_images(
            net, run.unlabeled_sample, device=run.device, batch_size=run.config.run.val_batch_size
        )
        >= run.raw_threshold
        for net in (run.teacher, run.student)
    ]
    return dice(masks[0], masks[1])


def _end_epoch(run: _Run, means: dict[str, float], t_epoch: float) -> dict[str, Any]:
    """Validate, update the best epoch and early stopping (rank 0); the metrics-log record."""
    state, mcfg = run.state, run.config.method
    vals = _validate_all(run)
    run.val_dice = {name: v.dice for name, v in vals.items()}
    which = pick_eval_model(run.val_dice)
    val = vals[which]
    ramp_done = state.step >= run.ramp_steps
    improved = val.dice > state.best and checkpoint_eligible(ramp_done, mcfg)
    if improved:
        state.best, state.best_epoch, state.since_best = val.dice, state.epoch, 0
    elif early_stopping_counts(state.step, run.ramp_steps, mcfg.uses_teacher):
        state.since_best += 1
    state.stopped = state.since_best >= run.config.optim.patience
    return {
        "epoch": state.epoch,
        "step": state.step,
        **means,
        "ramp_done": ramp_done,
        **val.to_dict(),
        **{f"val_dice_{name}": d for name, d in run.val_dice.items()},
        "eval_model": which,
        "ts_dice_unlabeled": _teacher_student_dice(run),
        "best": improved,
        "epoch_s": time.perf_counter() - t_epoch,
        "time_s": state.elapsed,
    }


def _start_info(run: _Run) -> dict[str, Any]:
    ocfg = run.config.optim
    return {
        "total_steps": ocfg.total_steps,
        "steps_per_epoch": ocfg.steps_per_epoch,
        "start_epoch": run.state.epoch,
        "epochs": ocfg.epochs,
        "device": str(run.device),
        "world_size": run.dinfo.world_size,
        "data": run.summary,
    }


def _train(
    config: TrainConfig,
    hooks: TrainHooks,
    device: torch.device,
    dinfo: DistInfo,
    t_start: float,
) -> TrainResult:
    if dinfo.enabled and device.type == "cuda":
        device = torch.device("cuda", dinfo.local_rank)
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    config, ckpt, data = _open(config, hooks, device, dinfo)
    run = _build(config, device, dinfo, data)
    log_path = run.out / METRICS
    if ckpt is not None:
        _restore(run, ckpt)
    elif log_path.exists():
        log_path.unlink()
    hooks.on_start(_start_info(run))
    state, t_run, elapsed0 = run.state, time.perf_counter(), run.state.elapsed
    last_lambda = 0.0
    while state.epoch < config.optim.epochs and not state.stopped:
        t_epoch = time.perf_counter()
        means = _train_epoch(run, hooks)
        last_lambda = means.get("lambda_u", 0.0)
        state.epoch += 1
        state.elapsed = elapsed0 + time.perf_counter() - t_run
        record: dict[str, Any] = {}
        if dinfo.is_main:
            record = _end_epoch(run, means, t_epoch)
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        state.stopped = broadcast_flag(dinfo, state.stopped, device)
        ckpt_now = _payload(run)
        if dinfo.is_main:
            save_checkpoint(run.out / LAST, ckpt_now.to_dict())
            if state.best_epoch == state.epoch:
                shutil.copyfile(run.out / LAST, run.out / BEST)
            hooks.on_epoch(record)
    seconds = time.perf_counter() - t_start
    result = _finish(config, data, state, run.out, device, seconds, dinfo.is_main)
    result = replace(result, lambda_u_reached=last_lambda)
    if dinfo.is_main:
        (run.out / SUMMARY).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _finish(
    config: TrainConfig,
    data: TrainingData,
    state: _State,
    out: Path,
    device: torch.device,
    seconds: float,
    is_main: bool = True,
) -> TrainResult:
    """Score the best checkpoint's ``eval_model`` on the test split (model-grid Dice)."""
    test_dice = test_pooled = None
    best_path = out / BEST
    eval_model = "student"
    if is_main and best_path.is_file():
        best = load(best_path, map_location=device)
        eval_model = best.eval_model
    if is_main and data.split.test and best_path.is_file():
        model = ResUNet(config.model).to(device)
        model.load_state_dict(best.weights(eval_model))
        test = validate(
            model,
            data.role("test"),
            device=device,
            batch_size=config.run.val_batch_size,
            threshold=raw_threshold(best.logit_offset),
        )
        test_dice, test_pooled = test.dice, test.pooled
    summary = data.summary()
    return TrainResult(
        out_dir=str(out),
        best_checkpoint=str(best_path),
        last_checkpoint=str(out / LAST),
        best_val_dice=state.best,
        best_epoch=state.best_epoch,
        epochs_run=state.epoch,
        steps=state.step,
        stopped_early=state.stopped and state.epoch < config.optim.epochs,
        seconds=seconds,
        test_dice=test_dice,
        test_dice_pooled=test_pooled,
        eval_model=eval_model,
        data=summary,
    )
