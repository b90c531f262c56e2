"""A checkpoint's network behind the runtime's ``Engine`` interface.

``ugss-eval best.pt`` then scores the checkpoint through ``ugss.runtime.segment.segment_volume``
— the inverse transform, the intracranial filter and the component rules of ``ugss-infer`` —
exactly as it scores the exported ``.onnx``. The graphs are the export's own torch modules
(``DeterministicGraph``, ``MCGraph``), so the outputs mean what the ONNX outputs mean, and MC
channel-dropout noise is drawn as ``OnnxEngine`` draws host noise: one ``[T, C]`` uniform draw
per scan from ``numpy.random.default_rng(seed)``. A checkpoint and its export therefore give the
same masks up to float rounding (tested).
"""

from __future__ import annotations

import numpy as np
import torch

from ugss.export.mc_graph import DeterministicGraph, MCGraph
from ugss.runtime.engines import EngineOutput
from ugss.runtime.model_info import KIND_DETERMINISTIC, KIND_MC, ModelInfo
from ugss.train.predict import LoadedCheckpoint


class TorchEngine:
    """``LoadedCheckpoint`` (calibrated) → ``Engine``; MC with ``mc_samples`` ≥ 2 samples."""

    def __init__(self, ck: LoadedCheckpoint, mc_samples: int = 0, seed: int | None = 0) -> None:
        self.device = next(ck.model.parameters()).device
        mc = mc_samples >= 2 and bool(ck.model.dropout_sites)
        cfg = ck.model_config
        self.graph = (
            MCGraph(ck.model, mc_samples, ck.threshold, "graph")
            if mc
            else DeterministicGraph(ck.model)
        ).eval()
        self.info = ModelInfo(
            kind=KIND_MC if mc else KIND_DETERMINISTIC,
            input_size=ck.input_size,
            windows=ck.windows,
            threshold=ck.threshold,
            mc_samples=mc_samples if mc else 0,
            dropout_rate=cfg.dropout_rate if mc else 0.0,
            dropout_at=cfg.dropout_at if mc else "",
            method=ck.method,
        )
        self.host_noise = mc and cfg.dropout_kind == "channel"
        self.noise: torch.Tensor | None = None
        self.reseed(seed)

    @property
    def description(self) -> str:
        return f"torch {torch.__version__} {self.device}"

    def reseed(self, seed: int | None) -> None:
        """One noise draw per scan, as ``OnnxEngine``'s host noise (element dropout: torch's
        generator, seeded)."""
        if isinstance(self.graph, MCGraph) and self.host_noise:
            shape = (self.graph.samples, self.graph.noise_channels)
            draw = np.random.default_rng(seed).random(shape, dtype=np.float32)
            self.noise = torch.from_numpy(draw).to(self.device)
        elif seed is not None:
            torch.manual_seed(seed)

    @torch.no_grad()
    def run(self, batch: np.ndarray) -> EngineOutput:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        n = x.shape[0]
        if isinstance(self.graph, DeterministicGraph):
            prob = self.graph(x).float().cpu().numpy()
            return EngineOutput(prob=prob.reshape(n, *prob.shape[-2:]))
        mean, entropy, counts = (t.float().cpu().numpy() for t in self.graph(x, self.noise))
        return EngineOutput(
            prob=mean.reshape(n, *mean.shape[-2:]),
            entropy=entropy.reshape(n, *entropy.shape[-2:]),
            sample_counts=counts.reshape(n, -1),
        )
