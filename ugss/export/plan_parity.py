"""A built TensorRT plan against onnxruntime on the CPU, at export, before the plan is kept.

Both run the same preprocessed synthetic slices (``quantize.calibration_slices``: CT from
``ugss.synth`` through the runtime's own preprocessing) through the runtime's engines
(``TensorRTEngine`` for the plan, ``OnnxEngine`` on the CPU for its ONNX source), in slabs of the
profile's optimum. With host noise both engines draw the same ``dropout_noise`` (same seed), so
the comparison is exact up to arithmetic: the largest |Δ| of the probability (MC: the mean) and
the Dice of the two masks are printed, stored beside the plan and a plan worse than
``MAX_PROB_DIFF`` / ``MIN_MASK_DICE`` is refused. With noise drawn in the graph the two draw
different numbers: the means over ``GRAPH_NOISE_RUNS`` calls are compared (statistical), and
only the Dice bar applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ugss.evaluation import dice
from ugss.runtime.engines import Engine
from ugss.runtime.model_info import KIND_MC

MAX_PROB_DIFF = 1e-3  # fp16 plan vs fp32 onnxruntime: max |Δ probability|
MIN_MASK_DICE = 0.99  # Dice of the masks (probability ≥ threshold), 1.0 when both are empty
MIN_MASK_PIXELS = 50  # fewer reference foreground pixels: Dice is not judged
GRAPH_NOISE_RUNS = 8


@dataclass(frozen=True)
class PlanParity:
    max_prob_diff: float
    mask_dice: float
    ref_pixels: int
    slices: int
    exact: bool  # same noise on both sides (host noise, or a deterministic model)

    @property
    def ok(self) -> bool:
        dice_ok = self.ref_pixels < MIN_MASK_PIXELS or self.mask_dice >= MIN_MASK_DICE
        return dice_ok and (not self.exact or self.max_prob_diff <= MAX_PROB_DIFF)

    def describe(self) -> str:
        mode = "" if self.exact else f", graph noise: means of {GRAPH_NOISE_RUNS} runs"
        return (
            f"plan vs onnxruntime CPU on {self.slices} slices: max |Δ prob| "
            f"{self.max_prob_diff:.2g}, mask Dice {self.mask_dice:.4f}{mode}"
        )

    def bar(self) -> str:
        prob = f"max |Δ prob| ≤ {MAX_PROB_DIFF:g} and " if self.exact else ""
        return f"{prob}mask Dice ≥ {MIN_MASK_DICE}"

    def to_metadata(self, prefix: str) -> dict[str, str]:
        return {
            f"{prefix}plan_max_prob_diff": f"{self.max_prob_diff:.3g}",
            f"{prefix}plan_mask_dice": f"{self.mask_dice:.4f}",
            f"{prefix}plan_parity_slices": str(self.slices),
            f"{prefix}plan_parity_mode": "exact" if self.exact else "graph noise (statistical)",
        }


def _probabilities(engine: Engine, slices: np.ndarray, batch: int, runs: int) -> np.ndarray:
    total = np.zeros((len(slices), *slices.shape[2:]), np.float64)
    for _ in range(runs):
        for i in range(0, len(slices), batch):
            total[i : i + batch] += engine.run(slices[i : i + batch]).prob
    return (total / runs).astype(np.float32)


def plan_parity(
    plan: Engine, reference: Engine, slices: Sequence[np.ndarray] | np.ndarray, batch: int
) -> PlanParity:
    """Run ``slices`` ``(n, C, S, S)`` through both engines and compare (``PlanParity``)."""
    slices = np.ascontiguousarray(slices, dtype=np.float32)
    info = reference.info
    noise = getattr(reference, "noise", None)
    exact = info.kind != KIND_MC or getattr(noise, "shape", None) is not None
    runs = 1 if exact else GRAPH_NOISE_RUNS
    for engine in (plan, reference):
        engine.reseed(0)  # the same host noise on both sides
    got = _probabilities(plan, slices, batch, runs)
    ref = _probabilities(reference, slices, batch, runs)
    a, b = ref >= info.threshold, got >= info.threshold
    return PlanParity(
        max_prob_diff=float(np.abs(got - ref).max()),
        mask_dice=float(dice(a, b, empty=1.0)),
        ref_pixels=int(a.sum()),
        slices=len(slices),
        exact=exact,
    )
