"""Inference engines behind one small interface: onnxruntime, a TensorRT plan, a Triton server.

Every engine takes a preprocessed batch ``(n, C, S, S)`` float32 and returns an ``EngineOutput``
with the probability ``(n, S, S)`` and, for an MC model, the entropy ``(n, S, S)`` in bits and the
per-sample foreground counts ``(n, T)``. What the model needs (input size, windows, threshold, T)
comes from its ``ModelInfo``; see ``ugss.runtime.model_info`` for the graph contract.

Only onnxruntime is imported at module level. TensorRT, ``cuda-python`` and ``tritonclient`` are
imported when asked for and, when missing, raise ``InputError`` with one line naming the fix.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import onnxruntime as ort

from ugss.cache_root import user_cache_root
from ugss.errors import InputError
from ugss.runtime.model_info import (
    DET_OUTPUT,
    INPUT_NAME,
    KIND_DETERMINISTIC,
    KIND_MC,
    MC_OUTPUTS,
    NOISE_INPUT_NAME,
    ModelInfo,
)

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

BUNDLED_MODEL = "default.onnx"
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
PROVIDER_CHOICES = ("auto", *PROVIDERS)  # what --provider accepts
# "auto" prefers CUDA over CPU. The TensorRT provider builds an engine per input shape on first
# use (minutes), so it is used only when asked for by name.
AUTO_ORDER = ("cuda", "cpu")
# Activation memory of one model sample per model pixel, measured for the paper's ResUNet in
# onnxruntime (measured: ~0.25 GB per decoder sample at 512²); used to bound slab sizes.
BYTES_PER_PIXEL_SAMPLE = 1000
# With dropout only before the 1x1 head (the default), the T samples repeat just the head: its
# 16-channel masked input and one logit per pixel and sample, not the whole network.
HEAD_BYTES_PER_PIXEL_SAMPLE = 80
DEFAULT_MODEL_MEMORY_MB = 768


@dataclass(frozen=True, eq=False)
class EngineOutput:
    """One batch of model outputs at model resolution."""

    prob: np.ndarray  # (n, S, S) float32: probability (MC: mean over the T samples)
    entropy: np.ndarray | None = None  # (n, S, S) float32, bits; MC models only
    sample_counts: np.ndarray | None = None  # (n, T) foreground pixels per sample; MC only


@runtime_checkable
class Engine(Protocol):
    """What ``segment_volume`` needs from a model."""

    info: ModelInfo

    @property
    def description(self) -> str:
        """Where the model runs, for reports (e.g. ``onnxruntime CPUExecutionProvider``)."""
        ...

    def reseed(self, seed: int | None) -> None:
        """Restart the MC noise sequence, so a scan's result does not depend on earlier scans."""
        ...

    def run(self, batch: np.ndarray) -> EngineOutput:
        """``(n, C, S, S)`` float32 → outputs for those ``n`` slices."""
        ...


