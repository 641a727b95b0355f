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
import tempfile
import time
from pathlib import Path


def build_checkpoint(out: Path) -> Path:
    """E2E-FT depth at the published SD2 size, random init (the builder `make gpu-check` uses too)."""
    from depth_ft_ros.bench.gpu_check import build_real_size_checkpoint

    return build_real_size_checkpoint(out, "e2e-ft-depth")


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
