"""What every model family shares: its static description, the normals frames, the x0 formula, the
initial (noise) latent, and resizing outputs back to the input size.

A family is a (network architecture, output) pair, e.g. "e2e-ft-depth" or "lotus-g-normals". Its
`FamilySpec` is data only; the code that runs it lives in one module per architecture (marigold.py,
lotus.py) and implements `FamilyRunner`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel

# "zeros"; "gaussian": one fixed-seed Gaussian latent per latent size, drawn once and reused for every
# frame; "gaussian-per-frame": a fresh Gaussian latent per frame, seeds seed, seed+1, ...
NOISE_KINDS = ("zeros", "gaussian", "gaussian-per-frame")


@dataclass(frozen=True)
class NormalsFrame:
    """A camera frame a model writes its normals in, and how to turn it into the ROS optical frame.

    The ROS optical frame (REP 103, `*_optical_frame`) is x right, y down, z forward (into the scene).
    Every frame used by these models differs from it by axis signs only, so the conversion is a
    per-axis sign vector.
    """

    name: str
    axes: str
    to_optical: tuple[float, float, float]


# E2E-FT and Lotus train on Hypersim normals flipped into this frame: Hypersim's camera space is
# x right, y up, z backward (apple/ml-hypersim README); E2E-FT's loader negates y and z (-> OpenCV),
# orients normals toward the camera, then negates all three (training/dataloaders/load.py); Lotus
# negates x and orients toward the camera (utils/hypersim_dataset.py). DSINE's depth-to-normal code,
# whose evaluation E2E-FT uses, yields the same frame. Both end in: +X left, +Y up, +Z toward the camera.
LEFT_UP_BACK = NormalsFrame(
    name="left-up-back",
    axes="+X left, +Y up, +Z toward the camera (DSINE convention; E2E-FT, Lotus)",
    to_optical=(-1.0, -1.0, -1.0),
)
# diffusers documents Marigold normals (MarigoldImageProcessor.visualize_normals) as
# X right, Y up (top), Z facing the observer.
RIGHT_UP_BACK = NormalsFrame(
    name="right-up-back",
    axes="+X right, +Y up, +Z toward the viewer (Marigold, per diffusers docs)",
    to_optical=(1.0, -1.0, -1.0),
)
NORMALS_FRAMES = {f.name: f for f in (LEFT_UP_BACK, RIGHT_UP_BACK)}


@dataclass(frozen=True)
class FamilySpec:
    """Static facts about one family; `arch` picks the module that runs it."""

    name: str
    arch: str  # "marigold" (E2E-FT and original Marigold share it) or "lotus"
    task: str  # "depth" or "normals"
    space: str | None  # "depth", "disparity", or None for normals
    unet_in_channels: int  # 8: cat([rgb_latent, pred_latent]); 4: rgb latent only (Lotus-D)
    normals_frame: NormalsFrame | None
    single_step: bool  # True: one UNet call at the last training timestep, no scheduler loop
    summary: str
    default_noise: str = "zeros"  # the initial latent next to the image latent (8-channel UNets)


def x0_from_model_output(
    output: torch.Tensor, sample: torch.Tensor, alpha_prod_t: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """The clean latent x0 implied by one UNet output at a timestep with cumulative alpha `alpha_prod_t`.

    Same formulas as diffusers' DDIM/DDPM `step` (read from the scheduler config's prediction_type).
    """
    if prediction_type == "sample":
        return output
    # Coefficients in float32, then cast: sqrt(1 - 0.00466) must not round in fp16 before use.
    alpha = alpha_prod_t.to(device=output.device, dtype=torch.float32)
    sqrt_alpha = alpha.sqrt().to(output.dtype)
    sqrt_one_minus_alpha = (1 - alpha).sqrt().to(output.dtype)
    if prediction_type == "v_prediction":
        return sqrt_alpha * sample - sqrt_one_minus_alpha * output
    if prediction_type == "epsilon":
        return (sample - sqrt_one_minus_alpha * output) / sqrt_alpha
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


class NoiseLatents:
    """The initial latent fed next to the image latent (see NOISE_KINDS).

    Drawn on a CPU generator in float32, so a seed gives the same latent on every device. Each frame
    of a batch gets what it would get alone ("gaussian": the same latent; "gaussian-per-frame": the
    next seeds in order).
    """

    def __init__(self, kind: str, seed: int) -> None:
        if kind not in NOISE_KINDS:
            raise ValueError(f"noise must be one of {', '.join(NOISE_KINDS)}, got {kind!r}")
        self.kind = kind
        self.seed = seed
        self._next_seed = seed
        self._fixed: dict[tuple[tuple[int, ...], torch.device, torch.dtype], torch.Tensor] = {}

    @staticmethod
    def _draw(shape: tuple[int, ...], seed: int) -> torch.Tensor:
        return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        """A latent shaped like `like` [B, C, h, w], on its device and in its dtype."""
        if self.kind == "zeros":
            return torch.zeros_like(like)
        frame_shape = (1, *like.shape[1:])
        if self.kind == "gaussian":
            key = (frame_shape, like.device, like.dtype)
            if key not in self._fixed:
                self._fixed[key] = self._draw(frame_shape, self.seed).to(like)
            return self._fixed[key].expand_as(like)
        frames = [self._draw(frame_shape, self._next_seed + index) for index in range(like.shape[0])]
        self._next_seed += like.shape[0]
        return torch.cat(frames).to(like)


def resize_back(result: torch.Tensor, size_hw: tuple[int, int], *, antialias_down: bool) -> torch.Tensor:
    """Bilinear resize of [B,C,h,w] outputs to size_hw; with antialias_down, antialiased along the
    axes that shrink (torch's antialias matches plain bilinear when enlarging, up to rounding)."""
    if tuple(result.shape[-2:]) == tuple(size_hw):
        return result
    shrinks = size_hw[0] < result.shape[-2] or size_hw[1] < result.shape[-1]
    return F.interpolate(result, size_hw, mode="bilinear", antialias=antialias_down and shrinks)


def normalize_normals(normals: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Unit-length normals along dim 1 (the norm is clamped like diffusers' normalize_normals)."""
    return normals / torch.linalg.vector_norm(normals, dim=1, keepdim=True).clamp(min=eps)


def to_optical_frame(normals: torch.Tensor, frame: NormalsFrame) -> torch.Tensor:
    """[B,3,H,W] normals in `frame` -> the same normals in the ROS optical frame."""
    signs = torch.tensor(frame.to_optical, dtype=normals.dtype, device=normals.device)
    return normals * signs.view(1, 3, 1, 1)


class FamilyRunner(Protocol):
    """The family-specific part of a prediction: latent in, decoded prediction out."""

    spec: FamilySpec
    unet: UNet2DConditionModel
    noise: NoiseLatents  # the start latent next to the image latent (unused by 4-channel UNets)

    def denoise_from(
        self, image_latent: torch.Tensor, start_latent: torch.Tensor, text_embedding: torch.Tensor
    ) -> torch.Tensor:
        """[B,4,h,w] scaled RGB latent -> [B,4,h,w] scaled prediction latent, from the start latent [B,4,h,w]
        (`noise(image_latent)`; ignored by 4-channel UNets): a pure function of its inputs, which is what an
        exported graph of this stage computes."""
        ...

    def finish_decoded(self, decoded: torch.Tensor) -> torch.Tensor:
        """VAE decoder output [B,3,H,W] (float32) -> [B,1,H,W] values in [0,1] or [B,3,H,W] normals
        in the model's own frame (unit length once through resize_back)."""
        ...

    def resize_back(self, result: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
        """finish_decoded's output (unpadded) resized to size_hw where it differs; normals come out
        with unit length."""
        ...
