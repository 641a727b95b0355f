"""The config values of the published checkpoints that this package relies on, each with its source.

One record per family: the checkpoint it stands for, and the values of its scheduler/, unet/, vae/ and
model_index.json that the loader reads or that change what the network computes. `make-tiny-model`
(evaluation/tiny.py) writes its tiny checkpoints from these records (only the widths shrunk), and the tests
read the same records, so a tiny checkpoint takes the path the published one takes.

Sources (the model hubs were not reachable when this was written; values are from the authors' code
and the documented base configs):
- SD2_SCHEDULE: stabilityai/stable-diffusion-2(-base) scheduler_config.json (scaled_linear
  0.00085..0.012, 1000 steps, set_alpha_to_one false, steps_offset 1, skip_prk_steps true), which
  Marigold, E2E-FT and Lotus all inherit.
- E2E-FT: diffusion-e2e-ft training/train.py L613-630 saves DDPMScheduler.from_pretrained(base,
  timestep_spacing="trailing") into a StableDiffusionPipeline folder; the base (prs-eth Marigold,
  fine-tuned from SD2 768-v) predicts v. Hub files UNCONFIRMED.
- Marigold (prs-eth): diffusers' Marigold docs and pipelines (MarigoldDepthPipeline /
  MarigoldNormalsPipeline model_index fields, DDIM, v_prediction). timestep_spacing and
  default_denoising_steps UNCONFIRMED (the loader forces trailing and caps the steps at 4).
- Lotus: lotus-depth-d-v2-0-disparity ships SD2-base's PNDMScheduler config with prediction_type
  epsilon (train_lotus_d.py / train_lotus_g.py save the base scheduler; checked, see
  shared models.md); lotus-depth-g-v1-0 says "sample" (class DDIMScheduler UNCONFIRMED, as the
  validation code of train_lotus_g.py L275-276 builds it). The other Lotus checkpoints are assumed
  to follow the one of their generation (v1: sample, v2: PNDM epsilon): UNCONFIRMED. model_index
  `_class_name` LotusGPipeline / LotusDPipeline: what the training scripts' save_pretrained writes
  (train_lotus_d.py L1136-1144), hub files UNCONFIRMED. UNet: SD2-base plus
  class_embed_type "projection" with projection_class_embeddings_input_dim 4 (the task switcher).
- UNet architecture (all families): SD2's 4 down blocks (3 with cross-attention, then DownBlock2D),
  block_out_channels 320/640/1280/1280, attention_head_dim 5/10/20/20, linear projections,
  cross_attention_dim 1024; sample_size 96 for SD2 768-v (Marigold, E2E-FT), 64 for SD2-base (Lotus).
- VAE: SD2's AutoencoderKL, 4 blocks (8x), scaling_factor 0.18215, sample_size 768 (SD2) / 512 (base).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SD2_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "trained_betas": None,
}
SD_VAE_SCALING_FACTOR = 0.18215
SD2_DOWN_BLOCKS = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
SD2_UP_BLOCKS = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
SD2_BLOCK_OUT_CHANNELS = (320, 640, 1280, 1280)
SD2_CROSS_ATTENTION_DIM = 1024
LOTUS_CLASS_EMBEDDING = {"class_embed_type": "projection", "projection_class_embeddings_input_dim": 4}


@dataclass(frozen=True)
class PublishedCheckpoint:
    """What one published checkpoint's configs say (the values this package reads)."""

    checkpoint: str  # Hub id
    scheduler_class: str
    prediction_type: str
    timestep_spacing: str
    scheduler_extra: dict[str, Any] = field(default_factory=dict)  # class-specific fields
    unet_sample_size: int = 96
    unet_extra: dict[str, Any] = field(default_factory=dict)  # e.g. Lotus' class embedding
    vae_sample_size: int = 768
    model_index: dict[str, Any] = field(default_factory=dict)  # besides the component entries
    confirmed: tuple[str, ...] = ()  # the fields checked against the authors' files (see above)

    def scheduler_config(self) -> dict[str, Any]:
        return {
            **SD2_SCHEDULE, **self.scheduler_extra,
            "prediction_type": self.prediction_type, "timestep_spacing": self.timestep_spacing,
        }


