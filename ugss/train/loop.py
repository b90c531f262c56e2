"""``train(config) -> TrainResult``: the loop of Algorithm 1 around the step losses.

Per step: draw a batch, set the LR (linear warm-up then cosine, section 3.4) and λ_u (eq. 10),
compute the method's loss, update the student with AdamW, update the teacher (eq. 11). Per
epoch (a fixed number of steps): validation Dice of the teacher (the student for
``supervised``), one JSONL line of metrics, ``last.pt``; ``best.pt`` when validation Dice
improved; early stopping after ``patience`` epochs without improvement. ``resume`` restarts from
``last.pt`` with every state restored, including the random generators, so an interrupted run
continues as if it had not stopped.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ugss.errors import ConfigError
from ugss.runtime.preprocess import windows_to_str
from ugss.train.checkpoint import read_checkpoint, save_checkpoint
from ugss.train.config import TrainConfig
from ugss.train.data import BatchSampler, TrainingData, prepare_data
from ugss.train.distributed import DistInfo, barrier, broadcast_flag, init_distributed, shutdown
from ugss.train.losses import prior_correction
from ugss.train.manifest import ScanRecord, load_records, read_physionet
from ugss.train.model import ResUNet, build_model
from ugss.train.schedules import WarmupCosine, consistency_weight, cosine_decay
from ugss.train.step import StepSettings, compute_loss
from ugss.train.synthetic import (
    ensure_synthetic_cohort,
    is_complete_cohort,
    synthetic_cohort_dir,
)
from ugss.train.teacher import make_teacher, update_teacher
from ugss.train.validate import validate

log = logging.getLogger(__name__)

LAST, BEST, METRICS, SUMMARY = "last.pt", "best.pt", "metrics.jsonl", "summary.json"


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


def _resume_config(config: TrainConfig, doc: dict[str, Any]) -> TrainConfig:
    """The saved configuration, with this invocation's run settings (device, threads, out)."""
    saved = TrainConfig.from_dict(doc["config"])
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


