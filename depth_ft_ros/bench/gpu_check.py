"""`make gpu-check`: the GPU measurements in one command, one JSON + one Markdown table under out/gpu-check/.

    python -m depth_ft_ros.bench.gpu_check [--out out/gpu-check] [--quick] [--budget-s 450]

Parts (each a row group in the table; on a machine without CUDA each CUDA part says "no CUDA"):
- environment: GPU, driver, CUDA, torch, onnxruntime, TensorRT, diffusers versions;
- the tests marked `cuda` (pytest -m cuda);
- E2E-FT depth at the real SD2 size (UNet and VAE from the published configs, random init: speed does not depend
  on the weight values) at processing resolution 768 and 384: diffusers' MarigoldDepthPipeline fp16 against
  DepthFtPredictor fp32 / fp16 / fp16 channels_last / fp16 torch.compile (bench/predictor.py's measurement);
- the same through ONNX Runtime CUDA and TensorRT fp16 (export time, first start with the engine build, cached
  start, per-frame time);
- depth + normals on one shared encoder, and 1-4 cameras in one batched forward against one at a time;
- the node end to end at 640x480 on the GPU (bench/node.py's run: latency p50/p90, outputs/s, CPU time per
  output, GPU memory peak);
- one fine-tuning step at 480x640, batch 2, bf16 autocast + gradient checkpointing (time, peak memory).

--quick (the default without CUDA) also runs every part's code on the CPU with tiny random checkpoints at a small
resolution, labelled "cpu smoke": it shows that the command works end to end before a GPU is lent, and is what
the test suite runs. --budget-s bounds the whole run: a part that would start after it is reported as skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

NO_CUDA = "no CUDA"
REAL_RESOLUTIONS = (768, 384)
SMOKE_RESOLUTION = 64


@dataclass
class Row:
    """One measured line of the table."""

    part: str
    case: str
    values: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"  # ok | no CUDA | skipped: ... | failed: ...
    mode: str = "cuda"  # cuda | cpu smoke


@dataclass
class Context:
    out: Path
    work: Path
    cuda: bool
    quick: bool
    budget_s: float
    runs: int
    started: float = field(default_factory=time.monotonic)
    rows: list[Row] = field(default_factory=list)
    checkpoints: dict[str, Path] = field(default_factory=dict)

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)


# -- checkpoints ---------------------------------------------------------------------------------------------


def build_real_size_checkpoint(out: Path, family: str = "e2e-ft-depth", vae_from: Path | None = None) -> Path:
    """A checkpoint of `family` at the published SD2 size (UNet and VAE from the configs recorded in
    model/families/published.py, random init; the empty-prompt embedding stands in for the text encoder).
    vae_from: copy that checkpoint's VAE (the published E2E-FT depth and normals share SD2's VAE, so the node
    runs one encoder for both)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file

    from depth_ft_ros.evaluation.tiny import make_tiny_model
    from depth_ft_ros.model.families import get_family
    from depth_ft_ros.model.families.checkpoint import EMBEDDING_FILE
    from depth_ft_ros.model.families.published import (
        PUBLISHED,
        SD2_BLOCK_OUT_CHANNELS,
        SD2_CROSS_ATTENTION_DIM,
        SD2_DOWN_BLOCKS,
        SD2_UP_BLOCKS,
        SD_VAE_SCALING_FACTOR,
    )

    make_tiny_model(out, family)  # configs, scheduler, model_index; the networks are replaced below
    for part in ("unet", "vae", "text_encoder", "tokenizer"):
        shutil.rmtree(out / part, ignore_errors=True)
    published = PUBLISHED[family]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        UNet2DConditionModel(
            sample_size=published.unet_sample_size, in_channels=get_family(family).unet_in_channels,
            out_channels=4, down_block_types=SD2_DOWN_BLOCKS, up_block_types=SD2_UP_BLOCKS,
            block_out_channels=SD2_BLOCK_OUT_CHANNELS, layers_per_block=2,
            cross_attention_dim=SD2_CROSS_ATTENTION_DIM, attention_head_dim=(5, 10, 20, 20),
            use_linear_projection=True, **published.unet_extra,
        ).save_pretrained(out / "unet")
        if vae_from is not None:
            shutil.copytree(vae_from / "vae", out / "vae")
        else:
            AutoencoderKL(
                in_channels=3, out_channels=3, latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                layers_per_block=2, sample_size=published.vae_sample_size, scaling_factor=SD_VAE_SCALING_FACTOR,
            ).save_pretrained(out / "vae")
        save_file({"embedding": torch.randn(1, 2, SD2_CROSS_ATTENTION_DIM)}, str(out / EMBEDDING_FILE),
                  metadata={"text_encoder": ""})
    return out


