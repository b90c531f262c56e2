"""The paper's 2D ResUNet (section 2.1, Fig. 3) with explicit, placeable MC dropout.

``arch="unet"`` swaps every residual block for a plain conv3×3-BN-ReLU ×2 block (no shortcut):
the UNet [23] the ResUNet is built from, the first rows of the paper's Table 3. Everything
else (widths, pooling, decoder, dropout sites, head) is the same, so both export and run alike.

Encoder residual blocks 3→16→32→64→128, each followed by 2×2 max-pooling; a 256-channel
bottleneck block; a decoder of 2×2 transposed convolutions, skip concatenation and residual
blocks back to 16 channels; a 1×1 head giving one logit per pixel (sigmoid outside the model).

Dropout sites, in forward order: ``bottleneck`` (the bottleneck block's output), ``dec4`` …
``dec1`` (the input of each decoder block, after the skip concatenation; dec4 is the deepest) and
``head`` (the 16-channel features just before the 1×1 output conv). ``dropout_at`` takes site
names or the presets ``decoder`` (= dec4, dec3: the deep, low-resolution decoder levels) and
``all-decoder`` (= dec4 … dec1).

The forward is split at the first active site: ``features(x)`` runs everything before it once,
``stochastic_head(state, T)`` repeats only the rest for T samples. With the default ``head``
placement the repeated part is a 1×1 conv on 16 channels, so T = 8 costs about one pass
(see ``benchmarks/bench_train_step.py``); the teacher and the exported MC graph both rely on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ugss.errors import ConfigError
from ugss.known_keys import known_keys
from ugss.options import option
from ugss.train.dropout import DROPOUT_KINDS, mc_dropout, noise_shape

SITES = ("bottleneck", "dec4", "dec3", "dec2", "dec1", "head")
PRESETS = {"decoder": ("dec4", "dec3"), "all-decoder": ("dec4", "dec3", "dec2", "dec1")}
ENCODER_CHANNELS = (16, 32, 64, 128)
BOTTLENECK_CHANNELS = 256
DOWNSAMPLE = 16  # input height and width must be multiples of this
ARCHS = ("resunet", "unet")


def parse_sites(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"head"``, ``"decoder"``, ``"bottleneck,head"`` … → site names in forward order."""
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    names: set[str] = set()
    for part in parts:
        if not part or part == "none":
            continue
        if part in PRESETS:
            names.update(PRESETS[part])
        elif part in SITES:
            names.add(part)
        else:
            raise ConfigError(
                f"unknown dropout site {part!r}: choose from {', '.join(SITES)}, "
                f"{', '.join(PRESETS)} or none"
            )
    return tuple(s for s in SITES if s in names)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network (and to export it)."""

    in_channels: int = 3
    dropout_at: str = option(
        "head", help="MC dropout sites: head | dec1..dec4 | decoder | bottleneck | none"
    )
    dropout_rate: float = option(0.2, help="MC dropout probability p")
    dropout_kind: str = option("channel", help="channel | element")
    arch: str = option(
        "resunet", help="Network: resunet (paper Fig. 3) | unet (plain blocks, Table 3)"
    )

    def __post_init__(self) -> None:
        parse_sites(self.dropout_at)
        if self.arch not in ARCHS:
            raise ConfigError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), got {self.dropout_rate}")
        if self.dropout_kind not in DROPOUT_KINDS:
            raise ConfigError(f"dropout kind must be one of {DROPOUT_KINDS}")
        if self.in_channels < 1:
            raise ConfigError("in_channels must be >= 1")

    @property
    def sites(self) -> tuple[str, ...]:
        return parse_sites(self.dropout_at) if self.dropout_rate > 0 else ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "dropout_at": self.dropout_at,
            "dropout_rate": self.dropout_rate,
            "dropout_kind": self.dropout_kind,
            "arch": self.arch,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        return cls(**known_keys(cls, d, strict=False))


class ResBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus a (1×1-conv-BN when widths differ) shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = (
            nn.Identity()
            if c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


class PlainBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN-ReLU, the UNet block (``arch="unet"``)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)), inplace=True)


BLOCKS: dict[str, type[nn.Module]] = {"resunet": ResBlock, "unet": PlainBlock}


@dataclass
class TrunkState:
    """What ``features`` hands to ``stochastic_head``: the tensor at the split and later skips.

    ``stage`` is the index of the first stage still to run (0 = bottleneck dropout, 1…4 = the
    decoder levels dec4…dec1, 5 = head); ``skips`` are the encoder outputs those stages need.
    """

    x: torch.Tensor
    stage: int
    skips: list[torch.Tensor]


class ResUNet(nn.Module):
    """2D ResUNet, paper Fig. 3 (or the plain UNet, ``arch="unet"``); one logit per pixel.

    Dropout acts only when ``mc=True``.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        block = BLOCKS[self.config.arch]
        c = ENCODER_CHANNELS
        self.enc = nn.ModuleList()
        c_prev = self.config.in_channels
        for ch in c:
            self.enc.append(block(c_prev, ch))
            c_prev = ch
        self.bottleneck = block(c[-1], BOTTLENECK_CHANNELS)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        c_prev = BOTTLENECK_CHANNELS
        for ch in reversed(c):  # 128, 64, 32, 16  (dec4 … dec1)
            self.up.append(nn.ConvTranspose2d(c_prev, ch, 2, stride=2))
            self.dec.append(block(2 * ch, ch))
            c_prev = ch
        self.head = nn.Conv2d(c[0], 1, 1)
        self._sites = set(self.config.sites)
        self._split = min((SITES.index(s) for s in self._sites), default=len(SITES))

    # --- pieces ------------------------------------------------------------------------------

    def _drop(
        self,
        site: str,
        x: torch.Tensor,
        mc: bool,
        noise: Mapping[str, torch.Tensor] | None,
    ) -> torch.Tensor:
        if not mc or site not in self._sites:
            return x
        return mc_dropout(
            x,
            self.config.dropout_rate,
            self.config.dropout_kind,
            None if noise is None else noise.get(site),
        )

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for block in self.enc:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        return self.bottleneck(x), skips

    def _run_from(
        self,
        x: torch.Tensor,
        stage: int,
        skips: Sequence[torch.Tensor],
        mc: bool,
        noise: Mapping[str, torch.Tensor] | None,
    ) -> torch.Tensor:
        """Run stages ``stage`` … 5 (bottleneck dropout, dec4 … dec1, head)."""
        if stage <= 0:
            x = self._drop("bottleneck", x, mc, noise)
        for level in range(max(stage, 1), 5):  # 1..4 → dec4..dec1
            i = level - 1
            if level > stage:  # at level == stage the trunk already did up + concat
                x = self.up[i](x)
                x = torch.cat([x, skips[len(skips) - 1 - i]], dim=1)
            x = self._drop(SITES[level], x, mc, noise)
            x = self.dec[i](x)
        x = self._drop("head", x, mc, noise)
        return self.head(x)

    def _run_until(self, x: torch.Tensor, split: int) -> TrunkState:
        """Run the deterministic part up to (not including) dropout site index ``split``."""
        x, skips = self._encode(x)
        if split == 0:
            return TrunkState(x, 0, skips)
        for level in range(1, 5):
            i = level - 1
            x = self.up[i](x)
            x = torch.cat([x, skips[len(skips) - 1 - i]], dim=1)
            if split == level:
                return TrunkState(x, level, skips)
            x = self.dec[i](x)
        return TrunkState(x, 5, skips)

    # --- public API --------------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        mc: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``(N, C, H, W)`` → logits ``(N, 1, H, W)``; ``mc=True`` switches dropout on."""
        y, skips = self._encode(x)
        return self._run_from(y, 0, skips, mc, noise)

    @property
    def dropout_sites(self) -> tuple[str, ...]:
        return tuple(s for s in SITES if s in self._sites)

    def features(self, x: torch.Tensor) -> TrunkState:
        """The deterministic trunk: everything before the first dropout site, computed once."""
        return self._run_until(x, self._split)

    def stochastic_head(
        self,
        state: TrunkState,
        samples: int,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """T dropout samples from one trunk pass → logits ``(T, N, 1, H, W)``.

        The trunk output and the skips still needed are repeated sample-major (row ``t·N + n``),
        so ``noise[site]`` for a batch of N has ``T·N`` rows in that order.
        """
        if samples < 1:
            raise ConfigError(f"MC samples must be >= 1, got {samples}")
        n = state.x.shape[0]
        if state.stage == len(SITES) - 1 and self.config.dropout_kind == "channel":
            return self._channel_head_samples(state.x, samples, noise)
        cl = state.x.is_contiguous(memory_format=torch.channels_last)
        fmt = torch.channels_last if cl else torch.contiguous_format

        def rep(t: torch.Tensor) -> torch.Tensor:  # repeat keeps the memory format
            return t.repeat(samples, 1, 1, 1).contiguous(memory_format=fmt)

        x = rep(state.x)
        # skips needed by stages after the split: dec level L uses skip index 4 - L
        skips = [rep(s) if (4 - k) > state.stage else s for k, s in enumerate(state.skips)]
        out = self._run_from(x, state.stage, skips, True, noise)
        return out.reshape(samples, n, *out.shape[1:])

    def _channel_head_samples(
        self, f: torch.Tensor, samples: int, noise: Mapping[str, torch.Tensor] | None
    ) -> torch.Tensor:
        """Channel dropout just before the 1×1 head, T samples without repeating the features.

        Dropping input channel c of a 1×1 conv for sample t scales its weight w_c by
        m_tc/(1−p), so logit_t = b + Σ_c f_c·w_c·m_tc/(1−p): one batched matmul of the
        ``(N, HW, C)`` features with ``(N, C, T)`` masked weights, the same numbers as T passes.
        """
        n, c, h, w = f.shape
        p = self.config.dropout_rate
        u = None if noise is None else noise.get("head")
        if u is None:
            u = torch.rand((samples * n, c, 1, 1), device=f.device, dtype=f.dtype)
        keep = (u >= p).to(f.dtype).reshape(samples, n, c) * (1.0 / (1.0 - p))
        coef = keep * self.head.weight.reshape(1, 1, c).to(f.dtype)  # (T, N, C)
        feats = f.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view for channels_last input
        out = torch.bmm(feats, coef.permute(1, 2, 0))  # (N, HW, T)
        out = out.permute(2, 0, 1).reshape(samples, n, 1, h, w)
        return out + self.head.bias.reshape(1, 1, 1, 1, 1).to(f.dtype)

    def mc_logits(
        self,
        x: torch.Tensor,
        samples: int,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``features`` + ``stochastic_head``: ``(T, N, 1, H, W)`` logits."""
        return self.stochastic_head(self.features(x), samples, noise)

    def noise_shapes(self, batch: int, height: int, width: int) -> dict[str, tuple[int, ...]]:
        """Uniform-noise shape per active site for a batch of ``batch`` (rows = T·N for MC)."""
        shapes = {}
        ch = {"bottleneck": (BOTTLENECK_CHANNELS, DOWNSAMPLE)}
        for level, c in zip(range(1, 5), reversed(ENCODER_CHANNELS), strict=True):
            ch[SITES[level]] = (2 * c, DOWNSAMPLE >> level)
        ch["head"] = (ENCODER_CHANNELS[0], 1)
        for site in self.dropout_sites:
            c, f = ch[site]
            shape = (batch, c, height // f, width // f)
            shapes[site] = noise_shape(self.config.dropout_kind, shape)
        return shapes


def build_model(config: ModelConfig | None = None) -> ResUNet:
    return ResUNet(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
