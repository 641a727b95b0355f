"""`depth-ft-ros finetune BAG [BAG ...] --base MODEL --out DIR`: parses the flags and runs
depth_ft_ros.training.trainer.Finetuner (the E2E-FT recipe with the bag's LiDAR as supervision).

Runs under `accelerate launch` unchanged (several GPUs or machines); single process by default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depth_ft_ros.errors import DepthFtError
from depth_ft_ros.replay.topics import NONE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from depth_ft_ros.training.trainer import MIXED_PRECISION, SWITCHES, FinetuneOptions

    d = FinetuneOptions(bags=(), base="", out=Path())
    parser.add_argument("bags", nargs="+", metavar="BAG", help="rosbag2 directories (MCAP or sqlite3) to train on")
    parser.add_argument("--base", required=True, metavar="MODEL",
                        help="checkpoint to start from: folder or Hugging Face id (E2E-FT, Lotus, Marigold depth)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output: a diffusers-layout folder the node loads; checkpoints under DIR/checkpoints")
    parser.add_argument("--val-bag", action="append", default=[], metavar="BAG",
                        help="held-out bag (repeatable); default: the last --val-fraction of each bag in time")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    parser.add_argument("--processing-resolution", type=int, default=d.processing_resolution, metavar="R",
                        help=f"longest image side the network sees, multiple of 8 (default {d.processing_resolution})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help=f"default {d.warmup_steps}")
    parser.add_argument("--final-lr-fraction", type=float, default=d.final_lr_fraction,
                        help=f"exponential decay after the warm-up to this fraction (default {d.final_lr_fraction})")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"AdamW (default {d.weight_decay})")
    parser.add_argument("--grad-clip", type=float, default=d.grad_clip, help=f"gradient clip (default {d.grad_clip})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"per micro-batch ({d.batch_size})")
    parser.add_argument("--grad-accum", type=int, default=d.grad_accum,
                        help=f"micro-batches per optimizer step (default {d.grad_accum}: effective batch "
                             f"{d.batch_size * d.grad_accum} per process)")
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction, help=f"default {d.val_fraction}")
    parser.add_argument("--val-frames", type=int, default=d.val_frames,
                        help=f"at most this many held-out frames are scored (default {d.val_frames})")
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, metavar="N",
                        help=f"checkpoint and validate every N steps (default {d.checkpoint_every})")
    parser.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, help="default 2")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--no-augment", action="store_true", help="no horizontal flip or photometric jitter")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION, default=d.mixed_precision,
                        help="autocast on CUDA (auto: bf16 where supported, else fp16; fp32 on CPU)")
    parser.add_argument("--gradient-checkpointing", choices=SWITCHES, default=d.gradient_checkpointing,
                        help="UNet gradient checkpointing (auto: on with CUDA)")
    parser.add_argument("--device", choices=("auto", "cpu"), default=d.device)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--image-topic", metavar="T", help="camera image (Image or CompressedImage)")
    parser.add_argument("--camera-info-topic", metavar="T", help="CameraInfo of the image")
    parser.add_argument("--sparse-points-topic", metavar="T", help="metric points (PointCloud2)")
    parser.add_argument("--gt-depth-topic", metavar="T",
                        help=f"dense ground-truth depth (Image 32FC1/16UC1) for validation and normals, or {NONE}")


def run(args: argparse.Namespace) -> int:
    from depth_ft_ros.replay.topics import TopicFlags
    from depth_ft_ros.training.trainer import FinetuneOptions, Finetuner

    try:
        options = FinetuneOptions(
            bags=tuple(Path(b) for b in args.bags), base=args.base, out=Path(args.out),
            val_bags=tuple(Path(b) for b in args.val_bag), steps=args.steps,
            processing_resolution=args.processing_resolution, lr=args.lr, warmup_steps=args.warmup_steps,
            final_lr_fraction=args.final_lr_fraction, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
            batch_size=args.batch_size, grad_accum=args.grad_accum, val_fraction=args.val_fraction,
            val_frames=args.val_frames, checkpoint_every=args.checkpoint_every,
            keep_checkpoints=args.keep_checkpoints, augment=not args.no_augment, seed=args.seed,
            mixed_precision=args.mixed_precision, gradient_checkpointing=args.gradient_checkpointing,
            device=args.device, resume=args.resume, progress=not args.no_progress,
            topics=TopicFlags(args.image_topic, args.camera_info_topic, args.sparse_points_topic, args.gt_depth_topic),
        )
        result = Finetuner(options).run()
    except DepthFtError as exc:
        print(f"finetune: {exc}", file=sys.stderr)
        return 2
    if not result.main_process:  # under `accelerate launch`: the main process reports for the run
        return 0
    print(f"fine-tuned model: {result.out} ({result.steps} steps, {result.train_frames} training frames, "
          f"{result.val_frames} held-out frames, {result.wall_s:.0f} s)")
    for key in result.before:
        print(f"  {key}: {result.before[key]:.4f} -> {result.after.get(key, float('nan')):.4f}")
    return 0
