"""Open the checkpoint to export: a UGSS training checkpoint, or one clear error line."""

from __future__ import annotations

from pathlib import Path

from ugss.errors import InputError
from ugss.train.predict import LoadedCheckpoint, load_checkpoint

WEIGHTS = ("student", "teacher", "auto")


def open_checkpoint(path: str | Path, weights: str = "student") -> LoadedCheckpoint:
    """``load_checkpoint`` on CPU, with every failure turned into a one-line ``InputError``."""
    if weights not in WEIGHTS:
        raise InputError(f"--weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a checkpoint file")
    try:
        ckpt = load_checkpoint(path, which=weights, device="cpu")
    except InputError as exc:
        raise InputError(_one_line(str(exc))) from exc
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:  # damaged or other model
        raise InputError(
            f"{path}: checkpoint does not fit the UGSS ResUNet ({_one_line(str(exc))})"
        ) from exc
    ckpt.model.eval()
    return ckpt


def _one_line(text: str, limit: int = 300) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return first if len(first) <= limit else first[: limit - 1] + "…"
