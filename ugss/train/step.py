"""One training step's loss for each method (Algorithm 1 and the baselines of section 3.4).

Every method sees a batch of ``B_l`` labeled and ``B_u`` unlabeled crops (``B_u`` may be 0,
e.g. at ``--labeled-fraction 1``). The student always runs with its MC dropout on (it trains
with the dropout it is sampled with). L_sup is the weighted BCE of eq. 6 on the labeled crops.

- ``supervised``: L = L_sup; unlabeled crops are never drawn.
- ``ugss`` (Algorithm 1): the student runs once on labeled + unlabeled crops; the teacher
  gives T MC-dropout samples of the same crops (eq. 2–3; T and the small Gaussian noise on the
  teacher's input are this project's choices, the paper gives neither);
  L = L_sup + λ_u·L_uc with L_uc the confidence-weighted, uncertainty-masked consistency of
  eq. 5 over all B_l + B_u crops (section 2 applies it to labeled and unlabeled data;
  the printed eq. 5 sums over D^u only).
- ``cutmix`` (French et al.'s mean-teacher CutMix): the consistency pool is the unlabeled crops
  (the labeled ones when there are none). Pairs (i, π(i)), π a uniformly drawn derangement
  (π(i) ≠ i for every i, so every mixed crop really mixes two crops; a pool of one crop is
  left unmixed), are mixed with a random box M: x̃ = M⊙x_i + (1−M)⊙x_π(i); the student's
  prediction on x̃ must match the same mix of the teacher's deterministic predictions on x_i
  and x_π(i). L = L_sup + λ_u·mean consistency.
- ``cutpaste``: a box around the hemorrhage of each labeled crop (a random box if it has none)
  is pasted, at the same position, into a crop of the pool. Inside the box the student is
  supervised with the pasted mask (weighted BCE), outside it must match the teacher's
  deterministic prediction on the unpasted crop. L = L_sup + λ_u·(Σ_in BCE + Σ_out con)/pixels.

Baselines use the same consistency function (``--consistency``) without uncertainty
weighting, the same λ_u schedule and their own teacher update (default plain EMA).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ugss.errors import ConfigError
from ugss.train.data import Batch
from ugss.train.losses import (
    pixel_consistency,
    uncertainty_diagnostics,
    uncertainty_guided_consistency,
    weighted_bce,
)
from ugss.train.model import ResUNet
from ugss.train.teacher import teacher_mc


@dataclass(frozen=True)
class StepSettings:
    """What the loss of one step depends on besides the batch and the networks."""

    method: str = "ugss"
    consistency: str = "kl"
    uncertainty_mask: bool = True
    use_confidence: bool = True
    delta: float = 0.7
    mc_samples: int = 8
    teacher_noise: float = 0.03
    w_pos: float = 1.0


@dataclass
class LossParts:
    """The total loss and its components (floats for the log)."""

    total: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


def _sup(logits: torch.Tensor, y: torch.Tensor, w_pos: float) -> torch.Tensor:
    return weighted_bce(logits.float(), y.float(), w_pos)


def _pool(batch: Batch) -> torch.Tensor:
    return batch.x_u if batch.x_u.shape[0] else batch.x_l


def derangement(rng: np.random.Generator, n: int) -> np.ndarray:
    """A uniformly random permutation of ``range(n)`` without fixed points (identity for n ≤ 1).

    Rejection sampling: a random permutation is a derangement with probability ≈ 1/e, so this
    takes ~2.7 draws on average.
    """
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm.astype(np.int64)


def random_boxes(
    rng: np.random.Generator, n: int, size: int, area: tuple[float, float] = (0.25, 0.5)
) -> np.ndarray:
    """CutMix boxes ``(n, 4)`` = (r0, r1, c0, c1) covering ``area`` of a ``size``² crop."""
    boxes = np.empty((n, 4), dtype=np.int64)
    for i in range(n):
        a = rng.uniform(*area)
        h = max(1, round(size * np.sqrt(a)))
        w = max(1, min(size, round(size * a * size / h)))
        r0 = int(rng.integers(0, size - h + 1))
        c0 = int(rng.integers(0, size - w + 1))
        boxes[i] = (r0, r0 + h, c0, c0 + w)
    return boxes


def box_masks(boxes: np.ndarray, size: int, like: torch.Tensor) -> torch.Tensor:
    """``(n, 1, size, size)`` tensor, 1 inside each box."""
    m = torch.zeros((len(boxes), 1, size, size), dtype=like.dtype, device=like.device)
    for i, (r0, r1, c0, c1) in enumerate(boxes):
        m[i, :, r0:r1, c0:c1] = 1.0
    return m


def lesion_boxes(
    rng: np.random.Generator, masks: torch.Tensor, margin: int = 4, min_side: int = 8
) -> np.ndarray:
    """Bounding box of each mask's hemorrhage plus ``margin``; a random box when there is none."""
    n, _, size, _ = masks.shape
    boxes = random_boxes(rng, n, size, area=(0.1, 0.25))
    arr = masks[:, 0].detach().cpu().numpy() > 0.5
    for i in range(n):
        rows, cols = np.nonzero(arr[i])
        if rows.size == 0:
            continue
        r0, r1 = max(0, rows.min() - margin), min(size, rows.max() + 1 + margin)
        c0, c1 = max(0, cols.min() - margin), min(size, cols.max() + 1 + margin)
        if r1 - r0 < min_side:
            r0 = max(0, min(r0, size - min_side))
            r1 = min(size, r0 + min_side)
        if c1 - c0 < min_side:
            c0 = max(0, min(c0, size - min_side))
            c1 = min(size, c0 + min_side)
        boxes[i] = (r0, r1, c0, c1)
    return boxes


