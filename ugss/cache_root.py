"""The user cache folder every cached thing lives under: ``$XDG_CACHE_HOME/ugss`` when that is
set, else ``~/.cache/ugss``. Training's slice cache, the synthetic cohorts and onnxruntime's
TensorRT engine cache are subfolders of it. Imports nothing heavy (no torch, no onnx), so the
runtime and the node may call it."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/ugss`` when ``XDG_CACHE_HOME`` is set and not empty, else
    ``~/.cache/ugss``; read at each call, so a changed environment is honoured."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ugss"
