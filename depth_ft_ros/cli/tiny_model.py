"""`depth-ft-ros make-tiny-model OUT --family F [--seed N]`: a tiny random checkpoint with the real layout.

For tests, demos and benchmarks without downloading gigabytes: the folder loads exactly like a Hub
checkpoint (`DepthFtPredictor.from_pretrained(OUT)`, or the node's model parameter).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from depth_ft_ros.model.families import FAMILIES

    parser.add_argument("out", metavar="OUT", type=Path, help="output folder (created; files are overwritten)")
    parser.add_argument("--family", required=True, choices=list(FAMILIES), help="model family to imitate")
    parser.add_argument("--seed", type=int, default=0, help="weights seed; equal seeds give identical files")


def run(args: argparse.Namespace) -> int:
    from depth_ft_ros.errors import DepthFtError
    from depth_ft_ros.evaluation.tiny import make_tiny_model

    try:
        path = make_tiny_model(args.out, args.family, seed=args.seed)
    except (DepthFtError, OSError) as exc:
        print(f"make-tiny-model: {exc}", file=sys.stderr)
        return 1
    print(f"wrote tiny {args.family} checkpoint (seed {args.seed}) to {path}")
    print(f"use it: DepthFtPredictor.from_pretrained({str(path)!r}) or depth-ft-ros bench --model {path}")
    return 0
