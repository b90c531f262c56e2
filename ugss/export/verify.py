"""Parity of exported graphs with PyTorch, measured on one random batch right after export.

The references are computed by the training code's own path, not by the export wrappers:
``sigmoid(model(x))`` for the deterministic graph; ``model.mc_logits`` with the same noise and
``ugss.train.losses.entropy_bits`` (eq. 3) for the MC graph — so a wrong rewrite in the wrapper
(e.g. the fused head) shows up as a parity failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ugss.runtime.model_info import DET_OUTPUT, INPUT_NAME, MC_OUTPUTS, NOISE_INPUT_NAME
from ugss.train.losses import entropy_bits
from ugss.train.model import ResUNet

from .mc_graph import MCGraph

PARITY_LIMIT = 1e-4  # max |Δ| of probabilities in fp32


@dataclass(frozen=True)
class Parity:
    """Max absolute differences per output (``sample_counts`` in pixels)."""

    diffs: dict[str, float]
    batch: int
    size: int

    @property
    def max_prob_diff(self) -> float:
        return max(v for k, v in self.diffs.items() if k != "sample_counts")

    @property
    def ok(self) -> bool:
        return self.max_prob_diff < PARITY_LIMIT

    def describe(self) -> str:
        parts = [
            f"{k} {v:.1e}" if k != "sample_counts" else f"{k} {v:g} px"
            for k, v in self.diffs.items()
        ]
        return "max |Δ| " + ", ".join(parts)


def session(model: onnx.ModelProto, threads: int | None = None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(
        model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
    )


def example_batch(batch: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """A smooth random image in [0, 1]: structure at several scales, like windowed CT."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, channels, max(size // 8, 1), max(size // 8, 1), generator=gen)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    return (0.7 * smooth + 0.3 * torch.rand(batch, channels, size, size, generator=gen)).clamp(0, 1)


@torch.no_grad()
def deterministic_parity(model: ResUNet, onnx_model: onnx.ModelProto, x: torch.Tensor) -> Parity:
    ref = torch.sigmoid(model(x)).numpy()
    (got,) = session(onnx_model).run([DET_OUTPUT], {INPUT_NAME: x.numpy()})
    return Parity({DET_OUTPUT: float(np.abs(got - ref).max())}, x.shape[0], x.shape[-1])


@torch.no_grad()
def mc_reference(
    graph: MCGraph, x: torch.Tensor, uniform: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``mean_prob, entropy, sample_counts`` from ``model.mc_logits`` with the same noise."""
    noise = graph.site_noise(uniform, x.shape[0])
    probs = torch.sigmoid(graph.model.mc_logits(x, graph.samples, noise))  # (T, N, 1, H, W)
    mean = probs.mean(dim=0)
    counts = (probs >= graph.threshold).sum(dim=(2, 3, 4)).T.float()
    return mean.numpy(), entropy_bits(mean).numpy(), counts.numpy()


def mc_parity(
    graph: MCGraph, onnx_model: onnx.ModelProto, x: torch.Tensor, seed: int = 0
) -> Parity:
    """Feed the same host noise to the ONNX graph and to ``model.mc_logits``."""
    gen = torch.Generator().manual_seed(seed)
    uniform = torch.rand(graph.samples, graph.noise_channels, generator=gen)
    ref = mc_reference(graph, x, uniform)
    feed = {INPUT_NAME: x.numpy(), NOISE_INPUT_NAME: uniform.numpy()}
    got = session(onnx_model).run(list(MC_OUTPUTS), feed)
    diffs = {k: float(np.abs(g - r).max()) for k, g, r in zip(MC_OUTPUTS, got, ref, strict=True)}
    return Parity(diffs, x.shape[0], x.shape[-1])


def run_to_run_change(onnx_model: onnx.ModelProto, x: torch.Tensor) -> float:
    """For in-graph noise: max |Δ mean_prob| between two runs of one session (> 0: live)."""
    sess = session(onnx_model)
    a = sess.run([MC_OUTPUTS[0]], {INPUT_NAME: x.numpy()})[0]
    b = sess.run([MC_OUTPUTS[0]], {INPUT_NAME: x.numpy()})[0]
    return float(np.abs(a - b).max())
