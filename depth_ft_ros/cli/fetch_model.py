"""`depth-ft-ros fetch-model ID [--revision R]`: download a checkpoint into the Hugging Face cache.

Only what inference reads is fetched (configs, model card, safetensors weights). Afterwards the node
and the predictor find it offline by its id (set HF_HUB_OFFLINE=1 to never touch the network).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_id", metavar="ID", help="Hub id, e.g. GonzaloMG/marigold-e2e-ft-depth")
    parser.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")


def run(args: argparse.Namespace) -> int:
    from depth_ft_ros.errors import DepthFtError
    from depth_ft_ros.model.families import checkpoint as ckpt
    from depth_ft_ros.model.families.detect import CheckpointConfigs, detect_family, name_hints

    if ckpt.hub_offline():
        print("fetch-model: HF_HUB_OFFLINE is set; unset it to download", file=sys.stderr)
        return 1
    try:
        path = ckpt.download(args.model_id, args.revision)
    except Exception as exc:  # network, auth, unknown repo: all reported the same way
        print(f"fetch-model: cannot download {args.model_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"downloaded {args.model_id} to {path}")
    try:
        configs = CheckpointConfigs(
            model_index=ckpt.read_json(path, "model_index.json"),
            unet=ckpt.read_json(path, "unet/config.json"),
            scheduler=ckpt.read_json(path, "scheduler/scheduler_config.json"),
            hints=name_hints(args.model_id, path),
        )
        print(f"family: {detect_family(configs).name}")
    except DepthFtError as exc:
        print(f"warning: {exc}", file=sys.stderr)
    print(
        f"use it offline: HF_HUB_OFFLINE=1 (same HF_HOME={ckpt.hub_cache_dir()}) and model {args.model_id} "
        f"(node parameter or DepthFtPredictor.from_pretrained), or the folder {path}"
    )
    return 0
