"""Turn the ONNX models of a Triton repository into TensorRT plans with *this* TensorRT.

A plan loads only into the TensorRT version that built it, so plans for a Triton image must be
built with that image's TensorRT. This runs inside the matching NGC TensorRT container (same
release tag as the Triton image, e.g. ``nvcr.io/nvidia/tensorrt:24.12-py3`` for
``tritonserver:24.12-py3``; see ``deploy/triton/README.md``) and needs no torch:

    python -m ugss.export.triton_plans deploy/triton/models [--fp32]

For every ``<name>/config.pbtxt`` with ``platform: "onnxruntime_onnx"``: the newest version's
``model.onnx`` is built into ``model.plan`` beside it by ``tensorrt.build_engine`` (the
``ugss-export --trt`` code: pattern check, TensorRT 10/11 path, profile up to the config's
``max_batch_size``, parity against onnxruntime CPU), and the config's platform becomes
``tensorrt_plan`` with the TensorRT version recorded as a parameter.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ugss.errors import InputError, UGSSError
from ugss.runtime.engines import PLAN_TRT_VERSION_KEY

from .metadata import read_onnx_metadata
from .tensorrt import build_engine
from .triton import PLATFORM_ONNX, PLATFORM_PLAN, _quote


def _field(text: str, key: str, where: Path) -> str:
    match = re.search(rf"^{key}:\s*(.+)$", text, flags=re.M)
    if match is None:
        raise InputError(f"{where}: no {key} line")
    return match.group(1).strip().strip('"')


def _newest_onnx(folder: Path) -> Path:
    versions = sorted((int(p.name), p) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    for _, vdir in reversed(versions):
        if (vdir / "model.onnx").is_file():
            return vdir / "model.onnx"
    raise InputError(f"{folder}: no <version>/model.onnx")


def convert_model(folder: Path, *, fp16: bool = True) -> Path | None:
    """Build ``model.plan`` for one model folder and switch its config; None if not ONNX."""
    config = folder / "config.pbtxt"
    text = config.read_text()
    if _field(text, "platform", config) != PLATFORM_ONNX:
        return None
    max_batch = int(_field(text, "max_batch_size", config))
    onnx_path = _newest_onnx(folder)
    plan = onnx_path.with_name("model.plan")
    build = build_engine(
        onnx_path, plan, read_onnx_metadata(onnx_path), fp16=fp16, max_batch=max_batch
    )
    text = text.replace(f'platform: "{PLATFORM_ONNX}"', f'platform: "{PLATFORM_PLAN}"')
    version = json.loads(build.sidecar.read_text())[PLAN_TRT_VERSION_KEY]
    value = f"{{ string_value: {_quote(version)} }}"
    text += f"parameters {{ key: {_quote(PLAN_TRT_VERSION_KEY)} value: {value} }}\n"
    config.write_text(text)
    return plan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repository", type=Path, help="model repository from ugss-export --triton")
    parser.add_argument("--fp32", action="store_true", help="fp32 plans instead of fp16")
    args = parser.parse_args(argv)
    try:
        configs = sorted(args.repository.glob("*/config.pbtxt"))
        if not configs:
            raise InputError(f"{args.repository}: no <model>/config.pbtxt (ugss-export --triton)")
        for config in configs:
            plan = convert_model(config.parent, fp16=not args.fp32)
            print(f"{config.parent.name}: {plan or 'not an ONNX model, left as it is'}")
    except UGSSError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
