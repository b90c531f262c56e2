"""Self-describing models: ``ModelInfo`` (the runtime contract) plus export details.

Every exported file carries ``ModelInfo.to_metadata()`` (``ugss.*`` keys, read back by
``ModelInfo.from_metadata``) and ``ugss.export.*`` keys the runtime does not need but a person
auditing a model does (noise layout, exporter, library versions). A TensorRT plan has no metadata
of its own: the same map goes into ``<plan>.json`` beside it; a Triton model gets it as
``parameters`` in ``config.pbtxt``.

An MC model's map also holds ``ugss.interval_calibration`` (``ModelInfo.interval_calibration``,
added after export by ``ugss.export.interval_calibration``) and, when it rests on few scans,
``ugss.export.interval_calibration_warning``; every copy above carries both, since each copies
the whole map.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
from onnx import helper

from ugss import __version__
from ugss.runtime.model_info import KIND_DETERMINISTIC, KIND_MC, ModelInfo

if TYPE_CHECKING:
    from ugss.train.predict import LoadedCheckpoint

PRODUCER = "ugss-export"
EXPORT_PREFIX = "ugss.export."


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def training_summary(ckpt: LoadedCheckpoint, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the model was trained with, for a metadata string; ``data.split_ids`` holds the
    scan ids of each role of the split, so ``ugss-eval model.onnx --split test`` scores the
    scans the model never trained on."""
    out: dict[str, Any] = {
        "weights": ckpt.which,
        "method": ckpt.method,
        "epoch": ckpt.epoch,
        "step": ckpt.step,
        "dropout_kind": ckpt.model_config.dropout_kind,
        "arch": ckpt.model_config.arch,
    }
    cfg = ckpt.config
    if cfg is not None:
        out.update(
            teacher_update=cfg.method.resolved_teacher_update,
            consistency=cfg.method.consistency,
            uncertainty_mask=cfg.method.uncertainty_mask,
            use_confidence=cfg.method.use_confidence,
            labeled_fraction=cfg.data.labeled_fraction,
            synthetic=not (cfg.data.data_dir or cfg.data.manifest),
        )
    data = ckpt.data
    if data:
        split = data.get("split", {})
        out["data"] = {
            "n_scans": data.get("n_scans"),
            "scans": {role: len(ids) for role, ids in split.items()},
            "split_ids": {role: list(ids) for role, ids in split.items()},
            "slices": data.get("slices"),
            "positive_slices_train": data.get("positive_slices_train"),
            "w_pos": data.get("w_pos"),
        }
    out.update(extra or {})
    return out


def model_info(
    ckpt: LoadedCheckpoint,
    *,
    kind: str,
    mc_samples: int,
    threshold: float,
    name: str,
    version: int,
    sha256: str,
    training: dict[str, Any],
) -> ModelInfo:
    mc = kind == KIND_MC
    return ModelInfo(
        kind=kind,
        input_size=ckpt.input_size,
        windows=ckpt.windows,
        threshold=threshold,
        mc_samples=mc_samples if mc else 0,
        dropout_rate=ckpt.model_config.dropout_rate if mc else 0.0,
        dropout_at=ckpt.model_config.dropout_at if mc else "",
        name=name,
        version=str(version),
        method=ckpt.method,
        checkpoint_sha256=sha256,
        training=training,
    )


def metadata_map(info: ModelInfo, export: dict[str, Any]) -> dict[str, str]:
    """``ModelInfo`` keys plus ``ugss.export.*`` keys, all strings."""
    meta = info.to_metadata()
    meta.update({f"{EXPORT_PREFIX}{k}": str(v) for k, v in export.items()})
    return meta


def attach(model: onnx.ModelProto, meta: dict[str, str], version: int) -> None:
    """Write ``metadata_props``, ``model_version``, producer and a short doc string."""
    helper.set_model_props(model, meta)
    model.model_version = int(version)
    model.producer_name = PRODUCER
    model.producer_version = __version__
    kind = meta.get("ugss.kind", KIND_DETERMINISTIC)
    model.doc_string = (
        f"UGSS ResUNet ({kind}) for intracranial hemorrhage segmentation; "
        "see metadata_props ugss.* (ugss.runtime.model_info)"
    )


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
