"""`depth-ft-ros export-onnx`: a checkpoint's three network stages as ONNX graphs, with a manifest and a probe.

    depth-ft-ros export-onnx MODEL OUT [--resolution R --frame-size WxH | --size HxW] [--dtype fp16|fp32]

The graphs are for one processing size: that of a WxH camera frame at processing resolution R (default
640x480 at 768), or --size HxW directly (multiples of 8). Load OUT like a checkpoint:
DepthFtPredictor.from_pretrained(OUT, processing_resolution=R) or the node's depth_model/normals_model.
"""

from __future__ import annotations

import argparse
import sys


def _pair(text: str, sep: str = "x") -> tuple[int, int]:
    try:
        first, second = (int(v) for v in text.lower().split(sep))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two integers like 640{sep}480, got {text!r}") from None
    return first, second


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint folder or Hugging Face id")
    parser.add_argument("out", help="export folder to write (created)")
    parser.add_argument("--resolution", type=int, default=768, help="processing resolution, longest side (768)")
    parser.add_argument("--frame-size", type=_pair, default=(640, 480), metavar="WxH",
                        help="camera frame size the export is for (default 640x480)")
    parser.add_argument("--size", type=_pair, default=None, metavar="HxW",
                        help="processing size directly (multiples of 8); replaces --resolution/--frame-size")
    parser.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32", help="network precision (fp32)")
    parser.add_argument("--family", default=None, help="override family detection")
    parser.add_argument("--noise", default=None, help="start latent kind (default: the family's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Gaussian start latent")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (17)")
    parser.add_argument("--external-data-bytes", type=int, default=None,
                        help="weights above this many bytes go to <stage>.onnx.data (default 2 GiB)")


def run(args: argparse.Namespace) -> int:
    from depth_ft_ros.errors import DepthFtError
    from depth_ft_ros.export.onnx_export import EXTERNAL_DATA_BYTES, export_onnx

    try:
        result = export_onnx(
            args.model, args.out, processing_resolution=args.resolution, frame_wh=args.frame_size,
            size_hw=args.size, dtype=args.dtype, family=args.family, noise=args.noise, seed=args.seed,
            opset=args.opset,
            external_data_bytes=EXTERNAL_DATA_BYTES if args.external_data_bytes is None else args.external_data_bytes,
        )
    except (DepthFtError, ImportError) as exc:
        print(f"export-onnx: {exc}", file=sys.stderr)
        return 1
    manifest = result.manifest
    height, width = manifest["processing_hw"]
    print(f"export-onnx: {manifest['family']} {manifest['dtype']} at {width}x{height} "
          f"(resolution {manifest['processing_resolution']}) -> {result.folder} in {result.seconds:.1f} s")
    for stage, entry in manifest["stages"].items():
        print(f"  {stage:<7} {entry['file']:<13} weights {entry['weights_bytes'] / 2**20:8.1f} MiB"
              f"{'  external data ' + entry['external_data'] if entry['external_data'] else ''}  probe tolerance "
              f"{manifest['probe']['tolerances'][stage]:.2g}")
    return 0
