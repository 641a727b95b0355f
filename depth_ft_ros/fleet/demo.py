"""The fleet demo for a newcomer (`depth-ft-ros fleet-demo`, `make fleet-demo`): a handful of demo bags, the tiny
checkpoint fine-tuned on some of them (cached), both checkpoints run by `fleet` over the others, and the compare
report with a depth preview.

Everything is cached under --out except the two fleet runs and the report: a second run takes the bags and the
fine-tuned model from the first.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.errors import DepthFtError

SIZE = (128, 96)  # the demo bags' image size
TRAIN_BAGS = 3
EVAL_BAGS = 3
FRAMES = 8  # per bag, plus the bag's index: each bag's camera path samples the pan differently
# Held-out LiDAR AbsRel measures the network when the alignment is a global fit (the local refinement would take
# most of the metric map from the LiDAR itself, whatever the network predicts).
PARAMS: dict[str, Any] = {"alignment": "global"}


@dataclass(frozen=True)
class DemoSettings:
    out: Path
    steps: int = 100
    processing_resolution: int = 64
    lr: float = 1e-3


def note(n_train: int, steps: int, seconds: float | None) -> str:
    took = f" ({seconds:.0f} s on this machine)" if seconds else ""
    return (f"**Read this first.** Both checkpoints are a TINY network (random weights at the start; 0.8 M "
            f"parameters in its UNet where the real one has 866 M), and the fine-tuned one was trained for {steps} "
            f"steps{took} on {n_train} bags "
            "of ONE scene (the Middlebury motorcycle seen by a panning, zooming camera with a simulated 16-line "
            "LiDAR); the compared bags are other passes over that same scene. The report shows the mechanics: "
            "two checkpoints run by `fleet` over the same bags, the held-out LiDAR error per bag, and the "
            "interval over bags. It says nothing about what a real checkpoint gains on a real fleet.")


def write_bags(out: Path) -> tuple[list[Path], list[Path]]:
    """(training bags, evaluation bags) under out/bags, written once."""
    from depth_ft_ros.cli.demo_bag import write_demo_bag

    bags = []
    for i in range(TRAIN_BAGS + EVAL_BAGS):
        kind = "train" if i < TRAIN_BAGS else "eval"
        path = out / "bags" / f"{kind}-{i}"
        if not (path / "metadata.yaml").exists():
            write_demo_bag(path, frames=FRAMES + i, size=SIZE, seed=i)
        bags.append(path)
    return bags[:TRAIN_BAGS], bags[TRAIN_BAGS:]


def base_model(out: Path) -> Path:
    folder = out / "models" / "tiny"
    if not (folder / "model_index.json").exists():
        from depth_ft_ros.evaluation.tiny import make_tiny_model

        make_tiny_model(folder, "e2e-ft-depth")
    return folder


def fine_tuned_model(settings: DemoSettings, base: Path, bags: list[Path]) -> tuple[Path, float | None]:
    """The base fine-tuned on `bags` (the E2E-FT recipe with the LiDAR as supervision), reused when a previous
    demo finished it; (folder, seconds it took now or None when reused)."""
    from depth_ft_ros.training.trainer import FinetuneOptions, Finetuner

    folder = settings.out / "models" / f"fine-tuned-{settings.steps}"
    if (folder / "README.md").exists():
        return folder, None
    if folder.exists():  # an interrupted fine-tuning: start it again
        import shutil

        shutil.rmtree(folder)
    result = Finetuner(FinetuneOptions(
        bags=tuple(bags), base=str(base), out=folder, steps=settings.steps,
        processing_resolution=settings.processing_resolution, lr=settings.lr, warmup_steps=max(settings.steps // 10, 1),
        batch_size=2, grad_accum=1, checkpoint_every=settings.steps, keep_checkpoints=1, val_frames=4,
        augment=False, progress=False)).run()  # one scene: nothing for flips and jitter to generalise to
    return folder, result.wall_s


def preview(bag: Path, models: dict[str, Path], settings: DemoSettings, path: Path) -> Path:
    """A frame of `bag` (the one nearest the middle where every model gets a metric fit): image, ground truth and
    each model's metric depth as the node aligns it."""
    from depth_ft_ros.alignment.aligner import MetricAligner
    from depth_ft_ros.fleet.plots import depth_preview_figure
    from depth_ft_ros.frame.processor import aligner_settings
    from depth_ft_ros.model.predictor import DepthFtPredictor
    from depth_ft_ros.training.bag_frames import read_bag_frames

    config = NodeConfig(**PARAMS, processing_resolution=settings.processing_resolution)
    frames = read_bag_frames(bag, config=config).frames
    predictors = {label: DepthFtPredictor.from_pretrained(model, device="cpu",
                                                          processing_resolution=settings.processing_resolution)
                  for label, model in models.items()}
    middle = len(frames) // 2
    order = sorted(range(len(frames)), key=lambda i: abs(i - middle))
    for index in order:
        frame = frames[index]
        depths: dict[str, np.ndarray | None] = {}
        for label, predictor in predictors.items():
            relative = predictor.predict(frame.rgb).relative
            assert relative is not None and predictor.space is not None
            depths[label] = MetricAligner(aligner_settings(config)).align(
                relative, predictor.space, frame.lidar.uv, frame.lidar.z_m, frame.stamp_ns).depth_m
        if all(d is not None for d in depths.values()) or index == order[-1]:
            break
    return depth_preview_figure(frame.rgb, frame.gt_depth_m, depths, path,
                                title=f"{bag.name}, frame {index} (global fit to the frame's LiDAR)")


def run_demo(settings: DemoSettings) -> Path:
    """The whole demo; returns the compare report's path. Raises DepthFtError with a message for a person."""
    from depth_ft_ros.cli import main
    from depth_ft_ros.fleet.compare import compare_runs

    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    train, evaluate = write_bags(out)
    base = base_model(out)
    print(f"fleet-demo: {len(train)} training and {len(evaluate)} evaluation bags under {out / 'bags'}",
          file=sys.stderr)
    tuned, seconds = fine_tuned_model(settings, base, train)
    print(f"fleet-demo: fine-tuned model {tuned}" + (" (cached)" if seconds is None else f" ({seconds:.0f} s)"),
          file=sys.stderr)
    params = [f"{k}={v}" for k, v in {**PARAMS, "processing_resolution": settings.processing_resolution}.items()]
    runs = {"base": (base, out / "runs" / "base"), "fine-tuned": (tuned, out / "runs" / "fine-tuned")}
    for label, (model, run_dir) in runs.items():
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)  # the runs are the demo's subject: made fresh every time
        argv = ["fleet", *map(str, evaluate), "--out", str(run_dir), "--depth-model", str(model)]
        for param in params:
            argv += ["--param", param]
        print(f"fleet-demo: depth-ft-ros {' '.join(argv)}", file=sys.stderr)
        if main(argv) != 0:
            raise DepthFtError(f"the fleet run of the {label} checkpoint failed (see above)")
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    preview(evaluate[0], {"base (tiny, random)": base, "fine-tuned": tuned}, settings, report_dir / "preview.png")
    notes = (note(len(train), settings.steps, seconds) + "\n\n![image, ground truth and the metric depth of both "
             "checkpoints on one evaluation frame](preview.png)")
    return compare_runs(runs["base"][1], runs["fine-tuned"][1], report_dir, "base", "fine-tuned", notes)
