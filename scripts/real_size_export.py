#!/usr/bin/env python3
"""Real-size ONNX export check: SD2's UNet (8-channel, E2E-FT's config) and VAE built from the published
configs at random init (no weights to download), exported with `export_onnx` and loaded back (probe).

Shows that the exporter handles the full graphs and that the UNet (~3.5 GB fp32) goes to external data.
Takes minutes and ~12 GB of memory on a CPU; a small processing size keeps the compute down (the graph
and the weights are what is checked here, not the resolution).

    python scripts/real_size_export.py [--size 128x128] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch


def build_checkpoint(out: Path) -> Path:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file

    from depth_ft_ros.evaluation.tiny import make_tiny_model
    from depth_ft_ros.model.families.checkpoint import EMBEDDING_FILE
    from depth_ft_ros.model.families.published import (
        SD2_BLOCK_OUT_CHANNELS,
        SD2_CROSS_ATTENTION_DIM,
        SD2_DOWN_BLOCKS,
        SD2_UP_BLOCKS,
        SD_VAE_SCALING_FACTOR,
    )

    make_tiny_model(out, "e2e-ft-depth")  # configs, scheduler, model_index; networks replaced below
    for part in ("unet", "vae", "text_encoder", "tokenizer"):
        shutil.rmtree(out / part)
    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=96, in_channels=8, out_channels=4, down_block_types=SD2_DOWN_BLOCKS, up_block_types=SD2_UP_BLOCKS,
        block_out_channels=SD2_BLOCK_OUT_CHANNELS, layers_per_block=2, cross_attention_dim=SD2_CROSS_ATTENTION_DIM,
        attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
    ).save_pretrained(out / "unet")
    AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        sample_size=768, scaling_factor=SD_VAE_SCALING_FACTOR,
    ).save_pretrained(out / "vae")
    # The empty-prompt embedding of OpenCLIP-H ([1, 2, 1024]) stands in for the text encoder.
    save_file({"embedding": torch.randn(1, 2, SD2_CROSS_ATTENTION_DIM)}, str(out / EMBEDDING_FILE),
              metadata={"text_encoder": ""})
    return out


def main() -> int:
    from depth_ft_ros.export.onnx_export import export_onnx
    from depth_ft_ros.model.predictor import DepthFtPredictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="128x128", help="processing size HxW (multiples of 8)")
    parser.add_argument("--work", default=None, help="folder for the checkpoint and the export (default: temp)")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    work = Path(args.work or tempfile.mkdtemp(prefix="depth_ft_real_size_"))
    start = time.perf_counter()
    model = build_checkpoint(work / "checkpoint")
    print(f"checkpoint built in {time.perf_counter() - start:.0f} s")
    result = export_onnx(model, work / "export", size_hw=(height, width))
    print(f"export: {result.seconds:.0f} s")
    for stage, entry in result.manifest["stages"].items():
        files = [entry["file"]] + ([entry["external_data"]] if entry["external_data"] else [])
        sizes = ", ".join(f"{name} {(work / 'export' / name).stat().st_size / 2**20:.1f} MiB" for name in files)
        print(f"  {stage}: weights {entry['weights_bytes'] / 2**20:.1f} MiB -> {sizes}; "
              f"probe tolerance {result.manifest['probe']['tolerances'][stage]:.2g}")
    start = time.perf_counter()
    predictor = DepthFtPredictor.from_pretrained(work / "export", processing_resolution=max(height, width))
    print(f"loaded with onnxruntime and probed in {time.perf_counter() - start:.0f} s: {predictor}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
