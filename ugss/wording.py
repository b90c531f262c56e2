"""Words the console and the Markdown reports share, defined once: ``1 scan``, ``n/a``."""

from __future__ import annotations

import math

NOT_AVAILABLE = "n/a"


def plural(n: int, word: str) -> str:
    """``1 scan``, ``2 scans``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def number(x: float | None, spec: str = ".3f") -> str:
    """``x`` formatted, or ``n/a`` where there is no value (``None``, NaN, infinite)."""
    return format(x, spec) if x is not None and math.isfinite(x) else NOT_AVAILABLE


def mean_sd(mean: float, sd: float, spec: str = ".3f") -> str:
    """``0.812 ± 0.040``; the mean alone where the spread is undefined (one value)."""
    if not math.isfinite(sd):
        return number(mean, spec)
    return f"{number(mean, spec)} ± {number(sd, spec)}"
