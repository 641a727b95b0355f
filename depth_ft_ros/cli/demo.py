"""`depth-ft-ros demo`: the README's main command, what `make demo` runs.

tiny checkpoints (unless real ones are given) -> the Middlebury demo bag -> a lossless replay through the real
node -> the summary, the output bag and preview PNGs under --out.

The tiny checkpoints have random weights (real ones cannot be bundled): the relative depth and normals they
produce are meaningless, so the metric numbers of the demo come from the LiDAR alignment alone. With a real
checkpoint (--depth-model GonzaloMG/marigold-e2e-ft-depth) the same command measures the real thing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from depth_ft_ros.cli import demo_bag, replay
from depth_ft_ros.errors import DepthFtError
from depth_ft_ros.replay.replay import ReplayOptions, parse_param_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", help="folder for models, bags and previews (out/demo)")
    parser.add_argument("--depth-model", help="depth checkpoint (default: a tiny random one made here)")
    parser.add_argument("--normals-model", help="normals checkpoint (default: a tiny random one made here)")
    parser.add_argument("--frames", type=int, default=30, help="frames in the demo bag (30)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="node parameter passed to the replay; repeatable")


def _tiny(out: Path, family: str) -> str:
    """A tiny checkpoint of `family` under out/models (made once; the same seed gives the same files)."""
    folder = out / "models" / family
    if not (folder / "model_index.json").exists():
        from depth_ft_ros.evaluation.tiny import make_tiny_model

        make_tiny_model(folder, family)
        print(f"demo: made a tiny random {family} checkpoint in {folder}", file=sys.stderr)
    return str(folder)


def _fresh(path: Path) -> Path:
    """Remove a previous demo's bag at `path` (only a rosbag2 folder: never anything else)."""
    if path.exists():
        if not (path / "metadata.yaml").exists():
            raise DepthFtError(f"{path} exists and is not a bag from a previous demo: remove it or choose --out")
        shutil.rmtree(path)
    return path


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    start_s = time.monotonic()
    try:
        depth = args.depth_model or _tiny(out, "e2e-ft-depth")
        normals = args.normals_model or _tiny(out, "e2e-ft-normals")
        bag = _fresh(out / "demo_bag")
        info = demo_bag.write_demo_bag(bag, frames=args.frames)
        print(f"demo: wrote {bag} ({info['frames']} frames, {info['size']})", file=sys.stderr)
        params: dict[str, Any] = {}
        if not args.depth_model:
            # Random weights predict no depth: fit a scale alone and let the local refinement build the metric
            # map from the LiDAR in every frame (a scale-and-shift fit of a random map is rightly refused). Their
            # maps are noise, a depth edge at nearly every pixel: the cloud filters would empty the cloud.
            params |= {"alignment": "local", "local_heldout_ratio": 100.0, "alignment_fit": "scale",
                       "cloud_edge_filter": False, "cloud_min_confidence": 0.0}
        params |= parse_param_overrides(args.param)
        options = ReplayOptions(in_bag=bag, out_bag=_fresh(out / "replay"), lossless=True, depth_model=depth,
                                normals_model=normals, params=params, preview_dir=out / "preview")
        rc = replay.replay_and_report(options, summary_json=out / "summary.json")
    except DepthFtError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    if rc == 0:
        tiny = not (args.depth_model or args.normals_model)
        print(f"  summary JSON: {out / 'summary.json'}")
        print(f"demo finished in {time.monotonic() - start_s:.1f} s. Open {out / 'replay'} in Foxglove or "
              f"`ros2 bag info {out / 'replay'}`; previews in {out / 'preview'}.")
        if tiny:
            print("note: the bundled checkpoints are tiny and RANDOM (real weights cannot be bundled): depth and "
                  "normals are meaningless and the metric accuracy above comes from the LiDAR alignment alone. "
                  "Real checkpoints: make demo DEPTH_MODEL=GonzaloMG/marigold-e2e-ft-depth "
                  "NORMALS_MODEL=GonzaloMG/marigold-e2e-ft-normals")
    return rc