def _checkpoint(ctx: Context, family: str) -> Path:
    """The run's checkpoint of `family`: real size on CUDA, tiny in a CPU smoke run (built once)."""
    if family not in ctx.checkpoints:
        from depth_ft_ros.evaluation.tiny import make_tiny_model

        out = ctx.work / family
        if ctx.cuda:
            depth = ctx.checkpoints.get("e2e-ft-depth")
            ctx.checkpoints[family] = build_real_size_checkpoint(out, family, vae_from=depth)
        else:
            ctx.checkpoints[family] = make_tiny_model(out, family)
    return ctx.checkpoints[family]


# -- helpers -------------------------------------------------------------------------------------------------


def _device(ctx: Context) -> str:
    return "cuda" if ctx.cuda else "cpu"


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextlib.contextmanager
def _peak_memory() -> Iterator[dict[str, float]]:
    """{"peak_mib": ...} filled on exit: torch's CUDA allocator peak within the block (NaN without CUDA)."""
    import torch

    result: dict[str, float] = {"peak_mib": float("nan")}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    yield result
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20


def _median(samples: list[float]) -> float:
    return round(statistics.median(samples), 2) if samples else float("nan")


def _timed(fn: Callable[[], Any], runs: int, warmup: bool = True) -> tuple[Any, list[float]]:
    """One warm-up call (unless warmup is False), then `runs` timed calls (device synchronised); (last result,
    ms per call)."""
    result = fn() if warmup else None
    times = []
    for _ in range(runs):
        _sync()
        start = time.perf_counter()
        result = fn()
        _sync()
        times.append((time.perf_counter() - start) * 1e3)
    return result, times


def _predict_call(predictor: Any, rgb: np.ndarray) -> Callable[[], Any]:
    return lambda: predictor.predict(rgb)


def _part(ctx: Context, name: str, needs_s: float, fn: Callable[[Context], list[Row]]) -> None:
    """Run one part: "no CUDA" rows without a GPU (plus the CPU smoke run when quick), "skipped" past the
    budget, "failed: ..." with the error if it raises (the other parts still run)."""
    if not ctx.cuda:
        ctx.rows.append(Row(name, "-", status=NO_CUDA))
        if not ctx.quick:
            return
    elif ctx.left_s() < needs_s:
        ctx.rows.append(Row(name, "-", status=f"skipped: {ctx.left_s():.0f} s of the budget left, needs "
                                              f"~{needs_s:.0f}"))
        return
    start = time.monotonic()
    try:
        rows = fn(ctx)
    except Exception as exc:  # a part's failure is a result; the others still run
        rows = [Row(name, "-", status=f"failed: {type(exc).__name__}: {str(exc)[:300]}")]
    for row in rows:
        row.mode = "cuda" if ctx.cuda else "cpu smoke"
    ctx.rows.extend(rows)
    print(f"gpu-check: {name}: {time.monotonic() - start:.0f} s", file=sys.stderr)


# -- parts ---------------------------------------------------------------------------------------------------


def environment() -> dict[str, str]:
    """Versions of what the numbers depend on ("-" where absent)."""
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
           "cpu_cores": str(os.cpu_count())}
    env["cuda"] = str(torch.version.cuda or "-")
    env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else NO_CUDA
    env["driver"] = "-"
    if shutil.which("nvidia-smi"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                text=True, timeout=20, check=False).stdout.strip().splitlines()[0]
    for module in ("onnxruntime", "diffusers"):
        try:
            env[module] = __import__(module).__version__
        except ImportError:
            env[module] = "-"
    from depth_ft_ros.model.onnx.runtime import _tensorrt_version

    trt = _tensorrt_version()
    env["tensorrt"] = "-" if trt == "unknown" else trt
    return env