def auto_batch_size(info: ModelInfo, memory_mb: int = DEFAULT_MODEL_MEMORY_MB) -> int:
    """Slices per model call so activations stay within ``memory_mb`` (T samples per slice)."""
    samples = max(info.mc_samples, 1)
    if info.dropout_at == "head":
        per_pixel = BYTES_PER_PIXEL_SAMPLE + HEAD_BYTES_PER_PIXEL_SAMPLE * samples
    else:
        per_pixel = BYTES_PER_PIXEL_SAMPLE * samples
    per_slice = info.input_size**2 * per_pixel
    return int(np.clip(memory_mb * 2**20 // per_slice, 1, 32))


def bundled_model_path() -> Path:
    """The default model shipped inside the package; one clear error while it is not there."""
    ref = resources.files("ugss") / "models" / BUNDLED_MODEL
    path = Path(str(ref))
    if not path.is_file():
        raise InputError(
            f"no --model given and the bundled default model is not installed ({path}); "
            "pass --model PATH to a model written by ugss-export"
        )
    return path


def model_twin(path: Path, *, det: bool = False, int8: bool = False) -> Path:
    """The sibling file names ``ugss-export`` writes beside ``X.onnx`` (MC, or the only graph):
    ``X-det.onnx``, ``X-int8.onnx``, ``X-det-int8.onnx``; an int8 path keeps its precision."""
    stem = path.name.removesuffix(".onnx")
    quantized = stem.endswith("-int8")
    stem = stem.removesuffix("-int8") + ("-det" if det else "")
    return path.with_name(f"{stem}{'-int8' if int8 or quantized else ''}.onnx")


def deterministic_companion(path: Path) -> Path | None:
    """The deterministic twin ugss-export writes beside an MC model, when it is there."""
    twin = model_twin(path, det=True)
    return twin if twin.is_file() else None


def _check_outputs(info: ModelInfo, outputs: list[str], where: str) -> None:
    need = (DET_OUTPUT,) if info.kind == KIND_DETERMINISTIC else MC_OUTPUTS
    missing = [name for name in need if name not in outputs]
    if missing:
        raise InputError(
            f"{where}: a {info.kind} model must output {', '.join(need)}; "
            f"missing {', '.join(missing)}"
        )


def _split_outputs(info: ModelInfo, values: dict[str, np.ndarray], n: int) -> EngineOutput:
    if info.kind == KIND_DETERMINISTIC:
        prob = values[DET_OUTPUT]
        return EngineOutput(prob=np.asarray(prob, dtype=np.float32).reshape(n, *prob.shape[-2:]))
    prob, entropy, counts = (values[k] for k in MC_OUTPUTS)
    return EngineOutput(
        prob=np.asarray(prob, dtype=np.float32).reshape(n, *prob.shape[-2:]),
        entropy=np.asarray(entropy, dtype=np.float32).reshape(n, *entropy.shape[-2:]),
        sample_counts=np.asarray(counts).reshape(n, -1),
    )


class _NoiseSource:
    """Host-side dropout noise ``[T, C]`` uniform in [0, 1), drawn once per scan (``reseed``).

    One draw per scan makes sample t the same sub-network on every slab of the scan, so the T
    per-sample volumes are volumes of whole-scan samples, not mixtures of slab-wise draws.
    """

    def __init__(self, shape: tuple[int, int] | None, seed: int | None) -> None:
        self.shape = shape
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        rng = np.random.default_rng(seed)
        self.current = None if self.shape is None else rng.random(self.shape, dtype=np.float32)

    def feed(self) -> dict[str, np.ndarray]:
        return {} if self.current is None else {NOISE_INPUT_NAME: self.current}


def _noise_shape(info: ModelInfo, dims: list[Any], where: str) -> tuple[int, int]:
    """``dropout_noise`` is ``[T, C]``; T may be symbolic (then ``info.mc_samples``), C may not."""
    if len(dims) != 2:
        raise InputError(f"{where}: input {NOISE_INPUT_NAME!r} must be [T, C], got {dims}")
    t = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else info.mc_samples
    if not (isinstance(dims[1], int) and dims[1] > 0):
        raise InputError(f"{where}: input {NOISE_INPUT_NAME!r} needs a fixed channel count")
    return int(t), int(dims[1])


def resolve_providers(provider: str) -> list[str]:
    """``auto|cpu|cuda|tensorrt`` → onnxruntime provider list, or a clear error."""
    available = ort.get_available_providers()
    key = provider.lower()
    if key == "auto":
        for name in AUTO_ORDER:
            if PROVIDERS[name] in available:
                return [PROVIDERS[name]] + ([PROVIDERS["cpu"]] if name != "cpu" else [])
        return [PROVIDERS["cpu"]]
    if key not in PROVIDERS:
        raise InputError(f"unknown provider {provider!r}: use {', '.join(PROVIDER_CHOICES)}")
    wanted = PROVIDERS[key]
    if wanted not in available:
        raise InputError(
            f"onnxruntime has no {wanted} here (available: {', '.join(available)}); "
            "install onnxruntime-gpu (pip install 'ugss[gpu]') on a machine with an NVIDIA GPU"
        )
    return [wanted] + ([PROVIDERS["cpu"]] if key != "cpu" else [])


def profile_batches(info: ModelInfo, max_batch: int) -> tuple[int, int, int]:
    """Batch sizes ``(min, opt, max)`` of a TensorRT optimization profile: the optimum at the
    slab ``segment_volume`` sends (``min(auto_batch_size, DEFAULT_SLAB)``)."""
    from ugss.runtime.segment import DEFAULT_SLAB  # segment imports this module

    return 1, max(1, min(auto_batch_size(info), DEFAULT_SLAB, max_batch)), max_batch


def _tensorrt_providers(path: Path, cache_dir: str | Path | None, fp16: bool) -> list[Any]:
    """onnxruntime's TensorRT provider with explicit profile shapes (no engine rebuild when the
    last slab is smaller), an engine cache folder (default ``user_cache_root() / "trt"``) and
    optional fp16; the CUDA provider behind it for nodes TensorRT does not take, and the CPU
    last."""
    from ugss.runtime.segment import DEFAULT_SLAB

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    probe = ort.InferenceSession(str(path), opts, providers=[PROVIDERS["cpu"]])
    info = ModelInfo.from_metadata(probe.get_modelmeta().custom_metadata_map)
    size, channels = info.input_size, len(info.windows)
    shapes = [
        f"{INPUT_NAME}:{b}x{channels}x{size}x{size}" for b in profile_batches(info, DEFAULT_SLAB)
    ]
    cache = Path(cache_dir) if cache_dir else user_cache_root() / "trt"
    cache.mkdir(parents=True, exist_ok=True)
    options = {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
        "trt_fp16_enable": bool(fp16),
        "trt_profile_min_shapes": shapes[0],
        "trt_profile_opt_shapes": shapes[1],
        "trt_profile_max_shapes": shapes[2],
    }
    rest = [p for p in (PROVIDERS["cuda"], PROVIDERS["cpu"]) if p in ort.get_available_providers()]
    return [(PROVIDERS["tensorrt"], options), *rest]


class OnnxEngine:
    """One onnxruntime session, created once and reused.

    Reuse matters: every new session replays the same random sequence of in-graph random ops,
    so MC samples would repeat across sessions (measured earlier). For graphs that take
    ``dropout_noise`` the noise comes from a seeded numpy generator instead, drawn once per scan.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        provider: str = "auto",
        threads: int | None = None,
        seed: int | None = 0,
        trt_cache_dir: str | Path | None = None,
        trt_fp16: bool = False,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: model file not found")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.inter_op_num_threads = 1
        if threads is not None:
            if threads < 1:
                raise InputError(f"--threads must be >= 1, got {threads}")
            opts.intra_op_num_threads = threads
        providers: list[Any] = list(resolve_providers(provider))
        wanted = providers[0]
        if wanted == PROVIDERS["tensorrt"]:
            providers = _tensorrt_providers(path, trt_cache_dir, trt_fp16)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises several kinds for a bad file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{path}: not a usable ONNX model ({first})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.info = ModelInfo.from_metadata(meta)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from exc
        self.path = path
        inputs = {i.name: i for i in self.session.get_inputs()}
        if INPUT_NAME not in inputs or len(inputs[INPUT_NAME].shape) != 4:
            raise InputError(f"{path}: model has no input {INPUT_NAME!r} of shape [N, C, H, W]")
        self.channels = inputs[INPUT_NAME].shape[1]
        if isinstance(self.channels, int) and self.channels != len(self.info.windows):
            raise InputError(
                f"{path}: model takes {self.channels} channels but its metadata lists "
                f"{len(self.info.windows)} windows"
            )
        self.outputs = [o.name for o in self.session.get_outputs()]
        _check_outputs(self.info, self.outputs, str(path))
        noise = None
        if NOISE_INPUT_NAME in inputs:
            noise = _noise_shape(self.info, list(inputs[NOISE_INPUT_NAME].shape), str(path))
        self.noise = _NoiseSource(noise, seed)
        self.provider = self.session.get_providers()[0]
        self.fallback = "" if self.provider == wanted else f"asked for {wanted}"
        if self.fallback:
            log.warning("%s: onnxruntime %s, running on %s", path, self.fallback, self.provider)
        log.info("loaded %s (%s, %s) on %s", path, self.info.name, self.info.kind, self.provider)

    @property
    def description(self) -> str:
        fell = f" ({self.fallback}, not available)" if self.fallback else ""
        return f"onnxruntime {ort.__version__} {self.provider}{fell}"

    def reseed(self, seed: int | None) -> None:
        self.noise.reseed(seed)

    def run(self, batch: np.ndarray) -> EngineOutput:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        feed = {INPUT_NAME: batch, **self.noise.feed()}
        values = dict(zip(self.outputs, self.session.run(self.outputs, feed), strict=True))
        return _split_outputs(self.info, values, batch.shape[0])


PLAN_TRT_VERSION_KEY = "ugss.export.tensorrt_version"  # written beside a plan by ugss-export
PLAN_PROFILE_KEY = "ugss.export.profile"  # {input: [min, opt, max] shapes}, JSON


def cuda_device_count() -> int:
    """NVIDIA GPUs visible through the driver API (no CUDA toolkit, torch or tensorrt needed)."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    return 0


def _read_sidecar(path: Path) -> dict[str, str]:
    """A TensorRT plan has no metadata of its own: ugss-export writes it as JSON beside it."""
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate.is_file():
            try:
                meta = json.loads(candidate.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise InputError(f"{candidate}: unreadable model metadata ({exc})") from exc
            return {str(k): str(v) for k, v in meta.items()}
    raise InputError(f"{path}: no metadata file beside the plan ({path.name}.json)")


def _same_tensorrt(path: Path, built: str | None, installed: str) -> None:
    """Plans load only into the TensorRT version that built them (major.minor.patch)."""
    if built and built.split(".")[:3] != installed.split(".")[:3]:
        raise InputError(
            f"{path}: built with TensorRT {built}, this is TensorRT {installed}; rebuild it "
            "here with ugss-export --trt (plans are tied to one TensorRT version)"
        )


def _import_tensorrt(path: Path) -> tuple[Any, Any]:
    try:
        import tensorrt as trt

        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python
    except ImportError as exc:
        raise InputError(
            f"{path}: running a TensorRT plan needs the tensorrt and cuda-python packages "
            f"and an NVIDIA GPU ({exc.name} is not installed; pip install 'ugss[trt]')"
        ) from exc
    return trt, cudart


class _Cuda:
    """The few cuda-python runtime calls the plan runner makes, each checked."""

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart
        self.h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost

    def call(self, name: str, *args: Any) -> Any:
        result = getattr(self.rt, name)(*args)
        err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(err) != 0:
            raise RuntimeError(f"CUDA error in {name}: {err}")
        return rest[0] if len(rest) == 1 else rest


@dataclass(frozen=True, eq=False)
class _Buffer:
    """One I/O tensor: device memory and pinned host memory for the profile's largest shape."""

    name: str
    device: int
    host_ptr: int
    host: np.ndarray  # flat view of the pinned memory, the tensor's dtype
    nbytes: int


def _pinned(cuda: _Cuda, name: str, shape: tuple[int, ...], dtype: np.dtype) -> _Buffer:
    nbytes = max(int(np.prod(shape)) * dtype.itemsize, dtype.itemsize)
    device = int(cuda.call("cudaMalloc", nbytes))
    host_ptr = int(cuda.call("cudaMallocHost", nbytes))
    raw = (ctypes.c_byte * nbytes).from_address(host_ptr)
    host = np.frombuffer(raw, dtype=np.uint8).view(dtype)
    return _Buffer(name, device, host_ptr, host, nbytes)


class TensorRTEngine:
    """A serialized TensorRT engine (``.plan``) run with ``tensorrt`` and ``cuda-python``.

    TensorRT 10/11 tensor API (``set_input_shape``, ``set_tensor_address``,
    ``execute_async_v3``). Model metadata, the TensorRT version and the optimization profile are
    read from ``<plan>.json``. Device buffers and pinned host buffers are allocated once, for the
    profile's largest batch; a call copies in, runs and copies out asynchronously on one stream
    and synchronizes once. Batches larger than the profile allows are run in pieces.
    """

    def __init__(self, path: str | Path, *, seed: int | None = 0) -> None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: TensorRT plan not found")
        trt, cudart = _import_tensorrt(path)
        meta = _read_sidecar(path)
        self.info = ModelInfo.from_metadata(meta)
        _same_tensorrt(path, meta.get(PLAN_TRT_VERSION_KEY), str(trt.__version__))
        if cuda_device_count() < 1:
            raise InputError(f"{path}: a TensorRT plan needs an NVIDIA GPU; none is visible")
        self._trt, self._cuda, self.path = trt, _Cuda(cudart), path
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise InputError(f"{path}: TensorRT could not load this plan (other version or GPU?)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.outputs = [n for n in names if not is_input[n]]
        _check_outputs(self.info, self.outputs, str(path))
        noise = None
        if NOISE_INPUT_NAME in names:
            dims = list(self._engine.get_tensor_shape(NOISE_INPUT_NAME))
            noise = _noise_shape(self.info, [d if d > 0 else None for d in dims], str(path))
        self.noise = _NoiseSource(noise, seed)
        self.max_batch = self._profile_max_batch(meta)
        self._stream = self._cuda.call("cudaStreamCreate")
        self._buffers = self._allocate(names)

    def _profile_max_batch(self, meta: dict[str, str]) -> int:
        """Largest batch of the plan's profile: from the sidecar, else from the engine."""
        if PLAN_PROFILE_KEY in meta:
            try:
                return int(json.loads(meta[PLAN_PROFILE_KEY])[INPUT_NAME][2][0])
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise InputError(f"{self.path}: bad profile in the plan's metadata") from exc
        _lo, _opt, hi = self._engine.get_tensor_profile_shape(INPUT_NAME, 0)
        return int(hi[0])

    def _allocate(self, names: list[str]) -> dict[str, _Buffer]:
        size, channels = self.info.input_size, len(self.info.windows)
        self._set_shapes((self.max_batch, channels, size, size))
        buffers = {}
        for name in names:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
            dtype = np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))
            buffers[name] = _pinned(self._cuda, name, shape, dtype)
            self._context.set_tensor_address(name, buffers[name].device)
        return buffers

    @property
    def description(self) -> str:
        return f"TensorRT {self._trt.__version__} plan {self.path.name}"

    def reseed(self, seed: int | None) -> None:
        self.noise.reseed(seed)

    def _set_shapes(self, image_shape: tuple[int, ...]) -> None:
        shapes = {INPUT_NAME: image_shape}
        if self.noise.shape is not None:
            shapes[NOISE_INPUT_NAME] = self.noise.shape
        for name, shape in shapes.items():
            if not self._context.set_input_shape(name, shape):
                raise InputError(
                    f"{self.path}: input {name} of shape {list(shape)} is outside the plan's "
                    f"optimization profile (batch 1..{getattr(self, 'max_batch', '?')}, "
                    f"{self.info.input_size}² pixels)"
                )

    def run(self, batch: np.ndarray) -> EngineOutput:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        parts = [
            self._run_part(batch[i : i + self.max_batch])
            for i in range(0, batch.shape[0], self.max_batch)
        ]
        if len(parts) == 1:
            return _split_outputs(self.info, parts[0], batch.shape[0])
        joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return _split_outputs(self.info, joined, batch.shape[0])

    def _run_part(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        cuda, stream = self._cuda, self._stream
        self._set_shapes(tuple(batch.shape))
        for name, array in {INPUT_NAME: batch, **self.noise.feed()}.items():
            buf = self._buffers[name]
            flat = np.asarray(array, dtype=buf.host.dtype).reshape(-1)
            buf.host[: flat.size] = flat
            cuda.call("cudaMemcpyAsync", buf.device, buf.host_ptr, flat.nbytes, cuda.h2d, stream)
        if not self._context.execute_async_v3(stream):
            raise RuntimeError(f"{self.path}: TensorRT execution failed")
        shapes = {n: tuple(int(d) for d in self._context.get_tensor_shape(n)) for n in self.outputs}
        for name in self.outputs:
            buf = self._buffers[name]
            nbytes = int(np.prod(shapes[name])) * buf.host.dtype.itemsize
            cuda.call("cudaMemcpyAsync", buf.host_ptr, buf.device, nbytes, cuda.d2h, stream)
        cuda.call("cudaStreamSynchronize", stream)
        return {
            n: self._buffers[n].host[: int(np.prod(s))].reshape(s).copy() for n, s in shapes.items()
        }

    def close(self) -> None:
        """Free the device and pinned buffers (also done when the engine is collected)."""
        buffers, self._buffers = getattr(self, "_buffers", {}), {}
        for buf in buffers.values():
            self._cuda.rt.cudaFree(buf.device)
            self._cuda.rt.cudaFreeHost(buf.host_ptr)
        stream, self._stream = getattr(self, "_stream", None), None
        if stream is not None:
            self._cuda.rt.cudaStreamDestroy(stream)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: CUDA may be gone
            self.close()


class TritonEngine:
    """A model served by a Triton Inference Server, over HTTP (``tritonclient[http]``).

    The model's UGSS metadata travels in its ``config.pbtxt`` as ``parameters`` with the same
    ``ugss.*`` keys as the ONNX metadata (written by ``ugss-export --triton``).
    """

    def __init__(self, url: str, model_name: str, *, seed: int | None = 0) -> None:
        try:
            import tritonclient.http as httpclient
        except (ImportError, RuntimeError) as exc:  # RuntimeError: installed without [http]
            raise InputError(
                "--triton-url needs tritonclient with HTTP support "
                "(pip install 'tritonclient[http]')"
            ) from exc
        self._http = httpclient
        address = url.removeprefix("http://").removeprefix("https://")
        try:
            self._client = httpclient.InferenceServerClient(url=address)
            if not self._client.is_model_ready(model_name):
                raise InputError(f"Triton at {url}: model {model_name!r} is not ready")
            config = self._client.get_model_config(model_name)
        except InputError:
            raise
        except Exception as exc:  # connection refused, DNS, HTTP errors
            raise InputError(f"Triton at {url}: cannot reach model {model_name!r} ({exc})") from exc
        config = config.get("config", config)
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        try:
            self.info = ModelInfo.from_metadata(params)
        except InputError as exc:
            raise InputError(f"Triton model {model_name!r}: {exc}") from exc
        self.outputs = [o["name"] for o in config.get("output", [])]
        _check_outputs(self.info, self.outputs, f"Triton model {model_name!r}")
        inputs = {i["name"]: i for i in config.get("input", [])}
        noise = None
        if NOISE_INPUT_NAME in inputs:
            dims = [int(d) for d in inputs[NOISE_INPUT_NAME].get("dims", [])]
            noise = _noise_shape(self.info, [d if d > 0 else None for d in dims], model_name)
        self.noise = _NoiseSource(noise, seed)
        self.url, self.model_name = url, model_name

    @property
    def description(self) -> str:
        return f"Triton {self.url} model {self.model_name}"

    def reseed(self, seed: int | None) -> None:
        self.noise.reseed(seed)

    def run(self, batch: np.ndarray) -> EngineOutput:
        feed = {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32), **self.noise.feed()}
        inputs = []
        for name, array in feed.items():
            item = self._http.InferInput(name, list(array.shape), "FP32")
            item.set_data_from_numpy(array)
            inputs.append(item)
        requested = [self._http.InferRequestedOutput(name) for name in self.outputs]
        result = self._client.infer(self.model_name, inputs, outputs=requested)
        values = {name: result.as_numpy(name) for name in self.outputs}
        return _split_outputs(self.info, values, batch.shape[0])


def open_engine(
    model: str | Path | None = None,
    *,
    provider: str = "auto",
    threads: int | None = None,
    seed: int | None = 0,
    triton_url: str | None = None,
    deterministic: bool = False,
) -> Engine:
    """The engine for a model path (``.onnx`` or ``.plan``), a Triton model name, or the default.

    With ``deterministic``, an MC model is swapped for its ``-det.onnx`` twin when one lies
    beside it; otherwise the MC model runs and the caller drops the MC outputs.
    """
    if triton_url:
        return TritonEngine(triton_url, str(model or "ugss"), seed=seed)
    path = Path(model) if model is not None else bundled_model_path()
    if path.suffix.lower() in (".plan", ".engine", ".trt"):
        return TensorRTEngine(path, seed=seed)
    if not path.exists():
        raise InputError(f"{path}: model file not found")
    engine = OnnxEngine(path, provider=provider, threads=threads, seed=seed)
    if deterministic and engine.info.kind == KIND_MC:
        twin = deterministic_companion(path)
        if twin is not None:
            det = OnnxEngine(twin, provider=provider, threads=threads, seed=seed)
            if det.info.kind == KIND_DETERMINISTIC:
                return det
    return engine


__all__ = [
    "Engine",
    "EngineOutput",
    "OnnxEngine",
    "TensorRTEngine",
    "TritonEngine",
    "auto_batch_size",
    "bundled_model_path",
    "open_engine",
]