def supervised_loss(student: torch.nn.Module, batch: Batch, s: StepSettings) -> LossParts:
    logits = student(batch.x_l, mc=True)
    l_sup = _sup(logits, batch.y_l, s.w_pos)
    return LossParts(l_sup, {"sup": float(l_sup.detach())})


def ugss_loss(
    student: torch.nn.Module,
    teacher: ResUNet,
    batch: Batch,
    s: StepSettings,
    lambda_u: float,
) -> LossParts:
    """Algorithm 1, steps 4–6: L_T = L_sup + λ_u·L_uc (eq. 9)."""
    n_l = batch.x_l.shape[0]
    x = torch.cat([batch.x_l, batch.x_u]) if batch.x_u.shape[0] else batch.x_l
    logits = student(x, mc=True)
    l_sup = _sup(logits[:n_l], batch.y_l, s.w_pos)
    t = teacher_mc(teacher, x, s.mc_samples, s.teacher_noise)
    terms = uncertainty_guided_consistency(
        logits.float(),
        t.prob,
        t.uncertainty,
        delta=s.delta,
        kind=s.consistency,
        uncertainty_mask=s.uncertainty_mask,
        use_confidence=s.use_confidence,
    )
    total = l_sup + lambda_u * terms.loss
    parts = {
        "sup": float(l_sup.detach()),
        "cons": float(terms.loss.detach()),
        "kept": terms.kept_fraction,
        "uncertainty": terms.mean_uncertainty,
    }
    if batch.x_u.shape[0]:
        parts.update(uncertainty_diagnostics(t.uncertainty[n_l:], s.delta))
    return LossParts(total, parts)


@torch.no_grad()
def _teacher_prob(teacher: ResUNet, x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(teacher(x).float())


@dataclass(frozen=True)
class CutMix:
    """Crop i takes the box of crop ``perm[i]``: ``apply(z) = (1−M)⊙z + M⊙z[perm]``."""

    perm: torch.Tensor  # (n,) int64, a derangement
    box: torch.Tensor  # (n, 1, s, s), 1 inside the box taken from the partner

    def apply(self, z: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.box) * z + self.box * z[self.perm]


def cutmix_pairs(rng: np.random.Generator, pool: torch.Tensor) -> CutMix:
    """Pair every crop of ``pool`` with another one (a derangement) and draw its box."""
    n, size = pool.shape[0], pool.shape[-1]
    perm = torch.from_numpy(derangement(rng, n)).to(pool.device)
    return CutMix(perm, box_masks(random_boxes(rng, n, size), size, pool))


def cutmix_loss(
    student: torch.nn.Module,
    teacher: ResUNet,
    batch: Batch,
    s: StepSettings,
    lambda_u: float,
    rng: np.random.Generator,
) -> LossParts:
    pool = _pool(batch)
    mix = cutmix_pairs(rng, pool)
    t = _teacher_prob(teacher, pool)
    t_mixed = mix.apply(t)
    mixed = mix.apply(pool)
    n_l = batch.x_l.shape[0]
    logits = student(torch.cat([batch.x_l, mixed]), mc=True)
    l_sup = _sup(logits[:n_l], batch.y_l, s.w_pos)
    l_con = pixel_consistency(s.consistency, logits[n_l:].float(), t_mixed).mean()
    return LossParts(
        l_sup + lambda_u * l_con, {"sup": float(l_sup.detach()), "cons": float(l_con.detach())}
    )


def cutpaste_loss(
    student: torch.nn.Module,
    teacher: ResUNet,
    batch: Batch,
    s: StepSettings,
    lambda_u: float,
    rng: np.random.Generator,
) -> LossParts:
    pool = _pool(batch)
    n_l, size = batch.x_l.shape[0], batch.x_l.shape[-1]
    if batch.x_u.shape[0]:
        targets = pool[torch.from_numpy(rng.integers(0, pool.shape[0], size=n_l))]
    else:  # paste into another labeled crop
        targets = pool[torch.from_numpy(np.roll(np.arange(n_l), 1))]
    box = box_masks(lesion_boxes(rng, batch.y_l), size, batch.x_l)
    pasted = box * batch.x_l + (1.0 - box) * targets
    t = _teacher_prob(teacher, targets)
    logits = student(torch.cat([batch.x_l, pasted]), mc=True)
    l_sup = _sup(logits[:n_l], batch.y_l, s.w_pos)
    z = logits[n_l:].float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        z,
        batch.y_l.float(),
        pos_weight=torch.tensor(s.w_pos, device=z.device),
        reduction="none",
    )
    con = pixel_consistency(s.consistency, z, t)
    l_cp = (box * bce + (1.0 - box) * con).mean()
    return LossParts(
        l_sup + lambda_u * l_cp,
        {"sup": float(l_sup.detach()), "cons": float(l_cp.detach())},
    )


def compute_loss(
    student: torch.nn.Module,
    teacher: ResUNet | None,
    batch: Batch,
    s: StepSettings,
    *,
    lambda_u: float,
    rng: np.random.Generator,
) -> LossParts:
    """Dispatch on ``s.method``; the teacher is ``None`` only for ``supervised``."""
    if s.method == "supervised":
        return supervised_loss(student, batch, s)
    if teacher is None:
        raise ConfigError(f"method {s.method} needs a teacher")
    if s.method == "ugss":
        return ugss_loss(student, teacher, batch, s, lambda_u)
    if s.method == "cutmix":
        return cutmix_loss(student, teacher, batch, s, lambda_u, rng)
    if s.method == "cutpaste":
        return cutpaste_loss(student, teacher, batch, s, lambda_u, rng)
    raise ConfigError(f"unknown method {s.method!r}")
