"""Training data: records → cached slices → patient split → batches of augmented crops.

A step's batch holds ``B_l`` labeled and ``B_u`` unlabeled crops (``B_u`` = ``unlabeled_share``
of the batch when unlabeled scans exist and the method uses them, else 0). A share
``positive_fraction`` of the labeled crops comes from hemorrhage slices, centred near a random
hemorrhage pixel (the PhysioNet slices are ~89 % negative, section 3.1); the rest are uniform
over all labeled slices and crop positions. Unlabeled crops are uniform.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ugss.errors import InputError
from ugss.runtime.preprocess import Window
from ugss.train.augment import apply_augment, draw_params
from ugss.train.cache import CachedScan, cache_scan
from ugss.train.config import DataConfig
from ugss.train.losses import positive_weight
from ugss.train.manifest import ScanRecord
from ugss.train.split import DataSplit, split_records

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Cached scans by role, the split, and w_pos (eq. 7) over the labeled training masks."""

    records: dict[str, ScanRecord]
    scans: dict[str, CachedScan]
    split: DataSplit
    w_pos: float
    input_size: int
    windows: tuple[Window, ...]

    def role(self, name: str) -> list[CachedScan]:
        return [self.scans[s] for s in getattr(self.split, name)]

    def summary(self) -> dict[str, Any]:
        def slices(name: str) -> int:
            return sum(s.n_slices for s in self.role(name))

        labeled = self.role("train_labeled")
        return {
            "n_scans": len(self.scans),
            "split": self.split.to_dict(),
            "slices": {k: slices(k) for k in ("train_labeled", "train_unlabeled", "val", "test")},
            "positive_slices_train": int(sum(s.positive_slices.size for s in labeled)),
            "w_pos": self.w_pos,
            "input_size": self.input_size,
        }


def prepare_data(
    records: Sequence[ScanRecord],
    config: DataConfig,
    *,
    cache_root: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingData:
    """Cache every scan (masks only where they are used), split by patient, compute w_pos."""
    if not records:
        raise InputError("the dataset is empty")
    windows = config.window_tuple
    size = config.input_size
    by_id = {r.scan_id: r for r in records}
    scans: dict[str, CachedScan] = {}
    for i, rec in enumerate(records):
        scans[rec.scan_id] = cache_scan(rec, size=size, windows=windows, cache_root=cache_root)
        if progress is not None:
            progress(i + 1, len(records))
    positive = {
        sid: bool(s.has_hemorrhage) for sid, s in scans.items() if s.has_hemorrhage is not None
    }
    split = split_records(
        records,
        test_fraction=config.test_fraction,
        val_fraction=config.val_fraction,
        labeled_fraction=config.labeled_fraction,
        seed=config.split_seed,
        positive=positive,
        folds=config.folds,
        fold=config.fold,
    )
    for sid in split.train_unlabeled:  # hide the masks of scans used as unlabeled
        s = scans[sid]
        if s.mask is not None:
            scans[sid] = CachedScan(s.scan_id, s.images, None, s.native_shape, s.voxel_volume_ml)
    labeled = [scans[s] for s in split.train_labeled]
    total = sum(int(s.mask.size) for s in labeled if s.mask is not None)
    pos = sum(int(np.count_nonzero(s.mask)) for s in labeled if s.mask is not None)
    w_pos = positive_weight(total, pos)
    log.info(
        "split: %d labeled, %d unlabeled, %d validation, %d test scans; w_pos = %.3f",
        len(split.train_labeled),
        len(split.train_unlabeled),
        len(split.val),
        len(split.test),
        w_pos,
    )
    return TrainingData(by_id, scans, split, w_pos, size, windows)


@dataclass(frozen=True)
class Batch:
    """Augmented crops: labeled x_l (B_l, C, c, c), y_l (B_l, 1, c, c); unlabeled x_u."""

    x_l: torch.Tensor
    y_l: torch.Tensor
    x_u: torch.Tensor

    def to(self, device: torch.device | str, channels_last: bool = False) -> Batch:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return Batch(
            self.x_l.to(device).contiguous(memory_format=fmt),
            self.y_l.to(device).contiguous(memory_format=fmt),
            self.x_u.to(device).contiguous(memory_format=fmt),
        )


class BatchSampler:
    """Draws training batches; every random choice comes from the one ``rng`` it is given."""

    def __init__(
        self,
        data: TrainingData,
        config: DataConfig,
        *,
        batch_size: int,
        use_unlabeled: bool,
        rng: np.random.Generator,
    ) -> None:
        self.config = config
        self.rng = rng
        self.size = data.input_size
        self.crop = config.crop_size
        self.labeled = data.role("train_labeled")
        self.unlabeled = data.role("train_unlabeled") if use_unlabeled else []
        if not self.labeled:
            raise InputError("no labeled training scans")
        self.labeled_index = np.array(
            [(i, z) for i, s in enumerate(self.labeled) for z in range(s.n_slices)], dtype=np.int64
        )
        self.positive_index = np.array(
            [(i, int(z)) for i, s in enumerate(self.labeled) for z in s.positive_slices],
            dtype=np.int64,
        ).reshape(-1, 2)
        self.unlabeled_index = np.array(
            [(i, z) for i, s in enumerate(self.unlabeled) for z in range(s.n_slices)],
            dtype=np.int64,
        ).reshape(-1, 2)
        n_u = round(batch_size * config.unlabeled_share) if len(self.unlabeled_index) else 0
        self.n_unlabeled = min(max(n_u, 1 if n_u else 0), batch_size - 1)
        self.n_labeled = batch_size - self.n_unlabeled

    def _labeled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.n_labeled
        rng = self.rng
        n_pos = 0
        if len(self.positive_index):
            n_pos = int(rng.binomial(n, self.config.positive_fraction))
        picks = [self.positive_index[rng.integers(len(self.positive_index))] for _ in range(n_pos)]
        picks += [
            self.labeled_index[rng.integers(len(self.labeled_index))] for _ in range(n - n_pos)
        ]
        images = np.stack([self.labeled[i].images[z] for i, z in picks])
        masks = np.stack([self.labeled[i].mask[z] for i, z in picks])  # type: ignore[index]
        anchors = np.full((n, 2), np.nan)
        for k in range(n_pos):  # centre near a random hemorrhage pixel
            rows, cols = np.nonzero(masks[k])
            j = rng.integers(len(rows))
            anchors[k] = (rows[j] + 0.5, cols[j] + 0.5)
        return images, masks, anchors

    def _augment(
        self, images: np.ndarray, masks: np.ndarray | None, anchors: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        params = draw_params(
            self.rng,
            len(images),
            self.size,
            self.crop,
            rotation_deg=cfg.rotation_deg,
            flip_lr=cfg.flip_lr,
            flip_ud=cfg.flip_ud,
            anchors=anchors,
        )
        x = torch.from_numpy(np.ascontiguousarray(images))
        y = None if masks is None else torch.from_numpy(masks.astype(np.float32))[:, None]
        return apply_augment(x, y, params, self.crop)

    def next(self) -> Batch:
        images, masks, anchors = self._labeled()
        x_l, y_l = self._augment(images, masks, anchors)
        assert y_l is not None
        if self.n_unlabeled:
            idx = self.unlabeled_index[
                self.rng.integers(len(self.unlabeled_index), size=self.n_unlabeled)
            ]
            u = np.stack([self.unlabeled[i].images[z] for i, z in idx])
            x_u, _ = self._augment(u, None, None)
        else:
            x_u = x_l.new_zeros((0, *x_l.shape[1:]))
        return Batch(x_l, y_l, x_u)
