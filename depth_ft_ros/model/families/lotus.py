"""Lotus (He et al. 2024): single-step x0 prediction with a class-label task switcher.

- The UNet has class_embed_type="projection" with a 4-d input: the task switcher. The label e=[1, 0]
  ("predict the annotation"; [0, 1] reconstructs the image and is only used in training) enters as
  cat(sin(e), cos(e)) = [0.8415, 0, 0.5403, 1].
- Lotus-G: 8 input channels, cat([rgb_latent, noise_latent]). It was trained with Gaussian noise at
  t=999, so the default is a fixed-seed Gaussian latent drawn once per latent size and reused for every
  frame (in distribution and deterministic); noise="zeros" and noise="gaussian-per-frame" are options.
- Lotus-D: 4 input channels, the RGB latent only.
- One UNet call at t=999, and the UNet output IS x0, whatever the scheduler config says. Lotus was
  trained to regress the annotation latent directly (the paper's "x0-prediction"), and the authors'
  LotusGPipeline / LotusDPipeline use the output as x0 without reading the scheduler's prediction_type.
  Their training scripts save Stable Diffusion 2's scheduler config unchanged, so a published checkpoint
  may say "epsilon" (jingheya/lotus-depth-d-v2-0-disparity ships SD2-base's PNDMScheduler config):
  converting by it would scale the output by about -14.6. The scheduler config is read for
  num_train_timesteps only (t = num_train_timesteps - 1).
- Decoding follows the authors' VaeImageProcessor.postprocess: (x/2 + 0.5).clamp(0, 1); depth and
  disparity are the channel mean, normals are that *2-1, then L2-normalised here (by design: the
  Prediction promises unit vectors; the authors leave them unnormalised).
- Resize back to the input size: plain bilinear (the authors use nearest-exact; by design, see README).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from depth_ft_ros.model.families.base import FamilySpec, NoiseLatents, normalize_normals, resize_back

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel

# "Predict the annotation" label before the sin/cos embedding.
ANNOTATION_TASK_LABEL = (1.0, 0.0)


def task_switcher(batch_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Class labels [B, 4] = cat(sin(e), cos(e)) for e = ANNOTATION_TASK_LABEL."""
    label = torch.tensor([ANNOTATION_TASK_LABEL], dtype=torch.float32)
    embedded = torch.cat([torch.sin(label), torch.cos(label)], dim=-1)
    return embedded.to(device=device, dtype=dtype).expand(batch_size, -1)


class LotusRunner:
    """Runs one Lotus family (G or D; depth, disparity or normals); holds the UNet."""

    def __init__(
        self,
        spec: FamilySpec,
        unet: UNet2DConditionModel,
        scheduler_config: dict[str, Any],
        *,
        noise: NoiseLatents | None = None,
    ) -> None:
        self.spec = spec
        self.unet = unet
        self.timestep = int(scheduler_config.get("num_train_timesteps", 1000)) - 1
        self.noise = noise or NoiseLatents(spec.default_noise, 0)

    def denoise_from(
        self, image_latent: torch.Tensor, start_latent: torch.Tensor, text_embedding: torch.Tensor
    ) -> torch.Tensor:
        batch = image_latent.shape[0]
        text = text_embedding.expand(batch, -1, -1)
        labels = task_switcher(batch, image_latent.device, image_latent.dtype)
        unet_input = image_latent
        if self.spec.unet_in_channels == 8:  # Lotus-G
            unet_input = torch.cat([image_latent, start_latent], dim=1)
        return self.unet(unet_input, self.timestep, encoder_hidden_states=text, class_labels=labels).sample

    def finish_decoded(self, decoded: torch.Tensor) -> torch.Tensor:
        image = (decoded / 2 + 0.5).clamp(0.0, 1.0)
        if self.spec.task == "depth":
            return image.mean(dim=1, keepdim=True)
        return normalize_normals(image * 2.0 - 1.0)

    def resize_back(self, result: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
        resized = resize_back(result, size_hw, antialias_down=False)
        return normalize_normals(resized) if self.spec.task == "normals" else resized
