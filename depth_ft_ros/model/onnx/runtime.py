"""Run an exported folder (`depth-ft-ros export-onnx`) with ONNX Runtime, checked against its probe at load.

An export folder holds encoder.onnx, unet.onnx and decoder.onnx (the three stages of model/stages.py for
one fixed processing size, batch 1), probe.npz and the manifest depth_ft_export.json. onnxruntime is
imported only here and only when an export is loaded, so the node runs without it on plain checkpoints.

Execution providers: "auto" tries TensorRT -> CUDA -> CPU by what this onnxruntime build offers ("cpu"
device: CPU only); a comma list ("cuda,cpu") overrides. TensorRT builds its engines on the first start
and caches them beside the export, in trt_engines/<gpu>-trt<version>-ort<version>/ (the user cache dir
when the export folder is read-only).

The probe: the manifest stores a fixed input of each stage and the fp32 PyTorch output on it, with a
per-stage tolerance measured at export time. At load each stage runs its probe input; a difference past
the tolerance names the stage and its size, and refuses the export (probe="refuse") or logs a warning
(probe="warn"). A wrong engine (a TensorRT/JetPack change, a corrupted or altered file) is caught
before anything is published.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depth_ft_ros.errors import ConfigError, ModelLoadError

MANIFEST_NAME = "depth_ft_export.json"
FORMAT = "depth_ft_ros-onnx-export"
FORMAT_VERSION = 1
PROBE_MODES = ("refuse", "warn")
STAGE_FILES = {"encode": "encoder.onnx", "unet": "unet.onnx", "decode": "decoder.onnx"}
# Stage inputs and output, by graph name; the probe stores each under "<stage>.<name>".
STAGE_IO: dict[str, tuple[tuple[str, ...], str]] = {
    "encode": (("image",), "image_latent"),
    "unet": (("image_latent", "start_latent"), "pred_latent"),
    "decode": (("pred_latent",), "result"),
}
PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_LOG = logging.getLogger(__name__)


class ProbeMismatchError(ModelLoadError):
    """An exported stage disagrees with its stored PyTorch output beyond the tolerance."""


def is_export_dir(model: str | os.PathLike[str]) -> bool:
    """True for a folder written by `depth-ft-ros export-onnx` (recognised by its manifest)."""
    return (Path(model).expanduser() / MANIFEST_NAME).is_file()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ExportManifest:
    folder: Path
    data: dict[str, Any]

    @property
    def family(self) -> str:
        return str(self.data["family"])

    @property
    def dtype(self) -> str:
        return str(self.data["dtype"])

    @property
    def processing_resolution(self) -> int:
        return int(self.data["processing_resolution"])

    @property
    def processing_hw(self) -> tuple[int, int]:
        height, width = self.data["processing_hw"]
        return int(height), int(width)

    @property
    def tolerances(self) -> dict[str, float]:
        return {stage: float(value) for stage, value in self.data["probe"]["tolerances"].items()}

    def stage_path(self, stage: str) -> Path:
        return self.folder / str(self.data["stages"][stage]["file"])


def read_manifest(folder: str | os.PathLike[str]) -> ExportManifest:
    path = Path(folder).expanduser().resolve() / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the export manifest {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelLoadError(f"{path} is not a depth_ft_ros ONNX export manifest (format != {FORMAT!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(f"{path}: format_version {data.get('format_version')!r}, this version reads "
                             f"{FORMAT_VERSION}; export the checkpoint again with this version")
    missing = [key for key in ("family", "dtype", "processing_resolution", "processing_hw", "stages", "probe")
               if key not in data]
    if missing:
        raise ModelLoadError(f"{path} lacks {', '.join(missing)}")
    manifest = ExportManifest(path.parent, data)
    for stage in STAGE_FILES:
        if stage not in data["stages"] or not manifest.stage_path(stage).is_file():
            raise ModelLoadError(f"export {path.parent} is missing the {stage} stage ({STAGE_FILES[stage]})")
    return manifest


def import_onnxruntime() -> Any:
    try:
        return importlib.import_module("onnxruntime")
    except ImportError as exc:
        raise ModelLoadError(
            "loading an ONNX export needs onnxruntime: `pip install onnxruntime` (CPU), `pip install "
            "onnxruntime-gpu` (CUDA/TensorRT on a desktop), or the JetPack build on a Jetson (see README)"
        ) from exc


def _gpu_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "gpu"


def _tensorrt_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt_libs"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"


def engine_cache_dir(manifest: ExportManifest, ort_version: str) -> Path:
    """TensorRT engine cache for this export, keyed by GPU and versions; beside the export when writable."""
    key = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{_gpu_name()}-trt{_tensorrt_version()}-ort{ort_version}")
    beside = manifest.folder / "trt_engines" / key
    try:
        beside.mkdir(parents=True, exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    except OSError:
        pass
    from depth_ft_ros.model.families.checkpoint import user_cache_dir

    folder_key = hashlib.sha256(str(manifest.folder).encode()).hexdigest()[:16]
    fallback = user_cache_dir() / "trt_engines" / folder_key / key
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def resolve_providers(
    requested: str | Sequence[str] | None, device: str, available: Sequence[str]
) -> list[str]:
    """Provider names in order of preference. `requested`: "auto"/None, or names from PROVIDER_NAMES
    (a comma-separated string or a sequence). `device`: "auto" | "cpu" | "cuda" (| "cuda:N")."""
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda for an ONNX export, got {device!r}")
    if requested in (None, "", "auto"):
        wanted = ["cpu"] if device == "cpu" else ["tensorrt", "cuda", "cpu"]
        chosen = [PROVIDER_NAMES[name] for name in wanted if PROVIDER_NAMES[name] in available]
        gpu = [name for name in chosen if name != PROVIDER_NAMES["cpu"]]
        if device.startswith("cuda") and not gpu:
            raise ConfigError(f"device {device!r} asked for, but this onnxruntime offers {', '.join(available)}: "
                              "install onnxruntime-gpu (see README) or use device auto/cpu")
        return chosen
    names = [n.strip().lower() for n in (requested.split(",") if isinstance(requested, str) else requested)]
    unknown = [n for n in names if n not in PROVIDER_NAMES]
    if unknown or not names:
        raise ConfigError(f"onnx_providers {requested!r}: allowed values are auto, or a comma list of "
                          f"{', '.join(PROVIDER_NAMES)}")
    missing = [n for n in names if PROVIDER_NAMES[n] not in available]
    if missing:
        raise ConfigError(f"onnx_providers {requested!r}: {', '.join(missing)} not offered by this onnxruntime "
                          f"(it has {', '.join(available)})")
    return [PROVIDER_NAMES[n] for n in names]


def _provider_options(provider: str, manifest: ExportManifest, ort_version: str) -> dict[str, Any]:
    if provider == PROVIDER_NAMES["tensorrt"]:
        cache = str(engine_cache_dir(manifest, ort_version))
        return {
            "trt_fp16_enable": manifest.dtype == "fp16",  # an fp32 export stays fp32 (its probe tolerance)
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": cache,
        }
    return {}


@dataclass(frozen=True)
class ProbeResult:
    stage: str
    max_abs_difference: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_difference <= self.tolerance


class OnnxStages:
    """The three stages on ONNX Runtime sessions (batch-1 graphs: a batch runs frame by frame)."""

    runtime = "onnxruntime"

    def __init__(self, manifest: ExportManifest, sessions: dict[str, Any], providers: list[str]) -> None:
        self.manifest = manifest
        self.sessions = sessions
        self.providers = providers  # what the sessions actually run on, best first

    def _run(self, stage: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        session = self.sessions[stage]
        wanted = [i.name for i in session.get_inputs()]  # 4-channel UNets take no start latent
        device = next(iter(inputs.values())).device
        outputs = []
        for index in range(next(iter(inputs.values())).shape[0]):
            feed = {name: inputs[name][index : index + 1].detach().float().cpu().numpy() for name in wanted}
            outputs.append(torch.from_numpy(session.run(None, feed)[0]))
        return torch.cat(outputs).to(device=device, dtype=torch.float32)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return self._run("encode", {"image": image})

    def denoise(self, image_latent: torch.Tensor, start_latent: torch.Tensor) -> torch.Tensor:
        return self._run("unet", {"image_latent": image_latent, "start_latent": start_latent})

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self._run("decode", {"pred_latent": latent})

    def run_probe(self) -> list[ProbeResult]:
        """Each stage on its stored probe input against its stored fp32 PyTorch output."""
        with np.load(self.manifest.folder / self.manifest.data["probe"]["file"]) as probe:
            arrays = {key: probe[key] for key in probe.files}
        results = []
        for stage, (inputs, output) in STAGE_IO.items():
            feed = {name: torch.from_numpy(arrays[f"{stage}.{name}"]) for name in inputs}
            got = self._run(stage, feed).numpy()
            expected = arrays[f"{stage}.{output}"]
            difference = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
            if not np.isfinite(got).all():
                difference = float("inf")
            results.append(ProbeResult(stage, difference, self.manifest.tolerances[stage]))
        return results


def check_probe(results: list[ProbeResult], manifest: ExportManifest, providers: list[str], mode: str) -> None:
    """Refuse (ProbeMismatchError) or warn when a stage is past its tolerance."""
    bad = [r for r in results if not r.ok]
    if not bad:
        return
    detail = "; ".join(
        f"stage {r.stage} differs from its fp32 PyTorch output by {r.max_abs_difference:.3g} (max abs), "
        f"tolerance {r.tolerance:.3g} for {manifest.dtype}" for r in bad
    )
    message = (f"ONNX export {manifest.folder} on {providers[0]}: {detail}. The engine or the exported files do "
               "not compute what was exported (a TensorRT/driver change, a corrupted or altered file); export "
               "again on this version, or set onnx_probe=warn to run anyway")
    if mode == "warn":
        _LOG.warning("%s", message)
        return
    raise ProbeMismatchError(message)


def load_stages(
    manifest: ExportManifest,
    *,
    device: str,
    providers: str | Sequence[str] | None = None,
    probe: str = "refuse",
) -> OnnxStages:
    """Sessions for the three stages, probed (see the module docstring)."""
    if probe not in PROBE_MODES:
        raise ConfigError(f"onnx_probe must be one of {', '.join(PROBE_MODES)}, got {probe!r}")
    ort = import_onnxruntime()
    chosen = resolve_providers(providers, device, ort.get_available_providers())
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the TensorRT provider is chatty
    # No busy-waiting of onnxruntime's CPU threads after a run: they would take the cores from the torch
    # post-processing that follows, and from the rest of the node.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with_options = [(name, _provider_options(name, manifest, ort.__version__)) for name in chosen]
    sessions = {}
    for stage in STAGE_FILES:
        path = manifest.stage_path(stage)
        try:
            sessions[stage] = ort.InferenceSession(str(path), sess_options=options, providers=with_options)
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ModelLoadError(f"cannot load the {stage} stage {path} with {', '.join(chosen)}: {exc}") from exc
    used = list(sessions["unet"].get_providers())
    stages = OnnxStages(manifest, sessions, used)
    check_probe(stages.run_probe(), manifest, used, probe)
    return stages


__all__ = [
    "MANIFEST_NAME",
    "PROBE_MODES",
    "PROVIDER_NAMES",
    "STAGE_FILES",
    "STAGE_IO",
    "ExportManifest",
    "OnnxStages",
    "ProbeMismatchError",
    "ProbeResult",
    "check_probe",
    "engine_cache_dir",
    "is_export_dir",
    "load_stages",
    "read_manifest",
    "resolve_providers",
    "sha256_file",
]
