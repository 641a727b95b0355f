"""The network's input from uint8 RGB frames, in one place for the predictor and for fine-tuning.

The E2E-FT / diffusers conventions: RGB/255*2-1, resized so
the longest side is processing_resolution (bilinear, antialiased; 0 keeps the native size), padded
bottom/right by replication to a multiple of pad_multiple (the VAE factor). Fine-tuning feeds the network
exactly what inference feeds it through this function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from depth_ft_ros.errors import InputError


def processing_size(height: int, width: int, processing_resolution: int) -> tuple[int, int]:
    """(h, w) the network sees before padding: the longest side becomes processing_resolution."""
    if processing_resolution <= 0:
        return height, width
    longest = max(height, width)
    size = (height * processing_resolution // longest, width * processing_resolution // longest)
    if min(size) == 0:
        raise InputError(f"extreme aspect ratio {width}x{height}: nothing left at {processing_resolution}")
    return size


def to_network_input(rgb_uint8: torch.Tensor, processing_resolution: int) -> torch.Tensor:
    """[B, H, W, 3] uint8 RGB -> [B, 3, h, w] float32 in [-1, 1] at the processing size (unpadded)."""
    image = rgb_uint8.permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0
    height, width = image.shape[-2:]
    new_hw = processing_size(height, width, processing_resolution)
    if new_hw != (height, width):
        image = F.interpolate(image, new_hw, mode="bilinear", antialias=True)
    return image.contiguous()


def pad_to_multiple(image: torch.Tensor, multiple: int, *, value: float | None = None) -> torch.Tensor:
    """Pad [B, C, h, w] bottom/right to a multiple of `multiple`: replicate (value None) or a constant."""
    pad_h, pad_w = -image.shape[-2] % multiple, -image.shape[-1] % multiple
    if not (pad_h or pad_w):
        return image
    if value is None:
        return F.pad(image, (0, pad_w, 0, pad_h), mode="replicate")
    return F.pad(image, (0, pad_w, 0, pad_h), mode="constant", value=value)
