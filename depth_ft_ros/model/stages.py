"""The three network stages of one frame, behind one interface, so that the predictor's pre- and
post-processing are the same code whichever runtime runs the networks.

    encode(image)                  [B,3,H,W] in [-1, 1] -> [B,4,h,w] latent mean x scaling factor
    denoise(image_latent, start)   -> [B,4,h,w] prediction latent (the family's UNet call(s) and x0 read-out)
    decode(latent)                 -> the family's read-out of the VAE decoder output, float32
                                      ([B,1,H,W] in [0, 1], or [B,3,H,W] normals in the model's frame)

TorchStages runs the diffusers modules (and is what the ONNX export traces, so both runtimes compute
the same functions); model/onnx/runtime.py runs an exported folder with ONNX Runtime. The start latent
comes from the family's NoiseLatents in both cases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

    from depth_ft_ros.model.families import FamilyRunner

class StageExecutor(Protocol):
    """Runs the networks of one predictor; inputs and outputs are torch tensors on the predictor's device."""

    runtime: str  # "torch" | "onnxruntime"

    def encode(self, image: torch.Tensor) -> torch.Tensor: ...

    def denoise(self, image_latent: torch.Tensor, start_latent: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latent: torch.Tensor) -> torch.Tensor: ...


class TorchStages:
    """The stages on the diffusers modules, in the predictor's dtype (read-outs in float32)."""

    runtime = "torch"

    def __init__(
        self, runner: FamilyRunner, vae: AutoencoderKL, text_embedding: torch.Tensor, dtype: torch.dtype
    ) -> None:
        self.runner = runner
        self.vae = vae
        self.text_embedding = text_embedding
        self.dtype = dtype
        self.scaling_factor = float(vae.config.scaling_factor)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        # Distribution mean, not a sample: deterministic (diffusers' Marigold uses mode() = mean too).
        posterior = self.vae.encode(image.to(self.dtype)).latent_dist
        return posterior.mode() * self.scaling_factor

    def denoise(self, image_latent: torch.Tensor, start_latent: torch.Tensor) -> torch.Tensor:
        return self.runner.denoise_from(image_latent, start_latent.to(image_latent), self.text_embedding)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        decoded = self.vae.decode(latent.to(self.dtype) / self.scaling_factor, return_dict=False)[0]
        return self.runner.finish_decoded(decoded.float())


__all__ = ["StageExecutor", "TorchStages"]