def part_cuda_tests(ctx: Context) -> list[Row]:
    """The tests marked cuda, in a subprocess (their own process: a crash is a result)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "test").is_dir():
        return [Row("cuda tests", "-", status="skipped: no test folder beside the package")]
    # Only the files that mark tests cuda (collecting the whole suite takes longer than running these).
    files = sorted(str(p.relative_to(root)) for p in (root / "test").glob("test_*.py")
                   if "mark.cuda" in p.read_text(encoding="utf-8"))
    # Without CUDA (the smoke run) only check that pytest collects them.
    args = ["-q", "-p", "no:cacheprovider"] if ctx.cuda else ["--collect-only", "-q"]
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", *args, *files], cwd=root,
                          capture_output=True, text=True, timeout=max(60.0, min(240.0, ctx.left_s())), check=False)
    tail = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    status = "ok" if proc.returncode == 0 else f"failed: rc {proc.returncode}"
    return [Row("cuda tests", "pytest -m cuda", {"summary": tail, "s": round(time.monotonic() - start, 1)},
                status=status)]


def part_predictor(ctx: Context) -> list[Row]:
    """E2E-FT depth: diffusers fp16 vs DepthFtPredictor variants, at each processing resolution."""
    from depth_ft_ros.bench.predictor import _diffusers_pipeline, _measure, bench_frame
    from depth_ft_ros.model.predictor import DepthFtPredictor

    model = _checkpoint(ctx, "e2e-ft-depth")
    rgb = bench_frame(640, 480)
    resolutions = REAL_RESOLUTIONS if ctx.cuda else (SMOKE_RESOLUTION,)
    # (label, dtype, options, compare with diffusers); fp16 on the CPU is slow and partly unsupported: fp32 there.
    variants: list[tuple[str, str, dict[str, Any], bool]] = [
        ("fp32", "fp32", {}, False),
        ("fp16", "fp16", {}, True),
        ("fp16 channels_last", "fp16", {"channels_last": True}, False),
        ("fp16 torch.compile", "fp16", {"compile": True}, False),
    ]
    if not ctx.cuda:
        variants = [("fp32", "fp32", {}, True), ("fp32 channels_last", "fp32", {"channels_last": True}, False)]
    rows = []
    for resolution in resolutions:
        for label, dtype, options, with_diffusers in variants:
            if ctx.cuda and ctx.left_s() < 30:
                rows.append(Row("predictor", f"{resolution} {label}", status="skipped: budget"))
                continue
            with _peak_memory() as mem:
                start = time.perf_counter()
                predictor = DepthFtPredictor.from_pretrained(model, device=_device(ctx), dtype=dtype,
                                                             processing_resolution=resolution, **options)
                load_s = time.perf_counter() - start
                pipe = _diffusers_pipeline(predictor) if with_diffusers else None
                ours, stage_ms, expected, diffusers_ms = _measure(predictor, pipe, rgb, ctx.runs)
            values: dict[str, Any] = {"total_ms": _median(stage_ms["total"]), "unet_ms": _median(stage_ms["unet"]),
                                      "encode_ms": _median(stage_ms["encode"]),
                                      "decode_ms": _median(stage_ms["decode"]), "load_s": round(load_s, 1),
                                      "peak_mib": round(mem["peak_mib"], 0),
                                      "processing": f"{ours.processing_hw[1]}x{ours.processing_hw[0]}"}
            rows.append(Row("predictor", f"{resolution} DepthFtPredictor {label}", values))
            if with_diffusers:
                diff = {"total_ms": _median(diffusers_ms)}
                if isinstance(expected, np.ndarray):
                    diff["max_abs_diff"] = float(np.abs(ours.depth - expected[..., 0]).max())
                    diff["ours_over_diffusers"] = round(values["total_ms"] / diff["total_ms"], 3)
                rows.append(Row("predictor", f"{resolution} diffusers MarigoldDepthPipeline {dtype}", diff,
                                status="ok" if isinstance(expected, np.ndarray) else f"failed: {expected}"))
            predictor.close()
    return rows


def part_onnx(ctx: Context) -> list[Row]:
    """ONNX Runtime CUDA and TensorRT fp16 at the first resolution: export, first start, cached start, run."""
    import torch

    from depth_ft_ros.bench.predictor import bench_frame
    from depth_ft_ros.export.onnx_export import export_onnx
    from depth_ft_ros.model.predictor import DepthFtPredictor

    model = _checkpoint(ctx, "e2e-ft-depth")
    # The export traces and probes the real-size UNet on the CPU (minutes at 768): 384 when the budget is short.
    resolution = (REAL_RESOLUTIONS[0] if ctx.left_s() > 300 else REAL_RESOLUTIONS[1]) if ctx.cuda else SMOKE_RESOLUTION
    rgb = bench_frame(640, 480)
    rows = []
    dtype = "fp16" if ctx.cuda else "fp32"
    export_dir = ctx.work / f"onnx-{dtype}"
    start = time.perf_counter()
    export_onnx(model, export_dir, processing_resolution=resolution, frame_wh=(640, 480), dtype=dtype,
                log=lambda *_: None)
    rows.append(Row("onnx", f"export {dtype} at {resolution}", {"s": round(time.perf_counter() - start, 1)}))
    providers = [("onnxruntime CUDA", "cuda"), ("TensorRT", "tensorrt")] if ctx.cuda else [("onnxruntime CPU", "cpu")]
    for label, provider in providers:
        if ctx.cuda and ctx.left_s() < 60:
            rows.append(Row("onnx", f"{label} {dtype}", status="skipped: budget"))
            continue
        try:
            starts = []
            for _ in range(2):  # first start (TensorRT builds its engines), then from the engine cache
                t0 = time.perf_counter()
                predictor = DepthFtPredictor.from_pretrained(export_dir, device=_device(ctx),
                                                             processing_resolution=resolution,
                                                             onnx_providers=provider)
                starts.append(time.perf_counter() - t0)
                used = list(getattr(predictor.stages, "providers", []))
                if len(starts) == 1:
                    predictor.close()
            _, times = _timed(_predict_call(predictor, rgb), ctx.runs)
            predictor.close()
            rows.append(Row("onnx", f"{label} {dtype}", {"total_ms": _median(times),
                                                         "first_start_s": round(starts[0], 1),
                                                         "cached_start_s": round(starts[1], 1),
                                                         "providers": ",".join(used)}))
        except Exception as exc:  # e.g. TensorRT not installed: the CUDA row still stands
            rows.append(Row("onnx", f"{label} {dtype}", status=f"failed: {type(exc).__name__}: {str(exc)[:300]}"))
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return rows


def part_models(ctx: Context) -> list[Row]:
    """Depth + normals on one shared encoder, and 1-4 cameras batched vs one at a time (Models.predict)."""
    from depth_ft_ros.bench.predictor import bench_frame
    from depth_ft_ros.config import NodeConfig
    from depth_ft_ros.enums import Device
    from depth_ft_ros.model.networks import Models

    depth = _checkpoint(ctx, "e2e-ft-depth")
    normals = _checkpoint(ctx, "e2e-ft-normals")
    resolution = REAL_RESOLUTIONS[0] if ctx.cuda else SMOKE_RESOLUTION
    config = NodeConfig(depth_model=str(depth), normals_model=str(normals), device=Device(_device(ctx)),
                        processing_resolution=resolution).validate()
    rgb = bench_frame(640, 480)
    rows = []
    with _peak_memory() as mem:
        models = Models.load(config)
        try:
            _, depth_only = _timed(lambda: models.predict([rgb], [False]), ctx.runs)
            _, both = _timed(lambda: models.predict([rgb], [True]), ctx.runs, warmup=ctx.cuda)
            rows.append(Row("models", f"depth only, {resolution}", {"total_ms": _median(depth_only)}))
            rows.append(Row("models", f"depth + normals, shared encoder {models.shared_encoder}",
                            {"total_ms": _median(both), "peak_mib": float("nan")}))
            for n in (1, 2, 3, 4) if ctx.cuda else (1, 3):
                frames = [rgb] * n

                def batched_forward(f: list[np.ndarray] = frames) -> Any:
                    return models.predict(f, [False] * len(f))

                def one_at_a_time(f: list[np.ndarray] = frames) -> Any:
                    return [models.predict([x], [False]) for x in f]

                _, batched = _timed(batched_forward, ctx.runs, warmup=ctx.cuda)
                _, single = _timed(one_at_a_time, ctx.runs, warmup=ctx.cuda)
                rows.append(Row("models", f"{n} camera(s), depth", {
                    "batched_ms": _median(batched), "one_at_a_time_ms": _median(single),
                    "batched_per_frame_ms": round(_median(batched) / n, 2)}))
        finally:
            models.close()
    rows[1].values["peak_mib"] = round(mem["peak_mib"], 0)
    return rows


def part_node(ctx: Context) -> list[Row]:
    """The node end to end at 640x480 (bench/node.py's run, models on the device)."""
    from depth_ft_ros.bench.node import end_to_end

    depth = _checkpoint(ctx, "e2e-ft-depth")
    normals = _checkpoint(ctx, "e2e-ft-normals")
    resolution = REAL_RESOLUTIONS[0] if ctx.cuda else SMOKE_RESOLUTION
    frames = 20 if ctx.cuda else 3
    values = end_to_end(str(depth), str(normals), device=_device(ctx), processing_resolution=resolution,
                        frames=frames, alignment_fit="scale_shift" if ctx.cuda else "scale")
    return [Row("node", f"640x480, resolution {resolution}, depth/image + camera_info + points, local alignment",
                values)]


def part_finetune(ctx: Context) -> list[Row]:
    """One fine-tuning step at 480x640, batch 2, bf16 autocast + gradient checkpointing."""
    import torch

    from depth_ft_ros.model.families.checkpoint import empty_text_embedding
    from depth_ft_ros.training.samples import TrainSample
    from depth_ft_ros.training.trainer import FinetuneOptions, Finetuner

    model = _checkpoint(ctx, "e2e-ft-depth")
    # The embedding computed from a text encoder at a checkpoint's first load is an inference-mode tensor, which
    # gradient checkpointing cannot save for backward; from the embedding cache written then, it is a plain one.
    empty_text_embedding(model)
    height, width = (480, 640) if ctx.cuda else (64, 80)
    options = FinetuneOptions(bags=(), base=str(model), out=ctx.work / "finetune-out",
                              processing_resolution=max(height, width),
                              mixed_precision="bf16" if ctx.cuda else "no", gradient_checkpointing="on",
                              device="auto" if ctx.cuda else "cpu", progress=False, steps=10)
    tuner = Finetuner(options)
    tuner._load()
    generator = torch.Generator().manual_seed(0)
    samples = [TrainSample(torch.rand(3, height, width, generator=generator) * 2 - 1,
                           torch.rand(1, height, width, generator=generator) * 5 + 1, None) for _ in range(2)]

    def step() -> float:
        tuner.optimizer.zero_grad(set_to_none=True)
        loss, _ = tuner.loss(samples)
        tuner.accelerator.backward(loss)
        tuner.optimizer.step()
        return float(loss.detach())

    with _peak_memory() as mem:  # a warm-up step first on CUDA (allocator, optimizer state)
        _, times = _timed(step, max(1, min(ctx.runs, 3)), warmup=ctx.cuda)
    return [Row("finetune", f"one step {height}x{width} batch 2, "
                            f"{'bf16 autocast' if ctx.cuda else 'fp32'} + gradient checkpointing",
                {"step_ms": _median(times), "peak_mib": round(mem["peak_mib"], 0)})]


PARTS: tuple[tuple[str, float, Callable[[Context], list[Row]]], ...] = (
    ("cuda tests", 60.0, part_cuda_tests),
    ("predictor", 120.0, part_predictor),
    ("models", 40.0, part_models),
    ("node", 40.0, part_node),
    ("finetune", 30.0, part_finetune),
    ("onnx", 120.0, part_onnx),
)


# -- output --------------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if value != value else f"{value:g}"
    return str(value)


def markdown(env: dict[str, str], rows: list[Row], wall_s: float) -> str:
    lines = ["# gpu-check", "", ", ".join(f"{k} {v}" for k, v in env.items()) + f"; wall {wall_s:.0f} s", "",
             "| part | case | mode | status | values |", "|---|---|---|---|---|"]
    for row in rows:
        values = ", ".join(f"{k} {_cell(v)}" for k, v in row.values.items()) or "-"
        lines.append(f"| {row.part} | {row.case} | {row.mode} | {row.status} | {values} |")
    return "\n".join(lines) + "\n"


def run_check(out: Path, quick: bool | None = None, budget_s: float = 450.0, runs: int | None = None,
              parts: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run the parts and write out/gpu-check.json and out/gpu-check.md; returns the JSON document."""
    import torch

    cuda = torch.cuda.is_available()
    quick = (not cuda) if quick is None else quick
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    env = environment()
    with tempfile.TemporaryDirectory(prefix="depth_ft_gpu_check_") as tmp:
        ctx = Context(out=out, work=Path(tmp), cuda=cuda, quick=quick, budget_s=budget_s,
                      runs=runs or (10 if cuda else 1))
        for name, needs_s, fn in PARTS:
            if parts is None or name in parts:
                _part(ctx, name, needs_s, fn)
    wall_s = time.monotonic() - start
    doc = {"environment": env, "wall_s": round(wall_s, 1), "cuda": cuda, "quick": quick,
           "rows": [asdict(row) for row in ctx.rows]}
    (out / "gpu-check.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (out / "gpu-check.md").write_text(markdown(env, ctx.rows, wall_s))
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/gpu-check", help="folder of gpu-check.json and gpu-check.md")
    parser.add_argument("--quick", action=argparse.BooleanOptionalAction, default=None,
                        help="also run every part on the CPU with tiny checkpoints (default: only without CUDA)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="parts that would start later are skipped")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per case (default 10 on CUDA, 1 else)")
    parser.add_argument("--parts", nargs="+", default=None, choices=[name for name, _, _ in PARTS])
    args = parser.parse_args(argv)
    doc = run_check(Path(args.out), args.quick, args.budget_s, args.runs, tuple(args.parts) if args.parts else None)
    print((Path(args.out) / "gpu-check.md").read_text())
    failed = [row for row in doc["rows"] if row["status"].startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
