"""UGSS losses: uncertainty (eq. 2–3), confidence (4), consistency (1, 5), weighted BCE (6–8).

Per pixel the student and teacher give Bernoulli distributions S = [1−s, s] and T = [1−t, t].
All functions work on probability / logit maps of any shape; reductions are documented per
function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ugss.errors import ConfigError

U_MAX_BITS = 1.0  # log2(C) for C = 2 classes
_EPS = 1e-6


def mc_mean(probs: torch.Tensor) -> torch.Tensor:
    """Eq. 2: mean foreground probability over the T samples on dim 0."""
    return probs.mean(dim=0)


def entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """Eq. 3: û = −Σ_k p_k log₂ p_k over {background, foreground}; 0 at p ∈ {0, 1}, 1 at p = ½."""
    q = 1.0 - p
    return -(torch.xlogy(p, p) + torch.xlogy(q, q)) / math.log(2.0)


def confidence(u: torch.Tensor, u_max: float = U_MAX_BITS) -> torch.Tensor:
    """Eq. 4: p_conf = 1 − û/û_max, in [0, 1]."""
    return 1.0 - u / u_max


def passes_delta(u: torch.Tensor, delta: float) -> torch.Tensor:
    """The δ mask: pixels whose teacher uncertainty û is below δ·û_max (bool)."""
    return u < delta * U_MAX_BITS


def uncertainty_diagnostics(u: torch.Tensor, delta: float) -> dict[str, float]:
    """What the uncertainty lets through, for the metrics log (whether or not the switches use
    it): ``unl_pass_delta`` the share of pixels passing the δ mask, ``unl_conf`` the mean p_conf.
    """
    u = u.detach()
    return {
        "unl_pass_delta": float(passes_delta(u, delta).float().mean().item()),
        "unl_conf": float(confidence(u).mean().item()),
    }


def bernoulli_kl(student_logits: torch.Tensor, teacher_prob: torch.Tensor) -> torch.Tensor:
    """Eq. 1 per pixel: KL(S‖T) = s·log(s/t) + (1−s)·log((1−s)/(1−t)), in nats.

    The student enters as logits (log-sigmoid keeps log s finite); the teacher probability is
    clamped to [1e-6, 1−1e-6] so a saturated teacher gives a large but finite penalty.
    """
    s = torch.sigmoid(student_logits)
    log_s = F.logsigmoid(student_logits)
    log_1s = F.logsigmoid(-student_logits)
    t = teacher_prob.clamp(_EPS, 1.0 - _EPS)
    return s * (log_s - torch.log(t)) + (1.0 - s) * (log_1s - torch.log1p(-t))


def smooth_l1_consistency(student_logits: torch.Tensor, teacher_prob: torch.Tensor) -> torch.Tensor:
    """Table 10's alternative: Smooth-L1 (β = 1) on student vs teacher probability, per pixel."""
    return F.smooth_l1_loss(torch.sigmoid(student_logits), teacher_prob, reduction="none", beta=1.0)


def pixel_consistency(
    kind: str, student_logits: torch.Tensor, teacher_prob: torch.Tensor
) -> torch.Tensor:
    if kind == "kl":
        return bernoulli_kl(student_logits, teacher_prob)
    if kind == "smoothl1":
        return smooth_l1_consistency(student_logits, teacher_prob)
    raise ConfigError(f"consistency must be kl or smoothl1, got {kind!r}")


@dataclass(frozen=True)
class ConsistencyTerms:
    """The uncertainty-guided consistency loss and what it was made of (for logging)."""

    loss: torch.Tensor
    kept_fraction: float  # share of pixels with û < δ·û_max
    mean_uncertainty: float  # mean û over all pixels (bits)


def uncertainty_guided_consistency(
    student_logits: torch.Tensor,
    teacher_prob: torch.Tensor,
    uncertainty: torch.Tensor,
    *,
    delta: float = 0.7,
    kind: str = "kl",
    uncertainty_mask: bool = True,
    use_confidence: bool = True,
) -> ConsistencyTerms:
    """Eq. 5 as its text reads: L_uc = mean over kept pixels of p_conf·L_con, kept: û < δ·û_max.

    The printed eq. 5 multiplies L_con by û itself, which would weight the *uncertain* pixels
    most, against the sentence around it ("higher weights to data points with lower
    uncertainty"); the weight here is eq. 4's p_conf. The paper names the threshold δ (Table 11)
    but not its form; the mask û < δ·û_max is this project's reading.

    Averaged over the kept pixels of the whole batch (sum of weighted per-pixel losses divided by
    the number of kept pixels), so the loss scale does not depend on how many pixels the teacher
    is sure about; zero when none is kept. ``uncertainty_mask=False`` keeps every pixel,
    ``use_confidence=False`` sets p_conf = 1; both off is plain consistency, the "not
    uncertainty-guided" rows of Table 10 (Table 9 drops the confidence alone).
    """
    per_pixel = pixel_consistency(kind, student_logits, teacher_prob)
    u = uncertainty.detach()
    weight = confidence(u) if use_confidence else torch.ones_like(u)
    if uncertainty_mask:
        kept = passes_delta(u, delta).to(per_pixel.dtype)
    else:
        kept = torch.ones_like(per_pixel)
    n_kept = kept.sum()
    loss = (per_pixel * weight * kept).sum() / n_kept.clamp_min(1.0)
    return ConsistencyTerms(
        loss=loss,
        kept_fraction=float(n_kept.item()) / max(kept.numel(), 1),
        mean_uncertainty=float(u.mean().item()),
    )


def positive_weight(pixels_total: int, pixels_positive: int, floor: float = 1.0) -> float:
    """Eq. 7: w_pos = ln(p_T / p_pos) over the labeled training masks, at least ``floor``.

    With no positive pixel at all there is nothing to up-weight: the floor is returned.
    """
    if pixels_total <= 0:
        raise ConfigError("w_pos needs at least one labeled pixel")
    if pixels_positive <= 0:
        return floor
    return max(floor, math.log(pixels_total / pixels_positive))


def positive_weight_from_masks(masks: list[np.ndarray] | np.ndarray, floor: float = 1.0) -> float:
    total = sum(int(np.asarray(m).size) for m in masks)
    positive = sum(int(np.count_nonzero(m)) for m in masks)
    return positive_weight(total, positive, floor)


def prior_correction(w_pos: float) -> float:
    """Logit offset that undoes eq. 6's class weighting at inference: −ln w_pos.

    Minimising the weighted BCE drives the network to p/(1−p) = w_pos·q/(1−q), q the true
    posterior, so its raw p over-states hemorrhage; logit(p) − ln w_pos recovers q, and
    thresholding q at ½ is thresholding p at w_pos/(1+w_pos).
    """
    return -math.log(w_pos) if w_pos > 0 else 0.0


def raw_threshold(offset: float, threshold: float = 0.5) -> float:
    """The threshold on the raw sigmoid p that equals ``threshold`` on the corrected
    probability sigmoid(logit(p) + offset): sigmoid(logit(threshold) − offset)."""
    return 1.0 / (1.0 + math.exp(offset - math.log(threshold / (1.0 - threshold))))


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, w_pos: float) -> torch.Tensor:
    """Eq. 6: −mean(w_pos·y·log p + w_neg·(1−y)·log(1−p)) with w_neg = 1, over all pixels."""
    pos_weight = torch.tensor(w_pos, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