def train(config: TrainConfig, hooks: TrainHooks | None = None) -> TrainResult:
    """Train one model as ``config`` says; see the module docstring for what is written."""
    hooks = hooks or TrainHooks()
    t_start = time.perf_counter()
    device = resolve_device(config.run.device)
    dinfo = init_distributed(device.type)
    try:
        return _train(config, hooks, device, dinfo, t_start)
    finally:
        shutdown(dinfo)


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
    out = Path(config.run.out)
    last_path, best_path, log_path = out / LAST, out / BEST, out / METRICS
    doc = None
    if config.run.resume and last_path.is_file():
        doc = read_checkpoint(last_path)
        config = _resume_config(config, doc)
        log.info("resuming %s at epoch %d", last_path, doc["epoch"])
    elif last_path.exists() and not config.run.resume:
        raise ConfigError(f"{out} already holds a run: pass --resume to continue it or a new --out")
    out.mkdir(parents=True, exist_ok=True)

    data = _prepare(config, dinfo, hooks)
    if doc is not None and doc["data"]["split"] != data.split.to_dict():
        raise ConfigError("the data split differs from the checkpoint's: the data changed")
    mcfg, ocfg, rcfg = config.method, config.optim, config.run

    torch.manual_seed(rcfg.seed)  # the same initial weights on every rank
    student = build_model(config.model).to(device)
    teacher = make_teacher(student) if mcfg.uses_teacher else None
    fmt = torch.channels_last if rcfg.channels_last else torch.contiguous_format
    student.to(memory_format=fmt)
    if teacher is not None:
        teacher.to(memory_format=fmt)
    optimizer = torch.optim.AdamW(student.parameters(), lr=ocfg.lr, weight_decay=ocfg.weight_decay)
    total = ocfg.total_steps
    warmup = round(ocfg.warmup_epochs * ocfg.steps_per_epoch)
    schedule = WarmupCosine(total, warmup, ocfg.lr, ocfg.min_lr)
    amp = rcfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    rng = np.random.default_rng([rcfg.seed, dinfo.rank])
    torch.manual_seed(rcfg.seed * 7919 + dinfo.rank + 1)  # dropout and teacher-noise streams
    state = _State()
    if doc is not None:
        student.load_state_dict(doc["student"])
        if teacher is not None:
            teacher.load_state_dict(doc["teacher"])
        optimizer.load_state_dict(doc["optimizer"])
        schedule.load_state_dict(doc["scheduler"])
        scaler.load_state_dict(doc["scaler"])
        state = _State(**doc["state"])
        _restore_rng(rng, doc["rng"][dinfo.rank] if dinfo.enabled else doc["rng"][0])
        _truncate_log(log_path, state.epoch)
    elif log_path.exists():
        log_path.unlink()

    net: torch.nn.Module = student
    if dinfo.enabled:
        net = DistributedDataParallel(
            student, device_ids=[device.index] if device.type == "cuda" else None
        )
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
    eval_name = "teacher" if teacher is not None else "student"
    offset = prior_correction(data.w_pos) if mcfg.calibrate else 0.0
    raw_threshold = 1.0 / (1.0 + math.exp(offset))  # sigmoid(logit + offset) >= ½
    summary = data.summary()
    summary["batch"] = {"labeled": sampler.n_labeled, "unlabeled": sampler.n_unlabeled}
    hooks.on_start(
        {
            "total_steps": total,
            "steps_per_epoch": ocfg.steps_per_epoch,
            "start_epoch": state.epoch,
            "epochs": ocfg.epochs,
            "device": str(device),
            "world_size": dinfo.world_size,
            "data": summary,
        }
    )
    val_scans = data.role("val")
    t_run = time.perf_counter()
    elapsed0 = state.elapsed

    def payload() -> dict[str, Any]:
        rngs = [_rng_state(rng)]
        if dinfo.enabled:
            rngs = [None] * dinfo.world_size
            torch.distributed.all_gather_object(rngs, _rng_state(rng))
        return {
            "config": config.to_dict(),
            "model": config.model.to_dict(),
            "input_size": config.data.input_size,
            "windows": windows_to_str(data.windows),
            "method": mcfg.method,
            "eval_model": eval_name,
            "logit_offset": offset,
            "threshold": 0.5,
            "student": student.state_dict(),
            "teacher": None if teacher is None else teacher.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "state": asdict(state),
            "rng": rngs,
            "data": summary,
            "step": state.step,
            "epoch": state.epoch,
        }

    while state.epoch < ocfg.epochs and not state.stopped:
        epoch = state.epoch
        student.train()
        sums: dict[str, float] = defaultdict(float)
        t_epoch = time.perf_counter()
        lr = lam = decay = 0.0
        for _ in range(ocfg.steps_per_epoch):
            batch = sampler.next().to(device, rcfg.channels_last)
            lr = schedule.apply(optimizer, state.step)
            lam = consistency_weight(
                state.step,
                total,
                initial=mcfg.lambda_init,
                maximum=mcfg.lambda_max,
                exponent=mcfg.lambda_exponent,
            )
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                parts = compute_loss(net, teacher, batch, settings, lambda_u=lam, rng=rng)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(parts.total).backward()
            if ocfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(student.parameters(), ocfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            decay = _decay(config, state.step)
            if teacher is not None:
                update_teacher(
                    mcfg.resolved_teacher_update,
                    teacher,
                    student,
                    decay=decay,
                    student_weight=mcfg.wema_student_weight,
                )
            state.step += 1
            schedule.step_count = state.step
            loss = float(parts.total.detach())
            sums["loss"] += loss
            for k, v in parts.parts.items():
                sums[k] += v
            hooks.on_step(state.step, epoch, {"loss": loss, **parts.parts})
        state.epoch = epoch + 1
        state.elapsed = elapsed0 + time.perf_counter() - t_run
        stop = False
        if dinfo.is_main:
            eval_net = teacher if teacher is not None else student
            val = validate(
                eval_net,
                val_scans,
                device=device,
                batch_size=rcfg.val_batch_size,
                channels_last=rcfg.channels_last,
                threshold=raw_threshold,
            )
            improved = val.dice > state.best
            if improved:
                state.best, state.best_epoch, state.since_best = val.dice, state.epoch, 0
            else:
                state.since_best += 1
            state.stopped = state.since_best >= ocfg.patience
            record = {
                "epoch": state.epoch,
                "step": state.step,
                **{k: v / ocfg.steps_per_epoch for k, v in sums.items()},
                "lambda_u": lam,
                "alpha": decay,
                "lr": lr,
                **val.to_dict(),
                "best": improved,
                "epoch_s": time.perf_counter() - t_epoch,
                "time_s": state.elapsed,
            }
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            stop = state.stopped
        stop = broadcast_flag(dinfo, stop, device)
        state.stopped = stop
        doc_now = payload()
        if dinfo.is_main:
            save_checkpoint(last_path, doc_now)
            if state.best_epoch == state.epoch:
                shutil.copyfile(last_path, best_path)
            hooks.on_epoch(record)
    seconds = time.perf_counter() - t_start
    result = _finish(config, data, state, out, device, teacher is not None, seconds, dinfo.is_main)
    if dinfo.is_main:
        (out / SUMMARY).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _finish(
    config: TrainConfig,
    data: TrainingData,
    state: _State,
    out: Path,
    device: torch.device,
    has_teacher: bool,
    seconds: float,
    is_main: bool = True,
) -> TrainResult:
    """Score the best checkpoint on the test split (model-grid Dice, as for validation)."""
    test_dice = test_pooled = None
    best_path = out / BEST
    if is_main and data.split.test and best_path.is_file():
        doc = read_checkpoint(best_path, map_location=device)
        model = ResUNet(config.model).to(device)
        model.load_state_dict(doc["teacher"] if has_teacher else doc["student"])
        test = validate(
            model,
            data.role("test"),
            device=device,
            batch_size=config.run.val_batch_size,
            threshold=1.0 / (1.0 + math.exp(float(doc.get("logit_offset", 0.0)))),
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
        data=summary,
    )
