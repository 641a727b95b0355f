"""The keyword options of DepthFtPredictor.from_pretrained, checked by name."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from depth_ft_ros.errors import ConfigError


@dataclass(frozen=True)
class PredictorOptions:
    """Keyword options of from_pretrained besides model/device/dtype/processing_resolution."""

    family: str | None = None  # override detection, e.g. "e2e-ft-depth"
    revision: str | None = None  # Hub revision
    # Initial latent of 8-channel UNets; None: the family's default (E2E-FT zeros; Lotus-G and Marigold
    # few-step "gaussian"). "zeros" | "gaussian" (one fixed-seed latent per latent size, reused every
    # frame) | "gaussian-per-frame" (a new latent per frame: seeds seed, seed+1, ...).
    noise: str | None = None
    seed: int = 0  # for the Gaussian noise kinds (and DDPM's few-step noise)
    num_inference_steps: int | None = None  # Marigold few-step: 1-4 (default from model_index)
    channels_last: bool = False
    attention: str = "sdpa"  # "sdpa" (torch scaled_dot_product_attention) | "eager"
    compile: bool = False  # torch.compile the UNet and the VAE encoder/decoder
    pad_multiple: int | None = None  # default: 8 px, the VAE factor (as diffusers)
    normals_frame: str | None = None  # override the family's frame: "left-up-back" | "right-up-back"
    match_input_resolution: bool = True  # False: outputs stay at the processing size (unpadded)
    # ONNX exports only: execution providers ("auto": TensorRT -> CUDA -> CPU by availability, or a comma
    # list of tensorrt, cuda, cpu) and what a failed load-time probe does ("refuse" | "warn").
    onnx_providers: str | None = None
    onnx_probe: str = "refuse"

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> PredictorOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown predictor option(s) {unknown}; known options: {sorted(known)}")
        return cls(**options)
