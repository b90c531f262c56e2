"""The training configuration: frozen dataclasses, saved whole in every checkpoint.

Defaults are chosen for the synthetic default run (2 CPU cores, ≤ 10 minutes, validation
Dice ≥ 0.8); ``benchmarks/README-train.md`` records the measurements behind them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from ugss.errors import ConfigError
from ugss.known_keys import known_keys
from ugss.options import THREADS_HELP, option
from ugss.runtime.preprocess import DEFAULT_WINDOWS, Window, windows_from_str, windows_to_str
from ugss.train.kinds import DEFAULT_TEACHER_UPDATE, Consistency, Method, TeacherUpdate, choice
from ugss.train.model import DOWNSAMPLE, ModelConfig

DEVICES = ("auto", "cpu", "cuda")

T = TypeVar("T")
log = logging.getLogger(__name__)


class _Section:
    """``to_dict``/``from_dict`` for the frozen config sections.

    ``from_dict`` ignores (and logs) keys it does not know (``ugss.known_keys``: what a program
    wrote), so a checkpoint written by a newer version still loads; values are validated by the
    section's ``__post_init__``.
    """

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: v.value if isinstance(v, Enum) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls: type[T], d: Mapping[str, Any]) -> T:
        return cls(**known_keys(cls, d, strict=False))


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass(frozen=True)
class DataConfig(_Section):
    """Where the scans come from, how they are split, preprocessed, sampled and augmented."""

    data_dir: str | None = option(
        None,
        help="PhysioNet CT-ICH folder (ct_scans/, masks/); default: synthetic",
        flags=("-i", "--data"),
        metavar="DIR",
    )
    manifest: str | None = option(
        None,
        help="CSV/JSON listing scan, optional mask and patient_id per row",
        metavar="FILE",
    )
    unlabeled_dirs: tuple[str, ...] = option(  # more unlabeled scans (``ugss.train.unlabeled``)
        (),
        help=(
            "Folder of unlabeled CT scans (NIfTI files or DICOM series folders), repeatable; "
            "used by the semi-supervised methods"
        ),
        flags=("--unlabeled",),
        metavar="DIR",
    )
    synth_scans: int = option(  # synthetic cohort when neither data_dir nor manifest is given
        40,
        help="Synthetic cohort: number of scans",
    )
    synth_matrix: int = option(256, help="Synthetic cohort: in-plane matrix")
    synth_seed: int = option(0, help="Synthetic cohort: seed")
    synth_sharp_fraction: float | None = option(
        None,
        help="Synthetic cohort: share of sharp-kernel scans (default: drawn per scan, ~18 %)",
    )
    synth_dir: str | None = option(
        None,
        help="Where to keep the synthetic cohort (default: user cache)",
        metavar="DIR",
    )
    input_size: int = option(160, help="Model input size (multiple of 16), also used at inference")
    windows: str = windows_to_str(DEFAULT_WINDOWS)
    test_fraction: float = option(0.2, help="Share of patients held out")
    val_fraction: float = option(
        0.1,
        help="Share of training patients used for validation (at least 1)",
    )
    labeled_fraction: float = option(
        1.0,
        help="Share of training scans keeping their masks, in (0, 1]",
    )
    split_seed: int = option(0, help="Seed of the patient split")
    folds: int = option(
        0,
        help=(
            "k-fold cross-validation by patient: k stratified folds, the test split is fold "
            "--fold and --test-fraction is unused (0: off; run k times for every fold)"
        ),
    )
    fold: int = option(0, help="With --folds: which fold is the test split (0 … k−1)")
    cache_dir: str | None = option(
        None,
        help="Preprocessed-slice cache (default: ~/.cache/ugss/slices)",
        metavar="DIR",
    )
    crop_size: int = option(96, help="Training crop size (multiple of 16)")
    positive_fraction: float = option(
        0.5,
        help="Share of labeled crops taken from hemorrhage slices",
    )
    unlabeled_share: float = option(
        0.5,
        help="Share of each batch from unlabeled scans (if any)",
    )
    rotation_deg: float = 15.0
    flip_lr: float = 0.5
    flip_ud: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "unlabeled_dirs", tuple(str(d) for d in self.unlabeled_dirs))
        _check(
            not (self.data_dir and self.manifest),
            "give either a data folder or a manifest, not both",
        )
        _check(
            0.0 < self.labeled_fraction <= 1.0,
            f"labeled fraction must be in (0, 1], got {self.labeled_fraction}",
        )
        _check(
            0.0 <= self.test_fraction < 1.0,
            f"test fraction must be in [0, 1), got {self.test_fraction}",
        )
        _check(
            self.folds == 0 or (self.folds >= 2 and 0 <= self.fold < self.folds),
            f"fold must be in [0, folds) with folds >= 2, got fold {self.fold} of {self.folds}",
        )
        _check(
            0.0 < self.val_fraction < 1.0,
            f"validation fraction must be in (0, 1), got {self.val_fraction}",
        )
        _check(
            self.input_size >= DOWNSAMPLE and self.input_size % DOWNSAMPLE == 0,
            f"input size must be a positive multiple of {DOWNSAMPLE}, got {self.input_size}",
        )
        _check(
            self.crop_size % DOWNSAMPLE == 0 and DOWNSAMPLE <= self.crop_size <= self.input_size,
            f"crop size must be a multiple of {DOWNSAMPLE} between {DOWNSAMPLE} and the "
            f"input size {self.input_size}, got {self.crop_size}",
        )
        _check(0.0 <= self.positive_fraction <= 1.0, "positive fraction must be in [0, 1]")
        _check(0.0 <= self.unlabeled_share < 1.0, "unlabeled share must be in [0, 1)")
        _check(0.0 <= self.flip_lr <= 1.0 and 0.0 <= self.flip_ud <= 1.0, "flip prob in [0, 1]")
        _check(self.rotation_deg >= 0.0, "rotation must be >= 0 degrees")
        _check(self.synth_scans >= 4, "a synthetic cohort needs at least 4 scans")
        sharp = self.synth_sharp_fraction
        _check(sharp is None or 0.0 <= sharp <= 1.0, "sharp fraction must be in [0, 1]")
        windows_from_str(self.windows)

    @property
    def window_tuple(self) -> tuple[Window, ...]:
        return windows_from_str(self.windows)


@dataclass(frozen=True)
class MethodConfig(_Section):
    """The semi-supervised method (section 2) and its ablation switches (Tables 8–11)."""

    method: str = option("ugss", help="ugss | supervised | cutmix | cutpaste")
    teacher_update: str = option(  # "": the method's own (supervised: none)
        "", help="none | ema | wema (default: wema for ugss, ema for cutmix/cutpaste)"
    )
    consistency: str = option("kl", help="Consistency loss: kl | smoothl1")
    uncertainty_mask: bool = option(  # keep only pixels with û < δ·û_max in L_uc (Table 10, 11)
        True,
        help="Ablation: keep every pixel (no û < δ·û_max mask); the p_conf weight stays",
        flags=("--no-uncertainty-mask",),
        invert=True,
    )
    use_confidence: bool = option(  # weight L_uc by p_conf = 1 − û/û_max (eq. 4, Table 9)
        True,
        help="Ablation: no p_conf weight on the consistency loss; the δ mask stays",
        flags=("--no-confidence",),
        invert=True,
    )
    mc_samples: int = option(8, help="Teacher MC-dropout samples T")
    delta: float = option(0.7, help="Uncertainty threshold δ (keep û < δ·û_max)")
    lambda_max: float = option(0.6, help="Maximum consistency weight m")  # m of eq. 10
    lambda_init: float = option(0.0, help="Initial consistency weight α")  # α of eq. 10
    lambda_exponent: float = option(2.0, help="Ramp exponent e of λ_u")  # e of eq. 10
    lambda_ramp: float = option(  # δ_T of eq. 10 as a share of the planned steps (see ramp_steps)
        1.0,
        help=(
            "Share of the planned steps over which λ_u ramps up to m; early stopping counts "
            "no epoch before λ_u reached m"
        ),
    )
    select_after_ramp: bool = option(  # see loop.checkpoint_eligible
        False,
        help="Choose the best checkpoint only among the epochs that ended with λ_u = m",
    )
    teacher_noise: float = option(  # σ of the Gaussian noise on the teacher's input ([0, 1] scale)
        0.03,
        help="σ of the teacher input noise",
    )
    alpha_start: float = option(  # wEMA decay α′ at the first step (cosine schedule)
        0.9,
        help="wEMA decay α′ at the start",
    )
    alpha_end: float = option(0.99, help="wEMA decay α′ at the end")  # … and at the last
    ema_decay: float = option(0.99, help="Decay of the plain-EMA teacher")
    wema_student_weight: float = option(  # w_s of eq. 11 (w_t = 1 − w_s)
        0.5,
        help="w_s of the wEMA update (w_t = 1 − w_s)",
    )
    calibrate: bool = option(  # inference logit offset −ln w_pos (see losses.prior_correction)
        True,
        help="Keep the raw weighted-BCE output (no −ln w_pos logit offset)",
        flags=("--no-calibrate",),
        invert=True,
    )

    def __post_init__(self) -> None:
        # converted at the door: members equal their strings, to_dict writes the strings
        object.__setattr__(self, "method", choice(Method, self.method, "method"))
        if self.teacher_update:  # "" = the method's default
            update = choice(TeacherUpdate, self.teacher_update, "teacher update")
            object.__setattr__(self, "teacher_update", update)
        object.__setattr__(
            self, "consistency", choice(Consistency, self.consistency, "consistency")
        )
        _check(self.mc_samples >= 1, f"MC samples must be >= 1, got {self.mc_samples}")
        _check(0.0 < self.delta <= 1.0, f"delta must be in (0, 1], got {self.delta}")
        _check(self.lambda_max >= 0 and self.lambda_init >= 0, "λ_u bounds must be >= 0")
        _check(self.lambda_exponent > 0, "λ_u exponent must be > 0")
        _check(0.0 < self.lambda_ramp <= 1.0, f"λ_u ramp must be in (0, 1], got {self.lambda_ramp}")
        _check(self.teacher_noise >= 0, "teacher noise must be >= 0")
        for name in ("alpha_start", "alpha_end", "ema_decay", "wema_student_weight"):
            v = getattr(self, name)
            _check(0.0 <= v <= 1.0, f"{name} must be in [0, 1], got {v}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MethodConfig:
        """Also reads checkpoints written before ``use_uncertainty`` became ``uncertainty_mask``."""
        d = dict(d)
        if "use_uncertainty" in d:
            d.setdefault("uncertainty_mask", d.pop("use_uncertainty"))
        return super().from_dict(d)

    @property
    def uncertainty_guided(self) -> bool:
        """Whether the teacher's uncertainty enters the loss at all (mask or weight)."""
        return self.uncertainty_mask or self.use_confidence

    @property
    def resolved_teacher_update(self) -> TeacherUpdate:
        if self.method == Method.SUPERVISED:
            return TeacherUpdate.NONE
        return TeacherUpdate(self.teacher_update or DEFAULT_TEACHER_UPDATE[Method(self.method)])

    @property
    def uses_teacher(self) -> bool:
        return self.method != "supervised"

    def ramp_steps(self, total_steps: int) -> int:
        """Steps until λ_u reaches its maximum m: ``lambda_ramp`` of the planned steps.

        Early stopping counts no epoch before this (``loop.early_stopping_counts``), so a run
        never stops before it has trained with the full weight on the unlabeled data.
        """
        return max(1, round(self.lambda_ramp * total_steps))


