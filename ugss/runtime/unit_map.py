"""Maps with values in [0, 1] (probability, uncertainty in bits) held as uint8 steps of 1/255.

This is the precision of the written map files (uint8 with ``scl_slope`` 1/255), so the report,
the Python API and the files see the same values, at a quarter of float32's memory. Rounding is
half up: at threshold 0.5 a stored map thresholds like the float map (0.5·255 = 127.5 falls
between two codes).
"""

from __future__ import annotations

import numpy as np

MAP_STEPS = 255
MAP_UNIT = 1.0 / MAP_STEPS  # the value of one step


def quantize_unit(values: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (float32, overwritten as scratch) → ``out`` (uint8), clipped to [0, 1]."""
    np.multiply(values, np.float32(MAP_STEPS), out=values)
    np.clip(values, 0.0, MAP_STEPS, out=values)
    values += np.float32(0.5)
    np.copyto(out, values, casting="unsafe")  # truncation of x + 0.5: round half up
    return out


def quantized(values: np.ndarray, chunk: int = 32) -> np.ndarray:
    """A uint8 copy of a float map, ``chunk`` planes at a time (bounded temporaries)."""
    values = np.asarray(values)
    out = np.empty(values.shape, dtype=np.uint8)
    for z in range(0, values.shape[0], chunk):
        quantize_unit(np.array(values[z : z + chunk], dtype=np.float32), out[z : z + chunk])
    return out


def dequantized(steps: np.ndarray) -> np.ndarray:
    """The float32 values a uint8 map stands for (a new array)."""
    return np.multiply(steps, np.float32(MAP_UNIT), dtype=np.float32)


def steps_at_least(value: float) -> int:
    """The smallest step whose value is ≥ ``value``: ``steps >= this`` ⇔ stored value ≥ value."""
    return int(np.ceil(value * MAP_STEPS - 1e-9))
