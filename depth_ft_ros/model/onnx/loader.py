"""DepthFtPredictor.from_pretrained(EXPORT_DIR): the parts of a predictor whose network stages run an ONNX export.

The family, its read-outs, noise, normals frame and padding come from the manifest; the family runner
is built by the same factory as for a checkpoint (without its UNet: the UNet stage is the export's
graph), so the start latent and resizing back are the same code. Options that only mean something to
the torch runtime, or that would contradict what was exported, fail here with the option named.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from depth_ft_ros.errors import ConfigError
from depth_ft_ros.model.families import get_family, get_normals_frame, make_runner, resolve_noise, resolve_steps
from depth_ft_ros.model.onnx.runtime import load_stages, read_manifest

if TYPE_CHECKING:
    from depth_ft_ros.model.options import PredictorOptions

_TORCH_ONLY = {"channels_last": False, "compile": False, "attention": "sdpa", "revision": None, "pad_multiple": None}


def load_export(
    folder: Path,
    device: str | torch.device,
    dtype: str | torch.dtype,
    processing_resolution: int,
    opts: PredictorOptions,
) -> dict[str, Any]:
    """DepthFtPredictor's constructor arguments for the export in `folder`."""
    manifest = read_manifest(folder)
    data = manifest.data
    for name, default in _TORCH_ONLY.items():
        if getattr(opts, name) != default:
            raise ConfigError(f"option {name}={getattr(opts, name)!r} applies to checkpoints run with PyTorch, "
                              f"not to the ONNX export {manifest.folder}")
    if processing_resolution != manifest.processing_resolution:
        raise ConfigError(
            f"processing_resolution={processing_resolution}, but the ONNX export {manifest.folder} was made for "
            f"{manifest.processing_resolution} (processing size {manifest.processing_hw[1]}x"
            f"{manifest.processing_hw[0]}); set processing_resolution to {manifest.processing_resolution} or export "
            "again"
        )
    dtype_name = str(dtype).replace("torch.", "").lower()
    aliases = {"fp16": ("fp16", "float16", "half"), "fp32": ("fp32", "float32", "float")}
    if dtype_name != "auto" and dtype_name not in aliases.get(manifest.dtype, ()):
        raise ConfigError(f"dtype={dtype_name}, but the ONNX export {manifest.folder} is {manifest.dtype}; "
                          f"use dtype auto or {manifest.dtype}")
    spec = get_family(manifest.family)
    if opts.family not in (None, spec.name):
        raise ConfigError(f"family={opts.family!r}, but the ONNX export {manifest.folder} is {spec.name}")
    steps = int(data.get("num_inference_steps", 1))
    if opts.num_inference_steps not in (None, steps):
        raise ConfigError(f"num_inference_steps={opts.num_inference_steps}, but the ONNX export {manifest.folder} "
                          f"runs {steps} step(s) in its UNet graph; export again for another count")
    runner = make_runner(
        spec, None, data["scheduler_config"], data["model_index"],
        num_inference_steps=resolve_steps(spec, steps, data["model_index"]),
        noise=resolve_noise(spec, opts.noise or data.get("noise")),
        seed=opts.seed if opts.seed else int(data.get("seed", 0)),
        e2e_ft_readout=bool(data.get("e2e_ft_readout", False)),
    )
    frame = get_normals_frame(data["normals_frame"]) if data.get("normals_frame") else None
    if opts.normals_frame is not None:
        frame = get_normals_frame(opts.normals_frame)
    stages = load_stages(manifest, device=str(device), providers=opts.onnx_providers, probe=opts.onnx_probe)
    with np.load(manifest.folder / data["probe"]["file"]) as probe:
        text_embedding = torch.from_numpy(probe["text_embedding"])
    model_id: Any = data.get("source", {}).get("model_id", str(manifest.folder))
    # Encodings are shared between exports of one VAE at one size and dtype only (numerics differ otherwise).
    height, width = manifest.processing_hw
    vae_key = f"onnx:{data['vae_key']}:{manifest.dtype}:{height}x{width}"
    return dict(
        runner=runner, vae=None, text_embedding=text_embedding, spec=spec, normals_frame=frame,
        model_dir=manifest.folder, model_id=f"{model_id} (ONNX export {manifest.folder})",
        vae_key=vae_key, device=torch.device("cpu"), dtype=torch.float32,
        processing_resolution=manifest.processing_resolution, pad_multiple=int(data["pad_multiple"]),
        match_input_resolution=opts.match_input_resolution, num_inference_steps=steps, stages=stages,
        fixed_hw=manifest.processing_hw,
    )
