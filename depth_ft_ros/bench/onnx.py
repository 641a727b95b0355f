"""`depth-ft-ros bench --runtime onnxruntime`: the same checkpoint through PyTorch and through its ONNX
export (ONNX Runtime), per-stage medians side by side and their ratio, in one run.

The export is made into a temp folder (fp32, for the bench frame size and resolution) unless --export
names one. Runs are interleaved (torch, onnx, torch, ...) so that load from other processes hits both
alike; the largest output difference is printed too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("preprocess", "encode", "unet", "decode", "postprocess", "total")


def _output(prediction: Any) -> np.ndarray:
    return prediction.normals if prediction.normals is not None else prediction.relative


def run_onnx_bench(args: argparse.Namespace, model: str, label: str, rgb: np.ndarray) -> int:
    import onnxruntime
    import torch

    from depth_ft_ros.export.onnx_export import export_onnx
    from depth_ft_ros.model.predictor import DepthFtPredictor

    with tempfile.TemporaryDirectory(prefix="depth_ft_bench_onnx_") as tmp:
        export_dir = Path(args.export) if args.export else Path(tmp) / "export"
        if not args.export:
            export_onnx(model, export_dir, processing_resolution=args.resolution,
                        frame_wh=(args.width, args.height), family=args.family, log=lambda *_: None)
        options = {"family": args.family} if args.family else {}
        torch_pred = DepthFtPredictor.from_pretrained(
            model, device=args.device, dtype=args.dtype, processing_resolution=args.resolution, **options)
        onnx_pred = DepthFtPredictor.from_pretrained(
            export_dir, device=args.device, processing_resolution=args.resolution,
            onnx_providers=args.onnx_providers)
        samples: dict[str, dict[str, list[float]]] = {"torch": {s: [] for s in STAGES},
                                                      "onnx": {s: [] for s in STAGES}}
        results = {"torch": torch_pred.predict(rgb), "onnx": onnx_pred.predict(rgb)}  # warm-up
        for _ in range(args.runs):
            for name, predictor in (("torch", torch_pred), ("onnx", onnx_pred)):
                results[name] = predictor.predict(rgb)
                for stage in STAGES:
                    samples[name][stage].append(results[name].timings_ms[stage])
        difference = float(np.abs(_output(results["onnx"]) - _output(results["torch"])).max())
        height, width = onnx_pred.fixed_hw or (0, 0)
        providers: list[str] = getattr(onnx_pred.stages, "providers", [])
        print(
            f"model {label}\nfamily {torch_pred.family}, {args.width}x{args.height} -> processing {width}x{height}"
            f" (resolution {args.resolution}); torch {torch.__version__} {torch_pred.device} "
            f"{str(torch_pred.dtype).replace('torch.', '')}, {torch.get_num_threads()} threads; onnxruntime "
            f"{onnxruntime.__version__} on {', '.join(providers)} "
            f"({read_dtype(export_dir)}); median of {args.runs} interleaved runs (+1 warm-up)"
        )
        print(f"  {'stage':<12} {'torch ms':>9} {'onnx ms':>9} {'onnx/torch':>10}")
        for stage in STAGES:
            ours, theirs = statistics.median(samples["torch"][stage]), statistics.median(samples["onnx"][stage])
            ratio = theirs / ours if ours > 0 else float("nan")
            print(f"  {stage:<12} {ours:9.1f} {theirs:9.1f} {ratio:10.3f}")
        print(f"  max |onnx - torch| output difference {difference:.2e}")
    return 0


def read_dtype(export_dir: Path) -> str:
    from depth_ft_ros.model.onnx.runtime import read_manifest

    return read_manifest(export_dir).dtype
