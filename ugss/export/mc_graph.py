"""The torch modules that become the exported graphs.

``DeterministicGraph``: ``image → prob = σ(logit)``, dropout off.

``MCGraph`` (eq. 2–3): the trunk before the first dropout site runs once (``ResUNet.features``),
the rest runs for T samples as one batch (``ResUNet.stochastic_head``); then

    p = (1/T) Σ_t σ(logit_t)                      (eq. 2, mean_prob)
    û = −[p log₂ p + (1−p) log₂ (1−p)]            (eq. 3, entropy in bits)
    count_t = #{pixels : σ(logit_t) ≥ threshold}  (sample_counts, for volume intervals)

Dropout noise is uniform in [0, 1), one draw per (sample, channel) for channel dropout, laid out
``[T, C]`` with the active sites' channels concatenated in forward order (``noise_layout``). The
same row t is used for every image of a call, so sample t is one coherent network across the
slices of a slab (what a per-sample volume needs). It comes either from the ``dropout_noise``
input (``noise="input"``, host noise: exact replay, no random op in the graph) or from a
``RandomUniform(shape=[T, C])`` in the graph (``noise="graph"``; element dropout always draws in
the graph, ``RandomUniformLike`` of a tensor shaped at run time). Graph noise has no initializer
behind it: TensorRT's ONNX importer refuses a random op fed by one (``trt_patterns``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ugss.errors import ConfigError
from ugss.train.model import ResUNet

NOISE_MODES = ("input", "graph")
# p·log p is computed as p·log(max(p, ε)): exact 0 at p = 0 (like xlogy), safe in fp16 too.
LOG_EPS = 1e-6


def noise_layout(model: ResUNet) -> list[tuple[str, int]]:
    """``[(site, channels), …]`` in forward order: the column blocks of ``dropout_noise``."""
    shapes = model.noise_shapes(1, 16, 16)
    return [(site, shapes[site][1]) for site in model.dropout_sites]


def entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """Eq. 3 for two classes, in bits; 0 at p ∈ {0, 1}, 1 at p = ½."""
    q = 1.0 - p
    plogp = p * torch.log(torch.clamp(p, min=LOG_EPS))
    qlogq = q * torch.log(torch.clamp(q, min=LOG_EPS))
    return (plogp + qlogq) * (-1.0 / math.log(2.0))


class DeterministicGraph(nn.Module):
    """``image[N,C,H,W] → prob[N,1,H,W]``: sigmoid included, dropout off."""

    def __init__(self, model: ResUNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(image))


class MCGraph(nn.Module):
    """``image (+ dropout_noise[T,C]) → mean_prob, entropy, sample_counts[N,T]`` (eq. 2–3)."""

    def __init__(self, model: ResUNet, samples: int, threshold: float, noise: str) -> None:
        super().__init__()
        if samples < 2:
            raise ConfigError(f"an MC graph needs at least 2 samples, got {samples}")
        if noise not in NOISE_MODES:
            raise ConfigError(f"noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
        if not model.dropout_sites:
            raise ConfigError("the checkpoint's model has no dropout sites: MC export impossible")
        cfg = model.config
        if noise == "input" and cfg.dropout_kind != "channel":
            raise ConfigError(
                "host noise (dropout_noise[T, C]) needs channel dropout; this model uses "
                f"{cfg.dropout_kind!r} dropout: export with --noise graph"
            )
        self.model = model
        self.samples = samples
        self.threshold = float(threshold)
        self.noise = noise
        self.layout = noise_layout(model)
        self.noise_channels = sum(c for _, c in self.layout)
        self.fused_head = model.dropout_sites == ("head",) and cfg.dropout_kind == "channel"

    def site_noise(self, uniform: torch.Tensor, n: torch.Tensor | int) -> dict[str, torch.Tensor]:
        """``[T, C]`` → per site ``[T·N, c, 1, 1]``, row ``t·N + i`` = sample t of image i."""
        out, start = {}, 0
        for site, c in self.layout:
            u = uniform[:, start : start + c].reshape(self.samples, 1, c, 1, 1)
            out[site] = u.expand(self.samples, n, c, 1, 1).reshape(-1, c, 1, 1)
            start += c
        return out

    def forward(
        self, image: torch.Tensor, dropout_noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.model.config.dropout_kind == "channel" and dropout_noise is None:
            # a shape, not a template tensor: exported as RandomUniform(shape=[T, C])
            shape = (self.samples, self.noise_channels)
            dropout_noise = torch.rand(shape, dtype=image.dtype, device=image.device)
        if self.fused_head:
            assert dropout_noise is not None
            probs = torch.sigmoid(self._fused_head_logits(image, dropout_noise))  # (N, T, H, W)
            mean = probs.mean(dim=1, keepdim=True)
            counts = (probs >= self.threshold).to(probs.dtype).sum(dim=(2, 3))
        else:
            noise = (
                None if dropout_noise is None else self.site_noise(dropout_noise, image.shape[0])
            )
            logits = self.model.stochastic_head(self.model.features(image), self.samples, noise)
            probs = torch.sigmoid(logits)  # (T, N, 1, H, W)
            mean = probs.mean(dim=0)
            counts = (probs >= self.threshold).to(probs.dtype).sum(dim=(2, 3, 4)).transpose(0, 1)
        return mean, entropy_bits(mean), counts

    def _fused_head_logits(self, image: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """Channel dropout right before the linear 1×1 head, folded into its weights.

        head(mask_t ⊙ f / (1−p)) = conv(f, w ⊙ mask_t / (1−p)) + b: one 16→T convolution on the
        shared features gives all T samples' logits — the same numbers as ``stochastic_head``
        without repeating the 16-channel features T times. The weights depend on the noise, so
        they are a run-time tensor (TensorRT ≥ 8.5 takes those); the bias is added afterwards
        as the head's own initializer, not expanded to T in the graph.
        """
        p = self.model.config.dropout_rate
        feats = self.model.features(image).x  # (N, 16, H, W): the head's input
        head = self.model.head
        keep = (uniform >= p).to(feats.dtype) * (1.0 / (1.0 - p))  # (T, 16)
        weight = keep.reshape(self.samples, -1, 1, 1) * head.weight  # (T, 16, 1, 1)
        return F.conv2d(feats, weight) + head.bias.reshape(1, 1, 1, 1)
