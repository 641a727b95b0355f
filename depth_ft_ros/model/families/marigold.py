"""E2E-FT and original Marigold: the 8-channel image-conditioned UNet (diffusers' Marigold pipelines).

Both feed the UNet torch.cat([rgb_latent, pred_latent], dim=1) with the empty-text embedding.

- E2E-FT ("Fine-Tuning Image-Conditional Diffusion Models is Easier than You Think"): one call at the
  last training timestep (t=999, what "trailing" spacing gives for one step), pred_latent = zeros (as
  it was fine-tuned), and x0 taken from the output with the scheduler's prediction_type
  (v_prediction for these checkpoints).
- Marigold few-step: the same network stepped through the checkpoint's scheduler with "trailing"
  spacing (the fix from the E2E-FT paper), 1-4 steps, starting from a fixed-seed Gaussian latent
  (trained with Gaussian noise, as diffusers runs it); the result is the last step's prev_sample,
  exactly as diffusers' MarigoldDepthPipeline / MarigoldNormalsPipeline return it.

Depth read-out (every checkpoint): as diffusers, mean of the 3 decoded channels, clipped to [-1, 1],
mapped to [0, 1], resized back with plain bilinear (the E2E-FT authors also stretch each image to
[0, 1] and antialias when downscaling; by design, see README).
Normals read-out, per who trained the checkpoint:
- prs-eth Marigold (diffusers' order): clip to [-1, 1] (z remapped when use_full_z_range is false),
  L2-normalise; resize back with plain bilinear, normalise again.
- E2E-FT, and Marigold-architecture normals trained with the E2E-FT code (e2e_ft_readout): the authors
  normalise the decoded vectors WITHOUT clipping (marigold_pipeline.py, divide by norm + 1e-5), resize
  back with antialiasing when downscaling (bilinear otherwise), and then clip; here they are normalised
  again instead of clipped, as the Prediction promises unit vectors (by design, see README).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import diffusers
import torch

from depth_ft_ros.model.families.base import (
    FamilySpec,
    NoiseLatents,
    normalize_normals,
    resize_back,
    x0_from_model_output,
)

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel

# Scheduler classes whose step() the few-step path accepts; anything else falls back to DDIM.
_STEPPABLE = ("DDIMScheduler", "DDPMScheduler", "LCMScheduler")


def _make_scheduler(scheduler_config: dict[str, Any]) -> Any:
    name = scheduler_config.get("_class_name", "DDIMScheduler")
    cls = getattr(diffusers, name if name in _STEPPABLE else "DDIMScheduler")
    # "trailing" makes a 1-step schedule start at t=999 instead of t=1 (the E2E-FT paper's fix).
    return cls.from_config(scheduler_config, timestep_spacing="trailing")


class MarigoldRunner:
    """Runs one E2E-FT or Marigold family; holds the UNet and its scheduler."""

    def __init__(
        self,
        spec: FamilySpec,
        unet: UNet2DConditionModel,
        scheduler_config: dict[str, Any],
        *,
        num_inference_steps: int = 1,
        noise: NoiseLatents | None = None,
        use_full_z_range: bool = True,
        e2e_ft_readout: bool = False,
    ) -> None:
        self.spec = spec
        self.unet = unet
        self.scheduler = _make_scheduler(scheduler_config)
        self.prediction_type: str = self.scheduler.config.prediction_type
        self.num_inference_steps = 1 if spec.single_step else num_inference_steps
        self.noise = noise or NoiseLatents(spec.default_noise, 0)
        self.use_full_z_range = use_full_z_range
        self.e2e_ft_readout = e2e_ft_readout
        self.last_timestep = self.scheduler.config.num_train_timesteps - 1

    def denoise_from(
        self, image_latent: torch.Tensor, start_latent: torch.Tensor, text_embedding: torch.Tensor
    ) -> torch.Tensor:
        text = text_embedding.expand(image_latent.shape[0], -1, -1)
        pred = start_latent
        if self.spec.single_step:
            t = self.last_timestep
            output = self.unet(torch.cat([image_latent, pred], dim=1), t, encoder_hidden_states=text).sample
            return x0_from_model_output(output, pred, self.scheduler.alphas_cumprod[t], self.prediction_type)
        self.scheduler.set_timesteps(self.num_inference_steps, device=image_latent.device)
        # DDPM adds noise between steps; a seeded generator keeps that deterministic too.
        generator = torch.Generator(image_latent.device).manual_seed(self.noise.seed)
        for t in self.scheduler.timesteps:
            output = self.unet(torch.cat([image_latent, pred], dim=1), t, encoder_hidden_states=text).sample
            pred = self.scheduler.step(output, t, pred, generator=generator).prev_sample
        return pred

    def finish_decoded(self, decoded: torch.Tensor) -> torch.Tensor:
        if self.spec.task == "depth":
            depth = decoded.mean(dim=1, keepdim=True).clip(-1.0, 1.0)
            return (depth + 1.0) / 2.0
        if self.e2e_ft_readout:
            # As the authors: no clip, norm + 1e-5 (resize_back makes them unit length). The 1e-5
            # weighs short vectors less in the resize, as in their code.
            return decoded / (torch.linalg.vector_norm(decoded, dim=1, keepdim=True) + 1e-5)
        normals = decoded.clip(-1.0, 1.0)
        if not self.use_full_z_range:
            # Marigold normals v0-1 encode z in [0, 1] only (always facing the camera).
            normals = torch.cat([normals[:, :2], normals[:, 2:] * 0.5 + 0.5], dim=1)
        return normalize_normals(normals)

    def resize_back(self, result: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
        if self.spec.task == "depth":
            return resize_back(result, size_hw, antialias_down=False)
        return normalize_normals(resize_back(result, size_hw, antialias_down=self.e2e_ft_readout))
