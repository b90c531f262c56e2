"""The default training data: a synthetic cohort from ``ugss.synth``, made once and kept.

The cohort lives in the user cache (``~/.cache/ugss/synth-…``, ``XDG_CACHE_HOME`` respected) or
in ``DataConfig.synth_dir``; it is written to a temporary folder and renamed when complete, so an
interrupted generation is never mistaken for a cohort.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ugss import __version__
from ugss.cache_root import user_cache_root
from ugss.errors import ConfigError
from ugss.train.config import DataConfig

log = logging.getLogger(__name__)
MARKER = ".ugss-cohort-complete"


def synthetic_cohort_dir(cfg: DataConfig) -> Path:
    if cfg.synth_dir:
        return Path(cfg.synth_dir)
    name = f"synth-n{cfg.synth_scans}-m{cfg.synth_matrix}-s{cfg.synth_seed}"
    if cfg.synth_sharp_fraction is not None:
        name += f"-k{cfg.synth_sharp_fraction:g}"
    name += f"-v{__version__}"
    return user_cache_root() / name


def is_complete_cohort(root: Path) -> bool:
    return (root / MARKER).is_file()


def ensure_synthetic_cohort(cfg: DataConfig) -> Path:
    """The cohort folder (PhysioNet layout), generated with ``ugss.synth.make_cohort`` if absent."""
    root = synthetic_cohort_dir(cfg)
    if (root / MARKER).is_file():
        return root
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} exists and is not a complete synthetic cohort; choose another")
    from ugss.synth import make_cohort

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("generating a synthetic cohort of %d scans in %s", cfg.synth_scans, root)
    make_cohort(
        tmp, n_scans=cfg.synth_scans, seed=cfg.synth_seed, matrix=cfg.synth_matrix,
        sharp_fraction=cfg.synth_sharp_fraction,
    )  # fmt: skip
    (tmp / MARKER).write_text("ok\n")
    if root.exists():
        root.rmdir()  # empty, checked above
    os.replace(tmp, root)
    return root
