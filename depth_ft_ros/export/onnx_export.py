"""Export one checkpoint's three network stages as ONNX graphs for a fixed processing size, plus the
manifest and the probe that model/onnx/runtime.py checks at load.

The graphs are traces of model/stages.py's TorchStages (the functions the torch runtime runs): the VAE
encoder to the scaled latent mean; the family's denoise (UNet at t=999 with the empty-text embedding and,
for Lotus, the task label baked in as constants, then the family's x0 read-out; Marigold few-step: its
whole trailing DDIM loop); the VAE decoder with the family's read-out. Batch 1, inputs and outputs
float32 (an fp16 export casts inside the graph). Graphs over EXTERNAL_DATA_BYTES keep their weights in
<stage>.onnx.data beside them (protobuf cannot hold more than 2 GB).

Probe tolerances are measured, per stage, on the probe input: 3x the larger of the torch path's own
disagreement (channels_last against the default layout, both fp32) and, for fp16, the fp16 torch stage
against the fp32 one; never below 1e-4 x max(1, |output|).
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depth_ft_ros.errors import ConfigError
from depth_ft_ros.model.families import checkpoint as ckpt
from depth_ft_ros.model.onnx.runtime import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    STAGE_FILES,
    STAGE_IO,
    sha256_file,
)
from depth_ft_ros.model.predictor import DepthFtPredictor
from depth_ft_ros.model.stages import TorchStages

EXTERNAL_DATA_BYTES = 2 * 1024**3
DEFAULT_OPSET = 17
SELF_DISAGREEMENT_FACTOR = 3.0
FP32_FLOOR = 1e-4
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    manifest: dict[str, Any]
    seconds: float


class _Stage(torch.nn.Module):
    """One stage as a module for the exporter: float32 in and out, the stage's own dtype inside."""

    def __init__(self, fn: Any, dtype: torch.dtype, modules: list[torch.nn.Module]) -> None:
        super().__init__()
        self.fn = fn
        self.dtype = dtype
        self.parts = torch.nn.ModuleList(modules)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.fn(*(x.to(self.dtype) for x in inputs)).float()


