"""Exported graphs in onnxruntime against the PyTorch model they came from."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_fixtures import Exported

from ugss.runtime.engines import OnnxEngine
from ugss.train.model import ResUNet


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def image(n: int, size: int, seed: int = 1) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 8, size // 8, generator=gen)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear").numpy()


def torch_mc(model: ResUNet, x: np.ndarray, uniform: np.ndarray, threshold: float = 0.5):
    """Reference MC outputs from ``ResUNet.mc_logits`` with host noise ``[T, C]`` per site
    (sample-major rows ``t·N + i``, the same noise row for every image of the batch)."""
    t, n = uniform.shape[0], x.shape[0]
    noise, start = {}, 0
    for site, shape in model.noise_shapes(1, 16, 16).items():
        c = shape[1]
        u = torch.from_numpy(uniform[:, start : start + c])
        noise[site] = u[:, None, :, None, None].expand(t, n, c, 1, 1).reshape(t * n, c, 1, 1)
        start += c
    with torch.no_grad():
        probs = torch.sigmoid(model.mc_logits(torch.from_numpy(x), t, noise))
    mean = probs.mean(0)
    ent = -(torch.xlogy(mean, mean) + torch.xlogy(1 - mean, 1 - mean)) / np.log(2.0)
    counts = (probs >= threshold).sum(dim=(2, 3, 4)).T
    return mean.numpy(), ent.numpy(), counts.numpy()


@pytest.mark.parametrize("batch,size", [(1, None), (5, None), (3, 64)])
def test_deterministic_parity_with_dynamic_batch_and_size(head_export: Exported, batch, size):
    size = size or head_export.ckpt.input_size
    x = image(batch, size)
    (prob,) = session(head_export.det).run(["prob"], {"image": x})
    with torch.no_grad():
        ref = torch.sigmoid(head_export.ckpt.model(torch.from_numpy(x))).numpy()
    assert prob.shape == (batch, 1, size, size)
    assert np.abs(prob - ref).max() < 1e-4


@pytest.mark.parametrize(
    "which", ["head_export", pytest.param("decoder_export", marks=pytest.mark.slow)]
)
def test_mc_graph_equals_torch_mc_with_the_same_noise(request, which):
    exp: Exported = request.getfixturevalue(which)
    sess = session(exp.mc)
    dims = [d.dim_value for d in onnx.load(str(exp.mc)).graph.input[1].type.tensor_type.shape.dim]
    rng = np.random.default_rng(3)
    uniform = rng.random(dims, dtype=np.float32)
    x = image(3, exp.ckpt.input_size)
    mean, ent, counts = sess.run(None, {"image": x, "dropout_noise": uniform})
    r_mean, r_ent, r_counts = torch_mc(exp.ckpt.model, x, uniform)
    assert mean.shape == ent.shape == (3, 1, exp.ckpt.input_size, exp.ckpt.input_size)
    assert counts.shape == (3, 8)
    assert np.abs(mean - r_mean).max() < 1e-4
    assert np.abs(ent - r_ent).max() < 1e-4
    assert np.abs(counts - r_counts).max() <= 1  # a pixel at the threshold may flip
    assert ent.min() >= 0.0 and ent.max() <= 1.0 + 1e-6


@pytest.mark.slow
def test_mc_outputs_vary_and_their_mean_approaches_the_torch_mc_mean(head_export: Exported):
    """Runs with fresh host noise (a new seed) differ; averaged over many they approach the torch
    MC mean estimated with 2048 samples."""
    x = image(2, head_export.ckpt.input_size)
    engine = OnnxEngine(head_export.mc, provider="cpu", seed=11)
    runs = []
    for seed in range(64):  # 64 scans' draws × T=8 = 512 samples
        engine.reseed(seed)  # the engine draws its noise once per scan
        runs.append(engine.run(x).prob)
    runs = np.stack(runs)
    assert np.abs(runs[0] - runs[1]).max() > 1e-3  # dropout is live
    torch.manual_seed(0)
    with torch.no_grad():
        logits = head_export.ckpt.model.mc_logits(torch.from_numpy(x), 2048)
    ref = torch.sigmoid(logits).mean(0)[:, 0].numpy()
    err_one = np.abs(runs[0] - ref).mean()
    err_avg = np.abs(runs.mean(0) - ref).mean()
    assert err_avg < 0.5 * err_one
    assert err_avg < 5e-3


def test_sample_counts_are_foreground_pixels_per_sample(head_export: Exported):
    sess = session(head_export.mc)
    x = image(2, head_export.ckpt.input_size)
    u = np.random.default_rng(0).random((8, 16), dtype=np.float32)
    _, _, counts = sess.run(None, {"image": x, "dropout_noise": u})
    assert np.all(counts == np.round(counts)) and counts.min() >= 0
    assert counts.max() <= x.shape[-1] ** 2
    # noise ≥ p everywhere keeps every channel: T identical samples, identical counts
    same = sess.run(None, {"image": x, "dropout_noise": np.full((8, 16), 0.99, np.float32)})[2]
    assert np.all(same == same[:, :1])


def test_graph_noise_variant_is_stochastic_within_one_session(head_export: Exported):
    """The Triton copy draws its noise with RandomUniform(shape=[T, C]): runs differ, no noise
    input."""
    path = head_export.options.triton / "ugss" / "1" / "model.onnx"
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["image"]
    assert "RandomUniform" in {n.op_type for n in model.graph.node}
    ort.set_seed(5)
    sess = session(path)
    x = image(2, head_export.ckpt.input_size)
    a, b = (sess.run(["mean_prob"], {"image": x})[0] for _ in range(2))
    assert np.abs(a - b).max() > 1e-3


@pytest.mark.slow
def test_dynamo_exporter_gives_the_same_deterministic_graph(head_export: Exported):
    """``--exporter dynamo`` (torch.export, opset 18; ~10–25 s) as the fallback exporter."""
    from ugss.export.mc_graph import DeterministicGraph
    from ugss.export.onnx_export import export_module

    x = torch.from_numpy(image(2, 32))
    model = export_module(
        DeterministicGraph(head_export.ckpt.model), [x], ["image"], ["prob"], exporter="dynamo"
    )
    assert model.opset_import[0].version >= 18
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x3 = image(3, 48)
    with torch.no_grad():
        ref = torch.sigmoid(head_export.ckpt.model(torch.from_numpy(x3))).numpy()
    assert np.abs(sess.run(["prob"], {"image": x3})[0] - ref).max() < 1e-4
