"""Brain-tissue noise tells a sharp (bone) kernel from a soft one: the high_noise QC flag."""

from __future__ import annotations

import pytest

from ugss.runtime.noise import SHARP_NOISE_HU, volume_noise_hu
from ugss.runtime.report import noise_flags
from ugss.synth.scan import make_case


@pytest.mark.parametrize("seed", [3, 4])
def test_sharp_kernel_is_flagged_and_soft_is_not(seed):
    soft = make_case(seed, matrix=256, hemorrhage="none", kernel="soft", thin=False)
    sharp = make_case(seed, matrix=256, hemorrhage="none", kernel="sharp", thin=False)
    n_soft, n_sharp = volume_noise_hu(soft.volume.hu), volume_noise_hu(sharp.volume.hu)
    assert n_soft is not None and n_sharp is not None
    assert n_soft < SHARP_NOISE_HU / 2 and n_sharp > SHARP_NOISE_HU
    assert noise_flags(soft.volume) == []
    (flag,) = noise_flags(sharp.volume)
    assert flag.code == "high_noise" and "soft-tissue kernel" in flag.message


def test_no_tissue_no_measure():
    import numpy as np

    assert volume_noise_hu(np.full((6, 32, 32), -1000.0, dtype=np.float32)) is None
