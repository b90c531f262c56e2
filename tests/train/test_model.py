"""ResUNet shape, explicit MC dropout, and the shared-trunk MC split."""

from __future__ import annotations

import pytest
import torch

from ugss.errors import ConfigError
from ugss.train.model import ModelConfig, ResUNet, count_parameters, parse_sites
from ugss.train.teacher import teacher_mc, teacher_mc_sequential


def test_paper_shape_and_size():
    model = ResUNet(ModelConfig())
    assert count_parameters(model) == 2_031_137  # 16→128 encoder, 256 bottleneck
    out = model(torch.rand(2, 3, 32, 48))
    assert out.shape == (2, 1, 32, 48)


def test_plain_unet_is_the_resunet_without_shortcuts():
    res, plain = ResUNet(ModelConfig()), ResUNet(ModelConfig(arch="unet"))
    shortcut = sum(p.numel() for n, p in res.named_parameters() if "shortcut" in n)
    assert shortcut > 0 and not any("shortcut" in n for n, _ in plain.named_parameters())
    assert count_parameters(plain) == count_parameters(res) - shortcut
    x = torch.rand(2, 3, 32, 32)
    assert plain(x).shape == (2, 1, 32, 32)
    assert plain.mc_logits(x, 4).shape == (4, 2, 1, 32, 32)
    assert ModelConfig.from_dict(ModelConfig(arch="unet").to_dict()).arch == "unet"
    assert ModelConfig.from_dict({"dropout_at": "head"}).arch == "resunet"  # older checkpoints
    with pytest.raises(ConfigError, match="arch must be one of"):
        ModelConfig(arch="vnet")


@pytest.mark.parametrize("kind", ["channel", "element"])
def test_mc_dropout_is_stochastic_only_when_asked(kind):
    torch.manual_seed(0)
    model = ResUNet(ModelConfig(dropout_at="head", dropout_rate=0.3, dropout_kind=kind)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        a, b = model(x), model(x)
        c, d = model(x, mc=True), model(x, mc=True)
        model.train()  # train mode alone does not switch dropout on
        e, f = model(x), model(x)
    assert torch.equal(a, b)
    assert not torch.equal(c, d)
    assert torch.equal(e, f)


@pytest.mark.parametrize("placement", ["head", "dec1", "decoder", "bottleneck", "bottleneck,head"])
def test_shared_trunk_equals_independent_passes(placement):
    model = ResUNet(ModelConfig(dropout_at=placement, dropout_rate=0.3)).eval()
    n, t, h = 2, 3, 32
    x = torch.rand(n, 3, h, h)
    gen = torch.Generator().manual_seed(1)
    noise = {k: torch.rand(v, generator=gen) for k, v in model.noise_shapes(t * n, h, h).items()}
    with torch.no_grad():
        batched = model.mc_logits(x, t, noise)
        passes = [
            model(x, mc=True, noise={k: v[i * n : (i + 1) * n] for k, v in noise.items()})
            for i in range(t)
        ]
    assert batched.shape == (t, n, 1, h, h)
    torch.testing.assert_close(batched, torch.stack(passes), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_teacher_mc_batched_matches_sequential_in_distribution():
    torch.manual_seed(0)
    model = ResUNet(ModelConfig(dropout_rate=0.2)).eval()
    x = torch.rand(1, 3, 32, 32)
    a = teacher_mc(model, x, samples=64)
    b = teacher_mc_sequential(model, x, samples=64)
    assert a.prob.shape == (1, 1, 32, 32)
    assert (a.prob - b.prob).abs().mean() < 0.02
    assert torch.all((a.uncertainty >= 0) & (a.uncertainty <= 1))


def test_dropout_site_parsing():
    assert parse_sites("decoder") == ("dec4", "dec3")
    assert parse_sites("head,bottleneck") == ("bottleneck", "head")
    assert parse_sites("none") == ()
    with pytest.raises(ConfigError):
        parse_sites("encoder")
    with pytest.raises(ConfigError):
        ModelConfig(dropout_rate=1.0)
