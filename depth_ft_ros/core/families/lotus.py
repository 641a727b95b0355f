"""Lotus (He et al. 2024): single-step x0 prediction with a class-label task switcher.

- The UNet has class_embed_type="projection" with a 4-d input: the task switcher. The label e=[1, 0]
  ("predict the annotation"; [0, 1] reconstructs the image and is only used in training) enters as
  cat(sin(e), cos(e)) = [0.8415, 0, 0.5403, 1].
- Lotus-G: 8 input channels, cat([rgb_latent, noise_latent]). The authors draw Gaussian noise; the
  default here is zeros (deterministic), noise="gaussian" with seed= gives the authors' behaviour.
- Lotus-D: 4 input channels, the RGB latent only.
- One UNet call at t=999; prediction_type "sample": the output is x0 (converted generically from the
  scheduler config, which for Lotus is the identity).
- Decoding follows the authors' VaeImageProcessor.postprocess: (x/2 + 0.5).clamp(0, 1); depth and
  disparity are the channel mean, normals are that *2-1, then L2-normalised here.
"""

from __future__ import annotations

from typing import Any

import torch

from depth_ft_ros.core.families.base import FamilySpec, normalize_normals, x0_from_model_output

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
        unet: torch.nn.Module,
        scheduler_config: dict[str, Any],
        *,
        noise: str = "zeros",
        seed: int = 0,
    ) -> None:
        from diffusers import DDPMScheduler  # only for the noise schedule (alphas_cumprod)

        self.spec = spec
        self.unet = unet
        schedule = DDPMScheduler.from_config(scheduler_config)
        self.prediction_type: str = scheduler_config.get("prediction_type", "sample")
        self.timestep = schedule.config.num_train_timesteps - 1
        self.alpha_prod_t = schedule.alphas_cumprod[self.timestep]
        self.noise = noise
        self.seed = seed

    def _noise_latent(self, like: torch.Tensor) -> torch.Tensor:
        if self.noise == "zeros":
            return torch.zeros_like(like)
        generator = torch.Generator("cpu").manual_seed(self.seed)
        return torch.randn(like.shape, generator=generator, dtype=torch.float32).to(like)

    def denoise(self, image_latent: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        batch = image_latent.shape[0]
        text = text_embedding.expand(batch, -1, -1)
        labels = task_switcher(batch, image_latent.device, image_latent.dtype)
        if self.spec.unet_in_channels == 8:  # Lotus-G
            x_t = self._noise_latent(image_latent)
            unet_input = torch.cat([image_latent, x_t], dim=1)
        else:  # Lotus-D: no noise input; x_t only matters for non-"sample" prediction types
            x_t = torch.zeros_like(image_latent)
            unet_input = image_latent
        output = self.unet(unet_input, self.timestep, encoder_hidden_states=text, class_labels=labels).sample
        return x0_from_model_output(output, x_t, self.alpha_prod_t, self.prediction_type)

    def finish_decoded(self, decoded: torch.Tensor) -> torch.Tensor:
        image = (decoded / 2 + 0.5).clamp(0.0, 1.0)
        if self.spec.task == "depth":
            return image.mean(dim=1, keepdim=True)
        return normalize_normals(image * 2.0 - 1.0)