_SD_FOLDER = {  # StableDiffusionPipeline.save_pretrained without safety checker (UNCONFIRMED)
    "feature_extractor": [None, None],
    "safety_checker": [None, None],
    "requires_safety_checker": False,
}
_PNDM = {"skip_prk_steps": True}  # SD2-base's PNDMScheduler config
_DDPM = {"variance_type": "fixed_small"}


def _e2e_ft(task: str) -> PublishedCheckpoint:
    return PublishedCheckpoint(
        checkpoint=f"GonzaloMG/marigold-e2e-ft-{task}",
        scheduler_class="DDPMScheduler",
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        scheduler_extra=_DDPM,
        model_index={"_class_name": "StableDiffusionPipeline", **_SD_FOLDER},
        confirmed=("scheduler_class", "prediction_type", "timestep_spacing"),  # training/train.py
    )


def _marigold(task: str) -> PublishedCheckpoint:
    depth = task == "depth"
    return PublishedCheckpoint(
        checkpoint="prs-eth/marigold-depth-v1-0" if depth else "prs-eth/marigold-normals-v0-1",
        scheduler_class="DDIMScheduler",
        prediction_type="v_prediction",
        timestep_spacing="leading",  # UNCONFIRMED; the loader uses trailing whatever this says
        model_index={
            "_class_name": "MarigoldDepthPipeline" if depth else "MarigoldNormalsPipeline",
            "prediction_type": task,
            "default_denoising_steps": 10,  # UNCONFIRMED; capped to 4 by the loader
            "default_processing_resolution": 768,
            **({"scale_invariant": True, "shift_invariant": True} if depth else {"use_full_z_range": True}),
        },
        confirmed=("scheduler_class", "prediction_type", "_class_name", "prediction_type (model_index)"),
    )


def _lotus(variant: str, output: str) -> PublishedCheckpoint:
    # v2 (disparity) checkpoints were saved by the training scripts with SD2-base's PNDM/epsilon config.
    v2 = output == "disparity"
    version = {"depth": "v1-0", "disparity": "v2-1" if variant == "g" else "v2-0", "normals": "v1-1"}[output]
    name = "normal" if output == "normals" else "depth"
    suffix = "-disparity" if v2 else ""
    confirmed: tuple[str, ...] = ("unet_extra",)
    if (variant, output) == ("d", "disparity"):
        confirmed += ("scheduler_class", "prediction_type")
    elif (variant, output) == ("g", "depth"):
        confirmed += ("prediction_type",)
    return PublishedCheckpoint(
        checkpoint=f"jingheya/lotus-{name}-{variant}-{version}{suffix}",
        scheduler_class="PNDMScheduler" if v2 else "DDIMScheduler",
        prediction_type="epsilon" if v2 else "sample",
        timestep_spacing="leading",  # SD2-base's default; unused (Lotus runs t=999 only)
        scheduler_extra=_PNDM if v2 else {},
        unet_sample_size=64,
        unet_extra=LOTUS_CLASS_EMBEDDING,
        vae_sample_size=512,
        model_index={"_class_name": f"Lotus{variant.upper()}Pipeline", **_SD_FOLDER},
        confirmed=confirmed,
    )


PUBLISHED: dict[str, PublishedCheckpoint] = {
    "e2e-ft-depth": _e2e_ft("depth"),
    "e2e-ft-normals": _e2e_ft("normals"),
    "marigold-depth": _marigold("depth"),
    "marigold-normals": _marigold("normals"),
    **{
        f"lotus-{variant}-{output}": _lotus(variant, output)
        for variant in ("g", "d")
        for output in ("depth", "disparity", "normals")
    },
}

__all__ = [
    "LOTUS_CLASS_EMBEDDING",
    "PUBLISHED",
    "SD2_BLOCK_OUT_CHANNELS",
    "SD2_CROSS_ATTENTION_DIM",
    "SD2_DOWN_BLOCKS",
    "SD2_SCHEDULE",
    "SD2_UP_BLOCKS",
    "SD_VAE_SCALING_FACTOR",
    "PublishedCheckpoint",
]
