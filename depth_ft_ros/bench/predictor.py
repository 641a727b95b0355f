"""`depth-ft-ros bench`: per-stage predictor timings, and the ratio to diffusers' Marigold pipeline.

    depth-ft-ros bench --model M --resolution R [--device D] [--dtype T] [--runs N] [--width W --height H]
    depth-ft-ros bench --runtime onnxruntime [--export DIR] [--onnx-providers P] ...   (see bench_onnx.py)

The frame is the Middlebury Motorcycle image resized to WxH. Each stage (preprocess, encode, unet,
decode, postprocess) and the total are the median over N runs after one warm-up. For E2E-FT and
Marigold checkpoints the same weights also run through diffusers' MarigoldDepthPipeline /
MarigoldNormalsPipeline (1 step DDPM trailing, or the predictor's few-step scheduler; the predictor's
own initial latent (zeros for E2E-FT), ensemble 1, same processing resolution) in the same process,
and the ratio ours/diffusers is printed with the largest output difference. Without --model a tiny
random e2e-ft-depth is made in a temp dir.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

STAGES = ("preprocess", "encode", "unet", "decode", "postprocess", "total")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="checkpoint folder or Hub id (default: tiny e2e-ft-depth)")
    parser.add_argument("--family", default=None, help="override family detection")
    parser.add_argument("--resolution", type=int, default=768, help="processing resolution (0 = native)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto | fp32 | fp16 | bf16")
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up (default 5)")
    parser.add_argument("--width", type=int, default=640, help="frame width (default 640)")
    parser.add_argument("--height", type=int, default=480, help="frame height (default 480)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks")
    parser.add_argument("--no-diffusers", action="store_true", help="skip the diffusers comparison")
    parser.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                        help="onnxruntime: the torch path and its ONNX export side by side, per stage")
    parser.add_argument("--export", default=None, help="with --runtime onnxruntime: an existing export folder "
                        "(default: export --model into a temp folder)")
    parser.add_argument("--onnx-providers", default="auto", help="with --runtime onnxruntime: auto | e.g. cuda,cpu")


def bench_frame(width: int, height: int) -> np.ndarray:
    import cv2
    from skimage.data import stereo_motorcycle

    return cv2.resize(stereo_motorcycle()[0], (width, height), interpolation=cv2.INTER_AREA)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _diffusers_pipeline(predictor: Any) -> Any | None:
    """diffusers' Marigold pipeline on the predictor's own modules (same weights, device, dtype)."""
    from diffusers import DDPMScheduler, MarigoldDepthPipeline, MarigoldNormalsPipeline

    if predictor.spec.arch != "marigold":
        return None
    runner = predictor.runner
    if predictor.spec.single_step:  # DDPM trailing at 1 step returns x0, as E2E-FT does
        scheduler = DDPMScheduler.from_config(runner.scheduler.config, timestep_spacing="trailing")
    else:
        scheduler = type(runner.scheduler).from_config(runner.scheduler.config)
    cls = MarigoldDepthPipeline if predictor.task == "depth" else MarigoldNormalsPipeline
    extra: dict[str, Any] = {"prediction_type": predictor.task}
    if predictor.task == "normals":
        extra["use_full_z_range"] = runner.use_full_z_range
    pipe = cls(unet=runner.unet, vae=predictor.vae, scheduler=scheduler, text_encoder=None, tokenizer=None, **extra)
    pipe.empty_text_embedding = predictor.text_embedding
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run_diffusers(pipe: Any, predictor: Any, rgb: np.ndarray) -> np.ndarray:
    import torch

    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(predictor.device, torch.float32) / 255.0
    height, width = rgb.shape[:2]
    resolution = predictor.processing_resolution
    if resolution > 0:
        height, width = height * resolution // max(rgb.shape[:2]), width * resolution // max(rgb.shape[:2])
    shape = (1, 4, -(-height // 8), -(-width // 8))
    latents = predictor.runner.noise(torch.zeros(shape, device=predictor.device, dtype=predictor.dtype))
    out = pipe(image, num_inference_steps=predictor.num_inference_steps, ensemble_size=1,
               processing_resolution=resolution, latents=latents, output_type="np")
    return out.prediction[0]


def _measure(
    predictor: Any, pipe: Any | None, rgb: np.ndarray, runs: int
) -> tuple[Any, dict[str, list[float]], np.ndarray | str | None, list[float]]:
    """One warm-up each, then `runs` rounds of (ours, diffusers) interleaved, so that load from other
    processes hits both alike. The diffusers result is replaced by its error message if it fails."""
    import torch

    ours = predictor.predict(rgb)
    expected: np.ndarray | str | None = None
    stage_ms: dict[str, list[float]] = {stage: [] for stage in STAGES}
    diffusers_ms: list[float] = []
    with torch.inference_mode():
        if pipe is not None:
            try:
                expected = _run_diffusers(pipe, predictor, rgb)
            except (RuntimeError, NotImplementedError, ValueError) as exc:  # e.g. bf16 resize on CPU
                expected, pipe = f"failed: {type(exc).__name__}: {exc}", None
        for _ in range(runs):
            ours = predictor.predict(rgb)
            for stage in STAGES:
                stage_ms[stage].append(ours.timings_ms[stage])
            if pipe is not None:
                _sync(predictor.device)
                start = time.perf_counter()
                expected = _run_diffusers(pipe, predictor, rgb)
                _sync(predictor.device)
                diffusers_ms.append((time.perf_counter() - start) * 1e3)
    return ours, stage_ms, expected, diffusers_ms


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def run(args: argparse.Namespace) -> int:
    import torch

    from depth_ft_ros.errors import DepthFtError
    from depth_ft_ros.evaluation.tiny import make_tiny_model
    from depth_ft_ros.model.predictor import DepthFtPredictor

    if args.runs < 1 or args.width < 8 or args.height < 8:
        print("bench: --runs must be >= 1 and the frame at least 8x8", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="depth_ft_bench_") as tmp:
        model = args.model or str(make_tiny_model(tmp, "e2e-ft-depth"))
        label = args.model or "tiny random e2e-ft-depth (make-tiny-model)"
        if args.runtime == "onnxruntime":
            from depth_ft_ros.bench.onnx import run_onnx_bench

            try:
                return run_onnx_bench(args, model, label, bench_frame(args.width, args.height))
            except (DepthFtError, ImportError) as exc:
                print(f"bench: {exc}", file=sys.stderr)
                return 1
        options = {"channels_last": args.channels_last, "compile": args.compile}
        if args.family:
            options["family"] = args.family
        try:
            predictor = DepthFtPredictor.from_pretrained(
                model, device=args.device, dtype=args.dtype, processing_resolution=args.resolution, **options
            )
        except DepthFtError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        rgb = bench_frame(args.width, args.height)
        pipe = None if args.no_diffusers else _diffusers_pipeline(predictor)
        ours, ours_ms, expected, diffusers_ms = _measure(predictor, pipe, rgb, args.runs)
        print(
            f"model {label}\nfamily {predictor.family}, {args.width}x{args.height} -> processing "
            f"{ours.processing_hw[1]}x{ours.processing_hw[0]} (resolution {args.resolution}, pad to "
            f"x{predictor.pad_multiple}), {predictor.device} {str(predictor.dtype).replace('torch.', '')}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.runs} runs (+1 warm-up)"
        )
        for stage in STAGES:
            print(f"  {stage:<12} {_median_ms(ours_ms[stage]):9.1f} ms")
        if not isinstance(expected, np.ndarray):
            reason = "skipped" if args.no_diffusers else "n/a: no diffusers pipeline for this family"
            print(f"  diffusers    {expected or reason}")
            return 0
        if predictor.task == "depth":
            difference = np.abs(ours.depth - expected[..., 0]).max()
        else:
            assert predictor.normals_frame is not None  # every normals family has one
            difference = np.abs(ours.normals - expected * np.array(predictor.normals_frame.to_optical)).max()
        reference = _median_ms(diffusers_ms)
        if predictor.pad_multiple != 8 and any(size % predictor.pad_multiple for size in ours.processing_hw):
            print(f"  note: padded to x{predictor.pad_multiple} here, x8 in diffusers: outputs differ near the edges")
        if getattr(predictor.runner, "e2e_ft_readout", False) and predictor.task == "normals":
            print("  note: E2E-FT normals are read out as its authors do (no clip before normalising, "
                  "antialiased resize back), diffusers clips first")
        print(
            f"  diffusers    {reference:9.1f} ms  ({type(pipe).__name__}, same weights, runs interleaved)\n"
            f"  ratio ours/diffusers {_median_ms(ours_ms['total']) / reference:.3f}  "
            f"(max |output difference| {difference:.2e})"
        )
    return 0
