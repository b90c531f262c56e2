"""Eq. 1–8 on tiny tensors whose values are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ugss.errors import ConfigError
from ugss.train.losses import (
    bernoulli_kl,
    confidence,
    entropy_bits,
    mc_mean,
    positive_weight,
    positive_weight_from_masks,
    prior_correction,
    raw_threshold,
    smooth_l1_consistency,
    uncertainty_guided_consistency,
    weighted_bce,
)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_mc_mean_is_eq2():
    probs = torch.tensor([[0.2, 1.0], [0.4, 0.0], [0.9, 0.5]])  # T = 3 samples, 2 pixels
    assert torch.allclose(mc_mean(probs), torch.tensor([0.5, 0.5]))


def test_entropy_in_bits_with_edge_cases():
    p = torch.tensor([0.0, 1.0, 0.5, 0.25])
    # H(0.25) = -(0.25 log2 0.25 + 0.75 log2 0.75) = 0.5 + 0.311278 = 0.811278
    expected = torch.tensor([0.0, 0.0, 1.0, 0.8112781245])
    u = entropy_bits(p)
    assert torch.all(torch.isfinite(u))
    assert torch.allclose(u, expected, atol=1e-6)


def test_confidence_is_one_minus_normalised_entropy():
    u = torch.tensor([0.0, 0.25, 1.0])
    assert torch.allclose(confidence(u), torch.tensor([1.0, 0.75, 0.0]))


def test_bernoulli_kl_by_hand():
    s, t = 0.8, 0.5
    expected = s * math.log(s / t) + (1 - s) * math.log((1 - s) / (1 - t))  # 0.192745
    got = bernoulli_kl(torch.tensor([logit(s)]), torch.tensor([t]))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert bernoulli_kl(torch.tensor([logit(0.3)]), torch.tensor([0.3])).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_kl_is_finite_for_saturated_teacher():
    got = bernoulli_kl(torch.tensor([5.0, -5.0]), torch.tensor([0.0, 1.0]))
    assert torch.all(torch.isfinite(got)) and torch.all(got > 0)


def test_masked_confidence_weighted_kl_by_hand():
    # 4 pixels; teacher probabilities with entropies 0, 0.469, 1.0, 0.0 bits
    t = torch.tensor([1.0, 0.9, 0.5, 0.0])
    u = entropy_bits(t)
    s = torch.tensor([0.7, 0.6, 0.2, 0.1])
    z = torch.log(s / (1 - s))
    kl = bernoulli_kl(z, t)
    # δ = 0.7: pixel 2 (û = 1) is dropped; weights 1 − û on the others; mean over the 3 kept
    keep = torch.tensor([1.0, 1.0, 0.0, 1.0])
    expected = ((1 - u) * kl * keep).sum() / 3
    terms = uncertainty_guided_consistency(z, t, u, delta=0.7)
    assert terms.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms.kept_fraction == pytest.approx(0.75)
    # ablations: no confidence → plain mean KL over kept pixels; no uncertainty → every pixel
    no_conf = uncertainty_guided_consistency(z, t, u, delta=0.7, use_confidence=False)
    assert no_conf.loss.item() == pytest.approx((kl * keep).sum().item() / 3, rel=1e-6)
    no_unc = uncertainty_guided_consistency(z, t, u, uncertainty_mask=False, use_confidence=False)
    assert no_unc.loss.item() == pytest.approx(kl.mean().item(), rel=1e-6)


def test_consistency_is_zero_when_nothing_is_kept():
    t = torch.full((2, 2), 0.5)
    terms = uncertainty_guided_consistency(torch.zeros(2, 2), t, entropy_bits(t), delta=0.7)
    assert terms.loss.item() == 0.0 and terms.kept_fraction == 0.0


def test_consistency_gradient_reaches_only_the_student():
    z = torch.tensor([0.3, -1.0], requires_grad=True)
    t = torch.tensor([0.9, 0.1], requires_grad=True)
    uncertainty_guided_consistency(z, t, entropy_bits(t)).loss.backward()
    assert z.grad is not None and torch.any(z.grad != 0)


def test_smooth_l1_consistency():
    got = smooth_l1_consistency(torch.tensor([logit(0.8)]), torch.tensor([0.5]))
    assert got.item() == pytest.approx(0.5 * 0.3**2, rel=1e-5)


def test_positive_weight_eq7():
    assert positive_weight(1000, 10) == pytest.approx(math.log(100))
    assert positive_weight(100, 60) == 1.0  # ln(1.67) < 1 → floor
    assert positive_weight(100, 0) == 1.0
    masks = [np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8)]
    masks[0][0, :2] = 1  # 2 of 200 pixels positive
    assert positive_weight_from_masks(masks) == pytest.approx(math.log(100))
    with pytest.raises(ConfigError):
        positive_weight(0, 0)


def test_weighted_bce_eq6():
    p = torch.tensor([0.9, 0.2])
    y = torch.tensor([1.0, 0.0])
    w = 3.0
    expected = -(w * math.log(0.9) + math.log(0.8)) / 2
    assert weighted_bce(torch.log(p / (1 - p)), y, w).item() == pytest.approx(expected, rel=1e-5)


def test_prior_correction_recovers_the_unweighted_posterior():
    # minimiser of eq. 6 at a pixel with posterior q: p/(1-p) = w q/(1-q)
    w, q = 6.0, 0.3
    p = w * q / (w * q + 1 - q)
    z = math.log(p / (1 - p)) + prior_correction(w)
    assert 1 / (1 + math.exp(-z)) == pytest.approx(q)


@pytest.mark.parametrize(("w", "t"), [(1.0, 0.5), (6.0, 0.5), (20.0, 0.5), (6.0, 0.3)])
def test_raw_threshold_is_the_corrected_threshold_on_the_raw_sigmoid(w, t):
    offset = prior_correction(w)
    raw = raw_threshold(offset, t)
    if t == 0.5:
        assert raw == pytest.approx(w / (1 + w))  # the docstring of prior_correction
    for p in (raw - 1e-6, raw + 1e-6):  # either side of it, the corrected probability is too
        corrected = 1 / (1 + math.exp(-(math.log(p / (1 - p)) + offset)))
        assert (p >= raw) == (corrected >= t)