@dataclass(frozen=True)
class OptimConfig(_Section):
    """AdamW with linear warm-up then cosine decay (section 3.4); epochs of fixed step counts."""

    epochs: int = option(24, help="Maximum number of epochs")
    steps_per_epoch: int = option(60, help="Training steps per epoch")
    batch_size: int = option(8, help="Crops per step (labeled + unlabeled)")
    lr: float = option(2e-3, help="AdamW peak learning rate")
    min_lr: float = 1e-5
    weight_decay: float = option(1e-4, help="AdamW weight decay")
    warmup_epochs: float = option(1.0, help="Linear LR warm-up, in epochs")
    patience: int = option(6, help="Early stopping: epochs without improvement")
    grad_clip: float = 5.0

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "epochs must be >= 1")
        _check(self.steps_per_epoch >= 1, "steps per epoch must be >= 1")
        _check(self.batch_size >= 2, "batch size must be >= 2")
        _check(self.lr > 0 and self.min_lr >= 0, "learning rates must be positive")
        _check(self.warmup_epochs >= 0, "warm-up epochs must be >= 0")
        _check(self.patience >= 1, "patience must be >= 1")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass(frozen=True)
class RunConfig(_Section):
    """Where results go and how the run executes."""

    out: str = option(
        "runs/ugss",
        help="Folder for checkpoints and metrics",
        flags=("-o", "--out"),
        metavar="DIR",
    )
    device: str = option("auto", help="auto | cpu | cuda")
    amp: bool = option(True, help="Mixed precision (CUDA only)")
    seed: int = option(0, help="Seed of weights, batches and dropout")
    threads: int = option(0, help=THREADS_HELP, flags=("--threads",), metavar="INT")
    channels_last: bool = True
    resume: bool = option(False, help="Continue the run in --out exactly", flags=("--resume",))
    val_batch_size: int = 16

    def __post_init__(self) -> None:
        _check(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}")
        _check(self.threads >= 0, "threads must be >= 0")
        _check(self.val_batch_size >= 1, "validation batch size must be >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; ``to_dict`` goes into the checkpoint and the metrics log."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def sections(cls) -> dict[str, type]:
        """Section name → its config class, in field order (``data`` → ``DataConfig`` …)."""
        return {f.name: f.default_factory for f in dataclasses.fields(cls)}  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).to_dict() for name in self.sections()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        return cls(**{n: sec.from_dict(d.get(n, {})) for n, sec in cls.sections().items()})

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Each section from the ``values`` named like its fields (``ugss-train``'s options)."""

        def section(sec: type) -> Any:
            names = {f.name for f in dataclasses.fields(sec)}
            return sec(**{k: v for k, v in values.items() if k in names})

        return cls(**{n: section(sec) for n, sec in cls.sections().items()})

    def replace(self, **sections: Any) -> TrainConfig:
        """``cfg.replace(optim={"epochs": 3})``: a copy with fields of some sections changed."""
        updates = {}
        for name, changes in sections.items():
            updates[name] = dataclasses.replace(getattr(self, name), **changes)
        return dataclasses.replace(self, **updates)