def probe_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A fixed smooth test image [1,3,H,W] in [-1, 1] (low-frequency noise, bicubic upsampled)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(-1, 1, (1, 3, max(2, height // 16), max(2, width // 16))).astype(np.float32))
    return torch.nn.functional.interpolate(coarse, (height, width), mode="bicubic", align_corners=False).clamp(-1, 1)


def processing_size(predictor: DepthFtPredictor, frame_wh: tuple[int, int]) -> tuple[int, int]:
    """The padded network input size of a frame of frame_wh, by the predictor's own preprocessing."""
    width, height = frame_wh
    _, (geometry,) = predictor._preprocess([np.zeros((height, width, 3), np.uint8)])
    return tuple(s + p for s, p in zip(geometry.processed_hw, geometry.padding_hw, strict=True))  # type: ignore[return-value]


def _stage_outputs(stages: TorchStages, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        return {
            "encode": stages.encode(inputs["encode"]["image"]).float(),
            "unet": stages.denoise(inputs["unet"]["image_latent"], inputs["unet"]["start_latent"]).float(),
            "decode": stages.decode(inputs["decode"]["pred_latent"]).float(),
        }


def _layout(modules: list[Any], inputs: dict[str, dict[str, torch.Tensor]], channels_last: bool) -> Any:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for module in modules:
        module.to(memory_format=fmt)
    return {stage: {k: v.contiguous(memory_format=fmt) for k, v in d.items()} for stage, d in inputs.items()}


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def export_onnx(
    model: str | Path,
    out_dir: str | Path,
    *,
    processing_resolution: int = 768,
    frame_wh: tuple[int, int] = (640, 480),
    size_hw: tuple[int, int] | None = None,
    dtype: str = "fp32",
    family: str | None = None,
    noise: str | None = None,
    seed: int = 0,
    opset: int = DEFAULT_OPSET,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
    log: Any = print,
) -> ExportResult:
    """Write the export folder for `model` (a checkpoint folder or Hub id); see the module docstring."""
    import onnx

    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    started = time.perf_counter()
    if size_hw is not None:
        processing_resolution = max(size_hw)
    options: dict[str, Any] = {"seed": seed}
    if family:
        options["family"] = family
    if noise:
        options["noise"] = noise
    predictor = DepthFtPredictor.from_pretrained(
        model, device="cpu", dtype="fp32", processing_resolution=processing_resolution, **options
    )
    runner, vae = predictor.runner, predictor.vae
    assert vae is not None
    scheduler = getattr(runner, "scheduler", None)
    if not predictor.spec.single_step and type(scheduler).__name__ != "DDIMScheduler":
        raise ConfigError(f"family {predictor.family} with {type(scheduler).__name__}: only deterministic (DDIM) "
                          "few-step schedules can be exported; the scheduler adds noise between steps")
    hw = size_hw if size_hw is not None else processing_size(predictor, frame_wh)
    if any(s <= 0 or s % predictor.pad_multiple for s in hw):
        raise ConfigError(f"size {hw[0]}x{hw[1]}: both sides must be positive multiples of {predictor.pad_multiple}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    # Probe inputs: each stage gets the fp32 torch input of that stage, so each is checked on its own.
    fp32 = TorchStages(runner, vae, predictor.text_embedding, torch.float32)
    image = probe_image(*hw)
    with torch.inference_mode():
        latent = fp32.encode(image)
        start = runner.noise(latent).clone()
        pred = fp32.denoise(latent, start)
    inputs = {"encode": {"image": image}, "unet": {"image_latent": latent, "start_latent": start},
              "decode": {"pred_latent": pred}}
    reference = _stage_outputs(fp32, inputs)
    modules: list[Any] = [runner.unet, vae]
    disagreement = {s: _max_diff(a, reference[s]) for s, a in
                    _stage_outputs(fp32, _layout(modules, inputs, channels_last=True)).items()}
    _layout(modules, inputs, channels_last=False)
    target = _DTYPES[dtype]
    stages = fp32
    if target != torch.float32:
        for module in modules:
            module.to(target)
        stages = TorchStages(runner, vae, predictor.text_embedding.to(target), target)
        cast = {s: {k: v.to(target) for k, v in d.items()} for s, d in inputs.items()}
        for s, a in _stage_outputs(stages, cast).items():
            disagreement[s] = max(disagreement[s], _max_diff(a, reference[s]))
    tolerances = {s: max(SELF_DISAGREEMENT_FACTOR * disagreement[s],
                         FP32_FLOOR * max(1.0, float(reference[s].abs().max()))) for s in STAGE_FILES}

    functions = {"encode": stages.encode, "unet": stages.denoise, "decode": stages.decode}
    stage_entries: dict[str, Any] = {}
    for stage, filename in STAGE_FILES.items():
        names, output = STAGE_IO[stage]
        log(f"export-onnx: {stage} -> {filename}")
        with tempfile.TemporaryDirectory(prefix="depth_ft_onnx_") as tmp:
            traced = Path(tmp) / filename
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # tracer warnings about Python scalars taken as constants
                torch.onnx.export(
                    _Stage(functions[stage], target, modules), tuple(inputs[stage][n] for n in names), str(traced),
                    input_names=list(names), output_names=[output], opset_version=opset, dynamo=False,
                    do_constant_folding=True,
                )
            graph = onnx.load(str(traced))  # also reads external data the exporter may have written
            size = sum(len(t.raw_data) for t in graph.graph.initializer)
            external = size > external_data_bytes
            for old in (out / filename, out / f"{filename}.data"):
                old.unlink(missing_ok=True)
            onnx.save_model(graph, str(out / filename), save_as_external_data=external,
                            all_tensors_to_one_file=True, location=f"{filename}.data", size_threshold=1024)
        files = [filename] + ([f"{filename}.data"] if external else [])
        stage_entries[stage] = {
            "file": filename, "external_data": f"{filename}.data" if external else None,
            "weights_bytes": size, "inputs": list(names), "outputs": [output],
            "sha256": {name: sha256_file(out / name) for name in files},
        }

    probe = {"text_embedding": predictor.text_embedding.float().numpy()}
    for stage, (names, output) in STAGE_IO.items():
        for name in names:
            probe[f"{stage}.{name}"] = inputs[stage][name].float().numpy()
        probe[f"{stage}.{output}"] = reference[stage].numpy()
    np.savez(out / "probe.npz", **probe)  # type: ignore[arg-type]

    source_files = {}
    model_dir = predictor.model_dir
    for component in ("unet", "vae"):
        weights = ckpt.find_weights(model_dir, component)
        assert weights is not None
        source_files[str(weights.path.relative_to(model_dir))] = ckpt.file_identity(weights.path)
    import diffusers

    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "family": predictor.family, "task": predictor.task, "space": predictor.space,
        "normals_frame": predictor.normals_frame.name if predictor.normals_frame else None,
        "processing_resolution": processing_resolution, "processing_hw": list(hw),
        "pad_multiple": predictor.pad_multiple, "dtype": dtype, "batch": 1,
        "num_inference_steps": predictor.num_inference_steps, "noise": runner.noise.kind, "seed": runner.noise.seed,
        "e2e_ft_readout": bool(getattr(runner, "e2e_ft_readout", False)),
        "scheduler_config": ckpt.read_json(model_dir, "scheduler/scheduler_config.json"),
        "model_index": ckpt.read_json(model_dir, "model_index.json"),
        "vae_key": predictor.vae_key,
        "source": {"model_id": predictor.model_id, "files_sha256": source_files},
        "exporter": {"name": "torch.onnx.export (TorchScript)", "torch": torch.__version__,
                     "onnx": onnx.__version__, "diffusers": diffusers.__version__, "opset": opset},
        "stages": stage_entries,
        "probe": {
            "file": "probe.npz", "tolerances": tolerances, "torch_self_disagreement": disagreement,
            "tolerance_rule": f"{SELF_DISAGREEMENT_FACTOR:g}x max(|channels_last - default| fp32"
                              + (", |fp16 - fp32|" if dtype == "fp16" else "")
                              + f") per stage on the probe input, at least {FP32_FLOOR:g} x max(1, |output|)",
        },
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    predictor.close()
    return ExportResult(out, manifest, time.perf_counter() - started)


__all__ = ["EXTERNAL_DATA_BYTES", "ExportResult", "export_onnx", "probe_image", "processing_size"]
